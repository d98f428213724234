// Fuzz target `malloc`: the engine under MallocConfig (libosmem-malloc's
// policy, docs/contract.md part II) over the fake source, driven by
// operations the input chooses: malloc, calloc, realloc (to any size, to 0,
// from NULL), free, aligned allocation (alignments 8 to 2 MiB),
// malloc_usable_size, malloc_trim, and the system's failures (the next sbrk
// or mmap/mremap fails, another component moves the break).
//
// What is judged, after every operation: each returned pointer is 16-aligned
// (or aligned as asked), holds its request (usable size), overlaps no other
// live block; calloc memory is zero; realloc keeps the old bytes; a NULL
// comes with ENOMEM; no live block's bytes change; the fake source saw no
// misuse (a wrong unmap); the break never falls below another component's
// sbrk (a trim gives back only the heap's own top); and every 8 operations and at the end, the full
// checker finds nothing. There is no address-exact model for this policy:
// these are the properties any correct malloc has, plus the checker's
// invariants.
#include <fuzzer/FuzzedDataProvider.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "fake_source.hpp"
#include "heap.hpp"

namespace {

using osmem::FakeLimits;
using osmem::FakeSource;
using osmem::MallocConfig;
using Heap = osmem::Heap<FakeSource, MallocConfig>;

constexpr std::size_t kMaxLive = 64;
constexpr unsigned kFullEvery = 8;

[[noreturn]] void fail(const char* what, std::size_t step) {
  std::fprintf(stderr, "malloc target: step %zu: %s\n", step, what);
  std::abort();
}

std::size_t draw_size(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0:
      return 0;
    case 1:
      return in.ConsumeIntegralInRange<std::size_t>(1, 48);
    case 2:
      return in.ConsumeIntegralInRange<std::size_t>(1, 1024);
    case 3:
      return in.ConsumeIntegralInRange<std::size_t>(1025, 64 << 10);
    case 4:  // both sides of the mmap threshold
      return in.ConsumeIntegralInRange<std::size_t>((128 << 10) - 96, (128 << 10) + 64);
    case 5:
      return in.ConsumeIntegralInRange<std::size_t>(128 << 10, 1 << 20);
    case 6:  // a growth step and more
      return in.ConsumeIntegralInRange<std::size_t>(100 << 10, 128 << 10);
    default:  // too large for any heap: NULL and ENOMEM
      return SIZE_MAX - in.ConsumeIntegralInRange<std::size_t>(0, 1 << 22);
  }
}

// True when all n bytes at p equal v: memcmp in page-sized pieces against
// a buffer of v (a byte loop under ASan cost most of the run).
bool all_equal(const void* p, std::size_t n, unsigned char v) {
  static unsigned char pattern[4096];
  static int current = -1;
  if (current != v) {
    std::memset(pattern, v, sizeof pattern);
    current = v;
  }
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t off = 0; off < n; off += sizeof pattern) {
    const std::size_t len = n - off < sizeof pattern ? n - off : sizeof pattern;
    if (std::memcmp(b + off, pattern, len) != 0) return false;
  }
  return true;
}

struct Live {
  std::size_t n;
  unsigned char fill;
};

class Driver {
 public:
  // A fresh heap over the (reset) shared source.
  explicit Driver(FakeSource& source) : source_(source), heap_(source, 0x5eed) {
    heap_.set_operation_names(true);
  }

  static FakeLimits limits() {
    FakeLimits l;
    l.heap_capacity = std::size_t{8} << 20;
    l.map_capacity = std::size_t{32} << 20;
    l.max_mappings = 48;
    return l;
  }

  void run(FuzzedDataProvider& in) {
    for (step_ = 0; in.remaining_bytes() > 0; ++step_) {
      one(in);
      if (source_.misuse_count() != 0) fail("the engine misused the source", step_);
      if (source_.break_offset() < foreign_top_) {
        fail("a trim lowered the break over another component's memory", step_);
      }
      if (step_ % kFullEvery == 0) full_check();
    }
    for (auto& [p, l] : live_) {
      verify(p, l);
      heap_.free(p);
    }
    live_.clear();
    full_check();
    struct ::os_heap_stats s {};
    heap_.stats(&s);
    if (s.heap_bytes_in_use != 0 || s.mapped_blocks != 0) fail("blocks left after freeing all", step_);
  }

 private:

