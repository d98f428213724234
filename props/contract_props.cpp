// Properties of the allocation contract (docs/contract.md), each stated on
// its own and checked against the engine directly (its block list, the
// headers, the system calls it made), not only through the model. Every
// step still runs in Lockstep, so a property that holds here also holds for
// the model.
#include <gtest/gtest.h>
#include <rapidcheck.h>
// Needs gtest/gtest.h first: Debian's copy does not include it itself.
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <ostream>
#include <vector>

#include "generators.hpp"
#include "harness.hpp"

namespace osmem::props {
namespace {

using Kind = SourceCall::Kind;

struct Seen {
  std::size_t offset;  // of the header from the heap buffer's start
  std::size_t size;
  Status status;
};

std::vector<Seen> heap_blocks(model::Lockstep& ls) {
  std::vector<Seen> out;
  // Headers are no access to memory tools: each is opened for its read.
  for (const BlockMeta* b = ls.engine().blocks().head(); b != nullptr; b = next_of(b)) {
    const OpenHeader open(b);
    out.push_back(Seen{
        static_cast<std::size_t>(reinterpret_cast<const std::byte*>(b) - ls.source().heap_base()),
        b->size, b->status});
  }
  return out;
}

std::size_t header_offset(model::Lockstep& ls, const std::byte* payload) {
  return static_cast<std::size_t>(payload - ls.source().heap_base()) - kHeaderSize;
}

std::byte* ptr(model::Lockstep& ls, long index) {
  RC_ASSERT(index >= 0);
  return ls.live()[static_cast<std::size_t>(index)].ptr;
}

std::size_t index_of(model::Lockstep& ls, const std::byte* p) {
  for (std::size_t i = 0; i < ls.live().size(); ++i) {
    if (ls.live()[i].ptr == p) return i;
  }
  RC_FAIL("block not live");
  return 0;
}

// Allocates every size in turn, then frees the ones not kept: a heap with
// holes of generated sizes between live blocks (and the free tail).
void fragment(model::Lockstep& ls, const std::vector<std::size_t>& sizes,
              const std::vector<bool>& keep) {
  std::vector<std::byte*> got;
  for (std::size_t n : sizes) got.push_back(ptr(ls, ls.malloc(n)));
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!keep[i]) ls.free(index_of(ls, got[i]));
  }
}

struct Layout {
  std::vector<std::size_t> sizes;
  std::vector<bool> keep;
};

// Printed in a counterexample as the calls that build the heap.
[[maybe_unused]] void showValue(const Layout& l, std::ostream& os) {
  for (std::size_t i = 0; i < l.sizes.size(); ++i)
    os << "a" << i << " = os_malloc(" << l.sizes[i] << "); ";
  for (std::size_t i = 0; i < l.sizes.size(); ++i) {
    if (!l.keep[i]) os << "os_free(a" << i << "); ";
  }
}

rc::Gen<Layout> layout() {
  return rc::gen::mapcat(rc::gen::container<std::vector<std::size_t>>(small_heap_size()),
                         [](std::vector<std::size_t> sizes) {
                           const std::size_t count = sizes.size();
                           return rc::gen::map(rc::gen::container<std::vector<bool>>(
                                                   count, rc::gen::arbitrary<bool>()),
                                               [sizes](std::vector<bool> keep) {
                                                 return Layout{sizes, keep};
                                               });
                         });
}

