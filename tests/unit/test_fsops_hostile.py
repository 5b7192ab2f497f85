"""Issue 9, findings 1-4: what a hostile or careless writer of the seeding tree can plant.

qbhook runs as root over folders qBittorrent's user can write. Each test plants what
that user could (a symlink, a swapped folder, a folder with qbhook's name) and proves
nothing outside the configured roots is touched, no last copy is lost, and the
operation refuses with a reason instead of being redirected.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from qbhook.errors import LastCopyKept, UnsafeOperation
from qbhook.move import fsops
from tests.helpers import write
from tests.unit import test_fsops as _fx
from tests.unit.test_executor import FILES, H1, H2, _make_world, demote_plan
from tests.unit.test_fsops import b3, dead_pid, held_link, old

# pytest fixtures shared with test_fsops (two tmpfs pools with seeding roots and a catalog)
tmpfs, fs2 = _fx.tmpfs, _fx.fs2


def _two_days_old(path) -> None:
    for dirpath, dirs, files in os.walk(path):
        for n in dirs + files:
            old(os.path.join(dirpath, n), 2 * 86400)
    old(path, 2 * 86400)


def _grace(w, seconds: float):
    w.cfg = replace(w.cfg, policy=replace(w.cfg.policy, grace_period=seconds))
    return w


def _primary_links_intact(w) -> None:
    for h in (H1, H2):
        for rel, data in FILES:
            p = os.path.join(w.save(h, "stash"), rel)
            assert Path(p).read_bytes() == data, p


# --------------------------------------------------------------------------- finding 1: holding


def test_holding_symlinked_to_an_outside_folder_is_refused_and_outside_untouched(tmpfs, tmp_path):
    """Finding 1: <seeding root>/.qbhook-holding -> outside folder; an ordinary demote with a grace period
    must neither hold links there nor purge the outside folder's old content."""
    w = _grace(_make_world(tmpfs, tmp_path, "h"), 3600.0)
    outside = w.stash / "private"  # same filesystem, outside every seeding root
    write(outside / "1" / "secret.txt", b"not qbhook's")
    write(outside / "old-run" / "photo.jpg", b"family photo")
    _two_days_old(outside)
    os.symlink(outside, os.path.join(w.seed_s, fsops.HOLDING_DIR))

    summary = w.executor().apply(demote_plan(w))

    assert (outside / "1" / "secret.txt").read_bytes() == b"not qbhook's"
    assert (outside / "old-run" / "photo.jpg").read_bytes() == b"family photo"
    assert sorted(os.listdir(outside)) == ["1", "old-run"]  # nothing held in there either
    assert summary.status != "done"
    assert "symlink" in (summary.groups[0].reason or "")
    w.cat.close()


def test_holding_purge_removes_only_what_the_journal_held(tmpfs, tmp_path):
    """Finding 1: a real folder named .qbhook-holding holding another torrent's data is not purged;
    the links this run held are, once the grace period is over."""
    w = _grace(_make_world(tmpfs, tmp_path, "j"), 0.001)
    foreign = write(os.path.join(w.seed_s, fsops.HOLDING_DIR, "99", "Other.Show", "e01.mkv"), b"another torrent")
    _two_days_old(os.path.join(w.seed_s, fsops.HOLDING_DIR))

    summary = w.executor().apply(demote_plan(w))
    assert summary.status == "done", summary.groups[0].reason

    assert Path(foreign).read_bytes() == b"another torrent"
    run_dir = os.path.join(w.seed_s, fsops.HOLDING_DIR, str(summary.run_id))
    assert not os.path.lexists(run_dir)  # our held links went, with their folders
    assert w.journal.held_links() == []  # ...and the journal says so
    for h in (H1, H2):
        for rel, data in FILES:
            assert Path(w.save(h, "pool"), rel).read_bytes() == data


def test_holding_folder_owned_by_someone_else_is_refused(fs2):
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, _b, _keep, kw = _doomed(fs2)
    hold = seed_s / fsops.HOLDING_DIR
    hold.mkdir(mode=0o777)
    os.chown(hold, 1234, 1234)
    with pytest.raises(UnsafeOperation, match="owned by uid 1234"):
        fsops.safe_unlink(a, **kw, hold_run=5)
    assert a.exists() and os.listdir(hold) == []


def test_held_entry_replaced_by_another_file_is_left_alone(fs2):
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, _b, _keep, kw = _doomed(fs2)
    r = fsops.safe_unlink(a, **kw, hold_run=5)
    held = fsops.HeldLink(r["held_at"], time.time() - 10, ino=kw["ino"])
    os.unlink(r["held_at"])
    write(r["held_at"], b"something else")  # root put another file there
    with pytest.raises(UnsafeOperation, match="not the file qbhook held"):
        fsops.purge_holding([seed_s], 1, held=[held])
    assert Path(r["held_at"]).read_bytes() == b"something else"


