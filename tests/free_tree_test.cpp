// The free-block index: exact best fit (checked against the model by the
// lockstep and differential tests), bounded search cost, its invariants in
// the checker, and corruption of its in-payload links diagnosed rather than
// followed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "fake_source.hpp"
#include "heap.hpp"

namespace osmem {
namespace {

struct Diagnosed : std::runtime_error {
  ErrorKind kind;
  explicit Diagnosed(ErrorKind k) : std::runtime_error(error_name(k)), kind(k) {}
};

void throwing_handler(ErrorKind kind, const char*, const void*) {
  throw Diagnosed(kind);
}

// Whether the checker reports an index mismatch anywhere.
bool reports_index_mismatch(const Heap<FakeSource>& heap) {
  Violation v[8];
  const std::size_t found = heap.check(v, 8);
  for (std::size_t i = 0; i < found && i < 8; ++i) {
    if (v[i].invariant == Invariant::IndexMismatch) return true;
  }
  return false;
}

struct Rng {
  std::uint64_t x;
  std::uint64_t next() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
};

TEST(FreeTree, ClassesAreMonotonicAndExactUpTo4096) {
  std::size_t prev = 0;
  for (std::size_t s = 8; s <= 200000; s += 8) {
    const std::size_t c = FreeTree::class_of(s);
    ASSERT_LT(c, FreeTree::kClasses);
    ASSERT_GE(c, prev) << s;
    if (s <= 4096) {
      ASSERT_EQ(c, s / 8 - 1);
    }
    if (s <= 4096 && s > 8) {
      ASSERT_EQ(c, prev + 1) << s;
    }
    prev = c;
  }
  EXPECT_LT(FreeTree::class_of(SIZE_MAX & ~std::size_t{7}), FreeTree::kClasses);
}

// The number of blocks a search inspects grows with log n, not n: a count,
// so it is deterministic and independent of the machine's speed.
TEST(FreeTree, SearchVisitsGrowLogarithmically) {
  FakeSource src(FakeLimits{std::size_t{256} << 20, std::size_t{64} << 20, 64});
  Heap<FakeSource> heap(src, 0xfeed);
  Rng r{42};
  std::vector<void*> live;
  for (int i = 0; i < 200000; ++i) live.push_back(heap.malloc(8 + r.next() % 1024));
  // Free every other block: 100k free blocks of mixed sizes, none adjacent.
  for (std::size_t i = 0; i < live.size(); i += 2) heap.free(live[i]);
  struct os_heap_stats before;
  heap.stats(&before);
  ASSERT_GE(before.free_blocks, 100000u);
  for (int i = 0; i < 20000; ++i) {
    void* p = heap.malloc(8 + r.next() % 4096);
    ASSERT_NE(p, nullptr);
    heap.free(p);
  }
  struct os_heap_stats after;
  heap.stats(&after);
  const double searches = double(after.searches - before.searches);
  const double mean = double(after.search_visits - before.search_visits) / searches;
  const double log2n = std::log2(double(before.free_blocks));
  EXPECT_LE(mean, 3 * log2n) << "mean visits per search";
  EXPECT_LE(double(after.search_visits_max), 6 * log2n) << "max visits per search";
  // Insertions and removals walk the same trees: bounded the same way.
  const double walks = double(after.index_operations - before.index_operations);
  EXPECT_LE(double(after.index_visits - before.index_visits) / walks, 3 * log2n);
  EXPECT_LE(double(after.index_visits_max), 6 * log2n) << "max visits per index operation";
  Violation v[4];
  EXPECT_EQ(heap.check(v, 4), 0u);
}

// Smashing a free block's payload (where its tree links live), as a use
// after free would, is caught by the checker and diagnosed by the next
// operation that walks there, never followed into another block.
TEST(FreeTree, CorruptedLinksAreReportedNotFollowed) {
  const tool::Untracked untracked;  // the test writes into free payloads
  FakeSource src;
  Heap<FakeSource> heap(src, 0xfeed);
  heap.set_error_handler(throwing_handler);
  std::vector<void*> live;
  for (int i = 0; i < 64; ++i) live.push_back(heap.malloc(48));
  for (std::size_t i = 0; i < live.size(); i += 2) heap.free(live[i]);
  // Several free blocks of size 48 share one class tree; point one's links
  // at an allocated block.
  std::uint32_t bogus[2];
  std::memset(bogus, 0, sizeof bogus);
  bogus[0] = 3;  // offset of some header inside an allocated block
  bogus[1] = 3;
  for (std::size_t i = 0; i < live.size(); i += 2) std::memcpy(live[i], bogus, sizeof bogus);
  EXPECT_TRUE(reports_index_mismatch(heap));
  try {
    for (int i = 0; i < 64; ++i) heap.malloc(48);
    FAIL() << "the corrupted index was used without a diagnosis";
  } catch (const Diagnosed& d) {
    EXPECT_EQ(d.kind, ErrorKind::HeapInconsistent);
  }
}

TEST(FreeTree, CheckerSeesAFreeBlockMissingFromTheIndex) {
  const tool::Untracked untracked;  // the test forges a header
  FakeSource src;
  Heap<FakeSource> heap(src, 0xfeed);
  void* a = heap.malloc(100);
  heap.malloc(8);
  void* c = heap.malloc(100);
  heap.malloc(8);
  heap.free(a);
  // Mark an allocated block FREE behind the index's back (resealed, so only
  // the index invariant can notice).
  BlockMeta* b = BlockMeta::from_payload(c);
  b->status = Status::Free;
  heap.sealer().seal(b);
  EXPECT_TRUE(reports_index_mismatch(heap));
}

}  // namespace
}  // namespace osmem
