"""The orphans walk (``qbhook.move.orphans.walk_roots``) on real folders: it lists only what is
below the seeding roots, whatever a writer of those folders swaps in while it walks."""

from __future__ import annotations

import os
import time

import pytest

from qbhook.move.orphans import walk_roots
from tests.helpers import seeded_config, write
from tests.swap import swap_after_listing


@pytest.fixture
def bed(tmp_path):
    cfg = seeded_config(tmp_path)
    write(tmp_path / "outside/Show/secret.bin", b"not ours")
    return cfg, cfg.primary.seeding_root, tmp_path / "outside"


def test_files_are_listed_a_symlinked_folder_is_skipped_and_no_descriptor_is_left_open(bed):
    cfg, seed, outside = bed
    write(seed / "m/Movie/a.bin", b"movie")
    os.symlink(outside, seed / "m/link")
    before = len(os.listdir("/proc/self/fd"))
    walk = walk_roots(cfg)
    assert len(os.listdir("/proc/self/fd")) == before  # every folder's descriptor closed
    assert [e.path for e in walk.entries] == [f"{seed}/m/Movie/a.bin"]
    assert walk.skipped == (f"{seed}/m/link",)


def test_a_folder_swapped_for_a_symlink_after_its_parent_was_listed_is_skipped_and_named(bed, monkeypatch):
    """``Show`` is a real folder when its parent is listed, a symlink to an outside folder when
    the walk enters it. Entered by path, the outside file was listed as an orphan below the root
    (its "reclaimable" line a user may act on by hand); opened below its verified parent, it is
    refused and named."""
    cfg, seed, outside = bed
    write(seed / "d/Show/e.bin", b"episode")
    swapped = swap_after_listing(monkeypatch, seed / "d", seed / "d/Show", outside / "Show")
    walk = walk_roots(cfg)
    assert swapped
    outside_ino = os.stat(outside / "Show/secret.bin").st_ino
    assert not [e.path for e in walk.entries if e.ino == outside_ino or "secret" in e.path]
    assert f"{seed}/d/Show" in walk.skipped


def test_qbhooks_own_folders_are_never_walked_whatever_ignore_names_lists(tmp_path):
    # scan.ignore_names: [@eaDir] once replaced the defaults, and held links became "orphans".
    cfg = seeded_config(tmp_path, scan={"ignore_names": ["@eaDir"]})
    seed = cfg.primary.seeding_root
    write(seed / ".qbhook-holding/7/old/gone.mkv", b"held")
    write(seed / ".qbhook-staging/part", b"staged")
    write(seed / "@eaDir/thumb", b"nas")
    write(seed / "m/a.bin", b"movie")
    assert [e.path for e in walk_roots(cfg).entries] == [f"{seed}/m/a.bin"]


def test_relink_links_are_not_listed_but_a_folder_so_named_is_walked(bed):
    # A relink's temporary link (paths.RELINK_PREFIX), in use or left by a crash, was listed as an
    # orphan: quarantining it under a running relink breaks that relink's rename.
    cfg, seed, _outside = bed
    write(seed / "m/a.bin", b"movie")
    os.link(seed / "m/a.bin", seed / "m/.qbhook-relink.1f.a.bin")
    write(seed / "m/.qbhook-relink.dir/in.bin", b"a user's folder")
    assert sorted(e.path for e in walk_roots(cfg).entries) == [f"{seed}/m/.qbhook-relink.dir/in.bin", f"{seed}/m/a.bin"]


# --------------------------------------------------------------------------- in use by identity

LATER = 86400 * 30  # the listing looks a month later: no file is young


def _xseed(seed, **kw):
    """A client seeding ``Film`` from cross-seed's link folder (the torrent that linked it removed,
    keeping its data), and another torrent, so the listing is not empty."""
    from tests.unit.test_executor import FakeQbt, FakeTorrent

    write(seed / "tv/Show/e.mkv", b"y" * 100_000)
    q = FakeQbt()
    q.add(FakeTorrent("a" * 40, "Film", f"{seed}/cross-seed/trackerB", [("Film/film.mkv", 1000, 1)], **kw))
    q.add(FakeTorrent("b" * 40, "Show", f"{seed}/tv", [("Show/e.mkv", 100_000, 1)]))
    return q


