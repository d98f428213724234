// One or more tests per rule of docs/contract.md. Each runs the engine over
// the recording fake source in lockstep with the reference model (which
// checks addresses, system calls, errno, contents and the checker at every
// step) and also pins the expected addresses and calls by hand, so a rule
// that both implementations got wrong the same way still fails here.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <vector>

#include "model/lockstep.hpp"

namespace osmem {
namespace {

using model::Lockstep;
using Kind = SourceCall::Kind;

constexpr std::size_t H = kHeaderSize;
constexpr std::size_t kChunk = 128 * 1024;

SourceCall sbrk(std::size_t delta, std::size_t old_break) {
  return {Kind::Extend, true, delta, old_break};
}
SourceCall sbrk_fails(std::size_t delta) {
  return {Kind::Extend, false, delta, 0};
}
SourceCall mmap(std::size_t len, std::size_t serial) {
  return {Kind::Map, true, len, serial};
}
SourceCall mmap_fails(std::size_t len) {
  return {Kind::Map, false, len, 0};
}
SourceCall munmap(std::size_t len, std::size_t serial) {
  return {Kind::Unmap, true, len, serial};
}

void expect_calls(const Lockstep& ls, const std::vector<SourceCall>& want) {
  const std::vector<SourceCall>& got = ls.last_calls();
  ASSERT_EQ(got.size(), want.size()) << ls.transcript();
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].kind, want[i].kind) << "call " << i;
    EXPECT_EQ(got[i].ok, want[i].ok) << "call " << i;
    EXPECT_EQ(got[i].arg, want[i].arg) << "call " << i;
    EXPECT_EQ(got[i].result, want[i].result) << "call " << i;
  }
}

// The header is no access to memory tools: read a copy of it.
BlockMeta header(const Lockstep& ls, long index) {
  return read_header(BlockMeta::from_payload(ls.live().at(static_cast<std::size_t>(index)).ptr));
}

// ---- rule 1: sizes round up to 8, everything 8-aligned ---------------------

TEST(Rule1Alignment, SizesRoundUpToEight) {
  Lockstep ls;
  for (std::size_t n = 1; n <= 33; ++n) {
    long i = ls.malloc(n);
    ASSERT_GE(i, 0);
    EXPECT_EQ(header(ls, i).size, align8(n)) << "n = " << n;
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(ls.live()[i].ptr) % 8, 0u);
  }
}

// ---- rule 2: zero sizes and overflow make no system call -------------------

TEST(Rule2ZeroAndOverflow, ZeroSizesReturnNullWithoutSystemCalls) {
  Lockstep ls;
  EXPECT_EQ(ls.malloc(0), -1);
  expect_calls(ls, {});
  EXPECT_EQ(ls.calloc(0, 16), -1);
  expect_calls(ls, {});
  EXPECT_EQ(ls.calloc(16, 0), -1);
  expect_calls(ls, {});
  EXPECT_EQ(ls.realloc_null(0), -1);
  expect_calls(ls, {});
  EXPECT_EQ(ls.source().break_offset(), 0u);
}

TEST(Rule2ZeroAndOverflow, HugeSizesFailWithEnomemWithoutSystemCalls) {
  Lockstep ls;
  for (std::size_t n : {SIZE_MAX, SIZE_MAX - 7, SIZE_MAX - H, kMaxRequest + 1}) {
    errno = 0;
    EXPECT_EQ(ls.malloc(n), -1);
    expect_calls(ls, {});
    EXPECT_EQ(errno, ENOMEM);
  }
  errno = 0;
  EXPECT_EQ(ls.calloc(SIZE_MAX / 2, 3), -1);  // nmemb * size overflows
  expect_calls(ls, {});
  EXPECT_EQ(errno, ENOMEM);
  long a = ls.malloc(24);
  errno = 0;
  EXPECT_EQ(ls.realloc(static_cast<std::size_t>(a), SIZE_MAX), -1);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(ls.live().size(), 1u);  // the block is still there, contents checked
}

// ---- rule 3: mmap at 128 KiB, exact lengths ----------------------------------

