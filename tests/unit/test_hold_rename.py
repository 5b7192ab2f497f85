"""R14: a hold moves its entry into holding by one rename, then proves what arrived; a leftover
view's removal renames it to a name of qbhook's own, proves it, and unlinks that name.

The shape before (link into holding, then unlink the original name; lstat, then unlink the view's
name) removed whatever a writer of the folder (qBittorrent completing a download at that path)
renamed over the name in between: that file's last link, never held. Each test's swap happens at
the act of either shape (``_writer_at_the_act``), so it fails on the shape before.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from qbhook.errors import UnsafeOperation, ViewReleased
from qbhook.move import fsops
from tests.helpers import write
from tests.unit.test_fsops import b3, fs2, tmpfs  # noqa: F401
from tests.unit.test_fsops_hostile import _doomed

PRECIOUS = b"precious" * 100
DROP = b".qbhook-relink.drop."


def _killed_at_the_drop(monkeypatch, act) -> None:
    """Run ``act`` with a kill (KeyboardInterrupt) at the unlink of a drop name: the moment after
    the rename to the drop name and before its unlink."""
    real_unlink = os.unlink

    def die_at_the_drop(p, *, dir_fd=None):
        if os.fsencode(p).startswith(DROP):
            raise KeyboardInterrupt
        return real_unlink(p, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", die_at_the_drop)
    with pytest.raises(KeyboardInterrupt):
        act()
    monkeypatch.undo()


def _writer_at_the_act(monkeypatch, name: str, intruder) -> list:
    """At qbhook's act on the entry ``name``, a writer of its folder renames ``intruder`` over it:
    right before the rename (this shape), or between the link into holding / last look and the
    unlink of ``name`` (the shape before: what it called is patched too, never called now)."""
    done: list = []

    def swap(dir_fd: int) -> None:
        if not done:
            os.rename(intruder, os.path.join(f"/proc/self/fd/{dir_fd}", name))
            done.append(True)

    real_rename = getattr(fsops, "_rename_noreplace", None)
    if real_rename is not None:

        def rename(src, sfd, dst, dfd):
            if os.fsdecode(src) == name:
                swap(sfd)
            return real_rename(src, sfd, dst, dfd)

        monkeypatch.setattr(fsops, "_rename_noreplace", rename)
    real_link_same = fsops._link_same

    def link_same(src, dst, n, st):
        ok = real_link_same(src, dst, n, st)
        if os.fsdecode(n) == name:
            swap(src.fd)
        return ok

    monkeypatch.setattr(fsops, "_link_same", link_same)
    real_unlink = os.unlink

    def unlink(p, *, dir_fd=None):
        if dir_fd is not None and os.fsdecode(p) == name:
            swap(dir_fd)
        return real_unlink(p, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    return done


def _hold_via(how: str, fs2, path):  # noqa: F811
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    st = os.lstat(path)
    if how == "orphan":
        facts = {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "max_nlink": st.st_nlink}
        return lambda: fsops.hold_unreferenced(path, **facts, roots=(seed_s,), run=5)
    return lambda: fsops.hide_during_move(str(path), roots=(seed_s,), run=5)


@pytest.mark.parametrize("how", ["orphan", "hide"])
def test_a_file_renamed_over_the_name_as_it_is_held_stays_at_that_name(fs2, monkeypatch, how):  # noqa: F811
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    orphan = write(seed_s / "old/Gone/gone.mkv", b"o" * 800)
    intruder = write(seed_s / "other/only-copy.bin", PRECIOUS)
    hold = _hold_via(how, fs2, orphan)
    swapped = _writer_at_the_act(monkeypatch, "gone.mkv", intruder)
    with pytest.raises(UnsafeOperation, match="swapped"):
        hold()
    assert swapped
    assert orphan.read_bytes() == PRECIOUS and os.lstat(orphan).st_nlink == 1  # put back, never unlinked
    key = 5 if how == "orphan" else fsops.moving_hold_key(5)
    assert not os.path.lexists(fsops.holding_path(orphan, seed_s, key))  # nothing of it held


def test_a_file_renamed_over_a_doomed_link_as_it_is_held_stays_at_that_name(fs2, monkeypatch):  # noqa: F811
    """The grace-period delete (``safe_unlink(hold_run=)``), the same hold."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, b, _keep, kw = _doomed(fs2)
    intruder = write(seed_s / "C/g.bin", PRECIOUS)
    swapped = _writer_at_the_act(monkeypatch, "f.bin", intruder)
    with pytest.raises(UnsafeOperation, match="swapped"):
        fsops.safe_unlink(a, **kw, hold_run=5)
    assert swapped and a.read_bytes() == PRECIOUS
    assert os.lstat(b).st_ino == kw["ino"] and os.lstat(b).st_nlink == 1  # the doomed inode: its other link
    assert not os.path.lexists(fsops.holding_path(a, seed_s, 5))


