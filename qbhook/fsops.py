"""Thin filesystem adapter: the only code that puts bytes on a pool or takes names off it.

Every function takes host paths and re-checks the world right before it acts,
because a plan is only as true as the moment it was made. Each one is
idempotent: run twice (a resume after a crash), the second run finds the work
done and says so instead of doing it again or failing.

Errors: ``UnsafeOperation`` when the world disagrees with the plan (a
different file already sits at the destination, an unknown hardlink
appeared), ``VerificationFailed`` when content or size does not match,
``OSError`` for plain I/O failures (ENOSPC, EIO). None of them leaves a
partial file or touches a source.
"""

from __future__ import annotations

from qbhook.units import human_bytes as _human

import ctypes
import ctypes.util
import errno
import os
import queue
import shutil
import stat as stat_mod
import threading
import time

import blake3

from qbhook import hashing
from qbhook.errors import UnsafeOperation, VerificationFailed

__all__ = [
    "STAGING_DIR", "HOLDING_DIR", "COPY_BUF",
    "copy_verified", "link_into", "make_empty", "verify_file", "file_matches",
    "safe_unlink", "prune_empty_dirs", "purge_holding", "holding_path", "sync_filesystem", "pid_alive",
]

# Both names are in ScanConfig.ignore_names, so the scanner never catalogues them.
STAGING_DIR = ".qbhook-staging"
HOLDING_DIR = ".qbhook-holding"
COPY_BUF = 8 * 1024 * 1024
NAME_MAX = 255
# A hash computed while the file's mtime is this fresh could miss a write in the
# same timestamp tick; such a hash is used for the decision but not cached.
CACHE_MIN_AGE_S = 2.0


# --------------------------------------------------------------------------- small helpers


def _p(path) -> str | bytes:
    return os.fspath(path)


