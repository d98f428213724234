// osmem benchmarks: how the cost of an operation grows with the number of
// live blocks, and how osmem compares with the C library on the same streams.
//
// Every measurement runs in a child process of its own (fork), so each
// allocator starts from a fresh process heap and none of them moves the
// program break under another. The parent never allocates with os_*.
//
//   osmem_bench [--quick] [--csv FILE] [--max-n N] [--reps K]
//
// Scaling rows are the median of K runs (default 3) of each allocator.
//
// Tables go to stdout; --csv also writes the scaling rows as CSV (the input
// of docs/scaling.gnuplot).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "heap.hpp"
#include "model/model.hpp"
#include "model/rng.hpp"
#include "os_source.hpp"
#include "osmem/osmem.h"

namespace {

using Clock = std::chrono::steady_clock;

using osmem::model::Rng;

// ---- allocators under test ------------------------------------------------------

struct Glibc {
  void* malloc(std::size_t n) { return std::malloc(n); }
  void* calloc(std::size_t a, std::size_t b) { return std::calloc(a, b); }
  void* realloc(void* p, std::size_t n) { return std::realloc(p, n); }
  void free(void* p) { std::free(p); }
  bool stats(struct os_heap_stats*) { return false; }
};

struct Osmem {
  void* malloc(std::size_t n) { return os_malloc(n); }
  void* calloc(std::size_t a, std::size_t b) { return os_calloc(a, b); }
  void* realloc(void* p, std::size_t n) { return os_realloc(p, n); }
  void free(void* p) { os_free(p); }
  bool stats(struct os_heap_stats* out) { return os_heap_stats(out) == 0; }
};

// The seed's algorithm on real memory: the same engine with the linear
// best-fit scan instead of the index.
struct LinearConfig : osmem::DefaultConfig {
  using FreeIndex = osmem::LinearFreeIndex;
};
struct LinearEngine {
  osmem::OsSource source;
  osmem::Heap<osmem::OsSource, LinearConfig> heap{source, 0x5eed};
  void* malloc(std::size_t n) { return heap.malloc(n); }
  void* calloc(std::size_t a, std::size_t b) { return heap.calloc(a, b); }
  void* realloc(void* p, std::size_t n) { return heap.realloc(p, n); }
  void free(void* p) { heap.free(p); }
  bool stats(struct os_heap_stats*) { return false; }
};

// The reference model: plain vectors and a linear scan over simulated
// addresses (no memory is touched).
struct Model {
  osmem::model::Model model{osmem::FakeLimits{std::size_t{1} << 40, std::size_t{1} << 40, 1024}};
  std::vector<osmem::model::Addr> addrs;  // pointers handed out are indices + 1
  void* malloc(std::size_t n) {
    addrs.push_back(model.malloc(n));
    model.clear_calls();
    return reinterpret_cast<void*>(addrs.size());
  }
  void free(void* p) {
    model.free(addrs[reinterpret_cast<std::size_t>(p) - 1]);
    model.clear_calls();
  }
  bool stats(struct os_heap_stats*) { return false; }
};

template <class A>
constexpr bool kTouches = !std::is_same_v<A, Model>;

// ---- running in a child -----------------------------------------------------------

struct Result {
  double ns_per_op = 0;
  std::size_t ops = 0;
  double visits_mean = 0;  // per best-fit search
  std::size_t visits_max = 0;
  double index_mean = 0;  // per index operation (search, insert, remove)
  std::size_t index_max = 0;
  bool has_visits = false;
  bool ok = false;
};

template <class Fn>
Result in_child(Fn&& fn) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    Result r = fn();
    r.ok = true;
    if (write(fds[1], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) _exit(1);
    _exit(0);
  }
  close(fds[1]);
  Result r;
  if (read(fds[0], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) r = Result{};
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return r;
}

// The run with the median time of `reps` runs: one slow run (another
// process woke up) does not decide a row.
template <class Fn>
Result median_of(int reps, Fn&& fn) {
  std::vector<Result> runs;
  for (int i = 0; i < reps; ++i) runs.push_back(in_child(fn));
  std::sort(runs.begin(), runs.end(),
            [](const Result& a, const Result& b) { return a.ns_per_op < b.ns_per_op; });
  return runs[runs.size() / 2];
}

double ns_since(Clock::time_point t0, std::size_t ops) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() /
         static_cast<double>(ops);
}

