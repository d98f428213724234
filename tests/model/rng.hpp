// A small, fast, seedable generator (splitmix64) for tests and benchmarks
// that must replay the same operation stream from a seed.
#pragma once

#include <cstdint>

#include "canary.hpp"

namespace osmem::model {

struct Rng {
  std::uint64_t x;
  std::uint64_t next() { return mix64(x += 0x9e3779b97f4a7c15ULL); }
  std::size_t below(std::uint64_t n) { return static_cast<std::size_t>(next() % n); }
};

}  // namespace osmem::model
