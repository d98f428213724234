// Tests of the reference model on its own: every expected address and call
// below was worked out by hand from docs/contract.md, so a model that drifts
// from the contract fails here before it is ever compared with the engine.
#include "model.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace osmem::model {
namespace {

using Calls = std::vector<std::string>;
using osmem::Status;

constexpr Status kFree = Status::Free;
constexpr Status kAlloc = Status::Alloc;

Addr heap(std::size_t off) {
  return Addr::heap(off);
}
Addr mapped(std::size_t serial) {
  return Addr::mapped(serial);
}

// Every test ends with the model's own invariants intact.
class ModelTest : public ::testing::Test {
 protected:
  void TearDown() override { EXPECT_EQ(m.check(), "") << m.dump(); }

  // Runs an operation and returns the calls it made.
  template <typename F>
  Calls calls_of(F&& op) {
    m.clear_calls();
    op();
    return m.call_strings();
  }

  Model m;
};

// ---------------------------------------------------------------------------
// Printing.

TEST(ModelPrinting, AddressesAndCalls) {
  EXPECT_EQ(to_string(Addr::null()), "null");
  EXPECT_EQ(to_string(heap(32)), "heap+0x20");
  EXPECT_EQ(to_string(mapped(3)), "map#3");
  using K = osmem::SourceCall::Kind;
  EXPECT_EQ(to_string(osmem::SourceCall{K::Extend, true, 131072, 0}), "sbrk(131072) -> +0x0");
  EXPECT_EQ(to_string(osmem::SourceCall{K::Extend, false, 48, 0}), "sbrk(48) failed");
  EXPECT_EQ(to_string(osmem::SourceCall{K::Map, true, 131104, 1}), "mmap(131104) -> #1");
  EXPECT_EQ(to_string(osmem::SourceCall{K::Map, false, 136, 0}), "mmap(136) failed");
  EXPECT_EQ(to_string(osmem::SourceCall{K::Unmap, true, 131104, 1}), "munmap(#1, 131104)");
  EXPECT_TRUE(Addr::null().is_null());
  EXPECT_FALSE(heap(0).is_null());
  EXPECT_NE(heap(1), mapped(1));
}

// ---------------------------------------------------------------------------
// Rules 1, 5, 6a: preallocation and the first allocations.

TEST_F(ModelTest, FirstMallocPreallocatesAndSplits) {
  Addr a;
  EXPECT_EQ(calls_of([&] { a = m.malloc(1); }), (Calls{"sbrk(131072) -> +0x0"}));
  EXPECT_EQ(a, heap(0x20));
  EXPECT_EQ(m.capacity(a), 8u);
  EXPECT_TRUE(m.heap_initialised());
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 8, kAlloc}, {40, 131000, kFree}}));

  Addr b;
  EXPECT_EQ(calls_of([&] { b = m.malloc(1); }), Calls{});
  EXPECT_EQ(b, heap(72));
  EXPECT_EQ(m.heap_blocks(),
            (std::vector<Block>{{0, 8, kAlloc}, {40, 8, kAlloc}, {80, 130960, kFree}}));
  EXPECT_EQ(m.break_offset(), 131072u);
  EXPECT_EQ(m.heap_span(), 131072u);
}

TEST_F(ModelTest, SizesRoundUpToEight) {
  const Addr a = m.malloc(9);
  EXPECT_EQ(a, heap(32));
  EXPECT_EQ(m.capacity(a), 16u);
  const Addr b = m.malloc(17);
  EXPECT_EQ(b, heap(32 + 16 + 32));
  EXPECT_EQ(m.capacity(b), 24u);
}

// ---------------------------------------------------------------------------
// Rule 2: zero sizes and overflow.

TEST_F(ModelTest, ZeroSizesReturnNullWithoutCalls) {
  EXPECT_EQ(m.malloc(0), Addr::null());
  EXPECT_FALSE(m.last_enomem());
  EXPECT_EQ(m.calloc(0, 16), Addr::null());
  EXPECT_FALSE(m.last_enomem());
  EXPECT_EQ(m.calloc(16, 0), Addr::null());
  EXPECT_FALSE(m.last_enomem());
  EXPECT_EQ(m.realloc(Addr::null(), 0), Addr::null());
  EXPECT_FALSE(m.last_enomem());
  EXPECT_TRUE(m.calls().empty());
  EXPECT_FALSE(m.heap_initialised());
}

TEST_F(ModelTest, OversizedRequestsAreEnomemWithoutCalls) {
  EXPECT_EQ(m.malloc(SIZE_MAX), Addr::null());
  EXPECT_TRUE(m.last_enomem());
  EXPECT_EQ(m.malloc(osmem::kMaxRequest + 1), Addr::null());
  EXPECT_TRUE(m.last_enomem());
  EXPECT_EQ(m.calloc(SIZE_MAX / 2 + 1, 2), Addr::null());  // nmemb * size overflows
  EXPECT_TRUE(m.last_enomem());
  EXPECT_EQ(m.calloc(1, SIZE_MAX - 3), Addr::null());  // the product fits, the header does not
  EXPECT_TRUE(m.last_enomem());
  EXPECT_TRUE(m.calls().empty());

  // The largest request that still has a size goes to mmap, which refuses it.
  Addr a;
  EXPECT_EQ(calls_of([&] { a = m.malloc(osmem::kMaxRequest); }),
            (Calls{"mmap(" + std::to_string(SIZE_MAX - 7) + ") failed"}));
  EXPECT_EQ(a, Addr::null());
  EXPECT_TRUE(m.last_enomem());

  // A successful call clears the flag.
  EXPECT_EQ(m.malloc(1), heap(32));
  EXPECT_FALSE(m.last_enomem());
}

// ---------------------------------------------------------------------------
// Rule 3: the mmap threshold.