@pytest.mark.parametrize("swapped_in", [False, True], ids=["renamed-away", "another-in-its-place"])
def test_held_links_in_a_holding_folder_renamed_away_are_reported_never_marked_purged(fs2, swapped_in):
    """.qbhook-holding is root's 0700, but it sits in a folder qBittorrent writes, and a rename there
    needs no permission on the folder renamed. Its held links are then out of reach: the purge
    must not call them purged (they would leak for good, reported as gone) but name the folder."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, _b, _keep, kw = _doomed(fs2)
    r = fsops.safe_unlink(a, **kw, hold_run=5)
    held = held_link(r, time.time() - 10, kw)
    hold = seed_s / fsops.HOLDING_DIR
    os.rename(hold, seed_s / "renamed")  # qBittorrent's user, in its own folder
    if swapped_in:
        hold.mkdir(mode=0o700)  # another folder of qbhook's own kind (its staging, renamed) in its place
    purged, gone = [], []
    with pytest.raises(UnsafeOperation, match=f"holding folder gone or replaced: {hold}, 1 held link"):
        fsops.purge_holding([seed_s], 1, held=[held], on_purged=purged.append, on_gone=gone.append)
    assert purged == [] and [e.links for e in gone] == [1]
    assert os.stat(seed_s / "renamed/5/A/f.bin").st_ino == kw["ino"]  # kept, journaled still


def test_a_hidden_link_whose_holding_folder_was_renamed_away_is_reported_not_absent(fs2):
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    f = write(seed_s / "Show/e01.mkv", b"x" * 1000)
    roots = (str(seed_s),)
    res = fsops.hide_during_move(str(f), roots=roots, run=7)
    assert res["status"] == "hidden" and not f.exists()
    os.rename(seed_s / fsops.HOLDING_DIR, seed_s / "renamed")
    with pytest.raises(UnsafeOperation, match="holding folder gone or replaced"):
        fsops.unhide_after_move(str(f), roots=roots, run=7, holding=res["holding"])
    (seed_s / fsops.HOLDING_DIR).mkdir(mode=0o700)
    with pytest.raises(UnsafeOperation, match="another folder stands in its place"):
        fsops.unhide_after_move(str(f), roots=roots, run=7, holding=res["holding"])
    assert not f.exists() and (seed_s / "renamed/7-moving/Show/e01.mkv").exists()


def test_a_put_back_refused_by_its_folder_walk_closes_the_pin_it_took(fs2, tmp_path):
    """R13-2 (/tmp/r13/repro/leak_unhide.py): the held inode was pinned before the walk to the
    folder to put it back into; a walk that refused (a symlink where the folder is made again)
    left the pin open, one descriptor per failed put-back for the life of serve."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    f = write(seed_s / "Show/e01.mkv", b"x" * 1000)
    roots = (str(seed_s),)
    assert fsops.hide_during_move(str(f), roots=roots, run=7)["status"] == "hidden"
    (seed_s / "Show").rmdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", seed_s / "Show")  # a writer's symlink where the folder goes
    carry = {"row": 1, "stat": [0, 0, 0, 0]}  # a hash to carry: the put-back pins the held inode
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(UnsafeOperation, match="is a symlink"):
            fsops.unhide_after_move(str(f), roots=roots, run=7, carry=carry)
    assert len(os.listdir("/proc/self/fd")) == before
    assert not os.listdir(tmp_path / "elsewhere")


def test_the_journal_keeps_each_held_links_holding_folder_for_the_purge(tmpfs, tmp_path):
    """The identity travels from the hold through the journal: a holding folder swapped for another
    after a run stops the purge of that run's held links, which stay journaled."""
    w = _grace(_make_world(tmpfs, tmp_path, "j"), 3600)
    summary = w.executor().apply(demote_plan(w))
    assert summary.status == "done", summary.groups[0].reason
    held = w.journal.held_links()
    assert held and all(h.holding is not None for h in held)
    hold = os.path.join(w.seed_s, fsops.HOLDING_DIR)
    os.rename(hold, os.path.join(w.seed_s, "renamed"))
    os.mkdir(hold, 0o700)
    with pytest.raises(UnsafeOperation, match=f"{len(held)} held link"):
        fsops.purge_holding([w.seed_s], 0, held=held, on_purged=lambda h: w.journal.mark_purged(h.key))
    assert len(w.journal.held_links()) == len(held)
    w.cat.close()


# --------------------------------------------------------------------------- finding 2: check-then-unlink


def _doomed(fs2, data=b"payload" * 100):
    _stash, _pool, seed_s, seed_p, cat = fs2
    a = write(seed_s / "A/f.bin", data)
    b = seed_s / "cross-seed/B/f.bin"
    b.parent.mkdir(parents=True)
    os.link(a, b)
    keep = write(seed_p / "A/f.bin", data)
    st = os.lstat(a)
    kw = {
        "fsid": cat.fsid(cat.fs_for_path(a)),
        "ino": st.st_ino,
        "size": len(data),
        "blake3_hex": b3(data),
        "keep_path": str(keep),
        "keep_blake3": b3(data),
        "seeding_links": [str(a), str(b)],
        "seeding_roots": [seed_s, seed_p],
        "catalog": cat,
    }
    return a, b, keep, kw


def test_parent_swapped_for_a_symlink_after_the_checks_does_not_redirect_the_unlink(fs2, monkeypatch):
    """Finding 2, made deterministic: right after the doomed file's content check, its folder is
    swapped for a symlink to an outside folder holding that very inode (same dev, ino, nlink).
    A path-string unlink would now remove the outside name; the dirfd unlink cannot reach it."""
    stash, _pool, seed_s, _seed_p, _cat = fs2
    a, _b, keep, kw = _doomed(fs2)
    outside = stash / "media"
    outside.mkdir()
    real_digest = fsops._content_digest
    doomed = os.lstat(a)
    swapped = []

    def digest_then_swap(*args, **kwargs):
        out = real_digest(*args, **kwargs)
        st = next(x for x in args if isinstance(x, os.stat_result))
        if (st.st_dev, st.st_ino) == (doomed.st_dev, doomed.st_ino) and not swapped:
            os.rename(a, outside / "f.bin")  # same inode, same link count
            os.rename(a.parent, seed_s / "A.moved")
            os.symlink(outside, a.parent)
            swapped.append(True)
        return out

    monkeypatch.setattr(fsops, "_content_digest", digest_then_swap)

    res = fsops.safe_unlink(a, **kw)

    assert swapped
    assert (outside / "f.bin").read_bytes() == keep.read_bytes()  # the outside name survived
    assert res["status"] == "absent"  # the verified folder no longer has it


