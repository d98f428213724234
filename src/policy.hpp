// The two policies one engine runs under (docs/contract.md).
//
// SeedConfig is the seed's contract, exactly: 8-byte alignment, malloc(0)
// is NULL, the heap grows by exactly what is missing and never shrinks,
// mapped blocks hold exactly the request and move on every realloc.
//
// MallocConfig is the process's malloc (libosmem-malloc.so, contract part
// II): what C and C++ programs rely on from glibc. Each value below says
// where it comes from.
#pragma once

#include <cstddef>

#include "free_tree.hpp"

namespace osmem {

struct SeedConfig {
  // Payload alignment; sizes round up to it.
  static constexpr std::size_t kAlign = 8;
  // Blocks whose header + rounded size reach this are mapped (rule 3).
  static constexpr std::size_t kMmapThreshold = std::size_t{128} << 10;
  // The first sbrk (rule 5).
  static constexpr std::size_t kHeapPrealloc = std::size_t{128} << 10;
  // calloc maps at the page size (rule 3), not at kMmapThreshold.
  static constexpr bool kCallocMapsAtPage = true;
  // malloc(0), calloc with a zero factor and realloc(NULL, 0) return NULL.
  static constexpr bool kZeroIsNull = true;
  // sbrk at least this much (rounded to pages) when the heap must grow;
  // 0: exactly what is missing (rule 6).
  static constexpr std::size_t kGrowthStep = 0;
  // Give the top of the heap back when the last block is FREE and larger
  // than this; 0: never (rule 6: heap memory is never given back).
  static constexpr std::size_t kTrimThreshold = 0;
  // What a trim leaves in the last block.
  static constexpr std::size_t kTopPad = 0;
  // Mapped blocks own the whole pages they span (capacity to the page end),
  // and realloc resizes them with mremap instead of moving them.
  static constexpr bool kRemap = false;
  // realloc of a FREE block: false returns NULL, changing nothing (rule 11);
  // true is a fatal use after free.
  static constexpr bool kReallocFreedIsFatal = false;
  using FreeIndex = FreeTree;
};

// The seed's contract is the default.
using DefaultConfig = SeedConfig;

struct MallocConfig {
  // alignof(max_align_t) on x86-64 and AArch64, what malloc promises (C17
  // 7.22.3) and what SSE stores of a malloc'ed struct assume.
  static constexpr std::size_t kAlign = 16;
  // glibc's M_MMAP_THRESHOLD default (DEFAULT_MMAP_THRESHOLD_MIN).
  static constexpr std::size_t kMmapThreshold = std::size_t{128} << 10;
  static constexpr std::size_t kHeapPrealloc = std::size_t{128} << 10;
  static constexpr bool kCallocMapsAtPage = false;
  // glibc: malloc(0) is a unique, freeable pointer.
  static constexpr bool kZeroIsNull = false;
  // glibc grows its main arena by the request plus M_TOP_PAD (128 KiB).
  static constexpr std::size_t kGrowthStep = std::size_t{128} << 10;
  // glibc's M_TRIM_THRESHOLD default; a trim keeps M_TOP_PAD.
  static constexpr std::size_t kTrimThreshold = std::size_t{128} << 10;
  static constexpr std::size_t kTopPad = std::size_t{128} << 10;
  static constexpr bool kRemap = true;
  static constexpr bool kReallocFreedIsFatal = true;
  using FreeIndex = FreeTree;
};

}  // namespace osmem