@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_file_a_torrent_reaches_through_a_symlink_is_referenced_not_an_orphan(bed, link):
    """cross-seed's linkType symlink: a symlink per file, or its save path's folder a symlink to
    the data. By path the real file was no torrent's: quarantined, then purged, the only copy."""
    from qbhook.move.orphans import RECLAIMABLE, find_orphans

    cfg, seed, _outside = bed
    real = write(seed / "movies/Film/film.mkv", b"x" * 1000)
    (seed / "cross-seed/trackerB").mkdir(parents=True)
    if link == "file":
        (seed / "cross-seed/trackerB/Film").mkdir()
        os.symlink(real, seed / "cross-seed/trackerB/Film/film.mkv")
    else:
        os.symlink(seed / "movies/Film", seed / "cross-seed/trackerB/Film")
    rep = find_orphans(cfg, [_xseed(seed)], now=time.time() + LATER)
    assert [o.path for o in rep.orphans if o.kind == RECLAIMABLE] == []
    assert rep.counts["referenced"] == 2


def test_an_incomplete_torrent_whose_content_folder_is_a_symlink_protects_its_target(bed):
    from qbhook.move.orphans import find_orphans

    cfg, seed, _outside = bed
    write(seed / "movies/Film/film.mkv", b"x" * 1000)
    (seed / "cross-seed/trackerB").mkdir(parents=True)
    os.symlink(seed / "movies/Film", seed / "cross-seed/trackerB/Film")
    rep = find_orphans(cfg, [_xseed(seed, progress=0.5)], now=time.time() + LATER)
    assert rep.orphans == [] and rep.counts["protected"] == 1


def test_a_drop_name_is_listed_to_look_at_never_as_an_entry(bed):
    # A link a killed delete left under its drop name (fsops._drop_name): hidden from every scan,
    # it was named nowhere (R19); it is no orphan to reclaim (maybe a file's only name).
    cfg, seed, _outside = bed
    write(seed / "m/a.bin", b"movie")
    write(seed / "m/.qbhook-relink.drop.1f.0123456789abcdef", b"a hidden link")
    os.link(seed / "m/a.bin", seed / "m/.qbhook-relink.1f.a.bin")  # a relink's own: not a drop name
    walk = walk_roots(cfg)
    assert [e.path for e in walk.entries] == [f"{seed}/m/a.bin"]
    assert walk.drops == (f"{seed}/m/.qbhook-relink.drop.1f.0123456789abcdef",)


def test_the_catalog_its_journal_files_and_the_lock_folder_are_never_walked_whatever_path_leads_there(tmp_path):
    """Review R46: a catalog whose folder is a symlink into a seeding root passed the config load
    (only the path as written was compared), and `orphans --quarantine --yes` moved the live
    catalog into holding, its -wal left behind. The load refuses that now; this second guard
    stands behind it: by identity, not path, qbhook's own files are never entries."""
    from dataclasses import replace

    cfg = seeded_config(tmp_path)
    seed = cfg.primary.seeding_root
    state = seed / "state"  # what /var/lib/qbhook -> <seeding root>/state puts there
    for name in ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm", "catalog.sqlite-journal"):
        write(state / name, b"sqlite")
    write(state / "catalog.sqlite.locks/executor.lock", b"")
    write(state / "notes.txt", b"a person's")
    write(seed / "m/a.bin", b"movie")
    os.symlink(state, tmp_path / "var-lib-qbhook")
    cfg = replace(cfg, catalog=tmp_path / "var-lib-qbhook/catalog.sqlite")  # as a load before the fix took it
    assert sorted(e.path for e in walk_roots(cfg).entries) == [f"{seed}/m/a.bin", f"{state}/notes.txt"]
