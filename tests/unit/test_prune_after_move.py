"""The prune after a move removes only the folders the group's deletes emptied (review R47).

A torrent without a root folder of its own (a single file, or saved with "Don't create
subfolder") lives in a folder that is not its own: a category folder, a cross-seed link folder,
the seeding root. Its prune used to start there and take every empty folder below it: another
torrent's folder made before its first file, a nested dataset's unmounted mount point, other
category folders. Real planner and executor on tmpfs pools.
"""

from __future__ import annotations

import os

import pytest

from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.decide import planner, snapshot
from qbhook.decide.plan import PruneDirs, Step, StepFormatError
from qbhook.move.journal import Journal
from tests.helpers import make_config, write
from tests.unit.test_executor import FakeClock, FakeQbt, FakeTorrent, World
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

HA, HB = "a" * 40, "b" * 40
BIG = os.urandom(100_000)
SMALL = b"subtitles\n" * 50


@pytest.fixture
def w(tmpfs, tmp_path):  # noqa: F811
    stash, pool = tmpfs("stash"), tmpfs("pool")
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool, seeding="torrents/seeding")
    seed_s, seed_p = str(cfg.primary.seeding_root), str(cfg.cold.seeding_root)
    os.makedirs(seed_p)
    cat = Catalog.open(cfg.catalog, marker_roots=[stash, pool])
    yield World(cfg, cat, Journal(cat.conn), FakeQbt(), FakeClock(), stash, pool, seed_s, seed_p, str(stash / "media"))
    cat.close()


def _torrent(w: World, h: str, save: str, files: list[tuple[str, bytes]], **kw) -> None:
    for rel, data in files:
        write(os.path.join(save, rel), data)
    w.qbt.add(FakeTorrent(h, files[0][0].split("/")[0], save, [(rel, len(d), 1) for rel, d in files], **kw))


def _plan(w: World):
    for p in w.cfg.pools:
        scan_pool(w.cat, p, w.cfg.scan)
    return planner.make_plan(snapshot.build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy)


def _demote(w: World) -> list[PruneDirs]:
    plan = _plan(w)
    assert [g.action for g in plan.groups] == ["demote"], [(g.action, g.reason) for g in plan.groups]
    summary = w.executor().apply(plan)
    assert summary.status == "done", summary.groups_failed
    return [s for s in plan.groups[0].steps if isinstance(s, PruneDirs)]


def _not_ours(w: World, save: str) -> list[str]:
    """Empty folders the group never emptied: another torrent's folder made before its file, the
    mount point of a nested dataset not mounted now, another category folder."""
    dirs = [
        os.path.join(save, "Other.Torrent.2021", "Subs"),
        os.path.join(save, "tv-dataset"),
        os.path.join(w.seed_s, "tv"),
    ]
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    return dirs


def _single_file_torrent(w: World, where: str) -> tuple[str, list[str]]:
    """HA, one file saved with no folder of its own in a category folder or (``where``) the seeding
    root, beside ``_not_ours``'s empty folders: -> (its save path, those folders)."""
    save = os.path.join(w.seed_s, "movies") if where == "category" else w.seed_s
    _torrent(w, HA, save, [("Movie.2020.mkv", BIG)], tags={"~noHL"})
    return save, _not_ours(w, save)


@pytest.mark.parametrize("where", ["category", "seeding-root"])
def test_a_single_file_torrents_prune_leaves_the_folders_it_never_emptied(w, where):
    save, others = _single_file_torrent(w, where)
    _demote(w)
    assert not os.path.exists(os.path.join(save, "Movie.2020.mkv"))
    assert [d for d in others if not os.path.isdir(d)] == []


def test_a_torrent_saved_without_its_root_folder_prunes_only_the_folders_it_emptied(w):
    save = os.path.join(w.seed_s, "movies")
    _torrent(w, HA, save, [("Movie.2020.mkv", BIG), ("Subs/eng.srt", SMALL)], tags={"~noHL"})
    others = _not_ours(w, save)
    _demote(w)
    assert not os.path.exists(os.path.join(save, "Subs"))  # emptied by the group: gone
    assert [d for d in others if not os.path.isdir(d)] == []


