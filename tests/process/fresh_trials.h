/* Many trials of a race, each in a freshly exec'd process, with time limits.
 * Shared by the fork tests that are generic over the process's malloc
 * (fork_while_malloc.c, fork_while_getline.c): they call only malloc and
 * friends, so the same binary tests glibc's malloc when run plain and any
 * other malloc under LD_PRELOAD.
 *
 *   PROGRAM TRIALS [--max-hangs N] [--symbol NAME]
 *   PROGRAM --trial                    one trial (what the driver execs)
 *
 * --symbol NAME first proves that the malloc under test is in use: NAME
 * must be found in the process, and malloc must be defined by the same
 * object. The driver prints `trial N: hung ...` for each trial whose child
 * or whose own process stopped making progress, stops after N such trials
 * (default 5), and ends with one summary line; it exits 0 only when no
 * trial hung or failed. */
#ifndef OSMEM_TESTS_PROCESS_FRESH_TRIALS_H
#define OSMEM_TESTS_PROCESS_FRESH_TRIALS_H

#include <sys/types.h>

/* What a trial returns (its process's exit status). */
enum { kTrialOk = 0, kTrialChildHung = 3, kTrialChildFailed = 4, kTrialSetupFailed = 5 };

/* A forked child that has not exited within this is hung. */
enum { kChildLimitMs = 3000 };

/* Milliseconds on the monotonic clock. */
long now_ms(void);

/* Waits for pid up to limit_ms. Returns its wait status, -1 on time-out (the
 * process is then killed and reaped) or -2 if waitpid failed. SIGCHLD must
 * be blocked (run_fresh_trials blocks it). */
int wait_limited(pid_t pid, long limit_ms);

/* Runs the command line above; `race` names what one trial does, for the
 * messages, and `trial` is one trial. Returns main's exit status. */
int run_fresh_trials(int argc, char** argv, const char* race, int (*trial)(void));

#endif