def test_delete_through_a_symlinked_folder_is_refused_naming_it(fs2):
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, _b, _keep, kw = _doomed(fs2)
    os.rename(seed_s / "A", seed_s / "A.real")
    os.symlink(seed_s / "A.real", seed_s / "A")  # even pointing inside the root
    with pytest.raises(UnsafeOperation, match=r"A is a symlink"):
        fsops.safe_unlink(a, **kw)
    assert (seed_s / "A.real/f.bin").exists()


def test_lexical_tricks_are_refused(fs2):
    stash, _pool, seed_s, seed_p, _cat = fs2
    a, _b, _keep, kw = _doomed(fs2)
    with pytest.raises(UnsafeOperation, match=r"'\.\.'"):
        fsops.safe_unlink(f"{seed_s}/A/../A/f.bin", **kw)
    with pytest.raises(UnsafeOperation, match=r"'\.\.'"):
        fsops.link_into(a, f"{seed_p}/../seed2/f.bin", roots=[seed_s, seed_p])
    with pytest.raises(UnsafeOperation, match="not inside a configured root"):
        fsops.make_empty(stash / "elsewhere.txt", roots=[seed_s, seed_p])
    assert not (stash / "elsewhere.txt").exists() and a.exists()


@pytest.mark.parametrize("own", [fsops.HOLDING_DIR, fsops.STAGING_DIR])
def test_a_view_file_named_into_qbhooks_own_folders_is_refused(fs2, own):
    # A review of repair: a torrent may name its file ".qbhook-holding/<run>/x"; the link, the
    # empty file or the copy of its view wrote inside root's 0700 holding (or the staging).
    _stash, _pool, seed_s, seed_p, cat = fs2
    src = write(Path(seed_s) / "T/f.bin", b"data")
    roots = [seed_s, seed_p]
    for dst in (f"{seed_s}/{own}/7/x.bin", f"{seed_s}/Show/{own}/x.bin"):
        with pytest.raises(UnsafeOperation, match="inside one of qbhook's own folders"):
            fsops.link_into(src, dst, roots=roots, size=4)
        with pytest.raises(UnsafeOperation, match="inside one of qbhook's own folders"):
            fsops.make_empty(dst, roots=roots)
        with pytest.raises(UnsafeOperation, match="inside one of qbhook's own folders"):
            fsops.copy_verified(src, dst, b3(b"data"), 4, roots=roots, catalog=cat)
        assert not os.path.lexists(dst)


# --------------------------------------------------------------------------- finding 3: views


def test_view_through_a_symlinked_folder_in_the_cold_seeding_root_is_refused(fs2, tmpfs):
    _stash, _pool, seed_s, seed_p, _cat = fs2
    elsewhere = tmpfs("elsewhere")
    src = write(seed_p / "A/f.bin", b"data")
    os.symlink(elsewhere, seed_p / "cross-seed")
    with pytest.raises(UnsafeOperation, match="cross-seed is a symlink"):
        fsops.link_into(src, seed_p / "cross-seed/B/f.bin", roots=[seed_s, seed_p])
    with pytest.raises(UnsafeOperation, match="cross-seed is a symlink"):
        fsops.copy_verified(
            write(seed_s / "f.bin", b"data"), seed_p / "cross-seed/C/f.bin", b3(b"data"), 4, roots=[seed_s, seed_p]
        )
    with pytest.raises(UnsafeOperation, match="cross-seed is a symlink"):
        fsops.make_empty(seed_p / "cross-seed/B/e.txt", roots=[seed_s, seed_p])
    with pytest.raises(UnsafeOperation, match="cross-seed is a symlink"):
        fsops.verify_file(seed_p / "cross-seed/B/f.bin", 4, b3(b"data"), roots=[seed_s, seed_p])
    assert os.listdir(elsewhere) == []


def test_demote_into_symlinked_view_folders_keeps_the_primary_links(tmpfs, tmp_path):
    """Finding 3 through the executor: the views' folder in the cold seeding root leads, by a symlink, to a
    third filesystem. Before, the demote reported done, deleted both primary links and left the only copy
    outside both pools; now the first write into the symlinked folder refuses."""
    w = _make_world(tmpfs, tmp_path, "v")
    elsewhere = tmpfs("elsewhere")
    # The views go to <cold seeding root>/movies/..., and "movies" leads to the third filesystem.
    # (Two levels above the files, so a same-filesystem check of staging vs. its folder, both
    # resolved through the link, cannot notice.)
    stash_save = w.save
    w.save = lambda h, pool: (
        stash_save(h, pool)
        if pool == "stash"
        else os.path.join(w.seed_p, "movies", *(["cross-seed"] if h == H2 else []))
    )
    os.symlink(elsewhere, os.path.join(w.seed_p, "movies"))

    summary = w.executor().apply(demote_plan(w))

    assert summary.status != "done"
    assert "symlink" in (summary.groups[0].reason or "")
    _primary_links_intact(w)
    assert os.listdir(elsewhere) == []
    w.cat.close()


# --------------------------------------------------------------------------- finding 4: staging


