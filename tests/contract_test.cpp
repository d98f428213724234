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
  // sbrk(32 + 1000) lands at 131172: a new segment from 131176 that must
  // end at 131176 + 1032; sbrk(4) completes it (and realigns the break).
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

// ---- rule 6d: a foreign sbrk during growth costs one segment, not a tax -----------

// os_malloc(100); sbrk(3); os_malloc(130912), then 99 more: each request
// after the foreign move is served on the heap, the first with two sbrk
// calls and every later one with one, and the FREE old tail stays usable.
TEST(Rule6dForeignSbrk, OneForeignMoveThenAHundredGrowthsCostTwoCallsThenOneEach) {
  Lockstep::Options options;
  options.full_every = 10;  // 13 MB of live blocks: verify all every 10 steps
  Lockstep ls(options);
  ls.malloc(100);  // ALLOC 104 at 0, FREE 130904 at 136 (the last block)
  expect_calls(ls, {sbrk(kChunk, 0)});
  ASSERT_TRUE(ls.foreign_extend(3));  // break at 131075
  const std::size_t need = 130912;
  long b = ls.malloc(need);
  // The FREE tail (130904) is 8 short: sbrk(8) lands at 131075, not at its
  // end 131072. The segment starts at 131080 and must end at
  // 131080 + 32 + 130912 = 262024; the break is at 131083: sbrk(130941).
  expect_calls(ls, {sbrk(8, kChunk + 3), sbrk(130941, kChunk + 11)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), kChunk + 8 + H);
  EXPECT_EQ(header(ls, b).size, need);
  EXPECT_EQ(header(ls, b).status, Status::Alloc);
  std::size_t brk = 262024;
  EXPECT_EQ(ls.source().break_offset(), brk);
  for (int k = 0; k < 99; ++k) {
    b = ls.malloc(need);
    // Best fit finds nothing (the FREE tail is 130904); the last block is
    // the ALLOC one the break follows: one contiguous sbrk(32 + need).
    expect_calls(ls, {sbrk(H + need, brk)});
    EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), brk + H) << "request " << k + 2;
    brk += H + need;
  }
  EXPECT_EQ(brk, 13225480u);
  EXPECT_EQ(ls.source().break_offset(), brk);
  struct os_heap_stats st;
  ls.engine().stats(&st);
  EXPECT_EQ(st.sbrk_calls, 1u + 2u + 99u);
  EXPECT_EQ(st.mmap_calls, 0u);
  EXPECT_EQ(st.mapped_blocks, 0u);
  EXPECT_EQ(st.heap_segments, 2u);
  EXPECT_EQ(st.free_blocks, 1u);
  // The old FREE tail is still found by best fit, with no system call.
  long c = ls.malloc(130904);
  expect_calls(ls, {});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(c)), 136 + H);
  ls.verify_all();
}

// The completing sbrk fails: the foreign chunk is a leftover too small for a
// block, and the request is mapped. The next growth sees a break that is not
// the last block's end (a foreign move again: two calls); the one after it
// continues that segment (one call).
TEST(Rule6dForeignSbrk, UnusableSmallChunkThenTwoMoreGrowths) {
  Lockstep ls;
  ls.malloc(kChunk - H - 8);  // the whole preallocation, ALLOC 131040
  ASSERT_TRUE(ls.foreign_extend(3));
  ls.fail_extend_later(2);  // the completing sbrk
  long a = ls.malloc(1);
  // sbrk(40) lands at 131075; completing [131080, 131120) needs sbrk(5).
  expect_calls(ls, {sbrk(H + 8, kChunk + 3), sbrk_fails(5), mmap(H + 8, 1)});
  EXPECT_EQ(header(ls, a).status, Status::Mapped);
  EXPECT_EQ(ls.engine().blocks().tail(), ls.engine().blocks().head());  // [131080, 131112): unused
  long b = ls.malloc(1);
  expect_calls(ls, {sbrk(H + 8, kChunk + 43), sbrk(5, kChunk + 83)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), kChunk + 48 + H);
  long c = ls.malloc(1);
  expect_calls(ls, {sbrk(H + 8, kChunk + 88)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(c)), kChunk + 88 + H);
  struct os_heap_stats st;
  ls.engine().stats(&st);
  EXPECT_EQ(st.heap_segments, 2u);
  EXPECT_EQ(st.heap_blocks, 3u);
  EXPECT_EQ(st.sbrk_calls, 6u);
  ls.free_all();
}

// The break moves again between the two calls: both chunks are leftovers,
// the request is mapped, and a leftover big enough is a FREE block whose
// growth serves the next request with one contiguous sbrk.
TEST(Rule6dForeignSbrk, CompletingSbrkNotContiguousLeavesChunksAndMaps) {
  Lockstep ls;
  ls.malloc(100);  // FREE 130904 at 136 is the last block
  ASSERT_TRUE(ls.foreign_extend(3));
  ls.foreign_extend_before_sbrk(2, 64);
  long a = ls.malloc(130912);
  // sbrk(8) at 131075 (break 131083); the break moves to 131147; the
  // completing sbrk(130941) lands there. Leftovers: [131080, 131083) holds
  // nothing; [131147, 262088) aligns to [131152, 262088): FREE 130904.
  expect_calls(ls, {sbrk(8, kChunk + 3), sbrk(130941, kChunk + 75), mmap(130912 + H, 1)});
  EXPECT_EQ(header(ls, a).status, Status::Mapped);
  const BlockMeta tail = read_header(ls.engine().blocks().tail());
  EXPECT_EQ(tail.status, Status::Free);
  EXPECT_EQ(tail.size, 130904u);
  long b = ls.malloc(130912);
  // That FREE block is now the last one and the break is at its end.
  expect_calls(ls, {sbrk(8, 262088)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), kChunk + 80 + H);
  ls.free_all();
}

