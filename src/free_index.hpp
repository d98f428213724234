// Best-fit search over the FREE heap blocks.
//
// The contract fixes the answer: the smallest FREE block whose size is at
// least `need`, the lowest address among equal sizes. This index finds it
// the way the seed did, by walking the whole address-ordered list; it keeps
// the interface (insert/remove/find plus the counts the checker verifies)
// small so that a faster structure can replace it without touching the
// engine. A block's size must not change while it is in the index.
#pragma once

#include <cstddef>

#include "block.hpp"
#include "block_list.hpp"
#include "canary.hpp"
#include "metadata.hpp"
#include "report.hpp"

namespace osmem {

struct SearchStats {
  std::size_t searches = 0;
  std::size_t visits = 0;
  std::size_t max_visits = 0;

  void add(std::size_t v) {
    ++searches;
    visits += v;
    if (v > max_visits) max_visits = v;
  }
};

class LinearFreeIndex {
 public:
  void bind(const ErrorHandler*, const char* const*) {}
  // The walk keeps no records, so the heap may span anything.
  void attach(MetadataArea) {}
  std::size_t max_span() const { return SIZE_MAX; }
  const RecordPool& records() const { return no_records_; }
  bool contains(const BlockMeta*) const { return true; }  // the list is the index
  template <class Readable, class Add>
  void check(const Sealer&, Readable&&, Add&&) const {}  // the list walk covers it

  void insert(const Sealer&, BlockMeta* b) {
    const OpenHeader open(b);
    ++count_;
    bytes_ += b->size;
  }
  void remove(const Sealer&, BlockMeta* b) {
    const OpenHeader open(b);
    --count_;
    bytes_ -= b->size;
  }

  BlockMeta* find(const Sealer&, const BlockList& list, std::size_t need,
                  SearchStats& stats) const {
    BlockMeta* best = nullptr;
    std::size_t best_size = 0;  // best's header is closed once the walk moves on
    std::size_t visits = 0;
    for (BlockMeta* b = list.head(); b != nullptr; b = next_of(b)) {
      const OpenHeader open(b);
      ++visits;
      // Strictly smaller only: the first of equal sizes has the lowest address.
      if (b->status == Status::Free && b->size >= need &&
          (best == nullptr || b->size < best_size)) {
        best = b;
        best_size = b->size;
        if (b->size == need) break;
      }
    }
    stats.add(visits);
    walks_.add(visits);
    return best;
  }

  // Blocks visited by every operation: only searches walk.
  const SearchStats& walks() const { return walks_; }

  std::size_t count() const { return count_; }
  std::size_t bytes() const { return bytes_; }

 private:
  std::size_t count_ = 0;
  std::size_t bytes_ = 0;
  mutable SearchStats walks_;
  RecordPool no_records_;
};

}  // namespace osmem
