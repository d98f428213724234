/* A real process that moves the program break itself between os_malloc
 * calls (docs/contract.md rule 6d): os_malloc(100); sbrk(3); then 100
 * requests of 130912 bytes, each too big for the FREE last block. The first
 * request after the foreign move must cost exactly two sbrk calls and land
 * at ALIGN8(break + 3) + 32; each later one exactly one sbrk, contiguous
 * with the previous block; none may be mapped; and the FREE last block must
 * still serve a request it fits. Counts come from os_heap_stats. Exits 0
 * when all holds, 1 with one line per broken expectation otherwise. */
#include <osmem/osmem.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

enum { kHeader = 32, kNeed = 130912, kRequests = 100, kFreeTail = 130904 };

static int failures = 0;

static void expect(int ok, const char* what, unsigned long got, unsigned long want) {
  if (ok) return;
  ++failures;
  /* stderr is unbuffered: no malloc, so no further move of the break. */
  fprintf(stderr, "foreign_sbrk: %s: got %lu, want %lu\n", what, got, want);
}

static struct os_heap_stats stats(void) {
  struct os_heap_stats st;
  if (os_heap_stats(&st) != 0) {
    fprintf(stderr, "foreign_sbrk: os_heap_stats failed\n");
    _exit(2);
  }
  return st;
}

int main(void) {
  char* first = os_malloc(100);
  if (first == NULL) {
    fprintf(stderr, "foreign_sbrk: os_malloc(100) failed\n");
    return 2;
  }
  const struct os_heap_stats before = stats();

  char* old_break = sbrk(3); /* the foreign move */
  if (old_break == (char*)-1) {
    fprintf(stderr, "foreign_sbrk: sbrk(3) failed\n");
    return 2;
  }
  char* p = os_malloc(kNeed);
  const struct os_heap_stats after_first = stats();
  const uintptr_t header = ((uintptr_t)old_break + 3 + 7) & ~(uintptr_t)7;
  expect((uintptr_t)p == header + kHeader, "first request's address - the old break",
         (unsigned long)((uintptr_t)p - (uintptr_t)old_break),
         (unsigned long)(header + kHeader - (uintptr_t)old_break));
  expect(after_first.sbrk_calls - before.sbrk_calls == 2, "sbrk calls of the first request",
         after_first.sbrk_calls - before.sbrk_calls, 2);

  for (int k = 1; k < kRequests; ++k) {
    const struct os_heap_stats st = stats();
    char* q = os_malloc(kNeed);
    const struct os_heap_stats st2 = stats();
    expect(q == p + kNeed + kHeader, "request's distance from the previous one",
           (unsigned long)(q - p), kNeed + kHeader);
    expect(st2.sbrk_calls - st.sbrk_calls == 1, "sbrk calls of a later request",
           st2.sbrk_calls - st.sbrk_calls, 1);
    p = q;
  }
  const struct os_heap_stats end = stats();
  expect(end.sbrk_calls - before.sbrk_calls == 2 + (kRequests - 1),
         "sbrk calls of all 100 requests", end.sbrk_calls - before.sbrk_calls, 2 + (kRequests - 1));
  expect(end.mmap_calls == 0, "mmap calls", end.mmap_calls, 0);
  expect(end.mapped_blocks == 0, "mapped blocks", end.mapped_blocks, 0);
  expect(end.heap_segments == 2, "heap segments", end.heap_segments, 2);

  /* The FREE last block of the first segment is found by best fit. */
  char* reused = os_malloc(kFreeTail);
  const struct os_heap_stats last = stats();
  expect(reused == first + 104 + kHeader, "old free tail's payload - first block's",
         (unsigned long)(reused - first), 104 + kHeader);
  expect(last.sbrk_calls == end.sbrk_calls, "sbrk calls when reusing the free tail",
         last.sbrk_calls - end.sbrk_calls, 0);
  expect(os_heap_check() == 0, "heap check violations", 0, 0);

  /* Last, since stdout may allocate (and move the break). */
  printf(
      "foreign_sbrk: 100 requests after sbrk(3): %lu sbrk calls, %lu mmap calls, "
      "%lu bytes mapped\n",
      (unsigned long)(end.sbrk_calls - before.sbrk_calls), (unsigned long)end.mmap_calls,
      (unsigned long)end.mapped_bytes);
  return failures == 0 ? 0 : 1;
}
