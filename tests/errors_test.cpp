// Error handling: every fatal ErrorKind, raised on the engine over the fake
// source (with a throwing handler, so the exact kind, operation and address
// can be asserted in-process) and through the real os_* API (death tests that
// match the fixed messages of report.cpp's print_error); plus the bad inputs
// that are not fatal (huge sizes, failing sbrk/mmap, realloc of a free block).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fake_source.hpp"
#include "heap.hpp"
#include "osmem/osmem.h"

// This file hands os_* freed, foreign and interior pointers and impossible
// sizes, and writes into headers, on purpose. The allocation attributes in
// osmem.h let GCC see exactly that and warn (their point in a user's code);
// here it is the test.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overread"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#endif

namespace osmem {
namespace {

// Drops a result that os_malloc/os_realloc declare must not be ignored: the
// calls it wraps are made for their fatal error or their system calls only.
void discard(void* /*block*/) {}

// What the throwing handler carries out of the engine.
struct HeapError {
  ErrorKind kind;
  std::string operation;
  const void* address;
};

// The engine is exception-neutral: a handler that throws unwinds out of the
// failing call instead of reaching report()'s abort().
void throwing_handler(ErrorKind kind, const char* operation, const void* address) {
  throw HeapError{kind, operation, address};
}

constexpr auto kNoError = static_cast<ErrorKind>(0);

// Runs f and returns the error it raised; records a failure if none.
template <class F>
HeapError raised_by(F&& f) {
  try {
    f();
  } catch (const HeapError& e) {
    return e;
  }
  ADD_FAILURE() << "the operation raised no error";
  return HeapError{kNoError, "", nullptr};
}

BlockMeta* header_of(void* p) {
  return BlockMeta::from_payload(p);
}

void fill(void* p, std::size_t n, unsigned seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>(seed + i * 7);
}

bool holds(const void* p, std::size_t n, unsigned seed) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (b[i] != static_cast<unsigned char>(seed + i * 7)) return false;
  }
  return true;
}

std::size_t count_calls(const FakeSource& src, SourceCall::Kind kind) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < src.call_count(); ++i) n += src.call(i).kind == kind ? 1 : 0;
  return n;
}

// Schedules the next `n` calls of each kind to fail (calls are numbered
// from 1 since the last reset, and the log has not been cleared).
void fail_next_calls(FakeSource& src, std::size_t n) {
  const std::size_t extends = count_calls(src, SourceCall::Kind::Extend);
  const std::size_t maps = count_calls(src, SourceCall::Kind::Map);
  for (std::size_t i = 1; i <= n; ++i) {
    src.fail_extend_call(extends + i);
    src.fail_map_call(maps + i);
  }
}

class EngineErrors : public ::testing::Test {
 protected:
  EngineErrors() : heap_(src_, 0x0123456789abcdefULL) { heap_.set_error_handler(throwing_handler); }

  std::size_t violations() const {
    Violation v[16];
    return heap_.check(v, 16);
  }

  // These tests forge headers byte by byte: their heaps are not poisoned.
  tool::Untracked untracked_;
  FakeSource src_;
  Heap<FakeSource> heap_;
};

// ---- DoubleFree -------------------------------------------------------------

TEST_F(EngineErrors, DoubleFreeOfHeapBlock) {
  void* a = heap_.malloc(100);
  void* guard = heap_.malloc(100);  // keeps a from merging with the tail
  ASSERT_NE(a, nullptr);
  ASSERT_NE(guard, nullptr);
  heap_.free(a);
  const HeapError e = raised_by([&] { heap_.free(a); });
  EXPECT_EQ(e.kind, ErrorKind::DoubleFree);
  EXPECT_EQ(e.operation, "os_free");
  EXPECT_EQ(e.address, a);
  // Detected before anything was changed: the heap is still sound.
  EXPECT_EQ(violations(), 0u);
  EXPECT_EQ(header_of(a)->status, Status::Free);
}

// b merges into its FREE predecessor a; b's header stays behind inside a's
// payload as a stale FREE header, and freeing b again must still be
// recognised as a double free (the contract: os_free of a FREE block).
TEST_F(EngineErrors, DoubleFreeOfBlockMergedIntoFreePredecessor) {
  void* a = heap_.malloc(64);
  void* b = heap_.malloc(64);
  void* guard = heap_.malloc(64);
  ASSERT_NE(guard, nullptr);
  heap_.free(a);
  heap_.free(b);
  ASSERT_EQ(header_of(a)->size, 64u + 32u + 64u);  // the merge happened
  ASSERT_EQ(violations(), 0u);
  const HeapError e = raised_by([&] { heap_.free(b); });
  EXPECT_EQ(e.kind, ErrorKind::DoubleFree) << "got kind " << static_cast<int>(e.kind);
  EXPECT_EQ(e.address, b);
  EXPECT_EQ(violations(), 0u);
}

