// Fuzz target `api`: the same operation stream, through the real
// process-wide os_* functions over the real sbrk and mmap, under ASan.
//
// What only the real system shows: addresses and alignment of the real
// break, real mappings (ASan sees their bounds), the C ABI layer with its
// lock and errno. There is no model here: the real heap cannot be reset
// between inputs, so addresses are not predictable; the checks are the
// user-visible ones.
//
// Checked every operation: the result is 8-aligned and overlaps no live
// block, NULL comes with ENOMEM, calloc memory is zero,
// realloc kept the prefix, and the touched block's fill pattern is intact
// (blocks over 64 KiB: a sample of their bytes, see kWhole).
// Every kCheckEvery operations: os_heap_check() must be 0. At the end of
// each input: every live block's pattern, then everything is
// freed, os_heap_check() must be 0 and os_heap_stats() must show nothing in
// use. The heap is empty again, so inputs stay independent apart from the
// heap's free layout (and the break moves, see ForeignExtend below).
//
// The stream's fault operations mean, here: FailNextExtend -> os_heap_check()
// must be 0 now (unless it ran in the last kCheckEvery / 4 operations); FailNextMap ->
// os_heap_stats() must agree with what the harness holds; ForeignExtend -> a real foreign sbrk (a
// few bytes, so the heap starts a new, possibly unaligned, segment), at most kForeignBudget times
// per process so that segments cannot pile up over a long run.
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "model/pattern.hpp"
#include "op_stream.hpp"
#include "osmem/osmem.h"

namespace {

using namespace osmem::fuzz;

constexpr std::size_t kMaxSteps = 256;
// The full checker runs after every kCheckEvery operations and at the end
// of each input. Run on entry to and exit from every call (OSMEM_CHECK=full)
// it took a fifth of the time, and the harness damages nothing between
// calls, so the entry check saw what the previous exit check had seen. The
// hook itself is tested in tests/checker_test.cpp and errors_test.cpp.
constexpr std::size_t kCheckEvery = 32;
constexpr int kForeignBudget = 64;
int g_foreign_left = kForeignBudget;

// Built twice more for bench/fuzz_throughput (fuzz/CMakeLists.txt), to
// show what the harness's own work costs. Both variants make the same calls
// as this target for the same input, os_heap_check and os_heap_stats
// included (their results ignored), so the engine's coverage, the only
// feedback, is the same. OSMEM_FUZZ_API_VARIANT 1, api_calls_only: no
// block is written or read. 2, api_fill_only: the pattern is written where
// the checks would read it, and nothing is checked.
#ifndef OSMEM_FUZZ_API_VARIANT
#define OSMEM_FUZZ_API_VARIANT 0
#endif
constexpr bool kFill = OSMEM_FUZZ_API_VARIANT != 1;
constexpr bool kChecks = OSMEM_FUZZ_API_VARIANT == 0;

struct Block {
  unsigned char* ptr;
  std::size_t size;
  std::uint8_t tag;
};

// The fill pattern and its checks (model/pattern.hpp): memcpy and memcmp
// against one table, so that filling and checking every byte of every
// block costs little next to the calls under test.
//
// Blocks up to kWhole bytes hold the pattern in every byte. Larger ones
// (mapped ones, from 128 KiB) hold it in a sample: the first kRun bytes of
// every kStride, and the last kTail bytes. Every byte would be a page
// fault per page of every fresh mapping, and an munmap of as many pages:
// most of this target's time, spent in the kernel. The sample depends only
// on the position and the block's size, so a realloc's kept prefix is
// checked where the old block held the pattern; the contents of every
// byte of big blocks are checked over the fake source (ops, faults).
// kRun is short enough that a run (which starts 32 bytes into a page, past
// the header) touches one page: runs of 4 KiB touched two, and the page
// faults of a run were a tenth of this target's page faults.
constexpr std::size_t kWhole = std::size_t{64} << 10;
constexpr std::size_t kStride = std::size_t{64} << 10;
constexpr std::size_t kRun = 512;
constexpr std::size_t kTail = 64;

// Calls f(from, to) for the ranges of a block of n bytes that hold the
// pattern, clipped to [0, limit), in address order (the tail may overlap
// the last run).
template <class F>
void for_sample(std::size_t n, std::size_t limit, F&& f) {
  const std::size_t end = n < limit ? n : limit;
  if (n <= kWhole) {
    if (end > 0) f(std::size_t{0}, end);
    return;
  }
  for (std::size_t at = 0; at < end; at += kStride) {
    const std::size_t to = at + kRun < end ? at + kRun : end;
    f(at, to);
  }
  if (n - kTail < end) f(n - kTail, end);
}

// Writes the pattern into the sample of a block of n bytes.
void fill(unsigned char* p, std::size_t n, std::uint8_t tag) {
  for_sample(n, n,
             [&](std::size_t from, std::size_t to) { osmem::pattern::fill(p, tag, from, to); });
}

// Whether the sample of a block of n bytes, clipped to its first `limit`
// bytes, holds the pattern.
bool holds_pattern(const unsigned char* p, std::size_t n, std::size_t limit, std::uint8_t tag) {
  bool ok = true;
  for_sample(n, limit, [&](std::size_t from, std::size_t to) {
    if (!ok) return;
    ok = osmem::pattern::for_runs(tag, from, to,
                                  [&](std::size_t j, const std::uint8_t* src, std::size_t len) {
                                    return std::memcmp(p + j, src, len) == 0;
                                  });
  });
  return ok;
}

// Whether the sample of a block of n bytes is zero (calloc).
bool sample_zero(const unsigned char* p, std::size_t n) {
  bool ok = true;
  for_sample(n, n, [&](std::size_t from, std::size_t to) {
    if (ok) ok = osmem::pattern::first_nonzero(p + from, to - from) == to - from;
  });
  return ok;
}

[[noreturn]] void finding(const char* what, std::size_t step) {
  std::fprintf(stderr, "\n==== osmem api: step %zu: %s\n", step, what);
  std::abort();
}

class Harness {
 public:
  void run(FuzzedDataProvider& in) {
    for (step_ = 0; step_ < kMaxSteps && in.remaining_bytes() > 0; ++step_) {
      apply(read_op(in, kFaultKinds));
      if ((step_ + 1) % kCheckEvery == 0) check_heap();
    }
    for (const Block& b : live_) verify(b);
    while (!live_.empty()) {
      os_free(live_.back().ptr);
      live_.pop_back();
    }
    if (os_heap_check() != 0 && kChecks) {
      finding("os_heap_check() found violations after freeing all", step_);
    }
    struct os_heap_stats stats {};
    os_heap_stats(&stats);
    if (!kChecks) return;
    if (stats.heap_bytes_in_use != 0 || stats.mapped_blocks != 0) {
      finding("os_heap_stats() shows memory in use after freeing all", step_);
    }
  }

