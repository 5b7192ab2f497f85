"""Catalog queries and updates: filesystems, inodes and the paths that link to them.

An inode row is keyed by (stable filesystem id, inode number); its content hash
is valid only while size, mtime_ns and ctime_ns still equal the values it was
hashed under. All links of an inode share that one row, so a file hashed once
is known under every name it has.
"""

from __future__ import annotations

import errno
import json
import operator
import os
import select
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from qbhook.catalog import fsid as fsid_mod
from qbhook.catalog.db import Tx, connect, rollback
from qbhook.dirfd import LOOK_MAX_OPEN, FolderReader, FolderRefused, Pin
from qbhook.errors import FilesystemIdError, NotRegularFile, PathMapError, PathOutsideRoots
from qbhook.paths import shown


def hash_valid(alias: str = "") -> str:
    """SQL condition, the one home of the rule: a stored hash describes the file only while the
    size, mtime and ctime it was taken under are still the inode's. ``alias``: the inodes table's."""
    a = f"{alias}." if alias else ""
    return (
        f"{a}hash IS NOT NULL AND {a}hash_size = {a}size AND {a}hash_mtime_ns = {a}mtime_ns "
        f"AND {a}hash_ctime_ns = {a}ctime_ns"
    )


HASH_VALID = hash_valid()


