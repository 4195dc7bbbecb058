#!/usr/bin/env bash
# Training throughput of the youtube_dnn stage (samples/s from its record), on
# MovieLens-100k samples of examples/movielens-100k.yaml (max_hist 5, and 50): d=32,
# batch 256, sampled softmax with 5 uniform negatives, Adam, without `short_hist` (as the
# figures before it);
# then 255 negatives, d=64, and a synthetic 1M-item table with its peak RSS.
# Usage: benches/train.sh [path/to/dagrun] [ml-100k dir]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cp "$here/examples/movielens-100k.yaml" "$work/pipeline.yaml"
cd "$work"
"$bin" run -I clicks.data="$data" --target sample >/dev/null
rate() { python3 -c "import json; r=json.load(open('artifacts/latest/train/.record.json')); print('samples_per_s=%.0f train_s=%.2f' % (r['metrics']['samples_per_s'], r['metrics']['train_seconds']))"; }
run_train() { # label, -P overrides...
  local label=$1; shift
  "$bin" run -I clicks.data="$data" --target train -P train.epochs=3 -P train.batch_size=256 -P train.short_hist=0 -P train.optimizer=adam "$@" >/dev/null
  echo "$label $(rate)"
}
run_train "d32_uniform5" -P train.emb_dim=32 -P 'train.hidden_units=[64, 32]' -P train.loss=sampled_softmax -P train.sampler=uniform -P train.num_sampled=5
run_train "d32_uniform255" -P train.emb_dim=32 -P 'train.hidden_units=[64, 32]' -P train.loss=sampled_softmax -P train.sampler=uniform -P train.num_sampled=255
run_train "d64_uniform5" -P train.emb_dim=64 -P 'train.hidden_units=[64, 64]' -P train.loss=sampled_softmax -P train.sampler=uniform -P train.num_sampled=5
# The example samples with max_hist 5; with the sample stage's default of 50 pooling costs more.
run_train "d32_uniform5_hist50" -P sample.max_hist=50 -P train.emb_dim=32 -P 'train.hidden_units=[64, 32]' -P train.loss=sampled_softmax -P train.sampler=uniform -P train.num_sampled=5

# A 1M-item catalogue: memory must follow the table, not table x steps.
cat >"$work/big.yaml" <<'YAML'
stages:
  clicks:
    kind: synth
    params: {users: 100000, items: 1000000, clicks: 1000000, seed: 0}
  split:
    kind: split_last_click
    inputs: {clicks: clicks.clicks}
  encode:
    kind: encode
    inputs: {train: split.train, test: split.test, users: clicks.users}
  sample:
    kind: sample
    inputs: {train: encode.train, test: encode.test}
  train:
    kind: youtube_dnn
    inputs: {samples: sample.train, users: encode.users, vocab: encode.vocab}
    params: {emb_dim: 32, epochs: 1, loss: sampled_softmax, sampler: uniform, num_sampled: 5}
YAML
"$bin" run big.yaml --store big --target sample >/dev/null
/usr/bin/time -f "%M" -o rss.txt "$bin" run big.yaml --store big --target train >/dev/null
python3 -c "import json; r=json.load(open('big/latest/train/.record.json')); print('items_1M samples_per_s=%.0f' % r['metrics']['samples_per_s'], end=' ')"
echo "peak_rss_mb=$(($(cat rss.txt) / 1024))"