// ---- 1. scaling: N live blocks, a steady stream of free+malloc pairs ------------

struct Stream {
  std::vector<std::uint32_t> initial;                          // sizes of the N live blocks
  std::vector<std::pair<std::uint32_t, std::uint32_t>> pairs;  // (victim, new size)
};

Stream make_stream(std::size_t n, std::size_t pairs, std::uint64_t seed) {
  Rng r{seed};
  Stream s;
  s.initial.reserve(n);
  for (std::size_t i = 0; i < n; ++i) s.initial.push_back(8 + r.below(4089));
  s.pairs.reserve(pairs);
  for (std::size_t i = 0; i < pairs; ++i) {
    s.pairs.emplace_back(r.below(n), 8 + r.below(4089));
  }
  return s;
}

template <class A>
Result run_scaling(const Stream& s, std::size_t pairs) {
  A a;
  std::vector<void*> live(s.initial.size());
  for (std::size_t i = 0; i < live.size(); ++i) {
    live[i] = a.malloc(s.initial[i]);
    if constexpr (kTouches<A>) *static_cast<char*>(live[i]) = 1;
  }
  struct os_heap_stats before = {}, after = {};
  Result r;
  r.has_visits = a.stats(&before);  // count only the steady stream's work
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < pairs; ++i) {
    auto [victim, size] = s.pairs[i];
    a.free(live[victim]);
    live[victim] = a.malloc(size);
    if constexpr (kTouches<A>) *static_cast<char*>(live[victim]) = 1;
  }
  r.ns_per_op = ns_since(t0, 2 * pairs);
  r.ops = 2 * pairs;
  if (r.has_visits) {
    a.stats(&after);
    const std::size_t searches = after.searches - before.searches;
    const std::size_t walks = after.index_operations - before.index_operations;
    r.visits_mean =
        searches == 0 ? 0 : double(after.search_visits - before.search_visits) / double(searches);
    r.visits_max = after.search_visits_max;
    r.index_mean =
        walks == 0 ? 0 : double(after.index_visits - before.index_visits) / double(walks);
    r.index_max = after.index_visits_max;
  }
  return r;
}

// ---- 2. a mixed stream through malloc/calloc/realloc/free -----------------------

template <class A>
Result run_mixed(std::size_t live_target, std::size_t ops, std::uint64_t seed) {
  A a;
  Rng r{seed};
  std::vector<std::pair<void*, std::size_t>> live;
  live.reserve(live_target * 2);
  auto size = [&] {
    const std::uint32_t k = r.below(100);
    return k < 80 ? 1 + r.below(256) : k < 98 ? 1 + r.below(8192) : 1 + r.below(300000);
  };
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < ops; ++i) {
    const std::uint32_t k = r.below(10);
    if (live.empty() || (k < 4 && live.size() < 2 * live_target)) {
      std::size_t n = size();
      void* p = a.malloc(n);
      std::memset(p, 1, n < 64 ? n : 64);
      live.emplace_back(p, n);
    } else if (k < 5) {
      std::size_t n = size();
      live.emplace_back(a.calloc(1, n), n);
    } else if (k < 7) {
      auto& [p, n] = live[r.below(live.size())];
      n = size();
      p = a.realloc(p, n);
      static_cast<char*>(p)[n - 1] = 1;
    } else {
      const std::size_t v = r.below(live.size());
      a.free(live[v].first);
      live[v] = live.back();
      live.pop_back();
    }
  }
  Result res;
  res.ns_per_op = ns_since(t0, ops);
  res.ops = ops;
  for (auto& [p, n] : live) a.free(p);
  return res;
}

