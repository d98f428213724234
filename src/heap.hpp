// The osmem engine: one heap over one memory source.
//
// All state lives in the object, so tests and fuzzers build a fresh heap per
// case over a fake source, and the process-wide os_* functions use a single
// instance over the real sbrk/mmap. The policy is the seed's, exactly (see
// docs/contract.md): best fit with ties to the lowest address, split only
// when 40 bytes remain, immediate coalescing, 128 KiB preallocation, mmap at
// 128 KiB (page size for calloc), and no system call beyond those.
//
// What it writes: headers, and the payloads of blocks it hands out (calloc
// zeroing, realloc copying), never a FREE payload (contract rule 15): the
// best-fit index keeps its records in the source's metadata area
// (free_tree.hpp, metadata.hpp), so a freed block keeps the user's bytes.
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
  // What one growth of the heap produced (rule 6b-6e, 12).
  enum class Growth {
    Contiguous,     // the bytes continue the last block; the caller uses them
    NewSegment,     // a foreign sbrk: a new segment holds the requested block
    Failed,         // the sbrk failed (or would pass the span): nothing changed
    SegmentFailed,  // a foreign sbrk, and completing its segment failed
  };

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
    if (b == list_.tail()) return grow_last(b, n, need);
    if (BlockMeta* next = b->next; touches(b, next) && free_neighbour(next)) {
      const OpenHeader open_next(next);
      index_.remove(sealer_, next);
      b->size += kHeaderSize + next->size;
      list_.unlink(sealer_, next);  // reseals b
      if (b->size >= need) {
        split(b, need);
        return p;
      }
      if (b == list_.tail()) return grow_last(b, n, need);
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
      // Asked here, not at construction: a call that ran before the
      // library's constructor reserved the area finds it the next time.
      index_.attach(source_.metadata_area());
      if (!preallocate()) return nullptr;
      initialized_ = true;
    }
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
    BlockMeta* fresh = nullptr;
    switch (grow(grow_tail ? need - tail->size : kHeaderSize + need, need, fresh)) {
      case Growth::Contiguous:
        break;
      case Growth::NewSegment:
        return fresh;  // the FREE tail, if any, stays FREE for best fit
      case Growth::Failed:
      case Growth::SegmentFailed:
        return nullptr;
    }
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
    return relocate(b, hand_out(allocate(n, Config::kMmapThreshold), n), n);
  }

  // Copies b's contents to the new block q (already handed out, or null
  // when it could not be had) and releases b.
  void* relocate(BlockMeta* b, void* q, std::size_t n) {
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

  // Rule 12: the last heap block b grows to `need` in place; after a foreign
  // sbrk it moves into the segment that sbrk started, and when that segment
  // cannot be completed, to a mapping (a request makes at most two sbrk
  // calls). A failed sbrk moves it by os_malloc's rules.
  void* grow_last(BlockMeta* b, std::size_t n, std::size_t need) {
    BlockMeta* fresh = nullptr;
    Growth g = Growth::Failed;
    {
      const OpenHeader open(b);
      g = grow(need - b->size, need, fresh);
      if (g == Growth::Contiguous) {
        b->size = need;
        sealer_.seal(b);
        return b->payload();
      }
    }
    switch (g) {
      case Growth::NewSegment:
        return relocate(b, hand_out(fresh->payload(), n), n);
      case Growth::SegmentFailed:
        return relocate(b, hand_out(map_block(need), n), n);
      default:
        return move(b, n);
    }
  }

  // ---- growing the heap -----------------------------------------------------

  // Rule 14: every FREE block needs an index record, so the heap's segments
  // may hold at most the bytes the records cover.
  bool within_span(std::size_t more) const {
    const std::size_t limit = index_.max_span();
    return heap_bytes_ <= limit && more <= limit - heap_bytes_;
  }

  // One sbrk(delta), or nothing when the heap would pass the index's span
  // (rule 14: treated as a failed call). The bytes are no access until
  // handed out.
  std::byte* sbrk(std::size_t delta) {
    if (!within_span(delta)) return nullptr;
    ++sbrk_calls_;
    void* r = source_.extend(static_cast<std::intptr_t>(delta));
    if (r == nullptr) return nullptr;
    tool::no_access(r, delta);
    return static_cast<std::byte*>(r);
  }

  // Our sbrk returned `r`: it must not lie inside the heap (rule 8).
  void claim_break(std::byte* r, std::size_t delta) {
    if (heap_lo_ != nullptr && r < heap_hi_) fail(ErrorKind::ForeignBreak, r);
    if (r + delta > heap_hi_) heap_hi_ = r + delta;
  }

  // Rule 5: the first sbrk starts the first segment, realigned (rule 8).
  bool preallocate() {
    const std::size_t delta = Config::kHeapPrealloc;
    std::byte* lo = sbrk(delta);
    if (lo == nullptr) return false;
    claim_break(lo, delta);
    std::byte* hi = lo + delta;
    const auto hi_addr = reinterpret_cast<std::uintptr_t>(hi);
    if (!is_aligned8(hi_addr)) {
      // Put the break back on an 8-byte boundary, so the next contiguous
      // sbrk keeps blocks aligned.
      const std::size_t pad = kAlignment - (hi_addr & (kAlignment - 1));
      std::byte* r = sbrk(pad);
      if (r == hi) {
        hi += pad;
        heap_hi_ = hi;
      } else if (r != nullptr) {
        claim_break(r, pad);  // stray bytes, left unused
      }
    }
    if (heap_lo_ == nullptr) heap_lo_ = align_up(lo);
    leave_chunk(lo, hi);
    return true;
  }

  // Rules 6b-6e and 12: sbrk(delta) to give a request of `need` room.
  // Contiguous: the new bytes start where the last block ends and the
  // caller puts them to use. Otherwise someone else moved the break: the
  // bytes start a segment that, completed by at most one more sbrk, holds
  // exactly the requested block (ALLOC, returned in `fresh`, last on the
  // list). Searching again would let every later growth pay for the gap.
  Growth grow(std::size_t delta, std::size_t need, BlockMeta*& fresh) {
    std::byte* r = sbrk(delta);
    if (r == nullptr) return Growth::Failed;
    BlockMeta* tail = list_.tail();
    const OpenHeader open_tail(tail);
    if (tail != nullptr && r == tail->end()) {
      heap_bytes_ += delta;
      if (r + delta > heap_hi_) heap_hi_ = r + delta;
      return Growth::Contiguous;
    }
    claim_break(r, delta);
    std::byte* brk = r + delta;
    std::byte* start = align_up(r);
    std::byte* end = start + kHeaderSize + need;
    if (end > brk) {
      // One call both completes the segment and realigns the break.
      const auto more = static_cast<std::size_t>(end - brk);
      std::byte* r2 = sbrk(more);
      if (r2 != nullptr) claim_break(r2, more);
      if (r2 != brk) {
        leave_chunk(r, brk);
        if (r2 != nullptr) leave_chunk(r2, r2 + more);
        return Growth::SegmentFailed;
      }
    }
    if (!within_span(kHeaderSize + need)) {
      leave_chunk(r, end);  // past the span: left unused
      return Growth::SegmentFailed;
    }
    fresh = BlockMeta::at(start);
    const OpenHeader open(fresh);
    fresh->size = need;
    fresh->status = Status::Alloc;
    list_.push_back(sealer_, fresh);
    heap_bytes_ += kHeaderSize + need;
    ++segments_;
    return Growth::NewSegment;
  }

  // Rule 8's leftover chunk [lo, hi), aligned inwards: one FREE block of a
  // segment of its own when it holds 40 bytes or more (and lies within the
  // span), else unused.
  void leave_chunk(std::byte* lo, std::byte* hi) {
    std::byte* start = align_up(lo);
    auto* end = reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(hi) &
                                             ~std::uintptr_t{kAlignment - 1});
    if (end <= start || static_cast<std::size_t>(end - start) < kMinSplitRemainder) return;
    if (!within_span(static_cast<std::size_t>(end - start))) return;
    BlockMeta* b = BlockMeta::at(start);
    const OpenHeader open(b);
    b->size = static_cast<std::size_t>(end - start) - kHeaderSize;
    b->status = Status::Free;
    list_.push_back(sealer_, b);
    index_.insert(sealer_, b);
    heap_bytes_ += static_cast<std::size_t>(end - start);
    ++segments_;
  }

  static std::byte* align_up(std::byte* p) {
    return reinterpret_cast<std::byte*>(align8(reinterpret_cast<std::uintptr_t>(p)));
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