 private:
  std::size_t size_of(const SizeSpec& s) const {
    std::vector<std::size_t> sizes;
    if (s.cls == SizeClass::NearLive || s.cls == SizeClass::NearFree) {
      for (const Block& b : live_) sizes.push_back(b.size);
    }
    return resolve_size(s, {}, sizes);
  }

  void check_heap() {
    last_check_ = step_;
    if (os_heap_check() != 0 && kChecks) finding("os_heap_check() found violations", step_);
  }

  void verify(const Block& b) const {
    if (!kChecks) return;
    if (!holds_pattern(b.ptr, b.size, b.size, b.tag)) {
      finding("a live block lost its contents", step_);
    }
  }

  // A new block: aligned, overlapping nothing; fills its sample (again over
  // a kept prefix, which was checked where the old block's sample lay).
  void adopt(void* p, std::size_t n, bool zeroed, std::uint8_t tag) {
    auto* bytes = static_cast<unsigned char*>(p);
    live_.push_back({bytes, n, tag});
    if (!kChecks) {
      if (kFill) fill(bytes, n, tag);
      return;
    }
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    if (a % 8 != 0) finding("returned a misaligned pointer", step_);
    auto it = extents_.lower_bound(a);
    if (it != extents_.end() && it->first < a + n) finding("new block overlaps a live one", step_);
    if (it != extents_.begin() && std::prev(it)->first + std::prev(it)->second > a) {
      finding("new block overlaps a live one", step_);
    }
    if (zeroed && !sample_zero(bytes, n)) finding("calloc memory is not zero", step_);
    fill(bytes, n, tag);
    extents_[a] = n;
  }

