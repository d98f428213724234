// The engine under MallocConfig (docs/contract.md, part II), over the fake
// source: alignment, malloc(0), aligned carving, the growth step, trimming,
// mremap of mapped blocks, realloc of a freed block, and a long random run
// with the full checker and the blocks' contents checked after every step.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "fake_source.hpp"
#include "heap.hpp"

namespace osmem {
namespace {

using MHeap = Heap<FakeSource, MallocConfig>;
constexpr std::size_t KiB = 1024;

struct HeapError {
  ErrorKind kind;
  std::string operation;
  const void* address;
};
void throwing_handler(ErrorKind kind, const char* operation, const void* address) {
  throw HeapError{kind, operation, address};
}

std::uintptr_t addr(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p);
}

class MallocPolicy : public ::testing::Test {
 protected:
  MallocPolicy() : heap_(source_, 0x1234) {
    heap_.set_error_handler(throwing_handler);
    heap_.set_operation_names(true);
  }

  // The checker's verdict, with the violations named on failure.
  void expect_consistent(const char* when) {
    Violation v[8];
    const std::size_t n = heap_.check(v, 8);
    std::string names;
    for (std::size_t i = 0; i < n && i < 8; ++i) names += std::string(invariant_name(v[i].invariant)) + " ";
    EXPECT_EQ(n, 0u) << when << ": " << names;
  }
  struct ::os_heap_stats stats() const {
    struct ::os_heap_stats s{};
    heap_.stats(&s);
    return s;
  }

