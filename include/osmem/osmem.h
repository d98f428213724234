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

/* Allocation attributes, as glibc declares malloc and friends: they let the
 * compiler's -Wall, -Wstringop-overflow and _FORTIFY_SOURCE checks see the
 * size of a block (alloc_size), that a new block aliases nothing (malloc),
 * that dropping the result leaks (warn_unused_result) and, with GCC 11 or
 * later, that a block goes back through os_free and not free
 * (-Wmismatched-dealloc). Each is left out on compilers that lack it.
 * alloc_align does not apply: no os_* call takes an alignment. */
#if defined(__has_attribute)
#define OSMEM_HAS_ATTRIBUTE(x) __has_attribute(x)
#else
#define OSMEM_HAS_ATTRIBUTE(x) 0
#endif
#if OSMEM_HAS_ATTRIBUTE(malloc)
#define OSMEM_ATTR_MALLOC __attribute__((__malloc__))
#else
#define OSMEM_ATTR_MALLOC
#endif
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define OSMEM_ATTR_DEALLOC_OS_FREE __attribute__((__malloc__(os_free, 1)))
#else
#define OSMEM_ATTR_DEALLOC_OS_FREE
#endif
#if OSMEM_HAS_ATTRIBUTE(alloc_size)
#define OSMEM_ATTR_ALLOC_SIZE(n) __attribute__((__alloc_size__(n)))
#define OSMEM_ATTR_ALLOC_SIZE2(n, m) __attribute__((__alloc_size__(n, m)))
#else
#define OSMEM_ATTR_ALLOC_SIZE(n)
#define OSMEM_ATTR_ALLOC_SIZE2(n, m)
#endif
#if OSMEM_HAS_ATTRIBUTE(warn_unused_result)
#define OSMEM_ATTR_WARN_UNUSED_RESULT __attribute__((__warn_unused_result__))
#else
#define OSMEM_ATTR_WARN_UNUSED_RESULT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Frees a block from os_malloc, os_calloc or os_realloc; NULL is a no-op.
 * Any other pointer is a fatal error (docs/contract.md). */
OSMEM_API void os_free(void* ptr);

/* size bytes, 8-aligned, uninitialised. size 0 returns NULL; failure returns
 * NULL with errno = ENOMEM. */
OSMEM_API void* os_malloc(size_t size) OSMEM_ATTR_MALLOC OSMEM_ATTR_DEALLOC_OS_FREE
    OSMEM_ATTR_ALLOC_SIZE(1) OSMEM_ATTR_WARN_UNUSED_RESULT;
/* nmemb * size zeroed bytes; NULL with errno = ENOMEM on overflow or failure. */
OSMEM_API void* os_calloc(size_t nmemb, size_t size) OSMEM_ATTR_MALLOC OSMEM_ATTR_DEALLOC_OS_FREE
    OSMEM_ATTR_ALLOC_SIZE2(1, 2) OSMEM_ATTR_WARN_UNUSED_RESULT;
/* Resizes ptr's block in place or moves it (docs/contract.md). Not declared
 * malloc, as realloc is not: the block keeps its old contents, pointers
 * included. */
OSMEM_API void* os_realloc(void* ptr, size_t size) OSMEM_ATTR_DEALLOC_OS_FREE
    OSMEM_ATTR_ALLOC_SIZE(2) OSMEM_ATTR_WARN_UNUSED_RESULT;

/* Runs the full heap checker. Returns 0 when the heap is consistent, else the
 * number of violations found (each is also described on stderr). */
OSMEM_API int os_heap_check(void);

/* Writes the heap to fd as text: a "heap" line, one "block" line per block
 * (user pointer, header address, size, status, links), a "summary" line;
 * the format is docs/heap-dump.md (read by `osmem heapmap` and `osmem
 * dump`). Uses no heap. */
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
  /* The index's records, kept outside the heap (one per FREE heap block;
   * docs/contract.md rules 14 and 15). Appended: older fields keep their
   * offsets. */
  size_t index_record_bytes;    /* bytes per record (24) */
  size_t index_records;         /* records in use: one per FREE heap block */
  size_t index_records_max;     /* high-water mark: records ever touched */
  size_t index_record_capacity; /* records the reserved metadata area holds */
  size_t heap_span_limit;       /* most bytes heap segments may hold (rule 14) */
  /* Under malloc's rules (libosmem-malloc; always 0 for os_*). */
  size_t mremap_calls; /* mremap calls made, failed ones included */
  size_t trims;        /* times the top of the heap was given back with sbrk */
};

/* Fills *out; returns 0, or -1 when out is NULL. */
OSMEM_API int os_heap_stats(struct os_heap_stats* out);

enum os_error_kind {
  OS_ERROR_DOUBLE_FREE = 1,
  OS_ERROR_INVALID_POINTER,
  OS_ERROR_MISALIGNED_POINTER,
  OS_ERROR_HEADER_CORRUPTED,
  OS_ERROR_HEAP_INCONSISTENT,
  OS_ERROR_FOREIGN_BREAK,
  /* realloc of a freed block under malloc's rules (libosmem-malloc); the
   * os_* functions keep the seed's rule (NULL, nothing changed). */
  OS_ERROR_USE_AFTER_FREE,
  /* With a check level on (OSMEM_CHECK): a freed block's payload changed
   * before osmem handed its memory out again (docs/debug-mode.md). */
  OS_ERROR_WRITE_AFTER_FREE
};

/* Called on a fatal error with its kind, the operation ("os_free", ...) and
 * the address involved. If the handler returns, the process aborts. Passing
 * NULL restores the default handler (print to stderr, abort). Returns the
 * previous handler. */
typedef void (*os_error_handler)(enum os_error_kind kind, const char* operation,
                                 const void* address);
OSMEM_API os_error_handler os_set_error_handler(os_error_handler handler);

/* The name of an error kind, as reports print it: "double free", "invalid
 * pointer", "misaligned pointer", "header corrupted", "heap inconsistent",
 * "foreign break", "use after free"; "unknown error" for any other value.
 * A static string. Takes an int, so that any value (an enum os_error_kind
 * converts implicitly) is a defined call. */
OSMEM_API const char* os_error_name(int kind);

#ifdef __cplusplus
}
#endif

#endif /* OSMEM_OSMEM_H */
