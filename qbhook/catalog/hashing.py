"""BLAKE3 content hashing: one hash per inode, computed only when a decision needs it.

Files are read sequentially in large buffers (spinning disks hate seeks) and
each buffer is hashed with BLAKE3's multithreaded mode, so the CPU keeps up
with the disk. A hash is cached only if the file was *settled*: identical stat
before and after the read, and last written longer ago than a margin (``settled``: a file
still being written by a download is not worth remembering).

Big regular files (>= MMAP_MIN) are hashed without a copy: the open descriptor
is handed (SCM_RIGHTS) to a small worker *process* that mmaps it and hashes the
mapping. A file truncated while it is mapped raises SIGBUS in whoever touches
the lost pages; in the worker that kills only the worker, never the daemon. The
parent then re-reads the same descriptor with the read() path, whose stat
before/after check gives the verdict. The worker gets the descriptor, never a
path, so it hashes exactly the file the caller opened with O_NOFOLLOW.

A home server keeps serving while qbhook hashes (``ensure_hashes``):

- a per-run budget (``scan.hash_budget``, ``HashBudget``): no file is started once the run has
  hashed that many bytes; the rest stays unhashed for the next run; a file mostly holes
  (``is_sparse``) is never read by a budgeted run (left unhashed: decisions wait for its hash);
- resumable: results are committed as they come (at least every STORE_INTERVAL seconds), so
  a kill loses at most the files finished in the last second and the one in flight;
- ``background=True`` (the sweeper, ``qbhook scan --hash``): the hashing threads, their
  read-ahead threads and their mmap workers run at nice 19 and in the idle I/O class; the
  caller's own thread (the event server's) keeps its priority;
- progress with bytes/s and ETA on a terminal, and a log line every LOG_INTERVAL seconds.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import blake3

from qbhook.dirfd import MAX_OPEN, FolderReader, FolderRefused, NotRegular, open_file_at
from qbhook.files import kind
from qbhook.progress import Throughput

if TYPE_CHECKING:  # annotations only: `import qbhook.catalog.hashing` stays light for short-lived callers
    from qbhook.catalog.store import Catalog
    from qbhook.progress import Progress

log = logging.getLogger(__name__)

BUF_SIZE = 4 * 1024 * 1024
# Files at least this big are read on a helper thread while the previous buffer is hashed
# (bench/bench_hash.py, page-cached, 2 cores: ~0.6x b3sum without it, ~0.85x with it).
PIPELINE_MIN = 4 * BUF_SIZE
PIPELINE_BUFFERS = 2
MULTITHREAD_MIN = 1024 * 1024  # smaller files are hashed on one thread
# Below this a file is read in one request that the kernel's first readahead window (128 KiB
# by default) already covers: a "sequential" hint would change nothing, and it is a system
# call per file (20,000 of a convergence's small files, docs/benchmarks.md section 9).
FADVISE_MIN = 128 * 1024
STORE_BATCH = 1000  # ensure_hashes: commit hashes in batches of this many files ...
# ... or after this many seconds: a file that took longer than this is committed as soon as it
# is done (a kill loses at most the file in flight), and small files still share one commit.
STORE_INTERVAL = 1.0
LOG_INTERVAL = 30.0  # ensure_hashes logs its progress this often (under `serve`: the log)
# A reading thread hands its results back in batches of this many files, or after this many
# seconds (a slow disk still reports progress and commits on time).
RESULT_BATCH = 64
RESULT_INTERVAL = 0.1
SMALL_FILE = 1024 * 1024  # ensure_hashes: files below this are read by SMALL_READERS threads per filesystem
SMALL_READERS = 2
# ensure_hashes' reading threads at most, all filesystems together (serve's descriptor reserve
# counts them: events.server.FD_BUDGET)
READER_THREADS = 8
THREAD_FOLDERS = 4  # folders each reading thread keeps open (its own FolderReader), counted there too
# A budgeted hash (``HashBudget`` with a limit) never reads a file that is mostly holes: bigger
# than SPARSE_MIN with under 1/SPARSE_SHARE of its size on disk. Its apparent size is what a read
# costs (a hole reads as zeros), and a writer can make one of any size (4 GiB of nothing on
# ext4, exabytes on ZFS): hours or forever in the background pass. Left unhashed, as a file not
# settled (a download without preallocation is sparse until done).
SPARSE_MIN = 64 * 1024 * 1024
SPARSE_SHARE = 8
SAMPLE_SIZE = 16 * 1024
# dupes' partial hash: the first block only, as jdupes does (one read per candidate, page-sized,
# so a cold disk serves it with one request); its digest length marks it in the catalog.
PARTIAL_SIZE = 4096
PARTIAL_LEN = 16
# Files at least this big are hashed by mmap in a worker process (bench/bench_hash.py: the
# read() pipeline reaches ~0.6-0.9x b3sum depending on the CPU, the mapping ~1.0x). The round
# trip to the worker costs ~0.2-0.3 ms: a page-cached 32 MiB file took 6.9 ms through the worker,
# 6.6 ms mapped in-process and 12.2 ms on the read() path (medians of 30, Intel Xeon). At 8 MiB
# the worker still wins (1.8 vs 6.5 ms; 16 MiB 4.5 vs 9.4 ms), at 4 MiB it no longer does (1.8
# ms both), and the copy it saves is CPU: bench_dupes' 8-48 MiB files (2 GB) took 0.54-0.76 CPU-s
# from 8 MiB vs 0.73-0.98 from 32 MiB (docs/benchmarks.md §3, 2026-12-01 10:21). Smaller files
# stay on the read() path, whose buffers are tuned for them.
MMAP_MIN = 8 * 1024 * 1024
MMAP_WORKERS = True  # False: always use the read() path (e.g. for comparison in benchmarks)
MMAP_CHUNK = 64 * 1024 * 1024  # the worker hashes the mapping in chunks, asking the kernel for the next one
MAX_IDLE_WORKERS = 2  # idle workers kept for the next file (~15 MB each); more are stopped
EMPTY_HASH = blake3.blake3(b"").digest()

# ioprio_set(2): no wrapper in the stdlib. Syscall numbers per architecture.
_IOPRIO_SYSCALLS = {
    "x86_64": (251, 252),
    "aarch64": (30, 31),
    "i686": (289, 290),
    "i386": (289, 290),
    "armv7l": (314, 315),
    "ppc64le": (273, 274),
    "s390x": (282, 283),
    "riscv64": (30, 31),
}
IOPRIO_WHO_PROCESS = 1  # "process" is a task: a thread id names just that thread
IOPRIO_CLASS_IDLE = 3
_IOPRIO_CLASS_SHIFT = 13
BACKGROUND_NICE = 19


def _ioprio_call(which: int, *args: int) -> int:
    # ctypes and platform load here, not at the top: every command that imports this module
    # (explain builds a snapshot) would pay for them, and only background hashing calls this.
    import ctypes
    import platform

    nrs = _IOPRIO_SYSCALLS.get(platform.machine())
    if nrs is None:
        raise OSError(errno.ENOSYS, f"ioprio syscalls unknown on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.syscall(nrs[which], *args)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def io_priority(tid: int = 0) -> tuple[int, int]:
    """(class, level) of a thread's I/O priority (0: the calling thread)."""
    v = _ioprio_call(1, IOPRIO_WHO_PROCESS, tid)
    return v >> _IOPRIO_CLASS_SHIFT, v & ((1 << _IOPRIO_CLASS_SHIFT) - 1)


