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
#include "policy.hpp"
#include "report.hpp"
#include "sanitizer.hpp"

namespace osmem {

template <MemorySource Source, class Config = DefaultConfig>
class Heap {
 public:
  Heap(Source& source, std::uint64_t cookie) : source_(source), sealer_(cookie) {
    index_.bind(&handler_, &operation_);
  }
  Heap(const Heap&) = delete;
  Heap& operator=(const Heap&) = delete;

  // The policy's payload alignment; every size rounds up to it.
  static constexpr std::size_t kAlign = Config::kAlign;
  static_assert(kAlign >= 8 && (kAlign & (kAlign - 1)) == 0 && kHeaderSize % kAlign == 0);
  // A split leaves a remainder only if it can hold a header and kAlign bytes.
  static constexpr std::size_t kMinRemainder = kHeaderSize + kAlign;
  // The largest request whose rounded size plus a header fits in a size_t.
  static constexpr std::size_t kMaxRequest = SIZE_MAX - kHeaderSize - (kAlign - 1);
  static constexpr std::size_t round_up(std::size_t n) { return (n + kAlign - 1) & ~(kAlign - 1); }
  static constexpr bool aligned(std::uintptr_t a) { return (a & (kAlign - 1)) == 0; }

  // The operation names reports use ("os_malloc" or "malloc").
  void set_operation_names(bool libc_names) { libc_names_ = libc_names; }

  void* malloc(std::size_t n) {
    operation_ = name("os_malloc");
    return hand_out(allocate(zero_size(n), Config::kMmapThreshold), n);
  }

  void* calloc(std::size_t nmemb, std::size_t size) {
    operation_ = name("os_calloc");
    if ((nmemb == 0 || size == 0) && Config::kZeroIsNull) return nullptr;
    std::size_t total = 0;
    if (__builtin_mul_overflow(nmemb, size, &total)) {
      errno = ENOMEM;
      return nullptr;
    }
    const std::size_t threshold =
        Config::kCallocMapsAtPage ? source_.page_size() : Config::kMmapThreshold;
    void* p = hand_out(allocate(zero_size(total), threshold), total);
    // Fresh mappings are zero already; a reused heap block is not.
    if (p != nullptr && status_of(p) != Status::Mapped) {
      std::memset(p, 0, total);
    } else if (p != nullptr) {
      tool::defined(p, total);
    }
    return p;
  }

  void* realloc(void* p, std::size_t n) {
    operation_ = name("os_realloc");
    if (p == nullptr) return hand_out(allocate(zero_size(n), Config::kMmapThreshold), n);
    UserBlock before;
    void* q = resize(p, n, before);
    if constexpr (tool::kEnabled) {
      if (q == p && q != nullptr) tool::resized(p, before.bytes, n, before.capacity, capacity(p));
    }
    return q;
  }

  void free(void* p) {
    operation_ = name("os_free");
    if (p == nullptr) return;
    release(validate(p));
  }

