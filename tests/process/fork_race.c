/* No fork window on the first call. In a fresh process, a thread makes the
 * process's very first os_* call while the main thread forks; the child then
 * calls os_malloc(32), which must return. If the fork handlers were
 * registered inside the first call (under the heap lock), a fork landing
 * in that window copies a held lock into the child and the child hangs.
 *
 *   fork_race TRIALS     run TRIALS trials, each in a freshly exec'd process
 *   fork_race --trial    one trial (what the driver execs)
 *
 * A child that has not finished within kChildLimitMs counts as hung; the
 * driver reports each hung trial by number and stops after kMaxHangs, so a
 * broken library fails in seconds instead of stalling CI. */
#define _GNU_SOURCE
#include <osmem/osmem.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fresh_trials.h" /* now_ms, wait_limited */

enum { kTrialLimitMs = 20000, kMaxHangs = 5 }; /* kChildLimitMs: fresh_trials.h */
enum { kOk = 0, kChildHung = 3, kChildFailed = 4, kSetupFailed = 5 };

static atomic_int g_go;

static void* first_call(void* arg) {
  (void)arg;
  while (!atomic_load(&g_go)) {
  }
  void* p = os_malloc(16);
  return p;
}

static int one_trial(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, first_call, NULL) != 0) return kSetupFailed;
  atomic_store(&g_go, 1);
  const pid_t pid = fork();
  if (pid == 0) {
    void* p = os_malloc(32);
    if (p == NULL) _exit(kChildFailed);
    memset(p, 0xab, 32);
    os_free(p);
    _exit(kOk);
  }
  void* q = NULL;
  pthread_join(t, &q);
  if (q == NULL) return kSetupFailed;
  os_free(q);
  if (pid < 0) return kSetupFailed;
  const int status = wait_limited(pid, kChildLimitMs);
  if (status == -1) return kChildHung;
  if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != kOk) return kChildFailed;
  return kOk;
}

int main(int argc, char** argv) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  if (argc == 2 && strcmp(argv[1], "--trial") == 0) return one_trial();
  if (argc != 2) {
    fprintf(stderr, "usage: %s TRIALS | --trial\n", argv[0]);
    return 2;
  }
  const int trials = atoi(argv[1]);
  int hung = 0, failed = 0;
  for (int i = 1; i <= trials && hung < kMaxHangs; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      execl("/proc/self/exe", argv[0], "--trial", (char*)NULL);
      _exit(127);
    }
    const int status = wait_limited(pid, kTrialLimitMs);
    const int code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == kOk) continue;
    if (code == kChildHung) {
      ++hung;
      fprintf(stderr, "trial %d: the child's os_malloc(32) did not return within %d ms\n", i,
              kChildLimitMs);
    } else {
      ++failed;
      fprintf(stderr, "trial %d: failed (%s %d)\n", i, status == -1 ? "timed out" : "exit code",
              code);
    }
  }
  printf("fork race: %d trials, %d hung, %d other failures%s\n", trials, hung, failed,
         hung >= kMaxHangs ? " (stopped early)" : "");
  return hung == 0 && failed == 0 ? 0 : 1;
}
