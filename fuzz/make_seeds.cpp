// Writes the seed corpora (fuzz/corpus/<target>/<scenario>) and the
// dictionaries (fuzz/<target>.dict): small hand-made inputs that between
// them reach every rule of docs/contract.md, so that a fuzzing run (and the
// mutant runs in ci/mutants) starts with every path already covered.
//
// Each scenario is written as operations and encoded with OpWriter; every
// file is decoded again and re-encoded to prove the harness reads exactly
// what was meant. Run through fuzz/make_seeds, which builds this tool.
//
//   make_seeds <fuzz directory>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "corruption_input.hpp"
#include "op_stream.hpp"

namespace {

using namespace osmem::fuzz;
namespace fs = std::filesystem;

// ---- building operations ----------------------------------------------------

SizeSpec exact(std::uint64_t n) {
  auto in = [&](SizeClass c) {
    const ClassRange r = class_range(c);
    return n >= r.lo && n <= r.hi;
  };
  if (n == 0) return {SizeClass::Zero, 0, 0};
  if (n >= SIZE_MAX - 63) return {SizeClass::Huge, SIZE_MAX - n, 0};
  for (SizeClass c : {SizeClass::Tiny, SizeClass::Small, SizeClass::CallocEdge, SizeClass::Medium,
                      SizeClass::Big, SizeClass::MmapEdge, SizeClass::Mapped}) {
    if (in(c)) return {c, n, 0};
  }
  throw std::invalid_argument("no size class holds " + std::to_string(n));
}
// Relative sizes: `pick` chooses among free blocks (address order) or live
// blocks (in the harness's order).
SizeSpec near_free(std::uint8_t pick, std::int32_t delta) {
  return {SizeClass::NearFree, pick, delta};
}
SizeSpec near_live(std::uint8_t pick, std::int32_t delta) {
  return {SizeClass::NearLive, pick, delta};
}

Op malloc_(SizeSpec s) {
  Op o;
  o.kind = OpKind::Malloc;
  o.size = s;
  return o;
}
Op malloc_(std::uint64_t n) {
  return malloc_(exact(n));
}
Op calloc_(std::uint64_t n, CallocShape shape = CallocShape::OneBySize, std::uint8_t arg = 0) {
  Op o;
  o.kind = OpKind::Calloc;
  o.size = exact(n);
  o.shape = shape;
  o.shape_arg = arg;
  return o;
}
Op realloc_(std::uint8_t pick, SizeSpec s) {
  Op o;
  o.kind = OpKind::Realloc;
  o.pick = pick;
  o.size = s;
  return o;
}
Op realloc_(std::uint8_t pick, std::uint64_t n) {
  return realloc_(pick, exact(n));
}
Op realloc_null(std::uint64_t n) {
  Op o;
  o.kind = OpKind::ReallocNull;
  o.size = exact(n);
  return o;
}
Op free_(std::uint8_t pick) {
  Op o;
  o.kind = OpKind::Free;
  o.pick = pick;
  return o;
}
Op realloc_freed(std::uint8_t pick, std::uint64_t n) {
  Op o;
  o.kind = OpKind::ReallocFreed;
  o.pick = pick;
  o.size = exact(n);
  return o;
}
Op fail_sbrk() {
  Op o;
  o.kind = OpKind::FailNextExtend;
  return o;
}
Op fail_mmap() {
  Op o;
  o.kind = OpKind::FailNextMap;
  return o;
}
Op foreign(std::uint16_t delta) {
  Op o;
  o.kind = OpKind::ForeignExtend;
  o.delta = delta;
  return o;
}

using Ops = std::vector<Op>;
using Scenario = std::pair<std::string, Ops>;

// ---- the scenarios ----------------------------------------------------------
// Live-block indices are the harness's: a freed block leaves the list and
// the ones after it move down by one; a new block goes to the end.

std::vector<Scenario> plain_scenarios() {
  constexpr std::uint64_t kMax = SIZE_MAX;
  return {
      // Rule 2: no system call, NULL.
      {"r02_zero_sizes",
       {malloc_(0), calloc_(0), calloc_(0, CallocShape::SizeByOne), realloc_null(0), free_(0)}},
      // Rule 2: ALIGN8(n) + 32 overflowing, on both sides of the limit.
      {"r02_overflow",
       {malloc_(kMax), malloc_(kMax - 39), malloc_(kMax - 40), malloc_(kMax - 32), malloc_(16),
        realloc_(0, kMax), realloc_(0, kMax - 39), calloc_(16, CallocShape::Overflow, 7),
        calloc_(3, CallocShape::Overflow, 0xff), calloc_(16, CallocShape::OverflowAbove, 0),
        calloc_(16, CallocShape::OverflowAbove, 0xff)}},
      // Rule 1: rounding.
      {"r01_align", {malloc_(1), malloc_(7), malloc_(8), malloc_(9), malloc_(15), malloc_(17)}},
      // Rule 3: the mmap threshold is ALIGN8(n) + 32 >= 131072.
      {"r03_mmap_threshold",
       {malloc_(131040), malloc_(131033), malloc_(131032), malloc_(131039), malloc_(131041),
        free_(0), free_(2), free_(0), free_(0)}},
      // Rule 4: calloc maps at the page size, zeroes what it reuses.
      {"r04_calloc_threshold",
       {calloc_(4064), calloc_(4063), calloc_(4056), calloc_(4064, CallocShape::Split, 2),
        calloc_(4056, CallocShape::SizeByOne), free_(0)}},
      {"r04_calloc_reuse",
       {malloc_(100), malloc_(16), free_(0), calloc_(100), malloc_(4000), malloc_(16), free_(2),
        calloc_(4000), calloc_(96, CallocShape::Split, 10)}},
      // Rules 5 and 6c: the prealloc, used whole, then appending.
      {"r05_prealloc_whole", {malloc_(131008), malloc_(16), malloc_(24), free_(1), malloc_(8)}},
      {"r05_prealloc_split", {malloc_(16), malloc_(130960), malloc_(8)}},
      // Rule 6a: best fit, ties to the lowest address (56 in three blocks of
      // 64: no exact fit to stop the search early, no split).
      {"r06a_best_fit_tie",
       {malloc_(64), malloc_(16), malloc_(64), malloc_(16), malloc_(64), malloc_(16), free_(0),
        free_(1), free_(2), malloc_(56), malloc_(56), malloc_(56)}},
      {"r06a_best_fit_smallest",
       {malloc_(96), malloc_(16), malloc_(56), malloc_(16), malloc_(72), malloc_(16), free_(0),
        free_(1), free_(2), malloc_(50), malloc_(70), malloc_(90)}},
      // Rule 6b: the last block is FREE and grows.
      {"r06b_grow_free_tail", {malloc_(100000), malloc_(40000), malloc_(100), malloc_(30000)}},
      // Rule 7: both sides of the 40-byte split rule, on a free block and
      // on a free tail.
      {"r07_split_exact",
       {malloc_(200), malloc_(16), free_(0), malloc_(near_free(0, 0)), malloc_(200), malloc_(16),
        free_(2), malloc_(near_free(0, 1)), malloc_(near_free(0, -8))}},
      {"r07_split_tail", {malloc_(near_free(0, 0)), malloc_(near_free(0, 8))}},
      {"r07_split_sweep",
       {malloc_(512), malloc_(16), free_(0), malloc_(near_free(0, -16)), free_(2),
        malloc_(near_free(0, -7)), free_(2), malloc_(near_free(0, 7)), free_(2),
        malloc_(near_free(0, 9))}},
      // Rule 10: merges with the next, the previous, both.
      {"r10_coalesce",
       {malloc_(100), malloc_(100), malloc_(100), malloc_(100), malloc_(16), free_(0), free_(1),
        free_(0), malloc_(300), free_(0), malloc_(48), malloc_(48), malloc_(48), free_(2),
        free_(1)}},
      {"r10_coalesce_prev_next",
       {malloc_(40), malloc_(40), malloc_(40), malloc_(16), free_(2), free_(0), free_(0),
        malloc_(120)}},
      // Rule 11: free of mapped blocks, in every order (the mapping treap).
      {"r11_mappings",
       {malloc_(140000), malloc_(150000), malloc_(160000), malloc_(170000), malloc_(180000),
        malloc_(190000), free_(2), free_(0), malloc_(200000), free_(3), free_(1), free_(0),
        free_(0), free_(0)}},
      // Rule 12: every branch of realloc.
      {"r12_realloc_shrink",
       {malloc_(1000), malloc_(16), realloc_(0, 100), realloc_(1, 990), realloc_(1, 984),
        realloc_(1, near_live(1, -40)), realloc_(1, near_live(1, -33))}},
      {"r12_realloc_grow_tail", {malloc_(131008), realloc_(0, 131024), realloc_(0, 100)}},
      {"r12_realloc_absorb",
       {malloc_(100), malloc_(100), malloc_(16), free_(1), realloc_(0, 200), realloc_(1, 100),
        malloc_(64), malloc_(64), malloc_(16), free_(2), realloc_(2, near_live(2, 64))}},
      {"r12_realloc_absorb_then_grow",
       {malloc_(131008), malloc_(1000), malloc_(1000), free_(2), realloc_(1, 3000)}},
      {"r12_realloc_absorb_tail_free",
       {malloc_(100), malloc_(100), free_(1), realloc_(0, 5000), realloc_(0, 131000)}},
      {"r12_realloc_move",
       {malloc_(100), malloc_(16), realloc_(0, 1000), realloc_(1, 20), realloc_(1, 2000)}},
      {"r12_realloc_mapped",
       {malloc_(200000), realloc_(0, 300000), realloc_(0, 150000), realloc_(0, 100),
        realloc_(0, 131040), realloc_(0, 131032)}},
      {"r12_realloc_to_mapped", {malloc_(100), malloc_(16), realloc_(0, 140000), realloc_(1, 16)}},
      {"r12_realloc_zero_and_null",
       {malloc_(100), realloc_(0, 0), realloc_null(50), realloc_null(200000), realloc_(0, 0)}},
      {"r12_realloc_freed",
       {malloc_(100), malloc_(200), malloc_(16), free_(0), realloc_freed(0, 50), free_(0),
        realloc_freed(1, 300)}},
      // A longer mix over every size class.
      {"mix",
       {malloc_(24), calloc_(40), malloc_(4000), malloc_(130000), malloc_(131050), realloc_(0, 48),
        free_(1), malloc_(near_free(0, 0)), realloc_(2, near_live(2, 8)), calloc_(4100),
        malloc_(60000), free_(3), realloc_(0, 0), malloc_(250000), free_(0), malloc_(8)}},
  };
}

std::vector<Scenario> fault_scenarios() {
  return {
      // Rule 5: the prealloc fails, the request is mapped, the next one
      // tries the prealloc again.
      {"r05_prealloc_fails", {fail_sbrk(), malloc_(16), malloc_(16), free_(0)}},
      {"r05_prealloc_and_mmap_fail", {fail_sbrk(), fail_mmap(), malloc_(16), malloc_(16)}},
      // Rule 9: sbrk fails later: the mmap fallback, then both fail.
      {"r09_fallback",
       {malloc_(131008), fail_sbrk(), malloc_(100), fail_sbrk(), fail_mmap(), malloc_(100),
        malloc_(100)}},
      {"r09_fallback_free_tail",
       {malloc_(100000), fail_sbrk(), malloc_(40000), fail_sbrk(), fail_mmap(), calloc_(4000)}},
      // Rule 3: mmap fails.
      {"r03_mmap_fails", {fail_mmap(), malloc_(200000), fail_mmap(), calloc_(5000)}},
      // Rule 12: a failed move keeps the old block; a failed tail grow moves.
      {"r12_realloc_fails",
       {malloc_(100), malloc_(16), fail_sbrk(), fail_mmap(), realloc_(0, 131000), malloc_(131008),
        fail_sbrk(), realloc_(2, 200), fail_mmap(), realloc_(0, 200000)}},
      // Rule 8: foreign sbrk: new segments, aligned and not, too small ones.
      {"r08_foreign_aligned",
       {malloc_(131008), foreign(64), malloc_(100), malloc_(100), free_(1), free_(1)}},
      {"r08_foreign_unaligned",
       {malloc_(131008), foreign(13), malloc_(100), foreign(5), malloc_(3000), free_(1),
        malloc_(50)}},
      {"r08_foreign_tiny_chunk", {malloc_(131008), foreign(3), malloc_(1), malloc_(8)}},
      // Growing a 31008-byte free tail by 8 after a foreign sbrk: the 8-byte
      // chunk is too small for a block; then two more growths.
      {"r08_foreign_tiny_chunk_two_growths",
       {malloc_(100000), foreign(100), malloc_(31016), malloc_(31016), malloc_(16)}},
      {"r08_foreign_tiny_chunk_two_growths_unaligned",
       {malloc_(100000), foreign(3), malloc_(31016), malloc_(31016), malloc_(16)}},
      {"r08_foreign_free_tail", {malloc_(100000), foreign(100), malloc_(40000), malloc_(16)}},
      {"r08_foreign_first", {foreign(7), malloc_(16), malloc_(24)}},
      {"r08_foreign_realloc_tail",
       {malloc_(131008), malloc_(100), foreign(8), realloc_(1, 300), realloc_(0, 131016)}},
      {"r08_foreign_realign_fails",
       {malloc_(131008), foreign(3), fail_sbrk(), malloc_(100), malloc_(100)}},
      // Rule 6d: the foreign move leaves an 8-byte chunk under a FREE last
      // block; a second sbrk completes the segment, the next two growths
      // continue it, and the FREE block still serves a request it fits.
      {"r06d_foreign_small_chunk_two_growths",
       {malloc_(100), foreign(3), malloc_(130912), malloc_(130912), malloc_(130912),
        malloc_(130904)}},
      // Capacity: sbrk refused past 8 MiB (fallback to mmap), mmap past 64.
      {"capacity_heap",
       [] {
         Ops ops;
         for (int i = 0; i < 70; ++i) ops.push_back(malloc_(120000));
         ops.push_back(malloc_(16));
         return ops;
       }()},
      {"capacity_mappings",
       [] {
         Ops ops;
         for (int i = 0; i < 66; ++i) ops.push_back(malloc_(131072));
         return ops;
       }()},
  };
}

// ---- corruption scenarios ---------------------------------------------------

CorruptionInput corrupt(Ops build, std::vector<BadCall> bad, std::vector<Write> writes,
                        bool realloc_after = false) {
  CorruptionInput c;
  c.build = std::move(build);
  c.bad = std::move(bad);
  c.writes = std::move(writes);
  c.realloc_after = realloc_after;
  c.realloc_size = exact(64);
  return c;
}

Write header_byte(std::uint8_t pick, std::uint32_t offset, std::uint8_t mask = 0x01) {
  return {WriteTarget::Header, pick, offset, 1, mask};
}

std::vector<std::pair<std::string, CorruptionInput>> corruption_scenarios() {
  const Ops heap = {malloc_(100), malloc_(200),    malloc_(16),     free_(1),
                    malloc_(300), malloc_(140000), malloc_(150000), malloc_(160000)};
  std::vector<std::pair<std::string, CorruptionInput>> out;
  // One byte of each header field (size, status, canary, prev, next) of
  // each kind of block: heap list order is ALLOC, FREE, ALLOC, ALLOC, FREE.
  const char* fields[] = {"size", "status", "canary", "prev", "next"};
  const std::uint32_t offsets[] = {0, 8, 12, 16, 24};
  for (int f = 0; f < 5; ++f) {
    out.push_back({std::string("header_alloc_") + fields[f],
                   corrupt(heap, {}, {header_byte(0, offsets[f])}, f % 2 == 1)});
    out.push_back({std::string("header_free_") + fields[f],
                   corrupt(heap, {}, {header_byte(1, offsets[f], 0x80)})});
    out.push_back({std::string("header_mapped_") + fields[f],
                   corrupt(heap, {}, {header_byte(5, offsets[f], 0x10)}, f % 2 == 0)});
    // The damaged FREE header read by the merge with the block after it.
    CorruptionInput after = corrupt(heap, {}, {header_byte(1, offsets[f], 0x80)});
    after.follow = FreeFollow::FreeAfter;
    out.push_back({std::string("header_free_") + fields[f] + "_free_after", after});
  }
  // ... by realloc growing the block in front into it, and by a search.
  for (const FreeFollow follow : {FreeFollow::ReallocBefore, FreeFollow::Search}) {
    for (int f : {0, 2}) {
      CorruptionInput c = corrupt(heap, {}, {header_byte(1, offsets[f], 0x80)});
      c.follow = follow;
      out.push_back({std::string("header_free_") + fields[f] +
                         (follow == FreeFollow::Search ? "_search" : "_realloc_into"),
                     c});
    }
  }
  // The ALLOC block behind the FREE one made to read FREE: the checker must
  // name the damaged header first, not the FREE block before it.
  out.push_back({"header_alloc_status_behind_free", corrupt(heap, {}, {header_byte(2, 8)})});
  out.push_back(
      {"overflow_into_next", corrupt(heap, {}, {{WriteTarget::Overflow, 0, 0, 40, 0x41}})});
  out.push_back(
      {"overflow_into_free", corrupt(heap, {}, {{WriteTarget::Overflow, 0, 0, 12, 0xff}}, true)});
  out.push_back({"overflow_slack_only", corrupt({malloc_(13), malloc_(16)}, {},
                                                {{WriteTarget::Overflow, 0, 0, 3, 0x5a}})});
  out.push_back({"overflow_mapped_slack",
                 corrupt({malloc_(140001)}, {}, {{WriteTarget::Overflow, 0, 0, 7, 0x5a}})});
  out.push_back(
      {"underflow_own_header", corrupt(heap, {}, {{WriteTarget::Underflow, 1, 7, 1, 0x02}})});
  out.push_back({"anywhere", corrupt(heap, {},
                                     {{WriteTarget::Anywhere, 0, 200, 8, 0x33},
                                      {WriteTarget::Anywhere, 0, 100000, 4, 0x01}})});
  out.push_back({"no_change", corrupt(heap, {}, {{WriteTarget::Header, 0, 0, 32, 0}})});
  out.push_back({"bad_pointers", corrupt({malloc_(100), malloc_(140000), free_(1), malloc_(50),
                                          malloc_(16), free_(1)},
                                         {{BadPointer::Misaligned, 0, 3},
                                          {BadPointer::Interior, 0, 5},
                                          {BadPointer::Outside, 0, 0x40}},
                                         {header_byte(0, 0)})});
  out.push_back({"bad_pointers_realloc", corrupt({malloc_(100), malloc_(140000), free_(1),
                                                  malloc_(50), malloc_(16), free_(1)},
                                                 {{BadPointer::Misaligned, 0, 0x85},
                                                  {BadPointer::Unmapped, 0, 0x80},
                                                  {BadPointer::DoubleFree, 0, 0}},
                                                 {header_byte(1, 8)}, true)});
  out.push_back({"bad_outside", corrupt({malloc_(100)},
                                        {{BadPointer::Outside, 0, 3},
                                         {BadPointer::Outside, 0, 0xc1},
                                         {BadPointer::Interior, 0, 100}},
                                        {header_byte(0, 24)})});
  return out;
}

// ---- writing ----------------------------------------------------------------

std::vector<std::uint8_t> encode(const Ops& ops, std::uint8_t kinds) {
  OpWriter w;
  for (const Op& op : ops) w.op(op, kinds);
  return w.bytes();
}

// Decodes as the target does and re-encodes: the two must be identical.
void check_round_trip(const std::string& name, const std::vector<std::uint8_t>& bytes,
                      std::uint8_t kinds) {
  FuzzedDataProvider in(bytes.data(), bytes.size());
  OpWriter again;
  while (in.remaining_bytes() > 0) again.op(read_op(in, kinds), kinds);
  if (again.bytes() != bytes) throw std::runtime_error(name + ": does not decode as written");
}

void check_corruption_round_trip(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  FuzzedDataProvider in(bytes.data(), bytes.size());
  if (write_corruption(read_corruption(in)) != bytes || in.remaining_bytes() != 0) {
    throw std::runtime_error(name + ": does not decode as written");
  }
}

void write_file(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

void fresh_dir(const fs::path& dir) {
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(dir)) fs::remove(e.path());
}

// One dictionary entry per interesting single operation, in input order.
void write_dict(const fs::path& path, const std::vector<std::pair<std::string, Op>>& entries,
                std::uint8_t kinds) {
  std::ofstream f(path, std::ios::trunc);
  f << "# Generated by fuzz/make_seeds: single operations at the contract's boundaries,\n"
       "# encoded as the target reads them (values come from the end of the input).\n";
  for (const auto& [name, op] : entries) {
    f << name << "=\"";
    for (std::uint8_t b : encode({op}, kinds)) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", b);
      f << hex;
    }
    f << "\"\n";
  }
}

