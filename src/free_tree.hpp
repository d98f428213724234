// Exact best fit in O(log n): segregated size classes, each a treap.
//
// The contract fixes which block a search must return: the smallest FREE
// block whose size is at least `need`, and the lowest address among blocks
// of that size. Order the free blocks by the key (size, address) and the
// answer is the first key >= (need, 0): a lower-bound query, which any
// balanced search tree answers in O(log n).
//
// Where the tree lives. Not in the heap: the contract (rule 15) says a FREE
// block keeps its payload bytes, and its header is fully used. Each FREE
// block has one record in a pool outside user-visible memory (metadata.hpp):
// its key (size, header address), cached so a walk reads no header, and its
// two children as 32-bit record indices (0 = none). A treap needs nothing
// else: its priority is derived, a keyed hash of the block's address with
// the heap's secret cookie, so the expected depth is O(log n) whatever sizes
// and addresses a program (or an attacker, who does not know the cookie)
// produces. Insert and remove are top-down split/merge along one path, so
// there are no parent links. A block finds its record by its key: remove()
// searches for it, one root-to-leaf path like any search.
//
// Capacity. A FREE block takes at least 40 bytes of a heap segment (a header
// and 8 bytes), so a pool of C records can index any heap whose segments
// hold at most 40 * C bytes: max_span(), the limit of rule 14. The engine
// never grows the heap past it, so an insert always finds a record.
//
// Why classes. One tree over all free blocks would work, but every level of
// it is a cache miss in a large heap. Sizes up to 4096 get a class each
// (they are the common case, and within an exact class the key degenerates
// to the address); larger sizes share eight classes per power of two. A
// 1024-bit bitmap finds the first non-empty class at or above need's class
// in a few word scans, and only that class's (much smaller) tree is
// searched: first a lower bound in need's own class, which may hold smaller
// blocks too, else the leftmost node of the next non-empty class, all of
// whose blocks fit. The roots and the bitmap are the only fixed storage
// (4.1 KiB inside the heap object).
//
// Trust. Records are osmem's own memory, out of a use after free's reach,
// but every index is still bounds-checked (against the pool's high-water
// mark) before it is followed and every descent is bounded; the block a
// search returns is checked against its record (canary intact, FREE, same
// size) before the engine uses it; the checker verifies every record's key
// against its block's header. Corruption ends in a diagnosis.
//
// Memory tools. The index reads no payload byte, so free payloads stay
// wholly no access, during calls too (sanitizer.hpp); the headers it reads
// (a search's answer, the checker's blocks) are opened one at a time.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "block.hpp"
#include "block_list.hpp"
#include "canary.hpp"
#include "free_index.hpp"
#include "invariant.hpp"
#include "metadata.hpp"
#include "report.hpp"

namespace osmem {

class FreeTree {
 public:
  static constexpr std::size_t kExactLimit = 4096;  // sizes up to this have a class each
  static constexpr std::size_t kClasses = 1024;
  static constexpr int kMaxDepth = 200;  // far beyond any honest treap's depth
  static constexpr std::size_t kRecordBytes = RecordPool::kRecordBytes;

  static constexpr std::size_t class_of(std::size_t size) {
    if (size <= kExactLimit) return size / kAlignment - 1;
    const int top = std::bit_width(size) - 1;  // >= 12
    const std::size_t sub = (size >> (top - 3)) & 7;
    return kExactLimit / kAlignment + static_cast<std::size_t>(top - 12) * 8 + sub;
  }

  // Where fatal corruption is reported: the owning heap's handler and the
  // name of the operation in progress.
  void bind(const ErrorHandler* handler, const char* const* operation) {
    handler_ = handler;
    operation_ = operation;
  }

  // The records' home; called once, before the first insert.
  void attach(MetadataArea area) { pool_.attach(area); }

  // Rule 14: the most bytes the heap's segments may hold so that every FREE
  // block can have a record.
  std::size_t max_span() const {
    const std::size_t c = pool_.capacity();
    return c > SIZE_MAX / kMinSplitRemainder ? SIZE_MAX : c * kMinSplitRemainder;
  }

