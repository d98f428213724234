/* Rule 15 in a real process: osmem never writes to the payload of a FREE
 * heap block. A C program linked to libosmem (the real sbrk, the metadata
 * area reserved at load time) frees blocks and reads their bytes back, as
 * programs written against the seed's allocator do after a moving realloc.
 * It is a use after free on purpose, so it is not built with a sanitizer.
 *
 * Checked: a freed block keeps every byte (the first 8 too, where an index
 * threaded through free payloads would put its links); a block freed
 * between two free neighbours, whose header and payload merge into one
 * block, keeps its payload and theirs; a moving os_realloc leaves the old
 * block's bytes intact and copies them; and the statistics show one index
 * record per FREE block, kept outside the heap. Exits 1 naming the first
 * byte that changed. */
/* Reading a block after os_free is the point of this test; GCC 12 sees the
 * header's malloc(os_free) attribute and would warn. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif
#include <osmem/osmem.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;

static unsigned char pattern(unsigned tag, size_t i) {
  return (unsigned char)(tag * 31u + i * 7u + (i >> 8));
}

static void fill(void* p, size_t n, unsigned tag) {
  unsigned char* b = p;
  for (size_t i = 0; i < n; ++i) b[i] = pattern(tag, i);
}

/* Reads through a volatile pointer: the compiler may assume nothing about
 * memory it was told was freed. */
static void expect_intact(const char* what, const void* p, size_t n, unsigned tag) {
  const volatile unsigned char* b = p;
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != pattern(tag, i)) {
      fprintf(stderr, "freed_bytes: %s: byte %zu of %zu is 0x%02x, was 0x%02x\n", what, i, n, b[i],
              pattern(tag, i));
      ++failures;
      return;
    }
  }
}

int main(void) {
  /* Every block first, so that no later request reuses a freed one. */
  void* a = os_malloc(100);
  void* guard1 = os_malloc(16);
  void* x = os_malloc(200);
  void* y = os_malloc(300);
  void* z = os_malloc(400);
  void* guard2 = os_malloc(16);
  void* old = os_malloc(64);
  void* guard3 = os_malloc(16); /* the old block cannot grow in place */

  /* One freed block between two live ones: no merge. */
  fill(a, 100, 1);
  os_free(a);
  expect_intact("os_free of a block between live ones", a, 100, 1);

  /* x, y, z touch; x and z freed first, then y merges with both (y's
   * header and z's become payload of x's block; the payloads stay). */
  fill(x, 200, 2);
  fill(y, 300, 3);
  fill(z, 400, 4);
  os_free(x);
  os_free(z);
  os_free(y);
  expect_intact("merged block, first part", x, 200, 2);
  expect_intact("merged block, middle part", y, 300, 3);
  expect_intact("merged block, last part", z, 400, 4);

  /* A moving realloc: the old block is freed after the copy. */
  fill(old, 64, 5);
  void* moved = os_realloc(old, 5000);
  if (moved == NULL || moved == old) {
    fprintf(stderr, "freed_bytes: os_realloc(64 -> 5000) did not move (%p -> %p)\n", old, moved);
    return 1;
  }
  expect_intact("the new block of a moving os_realloc", moved, 64, 5);
  expect_intact("the old block of a moving os_realloc", old, 64, 5);

  struct os_heap_stats s;
  if (os_heap_stats(&s) != 0) return 1;
  if (s.index_record_bytes != 24 || s.index_records != s.free_blocks ||
      s.index_records_max < s.index_records || s.index_record_capacity == 0 ||
      s.heap_span_limit != s.index_record_capacity * 40 || s.heap_span > s.heap_span_limit) {
    fprintf(stderr,
            "freed_bytes: index records: %zu bytes each, %zu in use, %zu at most, capacity %zu, "
            "span limit %zu; %zu FREE blocks, span %zu\n",
            s.index_record_bytes, s.index_records, s.index_records_max, s.index_record_capacity,
            s.heap_span_limit, s.free_blocks, s.heap_span);
    ++failures;
  }
  if (os_heap_check() != 0) ++failures;
  os_free(moved);
  os_free(guard1);
  os_free(guard2);
  os_free(guard3);
  if (failures == 0) {
    printf("freed_bytes: every freed byte intact; %zu index records of %zu bytes (capacity %zu)\n",
           s.index_records, s.index_record_bytes, s.index_record_capacity);
  }
  return failures == 0 ? 0 : 1;
}