TEST_F(ModelTest, MallocMapsAtTheThreshold) {
  Addr a;
  EXPECT_EQ(calls_of([&] { a = m.malloc(131040); }), (Calls{"mmap(131072) -> #1"}));
  EXPECT_EQ(a, mapped(1));
  EXPECT_EQ(m.capacity(a), 131040u);
  EXPECT_EQ(m.mappings(), (std::vector<Mapping>{{1, 131040}}));
  EXPECT_FALSE(m.heap_initialised());

  // 131033 rounds up to 131040: still mapped.
  Addr b;
  EXPECT_EQ(calls_of([&] { b = m.malloc(131033); }), (Calls{"mmap(131072) -> #2"}));
  EXPECT_EQ(b, mapped(2));

  // 131032 + 32 < 131072: heap, and it takes the whole preallocation (the
  // 8 bytes left are too few to split off).
  Addr c;
  EXPECT_EQ(calls_of([&] { c = m.malloc(131032); }), (Calls{"sbrk(131072) -> +0x0"}));
  EXPECT_EQ(c, heap(32));
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 131040, kAlloc}}));

  EXPECT_EQ(calls_of([&] { m.free(a); }), (Calls{"munmap(#1, 131072)"}));
  EXPECT_FALSE(m.is_live(a));
  EXPECT_EQ(m.mappings(), (std::vector<Mapping>{{2, 131040}}));
  EXPECT_EQ(m.live_mapped_bytes(), 131072u);
}

TEST_F(ModelTest, FailedMmapIsEnomem) {
  m.fail_next_map();
  Addr a;
  EXPECT_EQ(calls_of([&] { a = m.malloc(200000); }), (Calls{"mmap(200032) failed"}));
  EXPECT_EQ(a, Addr::null());
  EXPECT_TRUE(m.last_enomem());
  // Serials count successful maps only; call numbers count failures too.
  EXPECT_EQ(calls_of([&] { a = m.malloc(200000); }), (Calls{"mmap(200032) -> #1"}));
  EXPECT_EQ(a, mapped(1));
}

// ---------------------------------------------------------------------------
// Rule 4: calloc maps from the page size on.

TEST_F(ModelTest, CallocMapsFromThePageSize) {
  Addr a;
  EXPECT_EQ(calls_of([&] { a = m.calloc(1, 4064); }), (Calls{"mmap(4096) -> #1"}));
  EXPECT_EQ(a, mapped(1));
  EXPECT_EQ(calls_of([&] { a = m.calloc(2, 2029); }), (Calls{"mmap(4096) -> #2"}));  // 4058 -> 4064
  EXPECT_EQ(a, mapped(2));
  EXPECT_EQ(calls_of([&] { a = m.calloc(1, 4056); }), (Calls{"sbrk(131072) -> +0x0"}));
  EXPECT_EQ(a, heap(32));
  EXPECT_EQ(m.capacity(a), 4056u);
  // malloc of the same size stays in the heap.
  EXPECT_EQ(calls_of([&] { a = m.malloc(4064); }), Calls{});
  EXPECT_EQ(a, heap(32 + 4056 + 32));
}

TEST(ModelPageSize, CallocThresholdFollowsThePageSize) {
  Model m({}, 16384);
  EXPECT_EQ(m.calloc(1, 8192), heap(32));
  EXPECT_EQ(m.calloc(1, 16352), mapped(1));
  EXPECT_EQ(m.call_strings(), (Calls{"sbrk(131072) -> +0x0", "mmap(16384) -> #1"}));
}

TEST_F(ModelTest, CallocHeapFallbackMapsTheRoundedSize) {
  m.fail_next_extend();
  Addr a;
  EXPECT_EQ(calls_of([&] { a = m.calloc(10, 10); }),
            (Calls{"sbrk(131072) failed", "mmap(136) -> #1"}));
  EXPECT_EQ(a, mapped(1));
  EXPECT_EQ(m.capacity(a), 104u);
}

// ---------------------------------------------------------------------------
// Rule 5: the preallocation is retried until it succeeds, with a fallback.

TEST_F(ModelTest, FailedPreallocFallsBackAndIsRetried) {
  m.fail_next_extend();
  Addr a;
  EXPECT_EQ(calls_of([&] { a = m.malloc(100); }),
            (Calls{"sbrk(131072) failed", "mmap(136) -> #1"}));
  EXPECT_EQ(a, mapped(1));
  EXPECT_FALSE(m.heap_initialised());
  EXPECT_EQ(m.break_offset(), 0u);

  Addr b;
  EXPECT_EQ(calls_of([&] { b = m.malloc(100); }), (Calls{"sbrk(131072) -> +0x0"}));
  EXPECT_EQ(b, heap(32));
  // Only once: the next heap allocation makes no call.
  EXPECT_EQ(calls_of([&] { b = m.malloc(100); }), Calls{});
  EXPECT_EQ(b, heap(32 + 104 + 32));
}

TEST_F(ModelTest, FailedPreallocAndMmapIsEnomem) {
  m.fail_next_extend();
  m.fail_next_map();
  Addr a;
  EXPECT_EQ(calls_of([&] { a = m.malloc(100); }),
            (Calls{"sbrk(131072) failed", "mmap(136) failed"}));
  EXPECT_EQ(a, Addr::null());
  EXPECT_TRUE(m.last_enomem());
}

TEST(ModelLimits, HeapTooSmallForPreallocAlwaysMaps) {
  Model m(osmem::FakeLimits{.heap_capacity = 65536});
  EXPECT_EQ(m.malloc(8), mapped(1));
  EXPECT_EQ(m.malloc(8), mapped(2));
  EXPECT_EQ(m.call_strings(), (Calls{"sbrk(131072) failed", "mmap(40) -> #1", "sbrk(131072) failed",
                                     "mmap(40) -> #2"}));
  EXPECT_TRUE(m.heap_blocks().empty());
}

// ---------------------------------------------------------------------------
// Rule 6a: best fit, ties to the lowest address.

TEST_F(ModelTest, BestFitPrefersSmallestThenLowestAddress) {
  const Addr a = m.malloc(64);  // header 0
  m.malloc(8);                  // header 96
  const Addr c = m.malloc(32);  // header 136
  m.malloc(8);                  // header 200
  const Addr e = m.malloc(32);  // header 240
  m.malloc(8);                  // header 304; the rest starts at 344
  EXPECT_EQ(a, heap(32));
  EXPECT_EQ(c, heap(168));
  EXPECT_EQ(e, heap(272));
  EXPECT_EQ(m.heap_blocks().back(), (Block{344, 131072 - 344 - 32, kFree}));
  m.free(a);
  m.free(c);
  m.free(e);

  // 64 at 0, 32 at 136, 32 at 240 and the rest all fit 24: the smallest,
  // and of the two 32s the lower one, wins; 32 - 24 is too little to split.
  m.clear_calls();
  const Addr x = m.malloc(24);
  EXPECT_EQ(x, heap(168));
  EXPECT_EQ(m.capacity(x), 32u);
  // Now the 32 at 240 is the smallest fit.
  EXPECT_EQ(m.malloc(32), heap(272));
  // Then the 64 at 0 beats the big rest, and 64 - 16 = 48 leaves a remainder.
  EXPECT_EQ(m.malloc(16), heap(32));
  EXPECT_TRUE(m.calls().empty());
  const auto& blocks = m.heap_blocks();
  ASSERT_GE(blocks.size(), 3u);
  EXPECT_EQ(blocks[0], (Block{0, 16, kAlloc}));
  EXPECT_EQ(blocks[1], (Block{48, 16, kFree}));
  EXPECT_EQ(blocks[2], (Block{96, 8, kAlloc}));
}

