"""qBittorrent's own move after a restart inside ours must find nothing to copy.

qBittorrent 4.5.2 persists a new save path before libtorrent has moved the files; restarted in
between, it moves the torrent itself in Overwrite mode, which copies each old file INTO the file
already at the new place (on a promote: the library's inode), then unlinks the old one. libtorrent
skips a file whose source is missing, so the executor hides the old links while a move may be
pending (``fsops.hide_during_move``) and puts them back only once qBittorrent's save path and
libtorrent's agree (``content_path``). The real thing: integration/test_apply_real.py section 7.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace

import pytest

from qbhook import notify
from qbhook.catalog.indexer import sync_client
from qbhook.decide.explain import BACKSTOP_TODO, backstop_stops
from qbhook.errors import QbtError, UnsafeOperation
from qbhook.events.status import report
from qbhook.move import fsops
from tests.unit.test_executor import (
    FILES,
    H1,
    H2,
    Crash,
    FakeQbt,
    _make_world,
    assert_demoted,
    demote_plan,
    end_state,
)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_notify import Recorder


class RestartingQbt(FakeQbt):
    """A FakeQbt that "dies and restarts" inside the first setLocation of ``restart_on``: its save
    path says the new place while libtorrent's files stay at the old one (``content_path``), until
    the next recheck or start runs its own Overwrite move: for each file whose source exists, copy
    it INTO the existing destination file (same inode, like libtorrent's ``copy_file``), then
    unlink the source."""

    def __init__(self, restart_on: set[str]):
        super().__init__()
        self.restart_on = set(restart_on)
        self.storage: dict[str, str] = {}  # torrent -> libtorrent's save path, while it differs
        self.overwritten: list[str] = []
        self.hidden_at_set_location: dict[str, list[bool]] = {}
        self.refuse_recheck = 0
        self.checked_hidden: list[str] = []

    def set_location(self, h, path):
        t = self._get(h)
        if self.storage.get(t.hash) == path:  # back to where libtorrent's files are: no move at all
            self.calls.append(("set_location", t.hash, path))
            del self.storage[t.hash]
            t.save_path, t.script = path, []
            return
        old = t.save_path
        self.hidden_at_set_location.setdefault(t.hash, []).extend(
            not os.path.lexists(os.path.join(old, n)) for n, _s, p in t.files if p
        )
        super().set_location(h, path)
        if t.hash in self.restart_on:
            self.restart_on.discard(t.hash)
            self.storage[t.hash] = old
            t.script, t.save_path = [], path  # qBittorrent's new save path persisted, the move lost

    def _info(self, t):
        info = super()._info(t)
        if t.hash in self.storage:
            return replace(info, content_path=os.path.join(self.storage[t.hash], t.name))
        return info

    def _own_move(self, t) -> None:
        old = self.storage.pop(t.hash, None)
        for n, _s, _p in t.files if old is not None else ():
            src, dst = os.path.join(old, n), os.path.join(t.save_path, n)
            if os.path.exists(src):
                with open(src, "rb") as f, open(dst, "r+b") as g:
                    g.write(f.read())
                self.overwritten.append(dst)
                os.unlink(src)

    def recheck(self, h):
        if self.refuse_recheck:
            self.refuse_recheck -= 1
            raise QbtError("fake: recheck refused (HTTP 500)")
        t = self._get(h)
        self._own_move(t)
        if t.transient == "missingFiles" and not t.script:
            # 4.5.2 clears the flag at once (forceRecheck); its API shows it until the next refresh.
            self.calls.append(("recheck", t.hash))
            t.script = [("missingFiles", None)] + [("checkingUP", None)] * self.check_polls + [("done", None)]
            return
        super().recheck(h)

    def _tick(self, t) -> None:
        ending = bool(t.script) and t.script[0][0] == "done"
        super()._tick(t)
        if ending and any(p and not os.path.lexists(os.path.join(t.save_path, n)) for n, _s, p in t.files):
            self.checked_hidden.append(t.hash)  # a check finds nothing where a link is hidden
            t.progress = 0.0

    def start(self, h, *, forced=False):
        self._own_move(self._get(h))
        super().start(h, forced=forced)


@pytest.fixture
def restarting(tmpfs, tmp_path):  # noqa: F811
    w = _make_world(tmpfs, tmp_path)
    q = RestartingQbt({H1, H2})
    q.t = w.qbt.t
    w.qbt = q
    yield w
    w.cat.close()


def test_old_links_are_hidden_at_every_set_location_and_the_run_ends_as_before(restarting):
    """The plain run: every old link is out of reach when setLocation is issued, and the end
    state (old links deleted, torrents on the pool, no holding folder left) is unchanged."""
    w = restarting
    w.qbt.restart_on.clear()

    summary = w.executor().apply(demote_plan(w))

    assert summary.status == "done", summary.groups_failed
    assert w.qbt.hidden_at_set_location == {H1: [True] * len(FILES), H2: [True] * len(FILES)}
    assert_demoted(w, summary)
    assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))


def test_restart_inside_the_move_runs_qbittorrents_own_move_with_nothing_to_copy(restarting):
    """qBittorrent restarted inside each setLocation: it says the new place, libtorrent's files are
    at the old one, and its next check or start would copy every old file into the view in place.
    The executor runs that move itself (recheck) while the old links are hidden: nothing is copied,
    the view's inodes are never written, and the run ends exactly like an uninterrupted one."""
    w = restarting
    plan = demote_plan(w)
    summary = w.executor().apply(plan)

    assert w.qbt.overwritten == [], "qBittorrent's own move wrote into the view"
    assert summary.status == "done", summary.groups_failed
    assert w.qbt.storage == {}  # libtorrent's files are at the new place, as qBittorrent says
    assert_demoted(w, summary)
    assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))


