// Fuzz target `ops`: an operation stream (malloc, calloc, realloc, free,
// realloc of a freed block) on a fresh engine over the fake memory source,
// in lockstep with the reference model.
//
// Checked after every operation (model::Lockstep): the returned address and
// the exact sbrk/mmap/munmap calls match the model, errno, alignment, no
// overlap with any live block, os_heap_stats against the model and the
// source, the contents of the touched block and of its live neighbours
// (realloc kept the prefix, calloc memory is zero). Every kFullEvery
// operations, and once more at the end of the input: the full heap checker,
// the engine's block list against the model's, every live block's contents
// and every FREE payload. At the end everything is freed, step by step.
//
// Why kFullEvery = 64: the full checker walks every block and the whole
// index, all of it coverage-instrumented engine code, and the content sweep
// reads every live and every free byte (up to 8 MiB of heap and 16 MiB of
// mappings here); at every 16th step these were a fifth of the run time
// (perf, 20 s from the seeds), at every step most of it; every 64th step
// halves what every 32nd cost. What they find stays broken until a later
// step repairs it, which the statistics at every step and the contents of
// the touched blocks make unlikely to pass unseen; the whole check at the
// end of every input sees it then. ci/mutants shows the planted bugs still
// caught.
#include <cstddef>
#include <cstdint>

#include "lockstep_driver.hpp"

namespace {
constexpr unsigned kFullEvery = 64;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  osmem::fuzz::run_op_stream("ops", kFullEvery, osmem::fuzz::kPlainKinds, data, size);
  return 0;
}
