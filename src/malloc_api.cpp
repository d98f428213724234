// libosmem-malloc: the osmem engine as the process's malloc.
//
// The same Heap as libosmem.so, under MallocConfig (docs/contract.md, part
// II): glibc's allocation family, one heap, one lock. It runs before and
// during libc's own start-up, so nothing here allocates, calls dlsym or
// uses stdio; diagnostics go straight to fd 2.
//
// fork. A fork must not copy the heap lock while another thread holds it,
// so the prepare handler takes it. But glibc's fork takes its stdio list
// lock only after the prepare handlers have run, while a thread in
// fflush(NULL) holds that list lock and waits for a FILE lock that a third
// thread holds while it allocates: a prepare handler that only locks the
// heap can wait for the allocating thread forever while fork waits on it.
// So the prepare handler takes the stdio list lock first, in glibc's own
// order (the list lock is recursive, so fork takes it again harmlessly),
// then the heap lock. The child starts both afresh.
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <new>

#include "check_level.hpp"
#include "debug_checks.hpp"
#include "heap.hpp"
#include "leaks.hpp"
#include "os_source.hpp"
#include "osmem/malloc.h"

// glibc's stdio list lock (exported by libc.so.6 since GLIBC_2.2.5). Weak:
// a C library without them skips that step.
extern "C" {
void _IO_list_lock(void) __attribute__((weak));
void _IO_list_unlock(void) __attribute__((weak));
void _IO_list_resetlock(void) __attribute__((weak));
}

