// The reference model of the allocation contract (docs/contract.md).
//
// An independent oracle for the engine: it predicts, for any sequence of
// os_malloc/os_calloc/os_realloc/os_free calls (and, under the malloc
// policy of part II, aligned allocation and trim), the address each call returns
// and the exact sequence of sbrk/mmap/munmap calls the engine makes when it
// runs on FakeSource. It is the seed algorithm written as plainly as
// possible: a vector of heap blocks in address order, a linear best-fit scan,
// neighbours merged the moment a block becomes free, and simulated addresses
// (offsets into the fake heap buffer, serials for mappings). It touches no
// real memory and shares no code with the engine, so a bug would have to be
// made twice, the same way, to go unnoticed.
//
// Rule 15 (a FREE payload keeps the user's bytes) is a rule about memory,
// which the model does not hold: it says which bytes are FREE payload
// (heap_blocks()), and Lockstep, which holds the real memory, compares them
// after every step with what the user left there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "block.hpp"
#include "fake_source.hpp"

namespace osmem::model {

// A pointer as the model sees it: a heap payload offset or a mapping serial.
struct Addr {
  enum class Kind { Null, Heap, Mapped };
  Kind kind = Kind::Null;
  // Heap: offset of the payload from the fake heap buffer start.
  // Mapped: the mapping's serial (1 = first successful map since reset).
  std::size_t value = 0;

  static Addr null() { return Addr{}; }
  static Addr heap(std::size_t off) { return Addr{Kind::Heap, off}; }
  static Addr mapped(std::size_t serial) { return Addr{Kind::Mapped, serial}; }
  bool is_null() const { return kind == Kind::Null; }
  friend bool operator==(const Addr&, const Addr&) = default;
};

std::string to_string(const Addr& a);               // "null", "heap+0x20", "map#3"
std::string to_string(const osmem::SourceCall& c);  // "sbrk(48) -> +0x0", "mmap(131104) -> #1"
std::vector<std::string> to_strings(const std::vector<osmem::SourceCall>& calls);
// Lets GoogleTest print addresses in failure messages.
std::ostream& operator<<(std::ostream& os, const Addr& a);

// A heap block; offset is that of its header.
struct Block {
  std::size_t offset;
  std::size_t size;  // payload capacity
  osmem::Status status;
  friend bool operator==(const Block&, const Block&) = default;
};

// A live mapping; its mapped length is offset + size.
struct Mapping {
  std::size_t serial;
  std::size_t size;  // payload capacity
  // Bytes from the mapping's start to the payload, header included: 32, or
  // more for an aligned block (rule M8) whose header sits inside its page.
  std::size_t offset = 32;
  friend bool operator==(const Mapping&, const Mapping&) = default;
};

// The contract's policy parameters: part I (the seed, the default) or part
// II (the malloc policy, rules M1-M9). Each field names the rule it models.
struct Policy {
  std::size_t align = 8;             // rule 1 / M1: sizes round to it; split needs 32 + align
  bool zero_is_null = true;          // rule 2 / M2: false: a zero size is a 1-byte request
  bool calloc_maps_at_page = true;   // rule 4 / M4: false: calloc maps at the mmap threshold
  std::size_t growth_step = 0;       // rule 6 / M5: 0: sbrk exactly what is missing
  std::size_t trim_threshold = 0;    // M6: 0: never trim
  std::size_t top_pad = 0;           // M6: what a trim after free keeps
  bool whole_pages = false;          // M4, M7: mapped blocks own whole pages, mremap on realloc
  bool realloc_freed_fatal = false;  // rule 12 / M9
  bool aligned = false;              // M8: aligned_malloc, usable_size and trim exist

  static Policy seed() { return Policy{}; }
  static Policy malloc_policy() {
    Policy p;
    p.align = 16;
    p.zero_is_null = false;
    p.calloc_maps_at_page = false;
    p.growth_step = 131072;
    p.trim_threshold = 131072;
    p.top_pad = 131072;
    p.whole_pages = true;
    p.realloc_freed_fatal = true;
    p.aligned = true;
    return p;
  }
};

class Model {
 public:
  static constexpr std::size_t kMmapThreshold = 131072;
  static constexpr std::size_t kPrealloc = 131072;