// A foreign sbrk as the first call of a growth, then the completing call
// fails: the first chunk is a leftover; no third sbrk is made.
TEST(Rule6dForeignSbrk, NoThirdSbrkWhenTheCompletingOneFails) {
  Lockstep ls;
  ls.malloc(100);
  ASSERT_TRUE(ls.foreign_extend(8));
  ls.fail_extend_later(2);
  long a = ls.malloc(130912);
  expect_calls(ls, {sbrk(8, kChunk + 8), sbrk_fails(130944 - 8), mmap(130912 + H, 1)});
  EXPECT_EQ(header(ls, a).status, Status::Mapped);
  // The break (131088) is not the last block's end: the next growth is a
  // foreign move again, two calls.
  long b = ls.malloc(130912);
  expect_calls(ls, {sbrk(8, kChunk + 16), sbrk(130936, kChunk + 24)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(b)), kChunk + 16 + H);
  ls.free_all();
}

// Rule 12: the last block's growth after a foreign sbrk moves the block into
// the new segment (two calls); when completing it fails, to a mapping.
TEST(Rule6dForeignSbrk, ReallocOfTheLastBlockMovesIntoTheNewSegment) {
  Lockstep ls;
  ls.malloc(kChunk - H - 8);  // ALLOC 131040, the whole preallocation
  long b = ls.malloc(10);     // can only grow: sbrk(48) contiguous, ALLOC 16
  expect_calls(ls, {sbrk(H + 16, kChunk)});
  ASSERT_TRUE(ls.foreign_extend(5));  // break at 131125
  long r = ls.realloc(static_cast<std::size_t>(b), 1000);
  // sbrk(1000 - 16) lands at 131125; the segment [131128, 131128 + 1032)
  // needs 131128 + 1032 - 132109 = 51 more.
  expect_calls(ls, {sbrk(984, kChunk + 53), sbrk(51, kChunk + 53 + 984)});
  EXPECT_EQ(ls.offset(static_cast<std::size_t>(r)), kChunk + 56 + H);
  EXPECT_EQ(header(ls, r).size, 1000u);
  ASSERT_TRUE(ls.foreign_extend(8));
  ls.fail_extend_later(2);
  r = ls.realloc(static_cast<std::size_t>(r), 2000);
  expect_calls(
      ls, {sbrk(1000, kChunk + 56 + H + 1000 + 8), sbrk_fails(2000 + H - 1000), mmap(2000 + H, 1)});
  EXPECT_EQ(header(ls, r).status, Status::Mapped);
  ls.free_all();
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

// ---- rule 14: the heap's segments hold at most 40 bytes per index record ---

TEST(Rule14SpanLimit, GrowthPastTheRecordsMakesNoSbrkAndIsMapped) {
  Lockstep::Options o;
  o.limits.index_records = 4000;  // 160,000 bytes of segments
  Lockstep ls(o);
  ls.malloc(100000);  // the preallocation, split: 31,008 bytes left free
  expect_calls(ls, {sbrk(kChunk, 0)});
  ls.malloc(40000);  // the free tail grows by 8,992: 140,064 bytes
  expect_calls(ls, {sbrk(8992, kChunk)});
  ls.malloc(30000);  // sbrk(30,032) would make 170,096: mapped, no sbrk
  expect_calls(ls, {mmap(30000 + H, 1)});
  ls.malloc(19000);  // sbrk(19,032) makes 159,096: still within
  expect_calls(ls, {sbrk(19000 + H, 140064)});
  ls.free_all();
}

// The limit counts bytes in segments, not the address range: the foreign
// bytes between two segments cost no records.
TEST(Rule14SpanLimit, CountsSegmentBytesNotTheForeignGaps) {
  Lockstep::Options o;
  o.limits.index_records = 4000;
  Lockstep ls(o);
  ls.malloc(100000);
  ls.malloc(31000);  // fits the free remainder (31,008): nothing left free
  ASSERT_TRUE(ls.foreign_extend(1000));
  // sbrk(32 + 20000) is not contiguous: a new segment of 20,032 bytes would
  // make 151,104, within the limit.
  ls.malloc(20000);
  expect_calls(ls, {sbrk(20000 + H, kChunk + 1000)});
  ASSERT_TRUE(ls.foreign_extend(1000));
  // The address range is now 153,104 bytes; the segments hold 151,104.
  ls.malloc(8000);  // 8,032 more: 159,136 in segments, within
  expect_calls(ls, {sbrk(8000 + H, kChunk + 1000 + 20032 + 1000)});
  // This one would pass it: no sbrk at all, mapped.
  ls.malloc(900);
  expect_calls(ls, {mmap(904 + H, 1)});  // 159,136 + 936 > 160,000
  ls.free_all();
}

}  // namespace
}  // namespace osmem
