// The heap checker: build a heap on the engine over the fake source, break
// one invariant on purpose, and assert that check() names that invariant at
// that block; survive headers full of random bytes; stay silent on a heap
// that only the engine touched. Then the debug-mode reporting of the real API
// (OSMEM_CHECK=full), which runs the same checker around every call.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fake_source.hpp"
#include "heap.hpp"
#include "osmem/osmem.h"

namespace osmem {
namespace {

// Drops a result that os_malloc/os_realloc declare must not be ignored: the
// calls it wraps are made for their fatal error or their system calls only.
void discard(void* /*block*/) {}

std::string describe(const std::vector<Violation>& vs) {
  std::string s;
  for (const Violation& v : vs) {
    char addr[32];
    snprintf(addr, sizeof addr, "%p", v.block);
    s += std::string("  ") + invariant_name(v.invariant) + " at " + addr + "\n";
  }
  return s.empty() ? "  (none)\n" : s;
}

bool has(const std::vector<Violation>& vs, Invariant inv, const void* block) {
  for (const Violation& v : vs) {
    if (v.invariant == inv && v.block == block) return true;
  }
  return false;
}

// Heap layout used by most tests (64-byte payloads, one 128 KiB segment):
//   A0 F1 A2 A3 A4 F5 A6 T(FREE tail)   plus four live mappings M0..M3.
// A3 has ALLOC neighbours on both sides; A4 and A0 have a FREE neighbour.
class Checker : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 7; ++i) {
      p_[i] = heap_.malloc(64);
      ASSERT_NE(p_[i], nullptr);
    }
    heap_.free(p_[1]);
    heap_.free(p_[5]);
    for (int i = 0; i < 4; ++i) {
      m_[i] = heap_.malloc(140000 + 4096 * i);
      ASSERT_NE(m_[i], nullptr);
    }
    ASSERT_EQ(run().size(), 0u) << "the heap is not clean before the corruption";
    ASSERT_EQ(tail(), heap_.blocks().tail());
    ASSERT_EQ(tail()->status, Status::Free);
  }

  std::vector<Violation> run() const {
    Violation out[64];
    const std::size_t n = heap_.check(out, 64);
    EXPECT_LE(n, 64u);
    return std::vector<Violation>(out, out + (n < 64 ? n : 64));
  }

  BlockMeta* blk(int i) const { return BlockMeta::from_payload(p_[i]); }
  BlockMeta* tail() const { return BlockMeta::at(blk(6)->end()); }
  BlockMeta* mapped(int i) const { return BlockMeta::from_payload(m_[i]); }
  void reseal(BlockMeta* b) const { heap_.sealer().seal(b); }

  // These tests forge headers byte by byte: their heaps are not poisoned.
  tool::Untracked untracked_;
  FakeSource src_;
  Heap<FakeSource> heap_{src_, 0xfeedface12345678ULL};
  void* p_[7] = {};
  void* m_[4] = {};
};

#define EXPECT_ONLY(vs, inv, block)                                                 \
  do {                                                                              \
    const auto& vs_ = (vs);                                                         \
    EXPECT_EQ(vs_.size(), 1u) << describe(vs_);                                     \
    EXPECT_TRUE(has(vs_, inv, block)) << "expected " << invariant_name(inv) << "\n" \
                                      << describe(vs_);                             \
  } while (0)

#define EXPECT_HAS(vs, inv, block)                                                  \
  do {                                                                              \
    const auto& vs_ = (vs);                                                         \
    EXPECT_TRUE(has(vs_, inv, block)) << "expected " << invariant_name(inv) << "\n" \
                                      << describe(vs_);                             \
  } while (0)

TEST_F(Checker, CanaryByteFlip) {
  for (int byte = 12; byte < 16; ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      auto* raw = reinterpret_cast<unsigned char*>(blk(3));
      raw[byte] ^= static_cast<unsigned char>(1 << bit);
      EXPECT_ONLY(run(), Invariant::CanaryMismatch, blk(3));
      raw[byte] ^= static_cast<unsigned char>(1 << bit);
    }
  }
  EXPECT_EQ(run().size(), 0u);
}

