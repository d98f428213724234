// Header canaries: a keyed hash over a header's address and fields.
//
// Keying by a per-heap secret (the cookie) means a header forged by, or
// copied from, user data does not validate; covering the address means a
// valid header copied elsewhere does not either; covering the links means a
// corrupted link is caught before it is followed. Every write to a header
// must be followed by seal(); the checker verifies intact() for all blocks.
#pragma once

#include <bit>
#include <cstdint>

#include "block.hpp"

namespace osmem {

inline constexpr std::uint64_t mix64(std::uint64_t x) {
  // splitmix64's finaliser: every input bit affects every output bit.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

class Sealer {
 public:
  constexpr explicit Sealer(std::uint64_t cookie = 0) : cookie_(cookie) {}

  std::uint32_t compute(const BlockMeta* b) const {
    // Two rounds, each a full-avalanche mix: the first binds the secret to
    // the header's address and size, the second folds in status and links,
    // each through a bijection (odd multipliers), so a change to any one
    // field always changes the input of the final mix. It catches accidental
    // damage and blind forgery (the cookie is secret); it is a checksum, not
    // a MAC against someone who can read headers and the cookie.
    std::uint64_t h = mix64(cookie_ ^ b->address() ^ (b->size * 0x9e3779b97f4a7c15ULL));
    const auto status = static_cast<std::uint64_t>(static_cast<std::uint32_t>(b->status));
    h = mix64(h ^ (status << 32) ^
              (reinterpret_cast<std::uintptr_t>(b->prev) * 0xc2b2ae3d27d4eb4fULL) ^
              std::rotl(reinterpret_cast<std::uintptr_t>(b->next) * 0x165667b19e3779f9ULL, 29));
    return static_cast<std::uint32_t>(h ^ (h >> 32));
  }

  void seal(BlockMeta* b) const { b->canary = compute(b); }
  bool intact(const BlockMeta* b) const { return b->canary == compute(b); }

  // A second, independent keyed hash: the treap priority of a mapping, and
  // of a FREE block's index record.
  std::uint64_t priority(const BlockMeta* b) const { return priority(b->address()); }
  std::uint64_t priority(std::uintptr_t address) const {
    return mix64(mix64(cookie_ + 0x9e3779b97f4a7c15ULL) ^ address);
  }

  std::uint64_t cookie() const { return cookie_; }

 private:
  std::uint64_t cookie_;
};

}  // namespace osmem
