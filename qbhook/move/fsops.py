"""Thin filesystem adapter: the only code that puts bytes on a pool or takes names off it.

Every function takes host paths and re-checks the world right before it acts,
because a plan is only as true as the moment it was made. Each one is
idempotent: run twice (a resume after a crash), the second run finds the work
done and says so instead of doing it again or failing.

The dirfd rule (qbhook runs as root over trees less-trusted users can write):
a path is first placed lexically under one configured root (``..`` refused,
``//`` and ``.`` normalised away; a path under no root is refused). A pool root
is walked to from ``/`` without following a symlink and pinned to the folder first opened
(``dirfd.open_root``); a seeding root (``dirfd.SeedingRoot``,
``Config.anchored_seeding_roots``) is opened from its pool root down, like the
folders below it (``dirfd.open_root``); every component below a root
is opened with ``O_DIRECTORY|O_NOFOLLOW`` relative to its verified parent and
``fstat``-ed (a real folder, on the root's filesystem for anything written or
deleted). Every check and the final act then name only the last entry,
relative to that same descriptor (``fstatat(AT_SYMLINK_NOFOLLOW)``, then
``unlinkat``/``linkat``/``openat(O_NOFOLLOW)``/``mkdirat``; a file read or linked from is
first pinned (``O_PATH|O_NOFOLLOW``), checked on the pin's fstat, and then opened or linked
through ``/proc/self/fd`` (``dirfd.open_file_at``, ``dirfd.Pin.link``): a device planted at
the name is never opened, and what is linked is the inode checked; nothing is ever
renamed over a name, except by ``relink_over`` (and its batch form ``Relinker``): same-pool convergence puts a link
of proven-equal content over a seeding entry, atomically). Sources that are only
read or linked from may cross a mount below a pool root (a nested dataset), never
a symlink. A symlinked, swapped or foreign component makes the operation refuse (``UnsafeOperation``
naming the path and why); it is never followed or redirected. qbhook's own
folders (``.qbhook-staging``, ``.qbhook-holding``) are made by qbhook (0700)
and must be real folders owned by its euid; holding is purged only of the
entries the journal recorded as held, never by removing whatever is there.
``mkdirat`` gives no descriptor, so a folder qbhook makes is opened by name again
and proven to be the one it made (``_prove_made``: its euid's, born ``_BIRTH_MODE``,
empty) before it is owned and moded; a folder renamed into the name meanwhile is
refused, never chowned or chmodded.

What remains racy, and why it is harmless: between the last check and the act
a writer can still swap the *entry* inside a verified folder, or rename the
verified folder itself elsewhere. The swapped entry is still inside the roots
(it is a name in a folder qbhook verified), and moving a folder to another
parent needs write permission on that folder, so whatever qbhook then does
to its entries that writer could already do. qbhook never extends a writer's
reach beyond the folders it can write. The exception is a seeding folder moved into
the library (an import on the same dataset) while qbhook checks a file in it: the rename
over a name (``relink_over``) would replace a library file, a delete or hold
(``safe_unlink``), an orphan's hold (``hold_unreferenced``), a move's hide (``hide_during_move``)
or a leftover view's removal would take one, which no writer of the library may have done
for it. So right before that act the folder is proven still below its seeding root,
through ``..`` from its descriptor (``Dir.in_place``, ``_walk_placed``), and a removal
looks again right after its rename to a drop name or into holding, putting the file back
(never over a name) if the folder moved in between; a kill before that put-back leaves a
resume that cannot reach the folder by its path, and it waits for a person (``_folder_gone``,
``_gone_folder_absent``) rather than take the file for held or gone. A name in a seeding folder
is never unlinked after a look at it either: a file renamed over it in between (qBittorrent
completing a download at that path) would lose its last link. A hold
renames the entry into holding, a removal (a delete, a leftover view's, an unrecorded link's)
to a drop name (``_drop_name``), never over a name (``_rename_noreplace``, ``_put_back``), and
what arrived is proven to be the file checked, else put back (``_move_checked``). A kill between
that rename and the look leaves whatever arrived at qbhook's name: a retry or resume that finds a
file other than the planned one there puts it back (``_absent``, ``_undo_drop``), never takes the
act for done, since that file would then be named by nothing. The only
names unlinked after a look are qbhook's own: in its 0700 folders (staging, holding), where
nobody renames a file, or a name no torrent owns (a drop name, a relink's temporary name),
onto which only a writer of the folder, who could unlink that file anyway, renames one. A
rename within one folder needs no permission on the folder renamed, though: a writer of a
seeding root can rename its root-owned ``.qbhook-holding`` away. Each hold journals that
folder's identity, and a purge or put-back that finds it gone or another says so
(``HoldingGone``), never "already gone".

Errors: ``UnsafeOperation`` when the world disagrees with the plan (a
different file already sits at the destination, an unknown hardlink
appeared, a symlink in the way), ``VerificationFailed`` when content or size
does not match, ``OSError`` for plain I/O failures (ENOSPC, EIO). None of
them leaves a partial file or touches a source.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import operator
import os
import queue
import stat as stat_mod
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import NamedTuple, Self

import blake3

from qbhook import procs
from qbhook.access import access_lost, lost_reason
from qbhook.catalog import hashing
from qbhook.catalog.fsid import is_zfs
from qbhook.catalog.store import CarryProof, InodeStat, stat_fields
from qbhook.dirfd import (
    EntryChanged,
    EntryKey,
    FolderRefused,
    NotAFolder,
    NotRegular,
    Pin,
    SeedingRoot,
    entry_key,
    folder_id,
    open_below,
    open_file_at,
    open_root,
    pin_file,
    pinned,
)
from qbhook.errors import (
    HoldingGone,
    LastCopyKept,
    QbhookError,
    UnsafeOperation,
    VerificationFailed,
    ViewReleased,
    ViewUnproven,
)
from qbhook.paths import RELINK_PREFIX as _RELINK_PREFIX
from qbhook.space import NO_RESERVE, Reserve, fits, leaves, space_of
from qbhook.units import human_bytes as _human

__all__ = [
    "COPY_BUF",
    "HOLDING_DIR",
    "STAGING_DIR",
    "Act",
    "ActStatus",
    "HeldLink",
    "Like",
    "RelinkTarget",
    "Relinker",
    "copy_verified",
    "file_matches",
    "hide_during_move",
    "hold_unreferenced",
    "holding_path",
    "link_into",
    "look_at_leftover_view",
    "make_empty",
    "pid_alive",
    "prune_empty_dirs",
    "purge_holding",
    "relink_over",
    "remove_leftover_view",
    "safe_unlink",
    "source_seen",
    "sync_filesystem",
    "unhide_after_move",
    "verify_file",
]

# Both names are in config.ALWAYS_IGNORED, so no walk enters them (tests/unit/test_config.py).
STAGING_DIR = ".qbhook-staging"
HOLDING_DIR = ".qbhook-holding"
_OWN_DIRS = frozenset({STAGING_DIR.encode(), HOLDING_DIR.encode()})


def in_own_folder(dirs: Iterable[bytes]) -> bool:
    """The one home of "never act inside qbhook's own folders": is an entry whose folders below
    its root are ``dirs`` (``parts[:-1]``) inside a staging or holding folder? Those hold
    copies in flight and held links, which only the code that made them may touch."""
    return not _OWN_DIRS.isdisjoint(dirs)


COPY_BUF = 8 * 1024 * 1024
NAME_MAX = 255
# A hash computed while the file's mtime is this fresh could miss a write in the
# same timestamp tick; such a hash is used for the decision but not cached.
CACHE_MIN_AGE_S = 2.0
OWN_DIR_MODE = 0o700
# The mode a folder qbhook makes is born with, until it is owned and moded for good: one no folder a
# writer could rename into its name has (qbhook's own are 0700), so ``_prove_made`` tells a swapped-in
# folder from the one just made even when both are empty. Readable: a non-root qbhook must open it.
_BIRTH_MODE = 0o500


# --------------------------------------------------------------------------- what an act made


class ActStatus(StrEnum):
    """What ``copy_verified``, ``link_into`` or ``make_empty`` found or did at its destination."""

    COPIED = "copied"  # new inode, written and proven here
    LINKED = "linked"  # a new name of the source inode
    CREATED = "created"  # a new empty file
    ALREADY = "already"  # the name already was the source inode (an earlier attempt linked it)
    PRESENT = "present"  # another inode already there, proven to hold the planned content


@dataclass(frozen=True, slots=True, eq=False)
class Act(Mapping):
    """The result of one act: its status, the stat it vouches for, and the facts the journal keeps.

    ``after`` is the destination's lstat taken through the verified folder the act used, right
    after the act, and proven to be the inode the act made, linked or content-checked: the caller
    records *that* stat (and caches a hash against it), never one looked up again by name, where
    a writer of the folder may have renamed another file in meanwhile. ``carry`` (LINKED only):
    the source inode was pinned from its stat right before the link until ``after`` was taken
    (``CarryProof.across``); a cached hash may be carried over the link's ctime change only with it. As a
    mapping it is what the journal records (``{"status": ..., **facts}``, JSON); ``dict(act)``
    gives that.
    """

    status: ActStatus
    after: os.stat_result
    facts: dict = field(default_factory=dict)
    carry: CarryProof | None = None

    def __getitem__(self, key: str):
        return self.status.value if key == "status" else self.facts[key]

    def __iter__(self) -> Iterator[str]:
        yield "status"
        yield from self.facts

    def __len__(self) -> int:
        return 1 + len(self.facts)

    def __eq__(self, other) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    __hash__ = None  # a mapping compares by value, like a dict


class Checked(NamedTuple):
    """The stat ``safe_unlink`` checked a link's content under (its result's ``checked``, with the
    inode's ``dev`` and the planned ``ino``), as ``CarryProof.across(before=...)`` reads it."""

    st_dev: int
    st_ino: int
    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int

    @classmethod
    def of(cls, res: Mapping, ino: int) -> Self | None:
        """From a ``safe_unlink`` result (None: it checked nothing, or predates ``checked``)."""
        c = res.get("checked")
        if not isinstance(c, Mapping) or res.get("dev") is None:
            return None
        return cls(res["dev"], ino, c["size"], c["mtime_ns"], c["ctime_ns"])


@dataclass(frozen=True, slots=True)
class RelinkTarget:
    """The facts a relink was planned on, re-checked right before it acts (``relink_over``).

    The seeding link: inode ``ino`` on filesystem ``fsid`` (a catalog row id or an fsid string),
    ``size`` bytes, modified at ``mtime_ns`` (None: not checked), content ``blake3_hex``; the
    kept inode: ``keep_ino`` on ``keep_fsid``. Built once per relink by its caller and handed
    through unchanged (no checks of its own: every check is the relink's, against the live files).
    """

    fsid: object
    ino: int
    size: int
    blake3_hex: object
    keep_fsid: object
    keep_ino: int
    mtime_ns: int | None = None


class Relinked(NamedTuple):
    """A name a ``Relinker`` relinked, as the catalog records it (``Catalog.record_paths``)."""

    after: os.stat_result  # the name right after the rename, through its folder: the kept inode
    # The kept inode pinned from the stat its content was checked under until ``after`` (None: not
    # proven one file, nothing carried).
    carry: CarryProof | None


# A ``Relinked`` as plain ints: (the name's ``InodeStat`` fields, the carry proof's fields or None).
_RelinkedWire = tuple[tuple[int, ...], tuple[int, ...] | None]


def relinked_to_parent(after: Mapping) -> dict:
    """A forked child's ``Relinker.after`` as plain tuples of ints, to be pickled back
    (``relinked_from_child`` rebuilds it): of each name's stat the fields the catalog records
    (``Catalog.record_paths``: the kind, the inode's identity, its stat columns and owner:
    ``InodeStat``). Pickled as they are, an ``os.stat_result`` and a ``CarryProof`` (a frozen
    dataclass) each go through Python-level reduce and setstate functions: 0.04 CPU-s to pickle
    and 0.03 to load per 3,500 relinks."""
    return {
        path: (
            stat_fields(st),
            None if c is None else (c.dev, c.ino, c.size, c.mtime_ns, c.ctime_ns, c.after_ctime_ns),
        )
        for path, (st, c) in after.items()
    }


def relinked_from_child(wire: Mapping[object, _RelinkedWire]) -> dict:
    """``relinked_to_parent``'s answer as ``Relinked`` entries again, each ``after`` an ``InodeStat``:
    the same fields the child's stat and proof had (the proof as made by ``CarryProof.across`` in
    the child, field for field)."""
    return {path: Relinked(InodeStat(*st), None if c is None else CarryProof(*c)) for path, (st, c) in wire.items()}


# --------------------------------------------------------------------------- small helpers


def _p(path) -> str | bytes:
    return os.fspath(path)


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


# --------------------------------------------------------------------------- verified folders


class _Root(bytes):
    """A configured root, normalised, as ``_split_under`` places paths under it; ``pool``: the pool
    root a seeding root is opened from (``dirfd.SeedingRoot``), None for a pool root (walked from ``/`` and pinned)."""

    pool: bytes | None


def _root(r) -> _Root:
    out = _Root(b"/" + os.path.normpath(os.fsencode(r)).lstrip(b"/"))
    out.pool = os.fsencode(r.pool) if isinstance(r, SeedingRoot) else None
    return out


@functools.lru_cache(maxsize=64)
def _norm_roots(roots: tuple) -> tuple[_Root, ...]:
    """The configured roots, normalised once (they are asked about for every path). The cache
    key tells a ``SeedingRoot`` from a plain path (they never compare equal)."""
    return tuple(_root(r) for r in roots)


def _is_normal(p: bytes) -> bool:
    """True when ``os.path.normpath`` would return the absolute, ``..``-free path ``p`` unchanged:
    no empty component (``//``), no ``.`` component and no trailing slash.

    ``find``, not ``in``: CPython's ``bytes.__contains__`` first tries its argument as an int,
    and for bytes that raises and clears a TypeError (~1,800 instructions a test, three per
    path placed: docs/benchmarks.md section 9, 2026-12-02 06:00)."""
    return p.find(b"//") < 0 and p.find(b"/./") < 0 and not p.endswith((b"/", b"/."))


# os.fsencode's codec and error handler, for ``_split_ordered``'s str paths.
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


@functools.lru_cache(maxsize=64)
def _root_order(roots: tuple) -> tuple[tuple[_Root, bytes], ...]:
    """(root, the prefix of every path below it) of each configured root, longest root first and
    equal lengths in the configured order: the first root a path starts with is then the one
    ``_split_under`` places it under (the longest holding it, the first of equal ones)."""
    order = [(rb, rb.rstrip(b"/") + b"/") for rb in _norm_roots(roots)]
    order.sort(key=lambda e: -len(e[0]))  # stable: ties keep the configured order
    return tuple(order)


def _split_under(path, roots) -> tuple[bytes, list[bytes]]:
    """(configured root, components below it) of ``path``, decided lexically; refuses ``..`` and outsiders."""
    roots = roots if isinstance(roots, tuple) else tuple(roots)
    return _split_ordered(path, _root_order(roots), roots)


def _split_ordered(path, order: tuple[tuple[_Root, bytes], ...], roots: tuple) -> tuple[bytes, list[bytes]]:
    """``_split_under`` with the roots' ``_root_order`` at hand (a batch computes it once, not per path)."""
    # A str encoded as os.fsencode encodes it, without its Python frame (a relink batch places 20,000 paths).
    p = path.encode(_FS_ENCODING, _FS_ERRORS) if type(path) is str else os.fsencode(path)
    if not p.startswith(b"/"):
        raise UnsafeOperation(f"{os.fsdecode(p)}: not an absolute path")
    if p.find(b"/..") >= 0 and b".." in p.split(b"/"):  # an absolute path's ".." follows a "/": split only then
        raise UnsafeOperation(f"{os.fsdecode(p)}: a '..' component is never followed")
    # normpath is pure Python here and most of this function's cost; a path already normal skips it
    # (a relink batch places 20,000 of them).
    norm = p if _is_normal(p) else b"/" + os.path.normpath(p).lstrip(b"/")
    for rb, prefix in order:
        if norm.startswith(prefix) or norm == rb:
            # A normal path has no empty component (no "//", no trailing "/"), and ``prefix`` ends in
            # "/": what follows it splits into the components as they are, nothing to filter out.
            rest = norm[len(prefix) :]
            return rb, rest.split(b"/") if rest else []
    shown_roots = ", ".join(os.fsdecode(_p(r)) for r in roots) or "none configured"
    raise UnsafeOperation(f"{os.fsdecode(p)}: not inside a configured root ({shown_roots})")