// Rule 3: malloc maps exactly when ALIGN8(n) + 32 reaches 128 KiB, with one
// mmap of exactly that length and a MAPPED header of size ALIGN8(n).
RC_GTEST_PROP(Contract, MallocMapsExactlyAtTheThreshold, ()) {
  const auto before = *rc::gen::container<std::vector<std::size_t>>(
      *rc::gen::inRange<std::size_t>(0, 4), small_heap_size());
  const std::size_t n = std::max<std::size_t>(1, *request_size());
  Harness h;
  guarded([&] {
    for (std::size_t m : before) h.ls.malloc(m);
    std::byte* p = ptr(h.ls, h.ls.malloc(n));
    const BlockMeta header = read_header(BlockMeta::from_payload(p));
    const BlockMeta* b = &header;
    const std::size_t need = align8(n);
    const bool maps = need + kHeaderSize >= kMmapThreshold;
    RC_ASSERT((h.ls.source().mapping_serial(p) != 0) == maps);
    RC_ASSERT(b->size >= need);
    if (maps) {
      RC_ASSERT(b->status == Status::Mapped);
      RC_ASSERT(b->size == need);
      RC_ASSERT(h.ls.last_calls().size() == 1u);
      RC_ASSERT(h.ls.last_calls()[0].kind == Kind::Map);
      RC_ASSERT(h.ls.last_calls()[0].arg == need + kHeaderSize);
    } else {
      RC_ASSERT(b->status == Status::Alloc);
      for (const SourceCall& c : h.ls.last_calls()) RC_ASSERT(c.kind == Kind::Extend);
    }
  });
}

// Rule 4: calloc maps exactly when ALIGN8(nmemb * size) + 32 reaches the
// page size, and its memory is zero even when it reuses a dirty heap block
// (Lockstep checks the zeroes; the heap was filled with a pattern first).
RC_GTEST_PROP(Contract, CallocMapsExactlyAtThePageSize, ()) {
  const std::size_t nmemb = *rc::gen::inRange<std::size_t>(1, 9);
  const std::size_t size = std::max<std::size_t>(
      1, *rc::gen::oneOf(around((kPage - kHeaderSize) / nmemb, 4), request_size()));
  const bool dirty = *rc::gen::arbitrary<bool>();
  Harness h;
  guarded([&] {
    if (dirty) h.ls.free(static_cast<std::size_t>(h.ls.malloc(64 << 10)));
    std::byte* p = ptr(h.ls, h.ls.calloc(nmemb, size));
    const std::size_t need = align8(nmemb * size);
    const bool maps = need + kHeaderSize >= kPage;
    RC_ASSERT((h.ls.source().mapping_serial(p) != 0) == maps);
    RC_ASSERT(read_header(BlockMeta::from_payload(p)).status ==
              (maps ? Status::Mapped : Status::Alloc));
    if (maps) {
      RC_ASSERT(h.ls.last_calls().size() == 1u);
      RC_ASSERT(h.ls.last_calls()[0].arg == need + kHeaderSize);
    }
  });
}

// Rule 5: the first allocation served by the heap calls sbrk(131072) and
// nothing else, whatever mappings came before; a refused first sbrk leaves
// the heap uninitialised, so the next heap allocation asks again.
RC_GTEST_PROP(Contract, FirstHeapAllocationGrowsBy128KiB, ()) {
  const auto mapped = *rc::gen::container<std::vector<std::size_t>>(
      *rc::gen::inRange<std::size_t>(0, 3),
      rc::gen::inRange<std::size_t>(kMmapThreshold - kHeaderSize, 3 * kMmapThreshold));
  const bool refuse_first = *rc::gen::arbitrary<bool>();
  const std::size_t n = *small_heap_size();
  const int how = *rc::gen::inRange(0, 3);
  Harness h;
  guarded([&] {
    for (std::size_t m : mapped) h.ls.malloc(m);
    if (refuse_first) {
      h.ls.fail_next_extend();
      std::byte* p = ptr(h.ls, h.ls.malloc(n));  // falls back to mmap (rule 9)
      RC_ASSERT(h.ls.source().mapping_serial(p) != 0);
      RC_ASSERT(h.ls.last_calls().size() == 2u);
      RC_ASSERT(h.ls.last_calls()[0].kind == Kind::Extend && !h.ls.last_calls()[0].ok);
      RC_ASSERT(h.ls.last_calls()[0].arg == kMmapThreshold);
      RC_ASSERT(h.ls.last_calls()[1].kind == Kind::Map);
    }
    const long i = how == 0 ? h.ls.malloc(n) : how == 1 ? h.ls.calloc(1, n) : h.ls.realloc_null(n);
    std::byte* p = ptr(h.ls, i);
    RC_ASSERT(h.ls.last_calls().size() == 1u);
    const SourceCall& c = h.ls.last_calls()[0];
    RC_ASSERT(c.kind == Kind::Extend && c.ok);
    RC_ASSERT(c.arg == std::size_t{128} << 10);
    RC_ASSERT(c.result == 0u);
    RC_ASSERT(header_offset(h.ls, p) == 0u);
    RC_ASSERT(h.ls.source().break_offset() == std::size_t{128} << 10);
  });
}

