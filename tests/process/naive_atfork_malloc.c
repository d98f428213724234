/* A deliberately naive preloadable malloc: the negative control of the fork
 * tests (fork_while_malloc.c, fork_while_getline.c) and of the real-program
 * driver (tests/programs/run_program.py). Never use it for anything else.
 *
 * Power-of-two size classes (16 << c bytes, a 16-byte header included),
 * one free list per class, one process-wide mutex, memory from mmap. Its
 * fork handling is the classic one, chosen by NAIVE_MALLOC_ATFORK:
 *
 *   prepare-lock (default)  lock the mutex in a pthread_atfork prepare
 *                           handler, unlock it in the parent, re-create it in
 *                           the child. Safe against threads inside malloc, but
 *                           glibc's fork takes its stdio list lock AFTER the
 *                           prepare handlers: a thread in getline holds a FILE
 *                           lock and waits for this mutex, a thread in
 *                           fflush(NULL) holds the list lock and waits for
 *                           that FILE lock, and fork holds this mutex and
 *                           waits for the list lock. A deadlock.
 *   none                    no handlers: a child forked while another thread
 *                           holds the mutex inherits it locked and hangs in
 *                           its first malloc.
 *
 * NAIVE_MALLOC_FAULT=realloc-half makes realloc copy only half of the old
 * block, a planted bug that the real-program driver must report.
 *
 * naive_atfork_malloc_marker() exists so a test can prove that this library,
 * and not glibc's malloc, is the one preloaded. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

enum { kHeader = 16, kClasses = 48 };
/* Blocks up to kChunkBlockMax come from 64 MiB chunks and are kept on free
 * lists; larger ones get a mapping of their own, unmapped on free. */
static const size_t kChunk = (size_t)64 << 20;
static const size_t kChunkBlockMax = (size_t)16 << 20;
static const uint32_t kMagicSmall = 0x6e616976u, kMagicLarge = 0x4c617267u;

struct header {
  uint32_t cls;
  uint32_t magic;
  uint64_t offset; /* from the block's start to the user pointer */
};

