// The 32-byte block header shared by heap and mapped blocks.
//
// The layout is part of the contract (docs/contract.md): tools and tests read
// it at fixed offsets, so it is pinned down with static_asserts. The four
// bytes of padding the seed left after `status` hold a canary: a keyed hash
// of the header's address and every other field, so a stray write into a
// header, or a pointer that is not the start of a block, is noticed before
// the engine follows any link stored there.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sanitizer.hpp"

namespace osmem {

inline constexpr std::size_t kHeaderSize = 32;
inline constexpr std::size_t kAlignment = 8;
// A split leaves a remainder only if it can hold a header and 8 bytes.
inline constexpr std::size_t kMinSplitRemainder = kHeaderSize + kAlignment;
// The largest request whose ALIGN8(n) + header still fits in a size_t.
inline constexpr std::size_t kMaxRequest = SIZE_MAX - kHeaderSize - (kAlignment - 1);

constexpr std::size_t align8(std::size_t n) {
  return (n + kAlignment - 1) & ~(kAlignment - 1);
}
constexpr bool is_aligned8(std::uintptr_t a) {
  return (a & (kAlignment - 1)) == 0;
}

enum class Status : std::int32_t { Free = 0, Alloc = 1, Mapped = 2 };

struct BlockMeta {
  std::size_t size;  // payload capacity
  Status status;
  std::uint32_t canary;
  BlockMeta* prev;  // heap: address-order neighbour; mapped: treap left child
  BlockMeta* next;  // heap: address-order neighbour; mapped: treap right child

  std::byte* payload() { return reinterpret_cast<std::byte*>(this) + kHeaderSize; }
  const std::byte* payload() const {
    return reinterpret_cast<const std::byte*>(this) + kHeaderSize;
  }
  std::byte* end() { return payload() + size; }
  const std::byte* end() const { return payload() + size; }
  std::uintptr_t address() const { return reinterpret_cast<std::uintptr_t>(this); }

  static BlockMeta* from_payload(void* p) {
    return reinterpret_cast<BlockMeta*>(static_cast<std::byte*>(p) - kHeaderSize);
  }
  static BlockMeta* at(std::byte* p) { return reinterpret_cast<BlockMeta*>(p); }
};

static_assert(sizeof(BlockMeta) == kHeaderSize);
static_assert(alignof(BlockMeta) == kAlignment);
static_assert(offsetof(BlockMeta, size) == 0);
static_assert(offsetof(BlockMeta, status) == 8);
static_assert(offsetof(BlockMeta, canary) == 12);
static_assert(offsetof(BlockMeta, prev) == 16);
static_assert(offsetof(BlockMeta, next) == 24);
static_assert(sizeof(Status) == 4);

// A status as dumps and reports print it; "garbage" for a value that is
// none of the three (a damaged header).
inline const char* status_name(Status s) {
  switch (s) {
    case Status::Free:
      return "free";
    case Status::Alloc:
      return "alloc";
    case Status::Mapped:
      return "mapped";
  }
  return "garbage";
}

// The address of a pointer that may not point at a valid header (the
// checker's input): unlike b->address(), no member access, so no undefined
// behaviour when b is misaligned.
inline std::uintptr_t addr_of(const void* b) {
  return reinterpret_cast<std::uintptr_t>(b);
}

// A header is no access to memory tools between two heap operations (see
// sanitizer.hpp); code that reads or writes one holds it open with this for
// as long as it needs it. A null block is allowed and opens nothing.
class OpenHeader : tool::Reveal {
 public:
  explicit OpenHeader(const BlockMeta* b) : Reveal(b, kHeaderSize) {}
  using Reveal::forget;
};

// A copy of the header at b, read with it open: how tests and tools look at
// a header without holding it open.
inline BlockMeta read_header(const BlockMeta* b) {
  const OpenHeader open(b);
  return *b;
}

// True when `b` ends exactly where `n` begins: only such blocks may merge.
inline bool touches(const BlockMeta* b, const BlockMeta* n) {
  const OpenHeader open(b);
  return n != nullptr && b->end() == reinterpret_cast<const std::byte*>(n);
}

// b->next, read with b's header open only for the read: for loops that walk
// the list one header at a time.
inline BlockMeta* next_of(const BlockMeta* b) {
  const OpenHeader open(b);
  return b->next;
}
inline BlockMeta* prev_of(const BlockMeta* b) {
  const OpenHeader open(b);
  return b->prev;
}

}  // namespace osmem
