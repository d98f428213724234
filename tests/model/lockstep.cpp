#include "model/lockstep.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "model/pattern.hpp"
#include "sanitizer.hpp"
#if defined(OSMEM_UNDER_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace osmem::model {

namespace {

std::string hex(std::uintptr_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

std::string call_list(const std::vector<SourceCall>& calls) {
  std::string out = "[";
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (i > 0) out += ", ";
    out += to_string(calls[i]);
  }
  return out + "]";
}

// The first of n bytes at p (memory the tool may call no access, such as
// a free payload) that differs from want, or n; *got is that byte. Under
// ASan (or no tool) it reads in place, eight words per test and no
// sanitizer check per load: the fuzzers compare FREE payloads at every
// step. Under Valgrind and MSan, whose view of the bytes must stay as it
// was, it copies through tool::peek a chunk at a time.
#if defined(OSMEM_TOOL_VALGRIND) || defined(OSMEM_TOOL_MSAN)
std::size_t first_difference(const std::byte* p, const std::uint8_t* want, std::size_t n,
                             std::uint8_t* got) {
  static std::uint8_t chunk[16384];
  for (std::size_t i = 0; i < n; i += sizeof chunk) {
    const std::size_t len = n - i < sizeof chunk ? n - i : sizeof chunk;
    tool::peek(chunk, p + i, len);
    if (std::memcmp(chunk, want + i, len) == 0) continue;
    std::size_t k = 0;
    while (chunk[k] == want[i + k]) ++k;
    *got = chunk[k];
    return i + k;
  }
  return n;
}
#else
// The scan, inlined into two callers: one compiled for AVX2 (32-byte
// compares, used when the processor has it) and one for the baseline
// (SSE2). Comparing contents is the largest single cost of the ops target;
// the AVX2 copy halves the instructions per byte.
#define OSMEM_SCAN_ATTRIBUTES OSMEM_NO_SANITIZE_READS __attribute__((no_sanitize("undefined")))
OSMEM_SCAN_ATTRIBUTES __attribute__((always_inline)) inline std::size_t scan_difference(
    const std::byte* p, const std::uint8_t* want, std::size_t n, std::uint8_t* got) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  std::size_t i = 0;
  constexpr std::size_t kRun = 64;
  for (; i + kRun <= n; i += kRun) {
    std::uint64_t diff = 0;
    for (std::size_t k = 0; k < kRun; k += 8) {
      std::uint64_t x, y;
      __builtin_memcpy(&x, b + i + k, 8);
      __builtin_memcpy(&y, want + i + k, 8);
      diff |= x ^ y;
    }
    if (diff != 0) break;
  }
  for (; i < n; ++i) {
    if (b[i] != want[i]) {
      *got = b[i];
      return i;
    }
  }
  return n;
}

#if defined(__x86_64__)
OSMEM_SCAN_ATTRIBUTES __attribute__((target("avx2"))) std::size_t first_difference_avx2(
    const std::byte* p, const std::uint8_t* want, std::size_t n, std::uint8_t* got) {
  return scan_difference(p, want, n, got);
}
#endif

OSMEM_SCAN_ATTRIBUTES std::size_t first_difference(const std::byte* p, const std::uint8_t* want,
                                                   std::size_t n, std::uint8_t* got) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return first_difference_avx2(p, want, n, got);
#endif
  return scan_difference(p, want, n, got);
}
#undef OSMEM_SCAN_ATTRIBUTES
#endif

}  // namespace

Lockstep::Lockstep(Options options)
    : options_(options),
      source_(std::make_unique<FakeSource>(options.limits)),
      model_(options.limits, FakeSource::kPageSize) {
  engine_.emplace(*source_, options_.cookie);
}

