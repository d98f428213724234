/* Run under valgrind --leak-check=full by memcheck_test.sh: leaks one
 * os_malloc block and reads one freed block. Memcheck can name both only if
 * osmem describes its blocks with client requests (OSMEM_VALGRIND). */
#include <stdio.h>
#include <string.h>

#include "osmem/osmem.h"

/* Out of line, and the stack it used is overwritten afterwards, so no copy
 * of the pointer survives for the leak checker to find. */
__attribute__((noinline)) static void leak_one_block(void) {
  char* volatile p = os_malloc(100);
  memset(p, 'x', 100);
}

__attribute__((noinline)) static void scrub_stack(void) {
  volatile char junk[4096];
  for (size_t i = 0; i < sizeof junk; ++i) junk[i] = 0;
}

int main(void) {
  leak_one_block();
  scrub_stack();
  char* q = os_malloc(64);
  memset(q, 'y', 64);
  os_free(q);
  volatile char c = q[3]; /* a read of a freed block */
  (void)c;
  printf("memcheck_program: done\n");
  return 0;
}
