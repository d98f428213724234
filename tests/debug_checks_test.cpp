// The debug check levels (OSMEM_CHECK; src/check_level.hpp,
// src/debug_checks.hpp): parsing, the bound on how long the sweep takes to
// find damage far from any operation, no false alarms while the heap churns
// under the sweep's cursor, and the levels through the real API.
#include "debug_checks.hpp"

// The write-after-free tests use blocks after os_free on purpose.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "block_records.hpp"
#include "check_level.hpp"
#include "fake_source.hpp"
#include "freed_payload.hpp"
#include "heap.hpp"
#include "osmem/osmem.h"

namespace osmem {
namespace {

std::string level_text(const CheckLevel& level) {
  char buf[64];
  format_check_level(level, buf, sizeof buf);
  return buf;
}

// ---- parsing ---------------------------------------------------------------

TEST(CheckLevel, ParsesEveryDocumentedSpelling) {
  const struct {
    const char* text;
    const char* canonical;
  } cases[] = {
      {"off", "off"},
      {"0", "off"},
      {"local", "local"},
      {"sweep", "sweep:4"},
      {"on", "sweep:4"},
      {"1", "sweep:4"},
      {"sweep:1", "sweep:1"},
      {"sweep:250", "sweep:250"},
      {"full", "full"},
      {"every:1", "every:1@1"},
      {"every:100", "every:100@1"},
      {"every:7@5000", "every:7@5000"},
  };
  for (const auto& c : cases) {
    CheckLevel level;
    level.mode = CheckMode::Full;  // something else, to see it change
    level.sweep_blocks = 3;
    EXPECT_TRUE(parse_check_level(c.text, level)) << c.text;
    EXPECT_EQ(level_text(level), c.canonical) << c.text;
  }
}

TEST(CheckLevel, RejectsAnythingElseAndKeepsTheLevel) {
  for (const char* text : {"",
                           "ful",
                           "fullx",
                           "FULL",
                           "sweep:",
                           "sweep:0",
                           "sweep:-1",
                           "sweep:8x",
                           "sweep:99999999999",
                           "on:4",
                           "1:4",
                           "10",
                           "00",
                           "every",
                           "every:",
                           "every:0",
                           "every:5@",
                           "every:5@0",
                           "every:5@x",
                           "local ",
                           " off",
                           "every:99999999999999999999999"}) {
    CheckLevel level;
    level.mode = CheckMode::Local;
    EXPECT_FALSE(parse_check_level(text, level)) << '"' << text << '"';
    EXPECT_EQ(level_text(level), "local") << '"' << text << '"';
  }
  CheckLevel level;
  EXPECT_FALSE(parse_check_level(nullptr, level));
}

// ---- the records' table ------------------------------------------------------

// Random puts, replacements and erases against std::unordered_map: every
// lookup agrees, through growth and backward-shift deletion, and a full
// area stops recording (counted) instead of overwriting.
TEST(BlockRecords, AgreesWithAMapThroughGrowthAndErase) {
  std::vector<AllocRecord> area(1 << 16);
  BlockRecords t;
  t.attach(area.data(), area.size() * sizeof(AllocRecord));
  std::unordered_map<std::uintptr_t, AllocRecord> model;
  std::mt19937_64 rng(7);
  std::vector<std::uintptr_t> keys;
  for (int step = 0; step < 200000; ++step) {
    const unsigned r = static_cast<unsigned>(rng() % 10);
    if (r < 6 || keys.empty()) {
      const std::uintptr_t user = 0x10000 + 16 * (rng() % 40000);
      const AllocRecord rec =
          AllocRecord::make(user, static_cast<std::size_t>(rng() % 5000),
                            static_cast<std::uint64_t>(step), static_cast<std::uintptr_t>(rng()));
      if (t.put(rec)) {
        if (model.count(user) == 0) keys.push_back(user);
        model[user] = rec;
      }
    } else {
      const std::size_t i = rng() % keys.size();
      t.erase(keys[i]);
      model.erase(keys[i]);
      keys[i] = keys.back();
      keys.pop_back();
    }
    if (step % 997 == 0) {
      ASSERT_EQ(t.size(), model.size()) << "step " << step;
      for (const auto& [user, rec] : model) {
        const AllocRecord* found = t.find(user);
        ASSERT_NE(found, nullptr) << "step " << step;
        ASSERT_EQ(found->requested, rec.requested);
        ASSERT_EQ(found->operation, rec.operation);
      }
      for (int probe = 0; probe < 50; ++probe) {
        const std::uintptr_t user = 0x10000 + 16 * (rng() % 40000);
        ASSERT_EQ(t.find(user) != nullptr, model.count(user) != 0);
      }
    }
  }
  EXPECT_GT(t.capacity(), BlockRecords::kFirstCapacity);  // it grew
  EXPECT_EQ(t.unrecorded(), 0u);

  // A small area: the table fills to 7/8 and then refuses.
  std::vector<AllocRecord> small(BlockRecords::kFirstCapacity);
  BlockRecords s;
  s.attach(small.data(), small.size() * sizeof(AllocRecord));
  std::size_t stored = 0;
  for (std::uintptr_t i = 1; i <= 2000; ++i)
    stored += s.put(AllocRecord::make(i * 16, 1, i, 0)) ? 1 : 0;
  EXPECT_EQ(stored, 7 * BlockRecords::kFirstCapacity / 8);
  EXPECT_EQ(s.unrecorded(), 2000 - stored);
  for (std::uintptr_t i = 1; i <= stored; ++i) ASSERT_NE(s.find(i * 16), nullptr) << i;
}

// ---- the sweep's bound, on the engine ------------------------------------------

// A heap of `blocks` heap blocks (every third one FREE, so the index is
// walked too) and `mappings` live mappings, with DebugChecks driven by hand
// the way an API layer drives them, reporting instead of aborting.
class Swept {
 public:
  Swept(const CheckLevel& level, int blocks, int mappings) {
    checks_.set_level(level);
    for (int i = 0; i < blocks; ++i) {
      void* p = heap_.malloc(16 + 8 * static_cast<std::size_t>(i % 13));
      EXPECT_NE(p, nullptr);
      live_.push_back(p);
    }
    for (int i = 0; i + 1 < blocks; i += 3) {
      heap_.free(live_[static_cast<std::size_t>(i)]);
      live_[static_cast<std::size_t>(i)] = nullptr;
    }
    for (int i = 0; i < mappings; ++i) maps_.push_back(heap_.malloc(200000 + 4096 * i));
    Violation v[4];
    EXPECT_EQ(heap_.check(v, 4), 0u);
  }

