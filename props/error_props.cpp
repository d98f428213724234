// Bad input (docs/contract.md, "Bad input"): every misuse from a generated
// list is reported as exactly its error kind, at the right address, before
// the engine changes anything.
//
// The other properties only make valid calls, so a check the engine skips
// on the error path (a double free let through, a canary not verified
// before a header is trusted) is invisible to them; this one makes the
// invalid call on purpose, on a heap with holes and mappings, and then
// verifies that the heap is exactly what the model says it was before.
#include <gtest/gtest.h>
#include <rapidcheck.h>
// Needs gtest/gtest.h first: Debian's copy does not include it itself.
#include <rapidcheck/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "generators.hpp"
#include "harness.hpp"

namespace osmem::props {
namespace {

enum class Misuse {
  DoubleFree,        // free a heap block twice
  FreeUnmapped,      // free a mapped block twice: no longer a live mapping
  Misaligned,        // free or realloc of p + 1..7
  NotFromUs,         // free or realloc of a static buffer
  InsideMapping,     // free or realloc of an address inside a mapping
  OverflowedHeader,  // one byte of the block's own header overwritten
  OverflowedNext,    // one byte of the next block's header overwritten, then free
  OverflowedPrev,    // one byte of the previous block's header overwritten, then free
};

const char* name(Misuse m) {
  switch (m) {
    case Misuse::DoubleFree:
      return "DoubleFree";
    case Misuse::FreeUnmapped:
      return "FreeUnmapped";
    case Misuse::Misaligned:
      return "Misaligned";
    case Misuse::NotFromUs:
      return "NotFromUs";
    case Misuse::InsideMapping:
      return "InsideMapping";
    case Misuse::OverflowedHeader:
      return "OverflowedHeader";
    case Misuse::OverflowedNext:
      return "OverflowedNext";
    case Misuse::OverflowedPrev:
      return "OverflowedPrev";
  }
  return "?";
}

alignas(64) std::byte not_from_us[256];

RC_GTEST_PROP(BadInput, IsReportedWithItsKindBeforeAnythingChanges, ()) {
  const auto sizes =
      *rc::gen::nonEmpty(rc::gen::container<std::vector<std::size_t>>(small_heap_size()));
  const auto keep =
      *rc::gen::container<std::vector<bool>>(sizes.size(), rc::gen::arbitrary<bool>());
  const std::size_t maps = *rc::gen::inRange<std::size_t>(0, 4);
  const tool::Untracked untracked;  // the property forges headers: no poisoning
  Harness h;
  model::Lockstep& ls = h.ls;
  guarded([&] {
    std::vector<std::byte*> got;
    for (std::size_t n : sizes)
      got.push_back(ls.live()[static_cast<std::size_t>(ls.malloc(n))].ptr);
    for (std::size_t i = 0; i < maps; ++i) ls.malloc(kMmapThreshold + i * 8);
    for (std::size_t i = 0; i < got.size(); ++i) {
      if (keep[i]) continue;
      for (std::size_t j = 0; j < ls.live().size(); ++j) {
        if (ls.live()[j].ptr == got[i]) {
          ls.free(j);
          break;
        }
      }
    }
  });

  std::vector<std::size_t> heap, mapped, with_next, with_prev;
  for (std::size_t i = 0; i < ls.live().size(); ++i) {
    std::byte* p = ls.live()[i].ptr;
    if (ls.source().mapping_serial(p) != 0) {
      mapped.push_back(i);
      continue;
    }
    heap.push_back(i);
    const BlockMeta* b = BlockMeta::from_payload(p);
    if (touches(b, b->next)) with_next.push_back(i);
    if (b->prev != nullptr) with_prev.push_back(i);
  }
  std::vector<Misuse> possible = {Misuse::NotFromUs};
  if (!heap.empty() || !mapped.empty()) {
    possible.push_back(Misuse::Misaligned);
    possible.push_back(Misuse::OverflowedHeader);
  }
  if (!heap.empty()) possible.push_back(Misuse::DoubleFree);
  if (!mapped.empty()) {
    possible.push_back(Misuse::FreeUnmapped);
    possible.push_back(Misuse::InsideMapping);
  }
  if (!with_next.empty()) possible.push_back(Misuse::OverflowedNext);
  if (!with_prev.empty()) possible.push_back(Misuse::OverflowedPrev);
  const Misuse m = *rc::gen::elementOf(possible);
  const bool by_realloc = *rc::gen::arbitrary<bool>();
  RC_TAG(name(m));

  std::vector<std::size_t> any = heap;
  any.insert(any.end(), mapped.begin(), mapped.end());
  auto pick = [&](const std::vector<std::size_t>& from) {
    return ls.live()[*rc::gen::elementOf(from)].ptr;
  };
  auto flip_header_byte = [&](std::byte* payload) {
    std::byte* header = payload - kHeaderSize;
    header[*rc::gen::inRange<std::size_t>(0, kHeaderSize)] ^=
        std::byte{static_cast<unsigned char>(*rc::gen::inRange(1, 256))};
  };

  // Frees, through the harness, the live block at p.
  auto free_live = [&](std::byte* p) {
    guarded([&] {
      for (std::size_t j = 0; j < ls.live().size(); ++j) {
        if (ls.live()[j].ptr == p) {
          ls.free(j);
          break;
        }
      }
    });
  };

  std::byte* bad = nullptr;     // the pointer handed to os_free/os_realloc
  const void* where = nullptr;  // the address the report must name
  ErrorKind want = ErrorKind::InvalidPointer;
  // os_free validates both neighbours before the free index is touched, so
  // a damaged neighbour is always named. os_realloc's absorb path removes
  // the next block from the index first; the index may meet another damaged
  // FREE header on its way (a FREE neighbour is also an index node, whose
  // size steers the walk) and stop with HeapInconsistent at that node.
  bool free_neighbour = false;
  bool heap_intact = true;  // nothing corrupted: the heap must be unchanged
  bool use_realloc = by_realloc;
  switch (m) {
    case Misuse::DoubleFree: {
      bad = pick(heap);
      free_live(bad);
      where = bad;
      // realloc of a FREE block is allowed (NULL, nothing changes); only
      // free is a double free.
      use_realloc = false;
      want = ErrorKind::DoubleFree;
      break;
    }
    case Misuse::FreeUnmapped: {
      bad = pick(mapped);
      free_live(bad);
      where = bad;
      want = ErrorKind::InvalidPointer;
      break;
    }
    case Misuse::Misaligned:
      bad = pick(any) + *rc::gen::inRange(1, 8);
      where = bad;
      want = ErrorKind::MisalignedPointer;
      break;
    case Misuse::NotFromUs:
      bad = not_from_us + kHeaderSize + 8 * *rc::gen::inRange(0, 20);
      where = bad;
      want = ErrorKind::InvalidPointer;
      break;
    case Misuse::InsideMapping:
      bad = pick(mapped) + 8 * *rc::gen::inRange(1, 1024);
      where = bad;
      want = ErrorKind::InvalidPointer;
      break;
    case Misuse::OverflowedHeader:
      bad = pick(any);
      flip_header_byte(bad);
      where = bad;
      want = ErrorKind::HeaderCorrupted;
      heap_intact = false;
      break;
    case Misuse::OverflowedNext: {
      bad = pick(with_next);
      BlockMeta* nb = BlockMeta::from_payload(bad)->next;
      free_neighbour = nb->status == Status::Free;
      std::byte* next = nb->payload();
      flip_header_byte(next);
      where = next;
      want = ErrorKind::HeaderCorrupted;
      use_realloc = false;  // realloc reads the next header only when growing
      heap_intact = false;
      break;
    }
    case Misuse::OverflowedPrev: {
      bad = pick(with_prev);
      BlockMeta* pb = BlockMeta::from_payload(bad)->prev;
      free_neighbour = pb->status == Status::Free;
      std::byte* prev = pb->payload();
      flip_header_byte(prev);
      where = prev;
      want = ErrorKind::HeaderCorrupted;
      use_realloc = false;
      heap_intact = false;
      break;
    }
  }
  RC_LOG() << name(m) << ": " << (use_realloc ? "os_realloc" : "os_free") << "\n";

  bool reported = false;
  try {
    if (use_realloc) {
      ls.engine().realloc(bad, *rc::gen::oneOf(small_heap_size(), request_size()));
    } else {
      ls.engine().free(bad);
    }
  } catch (const EngineError& e) {
    reported = true;
    const auto at = reinterpret_cast<std::uintptr_t>(e.address);
    if (!(free_neighbour && use_realloc && e.kind == ErrorKind::HeapInconsistent)) {
      RC_ASSERT(std::string(error_name(e.kind)) == std::string(error_name(want)));
      RC_ASSERT(at == reinterpret_cast<std::uintptr_t>(where));
    }
  }
  RC_ASSERT(reported);
  // Reported before anything changed: no system call, and (when only the
  // pointer was bad) the heap is still exactly what the model says.
  RC_ASSERT(ls.source().call_count() == 0u);
  if (heap_intact) guarded([&] { ls.verify_all(); });
}

// ---- a damaged mapped header handed to os_free and os_realloc ------------

enum class MappedDamage {
  FlippedByte,    // one byte of the header (any field, the canary too), not resealed
  StatusFree,     // status FREE, resealed
  StatusAlloc,    // status ALLOC, resealed
  StatusGarbage,  // status 7, resealed
};

const char* name(MappedDamage d) {
  switch (d) {
    case MappedDamage::FlippedByte:
      return "FlippedByte";
    case MappedDamage::StatusFree:
      return "StatusFree";
    case MappedDamage::StatusAlloc:
      return "StatusAlloc";
    case MappedDamage::StatusGarbage:
      return "StatusGarbage";
  }
  return "?";
}

[[maybe_unused]] void showValue(MappedDamage d, std::ostream& os) {
  os << name(d);
}

// A mapped block whose header was damaged, by a user's stray write (the
// canary no longer matches) or resealed with a status other than MAPPED
// (what only a bug inside the engine could write), is handed to os_free or
// os_realloc (any size, 0 included). The call must stop with
// HeaderCorrupted at that block before it changes anything: no system call
// (above all no munmap of a length read from a bad header), and once the
// damaged bytes are put back, the heap and every mapping, the damaged one
// included, are exactly what the model says; freeing that block then
// unmaps it as it should.
RC_GTEST_PROP(BadInput, DamagedMappedHeaderStopsFreeAndRealloc, ()) {
  const auto sizes = *rc::gen::container<std::vector<std::size_t>>(small_heap_size());
  const auto keep =
      *rc::gen::container<std::vector<bool>>(sizes.size(), rc::gen::arbitrary<bool>());
  // A few mappings (each is filled and verified at every step), so the
  // lookup walks a small tree of them.
  const auto mapped_sizes = *rc::gen::resize(
      4,
      rc::gen::nonEmpty(rc::gen::container<std::vector<std::size_t>>(rc::gen::inRange<std::size_t>(
          kMmapThreshold - kHeaderSize, kMmapThreshold + 4 * kPage))));
  const tool::Untracked untracked;  // the property forges headers: no poisoning
  Harness h;
  model::Lockstep& ls = h.ls;
  std::vector<std::byte*> mapped;
  guarded([&] {
    std::vector<std::byte*> heap;
    for (std::size_t i = 0; i < sizes.size() || i < mapped_sizes.size(); ++i) {
      if (i < sizes.size())
        heap.push_back(ls.live()[static_cast<std::size_t>(ls.malloc(sizes[i]))].ptr);
      if (i < mapped_sizes.size()) {
        mapped.push_back(ls.live()[static_cast<std::size_t>(ls.malloc(mapped_sizes[i]))].ptr);
      }
    }
    for (std::size_t i = 0; i < heap.size(); ++i) {
      if (keep[i]) continue;
      for (std::size_t j = 0; j < ls.live().size(); ++j) {
        if (ls.live()[j].ptr == heap[i]) {
          ls.free(j);
          break;
        }
      }
    }
  });
  for (std::byte* p : mapped) RC_ASSERT(ls.source().mapping_serial(p) != 0u);

  std::byte* const victim = *rc::gen::elementOf(mapped);
  auto* const header = BlockMeta::from_payload(victim);
  const auto damage = *rc::gen::element(MappedDamage::FlippedByte, MappedDamage::StatusFree,
                                        MappedDamage::StatusAlloc, MappedDamage::StatusGarbage);
  const bool by_realloc = *rc::gen::arbitrary<bool>();
  const std::size_t n =
      by_realloc ? *rc::gen::oneOf(rc::gen::just<std::size_t>(0), small_heap_size(), any_size(),
                                   rc::gen::just(header->size), rc::gen::just(header->size + 8))
                 : 0;
  RC_TAG(name(damage));
  RC_TAG(by_realloc ? "os_realloc" : "os_free");

  unsigned char saved[kHeaderSize];
  std::memcpy(saved, header, kHeaderSize);
  switch (damage) {
    case MappedDamage::FlippedByte: {
      const std::size_t at = *rc::gen::inRange<std::size_t>(0, kHeaderSize);
      const auto mask = static_cast<unsigned char>(*rc::gen::inRange(1, 256));
      reinterpret_cast<unsigned char*>(header)[at] ^= mask;
      RC_LOG() << "header byte " << at << " ^= 0x" << std::hex << unsigned{mask} << std::dec
               << "\n";
      break;
    }
    case MappedDamage::StatusFree:
      header->status = Status::Free;
      ls.engine().sealer().seal(header);
      break;
    case MappedDamage::StatusAlloc:
      header->status = Status::Alloc;
      ls.engine().sealer().seal(header);
      break;
    case MappedDamage::StatusGarbage:
      header->status = static_cast<Status>(7);
      ls.engine().sealer().seal(header);
      break;
  }
  RC_LOG() << name(damage) << " on map#" << ls.source().mapping_serial(victim) << ", then "
           << (by_realloc ? "os_realloc(p, " + std::to_string(n) + ")" : std::string("os_free(p)"))
           << "\n";

  bool reported = false;
  try {
    if (by_realloc) {
      ls.engine().realloc(victim, n);
    } else {
      ls.engine().free(victim);
    }
  } catch (const EngineError& e) {
    reported = true;
    RC_ASSERT(std::string(error_name(e.kind)) ==
              std::string(error_name(ErrorKind::HeaderCorrupted)));
    RC_ASSERT(reinterpret_cast<std::uintptr_t>(e.address) ==
              reinterpret_cast<std::uintptr_t>(victim));
  }
  RC_ASSERT(reported);
  RC_ASSERT(ls.source().call_count() == 0u);  // nothing unmapped, mapped or moved
  RC_ASSERT(ls.source().mapping_serial(victim) != 0u);

  // The damage repaired, nothing else may differ from the model.
  std::memcpy(header, saved, kHeaderSize);
  guarded([&] {
    ls.verify_all();
    for (std::size_t j = 0; j < ls.live().size(); ++j) {
      if (ls.live()[j].ptr == victim) {
        ls.free(j);
        break;
      }
    }
    ls.verify_all();
  });
}

}  // namespace
}  // namespace osmem::props
