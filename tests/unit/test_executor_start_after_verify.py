"""No torrent of a group runs on its new files before the whole group is verified (R49).

A promote links a group of torrents onto a library's copy on /stash and relocates them one by
one. Each relocation used to start its torrent again (as found) at its end: the first one then
seeded, so its client could write into the library's inodes (or ATM move them) while its
siblings still moved and before ``verify_group`` proved the group; a later failure rolled it
back from there. The planner now puts one ``start`` step per torrent after ``verify_group``
(``planner.build_steps``), each relocation leaves its torrent stopped, and the start puts each
back as its relocation found it. A plan without start steps (journaled by the previous version)
still has its relocations start their torrents, so an old unfinished run resumes as it was.
The plan is the real planner's, over the unit fakes of test_executor.py.
"""

from __future__ import annotations

import os

import pytest

from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.decide import planner, snapshot
from qbhook.move.journal import Journal
from tests.helpers import make_config, write
from tests.unit.test_executor import FILES, H1, H2, Crash, FakeClock, FakeQbt, FakeTorrent, World
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

LIBRARY_FOLDER = "media/Movie (2020)"


class RecordingQbt(FakeQbt):
    """Notes each start of a torrent and whether any torrent of the group was not yet at its
    verified place then (``moved_to``: hash -> its planned new save path)."""

    def __init__(self):
        super().__init__()
        self.moved_to: dict[str, str] = {}
        self.early: list[str] = []
        self.started_at: list[tuple[str, str]] = []  # (hash, its save path when started)

    def start(self, h, *, forced=False):
        behind = [x for x, to in self.moved_to.items() if self.t[x].save_path != to or self.t[x].script]
        if behind:
            self.early.append(f"{h} started while {behind} not yet at its new place")
        self.started_at.append((h, self.t[h].save_path))
        super().start(h, forced=forced)


@pytest.fixture
def promote(tmpfs, tmp_path):  # noqa: F811
    """Two cross-seeds of one payload (both running) on /pool; a library on /stash holds a copy
    of its files: the planner promotes the group onto the library's inodes."""
    stash, pool = tmpfs("stash"), tmpfs("pool")
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool, seeding="torrents/seeding")
    seed_s, seed_p = str(cfg.primary.seeding_root), str(cfg.cold.seeding_root)
    os.makedirs(seed_s)
    for rel, data in FILES:
        a = write(os.path.join(seed_p, rel).encode(), data)
        b = os.path.join(seed_p, "cross-seed", rel).encode()
        os.makedirs(os.path.dirname(b), exist_ok=True)
        os.link(a, b)
        if data:  # the *arr's import: a copy of its own on /stash
            write(os.path.join(str(stash), LIBRARY_FOLDER, os.path.basename(rel)).encode(), data)
    cat = Catalog.open(cfg.catalog, marker_roots=[stash, pool])
    qbt = RecordingQbt()
    files = [(rel, len(data), 1) for rel, data in FILES]
    qbt.add(FakeTorrent(H1, "Movie.2020", seed_p, list(files)))
    qbt.add(FakeTorrent(H2, "Movie.2020", os.path.join(seed_p, "cross-seed"), list(files)))
    w = World(cfg, cat, Journal(cat.conn), qbt, FakeClock(), stash, pool, seed_s, seed_p, str(stash / "media"))
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    plan = planner.make_plan(snapshot.build_snapshot(cfg, cat, [qbt]), cfg.policy)
    assert [g.action for g in plan.groups] == ["promote"], [(g.action, g.reason) for g in plan.groups]
    for h in (H1, H2):
        qbt.moved_to[h] = w.save(h, "stash")
    yield w, plan
    cat.close()


def _recorder(w: World, crash_at: tuple[str, int] | None = None):
    """An executor hook writing each step's acts into the client's call list (and crashing there)."""

    def hook(point, _gid, seq, step):
        w.qbt.calls.append((point, step.kind, seq))
        if (point, seq) == crash_at:
            raise Crash(f"{point} {seq}")

    return hook


def _assert_promoted_as_found(w: World) -> None:
    lib = os.lstat(os.path.join(w.lib, "Movie (2020)", "movie.mkv"))
    for h in (H1, H2):
        t = w.qbt.t[h]
        assert (t.save_path, t.stopped, t.progress, t.transient) == (w.save(h, "stash"), False, 1.0, None)
        assert os.lstat(os.path.join(w.save(h, "stash"), FILES[0][0])).st_ino == lib.st_ino  # the library's inode
        assert not os.path.lexists(os.path.join(w.save(h, "pool"), FILES[0][0]))
    assert w.qbt.violations == [] and w.qbt.early == []