void Lockstep::reset() {
  // In place: a new allocation per input came from fresh pages (ASan's
  // quarantine), each a page fault.
  engine_.reset();
  source_->reset();
  engine_.emplace(*source_, options_.cookie);
  model_.reset();
  live_.clear();
  by_address_.clear();
  freed_.clear();
  last_calls_.clear();
  // Zero only what the last input wrote: the rest is zero already, and
  // clearing the whole (up to the heap's capacity) cost a memset per input.
  if (expected_dirty_ != 0) std::memset(expected_.data(), 0, expected_dirty_);
  expected_dirty_ = 0;
  blocks_before_.clear();
  next_tag_ = 1;
  steps_ = 0;
  tearing_down_ = false;
  extend_calls_ = map_calls_ = unmap_calls_ = 0;
  log_.clear();
}

std::string Lockstep::describe(const Record& r) {
  const std::string p = "p" + std::to_string(r.step);
  switch (r.kind) {
    case Record::Kind::Malloc:
      return p + " = os_malloc(" + std::to_string(r.a) + ")";
    case Record::Kind::Calloc:
      return p + " = os_calloc(" + std::to_string(r.a) + ", " + std::to_string(r.b) + ")";
    case Record::Kind::Realloc:
      return p + " = os_realloc(" + to_string(r.addr) + " /*" + std::to_string(r.a) + " bytes*/, " +
             std::to_string(r.b) + ")";
    case Record::Kind::ReallocNull:
      return p + " = os_realloc(NULL, " + std::to_string(r.a) + ")";
    case Record::Kind::Free:
      return "os_free(" + to_string(r.addr) + ")";
    case Record::Kind::ReallocFreed:
      return "os_realloc(" + to_string(r.addr) + " /*freed*/, " + std::to_string(r.b) + ")";
    case Record::Kind::FailExtend:
      return "/* the next sbrk fails */";
    case Record::Kind::FailMap:
      return "/* the next mmap fails */";
    case Record::Kind::Foreign:
      return "/* another component calls sbrk(" + std::to_string(r.a) + ") */";
    case Record::Kind::FailExtendLater:
      return "/* sbrk call " + std::to_string(r.a) + " from now fails */";
    case Record::Kind::ForeignBeforeSbrk:
      return "/* another component calls sbrk(" + std::to_string(r.b) + ") just before sbrk call " +
             std::to_string(r.a) + " from now */";
    case Record::Kind::Final:
      return "final verification";
  }
  return "?";
}

std::string Lockstep::Op::str() const {
  const std::string what =
      ls_.log_.empty() ? std::string("before any operation") : describe(ls_.log_.back());
  return what + note_;
}

std::string Lockstep::transcript() const {
  std::string out;
  for (const Record& r : log_) {
    if (r.kind == Record::Kind::Final) continue;
    out += describe(r);
    out += '\n';
  }
  return out;
}

Lockstep::Op Lockstep::note(Record r) {
  r.step = steps_;
  log_.push_back(r);
  return Op(*this);
}

Addr Lockstep::addr_of(const void* p) const {
  if (p == nullptr) return Addr::null();
  if (source_->in_heap_buffer(p)) {
    return Addr::heap(
        static_cast<std::size_t>(static_cast<const std::byte*>(p) - source_->heap_base()));
  }
  if (std::size_t serial = source_->mapping_serial(p)) return Addr::mapped(serial);
  diverge("the engine returned " + hex(reinterpret_cast<std::uintptr_t>(p)) +
          ", which is neither in the heap buffer nor in a live mapping");
}

void Lockstep::diverge(const std::string& what) const {
  throw Divergence("step " + std::to_string(steps_) + ": " + what + "\noperations so far:\n" +
                   transcript());
}

void Lockstep::compare_calls(const Op& op) {
  const std::vector<SourceCall>& want = model_.calls();
  bool same = !source_->overflowed() && source_->call_count() == want.size();
  for (std::size_t i = 0; same && i < want.size(); ++i) {
    const SourceCall& got = source_->call(i);
    same = got.kind == want[i].kind && got.ok == want[i].ok && got.arg == want[i].arg &&
           got.result == want[i].result;
  }
  last_calls_.clear();
  for (std::size_t i = 0; i < source_->call_count(); ++i) {
    const SourceCall& c = source_->call(i);
    last_calls_.push_back(c);
    ++(c.kind == SourceCall::Kind::Extend ? extend_calls_
       : c.kind == SourceCall::Kind::Map  ? map_calls_
                                          : unmap_calls_);
  }
  if (!same) {
    diverge(op + ": system calls differ\n  engine: " + call_list(last_calls_) +
            "\n  model:  " + call_list(want));
  }
  source_->clear_calls();
  model_.clear_calls();
}

