/* libosmem-malloc: osmem as the process's malloc.
 *
 * libosmem-malloc.so defines malloc, free, calloc, realloc, reallocarray,
 * posix_memalign, aligned_alloc, memalign, valloc, pvalloc,
 * malloc_usable_size, malloc_trim, mallopt, mallinfo, mallinfo2 and
 * malloc_stats with glibc's semantics (docs/contract.md, part II). Load it
 * with LD_PRELOAD or link it. This header declares what it adds: the
 * checker and introspection for the heap behind malloc. Their names cannot
 * clash with libosmem.so's os_* functions, so a program may link one
 * library and preload the other. */
#ifndef OSMEM_MALLOC_H
#define OSMEM_MALLOC_H

#include <osmem/osmem.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Runs the full heap checker over malloc's heap. Returns 0 when it is
 * consistent, else the number of violations (each described on stderr). */
OSMEM_API int osmem_malloc_heap_check(void);

/* Writes malloc's heap to fd in the format of docs/heap-dump.md. */
OSMEM_API void osmem_malloc_heap_dump(int fd);

/* Fills *out (the fields of os_heap_stats; mremap_calls and trims count);
 * returns 0, or -1 when out is NULL. */
OSMEM_API int osmem_malloc_heap_stats(struct os_heap_stats* out);

/* Called on a fatal error in malloc's heap (double free, invalid pointer,
 * use after free, ...) with the kind, the function ("free", "realloc", ...)
 * and the address. If it returns, the process aborts. NULL restores the
 * default (a line on stderr, then abort). Returns the previous handler. */
typedef void (*osmem_malloc_error_handler)(enum os_error_kind kind, const char* operation,
                                           const void* address);
OSMEM_API osmem_malloc_error_handler osmem_malloc_set_error_handler(osmem_malloc_error_handler h);

#ifdef __cplusplus
}
#endif

#endif /* OSMEM_MALLOC_H */
