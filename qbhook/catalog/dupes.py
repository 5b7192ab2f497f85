"""Find content stored more than once as distinct inodes.

Only sizes that collide are looked at (a file alone in its size is never read); within a
size, a partial hash of the first block (hashing.partial_fd, as jdupes does) splits
candidates before any full read, and only partial collisions are fully hashed with BLAKE3.
A set is reported only from full hashes: two files whose first blocks match but whose tails
differ are never one set. Everything is cached per inode, so a second run reads nothing that
has not changed.

Candidates are read on the calling thread, in path order, through a window of LOOKAHEAD
files opened ahead and announced to the kernel (POSIX_FADV_WILLNEED): from a cold disk the
kernel fetches them in parallel; from the page cache nothing waits. (Reading on a pool of
Python threads was measured slower for files this small: every open, read and stat then
waits for the interpreter lock.) A file under MULTITHREAD_MIN is read with one pread of its
size plus one byte. Big files go through ensure_hashes: one sequential reader per filesystem,
mmap workers for the biggest.

The catalog writes of a run that reads (partials, hashes) and the big files' ensure_hashes run
on one helper thread with a connection of its own (_Helper), in the order they were handed
over, while the calling thread reads and hashes the small files: SQLite and BLAKE3 on big
buffers release the interpreter lock, so the two overlap on a second core. Nothing is decided
from what the helper writes before it has finished: the sets are read back after it joined.

With FORK_MIN_SMALL or more small files to hash and two cores, a forked child (qbhook.forked)
reads and hashes the second half of them, forked before the helper thread starts. The child
only reads files: it never touches the catalog, so it cannot tell which filesystem a st_dev
is. It sends back each file's st_dev with its hash and stat, and this process keeps an answer
only once that st_dev is the inode's filesystem; what the child could not answer for (read on
another filesystem, or the child failed) is read again here.

With such a child and no big file, no helper thread is started: the child holds the second
core, so the thread had none to overlap on and only took turns with the calling thread for
the interpreter lock, writing through a second connection whose cache had not read the rows.
The same writes are made in the same order on the calling thread's connection (_Inline),
between its batches of small files (bench_converge --pass at 10,000 pairs: the same wall
clock, 0.05-0.1 CPU-s less).

A file is read through a path only if the descriptor opened there is the catalogued inode
(same inode number, same filesystem), checked on that descriptor, so a path swapped meanwhile
is never mistaken for it.

The report (duplicates_report: the sets, their total and how many span pools, as JSON text) is
kept in the catalog (table dupes_memos) when computing it read no file: it is then a function
of the catalog's rows alone, and of --min-size. It is reused while two counters are the ones
stored with it: the write generation (paths, inodes' stat columns, filesystems: moved by any
rescan that changed anything) and content_writes (inodes' hash and partial columns, fsids).
Triggers move both in the writing transaction, for every connection in every process, so any
write that could change the report voids it. A computation that read a file (a missing hash
or partial, a file still settling or unreadable) depends on the disk and the clock: it is
never kept. The memo lives in the database it describes, so a restored older catalog brings
its own.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import resource
import sqlite3
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from blake3 import blake3

from qbhook import __version__
from qbhook.catalog.db import Tx
from qbhook.catalog.hashing import (
    MULTITHREAD_MIN,
    PARTIAL_LEN,
    PARTIAL_SIZE,
    HashResult,
    ensure_hashes,
    hash_fd,
    open_regular,
    partial_fd,
)
from qbhook.catalog.store import HASH_VALID, Catalog
from qbhook.errors import ChildFailed, OutOfDescriptors
from qbhook.forked import Forked, may_fork
from qbhook.progress import Progress

FULL_AT_ONCE = 32 * 1024  # files up to this size are hashed whole at once: one read either way
# Files opened (and announced to the kernel) ahead of the one being read: a cold first run on
# bench_dupes' tree was faster at 256 than at 64 in 5 of 6 paired rounds (§3 of
# docs/benchmarks.md); capped at a quarter of the descriptor limit (_window).
LOOKAHEAD = 256
BIG_JOB = 4 << 30  # bytes of big files per piece of work handed to the helper
STORE_EVERY = 2000  # small-file hashes are handed to the helper (committed) in batches of this many
# Small files to hash from which half go to a forked child (``_share``): a fork of a process this
# size and the answers pickled back cost ~20-40 ms, what ~1,000 small files take to read and hash.
FORK_MIN_SMALL = 4000
# Keys the kept report besides the counters: a change to what find_duplicates or the report
# contain must change this (the package version is part of it for released changes).
MEMO_FORMAT = f"{__version__}/2"  # 2: no copy without a path (a kept /1 report may show one)
R = TypeVar("R")
log = logging.getLogger(__name__)
# (inode id, fs row, inode number, catalogued paths): what a reader needs to find the inode
_Job = tuple[int, int, int, list[bytes]]


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
    """Every content held by two or more inodes of ``min_size`` or more, most bytes to free first."""
    return _find_duplicates(catalog, settle_seconds, min_size, progress)[0]


def report(sets: list[DupeSet]) -> dict:
    """What `qbhook dupes` prints (as JSON, or for people)."""
    return {
        "sets": [s.as_dict() for s in sets],
        "reclaimable_bytes": sum(s.reclaimable for s in sets),
        "across_pools": sum(1 for s in sets if s.scope == "across-pools"),
    }


def report_text(data: dict) -> str:
    """The report's JSON text: compact and key-sorted, as the CLI's --json prints everything."""
    return json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))


def duplicates_report(
    catalog: Catalog, *, settle_seconds: float = 60.0, min_size: int = 1, progress: Progress | None = None
) -> str:
    """report_text(report(find_duplicates(...))), reused from the catalog while no write could
    have changed it (see the module docstring), and kept when computing it read no file."""
    stamp = _stamp(catalog.conn)
    if stamp is not None and (kept := _kept_report(catalog.conn, min_size, stamp)) is not None:
        return kept
    sets, read_nothing = _find_duplicates(catalog, settle_seconds, min_size, progress)
    text = report_text(report(sets))
    if read_nothing and stamp is not None:
        _keep_report(catalog.conn, min_size, stamp, text)
    return text


def _stamp(conn) -> tuple[int, int] | None:
    """(write generation, content_writes) in one statement (one snapshot); None where either
    table is missing (a read-only connection to a catalog not yet migrated)."""
    try:
        row = conn.execute(
            "SELECT (SELECT n FROM catalog_writes WHERE id = 1), (SELECT n FROM content_writes WHERE id = 1)"
        ).fetchone()
    except sqlite3.Error:
        return None
    return (row[0], row[1]) if row and None not in row else None


def _kept_report(conn, min_size: int, stamp: tuple[int, int]) -> str | None:
    try:
        row = conn.execute(
            "SELECT report FROM dupes_memos WHERE min_size = ? AND writes = ? AND content = ? AND format = ?",
            (min_size, *stamp, MEMO_FORMAT),
        ).fetchone()
        blob = row[0] if row else None
        if not isinstance(blob, bytes) or blake3(memoryview(blob)[32:]).digest() != blob[:32]:
            return None  # none, or damaged: recomputed, never trusted
        return blob[32:].decode()
    except (sqlite3.Error, UnicodeDecodeError):
        return None


def _keep_report(conn, min_size: int, stamp: tuple[int, int], text: str) -> None:
    """Store ``text`` as the report at ``stamp``, only if the counters still read ``stamp`` in the
    writing transaction: they only ever grow, so equal means no write landed since they were
    read before computing, and every row read in between was the state they name. Reports
    kept at other counters can never match again and are dropped. The memo is an optimisation
    only: a busy or read-only catalog just keeps none, at once (a report that wrote nothing
    before must not now wait for another writer's lock)."""
    raw = text.encode()
    blob = blake3(raw).digest() + raw  # checked on every reuse (1 ms for 4 MB; zlib took 30-50)
    try:
        wait_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        conn.execute("PRAGMA busy_timeout = 0")
    except sqlite3.Error:
        return
    try:
        with Tx(conn) as c:
            if _stamp(c) != stamp:
                return
            c.execute("DELETE FROM dupes_memos WHERE writes != ? OR content != ? OR min_size = ?", (*stamp, min_size))
            c.execute(
                "INSERT INTO dupes_memos(min_size, writes, content, format, report) VALUES (?, ?, ?, ?, ?)",
                (min_size, *stamp, MEMO_FORMAT, blob),
            )
    except sqlite3.Error:
        return
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")


def _find_duplicates(
    catalog: Catalog, settle_seconds: float, min_size: int, progress: Progress | None
) -> tuple[list[DupeSet], bool]:
    """find_duplicates' sets, and whether no file had to be read for them (then they follow from
    the catalog's rows alone)."""
    # Long on purpose: candidates, partials, full hashes and the sets, in order, over one read of the inodes.
    conn = catalog.conn
    rows = _candidates(conn, min_size)
    by_size: dict[int, list] = defaultdict(list)
    for r in rows:
        by_size[r[1]].append(r)

    need_full: list[int] = []
    to_split: list[list] = []
    for size, members in by_size.items():
        if all(m[2] is not None for m in members):
            continue
        if size <= FULL_AT_ONCE:
            need_full.extend(m[0] for m in members if m[2] is None)
        else:
            to_split.append(members)
    missing = [m[0] for members in to_split for m in members if m[3] is None]
    where = _locations(conn, rows) if missing or need_full else None
    fresh: dict[int, bytes] = {}
    partials_new: list[tuple[int, bytes, int, int]] = []
    on_fs = _on_fs(catalog)
    for iid, _path, (partial, st) in _read_each(_jobs(where or {}, missing), _partial, on_fs):
        fresh[iid] = partial
        partials_new.append((iid, partial, st.st_mtime_ns, st.st_ctime_ns))
    _add_partial_collisions(to_split, fresh, need_full)
    if need_full and where is None:
        # Every partial was cached but some collide without full hashes (an earlier run found the
        # files still settling, or stopped before hashing): their locations are needed now.
        where = _locations(conn, rows)
    size_of = {r[0]: r[1] for r in rows}
    big = [i for i in need_full if size_of[i] >= MULTITHREAD_MIN]
    now = time.time()
    # Forked before the helper thread starts: a fork is only safe from a single-threaded process.
    mine, other = _share(
        _jobs(where or {}, [i for i in need_full if size_of[i] < MULTITHREAD_MIN]), settle_seconds, now
    )
    helper = None
    try:
        # A child hashing on the second core and no big file: no writer thread (module docstring).
        threaded = (partials_new or need_full) and (other is None or big)
        helper = _Helper.start(catalog) if threaded else None
        writes = helper or _Inline(catalog)
        if partials_new:
            writes.put(("samples", partials_new))
        _hand_over_big(writes, big, size_of, settle_seconds, progress)
        # The big files' progress (bytes, ETA) is the one worth showing; two writers would garble it.
        small_progress = None if big else progress
        if mine:
            _hash_small(writes, mine, on_fs, settle_seconds, now, small_progress, elsewhere=other)
        if other is not None:
            # A fresh lookup of st_devs: the catalog re-maps them if the mounts moved since the child read.
            _take_theirs(writes, other, _on_fs(catalog), settle_seconds, now, small_progress)
            other = None
    except BaseException:
        if other is not None:
            other[0].stop()
        if helper is not None:
            helper.finish(abandon=True)  # Ctrl-C or an error here: what is still queued is not started
        raise
    if helper is not None:
        helper.finish()  # joined before anything reads back what it wrote; re-raises its error
    if need_full:
        rows = _candidates(conn, min_size)  # the hashes just stored (a warm run stored none)

    sets = [DupeSet(size, digest.hex(), copies) for size, digest, copies in _hash_groups(conn, rows)]
    sets.sort(key=lambda s: (-s.reclaimable, s.hash))
    return sets, not (missing or need_full)


def _add_partial_collisions(to_split: list[list], fresh: dict[int, bytes], need_full: list[int]) -> None:
    """Extend ``need_full`` with the inodes without a full hash whose partial another inode of
    their size shares (``fresh``: partials read in this run; the rows carry the cached ones)."""
    for members in to_split:
        keyed: dict[bytes, list] = defaultdict(list)
        for m in members:
            partial = m[3] if m[3] is not None else fresh.get(m[0])
            if partial is not None:
                keyed[partial].append(m)
        for group in keyed.values():
            if len(group) > 1:
                need_full.extend(m[0] for m in group if m[2] is None)


def _hand_over_big(
    writes: _Helper | _Inline, big: list[int], size_of: dict[int, int], settle_seconds: float, progress
) -> None:
    """The big files' full hashes, handed to ``writes`` (ensure_hashes on the helper) BIG_JOB bytes
    at a time: a run given up stops after the piece in hand."""
    start = taken = 0
    for k, iid in enumerate(big):
        taken += size_of[iid]
        if taken >= BIG_JOB or k == len(big) - 1:
            writes.put(("big", (big[start : k + 1], settle_seconds, progress)))
            start, taken = k + 1, 0


def _candidates(conn, min_size: int) -> list[tuple[int, int, bytes | None, bytes | None, int, int, int]]:
    """(id, size, valid hash, valid partial, fs, ino, nlink) of every inode of ``min_size`` or more
    whose size another inode shares: one pass over the inodes table.

    A hash is valid under hash_valid()'s rule; a partial while the inode's mtime and ctime are
    those it was taken under, and only if it is one (PARTIAL_LEN bytes, not an older
    version's head+tail sample). ``+size``: a plain table scan, not the size index (which
    would fetch every row through the index when most inodes qualify).
    """
    rows = conn.execute(
        f"SELECT id, size, CASE WHEN {HASH_VALID} THEN hash END, "
        "CASE WHEN sample_mtime_ns = mtime_ns AND sample_ctime_ns = ctime_ns AND length(sample) = ? "
        "THEN sample END, fs, ino, nlink FROM inodes WHERE +size >= ?",
        (PARTIAL_LEN, min_size),
    ).fetchall()
    count: dict[int, int] = defaultdict(int)
    for r in rows:
        count[r[1]] += 1
    return [r for r in rows if count[r[1]] > 1]


def _locations(conn, rows: list) -> dict[int, tuple[int, int, list[bytes]]]:
    """inode id -> (fs, ino, paths in path order) of every candidate (``rows``, as _candidates
    returns them): their paths in one pass (_paths_of), the inodes' fields from the rows in hand.
    (A join of inodes and paths ordered by path, as before, took 0.17-0.21 CPU-s for the 30,000
    candidate paths of bench_dupes' tree; this 0.12-0.15: docs/benchmarks.md §3.)"""
    paths = _paths_of(conn, {r[0] for r in rows})
    out: dict[int, tuple[int, int, list[bytes]]] = {}
    for r in rows:
        mine = paths.get(r[0])
        if mine:
            out[r[0]] = (r[4], r[5], sorted(p for p, _pool in mine))
    return out


def _jobs(where: dict[int, tuple[int, int, list[bytes]]], inode_ids: list[int]) -> list[_Job]:
    """Read jobs for these inodes, in the order of their first path (neighbours on disk are
    read together); inodes with no catalogued path are left out."""
    jobs = [(iid, *where[iid]) for iid in inode_ids if iid in where]
    jobs.sort(key=lambda j: j[3][0])
    return jobs


def _partial(fd: int, st: os.stat_result) -> tuple[bytes, os.stat_result]:
    return partial_fd(fd, st), st


def _full(fd: int, st: os.stat_result) -> HashResult:
    size = st.st_size
    if size < MULTITHREAD_MIN:
        # One read of size + 1 bytes from offset 0 (the descriptor was just opened): getting exactly
        # st_size bytes is the whole file as fstat'ed before the read; anything else (it grew or
        # shrank meanwhile) goes the usual way, and the stat after the read decides as always.
        data = os.pread(fd, size + 1, 0)
        if len(data) == size:
            return HashResult(blake3(data, max_threads=1).digest(), st, os.fstat(fd))
    digest = hash_fd(fd)
    return HashResult(digest, st, os.fstat(fd))


def _on_fs(catalog: Catalog) -> Callable[[bytes, int, int], bool]:
    """``on_fs(path, st_dev, fs)``: whether that st_dev is the catalog's filesystem ``fs``, each
    st_dev looked up once (as a scan does)."""
    dev_fs: dict[int, int] = {}

    def on_fs(path: bytes, dev: int, want_fs: int) -> bool:
        fs = dev_fs.get(dev)
        if fs is None:
            fs = dev_fs[dev] = catalog.fs_for_path(path, dev)
        return fs == want_fs

    return on_fs


def _unchecked(_path: bytes, _dev: int, _want_fs: int) -> bool:
    """``_read_each``'s filesystem check left to the caller (a forked child has no catalog to ask:
    the parent checks each answer's st_dev, ``_take_theirs``)."""
    return True


def _read_each(
    jobs: list[_Job], read: Callable[[int, os.stat_result], R], on_fs: Callable[[bytes, int, int], bool]
) -> Iterator[tuple[int, bytes, R]]:
    """``read(fd, fstat)`` for each job's inode: yields (inode id, path, result) for the inodes
    one of whose catalogued paths still is that inode; the others are left out.

    Each path is opened with open_regular (never through a symlink, never a FIFO or device)
    and its descriptor's inode number and filesystem (``on_fs``, see ``_on_fs``) compared with
    the catalog's: the file read is the one checked. LOOKAHEAD descriptors are kept open ahead
    of the one being read, each announced with POSIX_FADV_WILLNEED (a cold disk serves them in
    parallel).
    """
    window: deque[tuple[int, bytes, int, os.stat_result]] = deque()
    ahead = _window()

    def opened(job: _Job):
        iid, want_fs, ino, paths = job
        for path in paths:
            try:
                fd, st = open_regular(path)
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    # Not this file's fault: leaving it out would silently drop it (and its
                    # copies' set) from the report.
                    raise OutOfDescriptors(
                        f"too many open files while opening {os.fsdecode(path)}: stopped rather than leave it out",
                        hint="raise the open-file limit (ulimit -n) and run it again",
                    ) from None
                continue  # gone, replaced or unreadable now: as a path no longer the inode
            if st.st_ino == ino and on_fs(path, st.st_dev, want_fs):
                try:
                    os.posix_fadvise(fd, 0, PARTIAL_SIZE if read is _partial else 0, os.POSIX_FADV_WILLNEED)
                except OSError:
                    pass
                return iid, path, fd, st
            os.close(fd)
        return None

    def finish(ent):
        iid, path, fd, st = ent
        try:
            return iid, path, read(fd, st)
        except OSError:
            return None  # unreadable now: left out, as a path that is no longer the inode
        finally:
            os.close(fd)

    try:
        for job in jobs:
            ent = opened(job)
            if ent is not None:
                window.append(ent)
            if len(window) > ahead and (done := finish(window.popleft())) is not None:
                yield done
        while window:
            if (done := finish(window.popleft())) is not None:
                yield done
    finally:
        for _iid, _path, fd, _st in window:
            os.close(fd)


def _window() -> int:
    """LOOKAHEAD, or a quarter of this process's descriptor limit if that is less: an open that
    fails for want of descriptors would leave that file out of the run."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return LOOKAHEAD if soft == resource.RLIM_INFINITY else max(1, min(LOOKAHEAD, soft // 4))


def _hash_small(
    writes: _Helper | _Inline,
    jobs: list[_Job],
    on_fs: Callable[[bytes, int, int], bool],
    settle_seconds: float,
    now: float,
    progress: Progress | None,
    elsewhere: tuple[Forked, list[_Job]] | None = None,
) -> None:
    """Full hashes of small files; cached only if settled (as ensure_hashes), stored by ``writes``.
    ``elsewhere``: the other process hashing the rest (``_share``), named in the progress."""
    also = f" (and {len(elsewhere[1]):,} in another process)" if elsewhere else ""
    hashed: list[tuple[int, bytes, os.stat_result]] = []
    unsettled: list[tuple[int, os.stat_result]] = []
    for done, (iid, _path, res) in enumerate(_read_each(jobs, _full, on_fs), 1):
        if res.settled(settle_seconds, now):
            hashed.append((iid, res.digest, res.after))
        else:
            unsettled.append((iid, res.after))
        if len(hashed) + len(unsettled) >= STORE_EVERY:
            writes.put(("hashes", (hashed, unsettled)))
            hashed, unsettled = [], []
        if progress is not None and not done % 256:
            progress.update(done, f"hashing small files {done:,}/{len(jobs):,}{also}")
    if hashed or unsettled:
        writes.put(("hashes", (hashed, unsettled)))


class _Stat(NamedTuple):
    """What the catalog stores of a stat after a hash (``Catalog.store_hashes``/``store_stats``):
    sent back from a forked child instead of an ``os.stat_result``, whose pickling alone cost
    0.3 s per 10,000 files."""

    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_nlink: int
    st_ino: int  # with st_dev: which row is still that file (``store._STILL_THAT_FILE``)
    st_dev: int


# (inode id, path read, its st_dev, digest or None if not settled, size, mtime_ns, ctime_ns, nlink, ino)
_Answer = tuple[int, bytes, int, bytes | None, int, int, int, int, int]


def _share(jobs: list[_Job], settle_seconds: float, now: float) -> tuple[list[_Job], tuple[Forked, list[_Job]] | None]:
    """The small files to hash here, and the other process hashing the rest (None: all here).

    Reading and hashing a small file is system calls and interpreter work, on one core; a forked
    child takes the second half of the jobs (path order: neighbours on disk stay together) when
    there are FORK_MIN_SMALL or more and forking is safe (``forked.may_fork``: one thread, two
    cores). The child only reads files: it never opens the catalog and checks no filesystem
    (``_unchecked``); what it sends back is checked and written here (``_take_theirs``)."""
    if len(jobs) < FORK_MIN_SMALL or not may_fork():
        return jobs, None
    half = len(jobs) // 2
    theirs = jobs[half:]
    try:
        kid = Forked(lambda: _hashed_unchecked(theirs, settle_seconds, now))
    except OSError as e:
        log.info("hashing small files in one process: no fork (%s)", e)
        return jobs, None
    return jobs[:half], (kid, theirs)


def _hashed_unchecked(jobs: list[_Job], settle_seconds: float, now: float) -> list[_Answer]:
    """In the forked child: each job's full hash and stat, with the st_dev its file was read on."""
    out: list[_Answer] = []
    for iid, path, res in _read_each(jobs, _full, _unchecked):
        a = res.after
        digest = res.digest if res.settled(settle_seconds, now) else None
        st = (a.st_size, a.st_mtime_ns, a.st_ctime_ns, a.st_nlink, a.st_ino)
        out.append((iid, path, res.before.st_dev, digest, *st))
    return out


def _take_theirs(
    writes: _Helper | _Inline,
    other: tuple[Forked, list[_Job]],
    on_fs: Callable[[bytes, int, int], bool],
    settle_seconds: float,
    now: float,
    progress: Progress | None,
) -> None:
    """The forked child's hashes (``_share``), stored once each answer's file is found on its
    inode's filesystem; the jobs it could not answer for are hashed here: those whose file it
    read on another filesystem, or all of them if it failed (it only read, so nothing is lost)."""
    kid, jobs = other
    try:
        answers = kid.result()
    except ChildFailed as e:
        log.warning("hashing small files: %s; hashing its %d file(s) here", e.message, len(jobs))
        _hash_small(writes, jobs, on_fs, settle_seconds, now, progress)
        return
    want = {job[0]: job[1] for job in jobs}
    hashed: list[tuple[int, bytes, _Stat]] = []
    unsettled: list[tuple[int, _Stat]] = []
    redo: set[int] = set()
    for iid, path, dev, digest, *st in answers:
        if not on_fs(path, dev, want[iid]):
            redo.add(iid)
        elif digest is None:
            unsettled.append((iid, _Stat(*st, dev)))
        else:
            hashed.append((iid, digest, _Stat(*st, dev)))
    if hashed or unsettled:
        writes.put(("hashes", (hashed, unsettled)))
    if redo:
        _hash_small(writes, [job for job in jobs if job[0] in redo], on_fs, settle_seconds, now, None)


def _do(catalog: Catalog, job: tuple[str, object]) -> None:
    """One piece of catalog work handed over by _find_duplicates (see _Helper)."""
    kind, arg = job
    if kind == "samples":
        catalog.store_samples(arg)
    elif kind == "hashes":
        hashed, unsettled = arg
        catalog.store_hashes(hashed)
        catalog.store_stats(unsettled)
    else:  # "big"
        ids, settle_seconds, progress = arg
        ensure_hashes(catalog, ids, settle_seconds=settle_seconds, progress=progress)


class _Inline:
    """_Helper's interface, doing each piece of work at once on the calling thread: where no second
    connection can be opened (a catalog in memory), or a forked child holds the second core."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def put(self, job: tuple[str, object]) -> None:
        _do(self.catalog, job)


class _Helper:
    """A thread with a connection of its own to the catalog's file that does the handed-over work
    (_do) in order: stored partials and hashes, and the big files' ensure_hashes.

    A second connection because a SQLite connection belongs to the thread that opened it; both
    are writers of one WAL database, each commit its own transaction (the main one may still
    register a filesystem meanwhile: SQLite's lock and busy timeout order the two). finish()
    joins it and re-raises what stopped it; once it failed, later work is not done (the
    caller gets that error, as it would have at the failing commit itself). finish(abandon=True)
    (the caller is leaving on an error or Ctrl-C) lets the piece in hand end and drops the rest.
    """

    def __init__(self, path: str, marker_roots: tuple[str, ...]):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(
            target=self._run, args=(path, marker_roots), name="qbhook-dupes-writer", daemon=True
        )
        self._thread.start()

    @classmethod
    def start(cls, catalog: Catalog) -> _Helper | None:
        try:
            path = next((r[2] for r in catalog.conn.execute("PRAGMA database_list") if r[1] == "main"), "")
        except sqlite3.Error:
            return None
        return cls(path, catalog.marker_roots) if path else None

    def _run(self, path: str, marker_roots: tuple[str, ...]) -> None:
        try:
            catalog = Catalog.open(path, marker_roots=marker_roots)
        except BaseException as e:
            self._error = e
            return
        try:
            while (job := self._jobs.get()) is not None:
                if not self._abandoned:
                    _do(catalog, job)
        except BaseException as e:
            self._error = e
        finally:
            catalog.close()

    def put(self, job: tuple[str, object]) -> None:
        if self._error is not None:
            raise self._error
        self._jobs.put(job)

    def finish(self, abandon: bool = False) -> None:
        self._abandoned = abandon
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None and not abandon:
            raise self._error


def _hash_groups(conn, rows: list):
    """(size, digest, copies) for every content held by more than one inode, from the candidate
    rows (see _candidates) and their paths: the sets need no query of their own."""
    groups: dict[tuple[int, bytes], list] = defaultdict(list)
    for r in rows:
        if r[2] is not None:
            groups[(r[1], r[2])].append(r)
    groups = {k: sorted(g) for k, g in groups.items() if len(g) > 1}
    want = {r[0] for g in groups.values() for r in g}
    paths = _paths_of(conn, want)
    fsids = dict(conn.execute("SELECT id, fsid FROM filesystems"))
    for (size, digest), members in sorted(groups.items()):
        # An inode row no path points at is no copy: shown, a person could delete the only real one.
        members = [m for m in members if paths.get(m[0])]
        if len(members) < 2:
            continue
        copies = []
        for iid, _size, _hash, _partial, fs, ino, nlink in members:
            mine = sorted(paths.get(iid, ()))
            copies.append(Copy(iid, fsids[fs], ino, nlink, [p for _path, p in mine], [os.fsdecode(p) for p, _ in mine]))
        yield size, digest, _finish(copies)


def _paths_of(conn, inode_ids: set[int]) -> dict[int, list[tuple[bytes, str]]]:
    """inode id -> [(path, pool)]: one pass over the paths table when the inodes hold a good share
    of it (cheaper than an index lookup each), else 500 inodes per indexed query."""
    out: dict[int, list[tuple[bytes, str]]] = defaultdict(list)
    if not inode_ids:
        return out
    top = conn.execute("SELECT max(id) FROM paths").fetchone()[0] or 0  # ~ the number of paths
    if 3 * len(inode_ids) >= top:
        for iid, path, pool in conn.execute("SELECT inode, path, pool FROM paths"):
            if iid in inode_ids:
                out[iid].append((path, pool))
        return out
    ids = list(inode_ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        for iid, path, pool in conn.execute(
            f"SELECT inode, path, pool FROM paths WHERE inode IN ({','.join('?' * len(chunk))})", chunk
        ):
            out[iid].append((path, pool))
    return out


def _finish(copies: list[Copy]) -> list[Copy]:
    for c in copies:
        c.pools = sorted(set(c.pools))
    return copies
