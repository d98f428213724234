// The stateful property: random C programs over os_malloc/os_calloc/
// os_realloc/os_free, with the memory source refusing calls and another
// component moving the break, run on a fresh engine in lockstep with the
// reference model (model::Lockstep checks addresses, system calls, errno,
// the checker, alignment, overlap, contents, calloc zero, realloc prefix).
//
// The RapidCheck state is deliberately small: the program's variables (p0,
// p1, ...) and which of them the program still considers live or freed. It
// does not predict what the allocator returns, so a variable may hold NULL
// at run time (a refused request). The program stays a valid C program all
// the same: os_free(NULL) and os_realloc(NULL, n) are what a C program with
// that variable would run, so the commands do exactly that. Variable names
// are fixed when a command is generated and only ever increase, so after
// shrinking removes commands the program still names each result once and
// reads like C: `p3 = os_realloc(p1, 4096);`.
#include <gtest/gtest.h>
#include <rapidcheck.h>
// Needs gtest/gtest.h first: Debian's copy does not include it itself.
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "generators.hpp"
#include "harness.hpp"

namespace osmem::props {
namespace {

struct Var {
  unsigned id;
  std::size_t size;  // as requested (the block may be NULL at run time)
};

// What the program knows: used for generation and preconditions only.
struct Program {
  std::vector<Var> live;        // variables the program may still use
  std::vector<unsigned> freed;  // variables whose block it gave back
  unsigned next_id = 0;
  // FakeSource keeps at most kMaxScheduled scheduled failures per kind.
  unsigned sbrk_failures = 0;
  unsigned mmap_failures = 0;
  unsigned foreign_scheduled = 0;

  // A bool, not a pointer compared with nullptr: RapidCheck's RC_PRE prints
  // its operands, and printing a nullptr_t throws std::logic_error in this
  // version, which silently stops the shrinking that removes commands.
  bool is_live(unsigned id) const {
    return std::any_of(live.begin(), live.end(), [id](const Var& v) { return v.id == id; });
  }
  bool is_freed(unsigned id) const {
    return std::find(freed.begin(), freed.end(), id) != freed.end();
  }
  void release(unsigned id) {
    live.erase(std::find_if(live.begin(), live.end(), [id](const Var& v) { return v.id == id; }));
    freed.push_back(id);
  }
  void assign(unsigned id, std::size_t size) {
    live.push_back(Var{id, size});
    next_id = id + 1;
  }
};

// The system under test: the lockstep pair and what each variable holds.
struct Machine {
  Harness h;
  std::map<unsigned, std::byte*> vars;
  // Lockstep::realloc_freed takes an index into its list of freed heap
  // blocks; this mirrors that list (same pushes, same bound) so a command
  // can name the variable it means. Each use is cross-checked against the
  // transcript, so a mirror out of step fails loudly instead of testing the
  // wrong block.
  std::vector<std::byte*> freed_heap;

