#include "report.hpp"

#include <cstdlib>

#include "os_source.hpp"
#include "sanitizer.hpp"

namespace osmem {

const char* error_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::DoubleFree:
      return "double free";
    case ErrorKind::InvalidPointer:
      return "invalid pointer";
    case ErrorKind::MisalignedPointer:
      return "misaligned pointer";
    case ErrorKind::HeaderCorrupted:
      return "header corrupted";
    case ErrorKind::HeapInconsistent:
      return "heap inconsistent";
    case ErrorKind::ForeignBreak:
      return "foreign break";
    case ErrorKind::UseAfterFree:
      return "use after free";
    case ErrorKind::WriteAfterFree:
      return "write after free";
  }
  return "unknown error";
}

const char* error_message(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::DoubleFree:
      return "the block is already free";
    case ErrorKind::InvalidPointer:
      return "not a block of this heap (a wild pointer, or a large block already freed)";
    case ErrorKind::MisalignedPointer:
      return "not 8-byte aligned, so not a block of this heap";
    case ErrorKind::HeaderCorrupted:
      return "header canary mismatch: the header was overwritten, or the pointer is not the "
             "start of a block";
    case ErrorKind::HeapInconsistent:
      return "the heap checker found a broken invariant";
    case ErrorKind::ForeignBreak:
      return "the program break moved below the osmem heap";
    case ErrorKind::UseAfterFree:
      return "realloc of a block that is already free";
    case ErrorKind::WriteAfterFree:
      return "the payload of a freed block changed after it was freed";
  }
  return "";
}

void print_error(ErrorKind kind, const char* operation, const void* address) {
  print_error_line(kind, operation, address);
  // Under a sanitizer or Valgrind, say where: the stack of the faulting call.
  tool::print_stack();
}

void print_error_line(ErrorKind kind, const char* operation, const void* address) {
  LineBuffer line;
  line.text("osmem: ")
      .text(error_name(kind))
      .text(" in ")
      .text(operation)
      .text(" at ")
      .hex(reinterpret_cast<unsigned long long>(address))
      .text(": ")
      .text(error_message(kind))
      .text("\n");
  line.flush(2);
}

void report(ErrorHandler handler, ErrorKind kind, const char* operation, const void* address) {
  (handler != nullptr ? handler : print_error)(kind, operation, address);
  std::abort();
}

LineBuffer& LineBuffer::text(const char* s) {
  while (*s != '\0' && len_ < sizeof buf_) buf_[len_++] = *s++;
  return *this;
}

LineBuffer& LineBuffer::hex(unsigned long long v) {
  char digits[16];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  text("0x");
  while (n > 0 && len_ < sizeof buf_) buf_[len_++] = digits[--n];
  return *this;
}

LineBuffer& LineBuffer::dec(unsigned long long v) {
  char digits[20];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0 && len_ < sizeof buf_) buf_[len_++] = digits[--n];
  return *this;
}

void LineBuffer::flush(int fd) {
  os_write_all(fd, buf_, len_);
  len_ = 0;
}

}  // namespace osmem

extern "C" const char* os_error_name(int kind) {
  return osmem::error_name(static_cast<osmem::ErrorKind>(kind));
}
