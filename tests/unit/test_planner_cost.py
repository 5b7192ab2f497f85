"""make_plan's work per group, counted (not timed): what a 50k-torrent plan pays for (issue 13)."""

from __future__ import annotations

import dataclasses
import sys

from qbhook.config import PolicyConfig
from qbhook.decide import converge, plan, planner
from qbhook.decide.plan import Action, Converge, ConvergeKeep, GroupPlan
from qbhook.decide.planner import make_plan
from tests.unit.world import LIB, S, World

POLICY = PolicyConfig()


def _count(monkeypatch, module, name: str) -> list:
    calls: list = []
    real = getattr(module, name)

    def spy(*a, **kw):
        calls.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_convergence_is_looked_for_only_where_a_content_has_two_inodes(monkeypatch):
    calls = _count(monkeypatch, converge, "plan_group")
    w = World()
    for n in range(5):  # staying groups with no duplicate anywhere: nothing to converge
        w.payload(S + f"/m{n}", {"x.mkv": f"X{n}"})
        w.link(S + f"/m{n}/x.mkv", LIB + f"/X{n}.mkv")
        w.torrent(f"{n}" * 40, S + f"/m{n}", ["x.mkv"])
    w.payload(S + "/a", {"d.mkv": "D"})
    w.link(S + "/a/d.mkv", LIB + "/D.mkv")
    w.payload(S + "/b", {"d.mkv": "D"})  # a seed-only duplicate of a library's inode
    w.torrent("a" * 40, S + "/a", ["d.mkv"])
    w.torrent("b" * 40, S + "/b", ["d.mkv"])
    p = make_plan(w.snapshot(), POLICY)
    assert len(calls) == 2  # a's and b's groups only
    assert sorted(g.action for g in p.groups) == ["converge"] + ["stay"] * 6


def test_the_target_folder_is_mapped_once_per_save_path(monkeypatch):
    planner._mapped.cache_clear()
    calls = _count(monkeypatch, planner, "map_to_pool")
    w = World()
    for n in range(6):
        w.payload(S + "/movies", {f"M{n}/m.mkv": f"M{n}"})
        w.torrent(f"{n}" * 40, S + "/movies", [f"M{n}/m.mkv"])
    p = make_plan(w.snapshot(), POLICY)
    assert [g.action for g in p.groups] == ["demote"] * 6
    assert len(calls) == 1
    folders = {s.to_dir for g in p.groups for s in g.steps if s.kind == "copy"}
    assert folders == {"/pool/data/media/torrents/seeding/movies/"}


def _python_calls(fn) -> list[str]:
    """The Python functions ``fn()`` runs (names), through the profiler hook: counted, not timed."""
    names: list[str] = []

    def hook(frame, event, _arg):
        if event == "call":
            names.append(frame.f_code.co_name)

    sys.setprofile(hook)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return names


def _converge_group() -> GroupPlan:
    keep = ConvergeKeep("/lib/m.bin", "fs", 1, True)
    step = Converge("/s/m.bin", "fs", 2, 4, 1, "h", keep)
    return GroupPlan("g", ["a" * 40], ["m"], Action.CONVERGE, "", steps=[step])


def test_the_cross_group_readers_take_a_list_of_steps_without_an_abc_check():
    # The cross-group passes ask these of every group's steps (a convergence pass: 10,000 lists);
    # isinstance against StepList (a MutableSequence) ran abc's Python code on each call.
    g = _converge_group()
    for read in (plan.links_from, plan.copied, plan.deleted_paths, plan.view_paths):
        names = _python_calls(lambda read=read: list(read(g.steps)))
        assert "__instancecheck__" not in names, read.__name__
        assert list(read(g.steps)) == []  # a convergence links from, copies, deletes and views nothing


def test_actionable_reads_no_member_of_action_per_call(monkeypatch):
    # Asked 7 times of each group by the passes that end a plan; each member read off the enum
    # class (4 per call) cost more than the rest of the test (Python 3.11).
    groups = [dataclasses.replace(_converge_group(), action=a) for a in Action]
    monkeypatch.setattr(plan, "Action", None)
    assert [g.action.value for g in groups if g.actionable] == ["demote", "promote", "converge", "repair"]


def test_resolve_cross_group_reads_the_actions_once_not_per_group(monkeypatch):
    # A convergence pass ends with it over 10,000 groups; each member read off the enum class is a
    # descriptor call (Python 3.11), and it read 4 per group.
    reads: list[str] = []

    class Counted:
        def __getattr__(self, name):
            reads.append(name)
            return getattr(Action, name)

    monkeypatch.setattr(converge, "Action", Counted())
    groups = [dataclasses.replace(_converge_group(), group_id=f"g{n}") for n in range(20)]
    converge.resolve_cross_group(groups)
    assert len(reads) <= 3
    assert all(g.action == "converge" for g in groups)  # nothing moves their kept inode