// Rule 7: a chosen block of size s is split for need iff s - need >= 40,
// leaving a FREE block of s - need - 32 right after it. Checked for best
// fit reusing a hole and for realloc shrinking in place.
RC_GTEST_PROP(Contract, SplitsExactlyWhenTheRemainderReaches40, ()) {
  const std::size_t a = *rc::gen::inRange<std::size_t>(1, 2048);
  const std::size_t s = align8(a);
  const std::size_t d = *rc::gen::inRange<std::size_t>(0, 97);
  const std::size_t n = d < s ? s - d : *rc::gen::inRange<std::size_t>(1, s + 1);
  const bool by_realloc = *rc::gen::arbitrary<bool>();
  Harness h;
  guarded([&] {
    std::byte* pa = ptr(h.ls, h.ls.malloc(a));
    h.ls.malloc(8);  // keeps the remainder from merging with the free tail
    std::byte* p = nullptr;
    if (by_realloc) {
      p = ptr(h.ls, h.ls.realloc(index_of(h.ls, pa), n));
    } else {
      h.ls.free(index_of(h.ls, pa));
      p = ptr(h.ls, h.ls.malloc(n));
    }
    RC_ASSERT(p == pa);  // best fit takes the hole; shrinking stays in place
    const std::size_t need = align8(n);
    const auto blocks = heap_blocks(h.ls);
    RC_ASSERT(blocks.size() >= 3u);
    RC_ASSERT(blocks[0].offset == 0u);
    if (s - need >= kMinSplitRemainder) {
      RC_ASSERT(blocks[0].size == need);
      RC_ASSERT(blocks[1].offset == kHeaderSize + need);
      RC_ASSERT(blocks[1].status == Status::Free);
      RC_ASSERT(blocks[1].size == s - need - kHeaderSize);
    } else {
      RC_ASSERT(blocks[0].size == s);
      RC_ASSERT(blocks[1].offset == kHeaderSize + s);
      RC_ASSERT(blocks[1].status == Status::Alloc);
    }
  });
}

// Rule 6a: among FREE blocks that fit, the smallest wins, ties to the
// lowest address; checked against the heap's block list just before the
// call, on a heap with generated holes.
RC_GTEST_PROP(Contract, BestFitTakesTheSmallestFittingBlock, ()) {
  const Layout l = *layout();
  const auto requests =
      *rc::gen::nonEmpty(rc::gen::container<std::vector<std::size_t>>(small_heap_size()));
  Harness h;
  guarded([&] {
    fragment(h.ls, l.sizes, l.keep);
    for (std::size_t n : requests) {
      const std::size_t need = align8(n);
      const auto before = heap_blocks(h.ls);
      const Seen* best = nullptr;
      for (const Seen& b : before) {
        if (b.status != Status::Free || b.size < need) continue;
        if (best == nullptr || b.size < best->size)
          best = &b;  // address order: ties keep the first
      }
      std::byte* p = ptr(h.ls, h.ls.malloc(n));
      if (best != nullptr) {
        RC_ASSERT(header_offset(h.ls, p) == best->offset);
      } else {
        // Nothing fits: the heap grows. Only a FREE last block may be
        // reused, grown in place (rule 6b); no other hole is handed out.
        for (std::size_t j = 0; j + 1 < before.size(); ++j) {
          RC_ASSERT(before[j].status != Status::Free || header_offset(h.ls, p) != before[j].offset);
        }
        RC_ASSERT(!h.ls.last_calls().empty());
      }
    }
  });
}

struct Step {
  std::size_t n;
  int before;  // 0 nothing, 1 free the next block up, 2 refuse the next sbrk, 3 foreign sbrk
};

