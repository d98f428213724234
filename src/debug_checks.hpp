// The debug checks an API layer runs around each operation, at the level
// OSMEM_CHECK chose (check_level.hpp, docs/debug-mode.md).
//
// The API owns one DebugChecks next to its heap and calls, with the heap
// lock held,
//     before(heap, "os_free", ptr)    on entry, with the pointer handed in
//     after(heap, result)             on exit, with the pointer handed out
// so any C API over the engine (os_* here, the malloc family later) gets the
// same levels. Operations are numbered from 1 in the order they took the
// lock; reports give that number, so a failure can be replayed to the
// operation before it (every:1@N).
//
// What each level examines:
//   local  on entry, the block of the pointer handed in and its list
//          neighbours, before the engine reads them; on exit, the block
//          handed out and its neighbours, and the block a free or a move
//          left behind (the one before it, into which it may have merged)
//          and the block after that. Each of these is checked by
//          check_heap_block (block_check.hpp), which also walks the free
//          index to the block's record: O(log n).
//   sweep  local, then K more blocks on exit (sweep.hpp).
//   full   the whole checker on entry and on exit.
//   every  the whole checker on entry to operations S, S+N, S+2N, ...
// A violation is reported (report_violation) and is fatal, like any other
// heap error: the error handler sees OS_ERROR_HEAP_INCONSISTENT.
#pragma once

#include <cstddef>
#include <cstdint>

#include "block_check.hpp"
#include "block_records.hpp"
#include "check_level.hpp"
#include "diagnosis.hpp"
#include "freed_records.hpp"
#include "invariant.hpp"
#include "report.hpp"
#include "sanitizer.hpp"
#include "slack.hpp"
#include "sweep.hpp"

namespace osmem {

// One violation: the operation, the invariant by name, the block (header
// and user pointer), the block and its list neighbours as far as they lie
// in the heap (damaged headers marked), and for a damaged header the likely
// cause. Written to fd: stderr, unless a test captures the text.
template <class HeapT>
void report_violation(const HeapT& heap, const Violation& v, const char* operation,
                      const char* when, std::uint64_t operation_number, int fd = 2) {
  LineBuffer line;
  line.text("osmem: heap inconsistent ").text(when).text(" ").text(operation);
  if (operation_number != 0) line.text(" (operation ").dec(operation_number).text(")");
  line.text(": ")
      .text(invariant_name(v.invariant))
      .text(" at block ")
      .hex(reinterpret_cast<unsigned long long>(v.block));
  if (v.block != nullptr) {
    line.text(" (user pointer ").hex(addr_of(v.block) + kHeaderSize).text(")");
  }
  line.text("\n");
  line.flush(fd);
  heap.describe(v.block, fd);
  if (v.invariant == Invariant::CanaryMismatch && heap.in_heap(v.block, kHeaderSize)) {
    const Location at = locate_in_heap(heap, v.block);
    if (at.damaged == v.block) {
      detail::overflow_cause(line, at.before, at.damaged);
      line.flush(fd);
    }
  }
}

// Reports the first violation the whole checker finds, and how many more
// there are (`listed` says how many to report in full: 1 for a fatal
// report, where the others are most often that one's consequences; more
// for os_heap_check), to fd. Returns how many it found in all.
template <class HeapT>
std::size_t report_violations(const HeapT& heap, const char* operation, const char* when,
                              std::uint64_t operation_number, std::size_t listed = 1, int fd = 2) {
  constexpr std::size_t kShown = 8;
  Violation found[kShown];
  const std::size_t n = heap.check(found, kShown);
  const std::size_t shown = listed < kShown ? listed : kShown;
  for (std::size_t i = 0; i < n && i < shown; ++i) {
    report_violation(heap, found[i], operation, when, operation_number, fd);
  }
  if (n > shown) {
    LineBuffer line;
    line.text("osmem: ... and ")
        .dec(n - shown)
        .text(shown == 1 ? " more violation(s), likely consequences of this one\n"
                         : " more violation(s)\n");
    line.flush(fd);
  }
  return n;
}

// What an operation does with the pointer handed in, for the records.
enum class OpKind : std::uint8_t {
  Allocate,    // malloc, calloc, aligned allocation: hands out `result`
  Reallocate,  // realloc: may free `user`, hand out `result`, or both
  Free,        // free: `user` goes back
};

// A slack byte found changed (slack.hpp): what the report says about it.
struct SlackFinding {
  std::uintptr_t user = 0;
  std::size_t requested = 0;
  std::size_t capacity = 0;
  std::size_t offset = 0;  // of the first changed byte, from the user pointer
  unsigned value = 0;      // what that byte reads
  std::uint64_t operation = 0;
  std::uintptr_t caller = 0;
};

// A freed payload found changed (freed_records.hpp): what the report says.
struct FreedFinding {
  FreedRecord record;      // the record as it was when the change was found
  PayloadChange change;    // where, when a single word changed
  const char* found = "";  // by which check
};

template <class HeapT>
class DebugChecks {
 public:
  constexpr DebugChecks() = default;

