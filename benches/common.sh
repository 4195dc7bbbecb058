# Sourced by the bench scripts: `bin` (argument 1, or the release build), `data` (argument 2,
# or the MovieLens-100k folder beside the checkout), `here` (the repository), `work`
# (a scratch directory removed on exit), `median` (of numbers on stdin, one a line) and
# `valid_seeds` (below).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(realpath "${1:-${CARGO_TARGET_DIR:-$HOME/.cache/dagrun-target}/release/dagrun}")
data=$(realpath -m "${2:-$here/../shared/data/ml-100k}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# valid_seeds LABEL [run flags…]: the pipeline in the current directory (clicks.data set to
# `data`) at training seeds 0, 1, 2 as far as evaluate_valid; prints LABEL and validation
# HR@50 and HR@10, mean [seed 0 / 1 / 2].
valid_seeds() {
  local label=$1; shift
  "$bin" run -j 2 -I clicks.data="$data" "$@" -S train.seed=0,1,2 --target evaluate_valid >valid_seeds.txt
  "$bin" exp -I clicks.data="$data" -n 3 --json --metric evaluate_valid.hr@50 --metric evaluate_valid.hr@10 >valid_seeds.json
  LABEL="$label" python3 - <<'PY'
import json, os
rows = sorted(json.load(open("valid_seeds.json")), key=lambda r: r["params"]["train.seed"])
cells = []
for m in ("hr@50", "hr@10"):
    v = [r["metrics"][f"evaluate_valid.{m}"] for r in rows]
    cells.append(f"{m}={sum(v)/len(v):.4f} [{' / '.join(f'{x:.4f}' for x in v)}]")
print(f"{os.environ['LABEL']:46} valid (seeds 0-2): " + "  ".join(cells), flush=True)
PY
}
