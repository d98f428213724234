// The heap checker, statistics and dumps: everything that reads the heap
// without changing it.
//
// The checker must survive a heap full of garbage, so it never dereferences
// a pointer it has not first shown to lie inside memory the heap owns:
// heap-list pointers are range- and alignment-checked against the heap's
// span, and heap-list addresses must strictly increase (so a corrupted link
// cannot make the walk loop); mapping-tree children are followed only from
// a node whose canary (which covers the links) is intact, and the walk is
// bounded by an explicit stack and by the recorded mapping count. Each
// header is opened to memory tools (OpenHeader) only once it is known to lie
// in memory the heap owns, and only while it is being read.
#pragma once

#include <initializer_list>

#include "heap.hpp"

namespace osmem {

template <MemorySource Source, class Config>
std::size_t Heap<Source, Config>::check(Violation* out, std::size_t capacity) const {
  std::size_t found = 0;
  auto add = [&](Invariant inv, const void* block) {
    if (found < capacity) out[found] = Violation{inv, block};
    ++found;
  };
  auto readable = [&](const BlockMeta* b) {
    return aligned(addr_of(b)) && in_heap(b, kHeaderSize);
  };
  // A neighbour's status is read only when its header is sound: a damaged
  // one is named when the walk reaches it, not blamed on the block before.
  auto sound_and_free = [&](const BlockMeta* b) {
    const OpenHeader open(b);
    return sealer_.intact(b) && b->status == Status::Free;
  };

  // The heap list, in address order.
  std::size_t span = 0, free_count = 0, free_bytes = 0, segments = 0;
  const BlockMeta* prev = nullptr;
  const BlockMeta* b = list_.head();
  bool complete = true;
  if (b == nullptr && list_.tail() != nullptr) add(Invariant::LinkMismatch, list_.tail());
  while (b != nullptr) {
    const std::size_t found_before = found;
    if (!readable(b)) {
      add(Invariant::BlockOutOfHeap, b);
      complete = false;
      break;
    }
    const OpenHeader open(b);
    if (!sealer_.intact(b)) add(Invariant::CanaryMismatch, b);
    if (b->prev != prev) add(Invariant::LinkMismatch, b);
    if (b->status != Status::Free && b->status != Status::Alloc) add(Invariant::BadStatus, b);
    if (b->size % kAlign != 0 || !spans_heap(b)) {
      add(Invariant::BadSize, b);
      complete = false;
      break;  // its end is meaningless, so the next block cannot be judged
    }
    if (prev == nullptr || !touches(prev, b)) ++segments;
    span += kHeaderSize + b->size;
    if (b->status == Status::Free) {
      ++free_count;
      free_bytes += b->size;
    }
    const BlockMeta* next = b->next;
    if (next == nullptr) {
      if (b != list_.tail()) add(Invariant::LinkMismatch, b);
    } else if (reinterpret_cast<const std::byte*>(next) < b->end()) {
      add(Invariant::AddressOrder, b);
      complete = false;
      break;  // following it could revisit blocks
    } else if (touches(b, next) && readable(next) && b->status == Status::Free &&
               sound_and_free(next)) {
      add(Invariant::AdjacentFree, b);
    }
    // Only a block that is sound itself can be looked up by its key.
    if (b->status == Status::Free && found == found_before && !index_.contains(b)) {
      add(Invariant::IndexMismatch, b);
    }
    prev = b;
    b = next;
  }
  if (complete) {
    if (prev != list_.tail()) add(Invariant::LinkMismatch, list_.tail());
    if (span != heap_bytes_ || segments != segments_) add(Invariant::HeapAccounting, nullptr);
    if (free_count != index_.count() || free_bytes != index_.bytes()) {
      add(Invariant::IndexMismatch, nullptr);
    }
  }
  // The index's own structure, once the list is sound: a broken list makes
  // the index look wrong in ways that only repeat what was reported above.
  if (found == 0) index_.check(sealer_, readable, add);

  // The mapping tree: in-order keys, heap-ordered priorities.
  struct Frame {
    const BlockMeta* node;
    std::uintptr_t lo, hi;  // exclusive bounds on the node's address
    std::uint64_t parent_priority;
  };
  constexpr std::size_t kMaxDepth = 256;
  Frame stack[kMaxDepth];
  std::size_t depth = 0;
  std::size_t count = 0, bytes = 0;
  bool mapped_complete = true;
  if (mapped_.root() != nullptr) stack[depth++] = Frame{mapped_.root(), 0, UINTPTR_MAX, UINT64_MAX};
  while (depth > 0) {
    const Frame f = stack[--depth];
    const BlockMeta* n = f.node;
    if (!aligned(addr_of(n)) || in_heap(n, kHeaderSize)) {
      add(Invariant::MappedOrder, n);
      mapped_complete = false;
      continue;
    }
    const OpenHeader open(n);
    if (!sealer_.intact(n)) {
      add(Invariant::CanaryMismatch, n);
      mapped_complete = false;
      continue;  // its links cannot be trusted
    }
    if (n->status != Status::Mapped) add(Invariant::BadStatus, n);
    if (n->size % kAlign != 0 || n->size > SIZE_MAX - kHeaderSize) add(Invariant::BadSize, n);
    const std::uint64_t priority = sealer_.priority(n);
    if (addr_of(n) <= f.lo || addr_of(n) >= f.hi || priority > f.parent_priority) {
      add(Invariant::MappedOrder, n);
    }
    if (++count > mapped_.count()) {
      add(Invariant::MappedAccounting, n);
      mapped_complete = false;
      break;  // more nodes than mappings: stop before any cycle matters
    }
    bytes += kHeaderSize + n->size;
    for (const BlockMeta* child :
         {static_cast<const BlockMeta*>(n->prev), static_cast<const BlockMeta*>(n->next)}) {
      if (child == nullptr) continue;
      if (depth == kMaxDepth) {
        add(Invariant::MappedOrder, n);
        mapped_complete = false;
        continue;
      }
      const bool is_left = child == n->prev;
      stack[depth++] =
          Frame{child, is_left ? f.lo : addr_of(n), is_left ? addr_of(n) : f.hi, priority};
    }
  }
  if (mapped_complete && (count != mapped_.count() || bytes != mapped_.bytes())) {
    add(Invariant::MappedAccounting, nullptr);
  }
  return found;
}

template <MemorySource Source, class Config>
void Heap<Source, Config>::stats(struct ::os_heap_stats* out) const {
  *out = {};
  // Walk only as far as the list is sound; the checker reports the rest.
  const std::byte* prev_end = nullptr;
  for (const BlockMeta* b = list_.head(); b != nullptr; b = next_of(b)) {
    if (!aligned(addr_of(b)) || !in_heap(b, kHeaderSize) ||
        reinterpret_cast<const std::byte*>(b) < prev_end) {
      break;
    }
    const OpenHeader open(b);
    if (!spans_heap(b)) break;
    prev_end = b->end();
    ++out->heap_blocks;
    if (b->status == Status::Free) {
      ++out->free_blocks;
      out->heap_bytes_free += b->size;
    } else {
      out->heap_bytes_in_use += b->size;
    }
  }
  out->heap_span = heap_bytes_;
  out->heap_segments = segments_;
  out->mapped_blocks = mapped_.count();
  out->mapped_bytes = mapped_.bytes();
  out->sbrk_calls = sbrk_calls_;
  out->mmap_calls = mmap_calls_;
  out->mremap_calls = mremap_calls_;
  out->trims = trims_;
  out->munmap_calls = munmap_calls_;
  out->searches = search_.searches;
  out->search_visits = search_.visits;
  out->search_visits_max = search_.max_visits;
  out->index_operations = index_.walks().searches;
  out->index_visits = index_.walks().visits;
  out->index_visits_max = index_.walks().max_visits;
  out->index_record_bytes = RecordPool::kRecordBytes;
  out->index_records = index_.records().in_use();
  out->index_records_max = index_.records().high_water();
  out->index_record_capacity = index_.records().capacity();
  out->heap_span_limit = index_.max_span();
}

namespace detail {

// `damaged`: the canary does not match, so the values are only what the
// bytes read as, and the line says so.
inline void dump_header(LineBuffer& line, const char* label, const BlockMeta* b, bool damaged,
                        int fd) {
  const OpenHeader open(b);
  line.text(label)
      .hex(addr_of(b))
      .text(" size ")
      .dec(b->size)
      .text(" ")
      .text(status_name(b->status))
      .text(" prev ")
      .hex(reinterpret_cast<std::uintptr_t>(b->prev))
      .text(" next ")
      .hex(reinterpret_cast<std::uintptr_t>(b->next))
      .text(damaged ? " (damaged: canary mismatch, values as read)\n" : "\n");
  line.flush(fd);
}

// One dump line per block, in the format docs/heap-dump.md specifies (the
// `osmem` command parses it): key=value fields, so fields can be added.
struct DumpTotals {
  std::size_t blocks = 0, alloc = 0, free = 0, mapped = 0;
  std::size_t alloc_bytes = 0, free_bytes = 0, largest_free = 0, mapped_bytes = 0;