  void set_level(const CheckLevel& level) { level_ = level; }
  // The slack checks: on for os_*. Off under malloc's rules, where
  // malloc_usable_size gives the user the whole block, slack included.
  void set_slack_checks(bool on) { slack_checks_ = on; }
  // The warning for realloc of a freed block: on for os_*, whose rule is a
  // quiet NULL. Off where that realloc is a fatal error anyway.
  void set_realloc_warning(bool on) { realloc_warning_ = on; }
  const CheckLevel& level() const { return level_; }
  // The number of the operation in progress (or of the last one).
  std::uint64_t operation() const { return operation_; }
  const SweepCursor& sweep() const { return sweep_; }

  // Debug records (block_records.hpp) in [base, base + bytes): the API
  // attaches them when a check level is on or a leak report is wanted.
  // The first half holds the ALLOC blocks' records, the second the freed
  // payloads' (freed_records.hpp).
  void attach_records(void* base, std::size_t bytes) {
    const std::size_t half = bytes / 2 / 64 * 64;
    records_.attach(base, half);
    freed_.attach(static_cast<unsigned char*>(base) + half, half);
  }
  const BlockRecords& records() const { return records_; }
  const FreedRecords& freed_records() const { return freed_; }

  // The engine's claim hook (Heap::set_claim_hook): [lo, hi) of a FREE
  // block's memory is about to be handed out, split or given back. Each
  // freed payload record starting there is verified and dropped; the part of
  // it past hi is recorded anew. Records never straddle lo: a claim starts
  // at a FREE block's header or payload, and a freed payload lies inside one
  // FREE block. Costs a lookup per 8 bytes claimed while records exist.
  static void on_claim(void* self, const std::byte* lo, const std::byte* hi) {
    static_cast<DebugChecks*>(self)->claim(reinterpret_cast<std::uintptr_t>(lo),
                                           reinterpret_cast<std::uintptr_t>(hi));
  }
  // Installs on_claim in `heap`; without it no freed payload is recorded
  // (a record the engine is not told to drop would go stale).
  void watch_claims(HeapT& heap) {
    heap.set_claim_hook(&on_claim, this);
    claims_watched_ = true;
  }

  // `requested`: the bytes asked for (allocations, realloc); `caller`: the
  // return address of the API call, for the records.
  void before(const HeapT& heap, const char* operation, OpKind kind, const void* user,
              std::size_t requested = 0, const void* caller = nullptr) {
    ++operation_;
    name_ = operation;
    kind_ = kind;
    user_ = user;
    requested_ = requested;
    caller_ = reinterpret_cast<std::uintptr_t>(caller);
    anchor_ = nullptr;
    heap_ = &heap;
    freeing_capacity_ = 0;
    if (level_.mode == CheckMode::Off) return;
    if (kind == OpKind::Reallocate && user != nullptr && realloc_warning_) {
      warn_realloc_of_freed(heap, user);
    }
    if (kind != OpKind::Allocate && claims_watched_ && freed_.active() &&
        live_heap_block(heap, user) != nullptr) {
      freeing_capacity_ = sound_capacity(heap, user);  // 0 for a FREE block
    }
    Violation v{};
    if (kind != OpKind::Allocate && check_slack(heap, user, v)) fatal(heap, v, "on entry to");
    switch (level_.mode) {
      case CheckMode::Off:
        return;
      case CheckMode::Full:
        whole(heap, "on entry to");
        return;
      case CheckMode::Every:
        if (operation_ >= level_.start && (operation_ - level_.start) % level_.every == 0) {
          whole(heap, "on entry to");
        }
        return;
      case CheckMode::Local:
      case CheckMode::Sweep:
        if (examine_before(heap, user, v)) fatal(heap, v, "on entry to");
        return;
    }
  }

