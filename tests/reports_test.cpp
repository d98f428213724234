// The full text of the report for each kind of error, through the real API.
//
// Each case runs in a forked child that has made no os_* call before (this
// process never makes one), so its operations are numbered from 1 and the
// level comes from OSMEM_CHECK as set just before the fork. The child sends
// the addresses it got back over a pipe, then makes its mistake; the parent
// builds the report it expects from those addresses and compares it with
// what the child wrote to stderr, every byte of it (a memory tool may add a
// stack after the report, so with a tool the report must be the prefix).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <regex>
#include <string>

#include "osmem/osmem.h"
#include "sanitizer.hpp"

namespace osmem {
namespace {

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif

int g_addresses_fd = -1;

// Drops a result os_malloc declares must not be ignored: the call is made
// for its fatal error.
void discard(void* /*block*/) {}

// In the child: tells the parent an address.
void send(const char* name, const void* p) {
  char line[96];
  const int n = snprintf(line, sizeof line, "%s %lx\n", name, reinterpret_cast<unsigned long>(p));
  if (n > 0) (void)!write(g_addresses_fd, line, static_cast<std::size_t>(n));
}

// Plays a bug that no memory tool sees, so osmem's own checks answer.
template <class F>
void unseen(void* p, std::size_t n, F write) {
  const tool::Reveal open(p, n);
  write();
}

std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    s.append(buf, static_cast<std::size_t>(n));
  }
  return s;
}

struct Outcome {
  bool aborted = false;
  std::string err;
  std::map<std::string, std::uintptr_t> at;
};

template <class F>
Outcome run_child(const char* level, F body) {
  EXPECT_EQ(setenv("OSMEM_CHECK", level, 1), 0);
  int err[2], addresses[2];
  EXPECT_EQ(pipe(err), 0);
  EXPECT_EQ(pipe(addresses), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(err[0]);
    close(addresses[0]);
    dup2(err[1], 2);
    g_addresses_fd = addresses[1];
    body();
    _exit(0);
  }
  close(err[1]);
  close(addresses[1]);
  Outcome out;
  const std::string sent = read_all(addresses[0]);
  out.err = read_all(err[0]);
  close(err[0]);
  close(addresses[0]);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  out.aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
  std::size_t pos = 0;
  while (pos < sent.size()) {
    const std::size_t end = sent.find('\n', pos);
    const std::string line = sent.substr(pos, end - pos);
    const std::size_t space = line.find(' ');
    out.at[line.substr(0, space)] = std::stoul(line.substr(space + 1), nullptr, 16);
    pos = end + 1;
  }
  return out;
}

std::string hex(std::uintptr_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(v));
  return buf;
}

// The lines of a report that keep(line) accepts, empty lines dropped.
template <class Keep>
std::string lines_kept(const std::string& err, Keep keep) {
  std::string out;
  std::size_t pos = 0;
  while (pos < err.size()) {
    std::size_t end = err.find('\n', pos);
    if (end == std::string::npos) end = err.size();
    const std::string line = err.substr(pos, end - pos);
    if (!line.empty() && keep(line)) out += line + "\n";
    pos = end + 1;
  }
  return out;
}

// The report without the call stack a sanitizer runtime appends to it
// (tool::print_stack: frames "    #N ..." and a blank line after them).
std::string without_stack(const std::string& err) {
  return lines_kept(err, [](const std::string& line) { return line.rfind("    #", 0) != 0; });
}

// The report without its "  history..." lines, which appear only when the
// debug records exist (a check level on); the History tests check them.
std::string without_history(const std::string& err) {
  return lines_kept(err, [](const std::string& line) { return line.rfind("  history", 0) != 0; });
}

void expect_report(const Outcome& o, const std::string& want) {
  EXPECT_TRUE(o.aborted) << o.err;
  const std::string got = without_history(without_stack(o.err));
  if (tool::kEnabled && tool::active()) {
    EXPECT_EQ(got.substr(0, want.size()), want);
  } else {
    EXPECT_EQ(got, want);
  }
}

constexpr char kCorrupted[] =
    "header canary mismatch: the header was overwritten, or the pointer is not the start of a "
    "block";