void Lockstep::compare_result(const Op& op, const void* got, const Addr& want) {
  const Addr a = addr_of(got);
  if (!(a == want)) diverge(op + ": returned " + to_string(a) + ", model says " + to_string(want));
  if (got != nullptr && !is_aligned8(reinterpret_cast<std::uintptr_t>(got))) {
    diverge(op + ": returned a misaligned pointer");
  }
}

void Lockstep::check_errno(const Op& op, const void* got, int err) {
  if (got != nullptr) return;
  if (model_.last_enomem() && err != ENOMEM) {
    diverge(op + ": returned NULL with errno " + std::to_string(err) + ", expected ENOMEM");
  }
  if (!model_.last_enomem() && err != 0) {
    diverge(op + ": returned NULL and changed errno to " + std::to_string(err) +
            "; it should have left errno alone");
  }
}

void Lockstep::run_checker(const Op& op) {
  Violation found[16];
  const std::size_t n = engine_->check(found, 16);
  if (n == 0) return;
  std::string what = op + ": the checker found " + std::to_string(n) + " violation(s):";
  for (std::size_t i = 0; i < n && i < 16; ++i) {
    what += std::string("\n  ") + invariant_name(found[i].invariant) + " at " +
            hex(reinterpret_cast<std::uintptr_t>(found[i].block));
  }
  diverge(what);
}

void Lockstep::compare_blocks(const Op& op) {
  const std::vector<Block>& want = model_.heap_blocks();
  std::size_t i = 0;
  // Headers are no access to memory tools outside the engine: each is held
  // open only while it is compared.
  for (const BlockMeta* b = engine_->blocks().head(); b != nullptr; b = next_of(b), ++i) {
    const OpenHeader open(b);
    const auto offset =
        static_cast<std::size_t>(reinterpret_cast<const std::byte*>(b) - source_->heap_base());
    if (i >= want.size() || want[i].offset != offset || want[i].size != b->size ||
        want[i].status != b->status) {
      std::ostringstream s;
      s << op.str() << ": heap block " << i << " is at +0x" << std::hex << offset << std::dec
        << " size " << b->size << " status " << static_cast<int>(b->status);
      if (i < want.size()) {
        s << "; model has +0x" << std::hex << want[i].offset << std::dec << " size " << want[i].size
          << " status " << static_cast<int>(want[i].status);
      } else {
        s << "; model has no more blocks";
      }
      diverge(s.str());
    }
  }
  if (i != want.size()) {
    diverge(op + ": engine has " + std::to_string(i) + " heap blocks, model " +
            std::to_string(want.size()));
  }
  const std::size_t model_mappings = model_.mappings().size();
  if (engine_->mappings().count() != model_mappings || source_->live_mappings() != model_mappings) {
    diverge(op + ": live mappings: engine " + std::to_string(engine_->mappings().count()) +
            ", source " + std::to_string(source_->live_mappings()) + ", model " +
            std::to_string(model_mappings));
  }
  if (source_->misuse_count() != 0) diverge(op + ": the engine unmapped something not mapped");
}

