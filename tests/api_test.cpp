// The C API's basics on the process-wide heap: the NULL-returning corner
// cases, statistics, the dump format, and error-handler registration.
//
// Tests in this binary share one heap when run together, so they assert on
// differences between snapshots rather than on absolute counts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "osmem/osmem.h"

namespace {

constexpr std::size_t align8(std::size_t n) {
  return (n + 7) & ~std::size_t{7};
}

struct os_heap_stats stats() {
  struct os_heap_stats st;
  EXPECT_EQ(os_heap_stats(&st), 0);
  return st;
}

// The blocks tile the heap segments exactly.
void expect_tiling(const struct os_heap_stats& st) {
  EXPECT_EQ(st.heap_bytes_in_use + st.heap_bytes_free + 32 * st.heap_blocks, st.heap_span);
}

TEST(Api, ZeroSizesReturnNullWithoutSystemCalls) {
  const struct os_heap_stats before = stats();
  EXPECT_EQ(os_malloc(0), nullptr);
  EXPECT_EQ(os_calloc(0, 16), nullptr);
  EXPECT_EQ(os_calloc(16, 0), nullptr);
  EXPECT_EQ(os_calloc(0, 0), nullptr);
  EXPECT_EQ(os_realloc(nullptr, 0), nullptr);
  const struct os_heap_stats after = stats();
  EXPECT_EQ(after.sbrk_calls, before.sbrk_calls);
  EXPECT_EQ(after.mmap_calls, before.mmap_calls);
  EXPECT_EQ(after.heap_blocks, before.heap_blocks);
  EXPECT_EQ(after.searches, before.searches);
}

TEST(Api, FreeNullDoesNothing) {
  ASSERT_NE(os_malloc(1), nullptr);  // so there is a heap to compare
  const struct os_heap_stats before = stats();
  os_free(nullptr);
  const struct os_heap_stats after = stats();
  EXPECT_EQ(std::memcmp(&before, &after, sizeof before), 0);
  EXPECT_EQ(os_heap_check(), 0);
}

TEST(Api, StatsRejectsNull) {
  EXPECT_EQ(os_heap_stats(nullptr), -1);
}

TEST(Api, ReturnedPointersAreAlignedAndUsable) {
  std::vector<void*> blocks;
  for (std::size_t n : {1, 2, 7, 8, 9, 15, 16, 17, 100, 4095, 4096, 131000, 131072, 500000}) {
    auto* p = static_cast<unsigned char*>(os_malloc(n));
    ASSERT_NE(p, nullptr) << n;
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 8, 0u) << n;
    std::memset(p, 0xa5, n);
    blocks.push_back(p);
  }
  EXPECT_EQ(os_heap_check(), 0);
  for (void* p : blocks) os_free(p);
  EXPECT_EQ(os_heap_check(), 0);
}

TEST(Api, ReallocNullIsMallocAndZeroIsFree) {
  const struct os_heap_stats before = stats();
  auto* p = static_cast<unsigned char*>(os_realloc(nullptr, 100));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, 100);
  struct os_heap_stats mid = stats();
  EXPECT_EQ(mid.heap_blocks - mid.free_blocks, before.heap_blocks - before.free_blocks + 1);
  EXPECT_EQ(os_realloc(p, 0), nullptr);
  const struct os_heap_stats after = stats();
  EXPECT_EQ(after.heap_blocks - after.free_blocks, before.heap_blocks - before.free_blocks);
  EXPECT_EQ(after.heap_bytes_in_use, before.heap_bytes_in_use);
  EXPECT_EQ(os_heap_check(), 0);
}

TEST(Api, ReallocKeepsContentsAcrossHeapAndMapping) {
  auto* p = static_cast<unsigned char*>(os_malloc(50));
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 50; ++i) p[i] = static_cast<unsigned char>(i);
  // Heap -> mapped -> heap, keeping the common prefix each time.
  for (std::size_t n : {5000, 200000, 300000, 70, 40}) {
    p = static_cast<unsigned char*>(os_realloc(p, n));
    ASSERT_NE(p, nullptr) << n;
    for (int i = 0; i < 40; ++i) ASSERT_EQ(p[i], i) << "size " << n << " byte " << i;
  }
  os_free(p);
  EXPECT_EQ(os_heap_check(), 0);
}