// A one-byte overflow from a into b's header, then free(b): the engine stops
// at b's canary; the report names b, shows its header as damaged, and
// blames a.
TEST(Report, OverflowIntoTheNextHeader) {
  const Outcome o = run_child("off", [] {
    auto* a = static_cast<unsigned char*>(os_malloc(24));
    void* b = os_malloc(24);
    void* c = os_malloc(24);
    send("a", a);
    send("b", b);
    send("c", c);
    unseen(a + 24, 1, [&] { a[24] ^= 0x01; });
    os_free(b);
  });
  const std::uintptr_t a = o.at.at("a"), b = o.at.at("b"), c = o.at.at("c");
  expect_report(o,
                "osmem: header corrupted in os_free at " + hex(b) + ": " + kCorrupted + "\n" +
                    "  operation 4, user pointer " + hex(b) + ", header " + hex(b - 32) + "\n" +
                    "  broken rule: header canary mismatch\n" + "  header " + hex(b - 32) +
                    " is damaged (its canary does not match); as read, not to be trusted: "
                    "size 25, status alloc, prev " +
                    hex(a - 32) + ", next " + hex(c - 32) + "\n" +
                    "  likely cause: the block before it, user pointer " + hex(a) + " (header " +
                    hex(a - 32) +
                    ", size 24), ends right before this header: an overflow from it is likely\n");
}

// The same overflow, then free(a) with OSMEM_CHECK=local: the check on
// entry reads b's header before the engine does, and reports it once.
TEST(Report, OverflowFoundByTheLocalCheck) {
  const Outcome o = run_child("local", [] {
    auto* a = static_cast<unsigned char*>(os_malloc(24));
    void* b = os_malloc(24);
    void* c = os_malloc(24);
    send("a", a);
    send("b", b);
    send("c", c);
    unseen(a + 24, 1, [&] { a[24] ^= 0x01; });
    os_free(a);
  });
  const std::uintptr_t a = o.at.at("a"), b = o.at.at("b"), c = o.at.at("c");
  expect_report(
      o,
      "osmem: heap inconsistent on entry to os_free (operation 4): header canary mismatch at "
      "block " +
          hex(b - 32) + " (user pointer " + hex(b) + ")\n" + "    " + hex(a - 32) +
          " size 24 alloc prev 0x0 next " + hex(b - 32) + "\n" + "  > " + hex(b - 32) +
          " size 25 alloc prev " + hex(a - 32) + " next " + hex(c - 32) +
          " (damaged: canary mismatch, values as read)\n" + "    " + hex(c - 32) +
          " size 24 alloc prev " + hex(b - 32) + " next " + hex(c + 24) + "\n" +
          "  likely cause: the block before it, user pointer " + hex(a) + " (header " +
          hex(a - 32) +
          ", size 24), ends right before this header: an overflow from it is likely\n" +
          "osmem: heap inconsistent in os_free at 0x0: the heap checker found a broken "
          "invariant\n" +
          "  operation 4\n" + "  broken rule: the heap checker's invariants (named above)\n");
}

// An overflow from a into the FREE b's header, then a malloc of b's size:
// the best-fit search reaches b first. It stops at b's canary and reports
// it like free does: header corrupted at b's user pointer, b's values as
// damaged, a to blame (not "heap inconsistent" at b's header, which left
// the report with nothing to name).
TEST(Report, OverflowIntoAFreeHeaderFoundBySearch) {
  const Outcome o = run_child("off", [] {
    auto* a = static_cast<unsigned char*>(os_malloc(24));
    void* b = os_malloc(24);
    void* c = os_malloc(24);
    send("a", a);
    send("b", b);
    send("c", c);
    os_free(b);
    unseen(a + 24, 1, [&] { a[24] ^= 0x01; });
    discard(os_malloc(24));
  });
  const std::uintptr_t a = o.at.at("a"), b = o.at.at("b"), c = o.at.at("c");
  expect_report(o,
                "osmem: header corrupted in os_malloc at " + hex(b) + ": " + kCorrupted + "\n" +
                    "  operation 5, user pointer " + hex(b) + ", header " + hex(b - 32) + "\n" +
                    "  broken rule: header canary mismatch\n" + "  header " + hex(b - 32) +
                    " is damaged (its canary does not match); as read, not to be trusted: "
                    "size 25, status free, prev " +
                    hex(a - 32) + ", next " + hex(c - 32) + "\n" +
                    "  likely cause: the block before it, user pointer " + hex(a) + " (header " +
                    hex(a - 32) +
                    ", size 24), ends right before this header: an overflow from it is likely\n");
}

TEST(Report, DoubleFree) {
  const Outcome o = run_child("off", [] {
    void* a = os_malloc(24);
    void* b = os_malloc(24);
    send("a", a);
    send("b", b);
    os_free(a);
    os_free(a);
  });
  const std::uintptr_t a = o.at.at("a");
  expect_report(o, "osmem: double free in os_free at " + hex(a) +
                       ": the block is already free\n"
                       "  operation 4, user pointer " +
                       hex(a) + ", header " + hex(a - 32) +
                       "\n"
                       "  broken rule: a block is freed once\n"
                       "  the block, user pointer " +
                       hex(a) + " (header " + hex(a - 32) + ", size 24), is free already\n");
}

