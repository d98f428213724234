/* A small tour of the allocator: allocate, grow, shrink, free, and print the
 * heap after each step. Run it with OSMEM_CHECK=full to have every call
 * checked. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "osmem/osmem.h"

static void show(const char* what) {
  printf("\n== %s\n", what);
  fflush(stdout);
  os_heap_dump(STDOUT_FILENO);
}

int main(void) {
  char* a = os_malloc(100);
  char* b = os_calloc(10, 8);
  char* c = os_malloc(1000);
  strcpy(a, "hello, heap");
  show("three small blocks (the first carved from the 128 KiB preallocation)");

  os_free(b);
  show("b freed: a FREE block between a and c");

  a = os_realloc(a, 150);
  show("a grown in place by absorbing the free block after it");

  char* big = os_malloc(200 * 1024);
  show("a 200 KiB block: mapped, outside the heap");

  os_free(big);
  os_free(c);
  os_free(a);
  show("everything freed: one FREE block spans the heap");

  /* A fragmented heap (the picture in docs/heapmap.png): blocks of mixed
   * sizes, every third one freed, beside a live mapping. Best fit fills
   * holes first, so the heap grows past its first 128 KiB only once they
   * are used. */
  enum { kBlocks = 120 };
  void* blocks[kBlocks];
  for (int i = 0; i < kBlocks; ++i) blocks[i] = os_malloc(64 + (size_t)(i * 37 % 23) * 96);
  for (int i = 0; i < kBlocks; i += 3) os_free(blocks[i]);
  big = os_malloc(160 * 1024);
  show("fragmented: 120 blocks of 64..2176 bytes, every third freed, one mapping");
  for (int i = 0; i < kBlocks; ++i) {
    if (i % 3 != 0) os_free(blocks[i]);
  }
  os_free(big);

  struct os_heap_stats st;
  os_heap_stats(&st);
  printf("\nsbrk calls %zu, mmap calls %zu, munmap calls %zu, heap check: %d violation(s)\n",
         st.sbrk_calls, st.mmap_calls, st.munmap_calls, os_heap_check());
  return os_heap_check() == 0 ? 0 : 1;
}
