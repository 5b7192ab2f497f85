"""The planner keeps per-file steps as columns (``StepList``): the same steps, the same JSON, no
step object per file while the plan is held (issue 13: a million-file plan was ~150 MiB of them)."""

from __future__ import annotations

import dataclasses
import gc
import json

import pytest

from qbhook.config import PolicyConfig
from qbhook.decide.plan import Copy, Delete, Link, MkEmpty, Plan, StepList, VerifyView
from qbhook.decide.planner import make_plan
from tests.unit.world import S, World

POLICY = PolicyConfig()
PER_FILE = (Copy, Link, MkEmpty, Delete)


def siblings_world() -> World:
    """A demotion with copies, links (cross-seed siblings), an empty file and a file shared by path."""
    w = World()
    w.payload(S + "/movies", {"Show.S01/e1.mkv": "E1", "Show.S01/e2.mkv": "E2"})
    w.file(S + "/movies/Show.S01/empty.nfo", "", size=0)
    for e in ("e1", "e2"):
        w.link(S + f"/movies/Show.S01/{e}.mkv", S + f"/cross-seed/T/Show.REPACK/{e}.mkv")
    w.torrent("a" * 40, S + "/movies", ["Show.S01/e1.mkv", "Show.S01/e2.mkv", "Show.S01/empty.nfo"])
    w.torrent("b" * 40, S + "/cross-seed/T", ["Show.REPACK/e1.mkv", "Show.REPACK/e2.mkv"])
    w.torrent("c" * 40, S + "/movies", ["Show.S01/e1.mkv"])  # the same file by path: one delete
    return w


def test_column_steps_read_as_the_typed_steps_in_plan_order_and_round_trip():
    plan = make_plan(siblings_world().snapshot(), POLICY)
    (g,) = plan.groups
    assert g.action == "demote" and isinstance(g.steps, StepList)
    kinds = [s.kind for s in g.steps]
    assert (
        kinds
        == ["copy", "copy", "mkempty", "link", "link"]
        + ["verify_view"] * 3
        + ["relocate"] * 3
        + ["verify_group"]
        + ["start"] * 3  # every torrent stopped until the whole group is verified
        + ["tag"] * 3
        + ["delete"] * 5
        + ["prune_dirs"] * 2
    )
    links = [s for s in g.steps if isinstance(s, Link)]
    assert [s.src for s in links] == [
        p.replace(S, "/pool/data/media/torrents/seeding")
        for p in (
            S + "/movies/Show.S01/e1.mkv",
            S + "/movies/Show.S01/e2.mkv",
        )
    ]
    assert sorted(s.path for s in g.steps if isinstance(s, Delete)) == sorted(
        [S + "/movies/Show.S01/" + n for n in ("e1.mkv", "e2.mkv", "empty.nfo")]
        + [S + "/cross-seed/T/Show.REPACK/" + n for n in ("e1.mkv", "e2.mkv")]
    )
    # The JSON is the one the typed steps write, and reads back (a plain list) to the same JSON.
    back = Plan.from_dict(json.loads(plan.to_json()))
    assert isinstance(back.groups[0].steps, list) and len(back.groups[0].steps) == len(g.steps)
    assert back.to_json() == plan.to_json()
    assert [s.to_json() for s in g.steps] == [s.to_json() for s in back.groups[0].steps]
    view = next(s for s in g.steps if isinstance(s, VerifyView))
    assert view.blake3s[:2] == tuple(s.blake3 for s in g.steps if isinstance(s, Copy))


def test_a_held_plan_holds_no_step_object_per_file():
    w = siblings_world()
    plan = make_plan(w.snapshot(), POLICY)
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, PER_FILE)]
    assert plan.groups[0].steps and alive == []  # built when read, not kept
    assert sum(isinstance(s, PER_FILE) for s in plan.groups[0].steps) == 10


def test_steps_built_from_columns_stay_frozen():
    (g,) = make_plan(siblings_world().snapshot(), POLICY).groups
    for s in g.steps:
        if isinstance(s, PER_FILE):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(s, dataclasses.fields(s)[0].name, "/elsewhere")


def test_step_list_is_a_list_of_its_steps():
    (g,) = make_plan(siblings_world().snapshot(), POLICY).groups
    steps: StepList = g.steps
    eager = list(steps)
    assert len(steps) == len(eager) == 25
    assert [steps[i] for i in range(len(eager))] == eager
    assert steps[-1] == eager[-1] and steps[3:7] == eager[3:7]
    with pytest.raises(IndexError):
        steps[len(eager)]
    assert steps != eager[:-1] and steps != "not steps"
    steps.insert(1, eager[0])  # a change turns it into plain steps, in order
    assert list(steps) == [eager[0], *eager] and len(steps) == len(eager) + 1
    del steps[1]
    assert steps == eager
