// Debug records of ALLOC blocks, outside the heap: for each block handed
// out, the size the user asked for, the operation that handed it out and
// the caller's return address. The slack check (bytes between the
// requested size and the block's end) and the leak report at exit read
// them (debug_checks.hpp, leaks.hpp).
//
// Storage. An open-addressing hash table keyed by the user pointer, with
// linear probing and backward-shift deletion (no tombstones), in an area of
// address space the API reserved when the library loaded (MAP_NORESERVE:
// only the pages touched cost memory). The table starts small and doubles
// when half full by building the next table right after the current one in
// the area, so a lookup stays O(1) expected, the memory touched is at most
// about twice the final table, and no system call is made inside an
// operation. When the area cannot hold the next table, the table fills up
// to 7/8 and further blocks go unrecorded (counted in unrecorded()): their
// slack is not checked and they are not in the leak report, which says so.
#pragma once

#include <cstddef>
#include <cstdint>

namespace osmem {

class AllocRecord {
 public:
  AllocRecord() = default;
  static AllocRecord make(std::uintptr_t user, std::size_t requested, std::uint64_t operation,
                          std::uintptr_t caller) {
    AllocRecord r;
    r.hidden_user = ~user;
    r.requested = requested;
    r.operation = operation;
    r.caller = caller;
    return r;
  }
  std::uintptr_t user() const { return ~hidden_user; }

  std::size_t requested = 0;    // bytes the user asked for
  std::uint64_t operation = 0;  // the operation number that handed it out
  std::uintptr_t caller = 0;    // return address of the API call

 private:
  template <class>
  friend class RecordTable;
  // The block's user pointer, stored complemented (0: an empty slot): a
  // leak checker scanning memory (Valgrind's memcheck) must not take the
  // record for a pointer that keeps the block reachable.
  std::uintptr_t hidden_user = 0;
};

// A table of records keyed by user pointer. Record: a struct with a private
// `hidden_user` (the complemented pointer, 0 for an empty slot), user(),
// and a RecordTable friend.
template <class Record>
class RecordTable {
 public:
  static constexpr std::size_t kFirstCapacity = 1024;  // slots; a power of two

  // Gives the table its area (any content; each table is cleared when it is
  // placed). An empty area records nothing.
  void attach(void* base, std::size_t bytes) {
    base_ = static_cast<Record*>(base);
    area_slots_ = bytes / sizeof(Record);
    place(0, kFirstCapacity);
  }
  bool active() const { return table_ != nullptr; }

  // Records r (replacing a record of the same user pointer). False when the
  // table is full.
  bool put(const Record& r) {
    if (table_ == nullptr || r.hidden_user == 0) return false;
    if (Record* slot = lookup(r.user())) {
      *slot = r;
      return true;
    }
    if (2 * (count_ + 1) > capacity_) grow();
    if (8 * (count_ + 1) > 7 * capacity_) {
      ++unrecorded_;
      return false;
    }
    std::size_t i = home(r.user());
    while (table_[i].hidden_user != 0) i = (i + 1) & (capacity_ - 1);
    table_[i] = r;
    ++count_;
    return true;
  }

  const Record* find(std::uintptr_t user) const {
    return const_cast<RecordTable*>(this)->lookup(user);
  }

  void erase(std::uintptr_t user) {
    Record* slot = lookup(user);
    if (slot == nullptr) return;
    // Backward shift: move later entries of the probe run into the hole, so
    // every entry stays reachable from its home slot without tombstones.
    std::size_t hole = static_cast<std::size_t>(slot - table_);
    std::size_t i = hole;
    for (;;) {
      i = (i + 1) & (capacity_ - 1);
      if (table_[i].hidden_user == 0) break;
      const std::size_t h = home(table_[i].user());
      // Entry i may fill the hole when its home is not in (hole, i].
      const bool stays = hole <= i ? (hole < h && h <= i) : (hole < h || h <= i);
      if (!stays) {
        table_[hole] = table_[i];
        hole = i;
      }
    }
    table_[hole] = Record{};
    --count_;
  }

  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; table_ != nullptr && i < capacity_; ++i) {
      if (table_[i].hidden_user != 0) f(table_[i]);
    }
  }

  // Slot i of the current table (i < capacity()), or null when empty: for
  // a walk that visits a few records per operation.
  const Record* slot(std::size_t i) const {
    return table_ != nullptr && i < capacity_ && table_[i].hidden_user != 0 ? &table_[i] : nullptr;
  }

  std::size_t size() const { return count_; }
  std::size_t capacity() const { return capacity_; }
  std::size_t unrecorded() const { return unrecorded_; }

 private:
  std::size_t home(std::uintptr_t user) const {
    std::uint64_t x = user;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return static_cast<std::size_t>(x) & (capacity_ - 1);
  }

  Record* lookup(std::uintptr_t user) {
    if (table_ == nullptr || user == 0) return nullptr;
    const std::uintptr_t hidden = ~user;
    for (std::size_t i = home(user), n = 0; n < capacity_; i = (i + 1) & (capacity_ - 1), ++n) {
      if (table_[i].hidden_user == hidden) return &table_[i];
      if (table_[i].hidden_user == 0) return nullptr;
    }
    return nullptr;
  }

  // Makes the table the `capacity` slots at `offset` of the area, cleared.
  bool place(std::size_t offset, std::size_t capacity) {
    if (base_ == nullptr || offset + capacity > area_slots_) return false;
    table_ = base_ + offset;
    offset_ = offset;
    capacity_ = capacity;
    for (std::size_t i = 0; i < capacity; ++i) table_[i] = Record{};
    count_ = 0;
    return true;
  }

  // The next table, twice as large, right after this one (or, when the
  // area ends, back at its start if the old table lies past the new one).
  void grow() {
    Record* old = table_;
    const std::size_t old_capacity = capacity_;
    const std::size_t old_offset = offset_;
    std::size_t next = old_offset + old_capacity;
    if (next + 2 * old_capacity > area_slots_) {
      if (2 * old_capacity > old_offset) return;  // no room: stay, fill to 7/8
      next = 0;
    }
    place(next, 2 * old_capacity);
    for (std::size_t i = 0; i < old_capacity; ++i) {
      if (old[i].hidden_user == 0) continue;
      std::size_t j = home(old[i].user());
      while (table_[j].hidden_user != 0) j = (j + 1) & (capacity_ - 1);
      table_[j] = old[i];
      ++count_;
    }
  }

  Record* base_ = nullptr;
  std::size_t area_slots_ = 0;
  Record* table_ = nullptr;
  std::size_t offset_ = 0;
  std::size_t capacity_ = 0;
  std::size_t count_ = 0;
  std::size_t unrecorded_ = 0;
};

using BlockRecords = RecordTable<AllocRecord>;

}  // namespace osmem
