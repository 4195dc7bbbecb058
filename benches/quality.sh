#!/usr/bin/env bash
# Recall quality of examples/movielens-100k.yaml over three training seeds:
# HR@50 and NDCG@50 (HNSW retrieval, full catalogue, no exclusion), their mean,
# and the training time. Usage: benches/quality.sh [path/to/dagrun] [ml-100k dir]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cp "$here/examples/movielens-100k.yaml" "$work/pipeline.yaml"
cd "$work"
for seed in 0 1 2; do
  "$bin" run -I clicks.data="$data" -P train.seed=$seed >/dev/null
  python3 - "$seed" <<'PY' | tee -a seeds.txt
import json, sys
e = json.load(open('artifacts/latest/evaluate/.record.json'))['metrics']
t = json.load(open('artifacts/latest/train/.record.json'))['metrics']
b = json.load(open('artifacts/latest/baseline/.record.json'))['metrics']
print(f"seed={sys.argv[1]} hr@50={e['hr@50']:.4f} ndcg@50={e['ndcg@50']:.4f} hr@10={e['hr@10']:.4f} "
      f"index_recall@50={e['index_recall@50']:.4f} train_s={t['train_seconds']:.1f} baseline_hr@50={b['hr@50']:.4f}")
PY
done
awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); s[kv[1]] += kv[2] } }
     END { printf "mean hr@50=%.4f ndcg@50=%.4f train_s=%.1f\n", s["hr@50"]/NR, s["ndcg@50"]/NR, s["train_s"]/NR }' seeds.txt
