"""Draws one heap dump (a dumpfile.Snapshot) as a PNG with matplotlib.

Blocks are laid out in address order along rows of row_bytes each; a block
is its 32-byte header (dark) then its payload, coloured by status. Each
contiguous region (a heap segment, or one mapping) starts a new row, labelled
with its address, so the picture has no empty stretches for the gaps between
regions. The largest FREE heap block is outlined.
"""
import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MultipleLocator  # noqa: E402

from .dumpfile import HEADER_SIZE, DumpError  # noqa: E402

# Okabe-Ito colours: distinct for the common colour-vision deficiencies.
COLOURS = {"alloc": "#0072b2", "free": "#e69f00", "mapped": "#cc79a7"}
HEADER_COLOUR = "#222222"
WIDTH_PX, DPI = 1200, 100
MAX_ROWS = 24


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024


def regions(blocks):
    """Runs of blocks that touch (one ends where the next header starts)."""
    out = []
    for b in sorted(blocks, key=lambda b: b.header):
        if out and out[-1][-1].end == b.header:
            out[-1].append(b)
        else:
            out.append([b])
    return out


def default_row_bytes(regs):
    row = 256
    while sum(-(-(r[-1].end - r[0].header) // row) for r in regs) > MAX_ROWS:
        row *= 2
    return row


def fragmentation(snapshot):
    """1 - largest free / free bytes over heap FREE blocks: 0 when all free
    memory is one block, near 1 when it is scattered in small pieces."""
    free = snapshot.free_heap_blocks()
    total = sum(b.size for b in free)
    return 0.0 if total == 0 else 1.0 - max(b.size for b in free) / total


def _pieces(start, end, origin, first_row, row_bytes):
    """Splits [start, end) (addresses) at row boundaries: (row, x0, x1)."""
    out = []
    pos = start
    while pos < end:
        row = first_row + (pos - origin) // row_bytes
        row_end = origin + (row - first_row + 1) * row_bytes
        stop = min(end, row_end)
        x0 = (pos - origin) % row_bytes
        out.append((row, x0, x0 + (stop - pos)))
        pos = stop
    return out


def draw(snapshot, path, row_bytes=None, title=None):
    if not snapshot.blocks:
        raise DumpError("the dump holds no blocks: nothing to draw")
    regs = regions(snapshot.blocks)
    row_bytes = row_bytes or default_row_bytes(regs)
    polys, colours = [], []
    labels = {}
    largest = max(snapshot.free_heap_blocks(), key=lambda b: b.size, default=None)
    largest_pieces = []
    row = 0
    for reg in regs:
        origin = reg[0].header
        kind = "mapping" if reg[0].status == "mapped" else "heap"
        labels[row] = f"{kind} 0x{origin:x}"
        for b in reg:
            for part_start, part_end, colour in ((b.header, b.user, HEADER_COLOUR),
                                                 (b.user, b.end, COLOURS[b.status])):
                for r, x0, x1 in _pieces(part_start, part_end, origin, row, row_bytes):
                    polys.append([(x0, r + 0.1), (x1, r + 0.1), (x1, r + 0.9), (x0, r + 0.9)])
                    colours.append(colour)
                    if b is largest and part_start == b.user:
                        largest_pieces.append((r, x0, x1))
        row += -(-(reg[-1].end - origin) // row_bytes)
    rows = row

    height_px = int(160 + 34 * rows)
    fig, ax = plt.subplots(figsize=(WIDTH_PX / DPI, height_px / DPI), dpi=DPI)
    ax.add_collection(PolyCollection(polys, facecolors=colours, edgecolors="none"))
    for r, x0, x1 in largest_pieces:
        ax.add_patch(plt.Rectangle((x0, r + 0.05), x1 - x0, 0.9, fill=False,
                                   edgecolor="#d00000", linewidth=2))
    ax.set_xlim(0, row_bytes)
    ax.set_ylim(rows, 0)
    ax.set_yticks([r + 0.5 for r in labels])
    ax.set_yticklabels(labels.values(), fontsize=8, family="monospace")
    ax.xaxis.set_major_locator(MultipleLocator(row_bytes / 8))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: human(int(x))))
    ax.set_xlabel(f"offset in the row ({human(row_bytes)} per row)")
    ax.tick_params(axis="x", labelsize=8)

    s = snapshot.summary
    line1 = title or "osmem heap map"
    line2 = (f"{s['blocks']} blocks: {s['alloc']} alloc ({human(s['alloc_bytes'])}), "
             f"{s['free']} free ({human(s['free_bytes'])}), {s['mapped']} mapped "
             f"({human(s['mapped_bytes'])})")
    line3 = (f"largest free block {human(s['largest_free'])} of {human(s['free_bytes'])} "
             f"free, fragmentation {100 * fragmentation(snapshot):.1f}% "
             f"(1 - largest free / free bytes)")
    ax.set_title(f"{line1}\n{line2}\n{line3}", fontsize=10, loc="left")
    handles = [Patch(color=COLOURS[k], label=k.upper()) for k in ("alloc", "free", "mapped")]
    handles.append(Patch(color=HEADER_COLOUR, label=f"header ({HEADER_SIZE} B)"))
    handles.append(Patch(fill=False, edgecolor="#d00000", linewidth=2, label="largest free"))
    fig.legend(handles=handles, loc="upper right", ncol=3, fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.17, right=0.98, top=1 - 70 / height_px, bottom=50 / height_px)
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)