def test_a_torrent_with_its_own_root_folder_still_prunes_everything_empty_in_it(w):
    save = os.path.join(w.seed_s, "tv")
    _torrent(w, HA, save, [("Show.S01/E01.mkv", BIG), ("Show.S01/Subs/E01.srt", SMALL)], tags={"~noHL"})
    os.makedirs(os.path.join(save, "Show.S01", ".unwanted"))  # left there by the torrent's client
    beside = os.path.join(w.seed_s, "movies", "Other.Torrent.2021")
    os.makedirs(beside)
    prunes = _demote(w)
    assert [(p.root, p.below) for p in prunes] == [(os.path.join(save, "Show.S01"), True)]
    assert not os.path.exists(save)  # its root folder, then the category folder it emptied
    assert os.path.isdir(beside)


def test_a_root_folder_another_torrent_keeps_files_in_is_pruned_upwards_only(w):
    save = os.path.join(w.seed_s, "tv")
    _torrent(w, HA, save, [("Show.S01/E01.mkv", BIG), ("Show.S01/Subs/E01.srt", SMALL)], tags={"~noHL"})
    # Another torrent of the same name with other files in that folder, not in the group.
    _torrent(w, HB, save, [("Show.S01/E02.mkv", BIG[::-1])])
    plan = _plan(w)
    moving = [g for g in plan.groups if g.action == "demote"]
    assert len(moving) == 1, [(g.action, g.reason) for g in plan.groups]
    prunes = [s for s in moving[0].steps if isinstance(s, PruneDirs)]
    assert [(p.root, p.below) for p in prunes] == [(os.path.join(save, "Show.S01", "Subs"), False)]


def test_prune_dirs_json_says_below_and_keeps_an_older_versions_step_unknown():
    # R50: a run an older version left unfinished journaled its prune without ``below`` and, for a
    # torrent without its own root folder, with the save path as root; read as planned (below),
    # the resume after the upgrade removed other torrents' empty folders and a mount point there.
    old = {"root": "/s/movies", "stop_at": "/s"}  # as every version before ``below`` wrote it
    assert Step.of("prune_dirs", old) == PruneDirs("/s/movies", "/s", below=None)
    assert Step.of("prune_dirs", old).args == old  # journaled as it was: the executor decides (below)
    own = PruneDirs("/s/M", "/s")
    assert own.below and own.args == {"root": "/s/M", "stop_at": "/s", "below": True}
    assert Step.of("prune_dirs", own.to_json()["args"]) == own
    up = PruneDirs("/s/movies", "/s", below=False)
    assert up.args == {**old, "below": False}
    assert Step.of("prune_dirs", up.to_json()["args"]) == up
    assert up.describe() == "/s/movies (up to /s, nothing below it)"
    with pytest.raises(StepFormatError):
        Step.of("prune_dirs", {**old, "below": "no"})


def _as_an_older_version_planned(plan, root: str | None = None, stop_at: str | None = None):
    """``plan`` with its prunes as a version before ``below`` journaled them: below unknown (None);
    ``root``: the one prune that version planned instead (a single-file torrent's: its save path,
    up to ``stop_at``, which this version plans upwards only or, at the seeding root, not at all)."""
    from dataclasses import replace

    for g in plan.groups:
        steps = [replace(s, below=None) if isinstance(s, PruneDirs) else s for s in g.steps]
        if root is not None:
            steps = [s for s in steps if not isinstance(s, PruneDirs)] + [PruneDirs(root, stop_at, None)]
        g.steps = steps
    return plan


@pytest.mark.parametrize("where", ["category", "seeding-root"])
def test_an_older_versions_prune_at_a_save_path_resumed_after_the_upgrade_prunes_upwards_only(w, where):
    # R50: an unfinished run journaled by a version before ``below`` holds a prune rooted at the
    # single-file torrent's save path; resumed by this version it must not empty that folder out.
    save, others = _single_file_torrent(w, where)
    plan = _as_an_older_version_planned(_plan(w), save, w.seed_s)
    assert w.executor().apply(plan).status == "done"
    assert [d for d in others if not os.path.isdir(d)] == []


def test_an_older_versions_prune_of_a_torrents_own_root_folder_still_prunes_below(w):
    save = os.path.join(w.seed_s, "tv")
    _torrent(w, HA, save, [("Show.S01/E01.mkv", BIG), ("Show.S01/Subs/E01.srt", SMALL)], tags={"~noHL"})
    os.makedirs(os.path.join(save, "Show.S01", ".unwanted"))
    plan = _as_an_older_version_planned(_plan(w))
    assert [(p.root, p.below) for p in plan.groups[0].steps if isinstance(p, PruneDirs)] == [
        (os.path.join(save, "Show.S01"), None)
    ]
    assert w.executor().apply(plan).status == "done"
    assert not os.path.exists(save)
