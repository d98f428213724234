// Exact best fit in O(log n): segregated size classes, each a treap.
//
// The contract fixes which block a search must return: the smallest FREE
// block whose size is at least `need`, and the lowest address among blocks
// of that size. Order the free blocks by the key (size, address) and the
// answer is the first key >= (need, 0): a lower-bound query, which any
// balanced search tree answers in O(log n).
//
// Where the tree lives. The contract gives us no memory of our own: a FREE
// block's header is fully used (size, status, canary, and the address-order
// links prev/next), and the smallest FREE block has exactly 8 payload bytes.
// So each node stores its two children in those 8 bytes, as 32-bit offsets
// from the first heap block in 8-byte units (0 = none), which covers a heap
// span of 32 GiB (kMaxSpan; the engine never grows the heap past it). A
// treap needs nothing else: its priority is derived, a keyed hash of the
// block's address with the heap's secret cookie, so the expected depth is
// O(log n) whatever sizes and addresses a program (or an attacker, who does
// not know the cookie) produces. Insert and remove are top-down split/merge
// along one path, so there are no parent links.
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
// Trust. The links live in payload memory a buggy program can still write
// to (a use after free). Every decoded link is bounds-checked before it is
// read, every descent is bounded, a node is read only if its header says
// FREE, and a node is written only after its header's canary is verified:
// corruption ends in a diagnosis, never in a write to someone else's block.
//
// Memory tools. Free payloads are no access to them (sanitizer.hpp): an
// operation opens each node, header and links, as it reaches it and closes
// them all when it returns; the checker opens one node at a time.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "block.hpp"
#include "block_list.hpp"
#include "canary.hpp"
#include "free_index.hpp"
#include "invariant.hpp"
#include "report.hpp"

namespace osmem {

class FreeTree {
 public:
  static constexpr std::size_t kExactLimit = 4096;  // sizes up to this have a class each
  static constexpr std::size_t kClasses = 1024;
  static constexpr std::size_t kMaxSpan = (std::size_t{1} << 32) * kAlignment - kAlignment;
  static constexpr int kMaxDepth = 200;  // far beyond any honest treap's depth
  // What a node is to memory tools: its header and its two links, opened
  // (and closed) as two regions, so that a header the engine already holds
  // open stays open.
  static constexpr std::size_t kLinkBytes = 2 * sizeof(std::uint32_t);
  struct OpenNodes {
    tool::RevealPath<kMaxDepth + 8> headers{kHeaderSize};
    tool::RevealPath<kMaxDepth + 8> links{kLinkBytes};
    BlockMeta* operator()(BlockMeta* n) {
      if (n != nullptr) links(n->payload());
      return headers(n);
    }
  };
  // One node held open for one scope.
  struct NodeView {
    explicit NodeView(const BlockMeta* n)
        : header(n), links(n != nullptr ? n->payload() : nullptr, kLinkBytes) {}
    OpenHeader header;
    tool::Reveal links;
  };

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

  void insert(const Sealer& sealer, BlockMeta* x) {
    OpenNodes open;
    open(x);
    if (base_ == 0) base_ = x->address();  // the first heap block: the lowest address
    if (x->address() > top_) top_ = x->address();
    const std::size_t c = class_of(x->size);
    bits_[c / 64] |= std::uint64_t{1} << (c % 64);
    const std::uint64_t px = sealer.priority(x);
    std::uint32_t* link = &roots_[c];
    BlockMeta* owner = nullptr;  // the node whose child link will point at x
    int depth = 0;
    while (*link != 0) {
      BlockMeta* n = visit(*link, depth, open);
      if (sealer.priority(n) < px) break;
      owner = n;
      link = less(x, n) ? left(n) : right(n);
    }
    if (owner != nullptr && !sealer.intact(owner)) fail(owner);
    // Split the subtree at *link around x's key; x takes both halves.
    std::uint32_t t = *link;
    std::uint32_t* l = left(x);
    std::uint32_t* r = right(x);
    while (t != 0) {
      BlockMeta* n = writable(sealer, t, depth, open);
      if (less(n, x)) {
        *l = t;
        l = right(n);
        t = *l;
      } else {
        *r = t;
        r = left(n);
        t = *r;
      }
    }
    *l = 0;
    *r = 0;
    *link = encode(x);
    ++count_;
    bytes_ += x->size;
    walks_.add(static_cast<std::size_t>(depth));
  }

