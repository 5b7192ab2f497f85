"""The write-place look once a move's deletes began (fix-w132, then R101).

Nothing comes back once a delete ran, so a writer found then stops the rest and fails the group,
named; a torrent only checking or moving at the new place pauses it instead (resume looks again):
waited for inside a delete step, the next unlink ran on newcomer and placement looks as old as the
wait, and a check longer than the budget failed the group for good though it ends by itself. The
look after the last delete is this attempt's: a resume replaying a group an earlier attempt ended
does not judge it again.
"""

from __future__ import annotations

import os
import time

import pytest

from qbhook.catalog.indexer import sync_client
from qbhook.errors import QbtUnreachable
from tests.unit.test_executor import (  # noqa: F401  (fixture)
    FILES,
    H1,
    H2,
    Crash,
    FakeQbt,
    FakeTorrent,
    demote_plan,
    single_torrent_group,
    world,
)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_write_place_live import MOVIE, E, _live, _pack

N = "9" * 40


def test_a_check_at_the_new_place_during_the_deletes_pauses_the_group_before_its_next_unlink(world):  # noqa: F811
    """R101 F1: the wait for it ran inside the delete step, and the unlink after it went on the
    newcomer look taken before: a torrent added on the old files during the wait lost one."""
    w = world
    q = _live(w, set())
    plan = demote_plan(w)
    seen = {"del": 0}

    def hook(point, _gid, _seq, step):
        if step.kind != "delete":
            return
        if point == "after_act":
            w.clock.now += 31
        if point == "before":
            if seen["del"] == 1:  # cross-seed injects E at the new place, checking
                w.qbt.add(
                    FakeTorrent(E, "Movie.2020", w.seed_p, [(MOVIE, 300_000, 1)], progress=0.4, transient="checkingUP")
                )
            seen["del"] += 1

    polls = []

    def torrents(*a, **k):
        e = q.t.get(E)
        if e is not None and e.transient and (a[0] if a else k.get("hashes")) is None:
            polls.append(w.clock.now)
            if len(polls) == 3:  # were it waited for: a newcomer on the old files appears
                files = [(rel, len(d), 1) for rel, d in FILES]
                w.qbt.add(FakeTorrent(N, "Movie.2020", w.seed_s, files, added_on=int(time.time())))
            if len(polls) > 4:
                e.transient, e.progress = None, 1.0
        return FakeQbt.torrents(q, *a, **k)

    q.torrents = torrents
    (g,) = w.executor(hook=hook).apply(plan).groups
    assert g.paused and "waiting for its check or move to end" in g.reason, g.reason
    assert all(os.path.lexists(os.path.join(w.seed_s, rel)) for rel, _d in FILES[1:])


@pytest.mark.parametrize("at", ["during", "end"])
def test_a_check_longer_than_the_budget_after_deletes_began_pauses_and_resume_finishes(world, at):  # noqa: F811
    """R101 F2: a cross-seed queued behind other checks (qBittorrent checks one at a time) still
    checking when the budget ran out failed the group for good, its old links left unseeded."""
    w = world
    q = _live(w, set())
    plan = demote_plan(w)
    n_del = sum(1 for s in plan.groups[0].steps if s.kind == "delete")
    seen = {"del": 0}

    def hook(point, _gid, _seq, step):
        if point == "after_act" and step.kind == "delete" and at == "during":
            w.clock.now += 31
        if point == "before" and step.kind == "delete":
            if seen["del"] == (1 if at == "during" else n_del - 1):
                w.qbt.add(
                    FakeTorrent(E, "Movie.2020", w.seed_p, [(MOVIE, 300_000, 1)], progress=0.0, transient="checkingUP")
                )
            seen["del"] += 1
        if point == "before" and step.kind == "prune_dirs" and at == "end":
            w.clock.now += 5  # the last look is over 2 s old at the group's end

    q.torrents = lambda *a, **k: FakeQbt.torrents(q, *a, **k)
    (g,) = w.executor(hook=hook).apply(plan).groups
    assert g.paused and g.status == "failed", (g.status, g.reason)
    e = q.t[E]
    e.transient, e.progress = None, 1.0  # the check ends at 100 %: it writes nothing
    w.clock.now += 400
    (run,) = w.executor().resume()
    assert run.groups[0].status == "done", run.groups[0].reason
    assert not any(os.path.lexists(os.path.join(w.save(h, "stash"), rel)) for h in (H1, H2) for rel, _d in FILES)


def _g1_done_g2_killed(w):
    """g1 (a demote beside a torrent skipping a file) done, the run killed in g2: (that torrent, the
    killing hook, for a resume to be killed again)."""
    _live(w, {"d" * 40})
    d = _pack(w)
    sync_client(w.cat, w.qbt)
    plan = demote_plan(w)
    plan.groups.append(single_torrent_group(w))

    def hook(p, gid, _seq, step):
        if gid == "g2" and step.kind == "relocate" and p == "after_intend":
            raise Crash()

    with pytest.raises(Crash):
        w.executor(hook=hook).apply(plan)
    return d, hook


