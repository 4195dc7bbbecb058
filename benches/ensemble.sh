#!/usr/bin/env bash
# Does an ensemble of the example's training seeds recall better than one model? The
# MovieLens-100k example (its picked settings) is trained at seeds 0, 1, 2; the seeds'
# models are then scored as one by summing their dot products (the same as concatenating
# their vectors, so one HNSW index would still serve it). Prints each seed alone and the
# ensembles of seeds {0,1} and {0,1,2}: validation first, the figure an ensemble would be
# picked on, then test. The single seeds' figures are evaluate's and evaluate_valid's
# (same ranks: a target's rank is the number of items scored strictly above it).
# Needs python3 with numpy and pyarrow.
# Usage: benches/ensemble.sh [path/to/dagrun] [ml-100k dir]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cp "$here/examples/movielens-100k.yaml" "$work/pipeline.yaml"
cd "$work"
for seed in 0 1 2; do
  "$bin" run -j 2 -I clicks.data="$data" -P train.seed="$seed" >run.txt
  for stage in export export_valid; do
    mkdir -p "seed$seed/$stage"
    cp -L artifacts/latest/$stage/*.parquet "seed$seed/$stage/"
  done
done
cp -L artifacts/latest/encode/{train,valid}.parquet .
python3 - <<'PY'
import numpy as np
import pyarrow.parquet as pq

def pairs(*files):
    seen = {}
    for f in files:
        t = pq.read_table(f, columns=["user", "item"]).to_pydict()
        for u, i in zip(t["user"], t["item"]):
            seen.setdefault(u, set()).add(i)
    return seen

def scores(stage, seeds):
    total = None
    for s in seeds:
        users = pq.read_table(f"seed{s}/{stage}/users.parquet").to_pydict()
        items = pq.read_table(f"seed{s}/{stage}/items.parquet").to_pydict()
        # Summing score matrices needs every seed's rows in one order.
        if total is None:
            order = (users["user"], items["item"])
        assert (users["user"], items["item"]) == order, f"seed {s}: {stage} rows in another order"
        u = np.array(users["embedding"], dtype=np.float32)
        v = np.array(items["embedding"], dtype=np.float32)
        total = u @ v.T if total is None else total + u @ v.T
    return total, users, np.array(items["item"])

def metrics(stage, seeds, seen):
    total, users, items = scores(stage, seeds)
    hits = {"hr@10": 0.0, "hr@50": 0.0, "ndcg@50": 0.0, "hr_excl@10": 0.0}
    for row, user, target in zip(total, users["user"], users["item"]):
        above = row > row[items == target][0]
        rank = above.sum()
        hits["hr@10"] += rank < 10
        hits["hr@50"] += rank < 50
        hits["ndcg@50"] += 1 / np.log2(rank + 2) if rank < 50 else 0
        other = np.isin(items, list(seen.get(user, set()) - {target}))
        hits["hr_excl@10"] += (above & ~other).sum() < 10
    return "  ".join(f"{k}={v / len(users['user']):.4f}" for k, v in hits.items())

# The test rankings leave out the validation click too, as evaluate's also_seen does.
seen = {"export_valid": pairs("train.parquet"), "export": pairs("train.parquet", "valid.parquet")}
for seeds in ([0], [1], [2], [0, 1], [0, 1, 2]):
    for split, stage in (("valid", "export_valid"), ("test", "export")):
        name = "+".join(map(str, seeds))
        print(f"seeds {name:6} {split:5}: {metrics(stage, seeds, seen[stage])}")
PY
