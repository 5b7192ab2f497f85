"""R67: a hash is carried only onto a stat taken with no wait after the last check.

The catalog holds a hash valid while size, mtime and ctime are unchanged; where qbhook's own
link, rename or unlink moves a file's ctime it carries the hash onto the new stat when size and
mtime did not move. A rewrite that keeps the size and sets the mtime back (a tagger, ``touch -r``,
``rsync -t``) shows only in the ctime: if it lands between the last check and the stat the hash
is carried onto (while a folder is fsynced, the catalog commits, holding folders are walked),
the carried ctime absorbs it and the old hash passes for the new bytes. Each test makes that
writer act in such a wait and proves the hash is not valid for the rewritten file.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from qbhook.catalog.hashing import ensure_hashes
from qbhook.move import fsops
from tests.helpers import write
from tests.unit import test_fsops as _fx
from tests.unit.test_fsops import b3, old
from tests.unit.test_fsops_hostile import _hash_valid_now

# pytest fixtures shared with test_fsops (two tmpfs pools with seeding roots and a catalog)
tmpfs, fs2 = _fx.tmpfs, _fx.fs2


def _rewrite_keeping_size_and_mtime(path) -> None:
    """A tagger writing in place: same size, its mtime set back; only the ctime moves."""
    st = os.lstat(path)
    time.sleep(0.02)  # past the clock tick of qbhook's own acts: the ctime moves
    with open(path, "r+b") as f:
        f.write(b"TAGGED!!")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _library_copy_and_seeding_copy(fs2):
    """A library file and a seeding copy of it (separate inodes, both hashed) and the relink's
    target: (library file, seeding file, data, seeding root, library folder, catalog, target)."""
    stash, _pool, seed_s, _seed_p, cat = fs2
    data = os.urandom(8000)
    lib = stash / "lib"
    k, v = old(write(lib / "k.bin", data)), old(write(seed_s / "T/v.bin", data))
    cat.record_path(str(k), "lib")
    cat.record_path(str(v), "stash")
    ensure_hashes(cat, [cat.inode_by_path(str(p)).id for p in (k, v)], settle_seconds=0)
    r, kr = cat.inode_by_path(str(v)), cat.inode_by_path(str(k))
    target = fsops.RelinkTarget(r.fsid, r.ino, len(data), b3(data), kr.fsid, kr.ino, os.lstat(v).st_mtime_ns)
    return k, v, data, seed_s, lib, cat, target


def test_a_kept_file_rewritten_while_a_single_relink_syncs_its_folder_gets_no_hash_carried(fs2, monkeypatch):
    """R67-1: with ``sync_each`` (one relink, ``Executor._converge``) the kept name's stat was taken
    after the folder's fsync; a library file rewritten then got its old hash carried onto the new
    ctime, and a later relink onto it destroyed the last copy of the planned content."""
    k, v, data, seed_s, lib, cat, target = _library_copy_and_seeding_copy(fs2)
    real_fsync, done = os.fsync, []

    def fsync_then_rewrite(fd):
        real_fsync(fd)
        if not done:
            _rewrite_keeping_size_and_mtime(k)
            done.append(True)

    monkeypatch.setattr(os, "fsync", fsync_then_rewrite)
    with fsops.Relinker((seed_s,), (lib,), cat, sync_each=True) as rl:
        assert rl.relink(str(v), str(k), target)["status"] == "relinked"
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert done
    after = {p: x.after for p, x in rl.after.items()}
    carry = {p: x.carry for p, x in rl.after.items() if x.carry is not None}
    cat.record_paths([(p, "stash") for p in rl.after], stats=after, carry=carry)  # as Executor._record does
    assert k.read_bytes() != data and not _hash_valid_now(cat, k)  # the next check reads it


def _hidden_with_a_hash(fs2):
    """A seeding link with a library link beside it, its hash cached: (seeding link, library link, data)."""
    stash, _pool, seed_s, _seed_p, cat = fs2
    data = os.urandom(7000)
    g = old(write(seed_s / "Show/e01.mkv", data))
    lib = stash / "library-e01.mkv"
    os.link(g, lib)
    cat.record_path(str(g), "stash")
    cat.store_hash(cat.inode_by_path(str(g)).id, bytes.fromhex(b3(data)), os.lstat(g))
    return g, lib, data


def test_a_link_rewritten_while_its_hide_walks_to_holding_gets_no_hash_carried_back(fs2, monkeypatch):
    """R67-2: the hide checked the cached hash against the stat taken before it walked (and made)
    the holding folders; a rewrite through the library link then was in the held link's stat
    after the rename (the rename's check ignores ctime), and the put-back stored the old hash as
    valid for the new bytes. The pinned inode must be unchanged right before the rename."""
    _stash, _pool, seed_s, _seed_p, cat = fs2
    g, lib, data = _hidden_with_a_hash(fs2)
    real, done = fsops._open_holding_id, []

    def rewrite_then_open(*a, **k):
        if k.get("create"):
            _rewrite_keeping_size_and_mtime(lib)
            done.append(True)
        return real(*a, **k)

    monkeypatch.setattr(fsops, "_open_holding_id", rewrite_then_open)
    hidden = fsops.hide_during_move(str(g), roots=(str(seed_s),), run=1, catalog=cat)
    monkeypatch.setattr(fsops, "_open_holding_id", real)
    assert done and hidden["status"] == "hidden"
    back = fsops.unhide_after_move(str(g), roots=(str(seed_s),), run=1, catalog=cat, carry=hidden.get("carry"))
    assert back["status"] == "restored"
    assert g.read_bytes() != data and not _hash_valid_now(cat, g)  # the delete check reads it


def test_an_untouched_hidden_link_still_gets_its_hash_carried_back(fs2):
    """The carry the fix keeps: nothing but qbhook's renames touched the inode, no read again."""
    _stash, _pool, seed_s, _seed_p, cat = fs2
    g, _lib, _data = _hidden_with_a_hash(fs2)
    hidden = fsops.hide_during_move(str(g), roots=(str(seed_s),), run=1, catalog=cat)
    assert "carry" in hidden
    fsops.unhide_after_move(str(g), roots=(str(seed_s),), run=1, catalog=cat, carry=hidden["carry"])
    assert _hash_valid_now(cat, g)


def test_a_link_rewritten_while_its_put_back_walks_to_its_folder_gets_no_hash_carried_back(fs2, monkeypatch):
    """The put-back's side of R67-2: the held link's ctime was compared with the hide's before the
    walk (and mkdir) to the folder it goes back to; a rewrite through the library link then was
    in the put-back's stat. The pin is looked at again after that walk."""
    _stash, _pool, seed_s, _seed_p, cat = fs2
    g, lib, data = _hidden_with_a_hash(fs2)
    hidden = fsops.hide_during_move(str(g), roots=(str(seed_s),), run=1, catalog=cat)
    assert "carry" in hidden
    real, done = fsops._walk, []

    def rewrite_then_walk(*a, **k):
        if k.get("create") and not done:
            _rewrite_keeping_size_and_mtime(lib)
            done.append(True)
        return real(*a, **k)

    monkeypatch.setattr(fsops, "_walk", rewrite_then_walk)
    back = fsops.unhide_after_move(str(g), roots=(str(seed_s),), run=1, catalog=cat, carry=hidden["carry"])
    assert done and back["status"] == "restored"
    assert g.read_bytes() != data and not _hash_valid_now(cat, g)


def _demote_world_hashed(tmpfs, tmp_path, grace: float = 0):
    """test_executor's two cross-seeded torrents, hashes cached; (world, H1's movie link, H2's)."""
    from qbhook.catalog.scan import scan_pool
    from tests.unit.test_executor import FILES, _make_world

    w = _make_world(tmpfs, tmp_path)
    w.cfg = replace(w.cfg, policy=replace(w.cfg.policy, grace_period=grace))
    t = os.stat(w.seed_s).st_mtime_ns - 3600 * 10**9
    for rel, _data in FILES:
        os.utime(os.path.join(w.seed_s, rel), ns=(t, t))  # settled: its hash is cached
    scan_pool(w.cat, w.cfg.primary, w.cfg.scan)
    ensure_hashes(w.cat, [r[0] for r in w.cat.conn.execute("SELECT id FROM inodes")], settle_seconds=60)
    return w, os.path.join(w.seed_s, FILES[0][0]), os.path.join(w.seed_s, "cross-seed", FILES[0][0])


def _cross_seed_kept(w, summary, cross) -> None:
    """H2's delete read its link, saw other bytes than were copied, and kept it."""
    assert summary.status != "done" and "content changed" in (summary.groups[0].reason or "")
    assert Path(cross).read_bytes()[:8] == b"TAGGED!!"
    w.cat.close()


def test_a_cross_seed_link_rewritten_while_a_delete_commits_gets_no_hash_carried(tmpfs, tmp_path, monkeypatch):
    """R67-3: a delete's carry onto the inode's other links (``_record_other_links``) was made
    onto their lstat, taken after ``catalog.forget_path``'s commit (an fsync); a rewrite of H2's
    link (same size, mtime set back) during it was carried, and H2's delete then removed the new
    bytes on the old hash. The carry is now onto the pin's fstat right after the unlink."""
    from tests.unit.test_executor import demote_plan

    w, movie, cross = _demote_world_hashed(tmpfs, tmp_path)
    real, done = w.cat.forget_path, []

    def forget_then_rewrite(path):
        real(path)  # its commit: an fsync, a wait
        if os.fsdecode(path) == movie and not done:
            _rewrite_keeping_size_and_mtime(cross)
            done.append(True)

    monkeypatch.setattr(w.cat, "forget_path", forget_then_rewrite)
    summary = w.executor().apply(demote_plan(w))
    assert done
    _cross_seed_kept(w, summary, cross)


def test_a_cross_seed_link_rewritten_while_a_held_delete_walks_to_holding_gets_no_hash_carried(
    tmpfs, tmp_path, monkeypatch
):
    """R67-3, a delete held for the grace period: the content was checked before the walk to the
    holding folder (made if missing), and the carry's ``checked`` stat passed on through it; a
    rewrite of H2's link during that walk was carried. ``checked`` now only when the pinned
    inode was unchanged right before the rename into holding."""
    from tests.unit.test_executor import demote_plan

    w, movie, cross = _demote_world_hashed(tmpfs, tmp_path, grace=3600)
    real, real_act, done, deleting = fsops._open_holding_id, fsops._unlink_or_hold, [], []

    def act(u, *a, **k):  # the delete's act, not a hide's hold during the move
        deleting[:] = [u.shown == movie]
        try:
            return real_act(u, *a, **k)
        finally:
            deleting.clear()

    def rewrite_then_open(*a, **k):
        if k.get("create") and deleting == [True] and not done:
            _rewrite_keeping_size_and_mtime(cross)
            done.append(True)
        return real(*a, **k)

    monkeypatch.setattr(fsops, "_unlink_or_hold", act)
    monkeypatch.setattr(fsops, "_open_holding_id", rewrite_then_open)
    summary = w.executor().apply(demote_plan(w))
    assert done
    _cross_seed_kept(w, summary, cross)


def test_a_kept_file_rewritten_while_a_relink_checks_its_folder_is_in_place_is_refused(fs2, monkeypatch):
    """R83: the folder's walk up (``Dir.in_place``, an fstatat a level) came after the last look at
    the kept file, so a rewrite then (same size, mtime set back) was hidden by the rename's own ctime
    change and the old hash carried onto the new bytes. The last looks now come after it."""
    k, v, data, seed_s, lib, cat, target = _library_copy_and_seeding_copy(fs2)
    real_in_place, done = fsops.Dir.in_place, []

    def in_place_then_rewrite(self, anchor):
        ok = real_in_place(self, anchor)
        if not done:
            _rewrite_keeping_size_and_mtime(k)
            done.append(True)
        return ok

    monkeypatch.setattr(fsops.Dir, "in_place", in_place_then_rewrite)
    with (
        fsops.Relinker((seed_s,), (lib,), cat) as rl,
        pytest.raises(fsops.UnsafeOperation, match="copy to keep changed"),
    ):
        rl.relink(str(v), str(k), target)
    assert done and v.read_bytes() == data  # the seeding file kept its own bytes: no relink
