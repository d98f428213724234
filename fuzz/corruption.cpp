// Fuzz target `corruption`: what the engine does with a heap that user code
// has damaged, and with pointers it never handed out.
//
// 1. Build a valid heap from the input's operations (in lockstep with the
//    model; the full checker every 16 steps and before step 2).
// 2. Hand bad pointers to free/realloc with an error handler that throws:
//    misaligned, interior, outside the heap, a mapping already unmapped, a
//    double free. Each must be diagnosed with the right kind (interior:
//    some kind) before anything changes; the lockstep check afterwards
//    proves nothing did.
// 3. Overwrite a few bytes the way a buffer overflow does: a header byte, a
//    run past a block's end or before its start, or anywhere below the
//    break. Then the checker, which must not crash, hang or read outside the
//    heap (ASan watches), must report exactly when a header on the heap list
//    or in the mapping tree changed: every header byte is covered by the
//    canary, so silence means a blind spot and a report means a false alarm.
//    A report must name the damage once (damage_reports.hpp): its first
//    violation is a canary mismatch at the lowest damaged header on the heap
//    list (or, with none there, at a damaged mapping), and the fatal report
//    built on it prints that one violation, shows the header as damaged,
//    gives the likely cause (the block that ends right before the header,
//    whose run past its end reached it, else a stray write) and counts the
//    rest as its consequences.
// 4. Hand the damaged block to free or realloc: it must be diagnosed as
//    HeaderCorrupted, not followed. If only a FREE block's header changed,
//    the input picks what reads it next: freeing the block in front of it
//    or after it (both merges must diagnose it before reading it), growing
//    the block in front into it (realloc's absorb path), or a malloc of its
//    size (the search may pick another block but must not hand it out).
//    Every diagnosis names a damaged header's block, and its report
//    (print_diagnosis) shows the lowest damaged header on the heap list as
//    damaged with the same likely cause, or, for a damaged mapping, blames
//    nothing on the heap list. If no header changed and no live data was
//    hit, the heap must still agree with the model to the last byte, and
//    everything is freed.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>

#include "corruption_input.hpp"
#include "damage_reports.hpp"
#include "lockstep_driver.hpp"