TEST_F(ModelTest, BestFitTieBetweenEqualHolesTakesTheLowest) {
  // Three equal holes, freed highest first so that free order
  // cannot be what decides.
  const Addr a = m.malloc(48);  // header 0
  m.malloc(8);                  // header 80
  const Addr b = m.malloc(48);  // header 120
  m.malloc(8);                  // header 200
  const Addr c = m.malloc(48);  // header 240
  m.malloc(8);                  // header 320
  m.free(c);
  m.free(b);
  m.free(a);
  EXPECT_EQ(m.malloc(48), heap(32));
  EXPECT_EQ(m.malloc(48), heap(152));
  EXPECT_EQ(m.malloc(48), heap(272));
  EXPECT_EQ(m.malloc(48), heap(392));  // from the rest, which starts at 360
}

// ---------------------------------------------------------------------------
// Rule 6b/6c: growing the heap at the top.

TEST_F(ModelTest, FreeLastBlockGrowsByTheDifference) {
  m.malloc(131000);  // 131040 - 131000 = 40: a FREE block of 8 at 131032 remains
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 131000, kAlloc}, {131032, 8, kFree}}));
  Addr b;
  EXPECT_EQ(calls_of([&] { b = m.malloc(16); }), (Calls{"sbrk(8) -> +0x20000"}));
  EXPECT_EQ(b, heap(131064));
  EXPECT_EQ(m.heap_blocks().back(), (Block{131032, 16, kAlloc}));

  // Now the last block is ALLOC: a whole new block is appended.
  Addr c;
  EXPECT_EQ(calls_of([&] { c = m.malloc(16); }), (Calls{"sbrk(48) -> +0x20008"}));
  EXPECT_EQ(c, heap(131112));
  EXPECT_EQ(m.heap_blocks().back(), (Block{131080, 16, kAlloc}));
  EXPECT_EQ(m.break_offset(), 131128u);
}

TEST_F(ModelTest, GrownFreeBlockIsNotSplit) {
  // The FREE last block grows to exactly `need`, whatever it was before.
  m.malloc(130960);  // leaves FREE 48 at 130992
  EXPECT_EQ(m.heap_blocks().back(), (Block{130992, 48, kFree}));
  Addr b;
  EXPECT_EQ(calls_of([&] { b = m.malloc(200); }), (Calls{"sbrk(152) -> +0x20000"}));
  EXPECT_EQ(b, heap(131024));
  EXPECT_EQ(m.capacity(b), 200u);
  EXPECT_EQ(m.break_offset(), 131072u + 152u);
}

TEST_F(ModelTest, AllocLastBlockAppends) {
  m.malloc(131032);  // the whole preallocation
  Addr b;
  EXPECT_EQ(calls_of([&] { b = m.malloc(1); }), (Calls{"sbrk(40) -> +0x20000"}));
  EXPECT_EQ(b, heap(131104));
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 131040, kAlloc}, {131072, 8, kAlloc}}));
}

// Rule 6e / 9: a failing growth falls back to mmap.
TEST_F(ModelTest, FailedGrowthFallsBackToMmap) {
  m.malloc(131032);
  m.fail_next_extend();
  Addr b;
  EXPECT_EQ(calls_of([&] { b = m.malloc(100); }), (Calls{"sbrk(136) failed", "mmap(136) -> #1"}));
  EXPECT_EQ(b, mapped(1));
  EXPECT_EQ(m.capacity(b), 104u);
  EXPECT_EQ(m.break_offset(), 131072u);

  m.fail_next_extend();
  m.fail_next_map();
  EXPECT_EQ(calls_of([&] { b = m.malloc(100); }), (Calls{"sbrk(136) failed", "mmap(136) failed"}));
  EXPECT_EQ(b, Addr::null());
  EXPECT_TRUE(m.last_enomem());
}

// ---------------------------------------------------------------------------
// Rules 6d and 8: foreign sbrk, segments, realignment, the completing sbrk.

TEST_F(ModelTest, ForeignSbrkBeforeFirstMallocAlignsThePrealloc) {
  ASSERT_TRUE(m.foreign_extend(3));
  Addr a;
  EXPECT_EQ(calls_of([&] { a = m.malloc(1); }),
            (Calls{"sbrk(131072) -> +0x3", "sbrk(5) -> +0x20003"}));
  EXPECT_EQ(a, heap(40));
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{8, 8, kAlloc}, {48, 131000, kFree}}));
  EXPECT_EQ(m.break_offset(), 131080u);
}

TEST_F(ModelTest, ForeignSbrkBeforeFirstMallocWithFailedRealign) {
  ASSERT_TRUE(m.foreign_extend(3));
  m.fail_extend_call(2);
  Addr a;
  EXPECT_EQ(calls_of([&] { a = m.malloc(1); }), (Calls{"sbrk(131072) -> +0x3", "sbrk(5) failed"}));
  EXPECT_EQ(a, heap(40));
  // The chunk is [8, 131072): the unaligned 3 bytes at the top stay unused.
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{8, 8, kAlloc}, {48, 130992, kFree}}));
  EXPECT_EQ(m.break_offset(), 131075u);
}

