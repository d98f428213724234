#!/bin/bash -eu
# Builds osmem's fuzz targets the OSS-Fuzz / ClusterFuzzLite way: compiler
# and flags from $CC/$CXX/$CFLAGS/$CXXFLAGS (they carry the sanitizer and
# -fsanitize=fuzzer-no-link), the engine from $LIB_FUZZING_ENGINE, the
# results in $OUT: one binary per target, <target>_seed_corpus.zip and
# <target>.dict beside it.
#
# To run these steps outside the builder image (docs/fuzzing.md):
#   SRC=/tmp/cfl-src OUT=/tmp/cfl-out WORK=/tmp/cfl-work CC=clang CXX=clang++ \
#   CFLAGS="-O1 -fno-omit-frame-pointer -gline-tables-only -fsanitize=address -fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link" \
#   CXXFLAGS="$CFLAGS" LIB_FUZZING_ENGINE=-fsanitize=fuzzer .clusterfuzzlite/build.sh
# with the checkout at $SRC/osmem.

src="$SRC/osmem"
build="${WORK:-/tmp}/osmem-fuzz-build"
targets="ops faults corruption api"

# The engine's flags go into the compile flags as well: with the
# sanitizers, ASan's runtime must be linked into every executable.
cmake -S "$src" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_C_FLAGS="$CFLAGS" -DCMAKE_CXX_FLAGS="$CXXFLAGS" \
  -DCMAKE_C_FLAGS_RELEASE="" -DCMAKE_CXX_FLAGS_RELEASE="" \
  -DOSMEM_BUILD_TESTS=OFF -DOSMEM_BUILD_FUZZERS=ON \
  -DOSMEM_FUZZ_ENGINE="$LIB_FUZZING_ENGINE"
cmake --build "$build" --target fuzzers -- -j"$(nproc)"

mkdir -p "$OUT"
for t in $targets; do
  cp "$build/fuzz/$t" "$OUT/$t"
  # Seeds and past crashes (fixed ones: they must keep passing) alike.
  rm -f "$OUT/${t}_seed_corpus.zip"
  zip -q -j "$OUT/${t}_seed_corpus.zip" "$src/fuzz/corpus/$t"/* \
    $(find "$src/fuzz/regressions/$t" -type f ! -name '.*')
  if [ -f "$src/fuzz/$t.dict" ]; then cp "$src/fuzz/$t.dict" "$OUT/$t.dict"; fi
done
