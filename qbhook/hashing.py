"""BLAKE3 content hashing: one hash per inode, computed only when a decision needs it.

Files are read sequentially in large buffers (spinning disks hate seeks) and
each buffer is hashed with BLAKE3's multithreaded mode, so the CPU keeps up
with the disk. A hash is cached only if the file was *settled*: identical stat
before and after the read, and an mtime older than a margin (a file still being
written by a download is not worth remembering).
"""

from __future__ import annotations

import errno
import os
import queue
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from qbhook.catalog.store import Catalog
from qbhook.progress import Progress

BUF_SIZE = 4 * 1024 * 1024
# Files at least this big are read on a helper thread while the previous buffer is hashed
# (bench/bench_hash.py, page-cached, 2 cores: ~0.6x b3sum without it, ~0.85x with it).
PIPELINE_MIN = 4 * BUF_SIZE
PIPELINE_BUFFERS = 2
MULTITHREAD_MIN = 1024 * 1024   # smaller files are hashed on one thread
STORE_BATCH = 1000          # ensure_hashes: commit hashes in batches of this many files ...
STORE_INTERVAL = 5.0        # ... or after this many seconds
SAMPLE_SIZE = 16 * 1024
EMPTY_HASH = blake3.blake3(b"").digest()


@dataclass(frozen=True)
class HashResult:
    digest: bytes
    before: os.stat_result
    after: os.stat_result

    @property
    def stable(self) -> bool:
        b, a = self.before, self.after
        return (b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns) == (a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns)

    def settled(self, margin_s: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.stable and (now - self.after.st_mtime_ns / 1e9) >= margin_s


# O_NOATIME spares a metadata write per file read; it needs ownership or CAP_FOWNER (root).
# O_NONBLOCK: opening a FIFO for reading blocks until a writer appears (forever, in
# practice), and a device's open can block too; with it the open returns at once and the
# fstat below refuses the thing. On a regular file O_NONBLOCK changes nothing.
_READ_FLAGS = (os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
               | (getattr(os, "O_NOATIME", 0) if os.geteuid() == 0 else 0))


class NotRegularFile(OSError):
    """The path is a FIFO, device, socket or folder: qbhook never reads those."""


def open_regular(path: bytes | str) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading only if it is a regular file (never through a symlink).

    Returns the descriptor and its fstat. The type is checked on the opened descriptor, so
    a file swapped for a FIFO between a caller's lstat and this open is still refused, and
    nothing is read before the check. Costs no extra system call: callers use the stat.
    """
    fd = os.open(path, _READ_FLAGS)
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, f"not a regular file ({_kind(st.st_mode)})", os.fsdecode(path))
    return fd, st


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def hash_fd(fd: int, hasher=None) -> bytes:
    """BLAKE3 of everything readable from ``fd``'s current offset to EOF."""
    try:
        size = os.fstat(fd).st_size
    except OSError:
        size = 0
    # Multithreaded hashing pays off only for big inputs; on small files its overhead is
    # bigger than the hashing (bench/bench_dupes.py: ~30 us more per 100 KB file).
    h = hasher or blake3.blake3(max_threads=blake3.blake3.AUTO if size >= MULTITHREAD_MIN else 1)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except (OSError, AttributeError):
        pass
    if size >= PIPELINE_MIN:
        _hash_pipelined(fd, h)
        return h.digest()
    # A buffer the size of the file (plus one byte to see EOF), not BUF_SIZE: zero-filling
    # 4 MiB cost more than hashing a typical small file.
    buf = bytearray(min(BUF_SIZE, max(size + 1, 64 * 1024)))
    view = memoryview(buf)
    while True:
        n = os.readv(fd, [buf])
        if not n:
            break
        h.update(view[:n])
    return h.digest()


def _hash_pipelined(fd: int, h) -> None:
    """Read the next buffer on a helper thread while this thread hashes the previous one.

    Still one sequential reader (the disk sees the same access pattern), but the copy out of
    the page cache, or the wait for the disk, overlaps the hashing instead of adding to it.
    Buffers go back and forth through two queues, so at most PIPELINE_BUFFERS are in flight.
    """
    free: queue.SimpleQueue = queue.SimpleQueue()
    full: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(PIPELINE_BUFFERS):
        free.put(bytearray(BUF_SIZE))

    def reader():
        try:
            while (buf := free.get()) is not None:
                n = os.readv(fd, [buf])
                full.put((buf, n, None))
                if not n:
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the hashing thread, re-raised there
            full.put((None, 0, e))

    t = threading.Thread(target=reader, name="hash-read", daemon=True)
    t.start()
    try:
        while True:
            buf, n, err = full.get()
            if err is not None:
                raise err
            if not n:
                break
            with memoryview(buf) as view:
                h.update(view[:n])
            free.put(buf)
    finally:
        free.put(None)  # stops the reader (after at most PIPELINE_BUFFERS more reads) if we leave early
        t.join()


def hash_file(path: bytes | str) -> HashResult:
    fd, before = open_regular(path)
    try:
        digest = hash_fd(fd)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    return HashResult(digest, before, after)


def sample_file(path: bytes | str) -> tuple[bytes, os.stat_result]:
    """Cheap fingerprint: BLAKE3 of size + first and last SAMPLE_SIZE bytes."""
    fd, st = open_regular(path)
    try:
        h = blake3.blake3(st.st_size.to_bytes(8, "little"))
        h.update(os.pread(fd, SAMPLE_SIZE, 0))
        if st.st_size > SAMPLE_SIZE:
            h.update(os.pread(fd, SAMPLE_SIZE, max(SAMPLE_SIZE, st.st_size - SAMPLE_SIZE)))
        return h.digest(), st
    finally:
        os.close(fd)


@dataclass
class EnsureReport:
    hashed: int = 0
    cached: int = 0
    bytes_read: int = 0
    unsettled: list[int] = None   # inode ids whose content moved under us or is too fresh
    missing: list[int] = None     # inode ids with no readable path that still is that inode

    def __post_init__(self):
        self.unsettled = self.unsettled or []
        self.missing = self.missing or []


def _locate(catalog: Catalog, inode_id: int):
    """A path that still is this inode right now (path strings are not identity)."""
    row = catalog.inode(inode_id)
    if row is None:
        return None, None
    for path, _pool in catalog.paths_of(inode_id):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_ino == row.ino and catalog.fs_for_path(path, st.st_dev) == row.fs:
            return row, path
    return row, None


def _locate_many(catalog: Catalog, inode_ids: list[int], chunk: int = 500):
    """_locate() for many inodes, reading the catalog in chunks: yields (inode id, row, path,
    lstat of path) with path and lstat None when no path still is that inode (row None: unknown id)."""
    for i in range(0, len(inode_ids), chunk):
        ids = inode_ids[i:i + chunk]
        found = catalog.inodes_and_paths(ids)
        for iid in ids:
            ent = found.get(iid)
            if ent is None:
                yield iid, None, None, None
                continue
            row, paths = ent
            for path in paths:
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if st.st_ino == row.ino and catalog.fs_for_path(path, st.st_dev) == row.fs:
                    yield iid, row, path, st
                    break
            else:
                yield iid, row, None, None


def ensure_hashes(catalog: Catalog, inode_ids, *, settle_seconds: float = 60.0,
                  progress: Progress | None = None) -> EnsureReport:
    """Make sure every inode in ``inode_ids`` has a valid cached hash, hashing only what lacks one.

    Reads run one thread per filesystem (one sequential reader per device);
    catalog writes stay on this thread.
    """
    report = EnsureReport()
    todo: dict[int, list[tuple[int, bytes]]] = {}
    for iid, row, path, st in _locate_many(catalog, list(dict.fromkeys(inode_ids))):
        if row is None or path is None:
            report.missing.append(iid)
            continue
        if row.hash is not None and (st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (row.size, row.mtime_ns, row.ctime_ns):
            report.cached += 1
            continue
        todo.setdefault(row.fs, []).append((iid, path))
    if not todo:
        return report

    total = sum(len(v) for v in todo.values())
    done = 0
    # Results stream back as each file is done and are written in batches: one commit per
    # STORE_BATCH files or STORE_INTERVAL seconds, whichever comes first (a commit per file
    # costs an fsync each; waiting for a whole filesystem would lose hours of work on a crash).
    results: queue.SimpleQueue = queue.SimpleQueue()
    hashed: list[tuple[int, bytes, os.stat_result]] = []
    stats: list[tuple[int, os.stat_result]] = []
    last_store = time.monotonic()

    def store() -> None:
        nonlocal last_store
        catalog.store_hashes(hashed)
        catalog.store_stats(stats)
        hashed.clear()
        stats.clear()
        last_store = time.monotonic()

    stop = threading.Event()     # set when we leave early: workers stop after their current file

    def worker(items):
        for iid, path in items:
            if stop.is_set():
                return
            try:
                results.put((iid, hash_file(path), None))
            except OSError as e:
                results.put((iid, None, e))
            except BaseException as e:  # noqa: BLE001 - re-raised on the catalog thread
                results.put((iid, None, e))
                return

    with ThreadPoolExecutor(max_workers=min(len(todo), 8), thread_name_prefix="hash") as ex:
        for items in todo.values():
            ex.submit(worker, items)
        try:
            while done < total:
                iid, res, err = results.get()
                done += 1
                if err is not None and not isinstance(err, OSError):
                    raise err
                if res is None:
                    report.missing.append(iid)
                    continue
                report.bytes_read += res.after.st_size
                if res.settled(settle_seconds):
                    hashed.append((iid, res.digest, res.after))
                    report.hashed += 1
                else:
                    stats.append((iid, res.after))
                    report.unsettled.append(iid)
                if len(hashed) + len(stats) >= STORE_BATCH or time.monotonic() - last_store >= STORE_INTERVAL:
                    store()
                if progress is not None:
                    progress.update(done, f"hashing {done:,}/{total:,} files")
        finally:
            stop.set()
            store()
    if progress is not None:
        progress.done(f"hashed {report.hashed:,} files ({report.bytes_read / 2**30:.2f} GiB)")
    return report
