"""Catalog queries and updates: filesystems, inodes and the paths that link to them.

An inode row is keyed by (stable filesystem id, inode number); its content hash
is valid only while size, mtime_ns and ctime_ns still equal the values it was
hashed under. All links of an inode share that one row, so a file hashed once
is known under every name it has.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from qbhook import fsid as fsid_mod
from qbhook.catalog.db import Tx, connect

HASH_VALID = ("hash IS NOT NULL AND hash_size = size AND hash_mtime_ns = mtime_ns "
              "AND hash_ctime_ns = ctime_ns")


@dataclass(frozen=True)
class InodeRow:
    id: int
    fs: int
    fsid: str
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    nlink: int
    hash: bytes | None          # None unless valid for the recorded stat


@dataclass(frozen=True)
class Filesystem:
    id: int
    fsid: str
    kind: str
    mountpoint: str
    dev: int | None


class Catalog:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self._dev_cache: dict[int, int] = {}
        self._fsid_cache: dict[int, str] = {}

    @classmethod
    def open(cls, path: str | Path, readonly: bool = False) -> "Catalog":
        return cls(connect(path, readonly=readonly))

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------ filesystems
    def fs_for_path(self, path: str | bytes | os.PathLike, dev: int | None = None) -> int:
        """Row id of the filesystem holding ``path`` (registering it, re-mapping st_dev if it moved)."""
        if dev is None:
            dev = os.lstat(path).st_dev
        cached = self._dev_cache.get(dev)
        if cached is not None:
            return cached
        ident = fsid_mod.identify(os.fsdecode(path))
        now = time.time()
        with Tx(self.conn) as c:
            # st_dev numbers get reused: whoever had this dev before no longer does.
            c.execute("UPDATE filesystems SET dev = NULL WHERE dev = ? AND fsid != ?", (dev, ident.fsid))
            c.execute(
                "INSERT INTO filesystems(fsid, kind, fstype, source, mountpoint, dev, first_seen, last_seen) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(fsid) DO UPDATE SET dev=excluded.dev, "
                "mountpoint=excluded.mountpoint, source=excluded.source, fstype=excluded.fstype, last_seen=excluded.last_seen",
                (ident.fsid, ident.kind, ident.fstype, ident.source, os.fsencode(ident.mountpoint), dev, now, now))
            fs = c.execute("SELECT id FROM filesystems WHERE fsid = ?", (ident.fsid,)).fetchone()[0]
        self._dev_cache[dev] = fs
        self._fsid_cache[fs] = ident.fsid
        return fs

    def fsid(self, fs: int) -> str:
        if fs not in self._fsid_cache:
            self._fsid_cache[fs] = self.conn.execute("SELECT fsid FROM filesystems WHERE id=?", (fs,)).fetchone()[0]
        return self._fsid_cache[fs]

    def filesystems(self) -> list[Filesystem]:
        return [Filesystem(r[0], r[1], r[2], os.fsdecode(r[3]) if r[3] else "", r[4])
                for r in self.conn.execute("SELECT id, fsid, kind, mountpoint, dev FROM filesystems ORDER BY id")]

    # ------------------------------------------------------------ scanning support
    def load_pool_paths(self, pool: str) -> dict[bytes, tuple]:
        """path -> (path_id, inode_id, fs, ino, size, mtime_ns, ctime_ns, nlink) for one pool."""
        cur = self.conn.execute(
            "SELECT p.path, p.id, i.id, i.fs, i.ino, i.size, i.mtime_ns, i.ctime_ns, i.nlink "
            "FROM paths p JOIN inodes i ON i.id = p.inode WHERE p.pool = ?", (pool,))
        return {r[0]: r[1:] for r in cur}

    def upsert(self, c: sqlite3.Connection, pool: str, path: bytes, fs: int, st: os.stat_result, scan_id: int | None) -> int:
        """Record that ``path`` is a link to the inode described by ``st``. Caller holds a transaction."""
        inode_id = c.execute(
            "INSERT INTO inodes(fs, ino, size, mtime_ns, ctime_ns, nlink, seen_scan) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(fs, ino) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, "
            "ctime_ns=excluded.ctime_ns, nlink=excluded.nlink, seen_scan=excluded.seen_scan RETURNING id",
            (fs, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink, scan_id)).fetchone()[0]
        c.execute("INSERT INTO paths(path, inode, pool, seen_scan) VALUES (?,?,?,?) "
                  "ON CONFLICT(path) DO UPDATE SET inode=excluded.inode, pool=excluded.pool, seen_scan=excluded.seen_scan",
                  (path, inode_id, pool, scan_id))
        return inode_id

    def remove_paths(self, c: sqlite3.Connection, path_ids: list[int]) -> None:
        for i in range(0, len(path_ids), 500):
            chunk = path_ids[i:i + 500]
            c.execute(f"DELETE FROM paths WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def drop_orphan_inodes(self, c: sqlite3.Connection) -> int:
        return c.execute("DELETE FROM inodes WHERE NOT EXISTS (SELECT 1 FROM paths WHERE paths.inode = inodes.id)").rowcount

    def record_path(self, path: str | bytes, pool: str, *, own_change: bool = False) -> int:
        """Re-stat one path and record it (after qbhook linked/renamed it).

        ``own_change=True`` says qbhook itself caused the metadata change (link,
        rename): if size and mtime are unchanged, the hash stays valid and is
        carried over to the new ctime instead of forcing a rehash.
        """
        bpath = os.fsencode(path)
        st = os.lstat(bpath)
        fs = self.fs_for_path(bpath, st.st_dev)
        with Tx(self.conn) as c:
            old = c.execute("SELECT hash, hash_size, hash_mtime_ns FROM inodes WHERE fs=? AND ino=?", (fs, st.st_ino)).fetchone()
            inode_id = self.upsert(c, pool, bpath, fs, st, None)
            if own_change and old and old[0] is not None and old[1] == st.st_size and old[2] == st.st_mtime_ns:
                c.execute("UPDATE inodes SET hash_ctime_ns=? WHERE id=?", (st.st_ctime_ns, inode_id))
        return inode_id

    def forget_path(self, path: str | bytes) -> None:
        with Tx(self.conn) as c:
            c.execute("DELETE FROM paths WHERE path=?", (os.fsencode(path),))
            self.drop_orphan_inodes(c)

    # ------------------------------------------------------------ hashes
    def store_hash(self, inode_id: int, digest: bytes, st: os.stat_result) -> None:
        with Tx(self.conn) as c:
            c.execute("UPDATE inodes SET size=?, mtime_ns=?, ctime_ns=?, nlink=?, hash=?, hash_size=?, "
                      "hash_mtime_ns=?, hash_ctime_ns=?, hashed_at=? WHERE id=?",
                      (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink, digest, st.st_size,
                       st.st_mtime_ns, st.st_ctime_ns, time.time(), inode_id))

    def store_stat(self, inode_id: int, st: os.stat_result) -> None:
        with Tx(self.conn) as c:
            c.execute("UPDATE inodes SET size=?, mtime_ns=?, ctime_ns=?, nlink=? WHERE id=?",
                      (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink, inode_id))

    def store_samples(self, rows: list[tuple[int, bytes, int, int]]) -> None:
        with Tx(self.conn) as c:
            c.executemany("UPDATE inodes SET sample=?, sample_mtime_ns=?, sample_ctime_ns=? WHERE id=?",
                          [(s, m, ct, i) for i, s, m, ct in rows])

    # ------------------------------------------------------------ lookups
    def inode(self, inode_id: int) -> InodeRow | None:
        r = self.conn.execute(
            f"SELECT i.id, i.fs, f.fsid, i.ino, i.size, i.mtime_ns, i.ctime_ns, i.nlink, CASE WHEN {HASH_VALID} THEN hash END "
            "FROM inodes i JOIN filesystems f ON f.id = i.fs WHERE i.id=?", (inode_id,)).fetchone()
        return InodeRow(*r) if r else None

    def inode_by_path(self, path: str | bytes) -> InodeRow | None:
        r = self.conn.execute("SELECT inode FROM paths WHERE path=?", (os.fsencode(path),)).fetchone()
        return self.inode(r[0]) if r else None

    def inode_by_key(self, fs: int, ino: int) -> InodeRow | None:
        r = self.conn.execute("SELECT id FROM inodes WHERE fs=? AND ino=?", (fs, ino)).fetchone()
        return self.inode(r[0]) if r else None

    def paths_of(self, inode_id: int) -> list[tuple[bytes, str]]:
        return [(r[0], r[1]) for r in self.conn.execute("SELECT path, pool FROM paths WHERE inode=? ORDER BY path", (inode_id,))]

    def inodes_with_content(self, size: int, digest: bytes) -> list[InodeRow]:
        ids = [r[0] for r in self.conn.execute(
            f"SELECT id FROM inodes WHERE size=? AND hash=? AND {HASH_VALID}", (size, digest))]
        return [self.inode(i) for i in ids]

    def inode_ids_of_size(self, size: int) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM inodes WHERE size=?", (size,))]

    def counts(self) -> dict:
        c = self.conn
        return {
            "filesystems": c.execute("SELECT count(*) FROM filesystems").fetchone()[0],
            "inodes": c.execute("SELECT count(*) FROM inodes").fetchone()[0],
            "paths": c.execute("SELECT count(*) FROM paths").fetchone()[0],
            "hashed": c.execute(f"SELECT count(*) FROM inodes WHERE {HASH_VALID}").fetchone()[0],
            "bytes": c.execute("SELECT coalesce(sum(size),0) FROM inodes").fetchone()[0],
        }