def test_rollback_with_the_move_still_pending_cancels_it_and_puts_the_links_back(restarting):
    """The relocation fails while qBittorrent's own move is pending (its recheck is refused):
    moving back to where libtorrent's files are cancels that move, the hidden links return, and
    the view was never written into."""
    w = restarting
    before = end_state(w)
    w.qbt.refuse_recheck = 1

    summary = w.executor().apply(demote_plan(w))

    assert summary.status == "failed" and summary.groups[0].status == "rolled_back", summary.groups[0].reason
    assert w.qbt.overwritten == [] and w.qbt.storage == {} and w.qbt.violations == []
    for h in (H1, H2):
        assert w.qbt.t[h].save_path == w.save(h, "stash")
    assert end_state(w)["stash"] == before["stash"]  # every old link back: same content, same link structure
    assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))


def test_hide_and_unhide_are_idempotent_and_never_replace_a_newcomer(tmpfs, tmp_path):  # noqa: F811
    root = tmpfs("pool")
    seed = root / "seed"
    (seed / "Show").mkdir(parents=True)
    f = seed / "Show" / "e01.mkv"
    f.write_bytes(b"x" * 1000)
    ino = f.stat().st_ino
    roots = (str(seed),)

    assert fsops.hide_during_move(str(f), roots=roots, run=7)["status"] == "hidden"
    assert not f.exists()
    assert fsops.hide_during_move(str(f), roots=roots, run=7)["status"] == "hidden"  # a resumed attempt
    os.rmdir(seed / "Show")  # qBittorrent's move removes the emptied folder
    assert fsops.unhide_after_move(str(f), roots=roots, run=7)["status"] == "restored"
    assert f.stat().st_ino == ino and not (seed / fsops.HOLDING_DIR).exists()
    assert fsops.unhide_after_move(str(f), roots=roots, run=7)["status"] == "absent"

    fsops.hide_during_move(str(f), roots=roots, run=8)
    f.write_bytes(b"someone else's")  # a new file took the name meanwhile
    with pytest.raises(UnsafeOperation, match="another file took its place"):
        fsops.unhide_after_move(str(f), roots=roots, run=8)
    held = fsops.holding_path(str(f), str(seed), fsops.moving_hold_key(8))
    assert os.stat(held).st_ino == ino and f.read_bytes() == b"someone else's"  # both kept
    with pytest.raises(UnsafeOperation, match="not inside a seeding root"):
        fsops.hide_during_move(str(root / "elsewhere"), roots=roots, run=9)


def _killed_before_set_location(w, why: str) -> None:
    """A demote killed after hiding the old links, right before setLocation (``why``: the crash's text)."""
    w.qbt.restart_on.clear()
    real_set_location = w.qbt.set_location

    def killed(h, path):
        w.qbt.set_location = real_set_location
        raise Crash(why)

    w.qbt.set_location = killed
    with pytest.raises(Crash):
        w.executor().apply(demote_plan(w))


def test_a_holding_folder_renamed_away_during_the_move_fails_the_group_naming_it_nothing_deleted(restarting):
    """qBittorrent's user renames .qbhook-holding (a rename in its own folder) while the torrent
    moves: the put-back must not read the hidden links as "absent" (the deletes would then read
    absent too and the links leak, hidden for good), but fail the group naming the folder."""
    w = restarting
    w.qbt.restart_on.clear()
    real_set_location = w.qbt.set_location

    def renamed_meanwhile(h, path):
        w.qbt.set_location = real_set_location
        os.rename(os.path.join(w.seed_s, fsops.HOLDING_DIR), os.path.join(w.seed_s, "renamed"))
        return real_set_location(h, path)

    w.qbt.set_location = renamed_meanwhile
    summary = w.executor().apply(demote_plan(w))

    assert summary.status != "done" and summary.groups[0].status == "failed"
    assert "holding folder gone or replaced: " + os.path.join(w.seed_s, fsops.HOLDING_DIR) in summary.groups[0].reason
    for rel, data in FILES:  # every hidden link still there, in the renamed folder
        with open(os.path.join(w.seed_s, "renamed", f"{summary.run_id}-moving", rel), "rb") as f:
            assert f.read() == data


@pytest.mark.parametrize("swapped_in", [False, True], ids=["renamed-away", "another-in-its-place"])
def test_a_rollback_resumed_after_a_kill_checks_the_journaled_holding_folder(restarting, swapped_in):
    """Killed after hiding the old links, before setLocation; meanwhile qBittorrent's user renames
    .qbhook-holding. The holding folder's identity was journaled with the hide (not kept in the
    dead process's memory), so the resumed rollback names the folder instead of reading the hidden
    links as "absent" (they would stay hidden for good, the torrent rolled back without its files)."""
    w = restarting
    _killed_before_set_location(w, "killed before setLocation")
    hold = os.path.join(w.seed_s, fsops.HOLDING_DIR)
    os.rename(hold, os.path.join(w.seed_s, "renamed"))
    if swapped_in:
        os.mkdir(hold, 0o700)

    (summary,) = w.executor().resume()

    assert summary.status != "done" and summary.groups[0].status == "failed"
    assert "holding folder gone or replaced: " + hold in summary.groups[0].reason
    (moving,) = os.listdir(os.path.join(w.seed_s, "renamed"))
    for rel, data in FILES:  # every hidden link still there, in the renamed folder
        with open(os.path.join(w.seed_s, "renamed", moving, rel), "rb") as f:
            assert f.read() == data