// ---- 3a. realloc growth: buffers grown in small steps up to 100 KiB --------------

template <class A>
Result run_realloc_growth(std::size_t buffers, std::uint64_t seed) {
  A a;
  Rng r{seed};
  std::vector<std::pair<void*, std::size_t>> buf(buffers, {nullptr, 0});
  std::vector<void*> others;
  std::size_t ops = 0;
  const auto t0 = Clock::now();
  bool growing = true;
  while (growing) {
    growing = false;
    for (auto& [p, n] : buf) {
      if (n >= 100 * 1024) continue;
      growing = true;
      n += 16 + r.below(240);
      if (n > 100 * 1024) n = 100 * 1024;
      p = a.realloc(p, n);
      static_cast<char*>(p)[n - 1] = 1;
      ++ops;
      if (r.below(4) == 0) {  // interleaved small allocations, some freed at once
        others.push_back(a.malloc(16 + r.below(200)));
        ++ops;
        if (r.below(2) == 0) {
          a.free(others.back());
          others.pop_back();
          ++ops;
        }
      }
    }
  }
  Result res;
  res.ns_per_op = ns_since(t0, ops);
  res.ops = ops;
  for (auto& [p, n] : buf) a.free(p);
  for (void* p : others) a.free(p);
  return res;
}

// ---- 3b. calloc ---------------------------------------------------------------------

template <class A>
Result run_calloc(std::size_t live_target, std::size_t ops, std::uint64_t seed) {
  A a;
  Rng r{seed};
  std::vector<void*> live(live_target, nullptr);
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < ops; ++i) {
    void*& slot = live[r.below(live_target)];
    a.free(slot);
    const std::size_t n = r.below(8) == 0 ? 1 + r.below(16384) : 1 + r.below(512);
    slot = a.calloc(1, n);
  }
  Result res;
  res.ns_per_op = ns_since(t0, 2 * ops);
  res.ops = 2 * ops;
  for (void* p : live) a.free(p);
  return res;
}