def lower_this_thread() -> None:
    """Idle I/O class and nice 19 for the calling thread only (Linux: both are per thread).

    Threads and processes it starts inherit both. Best effort: a kernel or platform that
    refuses leaves the thread as it was, with a debug line (hashing then just competes).
    """
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
    except OSError as e:
        log.debug("cannot lower the CPU priority of hashing thread %d: %s", tid, e)
    try:
        _ioprio_call(0, IOPRIO_WHO_PROCESS, tid, IOPRIO_CLASS_IDLE << _IOPRIO_CLASS_SHIFT)
    except (OSError, AttributeError) as e:
        log.debug("cannot set the idle I/O class on hashing thread %d: %s", tid, e)


class HashBudget:
    """Bytes one run may still hash (``scan.hash_budget``; 0 = unlimited), shared by its threads.

    A file is started only while the bytes started so far are below the limit, so a run reads
    at most the budget plus one file per reading thread (one per filesystem, two more for its
    small files: under 1 MiB each); a file bigger than the whole budget is
    still hashed when it comes first (otherwise it would never be), unless it is mostly holes
    (``is_sparse``: its read costs its apparent size, of any size a writer chose).
    """

    def __init__(self, limit: int = 0):
        self.limit = int(limit or 0)
        self.spent = 0
        self.deferred = 0  # files left for a later run
        self.deferred_bytes = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.limit and self.spent >= self.limit:
                self.deferred += 1
                self.deferred_bytes += size
                return False
            self.spent += size
            return True

    def give_back(self, size: int) -> None:
        """``size`` taken for a file that was not read after all (``SparseFile``)."""
        with self._lock:
            self.spent -= size

    def as_dict(self) -> dict:
        return {
            "limit": self.limit,
            "spent": self.spent,
            "deferred_files": self.deferred,
            "deferred_bytes": self.deferred_bytes,
        }