// The same with a FREE block on both sides: b absorbs its successor first
// (which reseals b as FREE), then merges into a.
TEST_F(EngineErrors, DoubleFreeOfBlockMergedOnBothSides) {
  void* a = heap_.malloc(64);
  void* b = heap_.malloc(64);
  void* c = heap_.malloc(64);
  void* guard = heap_.malloc(64);
  ASSERT_NE(guard, nullptr);
  heap_.free(a);
  heap_.free(c);
  heap_.free(b);
  ASSERT_EQ(header_of(a)->size, 3 * 64u + 2 * 32u);
  const HeapError e = raised_by([&] { heap_.free(b); });
  EXPECT_EQ(e.kind, ErrorKind::DoubleFree);
  EXPECT_EQ(e.address, b);
  // c's header is stale too (merged into b, then into a).
  const HeapError e2 = raised_by([&] { heap_.free(c); });
  EXPECT_EQ(e2.kind, ErrorKind::DoubleFree);
  EXPECT_EQ(violations(), 0u);
}

TEST_F(EngineErrors, ReallocToZeroOfFreeBlockIsDoubleFree) {
  void* a = heap_.malloc(100);
  ASSERT_NE(heap_.malloc(100), nullptr);
  heap_.free(a);
  const HeapError e = raised_by([&] { heap_.realloc(a, 0); });
  EXPECT_EQ(e.kind, ErrorKind::DoubleFree);
  EXPECT_EQ(e.operation, "os_realloc");
  EXPECT_EQ(e.address, a);
  EXPECT_EQ(violations(), 0u);
}

// ---- InvalidPointer ---------------------------------------------------------

TEST_F(EngineErrors, WildPointerIsInvalid) {
  alignas(8) static unsigned char outside[256];
  void* wild = outside + 64;
  // Before the heap exists, and after it holds blocks and a mapping.
  EXPECT_EQ(raised_by([&] { heap_.free(wild); }).kind, ErrorKind::InvalidPointer);
  ASSERT_NE(heap_.malloc(10), nullptr);
  ASSERT_NE(heap_.malloc(200000), nullptr);
  const HeapError e = raised_by([&] { heap_.free(wild); });
  EXPECT_EQ(e.kind, ErrorKind::InvalidPointer);
  EXPECT_EQ(e.address, wild);
  EXPECT_EQ(raised_by([&] { heap_.realloc(wild, 10); }).kind, ErrorKind::InvalidPointer);
  // A pointer so low that its header would lie below address 0.
  EXPECT_EQ(raised_by([&] { heap_.free(reinterpret_cast<void*>(16)); }).kind,
            ErrorKind::InvalidPointer);
  // Beyond the heap's break, inside the fake's buffer: not a block either.
  void* past_break = src_.heap_base() + src_.break_offset() + 4096;
  EXPECT_EQ(raised_by([&] { heap_.free(past_break); }).kind, ErrorKind::InvalidPointer);
  EXPECT_EQ(violations(), 0u);
}

// A second free of an unmapped block must not read the (now unmapped)
// header: the live-mapping lookup rejects it first.
TEST_F(EngineErrors, SecondFreeOfMappedBlockIsInvalid) {
  void* keep = heap_.malloc(300000);  // another live mapping, so the tree is not empty
  void* m = heap_.malloc(200000);
  ASSERT_NE(keep, nullptr);
  ASSERT_NE(m, nullptr);
  heap_.free(m);
  ASSERT_EQ(count_calls(src_, SourceCall::Kind::Unmap), 1u);
  const HeapError e = raised_by([&] { heap_.free(m); });
  EXPECT_EQ(e.kind, ErrorKind::InvalidPointer);
  EXPECT_EQ(e.address, m);
  EXPECT_EQ(count_calls(src_, SourceCall::Kind::Unmap), 1u);  // no second munmap
  EXPECT_EQ(src_.misuse_count(), 0u);
  EXPECT_EQ(violations(), 0u);
}

TEST_F(EngineErrors, InteriorPointerIntoMappedBlockIsInvalid) {
  auto* m = static_cast<std::byte*>(heap_.malloc(200000));
  ASSERT_NE(m, nullptr);
  const HeapError e = raised_by([&] { heap_.free(m + 64); });
  EXPECT_EQ(e.kind, ErrorKind::InvalidPointer);
  EXPECT_EQ(e.address, m + 64);
  EXPECT_EQ(src_.live_mappings(), 1u);  // the mapping was left alone
  heap_.free(m);
  EXPECT_EQ(src_.live_mappings(), 0u);
  EXPECT_EQ(src_.misuse_count(), 0u);
}

// ---- MisalignedPointer ------------------------------------------------------

