// Runs the engine (over the fake source) and the reference model side by
// side, one operation at a time, and checks after every step everything a
// user could observe: the same returned address, the same system calls, the
// same errno, alignment, no overlap between live blocks, every live block's
// contents intact, calloc memory zeroed, realloc's prefix kept, the checker
// clean, the heap's block list identical to the model's, and the engine's
// own statistics (os_heap_stats) equal to what the model predicts and the
// source recorded.
//
// Unit tests, property tests, fuzzers and the differential test all drive
// this one class, so they all judge the engine by the same rules. A
// divergence throws Divergence with a message that says what differed; the
// message includes the operation that ran, so a failure reads on its own.
//
// Cost: the fuzzers run this millions of times, so a step formats no text
// (operations are recorded as numbers and described only for a message),
// contents are filled and compared with memcpy/memcmp (model/pattern.hpp),
// and each step verifies the blocks it could have touched: the one it
// operated on and that block's live neighbours in address order. Every
// `full_every` steps, and in verify_all(), every live block is verified.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cross_checked_index.hpp"
#include "fake_source.hpp"
#include "heap.hpp"
#include "model/model.hpp"

namespace osmem::model {

struct Divergence : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Lockstep {
 public:
  // The shipped engine, with its best-fit index cross-checked against the
  // seed's linear scan at every search (cross_checked_index.hpp).
  struct Config : DefaultConfig {
    using FreeIndex = CrossCheckedIndex<FreeTree, LinearFreeIndex>;
  };
  using Engine = Heap<FakeSource, Config>;

  struct Options {
    FakeLimits limits{};
    std::uint64_t cookie = 0x9e3779b97f4a7c15ULL;
    // Run the full checker, compare the block lists and verify every live
    // block's contents every `full_every` steps (1 = every step). The
    // system calls, the result, the statistics and the touched blocks are
    // compared at every step.
    unsigned full_every = 1;
    // Compare every FREE payload with what the user left every
    // `payloads_every` steps (0: with the full checks); of the FREE blocks
    // a step made or changed, the bytes it could have written are compared
    // at every step (compare_changed_payload).
    unsigned payloads_every = 0;
  };

  // A block the user holds.
  struct Live {
    std::byte* ptr;
    Addr addr;
    std::size_t requested;
    std::uint8_t tag;
  };

  Lockstep() : Lockstep(Options{}) {}
  explicit Lockstep(Options options);

  // A fresh engine over a fresh (reset) source, and a fresh model.
  void reset();

  // The operations. Each runs on both sides and verifies; each returns the
  // new live block's index (or -1 when the result is NULL). Indices refer
  // to live(); free/realloc take an index into it.
  long malloc(std::size_t n);
  long calloc(std::size_t nmemb, std::size_t size);
  long realloc(std::size_t index, std::size_t n);
  long realloc_null(std::size_t n);  // realloc(NULL, n)
  void free(std::size_t index);
  // realloc of a block freed earlier whose FREE header still stands where
  // it was (model.is_free_block): must return NULL and change nothing.
  // Returns false (and does nothing) when no such block is remembered.
  bool realloc_freed(std::size_t pick, std::size_t n);

  // Fault injection, on both sides.
  void fail_next_extend();
  // The engine's `later`-th sbrk call from now fails (1 = the next one).
  void fail_extend_later(std::size_t later);
  void fail_next_map();
  bool foreign_extend(std::size_t delta);
  // A foreign sbrk of delta just before the engine's `later`-th sbrk call
  // from now (1 = the next one): it can fall inside one operation.
  void foreign_extend_before_sbrk(std::size_t later, std::size_t delta);

  // The user wrote [p, p + len) outside any call (a test's use after free
  // or overflow): those bytes, wherever they lie in the heap buffer, are
  // what FREE payloads must keep from now on.
  void user_wrote(const void* p, std::size_t len);

  // Full verification: checker, block lists, every live block's contents,
  // every FREE payload.
  void verify_all();
  // verify_all() without the contents of live blocks and FREE payloads,
  // then free_all(), which compares each block whole as it frees it and
  // every FREE payload at its end: the end of a fuzz input.
  void verify_and_free_all();
  // Frees every live block (verifying each step), then verifies.
  void free_all();

  const std::vector<Live>& live() const { return live_; }
  // The system calls the last operation made (already checked against the
  // model), for tests that pin them down by hand too.
  const std::vector<SourceCall>& last_calls() const { return last_calls_; }
  // Offset of a live block's payload from the heap buffer's start.
  std::size_t offset(std::size_t index) const { return live_.at(index).addr.value; }
  std::size_t steps() const { return steps_; }
  Engine& engine() { return *engine_; }
  FakeSource& source() { return *source_; }
  Model& model() { return model_; }
  // The operations so far, one per line, as C calls: a reproducer.
  std::string transcript() const;