  void expect_null(void* p, std::size_t n, int err) const {
    if (p != nullptr) return;
    if (n != 0 && err != ENOMEM) finding("NULL for a non-zero size without ENOMEM", step_);
  }

  void drop(std::size_t i) {
    extents_.erase(reinterpret_cast<std::uintptr_t>(live_[i].ptr));
    live_.erase(live_.begin() + static_cast<long>(i));
  }

  void apply(const Op& op) {
    switch (op.kind) {
      case OpKind::Malloc:
      case OpKind::ReallocNull: {
        const std::size_t n = size_of(op.size);
        errno = 0;
        void* p = op.kind == OpKind::Malloc ? os_malloc(n) : os_realloc(nullptr, n);
        expect_null(p, n, errno);
        if (p != nullptr) adopt(p, n, false, next_tag());
        break;
      }
      case OpKind::Calloc: {
        const CallocArgs a = calloc_args(op, size_of(op.size));
        std::size_t total = 0;
        const bool overflow = __builtin_mul_overflow(a.nmemb, a.size, &total);
        errno = 0;
        void* p = os_calloc(a.nmemb, a.size);
        if (overflow && p != nullptr)
          finding("calloc succeeded although nmemb * size overflows", step_);
        expect_null(p, total, errno);
        if (p != nullptr) adopt(p, total, true, next_tag());
        break;
      }
      case OpKind::Realloc: {
        const std::size_t n = size_of(op.size);
        if (live_.empty()) break;
        const std::size_t i = op.pick % live_.size();
        const Block old = live_[i];
        verify(old);
        errno = 0;
        void* p = os_realloc(old.ptr, n);
        const int err = errno;
        if (p == nullptr) {
          if (n == 0) {
            drop(i);  // realloc(p, 0) frees p
          } else {
            expect_null(p, n, err);
            verify(old);  // a failed realloc leaves the block as it was
          }
          break;
        }
        drop(i);
        const std::size_t keep = old.size < n ? old.size : n;
        if (kChecks && !holds_pattern(static_cast<unsigned char*>(p), old.size, keep, old.tag)) {
          finding("realloc lost the kept prefix", step_);
        }
        adopt(p, n, false, old.tag);
        break;
      }
      case OpKind::Free:
        if (!live_.empty()) {
          const std::size_t i = op.pick % live_.size();
          verify(live_[i]);
          os_free(live_[i].ptr);
          drop(i);
        }
        break;
      case OpKind::ReallocFreed:
        // Without a model the harness cannot tell a freed block whose header
        // still stands; it checks the NULL corner cases instead.
        os_free(nullptr);
        if (os_realloc(nullptr, 0) != nullptr) finding("os_realloc(NULL, 0) is not NULL", step_);
        break;
      case OpKind::FailNextExtend:
        // A ninth of all operations: at every one, the checker took a
        // fifth of the run. At most one extra check per kCheckEvery / 4.
        if (step_ >= last_check_ + kCheckEvery / 4) check_heap();
        break;
      case OpKind::FailNextMap: {
        struct os_heap_stats stats {};
        os_heap_stats(&stats);
        if (!kChecks) break;
        std::size_t mapped = 0;
        for (const Block& b : live_)
          mapped += ((b.size + 7) & ~std::size_t{7}) + 32 >= 131072 ? 1 : 0;
        // Every block of 128 KiB or more is mapped; smaller ones may be too
        // (calloc, the mmap fallback), so this is a lower bound.
        if (stats.mapped_blocks < mapped) finding("os_heap_stats() lost a mapping", step_);
        break;
      }
      case OpKind::ForeignExtend:
        if (g_foreign_left > 0) {
          --g_foreign_left;
          if (sbrk(static_cast<intptr_t>(1 + op.delta % 64)) == reinterpret_cast<void*>(-1)) {
            ++g_foreign_left;
          }
        }
        break;
    }
  }

  std::uint8_t next_tag() {
    tag_ = static_cast<std::uint8_t>(tag_ + 1);
    return tag_;
  }

  std::vector<Block> live_;
  std::map<std::uintptr_t, std::size_t> extents_;
  std::size_t step_ = 0;
  std::size_t last_check_ = 0;
  std::uint8_t tag_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // The harness runs the checker itself (kCheckEvery).
  setenv("OSMEM_CHECK", "off", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  Harness h;
  h.run(in);
  return 0;
}