TEST(Api, CallocZeroesReusedMemory) {
  auto* dirty = static_cast<unsigned char*>(os_malloc(1000));
  ASSERT_NE(dirty, nullptr);
  std::memset(dirty, 0xff, 1000);
  os_free(dirty);
  // Best fit is likely to hand back the dirty block; either way, zeroes.
  for (auto [nmemb, size] :
       {std::pair<std::size_t, std::size_t>{10, 100}, {1, 1000}, {3, 7}, {1000, 300}}) {
    auto* p = static_cast<unsigned char*>(os_calloc(nmemb, size));
    ASSERT_NE(p, nullptr);
    for (std::size_t i = 0; i < nmemb * size; ++i) ASSERT_EQ(p[i], 0) << i;
    std::memset(p, 0xee, nmemb * size);
    os_free(p);
  }
}

TEST(Api, StatsCountMappedBlocksExactly) {
  const struct os_heap_stats before = stats();
  void* m = os_malloc(200001);
  ASSERT_NE(m, nullptr);
  const struct os_heap_stats mid = stats();
  EXPECT_EQ(mid.mapped_blocks, before.mapped_blocks + 1);
  EXPECT_EQ(mid.mapped_bytes, before.mapped_bytes + align8(200001) + 32);
  EXPECT_EQ(mid.mmap_calls, before.mmap_calls + 1);
  EXPECT_EQ(mid.sbrk_calls, before.sbrk_calls);
  os_free(m);
  const struct os_heap_stats after = stats();
  EXPECT_EQ(after.mapped_blocks, before.mapped_blocks);
  EXPECT_EQ(after.mapped_bytes, before.mapped_bytes);
  EXPECT_EQ(after.munmap_calls, before.munmap_calls + 1);
  // calloc maps from the page size on.
  void* c = os_calloc(1, 4096);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(stats().mapped_blocks, before.mapped_blocks + 1);
  os_free(c);
}

TEST(Api, StatsCountHeapBlocks) {
  ASSERT_NE(os_malloc(8), nullptr);  // the heap exists from here on
  const struct os_heap_stats before = stats();
  expect_tiling(before);
  EXPECT_GE(before.heap_segments, 1u);
  EXPECT_GE(before.heap_span, 131072u);
  void* a = os_malloc(100);
  void* b = os_malloc(300);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const struct os_heap_stats mid = stats();
  expect_tiling(mid);
  EXPECT_EQ(mid.heap_blocks - mid.free_blocks, before.heap_blocks - before.free_blocks + 2);
  EXPECT_GE(mid.heap_bytes_in_use, before.heap_bytes_in_use + align8(100) + align8(300));
  EXPECT_EQ(mid.searches, before.searches + 2);
  EXPECT_GE(mid.search_visits, before.search_visits + 2);
  EXPECT_GE(mid.search_visits_max, 1u);
  os_free(a);
  os_free(b);
  const struct os_heap_stats after = stats();
  expect_tiling(after);
  EXPECT_EQ(after.heap_blocks - after.free_blocks, before.heap_blocks - before.free_blocks);
  EXPECT_EQ(after.heap_bytes_in_use, before.heap_bytes_in_use);
  EXPECT_EQ(after.mapped_blocks, before.mapped_blocks);
  EXPECT_EQ(os_heap_check(), 0);
}

struct DumpLine {
  std::uintptr_t user, address;
  std::size_t size;
  std::string status;
  std::uintptr_t prev, next;
};

struct DumpSummary {
  std::size_t blocks, alloc, free, mapped, alloc_bytes, free_bytes, largest_free, mapped_bytes;
};

struct Dump {
  unsigned version = 0;
  std::size_t span = 0, segments = 0, mappings = 0;
  std::vector<DumpLine> blocks;
  DumpSummary summary{};
  std::size_t summaries = 0;
  std::size_t bad_lines = 0;
};

