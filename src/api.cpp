// The process-wide heap behind the C API: one engine over the real
// sbrk/mmap, one lock, errno, and the debug checks (debug_checks.hpp) that
// run around every operation at the level OSMEM_CHECK chose.
//
// Checking on entry matters as much as on exit: a user's overflow between
// two calls is caught before the engine follows a link it damaged.
#include <dlfcn.h>
#include <pthread.h>

#include <cstdlib>
#include <new>

#include "check_level.hpp"
#include "debug_checks.hpp"
#include "heap.hpp"
#include "leaks.hpp"
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

bool symbolise(std::uintptr_t address, LineBuffer& line);

void forward_error(ErrorKind kind, const char* operation, const void* address) {
  if (g_user_handler != nullptr) {
    g_user_handler(static_cast<os_error_kind>(kind), operation, address);
  } else {
    // The first line, then what the heap says about the address (in every
    // build: diagnosis.hpp), then the stack where a memory tool prints one.
    print_error_line(kind, operation, address);
    if (g_heap != nullptr) print_diagnosis(*g_heap, kind, g_checks.operation(), address, 2);
    if (kind == ErrorKind::WriteAfterFree) g_checks.print_freed_finding(2, symbolise);
    if (kind == ErrorKind::DoubleFree) {
      g_checks.print_history(address, "  history: ", 2, symbolise);
    } else if (g_heap != nullptr &&
               (kind == ErrorKind::HeaderCorrupted || kind == ErrorKind::InvalidPointer ||
                kind == ErrorKind::MisalignedPointer)) {
      const Location at = locate_in_heap(*g_heap, address);
      const BlockMeta* into = at.block != nullptr ? at.block : locate_in_mappings(*g_heap, address);
      if (at.damaged != nullptr && at.before != nullptr) {
        g_checks.print_history(at.before->payload(), "  history of the block before it: ", 2,
                               symbolise);
      } else if (into != nullptr && into->payload() != address) {
        g_checks.print_history(into->payload(), "  history of the block it points into: ", 2,
                               symbolise);
      }
    }
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

// ---- debug records and the reports at exit ----------------------------------

// Address space for the debug records (block_records.hpp), reserved when the
// library loads, so no operation makes a system call for them; only when a
// check level or the leak report may use them. MAP_NORESERVE: only the
// pages the records touch cost memory.
constexpr std::size_t kRecordsReserve = std::size_t{256} << 20;
void* g_records_area = nullptr;
std::size_t g_records_bytes = 0;

bool env_is_one(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] == '1' && v[1] == '\0';
}

CheckLevel check_level_quietly() {
  CheckLevel level;
  parse_check_level(OSMEM_DEFAULT_CHECK, level);
  parse_check_level(std::getenv("OSMEM_CHECK"), level);  // the warning comes at the first call
  return level;
}

void reserve_debug_records_now() {
  for (std::size_t len = kRecordsReserve; len >= (std::size_t{1} << 20); len /= 2) {
    if (void* p = os_reserve(len)) {
      g_records_area = p;
      g_records_bytes = len;
      return;
    }
  }
}

__attribute__((constructor(101))) void reserve_debug_records() {
  if (check_level_quietly().mode == CheckMode::Off && !env_is_one("OSMEM_LEAKS")) return;
  reserve_debug_records_now();
}

// A caller's symbol, from the dynamic symbol tables. Safe here: whatever
// dladdr needs comes from the C library's malloc, never from os_malloc.
bool symbolise(std::uintptr_t address, LineBuffer& line) {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(address), &info) == 0) return false;
  if (info.dli_sname != nullptr) {
    line.text(info.dli_sname)
        .text("+")
        .hex(address - reinterpret_cast<std::uintptr_t>(info.dli_saddr));
  } else {
    line.text("?");
  }
  if (info.dli_fname != nullptr) {
    line.text(" in ").text(info.dli_fname);
  }
  return true;
}

__attribute__((destructor)) void report_at_exit() {
  const bool leaks = env_is_one("OSMEM_LEAKS");
  const bool stats = env_is_one("OSMEM_STATS");
  if (!leaks && !stats) return;
  // A thread still inside an os_* call at exit holds the lock: say so
  // rather than wait for it forever.
  ensure_fork_handlers();
  if (pthread_mutex_trylock(&g_lock) != 0) {
    LineBuffer line;
    line.text("osmem: no reports at exit: another thread is inside an os_* call\n");
    line.flush(2);
    return;
  }
  if (stats && g_heap != nullptr) {
    struct os_heap_stats st;
    g_heap->stats(&st);
    print_stats(st, g_checks.operation(), g_checks.sweep().examined(), g_checks.sweep().rounds(),
                g_checks.records().size(), 2);
  }
  if (leaks) {
    if (g_checks.records().active()) {
      print_leaks(g_checks.records(), symbolise, 2);
    } else {
      LineBuffer line;
      line.text("osmem: no leak report: the records could not be reserved\n");
      line.flush(2);
    }
  }
  pthread_mutex_unlock(&g_lock);
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
    // Reserved at load when the environment asked for it then; a process
    // that set OSMEM_CHECK after loading (a forked child) reserves here.
    if (g_records_area == nullptr && (level.mode != CheckMode::Off || env_is_one("OSMEM_LEAKS"))) {
      reserve_debug_records_now();
    }
    if (g_records_area != nullptr) g_checks.attach_records(g_records_area, g_records_bytes);
    // Freed payloads are recorded only with a check level on: then the
    // engine says when it reuses their memory.
    if (level.mode != CheckMode::Off) g_checks.watch_claims(*g_heap);
  }
  return *g_heap;
}

// Takes the heap lock for a public entry point.
void lock_heap() {
  ensure_fork_handlers();
  pthread_mutex_lock(&g_lock);
}

// Holds the lock for one operation and runs the debug checks around it:
// `user` is the pointer handed in (or null), `requested` the bytes asked
// for, `caller` the API call's return address; result() passes the pointer
// handed out.
class Operation {
 public:
  Operation(const char* name, OpKind kind, const void* user, std::size_t requested,
            const void* caller) {
    lock_heap();
    g_checks.before(heap(), name, kind, user, requested, caller);
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
using osmem::OpKind;

extern "C" {

void* os_malloc(size_t size) {
  Operation op("os_malloc", OpKind::Allocate, nullptr, size, __builtin_return_address(0));
  return op.result(heap().malloc(size));
}

void* os_calloc(size_t nmemb, size_t size) {
  std::size_t total = 0;
  if (__builtin_mul_overflow(nmemb, size, &total)) total = 0;
  Operation op("os_calloc", OpKind::Allocate, nullptr, total, __builtin_return_address(0));
  return op.result(heap().calloc(nmemb, size));
}

void* os_realloc(void* ptr, size_t size) {
  Operation op("os_realloc", OpKind::Reallocate, ptr, size, __builtin_return_address(0));
  return op.result(heap().realloc(ptr, size));
}

void os_free(void* ptr) {
  Operation op("os_free", OpKind::Free, ptr, 0, __builtin_return_address(0));
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
