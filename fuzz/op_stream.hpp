// The fuzz targets' input format: an operation stream read with
// FuzzedDataProvider, and the encoder that writes the same format for the
// seed corpora and dictionaries (fuzz/make_seeds.cpp).
//
// Every value is read with ConsumeIntegralInRange, which takes its bytes
// from the *end* of the input, most significant byte first, as few as the
// range needs. Keeping to that one primitive is what makes an exact encoder
// possible: OpWriter records the bytes in consumption order and reverses
// them, and make_seeds decodes every seed again to prove the round trip.
//
// Sizes are drawn by class rather than uniformly, so that a one-byte
// mutation moves a request across a rule's boundary: the 40-byte split rule
// (relative to an existing free block or live block), the page-size calloc
// threshold, the 128 KiB mmap threshold, and the ALIGN8(n) + 32 overflow
// just below SIZE_MAX. The harness resolves the relative classes against
// the heap it is driving (see Resolver below).
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace osmem::fuzz {

enum class OpKind : std::uint8_t {
  Malloc,
  Calloc,
  Realloc,
  ReallocNull,
  Free,
  ReallocFreed,  // realloc of a block freed earlier: must return NULL
  // Only in streams that allow faults (the faults target, the api target's
  // foreign sbrk):
  FailNextExtend,
  FailNextMap,
  ForeignExtend,
};
inline constexpr std::uint8_t kPlainKinds = 6;  // Malloc .. ReallocFreed
inline constexpr std::uint8_t kFaultKinds = 9;  // every kind

enum class SizeClass : std::uint8_t {
  Zero,
  Tiny,        // 1..16
  NearFree,    // free block size - 40 + [-64, 64]: both sides of the split rule
  NearLive,    // live block's capacity + [-64, 64]: realloc in place or not
  Small,       // 1..512
  Medium,      // 513..16384
  Big,         // 16385..131000: heap blocks that force sbrk growth
  CallocEdge,  // 4016..4112: around the page-size calloc threshold
  MmapEdge,    // 130992..131088: around the 128 KiB mmap threshold
  Mapped,      // 131089..327680
  Huge,        // SIZE_MAX - [0, 63]: both sides of the overflow rule
  Count,
};

struct SizeSpec {
  SizeClass cls = SizeClass::Zero;
  std::uint64_t value = 0;  // within the class's range
  std::int32_t delta = 0;   // NearFree / NearLive
};

inline constexpr std::int32_t kDeltaMax = 64;
inline constexpr std::uint64_t kMappedMax = 320 * 1024;

struct ClassRange {
  std::uint64_t lo, hi;
};
// The range of SizeSpec::value per class. NearFree/NearLive store the pick
// (which block) in value.
inline constexpr ClassRange class_range(SizeClass c) {
  switch (c) {
    case SizeClass::Zero:
      return {0, 0};
    case SizeClass::Tiny:
      return {1, 16};
    case SizeClass::NearFree:
    case SizeClass::NearLive:
      return {0, 255};
    case SizeClass::Small:
      return {1, 512};
    case SizeClass::Medium:
      return {513, 16384};
    case SizeClass::Big:
      return {16385, 131000};
    case SizeClass::CallocEdge:
      return {4016, 4112};
    case SizeClass::MmapEdge:
      return {130992, 131088};
    case SizeClass::Mapped:
      return {131089, kMappedMax};
    case SizeClass::Huge:
      return {0, 63};  // subtracted from SIZE_MAX
    case SizeClass::Count:
      break;
  }
  return {0, 0};
}

enum class CallocShape : std::uint8_t {
  OneBySize,      // calloc(1, n)
  SizeByOne,      // calloc(n, 1)
  Split,          // calloc(k, n / k), k in 2..17
  Overflow,       // nmemb * size overflows, wrapping below a factor: ENOMEM, no system call
  OverflowAbove,  // ... wrapping to a value above both factors (a "product < factor" check misses
                  // it)
  Count,
};

struct Op {
  OpKind kind = OpKind::Malloc;
  std::uint8_t pick = 0;  // which live/freed block (modulo the count)
  SizeSpec size;
  CallocShape shape = CallocShape::OneBySize;
  std::uint8_t shape_arg = 0;  // Split: k - 2 (0..15); Overflow: bit 1..32 and low bits
  std::uint16_t delta = 1;     // ForeignExtend: 1..8192
};

// ---- decoding ---------------------------------------------------------------

inline SizeSpec read_size(FuzzedDataProvider& in) {
  SizeSpec s;
  s.cls = static_cast<SizeClass>(
      in.ConsumeIntegralInRange<std::uint8_t>(0, static_cast<std::uint8_t>(SizeClass::Count) - 1));
  const ClassRange r = class_range(s.cls);
  s.value = in.ConsumeIntegralInRange<std::uint64_t>(r.lo, r.hi);
  if (s.cls == SizeClass::NearFree || s.cls == SizeClass::NearLive) {
    s.delta = in.ConsumeIntegralInRange<std::int32_t>(-kDeltaMax, kDeltaMax);
  }
  return s;
}

// kinds: kPlainKinds or kFaultKinds.
inline Op read_op(FuzzedDataProvider& in, std::uint8_t kinds) {
  Op op;
  op.kind = static_cast<OpKind>(in.ConsumeIntegralInRange<std::uint8_t>(0, kinds - 1));
  switch (op.kind) {
    case OpKind::Malloc:
    case OpKind::ReallocNull:
      op.size = read_size(in);
      break;
    case OpKind::Calloc:
      op.shape = static_cast<CallocShape>(in.ConsumeIntegralInRange<std::uint8_t>(
          0, static_cast<std::uint8_t>(CallocShape::Count) - 1));
      op.shape_arg = in.ConsumeIntegralInRange<std::uint8_t>(0, 255);
      op.size = read_size(in);
      break;
    case OpKind::Realloc:
    case OpKind::ReallocFreed:
      op.pick = in.ConsumeIntegralInRange<std::uint8_t>(0, 255);
      op.size = read_size(in);
      break;
    case OpKind::Free:
      op.pick = in.ConsumeIntegralInRange<std::uint8_t>(0, 255);
      break;
    case OpKind::FailNextExtend:
    case OpKind::FailNextMap:
      break;
    case OpKind::ForeignExtend:
      op.delta = in.ConsumeIntegralInRange<std::uint16_t>(1, 8192);
      break;
  }
  return op;
}

// calloc's two arguments for a resolved total n.
struct CallocArgs {
  std::size_t nmemb, size;
};
inline CallocArgs calloc_args(const Op& op, std::size_t n) {
  switch (op.shape) {
    case CallocShape::SizeByOne:
      return {n, 1};
    case CallocShape::Split: {
      const std::size_t k = 2 + (op.shape_arg & 15);
      return {k, n / k};
    }
    case CallocShape::Overflow: {
      // 2^(64-j) * (2^j + d) >= 2^64 for every j in 1..32, d in 0..7.
      const unsigned j = 1 + (op.shape_arg & 31);
      return {std::size_t{1} << (64 - j), (std::size_t{1} << j) + (op.shape_arg >> 5)};
    }
    case CallocShape::OverflowAbove: {
      // (2^k + m)^2 = 2^2k + 2^(k+1) m + m^2: for k in 33..48, m in 1..16
      // it wraps to 2^(k+1) m + m^2, which is above 2^k + m.
      const unsigned k = 33 + (op.shape_arg & 15);
      const std::size_t f = (std::size_t{1} << k) + 1 + (op.shape_arg >> 4);
      return {f, f};
    }
    case CallocShape::OneBySize:
    case CallocShape::Count:
      break;
  }
  return {1, n};
}

// Turns a SizeSpec into a byte count. The relative classes need the heap's
// current free block sizes / a live block's capacity; a harness passes
// what it knows (the api target knows no free block sizes).
inline std::size_t resolve_size(const SizeSpec& s, const std::vector<std::size_t>& free_sizes,
                                const std::vector<std::size_t>& live_sizes) {
  auto near = [&](const std::vector<std::size_t>& sizes, std::int64_t base_adjust) -> std::size_t {
    if (sizes.empty()) return 1 + s.value;  // nothing to be near: a small size
    const auto base = static_cast<std::int64_t>(sizes[s.value % sizes.size()]);
    const std::int64_t n = base + base_adjust + s.delta;
    return n < 1 ? 1 : static_cast<std::size_t>(n);
  };
  switch (s.cls) {
    case SizeClass::Zero:
      return 0;
    case SizeClass::NearFree:
      // delta 0 leaves exactly 40 bytes: the smallest remainder that splits.
      return near(free_sizes, -40);
    case SizeClass::NearLive:
      return near(live_sizes, 0);
    case SizeClass::Huge:
      return SIZE_MAX - s.value;
    default:
      return static_cast<std::size_t>(s.value);
  }
}

// ---- encoding (seeds, dictionaries) -----------------------------------------

class OpWriter {
 public:
  // Appends one value exactly as ConsumeIntegralInRange<T>(lo, hi) reads it.
  template <class T>
  void put(T lo, T hi, T v) {
    const std::uint64_t range = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
    const std::uint64_t x = static_cast<std::uint64_t>(v) - static_cast<std::uint64_t>(lo);
    std::size_t n = 0;
    while (n < sizeof(T) && (range >> (8 * n)) > 0) ++n;
    for (std::size_t i = n; i-- > 0;) consumed_.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
  }

  void size(const SizeSpec& s) {
    put<std::uint8_t>(0, static_cast<std::uint8_t>(SizeClass::Count) - 1,
                      static_cast<std::uint8_t>(s.cls));
    const ClassRange r = class_range(s.cls);
    put<std::uint64_t>(r.lo, r.hi, s.value);
    if (s.cls == SizeClass::NearFree || s.cls == SizeClass::NearLive) {
      put<std::int32_t>(-kDeltaMax, kDeltaMax, s.delta);
    }
  }

  void op(const Op& o, std::uint8_t kinds) {
    put<std::uint8_t>(0, kinds - 1, static_cast<std::uint8_t>(o.kind));
    switch (o.kind) {
      case OpKind::Malloc:
      case OpKind::ReallocNull:
        size(o.size);
        break;
      case OpKind::Calloc:
        put<std::uint8_t>(0, static_cast<std::uint8_t>(CallocShape::Count) - 1,
                          static_cast<std::uint8_t>(o.shape));
        put<std::uint8_t>(0, 255, o.shape_arg);
        size(o.size);
        break;
      case OpKind::Realloc:
      case OpKind::ReallocFreed:
        put<std::uint8_t>(0, 255, o.pick);
        size(o.size);
        break;
      case OpKind::Free:
        put<std::uint8_t>(0, 255, o.pick);
        break;
      case OpKind::FailNextExtend:
      case OpKind::FailNextMap:
        break;
      case OpKind::ForeignExtend:
        put<std::uint16_t>(1, 8192, o.delta);
        break;
    }
  }

  // The bytes in consumption order; bytes() gives the input file.
  const std::vector<std::uint8_t>& consumed() const { return consumed_; }
  std::vector<std::uint8_t> bytes() const { return {consumed_.rbegin(), consumed_.rend()}; }

 private:
  std::vector<std::uint8_t> consumed_;
};

}  // namespace osmem::fuzz
