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

Then the exact comparison alone made every abandoned category folder, every library-linked
orphan folder and every tracker's link folder with no torrents left not seeding, and the share
guard never tripped (the real-parts tests/integration/test_orphans_real.py). A top-level folder
holding no save path is seeding unless it holds a link of a torrent's file (a library's mark).
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from click.testing import CliRunner

from qbhook.catalog.store import Catalog
from qbhook.errors import OrphansRefused
from qbhook.move import orphans
from qbhook.move.orphans import LIBRARY, NOT_SEEDING, RECLAIMABLE, REFERENCED, Entry, References, Walk, decide
from tests.helpers import config_data, make_config, write
from tests.unit.test_executor import FakeQbt, FakeTorrent
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

R = "/stash/data/media"
NOW = 1_000_000.0
OLD = int((NOW - 3600) * 1e9)


def e(rel, ino, size=100, nlink=1, root=R):
    return Entry(f"{root}/{rel}", "stash", root, 1, ino, size, nlink, OLD, OLD)


def refs(files, anchors, inodes=()):
    """``files`` by path, ``inodes`` (on device 1) by identity: another link of one is referenced too."""
    return References(
        frozenset(f"{R}/{f}" for f in files),
        (),
        1,
        anchors=frozenset(f"{R}/{a}".rstrip("/") for a in anchors),
        inodes=frozenset((1, i) for i in inodes),
    )


def run(entries, r):
    return decide(Walk(tuple(entries)), r, now=NOW, settle_seconds=60)


def test_a_library_beside_the_torrents_below_a_root_set_too_high_is_not_seeding_and_not_reclaimable():
    """R46: the library's ``movies/`` holds a hardlink of a torrent's file (an *arr import): its
    library-only file is not seeding, never reclaimable."""
    rep = run(
        [
            e("movies/M/M.mkv", 1, nlink=2),  # met before the torrent's own name of it
            e("torrents/t1/a.mkv", 1, nlink=2),
            e("movies/M/extra.mkv", 2, size=300),
            e("torrents/gone/x.mkv", 3, size=7),
        ],
        refs(["torrents/t1/a.mkv"], ["torrents", "torrents/t1"], inodes=[1]),
    )
    kinds = {o.path: (o.kind, o.frees) for o in rep.orphans}
    assert kinds == {f"{R}/movies/M/extra.mkv": (NOT_SEEDING, 0), f"{R}/torrents/gone/x.mkv": (RECLAIMABLE, 7)}
    assert [(i.path, i.kind) for i in rep.items] == [
        (f"{R}/movies/M/extra.mkv", NOT_SEEDING),
        (f"{R}/torrents/gone", RECLAIMABLE),
    ]
    assert rep.not_seeding == [f"{R}/movies"]
    t = rep.pools["stash"]
    assert (t.orphan_bytes, t.reclaimable_bytes, t.library_bytes) == (7, 7, 0)  # not its orphans: no share
    d = rep.as_dict()
    assert d["not_seeding"] == {"items": 1, "bytes": 300, "folders": [f"{R}/movies"]}
    assert d["reclaimable"]["items"] == 1


def test_an_abandoned_category_folder_is_seeding_and_its_files_reclaimable():
    """The integration world's ``seeding/old/Leftover.Movie``: no torrent saved below ``old/``, no
    link of a torrent's file in it: nothing but an abandoned category, its orphans reclaimable
    (the exact comparison alone called it not seeding: nothing was ever reclaimed)."""
    rep = run(
        [
            e("movies/Movie.A/a.mkv", 1),
            e("movies/Movie.A/sample.txt", 2, size=5),
            e("old/Leftover.Movie/leftover.mkv", 3, size=300),
            e("old/Leftover.Movie/leftover.nfo", 4, size=1),
        ],
        refs(["movies/Movie.A/a.mkv"], ["movies"], inodes=[1]),
    )
    assert {o.path: (o.kind, o.frees) for o in rep.orphans} == {
        f"{R}/movies/Movie.A/sample.txt": (RECLAIMABLE, 5),
        f"{R}/old/Leftover.Movie/leftover.mkv": (RECLAIMABLE, 300),
        f"{R}/old/Leftover.Movie/leftover.nfo": (RECLAIMABLE, 1),
    }
    assert [(i.path, i.kind, i.files) for i in rep.items] == [
        (f"{R}/movies/Movie.A/sample.txt", RECLAIMABLE, 1),
        (f"{R}/old", RECLAIMABLE, 2),
    ]
    assert rep.not_seeding == [] and rep.pools["stash"].reclaimable_bytes == 306