def test_a_promote_starts_no_torrent_before_verify_group_has_passed(promote):
    w, plan = promote
    (g,) = plan.groups
    kinds = [s.kind for s in g.steps]
    verify = kinds.index("verify_group")
    summary = w.executor(hook=_recorder(w)).apply(plan)
    assert summary.status == "done", summary.groups_failed
    calls = w.qbt.calls
    verified = calls.index(("after_act", "verify_group", verify))
    starts = [i for i, c in enumerate(calls) if c[0] == "start"]
    assert [calls[i][1] for i in starts] == [H1, H2]  # each was running: each runs again
    assert all(i > verified for i in starts), [c for c in calls[:verified] if c[0] in ("start", "after_act")]
    _assert_promoted_as_found(w)
    assert kinds[verify + 1 : verify + 3] == ["start", "start"]  # the planner: one home for the order


def test_a_rollback_after_verify_group_starts_the_torrents_as_found_at_their_old_place(promote):
    # The group fails at its first start (the client refuses): nothing of it ran on the library's
    # files, and the rollback moves both back and starts them where they were.
    w, plan = promote
    real = w.qbt.start

    def refuse_at_new_place(h, *, forced=False):
        if w.qbt.t[h].save_path == w.save(h, "stash"):
            from qbhook.errors import QbtError

            raise QbtError("fake: start refused")
        real(h, forced=forced)

    w.qbt.start = refuse_at_new_place
    summary = w.executor().apply(plan)
    assert summary.groups_failed and summary.groups[0].status == "rolled_back"
    for h in (H1, H2):
        t = w.qbt.t[h]
        assert (t.save_path, t.stopped, t.progress) == (w.save(h, "pool"), False, 1.0)
    assert w.qbt.violations == []


def test_a_sibling_failing_its_move_rolls_back_a_group_none_of_which_ran_on_the_library(promote):
    # H2's recheck on the library's files ends under 100 %: the group rolls back. H1, relocated
    # before it, was never started there; both run again at their old place, as found.
    w, plan = promote
    w.qbt.fail_at[w.save(H2, "stash")] = 0.5
    summary = w.executor().apply(plan)
    assert summary.groups[0].status == "rolled_back", summary.groups_failed
    assert sorted(w.qbt.started_at) == [(H1, w.save(H1, "pool")), (H2, w.save(H2, "pool"))]  # once, back home
    for h in (H1, H2):
        t = w.qbt.t[h]
        assert (t.save_path, t.stopped, t.progress) == (w.save(h, "pool"), False, 1.0)
    assert w.qbt.violations == []


@pytest.mark.parametrize("point", ["after_intend", "after_act"])
@pytest.mark.parametrize("kind, n", [("relocate", 0), ("relocate", 1), ("verify_group", 0), ("start", 0), ("start", 1)])
def test_a_promote_killed_between_its_relocations_and_starts_resumes_without_an_early_start(promote, kind, n, point):
    w, plan = promote
    seq = [i for i, s in enumerate(plan.groups[0].steps) if s.kind == kind][n]
    with pytest.raises(Crash):
        w.executor(hook=_recorder(w, (point, seq))).apply(plan)
    run = w.journal.runs(1)[0]
    assert run.status == "running"  # as a killed process leaves it
    out = w.executor(hook=_recorder(w)).resume()
    assert [o.status for o in out] == ["done"], out[0].groups_failed
    assert w.journal.run(run.id).status == "done"
    for h in (H1, H2):
        assert w.qbt.count("set_location", h) == 1  # never issued twice
    _assert_promoted_as_found(w)


def without_start_steps(plan):
    """``plan`` as the version before start steps made it (the one old-plan helper): every
    relocation starts its own torrent, as found, at its end. Every other plan of the unit tests
    (the planner's, test_executor's ``demote_plan``) has them."""
    for g in plan.groups:
        g.steps = [s for s in g.steps if s.kind != "start"]
    return plan


def test_a_plan_without_start_steps_still_starts_each_torrent_after_its_move(promote):
    # A run journaled by the previous version: its relocations start their torrents themselves.
    w, plan = promote
    plan = without_start_steps(plan)
    summary = w.executor(hook=_recorder(w)).apply(plan)
    assert summary.status == "done", summary.groups_failed
    for h in (H1, H2):
        t = w.qbt.t[h]
        assert (t.save_path, t.stopped, t.progress) == (w.save(h, "stash"), False, 1.0)
    assert w.qbt.early  # as before: the first one ran while its sibling had not moved yet
