#!/usr/bin/env bash
# The data stages at scale: `synth` with 200,000 users, 50,000 items and ~5,000,000
# clicks, then split + encode + sample with their defaults. Prints each stage's
# time (from its record) and the peak RSS of the run that does the three stages.
# Usage: benches/data.sh [path/to/dagrun]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cat >"$work/pipeline.yaml" <<'YAML'
stages:
  clicks:
    kind: synth
    params: {users: 200000, items: 50000, clicks: 5000000, seed: 0}
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
