"""``explain HASH`` decided from the torrent index (qbhook.decide.explain), on real directories.

The index must find a superset of the group a full live listing gives the snapshot, never
pull in unrelated torrents (what keeps explain flat as the catalog grows), decide the same,
and re-stat the group's files: a link made after the last scan and sync still counts.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from qbhook.catalog import scan as scanner
from qbhook.catalog.indexer import sync_client
from qbhook.catalog.store import Catalog
from qbhook.decide.explain import GroupCatalog, IndexClient, SharedSizes, indexed_group
from qbhook.decide.planner import make_plan
from qbhook.decide.snapshot import build_snapshot
from tests.helpers import make_config, write
from tests.unit.test_executor import FakeQbt, FakeTorrent

A, B, C, D, E = ("a" * 40, "b" * 40, "c" * 40, "d" * 40, "e" * 40)


@pytest.fixture
def bed(tmp_path):
    """A (folder), B: A's cross-seed (hardlinks in another folder), C: a single file inside A's
    folder (joined by the folder rule only), D and E: unrelated torrents."""
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    seed = cfg.primary.seeding_root
    cfg.cold.seeding_root.mkdir(parents=True)
    xs = seed / "cross-seed/tracker"
    write(seed / "Movie.A/a.mkv", b"A" * 3000)
    write(seed / "Movie.A/a.nfo", b"n" * 40)
    xs.joinpath("Movie.A").mkdir(parents=True)
    for f in ("a.mkv", "a.nfo"):
        os.link(seed / "Movie.A" / f, xs / "Movie.A" / f)
    write(seed / "Movie.A/extra.srt", b"s" * 70)
    write(seed / "Show.D/d.mkv", b"D" * 5000)
    write(seed / "Show.E/e.mkv", b"E" * 6000)
    write(stash / "data/media/other/e-copy.mkv", b"E" * 6000)  # E's size twice: a convergence candidate
    qbt = FakeQbt()
    files_a = [("Movie.A/a.mkv", 3000, 1), ("Movie.A/a.nfo", 40, 1)]
    qbt.add(FakeTorrent(A, "Movie.A", str(seed), files_a, tags={"~noHL"}))
    qbt.add(FakeTorrent(B, "Movie.A", str(xs), files_a, tags={"~noHL"}))
    qbt.add(FakeTorrent(C, "extra.srt", str(seed / "Movie.A"), [("extra.srt", 70, 1)], tags={"~noHL"}))
    qbt.add(FakeTorrent(D, "Show.D", str(seed), [("Show.D/d.mkv", 5000, 1)], tags={"~noHL"}))
    qbt.add(FakeTorrent(E, "Show.E", str(seed), [("Show.E/e.mkv", 6000, 1)], tags={"~noHL"}))
    cat = Catalog.open(cfg.catalog)
    for p in cfg.pools:
        scanner.scan_pool(cat, p, cfg.scan)
    sync_client(cat, qbt)
    yield SimpleNamespace(cfg=cfg, cat=cat, qbt=qbt, seed=seed, lib=stash / "data/media/movies")
    cat.close()


def _group(bed, h):
    return indexed_group(bed.cat, h, ["qbt"], [str(r) for r in bed.cfg.seeding_roots])


def _plan(bed, clients, h, infos=None):
    snap = build_snapshot(bed.cfg, bed.cat, clients, hashes=[h], infos=infos)
    return snap, make_plan(snap, bed.cfg.policy)


def _decisions(snap, plan):
    return (
        sorted(g.to_dict()["group_id"] for g in plan.groups),
        [g.to_dict() for g in plan.groups],
        sorted((t.hash, tuple(f.inode for f in t.files)) for t in snap.torrents),
    )


@pytest.mark.parametrize("h", [A, B, C, D])
def test_the_index_finds_the_group_and_decides_like_a_live_listing(bed, h):
    view = _group(bed, h)
    live_snap, live_plan = _plan(bed, [bed.qbt], h)
    found = {t.hash for t in view.infos}
    # a superset of what the live closure grouped, and nothing unrelated
    assert {t.hash for t in live_snap.torrents} <= found
    assert found == {D} if h == D else {A, B} <= found <= {A, B, C}
    snap, plan = _plan(bed, view.clients, h, infos=view.infos)
    assert _decisions(snap, plan) == _decisions(live_snap, live_plan)
    assert view.synced_at["qbt"] is not None


def test_a_library_link_made_after_the_scan_and_the_sync_counts_without_any_client(bed):
    view = _group(bed, D)
    _snap, plan = _plan(bed, view.clients, D, infos=view.infos)
    (g,) = plan.groups
    assert g.action == "demote", g.reason  # seed-only data on the primary pool
    bed.lib.mkdir(parents=True)
    os.link(bed.seed / "Show.D/d.mkv", bed.lib / "D.mkv")  # after the scan and the sync
    view = _group(bed, D)
    assert all(isinstance(c, IndexClient) for c in view.clients)  # no client can be asked
    snap, plan = _plan(bed, view.clients, D, infos=view.infos)
    (g,) = plan.groups
    (f,) = snap.torrents[0].files
    assert g.action == "stay" and snap.inodes[f.inode].nlink == 2 and snap.inodes[f.inode].external_links == 1


def test_the_index_cannot_stand_in_for_an_unknown_gone_unmapped_or_unconfigured_torrent(bed):
    assert _group(bed, "f" * 40) is None
    assert indexed_group(bed.cat, D, ["other"], [str(r) for r in bed.cfg.seeding_roots]) is None
    bed.cat.conn.execute("UPDATE torrents SET gone_at = 1 WHERE hash = ?", (E,))
    assert _group(bed, E) is None
    bed.cat.conn.execute("UPDATE torrents SET map_error = 'unmappable', save_path = NULL WHERE hash = ?", (B,))
    assert _group(bed, A) is None  # a member's paths are unknown: the live listing reports it
    assert _group(bed, D) is not None  # other groups are not affected


def test_shared_sizes_asked_size_by_size_answer_like_the_catalog(bed):
    every = bed.cat.shared_sizes()
    assert 6000 in every  # the bed has a size held twice
    sizes = {r[0] for r in bed.cat.conn.execute("SELECT size FROM inodes")} | {0, -1, 12345}
    lazy = SharedSizes(bed.cat.conn)
    assert {s for s in sizes if s in lazy} == {s for s in sizes if s in every}
    assert set(SharedSizes(bed.cat.conn)) == every and len(SharedSizes(bed.cat.conn)) == len(every)


@pytest.mark.parametrize("h", [A, E])
def test_explain_snapshot_reads_no_size_of_other_groups_and_decides_the_same(bed, h):
    view = _group(bed, h)
    statements: list[str] = []
    bed.cat.conn.set_trace_callback(statements.append)
    try:
        snap = build_snapshot(bed.cfg, GroupCatalog(bed.cat), view.clients, hashes=[h], infos=view.infos)
    finally:
        bed.cat.conn.set_trace_callback(None)
    assert not [q for q in statements if "GROUP BY size" in q]  # no pass over every inode
    # first, on unhashed files: the files a convergence needs hashed were found through it
    assert _decisions(snap, make_plan(snap, bed.cfg.policy)) == _decisions(*_plan(bed, view.clients, h, view.infos))
    if h == E:
        assert make_plan(snap, bed.cfg.policy).groups[0].action == "converge"
