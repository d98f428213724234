// The checker, given a heap with exactly one deliberate corruption, reports
// exactly that corruption: the right invariant at the right block, and
// nothing else.
//
// A corruption that changes a field without resealing the header must show
// up as a canary mismatch; one that reseals (what a bug inside the engine
// would do: write a wrong value and seal it) must be caught by the
// structural invariant it breaks. Both kinds are in the list, so a checker
// that leans on the canary alone, or ignores it, fails here.
#include <gtest/gtest.h>
#include <rapidcheck.h>
// Needs gtest/gtest.h first: Debian's copy does not include it itself.
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "generators.hpp"
#include "harness.hpp"

namespace osmem::props {
namespace {

enum class Corruption {
  FlipCanary,         // heap header, not resealed
  FlipMappedCanary,   // mapped header, not resealed
  GarbageStatus,      // ALLOC heap block gets status 7, resealed
  AllocBecomesFree,   // ALLOC block with no FREE neighbour marked FREE, resealed
  FreeBecomesAlloc,   // FREE block marked ALLOC, resealed
  MergeableFree,      // ALLOC block next to a FREE one marked FREE, resealed
  SizeOverlapsNext,   // size += 8, resealed
  SizeMisaligned,     // size += 1..7, resealed
  PrevLinkWrong,      // prev points at the block itself, resealed
  NextLinkBackwards,  // next points at the block itself, resealed
  NextLinkOutOfHeap,  // next points past the heap, resealed
  MappedStatusWrong,  // mapped block marked ALLOC, resealed
  MappedSizeWrong,    // mapped size += 8, resealed
};

const char* name(Corruption c) {
  switch (c) {
    case Corruption::FlipCanary:
      return "FlipCanary";
    case Corruption::FlipMappedCanary:
      return "FlipMappedCanary";
    case Corruption::GarbageStatus:
      return "GarbageStatus";
    case Corruption::AllocBecomesFree:
      return "AllocBecomesFree";
    case Corruption::FreeBecomesAlloc:
      return "FreeBecomesAlloc";
    case Corruption::MergeableFree:
      return "MergeableFree";
    case Corruption::SizeOverlapsNext:
      return "SizeOverlapsNext";
    case Corruption::SizeMisaligned:
      return "SizeMisaligned";
    case Corruption::PrevLinkWrong:
      return "PrevLinkWrong";
    case Corruption::NextLinkBackwards:
      return "NextLinkBackwards";
    case Corruption::NextLinkOutOfHeap:
      return "NextLinkOutOfHeap";
    case Corruption::MappedStatusWrong:
      return "MappedStatusWrong";
    case Corruption::MappedSizeWrong:
      return "MappedSizeWrong";
  }
  return "?";
}

struct Report {
  Invariant invariant;
  const void* block;
};

std::vector<std::string> render(model::Lockstep& ls, const std::vector<Report>& rs) {
  std::vector<std::string> out;
  for (const Report& r : rs) {
    std::ostringstream s;
    s << invariant_name(r.invariant);
    if (r.block == nullptr) {
      s << " (whole heap)";
    } else if (ls.source().in_heap_buffer(r.block)) {
      s << " at heap+0x" << std::hex
        << (static_cast<const std::byte*>(r.block) - ls.source().heap_base());
    } else {
      s << " at map#" << ls.source().mapping_serial(r.block);
    }
    out.push_back(s.str());
  }
  return out;
}

bool touching_free(const BlockMeta* a, const BlockMeta* b) {
  return a != nullptr && b != nullptr && touches(a, b) && a->status == Status::Free &&
         b->status == Status::Free;
}

RC_GTEST_PROP(Checker, ReportsExactlyTheOneCorruption, ()) {
  // A heap with holes, and a few mappings.
  const auto sizes =
      *rc::gen::nonEmpty(rc::gen::container<std::vector<std::size_t>>(small_heap_size()));
  const auto keep =
      *rc::gen::container<std::vector<bool>>(sizes.size(), rc::gen::arbitrary<bool>());
  const std::size_t maps = *rc::gen::inRange<std::size_t>(0, 4);
  const tool::Untracked untracked;  // the property forges headers: no poisoning
  Harness h;
  model::Lockstep& ls = h.ls;
  std::vector<BlockMeta*> mapped;
  guarded([&] {
    std::vector<std::byte*> got;
    for (std::size_t n : sizes)
      got.push_back(ls.live()[static_cast<std::size_t>(ls.malloc(n))].ptr);
    for (std::size_t i = 0; i < maps; ++i) {
      mapped.push_back(BlockMeta::from_payload(
          ls.live()[static_cast<std::size_t>(ls.malloc(kMmapThreshold + i * 8))].ptr));
    }
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

  std::vector<BlockMeta*> all, allocs, frees, lonely_allocs, mergeable_allocs;
  for (BlockMeta* b = ls.engine().blocks().head(); b != nullptr; b = b->next) {
    all.push_back(b);
    if (b->status == Status::Free) {
      frees.push_back(b);
      continue;
    }
    allocs.push_back(b);
    const bool free_before =
        b->prev != nullptr && touches(b->prev, b) && b->prev->status == Status::Free;
    const bool free_after = touches(b, b->next) && b->next->status == Status::Free;
    (free_before || free_after ? mergeable_allocs : lonely_allocs).push_back(b);
  }

  std::vector<Corruption> possible = {Corruption::FlipCanary,        Corruption::SizeOverlapsNext,
                                      Corruption::SizeMisaligned,    Corruption::PrevLinkWrong,
                                      Corruption::NextLinkBackwards, Corruption::NextLinkOutOfHeap};
  if (!allocs.empty()) possible.push_back(Corruption::GarbageStatus);
  if (!lonely_allocs.empty()) possible.push_back(Corruption::AllocBecomesFree);
  if (!mergeable_allocs.empty()) possible.push_back(Corruption::MergeableFree);
  if (!frees.empty()) possible.push_back(Corruption::FreeBecomesAlloc);
  if (!mapped.empty()) {
    possible.push_back(Corruption::FlipMappedCanary);
    possible.push_back(Corruption::MappedStatusWrong);
    possible.push_back(Corruption::MappedSizeWrong);
  }
  const Corruption c = *rc::gen::elementOf(possible);
  RC_TAG(name(c));
  RC_LOG() << "corruption: " << name(c) << "\n";

  auto pick = [](const std::vector<BlockMeta*>& from) { return *rc::gen::elementOf(from); };
  const Sealer& sealer = ls.engine().sealer();
  std::vector<Report> want;
  switch (c) {
    case Corruption::FlipCanary: {
      BlockMeta* b = pick(all);
      b->canary ^= 1u << *rc::gen::inRange(0, 32);
      want = {{Invariant::CanaryMismatch, b}};
      break;
    }
    case Corruption::FlipMappedCanary: {
      BlockMeta* b = pick(mapped);
      b->canary ^= 1u << *rc::gen::inRange(0, 32);
      want = {{Invariant::CanaryMismatch, b}};
      break;
    }
    case Corruption::GarbageStatus: {
      BlockMeta* b = pick(allocs);
      b->status = static_cast<Status>(7);
      sealer.seal(b);
      want = {{Invariant::BadStatus, b}};
      break;
    }
    case Corruption::AllocBecomesFree: {
      BlockMeta* b = pick(lonely_allocs);
      b->status = Status::Free;
      sealer.seal(b);
      // A FREE block the index does not hold, and counts that disagree.
      want = {{Invariant::IndexMismatch, b}, {Invariant::IndexMismatch, nullptr}};
      break;
    }
    case Corruption::FreeBecomesAlloc: {
      BlockMeta* b = pick(frees);
      b->status = Status::Alloc;
      sealer.seal(b);
      want = {{Invariant::IndexMismatch, nullptr}};
      break;
    }
    case Corruption::MergeableFree: {
      BlockMeta* b = pick(mergeable_allocs);
      b->status = Status::Free;
      sealer.seal(b);
      // Each touching FREE pair is reported at its lower block.
      if (touching_free(b->prev, b)) want.push_back({Invariant::AdjacentFree, b->prev});
      // b is not in the index either; that is said at b unless b already
      // has a report of its own (one report per block).
      if (touching_free(b, b->next)) {
        want.push_back({Invariant::AdjacentFree, b});
      } else {
        want.push_back({Invariant::IndexMismatch, b});
      }
      want.push_back({Invariant::IndexMismatch, nullptr});
      break;
    }
    case Corruption::SizeOverlapsNext: {
      BlockMeta* b = pick(all);
      b->size += 8;
      sealer.seal(b);
      // Into the next block, or (the last one) past the end of the heap.
      want = {{b->next != nullptr ? Invariant::AddressOrder : Invariant::BadSize, b}};
      break;
    }
    case Corruption::SizeMisaligned: {
      BlockMeta* b = pick(all);
      b->size += *rc::gen::inRange<std::size_t>(1, 8);
      sealer.seal(b);
      want = {{Invariant::BadSize, b}};
      break;
    }
    case Corruption::PrevLinkWrong: {
      BlockMeta* b = pick(all);
      b->prev = b;
      sealer.seal(b);
      want = {{Invariant::LinkMismatch, b}};
      break;
    }
    case Corruption::NextLinkBackwards: {
      BlockMeta* b = pick(all);
      b->next = b;
      sealer.seal(b);
      want = {{Invariant::AddressOrder, b}};
      break;
    }
    case Corruption::NextLinkOutOfHeap: {
      BlockMeta* b = pick(all);
      // Still inside the fake source's buffer, so even a checker that
      // followed it would not fault: the report is what is tested.
      auto* beyond =
          reinterpret_cast<BlockMeta*>(ls.source().heap_base() + ls.source().break_offset() + 4096);
      b->next = beyond;
      sealer.seal(b);
      want = {{Invariant::BlockOutOfHeap, beyond}};
      break;
    }
    case Corruption::MappedStatusWrong: {
      BlockMeta* b = pick(mapped);
      b->status = Status::Alloc;
      sealer.seal(b);
      want = {{Invariant::BadStatus, b}};
      break;
    }
    case Corruption::MappedSizeWrong: {
      BlockMeta* b = pick(mapped);
      b->size += 8;
      sealer.seal(b);
      want = {{Invariant::MappedAccounting, nullptr}};
      break;
    }
  }

  Violation found[32];
  const std::size_t n = ls.engine().check(found, 32);
  std::vector<Report> got;
  for (std::size_t i = 0; i < n && i < 32; ++i) got.push_back({found[i].invariant, found[i].block});
  // The same reports, in any order.
  std::vector<std::string> got_text = render(ls, got), want_text = render(ls, want);
  std::sort(got_text.begin(), got_text.end());
  std::sort(want_text.begin(), want_text.end());
  RC_ASSERT(got_text == want_text);
}

}  // namespace
}  // namespace osmem::props