TEST(Report, DoubleFreeOfABlockThatMergedSince) {
  const Outcome o = run_child("off", [] {
    void* a = os_malloc(24);
    void* b = os_malloc(24);
    void* c = os_malloc(24);
    send("a", a);
    send("b", b);
    send("c", c);
    os_free(a);
    os_free(b);  // merges into a
    os_free(b);
  });
  const std::uintptr_t a = o.at.at("a"), b = o.at.at("b");
  expect_report(o, "osmem: double free in os_free at " + hex(b) +
                       ": the block is already free\n"
                       "  operation 6, user pointer " +
                       hex(b) + ", header " + hex(b - 32) +
                       "\n"
                       "  broken rule: a block is freed once\n"
                       "  the block was freed and has since merged into the free block at user "
                       "pointer " +
                       hex(a) + " (header " + hex(a - 32) + ", size 80)\n");
}

TEST(Report, InteriorPointer) {
  const Outcome o = run_child("off", [] {
    auto* a = static_cast<char*>(os_malloc(64));
    send("a", a);
    os_free(a + 8);
  });
  const std::uintptr_t a = o.at.at("a");
  expect_report(o, "osmem: header corrupted in os_free at " + hex(a + 8) + ": " + kCorrupted +
                       "\n  operation 2, user pointer " + hex(a + 8) + ", header " +
                       hex(a + 8 - 32) +
                       "\n"
                       "  broken rule: a pointer handed back is one osmem handed out\n"
                       "  likely cause: an interior pointer, 8 bytes into the alloc block at "
                       "user pointer " +
                       hex(a) + " (header " + hex(a - 32) + ", size 64)\n");
}

TEST(Report, InteriorPointerOfAMapping) {
  const Outcome o = run_child("off", [] {
    auto* m = static_cast<char*>(os_malloc(200000));
    send("m", m);
    os_free(m + 4096);
  });
  const std::uintptr_t m = o.at.at("m");
  expect_report(o, "osmem: invalid pointer in os_free at " + hex(m + 4096) +
                       ": not a block of this heap (a wild pointer, or a large block already "
                       "freed)\n  operation 2, user pointer " +
                       hex(m + 4096) + ", header " + hex(m + 4096 - 32) +
                       "\n"
                       "  broken rule: a pointer handed back is one osmem handed out\n"
                       "  likely cause: an interior pointer, 4096 bytes into the mapped block at "
                       "user pointer " +
                       hex(m) + " (header " + hex(m - 32) + ", size 200000)\n");
}

// Two damaged headers: b's on the heap list (an overflow from a), and a
// mapping's, which free reaches. The mapping lies outside the heap, so the
// heap list's damage is not its cause: the report names the mapping alone.
TEST(Report, DamagedMappingWhileTheHeapListIsDamagedToo) {
  const Outcome o = run_child("off", [] {
    auto* a = static_cast<unsigned char*>(os_malloc(24));
    ASSERT_NE(os_malloc(24), nullptr);
    auto* m = static_cast<unsigned char*>(os_malloc(200000));
    send("m", m);
    unseen(a + 24, 1, [&] { a[24] ^= 0x01; });
    unseen(m - 32, 32, [&] { m[-32 + 12] ^= 0x01; });
    os_free(m);
  });
  const std::uintptr_t m = o.at.at("m");
  expect_report(o, "osmem: header corrupted in os_free at " + hex(m) + ": " + kCorrupted +
                       "\n  operation 4, user pointer " + hex(m) + ", header " + hex(m - 32) +
                       "\n"
                       "  broken rule: header canary mismatch\n"
                       "  likely cause: a write before the start of this mapped block, or a "
                       "stray write\n");
}

TEST(Report, MisalignedInteriorPointer) {
  const Outcome o = run_child("off", [] {
    auto* a = static_cast<char*>(os_malloc(64));
    send("a", a);
    os_free(a + 4);
  });
  const std::uintptr_t a = o.at.at("a");
  expect_report(o, "osmem: misaligned pointer in os_free at " + hex(a + 4) +
                       ": not 8-byte aligned, so not a block of this heap\n"
                       "  operation 2, user pointer " +
                       hex(a + 4) +
                       "\n"
                       "  broken rule: a pointer handed back is one osmem handed out\n"
                       "  likely cause: an interior pointer, 4 bytes into the alloc block at "
                       "user pointer " +
                       hex(a) + " (header " + hex(a - 32) + ", size 64)\n");
}

