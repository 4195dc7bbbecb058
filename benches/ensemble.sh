#!/usr/bin/env bash
# Does an ensemble of the example's training seeds recall better than one model?
# examples/movielens-100k-ensemble.yaml trains the MovieLens-100k example's model (its
# picked settings) three times and serves the three as one (kind `ensemble`: vectors
# concatenated, renormalised). Run for member seeds {0,1,2} and {3,4,5}, it prints per
# group the validation figures (what an ensemble would be picked on), then test, and the
# three trainings' summed time; the single model's own figures at seeds 0-2 are
# benches/quality.sh's.
# With REFIT=1 the members also train on the validation clicks (split.valid=false: the
# settings stay those picked on validation, the test users and histories are the same),
# and only test is printed.
# Usage: [REFIT=1] benches/ensemble.sh [path/to/dagrun] [ml-100k dir]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cp "$here/examples/movielens-100k-ensemble.yaml" "$work/pipeline.yaml"
cd "$work"
for group in "0 1 2" "3 4 5"; do
  read -r a b c <<<"$group"
  seeds=(-P train_1.seed="$a" -P train_2.seed="$b" -P train_3.seed="$c")
  if [ -n "${REFIT:-}" ]; then seeds+=(-P split.valid=false); fi
  "$bin" run -j 2 -I clicks.data="$data" "${seeds[@]}" >run.txt
  "$bin" metrics -I clicks.data="$data" "${seeds[@]}" --json >metrics.json
  GROUP="$group" REFIT="${REFIT:-}" python3 - <<'PY'
import json, os
m = json.load(open("metrics.json"))
def cells(stage):
    return "  ".join(f"{k}={m[f'{stage}.{k}']:.4f}" for k in ("hr@10", "hr@50", "ndcg@50", "hr_excl@10"))
train = sum(m[f"train_{i}.train_seconds"] for i in (1, 2, 3))
if not os.environ["REFIT"]:
    print(f"seeds {os.environ['GROUP']}: valid {cells('evaluate_valid')}")
print(f"seeds {os.environ['GROUP']}: test  {cells('evaluate')}  (training {train:.1f} s for the three)")
PY
done
