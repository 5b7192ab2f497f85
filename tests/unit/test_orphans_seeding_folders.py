"""Orphans only in seeding folders: a file no torrent of any client has its save or download path
at or above is in no seeding folder (``orphans.seeding_folders``); such unreferenced files are
reported as ``not_seeding``, never quarantined.

Review R46: a seeding root set one level too high (TRaSH's /data/media, the parent of the
library's movies/ and of torrents/) was accepted, and `orphans --quarantine --yes` moved a file
that existed only in the library into holding: every path below a seeding root counted as
seeding data, and the share guard did not trip (the torrents' bytes outweighed it).

Review R55: the fix compared top-level folders, case-folded: a library ``Movies/`` beside a
category ``movies/`` counted as seeding, and one torrent saved inside the library (cross-seed
without linkDirs) made the whole library seeding. Paths are compared exactly now.
"""

from __future__ import annotations

import json
import os

import yaml
from click.testing import CliRunner

from qbhook.catalog.store import Catalog
from qbhook.move import orphans
from qbhook.move.orphans import NOT_SEEDING, RECLAIMABLE, Entry, References, Walk, decide
from tests.helpers import config_data, make_config, write
from tests.unit.test_executor import FakeQbt, FakeTorrent
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

R = "/stash/data/media"
NOW = 1_000_000.0
OLD = int((NOW - 3600) * 1e9)


def e(rel, ino, size=100, nlink=1):
    return Entry(f"{R}/{rel}", "stash", R, 1, ino, size, nlink, OLD, OLD)


def refs(files, anchors):
    return References(
        frozenset(f"{R}/{f}" for f in files), (), 1, anchors=frozenset(f"{R}/{a}".rstrip("/") for a in anchors)
    )


def run(entries, r):
    return decide(Walk(tuple(entries)), r, now=NOW, settle_seconds=60)


def test_a_library_beside_the_torrents_below_a_root_set_too_high_is_not_seeding_and_not_reclaimable():
    rep = run(
        [e("torrents/t1/a.mkv", 1), e("movies/M/extra.mkv", 2, size=300), e("torrents/gone/x.mkv", 3, size=7)],
        refs(["torrents/t1/a.mkv"], ["torrents", "torrents/t1"]),
    )
    kinds = {o.path: (o.kind, o.frees) for o in rep.orphans}
    assert kinds == {f"{R}/movies/M/extra.mkv": (NOT_SEEDING, 0), f"{R}/torrents/gone/x.mkv": (RECLAIMABLE, 7)}
    assert [(i.path, i.kind) for i in rep.items] == [(f"{R}/movies", NOT_SEEDING), (f"{R}/torrents/gone", RECLAIMABLE)]
    assert rep.not_seeding == [f"{R}/movies"]
    t = rep.pools["stash"]
    assert (t.orphan_bytes, t.reclaimable_bytes, t.library_bytes) == (7, 7, 0)  # not its orphans: no share
    d = rep.as_dict()
    assert d["not_seeding"] == {"items": 1, "bytes": 300, "folders": [f"{R}/movies"]}
    assert d["reclaimable"]["items"] == 1


def test_a_category_folder_whose_torrents_were_all_removed_is_reported_not_reclaimable():
    """Conservative on purpose: nothing tells it from a library folder but a torrent under it."""
    rep = run(
        [e("tv/Show/e.mkv", 1), e("tv/Gone/old.mkv", 2), e("movies/Old/o.mkv", 3)],
        refs(["tv/Show/e.mkv"], ["tv", "tv/Show"]),
    )
    assert {o.path: o.kind for o in rep.orphans} == {
        f"{R}/tv/Gone/old.mkv": RECLAIMABLE,
        f"{R}/movies/Old/o.mkv": NOT_SEEDING,
    }


def test_a_torrent_saved_in_the_root_itself_makes_every_top_level_folder_a_seeding_folder():
    rep = run([e("Film/f.mkv", 1), e("Gone/g.mkv", 2)], refs(["Film/f.mkv"], ["", "Film"]))
    assert [(o.path, o.kind) for o in rep.orphans] == [(f"{R}/Gone/g.mkv", RECLAIMABLE)]


def test_a_library_folder_beside_a_category_folder_of_another_case_is_not_seeding():
    """R55: ``Movies/`` (the library) and ``movies/`` (qBittorrent's category) are two folders on a
    case-sensitive filesystem; case-folded, the library's own files were reclaimable."""
    rep = run(
        [e("movies/T/t.mkv", 1), e("movies/Gone/g.mkv", 3), e("Movies/Film (2020)/extra-only-in-library.mkv", 2)],
        refs(["movies/T/t.mkv"], ["movies"]),
    )
    assert {o.path: o.kind for o in rep.orphans} == {
        f"{R}/movies/Gone/g.mkv": RECLAIMABLE,
        f"{R}/Movies/Film (2020)/extra-only-in-library.mkv": NOT_SEEDING,
    }
    assert rep.not_seeding == [f"{R}/Movies"]


