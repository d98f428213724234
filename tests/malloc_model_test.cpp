// The malloc policy (docs/contract.md part II) on the engine and on the
// reference model side by side: per rule M1-M9, the addresses and source
// calls the contract gives (worked out by hand here), the model predicting
// them, and the engine (Heap<FakeSource, MallocConfig>) agreeing; then long
// random runs where after every step the returned address, errno, the
// source call log, the heap blocks and the mappings agree.
//
// OSMEM_MALLOC_DIFF_OPS sets the number of steps per seed (default 6000).
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "fake_source.hpp"
#include "heap.hpp"
#include "model/model.hpp"
#include "model/rng.hpp"

namespace osmem::model {
namespace {

using MHeap = Heap<FakeSource, MallocConfig>;
constexpr std::size_t KiB = 1024;

struct Fatal {
  ErrorKind kind;
};
void throwing_handler(ErrorKind kind, const char*, const void*) {
  throw Fatal{kind};
}

std::uintptr_t address(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p);
}

// A pointer as both sides know it.
struct Live {
  void* p;  // the engine's
  Addr a;   // the model's
};

// What a random run exercised, counted from the agreed call logs and
// results, so a generator that stops reaching a rule fails the test.
struct Coverage {
  std::size_t trims = 0;           // sbrk(-k) (M6)
  std::size_t trims_refused = 0;   // sbrk(0) not at the top's end (M6)
  std::size_t remaps = 0;          // mremap that succeeded (M7)
  std::size_t remaps_failed = 0;   // mremap that failed (M7)
  std::size_t partial_unmaps = 0;  // aligned mappings trimmed to pages (M8)
  std::size_t aligned_heap = 0;    // aligned blocks carved from the heap (M8)
  std::size_t failed_sbrk = 0;     // sbrk failures (injected or out of room)
  std::size_t max_segments = 0;    // foreign breaks (M5) started segments
  std::size_t enomem = 0;          // NULL with ENOMEM (M3)
};

// One engine over one fake source, one model under the malloc policy, and
// the comparison of everything observable after each step.
class Pair {
 public:
  explicit Pair(FakeLimits limits = {})
      : source_(limits),
        heap_(source_, 0x6d616c6c6f63),
        model_(limits, FakeSource::kPageSize, Policy::malloc_policy()) {
    heap_.set_error_handler(throwing_handler);
    model_.set_heap_base(address(source_.heap_base()));
    // Where mmap put a mapping decides alignments beyond the page (M8):
    // the model is told what the source told the engine.
    model_.set_map_address(
        [this](std::size_t serial) { return address(source_.mapping_base(serial)); });
  }

  // Each operation runs on the engine, then the model, and returns what
  // both returned; differences go to `diff()`.
  Live malloc(std::size_t n) {
    errno = 0;
    void* p = heap_.malloc(n);
    const int err = errno;
    return settle("malloc(" + std::to_string(n) + ")", p, model_.malloc(n), err);
  }
  Live calloc(std::size_t nmemb, std::size_t size) {
    errno = 0;
    void* p = heap_.calloc(nmemb, size);
    const int err = errno;
    return settle("calloc(" + std::to_string(nmemb) + ", " + std::to_string(size) + ")", p,
                  model_.calloc(nmemb, size), err);
  }
  Live realloc(Live b, std::size_t n) {
    errno = 0;
    void* p = heap_.realloc(b.p, n);
    const int err = errno;
    return settle("realloc(" + to_string(b.a) + ", " + std::to_string(n) + ")", p,
                  model_.realloc(b.a, n), err);
  }
  Live aligned(std::size_t align, std::size_t n) {
    errno = 0;
    void* p = heap_.aligned_malloc(align, n);
    const int err = errno;
    const Live got =
        settle("aligned_malloc(" + std::to_string(align) + ", " + std::to_string(n) + ")", p,
               model_.aligned_malloc(align, n), err);
    if (align > 16 && got.a.kind == Addr::Kind::Heap) ++coverage_.aligned_heap;
    if (p != nullptr && address(p) % align != 0)
      note("aligned_malloc(" + std::to_string(align) + "): misaligned");
    return got;
  }
  void free(Live b) {
    errno = 0;
    heap_.free(b.p);
    model_.free(b.a);
    const int err = errno;
    settle("free(" + to_string(b.a) + ")", nullptr, Addr::null(), err);
  }
  bool trim(std::size_t pad) {
    const bool got = heap_.trim(pad);
    const bool want = model_.trim(pad);
    if (got != want) note("trim(" + std::to_string(pad) + ") returned " + std::to_string(got));
    settle("trim(" + std::to_string(pad) + ")", nullptr, Addr::null(), 0);
    return want;
  }
  std::size_t usable_size(Live b) {
    const std::size_t got = heap_.usable_size(b.p);
    const std::size_t want = model_.usable_size(b.a);
    if (got != want) {
      note("usable_size(" + to_string(b.a) + ") is " + std::to_string(got) + ", model " +
           std::to_string(want));
    }
    return want;
  }

