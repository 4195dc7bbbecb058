#!/usr/bin/env bash
# For a machine with an NVIDIA GPU and nvcc (not run yet: no GPU has been lent).
# Builds with `--features cuda` in its own target directory, then prints training
# samples/s of the host path (CPU) and the device path (GPU) at batch 256 and 8192
# on MovieLens-100k and on the 5M-click synthetic samples (d 64, 255 sampled
# negatives), and the MovieLens example's HR@50 trained on the GPU.
# Usage: benches/gpu.sh [path/to/ml-100k]   (CUDA_COMPUTE_CAP defaults to 90: H100/H200)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
data=$(realpath -m "${1:-$here/../shared/data/ml-100k}")
target=${CARGO_TARGET_DIR:-$HOME/.cache/dagrun-target}-cuda
(cd "$here" && CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90} CARGO_TARGET_DIR=$target cargo build --release --features cuda)
bin=$target/release/dagrun
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s#../../shared/data/ml-100k#$data#" "$here/examples/movielens-100k.yaml" >"$work/ml.yaml"
big=(-P clicks.users=200000 -P clicks.items=50000 -P clicks.clicks=5000000 -P train.emb_dim=64
  -P train.num_sampled=255 -P train.epochs=1)
rate() { # store pipeline args… -> samples/s of its train stage
  local store=$1 pipeline=$2
  shift 2
  "$bin" --store "$store" run "$pipeline" --target train "$@" >/dev/null
  "$bin" --store "$store" metrics "$pipeline" --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["train.samples_per_s"]))'
}
for batch in 256 8192; do
  for where in "cpu host" "cuda device"; do
    set -- $where
    echo "ml-100k batch=$batch device=$1 path=$2 samples_per_s=$(rate "$work/ml" "$work/ml.yaml" -P train.batch_size=$batch -P train.device=$1 -P train.path=$2 -P train.epochs=2)"
    echo "5M batch=$batch device=$1 path=$2 samples_per_s=$(rate "$work/big" "$here/pipeline.yaml" "${big[@]}" -P train.batch_size=$batch -P train.device=$1 -P train.path=$2)"
  done
done
"$bin" --store "$work/ml" run "$work/ml.yaml" -P train.device=cuda >/dev/null
"$bin" --store "$work/ml" metrics "$work/ml.yaml" | grep -E 'evaluate(_valid)?\.hr@50 '
