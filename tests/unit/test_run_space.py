"""A run's copies fit on their target pools together, not each group alone (R11 #4): the planner
spends each group's bytes to copy from its pool's free space in plan order (``finish_run``,
across a sweep's chunks too), and the executor checks a whole group's copies against the
destination's free space before it writes a byte."""

import logging
import os
from collections import namedtuple
from dataclasses import replace
from types import SimpleNamespace

from qbhook.config import PolicyConfig
from qbhook.decide.plan import Copy
from qbhook.decide.planner import finish_run, make_plan, pool_room
from qbhook.move import executor as executor_mod
from qbhook.space import NO_RESERVE, Reserve, Space
from tests.unit.test_executor import demote_plan, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.world import P, S, World


def _world(sizes: list[int], free: int, first: int = 0) -> World:
    w = World()
    w.free["pool"] = free
    for i, size in enumerate(sizes, start=first):
        w.payload(S + f"/m{i}", {f"R{i}/f.mkv": f"X{i}"}, size=size)
        w.torrent(chr(ord("a") + i) * 40, S + f"/m{i}", [f"R{i}/f.mkv"])
    return w


def test_groups_of_one_run_together_never_plan_more_copies_than_the_pool_has_room_for():
    p = make_plan(_world([1000, 1000, 1000], 1500).snapshot(), PolicyConfig())
    moving = [g for g in p.groups if g.action == "demote"]
    assert len(moving) == 1 and sum(g.bytes_to_copy for g in moving) <= 1500
    waiting = [g for g in p.groups if g.action == "skip"]
    assert len(waiting) == 2
    for g in waiting:
        assert g.steps == [] and g.reason.startswith("waits: 1000 B to copy, 500 B left on pool after earlier groups")


def test_a_later_smaller_group_still_fits_in_what_is_left():
    p = make_plan(_world([1000, 1000, 400], 1500).snapshot(), PolicyConfig())
    acts = {g.bytes_to_copy: [] for g in p.groups}
    for g in p.groups:
        acts[g.bytes_to_copy].append(str(g.action))
    assert sorted(acts[1000]) == ["demote", "skip"] and acts[400] == ["demote"]
    assert p.summary()["bytes_to_copy"] == 1400


def test_exactly_the_free_space_fits_as_one_group_alone_does():
    p = make_plan(_world([1000, 500], 1500).snapshot(), PolicyConfig())
    assert sorted(str(g.action) for g in p.groups) == ["demote", "demote"]


def test_a_move_that_only_links_spends_no_room():
    w = _world([1000, 1000], 1000)
    w.payload(P + "/m1", {"R1/f.mkv": "X1"})  # the second payload's content is already on the cold pool
    p = make_plan(w.snapshot(), PolicyConfig())
    assert sorted((str(g.action), g.bytes_to_copy) for g in p.groups) == [("demote", 0), ("demote", 1000)]


def test_a_sweeps_chunks_spend_one_running_total():
    """A sweep plans in chunks (events.worker._plan_in_chunks), each chunk against the free space
    its own snapshot read: the last finish_run over every chunk's groups spends it once."""
    one, two = _world([1000], 1500), _world([1000], 1500, first=1)
    groups = make_plan(one.snapshot(), PolicyConfig()).groups + make_plan(two.snapshot(), PolicyConfig()).groups
    assert [str(g.action) for g in groups] == ["demote", "demote"]  # each chunk alone fits
    finish_run(groups, PolicyConfig(), pool_room(one.snapshot().pools))
    assert [str(g.action) for g in groups] == ["demote", "skip"]
    assert "500 B left on pool" in groups[1].reason


def test_a_pool_missing_from_the_room_given_has_none():
    groups = make_plan(_world([1000], 1500).snapshot(), PolicyConfig()).groups
    finish_run(groups, PolicyConfig(), {})
    assert str(groups[0].action) == "skip" and "0 B left on pool" in groups[0].reason


# --------------------------------------------------------------------------- the executor


def _copy_bytes(plan) -> int:
    return sum(s.size for g in plan.groups for s in g.steps if s.kind == "copy")