void Lockstep::compare_stats(const Op& op) {
  struct os_heap_stats got {};
  engine_->stats(&got);
  struct os_heap_stats want {};
  const std::vector<Block>& blocks = model_.heap_blocks();
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const Block& b = blocks[i];
    ++want.heap_blocks;
    if (b.status == Status::Free) {
      ++want.free_blocks;
      want.heap_bytes_free += b.size;
    } else {
      want.heap_bytes_in_use += b.size;
    }
    // Blocks never touch across segments (rule 8), so each gap starts one.
    const bool touches_prev =
        i > 0 && blocks[i - 1].offset + kHeaderSize + blocks[i - 1].size == b.offset;
    if (!touches_prev) ++want.heap_segments;
  }
  want.heap_span = model_.heap_span();
  want.mapped_blocks = model_.mappings().size();
  want.mapped_bytes = model_.live_mapped_bytes();
  want.sbrk_calls = extend_calls_;
  want.mmap_calls = map_calls_;
  want.munmap_calls = unmap_calls_;
  std::string diff;
  auto field = [&](const char* name, std::size_t g, std::size_t w) {
    if (g != w)
      diff +=
          std::string(" ") + name + " " + std::to_string(g) + " (want " + std::to_string(w) + ")";
  };
  field("heap_blocks", got.heap_blocks, want.heap_blocks);
  field("free_blocks", got.free_blocks, want.free_blocks);
  field("heap_bytes_in_use", got.heap_bytes_in_use, want.heap_bytes_in_use);
  field("heap_bytes_free", got.heap_bytes_free, want.heap_bytes_free);
  field("heap_span", got.heap_span, want.heap_span);
  field("heap_segments", got.heap_segments, want.heap_segments);
  field("mapped_blocks", got.mapped_blocks, want.mapped_blocks);
  field("mapped_bytes", got.mapped_bytes, want.mapped_bytes);
  field("mapped_bytes (source)", got.mapped_bytes, source_->live_mapped_bytes());
  field("sbrk_calls", got.sbrk_calls, want.sbrk_calls);
  field("mmap_calls", got.mmap_calls, want.mmap_calls);
  field("munmap_calls", got.munmap_calls, want.munmap_calls);
  if (!diff.empty()) diverge(op + ": os_heap_stats differs from the model and the source:" + diff);
}

void Lockstep::after_step(const Op& op) {
  compare_calls(op);
  compare_stats(op);
  const bool full =
      !tearing_down_ && options_.full_every != 0 && (steps_ + 1) % options_.full_every == 0;
  if (full) {
    run_checker(op);
    compare_blocks(op);
    verify_all_contents(op);
  }
  const unsigned every =
      options_.payloads_every != 0 ? options_.payloads_every : options_.full_every;
  check_free_payloads(op, !tearing_down_ && every != 0 && steps_ % every == 0);
  ++steps_;
}

void Lockstep::begin_step() {
  blocks_before_ = model_.heap_blocks();
}

// The user's bytes in a live heap block (the whole capacity: the rounding
// slack too, whatever osmem's copy or the user left there), just before it
// is freed or resized. Its first `requested` bytes were just verified to
// hold the pattern, so they are written from the pattern; only the slack is
// read, without asking memory tools (tool::peek), to which it is no access.
void Lockstep::remember_payload(const Live& l) {
  if (l.addr.kind != Addr::Kind::Heap) return;
  const std::size_t cap = model_.capacity(l.addr);
  if (expected_.size() < l.addr.value + cap) expected_.resize(l.addr.value + cap, 0);
  std::uint8_t* to = expected_.data() + l.addr.value;
  wrote_expected(l.addr.value + cap);
  const std::size_t kept = l.requested < cap ? l.requested : cap;
  pattern::fill(to, l.tag, 0, kept);
  tool::peek(to + kept, source_->heap_base() + l.addr.value + kept, cap - kept);
}

void Lockstep::user_wrote(const void* p, std::size_t len) {
  const auto* b = static_cast<const std::byte*>(p);
  if (len == 0 || !source_->in_heap_buffer(b)) return;
  const auto from = static_cast<std::size_t>(b - source_->heap_base());
  if (expected_.size() < from + len) expected_.resize(from + len, 0);
  tool::peek(expected_.data() + from, b, len);
  wrote_expected(from + len);
}