  // One operation far from `target`: a mapping made and unmapped when the
  // target is a heap block, a small heap block taken and given back when
  // it is a mapping. (An operation on the mapping tree reseals the headers
  // on its path, which would repair a damaged canary there before the
  // sweep could see it.) True, with the violation, when the checks
  // reported something.
  bool far_operation(const BlockMeta* target, Violation& v) {
    const bool mapped_target = !heap_.in_heap(target, kHeaderSize);
    if (checks_.examine_before(heap_, nullptr, v)) return true;
    scratch_ = heap_.malloc(mapped_target ? 8 : 300000);
    if (checks_.examine_after(heap_, scratch_, v)) return true;
    if (checks_.examine_before(heap_, scratch_, v)) return true;
    heap_.free(scratch_);
    return checks_.examine_after(heap_, nullptr, v);
  }

  // Blocks the sweep goes round: the heap list, the mappings, and the one
  // mapping an operation makes.
  std::size_t swept_blocks() const {
    struct os_heap_stats st;
    heap_.stats(&st);
    return st.heap_blocks + st.mapped_blocks + 1;
  }

  std::vector<BlockMeta*> all_blocks() const {
    std::vector<BlockMeta*> out;
    for (BlockMeta* b = heap_.blocks().head(); b != nullptr; b = next_of(b)) out.push_back(b);
    for (void* m : maps_) out.push_back(BlockMeta::from_payload(m));
    return out;
  }

  Heap<FakeSource>& heap() { return heap_; }
  DebugChecks<Heap<FakeSource>>& checks() { return checks_; }

