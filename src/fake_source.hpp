// A deterministic, fault-injecting memory source for tests and fuzzers.
//
// sbrk is served from one fixed, page-aligned buffer, so heap addresses are
// the same in every run as offsets from heap_base(); mmap is served by real
// anonymous mappings (so ASan and the MMU still see their bounds), numbered
// by serial. Every call is recorded, any call can be made to fail, and
// another component's sbrk can be simulated with foreign_extend(). The rules
// are in docs/contract.md; the reference model mirrors them.
//
// Like the engine, it allocates nothing from the C++ runtime: the call log
// and the mapping table are fixed arrays.
#pragma once

#include <cstddef>
#include <cstdint>

#include "os_source.hpp"

namespace osmem {

struct SourceCall {
  enum class Kind : std::uint8_t { Extend, Map, Unmap, Remap };
  Kind kind;
  bool ok;
  std::size_t arg;     // Extend: delta; Map/Unmap: length; Remap: new length
  std::size_t result;  // Extend: offset of the old break; Map/Unmap/Remap: serial
};

// Records that cover a heap buffer of `capacity` bytes and any one growth
// past its end (rule 14: 40 bytes of segment per record).
constexpr std::size_t kDefaultIndexRecords(std::size_t capacity) {
  return (capacity + (std::size_t{2} << 17) + 39) / 40;
}

struct FakeLimits {
  std::size_t heap_capacity = std::size_t{16} << 20;
  std::size_t map_capacity = std::size_t{256} << 20;  // live mapped bytes
  std::size_t max_mappings = 512;                     // live mappings
  // Records in the metadata area (24 bytes each); 0:
  // kDefaultIndexRecords(heap_capacity),
  // so that the span limit of rule 14 (40 bytes per record) never binds
  // before the heap capacity does.
  std::size_t index_records = 0;
};

class FakeSource {
 public:
  static constexpr std::size_t kPageSize = 4096;
  static constexpr std::size_t kLogCapacity = 256;
  static constexpr std::size_t kMaxScheduled = 16;
  static constexpr std::size_t kMappingSlots = 1024;

  explicit FakeSource(FakeLimits limits = {});
  ~FakeSource();
  FakeSource(const FakeSource&) = delete;
  FakeSource& operator=(const FakeSource&) = delete;

  // The MemorySource interface.
  std::size_t page_size() const { return kPageSize; }
  void* extend(std::intptr_t delta);
  void* map(std::size_t len);
  bool unmap(void* p, std::size_t len);
  // mremap(p, old_len, new_len, MREMAP_MAYMOVE) of a live mapping: counted
  // as a map call for fail_map_call(); the mapping keeps its serial.
  void* remap(void* p, std::size_t old_len, std::size_t new_len);
  // Reserved by the constructor (NORESERVE, so only touched records cost
  // memory); reset() leaves it alone: a fresh engine initialises every
  // record it hands out.
  MetadataArea metadata_area() const { return metadata_; }

  // Back to a fresh state: break at offset 0, no mappings, empty log, no
  // scheduled failures. Limits are kept.
  void reset();

  // Make the nth call (counted from 1 since the last reset, failures
  // included) of that kind fail.
  void fail_extend_call(std::size_t nth);
  void fail_map_call(std::size_t nth);
  // Make the next call of that kind fail.
  void fail_next_extend() { fail_extend_call(extend_calls_ + 1); }
  void fail_next_map() { fail_map_call(map_calls_ + 1); }
  // Another component moves the break up by delta (any value, even unaligned).
  // Returns false (and changes nothing) when the buffer is too small.
  bool foreign_extend(std::size_t delta);
  // foreign_extend(delta) just before the nth extend call (counted like
  // fail_extend_call), so it can fall between two calls of one operation.
  void foreign_extend_before_call(std::size_t nth, std::size_t delta);
  // Extend calls made since the last reset, failed ones included.
  std::size_t extend_calls() const { return extend_calls_; }

