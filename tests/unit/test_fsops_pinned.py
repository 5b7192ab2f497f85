"""Review R8: root acts on the file it checked, never on what a name holds a moment later.

A writer of the seeding tree (qBittorrent's container: root there can mknod) may plant a device
at a name root opens, or rename another file over a name between root's check and its act. Each
file root opens or links is pinned first (``dirfd.pin_file``: O_PATH, no open of the thing
itself), checked on the pin's fstat, then reopened or linked through ``/proc/self/fd``:

- a device at a copy source, at a file being verified or hashed is refused without being opened
  (a harmless null device, c 1 3, stands in for /dev/watchdog or a tape);
- a link source renamed over after its check: the inode checked is linked, never the other one;
- the kept copy of a relink, the entry a hold links into holding: the same;
- without /proc the old way is kept (open or link by name, then the identity check).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from qbhook import dirfd
from qbhook.catalog import hashing
from qbhook.errors import UnsafeOperation, VerificationFailed
from qbhook.move import fsops
from tests.helpers import write
from tests.unit import test_fsops as _fx
from tests.unit.test_converge import _dup, _relink_leftovers, _relink_over
from tests.unit.test_fsops import b3

tmpfs, fs2 = _fx.tmpfs, _fx.fs2


def _null_device(path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def _record_devices_opened(monkeypatch) -> list:
    """Every device ``os.open`` opens for real from now on (an O_PATH pin opens nothing: not counted)."""
    opened, real = [], os.open

    def spy(path, flags, *a, dir_fd=None, **kw):
        fd = real(path, flags, *a, dir_fd=dir_fd, **kw)
        mode = os.fstat(fd).st_mode
        if not flags & os.O_PATH and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            opened.append(os.fsdecode(path))
        return fd

    monkeypatch.setattr(os, "open", spy)
    return opened


def _no_proc(monkeypatch, tmp_path) -> None:
    """A machine whose /proc is not mounted: the descriptor paths lead nowhere."""
    monkeypatch.setattr(dirfd, "PROC_FD", f"{tmp_path}/no-proc/self/fd/")


# --------------------------------------------------------------------------- a device is never opened


def test_a_device_at_a_copy_source_is_refused_without_being_opened(fs2, monkeypatch):
    _stash, _pool, seed_s, seed_p, _cat = fs2
    dev = _null_device(seed_s / "T/f.mkv")
    opened = _record_devices_opened(monkeypatch)
    with pytest.raises(UnsafeOperation, match="copy source .* is not a regular file"):
        fsops.copy_verified(dev, seed_p / "T/f.mkv", b3(b"x" * 10), 10, roots=(seed_s, seed_p))
    assert opened == []
    assert not (seed_p / "T/f.mkv").exists()


def test_a_device_swapped_in_after_verify_files_look_is_refused_without_being_opened(fs2, monkeypatch):
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    f = write(seed_s / "T/f.mkv", b"x" * 10)
    real_digest = fsops._content_digest

    def swap_then_digest(d, name, st, catalog, *a, **k):
        os.unlink(f)  # after the lstat said "a regular file of 10 bytes"
        _null_device(f)
        return real_digest(d, name, st, catalog, *a, **k)

    monkeypatch.setattr(fsops, "_content_digest", swap_then_digest)
    opened = _record_devices_opened(monkeypatch)
    with pytest.raises(UnsafeOperation, match="is not a regular file"):
        fsops.verify_file(f, 10, b3(b"x" * 10), roots=(seed_s,))
    assert opened == []


def test_hashing_refuses_a_device_without_opening_it(tmp_path, monkeypatch):
    dev = _null_device(tmp_path / "null")
    opened = _record_devices_opened(monkeypatch)
    for fn in (hashing.hash_file, hashing.sample_file):
        with pytest.raises(hashing.NotRegularFile, match=r"not a regular file \(a character device\)"):
            fn(os.fsencode(dev))
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(hashing.NotRegularFile):
            hashing.open_regular(b"null", dfd)
    finally:
        os.close(dfd)
    assert opened == []


# --------------------------------------------------------------------------- the helper itself


def test_the_pinned_inode_is_opened_and_linked_whatever_the_name_holds_now(tmp_path):
    f = write(tmp_path / "d/f.bin", b"checked")
    intruder = write(tmp_path / "d/g.bin", b"swapped")
    d = os.open(tmp_path / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        pin = dirfd.pin_file(b"f.bin", d)
        st = pin.st
        os.rename(f, tmp_path / "d/aside.bin")  # the writer's move, after the check
        os.rename(intruder, f)
        fd, now = pin.reopen(hashing._READ_FLAGS, b"f.bin", d)
        assert os.read(fd, 100) == b"checked" and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)
        os.close(fd)
        pin.link(b"view.bin", d, b"f.bin", d)
        assert os.lstat(tmp_path / "d/view.bin").st_ino == st.st_ino
        pin.close()
    finally:
        os.close(d)


def test_a_pinned_file_that_lost_its_last_name_is_not_linked_by_name(tmp_path):
    write(tmp_path / "f.bin", b"checked")
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        pin = dirfd.pin_file(b"f.bin", d)
        os.unlink(tmp_path / "f.bin")
        write(tmp_path / "f.bin", b"another")
        with pytest.raises(FileNotFoundError):
            pin.link(b"view.bin", d, b"f.bin", d)
        assert not (tmp_path / "view.bin").exists()
        pin.close()
    finally:
        os.close(d)


def test_a_symlink_or_a_folder_is_refused_as_before(tmp_path):
    write(tmp_path / "t.bin", b"x")
    os.symlink(tmp_path / "t.bin", tmp_path / "link")
    (tmp_path / "sub").mkdir()
    with pytest.raises(OSError) as e:
        dirfd.open_file_at(tmp_path / "link", None, os.O_RDONLY)
    assert e.value.errno == errno.ELOOP
    with pytest.raises(dirfd.NotRegular) as nr:
        dirfd.open_file_at(tmp_path / "sub", None, os.O_RDONLY)
    assert stat.S_ISDIR(nr.value.mode)


def test_without_proc_the_name_is_opened_again_and_must_be_the_pinned_inode(tmp_path, monkeypatch):
    _no_proc(monkeypatch, tmp_path)
    f = write(tmp_path / "d/f.bin", b"checked")
    fd, st = dirfd.open_file_at(f, None, hashing._READ_FLAGS)
    assert os.read(fd, 100) == b"checked" and st.st_ino == os.lstat(f).st_ino
    os.close(fd)
    pin = dirfd.pin_file(f)
    os.rename(write(tmp_path / "d/g.bin", b"swapped"), f)
    with pytest.raises(dirfd.EntryChanged):
        pin.reopen(hashing._READ_FLAGS, f, None)
    pin.close()


def test_without_proc_a_link_is_made_by_name(tmp_path, monkeypatch):
    _no_proc(monkeypatch, tmp_path)
    f = write(tmp_path / "f.bin", b"checked")
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with dirfd.pin_file(b"f.bin", d) as pin:
            st = pin.st
            pin.link(b"view.bin", d, b"f.bin", d)
    finally:
        os.close(d)
    assert os.lstat(tmp_path / "view.bin").st_ino == st.st_ino == os.lstat(f).st_ino


def test_without_proc_fsops_still_copies_links_and_verifies(fs2, tmp_path, monkeypatch):
    _stash, _pool, seed_s, seed_p, _cat = fs2
    _no_proc(monkeypatch, tmp_path)
    src = write(seed_s / "A/f.bin", b"payload")
    assert fsops.copy_verified(src, seed_p / "A/f.bin", b3(b"payload"), 7, roots=(seed_s, seed_p))["status"] == "copied"
    assert fsops.link_into(src, seed_s / "B/f.bin", roots=(seed_s,))["status"] == "linked"
    fsops.verify_file(seed_s / "B/f.bin", 7, b3(b"payload"), roots=(seed_s,))
    with pytest.raises(VerificationFailed):
        fsops.verify_file(seed_s / "B/f.bin", 7, b3(b"other!!"), roots=(seed_s,))


# --------------------------------------------------------------------------- links of the inode checked


def _swap_before_link(monkeypatch, new_name: bytes, name: Path, other: Path) -> list:
    """Right before the first os.link making ``new_name``, rename ``name`` aside (``<name>.orig``) and
    put a hard link of ``other`` at it: a writer's move between qbhook's check and its link."""
    real, done = os.link, []

    def link(src, dst, *a, **kw):
        if not done and dst == new_name:
            done.append(True)
            os.rename(name, f"{name}.orig")
            real(other, name)
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "link", link)
    return done


def test_link_into_links_the_source_it_checked_not_a_library_file_renamed_over_it(fs2, monkeypatch):
    """The writer swaps the source for a hard link of a library file between link_into's check and
    its link: root used to link the library inode into the torrent's view (past protected_hardlinks),
    then refuse with the wrong link left in place, unjournaled, blaming the destination."""
    stash, _pool, seed_s, _seed_p, _cat = fs2
    data = b"A" * 1000
    src = write(seed_s / "T1/f.mkv", data)
    planned = os.lstat(src)
    library = write(stash / "lib/Movie/f.mkv", b"L" * 1000)
    swapped = _swap_before_link(monkeypatch, b"f.mkv", src, library)
    r = fsops.link_into(src, seed_s / "T2/f.mkv", roots=(seed_s,), src_roots=(stash,), size=1000, blake3_hex=b3(data))
    assert swapped and r["status"] == "linked"
    assert os.lstat(seed_s / "T2/f.mkv").st_ino == planned.st_ino
    assert (seed_s / "T2/f.mkv").read_bytes() == data
    assert os.lstat(library).st_nlink == 2  # its own name and the writer's, never a third by root


def test_a_link_swapped_after_it_was_made_is_blamed_on_its_folder(fs2, monkeypatch):
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    src = write(seed_s / "A/f.bin", b"payload")
    intruder = write(seed_s / "B/g.bin", b"evil!!!")
    real = os.link

    def link_then_swap(a, b, *args, **kw):
        real(a, b, *args, **kw)
        os.rename(intruder, seed_s / "view/f.bin")

    monkeypatch.setattr(os, "link", link_then_swap)
    with pytest.raises(UnsafeOperation, match="view/f.bin was replaced right after qbhook linked it"):
        fsops.link_into(src, seed_s / "view/f.bin", roots=(seed_s,))


def test_a_relink_links_the_kept_copy_it_checked_not_what_its_name_holds_then(fs2, monkeypatch):
    """The kept copy's name renamed over right before the temporary link: the temporary name gets
    the inode checked (the last look then sees the change and refuses), never the swapped-in one."""
    victim, lib, kw = _dup(fs2)
    intruder = write(lib.parent / "other.mkv", b"payload-bytes")
    real, made = os.link, []

    def link(src, dst, *a, **k):
        if dst.startswith(fsops.RELINK_PREFIX) and not made:
            os.rename(lib, lib.with_name("aside.mkv"))
            os.rename(intruder, lib)
        real(src, dst, *a, **k)
        made.append(os.stat(dst, dir_fd=k["dst_dir_fd"], follow_symlinks=False).st_ino)

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(UnsafeOperation, match="the copy to keep changed during the checks"):
        _relink_over(victim, lib, **kw)
    assert made == [kw["keep_ino"]]
    assert _relink_leftovers(victim.parent) == [] and os.lstat(victim).st_ino == kw["ino"]
