#!/usr/bin/env bash
# The trainer's two paths side by side on the MovieLens-100k example at its own
# settings, seeds 0-2 interleaved: validation and test HR@50, training samples/s.
# On a CPU this checks that the device path learns like the host path; on a GPU
# (`--features cuda`, `-P train.device=cuda`) it is the speed of the device path.
# Usage: benches/device_path.sh [path/to/dagrun] [path/to/ml-100k] [extra -P args…]
set -euo pipefail
source "$(dirname "$0")/common.sh"
extra=("${@:3}")
sed "s#../../shared/data/ml-100k#$data#" "$here/examples/movielens-100k.yaml" >"$work/pipeline.yaml"
cd "$work"
for seed in 0 1 2; do
  for path in host device; do
    "$bin" --store "$work/s-$path" run -j 2 --target evaluate --target evaluate_valid \
      -P train.seed=$seed -P train.path=$path "${extra[@]}" >/dev/null
    "$bin" --store "$work/s-$path" metrics --json | python3 -c "
import json, sys
m = json.load(sys.stdin)
print(f\"seed=$seed path=$path valid_hr@50={m['evaluate_valid.hr@50']:.4f} test_hr@50={m['evaluate.hr@50']:.4f} samples_per_s={m['train.samples_per_s']:.0f}\")"
  done
done
