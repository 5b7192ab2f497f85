"""The client-neutral collection (qbhook.clients.registry.Clients) and the snapshot's batched listing.

Clients hold qBittorrent and rTorrent adapters side by side, looked up by instance name only;
failures name the instance and its type. The snapshot lists a client that offers
``torrents_with_files`` in one batch instead of asking ``files()`` per torrent, with the
same facts as the per-torrent path.
"""

from __future__ import annotations

import pytest

from qbhook.catalog.store import Catalog
from qbhook.clients.qbt.client import QbtClient
from qbhook.clients.registry import Clients
from qbhook.decide.snapshot import build_snapshot
from qbhook.errors import QbtError, UnknownTorrent
from qbhook.pathmap import PathMap
from tests.helpers import make_config, put
from tests.unit.rtorrent.test_adapter import (
    FILES_MULTI,
    FILES_SINGLE,
    HM,
    HS,
    ROW_MULTI,
    ROW_SINGLE,
    _client,
    _row,
)

SEED = "data/media/torrents/seeding"


def _qbt(name="default"):
    return QbtClient(name=name, url="http://127.0.0.1:1", username="admin", password="x", retries=1)


def test_names_are_unique_across_client_types():
    with pytest.raises(QbtError) as ei:
        Clients([_qbt("seed"), _client_named("seed")])
    assert "qBittorrent 'seed' and rTorrent 'seed'" in str(ei.value)


def _client_named(name, **kw):
    c = _client(**kw)
    c.name = name
    return c


def test_unknown_instance_names_what_is_configured():
    clients = Clients([_qbt("main"), _client_named("rt")])
    assert clients["rt"].name == "rt" and clients.names() == ["main", "rt"]
    with pytest.raises(QbtError) as ei:
        clients["gone"]
    assert "no torrent client named 'gone'" in str(ei.value)
    assert "qBittorrent 'main', rTorrent 'rt'" in str(ei.value)


def test_lookup_by_hash_across_rtorrent_instances():
    a = _client_named("rt-a", rows=(ROW_MULTI,), files={HM.upper(): FILES_MULTI})
    b = _client_named("rt-b", rows=(ROW_SINGLE,), files={HS.upper(): FILES_SINGLE})
    clients = Clients([a, b])
    t = clients.torrent(HS.upper())
    assert t.instance == "rt-b" and clients.client_for(t) is b
    with pytest.raises(UnknownTorrent) as ei:
        clients.torrent("0" * 40)
    assert "rTorrent 'rt-a', rTorrent 'rt-b'" in str(ei.value)
    both = Clients([a, _client_named("rt-c", rows=(ROW_MULTI,), files={HM.upper(): FILES_MULTI})])
    with pytest.raises(QbtError, match=r"in several clients \(rTorrent 'rt-a', rTorrent 'rt-c'\)"):
        both.find(HM)


class PerTorrent:
    """The same rTorrent seen through the port without the batched listing (like QbtClient)."""

    def __init__(self, inner):
        self.inner, self.name, self.path_map = inner, inner.name, inner.path_map
        self.files_calls = 0

    def torrents(self, hashes=None, category=None, tag=None):
        return self.inner.torrents(hashes, category, tag)

    def files(self, h):
        self.files_calls += 1
        return self.inner.files(h)


def test_snapshot_lists_a_batching_client_in_one_batch_with_the_same_facts(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for f, size in (("Show.X/a.mkv", 300000), ("Show.X/sub/b.srt", 1000), ("single.mkv", 200000)):
        put(stash / SEED / f, b"x" * size)
    (pool / SEED).mkdir(parents=True)
    cfg = make_config(tmp_path / "catalog.sqlite", stash, pool)
    rows = (_row(ROW_MULTI, directory="/data/seeding/Show.X"), _row(ROW_SINGLE, directory="/data/seeding"))

    def rt():
        return _client(rows=rows, path_map=PathMap([("/data/seeding", str(stash / SEED))]))

    catalog = Catalog.open(cfg.catalog)
    batched = rt()
    snap = build_snapshot(cfg, catalog, Clients([batched]), now=1.0)
    methods = [m for m, *_ in batched._rpc.calls]
    assert methods == ["d.multicall2", "system.multicall"]  # no per-item f.multicall

    per = PerTorrent(rt())
    snap2 = build_snapshot(cfg, catalog, [per], now=1.0)
    assert per.files_calls == 2
    facts = {t.hash: [(f.rel, f.size, f.inode is not None) for f in t.files] for t in snap.torrents}
    assert facts == {t.hash: [(f.rel, f.size, f.inode is not None) for f in t.files] for t in snap2.torrents}
    assert facts[HM] == [("Show.X/a.mkv", 300000, True), ("Show.X/sub/b.srt", 1000, True)]
    assert facts[HS] == [("single.mkv", 200000, True)]


def test_path_map_errors_name_the_rtorrent_instance():
    from qbhook.clients.rtorrent import RtorrentClient
    from qbhook.errors import PathMapError

    c = RtorrentClient("seedbox", "/run/rt.sock", PathMap([("/data", "/stash/data")]))
    with pytest.raises(PathMapError) as ei:
        c.path_map.to_host("/elsewhere/x")
    assert str(ei.value).startswith("rTorrent 'seedbox' path /elsewhere/x is under no path_map prefix")
    with pytest.raises(PathMapError, match="^qBittorrent path /elsewhere/x"):
        PathMap([("/data", "/stash/data")]).to_host("/elsewhere/x")  # qBittorrent's default label
