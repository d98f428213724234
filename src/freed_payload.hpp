// What a freed block's payload held when it was freed, kept outside the
// heap, so that a later write into it (a write after free) is found and
// located without osmem ever writing the FREE payload (docs/contract.md,
// rule 15: a freed block keeps its bytes; a fill would break that).
//
// The payload is read as n little-endian 64-bit words w_0..w_{n-1} (heap
// payloads are 8-byte aligned and a multiple of 8 long). Four sums:
//   s0 = sum w_i,  s1 = sum (i+1) w_i,  s2 = sum (i+1)^2 w_i
// exactly, in 128-bit integers (no reduction: with n < 2^20 words every sum
// stays below 2^124), and a 64-bit hash of the words and their positions.
// The hash finds a change (a collision has probability about 2^-64); the
// moments locate it: if exactly one word changed, by d, then
//   d = s0' - s0,  (i+1) d = s1' - s1,  (i+1)^2 d = s2' - s2,
// so the word's index follows by one division and the third sum confirms
// that a single word changed. The word read now minus d is what it held, so
// the report gives the first changed byte and both values. A change of more
// than one word is still found by the hash and reported without a position.
//
// Cost: one pass over the payload when the block is freed, another when it
// is verified (when its memory is handed out again, or a check visits it).
#pragma once

#include <cstddef>
#include <cstdint>

#include "sanitizer.hpp"

namespace osmem {

struct PayloadSums {
  unsigned __int128 s0 = 0;
  unsigned __int128 s1 = 0;
  unsigned __int128 s2 = 0;
  std::uint64_t hash = 0;
};

// Words beyond this many are not summed into s1/s2 (their weights would
// overflow); the hash still covers them, so a change there is found, only
// not located. 2^20 words = 8 MiB, far above any heap block (the mmap
// threshold is 128 KiB).
inline constexpr std::size_t kLocatableWords = std::size_t{1} << 20;

// A payload word, read whatever type the user stored there.
using AliasedWord = std::uint64_t __attribute__((may_alias));

namespace detail {
// Word i's term of the hash: the word keyed by its position, then an
// xorshift-multiply-xorshift (a bijection, one multiply). The xorshifts make
// the sum of terms non-linear in the words, so that structured changes that
// keep a plain or multiplied sum (a counter incremented and another
// decremented) still change the hash.
inline std::uint64_t hash_term(std::uint64_t w, std::uint64_t key) {
  std::uint64_t x = w ^ key;
  x ^= x >> 29;
  x *= 0xd6e8feb86659fd93ULL;
  x ^= x >> 32;
  return x;
}
inline constexpr std::uint64_t kKeyStep = 0x9e3779b97f4a7c15ULL;
}  // namespace detail

// The sums of the `bytes` bytes at p (bytes a multiple of 8, p 8-aligned).
// Memory tools see a freed payload as no access, and its bytes may never
// have been written: Valgrind is told to allow the read, and the
// sanitizers do not check it.
OSMEM_NO_SANITIZE_READS inline PayloadSums sum_payload(const void* p, std::size_t bytes) {
  PayloadSums s;
  // Word loads, not memcpy: a call to memcpy would be checked by the tool.
  const auto* words = static_cast<const AliasedWord*>(p);
  const tool::Reveal open(p, bytes);
  const std::size_t n = bytes / 8;
  std::uint64_t key = 0;
  for (std::size_t i = 0; i < n; ++i, key += detail::kKeyStep) {
    const std::uint64_t w = words[i];
    s.s0 += w;
    if (i < kLocatableWords) {
      const std::uint64_t k = i + 1;
      s.s1 += static_cast<unsigned __int128>(k) * w;
      s.s2 += static_cast<unsigned __int128>(k * k) * w;
    }
    s.hash += detail::hash_term(w, key);
  }
  return s;
}

// The hash alone, for verification: one multiply per word. The moments are
// summed again only when the hash differs, to locate the change.
OSMEM_NO_SANITIZE_READS inline std::uint64_t hash_payload(const void* p, std::size_t bytes) {
  const auto* words = static_cast<const AliasedWord*>(p);
  const tool::Reveal open(p, bytes);
  std::uint64_t h = 0;
  std::uint64_t key = 0;
  for (std::size_t i = 0; i < bytes / 8; ++i, key += detail::kKeyStep) {
    h += detail::hash_term(words[i], key);
  }
  return h;
}

inline bool same_sums(const PayloadSums& a, const PayloadSums& b) {
  return a.hash == b.hash && a.s0 == b.s0 && a.s1 == b.s1 && a.s2 == b.s2;
}

// Where a payload changed, from the sums taken when it was freed (`then`)
// and now (`now`), and the payload itself.
struct PayloadChange {
  bool located = false;     // exactly one word changed, and which one is known
  std::size_t offset = 0;   // of the first changed byte, from the payload start
  std::uint64_t was = 0;    // the word at offset & ~7 when the block was freed
  std::uint64_t reads = 0;  // and now
};

inline PayloadChange locate_change(const void* p, std::size_t bytes, const PayloadSums& then,
                                   const PayloadSums& now) {
  PayloadChange c;
  using S = __int128;
  const S d = static_cast<S>(now.s0 - then.s0);
  const S d1 = static_cast<S>(now.s1 - then.s1);
  const S d2 = static_cast<S>(now.s2 - then.s2);
  if (d == 0) return c;
  // k = d1 / d, by bisection on exact products (a 128-bit division or a
  // conversion to floating point would need libgcc: the libraries need libc
  // alone).
  S num = d1;
  S den = d;
  if (den < 0) {
    num = -num;
    den = -den;
  }
  const std::size_t n = bytes / 8 < kLocatableWords ? bytes / 8 : kLocatableWords;
  std::size_t lo = 1;
  std::size_t hi = n;
  while (lo < hi) {  // the smallest k with den * k >= num
    const std::size_t mid = lo + (hi - lo) / 2;
    if (den * static_cast<S>(mid) >= num) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const auto k = static_cast<S>(lo);
  if (n != 0 && d * k == d1 && d1 * k == d2) {
    const std::size_t word = static_cast<std::size_t>(k - 1);
    std::uint64_t w;
    tool::peek(&w, static_cast<const unsigned char*>(p) + 8 * word, 8);
    const auto old = static_cast<std::uint64_t>(static_cast<unsigned __int128>(w) -
                                                static_cast<unsigned __int128>(d));
    if (old == w) return c;
    unsigned byte = 0;
    while (((old ^ w) >> (8 * byte) & 0xff) == 0) ++byte;  // little-endian: byte 0 first
    c.located = true;
    c.offset = 8 * word + byte;
    c.was = old;
    c.reads = w;
    return c;
  }
  return c;
}

}  // namespace osmem