class Dir:
    """An open folder verified on the way down from a configured root; acts name entries relative to ``fd``.

    ``above``: the (st_dev, st_ino) of each folder walked through to reach it, its parent first,
    its root last (empty for a root): what ``in_place`` proves it is still below.
    """

    __slots__ = ("_fs_path_s", "above", "dev", "fd", "fs_path", "path", "st")

    def __init__(
        self,
        fd: int,
        path: bytes,
        dev: int,
        st: os.stat_result,
        fs_path: bytes,
        fs_path_s: str | None = None,
        above: tuple[tuple[int, int], ...] = (),
    ):
        self.fd, self.path, self.dev, self.st, self.above = fd, path, dev, st, above
        # A path on this folder's filesystem that no writer can swap (the configured root, or
        # the mount point crossed on the way down), for code that identifies filesystems by
        # path: resolving this folder's own path again could meet a symlink swapped in since.
        self.fs_path = fs_path
        # Its str, decoded once and handed down to the folders below on the same filesystem
        # (a relink asks for it three times, and every folder of a walk has the same one).
        self._fs_path_s = os.fsdecode(fs_path) if fs_path_s is None else fs_path_s

    def fs_path_for(self, st: os.stat_result) -> str | None:
        """fs_path for an entry of this folder with stat ``st``; None if the entry is on another filesystem."""
        return self._fs_path_s if st.st_dev == self.st.st_dev else None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def show(self, name: bytes | None = None) -> str:
        return os.fsdecode(os.path.join(self.path, name) if name else self.path)

    def lstat(self, name: bytes) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def open_file(self, name: bytes, flags: int = hashing._READ_FLAGS) -> tuple[int, os.stat_result]:
        """A regular file in this folder, opened for reading without following a symlink, and its fstat.

        Pinned and checked before it is opened (``dirfd.open_file_at``): a device or FIFO at the
        name, swapped in after any lstat, is refused (UnsafeOperation) without being opened; a
        symlink is OSError ELOOP, as an O_NOFOLLOW open says.
        """
        try:
            return open_file_at(name, self.fd, flags)
        except NotRegular:
            raise UnsafeOperation(f"{self.show(name)} is not a regular file") from None
        except EntryChanged:
            raise UnsafeOperation(f"{self.show(name)} was swapped for another file while qbhook opened it") from None

    def reopen(self, pin: Pin, name: bytes, flags: int = hashing._READ_FLAGS) -> tuple[int, os.stat_result]:
        """``open_file`` of the entry ``name`` the caller pinned already (``pin``, checked by the caller
        to be a regular file): that inode, not pinned again."""
        try:
            return pin.reopen(flags, name, self.fd)
        except EntryChanged:
            raise UnsafeOperation(f"{self.show(name)} was swapped for another file while qbhook opened it") from None

    def up(self, expect: os.stat_result) -> Dir | None:
        """This folder's parent, reached through its own ``..`` and proven to be the folder
        ``expect`` describes (the one walked through on the way down); None when it is not (this
        folder was moved elsewhere meanwhile). Lets a walk back up hold two descriptors, not one
        per level: a torrent's folders can be as deep as its paths allow."""
        fd = os.open(b"..", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (expect.st_dev, expect.st_ino):
            os.close(fd)
            return None
        return Dir(fd, os.path.dirname(self.path) or b"/", self.dev, st, self.fs_path, self._fs_path_s, self.above[1:])

    def in_place(self, anchor: Anchor | None) -> bool:
        """Is this folder still where it was walked to? Each folder above it, reached through
        ``..`` from its own descriptor (never by a path string), is still the one walked through
        (``above``), up to its root; and a seeding root (``anchor``) is still at its configured
        place: it and each folder above it, up to the pinned pool root, still the one walked
        through when it was opened, under the same name in the same parent (an ``fstatat`` of
        ``..``-levels, then of the name in that level: nothing on the way can be a symlink, so
        a symlink a writer left where a folder was is never followed). False if any of that moved
        (or is gone). A pool root's own place is its pin's (``dirfd.open_root``). One ``fstatat``
        per level below the root, two per level above a seeding root.

        A folder moved to another folder is refused even below its root (conservative: the
        paths the plan names are no longer there); one renamed within its own parent is not
        seen: it is still below its root, the same folders above it."""
        fd, above = self.fd, self.above
        n = len(above)
        ups = _ups(n + (len(anchor.folders) if anchor is not None else 0))
        try:
            for (dev, ino), up in zip(above, ups, strict=False):
                st = os.stat(up, dir_fd=fd, follow_symlinks=False)
                if st.st_ino != ino or st.st_dev != dev:
                    return False
            if anchor is None:
                return True
            if (above[-1] if above else (self.st.st_dev, self.st.st_ino)) != anchor.folders[0][1]:
                return False  # a root opened before the one the anchor was taken of
            for up, (name, here, parent) in zip(ups[n:], anchor.folders, strict=True):
                st = os.stat(up, dir_fd=fd, follow_symlinks=False)
                if (st.st_dev, st.st_ino) != parent:
                    return False
                st = os.stat(up + b"/" + name, dir_fd=fd, follow_symlinks=False)
                if (st.st_dev, st.st_ino) != here:
                    return False
        except OSError:
            return False  # a folder on the way is gone (removed, or no longer reachable)
        return True

    def sub(
        self, name: bytes, *, create: bool = False, same_fs: bool = True, own: bool = False, like: Like | None = None
    ) -> Dir:
        """The verified child folder ``name`` (made if missing and ``create``): never a symlink.

        ``own`` marks qbhook's own folders: made 0700, and refused unless owned by qbhook's euid.
        New ordinary folders are owned and moded like their counterpart on the source side
        (``like``, ``_model``), else like this one (qBittorrent's user must be able to rename and
        delete in its own tree; a root-owned 0755 folder would stop it). A folder
        qbhook makes is first proven to be the one its mkdir made (``_prove_made``); one that was
        already there (found, or EEXIST from a mkdir racing a writer) is used as found, never re-owned.
        """
        full = self.path.rstrip(b"/") + b"/" + name
        made = False
        try:
            fd = open_below(self.fd, name)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(name, _BIRTH_MODE, dir_fd=self.fd)
                made = True
            except FileExistsError:
                pass
            fd = self._open_checked(name, full)
        except NotAFolder as e:
            raise _refusal(e, full) from None
        try:
            st = os.fstat(fd)
            if made:
                _prove_made(st, fd, self.st, full)
            if same_fs and st.st_dev != self.dev:
                raise UnsafeOperation(
                    f"{os.fsdecode(full)} is on another filesystem than its root: refusing to act through a mount point"
                )
            if own:
                if st.st_uid != os.geteuid():
                    raise UnsafeOperation(
                        f"{os.fsdecode(full)} is owned by uid {st.st_uid}, not by qbhook "
                        f"(uid {os.geteuid()}): qbhook uses only folders it made itself",
                        hint="remove or rename it; qbhook recreates it",
                    )
                if made or stat_mod.S_IMODE(st.st_mode) != OWN_DIR_MODE:
                    os.fchmod(fd, OWN_DIR_MODE)  # born _BIRTH_MODE, through the umask
            elif made:
                _own_like(fd, _model(like, full, st) or self.st)
                st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        above = ((self.st.st_dev, self.st.st_ino), *self.above)
        if st.st_dev == self.st.st_dev:
            return Dir(fd, full, self.dev if same_fs else st.st_dev, st, self.fs_path, self._fs_path_s, above)
        return Dir(fd, full, self.dev if same_fs else st.st_dev, st, full, None, above)

    def _open_checked(self, name: bytes, full: bytes) -> int:
        try:
            return open_below(self.fd, name)
        except NotAFolder as e:
            raise _refusal(e, full) from None


def _prove_made(st: os.stat_result, fd: int, parent: os.stat_result, full: bytes) -> None:
    """Refuse (UnsafeOperation) the folder ``fd`` (``st``) unless it is the one qbhook's mkdir of
    ``full`` just made: qbhook's euid's, its gid (or the parent's: a setgid parent or a grpid mount),
    no mode bit outside ``_BIRTH_MODE`` (the umask may take some away), no entries.

    mkdirat gives no descriptor: the name is opened again, and between the two a writer of the parent
    can rename any folder it can see there into the name. Owning that folder like the parent would hand
    a root-owned one (qbhook's 0700 holding, a library folder) to the writer. The writer cannot make a
    folder owned by qbhook's euid; of those it can rename, none is born ``_BIRTH_MODE`` and empty
    but one qbhook is making right now, which is about to be owned like the parent anyway.
    """
    setgid = parent.st_mode & stat_mod.S_ISGID  # inherited by a folder made in a setgid folder
    if (
        st.st_uid != os.geteuid()
        or st.st_gid not in (os.getegid(), parent.st_gid)
        or stat_mod.S_IMODE(st.st_mode) & ~(_BIRTH_MODE | setgid)
        or st.st_nlink > 2  # a subfolder (btrfs says 1 for any folder)
        or os.listdir(fd)
    ):
        raise UnsafeOperation(
            f"{os.fsdecode(full)} was swapped while being made: refusing to take it as the folder qbhook made",
            hint="a writer of its parent renamed another folder into the name; retry once it stops",
        )


class Anchor(NamedTuple):
    """Where a seeding root must be for ``Dir.in_place``: ``folders`` holds the seeding root and
    each folder above it below its pool root (the seeding root first), each as (its name, its
    (st_dev, st_ino), its parent's (st_dev, st_ino)), as walked down from the pool root when the
    seeding root was opened (``dirfd.open_root``); the last one's parent is the pinned pool root.
    Identities, not a path: a path resolved again could pass through a symlink a writer of a
    folder on the way put where a folder was."""

    folders: tuple[tuple[bytes, tuple[int, int], tuple[int, int]], ...]


def _anchor(root: bytes, walked: list[tuple[bytes, int, int]]) -> Anchor | None:
    """The ``Anchor`` of a seeding root just opened (``_open_root``: its pool root pinned, and
    ``walked`` the folders opened from it down to ``root``); None for a pool root."""
    pool = getattr(root, "pool", None)
    if pool is None:
        return None
    top = pinned(pool)
    if top is None or not walked:
        raise UnsafeOperation(f"configured root {os.fsdecode(root)}: its pool root {pool} was never opened")
    folders, parent = [], top
    for name, dev, ino in walked:
        folders.append((name, (dev, ino), parent))
        parent = (dev, ino)
    return Anchor(tuple(reversed(folders)))


@functools.cache
def _ups(n: int) -> tuple[bytes, ...]:
    """``..``, ``../..`` ... ``n`` levels up: each built once, not once per relink."""
    return tuple(b"/".join([b".."] * k) for k in range(1, n + 1))


_REFUSED_AS = {
    "symlink": "a symlink",
    "changing": "changing (swapped while being opened)",
    "other": "not a folder",
}


def _refusal(e: NotAFolder, full: bytes) -> UnsafeOperation:
    return UnsafeOperation(
        f"{os.fsdecode(full)} is {_REFUSED_AS[e.kind]}: refusing to go through it",
        hint="qbhook never follows links below a configured root",
    )


def _open_root(root: bytes, walked: list[tuple[bytes, int, int]] | None = None) -> Dir:
    """The configured root ``root`` (as ``_split_under`` returned it): a seeding root from its pool
    root down, any other root as a pool root, walked from ``/`` and pinned (``dirfd.open_root``: a
    swapped one is refused). ``walked``: filled, for a seeding root, with the folders opened on the
    way (``_anchor``)."""
    pool = getattr(root, "pool", None)
    try:
        fd = open_root(root, pool, walked=walked if pool is not None else None)
    except FolderRefused as e:
        raise UnsafeOperation(
            f"configured root {os.fsdecode(root)}: {e}", hint="qbhook never follows links below a pool root"
        ) from None
    st = os.fstat(fd)
    return Dir(fd, root.rstrip(b"/") or b"/", st.st_dev, st, root)


def _walk(
    root: bytes,
    parts: list[bytes],
    *,
    create: bool = False,
    same_fs: bool = True,
    own: bool = False,
    walked: list[tuple[bytes, int, int]] | None = None,
    like: Like | None = None,
) -> Dir:
    d = _open_root(root, walked)
    try:
        for name in parts:
            nxt = d.sub(name, create=create, same_fs=same_fs, own=own, like=like)
            d.close()
            d = nxt
    except BaseException:
        d.close()
        raise
    return d


def _walk_placed(root: bytes, parts: list[bytes], *, create: bool = False) -> tuple[Dir, Callable[[], bool]]:
    """``_walk`` to a seeding folder an act will remove a name from (or link one into) after long
    checks, and the look that proves it still there right before and after the act (``Dir.in_place``,
    with its seeding root's ``Anchor``, as a relink takes it): a folder moved into the library
    meanwhile (an import on the same dataset) holds library files now, which no removal of qbhook's
    may take, and no put-back may link into. ``create``: ``_walk``'s."""
    walked: list[tuple[bytes, int, int]] = []
    d = _walk(root, parts, create=create, walked=walked)
    return d, _placing(d, root, walked)


def _placing(d: Dir, root: bytes, walked: list[tuple[bytes, int, int]]) -> Callable[[], bool]:
    """``d.in_place`` with the ``Anchor`` of its root ``root`` (``walked``: as ``_open_root`` filled
    it on the way down to ``d``); ``d`` closed when none is to be had (UnsafeOperation)."""
    try:
        return functools.partial(d.in_place, _anchor(root, walked))
    except BaseException:
        d.close()
        raise


def _moved_off(parent: Dir, why: str) -> str:
    """The refusal of an act in ``parent`` found moved (``_walk_placed``): ``why`` names the act."""
    return f"{why}: its folder {parent.show()} was moved during the checks (not where it was walked to)"


def _back_unless_placed(
    placed: Callable[[], bool] | None, at: Dir, new: bytes, home: Dir, name: bytes, why: str
) -> None:
    """Right after a rename of ``home``'s ``name`` to ``at``'s ``new`` (a drop name, holding): nothing
    if ``home`` is still in place (``placed``); else it was moved between the look before the rename
    and the rename, so the name taken may be a library's: the file goes back, never over a name
    (``_put_back``), and the act is refused (``_moved_off``). A kill before the put-back leaves the
    file under the drop name in the moved folder, or in holding, and a retry that no longer reaches
    the folder by its path: it refuses, naming where the file is, and waits for a person
    (``_folder_gone``), never "held" (purged after the grace) nor "absent" (hidden for good)."""
    if placed is None or placed():
        return
    refused = _moved_off(home, why)
    try:
        _put_back(new, at.fd, name, home.fd)
    except OSError:
        where = f"{os.fsdecode(new)} in that folder" if at is home else at.show(new)
        raise UnsafeOperation(f"{refused}; the file waits at {where}", hint="put it back by hand") from None
    raise UnsafeOperation(f"{refused}; the file is put back", hint="re-plan")


def _descend(root: bytes, chain: list[bytes], *, own: bool) -> tuple[Dir, list[os.stat_result]]:
    """As far down ``chain`` below ``root`` as its folders exist: (the deepest folder reached, the
    stat of every folder on the way, the root's first). One descriptor open at the end, whatever
    the depth; ``_rmdir_up`` climbs back through ``Dir.up``, checked against these stats."""
    d = _open_root(root)
    stats = [d.st]
    try:
        for n in chain:
            try:
                nxt = d.sub(n, own=own)
            except (FileNotFoundError, NotADirectoryError):
                break
            d.close()
            d = nxt
            stats.append(d.st)
    except BaseException:
        d.close()
        raise
    return d, stats


def _rmdir_up(d: Dir, chain: list[bytes], stats: list[os.stat_result]) -> int:
    """rmdir the empty folders ``_descend`` reached, deepest first, each through its verified
    parent; stops at the first that stays (not empty, or its parent is not the one walked
    through). Closes ``d``; returns how many went."""
    k, removed = len(stats) - 1, 0  # d is chain[k - 1], k levels below the root
    try:
        while k > 0:
            parent = d.up(stats[k - 1])
            if parent is None:
                break
            d.close()
            d = parent
            if not _rmdir_quiet(d, chain[k - 1]):
                break
            removed += 1
            k -= 1
    finally:
        d.close()
    return removed


def _open_parent(
    path, roots, *, create: bool = False, same_fs: bool = True, like: Like | None = None
) -> tuple[Dir, bytes, list[bytes]]:
    """(verified folder holding ``path``, entry name, components below the root).
    FileNotFoundError if a folder is missing. ``create`` (the acts that put a view file in
    place: copy, link, empty file) is refused inside qbhook's own folders: a torrent may name
    its file ``.qbhook-holding/<run>/x``, and that act would write where only the code that
    made those folders may (root's 0700 holding, the staging of copies in flight). The folders
    ``create`` makes are owned and moded like their counterparts (``like``, ``Dir.sub``)."""
    root, parts = _split_under(path, roots)
    if not parts:
        raise UnsafeOperation(f"{os.fsdecode(_p(path))} is a configured root, not an entry inside one")
    if create and in_own_folder(parts[:-1]):
        raise UnsafeOperation(f"refusing to write {os.fsdecode(_p(path))}: it is inside one of qbhook's own folders")
    return _walk(root, parts[:-1], create=create, same_fs=same_fs, like=like), parts[-1], parts


class Like(NamedTuple):
    """Where the folders and empty files a view's acts make take their owner and mode from: the
    folder ``dst`` (a torrent's new save path) and its counterpart ``src`` (the torrent's current
    save path), read below ``roots``. qBittorrent's user made the source side (its umask, its
    setgid folders); the view must let it and the *arr apps do there what they did at the source
    (delete, rename, create ``.!qB`` files, hardlink-import), whoever owns the folder above it (an
    admin's ``mkdir -p`` as root makes a root:root 0755 seeding root).

    An entry at or below ``dst`` is like the entry at the same place below ``src``; a folder
    above ``dst`` like the one as far above ``src`` while the names on the way agree (a category
    folder made on the target pool is like the one the torrent's save path sits in). ``of``
    normalises the paths; ``of_file``: a copy's, whose source is the torrent's own file."""

    dst: bytes
    src: bytes
    roots: tuple

    @classmethod
    def of(cls, dst, src, roots) -> Like:
        return cls(_normal(dst), _normal(src), tuple(roots))

    @classmethod
    def of_file(cls, dst, src, roots) -> Like:
        return cls.of(os.path.dirname(os.fsencode(dst)), os.path.dirname(os.fsencode(src)), roots)

    def counterpart(self, path: bytes) -> bytes | None:
        """The source side's path of ``path`` (normal, below the destination's root); None if it has none."""
        dst, src = self.dst, self.src
        if path == dst or path.startswith(dst + b"/"):
            return src + path[len(dst) :]
        if dst.startswith(path + b"/"):
            tail = dst[len(path) :]  # "/a/b": the names between path and dst
            if src.endswith(tail) and len(src) > len(tail):
                return src[: -len(tail)]
        return None


def _normal(path) -> bytes:
    return b"/" + os.path.normpath(os.fsencode(path)).lstrip(b"/")


def _model(like: Like | None, path: bytes, made: os.stat_result) -> os.stat_result | None:
    """The one rule for the owner and mode of what qbhook makes in a view: the stat of ``path``'s
    counterpart (``Like.counterpart``), of the same kind as ``made`` (a folder, a regular file),
    reached through verified folders (may cross a nested dataset; a symlink on the way is refused,
    never followed); None when there is none (no ``like``, outside it, missing, refused, another
    kind, or ``made`` itself: a repair whose view is where its torrent was). Read only: what it
    gives is applied through the made entry's descriptor (``_own_like``)."""
    src = like.counterpart(path) if like is not None else None
    if src is None:
        return None
    folder = stat_mod.S_ISDIR(made.st_mode)
    try:
        root, parts = _split_under(src, like.roots)
        if folder:
            with _walk(root, parts, same_fs=False) as d:
                st = d.st
        elif not parts:
            return None
        else:
            with _walk(root, parts[:-1], same_fs=False) as d:
                st = d.lstat(parts[-1])
    except (OSError, QbhookError, NotAFolder, FolderRefused):  # no model to be had: the fallback's
        return None
    if st is None or (st.st_dev, st.st_ino) == (made.st_dev, made.st_ino):
        return None
    return st if (stat_mod.S_ISDIR if folder else stat_mod.S_ISREG)(st.st_mode) else None


def _own_like(fd: int, st: os.stat_result, mode: int | None = None) -> None:
    """``fd`` (an entry qbhook just made) owned and moded like ``st`` (its model), or moded ``mode``.
    Every create is followed by this: the process umask never decides a mode; the model's mode is
    taken through ``_made_mode``.

    The owner stays the model's: the old tree may be written by a less trusted container, but a
    writer that is not root can only own its own uid (and a group it is in), which is the client's
    user, the one that must write there anyway; what root alone could grant is the mode's."""
    if os.geteuid() == 0:
        try:
            os.fchown(fd, st.st_uid, st.st_gid)  # before chmod: chown clears set-id bits
        except OSError:
            pass
    # mkdir's mode went through the umask; set it exactly (chown may also have cleared set-id bits).
    os.fchmod(fd, _made_mode(st) if mode is None else mode)


def _made_mode(st: os.stat_result) -> int:
    """The mode of a folder or file qbhook (root) makes or copies after the model ``st``: the
    model's, less what would let whoever wrote the model (the old tree's writer: maybe a less
    trusted container) reach, through root, further than it can on its own (R39):

    - no set-user-id bit on a folder; set-group-id kept (entries made below inherit the
      folder's group: why people set it, and only a member of that group may have set it);
    - no set-id bit on a file (an empty file made, a copy): a payload needs none, and a set-id
      executable made by root on another pool is not the writer's to ask for;
    - nobody else may write unless the sticky bit is set (a shared folder where only an entry's
      owner may rename or remove it): a world-writable folder made on the target pool would let
      any user there rename away another torrent's view below it. A file's sticky bit means
      nothing on Linux, so a file is never world-writable: a copy may be converged with other
      torrents' files, one inode for all."""
    mode = stat_mod.S_IMODE(st.st_mode)
    if stat_mod.S_ISDIR(st.st_mode):
        mode &= ~stat_mod.S_ISUID
        return mode if mode & stat_mod.S_ISVTX else mode & ~stat_mod.S_IWOTH
    return mode & ~(stat_mod.S_ISUID | stat_mod.S_ISGID | stat_mod.S_IWOTH)


def _rmdir_quiet(d: Dir, name: bytes) -> bool:
    try:
        os.rmdir(name, dir_fd=d.fd)
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- content identity


def _cached_digest(catalog, path, st: os.stat_result, rows: dict | None = None, fs: int | None = None):
    """(inode row id, valid cached digest or None) for the inode ``st`` describes.

    ``rows``: catalog rows a batch read beforehand (``Relinker.prefetch``), keyed (fs, ino).
    ``fs``: the catalog's filesystem row of ``path`` when the caller just looked it up.
    """
    if catalog is None:
        return None, None
    if fs is None:
        fs = catalog.fs_for_path(path, st.st_dev)
    key = (fs, st.st_ino)
    if rows is not None and key in rows:
        row = rows[key]
    else:
        row = catalog.inode_by_key(fs, st.st_ino)
        if rows is not None:
            rows[key] = row
    if row is None:
        return None, None
    # The row's hash is valid for the stat it recorded; the live file must still have that stat.
    if row.hash is not None and (row.size, row.mtime_ns, row.ctime_ns) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
        return row.id, bytes(row.hash)
    return row.id, None


def _content_digest(
    d: Dir,
    name: bytes,
    st: os.stat_result,
    catalog,
    rows: dict | None = None,
    fs: int | None = None,
    pin: Pin | None = None,
) -> bytes:
    """BLAKE3 of the inode ``st`` at ``name`` in ``d``: the catalog's valid cached hash, else read it through ``d``.

    ``fs``: ``_fs_row`` of this entry, when the caller already has it. ``pin``: the caller's pin of
    that entry (``st`` its fstat), read through instead of pinning the name again (one open less,
    and the bytes read are the inode the caller goes on to link)."""
    if st.st_size == 0:
        return hashing.EMPTY_HASH
    fs_path = d.fs_path_for(st)
    row_id, cached = _cached_digest(catalog, fs_path, st, rows, fs) if fs_path is not None else (None, None)
    if cached is not None:
        return cached
    shown = d.show(name)
    fd, before = d.open_file(name) if pin is None else d.reopen(pin, name)
    try:
        digest = hashing.hash_fd(fd)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    res = hashing.HashResult(digest, before, after)
    if (before.st_dev, before.st_ino) != (st.st_dev, st.st_ino) or not res.stable:
        raise VerificationFailed(f"{shown} changed while it was being hashed; try again when it is quiet")
    if row_id is not None and res.settled(CACHE_MIN_AGE_S):
        catalog.store_hash(row_id, res.digest, res.after)
        if rows is not None:  # a batch's copy of the row is older than the hash just stored
            rows.pop((catalog.fs_for_path(fs_path, st.st_dev), st.st_ino), None)
    return res.digest


def _checked_stat(
    d: Dir, name: bytes, size: int, expected: bytes, catalog, pin: Pin | None = None
) -> tuple[str | None, os.stat_result]:
    """(None, the stat the content was proven for) if ``name`` in ``d`` is a regular file with that
    size and content, else (why not, ...). ``pin``: the caller's pin of ``name``, judged (its
    ``st``) and read instead of the name (``_content_digest``)."""
    st = d.lstat(name) if pin is None else pin.st
    shown = d.show(name)
    if st is None:
        return f"{shown} is missing", st
    if not stat_mod.S_ISREG(st.st_mode):
        return f"{shown} is not a regular file", st
    if st.st_size != size:
        return f"{shown} has {st.st_size} bytes, expected {size}", st
    digest = _content_digest(d, name, st, catalog, pin=pin)
    if digest != expected:
        return f"{shown} has different content (blake3 {digest.hex()[:16]}..., expected {expected.hex()[:16]}...)", st
    return None, st


def _check_file(d: Dir, name: bytes, size: int, expected: bytes, catalog) -> str | None:
    """None if ``name`` in ``d`` is a regular file with that size and content, else why not."""
    return _checked_stat(d, name, size, expected, catalog)[0]


def _reading_parent(path, roots, label: str) -> tuple[Dir, bytes]:
    """The verified folder (reads may cross a nested dataset) and name of a file to read;
    VerificationFailed "<label> is missing" if a folder on the way is not there."""
    try:
        parent, name, _parts = _open_parent(path, roots, same_fs=False)
    except (FileNotFoundError, NotADirectoryError):
        raise VerificationFailed(f"{label} is missing") from None
    return parent, name


def verify_file(path, size: int, blake3_hex, catalog=None, *, roots) -> os.stat_result:
    """The stat ``path`` was verified under, if it holds exactly the expected content;
    VerificationFailed (saying why) otherwise.

    Uses the catalog's cached hash of the inode when it is still valid for the
    live stat, so verifying a freshly copied or linked view costs a stat, not a read.
    The file is reached through verified folders below one of ``roots``. The stat returned is
    the one the proof holds for (what a caller compares later), not a second look by name.
    """
    parent, name = _reading_parent(path, roots, os.fsdecode(_p(path)))
    with parent:
        problem, st = _checked_stat(parent, name, size, _digest(blake3_hex, size), catalog)
    if problem:
        raise VerificationFailed(problem)
    return st


def file_matches(path, size: int, blake3_hex, catalog=None, *, roots) -> bool:
    """Like verify_file but answers False instead of raising (missing counts as no match)."""
    try:
        verify_file(path, size, blake3_hex, catalog, roots=roots)
    except VerificationFailed:
        return False
    return True


# --------------------------------------------------------------------------- copy


def _staging_name(name: bytes, pid: int | None = None) -> bytes:
    """``<pid>.<name>``: the staged file of a copy to ``name`` by process ``pid`` (default: this one).

    A name too long to follow whole is replaced by its tag: ``<pid>~<tag>`` (``_name_tag``), a
    fixed length. Cut to fit, it could split a UTF-8 character, which a ``utf8only=on`` dataset
    refuses (EILSEQ), so a copy of a long CJK title failed every run. No dot after the pid: never
    the shape of a name that fits, so no other destination's staged file is ever taken for it.
    Every other name keeps the shape older versions gave it, so their leftovers are found as
    before; a long name's cut one is recognised too (``_staged_for``)."""
    pid_b = b"%d" % (os.getpid() if pid is None else pid)
    if len(pid_b) + 1 + len(name) <= NAME_MAX:
        return pid_b + b"." + name
    return pid_b + b"~" + _name_tag(name)


def _staged_for(entry: bytes, name: bytes) -> int | None:
    """The pid of ``entry`` if it is a staged file of a copy to ``name`` (``_staging_name``, or the
    cut name older versions gave a long name: ``<pid>.<name cut at a byte>``), else None."""
    digits = len(entry) - len(entry.lstrip(b"0123456789"))
    pid_s, rest = entry[:digits], entry[digits:]
    if not pid_s:
        return None
    pid = int(pid_s)
    if entry == _staging_name(name, pid) or rest == b"." + name[: NAME_MAX - len(pid_s) - 1]:
        return pid
    return None


def _clean_stale_staging(staging: Dir, name: bytes, done: os.stat_result | None = None) -> int:
    """Remove leftovers of earlier attempts at this destination (lesson 7: staging never lingers).

    A leftover belongs to a dead process, or to this one (one copy per destination at a
    time, under the group lock). A live other process's file is left alone, unless it is a
    link of ``done`` (the destination already in place): then it is a spare link of the copy
    whatever its pid (the killed run's pid reused by a live process), and the destination's
    name keeps the inode. Only names in the verified staging folder are touched, never what
    a link there points at. Returns how many went.
    """
    me = os.getpid()
    removed = 0
    for entry in os.listdir(staging.fd):
        entry = os.fsencode(entry)
        pid = _staged_for(entry, name)
        if pid is None:
            continue
        if pid == me or not pid_alive(pid) or _links_of(staging, entry, done):
            try:
                # By name after a look, safely: staging is qbhook's own 0700 folder, nobody renames into it.
                os.unlink(entry, dir_fd=staging.fd)
                removed += 1
            except (FileNotFoundError, IsADirectoryError):
                pass
    return removed


def _links_of(d: Dir, entry: bytes, st: os.stat_result | None) -> bool:
    """Is ``entry`` in ``d`` a link of the regular file ``st`` (None: nothing to compare with)?"""
    if st is None:
        return False
    est = d.lstat(entry)
    return est is not None and stat_mod.S_ISREG(est.st_mode) and (est.st_dev, est.st_ino) == (st.st_dev, st.st_ino)


def _clean_staging_of_done_copy(parent: Dir, name: bytes, st: os.stat_result) -> bool:
    """The staging leftovers of a destination already in place, removed (``_clean_stale_staging``).

    A copy killed (or a power cut) between linking its staged file to the destination and
    unlinking the staged name leaves that name as a second link of the new copy: nlink 2 reads
    as a library link to the planner, a delete and the leftover cleanup. The resume finds the
    destination present and never reaches the staging step, so it cleans here. The staging
    folder is only looked into, never made; only names in it are removed, never the destination.
    True if one went. A staging folder qbhook did not make (a symlink, another owner) holds
    nothing of its own: left alone here, refused by the next copy that needs it. A staged link
    of the destination (``st``) goes even if its pid names a live process: a reused pid.
    """
    try:
        staging = parent.sub(STAGING_DIR.encode(), own=True)
    except (FileNotFoundError, NotADirectoryError, UnsafeOperation):
        return False
    with staging:
        removed = _clean_stale_staging(staging, name, st if stat_mod.S_ISREG(st.st_mode) else None)
        if removed:
            os.fsync(staging.fd)
    if removed:
        _rmdir_quiet(parent, STAGING_DIR.encode())
    return removed > 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_free_space(folder: Dir, need: int, reserve: Reserve) -> None:
    """ENOSPC before a byte is written when ``need`` bytes would not leave ``reserve`` free on the
    filesystem of ``folder`` (``space.fits``). A free space that cannot be read refuses the copy
    (as ``Executor._check_room`` refuses the group): a resumed group skips that check, so this
    one is all that keeps ``policy.min_free``, and failing open copied with no reserve at all
    (R21). With no reserve to keep, the write's own ENOSPC is the check: left to it."""
    try:
        space = space_of(folder.fd)
    except OSError as e:
        if reserve.amount <= 0:
            return
        raise OSError(
            e.errno or errno.EIO,
            f"the free space of the filesystem of {folder.show()} cannot be read ({e.strerror or e}): "
            f"not copied, the reserve {reserve} (policy.min_free) cannot be kept",
        ) from None
    if fits(need, space.avail, size=space.size, reserve=reserve):
        return
    why = (
        f"needs {_human(need)}, {_human(space.avail)} free"
        if need > space.avail
        else leaves(need, space.avail, size=space.size, reserve=reserve)
    )
    raise OSError(errno.ENOSPC, f"not enough space on the filesystem of {folder.show()}: {why}")


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
            except BaseException as e:
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
    """The source's owner, mode, atime and mtime on the copy (not its xattrs or ACLs)."""
    _own_like(dst_fd, sst)
    os.utime(dst_fd, ns=(sst.st_atime_ns, sst.st_mtime_ns))


def _existing_copy(d: Dir, name: bytes, st: os.stat_result | None, size: int, expected: bytes, catalog) -> Act:
    shown = d.show(name)
    if st is None:
        raise UnsafeOperation(f"{shown} keeps changing under us")
    if not stat_mod.S_ISREG(st.st_mode):
        raise UnsafeOperation(f"different content at {shown}: it exists and is not a regular file")
    if st.st_size != size or _content_digest(d, name, st, catalog) != expected:
        raise UnsafeOperation(
            f"different content at {shown}: refusing to overwrite it",
            hint="the plan is stale or something else wrote there; re-plan",
        )
    # ``st`` is the stat the content was proven for (the cache keys on it, a read checks it).
    return Act(ActStatus.PRESENT, st, {"bytes_written": 0, "blake3": expected.hex()})


def _open_source(src, roots) -> tuple[int, str | None]:
    """The copy source, opened read-only through verified folders (reads may cross a nested
    dataset), and its folder's fs_path (Dir.fs_path_for: None if the file is on another filesystem).
    With hashing's flags: O_NOATIME as root, since a library may link the source and a read must
    not change its metadata. Pinned and checked before it is opened (``dirfd.open_file_at``): a
    device planted at the source is refused without being opened."""
    shown = os.fsdecode(_p(src))
    parent, name = _reading_parent(src, roots, f"copy source {shown}")
    with parent:
        try:
            fd, st = open_file_at(name, parent.fd, hashing._READ_FLAGS)
        except FileNotFoundError:
            raise VerificationFailed(f"copy source {shown} is missing") from None
        except NotRegular:
            raise UnsafeOperation(f"copy source {shown} is not a regular file") from None
        except EntryChanged:
            raise UnsafeOperation(f"copy source {shown} was swapped for another file while qbhook opened it") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafeOperation(f"copy source {shown} is a symlink") from None
            raise
        return fd, parent.fs_path_for(st)


def copy_verified(
    src,
    dst,
    expected_blake3_hex,
    expected_size: int,
    *,
    roots,
    src_roots=None,
    catalog=None,
    readback: bool = False,
    reserve: Reserve = NO_RESERVE,
    like: Like | None = None,
) -> Act:
    """Copy ``src`` to ``dst`` (usually another pool), proving the bytes are the planned content.

    The data goes to ``<dst folder>/.qbhook-staging/<pid>.<name>`` (``_staging_name``; same
    folder, so the same dataset: the final link is atomic), is hashed while copied, fsynced, gets the
    source's mode, owner and mtime, and only then is hardlinked to ``dst`` - link()
    never replaces an existing name, rename() would. Returns an ``Act`` (``{status:
    copied|present, bytes_written, blake3}``; ``after``: ``dst``'s lstat right after qbhook's last
    act on it, proven to be the inode written, with the size and mtime it was written with). Any
    failure removes the staged file; the source is only read. Both ends are reached through
    verified folders: ``dst`` below ``roots`` (the seeding roots: a view goes nowhere else), ``src``
    below ``src_roots`` (default ``roots``); the staging folder is qbhook's own (0700, owned by it,
    on the destination's filesystem). A copy that would not leave ``reserve`` free there (the
    executor passes ``policy.min_free``) is refused with ENOSPC before a byte is written. Folders
    it makes are like their counterparts (``like``; by default ``src``'s folder is ``dst``'s).

    ``expected_blake3_hex`` None: the plan did not pre-hash the source (nothing on the target
    could be reused). The content is then what the source holds: the same single pass hashes
    it (one read of each byte), the source must not change while it is read (fstat before and
    after: inode, size, mtime, ctime), and the result's ``blake3`` is that hash, which the caller
    passes on to every later step. A settled source's hash is cached in the catalog for the
    stat it was read under (``source_hash_cached``): the unlink of that source later proves it
    unchanged by that stat, or reads it again. An existing ``dst`` (a resume after a crash) is
    accepted only if it hashes like the source does now.
    """
    expected = None if expected_blake3_hex is None and expected_size else _digest(expected_blake3_hex, expected_size)
    src_roots = roots if src_roots is None else src_roots
    parent, name, _parts = _open_parent(dst, roots, create=True, like=like or Like.of_file(dst, src, src_roots))
    with parent:
        st = parent.lstat(name)
        if st is not None:
            return _copy_found_in_place(parent, name, st, src, src_roots, catalog, expected, expected_size)
        src_shown = os.fsdecode(_p(src))
        src_fd, src_fs_path = _open_source(src, src_roots)
        staging = None
        staged = None
        try:
            sst = _checked_source(src_fd, expected_size, src_shown)
            staging = parent.sub(STAGING_DIR.encode(), create=True, own=True)
            _clean_stale_staging(staging, name)
            _check_free_space(staging, expected_size, reserve)
            candidate = _staging_name(name)
            written, digest, wst = _write_staged(staging, candidate, src_fd, sst, expected, expected_size, src_shown)
            staged = candidate
            if readback:
                _readback(staging, staged, digest)
            try:
                os.link(staged, name, src_dir_fd=staging.fd, dst_dir_fd=parent.fd, follow_symlinks=False)
            except FileExistsError:
                # Someone else put a file there while we copied: same content is fine, anything else is not ours.
                result = _existing_copy(parent, name, parent.lstat(name), expected_size, digest, catalog)
            else:
                result = None
            os.unlink(staged, dir_fd=staging.fd)  # its own temp name in its own 0700 staging folder
            staged = None
            # The hash is cached for this stat, ctime included: taken right after our last act (link
            # and unlink move the ctime), not after the slow fsync, so any later write leaves it stale
            # (a write between the link and here moves the ctime as ours do: no stat can tell).
            last = parent.lstat(name) if result is None else None
            # fsync(parent) below makes only the destination's link durable: a power cut must not
            # bring the staged name back as a second link of the copy (one folder fsync per copy).
            os.fsync(staging.fd)
            if result is None:
                result = _copied(dst, last, wst, written, digest)
            if expected is None:
                result.facts["source_hash_cached"] = _remember_source_digest(catalog, src_fs_path, src_fd, sst, digest)
            os.fsync(parent.fd)
            return result
        finally:
            os.close(src_fd)
            if staging is not None:
                _close_staging(parent, staging, staged)


def _copied(dst, last: os.stat_result | None, wst: os.stat_result, written: int, digest: bytes) -> Act:
    """The copy's Act: ``last`` (``dst``'s lstat after the link) is the inode written, and nothing
    wrote to it before that lstat (size, mtime as written)."""
    after = _is_made(last, wst, os.fsdecode(_p(dst)))
    if (after.st_size, after.st_mtime_ns) != (wst.st_size, wst.st_mtime_ns):
        raise UnsafeOperation(f"{os.fsdecode(_p(dst))} was written to right after qbhook copied it")
    return Act(ActStatus.COPIED, after, {"bytes_written": written, "blake3": digest.hex()})


def _close_staging(parent: Dir, staging: Dir, staged: bytes | None) -> None:
    """A copy's way out: its staged file still there (it failed) removed, the staging folder
    closed and removed if it holds nothing else."""
    if staged is not None:
        try:
            os.unlink(staged, dir_fd=staging.fd)
        except FileNotFoundError:
            pass
    staging.close()
    _rmdir_quiet(parent, STAGING_DIR.encode())


def _copy_found_in_place(
    parent: Dir, name: bytes, st: os.stat_result, src, src_roots, catalog, expected: bytes | None, expected_size: int
) -> Act:
    """``copy_verified`` when its destination already exists (a resume): the killed run's staging
    cleaned, then the destination proven to hold the content (``_existing_copy``)."""
    if _clean_staging_of_done_copy(parent, name, st):
        st = parent.lstat(name)  # the staged link's unlink moved its ctime
    if expected is None:
        expected = _source_digest(src, src_roots, catalog)
    return _existing_copy(parent, name, st, expected_size, expected, catalog)


def _checked_source(src_fd: int, expected_size: int, src_shown: str) -> os.stat_result:
    """The opened source is still a regular file of the planned size."""
    sst = os.fstat(src_fd)
    if not stat_mod.S_ISREG(sst.st_mode):
        raise UnsafeOperation(f"copy source {src_shown} is not a regular file")
    if sst.st_size != expected_size:
        raise VerificationFailed(
            f"copy source {src_shown} has {sst.st_size} bytes, the plan says {expected_size}: it changed since planning"
        )
    return sst


def _write_staged(
    staging: Dir,
    candidate: bytes,
    src_fd: int,
    sst: os.stat_result,
    expected: bytes | None,
    expected_size: int,
    src_shown: str,
) -> tuple[int, bytes, os.stat_result]:
    """Create ``candidate`` in the staging folder (never an existing name), copy while hashing,
    prove the bytes are the planned content, copy the metadata, fsync. Returns (bytes written,
    their hash, the staged file's fstat once complete). ``expected`` None: no planned content,
    so the source must instead be proven unchanged over the copy (``_source_held_still``). On
    any failure after creating it, the staged file is removed (a name it did not create is never touched: O_EXCL)."""
    dst_fd = os.open(
        candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=staging.fd
    )
    try:
        try:
            digest, written = _copy_hashing(src_fd, dst_fd)
            if expected is None:
                _source_held_still(src_fd, sst, written, expected_size, src_shown)
            elif written != expected_size or digest != expected:
                raise VerificationFailed(
                    f"copy of {src_shown} does not match the plan: read {written} bytes with blake3 "
                    f"{digest.hex()[:16]}..., expected {expected_size} bytes with {expected.hex()[:16]}...",
                    hint="the source changed or is damaged; nothing was written to the destination",
                )
            _copy_metadata(sst, dst_fd)
            os.fsync(dst_fd)
            wst = os.fstat(dst_fd)
        finally:
            os.close(dst_fd)
    except BaseException:
        try:
            os.unlink(candidate, dir_fd=staging.fd)
        except FileNotFoundError:
            pass
        raise
    return written, digest, wst


def _source_held_still(src_fd: int, sst: os.stat_result, written: int, expected_size: int, src_shown: str) -> None:
    """With no planned hash, the hash of what was read is the source's only if nothing wrote to
    it meanwhile: same inode, size, mtime and ctime after the copy as before it."""
    after = os.fstat(src_fd)
    if written != expected_size or not hashing.HashResult(b"", sst, after).stable:
        raise VerificationFailed(
            f"copy source {src_shown} changed while it was copied ({written} bytes read, {expected_size} planned)",
            hint="something is writing to it; nothing was written to the destination, try again when it is quiet",
        )


def _source_digest(src, roots, catalog) -> bytes:
    """The source's content hash as it is now (the catalog's, if still valid for its stat, else read)."""
    with _regular_file(src, roots, "copy source") as (sdir, sname, pin, sst):
        return _content_digest(sdir, sname, sst, catalog, pin=pin)


@contextmanager
def _regular_file(path, roots, what: str) -> Iterator[tuple[Dir, bytes, Pin, os.stat_result]]:
    """(its verified folder, name, its pin, the pin's fstat) of the regular file at ``path`` below
    ``roots`` (reads may cross a nested dataset); VerificationFailed if it is missing,
    UnsafeOperation if it is anything but a regular file (never opened: ``dirfd.pin_file``). ``what``
    names it in the message ("copy source", "link source"). An act on the file goes through the
    pin (``Pin.link``), so it acts on the inode checked, not on what the name holds then; and the
    pin, held until the caller is done, keeps the inode's number its own (``CarryProof``)."""
    shown = os.fsdecode(_p(path))
    parent, name = _reading_parent(path, roots, f"{what} {shown}")
    with parent:
        try:
            pin = pin_file(name, parent.fd)
        except FileNotFoundError:
            raise VerificationFailed(f"{what} {shown} is missing") from None
        except NotRegular:
            raise UnsafeOperation(f"{what} {shown} is not a regular file") from None
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise UnsafeOperation(f"{what} {shown} is not a regular file") from None
        with pin:
            yield parent, name, pin, pin.st


def _remember_source_digest(catalog, fs_path: str | None, src_fd: int, sst: os.stat_result, digest: bytes) -> bool:
    """Cache ``digest`` as the source inode's hash, for the stat it was read under, if it is settled
    (a write in the same clock tick as its last one could leave the stat unchanged) and the catalog
    knows the inode. ``fs_path``: the source folder's Dir.fs_path_for, never the source path (a
    writer controls that one). True if cached."""
    res = hashing.HashResult(digest, sst, os.fstat(src_fd))
    if catalog is None or fs_path is None or not res.settled(CACHE_MIN_AGE_S):
        return False
    row_id, _cached = _cached_digest(catalog, fs_path, res.after)
    if row_id is None:
        return False
    catalog.store_hash(row_id, digest, res.after)
    return True


def _readback(staging: Dir, name: bytes, expected: bytes) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=staging.fd)
    try:
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # read the disk, not the cache (best effort)
        except (OSError, AttributeError):
            pass
        digest = hashing.hash_fd(fd)
    finally:
        os.close(fd)
    if digest != expected:
        raise VerificationFailed(f"read-back of {staging.show(name)} does not match what was written")


