"""Abandoned category folders are seeding folders again while the torrent index remembers a torrent
saved there (``orphans.remembered_anchors``, ``TorrentIndex.gone_places``).

fix-w90's rule (a file is seeding data only at or below a live torrent's save or download path)
made a category folder whose torrents were all removed ``not_seeding``: reported, never
quarantined, the leftovers never reclaimed. fix-w92 called every folder without a torrent seeding
unless it held a link of a torrent's file, and a library whose torrents were all removed became
reclaimable under a seeding root set too high (R57, reverted). The evidence now is positive: the
index keeps a removed torrent's row (``gone_at``) with its save and download paths, and such a
path below a seeding root counts as a live one does; one at or above a seeding root counts not at
all. The library rules still win below it. Real files, a real catalog, the executor tests' fake
qBittorrent.
"""

from __future__ import annotations

import os

import pytest

from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import _COLUMNS, TorrentIndex, TorrentRecord
from qbhook.move import orphans
from qbhook.move.orphans import LIBRARY, NOT_SEEDING, RECLAIMABLE
from tests.helpers import seeded_config, write
from tests.unit.test_executor import FakeQbt, FakeTorrent

LIVE = "a" * 40


def _remember_gone(cat: Catalog, h: str, save: str | None, download: str | None = None, map_error=None) -> None:
    """A torrent the index listed once and then saw go (its row kept with ``gone_at``)."""
    fields = dict.fromkeys(_COLUMNS)
    fields.update(name=h, category="", tags="[]", save_path=save, download_path=download, map_error=map_error)
    idx = TorrentIndex(cat.conn)
    idx.apply("qbt", [TorrentRecord(h, fields, {}, "k")], {}, [], rid=None, mode="event")
    idx.apply("qbt", [], {}, [h], rid=None, mode="event")


def _world(tmp_path, seeding: str, live_save: str):
    """A config with ``seeding`` as each pool's seeding root, its catalog, and one live torrent
    saved at ``live_save`` (below the stash's root) whose file exists."""
    cfg = seeded_config(tmp_path, seeding=seeding, policy={"orphans_max_share": 1.0})
    root = str(cfg.pools[0].seeding_root)
    write(os.path.join(root, live_save, "Live/l.mkv"), b"l" * 1000, mtime_ns=1)
    qbt = FakeQbt()
    qbt.add(FakeTorrent(LIVE, "Live", os.path.join(root, live_save), [("Live/l.mkv", 1000, 1)]))
    return cfg, root, qbt


@pytest.fixture
def cat(tmp_path):
    c = Catalog.open(tmp_path / "cat.sqlite")
    yield c
    c.close()


def _kinds(report) -> dict[str, str]:
    return {o.path: o.kind for o in report.orphans}


def test_an_abandoned_category_with_a_remembered_torrent_is_reclaimable_and_quarantined(tmp_path, cat):
    cfg, root, qbt = _world(tmp_path, "data/torrents", "movies")
    tv = write(os.path.join(root, "tv/Show/e.mkv"), b"e" * 300, mtime_ns=1)
    music = write(os.path.join(root, "music/Old/o.mkv"), b"o" * 200, mtime_ns=1)

    before = orphans.find_orphans(cfg, [qbt], catalog=cat)
    assert _kinds(before) == {tv: NOT_SEEDING, music: NOT_SEEDING}  # no torrent saved there, live or remembered

    _remember_gone(cat, "b" * 40, os.path.join(root, "tv"))  # every torrent of category tv removed
    after = orphans.find_orphans(cfg, [qbt], catalog=cat)
    assert _kinds(after) == {tv: RECLAIMABLE, music: NOT_SEEDING}
    assert after.not_seeding == [os.path.join(root, "music")]
    assert after.pools["stash"].reclaimable_bytes == 300

    res = orphans.quarantine(cfg, cat, [qbt])
    assert res.held == [tv] and res.failed == {} and res.not_seeding == [os.path.join(root, "music")], res
    assert not os.path.exists(tv) and os.path.exists(music)


def test_a_remembered_download_path_counts_like_a_save_path(tmp_path, cat):
    cfg, root, qbt = _world(tmp_path, "data/torrents", "movies")
    part = write(os.path.join(root, "incomplete/tv/Show/e.mkv"), b"e" * 300, mtime_ns=1)
    _remember_gone(cat, "b" * 40, os.path.join(root, "tv"), download=os.path.join(root, "incomplete/tv"))
    assert _kinds(orphans.find_orphans(cfg, [qbt], catalog=cat)) == {part: RECLAIMABLE}


