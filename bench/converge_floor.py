#!/usr/bin/env python3
"""A floor for issue 12's target: the least a *Python* convergence with a catalog and a journal
costs on bench_converge's tree. Not qbhook, and not safe enough to be qbhook: it exists to say
how much of qbhook's time the language and the kinds of work take, and how much qbhook's own
machinery adds (run by ``bench_converge.py --floor`` in the same rounds as qbhook and jdupes).

What it does, as qbhook does it:
  - one walk (``os.scandir``, nothing followed), sizes grouped, both ends of every same-size
    pair of inodes hashed (BLAKE3, ``O_NOFOLLOW``);
  - a catalog row per path (path, device, inode, size, mtime, hash) in SQLite (WAL);
  - relinks in batches of 1,000: the batch's intents committed durably (``synchronous=FULL``)
    before any act, each act through held folder descriptors (``O_NOFOLLOW``) with the name's
    inode, size and mtime re-checked, a temporary link checked for the kept inode and renamed
    over, then the batch's outcomes and catalog rows committed.
What it leaves out, that qbhook does: torrents and payload groups (the stub client's 10,000
torrents, the snapshot, the plan), each folder verified component by component from the
configured root, the catalog's normalized schema (filesystems, inodes, contents) and its
triggers, locks, policy, progress and the report.

  python bench/converge_floor.py POOL CATALOG      # prints one JSON line
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
from dupes_floor import walk  # the same walk (this folder is on sys.path when run as a script)

SEED_REL = "data/media/torrents/seeding"
BATCH = 1000
_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def hash_candidates(files) -> dict[str, bytes]:
    """BLAKE3 of every file that shares its size with another inode."""
    by_size = defaultdict(list)
    for f in files:
        by_size[f[3]].append(f)
    buf, view, out = bytearray(1 << 20), None, {}
    view = memoryview(buf)
    for group in by_size.values():
        if len({(f[1], f[2]) for f in group}) < 2:
            continue
        for f in group:
            fd = os.open(f[0], _NOFOLLOW)
            try:
                h = blake3.blake3()
                while n := os.readv(fd, [buf]):
                    h.update(view[:n])
                out[f[0]] = h.digest()
            finally:
                os.close(fd)
    return out


def relink(s, k) -> bool:
    """Replace seeding file ``s`` by a link of kept file ``k``, both re-checked through held folders."""
    sdir, sname = os.path.split(s[0])
    kdir, kname = os.path.split(k[0])
    sfd = os.open(sdir, _NOFOLLOW | os.O_DIRECTORY)
    kfd = os.open(kdir, _NOFOLLOW | os.O_DIRECTORY)
    try:
        st = os.stat(sname, dir_fd=sfd, follow_symlinks=False)
        kt = os.stat(kname, dir_fd=kfd, follow_symlinks=False)
        if (st.st_ino, st.st_size, st.st_mtime_ns) != s[2:5] or (kt.st_ino, kt.st_size) != k[2:4]:
            return False
        tmp = ".floor-tmp-" + sname
        os.link(kname, tmp, src_dir_fd=kfd, dst_dir_fd=sfd, follow_symlinks=False)
        if os.stat(tmp, dir_fd=sfd, follow_symlinks=False).st_ino != k[2]:
            os.unlink(tmp, dir_fd=sfd)
            return False
        os.rename(tmp, sname, src_dir_fd=sfd, dst_dir_fd=sfd)
        return True
    finally:
        os.close(sfd)
        os.close(kfd)


def main(root: str, db: str) -> dict:
    t0 = time.perf_counter()
    files = walk([root])
    hashes = hash_candidates(files)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE paths(path BLOB PRIMARY KEY, dev INT, ino INT, size INT, mtime INT, hash BLOB)")
    con.execute("CREATE TABLE journal(id INTEGER PRIMARY KEY, path BLOB, keep_ino INT, state TEXT)")
    with con:
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO paths VALUES (?,?,?,?,?,?)", ((os.fsencode(f[0]), *f[1:], hashes.get(f[0])) for f in files)
        )
    seed = os.path.join(root, SEED_REL) + os.sep
    kept = {hashes[f[0]]: f for f in files if not f[0].startswith(seed) and f[0] in hashes}
    pairs = [(f, kept[hashes[f[0]]]) for f in files if f[0].startswith(seed) and hashes.get(f[0]) in kept]
    freed, next_id = 0, 1
    for b in range(0, len(pairs), BATCH):
        batch = pairs[b : b + BATCH]
        ids = range(next_id, next_id + len(batch))
        next_id += len(batch)
        with con:
            con.execute("BEGIN")
            con.executemany(
                "INSERT INTO journal VALUES (?,?,?,'intent')",
                ((i, os.fsencode(s[0]), k[2]) for i, (s, k) in zip(ids, batch)),
            )
        done = []
        for i, (s, k) in zip(ids, batch):
            if relink(s, k):
                freed += s[3]
                done.append((i, s, k))
        with con:
            con.execute("BEGIN")
            con.executemany("UPDATE journal SET state='done' WHERE id=?", ((i,) for i, _s, _k in done))
            con.executemany("UPDATE paths SET ino=? WHERE path=?", ((k[2], os.fsencode(s[0])) for _i, s, k in done))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "files": len(files),
        "pairs": len(pairs),
        "bytes_freed": freed,
        "seconds": round(time.perf_counter() - t0, 3),
        "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 3),
    }


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.rsplit("\n\n", 1)[-1].strip())
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