[[maybe_unused]] void showValue(const Step& st, std::ostream& os) {
  static const char* const kBefore[] = {"", "os_free(next block up); ",
                                        "/* the next sbrk fails */ ", "/* foreign sbrk */ "};
  os << kBefore[st.before] << "p = os_realloc(p, " << st.n << ");";
}

// Rule 12: whatever path realloc takes (in place, absorbing the next block,
// growing the tail, moving, mapping), the first min(old, new) bytes survive;
// when it fails the old block is untouched. Checked here byte by byte
// against a copy taken before the call.
RC_GTEST_PROP(Contract, ReallocNeverLosesAPrefixByte, ()) {
  const Layout l = *layout();
  const std::size_t first = *small_heap_size();
  const auto steps = *rc::gen::container<std::vector<Step>>(rc::gen::build<Step>(
      rc::gen::set(&Step::n, any_size()),
      rc::gen::set(&Step::before,
                   rc::gen::weightedElement<int>({{4, 0}, {3, 1}, {1, 2}, {1, 3}}))));
  Harness h;
  guarded([&] {
    std::byte* p = ptr(h.ls, h.ls.malloc(first));
    std::size_t have = first;
    fragment(h.ls, l.sizes, l.keep);
    for (const Step& st : steps) {
      if (st.n == 0) continue;  // to zero frees: nothing left to compare
      if (st.before == 1) {
        const std::byte* above = nullptr;
        for (const auto& live : h.ls.live()) {
          if (live.ptr > p && (above == nullptr || live.ptr < above)) above = live.ptr;
        }
        if (above != nullptr) h.ls.free(index_of(h.ls, above));
      } else if (st.before == 2) {
        h.ls.fail_next_extend();
      } else if (st.before == 3) {
        h.ls.foreign_extend(1 + st.n % 61);
      }
      const std::vector<std::byte> copy(p, p + have);
      const long i = h.ls.realloc(index_of(h.ls, p), st.n);
      if (i < 0) {
        RC_ASSERT(std::memcmp(p, copy.data(), have) == 0);
        continue;
      }
      std::byte* q = ptr(h.ls, i);
      const std::size_t keep = std::min(have, st.n);
      RC_ASSERT(std::memcmp(q, copy.data(), keep) == 0);
      p = q;
      have = st.n;
    }
  });
}

// Rule 8: bytes another component took with sbrk are never part of a
// block, and blocks never merge or grow across them. Random programs rarely
// end a segment with an ALLOC block (the free tail is almost always split),
// so one of the steps here takes exactly what is left of the free tail;
// after a foreign sbrk the next segment then starts right behind an ALLOC
// block, which is where a merge or an absorb could wrongly cross the gap.
struct SegmentStep {
  int op;             // 0 malloc, 1 take the rest of the free tail, 2 foreign sbrk,
                      // 3 free, 4 realloc grow, 5 realloc shrink
  std::size_t n;      // a size, or the foreign delta
  std::size_t which;  // picks a live block
};

[[maybe_unused]] void showValue(const SegmentStep& st, std::ostream& os) {
  static const char* const kOp[] = {"malloc",          "malloc(rest of free tail - n)",
                                    "foreign sbrk",    "free",
                                    "realloc grow by", "realloc shrink by"};
  os << kOp[st.op] << " " << st.n << " (block " << st.which << ")";
}

