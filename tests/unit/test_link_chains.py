"""A symlink chain longer than the kernel follows, planted where qbhook resolves links: one line or
nothing, never a RecursionError (R74: ``os.path.realpath`` recursed once per link)."""

from __future__ import annotations

import os

from qbhook.catalog import library_links
from qbhook.move import orphans
from tests.unit.test_fsops import tmpfs  # noqa: F401
from tests.unit.test_orphans_purge import world  # noqa: F401
from tests.unit.test_snapshot_paths import bed  # noqa: F401


def _chain(folder, n: int = 3000) -> str:
    for i in range(n):
        os.symlink(f"c{i + 1}" if i + 1 < n else "/nowhere", os.path.join(folder, f"c{i}"))
    return os.path.join(folder, "c0")


def test_an_orphan_walks_real_path_of_a_long_chain_is_the_path_itself(tmp_path):
    head = _chain(tmp_path)
    assert orphans._real(head) == head  # a chain no client can follow reaches nothing


def test_an_orphan_walks_real_path_still_resolves_an_ordinary_link(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    assert orphans._real(str(tmp_path / "alias" / "x")) == str(tmp_path / "real" / "x")


def test_a_library_symlink_heading_a_long_chain_reaches_nothing(tmp_path):
    head = _chain(tmp_path)
    got: tuple[dict, dict, dict] = ({}, {}, {})
    assert library_links._reach(head, head, got) is False
    assert got == ({}, {}, {})


def test_a_magnets_save_path_through_two_links_padded_with_dots_keeps_its_folder(world):  # noqa: F811
    # R78: resolve_links' component budget gave up on targets padded with "./" (the kernel follows
    # them), the real save folder went unprotected, and a magnet's data was quarantined.
    from tests.helpers import write
    from tests.unit.test_orphans_magnet import magnet

    w = world
    data = write(os.path.join(w.seed_s, "incoming", "Some.Name/a.mkv"), b"old data" * 100)
    os.symlink("./" * 1100 + "incoming", os.path.join(w.seed_s, "hop2"))
    os.symlink("./" * 1100 + "hop2", os.path.join(w.seed_s, "alias"))
    save = os.path.join(w.seed_s, "alias")
    assert os.path.samefile(save, os.path.join(w.seed_s, "incoming"))  # the kernel follows it
    w.qbt.add(magnet(save))
    assert data not in {o.path for o in orphans.find_orphans(w.cfg, [w.qbt]).orphans}
    assert not orphans.quarantine(w.cfg, w.cat, [w.qbt]).held and os.path.exists(data)


def test_a_save_path_through_two_links_padded_with_dots_blocks_a_demote_onto_its_place(bed):  # noqa: F811
    # R79: LinkResolver spells the places a torrent writes (write_paths, write_prefixes); its
    # component budget gave up on targets padded with "./" that the kernel follows (R78). d, still
    # downloading, saved through two such links a container's user planted: its real folder was
    # named nowhere, and b was demoted onto the place d writes.
    from tests.helpers import write
    from tests.unit.test_executor import FakeTorrent
    from tests.unit.test_snapshot_paths import group, plan_of

    b, d = "b" * 40, "d" * 40
    write(bed.seed_s / "movies/Old.Movie/old.mkv", b"OLD")
    bed.qbt.add(FakeTorrent(b, "Old.Movie", str(bed.seed_s / "movies"), [("Old.Movie/old.mkv", 3, 1)], tags={"~noHL"}))
    (bed.seed_p / "movies").mkdir()
    os.symlink("./" * 1100 + "movies", bed.seed_p / "hop2")
    os.symlink("./" * 1100 + "hop2", bed.seed_p / "alias")
    assert os.path.samefile(bed.seed_p / "alias", bed.seed_p / "movies")  # the kernel follows it
    bed.qbt.add(FakeTorrent(d, "Old.Movie", str(bed.seed_p / "alias"), [("Old.Movie/old.mkv", 3, 1)], progress=0.3))
    snap, plan = plan_of(bed)
    assert str(bed.seed_p / "movies/Old.Movie/old.mkv") in snap.write_paths
    g = group(plan, b)
    assert g.action == "blocked", (g.action, g.reason)
