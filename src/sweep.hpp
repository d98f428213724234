// The round-robin cursor of the `sweep` check level (check_level.hpp).
//
// Each operation examines the next K blocks in a fixed order, heap list
// first (address order), then the mappings (address order, found by a
// successor query in the mapping tree), then around again, so a block that
// is damaged and never touched again is still examined within ceil(n / K)
// operations of n blocks.
//
// The cursor survives the heap changing under it. It remembers the next
// heap block to examine and the one examined just before it. Between two
// steps one operation runs, which may merge the cursor's block into a
// neighbour: its header then stays behind, sealed, inside the merged block
// (no longer on the list), or is partly overwritten by a split's new header.
// So a step resumes at the remembered block only if it is still on the list
// (on_heap_list), else at the block before it (examining it again also
// checks the canary of whatever follows it, so real damage at the cursor is
// still named), else at the start of the heap. A mapping is remembered by
// its address alone, which no free can invalidate.
#pragma once

#include <cstddef>
#include <cstdint>

#include "block_check.hpp"

namespace osmem {

class SweepCursor {
 public:
  // Examines up to k blocks from where the last step stopped; returns true
  // and the first violation as soon as one is found (the cursor then stays
  // at the damaged block). `more(b, out)` adds checks of a sound ALLOC or
  // MAPPED block (the debug records' slack check).
  template <class HeapT, class More>
  bool step(const HeapT& heap, std::size_t k, Violation& out, More&& more) {
    std::size_t wraps = 0;  // an empty heap with no mappings ends the step
    bool chained = false;   // the previous heap block was examined in this step
    for (std::size_t done = 0; done < k && wraps < 2;) {
      if (!in_mappings_) {
        const BlockMeta* b = resume(heap);
        if (b == nullptr) {
          enter_mappings();
          ++wraps;
          continue;
        }
        // Within a step, the link back to the block before was checked from
        // that block (as its next); the first block of a step checks it.
        if (check_heap_block(heap, b, out, !chained)) return true;
        chained = true;
        if (status_of(b) == Status::Alloc && more(b, out)) return true;
        ++done;
        ++examined_;
        examined_before_ = b;
        next_ = next_of(b);
        if (next_ == nullptr) enter_mappings();
      } else {
        const BlockMeta* corrupted = nullptr;
        const BlockMeta* m = successor(heap, mapped_after_, corrupted);
        if (corrupted != nullptr) {
          out = Violation{Invariant::CanaryMismatch, corrupted};
          return true;
        }
        if (m == nullptr) {
          in_mappings_ = false;  // around again, from the start of the heap
          next_ = examined_before_ = nullptr;
          ++rounds_;
          ++wraps;
          continue;
        }
        if (check_mapped_block(heap, m, out) || more(m, out)) return true;
        ++done;
        ++examined_;
        mapped_after_ = addr_of(m);
      }
    }
    return false;
  }

  template <class HeapT>
  bool step(const HeapT& heap, std::size_t k, Violation& out) {
    return step(heap, k, out, [](const BlockMeta*, Violation&) { return false; });
  }

  // Blocks examined so far, and complete rounds over the heap (statistics).
  std::uint64_t examined() const { return examined_; }
  std::uint64_t rounds() const { return rounds_; }

 private:
  static Status status_of(const BlockMeta* b) {
    const OpenHeader open(b);
    return b->status;
  }

  void enter_mappings() {
    in_mappings_ = true;
    mapped_after_ = 0;
  }

  // The heap block to examine next (null at the end of the list).
  template <class HeapT>
  const BlockMeta* resume(const HeapT& heap) const {
    if (next_ == nullptr && examined_before_ == nullptr) return heap.blocks().head();
    if (live(heap, next_)) return next_;
    if (live(heap, examined_before_)) return examined_before_;
    return heap.blocks().head();
  }

  template <class HeapT>
  static bool live(const HeapT& heap, const BlockMeta* b) {
    if (b == nullptr || !HeapT::aligned(addr_of(b)) || !heap.in_heap(b, kHeaderSize)) return false;
    {
      const OpenHeader open(b);
      if (!heap.sealer().intact(b)) return false;
    }
    return on_heap_list(heap, b);
  }

  // The mapping with the lowest header address above `after`, or null; a
  // node whose canary is broken stops the walk (its links are not followed).
  template <class HeapT>
  static const BlockMeta* successor(const HeapT& heap, std::uintptr_t after,
                                    const BlockMeta*& corrupted) {
    const BlockMeta* best = nullptr;
    const BlockMeta* n = heap.mappings().root();
    for (int depth = 0; n != nullptr && depth < kMaxMappedDepth; ++depth) {
      if (!HeapT::aligned(addr_of(n)) || heap.in_heap(n, kHeaderSize)) {
        corrupted = n;
        return nullptr;
      }
      const OpenHeader open(n);
      if (!heap.sealer().intact(n)) {
        corrupted = n;
        return nullptr;
      }
      if (addr_of(n) > after) {
        best = n;
        n = n->prev;  // left: lower addresses
      } else {
        n = n->next;
      }
    }
    return best;
  }

  static constexpr int kMaxMappedDepth = 256;  // as the checker's bound

  const BlockMeta* next_ = nullptr;             // heap block to examine next
  const BlockMeta* examined_before_ = nullptr;  // the heap block examined last
  bool in_mappings_ = false;
  std::uintptr_t mapped_after_ = 0;  // mappings at or below this are done this round
  std::uint64_t examined_ = 0;
  std::uint64_t rounds_ = 0;
};

}  // namespace osmem