// A field changed without resealing: the canary covers every field.
TEST_F(Checker, UnsealedFieldChange) {
  BlockMeta* b = blk(3);
  const BlockMeta saved = *b;
  for (int offset : {0, 8, 16, 24}) {
    reinterpret_cast<unsigned char*>(b)[offset + 3] ^= 0x10;  // a high byte: keeps size aligned
    const auto vs = run();
    EXPECT_HAS(vs, Invariant::CanaryMismatch, b);
    std::memcpy(b, &saved, sizeof saved);
  }
  EXPECT_EQ(run().size(), 0u);
}

TEST_F(Checker, PrevLinkBroken) {
  blk(3)->prev = blk(0);
  reseal(blk(3));
  EXPECT_ONLY(run(), Invariant::LinkMismatch, blk(3));
}

// A next link that skips a block: the block after the gap disagrees about
// its predecessor, and the skipped bytes are missing from the span.
TEST_F(Checker, NextLinkSkipsABlock) {
  blk(2)->next = blk(4);
  reseal(blk(2));
  const auto vs = run();
  EXPECT_HAS(vs, Invariant::LinkMismatch, blk(4));
  EXPECT_HAS(vs, Invariant::HeapAccounting, nullptr);
}

// A null next in the middle: the list ends early, before the tail.
TEST_F(Checker, NextLinkCutShort) {
  blk(3)->next = nullptr;
  reseal(blk(3));
  const auto vs = run();
  EXPECT_HAS(vs, Invariant::LinkMismatch, blk(3));
  EXPECT_HAS(vs, Invariant::LinkMismatch, tail());
}

TEST_F(Checker, AdjacentFree) {
  blk(4)->status = Status::Free;  // F5 follows it
  reseal(blk(4));
  auto vs = run();
  EXPECT_HAS(vs, Invariant::AdjacentFree, blk(4));
  EXPECT_HAS(vs, Invariant::IndexMismatch, nullptr);  // the index never saw it
  EXPECT_EQ(vs.size(), 2u) << describe(vs);

  blk(4)->status = Status::Alloc;
  reseal(blk(4));
  blk(0)->status = Status::Free;  // F1 follows it
  reseal(blk(0));
  vs = run();
  EXPECT_HAS(vs, Invariant::AdjacentFree, blk(0));
}

// Blocks that are not touching may both be FREE: across a segment boundary
// (a foreign sbrk in between) there is no merge and no violation.
TEST_F(Checker, FreeBlocksInDifferentSegmentsAreNotAdjacent) {
  ASSERT_TRUE(src_.foreign_extend(64));
  void* big = heap_.malloc(131000);  // does not fit T: T grows, lands past the foreign bytes
  ASSERT_NE(big, nullptr);
  heap_.free(big);
  struct os_heap_stats st;
  heap_.stats(&st);
  EXPECT_EQ(st.heap_segments, 2u);
  EXPECT_EQ(run().size(), 0u) << describe(run());
}

TEST_F(Checker, IndexMismatch) {
  blk(3)->status = Status::Free;  // both neighbours ALLOC: only the index disagrees
  reseal(blk(3));
  // The block the index lacks is named, and the counts disagree.
  const auto vs = run();
  EXPECT_EQ(vs.size(), 2u);
  EXPECT_HAS(vs, Invariant::IndexMismatch, blk(3));
  EXPECT_HAS(vs, Invariant::IndexMismatch, nullptr);
}

TEST_F(Checker, BadStatus) {
  blk(3)->status = static_cast<Status>(7);
  reseal(blk(3));
  EXPECT_ONLY(run(), Invariant::BadStatus, blk(3));
  blk(3)->status = Status::Mapped;  // a heap block cannot be MAPPED
  reseal(blk(3));
  EXPECT_ONLY(run(), Invariant::BadStatus, blk(3));
}

// The user writes past the end of A3's payload into A4's header.
TEST_F(Checker, OverflowIntoNextHeader) {
  auto* payload = static_cast<unsigned char*>(p_[3]);
  payload[64] ^= 0x01;  // one byte too far: A4's size, now odd
  auto vs = run();
  ASSERT_FALSE(vs.empty());
  EXPECT_EQ(vs[0].invariant, Invariant::CanaryMismatch) << describe(vs);
  EXPECT_EQ(vs[0].block, blk(4));
  EXPECT_HAS(vs, Invariant::BadSize, blk(4));
  payload[64] ^= 0x01;
  ASSERT_EQ(run().size(), 0u);

  // A longer overflow from A4 into the FREE F5.
  std::memset(static_cast<unsigned char*>(p_[4]) + 64, 0x5a, 12);
  vs = run();
  ASSERT_FALSE(vs.empty());
  EXPECT_EQ(vs[0].invariant, Invariant::CanaryMismatch) << describe(vs);
  EXPECT_EQ(vs[0].block, blk(5));
  EXPECT_HAS(vs, Invariant::BadStatus, blk(5));
}

