// The reference model of the allocation contract (docs/contract.md).
//
// An independent oracle for the engine: it predicts, for any sequence of
// os_malloc/os_calloc/os_realloc/os_free calls, the address each call returns
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

// A live mapping; its mapped length is size + 32.
struct Mapping {
  std::size_t serial;
  std::size_t size;  // payload capacity
  friend bool operator==(const Mapping&, const Mapping&) = default;
};

class Model {
 public:
  static constexpr std::size_t kMmapThreshold = 131072;
  static constexpr std::size_t kPrealloc = 131072;

  explicit Model(osmem::FakeLimits limits = {}, std::size_t page_size = 4096);

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
  std::vector<Mapping> mappings() const { return mappings_; }        // live ones, by serial
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
  // Rule 14: heap growth by delta, or nothing (and no sbrk) when the heap's
  // segments would pass span_limit(), 40 bytes per index record.
  std::optional<std::size_t> grow_heap(std::size_t delta);
  std::size_t span_limit() const;
  // Returns the new mapping's serial, or nothing when the call fails.
  std::optional<std::size_t> source_map(std::size_t len);
  void source_unmap(std::size_t serial);

  // --- The allocator. ---
  Addr allocate(std::size_t n, std::size_t map_threshold);
  Addr map_block(std::size_t need);
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
