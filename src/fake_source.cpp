#include "fake_source.hpp"

#include <cstring>

#include "sanitizer.hpp"
#if defined(OSMEM_UNDER_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace osmem {

namespace {
std::size_t round_to_page(std::size_t n) {
  return (n + FakeSource::kPageSize - 1) & ~(FakeSource::kPageSize - 1);
}
}  // namespace

FakeSource::FakeSource(FakeLimits limits) : limits_(limits) {
  if (limits_.max_mappings > kMappingSlots) limits_.max_mappings = kMappingSlots;
  base_ = static_cast<std::byte*>(os_.map(round_to_page(limits_.heap_capacity)));
  if (base_ == nullptr) limits_.heap_capacity = 0;  // every extend then fails
  // Enough that the span limit never binds before the buffer is full,
  // whatever growth (at most 128 KiB + 8 at once) is asked for past it.
  if (limits_.index_records == 0)
    limits_.index_records = kDefaultIndexRecords(limits_.heap_capacity);
  const std::size_t area = round_to_page(limits_.index_records * RecordPool::kRecordBytes);
  if (void* p = area != 0 ? os_reserve(area) : nullptr) {
    metadata_ = MetadataArea{p, limits_.index_records * RecordPool::kRecordBytes};
    tool::unused_metadata(p, area);
  } else {
    limits_.index_records = 0;  // no records: the heap cannot grow (rule 14)
  }
}

FakeSource::~FakeSource() {
  release_mappings();
  recycle_ = false;
  for (std::size_t i = 0; i < spare_count_; ++i) release(spares_[i].addr, spares_[i].len, 0);
  spare_count_ = 0;
  // The engine marked what it took no access; the next mapping at this
  // address must not inherit that.
  if (base_ != nullptr) tool::defined(base_, break_);
  if (base_ != nullptr) os_.unmap(base_, round_to_page(limits_.heap_capacity));
  if (metadata_.base != nullptr) {
    tool::used_metadata(metadata_.base, round_to_page(metadata_.bytes));  // no stale marks
    os_.unmap(metadata_.base, round_to_page(metadata_.bytes));
  }
}

void FakeSource::release_mappings() {
  for (std::size_t i = 0; i < slots_used_; ++i) {
    if (mappings_[i].addr != nullptr) {
      // Blocks the engine still held: clear their no-access marks first.
      tool::defined(mappings_[i].base, mappings_[i].reserved);
      release(mappings_[i].base, mappings_[i].reserved, mappings_[i].dirty);
    }
    mappings_[i] = Mapping{};
  }
  slots_used_ = 0;
  live_count_ = 0;
  live_bytes_ = 0;
}

bool FakeSource::recycle_mappings(bool on) {
#if defined(OSMEM_UNDER_ASAN)
  recycle_ = on;
#else
  (void)on;
#endif
  return recycle_;
}

void FakeSource::release(std::byte* addr, std::size_t reserved,
                         [[maybe_unused]] std::size_t dirty) {
#if defined(OSMEM_UNDER_ASAN)
  if (recycle_ && spare_count_ < kSpareSlots) {
    ASAN_POISON_MEMORY_REGION(addr, reserved);
    spares_[spare_count_++] = Spare{addr, reserved, dirty};
    return;
  }
  ASAN_UNPOISON_MEMORY_REGION(addr, reserved);
#endif
  os_.unmap(addr, reserved);
}

// Recycled mappings are made in power-of-two sizes, so that a spare fits
// every later request of its class.
std::size_t FakeSource::spare_size(std::size_t len) {
  std::size_t size = kPageSize;
  while (size < len) size *= 2;
  return size;
}

// The smallest spare that holds len bytes, zeroed like a fresh mapping (its
// tail stays no access); nullptr when there is none. Only the part an
// earlier use may have written is cleared: the rest of a power-of-two
// spare was never handed out, and clearing the whole request was a
// twentieth of the ops target's time.
std::byte* FakeSource::take_spare(std::size_t len, std::size_t* reserved, std::size_t* dirty) {
  if (!recycle_) return nullptr;
  const std::size_t need = round_to_page(len);
  std::size_t best = spare_count_;
  for (std::size_t i = 0; i < spare_count_; ++i) {
    const std::size_t have = spares_[i].len;
    if (have >= need && (best == spare_count_ || have < spares_[best].len)) {
      best = i;
    }
  }
  if (best == spare_count_) return nullptr;
  const Spare s = spares_[best];
  spares_[best] = spares_[--spare_count_];
#if defined(OSMEM_UNDER_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(s.addr, need);
  if (s.len > need) ASAN_POISON_MEMORY_REGION(s.addr + need, s.len - need);
#endif
  std::memset(s.addr, 0, need < s.dirty ? need : s.dirty);
  *reserved = s.len;
  *dirty = need > s.dirty ? need : s.dirty;
  return s.addr;
}

