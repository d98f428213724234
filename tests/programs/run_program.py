#!/usr/bin/python3
"""Runs real programs on a malloc shared library and compares them with glibc.

Each PROGRAM runs twice in a fresh working directory at the same path: once
plain (glibc malloc) and once with LD_PRELOAD=LIB plus the --env settings.
The two runs must both exit 0 within --timeout seconds and print the same
stdout and stderr, byte for byte: no normalisation is applied (the inputs
are generated from fixed seeds, git's dates and names are fixed, and the
programs print checksums of the files they write). A crash, a non-zero
exit, a hang or a different output is a failure, printed as one `FAIL:`
line with the reason, then a diff or the end of stderr.

Before running anything the driver proves that the preload takes effect:
  - SYMBOL (a name only LIB exports) is in the global scope of a process
    started with LD_PRELOAD=LIB, and not in one started without it;
  - in every executable a program runs (python3, sqlite3, git, sort, xz,
    gcc and cc1, ...) started with LD_PRELOAD=LIB, every reference to
    malloc, calloc, realloc and free binds to LIB's definition (the
    loader's LD_DEBUG=bindings report, with LD_BIND_NOW);
  - the preloaded run's stderr holds no "ld.so: object ... cannot be
    preloaded" line.

  run_program.py --lib LIB --symbol SYMBOL [--env NAME=VALUE]... [--size full|small]
                 [--timeout SECONDS] [--cxx-threads BINARY] PROGRAM...

PROGRAM is one of python, sqlite3, git, sort_xz, cxx_threads, cc, or `all`.
--size small shrinks the inputs (for a slow mode such as OSMEM_CHECK=full);
sort_xz has no small size. Exit status: 0 when every program matched, 1 when
one failed, 2 on a usage or set-up error.
"""

import argparse
import difflib
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_PYTHON = "/usr/bin/python3"
PROGRAMS = ["python", "sqlite3", "git", "sort_xz", "cxx_threads", "cc"]

# Wall-clock limit of one run, in seconds, when --timeout is not given. About
# ten times the plain run on two busy cores.
DEFAULT_TIMEOUT = {"python": 60, "sqlite3": 60, "git": 60, "sort_xz": 120,
                   "cxx_threads": 60, "cc": 90}

# Input sizes: (full, small).
SIZES = {
    "python": (150_000, 10_000),      # strings in the dict and the list
    "sqlite3": (100_000, 2_000),      # rows inserted
    "git": (300, 40),                 # files committed
    "sort_xz": (50 << 20, None),      # bytes of the generated text file
    "cxx_threads": (100_000, 200),    # strings made by each producer thread
    "cc": (240, 3),                   # functions in the generated C file
}


class SetupError(Exception):
    """The environment cannot run the test (not a failure of the library)."""


def fail_line(program, what):
    return f"FAIL: {program}: {what}"


def which(name):
    path = shutil.which(name)
    if path is None:
        raise SetupError(f"{name} is not installed (ci/bootstrap installs it)")
    return os.path.realpath(path)


# ---------------------------------------------------------------- inputs