struct free_block {
  struct free_block* next;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct free_block* g_free[kClasses];
static char* g_bump;
static char* g_bump_end;
static int g_realloc_half;
static int g_configured;

static void configure(void) {
  const char* fault = getenv("NAIVE_MALLOC_FAULT");
  g_realloc_half = fault != NULL && strcmp(fault, "realloc-half") == 0;
  g_configured = 1;
}

static int class_of(size_t total) {
  int c = 0;
  while (((size_t)kHeader << c) < total) ++c;
  return c;
}

static void* map(size_t len) {
  void* p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* A block of at least `total` bytes (header included); its class in *cls. */
static char* take_block(size_t total, int* cls) {
  if (total > ((size_t)kHeader << (kClasses - 1))) return NULL;
  const int c = class_of(total);
  const size_t len = (size_t)kHeader << c;
  *cls = c;
  if (len > kChunkBlockMax) return map(len);
  pthread_mutex_lock(&g_lock);
  if (!g_configured) configure();
  char* block = (char*)g_free[c];
  if (block != NULL) {
    g_free[c] = g_free[c]->next;
  } else {
    if (g_bump == NULL || (size_t)(g_bump_end - g_bump) < len) {
      g_bump = map(kChunk);
      g_bump_end = g_bump == NULL ? NULL : g_bump + kChunk;
    }
    if (g_bump != NULL) {
      block = g_bump;
      g_bump += len;
    }
  }
  pthread_mutex_unlock(&g_lock);
  return block;
}

static void* place(char* block, int cls, size_t offset) {
  char* user = block + offset;
  struct header* h = (struct header*)(user - kHeader);
  h->cls = (uint32_t)cls;
  h->magic = ((size_t)kHeader << cls) > kChunkBlockMax ? kMagicLarge : kMagicSmall;
  h->offset = offset;
  return user;
}

static void* aligned(size_t align, size_t size) {
  if (size > SIZE_MAX / 2 || align > SIZE_MAX / 4) return NULL;
  const size_t extra = align > kHeader ? align : 0;
  int cls = 0;
  char* block = take_block(size + kHeader + extra, &cls);
  if (block == NULL) return NULL;
  const uintptr_t first = (uintptr_t)block + kHeader;
  const uintptr_t user = (first + (align - 1)) & ~(uintptr_t)(align - 1);
  return place(block, cls, user - (uintptr_t)block);
}

static struct header* header_of(void* p) {
  return (struct header*)((char*)p - kHeader);
}

static size_t usable(void* p) {
  const struct header* h = header_of(p);
  return ((size_t)kHeader << h->cls) - h->offset;
}

EXPORT void* malloc(size_t size) {
  void* p = aligned(kHeader, size);
  if (p == NULL) errno = ENOMEM;
  return p;
}

EXPORT void free(void* p) {
  if (p == NULL) return;
  struct header* h = header_of(p);
  char* block = (char*)p - h->offset;
  const int cls = (int)h->cls;
  if (h->magic == kMagicLarge) {
    munmap(block, (size_t)kHeader << cls);
    return;
  }
  if (h->magic != kMagicSmall) abort();
  pthread_mutex_lock(&g_lock);
  ((struct free_block*)block)->next = g_free[cls];
  g_free[cls] = (struct free_block*)block;
  pthread_mutex_unlock(&g_lock);
}

EXPORT void* calloc(size_t n, size_t size) {
  if (size != 0 && n > SIZE_MAX / size) {
    errno = ENOMEM;
    return NULL;
  }
  void* p = malloc(n * size);
  if (p != NULL) memset(p, 0, n * size);
  return p;
}

EXPORT void* realloc(void* p, size_t size) {
  if (p == NULL) return malloc(size);
  const size_t old = usable(p);
  if (size <= old) return p;
  void* q = malloc(size);
  if (q == NULL) return NULL;
  memcpy(q, p, g_realloc_half ? old / 2 : old);
  free(p);
  return q;
}

EXPORT void* reallocarray(void* p, size_t n, size_t size) {
  if (size != 0 && n > SIZE_MAX / size) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, n * size);
}

static int power_of_two(size_t a) {
  return a != 0 && (a & (a - 1)) == 0;
}

EXPORT int posix_memalign(void** out, size_t align, size_t size) {
  if (!power_of_two(align) || align % sizeof(void*) != 0) return EINVAL;
  void* p = aligned(align < kHeader ? kHeader : align, size);
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}

EXPORT void* memalign(size_t align, size_t size) {
  if (!power_of_two(align)) {
    errno = EINVAL;
    return NULL;
  }
  void* p = aligned(align < kHeader ? kHeader : align, size);
  if (p == NULL) errno = ENOMEM;
  return p;
}

EXPORT void* aligned_alloc(size_t align, size_t size) {
  return memalign(align, size);
}

EXPORT void* valloc(size_t size) {
  return memalign((size_t)sysconf(_SC_PAGESIZE), size);
}

EXPORT void* pvalloc(size_t size) {
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  return memalign(page, (size + page - 1) & ~(page - 1));
}

EXPORT size_t malloc_usable_size(void* p) {
  return p == NULL ? 0 : usable(p);
}

EXPORT int naive_atfork_malloc_marker(void) {
  return 1;
}

static void lock_for_fork(void) {
  pthread_mutex_lock(&g_lock);
}
static void unlock_in_parent(void) {
  pthread_mutex_unlock(&g_lock);
}
static void reset_in_child(void) {
  pthread_mutex_init(&g_lock, NULL);
}

__attribute__((constructor)) static void register_fork_handlers(void) {
  const char* mode = getenv("NAIVE_MALLOC_ATFORK");
  if (mode != NULL && strcmp(mode, "none") == 0) return;
  pthread_atfork(lock_for_fork, unlock_in_parent, reset_in_child);
}
