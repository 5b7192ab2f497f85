"""What a file's mode bits let its torrent's user do, before and after a relink puts another inode at its name.

A convergence (``decide.converge``, carried out by ``move.fsops.Relinker``) replaces a seeding
file's inode by a hard link to another inode with the same bytes, often a library file. The
name then shows that inode's owner, group and mode, never the replaced one's: a library file is
never chmodded nor chowned (it is not qbhook's, and its *arr reads it as its own). So the kept
inode must give the user who owned the replaced file (the torrent client's) at least the access
the replaced file gave it: read, and write if it was writable by its owner. Write matters though
seeding only reads: the client opens a file read-write to repair a piece that failed its check,
and a cross-seed tool running as that user can hard-link a file only with read and write access
or ownership (``fs.protected_hardlinks``).

The kernel's rule for one class: the owner's bits if the user owns the file, else the group's if
the file's group is one of the user's groups, else the others'. The user's groups are known only
where the config says them (``policy.client_groups``: the user qBittorrent runs as may live in a
container whose /etc/group the host does not have), and then only they count: the replaced
file's group is not the user's when a setgid folder or a later chgrp gave it another. Where they
are not said, the replaced file's group is taken as its owner's (that guess can be wrong in the
same two ways, which is what the setting is for), and for a file of any other group both the
group's and the others' bits must grant the access, whichever class the kernel picks (it errs
toward refusing). ACLs are not read.
Root (uid 0) has every access. Pure functions of stat fields: no I/O, so the planner (on its
facts) and the executor (on the stats its checks take anyway) ask the same rule at no cost.
"""

from __future__ import annotations

from collections.abc import Collection

READ = 0o4
WRITE = 0o2
_WORDS = {READ: "read", WRITE: "write", READ | WRITE: "read and write"}


def granted(mode: int, owner: int, group: int, uid: int, gid: int, groups: Collection[int] | None = None) -> int:
    """The rwx bits (0-7) user ``uid`` gets on a file of ``mode`` owned by ``owner``:``group``.

    ``groups``: every group of the user when known (the kernel's rule exactly; ``gid`` is not
    read), else None: then ``gid`` (the replaced file's group) is taken as the user's, and a file
    of another group grants only what both its group's and the others' bits grant."""
    if uid == 0:
        return 0o7
    if owner == uid:
        return (mode >> 6) & 0o7
    if groups is not None:
        # known: a replaced file's group from a setgid folder or a chgrp need not be the user's
        return (mode >> 3) & 0o7 if group in groups else mode & 0o7
    if group == gid:
        return (mode >> 3) & 0o7
    return (mode >> 3) & mode & 0o7


def access_lost(
    kept: tuple[int, int, int], replaced: tuple[int, int, int], groups: Collection[int] | None = None
) -> str | None:
    """What the owner of ``replaced`` would lose if its name became a link to ``kept`` (each
    ``(st_mode, st_uid, st_gid)``): "read", "write", "read and write", or None (nothing).

    Needed: read, and write when ``replaced`` was writable by its owner."""
    mode, uid, gid = replaced
    if uid == 0:
        return None
    need = READ | (WRITE if mode & 0o200 else 0)
    lost = need & ~granted(kept[0], kept[1], kept[2], uid, gid, groups)
    return _WORDS.get(lost)


def lost_reason(what: str, kept: tuple[int, int, int], uid: int) -> str:
    """For a person, after the copy to keep's name: it would take ``what`` (``access_lost``) from ``uid``."""
    return f"would take {what} access from uid {uid} (owner {kept[1]}, group {kept[2]}, mode {kept[0] & 0o7777:04o})"