def write_sqlite_script(path, rows):
    rng = random.Random(1301)
    with open(path, "w") as out:
        out.write("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                  "grp INTEGER NOT NULL, score INTEGER NOT NULL, note TEXT);\n")
        out.write("BEGIN;\n")
        for i in range(rows):
            name = "".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 12)))
            note = "x" * rng.randint(0, 300) if i % 7 == 0 else None
            note_sql = "NULL" if note is None else f"'{note}'"
            out.write(f"INSERT INTO t(name, grp, score, note) VALUES"
                      f"('{name}', {rng.randint(0, 99)}, {rng.randint(-10**6, 10**6)}, "
                      f"{note_sql});\n")
        out.write("COMMIT;\n")
        out.write("CREATE INDEX t_grp_score ON t(grp, score);\n")
        out.write("CREATE INDEX t_name ON t(name);\n")
        out.write("SELECT count(*), sum(grp), sum(score), count(note), sum(length(note)) FROM t;\n")
        out.write("SELECT grp, count(*), min(score), max(score), sum(score), min(name), max(name) "
                  "FROM t GROUP BY grp ORDER BY grp;\n")
        out.write("SELECT id, name, score FROM t WHERE name BETWEEN 'abc' AND 'abd' "
                  "ORDER BY name, id LIMIT 50;\n")
        out.write("SELECT id, grp, score FROM t WHERE grp = 42 ORDER BY score DESC LIMIT 20;\n")
        out.write("SELECT a.grp, count(*) FROM t AS a JOIN t AS b ON a.name = b.name AND a.id < b.id "
                  "GROUP BY a.grp ORDER BY a.grp;\n")
        out.write("SELECT length(group_concat(name, ',')), sum(length(name)) FROM "
                  "(SELECT name FROM t ORDER BY name);\n")
        out.write("DELETE FROM t WHERE score % 3 = 0;\n")
        out.write("UPDATE t SET note = name || name WHERE grp < 10;\n")
        out.write("VACUUM;\n")
        out.write("SELECT count(*), sum(score), sum(length(note)) FROM t;\n")
        out.write("PRAGMA integrity_check;\n")


def write_git_trees(root, files):
    """Two trees: the first commit's files, and the second's changes."""
    rng = random.Random(1302)
    first = os.path.join(root, "tree1")
    second = os.path.join(root, "tree2")
    for i in range(files):
        rel = os.path.join(f"dir{i % 17}", f"sub{i % 5}", f"file{i:04d}.txt")
        os.makedirs(os.path.join(first, os.path.dirname(rel)), exist_ok=True)
        lines = [f"{i} {j} {rng.getrandbits(64):016x}\n" for j in range(rng.randint(1, 400))]
        with open(os.path.join(first, rel), "w") as out:
            out.writelines(lines)
        if i % 4 == 0:
            os.makedirs(os.path.join(second, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(second, rel), "w") as out:
                out.writelines(lines[::2] + [f"changed {i}\n"])
    return first, second


def write_sort_input(path, size):
    rng = random.Random(1303)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(5000)]
    written = 0
    with open(path, "w") as out:
        chunk = []
        while written < size:
            line = (f"{rng.choice(words)} {rng.getrandbits(40):010x} "
                    f"{rng.choice(words)} {rng.randint(0, 99999)}\n")
            chunk.append(line)
            written += len(line)
            if len(chunk) == 10000:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))


def write_c_program(path, functions):
    rng = random.Random(1304)
    parts = ["#include <stdio.h>\n#include <string.h>\n\n"]
    for f in range(functions):
        a, b, c = rng.randint(3, 97), rng.randint(1, 31), rng.randint(2, 13)
        cases = "".join(f"    case {k}: acc = acc * {rng.randint(3, 99)}u + {rng.randint(0, 999)}u; "
                        f"break;\n" for k in range(rng.randint(3, 12)))
        parts.append(f"""
static unsigned f{f}(const unsigned *v, int n) {{
  unsigned acc = {a}u, tab[{c + 8}];
  memset(tab, 0, sizeof tab);
  for (int i = 0; i < n; ++i) {{
    unsigned x = v[i] ^ (acc >> {b % 16 + 1});
    switch (x % {c + 3}) {{
{cases}    default: acc ^= x << {b % 8};
    }}
    tab[x % {c + 8}] += x;
    if (acc & 1u) acc += tab[(acc >> 3) % {c + 8}];
  }}
  for (int i = 0; i < {c + 8}; ++i) acc = acc * 31u + tab[i];
  return acc;
}}
""")
    calls = "".join(f"  sum = sum * 1000003u + f{f}(v, n - {f % 50});\n"
                    f"  if ({f} % 40 == 0) printf(\"f{f} %08x\\n\", sum);\n"
                    for f in range(functions))
    parts.append(f"""
int main(void) {{
  static unsigned v[256];
  const int n = 256;
  for (int i = 0; i < n; ++i) v[i] = (unsigned)i * 2654435761u;
  unsigned sum = 0;
{calls}  printf("sum %08x\\n", sum);
  return 0;
}}
""")
    with open(path, "w") as out:
        out.write("".join(parts))


