// Fuzz target `ops`: an operation stream (malloc, calloc, realloc, free,
// realloc of a freed block) on a fresh engine over the fake memory source,
// in lockstep with the reference model.
//
// Checked after every operation (model::Lockstep): the returned address and
// the exact sbrk/mmap/munmap calls match the model, errno, alignment, no
// overlap with any live block, the touched block's contents (realloc kept
// the prefix, calloc memory is zero). Every kFullEvery operations, and once
// more at the end of the input: the full heap checker and the engine's
// block list against the model's. At the end every live block's contents
// are verified and everything is freed, step by step.
//
// Why kFullEvery = 1: inputs are at most kMaxSteps operations, so the heap
// stays at a few hundred blocks. Profiled with perf while replaying a
// 260-input corpus, the checker and the block-list comparison stayed under
// 1% each; Lockstep's fill and verify loops over the payloads took most of
// the time. Catching a broken invariant at the step that broke it gives the
// shortest reproducer, so every step it is.
#include <cstddef>
#include <cstdint>

#include "lockstep_driver.hpp"

namespace {
constexpr unsigned kFullEvery = 1;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  osmem::fuzz::run_op_stream("ops", kFullEvery, osmem::fuzz::kPlainKinds, data, size);
  return 0;
}