// Parses the format of docs/heap-dump.md: a heap line, block lines, a
// summary line last.
Dump read_dump() {
  Dump d;
  FILE* f = tmpfile();
  EXPECT_NE(f, nullptr);
  if (f == nullptr) return d;
  os_heap_dump(fileno(f));
  rewind(f);
  char line[512];
  std::size_t n = 0;
  while (fgets(line, sizeof line, f) != nullptr) {
    ++n;
    DumpLine b{};
    DumpSummary& s = d.summary;
    char status[16] = {};
    if (n == 1) {
      if (sscanf(line, "heap version=%u span=%zu segments=%zu mappings=%zu\n", &d.version, &d.span,
                 &d.segments, &d.mappings) != 4) {
        ++d.bad_lines;
      }
    } else if (d.summaries == 0 &&
               sscanf(line,
                      "block user=0x%" SCNxPTR " header=0x%" SCNxPTR
                      " size=%zu status=%15s prev=0x%" SCNxPTR " next=0x%" SCNxPTR,
                      &b.user, &b.address, &b.size, status, &b.prev, &b.next) == 6) {
      b.status = status;
      d.blocks.push_back(b);
    } else if (sscanf(line,
                      "summary blocks=%zu alloc=%zu free=%zu mapped=%zu alloc_bytes=%zu "
                      "free_bytes=%zu largest_free=%zu mapped_bytes=%zu",
                      &s.blocks, &s.alloc, &s.free, &s.mapped, &s.alloc_bytes, &s.free_bytes,
                      &s.largest_free, &s.mapped_bytes) == 8) {
      ++d.summaries;
    } else {
      ++d.bad_lines;
    }
  }
  fclose(f);
  return d;
}

TEST(Api, DumpWritesOneLinePerBlock) {
  auto* a = static_cast<unsigned char*>(os_malloc(104));
  auto* b = static_cast<unsigned char*>(os_malloc(64));
  auto* guard = static_cast<unsigned char*>(os_malloc(64));
  auto* m = static_cast<unsigned char*>(os_malloc(150000));
  ASSERT_TRUE(a && b && guard && m);
  const std::uintptr_t b_header = reinterpret_cast<std::uintptr_t>(b) - 32;
  os_free(b);  // a FREE block between two ALLOC ones

  const struct os_heap_stats st = stats();
  const Dump d = read_dump();
  EXPECT_EQ(d.bad_lines, 0u);
  EXPECT_EQ(d.version, 1u);
  EXPECT_EQ(d.span, st.heap_span);
  EXPECT_EQ(d.segments, st.heap_segments);
  EXPECT_EQ(d.mappings, st.mapped_blocks);
  ASSERT_EQ(d.blocks.size(), st.heap_blocks + st.mapped_blocks);

  std::map<std::uintptr_t, DumpLine> by_address;
  for (const DumpLine& l : d.blocks) by_address[l.address] = l;
  auto header = [](void* p) { return reinterpret_cast<std::uintptr_t>(p) - 32; };
  for (const DumpLine& l : d.blocks) EXPECT_EQ(l.user, l.address + 32);
  ASSERT_TRUE(by_address.count(header(a)));
  EXPECT_EQ(by_address[header(a)].user, reinterpret_cast<std::uintptr_t>(a));
  EXPECT_EQ(by_address[header(a)].size, 104u);
  EXPECT_EQ(by_address[header(a)].status, "alloc");
  ASSERT_TRUE(by_address.count(b_header));
  EXPECT_EQ(by_address[b_header].status, "free");
  EXPECT_EQ(by_address[header(a)].next, b_header);
  EXPECT_EQ(by_address[b_header].prev, header(a));
  EXPECT_EQ(by_address[b_header].next, header(guard));
  ASSERT_TRUE(by_address.count(header(m)));
  EXPECT_EQ(by_address[header(m)].status, "mapped");
  EXPECT_EQ(by_address[header(m)].size, 150000u);

  // Heap blocks come first, in address order, each line's next being the
  // following line; the counts per status match the statistics.
  std::size_t heap_lines = 0, free_lines = 0;
  for (std::size_t i = 0; i < d.blocks.size(); ++i) {
    const DumpLine& l = d.blocks[i];
    if (l.status == "mapped") continue;
    ++heap_lines;
    free_lines += l.status == "free" ? 1 : 0;
    EXPECT_EQ(i, heap_lines - 1) << "heap block after a mapping";
    if (i + 1 < st.heap_blocks) {
      EXPECT_EQ(l.next, d.blocks[i + 1].address);
    }
  }
  EXPECT_EQ(heap_lines, st.heap_blocks);
  EXPECT_EQ(free_lines, st.free_blocks);
  // Mappings come in address order (an in-order walk of the tree).
  for (std::size_t i = st.heap_blocks + 1; i < d.blocks.size(); ++i) {
    EXPECT_LT(d.blocks[i - 1].address, d.blocks[i].address);
  }

  // The summary line totals the block lines.
  ASSERT_EQ(d.summaries, 1u);
  EXPECT_EQ(d.summary.blocks, d.blocks.size());
  EXPECT_EQ(d.summary.free, st.free_blocks);
  EXPECT_EQ(d.summary.alloc, st.heap_blocks - st.free_blocks);
  EXPECT_EQ(d.summary.mapped, st.mapped_blocks);
  EXPECT_EQ(d.summary.alloc_bytes, st.heap_bytes_in_use);
  EXPECT_EQ(d.summary.free_bytes, st.heap_bytes_free);
  std::size_t largest = 0, mapped = 0;
  for (const DumpLine& l : d.blocks) {
    if (l.status == "free" && l.size > largest) largest = l.size;
    if (l.status == "mapped") mapped += l.size;
  }
  EXPECT_GE(mapped, 150000u);
  EXPECT_EQ(d.summary.mapped_bytes, mapped);
  EXPECT_GE(largest, 64u);
  EXPECT_EQ(d.summary.largest_free, largest);
  os_free(a);
  os_free(guard);
  os_free(m);
}

