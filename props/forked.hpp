// Running code in a forked process with a time limit: for the properties
// that drive the real process-wide heap (libosmem's os_* API), whose state
// one case must not leave to the next, and whose failures may be a hang.
//
// A process that has not exited within its limit is killed (SIGKILL) and
// reaped, so a deadlock costs the limit, never the whole test run.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace osmem::props {

// How a forked process ended.
struct Ending {
  bool hung = false;  // still running at its limit: killed
  int status = 0;     // waitpid's status otherwise
};

// Waits for pid at most `limit`; kills and reaps it when it is still
// running then. Polls (1 ms) rather than waiting for SIGCHLD, which any of
// the caller's threads may receive.
inline Ending wait_limited(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  Ending e;
  for (;;) {
    const pid_t r = waitpid(pid, &e.status, WNOHANG);
    if (r == pid) return e;
    if (r < 0) {
      e.status = -1;
      return e;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &e.status, 0);
      e.hung = true;
      return e;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// "exit 3", "killed by signal 6", "hung (killed after 10000 ms)".
inline std::string describe(const Ending& e, std::chrono::milliseconds limit) {
  if (e.hung) return "hung (killed after " + std::to_string(limit.count()) + " ms)";
  if (e.status == -1) return "lost (waitpid failed)";
  if (WIFEXITED(e.status)) {
    const int code = WEXITSTATUS(e.status);
    // ThreadSanitizer's exit code after a report (its text is on stderr).
    if (code == 66) return "exit 66 (a sanitizer report, printed above)";
    return "exit " + std::to_string(code);
  }
  if (WIFSIGNALED(e.status)) return "killed by signal " + std::to_string(WTERMSIG(e.status));
  return "status " + std::to_string(e.status);
}

// What a process forked by run_forked() reported.
struct ForkedRun {
  Ending ending;
  std::string message;  // what the body returned (empty: no finding)
};

// The write end of the current run_forked() child's message pipe: a
// process it forks in turn closes it first (close_report_pipe), so that
// the pipe reads as ended once the child is gone.
inline int g_report_fd = -1;

inline void close_report_pipe() {
  if (g_report_fd >= 0) close(g_report_fd);
  g_report_fd = -1;
}

// Runs body() in a child process and returns its message and how it ended.
// The child ends with _exit (0 when the message is empty, 1 otherwise):
// it is a copy of this process, whose exit handlers and buffered output
// belong to the parent. The message is at most a few KiB (the pipe never
// fills).
template <class Body>
ForkedRun run_forked(Body&& body, std::chrono::milliseconds limit) {
  ForkedRun run;
  int fds[2];
  if (pipe(fds) != 0) {
    run.message = "pipe() failed";
    return run;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    run.message = "fork() failed";
    return run;
  }
  if (pid == 0) {
    close(fds[0]);
    g_report_fd = fds[1];
    std::string message = body();
    if (message.size() > 4000) message.resize(4000);
    if (g_report_fd >= 0) {
      const ssize_t written = write(g_report_fd, message.data(), message.size());
      (void)written;
    }
    _exit(message.empty() ? 0 : 1);
  }
  close(fds[1]);
  run.ending = wait_limited(pid, limit);
  // The child is gone; a grandchild it left running would hold the write
  // end, so read only what is there.
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) run.message.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  return run;
}

}  // namespace osmem::props