  void insert(const Sealer& sealer, BlockMeta* x) {
    const Key kx = key_of(x);
    const std::uint32_t id = pool_.acquire();
    if (id == 0) fail(x);  // the engine keeps the heap within max_span()
    BlockRecord& rx = pool_.at(id);
    rx = BlockRecord{kx.block, kx.size, 0, 0};
    const std::size_t c = class_of(kx.size);
    bits_[c / 64] |= std::uint64_t{1} << (c % 64);
    const std::uint64_t px = sealer.priority(kx.block);
    std::uint32_t* link = &roots_[c];
    int depth = 0;
    while (*link != 0) {
      BlockRecord& n = visit(*link, depth);
      if (sealer.priority(n.block) < px) break;
      link = less(kx, n) ? &n.left : &n.right;
    }
    // Split the subtree at *link around x's key; x takes both halves.
    std::uint32_t t = *link;
    std::uint32_t* l = &rx.left;
    std::uint32_t* r = &rx.right;
    while (t != 0) {
      BlockRecord& n = visit(t, depth);
      if (less(n, kx)) {
        *l = t;
        l = &n.right;
        t = *l;
      } else {
        *r = t;
        r = &n.left;
        t = *r;
      }
    }
    *l = 0;
    *r = 0;
    *link = id;
    bytes_ += kx.size;
    walks_.add(static_cast<std::size_t>(depth));
  }

  void remove(const Sealer& sealer, BlockMeta* x) {
    const Key kx = key_of(x);
    const std::size_t c = class_of(kx.size);
    std::uint32_t* link = &roots_[c];
    int depth = 0;
    // Find x's record by its key.
    for (;;) {
      if (*link == 0) fail(x);  // a FREE block the index does not hold
      BlockRecord& n = visit(*link, depth);
      if (n.block == kx.block && n.size == kx.size) break;
      link = less(kx, n) ? &n.left : &n.right;
    }
    const std::uint32_t id = *link;
    // Merge x's subtrees in x's place, higher priority on top.
    std::uint32_t a = pool_.at(id).left;
    std::uint32_t b = pool_.at(id).right;
    while (a != 0 && b != 0) {
      BlockRecord& na = visit(a, depth);
      BlockRecord& nb = visit(b, depth);
      if (sealer.priority(na.block) > sealer.priority(nb.block)) {
        *link = a;
        link = &na.right;
        a = *link;
      } else {
        *link = b;
        link = &nb.left;
        b = *link;
      }
    }
    *link = a != 0 ? a : b;
    if (roots_[c] == 0) bits_[c / 64] &= ~(std::uint64_t{1} << (c % 64));
    pool_.release(id);
    bytes_ -= kx.size;
    walks_.add(static_cast<std::size_t>(depth));
  }

  BlockMeta* find(const Sealer& sealer, const BlockList&, std::size_t need,
                  SearchStats& stats) const {
    int depth = 0;
    std::size_t c = class_of(need);
    const BlockRecord* best = nullptr;
    // need's own class may hold blocks smaller than need: a lower bound.
    for (std::uint32_t v = roots_[c]; v != 0;) {
      const BlockRecord& n = visit(v, depth);
      if (n.size >= need) {
        best = &n;
        v = n.left;
      } else {
        v = n.right;
      }
    }
    if (best == nullptr && (c = next_class(c + 1)) < kClasses) {
      // Every block of a higher class fits: the leftmost is the best.
      for (std::uint32_t v = roots_[c]; v != 0; v = best->left) best = &visit(v, depth);
    }
    stats.add(static_cast<std::size_t>(depth));
    walks_.add(static_cast<std::size_t>(depth));
    if (best == nullptr) return nullptr;
    auto* b = reinterpret_cast<BlockMeta*>(best->block);
    // The engine is about to use this block: it must be what its record says.
    // A broken canary is a damaged header, named as such (by its user
    // pointer, like free names one), so the report shows it and its cause.
    const OpenHeader open(b);
    if (!sealer.intact(b)) fail(ErrorKind::HeaderCorrupted, b->payload());
    if (b->status != Status::Free || b->size != best->size) fail(b);
    return b;
  }

