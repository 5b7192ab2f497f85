"""Sharers across clients: one save path seeded from qBittorrent AND rTorrent (R11 #1).

Relocating the qBittorrent torrent hides its old links (``fsops.hide_during_move``), and with
them the files of every torrent at that save path, whichever client seeds it. The executor's
protection, stopping the sharers while the paths are hidden (``Executor._stop_sharers``), looked
in the relocated torrent's own client only: the rTorrent torrent kept running with its files
gone (rTorrent raises a storage error and may close it) and the group still ended done. Each
sharer is now stopped, journaled (instance, hash) and started again through its own client,
after the move, after a rollback, and after a resume; one rTorrent holds paused is left paused.
The plan is the real planner's, over the unit fakes.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from qbhook.catalog.scan import scan_pool
from qbhook.clients.model import PAUSED_RAW_STATE
from qbhook.decide import planner, snapshot
from qbhook.move import fsops
from qbhook.move.executor import build_executor
from qbhook.move.journal import forced_sharers_of, sharers_of
from tests.unit.test_executor import FILES, H1, H2, Crash, FakeQbt, FakeTorrent, _make_world
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)


class FakeRt(FakeQbt):
    """rTorrent as the executor sees it: it moves no files itself (nothing is hidden from it), and
    holds a third state, paused (stopped in the normalized vocabulary, ``is_paused``), which its
    d.stop, and so its relocation, ends; ``pause`` puts it back."""

    relocation_moves_files = False  # as clients/rtorrent.py says

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.paused: set[str] = set()

    def _info(self, t):
        info = super()._info(t)
        return replace(info, raw_state=PAUSED_RAW_STATE) if t.stopped and t.hash in self.paused else info

    def stop(self, h):
        super().stop(h)
        self.paused.discard(h)

    def start(self, h, *, forced=False):
        super().start(h, forced=forced)
        self.paused.discard(h)

    def set_location(self, h, path):
        self.paused.discard(h)  # its multicall's d.stop ends a pause
        super().set_location(h, path)

    def pause(self, h):
        self.calls.append(("pause", h))
        t = self._get(h)
        t.stopped = True
        self.paused.add(h)


class WatchingQbt(FakeQbt):
    """Notes, at each poll and setLocation, a running torrent of ``other`` missing its files."""

    def __init__(self, other: FakeQbt):
        super().__init__()
        self.other = other

    def _look(self) -> None:
        for t in self.other.t.values():
            gone = [n for n, _s, p in t.files if p and not os.path.lexists(os.path.join(t.save_path, n))]
            if gone and not t.stopped and not t.script:
                self.violations.append(f"{t.hash} runs in {self.other.name} with {gone[0]} missing")

    def torrent(self, h):
        self._look()
        return super().torrent(h)

    def set_location(self, h, path):
        self._look()
        super().set_location(h, path)


@pytest.fixture
def two(tmpfs, tmp_path):  # noqa: F811
    """H1 in qBittorrent and H2, running, in rTorrent, at the very same save path on stash; the
    plan the planner makes for them (one demote group, both relocated)."""
    w = _make_world(tmpfs, tmp_path)
    for rel, _d in FILES:
        os.unlink(os.path.join(w.seed_s, "cross-seed", rel))  # only the one save path
    rt = FakeRt(name="rt")
    q = WatchingQbt(rt)
    files = [(rel, len(data), 1) for rel, data in FILES]
    q.add(FakeTorrent(H1, "Movie.2020", w.seed_s, list(files), tags={"~noHL"}))
    rt.add(FakeTorrent(H2, "Movie.2020", w.seed_s, list(files), tags={"~noHL"}))
    w.qbt = q
    for p in w.cfg.pools:
        scan_pool(w.cat, p, w.cfg.scan)
    plan = planner.make_plan(snapshot.build_snapshot(w.cfg, w.cat, [q, rt]), w.cfg.policy)
    (g,) = plan.groups
    assert g.action == "demote" and set(g.torrents) == {H1, H2}
    yield w, q, rt, plan
    w.cat.close()


def _executor(w, q, rt, **kw):
    return build_executor(
        w.cfg, w.cat, {"qbt": q, "rt": rt}, w.journal, sleep=w.clock.sleep, clock=w.clock, poll_initial_s=0.5, **kw
    )


def _relocate_row(w, run_id, h):
    (row,) = [r for r in w.journal.steps(run_id) if r.kind == "relocate" and r.args["torrent"] == h]
    return row


def test_a_sharer_in_another_client_is_stopped_while_the_shared_paths_are_hidden(two):
    w, q, rt, plan = two

    summary = _executor(w, q, rt).apply(plan)

    assert summary.status == "done", summary.groups_failed
    assert q.violations == [] and rt.violations == []
    # Stopped through rTorrent before qBittorrent's move, started again through it after.
    first_move = q.calls.index(("set_location", H1, w.seed_p))
    assert rt.calls[0] == ("stop", H2) and ("stop", H2) not in q.calls
    assert q.calls.index(("start", H1)) > first_move and rt.calls.count(("start", H2)) == 2  # sharer, own move
    for c, h in ((q, H1), (rt, H2)):
        assert c.t[h].save_path == w.seed_p and c.t[h].stopped is False, h
    assert _relocate_row(w, summary.run_id, H1).args["_sharers"] == []  # started: out of the journal
    assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))


def test_a_rollback_starts_the_sharer_in_the_other_client(two):
    """H1's move fails (under 100 % at the new place): the rollback puts the shared paths back and
    starts H2 again in rTorrent, where it was stopped."""
    w, q, rt, plan = two
    q.fail_at[w.seed_p] = 0.5

    summary = _executor(w, q, rt).apply(plan)

    assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
    assert q.violations == [] and ("stop", H2) in rt.calls and ("start", H2) in rt.calls
    for c, h in ((q, H1), (rt, H2)):
        assert c.t[h].save_path == w.seed_s and c.t[h].stopped is False, h
    assert not os.path.lexists(os.path.join(w.seed_s, fsops.HOLDING_DIR))


@pytest.mark.parametrize("then", ["resume", "rollback"])
def test_a_sharer_of_the_other_client_stopped_before_a_kill_runs_again(two, then):
    """Killed while H1 moves, with H2 stopped in rTorrent for it: the journal names H2 with its
    client, and the resumed run (moving on, or rolling back after H1's move failed) starts it there."""
    w, q, rt, plan = two
    if then == "rollback":
        q.fail_at[w.seed_p] = 0.5

    def hook(point, gid, seq, step):
        if point == "poll" and step.torrent == H1 and step.instance == "qbt":
            raise Crash("killed while the move runs")

    with pytest.raises(Crash):
        _executor(w, q, rt, hook=hook).apply(plan)
    assert rt.t[H2].stopped is True
    relocs = [json.loads(a) for (a,) in w.cat.conn.execute("SELECT args FROM steps WHERE kind='relocate'")]
    assert [r["_sharers"] for r in relocs if r["torrent"] == H1] == [[["rt", H2]]]  # with its client

    (summary,) = _executor(w, q, rt).resume()

    want = "rolled_back" if then == "rollback" else "done"
    assert summary.groups[0].status == want, summary.groups[0].reason
    assert q.violations == []
    where = w.seed_s if then == "rollback" else w.seed_p
    for c, h in ((q, H1), (rt, H2)):
        assert c.t[h].save_path == where and c.t[h].stopped is False, h


def test_a_paused_rtorrent_sharer_is_left_paused(two):
    """Paused in rTorrent (stopped, normalized): it reads nothing, so it is not stopped for H1's
    move nor started after it; its own relocation brings it back paused, as it was found."""
    w, q, rt, plan = two
    rt.t[H2].stopped = True
    rt.paused.add(H2)

    summary = _executor(w, q, rt).apply(plan)

    assert summary.status == "done", summary.groups_failed
    assert ("stop", H2) not in rt.calls and ("start", H2) not in rt.calls and ("pause", H2) in rt.calls
    assert rt.t[H2].save_path == w.seed_p and rt.torrent(H2).is_paused


def test_sharers_are_journaled_with_their_client_and_old_rows_still_read(two):
    """A sharer of the relocation's own client is journaled as a bare hash, as older versions
    wrote and read every sharer; one of another client as [instance, hash]. Both read back as
    (instance, hash), bare hashes as of the step's own instance."""
    w, q, rt, plan = two
    run = w.journal.start_run(plan)
    step = next(s for s in plan.groups[0].steps if s.kind == "relocate" and s.args["torrent"] == H1)
    sid = w.journal.intend(run, 0, plan.groups[0].group_id, step)
    c = "c" * 40

    w.journal.set_sharers(sid, "qbt", [("qbt", c), ("rt", H2)], [("rt", H2)])

    (args,) = [json.loads(r[0]) for r in w.cat.conn.execute("SELECT args FROM steps WHERE id=?", (sid,))]
    assert args["_sharers"] == [c, ["rt", H2]] and args["_forced_sharers"] == [["rt", H2]]
    assert w.journal.sharers(sid) == [("qbt", c), ("rt", H2)] and w.journal.forced_sharers(sid) == [("rt", H2)]
    old = {"torrent": H1, "instance": "qbt", "_sharers": [c, H2], "_forced_sharers": [H2]}  # before this change
    assert sharers_of(old) == [("qbt", c), ("qbt", H2)] and forced_sharers_of(old) == [("qbt", H2)]
    assert sharers_of({"instance": "qbt"}) == [] and forced_sharers_of({}) == []
