/* MemorySanitizer on osmem memory, in plain C (GoogleTest and libstdc++ are
 * not MSan-instrumented here, so the C++ tests cannot run under MSan).
 *
 *   msan_test shadow   os_malloc memory is uninitialised, os_calloc memory
 *                      initialised, os_realloc keeps the initialised prefix
 *                      and adds uninitialised bytes, os_free poisons
 *   msan_test branch   branches on an uninitialised byte of an os_malloc
 *                      block: MSan must report use-of-uninitialized-value
 *
 * __msan_test_shadow(p, n) is the offset of the first uninitialised byte of
 * [p, p + n), or -1 when all are initialised. */
#include <sanitizer/msan_interface.h>
#include <stdio.h>
#include <string.h>

#include "osmem/osmem.h"

static int failures;

static void expect(int ok, const char* what) {
  if (!ok) {
    printf("FAILED: %s\n", what);
    ++failures;
  }
}

static int shadow(const void* p, size_t n) {
  return (int)__msan_test_shadow(p, n);
}

static int check_shadow(void) {
  /* Dirty a block first, so reuse of initialised bytes is tested too. */
  char* old = os_malloc(200);
  memset(old, 1, 200);
  os_free(old);
  /* The first 8 bytes of a free block hold the best-fit index's links,
   * which osmem wrote: initialised. The rest is uninitialised again. */
  expect(shadow(old + 8, 192) == 0, "os_free makes the payload uninitialised");

  char* p = os_malloc(100);
  expect(shadow(p, 100) == 0, "os_malloc memory is uninitialised");
  memset(p, 2, 60);
  expect(shadow(p, 60) == -1 && shadow(p, 100) == 60, "written bytes become initialised");

  char* z = os_calloc(10, 10);
  expect(shadow(z, 100) == -1, "os_calloc memory (heap) is initialised");
  char* zm = os_calloc(1000, 10);
  expect(shadow(zm, 10000) == -1, "os_calloc memory (mapped) is initialised");
  char* m = os_malloc(300000);
  expect(shadow(m, 300000) == 0, "mapped os_malloc memory is uninitialised");

  memset(p, 3, 100);
  char* grown = os_realloc(p, 4000); /* the heap's last block: grows in place */
  expect(grown != NULL && shadow(grown, 100) == -1, "os_realloc keeps the initialised prefix");
  expect(shadow(grown + 104, 3896) == 0, "os_realloc's new bytes are uninitialised");
  char* moved = os_realloc(grown, 200000); /* past the mmap threshold: always moves */
  expect(moved != grown && shadow(moved, 100) == -1, "a moved block keeps its initialised prefix");
  expect(shadow(moved + 104, 199896) == 0, "a moved block's new bytes are uninitialised");

  os_free(moved);
  os_free(m);
  os_free(zm);
  os_free(z);
  printf("msan_test shadow: %d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}

static int branch_on_uninitialised(void) {
  char* p = os_malloc(16);
  p[0] = 1;
  if (p[5] == 42) printf("never mind\n"); /* MSan stops here */
  printf("msan_test branch: MSan said nothing\n");
  return 1;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "shadow") == 0) return check_shadow();
  if (argc == 2 && strcmp(argv[1], "branch") == 0) return branch_on_uninitialised();
  fprintf(stderr, "usage: msan_test shadow|branch\n");
  return 2;
}