TEST(Rule3Mapping, ThresholdIsRoundedSizePlusHeader) {
  Lockstep ls;
  long m = ls.malloc(kChunk - H - 7);  // ALIGN8 -> 131040, + 32 == 131072: maps
  ASSERT_GE(m, 0);
  expect_calls(ls, {mmap(kChunk, 1)});
  EXPECT_EQ(header(ls, m).status, Status::Mapped);
  EXPECT_EQ(header(ls, m).size, kChunk - H);
  long h = ls.malloc(kChunk - H - 8);  // 131032 + 32 < 131072: heap
  expect_calls(ls, {sbrk(kChunk, 0)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(h)), H);
  // The remainder (8 bytes) is too small to split off.
  EXPECT_EQ(header(ls, h).size, kChunk - H);
  ls.free(0);
  expect_calls(ls, {munmap(kChunk, 1)});
}

TEST(Rule3Mapping, LengthIsNotPageRounded) {
  Lockstep ls;
  ls.malloc(200001);
  expect_calls(ls, {mmap(200008 + H, 1)});
  ls.free(0);
  expect_calls(ls, {munmap(200008 + H, 1)});
}

// ---- rule 4: calloc maps from the page size and zeroes -----------------------

TEST(Rule4Calloc, MapsFromThePageSize) {
  Lockstep ls;
  ls.calloc(1, 4064);  // 4064 + 32 == 4096
  expect_calls(ls, {mmap(4096, 1)});
  ls.calloc(8, 508);  // 4064 again, as nmemb * size
  expect_calls(ls, {mmap(4096, 2)});
  long h = ls.calloc(1, 4056);  // 4088 < 4096: heap
  expect_calls(ls, {sbrk(kChunk, 0)});
  EXPECT_EQ(header(ls, h).status, Status::Alloc);
}

TEST(Rule4Calloc, ReusedHeapMemoryIsZeroed) {
  Lockstep ls;
  long a = ls.malloc(200);  // filled with a pattern by the harness
  ls.malloc(8);
  const std::size_t where = ls.offset(static_cast<std::size_t>(a));
  ls.free(0);
  long c = ls.calloc(25, 8);  // same block again; the harness checks it is zero
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(c)), where);
}

// ---- rule 5: 128 KiB preallocation, once --------------------------------------

TEST(Rule5Prealloc, FirstHeapAllocationGrowsTheHeapBy128KiB) {
  Lockstep ls;
  ls.malloc(200000);  // mapped: no heap yet
  expect_calls(ls, {mmap(200000 + H, 1)});
  long a = ls.malloc(1);
  expect_calls(ls, {sbrk(kChunk, 0)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(a)), H);
  long b = ls.malloc(1);
  expect_calls(ls, {});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), H + 8 + H);
  EXPECT_EQ(read_header(ls.engine().blocks().tail()).size, kChunk - 3 * H - 16);
}

// ---- rule 6: best fit, lowest address among equals; coalescing --------------

TEST(Rule6BestFit, SmallestFittingBlockLowestAddressFirst) {
  Lockstep ls;
  std::vector<std::size_t> sizes = {64, 8, 32, 8, 32, 8, 128, 8};
  for (std::size_t s : sizes) ls.malloc(s);
  std::vector<std::size_t> at;
  for (std::size_t i = 0; i < sizes.size(); ++i) at.push_back(ls.offset(i));
  // Free the 64, both 32s and the 128 (highest index first keeps indices).
  for (std::size_t i : {6u, 4u, 2u, 0u}) ls.free(i);
  long x = ls.malloc(30);  // fits 32 (twice), 64, 128: the lower 32 wins
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(x)), at[2]);
  long y = ls.malloc(32);  // the other 32
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(y)), at[4]);
  long z = ls.malloc(33);  // 40: the 64; 24 left is too small to split
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(z)), at[0]);
  EXPECT_EQ(header(ls, z).size, 64u);
  long w = ls.malloc(100);  // 104: the 128, not the big tail
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(w)), at[6]);
  expect_calls(ls, {});
}

TEST(Rule6Coalescing, FreeMergesWithBothNeighbours) {
  Lockstep ls;
  ls.malloc(100);
  ls.malloc(100);
  ls.malloc(100);
  ls.malloc(8);  // keeps the three away from the free tail
  ls.free(0);    // a
  ls.free(1);    // c (was index 2)
  ls.free(0);    // b: merges with a before and c after
  const auto& blocks = ls.model().heap_blocks();
  ASSERT_EQ(blocks.size(), 3u);
  EXPECT_EQ(blocks[0].status, Status::Free);
  EXPECT_EQ(blocks[0].size, 3 * 104 + 2 * H);
  EXPECT_EQ(read_header(ls.engine().blocks().head()).size, 3 * 104 + 2 * H);
}