def _reboot_renumbers_st_dev(w) -> None:
    """The reboot after a power cut: the same datasets come back with other st_dev numbers
    (field lessons: 44 -> 49). The folders are untouched; only the devs journaled before it differ."""
    for sid, args in w.cat.conn.execute("SELECT id, args FROM steps WHERE kind='relocate'").fetchall():
        a = json.loads(args)
        if a.get("_hidden_in"):
            a["_hidden_in"] = {p: [dev + 5, ino] for p, (dev, ino) in a["_hidden_in"].items()}
            w.cat.conn.execute("UPDATE steps SET args=? WHERE id=?", (json.dumps(a), sid))
    w.cat.conn.commit()


@pytest.mark.parametrize("swapped_in", [False, True], ids=["untouched", "another-in-its-place"])
def test_a_resume_after_a_reboot_that_renumbered_st_dev_finds_its_holding_folder(restarting, swapped_in):
    """Power cut after hiding the old links, before setLocation; the reboot renumbers st_dev. The
    untouched .qbhook-holding is still the folder the links were hidden in (its inode, on its
    seeding root's filesystem): the resume ends the run, never "another folder stands in its place"
    with the links hidden for good. A folder really put in its place (another inode) is still refused."""
    w = restarting
    _killed_before_set_location(w, "power cut before setLocation")
    _reboot_renumbers_st_dev(w)
    hold = os.path.join(w.seed_s, fsops.HOLDING_DIR)
    if swapped_in:
        os.rename(hold, os.path.join(w.seed_s, "renamed"))
        os.mkdir(hold, 0o700)

    (summary,) = w.executor().resume()

    if not swapped_in:
        assert summary.status == "done", summary.groups[0].reason
        assert_demoted(w, summary)
        assert not os.path.lexists(hold)
        return
    assert summary.groups[0].status == "failed"
    assert f"holding folder gone or replaced: {hold}" in summary.groups[0].reason
    (moving,) = os.listdir(os.path.join(w.seed_s, "renamed"))
    for rel, data in FILES:  # every hidden link still there, in the renamed folder
        with open(os.path.join(w.seed_s, "renamed", moving, rel), "rb") as f:
            assert f.read() == data


def test_killed_between_hiding_and_set_location_then_started_by_hand_gets_its_links_back(restarting):
    """qbhook dies after hiding the old links and before setLocation; someone then starts the
    torrent, which finds its files gone (missingFiles). The resumed run fails the relocation (not
    stable) and its rollback puts the links back first, then stops it and clears missingFiles
    with a recheck (the flag outlives the files' return): one resume ends it as it was."""
    w = restarting
    _killed_before_set_location(w, "killed before setLocation")
    old = [os.path.join(w.save(H1, "stash"), rel) for rel, _d in FILES]
    assert not any(os.path.lexists(p) for p in old)  # hidden, as it should be during a move
    t = w.qbt.t[H1]
    t.stopped, t.transient = False, "missingFiles"  # started by hand: its files are gone

    (summary,) = w.executor().resume()

    # failed (not stable), and the rollback stopped it and cleared missingFiles with a recheck
    # once the links were back; at 100 % it runs again, as it did before the run
    assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
    assert all(os.path.lexists(p) for p in old)
    assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))
    assert w.qbt.count("set_location", H1) == 0 and w.qbt.checked_hidden == [] and w.qbt.violations == []
    assert w.qbt.calls.index(("stop", H1)) < w.qbt.calls.index(("recheck", H1)) < w.qbt.calls.index(("start", H1))
    assert (t.progress, t.transient, t.stopped) == (1.0, None, False)


# --------------------------------------------------------------------------- qBittorrent killed in the move


class DyingQbt(RestartingQbt):
    """qBittorrent killed right after it accepted H1's setLocation: unreachable until ``restart``,
    which brings H1 back the way 4.5.2 did under load (section 7 of test_apply_real.py, traced):
    stopped and in missingFiles, since its files were hidden when it loaded them. ``lost``: the
    kill came before the new save path reached the resume data (both save paths the old place);
    ``deferred``: after (qBittorrent's save path the new place, libtorrent's files the old one)."""

    def __init__(self):
        super().__init__(set())
        self.down, self.kill_in = False, {H1}

    def set_location(self, h, path):
        super().set_location(h, path)
        if h in self.kill_in:
            self.kill_in.discard(h)
            self.down = True

    def torrent(self, h):
        if self.down:
            raise QbtError("fake: cannot reach qBittorrent (connection refused)")
        return super().torrent(h)

    def restart(self, old_save: str, new_save: str, resume_data: str) -> None:
        t = self.t[H1]
        self.down, t.script, t.stopped, t.transient = False, [], True, "missingFiles"
        if resume_data == "lost":
            t.save_path = old_save
        else:
            t.save_path, self.storage[H1] = new_save, old_save


