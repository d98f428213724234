// libosmem-malloc's C functions (src/malloc_api.cpp, built renamed as
// osmem_kit_*: a sanitizer runtime owns the real malloc) from 8 threads:
// random operations of every kind, blocks handed between threads and freed
// by another one, every block's bytes checked before it is reused, and the
// full checker at the end. Under TSan (the tsan preset) any unlocked access
// in the API layer or the engine is a report.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "osmem/malloc.h"

extern "C" {
void* osmem_kit_malloc(size_t);
void osmem_kit_free(void*);
void* osmem_kit_calloc(size_t, size_t);
void* osmem_kit_realloc(void*, size_t);
void* osmem_kit_memalign(size_t, size_t);
void* osmem_kit_aligned_alloc(size_t, size_t);
int osmem_kit_posix_memalign(void**, size_t, size_t);
size_t osmem_kit_malloc_usable_size(void*);
int osmem_kit_malloc_trim(size_t);
}

namespace {

struct Block {
  unsigned char* p;
  std::size_t n;
  unsigned char fill;
};

bool intact(const Block& b) {
  for (std::size_t i = 0; i < b.n; ++i) {
    if (b.p[i] != b.fill) return false;
  }
  return true;
}

// Blocks one thread leaves for another to free.
class Exchange {
 public:
  void put(Block b) {
    std::lock_guard<std::mutex> hold(lock_);
    blocks_.push_back(b);
  }
  bool take(Block& b) {
    std::lock_guard<std::mutex> hold(lock_);
    if (blocks_.empty()) return false;
    b = blocks_.back();
    blocks_.pop_back();
    return true;
  }
  std::vector<Block> drain() {
    std::lock_guard<std::mutex> hold(lock_);
    return std::move(blocks_);
  }

 private:
  std::mutex lock_;
  std::vector<Block> blocks_;
};

TEST(MallocThreads, EightThreadsOfRandomOperationsKeepEveryBlock) {
  constexpr int kThreads = 8;
  constexpr int kSteps = 4000;
  Exchange exchange;
  std::atomic<int> damaged{0}, misaligned{0}, failed{0};
  auto worker = [&](int id) {
    std::mt19937_64 rng(1000 + id);
    std::vector<Block> mine;
    for (int step = 0; step < kSteps; ++step) {
      const unsigned op = rng() % 12;
      const auto fill = static_cast<unsigned char>(id * 31 + step);
      const std::size_t n = rng() % 4 == 0 ? rng() % (300 << 10) : rng() % 512;
      if (op < 5 || mine.empty()) {
        void* p = nullptr;
        switch (op) {
          case 0:
            p = osmem_kit_calloc(1, n);
            break;
          case 1:
            p = osmem_kit_memalign(std::size_t{64} << (rng() % 8), n);
            break;
          case 2:
            if (osmem_kit_posix_memalign(&p, 4096, n) != 0) p = nullptr;
            break;
          default:
            p = osmem_kit_malloc(n);
        }
        if (p == nullptr) {
          ++failed;
          continue;
        }
        if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) ++misaligned;
        if (osmem_kit_malloc_usable_size(p) < n) ++damaged;
        std::memset(p, fill, n);
        mine.push_back({static_cast<unsigned char*>(p), n, fill});
        continue;
      }
      const std::size_t i = rng() % mine.size();
      Block b = mine[i];
      mine[i] = mine.back();
      mine.pop_back();
      if (!intact(b)) ++damaged;
      if (op < 7) {
        osmem_kit_free(b.p);
      } else if (op < 9) {
        auto* q = static_cast<unsigned char*>(osmem_kit_realloc(b.p, n + 1));
        if (q == nullptr) {
          ++failed;
          continue;
        }
        const Block kept{q, b.n < n + 1 ? b.n : n + 1, b.fill};
        if (!intact(kept)) ++damaged;
        std::memset(q, fill, n + 1);
        mine.push_back({q, n + 1, fill});
      } else if (op < 11) {
        exchange.put(b);  // someone else frees it
        Block other;
        if (exchange.take(other)) {
          if (!intact(other)) ++damaged;
          osmem_kit_free(other.p);
        }
      } else {
        osmem_kit_free(b.p);
        osmem_kit_malloc_trim(0);
      }
    }
    for (const Block& b : mine) {
      if (!intact(b)) ++damaged;
      osmem_kit_free(b.p);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& t : threads) t.join();
  for (const Block& b : exchange.drain()) {
    EXPECT_TRUE(intact(b));
    osmem_kit_free(b.p);
  }
  EXPECT_EQ(damaged.load(), 0) << "a block's bytes changed while it was live";
  EXPECT_EQ(misaligned.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(osmem_malloc_heap_check(), 0);
  struct os_heap_stats s {};
  ASSERT_EQ(osmem_malloc_heap_stats(&s), 0);
  EXPECT_EQ(s.heap_bytes_in_use, 0u);
  EXPECT_EQ(s.mapped_blocks, 0u);
}

}  // namespace
