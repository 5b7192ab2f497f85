"""``explain HASH`` decided from the torrent index (qbhook.decide.explain), on real directories.

The index must find a superset of the group a full live listing gives the snapshot, never
pull in unrelated torrents (what keeps explain flat as the catalog grows), decide the same,
and re-stat the group's files: a link made after the last scan and sync still counts.
"""

from __future__ import annotations

import dataclasses
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


# ------------------------------------------------------------------ other clients and hash spellings
V2_PURE = "7" * 64  # a v2-only torrent: qBittorrent's id for it is the v2 hash truncated to 40
V2_HYBRID = "8" * 64  # a hybrid torrent: id = its v1 hash, the v2 hash on the side


class FakeQbtV2(FakeQbt):
    """The executor's fake qBittorrent, with the v1/v2 fields qBittorrent 4.4+ lists."""

    def __init__(self):
        super().__init__()
        self.v2: dict[str, str] = {}  # id -> v2 hash

    def _info(self, t):
        info = super()._info(t)
        v2 = self.v2.get(t.hash)
        if v2 is None:
            return info
        v1 = None if v2.startswith(t.hash) else t.hash  # v2-only: no v1 hash at all
        return dataclasses.replace(info, infohash_v1=v1, infohash_v2=v2)


@pytest.mark.parametrize("asked", ["v2 of a v2-only torrent", "v2 of a hybrid", "v1 of a hybrid"])
def test_explain_finds_a_torrent_by_its_v2_or_hybrid_hash_and_decides_like_a_live_listing(bed, asked):
    seed = bed.seed
    write(seed / "Doc.V2/v.mkv", b"V" * 7000)
    write(seed / "Doc.HY/h.mkv", b"H" * 8000)
    qbt = FakeQbtV2()
    qbt.v2 = {V2_PURE[:40]: V2_PURE, "9" * 40: V2_HYBRID}
    for t in bed.qbt.t.values():
        qbt.add(t)
    qbt.add(FakeTorrent(V2_PURE[:40], "Doc.V2", str(seed), [("Doc.V2/v.mkv", 7000, 1)], tags={"~noHL"}))
    qbt.add(FakeTorrent("9" * 40, "Doc.HY", str(seed), [("Doc.HY/h.mkv", 8000, 1)], tags={"~noHL"}))
    for p in bed.cfg.pools:
        scanner.scan_pool(bed.cat, p, bed.cfg.scan)
    sync_client(bed.cat, qbt)
    h, own = {
        "v2 of a v2-only torrent": (V2_PURE, V2_PURE[:40]),
        "v2 of a hybrid": (V2_HYBRID, "9" * 40),
        "v1 of a hybrid": ("9" * 40, "9" * 40),
    }[asked]
    view = _group(bed, h.upper())  # any case, as a user pastes it
    assert view is not None and {t.hash for t in view.infos} == {own}
    (info,) = view.infos
    assert info.infohash_v2 == qbt.v2[own] and info.infohash_v1 == (None if own == V2_PURE[:40] else own)
    snap, plan = _plan(bed, view.clients, h, infos=view.infos)
    assert _decisions(snap, plan) == _decisions(*_plan(bed, [qbt], h))
    assert plan.groups[0].torrents == [own] and plan.groups[0].action == "demote"  # seed-only on the primary


HR = "da7416fba531f00aaef182555dd82eeafb3a22fe"  # an rTorrent item (recorded-shape answers)


