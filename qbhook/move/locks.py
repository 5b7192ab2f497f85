"""Advisory locks: one executor per catalog, one writer per payload group (lesson 11).

``flock`` locks belong to an open file and vanish with the process that held
them, so a crash never leaves a stale lock behind; the pid written into the
file is only there to name the holder in the error message. Lock files are
never deleted: unlinking a flock file lets two processes lock two different
inodes under one name.

A batch of same-pool convergence groups holds one ``converge_lock`` for its pool
instead of one group lock per group (10,000 lock files cost a second of a 2-second
job). That keeps the rule: every writer of a group is an executor, which holds the
executor lock for its whole run, so no other writer can touch a converging group
meanwhile; the converge lock only names what the batch is doing to whoever waits.

The lock folder is checked before any lock file in it is used (``_open_lock_dir``): opened
``O_DIRECTORY|O_NOFOLLOW`` (its own name is not followed; the folders above it are admin
config, followed as given), and judged on the fstat of that descriptor. It must not be a
symlink, and must be owned by this user or root and writable by no one else: a user who can
write it can rename ``executor.lock`` away and put their own file at the name, and the next
executor then locks another inode while the first still runs (two executors at once). It is
refused otherwise (``LockFolderUnsafe``, exit 78), except the folder qbhook makes itself
(``<catalog>.locks``, no ``lock_dir``): made 0700, and one an older qbhook made with the umask
(0775 under umask 002) is narrowed to 0700 through that descriptor when it is this user's, since
it was qbhook that made it so.

Each lock file is then opened relative to that checked descriptor, without following a symlink,
mode 0600, and must be a regular file with one link of this user's own (``qbhook.lockfile``, the
rule notify's outbox locks keep too; ``_open_lock_file`` words its refusals); one an older
qbhook made 0644 is narrowed to 0600. ``flock`` works on a read-only descriptor: any user who
could open a lock file for reading could hold it, and stop every executor ("pid unknown").
qbhook often runs as root, and writing the pid truncates the file: a symlink or hard link
at the name must never be followed to another file.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from pathlib import Path

import blake3

from qbhook.dirfd import DIR_FLAGS
from qbhook.errors import CatalogFolderUnsafe, LockBusy, LockFileError, LockFolderUnsafe, UnsafeOperation
from qbhook.lockfile import NotALockFile, flock_within, loose_folder, open_lock_file

__all__ = ["Lock", "converge_lock", "executor_lock", "group_lock", "lock_dir"]


def lock_dir(cfg) -> Path:
    """``lock_dir`` from the config, else ``<catalog>.locks`` beside the catalog (one set per catalog)."""
    if getattr(cfg, "lock_dir", None):
        return Path(cfg.lock_dir)
    cat = Path(cfg.catalog)
    return cat.with_name(cat.name + ".locks")


class Lock:
    """An exclusive flock on ``path``; a context manager. ``wait``: False, True or seconds.
    ``own_folder``: the folder is qbhook's own (``<catalog>.locks``): made 0700, and narrowed to
    0700 when it is looser and this user's; any other folder is refused when loose."""

    def __init__(
        self,
        path: str | os.PathLike,
        what: str,
        wait: bool | float = False,
        sleep=time.sleep,
        clock=time.monotonic,
        *,
        own_folder: bool = False,
    ):
        self.path = Path(path)
        self.what = what
        self.wait = wait
        self.own_folder = own_folder
        self._sleep = sleep
        self._clock = clock
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> Lock:
        if self._fd is not None:
            raise RuntimeError(f"{self.what} is already held by this object")
        dir_fd = _open_lock_dir(self.path.parent, self.own_folder)
        try:
            fd = _open_lock_file(self.path, dir_fd)
        finally:
            os.close(dir_fd)
        try:
            self._lock(fd)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {time.time():.0f}\n".encode(), 0)
            except OSError as e:
                raise LockFileError(f"cannot write lock file {self.path}: {e.strerror}", hint=_HINT) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _lock(self, fd: int) -> None:
        wait = None if self.wait is True else float(self.wait)  # False: 0.0, one try
        if not flock_within(fd, wait, clock=self._clock, sleep=self._sleep):
            raise LockBusy(
                f"{self.what} is held by {self._holder(fd)}",
                hint="wait for it to finish, or check that process",
            )

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            text = os.pread(fd, 200, 0).decode(errors="replace").split()
        except OSError:
            text = []
        if not text:
            return "another process (pid unknown)"
        host = f" on {text[1]}" if len(text) > 1 and text[1] != socket.gethostname() else ""
        return f"pid {text[0]}{host}"

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale pid for the next reader
        except OSError:
            pass
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


_HINT = "lock_dir (default: beside the catalog) must be a folder qbhook can write"
_LINK_HINT = "name the real folder in lock_dir, not a symbolic link to it (or remove the link)"