@pytest.mark.parametrize("resume_data", ["lost", "deferred"])
def test_qbittorrent_killed_in_the_move_rolls_back_in_one_resume(tmpfs, tmp_path, resume_data):  # noqa: F811
    """The "ROLLBACK INCOMPLETE" of section 7 (design.md, "A rollback that needs two resumes"):
    killed inside H1's move, qBittorrent comes back with H1 in missingFiles, which its links
    coming back does not clear: every resume used to fail on it. One resume now finishes the
    rollback: moved back to where libtorrent's files are (cancelling a pending move of its own),
    links back, stopped, rechecked with them in place, started again only at 100 %; nothing
    copied into the view, nothing deleted."""
    w = _make_world(tmpfs, tmp_path)
    q = DyingQbt()
    q.t = w.qbt.t
    w.qbt = q
    try:
        before = end_state(w)
        old_save, new_save = w.save(H1, "stash"), w.save(H1, "pool")

        summary = w.executor().apply(demote_plan(w))

        assert summary.status == "interrupted" and "ROLLBACK INCOMPLETE" in summary.groups[0].reason
        q.restart(old_save, new_save, resume_data)
        n = len(q.calls)
        (summary,) = w.executor().resume()

        assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
        assert not summary.groups[0].needs_attention
        t = q.t[H1]
        assert (t.save_path, t.progress, t.transient, t.stopped) == (old_save, 1.0, None, False)
        assert q.storage == {} and q.overwritten == [] and q.checked_hidden == [] and q.violations == []
        now = q.calls[n:]
        assert now.index(("stop", H1)) < now.index(("recheck", H1)) < now.index(("start", H1)), now
        assert end_state(w)["stash"] == before["stash"]  # every old link back, nothing deleted
        assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))
        assert w.executor().resume() == []
    finally:
        w.cat.close()


# --------------------------------------------------------------------------- a running torrent


def test_a_running_torrent_is_stopped_and_its_links_hidden_before_set_location(restarting):
    """qBittorrent runs a restart move AT ONCE for a torrent that comes back running, so a running
    torrent gets no exception: stopped (and seen stopped) first, its old links hidden, then
    setLocation; restarted inside the move, nothing is copied into the view."""
    w = restarting
    w.qbt.restart_on = {H1}
    assert w.qbt.t[H1].stopped is False  # H1 seeds; H2 is stopped

    summary = w.executor().apply(demote_plan(w))

    assert summary.status == "done", summary.groups_failed
    assert w.qbt.overwritten == []
    assert w.qbt.hidden_at_set_location[H1] == [True] * len(FILES)
    calls = w.qbt.calls
    assert calls.index(("stop", H1)) < calls.index(("set_location", H1, w.save(H1, "pool")))
    assert w.qbt.t[H1].stopped is False  # started again once at 100 % at the new place
    assert_demoted(w, summary)


# --------------------------------------------------------------------------- cross-seeds of one path


class SharingQbt(RestartingQbt):
    """Also notes a running torrent whose files are missing at its save path (qBittorrent would
    flag it missingFiles, or error, at its next read) on every poll."""

    def torrent(self, h):
        for t in self.t.values():
            if t.stopped or t.script or t.transient:
                continue
            gone = [n for n, _s, p in t.files if p and not os.path.lexists(os.path.join(t.save_path, n))]
            if gone:
                self.violations.append(f"{t.hash} runs with {gone[0]} missing at {t.save_path}")
        return super().torrent(h)


def _sharing_world(mount, tmp_path):
    """A world where H2, running, seeds H1's very paths, on a client that notes a running torrent
    missing its files; with the plan for it (``_same_path_plan``)."""
    w = _make_world(mount, tmp_path)
    q = SharingQbt(set())
    q.t = w.qbt.t
    w.qbt = q
    q.t[H2].stopped = False
    return w, q, _same_path_plan(w)


def _same_path_plan(w):
    """Both torrents seed the very same paths (one save path, same names): the plan the planner
    makes for them, with each file built, verified and deleted once."""
    for rel, _d in FILES:
        os.unlink(os.path.join(w.seed_s, "cross-seed", rel))  # H2 no longer has paths of its own
    w.qbt.t[H2].save_path = w.seed_s
    w.save = lambda _h, pool: w.seed_s if pool == "stash" else w.seed_p
    plan = demote_plan(w)
    (g,) = plan.groups
    seen, steps = set(), []
    for s in g.steps:
        key = (s.kind, s.args.get("dst") or s.args.get("path") or s.args.get("root"))
        if s.kind in ("copy", "link", "mkempty", "delete", "prune_dirs") and key in seen:
            continue
        seen.add(key)
        if s.kind == "delete":
            s = type(s).of("delete", {**s.args, "seeding_links": sorted(set(s.args["seeding_links"]))})
        steps.append(s)
    return replace(plan, groups=[replace(g, steps=steps)])


@pytest.mark.parametrize("restart", [False, True], ids=["plain", "restart-move"])
def test_cross_seeds_of_one_path_never_run_with_their_files_hidden(tmpfs, tmp_path, restart):  # noqa: F811
    """H1 and H2 seed from the SAME paths. Hiding H1's old links hides H2's files too: H2 (running)
    is stopped for that window and started again once they are back, then moves itself the same
    way. Restarted inside each move, qBittorrent's own moves find nothing to copy either."""
    w = _make_world(tmpfs, tmp_path)
    q = SharingQbt({H1, H2} if restart else set())
    q.t = w.qbt.t
    w.qbt = q
    try:
        q.t[H2].stopped = False
        plan = _same_path_plan(w)

        summary = w.executor().apply(plan)

        assert summary.status == "done", summary.groups_failed
        assert q.violations == [] and q.overwritten == []
        calls = q.calls
        first_move = calls.index(("set_location", H1, w.seed_p))
        assert calls.index(("stop", H2)) < first_move < calls.index(("start", H2))
        for h in (H1, H2):
            assert q.t[h].save_path == w.seed_p and q.t[h].stopped is False
        for rel, data in FILES:
            assert not os.path.lexists(os.path.join(w.seed_s, rel))
            with open(os.path.join(w.seed_p, rel), "rb") as f:
                assert f.read() == data
        assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))
    finally:
        w.cat.close()


