"""The `osmem` command's modules: dumpfile (reads os_heap_dump output) and
heapmap (draws it)."""