def test_an_orphan_folder_linked_only_to_a_library_outside_the_root_is_seeding_and_still_used_by_it():
    """``seeding/kept/Lib.G``: its file's other link is in the library outside the seeding roots,
    not a torrent's file: a seeding folder, the orphan still used by a library."""
    rep = run(
        [e("movies/T/t.mkv", 1), e("kept/Lib.G/lib.g.mkv", 2, size=200, nlink=2)],
        refs(["movies/T/t.mkv"], ["movies"], inodes=[1]),
    )
    assert [(i.path, i.kind, i.frees) for i in rep.items] == [(f"{R}/kept", LIBRARY, 0)]
    assert rep.not_seeding == [] and rep.pools["stash"].library_bytes == 200


def test_a_link_folder_of_a_tracker_with_no_torrents_left_in_a_second_root_is_seeding():
    """``cross-seed-links/TrackerZ/Gone.Show``, a seeding root of its own where no torrent is saved
    any more: its orphans are reclaimable."""
    links = "/stash/data/media/cross-seed-links"
    rep = run(
        [e("movies/T/t.mkv", 1), e("TrackerZ/Gone.Show/gone.mkv", 2, size=100, root=links)],
        refs(["movies/T/t.mkv"], ["movies"], inodes=[1]),
    )
    assert [(i.path, i.kind, i.frees) for i in rep.items] == [(f"{links}/TrackerZ", RECLAIMABLE, 100)]
    assert rep.not_seeding == []


def test_a_root_no_torrent_references_anything_in_is_all_seeding_and_the_share_guard_refuses():
    """A wrong path_map: the clients' save paths and files lie where the walk did not look. Every
    folder is seeding (no link of a torrent's file anywhere), so every file is an orphan and the
    share guard refuses; all not seeding, the guard never tripped."""
    rep = run(
        [e("movies/A/a.mkv", 1, size=1000), e("tv/S/s.mkv", 2, size=1000), e("old/L/l.mkv", 3, size=10)],
        References(frozenset({"/elsewhere/movies/A/a.mkv"}), (), 2, anchors=frozenset({"/elsewhere/movies"})),
    )
    assert {o.kind for o in rep.orphans} == {RECLAIMABLE} and rep.not_seeding == []
    with pytest.raises(OrphansRefused, match="orphans_max_share"):
        orphans.check_guards(rep, 0.01)


def test_a_torrent_saved_in_the_root_itself_makes_every_top_level_folder_a_seeding_folder():
    rep = run([e("Film/f.mkv", 1), e("Gone/g.mkv", 2)], refs(["Film/f.mkv"], ["", "Film"]))
    assert [(o.path, o.kind) for o in rep.orphans] == [(f"{R}/Gone/g.mkv", RECLAIMABLE)]


def test_a_library_folder_beside_a_category_folder_of_another_case_is_not_seeding():
    """R55: ``Movies/`` (the library, holding a link of a torrent's file) and ``movies/``
    (qBittorrent's category) are two folders on a case-sensitive filesystem; case-folded, the
    library's own files were reclaimable."""
    rep = run(
        [
            e("movies/T/t.mkv", 1, nlink=2),
            e("movies/Gone/g.mkv", 3),
            e("Movies/T (2020)/T.mkv", 1, nlink=2),
            e("Movies/Film (2020)/extra-only-in-library.mkv", 2),
        ],
        refs(["movies/T/t.mkv"], ["movies"], inodes=[1]),
    )
    assert {o.path: o.kind for o in rep.orphans} == {
        f"{R}/movies/Gone/g.mkv": RECLAIMABLE,
        f"{R}/Movies/Film (2020)/extra-only-in-library.mkv": NOT_SEEDING,
    }
    assert rep.not_seeding == [f"{R}/Movies"]
    assert rep.counts[REFERENCED] == 2


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
    stray = write(os.path.join(media, "torrents/gone/stray.mkv"), b"s" * 100, mtime_ns=1)
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
        "this folder of a seeding root, and its top-level folder holds one or a link of a torrent's file "
        "(a library?), so nothing in it is quarantined (check seeding_roots: a seeding root must hold only "
        "torrent data)"
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


