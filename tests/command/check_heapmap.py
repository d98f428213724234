"""Checks a heap map drawn by `osmem heapmap` from DUMP's last snapshot: the
PNG is 1200 pixels wide and as tall as its rows need, and it shows each
status present in the dump in its colour (so it is neither blank nor
missing a kind of block).

    python3 check_heapmap.py PICTURE.png DUMP
"""
import os
import sys

import matplotlib.image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from osmemtool import dumpfile, heapmap  # noqa: E402


def rgb(hex_colour):
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def main(png, dump):
    snap = dumpfile.read(dump)[-1]
    pixels = matplotlib.image.imread(png)
    height, width = pixels.shape[:2]
    failures = []
    if width != heapmap.WIDTH_PX:
        failures.append(f"width {width}, expected {heapmap.WIDTH_PX}")
    if height < 300:
        failures.append(f"height {height}: too short for a heap with {len(snap.blocks)} blocks")
    counts = {}
    for row in (pixels[:, :, :3] * 255).round().astype(int).reshape(-1, 3):
        key = tuple(row)
        counts[key] = counts.get(key, 0) + 1
    print(f"{width}x{height} pixels, {len(counts)} distinct colours")
    for status in dumpfile.STATUSES:
        n = sum(1 for b in snap.blocks if b.status == status)
        shown = counts.get(rgb(heapmap.COLOURS[status]), 0)
        print(f"{status}: {n} block(s) in the dump, {shown} pixel(s) of its colour")
        # A block's colour appears in the legend (a small swatch) even when
        # the block is absent; drawn blocks add far more.
        if n > 0 and shown < 500:
            failures.append(f"{status} blocks are in the dump but hardly drawn")
    if len(counts) < 6:
        failures.append("fewer than 6 colours: the picture is blank or nearly")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