# --------------------------------------------------------------------------- link / empty


def link_into(
    src,
    dst,
    *,
    roots,
    src_roots=None,
    size: int | None = None,
    blake3_hex=None,
    catalog=None,
    verify_source: bool = False,
    like: Like | None = None,
    client_groups: Mapping[int, frozenset[int]] | None = None,
) -> Act:
    """Hardlink ``dst`` to the inode at ``src`` (same dataset), creating folders (owned and moded
    like their counterparts, ``like``: ``src`` is a donor, anywhere, so only the caller knows them).
    ``client_groups`` (a move's: ``policy.client_groups``; None, a repair's: not asked): ``_source_fits``,
    and ``_present_fits`` for a same-content file found at ``dst``.

    Returns an ``Act`` with status ``linked``, ``already`` if ``dst`` is that inode,
    ``present`` if it is another inode with the same content. Anything else at ``dst``
    raises UnsafeOperation. Both ends are reached through verified folders: ``dst`` below
    ``roots`` (the seeding roots), ``src`` below ``src_roots`` (default ``roots``). ``after``
    is ``dst``'s lstat proven to be that inode; ``carry`` (linked) the hash carry-over's warrant
    (the source pinned from right before the link until ``after``). ``verify_source``: the
    source must hold ``blake3_hex`` right before the link (the catalog's valid cached hash, else
    a read), for a source the plan chose minutes earlier among files others write (a repair's
    catalog copy, maybe a library file a tagger rewrote in place at the same size).
    """
    src_shown, dst_shown = os.fsdecode(_p(src)), os.fsdecode(_p(dst))
    with _regular_file(src, roots if src_roots is None else src_roots, "link source") as (sdir, sname, pin, sst):
        _source_fits(sst, size, like, dst, client_groups, src_shown, dst_shown)
        if verify_source and _content_digest(sdir, sname, sst, catalog, pin=pin) != _digest(blake3_hex, sst.st_size):
            raise VerificationFailed(f"link source {src_shown} no longer holds the planned content")
        ddir, dname, _parts = _open_parent(dst, roots, create=True, like=like)
        # The source stays pinned (``_regular_file``) until the link's ``after`` is taken: a hash may
        # be carried onto it only so, since no other file can take a pinned inode's number
        # (``CarryProof``). Its stat right before the link is what that hash must be valid for: the
        # checks above may have taken minutes (a verify_source read), and a rewrite meanwhile moved
        # the ctime. An fstat of the pin: no name is resolved again.
        with ddir:
            before = pin.look()
            for _attempt in range(2):
                st = ddir.lstat(dname)
                if st is not None:
                    if (st.st_dev, st.st_ino) == (sst.st_dev, sst.st_ino):
                        return Act(ActStatus.ALREADY, st)
                    if not stat_mod.S_ISREG(st.st_mode) or st.st_size != sst.st_size:
                        raise UnsafeOperation(f"different content at {dst_shown}: refusing to replace it")
                    want = (
                        _digest(blake3_hex, sst.st_size)
                        if (blake3_hex is not None or sst.st_size == 0)
                        else _content_digest(sdir, sname, sst, catalog, pin=pin)
                    )
                    if _content_digest(ddir, dname, st, catalog) != want:
                        raise UnsafeOperation(f"different content at {dst_shown}: refusing to replace it")
                    return Act(ActStatus.PRESENT, _present_fits(st, like, dst, client_groups, dst_shown))
                try:
                    # The inode checked, not what the source's name holds now (a writer may have
                    # renamed a hard link of a library file over it since the check).
                    pin.link(dname, ddir.fd, sname, sdir.fd)
                except FileExistsError:
                    continue  # raced with another writer: judge what is there now
                except OSError as e:
                    if e.errno == errno.EXDEV:
                        raise UnsafeOperation(
                            f"cannot hardlink {src_shown} to {dst_shown}: "
                            "different filesystems (the plan should have copied)"
                        ) from None
                    raise
                # The new name must be the source's inode before anyone records or builds on it:
                # a writer of the folder could rename another file over it right after the link.
                # The link was of the pinned inode, so another inode there was put there after it.
                after = _linked_is(ddir, dname, sst, dst_shown)
                return Act(ActStatus.LINKED, after, carry=CarryProof.across(pin, after, before))
    raise UnsafeOperation(f"{dst_shown} keeps changing under us")


def _source_fits(
    sst: os.stat_result,
    size: int | None,
    like: Like | None,
    dst,
    groups: Mapping[int, frozenset[int]] | None,
    src_shown: str,
    dst_shown: str,
) -> None:
    """The link source (``sst``) has the planned ``size``, and, ``groups`` given, takes no access from
    the owner of the torrent's own file, ``dst``'s counterpart (``like``): the donor must give that
    owner the access that file gave it (``access.access_lost``, as a relink's copy to keep must:
    ``relink_over``), since the name would show the donor's owner and mode, never changed (a library
    file is not qbhook's). No counterpart, or the donor itself: nothing to compare (``_model``).
    ``groups``: ``policy.client_groups`` by uid."""
    if size is not None and sst.st_size != size:
        raise VerificationFailed(f"link source {src_shown} has {sst.st_size} bytes, expected {size}")
    if taken := _access_taken(sst, like, dst, groups):
        raise UnsafeOperation(
            f"refusing to link {dst_shown} to {src_shown}: the link source {taken}",
            hint="give that user this access to the source file (its group, or policy.client_groups), then re-plan",
        )


def _present_fits(
    st: os.stat_result, like: Like | None, dst, groups: Mapping[int, frozenset[int]] | None, dst_shown: str
) -> os.stat_result:
    """``st``, a same-content file found at ``dst`` instead of a link, once ``_source_fits``'s access
    rule passes for it: it becomes the torrent's file as it is (owner and mode never changed), so it
    must give the owner of the torrent's own file what that file gave (R45: one put there since
    planning, root:root 0600, took read and write from the client's uid)."""
    if taken := _access_taken(st, like, dst, groups):
        raise UnsafeOperation(
            f"refusing to take {dst_shown} as the torrent's file: the same content already there {taken}",
            hint="give that user this access to that file (its group, or policy.client_groups), "
            "or remove it, then re-plan",
        )
    return st


def _access_taken(
    kst: os.stat_result, like: Like | None, dst, groups: Mapping[int, frozenset[int]] | None
) -> str | None:
    """The one access rule of a file that would become the torrent's file at ``dst`` as it is
    (``kst``: a link source, or a file found there): what it would take from the owner of the
    torrent's own file, ``dst``'s counterpart (``like``), said for a person after the file's name;
    None when nothing, ``groups`` is None (not asked), or there is nothing to compare (``_model``:
    no counterpart, or ``kst`` itself). ``groups``: ``policy.client_groups`` by uid."""
    own = _model(like, _normal(dst), kst) if groups is not None else None
    if own is None:
        return None
    kacc = (kst.st_mode, kst.st_uid, kst.st_gid)
    if lost := access_lost(kacc, (own.st_mode, own.st_uid, own.st_gid), groups.get(own.st_uid)):
        theirs = os.fsdecode(like.counterpart(_normal(dst)) or b"?")
        return f"{lost_reason(lost, kacc, own.st_uid)}, the owner of the torrent's file {theirs}"
    return None


def _linked_is(d: Dir, name: bytes, want: os.stat_result, shown: str) -> os.stat_result:
    """``_made_is`` for a link of a pinned inode (``Pin.link``): the link made was that
    inode, so another one at the name was put there after the link, by a writer of that folder."""
    now = d.lstat(name)
    if now is None or (now.st_dev, now.st_ino) != (want.st_dev, want.st_ino):
        raise UnsafeOperation(
            f"{shown} was replaced right after qbhook linked it: another file took the name of the link",
            hint="something is renaming files in that folder; look at it, then re-plan",
        )
    return now


def _made_is(d: Dir, name: bytes, want: os.stat_result, shown: str) -> os.stat_result:
    """The lstat of ``name`` in ``d`` right after qbhook made it, if it is the inode ``want``.

    Taken through the verified folder the act used. Another inode there means a writer swapped
    the entry after the act: what the act vouches for (a link of a known inode, with a known
    hash) is not what the name holds, so nothing may be recorded or built on it."""
    return _is_made(d.lstat(name), want, shown)


def _is_made(now: os.stat_result | None, want: os.stat_result, shown: str) -> os.stat_result:
    """``now`` (an lstat taken right after an act, by ``_made_is`` or its caller), if it is the inode ``want``."""
    if now is None or (now.st_dev, now.st_ino) != (want.st_dev, want.st_ino):
        raise UnsafeOperation(
            f"{shown} changed right after qbhook made it: it is not the file qbhook linked there",
            hint="something is renaming files in that folder; look at it, then re-plan",
        )
    return now


def make_empty(dst, *, roots, like: Like | None = None) -> Act:
    """A zero-length file at ``dst`` (below ``roots``: the seeding roots); never replaces an
    existing non-empty file (lesson 8).
    An ``Act`` (``created`` or ``present``) whose ``after`` is the empty file's lstat.

    Owned and moded like its counterpart (``like``: the torrent's own empty file at the source,
    ``_model``), else owned like its folder and moded as qBittorrent's usual umask 002 would make
    it where its group may write (0664: an *arr of the group can hardlink-import it), else 0644."""
    shown = os.fsdecode(_p(dst))
    d, name, _parts = _open_parent(dst, roots, create=True, like=like)
    with d:
        for _attempt in range(2):
            st = d.lstat(name)
            if st is not None:
                if stat_mod.S_ISREG(st.st_mode) and st.st_size == 0:
                    return Act(ActStatus.PRESENT, st)
                raise UnsafeOperation(f"different content at {shown}: refusing to replace it with an empty file")
            try:
                fd = os.open(
                    name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=d.fd
                )
            except FileExistsError:
                continue
            try:
                made = os.fstat(fd)
                model = _model(like, d.path.rstrip(b"/") + b"/" + name, made)
                if model is not None:
                    _own_like(fd, model)
                else:  # owned like its folder (qBittorrent's user), not like qbhook
                    _own_like(fd, d.st, mode=0o664 if d.st.st_mode & stat_mod.S_IWGRP else 0o644)
                made = os.fstat(fd)
            finally:
                os.close(fd)
            return Act(ActStatus.CREATED, _made_is(d, name, made, shown))
    raise UnsafeOperation(f"{shown} keeps changing under us")


# --------------------------------------------------------------------------- converge (relink over)


RELINK_PREFIX = _RELINK_PREFIX.encode()  # its home: qbhook.paths, which the convergence planner reads too


def _relink_name(name: bytes, ino: int) -> bytes:
    """``.qbhook-relink.<victim inode>.<name>``: the temporary name of a relink of ``name``.

    One fixed name per planned victim, no pid and not the kept inode: a crashed attempt's
    leftover is found with one lstat (a listdir per relink would be quadratic in a flat
    cross-seed folder) by any later attempt at this victim, whichever copy a re-plan keeps
    now. The victim's inode, in hex, makes it a name no torrent owns: a torrent's names are
    chosen by its author, this number by this filesystem, so a spare link under it is
    qbhook's to remove (``_clean_stale_relink``). The group lock keeps two qbhook processes
    from relinking the same entry at once. A leftover under the names of older versions
    (``.qbhook-relink.<name>``, which a torrent may own too) is never taken for qbhook's.

    A name too long to follow whole is replaced by its tag (``_name_tag``): cut to fit, it could
    split a UTF-8 character, which a ``utf8only=on`` dataset refuses (EILSEQ), every run. Every
    other name keeps the shape older versions gave it, so their leftovers are found as before;
    a long name's cut one is looked for too (``_clean_legacy_relink``)."""
    head = RELINK_PREFIX + b"%x." % ino
    if len(head) + len(name) <= NAME_MAX:
        return head + name
    return head + b"~" + _name_tag(name)


def _legacy_relink_name(name: bytes, ino: int) -> bytes | None:
    """The temporary name older versions gave a relink of a name too long to follow whole (cut at
    a byte); None when ``_relink_name`` is that name."""
    head = RELINK_PREFIX + b"%x." % ino
    return head + name[: NAME_MAX - len(head)] if len(head) + len(name) > NAME_MAX else None


def _clean_legacy_relink(d: Dir, name: bytes, ino: int) -> None:
    """A spare link an older version's crashed relink of a long ``name`` left under its cut name,
    removed (``_clean_stale_relink``); one lstat, only for such a name. Anything else there is
    left: not qbhook's, or a name this filesystem refuses (EILSEQ: never made)."""
    old = _legacy_relink_name(name, ino)
    if old is not None:
        try:
            _clean_stale_relink(d, old)
        except (UnsafeOperation, OSError):
            pass


def _clean_stale_relink(d: Dir, tmp: bytes) -> None:
    """Remove the temporary link an earlier (crashed) relink left in ``d`` as ``tmp``, if it is a spare link.

    Spare: a regular file with another link (nlink > 1), so removing this name loses no
    content: the copy kept then (the copy to keep now, or one a re-plan dropped), or the
    victim itself. The name carries the victim's inode (``_relink_name``), so it is
    qbhook's. The last link of a file, or anything not a regular file, is not qbhook's to
    remove: it is left alone and the relink refuses.
    """
    st = d.lstat(tmp)
    if st is None:
        return
    if not stat_mod.S_ISREG(st.st_mode) or st.st_nlink < 2:
        raise UnsafeOperation(
            f"{d.show(tmp)} exists and is not a spare link of a file: not qbhook's, leaving it",
            hint="remove or rename it",
        )
    # By name after a look, in a seeding folder: the name carries an inode number, no torrent's, so
    # only a writer of the folder can rename a file onto it meanwhile, who could unlink that file too.
    try:
        os.unlink(tmp, dir_fd=d.fd)
    except FileNotFoundError:
        pass


def _drop_leftover(parent: Dir, name: bytes, ino: int) -> None:
    """After a refusal: the temporary link a crashed attempt left beside ``name`` removed, if it is
    a spare link (``_clean_stale_relink``), even though this attempt stopped before making its
    own. Looked for only when a relink refuses: never on the way to a rename."""
    try:
        _clean_stale_relink(parent, _relink_name(name, ino))
    except (UnsafeOperation, OSError):
        pass  # not qbhook's, or not to be had: the refusal is what the caller needs to hear
    _clean_legacy_relink(parent, name, ino)


def _link_temp(kpin: Pin, kdir: Dir, kname: bytes, parent: Dir, tmp: bytes, why: str) -> None:
    """Link the kept inode (pinned as ``kpin``: ``Pin.link``) as ``tmp`` in ``parent``.

    The name is normally free, so it is only looked at when the link finds it taken: a crashed
    attempt's leftover (a spare link) is removed and the link made again; anything else there
    is not qbhook's and the relink refuses (``_clean_stale_relink``). One lstat per
    relink fewer than looking first, which on a FUSE dataset is a round trip to the daemon.
    """
    for again in (False, True):
        try:
            kpin.link(tmp, parent.fd, kname, kdir.fd)
            return
        except FileExistsError:
            if again:
                taken = f"the temporary name {parent.show(tmp)} is taken by another file"
                raise UnsafeOperation(f"{why}: {taken}") from None
            _clean_stale_relink(parent, tmp)
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise UnsafeOperation(f"{why}: different filesystems") from None
            raise


