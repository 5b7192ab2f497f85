"""A repair's twins and the links a failed repair keeps, across busy groups and resumes (R102).

A failed repair keeps a link another group of the run holds: one done, or one begun whose own
make step there is done. Begun alone held paths it never linked, for a group that then failed or
was busy, and the library's inodes stayed under a torrent stopped under 100 % (R99's hazard). A
group busy in a resume keeps the state its run journaled: a done one's links were taken back
from under its seeding torrent.
"""

from __future__ import annotations

import os

import pytest

from qbhook.move.executor import Executor
from qbhook.move.locks import group_lock
from tests.unit.test_executor import FILES, H1, H2, Crash, world  # noqa: F401
from tests.unit.test_fsops import tmpfs  # noqa: F401
from tests.unit.test_repair_executor import _missing_pair
from tests.unit.test_repair_write_place import _fails_first, _twins


def _links(w, lib):
    return {rel: os.lstat(p).st_nlink for rel, p in lib.items()}


def test_links_kept_for_a_running_group_that_then_fails(world, monkeypatch):  # noqa: F811
    """First attempt: gA (H1) busy, gB (H2) begun (RUNNING journaled) and killed before its check.
    Resume: gA takes H2 for its twin (gB RUNNING), links, recheck 50 %, undo KEEPS links for gB
    (RUNNING in _HOLDING). gB then refused (H1 no twin once gA failed) and fails: nobody takes
    the library links back."""
    w = world
    lib = _twins(w)
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s)))
    ga, gb = (g.group_id for g in plan.groups)
    real = Executor._check_room

    def killed(self, st, mine):
        if st.plan.group_id == gb:
            raise Crash  # kill -9 / power loss while gB begins
        return real(self, st, mine)

    monkeypatch.setattr(Executor, "_check_room", killed)
    with group_lock(w.cfg, ga), pytest.raises(Crash):
        w.executor(group_lock_wait=0.5).apply(plan)
    monkeypatch.undo()
    (run,) = w.executor(hook=_fails_first(w, ga, gb)).resume()
    assert all(n == 1 for n in _links(w, lib).values()), "library inodes left linked under failed repairs"


def test_a_done_group_busy_in_a_resume_stops_holding(world, monkeypatch):  # noqa: F811
    """_note_states overwrites a journaled DONE with BUSY: a later failing repair removes the links
    the DONE (seeding) torrent stands on."""
    w = world
    lib = _twins(w)
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s)))
    g1, g2 = (g.group_id for g in plan.groups)
    real = Executor._check_room
    kill_at = {"gid": None}

    def killed(self, st, mine):
        if st.plan.group_id == kill_at["gid"]:
            raise Crash
        return real(self, st, mine)

    monkeypatch.setattr(Executor, "_check_room", killed)
    # attempt 1: g1 begun, killed before its check
    kill_at["gid"] = g1
    with pytest.raises(Crash):
        w.executor().apply(plan)
    # attempt 2: g1 busy (kept RUNNING), g2 links (H1 its twin), killed before its recheck
    kill_at["gid"] = None

    def kill_g2_repair(point, gid, _seq, step):
        if point == "before" and gid == g2 and step.kind == "repair":
            raise Crash

    with group_lock(w.cfg, g1), pytest.raises(Crash):
        w.executor(hook=kill_g2_repair, group_lock_wait=0.5).resume()
    # attempt 3: g1 done (H1 seeds on g2's links), killed as g2 begins
    kill_at["gid"] = g2
    with pytest.raises(Crash):
        w.executor().resume()
    assert w.journal.group_status(g1)[0] == "done"
    # attempt 4: g1 busy; g2's recheck ends at 50 %
    kill_at["gid"] = None
    with group_lock(w.cfg, g1):
        (run,) = w.executor(hook=_fails_first(w, g2, g1), group_lock_wait=0.5).resume()
    assert all(os.path.lexists(os.path.join(w.seed_s, rel)) for rel, _ in FILES), "H1's files removed"


def test_links_kept_for_a_busy_group_the_run_closes_without(world, monkeypatch):  # noqa: F811
    w = world
    lib = _twins(w)
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s)))
    g1, g2 = (g.group_id for g in plan.groups)
    real = Executor._check_room

    def killed(self, st, mine):
        if st.plan.group_id == g1:
            raise Crash
        return real(self, st, mine)

    monkeypatch.setattr(Executor, "_check_room", killed)
    with pytest.raises(Crash):
        w.executor().apply(plan)
    monkeypatch.undo()
    with group_lock(w.cfg, g1):
        (run,) = w.executor(hook=_fails_first(w, g2, g1), group_lock_wait=0.5).resume()
    assert all(n == 1 for n in _links(w, lib).values()), "library inodes left under H2 stopped at 50%"


def test_cost_file_lists_once_a_look(world, monkeypatch):  # noqa: F811
    from collections import Counter

    w = world
    lib = _twins(w)
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s)))
    asked, looks = Counter(), Counter()
    real_files, real_look = type(w.qbt).files, Executor._live_writer

    def files(self, h):
        if looks["in"]:
            asked[(looks["n"], h)] += 1
        return real_files(self, h)

    def look(self, *a, **k):
        looks["n"] += 1
        looks["in"] = 1
        try:
            return real_look(self, *a, **k)
        finally:
            looks["in"] = 0

    monkeypatch.setattr(type(w.qbt), "files", files)
    monkeypatch.setattr(Executor, "_live_writer", look)
    w.executor().apply(plan)
    assert max(asked.values()) == 1


def test_two_twins_failing_after_interleaved_attempts_leave_no_library_link(world):  # noqa: F811
    """R103 F2: gA linked and was killed; gA busy, gB's links found gA's ("already") and gB was
    killed; then both rechecks ended at 50 %. gA kept its links for gB (begun, its step done) and
    gB's undo leaves "already" rows: the library's inodes stayed under both stopped torrents."""
    from tests.unit.test_repair_executor import _missing_pair
    from tests.unit.test_repair_write_place import _twins

    w = world
    lib = _twins(w)
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s)))
    ga, gb = (g.group_id for g in plan.groups)
    kill = {"gid": ga}

    def hook(point, gid, _seq, step):
        if point == "before" and step.kind == "repair":
            if gid == kill["gid"]:
                raise Crash
            w.qbt.fail_at[w.seed_s] = 0.5  # every recheck ends at 50 %

    with pytest.raises(Crash):
        w.executor(hook=hook).apply(plan)
    kill["gid"] = gb
    with group_lock(w.cfg, ga), pytest.raises(Crash):
        w.executor(hook=hook, group_lock_wait=0.5).resume()
    kill["gid"] = None
    (out,) = w.executor(hook=hook).resume()
    assert [g.status for g in out.groups] == ["failed", "failed"]
    assert all(n == 1 for n in _links(w, lib).values()), "library inodes left linked under failed repairs"
