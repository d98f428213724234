#include <gtest/gtest.h>

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

}  // namespace
}  // namespace osmem
