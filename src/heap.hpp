// The osmem engine: one heap over one memory source.
//
// All state lives in the object, so tests and fuzzers build a fresh heap per
// case over a fake source, and the process-wide os_* functions use a single
// instance over the real sbrk/mmap. The policy is the seed's, exactly (see
// docs/contract.md): best fit with ties to the lowest address, split only
// when 40 bytes remain, immediate coalescing, 128 KiB preallocation, mmap at
// 128 KiB (page size for calloc), and no system call beyond those.
//
// Trust boundary: a pointer handed in by the user is validated (range,
// alignment, live-mapping lookup, canary) before its header is read, and a
// neighbour header is validated before a merge reads it. Everything else the
// engine reads it wrote itself; the checker verifies that too, on demand.
//
// Tool awareness (sanitizer.hpp): between two calls, headers, free payloads,
// rounding slack and memory not yet handed out are no access, so a memory
// tool reports a user's overflow or use after free at the faulting access.
// Inside a call every function opens the headers it touches (OpenHeader);
// the public operations describe the user's block to the tool last, once
// every header scope has closed.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "block.hpp"
#include "block_list.hpp"
#include "canary.hpp"
#include "free_index.hpp"
#include "free_tree.hpp"
#include "invariant.hpp"
#include "mapped.hpp"
#include "memory_source.hpp"
#include "osmem/osmem.h"
#include "report.hpp"
#include "sanitizer.hpp"

namespace osmem {

struct DefaultConfig {
  static constexpr std::size_t kMmapThreshold = std::size_t{128} << 10;
  static constexpr std::size_t kHeapPrealloc = std::size_t{128} << 10;
  // A foreign sbrk between two of ours costs one restart of the search.
  static constexpr int kMaxForeignRestarts = 8;
  using FreeIndex = FreeTree;
};

template <MemorySource Source, class Config = DefaultConfig>
class Heap {
 public:
  Heap(Source& source, std::uint64_t cookie) : source_(source), sealer_(cookie) {
    index_.bind(&handler_, &operation_);
  }
  Heap(const Heap&) = delete;
  Heap& operator=(const Heap&) = delete;

  void* malloc(std::size_t n) {
    operation_ = "os_malloc";
    return hand_out(allocate(n, Config::kMmapThreshold), n);
  }

  void* calloc(std::size_t nmemb, std::size_t size) {
    operation_ = "os_calloc";
    if (nmemb == 0 || size == 0) return nullptr;
    std::size_t total = 0;
    if (__builtin_mul_overflow(nmemb, size, &total)) {
      errno = ENOMEM;
      return nullptr;
    }
    void* p = hand_out(allocate(total, source_.page_size()), total);
    // Fresh mappings are zero already; a reused heap block is not.
    if (p != nullptr && status_of(p) != Status::Mapped) {
      std::memset(p, 0, total);
    } else if (p != nullptr) {
      tool::defined(p, total);
    }
    return p;
  }

  void* realloc(void* p, std::size_t n) {
    operation_ = "os_realloc";
    if (p == nullptr) return hand_out(allocate(n, Config::kMmapThreshold), n);
    UserBlock before;
    void* q = resize(p, n, before);
    if constexpr (tool::kEnabled) {
      if (q == p && q != nullptr) tool::resized(p, before.bytes, n, before.capacity, capacity(p));
    }
    return q;
  }

  void free(void* p) {
    operation_ = "os_free";
    if (p == nullptr) return;
    release(validate(p));
  }

  // ---- introspection -------------------------------------------------------

  void set_error_handler(ErrorHandler handler) { handler_ = handler; }
  ErrorHandler error_handler() const { return handler_; }

  // Runs every invariant check; writes up to `capacity` violations to `out`
  // and returns how many were found in all. Never follows a pointer outside
  // memory the heap owns, whatever the headers contain.
  std::size_t check(Violation* out, std::size_t capacity) const;

  void stats(struct ::os_heap_stats* out) const;

  // One line per block to fd: heap blocks in address order, then mappings.
  void dump(int fd) const;
  // The header at `block` and its list neighbours, as far as they lie in
  // memory the heap owns: the context of a checker report.
  void describe(const void* block, int fd) const;

  // True when the whole block, header and payload, lies inside the heap's
  // address range (without overflowing however large its size field is).
  bool spans_heap(const BlockMeta* b) const {
    return b->size <= SIZE_MAX - kHeaderSize && in_heap(b, kHeaderSize + b->size);
  }

  // True when [p, p + len) lies inside the heap's segments' address range.
  bool in_heap(const void* p, std::size_t len) const {
    const auto* b = static_cast<const std::byte*>(p);
    return heap_lo_ != nullptr && b >= heap_lo_ && b <= heap_hi_ &&
           len <= static_cast<std::size_t>(heap_hi_ - b);
  }

