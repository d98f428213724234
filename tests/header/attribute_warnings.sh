#!/usr/bin/env bash
# Compiles one case of snippets.c with -O2 -Wall -D_FORTIFY_SOURCE=2 and
# checks the compiler's diagnostics: EXPECT (an extended regex) must appear,
# or with --absent, must not.
#
#   attribute_warnings.sh CC INCLUDE_DIR CASE [--absent] EXPECT
set -uo pipefail
cc=$1 include=$2 case=$3
shift 3
absent=0
if [ "$1" = --absent ]; then
  absent=1
  shift
fi
expect=$1
here=$(dirname "$0")
out=$("$cc" -O2 -Wall -D_FORTIFY_SOURCE=2 -I"$include" -DCASE="$case" \
  -c "$here/snippets.c" -o /dev/null 2>&1)
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ]; then
  echo "FAIL: $cc did not compile case $case"
  exit 1
fi
if grep -Eq -- "$expect" <<<"$out"; then
  [ $absent -eq 0 ] && { echo "ok: '$expect' reported"; exit 0; }
  echo "FAIL: '$expect' reported for case $case, which is correct code"
  exit 1
fi
[ $absent -eq 1 ] && { echo "ok: no '$expect'"; exit 0; }
echo "FAIL: $cc gave no '$expect' for case $case"
exit 1
