"""What the converge pass's per-group work costs beyond its rules: the pass plans 10,000 trivial
groups at issue 12's scale (one torrent, one duplicate, one library copy each), so work done
once per group that could be done once per plan is what is checked here, with the plan the same."""

from __future__ import annotations

import posixpath

import tests.unit.test_planner_properties as base
from qbhook.catalog.dupes import Copy, DupeSet
from qbhook.decide import facts, planner
from qbhook.decide.converge_pass import _held_under, convergence_plan
from tests.unit.test_converge_pass import _pass_snapshot
from tests.unit.world import World

GROUPS = 6


def _world() -> World:
    """GROUPS one-file torrents, each a seed-only copy of a library file: GROUPS converge groups."""
    w = World()
    for n in range(GROUPS):
        w.payload(base.S + "/movies", {f"T{n}/m{n}.bin": f"c{n}"})
        w.file(f"{base.LIB}/M{n}/m{n}.bin", f"c{n}")
        w.torrent(f"{n:040x}", base.S + "/movies", [f"T{n}/m{n}.bin"])
    return w


def test_the_cross_group_passes_read_no_step_of_a_group_that_only_relinks(monkeypatch):
    """A convergence links from, deletes, makes and copies nothing the planner's cross-group passes
    read: its steps are not walked by each of them (four walks of every group's steps)."""
    walked = []
    for name in ("view_paths", "links_from", "deleted_paths", "copied"):
        real = getattr(planner, name)
        monkeypatch.setattr(planner, name, lambda steps, real=real: walked.append(list(steps)) or real(steps))
    groups = convergence_plan(_pass_snapshot(_world())).groups
    assert [g.action for g in groups] == ["converge"] * GROUPS
    assert walked == []


def test_a_snapshot_asks_for_each_pools_seeding_roots_test_once(monkeypatch):
    """``seeding_pool_of`` and ``nested_root`` (asked for every group's files) test paths with one
    ``root_holding`` per pool per snapshot, not one looked up per path."""
    asked = []
    real = facts.root_holding
    monkeypatch.setattr(facts, "root_holding", lambda roots: asked.append(roots) or real(roots))
    snap = _pass_snapshot(_world())
    asked.clear()
    groups = convergence_plan(snap).groups
    assert len(groups) == GROUPS
    for i in snap.inodes.values():
        for p in i.seeding_paths:
            assert snap.seeding_pool_of(p).name == "stash" and snap.nested_root(p, i.fsid) is None
    assert len(asked) <= len(snap.pools)


def test_the_folders_above_the_duplicates_are_those_posixpath_names():
    """``_held_under`` climbs with posixpath.dirname's answer, spelled inline: the same folders."""
    paths = ["/a/b/c", "//a/b", "/a//b/c", "/x/y/", "/", "/top"]
    sets = [DupeSet(1, "h", [Copy(1, "fs", 1, 1, [], paths)])]
    want = set()
    for p in paths:
        while p not in want and p != "/":
            want.add(p)
            p = posixpath.dirname(p)
    assert _held_under(sets) == want