TEST(Rule6Coalescing, FreeingEverythingLeavesOneFreeBlock) {
  Lockstep ls;
  for (int i = 0; i < 50; ++i) ls.malloc(static_cast<std::size_t>(8 + 24 * i));
  for (std::size_t i = 50; i-- > 0;) {
    if (i % 2 == 0) ls.free(i);  // every other block first: holes everywhere
  }
  ls.free_all();
  ASSERT_EQ(ls.model().heap_blocks().size(), 1u);
  EXPECT_EQ(read_header(ls.engine().blocks().head()).size, kChunk - H);
  EXPECT_EQ(read_header(ls.engine().blocks().head()).status, Status::Free);
}

// ---- rule 7: split only when 40 bytes remain ------------------------------------

TEST(Rule7Split, RemainderOfFortySplits) {
  Lockstep ls;
  long a = ls.malloc(72);
  ls.malloc(8);
  const std::size_t where = ls.offset(static_cast<std::size_t>(a));
  ls.free(0);
  long b = ls.malloc(32);  // 72 - 32 == 40: split into 32 + (32 header + 8)
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), where);
  EXPECT_EQ(header(ls, b).size, 32u);
  const BlockMeta rest = read_header(header(ls, b).next);
  EXPECT_EQ(rest.status, Status::Free);
  EXPECT_EQ(rest.size, 8u);
}

TEST(Rule7Split, RemainderOfThirtyTwoDoesNot) {
  Lockstep ls;
  long a = ls.malloc(72);
  ls.malloc(8);
  const std::size_t where = ls.offset(static_cast<std::size_t>(a));
  ls.free(0);
  long b = ls.malloc(40);  // 72 - 40 == 32 < 40: the whole block
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), where);
  EXPECT_EQ(header(ls, b).size, 72u);
}

// ---- rule 8: heap growth by exactly what is missing ----------------------------

TEST(Rule8Growth, FreeLastBlockGrowsByTheDifference) {
  Lockstep ls;
  ls.malloc(kChunk - H - 40);  // leaves a free 8-byte block at the end
  ASSERT_EQ(read_header(ls.engine().blocks().tail()).size, 8u);
  long b = ls.malloc(100);  // 104 needed, 8 there: sbrk(96)
  expect_calls(ls, {sbrk(96, kChunk)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), kChunk - 8);
  EXPECT_EQ(header(ls, b).size, 104u);
  long c = ls.malloc(50);  // the last block is in use: a new one, 32 + 56
  expect_calls(ls, {sbrk(H + 56, kChunk + 96)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(c)), kChunk + 96 + H);
}

// ---- rule 9: sbrk failure falls back to mmap -----------------------------------

TEST(Rule9Fallback, FailedPreallocIsServedByMmapAndRetriedLater) {
  Lockstep ls;
  ls.fail_next_extend();
  long a = ls.malloc(100);
  expect_calls(ls, {sbrk_fails(kChunk), mmap(104 + H, 1)});
  EXPECT_EQ(header(ls, a).status, Status::Mapped);
  long b = ls.malloc(100);
  expect_calls(ls, {sbrk(kChunk, 0)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), H);
}

TEST(Rule9Fallback, BothFailingReturnsNullWithEnomem) {
  Lockstep ls;
  ls.malloc(kChunk - H - 8);  // the whole preallocation
  ls.fail_next_extend();
  ls.fail_next_map();
  errno = 0;
  EXPECT_EQ(ls.malloc(100), -1);
  EXPECT_EQ(errno, ENOMEM);
  expect_calls(ls, {sbrk_fails(H + 104), mmap_fails(104 + H)});
  ls.verify_all();
}

// ---- rule 10: segments (foreign sbrk) --------------------------------------------