  std::size_t count() const { return pool_.in_use(); }
  std::size_t bytes() const { return bytes_; }
  // The pool, for statistics.
  const RecordPool& records() const { return pool_; }

  // For the checker: does b, a FREE block on the heap list, have its record
  // where its key says it must be? Read-only and bounded, whatever the
  // records hold.
  bool contains(const BlockMeta* b) const {
    const Key kb = key_of(b);
    std::uint32_t v = roots_[class_of(kb.size)];
    for (int depth = 0; v != 0 && depth <= kMaxDepth; ++depth) {
      if (!pool_.valid(v)) return false;
      const BlockRecord& n = pool_.at(v);
      if (n.block == kb.block && n.size == kb.size) return true;
      v = less(kb, n) ? n.left : n.right;
    }
    return false;
  }

  // Nodes visited by every operation (find, insert, remove).
  const SearchStats& walks() const { return walks_; }

  // The index's own invariants, for the heap checker. `readable(b)` says
  // whether a header address lies in memory the heap owns.
  template <class Readable, class Add>
  void check(const Sealer& sealer, Readable&& readable, Add&& add) const {
    struct Frame {
      std::uint32_t id;
      const BlockRecord* lo;  // exclusive key bounds (nullptr: unbounded)
      const BlockRecord* hi;
      std::uint64_t parent_priority;
    };
    Frame stack[kMaxDepth + 2];
    std::size_t nodes = 0;
    std::size_t bytes = 0;
    bool complete = true;
    // Which classes have a tree: it must be what the bitmap says (a bit
    // without a root, or a root without its bit, is a mismatch).
    std::uint64_t occupied[kClasses / 64];
    for (std::size_t w = 0; w < kClasses / 64; ++w) {
      occupied[w] = occupied_classes(w);
      if (occupied[w] != bits_[w]) add(Invariant::IndexMismatch, nullptr);
    }
    for (std::size_t c = next_set(occupied, 0); c < kClasses; c = next_set(occupied, c + 1)) {
      int depth = 0;
      stack[depth++] = Frame{roots_[c], nullptr, nullptr, UINT64_MAX};
      while (depth > 0) {
        const Frame f = stack[--depth];
        if (!pool_.valid(f.id)) {
          add(Invariant::IndexMismatch, nullptr);  // an index past the pool's records
          complete = false;
          continue;
        }
        const BlockRecord& n = pool_.at(f.id);
        const auto* b = reinterpret_cast<const BlockMeta*>(n.block);
        if (!readable(b) || class_of(n.size) != c) {
          add(Invariant::IndexMismatch, b);  // cannot be a free block of this class
          complete = false;
          continue;
        }
        {
          // The record's key must be its block's header: a FREE block of
          // that size, sealed.
          const OpenHeader open(b);
          if (!sealer.intact(b) || b->status != Status::Free || b->size != n.size) {
            add(Invariant::IndexMismatch, b);
            complete = false;
            continue;
          }
        }
        const std::uint64_t p = sealer.priority(n.block);
        if ((f.lo != nullptr && !less(*f.lo, n)) || (f.hi != nullptr && !less(n, *f.hi)) ||
            p > f.parent_priority) {
          add(Invariant::IndexMismatch, b);
        }
        if (++nodes > pool_.in_use()) {
          add(Invariant::IndexMismatch, b);
          return;  // more nodes than records in use: a cycle or a stray
        }
        bytes += n.size;
        for (int side = 0; side < 2; ++side) {
          const std::uint32_t v = side == 0 ? n.left : n.right;
          if (v == 0) continue;
          if (depth >= kMaxDepth) {
            add(Invariant::IndexMismatch, b);
            complete = false;
            continue;
          }
          stack[depth++] = side == 0 ? Frame{v, f.lo, &n, p} : Frame{v, &n, f.hi, p};
        }
      }
    }
    // Every record is in a tree or on the pool's free list, never both.
    std::size_t recycled = 0;
    for (std::uint32_t v = pool_.free_head(); v != 0; v = pool_.at(v).left) {
      if (!pool_.valid(v) || ++recycled > pool_.high_water() || pool_.at(v).block != 0) {
        add(Invariant::IndexMismatch, nullptr);
        complete = false;
        break;
      }
    }
    if (complete && (nodes != pool_.in_use() || bytes != bytes_ ||
                     recycled + pool_.in_use() != pool_.high_water())) {
      add(Invariant::IndexMismatch, nullptr);
    }
  }

