/* The seed's contract in a real process: osmem's first heap allocation is
 * carved from the program's initial break. A C program linked to libosmem
 * records sbrk(0) first thing in main; the first os_malloc must return that
 * break + 32 after exactly one sbrk of 128 KiB and no mapping. It fails when
 * anything loaded with the library (the C++ runtime, say) allocated with the
 * process's malloc before main and so moved the break: the break in main
 * must still be the kernel's start_brk (/proc/self/stat, field 47).
 *
 * With --mark, a write to fd -1 (it fails with EBADF; strace shows it) marks
 * the call, so a tracer can check that the first system call osmem makes is
 * that sbrk (first_break_strace.sh). Prints the initial break last. */
#include <fcntl.h>
#include <osmem/osmem.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char kMark[] = "osmem-first-call";

/* The kernel's start_brk for this process, read without any allocation
 * (stdio would call malloc); 0 when it cannot be read. */
static uintptr_t kernel_start_brk(void) {
  char buf[4096];
  const int fd = open("/proc/self/stat", O_RDONLY);
  if (fd < 0) return 0;
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  /* Field 2 is "(comm)" and may hold spaces: count from the last ')'. */
  char* p = strrchr(buf, ')');
  if (p == NULL) return 0;
  int field = 2;
  while (*p != '\0' && field < 47) {
    if (*p++ == ' ') ++field;
  }
  return field == 47 ? (uintptr_t)strtoull(p, NULL, 10) : 0;
}

int main(int argc, char** argv) {
  char* initial = sbrk(0);
  const uintptr_t start_brk = kernel_start_brk();
  const int mark = argc > 1 && strcmp(argv[1], "--mark") == 0;
  if (mark && write(-1, kMark, sizeof kMark - 1) != -1) return 2;
  char* p = os_malloc(100);
  char* after = sbrk(0);
  struct os_heap_stats st;
  os_heap_stats(&st);

  int failures = 0;
  if (start_brk == 0) {
    fprintf(stderr, "cannot read start_brk from /proc/self/stat\n");
    ++failures;
  } else if ((uintptr_t)initial != start_brk) {
    fprintf(stderr, "the break in main is %p but the process started with %p: something loaded "
            "with osmem moved it by %td bytes before main\n",
            (void*)initial, (void*)start_brk, initial - (char*)start_brk);
    ++failures;
  }
  if ((uintptr_t)initial % 8 != 0) {
    fprintf(stderr, "initial break %p is not 8-aligned\n", (void*)initial);
    ++failures;
  }
  if (p != initial + 32) {
    fprintf(stderr, "first os_malloc(100) returned %p; the initial break is %p, so %p was due "
            "(something moved the break before main: %+td bytes)\n",
            (void*)p, (void*)initial, (void*)(initial + 32), p - (initial + 32));
    ++failures;
  }
  if (after != initial + 131072) {
    fprintf(stderr, "break after the first call is %p, expected initial + 131072 = %p\n",
            (void*)after, (void*)(initial + 131072));
    ++failures;
  }
  if (st.sbrk_calls != 1 || st.mmap_calls != 0 || st.munmap_calls != 0) {
    fprintf(stderr, "system calls: %zu sbrk, %zu mmap, %zu munmap; expected 1, 0, 0\n",
            st.sbrk_calls, st.mmap_calls, st.munmap_calls);
    ++failures;
  }
  os_free(p);
  printf("initial break %p\n", (void*)initial);
  return failures == 0 ? 0 : 1;
}
