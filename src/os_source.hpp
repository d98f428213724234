// The real memory source, and the few other services only the OS provides.
// os_source.cpp is the only file that includes Linux headers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "metadata.hpp"

namespace osmem {

struct OsSource {
  std::size_t page_size();
  void* extend(std::intptr_t delta);
  void* map(std::size_t len);
  bool unmap(void* p, std::size_t len);
  void* remap(void* p, std::size_t old_len, std::size_t new_len);
  // The area reserved when the library was loaded, or by this call when
  // that has not happened yet; empty if the system refused every size.
  MetadataArea metadata_area();
};

// mmap(NULL, len, RW, PRIVATE|ANONYMOUS|NORESERVE): address space that
// costs memory only where it is touched. Null on failure.
void* os_reserve(std::size_t len);

// Writes all of buf to fd, retrying on short writes; no heap use.
void os_write_all(int fd, const char* buf, std::size_t len);

// 64 bits the kernel gave this process at exec (AT_RANDOM): a secret that
// costs no system call to read.
std::uint64_t os_random_cookie();

// Registers fork handlers (pthread_atfork) for the process-wide heap lock.
void os_register_fork_handlers(void (*prepare)(), void (*parent)(), void (*child)());

}  // namespace osmem