def _world(tmpfs, tmp_path, max_share):  # noqa: F811
    """The real-parts world of tests/integration/test_orphans_real.py with the project's fakes: a
    category with a torrent and a stray file, an abandoned category ``old/``, an orphan folder
    ``kept/`` linked to the library outside the roots, and a second root of the cold pool, a
    tracker's link folder with no torrents left. Returns the config file and the paths."""
    stash, pool = tmpfs("stash"), tmpfs("pool")
    seed, cold = stash / "data/media/torrents/seeding", pool / "data/media/torrents/seeding"
    links = pool / "data/media/torrents/cross-seed-links"
    qbt = FakeQbt()
    for i, (root, name) in enumerate(((seed, "Movie.A"), (cold, "Movie.B"))):
        write(root / f"movies/{name}/{name}.mkv", bytes([65 + i]) * 20_000, mtime_ns=1)
        qbt.add(FakeTorrent(str(i) * 40, name, str(root / "movies"), [(f"{name}/{name}.mkv", 20_000, 1)]))
    w = {
        "stray": write(seed / "movies/Movie.A/sample.txt", b"s" * 100, mtime_ns=1),
        "old": write(seed / "old/Leftover.Movie/leftover.mkv", b"o" * 3000, mtime_ns=1),
        "kept": write(seed / "kept/Lib.G/lib.g.mkv", b"k" * 2000, mtime_ns=1),
        "gone": write(links / "TrackerZ/Gone.Show/gone.mkv", b"g" * 1000, mtime_ns=1),
    }
    os.makedirs(stash / "data/media/movies/Lib G")
    os.link(w["kept"], stash / "data/media/movies/Lib G/Lib G.mkv")
    data = config_data(tmp_path / "cat.sqlite", stash, pool, policy={"orphans_max_share": max_share})
    data["seeding_roots"] = {"stash": str(seed), "pool": [str(cold), str(links)]}
    conf = tmp_path / "config.yaml"
    conf.write_text(yaml.safe_dump(data))
    return conf, qbt, w


def test_the_real_parts_world_lists_abandoned_library_linked_and_tracker_folders_as_orphans(
    tmpfs,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    from qbhook.cli import main
    from qbhook.cli.app import App

    conf, qbt, w = _world(tmpfs, tmp_path, 1.0)
    monkeypatch.setattr(App, "clients", property(lambda self: [qbt]))
    r = CliRunner().invoke(main, ["--config", str(conf), "--json", "orphans"])
    assert r.exit_code == 0, (r.output, r.exception)
    d = json.loads(r.stdout)
    kinds = {os.path.relpath(i["path"], tmp_path): i["kind"] for i in d["items"]}
    assert kinds == {
        "stash/data/media/torrents/seeding/old": RECLAIMABLE,
        "stash/data/media/torrents/seeding/movies/Movie.A/sample.txt": RECLAIMABLE,
        "stash/data/media/torrents/seeding/kept": LIBRARY,
        "pool/data/media/torrents/cross-seed-links/TrackerZ": RECLAIMABLE,
    }, d["items"]
    assert d["not_seeding"]["folders"] == [] and d["reclaimable"]["bytes"] == 3000 + 100 + 1000


def test_the_real_parts_world_trips_the_share_guard_with_nothing_moved(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    """``test_every_guard_refuses_with_nothing_moved[share]``: the stray file alone is under 1 % of
    each pool's seeding data; ``old/`` and the tracker's folder not seeding counted nothing against
    the share, and the quarantine went ahead."""
    from qbhook.cli import main
    from qbhook.cli.app import App

    conf, qbt, w = _world(tmpfs, tmp_path, 0.01)
    monkeypatch.setattr(App, "clients", property(lambda self: [qbt]))
    for args in (["orphans"], ["orphans", "--quarantine", "--yes"]):
        r = CliRunner().invoke(main, ["--config", str(conf), *args])
        assert r.exit_code == 3 and "policy.orphans_max_share" in r.stderr, (args, r.output, r.exception)
    assert all(os.path.exists(p) for p in w.values())