  void after(const HeapT& heap, const void* result) {
    update_records(heap, result);
    switch (level_.mode) {
      case CheckMode::Off:
      case CheckMode::Every:
        return;
      case CheckMode::Full:
        whole(heap, "on exit from");
        return;
      case CheckMode::Local:
      case CheckMode::Sweep: {
        Violation v{};
        if (examine_after(heap, result, v)) fatal(heap, v, "on exit from");
        return;
      }
    }
  }

  // The local check on entry: the first violation found, or false. Also
  // remembers where the block's neighbourhood is for examine_after.
  bool examine_before(const HeapT& heap, const void* user, Violation& out) {
    anchor_ = nullptr;
    const BlockMeta* b = live_heap_block(heap, user);
    if (b == nullptr) return false;  // not a live heap block: the engine's own checks name it
    if (check_heap_block(heap, b, out)) return true;
    const BlockMeta* prev = prev_of(b);
    const BlockMeta* next = next_of(b);
    if (prev != nullptr && check_heap_block(heap, prev, out)) return true;
    if (next != nullptr && check_heap_block(heap, next, out)) return true;
    // A free (or a moving realloc) may merge b into prev; prev stays.
    anchor_ = prev != nullptr ? prev : b;
    return false;
  }

  // The local check on exit, then the sweep's step: the first violation.
  bool examine_after(const HeapT& heap, const void* result, Violation& out) {
    if (anchor_ != nullptr) {
      if (check_heap_block(heap, anchor_, out)) return true;
      const BlockMeta* next = next_of(anchor_);
      if (next != nullptr && check_heap_block(heap, next, out)) return true;
    }
    if (const BlockMeta* b = live_heap_block(heap, result)) {
      if (check_heap_block(heap, b, out)) return true;
      const BlockMeta* prev = prev_of(b);
      const BlockMeta* next = next_of(b);
      if (prev != nullptr && check_heap_block(heap, prev, out)) return true;
      if (next != nullptr && check_heap_block(heap, next, out)) return true;
    } else if (result != nullptr &&
               !heap.in_heap(BlockMeta::from_payload(const_cast<void*>(result)), kHeaderSize)) {
      if (check_mapped_block(heap, BlockMeta::from_payload(const_cast<void*>(result)), out)) {
        return true;
      }
    }
    if (level_.mode != CheckMode::Sweep) return false;
    auto slack = [&](const BlockMeta* b, Violation& v) {
      if (!records_.active() || !slack_checks_) return false;
      std::size_t capacity = 0;
      {
        const OpenHeader open(b);
        capacity = b->size;
      }
      return check_slack_of(b, capacity, v);
    };
    if (sweep_.step(heap, level_.sweep_blocks, out, slack)) return true;
    sweep_freed(level_.sweep_blocks / 4 != 0 ? level_.sweep_blocks / 4 : 1);
    return false;
  }

  // The slack of the block at `user`, when it is a sound ALLOC or MAPPED
  // block with a record: true, with the finding, when a byte changed.
  bool check_slack(const HeapT& heap, const void* user, Violation& out) {
    if (!records_.active() || !slack_checks_ || user == nullptr) return false;
    if (records_.find(reinterpret_cast<std::uintptr_t>(user)) == nullptr) return false;
    const std::size_t capacity = sound_capacity(heap, user);
    if (capacity == 0) return false;  // not a sound live block: other checks judge it
    return check_slack_of(BlockMeta::from_payload(const_cast<void*>(user)), capacity, out);
  }

  // The same for a block whose header the caller has just checked (the
  // sweep): no second look at the header.
  bool check_slack_of(const BlockMeta* b, std::size_t capacity, Violation& out) {
    const void* user = b->payload();
    const AllocRecord* r = records_.find(reinterpret_cast<std::uintptr_t>(user));
    if (r == nullptr) return false;
    const std::size_t first = first_changed_slack(user, r->requested, capacity);
    if (first >= capacity) return false;
    slack_ = SlackFinding{r->user(),    r->requested, capacity, first, read_byte(user, first),
                          r->operation, r->caller};
    out = Violation{Invariant::SlackOverwritten, b};
    return true;
  }

