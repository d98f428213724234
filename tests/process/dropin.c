/* libosmem-malloc in a real process: linked with libosmem-malloc.so, with
 * libosmem-malloc.a, or not at all and run under LD_PRELOAD. Either way the
 * process's malloc must be osmem's (the introspection functions are weak
 * references, resolved by whichever way the library came in, and their
 * counts must move with malloc's), and it must
 * keep what programs rely on (docs/contract.md, part II): 16-byte alignment
 * (an SSE store into every block), malloc(0), realloc(p, 0), the aligned
 * family and its EINVAL cases, ENOMEM, a buffer grown to 64 MiB in 64 KiB
 * steps without a copy per step (mremap), the top of the heap given back
 * after a free, and a clean heap check at the end.
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
#include <unistd.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
/* A failed reallocarray leaves the block live; GCC cannot know it failed. */
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif

static int g_failures;

#define CHECK(cond, ...)                                       \
  do {                                                         \
    if (!(cond)) {                                             \
      ++g_failures;                                            \
      fprintf(stderr, "dropin: %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                            \
      fputc('\n', stderr);                                     \
    }                                                          \
  } while (0)

#pragma weak osmem_malloc_heap_stats
#pragma weak osmem_malloc_heap_check

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

int main(void) {
  if (osmem_malloc_heap_stats == NULL || osmem_malloc_heap_check == NULL) {
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
  CHECK(osmem_malloc_heap_check() == 0, "the heap checker found violations");
  if (g_failures == 0) printf("dropin: all checks passed\n");
  return g_failures == 0 ? 0 : 1;
}