TEST(Rule10Segments, ForeignSbrkStartsANewAlignedSegment) {
  Lockstep ls;
  ls.malloc(kChunk - H - 8);            // the whole preallocation, in use
  ASSERT_TRUE(ls.foreign_extend(100));  // break now at 131172, unaligned
  long b = ls.malloc(1000);
  // sbrk(32 + 1000) lands at 131172: a new segment from 131176, the break
  // realigned with sbrk(4), and the search restarted on the new free block.
  expect_calls(ls, {sbrk(H + 1000, kChunk + 100), sbrk(4, kChunk + 100 + H + 1000)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), kChunk + 104 + H);
  EXPECT_EQ(header(ls, b).size, 1000u);
  // Freed, the two segments' blocks are list neighbours but never merge.
  ls.free_all();
  ASSERT_EQ(ls.model().heap_blocks().size(), 2u);
  struct os_heap_stats st;
  ls.engine().stats(&st);
  EXPECT_EQ(st.heap_segments, 2u);
  EXPECT_EQ(st.free_blocks, 2u);
}

// ---- rule 11: free ---------------------------------------------------------------

TEST(Rule11Free, HeapBlocksStayMappedBlocksAreUnmapped) {
  Lockstep ls;
  ls.malloc(100);
  ls.malloc(300000);
  ls.free(0);
  expect_calls(ls, {});
  ls.free(0);
  expect_calls(ls, {munmap(300000 + H, 1)});
  EXPECT_EQ(ls.source().break_offset(), kChunk);
}

TEST(Rule11Free, FreeNullDoesNothing) {
  Lockstep ls;
  ls.engine().free(nullptr);
  EXPECT_EQ(ls.source().call_count(), 0u);
}

// ---- rule 12: realloc -------------------------------------------------------------

TEST(Rule12Realloc, MappedBlocksAlwaysMoveEvenWhenShrinking) {
  Lockstep ls;
  ls.malloc(200000);
  ls.realloc(0, 150000);
  expect_calls(ls, {mmap(150000 + H, 2), munmap(200000 + H, 1)});
  ls.realloc(0, 150000);  // same size: still moves
  expect_calls(ls, {mmap(150000 + H, 3), munmap(150000 + H, 2)});
  long h = ls.realloc(0, 100);  // down to the heap
  expect_calls(ls, {sbrk(kChunk, 0), munmap(150000 + H, 3)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(h)), H);
}

TEST(Rule12Realloc, HeapBlockPastTheThresholdMovesToAMapping) {
  Lockstep ls;
  ls.malloc(100);
  ls.realloc(0, kChunk - H);
  expect_calls(ls, {mmap(kChunk, 1)});
  ASSERT_EQ(ls.model().heap_blocks().size(), 1u);  // the old block merged back
}

TEST(Rule12Realloc, ShrinkSplitsInPlace) {
  Lockstep ls;
  long a = ls.malloc(200);
  const std::size_t where = ls.offset(static_cast<std::size_t>(a));
  long b = ls.realloc(0, 100);  // 200 - 104 == 96: split, rest merges with the tail
  expect_calls(ls, {});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), where);
  EXPECT_EQ(header(ls, b).size, 104u);
  ASSERT_EQ(ls.model().heap_blocks().size(), 2u);
  long c = ls.realloc(0, 90);  // 104 - 96 == 8: no split
  EXPECT_EQ(header(ls, c).size, 104u);
}

TEST(Rule12Realloc, LastBlockGrowsInPlaceWithSbrk) {
  Lockstep ls;
  ls.malloc(1000);
  long b = ls.malloc(kChunk - 2 * H - 1000);  // exactly the rest: now the last block
  const std::size_t where = ls.offset(static_cast<std::size_t>(b));
  long c = ls.realloc(1, kChunk - 2 * H - 1000 + 96);
  expect_calls(ls, {sbrk(96, kChunk)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(c)), where);
}

TEST(Rule12Realloc, AbsorbsAFreeNextBlockAndSplits) {
  Lockstep ls;
  long a = ls.malloc(100);
  ls.malloc(100);
  ls.malloc(8);
  const std::size_t where = ls.offset(static_cast<std::size_t>(a));
  ls.free(1);
  long b = ls.realloc(0, 150);  // 104 + 32 + 104 == 240, need 152: split 88 off
  expect_calls(ls, {});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), where);
  EXPECT_EQ(header(ls, b).size, 152u);
  EXPECT_EQ(read_header(header(ls, b).next).size, 240u - 152u - H);
}