def test_one_torrent_saved_inside_the_library_makes_only_its_own_folder_seeding():
    """R55: cross-seed (data-based, no linkDir) injects a torrent whose save path is a library
    folder; the library's other files stay not seeding, the highest folder holding no save path
    named for a person (not the library, which holds one)."""
    rep = run(
        [
            e("torrents/movies/T/t.mkv", 1),
            e("media/movies/X/x.mkv", 3),
            e("media/movies/X/sample.mkv", 4),
            e("media/movies/Film/only-in-library.mkv", 2, size=5000),
            e("media/movies/loose.mkv", 5),
        ],
        refs(["torrents/movies/T/t.mkv", "media/movies/X/x.mkv"], ["torrents/movies", "media/movies/X"]),
    )
    assert {o.path: o.kind for o in rep.orphans} == {
        f"{R}/media/movies/X/sample.mkv": RECLAIMABLE,  # in the torrent's own save folder
        f"{R}/media/movies/Film/only-in-library.mkv": NOT_SEEDING,
        f"{R}/media/movies/loose.mkv": NOT_SEEDING,
    }
    assert rep.not_seeding == [f"{R}/media/movies/Film", f"{R}/media/movies/loose.mkv"]
    assert rep.pools["stash"].reclaimable_bytes == 100


def test_an_orphan_left_in_a_category_folder_other_torrents_are_saved_in_is_still_reclaimable():
    rep = run(
        [e("torrents/movies/T/t.mkv", 1), e("torrents/movies/Removed/r.mkv", 2, size=7), e("torrents/tv/o.mkv", 3)],
        refs(["torrents/movies/T/t.mkv"], ["torrents/movies", "torrents/tv"]),
    )
    assert {o.path: (o.kind, o.frees) for o in rep.orphans} == {
        f"{R}/torrents/movies/Removed/r.mkv": (RECLAIMABLE, 7),
        f"{R}/torrents/tv/o.mkv": (RECLAIMABLE, 100),
    }
    assert rep.not_seeding == []


def test_a_save_path_above_the_seeding_root_makes_all_of_it_seeding():
    rep = run([e("Gone/g.mkv", 1)], References(frozenset(), (), 1, anchors=frozenset({"/stash/data"})))
    assert [(o.path, o.kind) for o in rep.orphans] == [(f"{R}/Gone/g.mkv", RECLAIMABLE)]


def test_a_save_path_reached_through_a_symlink_counts_by_its_real_path(tmp_path):
    """References.anchors holds each save path resolved too (``_real``): a save path that is a
    symlink to the folder the walk meets by its real path makes that folder seeding."""
    real = tmp_path / "real"
    (real / "Gone").mkdir(parents=True)
    os.symlink(real, tmp_path / "alias")
    qbt = FakeQbt()
    qbt.add(FakeTorrent("a" * 40, "T", str(tmp_path / "alias"), [("T/t.mkv", 1, 1)]))
    anchors = orphans.references([qbt]).anchors
    assert str(real) in anchors and str(tmp_path / "alias") in anchors
    root = str(tmp_path)
    entry = Entry(f"{real}/Gone/g.mkv", "stash", root, 1, 9, 100, 1, OLD, OLD)
    assert orphans.seeding_folders(anchors).outside(entry) is None


def test_quarantine_never_moves_a_library_only_file_below_a_seeding_root_set_too_high(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    """R46's reproduction, with the project's fakes: the library-only file stays where it is, the
    orphan in the torrents' folder is held, and `qbhook orphans` names the folder with a hint."""
    from qbhook.cli import main
    from qbhook.cli.app import App

    stash, pool = tmpfs("stash"), tmpfs("pool")
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool, seeding="data/media", policy={"orphans_max_share": 1.0})
    media = str(stash / "data/media")
    os.makedirs(pool / "data/media")
    a = write(os.path.join(media, "torrents/t1/a.mkv"), b"a" * 10_000, mtime_ns=1)
    os.makedirs(os.path.join(media, "movies/M"))
    os.link(a, os.path.join(media, "movies/M/M.mkv"))
    extra = write(os.path.join(media, "movies/M/extra-only-in-library.mkv"), b"x" * 3000, mtime_ns=1)
    stray = write(os.path.join(media, "torrents/gone/stray.mkv"), b"s" * 500, mtime_ns=1)
    qbt = FakeQbt()
    qbt.add(FakeTorrent("a" * 40, "t1", os.path.join(media, "torrents"), [("t1/a.mkv", 10_000, 1)]))
    monkeypatch.setattr(App, "clients", property(lambda self: [qbt]))
    conf = tmp_path / "config.yaml"
    data = config_data(cfg.catalog, stash, pool, seeding="data/media", policy={"orphans_max_share": 1.0})
    conf.write_text(yaml.safe_dump(data))

    r = CliRunner().invoke(main, ["--config", str(conf), "orphans"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert (
        "not in a seeding folder (never quarantined):" in r.stdout and "extra" not in r.stdout.split("reclaimable")[0]
    )
    warning = [line for line in r.stderr.splitlines() if "save or download path" in line]
    assert warning == [
        f"qbhook: warning: {media}/movies: no torrent of any client has its save or download path at or above "
        "this folder of a seeding root, so nothing in it is quarantined (a library? check seeding_roots: a "
        "seeding root must hold only torrent data)"
    ], r.stderr
    d = json.loads(CliRunner().invoke(main, ["--config", str(conf), "--json", "orphans"]).stdout)
    assert d["not_seeding"]["folders"] == [f"{media}/movies"]

    cat = Catalog.open(cfg.catalog, marker_roots=[stash, pool])
    try:
        res = orphans.quarantine(cfg, cat, [qbt])
    finally:
        cat.close()
    assert res.held == [stray] and res.failed == {} and res.not_seeding == [f"{media}/movies"], res
    r = CliRunner().invoke(main, ["--config", str(conf), "orphans", "--quarantine", "--yes"])
    assert r.exit_code == 0 and f"qbhook: warning: {media}/movies: no torrent" in r.stderr, (r.output, r.exception)
    assert os.path.exists(extra) and os.path.exists(os.path.join(media, "movies/M/M.mkv"))
