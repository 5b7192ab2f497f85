"""Throwaway ZFS pools for tests and the sandbox demo.

qbhook's whole job is the boundary between filesystems (a hardlink across pools or datasets
fails with EXDEV), so the test bed must have real filesystems, not folders on one disk.
zfs-fuse gives real ZFS (datasets, guids) from file-backed pools without kernel modules;
when it cannot run, tmpfs mounts still give real filesystem boundaries (but no guids).

The zfs-fuse daemon is shared by everything on the machine: pool names are random and
teardown only touches pools listed in the `Pools` it was given.

zfs-fuse 0.7.0 deadlocks for good when two mounts happen at the same time: each mount writes
a record to an internal pipe in two write() calls, concurrent mounts interleave them, and the
listener thread then blocks reading a garbage length while holding the lock every FUSE request
needs (seen here with three test sessions at once: every stat on every pool hung). So every
zfs/zpool command below runs under one machine-wide file lock, and with a timeout.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCK_PATH = Path("/run/lock/qbhook-zfs-fuse.lock")
ZFS_TIMEOUT = 120.0


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if args[0] not in ("zfs", "zpool"):
        return subprocess.run(args, capture_output=True, text=True, check=check)
    lock_path = LOCK_PATH if LOCK_PATH.parent.is_dir() else Path("/tmp") / LOCK_PATH.name
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            return subprocess.run(args, capture_output=True, text=True, check=check, timeout=ZFS_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"{' '.join(args)} hung for {ZFS_TIMEOUT:.0f}s: the zfs-fuse daemon is probably "
                "deadlocked (zfs-fuse 0.7 concurrent-mount bug); kill and restart zfs-fuse"
            ) from None


def _zpool_answers() -> bool:
    try:
        return _run("zpool", "list", check=False).returncode == 0
    except FileNotFoundError:
        return False


def ensure_zfs_fuse(timeout: float = 15.0) -> bool:
    """Make sure the zfs-fuse daemon answers; start it if needed. False if it cannot run."""
    if _zpool_answers():
        return True
    if not shutil.which("zfs-fuse") or not shutil.which("zpool") or not os.path.exists("/dev/fuse"):
        return False
    # zfs-fuse daemonizes itself; a second copy racing with another process just exits,
    # so its return code says nothing: only `zpool list` answering does.
    subprocess.run(["zfs-fuse"], capture_output=True, check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _zpool_answers():
            return True
        time.sleep(0.1)
    return False


@dataclass
class Pool:
    mountpoint: Path
    zpool: str | None  # ZFS pool name; None for tmpfs
    kind: str  # "zfs" | "tmpfs"


@dataclass
class Pools:
    base_dir: Path
    pools: dict[str, Pool] = field(default_factory=dict)  # logical name ("stash") -> Pool
    # nested filesystems: ZFS dataset name ("qbt1a2b3cstash/data/media/library"), or on tmpfs
    # "<logical>/<relpath>" -> mountpoint
    nested: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Path:
        return self.pools[name].mountpoint

    @property
    def kind(self) -> str:
        return next(iter(self.pools.values())).kind

    @property
    def img_dir(self) -> Path:
        return self.base_dir / "img"


def _unique_pool_name(logical: str) -> str:
    return f"qbt{secrets.token_hex(3)}{logical}"


def create_pools(
    base_dir: Path,
    names: tuple[str, ...] = ("stash", "pool"),
    size: str = "512M",
    nested: dict[str, str] | None = None,
    kind: str | None = None,
    compression: bool = False,
) -> Pools:
    """Create one filesystem per logical name, mounted at base_dir/<name>.

    nested={"stash": "data/media/library"} adds a separate filesystem at that path inside
    "stash"; the folders above it stay plain folders of the parent, as on a typical
    /stash/data/media/library layout. kind=None picks zfs when zfs-fuse runs, else tmpfs.
    compression (zfs): on, so blocks of zeros are stored as holes; a ZFS file of one block
    otherwise allocates the whole block, however sparse it was written (the benches' beds).
    """
    base_dir = Path(base_dir).resolve()
    if kind is None:
        kind = "zfs" if ensure_zfs_fuse() else "tmpfs"
    pools = Pools(base_dir=base_dir)
    try:
        for logical in names:
            mnt = base_dir / logical
            if kind == "zfs":
                pools.img_dir.mkdir(parents=True, exist_ok=True)
                img = pools.img_dir / f"{logical}.img"
                with open(img, "wb") as f:  # sparse: costs no disk until written
                    f.truncate(_parse_size(size))
                zpool = _unique_pool_name(logical)
                # zpool needs an absolute vdev path; -f because it is a file, not a disk
                _run("zpool", "create", "-f", "-m", str(mnt), zpool, str(img))
                pools.pools[logical] = Pool(mnt, zpool, "zfs")
                if compression:
                    _run("zfs", "set", "compression=on", zpool)
            elif kind == "tmpfs":
                mnt.mkdir(parents=True, exist_ok=True)
                _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt))
                pools.pools[logical] = Pool(mnt, None, "tmpfs")
            else:
                raise ValueError(f"unknown kind {kind!r}")
        for logical, rel in (nested or {}).items():
            _create_nested(pools, logical, rel.strip("/"), size)
    except BaseException:
        destroy_pools(pools)
        raise
    return pools


def _create_nested(pools: Pools, logical: str, rel: str, size: str) -> None:
    pool = pools.pools[logical]
    mnt = pool.mountpoint / rel
    if pool.kind == "tmpfs":
        mnt.mkdir(parents=True, exist_ok=True)
        _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt))
        pools.nested[f"{logical}/{rel}"] = mnt
        return
    # Intermediate datasets exist only to give the leaf its name and inherited mountpoint;
    # canmount=off keeps them unmounted so their folders belong to the parent filesystem.
    parts = rel.split("/")
    for i in range(1, len(parts)):
        _run("zfs", "create", "-o", "canmount=off", f"{pool.zpool}/{'/'.join(parts[:i])}")
    dataset = f"{pool.zpool}/{rel}"
    _run("zfs", "create", dataset)
    pools.nested[dataset] = mnt


def _parse_size(size: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    size = size.strip().upper()
    if size[-1] in units:
        return int(float(size[:-1]) * units[size[-1]])
    return int(size)


def _retry(args: list[str], attempts: int = 10) -> subprocess.CompletedProcess:
    # Export/destroy/umount fail with "busy" while a process (qbittorrent, a test's open
    # file) is still letting go of the mount; a short retry avoids flaky teardowns.
    for i in range(attempts):
        res = _run(*args, check=False)
        if res.returncode == 0:
            return res
        time.sleep(min(0.05 * 2**i, 1.0))
    return res


def destroy_pools(pools: Pools) -> None:
    """Tear down everything in `pools`; try every step, then raise listing what failed."""
    errors = []
    for logical in reversed(list(pools.pools)):
        pool = pools.pools[logical]
        if pool.kind == "zfs":
            if pool.zpool in _imported_pools():
                res = _retry(["zpool", "destroy", "-f", pool.zpool])
                if res.returncode != 0:
                    errors.append(f"zpool destroy {pool.zpool}: {res.stderr.strip()}")
        else:
            nested = [m for m in pools.nested.values() if pool.mountpoint in m.parents]
            for mnt in sorted(nested, key=lambda p: len(p.parts), reverse=True) + [pool.mountpoint]:
                if os.path.ismount(mnt):
                    res = _retry(["umount", str(mnt)], attempts=5)
                    if res.returncode != 0 and _run("umount", "-l", str(mnt), check=False).returncode:
                        errors.append(f"umount {mnt}: {res.stderr.strip()}")
    if pools.img_dir.exists() and not errors:
        shutil.rmtree(pools.img_dir, ignore_errors=True)
    if errors:
        raise RuntimeError("destroy_pools: " + "; ".join(errors))


def _imported_pools() -> set[str]:
    res = _run("zpool", "list", "-H", "-o", "name", check=False)
    return set(res.stdout.split()) if res.returncode == 0 else set()


def dataset_guid(dataset_name: str) -> str:
    # -p: raw number; without it zfs prints a rounded "1.01E"
    return _run("zfs", "get", "-H", "-p", "-o", "value", "guid", dataset_name).stdout.strip()


def remount(pools: Pools, name: str, force_new_dev: bool = False) -> int:
    """Unmount and remount pool `name` (and its nested datasets); return the new st_dev.

    zfs: `zpool export` + `zpool import -d <img dir>`. Checked on zfs-fuse 0.7.0: st_dev does
    NOT change by itself, because FUSE mounts take the lowest free anonymous device number and
    the export just freed it. It changes whenever something else mounts in between, as happens
    across reboots and on busy hosts; force_new_dev=True holds a placeholder tmpfs mount during
    the import to make that happen deterministically. Dataset guids and inode numbers survive.

    tmpfs: `mount -o remount` (a real unmount would lose the data); st_dev stays the same and
    force_new_dev is not supported.
    """
    pool = pools.pools[name]
    if pool.kind == "tmpfs":
        if force_new_dev:
            raise ValueError("force_new_dev needs zfs: a tmpfs cannot be remounted with its data")
        _run("mount", "-o", "remount", str(pool.mountpoint))
        return os.stat(pool.mountpoint).st_dev
    res = _retry(["zpool", "export", pool.zpool])
    if res.returncode != 0:
        raise RuntimeError(f"zpool export {pool.zpool}: {res.stderr.strip()}")
    placeholder = pools.base_dir / f".devhold-{pool.zpool}"
    try:
        if force_new_dev:
            placeholder.mkdir(exist_ok=True)
            _run("mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(placeholder))
        _run("zpool", "import", "-d", str(pools.img_dir), pool.zpool)
    finally:
        if force_new_dev:
            _run("umount", str(placeholder), check=False)
            placeholder.rmdir()
    return os.stat(pool.mountpoint).st_dev
