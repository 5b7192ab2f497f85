"""The reclaim loose ends: the policy.converge switch, and saved plans that name every seeding root."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from qbhook.config import PolicyConfig
from qbhook.decide import approved
from qbhook.decide.planner import make_plan
from qbhook.errors import ConfigError, PlanFileError
from tests.unit.test_converge_batch import _dups, _linked
from tests.unit.test_converge_batch import world as world
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_seeding_roots import cfg as cfg_with_roots
from tests.unit.world import LIB, P, S, World


def _library_copy_world() -> World:
    w = World()
    w.payload(S + "/movies", {"Film/film.mkv": "F"})
    w.file(LIB + "/Film (2021)/Film (2021).mkv", "F")  # an *arr import copied instead of linking
    w.torrent("a" * 40, S + "/movies", ["Film/film.mkv"])
    return w


# --------------------------------------------------------------------------- policy.converge


def test_converge_false_plans_would_converge_and_nothing_actionable():
    w = _library_copy_world()
    on = make_plan(w.snapshot(), PolicyConfig())
    assert on.groups[0].action == "converge" and on.summary()["converge"] == 1
    off = make_plan(w.snapshot(), PolicyConfig(converge=False))
    (g,) = off.groups
    assert g.action != "converge" and not g.steps and not g.actionable
    assert "would converge 1 duplicate inode(s) on stash" in g.reason and "policy.converge is false" in g.reason
    assert off.summary()["converge"] == 0 and off.summary()["bytes_freed"] == 0


def test_converge_false_with_a_tiny_batch_cap_is_still_a_report_not_a_skip():
    w = _library_copy_world()
    w.payload(S + "/other", {"x.mkv": "X"})
    w.file(LIB + "/X.mkv", "X")
    w.torrent("b" * 40, S + "/other", ["x.mkv"])
    plan = make_plan(w.snapshot(), PolicyConfig(converge=False, max_groups_per_run=1))
    assert [g.action for g in plan.groups] != ["skip"] * 2
    assert all("would converge" in g.reason and g.action != "skip" for g in plan.groups)


def test_converge_false_never_applies_a_converge_plan(world):
    w = world
    plan, pairs = _dups(w, 2)
    off = replace(w.cfg, policy=replace(w.cfg.policy, converge=False))
    from qbhook.move.executor import build_executor

    ex = build_executor(off, w.cat, {"qbt": w.qbt}, w.journal, sleep=w.clock.sleep, clock=w.clock)
    summary = ex.apply(plan)
    assert summary.run_id is None and summary.groups == []
    assert not any(_linked(s, lib) for s, lib in pairs)


@pytest.mark.parametrize("value,ok", [(False, True), (True, True), ("maybe", False), (3, False)])
def test_policy_converge_is_a_flag(tmp_path, value, ok):
    from tests.helpers import make_config

    if ok:
        c = make_config(tmp_path / "c.sqlite", tmp_path / "s", tmp_path / "p", policy={"converge": value})
        assert c.policy.converge is value
    else:
        with pytest.raises(ConfigError) as ei:
            make_config(tmp_path / "c.sqlite", tmp_path / "s", tmp_path / "p", policy={"converge": value})
        assert ei.value.key == "policy.converge" and "\n" not in ei.value.message


# --------------------------------------------------------------------------- saved plans: every seeding root


def test_a_saved_plan_records_every_seeding_root_of_each_pool():
    c = cfg_with_roots({"stash": ["/stash/seed", "/stash/links"], "pool": "/pool/seed"})
    assert approved.seeding_roots(c) == {"stash": ["/stash/seed", "/stash/links"], "pool": ["/pool/seed"]}


def _doc(pools):
    w = _library_copy_world()
    snap = w.snapshot()
    return json.loads(json.dumps(approved.document(make_plan(snap, PolicyConfig()), snap, pools)))


def test_a_plan_saved_with_two_roots_is_refused_when_a_root_differs():
    two = {"stash": [S, S + "-links"], "pool": [P]}
    doc = _doc(two)
    assert doc["pools"] == two
    assert approved.parse(doc, two).plan.groups[0].action == "converge"
    for other in ({"stash": [S], "pool": [P]}, {"stash": [S, "/stash/elsewhere"], "pool": [P]}):
        with pytest.raises(PlanFileError, match="made for other pools"):
            approved.parse(doc, other)


def test_an_old_plan_naming_one_root_per_pool_still_loads():
    old = _doc({"stash": S, "pool": P})  # how files were saved before: the first root as a string
    assert old["pools"] == {"stash": S, "pool": P}
    assert approved.parse(old, {"stash": [S, S + "-links"], "pool": [P]}).plan_id == old["plan_id"]
    with pytest.raises(PlanFileError, match="made for other pools"):
        approved.parse(old, {"stash": [S + "-links", S], "pool": [P]})  # its root is not the first any more
