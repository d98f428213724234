#include <gtest/gtest.h>

#include <cstring>

#include "fake_source.hpp"
#include "heap.hpp"

namespace osmem {
namespace {

TEST(EngineSmoke, FirstMallocPreallocatesAndSplits) {
  FakeSource src;
  Heap<FakeSource> heap(src, 0x1234);
  void* a = heap.malloc(1);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(static_cast<std::byte*>(a) - src.heap_base(), 32);
  ASSERT_EQ(src.call_count(), 1u);
  EXPECT_EQ(src.call(0).arg, 131072u);
  void* b = heap.malloc(1);
  EXPECT_EQ(static_cast<std::byte*>(b) - src.heap_base(), 72);
  Violation v[8];
  EXPECT_EQ(heap.check(v, 8), 0u);
  heap.free(a);
  heap.free(b);
  EXPECT_EQ(heap.check(v, 8), 0u);
  struct os_heap_stats st;
  heap.stats(&st);
  EXPECT_EQ(st.heap_blocks, 1u);
  EXPECT_EQ(st.free_blocks, 1u);
  void* m = heap.malloc(200000);
  EXPECT_EQ(src.live_mappings(), 1u);
  heap.free(m);
  EXPECT_EQ(src.live_mappings(), 0u);
  EXPECT_EQ(heap.check(v, 8), 0u);
}

// The fake source's recycled mappings (ASan builds, the fuzzers): a spare
// handed out again must read zero like a fresh mapping, over everything the
// new mapping covers, whatever earlier, larger or smaller, uses wrote.
TEST(FakeSourceSpares, RecycledMappingsReadZeroLikeFreshOnes) {
  FakeSource src;
  if (!src.recycle_mappings(true)) GTEST_SKIP() << "mappings are recycled under ASan only";
  auto all_zero = [](const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i)
      if (b[i] != 0) return false;
    return true;
  };
  // 300 KiB, then 100 KiB, 300 KiB, 500 KiB and 100 KiB: each of the later
  // ones reuses the one power-of-two spare (512 KiB).
  const std::size_t sizes[] = {300 << 10, 100 << 10, 300 << 10, 500 << 10, 100 << 10, 500 << 10};
  std::byte* first = nullptr;
  for (std::size_t n : sizes) {
    auto* p = static_cast<std::byte*>(src.map(n));
    ASSERT_NE(p, nullptr);
    if (first == nullptr) first = p;
    EXPECT_EQ(p, first) << "the spare was not reused";
    EXPECT_TRUE(all_zero(p, n)) << n << " bytes";
    std::memset(p, 0xa5, n);
    ASSERT_TRUE(src.unmap(p, n));
  }
}

}  // namespace
}  // namespace osmem