TEST_F(ModelTest, ForeignSbrkStartsANewSegmentAndRealigns) {
  m.malloc(131032);  // the whole preallocation, ALLOC
  ASSERT_TRUE(m.foreign_extend(3));
  Addr b;
  // sbrk(40) lands at 131075: the segment starts at 131080 and must end at
  // 131080 + 40 = 131120; the break is at 131115, so sbrk(5) completes the
  // segment (and realigns the break), which holds the ALLOC block.
  EXPECT_EQ(calls_of([&] { b = m.malloc(1); }),
            (Calls{"sbrk(40) -> +0x20003", "sbrk(5) -> +0x2002b"}));
  EXPECT_EQ(b, heap(131112));
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 131040, kAlloc}, {131080, 8, kAlloc}}));
  EXPECT_EQ(m.break_offset(), 131120u);

  // The segments never merge, even when both blocks are FREE.
  m.free(heap(32));
  m.free(b);
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 131040, kFree}, {131080, 8, kFree}}));
  EXPECT_EQ(m.heap_span(), 131072u + 40u);
}

TEST_F(ModelTest, FailedCompletingSbrkLeavesTheSmallChunkAndMaps) {
  m.malloc(131032);  // extend call 1
  ASSERT_TRUE(m.foreign_extend(3));
  m.fail_extend_call(3);  // the completing sbrk
  Addr b;
  // sbrk(40) lands at 131075; completing the segment fails, so the chunk
  // [131075, 131115) is a leftover: aligned [131080, 131112) is 32 bytes,
  // too small for a block, unused. No further sbrk: the request is mapped.
  EXPECT_EQ(calls_of([&] { b = m.malloc(1); }),
            (Calls{"sbrk(40) -> +0x20003", "sbrk(5) failed", "mmap(40) -> #1"}));
  EXPECT_EQ(b, mapped(1));
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 131040, kAlloc}}));
  EXPECT_EQ(m.break_offset(), 131115u);
  // The next growth finds the break at 131115, not at the last block's end
  // 131072: a foreign move again (rule 6d), two calls, a segment at 131120.
  EXPECT_EQ(calls_of([&] { b = m.malloc(1); }),
            (Calls{"sbrk(40) -> +0x2002b", "sbrk(5) -> +0x20053"}));
  EXPECT_EQ(b, heap(131152));
  // And the one after that is contiguous with it: one call.
  EXPECT_EQ(calls_of([&] { b = m.malloc(1); }), (Calls{"sbrk(40) -> +0x20058"}));
  EXPECT_EQ(b, heap(131192));
  EXPECT_EQ(m.heap_blocks(),
            (std::vector<Block>{{0, 131040, kAlloc}, {131120, 8, kAlloc}, {131160, 8, kAlloc}}));
  EXPECT_EQ(m.break_offset(), 131200u);
}

TEST_F(ModelTest, CompletingSbrkThatIsNotContiguousEitherMaps) {
  m.malloc(131032);  // extend call 1
  ASSERT_TRUE(m.foreign_extend(3));
  m.foreign_extend_before_call(3, 100);  // between the two calls of the malloc
  Addr b;
  // sbrk(40) lands at 131075 (break 131115); the break moves to 131215;
  // sbrk(5) lands there: both chunks are leftovers too small for a block.
  EXPECT_EQ(calls_of([&] { b = m.malloc(1); }),
            (Calls{"sbrk(40) -> +0x20003", "sbrk(5) -> +0x2008f", "mmap(40) -> #1"}));
  EXPECT_EQ(b, mapped(1));
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 131040, kAlloc}}));
  EXPECT_EQ(m.break_offset(), 131220u);
  EXPECT_EQ(calls_of([&] { b = m.malloc(1); }),
            (Calls{"sbrk(40) -> +0x20094", "sbrk(4) -> +0x200bc"}));
  EXPECT_EQ(b, heap(131256));
}

TEST_F(ModelTest, LeftoverChunksLargeEnoughBecomeFreeBlocks) {
  m.malloc(131032);  // extend call 1
  ASSERT_TRUE(m.foreign_extend(3));
  m.foreign_extend_before_call(3, 5);
  Addr b;
  // need 200: sbrk(232) lands at 131075 (break 131307); the break moves to
  // 131312; the completing sbrk(5) lands there. Leftovers: [131080, 131304)
  // becomes FREE 192; [131312, 131317) holds no aligned 40 bytes.
  EXPECT_EQ(calls_of([&] { b = m.malloc(200); }),
            (Calls{"sbrk(232) -> +0x20003", "sbrk(5) -> +0x200f0", "mmap(232) -> #1"}));
  EXPECT_EQ(b, mapped(1));
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 131040, kAlloc}, {131080, 192, kFree}}));
  // Best fit uses it.
  EXPECT_EQ(calls_of([&] { b = m.malloc(192); }), Calls{});
  EXPECT_EQ(b, heap(131112));
}

TEST_F(ModelTest, ForeignSbrkUnderAFreeLastBlockUsesTheNewSegment) {
  m.malloc(130960);  // FREE 48 at 130992 is the last block
  ASSERT_TRUE(m.foreign_extend(8));
  Addr b;
  // need 200: sbrk(152) lands at 131080, not at 131072: a segment from
  // 131080 to 131080 + 232, completed by sbrk(80), holds the ALLOC block;
  // the FREE 48 stays as it was.
  EXPECT_EQ(calls_of([&] { b = m.malloc(200); }),
            (Calls{"sbrk(152) -> +0x20008", "sbrk(80) -> +0x200a0"}));
  EXPECT_EQ(b, heap(131112));
  EXPECT_EQ(m.heap_blocks(),
            (std::vector<Block>{{0, 130960, kAlloc}, {130992, 48, kFree}, {131080, 200, kAlloc}}));
}

TEST_F(ModelTest, ForeignSbrkUnderATinyFreeLastBlockCostsTwoCallsAndKeepsIt) {
  m.malloc(131000);  // FREE 8 at 131032 is the last block
  ASSERT_TRUE(m.foreign_extend(8));
  Addr b;
  // need 16: sbrk(8) lands at 131080, an 8-byte chunk; sbrk(40) completes a
  // segment [131080, 131128) holding the block. No restart, no mapping.
  EXPECT_EQ(calls_of([&] { b = m.malloc(16); }),
            (Calls{"sbrk(8) -> +0x20008", "sbrk(40) -> +0x20010"}));
  EXPECT_EQ(b, heap(131112));
  EXPECT_EQ(m.heap_blocks(),
            (std::vector<Block>{{0, 131000, kAlloc}, {131032, 8, kFree}, {131080, 16, kAlloc}}));
  EXPECT_EQ(m.break_offset(), 131128u);
  // The FREE 8 is still there for best fit.
  EXPECT_EQ(calls_of([&] { b = m.malloc(8); }), Calls{});
  EXPECT_EQ(b, heap(131064));
}