def test_staging_symlinked_to_another_filesystem_is_refused_and_its_files_kept(fs2, tmpfs):
    _stash, _pool, seed_s, seed_p, _cat = fs2
    other_fs = tmpfs("other")
    victim = write(other_fs / f"{dead_pid()}.a.bin", b"someone's file that looks like stale staging")
    src = write(seed_s / "a.bin", b"abc")
    (seed_p / "T").mkdir()
    os.symlink(other_fs, seed_p / "T" / fsops.STAGING_DIR)
    with pytest.raises(UnsafeOperation, match=r"\.qbhook-staging is a symlink"):
        fsops.copy_verified(src, seed_p / "T/a.bin", b3(b"abc"), 3, roots=[seed_s, seed_p])
    assert victim.read_bytes() == b"someone's file that looks like stale staging"
    assert not (seed_p / "T/a.bin").exists()


def test_staging_owned_by_someone_else_is_refused(fs2):
    _stash, _pool, seed_s, seed_p, _cat = fs2
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    src = write(seed_s / "a.bin", b"abc")
    staging = seed_p / "T" / fsops.STAGING_DIR
    staging.mkdir(parents=True, mode=0o777)
    os.chown(staging, 1234, 1234)
    planted = write(staging / f"{dead_pid()}.a.bin", b"planted")
    with pytest.raises(UnsafeOperation, match="owned by uid 1234"):
        fsops.copy_verified(src, seed_p / "T/a.bin", b3(b"abc"), 3, roots=[seed_s, seed_p])
    assert planted.read_bytes() == b"planted"


def test_own_folders_are_made_0700_and_go_away(fs2):
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, _b, _keep, kw = _doomed(fs2)
    r = fsops.safe_unlink(a, **kw, hold_run=3)
    for d in (seed_s / fsops.HOLDING_DIR, seed_s / fsops.HOLDING_DIR / "3", seed_s / fsops.HOLDING_DIR / "3/A"):
        st = os.lstat(d)
        assert (st.st_mode & 0o7777, st.st_uid) == (0o700, os.geteuid()), d
    removed = fsops.purge_holding([seed_s], 1, held=[held_link(r, time.time() - 5, kw)])
    assert removed == [str(seed_s / fsops.HOLDING_DIR / "3")] and not (seed_s / fsops.HOLDING_DIR).exists()


class _Killed(BaseException):
    """A SIGKILL at that point: nothing after it runs, no handler sees it."""


def test_a_purge_killed_before_its_mark_leaves_the_entry_purgeable_not_holding_gone(fs2):
    """The last entry's purge empties .qbhook-holding; killed before the journal marked it, the
    entry must not read as "holding folder gone" to every later purge: the mark comes before the
    rmdirs, so the folder it was held in is still there, and the next purge finds it gone from it."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, _b, _keep, kw = _doomed(fs2)
    held = held_link(fsops.safe_unlink(a, **kw, hold_run=3), time.time() - 5, kw)

    def killed(_h):
        raise _Killed

    with pytest.raises(_Killed):
        fsops.purge_holding([seed_s], 1, held=[held], on_purged=killed)
    assert not os.path.lexists(held.path)  # unlinked, not yet marked
    purged = []
    fsops.purge_holding([seed_s], 1, held=[held], on_purged=purged.append)
    assert purged == [held] and not (seed_s / fsops.HOLDING_DIR).exists()


def test_a_hold_repeated_after_a_crash_still_reports_the_held_link(fs2):
    """A crash between the hold and the journal's 'done' leaves the step 'intended'; its re-run finds the
    path gone. It must still say where the link is held, or the journal never learns it and the held link
    (purged only from journal records now) would stay forever."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, _b, _keep, kw = _doomed(fs2)
    first = fsops.safe_unlink(a, **kw, hold_run=4)
    again = fsops.safe_unlink(a, **kw, hold_run=4)
    assert again["status"] == "held" and again["held_at"] == first["held_at"]
    assert fsops.safe_unlink(a, **kw)["status"] == "absent"  # without a hold: just gone
    removed = fsops.purge_holding([seed_s], 1, held=[held_link(again, 0.0, kw)])
    assert removed == [str(seed_s / fsops.HOLDING_DIR / "4")]


def test_a_fifo_in_place_of_a_file_is_refused_without_hanging(fs2):
    """A FIFO where a file should be (planted, or swapped in after the lstat) must not block an open forever."""
    _stash, _pool, seed_s, seed_p, _cat = fs2
    fifo = seed_s / "T/a.bin"
    fifo.parent.mkdir()
    os.mkfifo(fifo)

    def hung(*_a):
        raise TimeoutError("the open blocked on a FIFO")

    old_handler = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        with pytest.raises(UnsafeOperation, match="not a regular file"):
            fsops.copy_verified(fifo, seed_p / "T/a.bin", b3(b"abc"), 3, roots=[seed_s, seed_p])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_handler)
    assert not (seed_p / "T/a.bin").exists()


# --------------------------------------------------------------------------- a name swapped right after a link


def _swap_after_link(monkeypatch, dst_name: str, intruder) -> list:
    """Make the next os.link whose new name is ``dst_name`` succeed, then rename ``intruder`` over that
    name at once: what a writer of the folder can do between linkat and qbhook's next look."""
    real_link = os.link
    swapped = []

    def link_then_swap(src, dst, *args, **kwargs):
        real_link(src, dst, *args, **kwargs)
        if os.fsdecode(dst) == dst_name and not swapped:
            os.rename(intruder, os.path.join(f"/proc/self/fd/{kwargs['dst_dir_fd']}", dst_name))
            swapped.append(True)

    monkeypatch.setattr(os, "link", link_then_swap)
    return swapped


