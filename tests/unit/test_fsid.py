import os
import subprocess

import pytest

from qbhook.catalog.fsid import MARKER_NAME, identify, parse_mountinfo

SAMPLE = (
    "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "40 22 0:45 / /stash rw shared:20 - fuse.zfs stash rw,user_id=0\n"
    "41 40 0:46 / /stash/data/media/library rw shared:21 - fuse.zfs stash/library rw\n"
    "42 22 0:47 / /mnt/with\\040space rw - tmpfs tmpfs rw\n"
    "43 22 0:45 /data/media /data/media rw - fuse.zfs stash rw\n"
)


def test_parse_mountinfo_unescapes_and_reads_fields():
    ms = parse_mountinfo(SAMPLE)
    assert [m.mountpoint for m in ms][3] == "/mnt/with space"
    assert ms[1].fstype == "fuse.zfs" and ms[1].source == "stash" and ms[1].dev == os.makedev(0, 45)
    assert ms[4].root == "/data/media"


def test_marker_fallback_is_stable(tmp_path):
    # tmp_path sits on the root fs here; whatever kind it gets, asking twice gives the same id.
    a = identify(tmp_path)
    b = identify(tmp_path / ".")
    assert a.fsid == b.fsid and a.dev == os.stat(tmp_path).st_dev


# -- where a .qbhook-fsid marker may be written --------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name) -> a fresh tmpfs (no UUID, not ZFS: identified by marker) at tmp_path/name."""
    mounts = []

    def mount(name: str):
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(d)], capture_output=True, text=True, check=False
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount tmpfs (needs root): {r.stderr.strip()}")
        mounts.append(d)
        return d

    yield mount
    for d in reversed(mounts):
        subprocess.run(["umount", "-l", str(d)], capture_output=True, check=False)


def test_marker_is_written_at_a_configured_pool_root_and_read_back(tmpfs):
    pool = tmpfs("pool")
    (pool / "seeding").mkdir()
    a = identify(pool / "seeding", marker_roots=[pool])
    assert a.kind == "marker" and (pool / MARKER_NAME).read_text().strip() == a.fsid.removeprefix("marker:")
    assert identify(pool, marker_roots=[]).fsid == a.fsid  # read anywhere once it exists
    assert sorted(p.name for p in pool.iterdir()) == sorted([MARKER_NAME, "seeding"])  # no temp file left


def test_marker_is_never_written_on_a_filesystem_that_is_not_a_configured_root(tmpfs):
    # Finding 7: an event path through a symlinked folder identified (and marked) an unrelated filesystem.
    pool, other = tmpfs("pool"), tmpfs("other")
    (pool / "seeding").mkdir()
    os.symlink(other, pool / "seeding/via")
    ident = identify(pool / "seeding/via", marker_roots=[pool])
    assert ident.kind == "mount" and ident.mountpoint == str(other)
    assert list(other.iterdir()) == []
    # Inside the root but not the root: refused too (the mount root is what gets compared).
    sub = tmpfs("pool2")
    (sub / "data").mkdir()
    assert identify(sub / "data", marker_roots=[sub / "data"]).kind == "mount"
    assert list(sub.iterdir()) == [sub / "data"]


def test_a_configured_root_given_through_a_symlink_is_not_followed(tmpfs, tmp_path):
    pool = tmpfs("pool")
    os.symlink(pool, tmp_path / "alias")
    assert identify(pool, marker_roots=[tmp_path / "alias"]).kind == "mount"
    assert list(pool.iterdir()) == []


def test_a_marker_that_is_a_symlink_is_neither_followed_nor_replaced(tmpfs, tmp_path):
    pool = tmpfs("pool")
    victim = tmp_path / "victim"
    victim.write_text("0123456789abcdef0123456789abcdef\n")
    os.symlink(victim, pool / MARKER_NAME)
    ident = identify(pool, marker_roots=[pool])
    assert ident.kind == "mount"
    assert victim.read_text() == "0123456789abcdef0123456789abcdef\n" and (pool / MARKER_NAME).is_symlink()


def test_catalog_marks_only_its_pool_roots(tmpfs, tmp_path):
    from qbhook.catalog.store import Catalog

    pool, other = tmpfs("pool"), tmpfs("other")
    (other / "f").write_bytes(b"x")
    cat = Catalog.open(tmp_path / "cat.sqlite", marker_roots=[pool])
    try:
        cat.fs_for_path(other / "f")
        assert not (other / MARKER_NAME).exists()
        cat.fs_for_path(pool)
        assert (pool / MARKER_NAME).is_file()
    finally:
        cat.close()