  explicit Model(osmem::FakeLimits limits = {}, std::size_t page_size = 4096,
                 Policy policy = Policy::seed());
  const Policy& policy() const { return policy_; }

  // Where the memory source puts things, which decides alignments larger
  // than a page (rule M8); both are inputs, like the source's results:
  // the real address of the fake heap buffer's start (default 0), and the
  // real address of the mapping with a given serial (default 0: every
  // mapping maximally aligned).
  void set_heap_base(std::uintptr_t base) { heap_base_ = base; }
  void set_map_address(std::function<std::uintptr_t(std::size_t serial)> f) {
    map_address_ = std::move(f);
  }

  // Fresh state, like FakeSource::reset() plus a fresh engine. Limits are kept.
  void reset();

  Addr malloc(std::size_t n);
  Addr calloc(std::size_t nmemb, std::size_t size);
  // p must be null, a live block, or a heap block whose header is FREE (which
  // returns null and changes nothing); anything else throws std::logic_error.
  Addr realloc(Addr p, std::size_t n);
  // p must be null or a live (ALLOC/MAPPED) block; anything else is what the
  // engine reports as a fatal error, and throws std::logic_error here.
  void free(Addr p);
  // Rule M8 (malloc policy only): n bytes at a multiple of align (a power
  // of two; the caller validated it). Throws std::logic_error under the seed.
  Addr aligned_malloc(std::size_t align, std::size_t n);
  // Rule M6's malloc_trim(pad): true when the break was lowered.
  bool trim(std::size_t pad);
  // malloc_usable_size: the capacity of a live block.
  std::size_t usable_size(Addr p) const { return capacity(p); }
  // The last operation returned null and set errno = ENOMEM.
  bool last_enomem() const { return last_enomem_; }

  // Fault injection and foreign sbrk, numbered exactly like FakeSource: per
  // kind, from 1 since reset, failed calls included.
  void fail_extend_call(std::size_t nth);
  void fail_map_call(std::size_t nth);
  void fail_next_extend() { fail_extend_call(extend_calls_ + 1); }
  void fail_next_map() { fail_map_call(map_calls_ + 1); }
  // Moves the simulated break; false (and no change) past the heap capacity.
  bool foreign_extend(std::size_t delta);
  // foreign_extend(delta) just before the nth extend call, like FakeSource.
  void foreign_extend_before_call(std::size_t nth, std::size_t delta);
  std::size_t extend_calls() const { return extend_calls_; }

  // Predicted source calls since the last clear_calls()/reset(), in
  // FakeSource's format. Unlike FakeSource's log this one never drops calls.
  const std::vector<osmem::SourceCall>& calls() const { return calls_; }
  std::vector<std::string> call_strings() const { return to_strings(calls_); }
  void clear_calls() { calls_.clear(); }

  // Introspection for tests and fuzzers.
  const std::vector<Block>& heap_blocks() const { return blocks_; }  // address order
  const std::vector<Mapping>& mappings() const { return mappings_; }  // live ones, by serial
  std::size_t capacity(Addr p) const;  // payload capacity of a live block
  bool is_live(Addr p) const;          // ALLOC heap block or live mapping starts there
  bool is_free_block(Addr p) const;    // a FREE heap block's header is exactly at p - 32
  std::size_t break_offset() const { return break_; }
  std::size_t heap_span() const;  // bytes in segments (headers included)
  bool heap_initialised() const { return initialised_; }
  std::size_t live_mapped_bytes() const { return live_mapped_bytes_; }
  const osmem::FakeLimits& limits() const { return limits_; }
  std::size_t page_size() const { return page_size_; }

  // The model's own invariants (address order, alignment, no overlap, no two
  // touching FREE blocks, blocks below the break). Returns a description of
  // the first broken one, or an empty string.
  std::string check() const;
  // A one-line-per-block picture of the heap and mappings, for failure output.
  std::string dump() const;