def test_a_folder_no_remembered_torrent_was_saved_in_stays_not_seeding(tmp_path, cat):
    """Only a gone row's own path is evidence: one saved elsewhere, one saved outside every seeding
    root, one the index could not map (no host path) say nothing of this folder."""
    cfg, root, qbt = _world(tmp_path, "data/torrents", "movies")
    tv = write(os.path.join(root, "tv/Show/e.mkv"), b"e" * 300, mtime_ns=1)
    _remember_gone(cat, "b" * 40, os.path.join(root, "movies"))
    _remember_gone(cat, "c" * 40, str(tmp_path / "elsewhere/tv"))
    _remember_gone(cat, "d" * 40, None, map_error="cannot map /downloads/tv")
    _remember_gone(cat, "e" * 40, os.path.join(root, "tvshows"))  # a name sharing tv's prefix
    report = orphans.find_orphans(cfg, [qbt], catalog=cat)
    assert _kinds(report) == {tv: NOT_SEEDING}
    assert report.not_seeding == [os.path.join(root, "tv")]


def test_a_remembered_save_path_at_or_above_a_root_set_too_high_keeps_the_library_not_seeding(tmp_path, cat):
    """R57: TRaSH's layout under a seeding root set one level too high (/data/media holding the
    library's movies/ beside torrents/). A torrent once saved in the root itself, or above it,
    would make the library's own files reclaimable: such a remembered path gives no evidence. A
    remembered category below the root still does."""
    cfg, root, qbt = _world(tmp_path, "data/media", "torrents/movies")
    extra = write(os.path.join(root, "movies/M/extra-only-in-library.mkv"), b"x" * 3000, mtime_ns=1)
    gone = write(os.path.join(root, "torrents/tv/Gone/g.mkv"), b"g" * 70, mtime_ns=1)
    os.symlink(root, os.path.join(root, "torrents/all"))  # a save path that resolves to the root
    for h, place in [
        ("b" * 40, root),
        ("c" * 40, os.path.dirname(root)),
        ("d" * 40, "/"),
        ("e" * 40, os.path.join(root, "torrents/all")),
        ("f" * 40, os.path.join(root, "torrents/tv")),
    ]:
        _remember_gone(cat, h, place)
    report = orphans.find_orphans(cfg, [qbt], catalog=cat)
    assert _kinds(report) == {extra: NOT_SEEDING, gone: RECLAIMABLE}
    assert report.not_seeding == [os.path.join(root, "movies")]

    res = orphans.quarantine(cfg, cat, [qbt])
    assert res.held == [gone] and os.path.exists(extra), res


def test_a_file_under_a_remembered_save_path_still_used_by_a_library_is_library(tmp_path, cat):
    """The library rules win below a remembered path: a file with a link outside the seeding roots
    (a hard-linked library), or one a library's symlink reaches, is still used by a library."""
    cfg, root, qbt = _world(tmp_path, "data/torrents", "movies")
    linked = write(os.path.join(root, "tv/Show/e1.mkv"), b"1" * 300, mtime_ns=1)
    library = tmp_path / "stash/data/library/tv/Show"
    library.mkdir(parents=True)
    os.link(linked, library / "e1.mkv")
    reached = write(os.path.join(root, "tv/Show/e2.mkv"), b"2" * 300, mtime_ns=1)
    os.symlink(reached, library / "e2.mkv")
    spare = write(os.path.join(root, "tv/Show/sample.mkv"), b"s" * 30, mtime_ns=1)
    _remember_gone(cat, "b" * 40, os.path.join(root, "tv"))

    report = orphans.find_orphans(cfg, [qbt], catalog=cat)
    assert _kinds(report) == {linked: LIBRARY, reached: LIBRARY, spare: RECLAIMABLE}
    res = orphans.quarantine(cfg, cat, [qbt])
    assert res.held == [spare] and os.path.exists(linked) and os.path.exists(reached), res


@pytest.mark.parametrize(
    "place, kept",
    [
        ("/data/torrents/tv", {"/data/torrents/tv"}),
        ("/data/torrents/tv/", {"/data/torrents/tv"}),
        ("/data/torrents", set()),  # the root itself
        ("/data", set()),  # above it
        ("/data/torrents2/tv", set()),  # outside every root, whatever its prefix
        ("/data/torrents/cross", set()),  # the second root itself, below the first
        ("/data/torrents/cross/x", {"/data/torrents/cross/x"}),
        ("relative/tv", set()),
    ],
)
def test_remembered_anchors_keeps_only_paths_strictly_inside_a_root_and_none_at_or_above_one(place, kept):
    roots = ["/data/torrents", "/data/torrents/cross"]
    assert orphans.remembered_anchors([place], roots) == kept
