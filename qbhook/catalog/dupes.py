"""Find content stored more than once as distinct inodes.

Only sizes that collide are looked at; within a size, a cheap head+tail
sample splits candidates before any full read; only sample collisions are
fully hashed. Everything is cached per inode, so a second run reads nothing
that has not changed.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

from qbhook.catalog.hashing import SAMPLE_SIZE, _locate_many, ensure_hashes, sample_file
from qbhook.catalog.store import HASH_VALID, Catalog
from qbhook.progress import Progress


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
        return {"size": self.size, "blake3": self.hash, "scope": self.scope, "reclaimable_bytes": self.reclaimable,
                "copies": [{"fsid": c.fsid, "inode": c.ino, "nlink": c.nlink, "pools": c.pools, "paths": c.paths}
                           for c in self.copies]}


def find_duplicates(catalog: Catalog, *, settle_seconds: float = 60.0, min_size: int = 1,
                    progress: Progress | None = None) -> list[DupeSet]:
    conn = catalog.conn
    rows = conn.execute(
        f"SELECT id, size, CASE WHEN {HASH_VALID} THEN hash END, "
        "CASE WHEN sample_mtime_ns = mtime_ns AND sample_ctime_ns = ctime_ns THEN sample END "
        "FROM inodes WHERE size >= ? AND size IN "
        "(SELECT size FROM inodes WHERE size >= ? GROUP BY size HAVING count(*) > 1) ORDER BY size",
        (min_size, min_size)).fetchall()
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
    for iid, _row, path, _st in _locate_many(catalog, missing):
        if path is None:
            continue
        try:
            sample, st = sample_file(path)
        except OSError:
            continue
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
    if need_full:
        ensure_hashes(catalog, need_full, settle_seconds=settle_seconds, progress=progress)

    sets = [DupeSet(size, digest.hex(), copies) for size, digest, copies in _hash_groups(conn, min_size)]
    sets.sort(key=lambda s: (-s.reclaimable, s.hash))
    return sets


def _hash_groups(conn, min_size: int):
    """(size, digest, copies) for every content held by more than one inode: one query for all
    sets (with every inode's fsid and paths) instead of two queries per copy."""
    cur = conn.execute(
        "SELECT i.size, i.hash, i.id, f.fsid, i.ino, i.nlink, p.path, p.pool FROM inodes i "
        f"JOIN (SELECT size AS g_size, hash AS g_hash FROM inodes WHERE size >= ? AND {HASH_VALID} "
        "      GROUP BY size, hash HAVING count(*) > 1) g ON i.size = g.g_size AND i.hash = g.g_hash "
        "JOIN filesystems f ON f.id = i.fs LEFT JOIN paths p ON p.inode = i.id "
        f"WHERE {HASH_VALID} ORDER BY i.size, i.hash, i.id, p.path", (min_size,))
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
