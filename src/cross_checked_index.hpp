// Two free-block indexes kept side by side, the second as an oracle for the
// first: every search asks both and a disagreement is a fatal
// HeapInconsistent. The engine uses the primary's answer, so the shipped
// index is what runs; the oracle only judges it.
//
// The lockstep harness (tests, property tests, fuzzers) runs the engine with
// CrossCheckedIndex<FreeTree, LinearFreeIndex>: the tree must pick, at every
// step, exactly the block the seed's linear scan picks. That also keeps the
// linear scan itself (the benchmarks' baseline) under test.
#pragma once

#include <cstddef>

#include "block.hpp"
#include "block_list.hpp"
#include "canary.hpp"
#include "free_index.hpp"
#include "invariant.hpp"
#include "metadata.hpp"
#include "report.hpp"

namespace osmem {

template <class Primary, class Oracle>
class CrossCheckedIndex {
 public:
  void bind(const ErrorHandler* handler, const char* const* operation) {
    handler_ = handler;
    operation_ = operation;
    primary_.bind(handler, operation);
    oracle_.bind(handler, operation);
  }

  void attach(MetadataArea area) {
    primary_.attach(area);
    oracle_.attach(area);
  }
  std::size_t max_span() const {
    return primary_.max_span() < oracle_.max_span() ? primary_.max_span() : oracle_.max_span();
  }
  const RecordPool& records() const { return primary_.records(); }

  void insert(const Sealer& sealer, BlockMeta* b) {
    primary_.insert(sealer, b);
    oracle_.insert(sealer, b);
  }
  void remove(const Sealer& sealer, BlockMeta* b) {
    primary_.remove(sealer, b);
    oracle_.remove(sealer, b);
  }

  BlockMeta* find(const Sealer& sealer, const BlockList& list, std::size_t need,
                  SearchStats& stats) const {
    BlockMeta* got = primary_.find(sealer, list, need, stats);
    SearchStats ignored;
    BlockMeta* want = oracle_.find(sealer, list, need, ignored);
    if (got != want) {
      report(handler_ != nullptr ? *handler_ : nullptr, ErrorKind::HeapInconsistent,
             operation_ != nullptr ? *operation_ : "", got != nullptr ? got : want);
    }
    return got;
  }

  bool contains(const BlockMeta* b) const { return primary_.contains(b); }
  std::size_t count() const { return primary_.count(); }
  std::size_t bytes() const { return primary_.bytes(); }
  const SearchStats& walks() const { return primary_.walks(); }

  template <class Readable, class Add>
  void check(const Sealer& sealer, Readable&& readable, Add&& add) const {
    primary_.check(sealer, readable, add);
    if (oracle_.count() != primary_.count() || oracle_.bytes() != primary_.bytes()) {
      add(Invariant::IndexMismatch, nullptr);
    }
  }

 private:
  Primary primary_;
  Oracle oracle_;
  const ErrorHandler* handler_ = nullptr;
  const char* const* operation_ = nullptr;
};

}  // namespace osmem