 private:
  tool::Untracked untracked_;  // these tests write into headers on purpose
  FakeSource src_;
  Heap<FakeSource> heap_{src_, 0x5eed5eed5eed5eedULL};
  DebugChecks<Heap<FakeSource>> checks_;
  std::vector<void*> live_;
  std::vector<void*> maps_;
  void* scratch_ = nullptr;
};

std::size_t ceil_div(std::size_t a, std::size_t b) {
  return (a + b - 1) / b;
}

void flip_canary(BlockMeta* b) {
  const OpenHeader open(b);
  b->canary ^= 0x10;
}

// Damage at every block in turn, with the cursor at a different place each
// time: the sweep names the damaged block within ceil(n / K) + 2
// operations, + 1 as they are counted in pairs (a far operation is two).
TEST(Sweep, FindsDamageFarFromEveryOperationWithinTheBound) {
  constexpr int kBlocks = 150;
  constexpr int kMappings = 5;
  for (std::uint32_t k : {1u, 4u, 16u}) {
    CheckLevel level;
    level.mode = CheckMode::Sweep;
    level.sweep_blocks = k;
    const std::size_t targets = Swept(level, kBlocks, kMappings).all_blocks().size();
    std::size_t worst = 0;
    for (std::size_t t = 0; t < targets; ++t) {
      Swept s(level, kBlocks, kMappings);
      const std::size_t n = s.swept_blocks();
      const std::size_t bound = ceil_div(n, k) + 3;
      Violation v{};
      BlockMeta* target = s.all_blocks()[t];
      for (std::size_t warm = 0; warm < (t * 7) % (bound + 3); ++warm) {
        ASSERT_FALSE(s.far_operation(target, v)) << "false alarm before any damage";
      }
      flip_canary(target);
      std::size_t ops = 0;
      bool found = false;
      while (!found && ops < 3 * bound) {
        ops += 2;  // a far operation is two operations, each with its sweep step
        found = s.far_operation(target, v);
      }
      ASSERT_TRUE(found) << "K " << k << " target " << t << ": not found in " << ops << " ops";
      EXPECT_LE(ops, bound) << "K " << k << " target " << t << " of n " << n;
      EXPECT_EQ(v.invariant, Invariant::CanaryMismatch) << invariant_name(v.invariant);
      EXPECT_EQ(v.block, target) << "K " << k << " target " << t;
      if (ops > worst) worst = ops;
    }
    std::printf(
        "sweep:%u, n = %zu blocks: damage found within %zu operations at worst "
        "(bound ceil(n/K) + 3 = %zu)\n",
        k, Swept(level, kBlocks, kMappings).swept_blocks(), worst,
        ceil_div(Swept(level, kBlocks, kMappings).swept_blocks(), k) + 3);
  }
}

TEST(Sweep, LocalAloneDoesNotSeeFarDamage) {
  CheckLevel level;
  level.mode = CheckMode::Local;
  Swept s(level, 150, 5);
  BlockMeta* target = s.all_blocks()[70];
  flip_canary(target);
  Violation v{};
  for (int i = 0; i < 500; ++i) ASSERT_FALSE(s.far_operation(target, v)) << "operation " << i;
  Violation all[4];
  EXPECT_GE(s.heap().check(all, 4), 1u);  // it is there to find
}

// Random mallocs, reallocs and frees merge and split blocks under the
// cursor (its block merging into a neighbour, a split writing a header over
// the stale one): the sweep must go round and round and never report a
// sound heap, and the whole checker must agree the heap is sound.
TEST(Sweep, NoFalseAlarmsWhileTheHeapChurns) {
  for (std::uint32_t k : {1u, 3u, 64u}) {
    CheckLevel level;
    level.mode = CheckMode::Sweep;
    level.sweep_blocks = k;
    Swept s(level, 60, 2);
    auto& heap = s.heap();
    auto& checks = s.checks();
    std::mt19937_64 rng(k);
    std::vector<void*> live;
    Violation v{};
    for (int step = 0; step < 20000; ++step) {
      const unsigned r = static_cast<unsigned>(rng() % 10);
      const std::size_t size = 8 + rng() % (rng() % 8 == 0 ? 3000 : 200);
      if (r < 4 || live.empty()) {
        ASSERT_FALSE(checks.examine_before(heap, nullptr, v));
        void* p = heap.malloc(size);
        ASSERT_FALSE(checks.examine_after(heap, p, v))
            << "step " << step << ": " << invariant_name(v.invariant);
        live.push_back(p);
      } else {
        const std::size_t i = rng() % live.size();
        ASSERT_FALSE(checks.examine_before(heap, live[i], v)) << "step " << step;
        void* q = nullptr;
        if (r < 7) {
          heap.free(live[i]);
        } else {
          q = heap.realloc(live[i], size);
        }
        ASSERT_FALSE(checks.examine_after(heap, q, v))
            << "step " << step << ": " << invariant_name(v.invariant);
        if (q != nullptr) {
          live[i] = q;
        } else {
          live[i] = live.back();
          live.pop_back();
        }
      }
      if (step % 1000 == 0) {
        Violation all[4];
        ASSERT_EQ(heap.check(all, 4), 0u) << "step " << step;
      }
    }
    EXPECT_GE(checks.sweep().rounds(), 20u) << "K " << k << ": the sweep did not go round";
  }
}

// ---- freed payload sums (freed_payload.hpp) ------------------------------------

// Any change is found; a change of one 8-byte word is located to its first
// byte with both values, for every word of blocks of several sizes; two
// changed words are found and not located (never located wrongly).
TEST(FreedPayload, FindsEveryChangeAndLocatesASingleWord) {
  std::mt19937_64 rng(7);
  for (std::size_t words : {1u, 2u, 3u, 16u, 257u, 16384u}) {
    std::vector<std::uint64_t> buf(words);
    for (auto& w : buf) w = rng();
    const PayloadSums then = sum_payload(buf.data(), 8 * words);
    EXPECT_TRUE(same_sums(then, sum_payload(buf.data(), 8 * words)));
    for (int trial = 0; trial < 40; ++trial) {
      const std::size_t i = rng() % words;
      const unsigned byte = static_cast<unsigned>(rng() % 8);
      const std::uint64_t old = buf[i];
      // Change bytes `byte` and up of word i (at least the first one).
      std::uint64_t fresh = old ^ ((rng() | 1) << (8 * byte));
      if (byte == 0) fresh = old ^ (rng() | 1);
      buf[i] = fresh;
      const PayloadSums now = sum_payload(buf.data(), 8 * words);
      ASSERT_FALSE(same_sums(then, now)) << words << " words, word " << i;
      const PayloadChange c = locate_change(buf.data(), 8 * words, then, now);
      ASSERT_TRUE(c.located) << words << " words, word " << i;
      EXPECT_EQ(c.offset, 8 * i + byte) << words << " words";
      EXPECT_EQ(c.was, old);
      EXPECT_EQ(c.reads, fresh);
      buf[i] = old;
    }
    if (words >= 2) {
      const std::size_t i = rng() % (words - 1);
      const std::uint64_t a = buf[i], b = buf[i + 1];
      buf[i] ^= 0xff00;
      buf[i + 1] ^= 0x1;
      const PayloadSums now = sum_payload(buf.data(), 8 * words);
      EXPECT_FALSE(same_sums(then, now));
      EXPECT_FALSE(locate_change(buf.data(), 8 * words, then, now).located);
      buf[i] = a;
      buf[i + 1] = b;
    }
  }
}

// Changes that keep the sum of the words (a swap, a +d/-d pair) are still
// found: the hash weighs every word by its position.
TEST(FreedPayload, FindsChangesThatKeepTheSum) {
  std::vector<std::uint64_t> buf = {1, 2, 3, 4, 5, 6, 7, 8};
  const PayloadSums then = sum_payload(buf.data(), 64);
  std::swap(buf[2], buf[5]);
  EXPECT_FALSE(same_sums(then, sum_payload(buf.data(), 64)));
  std::swap(buf[2], buf[5]);
  buf[1] += 9;
  buf[6] -= 9;
  EXPECT_FALSE(same_sums(then, sum_payload(buf.data(), 64)));
  buf[1] -= 9;
  buf[6] += 9;
  // Verification compares the hash alone: it must see these too, for any
  // pair of words and values (reference counts one up, one down).
  std::mt19937_64 rng(11);
  std::vector<std::uint64_t> words(64);
  for (auto& w : words) w = rng() % 1000;
  const std::uint64_t h = hash_payload(words.data(), 8 * words.size());
  int missed = 0;
  for (std::size_t i = 0; i < words.size(); ++i) {
    for (std::size_t j = 0; j < words.size(); ++j) {
      if (i == j) continue;
      ++words[i];
      --words[j];
      if (hash_payload(words.data(), 8 * words.size()) == h) ++missed;
      --words[i];
      ++words[j];
    }
  }
  EXPECT_EQ(missed, 0);
}

// ---- through the real API ----------------------------------------------------

// OSMEM_CHECK is read at the first os_* call; the threadsafe death-test
// style re-executes the binary, so a setenv() at the top of the body
// reaches the child before that call.
class ApiLevelDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
  static void check_mode(const char* mode) { ASSERT_EQ(setenv("OSMEM_CHECK", mode, 1), 0); }
};

void discard(void* /*block*/) {}

template <class F>
void unseen(void* p, std::size_t n, F write) {
  const tool::Reveal open(p, n);
  write();
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif

constexpr char kHex[] = "0x[0-9a-f]+";

// A death test's child runs in a fresh exec (threadsafe style), with its
// own addresses: it checks the address the error handler gets itself.
const void* g_expected_block = nullptr;
void exit_0_if_expected_block(os_error_kind kind, const char* /*operation*/, const void* address) {
  _exit(kind == OS_ERROR_WRITE_AFTER_FREE && address == g_expected_block ? 0 : 1);
}

TEST_F(ApiLevelDeathTest, UnknownValueWarnsOnceNamingTheValidOnes) {
  check_mode("sweeep");
  EXPECT_EXIT(
      {
        void* p = os_malloc(10);
        os_free(p);
        os_free(os_malloc(20));
        _exit(p != nullptr ? 0 : 1);
      },
      ::testing::ExitedWithCode(0),
      "^osmem: OSMEM_CHECK=sweeep is not understood \\(valid: off, local, sweep, sweep:K, full, "
      "every:N, every:N@START \\(also 0 = off, 1/on = sweep\\)\\); using [a-z0-9:@]+\n$");
}

// A one-byte overflow into the next header, then free: `local` reads that
// header before the engine does and names it, with the operation number.
TEST_F(ApiLevelDeathTest, LocalNamesTheNextHeaderOnEntryToFree) {
  check_mode("local");
  auto* a = static_cast<unsigned char*>(os_malloc(64));
  ASSERT_NE(os_malloc(64), nullptr);
  // The block named is the one after a's (whose prev is null): its size
  // field reads 65, the flipped bit.
  EXPECT_DEATH(
      {
        unseen(a + 64, 1, [&] { a[64] ^= 0x01; });
        os_free(a);
      },
      std::string("^osmem: heap inconsistent on entry to os_free \\(operation 3\\): header canary "
                  "mismatch at block ") +
          kHex + " \\(user pointer " + kHex + "\\)\n    " + kHex + " size 64 alloc prev 0x0 next " +
          kHex + "\n  > " + kHex +
          " size 65 alloc prev (.|\n)*osmem: heap inconsistent in os_free at 0x0:");
}

// every:5 checks on entry to operations 1, 6, 11, ...: damage done after
// operation 3 is reported on entry to operation 6, not before.
TEST_F(ApiLevelDeathTest, EveryNChecksOnTheScheduledOperations) {
  check_mode("every:5");
  auto* a = static_cast<unsigned char*>(os_malloc(64));  // 1
  ASSERT_NE(os_malloc(64), nullptr);                     // 2
  ASSERT_NE(os_malloc(64), nullptr);                     // 3
  EXPECT_DEATH(
      {
        unseen(a + 64, 32, [&] { a[64 + 12] ^= 0x01; });
        os_free(os_malloc(300000));  // 4, 5
        os_free(os_malloc(300000));  // 6
      },
      std::string("^osmem: heap inconsistent on entry to os_malloc \\(operation 6\\): header "
                  "canary mismatch at block ") +
          kHex);
}

TEST_F(ApiLevelDeathTest, EveryNStartsAtTheGivenOperation) {
  check_mode("every:1@5");
  auto* a = static_cast<unsigned char*>(os_malloc(64));  // 1
  ASSERT_NE(os_malloc(64), nullptr);                     // 2
  EXPECT_DEATH(
      {
        unseen(a + 64, 32, [&] { a[64 + 12] ^= 0x01; });
        os_free(os_malloc(300000));  // 3, 4: not checked
        os_free(os_malloc(300000));  // 5
      },
      std::string("^osmem: heap inconsistent on entry to os_malloc \\(operation 5\\)"));
}

// The sweep in a real process over the real sbrk/mmap: damage a header far
// from every later operation, then count operations until the report.
int g_operations = 0;
int g_bound = 0;

void count_and_exit(os_error_kind kind, const char* operation, const void* /*address*/) {
  char line[160];
  const int n = snprintf(line, sizeof line, "reported after %d operations (bound %d) in %s\n",
                         g_operations, g_bound, operation);
  if (n > 0) (void)!write(2, line, static_cast<std::size_t>(n));
  _exit(kind == OS_ERROR_HEAP_INCONSISTENT && g_operations <= g_bound ? 0 : 1);
}

void count_and_exit_after_free(os_error_kind kind, const char* operation, const void* /*address*/) {
  char line[160];
  const int n = snprintf(line, sizeof line, "reported after %d operations (bound %d) in %s\n",
                         g_operations, g_bound, operation);
  if (n > 0) (void)!write(2, line, static_cast<std::size_t>(n));
  _exit(kind == OS_ERROR_WRITE_AFTER_FREE && g_operations <= g_bound ? 0 : 1);
}

void damage_far_block_then_operate(int k) {
  std::vector<void*> blocks;
  blocks.reserve(2000);  // the vector's own memory is glibc's, not osmem's
  for (int i = 0; i < 2000; ++i) blocks.push_back(os_malloc(24 + 8 * (i % 7)));
  for (int i = 0; i < 2000; i += 4) os_free(blocks[static_cast<std::size_t>(i)]);
  struct os_heap_stats st;
  os_heap_stats(&st);
  const int n = static_cast<int>(st.heap_blocks + st.mapped_blocks + 1);
  g_bound = (n + k - 1) / k + 2;
  os_set_error_handler(count_and_exit);
  auto* victim = static_cast<unsigned char*>(blocks[1001]);
  unseen(victim - 32, 32, [&] { victim[-32 + 12] ^= 0x01; });
  for (g_operations = 1; g_operations < 10 * g_bound; ++g_operations) {
    void* m = os_malloc(300000);
    ++g_operations;
    os_free(m);
  }
  _exit(2);  // never reported
}

TEST_F(ApiLevelDeathTest, SweepFindsFarDamageInARealProcess) {
  check_mode("sweep:8");
  EXPECT_EXIT(damage_far_block_then_operate(8), ::testing::ExitedWithCode(0),
              std::string("on exit from os_(malloc|free) \\(operation [0-9]+\\): header canary "
                          "mismatch at block ") +
                  kHex + "(.|\n)*reported after [0-9]+ operations \\(bound [0-9]+\\)");
}

TEST_F(ApiLevelDeathTest, LocalDoesNotFindFarDamageInARealProcess) {
  check_mode("local");
  EXPECT_EXIT(damage_far_block_then_operate(8), ::testing::ExitedWithCode(2), "");
}

// ---- write after free (freed_records.hpp) -------------------------------------

// A freed block keeps its bytes (rule 15); a write into it is found when its
// memory is handed out again, naming the block, who allocated and freed it,
// and the first changed byte with the word's old and new values.
TEST_F(ApiLevelDeathTest, WriteAfterFreeFoundWhenTheMemoryIsReused) {
  check_mode("local");
  auto* a = static_cast<unsigned char*>(os_malloc(24));  // 1
  ASSERT_NE(os_malloc(24), nullptr);                     // 2: keeps a from the top
  std::memset(a, 0x11, 24);
  os_free(a);  // 3
  EXPECT_DEATH(
      {
        unseen(a + 8, 1, [&] { a[8] = 0x22; });
        discard(os_malloc(24));  // 4: best fit is a's block
      },
      std::string("^osmem: write after free in os_malloc at ") + kHex +
          ": the payload of a freed block changed after it was freed\n"
          "  operation 4, user pointer " +
          kHex + ", header " + kHex +
          "\n  broken rule: a freed block's payload is not written until osmem hands it out "
          "again\n"
          "  the block: 24 bytes requested by operation 1 \\(called from " +
          kHex + ": [^)]*\\), freed by operation 3 \\(called from " + kHex +
          ": [^)]*\\)\n"
          "  first changed byte: 8 \\(the 8-byte word at offset 8 reads 0x1111111111111122, was "
          "0x1111111111111111\\)\n"
          "  found by: its memory was about to be used again\n"
          "  likely cause: a write through a pointer to this block after it was freed\n");
}

// The part of a freed block that a smaller allocation left FREE keeps its
// record: a write there is found when that part is handed out, at its
// offset in the block that was freed.
TEST_F(ApiLevelDeathTest, WriteAfterFreeInThePartASplitLeft) {
  check_mode("local");
  auto* a = static_cast<unsigned char*>(os_malloc(256));
  ASSERT_NE(os_malloc(24), nullptr);
  std::memset(a, 0, 256);
  os_free(a);
  ASSERT_EQ(os_malloc(24), a);  // takes the front of a's block; the rest stays FREE
  EXPECT_DEATH(
      {
        unseen(a + 200, 1, [&] { a[200] = 0x5a; });
        discard(os_malloc(100));  // the rest
      },
      "write after free in os_malloc (.|\n)*256 bytes requested by operation 1 (.|\n)*"
      "first changed byte: 200 \\(the 8-byte word at offset 200 reads 0x5a, was 0x0\\)");
  // The block named is the one freed, not the part the split left.
  EXPECT_EXIT(
      {
        g_expected_block = a;
        os_set_error_handler(exit_0_if_expected_block);
        unseen(a + 200, 1, [&] { a[200] = 0x5a; });
        discard(os_malloc(100));
        _exit(2);
      },
      ::testing::ExitedWithCode(0), "");
}

// realloc growing a block into the freed block after it reads that block's
// memory first.
TEST_F(ApiLevelDeathTest, WriteAfterFreeFoundWhenReallocGrowsIntoIt) {
  check_mode("local");
  auto* a = static_cast<unsigned char*>(os_malloc(24));
  auto* b = static_cast<unsigned char*>(os_malloc(64));
  ASSERT_NE(os_malloc(24), nullptr);  // keeps b from the top
  std::memset(b, 0, 64);
  os_free(b);
  EXPECT_DEATH(
      {
        unseen(b + 40, 1, [&] { b[40] = 0x01; });
        discard(os_realloc(a, 80));  // grows into b's block
      },
      "write after free in os_realloc (.|\n)*64 bytes requested by operation 2 (.|\n)*first "
      "changed byte: 40 ");
  EXPECT_EXIT(
      {
        g_expected_block = b;
        os_set_error_handler(exit_0_if_expected_block);
        unseen(b + 40, 1, [&] { b[40] = 0x01; });
        discard(os_realloc(a, 80));
        _exit(2);
      },
      ::testing::ExitedWithCode(0), "");
}

// Several words changed: found, not located.
TEST_F(ApiLevelDeathTest, WriteAfterFreeOfSeveralWords) {
  check_mode("full");
  auto* a = static_cast<unsigned char*>(os_malloc(64));
  ASSERT_NE(os_malloc(24), nullptr);
  std::memset(a, 0, 64);
  os_free(a);
  EXPECT_DEATH(
      {
        unseen(a, 64, [&] { std::memset(a + 4, 0x77, 20); });
        discard(os_malloc(300000));  // far from a: the whole check on entry finds it
      },
      "write after free in os_malloc (.|\n)*changed: more than one 8-byte word of bytes 0..63 "
      "\\(the checksum cannot locate several changes\\)\n  found by: the whole check");
}

// Far from every later operation, the sweep verifies K/4 slots of the freed
// records per operation (at least 1): found within ceil(1024 / (K/4))
// operations (the table starts with 1024 slots).
void write_after_free_then_operate(int k) {
  std::vector<unsigned char*> blocks;
  blocks.reserve(300);
  for (int i = 0; i < 300; ++i) blocks.push_back(static_cast<unsigned char*>(os_malloc(40)));
  for (int i = 0; i < 300; i += 3) os_free(blocks[static_cast<std::size_t>(i)]);
  const int slots = k / 4 != 0 ? k / 4 : 1;  // freed-record slots verified per operation
  g_bound = (1024 + slots - 1) / slots + 1;
  os_set_error_handler(count_and_exit_after_free);
  unsigned char* victim = blocks[150];
  unseen(victim + 16, 1, [&] { victim[16] ^= 0x40; });
  for (g_operations = 1; g_operations < 10 * g_bound; ++g_operations) {
    void* m = os_malloc(300000);
    ++g_operations;
    os_free(m);
  }
  _exit(2);  // never reported
}

TEST_F(ApiLevelDeathTest, WriteAfterFreeFoundByTheSweepWithinTheBound) {
  check_mode("sweep:8");
  EXPECT_EXIT(write_after_free_then_operate(8), ::testing::ExitedWithCode(0),
              "reported after [0-9]+ operations \\(bound 513\\) in os_(malloc|free)");
}

TEST_F(ApiLevelDeathTest, WriteAfterFreeNotFoundWhenOff) {
  check_mode("off");
  EXPECT_EXIT(write_after_free_then_operate(8), ::testing::ExitedWithCode(2), "");
}

// os_realloc of a freed block keeps the seed's rule (NULL, nothing
// changed) and, with a check level on, warns.
TEST_F(ApiLevelDeathTest, ReallocOfAFreedBlockWarns) {
  check_mode("local");
  EXPECT_EXIT(
      {
        void* a = os_malloc(24);
        discard(os_malloc(24));
        os_free(a);
        void* r = os_realloc(a, 48);
        _exit(r == nullptr ? 0 : 1);
      },
      ::testing::ExitedWithCode(0),
      std::string("^osmem: warning: os_realloc \\(operation 4\\) of a freed block, user pointer ") +
          kHex + ": returns NULL and changes nothing; freed by operation 3 \\(called from " + kHex +
          "\\)\n$");
}

// ---- slack overflow, leaks and statistics (debug records) ---------------------

// The records are reserved when the library loads, so these run in a
// re-executed child (threadsafe death tests) whose environment has the
// variables from the start.

// malloc(10) and a write to byte 10: inside the 16-byte block, past the
// request. Caught on free, naming the block, the request, the operation
// that made it and the byte.
TEST_F(ApiLevelDeathTest, SlackOverflowCaughtOnFree) {
  check_mode("local");
  auto* a = static_cast<char*>(os_malloc(10));
  ASSERT_NE(os_malloc(10), nullptr);
  EXPECT_DEATH(
      {
        unseen(a + 10, 1, [&] { a[10] = 'A'; });
        os_free(a);
      },
      std::string("^osmem: heap inconsistent on entry to os_free \\(operation 3\\): write past the "
                  "requested size at block ") +
          kHex + " \\(user pointer " + kHex + "\\)\n  > " + kHex + " size 16 alloc prev 0x0 next " +
          kHex + "\n    " + kHex + " size 16 alloc prev " + kHex + " next " + kHex +
          "\n  the block: 10 bytes requested by operation 1 \\(called from " + kHex +
          "\\), capacity 16; byte 10 \\(0 past the request\\) reads 0x41, not the slack filler "
          "0xa5\n  likely cause: an overflow from this block: a write past the 10 bytes it was "
          "asked for\nosmem: heap inconsistent in os_free at 0x0: ");
}

// The last byte of the slack, on a mapped block, through realloc.
TEST_F(ApiLevelDeathTest, SlackOverflowOfAMappingCaughtOnRealloc) {
  check_mode("local");
  auto* m = static_cast<char*>(os_malloc(200001));
  ASSERT_NE(m, nullptr);
  EXPECT_DEATH(
      {
        unseen(m + 200007, 1, [&] { m[200007] = 0; });
        discard(os_realloc(m, 300000));
      },
      "write past the requested size at block (.|\n)*the block: 200001 bytes requested by "
      "operation 1 \\(called from 0x[0-9a-f]+\\), capacity 200008; byte 200007 \\(6 past the "
      "request\\) reads 0x0, not the slack filler 0xa5");
}

// Far from every later operation, the sweep finds it.
TEST_F(ApiLevelDeathTest, SlackOverflowFoundByTheSweep) {
  check_mode("sweep:4");
  std::vector<char*> blocks;
  blocks.reserve(64);
  for (int i = 0; i < 64; ++i) blocks.push_back(static_cast<char*>(os_malloc(20)));
  EXPECT_DEATH(
      {
        unseen(blocks[10] + 20, 1, [&] { blocks[10][20] ^= 0x01; });
        for (int i = 0; i < 100; ++i) os_free(os_malloc(300000));
      },
      "on exit from os_(malloc|free) \\(operation [0-9]+\\): write past the requested size at "
      "block (.|\n)*byte 20 \\(0 past the request\\) reads 0xa4");
}

// The control: with no check level the slack is neither filled nor checked.
TEST_F(ApiLevelDeathTest, SlackNotCheckedWhenOff) {
  check_mode("off");
  EXPECT_EXIT(
      {
        auto* a = static_cast<char*>(os_malloc(10));
        unseen(a + 10, 1, [&] { a[10] = 'A'; });
        os_free(a);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// Realloc in place keeps the record in step: growing from 10 to 14 bytes
// makes bytes 10..13 the user's, so writing them is no overflow.
TEST_F(ApiLevelDeathTest, ReallocInPlaceMovesTheSlack) {
  check_mode("local");
  EXPECT_EXIT(
      {
        auto* a = static_cast<char*>(os_malloc(10));
        if (os_malloc(10) == nullptr) _exit(1);
        auto* b = static_cast<char*>(os_realloc(a, 14));
        if (b != a) _exit(2);
        std::memset(b, 'x', 14);
        os_free(b);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// One call site three times: a count the optimiser cannot see, so the loop
// is not unrolled into three call sites (three return addresses).
volatile int g_three = 3;
int leaky_call_site_a() {
  for (int i = 0; i < g_three; ++i) discard(os_malloc(24));
  return 0;
}
int leaky_call_site_b() {
  discard(os_calloc(1, 100));
  return 0;
}

TEST_F(ApiLevelDeathTest, LeaksGroupedBySizeAndCaller) {
  check_mode("off");
  ASSERT_EQ(setenv("OSMEM_LEAKS", "1", 1), 0);
  ASSERT_EQ(unsetenv("OSMEM_STATS"), 0);
  EXPECT_EXIT(
      {
        leaky_call_site_a();
        leaky_call_site_b();
        os_free(os_malloc(24));  // freed: not a leak
        std::exit(0);
      },
      ::testing::ExitedWithCode(0),
      "^osmem: leaks at exit: 4 block\\(s\\), 172 byte\\(s\\) requested and never freed, in 2 "
      "group\\(s\\) by size and caller\n"
      "  1 x 100 bytes = 100 bytes, from 0x[0-9a-f]+ \\([^)]*debug_checks_test\\), first at "
      "operation 4\n"
      "  3 x 24 bytes = 72 bytes, from 0x[0-9a-f]+ \\([^)]*debug_checks_test\\), first at "
      "operation 1\n$");
}

// More groups than the report lists (50), and more than its table holds
// (7/8 of 1,024 slots): the rest are counted, not lost. 1,000 sizes from
// one call site make 1,000 groups: 896 in the table, 104 blocks past it.
TEST_F(ApiLevelDeathTest, LeaksPastTheListAndTheTableAreCounted) {
  check_mode("off");
  ASSERT_EQ(setenv("OSMEM_LEAKS", "1", 1), 0);
  ASSERT_EQ(unsetenv("OSMEM_STATS"), 0);
  EXPECT_EXIT(
      {
        for (std::size_t n = 1; n <= 1000; ++n) discard(os_malloc(n));
        std::exit(0);
      },
      ::testing::ExitedWithCode(0),
      "^osmem: leaks at exit: 1000 block\\(s\\), 500500 byte\\(s\\) requested and never freed, "
      "in 896 group\\(s\\) by size and caller\n"
      "(  1 x [0-9]+ bytes = [0-9]+ bytes, from 0x[0-9a-f]+ \\([^)]*\\), first at operation "
      "[0-9]+\n){50}"
      "  \\.\\.\\. and 846 smaller group\\(s\\)\n"
      "  104 block\\(s\\), [0-9]+ bytes, in groups past the report's table\n$");
}

TEST_F(ApiLevelDeathTest, StatisticsAtExit) {
  check_mode("sweep:2");
  ASSERT_EQ(setenv("OSMEM_STATS", "1", 1), 0);
  ASSERT_EQ(unsetenv("OSMEM_LEAKS"), 0);
  EXPECT_EXIT(
      {
        void* a = os_malloc(24);
        discard(os_malloc(300000));
        os_free(a);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0),
      "^osmem: statistics at exit\n  heap_blocks 1\n  free_blocks 1\n  heap_bytes_in_use 0\n"
      "(.|\n)*  mapped_blocks 1\n(.|\n)*  sbrk_calls 1\n  mmap_calls 1\n  munmap_calls 0\n"
      "(.|\n)*  operations 3\n  sweep_blocks_examined [0-9]+\n  sweep_rounds [0-9]+\n"
      "  debug_records 1\n$");
}

}  // namespace
}  // namespace osmem