TEST_F(ModelTest, ForeignExtendPastCapacityChangesNothing) {
  Model small(osmem::FakeLimits{.heap_capacity = 200000});
  EXPECT_FALSE(small.foreign_extend(200001));
  EXPECT_EQ(small.break_offset(), 0u);
  EXPECT_TRUE(small.foreign_extend(200000));
  EXPECT_EQ(small.break_offset(), 200000u);
  EXPECT_TRUE(small.calls().empty());
  // sbrk past the capacity fails.
  EXPECT_EQ(small.malloc(8), mapped(1));
  EXPECT_EQ(small.call_strings(), (Calls{"sbrk(131072) failed", "mmap(40) -> #1"}));
}

// ---------------------------------------------------------------------------
// Rule 7: the split threshold.

TEST_F(ModelTest, SplitNeedsFortyBytesLeft) {
  const Addr a = m.malloc(48);  // header 0
  m.malloc(8);                  // header 80
  const Addr c = m.malloc(40);  // header 120
  m.malloc(8);                  // header 192
  m.free(a);
  m.free(c);
  // The 40 is the best fit; 40 - 8 = 32: no split, the whole 40 is handed out.
  const Addr x = m.malloc(8);
  EXPECT_EQ(x, heap(152));
  EXPECT_EQ(m.capacity(x), 40u);
  // Then the 48: 48 - 8 = 40, split.
  EXPECT_EQ(m.malloc(8), heap(32));
  EXPECT_EQ(m.heap_blocks()[1], (Block{40, 8, kFree}));
  // The 8-byte remainder is now the best fit for 8.
  EXPECT_EQ(m.malloc(8), heap(72));
  EXPECT_EQ(m.heap_blocks()[1], (Block{40, 8, kAlloc}));
}

// ---------------------------------------------------------------------------
// Rules 10 and 11: free and immediate coalescing.

TEST_F(ModelTest, FreeCoalescesWithBothNeighbours) {
  const Addr a = m.malloc(8);  // header 0
  const Addr b = m.malloc(8);  // header 40
  const Addr c = m.malloc(8);  // header 80; the rest at 120
  m.free(a);
  EXPECT_EQ(m.heap_blocks().front(), (Block{0, 8, kFree}));
  m.free(c);  // merges with the rest after it
  EXPECT_EQ(m.heap_blocks(),
            (std::vector<Block>{{0, 8, kFree}, {40, 8, kAlloc}, {80, 130960, kFree}}));
  EXPECT_EQ(calls_of([&] { m.free(b); }), Calls{});  // never returned with brk
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 131040, kFree}}));
  EXPECT_FALSE(m.is_live(b));
  EXPECT_TRUE(m.is_free_block(a));
  EXPECT_FALSE(m.is_free_block(b));  // merged away: no header there any more
}

TEST_F(ModelTest, FreeNullDoesNothing) {
  m.malloc(8);
  m.clear_calls();
  const auto before = m.heap_blocks();
  m.free(Addr::null());
  EXPECT_EQ(m.heap_blocks(), before);
  EXPECT_TRUE(m.calls().empty());
}

TEST_F(ModelTest, BadFreesAreViolations) {
  const Addr a = m.malloc(8);
  const Addr b = m.malloc(200000);
  EXPECT_THROW(m.free(heap(36)), std::logic_error);   // misaligned
  EXPECT_THROW(m.free(heap(48)), std::logic_error);   // inside a block
  EXPECT_THROW(m.free(heap(8)), std::logic_error);    // header would be below the buffer
  EXPECT_THROW(m.free(mapped(2)), std::logic_error);  // no such mapping
  EXPECT_THROW(m.realloc(heap(48), 8), std::logic_error);
  m.free(a);
  EXPECT_THROW(m.free(a), std::logic_error);  // double free
  m.free(b);
  EXPECT_THROW(m.free(b), std::logic_error);
  EXPECT_THROW(m.capacity(b), std::logic_error);
}

// ---------------------------------------------------------------------------
// Rule 12: realloc.

TEST_F(ModelTest, ReallocNullIsMallocAndZeroIsFree) {
  Addr a;
  EXPECT_EQ(calls_of([&] { a = m.realloc(Addr::null(), 16); }), (Calls{"sbrk(131072) -> +0x0"}));
  EXPECT_EQ(a, heap(32));
  EXPECT_EQ(m.realloc(a, 0), Addr::null());
  EXPECT_FALSE(m.last_enomem());
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 131040, kFree}}));

  const Addr b = m.malloc(200000);
  EXPECT_EQ(calls_of([&] { EXPECT_EQ(m.realloc(b, 0), Addr::null()); }),
            (Calls{"munmap(#1, 200032)"}));
}

TEST_F(ModelTest, ReallocOfAFreeBlockChangesNothing) {
  const Addr a = m.malloc(8);
  m.malloc(8);
  m.free(a);
  const auto before = m.heap_blocks();
  m.clear_calls();
  m.malloc(SIZE_MAX);  // sets ENOMEM; the FREE-block realloc leaves errno alone
  EXPECT_EQ(m.realloc(a, 16), Addr::null());
  EXPECT_FALSE(m.last_enomem());
  EXPECT_EQ(m.realloc(a, SIZE_MAX), Addr::null());  // the FREE check comes first
  EXPECT_FALSE(m.last_enomem());
  EXPECT_EQ(m.heap_blocks(), before);
  EXPECT_TRUE(m.calls().empty());
  // n == 0 comes before the FREE check: it is os_free of a FREE block.
  EXPECT_THROW(m.realloc(a, 0), std::logic_error);
}

TEST_F(ModelTest, ReallocOverflowIsEnomemAndKeepsTheBlock) {
  const Addr a = m.malloc(8);
  m.clear_calls();
  EXPECT_EQ(m.realloc(a, osmem::kMaxRequest + 1), Addr::null());
  EXPECT_TRUE(m.last_enomem());
  EXPECT_TRUE(m.is_live(a));
  EXPECT_EQ(m.capacity(a), 8u);
  EXPECT_TRUE(m.calls().empty());
}