  model::Lockstep& ls() { return h.ls; }
  std::size_t index_of(const std::byte* p) {
    const auto& live = h.ls.live();
    for (std::size_t i = 0; i < live.size(); ++i) {
      if (live[i].ptr == p) return i;
    }
    RC_FAIL("test harness: a live variable's block is not in Lockstep::live()");
    return 0;
  }
  std::byte* result(long index) { return index < 0 ? nullptr : h.ls.live()[index].ptr; }
};

using Command = rc::state::Command<Program, Machine>;

std::string var(unsigned id) {
  return "p" + std::to_string(id);
}

// A fresh variable name: the next free one. When shrinking removes an
// earlier assignment, the precondition (id == next_id) fails and RapidCheck
// regenerates the command from its own random stream, so the shrunk program
// is numbered p0, p1, ... again.
unsigned fresh_id(const Program& s) {
  return s.next_id;
}

struct Malloc : Command {
  unsigned id = 0;
  std::size_t n = 0;
  explicit Malloc(const Program& s) : id(fresh_id(s)), n(*any_size()) {}
  void checkPreconditions(const Program& s) const override { RC_PRE(id == s.next_id); }
  void apply(Program& s) const override { s.assign(id, n); }
  void run(const Program&, Machine& m) const override {
    guarded([&] { m.vars[id] = m.result(m.ls().malloc(n)); });
  }
  void show(std::ostream& os) const override { os << var(id) << " = os_malloc(" << n << ");"; }
};

struct Calloc : Command {
  unsigned id = 0;
  std::size_t nmemb = 0, size = 0;
  explicit Calloc(const Program& s) : id(fresh_id(s)) {
    const int shape = *rc::gen::weightedElement<int>({{6, 0}, {2, 1}, {1, 2}, {1, 3}});
    switch (shape) {
      case 0:  // a small array of edge-sized elements
        nmemb = *rc::gen::inRange<std::size_t>(1, 5);
        size = *request_size();
        break;
      case 1:  // many small elements, around the page threshold
        size = *rc::gen::element<std::size_t>(1, 8, 16, 24, 40);
        nmemb = *around(4096 / size, 8);
        break;
      case 2:  // nmemb * size overflows: NULL, ENOMEM, no system call
        if (*rc::gen::arbitrary<bool>()) {
          // The product wraps to below a factor.
          size = *rc::gen::inRange<std::size_t>(2, 65);
          nmemb = SIZE_MAX / size + 1;
        } else {
          // (2^k + a)(2^k + b), k >= 33, wraps to 2^k (a + b) + ab: above
          // both factors, which a "product < factor" check misses.
          const auto k = *rc::gen::inRange<unsigned>(33, 49);
          nmemb = (std::size_t{1} << k) + *rc::gen::inRange<std::size_t>(1, 17);
          size = (std::size_t{1} << k) + *rc::gen::inRange<std::size_t>(1, 17);
        }
        break;
      default:  // a zero argument: NULL, no system call
        nmemb = *rc::gen::element<std::size_t>(0, 1, 4096);
        size = nmemb == 0 ? *request_size() : 0;
        break;
    }
  }
  void checkPreconditions(const Program& s) const override { RC_PRE(id == s.next_id); }
  void apply(Program& s) const override { s.assign(id, nmemb * size); }
  void run(const Program&, Machine& m) const override {
    guarded([&] { m.vars[id] = m.result(m.ls().calloc(nmemb, size)); });
  }
  void show(std::ostream& os) const override {
    os << var(id) << " = os_calloc(" << nmemb << ", " << size << ");";
  }
};

// realloc of a live variable: grow, shrink, to zero or anything.
struct Realloc : Command {
  unsigned id = 0, from = 0;
  std::size_t n = 0;
  explicit Realloc(const Program& s) {
    RC_PRE(!s.live.empty());
    const Var v = *rc::gen::elementOf(s.live);
    from = v.id;
    id = fresh_id(s);
    const std::size_t size = v.size > kMaxRequest ? 16 : v.size;
    const int kind = *rc::gen::weightedElement<int>({{4, 0}, {3, 1}, {1, 2}, {2, 3}});
    switch (kind) {
      case 0:  // grow
        n = size + *request_size() + 1;
        break;
      case 1:  // shrink, often by about a split remainder
        n = size <= 1
                ? 1
                : *rc::gen::oneOf(
                      rc::gen::inRange<std::size_t>(1, size),
                      rc::gen::map(rc::gen::inRange<std::size_t>(0, 96),
                                   [size](std::size_t d) { return d < size ? size - d : 1; }));
        break;
      case 2:  // to zero: frees, returns NULL
        n = 0;
        break;
      default:
        n = *any_size();
        break;
    }
  }
  void checkPreconditions(const Program& s) const override {
    RC_PRE(s.is_live(from));
    RC_PRE(id == s.next_id);
  }
  void apply(Program& s) const override {
    // Whatever the outcome the program stops using `from`: on success it is
    // stale, on failure it leaks (and Lockstep keeps checking it).
    s.release(from);
    s.assign(id, n);
  }
  void run(const Program&, Machine& m) const override {
    guarded([&] {
      std::byte* old = m.vars.at(from);
      if (old == nullptr) {
        m.vars[id] = m.result(m.ls().realloc_null(n));
        return;
      }
      const long index = m.ls().realloc(m.index_of(old), n);
      std::byte* p = m.result(index);
      // Lockstep remembers a heap block whose memory was released.
      if ((p != nullptr || n == 0) && p != old && m.ls().source().in_heap_buffer(old)) {
        m.freed_heap.push_back(old);
      }
      m.vars[id] = p;
    });
  }
  void show(std::ostream& os) const override {
    os << var(id) << " = os_realloc(" << var(from) << ", " << n << ");";
  }
};

struct ReallocNull : Command {
  unsigned id = 0;
  std::size_t n = 0;
  explicit ReallocNull(const Program& s) : id(fresh_id(s)), n(*any_size()) {}
  void checkPreconditions(const Program& s) const override { RC_PRE(id == s.next_id); }
  void apply(Program& s) const override { s.assign(id, n); }
  void run(const Program&, Machine& m) const override {
    guarded([&] { m.vars[id] = m.result(m.ls().realloc_null(n)); });
  }
  void show(std::ostream& os) const override {
    os << var(id) << " = os_realloc(NULL, " << n << ");";
  }
};

// realloc of a block the program already gave back. The contract makes
// this a harmless NULL while the block's FREE header still stands where it
// was; once the block merged into a lower neighbour or was handed out
// again, the call would be a genuine bad pointer (a fatal error by design),
// so the command then does not run, and says so.
struct ReallocFreed : Command {
  unsigned from = 0;
  std::size_t n = 0;
  explicit ReallocFreed(const Program& s) {
    RC_PRE(!s.freed.empty());
    from = *rc::gen::elementOf(s.freed);
    // Heap sizes, mapped sizes and sizes that overflow or cannot be mapped:
    // every path realloc could take before it sees the FREE header.
    n = *rc::gen::oneOf(small_heap_size(), request_size(), huge_size(),
                        rc::gen::inRange<std::size_t>(kMmapThreshold, 3 * kMmapThreshold));
    if (n == 0) n = 1;
  }
  void checkPreconditions(const Program& s) const override { RC_PRE(s.is_freed(from)); }
  void run(const Program&, Machine& m) const override {
    guarded([&] {
      std::byte* p = m.vars.at(from);
      if (p == nullptr) return;
      const auto it = std::find(m.freed_heap.rbegin(), m.freed_heap.rend(), p);
      if (it == m.freed_heap.rend()) return;  // mapped, or out of Lockstep's memory
      const auto pick = static_cast<std::size_t>(m.freed_heap.rend() - it - 1);
      if (!m.ls().realloc_freed(pick, n)) return;
      const model::Addr a =
          model::Addr::heap(static_cast<std::size_t>(p - m.ls().source().heap_base()));
      const std::string want = "os_realloc(" + model::to_string(a) + " ";
      const std::string& t = m.ls().transcript();
      const auto last = t.rfind('\n', t.size() - 2);
      const std::string line = t.substr(last == std::string::npos ? 0 : last + 1);
      if (line.rfind(want, 0) != 0) {
        RC_FAIL("test harness: realloc_freed ran on another block: " + line);
      }
    });
  }
  void show(std::ostream& os) const override {
    os << "os_realloc(" << var(from) << ", " << n << ");  // " << var(from)
       << " was freed: NULL (not run once its FREE header is gone)";
  }
};

struct Free : Command {
  unsigned from = 0;
  explicit Free(const Program& s) {
    RC_PRE(!s.live.empty());
    from = (*rc::gen::elementOf(s.live)).id;
  }
  void checkPreconditions(const Program& s) const override { RC_PRE(s.is_live(from)); }
  void apply(Program& s) const override { s.release(from); }
  void run(const Program&, Machine& m) const override {
    guarded([&] {
      std::byte* p = m.vars.at(from);
      if (p == nullptr) {
        // os_free(NULL): nothing happens, no system call.
        const std::size_t before = m.ls().source().call_count();
        m.ls().engine().free(nullptr);
        m.ls().model().free(model::Addr::null());
        RC_ASSERT(m.ls().source().call_count() == before);
        return;
      }
      m.ls().free(m.index_of(p));
      if (m.ls().source().in_heap_buffer(p)) {
        m.freed_heap.push_back(p);
        if (m.freed_heap.size() > 64) m.freed_heap.erase(m.freed_heap.begin());
      }
    });
  }
  void show(std::ostream& os) const override { os << "os_free(" << var(from) << ");"; }
};

struct FailNextSbrk : Command {
  explicit FailNextSbrk(const Program&) {}
  void checkPreconditions(const Program& s) const override {
    RC_PRE(s.sbrk_failures < FakeSource::kMaxScheduled);
  }
  void apply(Program& s) const override { ++s.sbrk_failures; }
  void run(const Program&, Machine& m) const override {
    guarded([&] { m.ls().fail_next_extend(); });
  }
  void show(std::ostream& os) const override { os << "/* the next sbrk fails */"; }
};

// The sbrk after the next fails: after a foreign sbrk, that is the call
// completing the new segment (rule 6d).
struct FailSecondNextSbrk : Command {
  explicit FailSecondNextSbrk(const Program&) {}
  void checkPreconditions(const Program& s) const override {
    RC_PRE(s.sbrk_failures < FakeSource::kMaxScheduled);
  }
  void apply(Program& s) const override { ++s.sbrk_failures; }
  void run(const Program&, Machine& m) const override {
    guarded([&] { m.ls().fail_extend_later(2); });
  }
  void show(std::ostream& os) const override { os << "/* the sbrk after the next fails */"; }
};

struct FailNextMmap : Command {
  explicit FailNextMmap(const Program&) {}
  void checkPreconditions(const Program& s) const override {
    RC_PRE(s.mmap_failures < FakeSource::kMaxScheduled);
  }
  void apply(Program& s) const override { ++s.mmap_failures; }
  void run(const Program&, Machine& m) const override {
    guarded([&] { m.ls().fail_next_map(); });
  }
  void show(std::ostream& os) const override { os << "/* the next mmap fails */"; }
};

struct ForeignSbrk : Command {
  std::size_t delta = 0;
  explicit ForeignSbrk(const Program&)
      : delta(*rc::gen::weightedOneOf<std::size_t>({
            {3, rc::gen::inRange<std::size_t>(1, 8)},  // leaves the break unaligned
            {1, rc::gen::element<std::size_t>(8, 32, 40, 4096)},
            {2, rc::gen::inRange<std::size_t>(1, 70000)},
        })) {}
  void run(const Program&, Machine& m) const override {
    guarded([&] { m.ls().foreign_extend(delta); });
  }
  void show(std::ostream& os) const override {
    os << "/* another component calls sbrk(" << delta << ") */";
  }
};

// Another component moves the break just before the engine's second sbrk
// from now: inside one operation, between a growth and its completing call.
struct ForeignSbrkBetweenCalls : Command {
  std::size_t delta = 0;
  explicit ForeignSbrkBetweenCalls(const Program&)
      : delta(*rc::gen::weightedOneOf<std::size_t>({
            {2, rc::gen::inRange<std::size_t>(1, 8)},
            {1, rc::gen::inRange<std::size_t>(1, 70000)},
        })) {}
  void checkPreconditions(const Program& s) const override {
    RC_PRE(s.foreign_scheduled < FakeSource::kMaxScheduled);
  }
  void apply(Program& s) const override { ++s.foreign_scheduled; }
  void run(const Program&, Machine& m) const override {
    guarded([&] { m.ls().foreign_extend_before_sbrk(2, delta); });
  }
  void show(std::ostream& os) const override {
    os << "/* another component calls sbrk(" << delta << ") just before the sbrk after the next */";
  }
};

// The mix: mostly allocation and release (so the heap fragments), with
// fault injection and foreign sbrk now and then. Listing a command twice
// doubles its weight.
auto commands() {
  return rc::state::gen::execOneOfWithArgs<Malloc, Malloc, Malloc, Malloc, Calloc, Realloc, Realloc,
                                           Realloc, ReallocNull, ReallocFreed, Free, Free, Free,
                                           Free, FailNextSbrk, FailNextMmap, ForeignSbrk,
                                           FailSecondNextSbrk, ForeignSbrkBetweenCalls>();
}

void run_program(double scale) {
  Machine m;
  const Program initial;
  const auto program = *rc::gen::scale(scale, rc::state::gen::commands(initial, commands()));
  rc::state::runAll(program, initial, m);
  // After the last command: every block the program leaked is still intact,
  // and releasing them all leaves a consistent heap.
  guarded([&] { m.ls().free_all(); });
}

RC_GTEST_PROP(LockstepProgram, MatchesTheModel, ()) {
  run_program(1.0);
}

// Longer programs: enough live blocks and holes for best fit, splitting and
// coalescing to work on a fragmented heap.
RC_GTEST_PROP(LockstepProgram, LongProgramsMatchTheModel, ()) {
  run_program(5.0);
}

}  // namespace
}  // namespace osmem::props