  // Fault injection and foreign sbrk on both sides.
  void fail_next_extend() {
    source_.fail_next_extend();
    model_.fail_next_extend();
  }
  void fail_next_map() {
    source_.fail_next_map();
    model_.fail_next_map();
  }
  void foreign_extend(std::size_t delta) {
    if (source_.foreign_extend(delta) != model_.foreign_extend(delta))
      note("foreign_extend differs");
  }
  void foreign_extend_before_call(std::size_t nth, std::size_t delta) {
    source_.foreign_extend_before_call(nth, delta);
    model_.foreign_extend_before_call(nth, delta);
  }

  // The calls of the last step, as the model predicted them (the engine's
  // agreed, or diff() says otherwise).
  const std::vector<std::string>& calls() const { return last_calls_; }
  // Empty while engine and model agree; else what differed first.
  const std::string& diff() const { return diff_; }
  Model& model() { return model_; }
  MHeap& engine() { return heap_; }
  const Coverage& coverage() const { return coverage_; }
  FakeSource& source() { return source_; }

 private:
  void note(const std::string& what) {
    if (diff_.empty()) diff_ = what + "\nmodel:\n" + model_.dump();
  }

  Addr addr_of(const void* p) {
    if (p == nullptr) return Addr::null();
    if (source_.in_heap_buffer(p)) {
      return Addr::heap(
          static_cast<std::size_t>(static_cast<const std::byte*>(p) - source_.heap_base()));
    }
    if (const std::size_t serial = source_.mapping_serial(p)) return Addr::mapped(serial);
    note("the engine returned a pointer neither in the heap nor in a mapping");
    return Addr::null();
  }

  Live settle(const std::string& op, void* p, Addr want, int err) {
    const Addr got = addr_of(p);
    if (!(got == want))
      note(op + ": engine returned " + to_string(got) + ", model " + to_string(want));
    if (p != nullptr && address(p) % 16 != 0) note(op + ": a pointer that is not 16-aligned (M1)");
    const int want_err = p == nullptr && model_.last_enomem() ? ENOMEM : 0;
    if (want_err != 0) ++coverage_.enomem;
    if (err != want_err)
      note(op + ": errno " + std::to_string(err) + ", model says " + std::to_string(want_err));
    compare_calls(op);
    compare_heap(op);
    return Live{p, want};
  }

  void compare_calls(const std::string& op) {
    std::vector<SourceCall> engine;
    for (std::size_t i = 0; i < source_.call_count(); ++i) engine.push_back(source_.call(i));
    if (source_.overflowed()) note(op + ": the source's call log overflowed");
    const std::vector<SourceCall>& want = model_.calls();
    bool same = engine.size() == want.size();
    for (std::size_t i = 0; same && i < engine.size(); ++i) {
      same = engine[i].kind == want[i].kind && engine[i].ok == want[i].ok &&
             engine[i].arg == want[i].arg && engine[i].result == want[i].result;
    }
    if (!same) {
      std::ostringstream s;
      s << op << ": source calls differ\n  engine:";
      for (const auto& c : to_strings(engine)) s << " [" << c << "]";
      s << "\n  model: ";
      for (const auto& c : to_strings(want)) s << " [" << c << "]";
      note(s.str());
    }
    tally(want);
    last_calls_ = model_.call_strings();
    source_.clear_calls();
    model_.clear_calls();
  }

