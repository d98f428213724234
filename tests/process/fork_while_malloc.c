/* Fork while other threads are inside malloc. Three threads allocate, fill,
 * check and free blocks of every size range (small, page-sized, and large
 * enough to be mapped) in a loop; meanwhile the main thread forks four
 * times, and each child must allocate, use and free memory and _exit within
 * kChildLimitMs. A malloc that lets fork copy a lock held by another thread
 * into the child hangs the child. Generic over the malloc: run it plain for
 * glibc's, under LD_PRELOAD for another (fresh_trials.h).
 *
 *   fork_while_malloc TRIALS [--max-hangs N] [--symbol NAME] */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fresh_trials.h"

enum { kThreads = 3, kForks = 4, kSlots = 64, kWarmOps = 200, kSetupLimitMs = 5000 };

static atomic_int g_stop;
static atomic_long g_ops[kThreads];

static uint64_t next(uint64_t* x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static size_t pick_size(uint64_t r) {
  const unsigned range = r % 100;
  if (range < 70) return 1 + (r >> 8) % 256;
  if (range < 99) return 257 + (r >> 8) % 16384;
  return (128u << 10) + (r >> 8) % (256u << 10);
}

struct slot {
  unsigned char* p;
  size_t size;
  unsigned char tag;
};

static int slot_intact(const struct slot* s) {
  return s->p[0] == s->tag && s->p[s->size - 1] == s->tag;
}

static void fill(struct slot* s, unsigned char tag) {
  s->tag = tag;
  s->p[0] = tag;
  s->p[s->size - 1] = tag;
}

/* Returns NULL, or (void*)1 after a failed allocation or a damaged block. */
static void* churn(void* arg) {
  const int id = (int)(intptr_t)arg;
  uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1) ^ (uint64_t)getpid();
  struct slot slots[kSlots];
  memset(slots, 0, sizeof slots);
  int bad = 0;
  while (!atomic_load_explicit(&g_stop, memory_order_relaxed) && !bad) {
    const uint64_t r = next(&x);
    struct slot* s = &slots[r % kSlots];
    const size_t size = pick_size(next(&x));
    if (s->p != NULL && !slot_intact(s)) {
      bad = 1;
      break;
    }
    const unsigned op = (r >> 16) % 8;
    if (op == 7) {
      free(s->p);
      s->p = NULL;
      continue;
    }
    if (op <= 3) {
      free(s->p);
      s->p = malloc(size);
    } else if (op == 4) {
      free(s->p);
      s->p = calloc(1, size);
      if (s->p != NULL && (s->p[0] != 0 || s->p[size - 1] != 0)) bad = 1;
    } else if (op == 5) {
      const int had = s->p != NULL;
      unsigned char* q = realloc(s->p, size);
      if (q == NULL) {
        free(s->p);
      } else if (had && q[0] != s->tag) {
        bad = 1;
      }
      s->p = q;
    } else {
      void* q = NULL;
      free(s->p);
      s->p = NULL;
      if (posix_memalign(&q, 64, size) == 0) s->p = q;
      if (((uintptr_t)q % 64) != 0) bad = 1;
    }
    if (s->p == NULL) {
      bad = 1;
      break;
    }
    s->size = size;
    fill(s, (unsigned char)(r >> 40));
    atomic_fetch_add_explicit(&g_ops[id], 1, memory_order_relaxed);
  }
  for (int i = 0; i < kSlots; ++i) free(slots[i].p);
  return bad ? (void*)1 : NULL;
}

/* The child: allocate in every size range, check, free, _exit. */
static void child_allocates(void) {
  static const size_t sizes[] = {1, 24, 100, 4000, 70000, 300000, 1u << 20};
  void* p[sizeof sizes / sizeof sizes[0]];
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
    p[i] = malloc(sizes[i]);
    if (p[i] == NULL) _exit(kTrialChildFailed);
    memset(p[i], (int)i + 1, sizes[i]);
  }
  unsigned char* grown = realloc(p[2], 200000);
  if (grown == NULL || grown[99] != 3) _exit(kTrialChildFailed);
  p[2] = grown;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) free(p[i]);
  _exit(kTrialOk);
}

static int stop_threads(pthread_t* threads, int n, int result) {
  atomic_store(&g_stop, 1);
  for (int i = 0; i < n; ++i) {
    void* bad = NULL;
    pthread_join(threads[i], &bad);
    if (bad != NULL && result == kTrialOk) result = kTrialChildFailed;
  }
  return result;
}

static int one_trial(void) {
  pthread_t threads[kThreads];
  for (int i = 0; i < kThreads; ++i) {
    if (pthread_create(&threads[i], NULL, churn, (void*)(intptr_t)i) != 0)
      return stop_threads(threads, i, kTrialSetupFailed);
  }
  /* Fork only once every thread is busy allocating. */
  const long deadline = now_ms() + kSetupLimitMs;
  for (int i = 0; i < kThreads; ++i) {
    while (atomic_load(&g_ops[i]) < kWarmOps) {
      if (now_ms() > deadline) return stop_threads(threads, kThreads, kTrialSetupFailed);
      sched_yield();
    }
  }
  int result = kTrialOk;
  for (int k = 0; k < kForks && result == kTrialOk; ++k) {
    const pid_t pid = fork();
    if (pid == 0) child_allocates();
    if (pid < 0) {
      result = kTrialSetupFailed;
      break;
    }
    const int status = wait_limited(pid, kChildLimitMs);
    if (status == -1) {
      result = kTrialChildHung;
    } else if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != kTrialOk) {
      result = kTrialChildFailed;
    }
  }
  return stop_threads(threads, kThreads, result);
}

int main(int argc, char** argv) {
  return run_fresh_trials(argc, argv, "fork while 3 threads are in malloc", one_trial);
}
