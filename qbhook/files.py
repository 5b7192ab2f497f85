"""Reading a file a person pointed qbhook at (the config, a secret file, a saved plan).

One rule for all of them: a regular file, opened without blocking, read up to a bound. A FIFO
nobody writes would block open() and read() forever, a device such as /dev/zero would never
end, and a file far larger than any such file can be is a wrong path, not input. Callers turn
the failure into their own error class (ConfigError, PlanFileError) with the message as is.
"""

from __future__ import annotations

import os
import stat

__all__ = ["Missing", "NotReadable", "read_regular_file"]


class NotReadable(Exception):
    """The path cannot be read as that file: the message says why, naming the path."""


class Missing(NotReadable):
    """Nothing at all is at the path (a dangling symlink is something: plain NotReadable)."""


def read_regular_file(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (more is NotReadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        # the second look happens only on this error path, to tell "nothing there" from the rest
        kind = Missing if isinstance(e, FileNotFoundError) and not os.path.lexists(path) else NotReadable
        raise kind(f"cannot read {os.fsdecode(path)}: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise NotReadable(f"cannot read {os.fsdecode(path)}: Is a directory")
        if not stat.S_ISREG(mode):
            raise NotReadable(f"{os.fsdecode(path)} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise NotReadable(f"cannot read {os.fsdecode(path)}: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise NotReadable(f"{os.fsdecode(path)} is larger than {_size(limit)}: not a file qbhook reads")
    return data


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 else f"{n // 2**10} KiB"
