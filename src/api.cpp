// The process-wide heap behind the C API: one engine over the real
// sbrk/mmap, one lock, errno, and the debug hook that runs the full checker
// on entry to and exit from every operation.
//
// Checking on entry matters as much as on exit: a user's overflow between
// two calls is caught before the engine follows a link it damaged.
#include <pthread.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "heap.hpp"
#include "os_source.hpp"
#include "osmem/osmem.h"

namespace osmem {
namespace {

#ifndef OSMEM_DEFAULT_CHECK_FULL
#define OSMEM_DEFAULT_CHECK_FULL 0
#endif

using ProcessHeap = Heap<OsSource>;

OsSource g_source;
alignas(ProcessHeap) unsigned char g_heap_storage[sizeof(ProcessHeap)];
ProcessHeap* g_heap = nullptr;
bool g_check_full = OSMEM_DEFAULT_CHECK_FULL != 0;
os_error_handler g_user_handler = nullptr;
pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

void forward_error(ErrorKind kind, const char* operation, const void* address) {
  if (g_user_handler != nullptr) {
    g_user_handler(static_cast<os_error_kind>(kind), operation, address);
  } else {
    print_error(kind, operation, address);
  }
}

void lock_for_fork() {
  pthread_mutex_lock(&g_lock);
}
void unlock_after_fork() {
  pthread_mutex_unlock(&g_lock);
}

// The fork handlers must be in place before the lock is ever taken: a fork
// that copies the lock while another thread holds it inside the very first
// call, before that call registered them, leaves the child a lock nobody
// will release. So they are registered once, before any lock: from the
// library's constructor, and (for an os_* call that runs earlier, from
// another library's constructor) at the top of every entry point.
pthread_once_t g_fork_handlers_once = PTHREAD_ONCE_INIT;

void register_fork_handlers() {
  os_register_fork_handlers(lock_for_fork, unlock_after_fork, unlock_after_fork);
}

void ensure_fork_handlers() {
  pthread_once(&g_fork_handlers_once, register_fork_handlers);
}

__attribute__((constructor)) void register_fork_handlers_at_load() {
  ensure_fork_handlers();
}

// Placement-constructed on first use, under the lock: no static
// constructor order to worry about, and no C++ runtime allocation.
ProcessHeap& heap() {
  if (g_heap == nullptr) {
    g_heap = new (g_heap_storage) ProcessHeap(g_source, os_random_cookie());
    g_heap->set_error_handler(forward_error);
    if (const char* mode = std::getenv("OSMEM_CHECK")) {
      if (std::strcmp(mode, "full") == 0) g_check_full = true;
      if (std::strcmp(mode, "off") == 0) g_check_full = false;
    }
  }
  return *g_heap;
}

// Takes the heap lock for a public entry point.
void lock_heap() {
  ensure_fork_handlers();
  pthread_mutex_lock(&g_lock);
}

// Prints every violation with the blocks around it; returns the count.
std::size_t report_violations(const ProcessHeap& h, const char* operation, const char* when) {
  constexpr std::size_t kShown = 8;
  Violation found[kShown];
  const std::size_t n = h.check(found, kShown);
  LineBuffer line;
  for (std::size_t i = 0; i < n && i < kShown; ++i) {
    line.text("osmem: heap inconsistent ")
        .text(when)
        .text(" ")
        .text(operation)
        .text(": ")
        .text(invariant_name(found[i].invariant))
        .text(" at block ")
        .hex(reinterpret_cast<unsigned long long>(found[i].block))
        .text("\n");
    line.flush(2);
    h.describe(found[i].block, 2);
  }
  if (n > kShown) {
    line.text("osmem: ... and ").dec(n - kShown).text(" more violation(s)\n");
    line.flush(2);
  }
  return n;
}

void check_or_die(const ProcessHeap& h, const char* operation, const char* when) {
  if (!g_check_full) return;
  if (report_violations(h, operation, when) != 0) {
    report(h.error_handler(), ErrorKind::HeapInconsistent, operation, nullptr);
  }
}

// Holds the lock for one operation and runs the debug checks around it.
class Operation {
 public:
  explicit Operation(const char* name) : name_(name) {
    lock_heap();
    check_or_die(heap(), name_, "on entry to");
  }
  ~Operation() {
    check_or_die(heap(), name_, "on exit from");
    pthread_mutex_unlock(&g_lock);
  }
  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;

 private:
  const char* name_;
};

}  // namespace
}  // namespace osmem

using osmem::heap;
using osmem::Operation;

extern "C" {

void* os_malloc(size_t size) {
  Operation op("os_malloc");
  return heap().malloc(size);
}

void* os_calloc(size_t nmemb, size_t size) {
  Operation op("os_calloc");
  return heap().calloc(nmemb, size);
}

void* os_realloc(void* ptr, size_t size) {
  Operation op("os_realloc");
  return heap().realloc(ptr, size);
}

void os_free(void* ptr) {
  Operation op("os_free");
  heap().free(ptr);
}

int os_heap_check(void) {
  osmem::lock_heap();
  const std::size_t n = osmem::report_violations(heap(), "os_heap_check", "in");
  pthread_mutex_unlock(&osmem::g_lock);
  return n > 0x7fffffff ? 0x7fffffff : static_cast<int>(n);
}

void os_heap_dump(int fd) {
  osmem::lock_heap();
  heap().dump(fd);
  pthread_mutex_unlock(&osmem::g_lock);
}

int os_heap_stats(struct os_heap_stats* out) {
  if (out == nullptr) return -1;
  osmem::lock_heap();
  heap().stats(out);
  pthread_mutex_unlock(&osmem::g_lock);
  return 0;
}

os_error_handler os_set_error_handler(os_error_handler handler) {
  osmem::lock_heap();
  os_error_handler previous = osmem::g_user_handler;
  osmem::g_user_handler = handler;
  pthread_mutex_unlock(&osmem::g_lock);
  return previous;
}

}  // extern "C"
