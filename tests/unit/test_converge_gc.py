"""No pass of Python's cyclic collector walks a convergence's snapshot or plan (``decide.heap``).

A snapshot and a plan are a few objects per file, alive to the end, with no garbage cycle
among them; every full pass of the collector walks all of them again. At 10,000 duplicate
pairs that was ~0.9 s of the snapshot and ~0.9 s of the apply phase (docs/benchmarks.md
section 9). The build runs with the collector paused; a run leaves the plan it was handed out
of every pass (frozen) and still collects what it allocates itself.
"""

from __future__ import annotations

import gc
import weakref

from qbhook.decide import snapshot as snapshot_mod
from qbhook.decide.heap import collector_paused, heap_frozen
from qbhook.decide.snapshot import build_snapshot
from qbhook.move import executor as executor_mod
from qbhook.move import fsops
from tests.unit.test_converge_batch import _dups, _linked, world  # noqa: F401  (fixture)
from tests.unit.test_converge_snapshot_cost import PAIRS, bed  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)


def _collections_inside(monkeypatch, owner, name: str):
    """(the generation of every collection that starts while ``owner.name`` runs, the callback)."""
    inside, seen = [False], []
    real = getattr(owner, name)

    def wrapped(*a, **k):
        inside[0] = True
        try:
            return real(*a, **k)
        finally:
            inside[0] = False

    def cb(phase, info):
        if phase == "start" and inside[0]:
            seen.append(info["generation"])

    monkeypatch.setattr(owner, name, wrapped)
    gc.callbacks.append(cb)  # the caller removes it
    return seen, cb


def test_a_convergence_build_runs_no_collection_pass(bed, monkeypatch):  # noqa: F811
    # Thresholds low enough that the build's allocations would start many passes, every kind.
    old = gc.get_threshold()
    gc.set_threshold(50, 2, 2)
    seen, cb = _collections_inside(monkeypatch, snapshot_mod.SnapshotBuilder, "build")
    try:
        snap = build_snapshot(bed.cfg, bed.cat, [bed.qbt])
    finally:
        gc.callbacks.remove(cb)
        gc.set_threshold(*old)
    assert len(snap.torrents) == PAIRS and all(t.files[0].inode in snap.inodes for t in snap.torrents)
    assert seen == [], f"collection passes during the build, by generation: {seen}"
    assert gc.isenabled()  # back on after the build


def test_a_run_keeps_the_plan_out_of_every_collection_and_hands_it_back(world, monkeypatch):  # noqa: F811
    w = world
    plan, pairs = _dups(w, 6)
    group = plan.groups[0]  # a tracked object the plan is made of
    seen: list[bool] = []
    real = fsops.Relinker.relink

    def relink(self, *a, **k):
        # In no generation the collector walks: frozen for the run.
        seen.append(gc.get_freeze_count() > 0 and not any(o is group for g in (0, 1, 2) for o in gc.get_objects(g)))
        return real(self, *a, **k)

    monkeypatch.setattr(fsops.Relinker, "relink", relink)
    summary = w.executor().apply(plan)
    assert summary.status == "done" and all(_linked(s, lib) for s, lib in pairs)
    assert seen == [True] * len(pairs)
    assert gc.get_freeze_count() == 0 and any(o is group for o in gc.get_objects(2))  # handed back


def test_a_converge_batch_runs_no_collection_pass(world, monkeypatch):  # noqa: F811
    # A batch's relinks keep what they allocate to the batch's end: no pass starts among them, and
    # the collector is on again after it. Thresholds low enough that any pass would be seen.
    w = world
    plan, pairs = _dups(w, 12)
    old = gc.get_threshold()
    gc.set_threshold(10, 2, 2)
    seen, cb = _collections_inside(monkeypatch, executor_mod.Executor, "_batch_act")
    try:
        summary = w.executor().apply(plan)
    finally:
        gc.callbacks.remove(cb)
        gc.set_threshold(*old)
    assert summary.status == "done" and all(_linked(s, lib) for s, lib in pairs)
    assert seen == [], f"collection passes during the batch, by generation: {seen}"
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_frozen_run_still_collects_the_cycles_it_makes():
    class Node:
        pass

    with heap_frozen():
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
        gc.collect()
        assert ref() is None  # a cycle made inside the run is freed inside it
    assert gc.get_freeze_count() == 0


def test_pausing_nests_and_restores_what_it_found():
    assert gc.isenabled()
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause ends into the outer one
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()


def test_what_a_pause_built_is_not_walked_by_the_next_young_pass():
    kept = []
    with collector_paused():
        kept.extend([k] for k in range(5000))  # tracked containers, alive after the pause
    young, _middle, _old = gc.get_count()
    # On the base: all 5,000 still young, so the next allocation started a pass over them.
    assert young < 700, young
    assert any(o is kept[-1] for o in gc.get_objects(2))
    with heap_frozen():  # inside a freeze the pause leaves the frozen objects where they are
        with collector_paused():
            pass
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_a_pause_inside_a_run_does_not_count_the_frozen_heap(monkeypatch):
    # gc.get_freeze_count() walks every frozen object (a whole snapshot and plan): a converge
    # batch's pause, inside the run's heap_frozen, must know the freeze is there without it.
    with heap_frozen():
        calls = []
        monkeypatch.setattr(gc, "get_freeze_count", lambda: calls.append(1) or 1)
        with collector_paused():
            pass
        monkeypatch.undo()
        assert calls == [] and gc.get_freeze_count() > 0  # and the freeze was left where it was
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_the_set_based_pass_runs_no_collection_pass_from_its_scan_to_its_plan(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    # qbhook converge: the scan's stats, the duplicate sets, the torrents' facts and the plan are
    # alive to the end like a snapshot's; its passes over them were 0.5-0.75 s at 10,000 pairs.
    from qbhook.decide import converge_pass
    from tests.unit import test_executor as te
    from tests.unit.test_converge_pass import _library_copy

    w = te._make_world(tmpfs, tmp_path)
    old = gc.get_threshold()
    gc.set_threshold(50, 2, 2)
    seen, cb = _collections_inside(monkeypatch, converge_pass, "plan_convergence")
    try:
        _library_copy(w)
        run = converge_pass.plan_convergence(w.cfg, w.cat, [w.qbt])  # scans first, then hashes
    finally:
        gc.callbacks.remove(cb)
        gc.set_threshold(*old)
        w.cat.close()
    assert [g.action for g in run.plan.groups] == ["converge"] and run.catalog_use.source == "scanned"
    assert seen == [], f"collection passes during the pass, by generation: {seen}"
    assert gc.isenabled()
