/* Fork while one thread is in getline and another in fflush(NULL).
 *
 * getline holds its FILE's lock for the whole call and allocates (malloc,
 * then realloc as the line grows) under it. fflush(NULL) holds glibc's
 * stdio list lock while it takes each FILE's lock in turn, so it waits for
 * the reader. glibc's fork runs the pthread_atfork prepare handlers first,
 * then takes the list lock, then its own malloc locks. A preloaded malloc
 * that locks its heap in a prepare handler therefore closes a cycle: fork
 * holds the heap lock and waits for the list lock, fflush holds the list
 * lock and waits for the FILE lock, getline holds the FILE lock and waits
 * for the heap lock. The trial process then never returns from fork.
 *
 * Each trial: a writer thread feeds lines of 100 B to 300 KB through a pipe,
 * a reader thread getlines them (freeing each line, so every call allocates
 * afresh) and checks them, a flusher thread calls fflush(NULL) in a loop, and
 * the main thread forks four times. Each child must allocate, free and
 * _exit within kChildLimitMs (not exit(): that flushes stdio, and the
 * reader's FILE lock, copied held into the child, would stop it whatever
 * the malloc). Generic over the malloc (fresh_trials.h).
 *
 *   fork_while_getline TRIALS [--max-hangs N] [--symbol NAME] */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fresh_trials.h"

enum { kForks = 4, kWarmLines = 3, kSetupLimitMs = 5000 };
enum { kMaxLine = 300000 };

static atomic_int g_stop;
static atomic_long g_lines;
static atomic_long g_flushes;
static atomic_int g_bad;

static size_t line_length(uint64_t* x) {
  static const size_t lengths[] = {100, 5000, 70000, kMaxLine};
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return lengths[*x % 4] - (*x >> 8) % 64;
}

static void* writer(void* arg) {
  const int fd = (int)(intptr_t)arg;
  char* buf = malloc(kMaxLine + 1);
  uint64_t x = 0x2545f4914f6cdd1dull ^ (uint64_t)getpid();
  for (unsigned n = 0; buf != NULL && !atomic_load(&g_stop); ++n) {
    const size_t len = line_length(&x);
    memset(buf, 'a' + n % 26, len);
    buf[len] = '\n';
    for (size_t done = 0; done < len + 1;) {
      const ssize_t w = write(fd, buf + done, len + 1 - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        atomic_store(&g_bad, 1);
        goto out;
      }
      done += (size_t)w;
    }
  }
out:
  free(buf);
  close(fd);
  return NULL;
}

static void* reader(void* arg) {
  FILE* in = arg;
  char* line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, in)) > 0) {
    if (line[len - 1] != '\n' || line[0] != line[len - 2] || line[0] < 'a' || line[0] > 'z')
      atomic_store(&g_bad, 1);
    free(line);
    line = NULL;
    cap = 0;
    atomic_fetch_add(&g_lines, 1);
  }
  free(line);
  return NULL;
}

static void* flusher(void* arg) {
  (void)arg;
  while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
    fflush(NULL);
    atomic_fetch_add_explicit(&g_flushes, 1, memory_order_relaxed);
  }
  return NULL;
}

static void child_allocates(void) {
  char* small = malloc(64);
  char* big = malloc(200000);
  if (small == NULL || big == NULL) _exit(kTrialChildFailed);
  memset(small, 1, 64);
  memset(big, 2, 200000);
  char* grown = realloc(small, 5000);
  if (grown == NULL || grown[63] != 1) _exit(kTrialChildFailed);
  free(grown);
  free(big);
  _exit(kTrialOk);
}

static int one_trial(void) {
  int fds[2];
  if (pipe(fds) != 0) return kTrialSetupFailed;
  FILE* in = fdopen(fds[0], "r");
  if (in == NULL) return kTrialSetupFailed;
  pthread_t w, r, f;
  if (pthread_create(&w, NULL, writer, (void*)(intptr_t)fds[1]) != 0) return kTrialSetupFailed;
  if (pthread_create(&r, NULL, reader, in) != 0) return kTrialSetupFailed;
  if (pthread_create(&f, NULL, flusher, NULL) != 0) return kTrialSetupFailed;

  int result = kTrialOk;
  const long deadline = now_ms() + kSetupLimitMs;
  while (atomic_load(&g_lines) < kWarmLines || atomic_load(&g_flushes) < 1) {
    if (now_ms() > deadline) {
      result = kTrialSetupFailed;
      break;
    }
    sched_yield();
  }
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
  /* The writer closes its end; the reader then meets end of file. */
  atomic_store(&g_stop, 1);
  pthread_join(w, NULL);
  pthread_join(r, NULL);
  pthread_join(f, NULL);
  fclose(in);
  if (atomic_load(&g_bad) && result == kTrialOk) result = kTrialChildFailed;
  return result;
}

int main(int argc, char** argv) {
  return run_fresh_trials(argc, argv, "fork while threads are in getline and fflush(NULL)",
                          one_trial);
}