def test_link_into_refuses_a_name_swapped_right_after_the_link(fs2, monkeypatch):
    """Finding C: link_into said ``linked`` whatever the new name held after the link, and the executor
    then recorded (and carried a hash onto) the swapped-in file."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    src = write(seed_s / "A/f.bin", b"payload")
    intruder = write(seed_s / "B/g.bin", b"evil!!!")
    swapped = _swap_after_link(monkeypatch, "f.bin", intruder)
    with pytest.raises(UnsafeOperation, match="replaced right after qbhook linked it"):
        fsops.link_into(src, seed_s / "view/f.bin", roots=(seed_s,))
    assert swapped
    assert Path(seed_s / "view/f.bin").read_bytes() == b"evil!!!"  # left as the writer made it


def test_a_hold_of_an_entry_swapped_right_after_its_last_look_keeps_it_in_place(fs2, monkeypatch):
    """Finding C: the entry swapped between the last look and the link into holding. The hold used to
    link the swapped-in file into holding and unlink its only seeding name, journaling the planned inode.
    Then it left a stray link of the swapped-in file in holding; now (R8) the hold links the inode it
    pinned and checked, so the swapped-in file is never linked there."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, _b, _keep, kw = _doomed(fs2)
    intruder = write(seed_s / "C/g.bin", b"payload" * 100)  # same size and content: no other check objects
    real_last_look = fsops._same_inode_still

    def last_look_then_swap(parent, name, st, u):
        ok = real_last_look(parent, name, st, u)
        os.rename(intruder, a)
        return ok

    monkeypatch.setattr(fsops, "_same_inode_still", last_look_then_swap)
    with pytest.raises(UnsafeOperation, match="swapped"):
        fsops.safe_unlink(a, **kw, hold_run=5)
    assert os.lstat(a).st_ino != kw["ino"] and os.lstat(a).st_nlink == 1
    assert not os.path.lexists(fsops.holding_path(a, seed_s, 5))  # nothing linked into holding
    assert a.read_bytes() == b"payload" * 100  # the swapped-in file keeps its seeding name


# --------------------------------------------------------------------------- the purge of a last copy


@pytest.mark.parametrize("hashed", [True, False])
def test_purge_keeps_a_held_last_copy_whose_new_copy_went_in_the_grace_window(tmpfs, tmp_path, hashed):
    """Finding B, the exact sequence: a demote with a grace period holds the old links on the stash; in
    the grace window the user removes the torrent's files on the pool (the new copy); the next run's
    purge used to unlink the held links, the last copy of the data. Now it keeps them, journaled,
    says so, and purges them once the copy to keep verifies again."""
    w = _grace(_make_world(tmpfs, tmp_path, "b"), 3600.0)
    summary = w.executor().apply(demote_plan(w, hashed=hashed))
    assert summary.status == "done", summary.groups[0].reason
    held = w.journal.held_links()
    assert len(held) == 2 * len(FILES) and all(h.keep_path and (h.blake3_hex or not h.size) for h in held)
    lost = {}
    for h in (H1, H2):  # "remove torrent and files" of both torrents on the pool
        for rel, data in FILES:
            p = os.path.join(w.save(h, "pool"), rel)
            if os.path.exists(p):
                lost[p] = data
                os.unlink(p)

    w = _grace(w, 0.001)
    w.executor()._purge_holding()  # what the next run does after its groups

    # Of each inode's two held links (one per sibling torrent) the first goes (the other keeps the data),
    # the last stays; an empty file holds no data and goes.
    left = w.journal.held_links()
    assert sorted(h.ino for h in left) == sorted({h.ino for h in held if h.size})
    for h in left:
        assert os.path.exists(h.path), h.path
    # The user puts the pool copies back (same content): the purge verifies them and goes ahead.
    for p, data in lost.items():
        write(p, data)
    w.executor()._purge_holding()
    assert w.journal.held_links() == []
    assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))
    w.cat.close()


def test_purge_of_a_last_copy_whose_copy_changed_is_refused_and_reported(fs2):
    """Finding B at the fsops boundary: the copy to keep holds other bytes now; the last held link stays
    and the refusal is a LastCopyKept (what the executor notifies as needing a person)."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    a, b, keep, kw = _doomed(fs2)
    os.unlink(b)  # one link: the held name will be the last
    r = fsops.safe_unlink(a, **{**kw, "seeding_links": [str(a)]}, hold_run=6)
    keep.write_bytes(b"X" * len(keep.read_bytes()))
    with pytest.raises(LastCopyKept, match="last copy of its content"):
        fsops.purge_holding([seed_s], 1, held=[held_link(r, 0.0, kw)], catalog=kw["catalog"])
    assert Path(r["held_at"]).read_bytes() == b"payload" * 100


def test_purge_of_a_last_copy_leaves_no_descriptor_open(fs2):
    """R63: the proof that the copy to keep still verifies pins it (``_keep_holds_same_content``);
    the purge dropped that pin unclosed, a descriptor leaked per last copy purged (serve runs for
    weeks within a descriptor budget)."""
    _stash, _pool, seed_s, seed_p, _cat = fs2
    a, b, _keep, kw = _doomed(fs2)
    os.unlink(b)  # one link: the held name will be the last
    r = fsops.safe_unlink(a, **{**kw, "seeding_links": [str(a)]}, hold_run=6)
    before = sorted(os.listdir("/proc/self/fd"))
    fsops.purge_holding([seed_s], 1, held=[held_link(r, 0.0, kw)], catalog=kw["catalog"], keep_roots=(seed_p,))
    assert not os.path.lexists(r["held_at"])
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_purge_of_a_quarantined_orphan_needs_no_copy_to_keep(fs2):
    """Orphans are unreferenced data the user chose to reclaim: their last link goes without a second copy."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    o = write(seed_s / "old/o.bin", b"orphan")
    st = os.lstat(o)
    r = fsops.hold_unreferenced(
        o, ino=st.st_ino, size=st.st_size, max_nlink=1, mtime_ns=st.st_mtime_ns, roots=(seed_s,), run=8
    )
    h = fsops.HeldLink(r["held_at"], 0.0, st.st_ino, orphan=True)
    assert fsops.purge_holding([seed_s], 1, held=[h]) == [str(seed_s / fsops.HOLDING_DIR / "8")]
    assert not os.path.lexists(r["held_at"])


