// Fatal errors: one kind per mistake, one fixed message per kind.
//
// The engine never continues after one of these: the heap is either being
// misused (double free, wild pointer) or already corrupted, and following a
// corrupted link is how allocator bugs become exploits. The handler is
// replaceable so tests can observe the kind instead of dying; if it returns,
// the process aborts all the same.
#pragma once

#include "osmem/osmem.h"

namespace osmem {

enum class ErrorKind : int {
  DoubleFree = OS_ERROR_DOUBLE_FREE,
  InvalidPointer = OS_ERROR_INVALID_POINTER,
  MisalignedPointer = OS_ERROR_MISALIGNED_POINTER,
  HeaderCorrupted = OS_ERROR_HEADER_CORRUPTED,
  HeapInconsistent = OS_ERROR_HEAP_INCONSISTENT,
  ForeignBreak = OS_ERROR_FOREIGN_BREAK,
  UseAfterFree = OS_ERROR_USE_AFTER_FREE,
  WriteAfterFree = OS_ERROR_WRITE_AFTER_FREE,
};

using ErrorHandler = void (*)(ErrorKind kind, const char* operation, const void* address);

const char* error_name(ErrorKind kind);
const char* error_message(ErrorKind kind);

// The default handler: one line on stderr (print_error_line), then the
// stack when a memory tool can print it.
void print_error(ErrorKind kind, const char* operation, const void* address);
// "osmem: <name> in <operation> at <address>: <message>" on stderr.
void print_error_line(ErrorKind kind, const char* operation, const void* address);

// Calls handler (print_error when null), then aborts if it returned.
[[noreturn]] void report(ErrorHandler handler, ErrorKind kind, const char* operation,
                         const void* address);

// Formatting without the heap, for diagnostics written from inside the
// allocator: appends to a fixed buffer, truncating when full.
class LineBuffer {
 public:
  LineBuffer& text(const char* s);
  LineBuffer& hex(unsigned long long v);
  LineBuffer& dec(unsigned long long v);
  const char* data() const { return buf_; }
  unsigned long size() const { return len_; }
  void clear() { len_ = 0; }
  // Writes the buffer to fd and clears it.
  void flush(int fd);

 private:
  char buf_[512];
  unsigned long len_ = 0;
};

}  // namespace osmem
