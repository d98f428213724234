#!/usr/bin/env bash
# `osmem run` on libosmem-malloc.so: a real program (sort) runs preloaded,
# its output is unchanged, --stats prints the heap statistics at exit,
# --heapmap draws the heap it left (checked by check_heapmap.py), and the
# program's exit status comes back.
#   run_test.sh PYTHON OSMEM_TOOL LIBRARY WORK_DIR
set -euo pipefail
python=$1 tool=$2 lib=$3 work=$4
printf 'pear\napple\nfig\n' >"$work/words"
rm -f "$work/run.png" "$work/run.dump"
"$tool" run --library "$lib" --stats --heapmap "$work/run.png" -- sort "$work/words" \
  >"$work/run.out" 2>"$work/run.err"
printf 'apple\nfig\npear\n' | cmp - "$work/run.out"
grep 'osmem heap of process' "$work/run.err" >/dev/null ||
  { echo "no statistics at exit:"; cat "$work/run.err"; exit 1; }
test -s "$work/run.png"
# The same dump the picture was drawn from, for the picture's check.
LD_PRELOAD=$lib OSMEM_DUMP="$work/run.dump" sort "$work/words" >/dev/null
"$python" "$(dirname "$0")/check_heapmap.py" "$work/run.png" "$work/run.dump"
set +e
"$tool" run --library "$lib" -- sh -c 'exit 7'
status=$?
set -e
[ "$status" -eq 7 ] || { echo "exit status $status, want 7"; exit 1; }
if "$tool" run --library /nonexistent/libosmem-malloc.so -- true 2>"$work/run.err"; then
  echo "a missing library was not an error"; exit 1
fi
grep 'not found' "$work/run.err" >/dev/null
echo "osmem run: ok"
