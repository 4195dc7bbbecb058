#!/usr/bin/env bash
# What validation can see of the newest history item's pull on the next click: the
# MovieLens-100k example's model (seeds 0, 1, 2) with an item-kNN score from the newest
# history item added at serving, cosine + alpha * knn, knn the co-occurrence cosine of
# the training clicks, each user's row scaled to a maximum of 1. Prints, per alpha,
# validation and test HR@50 and HR@10 (seen items not removed, as evaluate's hr@50),
# means over the seeds. No setting is picked here: the point is whether validation moves
# with alpha as test does (benches/holdout_gap.py: the newest item predicts both clicks
# alike, older ones the test click worse).
# Usage: pip install numpy pyarrow; benches/last_item_mix.sh [path/to/dagrun] [ml-100k dir]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cp "$here/examples/movielens-100k.yaml" "$work/pipeline.yaml"
cd "$work"
for seed in 0 1 2; do
  "$bin" run -I clicks.data="$data" -P train.seed="$seed" >run.txt
  SEED=$seed python3 - <<'PY'
import json, os
import numpy as np
import pyarrow.parquet as pq

def table(name):
    return pq.read_table(f"artifacts/latest/{name}.parquet").to_pydict()

items = table("export/items")
n = max(items["item"]) + 1
E = np.zeros((n, len(items["embedding"][0])), np.float32)
E[items["item"]] = np.array(items["embedding"], np.float32)
train = table("encode/train")
X = np.zeros((max(train["user"]) + 1, n), np.float32)
X[train["user"], train["item"]] = 1
co = X.T @ X
np.fill_diagonal(co, 0)
count = X.sum(0)
knn = co / np.sqrt(np.outer(count, count) + 1e-9)
out = {}
for split, export in (("valid", "export_valid"), ("test", "export")):
    users = table(f"{export}/users")
    examples = table(f"sample/{split}")
    newest = dict(zip(examples["user"], (h[0] for h in examples["hist"])))  # most recent first
    scores = np.array(users["embedding"], np.float32) @ E.T
    near = knn[[newest[u] for u in users["user"]]]
    near /= near.max(1, keepdims=True) + 1e-9
    target = np.array(users["item"])
    for alpha in (0, 0.05, 0.1, 0.2, 0.4):
        z = scores + alpha * near
        z[:, 0] = -np.inf  # code 0 is padding
        rank = (z > z[np.arange(len(target)), target][:, None]).sum(1)
        out[f"{split} {alpha}"] = [float((rank < 50).mean()), float((rank < 10).mean())]
with open(f"mix_{os.environ['SEED']}.json", "w") as f:
    json.dump(out, f)
PY
done
python3 - <<'PY'
import json
runs = [json.load(open(f"mix_{s}.json")) for s in (0, 1, 2)]
for alpha in (0, 0.05, 0.1, 0.2, 0.4):
    cells = []
    for split in ("valid", "test"):
        hr50, hr10 = (sum(r[f"{split} {alpha}"][i] for r in runs) / 3 for i in (0, 1))
        cells.append(f"{split} hr@50={hr50:.4f} hr@10={hr10:.4f}")
    print(f"alpha {alpha:<5} " + "   ".join(cells))
PY
