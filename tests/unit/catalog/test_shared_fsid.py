"""Two mounted filesystems with one id (btrfs subvolumes, an LVM snapshot, a copied loop image
report the same UUID) are refused, not merged: fs_for_path used to move the id's st_dev from
one to the other, so (filesystem, inode) keys took one's files for the other's."""

import os

import pytest

from qbhook.catalog import fsid
from qbhook.catalog.store import Catalog
from qbhook.errors import FilesystemIdError

A, B = os.makedev(0, 901), os.makedev(0, 902)
MOUNTS = {A: fsid.Mount(A, "/", "/srv/a", "ext4", "/dev/loop1"), B: fsid.Mount(B, "/", "/srv/b", "ext4", "/dev/loop2")}


@pytest.fixture
def ids():
    return {A: "uuid:same", B: "uuid:same"}  # what each device's filesystem says it is


@pytest.fixture
def cat(tmp_path, monkeypatch, ids):
    def identify(path=None, *, dev, mounts=None, **_kw):
        m = MOUNTS[dev]
        return fsid.FsIdentity(ids[dev], "uuid", m.fstype, m.source, m.mountpoint, dev)

    monkeypatch.setattr(fsid, "identify", identify)
    c = Catalog.open(tmp_path / "cat.sqlite")
    yield c
    c.close()


def _mounted(monkeypatch, *devs):
    monkeypatch.setattr(fsid, "read_mounts", lambda: [MOUNTS[d] for d in devs])


def test_a_second_mounted_filesystem_with_the_same_uuid_is_refused(cat, monkeypatch):
    _mounted(monkeypatch, A, B)
    fs = cat.fs_for_path(b"/srv/a/f", A)
    with pytest.raises(FilesystemIdError, match="/srv/a and /srv/b .* uuid:same") as e:
        cat.fs_for_path(b"/srv/b/f", B)
    assert "tune2fs -U random" in str(e.value) and "\n" not in e.value.message
    assert cat.conn.execute("SELECT dev FROM filesystems WHERE id = ?", (fs,)).fetchone()[0] == A


def test_a_remount_moves_the_device_number(cat, monkeypatch):
    _mounted(monkeypatch, A)
    fs = cat.fs_for_path(b"/srv/a/f", A)
    _mounted(monkeypatch, B)  # A is gone: the same filesystem came back as B
    assert cat.fs_for_path(b"/srv/b/f", B) == fs
    assert cat.conn.execute("SELECT dev FROM filesystems WHERE id = ?", (fs,)).fetchone()[0] == B


def test_an_old_number_now_another_filesystems_is_a_remount(cat, monkeypatch, ids):
    # After a reboot the number the row had may belong to another filesystem: still a remount.
    _mounted(monkeypatch, A)
    fs = cat.fs_for_path(b"/srv/a/f", A)
    ids[A] = "uuid:other"
    _mounted(monkeypatch, A, B)
    assert cat.fs_for_path(b"/srv/b/f", B) == fs


def test_btrfs_subvolumes_with_one_uuid_are_refused(cat, monkeypatch):
    # Both subvolumes' mountinfo lines say one device; a stat of each mount point says its own.
    m = os.makedev(0, 903)
    mounts = [fsid.Mount(m, "/@a", "/srv/a", "btrfs", "/dev/sda"), fsid.Mount(m, "/@b", "/srv/b", "btrfs", "/dev/sda")]
    monkeypatch.setattr(fsid, "read_mounts", lambda: mounts)
    real = os.lstat
    devs = {"/srv/a": A, "/srv/b": B}

    def lstat(path, *a, **k):
        if path in devs:
            return os.stat_result((0o40755, 1, devs[path], 1, 0, 0, 0, 0, 0, 0))
        return real(path, *a, **k)

    monkeypatch.setattr(os, "lstat", lstat)
    cat.fs_for_path(b"/srv/a/f", A)
    with pytest.raises(FilesystemIdError, match="/srv/a and /srv/b"):
        cat.fs_for_path(b"/srv/b/f", B)


def test_a_zfs_dataset_is_re_mapped_though_its_old_number_is_still_listed(cat, monkeypatch, ids):
    # A GUID is one dataset's: the old number still in mountinfo is a dead (FUSE) mount.
    ids[A] = ids[B] = "zfs:123"
    _mounted(monkeypatch, A, B)
    fs = cat.fs_for_path(b"/srv/a/f", A)
    assert cat.fs_for_path(b"/srv/b/f", B) == fs
    assert cat.conn.execute("SELECT dev FROM filesystems WHERE id = ?", (fs,)).fetchone()[0] == B
