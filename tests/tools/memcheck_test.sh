#!/usr/bin/env bash
# Runs memcheck_program under memcheck and asserts that memcheck saw both of
# its bugs on osmem memory: the leaked os_malloc block and the read of a
# freed one (with the block's free recorded).
set -uo pipefail
program=$1
out=$(valgrind --leak-check=full --error-exitcode=0 "$program" 2>&1)
echo "$out"
status=0
expect() {
  if ! grep -qE "$1" <<<"$out"; then
    echo "memcheck_test: memcheck did not report: $1"
    status=1
  fi
}
expect 'definitely lost: 100 bytes in 1 blocks'
expect 'Invalid read of size 1'
expect 'Address 0x[0-9A-Fa-f]+ is 3 bytes inside a block of size 64 free.d'
exit $status
