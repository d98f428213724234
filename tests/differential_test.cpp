// Long random operation sequences, replayed on the engine and the reference
// model in lockstep: identical addresses and identical system calls at every
// step, through every os_* function, sizes from 1 byte to 300 KiB, with
// injected sbrk/mmap failures and foreign sbrk calls.
//
// OSMEM_DIFF_OPS sets the number of operations per seed (default 200000).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "model/lockstep.hpp"
#include "model/rng.hpp"

namespace osmem {
namespace {

using model::Lockstep;

std::size_t ops_per_seed() {
  if (const char* s = std::getenv("OSMEM_DIFF_OPS")) return std::strtoull(s, nullptr, 10);
  return 200000;
}

using model::Rng;

// Mostly small blocks, some around every threshold, a few large ones.
std::size_t draw_size(Rng& r) {
  switch (r.below(10)) {
    case 0:
      return 1 + r.below(16);
    case 1:
      return 24 + r.below(32);  // around the split boundary
    case 2:
      return 4000 + r.below(200);  // around the calloc threshold
    case 3:
      return 131000 + r.below(80);  // around the mmap threshold
    case 4:
      return 1 + r.below(300 * 1024);  // anything up to 300 KiB
    default:
      return 1 + r.below(2048);
  }
}

void run(std::uint64_t seed, std::size_t ops, bool faults) {
  Lockstep::Options options;
  options.full_every = 8;       // the touched block and the calls are checked every step
  options.payloads_every = 64;  // every FREE payload; changed ones every step
  options.limits.heap_capacity = std::size_t{64} << 20;
  Lockstep ls(options);
  Rng r{seed};
  for (std::size_t i = 0; i < ops; ++i) {
    const std::size_t live = ls.live().size();
    // Keep the live set around 100-300 blocks: fragmented, but cheap to verify.
    const std::size_t free_weight = live > 300 ? 8 : live > 100 ? 4 : 2;
    const std::size_t roll = r.below(10 + free_weight);
    if (faults && r.below(200) == 0) {
      switch (r.below(3)) {
        case 0:
          ls.fail_next_extend();
          break;
        case 1:
          ls.fail_next_map();
          break;
        case 2:
          ls.foreign_extend(1 + r.below(5000));
          break;
      }
    }
    if (roll < 4 || live == 0) {
      ls.malloc(draw_size(r));
    } else if (roll < 5) {
      const std::size_t n = draw_size(r);
      ls.calloc(1 + r.below(4), n / 4 + r.below(2));
    } else if (roll < 8) {
      ls.realloc(r.below(live), r.below(50) == 0 ? 0 : draw_size(r));
    } else if (roll < 9) {
      if (!ls.realloc_freed(r.below(64), 1 + r.below(500))) ls.realloc_null(draw_size(r));
    } else if (roll < 10) {
      ls.malloc(r.below(3) == 0 ? SIZE_MAX - r.below(64) : r.below(2));  // NULL paths
    } else {
      ls.free(r.below(live));
    }
  }
  ls.free_all();
}

TEST(Differential, RandomSequencesMatchTheModel) {
  const std::size_t ops = ops_per_seed();
  for (std::uint64_t seed : {1, 2}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    run(seed, ops / 2, false);
  }
}

TEST(Differential, RandomSequencesWithFaultsMatchTheModel) {
  const std::size_t ops = ops_per_seed();
  for (std::uint64_t seed : {3, 4}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    run(seed, ops / 2, true);
  }
}

}  // namespace
}  // namespace osmem
