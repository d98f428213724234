// Tool awareness: what the allocator does with its memory, told to whichever
// memory tool the build (or the run) has.
//
// A sanitizer or Valgrind only knows the allocator it ships with; to them
// osmem's sbrk heap and mappings are one big addressable blob. This header
// is one small vocabulary, mapped at compile time to one tool or to nothing:
//
//   allocated  a block is handed out: its first n bytes are the user's
//              (uninitialised), the rounding slack behind them is no access
//   freed      a block is given back: no access (Valgrind: a free-like block)
//   released   a mapped block goes back to the system: forget its state
//   resized    a block grew or shrank in place
//   no_access  headers, free payloads, memory not yet handed out
//   undefined  addressable, contents unknown
//   defined    addressable and initialised
//
//   AddressSanitizer   poison / unpoison (to the byte: an overflow into the
//                      slack of a 5-byte block is reported)
//   MemorySanitizer    no addressability, only definedness: allocated memory
//                      is uninitialised, calloc memory initialised
//   Valgrind memcheck  malloc-like / free-like / resize-in-place blocks and
//                      no-access ranges (client requests: a few instructions
//                      when not running under Valgrind); OSMEM_VALGRIND=1
//   nothing            every call is an empty inline function
//
// The engine keeps one rule: between two os_* calls every header and every
// free byte is no access. Inside a call it opens a header with Reveal for as
// long as one function needs it; Reveal puts back "no access" only if it
// found the bytes that way, so nested scopes over one header compose.
// Building with -DOSMEM_TOOL_HOOKS=0 (CMake: OSMEM_TOOL_HOOKS=OFF) turns the
// whole vocabulary into nothing, which is how the tests prove they depend on
// it.
#pragma once

#include <cstddef>
#include <cstdint>

#ifndef OSMEM_TOOL_HOOKS
#define OSMEM_TOOL_HOOKS 1
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OSMEM_UNDER_ASAN 1
#endif
#if __has_feature(memory_sanitizer)
#define OSMEM_UNDER_MSAN 1
#endif
#if __has_feature(thread_sanitizer)
#define OSMEM_UNDER_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(OSMEM_UNDER_ASAN)
#define OSMEM_UNDER_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(OSMEM_UNDER_TSAN)
#define OSMEM_UNDER_TSAN 1
#endif

#if OSMEM_TOOL_HOOKS && defined(OSMEM_UNDER_ASAN)
#define OSMEM_TOOL_ASAN 1
#include <sanitizer/asan_interface.h>
#elif OSMEM_TOOL_HOOKS && defined(OSMEM_UNDER_MSAN)
#define OSMEM_TOOL_MSAN 1
#include <sanitizer/msan_interface.h>
#elif OSMEM_TOOL_HOOKS && defined(OSMEM_VALGRIND) && OSMEM_VALGRIND
#define OSMEM_TOOL_VALGRIND 1
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#endif

#if OSMEM_TOOL_HOOKS && \
    (defined(OSMEM_UNDER_ASAN) || defined(OSMEM_UNDER_MSAN) || defined(OSMEM_UNDER_TSAN))
#define OSMEM_TOOL_STACKS 1
#include <sanitizer/common_interface_defs.h>
#endif

