#!/usr/bin/env bash
# Two dagrun binaries side by side on the MovieLens-100k example's `train` stage: RUNS
# interleaved pairs (the order flipped each pair), a fresh training seed each pair, each
# binary in a store of its own; every pair's seconds, then the medians.
# Usage: benches/ab.sh OLD NEW [ml-100k dir]; RUNS=8 by default.
set -euo pipefail
old=$(realpath "$1")
source "$(dirname "$0")/common.sh" "$2" "${3:-}"
runs=${RUNS:-8}
sed "s#../../shared/data/ml-100k#$data#" "$here/examples/movielens-100k.yaml" >"$work/pipeline.yaml"
cd "$work"
declare -A bins=([old]=$old [new]=$bin)
for b in old new; do "${bins[$b]}" --store "st-$b" run --target sample >/dev/null; done
seconds() { python3 -c "import json; print(json.load(open('st-$1/latest/train/.record.json'))['metrics']['train_seconds'])"; }
: >old.txt
: >new.txt
for ((i = 1; i <= runs; i++)); do
  order=(old new)
  ((i % 2 == 0)) && order=(new old)
  for b in "${order[@]}"; do
    "${bins[$b]}" --store "st-$b" run --target train -P train.seed=$((1000 + i)) >/dev/null
    seconds "$b" | tee -a "$b.txt" | sed "s/^/pair $i $b train_s=/"
  done
done
echo "median train_s: old=$(median <old.txt) new=$(median <new.txt)"