RC_GTEST_PROP(Contract, BlocksNeverCrossAForeignSbrk, ()) {
  const auto steps = *rc::gen::container<std::vector<SegmentStep>>(rc::gen::build<SegmentStep>(
      rc::gen::set(&SegmentStep::op,
                   rc::gen::weightedElement<int>({{3, 0}, {3, 1}, {3, 2}, {2, 3}, {3, 4}, {1, 5}})),
      rc::gen::set(&SegmentStep::n, rc::gen::oneOf(rc::gen::inRange<std::size_t>(0, 48),
                                                   small_heap_size(), request_size())),
      rc::gen::set(&SegmentStep::which, rc::gen::inRange<std::size_t>(0, 1024))));
  Harness h;
  model::Lockstep& ls = h.ls;
  std::vector<std::pair<std::size_t, std::size_t>> foreign;  // [from, to) offsets
  guarded([&] {
    for (const SegmentStep& st : steps) {
      const std::size_t live = ls.live().size();
      switch (st.op) {
        case 0:
          ls.malloc(std::max<std::size_t>(st.n, 1));
          break;
        case 1: {
          if (ls.engine().blocks().tail() == nullptr) break;
          const BlockMeta tail = read_header(ls.engine().blocks().tail());
          if (tail.status != Status::Free) break;
          // Leaves less than 40 bytes, so the whole tail is taken.
          const std::size_t cut = st.n % kMinSplitRemainder;
          if (tail.size > cut) ls.malloc(tail.size - cut);
          break;
        }
        case 2: {
          const std::size_t delta = 1 + st.n % 4100;
          const std::size_t from = ls.source().break_offset();
          if (ls.foreign_extend(delta)) foreign.emplace_back(from, from + delta);
          break;
        }
        case 3:
          if (live > 0) ls.free(st.which % live);
          break;
        case 4:
          if (live > 0) {
            ls.realloc(st.which % live, ls.live()[st.which % live].requested + 1 + st.n % 4096);
          }
          break;
        default:
          if (live > 0 && ls.live()[st.which % live].requested > 1) {
            const std::size_t r = ls.live()[st.which % live].requested;
            ls.realloc(st.which % live, r - 1 - st.n % (r - 1));
          }
          break;
      }
      for (const Seen& b : heap_blocks(ls)) {
        for (const auto& [from, to] : foreign) {
          RC_ASSERT(b.offset + kHeaderSize + b.size <= from || b.offset >= to);
        }
      }
    }
  });
}

// Rules 10 and 11: after everything is freed, in any order, no two touching
// heap blocks are both FREE, nothing is mapped, and the blocks account for
// every byte of the heap span. Without foreign sbrk that is one FREE block
// covering [0, break).
RC_GTEST_PROP(Contract, FreeingEverythingLeavesNoAdjacentFreeBlocks, ()) {
  const auto sizes =
      *rc::gen::nonEmpty(rc::gen::container<std::vector<std::size_t>>(request_size()));
  const bool foreign = *rc::gen::arbitrary<bool>();
  const auto foreign_deltas = *rc::gen::container<std::vector<std::size_t>>(
      sizes.size(), rc::gen::weightedElement<std::size_t>({{6, 0}, {1, 3}, {1, 8}, {1, 4096}}));
  const auto order = *rc::gen::container<std::vector<std::size_t>>(
      sizes.size(), rc::gen::inRange<std::size_t>(0, 1 << 20));
  Harness h;
  guarded([&] {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      if (foreign && foreign_deltas[i] != 0) h.ls.foreign_extend(foreign_deltas[i]);
      h.ls.malloc(std::max<std::size_t>(sizes[i], 1));
    }
    for (std::size_t i = 0; !h.ls.live().empty(); ++i) {
      h.ls.free(order[i % order.size()] % h.ls.live().size());
    }
    h.ls.verify_all();
  });
  struct ::os_heap_stats st {};
  h.ls.engine().stats(&st);
  const auto blocks = heap_blocks(h.ls);
  std::size_t span = 0;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    RC_ASSERT(blocks[i].status == Status::Free);
    span += kHeaderSize + blocks[i].size;
    if (i > 0) {
      RC_ASSERT(blocks[i - 1].offset + kHeaderSize + blocks[i - 1].size < blocks[i].offset);
    }
  }
  RC_ASSERT(span == st.heap_span);
  RC_ASSERT(blocks.size() == st.heap_segments);
  RC_ASSERT(st.mapped_blocks == 0u);
  RC_ASSERT(st.heap_bytes_in_use == 0u);
  if (!foreign && !blocks.empty()) {
    RC_ASSERT(blocks.size() == 1u);
    RC_ASSERT(blocks[0].offset == 0u);
    RC_ASSERT(kHeaderSize + blocks[0].size == h.ls.source().break_offset());
  }
}

}  // namespace
}  // namespace osmem::props