// A2's status overwritten to read FREE, behind the FREE F1: the damage is
// A2's header, so the first violation names A2, not F1 (whose test for a
// FREE neighbour would read A2's status as if it were sound).
TEST_F(Checker, DamagedStatusBehindAFreeBlockIsNamedFirst) {
  reinterpret_cast<unsigned char*>(blk(2))[8] ^= 0x01;  // ALLOC (1) now reads FREE (0)
  const auto vs = run();
  ASSERT_FALSE(vs.empty());
  EXPECT_EQ(vs[0].invariant, Invariant::CanaryMismatch) << describe(vs);
  EXPECT_EQ(vs[0].block, blk(2)) << describe(vs);
  EXPECT_FALSE(has(vs, Invariant::AdjacentFree, blk(1))) << describe(vs);
}

TEST_F(Checker, SizeRunsPastTheHeap) {
  blk(3)->size = std::size_t{1} << 30;
  reseal(blk(3));
  EXPECT_ONLY(run(), Invariant::BadSize, blk(3));

  // Just one word past the end of the heap.
  auto* heap_end = src_.heap_base() + src_.break_offset();
  blk(3)->size = static_cast<std::size_t>(heap_end - blk(3)->payload()) + 8;
  reseal(blk(3));
  EXPECT_ONLY(run(), Invariant::BadSize, blk(3));

  // Not a multiple of 8.
  blk(3)->size = 68;
  reseal(blk(3));
  EXPECT_ONLY(run(), Invariant::BadSize, blk(3));
}

// A size so large that header + size wraps around the address space: the
// block certainly runs past the heap, and must be reported as such.
TEST_F(Checker, HugeSizeWrappingAroundIsBadSize) {
  blk(3)->size = SIZE_MAX - 7;  // a multiple of 8; 32 + size wraps to 24
  reseal(blk(3));
  EXPECT_HAS(run(), Invariant::BadSize, blk(3));
}

// A size that reaches exactly the end of the heap is inside it, but then the
// block overlaps its successor.
TEST_F(Checker, SizeOverlappingTheNextBlock) {
  auto* heap_end = src_.heap_base() + src_.break_offset();
  blk(3)->size = static_cast<std::size_t>(heap_end - blk(3)->payload());
  reseal(blk(3));
  EXPECT_ONLY(run(), Invariant::AddressOrder, blk(3));
}

// Links that point backwards or into a cycle: reported, and the walk ends.
TEST_F(Checker, NextPointsBackwardsOrIntoACycle) {
  blk(3)->next = blk(1);
  reseal(blk(3));
  EXPECT_ONLY(run(), Invariant::AddressOrder, blk(3));

  blk(3)->next = blk(3);  // a self-loop
  reseal(blk(3));
  EXPECT_ONLY(run(), Invariant::AddressOrder, blk(3));

  blk(3)->next = blk(4);
  reseal(blk(3));
  ASSERT_EQ(run().size(), 0u);

  tail()->next = blk(0);  // the whole list becomes a cycle
  reseal(tail());
  EXPECT_ONLY(run(), Invariant::AddressOrder, tail());
}

TEST_F(Checker, NextPointsIntoItsOwnPayload) {
  blk(3)->next = BlockMeta::at(blk(3)->payload() + 16);
  reseal(blk(3));
  EXPECT_ONLY(run(), Invariant::AddressOrder, blk(3));
}

// A next pointer above the block but outside the heap (or misaligned) is
// reported without being followed.
TEST_F(Checker, NextPointsOutsideTheHeap) {
  std::byte* past_break = src_.heap_base() + src_.break_offset() + 4096;  // in the buffer
  std::byte* past_buffer = src_.heap_base() + src_.limits().heap_capacity + 4096;
  BlockMeta* targets[] = {
      reinterpret_cast<BlockMeta*>(past_break), reinterpret_cast<BlockMeta*>(past_buffer),
      reinterpret_cast<BlockMeta*>(UINTPTR_MAX - 7),
      reinterpret_cast<BlockMeta*>(reinterpret_cast<std::byte*>(blk(4)) + 4),  // misaligned
  };
  for (BlockMeta* target : targets) {
    blk(3)->next = target;
    reseal(blk(3));
    EXPECT_ONLY(run(), Invariant::BlockOutOfHeap, target);
  }
}

