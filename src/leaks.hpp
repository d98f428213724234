// The reports printed at exit: OSMEM_LEAKS=1 (the blocks still allocated,
// grouped by requested size and caller) and OSMEM_STATS=1 (the heap's
// statistics and the debug checks' counters). Both use no heap: the groups
// live in a fixed table on the stack, every line goes through LineBuffer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "block_records.hpp"
#include "osmem/osmem.h"
#include "report.hpp"

namespace osmem {

// Writes a caller's name ("symbol+0x1c in libfoo.so"), or nothing when it
// has none; returns whether it wrote one.
using Symboliser = bool (*)(std::uintptr_t address, LineBuffer& line);

struct LeakGroup {
  std::size_t requested = 0;
  std::uintptr_t caller = 0;
  std::size_t blocks = 0;
  std::uint64_t first_operation = 0;  // the earliest operation that made one
  bool used = false;
};

// Groups the records by (requested size, caller) and prints the groups,
// most bytes first, then the totals. `symbolise` may be null (raw
// addresses, and the report says so).
inline void print_leaks(const BlockRecords& records, Symboliser symbolise, int fd) {
  constexpr std::size_t kGroups = 1024;  // a power of two
  constexpr std::size_t kListed = 50;
  LeakGroup groups[kGroups];
  std::size_t blocks = 0, bytes = 0, grouped = 0, other_blocks = 0, other_bytes = 0;
  records.for_each([&](const AllocRecord& r) {
    ++blocks;
    bytes += r.requested;
    std::uint64_t h = (r.requested * 0x9e3779b97f4a7c15ULL) ^ r.caller;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    for (std::size_t n = 0, i = h & (kGroups - 1); n < kGroups; ++n, i = (i + 1) & (kGroups - 1)) {
      LeakGroup& g = groups[i];
      if (g.used && (g.requested != r.requested || g.caller != r.caller)) continue;
      if (!g.used) {
        if (8 * (grouped + 1) > 7 * kGroups) break;  // table full: counted as other
        g = LeakGroup{r.requested, r.caller, 0, r.operation, true};
        ++grouped;
      }
      ++g.blocks;
      if (r.operation < g.first_operation) g.first_operation = r.operation;
      return;
    }
    ++other_blocks;
    other_bytes += r.requested;
  });
  // Most bytes first: a selection sort of the used slots to the front.
  std::size_t used = 0;
  for (std::size_t i = 0; i < kGroups; ++i) {
    if (groups[i].used) groups[used++] = groups[i];
  }
  LineBuffer line;
  line.text("osmem: leaks at exit: ")
      .dec(blocks)
      .text(" block(s), ")
      .dec(bytes)
      .text(" byte(s) requested and never freed, in ")
      .dec(used)
      .text(" group(s) by size and caller\n");
  line.flush(fd);
  for (std::size_t i = 0; i < used && i < kListed; ++i) {
    std::size_t best = i;
    for (std::size_t j = i + 1; j < used; ++j) {
      if (groups[j].blocks * groups[j].requested > groups[best].blocks * groups[best].requested) {
        best = j;
      }
    }
    const LeakGroup g = groups[best];
    groups[best] = groups[i];
    groups[i] = g;
    line.text("  ")
        .dec(g.blocks)
        .text(" x ")
        .dec(g.requested)
        .text(" bytes = ")
        .dec(g.blocks * g.requested)
        .text(" bytes, from ")
        .hex(g.caller);
    if (symbolise != nullptr) {
      line.text(" (");
      if (!symbolise(g.caller, line)) line.text("no symbol");
      line.text(")");
    }
    line.text(", first at operation ").dec(g.first_operation).text("\n");
    line.flush(fd);
  }
  if (used > kListed) {
    line.text("  ... and ").dec(used - kListed).text(" smaller group(s)\n");
    line.flush(fd);
  }
  if (other_blocks != 0) {
    line.text("  ")
        .dec(other_blocks)
        .text(" block(s), ")
        .dec(other_bytes)
        .text(" bytes, in groups past the report's table\n");
    line.flush(fd);
  }
  if (records.unrecorded() != 0) {
    line.text("  (")
        .dec(records.unrecorded())
        .text(" block(s) were handed out when the records were full: not listed)\n");
    line.flush(fd);
  }
  if (symbolise == nullptr) {
    line.text("  (callers are raw return addresses: naming them could allocate)\n");
    line.flush(fd);
  }
}

// The statistics os_heap_stats gives, one "name value" per line, then the
// debug checks' own counters.
inline void print_stats(const struct os_heap_stats& st, std::uint64_t operations,
                        std::uint64_t swept, std::uint64_t rounds, std::size_t records, int fd) {
  LineBuffer line;
  const struct {
    const char* name;
    std::size_t value;
  } rows[] = {
      {"heap_blocks", st.heap_blocks},
      {"free_blocks", st.free_blocks},
      {"heap_bytes_in_use", st.heap_bytes_in_use},
      {"heap_bytes_free", st.heap_bytes_free},
      {"heap_span", st.heap_span},
      {"heap_segments", st.heap_segments},
      {"mapped_blocks", st.mapped_blocks},
      {"mapped_bytes", st.mapped_bytes},
      {"sbrk_calls", st.sbrk_calls},
      {"mmap_calls", st.mmap_calls},
      {"munmap_calls", st.munmap_calls},
      {"searches", st.searches},
      {"search_visits", st.search_visits},
      {"search_visits_max", st.search_visits_max},
      {"index_operations", st.index_operations},
      {"index_visits", st.index_visits},
      {"index_records", st.index_records},
      {"index_records_max", st.index_records_max},
      {"operations", static_cast<std::size_t>(operations)},
      {"sweep_blocks_examined", static_cast<std::size_t>(swept)},
      {"sweep_rounds", static_cast<std::size_t>(rounds)},
      {"debug_records", records},
  };
  line.text("osmem: statistics at exit\n");
  line.flush(fd);
  for (const auto& r : rows) {
    line.text("  ").text(r.name).text(" ").dec(r.value).text("\n");
    line.flush(fd);
  }
}

}  // namespace osmem
