// The corruption target's input, after the op stream that builds the heap:
// a few bad pointers handed to free/realloc, then a few byte writes of the
// kind a buffer overflow in user code makes, then what to hand to free or
// realloc afterwards. Read and written like op_stream.hpp (values from the
// end of the input), so make_seeds can encode seeds for it.
#pragma once

#include <cstdint>
#include <vector>

#include "op_stream.hpp"

namespace osmem::fuzz {

enum class BadPointer : std::uint8_t {
  Misaligned,  // a live pointer + 1..7: MisalignedPointer
  Interior,    // a live pointer + 8k inside its block: diagnosed somehow
  Outside,     // memory the heap never owned: InvalidPointer
  Unmapped,    // a mapping freed earlier: InvalidPointer, nothing read
  DoubleFree,  // a heap block whose FREE header still stands: DoubleFree
  Count,
};

enum class WriteTarget : std::uint8_t {
  Header,     // one byte of a heap or mapped header (the header's own bytes)
  Overflow,   // bytes just past a live block's requested size
  Underflow,  // bytes just before a live block's payload
  Anywhere,   // bytes anywhere below the fake break
  Count,
};

struct BadCall {
  BadPointer kind = BadPointer::Misaligned;
  std::uint8_t pick = 0;
  std::uint8_t arg = 0;  // offset choice; bit 7: realloc instead of free
};

struct Write {
  WriteTarget target = WriteTarget::Header;
  std::uint8_t pick = 0;
  std::uint32_t offset = 0;  // Header: byte 0..31; Anywhere: offset below the break
  std::uint8_t len = 1;      // 1..64
  std::uint8_t mask = 0xff;  // each byte is XORed with it (0 writes nothing new)
};

// What follows a damaged FREE header: every operation that may read it.
enum class FreeFollow : std::uint8_t {
  FreeBefore,     // free the ALLOC block in front of it (merge with the next block)
  FreeAfter,      // free the ALLOC block after it (merge with the previous block)
  ReallocBefore,  // grow the block in front of it into it (realloc's absorb path)
  Search,         // malloc of its size: the best-fit search reaches it
  Count,
};

struct CorruptionInput {
  std::vector<Op> build;  // at most 63 operations
  std::vector<BadCall> bad;
  std::vector<Write> writes;  // 1..4
  bool realloc_after = false;
  SizeSpec realloc_size;
  FreeFollow follow = FreeFollow::FreeBefore;  // read last: absent means FreeBefore
};

inline constexpr std::uint32_t kAnywhereMax = (1u << 24) - 1;

inline CorruptionInput read_corruption(FuzzedDataProvider& in) {
  CorruptionInput c;
  const auto n_build = in.ConsumeIntegralInRange<std::uint8_t>(0, 63);
  for (unsigned i = 0; i < n_build; ++i) c.build.push_back(read_op(in, kPlainKinds));
  const auto n_bad = in.ConsumeIntegralInRange<std::uint8_t>(0, 3);
  for (unsigned i = 0; i < n_bad; ++i) {
    BadCall b;
    b.kind = static_cast<BadPointer>(in.ConsumeIntegralInRange<std::uint8_t>(
        0, static_cast<std::uint8_t>(BadPointer::Count) - 1));
    b.pick = in.ConsumeIntegralInRange<std::uint8_t>(0, 255);
    b.arg = in.ConsumeIntegralInRange<std::uint8_t>(0, 255);
    c.bad.push_back(b);
  }
  const auto n_writes = in.ConsumeIntegralInRange<std::uint8_t>(1, 4);
  for (unsigned i = 0; i < n_writes; ++i) {
    Write w;
    w.target = static_cast<WriteTarget>(in.ConsumeIntegralInRange<std::uint8_t>(
        0, static_cast<std::uint8_t>(WriteTarget::Count) - 1));
    w.pick = in.ConsumeIntegralInRange<std::uint8_t>(0, 255);
    w.offset = in.ConsumeIntegralInRange<std::uint32_t>(0, kAnywhereMax);
    w.len = in.ConsumeIntegralInRange<std::uint8_t>(1, 64);
    w.mask = in.ConsumeIntegralInRange<std::uint8_t>(0, 255);
    c.writes.push_back(w);
  }
  c.realloc_after = in.ConsumeIntegralInRange<std::uint8_t>(0, 1) == 1;
  c.realloc_size = read_size(in);
  c.follow = static_cast<FreeFollow>(
      in.ConsumeIntegralInRange<std::uint8_t>(0, static_cast<std::uint8_t>(FreeFollow::Count) - 1));
  return c;
}

inline std::vector<std::uint8_t> write_corruption(const CorruptionInput& c) {
  OpWriter w;
  w.put<std::uint8_t>(0, 63, static_cast<std::uint8_t>(c.build.size()));
  for (const Op& op : c.build) w.op(op, kPlainKinds);
  w.put<std::uint8_t>(0, 3, static_cast<std::uint8_t>(c.bad.size()));
  for (const BadCall& b : c.bad) {
    w.put<std::uint8_t>(0, static_cast<std::uint8_t>(BadPointer::Count) - 1,
                        static_cast<std::uint8_t>(b.kind));
    w.put<std::uint8_t>(0, 255, b.pick);
    w.put<std::uint8_t>(0, 255, b.arg);
  }
  w.put<std::uint8_t>(1, 4, static_cast<std::uint8_t>(c.writes.size()));
  for (const Write& x : c.writes) {
    w.put<std::uint8_t>(0, static_cast<std::uint8_t>(WriteTarget::Count) - 1,
                        static_cast<std::uint8_t>(x.target));
    w.put<std::uint8_t>(0, 255, x.pick);
    w.put<std::uint32_t>(0, kAnywhereMax, x.offset);
    w.put<std::uint8_t>(1, 64, x.len);
    w.put<std::uint8_t>(0, 255, x.mask);
  }
  w.put<std::uint8_t>(0, 1, c.realloc_after ? 1 : 0);
  w.size(c.realloc_size);
  w.put<std::uint8_t>(0, static_cast<std::uint8_t>(FreeFollow::Count) - 1,
                      static_cast<std::uint8_t>(c.follow));
  return w.bytes();
}

}  // namespace osmem::fuzz