  void remove(const Sealer& sealer, BlockMeta* x) {
    OpenNodes open;
    open(x);
    const std::size_t c = class_of(x->size);
    std::uint32_t* link = &roots_[c];
    const std::uint32_t target = encode(x);
    BlockMeta* owner = nullptr;
    int depth = 0;
    while (*link != target) {
      if (*link == 0) fail(x);  // a FREE block the index does not hold
      owner = visit(*link, depth, open);
      link = less(x, owner) ? left(owner) : right(owner);
    }
    if (owner != nullptr && !sealer.intact(owner)) fail(owner);
    // Merge x's subtrees in x's place, higher priority on top.
    std::uint32_t a = *left(x);
    std::uint32_t b = *right(x);
    while (a != 0 && b != 0) {
      BlockMeta* na = writable(sealer, a, depth, open);
      BlockMeta* nb = writable(sealer, b, depth, open);
      if (sealer.priority(na) > sealer.priority(nb)) {
        *link = a;
        link = right(na);
        a = *link;
      } else {
        *link = b;
        link = left(nb);
        b = *link;
      }
    }
    *link = a != 0 ? a : b;
    if (roots_[c] == 0) bits_[c / 64] &= ~(std::uint64_t{1} << (c % 64));
    --count_;
    bytes_ -= x->size;
    walks_.add(static_cast<std::size_t>(depth));
  }

  BlockMeta* find(const Sealer& sealer, const BlockList&, std::size_t need,
                  SearchStats& stats) const {
    OpenNodes open;
    int depth = 0;
    std::size_t c = class_of(need);
    BlockMeta* best = nullptr;
    // need's own class may hold blocks smaller than need: a lower bound.
    for (std::uint32_t v = roots_[c]; v != 0;) {
      BlockMeta* n = visit(v, depth, open);
      if (n->size >= need) {
        best = n;
        v = *left(n);
      } else {
        v = *right(n);
      }
    }
    if (best == nullptr && (c = next_class(c + 1)) < kClasses) {
      // Every block of a higher class fits: the leftmost is the best.
      for (std::uint32_t v = roots_[c]; v != 0; v = *left(best)) best = visit(v, depth, open);
    }
    stats.add(static_cast<std::size_t>(depth));
    walks_.add(static_cast<std::size_t>(depth));
    if (best != nullptr && !sealer.intact(best)) fail(best);
    return best;
  }

  std::size_t count() const { return count_; }
  std::size_t bytes() const { return bytes_; }

