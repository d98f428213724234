/* The driver of fresh_trials.h: fork and exec /proc/self/exe --trial once
 * per trial, so every trial starts from a new process (a fresh heap, no
 * threads), with a time limit on each. */
#define _GNU_SOURCE
#include "fresh_trials.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A trial runs in well under a second; one still running after this has
 * deadlocked (in fork itself, or threads that never stop). */
enum { kTrialLimitMs = 10000 };

long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int wait_limited(pid_t pid, long limit_ms) {
  const long deadline = now_ms() + limit_ms;
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -2;
    const long left = deadline - now_ms();
    if (left <= 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    const struct timespec wait = {left / 1000, (left % 1000) * 1000000L};
    sigtimedwait(&chld, NULL, &wait);
  }
}

/* 0 when malloc is defined by the object that defines `symbol`. */
static int check_malloc_source(const char* symbol) {
  Dl_info malloc_info, symbol_info;
  void* m = dlsym(RTLD_DEFAULT, "malloc");
  if (m == NULL || dladdr(m, &malloc_info) == 0) {
    fprintf(stderr, "cannot find where malloc is defined\n");
    return 1;
  }
  printf("malloc from: %s\n", malloc_info.dli_fname);
  if (symbol == NULL) return 0;
  void* s = dlsym(RTLD_DEFAULT, symbol);
  if (s == NULL || dladdr(s, &symbol_info) == 0) {
    fprintf(stderr,
            "%s is not in the process: the malloc under test is not loaded "
            "(LD_PRELOAD unset or refused?)\n",
            symbol);
    return 1;
  }
  if (strcmp(malloc_info.dli_fname, symbol_info.dli_fname) != 0) {
    fprintf(stderr, "malloc comes from %s, not from %s (which defines %s)\n", malloc_info.dli_fname,
            symbol_info.dli_fname, symbol);
    return 1;
  }
  return 0;
}

static int usage(const char* prog) {
  fprintf(stderr, "usage: %s TRIALS [--max-hangs N] [--symbol NAME] | --trial\n", prog);
  return 2;
}

int run_fresh_trials(int argc, char** argv, const char* race, int (*trial)(void)) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  if (argc == 2 && strcmp(argv[1], "--trial") == 0) return trial();
  if (argc < 2) return usage(argv[0]);
  const int trials = atoi(argv[1]);
  int max_hangs = 5;
  const char* symbol = NULL;
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc) return usage(argv[0]);
    if (strcmp(argv[i], "--max-hangs") == 0) {
      max_hangs = atoi(argv[i + 1]);
    } else if (strcmp(argv[i], "--symbol") == 0) {
      symbol = argv[i + 1];
    } else {
      return usage(argv[0]);
    }
  }
  if (trials <= 0 || max_hangs <= 0) return usage(argv[0]);
  if (check_malloc_source(symbol) != 0) return 2;
  fflush(stdout);

  int hung = 0, failed = 0, ran = 0;
  const long start = now_ms();
  for (int i = 1; i <= trials && hung < max_hangs; ++i, ++ran) {
    const pid_t pid = fork();
    if (pid == 0) {
      execl("/proc/self/exe", argv[0], "--trial", (char*)NULL);
      _exit(127);
    }
    if (pid < 0) {
      perror("fork");
      return 2;
    }
    const int status = wait_limited(pid, kTrialLimitMs);
    const int code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == kTrialOk) continue;
    if (code == kTrialChildHung) {
      ++hung;
      fprintf(stderr, "trial %d: hung: a forked child did not exit within %d ms\n", i,
              kChildLimitMs);
    } else if (status == -1) {
      ++hung;
      fprintf(stderr,
              "trial %d: hung: the trial process did not finish within %d ms "
              "(fork never returned, or a thread never stopped)\n",
              i, kTrialLimitMs);
    } else if (status >= 0 && WIFSIGNALED(status)) {
      ++failed;
      fprintf(stderr, "trial %d: failed: killed by signal %d\n", i, WTERMSIG(status));
    } else {
      ++failed;
      fprintf(stderr, "trial %d: failed: exit status %d (%s)\n", i, code,
              code == kTrialChildFailed   ? "a child's allocations failed"
              : code == kTrialSetupFailed ? "set-up failed"
                                          : "unexpected");
    }
  }
  printf("%s: %d of %d trials run, %d hung, %d other failures, %.1f s%s\n", race, ran, trials, hung,
         failed, (now_ms() - start) / 1000.0, hung >= max_hangs ? " (stopped early)" : "");
  return hung == 0 && failed == 0 ? 0 : 1;
}
