#!/usr/bin/env bash
# The settings outside benches/quality.sh's grid, each changed alone from the example's
# own (the picked) params, on validation only: validation HR@50 and HR@10, mean over
# training seeds 0, 1, 2, the example's own params first as the figure to beat. These are
# the README's "other settings" (its quality section); one that beats the example's
# params there would be picked, and only then tested.
# Usage: benches/settings.sh [path/to/dagrun] [ml-100k dir]; SETTINGS="a=1 b=2;c=3" runs
# only those (';' between settings, ' ' between the params of one).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cp "$here/examples/movielens-100k.yaml" "$work/pipeline.yaml"
cd "$work"
default_settings=(
  "" sample.max_hist=3 sample.max_hist=8 sample.max_hist=12 train.short_hist=2 train.short_hist=3
  train.use_user_id=false train.num_sampled=127 train.num_sampled=511 train.num_sampled=1023
  train.temperature=0.15 train.temperature=0.25 train.sampler=log_uniform train.sampler=uniform
  train.distortion=0.5 train.distortion=1.0 train.batch_size=128 train.batch_size=512
  train.epochs=6 train.epochs=15 train.lr_end=0.3 train.lr_end=0
  "train.lr_end=0 train.epochs=15" "train.lr_end=0 train.epochs=15 train.lr=0.01"
  "train.lr_end=0 train.epochs=20" "train.lr_end=0 train.epochs=20 train.lr=0.01"
  "train.emb_dim=64 train.hidden_units=[64,64]" "train.hidden_units=[128,32]"
  train.init_std=0.03 "train.optimizer=adam train.weight_decay=0" train.weight_decay=0.003
  train.weight_decay=0.03 train.loss=in_batch "train.loss=in_batch train.temperature=0.15"
  "train.loss=in_batch train.temperature=0.3" "train.loss=in_batch train.batch_size=512"
  "train.loss=in_batch train.batch_size=1024 train.lr=0.01" "train.loss=in_batch train.epochs=15"
  train.loss=mixed "train.loss=mixed train.num_sampled=64"
)
if [ -n "${SETTINGS:-}" ]; then IFS=';' read -r -a settings <<<"$SETTINGS"; else settings=("${default_settings[@]}"); fi
for setting in "${settings[@]}"; do
  flags=()
  for p in $setting; do flags+=(-P "$p"); done
  valid_seeds "${setting:-(the example params)}" "${flags[@]}"
done
