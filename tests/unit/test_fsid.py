import os
import stat
import subprocess
from contextlib import contextmanager

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


def test_a_symlinked_folder_in_the_asked_path_does_not_re_map_the_device(tmpfs, tmp_path):
    # Review finding: on a dev-cache miss (any mount change clears it) fs_for_path identified the
    # filesystem by resolving the caller's path; a folder swapped for a symlink to another
    # filesystem then mapped the pool's st_dev to that one for the whole process.
    from qbhook.catalog.store import Catalog

    pool, other = tmpfs("pool"), tmpfs("other")
    (pool / "seeding/d").mkdir(parents=True)
    (pool / "seeding/d/f").write_bytes(b"x")
    (other / "f").write_bytes(b"y")
    path = pool / "seeding/d/f"
    st = os.lstat(path)
    cat = Catalog.open(tmp_path / "cat.sqlite", marker_roots=[pool])
    try:
        fs = cat.fs_for_path(path, st.st_dev)
        (pool / "seeding/d/f").unlink()
        (pool / "seeding/d").rmdir()
        os.symlink(other, pool / "seeding/d")
        tmpfs("third")  # a mount change: the dev cache is dropped, the next ask identifies again
        assert cat.fs_for_path(path, st.st_dev) == fs
        assert cat.fsid(fs) == "marker:" + (pool / MARKER_NAME).read_text().strip()
        devs = {f.fsid: f.dev for f in cat.filesystems()}
        assert devs[cat.fsid(fs)] == st.st_dev and list(devs.values()).count(st.st_dev) == 1
        assert not (other / MARKER_NAME).exists()
    finally:
        cat.close()


def test_bind_mounts_of_one_filesystem_resolve_to_the_one_holding_the_configured_root(tmpfs, tmp_path):
    pool = tmpfs("pool")
    (pool / "seeding").mkdir()
    bind = tmp_path / "bind"
    bind.mkdir()
    if subprocess.run(["mount", "--bind", str(pool / "seeding"), str(bind)], check=False).returncode != 0:
        pytest.skip("cannot bind mount")
    try:
        dev = os.lstat(pool).st_dev
        assert identify(dev=dev, marker_roots=[pool]).mountpoint == str(pool)
        # Asked through the bind mount's path: still the same filesystem, the same answer.
        assert identify(bind, marker_roots=[pool]) == identify(pool, marker_roots=[pool])
    finally:
        subprocess.run(["umount", "-l", str(bind)], check=False)


# -- a helper's review: a ZFS dataset is keyed by its GUID or not at all; a user's FUSE mount is nobody


def _zfs_mount(options: str = "rw,user_id=0,group_id=0"):
    from qbhook.catalog.fsid import Mount

    dev = os.makedev(0, 4242)
    return Mount(dev=dev, root="/", mountpoint="/stash", fstype="fuse.zfs", source="stash", options=options)


def _fake_zfs(tmp_path, monkeypatch, script: str | None) -> None:
    """The only `zfs` fsid can find is ``script`` (None: there is none): PATH holds no zfs, and
    fsid's fallback folders are one of this test's."""
    from qbhook.catalog import fsid

    sbin = tmp_path / "sbin"
    sbin.mkdir()
    if script is not None:
        (sbin / "zfs").write_text(script)
        (sbin / "zfs").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(fsid, "_ZFS_DIRS", (str(sbin),))


def test_a_zfs_guid_is_the_last_line_zfs_prints(tmp_path, monkeypatch):
    _fake_zfs(tmp_path, monkeypatch, "#!/bin/sh\nprintf 'WARNING x\\n123\\n'\n")
    assert identify(dev=_zfs_mount().dev, mounts=[_zfs_mount()]).fsid == "zfs:123"


