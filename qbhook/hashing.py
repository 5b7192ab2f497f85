"""BLAKE3 content hashing: one hash per inode, computed only when a decision needs it.

Files are read sequentially in large buffers (spinning disks hate seeks) and
each buffer is hashed with BLAKE3's multithreaded mode, so the CPU keeps up
with the disk. A hash is cached only if the file was *settled*: identical stat
before and after the read, and an mtime older than a margin (a file still being
written by a download is not worth remembering).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from qbhook.catalog.store import Catalog
from qbhook.progress import Progress

BUF_SIZE = 8 * 1024 * 1024
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


def _open_nofollow(path: bytes | str) -> int:
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOATIME", 0)) if _can_noatime() else \
        os.open(path, os.O_RDONLY | os.O_NOFOLLOW)


def _can_noatime() -> bool:
    # O_NOATIME needs file ownership or CAP_FOWNER; root has it.
    return hasattr(os, "O_NOATIME") and os.geteuid() == 0


def hash_fd(fd: int, hasher=None) -> bytes:
    h = hasher or blake3.blake3(max_threads=blake3.blake3.AUTO)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except (OSError, AttributeError):
        pass
    buf = bytearray(BUF_SIZE)
    view = memoryview(buf)
    while True:
        n = os.readv(fd, [buf])
        if not n:
            break
        h.update(view[:n])
    return h.digest()


def hash_file(path: bytes | str) -> HashResult:
    fd = _open_nofollow(path)
    try:
        before = os.fstat(fd)
        digest = hash_fd(fd)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    return HashResult(digest, before, after)


def sample_file(path: bytes | str) -> tuple[bytes, os.stat_result]:
    """Cheap fingerprint: BLAKE3 of size + first and last SAMPLE_SIZE bytes."""
    fd = _open_nofollow(path)
    try:
        st = os.fstat(fd)
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


def ensure_hashes(catalog: Catalog, inode_ids, *, settle_seconds: float = 60.0,
                  progress: Progress | None = None) -> EnsureReport:
    """Make sure every inode in ``inode_ids`` has a valid cached hash, hashing only what lacks one.

    Reads run one thread per filesystem (one sequential reader per device);
    catalog writes stay on this thread.
    """
    report = EnsureReport()
    todo: dict[int, list[tuple[int, bytes]]] = {}
    for iid in dict.fromkeys(inode_ids):
        row, path = _locate(catalog, iid)
        if row is None or path is None:
            report.missing.append(iid)
            continue
        if row.hash is not None:
            st = os.lstat(path)
            if (st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (row.size, row.mtime_ns, row.ctime_ns):
                report.cached += 1
                continue
        todo.setdefault(row.fs, []).append((iid, path))
    if not todo:
        return report

    total = sum(len(v) for v in todo.values())
    done = 0

    def worker(items):
        out = []
        for iid, path in items:
            try:
                out.append((iid, hash_file(path), None))
            except OSError as e:
                out.append((iid, None, e))
        return out

    with ThreadPoolExecutor(max_workers=min(len(todo), 8), thread_name_prefix="hash") as ex:
        futures = [ex.submit(worker, items) for items in todo.values()]
        for fut in futures:
            for iid, res, err in fut.result():
                done += 1
                if res is None:
                    report.missing.append(iid)
                    continue
                report.bytes_read += res.after.st_size
                if res.settled(settle_seconds):
                    catalog.store_hash(iid, res.digest, res.after)
                    report.hashed += 1
                else:
                    catalog.store_stat(iid, res.after)
                    report.unsettled.append(iid)
                if progress is not None:
                    progress.update(done, f"hashing {done:,}/{total:,} files")
    if progress is not None:
        progress.done(f"hashed {report.hashed:,} files ({report.bytes_read / 2**30:.2f} GiB)")
    return report