def relink_over(
    path,
    keep_path,
    target: RelinkTarget,
    *,
    seeding_roots,
    keep_roots=(),
    catalog,
    on_temp_link: Callable[[], None] | None = None,
    client_groups: Mapping[int, frozenset[int]] | None = None,
) -> dict:
    """Replace the seeding link ``path`` by a hardlink to the kept inode at ``keep_path`` (same dataset).

    Same-pool convergence (qbhook/decide/converge.py): the bytes at ``path`` stay the same, only
    the inode behind the name changes, so a torrent client keeps seeding without a
    relocation. Right before acting, every planned fact (``target``) is re-checked through verified
    folder descriptors: ``path`` is inside a seeding root (never in qbhook's own folders),
    still inode ``ino`` on ``fsid`` with the planned size (and mtime); ``keep_path`` (inside a
    seeding root or one of ``keep_roots``; it is only linked from, never changed) is still
    inode ``keep_ino`` on ``keep_fsid``, on the same filesystem, giving the replaced file's owner
    the access the replaced file gave it (``access.access_lost``: read, and write if it was
    writable by its owner; ``client_groups``: ``policy.client_groups``, each user's groups where
    known); both hold the planned BLAKE3 (the catalog's hash when still valid for
    the live stat, else read now). The keeper is looked at again (a file rewritten while the
    victim was read is refused). Then the kept inode is linked under a temporary name
    (``_relink_name``) in the very folder descriptor the checks used, the
    victim and the keeper are looked at once more, the folder is proven still below its
    seeding root (``Dir.in_place``: not moved into the library while the checks ran), and
    ``renameat`` atomically puts the link over the old name: at every instant ``path``
    names the planned content.

    This is the one place qbhook renames over a name. What it replaces is an entry of a
    verified seeding folder (if a writer swaps that entry after the last look, the writer
    could have removed it itself); what it puts there is a link of content proven equal.

    Idempotent: ``path`` already the kept inode answers ``already``; a temporary name a
    crashed attempt left behind (a link of the kept inode) is removed first.
    ``on_temp_link`` (tests) runs between the temporary link and the rename.
    Returns ``{status: relinked|already, bytes_freed, nlink_before}``.

    One relink, fsynced on its own. Many at once: ``Relinker`` (the same checks per file).
    """
    with Relinker(seeding_roots, keep_roots, catalog, sync_each=True, client_groups=client_groups) as r:
        return r.relink(path, keep_path, target, on_temp_link=on_temp_link)


# Folders a Relinker keeps open at most (each a descriptor; serve's budget counts them:
# events.server.FD_BUDGET). A batch relinks file after file of few folders.
RELINK_MAX_OPEN = 256
# Replaced inodes a Relinker's queue holds at most, waiting for ``_Releaser``'s threads to let them
# go (each a descriptor; serve's budget counts them, with the ones being closed and the one in hand).
RELEASE_DEPTH = 64
# Threads letting go of them: a discarding disk overlaps a few frees at once (bench/relink_waits.py:
# 10,000 frees took 3.9 s in one process, 2.7 s in three, 2.0 s in eight, on ext4 mounted discard).
RELEASE_THREADS = 4
# Replaced inodes a Relinker hands to those threads at once (``_Releaser.put``): each hand-over
# wakes a thread (queue.Queue's lock and conditions, then the interpreter lock passed back and
# forth): one per relink cost ~0.035 ms of CPU each (measured: 10,000 O_PATH descriptors, each after
# 15 fstatat as a relink makes, closed by four threads took 0.6-0.7 CPU-s handed over one by one,
# 0.3 in eights, 0.27 closed inline).
RELEASE_CHUNK = 8