namespace {

using osmem::BlockMeta;
using osmem::ErrorKind;
using osmem::Status;
using osmem::fuzz::BadCall;
using osmem::fuzz::BadPointer;
using osmem::fuzz::WriteTarget;
using osmem::model::Lockstep;

struct EngineError : std::runtime_error {
  EngineError(ErrorKind k, const char* operation, const void* at)
      : std::runtime_error(std::string("the engine reported ") + osmem::error_name(k) + " in " +
                           operation),
        kind(k),
        address(at) {}
  ErrorKind kind;
  const void* address;  // what the error handler was given
};

[[noreturn]] void throw_error(ErrorKind kind, const char* operation, const void* address) {
  throw EngineError(kind, operation, address);
}

[[noreturn]] void finding(const Lockstep& ls, const std::string& what) {
  std::fprintf(stderr, "\n==== osmem corruption: %s\noperations so far:\n%s\n", what.c_str(),
               ls.transcript().c_str());
  std::abort();
}

// Runs call(); it must raise an engine error, of kind `want` if given.
// Returns the address the error handler was given.
template <class F>
const void* expect_error(const Lockstep& ls, const std::string& what, std::optional<ErrorKind> want,
                         F&& call) {
  try {
    call();
  } catch (const EngineError& e) {
    if (want && e.kind != *want) {
      finding(ls, what + ": diagnosed as " + osmem::error_name(e.kind) + ", expected " +
                      osmem::error_name(*want));
    }
    return e.address;
  }
  finding(ls, what + ": not diagnosed");
}

alignas(8) std::byte g_outside[96];

void probe(Lockstep& ls, const osmem::fuzz::LockstepDriver& driver, const BadCall& bad) {
  auto& engine = ls.engine();
  const auto& live = ls.live();
  const bool use_realloc = (bad.arg & 0x80) != 0;
  auto hand = [&](void* p, const std::string& what, std::optional<ErrorKind> want,
                  bool realloc_ok = true) {
    const bool r = use_realloc && realloc_ok;
    expect_error(ls, std::string(r ? "os_realloc" : "os_free") + " of " + what, want, [&] {
      if (r) {
        engine.realloc(p, 16);
      } else {
        engine.free(p);
      }
    });
  };
  switch (bad.kind) {
    case BadPointer::Misaligned:
      if (live.empty()) return;
      hand(live[bad.pick % live.size()].ptr + 1 + bad.arg % 7, "a misaligned pointer",
           ErrorKind::MisalignedPointer);
      break;
    case BadPointer::Interior: {
      if (live.empty()) return;
      const Lockstep::Live& l = live[bad.pick % live.size()];
      const std::size_t words = ls.model().capacity(l.addr) / 8;
      if (words == 0) return;
      // At most the block's own capacity in: the fake header then lies in
      // the block itself, never on a neighbour's real header. Only free:
      // realloc may legitimately take a stale FREE header for a freed block.
      hand(l.ptr + 8 * (1 + (bad.arg & 0x7f) % words), "an interior pointer", std::nullopt, false);
      break;
    }
    case BadPointer::Outside:
      if ((bad.arg & 0x40) != 0) {
        // Up to the header size (32 included: its header would be at
        // address 0): rejected before any header is computed or read.
        const std::uintptr_t tiny = std::uintptr_t{8} * (1 + (bad.arg & 3));
        hand(reinterpret_cast<void*>(tiny), "a tiny pointer", ErrorKind::InvalidPointer);
      } else {
        hand(g_outside + 32 + 8 * (bad.arg & 7), "a pointer outside the heap",
             ErrorKind::InvalidPointer);
      }
      break;
    case BadPointer::Unmapped: {
      const auto& gone = driver.freed_mapped();
      if (gone.empty()) return;
      std::byte* p = gone[bad.pick % gone.size()].ptr;
      if (ls.source().mapping_serial(p) != 0) return;  // mmap reused the address
      hand(p, "an unmapped block", ErrorKind::InvalidPointer);
      break;
    }
    case BadPointer::DoubleFree: {
      const auto& gone = driver.freed_heap();
      if (gone.empty()) return;
      const Lockstep::Live& l = gone[bad.pick % gone.size()];
      if (!ls.model().is_free_block(l.addr)) return;
      hand(l.ptr, "a freed block (double free)", ErrorKind::DoubleFree, false);
      break;
    }
    case BadPointer::Count:
      break;
  }
  ls.verify_all();  // a diagnosed call changes nothing
}

using Snapshot = osmem::fuzz::HeaderSnapshot;

void corrupt_and_judge(Lockstep& ls, const osmem::fuzz::CorruptionInput& c) {
  auto& engine = ls.engine();
  std::vector<Snapshot> headers;
  for (BlockMeta* b = engine.blocks().head(); b != nullptr; b = b->next) {
    headers.push_back({b, b->status, {}});
  }
  for (const Lockstep::Live& l : ls.live()) {
    if (l.addr.kind == osmem::model::Addr::Kind::Mapped) {
      headers.push_back({BlockMeta::from_payload(l.ptr), Status::Mapped, {}});
    }
  }
  for (Snapshot& s : headers) std::memcpy(s.bytes, s.header, sizeof s.bytes);

  std::byte* const base = ls.source().heap_base();
  const std::size_t brk = ls.source().break_offset();
  bool live_data_hit = false;
  auto scribble = [&](std::byte* from, std::size_t len, std::byte* limit, std::uint8_t mask) {
    if (from >= limit) return;
    if (len > static_cast<std::size_t>(limit - from)) len = static_cast<std::size_t>(limit - from);
    for (std::size_t i = 0; i < len; ++i) from[i] ^= std::byte{mask};
    // A FREE payload is the user's bytes too (rule 15): what a use after
    // free writes there must stay, and is no metadata the checker judges.
    ls.user_wrote(from, len);
    if (mask == 0) return;
    for (const Lockstep::Live& l : ls.live()) {
      if (from < l.ptr + l.requested && l.ptr < from + len) live_data_hit = true;
    }
  };
  for (const osmem::fuzz::Write& w : c.writes) {
    const auto& live = ls.live();
    switch (w.target) {
      case WriteTarget::Header: {
        if (headers.empty()) break;
        auto* h = reinterpret_cast<std::byte*>(headers[w.pick % headers.size()].header);
        scribble(h + w.offset % 32, w.len, h + osmem::kHeaderSize, w.mask);
        break;
      }
      case WriteTarget::Overflow: {
        if (live.empty()) break;
        const Lockstep::Live& l = live[w.pick % live.size()];
        std::byte* limit = l.addr.kind == osmem::model::Addr::Kind::Mapped
                               ? l.ptr + ls.model().capacity(l.addr)
                               : base + brk;
        scribble(l.ptr + l.requested, w.len, limit, w.mask);
        break;
      }
      case WriteTarget::Underflow: {
        if (live.empty()) break;
        const Lockstep::Live& l = live[w.pick % live.size()];
        scribble(l.ptr - 1 - w.offset % 32, w.len, l.ptr, w.mask);
        break;
      }
      case WriteTarget::Anywhere:
        if (brk == 0) break;
        scribble(base + w.offset % brk, w.len, base + brk, w.mask);
        break;
      case WriteTarget::Count:
        break;
    }
  }

  const Snapshot* changed_live = nullptr;
  const Snapshot* changed_free = nullptr;
  std::size_t free_index = 0;
  for (std::size_t i = 0; i < headers.size(); ++i) {
    if (std::memcmp(headers[i].bytes, headers[i].header, osmem::kHeaderSize) == 0) continue;
    if (headers[i].status == Status::Free) {
      if (changed_free == nullptr) {
        changed_free = &headers[i];
        free_index = i;
      }
    } else if (changed_live == nullptr) {
      changed_live = &headers[i];
    }
  }
  const bool changed = changed_live != nullptr || changed_free != nullptr;

  osmem::Violation found[16];
  const std::size_t violations = engine.check(found, 16);
  if (changed && violations == 0) {
    const Snapshot& s = changed_live != nullptr ? *changed_live : *changed_free;
    char what[160];
    std::snprintf(what, sizeof what,
                  "checker blind spot: the header at heap+0x%zx (status %d) changed and the "
                  "checker found nothing",
                  static_cast<std::size_t>(reinterpret_cast<std::byte*>(s.header) - base),
                  static_cast<int>(s.status));
    finding(ls, what);
  }
  if (!changed && violations != 0) {
    finding(ls, std::string("checker false alarm: no metadata changed, yet it reports ") +
                    osmem::invariant_name(found[0].invariant));
  }
  const osmem::fuzz::Damage damage(headers);
  if (changed) {
    const std::string wrong = damage.judge_checker(engine, found[0], violations);
    if (!wrong.empty()) finding(ls, "checker report: " + wrong);
  }
  // The diagnosis of the engine's error names a damaged header's block.
  auto judge = [&](const std::string& what, ErrorKind kind, const void* address) {
    const std::string wrong = damage.judge_diagnosis(engine, kind, address);
    if (!wrong.empty()) finding(ls, what + ": " + wrong);
  };

  if (changed_live != nullptr) {
    void* p = changed_live->header->payload();
    const std::size_t n = osmem::fuzz::resolve_size(c.realloc_size, {}, {});
    const std::string what = c.realloc_after ? "os_realloc of a block with a corrupted header"
                                             : "os_free of a block with a corrupted header";
    judge(what, ErrorKind::HeaderCorrupted, expect_error(ls, what, ErrorKind::HeaderCorrupted, [&] {
            if (c.realloc_after) {
              engine.realloc(p, n);
            } else {
              engine.free(p);
            }
          }));
    return;
  }
  if (changed_free != nullptr) {
    // The list as it was: the ALLOC blocks in front of and after the
    // damaged FREE block, when they touch it.
    auto* f = reinterpret_cast<const std::byte*>(changed_free->header);
    const Snapshot* before = free_index > 0 && headers[free_index - 1].status == Status::Alloc
                                 ? &headers[free_index - 1]
                                 : nullptr;
    if (before != nullptr && before->header->end() != f) before = nullptr;
    const Snapshot* after =
        free_index + 1 < headers.size() && headers[free_index + 1].status == Status::Alloc
            ? &headers[free_index + 1]
            : nullptr;
    BlockMeta original;
    std::memcpy(&original, changed_free->bytes, sizeof original);
    if (after != nullptr && reinterpret_cast<const std::byte*>(after->header) !=
                                f + osmem::kHeaderSize + original.size) {
      after = nullptr;
    }
    switch (c.follow) {
      case osmem::fuzz::FreeFollow::FreeBefore: {
        if (before == nullptr) break;
        const std::string what = "os_free of the block in front of a corrupted FREE header";
        judge(what, ErrorKind::HeaderCorrupted,
              expect_error(ls, what, ErrorKind::HeaderCorrupted,
                           [&] { engine.free(before->header->payload()); }));
        break;
      }
      case osmem::fuzz::FreeFollow::FreeAfter: {
        if (after == nullptr) break;
        const std::string what = "os_free of the block after a corrupted FREE header";
        judge(what, ErrorKind::HeaderCorrupted,
              expect_error(ls, what, ErrorKind::HeaderCorrupted,
                           [&] { engine.free(after->header->payload()); }));
        break;
      }
      case osmem::fuzz::FreeFollow::ReallocBefore: {
        if (before == nullptr) break;
        // More than it holds: the absorb path checks the next header's
        // canary before it reads the header.
        const std::size_t n = before->header->size + 8;
        const std::string what = "os_realloc into a corrupted FREE header";
        judge(what, ErrorKind::HeaderCorrupted,
              expect_error(ls, what, ErrorKind::HeaderCorrupted,
                           [&] { engine.realloc(before->header->payload(), n); }));
        break;
      }
      case osmem::fuzz::FreeFollow::Search: {
        // Its own size: the best-fit search reaches it. It may pick another
        // block (the damage can hide this one), but never hand this one
        // out; when it stops at it, it reports the damaged header.
        void* p = nullptr;
        try {
          p = engine.malloc(original.size);
        } catch (const EngineError& e) {
          judge("os_malloc reaching a corrupted FREE header", e.kind, e.address);
          break;
        }
        if (p == changed_free->header->payload()) {
          finding(ls, "os_malloc handed out a block whose FREE header was corrupted");
        }
        break;
      }
      case osmem::fuzz::FreeFollow::Count:
        break;
    }
    return;
  }
  if (!live_data_hit) ls.verify_and_free_all();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace osmem::fuzz;
  // This target writes into headers on purpose (step 3): its heap is not
  // poisoned for memory tools, or ASan would stop at the write itself.
  const osmem::tool::Untracked untracked;
  FuzzedDataProvider in(data, size);
  const CorruptionInput c = read_corruption(in);
  // While building: the calls, the touched blocks and the block list every
  // step, the checker and every block every 16 (as in `ops`), and all of it
  // after each bad pointer (probe) and before the damage.
  with_lockstep("corruption", 16, [&](Lockstep& ls) {
    ls.engine().set_error_handler(throw_error);
    LockstepDriver driver(ls);
    for (const Op& op : c.build) driver.apply(op);
    for (const BadCall& bad : c.bad) probe(ls, driver, bad);
    ls.verify_all();
    corrupt_and_judge(ls, c);
  });
  return 0;
}