  // For the checker: is b, a FREE block on the heap list, in the tree where
  // its key says it must be? Read-only and bounded, whatever the links hold.
  bool contains(const BlockMeta* b) const {
    const OpenHeader open_b(b);
    std::uint32_t v = roots_[class_of(b->size)];
    for (int depth = 0; v != 0 && depth <= kMaxDepth; ++depth) {
      const BlockMeta* n = decode(v);
      if (n == b) return true;
      if (addr_of(n) > top_) return false;
      const NodeView open(n);
      v = less(b, n) ? *left(n) : *right(n);
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
      const BlockMeta* node;
      const BlockMeta* lo;  // exclusive key bounds (nullptr: unbounded)
      const BlockMeta* hi;
      std::uint64_t parent_priority;
    };
    Frame stack[kMaxDepth + 2];
    std::size_t nodes = 0;
    bool complete = true;
    for (std::size_t c = 0; c < kClasses; ++c) {
      const bool bit = (bits_[c / 64] >> (c % 64)) & 1;
      if (bit != (roots_[c] != 0)) add(Invariant::IndexMismatch, decode(roots_[c]));
      if (roots_[c] == 0) continue;
      int depth = 0;
      stack[depth++] = Frame{decode(roots_[c]), nullptr, nullptr, UINT64_MAX};
      while (depth > 0) {
        const Frame f = stack[--depth];
        const BlockMeta* n = f.node;
        const bool in_reach = readable(n) && addr_of(n) <= top_;
        const NodeView open(in_reach ? n : nullptr);
        if (!in_reach || class_of(n->size) != c) {
          add(Invariant::IndexMismatch, n);  // cannot be a free block of this class
          complete = false;
          continue;
        }
        if (!sealer.intact(n) || n->status != Status::Free) {
          // The heap checker runs this only once the list is sound, so this
          // is no damaged list block: a link leads somewhere no FREE block
          // is. Reported, and not followed.
          add(Invariant::IndexMismatch, n);
          complete = false;
          continue;
        }
        const std::uint64_t p = sealer.priority(n);
        if ((f.lo != nullptr && !less(f.lo, n)) || (f.hi != nullptr && !less(n, f.hi)) ||
            p > f.parent_priority) {
          add(Invariant::IndexMismatch, n);
        }
        if (++nodes > count_) {
          add(Invariant::IndexMismatch, n);
          return;  // more nodes than free blocks: a cycle or a stray
        }
        for (int side = 0; side < 2; ++side) {
          const std::uint32_t v = side == 0 ? *left(n) : *right(n);
          if (v == 0) continue;
          if (depth >= kMaxDepth) {
            add(Invariant::IndexMismatch, n);
            complete = false;
            continue;
          }
          stack[depth++] = side == 0 ? Frame{decode(v), f.lo, n, p} : Frame{decode(v), n, f.hi, p};
        }
      }
    }
    // Byte totals are compared by the heap checker (index against list), and
    // only when the list walk is sound: a corrupted size is reported once.
    if (complete && nodes != count_) add(Invariant::IndexMismatch, nullptr);
  }

 private:
  static bool less(const BlockMeta* a, const BlockMeta* b) {
    const OpenHeader open_a(a), open_b(b);  // a may be a node whose walk moved on
    return a->size < b->size || (a->size == b->size && a < b);
  }
  static std::uint32_t* left(const BlockMeta* b) {
    return reinterpret_cast<std::uint32_t*>(const_cast<std::byte*>(b->payload()));
  }
  static std::uint32_t* right(const BlockMeta* b) { return left(b) + 1; }

  std::uint32_t encode(const BlockMeta* b) const {
    return static_cast<std::uint32_t>(((b->address() - base_) >> 3) + 1);
  }
  BlockMeta* decode(std::uint32_t v) const {
    return v == 0 ? nullptr
                  : reinterpret_cast<BlockMeta*>(base_ + (static_cast<std::uintptr_t>(v) - 1) * 8);
  }

  [[noreturn]] void fail(const BlockMeta* at) const {
    report(handler_ != nullptr ? *handler_ : nullptr, ErrorKind::HeapInconsistent,
           operation_ != nullptr ? *operation_ : "", at);
  }

  // A node about to be read: inside the heap, FREE, and not too deep.
  BlockMeta* visit(std::uint32_t v, int& depth, OpenNodes& open) const {
    BlockMeta* n = decode(v);
    if (n->address() > top_) fail(n);
    open(n);  // only once it is known to lie in the heap
    if (n->status != Status::Free || ++depth > kMaxDepth) fail(n);
    return n;
  }
  // A node about to be written: its header must also be intact.
  BlockMeta* writable(const Sealer& sealer, std::uint32_t v, int& depth, OpenNodes& open) const {
    BlockMeta* n = visit(v, depth, open);
    if (!sealer.intact(n)) fail(n);
    return n;
  }

  std::size_t next_class(std::size_t c) const {
    for (std::size_t w = c / 64; c < kClasses; ++w, c = w * 64) {
      const std::uint64_t word = bits_[w] & (~std::uint64_t{0} << (c % 64));
      if (word != 0) return w * 64 + static_cast<std::size_t>(std::countr_zero(word));
    }
    return kClasses;
  }

  std::uint32_t roots_[kClasses] = {};
  std::uint64_t bits_[kClasses / 64] = {};
  std::uintptr_t base_ = 0;  // address of the first heap block
  std::uintptr_t top_ = 0;   // highest header address ever indexed
  std::size_t count_ = 0;
  std::size_t bytes_ = 0;
  mutable SearchStats walks_;
  const ErrorHandler* handler_ = nullptr;
  const char* const* operation_ = nullptr;
};

}  // namespace osmem
