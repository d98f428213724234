#include "os_source.hpp"

#include <pthread.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sanitizer.hpp"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define OSMEM_CAN_ASK_VALGRIND 1
#endif

namespace osmem {

namespace {

// The metadata area (metadata.hpp, contract rule 14): reserved once, before
// any os_* call can run, so that no call ever maps memory for records. 16
// GiB of address space holds 715,827,882 records of 24 bytes, enough for a
// heap of 26.6 GiB; it costs memory only where records are touched. Where
// the system (an address-space limit, strict overcommit, a memory tool)
// refuses that much, each smaller power of two down to kMinReserve is
// tried, and the heap limit shrinks with it.
//
// Under Valgrind the area is 64 MiB (2,796,202 records, a heap of 111 MB):
// memcheck's leak check reads every readable mapping, which for a larger
// area takes seconds per 256 MiB. A build with Valgrind hooks also marks the
// untouched records no access, so that the scan skips them entirely.
// MemorySanitizer writes the shadow of every new mapping, so there a 16 GiB
// reservation costs seconds at every process start: the same 64 MiB.
constexpr std::size_t kMetadataReserve = std::size_t{16} << 30;
constexpr std::size_t kValgrindReserve = std::size_t{64} << 20;
constexpr std::size_t kMinReserve = std::size_t{16} << 20;

bool under_valgrind() {
#if defined(OSMEM_CAN_ASK_VALGRIND)
  return RUNNING_ON_VALGRIND != 0;
#else
  return false;
#endif
}

// Constant-initialised (no guard, no constructor order): empty until the
// load-time reservation below has run.
MetadataArea g_metadata = {};

void reserve_metadata() {
  if (g_metadata.base != nullptr) return;
#if defined(OSMEM_UNDER_MSAN)
  constexpr bool kSmallReserve = true;
#else
  constexpr bool kSmallReserve = false;
#endif
  const std::size_t first =
      kSmallReserve || under_valgrind() ? kValgrindReserve : kMetadataReserve;
  for (std::size_t len = first; len >= kMinReserve && g_metadata.base == nullptr; len /= 2) {
    if (void* p = os_reserve(len)) g_metadata = MetadataArea{p, len};
  }
  tool::unused_metadata(g_metadata.base, g_metadata.bytes);
}

// Priority 101: before the constructors of the program and of the
// libraries loaded after this one, which may call os_* functions.
__attribute__((constructor(101))) void reserve_metadata_at_load() {
  reserve_metadata();
}

}  // namespace

void* os_reserve(std::size_t len) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// A call that runs before the constructor above (libosmem-malloc serves
// libc's start-up, before any constructor) reserves the area itself: mmap
// allocates nothing. The engine asks under its lock.
MetadataArea OsSource::metadata_area() {
  reserve_metadata();
  return g_metadata;
}

// The kernel passes the page size in the auxiliary vector: reading it costs
// no system call, and needs no function-local static (whose thread-safe
// initialisation would pull in the C++ runtime's __cxa_guard_*).
std::size_t OsSource::page_size() {
  return static_cast<std::size_t>(getauxval(AT_PAGESZ));
}

void* OsSource::extend(std::intptr_t delta) {
  void* old = sbrk(delta);
  return old == reinterpret_cast<void*>(-1) ? nullptr : old;
}

void* OsSource::map(std::size_t len) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void* OsSource::remap(void* p, std::size_t old_len, std::size_t new_len) {
  void* q = mremap(p, old_len, new_len, MREMAP_MAYMOVE);
  return q == MAP_FAILED ? nullptr : q;
}

bool OsSource::unmap(void* p, std::size_t len) {
  return munmap(p, len) == 0;
}

void os_write_all(int fd, const char* buf, std::size_t len) {
  int saved = errno;  // diagnostics must not disturb the caller's errno
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf += n;
    len -= static_cast<std::size_t>(n);
  }
  errno = saved;
}

std::uint64_t os_random_cookie() {
  std::uint64_t cookie = 0x6a09e667f3bcc909ULL;
  if (const auto* bytes = reinterpret_cast<const unsigned char*>(getauxval(AT_RANDOM))) {
    std::memcpy(&cookie, bytes, sizeof cookie);
  }
  return cookie;
}

void os_register_fork_handlers(void (*prepare)(), void (*parent)(), void (*child)()) {
  pthread_atfork(prepare, parent, child);
}

}  // namespace osmem