// Outside the heap and below the block (static data, a mapping): the address
// order check fires first, which also keeps the pointer from being followed.
TEST_F(Checker, NextPointsOutsideTheHeapBelow) {
  alignas(8) static unsigned char elsewhere[64];
  for (BlockMeta* target : {reinterpret_cast<BlockMeta*>(elsewhere), mapped(0)}) {
    blk(3)->next = target;
    reseal(blk(3));
    if (reinterpret_cast<std::byte*>(target) < blk(3)->end()) {
      EXPECT_ONLY(run(), Invariant::AddressOrder, blk(3));
    } else {
      EXPECT_ONLY(run(), Invariant::BlockOutOfHeap, target);
    }
  }
}

TEST_F(Checker, HeapAccounting) {
  tail()->size -= 8;  // 8 bytes of the segment now belong to no block
  reseal(tail());
  const auto vs = run();
  EXPECT_HAS(vs, Invariant::HeapAccounting, nullptr);
  EXPECT_HAS(vs, Invariant::IndexMismatch, nullptr);  // the free bytes changed too
}

// ---- the mapping tree ---------------------------------------------------------

TEST_F(Checker, MappedHeaderCorrupted) {
  for (int i = 0; i < 4; ++i) {
    auto* raw = reinterpret_cast<unsigned char*>(mapped(i));
    raw[2] ^= 0x40;  // the size field, as an underflow from below might
    EXPECT_ONLY(run(), Invariant::CanaryMismatch, mapped(i));
    raw[2] ^= 0x40;
  }
  EXPECT_EQ(run().size(), 0u);
}

TEST_F(Checker, MappedStatusAndSize) {
  mapped(1)->status = Status::Alloc;
  reseal(mapped(1));
  EXPECT_ONLY(run(), Invariant::BadStatus, mapped(1));
  mapped(1)->status = Status::Mapped;
  mapped(1)->size += 8;  // the recount no longer matches the recorded bytes
  reseal(mapped(1));
  EXPECT_ONLY(run(), Invariant::MappedAccounting, nullptr);
}

TEST_F(Checker, MappedChildIntoTheHeap) {
  BlockMeta* root = heap_.mappings().root();
  ASSERT_NE(root, nullptr);
  BlockMeta*& link = root->prev == nullptr ? root->prev : root->next;
  link = blk(3);
  reseal(root);
  const auto vs = run();
  EXPECT_HAS(vs, Invariant::MappedOrder, blk(3));
}

// A child link back to the root: a cycle. The walk must stop.
TEST_F(Checker, MappedCycle) {
  BlockMeta* root = heap_.mappings().root();
  ASSERT_NE(root, nullptr);
  BlockMeta*& link = root->prev == nullptr ? root->prev : root->next;
  link = root;
  reseal(root);
  const auto vs = run();
  EXPECT_HAS(vs, Invariant::MappedOrder, root);
}

// Left and right subtrees swapped: keys out of order.
TEST_F(Checker, MappedOrderBroken) {
  BlockMeta* root = heap_.mappings().root();
  ASSERT_NE(root, nullptr);
  ASSERT_TRUE(root->prev != nullptr || root->next != nullptr);
  std::swap(root->prev, root->next);
  reseal(root);
  const auto vs = run();
  ASSERT_FALSE(vs.empty());
  for (const Violation& v : vs) EXPECT_EQ(v.invariant, Invariant::MappedOrder) << describe(vs);
}

// check() counts every violation but writes only as many as fit.
TEST_F(Checker, CapacityLimitsOutputNotCount) {
  reinterpret_cast<unsigned char*>(blk(0))[12] ^= 1;
  reinterpret_cast<unsigned char*>(blk(3))[12] ^= 1;
  Violation out[2] = {{Invariant::MappedAccounting, &out}, {Invariant::MappedAccounting, &out}};
  EXPECT_EQ(heap_.check(out, 1), 2u);
  EXPECT_EQ(out[0].invariant, Invariant::CanaryMismatch);
  EXPECT_EQ(out[0].block, blk(0));
  EXPECT_EQ(out[1].block, &out);  // untouched
  EXPECT_EQ(heap_.check(nullptr, 0), 2u);
}

