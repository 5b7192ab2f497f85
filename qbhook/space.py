"""How much room a pool has: one ``statvfs`` reading, in bytes (the one home of that reading).

``statvfs`` counts in fragments of ``f_frsize`` bytes: ``f_blocks`` in all, ``f_bfree`` free,
``f_bavail`` free to an unprivileged writer (less any blocks the filesystem reserves for root;
ZFS reserves none, ext4 5% by default). qbhook reports and decides on ``avail``: the room a
copy, or qBittorrent writing as its own user, can really use. A root is read through the
descriptor ``dirfd.open_root`` gives (``space_at``), never by its path string: a seeding root
swapped for a symlink by a writer of its pool would otherwise report (and let the planner
and the "pool low" alerts decide on) the space of wherever the symlink points. A root that
cannot be read (missing, not mounted, no permission) raises OSError, one swapped for a symlink
or another folder ``dirfd.FolderRefused``: each caller decides what that means for it
(``status`` shows the error, the sweeper's free-space check skips the pool, a snapshot
refuses to plan).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from qbhook.dirfd import open_root

__all__ = ["Space", "fits", "space_at", "space_of"]


@dataclass(frozen=True)
class Space:
    """A filesystem's size and free space, in bytes."""

    size: int
    free: int  # free blocks, those reserved for root included
    avail: int  # free to an unprivileged writer: what qbhook reports as "free"


def space_of(root: int | str | os.PathLike) -> Space:
    """The space of the filesystem holding ``root``, a descriptor (what ``space_at`` passes) or a
    path; OSError if it cannot be read."""
    sv = os.statvfs(root)
    return Space(sv.f_blocks * sv.f_frsize, sv.f_bfree * sv.f_frsize, sv.f_bavail * sv.f_frsize)


def space_at(root: str | os.PathLike, pool: str | os.PathLike | None = None) -> tuple[Space, os.stat_result]:
    """(``space_of``, ``fstat``) of the configured folder ``root`` read through its descriptor from
    ``dirfd.open_root`` (``pool``: the pool root a seeding root lies in; None: ``root`` is a pool
    root); the fstat gives its st_dev for ``Catalog.fs_for_path``. OSError: no folder there;
    ``FolderRefused``: swapped, never followed."""
    fd = open_root(root, pool)
    try:
        return space_of(fd), os.fstat(fd)
    finally:
        os.close(fd)


def fits(need: int, free: int) -> bool:
    """The one home of "copies fit": ``need`` bytes to copy onto a filesystem with ``free`` bytes
    free to qbhook's writer (``Space.avail``). No margin: no config sets a reserve
    (``notify.free_space_below`` only alerts). The planner asks it of each group and of a run's
    groups together (``planner.finish_run``), the executor of a whole group before it copies
    and of each file before it is written (``fsops``)."""
    return need <= free