# ------------------------------------------------------------- programs

class Program:
    """One program's command, its inputs and the executables it runs."""

    def __init__(self, argv, executables, stdin=None):
        self.argv = argv
        self.executables = executables
        self.stdin = stdin


def prepare(name, size_index, inputs, args):
    size = SIZES[name][size_index]
    if size is None:
        raise SetupError(f"{name} has no small size")
    sh = which("sh")
    if name == "python":
        return Program([SYSTEM_PYTHON, os.path.join(HERE, "dict_sort.py"), str(size)],
                       [SYSTEM_PYTHON])
    if name == "sqlite3":
        script = os.path.join(inputs, "sqlite.sql")
        write_sqlite_script(script, size)
        sqlite = which("sqlite3")
        return Program([sqlite, "-batch", "-bail", "test.db"], [sqlite], stdin=script)
    if name == "git":
        first, second = write_git_trees(inputs, size)
        git = which("git")
        script = f"""set -e
git init -q -b main repo
cp -R '{first}'/. repo/
cd repo
git add -A
git commit -q -m 'first: generated files'
git rm -q -r dir3
cp -R '{second}'/. .
git add -A
git commit -q -m 'second: changes and a removed directory'
git log --stat --format='%H %an %ad %s'
git ls-tree -r HEAD
git diff --numstat HEAD~1 HEAD
git -c pack.threads=2 repack -a -d -q
git cat-file --batch-all-objects --batch-check
git fsck --full --strict --no-progress
git rev-parse HEAD
"""
        return Program([sh, "-c", script], [sh, git, which("cp")])
    if name == "sort_xz":
        data = os.path.join(inputs, "data.txt")
        write_sort_input(data, size)
        script = f"""set -e
sort -S 16M --parallel=2 -T . '{data}' -o sorted.txt
sort -c sorted.txt
sha256sum sorted.txt
sort -t ' ' -k4,4n -k1,1 -u -S 16M --parallel=2 -T . sorted.txt | sha256sum
xz -0 -T2 -c sorted.txt > sorted.txt.xz
sha256sum sorted.txt.xz
xz -t sorted.txt.xz
xz -d -T2 -c sorted.txt.xz | sha256sum
xz -d -c sorted.txt.xz | cmp - sorted.txt
wc -l < sorted.txt
"""
        return Program([sh, "-c", script], [sh, which("sort"), which("xz"), which("sha256sum")])
    if name == "cxx_threads":
        if args.cxx_threads is None:
            raise SetupError("cxx_threads needs --cxx-threads BINARY (tests/programs/cxx_threads.cpp)")
        binary = os.path.abspath(args.cxx_threads)
        return Program([binary, str(size)], [binary])
    if name == "cc":
        source = os.path.join(inputs, "prog.c")
        write_c_program(source, size)
        cc = which(args.cc)
        cc1 = subprocess.run([cc, "-print-prog-name=cc1"], capture_output=True, text=True,
                             check=True).stdout.strip()
        executables = [cc] + ([cc1] if os.path.isabs(cc1) else [])
        script = f"""set -e
cp '{source}' prog.c
'{cc}' -O2 -Wall -c prog.c -o prog.o
sha256sum prog.o
objdump -d prog.o | sha256sum
'{cc}' prog.o -o prog
./prog
"""
        return Program([sh, "-c", script], [sh] + executables + [which("objdump")])
    raise SetupError(f"unknown program {name}")


# ------------------------------------------------------------- running

def base_env(work):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LD_", "GIT_", "OSMEM_", "MALLOC_", "PYTHON"))}
    env.update({
        "LC_ALL": "C", "TZ": "UTC", "HOME": work, "PYTHONHASHSEED": "0",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "A U Thor", "GIT_AUTHOR_EMAIL": "author@example.com",
        "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z",
        "GIT_COMMITTER_NAME": "C O Mitter", "GIT_COMMITTER_EMAIL": "committer@example.com",
        "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z",
    })
    return env