  void compare_heap(const std::string& op) {
    const std::vector<Block>& want = model_.heap_blocks();
    std::size_t i = 0;
    for (const BlockMeta* b = heap_.blocks().head(); b != nullptr; b = next_of(b), ++i) {
      const OpenHeader open(b);
      const auto offset =
          static_cast<std::size_t>(reinterpret_cast<const std::byte*>(b) - source_.heap_base());
      if (i >= want.size() || !(want[i] == Block{offset, b->size, b->status})) {
        note(op + ": heap block " + std::to_string(i) + " at +" + std::to_string(offset) +
             " size " + std::to_string(b->size) + " status " +
             std::to_string(static_cast<int>(b->status)) + " differs from the model's");
        return;
      }
    }
    if (i != want.size()) note(op + ": the engine has " + std::to_string(i) + " heap blocks");
    if (heap_.mappings().count() != model_.mappings().size() ||
        source_.live_mappings() != model_.mappings().size()) {
      note(op + ": live mapping counts differ");
    }
    if (source_.live_mapped_bytes() != model_.live_mapped_bytes())
      note(op + ": live mapped bytes differ");
    if (source_.break_offset() != model_.break_offset()) note(op + ": the break differs");
    if (source_.misuse_count() != 0) note(op + ": the engine misused the source");
    Violation v[4];
    if (const std::size_t n = heap_.check(v, 4); n != 0) {
      note(op + ": the checker found " + std::to_string(n) + " violation(s), first " +
           invariant_name(v[0].invariant));
    }
    if (const std::string m = model_.check(); !m.empty()) note(op + ": model invariant: " + m);
  }

  void tally(const std::vector<SourceCall>& calls) {
    for (std::size_t i = 0; i < calls.size(); ++i) {
      const SourceCall& c = calls[i];
      const bool down = c.kind == SourceCall::Kind::Extend && c.arg > SIZE_MAX / 2;
      if (c.kind == SourceCall::Kind::Extend && !c.ok) ++coverage_.failed_sbrk;
      if (down && c.ok) ++coverage_.trims;
      // sbrk(0) not followed by sbrk(-k): the break had moved past the top.
      if (c.kind == SourceCall::Kind::Extend && c.ok && c.arg == 0 &&
          (i + 1 == calls.size() || calls[i + 1].kind != SourceCall::Kind::Extend)) {
        ++coverage_.trims_refused;
      }
      if (c.kind == SourceCall::Kind::Remap) ++(c.ok ? coverage_.remaps : coverage_.remaps_failed);
      if (c.kind == SourceCall::Kind::Unmap && i > 0 &&
          calls[i - 1].kind == SourceCall::Kind::Map && calls[i - 1].ok) {
        ++coverage_.partial_unmaps;
      }
    }
    // Heap segments: each block that does not touch the one before starts one.
    const std::vector<Block>& b = model_.heap_blocks();
    std::size_t segments = b.empty() ? 0 : 1;
    for (std::size_t i = 1; i < b.size(); ++i) {
      if (b[i - 1].offset + 32 + b[i - 1].size != b[i].offset) ++segments;
    }
    coverage_.max_segments = std::max(coverage_.max_segments, segments);
  }

