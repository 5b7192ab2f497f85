"""Stable filesystem identity.

st_dev is whatever number the kernel handed out at mount time; it changes
across reboots and remounts (field lesson 6). A filesystem's identity is, in
order of preference:

- ``zfs:<guid>``   the dataset GUID (``zfs get -H -p -o value guid``)
- ``uuid:<uuid>``  the block device's filesystem UUID (/dev/disk/by-uuid)
- ``marker:<id>``  a random id qbhook wrote into ``.qbhook-fsid`` at the mount root
- ``mount:<...>``  last resort (read-only fs without UUID): fstype + source + mountpoint

st_dev is kept only as the *current* mapping to that identity.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from qbhook.errors import FilesystemIdError

MARKER_NAME = ".qbhook-fsid"
ZFS_TYPES = ("zfs", "fuse.zfs")


@dataclass(frozen=True)
class Mount:
    dev: int
    root: str          # path inside the filesystem that is mounted (bind mounts: not "/")
    mountpoint: str
    fstype: str
    source: str


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
        mounts.append(Mount(dev=os.makedev(major, minor), root=_unescape(parts[3]), mountpoint=_unescape(parts[4]),
                            fstype=parts[sep + 1], source=_unescape(parts[sep + 2])))
    return mounts


def read_mounts() -> list[Mount]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def mount_for(path: str | os.PathLike, mounts: list[Mount] | None = None) -> Mount:
    """The mount that holds ``path``: same st_dev, longest mountpoint prefix."""
    real = os.path.realpath(path)
    dev = os.lstat(real).st_dev
    mounts = read_mounts() if mounts is None else mounts
    best = None
    for m in mounts:
        if m.dev != dev:
            continue
        mp = m.mountpoint.rstrip("/") or "/"
        if real == mp or real.startswith(mp + "/") or mp == "/":
            if best is None or len(mp) > len(best.mountpoint.rstrip("/") or "/"):
                best = m
    if best is None:
        # Some FUSE filesystems report a st_dev that differs from mountinfo's; fall back to prefix only.
        for m in mounts:
            mp = m.mountpoint.rstrip("/") or "/"
            if real == mp or real.startswith(mp + "/") or mp == "/":
                if best is None or len(mp) > len(best.mountpoint.rstrip("/") or "/"):
                    best = m
    if best is None:
        raise FilesystemIdError(f"cannot find the mount holding {path}")
    return best


def zfs_guid(dataset: str) -> str | None:
    try:
        out = subprocess.run(["zfs", "get", "-H", "-p", "-o", "value", "guid", dataset],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    val = out.stdout.strip()
    return val if out.returncode == 0 and val.isdigit() else None


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
        out = subprocess.run(["blkid", "-s", "UUID", "-o", "value", source], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None


def _marker_id(mountpoint: str, create: bool) -> str | None:
    marker = os.path.join(mountpoint, MARKER_NAME)
    try:
        with open(marker, encoding="ascii") as f:
            val = f.read().strip()
            if val:
                return val
    except FileNotFoundError:
        pass
    except OSError:
        return None
    if not create:
        return None
    val = uuid.uuid4().hex
    tmp = marker + ".tmp"
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(val + "\n")
            f.flush()
            os.fsync(f.fileno())
        # link() instead of rename(): if another process won the race, keep its id.
        try:
            os.link(tmp, marker)
        except FileExistsError:
            pass
        os.unlink(tmp)
        return _marker_id(mountpoint, create=False)
    except OSError:
        return None


def identify(path: str | os.PathLike, *, create_marker: bool = True, mounts: list[Mount] | None = None) -> FsIdentity:
    m = mount_for(path, mounts)
    dev = os.lstat(os.path.realpath(path)).st_dev
    if m.fstype in ZFS_TYPES:
        guid = zfs_guid(m.source)
        if guid:
            return FsIdentity(f"zfs:{guid}", "zfs", m.fstype, m.source, m.mountpoint, dev)
    u = device_uuid(m.source)
    if u:
        return FsIdentity(f"uuid:{u}", "uuid", m.fstype, m.source, m.mountpoint, dev)
    top = m if m.root == "/" else next(
        (x for x in (mounts or read_mounts()) if x.dev == m.dev and x.root == "/"), None)
    if top is not None:
        # A bind mount of a subfolder shares the marker of the filesystem's real root.
        mk = _marker_id(top.mountpoint, create_marker)
        if mk:
            return FsIdentity(f"marker:{mk}", "marker", m.fstype, m.source, m.mountpoint, dev)
    return FsIdentity(f"mount:{m.fstype}:{m.source}:{m.mountpoint}", "mount", m.fstype, m.source, m.mountpoint, dev)