  const SlackFinding& slack_finding() const { return slack_; }

 private:
  // The header of `user` when it is a sealed block on the heap list; null
  // for null, a mapping, or anything the engine must judge itself.
  static const BlockMeta* live_heap_block(const HeapT& heap, const void* user) {
    const auto a = reinterpret_cast<std::uintptr_t>(user);
    if (user == nullptr || !HeapT::aligned(a) || a <= kHeaderSize) return nullptr;
    const BlockMeta* b = BlockMeta::from_payload(const_cast<void*>(user));
    if (!heap.in_heap(b, kHeaderSize)) return nullptr;
    {
      const OpenHeader open(b);
      if (!heap.sealer().intact(b)) return nullptr;
    }
    return on_heap_list(heap, b) ? b : nullptr;
  }

  // The capacity of the ALLOC heap block or live mapping at `user`, or 0
  // when it is neither (or its header is damaged).
  static std::size_t sound_capacity(const HeapT& heap, const void* user) {
    const BlockMeta* b = live_heap_block(heap, user);
    if (b == nullptr) {
      const BlockMeta* header = BlockMeta::from_payload(const_cast<void*>(user));
      if (heap.in_heap(header, kHeaderSize) || locate_in_mappings(heap, user) != header) return 0;
      b = header;
    }
    const OpenHeader open(b);
    return b->status == Status::Free ? 0 : b->size;
  }

  static unsigned read_byte(const void* user, std::size_t offset) {
    const auto* p = static_cast<const unsigned char*>(user) + offset;
    const tool::Reveal open(p, 1);
    return *p;
  }

  // Keeps the records in step with what the operation did, and fills the
  // slack of the block it handed out.
  void update_records(const HeapT& heap, const void* result) {
    if (!records_.active()) return;
    const auto user = reinterpret_cast<std::uintptr_t>(user_);
    const bool freed =
        kind_ == OpKind::Free || (kind_ == OpKind::Reallocate && user_ != nullptr &&
                                  result != user_ && (result != nullptr || requested_ == 0));
    if (freed && user != 0) {
      // Under malloc's rules the free may have trimmed the block's memory
      // away (given back with sbrk): then there is nothing to record.
      if (freeing_capacity_ != 0 &&
          heap.in_heap(reinterpret_cast<const void*>(user), freeing_capacity_)) {
        record_freed(user, freeing_capacity_);
      }
      records_.erase(user);
    }
    if (kind_ == OpKind::Free || result == nullptr) return;
    records_.put(AllocRecord::make(reinterpret_cast<std::uintptr_t>(result), requested_, operation_,
                                   caller_));
    const BlockMeta* b = BlockMeta::from_payload(const_cast<void*>(result));
    std::size_t capacity = 0;
    {
      const OpenHeader open(b);
      capacity = b->size;
    }
    if (slack_checks_) fill_slack(const_cast<void*>(result), requested_, capacity);
  }

  void whole(const HeapT& heap, const char* when) {
    if (report_violations(heap, name_, when, operation_) != 0) {
      report(heap.error_handler(), ErrorKind::HeapInconsistent, name_, nullptr);
    }
    // The slack of every recorded block.
    Violation v{};
    bool found = false;
    records_.for_each([&](const AllocRecord& r) {
      if (!found) found = check_slack(heap, reinterpret_cast<const void*>(r.user()), v);
    });
    if (found) fatal(heap, v, when);
    for (std::size_t i = 0; i < freed_.capacity(); ++i) {
      if (const FreedRecord* r = freed_.slot(i)) verify_freed(*r, "the whole check");
    }
  }

  // ---- freed payloads ------------------------------------------------------

  void record_freed(std::uintptr_t user, std::size_t capacity) {
    FreedRecord r = FreedRecord::make(user, capacity,
                                      sum_payload(reinterpret_cast<const void*>(user), capacity));
    if (const AllocRecord* a = records_.find(user)) {
      r.requested = a->requested;
      r.allocated = a->operation;
      r.allocated_by = a->caller;
    }
    r.freed = operation_;
    r.freed_by = caller_;
    freed_.put(r);
  }

