// The free-block index: exact best fit (checked against the model by the
// lockstep and differential tests), bounded search cost, its invariants in
// the checker, its records outside the heap (a free payload is the user's),
// and corruption of its records diagnosed rather than followed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>
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

// A use after free writes into a FREE payload: that is the user's memory
// now (rule 15), the index is elsewhere, so nothing notices and nothing
// changes: the checker stays silent, later searches choose as before, and
// the bytes stay as written until the block is handed out again.
TEST(FreeTree, AWriteIntoAFreePayloadLeavesTheIndexAlone) {
  const tool::Untracked untracked;  // the test writes into free payloads
  FakeSource src;
  Heap<FakeSource> heap(src, 0xfeed);
  std::vector<void*> live;
  for (int i = 0; i < 64; ++i) live.push_back(heap.malloc(48));
  for (std::size_t i = 0; i < live.size(); i += 2) heap.free(live[i]);
  for (std::size_t i = 0; i < live.size(); i += 2) std::memset(live[i], 0xa5, 48);
  Violation v[4];
  EXPECT_EQ(heap.check(v, 4), 0u);
  // The lowest free 48-byte block is chosen first, then the next; the
  // others keep the bytes written into them.
  EXPECT_EQ(heap.malloc(48), live[0]);
  EXPECT_EQ(heap.malloc(48), live[2]);
  for (std::size_t i = 4; i < live.size() - 2; i += 2) {
    const auto* bytes = static_cast<const unsigned char*>(live[i]);
    for (int j = 0; j < 48; ++j) ASSERT_EQ(bytes[j], 0xa5) << "block " << i << " byte " << j;
  }
  EXPECT_EQ(heap.check(v, 4), 0u);
}

// The records live in the source's metadata area. A record whose child
// index points past the records ever handed out, or whose cached key no
// longer matches its block's header, is reported by the checker and
// diagnosed by the next operation that walks there, never followed.
TEST(FreeTree, CorruptedRecordsAreReportedNotFollowed) {
  FakeSource src;
  Heap<FakeSource> heap(src, 0xfeed);
  heap.set_error_handler(throwing_handler);
  std::vector<void*> live;
  for (int i = 0; i < 64; ++i) live.push_back(heap.malloc(48));
  for (std::size_t i = 0; i < live.size(); i += 2) heap.free(live[i]);
  const RecordPool& pool = heap.free_index().records();
  ASSERT_GE(pool.in_use(), 32u);
  auto* records = static_cast<BlockRecord*>(src.metadata_area().base);
  for (std::size_t i = 0; i < pool.high_water(); ++i) {
    if (records[i].block != 0) records[i].left = records[i].right = 0x7fffffff;
  }
  EXPECT_TRUE(reports_index_mismatch(heap));
  try {
    for (int i = 0; i < 64; ++i) heap.malloc(48);
    FAIL() << "the corrupted index was used without a diagnosis";
  } catch (const Diagnosed& d) {
    EXPECT_EQ(d.kind, ErrorKind::HeapInconsistent);
  }
}

}  // namespace

// The class table (a root and a bit per class) lives in the heap object,
// where a stray write can reach it like any other memory.
struct FreeTreeDamage {
  static FreeTree& of(Heap<FakeSource>& heap) {
    return const_cast<FreeTree&>(heap.free_index());
  }
  static void flip_bit(Heap<FakeSource>& heap, std::size_t c) {
    of(heap).bits_[c / 64] ^= std::uint64_t{1} << (c % 64);
  }
  static std::uint32_t& root(Heap<FakeSource>& heap, std::size_t c) { return of(heap).roots_[c]; }
};

