#!/usr/bin/env bash
# A sweep of three learning rates on the default pipeline, from an empty store each
# time: points one stage at a time (-j 1) against points in parallel (-j 2), RUNS
# interleaved pairs, median seconds of each. The stages above `train` run once either
# way; what -j 2 buys is the overlap of the points' train/export/evaluate.
# Usage: benches/sweep.sh [path/to/dagrun] ; RUNS=5 by default.
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
  echo "sweep of 3 points -j $j: median_s=$(echo "${times[$j]}" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') runs: ${times[$j]}"
done
