// How much of the heap the debug checks examine around each operation: the
// value of OSMEM_CHECK (docs/debug-mode.md), parsed without the heap.
//
// The levels trade latency of detection for cost, like dmalloc's check
// interval or Apple's MallocCheckHeapStart/MallocCheckHeapEach:
//   off      nothing beyond the always-on pointer validation
//   local    the blocks an operation reads or writes, their list neighbours
//            and their index records: O(log n) per operation
//   sweep:K  local, plus K more blocks per operation, round-robin over the
//            heap list and the mappings: any damage is found within
//            ceil(n / K) operations, O(K + log n) each
//   full     the whole checker on entry to and exit from every operation
//   every:N@S  the whole checker on entry to every N-th operation, counting
//            from operation S (1 when no @S is given)
#pragma once

#include <cstdint>

namespace osmem {

enum class CheckMode : std::uint8_t { Off, Local, Sweep, Full, Every };

// Blocks a sweep examines per operation when `sweep` names no K: each
// costs a cache miss or two in a large heap (its header, its record), so
// 4 keeps the sweep within 5x of no checks at 100,000 live blocks
// (bench/check_levels.cpp); sweep:K trades cost for a shorter latency.
inline constexpr std::uint32_t kDefaultSweepBlocks = 4;

struct CheckLevel {
  CheckMode mode = CheckMode::Off;
  std::uint32_t sweep_blocks = kDefaultSweepBlocks;  // K of sweep:K
  std::uint64_t every = 1;                           // N of every:N
  std::uint64_t start = 1;                           // S of every:N@S (operations count from 1)
};

// The accepted spellings, for the warning about one that is not.
inline constexpr char kCheckLevelValues[] =
    "off, local, sweep, sweep:K, full, every:N, every:N@START (also 0 = off, 1/on = sweep)";

// Parses an OSMEM_CHECK value. Returns false, leaving `out` alone, for
// anything not in kCheckLevelValues (K and N must be 1 or more).
bool parse_check_level(const char* text, CheckLevel& out);

// The canonical spelling of a level ("sweep:16", "every:100@1", ...), into
// buf (NUL-terminated, truncated to size).
void format_check_level(const CheckLevel& level, char* buf, unsigned size);

// Reads OSMEM_CHECK from the environment into `level`, which holds the
// build's default on entry. An unknown value keeps the default and writes
// one warning line to stderr naming the valid values. Uses no heap.
void read_check_level(CheckLevel& level);

}  // namespace osmem