def _lstat(path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def _fsync_dir(path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quiet(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rmdir_quiet(path) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def _within(child: str, parent: str) -> bool:
    child, parent = os.fsdecode(child), os.fsdecode(parent)
    parent = parent.rstrip("/") or "/"
    return child == parent or child.startswith(parent + "/")


def _real_entry(path) -> str:
    """Real path of a directory entry without following the entry itself (it may be a symlink)."""
    path = os.fsdecode(_p(path))
    return os.path.join(os.path.realpath(os.path.dirname(path) or "."), os.path.basename(path))


def _entry_id(path) -> tuple[int, int, str] | None:
    """(dev, inode of the folder, name): one directory entry, however its path is spelled.

    Two spellings of one link (a bind mount such as /data/media vs /stash/data/media,
    lesson 5) collapse to one id, so they can never be counted as two links.
    """
    path = os.fsdecode(_p(path))
    try:
        d = os.stat(os.path.dirname(path) or ".")
    except OSError:
        return None
    return (d.st_dev, d.st_ino, os.path.basename(path))


def _makedirs(path) -> None:
    """mkdir -p, each new folder owned and moded like its nearest existing parent.

    qbhook usually runs as root while qBittorrent runs as its own user: a root-owned
    0755 folder in a seeding tree would stop qBittorrent from renaming or deleting there.
    """
    path = os.fsencode(_p(path))
    missing = []
    cur = path
    while True:
        try:
            st = os.stat(cur)
            break
        except FileNotFoundError:
            missing.append(cur)
            parent = os.path.dirname(cur)
            if parent == cur:
                raise
            cur = parent
    if not stat_mod.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, f"{os.fsdecode(cur)} is not a folder")
    for d in reversed(missing):
        try:
            os.mkdir(d, stat_mod.S_IMODE(st.st_mode))
        except FileExistsError:
            continue
        _own_like(d, st)


def _own_like(path, st: os.stat_result, mode: int | None = None) -> None:
    if os.geteuid() == 0:
        try:
            os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        except OSError:
            pass
    # mkdir's mode went through the umask; set it exactly (chown may also have cleared set-id bits).
    os.chmod(path, stat_mod.S_IMODE(st.st_mode) if mode is None else mode)


def _digest(hex_or_bytes, size: int) -> bytes:
    if isinstance(hex_or_bytes, (bytes, bytearray)):
        return bytes(hex_or_bytes)
    if hex_or_bytes is None:
        if size == 0:
            return hashing.EMPTY_HASH
        raise UnsafeOperation("no content hash given for a non-empty file: refusing to act without a content identity")
    try:
        return bytes.fromhex(hex_or_bytes)
    except ValueError:
        raise UnsafeOperation(f"not a BLAKE3 hex digest: {hex_or_bytes!r}") from None




# --------------------------------------------------------------------------- content identity


def _cached_digest(catalog, path, st: os.stat_result):
    """(inode row id, valid cached digest or None) for the inode ``st`` describes."""
    if catalog is None:
        return None, None
    fs = catalog.fs_for_path(path, st.st_dev)
    row = catalog.inode_by_key(fs, st.st_ino)
    if row is None:
        return None, None
    # The row's hash is valid for the stat it recorded; the live file must still have that stat.
    if row.hash is not None and (row.size, row.mtime_ns, row.ctime_ns) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
        return row.id, bytes(row.hash)
    return row.id, None


def _content_digest(path, st: os.stat_result, catalog) -> bytes:
    """BLAKE3 of the inode at ``path``: the catalog's valid cached hash, else read the file."""
    if st.st_size == 0:
        return hashing.EMPTY_HASH
    row_id, cached = _cached_digest(catalog, path, st)
    if cached is not None:
        return cached
    res = hashing.hash_file(path)
    if res.before.st_ino != st.st_ino or not res.stable:
        raise VerificationFailed(f"{os.fsdecode(path)} changed while it was being hashed; try again when it is quiet")
    if row_id is not None and res.settled(CACHE_MIN_AGE_S):
        catalog.store_hash(row_id, res.digest, res.after)
    return res.digest


def _check_file(path, size: int, expected: bytes, catalog) -> str | None:
    """None if ``path`` is a regular file with that size and content, else why not."""
    st = _lstat(path)
    name = os.fsdecode(path)
    if st is None:
        return f"{name} is missing"
    if not stat_mod.S_ISREG(st.st_mode):
        return f"{name} is not a regular file"
    if st.st_size != size:
        return f"{name} has {st.st_size} bytes, expected {size}"
    digest = _content_digest(path, st, catalog)
    if digest != expected:
        return f"{name} has different content (blake3 {digest.hex()[:16]}..., expected {expected.hex()[:16]}...)"
    return None


def verify_file(path, size: int, blake3_hex, catalog=None) -> bool:
    """True if ``path`` holds exactly the expected content; VerificationFailed (saying why) otherwise.

    Uses the catalog's cached hash of the inode when it is still valid for the
    live stat, so verifying a freshly copied or linked view costs a stat, not a read.
    """
    problem = _check_file(path, size, _digest(blake3_hex, size), catalog)
    if problem:
        raise VerificationFailed(problem)
    return True


def file_matches(path, size: int, blake3_hex, catalog=None) -> bool:
    """Like verify_file but answers False instead of raising (missing counts as no match)."""
    return _check_file(path, size, _digest(blake3_hex, size), catalog) is None


# --------------------------------------------------------------------------- copy


def _staging_name(name: bytes) -> bytes:
    prefix = b"%d." % os.getpid()
    return prefix + name[: NAME_MAX - len(prefix)]


def _clean_stale_staging(staging_dir: bytes, name: bytes) -> None:
    """Remove leftovers of earlier attempts at this destination (lesson 7: staging never lingers).

    A leftover belongs to a dead process, or to this one (one copy per destination at a
    time, under the group lock). A live other process's file is left alone.
    """
    try:
        entries = os.listdir(staging_dir)
    except FileNotFoundError:
        return
    me = os.getpid()
    for entry in entries:
        pid_s, dot, rest = entry.partition(b".")
        if not dot or not pid_s.isdigit() or rest != name[: NAME_MAX - len(pid_s) - 1]:
            continue
        pid = int(pid_s)
        if pid == me or not pid_alive(pid):
            _unlink_quiet(os.path.join(staging_dir, entry))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_free_space(folder, need: int) -> None:
    try:
        vfs = os.statvfs(folder)
    except OSError:
        return
    free = vfs.f_bavail * vfs.f_frsize
    if free < need:
        raise OSError(errno.ENOSPC, f"not enough space on the filesystem of {os.fsdecode(folder)}: "
                                    f"needs {_human(need)}, {_human(free)} free")


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _copy_hashing(src_fd: int, dst_fd: int) -> tuple[bytes, int]:
    # Why userspace read+hash+write and not copy_file_range/sendfile:
    # copy_file_range never shows the bytes to userspace, so verifying would need a
    # second full read of the staged file. Right after the write that read-back is
    # served from the page cache / ARC (it proves little about the platters) and,
    # for files larger than the cache, costs a whole extra pass on an HDD pool.
    # Hashing the very buffer handed to write() proves the bytes qbhook wrote are the
    # planned content, in one sequential pass per disk; what happens to them below
    # write() is ZFS's job (block checksums), and fsync makes it durable. The
    # memcpy into userspace is noise next to disk throughput. (readback=True adds the
    # second pass for anyone who wants it.)
    # Reading+hashing buffer i overlaps writing buffer i-1 (a writer thread; both sides
    # release the GIL). A buffer is never refilled before its write returned, so the bytes
    # hashed are exactly the bytes written.
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    try:
        os.posix_fadvise(src_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except (OSError, AttributeError):
        pass
    free: queue.Queue = queue.Queue()
    full: queue.Queue = queue.Queue()
    for _ in range(3):
        free.put(bytearray(COPY_BUF))
    failure: list[BaseException] = []

    def writer() -> None:
        while (item := full.get()) is not None:
            buf, n = item
            try:
                if not failure:
                    _write_all(dst_fd, memoryview(buf)[:n])
            except BaseException as e:  # noqa: BLE001 - handed to the reading thread
                failure.append(e)
            free.put(buf)

    t = threading.Thread(target=writer, name="qbhook-copy-writer", daemon=True)
    t.start()
    total = 0
    try:
        while not failure:
            buf = free.get()
            n = os.readv(src_fd, [buf])
            if not n:
                free.put(buf)
                break
            h.update(memoryview(buf)[:n])
            full.put((buf, n))
            total += n
    finally:
        full.put(None)
        t.join()
    if failure:
        raise failure[0]
    return h.digest(), total


def _copy_metadata(sst: os.stat_result, dst_fd: int) -> None:
    if os.geteuid() == 0:
        try:
            os.fchown(dst_fd, sst.st_uid, sst.st_gid)   # before chmod: chown clears set-id bits
        except OSError:
            pass
    os.fchmod(dst_fd, stat_mod.S_IMODE(sst.st_mode))
    os.utime(dst_fd, ns=(sst.st_atime_ns, sst.st_mtime_ns))


def _existing_copy(dst, st: os.stat_result, size: int, expected: bytes, catalog) -> dict:
    name = os.fsdecode(dst)
    if not stat_mod.S_ISREG(st.st_mode):
        raise UnsafeOperation(f"different content at {name}: it exists and is not a regular file")
    if st.st_size != size or _content_digest(dst, st, catalog) != expected:
        raise UnsafeOperation(f"different content at {name}: refusing to overwrite it",
                              hint="the plan is stale or something else wrote there; re-plan")
    return {"status": "present", "bytes_written": 0, "blake3": expected.hex()}


def copy_verified(src, dst, expected_blake3_hex, expected_size: int, *, catalog=None,
                  readback: bool = False) -> dict:
    """Copy ``src`` to ``dst`` (usually another pool), proving the bytes are the planned content.

    The data goes to ``<dst folder>/.qbhook-staging/<pid>.<name>`` (same folder, so the
    same dataset: the final link is atomic), is hashed while copied, fsynced, gets the
    source's mode, owner and mtime, and only then is hardlinked to ``dst`` - link()
    never replaces an existing name, rename() would. Returns ``{status: copied|present,
    bytes_written, blake3}``. Any failure removes the staged file; the source is only read.
    """
    src_b, dst_b = os.fsencode(_p(src)), os.fsencode(_p(dst))
    expected = _digest(expected_blake3_hex, expected_size)
    st = _lstat(dst_b)
    if st is not None:
        return _existing_copy(dst_b, st, expected_size, expected, catalog)

    parent, name = os.path.split(dst_b)
    _makedirs(parent)
    staging_dir = os.path.join(parent, STAGING_DIR.encode())
    staged = None
    src_fd = os.open(src_b, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        sst = os.fstat(src_fd)
        if not stat_mod.S_ISREG(sst.st_mode):
            raise UnsafeOperation(f"copy source {os.fsdecode(src_b)} is not a regular file")
        if sst.st_size != expected_size:
            raise VerificationFailed(f"copy source {os.fsdecode(src_b)} has {sst.st_size} bytes, the plan says "
                                     f"{expected_size}: it changed since planning")
        os.makedirs(staging_dir, exist_ok=True)
        if os.lstat(staging_dir).st_dev != os.lstat(parent).st_dev:
            raise UnsafeOperation(f"{os.fsdecode(staging_dir)} is on another filesystem than its folder")
        _clean_stale_staging(staging_dir, name)
        _check_free_space(staging_dir, expected_size)
        candidate = os.path.join(staging_dir, _staging_name(name))
        dst_fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        staged = candidate
        try:
            digest, written = _copy_hashing(src_fd, dst_fd)
            if written != expected_size or digest != expected:
                raise VerificationFailed(
                    f"copy of {os.fsdecode(src_b)} does not match the plan: read {written} bytes with blake3 "
                    f"{digest.hex()[:16]}..., expected {expected_size} bytes with {expected.hex()[:16]}...",
                    hint="the source changed or is damaged; nothing was written to the destination")
            _copy_metadata(sst, dst_fd)
            os.fsync(dst_fd)
        finally:
            os.close(dst_fd)
        if readback:
            _readback(staged, expected)
        try:
            os.link(staged, dst_b, follow_symlinks=False)
        except FileExistsError:
            # Someone else put a file there while we copied: same content is fine, anything else is not ours.
            result = _existing_copy(dst_b, os.lstat(dst_b), expected_size, expected, catalog)
        else:
            result = {"status": "copied", "bytes_written": written, "blake3": expected.hex()}
        os.unlink(staged)
        staged = None
        _fsync_dir(parent)
        return result
    except BaseException:
        if staged is not None:
            _unlink_quiet(staged)
        raise
    finally:
        os.close(src_fd)
        _rmdir_quiet(staging_dir)


def _readback(path, expected: bytes) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)   # read the disk, not the cache (best effort)
        except (OSError, AttributeError):
            pass
        digest = hashing.hash_fd(fd)
    finally:
        os.close(fd)
    if digest != expected:
        raise VerificationFailed(f"read-back of {os.fsdecode(path)} does not match what was written")


# --------------------------------------------------------------------------- link / empty


def link_into(src, dst, *, size: int | None = None, blake3_hex=None, catalog=None) -> dict:
    """Hardlink ``dst`` to the inode at ``src`` (same dataset), creating folders.

    Returns ``{status: linked|already|present}``: ``already`` if ``dst`` is that inode,
    ``present`` if it is another inode with the same content. Anything else at ``dst``
    raises UnsafeOperation.
    """
    src_b, dst_b = os.fsencode(_p(src)), os.fsencode(_p(dst))
    sst = _lstat(src_b)
    if sst is None:
        raise VerificationFailed(f"link source {os.fsdecode(src_b)} is missing")
    if not stat_mod.S_ISREG(sst.st_mode):
        raise UnsafeOperation(f"link source {os.fsdecode(src_b)} is not a regular file")
    if size is not None and sst.st_size != size:
        raise VerificationFailed(f"link source {os.fsdecode(src_b)} has {sst.st_size} bytes, expected {size}")
    for _attempt in range(2):
        st = _lstat(dst_b)
        if st is not None:
            if (st.st_dev, st.st_ino) == (sst.st_dev, sst.st_ino):
                return {"status": "already"}
            name = os.fsdecode(dst_b)
            if not stat_mod.S_ISREG(st.st_mode) or st.st_size != sst.st_size:
                raise UnsafeOperation(f"different content at {name}: refusing to replace it")
            want = _digest(blake3_hex, sst.st_size) if (blake3_hex is not None or sst.st_size == 0) \
                else _content_digest(src_b, sst, catalog)
            if _content_digest(dst_b, st, catalog) != want:
                raise UnsafeOperation(f"different content at {name}: refusing to replace it")
            return {"status": "present"}
        _makedirs(os.path.dirname(dst_b))
        try:
            os.link(src_b, dst_b, follow_symlinks=False)
        except FileExistsError:
            continue   # raced with another writer: judge what is there now
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise UnsafeOperation(f"cannot hardlink {os.fsdecode(src_b)} to {os.fsdecode(dst_b)}: "
                                      "different filesystems (the plan should have copied)") from None
            raise
        return {"status": "linked"}
    raise UnsafeOperation(f"{os.fsdecode(dst_b)} keeps changing under us")


def make_empty(dst) -> dict:
    """A zero-length file at ``dst``; never replaces an existing non-empty file (lesson 8)."""
    dst_b = os.fsencode(_p(dst))
    for _attempt in range(2):
        st = _lstat(dst_b)
        if st is not None:
            if stat_mod.S_ISREG(st.st_mode) and st.st_size == 0:
                return {"status": "present"}
            raise UnsafeOperation(f"different content at {os.fsdecode(dst_b)}: refusing to replace it with an empty file")
        _makedirs(os.path.dirname(dst_b))
        try:
            fd = os.open(dst_b, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue
        try:
            # Owned like its folder (qBittorrent's user), not like qbhook.
            _own_like(dst_b, os.stat(os.path.dirname(dst_b)), mode=0o644)
        finally:
            os.close(fd)
        return {"status": "created"}
    raise UnsafeOperation(f"{os.fsdecode(dst_b)} keeps changing under us")


# --------------------------------------------------------------------------- delete


def _fsid_matches(catalog, path, st: os.stat_result, fsid) -> bool:
    fs = catalog.fs_for_path(path, st.st_dev)
    if isinstance(fsid, int):
        return fs == fsid
    return catalog.fsid(fs) == fsid


def holding_path(path, seeding_root, run) -> str:
    """Where ``path`` waits out the grace period: ``<seeding root>/.qbhook-holding/<run>/<rel>``."""
    path = os.fsdecode(_p(path))
    root = os.fsdecode(_p(seeding_root)).rstrip("/")
    rel = os.path.relpath(path, root)
    return os.path.join(root, HOLDING_DIR, str(run), rel)


def _root_of(real_path: str, roots: list[tuple[str, str]]) -> str | None:
    """The real path of the seeding root holding ``real_path`` (never the root itself)."""
    for _given, real in roots:
        if _within(real_path, real) and real_path != real:
            return real
    return None


def safe_unlink(path, *, fsid, ino: int, keep_path, keep_blake3=None, seeding_links=(), seeding_roots=(),
                catalog, size: int | None = None, blake3_hex=None, keep_fsid=None, keep_ino: int | None = None,
                hold_run=None) -> dict:
    """Remove one old link of a payload file, only if every fact the plan relied on still holds.

    Right before acting, re-checks: ``path`` is inside a seeding root (real paths); it is
    still inode ``ino`` on filesystem ``fsid``; the inode has no link beyond the
    ``seeding_links`` that still exist (a library link that appeared since planning
    stops everything); its content is still the planned content; ``keep_path`` exists,
    is a different inode, has the same size and the verified same content.

    ``hold_run`` (grace period) moves the link into ``<root>/.qbhook-holding/<run>/``
    instead of unlinking it. A path that is already gone is a no-op.
    Returns ``{status: unlinked|held|absent, bytes_freed, nlink_before, dev}``.
    """
    path_s = os.fsdecode(_p(path))
    st = _lstat(path_s)
    if st is None:
        return {"status": "absent", "bytes_freed": 0}
    if not stat_mod.S_ISREG(st.st_mode):
        raise UnsafeOperation(f"refusing to delete {path_s}: not a regular file")

    real = _real_entry(path_s)
    roots = [(os.fsdecode(_p(r)).rstrip("/"), os.path.realpath(os.fsdecode(_p(r)))) for r in seeding_roots]
    root = _root_of(real, roots)
    if root is None:
        raise UnsafeOperation(f"refusing to delete {path_s}: not inside a seeding root "
                              f"({', '.join(r for r, _ in roots) or 'none configured'})")
    if f"/{HOLDING_DIR}/" in real:
        raise UnsafeOperation(f"refusing to delete {path_s}: it is in a holding folder")

    if st.st_ino != ino or not _fsid_matches(catalog, path_s, st, fsid):
        raise UnsafeOperation(f"refusing to delete {path_s}: it is no longer the planned file "
                              f"(inode {st.st_ino}, planned {ino} on {fsid})", hint="re-plan")
    if size is not None and st.st_size != size:
        raise UnsafeOperation(f"refusing to delete {path_s}: {st.st_size} bytes, planned {size}")

    # Every link of the inode must be one we know about; the holding copies of this
    # run's earlier deletes count as known (they are still links until purged).
    known = {os.fsdecode(_p(p)) for p in seeding_links} | {path_s}
    if hold_run is not None:
        for p in list(known):
            rp = _real_entry(p)
            r = _root_of(rp, roots)
            if r is not None:
                known.add(holding_path(rp, r, hold_run))
    entries = set()
    for p in known:
        if _root_of(_real_entry(p), roots) is None:
            continue   # a "seeding link" outside every seeding root is a library link, whatever the plan says
        pst = _lstat(p)
        if pst is not None and (pst.st_dev, pst.st_ino) == (st.st_dev, st.st_ino):
            eid = _entry_id(p)
            if eid is not None:
                entries.add(eid)
    if st.st_nlink > len(entries):
        raise UnsafeOperation(
            f"refusing to delete {path_s}: its inode has {st.st_nlink} links but only {len(entries)} are "
            f"known seeding links - something outside the seeding folders (a library?) links it now",
            hint="re-plan: the group must stay where its library is")

    planned_size = st.st_size if size is None else size
    want = _digest(keep_blake3 if keep_blake3 is not None else blake3_hex, planned_size)
    doomed = _digest(blake3_hex, planned_size) if blake3_hex is not None else want

    keep_s = os.fsdecode(_p(keep_path))
    kst = _lstat(keep_s)
    if kst is None:
        raise UnsafeOperation(f"refusing to delete {path_s}: the copy to keep, {keep_s}, is missing")
    if (kst.st_dev, kst.st_ino) == (st.st_dev, st.st_ino):
        raise UnsafeOperation(f"refusing to delete {path_s}: {keep_s} is the same inode, not a second copy")
    if keep_ino is not None and kst.st_ino != keep_ino:
        raise UnsafeOperation(f"refusing to delete {path_s}: {keep_s} is no longer inode {keep_ino}")
    if keep_fsid is not None and not _fsid_matches(catalog, keep_s, kst, keep_fsid):
        raise UnsafeOperation(f"refusing to delete {path_s}: {keep_s} is not on filesystem {keep_fsid}")
    if kst.st_size != st.st_size:
        raise UnsafeOperation(f"refusing to delete {path_s}: {keep_s} has {kst.st_size} bytes, it has {st.st_size}")
    problem = _check_file(keep_s, st.st_size, want, catalog)
    if problem:
        raise VerificationFailed(f"refusing to delete {path_s}: the copy to keep does not verify: {problem}")
    if _content_digest(path_s, st, catalog) != doomed:
        raise UnsafeOperation(f"refusing to delete {path_s}: its content changed since planning; "
                              "it is not what was copied", hint="re-plan")

    # Last look, as close to the unlink as Python gets: same inode, same link count.
    last = _lstat(path_s)
    if last is None:
        return {"status": "absent", "bytes_freed": 0}
    if (last.st_dev, last.st_ino, last.st_nlink) != (st.st_dev, st.st_ino, st.st_nlink):
        raise UnsafeOperation(f"refusing to delete {path_s}: it changed during the checks")

    if hold_run is not None:
        held = _hold(real, st, root, hold_run)
        return {"status": "held", "bytes_freed": 0, "nlink_before": st.st_nlink, "dev": st.st_dev, "held_at": held}
    os.unlink(path_s)
    return {"status": "unlinked", "bytes_freed": st.st_size if st.st_nlink == 1 else 0, "nlink_before": st.st_nlink,
            "dev": st.st_dev}


def _hold(path: str, st: os.stat_result, root: str, run) -> str:
    target = holding_path(path, root, run)
    run_dir = os.path.join(root, HOLDING_DIR, str(run))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.lstat(run_dir).st_dev != st.st_dev:
        raise UnsafeOperation(f"cannot hold {path}: {run_dir} is on another filesystem")
    try:
        os.link(path, target, follow_symlinks=False)
    except FileExistsError:
        tst = os.lstat(target)
        if (tst.st_dev, tst.st_ino) != (st.st_dev, st.st_ino):
            raise UnsafeOperation(f"cannot hold {path}: {target} already holds another file") from None
    os.unlink(path)
    os.utime(run_dir)   # purge_holding ages a run's folder by its mtime
    return target


def purge_holding(seeding_roots, older_than_s: float, *, now: float | None = None) -> list[str]:
    """Delete holding folders whose grace period is over; returns the folders removed."""
    now = time.time() if now is None else now
    removed = []
    for root in seeding_roots:
        base = os.path.join(os.fsdecode(_p(root)), HOLDING_DIR)
        try:
            runs = os.listdir(base)
        except FileNotFoundError:
            continue
        for name in runs:
            d = os.path.join(base, name)
            st = _lstat(d)
            if st is None or not stat_mod.S_ISDIR(st.st_mode):
                continue
            if now - st.st_mtime >= older_than_s:
                shutil.rmtree(d)
                removed.append(d)
        _rmdir_quiet(base)
    return removed


# --------------------------------------------------------------------------- folders


def prune_empty_dirs(root, stop_at) -> list[str]:
    """Remove empty folders at and below ``root``, then empty parents up to (never including) ``stop_at``.

    Only folders: os.rmdir fails on anything non-empty, so no file can go. Symlinks
    are never followed.
    """
    root_s = os.fsdecode(_p(root)).rstrip("/")
    stop_s = os.fsdecode(_p(stop_at)).rstrip("/")
    if not _within(os.path.realpath(root_s), os.path.realpath(stop_s)) or not _within(root_s, stop_s):
        raise UnsafeOperation(f"refusing to prune {root_s}: not inside {stop_s}")
    removed = []
    st = _lstat(root_s)
    if st is not None and stat_mod.S_ISDIR(st.st_mode):
        for dirpath, _dirs, _files in os.walk(root_s, topdown=False):
            if dirpath.rstrip("/") == stop_s:
                continue
            try:
                os.rmdir(dirpath)
                removed.append(dirpath)
            except OSError:
                pass
    cur = os.path.dirname(root_s)
    while cur != stop_s and _within(cur, stop_s) and cur not in ("", "/"):
        try:
            os.rmdir(cur)
        except OSError:
            break
        removed.append(cur)
        cur = os.path.dirname(cur)
    return removed


# --------------------------------------------------------------------------- durability


_libc = None


def sync_filesystem(path) -> None:
    """Flush the whole filesystem holding ``path`` (syncfs), so new links are on disk before old ones go."""
    global _libc
    fd = os.open(_p(path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            if _libc is None:
                _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if _libc.syncfs(fd) == 0:
                return
        except (OSError, AttributeError):
            pass
        os.sync()
    finally:
        os.close(fd)