void FakeSource::reset() {
  release_mappings();
  // Leave the buffer as a fresh mapping would be: the engine may rely on
  // nothing, but tests that look at memory should see no stale headers
  // (and memory tools no stale no-access marks).
  if (base_ != nullptr) {
    tool::defined(base_, break_);
    std::memset(base_, 0, break_);
  }
  break_ = 0;
  extend_calls_ = map_calls_ = 0;
  fail_extend_n_ = fail_map_n_ = foreign_n_ = 0;
  next_serial_ = 1;
  clear_calls();
  misuse_ = 0;
}

void FakeSource::record(SourceCall::Kind kind, bool ok, std::size_t arg, std::size_t result) {
  if (log_size_ < kLogCapacity) {
    log_[log_size_++] = SourceCall{kind, ok, arg, result};
  } else {
    ++log_dropped_;
  }
}

bool FakeSource::scheduled(const std::size_t* list, std::size_t n, std::size_t call) {
  for (std::size_t i = 0; i < n; ++i) {
    if (list[i] == call) return true;
  }
  return false;
}

void FakeSource::fail_extend_call(std::size_t nth) {
  if (fail_extend_n_ < kMaxScheduled) fail_extend_[fail_extend_n_++] = nth;
}

void FakeSource::fail_map_call(std::size_t nth) {
  if (fail_map_n_ < kMaxScheduled) fail_map_[fail_map_n_++] = nth;
}

void FakeSource::foreign_extend_before_call(std::size_t nth, std::size_t delta) {
  if (foreign_n_ < kMaxScheduled) foreign_[foreign_n_++] = ScheduledForeign{nth, delta};
}

void* FakeSource::extend(std::intptr_t delta) {
  ++extend_calls_;
  for (std::size_t i = 0; i < foreign_n_; ++i) {
    if (foreign_[i].call == extend_calls_) foreign_extend(foreign_[i].delta);
  }
  const auto arg = static_cast<std::size_t>(delta);
  // A negative delta gives memory back (a trim); it may not pass the base.
  const bool fail = scheduled(fail_extend_, fail_extend_n_, extend_calls_) ||
                    (delta < 0 ? 0 - arg > break_ : arg > limits_.heap_capacity - break_);
  if (fail) {
    record(SourceCall::Kind::Extend, false, arg, 0);
    return nullptr;
  }
  const std::size_t old = break_;
  break_ += arg;  // modulo 2^64: a negative delta lowers it
  record(SourceCall::Kind::Extend, true, arg, old);
  return base_ + old;
}

bool FakeSource::foreign_extend(std::size_t delta) {
  if (delta > limits_.heap_capacity - break_) return false;
  break_ += delta;
  return true;
}

void* FakeSource::map(std::size_t len) {
  ++map_calls_;
  const bool fail = scheduled(fail_map_, fail_map_n_, map_calls_) || len == 0 ||
                    live_count_ >= limits_.max_mappings || len > limits_.map_capacity - live_bytes_;
  std::size_t reserved = len;
  std::size_t dirty = round_to_page(len);
  void* p = fail ? nullptr : take_spare(len, &reserved, &dirty);
  if (!fail && p == nullptr) {
    if (recycle_) reserved = spare_size(len);
    p = os_.map(reserved);
#if defined(OSMEM_UNDER_ASAN)
    // Beyond what was asked for is no access, as it would be past a mapping.
    if (p != nullptr && reserved > round_to_page(len)) {
      ASAN_POISON_MEMORY_REGION(static_cast<std::byte*>(p) + round_to_page(len),
                                reserved - round_to_page(len));
    }
#endif
  }
  if (p == nullptr) {
    record(SourceCall::Kind::Map, false, len, 0);
    return nullptr;
  }
  std::size_t slot = 0;
  while (mappings_[slot].addr != nullptr) ++slot;  // live_count_ < max_mappings: a slot is free
  mappings_[slot] = Mapping{static_cast<std::byte*>(p), len,  next_serial_, reserved,
                            static_cast<std::byte*>(p), dirty};
  if (slot >= slots_used_) slots_used_ = slot + 1;
  ++live_count_;
  live_bytes_ += len;
  record(SourceCall::Kind::Map, true, len, next_serial_);
  ++next_serial_;
  return p;
}