std::string fmt(double v, int prec = 1) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  const char* csv_path = nullptr;
  std::size_t max_n = 1000000;
  int reps = 3;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strcmp(argv[i], "--csv") == 0 && i + 1 < argc) csv_path = argv[++i];
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::atoi(argv[++i]);
    if (std::strcmp(argv[i], "--max-n") == 0 && i + 1 < argc)
      max_n = std::strtoull(argv[++i], nullptr, 10);
  }
  if (quick) {
    max_n = std::min<std::size_t>(max_n, 10000);
    reps = 1;
  }
  const std::size_t pairs = quick ? 20000 : 500000;
  // The linear algorithms cost O(N) per operation: give them a budget.
  const double linear_budget = quick ? 2e7 : 2e9;

  std::printf("1. Scaling: N live blocks of 8..4096 bytes, then %zu random free+malloc pairs\n",
              pairs);
  std::printf(
      "   (ns per operation; x = slowdown against N = 1000; search = blocks a best-fit\n"
      "   search inspects, mean and max; index = blocks any index operation (search,\n"
      "   insert, remove) inspects; linear = the same engine with the seed's list scan;\n"
      "   model = the reference model; speedup = model ns / osmem ns)\n\n");
  std::printf("%9s | %9s %6s | %9s %6s | %6s %4s | %6s %4s | %10s | %10s %8s\n", "N", "osmem", "x",
              "glibc", "x", "search", "max", "index", "max", "linear", "model", "speedup");
  FILE* csv = csv_path != nullptr ? std::fopen(csv_path, "w") : nullptr;
  if (csv != nullptr) {
    std::fprintf(
        csv,
        "n,osmem_ns,glibc_ns,visits_mean,visits_max,linear_ns,model_ns,index_mean,index_max\n");
  }
  double osmem_base = 0, glibc_base = 0;
  for (std::size_t n = 1000; n <= max_n; n *= 10) {
    const Stream s = make_stream(n, pairs, n);
    const Result o = median_of(reps, [&] { return run_scaling<Osmem>(s, pairs); });
    const Result g = median_of(reps, [&] { return run_scaling<Glibc>(s, pairs); });
    // Filling the heap alone costs them about N^2/2 block visits.
    const double fill = double(n) * double(n) / 2;
    const std::size_t linear_pairs =
        fill >= linear_budget
            ? 0
            : std::min<std::size_t>(pairs,
                                    static_cast<std::size_t>((linear_budget - fill) / double(n)));
    Result l, m;
    if (linear_pairs >= 400) {
      l = in_child([&] { return run_scaling<LinearEngine>(s, linear_pairs); });
      m = in_child([&] { return run_scaling<Model>(s, linear_pairs / 4); });
    }
    if (n == 1000) {
      osmem_base = o.ns_per_op;
      glibc_base = g.ns_per_op;
    }
    std::printf("%9zu | %9s %6s | %9s %6s | %6s %4zu | %6s %4zu | %10s | %10s %8s\n", n,
                fmt(o.ns_per_op).c_str(), fmt(o.ns_per_op / osmem_base, 2).c_str(),
                fmt(g.ns_per_op).c_str(), fmt(g.ns_per_op / glibc_base, 2).c_str(),
                fmt(o.visits_mean, 2).c_str(), o.visits_max, fmt(o.index_mean, 2).c_str(),
                o.index_max, l.ok ? fmt(l.ns_per_op).c_str() : "-",
                m.ok ? fmt(m.ns_per_op).c_str() : "-",
                m.ok ? (fmt(m.ns_per_op / o.ns_per_op, 0) + "x").c_str() : "-");
    std::fflush(stdout);
    if (csv != nullptr) {
      std::fprintf(csv, "%zu,%.2f,%.2f,%.2f,%zu,%s,%s,%.2f,%zu\n", n, o.ns_per_op, g.ns_per_op,
                   o.visits_mean, o.visits_max, l.ok ? fmt(l.ns_per_op, 2).c_str() : "",
                   m.ok ? fmt(m.ns_per_op, 2).c_str() : "", o.index_mean, o.index_max);
    }
  }
  if (csv != nullptr) std::fclose(csv);

  std::printf(
      "\n2-3. Workloads, osmem against glibc (ns per operation; ratio = osmem / glibc)\n\n");
  std::printf("%-44s | %9s | %9s | %6s\n", "workload", "osmem", "glibc", "ratio");
  auto row = [](const char* name, const Result& o, const Result& g) {
    std::printf("%-44s | %9s | %9s | %6s\n", name, fmt(o.ns_per_op).c_str(),
                fmt(g.ns_per_op).c_str(), fmt(o.ns_per_op / g.ns_per_op, 2).c_str());
  };
  const std::size_t mixed_ops = quick ? 50000 : 2000000;
  row("mixed malloc/calloc/realloc/free, 10k live",
      median_of(reps, [&] { return run_mixed<Osmem>(10000, mixed_ops, 7); }),
      median_of(reps, [&] { return run_mixed<Glibc>(10000, mixed_ops, 7); }));
  const std::size_t buffers = quick ? 16 : 256;
  row("realloc growth to 100 KiB, interleaved",
      median_of(reps, [&] { return run_realloc_growth<Osmem>(buffers, 8); }),
      median_of(reps, [&] { return run_realloc_growth<Glibc>(buffers, 8); }));
  const std::size_t calloc_ops = quick ? 50000 : 1000000;
  row("calloc + free, 10k live", in_child([&] { return run_calloc<Osmem>(10000, calloc_ops, 9); }),
      in_child([&] { return run_calloc<Glibc>(10000, calloc_ops, 9); }));
  return 0;
}
