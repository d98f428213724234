#!/usr/bin/env bash
# Bad dumps: the command exits 2 with a message naming the problem (and the
# line), never a Python traceback.
#   bad_dump_test.sh OSMEM_TOOL WORK_DIR
set -uo pipefail
tool=$1 work=$2
fail=0
expect() {  # name expected-message-regex dump-text
  printf '%s' "$3" >"$work/bad.dump"
  local out rc
  out=$("$tool" heapmap "$work/bad.dump" -o "$work/bad.png" 2>&1)
  rc=$?
  if [ $rc -eq 2 ] && grep -Eq -- "$2" <<<"$out" && ! grep -q Traceback <<<"$out"; then
    echo "ok: $1: $out"
  else
    echo "FAIL: $1 (exit $rc): $out"
    fail=1
  fi
}
ok_block='block user=0x1020 header=0x1000 size=64 status=alloc prev=0x0 next=0x0'
expect "no dump" "no heap dump" $'hello\n'
expect "cut short" "dump 1 has no summary" $'heap version=1 span=96 segments=1 mappings=0\n'"$ok_block"$'\n'
expect "bad status" "bad.dump:2: status=garbage" \
  $'heap version=1 span=96 segments=1 mappings=0\nblock user=0x1020 header=0x1000 size=64 status=garbage prev=0x0 next=0x0\n'
expect "bad number" "bad.dump:2: size=6x4 is not a number" \
  $'heap version=1 span=96 segments=1 mappings=0\nblock user=0x1020 header=0x1000 size=6x4 status=alloc prev=0x0 next=0x0\n'
expect "summary disagrees" "summary counts 2 blocks, the dump lists 1" \
  $'heap version=1 span=96 segments=1 mappings=0\n'"$ok_block"$'\nsummary blocks=2 alloc=1 free=0 mapped=0 alloc_bytes=64 free_bytes=0 largest_free=0 mapped_bytes=0\n'
expect "newer format" "format version 2" $'heap version=2 span=0 segments=0 mappings=0\n'
exit $fail