  void count(const BlockMeta* b) {
    ++blocks;
    switch (b->status) {
      case Status::Alloc:
        ++alloc;
        alloc_bytes += b->size;
        break;
      case Status::Free:
        ++free;
        free_bytes += b->size;
        if (b->size > largest_free) largest_free = b->size;
        break;
      case Status::Mapped:
        ++mapped;
        mapped_bytes += b->size;
        break;
    }
  }
};

inline void dump_block(LineBuffer& line, const BlockMeta* b, DumpTotals& totals, int fd) {
  const OpenHeader open(b);
  line.text("block user=")
      .hex(reinterpret_cast<std::uintptr_t>(b->payload()))
      .text(" header=")
      .hex(addr_of(b))
      .text(" size=")
      .dec(b->size)
      .text(" status=")
      .text(status_name(b->status))
      .text(" prev=")
      .hex(reinterpret_cast<std::uintptr_t>(b->prev))
      .text(" next=")
      .hex(reinterpret_cast<std::uintptr_t>(b->next))
      .text("\n");
  line.flush(fd);
  totals.count(b);
}
}  // namespace detail

template <MemorySource Source, class Config>
void Heap<Source, Config>::dump(int fd) const {
  LineBuffer line;
  detail::DumpTotals totals;
  line.text("heap version=1 span=")
      .dec(heap_bytes_)
      .text(" segments=")
      .dec(segments_)
      .text(" mappings=")
      .dec(mapped_.count())
      .text("\n");
  line.flush(fd);
  const std::byte* prev_end = nullptr;
  for (const BlockMeta* b = list_.head(); b != nullptr; b = next_of(b)) {
    if (!aligned(addr_of(b)) || !in_heap(b, kHeaderSize) ||
        reinterpret_cast<const std::byte*>(b) < prev_end) {
      line.text("error at=").hex(addr_of(b)).text(" the block list leaves the heap here\n");
      line.flush(fd);
      break;
    }
    prev_end = reinterpret_cast<const std::byte*>(b) + kHeaderSize;
    detail::dump_block(line, b, totals, fd);
  }
  // In-order walk of the mapping tree, bounded like the checker's.
  constexpr std::size_t kMaxDepth = 256;
  const BlockMeta* stack[kMaxDepth];
  std::size_t depth = 0;
  const BlockMeta* n = mapped_.root();
  std::size_t printed = 0;
  auto intact = [this](const BlockMeta* m) {
    const OpenHeader open(m);
    return sealer_.intact(m);
  };
  while ((n != nullptr || depth > 0) && printed <= mapped_.count()) {
    while (n != nullptr && depth < kMaxDepth && !in_heap(n, kHeaderSize) && intact(n)) {
      stack[depth++] = n;
      n = prev_of(n);
    }
    if (depth == 0) break;
    n = stack[--depth];
    detail::dump_block(line, n, totals, fd);
    ++printed;
    n = next_of(n);
  }
  line.text("summary blocks=")
      .dec(totals.blocks)
      .text(" alloc=")
      .dec(totals.alloc)
      .text(" free=")
      .dec(totals.free)
      .text(" mapped=")
      .dec(totals.mapped)
      .text(" alloc_bytes=")
      .dec(totals.alloc_bytes)
      .text(" free_bytes=")
      .dec(totals.free_bytes)
      .text(" largest_free=")
      .dec(totals.largest_free)
      .text(" mapped_bytes=")
      .dec(totals.mapped_bytes)
      .text("\n");
  line.flush(fd);
}

template <MemorySource Source, class Config>
void Heap<Source, Config>::describe(const void* block, int fd) const {
  LineBuffer line;
  const auto* b = static_cast<const BlockMeta*>(block);
  if (b == nullptr || !aligned(addr_of(b)) || !in_heap(b, kHeaderSize)) {
    line.text("  (block ").hex(reinterpret_cast<std::uintptr_t>(block));
    line.text(" is not inside the heap; not read)\n");
    line.flush(fd);
    return;
  }
  const OpenHeader open(b);
  for (const BlockMeta* n :
       {static_cast<const BlockMeta*>(b->prev), b, static_cast<const BlockMeta*>(b->next)}) {
    if (n != nullptr && aligned(addr_of(n)) && in_heap(n, kHeaderSize)) {
      const OpenHeader open_n(n);
      detail::dump_header(line, n == b ? "  > " : "    ", n, !sealer_.intact(n), fd);
    }
  }
}

}  // namespace osmem