def test_a_zfs_dataset_is_found_by_its_guid_when_path_lacks_sbin(tmp_path, monkeypatch):
    """cron's PATH is /usr/bin:/bin: `zfs` was not found, the dataset was keyed by a marker instead
    of its GUID, and every file on it was catalogued again under a new filesystem."""
    _fake_zfs(tmp_path, monkeypatch, "#!/bin/sh\necho 1234567890\n")
    ident = identify(dev=_zfs_mount().dev, mounts=[_zfs_mount()])
    assert ident.fsid == "zfs:1234567890" and ident.kind == "zfs"


@pytest.mark.parametrize(
    "script",
    [
        None,
        "#!/bin/sh\necho 'cannot open stash: dataset does not exist' >&2\nexit 1\n",
        "#!/bin/sh\necho 'WARNING x' >&2\necho 'cannot open stash: dataset does not exist' >&2\nexit 1\n",
    ],
)
def test_a_zfs_dataset_whose_guid_cannot_be_read_is_an_error_not_another_identity(tmp_path, monkeypatch, script):
    from qbhook.catalog import fsid
    from qbhook.errors import FilesystemIdError

    _fake_zfs(tmp_path, monkeypatch, script)
    monkeypatch.setattr(fsid, "device_uuid", lambda source: pytest.fail("fell back to a UUID"))
    monkeypatch.setattr(fsid, "_marker_id", lambda *a, **k: pytest.fail("fell back to a marker"))
    with pytest.raises(FilesystemIdError, match="cannot identify ZFS dataset stash: ") as e:
        identify(dev=_zfs_mount().dev, mounts=[_zfs_mount()])
    assert ("dataset does not exist" if script else "no zfs command") in str(e.value)


def test_a_fuse_mount_a_user_made_never_names_a_dataset_or_a_device(monkeypatch):
    """A FUSE filesystem names its own type and source (`-o subtype=zfs,fsname=stash`) and its own
    inode numbers: taken at its word it was the dataset `stash`, its files the catalog's inodes."""
    from qbhook.catalog import fsid

    monkeypatch.setattr(fsid, "zfs_guid", lambda ds: pytest.fail("asked zfs about a user's mount"))
    monkeypatch.setattr(fsid, "_marker_id", lambda *a, **k: pytest.fail("read a user's marker"))
    forged = _zfs_mount(options="rw,user_id=1000,group_id=1000")
    ident = identify(dev=forged.dev, mounts=[forged])
    assert ident.fsid == "mount:user:fuse.zfs:stash:/stash" and ident.kind == "mount"
    assert parse_mountinfo("46 27 0:41 / /stash rw - fuse.zfs stash rw,user_id=0,group_id=0\n")[0].trusted


