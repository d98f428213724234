// Applies decoded operations to a model::Lockstep (the engine over the fake
// source, run side by side with the reference model). Shared by the ops,
// faults and corruption targets so that all three judge the engine by the
// one set of checks Lockstep implements; this file only turns fuzzer bytes
// into calls and remembers what was freed (for the corruption target's
// double-free and stale-mapping probes).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <vector>

#include "model/lockstep.hpp"
#include "op_stream.hpp"

namespace osmem::fuzz {

// The fuzzers' fake machine: small enough that inputs reach the capacity
// limits (sbrk failing, mmap refused by bytes or by count) on their own,
// large enough for every size class.
inline model::Lockstep::Options lockstep_options(unsigned full_every) {
  model::Lockstep::Options o;
  o.limits.heap_capacity = std::size_t{8} << 20;
  o.limits.map_capacity = std::size_t{16} << 20;
  o.limits.max_mappings = 64;
  o.full_every = full_every;
  return o;
}

// An input longer than this many operations adds cost, not coverage.
inline constexpr std::size_t kMaxSteps = 256;

class LockstepDriver {
 public:
  explicit LockstepDriver(model::Lockstep& ls) : ls_(ls) {}

  void apply(const Op& op) {
    const auto& live = ls_.live();
    switch (op.kind) {
      case OpKind::Malloc:
        ls_.malloc(size_of(op.size));
        break;
      case OpKind::Calloc: {
        const CallocArgs a = calloc_args(op, size_of(op.size));
        ls_.calloc(a.nmemb, a.size);
        break;
      }
      case OpKind::Realloc:
        if (live.empty()) {
          ls_.realloc_null(size_of(op.size));
        } else {
          const std::size_t i = op.pick % live.size();
          const model::Lockstep::Live old = live[i];
          const std::size_t n = size_of(op.size);
          const long r = ls_.realloc(i, n);
          const bool moved = r >= 0 && ls_.live()[static_cast<std::size_t>(r)].ptr != old.ptr;
          if (n == 0 || moved) remember_freed(old);
        }
        break;
      case OpKind::ReallocNull:
        ls_.realloc_null(size_of(op.size));
        break;
      case OpKind::Free:
        if (!live.empty()) {
          const std::size_t i = op.pick % live.size();
          const model::Lockstep::Live old = live[i];
          ls_.free(i);
          remember_freed(old);
        }
        break;
      case OpKind::ReallocFreed:
        ls_.realloc_freed(op.pick, size_of(op.size));
        break;
      case OpKind::FailNextExtend:
        ls_.fail_next_extend();
        break;
      case OpKind::FailNextMap:
        ls_.fail_next_map();
        break;
      case OpKind::ForeignExtend:
        ls_.foreign_extend(op.delta);
        break;
    }
  }

  // Reads and applies operations until the input or the step budget ends.
  void run(FuzzedDataProvider& in, std::uint8_t kinds, std::size_t max_steps = kMaxSteps) {
    for (std::size_t i = 0; i < max_steps && in.remaining_bytes() > 0; ++i)
      apply(read_op(in, kinds));
  }

  std::size_t size_of(const SizeSpec& s) const {
    std::vector<std::size_t> free_sizes, live_sizes;
    if (s.cls == SizeClass::NearFree) {
      for (const model::Block& b : ls_.model().heap_blocks()) {
        if (b.status == Status::Free) free_sizes.push_back(b.size);
      }
    } else if (s.cls == SizeClass::NearLive) {
      for (const model::Lockstep::Live& l : ls_.live()) {
        live_sizes.push_back(ls_.model().capacity(l.addr));
      }
    }
    return resolve_size(s, free_sizes, live_sizes);
  }

  // Heap blocks freed so far (their FREE header may still stand) and
  // mappings released (their address may be unmapped now).
  const std::vector<model::Lockstep::Live>& freed_heap() const { return freed_heap_; }
  const std::vector<model::Lockstep::Live>& freed_mapped() const { return freed_mapped_; }

 private:
  void remember_freed(const model::Lockstep::Live& l) {
    auto& list = l.addr.kind == model::Addr::Kind::Mapped ? freed_mapped_ : freed_heap_;
    if (list.size() < 64) list.push_back(l);
  }

  model::Lockstep& ls_;
  std::vector<model::Lockstep::Live> freed_heap_;
  std::vector<model::Lockstep::Live> freed_mapped_;
};

// The engine's own fatal errors (a false double free, a canary it broke
// itself) abort through report(); this handler first prints the operations
// that led there, which the default handler cannot know.
inline const model::Lockstep* g_current = nullptr;

inline void print_with_transcript(ErrorKind kind, const char* operation, const void* address) {
  print_error(kind, operation, address);
  if (g_current != nullptr) {
    std::fprintf(stderr, "==== operations so far:\n%s\n", g_current->transcript().c_str());
  }
}

// Runs one input on a fresh Lockstep: `body` drives it. A divergence is a
// finding: say which, then crash so libFuzzer saves the input. Anything
// else thrown (the model rejecting a call, an engine error a harness turned
// into an exception) is a finding all the same.
//
// The Lockstep (with its fake heap buffer) is made once per process and
// reset for every input: mapping a fresh buffer per input cost a page fault
// per page the input touched, a fifth of the run time.
template <class F>
void with_lockstep(const char* target, unsigned full_every, F&& body) {
  static model::Lockstep ls(lockstep_options(full_every));
  ls.source().recycle_mappings(true);
  ls.reset();
  g_current = &ls;
  ls.engine().set_error_handler(print_with_transcript);
  try {
    body(ls);
  } catch (const model::Divergence& d) {
    std::fprintf(stderr, "\n==== osmem %s: engine and model diverged\n%s\n", target, d.what());
    std::abort();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\n==== osmem %s: %s\noperations so far:\n%s\n", target, e.what(),
                 ls.transcript().c_str());
    std::abort();
  }
  g_current = nullptr;
}

// The whole of the `ops` and `faults` targets: an operation stream of the
// given kinds on a fresh Lockstep, then every live block verified and freed.
inline void run_op_stream(const char* target, unsigned full_every, std::uint8_t kinds,
                          const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  with_lockstep(target, full_every, [&](model::Lockstep& ls) {
    LockstepDriver driver(ls);
    driver.run(in, kinds);
    ls.verify_and_free_all();
  });
}

}  // namespace osmem::fuzz