# --------------------------------------------------------------------------- a stale hash carried over an act


def test_a_hash_gone_stale_before_a_link_is_not_carried_over_it(tmpfs, tmp_path):
    """Finding A: a writer rewrites the fresh pool copy's bytes (same size) and sets its old mtime back
    before the link step; only its ctime tells. The link's carry-over used to look at size and mtime
    only and made the stale hash valid again for the new ctime: verify_view then passed on the cache,
    and the group deleted the stash originals, leaving only the rewritten bytes. The carry now needs
    the hash valid for the source's stat right before the link: verify_view reads, and refuses."""
    w = _make_world(tmpfs, tmp_path, "a")
    plan = demote_plan(w)
    rewritten = []

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "link" and not rewritten and os.path.getsize(step.src) > 1000:
            st = os.lstat(step.src)
            with open(step.src, "r+b") as f:
                f.write(b"\0" * 64)
            os.utime(step.src, ns=(st.st_atime_ns, st.st_mtime_ns))
            rewritten.append(step.src)

    summary = w.executor(hook=hook).apply(plan)

    assert rewritten
    assert summary.status != "done" and "different content" in (summary.groups[0].reason or "")
    _primary_links_intact(w)  # nothing deleted on the stash
    w.cat.close()


def test_a_converge_already_done_carries_no_hash_onto_a_path_looked_up_again(fs2):
    """Finding A, batch side: a path with no stat of the relink's own (``already``, or swapped) is
    recorded as seen, without the own-change carry that would make its stale hash valid again."""
    _stash, _pool, seed_s, _seed_p, cat = fs2
    g = write(seed_s / "G.bin", b"payload" * 100)
    cat.record_path(g, "stash")
    row = cat.inode_by_path(str(g))
    cat.store_hash(row.id, bytes.fromhex(b3(b"payload" * 100)), os.lstat(g))
    old = os.lstat(g)
    with open(g, "r+b") as f:
        f.write(b"EVIL")
    os.utime(g, ns=(old.st_atime_ns, old.st_mtime_ns))  # size and mtime as hashed, ctime moved
    cat.record_paths([(str(g), "stash")], stats={})
    assert cat.inode_by_path(str(g)).hash is None  # stale, and still known to be


def test_copy_refuses_a_name_swapped_right_after_the_copy_is_linked_in(fs2, monkeypatch):
    """Finding A: the copy's hash is cached against the stat the copy returns; a file renamed over the
    new name right after the link must not be that stat (it was: the executor lstat-ed by name)."""
    _stash, _pool, seed_s, seed_p, _cat = fs2
    data = b"payload" * 100
    src = write(seed_s / "A/f.bin", data)
    intruder = write(seed_p / "B/g.bin", b"X" * len(data))
    swapped = _swap_after_link(monkeypatch, "f.bin", intruder)
    with pytest.raises(UnsafeOperation, match="changed right after qbhook made it"):
        fsops.copy_verified(src, seed_p / "view/f.bin", b3(data), len(data), roots=(seed_s, seed_p))
    assert swapped


def test_a_copy_rewritten_while_its_folder_is_synced_gets_no_hash_for_the_new_bytes(fs2, monkeypatch):
    """The copy's stat was taken after the staging folder's fsync, which can wait on the disk: a
    writer that rewrote the new file then at the same size and put its mtime back got the copy's
    hash cached for the rewritten bytes. The stat is now taken right after qbhook's last act, so the
    writer's ctime leaves that hash stale."""
    _stash, _pool, seed_s, seed_p, cat = fs2
    data = b"payload" * 100
    src = write(seed_s / "A/f.bin", data)
    dst = seed_p / "view/f.bin"
    real_fsync = os.fsync
    rewritten = []

    def fsync_then_rewrite(fd):
        real_fsync(fd)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == fsops.STAGING_DIR and dst.exists():
            st = os.lstat(dst)
            time.sleep(0.05)  # past the clock tick of qbhook's own acts: the ctime moves
            dst.write_bytes(b"X" * len(data))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            rewritten.append(True)

    monkeypatch.setattr(os, "fsync", fsync_then_rewrite)
    res = fsops.copy_verified(src, dst, b3(data), len(data), roots=(seed_s, seed_p))
    assert rewritten
    cat.store_hash(cat.record_path(str(dst), "pool", st=res.after), bytes.fromhex(res["blake3"]), res.after)
    assert not _hash_valid_now(cat, dst)  # as the executor records it: never valid for the X bytes


