// The engine under MallocConfig (docs/contract.md, part II): for any
// sequence of malloc, calloc, realloc, free, aligned allocation and trim
// (with the system's failures and another component's sbrk mixed in),
// every block is aligned as promised and holds its bytes, a NULL comes with
// ENOMEM, the break never falls below another component's memory, and the
// checker finds nothing. RapidCheck shrinks a failing sequence to a short
// one.
#include <gtest/gtest.h>
#include <rapidcheck.h>
// Needs gtest/gtest.h first: Debian's copy does not include it itself.
#include <rapidcheck/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "fake_source.hpp"
#include "heap.hpp"

namespace osmem::props {
namespace {

using MHeap = Heap<FakeSource, MallocConfig>;

enum class Kind { Malloc, Calloc, Aligned, Realloc, Free, Trim, FailExtend, FailMap, Foreign };

struct Op {
  Kind kind;
  std::size_t size;   // request, or trim pad, or foreign delta
  std::size_t align;  // Aligned: the alignment
  std::size_t pick;   // Realloc/Free: which live block (modulo their count)
};

// How RapidCheck prints an Op in a counterexample.
[[maybe_unused]] void showValue(const Op& op, std::ostream& os) {
  static const char* names[] = {"malloc",  "calloc",      "aligned", "realloc",
                                "free",    "trim",        "fail-sbrk", "fail-mmap", "foreign-sbrk"};
  os << names[static_cast<int>(op.kind)] << "(size " << op.size << ", align " << op.align
     << ", pick " << op.pick << ")";
}

rc::Gen<std::size_t> sizes() {
  return rc::gen::weightedOneOf<std::size_t>({
      {2, rc::gen::inRange<std::size_t>(0, 64)},
      {4, rc::gen::inRange<std::size_t>(0, 4096)},
      {2, rc::gen::inRange<std::size_t>(120 << 10, 140 << 10)},  // the mmap threshold
      {1, rc::gen::inRange<std::size_t>(140 << 10, 1 << 20)},
      {1, rc::gen::just(SIZE_MAX - 64)},
  });
}

rc::Gen<Op> ops() {
  return rc::gen::build<Op>(
      rc::gen::set(&Op::kind, rc::gen::weightedElement<Kind>({{6, Kind::Malloc},
                                                              {2, Kind::Calloc},
                                                              {2, Kind::Aligned},
                                                              {4, Kind::Realloc},
                                                              {5, Kind::Free},
                                                              {1, Kind::Trim},
                                                              {1, Kind::FailExtend},
                                                              {1, Kind::FailMap},
                                                              {1, Kind::Foreign}})),
      rc::gen::set(&Op::size, sizes()),
      rc::gen::set(&Op::align, rc::gen::map(rc::gen::inRange(3, 22),
                                            [](int k) { return std::size_t{1} << k; })),
      rc::gen::set(&Op::pick, rc::gen::inRange<std::size_t>(0, 1000)));
}

struct Live {
  std::size_t n;
  unsigned char fill;
};

bool holds(const void* p, const Live& l) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < l.n; ++i) {
    if (b[i] != l.fill) return false;
  }
  return true;
}

std::string first_violation(const MHeap& heap) {
  Violation v[1];
  return heap.check(v, 1) == 0 ? "" : invariant_name(v[0].invariant);
}

RC_GTEST_PROP(MallocPolicyProps, EverySequenceKeepsBlocksAlignedIntactAndTheHeapConsistent, ()) {
  const auto program = *rc::gen::container<std::vector<Op>>(ops());
  FakeLimits limits;
  limits.heap_capacity = std::size_t{8} << 20;
  limits.map_capacity = std::size_t{64} << 20;
  FakeSource source(limits);
  MHeap heap(source, 0xfeed);
  std::map<void*, Live> live;
  std::size_t foreign_top = 0;
  unsigned char fill = 1;
  auto adopt = [&](void* p, std::size_t n, std::size_t align) {
    if (p == nullptr) {
      RC_ASSERT(errno == ENOMEM);
      return;
    }
    RC_ASSERT(reinterpret_cast<std::uintptr_t>(p) % 16 == 0);
    RC_ASSERT(reinterpret_cast<std::uintptr_t>(p) % align == 0);
    RC_ASSERT(heap.usable_size(p) >= n);
    RC_ASSERT(live.count(p) == 0u);
    std::memset(p, fill, n);
    live[p] = Live{n, fill};
  };
  for (const Op& op : program) {
    ++fill;
    errno = 0;
    auto picked = live.begin();
    if (!live.empty()) std::advance(picked, static_cast<long>(op.pick % live.size()));
    switch (op.kind) {
      case Kind::Malloc:
        adopt(heap.malloc(op.size), op.size, 1);
        break;
      case Kind::Calloc: {
        void* p = heap.calloc(1, op.size);
        if (p != nullptr) RC_ASSERT(holds(p, Live{op.size, 0}));
        adopt(p, op.size, 1);
        break;
      }
      case Kind::Aligned:
        adopt(heap.aligned_malloc(op.align, op.size), op.size, op.align);
        break;
      case Kind::Realloc: {
        if (live.empty()) break;
        void* p = picked->first;
        const Live old = picked->second;
        RC_ASSERT(holds(p, old));
        void* q = heap.realloc(p, op.size);
        if (op.size == 0) {
          RC_ASSERT((q == nullptr));
          live.erase(picked);
        } else if (q == nullptr) {
          RC_ASSERT(errno == ENOMEM);
          RC_ASSERT(holds(p, old));
        } else {
          live.erase(picked);
          RC_ASSERT(holds(q, Live{old.n < op.size ? old.n : op.size, old.fill}));
          adopt(q, op.size, 1);
        }
        break;
      }
      case Kind::Free:
        if (live.empty()) break;
        RC_ASSERT(holds(picked->first, picked->second));
        heap.free(picked->first);
        live.erase(picked);
        break;
      case Kind::Trim:
        heap.trim(op.size % (256 << 10));
        break;
      case Kind::FailExtend:
        source.fail_next_extend();
        break;
      case Kind::FailMap:
        source.fail_next_map();
        break;
      case Kind::Foreign:
        if (source.foreign_extend(op.size % (64 << 10) + 1)) foreign_top = source.break_offset();
        break;
    }
    RC_ASSERT(source.break_offset() >= foreign_top);
    RC_ASSERT(source.misuse_count() == 0u);
    RC_ASSERT(first_violation(heap) == "");
  }
  for (auto& [p, l] : live) {
    RC_ASSERT(holds(p, l));
    heap.free(p);
  }
  RC_ASSERT(first_violation(heap) == "");
  struct ::os_heap_stats s {};
  heap.stats(&s);
  RC_ASSERT(s.heap_bytes_in_use == 0u);
  RC_ASSERT(s.mapped_blocks == 0u);
}

}  // namespace
}  // namespace osmem::props