TEST_F(EngineErrors, MisalignedPointer) {
  auto* a = static_cast<std::byte*>(heap_.malloc(100));
  auto* m = static_cast<std::byte*>(heap_.malloc(200000));
  for (std::size_t off : {1, 3, 4, 7}) {
    HeapError e = raised_by([&] { heap_.free(a + off); });
    EXPECT_EQ(e.kind, ErrorKind::MisalignedPointer) << off;
    EXPECT_EQ(e.address, a + off);
    e = raised_by([&] { heap_.realloc(m + off, 10); });
    EXPECT_EQ(e.kind, ErrorKind::MisalignedPointer) << off;
    EXPECT_EQ(e.operation, "os_realloc");
  }
  EXPECT_EQ(violations(), 0u);
}

// ---- HeaderCorrupted --------------------------------------------------------

TEST_F(EngineErrors, FlippedCanaryByte) {
  void* a = heap_.malloc(100);
  ASSERT_NE(heap_.malloc(100), nullptr);
  reinterpret_cast<unsigned char*>(header_of(a))[12] ^= 0x01;  // canary at offset 12
  HeapError e = raised_by([&] { heap_.free(a); });
  EXPECT_EQ(e.kind, ErrorKind::HeaderCorrupted);
  EXPECT_EQ(e.address, a);
  e = raised_by([&] { heap_.realloc(a, 500); });
  EXPECT_EQ(e.kind, ErrorKind::HeaderCorrupted);
  EXPECT_EQ(e.operation, "os_realloc");
  EXPECT_EQ(header_of(a)->status, Status::Alloc);  // nothing followed the bad header
}

// An interior pointer into a heap block lands on user data, not a header.
TEST_F(EngineErrors, InteriorPointerIntoHeapBlock) {
  auto* a = static_cast<std::byte*>(heap_.malloc(256));
  ASSERT_NE(a, nullptr);
  std::memset(a, 0, 256);
  const HeapError e = raised_by([&] { heap_.free(a + 64); });
  EXPECT_EQ(e.kind, ErrorKind::HeaderCorrupted);
  EXPECT_EQ(e.address, a + 64);
  EXPECT_EQ(violations(), 0u);
}

// a's payload overflows into b's header (b FREE, so a free of a would merge
// with it). The neighbour's canary must be checked before its size is used.
TEST_F(EngineErrors, OverflowIntoFreeNextHeaderCaughtBeforeMerge) {
  void* a = heap_.malloc(64);
  void* b = heap_.malloc(64);
  void* c = heap_.malloc(64);
  ASSERT_NE(c, nullptr);
  heap_.free(b);
  // An off-by-a-few overflow: 8 bytes past a's payload, b's size field.
  const std::uint64_t forged = 1u << 20;
  std::memcpy(static_cast<std::byte*>(a) + 64, &forged, sizeof forged);
  const HeapError e = raised_by([&] { heap_.free(a); });
  EXPECT_EQ(e.kind, ErrorKind::HeaderCorrupted);
  EXPECT_EQ(e.address, b);  // the corrupted neighbour is named
  EXPECT_EQ(header_of(a)->size, 64u) << "a merged with a corrupted header";
}

// The same through an ALLOC neighbour, which is also checked before its
// status is trusted.
TEST_F(EngineErrors, OverflowIntoAllocNextHeaderCaught) {
  void* a = heap_.malloc(64);
  void* b = heap_.malloc(64);
  ASSERT_NE(b, nullptr);
  std::memset(static_cast<std::byte*>(a) + 64, 0, 32);  // b's header zeroed: looks FREE
  const HeapError e = raised_by([&] { heap_.free(a); });
  EXPECT_EQ(e.kind, ErrorKind::HeaderCorrupted);
  EXPECT_EQ(e.address, b);
  EXPECT_EQ(header_of(a)->size, 64u);
}

// A FREE predecessor whose header was overwritten (by an overflow of the
// block before it) is caught when its successor is freed and would merge.
TEST_F(EngineErrors, CorruptedFreePreviousHeaderCaughtBeforeMerge) {
  void* x = heap_.malloc(64);
  void* a = heap_.malloc(64);
  void* b = heap_.malloc(64);
  ASSERT_NE(heap_.malloc(64), nullptr);
  heap_.free(a);
  std::memset(static_cast<std::byte*>(x) + 64 + 8, 0x41, 4);  // a's status field
  const HeapError e = raised_by([&] { heap_.free(b); });
  EXPECT_EQ(e.kind, ErrorKind::HeaderCorrupted);
  EXPECT_EQ(e.address, a);
}