void Lockstep::check_free_payloads(const Op& op, bool all) {
  const std::vector<Block>& after = model_.heap_blocks();
  if (expected_.size() < model_.break_offset()) expected_.resize(model_.break_offset(), 0);
  // A header that a merge absorbed becomes payload of the merged block
  // with whatever it held: from now on those are the bytes to keep.
  std::size_t j = 0;
  for (const Block& b : blocks_before_) {
    while (j < after.size() && after[j].offset < b.offset) ++j;
    if (j < after.size() && after[j].offset == b.offset) continue;
    tool::peek(expected_.data() + b.offset, source_->heap_base() + b.offset, kHeaderSize);
    wrote_expected(b.offset + kHeaderSize);
  }
  j = 0;
  for (const Block& b : after) {
    if (b.status != Status::Free) continue;
    if (all) {
      compare_payload(op, b, b.offset + kHeaderSize, b.size);
      continue;
    }
    while (j < blocks_before_.size() && blocks_before_[j].offset < b.offset) ++j;
    if (j < blocks_before_.size() && blocks_before_[j] == b) continue;
    compare_changed_payload(op, b);
  }
}

// A FREE block the step made or changed: every byte that was not FREE
// payload before the step (the user's bytes of a block just freed or
// shrunk, headers a merge absorbed), and kWindow bytes at each end of the
// new payload and at each end of every FREE payload it took over, which is
// where a header written one block off, or a link kept in the payload,
// lands. The inner bytes of the FREE payloads it took over were compared
// when they became free and are compared again by the full check.
void Lockstep::compare_changed_payload(const Op& op, const Block& b) {
  constexpr std::size_t kWindow = 256;
  const std::size_t from = b.offset + kHeaderSize;
  const std::size_t to = from + b.size;
  compare_payload(op, b, from, kWindow < b.size ? kWindow : b.size);
  if (b.size > kWindow) compare_payload(op, b, to - kWindow, kWindow);
  std::size_t at = from;  // [from, at) is compared or skipped already
  auto it = std::lower_bound(blocks_before_.begin(), blocks_before_.end(), b.offset,
                             [](const Block& o, std::size_t off) { return o.offset < off; });
  if (it != blocks_before_.begin()) --it;  // the block the new one starts in
  for (; it != blocks_before_.end() && it->offset < to; ++it) {
    if (it->status != Status::Free || it->size <= 2 * kWindow) continue;
    // The inner part of an old FREE payload, clipped to the new payload.
    std::size_t lo = it->offset + kHeaderSize + kWindow;
    std::size_t hi = it->offset + kHeaderSize + it->size - kWindow;
    if (lo < at) lo = at;
    if (hi > to) hi = to;
    if (lo >= hi) continue;
    compare_payload(op, b, at, lo - at);
    at = hi;
  }
  compare_payload(op, b, at, to - at);
}

void Lockstep::compare_payload(const Op& op, const Block& b, std::size_t from, std::size_t n) {
  if (n == 0) return;
  std::uint8_t got = 0;
  const std::size_t k =
      first_difference(source_->heap_base() + from, expected_.data() + from, n, &got);
  if (k == n) return;
  const std::size_t byte = from + k - (b.offset + kHeaderSize);
  std::ostringstream s;
  s << ": FREE block at +0x" << std::hex << b.offset << std::dec << " (size " << b.size
    << ") has payload byte " << byte << " changed: 0x" << std::hex << unsigned(got)
    << ", the user left 0x" << unsigned(expected_[from + k])
    << " (osmem must not write to a free payload)";
  diverge(op + s.str());
}

// Under ASan, memcmp's interceptor checked that both sides were
// addressable, the pattern table too, at every comparison: here the
// block's bytes are asked about once (a live block's bytes must be
// addressable: the engine said so when it handed the block out) and then
// compared in place.
void Lockstep::verify_contents(const Op& op, const Live& l) const {
  verify_range(op, l, 0, l.requested);
}

void Lockstep::verify_addressable(const Op& op, const Live& l) const {
  verify_addressable(op, l, 0, l.requested);
}

