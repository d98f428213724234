/* The debug mode of libosmem-malloc.so, preloaded (the test sets
 * LD_PRELOAD): a write after free found under OSMEM_CHECK=local and =sweep,
 * the report naming the block and the first changed byte; no report when
 * the checks are off; the leak report at exit (OSMEM_LEAKS=1); and the
 * slack, which malloc_usable_size gives to the program, not checked.
 *
 * Each case runs in a fresh process (this program re-executed with the
 * case's name), so the variables are read at its first malloc; the parent
 * compares its stderr and exit status. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void* volatile g_keep[8];

static int write_after_free(void) {
  char* a = malloc(40);
  g_keep[0] = malloc(40); /* keeps a's block from the top */
  memset(a, 'x', 40);
  fprintf(stderr, "block %p\n", (void*)a);
  free(a);
  a[16] = 'Y';            /* the bug */
  g_keep[1] = malloc(40); /* a's block again */
  return 0;
}

/* A count the optimiser cannot see, so the loop stays one call site (an
 * unrolled loop would be three, three groups in the report). */
static volatile int g_three = 3;

static int leaks(void) {
  for (int i = 0; i < g_three; ++i) g_keep[i] = malloc(24);
  g_keep[3] = calloc(1, 1000);
  free(malloc(50));
  return 0;
}

static int slack_is_the_programs(void) {
  char* a = malloc(10);
  const size_t usable = malloc_usable_size(a);
  memset(a, 'z', usable); /* allowed: malloc_usable_size says so */
  free(a);
  return usable >= 10 ? 0 : 1;
}

struct outcome {
  int status;
  char err[8192];
};

static void run(const char* self, const char* which, const char* check, const char* leaks_env,
                struct outcome* out) {
  int fds[2];
  if (pipe(fds) != 0) exit(2);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    setenv("OSMEM_CHECK", check, 1);
    if (leaks_env != NULL)
      setenv("OSMEM_LEAKS", leaks_env, 1);
    else
      unsetenv("OSMEM_LEAKS");
    execl(self, self, which, (char*)NULL);
    _exit(127);
  }
  close(fds[1]);
  size_t len = 0;
  ssize_t n;
  while (len + 1 < sizeof out->err &&
         (n = read(fds[0], out->err + len, sizeof out->err - 1 - len)) > 0)
    len += (size_t)n;
  out->err[len] = '\0';
  close(fds[0]);
  waitpid(pid, &out->status, 0);
}

static int failures = 0;

static void expect(int ok, const char* what, const struct outcome* o) {
  if (!ok) {
    fprintf(stderr, "FAIL: %s; stderr was:\n%s\n", what, o->err);
    ++failures;
  } else {
    printf("ok: %s\n", what);
  }
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "write_after_free") == 0) return write_after_free();
  if (argc == 2 && strcmp(argv[1], "leaks") == 0) return leaks();
  if (argc == 2 && strcmp(argv[1], "slack") == 0) return slack_is_the_programs();
  if (getenv("LD_PRELOAD") == NULL || strstr(getenv("LD_PRELOAD"), "osmem") == NULL) {
    fprintf(stderr, "dropin_debug: run with LD_PRELOAD=libosmem-malloc.so\n");
    return 2;
  }

  const char* levels[] = {"local", "sweep"};
  for (int i = 0; i < 2; ++i) {
    struct outcome o;
    run(argv[0], "write_after_free", levels[i], NULL, &o);
    char block[64] = "";
    sscanf(o.err, "block %63s", block);
    char want[160];
    snprintf(want, sizeof want, "osmem: write after free in malloc at %s: ", block);
    char what[96];
    snprintf(what, sizeof what, "OSMEM_CHECK=%s: a write after free is reported", levels[i]);
    expect(WIFSIGNALED(o.status) && WTERMSIG(o.status) == SIGABRT && block[0] != '\0' &&
               strstr(o.err, want) != NULL &&
               strstr(o.err, "  the block: 40 bytes requested by operation ") != NULL &&
               strstr(o.err,
                      "  first changed byte: 16 (the 8-byte word at offset 16 reads "
                      "0x7878787878787859, was 0x7878787878787878)") != NULL,
           what, &o);
  }
  {
    struct outcome o;
    run(argv[0], "write_after_free", "off", NULL, &o);
    expect(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0 && strstr(o.err, "osmem") == NULL,
           "OSMEM_CHECK=off: no checks, no report", &o);
  }
  {
    struct outcome o;
    run(argv[0], "leaks", "off", "1", &o);
    expect(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0 &&
               strstr(o.err, "osmem: leaks at exit: ") != NULL &&
               strstr(o.err, "  1 x 1000 bytes = 1000 bytes, from 0x") != NULL &&
               strstr(o.err, "  3 x 24 bytes = 72 bytes, from 0x") != NULL &&
               strstr(o.err, " x 50 bytes") == NULL,
           "OSMEM_LEAKS=1: the blocks never freed, by size and caller", &o);
  }
  {
    struct outcome o;
    run(argv[0], "slack", "sweep", NULL, &o);
    expect(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0 && strstr(o.err, "osmem") == NULL,
           "OSMEM_CHECK=sweep: writing all of malloc_usable_size is no error", &o);
  }
  return failures == 0 ? 0 : 1;
}