namespace {

// Every kind of damage to the class table: the checker reports an index
// mismatch, and the next search either still finds a block that fits or
// stops with a diagnosis, never following a root that is not there.
TEST(FreeTree, CheckerReportsEveryKindOfClassTableDamage) {
  const std::size_t c48 = FreeTree::class_of(48);
  const std::size_t c96 = FreeTree::class_of(96);
  const std::size_t empty = FreeTree::class_of(200);  // no free block of 200 bytes
  struct Damage {
    const char* what;
    void (*apply)(Heap<FakeSource>& heap, std::size_t c48, std::size_t c96, std::size_t empty);
  };
  const Damage damages[] = {
      {"the bit of an occupied class cleared",
       [](Heap<FakeSource>& h, std::size_t c48, std::size_t, std::size_t) {
         FreeTreeDamage::flip_bit(h, c48);
       }},
      {"the bit of an empty class set",
       [](Heap<FakeSource>& h, std::size_t, std::size_t, std::size_t empty) {
         FreeTreeDamage::flip_bit(h, empty);
       }},
      {"an occupied class's root cleared, its bit left",
       [](Heap<FakeSource>& h, std::size_t c48, std::size_t, std::size_t) {
         FreeTreeDamage::root(h, c48) = 0;
       }},
      {"an empty class given another class's root and its bit",
       [](Heap<FakeSource>& h, std::size_t c48, std::size_t, std::size_t empty) {
         FreeTreeDamage::root(h, empty) = FreeTreeDamage::root(h, c48);
         FreeTreeDamage::flip_bit(h, empty);
       }},
      {"two classes' roots swapped",
       [](Heap<FakeSource>& h, std::size_t c48, std::size_t c96, std::size_t) {
         std::swap(FreeTreeDamage::root(h, c48), FreeTreeDamage::root(h, c96));
       }},
      {"a root past the records handed out",
       [](Heap<FakeSource>& h, std::size_t c48, std::size_t, std::size_t) {
         FreeTreeDamage::root(h, c48) = 0x7fffffff;
       }},
  };
  for (const Damage& d : damages) {
    SCOPED_TRACE(d.what);
    FakeSource src;
    Heap<FakeSource> heap(src, 0xfeed);
    heap.set_error_handler(throwing_handler);
    std::vector<void*> live;
    for (int i = 0; i < 8; ++i) {  // 48, 8, 96, 8: the 8-byte blocks keep the freed ones apart
      for (std::size_t n : {48, 8, 96, 8}) live.push_back(heap.malloc(n));
    }
    for (std::size_t i = 0; i < live.size(); i += 4) {
      heap.free(live[i]);
      heap.free(live[i + 2]);
    }
    Violation v[4];
    ASSERT_EQ(heap.check(v, 4), 0u);
    d.apply(heap, c48, c96, empty);
    EXPECT_TRUE(reports_index_mismatch(heap));
    // The searches that reach the damaged classes: the n bytes a block
    // they return must hold overlap no block in use (the 8-byte ones, and
    // those returned before).
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> in_use;
    for (std::size_t i = 1; i < live.size(); i += 2) {
      const auto at = reinterpret_cast<std::uintptr_t>(live[i]);
      in_use.emplace_back(at, at + 8);
    }
    for (std::size_t n : {std::size_t{40}, std::size_t{48}, std::size_t{96}, std::size_t{200},
                          std::size_t{48}, std::size_t{96}}) {
      try {
        void* p = heap.malloc(n);
        ASSERT_NE(p, nullptr);
        const auto at = reinterpret_cast<std::uintptr_t>(p);
        for (const auto& [from, to] : in_use) {
          EXPECT_TRUE(at + n <= from || to <= at)
              << "malloc(" << n << ") returned " << p << ", over a block in use";
        }
        in_use.emplace_back(at, at + n);
      } catch (const Diagnosed& e) {
        EXPECT_EQ(e.kind, ErrorKind::HeapInconsistent);
        break;  // the heap stopped; nothing after this may run on it
      }
    }
  }
}

TEST(FreeTree, CheckerComparesEveryRecordKeyWithItsHeader) {
  FakeSource src;
  Heap<FakeSource> heap(src, 0xfeed);
  void* a = heap.malloc(100);
  heap.malloc(8);
  ASSERT_NE(a, nullptr);
  heap.free(a);
  Violation v[4];
  ASSERT_EQ(heap.check(v, 4), 0u);
  auto* records = static_cast<BlockRecord*>(src.metadata_area().base);
  const std::size_t used = heap.free_index().records().high_water();
  BlockRecord* r = nullptr;
  for (std::size_t i = 0; i < used; ++i) {
    if (records[i].block == reinterpret_cast<std::uintptr_t>(BlockMeta::from_payload(a))) {
      r = &records[i];
    }
  }
  ASSERT_NE(r, nullptr) << "no record for the freed block";
  r->size += 8;  // still the same class, so only the key check can notice
  EXPECT_TRUE(reports_index_mismatch(heap));
  r->size -= 8;
  EXPECT_FALSE(reports_index_mismatch(heap));
}

// One record per FREE block, recycled: the statistics say so.
TEST(FreeTree, StatsShowOneRecordPerFreeBlock) {
  FakeSource src;
  Heap<FakeSource> heap(src, 0xfeed);
  std::vector<void*> live;
  for (int i = 0; i < 100; ++i) live.push_back(heap.malloc(24 + 8 * (i % 7)));
  for (std::size_t i = 0; i < live.size(); i += 2) heap.free(live[i]);
  struct os_heap_stats s;
  heap.stats(&s);
  EXPECT_EQ(s.index_record_bytes, 24u);
  EXPECT_EQ(s.index_records, s.free_blocks);
  EXPECT_EQ(s.free_blocks, 51u);  // 50 freed blocks and the tail
  const std::size_t high = s.index_records_max;
  EXPECT_GE(high, s.index_records);
  EXPECT_EQ(s.index_record_capacity, src.limits().index_records);
  EXPECT_EQ(s.heap_span_limit, src.limits().index_records * 40);
  // Freeing the rest merges everything into one block; allocating and
  // freeing again reuses records instead of touching new ones.
  for (std::size_t i = 1; i < live.size(); i += 2) heap.free(live[i]);
  heap.stats(&s);
  EXPECT_EQ(s.index_records, 1u);
  for (std::size_t i = 0; i < live.size(); ++i) live[i] = heap.malloc(24 + 8 * (i % 7));
  for (std::size_t i = 0; i < live.size(); i += 2) heap.free(live[i]);
  heap.stats(&s);
  EXPECT_EQ(s.index_records, 51u);
  EXPECT_EQ(s.index_records_max, high);
}

// Rule 14: with C records the heap's segments hold at most 40 * C bytes; a
// growth past that makes no sbrk and the request is mapped instead.
TEST(FreeTree, HeapGrowthStopsWhereTheRecordsEnd) {
  FakeLimits limits;
  limits.index_records = 4000;  // span limit 160,000 bytes
  FakeSource src(limits);
  Heap<FakeSource> heap(src, 0xfeed);
  void* a = heap.malloc(100000);  // the 128 KiB preallocation, split: 31,008 left
  ASSERT_TRUE(src.in_heap_buffer(a));
  void* b = heap.malloc(40000);  // the free tail grows by 8,992: span 140,064
  ASSERT_TRUE(src.in_heap_buffer(b));
  EXPECT_EQ(src.break_offset(), 140064u);
  void* c = heap.malloc(30000);  // sbrk(30,032) would pass 160,000: mapped, no sbrk
  EXPECT_FALSE(src.in_heap_buffer(c));
  EXPECT_NE(src.mapping_serial(c), 0u);
  EXPECT_EQ(src.break_offset(), 140064u);
  void* d = heap.malloc(19000);  // sbrk(19,032): span 159,096, still within
  EXPECT_TRUE(src.in_heap_buffer(d));
  EXPECT_EQ(src.break_offset(), 159096u);
  struct os_heap_stats s;
  heap.stats(&s);
  EXPECT_EQ(s.heap_span_limit, 160000u);
  EXPECT_LE(s.heap_span, 160000u);
  Violation v[4];
  EXPECT_EQ(heap.check(v, 4), 0u);
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

// Every kind of damage to the records themselves (they live outside the
// heap, where a stray write from the program can still reach them): the
// checker reports an index mismatch, reads only records it knows to be in
// the pool and headers in memory the heap owns (ASan watches), and ends
// (a cycle stops it).
TEST(FreeTree, CheckerReportsEveryKindOfRecordDamageWithinBounds) {
  struct Damage {
    const char* what;
    // records, records handed out, a FREE block's header, an allocated one's
    void (*apply)(BlockRecord* r, std::size_t used, std::uintptr_t free_header,
                  std::uintptr_t alloc_header);
  };
  const Damage damages[] = {
      {"a key naming memory outside the heap",
       [](BlockRecord* r, std::size_t used, std::uintptr_t, std::uintptr_t) {
         for (std::size_t i = 0; i < used; ++i)
           if (r[i].block != 0) r[i].block = 4096;
       }},
      {"a size of another class",
       [](BlockRecord* r, std::size_t used, std::uintptr_t, std::uintptr_t) {
         for (std::size_t i = 0; i < used; ++i)
           if (r[i].block != 0) r[i].size = 4000;
       }},
      {"a key naming an allocated block",
       [](BlockRecord* r, std::size_t used, std::uintptr_t free_header,
          std::uintptr_t alloc_header) {
         for (std::size_t i = 0; i < used; ++i)
           if (r[i].block == free_header) r[i].block = alloc_header;
       }},
      {"two keys swapped (each names a FREE block, out of order)",
       [](BlockRecord* r, std::size_t used, std::uintptr_t, std::uintptr_t) {
         BlockRecord* first = nullptr;
         for (std::size_t i = 0; i < used; ++i) {
           if (r[i].block == 0 || r[i].size != 48) continue;
           if (first == nullptr) {
             first = &r[i];
           } else {
             std::swap(first->block, r[i].block);
             return;
           }
         }
       }},
      {"every record its own left child (a cycle)",
       [](BlockRecord* r, std::size_t used, std::uintptr_t, std::uintptr_t) {
         for (std::size_t i = 0; i < used; ++i)
           if (r[i].block != 0) r[i].left = static_cast<std::uint32_t>(i + 1);
       }},
      {"a subtree cut off (fewer nodes than records)",
       [](BlockRecord* r, std::size_t used, std::uintptr_t, std::uintptr_t) {
         for (std::size_t i = 0; i < used; ++i) {
           if (r[i].block != 0 && (r[i].left != 0 || r[i].right != 0)) {
             r[i].left = r[i].right = 0;
             return;
           }
         }
       }},
      {"a child index past the records handed out",
       [](BlockRecord* r, std::size_t used, std::uintptr_t, std::uintptr_t) {
         for (std::size_t i = 0; i < used; ++i)
           if (r[i].block != 0 && r[i].left == 0) {
             r[i].left = static_cast<std::uint32_t>(used + 5);
             return;
           }
       }},
      {"every 48-byte record in one chain that links each next one twice: the walk's stack "
       "outgrows its bound",
       [](BlockRecord* r, std::size_t used, std::uintptr_t, std::uintptr_t) {
         // The class's root is the record no other record names as a child.
         std::vector<bool> child(used + 1, false);
         std::vector<std::uint32_t> ids;
         std::vector<std::uintptr_t> keys;
         for (std::size_t i = 0; i < used; ++i) {
           if (r[i].block == 0 || r[i].size != 48) continue;
           child[r[i].left] = child[r[i].right] = true;
           ids.push_back(static_cast<std::uint32_t>(i + 1));
           keys.push_back(r[i].block);
         }
         std::sort(keys.begin(), keys.end());
         for (std::size_t k = 0; k < ids.size(); ++k) {
           if (!child[ids[k]]) std::swap(ids[k], ids[0]);  // the root first
         }
         // root -> next (as both children) -> ...: keys ascending, each a
         // real FREE block. The walk keeps one pending frame per level.
         for (std::size_t k = 0; k < ids.size(); ++k) {
           BlockRecord& n = r[ids[k] - 1];
           n.block = keys[k];
           n.left = n.right = k + 1 < ids.size() ? ids[k + 1] : 0;
         }
       }},
      {"a recycled record that names a block",
       [](BlockRecord* r, std::size_t used, std::uintptr_t free_header, std::uintptr_t) {
         for (std::size_t i = 0; i < used; ++i)
           if (r[i].block == 0) r[i].block = free_header;
       }},
      {"the recycled records' list in a cycle",
       [](BlockRecord* r, std::size_t used, std::uintptr_t, std::uintptr_t) {
         for (std::size_t i = 0; i < used; ++i)
           if (r[i].block == 0) r[i].left = static_cast<std::uint32_t>(i + 1);
       }},
  };
  for (const Damage& d : damages) {
    SCOPED_TRACE(d.what);
    FakeSource src;
    Heap<FakeSource> heap(src, 0xfeed);
    std::vector<void*> live;
    // 210 FREE blocks of 48 bytes, more than the tree's depth bound.
    for (int i = 0; i < 432; ++i) live.push_back(heap.malloc(48));
    for (std::size_t i = 0; i < live.size(); i += 2) heap.free(live[i]);
    // Take some back, so that recycled records sit on the pool's free list.
    for (int i = 0; i < 6; ++i) ASSERT_NE(heap.malloc(48), nullptr);
    const RecordPool& pool = heap.free_index().records();
    ASSERT_NE(pool.free_head(), 0u) << "no recycled record to damage";
    ASSERT_FALSE(reports_index_mismatch(heap));
    const auto free_header = reinterpret_cast<std::uintptr_t>(BlockMeta::from_payload(live[62]));
    const auto alloc_header = reinterpret_cast<std::uintptr_t>(BlockMeta::from_payload(live[63]));
    static_assert(FreeTree::kMaxDepth < 210);
    d.apply(static_cast<BlockRecord*>(src.metadata_area().base), pool.high_water(), free_header,
            alloc_header);
    EXPECT_TRUE(reports_index_mismatch(heap));
    // The heap's checker walks the tree itself only when its list walk found
    // nothing (most of these damages it sees already, as a FREE block its
    // key does not find): the tree's own check must see each of them too.
    const std::byte* lo = src.heap_base();
    const std::byte* hi = lo + src.break_offset();
    std::size_t reported = 0;
    heap.free_index().check(
        heap.sealer(),
        [&](const BlockMeta* b) {
          const auto* p = reinterpret_cast<const std::byte*>(b);
          return p >= lo && p + kHeaderSize <= hi;
        },
        [&](Invariant inv, const void*) {
          EXPECT_EQ(inv, Invariant::IndexMismatch);
          ++reported;
        });
    EXPECT_GT(reported, 0u);
  }
}

}  // namespace
}  // namespace osmem
