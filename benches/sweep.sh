#!/usr/bin/env bash
# A sweep of three learning rates on the default pipeline, from an empty store each
# time: points one stage at a time (-j 1) against points in parallel (-j 2), RUNS
# interleaved pairs, median seconds of each. The stages above `train` run once either
# way; what -j 2 buys is the overlap of the points' train/export/evaluate.
# Then two training seeds of the MovieLens-100k example (its stages above `train`
# run once beforehand; `train` is forced each time), -j 1 against -j 2 the same way:
# two trainings side by side in one process, as benches/quality.sh runs them.
# Usage: benches/sweep.sh [path/to/dagrun] [ml-100k dir] ; RUNS=5 by default.
set -euo pipefail
source "$(dirname "$0")/common.sh"
runs=${RUNS:-5}
cp "$here/pipeline.yaml" "$work/pipeline.yaml"
cd "$work"
declare -A times
for ((i = 1; i <= runs; i++)); do
  for j in 1 2; do
    rm -rf artifacts
    start=$(date +%s.%N)
    "$bin" run -j "$j" -S train.lr=0.01,0.02,0.05 >/dev/null
    times[$j]+="$(echo "$(date +%s.%N) - $start" | bc) "
  done
done
for j in 1 2; do
  echo "sweep of 3 points -j $j: median_s=$(printf '%s\n' ${times[$j]} | median) runs: ${times[$j]}"
done

[ -d "$data" ] || { echo "no MovieLens-100k at $data: the example's sweep is skipped"; exit 0; }
cp "$here/examples/movielens-100k.yaml" movielens.yaml
"$bin" run movielens.yaml -I clicks.data="$data" --target sample >/dev/null
declare -A ml
for ((i = 1; i <= runs; i++)); do
  for j in 1 2; do
    start=$(date +%s.%N)
    "$bin" run movielens.yaml -j "$j" -I clicks.data="$data" --target train -S train.seed=0,1 --force train >/dev/null
    ml[$j]+="$(echo "$(date +%s.%N) - $start" | bc) "
  done
done
for j in 1 2; do
  echo "MovieLens example, 2 training seeds -j $j: median_s=$(printf '%s\n' ${ml[$j]} | median) runs: ${ml[$j]}"
done