void Lockstep::verify_addressable(const Op& op, const Live& l, std::size_t from,
                                  std::size_t to) const {
#if defined(OSMEM_UNDER_ASAN)
  if (from < to && __asan_region_is_poisoned(l.ptr + from, to - from) != nullptr) {
    diverge(
        op + ": block " + to_string(l.addr) + " has bytes that are no access to ASan at " +
        hex(reinterpret_cast<std::uintptr_t>(__asan_region_is_poisoned(l.ptr + from, to - from))));
  }
#else
  (void)op, (void)l, (void)from, (void)to;
#endif
}

void Lockstep::verify_range(const Op& op, const Live& l, std::size_t from, std::size_t to) const {
  if (from >= to) return;
#if defined(OSMEM_UNDER_ASAN)
  verify_addressable(op, l, from, to);
  std::size_t j = to;
  pattern::for_runs(l.tag, from, to, [&](std::size_t at, const std::uint8_t* src, std::size_t len) {
    std::uint8_t got = 0;
    const std::size_t k = first_difference(l.ptr + at, src, len, &got);
    if (k == len) return true;
    j = at + k;
    return false;
  });
#else
  const std::size_t j = from + pattern::first_mismatch(l.ptr + from, l.tag, from, to - from);
#endif
  if (j != to) {
    diverge(op + ": block " + to_string(l.addr) + " lost its contents at byte " +
            std::to_string(j) + " of " + std::to_string(l.requested));
  }
}

// A step writes headers next to its block: of the live blocks around it,
// the kNeighbourWindow bytes that face it are verified at once. A write
// that lands deeper in a neighbour is found by the next full check (every
// `full_every` steps), or when that block is freed or resized.
void Lockstep::verify_neighbours(const Op& op, std::uintptr_t start) const {
  constexpr std::size_t kNeighbourWindow = 512;
  // Only heap blocks have neighbours a step writes next to; a mapping's
  // address-order neighbour is anywhere (the periodic full check sees it).
  if (!source_->in_heap_buffer(reinterpret_cast<const void*>(start))) return;
  const bool whole = options_.full_every <= 1;
  auto it = by_address_.lower_bound(start);
  if (it != by_address_.end() && it->first == start) ++it;
  if (it != by_address_.end() && it->second.addr.kind == Addr::Kind::Heap) {
    const Live& next = it->second;
    const std::size_t to =
        whole || next.requested < kNeighbourWindow ? next.requested : kNeighbourWindow;
    verify_range(op.with(" (the next live block)"), next, 0, to);
  }
  it = by_address_.lower_bound(start);
  if (it != by_address_.begin() && std::prev(it)->second.addr.kind == Addr::Kind::Heap) {
    const Live& prev = std::prev(it)->second;
    const std::size_t from =
        whole || prev.requested < kNeighbourWindow ? 0 : prev.requested - kNeighbourWindow;
    verify_range(op.with(" (the previous live block)"), prev, from, prev.requested);
  }
}

void Lockstep::verify_all_contents(const Op& op) const {
  for (const Live& l : live_) verify_contents(op, l);
}

long Lockstep::adopt(const Op& op, void* p, const Addr& a, std::size_t requested, bool zeroed,
                     const Live* kept) {
  auto* bytes = static_cast<std::byte*>(p);
  const auto start = reinterpret_cast<std::uintptr_t>(p);
  // No overlap with any other live block.
  auto it = by_address_.lower_bound(start);
  if (it != by_address_.end() && it->first < start + requested) {
    diverge(op + ": the new block overlaps a live block at " + hex(it->first));
  }
  if (it != by_address_.begin()) {
    auto before = std::prev(it);
    if (before->first + before->second.requested > start) {
      diverge(op + ": the new block overlaps a live block at " + hex(before->first));
    }
  }
  if (zeroed) {
    const std::size_t j = pattern::first_nonzero(bytes, requested);
    if (j != requested) diverge(op + ": calloc memory not zero at byte " + std::to_string(j));
  }
  // A moved or resized block keeps its tag: its kept prefix already holds
  // the pattern, and the rest continues it.
  Live l{bytes, a, requested, kept != nullptr ? kept->tag : next_tag_++};
  if (next_tag_ == 0) next_tag_ = 1;
  const std::size_t from = kept != nullptr ? kept->requested : 0;
  pattern::fill(bytes, l.tag, from, requested);
  by_address_.emplace_hint(it, start, l);
  live_.push_back(l);
  // Splitting or carving the new block writes headers next to it.
  verify_neighbours(op, start);
  return static_cast<long>(live_.size() - 1);
}

