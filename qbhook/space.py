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

A copy fits when it leaves the pool's reserve free (``fits``, the one home of that rule):
``policy.min_free``, a ``Reserve`` of bytes or of a percent of the filesystem's size
(``Space.size``: ``f_blocks``; on ZFS a dataset's own used bytes plus what the pool has
available, so a percent of a small dataset on a big pool is less than that percent of the
pool). ZFS slows down badly as a pool fills, and qBittorrent's downloads fail at 0 available:
the reserve is room a run never takes, whatever else writes there.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from qbhook.dirfd import open_root
from qbhook.units import human_bytes

__all__ = ["NO_RESERVE", "Reserve", "Space", "fits", "leaves", "space_at", "space_of"]


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


@dataclass(frozen=True)
class Reserve:
    """``policy.min_free``: the free space a run leaves on a pool, ``amount`` bytes, or
    ``amount`` percent (0 to 100) of the filesystem's size when ``percent``."""

    amount: int | float = 0
    percent: bool = False

    def of(self, size: int) -> int:
        """The reserve in bytes on a filesystem of ``size`` bytes (rounded up: never less room
        than asked). A size not read (0: facts that write nothing) gives a percent nothing."""
        return math.ceil(max(size, 0) * self.amount / 100) if self.percent else int(self.amount)

    def __str__(self) -> str:
        return f"{self.amount:g}%" if self.percent else human_bytes(self.amount)


NO_RESERVE = Reserve()


def fits(need: int, free: int, *, size: int, reserve: Reserve) -> bool:
    """The one home of "copies fit": ``need`` bytes to copy onto a filesystem of ``size`` bytes
    with ``free`` bytes free to qbhook's writer (``Space.avail``) leave at least ``reserve``
    free (``policy.min_free``; ``notify.free_space_below`` only alerts). The planner asks it of
    each group and of a run's groups together (``planner.finish_run``), the executor of a whole
    group before it copies and of each file before it is written (``fsops``). Nothing to write
    always fits: a demote that only links onto data already on the pool (or a converge) takes
    no room, and on a pool already inside its reserve it is what frees /stash without filling
    the pool further."""
    return need <= 0 or need + reserve.of(size) <= free


def leaves(need: int, free: int, *, size: int, reserve: Reserve) -> str:
    """Why ``need``, which ``free`` holds, does not fit for the reserve, for a reason line:
    "would leave 1.0 GiB free, reserve 5% (2.0 GiB) (policy.min_free)". (Each caller words a
    copy that does not fit at all its own way.)"""
    shown = str(reserve) if not reserve.percent else f"{reserve} ({human_bytes(reserve.of(size))})"
    return f"would leave {human_bytes(free - need)} free, reserve {shown} (policy.min_free)"