def test_a_device_at_the_marker_name_is_refused_without_being_opened(tmpfs, monkeypatch):
    # R8: whoever writes the mount's root can mknod there (root in a container may); opening a
    # device has effects of its own (a watchdog arms, a tape rewinds). c 1 3 (null) stands in.
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    pool = tmpfs("pool")
    os.mknod(pool / MARKER_NAME, 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    opened, real = [], os.open

    def spy(path, flags, *a, dir_fd=None, **kw):
        fd = real(path, flags, *a, dir_fd=dir_fd, **kw)
        if not flags & os.O_PATH and stat.S_ISCHR(os.fstat(fd).st_mode):
            opened.append(path)
        return fd

    monkeypatch.setattr(os, "open", spy)
    assert identify(pool, marker_roots=[pool]).kind == "mount"
    assert opened == [] and stat.S_ISCHR(os.lstat(pool / MARKER_NAME).st_mode)  # left alone


# -- a marker another user copied (review R52) ----------------------------------------------------


@contextmanager
def _marked_pool(tmpfs, tmp_path):
    """A tmpfs pool with a file ``seeding/a``, its catalog open with the pool as marker root, so the
    first ask writes the pool's marker: yields (pool, catalog, that file's filesystem row)."""
    from qbhook.catalog.store import Catalog

    pool = tmpfs("pool")
    (pool / "seeding").mkdir()
    (pool / "seeding/a").write_bytes(b"a")
    cat = Catalog.open(tmp_path / "cat.sqlite", marker_roots=[pool])
    try:
        yield pool, cat, cat.fs_for_path(pool / "seeding/a")
    finally:
        cat.close()


def test_a_marker_another_user_copied_to_the_root_of_its_own_filesystem_is_not_read(tmpfs, tmp_path):
    """The pool's marker is world-readable: the torrent user, owning a nested tmpfs (or NFS) mount
    in the pool, copied it to that mount's root, and every later scan raised "two filesystems
    with one id" (sweeps stopped). A copy the user owns or may write is not a marker: that
    filesystem is known by its mount, and both are catalogued apart."""
    with _marked_pool(tmpfs, tmp_path) as (pool, cat, fs):
        assert cat.fsid(fs).startswith("marker:")
        mine = os.stat(pool / MARKER_NAME)
        assert mine.st_uid == os.geteuid() and stat.S_IMODE(mine.st_mode) & 0o022 == 0  # what qbhook trusts
        inc = tmpfs("pool/seeding/incoming")
        (inc / "b").write_bytes(b"b")
        copy = inc / MARKER_NAME
        copy.write_bytes((pool / MARKER_NAME).read_bytes())
        os.chown(copy, 1000, 1000)
        os.chmod(copy, 0o644)
        tmpfs("third")  # a mount change: the next ask identifies again, as a new process would
        other = cat.fs_for_path(inc / "b")  # was FilesystemIdError: two filesystems with one id
        assert other != fs and cat.fsid(other).startswith("mount:") and cat.fsid(fs).startswith("marker:")
        assert cat.fs_for_path(pool / "seeding/a") == fs
        # root's own file that another user may write is no marker either
        os.chown(copy, 0, 0)
        os.chmod(copy, 0o664)
        assert identify(inc, marker_roots=[pool]).kind == "mount"
        os.chmod(copy, 0o644)  # root's, written by nobody else: a marker (the admin copied it)
        assert identify(inc, marker_roots=[pool]).fsid == cat.fsid(fs)


def test_two_filesystems_with_one_marker_are_told_to_delete_the_copy_not_the_pools_own(tmpfs, tmp_path):
    from qbhook.catalog.store import Catalog
    from qbhook.errors import FilesystemIdError

    pool = tmpfs("pool")
    (pool / "a").write_bytes(b"a")
    cat = Catalog.open(tmp_path / "cat.sqlite", marker_roots=[pool])
    try:
        cat.fs_for_path(pool / "a")
        copy = tmpfs("copy")  # root copied the marker: trusted, and two filesystems with one id
        (copy / MARKER_NAME).write_bytes((pool / MARKER_NAME).read_bytes())
        (copy / "b").write_bytes(b"b")
        with pytest.raises(FilesystemIdError) as e:
            cat.fs_for_path(copy / "b")
        assert f"{MARKER_NAME} at the root of {copy} (never a pool root's own)" in e.value.hint
    finally:
        cat.close()


# -- a pool marker of another owner that the catalog already keys files by (review R55) ---------


def _chown_marker_on_write(monkeypatch, uid):
    """What an NFS server with root_squash does to the marker root writes: shows it as ``uid``'s."""
    from qbhook.catalog import fsid

    real = fsid._write_marker

    def squashed(dfd):
        val = real(dfd)
        os.chown(MARKER_NAME, uid, uid, dir_fd=dfd, follow_symlinks=False)
        return val

    monkeypatch.setattr(fsid, "_write_marker", squashed)


def test_a_pool_marker_chowned_after_the_first_scan_keeps_the_pools_row_and_hashes(tmpfs, tmp_path, caplog):
    """R55: the marker of a pool first scanned as root (or as the service user, then run as root;
    or root's, shown as nobody's by NFS root_squash) was no longer trusted: the pool got a new
    ``mount:`` row, the old row lost its device, and every hash of the pool was lost. A marker
    whose id the catalog records at this mount is the pool's own, whoever owns it."""
    from qbhook.catalog.store import Catalog

    pool = tmpfs("pool")
    (pool / "a").write_bytes(b"a")
    cat = Catalog.open(tmp_path / "cat.sqlite", marker_roots=[pool])
    try:
        fs = cat.fs_for_path(pool / "a")
        cat.record_path(pool / "a", str(pool))
        cat.store_hash(cat.inode_by_path(pool / "a").id, b"\1" * 32, os.stat(pool / "a"))
    finally:
        cat.close()
    os.chown(pool / MARKER_NAME, 65534, 65534)
    cat = Catalog.open(tmp_path / "cat.sqlite", marker_roots=[pool])  # a new process
    try:
        with caplog.at_level("WARNING", logger="qbhook.catalog.fsid"):
            assert cat.fs_for_path(pool / "a") == fs
        assert [(f.id, f.dev) for f in cat.filesystems()] == [(fs, os.stat(pool).st_dev)]
        assert cat.inode_by_path(pool / "a").hash == b"\1" * 32
        assert caplog.records == []  # the pool's own marker: nothing to say
    finally:
        cat.close()


def test_a_never_seen_marker_of_another_owner_is_said_not_silently_dropped(tmpfs, caplog):
    pool = tmpfs("pool")
    (pool / MARKER_NAME).write_text("0123456789abcdef0123456789abcdef\n")
    os.chown(pool / MARKER_NAME, 65534, 65534)
    with caplog.at_level("WARNING", logger="qbhook.catalog.fsid"):
        assert identify(pool, marker_roots=[pool]).kind == "mount"
        assert identify(pool, marker_roots=[pool]).kind == "mount"
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1  # one line, not one per ask
    assert str(pool / MARKER_NAME) in said[0] and "uid 65534" in said[0] and "mode 0644" in said[0]


def test_a_marker_written_on_a_root_squashed_share_stays_the_pools_id(tmpfs, tmp_path, monkeypatch):
    """root's marker on an NFS share with root_squash is nobody's from its first write: the write
    itself is qbhook's (its id kept), and the catalog then knows it as the pool's own."""
    from qbhook.catalog.store import Catalog

    _chown_marker_on_write(monkeypatch, 65534)
    pool = tmpfs("pool")
    cat = Catalog.open(tmp_path / "cat.sqlite", marker_roots=[pool])
    try:
        fs = cat.fs_for_path(pool)
        assert os.stat(pool / MARKER_NAME).st_uid == 65534
        assert cat.fsid(fs) == "marker:" + (pool / MARKER_NAME).read_text().strip()
    finally:
        cat.close()
    cat = Catalog.open(tmp_path / "cat.sqlite", marker_roots=[pool])
    try:
        assert cat.fs_for_path(pool) == fs and len(cat.filesystems()) == 1
    finally:
        cat.close()


def test_a_copy_of_another_owners_pool_marker_on_another_filesystem_is_known_by_its_mount(tmpfs, tmp_path, caplog):
    """The pool's own marker is nobody's (root_squash) and so is a copy the torrent user put at
    the root of its nested mount: the catalog records the id at the pool's mount point, so the
    pool keeps it and the copy is known by its mount (one warning), neither an error."""
    with _marked_pool(tmpfs, tmp_path) as (pool, cat, fs):
        os.chown(pool / MARKER_NAME, 65534, 65534)
        inc = tmpfs("pool/seeding/incoming")
        (inc / "b").write_bytes(b"b")
        (inc / MARKER_NAME).write_bytes((pool / MARKER_NAME).read_bytes())
        os.chown(inc / MARKER_NAME, 65534, 65534)
        tmpfs("third")  # a mount change: the next ask identifies again
        with caplog.at_level("WARNING", logger="qbhook.catalog.fsid"):
            other = cat.fs_for_path(inc / "b")
            assert cat.fs_for_path(pool / "seeding/a") == fs
        assert other != fs and cat.fsid(other).startswith("mount:") and cat.fsid(fs).startswith("marker:")
        assert [str(inc / MARKER_NAME) in r.getMessage() for r in caplog.records] == [True]