long Lockstep::malloc(std::size_t n) {
  const Op op = note({Record::Kind::Malloc, 0, n});
  begin_step();
  errno = 0;
  void* p = engine_->malloc(n);
  const int err = errno;
  const Addr want = model_.malloc(n);
  compare_result(op, p, want);
  check_errno(op, p, err);
  long index = p == nullptr ? -1 : adopt(op, p, want, n, false, nullptr);
  after_step(op);
  return index;
}

long Lockstep::calloc(std::size_t nmemb, std::size_t size) {
  const Op op = note({Record::Kind::Calloc, 0, nmemb, size});
  begin_step();
  errno = 0;
  void* p = engine_->calloc(nmemb, size);
  const int err = errno;
  const Addr want = model_.calloc(nmemb, size);
  compare_result(op, p, want);
  check_errno(op, p, err);
  long index = p == nullptr ? -1 : adopt(op, p, want, nmemb * size, true, nullptr);
  after_step(op);
  return index;
}

long Lockstep::realloc_null(std::size_t n) {
  const Op op = note({Record::Kind::ReallocNull, 0, n});
  begin_step();
  errno = 0;
  void* p = engine_->realloc(nullptr, n);
  const int err = errno;
  const Addr want = model_.realloc(Addr::null(), n);
  compare_result(op, p, want);
  check_errno(op, p, err);
  long index = p == nullptr ? -1 : adopt(op, p, want, n, false, nullptr);
  after_step(op);
  return index;
}

long Lockstep::realloc(std::size_t index, std::size_t n) {
  const Live old = live_.at(index);
  const Op op = note({Record::Kind::Realloc, 0, old.requested, n, old.addr});
  // Only the bytes past the kept prefix are verified before the call: the
  // prefix is verified after it, in the new block, and a heap block that
  // moved is compared whole as FREE payload after the step. Past the prefix
  // is what a mapped block takes with it, or slack of a block that shrank.
  const std::size_t keep = old.requested < n ? old.requested : n;
  verify_addressable(op.with(" (before)"), old, 0, keep);
  verify_range(op.with(" (before)"), old, keep, old.requested);
  begin_step();
  remember_payload(old);
  errno = 0;
  void* p = engine_->realloc(old.ptr, n);
  const int err = errno;
  const Addr want = model_.realloc(old.addr, n);
  compare_result(op, p, want);
  check_errno(op, p, err);
  const bool old_gone = p != nullptr || n == 0;
  const auto old_start = reinterpret_cast<std::uintptr_t>(old.ptr);
  if (old_gone) {
    by_address_.erase(old_start);
    live_.erase(live_.begin() + static_cast<long>(index));
    if (old.addr.kind == Addr::Kind::Heap && p != old.ptr) freed_.emplace_back(old.ptr, old.addr);
  } else {
    verify_contents(op.with(" (failed, old block)"), old);
  }
  long result = -1;
  if (p != nullptr) {
    Live probe{static_cast<std::byte*>(p), want, keep, old.tag};
    verify_contents(op.with(" (prefix)"), probe);
    result = adopt(op, p, want, n, false, &probe);
  }
  // Shrinking splits, growing absorbs, moving frees and merges: all next to
  // the old block.
  if (p != old.ptr) verify_neighbours(op, old_start);
  after_step(op);
  return result;
}

