"""make_plan's work per group, counted (not timed): what a 50k-torrent plan pays for (issue 13)."""

from __future__ import annotations

from qbhook.config import PolicyConfig
from qbhook.decide import converge, planner
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