class _Releaser:
    """Lets go, on threads of its own, of inodes a relink's rename has just unlinked for the last time.

    Freeing an inode is the kernel's work, done by whoever drops its last reference, and it
    can wait on the disk: on ext4 mounted ``discard`` each freed extent is discarded
    synchronously (``ext4_free_blocks`` -> ``blkdev_issue_discard``, ~0.1-1 ms; docs/benchmarks.md
    section 9). A rename over the last link would pay that inside the batch's loop, once per
    file, one after the other. Instead the relink holds an ``O_PATH`` descriptor of the entry
    it is about to replace, and a releasing thread closes it: the last reference, and its wait, move
    here, overlapping the next relinks' checks and each other. Nothing about the world changes: the name
    already holds the kept inode; only *when* the old inode's blocks return differs, and
    ``drain`` (called by ``Relinker.sync`` before its syncfs, and by ``close``) waits for all.
    Not on ZFS (``Relinker._hold_for``): it frees a removed file's blocks later, on its own.

    The threads start at the first descriptor and end at ``drain``: a Relinker made before a
    fork (``Relinker.frozen``) has none, and a process that forks next has none left
    (``forked.may_fork`` asks for one kernel thread). Descriptors are handed over ``chunk`` at a
    time (a Relinker's: RELEASE_CHUNK), each hand-over a thread's wake-up; ``drain`` hands over
    the last, partial one. A full queue makes the hand-over wait, so at most ``held_at_most``
    descriptors are held (the queue, a chunk being closed per thread, and the chunk in hand:
    RELEASE_DEPTH + RELEASE_THREADS + 1 one by one). A chunk that cannot be queued (Ctrl-C
    while waiting) is closed at once; an interrupted ``drain`` can be called again.
    """

    def __init__(self, depth: int = RELEASE_DEPTH, threads: int = RELEASE_THREADS, chunk: int = 1) -> None:
        self.depth = depth
        self.threads = threads
        self.chunk = max(1, chunk)
        self._q: queue.Queue | None = None
        self._running: list[threading.Thread] = []
        self._hand: list[int] = []  # held, not yet handed over (fewer than ``chunk``)

    @property
    def held_at_most(self) -> int:
        """The descriptors held at most: the queue full (``depth`` in whole chunks, one at least),
        a chunk being closed by each thread, and a full chunk in hand waiting for room."""
        return max(1, self.depth // self.chunk) * self.chunk + (self.threads + 1) * self.chunk

    def put(self, fd: int) -> None:
        hand = self._hand
        hand.append(fd)
        if len(hand) >= self.chunk:
            self._hand = []
            self._hand_over(hand)

    def _hand_over(self, fds: list[int]) -> None:
        try:
            if self._q is None:
                self._start()
            if self._q is None:
                _close_each(fds)  # no thread to be had (a pids limit): let go here, as without a releaser
                return
            self._q.put(fds)
        except BaseException:
            _close_each(fds)  # not queued (Ctrl-C while the queue was full): never left open
            raise

    def _start(self) -> None:
        q: queue.Queue = queue.Queue(max(1, self.depth // self.chunk))
        for i in range(self.threads):
            t = threading.Thread(target=_release_all, args=(q,), name=f"qbhook-release-{i}", daemon=True)
            self._running.append(t)  # before it runs: drain must find every thread that may
            try:
                t.start()
            except RuntimeError:  # no more threads to be had: the ones started do
                self._running.pop()
                break
        if self._running:
            self._q = q

    def drain(self) -> None:
        """Every held inode let go (its blocks freed) and the threads ended. Interrupted, it can be
        called again: the state is cleared only once every thread has ended."""
        hand, self._hand = self._hand, []
        if hand:
            self._hand_over(hand)
        q, running = self._q, self._running
        if q is None:
            return
        for _t in running:
            q.put(None)  # one end marker per thread; a repeated drain adds more, which none reads
        for t in running:
            t.join()
        self._q, self._running = None, []


def _release_all(q: queue.Queue) -> None:
    while (fds := q.get()) is not None:
        _close_each(fds)


def _close_each(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass  # an O_PATH descriptor has nothing to flush; there is nothing to report


def _as_root(r) -> str | SeedingRoot:
    """A root as a str, or as the ``SeedingRoot`` it is (its pool root goes with it to ``_open_root``)."""
    return r if isinstance(r, SeedingRoot) else os.fsdecode(_p(r))


class Relinker:
    """``relink_over`` for a batch of relinks: every check of every file stays, the overhead goes.

    What a batch shares, and why sharing it proves the same thing:

    * **Verified folders, opened once.** A folder is opened component by component from its
      root (``O_NOFOLLOW``, same filesystem) the first time a relink needs it and kept open
      for the batch (at most ``max_open`` at once, least recently used closed first). A
      held descriptor keeps naming the folder that was verified, wherever it is moved
      meanwhile, for any length of time (an *arr import in move mode renames a torrent's
      folder into the library on the same dataset): right before each rename the folder is
      proven still where it was walked to (``Dir.in_place``: each folder above it, through
      ``..`` from its descriptor, the one walked through, up to the seeding root, itself
      still at its configured place below its pinned pool root). A folder moved is refused
      (``re-plan``), and every folder held below that root is closed, so the next relink
      walks again. Every check and act still names only the entry, relative to it.
    * **Catalog rows, fetched once** (``prefetch``). A row says "this inode, with this
      size, mtime and ctime, had this hash". That stays true after it is read; the hash is
      used only while the live ``lstat`` still shows exactly that stat, as one by one. A
      content change that restores size and mtime (``touch -d``) still changes the ctime,
      which no user can set back: the row no longer applies and the file is read again.
      After a relink, the kept inode's ctime moved because of our own link: its row is
      carried over to the new ctime when size and mtime are unchanged, as
      ``Catalog.record_path(carry=...)`` does, the kept inode pinned across the relink (``CarryProof``).
    * **One sync** (``sync``). Each rename is atomic; durability is needed only before the
      journal says ``done`` (a rename lost to a power cut leaves the old name holding the
      same bytes, and the journal still says ``intended``, so a resume does it again).
    """

    def __init__(
        self,
        seeding_roots,
        keep_roots=(),
        catalog=None,
        *,
        sync_each: bool = False,
        max_open: int = RELINK_MAX_OPEN,
        client_groups: Mapping[int, frozenset[int]] | None = None,
    ):
        # Each user's groups where the config says them (``access.access_lost``): uid -> gids.
        self.client_groups = client_groups or {}
        # As strings once: every relink places two paths under them.
        self.seeding_roots = tuple(_as_root(r) for r in seeding_roots)
        self.keep_roots = tuple(_as_root(r) for r in keep_roots)
        self._keep_side = self.seeding_roots + self.keep_roots
        # Each side's roots in ``_split_under``'s order, computed once: asked per path, the roots'
        # cache key alone (a tuple of SeedingRoot dataclasses) cost more than placing the path.
        self._seed_order = _root_order(self.seeding_roots)
        self._keep_order = _root_order(self._keep_side)
        self.catalog = catalog
        self.sync_each = sync_each
        self.max_open = max(4, max_open)
        self._dirs: OrderedDict[tuple, Dir] = OrderedDict()
        self._anchors: dict[bytes, Anchor | None] = {}  # seeding root -> where it must be (``Dir.in_place``)
        self._rows: dict[tuple[int, int], object] = {}  # (fs row id, ino) -> InodeRow or None (not catalogued)
        # path -> (root, parts) on each side, placed once under its roots (prefetch) and reused
        self._seed_splits: dict = {}
        self._keep_splits: dict = {}
        self._root_devs: dict[bytes, int] = {}  # root -> st_dev, as prefetch met them (``frozen`` looks them up again)
        self._no_hold: set[bytes] = set()  # seeding roots on ZFS, as prefetch met them (``_hold_for``)
        self._uses: dict[tuple[int, int], int] = {}  # kept inode -> relinks of this batch onto it still to come
        self._shared = False  # does any kept inode have more than one relink of this batch onto it?
        # Seeding root -> a descriptor (a dup: the LRU may close the folder) of a folder this batch
        # verified on it, whose filesystem holds a rename not yet synced. ``sync`` flushes through
        # it, never through the root's path again: a root swapped since would refuse it after
        # every relink had succeeded. Counted in ``max_open``.
        self._touched: dict[bytes, int] = {}
        self.after: dict[object, Relinked] = {}  # relinked path -> its kept inode's lstat before and after
        # Holds each inode a rename is about to unlink for the last time (``_Releaser``); sync_each
        # (one relink, made durable at once) lets go at once.
        self._release = None if sync_each else _Releaser(chunk=RELEASE_CHUNK)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self._release is not None:
                self._release.drain()
        finally:
            self._close_folders()

    def _close_folders(self) -> None:
        while self._dirs:
            _key, d = self._dirs.popitem()
            d.close()
        while self._touched:  # a batch that ended without its sync (an error): nothing left to flush for
            os.close(self._touched.popitem()[1])

    # ------------------------------------------------------------ shared state

    def prefetch(self, items: Iterable[tuple[str | bytes, int, str | bytes, int]]) -> None:
        """Read the catalog rows of every (path, victim ino, keep path, keeper ino) of the batch in one go.

        The victim's folder is walked on its seeding root's filesystem and the keeper must be
        on the victim's (both are checked per file), so both inodes are looked up there.
        """
        if self.catalog is None:
            return
        keys = set()
        fs_of_root: dict[bytes, int] = {}
        # Bound once: a batch prefetches 10,000 items (``Executor._relinker``).
        split_seed, split_keep, uses, add = self._split_seed, self._split_keep, self._uses, keys.add
        for path, ino, keep_path, keep_ino in items:
            try:
                root, _parts = split_seed(path)
                split_keep(keep_path)
            except UnsafeOperation:
                continue  # relink refuses it with its own message
            fs = fs_of_root.get(root)
            if fs is None:
                try:  # the root's st_dev through its verified descriptor: never by following its path
                    dev = self._dir(root, (), True).st.st_dev
                except (OSError, UnsafeOperation):
                    continue
                fs = fs_of_root[root] = self.catalog.fs_for_path(root, dev)
                self._root_devs[root] = dev
                if is_zfs(self.catalog.fsid(fs)):
                    self._no_hold.add(root)
            add((fs, int(ino)))
            kept = (fs, int(keep_ino))
            add(kept)
            uses[kept] = uses.get(kept, 0) + 1
        self._shared = any(n > 1 for n in uses.values())
        found = self.catalog.inodes_by_key(keys)  # the rows only: a relink never reads the paths
        # Each key's row, None for one not catalogued (``_cached_digest`` reads it so, not again).
        self._rows.update(dict.fromkeys(keys))
        self._rows.update(found)

    def _hold_for(self, root: bytes) -> Callable[[int], None] | None:
        """Where a replaced inode is held for the releasing threads: not on ZFS, which frees a removed
        file's blocks in a later transaction group of its own, so the rename waits for nothing
        there and a hold would only cost an open (on zfs-fuse the apply phase took ~11 % longer
        with it: docs/benchmarks.md section 9)."""
        if self._release is None or root in self._no_hold:
            return None
        return self._release.put

    def frozen(self) -> Self:
        """This batch, its catalog replaced by a frozen view of what ``prefetch`` read
        (``Catalog.frozen``): for a forked child, which must not use SQLite. The hashes it
        computes wait in ``self.catalog.stored`` for the parent to write."""
        if self.catalog is not None:
            self.catalog = self.catalog.frozen(self._rows, self._root_devs)
        return self

    def _split_seed(self, path) -> tuple[bytes, tuple[bytes, ...]]:
        """``_split_under(path, seeding_roots)``, once per path."""
        hit = self._seed_splits.get(path)
        if hit is None:
            root, parts = _split_ordered(path, self._seed_order, self.seeding_roots)
            hit = self._seed_splits[path] = (root, tuple(parts))  # a tuple: the folder cache's key as is
        return hit

    def _split_keep(self, path) -> tuple[bytes, tuple[bytes, ...]]:
        """``_split_under(path, seeding_roots + keep_roots)``, once per path."""
        hit = self._keep_splits.get(path)
        if hit is None:
            root, parts = _split_ordered(path, self._keep_order, self._keep_side)
            hit = self._keep_splits[path] = (root, tuple(parts))
        return hit

    def _dir(self, root: bytes, parts: tuple[bytes, ...], same_fs: bool) -> Dir:
        """The verified folder ``root/parts``, from the longest already open prefix down."""
        dirs = self._dirs
        key = (root, parts, same_fs)
        d = dirs.get(key)
        if d is not None:
            dirs.move_to_end(key)
            return d
        # The longest open prefix below the full path (which just missed), the root itself included.
        n = len(parts) - 1
        base = None
        while n >= 0:
            base = dirs.get((root, parts[:n], same_fs))
            if base is not None:
                dirs.move_to_end((root, parts[:n], same_fs))
                break
            n -= 1
        if base is None:
            n = 0
            walked: list[tuple[bytes, int, int]] = []
            base = _open_root(root, walked)
            self._keep((root, (), same_fs), base)
            # Taken of this open: a folder held from an earlier open of another root at the name
            # is then refused by ``in_place`` (its root is not this anchor's).
            self._anchors[root] = _anchor(root, walked)
        for i in range(n, len(parts)):
            base = base.sub(parts[i], same_fs=same_fs)
            self._keep((root, parts[: i + 1], same_fs), base)
        return base

    def _keep(self, key: tuple, d: Dir) -> None:
        # Only keys that just missed come here: a new key goes in last, the most recently used.
        # ``_trim``'s bound, inline: a batch over many small folders closes one per folder it opens.
        dirs = self._dirs
        dirs[key] = d
        cap = self.max_open - len(self._touched)
        while len(dirs) > cap and len(dirs) > 1:
            dirs.popitem(last=False)[1].close()

    def _forget(self, root: bytes) -> None:
        """Close every folder held below ``root`` (one of them was moved): later relinks walk again."""
        for key in [k for k in self._dirs if k[0] == root]:
            self._dirs.pop(key).close()

    def _trim(self) -> None:
        # ``max_open`` bounds every descriptor of the batch, the sync's (``_touched``) included;
        # the folder used last always stays (its caller may be about to use it).
        while len(self._dirs) > max(1, self.max_open - len(self._touched)):
            _k, old = self._dirs.popitem(last=False)
            old.close()

    def sync(self) -> None:
        """Make every rename of this batch durable (one syncfs per filesystem touched), every
        replaced inode let go first (its freeing is then in the same sync)."""
        if self._release is not None:
            self._release.drain()
        while self._touched:
            _root, fd = self._touched.popitem()
            try:
                _syncfs(fd)
            finally:
                os.close(fd)

    def _carry_over(self, d: Dir, proof: CarryProof | None, kst_after: os.stat_result) -> None:
        # Our link changed the kept inode's ctime only: its hash stays valid when size and mtime did not move,
        # and the inode was pinned across the relink (``proof``: the catalog's rule, ``_CARRY_HASH_FROM``).
        # Only a kept inode this batch relinks onto more than once is looked at again (``_uses``):
        # when the batch has none, no row is carried and the filesystem lookup is skipped.
        if self.catalog is None or not self._shared:
            return
        fs_path = d.fs_path_for(kst_after)
        if fs_path is None:
            return
        key = (self.catalog.fs_for_path(fs_path, kst_after.st_dev), kst_after.st_ino)
        left = self._uses.get(key, 1) - 1
        self._uses[key] = left
        if left <= 0:
            return  # no later relink of this batch looks at this row again
        row = self._rows.get(key)
        if proof is None:
            return
        before = (proof.size, proof.mtime_ns, proof.ctime_ns)
        if (
            row is not None
            and row.hash is not None
            and (row.size, row.mtime_ns, row.ctime_ns) == before
            and (kst_after.st_size, kst_after.st_mtime_ns) == (row.size, row.mtime_ns)
        ):
            self._rows[key] = replace(row, ctime_ns=kst_after.st_ctime_ns, nlink=kst_after.st_nlink)

    # ------------------------------------------------------------ one relink

    def _place(
        self, path, path_s: str, keep_path, keep_s: str
    ) -> tuple[bytes, tuple[bytes, ...], Dir, tuple[bytes, ...], Dir]:
        """(root, parts, verified folder) of the seeding entry and (parts, folder) of the kept one; refusals named."""
        try:
            root, parts = self._split_seed(path)
        except UnsafeOperation as e:
            shown_roots = ", ".join(map(str, self.seeding_roots)) or "none configured"
            raise UnsafeOperation(
                f"refusing to relink {path_s}: not inside a seeding root ({shown_roots}): {e}"
            ) from None
        if not parts:
            raise UnsafeOperation(f"refusing to relink {path_s}: it is a seeding root")
        if in_own_folder(parts[:-1]) or parts[-1].startswith(RELINK_PREFIX):
            raise UnsafeOperation(f"refusing to relink {path_s}: it is one of qbhook's own files")
        try:
            parent = self._dir(root, parts[:-1], True)
        except (FileNotFoundError, NotADirectoryError):
            raise UnsafeOperation(f"refusing to relink {path_s}: its folder is gone", hint="re-plan") from None
        try:
            kroot, kparts = self._split_keep(keep_path)
            if not kparts:
                raise UnsafeOperation(f"{keep_s} is a configured root, not an entry inside one")
            # The planner never keeps such a name (``paths.relink_temp_named``) nor a scan catalogs
            # one; this is the last guard, for a plan made otherwise (an edited file, an old catalog).
            if kparts[-1].startswith(RELINK_PREFIX):
                raise UnsafeOperation(f"{keep_s} is named like qbhook's temporary links")
            kdir = self._dir(kroot, kparts[:-1], False)
        except (FileNotFoundError, NotADirectoryError):
            raise UnsafeOperation(f"refusing to relink {path_s}: the copy to keep, {keep_s}, is missing") from None
        except UnsafeOperation as e:
            raise UnsafeOperation(
                f"refusing to relink {path_s}: the copy to keep cannot be trusted: {e.message}"
            ) from None
        return root, parts, parent, kparts, kdir

    def relink(
        self,
        path,
        keep_path,
        target: RelinkTarget,
        *,
        on_temp_link: Callable[[], None] | None = None,
    ) -> dict:
        """``relink_over`` of one file, through this batch's folders and rows (same checks, same result)."""
        # A plan's paths are str already: decoded only when given otherwise (bytes, a PathLike).
        path_s = path if type(path) is str else os.fsdecode(_p(path))
        keep_s = keep_path if type(keep_path) is str else os.fsdecode(_p(keep_path))
        root, parts, parent, kparts, kdir = self._place(path, path_s, keep_path, keep_s)
        # The kept inode held open from the stat its content is checked under until the name's
        # lstat after the rename: only then are the two one file, whose hash may be carried over
        # (``Pin``). The one open it costs is this relink's.
        kpin = None
        try:
            try:
                kpin = Pin.at(kparts[-1], kdir.fd)
                res = _relink_at(
                    parent,
                    parts[-1],
                    path_s,
                    kdir,
                    kparts[-1],
                    keep_s,
                    target,
                    catalog=self.catalog,
                    rows=self._rows,
                    kpin=kpin,
                    on_temp_link=on_temp_link,
                    groups=self.client_groups.get,
                    hold=self._hold_for(root),
                    anchor=self._anchors[root],
                )
            except (QbhookError, OSError):
                if parent.in_place(self._anchors[root]):
                    _drop_leftover(parent, parts[-1], target.ino)
                else:  # moved: nothing more is done in it, and nothing below this root is trusted as held
                    self._forget(root)
                raise
            if res["status"] == "relinked":
                self._relinked(path, root, parts[-1], parent, kdir, kpin)
        finally:
            if kpin is not None:
                kpin.close()
        return res

    def _relinked(self, path, root: bytes, name: bytes, parent: Dir, kdir: Dir, kpin: Pin) -> None:
        """After a rename (the kept inode still pinned by ``kpin``): its folder to sync, and the
        name's stat, with its carry-over's warrant, for the catalog and for later relinks of this
        batch onto the same inode."""
        # The name now: the kept inode, with the ctime and link count our link and rename left.
        # For the catalog (``after``, recorded without resolving the path again) and for later
        # relinks of this batch onto the same inode (``_carry_over``). Taken before the folder's
        # fsync, never after: that can wait on the disk, and a rewrite of the kept file then (same
        # size, mtime set back) would be in this stat's ctime, its old hash carried onto it (R67).
        now = parent.lstat(name)
        if self.sync_each:
            os.fsync(parent.fd)
        elif root not in self._touched:
            self._touched[root] = os.dup(parent.fd)  # the folder the rename was made in: its filesystem
            self._trim()
        if now is not None and (now.st_dev, now.st_ino) == (kpin.st.st_dev, kpin.st.st_ino):
            proof = CarryProof.across(kpin, now)
            self.after[path] = Relinked(now, proof)
            self._carry_over(kdir, proof, now)


# No user's groups known: ``access.access_lost`` takes the replaced file's group as its owner's only.
_NO_GROUPS: Callable[[int], frozenset[int] | None] = {}.get


def _relink_at(
    parent: Dir,
    name: bytes,
    path_s: str,
    kdir: Dir,
    kname: bytes,
    keep_s: str,
    t: RelinkTarget,
    *,
    catalog,
    rows,
    kpin: Pin | None,
    on_temp_link,
    hold: Callable[[int], None] | None = None,
    anchor: Anchor | None = None,
    groups: Callable[[int], frozenset[int] | None] = _NO_GROUPS,
) -> dict:
    """``kpin``: the kept entry ``kname`` pinned (None: nothing there), held by the caller until the
    name's look after the rename: its stat is the kept inode's first look, its fstat the look
    right before the temporary link, and the temporary link is made of it (``Pin.link``), never of
    what a writer renamed over ``kname`` meanwhile. ``hold``: given a descriptor of the replaced
    inode when the rename drops its last link (``_Releaser``), to be closed later; without it the
    rename frees the inode itself. ``anchor``: where ``parent``'s root must still be (``Dir.in_place``).
    ``groups``: a user's groups by uid, None where not known (``access.access_lost``)."""
    # Long on purpose: each re-check of relink_over's rule list, in order, right before the rename.
    why = f"refusing to relink {path_s} onto {keep_s}"
    kst = kpin.st if kpin is not None else None
    if kst is None:
        raise UnsafeOperation(f"{why}: the copy to keep is missing", hint="re-plan")
    # Each end's filesystem row, looked up once and used by both its identity and its content check.
    kfs = _fs_row(catalog, kdir, kst)
    if not stat_mod.S_ISREG(kst.st_mode) or kst.st_ino != t.keep_ino or not _fs_is(catalog, kfs, t.keep_fsid):
        raise UnsafeOperation(
            f"{why}: the copy to keep is no longer the planned file "
            f"(inode {kst.st_ino}, planned {t.keep_ino} on {t.keep_fsid})",
            hint="re-plan",
        )
    tmp: bytes | None = _relink_name(name, t.ino)
    st = parent.lstat(name)
    if st is None:
        raise UnsafeOperation(f"{why}: {path_s} is missing", hint="re-plan")
    if (st.st_dev, st.st_ino) == (kst.st_dev, kst.st_ino):
        _clean_stale_relink(parent, tmp)  # what an earlier attempt may have left beside it
        _clean_legacy_relink(parent, name, t.ino)
        return {"status": "already", "bytes_freed": 0, "nlink_before": st.st_nlink}
    if not stat_mod.S_ISREG(st.st_mode):
        raise UnsafeOperation(f"{why}: {path_s} is not a regular file")
    sfs = _fs_row(catalog, parent, st)
    if st.st_ino != t.ino or not _fs_is(catalog, sfs, t.fsid):
        raise UnsafeOperation(
            f"{why}: {path_s} is no longer the planned file (inode {st.st_ino}, planned {t.ino} on {t.fsid})",
            hint="re-plan",
        )
    if st.st_size != t.size or kst.st_size != t.size:
        raise UnsafeOperation(f"{why}: sizes {st.st_size} and {kst.st_size}, planned {t.size}", hint="re-plan")
    if t.mtime_ns is not None and st.st_mtime_ns != t.mtime_ns:
        raise UnsafeOperation(f"{why}: {path_s} was modified since planning", hint="re-plan")
    if st.st_dev != kst.st_dev or parent.dev != st.st_dev:
        raise UnsafeOperation(
            f"{why}: they are on different filesystems (a nested dataset?): a hardlink cannot join them"
        )
    # The stats in hand, no other syscall: a library file is never chmodded nor chowned, so the
    # name would show the kept inode's owner and mode (``qbhook.access``).
    kacc = (kst.st_mode, kst.st_uid, kst.st_gid)
    if lost := access_lost(kacc, (st.st_mode, st.st_uid, st.st_gid), groups(st.st_uid)):
        raise UnsafeOperation(
            f"{why}: the copy to keep {lost_reason(lost, kacc, st.st_uid)}, the owner of {path_s}",
            hint="give that user this access to the library file (its group, or policy.client_groups), "
            "or leave the duplicate",
        )
    want = _digest(t.blake3_hex, t.size)
    if _content_digest(parent, name, st, catalog, rows, sfs) != want:
        raise UnsafeOperation(f"{why}: {path_s} no longer has the planned content", hint="re-plan")
    if _content_digest(kdir, kname, kst, catalog, rows, kfs, kpin) != want:
        raise UnsafeOperation(f"{why}: the copy to keep does not have the planned content", hint="re-plan")
    # The kept inode once more, right before the link: its content was proven for ``kst``, taken
    # before the victim was read (minutes for a large file). A library file rewritten meanwhile
    # (a tagger; ``touch -r`` restores the mtime, never the ctime) must not reach the torrent's name.
    # An fstat of the pin held since the first look: the temporary link is made of that inode
    # (R8), never of what a writer of the keep's folder renamed over its name meanwhile (the last
    # look, by name, then refuses), and it is one file with ``kst`` for the carry-over (R10).
    kept = _content_stat(kst)
    if not _pin_unchanged(kpin, kst):
        raise UnsafeOperation(f"{why}: the copy to keep changed during the checks", hint="re-plan")
    _clean_legacy_relink(parent, name, t.ino)  # ``_link_temp`` meets only a leftover of this shape
    _link_temp(kpin, kdir, kname, parent, tmp, why)
    try:
        tst = parent.lstat(tmp)
        if tst is None or (tst.st_dev, tst.st_ino) != (kst.st_dev, kst.st_ino):
            raise UnsafeOperation(f"{why}: {parent.show(tmp)} changed right after it was made")
        if on_temp_link is not None:
            on_temp_link()
        # The folder itself: held open since it was verified (a batch's whole length, or a large
        # victim's hashing), it may have been moved since, e.g. by an import into the library on
        # the same dataset, where a rename would replace a library file. Before the last looks,
        # not after: its walk up (an fstatat a level) would widen the window in which a rewrite
        # of the kept file goes unseen and has its old hash carried onto it (R83).
        if not parent.in_place(anchor):
            raise UnsafeOperation(
                f"{why}: its folder {parent.show()} was moved during the checks (not where it was walked to)",
                hint="re-plan",
            )
        # Last look at both, as close to the rename as Python gets, through the same descriptors.
        last, klast = parent.lstat(name), kdir.lstat(kname)
        # The ctime too: an in-place rewrite that restores the mtime (``touch -r``) still moves it.
        if last is None or _content_stat(last) != _content_stat(st):
            raise UnsafeOperation(f"{why}: {path_s} changed during the checks")
        # Our link moved the kept inode's ctime: the temporary name's own stat is its reference now.
        if klast is None or _content_stat(klast) != kept[:4] + (tst.st_ctime_ns,):
            raise UnsafeOperation(f"{why}: the copy to keep changed during the checks")
        held = _hold_entry(parent, name, last) if hold is not None and last.st_nlink == 1 else None
        try:
            os.rename(tmp, name, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)
        except BaseException:
            if held is not None:
                os.close(held)
            raise
        tmp = None
        if held is not None:
            hold(held)
    finally:
        if tmp is not None:
            try:
                # Its own temporary name (``_relink_name``, no torrent's), as ``_clean_stale_relink``.
                os.unlink(tmp, dir_fd=parent.fd)
            except FileNotFoundError:
                pass
    # The link count of the last look: a link made since the first one (a cross-seed) keeps the bytes.
    freed = st.st_size if last.st_nlink == 1 else 0
    return {"status": "relinked", "bytes_freed": freed, "nlink_before": last.st_nlink}


# What says an inode's bytes are the ones checked: (dev, ino, size, mtime, ctime); a write that
# restores size and mtime still moves the ctime, which no user can set back. An attrgetter, not a
# function: a relink takes it five times, each then without a Python frame (``_relink_at``).
_content_stat: Callable[[os.stat_result], tuple[int, int, int, int, int]] = operator.attrgetter(
    "st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns"
)


def _pin_unchanged(pin: Pin, proven: os.stat_result) -> bool:
    """Is the pinned copy to keep still as it was when its content was proven (``proven``)? The
    act that rests on it (a relink onto it, a delete of another copy) comes after the other side
    was read, minutes for a large file; a rewrite of the copy in that window (same size: a
    tagger, ``rsync --inplace``) moves its ctime, which ``touch -r`` never sets back. An fstat of
    the pin: the inode proven, whatever a writer renamed over its name meanwhile (a rename over
    it, or an unlink, moves its ctime too)."""
    return _content_stat(pin.look()) == _content_stat(proven)


def _hold_entry(parent: Dir, name: bytes, st: os.stat_result) -> int | None:
    """An ``O_PATH`` descriptor of the entry ``name`` of ``parent`` (never followed, never read or
    written: it only keeps the inode referenced), or None when it cannot be had or is no longer the
    inode ``st`` was taken of: a hold of whatever was swapped in would keep that file's blocks
    for the batch and leave the replaced one to be freed by the rename after all."""
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent.fd)
    except OSError:
        return None  # the rename then frees it itself
    try:
        now = os.fstat(fd)
    except OSError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        return None
    return fd


# --------------------------------------------------------------------------- delete


def _fs_row(catalog, d: Dir, st: os.stat_result) -> int | None:
    """The catalog's filesystem row of an entry of ``d`` with stat ``st``; None if on another filesystem than ``d``."""
    path = d.fs_path_for(st)
    return None if path is None else catalog.fs_for_path(path, st.st_dev)


def _fs_is(catalog, fs: int | None, fsid) -> bool:
    """Is filesystem row ``fs`` the planned ``fsid`` (a row id or an fsid string)?"""
    if fs is None:
        return False  # a file on another filesystem than its folder (a mount over it) is never the planned one
    if isinstance(fsid, int):
        return fs == fsid
    return catalog.fsid(fs) == fsid


def _fsid_matches(catalog, d: Dir, st: os.stat_result, fsid) -> bool:
    return _fs_is(catalog, _fs_row(catalog, d, st), fsid)


def holding_path(path, seeding_root, run) -> str:
    """Where ``path`` waits out the grace period: ``<seeding root>/.qbhook-holding/<run>/<rel>``."""
    path = os.fsdecode(_p(path))
    root = os.fsdecode(_p(seeding_root)).rstrip("/")
    rel = os.path.relpath(path, root)
    return os.path.join(root, HOLDING_DIR, str(run), rel)


def _link_entry(path, roots) -> tuple[EntryKey, os.stat_result] | None:
    """(``entry_key``: folder dev, folder inode, name; lstat) of a link reached through verified
    folders; None if unreachable."""
    try:
        d, name, _parts = _open_parent(path, roots)
    except (UnsafeOperation, OSError):
        return None  # outside every seeding root, or through a symlink: not a seeding link
    with d:
        st = d.lstat(name)
        return (entry_key(folder_id(d.st), name), st) if st is not None else None


@dataclass(frozen=True, slots=True)
class _Unlink:
    """One planned removal of an old link: what the plan said, and where qbhook may look.

    ``root``/``parts`` place ``path`` under its seeding root; ``shown`` is the path for messages.
    """

    path: object
    shown: str
    root: bytes
    parts: list
    fsid: object
    ino: int
    size: int | None
    blake3_hex: object
    keep_path: object
    keep_blake3: object
    keep_fsid: object
    keep_ino: int | None
    seeding_links: tuple
    seeding_roots: tuple
    keep_roots: tuple
    catalog: object
    hold_run: object
    resumed: bool = False

    def refuse(self, why: str, hint: str | None = None) -> UnsafeOperation:
        return UnsafeOperation(f"refusing to delete {self.shown}: {why}", hint=hint)


def safe_unlink(
    path,
    *,
    fsid,
    ino: int,
    keep_path,
    keep_blake3=None,
    seeding_links=(),
    seeding_roots=(),
    catalog,
    size: int | None = None,
    blake3_hex=None,
    keep_fsid=None,
    keep_ino: int | None = None,
    hold_run=None,
    keep_roots=(),
    resumed: bool = False,
) -> dict:
    """Remove one old link of a payload file, only if every fact the plan relied on still holds.

    Right before acting, re-checks: ``path`` is inside a seeding root, reached through real
    folders (verified descriptors, no symlink); it is still inode ``ino`` on filesystem
    ``fsid``; the inode has no link beyond the ``seeding_links`` that still exist (a library
    link that appeared since planning stops everything); its content is still the planned
    content; ``keep_path`` (inside a seeding root or one of ``keep_roots``) exists, is a
    different inode, has the same size and the verified same content. The unlink names the
    entry relative to the very folder descriptor the checks used.

    ``hold_run`` (grace period) moves the link into ``<root>/.qbhook-holding/<run>/``
    instead of unlinking it. A path that is already gone is a no-op, unless its folder is gone
    and an earlier attempt may have renamed it away (``_folder_gone``; ``resumed``: this delete's
    intent was journaled before, by a run that did not close it).
    Returns ``{status: unlinked|held|absent, bytes_freed, nlink_before, dev}``, and for an act
    of this call ``checked`` (the content's stat, ``Checked.of``).
    """
    path_s = os.fsdecode(_p(path))
    shown_roots = ", ".join(os.fsdecode(_p(r)) for r in seeding_roots) or "none configured"
    try:
        root, parts = _split_under(path, seeding_roots)
    except UnsafeOperation as e:
        raise UnsafeOperation(f"refusing to delete {path_s}: not inside a seeding root ({shown_roots}): {e}") from None
    if not parts:
        raise UnsafeOperation(f"refusing to delete {path_s}: it is a seeding root")
    if in_own_folder(parts[:-1]):
        raise UnsafeOperation(f"refusing to delete {path_s}: it is in one of qbhook's own folders")
    u = _Unlink(
        path,
        path_s,
        root,
        parts,
        fsid,
        ino,
        size,
        blake3_hex,
        keep_path,
        keep_blake3,
        keep_fsid,
        keep_ino,
        tuple(seeding_links),
        tuple(seeding_roots),
        tuple(keep_roots),
        catalog,
        hold_run,
        resumed,
    )
    try:
        parent, placed = _walk_placed(root, parts[:-1])
    except (FileNotFoundError, NotADirectoryError):
        return _folder_gone(u)
    except UnsafeOperation as e:
        raise u.refuse(f"not inside a seeding root through real folders: {e.message}") from None
    with parent:
        res = _safe_unlink_at(u, parent, parts[-1], placed)
    return _absent(root, parts, ino, hold_run, "delete") if res["status"] == "absent" else res


def _folder_gone(u: _Unlink) -> dict:
    """``safe_unlink``'s result when the link's folder is no longer reachable by its path: "absent",
    unless an earlier attempt may have renamed the link away there. Then refused: waits for a person.

    The look right after the rename (``_back_unless_placed``) puts the file back if the folder moved
    into a library between the look before and the rename; a kill before that put-back leaves the
    library's file in holding, or under its drop name in the moved folder, and the path reaches
    neither that folder nor anything that says where it went. So a file of the planned inode in
    holding is never taken for held here (journaled, it would be purged after the grace), and a
    resumed delete (no grace) is never "absent" (its drop-named file would stay hidden for good).
    Neither needs new state: what the resume cannot prove is left, named, for a person. The price:
    a hold that passed its look after the rename, killed before the journal closed it, whose folder
    a person then removed or renamed before the resume, waits for a person too."""
    res = _gone_folder_absent(u.root, u.parts, u.ino, u.hold_run, "delete", u.shown)
    folder = os.fsdecode(b"/".join([u.root.rstrip(b"/"), *u.parts[:-1]]))
    if u.resumed and u.hold_run is None:
        drop = os.fsdecode(_drop_name(u.parts[-1], u.ino))
        raise u.refuse(
            f"its folder {folder} is gone since an earlier attempt of this delete: if that folder was moved "
            f"(into a library), the file may wait there under {drop}, not found by its old path: waits for a person",
            hint=f"look for {drop} in the folder's new place and rename it back to {os.fsdecode(u.parts[-1])}",
        )
    return res


def _gone_folder_absent(root: bytes, parts: list[bytes], ino: int, run, verb: str, shown: str) -> dict:
    """``_absent`` for a removal (a delete, a hold, an orphan's hold) whose folder is no longer
    reachable by its path, refusing "held": the file of the planned inode in this run's holding
    may be a library's, its folder moved into a library between the look before the rename into
    holding and the rename, and the process killed before the look after it put the file back
    (``_back_unless_placed``). Journaled "held", it would be purged after the grace; refused, it
    waits where the refusal names for a person. The one home of that rule (``_folder_gone``,
    ``hold_unreferenced``)."""
    res = _absent(root, parts, ino, run, verb)
    if res["status"] == "held":
        folder = os.fsdecode(b"/".join([root.rstrip(b"/"), *parts[:-1]]))
        raise UnsafeOperation(
            f"refusing to {verb} {shown}: held at {res['held_at']}, but its folder {folder} was moved since: "
            "waits for a person",
            hint="if that folder went into a library, the held file is the library's: put it back there by hand",
        )
    return res


def undo_drop(path, *, ino: int, seeding_roots) -> bool:
    """Put back the link ``path`` (inode ``ino``) a delete killed between its rename to the drop
    name and its unlink left there (``_undo_drop``), for a group that stops for good and never
    retries that delete: hidden under a name no scan lists, the link would make every later
    delete of its inode (a cross-seed's) refuse an unknown link. Whether one was put back (or a
    spare link taken); False when the folder is gone. UnsafeOperation: a folder refused, or the
    name taken by another file (both stay)."""
    root, parts = _split_under(path, seeding_roots)
    if not parts:
        return False
    try:
        parent = _walk(root, parts[:-1])
    except (FileNotFoundError, NotADirectoryError):
        return False
    with parent:
        return _undo_drop(parent, parts[-1], ino, None, None, "the link a delete left")


def _absent(root: bytes, parts: list[bytes], ino: int, hold_run, verb: str = "hold") -> dict:
    """The result for a path already gone; if an earlier attempt held it (a crash before the journal
    recorded it), say where, so the held link is journaled and purged like any other.

    A regular file of another inode at the held name is no hold of ours: a kill right after the
    rename into holding, before the look at what arrived (``_move_checked``), when qBittorrent had
    renamed a completed download over the name just before. Holding is qbhook's 0700 folder and
    the held name is this path's alone, so it came from this path: it goes back there
    (``_stray_back``) and the hold is refused. "absent" would close the hold, and that file, its
    only link in holding, would be named by nothing (no journal row, no scan, no orphans walk)."""
    stray = None
    if hold_run is not None:
        try:
            hold, top = _open_holding_id(root, hold_run, parts[:-1], create=False)
            with hold:
                st = hold.lstat(parts[-1])
                if st is not None and st.st_ino == ino:
                    st = _drop_spare(hold, parts[-1], st)
                elif st is not None and stat_mod.S_ISREG(st.st_mode):
                    stray = _stray_back(root, parts, hold, verb)
        except (UnsafeOperation, OSError):
            st = None
        if stray is not None:
            raise stray
        if st is not None and stat_mod.S_ISREG(st.st_mode) and st.st_ino == ino:
            return _held_result(root, parts, hold_run, st, top)
    return {"status": "absent", "bytes_freed": 0}


def _held_result(root: bytes, parts: list[bytes], run, st: os.stat_result, top: os.stat_result) -> dict:
    """The ``held`` result of the file ``st`` found at run ``run``'s holding entry for ``parts``
    (``top``: the holding folder's stat), as its hold would have given it."""
    target = holding_path(b"/".join([root.rstrip(b"/"), *parts]), os.fsdecode(root), run)
    return {
        "status": "held",
        "bytes_freed": 0,
        "nlink_before": st.st_nlink + 1,
        "dev": st.st_dev,
        "held_at": os.fsdecode(target),
        "holding": _holding_id(top),
    }


def held_in_run(path, *, ino: int, roots, run) -> dict | None:
    """The ``held`` result when run ``run``'s own holding entry for ``path`` is the file ``ino``
    (``_absent``'s look, for a path where another file is now), else None: no entry, another file
    there, a folder refused (nothing touched, nothing moved). A quarantine killed after its rename
    into holding, before the journal recorded it, and a file written at the old place since: that
    entry is the quarantined orphan, to be journaled as held (``orphans.finish_quarantine``);
    closed as not held, it sat in holding named by no journal row, listed and purged by nothing."""
    try:
        root, parts = _split_under(path, roots)
        if not parts or in_own_folder(parts[:-1]):
            return None
        hold, top = _open_holding_id(root, run, parts[:-1], create=False)
        with hold:
            st = hold.lstat(parts[-1])
            if st is None or not stat_mod.S_ISREG(st.st_mode) or st.st_ino != ino:
                return None
            return _held_result(root, parts, run, _drop_spare(hold, parts[-1], st), top)
    except (UnsafeOperation, OSError, ValueError):
        return None


def _stray_back(root: bytes, parts: list[bytes], hold: Dir, verb: str) -> UnsafeOperation:
    """Put the file ``_absent`` found at ``parts``' held name in ``hold`` (not the inode planned) back
    at ``parts``; the refusal to raise then, which says where that file is.

    Through the verified holding descriptor and the parent walked afresh from the seeding root
    (``_walk``: no symlink, qbhook's rules), and never over a name (``_put_back``): a file at the
    name by now stays, and this one stays in holding, named in the refusal for a person."""
    name = parts[-1]
    path_s = os.fsdecode(b"/".join([root.rstrip(b"/"), *parts]))
    why = f"refusing to {verb} {path_s}: another file was renamed over it as it was being held"
    stays = f"{why}; that file is in holding, at {hold.show(name)}"
    try:
        parent = _walk(root, parts[:-1])
    except (FileNotFoundError, NotADirectoryError):
        return UnsafeOperation(f"{stays} (its folder is gone)", hint="put it back by hand")
    except UnsafeOperation as e:
        return UnsafeOperation(f"{stays} (its folder is refused: {e.message})", hint="put it back by hand")
    except OSError as e:  # returned, never raised: ``_absent`` would read a raised one as "absent"
        return UnsafeOperation(f"{stays} ({e.strerror})", hint="put it back by hand")
    with parent:
        try:
            _put_back(name, hold.fd, name, parent.fd)
        except FileExistsError:
            return UnsafeOperation(f"{stays} (its name is taken again)", hint="put it back by hand")
        except OSError as e:
            return UnsafeOperation(f"{stays} ({e.strerror})", hint="put it back by hand")
    again = "list orphans again" if verb == "hold" else "re-plan"
    return UnsafeOperation(f"{why}; that file is put back, the {verb} is not done", hint=again)


def _unlink_second_link(d: Dir, spare: bytes, keeper: Dir, kname: bytes, st: os.stat_result) -> bool:
    """Unlink ``spare`` in ``d`` only while it is a second link of the file ``st`` that ``kname`` in
    ``keeper`` still names, both looked at again right before, through those verified descriptors;
    whether it was unlinked. The one rule of every spare qbhook takes: the stats that judged it a
    spare are older, and the kept name deleted (or replaced) since left it the last link, whose
    unlink would destroy the data. The spare's link count is looked at last, closest to the act."""
    want = (st.st_dev, st.st_ino)
    now = keeper.lstat(kname)
    if now is None or (now.st_dev, now.st_ino) != want:
        return False
    cur = d.lstat(spare)
    if cur is None or not stat_mod.S_ISREG(cur.st_mode) or (cur.st_dev, cur.st_ino) != want or cur.st_nlink < 2:
        return False
    os.unlink(spare, dir_fd=d.fd)
    return True


def _held_stray(root: bytes, parts: list[bytes], run, ino: int, st: os.stat_result, parent: Dir) -> str:
    """For a hold (or grace delete) refused because ``parts`` is another file ``st`` than planned
    (``ino``; ``parent``: the verified folder it was seen in): what its refusal adds about a file at
    the held name that is not ``ino``.

    A kill right after the rename into holding (before the look, ``_move_checked``) of a file
    renamed over the name just before left that file there; if the name is taken again before the
    resume, ``_absent`` never sees it, so the refusal names where it waits (nothing else does).
    A link of ``st`` itself there is the spare of that file's put-back without renameat2, killed
    between its link and its unlink (``_put_back``): taken, ``st``'s name keeps the data, and the
    spare would make the inode's every later hold or delete refuse an unknown link. Through the
    verified holding descriptor, in qbhook's 0700 folder, where nobody else renames; only while
    it is a second link and ``st``'s name still links it (``_unlink_second_link``): that name
    deleted since ``st`` was taken left the spare the file's last link, kept and named."""
    try:
        hold = _open_holding(root, run, parts[:-1], create=False)
    except (UnsafeOperation, OSError):
        return ""
    with hold:
        hst = hold.lstat(parts[-1])
        if hst is None or not stat_mod.S_ISREG(hst.st_mode) or hst.st_ino == ino:
            return ""
        if (hst.st_dev, hst.st_ino) == (st.st_dev, st.st_ino):
            if _unlink_second_link(hold, parts[-1], parent, parts[-1], st):
                return ""
            return (
                f"; that file's name went since, its link in holding, at {hold.show(parts[-1])}, may be its last: kept"
            )
        return f"; another file, renamed over it as it was being held, waits in holding at {hold.show(parts[-1])}"


def _drop_spare(hold: Dir, name: bytes, st: os.stat_result) -> os.stat_result:
    """Unlink the spare link ``_into_holding`` left beside the held ``name`` (the inode ``st``) when
    killed before its unlink; the held name's stat then. Only a regular file of that very inode,
    in qbhook's own folder, is taken: the held name keeps its data."""
    spare = _drop_name(name, st.st_ino)
    sst = hold.lstat(spare)
    if sst is None or not stat_mod.S_ISREG(sst.st_mode) or (sst.st_dev, sst.st_ino) != (st.st_dev, st.st_ino):
        return st
    # Holding is qbhook's 0700 folder, yet the one rule of a spare's unlink all the same.
    _unlink_second_link(hold, spare, hold, name, st)
    return hold.lstat(name) or st


_ABSENT = {"status": "absent", "bytes_freed": 0}


def _safe_unlink_at(u: _Unlink, parent: Dir, name: bytes, placed: Callable[[], bool]) -> dict:
    """The rule list of ``safe_unlink``, in order, all through the one verified ``parent``
    (``placed``: whether it is still below its seeding root, ``_walk_placed``)."""
    st = _still_the_planned_file(u, parent, name)
    if st is None and _undo_drop(parent, name, u.ino, u.size, None, "the link to delete"):
        # A delete killed between its rename to the drop name and the unlink: back, judged afresh.
        # Looked for only when the name is gone, so a delete costs no lstat more for it.
        st = _still_the_planned_file(u, parent, name)
    if st is None:
        return dict(_ABSENT)
    _no_new_outside_link(u, parent, name, st)
    keep_digest, doomed_digest = _planned_content(u, st)
    with _keep_holds_same_content(u, st, keep_digest) as kpin:
        _content_unchanged(u, parent, name, st, doomed_digest)
        if not _same_inode_still(parent, name, st, u):
            return dict(_ABSENT)
        # The kept copy once more: its content was proven before the doomed link was read. One
        # rewritten meanwhile at the same size (``rsync --inplace``, a tagger) is not the planned
        # content, and the link about to go would be its last copy.
        if not _pin_unchanged(kpin, kpin.st):
            keep_s = os.fsdecode(_p(u.keep_path))
            raise u.refuse(f"the copy to keep, {keep_s}, changed during the checks", hint="re-plan")
        return _unlink_or_hold(u, parent, name, st, placed)


def _still_the_planned_file(u: _Unlink, parent: Dir, name: bytes) -> os.stat_result | None:
    """A regular file, still inode ``ino`` on ``fsid``, of the planned size (None: already gone)."""
    st = parent.lstat(name)
    # A put-back of the planned file itself (the retry of a delete killed at its drop name), killed
    # between its link and its unlink without renameat2 (``_put_back``), left that spare link: an
    # unknown link to ``_no_new_outside_link``, which refused every retry for good. Looked for only
    # when the inode has another link (a spare makes two): no lstat more for the usual one-link
    # delete. Both names in ``parent``, the descriptor verified above.
    spare = st is not None and stat_mod.S_ISREG(st.st_mode) and st.st_ino == u.ino and st.st_nlink > 1
    if spare and _take_spare(parent, name, u.ino, st):
        st = parent.lstat(name)
    if st is None:
        return None
    if not stat_mod.S_ISREG(st.st_mode):
        raise u.refuse("not a regular file")
    if st.st_ino != u.ino or not _fsid_matches(u.catalog, parent, st, u.fsid):
        # A put-back of this file, killed at its drop name (``_put_back``), may have left a spare
        # link of it there, named after the planned inode: only this attempt knows that name.
        _take_spare(parent, name, u.ino, st)
        why = f"it is no longer the planned file (inode {st.st_ino}, planned {u.ino} on {u.fsid})"
    elif u.size is not None and st.st_size != u.size:
        why = f"{st.st_size} bytes, planned {u.size}"  # (a new file may get the freed inode number)
    else:
        return st
    stray = "" if u.hold_run is None else _held_stray(u.root, u.parts, u.hold_run, u.ino, st, parent)
    raise u.refuse(f"{why}{stray}", hint="put that file back by hand" if stray else "re-plan")


def _no_new_outside_link(u: _Unlink, parent: Dir, name: bytes, st: os.stat_result) -> None:
    """Every link of the inode is one we know about.

    The holding copies of this run's earlier deletes count as known (they are still links
    until purged). Links are counted as (folder, name) entries reached through verified
    folders (``dirfd.entry_key``, the planner's rule too), so two spellings of one link (a bind
    mount, lesson 5) are one, and a "seeding
    link" outside every seeding root (a library link, whatever the plan says) is none.
    """
    known = {os.fsdecode(_p(p)) for p in u.seeding_links} | {u.shown}
    if u.hold_run is not None:
        for p in list(known):
            try:
                r, _rel = _split_under(p, u.seeding_roots)
            except UnsafeOperation:
                continue
            known.add(holding_path(p, os.fsdecode(r), u.hold_run))
    entries = {entry_key(folder_id(parent.st), name)}
    for p in known - {u.shown}:
        got = _link_entry(p, u.seeding_roots)
        if got is not None and (got[1].st_dev, got[1].st_ino) == (st.st_dev, st.st_ino):
            entries.add(got[0])
    if st.st_nlink > len(entries):
        raise u.refuse(
            f"its inode has {st.st_nlink} links but only {len(entries)} are known seeding links - "
            # Which one is not known: an inode names none of its links, and finding it is a walk.
            "something the plan does not know links it now (a new seeding link, e.g. a cross-seed, or a library)",
            hint="re-plan: the group must stay where its library is",
        )


def _planned_content(u: _Unlink, st: os.stat_result) -> tuple[bytes, bytes]:
    """(what the kept copy must hold, what the doomed link must still hold): no act without both."""
    size = st.st_size if u.size is None else u.size
    want = _digest(u.keep_blake3 if u.keep_blake3 is not None else u.blake3_hex, size)
    return want, _digest(u.blake3_hex, size) if u.blake3_hex is not None else want


def _keep_holds_same_content(u: _Unlink, st: os.stat_result, want: bytes) -> Pin:
    """``keep_path`` exists, is another inode (the planned one, if named) of the same size and
    verifies as the planned content: that inode pinned (``Pin``, for the caller to close), its
    ``st`` the stat its content was proven under. The doomed link is read after this (minutes for
    a large file): the caller's last look compares the pin with it (``_pin_unchanged``)."""
    keep_s = os.fsdecode(_p(u.keep_path))
    try:
        kdir, kname, _kparts = _open_parent(u.keep_path, u.seeding_roots + u.keep_roots, same_fs=False)
    except (FileNotFoundError, NotADirectoryError):
        raise u.refuse(f"the copy to keep, {keep_s}, is missing") from None
    except UnsafeOperation as e:
        raise u.refuse(f"the copy to keep cannot be trusted: {e.message}") from None
    with kdir:
        kpin = Pin.at(kname, kdir.fd)
        if kpin is None:
            raise u.refuse(f"the copy to keep, {keep_s}, is missing")
        try:
            kst = kpin.st
            if (kst.st_dev, kst.st_ino) == (st.st_dev, st.st_ino):
                raise u.refuse(f"{keep_s} is the same inode, not a second copy")
            if u.keep_ino is not None and kst.st_ino != u.keep_ino:
                raise u.refuse(f"{keep_s} is no longer inode {u.keep_ino}")
            if u.keep_fsid is not None and not _fsid_matches(u.catalog, kdir, kst, u.keep_fsid):
                raise u.refuse(f"{keep_s} is not on filesystem {u.keep_fsid}")
            if kst.st_size != st.st_size:
                raise u.refuse(f"{keep_s} has {kst.st_size} bytes, it has {st.st_size}")
            problem = _checked_stat(kdir, kname, st.st_size, want, u.catalog, kpin)[0]
            if problem:
                raise VerificationFailed(f"refusing to delete {u.shown}: the copy to keep does not verify: {problem}")
        except BaseException:
            kpin.close()
            raise
    return kpin


def _content_unchanged(u: _Unlink, parent: Dir, name: bytes, st: os.stat_result, doomed: bytes) -> None:
    """The link to delete still holds the planned content (else it is not what was copied)."""
    if _content_digest(parent, name, st, u.catalog) != doomed:
        raise u.refuse("its content changed since planning; it is not what was copied", hint="re-plan")


def _same_inode_still(parent: Dir, name: bytes, st: os.stat_result, u: _Unlink) -> bool:
    """Last look, as close to the unlink as Python gets, through the same folder descriptor.

    ctime too: a write while the content was checked (same inode, size and links; a writer can
    put mtime back, never ctime) would otherwise unlink bytes no check has seen."""
    last = parent.lstat(name)
    if last is None:
        return False

    def facts(s: os.stat_result) -> tuple:
        return s.st_dev, s.st_ino, s.st_nlink, s.st_size, s.st_ctime_ns

    if facts(last) != facts(st):
        raise u.refuse("it changed during the checks")
    return True


def _unlink_or_hold(u: _Unlink, parent: Dir, name: bytes, st: os.stat_result, placed: Callable[[], bool]) -> dict:
    """The act, with ``checked``: the stat the content was checked under (``_same_inode_still``
    saw it right before), for the catalog's hash carry-over onto the inode's other links.
    ``placed``: looked at right before the rename that starts either act, and right after it."""
    checked = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}
    if u.hold_run is not None:
        # The walk to the holding folder (made if missing) is a wait after the last look: with
        # other links to carry a hash onto, ``checked`` only if the pinned inode was still ``st``
        # right before the rename (``_hold``), else a rewrite through them then would be carried.
        pin = Pin.at(name, parent.fd) if st.st_nlink > 1 else None
        with pin or nullcontext():
            held, hst, ident = _hold(parent, name, u.shown, st, u.root, u.parts, u.hold_run, pin=pin, placed=placed)
        res = {"status": "held", "bytes_freed": 0, "nlink_before": st.st_nlink, "dev": st.st_dev, "held_at": held}
        return {**res, "checked": checked, "holding": ident} if hst is not None else {**res, "holding": ident}
    # Not ``unlinkat(name)``: a file renamed over the name since the last look would lose its last
    # link. A rename to the drop name, a look, and the unlink of that name (one rename and one lstat
    # more per delete, ~180k of each for a large demote: metadata only, no byte read).
    _drop_checked(parent, name, st, u.shown, verb="delete", placed=placed)
    return {
        "status": "unlinked",
        "bytes_freed": st.st_size if st.st_nlink == 1 else 0,
        "nlink_before": st.st_nlink,
        "dev": st.st_dev,
        "checked": checked,
    }


def _open_holding(root: bytes, run, rel_dirs: list[bytes], *, create: bool) -> Dir:
    """``<root>/.qbhook-holding/<run>/<rel_dirs...>``: qbhook's own folders, each verified (0700, ours, same fs)."""
    return _open_holding_id(root, run, rel_dirs, create=create)[0]


def _open_holding_id(root: bytes, run, rel_dirs: list[bytes], *, create: bool) -> tuple[Dir, os.stat_result]:
    """``_open_holding``, with the holding folder's own stat met on the way down.

    0700 stops no one from renaming it: it sits in a folder qBittorrent writes, and a rename
    there needs no permission on the folder renamed. So each hold journals this identity, and a
    purge or put-back refuses a holding folder that is gone or another one (``_holding_is``)."""
    d = _walk(root, [HOLDING_DIR.encode()], create=create, own=True)
    top = d.st
    try:
        for name in [os.fsencode(str(run)), *rel_dirs]:
            nxt = d.sub(name, create=create, own=True)
            d.close()
            d = nxt
    except BaseException:
        d.close()
        raise
    return d, top


def _holding_id(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino]


def _holding_is(root: bytes, seen: os.stat_result | None, want, root_dev: int) -> None:
    """HoldingGone unless ``<root>/.qbhook-holding`` is there (``seen``: its stat, None if missing)
    and, when the hold journaled one (``want``, [dev, inode]), the very folder the link was held in.
    A held link out of reach is never "already gone": it may sit in the renamed folder, unpurged.

    The very folder: its inode, on the filesystem of the seeding root it sits directly in
    (``root_dev``: that root's st_dev now, opened verified from its pool root). Not the journaled
    dev: st_dev is handed out at mount time, and the reboot after a power cut, the usual crash,
    can renumber it (field lessons: 44 -> 49); the same untouched folder would read as replaced,
    its links hidden or unpurged for good. A folder renamed away and another put in its place
    has another inode."""
    folder = os.fsdecode(os.path.join(root.rstrip(b"/"), HOLDING_DIR.encode()))
    if seen is None:
        raise HoldingGone(folder, "not there")
    if want is not None and (seen.st_ino != list(want)[1] or seen.st_dev != root_dev):
        raise HoldingGone(folder, "another folder stands in its place")


def _hold(
    parent: Dir,
    name: bytes,
    path_s: str,
    st: os.stat_result,
    root: bytes,
    parts: list[bytes],
    run,
    *,
    pin: Pin | None = None,
    want: list[int] | None = None,
    placed: Callable[[], bool] | None = None,
) -> tuple[str, os.stat_result | None, list[int]]:
    """Move ``name`` (the inode ``st``) into holding; (where it is held, with ``pin`` its lstat
    there right after, through the holding folder, and the holding folder's [dev, inode] to
    journal). ``pin``: the inode pinned at the caller's last check of ``st``, held until that
    lstat (a hash's carry-over onto it: ``CarryProof``); the lstat is None unless the pin's fstat
    right before the rename was still ``st``, ctime included: the walk to the holding folder
    (made if missing) is a wait, and a rewrite through another link then (same size, mtime set
    back) would be in that lstat's ctime (R67). ``want``: the holding folder's identity journaled
    before the hold (``holding_ids``); another folder there is ``HoldingGone``, nothing moved.
    ``placed``: whether ``parent`` is still below its seeding root (``_walk_placed``), looked at
    right before the rename into holding and right after it."""
    target = holding_path(b"/".join([root.rstrip(b"/"), *parts]), os.fsdecode(root), run)
    try:
        hold, top = _open_holding_id(root, run, parts[:-1], create=True)
    except UnsafeOperation as e:
        raise UnsafeOperation(f"cannot hold {path_s}: {e.message}", hint=e.hint) from None
    with hold:
        _holding_is(root, top, want, hold.dev)
        if hold.dev != st.st_dev:
            raise UnsafeOperation(f"cannot hold {path_s}: {hold.show()} is on another filesystem")
        unchanged = _into_holding(parent, hold, name, st, path_s, target, placed, pin)
        held = hold.lstat(name) if unchanged else None
    if held is not None and (held.st_dev, held.st_ino) != (st.st_dev, st.st_ino):
        held = None
    return os.fsdecode(target), held, _holding_id(top)


def _into_holding(
    parent: Dir,
    hold: Dir,
    name: bytes,
    st: os.stat_result,
    path_s: str,
    target: str,
    placed: Callable[[], bool] | None,
    pin: Pin | None = None,
) -> bool:
    """Move the entry ``name`` of ``parent`` (the inode ``st``) into ``hold`` by one rename, never
    over a held name; UnsafeOperation if another file was met (put back, nothing removed). True
    when ``pin`` (the inode ``st`` was taken of) was still ``st``, ctime included, right before
    the rename: the moved inode's bytes are then the ones ``st`` was checked under.

    Not a link into holding and then an unlink of the original name: a file renamed over that
    name in between (qBittorrent finishing a download at an orphan's path, a writer of the
    folder) lost its last link there and was never held (R14). A rename moves whatever the name
    holds at that instant, so what arrived is looked at (``_move_checked``), and another file goes
    back. A hold by an older qbhook that died between its link and its unlink left the holding
    name a link of ``st`` already: the original name is then a spare link, moved to a name of
    qbhook's own in holding, proven, and unlinked there (0700: nobody else renames into it)."""
    there = hold.lstat(name)
    if there is None:
        new = name
    elif stat_mod.S_ISREG(there.st_mode) and (there.st_dev, there.st_ino) == (st.st_dev, st.st_ino):
        new = _drop_name(name, st.st_ino)  # a kill before its unlink: ``_absent`` drops it
    else:
        raise UnsafeOperation(f"cannot hold {path_s}: {target} already holds another file")
    if placed is not None and not placed():
        raise UnsafeOperation(_moved_off(parent, f"cannot hold {path_s}"), hint="re-plan")
    unchanged = pin is not None and _content_stat(pin.look()) == _content_stat(st)
    try:
        moved = _move_checked(parent, name, hold, new, st)
    except FileNotFoundError:
        moved = False  # gone since the last look: whatever took it, nothing of it is held
    except FileExistsError:
        raise UnsafeOperation(f"cannot hold {path_s}: {hold.show(new)} already holds another file") from None
    except _NotPutBack as e:
        raise UnsafeOperation(
            f"cannot hold {path_s}: another file was swapped in for it while it was being held; "
            f"that file is at {e.at} now (its name was taken again)",
            hint="put it back by hand",
        ) from None
    if not moved:
        raise UnsafeOperation(
            f"cannot hold {path_s}: the entry was swapped for another file while it was being held "
            "(that file is left where it was; nothing held)"
        )
    _back_unless_placed(placed, hold, new, parent, name, f"cannot hold {path_s}")
    if new != name:
        os.unlink(new, dir_fd=hold.fd)  # the spare link, in qbhook's own folder; ``target`` still links it
    return unchanged


def _drop_name(name: bytes, ino: int) -> bytes:
    """``.qbhook-relink.drop.<inode>.<name's tag>``: where a name goes to be proven before it is unlinked.

    Under ``RELINK_PREFIX``, so no scan catalogs it and no orphans walk lists it (a kill may leave
    one); ``drop`` is no hex number, so it is never a relink's own temporary name (``_relink_name``).
    Found again by (name, inode) alone: a resumed removal computes it, never lists the folder.
    A fixed length, never the name cut to fit: a cut can split a UTF-8 character, which a
    dataset with ``utf8only=on`` refuses (EILSEQ), every run."""
    return RELINK_PREFIX + b"drop.%x.%s" % (ino, _name_tag(name))


def _name_tag(name: bytes) -> bytes:
    """A short hash of ``name`` (16 hex digits): a fixed-length, ASCII stand-in for it in qbhook's
    own names; one folder's names (each of them a link of the one inode in the name) never meet."""
    return blake3.blake3(name).hexdigest(length=8).encode()


class _NotPutBack(Exception):
    """Another file arrived at a rename's new name and could not go back: it stays at ``at``."""

    def __init__(self, at: str) -> None:
        super().__init__(at)
        self.at = at


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """The same inode, unchanged: what a rename keeps of it (not ctime, which the rename moves)."""
    return (a.st_dev, a.st_ino, a.st_nlink, a.st_size, a.st_mtime_ns) == (
        b.st_dev,
        b.st_ino,
        b.st_nlink,
        b.st_size,
        b.st_mtime_ns,
    )


def _move_checked(src: Dir, name: bytes, dst: Dir, new: bytes, st: os.stat_result) -> bool:
    """Rename ``src/name`` to ``dst/new`` (never over an existing name), then prove what arrived is
    the file ``st`` the caller checked, unchanged. False: another file (swapped in between the
    caller's last look and the rename) or a changed one arrived, and is back at ``name``.
    ``_NotPutBack``: its name was taken again meanwhile; it stays at ``new``, nothing is removed.
    FileNotFoundError: nothing was at ``name``; FileExistsError: ``new`` is taken."""
    _rename_noreplace(name, src.fd, new, dst.fd)
    got = dst.lstat(new)
    if got is not None and _same_file(got, st):
        return True
    try:
        _put_back(new, dst.fd, name, src.fd)
    except OSError:
        raise _NotPutBack(dst.show(new)) from None
    return False


def hold_unreferenced(
    path, *, ino: int, size: int, max_nlink: int, mtime_ns: int, roots, run, resumed: bool = False
) -> dict:
    """Move one file no torrent references into ``<root>/.qbhook-holding/<run>/`` (never deletes it).

    Right before acting, through verified folder descriptors below one of ``roots`` (no
    symlink, no other filesystem): the entry is still a regular file, inode ``ino``, ``size``
    bytes, not written since (``mtime_ns``), and has no more than ``max_nlink`` links (a link
    made since the decision, by a library or a new torrent, stops it). A path already gone
    is ``absent``, or ``held`` if an earlier attempt held it. Returns ``{status, held_at}``.

    The walk that listed the file is minutes old, and an orphan's folder is a seeding folder an
    import can move into a library on the same dataset: so the folder is proven still below its
    seeding root right before the rename into holding and right after it, the file put back if it
    moved (``_walk_placed``, ``_hold``'s ``placed``: the rule of ``safe_unlink``). A kill before that
    put-back leaves a file in holding whose folder the path no longer reaches: refused, never
    ``held`` (``_gone_folder_absent``), so a resumed quarantine closes that step failed, naming
    where the file waits, and nothing purges it.

    ``resumed`` (finishing run ``run`` after a crash): one link more is allowed when it is this
    run's own holding entry for ``path`` (``_held_already``): a hold that died between its link
    into holding and the unlink of the original. Any other extra link still stops it.
    """
    path_s = os.fsdecode(_p(path))
    try:
        root, parts = _split_under(path, roots)
    except UnsafeOperation as e:
        raise UnsafeOperation(f"refusing to hold {path_s}: not inside a seeding root: {e.message}") from None
    if not parts or in_own_folder(parts[:-1]):
        raise UnsafeOperation(f"refusing to hold {path_s}: a seeding root or one of qbhook's own folders")
    try:
        parent, placed = _walk_placed(root, parts[:-1])
    except (FileNotFoundError, NotADirectoryError):
        return _gone_folder_absent(root, parts, ino, run, "hold", path_s)
    except UnsafeOperation as e:
        raise UnsafeOperation(f"refusing to hold {path_s}: {e.message}", hint=e.hint) from None
    with parent:
        st = parent.lstat(parts[-1])
        if st is None:
            return _absent(root, parts, ino, run)
        if not stat_mod.S_ISREG(st.st_mode):
            raise UnsafeOperation(f"refusing to hold {path_s}: not a regular file")
        if (st.st_ino, st.st_size) != (ino, size):
            stray = _held_stray(root, parts, run, ino, st, parent)
            raise UnsafeOperation(
                f"refusing to hold {path_s}: no longer the file decided on (inode {st.st_ino}, {st.st_size} bytes)"
                f"{stray}",
                hint="put that file back by hand" if stray else "list orphans again",
            )
        if st.st_mtime_ns != mtime_ns:
            raise UnsafeOperation(f"refusing to hold {path_s}: written since it was listed")
        # The extra link of a hold that died half-way is its own, counted once and looked up
        # only then (through the verified holding folder, never a path string).
        own = resumed and st.st_nlink == max_nlink + 1 and _held_already(root, parts, run, st)
        if st.st_nlink > max_nlink + (1 if own else 0):
            raise UnsafeOperation(
                f"refusing to hold {path_s}: it has {st.st_nlink} links now, "
                f"{max_nlink} when listed (a library or a torrent links it)"
            )
        held, _, ident = _hold(parent, parts[-1], path_s, st, root, parts, run, placed=placed)
    return {"status": "held", "bytes_freed": 0, "held_at": held, "dev": st.st_dev, "holding": ident}


def _held_already(root: bytes, parts: list[bytes], run, st: os.stat_result, *, drop: Dir | None = None) -> bool:
    """Whether run ``run``'s own holding entry for ``parts`` (``<root>/.qbhook-holding/<run>/<parts>``,
    each folder verified as qbhook's, none made) is the inode ``st``. ``drop``: the verified
    parent of ``parts``, whose name keeps the data; that entry is then unlinked, through the same
    verified holding descriptor (qbhook's 0700 folder, where nobody else renames), only while it
    is a second link and the name in ``drop`` is still that inode, looked at again right before
    (``_unlink_second_link``; ``kept_in_place``: the name deleted meanwhile left the entry the last
    link)."""
    try:
        hold, _top = _open_holding_id(root, run, parts[:-1], create=False)
    except (UnsafeOperation, OSError):
        return False  # no such folder, or not qbhook's own: the extra link is someone else's
    with hold:
        cur = hold.lstat(parts[-1])
        own = cur is not None and stat_mod.S_ISREG(cur.st_mode) and (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino)
        if own and drop is not None and not _unlink_second_link(hold, parts[-1], drop, parts[-1], cur):
            return False  # the name gone or replaced since: the entry may be its last link, kept
    return own


def kept_in_place(path, *, ino: int, roots, run) -> bool:
    """Whether ``path`` still names something in place, for a step of quarantine run ``run`` that is
    closed without its hold (its clients cannot be listed: nothing in place is held blind). False
    when it is gone: the hold may have moved it, and ``hold_unreferenced`` (``_absent``) records
    it where this run holds it, never moving anything.

    A hold of an older qbhook, killed between its link into holding and the unlink of the original,
    left the run's own holding entry a second link of the file ``ino`` still at ``path``
    (``_held_already``, the entry a resumed hold takes as its own): it is unlinked. The file keeps
    its name and its data; that spare, named by no journal row, would stay in holding for good and
    make every later hold or delete of the inode refuse an unknown link. Through verified folder
    descriptors below one of ``roots`` (UnsafeOperation: refused, nothing touched)."""
    root, parts = _split_under(path, roots)
    if not parts or in_own_folder(parts[:-1]):
        return True  # what no hold takes: closed, untouched
    try:
        parent = _walk(root, parts[:-1])
    except (FileNotFoundError, NotADirectoryError):
        return False
    with parent:  # held open: the drop looks at the name again through it
        st = parent.lstat(parts[-1])
        if st is None:
            return False
        if stat_mod.S_ISREG(st.st_mode) and st.st_ino == ino and st.st_nlink > 1:
            _held_already(root, parts, run, st, drop=parent)
    return True


# --------------------------------------------------------------------------- old links out of a move's reach


def moving_hold_key(run) -> str:
    """The holding sub-folder of one run's old links hidden while their torrent moves.

    Not ``<run>`` itself: that one holds the grace-period deletes, which the journal lists and
    ``purge_holding`` removes; a hidden link is never purged, only put back."""
    return f"{run}-moving"


def holding_ids(paths, *, roots) -> dict[str, list[int]]:
    """The [dev, inode] of the ``.qbhook-holding`` each of ``paths`` would be hidden in (made if
    missing, verified as qbhook's own): what a relocation journals before hiding any of them, so a
    put-back after a crash checks the very folder (``unhide_after_move``'s ``holding``)."""
    out: dict[str, list[int]] = {}
    by_root: dict[bytes, list[int]] = {}
    for p in paths:
        root, _parts = _moving_place(p, roots, "hide")
        if root not in by_root:
            with _walk(root, [HOLDING_DIR.encode()], create=True, own=True) as d:
                by_root[root] = _holding_id(d.st)
        out[p] = by_root[root]
    return out


def hide_during_move(path, *, roots, run, catalog=None, holding: list[int] | None = None) -> dict:
    """Take one old link of a torrent out of its client's reach while the client moves the torrent.

    qBittorrent persists a torrent's new save path before libtorrent has moved it; killed in
    between, it restarts with the two apart and moves the torrent itself in Overwrite mode
    (libtorrent ``always_replace_files``): across pools it opens each existing destination
    file ``O_RDWR|O_CREAT`` (plus ``O_TRUNC`` when the source looks sparse) and copies into
    it, then unlinks the source. Observed on 4.5.2 / libtorrent 2.0.8 on a promote: the
    library file's inode truncated and rewritten in place. libtorrent skips a file whose
    source is missing (ENOENT), so with the old link moved to
    ``<root>/.qbhook-holding/<run>-moving/<rel>`` (a rename on the same filesystem, no byte
    copied, nothing deleted) that move finds nothing to copy and the view stays untouched.

    Through verified folder descriptors below one of ``roots``. Returns ``{status:
    hidden|absent, held_at?, holding?, carry?}``; a link already hidden by an earlier attempt is
    ``hidden``. ``holding`` (given: journaled before, ``holding_ids``): the holding folder's
    [dev, inode] the hide must find (``HoldingGone`` if another), returned for ``unhide_after_move``.
    Moving a name changes the inode's ctime, which voids the catalog's cached hash
    (keyed on size, mtime, ctime): ``carry`` is that hash with the held link's stat right after
    the hide (its ctime the one our renames gave it), for ``unhide_after_move`` to store again
    under the new ctime when nothing else changed (else the delete step would read the whole
    old copy once more).
    """
    path_s = os.fsdecode(_p(path))
    root, parts = _moving_place(path, roots, "hide")
    key = moving_hold_key(run)
    try:
        # Proven still below its seeding root around the rename into holding (``_hold``'s
        # ``placed``): a folder moved into a library meanwhile holds a library file at ``parts``,
        # which a hide would take and the put-back would restore at the old path, not the library.
        parent, placed = _walk_placed(root, parts[:-1])
    except (FileNotFoundError, NotADirectoryError):
        return _hidden_or_absent(root, parts, key, drop_spare=True)
    except UnsafeOperation as e:
        raise UnsafeOperation(f"refusing to hide {path_s}: {e.message}", hint=e.hint) from None
    with parent:
        st = parent.lstat(parts[-1])
        if st is None:
            return _hidden_or_absent(root, parts, key, drop_spare=True)
        if not stat_mod.S_ISREG(st.st_mode):
            raise UnsafeOperation(f"refusing to hide {path_s}: not a regular file")
        fs_path = parent.fs_path_for(st)
        row_id, digest = _cached_digest(catalog, fs_path, st) if fs_path is not None else (None, None)
        # The held link's stat right after our rename (one lstat, only when there is a hash to
        # carry), with the inode pinned from ``st`` until then and seen unchanged right before the
        # rename: its ctime is the one nothing but our own rename gave it.
        pin = Pin.at(parts[-1], parent.fd) if digest is not None else None
        with pin or nullcontext():
            held, hst, ident = _hold(
                parent, parts[-1], path_s, st, root, parts, key, pin=pin, want=holding, placed=placed
            )
    res = {"status": "hidden", "held_at": held, "holding": ident}
    if digest is not None and hst is not None and (hst.st_size, hst.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
        res["carry"] = {
            "row": row_id,
            "blake3": digest.hex(),
            "stat": [hst.st_ino, hst.st_size, hst.st_mtime_ns, hst.st_ctime_ns],
        }
    return res


def unhide_after_move(
    path,
    *,
    roots,
    run,
    catalog=None,
    carry: dict | None = None,
    holding: list[int] | None = None,
    on_back: Callable[[], None] | None = None,
) -> dict:
    """Put back a link ``hide_during_move`` took away (idempotent), then drop the emptied holding folders.

    The folders above ``path`` are made again if the client's move removed them. If another
    file now sits at ``path``, nothing is replaced: the held link stays and the step refuses,
    naming where it is. ``carry`` (from ``hide_during_move``): the cached hash is stored again
    for the restored inode if nothing but our own renames touched it (``_carry_hash``).
    ``holding`` (from ``hide_during_move``: the link was hidden): a holding folder gone or
    another one is ``HoldingGone``, never ``absent`` (the link may sit in the renamed folder).
    ``on_back`` (the journal forgetting ``holding``) runs once the link is back, or surely not in
    that folder, and before any rmdir: the last put-back takes ``.qbhook-holding`` itself, and an
    identity still journaled after that would make every later put-back ``HoldingGone``.
    Returns ``{status: restored|absent}``.
    """
    path_s = os.fsdecode(_p(path))
    root, parts = _moving_place(path, roots, "put back")
    key = moving_hold_key(run)
    held = holding_path(b"/".join([root.rstrip(b"/"), *parts]), os.fsdecode(root), key)
    try:
        hold, top = _open_holding_id(root, key, parts[:-1], create=False)
    except (FileNotFoundError, NotADirectoryError):
        if holding is not None:
            d, stats = _descend(root, [HOLDING_DIR.encode()], own=True)
            d.close()
            _holding_is(root, stats[1] if len(stats) > 1 else None, holding, stats[0].st_dev)
            if on_back is not None:
                on_back()  # its folder is the one it was hidden in, and holds no run folder for it
        return {"status": "absent"}
    with hold:
        if holding is not None:
            _holding_is(root, top, holding, hold.dev)
        hst = hold.lstat(parts[-1])
        if hst is None:
            status = "absent"
        elif not stat_mod.S_ISREG(hst.st_mode):
            raise UnsafeOperation(f"{held} is not the file qbhook hid there: leaving it")
        else:
            # A hide killed before it unlinked its spare link left one beside the held name: it
            # goes first, else it stays in holding for good (the moving folder never removed).
            hst = _drop_spare(hold, parts[-1], hst)
            # The held link keeps its inode until our unlink; a pin keeps it on until the link put
            # back is looked at (only when there is a hash to carry): ``_carry_hash``.
            pin = Pin.at(parts[-1], hold.fd) if carry else None
            # The pin's ``with`` first: a walk that refuses (a symlink where the folder goes) still
            # closes it; each failed put-back leaked one descriptor, the held inode kept alive.
            with pin or nullcontext():
                # Proven still below its seeding root right before the link and again before the
                # held name goes (``_link_back``): a folder moved into the library meanwhile (R122).
                parent, placed = _walk_placed(root, parts[:-1], create=True)
                with parent:
                    # The pinned inode once more after the walk (which may make folders): a rewrite
                    # through another link meanwhile would be in the put-back's ctime (R67).
                    last = pin.look() if pin is not None else None
                    _link_back(hold, parent, parts[-1], hst, path_s, held, placed)
                    os.unlink(parts[-1], dir_fd=hold.fd)  # holding: qbhook's 0700 folder, nobody renames into it
                    _carry_hash(catalog, carry, hst if last is None else last, pin, parent.lstat(parts[-1]))
            status = "restored"
        if on_back is not None:
            on_back()
    _rmdir_chain(root, [HOLDING_DIR.encode(), os.fsencode(key), *parts[:-1]])
    return {"status": status}


def _moving_place(path, roots, verb: str) -> tuple[bytes, list[bytes]]:
    path_s = os.fsdecode(_p(path))
    try:
        root, parts = _split_under(path, roots)
    except UnsafeOperation as e:
        raise UnsafeOperation(f"refusing to {verb} {path_s}: not inside a seeding root: {e.message}") from None
    if not parts or in_own_folder(parts[:-1]):
        raise UnsafeOperation(f"refusing to {verb} {path_s}: a seeding root or one of qbhook's own folders")
    return root, parts


def still_hidden(path, *, roots, run) -> bool:
    """Whether ``hide_during_move`` of run ``run`` still holds ``path``'s link (False: put back, or
    never hidden; one that cannot be looked at through verified folders could not come back either)."""
    try:
        root, parts = _moving_place(path, roots, "look for")
    except UnsafeOperation:
        return False
    return _hidden_or_absent(root, parts, moving_hold_key(run))["status"] == "hidden"


def _hidden_or_absent(root: bytes, parts: list[bytes], key: str, *, drop_spare: bool = False) -> dict:
    """``hidden`` when the holding entry for ``parts`` is a regular file, else ``absent``.
    ``drop_spare`` (a hide finding its name gone): the spare link a hide killed before its unlink
    left beside the held name goes too (``_drop_spare``), else it stayed in holding for good."""
    try:
        with _open_holding(root, key, parts[:-1], create=False) as hold:
            st = hold.lstat(parts[-1])
            if drop_spare and st is not None and stat_mod.S_ISREG(st.st_mode):
                st = _drop_spare(hold, parts[-1], st)
    except (UnsafeOperation, OSError):
        st = None
    if st is not None and stat_mod.S_ISREG(st.st_mode):
        return {"status": "hidden", "held_at": holding_path(b"/".join([root.rstrip(b"/"), *parts]), root, key)}
    return {"status": "absent"}


def _carry_hash(catalog, carry: dict | None, hst: os.stat_result, pin: Pin | None, st: os.stat_result | None) -> None:
    """Store ``carry``'s hash again for ``st`` (the link put back) if nothing but our own renames
    touched the inode since it was hashed.

    The held link sat in a 0700 folder of qbhook's, but an inode with other links (a library's,
    a cross-seed's) can be rewritten through them meanwhile and its mtime set back (``rsync -t``,
    a tagger): only ctime tells, since nobody can set it back. So ``hst``, the held link's stat
    right before we linked it back (the pin's fstat after the walk to the folder it goes back
    to, which may make folders: a wait), must have the very ctime it had right after the hide
    (``carry["stat"]``); then same inode, size and mtime after our link-back and unlink means the
    same bytes as when hashed. Any other ctime: no carry, the next check reads the file again.
    Same inode means pinned (``pin``, taken while the held link still named it) from ``hst``
    until ``st``: once our unlink dropped the held link, a writer of the folder put back into
    could remove the name and create a file that gets the freed inode number.
    """
    if catalog is None or not carry or carry.get("row") is None or st is None:
        return
    if pin is None or CarryProof.across(pin, st, hst) is None:
        return
    held = list(carry["stat"])
    if [hst.st_ino, hst.st_size, hst.st_mtime_ns, hst.st_ctime_ns] != held:
        return
    if [st.st_ino, st.st_size, st.st_mtime_ns] == held[:3]:
        catalog.store_hash(carry["row"], bytes.fromhex(carry["blake3"]), st)


def _link_back(
    hold: Dir, parent: Dir, name: bytes, hst: os.stat_result, path_s: str, held: str, placed: Callable[[], bool]
) -> None:
    """Link the held ``name`` (the inode ``hst``) back into ``parent``, proven still below its
    seeding root (``placed``) right before the link and right after it, the caller's unlink of the
    held name next. Moved in between (R122: a writer of the seeding folder renamed it into the
    library, a symlink left in its place), the link goes again only if this very call made it
    (``_link_same``: an earlier attempt's, or a name a writer linked, is not provably ours), through
    a drop name and proven (``_drop_checked``), and the put-back is refused, the held link kept."""
    if parent.dev != hst.st_dev:
        raise UnsafeOperation(f"cannot put {path_s} back: its folder is on another filesystem now; it stays at {held}")
    moved = _moved_off(parent, f"cannot put {path_s} back") + f"; the old file stays at {held}"
    if not placed():
        raise UnsafeOperation(moved, hint="re-plan")
    made = _link_same(hold, parent, name, hst)
    if made is None:
        raise UnsafeOperation(
            f"cannot put {path_s} back: another file took its place; the old file stays at {held}",
            hint="compare the two and remove one by hand",
        )
    if placed():
        return
    now = parent.lstat(name) if made else None
    if now is not None and (now.st_dev, now.st_ino) == (hst.st_dev, hst.st_ino):
        _drop_checked(parent, name, now, path_s, verb="take back the link just made for")
    raise UnsafeOperation(moved, hint="re-plan")


def _link_same(src: Dir, dst: Dir, name: bytes, st: os.stat_result) -> bool | None:
    """Link ``src/name`` (the inode ``st``) as ``dst/name``: True when this call made that link,
    False when that name already was this inode (an earlier attempt got that far), None when it
    holds another file, or when ``src/name`` is no longer ``st``: then nothing is linked. The link
    is of the inode pinned and checked (``Pin.link``): an entry swapped after the caller's last
    look is never linked into holding (it used to leave a stray link of the swapped-in file there)."""
    try:
        pin = pin_file(name, src.fd)
    except (FileNotFoundError, NotRegular):
        return None
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        return None
    with pin:
        if (pin.st.st_dev, pin.st.st_ino) != (st.st_dev, st.st_ino):
            return None
        made = True
        try:
            pin.link(name, dst.fd, name, src.fd)
        except FileExistsError:
            made = False
    # Looked at after a fresh link too: the caller unlinks the other name next, and if a writer
    # renamed another file over this one meanwhile, that would leave no link of ``st`` but the
    # swapped-in file standing where the journal says ``st`` is.
    cur = dst.lstat(name)
    return made if cur is not None and (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino) else None


def _rmdir_chain(root: bytes, chain: list[bytes]) -> None:
    """rmdir the empty folders of ``chain`` below ``root``, deepest first, each through its verified parent."""
    try:
        d, stats = _descend(root, chain, own=True)
    except UnsafeOperation:
        return
    if len(stats) == len(chain) + 1:
        _rmdir_up(d, chain, stats)
    else:
        d.close()


def remove_leftover_view(
    path, *, ino: int, size: int, keep, blake3_hex, roots, keep_roots=(), catalog=None, ctime_ns=None, dev=None
) -> dict:
    """Unlink one view file a rolled-back group left behind, only if it is still qbhook's and redundant.

    Re-checked right before, through verified folder descriptors below one of ``roots``:
    ``path`` is still the recorded inode (on device ``dev``, if given) and size; its content lives elsewhere: either
    ``keep`` is the same inode (a linked view: only a name goes), or the view is a copy
    nobody linked since (one link) that still holds the planned content and ``keep`` (below
    ``roots`` or ``keep_roots``) holds the same verified content; an empty file needs no copy.
    ``absent`` if already gone.

    A copy is the only copy of whatever it holds now: something qbhook does not know of (another
    client, ``rsync --inplace``, a person) may have rewritten it in place at the same size, so its
    own content is proven too, not only its inode, size and the kept copy's. ``ctime_ns``: the
    view's ctime when the act that made it proved its content (``Act.after``, journaled with it):
    every write moves ctime and nobody can set it back, so the same ctime is that proof still
    holding, one stat; another ctime (a link onto it came and went, or a write) costs a hash, the
    catalog's cached one when valid, else a read.

    ``ViewReleased``: the view's own verdict, for good (it is not, or no longer, a redundant file
    qbhook made). ``ViewUnproven``: its source is gone or does not verify (the view may be the last
    copy of its content; the caller leaves it to a person). Any other refusal (a root or folder
    refused, a change during the checks) or OSError may pass: the caller keeps the view for
    another try.
    """
    path_s, parent, parts, placed = _view_at(path, roots)
    if parent is None:
        return {"status": "absent"}
    with parent:
        _undo_drop(parent, parts[-1], ino, size, dev)
        st = parent.lstat(parts[-1])
        if st is None:
            return {"status": "absent"}
        if not _is_view(st, ino, size, dev):
            raise ViewReleased(f"refusing to remove {path_s}: it is no longer the view qbhook made")
        if size and keep is not None:
            kdir, kname, kst = _source_of(path_s, keep, tuple(roots) + tuple(keep_roots))
            with kdir:
                same = (kst.st_dev, kst.st_ino) == (st.st_dev, st.st_ino)
                if not same:
                    if st.st_nlink != 1:
                        raise ViewReleased(f"refusing to remove {path_s}: linked elsewhere since it was made")
                    want = _digest(blake3_hex, size)
                    if st.st_ctime_ns != ctime_ns and _content_digest(parent, parts[-1], st, catalog) != want:
                        raise ViewReleased(
                            f"refusing to remove {path_s}: its content changed since qbhook made it (kept, not tracked)"
                        )
                    problem = _check_file(kdir, kname, size, want, catalog)
                    if problem:
                        raise ViewUnproven(
                            f"refusing to remove {path_s}: its source {keep} does not verify: {problem}",
                            source_seen(kst),
                        )
        elif size or st.st_nlink != 1:
            raise ViewReleased(f"refusing to remove {path_s}: no other copy of its content is known")
        last = parent.lstat(parts[-1])
        if last is None:
            return {"status": "absent"}
        # ctime too: a write while the checks ran moves it (and voids the content proof above).
        checked = (st.st_ino, st.st_nlink, st.st_size, st.st_ctime_ns)
        if (last.st_ino, last.st_nlink, last.st_size, last.st_ctime_ns) != checked:
            raise UnsafeOperation(f"refusing to remove {path_s}: it changed during the checks")
        _drop_checked(parent, parts[-1], last, path_s, placed=placed)
    return {"status": "removed", "bytes_freed": size if st.st_nlink == 1 else 0}


def _drop_checked(
    parent: Dir,
    name: bytes,
    st: os.stat_result,
    path_s: str,
    *,
    verb: str = "remove",
    placed: Callable[[], bool] | None = None,
) -> None:
    """Unlink ``name`` of ``parent``, the file ``st`` just checked: renamed first to a name no torrent
    owns (``_drop_name``), proven there (``_move_checked``), and unlinked under that name.

    An unlink of ``name`` itself would remove whatever was renamed over it since the last look
    (qBittorrent completing a download at that path: its only link). Another file met is put back
    and the removal refused; a kill between rename and unlink leaves the file under the drop name,
    and the next attempt puts it back and judges it afresh (``_undo_drop``: a leftover view's
    removal, and ``safe_unlink``'s delete when it finds its name gone). The drop name sits in
    a folder a writer of the seeding tree can write: one who renames a file onto it could as well
    have unlinked that file, which is what the module's model already grants it. ``placed``: whether
    ``parent`` is still below its seeding root (``_walk_placed``), looked at right before the rename
    and right after it: once the file is under the drop name in a folder proven in place, a move of
    the folder takes no name of it into the library."""
    tmp = _drop_name(name, st.st_ino)
    changed = f"refusing to {verb} {path_s}: it changed during the checks"
    if placed is not None and not placed():
        raise UnsafeOperation(_moved_off(parent, f"refusing to {verb} {path_s}"), hint="re-plan")
    try:
        moved = _move_checked(parent, name, parent, tmp, st)
    except FileNotFoundError:
        raise UnsafeOperation(changed) from None
    except FileExistsError:
        raise UnsafeOperation(f"refusing to {verb} {path_s}: {parent.show(tmp)} is taken", hint="remove it") from None
    except _NotPutBack as e:
        raise UnsafeOperation(
            f"{changed}: another file was renamed over it and now sits at {e.at} (its name was taken again)",
            hint="put it back by hand",
        ) from None
    if not moved:
        raise UnsafeOperation(f"{changed}: another file was renamed over it (left in place)")
    _back_unless_placed(placed, parent, tmp, parent, name, f"refusing to {verb} {path_s}")
    os.unlink(tmp, dir_fd=parent.fd)  # the drop name: see above


def _undo_drop(parent: Dir, name: bytes, ino: int, size: int | None, dev: int | None, what: str = "the view") -> bool:
    """Put back a file a killed ``_drop_checked`` left under its drop name (still that file:
    ``_is_view``; ``size`` None: any size), so it is judged afresh; whether one was put back.
    UnsafeOperation while ``name`` is taken.

    A regular file of another inode there goes back too: that kill came right after the rename,
    before the look at what arrived, when a file had been renamed over ``name`` just before
    (qBittorrent completing a download there). The drop name is qbhook's, made of ``name`` and the
    planned inode, so that file came from ``name``; it is not ours to delete, and left there it
    would be named by nothing (no scan lists drop names) while the removal said "absent"."""
    tmp = _drop_name(name, ino)
    tst = parent.lstat(tmp)
    if tst is None:
        return False
    now = parent.lstat(name)
    if now is not None and _take_spare(parent, name, ino, now, tst):
        return True
    swapped = stat_mod.S_ISREG(tst.st_mode) and tst.st_ino != ino
    if not swapped and not _is_view(tst, ino, tst.st_size if size is None else size, dev):
        return False
    if now is not None:
        # Not "no longer the view" (that ends its tracking, the view left under a hidden name).
        held = "a file renamed over its name" if swapped else what
        raise UnsafeOperation(f"{held} waits at {parent.show(tmp)}: its name is taken", hint="move one of them")
    try:
        # Through ``parent``, the descriptor the caller verified, never over a name (``_put_back``).
        _put_back(tmp, parent.fd, name, parent.fd)
    except (FileNotFoundError, FileExistsError):
        return False  # moved meanwhile: the checks below judge what is at ``name`` now
    return True


def _take_spare(parent: Dir, name: bytes, ino: int, now: os.stat_result, tst: os.stat_result | None = None) -> bool:
    """Unlink ``name``'s drop name for the planned inode ``ino`` when it is a second link of the
    regular file ``now`` at ``name``: a put-back without renameat2 killed between its link and its
    unlink (``_put_back``) left it, a name no torrent owns; ``name`` keeps the data. Whatever file
    that is: ``_move_checked`` also puts back a file renamed over ``name`` (qBittorrent completing
    one there), whose spare would otherwise stay hidden (no scan lists drop names) and refuse
    every later delete of it ("2 links but only 1 known", R19). Whether one was taken."""
    tmp = _drop_name(name, ino)
    tst = parent.lstat(tmp) if tst is None else tst
    if tst is None or not stat_mod.S_ISREG(tst.st_mode) or (tst.st_dev, tst.st_ino) != (now.st_dev, now.st_ino):
        return False
    # ``now`` is older than this: ``name`` deleted since would leave the drop name the last link.
    return _unlink_second_link(parent, tmp, parent, name, now)


def _view_at(path, roots) -> tuple[str, Dir | None, list[bytes], Callable[[], bool] | None]:
    """(``path`` as shown, its verified folder or None if gone, its parts below its root, the look
    that proves that folder still below its root: ``_walk_placed``'s) of a name qbhook made below
    a seeding root that a removal judges; ViewReleased if it is not one."""
    path_s = os.fsdecode(_p(path))
    root, parts = _split_under(path, roots)
    if not parts or in_own_folder(parts[:-1]):
        raise ViewReleased(f"refusing to remove {path_s}: not a view below a seeding root")
    walked: list[tuple[bytes, int, int]] = []
    d = _walk_to_view(root, parts[:-1], walked)
    return path_s, d, parts, None if d is None else _placing(d, root, walked)


def _source_of(path_s: str, src, roots: tuple) -> tuple[Dir, bytes, os.stat_result]:
    """(verified folder, name, lstat) of the source a removal of ``path_s`` rests on, the folder
    open for the caller to close; ViewUnproven if it is gone (nothing then proves the view's
    content lives elsewhere)."""
    try:
        kdir, kname, _kp = _open_parent(src, roots, same_fs=False)
    except (FileNotFoundError, NotADirectoryError):
        raise ViewUnproven(f"refusing to remove {path_s}: its source {src} is gone") from None
    kst = kdir.lstat(kname)
    if kst is None:
        kdir.close()
        raise ViewUnproven(f"refusing to remove {path_s}: its source {src} is gone")
    return kdir, kname, kst


def remove_unrecorded_link(path, src, *, roots, src_roots=()) -> dict:
    """Unlink ``path`` only while it is a name of ``src``'s inode: the link a repair's link step
    may have made before a kill took its outcome row (the caller knows ``path`` was empty at the
    step's intent), so no result says which inode it made.

    Both read through verified folder descriptors (``path`` below ``roots``, ``src`` below
    ``roots`` or ``src_roots``), the same device and inode compared, and ``path`` read again right
    before the unlink: only a name of the source's inode goes, whose content stays at ``src``.
    ``absent`` if nothing is there. ``ViewReleased``: something else is at ``path`` (another
    inode, not a regular file); ``ViewUnproven``: ``src`` is gone, so nothing proves which
    inode the step linked. The caller keeps the file then."""
    path_s, parent, parts, placed = _view_at(path, roots)
    if parent is None:
        return {"status": "absent"}
    with parent:
        st = parent.lstat(parts[-1])
        if st is None and _drop_spare_of(parent, parts[-1], path_s, src, tuple(roots) + tuple(src_roots)):
            st = parent.lstat(parts[-1])  # a file renamed over the name, back there: judged afresh
        if st is None:
            return {"status": "absent"}
        kdir, _kname, kst = _source_of(path_s, src, tuple(roots) + tuple(src_roots))
        with kdir:
            if not stat_mod.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (kst.st_dev, kst.st_ino):
                raise ViewReleased(f"refusing to remove {path_s}: it is not a link of {src}")
            last = parent.lstat(parts[-1])
            if last is None:
                return {"status": "absent"}
            if (last.st_dev, last.st_ino) != (st.st_dev, st.st_ino):
                raise UnsafeOperation(f"refusing to remove {path_s}: it changed during the checks")
            _drop_checked(parent, parts[-1], last, path_s, placed=placed)
    return {"status": "removed", "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size}


def _drop_spare_of(parent: Dir, name: bytes, path_s: str, src, roots: tuple) -> bool:
    """Unlink the drop name a killed ``_drop_checked`` of ``name`` left, when it is a spare link of
    ``src``'s inode (another link keeps its content): what the removal meant to remove anyway.
    A regular file of another inode there (renamed over ``name`` right before the removal's
    rename, the kill before its look: ``_undo_drop``'s case) is put back at ``name`` (free: the
    caller saw it so) through the same verified ``parent``, never over a name; whether it was."""
    try:
        kdir, _kname, kst = _source_of(path_s, src, roots)
    except (ViewUnproven, UnsafeOperation, OSError):
        return False  # nothing proves what the drop name is a link of: left
    with kdir:
        drop = _drop_name(name, kst.st_ino)
        dst = parent.lstat(drop)
        if dst is None or not stat_mod.S_ISREG(dst.st_mode):
            return False
        if (dst.st_dev, dst.st_ino) != (kst.st_dev, kst.st_ino):
            try:
                _put_back(drop, parent.fd, name, parent.fd)
            except (FileNotFoundError, FileExistsError):
                return False  # moved meanwhile, or the name taken again: the caller judges the name
            return True
        if dst.st_nlink >= 2:
            os.unlink(drop, dir_fd=parent.fd)  # a drop name, no torrent's: as ``_drop_checked``'s unlink
    return False


def _is_view(st: os.stat_result, ino: int, size: int, dev: int | None) -> bool:
    """Whether ``st`` is still the view file qbhook made: a regular file, that inode and size (and
    device, when the act that made it journaled one)."""
    return stat_mod.S_ISREG(st.st_mode) and (st.st_ino, st.st_size) == (ino, size) and dev in (None, st.st_dev)


def _walk_to_view(root: bytes, parts: list[bytes], walked: list[tuple[bytes, int, int]] | None = None) -> Dir | None:
    """The folder ``parts`` below the seeding root ``root`` that holds a leftover view; None when a
    folder below the root is gone (so is the view). The root itself missing says nothing about
    the view: its pool is not mounted (the mount point an empty folder), and "absent" would end
    the view's tracking for good, a view that may be the last copy of its content among them.
    ``UnsafeOperation`` then: the caller keeps the view for another run. ``walked``: as ``_open_root``'s."""
    try:
        d = _open_root(root, walked)
    except (FileNotFoundError, NotADirectoryError):
        raise UnsafeOperation(
            f"seeding root {os.fsdecode(root)} is missing", hint="is its pool mounted? the view is kept"
        ) from None
    try:
        for name in parts:
            nxt = d.sub(name)
            d.close()
            d = nxt
    except (FileNotFoundError, NotADirectoryError):
        d.close()
        return None
    except BaseException:
        d.close()
        raise
    return d


def source_seen(st: os.stat_result | None) -> list[int] | None:
    """What a leftover view's source was, as the journal keeps it for a view waiting for a person
    (``ViewUnproven.source``): inode, size and ctime (every write, rename or new link moves
    ctime), None when there was none. Another value later: the source changed, worth a new try."""
    return None if st is None else [st.st_ino, st.st_size, st.st_ctime_ns]


def look_at_leftover_view(path, *, ino: int, size: int, keep, roots, keep_roots=()) -> tuple[str, list[int] | None]:
    """A look, acting on nothing, at a leftover view waiting for a person and at its source, by the
    same verified walks ``remove_leftover_view`` takes: (``absent`` | ``changed`` | ``there``, its
    source's ``source_seen``). ``changed``: another inode or size at its name. A root or folder
    refused, an OSError: raised, the caller leaves the view as it is."""
    root, parts = _split_under(path, roots)
    if not parts:
        raise UnsafeOperation(f"{os.fsdecode(_p(path))} is a configured root, not a view inside one")
    parent = _walk_to_view(root, parts[:-1])
    if parent is None:
        state = "absent"
    else:
        with parent:
            st = parent.lstat(parts[-1])
        state = "absent" if st is None else "there" if (st.st_ino, st.st_size) == (ino, size) else "changed"
    if state != "there" or keep is None:
        return state, None
    try:
        kdir, kname, _kp = _open_parent(keep, tuple(roots) + tuple(keep_roots), same_fs=False)
    except (FileNotFoundError, NotADirectoryError):
        return state, None
    with kdir:
        return state, source_seen(kdir.lstat(kname))


@dataclass(frozen=True)
class HeldLink:
    """One link the journal recorded as moved into holding: where, since when, which inode, and
    the facts of the delete that held it (the copy it was deleted in favour of, and the content).

    ``keep_path`` None and ``orphan`` False: a held link whose delete step named no copy to keep
    (journaled before these facts were carried): its last link is never purged.
    """

    path: str
    since: float
    ino: int | None = None
    key: object = None  # the caller's handle (the journal step id), handed back to on_purged
    keep_path: str | None = None
    keep_fsid: object = None
    size: int | None = None
    blake3_hex: str | None = None
    orphan: bool = False  # quarantined by ``qbhook orphans``: no copy to keep, by the user's choice
    origin: str | None = None  # where the link was before it was held (its delete's path)
    holding: tuple[int, int] | None = None  # the holding folder's (dev, inode) at the hold (None: not journaled)

    boot: str | None = None  # the boot it was held in (``boot_clock``; None: not journaled)
    boottime: float | None = None  # CLOCK_BOOTTIME at the hold, in that boot
    floor: float | None = None  # no earlier than this, or held under a wrong clock (``Journal``: None, unknown)

    def expired(self, grace_s: float, now: float | HoldClock) -> bool:
        """Whether its grace period is over: the one rule of what a purge may consider.

        The grace is the only undo of an orphan's quarantine, and the wall clock alone is no
        measure of it: an RTC reading 2038 at boot, or an NTP step, ended every one at once (R42).
        A hold of this boot ends when the wall clock and CLOCK_BOOTTIME (which no clock step moves)
        both say so; any other only on a wall clock that is plausible (``doubt``), counted from
        ``start``: a stamp its own boot's later clock proves too early counts from later (R55)."""
        clock = now if isinstance(now, HoldClock) else HoldClock(now)
        if clock.wall - self.start(clock) < grace_s:
            return False
        if self.of_this_boot(clock):
            return clock.boottime - self.boottime >= grace_s
        return self.doubt(clock) is None

    def of_this_boot(self, clock: HoldClock) -> bool:
        return clock.boot is not None and self.boot == clock.boot and None not in (self.boottime, clock.boottime)

    def start(self, clock: HoldClock) -> float:
        """When its grace began, by the wall clock: ``since``, or, for a hold of an earlier boot,
        later when that boot's newest reading qbhook recorded (``HoldClock.boots``) says so.

        A wall clock restored at boot from the last shutdown (fake-hwclock, systemd-timesyncd's
        clock file, a board without an RTC) reads as far behind as the machine was off, until NTP
        steps it; a hold stamped before that step looks that much older, and at the next boot,
        where CLOCK_BOOTTIME no longer relates to it, passed every check: a week off, a 7-day
        grace, purged a day after the hold (R55). CLOCK_BOOTTIME is one count through the whole
        boot, no step moves it, so a later reading (W, B) of the same boot dates the hold at
        W - (B - boottime): exact if W was right, and W is likelier right than the hold's stamp
        (later in the boot, so after NTP synced, if it ever did). A W still wrong, behind, dates it
        too early, no worse than ``since``; ahead, too late: the hold waits longer. Hence the max:
        each is the time the hold was made or earlier, if its clock was not ahead."""
        seen = clock.boots.get(self.boot) if self.boot is not None and not self.of_this_boot(clock) else None
        if seen is None or self.boottime is None:
            return self.since
        wall, up = seen
        return max(self.since, wall - (up - self.boottime))

    def doubt(self, clock: HoldClock) -> str | None:
        """Why the wall clock cannot end this hold's grace now (None: it can, or the hold is of this
        boot, judged by CLOCK_BOOTTIME too): held later than the clock reads now (it went back), held
        before qbhook's own earlier records or before qbhook existed (held under a clock reset to
        1970: no grace measured from there), or the clock jumped (``HoldClock.jumped``). ``start``
        is the time judged: a stamp dated later by its own boot's clock is not a reset."""
        d = self.doubt_of(clock)
        return d[1] if d is not None else None

    def doubt_of(self, clock: HoldClock) -> tuple[str, str] | None:
        """``doubt`` with its kind first (``CLOCK_WENT_BACK``, ``CLOCK_RESET``, ``CLOCK_JUMPED``):
        the line names this hold's time and the clock's reading, the kind stays while it is wrong."""
        if self.of_this_boot(clock):
            return None
        start = self.start(clock)
        if start > clock.wall + HOLD_CLOCK_SKEW_S:
            return CLOCK_WENT_BACK, f"held at {_utc(start)}, later than the clock reads now: the clock went back?"
        if self.floor is not None and start < self.floor - HOLD_CLOCK_SKEW_S:
            why = f"held at {_utc(start)}, before qbhook's earlier records ({_utc(self.floor)}): a clock reset?"
            return CLOCK_RESET, why
        jumped = clock.jumped()
        return (CLOCK_JUMPED, jumped) if jumped is not None else None


# How far a hold's time may lie after the clock's now, or before qbhook's earlier records, and be a
# slow clock rather than a wrong one: NTP slews a few seconds; anything more is a clock set wrong.
HOLD_CLOCK_SKEW_S = 600.0
# The longest a wall clock may read past qbhook's last record before this boot and be believed to
# end grace periods: a machine off longer than a year is rare, while a wrong RTC (a dead battery, a
# board default) is off by decades. Past it, holds of earlier boots wait; those of this boot are
# measured by CLOCK_BOOTTIME too. A machine really off that long purges them on its next boot.
CLOCK_JUMP_MAX_S = 366 * 86400.0
# The kinds of a clock's doubt (``HeldLink.doubt_of``): what a notification of it names. Its full
# line changes at every purge (the clock's reading, the count of held links), and a notification
# told again when its text changes would be told at every run while the clock stays wrong (R58).
CLOCK_WENT_BACK = "the clock went back"
CLOCK_RESET = "the clock was reset to an early date"
CLOCK_JUMPED = "the clock jumped ahead"
# 2020-01-01 UTC: no qbhook hold predates it. An RTC reset reads 1970 or 2000 (a board's default).
HOLD_EPOCH = 1577836800.0


def _utc(t: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return f"{t:g}"


def boot_clock() -> tuple[str | None, float | None]:
    """(this boot's id, CLOCK_BOOTTIME now): what a hold is stamped with besides the wall clock
    (``Journal``, when it closes a step held), and what a purge compares it with. CLOCK_BOOTTIME
    counts from boot, suspend included, and no clock step moves it; it means nothing across boots,
    hence the id. (None, None) where either cannot be read."""
    boot = procs.boot_id()
    try:
        up = time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return None, None
    return (boot, up) if boot is not None else (None, None)


@dataclass(frozen=True)
class HoldClock:
    """The clocks one purge (or listing) judges every hold's grace period by, read once."""

    wall: float
    boot: str | None = None  # ``boot_clock`` now
    boottime: float | None = None
    last_before_boot: float | None = None  # the newest time qbhook recorded before this boot began
    # Each boot's newest (wall, CLOCK_BOOTTIME) qbhook recorded (``HeldLink.start``), by boot id:
    # read in one query per purge (``Journal.hold_clock``), never one per hold.
    boots: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def jumped(self) -> str | None:
        """Why the wall clock is not believed (``CLOCK_JUMP_MAX_S``), or None. Compared with what
        qbhook recorded before this boot began (by this clock: now less CLOCK_BOOTTIME), never with
        its newest record: a run under a wrong clock records that clock, and the check passed."""
        last = self.last_before_boot
        if last is None or self.wall - last <= CLOCK_JUMP_MAX_S:
            return None
        return (
            f"the clock reads {_utc(self.wall)}, {(self.wall - last) / 86400:.0f} days after qbhook's last "
            f"record before this boot ({_utc(last)}): a clock set wrong?"
        )


@dataclass(frozen=True)
class ClockDoubt:
    """Why held links whose wall-clock grace is over are not purged (``clock_doubts``)."""

    line: str  # in full: how many, when held, the clock's reading (the log, ``qbhook holding``)
    kinds: tuple[str, ...]  # only the kinds (``CLOCK_WENT_BACK``...): stable while the clock stays wrong

    def told(self) -> str:
        """What a notification says: its kinds only, so it is told once while they last (R58)."""
        return f"not purging held link(s) by the wall clock: {'; '.join(self.kinds)} (see `qbhook holding`)"


def clock_doubts(held: Iterable[HeldLink], clock: HoldClock, grace_s: float) -> ClockDoubt | None:
    """Why held links whose wall-clock grace is over are not purged (``HeldLink.doubt_of``), or None."""
    why: dict[tuple[str, str], int] = {}
    for h in held:
        start = h.start(clock)
        if clock.wall - start >= grace_s or start > clock.wall + HOLD_CLOCK_SKEW_S:
            d = h.doubt_of(clock)
            if d is not None:
                why[d] = why.get(d, 0) + 1
    if not why:
        return None
    line = "not purging held link(s) by the wall clock: " + "; ".join(f"{n} {d}" for (_k, d), n in why.items())
    return ClockDoubt(line, tuple(dict.fromkeys(k for k, _d in why)))


def clock_doubt(held: Iterable[HeldLink], clock: HoldClock, grace_s: float) -> str | None:
    """One line: why held links whose wall-clock grace is over are not purged (``clock_doubts``),
    or None. What the purge, the executor's log and ``qbhook holding`` say."""
    d = clock_doubts(held, clock, grace_s)
    return d.line if d is not None else None


def purge_holding(
    seeding_roots,
    older_than_s: float,
    *,
    held: Iterable[HeldLink],
    now: float | HoldClock | None = None,
    on_purged: Callable[[HeldLink], None] | None = None,
    on_gone: Callable[[HoldingGone], None] | None = None,
    on_freed: Callable[[int], None] | None = None,
    catalog=None,
    keep_roots=(),
) -> list[str]:
    """Unlink the ``held`` links whose grace period is over; returns the run folders that became empty and went.
    ``on_freed`` gets the size of each one unlinked as its inode's last link (the bytes that purge frees).

    Only entries the journal recorded are touched, each through verified descriptors of
    qbhook's own holding folders (a symlinked or foreign ``.qbhook-holding`` is refused);
    emptied folders are removed with rmdir, never by removing whatever is there. An entry
    already gone from a holding folder that is still the one it was held in counts as purged;
    one whose holding folder is gone or another (renamed away by a writer of the folder above)
    is not reached, stays journaled, and is reported per folder (``HoldingGone``, each also
    handed to ``on_gone`` for an alert). A held link that is the last link of its inode is
    unlinked only if its delete's copy to keep (below ``seeding_roots`` or ``keep_roots``)
    still verifies, by the delete's own check (``_keep_holds_same_content``): the grace
    period is exactly when a user may remove that copy. Else it stays, journaled, and is
    reported (``LastCopyKept``). Problems with one entry do not stop the others; they are
    raised together at the end (``LastCopyKept`` when every problem is a kept last copy).
    """
    now = time.time() if now is None else now  # a HoldClock: the purge's own, read once
    removed: list[str] = []
    problems: list[str] = []
    gone: dict[tuple[str, str], int] = {}  # (holding folder, why): held links not reached
    all_kept = True
    for h in held:
        if not h.expired(older_than_s, now):
            continue
        try:
            run_gone = _purge_one(h, tuple(seeding_roots), tuple(keep_roots), catalog, on_purged, on_freed)
        except HoldingGone as e:
            gone[(e.folder, e.why)] = gone.get((e.folder, e.why), 0) + 1
            continue
        except (UnsafeOperation, OSError) as e:
            problems.append(f"{h.path}: {e}")
            all_kept = all_kept and isinstance(e, LastCopyKept)
            continue
        if run_gone is not None and run_gone not in removed:
            removed.append(run_gone)
    for (folder, why), n in gone.items():
        e = HoldingGone(folder, why, links=n)
        problems.append(e.message)
        if on_gone is not None:
            on_gone(e)
    if problems:
        cls = LastCopyKept if all_kept and not gone else UnsafeOperation
        raise cls("holding purge left some entries: " + "; ".join(problems))
    return removed


def holding_gone(h: HeldLink, seeding_roots) -> HoldingGone | None:
    """Why ``h``'s holding folder is out of reach (gone from its place, or another folder there,
    ``_holding_is``), or None: there, or not provably gone (a foreign folder, not under a root)."""
    try:
        root, parts = _split_under(h.path, tuple(seeding_roots))
        if len(parts) < 3 or parts[0] != HOLDING_DIR.encode():
            return None
        d, stats = _descend(root, parts[:1], own=True)
    except (UnsafeOperation, OSError):
        return None
    d.close()
    try:
        _holding_is(root, stats[1] if len(stats) > 1 else None, h.holding, stats[0].st_dev)
    except HoldingGone as e:
        return e
    return None


def _purge_one(h: HeldLink, seeding_roots: tuple, keep_roots: tuple, catalog, on_purged, on_freed=None) -> str | None:
    """Unlink one held entry, hand it to ``on_purged``, then rmdir the holding folders it leaves
    empty; the run folder's path if it went.

    ``on_purged`` (the journal's mark) comes before any rmdir: the last entry's rmdir takes
    ``.qbhook-holding`` itself, and an entry unmarked after that would read as "holding folder
    gone" to every later purge. Marked first, a crash leaves at worst empty folders."""
    root, parts = _split_under(h.path, seeding_roots)
    if len(parts) < 3 or parts[0] != HOLDING_DIR.encode():
        raise UnsafeOperation(f"{h.path} is not inside a holding folder: not purging it")
    chain, name = parts[:-1], parts[-1]
    d, stats = _descend(root, chain, own=True)
    try:
        _holding_is(root, stats[1] if len(stats) > 1 else None, h.holding, stats[0].st_dev)
        if len(stats) == len(chain) + 1:
            st = d.lstat(name)
            if st is not None:
                if not stat_mod.S_ISREG(st.st_mode) or (h.ino is not None and st.st_ino != h.ino):
                    raise UnsafeOperation(f"{h.path} is not the file qbhook held there: leaving it")
                # Another link keeps the data; an empty file holds none; an orphan is what the user
                # chose to reclaim. Any other last link needs its second copy proven first.
                if st.st_nlink == 1 and st.st_size and not h.orphan:
                    _another_copy_still(h, root, parts, st, seeding_roots, keep_roots, catalog)
                os.unlink(name, dir_fd=d.fd)  # after a look, safely: holding is qbhook's 0700 folder
                if st.st_nlink == 1 and on_freed is not None:  # its last link: the data went with it
                    on_freed(st.st_size)
        # Gone (unlinked here, or not in the very folder it was held in): journaled before the rmdirs.
        if on_purged is not None:
            on_purged(h)
    except BaseException:
        d.close()
        raise
    # Folders this purge emptied go, deepest first, each named through its verified parent.
    removed = _rmdir_up(d, chain, stats)
    # chain is holding, run, ...: the run's folder went when the walk reached it and every level
    # from the deepest reached up to it went (all but the holding folder's own)
    run_gone = len(stats) >= 3 and removed >= len(stats) - 2
    return os.fsdecode(b"/".join([root.rstrip(b"/"), *chain[:2]])) if run_gone else None


def _another_copy_still(
    h: HeldLink, root: bytes, parts: list[bytes], st: os.stat_result, seeding_roots: tuple, keep_roots: tuple, catalog
) -> None:
    """The held link ``st`` is its inode's last: its delete's copy to keep must still verify, or it stays.

    The delete's own check, on the journaled facts. Not the planned keep *inode*: a later
    convergence may have relinked the keep path to another inode of the same content, which
    is as good a second copy (the content is what is proven, and the filesystem when known).
    The held file itself is not re-read: since the hold it sat in a 0700 folder of qbhook's,
    reachable by no other name (one link).
    """
    kept = f"kept {h.path}, the last copy of its content"
    if h.keep_path is None:
        raise LastCopyKept(f"{kept}: its delete recorded no copy to keep", hint="remove it by hand once checked")
    u = _Unlink(
        h.path, h.path, root, parts, None, st.st_ino, h.size, h.blake3_hex, h.keep_path, h.blake3_hex,
        h.keep_fsid, None, (), seeding_roots, keep_roots, catalog, None,
    )  # fmt: skip
    try:
        _keep_holds_same_content(u, st, _planned_content(u, st)[0]).close()  # its pin: no use here
    except UnsafeOperation as e:
        raise LastCopyKept(
            f"{kept}: {e.message}",
            hint=f"its copy at {h.keep_path} is gone or changed; restore from {h.path}, or remove it by hand",
        ) from None


# --------------------------------------------------------------------------- folders


# How deep below a pruned folder ``_prune_below`` goes. Each level holds its verified descriptor
# (the way back up is that chain, never ``..``) and a frame, so a writer's chain of thousands of
# nested empty folders would raise RecursionError in every caller and exhaust serve's descriptors
# (events.server.FD_BUDGET counts this bound). Torrents nest a handful of levels; folders deeper
# than this are left, empty, as the writer made them (their parents are then not empty either).
PRUNE_MAX_DEPTH = 32


def _prune_below(d: Dir, removed: list[str], depth: int = PRUNE_MAX_DEPTH) -> None:
    """rmdir every empty folder below ``d``, deepest first, down to ``depth`` levels; symlinks and
    other mounts are never entered."""
    if depth <= 0:
        return
    with os.scandir(d.fd) as it:
        subdirs = [os.fsencode(e.name) for e in it if e.is_dir(follow_symlinks=False)]
    for name in subdirs:
        try:
            sub = d.sub(name)
        except (UnsafeOperation, OSError):
            continue
        with sub:
            _prune_below(sub, removed, depth - 1)
        if _rmdir_quiet(d, name):
            removed.append(d.show(name))


def prune_empty_dirs(root, stop_at, *, roots, below: bool = True) -> list[str]:
    """Remove empty folders at and below ``root``, then empty parents up to (never including) ``stop_at``.

    Only folders: rmdir fails on anything non-empty, so no file can go. Every folder is
    reached through verified descriptors below one of ``roots``; symlinks are never followed.
    ``below`` False: only ``root`` and its parents, for a caller that emptied ``root`` of one
    file and knows nothing of the folders beside it (a category folder qBittorrent will write
    into, the mount point of a nested dataset not mounted now).
    """
    root_s, stop_s = os.fsdecode(_p(root)).rstrip("/"), os.fsdecode(_p(stop_at)).rstrip("/")
    try:
        base, parts = _split_under(root, roots)
        sbase, sparts = _split_under(stop_at, roots)
    except UnsafeOperation as e:
        raise UnsafeOperation(f"refusing to prune {root_s}: not inside {stop_s}: {e.message}") from None
    if base != sbase or parts[: len(sparts)] != sparts:
        raise UnsafeOperation(f"refusing to prune {root_s}: not inside {stop_s}")
    removed: list[str] = []
    opened = [_open_root(base)]
    try:
        for n in parts:
            try:
                opened.append(opened[-1].sub(n))
            except (FileNotFoundError, NotADirectoryError):
                break
        if below and len(opened) == len(parts) + 1:
            _prune_below(opened[-1], removed)
        for k in range(len(opened) - 1, len(sparts), -1):
            if not _rmdir_quiet(opened[k - 1], parts[k - 1]):
                break
            removed.append(opened[k].show())
    finally:
        for d in opened:
            d.close()
    return removed


# --------------------------------------------------------------------------- durability


_libc = None


def sync_filesystem(path, roots) -> None:
    """Flush the whole filesystem holding ``path`` (syncfs), so new links are on disk before old ones go.

    The folder flushed is ``path``'s nearest existing folder, reached by the verified walk from its
    configured root among ``roots``, never by the path string: a folder swapped for a symlink onto
    another filesystem would flush that one and leave the new links unflushed. A folder swapped
    on the way is refused (UnsafeOperation), before anything is deleted."""
    root, parts = _split_under(path, roots)
    d = _open_root(root)
    try:
        for name in parts[:-1]:
            try:
                nxt = d.sub(name, same_fs=False)
            except FileNotFoundError:
                break  # the nearest existing folder holds the new links' filesystem's entry
            d.close()
            d = nxt
        _syncfs(d.fd)
    finally:
        d.close()


def _syncfs(fd: int) -> None:
    """Flush the filesystem of the open ``fd`` (a plain sync where syncfs is missing)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if _libc.syncfs(fd) == 0:
            return
    except (OSError, AttributeError):
        pass
    os.sync()


RENAME_NOREPLACE = 1  # linux/fs.h


def _renameat2(src_name: bytes, src_fd: int, dst_name: bytes, dst_fd: int) -> bool:
    """``renameat2(RENAME_NOREPLACE)``: True when done; FileExistsError, never a replaced
    ``dst_name``; False where the call or the flag is missing (glibc < 2.28; a filesystem without
    it, such as ZFS before 2.2: EINVAL, ENOSYS), nothing done."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        call = _libc.renameat2
    except (OSError, AttributeError):
        return False
    if call(src_fd, src_name, dst_fd, dst_name, RENAME_NOREPLACE) == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOSYS):
        return False
    raise OSError(e, os.strerror(e), os.fsdecode(src_name))  # EEXIST: FileExistsError, ENOENT: FileNotFoundError


def _rename_noreplace(src_name: bytes, src_fd: int, dst_name: bytes, dst_fd: int) -> None:
    """Rename onto a name of qbhook's own (in holding, or a drop name): FileExistsError, never a
    replaced ``dst_name`` (``_renameat2``).

    Without the flag, a look and then a plain ``renameat``: ``dst_name`` sits in a folder only
    qbhook writes (holding, 0700) or is a name no torrent owns (``_drop_name``), so nobody but a
    writer who could remove a file anyway renames one onto it between the two. Not a link and an
    unlink of ``src_name``: that is a torrent's name, and a file renamed over it in between would
    lose its last link. Onto a torrent's name: ``_put_back``."""
    if _renameat2(src_name, src_fd, dst_name, dst_fd):
        return
    if _lstat_at(dst_fd, dst_name) is not None:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(dst_name))
    os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def _put_back(src_name: bytes, src_fd: int, dst_name: bytes, dst_fd: int) -> None:
    """Rename a name of qbhook's own (in holding, or a drop name) back onto a torrent's name:
    FileExistsError, never a replaced ``dst_name`` (a file qBittorrent completed there meanwhile).

    Without ``_renameat2``'s flag, a look and a plain rename would replace a file completed at
    that name between the two (R17). So ``linkat`` instead (EEXIST, atomically), then the unlink
    of ``src_name``, qbhook's own name (``_rename_noreplace``'s reasoning). What the callers put
    back is a regular file (or a symlink, linked as itself); a folder cannot be linked (EPERM):
    it stays at ``src_name`` and the caller says where. A kill between the two leaves both names
    links of the file: the spare one is qbhook's own, and ``_undo_drop`` takes it."""
    if _renameat2(src_name, src_fd, dst_name, dst_fd):
        return
    os.link(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
    os.unlink(src_name, dir_fd=src_fd)


def _lstat_at(fd: int, name: bytes) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