  FakeSource source_;
  MHeap heap_;
};

TEST_F(MallocPolicy, EveryPointerIs16AlignedAndSizesRoundTo16) {
  std::vector<void*> live;
  for (std::size_t n : {1, 7, 8, 9, 15, 16, 17, 24, 31, 33, 100, 4095, 4096, 130000, 200000}) {
    void* p = heap_.malloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(addr(p) % 16, 0u) << "malloc(" << n << ")";
    EXPECT_EQ(heap_.usable_size(p) % 16, 0u) << n;
    EXPECT_GE(heap_.usable_size(p), n);
    live.push_back(p);
  }
  // The SSE case: 24 bytes, then 32: the second must be 16-aligned too.
  void* a = heap_.malloc(24);
  void* b = heap_.malloc(32);
  EXPECT_EQ(addr(a) % 16, 0u);
  EXPECT_EQ(addr(b) % 16, 0u);
  expect_consistent("after mallocs");
  for (void* p : live) heap_.free(p);
  heap_.free(a);
  heap_.free(b);
  expect_consistent("after frees");
}

TEST_F(MallocPolicy, ZeroBytesIsAUniqueFreeablePointer) {
  std::set<void*> seen;
  for (int i = 0; i < 100; ++i) {
    void* p = heap_.malloc(0);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(seen.insert(p).second) << "malloc(0) returned a pointer twice";
  }
  void* c = heap_.calloc(0, 10);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(seen.insert(c).second);
  void* r = heap_.realloc(nullptr, 0);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(seen.insert(r).second);
  for (void* p : seen) heap_.free(p);
  expect_consistent("after freeing the zero-size blocks");
  EXPECT_EQ(stats().heap_blocks - stats().free_blocks, 0u);
}

TEST_F(MallocPolicy, ReallocToZeroFreesAndReturnsNull) {
  void* p = heap_.malloc(100);
  EXPECT_EQ(heap_.realloc(p, 0), nullptr);
  EXPECT_EQ(stats().heap_bytes_in_use, 0u);
  try {
    heap_.free(p);
    ADD_FAILURE() << "a free after realloc(p, 0) was not a double free";
  } catch (const HeapError& e) {
    EXPECT_EQ(e.kind, ErrorKind::DoubleFree);
    EXPECT_EQ(e.operation, "free");
  }
}

TEST_F(MallocPolicy, ReallocOfAFreedBlockIsAUseAfterFree) {
  void* keep = heap_.malloc(64);  // keeps p from merging into the top
  void* p = heap_.malloc(64);
  void* guard = heap_.malloc(64);
  heap_.free(p);
  try {
    (void)heap_.realloc(p, 128);
    ADD_FAILURE() << "realloc of a freed block returned";
  } catch (const HeapError& e) {
    EXPECT_EQ(e.kind, ErrorKind::UseAfterFree);
    EXPECT_EQ(e.operation, "realloc");
    EXPECT_EQ(e.address, p);
  }
  heap_.free(keep);
  heap_.free(guard);
}

TEST_F(MallocPolicy, AlignedBlocksAreAlignedAndTheLeadBecomesFree) {
  std::vector<std::pair<void*, std::size_t>> live;
  for (std::size_t align = 32; align <= (std::size_t{1} << 20); align *= 2) {
    for (std::size_t n : {std::size_t{1}, std::size_t{100}, align, 3 * align + 5}) {
      void* filler = heap_.malloc(24);  // shifts the next candidate off alignment
      void* p = heap_.aligned_malloc(align, n);
      ASSERT_NE(p, nullptr) << align << " " << n;
      EXPECT_EQ(addr(p) % align, 0u) << "alignment " << align << ", " << n << " bytes";
      EXPECT_GE(heap_.usable_size(p), n);
      std::memset(p, 0x5a, n);
      live.emplace_back(p, n);
      heap_.free(filler);
      expect_consistent("after an aligned allocation");
    }
  }
  for (auto [p, n] : live) {
    const auto* bytes = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(bytes[i], 0x5a) << "byte " << i;
    heap_.free(p);
  }
  expect_consistent("after freeing the aligned blocks");
  EXPECT_EQ(stats().heap_bytes_in_use, 0u);
  // Everything merged back: at most one FREE block per segment.
  EXPECT_EQ(stats().free_blocks, stats().heap_segments);
}

TEST_F(MallocPolicy, AlignedCarvingLeavesAFreeLeadingBlock) {
  void* first = heap_.malloc(16);  // the heap starts page-aligned: move off it
  void* p = heap_.aligned_malloc(4096, 100);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(addr(p) % 4096, 0u);
  const BlockMeta h = read_header(BlockMeta::from_payload(p));
  ASSERT_NE(h.prev, nullptr);
  const BlockMeta lead = read_header(h.prev);
  EXPECT_EQ(lead.status, Status::Free) << "the bytes before the aligned block were not freed";
  EXPECT_EQ(reinterpret_cast<std::byte*>(h.prev) + kHeaderSize + lead.size,
            reinterpret_cast<std::byte*>(BlockMeta::from_payload(p)));
  heap_.free(p);
  heap_.free(first);
  expect_consistent("after");
}

TEST_F(MallocPolicy, HeapGrowsInStepsOfAtLeast128KiB) {
  std::vector<void*> live;
  for (int i = 0; i < 4000; ++i) live.push_back(heap_.malloc(100));  // 4000 * 144 = 562 KiB
  const struct ::os_heap_stats s = stats();
  // 128 KiB preallocated, then 128 KiB steps: 562 KiB needs 1 + 4 calls;
  // exact growth would have made one per block past the first 128 KiB.
  EXPECT_LE(s.sbrk_calls, 6u);
  EXPECT_GE(s.heap_span, 4000u * 144);
  for (void* p : live) heap_.free(p);
  expect_consistent("after");
}

TEST_F(MallocPolicy, FreeingTheTopGivesMemoryBack) {
  std::vector<void*> live;
  for (int i = 0; i < 100; ++i) live.push_back(heap_.malloc(10 * KiB));  // ~1 MiB of heap
  const std::size_t peak = source_.break_offset();
  EXPECT_GE(peak, 100 * 10 * KiB);
  for (void* p : live) heap_.free(p);
  expect_consistent("after the frees");
  const struct ::os_heap_stats s = stats();
  EXPECT_GE(s.trims, 1u);
  // What remains is the top pad (128 KiB) and at most a page more.
  EXPECT_LE(source_.break_offset(), 128 * KiB + 2 * 4096) << "peak was " << peak;
  EXPECT_EQ(s.heap_span, source_.break_offset());
  // And the heap still works above the lowered break.
  void* p = heap_.malloc(300 * KiB / 3);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, 100 * KiB);
  heap_.free(p);
  expect_consistent("after regrowth");
}

