#include "invariant.hpp"

namespace osmem {

const char* invariant_name(Invariant inv) {
  switch (inv) {
    case Invariant::BlockOutOfHeap:
      return "block outside the heap";
    case Invariant::CanaryMismatch:
      return "header canary mismatch";
    case Invariant::LinkMismatch:
      return "list links inconsistent";
    case Invariant::AddressOrder:
      return "blocks out of address order or overlapping";
    case Invariant::BadSize:
      return "block size invalid";
    case Invariant::BadStatus:
      return "block status invalid";
    case Invariant::AdjacentFree:
      return "two adjacent free blocks";
    case Invariant::HeapAccounting:
      return "heap accounting mismatch";
    case Invariant::IndexMismatch:
      return "free index mismatch";
    case Invariant::MappedOrder:
      return "mapping tree order broken";
    case Invariant::MappedAccounting:
      return "mapping accounting mismatch";
    case Invariant::SlackOverwritten:
      return "write past the requested size";
  }
  return "unknown invariant";
}

}  // namespace osmem
