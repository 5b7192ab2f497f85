"""Torrents missing from a listing (``Snapshot.missing``, ``planner.missing_holds``): a group that
shares a file with what one last used stays for ``MISSING_GRACE_S``, naming it; then it is gone.
Plain data tables, no I/O: the clock is the snapshot's ``now``."""

from dataclasses import replace

from qbhook.config import PolicyConfig
from qbhook.decide import planner
from qbhook.decide.facts import MISSING_GRACE_S, MissingTorrent
from qbhook.decide.planner import make_plan
from tests.unit.world import S, World

NOW = 1_000_000.0
A, B = "a" * 40, "b" * 40


def _world():
    """A, alone in the listing, on the primary pool: it would demote."""
    w = World()
    w.payload(S + "/movies", {"Movie/m.mkv": "M"})
    w.torrent(A, S + "/movies", ["Movie/m.mkv"], name="Movie")
    return w


def _missing(since: float, *, paths=(), inodes=()) -> MissingTorrent:
    return MissingTorrent("default", B, "Movie.xseed", since, frozenset(paths), frozenset(inodes))


def test_a_group_sharing_a_path_with_a_missing_torrent_stays_naming_it():
    snap = replace(_world().snapshot(NOW), missing=(_missing(NOW - 60, paths=[S + "/movies/Movie/m.mkv"]),))
    (g,) = make_plan(snap, PolicyConfig()).groups
    assert g.action == "stay" and not g.steps
    assert g.reason.startswith(f"torrent {B} (Movie.xseed) missing from default's listing since 13:45 UTC; ")
    assert S + "/movies/Movie/m.mkv" in g.reason


def test_a_group_sharing_an_inode_with_a_missing_torrent_stays():
    w = _world()
    key = w.paths[S + "/movies/Movie/m.mkv"]
    snap = replace(w.snapshot(NOW), missing=(_missing(NOW - 60, paths=[S + "/xseed/m.mkv"], inodes=[key]),))
    (g,) = make_plan(snap, PolicyConfig()).groups
    assert g.action == "stay" and B in g.reason


def test_after_the_grace_the_missing_torrent_is_gone_and_the_group_demotes():
    gone = _missing(NOW - MISSING_GRACE_S, paths=[S + "/movies/Movie/m.mkv"])
    (g,) = make_plan(replace(_world().snapshot(NOW), missing=(gone,)), PolicyConfig()).groups
    assert g.action == "demote"
    just_within = replace(gone, since=NOW - MISSING_GRACE_S + 1)
    (g,) = make_plan(replace(_world().snapshot(NOW), missing=(just_within,)), PolicyConfig()).groups
    assert g.action == "stay"


def test_a_missing_torrent_that_shares_nothing_holds_nothing():
    snap = replace(_world().snapshot(NOW), missing=(_missing(NOW - 60, paths=[S + "/tv/Other/o.mkv"]),))
    (g,) = make_plan(snap, PolicyConfig()).groups
    assert g.action == "demote"


def test_a_torrent_listed_again_is_not_missing():
    w = _world()
    w.torrent(B, S + "/movies", ["Movie/m.mkv"], name="Movie.xseed")
    snap = replace(w.snapshot(NOW), missing=(_missing(NOW - 60, paths=[S + "/movies/Movie/m.mkv"]),))
    (g,) = make_plan(snap, PolicyConfig()).groups
    assert g.action == "demote" and sorted(g.torrents) == [A, B]


def test_nothing_missing_asks_nothing_of_any_group(monkeypatch):
    """The usual plan: no torrent missing, so no group's files are looked at for one."""
    assert planner.missing_holds(_world().snapshot(NOW)) is None
    asked = []
    real = planner.missing_holds
    monkeypatch.setattr(planner, "missing_holds", lambda snap: asked.append(real(snap)))
    make_plan(_world().snapshot(NOW), PolicyConfig())
    assert asked == [None]