// ---- garbage ------------------------------------------------------------------

// Whole headers overwritten with random bytes, one to three at a time, on
// heaps built by random operations: the checker must neither crash nor loop,
// and must report something. stats() and dump() walk the same headers.
TEST(CheckerGarbage, RandomHeadersNeverCrashTheChecker) {
  const tool::Untracked untracked;  // the test writes garbage into headers
  FakeSource src;
  const int devnull = open("/dev/null", O_WRONLY);
  ASSERT_GE(devnull, 0);
  for (std::uint64_t seed = 1; seed <= 400; ++seed) {
    src.reset();
    Heap<FakeSource> heap(src, seed * 0x9e3779b97f4a7c15ULL);
    std::mt19937_64 rng(seed);
    std::vector<void*> live;
    for (int i = 0; i < 40; ++i) {
      const std::uint64_t r = rng();
      if (!live.empty() && r % 4 == 0) {
        const std::size_t k = rng() % live.size();
        heap.free(live[k]);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
      } else {
        const std::size_t n = r % 16 == 1 ? 131072 + rng() % 65536 : 1 + rng() % 2048;
        live.push_back(heap.malloc(n));
        ASSERT_NE(live.back(), nullptr);
      }
    }
    // Every header there is: the heap list and the live mappings.
    std::vector<BlockMeta*> headers;
    for (BlockMeta* b = heap.blocks().head(); b != nullptr; b = b->next) headers.push_back(b);
    for (void* p : live) {
      if (BlockMeta::from_payload(p)->status == Status::Mapped) {
        headers.push_back(BlockMeta::from_payload(p));
      }
    }
    Violation v[8];
    ASSERT_EQ(heap.check(v, 8), 0u) << "seed " << seed;
    const int corrupt = 1 + static_cast<int>(rng() % 3);
    for (int c = 0; c < corrupt; ++c) {
      auto* raw = reinterpret_cast<unsigned char*>(headers[rng() % headers.size()]);
      for (int i = 0; i < 32; ++i) raw[i] = static_cast<unsigned char>(rng());
    }
    EXPECT_GE(heap.check(v, 8), 1u) << "seed " << seed;
    struct os_heap_stats st;
    heap.stats(&st);
    heap.dump(devnull);
    for (BlockMeta* h : headers) heap.describe(h, devnull);
  }
  close(devnull);
}

// The same with single random fields rather than whole headers: a plausible
// pointer or size is a harder test than noise.
TEST(CheckerGarbage, PlausibleFieldsNeverCrashTheChecker) {
  const tool::Untracked untracked;  // the test writes into headers
  FakeSource src;
  int resealed_or_not[2] = {0, 0};
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    src.reset();
    Heap<FakeSource> heap(src, seed);
    std::mt19937_64 rng(seed ^ 0xabcdef);
    std::vector<void*> live;
    for (int i = 0; i < 24; ++i) {
      live.push_back(heap.malloc(1 + rng() % 1024));
      if (rng() % 3 == 0) {
        heap.free(live.back());
        live.pop_back();
      }
    }
    ASSERT_NE(heap.malloc(200000), nullptr);
    // Heap headers only: a resealed mapped header with a forged child link
    // is outside what the checker defends against (only the cookie's owner
    // can produce one), and following it may leave mapped memory.
    std::vector<BlockMeta*> headers;
    for (BlockMeta* b = heap.blocks().head(); b != nullptr; b = b->next) headers.push_back(b);
    BlockMeta* victim = headers[rng() % headers.size()];
    BlockMeta* other = headers[rng() % headers.size()];
    auto* plausible = reinterpret_cast<std::byte*>(other) + 8 * static_cast<int>(rng() % 9) - 32;
    switch (rng() % 4) {
      case 0:
        victim->size = rng() % 4 == 0 ? rng() : rng() % 300000;
        break;
      case 1:
        victim->status = static_cast<Status>(rng() % 4);
        break;
      case 2:
        victim->prev = reinterpret_cast<BlockMeta*>(plausible);
        break;
      case 3:
        victim->next = reinterpret_cast<BlockMeta*>(plausible);
        break;
    }
    // Resealed half the time: then only the structural checks can see it.
    if (rng() % 2 == 0) heap.sealer().seal(victim);
    ++resealed_or_not[heap.sealer().intact(victim) ? 1 : 0];
    Violation v[8];
    // The change may happen to be harmless (a FREE block's status set to
    // FREE), so only survival is asserted here, and that the checker sees
    // every unsealed change.
    const std::size_t n = heap.check(v, 8);
    if (!heap.sealer().intact(victim)) {
      EXPECT_GE(n, 1u) << "seed " << seed;
    }
    struct os_heap_stats st;
    heap.stats(&st);
  }
  // Both kinds of corruption were exercised.
  EXPECT_GT(resealed_or_not[0], 50);
  EXPECT_GT(resealed_or_not[1], 50);
}

