#!/bin/sh
# The first system call osmem makes in a process is sbrk(131072): under
# strace, the first brk/mmap/munmap after first_break's marker write must be
# brk(initial break + 0x20000); and nothing before main moved the break (no
# brk call before the marker but brk(NULL)).
#   first_break_strace.sh PATH/TO/first_break
set -u
prog=$1
log=$(mktemp)
out=$(mktemp)
trap 'rm -f "$log" "$out"' EXIT
if ! strace -qq -e trace=brk,mmap,munmap,write -o "$log" "$prog" --mark >"$out"; then
  echo "first_break failed under strace:"; cat "$out"; exit 1
fi
initial=$(sed -n 's/^initial break \(0x[0-9a-f]*\)$/\1/p' "$out")
[ -n "$initial" ] || { echo "no initial break printed"; cat "$out"; exit 1; }
expected=$(printf '0x%x' $((initial + 131072)))
first=$(awk '/osmem-first-call/ { seen = 1; next }
             seen && /^(brk|mmap|munmap)\(/ { $1 = $1; print; exit }' "$log")
early=$(awk '/osmem-first-call/ { exit } /^brk\(/ && !/^brk\(NULL\)/ { $1 = $1; print }' "$log")
if [ -n "$early" ]; then
  echo "the break moved before main:"; echo "$early"; exit 1
fi
echo "initial break $initial; first call after the marker: $first"
case "$first" in
  "brk($expected) = $expected") echo "ok: sbrk(131072) first"; exit 0 ;;
  *) echo "expected: brk($expected) = $expected"; echo "--- strace log:"; cat "$log"; exit 1 ;;
esac
