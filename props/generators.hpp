// Size generators that reach the contract's edges.
//
// Uniform sizes almost never land on the boundaries where the contract
// changes its mind (the split remainder of 40, the calloc threshold at the
// page size, the mmap threshold, the request that overflows ALIGN8(n) + 32),
// so most of the weight goes to small windows around each of them. Each
// window is built so that RapidCheck shrinks towards a round, readable value.
#pragma once

#include <rapidcheck.h>

#include <cstddef>
#include <cstdint>

#include "block.hpp"

namespace osmem::props {

inline constexpr std::size_t kPage = 4096;
inline constexpr std::size_t kMmapThreshold = std::size_t{128} << 10;

// edge - span .. edge + span, shrinking towards edge - span.
inline rc::Gen<std::size_t> around(std::size_t edge, std::size_t span) {
  return rc::gen::map(rc::gen::inRange<std::size_t>(0, 2 * span + 1),
                      [edge, span](std::size_t d) { return edge - span + d; });
}

// A request size as a user might pass it, weighted towards the edges:
// around 0 and 8, the split remainder, the calloc threshold (page size) and
// the mmap threshold, plus plain small sizes so that long sequences fragment
// the heap.
inline rc::Gen<std::size_t> request_size() {
  using rc::gen::inRange;
  // The largest payloads still below each threshold: ALIGN8(n) + 32 < edge.
  constexpr std::size_t calloc_edge = kPage - kHeaderSize;
  constexpr std::size_t mmap_edge = kMmapThreshold - kHeaderSize;
  return rc::gen::weightedOneOf<std::size_t>({
      {8, inRange<std::size_t>(0, 17)},
      {6, around(40, 8)},
      {10, inRange<std::size_t>(1, 512)},
      {3, inRange<std::size_t>(512, 8192)},
      {3, around(calloc_edge, 8)},
      {3, around(mmap_edge, 8)},
      {2, inRange<std::size_t>(8192, 3 * kMmapThreshold)},
  });
}

// Sizes the engine must refuse: ALIGN8(n) + 32 overflows (no system call,
// ENOMEM) or the mapping is larger than the source will ever give.
inline rc::Gen<std::size_t> huge_size() {
  return rc::gen::oneOf(around(kMaxRequest, 8), rc::gen::element(SIZE_MAX, std::size_t{1} << 40));
}

// Any request size: mostly request_size(), sometimes huge_size().
inline rc::Gen<std::size_t> any_size() {
  return rc::gen::weightedOneOf<std::size_t>({{19, request_size()}, {1, huge_size()}});
}

// A size that always goes to the heap (ALIGN8(n) + 32 below the page size,
// so calloc does not map it either).
inline rc::Gen<std::size_t> small_heap_size() {
  return rc::gen::weightedOneOf<std::size_t>({
      {4, rc::gen::inRange<std::size_t>(1, 129)},
      {2, around(40, 8)},
      {1, rc::gen::inRange<std::size_t>(129, kPage - kHeaderSize - 8)},
  });
}

}  // namespace osmem::props
