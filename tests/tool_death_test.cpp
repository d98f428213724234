// AddressSanitizer sees a user's bug on osmem memory at the faulting access:
// the process heap (os_malloc & co) poisons headers, free payloads and the
// rounding slack, so each statement below dies with ASan's report. Built
// only under ASan; with OSMEM_TOOL_HOOKS=OFF every one of them must fail
// ("failed to die", or no stack), which is how the tests are checked.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>

#include "osmem/osmem.h"
#include "sanitizer.hpp"

#if defined(OSMEM_TOOL_ASAN)
#include <sanitizer/asan_interface.h>

#include <random>
#include <vector>
#endif

namespace {

// Out of line and volatile, so the compiler neither drops nor moves them.
[[gnu::noinline]] void poke(void* p, std::ptrdiff_t at) {
  static_cast<volatile char*>(p)[at] = 1;
}
[[gnu::noinline]] char peek(const void* p, std::ptrdiff_t at) {
  return static_cast<const volatile char*>(p)[at];
}
[[gnu::noinline]] void poke64(void* p, std::ptrdiff_t at) {
  *reinterpret_cast<volatile std::uint64_t*>(static_cast<char*>(p) + at) = 0x4141414141414141ULL;
}
[[gnu::noinline]] std::uint64_t peek64(const void* p, std::ptrdiff_t at) {
  return *reinterpret_cast<const volatile std::uint64_t*>(static_cast<const char*>(p) + at);
}

// ASan's name for an access to memory poisoned by hand, then the access.
constexpr const char* kWrite1 = "AddressSanitizer: use-after-poison.*WRITE of size 1 ";
constexpr const char* kRead1 = "AddressSanitizer: use-after-poison.*READ of size 1 ";
constexpr const char* kWrite8 = "AddressSanitizer: use-after-poison.*WRITE of size 8 ";
constexpr const char* kRead8 = "AddressSanitizer: use-after-poison.*READ of size 8 ";

class ToolDeath : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(ToolDeath, OneByteOverflowPastTheRequestedSize) {
  auto* p = static_cast<char*>(os_malloc(5));  // capacity 8: bytes 5..7 are slack
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 5; ++i) poke(p, i);  // the requested bytes are fine
  EXPECT_DEATH(poke(p, 5), kWrite1);
  os_free(p);
}

TEST_F(ToolDeath, OneByteOverflowPastAMappedBlock) {
  const std::size_t n = 200001;  // mapped; the mapping ends 7 bytes later
  auto* p = static_cast<char*>(os_malloc(n));
  ASSERT_NE(p, nullptr);
  poke(p, 0);
  poke(p, static_cast<std::ptrdiff_t>(n - 1));
  EXPECT_DEATH(poke(p, static_cast<std::ptrdiff_t>(n)), kWrite1);
  os_free(p);
}

TEST_F(ToolDeath, UseAfterFree) {
  auto* p = static_cast<char*>(os_malloc(64));
  ASSERT_NE(p, nullptr);
  void* keep = os_malloc(64);  // so p's block stays where it is, free
  os_free(p);
  EXPECT_DEATH(peek(p, 3), kRead1);
  os_free(keep);
}

TEST_F(ToolDeath, OverflowIntoTheNextBlocksHeader) {
  auto* a = static_cast<char*>(os_malloc(16));
  auto* b = static_cast<char*>(os_malloc(16));
  ASSERT_EQ(b, a + 16 + 32) << "b's header must follow a's payload";
  poke64(a, 8);                          // the last 8 requested bytes are a's
  EXPECT_DEATH(poke64(a, 16), kWrite8);  // b's header: its size field
  os_free(b);
  os_free(a);
}

TEST_F(ToolDeath, ReadingAHeaderThroughAUserPointer) {
  auto* p = static_cast<char*>(os_malloc(24));
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(peek64(p, -32), kRead8);
  os_free(p);
}

// osmem's own diagnostic, and under a sanitizer the stack of the bad call.
TEST_F(ToolDeath, DoubleFreeIsReportedWithItsStack) {
  void* p = os_malloc(40);
  void* keep = os_malloc(40);
  os_free(p);
  EXPECT_DEATH(os_free(p),
               "osmem: double free in os_free at 0x[0-9a-f]+: .*"
               "#[0-9]+ 0x[0-9a-f]+ in os_free.*"
               "in .*ToolDeath_DoubleFreeIsReportedWithItsStack_Test::TestBody");
  os_free(keep);
}

// tool::usable finds the first poisoned byte by reading ASan's shadow
// itself (ASan's own search is a call per byte). Random poisoned ranges,
// random unaligned windows: it must agree with ASan asked byte by byte.
TEST(ToolUsable, FirstPoisonedByteAgreesWithAsanByteByByte) {
#if defined(OSMEM_TOOL_ASAN)
  std::vector<unsigned char> buffer(8192 + 64);
  unsigned char* base = buffer.data();
  std::mt19937_64 rng(7);
  auto pick = [&](std::size_t lo, std::size_t hi) {
    return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
  };
  int found = 0;
  for (int round = 0; round < 2000; ++round) {
    __asan_unpoison_memory_region(base, buffer.size());
    const int ranges = static_cast<int>(pick(0, 3));
    for (int r = 0; r < ranges; ++r) {
      const std::size_t at = pick(0, buffer.size() - 1);
      __asan_poison_memory_region(base + at,
                                  pick(1, std::min<std::size_t>(200, buffer.size() - at)));
    }
    const std::size_t from = pick(0, 300);
    const std::size_t n = pick(0, buffer.size() - from);
    std::size_t want = n;
    for (std::size_t i = 0; i < n; ++i) {
      if (__asan_address_is_poisoned(base + from + i) != 0) {
        want = i;
        break;
      }
    }
    if (want != n) ++found;
    ASSERT_EQ(osmem::tool::usable(base + from, n), want)
        << "round " << round << ", window at +" << from << ", " << n << " bytes";
  }
  __asan_unpoison_memory_region(base, buffer.size());
  EXPECT_GT(found, 500);  // the windows did meet poison, often
#else
  GTEST_SKIP() << "built without ASan's hooks";
#endif
}

}  // namespace
