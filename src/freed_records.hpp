// Debug records of freed heap blocks whose memory osmem has not handed out
// again: for each, the payload's sums when it was freed (freed_payload.hpp)
// and who allocated and freed it, so that a write after free is reported
// naming the block, when it was freed, and the first changed byte.
//
// Life of a record. Made when an operation frees a heap block (free, a
// realloc that moves or frees it) and a check level is on; keyed by the
// block's user pointer and covering its whole payload. A freed payload only
// ever lies inside one FREE block (a merge keeps the bytes where they are),
// so a record stays valid until the engine claims some of its bytes again
// (Heap::set_claim_hook): then it is verified and dropped, and a part the
// claim did not reach is recorded anew under its own start. Mapped blocks
// are unmapped when freed (a write after free faults) and get no record.
#pragma once

#include <cstddef>
#include <cstdint>

#include "block_records.hpp"
#include "freed_payload.hpp"

namespace osmem {

class FreedRecord {
 public:
  FreedRecord() = default;
  static FreedRecord make(std::uintptr_t user, std::size_t bytes, const PayloadSums& sums) {
    FreedRecord r;
    r.hidden_user = ~user;
    r.bytes = bytes;
    r.sums = sums;
    return r;
  }
  std::uintptr_t user() const { return ~hidden_user; }

  PayloadSums sums;                 // of [user, user + bytes) when recorded
  std::size_t bytes = 0;            // payload bytes covered (a multiple of 8)
  std::size_t requested = 0;        // bytes the block's user had asked for (0: not known)
  std::uint64_t allocated = 0;      // operation that handed the block out (0: not known)
  std::uintptr_t allocated_by = 0;  // its caller
  std::uint64_t freed = 0;          // operation that freed it
  std::uintptr_t freed_by = 0;      // its caller
  std::size_t offset = 0;           // of `user` from the freed block's user pointer
                                    // (non-zero for the part a claim left)

 private:
  template <class>
  friend class RecordTable;
  std::uintptr_t hidden_user = 0;  // complemented, as in AllocRecord
};

using FreedRecords = RecordTable<FreedRecord>;

}  // namespace osmem