 private:
  struct Key {
    std::size_t size;
    std::uintptr_t block;
  };
  static Key key_of(const BlockMeta* b) {
    const OpenHeader open(b);
    return Key{b->size, b->address()};
  }
  // The order of keys: by size, then by address (ties go to the lowest).
  static bool less(std::size_t a_size, std::uintptr_t a, std::size_t b_size, std::uintptr_t b) {
    return a_size < b_size || (a_size == b_size && a < b);
  }
  static bool less(const Key& a, const BlockRecord& b) {
    return less(a.size, a.block, b.size, b.block);
  }
  static bool less(const BlockRecord& a, const Key& b) {
    return less(a.size, a.block, b.size, b.block);
  }
  static bool less(const BlockRecord& a, const BlockRecord& b) {
    return less(a.size, a.block, b.size, b.block);
  }

  [[noreturn]] void fail(const void* at) const { fail(ErrorKind::HeapInconsistent, at); }
  [[noreturn]] void fail(ErrorKind kind, const void* at) const {
    report(handler_ != nullptr ? *handler_ : nullptr, kind,
           operation_ != nullptr ? *operation_ : "", at);
  }

  // A record about to be read: one the pool handed out, and not too deep.
  BlockRecord& visit(std::uint32_t v, int& depth) const {
    if (!pool_.valid(v) || ++depth > kMaxDepth) fail(nullptr);
    return pool_.at(v);
  }

  // Bit k set when class w * 64 + k has a root: what bits_[w] must be.
  // The checker scans all 1024 classes; instrumented for the fuzzers'
  // coverage, that scan cost three comparison callbacks per class and was
  // most of the checker's time (the trees hold a few dozen nodes). It has
  // no branch worth feedback, so it is left out of the instrumentation.
#if defined(__clang__)
  __attribute__((no_sanitize("coverage")))
#endif
  std::uint64_t
  occupied_classes(std::size_t w) const {
    std::uint64_t m = 0;
    for (std::size_t k = 0; k < 64; ++k) {
      const std::uint32_t r = roots_[w * 64 + k];
      m |= std::uint64_t{(r | (0U - r)) >> 31} << k;
    }
    return m;
  }

  std::size_t next_class(std::size_t c) const {
    return next_set(bits_, c);
  }

  // The first class from c on whose bit is set in `words` (kClasses / 64
  // of them), or kClasses.
  static std::size_t next_set(const std::uint64_t* words, std::size_t c) {
    for (std::size_t w = c / 64; c < kClasses; ++w, c = w * 64) {
      const std::uint64_t word = words[w] & (~std::uint64_t{0} << (c % 64));
      if (word != 0) return w * 64 + static_cast<std::size_t>(std::countr_zero(word));
    }
    return kClasses;
  }

  // tests/free_tree_test.cpp damages the class table the way a stray
  // write into the heap object would.
  friend struct FreeTreeDamage;

  RecordPool pool_;
  std::uint32_t roots_[kClasses] = {};
  std::uint64_t bits_[kClasses / 64] = {};
  std::size_t bytes_ = 0;
  mutable SearchStats walks_;
  const ErrorHandler* handler_ = nullptr;
  const char* const* operation_ = nullptr;
};

}  // namespace osmem
