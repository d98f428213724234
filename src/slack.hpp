// The slack of an ALLOC block: the bytes between the size the user asked
// for and the block's end (rounding, a remainder too small to split off).
// With debug records on, osmem fills it with one byte value when it hands
// the block out and checks it when the block comes back (and when a check
// level visits the block), so malloc(10) and a write to byte 10 is caught
// even though the write stays inside the block. The slack is the block's
// own (ALLOC) memory, so rule 15 (osmem never writes a FREE payload) is
// kept. Memory tools see the slack as no access (sanitizer.hpp); it is
// opened only while it is filled or read.
#pragma once

#include <cstddef>

#include "sanitizer.hpp"

namespace osmem {

inline constexpr unsigned char kSlackByte = 0xa5;

inline void fill_slack(void* user, std::size_t requested, std::size_t capacity) {
  if (requested >= capacity) return;
  auto* p = static_cast<unsigned char*>(user);
  const tool::Reveal open(p + requested, capacity - requested);
  for (std::size_t i = requested; i < capacity; ++i) p[i] = kSlackByte;
}

// The offset of the first slack byte that is not kSlackByte, or `capacity`
// when the slack is intact.
inline std::size_t first_changed_slack(const void* user, std::size_t requested,
                                       std::size_t capacity) {
  if (requested >= capacity) return capacity;
  const auto* p = static_cast<const unsigned char*>(user);
  const tool::Reveal open(p + requested, capacity - requested);
  for (std::size_t i = requested; i < capacity; ++i) {
    if (p[i] != kSlackByte) return i;
  }
  return capacity;
}

}  // namespace osmem