  std::byte* heap_base() const { return base_; }
  std::size_t break_offset() const { return break_; }
  bool in_heap_buffer(const void* p) const;
  // The serial of the live mapping containing p, or 0.
  std::size_t mapping_serial(const void* p) const;
  // Where the live mapping with this serial was placed (before any prefix
  // unmap), or nullptr: an input to predictions of alignments beyond a page.
  const std::byte* mapping_base(std::size_t serial) const;
  std::size_t live_mappings() const { return live_count_; }
  std::size_t live_mapped_bytes() const { return live_bytes_; }

  // The calls recorded since the last take_calls()/reset(). The log keeps
  // the first kLogCapacity calls; overflowed() says when some were dropped.
  std::size_t call_count() const { return log_size_; }
  const SourceCall& call(std::size_t i) const { return log_[i]; }
  bool overflowed() const { return log_dropped_ > 0; }
  void clear_calls() {
    log_size_ = 0;
    log_dropped_ = 0;
  }

  // unmap() also takes a page-aligned prefix or suffix of a live mapping,
  // as munmap does; the pages stay reserved (no access to memory tools)
  // until the rest is unmapped.
  // Misuse by the engine: unmapping something that is not a live mapping
  // (or a prefix or suffix of one), or with the wrong length. Tests assert this stays zero.
  std::size_t misuse_count() const { return misuse_; }

  const FakeLimits& limits() const { return limits_; }

  // Keep unmapped (and, at reset, still mapped) mappings as spares and hand
  // them out again, zeroed, for later maps of up to their length: a fresh
  // mmap faults on every page it touches, which cost the fuzzers a fifth of
  // their time. Only under ASan, which is told that a spare (and the unused
  // tail of a reused one) is no access, so a use after unmap is still
  // reported; elsewhere this does nothing. Returns whether it is on.
  bool recycle_mappings(bool on);

 private:
  struct Mapping {
    std::byte* addr;
    std::size_t len;
    std::size_t serial;
    std::size_t reserved;  // bytes actually mapped (a reused spare may be longer)
    std::byte* base;       // where those start (addr, unless a prefix was unmapped)
    // Bytes from base that may hold something other than zero: what was
    // handed out (a mapping never grows in place), or more, left from an
    // earlier use of a spare (no access since).
    std::size_t dirty;
  };
  struct Spare {
    std::byte* addr;
    std::size_t len;    // page multiple
    std::size_t dirty;  // as Mapping::dirty: the rest is zero still
  };
  static constexpr std::size_t kSpareSlots = 256;

  void record(SourceCall::Kind kind, bool ok, std::size_t arg, std::size_t result);
  static bool scheduled(const std::size_t* list, std::size_t n, std::size_t call);
  void release_mappings();
  void release(std::byte* addr, std::size_t reserved, std::size_t dirty);
  std::byte* take_spare(std::size_t len, std::size_t* reserved, std::size_t* dirty);
  static std::size_t spare_size(std::size_t len);

  OsSource os_;
  FakeLimits limits_;
  std::byte* base_ = nullptr;
  std::size_t break_ = 0;
  MetadataArea metadata_;

  std::size_t extend_calls_ = 0;
  std::size_t map_calls_ = 0;
  std::size_t fail_extend_[kMaxScheduled] = {};
  std::size_t fail_extend_n_ = 0;
  std::size_t fail_map_[kMaxScheduled] = {};
  std::size_t fail_map_n_ = 0;
  struct ScheduledForeign {
    std::size_t call;
    std::size_t delta;
  };
  ScheduledForeign foreign_[kMaxScheduled] = {};
  std::size_t foreign_n_ = 0;

  Mapping mappings_[kMappingSlots] = {};
  std::size_t slots_used_ = 0;  // high-water mark of mappings_
  std::size_t live_count_ = 0;
  std::size_t live_bytes_ = 0;
  std::size_t next_serial_ = 1;

  bool recycle_ = false;
  Spare spares_[kSpareSlots] = {};
  std::size_t spare_count_ = 0;

  SourceCall log_[kLogCapacity] = {};
  std::size_t log_size_ = 0;
  std::size_t log_dropped_ = 0;
  std::size_t misuse_ = 0;
};

}  // namespace osmem