namespace osmem {
namespace {

using MallocHeap = Heap<OsSource, MallocConfig>;

OsSource g_source;
alignas(MallocHeap) unsigned char g_heap_storage[sizeof(MallocHeap)];
MallocHeap* g_heap = nullptr;
// The debug checks at the level OSMEM_CHECK chose (docs/debug-mode.md),
// off by default; without the slack checks, since malloc_usable_size makes
// the slack the program's to write.
DebugChecks<MallocHeap> g_checks;
osmem_malloc_error_handler g_user_handler = nullptr;
pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

void forward_error(ErrorKind kind, const char* operation, const void* address) {
  if (g_user_handler != nullptr) {
    g_user_handler(static_cast<os_error_kind>(kind), operation, address);
  } else {
    print_error_line(kind, operation, address);
    if (kind == ErrorKind::WriteAfterFree) g_checks.print_freed_finding(2);
    tool::print_stack();
  }
}

void prepare_fork() {
  if (_IO_list_lock != nullptr) _IO_list_lock();
  pthread_mutex_lock(&g_lock);
}
void parent_after_fork() {
  pthread_mutex_unlock(&g_lock);
  if (_IO_list_unlock != nullptr) _IO_list_unlock();
}
// The child has one thread, this one: both locks start afresh (glibc
// resets the list lock itself only when the parent had threads).
void child_after_fork() {
  pthread_mutex_init(&g_lock, nullptr);
  if (_IO_list_resetlock != nullptr) _IO_list_resetlock();
}

// pthread_atfork may itself call malloc (glibc keeps its handlers in a
// growing array), so registration cannot wait under a pthread_once that the
// nested malloc would wait on too. The first caller registers; a nested or
// concurrent call goes on meanwhile. The first malloc of a process runs in
// libc's start-up, before any thread exists, so no fork can fall between.
std::atomic<int> g_fork_state{0};  // 0: not registered, 1: registering, 2: done

void ensure_fork_handlers() {
  if (g_fork_state.load(std::memory_order_acquire) == 2) return;
  int expected = 0;
  if (g_fork_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    os_register_fork_handlers(prepare_fork, parent_after_fork, child_after_fork);
    g_fork_state.store(2, std::memory_order_release);
  }
}

bool env_on(const char* name) {
  const char* v = getenv(name);
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

// Address space for the debug records (block_records.hpp, freed_records.hpp),
// reserved at the first call when a check level or the leak report wants
// them: a library constructor would run after libc's first mallocs.
constexpr std::size_t kRecordsReserve = std::size_t{256} << 20;

void attach_debug_records() {
  for (std::size_t len = kRecordsReserve; len >= (std::size_t{1} << 20); len /= 2) {
    if (void* p = os_reserve(len)) {
      g_checks.attach_records(p, len);
      return;
    }
  }
}

MallocHeap& heap() {
  if (g_heap == nullptr) {
    g_heap = new (g_heap_storage) MallocHeap(g_source, os_random_cookie());
    g_heap->set_error_handler(forward_error);
    g_heap->set_operation_names(true);
    CheckLevel level;
    read_check_level(level);
    g_checks.set_level(level);
    g_checks.set_slack_checks(false);
    g_checks.set_realloc_warning(false);  // rule M9: a fatal use after free
    if (level.mode != CheckMode::Off || env_on("OSMEM_LEAKS")) attach_debug_records();
    if (level.mode != CheckMode::Off) g_checks.watch_claims(*g_heap);
  }
  return *g_heap;
}

void lock_heap() {
  ensure_fork_handlers();
  pthread_mutex_lock(&g_lock);
}

// Holds the heap lock for one allocation call, with the debug checks around
// it (debug_checks.hpp: before on entry, after with the pointer handed
// out), and keeps errno as the caller left it unless the call sets it on
// purpose.
class Call {
 public:
  Call(const char* name, OpKind kind, const void* user, std::size_t requested, const void* caller) {
    lock_heap();
    g_checks.before(heap(), name, kind, user, requested, caller);
  }
  ~Call() { pthread_mutex_unlock(&g_lock); }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;
  MallocHeap& heap() { return osmem::heap(); }
  void* result(void* p) {
    g_checks.after(heap(), p);
    return p;
  }
  void done() { g_checks.after(heap(), nullptr); }
};

// The lock alone, for calls that hand out and take back nothing.
class Locked {
 public:
  Locked() { lock_heap(); }
  ~Locked() { pthread_mutex_unlock(&g_lock); }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;
  MallocHeap& heap() { return osmem::heap(); }
};

bool power_of_two(std::size_t a) {
  return a != 0 && (a & (a - 1)) == 0;
}

std::size_t page_size() {
  return g_source.page_size();
}

}  // namespace
}  // namespace osmem

using osmem::Call;
using osmem::Locked;
using osmem::OpKind;

#define OSMEM_CALLER __builtin_return_address(0)

#define OSMEM_MALLOC_EXPORT extern "C" __attribute__((visibility("default")))
// The test kit builds this file a second time with every allocation
// function renamed (osmem_kit_malloc, ...), so that sanitizer builds, whose
// runtimes own malloc, can drive this very code from threads.
#if defined(OSMEM_MALLOC_RENAMED)
#define OSMEM_MALLOC_FN(name) osmem_kit_##name
#else
#define OSMEM_MALLOC_FN(name) name
#endif

OSMEM_MALLOC_EXPORT void* OSMEM_MALLOC_FN(malloc)(size_t size) noexcept {
  Call call("malloc", OpKind::Allocate, nullptr, size, OSMEM_CALLER);
  return call.result(call.heap().malloc(size));
}

OSMEM_MALLOC_EXPORT void OSMEM_MALLOC_FN(free)(void* ptr) noexcept {
  if (ptr == nullptr) return;
  Call call("free", OpKind::Free, ptr, 0, OSMEM_CALLER);
  call.heap().free(ptr);
  call.done();
}

OSMEM_MALLOC_EXPORT void* OSMEM_MALLOC_FN(calloc)(size_t nmemb, size_t size) noexcept {
  std::size_t total = 0;
  if (__builtin_mul_overflow(nmemb, size, &total)) total = 0;
  Call call("calloc", OpKind::Allocate, nullptr, total, OSMEM_CALLER);
  return call.result(call.heap().calloc(nmemb, size));
}

OSMEM_MALLOC_EXPORT void* OSMEM_MALLOC_FN(realloc)(void* ptr, size_t size) noexcept {
  Call call("realloc", OpKind::Reallocate, ptr, size, OSMEM_CALLER);
  return call.result(call.heap().realloc(ptr, size));
}

OSMEM_MALLOC_EXPORT void* OSMEM_MALLOC_FN(reallocarray)(void* ptr, size_t nmemb,
                                                        size_t size) noexcept {
  size_t total = 0;
  if (__builtin_mul_overflow(nmemb, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return OSMEM_MALLOC_FN(realloc)(ptr, total);
}

// memalign (glibc): an alignment that is not a power of two is rounded up
// to one; one too large to round is EINVAL.
OSMEM_MALLOC_EXPORT void* OSMEM_MALLOC_FN(memalign)(size_t alignment, size_t size) noexcept {
  if (alignment > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return nullptr;
  }
  std::size_t a = 1;
  while (a < alignment) a <<= 1;
  Call call("memalign", OpKind::Allocate, nullptr, size, OSMEM_CALLER);
  return call.result(call.heap().aligned_malloc(a, size));
}

// C17 7.22.3.1 and glibc 2.38: the alignment must be a power of two.
OSMEM_MALLOC_EXPORT void* OSMEM_MALLOC_FN(aligned_alloc)(size_t alignment, size_t size) noexcept {
  if (!osmem::power_of_two(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  Call call("aligned_alloc", OpKind::Allocate, nullptr, size, OSMEM_CALLER);
  return call.result(call.heap().aligned_malloc(alignment, size));
}

// POSIX: a power of two that is a multiple of sizeof(void*), else EINVAL;
// errors are returned, errno is left alone.
OSMEM_MALLOC_EXPORT int OSMEM_MALLOC_FN(posix_memalign)(void** out, size_t alignment,
                                                        size_t size) noexcept {
  if (!osmem::power_of_two(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  const int saved = errno;
  void* p = nullptr;
  {
    Call call("posix_memalign", OpKind::Allocate, nullptr, size, OSMEM_CALLER);
    p = call.result(call.heap().aligned_malloc(alignment, size));
  }
  errno = saved;
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

OSMEM_MALLOC_EXPORT void* OSMEM_MALLOC_FN(valloc)(size_t size) noexcept {
  Call call("valloc", OpKind::Allocate, nullptr, size, OSMEM_CALLER);
  return call.result(call.heap().aligned_malloc(osmem::page_size(), size));
}

// pvalloc: whole pages, at least one.
OSMEM_MALLOC_EXPORT void* OSMEM_MALLOC_FN(pvalloc)(size_t size) noexcept {
  const std::size_t page = osmem::page_size();
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return nullptr;
  }
  const std::size_t rounded = size == 0 ? page : (size + page - 1) / page * page;
  Call call("pvalloc", OpKind::Allocate, nullptr, rounded, OSMEM_CALLER);
  return call.result(call.heap().aligned_malloc(page, rounded));
}

OSMEM_MALLOC_EXPORT size_t OSMEM_MALLOC_FN(malloc_usable_size)(void* ptr) noexcept {
  if (ptr == nullptr) return 0;
  Locked call;
  return call.heap().usable_size(ptr);
}

OSMEM_MALLOC_EXPORT int OSMEM_MALLOC_FN(malloc_trim)(size_t pad) noexcept {
  Locked call;
  return call.heap().trim(pad) ? 1 : 0;
}

// The policy's thresholds are constants (docs/contract.md, part II): the
// parameters glibc knows are accepted and ignored, others are an error.
OSMEM_MALLOC_EXPORT int OSMEM_MALLOC_FN(mallopt)(int param, int value) noexcept {
  (void)value;
  switch (param) {
    case M_MXFAST:
    case M_TRIM_THRESHOLD:
    case M_TOP_PAD:
    case M_MMAP_THRESHOLD:
    case M_MMAP_MAX:
    case M_CHECK_ACTION:
    case M_PERTURB:
    case M_ARENA_TEST:
    case M_ARENA_MAX:
      return 1;
    default:
      return 0;
  }
}

OSMEM_MALLOC_EXPORT struct mallinfo2 OSMEM_MALLOC_FN(mallinfo2)(void) noexcept {
  struct os_heap_stats s = {};
  std::size_t top_free = 0;
  {
    Locked call;
    call.heap().stats(&s);
    top_free = call.heap().top_free_bytes();
  }
  struct mallinfo2 m = {};
  m.arena = s.heap_span;
  m.ordblks = s.free_blocks;
  m.hblks = s.mapped_blocks;
  m.hblkhd = s.mapped_bytes;
  m.uordblks = s.heap_bytes_in_use;
  m.fordblks = s.heap_bytes_free;
  m.keepcost = top_free;
  return m;
}

// glibc's old interface, with int fields that saturate.
OSMEM_MALLOC_EXPORT struct mallinfo OSMEM_MALLOC_FN(mallinfo)(void) noexcept {
  const struct mallinfo2 m2 = OSMEM_MALLOC_FN(mallinfo2)();
  auto clamp = [](std::size_t v) { return v > 0x7fffffff ? 0x7fffffff : static_cast<int>(v); };
  struct mallinfo m = {};
  m.arena = clamp(m2.arena);
  m.ordblks = clamp(m2.ordblks);
  m.hblks = clamp(m2.hblks);
  m.hblkhd = clamp(m2.hblkhd);
  m.uordblks = clamp(m2.uordblks);
  m.fordblks = clamp(m2.fordblks);
  m.keepcost = clamp(m2.keepcost);
  return m;
}

// Like glibc's, on stderr; the numbers are os_heap_stats'.
namespace osmem {
namespace {
void print_malloc_stats(int fd) {
  struct os_heap_stats s = {};
  {
    Locked call;
    call.heap().stats(&s);
  }
  LineBuffer line;
  line.text("osmem heap of process ").dec(static_cast<unsigned long long>(getpid())).text(":\n");
  line.text("heap:       system bytes     = ").dec(s.heap_span).text("\n");
  line.text("            in use bytes     = ").dec(s.heap_bytes_in_use).text("\n");
  line.flush(fd);
  line.text("            free blocks      = ").dec(s.free_blocks).text("\n");
  line.text("mapped:     blocks           = ").dec(s.mapped_blocks).text("\n");
  line.flush(fd);
  line.text("            bytes            = ").dec(s.mapped_bytes).text("\n");
  line.text("calls:      sbrk ").dec(s.sbrk_calls).text(", mmap ").dec(s.mmap_calls);
  line.text(", munmap ").dec(s.munmap_calls).text(", mremap ").dec(s.mremap_calls);
  line.text(", trims ").dec(s.trims).text("\n");
  line.flush(fd);
}

// Where the at-exit reports go: a copy of stderr taken at load, because
// programs close stderr on their way out (coreutils' close_stdout does)
// before the library's destructor runs.
int g_report_fd = -1;

__attribute__((constructor)) void keep_stderr_for_reports() {
  if (env_on("OSMEM_STATS") || env_on("OSMEM_LEAKS")) g_report_fd = fcntl(2, F_DUPFD_CLOEXEC, 10);
}
}  // namespace
}  // namespace osmem

namespace osmem {
namespace {
// The blocks still allocated, by size and caller (leaks.hpp). Callers are
// not named: dladdr could allocate, and this library is malloc. A thread
// still inside a call at exit holds the lock: say so rather than wait.
void print_leaks_at_exit(int fd) {
  ensure_fork_handlers();
  if (pthread_mutex_trylock(&g_lock) != 0) {
    LineBuffer line;
    line.text("osmem: no leak report at exit: another thread is inside malloc\n");
    line.flush(fd);
    return;
  }
  if (g_checks.records().active()) {
    print_leaks(g_checks.records(), nullptr, fd);
  } else {
    LineBuffer line;
    line.text("osmem: no leak report: the records could not be reserved\n");
    line.flush(fd);
  }
  pthread_mutex_unlock(&g_lock);
}
}  // namespace
}  // namespace osmem

OSMEM_MALLOC_EXPORT void OSMEM_MALLOC_FN(malloc_stats)(void) noexcept {
  osmem::print_malloc_stats(2);
}

// ---- reports at exit ------------------------------------------------------------

// OSMEM_STATS=1 prints malloc_stats() and OSMEM_DUMP=FILE writes the heap
// dump (docs/heap-dump.md) when the process exits: what `osmem run --stats`
// and `osmem run --heapmap` ask for. A destructor, so it runs after main and
// the program's atexit handlers.
__attribute__((destructor)) static void osmem_malloc_reports_at_exit() {
  const int fd = osmem::g_report_fd >= 0 ? osmem::g_report_fd : 2;
  if (osmem::env_on("OSMEM_STATS")) osmem::print_malloc_stats(fd);
  if (osmem::env_on("OSMEM_LEAKS")) osmem::print_leaks_at_exit(fd);
  if (const char* path = getenv("OSMEM_DUMP"); path != nullptr && path[0] != '\0') {
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      osmem::LineBuffer line;
      line.text("osmem: OSMEM_DUMP: cannot open ").text(path).text("\n");
      line.flush(2);
      return;
    }
    osmem_malloc_heap_dump(fd);
    close(fd);
  }
}

// ---- introspection (osmem/malloc.h) -------------------------------------------

OSMEM_MALLOC_EXPORT int osmem_malloc_heap_check(void) {
  osmem::ensure_fork_handlers();
  pthread_mutex_lock(&osmem::g_lock);
  const std::size_t n =
      osmem::report_violations(osmem::heap(), "osmem_malloc_heap_check", "in", 0, 8);
  pthread_mutex_unlock(&osmem::g_lock);
  return n > 0x7fffffff ? 0x7fffffff : static_cast<int>(n);
}

OSMEM_MALLOC_EXPORT void osmem_malloc_heap_dump(int fd) {
  osmem::ensure_fork_handlers();
  pthread_mutex_lock(&osmem::g_lock);
  osmem::heap().dump(fd);
  pthread_mutex_unlock(&osmem::g_lock);
}

OSMEM_MALLOC_EXPORT int osmem_malloc_heap_stats(struct os_heap_stats* out) {
  if (out == nullptr) return -1;
  osmem::ensure_fork_handlers();
  pthread_mutex_lock(&osmem::g_lock);
  osmem::heap().stats(out);
  pthread_mutex_unlock(&osmem::g_lock);
  return 0;
}

OSMEM_MALLOC_EXPORT osmem_malloc_error_handler
osmem_malloc_set_error_handler(osmem_malloc_error_handler handler) {
  osmem::ensure_fork_handlers();
  pthread_mutex_lock(&osmem::g_lock);
  osmem_malloc_error_handler previous = osmem::g_user_handler;
  osmem::g_user_handler = handler;
  pthread_mutex_unlock(&osmem::g_lock);
  return previous;
}