TEST_F(MallocPolicy, NoTrimWhenSomeoneElseMovedTheBreak) {
  std::vector<void*> live;
  for (int i = 0; i < 50; ++i) live.push_back(heap_.malloc(10 * KiB));
  ASSERT_TRUE(source_.foreign_extend(4096));  // another component's sbrk above the heap
  const std::size_t brk = source_.break_offset();
  for (void* p : live) heap_.free(p);
  EXPECT_EQ(source_.break_offset(), brk) << "the break was lowered over someone else's memory";
  EXPECT_EQ(stats().trims, 0u);
  expect_consistent("after");
}

TEST_F(MallocPolicy, MallocTrimGivesBackDownToThePad) {
  void* a = heap_.malloc(100 * KiB);
  void* b = heap_.malloc(100 * KiB);
  heap_.free(b);  // 100 KiB FREE at the top: under the automatic threshold
  const std::size_t before = source_.break_offset();
  EXPECT_TRUE(heap_.trim(0));
  EXPECT_LT(source_.break_offset(), before);
  EXPECT_LE(stats().heap_bytes_free, 4096u + 16);
  EXPECT_FALSE(heap_.trim(0)) << "nothing left to give back";
  heap_.free(a);
  expect_consistent("after");
}

TEST_F(MallocPolicy, MappedBlocksReallocWithMremap) {
  char* p = static_cast<char*>(heap_.malloc(200 * KiB));
  ASSERT_NE(p, nullptr);
  for (std::size_t i = 0; i < 200 * KiB; ++i) p[i] = static_cast<char>(i * 7);
  // Within the pages it spans: same pointer, no system call.
  const std::size_t calls = stats().mremap_calls;
  const std::size_t cap = heap_.usable_size(p);
  EXPECT_EQ(heap_.realloc(p, cap), p);
  EXPECT_EQ(stats().mremap_calls, calls);
  // Growing: one mremap, contents kept (the fake always moves a growth).
  char* q = static_cast<char*>(heap_.realloc(p, 1024 * KiB));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(stats().mremap_calls, calls + 1);
  EXPECT_EQ(stats().mmap_calls, 1u) << "grew by mapping anew instead of mremap";
  for (std::size_t i = 0; i < 200 * KiB; ++i) ASSERT_EQ(q[i], static_cast<char>(i * 7)) << i;
  // Shrinking, still above the threshold: in place.
  char* r = static_cast<char*>(heap_.realloc(q, 300 * KiB));
  EXPECT_EQ(r, q);
  EXPECT_EQ(heap_.usable_size(r), 300 * KiB + 4096 - kHeaderSize);
  expect_consistent("after mremaps");
  // Below the threshold: back to the heap.
  char* s = static_cast<char*>(heap_.realloc(r, 1000));
  EXPECT_EQ(stats().mapped_blocks, 0u);
  for (std::size_t i = 0; i < 1000; ++i) ASSERT_EQ(s[i], static_cast<char>(i * 7)) << i;
  heap_.free(s);
  EXPECT_EQ(source_.misuse_count(), 0u);
  expect_consistent("after");
}

TEST_F(MallocPolicy, FailedMremapMovesTheBlockOrKeepsIt) {
  char* p = static_cast<char*>(heap_.malloc(200 * KiB));
  ASSERT_NE(p, nullptr);
  std::memset(p, 3, 200 * KiB);
  source_.fail_next_map();  // the mremap: malloc, copy, free instead
  char* q = static_cast<char*>(heap_.realloc(p, 400 * KiB));
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p);
  EXPECT_EQ(q[0], 3);
  EXPECT_EQ(q[200 * KiB - 1], 3);
  EXPECT_EQ(stats().mapped_blocks, 1u);
  // The mremap and the fallback mmap both fail: NULL, ENOMEM, q intact.
  // Map calls so far: the mmap, the failed mremap, the fallback mmap.
  source_.fail_map_call(4);  // the mremap
  source_.fail_map_call(5);  // the fallback mmap
  errno = 0;
  EXPECT_EQ(heap_.realloc(q, 800 * KiB), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(q[200 * KiB - 1], 3);
  // A shrink whose mremap fails keeps the block where it is.
  source_.fail_next_map();
  EXPECT_EQ(heap_.realloc(q, 150 * KiB), q);
  heap_.free(q);
  EXPECT_EQ(source_.misuse_count(), 0u);
  expect_consistent("after");
}

