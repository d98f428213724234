// Reports that point at the culprit: what a fatal error's report says
// beyond its first line, in every build.
//
// The engine knows the error kind and one address when it stops; this file
// works out, read-only and without trusting the heap, what the user would
// ask next: which operation (and its number), which user pointer and which
// header, which rule broke, and the likely cause in words: an interior
// pointer ("8 bytes into the block at user pointer P"), an overflow from the
// block before a damaged header, a pointer to a block that has merged away.
// Values read from a header whose canary does not match are printed as
// such ("damaged"), never as facts.
//
// Like the checker it follows only pointers it has shown to lie in memory
// the heap owns, stops at the first damaged header of a walk, bounds every
// loop, and uses no heap: every line goes through LineBuffer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "block.hpp"
#include "block_check.hpp"
#include "invariant.hpp"
#include "report.hpp"

namespace osmem {

// Where an address lies in the heap list, found by walking it from the
// head as far as it is sound. An address outside the heap's span (in a
// mapping, or wild) lies in no heap block: the walk is not made, so damage
// on the heap list is never blamed for it.
struct Location {
  const BlockMeta* block = nullptr;    // the block whose header or payload holds the address
  const BlockMeta* before = nullptr;   // the sound block before `block` (or before `damaged`)
  const BlockMeta* damaged = nullptr;  // the walk stopped at this header, canary broken
};

template <class HeapT>
Location locate_in_heap(const HeapT& heap, const void* address) {
  Location at;
  if (!heap.in_heap(address, 1)) return at;
  const auto a = addr_of(address);
  const BlockMeta* prev = nullptr;
  for (const BlockMeta* b = heap.blocks().head(); b != nullptr;) {
    if (!HeapT::aligned(addr_of(b)) || !heap.in_heap(b, kHeaderSize) || b <= prev) break;
    const OpenHeader open(b);
    if (!heap.sealer().intact(b)) {
      if (a >= addr_of(b)) {
        at.damaged = b;
        at.before = prev;
      }
      break;
    }
    if (!heap.spans_heap(b)) break;
    if (a >= addr_of(b) && a < addr_of(b->end())) {
      at.block = b;
      at.before = prev;
      break;
    }
    if (a < addr_of(b)) break;  // in a gap between segments
    prev = b;
    b = b->next;
  }
  return at;
}

// The live mapping whose header or payload holds `address`, or null.
template <class HeapT>
const BlockMeta* locate_in_mappings(const HeapT& heap, const void* address) {
  const auto a = addr_of(address);
  const BlockMeta* best = nullptr;  // the highest header at or below a
  const BlockMeta* n = heap.mappings().root();
  for (int depth = 0; n != nullptr && depth < 256; ++depth) {
    if (!HeapT::aligned(addr_of(n)) || heap.in_heap(n, kHeaderSize)) return nullptr;
    const OpenHeader open(n);
    if (!heap.sealer().intact(n)) return nullptr;
    if (addr_of(n) <= a) {
      best = n;
      n = n->next;
    } else {
      n = n->prev;
    }
  }
  if (best == nullptr) return nullptr;
  const OpenHeader open(best);
  return a - addr_of(best) < kHeaderSize + best->size ? best : nullptr;
}

namespace detail {

// "user pointer 0x..., size S" for a sound header.
inline LineBuffer& block_words(LineBuffer& line, const BlockMeta* b) {
  const OpenHeader open(b);
  return line.text("user pointer ")
      .hex(addr_of(b->payload()))
      .text(" (header ")
      .hex(addr_of(b))
      .text(", size ")
      .dec(b->size)
      .text(")");
}

// The fields of a header whose canary is broken, printed as what they are.
template <class HeapT>
void damaged_header(const HeapT& heap, const BlockMeta* h, int fd) {
  if (!HeapT::aligned(addr_of(h)) || !heap.in_heap(h, kHeaderSize)) return;
  const OpenHeader open(h);
  if (heap.sealer().intact(h)) return;
  LineBuffer line;
  line.text("  header ")
      .hex(addr_of(h))
      .text(" is damaged (its canary does not match); as read, not to be trusted: size ")
      .dec(h->size)
      .text(", status ")
      .text(status_name(h->status))
      .text(", prev ")
      .hex(addr_of(h->prev))
      .text(", next ")
      .hex(addr_of(h->next))
      .text("\n");
  line.flush(fd);
}

// The cause of damage at header h, found after the sound block `before`.
inline void overflow_cause(LineBuffer& line, const BlockMeta* before, const BlockMeta* h) {
  if (before != nullptr && touches(before, h)) {
    line.text("  likely cause: the block before it, ");
    block_words(line, before)
        .text(", ends right before this header: an overflow from it is likely\n");
  } else {
    line.text("  likely cause: a stray write (no block ends right before this header)\n");
  }
}

}  // namespace detail

// The name of the rule an error kind breaks (the checker's invariant names
// for damage, a sentence for misuse).
inline const char* broken_rule(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::DoubleFree:
      return "a block is freed once";
    case ErrorKind::InvalidPointer:
      return "a pointer handed back is one osmem handed out";
    case ErrorKind::MisalignedPointer:
      return "a pointer handed back is aligned like every block";
    case ErrorKind::HeaderCorrupted:
      return invariant_name(Invariant::CanaryMismatch);
    case ErrorKind::HeapInconsistent:
      return "the heap checker's invariants (named above)";
    case ErrorKind::ForeignBreak:
      return "the program break never moves below the heap";
    case ErrorKind::UseAfterFree:
      return "a freed block is not used again";
    case ErrorKind::WriteAfterFree:
      return "a freed block's payload is not written until osmem hands it out again";
  }
  return "unknown";
}

