#!/usr/bin/env bash
# Times `dagrun status` and a no-op `dagrun run` on generated `cmd` pipelines of 6
# and 200 stages (stage i reads stage i-1 and stage (i-1)/2), median of 7 runs, and
# the per-stage overhead of a forced rerun beyond the commands themselves.
# Usage: benches/engine.sh [path/to/dagrun]
set -euo pipefail
source "$(dirname "$0")/common.sh"

gen() { # n -> pipeline.yaml
  local n=$1
  echo "stages:"
  for ((i = 0; i < n; i++)); do
    echo "  s$i:"
    echo "    kind: cmd"
    if ((i > 0)); then
      local a=$((i - 1)) b=$(((i - 1) / 2))
      if ((a == b)); then echo "    inputs: {a: s$a.o}"; else echo "    inputs: {a: s$a.o, b: s$b.o}"; fi
    fi
    echo "    run: 'echo $i > \"\$DAGRUN_OUTPUT_O\"'"
    echo "    outputs: [o.txt]"
  done
}

median_ms() { # command... -> median wall time of 7 runs in ms
  local times=()
  for _ in 1 2 3 4 5 6 7; do
    local t0=$(date +%s%N)
    "$@" >/dev/null
    local t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 4p | awk '{printf "%.1f", $1/1000}'
}

for n in 6 200; do
  d=$work/p$n
  mkdir -p "$d"
  gen "$n" >"$d/pipeline.yaml"
  (cd "$d" && "$bin" run -j 2 >/dev/null)
  st=$(cd "$d" && median_ms "$bin" status)
  noop=$(cd "$d" && median_ms "$bin" run)
  echo "stages=$n status_ms=$st noop_run_ms=$noop"
done

# Forced rerun overhead: every stage forced, minus the same commands run by sh alone.
d=$work/p200
force=()
for ((i = 0; i < 200; i++)); do force+=(--force "s$i"); done
t0=$(date +%s%N); (cd "$d" && "$bin" run -j 1 "${force[@]}" >/dev/null); t1=$(date +%s%N)
t2=$(date +%s%N)
for ((i = 0; i < 200; i++)); do sh -c "echo $i > $work/x.txt"; done
t3=$(date +%s%N)
awk -v a=$(((t1 - t0) / 1000)) -v b=$(((t3 - t2) / 1000)) \
  'BEGIN { printf "forced_rerun_200_ms=%.1f commands_alone_ms=%.1f overhead_per_stage_ms=%.2f\n", a/1000, b/1000, (a-b)/1000/200 }'