class Run:
    def __init__(self, code, stdout, stderr, seconds, timed_out):
        self.code, self.stdout, self.stderr = code, stdout, stderr
        self.seconds, self.timed_out = seconds, timed_out

    def problem(self, timeout):
        if self.timed_out:
            return f"no exit within {timeout} s (hung or too slow; killed)"
        if self.code < 0:
            return f"killed by signal {signal.Signals(-self.code).name}"
        if self.code != 0:
            return f"exit status {self.code}"
        return None


def run_once(program, env, work, timeout):
    """Runs program in a fresh `work` directory in its own process group."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    stdin = open(program.stdin, "rb") if program.stdin else subprocess.DEVNULL
    start = time.monotonic()
    proc = subprocess.Popen(program.argv, cwd=work, env=env, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    seconds = time.monotonic() - start
    if program.stdin:
        stdin.close()
    # The group may hold children that outlived the shell (none should).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return Run(proc.returncode, out, err, seconds, timed_out)


def tail(data, lines=15):
    text = data.decode(errors="replace").splitlines()
    return "\n".join("    " + line for line in text[-lines:])


def show_diff(label, plain, preloaded, limit=40):
    a = plain.decode(errors="replace").splitlines()
    b = preloaded.decode(errors="replace").splitlines()
    diff = list(difflib.unified_diff(a, b, f"{label} (glibc)", f"{label} (preloaded)",
                                     lineterm="", n=1))
    for line in diff[:limit]:
        print("    " + line)
    if len(diff) > limit:
        print(f"    ... {len(diff) - limit} more diff lines")


SYMBOL_PROBE = "import ctypes, sys; print(hasattr(ctypes.CDLL(None), sys.argv[1]))"
BINDING = re.compile(r"binding file (.+?) \[\d+\] to (.+?) \[\d+\]: "
                     r"normal symbol `(malloc|calloc|realloc|free)'")


def check_preload(lib, symbol, preload_env, executables, scratch):
    """Raises SetupError unless LIB is preloaded and every executable's
    references to malloc, calloc, realloc and free bind to it."""
    probe = [SYSTEM_PYTHON, "-c", SYMBOL_PROBE, symbol]
    plain = subprocess.run(probe, env=base_env(scratch), capture_output=True, text=True,
                           timeout=60)
    if plain.stdout.strip() != "False":
        raise SetupError(f"{symbol} is found without LD_PRELOAD ({plain.stdout.strip()}): it "
                         f"cannot show that {lib} is preloaded (name one only it exports)\n"
                         f"{plain.stderr}")
    pre = subprocess.run(probe, env=preload_env, capture_output=True, text=True, timeout=60)
    if pre.stdout.strip() != "True":
        raise SetupError(f"the preload does not take effect: with LD_PRELOAD={lib}, "
                         f"{symbol} is not in {SYSTEM_PYTHON}'s global scope (exit status "
                         f"{pre.returncode})\n{pre.stderr}")
    # The loader reports each symbol binding; LD_BIND_NOW binds every
    # reference at start-up, so the program need not reach a malloc call.
    want = os.path.realpath(lib)
    for exe in executables:
        env = dict(preload_env, LD_DEBUG="bindings", LD_BIND_NOW="1")
        trace = subprocess.run([exe], env=env, cwd=scratch, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, errors="replace", timeout=60)
        bindings = [(os.path.realpath(src), os.path.realpath(dst), sym)
                    for src, dst, sym in BINDING.findall(trace.stderr)]
        # A non-PIE executable that takes malloc's address (python3) defines
        # malloc as its PLT stub, and libc binds to that; the stub jumps
        # through the executable's own binding, which must be to LIB.
        direct = {(src, sym) for src, dst, sym in bindings if dst == want}
        elsewhere = sorted({f"{src} -> {dst} ({sym})" for src, dst, sym in bindings
                            if dst != want and (dst, sym) not in direct})
        if not bindings or elsewhere:
            raise SetupError(f"under LD_PRELOAD={lib}, {exe} does not take malloc from it: "
                             f"{len(bindings)} bindings of malloc/calloc/realloc/free, "
                             f"these elsewhere: {elsewhere[:5]}")


def run_program(name, args, scratch):
    size_index = 1 if args.size == "small" else 0
    inputs = os.path.join(scratch, name + ".in")
    os.makedirs(inputs)
    work = os.path.join(scratch, name + ".work")
    program = prepare(name, size_index, inputs, args)
    plain_env = base_env(work)
    preload_env = dict(plain_env, LD_PRELOAD=args.lib)
    preload_env.update(args.env)
    # The probes run without --env: a mode of the library under test must
    # not keep it from being shown to be preloaded.
    check_preload(args.lib, args.symbol, dict(plain_env, LD_PRELOAD=args.lib),
                  program.executables, inputs)
    timeout = args.timeout or DEFAULT_TIMEOUT[name]
    label = f"{name} ({args.size}, {' '.join(f'{k}={v}' for k, v in args.env.items()) or 'no env'})"

    plain = run_once(program, plain_env, work, timeout)
    problem = plain.problem(timeout)
    if problem:
        raise SetupError(f"{label}: the plain run (glibc malloc) failed: {problem}; "
                         f"the test itself is broken\n{tail(plain.stderr)}")
    if not plain.stdout:
        raise SetupError(f"{label}: the plain run printed nothing: nothing to compare")
    pre = run_once(program, preload_env, work, timeout)
    shutil.rmtree(work, ignore_errors=True)
    timing = f"glibc {plain.seconds:.2f} s, preloaded {pre.seconds:.2f} s"

    problem = pre.problem(timeout)
    if problem:
        print(fail_line(label, f"under LD_PRELOAD={args.lib}: {problem} ({timing})"))
        print("  stderr (last lines):")
        print(tail(pre.stderr))
        return False
    if b"cannot be preloaded" in pre.stderr:
        print(fail_line(label, f"the loader refused the preload:\n{tail(pre.stderr)}"))
        return False
    same = True
    for stream, a, b in (("stdout", plain.stdout, pre.stdout), ("stderr", plain.stderr, pre.stderr)):
        if a != b:
            same = False
            print(fail_line(label, f"{stream} differs from glibc's ({len(a)} bytes with glibc, "
                                   f"{len(b)} preloaded; {timing})"))
            show_diff(stream, a, b)
    if same:
        digest = hashlib.sha256(plain.stdout).hexdigest()[:16]
        print(f"ok: {label}: identical output ({len(plain.stdout)} bytes, sha256 {digest}...; "
              f"{timing})")
    return same


def parse_env(items):
    env = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"--env wants NAME=VALUE, got {item!r}")
        env[name] = value
    return env


def main():
    parser = argparse.ArgumentParser(
        description="Run real programs plain and under LD_PRELOAD=LIB; compare their output.")
    parser.add_argument("--lib", required=True, help="the malloc shared library to preload")
    parser.add_argument("--symbol", required=True,
                        help="a symbol only LIB exports (proves the preload took effect)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment of the preloaded run (repeatable)")
    parser.add_argument("--size", choices=["full", "small"], default="full")
    parser.add_argument("--timeout", type=float, help="seconds allowed to each run")
    parser.add_argument("--cxx-threads", help="the built tests/programs/cxx_threads.cpp")
    parser.add_argument("--cc", default="gcc", help="the compiler the cc program runs")
    parser.add_argument("--scratch", help="directory for inputs and work (default: a new temp dir)")
    parser.add_argument("programs", nargs="+", choices=PROGRAMS + ["all"], metavar="PROGRAM")
    args = parser.parse_args()
    try:
        args.env = parse_env(args.env)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    if not os.path.isfile(args.lib):
        parser.error(f"--lib {args.lib}: no such file")
    args.lib = os.path.abspath(args.lib)
    names = PROGRAMS if "all" in args.programs else args.programs
    if "all" in args.programs and args.size == "small":
        names = [n for n in names if SIZES[n][1] is not None]

    scratch = tempfile.mkdtemp(prefix="osmem-programs.", dir=args.scratch)
    failed = 0
    try:
        for name in names:
            try:
                failed += not run_program(name, args, scratch)
            except (SetupError, subprocess.SubprocessError, OSError) as e:
                print(fail_line(name, f"set-up error: {e}"))
                return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"programs: {len(names) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
