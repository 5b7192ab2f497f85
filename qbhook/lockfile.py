"""Opening and flocking a lock file that qbhook makes in a folder others may be able to write.

The model, one rule for every lock file (``move.locks``' executor, group and converge locks,
``notify``'s outbox locks):

* The name is opened read-write, made if missing with the caller's mode, ``O_NOFOLLOW`` (a
  symbolic link planted there fails with ELOOP instead of being followed), ``O_NONBLOCK`` (a
  FIFO planted there opens at once, then is refused, instead of hanging) and ``O_CLOEXEC``.
* What was opened is judged on the fstat of that very descriptor, never on the name again: a
  regular file with one link and, when asked (``own``), this user's own (``files.own_file``).
  qbhook often runs as root: a link at the name would make a write through the lock (the pid
  ``move.locks`` writes truncates it first) land on a file that is not qbhook's, and another
  user's lock file is that user's to hold. A lock file of this user's own that is open to more
  than ``mode`` (one an older qbhook made 0644) is narrowed to ``mode`` on that descriptor:
  ``flock`` works on a read-only descriptor, so any user who can read a lock file can hold it.
* The name may be opened relative to a folder descriptor the caller checked (``dir_fd``), so the
  folder judged is the folder the name is looked up in.
* The exclusive flock is tried without blocking and tried again, the pause doubling up to a
  bound, until the wait is over (``flock_within``); no wait at all is one try.
* Lock files are never deleted: unlinking a flock file lets two processes lock two different
  inodes under one name.

Nothing here words an error for a person: each caller keeps its own. A failure to open is the
``OSError`` as the kernel gave it (ELOOP: a symbolic link; EISDIR: a folder); a file refused is
``NotALockFile``, carrying its fstat for the caller's message; a lock still held when the wait
is over is ``False``.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time

from qbhook.files import own_file

__all__ = ["MAX_POLL_S", "POLL_S", "NotALockFile", "flock_within", "loose_folder", "open_lock_file"]

POLL_S = 0.05  # the first pause between two tries of a held lock
MAX_POLL_S = 0.5  # ... doubling up to this
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotALockFile(Exception):
    """What is at the name is not a lock file qbhook may use; ``st`` is the fstat of what was
    opened (closed again), for the caller's message."""

    def __init__(self, path: str | os.PathLike, st: os.stat_result):
        super().__init__(f"{os.fsdecode(path)} is not a lock file qbhook may use")
        self.path = path
        self.st = st


def loose_folder(st: os.stat_result) -> list[str]:
    """Why another user could swap a name in the folder ``st`` is the stat of, or nothing: it is
    not this user's or root's (its owner can chmod it), or its mode lets group or others write it
    (sticky or not: under a sticky bit another user still makes a name first that qbhook would
    make, a lock file to hold or a folder at its lock folder's name). The one rule for a
    folder qbhook's locks depend on: ``move.locks`` refuses such a lock folder, and the catalog's
    folder holding qbhook's own lock folder, when a lock is taken; ``config check`` names them."""
    why = []
    if st.st_uid not in (0, os.geteuid()):
        why.append(f"it is owned by uid {st.st_uid}, not this user or root")
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        why.append(f"its mode {mode:04o} lets other users write it")
    return why


def open_lock_file(path: str | os.PathLike, mode: int, *, own: bool = False, dir_fd: int | None = None) -> int:
    """A descriptor of ``path`` (relative to ``dir_fd`` when given) opened read-write (made if
    missing, ``mode``), proven a regular file with one link, and this user's own when ``own``
    (then narrowed to ``mode`` if it is more open); see the module docstring for the rule.
    NotALockFile when it is not; any failure to open it (or to narrow it), the OSError as is."""
    fd = os.open(path, _FLAGS, mode, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (own_file(st) if own else st.st_nlink != 1):
            raise NotALockFile(path, st)
        if own and stat.S_IMODE(st.st_mode) & ~mode:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def flock_within(
    fd: int, wait: float | None, *, clock=time.monotonic, sleep=time.sleep, max_poll: float = MAX_POLL_S
) -> bool:
    """Take an exclusive flock on ``fd``, waiting at most ``wait`` seconds (0: one try; None: as
    long as it takes, in the kernel). False when another holder still has it then."""
    if wait is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = clock() + wait
    delay = POLL_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if clock() >= deadline:
                return False
        sleep(delay)
        delay = min(delay * 2, max_poll)
