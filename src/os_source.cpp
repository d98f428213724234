#include "os_source.hpp"

#include <pthread.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace osmem {

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
