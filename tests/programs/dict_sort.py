"""Builds and sorts a large dict and list of strings; prints what it found.

  dict_sort.py N     N generated strings (fixed seed, so the output is fixed)

Run by run_program.py under glibc and under a preloaded malloc: many small
objects made, grown, freed and reused (strings, lists, dict resizes), then
sorted. The output is counts, a few samples and a SHA-256 over everything,
so any lost or corrupted object changes it.
"""

import hashlib
import random
import sys


def main():
    n = int(sys.argv[1])
    rng = random.Random(1305)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    words = ["".join(rng.choices(alphabet, k=rng.randint(1, 40))) for _ in range(n)]

    index = {}
    for i, word in enumerate(words):
        index.setdefault(word, []).append(i)
    for word in words[::3]:
        index.pop(word, None)
    for i, word in enumerate(words[::5]):
        index[word.upper() + "#"] = list(range(i % 9))
    text = " ".join(words)
    rebuilt = text.split(" ")
    assert rebuilt == words

    keys = sorted(index)
    by_size = sorted(index.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    words.sort(key=lambda w: (len(w), w), reverse=True)

    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode())
        digest.update(repr(index[key]).encode())
    for word in words:
        digest.update(word.encode())

    print(f"words {n} distinct {len(set(rebuilt))} dict {len(index)} text {len(text)}")
    print("first keys", keys[:5])
    print("last keys", keys[-5:])
    print("most indices", [(k, len(v)) for k, v in by_size[:5]])
    print("longest words", words[:3])
    print("sha256", digest.hexdigest())


if __name__ == "__main__":
    main()
