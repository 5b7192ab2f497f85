"""Stable filesystem identity.

st_dev is whatever number the kernel handed out at mount time; it changes
across reboots and remounts (field lesson 6). A filesystem's identity is, in
order of preference:

- ``zfs:<guid>``   the dataset GUID (``zfs get -H -p -o value guid``)
- ``uuid:<uuid>``  the block device's filesystem UUID (/dev/disk/by-uuid)
- ``marker:<id>``  a random id qbhook wrote into ``.qbhook-fsid`` at the mount root
- ``mount:<...>``  last resort (read-only fs without UUID): fstype + source + mountpoint

st_dev is kept only as the *current* mapping to that identity.

The marker is written only where qbhook owns the tree: the mount root must be
exactly a configured pool root (same (st_dev, st_ino) as that root, opened by
``dirfd.open_root``: walked from ``/`` without following a symlink, and pinned; the mount
root walked the same way), and the marker and its temporary file are created
relative to that directory descriptor, never through a symlink. A path that
leads onto another filesystem (an event through a symlinked folder) therefore
never leaves a file there. An existing marker is read anywhere, but only a
regular file, never followed, owned by root (or this process's user) and writable
by nobody else: a copy another user made at the root of a filesystem it owns is
not a marker, and that filesystem is known by its mount (``mount:``), with one
warning line naming the file, its owner and mode.

A marker of another owner is still the filesystem's identity when the catalog
already records that id at one of this filesystem's own mount points
(``recorded``): NFS with root_squash shows root's marker as nobody's, and a pool
first scanned as the service user is then run as root. Distrusting such a marker
re-keys every file of the pool (every hash lost: days of rehashing). A copy
planted on another filesystem is mounted elsewhere, so the recorded mount point
tells the pool's own marker from the copy, and the copy is known by its mount.
A marker this process has just written is its own, whatever owner the server
gave it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from qbhook.dirfd import FolderRefused, NotRegular, open_file_at, open_root, open_walked
from qbhook.errors import FilesystemIdError
from qbhook.paths import is_within

MARKER_NAME = ".qbhook-fsid"
ZFS_TYPES = ("zfs", "fuse.zfs")
ZFS_PREFIX = "zfs:"  # the fsid of a ZFS dataset: this and its GUID
USER_PREFIX = "mount:user:"  # the fsid of a user's FUSE mount (Mount.trusted false): this and where
MARKER_PREFIX = "marker:"

log = logging.getLogger(__name__)

# fsid -> the mount point the catalog recorded for it (None: not recorded). The catalog's word
# for which untrusted markers are its own (``identify``).
Recorded = Callable[[str], str | None]


@dataclass(frozen=True)
class Mount:
    dev: int
    root: str  # path inside the filesystem that is mounted (bind mounts: not "/")
    mountpoint: str
    fstype: str
    source: str
    options: str = ""  # the filesystem's own (super) options: a FUSE mount's user_id=N is its mounter

    @property
    def trusted(self) -> bool:
        """Not a FUSE filesystem a user mounted: such a one names its own type and source
        (``-o subtype=zfs,fsname=stash/data``) and its own inode numbers, so neither may say
        which dataset it is. Every other mount needs root (or the admin's fstab entry)."""
        if not self.fstype.startswith("fuse"):
            return True
        return "user_id=0" in self.options.split(",")


@dataclass(frozen=True)
class FsIdentity:
    fsid: str
    kind: str
    fstype: str
    source: str
    mountpoint: str
    dev: int


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        parts = line.split(" ")
        try:
            sep = parts.index("-")
        except ValueError:
            continue
        major, minor = (int(x) for x in parts[2].split(":"))
        mounts.append(
            Mount(
                dev=os.makedev(major, minor),
                root=_unescape(parts[3]),
                mountpoint=_unescape(parts[4]),
                fstype=parts[sep + 1],
                source=_unescape(parts[sep + 2]),
                options=parts[sep + 3] if len(parts) > sep + 3 else "",
            )
        )
    return mounts


def read_mounts() -> list[Mount]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def mounts_below(roots: Iterable[str | os.PathLike], mounts: list[Mount] | None = None) -> list[tuple[str, str]]:
    """(root, mount point) of each mount point of the mount table strictly below one of ``roots``,
    in the table's order, each once (a folder mounted over twice is one place). What ``config check``
    warns of below a seeding root: ``move.fsops`` never acts through a mount point below a root."""
    mounts = read_mounts() if mounts is None else mounts
    norm = [os.path.normpath(os.fspath(r)) for r in roots]
    out: list[tuple[str, str]] = []
    for m in mounts:
        at = os.path.normpath(m.mountpoint)
        root = next((r for r in norm if at != r and is_within(at, r)), None)
        if root is not None and (root, at) not in out:
            out.append((root, at))
    return out


def _root_devs(roots: Iterable[str | os.PathLike]) -> list[tuple[str, int]]:
    """(absolute path, st_dev) of each configured root that is a real folder (never followed)."""
    out = []
    for root in roots:
        path = os.path.abspath(os.fspath(root))
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            out.append((path, st.st_dev))
    return out


def mount_for_dev(dev: int, mounts: list[Mount] | None = None, roots: Iterable[str | os.PathLike] = ()) -> Mount:
    """The mount of the filesystem whose st_dev is ``dev``.

    Identified by the number alone, never by resolving a caller's path: a data path can hold a
    folder a writer swapped for a symlink, and following it would name another filesystem.
    Several mounts of one filesystem (bind mounts) share the number: the one holding a
    configured root (``roots``) wins, then the filesystem's own root (mountinfo root "/"), then
    the first listed, so the answer does not depend on which path asked. A FUSE filesystem
    whose st_dev differs from mountinfo's is found by a stat of the mount points themselves
    (kernel-listed paths), then by a configured root on that device.
    """
    mounts = read_mounts() if mounts is None else mounts
    rdevs = _root_devs(roots)
    same = [m for m in mounts if m.dev == dev]
    if not same:
        for m in mounts:
            try:
                if os.lstat(m.mountpoint).st_dev == dev:
                    same.append(m)
            except OSError:
                continue
    if not same:
        # Last resort: the mount holding a configured root on that device (trusted config, not data).
        for path, rdev in rdevs:
            if rdev == dev:
                same = [
                    max(
                        (m for m in mounts if is_within(path, m.mountpoint)),
                        key=lambda m: len(m.mountpoint.rstrip("/")),
                        default=None,
                    )
                ]
                same = [m for m in same if m is not None]
                break
    if not same:
        raise FilesystemIdError(f"cannot find the mount of device {os.major(dev)}:{os.minor(dev)}")
    holding_root = [m for m in same if any(rdev == dev and is_within(p, m.mountpoint) for p, rdev in rdevs)]
    if holding_root:
        return max(holding_root, key=lambda m: len(m.mountpoint.rstrip("/")))
    return next((m for m in same if m.root == "/"), same[0])


# Where zfs lives when PATH lacks it: cron's PATH is /usr/bin:/bin, and a sweep from cron that
# found no zfs fell back to another identity for every dataset, so every file of the pool was
# catalogued again under a new filesystem, its hash lost (field lesson 6 again).
_ZFS_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def zfs_guid(dataset: str) -> str:
    """The GUID of ZFS ``dataset``, or FilesystemIdError naming why it cannot be read.

    Never a fallback to another identity: a dataset keyed by its UUID or a marker one run and by
    its GUID the next is two filesystems to the catalog, which then re-keys every file on it."""
    zfs = shutil.which("zfs") or shutil.which("zfs", path=os.pathsep.join(_ZFS_DIRS))
    if zfs is None:
        raise FilesystemIdError(
            f"cannot identify ZFS dataset {dataset}: no zfs command in PATH nor in {', '.join(_ZFS_DIRS)}"
        )
    try:
        out = subprocess.run(
            [zfs, "get", "-H", "-p", "-o", "value", "guid", dataset],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FilesystemIdError(f"cannot identify ZFS dataset {dataset}: {zfs} get guid: {e}") from None
    # The answer is the last line: a zfs build may print warnings before it (and the reason last).
    said_out = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
    val = said_out[-1] if said_out else ""
    if out.returncode != 0 or not (val.isascii() and val.isdigit()):
        said_err = [ln.strip() for ln in out.stderr.splitlines() if ln.strip()]
        said = said_err[-1][:200] if said_err else f"exit {out.returncode}, answer {val[:40]!r}"
        raise FilesystemIdError(f"cannot identify ZFS dataset {dataset}: {said}")
    return val


def device_uuid(source: str) -> str | None:
    if not source.startswith("/dev/"):
        return None
    try:
        target = os.path.realpath(source)
        by_uuid = Path("/dev/disk/by-uuid")
        for link in by_uuid.iterdir():
            if os.path.realpath(link) == target:
                return link.name
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["blkid", "-s", "UUID", "-o", "value", source], capture_output=True, text=True, timeout=10, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None


_MARKER_VALUE = re.compile(r"[0-9A-Za-z-]{1,64}")


def _trusted_marker(st: os.stat_result) -> bool:
    """Written by root or by this process's user (qbhook writes its markers so: 0644, its own),
    and writable by nobody else. The marker file is world-readable: a user who owns the root of
    another filesystem without a UUID (a tmpfs or NFS share given to the torrent user, mounted
    inside a pool) could copy it there, and the two filesystems would then be one id (every
    scan refused, FilesystemIdError). Such a copy is the user's file: not a marker."""
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read_marker(dfd: int) -> tuple[bool, str | None, os.stat_result | None]:
    """(something is there, the id it holds if it is a regular file with a valid id, its stat).
    Whoever writes the mount's root folder can plant anything at the name: a device there is
    refused without being opened (``dirfd.open_file_at``: pinned, checked, then reopened, never
    followed). Whether the file's owner and mode make it trusted is the caller's question
    (``_trusted_marker``): a file of another owner may still be the catalog's own marker."""
    try:
        fd, st = open_file_at(MARKER_NAME, dfd, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return False, None, None
    except (NotRegular, OSError):
        return True, None, None  # a device, a FIFO, a symlink (ELOOP) or unreadable: not a marker, not ours to replace
    try:
        val = os.read(fd, 256).decode("ascii", "replace").strip()
    except OSError:
        return True, None, st
    finally:
        os.close(fd)
    return True, (val if _MARKER_VALUE.fullmatch(val) else None), st


def _is_configured_root(dfd: int, roots: Iterable[str | os.PathLike]) -> bool:
    """Is the directory open at ``dfd`` exactly one of ``roots`` (same device and inode)?"""
    st = os.fstat(dfd)
    for root in roots:
        try:
            rfd = open_root(root)  # walked from / and pinned: the one way a pool root is opened
        except (OSError, ValueError, FolderRefused):
            continue  # missing, through a symlink, or swapped: never a root to write into
        try:
            rst = os.fstat(rfd)
        finally:
            os.close(rfd)
        if (rst.st_dev, rst.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def _write_marker(dfd: int) -> str | None:
    """A new marker at the folder open at ``dfd``: its id, or None if another process's came first."""
    val = uuid.uuid4().hex
    tmp = f"{MARKER_NAME}.{val}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
    try:
        try:
            os.write(fd, (val + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        # link() instead of rename(): if another process won the race, keep its id.
        try:
            os.link(tmp, MARKER_NAME, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError:
            return None
        return val
    finally:
        os.unlink(tmp, dir_fd=dfd)


_warned: set[tuple[str, int, int]] = set()  # (marker path, uid, mode) already said in this process


def _warn_untrusted(mountpoint: str, st: os.stat_result) -> None:
    """One line for a marker that is not trusted nor the catalog's own (never silent: its
    filesystem is then known by its mount, a new identity for every file on it)."""
    path = os.path.join(mountpoint, MARKER_NAME)
    mode = stat.S_IMODE(st.st_mode)
    if (path, st.st_uid, mode) in _warned:
        return
    _warned.add((path, st.st_uid, mode))
    log.warning(
        "%s is owned by uid %d with mode %04o and the catalog has not recorded its id here: not "
        "trusted, the filesystem at %s is known by its mount (if this is the pool's own marker, "
        "make it root's or qbhook's user's and writable by no one else)",
        path,
        st.st_uid,
        mode,
        mountpoint,
    )


def _marker_id(
    mountpoint: str,
    create: bool,
    marker_roots: Iterable[str | os.PathLike] = (),
    vouched: Callable[[str], bool] = lambda _id: False,
) -> str | None:
    """The marker id at ``mountpoint``; written first when absent and ``mountpoint`` is a configured root.

    A marker of another owner (``_trusted_marker`` false) counts only if ``vouched`` (the catalog
    records its id on this filesystem); otherwise it is said once (``_warn_untrusted``) and None."""
    try:
        dfd = open_walked(mountpoint)  # any mount point, not only a pool root: walked, never pinned
    except (OSError, ValueError, FolderRefused):
        return None
    try:
        present, val, st = _read_marker(dfd)
        if not present and create and _is_configured_root(dfd, marker_roots):
            written = _write_marker(dfd)
            if written is not None:
                return written  # ours, whatever owner an NFS server (root_squash) shows for it
            present, val, st = _read_marker(dfd)
        if val is None or st is None:
            return None
        if _trusted_marker(st) or vouched(val):
            return val
        _warn_untrusted(mountpoint, st)
        return None
    except OSError:
        return None
    finally:
        os.close(dfd)


def is_zfs(fsid: str) -> bool:
    """Whether ``fsid`` is one ``identify`` made for a ZFS dataset (keyed by its GUID)."""
    return fsid.startswith(ZFS_PREFIX)


def is_user_mount(fsid: str) -> bool:
    """Whether ``fsid`` is a less-trusted user's FUSE mount (``Mount.trusted`` false)."""
    return fsid.startswith(USER_PREFIX)


def shared_id(
    was: int,
    ident: FsIdentity,
    mounts: list[Mount] | None = None,
    marker_roots: Iterable[str | os.PathLike] = (),
    recorded: Recorded | None = None,
) -> FsIdentity | None:
    """The identity of device ``was`` (the st_dev the catalog last had for ``ident.fsid``) if it is
    still mounted and still says ``ident.fsid``: a second filesystem with the same id (btrfs
    subvolumes, an LVM snapshot, a copied loop image: one UUID). None for a remount: the old
    number gone, or another filesystem's now (numbers are handed out again after a reboot).

    Never for a ZFS dataset: its GUID is its own, so the old number still listed is a dead mount
    (a FUSE one left in mountinfo), not a second dataset."""
    if was == ident.dev or is_zfs(ident.fsid):
        return None
    mounts = read_mounts() if mounts is None else mounts
    try:
        # Not mountinfo's numbers alone: a btrfs subvolume's st_dev is not its line's (found by
        # a stat of the mount points).
        mount_for_dev(was, mounts, marker_roots)
    except FilesystemIdError:
        return None  # not mounted: a remount
    try:
        other = identify(dev=was, create_marker=False, mounts=mounts, marker_roots=marker_roots, recorded=recorded)
    except FilesystemIdError:
        return None  # not readable as that id now: the id moved with its filesystem
    return other if other.fsid == ident.fsid else None


def _vouch(recorded: Recorded | None, m: Mount, mounts: list[Mount]) -> Callable[[str], bool]:
    """Does the catalog record marker id ``_id`` at one of the mount points of ``m``'s filesystem?
    Any of its mounts, not only ``m``: which bind mount names a filesystem depends on the roots
    the asker was given (``mount_for_dev``). A copy on another filesystem is mounted elsewhere."""
    if recorded is None:
        return lambda _id: False
    here = {os.path.normpath(x.mountpoint) for x in mounts if x.dev == m.dev} | {os.path.normpath(m.mountpoint)}

    def vouched(_id: str) -> bool:
        where = recorded(MARKER_PREFIX + _id)
        return where is not None and os.path.normpath(where) in here

    return vouched


def identify(
    path: str | os.PathLike | None = None,
    *,
    dev: int | None = None,
    create_marker: bool = True,
    mounts: list[Mount] | None = None,
    marker_roots: Iterable[str | os.PathLike] = (),
    recorded: Recorded | None = None,
) -> FsIdentity:
    """The identity of the filesystem with st_dev ``dev`` (or, without it, of ``path``'s stat).

    ``marker_roots``: the configured pool roots, the only directories a marker may be written
    in, and the tie-break between bind mounts of one filesystem (mount_for_dev).
    ``recorded``: the catalog's mount point for an fsid (``Recorded``); a marker of another
    owner is this filesystem's id only if the catalog records that id at one of its mount points.
    """
    if dev is None:
        if path is None:
            raise TypeError("identify needs a path or a dev")
        dev = os.stat(path).st_dev
    marker_roots = tuple(marker_roots)
    mounts = read_mounts() if mounts is None else mounts
    m = mount_for_dev(dev, mounts, marker_roots)
    if not m.trusted:
        # A user's FUSE mount: its type, source and marker are the user's words. Named by where
        # it is mounted, which the kernel says, and never the same as any dataset or device.
        where = f"{m.fstype}:{m.source}:{m.mountpoint}"
        return FsIdentity(f"{USER_PREFIX}{where}", "mount", m.fstype, m.source, m.mountpoint, dev)
    if m.fstype in ZFS_TYPES:
        guid = zfs_guid(m.source)
        return FsIdentity(f"{ZFS_PREFIX}{guid}", "zfs", m.fstype, m.source, m.mountpoint, dev)
    u = device_uuid(m.source)
    if u:
        return FsIdentity(f"uuid:{u}", "uuid", m.fstype, m.source, m.mountpoint, dev)
    top = m if m.root == "/" else next((x for x in mounts if x.dev == m.dev and x.root == "/"), None)
    if top is not None:
        # A bind mount of a subfolder shares the marker of the filesystem's real root.
        mk = _marker_id(top.mountpoint, create_marker, marker_roots, _vouch(recorded, m, mounts))
        if mk:
            return FsIdentity(f"{MARKER_PREFIX}{mk}", "marker", m.fstype, m.source, m.mountpoint, dev)
    return FsIdentity(f"mount:{m.fstype}:{m.source}:{m.mountpoint}", "mount", m.fstype, m.source, m.mountpoint, dev)