  const BlockList& blocks() const { return list_; }
  const MappedSet& mappings() const { return mapped_; }
  const Sealer& sealer() const { return sealer_; }
  const typename Config::FreeIndex& free_index() const { return index_; }

 private:
  enum class Growth { Contiguous, NewSegment, Failed };

  // What a memory tool knew of a block before realloc changed it.
  struct UserBlock {
    std::size_t bytes = 0;  // the user's (requested) bytes, or the capacity
    std::size_t capacity = 0;
  };

  // realloc of a non-null pointer; `before` is filled in once p is known to
  // be a live block.
  void* resize(void* p, std::size_t n, UserBlock& before) {
    if (n == 0) {
      release(validate(p));
      return nullptr;
    }
    BlockMeta* b = validate(p);
    const OpenHeader open(b);
    if (b->status == Status::Free) return nullptr;
    if constexpr (tool::kEnabled) before = {tool::usable(p, b->size), b->size};
    if (n > kMaxRequest) {
      errno = ENOMEM;
      return nullptr;
    }
    const std::size_t need = align8(n);
    if (b->status == Status::Mapped || need + kHeaderSize >= Config::kMmapThreshold) {
      return move(b, n);
    }
    if (need <= b->size) {
      split(b, need);
      return p;
    }
    if (b == list_.tail()) {
      if (grow_tail_in_place(b, need)) return p;
    } else if (BlockMeta* next = b->next; touches(b, next) && free_neighbour(next)) {
      const OpenHeader open_next(next);
      index_.remove(sealer_, next);
      b->size += kHeaderSize + next->size;
      list_.unlink(sealer_, next);  // reseals b
      if (b->size >= need) {
        split(b, need);
        return p;
      }
      if (b == list_.tail() && grow_tail_in_place(b, need)) return p;
    }
    return move(b, n);
  }

  // ---- telling memory tools ---------------------------------------------------

  // The block at p (or nothing) goes to the user, who asked for n bytes.
  void* hand_out(void* p, std::size_t n) const {
    if constexpr (tool::kEnabled) {
      if (p != nullptr) tool::allocated(p, n, capacity(p));
    }
    return p;
  }
  std::size_t capacity(const void* p) const {
    const BlockMeta* b = BlockMeta::from_payload(const_cast<void*>(p));
    const OpenHeader open(b);
    return b->size;
  }
  Status status_of(const void* p) const {
    const BlockMeta* b = BlockMeta::from_payload(const_cast<void*>(p));
    const OpenHeader open(b);
    return b->status;
  }

  [[noreturn]] void fail(ErrorKind kind, const void* address) const {
    report(handler_, kind, operation_, address);
  }

  // ---- the user-pointer boundary --------------------------------------------

  BlockMeta* validate(void* p) const {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    if (!is_aligned8(a)) fail(ErrorKind::MisalignedPointer, p);
    if (a <= kHeaderSize) fail(ErrorKind::InvalidPointer, p);  // no header at or below 0
    auto* header = static_cast<std::byte*>(p) - kHeaderSize;
    if (in_heap(header, kHeaderSize)) {
      BlockMeta* b = BlockMeta::at(header);
      const OpenHeader open(b);
      if (!sealer_.intact(b) || (b->status != Status::Free && b->status != Status::Alloc)) {
        fail(ErrorKind::HeaderCorrupted, p);
      }
      return b;
    }
    const MappedSet::Lookup found = mapped_.find(sealer_, header);
    if (found.corrupted != nullptr) fail(ErrorKind::HeaderCorrupted, found.corrupted->payload());
    if (found.found == nullptr) fail(ErrorKind::InvalidPointer, p);
    const OpenHeader open(found.found);
    if (found.found->status != Status::Mapped) fail(ErrorKind::HeaderCorrupted, p);
    return found.found;
  }

  // A list neighbour is about to be read for a merge: a user overflow may
  // have reached its header, so its canary is checked first.
  bool free_neighbour(BlockMeta* n) const {
    const OpenHeader open(n);
    if (!sealer_.intact(n)) fail(ErrorKind::HeaderCorrupted, n->payload());
    return n->status == Status::Free;
  }

  // ---- allocation ---------------------------------------------------------

  void* allocate(std::size_t n, std::size_t map_threshold) {
    if (n == 0) return nullptr;
    if (n > kMaxRequest) {
      errno = ENOMEM;
      return nullptr;
    }
    const std::size_t need = align8(n);
    if (need + kHeaderSize >= map_threshold) return map_block(need);
    if (BlockMeta* b = heap_allocate(need)) return b->payload();
    return map_block(need);  // sbrk failed: serve it from mmap instead
  }

