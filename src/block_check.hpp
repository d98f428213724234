// The checker's rules for one block at a time: what the `local` and `sweep`
// check levels apply to the blocks they visit (check_level.hpp).
//
// check_heap_block(b) verifies everything the full checker would say about
// b that can be judged from b and its list neighbours alone: b lies in the
// heap, its canary is intact, its status and size are valid, its links
// agree with its neighbours' (whose canaries are checked before their links
// are read), the next block starts at or after b's end, two touching blocks
// are not both FREE, and a FREE block has its record in the free index
// (one root-to-leaf walk, O(log n)). Heap-wide counts (accounting, the
// index's totals) are left to the full checker.
//
// One cause, one report: the first violation ends the check of a block, so
// a damaged header is named once and nothing is read from it afterwards.
// Like the checker it never dereferences a pointer before showing it lies
// in memory the heap owns, and it opens headers to memory tools only while
// it reads them.
#pragma once

#include <cstddef>

#include "block.hpp"
#include "canary.hpp"
#include "invariant.hpp"
#include "mapped.hpp"

namespace osmem {

// The first violation found at heap block b (or its links), or false.
// `with_prev` false leaves out the link to the block before (the sweep
// checked it when it examined that block, as its `next`).
template <class HeapT>
bool check_heap_block(const HeapT& heap, const BlockMeta* b, Violation& out,
                      bool with_prev = true) {
  auto readable = [&](const BlockMeta* x) {
    return HeapT::aligned(addr_of(x)) && heap.in_heap(x, kHeaderSize);
  };
  auto fail = [&](Invariant inv, const BlockMeta* at) {
    out = Violation{inv, at};
    return true;
  };
  const Sealer& sealer = heap.sealer();
  if (!readable(b)) return fail(Invariant::BlockOutOfHeap, b);
  const OpenHeader open(b);
  if (!sealer.intact(b)) return fail(Invariant::CanaryMismatch, b);
  if (b->status != Status::Free && b->status != Status::Alloc) return fail(Invariant::BadStatus, b);
  if (b->size % kAlignment != 0 || !heap.spans_heap(b)) return fail(Invariant::BadSize, b);

  const BlockMeta* prev = b->prev;
  if (!with_prev) {
    // checked from the block before
  } else if (prev == nullptr) {
    if (heap.blocks().head() != b) return fail(Invariant::LinkMismatch, b);
  } else {
    if (!readable(prev) || prev >= b) return fail(Invariant::AddressOrder, b);
    const OpenHeader open_prev(prev);
    if (!sealer.intact(prev)) return fail(Invariant::CanaryMismatch, prev);
    if (prev->next != b) return fail(Invariant::LinkMismatch, b);
  }

  const BlockMeta* next = b->next;
  if (next == nullptr) {
    if (heap.blocks().tail() != b) return fail(Invariant::LinkMismatch, b);
  } else {
    if (!readable(next) || reinterpret_cast<const std::byte*>(next) < b->end()) {
      return fail(Invariant::AddressOrder, b);
    }
    const OpenHeader open_next(next);
    if (!sealer.intact(next)) return fail(Invariant::CanaryMismatch, next);
    if (next->prev != b) return fail(Invariant::LinkMismatch, next);
    if (touches(b, next) && b->status == Status::Free && next->status == Status::Free) {
      return fail(Invariant::AdjacentFree, b);
    }
  }
  if (b->status == Status::Free && !heap.free_index().contains(b)) {
    return fail(Invariant::IndexMismatch, b);
  }
  return false;
}

// The first violation found at mapped block m, which the caller reached
// through the mapping tree (so m is not in the heap's range).
template <class HeapT>
bool check_mapped_block(const HeapT& heap, const BlockMeta* m, Violation& out) {
  if (!HeapT::aligned(addr_of(m)) || heap.in_heap(m, kHeaderSize)) {
    out = Violation{Invariant::MappedOrder, m};
    return true;
  }
  const OpenHeader open(m);
  if (!heap.sealer().intact(m)) {
    out = Violation{Invariant::CanaryMismatch, m};
  } else if (m->status != Status::Mapped) {
    out = Violation{Invariant::BadStatus, m};
  } else if (m->size % kAlignment != 0 || m->size > SIZE_MAX - kHeaderSize) {
    out = Violation{Invariant::BadSize, m};
  } else {
    return false;
  }
  return true;
}

// Is b, whose canary is intact, still on the heap list? A block that merged
// into a neighbour leaves its header behind, sealed and FREE, inside the
// merged block; such a stale header's neighbours no longer point at it.
template <class HeapT>
bool on_heap_list(const HeapT& heap, const BlockMeta* b) {
  const OpenHeader open(b);
  const BlockMeta* prev = b->prev;
  if (prev == nullptr) return heap.blocks().head() == b;
  if (!HeapT::aligned(addr_of(prev)) || !heap.in_heap(prev, kHeaderSize)) return false;
  const OpenHeader open_prev(prev);
  return heap.sealer().intact(prev) && prev->next == b;
}

}  // namespace osmem