def test_rollback_puts_shared_paths_back_and_restarts_the_sharer(tmpfs, tmp_path):  # noqa: F811
    """H1's relocation fails (under 100 % at the new place) while H2, seeding from the same paths,
    was stopped for it: the rollback puts every path back once and starts H2 again."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:
        before = {rel: os.lstat(os.path.join(w.seed_s, rel)).st_ino for rel, _d in FILES}
        q.fail_at[w.seed_p] = 0.5

        summary = w.executor().apply(plan)

        assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
        assert q.violations == []
        assert {rel: os.lstat(os.path.join(w.seed_s, rel)).st_ino for rel, _d in FILES} == before
        for h in (H1, H2):
            assert q.t[h].save_path == w.seed_s and q.t[h].stopped is False, h
        assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))
    finally:
        w.cat.close()


@pytest.mark.parametrize("kill", ["before-set-location", "moving", "then-started-by-hand"])
def test_a_sharer_stopped_before_a_kill_runs_again_after_the_resume(tmpfs, tmp_path, kill):  # noqa: F811
    """qbhook is killed while H2 (running, seeding H1's very paths) is stopped for H1's move:
    before setLocation, or while the move is polled. The journal recorded H2 before its stop, so
    the resumed run starts it again once the paths are back, and the group ends as without the kill.
    Started by hand after a kill before setLocation, H2 is stopped again before H1's move."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:
        real_set_location = q.set_location

        def killed(h, path):
            q.set_location = real_set_location
            raise Crash("killed before setLocation")

        def hook(point, gid, seq, step):
            if point == "poll" and step.torrent == H1:
                raise Crash("killed while the move runs")

        if kill != "moving":
            q.set_location = killed
        with pytest.raises(Crash):
            w.executor(hook=hook if kill == "moving" else None).apply(plan)
        assert q.t[H2].stopped is True  # stopped for H1's move when the kill came
        if kill == "then-started-by-hand":
            q.t[H2].stopped = False
            q.calls.clear()

        (summary,) = w.executor().resume()

        assert summary.status == "done", summary.groups_failed
        if kill == "then-started-by-hand":  # it ran with its files hidden until the resume stopped it
            assert q.calls.index(("stop", H2)) < q.calls.index(("set_location", H1, w.seed_p))
            assert q.calls.count(("start", H2)) >= 1
        else:
            assert q.violations == []
        for h in (H1, H2):
            assert q.t[h].save_path == w.seed_p and q.t[h].stopped is False, h
        assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))
    finally:
        w.cat.close()


def test_a_rollback_resumed_after_a_kill_starts_the_sharer_it_stopped(tmpfs, tmp_path):  # noqa: F811
    """Killed during the rollback of H1's failed move, with H2 still stopped for it: the resumed
    rollback reads H2 from the journal and starts it once the shared paths are back."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:
        q.fail_at[w.seed_p] = 0.5
        real_set_location = q.set_location

        def killed_on_the_way_back(h, path):
            if path == w.seed_s:
                q.set_location = real_set_location
                raise Crash("killed as the rollback moves H1 back")
            real_set_location(h, path)

        q.set_location = killed_on_the_way_back
        with pytest.raises(Crash):
            w.executor().apply(plan)
        assert q.t[H2].stopped is True

        (summary,) = w.executor().resume()

        assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
        assert q.violations == []
        for h in (H1, H2):
            assert q.t[h].save_path == w.seed_s and q.t[h].stopped is False, h
        assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))
    finally:
        w.cat.close()


@pytest.mark.parametrize("forced", [False, True], ids=["started", "force-started"])
def test_a_sharer_in_a_check_is_waited_for_never_stopped_mid_check(tmpfs, tmp_path, forced):  # noqa: F811
    """H2, running from H1's very paths, is in checkingUP (cross-seed rechecks what it adds) when
    H1 moves. Stopped mid-check it would end stoppedDL at partial progress (lesson 3) and never
    run again; the relocation waits for the check to end, then stops it for the move, starts it
    again (forced, if it ran forced) and moves it in turn."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:
        q.t[H2].forced = forced
        check = [("checkingUP", None)] * 3 + [("done", None)]

        def hook(point, gid, seq, step):
            if point == "after_intend" and step.kind == "relocate" and step.torrent == H1:
                q.t[H2].script = list(check)

        summary = w.executor(hook=hook).apply(plan)

        assert summary.status == "done", summary.groups_failed
        assert q.violations == []
        assert summary.groups[0].reason is None
        for h in (H1, H2):
            assert q.t[h].save_path == w.seed_p and q.t[h].stopped is False and q.t[h].progress == 1, h
        assert q.torrent(H2).state == ("forcedUP" if forced else "stalledUP")
        assert q.calls.count(("stop", H2)) == 2  # for H1's move, then for its own
    finally:
        w.cat.close()