TEST_F(MallocPolicy, FailuresReturnNullWithEnomem) {
  errno = 0;
  EXPECT_EQ(heap_.malloc(SIZE_MAX - 8), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  // Sizes that pass the request limit but whose whole pages would not fit
  // in a size_t: NULL, not a short mapping.
  for (std::size_t n : {MHeap::kMaxRequest, MHeap::kMaxRequest - 4096, MHeap::kMaxRequest - 5000}) {
    errno = 0;
    EXPECT_EQ(heap_.malloc(n), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM);
  }
  void* big = heap_.malloc(200 * KiB);
  errno = 0;
  EXPECT_EQ(heap_.realloc(big, MHeap::kMaxRequest - 100), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  heap_.free(big);
  EXPECT_EQ(source_.misuse_count(), 0u);
  errno = 0;
  EXPECT_EQ(heap_.aligned_malloc(64, SIZE_MAX - 100), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(heap_.calloc(SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

// Random operations, with every block's bytes and the whole checker
// verified after each step: what the malloc policy must keep whatever the
// sequence.
TEST_F(MallocPolicy, RandomOperationsKeepContentsAndInvariants) {
  std::mt19937_64 rng(20261130);
  struct Live {
    std::size_t n;
    unsigned char fill;
  };
  std::map<void*, Live> live;
  auto size = [&]() -> std::size_t {
    switch (rng() % 4) {
      case 0:
        return rng() % 64;
      case 1:
        return rng() % 4096;
      case 2:
        return rng() % (160 * KiB);
      default:
        return rng() % (600 * KiB);
    }
  };
  auto verify = [&](void* p, const Live& l) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < l.n; ++i) {
      if (b[i] != l.fill) {
        ADD_FAILURE() << "byte " << i << " of a " << l.n << "-byte block changed";
        return false;
      }
    }
    return true;
  };
  for (int step = 0; step < 3000; ++step) {
    const unsigned op = rng() % 10;
    const unsigned char fill = static_cast<unsigned char>(step);
    if (op < 4 || live.empty()) {
      const std::size_t n = size();
      void* p = nullptr;
      if (op == 0) {
        p = heap_.aligned_malloc(std::size_t{32} << (rng() % 12), n);
      } else if (op == 1) {
        p = heap_.calloc(1, n);
        if (p != nullptr) {
          const auto* b = static_cast<const unsigned char*>(p);
          for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(b[i], 0) << "calloc byte " << i;
        }
      } else {
        p = heap_.malloc(n);
      }
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(addr(p) % 16, 0u);
      ASSERT_EQ(live.count(p), 0u) << "a live block handed out twice";
      std::memset(p, fill, n);
      live[p] = {n, fill};
    } else {
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      ASSERT_TRUE(verify(it->first, it->second));
      if (op < 7) {
        heap_.free(it->first);
        live.erase(it);
      } else {
        const std::size_t n = size();
        const Live old = it->second;
        void* q = heap_.realloc(it->first, n);
        live.erase(it);
        if (n == 0) {
          ASSERT_EQ(q, nullptr);
          continue;
        }
        ASSERT_NE(q, nullptr);
        ASSERT_EQ(addr(q) % 16, 0u);
        ASSERT_TRUE(verify(q, {n < old.n ? n : old.n, old.fill})) << "realloc lost bytes";
        std::memset(q, fill, n);
        live[q] = {n, fill};
      }
    }
    if (step % 10 == 0) {
      Violation v[4];
      ASSERT_EQ(heap_.check(v, 4), 0u) << "step " << step << ": " << invariant_name(v[0].invariant);
    }
  }
  for (auto& [p, l] : live) {
    ASSERT_TRUE(verify(p, l));
    heap_.free(p);
  }
  expect_consistent("at the end");
  EXPECT_EQ(stats().heap_bytes_in_use, 0u);
  EXPECT_EQ(stats().mapped_blocks, 0u);
  EXPECT_EQ(source_.misuse_count(), 0u);
  EXPECT_GE(stats().trims, 1u);
  EXPECT_GE(stats().mremap_calls, 1u);
}

}  // namespace
}  // namespace osmem