// ---- a clean heap stays clean -------------------------------------------------

TEST(CheckerClean, NoViolationsAfterManyRandomOperations) {
  FakeSource src;
  Heap<FakeSource> heap(src, 42);
  std::mt19937_64 rng(7);
  struct Live {
    unsigned char* p;
    std::size_t n;
    unsigned char tag;
  };
  std::vector<Live> live;
  Violation v[8];
  auto sizes = [&] {
    const std::uint64_t r = rng() % 100;
    if (r < 70) return 1 + rng() % 512;
    if (r < 95) return 512 + rng() % 16384;
    return 100000 + rng() % 200000;
  };
  auto check_contents = [&](const Live& l) {
    for (std::size_t i = 0; i < l.n; ++i) {
      if (l.p[i] != static_cast<unsigned char>(l.tag + i)) return false;
    }
    return true;
  };
  for (int op = 0; op < 3000; ++op) {
    const std::uint64_t r = rng() % 10;
    if (r < 4 || live.empty()) {
      const std::size_t n = sizes();
      auto* p = static_cast<unsigned char*>(r == 0 ? heap.calloc(1, n) : heap.malloc(n));
      ASSERT_NE(p, nullptr);
      if (r == 0) {
        for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(p[i], 0) << "calloc not zeroed";
      }
      const auto tag = static_cast<unsigned char>(rng());
      for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(tag + i);
      live.push_back({p, n, tag});
    } else if (r < 7) {
      const std::size_t k = rng() % live.size();
      ASSERT_TRUE(check_contents(live[k])) << "op " << op;
      heap.free(live[k].p);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
    } else {
      Live& l = live[rng() % live.size()];
      ASSERT_TRUE(check_contents(l)) << "op " << op;
      const std::size_t n = sizes();
      auto* q = static_cast<unsigned char*>(heap.realloc(l.p, n));
      ASSERT_NE(q, nullptr);
      const std::size_t kept = n < l.n ? n : l.n;
      for (std::size_t i = 0; i < kept; ++i) {
        ASSERT_EQ(q[i], static_cast<unsigned char>(l.tag + i)) << "realloc lost byte " << i;
      }
      for (std::size_t i = 0; i < n; ++i) q[i] = static_cast<unsigned char>(l.tag + i);
      l.p = q;
      l.n = n;
    }
    if (op % 25 == 0) {
      ASSERT_EQ(heap.check(v, 8), 0u) << "op " << op;
    }
  }
  EXPECT_EQ(heap.check(v, 8), 0u);
  for (const Live& l : live) {
    EXPECT_TRUE(check_contents(l));
    heap.free(l.p);
  }
  EXPECT_EQ(heap.check(v, 8), 0u);
  struct os_heap_stats st;
  heap.stats(&st);
  EXPECT_EQ(st.mapped_blocks, 0u);
  EXPECT_EQ(st.heap_bytes_in_use, 0u);
  EXPECT_EQ(src.misuse_count(), 0u);
  EXPECT_EQ(src.live_mappings(), 0u);
}

// ---- debug-mode reporting through the API ---------------------------------------

// OSMEM_CHECK is read at the first os_* call; the threadsafe death-test
// style re-executes the binary, so the setenv() at the top of the body runs
// in the child before that first call.
class ApiCheckDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
  static void check_mode(const char* mode) { ASSERT_EQ(setenv("OSMEM_CHECK", mode, 1), 0); }
};

constexpr const char kFatal[] = "the heap checker found a broken invariant";