@pytest.mark.parametrize("complete", [True, False], ids=["complete", "incomplete"])
def test_a_sharer_in_a_transition_is_waited_for_and_one_that_cannot_start_is_named(
    tmpfs,  # noqa: F811
    tmp_path,
    caplog,
    alerts,
    complete,
):
    """H2 was stopped for H1's move; when the paths are back it is checkingResumeData (qBittorrent
    restarted). It is waited for, not left stopped for a state that ends by itself: at 100 % it is
    started again. Ending under 100 % it is never started (lesson 3), and not dropped silently: a
    warning, the group's outcome and journaled state, and an alert name it."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:

        def hook(point, gid, seq, step):
            if point == "poll" and step.torrent == H1 and q.t[H2].stopped and not q.t[H2].script:
                # under 100 %: its resume data say so (its stored progress), whatever its paths hold
                q.t[H2].script = [("checkingResumeData", None)] * 3 + [("done" if complete else "unchecked", None)]

        with caplog.at_level(logging.WARNING, logger="qbhook.move.executor"):
            summary = w.executor(hook=hook).apply(plan)

        (g,) = summary.groups
        assert q.violations == []
        if complete:
            assert g.status == "done" and g.reason is None, g.reason
            assert q.calls.index(("set_location", H1, w.seed_p)) < q.calls.index(("start", H2))
            assert q.t[H2].save_path == w.seed_p and q.t[H2].stopped is False
            return
        # Its own relocation then refuses it (not complete): the group rolls H1 back.
        assert g.status == "rolled_back", g.reason
        assert f"not started again (start by hand once complete): {H2} (stoppedDL at 0.0%)" in g.reason
        assert w.journal.group_status("g1")[1] == g.reason
        assert any(H2 in r.getMessage() and "stoppedDL" in r.getMessage() for r in caplog.records)
        assert ("start", H2) not in q.calls  # left for a person, never started under 100 %
        n, rec = alerts
        assert n.flush(5)
        assert any(sev == "warning" and H2 in body for _t, _title, body, sev in rec.calls), rec.calls
    finally:
        w.cat.close()


@pytest.mark.parametrize("forced", [False, True], ids=["started", "force-started"])
def test_a_sharer_left_stopped_runs_again_after_its_own_relocation_in_a_later_run(tmpfs, tmp_path, forced):  # noqa: F811
    """H2, running from H1's very paths, was stopped for H1's move and could not be started again
    (under 100 % when the paths came back): named, and the group rolled back. A person rechecks
    it to 100 % and leaves it stopped. The next run's relocation of H2 finds it stopped; it ran
    before qbhook stopped it (the journal says so), so it runs again at the new place, forced if
    it was, and the journal no longer says qbhook stopped it."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:
        q.t[H2].forced = forced

        def hook(point, gid, seq, step):
            if point == "poll" and step.torrent == H1 and q.t[H2].stopped and not q.t[H2].script:
                q.t[H2].script = [("checkingResumeData", None)] * 3 + [("unchecked", None)]

        first = w.executor(hook=hook).apply(plan)
        assert first.groups[0].status == "rolled_back", first.groups[0].reason
        assert q.t[H2].stopped is True and w.journal.stopped_by_us("qbt", H2) is forced
        q.t[H2].progress, q.t[H2].script, q.t[H2].transient = 1.0, [], None  # a person's recheck: still stopped

        summary = w.executor().apply(plan)

        assert summary.status == "done", summary.groups_failed
        for h in (H1, H2):
            assert q.t[h].save_path == w.seed_p and q.t[h].stopped is False, h
        assert q.torrent(H2).state == ("forcedUP" if forced else "stalledUP")
        assert w.journal.stopped_by_us("qbt", H2) is None
        assert q.violations == []
    finally:
        w.cat.close()


def test_a_sharer_a_person_started_and_stopped_again_is_not_started_by_its_own_relocation(tmpfs, tmp_path):  # noqa: F811
    """H2 was left stopped by H1's move, as above. A person rechecks it and starts it; the torrent
    index's sync sees it running. Later the person stops it on purpose. The next run relocates H2
    and leaves it stopped: qbhook's record that it stopped H2 went when H2 was seen running."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:

        def hook(point, gid, seq, step):
            if point == "poll" and step.torrent == H1 and q.t[H2].stopped and not q.t[H2].script:
                q.t[H2].script = [("checkingResumeData", None)] * 3 + [("unchecked", None)]

        first = w.executor(hook=hook).apply(plan)
        assert first.groups[0].status == "rolled_back", first.groups[0].reason
        assert w.journal.stopped_by_us("qbt", H2) is False
        q.t[H2].progress, q.t[H2].script, q.t[H2].transient = 1.0, [], None  # a person's recheck
        q.t[H2].stopped = False  # ... and start
        sync_client(w.cat, q)
        assert w.journal.stopped_by_us("qbt", H2) is None
        q.t[H2].stopped = True  # stopped on purpose, later

        summary = w.executor().apply(plan)

        assert summary.status == "done", summary.groups_failed
        assert q.t[H1].save_path == q.t[H2].save_path == w.seed_p
        assert q.t[H1].stopped is False and q.t[H2].stopped is True
        assert q.violations == []
    finally:
        w.cat.close()


def test_a_relocation_that_sees_its_torrent_running_drops_the_record_a_transition_keeps_it(tmpfs, tmp_path):  # noqa: F811
    """The executor's own look at a torrent (``_observation``) drops the record that qbhook left
    it stopped once it sees it running; a transition (checkingResumeData: a stopped torrent has
    it too after a restart) says nothing either way and keeps it."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:
        ex = w.executor()
        s = next(s for s in plan.groups[0].steps if s.kind == "relocate" and s.torrent == H2)
        w.journal.set_left_stopped(1, "qbt", H2, True)
        q.t[H2].stopped, q.t[H2].transient = True, "checkingResumeData"
        assert ex._observation(s, q.torrent(H2))["was_running"] is True
        assert w.journal.stopped_by_us("qbt", H2) is True
        q.t[H2].stopped, q.t[H2].transient = False, None
        assert ex._observation(s, q.torrent(H2))["was_running"] is True
        assert w.journal.stopped_by_us("qbt", H2) is None
    finally:
        w.cat.close()