def test_an_act_result_is_the_journaled_mapping_and_carries_the_stat_it_proved(fs2):
    _stash, _pool, seed_s, seed_p, _cat = fs2
    data = b"payload" * 100
    src = write(seed_s / "A/f.bin", data)
    res = fsops.copy_verified(src, seed_p / "view/f.bin", b3(data), len(data), roots=(seed_s, seed_p))
    assert res.status is fsops.ActStatus.COPIED
    assert dict(res) == {"status": "copied", "bytes_written": 700, "blake3": b3(data)}
    now = os.lstat(seed_p / "view/f.bin")
    assert (res.after.st_ino, res.after.st_ctime_ns) == (now.st_ino, now.st_ctime_ns)
    ln = fsops.link_into(src, seed_s / "B/f.bin", roots=(seed_s,))
    assert ln.status is fsops.ActStatus.LINKED and ln.after.st_ino == os.lstat(src).st_ino
    assert ln.carry is not None and ln.carry.covers(ln.after) and ln.carry.ino == ln.after.st_ino


def _hash_valid_now(cat, path) -> bool:
    row, st = cat.inode_by_path(str(path)), os.lstat(path)
    return row.hash is not None and (row.size, row.mtime_ns, row.ctime_ns) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )


def test_a_hidden_link_rewritten_through_another_link_gets_no_hash_carried_back(fs2):
    """Review finding 2: the hash carried over a hide/unhide was put back when inode, size and mtime
    matched. An inode with other links can be rewritten through them while one link is hidden, its
    mtime set back (rsync -t, a tagger): only its ctime tells, and the stale hash then backed the
    delete check. The carry now needs the held link's ctime as it was right after the hide."""
    stash, _pool, seed_s, _seed_p, cat = fs2
    data = b"payload" * 100
    g = write(seed_s / "Show" / "e01.mkv", data)
    lib = stash / "library-e01.mkv"
    os.link(g, lib)
    cat.record_path(g, "stash")
    cat.store_hash(cat.inode_by_path(str(g)).id, bytes.fromhex(b3(data)), os.lstat(g))
    roots = (str(seed_s),)

    # untouched while hidden: the hash comes back valid (no re-read at the delete)
    hidden = fsops.hide_during_move(str(g), roots=roots, run=1, catalog=cat)
    assert fsops.unhide_after_move(str(g), roots=roots, run=1, catalog=cat, carry=hidden["carry"])["status"] == (
        "restored"
    )
    assert _hash_valid_now(cat, g)

    hidden = fsops.hide_during_move(str(g), roots=roots, run=2, catalog=cat)
    old = os.lstat(lib)
    with open(lib, "r+b") as f:  # through the library's link, same size
        f.write(b"EVIL")
    os.utime(lib, ns=(old.st_atime_ns, old.st_mtime_ns))  # size and mtime as hashed, ctime moved
    fsops.unhide_after_move(str(g), roots=roots, run=2, catalog=cat, carry=hidden["carry"])
    assert g.read_bytes().startswith(b"EVIL") and not _hash_valid_now(cat, g)  # the next check reads it


@pytest.mark.parametrize("rewrite", [False, True], ids=["untouched", "rewritten-after-the-pin"])
def test_link_into_carries_a_hash_only_for_the_source_as_it_was_right_before_the_link(fs2, monkeypatch, rewrite):
    """R8 and R10 share one pin: link_into's source is pinned when it is checked (before a
    verify_source read, which can take minutes) and held until the link's ``after``. The carry's
    ``before`` must still be the source's stat right before the link (an fstat of that pin), not the
    pin's first one: bytes rewritten in between with size and mtime set back move only the ctime,
    and a hash valid for the first stat would be made valid for them."""
    _stash, _pool, seed_s, _seed_p, cat = fs2
    data = b"payload" * 100
    src = write(seed_s / "A/f.bin", data)
    old(src)
    cat.record_path(src, "stash")
    cat.store_hash(cat.inode_by_path(str(src)).id, bytes.fromhex(b3(data)), os.lstat(src))
    real_open_parent = fsops._open_parent

    def rewrite_then_open(*a, **k):  # the destination's folder: after the source's pin and checks
        if not k.get("create"):
            return real_open_parent(*a, **k)
        st = os.lstat(src)
        with open(src, "r+b") as f:
            f.write(b"EVIL")
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
        return real_open_parent(*a, **k)

    if rewrite:
        monkeypatch.setattr(fsops, "_open_parent", rewrite_then_open)
    act = fsops.link_into(src, seed_s / "B/f.bin", roots=(seed_s,), catalog=cat)
    monkeypatch.undo()
    assert act.status is fsops.ActStatus.LINKED
    cat.record_path(seed_s / "B/f.bin", "stash", st=act.after, carry=act.carry)
    assert _hash_valid_now(cat, seed_s / "B/f.bin") is not rewrite


