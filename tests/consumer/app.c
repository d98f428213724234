/* A consumer's program: every call of the C API once, with checks, so a
 * link that resolves but misbehaves still fails. Prints "app: ok". */
#include <osmem/osmem.h>
#include <stdio.h>
#include <string.h>

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "app: check failed: %s (line %d)\n", #cond, __LINE__); \
      return 1;                                                              \
    }                                                                        \
  } while (0)

int main(void) {
  char* a = os_malloc(100);
  CHECK(a != NULL);
  strcpy(a, "consumer");
  unsigned char* z = os_calloc(16, 8);
  CHECK(z != NULL);
  for (int i = 0; i < 128; ++i) CHECK(z[i] == 0);
  char* b = os_realloc(a, 5000);
  CHECK(b != NULL);
  CHECK(strcmp(b, "consumer") == 0);
  void* big = os_malloc(200 * 1024); /* mapped */
  CHECK(big != NULL);
  struct os_heap_stats st;
  CHECK(os_heap_stats(&st) == 0);
  CHECK(st.mapped_blocks == 1);
  CHECK(st.heap_blocks >= 2);
  CHECK(os_heap_check() == 0);
  os_free(big);
  os_free(z);
  os_free(b);
  CHECK(os_heap_stats(&st) == 0 && st.mapped_blocks == 0);
  puts("app: ok");
  return 0;
}