def test_a_torrent_removed_during_its_move_gets_its_links_back_and_its_sharer_started(tmpfs, tmp_path):  # noqa: F811
    """H1 is removed from qBittorrent (a ratio-limit removal, an *arr's "remove completed", a
    person) at its first poll after setLocation, its old links hidden and H2, seeding the same
    paths, stopped for it. The rollback could not read H1's files from the client: the links
    stayed in holding, H2 stayed stopped, and every resume failed the same way. They come back
    from the paths journaled when they were hidden, H2 runs again, and nothing needs a person."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:
        before = {rel: os.lstat(os.path.join(w.seed_s, rel)).st_ino for rel, _d in FILES}

        def hook(point, gid, seq, step):
            if point == "poll" and step.torrent == H1 and H1 in q.t:
                del q.t[H1]

        summary = w.executor(hook=hook).apply(plan)

        (g,) = summary.groups
        assert g.status == "rolled_back" and not g.needs_attention, g.reason
        assert w.journal.run(summary.run_id).status == "failed"  # nothing left for resume
        assert {rel: os.lstat(os.path.join(w.seed_s, rel)).st_ino for rel, _d in FILES} == before
        assert q.t[H2].save_path == w.seed_s and q.t[H2].stopped is False
        assert q.violations == []
        assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))
    finally:
        w.cat.close()


def test_a_removed_torrent_is_undone_when_a_failed_rollback_already_put_the_shared_links_back(tmpfs, tmp_path):  # noqa: F811
    """H1 moved and was removed; then H2 (same paths) fails at the new place and its move back ends
    under 100 %: its rollback fails, but only after it put the shared links back. They were taken
    for links it still kept hidden (the journaled _hidden list), and H1's rollback was refused for
    them: only links still held block it."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:

        def hook(point, gid, seq, step):
            if point == "poll" and step.torrent == H2 and H1 in q.t:
                del q.t[H1]
                q.fail_at[w.seed_p] = q.fail_at[w.seed_s] = 0.9  # H2's check there, then back home

        summary = w.executor(hook=hook).apply(plan)

        (g,) = summary.groups
        assert g.needs_attention and f"{H2} is back at {w.seed_s} but at 90.0%" in g.reason, g.reason
        assert H1 not in g.reason, g.reason
        (row,) = [r for r in w.journal.steps(summary.run_id) if r.kind == "relocate" and r.args["torrent"] == H1]
        assert row.status == "undone" and row.result["note"] == "torrent gone"
        for rel, _d in FILES:
            assert os.path.lexists(os.path.join(w.seed_s, rel))
        assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))
    finally:
        w.cat.close()


def test_a_removed_torrent_whose_link_cannot_come_back_stays_held_and_named(tmpfs, tmp_path):  # noqa: F811
    """As above, but a new file took one old path meanwhile: nothing is replaced nor deleted. The
    old link stays held, the reason names where, and H2 (its files not all back) stays stopped."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:
        taken = os.path.join(w.seed_s, FILES[1][0])

        def hook(point, gid, seq, step):
            if point == "poll" and step.torrent == H1 and H1 in q.t:
                del q.t[H1]
                with open(taken, "wb") as f:
                    f.write(b"a newcomer")

        summary = w.executor(hook=hook).apply(plan)

        (g,) = summary.groups
        assert g.needs_attention and "ROLLBACK INCOMPLETE" in g.reason
        held = os.path.join(w.seed_s, fsops.HOLDING_DIR, f"{summary.run_id}-moving", FILES[1][0])
        assert held in g.reason
        with open(held, "rb") as f:
            assert f.read() == FILES[1][1]
        with open(taken, "rb") as f:
            assert f.read() == b"a newcomer"
        assert q.t[H2].stopped is True
    finally:
        w.cat.close()


def test_a_removed_torrent_whose_hidden_links_were_not_journaled_leaves_them_held_and_named(tmpfs, tmp_path):  # noqa: F811
    """Hidden by a qbhook that did not journal the paths: which held files are H1's is not known,
    so nothing is guessed from the holding folder's layout; it is named, and H2 stays stopped."""
    w, q, plan = _sharing_world(tmpfs, tmp_path)
    try:

        def hook(point, gid, seq, step):
            if point == "poll" and step.torrent == H1 and H1 in q.t:
                del q.t[H1]
                w.cat.conn.execute("UPDATE steps SET args=json_remove(args, '$._hidden')")
                w.cat.conn.commit()

        summary = w.executor(hook=hook).apply(plan)

        (g,) = summary.groups
        assert g.needs_attention and "ROLLBACK INCOMPLETE" in g.reason
        folder = os.path.join(w.seed_s, fsops.HOLDING_DIR, f"{summary.run_id}-moving")
        assert f"held in {folder}," in g.reason
        for rel, _d in FILES:
            assert os.path.lexists(os.path.join(folder, rel)) and not os.path.lexists(os.path.join(w.seed_s, rel))
        assert q.t[H2].stopped is True
    finally:
        w.cat.close()


