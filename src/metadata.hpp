// Per-block records outside the heap: a pool of fixed-size records in a
// metadata area the memory source reserved before the first os_* call.
//
// Why outside. The contract (docs/contract.md, rule 15) says osmem never
// writes to the payload of a FREE heap block: a freed block keeps its bytes
// until it is handed out again. A FREE header is fully used (size, status,
// canary, prev, next), so whatever else the engine must know about a block
// lives here, in memory that is osmem's own and never the user's.
//
// The area. A range of address space the source provides (OsSource reserves
// it with mmap(PROT_READ|PROT_WRITE, MAP_NORESERVE) when the library is
// loaded; FakeSource maps one per instance). The pool never makes a system
// call: it hands out records below a high-water mark, recycles released
// records through a free list, and grows by touching the next record, so
// the memory it costs is the high-water mark times kRecordBytes.
//
// Records are named by 32-bit indices (0 = none), so a record costs 24 bytes
// where two pointers would cost 32, and an index stored in a record is only
// ever followed after a bounds check against the high-water mark.
//
// One record type. Today every record describes one FREE heap block (its
// node in the best-fit index, free_tree.hpp); a block finds its record by
// its key (size, address), searched in the index. Debug data for every
// block (requested size, operation number, caller, freed-payload checksum)
// would be more fields here and a second lookup by address alone (an
// address-keyed treap over the same pool, or a table indexed by the block's
// position), not a second allocator.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sanitizer.hpp"

namespace osmem {

// The memory a source sets aside for records: [base, base + bytes), read
// and write, zero or garbage (the pool initialises each record it hands
// out). An empty area (base null, bytes 0) holds no records.
struct MetadataArea {
  void* base = nullptr;
  std::size_t bytes = 0;
};

struct BlockRecord {
  std::uintptr_t block;  // header address of the block (0 while on the free list)
  std::size_t size;      // the block's size when it was indexed: its key with `block`
  std::uint32_t left;    // index tree children (0 = none); on the free list, `left`
  std::uint32_t right;   // links the next recycled record
};
static_assert(sizeof(BlockRecord) == 24);

class RecordPool {
 public:
  static constexpr std::size_t kRecordBytes = sizeof(BlockRecord);
  static constexpr std::size_t kMaxRecords = UINT32_MAX;  // index 0 means none

  void attach(MetadataArea area) {
    records_ = static_cast<BlockRecord*>(area.base);
    std::size_t n = area.base != nullptr ? area.bytes / kRecordBytes : 0;
    // Index i lives at records_[i - 1]: index 0 is the null index.
    capacity_ = n < kMaxRecords ? n : kMaxRecords;
  }

  std::size_t capacity() const { return capacity_; }
  std::size_t in_use() const { return in_use_; }
  std::size_t high_water() const { return high_water_; }
  std::uint32_t free_head() const { return free_; }

  // A record index, or 0 when the pool is full.
  std::uint32_t acquire() {
    std::uint32_t id = free_;
    if (id != 0) {
      free_ = at(id).left;
    } else if (high_water_ < capacity_) {
      id = static_cast<std::uint32_t>(++high_water_);
      tool::used_metadata(&at(id), kRecordBytes);
    } else {
      return 0;
    }
    ++in_use_;
    return id;
  }

  void release(std::uint32_t id) {
    BlockRecord& r = at(id);
    r = BlockRecord{0, 0, free_, 0};
    free_ = id;
    --in_use_;
  }

  // True when id names a record the pool has handed out at some time.
  bool valid(std::uint32_t id) const { return id != 0 && id <= high_water_; }
  BlockRecord& at(std::uint32_t id) const { return records_[id - 1]; }

 private:
  BlockRecord* records_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t high_water_ = 0;
  std::size_t in_use_ = 0;
  std::uint32_t free_ = 0;  // head of the recycled records
};

}  // namespace osmem
