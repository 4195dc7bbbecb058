#!/usr/bin/env bash
# The remote tier against the tests' S3 server (s3s-fs, started here): seconds to pull
# every artifact of the MovieLens-100k example into a fresh store, and `status` and a
# no-op `run` with a remote set (all records local) against the same without one,
# interleaved, medians of 9.
# Usage: benches/remote.sh [path/to/dagrun] [path/to/ml-100k]
set -euo pipefail
source "$(dirname "$0")/common.sh"
target=${CARGO_TARGET_DIR:-$HOME/.cache/dagrun-target}
(cd "$here" && cargo build --release --example s3_server -q)

mkfifo "$work/stdin"
"$target/release/examples/s3_server" "$work/s3" <"$work/stdin" >"$work/endpoint" &
exec 3>"$work/stdin" # the server serves until this closes
while [ ! -s "$work/endpoint" ]; do sleep 0.05; done
export AWS_ENDPOINT_URL=$(cat "$work/endpoint") AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=dagrun-test-access AWS_SECRET_ACCESS_KEY=dagrun-test-secret-4f9c2e

p=$work/p
mkdir -p "$p"
sed "s#../../shared/data/ml-100k#$data#" "$here/examples/movielens-100k.yaml" >"$p/pipeline.yaml"
(cd "$p" && "$bin" run -j 2 --remote s3://bench/ml >/dev/null)
echo "pushed: $(find "$work/s3/bench/ml/objects" -type f | wc -l) objects, $(du -sh "$work/s3/bench/ml" | cut -f1)"

ms() { # command... -> wall ms
  local t0=$(date +%s%N)
  "$@" >/dev/null
  echo $((($(date +%s%N) - t0) / 1000000))
}

pulls=() st=() st_r=() noop=() noop_r=()
for i in 1 2 3 4 5 6 7 8 9; do
  pulls+=($(cd "$p" && ms "$bin" --store "$work/fresh$i" pull --remote s3://bench/ml))
  st+=($(cd "$p" && ms "$bin" status))
  st_r+=($(cd "$p" && DAGRUN_REMOTE=s3://bench/ml ms "$bin" status))
  noop+=($(cd "$p" && ms "$bin" run))
  noop_r+=($(cd "$p" && ms "$bin" run --remote s3://bench/ml))
done
(cd "$p" && "$bin" --store "$work/fresh1" verify >/dev/null) && echo "pulled store verifies"
echo "pull_all_ms=$(printf '%s\n' "${pulls[@]}" | median)"
echo "status_ms=$(printf '%s\n' "${st[@]}" | median) status_with_remote_ms=$(printf '%s\n' "${st_r[@]}" | median)"
echo "noop_run_ms=$(printf '%s\n' "${noop[@]}" | median) noop_run_with_remote_ms=$(printf '%s\n' "${noop_r[@]}" | median)"
exec 3>&-
wait
