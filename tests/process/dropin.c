/* libosmem-malloc in a real process: linked with libosmem-malloc.so, with
 * libosmem-malloc.a, or not at all and run under LD_PRELOAD. Either way the
 * process's malloc must be osmem's (the introspection functions are weak
 * references, resolved by whichever way the library came in, and their
 * counts must move with malloc's), and it must
 * keep what programs rely on (docs/contract.md, part II): 16-byte alignment
 * (an SSE store into every block), malloc(0), realloc(p, 0), the aligned
 * family and its EINVAL cases, ENOMEM, a buffer grown to 64 MiB in 64 KiB
 * steps without a copy per step (mremap), the top of the heap given back
 * after a free, glibc's mallopt, mallinfo, mallinfo2 and malloc_stats (their
 * numbers osmem's), an error handler that sees a double free, and a clean
 * heap check at the end.
 *
 * Exit status 0 when every check passed; each failure is printed. */
#define _GNU_SOURCE
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <errno.h>
#include <malloc.h>
#include <osmem/malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
/* A failed reallocarray leaves the block live; GCC cannot know it failed. */
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif

static int g_failures;

#define CHECK(cond, ...)                                      \
  do {                                                        \
    if (!(cond)) {                                            \
      ++g_failures;                                           \
      fprintf(stderr, "dropin: %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                           \
      fputc('\n', stderr);                                    \
    }                                                         \
  } while (0)

#pragma weak osmem_malloc_heap_stats
#pragma weak osmem_malloc_heap_check
#pragma weak osmem_malloc_set_error_handler

static struct os_heap_stats stats(void) {
  struct os_heap_stats s;
  memset(&s, 0, sizeof s);
  osmem_malloc_heap_stats(&s);
  return s;
}

static int aligned(const void* p, size_t a) {
  return ((uintptr_t)p & (a - 1)) == 0;
}

static void interposed(void) {
  const struct os_heap_stats before = stats();
  void* volatile p = malloc(1000);
  const struct os_heap_stats during = stats();
  CHECK(during.heap_bytes_in_use >= before.heap_bytes_in_use + 1008,
        "malloc(1000) did not show in osmem's statistics: malloc is not osmem's");
  free(p);
}

/* movdqa faults on an address that is not 16-aligned. */
static void sse_stores(void) {
  void* blocks[600];
  for (size_t n = 1; n <= 600; ++n) {
    char* p = malloc(n);
    blocks[n - 1] = p;
    CHECK(p != NULL && aligned(p, 16), "malloc(%zu) = %p is not 16-aligned", n, (void*)p);
#if defined(__SSE2__)
    if (p != NULL && n >= 16 && aligned(p, 16)) _mm_store_si128((__m128i*)p, _mm_set1_epi8(7));
#endif
  }
  for (size_t n = 1; n <= 600; ++n) free(blocks[n - 1]);
}

static void zero_sizes(void) {
  void* a = malloc(0);
  void* b = malloc(0);
  CHECK(a != NULL && b != NULL && a != b, "malloc(0) must give unique pointers (%p, %p)", a, b);
  free(a);
  free(b);
  void* c = calloc(0, 8);
  CHECK(c != NULL, "calloc(0, 8) returned NULL");
  free(c);
  void* r = realloc(NULL, 0);
  CHECK(r != NULL, "realloc(NULL, 0) returned NULL");
  CHECK(realloc(r, 0) == NULL, "realloc(p, 0) must free p and return NULL");
}

static void aligned_family(void) {
  for (size_t a = 32; a <= (size_t)1 << 21; a <<= 1) {
    void* p = NULL;
    CHECK(posix_memalign(&p, a, 100) == 0 && aligned(p, a), "posix_memalign(%zu) = %p", a, p);
    free(p);
    void* q = aligned_alloc(a, a * 3);
    CHECK(q != NULL && aligned(q, a), "aligned_alloc(%zu) = %p", a, q);
    if (q != NULL) memset(q, 1, a * 3);
    CHECK(q == NULL || malloc_usable_size(q) >= a * 3, "aligned_alloc usable size");
    free(q);
  }
  void* p = (void*)1;
  errno = 0;
  CHECK(posix_memalign(&p, 24, 10) == EINVAL && p == (void*)1 && errno == 0,
        "posix_memalign(24) must return EINVAL and leave errno and *memptr alone");
  CHECK(posix_memalign(&p, 4, 10) == EINVAL, "posix_memalign(4) must return EINVAL");
  /* Through a volatile: the compiler rejects a constant that is not a
   * power of two, which is what is being tested. */
  volatile size_t not_power_of_two = 48;
  errno = 0;
  CHECK(aligned_alloc(not_power_of_two, 96) == NULL && errno == EINVAL,
        "aligned_alloc(48) must fail with EINVAL");
  void* m = memalign(not_power_of_two, 10); /* rounded up to 64 */
  CHECK(m != NULL && aligned(m, 64), "memalign(48) = %p, want 64-aligned", m);
  free(m);
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  void* v = valloc(10);
  CHECK(v != NULL && aligned(v, page), "valloc = %p", v);
  free(v);
  void* pv = pvalloc(page + 1);
  CHECK(pv != NULL && aligned(pv, page) && malloc_usable_size(pv) >= 2 * page, "pvalloc = %p", pv);
  free(pv);
}

static void enomem(void) {
  errno = 0;
  void* volatile p = malloc(SIZE_MAX);
  CHECK(p == NULL && errno == ENOMEM, "malloc(SIZE_MAX) must be NULL with ENOMEM");
  errno = 0;
  p = calloc(SIZE_MAX / 2, 3);
  CHECK(p == NULL && errno == ENOMEM, "calloc overflow must be NULL with ENOMEM");
  void* q = malloc(16);
  errno = 0;
  void* volatile r = reallocarray(q, SIZE_MAX / 2, 3);
  CHECK(r == NULL && errno == ENOMEM, "reallocarray overflow must be NULL with ENOMEM");
  free(q);
  errno = 0;
  free(malloc(10));
  CHECK(errno == 0, "a successful malloc/free changed errno");
}

static void realloc_growth(void) {
  const struct os_heap_stats before = stats();
  const size_t step = 64 << 10, total = (size_t)64 << 20;
  unsigned char* buf = NULL;
  for (size_t n = step; n <= total; n += step) {
    unsigned char* next = realloc(buf, n);
    CHECK(next != NULL, "realloc to %zu failed", n);
    if (next == NULL) break;
    buf = next;
    buf[n - step] = (unsigned char)(n / step);
  }
  for (size_t n = step; n <= total && buf != NULL; n += step) {
    if (buf[n - step] != (unsigned char)(n / step)) {
      CHECK(0, "growing by realloc lost the byte at %zu", n - step);
      break;
    }
  }
  const struct os_heap_stats after = stats();
  /* One move from the heap to a mapping, then mremap: not a new mapping
   * (and a copy) per step. */
  CHECK(after.mmap_calls - before.mmap_calls <= 2, "%zu mmap calls for one growing buffer",
        after.mmap_calls - before.mmap_calls);
  CHECK(after.mremap_calls > before.mremap_calls, "no mremap while growing a mapped block");
  free(buf);
}

static void trim(void) {
  void* blocks[100];
  for (int i = 0; i < 100; ++i) blocks[i] = malloc(10 << 10);
  char* const peak = sbrk(0);
  for (int i = 0; i < 100; ++i) free(blocks[i]);
  char* const after = sbrk(0);
  CHECK(after < peak && (size_t)(peak - after) >= (512 << 10),
        "freeing 1 MiB at the top of the heap gave back %td bytes", peak - after);
}

/* The EINVAL and ENOMEM cases no size can satisfy. */
static void impossible_requests(void) {
  volatile size_t huge_alignment = SIZE_MAX / 2 + 2; /* no power of two above it fits */
  errno = 0;
  CHECK(memalign(huge_alignment, 10) == NULL && errno == EINVAL,
        "memalign(SIZE_MAX / 2 + 2) must fail with EINVAL");
  volatile size_t huge = SIZE_MAX - 10; /* whole pages of it overflow */
  errno = 0;
  CHECK(pvalloc(huge) == NULL && errno == ENOMEM, "pvalloc(SIZE_MAX - 10) must fail with ENOMEM");
}

/* glibc's tuning and statistics interfaces: the parameters glibc knows are
 * accepted (and ignored), others refused; mallinfo2 and mallinfo give
 * osmem's own numbers. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* mallinfo */
#endif
static void glibc_statistics(void) {
  CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1, "mallopt(M_MMAP_THRESHOLD) must be accepted");
  CHECK(mallopt(M_ARENA_MAX, 1) == 1, "mallopt(M_ARENA_MAX) must be accepted");
  CHECK(mallopt(-12345, 1) == 0, "mallopt of an unknown parameter must return 0");

  void* volatile small = malloc(1000);
  void* volatile big = malloc(1 << 20); /* above the mmap threshold */
  const struct mallinfo2 m2 = mallinfo2();
  const struct os_heap_stats s = stats();
  CHECK(m2.arena == s.heap_span && m2.uordblks == s.heap_bytes_in_use &&
            m2.fordblks == s.heap_bytes_free && m2.ordblks == s.free_blocks &&
            m2.hblks == s.mapped_blocks && m2.hblkhd == s.mapped_bytes,
        "mallinfo2 must give osmem's statistics");
  CHECK(m2.uordblks >= 1008 && m2.hblks >= 1 && m2.hblkhd >= (size_t)1 << 20,
        "mallinfo2 does not count the blocks just allocated (%zu bytes in use, %zu mappings)",
        m2.uordblks, m2.hblks);
  CHECK(m2.keepcost <= m2.fordblks, "mallinfo2: keepcost %zu above the free bytes %zu", m2.keepcost,
        m2.fordblks);
  const struct mallinfo m = mallinfo();
  CHECK((size_t)m.uordblks == m2.uordblks && (size_t)m.hblks == m2.hblks &&
            (size_t)m.hblkhd == m2.hblkhd && (size_t)m.arena == m2.arena,
        "mallinfo must agree with mallinfo2 below 2 GiB");
  free(big);
  free(small);
  const struct mallinfo2 after = mallinfo2();
  CHECK(after.hblks + 1 == m2.hblks && after.uordblks + 1008 <= m2.uordblks,
        "mallinfo2 does not see the frees");
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/* malloc_stats prints osmem's numbers on stderr. */
static void malloc_stats_output(void) {
  FILE* out = tmpfile();
  CHECK(out != NULL, "tmpfile failed");
  if (out == NULL) return;
  fflush(stderr);
  const int saved = dup(2);
  dup2(fileno(out), 2);
  malloc_stats();
  dup2(saved, 2);
  close(saved);
  char text[1024] = {0};
  rewind(out);
  const size_t n = fread(text, 1, sizeof text - 1, out);
  fclose(out);
  char expect[64];
  snprintf(expect, sizeof expect, "osmem heap of process %ld:", (long)getpid());
  CHECK(n > 0 && strstr(text, expect) != NULL && strstr(text, "in use bytes") != NULL &&
            strstr(text, "calls:      sbrk ") != NULL,
        "malloc_stats printed: %s", text);
}

/* A handler set with osmem_malloc_set_error_handler sees a double free
 * (kind, function, address) instead of the default report; in a child,
 * which it leaves with the verdict as its exit status. */
static void* volatile g_double_freed;

static void exit_with_verdict(enum os_error_kind kind, const char* operation, const void* address) {
  _exit(kind == OS_ERROR_DOUBLE_FREE && strcmp(operation, "free") == 0 && address == g_double_freed
            ? 0
            : 10 + (int)kind);
}

static void error_handler(void) {
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int first_is_null = osmem_malloc_set_error_handler(exit_with_verdict) == NULL;
    const int second_is_ours =
        osmem_malloc_set_error_handler(exit_with_verdict) == exit_with_verdict;
    if (!first_is_null || !second_is_ours) _exit(2);
    g_double_freed = malloc(64);
    free(g_double_freed);
    free(g_double_freed);
    _exit(3); /* the double free went unnoticed */
  }
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork or waitpid failed");
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "the error handler's child: status %d (2: set_error_handler did not return the previous "
        "handler; 3: the double free was not reported; 10+kind: wrong kind, function or address)",
        status);
}

int main(void) {
  if (osmem_malloc_heap_stats == NULL || osmem_malloc_heap_check == NULL ||
      osmem_malloc_set_error_handler == NULL) {
    fprintf(stderr, "dropin: libosmem-malloc is not loaded (no osmem_malloc_heap_stats)\n");
    return 1;
  }
  interposed();
  sse_stores();
  zero_sizes();
  aligned_family();
  enomem();
  realloc_growth();
  trim();
  impossible_requests();
  glibc_statistics();
  malloc_stats_output();
  error_handler();
  CHECK(osmem_malloc_heap_check() == 0, "the heap checker found violations");
  if (g_failures == 0) printf("dropin: all checks passed\n");
  return g_failures == 0 ? 0 : 1;
}