  // n bytes whose address is a multiple of `alignment` (a power of two; the
  // caller has validated it). Alignments up to kAlign are malloc's. Larger
  // ones are carved out of a heap block big enough for n plus the alignment:
  // the leading remainder becomes a FREE block, or, when it would be too
  // small for one, the next aligned spot is taken. When that block would
  // reach the mmap threshold (or the heap cannot grow) the block gets a
  // mapping of its own, trimmed to whole pages around it. NULL with
  // errno = ENOMEM when it cannot be had.
  void* aligned_malloc(std::size_t alignment, std::size_t n) {
    operation_ = name("os_memalign");
    if (alignment <= kAlign) return malloc(n);
    n = zero_size(n);
    if (n == 0) return nullptr;
    std::size_t total = 0;
    if (n > kMaxRequest || __builtin_add_overflow(round_up(n), alignment, &total) ||
        __builtin_add_overflow(total, kMinRemainder, &total) || total > kMaxRequest) {
      errno = ENOMEM;
      return nullptr;
    }
    // Large ones are mapped, like malloc's; a heap that cannot grow falls
    // back to a mapping too.
    void* p = nullptr;
    if (total + kHeaderSize < Config::kMmapThreshold) {
      if (BlockMeta* b = heap_allocate(total))
        p = carve_aligned(b, alignment, round_up(n))->payload();
    }
    if (p == nullptr) p = map_aligned(alignment, round_up(n));
    if (p == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    return hand_out(p, n);
  }

  // The bytes the block at p can hold (malloc_usable_size); p is validated.
  std::size_t usable_size(void* p) {
    operation_ = name("malloc_usable_size");
    BlockMeta* b = validate(p);
    const OpenHeader open(b);
    if (b->status == Status::Free) fail(ErrorKind::DoubleFree, p);
    return b->size;
  }

  // Gives the top of the heap back (malloc_trim): the last block, when FREE
  // and at the break, keeps `pad` bytes (rounded to pages). Returns true
  // when memory was released.
  bool trim(std::size_t pad) {
    operation_ = name("malloc_trim");
    return trim_top(pad);
  }

  // ---- introspection -------------------------------------------------------

  void set_error_handler(ErrorHandler handler) { handler_ = handler; }

  // Called with [lo, hi) before the engine hands out, or writes a header
  // into, memory that belonged to a FREE block (its payload, or its header
  // and payload when a block grows into it), and before a trim gives such
  // memory back: the bytes a debug layer's freed-payload records
  // (freed_records.hpp) must stop covering. Rule 15 makes these the only
  // times the engine touches a FREE payload.
  using ClaimHook = void (*)(void* context, const std::byte* lo, const std::byte* hi);
  void set_claim_hook(ClaimHook hook, void* context) {
    claim_hook_ = hook;
    claim_context_ = context;
  }
  ErrorHandler error_handler() const { return handler_; }

  // Runs every invariant check; writes up to `capacity` violations to `out`
  // and returns how many were found in all. Never follows a pointer outside
  // memory the heap owns, whatever the headers contain.
  std::size_t check(Violation* out, std::size_t capacity) const;

  void stats(struct ::os_heap_stats* out) const;

  // The capacity of the last heap block when it is FREE: what a trim could
  // give back (mallinfo2's keepcost).
  std::size_t top_free_bytes() const {
    const BlockMeta* tail = list_.tail();
    if (tail == nullptr) return 0;
    const OpenHeader open(tail);
    return tail->status == Status::Free ? tail->size : 0;
  }

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
    OpenHeader open(b);
    if (b->status == Status::Free) {
      if constexpr (Config::kReallocFreedIsFatal) fail(ErrorKind::UseAfterFree, p);
      return nullptr;
    }
    if constexpr (tool::kEnabled) before = {tool::usable(p, b->size), b->size};
    if (n > kMaxRequest) {
      errno = ENOMEM;
      return nullptr;
    }
    const std::size_t need = round_up(n);
    if constexpr (Config::kRemap) {
      if (b->status == Status::Mapped && need + kHeaderSize >= Config::kMmapThreshold) {
        return remap(b, open, n, need, before);
      }
    }
    if (b->status == Status::Mapped || need + kHeaderSize >= Config::kMmapThreshold) {
      return move(b, n);
    }
    if (need <= b->size) {
      split(b, need);
      maybe_trim();
      return p;
    }
    if (b == list_.tail()) return grow_last(b, n, need);
    if (BlockMeta* next = b->next; touches(b, next) && free_neighbour(next)) {
      const OpenHeader open_next(next);
      claiming(reinterpret_cast<std::byte*>(next), need - b->size, next->end());
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

  // "os_malloc" under the seed's names, "malloc" under libc's.
  const char* name(const char* os_name) const {
    return libc_names_ && os_name[0] == 'o' && os_name[1] == 's' && os_name[2] == '_' ? os_name + 3
                                                                                      : os_name;
  }

  // A zero-byte request: NULL under the seed, the smallest block under
  // malloc's rules (a unique pointer that can be freed).
  static constexpr std::size_t zero_size(std::size_t n) {
    return n == 0 && !Config::kZeroIsNull ? 1 : n;
  }

  // ---- the user-pointer boundary --------------------------------------------

  BlockMeta* validate(void* p) const {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    if (!aligned(a)) fail(ErrorKind::MisalignedPointer, p);
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
    const std::size_t need = round_up(n);
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
      claiming(b->payload(), need, b->end());
      index_.remove(sealer_, b);
      b->status = Status::Alloc;
      split(b, need);
      return b;
    }
    BlockMeta* tail = list_.tail();
    const OpenHeader open_tail(tail);
    const bool grow_tail = tail != nullptr && tail->status == Status::Free;
    const std::size_t missing = grow_tail ? need - tail->size : kHeaderSize + need;
    const std::size_t delta = growth(missing);
    BlockMeta* fresh = nullptr;
    switch (grow(delta, need, fresh)) {
      case Growth::Contiguous:
        break;
      case Growth::NewSegment:
        split(fresh, need);  // the FREE tail, if any, stays FREE for best fit
        return fresh;
      case Growth::Failed:
      case Growth::SegmentFailed:
        return nullptr;
    }
    if (grow_tail) {
      claiming(tail->payload(), need, tail->end());
      index_.remove(sealer_, tail);
      tail->size += delta;
      tail->status = Status::Alloc;
      split(tail, need);  // a growth step's surplus stays FREE at the top
      return tail;
    }
    BlockMeta* b = BlockMeta::at(tail->end());
    const OpenHeader open(b);
    b->size = delta - kHeaderSize;
    b->status = Status::Alloc;
    list_.push_back(sealer_, b);
    split(b, need);
    return b;
  }

  // What one sbrk asks for when `missing` bytes are missing: exactly that
  // under the seed (rule 6), at least a growth step in whole pages under
  // malloc's rules, so that a run of small requests makes few sbrk calls.
  std::size_t growth(std::size_t missing) const {
    if constexpr (Config::kGrowthStep == 0) {
      return missing;
    } else {
      const std::size_t page = source_.page_size();
      const std::size_t want = missing > Config::kGrowthStep ? missing : Config::kGrowthStep;
      if (want > SIZE_MAX - page) return missing;
      return (want + page - 1) / page * page;
    }
  }

  void* map_block(std::size_t need) {
    ++mmap_calls_;
    // The seed maps exactly header + size (rule 3); under malloc's rules the
    // block owns the whole pages, so realloc within them stays in place.
    if (Config::kRemap && need > SIZE_MAX - kHeaderSize - source_.page_size()) {
      errno = ENOMEM;  // whole pages of it would not fit in a size_t
      return nullptr;
    }
    const std::size_t len = Config::kRemap ? mapped_span(kHeaderSize + need) : kHeaderSize + need;
    void* m = source_.map(len);
    if (m == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    tool::no_access(m, mapped_span(len));  // not the user's until handed out
    BlockMeta* b = BlockMeta::at(static_cast<std::byte*>(m));
    const OpenHeader open(b);
    b->size = len - kHeaderSize;
    b->status = Status::Mapped;
    mapped_.insert(sealer_, b);  // sets the links and seals b
    return b->payload();
  }

  // A mapped block (open in `open`) changes size with mremap (policies with
  // kRemap): in place when the new size fits the pages it already spans,
  // else wherever the system moves it. When mremap fails, a shrink keeps
  // the block as it is and a growth moves it by malloc's rules.
  void* remap(BlockMeta* b, OpenHeader& open, std::size_t n, std::size_t need,
              const UserBlock& before) {
    std::byte* start = mapping_start(b);
    const auto offset = static_cast<std::size_t>(b->payload() - start);  // header included
    if (need > SIZE_MAX - offset - source_.page_size()) {
      errno = ENOMEM;  // whole pages of it would not fit in a size_t
      return nullptr;
    }
    const std::size_t old_len = offset + b->size;
    const std::size_t new_len = mapped_span(offset + need);
    if (new_len == old_len) return b->payload();
    // Out of the set first: once the mapping moves, b's links are gone.
    mapped_.remove(sealer_, b);
    ++mremap_calls_;
    void* m = source_.remap(start, old_len, new_len);
    if (m == nullptr) {
      mapped_.insert(sealer_, b);
      return new_len < old_len ? b->payload() : move(b, n);
    }
    void* old_payload = b->payload();
    if (m != start) open.forget();                // the old address is gone
    if (m != start) tool::no_access(m, new_len);  // not the user's until handed out
    BlockMeta* nb = BlockMeta::at(static_cast<std::byte*>(m) + offset - kHeaderSize);
    const OpenHeader open_new(nb);
    nb->size = new_len - offset;
    mapped_.insert(sealer_, nb);
    void* q = nb->payload();
    if constexpr (tool::kEnabled) {
      if (m != start) {  // in place, realloc tells the tool (resized)
        tool::released(old_payload, start, old_len);
        tool::allocated(q, n, nb->size);
        tool::defined(q, before.bytes < n ? before.bytes : n);
      }
    }
    (void)old_payload;
    (void)before;
    return q;
  }

  // Takes an aligned block out of b (ALLOC, at least `need` + alignment +
  // kMinRemainder bytes): returns the ALLOC block whose payload is aligned
  // and holds `need` bytes; what lies before it becomes a FREE block, what
  // lies after it is split off as usual.
  BlockMeta* carve_aligned(BlockMeta* b, std::size_t alignment, std::size_t need) {
    const OpenHeader open(b);
    const auto p0 = reinterpret_cast<std::uintptr_t>(b->payload());
    std::uintptr_t p = (p0 + alignment - 1) & ~std::uintptr_t{alignment - 1};
    // The leading remainder must be empty or hold a header and kAlign bytes.
    if (p != p0 && p - p0 < kMinRemainder) p += alignment;
    if (p == p0) {
      split(b, need);
      return b;
    }
    const std::size_t lead = p - p0;  // bytes from b's payload to the new header's end
    BlockMeta* a = BlockMeta::at(reinterpret_cast<std::byte*>(p) - kHeaderSize);
    const OpenHeader open_a(a);
    a->size = b->size - lead;
    a->status = Status::Alloc;
    b->size = lead - kHeaderSize;
    b->status = Status::Free;
    list_.insert_after(sealer_, b, a);  // seals both
    coalesce(b);
    split(a, need);
    return a;
  }

  // Cuts an ALLOC block down to `need` when the rest can be a block of its
  // own; the rest becomes FREE and coalesces. Always leaves b sealed.
  void split(BlockMeta* b, std::size_t need) {
    const OpenHeader open(b);
    if (b->size - need < kMinRemainder) {
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
        std::byte* start = mapping_start(b);
        const auto len = static_cast<std::size_t>(b->end() - start);
        mapped_.remove(sealer_, b);
        ++munmap_calls_;
        open.forget();  // the mapping goes away: nothing to close
        tool::released(b->payload(), start, mapped_span(len));
        source_.unmap(start, len);
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
        maybe_trim();
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
    const std::size_t need = round_up(n);
    const OpenHeader open(b);
    std::size_t keep = b->size < need ? b->size : need;
    // A tool watching: copy only the user's bytes, not the no-access slack.
    if (tool::active()) keep = std::min(tool::usable(b->payload(), b->size), n);
    std::memcpy(q, b->payload(), keep);
    release(b);
    return q;
  }

  // Where the mapping holding mapped block b starts: at b itself, except for
  // an aligned block whose header sits inside the mapping's first page
  // (map_aligned). Mappings start on pages.
  std::byte* mapping_start(BlockMeta* b) const {
    const std::uintptr_t page = source_.page_size();
    return reinterpret_cast<std::byte*>(b->address() & ~(page - 1));
  }

  // An aligned block in a mapping of its own: map enough to find the
  // aligned spot, then unmap the whole pages before the header's page and
  // after the block (policies with kRemap: the block owns its last page).
  void* map_aligned(std::size_t alignment, std::size_t need) {
    const std::size_t page = source_.page_size();
    std::size_t len = 0;
    if (__builtin_add_overflow(kHeaderSize + need, alignment, &len) || len > SIZE_MAX - page) {
      return nullptr;
    }
    len = mapped_span(len);
    ++mmap_calls_;
    auto* m = static_cast<std::byte*>(source_.map(len));
    if (m == nullptr) return nullptr;
    const auto p = (reinterpret_cast<std::uintptr_t>(m) + kHeaderSize + alignment - 1) &
                   ~std::uintptr_t{alignment - 1};
    BlockMeta* b = BlockMeta::at(reinterpret_cast<std::byte*>(p - kHeaderSize));
    std::byte* start = mapping_start(b);
    std::byte* end = m + mapped_span(static_cast<std::size_t>(b->payload() + need - m));
    if (start > m) {
      ++munmap_calls_;
      source_.unmap(m, static_cast<std::size_t>(start - m));
    }
    if (end < m + len) {
      ++munmap_calls_;
      source_.unmap(end, static_cast<std::size_t>(m + len - end));
    }
    tool::no_access(start, static_cast<std::size_t>(end - start));
    const OpenHeader open(b);
    b->size = static_cast<std::size_t>(end - b->payload());
    b->status = Status::Mapped;
    mapped_.insert(sealer_, b);
    return b->payload();
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
      const std::size_t delta = growth(need - b->size);
      g = grow(delta, need, fresh);
      if (g == Growth::Contiguous) {
        b->size += delta;
        split(b, need);  // seals b
        return b->payload();
      }
    }
    switch (g) {
      case Growth::NewSegment:
        split(fresh, need);
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
    if (!aligned(hi_addr)) {
      // Put the break back on an aligned boundary, so the next contiguous
      // sbrk keeps blocks aligned.
      const std::size_t pad = kAlign - (hi_addr & (kAlign - 1));
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
    // The block takes every aligned byte up to the break: exactly its
    // request under the seed; a growth step's surplus under malloc's rules,
    // which the caller splits off.
    if (end < brk) end = align_down(brk);
    const auto span = static_cast<std::size_t>(end - start);
    if (!within_span(span)) {
      leave_chunk(r, end);  // past the span: left unused
      return Growth::SegmentFailed;
    }
    fresh = BlockMeta::at(start);
    const OpenHeader open(fresh);
    fresh->size = span - kHeaderSize;
    fresh->status = Status::Alloc;
    list_.push_back(sealer_, fresh);
    heap_bytes_ += span;
    ++segments_;
    return Growth::NewSegment;
  }

  // Rule 8's leftover chunk [lo, hi), aligned inwards: one FREE block of a
  // segment of its own when it holds 40 bytes or more (and lies within the
  // span), else unused.
  void leave_chunk(std::byte* lo, std::byte* hi) {
    std::byte* start = align_up(lo);
    std::byte* end = align_down(hi);
    if (end <= start || static_cast<std::size_t>(end - start) < kMinRemainder) return;
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
    return reinterpret_cast<std::byte*>(round_up(reinterpret_cast<std::uintptr_t>(p)));
  }
  static std::byte* align_down(std::byte* p) {
    return reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(p) &
                                        ~std::uintptr_t{kAlign - 1});
  }

  // ---- giving the top back (policies with a trim threshold) -----------------

  // After a free or a shrink: trim when the last block is FREE and larger
  // than the threshold.
  void maybe_trim() {
    if constexpr (Config::kTrimThreshold != 0) {
      BlockMeta* tail = list_.tail();
      if (tail == nullptr) return;
      const OpenHeader open(tail);
      if (tail->status == Status::Free && tail->size > Config::kTrimThreshold) {
        trim_top(Config::kTopPad);
      }
    }
  }

  // Lowers the break so the last block, FREE and at the break, keeps `pad`
  // bytes (at least kAlign) and the break stays page-aligned when it was.
  // Only when the break is where our last block ends: another component's
  // sbrk since then owns the memory above it.
  bool trim_top(std::size_t pad) {
    BlockMeta* tail = list_.tail();
    if (tail == nullptr) return false;
    const OpenHeader open(tail);
    if (tail->status != Status::Free) return false;
    if (pad < kAlign) pad = kAlign;
    if (tail->size <= pad) return false;
    const std::size_t page = source_.page_size();
    const std::size_t excess = (tail->size - pad) / page * page;
    if (excess == 0) return false;
    ++sbrk_calls_;
    if (source_.extend(0) != tail->end()) return false;
    ++sbrk_calls_;
    // The whole FREE tail, not only the part given back: a record may start
    // below the new top and reach above it.
    if (claim_hook_ != nullptr) claim_hook_(claim_context_, tail->payload(), tail->end());
    if (source_.extend(-static_cast<std::intptr_t>(excess)) == nullptr) return false;
    index_.remove(sealer_, tail);
    tail->size -= excess;
    sealer_.seal(tail);
    index_.insert(sealer_, tail);
    heap_bytes_ -= excess;
    if (tail->end() < heap_hi_) heap_hi_ = tail->end();
    ++trims_;
    return true;
  }

  // Tells the claim hook about [lo, lo + used + kHeaderSize), clipped to
  // `end`: `used` bytes become the user's, then a split may write a header.
  void claiming(std::byte* lo, std::size_t used, std::byte* end) const {
    if (claim_hook_ == nullptr) return;
    std::byte* hi =
        static_cast<std::size_t>(end - lo) > used + kHeaderSize ? lo + used + kHeaderSize : end;
    claim_hook_(claim_context_, lo, hi);
  }

  Source& source_;
  Sealer sealer_;
  ClaimHook claim_hook_ = nullptr;
  void* claim_context_ = nullptr;
  ErrorHandler handler_ = nullptr;
  const char* operation_ = "";
  bool libc_names_ = false;

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
  std::size_t mremap_calls_ = 0;
  std::size_t trims_ = 0;
  SearchStats search_;
};

}  // namespace osmem

#include "heap_inspect.hpp"