def test_a_put_back_link_swapped_for_a_file_that_reused_its_inode_number_gets_no_hash(tmp_path, monkeypatch):
    """Review finding R10: a carry checked only equal (dev, ino). Right after the put-back's unlink
    of the held link, a writer of the seeding folder removes the restored name (the inode's last
    link: freed) and creates a file with the old size and mtime; ext4 hands it the freed inode
    number at once, and the old hash was stored for the new bytes. The put-back now pins the
    inode until its look, so no other file can get that number. On ext4 (tmp_path), not tmpfs:
    tmpfs never hands out a freed inode number again."""
    from qbhook.catalog.store import Catalog

    data = b"payload" * 100
    seed = tmp_path / "seed"
    g = write(seed / "Show" / "e01.mkv", data)
    old(g)
    cat = Catalog.open(tmp_path / "cat.sqlite")
    cat.record_path(g, "stash")
    cat.store_hash(cat.inode_by_path(str(g)).id, bytes.fromhex(b3(data)), os.lstat(g))
    roots = (str(seed),)
    hidden = fsops.hide_during_move(str(g), roots=roots, run=1, catalog=cat)
    real_unlink, swapped = os.unlink, []

    def unlink_then_swap(name, *, dir_fd=None):
        real_unlink(name, dir_fd=dir_fd)
        if dir_fd is not None and not swapped:  # the held link: now the writer, at the restored name
            st = os.lstat(g)
            real_unlink(g)
            g.write_bytes(b"X" * len(data))
            os.utime(g, ns=(st.st_atime_ns, st.st_mtime_ns))
            swapped.append(os.lstat(g).st_ino == st.st_ino)

    monkeypatch.setattr(os, "unlink", unlink_then_swap)
    fsops.unhide_after_move(str(g), roots=roots, run=1, catalog=cat, carry=hidden["carry"])
    monkeypatch.undo()
    assert swapped and g.read_bytes() == b"X" * len(data)
    assert not _hash_valid_now(cat, g)  # the next check reads it
    cat.close()


# --------------------------------------------------------------------------- a folder swapped while being made


def _around_mkdir(monkeypatch, name: bytes, before=None, after=None) -> list:
    """Run ``before``/``after`` around qbhook's next mkdir of ``name``: what a writer of the parent can do
    just before that mkdir or between it and qbhook's open of the new name."""
    real_mkdir = os.mkdir
    done = []

    def mkdir(path, mode=0o777, *, dir_fd=None):
        ours = os.fsencode(path) == name and not done
        if ours:
            done.append(True)
            if before:
                before()
        real_mkdir(path, mode, dir_fd=dir_fd)
        if ours and after:
            after()

    monkeypatch.setattr(os, "mkdir", mkdir)
    return done


def _roots_holding(seed_s: Path) -> Path:
    """qbhook's root-owned 0700 holding folder in the seeding root, with a held link in it."""
    hold = seed_s / fsops.HOLDING_DIR / "7" / "A"
    hold.mkdir(parents=True, mode=0o700)
    os.chmod(seed_s / fsops.HOLDING_DIR, 0o700)
    os.link(write(seed_s / "A/held.bin", b"held"), hold / "held.bin")
    return seed_s / fsops.HOLDING_DIR


def _as_writer(seed_s: Path) -> None:
    """The seeding root belongs to qBittorrent's user (uid 1000), as it does in real life."""
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    os.chown(seed_s, 1000, 1000)
    os.chmod(seed_s, 0o755)


@pytest.mark.parametrize("empty", [False, True], ids=["holding-in-use", "holding-emptied"])
def test_a_folder_swapped_in_right_after_mkdir_is_refused_never_chowned(fs2, monkeypatch, empty):
    """R8 #2: Dir.sub(create=True) made the folder, opened the name again and chowned/chmodded whatever it
    opened as the folder it made. A writer of the parent renamed qbhook's own root-owned 0700 holding
    folder into the new name in between: it became uid 1000, mode 0755, and the view file went into it.
    An emptied holding folder (after a purge) passes an emptiness check: the birth mode tells them apart."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    _as_writer(seed_s)
    src = write(seed_s / "A/f.bin", b"payload")
    holding = _roots_holding(seed_s)
    if empty:
        for d, dirs, files in os.walk(holding, topdown=False):
            for n in files:
                os.unlink(os.path.join(d, n))
            for n in dirs:
                os.rmdir(os.path.join(d, n))

    def swap():
        os.rmdir(seed_s / "V")
        os.rename(holding, seed_s / "V")

    done = _around_mkdir(monkeypatch, b"V", after=swap)
    with pytest.raises(UnsafeOperation, match="was swapped while being made"):
        fsops.link_into(src, seed_s / "V/f.bin", roots=(seed_s,))
    assert done
    st = os.stat(seed_s / "V")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (os.geteuid(), os.getegid(), 0o700)
    assert sorted(os.listdir(seed_s / "V")) == ([] if empty else ["7"])


def test_a_folder_that_appears_before_mkdir_is_used_as_found_never_chowned(fs2, monkeypatch):
    """The other side of R8 #2: the writer renames a root-owned folder into the name after qbhook saw it
    missing and before its mkdir (EEXIST). qbhook did not make it, so it must not own it like the parent."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    _as_writer(seed_s)
    src = write(seed_s / "A/f.bin", b"payload")
    holding = _roots_holding(seed_s)
    done = _around_mkdir(monkeypatch, b"V", before=lambda: os.rename(holding, seed_s / "V"))
    fsops.link_into(src, seed_s / "V/f.bin", roots=(seed_s,))
    assert done
    st = os.stat(seed_s / "V")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (os.geteuid(), os.getegid(), 0o700)


def test_a_new_folder_is_owned_and_moded_like_its_parent(fs2):
    """The proof does not stop the ordinary case: a folder qbhook makes is handed to the parent's owner."""
    _stash, _pool, seed_s, _seed_p, _cat = fs2
    _as_writer(seed_s)
    src = write(seed_s / "A/f.bin", b"payload")
    fsops.link_into(src, seed_s / "V/W/f.bin", roots=(seed_s,))
    for d in (seed_s / "V", seed_s / "V/W"):
        st = os.stat(d)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1000, 0o755), d