  FakeSource source_;
  MHeap heap_;
  Model model_;
  Coverage coverage_;
  std::vector<std::string> last_calls_;
  std::string diff_;
};

using Calls = std::vector<std::string>;
std::vector<Block> blocks(std::initializer_list<Block> l) {
  return l;
}
constexpr Status F = Status::Free;
constexpr Status A = Status::Alloc;

// ---- M1, M2: 16-byte alignment and sizes; zero-byte requests -------------------

TEST(MallocModel, M1SizesRoundTo16AndSplitsNeed48) {
  Pair t;
  const Live a = t.malloc(1);
  EXPECT_EQ(a.a, Addr::heap(0x20));
  EXPECT_EQ(t.calls(), (Calls{"sbrk(131072) -> +0x0"}));
  const Live b = t.malloc(24);  // 32, not 24: the next header stays 16-aligned
  EXPECT_EQ(b.a, Addr::heap(0x50));
  EXPECT_EQ(t.usable_size(b), 32u);
  EXPECT_EQ(t.model().heap_blocks(), blocks({{0x0, 16, A}, {0x30, 32, A}, {0x70, 130928, F}}));
  // A 130928-byte block asked for 130896: 32 left, under 48: no split.
  const Live c = t.malloc(130896);
  EXPECT_EQ(c.a, Addr::heap(0x90));
  EXPECT_EQ(t.usable_size(c), 130928u);
  EXPECT_TRUE(t.calls().empty());
  EXPECT_EQ(t.diff(), "");
}

TEST(MallocModel, M2ZeroBytesAreUnique16ByteBlocks) {
  Pair t;
  const Live a = t.malloc(0);
  const Live b = t.calloc(0, 7);
  const Live c = t.calloc(7, 0);
  const Live d = t.realloc(Live{nullptr, Addr::null()}, 0);
  EXPECT_EQ(a.a, Addr::heap(0x20));
  EXPECT_EQ(b.a, Addr::heap(0x50));
  EXPECT_EQ(c.a, Addr::heap(0x80));
  EXPECT_EQ(d.a, Addr::heap(0xb0));
  EXPECT_EQ(t.usable_size(d), 16u);
  // realloc(p, 0) frees p and returns NULL, errno untouched.
  EXPECT_TRUE(t.realloc(b, 0).a.is_null());
  EXPECT_FALSE(t.model().last_enomem());
  EXPECT_EQ(t.model().heap_blocks()[1], (Block{0x30, 16, F}));
  t.free(a);
  t.free(c);
  t.free(d);
  EXPECT_EQ(t.model().heap_blocks(), blocks({{0x0, 131040, F}}));
  EXPECT_EQ(t.diff(), "");
}

// ---- M3: failures ---------------------------------------------------------------

TEST(MallocModel, M3OverflowingSizesAreEnomemWithoutACall) {
  Pair t;
  EXPECT_TRUE(t.malloc(SIZE_MAX - 40).a.is_null());
  EXPECT_TRUE(t.model().last_enomem());
  // Rounds to SIZE_MAX - 47, but its whole pages do not fit in a size_t.
  EXPECT_TRUE(t.malloc(SIZE_MAX - 47).a.is_null());
  EXPECT_TRUE(t.model().last_enomem());
  EXPECT_TRUE(t.calloc(SIZE_MAX / 2, 3).a.is_null());
  EXPECT_TRUE(t.aligned(1 << 20, SIZE_MAX - (1 << 19)).a.is_null());
  EXPECT_TRUE(t.model().last_enomem());
  EXPECT_TRUE(t.calls().empty());
  const Live a = t.malloc(100);
  EXPECT_TRUE(t.realloc(a, SIZE_MAX - 20).a.is_null());
  EXPECT_TRUE(t.model().last_enomem());
  EXPECT_EQ(t.diff(), "");
}

TEST(MallocModel, M3ExhaustedMemoryIsEnomem) {
  Pair t;
  t.fail_next_extend();
  t.fail_next_map();
  EXPECT_TRUE(t.malloc(10).a.is_null());
  EXPECT_TRUE(t.model().last_enomem());
  EXPECT_EQ(t.calls(), (Calls{"sbrk(131072) failed", "mmap(4096) failed"}));
  EXPECT_EQ(t.diff(), "");
}

// ---- M4: thresholds and whole pages -------------------------------------------

TEST(MallocModel, M4MappedBlocksOwnWholePagesAndCallocMapsAtTheThreshold) {
  Pair t;
  const Live a = t.malloc(131025);  // 131040 + 32 reaches 128 KiB
  EXPECT_EQ(a.a, Addr::mapped(1));
  EXPECT_EQ(t.calls(), (Calls{"mmap(131072) -> #1"}));
  const Live b = t.calloc(1, 200000);
  EXPECT_EQ(b.a, Addr::mapped(2));
  EXPECT_EQ(t.calls(), (Calls{"mmap(200704) -> #2"}));
  EXPECT_EQ(t.usable_size(b), 200672u);  // to the end of its 49th page
  const Live c = t.calloc(1, 5000);      // above a page: still the heap (no page threshold)
  EXPECT_EQ(c.a, Addr::heap(0x20));
  const Live d = t.malloc(131024);
  EXPECT_EQ(d.a.kind, Addr::Kind::Heap);
  t.free(b);
  EXPECT_EQ(t.calls(), (Calls{"munmap(#2, 200704)"}));
  EXPECT_EQ(t.diff(), "");
}

// ---- M5: growth ---------------------------------------------------------------

TEST(MallocModel, M5GrowthIsAtLeast128KiBInPagesWithTheSurplusFreeOnTop) {
  Pair t;
  const Live a = t.malloc(100000);
  EXPECT_EQ(a.a, Addr::heap(0x20));
  const Live b = t.malloc(40000);  // 8992 missing: sbrk(131072)
  EXPECT_EQ(b.a, Addr::heap(100064));
  EXPECT_EQ(t.calls(), (Calls{"sbrk(131072) -> +0x20000"}));
  EXPECT_EQ(t.model().heap_blocks(),
            blocks({{0, 100000, A}, {100032, 40000, A}, {140064, 122048, F}}));
  // The heap ends full with an ALLOC block: the next growth appends a
  // block of 128 KiB and splits it.
  const Live c = t.malloc(122048);
  EXPECT_EQ(c.a, Addr::heap(140096));
  const Live d = t.malloc(64);
  EXPECT_EQ(t.calls(), (Calls{"sbrk(131072) -> +0x40000"}));
  EXPECT_EQ(d.a, Addr::heap(262144 + 32));
  EXPECT_EQ(t.model().heap_blocks().back(), (Block{262144 + 96, 131072 - 96 - 32, F}));
  EXPECT_EQ(t.diff(), "");
}

TEST(MallocModel, M5AForeignBreakStartsASegmentThatTakesTheWholeGrowth) {
  Pair t;
  t.malloc(16);
  t.foreign_extend(5);
  const Live a = t.malloc(131000);  // 131008 does not fit the 130992 left
  EXPECT_EQ(t.calls(), (Calls{"sbrk(131072) -> +0x20005"}));
  // The segment runs from ALIGN16(0x20005) to the break rounded down; 16
  // bytes more than asked, too few to split off.
  EXPECT_EQ(a.a, Addr::heap(131088 + 32));
  EXPECT_EQ(t.model().heap_blocks().back(), (Block{131088, 131024, A}));
  EXPECT_EQ(t.model().heap_blocks()[1], (Block{48, 130992, F}));
  EXPECT_EQ(t.diff(), "");
}

// ---- M6: trim -------------------------------------------------------------------

TEST(MallocModel, M6FreeTrimsTheTopDownTo128KiB) {
  Pair t;
  const Live a = t.malloc(100000);
  const Live b = t.malloc(100000);
  EXPECT_EQ(b.a, Addr::heap(100064));
  t.free(b);  // the top: 162080 bytes FREE, 31008 above the pad: 7 pages go
  EXPECT_EQ(t.calls(), (Calls{"sbrk(0) -> +0x40000", "sbrk(-28672) -> +0x40000"}));
  EXPECT_EQ(t.model().heap_blocks().back(), (Block{100032, 133408, F}));
  // malloc_trim(0) keeps one alignment unit.
  EXPECT_TRUE(t.trim(0));
  EXPECT_EQ(t.calls(), (Calls{"sbrk(0) -> +0x39000", "sbrk(-131072) -> +0x39000"}));
  EXPECT_EQ(t.model().heap_blocks().back(), (Block{100032, 2336, F}));
  EXPECT_FALSE(t.trim(0));  // less than a page above the pad: no call
  EXPECT_TRUE(t.calls().empty());
  t.free(a);
  EXPECT_TRUE(t.calls().empty());  // 100000 + 32 + 2336 is under the threshold
  EXPECT_EQ(t.diff(), "");
}

TEST(MallocModel, M6NoTrimWhenTheBreakMovedPastTheTop) {
  Pair t;
  t.malloc(100000);
  const Live b = t.malloc(100000);
  t.foreign_extend(100);
  t.free(b);
  EXPECT_EQ(t.calls(), (Calls{"sbrk(0) -> +0x40064"}));
  EXPECT_EQ(t.model().heap_blocks().back(), (Block{100032, 162080, F}));
  EXPECT_EQ(t.diff(), "");
}

TEST(MallocModel, M6AnInPlaceShrinkTrims) {
  Pair t;
  t.malloc(16);
  t.malloc(130000);
  const Live c = t.malloc(125000);
  const Live d = t.malloc(120000);
  EXPECT_EQ(d.a, Addr::heap(255152));
  t.free(c);
  EXPECT_TRUE(t.calls().empty());  // not the top
  const Live e = t.realloc(d, 16);
  EXPECT_EQ(e.a, d.a);
  // 119952 split off, merged with the 18032 on top: 138016, one page over.
  EXPECT_EQ(t.calls(), (Calls{"sbrk(0) -> +0x60000", "sbrk(-4096) -> +0x60000"}));
  EXPECT_EQ(t.model().heap_blocks().back(), (Block{255168, 133920, F}));
  EXPECT_EQ(t.diff(), "");
}

// ---- M7: realloc of mapped blocks -------------------------------------------

TEST(MallocModel, M7MappedBlocksStayWithinTheirPagesAndMremapOtherwise) {
  Pair t;
  const Live p = t.malloc(200000);
  EXPECT_EQ(t.calls(), (Calls{"mmap(200704) -> #1"}));
  Live p1 = t.realloc(p, 200600);  // fits the 49 pages
  EXPECT_EQ(p1.a, Addr::mapped(1));
  EXPECT_EQ(p1.p, p.p);
  EXPECT_TRUE(t.calls().empty());
  // A growth: the fake source always moves it, keeping the serial.
  p1 = t.realloc(p1, 300000);
  EXPECT_EQ(p1.a, Addr::mapped(1));
  EXPECT_EQ(t.calls(), (Calls{"mremap(#1, 303104)"}));
  EXPECT_EQ(t.usable_size(p1), 303072u);
  p1 = t.realloc(p1, 150000);
  EXPECT_EQ(p1.a, Addr::mapped(1));
  EXPECT_EQ(t.calls(), (Calls{"mremap(#1, 151552)"}));
  // A failed growth moves by malloc-copy-free.
  t.fail_next_map();
  const Live q = t.realloc(p1, 400000);
  EXPECT_EQ(q.a, Addr::mapped(2));
  EXPECT_EQ(t.calls(),
            (Calls{"mremap(401408) failed", "mmap(401408) -> #2", "munmap(#1, 151552)"}));
  // A failed shrink keeps the block as it was.
  t.fail_next_map();
  EXPECT_EQ(t.realloc(q, 140000).a, Addr::mapped(2));
  EXPECT_EQ(t.calls(), (Calls{"mremap(143360) failed"}));
  EXPECT_EQ(t.usable_size(q), 401376u);
  // Below the threshold it moves to the heap.
  EXPECT_EQ(t.realloc(q, 1000).a, Addr::heap(0x20));
  EXPECT_EQ(t.calls(), (Calls{"sbrk(131072) -> +0x0", "munmap(#2, 401408)"}));
  EXPECT_EQ(t.diff(), "");
}

// ---- M8: aligned allocation ---------------------------------------------------

TEST(MallocModel, M8AlignedBlocksAreCarvedWithAFreeLead) {
  Pair t;
  // 112 + 64 + 48 = 224 bytes; payload 0x20 is not 64-aligned and 0x40
  // leaves a 32-byte lead (under 48): 0x80.
  const Live a = t.aligned(64, 100);
  EXPECT_EQ(a.a, Addr::heap(0x80));
  EXPECT_EQ(t.model().heap_blocks(), blocks({{0x0, 64, F}, {0x60, 128, A}, {0x100, 130784, F}}));
  const Live b = t.aligned(4096, 10);
  EXPECT_EQ(b.a, Addr::heap(0x1000));
  EXPECT_EQ(t.model().heap_blocks(), blocks({{0x0, 64, F},
                                             {0x60, 128, A},
                                             {0x100, 3776, F},
                                             {0xfe0, 16, A},
                                             {0x1010, 130784 - 3776 - 32 - 16 - 32, F}}));
  EXPECT_TRUE(t.calls().empty());
  // The lead merges with a FREE block before it.
  t.free(a);
  EXPECT_EQ(t.model().heap_blocks()[0], (Block{0x0, 3776 + 32 + 128 + 32 + 64, F}));
  // Alignments up to 16 are malloc's.
  EXPECT_EQ(t.aligned(16, 10).a, Addr::heap(0x20));
  EXPECT_EQ(t.diff(), "");
}

TEST(MallocModel, M8LargeAlignedBlocksGetAMappingTrimmedToWholePages) {
  Pair t;
  // 200624 + 64 + 48 + 32 reaches the threshold: map 200624 + 64 + 32 in
  // pages (50), keep the pages up to the block's end (49).
  const Live a = t.aligned(64, 200624);
  EXPECT_EQ(a.a, Addr::mapped(1));
  EXPECT_EQ(t.calls(), (Calls{"mmap(204800) -> #1", "munmap(#1, 4096)"}));
  EXPECT_EQ(t.usable_size(a), 200640u);
  EXPECT_EQ(t.model().mappings()[0], (Mapping{1, 200640, 64}));
  // It is realloc'ed by mremap of what it spans, header offset included.
  const Live a1 = t.realloc(a, 300000);
  EXPECT_EQ(a1.a, Addr::mapped(1));
  EXPECT_EQ(t.calls(), (Calls{"mremap(#1, 303104)"}));
  t.free(a1);
  EXPECT_EQ(t.calls(), (Calls{"munmap(#1, 303104)"}));
  // Beyond the page the pages before the header's go too: how many
  // depends on where mmap put the mapping, which the model is told.
  const Live b = t.aligned(std::size_t{1} << 20, 16);
  ASSERT_EQ(b.a, Addr::mapped(2));
  ASSERT_GE(t.calls().size(), 2u);
  EXPECT_EQ(t.calls()[0], "mmap(1052672) -> #2");
  EXPECT_EQ(t.model().mappings()[0].size + t.model().mappings()[0].offset, 8192u);
  t.free(b);
  EXPECT_EQ(t.calls(), (Calls{"munmap(#2, 8192)"}));
  EXPECT_EQ(t.diff(), "");
}

TEST(MallocModel, M8AHeapThatCannotGrowMapsTheAlignedBlock) {
  Pair t;
  t.fail_next_extend();
  const Live a = t.aligned(64, 100);
  EXPECT_EQ(a.a, Addr::mapped(1));
  EXPECT_EQ(t.calls(), (Calls{"sbrk(131072) failed", "mmap(4096) -> #1"}));
  EXPECT_EQ(t.model().mappings()[0], (Mapping{1, 4032, 64}));
  t.free(a);
  EXPECT_EQ(t.calls(), (Calls{"munmap(#1, 4096)"}));
  EXPECT_EQ(t.diff(), "");
}

// ---- M9: realloc of a freed block ---------------------------------------------

TEST(MallocModel, M9ReallocOfAFreedBlockIsFatalOnBoth) {
  Pair t;
  const Live a = t.malloc(100);
  t.malloc(100);  // a's header stays a block of its own
  t.free(a);
  bool fatal = false;
  try {
    t.engine().realloc(a.p, 50);
  } catch (const Fatal& f) {
    fatal = f.kind == ErrorKind::UseAfterFree;
  }
  EXPECT_TRUE(fatal);
  EXPECT_THROW(t.model().realloc(a.a, 50), std::logic_error);
  EXPECT_EQ(t.diff(), "");
}

// ---- everything at once: random runs ------------------------------------------

std::size_t steps_per_seed() {
  if (const char* s = std::getenv("OSMEM_MALLOC_DIFF_OPS")) return std::strtoull(s, nullptr, 10);
  return 6000;
}

// Mostly small sizes, some at the split and mmap thresholds, some mapped.
std::size_t draw_size(Rng& r) {
  switch (r.below(8)) {
    case 0:
      return r.below(17);  // zero included (M2)
    case 1:
      return 20 + r.below(60);
    case 2:
      return 1 + r.below(4096);
    case 3:
      return 131000 + r.below(80);  // around the threshold (M4)
    case 4:
      return 1 + r.below(300 * KiB);
    default:
      return 1 + r.below(40000);
  }
}

std::size_t draw_alignment(Rng& r) {
  // 16 is malloc's; 32 to 64 KiB are carved from the heap (or mapped when
  // large); 1 MiB always maps.
  if (r.below(10) == 0) return std::size_t{1} << 20;
  return std::size_t{16} << r.below(13);
}

// Adds what the run exercised to `total`.
// Foreign breaks are optional: one above the top stops every later trim.
void run_seed(std::uint64_t seed, FakeLimits limits, bool foreign, Coverage& total) {
  Pair t(limits);
  Rng r{seed};
  std::vector<Live> live;
  const std::size_t steps = steps_per_seed();
  for (std::size_t step = 0; step < steps; ++step) {
    const std::size_t pick = live.empty() ? 0 : r.below(live.size());
    std::string op;
    switch (r.below(20)) {
      case 0:
      case 1:
      case 2:
      case 3: {
        const Live b = t.malloc(draw_size(r));
        if (b.p != nullptr) live.push_back(b);
        break;
      }
      case 4: {
        const std::size_t nmemb = r.below(4);
        const Live b = t.calloc(nmemb, r.below(3) == 0 ? 0 : draw_size(r) / (nmemb + 1));
        if (b.p != nullptr) live.push_back(b);
        break;
      }
      case 5:
      case 6:
      case 7:
      case 8: {
        if (live.empty() || r.below(10) == 0) {
          const Live b = t.realloc(Live{nullptr, Addr::null()}, draw_size(r));
          if (b.p != nullptr) live.push_back(b);
          break;
        }
        const std::size_t n = r.below(30) == 0 ? 0 : draw_size(r);
        const Live b = t.realloc(live[pick], n);
        if (b.p != nullptr) {
          live[pick] = b;
        } else if (n == 0) {
          live.erase(live.begin() + static_cast<std::ptrdiff_t>(pick));
        }
        break;
      }
      case 9:
      case 10:
      case 11:
      case 12:
      case 13:
        if (!live.empty()) {
          t.free(live[pick]);
          live.erase(live.begin() + static_cast<std::ptrdiff_t>(pick));
        }
        break;
      case 14:
      case 15: {
        const std::size_t align = draw_alignment(r);
        const Live b = t.aligned(align, r.below(2) == 0 ? r.below(600) : draw_size(r));
        if (b.p != nullptr) live.push_back(b);
        break;
      }
      case 16:
        t.trim(std::size_t{4096} * r.below(40));
        break;
      case 17:
        if (!live.empty()) t.usable_size(live[pick]);
        break;
      case 18:
        switch (r.below(4)) {
          case 0:
            t.fail_next_extend();
            break;
          case 1:
            t.fail_next_map();
            break;
          case 2:
            if (foreign) t.foreign_extend(1 + r.below(5000));
            break;
          default:
            if (foreign)
              t.foreign_extend_before_call(t.model().extend_calls() + 1 + r.below(2),
                                           1 + r.below(300));
            break;
        }
        break;
      default:
        // Keep the live set small enough that frees and reuse dominate.
        while (live.size() > 48) {
          t.free(live.back());
          live.pop_back();
        }
        break;
    }
    ASSERT_EQ(t.diff(), "") << "seed " << seed << " step " << step;
  }
  for (const Live& b : live) t.free(b);
  ASSERT_EQ(t.diff(), "") << "seed " << seed << " final frees";
  // Everything freed: no mapping is left and no heap block is ALLOC.
  EXPECT_TRUE(t.model().mappings().empty()) << "seed " << seed;
  EXPECT_EQ(t.source().live_mappings(), 0u) << "seed " << seed;
  for (const Block& b : t.model().heap_blocks())
    EXPECT_EQ(b.status, Status::Free) << "seed " << seed;
  const Coverage& c = t.coverage();
  total.trims += c.trims;
  total.trims_refused += c.trims_refused;
  total.remaps += c.remaps;
  total.remaps_failed += c.remaps_failed;
  total.partial_unmaps += c.partial_unmaps;
  total.aligned_heap += c.aligned_heap;
  total.failed_sbrk += c.failed_sbrk;
  total.max_segments = std::max(total.max_segments, c.max_segments);
  total.enomem += c.enomem;
}

void expect_everything_reached(const Coverage& c) {
  EXPECT_GT(c.trims, 0u);
  EXPECT_GT(c.trims_refused, 0u);
  EXPECT_GT(c.remaps, 0u);
  EXPECT_GT(c.remaps_failed, 0u);
  EXPECT_GT(c.partial_unmaps, 0u);
  EXPECT_GT(c.aligned_heap, 0u);
  EXPECT_GT(c.failed_sbrk, 0u);
  EXPECT_GT(c.max_segments, 1u);
  EXPECT_GT(c.enomem, 0u);
  std::printf(
      "trims %zu (refused %zu), mremap %zu (failed %zu), partial munmap %zu, aligned heap %zu, "
      "failed sbrk %zu, segments up to %zu, ENOMEM %zu\n",
      c.trims, c.trims_refused, c.remaps, c.remaps_failed, c.partial_unmaps, c.aligned_heap,
      c.failed_sbrk, c.max_segments, c.enomem);
}

TEST(MallocModel, RandomRunsAgreeStepByStep) {
  Coverage c;
  for (std::uint64_t seed : {1u, 2u, 3u, 4u}) run_seed(seed, FakeLimits{}, seed % 2 == 0, c);
  expect_everything_reached(c);
}

// A small heap and few mappings: growth, the fallback and ENOMEM are common.
TEST(MallocModel, RandomRunsAgreeUnderTightLimits) {
  FakeLimits limits;
  limits.heap_capacity = std::size_t{1} << 20;
  limits.map_capacity = std::size_t{4} << 20;
  limits.max_mappings = 16;
  Coverage c;
  for (std::uint64_t seed : {11u, 12u, 13u}) run_seed(seed, limits, seed % 2 == 0, c);
  expect_everything_reached(c);
}

}  // namespace
}  // namespace osmem::model