# --------------------------------------------------------------------------- the backstop


class WritingQbt(FakeQbt):
    """What qBittorrent's restart move does to an existing destination (4.5.2, strace): opened
    O_RDWR|O_TRUNC and the same bytes copied back in. Inside ``set_location`` to ``write_to``."""

    def __init__(self, write_to: str):
        super().__init__()
        self.write_to = write_to

    def set_location(self, h, path):
        super().set_location(h, path)
        if path == self.write_to:
            for n, _s, _p in self._get(h).files:
                with open(os.path.join(path, n), "r+b") as f:
                    data = f.read()
                    f.seek(0)
                    f.truncate()
                    f.write(data)


@pytest.fixture
def alerts():
    rec = Recorder()
    n = notify.Notifier(rec, min_interval=0.05, gather_s=0.01)
    prev = notify.install(n)
    yield n, rec
    notify.install(prev)
    n.close(1)


def _assert_stopped_where_it_is(w, summary, alerts):
    (g,) = summary.groups
    assert g.status == "failed" and "VIEW FILE CHANGED" in g.reason and "no rollback, no delete" in g.reason
    assert not g.needs_attention  # nothing for resume to retry: a person looks first
    status, reason = w.journal.group_status("g1")
    assert status == "failed" and "VIEW FILE CHANGED" in reason
    assert summary.bytes_freed == 0
    for h in (H1, H2):
        for rel, _d in FILES:
            assert os.path.lexists(os.path.join(w.save(h, "stash"), rel))  # every old link kept
    assert all(t.stopped for t in w.qbt.t.values())  # none may download into the changed files
    problems = report(w.cfg, w.cat)["problems"]  # `qbhook status` says it, and exits unhealthy
    for h in (H1, H2):  # and `explain` for each of its torrents, found by the steps that named them
        (v,) = backstop_stops(w.cat.conn, "its-id-since", [h])
        assert v["group_id"] == "g1" and v["reason"] == reason and v["todo"] == BACKSTOP_TODO
    assert backstop_stops(w.cat.conn, "g1", []) != [] and backstop_stops(w.cat.conn, "g2", ["f" * 40]) == []
    assert any(p.startswith("group g1 stopped: ") and "VIEW FILE CHANGED" in p for p in problems), problems
    n, rec = alerts
    assert n.flush(5)
    assert any(sev == "failure" and "VIEW FILE CHANGED" in body for _t, _title, body, sev in rec.calls), rec.calls


def test_a_write_into_the_view_during_the_move_stops_the_group_before_any_delete(tmpfs, tmp_path, alerts):  # noqa: F811
    """The backstop: something (here qBittorrent's Overwrite copy) wrote into a view file after
    verify_view. On a promote that file is the library's. The group stops where it is: no delete,
    no rollback over the written files, its torrents stopped, journaled, and an alert."""
    w = _make_world(tmpfs, tmp_path)
    q = WritingQbt(w.save(H1, "pool"))
    q.t = w.qbt.t
    w.qbt = q
    try:
        summary = w.executor().apply(demote_plan(w))

        _assert_stopped_where_it_is(w, summary, alerts)
        assert q.count("set_location", H2) == 0  # the check after H1's move stopped the group
    finally:
        w.cat.close()


def test_the_backstop_holds_across_a_resume_from_the_journal(restarting, alerts):
    """Killed after both relocations, a view file written meanwhile: the resumed run checks
    against what verify_view journaled, not against what it finds now."""
    world = restarting
    world.qbt.restart_on.clear()

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "verify_group":
            raise Crash("killed before verify_group")

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(demote_plan(world))
    view = os.path.join(world.save(H2, "pool"), FILES[0][0])
    with open(view, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data)

    (summary,) = world.executor().resume()

    _assert_stopped_where_it_is(world, summary, alerts)


# --------------------------------------------------------------------------- the rollback's trace


def test_the_rollback_logs_what_it_finds_and_each_poll_of_its_waits(restarting, caplog):
    """A rollback that ends incomplete only under load (design.md, "A rollback that needs two
    resumes") is read from its log: what it found (info) and, at ``-vv``, every poll of its waits
    with the state, qBittorrent's save path, where the files are, and the progress."""
    w = restarting
    w.qbt.refuse_recheck = 1  # the relocation fails while qBittorrent's own move is pending

    with caplog.at_level(logging.DEBUG, logger="qbhook.move.executor"):
        summary = w.executor().apply(demote_plan(w))

    assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
    found = [r for r in caplog.records if r.getMessage().startswith(f"rollback {H1}:")]
    assert [r.levelno for r in found] == [logging.INFO]
    # the pending own move shows: qBittorrent says the pool, the files are still on the stash
    assert f"at {w.save(H1, 'pool')} (files {os.path.join(w.save(H1, 'stash'), w.qbt.t[H1].name)})" in (
        found[0].getMessage()
    )
    polls = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"poll {H1}:")]
    back = [m for m in polls if f" at {w.save(H1, 'stash')} " in m]  # the wait after the move back
    # (stopped, and checking: moved back stopped, its 100 % counts only after a recheck was seen)
    assert back and all(m.startswith((f"poll {H1}: stopped", f"poll {H1}: checking")) for m in back), polls
    assert all(m.endswith("%") for m in back) and any(f"poll {H1}: checking" in m for m in back), polls
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.getMessage().startswith("poll "))