void Lockstep::free(std::size_t index) {
  const Live old = live_.at(index);
  const Op op = note({Record::Kind::Free, 0, 0, 0, old.addr});
  // A heap block's bytes stay where they are as FREE payload, and after the
  // step every one is compared with what the user left (remember_payload,
  // compare_changed_payload): comparing them here as well read them twice.
  // A mapped block's bytes go with its munmap.
  if (old.addr.kind == Addr::Kind::Mapped) {
    verify_contents(op, old);
  } else {
    verify_addressable(op, old);
  }
  begin_step();
  remember_payload(old);
  engine_->free(old.ptr);
  model_.free(old.addr);
  const auto start = reinterpret_cast<std::uintptr_t>(old.ptr);
  by_address_.erase(start);
  live_.erase(live_.begin() + static_cast<long>(index));
  if (old.addr.kind == Addr::Kind::Heap) {
    freed_.emplace_back(old.ptr, old.addr);
    if (freed_.size() > 64) freed_.erase(freed_.begin());
  }
  // Merging rewrites the headers around the freed block.
  verify_neighbours(op, start);
  after_step(op);
}

bool Lockstep::realloc_freed(std::size_t pick, std::size_t n) {
  if (freed_.empty()) return false;
  const auto [ptr, addr] = freed_[pick % freed_.size()];
  if (!model_.is_free_block(addr) || n == 0) return false;
  const Op op = note({Record::Kind::ReallocFreed, 0, 0, n, addr});
  begin_step();
  errno = 0;
  void* p = engine_->realloc(ptr, n);
  const int err = errno;
  const Addr want = model_.realloc(addr, n);
  compare_result(op, p, want);
  check_errno(op, p, err);
  if (p != nullptr) diverge(op + ": realloc of a free block must return NULL");
  after_step(op);
  return true;
}

void Lockstep::fail_next_extend() {
  note({Record::Kind::FailExtend, 0});
  source_->fail_next_extend();
  model_.fail_next_extend();
}

void Lockstep::fail_extend_later(std::size_t later) {
  note({Record::Kind::FailExtendLater, 0, later});
  const std::size_t nth = source_->extend_calls() + later;
  if (model_.extend_calls() + later != nth)
    diverge("the source and the model count sbrk calls apart");
  source_->fail_extend_call(nth);
  model_.fail_extend_call(nth);
}

void Lockstep::fail_next_map() {
  note({Record::Kind::FailMap, 0});
  source_->fail_next_map();
  model_.fail_next_map();
}

bool Lockstep::foreign_extend(std::size_t delta) {
  note({Record::Kind::Foreign, 0, delta});
  const bool a = source_->foreign_extend(delta);
  const bool b = model_.foreign_extend(delta);
  if (a != b) diverge("foreign sbrk: the source and the model disagree on capacity");
  return a;
}

void Lockstep::foreign_extend_before_sbrk(std::size_t later, std::size_t delta) {
  note({Record::Kind::ForeignBeforeSbrk, 0, later, delta});
  const std::size_t nth = source_->extend_calls() + later;
  if (model_.extend_calls() + later != nth)
    diverge("the source and the model count sbrk calls apart");
  source_->foreign_extend_before_call(nth, delta);
  model_.foreign_extend_before_call(nth, delta);
}

void Lockstep::verify_all() {
  verify_all(true);
}

// The check before free_all leaves the contents out: free_all compares
// every block's bytes whole as it frees it (a heap block's as FREE payload
// after the step, a mapped block's before its munmap), and the check at its
// end compares every FREE payload, all of the heap by then. Checking either
// here too read those bytes once more (for the live blocks' contents, that
// was a fifth of the ops target's time).
void Lockstep::verify_and_free_all() {
  verify_all(false);
  free_all();
}

void Lockstep::verify_all(bool contents) {
  const Op op = note({Record::Kind::Final, 0});
  if (contents) verify_all_contents(op);
  run_checker(op);
  compare_blocks(op);
  compare_stats(op);
  if (!contents) return;
  begin_step();  // nothing ran since the last step: no header was absorbed
  check_free_payloads(op, true);
}

// Each free verifies the block it frees and what the step changed; the
// periodic whole checks wait for the one at the end (with 1 = every step,
// as the properties run, they still run at every free).
void Lockstep::free_all() {
  tearing_down_ = options_.full_every > 1;
  while (!live_.empty()) free(live_.size() - 1);
  tearing_down_ = false;
  verify_all();
}

}  // namespace osmem::model
