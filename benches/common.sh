# Sourced by the bench scripts: `bin` (argument 1, or the release build), `data` (argument 2,
# or the MovieLens-100k folder beside the checkout), `here` (the repository), `work`
# (a scratch directory removed on exit) and `median` (of numbers on stdin, one a line).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(realpath "${1:-${CARGO_TARGET_DIR:-$HOME/.cache/dagrun-target}/release/dagrun}")
data=$(realpath -m "${2:-$here/../shared/data/ml-100k}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