@dataclass(frozen=True)
class HashResult:
    digest: bytes
    before: os.stat_result
    after: os.stat_result

    @property
    def stable(self) -> bool:
        b, a = self.before, self.after
        return (b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns) == (
            a.st_ino,
            a.st_size,
            a.st_mtime_ns,
            a.st_ctime_ns,
        )

    def settled(self, margin_s: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.stable and settled(self.after.st_mtime_ns, self.after.st_ctime_ns, margin_s, now)


def settled(mtime_ns: int, ctime_ns: int, margin_s: float, now: float) -> bool:
    """Whether a file is no longer being written: its mtime is ``margin_s`` old, or, when its mtime
    is in the future, its ctime is. The one settle rule (hashing, and the demotion's choice of
    what to hash: ``SnapshotBuilder._demotion_hashes``).

    An mtime in the future (a tar or rsync of future-dated files, a writer with a skewed clock,
    ``touch -d``) never ages: the file stayed "not settled" for good, re-read by every sweep and
    never cached, and its group blocked. Such an mtime was set, not written: setting it moved the
    ctime, which no one can set and every later write moves too (a write also brings the mtime
    back to now)."""
    changed = ctime_ns if mtime_ns > now * 1e9 else mtime_ns
    return now - changed / 1e9 >= margin_s


# O_NOATIME spares a metadata write per file read; it needs ownership or CAP_FOWNER (root).
# O_NONBLOCK: the file is opened only once its pin proved it regular (``open_regular``), where
# O_NONBLOCK changes nothing; it stays for the fallback without /proc, where the name is opened
# again and a FIFO swapped in meanwhile must not hang that open.
_READ_FLAGS = (
    os.O_RDONLY
    | os.O_NOFOLLOW
    | os.O_NONBLOCK
    | os.O_CLOEXEC
    | (getattr(os, "O_NOATIME", 0) if os.geteuid() == 0 else 0)
)


class NotRegularFile(OSError):
    """The path is a FIFO, device, socket or folder: qbhook never reads those."""


def open_regular(path: bytes | str, dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading only if it is a regular file (never through a symlink).

    Returns the descriptor and its fstat. The type is checked before anything is opened
    (``dirfd.open_file_at``: the name pinned with O_PATH, its inode checked, then that inode
    reopened), so a FIFO or a device planted at the name, or swapped in after a caller's lstat,
    is refused without being opened (a device's open has effects: a watchdog arms, a tape
    rewinds), and nothing is read before the check. Callers use the stat it returns.
    ``dir_fd``: ``path`` is a name in that verified folder (``qbhook.dirfd``), not resolved again.
    """
    try:
        return open_file_at(path, dir_fd, _READ_FLAGS)
    except NotRegular as e:
        raise NotRegularFile(errno.EINVAL, f"not a regular file ({kind(e.mode)})", os.fsdecode(path)) from None


def hash_fd(fd: int, hasher=None, size: int | None = None) -> bytes:
    """BLAKE3 of everything readable from ``fd``'s current offset to EOF.

    ``size``: the file's size from an fstat the caller just made (it only sizes the buffers:
    the read goes to EOF whatever it says). On zfs-fuse every fstat is a round trip to the
    daemon (its attribute cache is off by default)."""
    if size is None:
        try:
            size = os.fstat(fd).st_size
        except OSError:
            size = 0
    # Multithreaded hashing pays off only for big inputs; on small files its overhead is
    # bigger than the hashing (bench/bench_dupes.py: ~30 us more per 100 KB file).
    h = hasher or blake3.blake3(max_threads=blake3.blake3.AUTO if size >= MULTITHREAD_MIN else 1)
    if size >= FADVISE_MIN:
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
        except BaseException as e:
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


# The worker: a separate interpreter (exec'd, not forked: a fork of a threaded daemon, or of
# blake3's thread pool, is not safe). It imports nothing of qbhook. Protocol on a socketpair:
# it sends b"R" once ready; then per request the parent sends b"h" with one descriptor, the
# worker answers 1 status byte + 32-byte digest + 8-byte count of bytes hashed (b"E" and
# zeros if it could not map the file); EOF ends it. Reading from the mapping in order, one
# chunk at a time with the next one requested (MADV_WILLNEED), keeps one sequential reader
# per file on spinning disks, as the read() path does.
_WORKER_SRC = r"""
import mmap, os, socket, sys
import blake3
sock = socket.socket(fileno=int(sys.argv[1]))
chunk = int(sys.argv[2])
sock.sendall(b"R")
while True:
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 1, 1)
    except OSError:
        break
    if not fds:
        break
    fd = fds[0]
    try:
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        n = len(mm)
        mm.madvise(mmap.MADV_SEQUENTIAL)
        view = memoryview(mm)
        for off in range(0, n, chunk):
            if off + chunk < n:
                mm.madvise(mmap.MADV_WILLNEED, off + chunk, min(chunk, n - off - chunk))
            h.update(view[off:off + chunk])
        view.release()
        mm.close()
        reply = b"K" + h.digest() + n.to_bytes(8, "little")
    except (OSError, ValueError):
        reply = b"E" + bytes(40)
    finally:
        os.close(fd)
    sock.sendall(reply)
