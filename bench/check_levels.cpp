// What the debug check levels cost: ns per operation of each OSMEM_CHECK
// level (check_level.hpp) against the number of live blocks, side by side
// with the engine without debug checks ("release"), in one run.
//
// Each measurement runs in a child process of its own (fork), on a fresh
// engine over the real sbrk/mmap, driven the way the C API drives it:
// DebugChecks::before and after around every operation, with the debug
// records attached (so slack filling and checking are included). The
// stream: N live blocks of 8..512 bytes, then P random free+malloc pairs;
// the time of the pairs is divided by 2P operations. The lock the C API
// takes is left out of every row alike.
//
//   osmem_check_levels [--max-n N] [--pairs P] [--reps K] [--csv FILE]
//
// Rows are the median of K runs (default 3). `full` walks the whole heap
// twice per operation, so it runs only at N = 1,000; `every:1000` up to
// N = 100,000.
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

#include "check_level.hpp"
#include "debug_checks.hpp"
#include "heap.hpp"
#include "model/rng.hpp"
#include "os_source.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using osmem::model::Rng;
using ProcessHeap = osmem::Heap<osmem::OsSource>;

struct Level {
  const char* name;     // column title
  const char* setting;  // OSMEM_CHECK value, or null for no debug checks at all
  std::size_t max_n;
};

const Level kLevels[] = {
    {"release", nullptr, SIZE_MAX},       {"off", "off", SIZE_MAX},
    {"local", "local", SIZE_MAX},         {"sweep (K=4)", "sweep", SIZE_MAX},
    {"sweep:16", "sweep:16", SIZE_MAX},   {"sweep:64", "sweep:64", SIZE_MAX},
    {"every:1000", "every:1000", 100000}, {"full", "full", 1000},
};

// One run in this (child) process: ns per operation.
double run(const Level& level, std::size_t n, std::size_t pairs, std::uint64_t seed) {
  osmem::OsSource source;
  ProcessHeap heap(source, 0x5eed5eedULL);
  osmem::DebugChecks<ProcessHeap> checks;
  const bool debug = level.setting != nullptr;
  if (debug) {
    osmem::CheckLevel cl;
    if (!osmem::parse_check_level(level.setting, cl)) std::abort();
    checks.set_level(cl);
  }
  // As the API: the records only when a level is on.
  if (debug && checks.level().mode != osmem::CheckMode::Off) {
    constexpr std::size_t kArea = std::size_t{256} << 20;
    void* area = osmem::os_reserve(kArea);
    if (area == nullptr) std::abort();
    checks.attach_records(area, kArea);
    checks.watch_claims(heap);  // write after free: freed payloads verified on reuse
  }
  auto do_malloc = [&](std::size_t size) {
    if (debug) checks.before(heap, "os_malloc", osmem::OpKind::Allocate, nullptr, size, nullptr);
    void* p = heap.malloc(size);
    if (debug) checks.after(heap, p);
    return p;
  };
  auto do_free = [&](void* p) {
    if (debug) checks.before(heap, "os_free", osmem::OpKind::Free, p, 0, nullptr);
    heap.free(p);
    if (debug) checks.after(heap, nullptr);
  };
  Rng rng{seed};
  std::vector<void*> live(n);
  for (auto& p : live) p = do_malloc(8 + rng.below(505));
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < pairs; ++i) {
    const std::size_t k = rng.below(n);
    do_free(live[k]);
    live[k] = do_malloc(8 + rng.below(505));
  }
  const auto t1 = Clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / (2.0 * pairs);
}

// Runs `run` in a forked child and reads its result back through a pipe.
double in_child(const Level& level, std::size_t n, std::size_t pairs, std::uint64_t seed) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const double ns = run(level, n, pairs, seed);
    if (write(fds[1], &ns, sizeof ns) != static_cast<ssize_t>(sizeof ns)) _exit(1);
    _exit(0);
  }
  close(fds[1]);
  double ns = -1;
  if (read(fds[0], &ns, sizeof ns) != static_cast<ssize_t>(sizeof ns)) ns = -1;
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? ns : -1;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t max_n = 1000000, pairs = 200000, reps = 3;
  std::string csv;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--max-n" && i + 1 < argc) {
      max_n = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--pairs" && i + 1 < argc) {
      pairs = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--csv" && i + 1 < argc) {
      csv = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: osmem_check_levels [--max-n N] [--pairs P] [--reps K] [--csv FILE]\n");
      return 2;
    }
  }
  std::FILE* out = csv.empty() ? nullptr : std::fopen(csv.c_str(), "w");
  std::printf(
      "ns/op: N live blocks of 8..512 bytes, then %zu random free+malloc pairs "
      "(median of %zu runs; ratio to release in brackets)\n\n",
      pairs, reps);
  std::printf("| live blocks N |");
  for (const Level& l : kLevels) std::printf(" %s |", l.name);
  std::printf("\n|---:|");
  for (std::size_t i = 0; i < sizeof kLevels / sizeof kLevels[0]; ++i) std::printf("---:|");
  std::printf("\n");
  if (out != nullptr) {
    std::fprintf(out, "n");
    for (const Level& l : kLevels) std::fprintf(out, ",%s", l.name);
    std::fprintf(out, "\n");
  }
  for (std::size_t n = 1000; n <= max_n; n *= 10) {
    std::printf("| %zu |", n);
    if (out != nullptr) std::fprintf(out, "%zu", n);
    double release = 0;
    for (const Level& l : kLevels) {
      if (n > l.max_n) {
        std::printf(" - |");
        if (out != nullptr) std::fprintf(out, ",");
        continue;
      }
      std::vector<double> runs;
      for (std::size_t r = 0; r < reps; ++r) runs.push_back(in_child(l, n, pairs, 1234 + r));
      std::sort(runs.begin(), runs.end());
      const double ns = runs[runs.size() / 2];
      if (l.setting == nullptr) release = ns;
      if (l.setting == nullptr) {
        std::printf(" %.0f |", ns);
      } else {
        std::printf(" %.0f (%.1fx) |", ns, release > 0 ? ns / release : 0.0);
      }
      if (out != nullptr) std::fprintf(out, ",%.1f", ns);
      std::fflush(stdout);
    }
    std::printf("\n");
    if (out != nullptr) std::fprintf(out, "\n");
  }
  if (out != nullptr) std::fclose(out);
  return 0;
}
