// Fuzz target `faults`: the ops stream plus the system's failures, all
// decided by the input: the next sbrk fails, the next mmap fails, another
// component moves the break (by any amount, aligned or not). The fake
// source also refuses sbrk past 8 MiB and mmap past 16 MiB or 64 live
// mappings, so inputs run into those limits on their own.
//
// The contract says what each failure must give (NULL with ENOMEM, the mmap
// fallback, a new heap segment, the prealloc retried later); the model
// predicts it exactly, so Lockstep's per-step checks cover it: same result,
// same calls, errno, and no live block loses a byte. The whole checks run
// every 32 steps here, 64 in `ops` (see ops.cpp for their cost): a failure
// leaves the heap in states a plain stream never reaches (a new segment,
// the mmap fallback), and this target meets its throughput goal with them.
#include <cstddef>
#include <cstdint>

#include "lockstep_driver.hpp"

namespace {
constexpr unsigned kFullEvery = 32;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  osmem::fuzz::run_op_stream("faults", kFullEvery, osmem::fuzz::kFaultKinds, data, size);
  return 0;
}