// The same, but the overflow reaches a's size: coalesce() must check a's
// canary before it trusts a->size to decide whether a touches b; otherwise a
// forged size skips the merge and leaves two touching FREE blocks behind.
TEST_F(EngineErrors, CorruptedFreePreviousSizeCaughtBeforeTouchTest) {
  void* x = heap_.malloc(64);
  void* a = heap_.malloc(64);
  void* b = heap_.malloc(64);
  ASSERT_NE(heap_.malloc(64), nullptr);
  heap_.free(a);
  const std::uint64_t forged = 4096;
  std::memcpy(static_cast<std::byte*>(x) + 64, &forged, sizeof forged);
  const HeapError e = raised_by([&] { heap_.free(b); });
  EXPECT_EQ(e.kind, ErrorKind::HeaderCorrupted);
  EXPECT_EQ(e.address, a);
}

TEST_F(EngineErrors, CorruptedMappedHeader) {
  void* m = heap_.malloc(200000);
  ASSERT_NE(m, nullptr);
  header_of(m)->size += 8;  // not resealed: the canary no longer matches
  const HeapError e = raised_by([&] { heap_.free(m); });
  EXPECT_EQ(e.kind, ErrorKind::HeaderCorrupted);
  EXPECT_EQ(e.address, m);
  EXPECT_EQ(count_calls(src_, SourceCall::Kind::Unmap), 0u);  // no munmap of a bad length
  EXPECT_EQ(raised_by([&] { heap_.realloc(m, 10); }).kind, ErrorKind::HeaderCorrupted);
}

// A resealed header with a status other than MAPPED (only the engine could
// write it, but the check exists): still refused.
TEST_F(EngineErrors, MappedHeaderWithWrongStatus) {
  void* m = heap_.malloc(200000);
  header_of(m)->status = Status::Free;
  heap_.sealer().seal(header_of(m));
  EXPECT_EQ(raised_by([&] { heap_.free(m); }).kind, ErrorKind::HeaderCorrupted);
  EXPECT_EQ(count_calls(src_, SourceCall::Kind::Unmap), 0u);
}

// The lookup for one mapping walks through others; a corrupted node on the
// path stops it, and is the address reported.
TEST_F(EngineErrors, CorruptedMappingOnLookupPath) {
  std::vector<void*> maps;
  for (int i = 0; i < 8; ++i) maps.push_back(heap_.malloc(140000 + 4096 * i));
  BlockMeta* root = heap_.mappings().root();
  ASSERT_NE(root, nullptr);
  reinterpret_cast<unsigned char*>(root)[13] ^= 0x80;
  for (void* m : maps) {
    if (m == root->payload()) continue;
    const HeapError e = raised_by([&] { heap_.free(m); });
    EXPECT_EQ(e.kind, ErrorKind::HeaderCorrupted);
    EXPECT_EQ(e.address, root->payload());
  }
  EXPECT_EQ(count_calls(src_, SourceCall::Kind::Unmap), 0u);
}

// ---- ForeignBreak -----------------------------------------------------------

// The fake's break only moves up through extend()/foreign_extend(), but
// reset() puts it back to offset 0, which models another component lowering
// the break (sbrk with a negative delta). The heap's bytes are saved and
// restored around the reset so that only the break has moved.
TEST_F(EngineErrors, BreakMovedBelowHeapIsForeignBreak) {
  void* a = heap_.malloc(100000);  // preallocation, a 31008-byte FREE tail remains
  ASSERT_NE(a, nullptr);
  const std::size_t top = src_.break_offset();
  ASSERT_EQ(top, 131072u);
  std::vector<std::byte> saved(src_.heap_base(), src_.heap_base() + top);
  src_.reset();
  ASSERT_TRUE(src_.foreign_extend(top - 64));  // the break is now 64 bytes inside the heap
  std::memcpy(src_.heap_base(), saved.data(), top);
  ASSERT_EQ(violations(), 0u);
  // Does not fit the tail: the tail grows by sbrk, which returns an address
  // below the end of the heap.
  const HeapError e = raised_by([&] { heap_.malloc(50000); });
  EXPECT_EQ(e.kind, ErrorKind::ForeignBreak);
  EXPECT_EQ(e.operation, "os_malloc");
  EXPECT_EQ(e.address, src_.heap_base() + top - 64);
}

// A foreign sbrk that moves the break *up* is not an error: a new segment.
TEST_F(EngineErrors, BreakMovedAboveHeapIsNewSegment) {
  ASSERT_NE(heap_.malloc(100000), nullptr);
  ASSERT_TRUE(src_.foreign_extend(4099));
  void* b = heap_.malloc(50000);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(src_.in_heap_buffer(b));
  struct os_heap_stats st;
  heap_.stats(&st);
  EXPECT_EQ(st.heap_segments, 2u);
  EXPECT_EQ(violations(), 0u);
}

// ---- non-fatal bad input ----------------------------------------------------

