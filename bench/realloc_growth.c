/* One buffer grown by realloc in fixed steps, each new step written once:
 * how a log, a vector or a read-everything loop grows. Prints the seconds
 * the whole growth took, so the same binary can be timed under each malloc
 * (bench/dropin runs it under glibc and LD_PRELOAD=libosmem-malloc.so).
 *
 *   realloc_growth [STEP_KIB [TOTAL_MIB]]     defaults: 64 KiB steps to 64 MiB */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char** argv) {
  const size_t step = (argc > 1 ? strtoul(argv[1], NULL, 10) : 64) << 10;
  const size_t total = (argc > 2 ? strtoul(argv[2], NULL, 10) : 64) << 20;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  unsigned char* buf = NULL;
  unsigned long sum = 0;
  for (size_t n = step; n <= total; n += step) {
    unsigned char* next = realloc(buf, n);
    if (next == NULL) {
      fprintf(stderr, "realloc_growth: realloc(%zu) failed\n", n);
      return 1;
    }
    buf = next;
    memset(buf + n - step, (int)(n / step), step);
    sum += buf[n / 2];
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  free(buf);
  const double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("%.4f\n", secs);
  return sum == 0;  /* keeps the reads */
}
