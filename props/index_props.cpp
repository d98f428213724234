// The engine takes its free-block index from the Config: the default is the
// exact tree (FreeTree), and the linear scan (LinearFreeIndex) stays as the
// baseline the benchmark compares against. Both must implement the same
// best fit, so the same program must get the same addresses from either.
// Lockstep checks the default engine against the model; this property runs
// a second engine with the linear scan beside it and compares every result,
// which is the only way a bug in the index the default build does not use
// can be seen.
#include <gtest/gtest.h>
#include <rapidcheck.h>
// Needs gtest/gtest.h first: Debian's copy does not include it itself.
#include <rapidcheck/gtest.h>

#include <cstddef>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "free_index.hpp"
#include "generators.hpp"
#include "harness.hpp"

namespace osmem::props {
namespace {

struct LinearConfig : DefaultConfig {
  using FreeIndex = LinearFreeIndex;
};

struct Op {
  int kind;  // 0 malloc, 1 free, 2 realloc
  std::size_t n;
  std::size_t which;
};

[[maybe_unused]] void showValue(const Op& op, std::ostream& os) {
  if (op.kind == 0) os << "malloc(" << op.n << ")";
  if (op.kind == 1) os << "free(live block " << op.which << ")";
  if (op.kind == 2) os << "realloc(live block " << op.which << ", " << op.n << ")";
}

// Where a pointer is, comparable across two fake sources.
std::string where(const FakeSource& s, const void* p) {
  if (p == nullptr) return "NULL";
  if (s.in_heap_buffer(p)) {
    return "heap+" + std::to_string(static_cast<const std::byte*>(p) - s.heap_base());
  }
  return "map#" + std::to_string(s.mapping_serial(p));
}

RC_GTEST_PROP(FreeIndex, LinearScanAndTreeChooseTheSameBlocks, ()) {
  const auto ops = *rc::gen::scale(
      3.0, rc::gen::container<std::vector<Op>>(rc::gen::build<Op>(
               rc::gen::set(&Op::kind, rc::gen::weightedElement<int>({{5, 0}, {4, 1}, {2, 2}})),
               rc::gen::set(&Op::n, rc::gen::weightedOneOf<std::size_t>(
                                        {{4, small_heap_size()}, {1, request_size()}})),
               rc::gen::set(&Op::which, rc::gen::inRange<std::size_t>(0, 4096)))));
  Harness h;
  model::Lockstep& ls = h.ls;
  FakeSource linear_source;
  Heap<FakeSource, LinearConfig> linear(linear_source, model::Lockstep::Options{}.cookie);
  linear.set_error_handler(throwing_handler);
  std::vector<std::pair<std::byte*, std::byte*>> live;  // (default engine, linear engine)
  auto index_in_lockstep = [&](const std::byte* p) {
    for (std::size_t i = 0; i < ls.live().size(); ++i) {
      if (ls.live()[i].ptr == p) return i;
    }
    RC_FAIL("block not live in Lockstep");
    return std::size_t{0};
  };
  auto same = [&](const std::byte* a, const std::byte* b) {
    RC_ASSERT(where(ls.source(), a) == where(linear_source, b));
  };
  guarded([&] {
    for (const Op& op : ops) {
      if (op.kind == 0 || live.empty()) {
        const long i = ls.malloc(op.n);
        auto* a = i < 0 ? nullptr : ls.live()[static_cast<std::size_t>(i)].ptr;
        auto* b = static_cast<std::byte*>(linear.malloc(op.n));
        same(a, b);
        if (a != nullptr) live.emplace_back(a, b);
      } else if (op.kind == 1) {
        const std::size_t k = op.which % live.size();
        ls.free(index_in_lockstep(live[k].first));
        linear.free(live[k].second);
        live.erase(live.begin() + static_cast<long>(k));
      } else {
        const std::size_t k = op.which % live.size();
        const long i = ls.realloc(index_in_lockstep(live[k].first), op.n);
        auto* a = i < 0 ? nullptr : ls.live()[static_cast<std::size_t>(i)].ptr;
        auto* b = static_cast<std::byte*>(linear.realloc(live[k].second, op.n));
        same(a, b);
        if (a != nullptr) {
          live[k] = {a, b};
        } else if (op.n == 0) {
          live.erase(live.begin() + static_cast<long>(k));
        }
      }
    }
  });
  Violation found[4];
  RC_ASSERT(linear.check(found, 4) == 0u);
}

}  // namespace
}  // namespace osmem::props
