// The text a report function writes to a file descriptor, captured in
// memory: one memfd made at the first use and emptied before each capture,
// so a fuzz target can compare reports without a file or a pipe that fills.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace osmem::fuzz {

// Calls write(fd) and returns what it wrote to fd.
template <class F>
std::string capture_report(F&& write) {
  static const int fd = [] {
    const int made = memfd_create("osmem-report", MFD_CLOEXEC);
    if (made < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    return made;
  }();
  if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
    std::perror("emptying the report capture");
    std::abort();
  }
  write(fd);
  const off_t end = lseek(fd, 0, SEEK_CUR);
  std::string text(static_cast<std::size_t>(end < 0 ? 0 : end), '\0');
  if (!text.empty() &&
      pread(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    std::perror("reading the report capture");
    std::abort();
  }
  return text;
}

}  // namespace osmem::fuzz