def test_explain_answers_for_an_rtorrent_item_and_groups_it_with_qbittorrents_cross_seeds(bed):
    """rTorrent has no incremental feed: its index comes from the batched listing. An rTorrent
    item hardlinked with qBittorrent's A and B (a cross-seed in another client) is one group;
    explain finds all three from the index and decides like live listings of both clients."""
    from qbhook.clients.rtorrent import RtorrentClient
    from qbhook.pathmap import PathMap
    from tests.unit.rtorrent.test_adapter import ROW_MULTI, FakeRpc, _row

    rt_dir = bed.seed / "rt/Movie.A"
    rt_dir.mkdir(parents=True)
    for f in ("a.mkv", "a.nfo"):
        os.link(bed.seed / "Movie.A" / f, rt_dir / f)
    for p in bed.cfg.pools:
        scanner.scan_pool(bed.cat, p, bed.cfg.scan)
    row = _row(
        ROW_MULTI,
        hash=HR.upper(),
        name="Movie.A",
        directory=str(rt_dir),
        completed_bytes=3040,
        size_bytes=3040,
        custom1="",
    )
    rt = RtorrentClient("rt", "/run/rt.sock", PathMap(), sleep=lambda s: None)
    rt._rpc = FakeRpc([row], {HR.upper(): [["a.mkv", 3000, 1, 1, 1], ["a.nfo", 40, 1, 1, 1]]})
    rep = sync_client(bed.cat, rt)
    assert (rep.mode, rep.added, rep.unmappable) == ("listing", 1, [])
    roots = [str(r) for r in bed.cfg.seeding_roots]
    view = indexed_group(bed.cat, HR, ["qbt", "rt"], roots)
    assert view is not None and {(t.instance, t.hash) for t in view.infos} >= {("rt", HR), ("qbt", A), ("qbt", B)}
    assert {c.name for c in view.clients} == {"qbt", "rt"}
    rt_files = next(c for c in view.clients if c.name == "rt").files(HR)
    assert [f.name for f in rt_files] == ["Movie.A/a.mkv", "Movie.A/a.nfo"]  # relative to the save path
    snap, plan = _plan(bed, view.clients, HR, infos=view.infos)
    live = _plan(bed, [bed.qbt, rt], HR)
    assert _decisions(snap, plan) == _decisions(*live)
    (g,) = [g for g in plan.groups if HR in g.torrents]
    assert {A, B, HR} <= set(g.torrents)
    # rTorrent not configured: the index cannot stand in (the caller asks the clients)
    assert indexed_group(bed.cat, HR, ["qbt"], roots) is None


def test_the_folder_rule_searches_the_path_indexes(bed):
    """C (a single file inside A's folder) finds A's group by the folder rule only: its query
    must search the content and save path indexes, not read every torrent of the instance."""
    from tests.unit.catalog.test_torrent_index import _plans_of

    statements: list[str] = []
    bed.cat.conn.set_trace_callback(statements.append)
    try:
        view = _group(bed, C)
    finally:
        bed.cat.conn.set_trace_callback(None)
    assert {A, B, C} == {t.hash for t in view.infos}
    folder = [q for q in statements if "content_path IN" in q]
    plans = _plans_of(bed.cat, folder)
    assert folder and any("torrents_content_path" in p for p in plans), plans
    assert any("torrents_save_path" in p for p in plans), plans
    assert not [p for p in plans if p.startswith("SCAN ") or "sqlite_autoindex_torrents" in p], plans


def test_explain_group_raises_a_hash_the_answering_clients_lack_and_keeps_a_down_client_as_live_error(bed):
    """UnknownTorrent is a QbtError, but the clients answered: a wrong hash (bad input), raised
    where it is known, not a ``live_error`` ("no client could answer") for the CLI to tell apart
    from a client that is down, which the index may stand in for."""
    from qbhook.decide.planning import explain_group
    from qbhook.errors import ExitCode, QbtError, UnknownTorrent

    with pytest.raises(UnknownTorrent) as e:
        explain_group(bed.cfg, bed.cat, lambda: [bed.qbt], "f" * 40, no_scan=True)
    assert e.value.exit_code == ExitCode.BAD_INPUT

    class Down(FakeQbt):
        def torrents(self, *a, **k):
            raise QbtError("cannot reach qBittorrent at http://127.0.0.1:9")

    r = explain_group(bed.cfg, bed.cat, lambda: [Down()], "f" * 40, no_scan=True, live=True)
    assert r.data is None and type(r.live_error) is QbtError, r