TEST(Rule12Realloc, AbsorbsThenGrowsWhenItBecomesTheLastBlock) {
  Lockstep ls;
  ls.malloc(kChunk - H - 8);  // the whole preallocation
  long b = ls.malloc(1000);   // sbrk(1032)
  ls.malloc(100000);          // sbrk(100032)
  ls.free(2);                 // the last block is free now
  const std::size_t where = ls.offset(static_cast<std::size_t>(b));
  long c = ls.realloc(1, 120000);  // absorb: 101032, still short by 18968
  expect_calls(ls, {sbrk(120000 - 101032, kChunk + 1032 + 100032)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(c)), where);
  EXPECT_EQ(header(ls, c).size, 120000u);
}

TEST(Rule12Realloc, AbsorbedBlockStaysAbsorbedWhenTheBlockMoves) {
  Lockstep ls;
  ls.malloc(100);
  ls.malloc(16);
  ls.malloc(8);
  ls.free(1);
  long b = ls.realloc(0, 400);  // 104 + 32 + 16 == 152 < 400: moves to the tail
  expect_calls(ls, {});
  EXPECT_GT(ls.offset(static_cast<std::size_t>(b)), ls.offset(0));
  // The old block (with what it absorbed) is free again: 152 bytes.
  EXPECT_EQ(ls.model().heap_blocks()[0].size, 152u);
  EXPECT_EQ(ls.model().heap_blocks()[0].status, Status::Free);
}

TEST(Rule12Realloc, FreeBlockReturnsNullAndChangesNothing) {
  Lockstep ls;
  ls.malloc(100);
  ls.malloc(8);
  ls.free(0);
  errno = 0;
  ASSERT_TRUE(ls.realloc_freed(0, 50));
  expect_calls(ls, {});
  EXPECT_EQ(errno, 0);
}

TEST(Rule12Realloc, SizeZeroFrees) {
  Lockstep ls;
  ls.malloc(100);
  ls.malloc(300000);
  EXPECT_EQ(ls.realloc(1, 0), -1);
  expect_calls(ls, {munmap(300000 + H, 1)});
  EXPECT_EQ(ls.realloc(0, 0), -1);
  EXPECT_TRUE(ls.live().empty());
}

TEST(Rule12Realloc, FailedMoveKeepsTheOldBlock) {
  Lockstep ls;
  ls.malloc(100);
  ls.malloc(kChunk - 2 * H - 104);  // the rest of the preallocation, exactly
  ls.fail_next_extend();
  ls.fail_next_map();
  errno = 0;
  EXPECT_EQ(ls.realloc(0, 5000), -1);
  EXPECT_EQ(errno, ENOMEM);
  expect_calls(ls, {sbrk_fails(H + 5000), mmap_fails(5000 + H)});
  EXPECT_EQ(ls.live().size(), 2u);  // contents verified by the harness
}

TEST(Rule12Realloc, FailedTailGrowthMovesTheBlock) {
  Lockstep ls;
  ls.malloc(1000);
  ls.malloc(kChunk - 2 * H - 1000);  // exactly the rest: the last block
  ls.fail_next_extend();
  long b = ls.realloc(1, kChunk - 2 * H - 1000 + 96);
  // Growing in place fails, so the block moves: a new block after it.
  expect_calls(ls, {sbrk_fails(96), sbrk(H + kChunk - 2 * H - 1000 + 96, kChunk)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), kChunk + H);
}

// ---- rule 13: nothing else --------------------------------------------------------

TEST(Rule13NoOtherCalls, MixedSequenceMatchesTheModelCallForCall) {
  // The lockstep harness compares every call; this sequence walks through
  // every path above without scheduled failures.
  Lockstep ls;
  std::uint64_t x = 12345;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  const std::size_t sizes[] = {1, 8, 24, 40, 100, 1000, 4056, 4064, 70000, 131032, 131040, 200000};
  for (int step = 0; step < 3000; ++step) {
    const std::uint64_t r = next();
    const std::size_t n = sizes[r % 12] + (r >> 32) % 9;
    switch ((r >> 8) % 5) {
      case 0:
        ls.malloc(n);
        break;
      case 1:
        ls.calloc(1 + (r >> 16) % 4, n / 4 + 1);
        break;
      case 2:
        if (!ls.live().empty()) ls.realloc((r >> 20) % ls.live().size(), n);
        break;
      case 3:
      case 4:
        if (!ls.live().empty()) ls.free((r >> 20) % ls.live().size());
        break;
    }
  }
  ls.free_all();
  EXPECT_GE(ls.steps(), 3000u);
}

}  // namespace
}  // namespace osmem