TEST_F(ModelTest, ReallocOfMappedAlwaysMoves) {
  const Addr a = m.malloc(200000);
  Addr b;
  // Same size: still a new mapping first, then the old one goes.
  EXPECT_EQ(calls_of([&] { b = m.realloc(a, 200000); }),
            (Calls{"mmap(200032) -> #2", "munmap(#1, 200032)"}));
  EXPECT_EQ(b, mapped(2));
  // Small: into the heap, which the move initialises.
  Addr c;
  EXPECT_EQ(calls_of([&] { c = m.realloc(b, 100); }),
            (Calls{"sbrk(131072) -> +0x0", "munmap(#2, 200032)"}));
  EXPECT_EQ(c, heap(32));
  EXPECT_TRUE(m.mappings().empty());
}

TEST_F(ModelTest, ReallocOfMappedKeepsTheOldOneWhenTheNewFails) {
  const Addr a = m.malloc(200000);
  m.fail_next_map();
  Addr b;
  EXPECT_EQ(calls_of([&] { b = m.realloc(a, 300000); }), (Calls{"mmap(300032) failed"}));
  EXPECT_EQ(b, Addr::null());
  EXPECT_TRUE(m.last_enomem());
  EXPECT_TRUE(m.is_live(a));
}

TEST(ModelLimits, MappedReallocCountsTheOldMappingAgainstTheLimits) {
  // The new block is allocated while the old one is still mapped.
  Model m(osmem::FakeLimits{.max_mappings = 1});
  const Addr a = m.malloc(200000);
  EXPECT_EQ(m.realloc(a, 300000), Addr::null());
  EXPECT_TRUE(m.last_enomem());
  EXPECT_EQ(m.call_strings(), (Calls{"mmap(200032) -> #1", "mmap(300032) failed"}));
}

TEST_F(ModelTest, ReallocOfHeapToMappedSizeMovesEvenWhenShrinking) {
  const Addr a = m.malloc(131032);  // the whole preallocation
  Addr b;
  // 131032 <= 131040, but ALIGN8(n) + 32 >= 131072 maps first.
  EXPECT_EQ(calls_of([&] { b = m.realloc(a, 131033); }), (Calls{"mmap(131072) -> #1"}));
  EXPECT_EQ(b, mapped(1));
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 131040, kFree}}));

  const Addr c = m.malloc(8);
  m.fail_next_map();
  EXPECT_EQ(calls_of([&] { b = m.realloc(c, 200000); }), (Calls{"mmap(200032) failed"}));
  EXPECT_EQ(b, Addr::null());
  EXPECT_TRUE(m.last_enomem());
  EXPECT_TRUE(m.is_live(c));
}

TEST_F(ModelTest, ReallocShrinkSplitsAndTheRemainderCoalesces) {
  const Addr a = m.malloc(64);  // header 0
  const Addr b = m.malloc(64);  // header 96
  m.malloc(8);                  // header 192
  m.free(b);
  Addr r;
  EXPECT_EQ(calls_of([&] { r = m.realloc(a, 8); }), Calls{});
  EXPECT_EQ(r, a);
  // The remainder FREE 24 at 40 touches the FREE 64 at 96 and absorbs it.
  const auto& blocks = m.heap_blocks();
  ASSERT_GE(blocks.size(), 3u);
  EXPECT_EQ(blocks[0], (Block{0, 8, kAlloc}));
  EXPECT_EQ(blocks[1], (Block{40, 120, kFree}));
  EXPECT_EQ(blocks[2], (Block{192, 8, kAlloc}));

  // Shrinking by less than 40 keeps the size.
  const Addr c = m.malloc(48);  // best fit for 48 is FREE 120 at 40
  EXPECT_EQ(c, heap(72));
  EXPECT_EQ(m.realloc(c, 16), c);
  EXPECT_EQ(m.capacity(c), 48u);  // 48 - 16 = 32 < 40: no split
}

TEST_F(ModelTest, ReallocGrowsTheLastBlockInPlace) {
  m.malloc(131000);
  const Addr b = m.malloc(8);  // takes FREE 8 at 131032: the last block
  EXPECT_EQ(b, heap(131064));
  Addr r;
  EXPECT_EQ(calls_of([&] { r = m.realloc(b, 100); }), (Calls{"sbrk(96) -> +0x20000"}));
  EXPECT_EQ(r, b);
  EXPECT_EQ(m.capacity(b), 104u);
}

TEST_F(ModelTest, ReallocOfTheLastBlockMovesWhenSbrkFails) {
  m.malloc(131000);
  const Addr b = m.malloc(8);
  m.fail_next_extend();
  Addr r;
  // The move's own allocation appends a new block with a contiguous sbrk.
  EXPECT_EQ(calls_of([&] { r = m.realloc(b, 100); }),
            (Calls{"sbrk(96) failed", "sbrk(136) -> +0x20000"}));
  EXPECT_EQ(r, heap(131104));
  EXPECT_EQ(m.heap_blocks(),
            (std::vector<Block>{{0, 131000, kAlloc}, {131032, 8, kFree}, {131072, 104, kAlloc}}));
}

TEST_F(ModelTest, ReallocOfTheLastBlockMovesIntoTheForeignSegment) {
  m.malloc(131000);
  const Addr b = m.malloc(8);
  ASSERT_TRUE(m.foreign_extend(8));
  Addr r;
  // sbrk(96) lands at 131080: a segment [131080, 131216), completed by
  // sbrk(40), holds the moved block (no search).
  EXPECT_EQ(calls_of([&] { r = m.realloc(b, 100); }),
            (Calls{"sbrk(96) -> +0x20008", "sbrk(40) -> +0x20068"}));
  EXPECT_EQ(r, heap(131112));
  // The old block, freed, does not touch the new segment.
  EXPECT_EQ(m.heap_blocks(),
            (std::vector<Block>{{0, 131000, kAlloc}, {131032, 8, kFree}, {131080, 104, kAlloc}}));
}