  BlockMeta* heap_allocate(std::size_t need) {
    if (!initialized_) {
      if (extend_heap(Config::kHeapPrealloc) == Growth::Failed) return nullptr;
      initialized_ = true;
    }
    for (int restarts = 0;; ++restarts) {
      if (BlockMeta* b = index_.find(sealer_, list_, need, search_)) {
        const OpenHeader open(b);
        index_.remove(sealer_, b);
        b->status = Status::Alloc;
        split(b, need);
        return b;
      }
      BlockMeta* tail = list_.tail();
      const OpenHeader open_tail(tail);
      const bool grow_tail = tail != nullptr && tail->status == Status::Free;
      const Growth g = extend_heap(grow_tail ? need - tail->size : kHeaderSize + need);
      if (g == Growth::Failed) return nullptr;
      if (g == Growth::Contiguous) {
        if (grow_tail) {
          index_.remove(sealer_, tail);
          tail->size = need;
          tail->status = Status::Alloc;
          sealer_.seal(tail);
          return tail;
        }
        BlockMeta* b = BlockMeta::at(tail->end());
        const OpenHeader open(b);
        b->size = need;
        b->status = Status::Alloc;
        list_.push_back(sealer_, b);
        return b;
      }
      if (restarts == Config::kMaxForeignRestarts) return nullptr;
    }
  }

