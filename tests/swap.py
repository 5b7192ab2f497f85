"""A hostile writer's move at the worst moment: a folder swapped for a symlink between check and read.

``swap_after_first_look`` waits for the code under test to look at one path (``os.lstat``,
``os.stat`` or ``os.open``, by its path or by its name relative to a folder descriptor), lets
that look happen, then renames the folder aside (it stays a real folder inside the root) and
puts a symlink to a folder outside the roots in its place. Code that reads by path string
after its check then reads outside; code that reads through the descriptor it checked reads
the folder it checked (now renamed aside), or refuses if it opens the folder after the swap.
"""

from __future__ import annotations

import os
from pathlib import Path


def full_path(path, dir_fd=None) -> str | None:
    """The path a call looked at: ``path`` itself, or the name ``path`` in the folder ``dir_fd``
    (as that folder is named now); None for a call on a descriptor."""
    if isinstance(path, int):
        return None
    p = os.fsdecode(os.fspath(path))
    if dir_fd is None:
        return p
    try:
        return os.readlink(f"/proc/self/fd/{dir_fd}") + "/" + p
    except OSError:
        return None


def swap(folder: Path, outside: Path) -> None:
    """``folder`` renamed to ``<folder>.aside``, a symlink to ``outside`` in its place."""
    os.rename(folder, folder.with_name(folder.name + ".aside"))
    os.symlink(outside, folder)


def swap_after_first_look(monkeypatch, watched: Path, folder: Path, outside: Path) -> list[str]:
    """Swap ``folder`` for a symlink to ``outside`` right after the first look at ``watched``;
    the returned list names the call that looked (empty: nothing looked, nothing swapped)."""
    done: list[str] = []
    target = str(watched)

    def wrap(name, real):
        def look(path, *args, dir_fd=None, **kw):
            out = real(path, *args, dir_fd=dir_fd, **kw)
            if not done and full_path(path, dir_fd) == target:
                done.append(name)
                swap(folder, outside)
            return out

        monkeypatch.setattr(os, name, look)

    for name in ("lstat", "stat", "open"):
        wrap(name, getattr(os, name))
    return done


def swap_after_listing(monkeypatch, parent: Path, folder: Path, outside: Path) -> list[str]:
    """Swap ``folder`` for a symlink to ``outside`` as soon as a listing of ``parent``
    (``os.scandir``, by path or descriptor) has been read to its end."""
    done: list[str] = []
    real = os.scandir

    class Listing:
        def __init__(self, it, fire: bool):
            self.it, self.fire = it, fire

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.it.close()

        def __iter__(self):
            return self

        def __next__(self):
            try:
                return next(self.it)
            except StopIteration:
                if self.fire and not done:
                    done.append(str(parent))
                    swap(folder, outside)
                raise

        def close(self):
            self.it.close()

    def scandir(path="."):
        where = os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else os.fsdecode(os.fspath(path))
        return Listing(real(path), where == str(parent))

    monkeypatch.setattr(os, "scandir", scandir)
    return done


def record_looks(monkeypatch) -> list[str]:
    """Every path looked at from now on by ``os.lstat``, ``os.stat`` or ``os.open`` (by its path,
    or by a name relative to a folder descriptor), as a full path, in order."""
    calls: list[str] = []

    def wrap(name, real):
        def look(path, *args, dir_fd=None, **kw):
            where = full_path(path, dir_fd)
            if where is not None:
                calls.append(where)
            return real(path, *args, dir_fd=dir_fd, **kw)

        monkeypatch.setattr(os, name, look)

    for name in ("lstat", "stat", "open"):
        wrap(name, getattr(os, name))
    return calls
