"""Reads os_heap_dump output (format: docs/heap-dump.md).

A dump is a `heap` line, one `block` line per block, `error` lines for parts
of the heap the dump could not walk, and a `summary` line. Every field is
key=value; unknown keys are kept, so newer dumps still parse. Lines that
start with none of those words (a program's own output around a dump) are
skipped.
"""
import json
from dataclasses import dataclass, field

HEADER_SIZE = 32  # bytes before each block's payload (docs/contract.md)
STATUSES = ("alloc", "free", "mapped")
SUMMARY_COUNTS = ("blocks", "alloc", "free", "mapped", "alloc_bytes", "free_bytes",
                  "largest_free", "mapped_bytes")


class DumpError(Exception):
    """A dump that cannot be read; the message names the file and line."""


@dataclass
class Block:
    user: int    # the address os_malloc returned
    header: int  # user - HEADER_SIZE
    size: int    # payload bytes (ALIGN8 of the request)
    status: str  # alloc, free or mapped
    prev: int
    next: int

    @property
    def end(self):
        return self.user + self.size


@dataclass
class Snapshot:
    version: int
    span: int      # bytes in heap segments, headers included
    segments: int
    mappings: int
    blocks: list = field(default_factory=list)
    summary: dict = None
    errors: list = field(default_factory=list)

    def free_heap_blocks(self):
        return [b for b in self.blocks if b.status == "free"]


def _fields(words, where, required):
    out = {}
    for w in words:
        key, eq, value = w.partition("=")
        if not eq:
            raise DumpError(f"{where}: expected key=value, found '{w}'")
        out[key] = value
    missing = [k for k in required if k not in out]
    if missing:
        raise DumpError(f"{where}: missing {', '.join(missing)}")
    return out


def _int(fields, key, where):
    try:
        return int(fields[key], 0)
    except ValueError:
        raise DumpError(f"{where}: {key}={fields[key]} is not a number") from None


def parse(lines, name="<dump>"):
    """Returns the list of Snapshots in lines (an iterable of str)."""
    snapshots = []
    current = None
    for number, raw in enumerate(lines, 1):
        where = f"{name}:{number}"
        words = raw.split()
        if not words or words[0] not in ("heap", "block", "error", "summary"):
            continue
        kind, rest = words[0], words[1:]
        if kind == "heap":
            f = _fields(rest, where, ("version", "span", "segments", "mappings"))
            version = _int(f, "version", where)
            if version != 1:
                raise DumpError(f"{where}: dump format version {version}; this osmem reads 1")
            current = Snapshot(version, _int(f, "span", where), _int(f, "segments", where),
                               _int(f, "mappings", where))
            snapshots.append(current)
            continue
        if current is None or current.summary is not None:
            raise DumpError(f"{where}: '{kind}' line outside a dump (no 'heap' line before it)")
        if kind == "block":
            f = _fields(rest, where, ("user", "header", "size", "status", "prev", "next"))
            b = Block(*(_int(f, k, where) for k in ("user", "header", "size")), f["status"],
                      _int(f, "prev", where), _int(f, "next", where))
            if b.status not in STATUSES:
                raise DumpError(f"{where}: status={b.status} (a damaged header?); "
                                f"expected one of {', '.join(STATUSES)}")
            if b.user != b.header + HEADER_SIZE:
                raise DumpError(f"{where}: user=0x{b.user:x} is not header+{HEADER_SIZE}")
            current.blocks.append(b)
        elif kind == "error":
            current.errors.append(" ".join(rest))
        else:
            f = _fields(rest, where, SUMMARY_COUNTS)
            current.summary = {k: _int(f, k, where) for k in SUMMARY_COUNTS}
            if current.summary["blocks"] != len(current.blocks):
                raise DumpError(f"{where}: summary counts {current.summary['blocks']} blocks, "
                                f"the dump lists {len(current.blocks)}")
    if not snapshots:
        raise DumpError(f"{name}: no heap dump in it (no 'heap version=...' line)")
    for i, s in enumerate(snapshots, 1):
        if s.summary is None:
            raise DumpError(f"{name}: dump {i} has no summary line (cut short?)")
    return snapshots


def read(path):
    """Parses the file at path ("-" for stdin)."""
    if path == "-":
        import sys
        return parse(sys.stdin, "<stdin>")
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse(f, path)


def select(snapshots, number):
    """The number-th snapshot (1-based), or the last when number is None."""
    if number is None:
        return snapshots[-1]
    if number > len(snapshots):
        raise DumpError(f"--snapshot {number}: the file holds {len(snapshots)} dump(s)")
    return snapshots[number - 1]


def write_json(snapshots, out):
    doc = {"snapshots": [{
        "version": s.version, "span": s.span, "segments": s.segments,
        "mappings": s.mappings,
        "blocks": [{"user": b.user, "header": b.header, "size": b.size, "status": b.status,
                    "prev": b.prev, "next": b.next} for b in s.blocks],
        "summary": s.summary, "errors": s.errors} for s in snapshots]}
    json.dump(doc, out, indent=1)
    out.write("\n")