// Like Linux's mremap(MREMAP_MAYMOVE): a shrink stays in place; a growth
// always moves here (the hardest case for the engine), copying the bytes
// without the memory tool looking (headers are no access to it).
void* FakeSource::remap(void* p, std::size_t old_len, std::size_t new_len) {
  ++map_calls_;
  Mapping* m = nullptr;
  for (std::size_t i = 0; i < slots_used_ && m == nullptr; ++i) {
    if (mappings_[i].addr == p && p != nullptr) m = &mappings_[i];
  }
  if (m == nullptr || m->len != old_len || new_len == 0) {
    ++misuse_;
    record(SourceCall::Kind::Remap, false, new_len, 0);
    return nullptr;
  }
  const bool fail = scheduled(fail_map_, fail_map_n_, map_calls_) ||
                    (new_len > old_len && new_len - old_len > limits_.map_capacity - live_bytes_);
  if (fail) {
    record(SourceCall::Kind::Remap, false, new_len, m->serial);
    return nullptr;
  }
  if (new_len <= old_len) {
    live_bytes_ -= old_len - new_len;
    m->len = new_len;
    record(SourceCall::Kind::Remap, true, new_len, m->serial);
    return p;
  }
  std::size_t reserved = new_len;
  std::size_t dirty = round_to_page(new_len);
  std::byte* q = take_spare(new_len, &reserved, &dirty);
  if (q == nullptr) {
    if (recycle_) reserved = spare_size(new_len);
    q = static_cast<std::byte*>(os_.map(reserved));
  }
  if (q == nullptr) {
    record(SourceCall::Kind::Remap, false, new_len, m->serial);
    return nullptr;
  }
  tool::peek(q, p, old_len);
  tool::defined(m->base, m->reserved);  // no stale marks for the next mapping here
  release(m->base, m->reserved, m->dirty);
  live_bytes_ += new_len - old_len;
  *m = Mapping{q, new_len, m->serial, reserved, q, dirty};
  record(SourceCall::Kind::Remap, true, new_len, m->serial);
  return q;
}

bool FakeSource::unmap(void* p, std::size_t len) {
  const auto* b = static_cast<const std::byte*>(p);
  for (std::size_t i = 0; i < slots_used_; ++i) {
    Mapping& m = mappings_[i];
    if (m.addr != nullptr && len != 0 && len % kPageSize == 0 && len < round_to_page(m.len)) {
      const std::size_t span = round_to_page(m.len);
      std::size_t gone = 0;
      if (b == m.addr) {  // a prefix
        m.addr += len;
        m.len -= len;
        gone = len;
      } else if (b > m.addr && static_cast<std::size_t>(b - m.addr) == span - len) {  // a suffix
        gone = m.len - static_cast<std::size_t>(b - m.addr);
        m.len -= gone;
      }
      if (gone != 0) {
        tool::no_access(p, len);
        live_bytes_ -= gone;
        record(SourceCall::Kind::Unmap, true, len, m.serial);
        return true;
      }
    }
    if (m.addr == p && m.addr != nullptr) {
      if (m.len != len) break;
      release(m.base, m.reserved, m.dirty);
      record(SourceCall::Kind::Unmap, true, len, m.serial);
      --live_count_;
      live_bytes_ -= len;
      m = Mapping{};
      return true;
    }
  }
  ++misuse_;
  record(SourceCall::Kind::Unmap, false, len, 0);
  return false;
}

bool FakeSource::in_heap_buffer(const void* p) const {
  const auto* b = static_cast<const std::byte*>(p);
  return base_ != nullptr && b >= base_ && b < base_ + limits_.heap_capacity;
}

std::size_t FakeSource::mapping_serial(const void* p) const {
  const auto* b = static_cast<const std::byte*>(p);
  for (std::size_t i = 0; i < slots_used_; ++i) {
    const Mapping& m = mappings_[i];
    if (m.addr != nullptr && b >= m.addr && b < m.addr + m.len) return m.serial;
  }
  return 0;
}

const std::byte* FakeSource::mapping_base(std::size_t serial) const {
  for (std::size_t i = 0; i < slots_used_; ++i) {
    if (mappings_[i].addr != nullptr && mappings_[i].serial == serial) return mappings_[i].base;
  }
  return nullptr;
}

}  // namespace osmem
