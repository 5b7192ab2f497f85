#!/usr/bin/env python3
"""A floor for issue 13's first-run target: the least a *Python* duplicate finder that keeps a
catalog costs on bench_dupes's tree. Not qbhook: it exists to say how much of a first `qbhook
dupes` the language and the kinds of work take, and how much qbhook's own machinery adds (run by
``bench_dupes.py --floor`` in the same rounds as qbhook and jdupes).

What it does, as qbhook does it: one walk (``os.scandir``, nothing followed, one entry per inode);
files grouped by size; above 64 KiB a partial hash of the first 64 KiB first; then BLAKE3 of
every remaining candidate (``O_NOFOLLOW``; multi-threaded from 8 MiB, as qbhook's big files are
hashed beside the small ones); a catalog row per path (path, device, inode, size, mtime, hash) in
SQLite. What it leaves out: the catalog's normalized schema (filesystems, inodes, contents), its
triggers and the rescan memo the warm run relies on, the kept report, identity checks of each
opened file against the walk, ignore rules, progress, and the JSON report's paths.

  python bench/dupes_floor.py CATALOG ROOT...      # prints one JSON line
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import sys
import time
from collections import defaultdict

import blake3

PARTIAL = 64 * 1024
BIG = 8 * 1024 * 1024
_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def walk(roots: list[str]) -> list[tuple[str, int, int, int, int]]:
    """(path, dev, ino, size, mtime_ns) of every regular file below the roots."""
    out, stack = [], list(roots)
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    out.append((e.path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return out


class Hasher:
    def __init__(self) -> None:
        self.buf = bytearray(1 << 20)
        self.view = memoryview(self.buf)

    def digest(self, path: str, size: int, limit: int | None = None) -> bytes:
        fd = os.open(path, _NOFOLLOW)
        try:
            if limit is not None:
                n = os.preadv(fd, [self.view[:limit]], 0)
                return blake3.blake3(self.view[:n]).digest()
            h = blake3.blake3(max_threads=blake3.blake3.AUTO if size >= BIG else 1)
            while n := os.readv(fd, [self.buf]):
                h.update(self.view[:n])
            return h.digest()
        finally:
            os.close(fd)


def duplicate_sets(files, hasher: Hasher) -> tuple[list[list[tuple]], dict[str, bytes]]:
    """Sets of distinct inodes with equal content, and the full hash of every file read in full."""
    by_size: dict[int, dict] = defaultdict(dict)
    for f in files:
        if f[3] > 0:
            by_size[f[3]].setdefault((f[1], f[2]), f)
    sets, hashes = [], {}
    for size, inodes in by_size.items():
        if len(inodes) < 2:
            continue
        groups = [list(inodes.values())]
        if size > PARTIAL:
            heads = defaultdict(list)
            for f in groups[0]:
                heads[hasher.digest(f[0], size, PARTIAL)].append(f)
            groups = [g for g in heads.values() if len(g) > 1]
        for g in groups:
            full = defaultdict(list)
            for f in g:
                hashes[f[0]] = d = hasher.digest(f[0], size)
                full[d].append(f)
            sets += [s for s in full.values() if len(s) > 1]
    return sets, hashes


def main(db: str, roots: list[str]) -> dict:
    t0 = time.perf_counter()
    files = walk(roots)
    sets, hashes = duplicate_sets(files, Hasher())
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE paths(path BLOB PRIMARY KEY, dev INT, ino INT, size INT, mtime INT, hash BLOB)")
    with con:
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO paths VALUES (?,?,?,?,?,?)", ((os.fsencode(f[0]), *f[1:], hashes.get(f[0])) for f in files)
        )
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "sets": len(sets),
        "reclaimable_bytes": sum(s[0][3] * (len(s) - 1) for s in sets),
        "seconds": round(time.perf_counter() - t0, 3),
        "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 3),
    }


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__.rsplit("\n\n", 1)[-1].strip())
    print(json.dumps(main(sys.argv[1], sys.argv[2:])))