@dataclass(frozen=True)
class CountsMark:
    """Catalog.counts() as read at one moment, with the marks that tell whether they still hold."""

    counts: dict
    mark: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class CarryProof:
    """The warrant of a hash carry-over: one inode (``dev``, ``ino``) was held open (``Pin``) from a
    stat of it (``size``, ``mtime_ns``, ``ctime_ns``: the stat its hash must have been valid for)
    until the stat with ``after_ctime_ns`` was taken, so both are stats of one and the same file.

    Equal (st_dev, st_ino) alone proves nothing: ext4 hands a freed inode number to the next new
    file at once (ZFS reuses object numbers too), so a writer who removes every link of a file and
    creates another one with the old size and mtime (``touch -d``) gets a file that passes. An open
    descriptor keeps the inode alive, and a live inode's number cannot be given to another file.
    Made by ``across`` only, from a held ``dirfd.Pin``; ``covers`` binds it to the one stat it was made for.

    The rule of every carry (R67): a hash is carried only onto a stat taken with no wait after
    the last check of it (the ``before`` stat, or a look that found the inode still so): nothing
    in between but qbhook's own act (a link, rename or unlink). A wait there (a folder's fsync,
    a catalog commit, a walk that may make folders) is where a writer rewrites the file at the
    same size and sets its mtime back (a tagger, ``touch -r``, ``rsync -t``): only the ctime
    shows it, and a stat taken after that wait would make the old hash valid for the new bytes.
    So the stat is taken right after the act, before any such wait (``Relinker._relinked``,
    ``Executor._delete``), or the pinned inode is looked at again after it, right before the act
    (``fsops._hold``, ``unhide_after_move``, ``link_into``). ``across`` cannot tell when a stat
    was taken: its callers keep that rule."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    after_ctime_ns: int

    @classmethod
    def across(cls, pin: Pin, after: os.stat_result, before: os.stat_result | None = None) -> CarryProof | None:
        """The warrant to carry a hash valid for ``before`` (default: the pin's own ``st``) onto
        ``after``, both taken while ``pin`` was held (the caller's word: a stat is not timestamped),
        when both are the pinned inode; None otherwise, or once the pin is closed."""
        if not pin.held:
            return None
        b = pin.st if before is None else before
        key = (pin.st.st_dev, pin.st.st_ino)
        if (b.st_dev, b.st_ino) != key or (after.st_dev, after.st_ino) != key:
            return None
        return cls(*key, b.st_size, b.st_mtime_ns, b.st_ctime_ns, after.st_ctime_ns)

    def covers(self, st: os.stat_result) -> bool:
        """Is ``st`` the stat this proof was made for (its inode, with the ctime it was taken at)?"""
        return (st.st_dev, st.st_ino, st.st_ctime_ns) == (self.dev, self.ino, self.after_ctime_ns)


def _carried(carry: CarryProof | None, st: os.stat_result) -> tuple:
    """_CARRY_HASH_FROM's three values: the proven ``before`` when ``carry`` covers ``st``, else NULLs (no carry)."""
    if carry is None or not carry.covers(st):
        return (None, None, None)
    return (carry.size, carry.mtime_ns, carry.ctime_ns)


# A hash or stat is written to the row of the file that was read, not to its row id alone: the
# ids are not AUTOINCREMENT, so if another process dropped that row during a long read (the
# scan: the file gone, its last path forgotten) a new row could have taken the same id, and
# would get the old file's hash. The row's identity is (fs, ino); fs by the st_dev it was read
# on (``filesystems.dev``, a mapping each scan keeps current). A row that is not it is left
# alone: the hash is read again when next needed (cost, never a wrong hash).
_STILL_THAT_FILE = "id=? AND ino=? AND fs IN (SELECT id FROM filesystems WHERE dev=?)"

# A hash's or a settle check's stat (``Catalog.store_hashes``, ``store_stats``) writes size, times
# and link count only (dupes' forked children send no owner back): where it moves the ctime (a
# chmod or chown moves it too), the owner and mode the row held are of an older stat, so they
# become unknown (NULL; the three ``?``: the new ctime), and the next rescan, whose lines then
# differ, writes them. Kept, they would pass for current: the rescan compares them with the
# ctime, which now matches. The old row's ctime, unqualified, is read before any SET applies.
_OWNER_IF_SAME_CTIME = (
    "mode=CASE WHEN ctime_ns=? THEN mode END, uid=CASE WHEN ctime_ns=? THEN uid END, "
    "gid=CASE WHEN ctime_ns=? THEN gid END"
)


def _inode_values(fs: int, st, scan_id: int) -> tuple:
    """An inode row's columns from a stat, in ``Catalog._UPSERT_INODE``'s order: what the catalog
    keeps of a file (``stat_signature`` hashes the same fields but the scan id)."""
    return (
        fs,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_nlink,
        st.st_mode,
        st.st_uid,
        st.st_gid,
        scan_id,
    )


class InodeStat(NamedTuple):
    """What the catalog keeps of a file's lstat, in the one order all its copies use: the line
    find prints (``Catalog.find_line``), a catalog row (``Catalog.stat_rows``: there the first field
    is the filesystem's row id, not a device), what ``stat_signature`` hashes, and a relinked name's
    stat as a forked child sends it back (``fsops.relinked_to_parent``). Named as ``os.stat_result``
    names them, so either reads alike (``_inode_values``). ``st_mode``, ``st_uid`` and ``st_gid``
    are None where not known (a catalog row's "- - -": ``schema.OWNER_DDL``)."""

    st_dev: int
    st_ino: int
    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_nlink: int
    st_mode: int | None
    st_uid: int | None
    st_gid: int | None


# A stat's (``os.stat_result``'s or an ``InodeStat``'s) fields as a plain tuple in ``InodeStat``'s
# order, read in C: no Python frame per file.
stat_fields = operator.attrgetter(*InodeStat._fields)


def stat_signature(row: tuple) -> int:
    """What the scanner compares: Python's tuple hash of ``row``, the nine fields in ``InodeStat``'s
    order with the catalog's filesystem row id first (no per-process salt for ints and None; an
    ``InodeStat`` hashes as its plain tuple). The owner and mode (``schema.OWNER_DDL``) are None where
    not known: a row written before they were kept, or whose ctime a hash's stat moved
    (``store_stats``), so a rescan writes them once (any file's stat has all three).

    A change of any single field (values below 2**61) always changes it: each step of CPython's
    tuple hash is a bijection of its state. Several fields changing at once collide with odds
    of about 2**-64. A cached content hash is never trusted on this alone: ensure_hashes
    re-stats the file and compares size/mtime/ctime before using it.
    """
    return hash(row)


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
    hash: bytes | None  # None unless valid for the recorded stat


@dataclass(frozen=True)
class Filesystem:
    id: int
    fsid: str
    kind: str
    mountpoint: str
    dev: int | None


class _MountWatch:
    """Tells whether this process's mount table changed since the last call.

    /proc/self/mountinfo is pollable: POLLPRI is raised once after each mount or unmount in
    the namespace (poll itself re-arms it). Where it cannot be watched, every call says
    "changed", so callers never trust a cache they cannot validate.
    """

    def __init__(self):
        self._poll = None
        try:
            self._file = open("/proc/self/mountinfo", "rb", buffering=0)  # noqa: SIM115 - kept open
            self._poll = select.poll()
            self._poll.register(self._file.fileno(), select.POLLPRI | select.POLLERR)
        except (OSError, AttributeError):
            self._poll = None

    def changed(self) -> bool:
        if self._poll is None:
            return True
        # Asked before every filesystem lookup (four per relink): no generator when nothing happened.
        events = self._poll.poll(0)
        return bool(events) and any(ev & (select.POLLPRI | select.POLLERR) for _fd, ev in events)

    def close(self) -> None:
        if self._poll is not None:
            self._file.close()
            self._poll = None


UNKNOWN_FS = -1  # FrozenCatalog's row id of a filesystem it was not told about: no catalogued file is on it


class FrozenCatalog:
    """The answers a batch of relinks asks of the catalog, read beforehand by ``Catalog.frozen``, for
    a forked child that must not touch SQLite.

    Why not a connection of its own: while the parent's connection, inherited, lives in the child's
    process image, SQLite counts a new one as a second connection of the same process and takes no
    file lock for it; its writes can then be checkpointed away by another process (review 21,
    reproduced). So: a device the parent did not look up is ``UNKNOWN_FS`` (no planned file is on
    it: the relink refuses), an inode row not read is "not catalogued" (the file is read and
    hashed), and a hash computed is kept in ``stored`` for the parent to write.
    """

    def __init__(self, devs: dict[int, int], fsids: dict[int, str], rows: dict):
        self.devs, self.fsids, self.rows = devs, fsids, rows
        self.stored: list[tuple[int, bytes, os.stat_result]] = []

    def fs_for_path(self, _path, dev: int | None = None) -> int:
        return self.devs.get(dev, UNKNOWN_FS) if dev is not None else UNKNOWN_FS

    def fsid(self, fs: int) -> str:
        return self.fsids.get(fs, "?")

    def inode_by_key(self, fs: int, ino: int):
        return self.rows.get((fs, ino))

    def inodes_by_key(self, keys: Iterable[tuple[int, int]]) -> dict:
        return {k: r for k in keys if (r := self.rows.get(k)) is not None}

    def store_hash(self, inode_id: int, digest: bytes, st: os.stat_result) -> None:
        self.stored.append((inode_id, bytes(digest), st))


def _shared_id_error(
    ident: fsid_mod.FsIdentity, other: fsid_mod.FsIdentity, pool_roots: Iterable[str] = ()
) -> FilesystemIdError:
    if ident.kind == "marker":
        # Never "either one": the marker at a pool root is the one the catalog's files are keyed
        # by, and deleting it re-keys the whole pool (every hash lost). The copy is the other's.
        roots = {os.path.normpath(r) for r in pool_roots}
        copies = [m for m in (ident.mountpoint, other.mountpoint) if os.path.normpath(m) not in roots]
        where = shown(copies[0]) if len(copies) == 1 else "the one that is not a pool root"
        fix = f"delete the copied {fsid_mod.MARKER_NAME} at the root of {where} (never a pool root's own)"
    else:
        fix = "give each its own UUID (ext4: tune2fs -U random DEVICE; btrfs: btrfstune -u DEVICE)"
    return FilesystemIdError(
        f"{shown(other.mountpoint)} and {shown(ident.mountpoint)} are two filesystems with one id, "
        f"{shown(ident.fsid)}: their files cannot be told apart",
        hint=f"{fix}, then scan again",
    )


class Catalog:
    def __init__(
        self, conn: sqlite3.Connection, marker_roots: Iterable[str | os.PathLike] = (), readonly: bool = False
    ):
        self.conn = conn
        # Opened for reading only (``open(readonly=True)``): what would only add to the catalog by
        # the way (the sync ``plan_run`` makes to record a torrent missing) is skipped, not failed.
        self.readonly = readonly
        # The configured pool roots: the only directories fsid may write a .qbhook-fsid marker in,
        # and the roots ensure_hashes walks verified folders from (a path under none is read by
        # its string: a catalog opened without them, as in tests, reads as before).
        self.marker_roots = tuple(os.fspath(r) for r in marker_roots)
        # st_dev -> filesystem row: valid only until the next mount/unmount (a remount can hand
        # one filesystem's old st_dev to another), so it is dropped whenever the mount table moves.
        self._dev_cache: dict[int, int] = {}
        self._mounts = _MountWatch()
        self._fsid_cache: dict[int, str] = {}
        # What the last rescan read of a pool (scanner._find_walk), valid while writes_stamp()
        # still returns the stamp stored with it: a long-lived Catalog (the sweeper's) then
        # pays only for the walk on the next unchanged rescan.
        self.scan_memo: dict[tuple[str, bytes | None], tuple] = {}

    @classmethod
    def open(
        cls,
        path: str | Path,
        readonly: bool = False,
        marker_roots: Iterable[str | os.PathLike] = (),
        create: bool = True,
    ) -> Catalog:
        """The catalog at ``path`` (``db.connect``: ``create=False`` makes none, CatalogMissing)."""
        return cls(connect(path, readonly=readonly, create=create), marker_roots=marker_roots, readonly=readonly)

    def close(self) -> None:
        self._mounts.close()
        self.conn.close()

    def reader(self, max_open: int = LOOK_MAX_OPEN) -> FolderReader:
        """A reader of facts below the catalog's pool roots (``marker_roots``), each folder reached
        by the verified walk (``dirfd.FolderReader``): the one way the catalog looks at a path it
        was given no stat for. Without roots (a catalog opened so in tests) every path is under
        none, and read by its string as before. ``max_open``: few folders by default (a few looks);
        a caller that locates many files in path order asks for more."""
        return FolderReader(self.marker_roots, max_open=max_open)

    def _pool_lstat(self, reader: FolderReader, bpath: bytes) -> os.stat_result:
        """lstat of a path a caller gave no stat for, through ``reader`` (``Catalog.reader``).

        FileNotFoundError if nothing is there; PathOutsideRoots if it is not provably a pool's
        file: a folder on the way is a symlink (what is behind it may be outside the pool), or
        the path is under none of the pool roots the catalog knows. Such a path is never
        recorded as a pool's file."""
        path = os.fsdecode(bpath)
        outside: set[str] = set()
        try:
            st = reader.lstat_any(path, outside)
        except (FolderRefused, PathMapError) as e:
            raise PathOutsideRoots(f"{path} is not recorded: {e}") from None
        if outside and reader.roots:
            raise PathOutsideRoots(
                f"{path} is not recorded: it is under none of the pool roots {', '.join(reader.roots)}"
            )
        if st is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return st

    # ------------------------------------------------------------ filesystems
    def still_is(self, path: str | bytes | os.PathLike, st: os.stat_result, row: InodeRow) -> bool:
        """The one home of "this path still is that catalog inode": ``st`` (an lstat of ``path``
        taken just now) has the row's inode number on the row's filesystem. Path strings are
        not identity; a rename or a swapped file fails this."""
        return st.st_ino == row.ino and self.fs_for_path(path, st.st_dev) == row.fs

    def fs_for_path(
        self,
        path: str | bytes | os.PathLike,
        dev: int | None = None,
        *,
        on_write: Callable[[int | None, int | None], None] | None = None,
    ) -> int:
        """Row id of the filesystem holding ``path`` (registering it, re-mapping st_dev if it moved).

        FilesystemIdError if the device the row had is still mounted with the same id: two
        filesystems that share a UUID (or a copied marker) are not one, and not re-mapped.

        ``dev``: the st_dev of the caller's lstat of ``path``; the filesystem is identified by
        that number alone (fsid.mount_for_dev), ``path`` is only lstat-ed when it is not given.
        A path is never resolved here: callers hand in paths writers control, and a folder
        swapped for a symlink would otherwise re-map this st_dev to whatever it points at.

        ``on_write``: called inside the registering transaction, if there is one, with the write
        generation before and after its writes (``generation``): no other writer can come between
        the two, so a caller that keeps a baseline of it (``scan._Loaded``) may tell this write
        from another's.
        """
        if dev is None:
            dev = os.lstat(path).st_dev
        if self._mounts.changed():
            self._dev_cache.clear()
        cached = self._dev_cache.get(dev)
        if cached is not None:
            return cached
        ident = fsid_mod.identify(dev=dev, marker_roots=self.marker_roots, recorded=self._recorded_mountpoint)
        mountpoint = os.fsencode(ident.mountpoint)
        # A row that already says all of this is not written again: every new process asks this
        # once per filesystem, and a write here would take the catalog's write lock (an explain
        # waiting behind a sweep's transaction) and fsync for nothing. last_seen is then the
        # last time the row changed, which nothing reads as more than information.
        row = self.conn.execute(
            "SELECT id, fstype, source, mountpoint, dev FROM filesystems WHERE fsid = ?", (ident.fsid,)
        ).fetchone()
        if row is not None and row[4] is not None and row[4] != dev:
            # Moving the id to this device would make one (fs, inode) key of two files.
            other = fsid_mod.shared_id(
                row[4], ident, marker_roots=self.marker_roots, recorded=self._recorded_mountpoint
            )
            if other is not None:
                raise _shared_id_error(ident, other, self.marker_roots)
        if row is not None and tuple(row[1:]) == (ident.fstype, ident.source, mountpoint, dev):
            taken = self.conn.execute(
                "SELECT 1 FROM filesystems WHERE dev = ? AND fsid != ? LIMIT 1", (dev, ident.fsid)
            ).fetchone()
            if taken is None:
                self._dev_cache[dev] = row[0]
                self._fsid_cache[row[0]] = ident.fsid
                return row[0]
        now = time.time()
        with Tx(self.conn) as c:
            before = self.generation() if on_write is not None else None
            # st_dev numbers get reused: whoever had this dev before no longer does.
            c.execute("UPDATE filesystems SET dev = NULL WHERE dev = ? AND fsid != ?", (dev, ident.fsid))
            c.execute(
                "INSERT INTO filesystems(fsid, kind, fstype, source, mountpoint, dev, first_seen, last_seen) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(fsid) DO UPDATE SET dev=excluded.dev, "
                "mountpoint=excluded.mountpoint, source=excluded.source, fstype=excluded.fstype, "
                "last_seen=excluded.last_seen",
                (ident.fsid, ident.kind, ident.fstype, ident.source, mountpoint, dev, now, now),
            )
            fs = c.execute("SELECT id FROM filesystems WHERE fsid = ?", (ident.fsid,)).fetchone()[0]
            if on_write is not None:
                on_write(before, self.generation())
        self._dev_cache[dev] = fs
        self._fsid_cache[fs] = ident.fsid
        return fs

    def _recorded_mountpoint(self, fsid: str) -> str | None:
        """Where the catalog last saw filesystem ``fsid`` mounted (None: never seen). fsid asks it
        of a marker another user owns: one the catalog already keys files by, at this mount,
        is the pool's own (NFS root_squash shows root's as nobody's), not a copy planted on
        another filesystem; distrusting it would re-key every file of the pool."""
        row = self.conn.execute("SELECT mountpoint FROM filesystems WHERE fsid = ?", (fsid,)).fetchone()
        return os.fsdecode(row[0]) if row is not None and row[0] else None

    def frozen(self, rows: dict, root_devs: dict[bytes, int]) -> FrozenCatalog:
        """A ``FrozenCatalog`` of ``rows`` ((fs, ino) -> row) and of the filesystems this connection knows,
        those of ``root_devs`` (root -> its st_dev, as the batch's prefetch met them) looked up now.

        Looked up now, not only taken from the cache: a mount table that moved since the prefetch (a
        container started or stopped) empties the cache, and a child handed no filesystem refuses every
        relink of its part as "on another filesystem" (seen in bench_converge while a test suite
        mounted tmpfs beside it: a third of the groups failed)."""
        if self._mounts.changed():
            self._dev_cache.clear()  # as fs_for_path would: a device number may name another filesystem now
        # Each identified by its number alone, as the prefetch did (fs_for_path never follows the root's path).
        looked = {dev: self.fs_for_path(root, dev) for root, dev in root_devs.items()}
        devs = {**self._dev_cache, **looked}
        return FrozenCatalog(devs, {fs: self.fsid(fs) for fs in set(devs.values())}, dict(rows))

    def fsid(self, fs: int) -> str:
        if fs not in self._fsid_cache:
            self._fsid_cache[fs] = self.conn.execute("SELECT fsid FROM filesystems WHERE id=?", (fs,)).fetchone()[0]
        return self._fsid_cache[fs]

    def filesystems(self) -> list[Filesystem]:
        return [
            Filesystem(r[0], r[1], r[2], os.fsdecode(r[3]) if r[3] else "", r[4])
            for r in self.conn.execute("SELECT id, fsid, kind, mountpoint, dev FROM filesystems ORDER BY id")
        ]

    # ------------------------------------------------------------ scanning support
    def load_pool_paths(self, pool: str) -> dict[bytes, tuple]:
        """path -> (path_id, inode_id, fs, ino, size, mtime_ns, ctime_ns, nlink) for one pool."""
        cur = self.conn.execute(
            "SELECT p.path, p.id, i.id, i.fs, i.ino, i.size, i.mtime_ns, i.ctime_ns, i.nlink "
            "FROM paths p JOIN inodes i ON i.id = p.inode WHERE p.pool = ?",
            (pool,),
        )
        return {r[0]: r[1:] for r in cur}

    def load_pool_signatures(self, pool: str) -> dict[bytes, int]:
        """path -> stat_signature((fs, ino, size, mtime_ns, ctime_ns, nlink, mode, uid, gid)) for one pool.

        What a rescan compares against: one int per path instead of a tuple of eight
        (about half the memory and load time of load_pool_paths on large pools).
        """
        cur = self.conn.execute(
            "SELECT p.path, i.fs, i.ino, i.size, i.mtime_ns, i.ctime_ns, i.nlink, i.mode, i.uid, i.gid "
            "FROM paths p JOIN inodes i ON i.id = p.inode WHERE p.pool = ?",
            (pool,),
        )
        out: dict[bytes, int] = {}
        while rows := cur.fetchmany(10000):
            out.update({r[0]: hash(r[1:]) for r in rows})  # == stat_signature(r[1:])
        return out

    # The line `find -printf findwalk.FIND_LINE_FORMAT` prints for a file, rebuilt from a catalog row: the
    # scanner's fast path (scanner._find_walk) compares these instead of stat results. Times are
    # printed by GNU find as seconds, '.', nine digits of nanoseconds and a trailing '0'.
    # Seconds are floored (tv_sec, as find prints them, also before 1970); SQLite's / and %
    # truncate toward zero, hence the adjusted nanoseconds for negative times. The permission
    # bits in octal, as find's %m, then uid and gid; a row whose owner is not known (NULL:
    # ``schema.OWNER_DDL``) prints "- - -", which find never does, so its next rescan writes it.
    _FIND_LINE_SQL = (
        "CAST(printf('%d %d %d %d.%09d0 %d.%09d0 %d %s ', {dev}, i.ino, i.size, "
        "(i.mtime_ns - (i.mtime_ns % 1000000000 + 1000000000) % 1000000000) / 1000000000, "
        "(i.mtime_ns % 1000000000 + 1000000000) % 1000000000, "
        "(i.ctime_ns - (i.ctime_ns % 1000000000 + 1000000000) % 1000000000) / 1000000000, "
        "(i.ctime_ns % 1000000000 + 1000000000) % 1000000000, i.nlink, "
        "CASE WHEN i.mode IS NULL OR i.uid IS NULL OR i.gid IS NULL THEN '- - -' "
        "ELSE printf('%o %d %d', i.mode & 4095, i.uid, i.gid) END) || p.path AS BLOB)"
    )

    @staticmethod
    def find_line(st: InodeStat, path: bytes) -> bytes:
        """The line find prints for ``st`` (or its plain tuple) at ``path`` (findwalk.FIND_LINE_FORMAT,
        no NUL); Python twin of the SQL."""
        dev, ino, size, mtime_ns, ctime_ns, nlink, mode, uid, gid = st
        owner = b"- - -" if mode is None or uid is None or gid is None else b"%o %d %d" % (mode & 0o7777, uid, gid)
        return (
            b"%d %d %d %d.%09d0 %d.%09d0 %d %s "
            % (
                dev,
                ino,
                size,
                mtime_ns // 1_000_000_000,
                mtime_ns % 1_000_000_000,
                ctime_ns // 1_000_000_000,
                ctime_ns % 1_000_000_000,
                nlink,
                owner,
            )
            + path
        )

    def iter_find_lines(self, pool: str, dev_of_fs: dict[int, int], under: bytes | None = None):
        """find_line() of every path of ``pool`` (only ``under`` and below if given), built inside SQLite.

        ``dev_of_fs`` says which st_dev each filesystem row stands for; rows of any other
        filesystem get device -1, which no file has, so they can never match a line find printed.
        Yields lists of lines (fetchmany batches): one bytes object per path, no row tuples kept.
        """
        case = " ".join(f"WHEN {int(fs)} THEN {int(dev)}" for fs, dev in dev_of_fs.items())
        dev = f"CASE i.fs {case} ELSE -1 END" if case else "-1"
        sql = (
            f"SELECT {self._FIND_LINE_SQL.format(dev=dev)} FROM paths p JOIN inodes i ON i.id = p.inode "
            "WHERE p.pool = ?"
        )
        args: tuple = (pool,)
        if under is not None:
            prefix = under.rstrip(b"/") + b"/"
            sql += " AND (p.path = ? OR substr(p.path, 1, ?) = ?)"
            args += (under, len(prefix), prefix)
        cur = self.conn.execute(sql, args)
        while rows := cur.fetchmany(20000):
            yield [r[0] for r in rows]

    def fs_devs(self) -> dict[int, int]:
        """Filesystem row -> the st_dev it had when last seen, for st_dev numbers held by one row only."""
        rows = self.conn.execute("SELECT id, dev FROM filesystems WHERE dev IS NOT NULL").fetchall()
        count: dict[int, int] = {}
        for _fs, dev in rows:
            count[dev] = count.get(dev, 0) + 1
        return {fs: dev for fs, dev in rows if count[dev] == 1}

    def generation(self) -> int | None:
        """The catalog's write generation: equal at two calls only if no row of paths, inodes or
        filesystems that a rescan compares changed in between, by any connection in any process.

        Permanent triggers (schema.WRITE_GENERATION_DDL) bump it in the writing transaction, so
        a rolled-back write rolls its bump back. None where the table is missing (a read-only
        connection to a catalog not yet migrated): then nothing may be assumed unchanged.
        """
        try:
            row = self.conn.execute("SELECT n FROM catalog_writes WHERE id = 1").fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def writes_stamp(self) -> int | None:
        """What the in-process scan memo is keyed by: the write generation (see generation())."""
        return self.generation()

    def scan_memo_blob(self, key: bytes) -> bytes | None:
        """The persisted rescan memo stored under ``key`` (scan.py encodes and checks it), or None."""
        try:
            row = self.conn.execute("SELECT memo FROM scan_memos WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row and isinstance(row[0], bytes) else None

    def put_scan_memo(self, c: sqlite3.Connection, key: bytes, blob: bytes) -> None:
        """Store a rescan memo under ``key``. Caller holds the transaction whose generation it names."""
        c.execute(
            "INSERT INTO scan_memos(key, memo) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET memo=excluded.memo",
            (key, blob),
        )

    def stat_rows(self, paths: list[bytes]) -> dict[bytes, tuple]:
        """path -> (fs, ino, size, mtime_ns, ctime_ns, nlink, mode, uid, gid) as catalogued (the last
        three None where not known), 500 paths per query."""
        out: dict[bytes, tuple] = {}
        for i in range(0, len(paths), 500):
            chunk = paths[i : i + 500]
            for r in self.conn.execute(
                "SELECT p.path, i.fs, i.ino, i.size, i.mtime_ns, i.ctime_ns, i.nlink, i.mode, i.uid, i.gid "
                f"FROM paths p JOIN inodes i ON i.id = p.inode WHERE p.path IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                out[r[0]] = r[1:]
        return out

    def inode_keys_at(self, paths: list[bytes]) -> dict[bytes, tuple[str, int]]:
        """path -> (fsid, ino) of the inode catalogued at it (``stat_rows``); a path not catalogued is absent."""
        return {path: (self.fsid(row[0]), row[1]) for path, row in self.stat_rows(paths).items()}

    def inode_mtimes_and_access(
        self, inode_ids: Iterable[int]
    ) -> tuple[dict[int, int], dict[int, tuple[int, int, int]]]:
        """(inode id -> its catalogued mtime (ns), inode id -> its (st_mode, st_uid, st_gid) where
        known: ``InodeFact.access``), one query per 500 ids for both. Equal owners share one tuple."""
        ids = list(inode_ids)
        mtimes: dict[int, int] = {}
        access: dict[int, tuple[int, int, int]] = {}
        shared: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for iid, mtime, mode, uid, gid in self.conn.execute(
                f"SELECT id, mtime_ns, mode, uid, gid FROM inodes WHERE id IN ({marks})", chunk
            ):
                mtimes[iid] = mtime
                if mode is not None and uid is not None and gid is not None:
                    a = (mode, uid, gid)
                    access[iid] = shared.setdefault(a, a)
        return mtimes, access

    def pool_has_paths(self, pool: str) -> bool:
        return self.conn.execute("SELECT 1 FROM paths WHERE pool = ? LIMIT 1", (pool,)).fetchone() is not None

    def fs_has_pool_paths(self, fs: int, pools: Iterable[str]) -> bool:
        """Whether the catalog still holds a path, recorded in one of ``pools``, of a file of
        filesystem row ``fs`` (a scan keeps those of one not mounted; ``scan --forget-unmounted``
        drops them, but only a configured pool's: the scan walks no other, so the rows of a pool
        removed from the config are never dropped and must not count)."""
        names = list(pools)
        if not names:
            return False
        q = (
            "SELECT 1 FROM inodes i JOIN paths p ON p.inode = i.id "
            f"WHERE i.fs = ? AND p.pool IN ({','.join('?' * len(names))}) LIMIT 1"
        )
        return self.conn.execute(q, (fs, *names)).fetchone() is not None

    # The inode's upsert, shared by upsert() and upsert_many().
    _UPSERT_INODE = (
        "INSERT INTO inodes(fs, ino, size, mtime_ns, ctime_ns, nlink, mode, uid, gid, seen_scan) "
        "VALUES (?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT(fs, ino) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, "
        "ctime_ns=excluded.ctime_ns, nlink=excluded.nlink, mode=excluded.mode, uid=excluded.uid, "
        "gid=excluded.gid, seen_scan=excluded.seen_scan"
    )
    # The hash carry-over of a change qbhook made itself (record_path's ``carry``), as part of
    # the inode's upsert: the hash is moved to the new ctime only if it was valid for exactly the
    # stat the caller took of the pinned inode before its act (the three ``?``; NULL: no carry)
    # and size and mtime did not move since. Size and mtime alone would also carry a hash that went
    # stale before the act (bytes rewritten, ``touch -d`` back to the old mtime: only the ctime
    # tells); and only a pin (``CarryProof``) says the two stats are of one file. The old row's
    # columns, unqualified, are read before any SET applies.
    _CARRY_HASH_FROM = (
        ", hash_ctime_ns=CASE WHEN hash IS NOT NULL AND hash_size=excluded.size "
        "AND hash_mtime_ns=excluded.mtime_ns AND hash_size=? AND hash_mtime_ns=? AND hash_ctime_ns=? "
        "THEN excluded.ctime_ns ELSE hash_ctime_ns END"
    )

    def upsert(
        self,
        c: sqlite3.Connection,
        pool: str,
        path: bytes,
        fs: int,
        st: os.stat_result,
        scan_id: int | None,
        *,
        carry: CarryProof | None = None,
    ) -> int:
        """Record that ``path`` is a link to the inode described by ``st``. Caller holds a transaction.
        ``carry``: the hash carry-over of a change qbhook made itself (_CARRY_HASH_FROM), when it
        covers ``st``; without it, nothing is carried. The inode the path pointed at before, if
        another, is dropped when no other path points at it. ``scan_id`` None: a write outside a
        scan, stamped as ``_stamp`` says."""
        scan_id = self._stamp(c, scan_id)
        left = self._displaced(c, [(path, fs, st)])
        values = _inode_values(fs, st, scan_id)
        sql = self._UPSERT_INODE
        if carry is not None and carry.covers(st):
            sql += self._CARRY_HASH_FROM
            values += _carried(carry, st)
        inode_id = c.execute(sql + " RETURNING id", values).fetchone()[0]
        c.execute(
            "INSERT INTO paths(path, inode, pool, seen_scan) VALUES (?,?,?,?) "
            "ON CONFLICT(path) DO UPDATE SET inode=excluded.inode, pool=excluded.pool, seen_scan=excluded.seen_scan",
            (path, inode_id, pool, scan_id),
        )
        self.drop_orphans_among(c, left)
        return inode_id

    def upsert_many(
        self,
        c: sqlite3.Connection,
        pool: str,
        rows: list[tuple[bytes, int, os.stat_result]],
        scan_id: int | None,
        *,
        carry_from: Mapping[bytes, CarryProof] | None = None,
        displaced: set[int] | None = None,
    ) -> None:
        """upsert() for many (path, fs, stat) at once: two executemany calls instead of two
        statements per path. Caller holds a transaction. Same end state as upserting one by one.
        ``carry_from``: path -> upsert()'s ``carry``, in the same statement (a path without one
        carries nothing). ``displaced``: the inodes these paths pointed at before are added to it,
        for the caller to drop once all its batches are in (``drop_orphans_among``: a scan's later
        batch may give such an inode a path again); None: those left without a path go here."""
        scan_id = self._stamp(c, scan_id)
        left = self._displaced(c, rows)
        values = [_inode_values(fs, st, scan_id) for _p, fs, st in rows]
        if carry_from is None:
            c.executemany(self._UPSERT_INODE, values)
        else:
            c.executemany(
                self._UPSERT_INODE + self._CARRY_HASH_FROM,
                [v + _carried(carry_from.get(p), st) for v, (p, _fs, st) in zip(values, rows, strict=True)],
            )
        c.executemany(
            "INSERT INTO paths(path, inode, pool, seen_scan) VALUES (?, (SELECT id FROM inodes WHERE fs=? AND "
            "ino=?), ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET inode=excluded.inode, pool=excluded.pool, seen_scan=excluded.seen_scan",
            [(path, fs, st.st_ino, pool, scan_id) for path, fs, st in rows],
        )
        if displaced is None:
            self.drop_orphans_among(c, left)
        else:
            displaced.update(left)

    # Only ever grows (scan.KEEP_SCANS keeps the newest records): the id the next scan will get.
    _NEXT_SCAN_ID = "SELECT coalesce(max(id), 0) + 1 FROM scans"

    def _stamp(self, c: sqlite3.Connection, scan_id: int | None) -> int:
        """The ``seen_scan`` of a write: its scan's id, or for a write outside a scan (``record_path``:
        `qbhook find`, the executor's relinks, an event's new files) the id the next scan will get.
        The sweep re-plans the files of inodes stamped above the mark of its last plan
        (events/worker.py ``_changed_files``), and such a write may land after that plan read the
        catalog: stamped above every scan so far, the next sweep looks at it once (its own scans
        then lift the mark past it). NULL, as it was, erased the mark a scan had just set (`find`
        on a file a scan recorded changed) and hid a change only this write recorded (a scan that
        then finds the row equal writes nothing), until the next full re-plan. Keeping the old
        mark instead would still hide the second."""
        return scan_id if scan_id is not None else c.execute(self._NEXT_SCAN_ID).fetchone()[0]

    def _displaced(self, c: sqlite3.Connection, rows: list[tuple[bytes, int, os.stat_result]]) -> set[int]:
        """Ids of the inodes other than the one its stat names that one of ``rows``' (path, fs, stat)
        points at now: those the write is about to take a path from (a file renamed over, replaced).
        Before their last path goes they are the catalog's only record of their hash. One indexed
        query per 500 paths, ~1 us a path (5-8% of the upsert's own cost at 180,000 paths)."""
        new = {path: (fs, st.st_ino) for path, fs, st in rows}
        keys = list(new)
        out: set[int] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            out.update(
                iid
                for path, iid, fs, ino in c.execute(
                    "SELECT p.path, p.inode, i.fs, i.ino FROM paths p JOIN inodes i ON i.id = p.inode "
                    f"WHERE p.path IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                if new[path] != (fs, ino)
            )
        return out

    def drop_orphans_among(self, c: sqlite3.Connection, inode_ids: Iterable[int]) -> int:
        """``drop_orphan_inodes`` for these inodes only (an index lookup each, not a pass over
        every inode: 45 ms at 180,000): those no path points at are dropped."""
        ids = list(inode_ids)
        n = 0
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            n += c.execute(
                f"DELETE FROM inodes WHERE id IN ({','.join('?' * len(chunk))}) "
                "AND NOT EXISTS (SELECT 1 FROM paths WHERE paths.inode = inodes.id)",
                chunk,
            ).rowcount
        return n

    # Inodes a scan's committed batches took a path from (``upsert_many(displaced=...)``), kept
    # in ``state`` under this prefix and the scan's id until its last transaction drops them:
    # a scan killed between batches left them with their hashes and no path, for good.
    _DISPLACED_KEY = "scan.displaced."

    def keep_displaced(self, c: sqlite3.Connection, scan_id: int, inode_ids: set[int]) -> None:
        """Record, in the transaction of the batch that displaced them, the inodes scan ``scan_id``
        has taken a path from so far: if the scan dies before its last transaction, the next
        scan's ``drop_displaced`` drops those still without a path."""
        if inode_ids:
            c.execute(
                "INSERT INTO state(key, value, updated_at) VALUES (?,?,?) ON CONFLICT(key) DO UPDATE "
                "SET value=excluded.value, updated_at=excluded.updated_at",
                (f"{self._DISPLACED_KEY}{scan_id}", json.dumps(sorted(inode_ids)), time.time()),
            )

    def drop_displaced(self, c: sqlite3.Connection, inode_ids: Iterable[int]) -> int:
        """``drop_orphans_among`` of ``inode_ids`` and of every scan's recorded ones (``keep_displaced``),
        whose records go. Called in a scan's last transaction: its own record, and those of scans
        that died between batches. A scan still running elsewhere may lose an inode it would give
        a path again in a later batch: its hash is read again then (cost, never a wrong row); its
        next batch that takes a path records its whole set again. Any writer adds an inode with
        its path in one transaction, so no inode is ever pathless here but a displaced one."""
        ids = set(inode_ids)
        rows = c.execute(
            "SELECT key, value FROM state WHERE key >= ? AND key < ?",  # the prefix, as a range on the key
            (self._DISPLACED_KEY, self._DISPLACED_KEY[:-1] + "/"),  # "/" follows "."
        ).fetchall()
        for _key, value in rows:
            try:
                ids.update(i for i in json.loads(value) if type(i) is int)
            except (ValueError, TypeError):
                pass  # not what keep_displaced wrote: nothing to drop by it; the record goes
        if rows:
            c.executemany("DELETE FROM state WHERE key = ?", [(k,) for k, _v in rows])
        return self.drop_orphans_among(c, ids)

    def remove_paths_named(self, c: sqlite3.Connection, paths: list[bytes]) -> None:
        c.executemany("DELETE FROM paths WHERE path = ?", ((p,) for p in paths))

    def drop_orphan_inodes(self, c: sqlite3.Connection) -> int:
        return c.execute(
            "DELETE FROM inodes WHERE NOT EXISTS (SELECT 1 FROM paths WHERE paths.inode = inodes.id)"
        ).rowcount

    def record_path(
        self,
        path: str | bytes,
        pool: str,
        *,
        st: os.stat_result | None = None,
        carry: CarryProof | None = None,
    ) -> int:
        """Record one path (after qbhook linked/renamed it): ``st`` if given, else its lstat taken
        through its verified folder below the pool roots (``_pool_lstat``: PathOutsideRoots for a
        path behind a symlinked folder or under no pool root, FileNotFoundError if gone).

        ``st``: the lstat the caller's act took through the folder it acted in, proven to be the
        inode it acted on (``fsops.Act.after``); a path looked up again by name may by then be
        another file a writer of that folder renamed in. ``carry``: qbhook itself caused the
        metadata change (link, rename, unlink of another link) and pinned the inode across it
        (``CarryProof.across``): the hash is carried over to the new ctime instead of forcing a rehash if
        it was valid for the proof's ``before`` and size and mtime did not move. Only onto the
        ``st`` given, the one the proof covers; without a proof nothing is carried: the hash is
        read again when next needed (cost, never a stale hash made valid).
        """
        bpath = os.fsencode(path)
        if st is None:
            carry = None  # a stat looked up now is not the one the caller's pin covered
            with self.reader() as reader:
                st = self._pool_lstat(reader, bpath)
        if not stat.S_ISREG(st.st_mode):
            # The catalog holds regular files only: a FIFO recorded here once made every
            # later hash of "size 0 candidates" open it and hang.
            raise NotRegularFile(f"{os.fsdecode(bpath)} is not a regular file; the catalog records only regular files")
        fs = self.fs_for_path(bpath, st.st_dev)
        with Tx(self.conn) as c:
            return self.upsert(c, pool, bpath, fs, st, None, carry=carry)

    def record_paths(
        self,
        items: list[tuple[str | bytes, str]],
        *,
        stats: Mapping[str | bytes, os.stat_result] | None = None,
        carry: Mapping[str | bytes, CarryProof] | None = None,
    ) -> int:
        """``record_path`` for many (path, pool) in one transaction; returns how many were recorded.

        A path that is gone or no longer a regular file is left for the next scan (a batch
        records what it relinked; one entry swapped meanwhile must not undo the others).
        ``stats``: the caller's lstat of some of the paths, taken after its own change through
        the folder it acted in (a relink batch's): used instead of resolving each path again.
        ``carry``: record_path's, per path; used only with the path's stat from ``stats`` (a
        path looked up again by name may be another file by now, whose stale hash a carry
        would make valid again: the others are recorded as seen, their hashes as they were).
        A path without a stat is looked at through its verified folder (``_pool_lstat``); one
        not provably a pool's file is left out, like a gone one.
        """
        todo = []
        # st_dev -> filesystem row for the caller's stats, asked once per device here, not once per
        # path (a mount-table poll each: 10,000 per relink batch). Those stats were all taken before
        # this call, so any moment of it is as late after them as the next; a stat taken here goes
        # through fs_for_path itself.
        fs_of: dict[int, int] = {}
        with self.reader() as reader:
            for path, pool in items:
                bpath = os.fsencode(path)
                st = stats.get(path) if stats else None
                if st is not None:
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    fs = fs_of.get(st.st_dev)
                    if fs is None:
                        fs = fs_of[st.st_dev] = self.fs_for_path(bpath, st.st_dev)  # may register: outside the Tx
                    todo.append((bpath, pool, st, fs, carry.get(path) if carry else None))
                    continue
                try:
                    st = self._pool_lstat(reader, bpath)
                except (FileNotFoundError, PathOutsideRoots):
                    continue
                if stat.S_ISREG(st.st_mode):
                    # may register a filesystem: outside the Tx
                    todo.append((bpath, pool, st, self.fs_for_path(bpath, st.st_dev), None))
        if not todo:
            return 0
        with Tx(self.conn) as c:
            by_pool: dict[str, list] = {}
            carry_from: dict[bytes, CarryProof] = {}
            for bpath, pool, st, fs, proof in todo:
                by_pool.setdefault(pool, []).append((bpath, fs, st))
                if proof is not None:
                    carry_from[bpath] = proof
            for pool, rows in by_pool.items():
                self.upsert_many(c, pool, rows, None, carry_from=carry_from or None)
        return len(todo)

    def forget_path(self, path: str | bytes) -> None:
        with Tx(self.conn) as c:
            c.execute("DELETE FROM paths WHERE path=?", (os.fsencode(path),))
            self.drop_orphan_inodes(c)

    # ------------------------------------------------------------ hashes
    def store_hash(self, inode_id: int, digest: bytes, st: os.stat_result) -> None:
        """The hash of one inode, valid for the stat it was taken under (``store_hashes`` of one)."""
        self.store_hashes([(inode_id, digest, st)])

    def store_hashes(self, rows: list[tuple[int, bytes, os.stat_result]]) -> None:
        """store_hash() for many inodes in one transaction (one commit, not one per file).

        Written only while the row is still the file that was read (``_STILL_THAT_FILE``)."""
        if not rows:
            return
        now = time.time()
        with Tx(self.conn) as c:
            c.executemany(
                f"UPDATE inodes SET {_OWNER_IF_SAME_CTIME}, size=?, mtime_ns=?, ctime_ns=?, nlink=?, hash=?, "
                f"hash_size=?, hash_mtime_ns=?, hash_ctime_ns=?, hashed_at=? WHERE {_STILL_THAT_FILE}",
                [
                    (
                        st.st_ctime_ns,
                        st.st_ctime_ns,
                        st.st_ctime_ns,
                        st.st_size,
                        st.st_mtime_ns,
                        st.st_ctime_ns,
                        st.st_nlink,
                        digest,
                        st.st_size,
                        st.st_mtime_ns,
                        st.st_ctime_ns,
                        now,
                        inode_id,
                        st.st_ino,
                        st.st_dev,
                    )
                    for inode_id, digest, st in rows
                ],
            )

    def store_stats(self, rows: list[tuple[int, os.stat_result]]) -> None:
        """store_stat() for many inodes in one transaction."""
        if not rows:
            return
        with Tx(self.conn) as c:
            c.executemany(
                f"UPDATE inodes SET {_OWNER_IF_SAME_CTIME}, size=?, mtime_ns=?, ctime_ns=?, nlink=? "
                f"WHERE {_STILL_THAT_FILE}",
                [
                    (*(st.st_ctime_ns,) * 3, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink)
                    + (inode_id, st.st_ino, st.st_dev)
                    for inode_id, st in rows
                ],
            )

    def store_stat(self, inode_id: int, st: os.stat_result) -> None:
        self.store_stats([(inode_id, st)])

    def store_samples(self, rows: list[tuple[int, bytes, int, int]]) -> None:
        with Tx(self.conn) as c:
            c.executemany(
                "UPDATE inodes SET sample=?, sample_mtime_ns=?, sample_ctime_ns=? WHERE id=?",
                [(s, m, ct, i) for i, s, m, ct in rows],
            )

    # ------------------------------------------------------------ lookups
    def inode(self, inode_id: int) -> InodeRow | None:
        r = self.conn.execute(
            f"SELECT i.id, i.fs, f.fsid, i.ino, i.size, i.mtime_ns, i.ctime_ns, i.nlink, CASE WHEN "
            f"{HASH_VALID} THEN hash END "
            "FROM inodes i JOIN filesystems f ON f.id = i.fs WHERE i.id=?",
            (inode_id,),
        ).fetchone()
        return InodeRow(*r) if r else None

    def inodes_and_paths(self, inode_ids: list[int]) -> dict[int, tuple[InodeRow, list[bytes]]]:
        """inode() and the paths of paths_of() for many inodes, in one query per 500 ids."""
        out: dict[int, tuple[InodeRow, list[bytes]]] = {}
        for i in range(0, len(inode_ids), 500):
            chunk = inode_ids[i : i + 500]
            cur = self.conn.execute(
                f"SELECT i.id, i.fs, f.fsid, i.ino, i.size, i.mtime_ns, i.ctime_ns, i.nlink, "
                f"CASE WHEN {HASH_VALID} THEN hash END, p.path "
                "FROM inodes i JOIN filesystems f ON f.id = i.fs LEFT JOIN paths p ON p.inode = i.id "
                f"WHERE i.id IN ({','.join('?' * len(chunk))}) ORDER BY i.id, p.path",
                chunk,
            )
            for r in cur:
                ent = out.get(r[0])
                if ent is None:
                    ent = out[r[0]] = (InodeRow(*r[:9]), [])
                if r[9] is not None:
                    ent[1].append(r[9])
        return out

    def inodes_and_paths_by_key(
        self, keys: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[InodeRow, list[bytes]]]:
        """inode_by_key() and the paths of paths_of() for many (fs, ino) keys, one query per fs and
        500 inode numbers; keys the catalog does not know are absent from the answer."""
        by_fs: dict[int, list[int]] = {}
        for fs, ino in keys:
            by_fs.setdefault(fs, []).append(ino)
        out: dict[tuple[int, int], tuple[InodeRow, list[bytes]]] = {}
        for fs, inos in by_fs.items():
            for i in range(0, len(inos), 500):
                chunk = inos[i : i + 500]
                cur = self.conn.execute(
                    f"SELECT i.id, i.fs, f.fsid, i.ino, i.size, i.mtime_ns, i.ctime_ns, i.nlink, "
                    f"CASE WHEN {HASH_VALID} THEN hash END, p.path "
                    "FROM inodes i JOIN filesystems f ON f.id = i.fs LEFT JOIN paths p ON p.inode = i.id "
                    f"WHERE i.fs = ? AND i.ino IN ({','.join('?' * len(chunk))}) ORDER BY i.id, p.path",
                    [fs, *chunk],
                )
                for r in cur:
                    ent = out.get((r[1], r[3]))
                    if ent is None:
                        ent = out[(r[1], r[3])] = (InodeRow(*r[:9]), [])
                    if r[9] is not None:
                        ent[1].append(r[9])
        return out

    def inodes_by_key(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], InodeRow]:
        """inode_by_key() for many (fs, ino) keys, one query per fs and 500 inode numbers, without
        the paths (half the time of ``inodes_and_paths_by_key`` for a relink batch's prefetch)."""
        by_fs: dict[int, list[int]] = {}
        for fs, ino in keys:
            by_fs.setdefault(fs, []).append(ino)
        out: dict[tuple[int, int], InodeRow] = {}
        for fs, inos in by_fs.items():
            # The filesystem's fsid read once per filesystem, not joined into each of its rows (one str
            # made per row: a relink batch's prefetch reads 20,000 rows).
            named = self.conn.execute("SELECT fsid FROM filesystems WHERE id = ?", (fs,)).fetchone()
            if named is None:
                continue  # no such filesystem row: none of its inodes either (the join found none)
            fsid = named[0]
            for i in range(0, len(inos), 500):
                chunk = inos[i : i + 500]
                for iid, ino, size, mtime_ns, ctime_ns, nlink, digest in self.conn.execute(
                    f"SELECT id, ino, size, mtime_ns, ctime_ns, nlink, CASE WHEN {HASH_VALID} THEN hash END "
                    f"FROM inodes WHERE fs = ? AND ino IN ({','.join('?' * len(chunk))})",
                    [fs, *chunk],
                ):
                    out[(fs, ino)] = InodeRow(iid, fs, fsid, ino, size, mtime_ns, ctime_ns, nlink, digest)
        return out

    def inode_by_path(self, path: str | bytes) -> InodeRow | None:
        r = self.conn.execute("SELECT inode FROM paths WHERE path=?", (os.fsencode(path),)).fetchone()
        return self.inode(r[0]) if r else None

    def inode_by_key(self, fs: int, ino: int) -> InodeRow | None:
        r = self.conn.execute("SELECT id FROM inodes WHERE fs=? AND ino=?", (fs, ino)).fetchone()
        return self.inode(r[0]) if r else None

    def paths_of(self, inode_id: int) -> list[tuple[bytes, str]]:
        return [
            (r[0], r[1])
            for r in self.conn.execute("SELECT path, pool FROM paths WHERE inode=? ORDER BY path", (inode_id,))
        ]

    def links_under(self, folder: str | bytes) -> list[bytes]:
        """Every path of every inode that has a path strictly below ``folder``, in one query.

        A range of the paths index (the byte strings from ``folder/`` up to ``folder0``, "0"
        being the byte after "/"), not a scan of the table: a library folder of thousands of
        files costs one indexed read.
        """
        prefix = os.fsencode(folder).rstrip(b"/") + b"/"
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT q.path FROM paths p JOIN paths q ON q.inode = p.inode "
                "WHERE p.path >= ? AND p.path < ?",
                (prefix, prefix[:-1] + b"0"),
            )
        ]

    def inodes_with_content(self, size: int, digest: bytes) -> list[InodeRow]:
        ids = [
            r[0]
            for r in self.conn.execute(
                # With a path only: an inode row no path points at names no file to keep or delete.
                f"SELECT id FROM inodes WHERE size=? AND hash=? AND {HASH_VALID} "
                "AND EXISTS (SELECT 1 FROM paths WHERE paths.inode = inodes.id)",
                (size, digest),
            )
        ]
        return [self.inode(i) for i in ids]

    def inode_ids_with_stored_hash(self, size: int, digest: bytes) -> list[int]:
        """Ids of the inodes of ``size`` whose stored hash is ``digest``, valid or not.

        Unlike ``inodes_with_content`` this keeps a hash taken before the inode's ctime moved (a
        link added or removed, as when a torrent's own link vanished): candidates for a caller
        that confirms each by hashing the file again (``qbhook.decide.repair_facts``)."""
        return [r[0] for r in self.conn.execute("SELECT id FROM inodes WHERE size=? AND hash=?", (size, digest))]

    def inode_ids(self) -> list[int]:
        """Every inode's id (``scan --hash`` hands them all to ``ensure_hashes``)."""
        return [r[0] for r in self.conn.execute("SELECT id FROM inodes")]

    def inode_ids_with_contents(self, contents: Iterable[tuple[int, bytes]]) -> list[int]:
        """Ids of the inodes whose valid hash and size are one of ``contents`` ((size, digest)
        pairs): ``inodes_with_content`` for many, one query per 500 digests (the hash index)."""
        wanted = set(contents)
        digests = sorted({d for _s, d in wanted})
        out: list[int] = []
        for i in range(0, len(digests), 500):
            chunk = digests[i : i + 500]
            out.extend(
                iid
                for iid, size, digest in self.conn.execute(
                    f"SELECT id, size, hash FROM inodes WHERE hash IN ({','.join('?' * len(chunk))}) AND {HASH_VALID}",
                    chunk,
                )
                if (size, digest) in wanted
            )
        return sorted(out)

    def inode_ids_of_size(self, size: int) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM inodes WHERE size=?", (size,))]

    def inodes_of_sizes(self, sizes: list[int]) -> list[tuple[int, int, str, int]]:
        """(inode id, size, fsid, ino) of every inode of one of ``sizes``, one query per 500 sizes."""
        out: list[tuple[int, int, str, int]] = []
        for i in range(0, len(sizes), 500):
            chunk = sizes[i : i + 500]
            out.extend(
                self.conn.execute(
                    "SELECT i.id, i.size, f.fsid, i.ino FROM inodes i JOIN filesystems f ON f.id = i.fs "
                    f"WHERE i.size IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        return out

    def shared_sizes(self) -> set[int]:
        """Non-zero sizes held by more than one known inode (one scan of the size index)."""
        return {
            r[0] for r in self.conn.execute("SELECT size FROM inodes WHERE size > 0 GROUP BY size HAVING count(*) > 1")
        }

    def counts(self, since: CountsMark | None = None) -> dict:
        """How many filesystems, inodes, paths and valid hashes the catalog holds, and their bytes.

        ``since``: counts_marked() taken earlier on this connection; its counts are returned when
        they still hold (see there) instead of counting again (the size sum reads every inode:
        ~15 ms at 200,000)."""
        if since is not None and since.mark is not None and since.mark == self._write_mark():
            return dict(since.counts)
        c = self.conn
        return {
            "filesystems": c.execute("SELECT count(*) FROM filesystems").fetchone()[0],
            "inodes": c.execute("SELECT count(*) FROM inodes").fetchone()[0],
            "paths": c.execute("SELECT count(*) FROM paths").fetchone()[0],
            "hashed": c.execute(f"SELECT count(*) FROM inodes WHERE {HASH_VALID}").fetchone()[0],
            "bytes": c.execute("SELECT coalesce(sum(size),0) FROM inodes").fetchone()[0],
        }

    def counts_marked(self) -> CountsMark:
        """counts() now, and what tells later whether they still hold, read in one transaction.

        They hold while ``PRAGMA data_version`` is unchanged (it moves when any other connection,
        in any process, commits anything) and generation() is (it moves when this connection
        writes a paths, inodes or filesystems row). One write neither sees is this connection's
        own hash columns (store_hashes): a caller that hashes in between must not pass it."""
        self.conn.execute("BEGIN")
        try:
            mark = CountsMark(self.counts(), self._write_mark())
        except BaseException:
            # Not COMMIT in a finally: after an I/O error SQLite may have ended the transaction
            # itself, and "cannot commit - no transaction is active" would replace the real error.
            rollback(self.conn)
            raise
        self.conn.execute("COMMIT")
        return mark

    def _write_mark(self) -> tuple[int, int] | None:
        generation = self.generation()
        if generation is None:
            return None  # no generation to tell this connection's writes: count again
        return self.conn.execute("PRAGMA data_version").fetchone()[0], generation
