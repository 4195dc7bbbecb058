#!/usr/bin/env bash
# The data stages at scale: `synth` with 200,000 users, 50,000 items and ~5,000,000
# clicks, then split + encode + sample with their defaults. Prints each stage's
# time (from its record) and the peak RSS of the run that does the three stages.
# Then the same stages on a 5M-click log read through ingest, as Parquet and CSV.
# Usage: benches/data.sh [path/to/dagrun]
set -euo pipefail
source "$(dirname "$0")/common.sh"
pipeline() { # clicks-stage lines -> a pipeline: that stage, then split, encode, sample
  cat <<YAML
stages:
  clicks:
$1
  split:
    kind: split_last_click
    inputs: {clicks: clicks.clicks}
  encode:
    kind: encode
    inputs: {train: split.train, test: split.test, users: clicks.users}
  sample:
    kind: sample
    inputs: {train: encode.train, test: encode.test}
YAML
}
pipeline "    kind: synth
    params: {users: 200000, items: 50000, clicks: 5000000, seed: 0}" >"$work/pipeline.yaml"
cd "$work"
/usr/bin/time -f "synth_wall_s=%e synth_peak_rss_mb=%M" "$bin" run --target clicks 2>&1 >/dev/null | tail -1 | awk '{ sub(/synth_peak_rss_mb=/, "", $2); printf "%s synth_peak_rss_mb=%.0f\n", $1, $2/1024 }'
/usr/bin/time -f "%e %M" -o time.txt "$bin" run -j 1 --target sample >/dev/null
read -r wall rss <time.txt
for s in clicks split encode sample; do
  python3 -c "import json,sys; r=json.load(open('artifacts/latest/$s/.record.json')); print('$s', 'duration_s=%.3f' % r['duration_s'], ' '.join('%s_rows=%s' % (k, v.get('rows')) for k, v in r['outputs'].items()))"
done
python3 -c "
import json
t = sum(json.load(open('artifacts/latest/%s/.record.json' % s))['duration_s'] for s in ['split', 'encode', 'sample'])
print('split+encode+sample_s=%.3f' % t)"
echo "run_wall_s=$wall peak_rss_mb=$((rss / 1024))"

# The same stages on a log read through `ingest`: 5M clicks with integer ids
# (users with Zipf-skewed activity, Zipf item popularity, random timestamps), made by
# a generator of our own (numpy + pyarrow in the bench venv), as Parquet and as CSV.
venv=$HOME/.cache/dagrun-bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet numpy pyarrow ||
    { echo "ingest: skipped (cannot install numpy/pyarrow into $venv)"; exit 0; }
fi
"$venv/bin/python" - "$work" <<'PY'
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq, pyarrow.csv as pcsv
rng = np.random.default_rng(0)
n, users, items = 5_000_000, 200_000, 50_000
user = (rng.zipf(1.2, size=4 * n) - 1)
user = user[user < users][:n] * 7 + 1000          # sparse, non-contiguous integer ids
item = (rng.zipf(1.1, size=4 * n) - 1)
item = item[item < items][:n] * 3 + 5
ts = rng.integers(1_600_000_000, 1_700_000_000, size=n)
t = pa.table({"user_id": user.astype(np.int64), "item_id": item.astype(np.int64), "timestamp": ts})
pq.write_table(t, sys.argv[1] + "/log.parquet")
pcsv.write_csv(t, sys.argv[1] + "/log.csv")
PY
for format in parquet csv; do
  mkdir -p "$work/$format"
  pipeline "    kind: ingest
    inputs: {data: ../log.$format}" >"$work/$format/pipeline.yaml"
  (cd "$work/$format" && /usr/bin/time -f "%e %M" -o time.txt "$bin" run -j 1 --target sample >/dev/null)
  read -r wall rss <"$work/$format/time.txt"
  (cd "$work/$format" && python3 -c "
import json
d = {s: json.load(open('artifacts/latest/%s/.record.json' % s))['duration_s'] for s in ['clicks', 'split', 'encode', 'sample']}
print('ingested $format: ingest_s=%.3f split_s=%.3f encode_s=%.3f sample_s=%.3f split+encode+sample_s=%.3f' % (
    d['clicks'], d['split'], d['encode'], d['sample'], d['split'] + d['encode'] + d['sample']))")
  echo "  run_wall_s=$wall peak_rss_mb=$((rss / 1024))"
done