def test_a_hold_killed_right_after_its_rename_is_found_held(tmp_path, monkeypatch):
    """Journal first: the hold's row is written before the act, and the act is one rename. A kill
    right after it leaves the file in holding and its name free; the resumed hold says ``held``
    where it is, so the journal tracks it and the purge takes it."""
    root = tmp_path / "seed"
    f = write(root / "old/x.bin", b"x" * 100)
    st = os.lstat(f)
    facts = {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "max_nlink": 1, "roots": (root,)}
    real = getattr(fsops, "_rename_noreplace", None)

    def rename_then_die(*a):
        real(*a)
        raise KeyboardInterrupt  # the kill

    monkeypatch.setattr(fsops, "_rename_noreplace", rename_then_die, raising=False)
    with pytest.raises(KeyboardInterrupt):
        fsops.hold_unreferenced(f, **facts, run=7)
    monkeypatch.undo()
    res = fsops.hold_unreferenced(f, **facts, run=7, resumed=True)
    held = fsops.holding_path(f, root, 7)
    assert res["status"] == "held" and res["held_at"] == held
    assert not os.path.lexists(f) and os.stat(held).st_ino == st.st_ino


def test_a_half_done_hold_of_the_link_shape_finishes_even_when_killed_again(tmp_path, monkeypatch):
    """A hold of the link shape (an older qbhook) that died between its link into holding and its
    unlink: resumed, the original name, a spare link now, is renamed to a drop name in holding,
    proven, and unlinked there. Killed before that unlink, the next resume drops the spare."""
    root = tmp_path / "seed"
    f = write(root / "old/x.bin", b"x" * 100)
    st = os.lstat(f)
    facts = {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "max_nlink": 1, "roots": (root,)}
    own = root / fsops.HOLDING_DIR / "7/old"
    own.mkdir(parents=True, mode=0o700)
    for d in (root / fsops.HOLDING_DIR, root / fsops.HOLDING_DIR / "7"):
        d.chmod(0o700)
    os.link(f, own / "x.bin")  # the link the older hold made before it died
    real_unlink = os.unlink

    def die_at_the_spare(p, *, dir_fd=None):
        if os.fsencode(p).startswith(DROP):
            raise KeyboardInterrupt  # killed between the spare's rename and its unlink
        return real_unlink(p, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", die_at_the_spare)
    with pytest.raises(KeyboardInterrupt):
        fsops.hold_unreferenced(f, **facts, run=7, resumed=True)
    monkeypatch.undo()
    assert not os.path.lexists(f) and [n for n in os.listdir(own) if n.startswith(DROP.decode())]
    res = fsops.hold_unreferenced(f, **facts, run=7, resumed=True)
    assert res["status"] == "held" and res["held_at"] == str(own / "x.bin")
    assert os.listdir(own) == ["x.bin"] and os.stat(own / "x.bin").st_nlink == 1


def _view(tmp_path):
    root = tmp_path / "seed"
    src = write(tmp_path / "src.bin", b"s" * 50)
    view = root / "old/view.bin"
    view.parent.mkdir(parents=True)
    os.link(src, view)
    st = os.lstat(view)
    kw = {"ino": st.st_ino, "size": 50, "keep": src, "blake3_hex": b3(b"s" * 50), "roots": (root,)}
    return root, src, view, {**kw, "keep_roots": (tmp_path,)}


def test_a_file_renamed_over_a_leftover_view_as_it_is_removed_stays(tmp_path, monkeypatch):
    _root, src, view, kw = _view(tmp_path)
    intruder = write(tmp_path / "seed/new/done.bin", PRECIOUS)
    swapped = _writer_at_the_act(monkeypatch, "view.bin", intruder)
    with pytest.raises(UnsafeOperation, match="changed during the checks"):
        fsops.remove_leftover_view(view, **kw)
    assert swapped and view.read_bytes() == PRECIOUS  # put back at its name, never unlinked
    assert os.listdir(view.parent) == ["view.bin"] and src.read_bytes() == b"s" * 50


def test_a_leftover_view_removal_killed_before_its_unlink_is_judged_again(tmp_path, monkeypatch):
    """Killed between the rename to the drop name and its unlink: the view waits under the drop name
    (no scan or orphans walk lists it); the next attempt puts it back and removes it after the
    checks, or refuses (kept for another try) while its name is taken."""
    _root, _src, view, kw = _view(tmp_path)
    _killed_at_the_drop(monkeypatch, lambda: fsops.remove_leftover_view(view, **kw))
    (drop,) = os.listdir(view.parent)
    assert drop.startswith(DROP.decode())
    view.write_bytes(b"taken")
    with pytest.raises(UnsafeOperation, match="its name is taken"):
        fsops.remove_leftover_view(view, **kw)
    view.unlink()
    assert fsops.remove_leftover_view(view, **kw)["status"] == "removed"
    assert os.listdir(view.parent) == []


def test_the_rename_never_replaces_a_name_even_without_renameat2(tmp_path, monkeypatch):
    """A filesystem without RENAME_NOREPLACE (EINVAL): a look, then a plain rename; a taken name is
    FileExistsError either way, never replaced."""
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        write(tmp_path / "a", b"a")
        write(tmp_path / "b", b"b")
        for lib in (None, "einval"):
            if lib:

                class _NoFlag:
                    @staticmethod
                    def renameat2(*_a):
                        ctypes.set_errno(errno.EINVAL)
                        return -1

                monkeypatch.setattr(fsops, "_libc", _NoFlag)
            with pytest.raises(FileExistsError):
                fsops._rename_noreplace(b"a", d, b"b", d)
            assert (tmp_path / "a").read_bytes() == b"a" and (tmp_path / "b").read_bytes() == b"b"
        fsops._rename_noreplace(b"a", d, b"c", d)
        assert not (tmp_path / "a").exists() and (tmp_path / "c").read_bytes() == b"a"
    finally:
        os.close(d)


def _unrecorded(tmp_path):
    root = tmp_path / "seed"
    src = write(tmp_path / "src.bin", b"s" * 50)
    link = root / "T/f.bin"
    link.parent.mkdir(parents=True)
    os.link(src, link)
    return src, link, {"roots": (root,), "src_roots": (tmp_path,)}


def test_a_file_renamed_over_an_unrecorded_link_as_it_is_removed_stays(tmp_path, monkeypatch):
    """A repair's link of unknown outcome (``remove_unrecorded_link``): the same removal shape."""
    src, link, kw = _unrecorded(tmp_path)
    intruder = write(tmp_path / "seed/new/done.bin", PRECIOUS)
    swapped = _writer_at_the_act(monkeypatch, "f.bin", intruder)
    with pytest.raises(UnsafeOperation, match="changed during the checks"):
        fsops.remove_unrecorded_link(link, src, **kw)
    assert swapped and link.read_bytes() == PRECIOUS and os.listdir(link.parent) == ["f.bin"]
    assert src.read_bytes() == b"s" * 50


def test_an_unrecorded_link_removal_killed_before_its_unlink_leaves_no_spare(tmp_path, monkeypatch):
    src, link, kw = _unrecorded(tmp_path)
    _killed_at_the_drop(monkeypatch, lambda: fsops.remove_unrecorded_link(link, src, **kw))
    assert os.stat(src).st_nlink == 2  # the spare link, under the drop name
    assert fsops.remove_unrecorded_link(link, src, **kw)["status"] == "absent"
    assert os.listdir(link.parent) == [] and os.stat(src).st_nlink == 1


# --------------------------------------------------------------------------- R17


def test_a_file_renamed_over_a_doomed_link_as_it_is_deleted_stays_at_that_name(fs2, monkeypatch):  # noqa: F811
    """F1: the delete without a grace period (the demote's main path) was lstat, then
    ``unlinkat(name)``: a file renamed over the name in between lost its last link. Now the
    doomed link goes to a drop name first, and another file met there goes back."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, b, _keep, kw = _doomed(fs2)
    intruder = write(seed_s / "C/g.bin", PRECIOUS)
    swapped = _writer_at_the_act(monkeypatch, "f.bin", intruder)
    with pytest.raises(UnsafeOperation, match="changed during the checks"):
        fsops.safe_unlink(a, **kw)
    assert swapped and a.read_bytes() == PRECIOUS and os.listdir(a.parent) == ["f.bin"]
    assert os.lstat(b).st_ino == kw["ino"] and os.lstat(b).st_nlink == 1  # the doomed inode, not unlinked


def test_a_delete_unlinks_through_the_drop_name_and_says_what_it_freed(fs2):  # noqa: F811
    _stash, _pool, _seed_s, _seed_p, _cat = fs2
    a, b, _keep, kw = _doomed(fs2)
    os.unlink(b)
    res = fsops.safe_unlink(a, **{**kw, "seeding_links": [str(a)]})
    assert res["status"] == "unlinked" and res["bytes_freed"] == kw["size"] and res["nlink_before"] == 1
    assert os.listdir(a.parent) == []


def test_a_delete_killed_before_its_unlink_is_judged_again(fs2, monkeypatch):  # noqa: F811
    """Killed between the rename to the drop name and its unlink: the next attempt finds the name
    gone, puts the doomed link back from the drop name and deletes it after the checks (never
    ``absent`` with the link left under a name no scan lists)."""
    _stash, _pool, _seed_s, _seed_p, _cat = fs2
    a, b, _keep, kw = _doomed(fs2)
    _killed_at_the_drop(monkeypatch, lambda: fsops.safe_unlink(a, **kw))
    (drop,) = os.listdir(a.parent)
    assert drop.startswith(DROP.decode())
    res = fsops.safe_unlink(a, **kw)
    assert res["status"] == "unlinked" and res["nlink_before"] == 2
    assert os.listdir(a.parent) == [] and os.lstat(b).st_nlink == 1


def _no_renameat2(monkeypatch) -> None:
    """A filesystem without RENAME_NOREPLACE (ZFS before 2.2: EINVAL for the flag)."""

    class _NoFlag:
        @staticmethod
        def renameat2(*_a):
            ctypes.set_errno(errno.EINVAL)
            return -1

    monkeypatch.setattr(fsops, "_libc", _NoFlag)


def _completes_at(monkeypatch, name: bytes, data: bytes) -> list:
    """qBittorrent completing a download at ``name`` (``.!qB`` renamed over it) right before qbhook's
    act onto that name (the fallback's plain rename of the shape before, or its link now): after
    any look qbhook took."""
    done: list = []
    real_rename, real_link = os.rename, os.link

    def complete(fd: int) -> None:
        if not done:
            part = os.path.join(f"/proc/self/fd/{fd}", os.fsdecode(name) + ".!qB")
            with open(part, "wb") as f:
                f.write(data)
            real_rename(part, os.path.join(f"/proc/self/fd/{fd}", os.fsdecode(name)))
            done.append(True)

    def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        if dst_dir_fd is not None and os.fsencode(dst) == name:
            complete(dst_dir_fd)
        return real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def link(src, dst, *, src_dir_fd=None, dst_dir_fd=None, follow_symlinks=True):
        if dst_dir_fd is not None and os.fsencode(dst) == name:
            complete(dst_dir_fd)
        return real_link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "link", link)
    return done


def test_a_put_back_without_renameat2_never_replaces_a_file_completed_at_the_name(tmp_path, monkeypatch):
    """F2: without the flag the put-back onto a torrent's name was a look, then a plain rename; a
    file completed at the name in between was replaced (its last link gone). Now a link (EEXIST,
    atomically), then the unlink of qbhook's own name."""
    _no_renameat2(monkeypatch)
    _root, _src, view, kw = _view(tmp_path)
    st = os.lstat(view)
    drop = view.parent / os.fsdecode(fsops._drop_name(b"view.bin", st.st_ino))
    os.rename(view, drop)  # a removal killed between its rename to the drop name and its unlink
    completed = _completes_at(monkeypatch, b"view.bin", PRECIOUS)
    with pytest.raises(UnsafeOperation):
        fsops.remove_leftover_view(view, **kw)
    assert completed and view.read_bytes() == PRECIOUS  # the completed file, never replaced
    assert os.lstat(drop).st_ino == st.st_ino  # the view still waits under its drop name


def test_a_put_back_without_renameat2_moves_the_file_back(tmp_path, monkeypatch):
    _no_renameat2(monkeypatch)
    write(tmp_path / "own", b"a")
    write(tmp_path / "taken", b"b")
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError):
            fsops._put_back(b"own", d, b"taken", d)
        fsops._put_back(b"own", d, b"name", d)
    finally:
        os.close(d)
    assert sorted(os.listdir(tmp_path)) == ["name", "taken"] and os.lstat(tmp_path / "name").st_nlink == 1
    assert (tmp_path / "name").read_bytes() == b"a" and (tmp_path / "taken").read_bytes() == b"b"


def test_a_put_back_killed_between_its_link_and_unlink_leaves_no_spare(tmp_path, monkeypatch):
    """Without renameat2 a put-back is a link, then an unlink of the drop name: killed between the
    two, both name the view; the next removal drops the spare and removes the view."""
    _no_renameat2(monkeypatch)
    _root, _src, view, kw = _view(tmp_path)
    st = os.lstat(view)
    drop = view.parent / os.fsdecode(fsops._drop_name(b"view.bin", st.st_ino))
    os.rename(view, drop)
    os.link(drop, view)  # the put-back's link made, its unlink not
    assert fsops.remove_leftover_view(view, **kw)["status"] == "removed"
    assert os.listdir(view.parent) == []


LONG = ("映画" * 40 + ".mkv").encode()  # 244 bytes: a CJK title, 3 bytes a character


@pytest.mark.parametrize("qbhook_name", [fsops._drop_name, fsops._relink_name])
def test_qbhooks_names_for_a_long_utf8_name_are_utf8_and_fit(qbhook_name):
    """F3: cut at a byte position to fit NAME_MAX, a long CJK name's drop or relink name ended in
    part of a character: a ``utf8only=on`` dataset refuses it (EILSEQ), every run. And two long
    names alike up to the cut got the same name."""
    for ino in (0x1A2B3, 0x1A2B3C, 2**40 + 7):
        got = qbhook_name(LONG, ino)
        got.decode("utf-8")
        assert len(got) <= fsops.NAME_MAX and got.startswith(fsops.RELINK_PREFIX)
        assert got != qbhook_name(LONG[:-4] + b".srt", ino)
    assert fsops._drop_name(LONG, 5) == fsops._drop_name(LONG, 5) != fsops._drop_name(LONG, 6)


def test_a_short_names_relink_name_keeps_the_shape_older_versions_gave_it():
    """Leftovers of an older qbhook's crashed relink are found by one lstat at the same name."""
    assert fsops._relink_name(b"film.mkv", 0xAB) == b".qbhook-relink.ab.film.mkv"


def test_a_long_named_leftover_view_removal_killed_before_its_unlink_is_finished(tmp_path, monkeypatch):
    """The drop name of a long name is found again by (name, inode) alone."""
    root = tmp_path / "seed"
    src = write(tmp_path / "src.bin", b"s" * 50)
    view = root / "old" / os.fsdecode(LONG)
    view.parent.mkdir(parents=True)
    os.link(src, view)
    kw = {"ino": os.lstat(view).st_ino, "size": 50, "keep": src, "blake3_hex": b3(b"s" * 50), "roots": (root,)}
    _killed_at_the_drop(monkeypatch, lambda: fsops.remove_leftover_view(view, **kw, keep_roots=(tmp_path,)))
    assert os.listdir(view.parent) == [os.fsdecode(fsops._drop_name(LONG, kw["ino"]))]
    assert fsops.remove_leftover_view(view, **kw, keep_roots=(tmp_path,))["status"] == "removed"
    assert os.listdir(view.parent) == [] and os.stat(src).st_nlink == 1


def test_an_older_relinks_leftover_of_a_long_name_is_still_cleaned(fs2):  # noqa: F811
    """An older qbhook cut a long name's relink name at a byte (valid where the filesystem takes
    any bytes): its crashed relink's spare link is still found and removed."""
    stash, _pool, seed_s, _seed_p, cat = fs2
    data = b"payload-bytes"
    victim = write(seed_s / "movies/Film" / os.fsdecode(LONG), data)
    lib = write(stash / "movies/Film (2021)/Film.mkv", data)
    vst, lst = os.lstat(victim), os.lstat(lib)
    head = fsops.RELINK_PREFIX + b"%x." % vst.st_ino
    old = victim.parent / os.fsdecode(head + LONG[: fsops.NAME_MAX - len(head)])
    os.link(lib, old)  # the older version's temporary link, left by a kill
    fsid = cat.fsid(cat.fs_for_path(victim))
    t = fsops.RelinkTarget(
        fsid=fsid,
        ino=vst.st_ino,
        size=len(data),
        mtime_ns=vst.st_mtime_ns,
        blake3_hex=b3(data),
        keep_fsid=fsid,
        keep_ino=lst.st_ino,
    )
    res = fsops.relink_over(victim, lib, t, seeding_roots=(seed_s,), keep_roots=(stash,), catalog=cat)
    assert res["status"] == "relinked"
    assert os.listdir(victim.parent) == [os.fsdecode(LONG)] and os.lstat(lib).st_nlink == 2


def _half_done_old_hide(tmp_path, monkeypatch):
    """An older qbhook's hide killed between its link into holding and its unlink; the new hide,
    resuming, renames the original to the spare drop name inside holding and is killed before
    its unlink. Returns (root, the file's path, its holding folder)."""
    root = tmp_path / "seed"
    f = write(root / "T/f.bin", b"x" * 100)
    held = fsops.holding_path(str(f), str(root), fsops.moving_hold_key(7))
    os.makedirs(os.path.dirname(held), mode=0o700)
    for d in (root / fsops.HOLDING_DIR, root / fsops.HOLDING_DIR / "7-moving"):
        os.chmod(d, 0o700)
    os.link(f, held)
    real = fsops._rename_noreplace

    def rename_then_die(*a):
        real(*a)
        raise KeyboardInterrupt

    monkeypatch.setattr(fsops, "_rename_noreplace", rename_then_die)
    with pytest.raises(KeyboardInterrupt):
        fsops.hide_during_move(str(f), roots=(str(root),), run=7)
    monkeypatch.undo()
    folder = os.path.dirname(held)
    assert len(os.listdir(folder)) == 2 and os.lstat(held).st_nlink == 2  # the held name and the spare
    return root, f, folder


def test_a_hide_resumed_after_a_second_kill_drops_the_spare_link(tmp_path, monkeypatch):
    """F4: the resumed hide said ``hidden`` and left the spare; unhide then put the file back with
    the spare still in holding: a link more for good, the moving folder never removed."""
    root, f, folder = _half_done_old_hide(tmp_path, monkeypatch)
    assert fsops.hide_during_move(str(f), roots=(str(root),), run=7)["status"] == "hidden"
    assert os.listdir(folder) == ["f.bin"] and os.lstat(os.path.join(folder, "f.bin")).st_nlink == 1
    assert fsops.unhide_after_move(str(f), roots=(str(root),), run=7)["status"] == "restored"
    assert os.lstat(f).st_nlink == 1 and not os.path.lexists(root / fsops.HOLDING_DIR)


def test_a_put_back_drops_a_spare_link_a_killed_hide_left(tmp_path, monkeypatch):
    root, f, _folder = _half_done_old_hide(tmp_path, monkeypatch)
    assert fsops.unhide_after_move(str(f), roots=(str(root),), run=7)["status"] == "restored"
    assert os.lstat(f).st_nlink == 1 and f.read_bytes() == b"x" * 100
    assert not os.path.lexists(root / fsops.HOLDING_DIR)


# --------------------------------------------------------------------------- R20


def _completed_then_killed(monkeypatch, name: str, intruder) -> None:
    """qBittorrent renames ``intruder`` (a completed download) over ``name`` right before qbhook's
    rename of that name into holding or to its drop name, and qbhook is killed right after that
    rename, before it looks at what arrived. Undone by the caller's ``monkeypatch.undo()``."""
    real = fsops._rename_noreplace

    def rename(src, sfd, dst, dfd):
        if os.fsdecode(src) != name:
            return real(src, sfd, dst, dfd)
        os.rename(intruder, os.path.join(f"/proc/self/fd/{sfd}", name))
        real(src, sfd, dst, dfd)
        raise KeyboardInterrupt  # the kill

    monkeypatch.setattr(fsops, "_rename_noreplace", rename)


def _orphan(tmp_path):
    root = tmp_path / "seed"
    f = write(root / "old/x.bin", b"x" * 100)
    st = os.lstat(f)
    facts = {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "max_nlink": 1, "roots": (root,)}
    return root, f, facts


def test_a_file_swapped_in_as_a_killed_hold_renamed_is_put_back_on_resume(tmp_path, monkeypatch):
    """R20 F1: the resumed hold saw another inode at the held name and said ``absent``; the journal
    closed the hold and the completed download, its only link in holding, was named by nothing."""
    root, f, facts = _orphan(tmp_path)
    intruder = write(root / "incomplete/x.bin.!qB", PRECIOUS)
    _completed_then_killed(monkeypatch, "x.bin", intruder)
    with pytest.raises(KeyboardInterrupt):
        fsops.hold_unreferenced(f, **facts, run=7)
    monkeypatch.undo()
    with pytest.raises(UnsafeOperation, match="renamed over it as it was being held; that file is put back"):
        fsops.hold_unreferenced(f, **facts, run=7, resumed=True)
    assert f.read_bytes() == PRECIOUS and os.lstat(f).st_nlink == 1
    assert not os.path.lexists(fsops.holding_path(f, root, 7))


def _hold_killed_after_a_swap(tmp_path, monkeypatch):
    root, f, facts = _orphan(tmp_path)
    intruder = write(root / "incomplete/x.bin.!qB", PRECIOUS)
    _completed_then_killed(monkeypatch, "x.bin", intruder)
    with pytest.raises(KeyboardInterrupt):
        fsops.hold_unreferenced(f, **facts, run=7)
    monkeypatch.undo()
    return root, f, facts, fsops.holding_path(f, root, 7)


def test_a_file_swapped_in_as_a_killed_hold_renamed_is_named_when_its_name_is_taken(tmp_path, monkeypatch):
    """The name taken again before the resume: the refusal (no longer the file decided on) names
    where the swapped-in file waits, the only thing that does; both files stay."""
    _root, f, facts, held = _hold_killed_after_a_swap(tmp_path, monkeypatch)
    write(f, b"another")
    with pytest.raises(UnsafeOperation, match=f"no longer the file decided on .*waits in holding at {held}"):
        fsops.hold_unreferenced(f, **facts, run=7, resumed=True)
    assert f.read_bytes() == b"another" and Path(held).read_bytes() == PRECIOUS


def test_a_file_swapped_in_as_a_killed_hold_renamed_is_named_when_its_put_back_meets_a_file(tmp_path, monkeypatch):
    _root, f, facts, held = _hold_killed_after_a_swap(tmp_path, monkeypatch)
    real = fsops._put_back

    def taken_first(*a):
        write(f, b"another")  # a file made at the name between the resume's look and its put-back
        return real(*a)

    monkeypatch.setattr(fsops, "_put_back", taken_first)
    with pytest.raises(UnsafeOperation, match=f"that file is in holding, at {held} \\(its name is taken again\\)"):
        fsops.hold_unreferenced(f, **facts, run=7, resumed=True)
    assert f.read_bytes() == b"another" and Path(held).read_bytes() == PRECIOUS


def _swapped_in_put_back_killed(tmp_path, monkeypatch):
    """The put-back without renameat2 of a file swapped in as a hold renamed is a link, then the
    unlink of the held name: killed between, that file has two links, its name and the held one."""
    root, f, facts, held = _hold_killed_after_a_swap(tmp_path, monkeypatch)
    _no_renameat2(monkeypatch)
    real_unlink = os.unlink

    def die(p, *, dir_fd=None):
        if os.fsencode(p) == b"x.bin":
            raise KeyboardInterrupt
        return real_unlink(p, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", die)
    with pytest.raises(KeyboardInterrupt):
        fsops.hold_unreferenced(f, **facts, run=7, resumed=True)
    monkeypatch.undo()
    assert os.lstat(f).st_nlink == 2 and os.path.samefile(f, held)
    return root, f, facts, held


def test_a_swapped_in_files_put_back_killed_without_renameat2_leaves_no_link_in_holding(tmp_path, monkeypatch):
    """Killed between the put-back's link and unlink, the next resume takes that spare link (else
    the file kept a link nothing names or purges)."""
    _root, f, facts, held = _swapped_in_put_back_killed(tmp_path, monkeypatch)
    with pytest.raises(UnsafeOperation, match="no longer the file decided on"):
        fsops.hold_unreferenced(f, **facts, run=7, resumed=True)
    assert f.read_bytes() == PRECIOUS and os.lstat(f).st_nlink == 1 and not os.path.lexists(held)


def test_a_swapped_in_files_spare_in_holding_is_kept_when_its_name_goes_before_the_drop(tmp_path, monkeypatch):
    """R63: the resume saw the name link that file (two links), then took the held name as a spare
    on the strength of that look alone: the name deleted in between (qBittorrent removing the
    torrent's files) left the held name the last link, and it was unlinked. Now it must still be a
    second link, the name looked at again: else it stays in holding, named in the refusal."""
    _root, f, facts, held = _swapped_in_put_back_killed(tmp_path, monkeypatch)
    real = fsops._open_holding

    def name_goes_first(*a, **k):
        os.unlink(f)  # the name removed after the resume's look at it
        return real(*a, **k)

    monkeypatch.setattr(fsops, "_open_holding", name_goes_first)
    with pytest.raises(
        UnsafeOperation, match=f"no longer the file decided on .*in holding, at {held}, may be its last"
    ):
        fsops.hold_unreferenced(f, **facts, run=7, resumed=True)
    assert Path(held).read_bytes() == PRECIOUS and os.lstat(held).st_nlink == 1  # the data's last link


def _grace_delete_killed_after_a_swap(fs2, monkeypatch):  # noqa: F811
    """A grace-period delete of ``a`` killed right after its rename into holding, a completed
    download renamed over ``a`` just before: (the seeding root, ``a``, the delete's arguments)."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, _b, _keep, kw = _doomed(fs2)
    intruder = write(seed_s / "A/f.bin.!qB", PRECIOUS)
    _completed_then_killed(monkeypatch, "f.bin", intruder)
    with pytest.raises(KeyboardInterrupt):
        fsops.safe_unlink(a, **kw, hold_run=5)
    monkeypatch.undo()
    return seed_s, a, kw


def test_a_file_swapped_in_as_a_killed_grace_delete_held_is_put_back(fs2, monkeypatch):  # noqa: F811
    """The grace-period delete (``safe_unlink(hold_run=)``) holds by the same rename: the same kill."""
    seed_s, a, kw = _grace_delete_killed_after_a_swap(fs2, monkeypatch)
    with pytest.raises(UnsafeOperation, match="refusing to delete .*that file is put back"):
        fsops.safe_unlink(a, **kw, hold_run=5)
    assert a.read_bytes() == PRECIOUS and not os.path.lexists(fsops.holding_path(a, seed_s, 5))


def test_a_file_swapped_in_as_a_killed_grace_delete_held_is_named_when_its_name_is_taken(fs2, monkeypatch):  # noqa: F811
    seed_s, a, kw = _grace_delete_killed_after_a_swap(fs2, monkeypatch)
    held = fsops.holding_path(a, seed_s, 5)
    write(a, b"another")
    with pytest.raises(UnsafeOperation, match=f"refusing to delete .*waits in holding at {held}"):
        fsops.safe_unlink(a, **kw, hold_run=5)
    assert a.read_bytes() == b"another" and Path(held).read_bytes() == PRECIOUS


def test_a_swapped_in_files_spare_a_grace_delete_left_is_kept_when_its_name_goes_before_the_drop(fs2, monkeypatch):  # noqa: F811
    """R63, the grace-period delete's side: its put-back of the swapped-in file killed between link
    and unlink, then the file's name deleted after the retry's look: the held name, its last link,
    stays and is named."""
    seed_s, a, kw = _grace_delete_killed_after_a_swap(fs2, monkeypatch)
    held = fsops.holding_path(a, seed_s, 5)
    _no_renameat2(monkeypatch)
    real_unlink = os.unlink

    def die(p, *, dir_fd=None):
        if os.fsencode(p) == a.name.encode():
            raise KeyboardInterrupt
        return real_unlink(p, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", die)
    with pytest.raises(KeyboardInterrupt):
        fsops.safe_unlink(a, **kw, hold_run=5)
    monkeypatch.undo()
    assert os.lstat(a).st_nlink == 2 and os.path.samefile(a, held)
    real = fsops._open_holding

    def name_goes_first(*args, **k):
        os.unlink(a)  # the name removed after the retry's look at it
        return real(*args, **k)

    monkeypatch.setattr(fsops, "_open_holding", name_goes_first)
    with pytest.raises(UnsafeOperation, match=f"no longer the planned file .*in holding, at {held}, may be its last"):
        fsops.safe_unlink(a, **kw, hold_run=5)
    assert Path(held).read_bytes() == PRECIOUS and os.lstat(held).st_nlink == 1


def test_a_file_swapped_in_as_a_killed_view_removal_renamed_is_put_back(tmp_path, monkeypatch):
    """R20 F1b: the retry saw no view at its drop name and said ``absent``: the completed download
    stayed under the drop name, which no scan lists."""
    _root, src, view, kw = _view(tmp_path)
    intruder = write(tmp_path / "seed/incomplete/view.bin.!qB", PRECIOUS)
    _completed_then_killed(monkeypatch, "view.bin", intruder)
    with pytest.raises(KeyboardInterrupt):
        fsops.remove_leftover_view(view, **kw)
    monkeypatch.undo()
    with pytest.raises(ViewReleased, match="no longer the view"):
        fsops.remove_leftover_view(view, **kw)
    assert os.listdir(view.parent) == ["view.bin"] and view.read_bytes() == PRECIOUS
    assert src.read_bytes() == b"s" * 50


def test_a_file_swapped_in_as_a_killed_delete_renamed_is_put_back(fs2, monkeypatch):  # noqa: F811
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, b, _keep, kw = _doomed(fs2)
    intruder = write(seed_s / "A/f.bin.!qB", PRECIOUS)
    _completed_then_killed(monkeypatch, "f.bin", intruder)
    with pytest.raises(KeyboardInterrupt):
        fsops.safe_unlink(a, **kw)
    monkeypatch.undo()
    with pytest.raises(UnsafeOperation, match="no longer the planned file"):
        fsops.safe_unlink(a, **kw)
    assert os.listdir(a.parent) == ["f.bin"] and a.read_bytes() == PRECIOUS
    assert os.lstat(b).st_ino == kw["ino"]


def test_a_group_stopping_for_good_puts_back_a_file_swapped_in_as_its_delete_was_killed(fs2, monkeypatch):  # noqa: F811
    """The executor's ``undo_drop`` (no retry of that delete): it said nothing was there."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, _b, _keep, kw = _doomed(fs2)
    intruder = write(seed_s / "A/f.bin.!qB", PRECIOUS)
    _completed_then_killed(monkeypatch, "f.bin", intruder)
    with pytest.raises(KeyboardInterrupt):
        fsops.safe_unlink(a, **kw)
    monkeypatch.undo()
    assert fsops.undo_drop(a, ino=kw["ino"], seeding_roots=kw["seeding_roots"])
    assert os.listdir(a.parent) == ["f.bin"] and a.read_bytes() == PRECIOUS


def test_a_file_swapped_in_as_a_killed_unrecorded_link_removal_renamed_is_put_back(tmp_path, monkeypatch):
    src, link, kw = _unrecorded(tmp_path)
    intruder = write(tmp_path / "seed/T/f.bin.!qB", PRECIOUS)
    _completed_then_killed(monkeypatch, "f.bin", intruder)
    with pytest.raises(KeyboardInterrupt):
        fsops.remove_unrecorded_link(link, src, **kw)
    monkeypatch.undo()
    with pytest.raises(ViewReleased, match="not a link of"):
        fsops.remove_unrecorded_link(link, src, **kw)
    assert os.listdir(link.parent) == ["f.bin"] and link.read_bytes() == PRECIOUS
    assert os.stat(src).st_nlink == 1  # the repair's link itself is gone (qBittorrent's rename took it)


def test_a_delete_retried_after_a_killed_put_back_without_renameat2_finishes(fs2, monkeypatch):  # noqa: F811
    """R20 F2: the put-back (link, then unlink of the drop name) killed between the two left a spare
    link of the planned inode; every retry refused "3 links but only 2 are known", for good."""
    _no_renameat2(monkeypatch)
    a, b, _keep, kw = _doomed(fs2)
    _killed_at_the_drop(monkeypatch, lambda: fsops.safe_unlink(a, **kw))
    _no_renameat2(monkeypatch)
    _killed_at_the_drop(monkeypatch, lambda: fsops.safe_unlink(a, **kw))  # the put-back's link made
    assert len(os.listdir(a.parent)) == 2 and os.lstat(a).st_nlink == 3
    res = fsops.safe_unlink(a, **kw)
    assert res["status"] == "unlinked" and res["nlink_before"] == 2
    assert os.listdir(a.parent) == [] and os.lstat(b).st_nlink == 1