TEST_F(EngineErrors, HugeMallocFailsWithoutSystemCall) {
  for (std::size_t n : {SIZE_MAX, SIZE_MAX - 7, kMaxRequest + 1}) {
    errno = 0;
    EXPECT_EQ(heap_.malloc(n), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
  }
  EXPECT_EQ(src_.call_count(), 0u);
  // The largest request whose header still fits: one mmap, refused.
  errno = 0;
  EXPECT_EQ(heap_.malloc(kMaxRequest), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  ASSERT_EQ(src_.call_count(), 1u);
  EXPECT_EQ(src_.call(0).kind, SourceCall::Kind::Map);
  EXPECT_FALSE(src_.call(0).ok);
  EXPECT_EQ(src_.call(0).arg, SIZE_MAX - 7);
  EXPECT_EQ(violations(), 0u);
}

TEST_F(EngineErrors, CallocOverflowFailsWithoutSystemCall) {
  const std::size_t cases[][2] = {{SIZE_MAX / 2 + 1, 2},
                                  {std::size_t{1} << 32, std::size_t{1} << 32},
                                  {3, SIZE_MAX / 3 + 1},
                                  {1, SIZE_MAX}};
  for (const auto& c : cases) {
    errno = 0;
    EXPECT_EQ(heap_.calloc(c[0], c[1]), nullptr) << c[0] << " x " << c[1];
    EXPECT_EQ(errno, ENOMEM);
  }
  EXPECT_EQ(src_.call_count(), 0u);
}

TEST_F(EngineErrors, HugeReallocLeavesBlockUntouched) {
  void* a = heap_.malloc(100);
  void* m = heap_.malloc(200000);
  fill(a, 100, 1);
  fill(m, 200000, 2);
  BlockMeta before_a = *header_of(a);
  BlockMeta before_m = *header_of(m);
  src_.clear_calls();
  for (std::size_t n : {SIZE_MAX, kMaxRequest + 1}) {
    errno = 0;
    EXPECT_EQ(heap_.realloc(a, n), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(heap_.realloc(m, n), nullptr);
    EXPECT_EQ(errno, ENOMEM);
  }
  EXPECT_EQ(src_.call_count(), 0u);
  EXPECT_EQ(std::memcmp(&before_a, header_of(a), sizeof before_a), 0);
  EXPECT_EQ(std::memcmp(&before_m, header_of(m), sizeof before_m), 0);
  EXPECT_TRUE(holds(a, 100, 1));
  EXPECT_TRUE(holds(m, 200000, 2));
  EXPECT_EQ(violations(), 0u);
  heap_.free(a);
  heap_.free(m);
  EXPECT_EQ(violations(), 0u);
}

// The preallocating sbrk fails: the request is served by mmap, and the heap
// stays uninitialised so the next heap request tries sbrk again.
TEST_F(EngineErrors, FailedFirstSbrkFallsBackToMmap) {
  src_.fail_next_extend();
  void* p = heap_.malloc(100);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(src_.call_count(), 2u);
  EXPECT_EQ(src_.call(0).kind, SourceCall::Kind::Extend);
  EXPECT_FALSE(src_.call(0).ok);
  EXPECT_EQ(src_.call(0).arg, 131072u);
  EXPECT_EQ(src_.call(1).kind, SourceCall::Kind::Map);
  EXPECT_TRUE(src_.call(1).ok);
  EXPECT_EQ(src_.call(1).arg, 104u + 32u);
  EXPECT_EQ(header_of(p)->status, Status::Mapped);
  EXPECT_EQ(header_of(p)->size, 104u);
  EXPECT_EQ(src_.mapping_serial(p), 1u);
  fill(p, 100, 3);

  void* q = heap_.malloc(100);
  ASSERT_EQ(src_.call_count(), 3u);
  EXPECT_EQ(src_.call(2).kind, SourceCall::Kind::Extend);
  EXPECT_TRUE(src_.call(2).ok);
  EXPECT_EQ(src_.call(2).arg, 131072u);
  EXPECT_EQ(static_cast<std::byte*>(q), src_.heap_base() + 32);
  EXPECT_TRUE(holds(p, 100, 3));

  heap_.free(p);
  ASSERT_EQ(src_.call_count(), 4u);
  EXPECT_EQ(src_.call(3).kind, SourceCall::Kind::Unmap);
  EXPECT_EQ(src_.call(3).arg, 136u);
  EXPECT_EQ(src_.call(3).result, 1u);
  EXPECT_EQ(src_.misuse_count(), 0u);
  EXPECT_EQ(violations(), 0u);
}

// A growing sbrk fails after the heap exists: the request is mapped instead.
TEST_F(EngineErrors, FailedGrowthSbrkFallsBackToMmap) {
  void* a = heap_.malloc(100000);  // leaves a 31008-byte FREE tail
  ASSERT_NE(a, nullptr);
  src_.clear_calls();
  src_.fail_next_extend();
  void* b = heap_.malloc(50000);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(src_.call_count(), 2u);
  EXPECT_EQ(src_.call(0).kind, SourceCall::Kind::Extend);
  EXPECT_FALSE(src_.call(0).ok);
  EXPECT_EQ(src_.call(0).arg, 50000u - 31008u);  // the FREE tail would have grown
  EXPECT_EQ(src_.call(1).kind, SourceCall::Kind::Map);
  EXPECT_EQ(src_.call(1).arg, 50000u + 32u);
  EXPECT_EQ(header_of(b)->status, Status::Mapped);
  EXPECT_EQ(violations(), 0u);
}

// Neither sbrk nor mmap delivers: every kind of request fails with ENOMEM,
// and nothing that was live is disturbed.
TEST_F(EngineErrors, SbrkAndMmapBothFailing) {
  std::vector<std::pair<void*, std::size_t>> live;
  for (std::size_t n : {24, 1000, 5000, 200000, 64, 30000}) live.emplace_back(heap_.malloc(n), n);
  heap_.free(live[4].first);  // a hole, too small for what follows
  live.erase(live.begin() + 4);
  for (std::size_t i = 0; i < live.size(); ++i) {
    ASSERT_NE(live[i].first, nullptr);
    fill(live[i].first, live[i].second, static_cast<unsigned>(i));
  }
  struct os_heap_stats before;
  heap_.stats(&before);

  fail_next_calls(src_, FakeSource::kMaxScheduled);
  src_.clear_calls();
  errno = 0;
  EXPECT_EQ(heap_.malloc(131000), nullptr);  // heap: FREE tail growth, then mmap fallback
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(heap_.malloc(300000), nullptr);  // mapped directly
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(heap_.calloc(1000, 100), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(heap_.realloc(live[3].first, 400000), nullptr);  // a mapping must move
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(violations(), 0u);
  struct os_heap_stats after;
  heap_.stats(&after);
  EXPECT_EQ(after.heap_blocks, before.heap_blocks);
  EXPECT_EQ(after.free_blocks, before.free_blocks);
  EXPECT_EQ(after.heap_bytes_in_use, before.heap_bytes_in_use);
  EXPECT_EQ(after.heap_span, before.heap_span);
  EXPECT_EQ(after.mapped_blocks, before.mapped_blocks);

  // The last ALLOC block absorbs the FREE tail (it stays absorbed, rule 12),
  // cannot grow by sbrk, and cannot move: NULL, contents kept.
  errno = 0;
  EXPECT_EQ(heap_.realloc(live[4].first, 131000), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(header_of(live[4].first), heap_.blocks().tail());

  // Every call the engine made failed.
  ASSERT_GE(src_.call_count(), 8u);
  for (std::size_t i = 0; i < src_.call_count(); ++i) {
    EXPECT_FALSE(src_.call(i).ok) << "call " << i;
  }
  EXPECT_EQ(violations(), 0u);
  for (std::size_t i = 0; i < live.size(); ++i) {
    EXPECT_TRUE(holds(live[i].first, live[i].second, static_cast<unsigned>(i))) << i;
    EXPECT_NE(header_of(live[i].first)->status, Status::Free);
  }
  for (auto& [p, n] : live) heap_.free(p);
  EXPECT_EQ(violations(), 0u);
  EXPECT_EQ(src_.misuse_count(), 0u);
}

// Contract rule 12: realloc of a FREE heap block returns NULL, changes
// nothing (not a byte of the heap) and leaves errno alone.
TEST_F(EngineErrors, ReallocOfFreeBlockChangesNothing) {
  void* a = heap_.malloc(100);
  void* guard = heap_.malloc(100);
  ASSERT_NE(guard, nullptr);
  heap_.free(a);
  const std::size_t top = src_.break_offset();
  std::vector<std::byte> before(src_.heap_base(), src_.heap_base() + top);
  src_.clear_calls();
  for (std::size_t n : {std::size_t{1}, std::size_t{50}, std::size_t{104}, std::size_t{5000},
                        std::size_t{200000}, SIZE_MAX}) {
    errno = 12345;
    EXPECT_EQ(heap_.realloc(a, n), nullptr) << n;
    EXPECT_EQ(errno, 12345) << n;
  }
  EXPECT_EQ(src_.call_count(), 0u);
  EXPECT_EQ(src_.break_offset(), top);
  EXPECT_EQ(std::memcmp(before.data(), src_.heap_base(), top), 0);
  EXPECT_EQ(violations(), 0u);
}

// ---- the same through the real API: death tests -----------------------------

// The API reads OSMEM_CHECK once, at its first call. Death tests run in the
// "threadsafe" style (the binary is re-executed and runs only this test), so
// setting the variable at the top of the test body reaches the child before
// its first os_* call. "off" keeps the debug preset's entry check from
// reporting a corruption before the operation itself gets to see it.
class ApiErrorsDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
  static void check_mode(const char* mode) { ASSERT_EQ(setenv("OSMEM_CHECK", mode, 1), 0); }
};

constexpr const char kHex[] = "0x[0-9a-f]+";

// Plays a bug that no memory tool sees (one in uninstrumented code, say):
// the damaged bytes are opened only for the write, so the test reaches
// osmem's own checks instead of stopping at ASan's report of the write.
template <class F>
void unseen(void* p, std::size_t n, F write) {
  const tool::Reveal open(p, n);
  write();
}

std::string message(const char* name, const char* op, const char* text) {
  return std::string("osmem: ") + name + " in " + op + " at " + kHex + ": " + text;
}

TEST_F(ApiErrorsDeathTest, DoubleFree) {
  check_mode("off");
  void* p = os_malloc(100);
  ASSERT_NE(os_malloc(100), nullptr);
  os_free(p);
  EXPECT_DEATH(os_free(p), message("double free", "os_free", "the block is already free"));
  EXPECT_DEATH(discard(os_realloc(p, 0)),
               message("double free", "os_realloc", "the block is already free"));
}

TEST_F(ApiErrorsDeathTest, DoubleFreeOfMergedBlock) {
  check_mode("off");
  void* a = os_malloc(64);
  void* b = os_malloc(64);
  void* c = os_malloc(64);
  ASSERT_NE(os_malloc(64), nullptr);
  os_free(a);
  os_free(c);
  os_free(b);  // merges with both neighbours
  EXPECT_DEATH(os_free(b), message("double free", "os_free", "the block is already free"));
}

TEST_F(ApiErrorsDeathTest, InvalidPointer) {
  check_mode("off");
  static const char kText[] = "not a block of this heap \\(a wild pointer, or a large block";
  alignas(8) static char outside[128];
  ASSERT_NE(os_malloc(10), nullptr);
  EXPECT_DEATH(os_free(outside + 64), message("invalid pointer", "os_free", kText));
  EXPECT_DEATH(discard(os_realloc(outside + 64, 8)),
               message("invalid pointer", "os_realloc", kText));

  auto* m = static_cast<char*>(os_malloc(200000));
  ASSERT_NE(m, nullptr);
  EXPECT_DEATH(os_free(m + 64), message("invalid pointer", "os_free", kText));
  os_free(m);
  EXPECT_DEATH(os_free(m), message("invalid pointer", "os_free", kText));
}

TEST_F(ApiErrorsDeathTest, MisalignedPointer) {
  check_mode("off");
  auto* p = static_cast<char*>(os_malloc(100));
  ASSERT_NE(p, nullptr);
  const std::string text = message("misaligned pointer", "os_free", "not 8-byte aligned");
  EXPECT_DEATH(os_free(p + 4), text);
  EXPECT_DEATH(discard(os_realloc(p + 1, 10)),
               message("misaligned pointer", "os_realloc", "not 8-byte"));
}

TEST_F(ApiErrorsDeathTest, HeaderCorrupted) {
  check_mode("off");
  static const char kText[] = "header canary mismatch: the header was overwritten";
  auto* a = static_cast<char*>(os_malloc(64));
  auto* b = static_cast<char*>(os_malloc(64));
  auto* c = static_cast<char*>(os_malloc(64));
  ASSERT_NE(c, nullptr);
  // Canary byte flipped.
  EXPECT_DEATH(
      {
        unseen(a - 32, 32, [&] { a[-32 + 12] ^= 1; });
        os_free(a);
      },
      message("header corrupted", "os_free", kText));
  // Overflow of a into FREE b's header, then free a: caught before the merge.
  os_free(b);
  EXPECT_DEATH(
      {
        unseen(a + 64, 8, [&] { std::memset(a + 64, 0x41, 8); });
        os_free(a);
      },
      message("header corrupted", "os_free", kText));
  // A mapped block's header.
  auto* m = static_cast<char*>(os_malloc(200000));
  ASSERT_NE(m, nullptr);
  EXPECT_DEATH(
      {
        unseen(m - 32, 32, [&] { m[-32] ^= 0x10; });
        os_free(m);
      },
      message("header corrupted", "os_free", kText));
}

// With the real sbrk: lower the break below the end of the osmem heap, then
// ask for more heap than is free.
TEST_F(ApiErrorsDeathTest, ForeignBreak) {
  check_mode("off");
  auto* p = static_cast<char*>(os_malloc(8));  // the first heap request: sbrk(128 KiB)
  ASSERT_NE(p, nullptr);
  struct os_heap_stats st;
  ASSERT_EQ(os_heap_stats(&st), 0);
  ASSERT_EQ(st.heap_segments, 1u);
  char* heap_end = p - 32 + st.heap_span;
  EXPECT_DEATH(
      {
        // Nothing but our own sbrk between here and os_malloc: the process
        // dies before anyone else can use the memory given back.
        auto* brk_now = static_cast<char*>(sbrk(0));
        if (brk_now < heap_end) std::abort();
        if (sbrk(-(brk_now - (heap_end - 64))) == reinterpret_cast<void*>(-1)) std::abort();
        discard(os_malloc(131024));  // more than the 131000-byte FREE tail: grows it by sbrk
      },
      message("foreign break", "os_malloc", "the program break moved below the osmem heap"));
}

TEST_F(ApiErrorsDeathTest, HeapInconsistentInDebugMode) {
  check_mode("full");
  auto* a = static_cast<char*>(os_malloc(64));
  ASSERT_NE(os_malloc(64), nullptr);
  EXPECT_DEATH(
      {
        unseen(a - 32, 32, [&] { a[-32 + 12] ^= 1; });
        discard(os_malloc(16));
      },
      std::string(
          "heap inconsistent on entry to os_malloc \\(operation 3\\): header canary mismatch at "
          "block ") +
          kHex + "(.|\n)*" +
          message("heap inconsistent", "os_malloc", "the heap checker found a broken invariant"));
}

// A user handler sees the kind, the operation and the exact address; when
// it returns, the process still aborts.
const void* g_expected_address = nullptr;

void reporting_handler(os_error_kind kind, const char* operation, const void* address) {
  char line[160];
  const int n =
      snprintf(line, sizeof line, "handler: kind %d op %s address %s\n", static_cast<int>(kind),
               operation, address == g_expected_address ? "as expected" : "unexpected");
  if (n > 0) (void)!write(2, line, static_cast<std::size_t>(n));
}

TEST_F(ApiErrorsDeathTest, UserHandlerSeesKindOperationAndAddress) {
  check_mode("off");
  os_error_handler previous = os_set_error_handler(reporting_handler);
  auto* a = static_cast<char*>(os_malloc(64));
  auto* b = static_cast<char*>(os_malloc(64));
  ASSERT_NE(os_malloc(64), nullptr);
  os_free(b);
  // The overflow names the neighbour b, not the pointer passed in.
  EXPECT_DEATH(
      {
        g_expected_address = b;
        unseen(a + 64, 16, [&] { std::memset(a + 64, 0, 16); });
        os_free(a);
      },
      "handler: kind 4 op os_free address as expected");
  EXPECT_DEATH(
      {
        g_expected_address = b;
        os_free(b);
      },
      "handler: kind 1 op os_free address as expected");
  EXPECT_DEATH(
      {
        g_expected_address = a + 2;
        discard(os_realloc(a + 2, 1));
      },
      "handler: kind 3 op os_realloc address as expected");
  os_set_error_handler(previous);
}

// ---- non-fatal bad input through the API ------------------------------------

TEST(ApiBadInput, HugeRequestsFailWithEnomem) {
  struct os_heap_stats before, after;
  ASSERT_EQ(os_heap_stats(&before), 0);
  errno = 0;
  EXPECT_EQ(os_malloc(SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(os_calloc(SIZE_MAX / 2 + 1, 2), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(os_calloc(std::size_t{1} << 33, std::size_t{1} << 33), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  ASSERT_EQ(os_heap_stats(&after), 0);
  EXPECT_EQ(after.sbrk_calls, before.sbrk_calls);
  EXPECT_EQ(after.mmap_calls, before.mmap_calls);

  auto* p = static_cast<unsigned char*>(os_malloc(100));
  ASSERT_NE(p, nullptr);
  fill(p, 100, 9);
  unsigned char header[32];
  unseen(p - 32, 32, [&] { std::memcpy(header, p - 32, 32); });
  errno = 0;
  EXPECT_EQ(os_realloc(p, SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  unseen(p - 32, 32, [&] { EXPECT_EQ(std::memcmp(header, p - 32, 32), 0); });
  EXPECT_TRUE(holds(p, 100, 9));
  EXPECT_EQ(os_heap_check(), 0);
  os_free(p);
  EXPECT_EQ(os_heap_check(), 0);
}

TEST(ApiBadInput, ReallocOfFreeBlockReturnsNull) {
  auto* a = static_cast<unsigned char*>(os_malloc(100));
  ASSERT_NE(os_malloc(100), nullptr);
  os_free(a);
  unsigned char header[32];
  unseen(a - 32, 32, [&] { std::memcpy(header, a - 32, 32); });
  errno = 777;
  EXPECT_EQ(os_realloc(a, 50), nullptr);
  EXPECT_EQ(os_realloc(a, 5000), nullptr);
  EXPECT_EQ(errno, 777);
  unseen(a - 32, 32, [&] { EXPECT_EQ(std::memcmp(header, a - 32, 32), 0); });
  EXPECT_EQ(os_heap_check(), 0);
}

}  // namespace
}  // namespace osmem