def _open_lock_dir(path: Path, own_folder: bool) -> int:
    """A descriptor of the lock folder ``path`` (made 0700 if missing), checked as the module
    docstring says: the folder every lock file is then opened in. LockFileError naming it when it
    cannot be made or opened; LockFolderUnsafe when it is loose or a symbolic link (exit 78, as the
    README says: a setup problem, the config must name the real folder)."""
    if own_folder:
        _check_catalog_folder(path.parent)
    _make_lock_dir(path)
    try:
        fd = os.open(path, DIR_FLAGS)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # Linux says ENOTDIR for a symlink here
            if e.errno == errno.ELOOP or os.path.islink(path):
                raise LockFolderUnsafe(path, "it is a symbolic link", hint=_LINK_HINT) from None
            raise LockFileError(f"cannot use lock folder {path}: it is not a folder", hint=_HINT) from None
        raise LockFileError(f"cannot open lock folder {path}: {e.strerror}", hint=_HINT) from None
    try:
        _check_lock_dir(fd, path, own_folder)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_lock_dir(fd: int, path: Path, own_folder: bool) -> None:
    """Refuse (LockFolderUnsafe) the opened lock folder unless this user or root owns it and no
    one else can write it; qbhook's own folder, when this user's, is narrowed to 0700 instead."""
    st = os.fstat(fd)
    if own_folder and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
        try:
            os.fchmod(fd, 0o700)
        except OSError as e:
            raise LockFileError(f"cannot make lock folder {path} private (0700): {e.strerror}", hint=_HINT) from None
        return
    if why := loose_folder(st):
        raise LockFolderUnsafe(path, why[0])


def _check_catalog_folder(path: Path) -> None:
    """Refuse (CatalogFolderUnsafe) the folder holding qbhook's own lock folder (the catalog's,
    no ``lock_dir``) by the lock folder's rule (``lockfile.loose_folder``): another user who can
    write it renames ``<catalog>.locks`` away while an executor holds its lock, and the next one
    makes a new folder and runs beside the first. Followed, as the catalog path is opened; never
    chmod-ed: an admin made it. One that cannot be opened is left to the lock folder's errors."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        why = loose_folder(os.fstat(fd))
    finally:
        os.close(fd)
    if why:
        raise CatalogFolderUnsafe(path, why[0])


def _make_lock_dir(path: Path) -> None:
    """The lock folder, made 0700 if missing; LockFileError naming it and the cause if it cannot
    be (a read-only or immutable parent, a regular file at that name): one line, not a traceback."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:  # exist_ok still raises this when the name is not a folder
        if path.is_symlink():  # dangling, or to a file: a symlink all the same (exit 78, as above)
            raise LockFolderUnsafe(path, "it is a symbolic link", hint=_LINK_HINT) from None
        raise LockFileError(f"cannot use lock folder {path}: it is not a folder", hint=_HINT) from None
    except OSError as e:
        raise LockFileError(f"cannot make lock folder {path}: {e.strerror}", hint=_HINT) from None


def _open_lock_file(path: Path, dir_fd: int) -> int:
    """``path`` opened by the lock-file rule (``lockfile.open_lock_file``: read-write, made 0600 if
    missing, a regular file with one link of this user's own), by its name relative to the checked
    lock folder ``dir_fd``, its refusals worded for this module.

    A symlink or a hard link at that name would make the pid write (and the truncate on release)
    land on a file that is not qbhook's; anything but a regular file is not a lock file.
    UnsafeOperation naming the path, one line; any other failure to open it, LockFileError."""
    try:
        return open_lock_file(path.name, 0o600, own=True, dir_fd=dir_fd)
    except NotALockFile as e:
        st = e.st
        if not stat.S_ISREG(st.st_mode):
            what = "not a regular file"
        elif st.st_uid != os.geteuid():  # another user's file is that user's to hold
            what = f"owned by uid {st.st_uid}, not this user"
        else:
            what = f"a file with {st.st_nlink} links"
    except OSError as e:
        what = {errno.ELOOP: "a symbolic link", errno.EISDIR: "a folder"}.get(e.errno)
        if what is None:  # a read-only or immutable lock folder (EACCES, EPERM, EROFS), a full disk
            raise LockFileError(f"cannot open lock file {path}: {e.strerror}", hint=_HINT) from None
    raise UnsafeOperation(f"refusing to use lock file {path}: it is {what} (lock_dir must not be writable by others)")


def executor_lock(cfg, wait: bool | float = False, **kw) -> Lock:
    """One executor per catalog: apply and resume both take it."""
    return Lock(lock_dir(cfg) / "executor.lock", "the qbhook executor lock", wait, own_folder=_own(cfg), **kw)


def group_lock(cfg, group_id: str, wait: bool | float = False, **kw) -> Lock:
    """One writer per payload group (executor, event worker, sweeper)."""
    # Group ids are free-form; a digest keeps the file name short and free of '/'.
    safe = "".join(c for c in str(group_id)[:40] if c.isalnum() or c in "-_")
    digest = blake3.blake3(str(group_id).encode()).hexdigest()[:16]
    name = f"group-{safe}-{digest}.lock"
    return Lock(lock_dir(cfg) / name, f"the lock of group {group_id}", wait, own_folder=_own(cfg), **kw)


def converge_lock(cfg, pool: str, wait: bool | float = False, **kw) -> Lock:
    """One batch of same-pool convergence groups on ``pool`` (see the module docstring)."""
    safe = "".join(c for c in str(pool)[:40] if c.isalnum() or c in "-_")
    digest = blake3.blake3(str(pool).encode()).hexdigest()[:16]
    name = f"converge-{safe}-{digest}.lock"
    return Lock(lock_dir(cfg) / name, f"the converge lock of pool {pool}", wait, own_folder=_own(cfg), **kw)


def _own(cfg) -> bool:
    """The lock folder is qbhook's own (``<catalog>.locks``), not an admin's ``lock_dir``."""
    return not getattr(cfg, "lock_dir", None)
