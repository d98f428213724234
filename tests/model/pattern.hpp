// The fill pattern the harnesses write into every live block and check
// later: byte j of a block with tag t is table[t * kStride + j % kPeriod]
// of one fixed pseudo-random table. Position-dependent, so a copy shifted
// by a few bytes or cut one byte short does not match, and different for
// every tag, so one block's bytes copied over another's do not either.
//
// Filling is memcpy and checking is memcmp from the table, whole runs at a
// time: the harnesses fill and check every byte of every block they hold,
// and a byte-at-a-time loop made that most of the fuzzers' run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace osmem::pattern {

inline constexpr std::size_t kStride = 4099;   // tag t's run starts t * kStride bytes in
inline constexpr std::size_t kPeriod = 65521;  // then repeats (prime: no power-of-two alias)
inline constexpr std::size_t kTableSize = 255 * kStride + kPeriod;

inline const std::uint8_t* table() {
  static const std::uint8_t* const t = [] {
    static std::uint8_t bytes[kTableSize];
    std::uint64_t x = 0x243f6a8885a308d3ULL;  // splitmix64
    for (std::size_t i = 0; i < kTableSize; i += 8) {
      std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      z ^= z >> 31;
      for (std::size_t k = 0; k < 8 && i + k < kTableSize; ++k) {
        bytes[i + k] = static_cast<std::uint8_t>(z >> (8 * k));
      }
    }
    return bytes;
  }();
  return t;
}

inline std::uint8_t at(std::uint8_t tag, std::size_t j) {
  return table()[tag * kStride + j % kPeriod];
}

// Calls run(offset, source, length) for the pieces of [from, to).
template <class F>
inline bool for_runs(std::uint8_t tag, std::size_t from, std::size_t to, F&& run) {
  const std::uint8_t* t = table() + tag * kStride;
  for (std::size_t j = from; j < to;) {
    const std::size_t off = j % kPeriod;
    const std::size_t n = to - j < kPeriod - off ? to - j : kPeriod - off;
    if (!run(j, t + off, n)) return false;
    j += n;
  }
  return true;
}

// Writes the pattern into bytes [from, to) of the block at p.
inline void fill(void* p, std::uint8_t tag, std::size_t from, std::size_t to) {
  auto* b = static_cast<unsigned char*>(p);
  for_runs(tag, from, to, [&](std::size_t j, const std::uint8_t* src, std::size_t n) {
    std::memcpy(b + j, src, n);
    return true;
  });
}

// The first of the n bytes at p, which are bytes [from, from + n) of a
// block, that is not the pattern (relative to p), or n.
inline std::size_t first_mismatch(const void* p, std::uint8_t tag, std::size_t from,
                                  std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  std::size_t bad = n;
  for_runs(tag, from, from + n, [&](std::size_t j, const std::uint8_t* src, std::size_t len) {
    const unsigned char* at = b + (j - from);
    if (std::memcmp(at, src, len) == 0) return true;
    for (std::size_t k = 0;; ++k) {
      if (at[k] != src[k]) {
        bad = j - from + k;
        return false;
      }
    }
  });
  return bad;
}

// The first non-zero byte of [0, n), or n.
inline std::size_t first_nonzero(const void* p, std::size_t n) {
  static const unsigned char zeros[4096] = {};
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t j = 0; j < n; j += sizeof zeros) {
    const std::size_t len = n - j < sizeof zeros ? n - j : sizeof zeros;
    if (std::memcmp(b + j, zeros, len) == 0) continue;
    for (std::size_t k = 0;; ++k) {
      if (b[j + k] != 0) return j + k;
    }
  }
  return n;
}

}  // namespace osmem::pattern
