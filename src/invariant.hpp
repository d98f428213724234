// What the heap checker can find wrong: one name per invariant, so a report
// (and a test) can say exactly which rule broke and at which block.
#pragma once

#include <cstddef>
#include <cstdint>

namespace osmem {

enum class Invariant : std::uint8_t {
  BlockOutOfHeap,    // a heap-list pointer outside the heap or misaligned
  CanaryMismatch,    // a header's canary does not match its fields
  LinkMismatch,      // prev/next disagree, or head/tail is not the end of the list
  AddressOrder,      // a block overlaps, or is not above, the one before it
  BadSize,           // size not a multiple of 8, or the block runs past the heap
  BadStatus,         // heap block not FREE/ALLOC, mapped block not MAPPED
  AdjacentFree,      // two touching heap blocks are both FREE
  HeapAccounting,    // block spans do not add up to the heap span, or segments
  IndexMismatch,     // the free index disagrees with the FREE blocks on the list
  MappedOrder,       // the mapping tree's order or priorities are broken
  MappedAccounting,  // mapped count or bytes disagree with a recount
  SlackOverwritten,  // debug records: a byte past the requested size changed
};

inline constexpr std::size_t kInvariantCount = 12;

const char* invariant_name(Invariant inv);

struct Violation {
  Invariant invariant;
  const void* block;  // the header concerned, or nullptr for whole-heap counts
};

}  // namespace osmem