def test_a_resume_does_not_judge_again_a_group_an_earlier_attempt_ended(world):  # noqa: F811
    """R101 F3: a resume replays every group of the run; the look after the last delete judged a
    group done long before by a writer come since, and the run failed (exit 5)."""
    w = world
    d, hook = _g1_done_g2_killed(w)
    assert w.journal.group_status("g1")[0] == "done"
    d.files[1] = (MOVIE, 7, 0)  # later: a rename onto g1's new place
    (run,) = w.executor().resume()
    assert run.groups[0].status == "done" and w.journal.group_status("g1")[0] == "done"


def test_a_group_paused_by_its_last_look_says_resume_looks_again(world):  # noqa: F811
    """R101 F4: it said resume "finishes the deletes", with none left."""
    w = world
    plan = demote_plan(w)
    down = {"now": False}

    def hook(point, _gid, _seq, step):
        if point == "before" and step.kind == "prune_dirs":
            w.clock.now += 5
            down["now"] = True

    real = w.qbt.torrents

    def torrents(*a, **k):
        if down["now"]:
            raise QbtUnreachable("qbt: connection refused")
        return real(*a, **k)

    w.qbt.torrents = torrents
    (g,) = w.executor(hook=hook).apply(plan).groups
    assert g.paused and g.reason.endswith("qbhook resume looks again once this passes)"), g.reason
    down["now"] = False
    assert w.executor().resume()[0].groups[0].status == "done"


def test_a_group_paused_by_its_last_look_is_looked_at_again_by_resume(world):  # noqa: F811
    """R103 F1: paused by the look after the last delete (a torrent checking at the new place),
    the resume said done without looking, though the check had ended at 40 % and the torrent was
    downloading into the group's only copy."""
    w = world
    q = _live(w, set())
    plan = demote_plan(w)
    n_del = sum(1 for s in plan.groups[0].steps if s.kind == "delete")
    seen = {"del": 0}

    def hook(point, _gid, _seq, step):
        if point == "before" and step.kind == "delete":
            if seen["del"] == n_del - 1:
                w.qbt.add(
                    FakeTorrent(E, "Movie.2020", w.seed_p, [(MOVIE, 300_000, 1)], progress=0.0, transient="checkingUP")
                )
            seen["del"] += 1
        if point == "before" and step.kind == "prune_dirs":
            w.clock.now += 5

    q.torrents = lambda *a, **k: FakeQbt.torrents(q, *a, **k)
    (g,) = w.executor(hook=hook).apply(plan).groups
    assert g.paused, g.reason
    e = q.t[E]
    e.transient, e.progress = None, 0.4  # its check ended at 40 %: downloading into the group's file
    w.clock.now += 400
    (run,) = w.executor().resume()
    r = run.groups[0]
    assert r.status == "failed" and "found after the last delete" in r.reason, r.reason


def test_a_resume_after_a_kill_past_the_last_delete_takes_the_last_look(world):  # noqa: F811
    """R103 F1: killed after the last delete, the end look never ran in any attempt; the resume
    (prune_dirs only) skipped it and said done with a torrent at 40 % at the new place."""
    w = world
    q = _live(w, set())
    plan = demote_plan(w)

    def hook(point, _gid, _seq, step):
        if point == "before" and step.kind == "prune_dirs":
            raise Crash()

    q.torrents = lambda *a, **k: FakeQbt.torrents(q, *a, **k)
    with pytest.raises(Crash):
        w.executor(hook=hook).apply(plan)
    w.qbt.add(FakeTorrent(E, "Movie.2020", w.seed_p, [(MOVIE, 300_000, 1)], progress=0.4))
    w.clock.now += 400
    (run,) = w.executor().resume()
    r = run.groups[0]
    assert r.status == "failed" and "found after the last delete" in r.reason, r.reason


def test_a_done_group_killed_while_a_resume_replays_it_stays_done(world, monkeypatch):  # noqa: F811
    """R105: the replay of a done group journaled it running again, so a kill during that replay
    left it 'running' and the next resume judged it by a writer come since (failed, exit 5)."""
    from qbhook.move.executor import Executor

    w = world
    d, hook = _g1_done_g2_killed(w)
    d.files[1] = (MOVIE, 7, 0)  # later: a rename onto g1's new place
    real, kill = Executor._deleted_before, {"on": True}

    def deleted_before(self, mine):  # SIGTERM while the resume replays g1
        if kill["on"]:
            kill["on"] = False
            raise Crash()
        return real(self, mine)

    monkeypatch.setattr(Executor, "_deleted_before", deleted_before)
    with pytest.raises(Crash):
        w.executor(hook=hook).resume()
    assert w.journal.group_status("g1")[0] == "done"
    (run,) = w.executor().resume()
    assert run.groups[0].status == "done" and w.journal.group_status("g1")[0] == "done"
