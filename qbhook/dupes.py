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

from qbhook.catalog.store import HASH_VALID, Catalog
from qbhook.hashing import SAMPLE_SIZE, _locate, ensure_hashes, sample_file
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
    for size, members in by_size.items():
        if all(m[2] is not None for m in members):
            continue
        if size <= 2 * SAMPLE_SIZE:
            # The sample would read the whole file anyway.
            need_full.extend(m[0] for m in members if m[2] is None)
            continue
        keyed: dict[bytes, list] = defaultdict(list)
        for m in members:
            sample = m[3]
            if sample is None:
                _row, path = _locate(catalog, m[0])
                if path is None:
                    continue
                try:
                    sample, st = sample_file(path)
                except OSError:
                    continue
                samples_new.append((m[0], sample, st.st_mtime_ns, st.st_ctime_ns))
            keyed[sample].append(m)
        for group in keyed.values():
            if len(group) > 1:
                need_full.extend(m[0] for m in group if m[2] is None)
    if samples_new:
        catalog.store_samples(samples_new)
    if need_full:
        ensure_hashes(catalog, need_full, settle_seconds=settle_seconds, progress=progress)

    sets = []
    for size, digest, ids in _hash_groups(conn, min_size):
        copies = []
        for iid in ids:
            row = catalog.inode(iid)
            paths = catalog.paths_of(iid)
            copies.append(Copy(iid, row.fsid, row.ino, row.nlink, sorted({p for _, p in paths}),
                               [os.fsdecode(p) for p, _ in paths]))
        sets.append(DupeSet(size, digest.hex(), copies))
    sets.sort(key=lambda s: (-s.reclaimable, s.hash))
    return sets


def _hash_groups(conn, min_size: int):
    cur = conn.execute(
        f"SELECT size, hash, group_concat(id) FROM inodes WHERE size >= ? AND {HASH_VALID} "
        "GROUP BY size, hash HAVING count(*) > 1", (min_size,))
    for size, digest, ids in cur:
        yield size, digest, [int(i) for i in ids.split(",")]