  void claim(std::uintptr_t lo, std::uintptr_t hi) {
    if (freed_.size() == 0) return;
    for (std::uintptr_t a = (lo + 7) & ~std::uintptr_t{7}; a < hi;) {
      const FreedRecord* found = freed_.find(a);
      if (found == nullptr) {
        a += 8;
        continue;
      }
      const FreedRecord r = *found;
      verify_freed(r, "its memory was about to be used again");
      freed_.erase(a);
      const std::uintptr_t end = a + r.bytes;
      if (end > hi) {
        FreedRecord rest = FreedRecord::make(
            hi, end - hi, sum_payload(reinterpret_cast<const void*>(hi), end - hi));
        rest.requested = r.requested;
        rest.allocated = r.allocated;
        rest.allocated_by = r.allocated_by;
        rest.freed = r.freed;
        rest.freed_by = r.freed_by;
        rest.offset = r.offset + (hi - a);
        freed_.put(rest);
      }
      a = end;
    }
  }

  // k slots of the freed records per operation, round-robin: a record is
  // verified within ceil(capacity / k) operations while the table keeps its
  // size. The sweep passes k = K/4 (at least 1): verifying a record reads
  // its whole payload, several cache lines where a block's check reads one
  // or two, so a quarter of the rate keeps the sweep's cost near K blocks.
  void sweep_freed(std::size_t k) {
    const std::size_t slots = freed_.capacity();
    if (freed_.size() == 0 || slots == 0) return;
    for (std::size_t i = 0; i < k && i < slots; ++i) {
      if (freed_cursor_ >= slots) freed_cursor_ = 0;
      if (const FreedRecord* r = freed_.slot(freed_cursor_)) verify_freed(*r, "the sweep");
      ++freed_cursor_;
    }
  }

  void verify_freed(const FreedRecord& r, const char* found) {
    const auto* p = reinterpret_cast<const void*>(r.user());
    if (hash_payload(p, r.bytes) == r.sums.hash) return;
    const PayloadSums now = sum_payload(p, r.bytes);
    freed_finding_ = FreedFinding{r, locate_change(p, r.bytes, r.sums, now), found};
    report(heap_ != nullptr ? heap_->error_handler() : nullptr, ErrorKind::WriteAfterFree, name_,
           reinterpret_cast<const void*>(r.user() - r.offset));
  }

 public:
  // "(called from ADDRESS: SYMBOL)", the symbol when `symbolise` names it.
  static LineBuffer& called_from(LineBuffer& line, std::uintptr_t address,
                                 bool (*symbolise)(std::uintptr_t, LineBuffer&)) {
    line.text("(called from ").hex(address);
    if (symbolise != nullptr && address != 0) {
      line.text(": ");
      if (!symbolise(address, line)) line.text("no symbol");
    }
    return line.text(")");
  }

  // What the records say of the block at `user` (its request, who
  // allocated it, who freed it), as one line starting with `label`; nothing
  // when no record has it. After a fatal report's diagnosis: for a double
  // free the block's history, for a damaged header the history of the block
  // before it, the likely culprit. `symbolise` as for print_freed_finding.
  void print_history(const void* user, const char* label, int fd,
                     bool (*symbolise)(std::uintptr_t, LineBuffer&) = nullptr) const {
    const auto a = reinterpret_cast<std::uintptr_t>(user);
    LineBuffer line;
    auto caller = [&](std::uintptr_t address) { called_from(line.text(" "), address, symbolise); };
    if (const AllocRecord* r = records_.find(a)) {
      line.text(label).dec(r->requested).text(" bytes requested by operation ").dec(r->operation);
      caller(r->caller);
      line.text(", not freed\n");
    } else if (const FreedRecord* f = freed_.find(a); f != nullptr && f->offset == 0) {
      line.text(label);
      if (f->allocated != 0) {
        line.dec(f->requested).text(" bytes requested by operation ").dec(f->allocated);
        caller(f->allocated_by);
        line.text(", ");
      }
      line.text("freed by operation ").dec(f->freed);
      caller(f->freed_by);
      line.text("\n");
    } else {
      return;
    }
    line.flush(fd);
  }

