#!/usr/bin/env bash
# Evaluate at catalogue scale: the default pipeline at 5M synthetic clicks (200,000
# users, 50,000 items), every stage's seconds and the run's peak RSS; then, forced,
# RUNS times with their peak RSS: evaluate_valid (which builds the HNSW index), and
# evaluate (which searches that index) ranked exactly and by the index, interleaved;
# then the same exported vectors through usearch's Python binding (inner product, as
# evaluate's index; HNSW build + top-200, 2 threads) and faiss IndexFlatIP (exact
# top-200), from a venv kept in $HOME/.cache, so the ratio is measured on this machine
# in one run.
# Usage: benches/evaluate.sh [path/to/dagrun] ; RUNS=3 by default; EVAL_PARAMS adds
# -P flags to every run (e.g. EVAL_PARAMS="-P evaluate.expansion_search=256").
set -euo pipefail
source "$(dirname "$0")/common.sh"
runs=${RUNS:-3}
big=(-P clicks.users=200000 -P clicks.items=50000 -P clicks.clicks=5000000)
read -r -a extra <<<"${EVAL_PARAMS:-}"
cp "$here/pipeline.yaml" "$work/pipeline.yaml"
cd "$work"
/usr/bin/time -f "%e %M" -o time.txt "$bin" run -j 2 "${big[@]}" "${extra[@]}" >run.txt
read -r wall rss <time.txt
echo "pipeline_wall_s=$wall peak_rss_mb=$((rss / 1024))"
for s in clicks split encode sample train export export_valid evaluate evaluate_valid baseline; do
  python3 -c "import json; r=json.load(open('artifacts/latest/$s/.record.json')); print('  $s duration_s=%.2f' % r['duration_s'])"
done
for ((i = 1; i <= runs; i++)); do
  # evaluate_valid builds the index that evaluate (test) then checks and searches.
  /usr/bin/time -f "%e %M" -o time.txt "$bin" run -j 2 --force evaluate_valid --target evaluate_valid "${big[@]}" "${extra[@]}" >/dev/null
  read -r wall rss <time.txt
  python3 -c "
import json
r = json.load(open('artifacts/latest/evaluate_valid/.record.json')); m = r['metrics']
print('evaluate_valid run=$i (builds the index) duration_s=%.2f peak_rss_mb=%d users=%d index_recall@50=%.4f' % (r['duration_s'], $rss / 1024, m['users'], m['index_recall@50']))"
  for ranking in exact index; do
    /usr/bin/time -f "%e %M" -o time.txt "$bin" run -j 2 --force evaluate --target evaluate "${big[@]}" \
      -P evaluate.ranking=$ranking "${extra[@]}" >/dev/null
    read -r wall rss <time.txt
    python3 -c "
import json
r = json.load(open('artifacts/latest/evaluate/.record.json')); m = r['metrics']
print('evaluate run=$i ranking=$ranking duration_s=%.2f peak_rss_mb=%d users=%d index_recall@50=%.4f index_recall@200=%.4f checked_users=%d hr@50=%.4f ndcg@50=%.4f' % (
    r['duration_s'], $rss / 1024, m['users'], m['index_recall@50'], m['index_recall@200'], m['index_recall_users'], m['hr@50'], m['ndcg@50']))"
  done
done

venv=$HOME/.cache/dagrun-bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet usearch faiss-cpu numpy pyarrow ||
    { echo "peers: skipped (cannot install usearch/faiss into $venv)"; exit 0; }
fi
OMP_NUM_THREADS=2 "$venv/bin/python" - <<'PY'
import time
import numpy as np, pyarrow.parquet as pq
def vectors(path):
    t = pq.read_table(path, columns=["embedding"])
    col = t.column("embedding").combine_chunks()
    return np.asarray(col.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(col), -1)
users = vectors("artifacts/latest/export/users.parquet")
items = vectors("artifacts/latest/export/items.parquet")
import usearch.index, faiss
t0 = time.time()
index = usearch.index.Index(ndim=items.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=128, expansion_search=256)
index.add(np.arange(len(items)), items, threads=2)
t1 = time.time()
found = index.search(users, 200, threads=2)
t2 = time.time()
faiss.omp_set_num_threads(2)
flat = faiss.IndexFlatIP(items.shape[1]); flat.add(items)
_, exact = flat.search(users, 200)
t3 = time.time()
hnsw = found.keys
recall = np.mean([len(set(hnsw[i, :50]) & set(exact[i, :50])) / 50 for i in range(0, len(users), 10)])
print("peers usearch_python build_s=%.2f search_top200_s=%.2f recall@50=%.4f (every 10th user)  faiss_flat_ip_top200_s=%.2f users=%d items=%d" % (
    t1 - t0, t2 - t1, recall, t3 - t2, len(users), len(items)))
PY