// Everything after the first line of a fatal error's report: operation
// number, user pointer and header, the broken rule, the damaged header's
// values marked as such, the likely cause. The rule follows the cause: a
// pointer into the middle of a block breaks "a pointer handed back is one
// osmem handed out", whatever check stopped it.
template <class HeapT>
void print_diagnosis(const HeapT& heap, ErrorKind kind, std::uint64_t operation_number,
                     const void* address, int fd) {
  LineBuffer line;
  line.text("  operation ").dec(operation_number);
  const auto a = addr_of(address);
  const bool pointer =
      kind != ErrorKind::HeapInconsistent && kind != ErrorKind::ForeignBreak && address != nullptr;
  if (pointer) {
    line.text(", user pointer ").hex(a);
    if (HeapT::aligned(a) && a > kHeaderSize) line.text(", header ").hex(a - kHeaderSize);
  }
  line.text("\n");
  line.flush(fd);
  // A write after free is described by the debug checks that found it
  // (DebugChecks::print_freed_finding): the block is free, maybe merged.
  if (!pointer || kind == ErrorKind::WriteAfterFree) {
    line.text("  broken rule: ").text(broken_rule(kind)).text("\n");
    line.flush(fd);
    return;
  }

  const char* rule = broken_rule(kind);
  const BlockMeta* damaged = nullptr;  // a header to print as damaged
  LineBuffer cause;
  const auto* header = reinterpret_cast<const BlockMeta*>(a - kHeaderSize);
  const Location at = locate_in_heap(heap, address);
  if (at.damaged != nullptr) {
    damaged = at.damaged;
    rule = invariant_name(Invariant::CanaryMismatch);
    if (at.damaged != header) {
      cause.text("  the heap list is damaged before this pointer, at header ")
          .hex(addr_of(at.damaged))
          .text(" (user pointer ")
          .hex(addr_of(at.damaged) + kHeaderSize)
          .text(")\n");
    }
    detail::overflow_cause(cause, at.before, at.damaged);
  } else if (at.block != nullptr && at.block == header) {
    if (kind == ErrorKind::DoubleFree) {
      cause.text("  the block, ");
      detail::block_words(cause, header).text(", is free already\n");
    }
  } else if (at.block != nullptr && kind == ErrorKind::DoubleFree) {
    // A FREE header inside another block: a freed block that merged since.
    cause.text("  the block was freed and has since merged into the free block at ");
    detail::block_words(cause, at.block).text("\n");
  } else if (at.block != nullptr) {
    rule = broken_rule(ErrorKind::InvalidPointer);
    const OpenHeader open(at.block);
    if (a >= addr_of(at.block->payload())) {
      cause.text("  likely cause: an interior pointer, ")
          .dec(a - addr_of(at.block->payload()))
          .text(" bytes into the ")
          .text(status_name(at.block->status))
          .text(" block at ");
    } else {
      cause.text("  likely cause: a pointer into the header of the ")
          .text(status_name(at.block->status))
          .text(" block at ");
    }
    detail::block_words(cause, at.block).text("\n");
  } else if (const BlockMeta* m = locate_in_mappings(heap, address)) {
    const OpenHeader open(m);
    if (m != header) {
      rule = broken_rule(ErrorKind::InvalidPointer);
      cause.text(a >= addr_of(m->payload()) ? "  likely cause: an interior pointer, "
                                            : "  likely cause: a pointer into the header, ");
      if (a >= addr_of(m->payload())) cause.dec(a - addr_of(m->payload())).text(" bytes into ");
      cause.text("the mapped block at ");
      detail::block_words(cause, m).text("\n");
    }
  } else if (kind == ErrorKind::HeaderCorrupted) {
    cause.text("  likely cause: a write before the start of this mapped block, or a stray write\n");
  } else if (kind != ErrorKind::MisalignedPointer) {
    cause.text(
        "  likely cause: not inside any block of this heap or mapping: a wild pointer, or "
        "a mapped block freed already\n");
  }
  line.text("  broken rule: ").text(rule).text("\n");
  line.flush(fd);
  if (damaged != nullptr) detail::damaged_header(heap, damaged, fd);
  cause.flush(fd);
}

}  // namespace osmem
