// The process-wide heap behind the C API: one engine over the real
// sbrk/mmap, one lock, errno, and the debug checks (debug_checks.hpp) that
// run around every operation at the level OSMEM_CHECK chose.
//
// Checking on entry matters as much as on exit: a user's overflow between
// two calls is caught before the engine follows a link it damaged.
#include <pthread.h>

#include <new>

#include "check_level.hpp"
#include "debug_checks.hpp"
#include "heap.hpp"
#include "os_source.hpp"
#include "osmem/osmem.h"

namespace osmem {
namespace {

// The check level when OSMEM_CHECK is not set (CMake OSMEM_DEFAULT_CHECK).
#ifndef OSMEM_DEFAULT_CHECK
#define OSMEM_DEFAULT_CHECK "off"
#endif

using ProcessHeap = Heap<OsSource>;

OsSource g_source;
alignas(ProcessHeap) unsigned char g_heap_storage[sizeof(ProcessHeap)];
ProcessHeap* g_heap = nullptr;
DebugChecks<ProcessHeap> g_checks;
os_error_handler g_user_handler = nullptr;
pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

void forward_error(ErrorKind kind, const char* operation, const void* address) {
  if (g_user_handler != nullptr) {
    g_user_handler(static_cast<os_error_kind>(kind), operation, address);
  } else {
    // The first line, then what the heap says about the address (in every
    // build: diagnosis.hpp), then the stack where a memory tool prints one.
    print_error_line(kind, operation, address);
    if (g_heap != nullptr) print_diagnosis(*g_heap, kind, g_checks.operation(), address, 2);
    tool::print_stack();
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
    CheckLevel level;
    parse_check_level(OSMEM_DEFAULT_CHECK, level);
    read_check_level(level);
    g_checks.set_level(level);
  }
  return *g_heap;
}

// Takes the heap lock for a public entry point.
void lock_heap() {
  ensure_fork_handlers();
  pthread_mutex_lock(&g_lock);
}

// Holds the lock for one operation and runs the debug checks around it:
// `user` is the pointer handed in (or null), result() passes the pointer
// handed out.
class Operation {
 public:
  Operation(const char* name, const void* user) {
    lock_heap();
    g_checks.before(heap(), name, user);
  }
  ~Operation() { pthread_mutex_unlock(&g_lock); }
  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;

  void* result(void* p) {
    g_checks.after(heap(), p);
    return p;
  }
  void done() { g_checks.after(heap(), nullptr); }
};

}  // namespace
}  // namespace osmem

using osmem::heap;
using osmem::Operation;

extern "C" {

void* os_malloc(size_t size) {
  Operation op("os_malloc", nullptr);
  return op.result(heap().malloc(size));
}

void* os_calloc(size_t nmemb, size_t size) {
  Operation op("os_calloc", nullptr);
  return op.result(heap().calloc(nmemb, size));
}

void* os_realloc(void* ptr, size_t size) {
  Operation op("os_realloc", ptr);
  return op.result(heap().realloc(ptr, size));
}

void os_free(void* ptr) {
  Operation op("os_free", ptr);
  heap().free(ptr);
  op.done();
}

int os_heap_check(void) {
  osmem::lock_heap();
  const std::size_t n = osmem::report_violations(heap(), "os_heap_check", "in", 0, 8);
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