  void* map_block(std::size_t need) {
    ++mmap_calls_;
    void* m = source_.map(kHeaderSize + need);
    if (m == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    tool::no_access(m, mapped_span(kHeaderSize + need));  // not the user's until handed out
    BlockMeta* b = BlockMeta::at(static_cast<std::byte*>(m));
    const OpenHeader open(b);
    b->size = need;
    b->status = Status::Mapped;
    mapped_.insert(sealer_, b);  // sets the links and seals b
    return b->payload();
  }

  // Cuts an ALLOC block down to `need` when the rest can be a block of its
  // own; the rest becomes FREE and coalesces. Always leaves b sealed.
  void split(BlockMeta* b, std::size_t need) {
    const OpenHeader open(b);
    if (b->size - need < kMinSplitRemainder) {
      sealer_.seal(b);
      return;
    }
    BlockMeta* rest = BlockMeta::at(b->payload() + need);
    const OpenHeader open_rest(rest);
    rest->size = b->size - need - kHeaderSize;
    rest->status = Status::Free;
    b->size = need;
    list_.insert_after(sealer_, b, rest);
    coalesce(rest);
  }

  // b has just become FREE (it is on the list, not in the index): merge it
  // with touching FREE neighbours, then index the result.
  void coalesce(BlockMeta* b) {
    const OpenHeader open(b);
    // Both neighbours are validated before anything changes: a damaged
    // header is named as such, before an index operation trips over it.
    // (prev's canary is checked before its size says whether it touches.)
    BlockMeta* next = b->next;
    BlockMeta* prev = b->prev;
    const bool merge_next = touches(b, next) && free_neighbour(next);
    const bool merge_prev = prev != nullptr && free_neighbour(prev) && touches(prev, b);
    if (merge_next) {
      const OpenHeader open_next(next);
      index_.remove(sealer_, next);
      b->size += kHeaderSize + next->size;
      list_.unlink(sealer_, next);  // reseals b
    }
    if (merge_prev) {
      const OpenHeader open_prev(prev);
      index_.remove(sealer_, prev);
      prev->size += kHeaderSize + b->size;
      list_.unlink(sealer_, b);  // reseals prev; b stays behind as a stale FREE header
      b = prev;
    }
    const OpenHeader open_merged(b);
    sealer_.seal(b);
    index_.insert(sealer_, b);
  }

  void release(BlockMeta* b) {
    OpenHeader open(b);
    switch (b->status) {
      case Status::Free:
        fail(ErrorKind::DoubleFree, b->payload());
      case Status::Mapped: {
        const std::size_t len = kHeaderSize + b->size;
        mapped_.remove(sealer_, b);
        ++munmap_calls_;
        open.forget();  // the mapping goes away: nothing to close
        tool::released(b->payload(), b, mapped_span(len));
        source_.unmap(b, len);
        return;
      }
      case Status::Alloc:
        b->status = Status::Free;
        // Sealed now, not only by the merges: if b merges into the block
        // before it, its header stays behind and must read as FREE, so a
        // second free of it is a double free.
        sealer_.seal(b);
        tool::freed(b->payload(), b->size);
        coalesce(b);
        return;
    }
  }

  // The block cannot grow where it is: allocate anew (while b is still
  // ALLOC, so the search cannot hand b's own memory back), copy, release.
  void* move(BlockMeta* b, std::size_t n) {
    void* q = hand_out(allocate(n, Config::kMmapThreshold), n);
    if (q == nullptr) return nullptr;
    const std::size_t need = align8(n);
    const OpenHeader open(b);
    std::size_t keep = b->size < need ? b->size : need;
    // A tool watching: copy only the user's bytes, not the no-access slack.
    if (tool::active()) keep = std::min(tool::usable(b->payload(), b->size), n);
    std::memcpy(q, b->payload(), keep);
    release(b);
    return q;
  }

  // A mapping's length as the system rounds it: the tail of its last page is
  // no access too.
  std::size_t mapped_span(std::size_t len) const {
    const std::size_t page = source_.page_size();
    return (len + page - 1) / page * page;
  }

  bool grow_tail_in_place(BlockMeta* b, std::size_t need) {
    const OpenHeader open(b);
    if (extend_heap(need - b->size) != Growth::Contiguous) return false;
    b->size = need;
    sealer_.seal(b);
    return true;
  }

  // ---- growing the heap -----------------------------------------------------

  // sbrk(delta). Contiguous: the new bytes start where the last block ends
  // and the caller puts them to use. Otherwise someone else moved the break
  // (or this is the first call): the bytes become a segment of their own.
  Growth extend_heap(std::size_t delta) {
    // The index addresses blocks relative to the first one; past its span
    // the heap stops growing and requests fall back to mmap.
    if (heap_lo_ != nullptr &&
        delta > Config::FreeIndex::kMaxSpan - static_cast<std::size_t>(heap_hi_ - heap_lo_)) {
      return Growth::Failed;
    }
    ++sbrk_calls_;
    void* r = source_.extend(static_cast<std::intptr_t>(delta));
    if (r == nullptr) return Growth::Failed;
    tool::no_access(r, delta);  // not the user's until handed out
    auto* old = static_cast<std::byte*>(r);
    BlockMeta* tail = list_.tail();
    const OpenHeader open_tail(tail);
    if (tail != nullptr && old == tail->end()) {
      heap_bytes_ += delta;
      if (old + delta > heap_hi_) heap_hi_ = old + delta;
      return Growth::Contiguous;
    }
    adopt_segment(old, old + delta);
    return Growth::NewSegment;
  }

  void adopt_segment(std::byte* lo, std::byte* hi) {
    if (heap_lo_ != nullptr && lo < heap_hi_) fail(ErrorKind::ForeignBreak, lo);
    const auto hi_addr = reinterpret_cast<std::uintptr_t>(hi);
    if (!is_aligned8(hi_addr)) {
      // Put the break back on an 8-byte boundary, so the next contiguous
      // sbrk keeps blocks aligned.
      const std::size_t pad = kAlignment - (hi_addr & (kAlignment - 1));
      ++sbrk_calls_;
      void* r = source_.extend(static_cast<std::intptr_t>(pad));
      if (r != nullptr) tool::no_access(r, pad);
      if (r == hi) {
        hi += pad;
      } else if (r != nullptr && static_cast<std::byte*>(r) + pad > heap_hi_) {
        heap_hi_ = static_cast<std::byte*>(r) + pad;  // stray bytes, left unused
      }
    }
    if (hi > heap_hi_) heap_hi_ = hi;
    auto* start = reinterpret_cast<std::byte*>(align8(reinterpret_cast<std::uintptr_t>(lo)));
    auto* end = reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(hi) &
                                             ~std::uintptr_t{kAlignment - 1});
    if (heap_lo_ == nullptr) heap_lo_ = start;
    if (end <= start || static_cast<std::size_t>(end - start) < kMinSplitRemainder) return;
    if (static_cast<std::size_t>(end - heap_lo_) > Config::FreeIndex::kMaxSpan) return;
    BlockMeta* b = BlockMeta::at(start);
    const OpenHeader open(b);
    b->size = static_cast<std::size_t>(end - start) - kHeaderSize;
    b->status = Status::Free;
    list_.push_back(sealer_, b);
    index_.insert(sealer_, b);
    heap_bytes_ += static_cast<std::size_t>(end - start);
    ++segments_;
  }

  Source& source_;
  Sealer sealer_;
  ErrorHandler handler_ = nullptr;
  const char* operation_ = "";

  BlockList list_;
  typename Config::FreeIndex index_;
  MappedSet mapped_;

  bool initialized_ = false;
  std::byte* heap_lo_ = nullptr;  // start of the first segment
  std::byte* heap_hi_ = nullptr;  // the highest break our sbrk calls produced
  std::size_t heap_bytes_ = 0;    // bytes in segments, headers included
  std::size_t segments_ = 0;

  std::size_t sbrk_calls_ = 0;
  std::size_t mmap_calls_ = 0;
  std::size_t munmap_calls_ = 0;
  SearchStats search_;
};

}  // namespace osmem

#include "heap_inspect.hpp"