  void one(FuzzedDataProvider& in) {
    const auto fill = static_cast<unsigned char>(step_ * 13 + 1);
    errno = 0;
    switch (in.ConsumeIntegralInRange<int>(0, 11)) {
      case 0:
      case 1: {
        const std::size_t n = draw_size(in);
        return adopt(heap_.malloc(n), n, fill, 16);
      }
      case 2: {
        const std::size_t a = in.ConsumeIntegralInRange<std::size_t>(0, 4);
        const std::size_t b = in.ConsumeIntegralInRange<std::size_t>(0, 1) ? draw_size(in) : 1;
        std::size_t total = 0;
        const bool overflow = __builtin_mul_overflow(a, b, &total);
        void* p = heap_.calloc(a, b);
        if (p != nullptr) {
          if (overflow) fail("calloc overflowed and returned a block", step_);
          if (!all_equal(p, total, 0)) fail("calloc memory not zero", step_);
        }
        return adopt(p, total, fill, 16);
      }
      case 3: {
        const std::size_t align = std::size_t{8} << in.ConsumeIntegralInRange<int>(0, 18);
        const std::size_t n = draw_size(in);
        return adopt(heap_.aligned_malloc(align, n), n, fill, align);
      }
      case 4:
      case 5:
        return free_one(in);
      case 6:
      case 7:
        return realloc_one(in, fill);
      case 8:
        if (!live_.empty()) {
          auto it = pick(in);
          if (heap_.usable_size(it->first) < it->second.n) fail("usable size below the request", step_);
        }
        return;
      case 9:
        heap_.trim(in.ConsumeIntegralInRange<std::size_t>(0, 256 << 10));
        return;
      case 10:
        if (in.ConsumeBool()) {
          source_.fail_next_extend();
        } else {
          source_.fail_next_map();
        }
        return;
      default:
        if (source_.foreign_extend(in.ConsumeIntegralInRange<std::size_t>(1, 64 << 10))) {
          foreign_top_ = source_.break_offset();
        }
        return;
    }
  }

  std::map<void*, Live>::iterator pick(FuzzedDataProvider& in) {
    auto it = live_.begin();
    std::advance(it, in.ConsumeIntegralInRange<std::size_t>(0, live_.size() - 1));
    return it;
  }

  void adopt(void* p, std::size_t n, unsigned char fill, std::size_t align) {
    if (p == nullptr) {
      if (errno != ENOMEM) fail("NULL without ENOMEM", step_);
      return;
    }
    errno = 0;
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    if (a % 16 != 0 || a % align != 0) fail("misaligned block", step_);
    const std::size_t usable = heap_.usable_size(p);
    if (usable < n) fail("usable size below the request", step_);
    // No overlap with the live blocks on either side.
    auto next = live_.lower_bound(p);
    if (next != live_.end() && static_cast<std::byte*>(p) + usable > next->first) {
      fail("overlaps the next live block", step_);
    }
    if (next != live_.begin()) {
      auto prev = std::prev(next);
      if (static_cast<std::byte*>(prev->first) + heap_.usable_size(prev->first) > p) {
        fail("overlaps the previous live block", step_);
      }
    }
    std::memset(p, fill, n);
    live_[p] = Live{n, fill};
    if (live_.size() > kMaxLive) {
      auto it = live_.begin();
      verify(it->first, it->second);
      heap_.free(it->first);
      live_.erase(it);
    }
  }

  void verify(void* p, const Live& l) {
    if (!all_equal(p, l.n, l.fill)) fail("a live block's bytes changed", step_);
  }

  void free_one(FuzzedDataProvider& in) {
    if (live_.empty()) return;
    auto it = pick(in);
    verify(it->first, it->second);
    heap_.free(it->first);
    live_.erase(it);
  }

  void realloc_one(FuzzedDataProvider& in, unsigned char fill) {
    if (live_.empty() || in.ConsumeIntegralInRange<int>(0, 7) == 0) {
      const std::size_t n = draw_size(in);
      return adopt(heap_.realloc(nullptr, n), n, fill, 16);
    }
    auto it = pick(in);
    void* p = it->first;
    const Live old = it->second;
    verify(p, old);
    const std::size_t n = in.ConsumeIntegralInRange<int>(0, 15) == 0 ? 0 : draw_size(in);
    errno = 0;
    void* q = heap_.realloc(p, n);
    if (n == 0) {
      if (q != nullptr) fail("realloc(p, 0) returned a block", step_);
      live_.erase(it);
      return;
    }
    if (q == nullptr) {
      if (errno != ENOMEM) fail("realloc NULL without ENOMEM", step_);
      verify(p, old);  // the old block is intact and still live
      return;
    }
    live_.erase(it);
    verify(q, Live{old.n < n ? old.n : n, old.fill});
    adopt(q, n, fill, 16);
  }

  void full_check() {
    osmem::Violation v[4];
    if (heap_.check(v, 4) != 0) {
      std::fprintf(stderr, "malloc target: checker: %s at %p\n", osmem::invariant_name(v[0].invariant),
                   v[0].block);
      fail("the heap checker found a violation", step_);
    }
  }

  FakeSource& source_;
  Heap heap_;
  std::map<void*, Live> live_;
  std::size_t step_ = 0;
  std::size_t foreign_top_ = 0;  // the break right after the last foreign sbrk
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // One source for the whole run (mapping its buffer per input would cost
  // more than most inputs), reset to a fresh state for each.
  static FakeSource* source = [] {
    auto* s = new FakeSource(Driver::limits());
    s->recycle_mappings(true);
    return s;
  }();
  source->reset();
  FuzzedDataProvider in(data, size);
  Driver driver(*source);
  driver.run(in);
  return 0;
}
