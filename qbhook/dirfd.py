"""Reading facts below a configured root through verified directory descriptors.

The model (the rule ``move.fsops`` acts by, here for reading): a pool root is the configured
folder (config refuses a pool path through a symlink), opened from ``/`` down one component at
a time without following a symlink, and pinned: the folder first opened is the only one a
later open accepts (``open_root``). Neither a mount point nor a plain folder is trusted to stay
put: a folder above a mount point may be renamed while it is mounted (the mount moves with
it), and a plain-folder pool in a dataset an apps user can write may be renamed away and a
symlink put at its name; the walk refuses the symlink, the pin refuses another folder. A swap
before the process started is out of the pin's reach: ``loose_folders_above`` names the
folders where one could be made (``qbhook config check`` and ``serve`` warn). A seeding root
is a folder inside its pool that writers of the pool could swap, so it is opened from its pool
root down (``open_root`` with a ``SeedingRoot``), never by its path string; every folder below
a root is opened with
``O_DIRECTORY|O_NOFOLLOW`` relative to its verified parent (``open_below``, the one step
both this reader and fsops' ``Dir.sub`` take); a fact of an entry (its lstat, its bytes) is
read relative to the descriptor of its folder, never by resolving the path string again. So
the folder checked is the folder read: a folder swapped for a symlink after it was opened is
not followed (the descriptor still is the folder that was checked, inside the root), and one
swapped before is refused (``FolderRefused``, naming it and what it is); a missing folder (or
a name too long for any filesystem, or a folder root may not enter: ``_NOTHING_THERE``) means
nothing is at the path.

A file below a verified folder is opened the same way, by what it is and not by its name
(``open_file_at``): the name is pinned first (``O_PATH|O_NOFOLLOW``: no open of the thing
itself, so a device planted there is never opened: a device's open has effects of its own, a
watchdog arms, a tape rewinds), the pinned inode ``fstat``-ed and refused unless it is a regular
file (``NotRegular``), then that very inode reopened for reading through ``/proc/self/fd``. A
hard link is made of the pinned inode the same way (``Pin.link``): a name swapped between the
check and the act can then neither be opened nor linked. The pin (``Pin``, the one home of it) is
also what makes two stats one file: held across an act, it keeps the inode's number from being
handed to another file, which the catalog's hash carry-over asks for (``CarryProof``).

``FolderReader`` keeps the descriptors it opened (a bounded number, least recently used
closed first), so a snapshot opens each folder once and lstat-s each file with one
``fstatat`` relative to its folder's descriptor, as the symlink probe it replaces lstat-ed
each folder once. It never writes, and it never crosses a symlink; whether a mount point
may be crossed is the caller's to decide (reads may cross a nested dataset, like fsops'
reads; ``move.orphans`` checks ``st_dev`` on the descriptors it opens).
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from qbhook.paths import normalize

__all__ = [
    "DIR_FLAGS",
    "EntryChanged",
    "EntryKey",
    "FolderReader",
    "FolderRefused",
    "NotAFolder",
    "NotRegular",
    "Pin",
    "SeedingRoot",
    "entry_key",
    "folder_id",
    "loose_folders_above",
    "open_below",
    "open_file_at",
    "open_root",
    "open_walked",
    "pin_file",
    "pinned",
    "symlink_on_the_way",
]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# What a reader's step takes as "nothing there": missing, a file where a folder would be, a name
# no filesystem holds (ENAMETOOLONG: a torrent may name anything), a folder root cannot enter
# (EACCES: on a root-squashing mount). Raised out of a snapshot, one torrent's odd name would
# fail every snapshot of every torrent; as "nothing there" the planner blocks that torrent alone.
_NOTHING_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EACCES})
# Folders a reader keeps open at most. Each costs a descriptor, and ``serve`` sizes its
# connection limit to the descriptor limit less a reserve that counts two readers at once
# (events.server.FD_BUDGET: the worker's and the sweeper's snapshots). A torrent's files are asked for one
# after another, so a few open folders serve nearly every lookup; one evicted is opened again
# (and checked again) when asked for.
MAX_OPEN = 32
# A reader made for a few looks (the executor's checks of one step, the catalog's look at a path
# it was given no stat for): nothing to cache across, so it keeps few folders, whatever the depth.
LOOK_MAX_OPEN = 4


# One directory entry, however its path is spelled: (its folder's st_dev, st_ino, its name).
EntryKey = tuple[int, int, bytes]


def folder_id(st: os.stat_result) -> tuple[int, int]:
    """What one folder (or file) is, whichever path reaches it: its (st_dev, st_ino)."""
    return (st.st_dev, st.st_ino)


def entry_key(folder: tuple[int, int], name: str | bytes) -> EntryKey:
    """The entry ``name`` of the folder ``folder`` (its ``folder_id``), as one key: two spellings of one
    link (its folder reached two ways: a bind mount of seeding data inside the same filesystem, an
    export or a container's alias folder) are one key, two links are two. The one rule by which
    links are counted, so the planner (``decide.snapshot``, ``InodeFact.aliases``) and the
    executor's last check before a delete (``move.fsops._no_new_outside_link``) cannot disagree:
    when they did, a demote the planner saw as seed-only was refused by the executor after its
    whole copy, and planned again every sweep."""
    return (folder[0], folder[1], os.fsencode(name))


class NotAFolder(Exception):
    """``open_below`` met something else than a folder: ``kind`` is ``symlink`` (``target``: where
    it points), ``changing`` (a symlink when opened, a folder or nothing now: swapped meanwhile)
    or ``other`` (a file, a FIFO ...)."""

    def __init__(self, name, kind: str, target: str | None = None):
        super().__init__(name, kind, target)
        self.name, self.kind, self.target = name, kind, target


def open_below(parent_fd: int, name: str | bytes) -> int:
    """The descriptor of the folder ``name`` in the verified folder ``parent_fd``, never through a
    symlink: NotAFolder saying what is there instead; FileNotFoundError if nothing is."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    # O_NOFOLLOW|O_DIRECTORY refused it: say what it is (this second look only explains a refusal).
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and stat_mod.S_ISLNK(st.st_mode):
        try:
            target = os.fsdecode(os.readlink(name, dir_fd=parent_fd))
        except OSError:
            target = "?"
        raise NotAFolder(name, "symlink", target)
    if st is None or stat_mod.S_ISDIR(st.st_mode):
        raise NotAFolder(name, "changing")  # a symlink a moment ago, a folder (or gone) now
    raise NotAFolder(name, "other")


# A descriptor's own inode, reached by path: opening or linking /proc/self/fd/N follows the
# descriptor, never a name a writer could swap. A module variable: a test stands in for a machine
# whose /proc is not mounted.
PROC_FD = "/proc/self/fd/"
_PIN_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class NotRegular(Exception):
    """``pin_file`` met something else than a regular file at ``name`` (a FIFO, a device, a socket,
    a folder); ``mode`` says what (``files.kind``). It was never opened."""

    def __init__(self, name, mode: int):
        super().__init__(name, mode)
        self.name, self.mode = name, mode


class EntryChanged(OSError):
    """Without /proc only: the name held another file when it was opened again than when it was
    pinned (a writer swapped it in between); what was opened is closed again."""


class Pin:
    """An ``O_PATH | O_NOFOLLOW`` descriptor held on one inode (``fd``) and its fstat when pinned
    (``st``): the one pin of qbhook, for two uses.

    * **Acting on the inode checked.** An O_PATH open opens nothing: no driver's open runs (a
      device planted at the name is refused before anything happens to it), no FIFO blocks, no
      byte is read. The pinned inode is then opened (``reopen``) or hard-linked (``link``)
      through /proc/self/fd, never by its name: a name swapped after the check is neither opened
      nor linked (``pin_file``, ``open_file_at``).
    * **One file across an act.** While the descriptor is open the inode cannot be freed, so its
      (st_dev, st_ino) cannot be handed to another file (ext4 gives a freed inode number to the
      next new file at once; ZFS reuses object numbers too): two stats of that (dev, ino) taken
      while it is held are stats of one file. The catalog's hash carry-over asks for that
      (``catalog.store.CarryProof.across``).

    Never read, written or followed. A context manager (closes the pin); ``close`` is idempotent."""

    __slots__ = ("fd", "st")

    def __init__(self, fd: int, st: os.stat_result) -> None:
        self.fd, self.st = fd, st

    @classmethod
    def at(cls, name: str | bytes, dir_fd: int | None = None) -> Pin | None:
        """Whatever entry ``name`` (in the verified folder ``dir_fd``; None: a path, never followed at
        its end) is, pinned, a symlink as itself; None if nothing is there."""
        try:
            return _pin(name, dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            return None

    @property
    def held(self) -> bool:
        """Still open: what it says of its inode holds only while it is."""
        return self.fd >= 0

    def look(self) -> os.stat_result:
        """The pinned inode's stat now (an fstat: no name is resolved)."""
        return os.fstat(self.fd)

    def reopen(self, flags: int, name: str | bytes, dir_fd: int | None) -> tuple[int, os.stat_result]:
        """The pinned inode (pinned as ``name`` in ``dir_fd``) opened with ``flags`` (read-only ones),
        and the new descriptor's fstat: through /proc/self/fd, so it is that inode whatever the name
        holds now (checked: same st_dev and st_ino).

        Without /proc (not mounted: a bare chroot) the name is opened again (O_NOFOLLOW, O_NONBLOCK,
        O_NOCTTY: a FIFO cannot hang it, a terminal cannot become the controlling one) and must be
        the pinned inode, else EntryChanged. A device swapped in between the pin and that open is
        then opened before it is refused: the window the old code had, left only where /proc is
        missing."""
        flags = (flags & ~os.O_NOFOLLOW) | os.O_NOCTTY | os.O_CLOEXEC
        try:
            fd = os.open(PROC_FD + str(self.fd), flags)
        except FileNotFoundError:
            if os.path.isdir(PROC_FD):
                raise
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        try:
            now = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if (now.st_dev, now.st_ino) != (self.st.st_dev, self.st.st_ino):
            os.close(fd)
            raise EntryChanged(errno.EAGAIN, "changed while it was being opened", os.fsdecode(name))
        return fd, now

    def link(self, dst: bytes, dst_dir_fd: int, name: bytes, dir_fd: int | None) -> None:
        """Hard-link the pinned inode (pinned as ``name`` in ``dir_fd``) as ``dst`` in the verified
        folder ``dst_dir_fd``: linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N links exactly the open
        inode, so a name swapped after its check is never linked (FileNotFoundError: the pinned
        file lost its last name meanwhile). Errors as os.link's (FileExistsError, EXDEV).

        Without /proc the name is linked (never followed), as before pinning: a swap in between is
        then seen only after the link, by the caller's look at what it made."""
        try:
            os.link(PROC_FD + str(self.fd), dst, dst_dir_fd=dst_dir_fd, follow_symlinks=True)
        except FileNotFoundError:
            if os.path.isdir(PROC_FD):
                raise
            os.link(name, dst, src_dir_fd=dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> Pin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pin(name: str | bytes, dir_fd: int | None) -> Pin:
    """``name`` in ``dir_fd`` pinned, whatever it is; os.open's errors."""
    fd = os.open(name, _PIN_FLAGS, dir_fd=dir_fd)
    try:
        return Pin(fd, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise


def pin_file(name: str | bytes, dir_fd: int | None = None) -> Pin:
    """The regular file ``name`` (in the verified folder ``dir_fd``) pinned (``Pin``), its fstat
    checked first. A symbolic link is OSError ELOOP (what an O_NOFOLLOW open says), anything else
    not a regular file NotRegular (never opened), nothing there FileNotFoundError."""
    pin = _pin(name, dir_fd)
    if not stat_mod.S_ISREG(pin.st.st_mode):
        pin.close()
        if stat_mod.S_ISLNK(pin.st.st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), os.fsdecode(name))
        raise NotRegular(name, pin.st.st_mode)
    return pin


def open_file_at(name: str | bytes, dir_fd: int | None, flags: int) -> tuple[int, os.stat_result]:
    """The regular file ``name`` in the verified folder ``dir_fd`` (None: ``name`` is a path, never
    followed at its end) opened with ``flags``, and its fstat: pinned, checked, reopened
    (``pin_file``, ``Pin.reopen``: their errors). The one way root opens a file others may plant."""
    with pin_file(name, dir_fd) as pin:
        return pin.reopen(flags, name, dir_fd)


@dataclass(frozen=True, slots=True)
class SeedingRoot:
    """A configured seeding root (``path``) with the configured pool root that holds it (``pool``).

    A seeding root is a folder inside its pool, and the folders on the way to it can be renamed
    and replaced by whoever may write in the pool: so it is opened from its pool root down
    (``open_root``), never by its path string. Path-like (``os.fspath``, ``str``: its path), so
    it goes wherever a root path goes; it is never equal to a plain path, so a cache keyed by
    roots never mistakes an anchored root for one opened by path.
    """

    path: str
    pool: str

    def __post_init__(self) -> None:
        path, pool = normalize(os.fspath(self.path)), normalize(os.fspath(self.pool))
        if not path.startswith(pool.rstrip("/") + "/"):
            raise ValueError(f"seeding root {path} is not inside its pool root {pool}")
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "pool", pool)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path


def open_walked(path: str | bytes | os.PathLike) -> int:
    """The descriptor of the folder at the absolute ``path``, reached from ``/`` one component at a
    time with ``open_below``: a symlink anywhere on the way is refused (``FolderRefused`` naming
    that folder), never followed. FileNotFoundError / NotADirectoryError (naming the path so far):
    no folder there. No pin: for a folder that is not a configured root (a mount point of the
    mount table, ``catalog.fsid``); a configured root is opened by ``open_root``."""
    path_b = os.fsencode(path)
    if not path_b.startswith(b"/"):
        raise ValueError(f"{os.fsdecode(path_b)}: not an absolute path")
    return _descend(os.open(b"/", DIR_FLAGS), b"", path_b)


def _descend(fd: int, here: bytes, rest: bytes, walked: list[tuple[bytes, int, int]] | None = None) -> int:
    """Walk from the open folder ``fd`` (at ``here``) down ``rest`` with ``open_below``; the
    descriptor reached (``fd`` is consumed either way). ``walked``: given, each folder opened is
    appended to it as (its name, st_dev, st_ino), as verified on the way (one fstat each)."""
    full = here.rstrip(b"/") + b"/" + rest.lstrip(b"/")
    try:
        for name in rest.split(b"/"):
            if name in (b"", b"."):
                continue
            if name == b"..":
                raise ValueError(f"{os.fsdecode(full)}: a '..' component is never followed")
            here += b"/" + name
            try:
                nfd = open_below(fd, name)
            except NotAFolder as e:
                if e.kind == "other":
                    raise NotADirectoryError(errno.ENOTDIR, "not a folder", os.fsdecode(here)) from None
                raise FolderRefused(os.fsdecode(here), e.kind, e.target) from None
            except OSError as e:
                # the path so far, not the bare name, in the error
                raise OSError(e.errno, e.strerror, os.fsdecode(here)) from None
            os.close(fd)
            fd = nfd
            if walked is not None:
                st = os.fstat(fd)
                walked.append((name, st.st_dev, st.st_ino))
    except BaseException:
        os.close(fd)
        raise
    return fd


# Each pool root's (st_dev, st_ino) as first opened by this process. A swap *while* qbhook runs
# (the pool root renamed away and a symlink or another folder put at its name; or a folder above
# a mount point renamed, which the kernel allows, the mount moving with it) lands a later open on
# another folder: refused, never acted in. One dict lookup and the fstat every open takes anyway.
# A pool exported and imported again may come back with another st_dev: refused the same way
# until qbhook restarts (the hint says so); a swap before the process started is what
# ``loose_folders_above`` warns of.
_PINS: dict[bytes, tuple[int, int, bool]] = {}  # (st_dev, st_ino, a mount point when pinned)


def _mount_point(fd: int, st: os.stat_result) -> bool:
    """The open folder ``fd`` (``st``) is the root of a filesystem mounted there: its parent is on
    another device. Only root can mount (a user's FUSE mount is closed to root without
    ``allow_other``), so a writer of the folder above cannot make one."""
    return os.stat(b"..", dir_fd=fd, follow_symlinks=False).st_dev != st.st_dev


def open_root(
    root: str | bytes | os.PathLike,
    pool: str | bytes | os.PathLike | None = None,
    *,
    walked: list[tuple[bytes, int, int]] | None = None,
) -> int:
    """The descriptor of the configured folder ``root`` (the one home of opening a root).

    ``pool`` None: ``root`` is a pool root, opened from ``/`` down (``open_walked``: a symlink
    anywhere on the way is refused, ``FolderRefused`` naming it; config refuses a pool path
    through a symlink, so the configured path is the real one) and pinned: the first open in
    this process records the folder's (st_dev, st_ino), and a later open landing on another
    folder is ``FolderRefused`` ("no longer the folder it was at start"), unless both are mount
    points with the same root inode number (a remount: a new st_dev, which only root can make). Otherwise ``root``
    lies below the pool root ``pool``: that is opened so, and every folder from it down to
    ``root`` with ``open_below``, so a seeding root (or a folder between) swapped for a symlink
    is refused, named, never followed. FileNotFoundError / NotADirectoryError: no folder there.
    ``walked`` (a root below a pool root only): each folder opened below the pool root, down to
    ``root`` itself, is appended as (name, st_dev, st_ino): the folders a later "still at its
    configured place" check must meet going up (``move.fsops.Anchor``).
    """
    root_b = os.fsencode(root)
    if pool is None:
        key = b"/" + root_b.strip(b"/")
        fd = open_walked(key)
        try:
            st = os.fstat(fd)
            pin = _PINS.get(key)
            if pin is None:
                _PINS[key] = (st.st_dev, st.st_ino, _mount_point(fd, st))
            elif pin[:2] != (st.st_dev, st.st_ino):
                # A pool exported and imported again (or remounted) comes back with another st_dev:
                # the same mount point, a filesystem mounted there again, with its root's inode
                # number. serve keeps running across that (integration/test_catalog_zfs.py); which
                # filesystem it is, the catalog knows by its GUID. Anything else is a swap.
                if not (pin[2] and st.st_ino == pin[1] and _mount_point(fd, st)):
                    raise FolderRefused(os.fsdecode(key), "replaced", None)
                _PINS[key] = (st.st_dev, st.st_ino, True)
        except BaseException:
            os.close(fd)
            raise
        return fd
    pool_b = os.fsencode(pool).rstrip(b"/")
    if not root_b.startswith(pool_b + b"/"):
        raise ValueError(f"{os.fsdecode(root_b)} is not inside {os.fsdecode(pool_b) or '/'}")
    return _descend(open_root(pool_b or b"/"), pool_b, root_b[len(pool_b) + 1 :], walked)


def pinned(root: str | bytes | os.PathLike) -> tuple[int, int] | None:
    """The (st_dev, st_ino) the pool root ``root`` was pinned to (``open_root``), None if it was
    never opened in this process: the folder a later check of "still below this pool root" must
    meet going up through ``..``, whatever the root's path resolves to by then."""
    pin = _PINS.get(b"/" + os.fsencode(root).strip(b"/"))
    return None if pin is None else pin[:2]


def symlink_on_the_way(path: str | os.PathLike) -> tuple[str, str] | None:
    """The first folder on the way to the absolute ``path`` (itself included) that is a symlink,
    as (that folder, where it points); None if there is none (or the path stops existing first).
    Config asks this of a pool path at load: ``open_root`` never follows such a folder."""
    here = ""
    for name in os.fspath(path).split("/"):
        if name in ("", "."):
            continue
        here += "/" + name
        try:
            st = os.lstat(here)
        except OSError:
            return None  # missing (not mounted yet): open_root's walk judges it when it is there
        if stat_mod.S_ISLNK(st.st_mode):
            try:
                return here, os.readlink(here)
            except OSError:
                return here, "?"
    return None


def loose_folders_above(root: str | os.PathLike) -> list[str]:
    """The folders above the pool root ``root`` that a user other than root could rename or
    replace an entry in, each as "<folder> (<why>)": one not owned by root, or one writable by
    its group or others, unless it is sticky and the entry on the way is root's (then only root
    may rename it). Such a user could swap the pool root before qbhook starts, which the pin
    cannot see (while qbhook runs, the walk and the pin still hold). Missing folders end the
    look: there is nothing to judge yet."""
    parts = [n for n in os.fspath(root).split("/") if n not in ("", ".")]
    loose = []
    folder = "/"
    for name in parts:
        child = folder.rstrip("/") + "/" + name
        try:
            st, cst = os.lstat(folder), os.lstat(child)
        except OSError:
            break
        writable = st.st_mode & (stat_mod.S_IWGRP | stat_mod.S_IWOTH)
        if st.st_uid != 0:
            loose.append(f"{folder} (owned by uid {st.st_uid})")
        elif writable and not (st.st_mode & stat_mod.S_ISVTX and cst.st_uid == 0):
            who = "others" if st.st_mode & stat_mod.S_IWOTH else f"group {st.st_gid}"
            sticky = ", sticky but the entry is not root's" if st.st_mode & stat_mod.S_ISVTX else ""
            loose.append(f"{folder} (writable by {who}{sticky})")
        folder = child
    return loose


class FolderRefused(Exception):
    """A folder on the way to a path below a root is a symlink (or was swapped while opened), or a
    pool root is no longer the folder it was when first opened (``kind`` "replaced"): nothing
    below it is read. ``folder``: its path; ``target``: where the symlink points."""

    def __init__(self, folder: str, kind: str, target: str | None):
        self.folder, self.kind, self.target = folder, kind, target or "?"
        if kind == "replaced":  # open_root's pin
            super().__init__(
                f"pool root {folder} is no longer the folder it was at start: refusing to use it "
                "(restart qbhook if the pool was remounted)"
            )
            return
        what = f"a symlink to {self.target}" if kind == "symlink" else "changing (swapped while being opened)"
        super().__init__(f"{folder} is {what}: refusing to go through it")


class FolderReader:
    """Read-only facts of paths below ``roots``, each folder reached by an ``open_below`` walk.

    Paths are absolute; each is placed under the longest root that holds it (by text: ``..``
    is never followed, ``normalize`` refuses it). Use as a context manager, or ``close()``:
    the descriptors it keeps are closed then.
    """

    def __init__(self, roots: Iterable[str | os.PathLike], *, max_open: int = MAX_OPEN):
        self._roots = sorted({normalize(os.fspath(r)) for r in roots}, key=len, reverse=True)
        self._prefixes = [(r, r.rstrip("/") + "/") for r in self._roots]
        self._fds: OrderedDict[str, int] = OrderedDict()
        # folders found missing (None) or refused, for the reader's life: asked again, the same answer
        self._verdicts: dict[str, FolderRefused | None] = {}
        # (st_dev, st_ino) of the folders ``identity`` was asked for (None: none to be had), for the
        # reader's life: one fstat per distinct folder, however many files it holds.
        self._ids: dict[str, tuple[int, int] | None] = {}
        self._max_open = max(2, max_open)
        # The folder the last path was placed in, (path, descriptor): a torrent's files are asked
        # for one after another, and this skips normalising and placing each one again.
        self._last: tuple[str, int] | None = None

    def __enter__(self) -> FolderReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._last = None
        fds, self._fds = self._fds, OrderedDict()
        for fd in fds.values():
            os.close(fd)

    @property
    def roots(self) -> tuple[str, ...]:
        """The roots this reader walks from (normalised)."""
        return tuple(self._roots)

    def root_of(self, path: str) -> str | None:
        """The root ``path`` is placed under (None: under no root)."""
        for r, prefix in self._prefixes:
            if path.startswith(prefix) or path == r:
                return r
        return None

    def folder(self, path: str) -> int | None:
        """The verified descriptor of the folder ``path`` (None: missing, or not a folder, when
        first asked); FolderRefused if it or a folder above it (below its root) is a symlink.
        ValueError for a path under no root. The descriptor stays the reader's: never close it."""
        path = normalize(path)
        root = self.root_of(path)
        if root is None:
            raise ValueError(f"{path}: not below any of {', '.join(self._roots)}")
        return self._folder(path, root)

    def identity(self, path: str) -> tuple[int, int] | None:
        """The (st_dev, st_ino) of the folder ``path``, the fstat of its verified descriptor (so the
        folder checked is the one named): what one folder is whichever way it is spelled (a bind
        mount shows it at a second path). None: missing, refused, or under no root. Kept for the
        reader's life, so a caller asking for every folder of many files pays one fstat a folder."""
        try:
            return self._ids[path]
        except KeyError:
            pass
        try:
            fd = self.folder(path)
            got = None if fd is None else folder_id(os.fstat(fd))
        except (FolderRefused, ValueError):
            got = None
        self._ids[path] = got
        return got

    def entry(self, path: str) -> EntryKey | None:
        """``entry_key`` of ``path`` (an entry below a root): its folder's ``identity`` and its name;
        None when that folder has none."""
        parent, _, name = path.rpartition("/")
        folder = self.identity(parent or "/")
        return None if folder is None else entry_key(folder, name)

    def lstat(self, path: str) -> os.stat_result | None:
        """lstat of ``path``, taken relative to its verified folder (a symlink at ``path`` itself is
        returned as such, not followed); None if nothing is there. FolderRefused as ``folder``."""
        d, name = self.place(path)
        if d is None:
            return None
        try:
            return os.stat(name, dir_fd=d, follow_symlinks=False)
        except OSError as e:
            if e.errno in _NOTHING_THERE:
                return None
            raise

    def place_any(self, path: str) -> tuple[int | None, str] | None:
        """``place`` for any path: (its folder's verified descriptor, its name) below a root, None if
        that folder is missing; FolderRefused as ``folder``. A path under no root (or a root
        itself) is ``(None, path)``: read by its string, as it always was. There is no root to
        verify its folders against, and nothing there is inside the roots (callers refuse to
        act on such a path). The one home of that rule: ``lstat_any`` and ``ensure_hashes`` ask here."""
        try:
            d, name = self.place(path)
        except ValueError:
            return None, path
        return None if d is None else (d, name)

    def lstat_any(self, path: str, outside: set[str] | None = None) -> os.stat_result | None:
        """``lstat`` for a path below a root; a path under no root is lstat-ed by its string
        (``place_any``) and added to ``outside`` when given (the snapshot keeps those out of the
        catalog). None if nothing is there; FolderRefused goes to the caller."""
        where = self.place_any(path)
        if where is None:
            return None
        d, name = where
        if d is None and outside is not None:
            outside.add(path)
        try:
            return os.stat(name, dir_fd=d, follow_symlinks=False)
        except OSError as e:
            # under no root: any failure means "nothing to read there", as before
            if d is None or e.errno in _NOTHING_THERE:
                return None
            raise

    def readlink(self, path: str) -> str:
        """Where the symlink ``path`` points ("?" if it no longer is one), read through its folder."""
        d, name = self.place(path)
        try:
            return os.fsdecode(os.readlink(name, dir_fd=d)) if d is not None else "?"
        except OSError:
            return "?"

    def place(self, path: str) -> tuple[int | None, str]:
        """(verified descriptor of ``path``'s folder or None if missing, its last component)."""
        parent, _, name = path.rpartition("/")
        last = self._last
        if last is not None and parent == last[0] and name not in ("", ".", "..") and "\0" not in name:
            return last[1], name  # the folder just placed in: canonical, below a root, and open
        path = normalize(path)
        root = self.root_of(path)
        if root is None or path == root:
            raise ValueError(f"{path}: not an entry below any of {', '.join(self._roots)}")
        parent, _, name = path.rpartition("/")
        fd = self._folder(parent or "/", root)
        self._last = None if fd is None else (parent, fd)
        return fd, name

    def _folder(self, d: str, root: str) -> int | None:
        """The verified descriptor of folder ``d`` below (or at) ``root``: climbs to the nearest
        folder with an answer (open, or a verdict kept), then opens the rest one level at a
        time below it. A loop, not a recursion: a folder chain thousands deep (a writer of the
        tree can make one) would exceed Python's recursion limit, and every caller hashing a
        file there would fail with RecursionError."""
        below: list[str] = []  # the folders from d up to the first with an answer, deepest first
        cur = d
        while True:
            fd = self._fds.get(cur)
            if fd is not None:
                self._fds.move_to_end(cur)
                break
            if cur in self._verdicts:
                v = self._verdicts[cur]
                if v is not None:
                    raise v
                break  # nothing there: nor below it (fd None)
            if cur == root:
                try:
                    fd = open_root(cur)  # a pool root: walked from / and pinned
                except OSError as e:
                    if e.errno not in _NOTHING_THERE:
                        raise
                fd = self._keep(cur, fd)
                break
            if cur == "/":
                raise ValueError(f"{d}: not below {root}")  # callers place by root_of: never met
            below.append(cur)
            cur = cur.rpartition("/")[0] or "/"
        for sub in reversed(below):
            fd = None if fd is None else self._open_below(fd, sub.rpartition("/")[2], sub)
            fd = self._keep(sub, fd)
        return fd

    def _keep(self, d: str, fd: int | None) -> int | None:
        """Remember ``fd`` as folder ``d``'s (None: the verdict that nothing is there), closing the
        least recently used folders beyond ``max_open``."""
        if fd is None:
            self._verdicts[d] = None
            return None
        self._fds[d] = fd
        while len(self._fds) > self._max_open:
            old = self._fds.popitem(last=False)[1]
            if self._last is not None and self._last[1] == old:
                self._last = None
            os.close(old)
        return fd

    def _open_below(self, pfd: int, name: str, d: str) -> int | None:
        try:
            return open_below(pfd, name)
        except OSError as e:
            if e.errno in _NOTHING_THERE:
                return None
            raise
        except NotAFolder as e:
            if e.kind == "other":
                return None  # a file where a folder would be: nothing is below it
            self._verdicts[d] = FolderRefused(d, e.kind, e.target)
            raise self._verdicts[d] from None