"""
_REPLY = 41


class _Worker:
    """One mmap-hashing worker process and the parent's end of its socket."""

    def __init__(self):
        import socket  # here: only a hashing run starts workers (start-up cost of every command)

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # -I (isolated): no working folder or PYTHON* variables on the import path. The daemon
            # runs as root, and its working folder may be one that others can write a blake3.py into.
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _WORKER_SRC, str(child.fileno()), str(MMAP_CHUNK)],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.sock = parent
        if self._recv(1) != b"R":
            self.close()
            raise OSError("the hash worker did not start")

    def _recv(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            part = self.sock.recv(n - len(out))
            if not part:
                break
            out += part
        return out

    def hash(self, fd: int) -> bytes | None:
        """Digest of the file behind ``fd``; b"" if the worker could not map it (it lives on),
        None if the worker died or its answer was cut short (it must not be reused)."""
        import socket

        try:
            socket.send_fds(self.sock, [b"h"], [fd])
            reply = self._recv(_REPLY)
        except OSError:
            return None
        if len(reply) != _REPLY:
            return None
        return reply[1:33] if reply[:1] == b"K" else b""

    def close(self) -> int | None:
        """Close the socket (the worker exits on EOF) and reap it; returns its exit status."""
        self.sock.close()
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


# Idle workers, reused across calls; a caller thread takes one for the whole of one file, so
# concurrent hash_file() calls (one thread per filesystem) each get their own. Kept apart by
# priority: a worker inherits the priority of the thread that started it, and a foreground
# hash must not land in a worker started by a background (nice 19, idle I/O) thread.
_idle: list[_Worker] = []
_idle_background: list[_Worker] = []
_background = threading.local()  # .on: this thread hashes in the background
_pool_lock = threading.Lock()
_workers_broken = False  # set once a worker cannot even start: the read() path does it all


@atexit.register
def _stop_workers() -> None:
    with _pool_lock:
        idle = _idle + _idle_background
        _idle.clear()
        _idle_background.clear()
    for w in idle:
        w.close()


def _take_worker() -> _Worker | None:
    global _workers_broken
    with _pool_lock:
        idle = _idle_pool()
        if idle:
            return idle.pop()
        if _workers_broken:
            return None
    try:
        return _Worker()
    except (OSError, subprocess.SubprocessError) as e:
        _workers_broken = True
        log.warning("cannot start a hash worker (%s): hashing with read() only", e)
        return None


def _idle_pool() -> list[_Worker]:
    return _idle_background if getattr(_background, "on", False) else _idle


def _hash_in_worker(fd: int, path) -> bytes | None:
    """Digest of ``fd``'s file hashed by mmap in a worker; None to say "use the read() path"."""
    w = _take_worker()
    if w is None:
        return None
    res = w.hash(fd)
    if res is not None:
        with _pool_lock:
            idle = _idle_pool()
            keep = len(idle) < MAX_IDLE_WORKERS
            if keep:
                idle.append(w)
        if not keep:
            w.close()
        if not res:
            # e.g. a FUSE filesystem mounted without mmap support (direct_io)
            log.debug("hash worker cannot map %s; reading it with read()", os.fsdecode(path))
            return None
        return res
    status = w.close()
    if status is not None and status < 0:
        # Killed, typically SIGBUS: the file shrank (or could not be read) while mapped.
        try:
            why = signal.Signals(-status).name
        except ValueError:
            why = f"signal {-status}"
        log.warning("hash worker died (%s) on %s; reading it again with read()", why, os.fsdecode(path))
    return None


def is_sparse(st: os.stat_result) -> bool:
    """Mostly holes: bigger than SPARSE_MIN, with under 1/SPARSE_SHARE of its size on disk."""
    return st.st_size > SPARSE_MIN and st.st_blocks * 512 * SPARSE_SHARE < st.st_size


class SparseFile(Exception):
    """``hash_file(skip_sparse=True)`` opened a file that ``is_sparse``: not read. ``st``: its fstat."""

    def __init__(self, path: bytes | str, st: os.stat_result):
        super().__init__(
            f"{os.fsdecode(path)}: sparse, {st.st_blocks * 512 / 2**20:.1f} MiB on disk of {st.st_size / 2**20:.0f} MiB"
        )
        self.st = st


def hash_file(path: bytes | str, dir_fd: int | None = None, *, skip_sparse: bool = False) -> HashResult:
    """BLAKE3 of the regular file ``path`` (``dir_fd``: a name in that folder, as ``open_regular``).
    ``skip_sparse``: SparseFile instead of a read when the file opened ``is_sparse`` (judged on
    the descriptor's fstat: the file read is the file judged)."""
    fd, before = open_regular(path, dir_fd)
    try:
        if skip_sparse and is_sparse(before):
            raise SparseFile(path, before)
        digest = None
        if MMAP_WORKERS and before.st_size >= MMAP_MIN:  # open_regular checked S_ISREG
            digest = _hash_in_worker(fd, path)
        if digest is None:
            # The mapping never moved the shared file offset, but say where the read starts.
            if before.st_size >= MMAP_MIN:
                os.lseek(fd, 0, os.SEEK_SET)
            digest = hash_fd(fd, size=before.st_size)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    return HashResult(digest, before, after)


def partial_fd(fd: int, st: os.stat_result) -> bytes:
    """The partial hash (PARTIAL_LEN bytes): BLAKE3 of the size and the first PARTIAL_SIZE bytes
    of the open file ``fd`` whose fstat is ``st``.

    Only ever used to split candidates: equal content always gives equal partials, so two
    files with different partials differ; equal partials prove nothing (dupes then compares
    full hashes). Shorter than sample_file()'s digest on purpose: the catalog's ``sample``
    column may still hold head+tail samples of older versions, and a length check tells the
    two kinds apart so they are never compared with each other.
    """
    h = blake3.blake3(st.st_size.to_bytes(8, "little"), max_threads=1)
    h.update(os.pread(fd, PARTIAL_SIZE, 0))
    return h.digest(length=PARTIAL_LEN)


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
    unsettled: list[int] = None  # inode ids whose content moved under us or is too fresh
    missing: list[int] = None  # inode ids with no readable path that still is that inode
    deferred: list[int] = None  # inode ids left unhashed: the run's hash budget was spent
    deferred_bytes: int = 0
    sparse: list[int] = None  # inode ids left unhashed by a budgeted run: mostly holes (is_sparse)
    # keep_digests=True: inode id -> (digest, path read, fstat after the read) of each hash stored
    digests: dict[int, tuple[bytes, bytes | str, os.stat_result]] = None

    def __post_init__(self):
        self.unsettled = self.unsettled or []
        self.missing = self.missing or []
        self.deferred = self.deferred or []
        self.sparse = self.sparse or []
        self.digests = self.digests if self.digests is not None else {}


@dataclass(frozen=True)
class Located:
    """Where a caller found a catalog inode in this run: ``path`` was lstat-ed and had the inode
    number ``ino`` on device ``dev`` of catalog filesystem ``fs`` (``Catalog.still_is``), and the
    catalog's hash was not valid for that lstat. ``ensure_hashes`` then neither reads the row nor
    looks at the path again before opening it; the descriptor it opens must still be that inode."""

    fs: int
    path: bytes | str
    dev: int
    ino: int
    size: int


def _locate_many(catalog: Catalog, inode_ids: list[int], reader: FolderReader, chunk: int = 500):
    """A path that still is each inode right now (path strings are not identity), reading the
    catalog in chunks: yields (inode id, row, path, lstat of path) with path and lstat None when
    no path still is that inode (row None: unknown id). Each path is lstat-ed in its folder's
    verified descriptor (``reader``); a path reached through a symlinked folder is not that inode."""
    for i in range(0, len(inode_ids), chunk):
        ids = inode_ids[i : i + chunk]
        found = catalog.inodes_and_paths(ids)
        for iid in ids:
            ent = found.get(iid)
            if ent is None:
                yield iid, None, None, None
                continue
            row, paths = ent
            for path in paths:
                try:
                    st = reader.lstat_any(os.fsdecode(path))
                except (OSError, FolderRefused):
                    continue
                if st is not None and catalog.still_is(path, st, row):
                    yield iid, row, path, st
                    break
            else:
                yield iid, row, None, None


def ensure_hashes(
    catalog: Catalog,
    inode_ids,
    *,
    settle_seconds: float = 60.0,
    progress: Progress | None = None,
    budget: HashBudget | int | None = None,
    background: bool = False,
    located: dict[int, Located] | None = None,
    keep_digests: bool = False,
    reader: FolderReader | None = None,
) -> EnsureReport:
    """Make sure every inode in ``inode_ids`` has a valid cached hash, hashing only what lacks one.

    Reads run one thread per filesystem (one sequential reader per device); catalog writes
    stay on this thread. ``budget``: a ``HashBudget`` shared by the calls of one run, or a
    byte count for this call (0/None: unlimited); files it leaves out are ``deferred``.
    ``background``: the reading threads (not the caller's) run at idle I/O and nice 19.
    ``located``: inodes the caller found unhashed (``Located``), hashed without another lookup.
    ``keep_digests``: the report keeps each stored hash (``EnsureReport.digests``). A hash is
    stored only if the file opened is the inode located (else the inode is ``missing``).

    Every path below a pool root is looked at and opened in its folder's verified descriptor,
    walked from the root (``qbhook.dirfd``), never by its string: a folder swapped for a symlink
    cannot send the read outside. ``reader``: the caller's (a snapshot's, its folders already
    open); by default the catalog's (``Catalog.reader``: on its pool roots, with the full folder
    cache: it locates many files, in path order), closed at the end.
    """
    with nullcontext(reader) if reader is not None else catalog.reader(MAX_OPEN) as looking:
        return _ensure_hashes(
            catalog, inode_ids, settle_seconds, progress, budget, background, located, keep_digests, looking
        )


def _ensure_hashes(
    catalog: Catalog,
    inode_ids,
    settle_seconds: float,
    progress: Progress | None,
    budget: HashBudget | int | None,
    background: bool,
    located: dict[int, Located] | None,
    keep_digests: bool,
    reader: FolderReader,
) -> EnsureReport:
    # Long on purpose: one loop owns the reader threads, the shared budget and the commit cadence.
    if not isinstance(budget, HashBudget):
        budget = HashBudget(budget or 0)
    located = located or {}
    report = EnsureReport()
    todo: dict[int, list[tuple[int, bytes | str, int, int, int]]] = {}
    for iid, loc in located.items():
        todo.setdefault(loc.fs, []).append((iid, loc.path, loc.size, loc.dev, loc.ino))
    rest = [i for i in dict.fromkeys(inode_ids) if i not in located]
    for iid, row, path, st in _locate_many(catalog, rest, reader):
        if row is None or path is None:
            report.missing.append(iid)
            continue
        if row.hash is not None and (st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (
            row.size,
            row.mtime_ns,
            row.ctime_ns,
        ):
            report.cached += 1
            continue
        todo.setdefault(row.fs, []).append((iid, path, st.st_size, st.st_dev, st.st_ino))
    if not todo:
        return report

    total = sum(len(v) for v in todo.values())
    total_bytes = sum(item[2] for v in todo.values() for item in v)
    done = 0
    meter = Throughput(total_bytes)
    # Results stream back as each file is done and are written in batches: one commit per
    # STORE_BATCH files or STORE_INTERVAL seconds, whichever comes first (a commit per file
    # costs an fsync each; waiting longer would lose that much work on a crash).
    results: queue.SimpleQueue = queue.SimpleQueue()
    hashed: list[tuple[int, bytes, os.stat_result]] = []
    stats: list[tuple[int, os.stat_result]] = []
    last_store = time.monotonic()
    last_log = last_store
    sparse_seen: SparseFile | None = None

    def store() -> None:
        nonlocal last_store
        catalog.store_hashes(hashed)
        catalog.store_stats(stats)
        hashed.clear()
        stats.clear()
        last_store = time.monotonic()

    stop = threading.Event()  # set when we leave early: workers stop after their current file

    # The reader is not thread-safe: each reading thread places its files in a reader of its own
    # on the same roots (a few folders: its items come in path order), so no thread waits for
    # another's placing and no descriptor is closed under another thread (a shared reader behind
    # a lock cost ~0.6 CPU-s per 20,000 files of bench_converge's snapshot, docs/benchmarks.md §9).
    skip_sparse = bool(budget.limit)  # a budgeted run never reads a file of holes in full

    def hash_placed(mine: FolderReader, path: bytes | str) -> HashResult | None:
        """hash_file of ``path`` opened in its folder's verified descriptor; None if that folder
        is gone, or is (or is below) a folder swapped for a symlink: nothing there is read."""
        try:
            where = mine.place_any(os.fsdecode(path))
        except FolderRefused as e:
            log.debug("not hashing %s: %s", os.fsdecode(path), e)
            return None
        if where is None:
            return None
        d, name = where
        if skip_sparse:
            return hash_file(name, dir_fd=d, skip_sparse=True)
        return hash_file(name, dir_fd=d)  # an unbudgeted run reads as it always did

    def worker(items):
        if background:
            _background.on = True
            lower_this_thread()
        # Results go back in small batches, not one queue hand-off per file: each hand-off wakes
        # the caller's thread, which then contends with this one for the interpreter lock
        # (20,000 small files: ~0.4 s of waiting, docs/benchmarks.md section 9).
        batch: list = []
        last = time.monotonic()
        mine = FolderReader(reader.roots, max_open=THREAD_FOLDERS)
        try:
            for iid, path, size, dev, ino in items:
                if stop.is_set():
                    return
                if not budget.take(size):
                    batch.append((iid, _DEFERRED, size))
                else:
                    try:
                        res = hash_placed(mine, path)
                    except SparseFile as e:
                        budget.give_back(size)
                        batch.append((iid, _SPARSE, e))
                    except OSError as e:
                        batch.append((iid, None, e))
                    except BaseException as e:
                        batch.append((iid, None, e))
                        return
                    else:
                        # The file opened must be the inode located: a path string is not identity.
                        same = res is not None and (res.before.st_dev, res.before.st_ino) == (dev, ino)
                        batch.append((iid, res, path) if same else (iid, None, None))
                now = time.monotonic()
                if len(batch) >= RESULT_BATCH or now - last >= RESULT_INTERVAL:
                    results.put(batch)
                    batch, last = [], now
        finally:
            mine.close()
            if batch:
                results.put(batch)

    from concurrent.futures import ThreadPoolExecutor  # only a run that hashes needs the pool

    readers = [part for items in todo.values() for part in _split_small(items)]
    with ThreadPoolExecutor(max_workers=min(len(readers), READER_THREADS), thread_name_prefix="hash") as ex:
        for items in readers:
            ex.submit(worker, items)
        try:
            while done < total:
                for iid, res, extra in results.get():  # extra: bytes deferred, the error, or the path read
                    done += 1
                    if res is _DEFERRED:
                        report.deferred.append(iid)
                        report.deferred_bytes += extra
                        meter.skip(extra)
                        continue
                    if res is _SPARSE:
                        if not report.sparse:
                            sparse_seen = extra  # the example a person is shown
                        report.sparse.append(iid)
                        meter.skip(extra.st.st_size)
                        continue
                    if isinstance(extra, BaseException) and not isinstance(extra, OSError):
                        raise extra
                    if res is None:
                        report.missing.append(iid)
                        continue
                    report.bytes_read += res.after.st_size
                    meter.add(res.after.st_size)
                    if res.settled(settle_seconds):
                        hashed.append((iid, res.digest, res.after))
                        report.hashed += 1
                        if keep_digests:
                            report.digests[iid] = (res.digest, extra, res.after)
                    else:
                        stats.append((iid, res.after))
                        report.unsettled.append(iid)
                    now = time.monotonic()
                    if now - last_log >= LOG_INTERVAL:
                        last_log = now
                        log.info("hashing: %d/%d files, %s", done, total, meter.line())
                    if progress is not None:
                        progress.update(done, f"hashing {done:,}/{total:,} files, {meter.line()}")
                if len(hashed) + len(stats) >= STORE_BATCH or time.monotonic() - last_store >= STORE_INTERVAL:
                    store()
        finally:
            stop.set()
            store()
    left = (
        (
            f"; {len(report.deferred):,} files ({report.deferred_bytes / 2**30:.2f} GiB) left for the next run: "
            f"hash budget of {budget.limit / 2**30:.2f} GiB spent"
        )
        if report.deferred
        else ""
    )
    if report.deferred:
        log.info("hashing stopped at the budget%s", left)
    if report.sparse:
        left += f"; {len(report.sparse):,} sparse files not read (e.g. {sparse_seen})"
        log.info(
            "not hashed: %d files mostly holes, whose read would cost their whole apparent size "
            "(e.g. %s); they stay unhashed, as files not settled",
            len(report.sparse),
            sparse_seen,
        )
    if progress is not None:
        progress.done(
            f"hashed {report.hashed:,} files ({report.bytes_read / 2**30:.2f} GiB, {meter.rate_text()}){left}"
        )
    return report


_DEFERRED = object()
_SPARSE = object()


def _split_small(items: list) -> list[list]:
    """One filesystem's files as reading threads: its big files in order on one thread (one
    sequential reader per device), its small files (< SMALL_FILE) shared by SMALL_READERS threads.

    Reading a small file is mostly round trips (open, fstat, a read or two, close), not transfer:
    on zfs-fuse each is a request to the daemon, and a second reader keeps it busy while the
    first waits (2,000 pairs: the hashing's wall time, docs/benchmarks.md section 9). A disk
    seeks per small file anyway; two outstanding requests let it order them."""
    small = [it for it in items if it[2] < SMALL_FILE]
    if len(small) < 2 * RESULT_BATCH:
        return [items]
    big = [it for it in items if it[2] >= SMALL_FILE]
    return [part for part in ([big] + [small[k::SMALL_READERS] for k in range(SMALL_READERS)]) if part]