def _reading(monkeypatch, avail: int) -> list[tuple[str, str]]:
    """The destination's free space reads ``avail``; returns the roots it was read through."""
    read = []

    def space_at(root, pool=None):
        read.append((str(root), str(pool)))
        return Space(10 * avail + 1, avail, avail), os.stat("/")

    monkeypatch.setattr(executor_mod, "space_at", space_at)
    return read


def test_a_group_whose_copies_no_longer_fit_is_refused_before_a_byte_is_written(world, monkeypatch):  # noqa: F811
    plan = demote_plan(world)
    read = _reading(monkeypatch, _copy_bytes(plan) - 1)
    summary = world.executor().apply(plan)
    g = summary.groups[0]
    assert g.status == "rolled_back" and g.reason.startswith("not started: "), g.reason
    assert f"onto {world.seed_p}" in g.reason and summary.bytes_copied == 0
    assert read == [(world.seed_p, str(world.cfg.cold.path))]  # through the verified root, once
    assert [os.path.join(d, f) for d, _s, fs in os.walk(world.seed_p) for f in fs] == []
    assert world.journal.steps(summary.run_id) == []  # not a step intended
    assert all(t.save_path.startswith(world.seed_s) for t in world.qbt.torrents())


def test_a_group_whose_copies_just_fit_runs(world, monkeypatch):  # noqa: F811
    world.cfg = replace(world.cfg, policy=replace(world.cfg.policy, min_free=NO_RESERVE))  # no room kept back
    plan = demote_plan(world)
    _reading(monkeypatch, _copy_bytes(plan))
    summary = world.executor().apply(plan)
    assert summary.groups_done == ["g1"], summary.groups[0].reason


def _check_two_roots(monkeypatch, devs: dict[str, int], free: int, reserve: Reserve = NO_RESERVE) -> list[str]:
    """``Executor._check_room`` of a group copying 1000 B below each of two seeding roots of the
    cold pool (movies/, tv/), each root's filesystem read as ``devs`` says, ``free`` B free there
    of ``10 * free``, ``reserve`` kept free: -> the reasons it failed with (none: it fits)."""
    root = namedtuple("root", "path pool")  # hashable, as config.SeedingRoot
    roots = (root("/cold/t/movies", "/cold"), root("/cold/t/tv", "/cold"))
    monkeypatch.setattr(
        executor_mod,
        "space_at",
        lambda root, pool=None: (Space(10 * free, free, free), SimpleNamespace(st_dev=devs[root])),
    )
    failed: list[str] = []
    me = SimpleNamespace(
        ctx=SimpleNamespace(seeding_roots=roots, cfg=SimpleNamespace(policy=PolicyConfig(min_free=reserve))),
        log=logging.getLogger("test"),
        _fail=lambda _st, reason: failed.append(reason),
    )
    me._refuse = lambda *a, **k: executor_mod.Executor._refuse(me, *a, **k)  # its one refusal tail
    mine = [
        (0, Copy("/stash/a", "/cold/t/movies/M/", "a.mkv", 1000, None), None),
        (1, Copy("/stash/b", "/cold/t/tv/S/", "b.mkv", 1000, None), None),
    ]
    try:
        executor_mod.Executor._check_room(me, SimpleNamespace(plan=SimpleNamespace(group_id="g")), mine)
    except executor_mod._Failure:
        assert failed
    return failed


def test_two_seeding_roots_on_one_filesystem_spend_one_free_space(monkeypatch):
    # R12-3: each root's 1000 B was checked alone against the same 1500 B free, and both passed.
    (why,) = _check_two_roots(monkeypatch, {"/cold/t/movies": 7, "/cold/t/tv": 7}, 1500)
    assert why == "not started: 2.0 KiB to copy onto /cold/t/movies and /cold/t/tv, 1.5 KiB free"


def test_two_seeding_roots_on_two_filesystems_each_spend_their_own(monkeypatch):
    assert _check_two_roots(monkeypatch, {"/cold/t/movies": 7, "/cold/t/tv": 8}, 1500) == []
