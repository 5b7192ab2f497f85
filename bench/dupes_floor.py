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

``--two``: the same work on both cores, the most a parallel design could gain: after the walk
the candidates are hashed by two forked processes (size groups dealt out by bytes) while the
parent writes the catalog rows; the hashes are then written into the rows in the same
transaction. What it leaves out besides the above: every file is opened by path in a child (no
descriptor is handed over), and the children's results come back in one piece at the end.

  python bench/dupes_floor.py [--two] CATALOG ROOT...      # prints one JSON line
"""

from __future__ import annotations

import json
import os
import pickle
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


def _catalog(db: str) -> sqlite3.Connection:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE paths(path BLOB PRIMARY KEY, dev INT, ino INT, size INT, mtime INT, hash BLOB)")
    return con


def _forked(files: list) -> list[tuple[int, int]]:
    """Two children, each hashing half of the candidates' bytes (duplicate_sets on its share):
    (pid, read end of the pipe its hashes come back on)."""
    by_size: dict[int, list] = defaultdict(list)
    for f in files:
        by_size[f[3]].append(f)
    shares: list[list] = [[], []]
    load = [0, 0]
    for size, members in sorted(by_size.items(), key=lambda kv: -kv[0] * len(kv[1])):
        k = 0 if load[0] <= load[1] else 1
        shares[k] += members
        load[k] += size * len(members)
    kids = []
    for share in shares:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: hash its share, send the hashes, leave without cleanup
            os.close(r)
            with os.fdopen(w, "wb") as out:
                out.write(pickle.dumps(duplicate_sets(share, Hasher())[1]))
            os._exit(0)
        os.close(w)
        kids.append((pid, r))
    return kids


def _sets_of(files: list, hashes: dict[str, bytes]) -> list[list[tuple]]:
    groups: dict[tuple[int, bytes], dict] = defaultdict(dict)
    for f in files:
        if (d := hashes.get(f[0])) is not None:
            groups[(f[3], d)].setdefault((f[1], f[2]), f)
    return [list(g.values()) for g in groups.values() if len(g) > 1]


def main(db: str, roots: list[str], two: bool = False) -> dict:
    t0 = time.perf_counter()
    files = walk(roots)
    phases = {"walk": time.perf_counter() - t0}
    if two:
        kids = _forked(files)
        con = _catalog(db)
        con.execute("BEGIN")
        con.executemany("INSERT INTO paths VALUES (?,?,?,?,?,NULL)", ((os.fsencode(f[0]), *f[1:]) for f in files))
        phases["rows, beside the hashing"] = time.perf_counter() - t0 - phases["walk"]
        hashes: dict[str, bytes] = {}
        for pid, r in kids:
            with os.fdopen(r, "rb") as got:
                hashes.update(pickle.loads(got.read()))
            os.waitpid(pid, 0)
        phases["waiting for the hashes"] = time.perf_counter() - t0 - sum(phases.values())
        con.executemany("UPDATE paths SET hash = ? WHERE path = ?", ((d, os.fsencode(p)) for p, d in hashes.items()))
        con.execute("COMMIT")
        sets = _sets_of(files, hashes)
    else:
        sets, hashes = duplicate_sets(files, Hasher())
        phases["hashing"] = time.perf_counter() - t0 - phases["walk"]
        con = _catalog(db)
        with con:
            con.execute("BEGIN")
            con.executemany(
                "INSERT INTO paths VALUES (?,?,?,?,?,?)",
                ((os.fsencode(f[0]), *f[1:], hashes.get(f[0])) for f in files),
            )
    phases["the rest"] = time.perf_counter() - t0 - sum(phases.values())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    kids_ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "sets": len(sets),
        "reclaimable_bytes": sum(s[0][3] * (len(s) - 1) for s in sets),
        "seconds": round(time.perf_counter() - t0, 3),
        "cpu_seconds": round(ru.ru_utime + ru.ru_stime + kids_ru.ru_utime + kids_ru.ru_stime, 3),
        "phases": {k: round(v, 3) for k, v in phases.items()},  # wall seconds, in order
    }


if __name__ == "__main__":
    argv = sys.argv[1:]
    two = "--two" in argv
    argv = [a for a in argv if a != "--two"]
    if len(argv) < 2:
        sys.exit(__doc__.rsplit("\n\n", 1)[-1].strip())
    print(json.dumps(main(argv[0], argv[1:], two)))
