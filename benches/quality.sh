#!/usr/bin/env bash
# Recall quality of examples/movielens-100k.yaml, tuned on validation only.
# 1. A grid (one `dagrun run -S` sweep, seed 0) over the settings that matter:
#    sample.max_hist × train.short_hist × train.temperature × train.lr. Each point's validation HR@50
#    (stage evaluate_valid: each user's second-to-last click) picks the setting;
#    the test metrics are not looked at.
# 2. The picked setting over training seeds 0, 1, 2 (one stage at a time): validation and test HR@10,
#    HR@50, NDCG@50, HR_excl@10, mean and spread (min–max), and training seconds.
# 3. Each model option added to the picked setting, over the same seeds: validation HR@50 and
#    HR@10 only (an option that won there would be picked, and only then tested).
# Usage: benches/quality.sh [path/to/dagrun] [ml-100k dir]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cp "$here/examples/movielens-100k.yaml" "$work/pipeline.yaml"
cd "$work"
grid=(-S sample.max_hist=5,20,50 -S train.short_hist=0,1 -S train.temperature=0.1,0.2,0.5 -S train.lr=0.005,0.01)
# Exit 3 is a point that fails the example's checks: a bad setting, still a result.
"$bin" run -j 2 -I clicks.data="$data" "${grid[@]}" >grid.txt || [ $? -eq 3 ]
points=$(grep -c '^== point' grid.txt)
metrics=(--metric evaluate_valid.hr@50 --metric evaluate_valid.hr@10 --metric evaluate_valid.ndcg@50
  --metric evaluate_valid.hr_excl@10 --metric evaluate.hr@10 --metric evaluate.ndcg@50
  --metric evaluate.hr_excl@10 --metric train.train_seconds)
"$bin" exp -I clicks.data="$data" -n "$points" --json "${metrics[@]}" >grid.json
picked=$(python3 - <<'PY'
import json, sys
rows = json.load(open("grid.json"))
for r in sorted(rows, key=lambda r: -r["metrics"]["evaluate_valid.hr@50"]):
    p = " ".join(f"{k}={v}" for k, v in sorted(r["params"].items()) if k != "train.seed")
    print(f"  grid {p}: valid hr@50={r['metrics']['evaluate_valid.hr@50']:.4f}", file=sys.stderr)
best = max(rows, key=lambda r: r["metrics"]["evaluate_valid.hr@50"])
print(" ".join(f"-P {k}={v}" for k, v in sorted(best["params"].items())))
PY
)
echo "picked on validation HR@50 ($points points): $picked"
read -r -a picked_flags <<<"$picked"
# One stage at a time, so each training's seconds are its own.
"$bin" run -j 1 -I clicks.data="$data" "${picked_flags[@]}" -S train.seed=0,1,2 >seeds.txt || [ $? -eq 3 ]
"$bin" exp -I clicks.data="$data" -n 3 --json "${metrics[@]}" >seeds.json
python3 - <<'PY'
import json
rows = json.load(open("seeds.json"))
base = json.load(open("artifacts/latest/baseline/.record.json"))["metrics"]
for split, stage in (("valid", "evaluate_valid"), ("test", "evaluate")):
    cells = []
    for m in ("hr@10", "hr@50", "ndcg@50", "hr_excl@10"):
        v = [r["metrics"][f"{stage}.{m}"] for r in rows]
        cells.append(f"{m}={sum(v)/len(v):.4f} [{min(v):.4f}–{max(v):.4f}]")
    print(f"{split:5} (seeds 0-2): " + "  ".join(cells))
t = [r["metrics"]["train.train_seconds"] for r in rows]
# A seed whose record the grid made (seed 0) was timed alongside another point (-j 2).
print(f"train_s per seed (newest first)={' '.join(f'{x:.1f}' for x in t)}  most-popular test: hr@10={base['hr@10']:.4f} hr@50={base['hr@50']:.4f} "
      f"ndcg@50={base['ndcg@50']:.4f} hr_excl@10={base['hr_excl@10']:.4f}")
PY

for option in train.genres=true train.recent=2 train.tie_item_embeddings=false train.dropout=0.1 train.loss=full; do
  valid_seeds "option $option" "${picked_flags[@]}" -P "$option"
done
