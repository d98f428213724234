// Thread safety of the process-wide heap: concurrent random workloads whose
// every block carries a fill pattern checked before it is freed or resized,
// blocks handed between threads, and fork() while other threads allocate
// (the pthread_atfork handlers must leave the child's lock usable).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "osmem/osmem.h"

namespace {

constexpr std::size_t kMaxSize = 300 * 1024;

// Block contents are a window of this table starting at the block's tag, so
// filling and verifying are one memcpy/memcmp (cheap under TSan too).
const unsigned char* pattern() {
  static const std::vector<unsigned char> table = [] {
    std::vector<unsigned char> t(kMaxSize + 256);
    for (std::size_t i = 0; i < t.size(); ++i) {
      t[i] = static_cast<unsigned char>((i * 131) ^ (i >> 9));
    }
    return t;
  }();
  return table.data();
}

const unsigned char* zeros() {
  static const std::vector<unsigned char> table(kMaxSize, 0);
  return table.data();
}

struct Block {
  unsigned char* p;
  std::size_t n;
  unsigned tag;  // 0..255
};

bool intact(const Block& b) {
  return std::memcmp(b.p, pattern() + b.tag, b.n) == 0;
}

void stamp(const Block& b) {
  std::memcpy(b.p, pattern() + b.tag, b.n);
}

std::size_t random_size(std::mt19937_64& rng) {
  const std::uint64_t r = rng() % 100;
  if (r < 70) return 1 + rng() % 512;
  if (r < 93) return 513 + rng() % (16 * 1024);
  return 16 * 1024 + rng() % (kMaxSize - 16 * 1024 + 1);
}

// What the workers count instead of asserting (gtest assertions are
// thread-safe, but a count keeps a broken allocator from flooding the log).
struct Errors {
  std::atomic<int> null_result{0};
  std::atomic<int> misaligned{0};
  std::atomic<int> corrupted{0};
  std::atomic<int> calloc_not_zero{0};
};

// Blocks passed between threads, so that frees happen on a thread other
// than the allocating one.
struct Exchange {
  std::mutex lock;
  std::vector<Block> blocks;
};

void worker(std::uint64_t seed, int ops, Errors& errors, Exchange& exchange,
            const std::atomic<bool>* stop) {
  std::mt19937_64 rng(seed);
  std::vector<Block> live;
  auto take = [&](unsigned char* p) {
    if (p == nullptr) {
      ++errors.null_result;
      return false;
    }
    if (reinterpret_cast<std::uintptr_t>(p) % 8 != 0) ++errors.misaligned;
    return true;
  };
  for (int op = 0; op < ops || (stop != nullptr && !stop->load()); ++op) {
    if (stop != nullptr && stop->load()) break;
    const std::uint64_t r = rng() % 100;
    if (live.empty() || (r < 35 && live.size() < 48)) {
      const std::size_t n = random_size(rng);
      auto* p = static_cast<unsigned char*>(os_malloc(n));
      if (!take(p)) continue;
      Block b{p, n, static_cast<unsigned>(rng() % 256)};
      stamp(b);
      live.push_back(b);
    } else if (r < 45 && live.size() < 48) {
      const std::size_t nmemb = 1 + rng() % 8;
      const std::size_t n = random_size(rng) / nmemb + 1;
      auto* p = static_cast<unsigned char*>(os_calloc(nmemb, n));
      if (!take(p)) continue;
      if (std::memcmp(p, zeros(), nmemb * n) != 0) ++errors.calloc_not_zero;
      Block b{p, nmemb * n, static_cast<unsigned>(rng() % 256)};
      stamp(b);
      live.push_back(b);
    } else if (r < 65) {
      Block& b = live[rng() % live.size()];
      if (!intact(b)) ++errors.corrupted;
      const std::size_t n = random_size(rng);
      auto* q = static_cast<unsigned char*>(os_realloc(b.p, n));
      if (!take(q)) continue;  // the old block stays live and intact
      // The common prefix moved with the block.
      if (std::memcmp(q, pattern() + b.tag, n < b.n ? n : b.n) != 0) ++errors.corrupted;
      b = Block{q, n, b.tag};
      stamp(b);
    } else if (r < 72) {
      // Hand a block to whoever takes it next, or take one.
      std::lock_guard<std::mutex> guard(exchange.lock);
      if (rng() % 2 == 0 && exchange.blocks.size() < 64) {
        const std::size_t k = rng() % live.size();
        exchange.blocks.push_back(live[k]);
        live[k] = live.back();
        live.pop_back();
      } else if (!exchange.blocks.empty()) {
        live.push_back(exchange.blocks.back());
        exchange.blocks.pop_back();
      }
    } else {
      const std::size_t k = rng() % live.size();
      if (!intact(live[k])) ++errors.corrupted;
      os_free(live[k].p);
      live[k] = live.back();
      live.pop_back();
    }
  }
  for (const Block& b : live) {
    if (!intact(b)) ++errors.corrupted;
    os_free(b.p);
  }
}

void expect_no_errors(const Errors& errors) {
  EXPECT_EQ(errors.null_result.load(), 0);
  EXPECT_EQ(errors.misaligned.load(), 0);
  EXPECT_EQ(errors.corrupted.load(), 0);
  EXPECT_EQ(errors.calloc_not_zero.load(), 0);
}

void free_exchange(Exchange& exchange, Errors& errors) {
  for (const Block& b : exchange.blocks) {
    if (!intact(b)) ++errors.corrupted;
    os_free(b.p);
  }
  exchange.blocks.clear();
}

TEST(Threads, RandomWorkloadsKeepEveryBlockIntact) {
  pattern();
  zeros();
  struct os_heap_stats before;
  ASSERT_EQ(os_heap_stats(&before), 0);
  Errors errors;
  Exchange exchange;
  std::vector<std::thread> threads;
  for (std::uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back(worker, 1000 + t, 5000, std::ref(errors), std::ref(exchange), nullptr);
  }
  for (auto& t : threads) t.join();
  free_exchange(exchange, errors);
  expect_no_errors(errors);
  EXPECT_EQ(os_heap_check(), 0);

  struct os_heap_stats after;
  ASSERT_EQ(os_heap_stats(&after), 0);
  // Everything was freed: nothing mapped is left over, no heap byte is in
  // use beyond what was in use before, and the blocks tile the segments.
  EXPECT_EQ(after.mapped_blocks, before.mapped_blocks);
  EXPECT_EQ(after.heap_bytes_in_use, before.heap_bytes_in_use);
  EXPECT_EQ(after.heap_bytes_in_use + after.heap_bytes_free + 32 * after.heap_blocks,
            after.heap_span);
  EXPECT_EQ(after.mmap_calls - before.mmap_calls, after.munmap_calls - before.munmap_calls);
  EXPECT_GT(after.mmap_calls, before.mmap_calls);  // large blocks were exercised
}

// Readers (check, stats, dump) take the same lock as the writers.
TEST(Threads, CheckerAndStatsRunConcurrentlyWithAllocation) {
  Errors errors;
  Exchange exchange;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (std::uint64_t t = 0; t < 3; ++t) {
    threads.emplace_back(worker, 2000 + t, 3000, std::ref(errors), std::ref(exchange), nullptr);
  }
  std::atomic<int> bad_checks{0};
  std::thread reader([&] {
    FILE* sink = fopen("/dev/null", "w");
    while (!stop.load()) {
      if (os_heap_check() != 0) ++bad_checks;
      struct os_heap_stats st;
      os_heap_stats(&st);
      if (st.heap_bytes_in_use + st.heap_bytes_free + 32 * st.heap_blocks != st.heap_span) {
        ++bad_checks;
      }
      if (sink != nullptr) os_heap_dump(fileno(sink));
    }
    if (sink != nullptr) fclose(sink);
  });
  for (auto& t : threads) t.join();
  stop = true;
  reader.join();
  free_exchange(exchange, errors);
  expect_no_errors(errors);
  EXPECT_EQ(bad_checks.load(), 0);
  EXPECT_EQ(os_heap_check(), 0);
}

// Waits for pid for at most `limit`; kills it when it hangs.
int wait_with_timeout(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -2;
}

// fork() while other threads hold or contend for the heap lock: the child
// has only the forking thread, so an inherited locked mutex would hang its
// first os_* call. The atfork handlers take the lock around fork().
TEST(Threads, ForkWhileOtherThreadsAllocate) {
  Errors errors;
  Exchange exchange;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (std::uint64_t t = 0; t < 3; ++t) {
    threads.emplace_back(worker, 3000 + t, 0, std::ref(errors), std::ref(exchange), &stop);
  }
  int hung = 0, failed = 0;
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // The child: only async-signal-safe calls besides the allocator.
      auto* p = static_cast<unsigned char*>(os_malloc(100));
      auto* q = static_cast<unsigned char*>(os_malloc(200000));
      auto* r = static_cast<unsigned char*>(os_calloc(10, 10));
      if (p == nullptr || q == nullptr || r == nullptr) _exit(2);
      std::memset(p, 0x11, 100);
      std::memset(q, 0x22, 200000);
      p = static_cast<unsigned char*>(os_realloc(p, 5000));
      if (p == nullptr || p[99] != 0x11) _exit(3);
      os_free(p);
      os_free(q);
      os_free(r);
      _exit(os_heap_check() == 0 ? 0 : 4);
    }
    const int status = wait_with_timeout(pid, std::chrono::seconds(5));
    if (status == -2) {
      ++hung;
      break;  // one hang proves the point; do not wait for more
    } else if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++failed;
      ADD_FAILURE() << "fork " << i << ": child status " << status;
    }
  }
  stop = true;
  for (auto& t : threads) t.join();
  free_exchange(exchange, errors);
  EXPECT_EQ(hung, 0) << "children hung: the heap lock was inherited locked";
  EXPECT_EQ(failed, 0);
  expect_no_errors(errors);
  EXPECT_EQ(os_heap_check(), 0);
}

}  // namespace