 private:
  // One operation as it was called; text only when a message needs it.
  struct Record {
    enum class Kind : std::uint8_t {
      Malloc,
      Calloc,
      Realloc,
      ReallocNull,
      Free,
      ReallocFreed,
      FailExtend,
      FailMap,
      Foreign,
      FailExtendLater,    // a = how many sbrk calls from now
      ForeignBeforeSbrk,  // a = how many sbrk calls from now, b = delta
      Final,
    };
    Kind kind;
    std::size_t step;
    std::size_t a = 0, b = 0;  // sizes (realloc: a = old requested, b = n)
    Addr addr{};
  };
  static std::string describe(const Record& r);

  // The operation a check belongs to, plus a note ("(before)"): formatted
  // only when a message is built from it (op + ": what differed").
  class Op {
   public:
    Op(const Lockstep& ls, const char* note = "") : ls_(ls), note_(note) {}
    Op with(const char* note) const { return Op(ls_, note); }
    std::string str() const;
    friend std::string operator+(const Op& op, const std::string& s) { return op.str() + s; }
    friend std::string operator+(const Op& op, const char* s) { return op.str() + s; }

   private:
    const Lockstep& ls_;
    const char* note_;
  };

  Addr addr_of(const void* p) const;
  [[noreturn]] void diverge(const std::string& what) const;
  void compare_calls(const Op& op);
  void compare_result(const Op& op, const void* got, const Addr& want);
  void check_errno(const Op& op, const void* got, int err);
  void after_step(const Op& op);
  void compare_blocks(const Op& op);
  // os_heap_stats against the model (blocks, bytes, span, segments,
  // mappings) and against the calls the source recorded.
  void compare_stats(const Op& op);
  void run_checker(const Op& op);
  long adopt(const Op& op, void* p, const Addr& a, std::size_t requested, bool zeroed,
             const Live* kept);
  // contents: also every live block's bytes and every FREE payload.
  void verify_all(bool contents);
  void verify_contents(const Op& op, const Live& l) const;
  // Bytes [from, to) of the block's requested bytes.
  void verify_range(const Op& op, const Live& l, std::size_t from, std::size_t to) const;
  // Under ASan: the block's requested bytes (or [from, to) of them) are
  // addressable, as a live block's must be. Elsewhere nothing.
  void verify_addressable(const Op& op, const Live& l) const;
  void verify_addressable(const Op& op, const Live& l, std::size_t from, std::size_t to) const;
  // The live blocks that start just below and just above `start`.
  void verify_neighbours(const Op& op, std::uintptr_t start) const;
  void verify_all_contents(const Op& op) const;
  // Rule 15, the bytes of FREE payloads: before a step, what the user
  // leaves in a block about to be freed or resized; after it, the payloads
  // compared with that record (the FREE blocks the step made or changed;
  // all of them on a full step).
  void begin_step();
  void remember_payload(const Live& l);
  void check_free_payloads(const Op& op, bool all);
  void compare_changed_payload(const Op& op, const Block& b);
  // Bytes [from, from + n) of the heap buffer, in FREE block b's payload,
  // against what the user left there.
  void compare_payload(const Op& op, const Block& b, std::size_t from, std::size_t n);
  Op note(Record r);

  Options options_;
  std::unique_ptr<FakeSource> source_;
  std::optional<Engine> engine_;
  Model model_;
  std::vector<Live> live_;
  std::map<std::uintptr_t, Live> by_address_;       // live_, keyed by start address
  std::vector<std::pair<std::byte*, Addr>> freed_;  // recently freed heap blocks
  std::vector<SourceCall> last_calls_;
  // What every byte of the heap buffer that lies in a FREE payload must
  // hold: the bytes the user left (fresh sbrk memory is zero). Grows with
  // the break; bytes of live blocks are recorded when they are given back.
  std::vector<std::uint8_t> expected_;
  std::size_t expected_dirty_ = 0;  // expected_ is zero from here on
  void wrote_expected(std::size_t end) {
    if (end > expected_dirty_) expected_dirty_ = end;
  }
  std::vector<Block> blocks_before_;  // the model's heap list before the step
  std::uint8_t next_tag_ = 1;
  std::size_t steps_ = 0;
  bool tearing_down_ = false;  // in free_all: the whole check runs once, at the end
  // System calls the source recorded since reset, per kind.
  std::size_t extend_calls_ = 0, map_calls_ = 0, unmap_calls_ = 0;
  std::vector<Record> log_;
};

}  // namespace osmem::model
