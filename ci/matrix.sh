# Sourced by ci/test and ci/sanitize: build a preset once, run ctest (with
# optional arguments) as one row of the result table, and keep the totals.
#
#   add_row NAME PRESET [ctest args...]
#   sanitize_rows           the sanitizer and Valgrind matrix
#   print_table; print_total

declare -A built=()
rows=()
total_passed=0
total_failed=0
status=0

build_preset() {
  local preset=$1
  [ -n "${built[$preset]:-}" ] && return "${built[$preset]}"
  echo "=== build: $preset"
  if cmake --preset "$preset" >"build/$preset.configure.log" 2>&1 &&
     cmake --build --preset "$preset" -- -j2 >"build/$preset.build.log" 2>&1; then
    built[$preset]=0
  else
    cat "build/$preset.configure.log" 2>/dev/null | tail -n 20
    tail -n 60 "build/$preset.build.log" 2>/dev/null
    echo "ci: preset $preset failed to build"
    built[$preset]=1
  fi
  return "${built[$preset]}"
}

add_row() {
  local name=$1 preset=$2
  shift 2
  local start
  start=$(date +%s)
  mkdir -p build
  if ! build_preset "$preset"; then
    rows+=("$(printf '%-14s %6s %6s %6s %6ss' "$name" - - build-failed $(($(date +%s) - start)))")
    status=1
    total_failed=$((total_failed + 1))
    return
  fi
  echo "=== tests: $name (ctest --preset $preset $*)"
  local log="build/$name.ctest.log"
  ctest --preset "$preset" "$@" 2>&1 | tee "$log" | grep -vE '^ +[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed|^ +Start +[0-9]+: '
  local rc=${PIPESTATUS[0]}
  local summary ran failed
  summary=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1)
  ran=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$summary")
  failed=$(sed -E 's/.* ([0-9]+) tests failed.*/\1/' <<<"$summary")
  [[ "$ran" =~ ^[0-9]+$ ]] || ran=0
  [[ "$failed" =~ ^[0-9]+$ ]] || failed=1
  if [ "$rc" -ne 0 ] || [ "$ran" -eq 0 ]; then
    status=1
    [ "$failed" -eq 0 ] && failed=1
  fi
  local passed=$((ran - failed))
  [ "$passed" -ge 0 ] || passed=0
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  rows+=("$(printf '%-14s %6s %6s %6s %6ss' "$name" "$ran" "$passed" "$failed" $(($(date +%s) - start)))")
}

# debug+checker: the full checker around every os_* call, Valgrind client
# requests compiled in (run natively here); asan+ubsan: poisoning, death
# tests, -fno-sanitize-recover=all; tsan: the thread tests; msan: the
# library and its plain C tests; valgrind: memcheck on the debug build.
sanitize_rows() {
  add_row debug+checker debug -LE valgrind
  add_row asan+ubsan asan
  add_row tsan tsan
  add_row msan msan
  if command -v valgrind >/dev/null; then
    add_row valgrind debug -L valgrind
  else
    echo "ci: valgrind is not installed (ci/bootstrap installs it); its row fails"
    rows+=("$(printf '%-14s %6s %6s %6s %6ss' valgrind - - missing 0)")
    status=1
    total_failed=$((total_failed + 1))
  fi
}

print_table() {
  echo
  printf '%-14s %6s %6s %6s %7s\n' build tests passed failed time
  printf '%s\n' "${rows[@]}"
  echo
}

print_total() {
  echo "total: $total_passed passed, $total_failed failed"
}
