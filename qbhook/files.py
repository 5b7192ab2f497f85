"""Reading (and replacing) a file a person pointed qbhook at (the config, a secret file, a saved plan).

One rule for all of them: a regular file, opened without blocking, read up to a bound. A FIFO
nobody writes would block open() and read() forever, a device such as /dev/zero would never
end, and a file far larger than any such file can be is a wrong path, not input. What the name
is, is judged on the fstat of the opened descriptor (one resolution of the name, no window),
so the open itself must be harmless for anything: non-blocking, and never taking a terminal as
the controlling one. A symbolic link is followed (a config or secret file linked from /etc or a
secrets mount is ordinary, and the person running qbhook named it) except where ``nofollow``
says otherwise. Callers turn
the failure into their own error class (ConfigError, PlanFileError) with the message as is.

Replacing one (``plan --save FILE``) has its rule here too: qbhook writes a new file and renames
it over the name, so whatever was at the name is gone. That is only right for a regular file:
as root, ``--save /dev/null`` replaced /dev/null, and a FIFO another program reads from became a
file nobody reads (``check_replaceable``).

A file qbhook itself wrote in a folder others may write (the notification outbox) is read only
when it is still qbhook's own: this user's, with one link (``own_file``), judged on the fstat of
the very descriptor that is read. Judging the name afterwards (lstat) judges whatever a rename
put there meanwhile, not what was read.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = [
    "Missing",
    "NotReadable",
    "NotReplaceable",
    "check_replaceable",
    "decode_text",
    "kind",
    "own_file",
    "read_regular_file",
    "replace_file",
]


class NotReadable(Exception):
    """The path cannot be read as that file: the message says why, naming the path."""


class Missing(NotReadable):
    """Nothing at all is at the path (a dangling symlink is something: plain NotReadable)."""


def read_regular_file(path: str | os.PathLike, limit: int, *, nofollow: bool = False, own: bool = False) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (more is NotReadable).
    ``nofollow``: a symbolic link at ``path`` is NotReadable too (a file qbhook itself wrote, in
    a folder someone else may write: a link planted there must not make root read another file).
    ``own``: a file that is not this user's own (``own_file``) is NotReadable too."""
    # O_NOCTTY: a terminal named here is refused below, but without it merely opening one made
    # it the controlling terminal of a process that has none (serve under systemd: a session
    # leader), whose hangup then sends that process SIGHUP.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | (os.O_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        # the second look happens only on this error path, to tell "nothing there" from the rest
        kind = Missing if isinstance(e, FileNotFoundError) and not os.path.lexists(path) else NotReadable
        raise kind(f"cannot read {os.fsdecode(path)}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise NotReadable(f"cannot read {os.fsdecode(path)}: Is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise NotReadable(f"{os.fsdecode(path)} is not a regular file")
        why = own_file(st) if own else None
        if why:
            raise NotReadable(f"{os.fsdecode(path)} {why}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise NotReadable(f"cannot read {os.fsdecode(path)}: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise NotReadable(f"{os.fsdecode(path)} is larger than {_size(limit)}: not a file qbhook reads")
    return data


def own_file(st: os.stat_result) -> str | None:
    """None when ``st`` (an fstat) is a file this user made and alone names; else why not, for a
    message (``is owned by uid 1000, not this user``). Another user's file says what that user
    wants said; a second link may be a file that is not qbhook's at all (a hard link to another)."""
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not this user"
    if st.st_nlink != 1:
        return f"has {st.st_nlink} links, not one"
    return None


class NotReplaceable(Exception):
    """Something other than a regular file is at a path qbhook would replace: the message says
    what, naming the path."""


def check_replaceable(path: str | os.PathLike) -> None:
    """Refuse (NotReplaceable) a path where something other than a regular file is.

    lstat, so a symbolic link is refused too: the rename would replace the link, not the file
    it points to, which is never what naming it meant. Nothing there, or a regular file: fine.
    A path that cannot even be looked at is left to the write, which names its own error."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        what = "a symbolic link (name the file itself)" if stat.S_ISLNK(mode) else kind(mode)
        raise NotReplaceable(f"{os.fsdecode(path)} is {what}, not a regular file: refusing to replace it")


def replace_file(path: str | os.PathLike, text: str, *, prefix: str, fsync: bool = False) -> None:
    """Write ``text`` to a new file beside ``path`` and rename it over the name: a reader sees the
    old file or the new one, never half of one. The new name is made exclusively (mkstemp:
    O_EXCL, mode 0600); ``fsync``: on disk before the rename. NotReplaceable, before anything is
    written, when something other than a regular file is at the name (``check_replaceable``);
    OSError when the folder refuses, the new file removed. The one writer of ``plan --save`` and
    the notification outbox."""
    path = Path(path)
    check_replaceable(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def kind(mode: int) -> str:
    """What a file of ``mode`` is, for a message (``a FIFO``); the rule of every such message."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def decode_text(data: bytes, path: str | os.PathLike) -> str:
    """``data`` (read from ``path``) as UTF-8 text; else NotReadable naming the first byte that is
    not and its line, never the decoder's own words ('utf-8' codec can't decode byte...)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise NotReadable(f"{os.fsdecode(path)} is not UTF-8 text (byte {data[e.start]:#04x} on line {line})") from None


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 else f"{n // 2**10} KiB"
