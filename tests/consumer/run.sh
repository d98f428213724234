#!/usr/bin/env bash
# Builds and runs a consumer of osmem the way a user would, with one
# compiler pair. Each scenario prints what it did and ends with the
# consumer program's "app: ok"; any failure exits non-zero.
#
#   run.sh SCENARIO CC CXX SOURCE_DIR WORK_DIR
#
#   install          configure, build and `cmake --install` osmem into WORK_DIR/prefix
#   find_package     a CMake project using find_package(osmem) on that prefix
#   pkg_config       a C program compiled and linked with `pkg-config osmem`
#   static_c         `cc app.c libosmem.a` from that prefix, with the C driver
#   add_subdirectory a CMake project with osmem as a subdirectory, on a machine
#                    without GoogleTest/RapidCheck: no tests built, no -Werror
#   asan_c           osmem built with -fsanitize=address,undefined, linked into a
#                    C program by the C driver
set -euo pipefail
scenario=$1 cc=$2 cxx=$3 src=$4 work=$5
here=$(cd "$(dirname "$0")" && pwd)
prefix=$work/prefix
mkdir -p "$work"
# Each scenario is one of up to two ctest jobs on a 2-core machine.
jobs=1

logged() {  # log command...: runs the command into log; shows the log if it fails
  local log=$1
  shift
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log"
    echo "run.sh: failed: $*"
    exit 1
  fi
}

configure_osmem() {  # build_dir [cmake args...]
  local dir=$1
  shift
  rm -rf "$dir" "$dir.log"
  logged "$dir.log" cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release -DOSMEM_BUILD_TESTS=OFF \
    -DOSMEM_BUILD_EXAMPLES=OFF "$@"
}

run_app() {  # program
  echo "+ $*"
  "$@"
}

case $scenario in
  install)
    configure_osmem "$work/osmem-build"
    logged "$work/osmem-build.log" cmake --build "$work/osmem-build" -j $jobs
    rm -rf "$prefix"
    logged "$work/osmem-build.log" cmake --install "$work/osmem-build" --prefix "$prefix"
    (cd "$prefix" && find . | sort)
    soname=$(readelf -d "$prefix/lib/libosmem.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    echo "SONAME: $soname"
    [ "$soname" = libosmem.so.0 ] || { echo "run.sh: SONAME is '$soname', not libosmem.so.0"; exit 1; }
    [ "$(readlink "$prefix/lib/libosmem.so.0")" = libosmem.so.0.1.0 ] ||
      { echo "run.sh: libosmem.so.0 does not point to libosmem.so.0.1.0"; exit 1; }
    # The installed command finds its modules under share/osmem/python.
    # Outputs go to files first: under pipefail, a reader that quits early
    # (head, grep -q) would fail the pipeline with the writer's SIGPIPE.
    "$prefix/bin/osmem" dump --help >"$work/osmem-help.txt"
    head -n 1 "$work/osmem-help.txt"
    printf 'heap version=1 span=0 segments=0 mappings=0\nsummary blocks=0 alloc=0 free=0 mapped=0 alloc_bytes=0 free_bytes=0 largest_free=0 mapped_bytes=0\n' |
      "$prefix/bin/osmem" dump - >"$work/osmem-dump.json"
    grep -q '"snapshots"' "$work/osmem-dump.json" ||
      { echo "run.sh: the installed osmem command does not convert a dump"; exit 1; }
    ;;
  find_package)
    rm -rf "$work/find_package" "$work/find_package.log"
    logged "$work/find_package.log" cmake -S "$here/find_package" -B "$work/find_package" \
      -G Ninja -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix"
    logged "$work/find_package.log" cmake --build "$work/find_package" -j $jobs
    run_app "$work/find_package/app_shared"
    run_app "$work/find_package/app_static"
    ;;
  pkg_config)
    export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
    echo "pkg-config --modversion osmem: $(pkg-config --modversion osmem)"
    flags=$(pkg-config --cflags --libs osmem)
    echo "pkg-config --cflags --libs osmem: $flags"
    # shellcheck disable=SC2086
    "$cc" -Wall -Werror "$here/app.c" $flags -Wl,-rpath,"$(pkg-config --variable=libdir osmem)" \
      -o "$work/app_pkg_config"
    run_app "$work/app_pkg_config"
    readelf -d "$work/app_pkg_config" >"$work/app_pkg_config.dynamic"
    grep -q 'NEEDED.*libosmem.so.0' "$work/app_pkg_config.dynamic" ||
      { echo "run.sh: app_pkg_config does not NEED libosmem.so.0"; exit 1; }
    ;;
  static_c)
    echo "+ $cc -I$prefix/include app.c $prefix/lib/libosmem.a"
    "$cc" -Wall -Werror -I"$prefix/include" "$here/app.c" "$prefix/lib/libosmem.a" \
      -o "$work/app_static_c"
    run_app "$work/app_static_c"
    ;;
  add_subdirectory)
    rm -rf "$work/add_subdirectory" "$work/add_subdirectory.log"
    # As on a machine without the test frameworks.
    logged "$work/add_subdirectory.log" cmake -S "$here/add_subdirectory" \
      -B "$work/add_subdirectory" -G Ninja -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
      -DOSMEM_SOURCE_DIR="$src" -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON \
      -DCMAKE_DISABLE_FIND_PACKAGE_rapidcheck=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON
    if grep -q -- '-Werror' "$work/add_subdirectory/build.ninja"; then
      echo "run.sh: the consumer's build uses -Werror"
      exit 1
    fi
    targets=$(ninja -C "$work/add_subdirectory" -t targets all | sed -n 's/^\([^:]*\): .*/\1/p')
    if grep -E 'osmem_testkit|_test$|props_test|osmem_bench|osmem_demo' <<<"$targets"; then
      echo "run.sh: the consumer's build has osmem's tests or examples in it"
      exit 1
    fi
    echo "no osmem tests, examples or -Werror in the consumer's build"
    logged "$work/add_subdirectory.log" cmake --build "$work/add_subdirectory" -j $jobs
    run_app "$work/add_subdirectory/app_shared"
    run_app "$work/add_subdirectory/app_static"
    ;;
  asan_c)
    # The asan preset's flags.
    san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    configure_osmem "$work/osmem-asan" -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" \
      -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined"
    logged "$work/osmem-asan.log" cmake --build "$work/osmem-asan" -j $jobs --target osmem_static
    echo "+ $cc -fsanitize=address,undefined app.c libosmem.a (asan build)"
    "$cc" $san -I"$src/include" "$here/app.c" "$work/osmem-asan/libosmem.a" -o "$work/app_asan_c"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
      run_app "$work/app_asan_c"
    ;;
  *)
    echo "run.sh: unknown scenario '$scenario'"
    exit 2
    ;;
esac