TEST_F(ModelTest, ReallocOfTheLastBlockMapsWhenTheForeignSegmentFails) {
  m.malloc(131000);
  const Addr b = m.malloc(8);
  ASSERT_TRUE(m.foreign_extend(8));
  m.fail_extend_call(3);  // the completing sbrk
  Addr r;
  // sbrk(96) lands at 131080; completing the segment fails: the chunk is a
  // leftover (FREE 64), and the block moves to a mapping, no more sbrk.
  EXPECT_EQ(calls_of([&] { r = m.realloc(b, 100); }),
            (Calls{"sbrk(96) -> +0x20008", "sbrk(40) failed", "mmap(136) -> #1"}));
  EXPECT_EQ(r, mapped(1));
  EXPECT_EQ(m.heap_blocks(),
            (std::vector<Block>{{0, 131000, kAlloc}, {131032, 8, kFree}, {131080, 64, kFree}}));
}

TEST_F(ModelTest, ReallocMoveFailingEverywhereKeepsTheBlock) {
  m.malloc(131000);
  const Addr b = m.malloc(8);
  // Extend call 1 was the preallocation; the realloc's sbrk(96) is call 2
  // and the move's sbrk(136) is call 3.
  m.fail_extend_call(2);
  m.fail_extend_call(3);
  m.fail_next_map();
  Addr r;
  EXPECT_EQ(calls_of([&] { r = m.realloc(b, 100); }),
            (Calls{"sbrk(96) failed", "sbrk(136) failed", "mmap(136) failed"}));
  EXPECT_EQ(r, Addr::null());
  EXPECT_TRUE(m.last_enomem());
  EXPECT_TRUE(m.is_live(b));
  EXPECT_EQ(m.capacity(b), 8u);
}

TEST_F(ModelTest, ReallocAbsorbsAFreeNextBlock) {
  const Addr a = m.malloc(8);   // header 0
  const Addr b = m.malloc(64);  // header 40
  m.malloc(8);                  // header 136
  m.free(b);
  Addr r;
  // 8 + 32 + 64 = 104 >= 48; 104 - 48 = 56 splits off FREE 24 at 80.
  EXPECT_EQ(calls_of([&] { r = m.realloc(a, 48); }), Calls{});
  EXPECT_EQ(r, a);
  const auto& blocks = m.heap_blocks();
  ASSERT_GE(blocks.size(), 3u);
  EXPECT_EQ(blocks[0], (Block{0, 48, kAlloc}));
  EXPECT_EQ(blocks[1], (Block{80, 24, kFree}));
  EXPECT_EQ(blocks[2], (Block{136, 8, kAlloc}));
}

TEST_F(ModelTest, ReallocAbsorbsWithoutSplitWhenLittleIsLeft) {
  const Addr a = m.malloc(8);
  const Addr b = m.malloc(64);
  m.malloc(8);
  m.free(b);
  EXPECT_EQ(m.realloc(a, 96), a);
  EXPECT_EQ(m.capacity(a), 104u);
  EXPECT_EQ(m.heap_blocks()[1], (Block{136, 8, kAlloc}));
}

TEST_F(ModelTest, ReallocAbsorbsExactlyEnough) {
  const Addr a = m.malloc(8);
  const Addr b = m.malloc(64);
  m.malloc(8);
  m.free(b);
  m.clear_calls();
  EXPECT_EQ(m.realloc(a, 104), a);  // 8 + 32 + 64 == 104
  EXPECT_EQ(m.capacity(a), 104u);
  EXPECT_EQ(m.heap_blocks().size(), 3u);
  EXPECT_TRUE(m.calls().empty());
}

TEST_F(ModelTest, ReallocAbsorbsThenMovesAndTheAbsorptionStays) {
  const Addr a = m.malloc(8);   // header 0
  const Addr b = m.malloc(16);  // header 40
  m.malloc(8);                  // header 88; the rest at 128
  m.free(b);
  Addr r;
  EXPECT_EQ(calls_of([&] { r = m.realloc(a, 200); }), Calls{});
  EXPECT_EQ(r, heap(160));
  EXPECT_EQ(
      m.heap_blocks(),
      (std::vector<Block>{
          {0, 56, kFree}, {88, 8, kAlloc}, {128, 200, kAlloc}, {360, 131072 - 360 - 32, kFree}}));
}

TEST_F(ModelTest, ReallocAbsorbsTheLastBlockThenGrowsBySbrk) {
  m.malloc(130960);            // FREE 48 at 130992 remains
  const Addr b = m.malloc(8);  // 48 - 8 = 40: split, FREE 8 at 131032 is last
  EXPECT_EQ(b, heap(131024));
  EXPECT_EQ(m.heap_blocks().back(), (Block{131032, 8, kFree}));
  Addr r;
  // Absorbing gives 48 < 104; now last: sbrk(104 - 48).
  EXPECT_EQ(calls_of([&] { r = m.realloc(b, 100); }), (Calls{"sbrk(56) -> +0x20000"}));
  EXPECT_EQ(r, b);
  EXPECT_EQ(m.heap_blocks(), (std::vector<Block>{{0, 130960, kAlloc}, {130992, 104, kAlloc}}));
}

TEST_F(ModelTest, ReallocAbsorbsTheLastBlockThenMovesWhenSbrkFails) {
  m.malloc(130960);
  const Addr b = m.malloc(8);
  m.fail_next_extend();
  Addr r;
  // The absorbed block (now 48) is the last one and ALLOC; the move's
  // allocation finds no fit and appends with sbrk(32 + 104).
  EXPECT_EQ(calls_of([&] { r = m.realloc(b, 100); }),
            (Calls{"sbrk(56) failed", "sbrk(136) -> +0x20000"}));
  EXPECT_EQ(r, heap(131104));
  EXPECT_EQ(m.heap_blocks(),
            (std::vector<Block>{{0, 130960, kAlloc}, {130992, 48, kFree}, {131072, 104, kAlloc}}));
}

TEST_F(ModelTest, ReallocMovesWhenTheNextBlockIsAlloc) {
  const Addr a = m.malloc(8);  // header 0
  m.malloc(8);                 // header 40; the rest at 80
  Addr r;
  EXPECT_EQ(calls_of([&] { r = m.realloc(a, 16); }), Calls{});
  EXPECT_EQ(r, heap(112));
  EXPECT_EQ(
      m.heap_blocks(),
      (std::vector<Block>{
          {0, 8, kFree}, {40, 8, kAlloc}, {80, 16, kAlloc}, {128, 131072 - 128 - 32, kFree}}));
}