namespace osmem::tool {

enum class Kind { None, AddressSanitizer, MemorySanitizer, Valgrind };

#if defined(OSMEM_TOOL_ASAN)
inline constexpr Kind kKind = Kind::AddressSanitizer;
#elif defined(OSMEM_TOOL_MSAN)
inline constexpr Kind kKind = Kind::MemorySanitizer;
#elif defined(OSMEM_TOOL_VALGRIND)
inline constexpr Kind kKind = Kind::Valgrind;
#else
inline constexpr Kind kKind = Kind::None;
#endif

inline constexpr bool kEnabled = kKind != Kind::None;
// Tools that know "no access" (MemorySanitizer only knows definedness).
inline constexpr bool kHides = kKind == Kind::AddressSanitizer || kKind == Kind::Valgrind;

namespace detail {
inline void* mut(const void* p) {
  return const_cast<void*>(p);
}
inline const std::byte* at(const void* p, std::size_t off) {
  return static_cast<const std::byte*>(p) + off;
}
// Nesting depth of Untracked scopes (tests only; see below).
inline int untracked = 0;
inline bool off() {
  return kEnabled && untracked != 0;  // no load at all when no tool is built in
}
}  // namespace detail

// True when a tool is watching this run (Valgrind is known only at run time).
inline bool active() {
  if (detail::off()) return false;
#if defined(OSMEM_TOOL_VALGRIND)
  return RUNNING_ON_VALGRIND != 0;
#else
  return kEnabled;
#endif
}

inline void no_access([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) {
  if (n == 0 || detail::off()) return;
#if defined(OSMEM_TOOL_ASAN)
  __asan_poison_memory_region(p, n);
#elif defined(OSMEM_TOOL_VALGRIND)
  (void)VALGRIND_MAKE_MEM_NOACCESS(p, n);
#endif
}

inline void undefined([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) {
  if (n == 0 || detail::off()) return;
#if defined(OSMEM_TOOL_ASAN)
  __asan_unpoison_memory_region(p, n);
#elif defined(OSMEM_TOOL_MSAN)
  __msan_allocated_memory(p, n);
#elif defined(OSMEM_TOOL_VALGRIND)
  (void)VALGRIND_MAKE_MEM_UNDEFINED(p, n);
#endif
}

inline void defined([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) {
  if (n == 0 || detail::off()) return;
#if defined(OSMEM_TOOL_ASAN)
  __asan_unpoison_memory_region(p, n);
#elif defined(OSMEM_TOOL_MSAN)
  __msan_unpoison(p, n);
#elif defined(OSMEM_TOOL_VALGRIND)
  (void)VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
}

// osmem's own memory (the metadata area) that holds nothing yet, and the
// part of it that now holds records. Only Valgrind is told: its leak check
// scans every readable mapping for pointers, and would read a reserved
// area of gigabytes page by page; a no-access range it skips. (For ASan the
// area is ordinary memory: poisoning it would write gigabytes of shadow.)
inline void unused_metadata([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) {
#if defined(OSMEM_TOOL_VALGRIND)
  if (n != 0) (void)VALGRIND_MAKE_MEM_NOACCESS(p, n);  // Untracked or not: our own memory
#endif
}
inline void used_metadata([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) {
#if defined(OSMEM_TOOL_VALGRIND)
  if (n != 0) (void)VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
}

#if defined(OSMEM_TOOL_ASAN)
namespace detail {
// The offset of the first poisoned byte of [p, p + n), or n. ASan's own
// __asan_region_is_poisoned tells whether there is one from the shadow, a
// word at a time, but then finds it one byte and one call at a time: a
// realloc of a 300 KiB block with a few bytes of slack cost 300,000 calls.
// Here the shadow is read directly: one byte per granule (8 bytes), 0 when
// the granule is addressable, k in 1..7 when only its first k bytes are,
// negative when none is. The loads are of the shadow itself, which ASan's
// own checks must not see (the shadow of the shadow is unmapped). It is
// the tool's bookkeeping, not the allocator's logic: the fuzzers' coverage
// instrumentation leaves it out.
#if defined(__clang__)
__attribute__((no_sanitize("address", "coverage")))
#else
__attribute__((no_sanitize_address))
#endif
inline std::size_t
first_poisoned(const void* p, std::size_t n) {
  std::size_t scale = 0, offset = 0;
  __asan_get_shadow_mapping(&scale, &offset);
  const std::size_t granule = std::size_t{1} << scale;
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t end = begin + n;
  std::uintptr_t a = begin;
  // The unaligned head and tail are asked about byte by byte (at most a
  // granule each).
  for (; a < end && (a & (granule - 1)) != 0; ++a) {
    if (__asan_address_is_poisoned(reinterpret_cast<const void*>(a)) != 0) return a - begin;
  }
  const std::uintptr_t aligned_end = end & ~(std::uintptr_t{granule} - 1);
  while (a < aligned_end) {
    const auto* shadow = reinterpret_cast<const signed char*>((a >> scale) + offset);
    // 64 granules at a time (eight shadow words, one test) while the shadow
    // is word-aligned and zero: realloc asks this of whole blocks.
    if ((reinterpret_cast<std::uintptr_t>(shadow) & 7) == 0 && a + 64 * granule <= aligned_end) {
      const auto* words = reinterpret_cast<const std::uint64_t*>(shadow);
      std::uint64_t any = 0;
      for (int k = 0; k < 8; ++k) any |= words[k];
      if (any == 0) {
        a += 64 * granule;
        continue;
      }
    }
    const signed char s = *shadow;
    if (s != 0) return (s < 0 ? a : a + static_cast<std::uintptr_t>(s)) - begin;
    a += granule;
  }
  for (; a < end; ++a) {
    if (__asan_address_is_poisoned(reinterpret_cast<const void*>(a)) != 0) return a - begin;
  }
  return n;
}
}  // namespace detail
#endif

// True when any byte of [p, p + n) is no access. Asks the tool, so nested
// Reveal scopes need no bookkeeping of their own.
inline bool hidden([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) {
  if (detail::off()) return false;
#if defined(OSMEM_TOOL_ASAN)
  // Every header the engine opens asks this: the shadow read directly (a
  // few loads for a header) instead of ASan's general region check.
  return detail::first_poisoned(p, n) != n;
#elif defined(OSMEM_TOOL_VALGRIND)
  if (RUNNING_ON_VALGRIND == 0) return false;
  // GET_VBITS refuses (returns 3, silently) when a byte is not addressable.
  unsigned char bits[64];
  for (std::size_t off = 0; off < n; off += sizeof bits) {
    const std::size_t len = n - off < sizeof bits ? n - off : sizeof bits;
    if (VALGRIND_GET_VBITS(detail::at(p, off), bits, len) == 3) return true;
  }
  return false;
#else
  return false;
#endif
}

// How many leading bytes of a block of capacity `cap` the user asked for, as
// far as the tool knows (the first no-access byte); `cap` when it cannot
// tell. Used where the engine must not touch the slack behind them.
inline std::size_t usable([[maybe_unused]] const void* p, std::size_t cap) {
  if (detail::off()) return cap;
#if defined(OSMEM_TOOL_ASAN)
  return detail::first_poisoned(p, cap);
#elif defined(OSMEM_TOOL_VALGRIND)
  if (RUNNING_ON_VALGRIND == 0) return cap;
  // A question, not a finding: keep memcheck from reporting the answer.
  VALGRIND_DISABLE_ERROR_REPORTING;
  const auto first = static_cast<std::uintptr_t>(VALGRIND_CHECK_MEM_IS_ADDRESSABLE(p, cap));
  VALGRIND_ENABLE_ERROR_REPORTING;
  return first == 0 ? cap : static_cast<std::size_t>(first - reinterpret_cast<std::uintptr_t>(p));
#else
  return cap;
#endif
}

// A block of capacity `cap` at p now belongs to the user, who asked for n
// bytes: those are addressable and uninitialised, the slack is no access.
inline void allocated(void* p, std::size_t n, std::size_t cap) {
  if (detail::off()) return;
#if defined(OSMEM_TOOL_VALGRIND)
  VALGRIND_MALLOCLIKE_BLOCK(p, n, 0, 0);
#else
  undefined(p, n);
#endif
  if (cap > n) no_access(detail::at(p, n), cap - n);
}

// The block at p (capacity cap) was given back.
inline void freed(void* p, std::size_t cap) {
  if (detail::off()) return;
#if defined(OSMEM_TOOL_VALGRIND)
  VALGRIND_FREELIKE_BLOCK(p, 0);
#endif
#if defined(OSMEM_TOOL_MSAN)
  __msan_poison(p, cap);
#else
  no_access(p, cap);
#endif
}

// A mapped block whose payload is p is about to be unmapped: [base,
// base + len) must carry no poison that a later mapping at the same address
// would inherit.
inline void released([[maybe_unused]] void* p, [[maybe_unused]] const void* base,
                     [[maybe_unused]] std::size_t len) {
  if (detail::off()) return;
#if defined(OSMEM_TOOL_VALGRIND)
  VALGRIND_FREELIKE_BLOCK(p, 0);
#elif defined(OSMEM_TOOL_ASAN)
  __asan_unpoison_memory_region(base, len);
#endif
}

// The user's block at p went from old_n requested bytes in old_cap to n in
// cap without moving. Whatever lies past n up to the larger capacity is no
// longer the user's (a split may have put a header there).
inline void resized(void* p, [[maybe_unused]] std::size_t old_n, std::size_t n, std::size_t old_cap,
                    std::size_t cap) {
  if (detail::off()) return;
  const std::size_t end = old_cap > cap ? old_cap : cap;
#if defined(OSMEM_TOOL_VALGRIND)
  VALGRIND_RESIZEINPLACE_BLOCK(p, old_n, n, 0);
#elif defined(OSMEM_TOOL_MSAN)
  if (n > old_n) undefined(detail::at(p, old_n), n - old_n);
#else
  defined(p, n);  // ASan: addressable; it has no notion of definedness
#endif
  if (end > n) no_access(detail::at(p, n), end - n);
}

// The call stack, on stderr, for the allocator's own fatal diagnostics.
inline void print_stack() {
#if defined(OSMEM_TOOL_STACKS)
  __sanitizer_print_stack_trace();
#elif defined(OSMEM_TOOL_VALGRIND)
  if (RUNNING_ON_VALGRIND != 0) VALGRIND_PRINTF_BACKTRACE("osmem: the call that failed\n");
#endif
}

// Opens [p, p + n) for one scope and closes it again if it was closed:
// how the engine, the checker and white-box tests read a header.
class Reveal {
 public:
  Reveal(const void* p, std::size_t n) {
    if constexpr (kHides) {
      if (p != nullptr && hidden(p, n)) {
        p_ = p;
        n_ = n;
        defined(p, n);
      }
    }
  }
  ~Reveal() {
    if constexpr (kHides) {
      if (p_ != nullptr) no_access(p_, n_);
    }
  }
  Reveal(const Reveal&) = delete;
  Reveal& operator=(const Reveal&) = delete;

  // The memory is about to be unmapped: leave it alone.
  void forget() { p_ = nullptr; }

 private:
  const void* p_ = nullptr;
  std::size_t n_ = 0;
};

// Opens regions of `len` bytes as a walk reaches them and closes them all
// when it ends: for operations that link and reseal nodes all along a path
// (the treap of mappings, threaded through their headers). A path longer than N,
// far deeper than the walk's own bound, leaves the rest open: less checking,
// never a false report.
template <std::size_t N>
class RevealPath {
 public:
  explicit RevealPath(std::size_t len) : len_(len) {}
  RevealPath(const RevealPath&) = delete;
  RevealPath& operator=(const RevealPath&) = delete;
  ~RevealPath() {
    for (std::size_t i = 0; i < count_; ++i) no_access(opened_[i], len_);
  }

  template <class T>
  T* operator()(T* p) {
    if constexpr (kHides) {
      if (p != nullptr && hidden(p, len_)) {
        defined(p, len_);
        if (count_ < kCap) opened_[count_++] = p;
      }
    }
    return p;
  }

 private:
  static constexpr std::size_t kCap = kHides ? N : 1;
  const void* opened_[kCap] = {};
  std::size_t count_ = 0;
  [[maybe_unused]] std::size_t len_;
};

// Copies n bytes at p to out whatever the tool thinks of them (no access,
// uninitialised), leaving the tool's view of p as it was and out defined:
// for test harnesses that compare memory osmem must not have written, such
// as free payloads. Never used by the engine.
#if defined(__clang__)
#define OSMEM_NO_SANITIZE_READS __attribute__((no_sanitize("address", "memory")))
#elif defined(__SANITIZE_ADDRESS__)
#define OSMEM_NO_SANITIZE_READS __attribute__((no_sanitize_address))
#else
#define OSMEM_NO_SANITIZE_READS
#endif
OSMEM_NO_SANITIZE_READS inline void peek(void* out, const void* p, std::size_t n) {
#if defined(OSMEM_TOOL_VALGRIND)
  VALGRIND_DISABLE_ERROR_REPORTING;
#endif
  auto* to = static_cast<unsigned char*>(out);
  if constexpr (!kEnabled) {
    __builtin_memcpy(to, p, n);
  } else {
    // Through volatile: a loop the compiler cannot turn into a call to
    // memcpy, which the tool would check. Words while both are aligned.
    std::size_t i = 0;
    if (((reinterpret_cast<std::uintptr_t>(p) | reinterpret_cast<std::uintptr_t>(out)) & 7) == 0) {
      const volatile std::uint64_t* from = static_cast<const volatile std::uint64_t*>(p);
      for (; i + 8 <= n; i += 8) *reinterpret_cast<std::uint64_t*>(to + i) = from[i / 8];
    }
    const volatile unsigned char* from = static_cast<const volatile unsigned char*>(p);
    for (; i < n; ++i) to[i] = from[i];
  }
#if defined(OSMEM_TOOL_VALGRIND)
  VALGRIND_ENABLE_ERROR_REPORTING;
  (void)VALGRIND_MAKE_MEM_DEFINED(out, n);
#elif defined(OSMEM_TOOL_MSAN)
  __msan_unpoison(out, n);
#endif
}

// For white-box tests that forge headers byte by byte (the checker's and
// the error tests): while one of these lives, the vocabulary says nothing,
// so a heap built and torn down inside its scope is never poisoned and the
// test may write anywhere. Memory poisoned before the scope stays poisoned:
// never use it around the process-wide heap. Not thread-safe, on purpose.
class Untracked {
 public:
  Untracked() { ++detail::untracked; }
  ~Untracked() { --detail::untracked; }
  Untracked(const Untracked&) = delete;
  Untracked& operator=(const Untracked&) = delete;
};

}  // namespace osmem::tool