alignas(16) char g_outside[256];

TEST(Report, WildPointer) {
  const Outcome o = run_child("off", [] {
    void* a = os_malloc(64);
    send("a", a);
    send("w", g_outside + 64);
    os_free(g_outside + 64);
  });
  const std::uintptr_t w = o.at.at("w");
  expect_report(o, "osmem: invalid pointer in os_free at " + hex(w) +
                       ": not a block of this heap (a wild pointer, or a large block already "
                       "freed)\n  operation 2, user pointer " +
                       hex(w) + ", header " + hex(w - 32) +
                       "\n"
                       "  broken rule: a pointer handed back is one osmem handed out\n"
                       "  likely cause: not inside any block of this heap or mapping: a wild "
                       "pointer, or a mapped block freed already\n");
}

// With a check level on, the records give a block's history: for a double
// free, who allocated and who freed it; for a damaged header, who
// allocated the block before it (the likely culprit).
TEST(History, DoubleFreeNamesWhoAllocatedAndFreed) {
  const Outcome o = run_child("local", [] {
    void* a = os_malloc(40);
    void* b = os_malloc(24);
    send("a", a);
    send("b", b);
    os_free(a);
    os_free(a);
  });
  EXPECT_TRUE(o.aborted);
  const std::string got = without_stack(o.err);
  EXPECT_NE(got.find("osmem: double free in os_free at " + hex(o.at.at("a"))), std::string::npos)
      << got;
  EXPECT_TRUE(std::regex_search(
      got, std::regex("\n  history: 40 bytes requested by operation 1 \\(called from 0x[0-9a-f]+: "
                      "[^)]*\\), freed by operation 3 \\(called from 0x[0-9a-f]+: [^)]*\\)\n")))
      << got;
}

TEST(History, DamagedHeaderNamesWhoAllocatedTheBlockBefore) {
  const Outcome o = run_child("local", [] {
    auto* a = static_cast<unsigned char*>(os_malloc(24));
    void* b = os_malloc(40);
    void* c = os_malloc(24);
    send("a", a);
    send("b", b);
    send("c", c);
    unseen(a + 24, 1, [&] { a[24] ^= 0x01; });
    os_free(b);
  });
  EXPECT_TRUE(o.aborted);
  const std::string got = without_stack(o.err);
  EXPECT_TRUE(std::regex_search(got, std::regex("\n  history of the block before it: 24 bytes "
                                                "requested by operation 1 \\(called from "
                                                "0x[0-9a-f]+: [^)]*\\), not freed\n")))
      << got;
}

TEST(History, InteriorPointerNamesWhoAllocatedTheBlock) {
  const Outcome o = run_child("local", [] {
    auto* a = static_cast<char*>(os_malloc(64));
    send("a", a);
    os_free(a + 8);
  });
  EXPECT_TRUE(o.aborted);
  const std::string got = without_stack(o.err);
  EXPECT_TRUE(std::regex_search(got, std::regex("\n  history of the block it points into: 64 "
                                                "bytes requested by operation 1 \\(called from "
                                                "0x[0-9a-f]+: [^)]*\\), not freed\n")))
      << got;
}

TEST(ErrorName, NamesEveryKind) {
  EXPECT_STREQ(os_error_name(OS_ERROR_DOUBLE_FREE), "double free");
  EXPECT_STREQ(os_error_name(OS_ERROR_INVALID_POINTER), "invalid pointer");
  EXPECT_STREQ(os_error_name(OS_ERROR_MISALIGNED_POINTER), "misaligned pointer");
  EXPECT_STREQ(os_error_name(OS_ERROR_HEADER_CORRUPTED), "header corrupted");
  EXPECT_STREQ(os_error_name(OS_ERROR_HEAP_INCONSISTENT), "heap inconsistent");
  EXPECT_STREQ(os_error_name(OS_ERROR_FOREIGN_BREAK), "foreign break");
  EXPECT_STREQ(os_error_name(OS_ERROR_USE_AFTER_FREE), "use after free");
  EXPECT_STREQ(os_error_name(OS_ERROR_WRITE_AFTER_FREE), "write after free");
  EXPECT_STREQ(os_error_name(0), "unknown error");
  EXPECT_STREQ(os_error_name(99), "unknown error");
  EXPECT_STREQ(os_error_name(-1), "unknown error");
}

}  // namespace
}  // namespace osmem
