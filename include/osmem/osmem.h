/* osmem: a checked sbrk/mmap allocator with a C ABI.
 *
 * The allocation contract (which system call each request makes, and which
 * address it returns) is specified in docs/contract.md. */
#ifndef OSMEM_OSMEM_H
#define OSMEM_OSMEM_H

#include <stddef.h>

#if defined(__GNUC__)
#define OSMEM_API __attribute__((visibility("default")))
#else
#define OSMEM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

OSMEM_API void* os_malloc(size_t size);
OSMEM_API void* os_calloc(size_t nmemb, size_t size);
OSMEM_API void* os_realloc(void* ptr, size_t size);
OSMEM_API void os_free(void* ptr);

/* Runs the full heap checker. Returns 0 when the heap is consistent, else the
 * number of violations found (each is also described on stderr). */
OSMEM_API int os_heap_check(void);

/* Writes one line per block (address, size, status) to fd. Uses no heap. */
OSMEM_API void os_heap_dump(int fd);

struct os_heap_stats {
  size_t heap_blocks;       /* blocks on the heap list */
  size_t free_blocks;       /* of which FREE */
  size_t heap_bytes_in_use; /* payload capacity of ALLOC heap blocks */
  size_t heap_bytes_free;   /* payload capacity of FREE heap blocks */
  size_t heap_span;         /* bytes in heap segments, headers included */
  size_t heap_segments;     /* contiguous sbrk segments */
  size_t mapped_blocks;     /* live mapped blocks */
  size_t mapped_bytes;      /* their mapped length, headers included */
  size_t sbrk_calls;        /* sbrk calls made, failed ones included */
  size_t mmap_calls;
  size_t munmap_calls;
  size_t searches;          /* best-fit searches made */
  size_t search_visits;     /* blocks inspected by those searches */
  size_t search_visits_max; /* most blocks inspected by one search */
  size_t index_operations;  /* searches, insertions and removals in the free index */
  size_t index_visits;      /* blocks those operations inspected */
  size_t index_visits_max;  /* most blocks inspected by one of them */
};

/* Fills *out; returns 0, or -1 when out is NULL. */
OSMEM_API int os_heap_stats(struct os_heap_stats* out);

enum os_error_kind {
  OS_ERROR_DOUBLE_FREE = 1,
  OS_ERROR_INVALID_POINTER,
  OS_ERROR_MISALIGNED_POINTER,
  OS_ERROR_HEADER_CORRUPTED,
  OS_ERROR_HEAP_INCONSISTENT,
  OS_ERROR_FOREIGN_BREAK
};

/* Called on a fatal error with its kind, the operation ("os_free", ...) and
 * the address involved. If the handler returns, the process aborts. Passing
 * NULL restores the default handler (print to stderr, abort). Returns the
 * previous handler. */
typedef void (*os_error_handler)(enum os_error_kind kind, const char* operation,
                                 const void* address);
OSMEM_API os_error_handler os_set_error_handler(os_error_handler handler);

#ifdef __cplusplus
}
#endif

#endif /* OSMEM_OSMEM_H */