// The tests below write into headers through user pointers on purpose; the
// header's alloc_size attributes let GCC see those writes leave the block.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif

// Plays a bug that no memory tool sees (one in uninstrumented code, say):
// the damaged bytes are opened only for the write, so the test reaches
// osmem's own checks instead of stopping at ASan's report of the write.
template <class F>
void unseen(void* p, std::size_t n, F write) {
  const tool::Reveal open(p, n);
  write();
}

TEST_F(ApiCheckDeathTest, OverflowReportedOnEntryToFree) {
  check_mode("full");
  auto* a = static_cast<unsigned char*>(os_malloc(64));
  ASSERT_NE(os_malloc(64), nullptr);
  EXPECT_DEATH(
      {
        unseen(a + 64, 32, [&] { a[64] ^= 0x01; });  // the next header's size, now odd
        os_free(a);
      },
      "osmem: heap inconsistent on entry to os_free \\(operation 3\\): header canary mismatch at "
      "block "
      "0x[0-9a-f]+ \\(user pointer 0x[0-9a-f]+\\)\n(.|\n)*"
      "osmem: \\.\\.\\. and 1 more violation\\(s\\), likely consequences of this one\n"
      "osmem: heap inconsistent in os_free at 0x0: " +
          std::string(kFatal));
}

TEST_F(ApiCheckDeathTest, OverflowReportedOnEntryToMalloc) {
  check_mode("full");
  auto* a = static_cast<unsigned char*>(os_malloc(64));
  ASSERT_NE(os_malloc(64), nullptr);
  EXPECT_DEATH(
      {
        unseen(a + 64, 32, [&] { std::memset(a + 64 + 8, 0xff, 4); });  // the next status
        discard(os_malloc(10));
      },
      "osmem: heap inconsistent on entry to os_malloc \\(operation 3\\): header canary "
      "mismatch(.|\n)*"
      "osmem: \\.\\.\\. and 1 more violation\\(s\\), likely consequences of this one\n"
      "osmem: heap inconsistent in os_malloc at 0x0: " +
          std::string(kFatal));
}

// The report on stderr names the damaged block and shows it (describe()).
TEST_F(ApiCheckDeathTest, ReportShowsTheDamagedHeader) {
  check_mode("full");
  auto* a = static_cast<unsigned char*>(os_malloc(64));
  ASSERT_NE(os_malloc(64), nullptr);
  EXPECT_DEATH(
      {
        unseen(a + 64, 32, [&] { a[64 + 12] ^= 0x01; });  // the next header's canary
        discard(os_realloc(a, 32));
      },
      "on entry to os_realloc \\(operation 3\\): header canary mismatch at block 0x[0-9a-f]+ "
      "\\(user pointer 0x[0-9a-f]+\\)\n"
      "    0x[0-9a-f]+ size 64 alloc(.|\n)*  > 0x[0-9a-f]+ size 64 alloc prev 0x[0-9a-f]+ next "
      "0x[0-9a-f]+ \\(damaged: canary mismatch, values as read\\)");
}

TEST_F(ApiCheckDeathTest, MappedHeaderReported) {
  check_mode("full");
  auto* m = static_cast<unsigned char*>(os_malloc(200000));
  ASSERT_NE(m, nullptr);
  EXPECT_DEATH(
      {
        unseen(m - 32, 32, [&] { m[-32 + 12] ^= 0x01; });
        discard(os_malloc(10));
      },
      "on entry to os_malloc \\(operation 2\\): header canary mismatch(.|\n)*" +
          std::string(kFatal));
}

// With checks off the same overflow goes unnoticed by os_malloc (it never
// reads that header), but os_heap_check() still finds it.
TEST_F(ApiCheckDeathTest, CheckOffDefersToExplicitHeapCheck) {
  check_mode("off");
  auto* a = static_cast<unsigned char*>(os_malloc(64));
  ASSERT_NE(os_malloc(64), nullptr);
  EXPECT_EXIT(
      {
        unseen(a + 64, 32, [&] { a[64 + 12] ^= 0x01; });
        if (os_malloc(10) == nullptr) _exit(2);
        _exit(os_heap_check() >= 1 ? 3 : 4);
      },
      ::testing::ExitedWithCode(3),
      "osmem: heap inconsistent in os_heap_check: header canary mismatch at block");
}

}  // namespace
}  // namespace osmem
