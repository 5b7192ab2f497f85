"""How much room a pool has: one ``statvfs`` reading, in bytes (the one home of that reading).

``statvfs`` counts in fragments of ``f_frsize`` bytes: ``f_blocks`` in all, ``f_bfree`` free,
``f_bavail`` free to an unprivileged writer (less any blocks the filesystem reserves for root;
ZFS reserves none, ext4 5% by default). qbhook reports and decides on ``avail``: the room a
copy, or qBittorrent writing as its own user, can really use. A root that cannot be read
(missing, not mounted, no permission) raises OSError: each caller decides what that means
for it (``status`` shows the error, the sweeper's free-space check skips the pool, a
snapshot refuses to plan).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Space", "space_of"]


@dataclass(frozen=True)
class Space:
    """A filesystem's size and free space, in bytes."""

    size: int
    free: int  # free blocks, those reserved for root included
    avail: int  # free to an unprivileged writer: what qbhook reports as "free"


def space_of(root: str | os.PathLike) -> Space:
    """The space of the filesystem holding ``root``; OSError if it cannot be read."""
    sv = os.statvfs(root)
    return Space(sv.f_blocks * sv.f_frsize, sv.f_bfree * sv.f_frsize, sv.f_bavail * sv.f_frsize)
