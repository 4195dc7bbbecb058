#!/usr/bin/env bash
# Opens every table in the given stores with the readers people have installed:
# DuckDB 1.1.3 with pyarrow 15.0.2 and polars 1.0.0 (two years old), DuckDB 1.4.5
# (the long-term-support line), and the newest DuckDB, pyarrow, polars and pandas.
# Each set lives in its own venv under $HOME/.cache/dagrun-readers, made once and
# reused; when the package registry cannot be reached, the check says so and skips.
# Usage: tests/readers/check.sh STORE...   (exit 1 when a reader fails on a table)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$HOME/.cache/dagrun-readers
declare -A sets=(
  [new]="duckdb pyarrow polars pandas"
  [lts]="duckdb==1.4.5"
  [old]="duckdb==1.1.3 pyarrow==15.0.2 polars==1.0.0 numpy<2"
)
for name in new lts old; do
  venv=$root/$name
  if [ ! -f "$venv/.complete" ]; then
    rm -rf "$venv"
    # shellcheck disable=SC2086
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check ${sets[$name]}; } >"$root.$name.log" 2>&1; then
      echo "readers: skipped ($name readers could not be installed: $(tail -1 "$root.$name.log"))"
      exit 0
    fi
    touch "$venv/.complete"
  fi
done
expect=$(mktemp)
status=0
"$root/new/bin/python" "$here/check.py" --write "$expect" "$@" || status=1
for name in lts old; do
  "$root/$name/bin/python" "$here/check.py" --expect "$expect" "$@" || status=1
done
rm -f "$expect"
exit $status