 private:
  // --- The simulated FakeSource. ---
  // Returns the old break offset, or nothing when the call fails.
  std::optional<std::size_t> source_extend(std::size_t delta);
  // sbrk(0) and sbrk(-k) of a trim (M6).
  std::optional<std::size_t> source_shrink(std::size_t k);
  // Rule 14: heap growth by delta, or nothing (and no sbrk) when the heap's
  // segments would pass span_limit(), 40 bytes per index record.
  std::optional<std::size_t> grow_heap(std::size_t delta);
  std::size_t span_limit() const;
  // Returns the new mapping's serial, or nothing when the call fails.
  std::optional<std::size_t> source_map(std::size_t len);
  void source_unmap(std::size_t serial);
  // munmap of a whole-page prefix or suffix of a live mapping (M8).
  void source_unmap_part(std::size_t serial, std::size_t len);
  // mremap of a live mapping to new_len; false when the call fails (M7).
  bool source_remap(std::size_t serial, std::size_t new_len);

  // --- The allocator. ---
  Addr allocate(std::size_t n, std::size_t map_threshold);
  Addr map_block(std::size_t need);
  Addr map_aligned(std::size_t align, std::size_t need);                               // M8
  std::size_t carve_aligned(std::size_t offset, std::size_t align, std::size_t need);  // M8
  Addr remap_block(Addr p, std::size_t n, std::size_t need);                           // M7
  void maybe_trim();                              // M6 after free, shrink
  bool trim_top(std::size_t pad);                 // M6
  std::size_t growth(std::size_t missing) const;  // M5
  std::size_t round(std::size_t n) const {
    return (n + policy_.align - 1) / policy_.align * policy_.align;
  }
  std::size_t round_down(std::size_t n) const { return n - n % policy_.align; }
  std::size_t pages(std::size_t n) const { return (n + page_size_ - 1) / page_size_ * page_size_; }
  std::size_t min_split() const { return 32 + policy_.align; }
  std::size_t max_request() const { return SIZE_MAX - 32 - (policy_.align - 1); }
  std::size_t zero_size(std::size_t n) const { return n == 0 && !policy_.zero_is_null ? 1 : n; }
  // Rules 5 and 6: the header offset of the new ALLOC heap block, or nothing
  // when an sbrk failed (the caller then falls back to rule 9).
  std::optional<std::size_t> heap_allocate(std::size_t need);
  // How a growth of the heap ended (rules 6b-6e).
  enum class Growth { Contiguous, NewSegment, Failed, SegmentFailed };
  // sbrk(delta) for a request of need; on NewSegment, *segment_block is the
  // header offset of the ALLOC block the new segment holds.
  Growth grow(std::size_t delta, std::size_t need, std::size_t* segment_block);
  // Rule 8: the preallocation chunk, realigned, as the first segment.
  void first_segment(std::size_t returned, std::size_t delta);
  // Rule 8: a leftover chunk [from, to) becomes a FREE block or stays unused.
  void leftover_chunk(std::size_t from, std::size_t to);
  // Rule 12's growth of the last heap block; returns the realloc's result.
  Addr grow_last(std::size_t index, std::size_t n, std::size_t need);
  Addr move_heap_block(std::size_t offset, std::size_t n);
  void split(std::size_t index, std::size_t need);  // rule 7
  void free_heap_block(std::size_t index);          // rules 10 and 11
  void coalesce(std::size_t index);                 // rule 10
  bool touches(std::size_t index) const;            // blocks_[index] ends where index+1 begins
  std::size_t block_end(std::size_t index) const;   // offset just past its payload
  std::optional<std::size_t> find_block(std::size_t header_offset) const;
  std::optional<std::size_t> find_mapping(std::size_t serial) const;
  [[noreturn]] static void violation(const std::string& what);

  osmem::FakeLimits limits_;
  std::size_t page_size_;
  Policy policy_;
  std::uintptr_t heap_base_ = 0;
  std::function<std::uintptr_t(std::size_t)> map_address_;

  // Simulated FakeSource state.
  std::size_t break_ = 0;
  std::size_t extend_calls_ = 0;
  std::size_t map_calls_ = 0;
  std::vector<std::size_t> fail_extend_;
  std::vector<std::size_t> fail_map_;
  std::vector<std::pair<std::size_t, std::size_t>> foreign_before_;  // (call, delta)
  std::size_t next_serial_ = 1;
  std::size_t live_mapped_bytes_ = 0;
  std::vector<osmem::SourceCall> calls_;

  // Simulated engine state.
  bool initialised_ = false;
  std::vector<Block> blocks_;
  std::vector<Mapping> mappings_;
  bool last_enomem_ = false;
};

}  // namespace osmem::model