  // The details of the last write after free found, after the report's
  // first line (the API's error handler prints them). `symbolise` (may be
  // null) names a caller's address (leaks.hpp).
  void print_freed_finding(int fd, bool (*symbolise)(std::uintptr_t, LineBuffer&) = nullptr) const {
    const FreedFinding& f = freed_finding_;
    auto caller = [&](LineBuffer& line, std::uintptr_t address) -> LineBuffer& {
      return called_from(line, address, symbolise);
    };
    const FreedRecord& r = f.record;
    LineBuffer line;
    line.text("  the block: ");
    if (r.allocated != 0) {
      line.dec(r.requested).text(" bytes requested by operation ").dec(r.allocated).text(" ");
      caller(line, r.allocated_by).text(", ");
    }
    line.text("freed by operation ").dec(r.freed).text(" ");
    caller(line, r.freed_by).text("\n");
    line.flush(fd);
    if (f.change.located) {
      line.text("  first changed byte: ")
          .dec(r.offset + f.change.offset)
          .text(" (the 8-byte word at offset ")
          .dec(r.offset + (f.change.offset & ~std::size_t{7}))
          .text(" reads ")
          .hex(f.change.reads)
          .text(", was ")
          .hex(f.change.was)
          .text(")\n");
    } else {
      line.text("  changed: more than one 8-byte word of bytes ")
          .dec(r.offset)
          .text("..")
          .dec(r.offset + r.bytes - 1)
          .text(" (the checksum cannot locate several changes)\n");
    }
    line.text("  found by: ").text(f.found).text("\n");
    line.text("  likely cause: a write through a pointer to this block after it was freed\n");
    line.flush(fd);
  }

 private:
  // os_realloc of a freed block returns NULL and changes nothing (the
  // seed's rule 9); with a check level on it is also a warning, since the
  // caller most likely lost track of the block.
  void warn_realloc_of_freed(const HeapT& heap, const void* user) {
    const auto a = reinterpret_cast<std::uintptr_t>(user);
    if (!HeapT::aligned(a) || a <= kHeaderSize) return;
    const BlockMeta* b = BlockMeta::from_payload(const_cast<void*>(user));
    if (!heap.in_heap(b, kHeaderSize)) return;
    {
      const OpenHeader open(b);
      if (!heap.sealer().intact(b) || b->status != Status::Free) return;
    }
    LineBuffer line;
    line.text("osmem: warning: ")
        .text(name_)
        .text(" (operation ")
        .dec(operation_)
        .text(") of a freed block, user pointer ")
        .hex(a)
        .text(": returns NULL and changes nothing");
    if (const FreedRecord* r = freed_.find(a)) {
      line.text("; freed by operation ")
          .dec(r->freed)
          .text(" (called from ")
          .hex(r->freed_by)
          .text(")");
    }
    line.text("\n");
    line.flush(2);
  }

  [[noreturn]] void fatal(const HeapT& heap, const Violation& v, const char* when) {
    report_violation(heap, v, name_, when, operation_);
    if (v.invariant == Invariant::SlackOverwritten) {
      LineBuffer line;
      line.text("  the block: ")
          .dec(slack_.requested)
          .text(" bytes requested by operation ")
          .dec(slack_.operation)
          .text(" (called from ")
          .hex(slack_.caller)
          .text("), capacity ")
          .dec(slack_.capacity)
          .text("; byte ")
          .dec(slack_.offset)
          .text(" (")
          .dec(slack_.offset - slack_.requested)
          .text(" past the request) reads ")
          .hex(slack_.value)
          .text(", not the slack filler ")
          .hex(kSlackByte)
          .text("\n  likely cause: an overflow from this block: a write past the ")
          .dec(slack_.requested)
          .text(" bytes it was asked for\n");
      line.flush(2);
    }
    report(heap.error_handler(), ErrorKind::HeapInconsistent, name_, nullptr);
  }

  CheckLevel level_{};
  std::uint64_t operation_ = 0;
  const char* name_ = "";
  OpKind kind_ = OpKind::Allocate;
  const void* user_ = nullptr;
  std::size_t requested_ = 0;
  std::uintptr_t caller_ = 0;
  const BlockMeta* anchor_ = nullptr;  // set by examine_before, read by examine_after
  const HeapT* heap_ = nullptr;        // the heap of the operation in progress
  std::size_t freeing_capacity_ = 0;   // of the heap block the operation may free
  FreedRecords freed_;
  bool slack_checks_ = true;
  bool realloc_warning_ = true;
  bool claims_watched_ = false;
  std::size_t freed_cursor_ = 0;
  FreedFinding freed_finding_;
  SweepCursor sweep_;
  BlockRecords records_;
  SlackFinding slack_;
};

}  // namespace osmem
