// The set of live mapped blocks: a treap threaded through their headers.
//
// os_free must recognise a pointer to a live mapping *before* reading the
// memory in front of it (that memory may be unmapped: a second free of a
// large block, a wild pointer). So the engine keeps every mapping in a
// search tree keyed by header address and looks the pointer up there first.
// The tree needs no memory of its own: a mapped header's prev/next fields
// are free to serve as left/right children, and a treap's priority can be
// derived (a keyed hash of the address), so nothing more has to be stored.
// Keying the hash with the heap's secret cookie keeps the expected depth
// logarithmic whatever addresses mmap hands out or an attacker arranges.
//
// Every node's canary covers its child links and is verified before a child
// is followed, so a corrupted header stops a lookup instead of steering it
// into foreign memory. Insert and remove are top-down (split/merge along one
// path), so they need neither parent pointers nor a stack. The headers a
// walk touches are opened to memory tools (sanitizer.hpp) as it reaches them.
#pragma once

#include <cstddef>

#include "block.hpp"
#include "canary.hpp"

namespace osmem {

// The headers one insert or remove touches, held open until it returns (it
// links and reseals nodes all along its path).
using OpenPath = tool::RevealPath<96>;

class MappedSet {
 public:
  // What a lookup reports when it meets a node whose canary is broken.
  struct Lookup {
    BlockMeta* found = nullptr;
    BlockMeta* corrupted = nullptr;
  };

  static BlockMeta*& left(BlockMeta* n) { return n->prev; }
  static BlockMeta*& right(BlockMeta* n) { return n->next; }

  BlockMeta* root() const { return root_; }
  std::size_t count() const { return count_; }
  std::size_t bytes() const { return bytes_; }  // mapped lengths, headers included

  Lookup find(const Sealer& sealer, const void* header) const {
    BlockMeta* n = root_;
    while (n != nullptr) {
      const OpenHeader open(n);
      if (!sealer.intact(n)) return {nullptr, n};
      if (n == header) return {n, nullptr};
      n = header < static_cast<const void*>(n) ? n->prev : n->next;
    }
    return {};
  }

  void insert(const Sealer& sealer, BlockMeta* x) {
    OpenPath open(kHeaderSize);
    open(x);
    const std::uint64_t px = sealer.priority(x);
    BlockMeta** link = &root_;
    BlockMeta* owner = nullptr;
    while (*link != nullptr && sealer.priority(*link) > px) {
      owner = open(*link);
      link = x < owner ? &left(owner) : &right(owner);
    }
    // Split the subtree at *link around x: smaller keys become x's left
    // subtree, larger ones its right subtree.
    BlockMeta* t = open(*link);
    BlockMeta** l = &left(x);
    BlockMeta* l_owner = x;
    BlockMeta** r = &right(x);
    BlockMeta* r_owner = x;
    while (t != nullptr) {
      if (t < x) {
        *l = t;
        if (l_owner != x) sealer.seal(l_owner);
        l_owner = t;
        l = &right(t);
        t = open(right(t));
      } else {
        *r = t;
        if (r_owner != x) sealer.seal(r_owner);
        r_owner = t;
        r = &left(t);
        t = open(left(t));
      }
    }
    *l = nullptr;
    *r = nullptr;
    if (l_owner != x) sealer.seal(l_owner);
    if (r_owner != x) sealer.seal(r_owner);
    sealer.seal(x);
    *link = x;
    if (owner != nullptr) sealer.seal(owner);
    ++count_;
    bytes_ += kHeaderSize + x->size;
  }

  // x must be in the set (the caller found it with find()).
  void remove(const Sealer& sealer, BlockMeta* x) {
    OpenPath open(kHeaderSize);
    open(x);
    BlockMeta** link = &root_;
    BlockMeta* owner = nullptr;
    while (*link != x) {
      owner = open(*link);
      link = x < owner ? &left(owner) : &right(owner);
    }
    // Merge x's subtrees in place of x, higher priority on top.
    BlockMeta* a = open(left(x));
    BlockMeta* b = open(right(x));
    while (a != nullptr && b != nullptr) {
      if (sealer.priority(a) > sealer.priority(b)) {
        *link = a;
        if (owner != nullptr) sealer.seal(owner);
        owner = a;
        link = &right(a);
        a = open(right(a));
      } else {
        *link = b;
        if (owner != nullptr) sealer.seal(owner);
        owner = b;
        link = &left(b);
        b = open(left(b));
      }
    }
    *link = a != nullptr ? a : b;
    if (owner != nullptr) sealer.seal(owner);
    --count_;
    bytes_ -= kHeaderSize + x->size;
  }

 private:
  BlockMeta* root_ = nullptr;
  std::size_t count_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace osmem