TEST_F(ModelTest, ReallocMoveFreesTheOldBlockWithCoalescing) {
  // The old block's neighbours are FREE once the new block is taken
  // elsewhere: the free merges all three.
  const Addr a = m.malloc(8);  // header 0
  const Addr b = m.malloc(8);  // header 40
  const Addr c = m.malloc(8);  // header 80
  m.malloc(8);                 // header 120; rest at 160
  m.free(a);
  m.free(c);
  Addr r;
  EXPECT_EQ(calls_of([&] { r = m.realloc(b, 64); }), Calls{});
  EXPECT_EQ(r, heap(192));
  EXPECT_EQ(m.heap_blocks().front(), (Block{0, 8 + 32 + 8 + 32 + 8, kFree}));
}

// ---------------------------------------------------------------------------
// The simulated FakeSource: numbering, limits, reset.

TEST_F(ModelTest, ScheduledFailuresCountEveryCallOfTheirKind) {
  m.fail_map_call(2);
  EXPECT_EQ(m.malloc(200000), mapped(1));
  EXPECT_EQ(m.malloc(200000), Addr::null());
  EXPECT_EQ(m.malloc(200000), mapped(2));
  m.fail_extend_call(1);
  m.fail_extend_call(2);
  EXPECT_EQ(m.malloc(8), mapped(3));
  EXPECT_EQ(m.malloc(8), mapped(4));
  EXPECT_EQ(m.malloc(8), heap(32));
  EXPECT_EQ(m.call_strings(),
            (Calls{"mmap(200032) -> #1", "mmap(200032) failed", "mmap(200032) -> #2",
                   "sbrk(131072) failed", "mmap(40) -> #3", "sbrk(131072) failed", "mmap(40) -> #4",
                   "sbrk(131072) -> +0x0"}));
}

TEST(ModelLimits, MapCapacityAndCount) {
  Model bytes(osmem::FakeLimits{.map_capacity = 200000});
  EXPECT_EQ(bytes.malloc(131040), mapped(1));
  EXPECT_EQ(bytes.malloc(131040), Addr::null());  // 262144 live bytes would pass 200000
  EXPECT_TRUE(bytes.last_enomem());
  bytes.free(mapped(1));
  EXPECT_EQ(bytes.malloc(131040), mapped(2));
  EXPECT_EQ(bytes.call_strings(), (Calls{"mmap(131072) -> #1", "mmap(131072) failed",
                                         "munmap(#1, 131072)", "mmap(131072) -> #2"}));

  Model count(osmem::FakeLimits{.max_mappings = 2});
  EXPECT_EQ(count.malloc(200000), mapped(1));
  EXPECT_EQ(count.malloc(200000), mapped(2));
  EXPECT_EQ(count.malloc(200000), Addr::null());
  EXPECT_EQ(count.mappings().size(), 2u);
}

TEST_F(ModelTest, ResetStartsOver) {
  m.malloc(8);
  m.malloc(200000);
  m.foreign_extend(3);
  m.fail_extend_call(2);
  m.reset();
  EXPECT_TRUE(m.calls().empty());
  EXPECT_TRUE(m.heap_blocks().empty());
  EXPECT_TRUE(m.mappings().empty());
  EXPECT_EQ(m.break_offset(), 0u);
  EXPECT_FALSE(m.heap_initialised());
  EXPECT_EQ(m.malloc(8), heap(32));
  EXPECT_EQ(m.malloc(8), heap(72));
  EXPECT_EQ(m.malloc(200000), mapped(1));
  // Extend call 2 was scheduled to fail before the reset: the growth works.
  EXPECT_EQ(m.malloc(131000), heap(112));
  EXPECT_EQ(m.call_strings(),
            (Calls{"sbrk(131072) -> +0x0", "mmap(200032) -> #1", "sbrk(40) -> +0x20000"}));
}

// ---------------------------------------------------------------------------
// A random walk: the model's invariants and bookkeeping hold throughout.

TEST(ModelRandom, InvariantsHoldOnARandomWalk) {
  Model m(osmem::FakeLimits{.heap_capacity = 1 << 20, .map_capacity = 8 << 20});
  std::mt19937_64 rng(12345);
  std::vector<Addr> live;
  for (int step = 0; step < 20000; ++step) {
    const auto pick = rng() % 100;
    const std::size_t n = (rng() % 4 == 0) ? rng() % 300000 : rng() % 2000;
    if (pick < 2) m.foreign_extend(rng() % 64);
    if (pick < 5) m.fail_next_extend();
    if (pick < 7) m.fail_next_map();
    if (pick < 45 || live.empty()) {
      const Addr a = (pick % 2 == 0) ? m.malloc(n) : m.calloc(1 + rng() % 4, n / 4);
      if (!a.is_null()) {
        ASSERT_TRUE(m.is_live(a)) << to_string(a);
        live.push_back(a);
      }
    } else if (pick < 75) {
      const std::size_t i = rng() % live.size();
      m.free(live[i]);
      ASSERT_FALSE(m.is_live(live[i]));
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      const std::size_t i = rng() % live.size();
      const Addr old = live[i];
      const std::size_t old_cap = m.capacity(old);
      const Addr a = m.realloc(old, n);
      if (n == 0) {
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      } else if (a.is_null()) {
        ASSERT_TRUE(m.last_enomem());
        ASSERT_TRUE(m.is_live(old));
        ASSERT_GE(m.capacity(old), old_cap);  // only absorption can change it
      } else {
        ASSERT_TRUE(m.is_live(a));
        ASSERT_GE(m.capacity(a), osmem::align8(n));
        live[i] = a;
      }
    }
    ASSERT_EQ(m.check(), "") << "step " << step << "\n" << m.dump();
    // Every block the test holds is live, and nothing else is ALLOC.
    std::size_t alloc = 0;
    for (const Block& b : m.heap_blocks()) alloc += b.status == osmem::Status::Alloc;
    ASSERT_EQ(alloc + m.mappings().size(), live.size()) << "step " << step;
    std::size_t mapped_bytes = 0;
    for (const Mapping& mp : m.mappings()) mapped_bytes += mp.size + 32;
    ASSERT_EQ(mapped_bytes, m.live_mapped_bytes());
    ASSERT_LE(m.heap_span(), m.break_offset());
    if (step % 1000 == 999) m.clear_calls();
    // FakeSource keeps only 16 scheduled failures: start over now and then.
    if (step % 5000 == 4999) {
      m.reset();
      live.clear();
    }
  }
}

}  // namespace
}  // namespace osmem::model
