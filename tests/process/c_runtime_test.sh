#!/bin/sh
# The shipped libraries need libc alone (docs/contract.md, "The library"):
#   - libosmem.so records no NEEDED entry but libc (and the loader), and
#     imports no symbol of the C++ runtime or the unwinder;
#   - libosmem.a contains no reference to them either, and a C program links
#     it with the plain C driver of each given compiler, and runs.
#   c_runtime_test.sh LIBOSMEM_SO LIBOSMEM_A INCLUDE_DIR PROGRAM.c CC...
set -u
so=$1 a=$2 inc=$3 prog=$4
shift 4
failed=0
fail() { echo "FAIL: $*"; failed=1; }

needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "NEEDED of $(basename "$so"): $(echo $needed)"
for lib in $needed; do
  case "$lib" in
    libc.so.*|ld-linux*) ;;
    *) fail "libosmem.so needs $lib" ;;
  esac
done

# C++ ABI, RTTI, operator new/delete, the unwinder, libstdc++ and libm symbols.
cxx='(^_Z|__cxa_(guard|begin|end|throw|allocate|rethrow|pure|atexit_thread)|__gxx_|_Unwind_|GLIBCXX|CXXABI|GCC_[0-9])'
imports=$(nm -D --undefined-only "$so" | awk '{print $NF}')
bad=$(echo "$imports" | grep -E "$cxx")
[ -z "$bad" ] || fail "libosmem.so imports C++ runtime symbols: $(echo $bad)"
bad=$(nm "$a" 2>/dev/null | awk '$1 == "U" {print $2}' | grep -E "$cxx" | grep -v '^_ZN5osmem' | sort -u)
[ -z "$bad" ] || fail "libosmem.a references C++ runtime symbols: $(echo $bad)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for cc in "$@"; do
  command -v "$cc" >/dev/null || { fail "compiler $cc not found"; continue; }
  if "$cc" -I"$inc" "$prog" "$a" -o "$tmp/app" 2>"$tmp/link.log"; then
    if "$tmp/app" >"$tmp/run.log" 2>&1; then
      echo "ok: $cc $(basename "$prog") libosmem.a links and runs"
    else
      fail "$cc static program failed: $(cat "$tmp/run.log")"
    fi
  else
    fail "$cc $(basename "$prog") libosmem.a does not link:"; cat "$tmp/link.log"
  fi
done
[ "$failed" -eq 0 ] && echo "ok: libc alone"
exit "$failed"