std::vector<std::pair<std::string, Op>> dict_entries(bool faults) {
  std::vector<std::pair<std::string, Op>> d = {
      {"malloc_131040", malloc_(131040)},
      {"malloc_131032", malloc_(131032)},
      {"malloc_131008", malloc_(131008)},
      {"calloc_4064", calloc_(4064)},
      {"calloc_4056", calloc_(4056)},
      {"malloc_max_request", malloc_(SIZE_MAX - 39)},
      {"malloc_overflow", malloc_(SIZE_MAX - 38)},
      {"malloc_split_exact", malloc_(near_free(0, 0))},
      {"malloc_split_short", malloc_(near_free(0, 1))},
      {"realloc_split_exact", realloc_(0, near_live(0, -40))},
      {"realloc_grow", realloc_(0, near_live(0, 8))},
      {"free_0", free_(0)},
      {"realloc_freed", realloc_freed(0, 16)},
      {"calloc_overflow", calloc_(16, CallocShape::Overflow, 3)},
      {"calloc_overflow_above", calloc_(16, CallocShape::OverflowAbove, 0x21)},
  };
  if (faults) {
    d.push_back({"fail_sbrk", fail_sbrk()});
    d.push_back({"fail_mmap", fail_mmap()});
    d.push_back({"foreign_13", foreign(13)});
  }
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds <fuzz directory>\n");
    return 2;
  }
  const fs::path root = argv[1];
  try {
    std::size_t files = 0;
    auto emit_ops = [&](const std::string& target, const std::vector<Scenario>& scenarios,
                        std::uint8_t kinds) {
      for (const auto& [name, ops] : scenarios) {
        const auto bytes = encode(ops, kinds);
        check_round_trip(target + "/" + name, bytes, kinds);
        write_file(root / "corpus" / target / name, bytes);
        ++files;
      }
    };
    for (const char* t : {"ops", "faults", "api", "corruption"}) fresh_dir(root / "corpus" / t);
    emit_ops("ops", plain_scenarios(), kPlainKinds);
    emit_ops("faults", plain_scenarios(), kFaultKinds);
    emit_ops("faults", fault_scenarios(), kFaultKinds);
    // The api target reads the faults format (its fault kinds mean checks
    // and a real foreign sbrk there).
    emit_ops("api", plain_scenarios(), kFaultKinds);
    emit_ops("api", fault_scenarios(), kFaultKinds);
    for (const auto& [name, c] : corruption_scenarios()) {
      const auto bytes = write_corruption(c);
      check_corruption_round_trip("corruption/" + name, bytes);
      write_file(root / "corpus" / "corruption" / name, bytes);
      ++files;
    }
    write_dict(root / "ops.dict", dict_entries(false), kPlainKinds);
    write_dict(root / "faults.dict", dict_entries(true), kFaultKinds);
    write_dict(root / "api.dict", dict_entries(true), kFaultKinds);
    std::printf("make_seeds: wrote %zu seed files and 3 dictionaries under %s\n", files,
                root.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
