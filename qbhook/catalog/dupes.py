"""Find content stored more than once as distinct inodes.

Only sizes that collide are looked at; within a size, a cheap head+tail
sample splits candidates before any full read; only sample collisions are
fully hashed. Everything is cached per inode, so a second run reads nothing
that has not changed.

Samples and small files (under MULTITHREAD_MIN) are read by a few threads at once: each is
a handful of system calls and one short read, so on one thread the first run mostly waits
(for the disk, or for the interpreter between calls). Big files go through ensure_hashes:
one sequential reader per filesystem, mmap workers for the biggest. A file is read through
a path only if the descriptor opened there is the catalogued inode (same inode number, same
filesystem), checked on that descriptor, so a path swapped meanwhile is never mistaken for it.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from qbhook.catalog.hashing import (
    MULTITHREAD_MIN,
    SAMPLE_SIZE,
    HashResult,
    ensure_hashes,
    hash_file,
    sample_file,
)
from qbhook.catalog.store import HASH_VALID, Catalog
from qbhook.progress import Progress

READ_THREADS = 4  # samples and small files read at once (page cache or an SSD: ~2x on 2 cores)
STORE_EVERY = 5000  # small-file hashes are committed in batches of this many
_BATCH = 32  # files per thread-pool task
R = TypeVar("R")


@dataclass
class Copy:
    inode_id: int
    fsid: str
    ino: int
    nlink: int
    pools: list[str]
    paths: list[str]


@dataclass
class DupeSet:
    size: int
    hash: str
    copies: list[Copy]

    @property
    def scope(self) -> str:
        pools = {p for c in self.copies for p in c.pools}
        return "across-pools" if len(pools) > 1 else "within-pool"

    @property
    def reclaimable(self) -> int:
        return self.size * (len(self.copies) - 1)

    def as_dict(self) -> dict:
        return {
            "size": self.size,
            "blake3": self.hash,
            "scope": self.scope,
            "reclaimable_bytes": self.reclaimable,
            "copies": [
                {"fsid": c.fsid, "inode": c.ino, "nlink": c.nlink, "pools": c.pools, "paths": c.paths}
                for c in self.copies
            ],
        }


def find_duplicates(
    catalog: Catalog, *, settle_seconds: float = 60.0, min_size: int = 1, progress: Progress | None = None
) -> list[DupeSet]:
    conn = catalog.conn
    rows = conn.execute(
        f"SELECT id, size, CASE WHEN {HASH_VALID} THEN hash END, "
        "CASE WHEN sample_mtime_ns = mtime_ns AND sample_ctime_ns = ctime_ns THEN sample END "
        "FROM inodes WHERE size >= ? AND size IN "
        "(SELECT size FROM inodes WHERE size >= ? GROUP BY size HAVING count(*) > 1) ORDER BY size",
        (min_size, min_size),
    ).fetchall()
    by_size: dict[int, list] = defaultdict(list)
    for r in rows:
        by_size[r[1]].append(r)

    need_full: list[int] = []
    samples_new: list[tuple[int, bytes, int, int]] = []
    to_sample: dict[int, list] = {}
    for size, members in by_size.items():
        if all(m[2] is not None for m in members):
            continue
        if size <= 2 * SAMPLE_SIZE:
            # The sample would read the whole file anyway.
            need_full.extend(m[0] for m in members if m[2] is None)
            continue
        to_sample[size] = members
    # Samples for every member that lacks a valid one, catalog rows read in chunks.
    missing = [m[0] for members in to_sample.values() for m in members if m[3] is None]
    fresh: dict[int, bytes] = {}
    for iid, _path, (sample, st) in _read_each(catalog, missing, sample_file, lambda r: r[1]):
        fresh[iid] = sample
        samples_new.append((iid, sample, st.st_mtime_ns, st.st_ctime_ns))
    for members in to_sample.values():
        keyed: dict[bytes, list] = defaultdict(list)
        for m in members:
            sample = m[3] if m[3] is not None else fresh.get(m[0])
            if sample is not None:
                keyed[sample].append(m)
        for group in keyed.values():
            if len(group) > 1:
                need_full.extend(m[0] for m in group if m[2] is None)
    if samples_new:
        catalog.store_samples(samples_new)
    size_of = {r[0]: r[1] for r in rows}
    small = [i for i in need_full if size_of[i] < MULTITHREAD_MIN]
    if small:
        _hash_small(catalog, small, settle_seconds, progress)
    big = [i for i in need_full if size_of[i] >= MULTITHREAD_MIN]
    if big:
        ensure_hashes(catalog, big, settle_seconds=settle_seconds, progress=progress)

    sets = [DupeSet(size, digest.hex(), copies) for size, digest, copies in _hash_groups(conn, min_size)]
    sets.sort(key=lambda s: (-s.reclaimable, s.hash))
    return sets


def _read_each(
    catalog: Catalog,
    inode_ids: list[int],
    read: Callable[[bytes], R],
    stat_of: Callable[[R], os.stat_result],
    chunk: int = 500,
) -> Iterator[tuple[int, bytes, R]]:
    """``read(path)`` for each inode, on READ_THREADS threads: yields (inode id, path, result)
    for the inodes one of whose catalogued paths still is that inode; the others are left out.

    ``stat_of(result)`` is the fstat of the descriptor ``read`` opened (open_regular: never
    through a symlink, never a FIFO or device). Its inode number is compared in the reading
    thread, its filesystem here (the st_dev -> filesystem map lives in the catalog).
    """

    def attempt(job: tuple[int, int, int, list[bytes]]):
        iid, fs, ino, paths = job
        for path in paths:
            try:
                res = read(path)
            except OSError:
                continue
            if stat_of(res).st_ino == ino:
                return iid, fs, path, res
        return iid, fs, None, None

    def attempt_batch(jobs):
        # A batch per task: a future per file costs more than sampling a page-cached file.
        return [attempt(j) for j in jobs]

    dev_fs: dict[int, int] = {}  # as a scan does: st_dev -> filesystem looked up once per call
    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="dupes-read") as ex:
        for i in range(0, len(inode_ids), chunk):
            found = catalog.inode_keys_and_paths(inode_ids[i : i + chunk])
            jobs = [(iid, *found[iid]) for iid in inode_ids[i : i + chunk] if iid in found]
            batches = [jobs[k : k + _BATCH] for k in range(0, len(jobs), _BATCH)]
            for done in ex.map(attempt_batch, batches):
                for iid, want_fs, path, res in done:
                    if path is None:
                        continue
                    dev = stat_of(res).st_dev
                    fs = dev_fs.get(dev)
                    if fs is None:
                        fs = dev_fs[dev] = catalog.fs_for_path(path, dev)
                    if fs == want_fs:
                        yield iid, path, res


def _hash_small(catalog: Catalog, inode_ids: list[int], settle_seconds: float, progress: Progress | None) -> None:
    """Full hashes of small files, READ_THREADS at a time; cached only if settled (as ensure_hashes)."""
    hashed: list[tuple[int, bytes, os.stat_result]] = []
    unsettled: list[tuple[int, os.stat_result]] = []
    now = time.time()
    for done, (iid, _path, res) in enumerate(_read_each(catalog, inode_ids, hash_file, _before), 1):
        if res.settled(settle_seconds, now):
            hashed.append((iid, res.digest, res.after))
        else:
            unsettled.append((iid, res.after))
        if len(hashed) + len(unsettled) >= STORE_EVERY:
            catalog.store_hashes(hashed)
            catalog.store_stats(unsettled)
            hashed.clear()
            unsettled.clear()
        if progress is not None and not done % 256:
            progress.update(done, f"hashing small files {done:,}/{len(inode_ids):,}")
    catalog.store_hashes(hashed)
    catalog.store_stats(unsettled)


def _before(res: HashResult) -> os.stat_result:
    return res.before


def _hash_groups(conn, min_size: int):
    """(size, digest, copies) for every content held by more than one inode: one query for all
    sets (with every inode's fsid and paths) instead of two queries per copy."""
    cur = conn.execute(
        "SELECT i.size, i.hash, i.id, f.fsid, i.ino, i.nlink, p.path, p.pool FROM inodes i "
        f"JOIN (SELECT size AS g_size, hash AS g_hash FROM inodes WHERE size >= ? AND {HASH_VALID} "
        "      GROUP BY size, hash HAVING count(*) > 1) g ON i.size = g.g_size AND i.hash = g.g_hash "
        "JOIN filesystems f ON f.id = i.fs LEFT JOIN paths p ON p.inode = i.id "
        f"WHERE {HASH_VALID} ORDER BY i.size, i.hash, i.id, p.path",
        (min_size,),
    )
    key, copies, copy = None, [], None
    for size, digest, iid, fsid, ino, nlink, path, pool in cur:
        if (size, digest) != key:
            if key is not None:
                yield key[0], key[1], _finish(copies)
            key, copies, copy = (size, digest), [], None
        if copy is None or copy.inode_id != iid:
            copy = Copy(iid, fsid, ino, nlink, [], [])
            copies.append(copy)
        if path is not None:
            copy.paths.append(os.fsdecode(path))
            copy.pools.append(pool)
    if key is not None:
        yield key[0], key[1], _finish(copies)


def _finish(copies: list[Copy]) -> list[Copy]:
    for c in copies:
        c.pools = sorted(set(c.pools))
    return copies