TEST(Api, DumpToAPipe) {
  void* p = os_malloc(24);
  ASSERT_NE(p, nullptr);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  os_heap_dump(fds[1]);
  close(fds[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  const struct os_heap_stats st = stats();
  std::size_t lines = 0;
  for (char c : text) lines += c == '\n' ? 1 : 0;
  EXPECT_EQ(lines, 2 + st.heap_blocks + st.mapped_blocks) << text;
  char needle[96];
  snprintf(needle, sizeof needle,
           "block user=0x%" PRIxPTR " header=0x%" PRIxPTR " size=24 status=alloc",
           reinterpret_cast<std::uintptr_t>(p), reinterpret_cast<std::uintptr_t>(p) - 32);
  EXPECT_NE(text.find(needle), std::string::npos) << text;
  os_free(p);
}

void handler_one(os_error_kind, const char*, const void*) {}
void handler_two(os_error_kind, const char*, const void*) {}

TEST(Api, SetErrorHandlerReturnsThePreviousOne) {
  const os_error_handler original = os_set_error_handler(handler_one);
  EXPECT_EQ(os_set_error_handler(handler_two), handler_one);
  EXPECT_EQ(os_set_error_handler(nullptr), handler_two);
  EXPECT_EQ(os_set_error_handler(original), nullptr);
}

// Frees p twice on purpose; the header's attributes let GCC see that.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif
// NULL restores the default handler: the fixed message on stderr, then abort.
TEST(ApiDeathTest, NullHandlerRestoresTheDefault) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  void* p = os_malloc(16);
  ASSERT_NE(os_malloc(16), nullptr);
  os_free(p);
  EXPECT_DEATH(
      {
        os_set_error_handler(handler_one);
        os_set_error_handler(nullptr);
        os_free(p);
      },
      "osmem: double free in os_free at 0x[0-9a-f]+: the block is already free");
  // A handler that returns does not make the error survivable: abort().
  EXPECT_EXIT(
      {
        os_set_error_handler(handler_one);
        os_free(p);
      },
      ::testing::KilledBySignal(SIGABRT), "");
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace
