#!/bin/sh
# A negative control: runs a test against something known to be broken and
# passes only if the test fails the way it should, so the test is shown to
# bite. Exit status and a line of the report are both checked: a test that
# failed for another reason (a crash, a set-up error) does not count.
#   expect_failure.sh STATUS PATTERN COMMAND [ARG...]
#     STATUS   the exit status COMMAND must return
#     PATTERN  an extended regular expression one line of its output must match
set -u
want=$1 pattern=$2
shift 2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" >"$out" 2>&1
status=$?
cat "$out"
if [ "$status" -ne "$want" ]; then
  echo "FAIL: the negative control exited $status, not $want: the test did not fail as it must"
  exit 1
fi
if ! grep -Eq -- "$pattern" "$out"; then
  echo "FAIL: the negative control's report has no line matching: $pattern"
  exit 1
fi
echo "ok: failed as it must (exit $status, a line matches: $pattern)"
