"""The torrent index follows a real rTorrent (no incremental feed) with its batched listing."""

from __future__ import annotations

import time

import pytest

from qbhook.catalog.indexer import sync_client
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex
from qbhook.sandbox.rtorrent import load_torrent
from qbhook.sandbox.torrents import infohash, make_torrent, write_payload

pytestmark = pytest.mark.integration


def _wait_complete(client, h, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = client.find(h)
        if t is not None and t.is_complete and not t.is_checking:
            return t
        time.sleep(0.1)
    raise TimeoutError(h)


class _Counting:
    """Counts file-list calls of the wrapped client (the batched listing is one call)."""

    def __init__(self, client):
        self._c = client
        self.files_calls = 0
        self.batched_calls = 0

    def __getattr__(self, name):
        return getattr(self._c, name)

    def files(self, h):
        self.files_calls += 1
        return self._c.files(h)

    def torrents_with_files(self):
        self.batched_calls += 1
        return self._c.torrents_with_files()


def test_rtorrent_listing_sync_added_changed_removed(pools, rtorrent, rt_client, tmp_path):
    data = pools["stash"] / "data" / "torrents"
    write_payload(data / "Show.R", {"e1.mkv": 60_000, "e2.mkv": 30_000})
    write_payload(data, {"film.mkv": 50_000}, seed=2)
    multi = make_torrent(data / "Show.R", tmp_path / "m.torrent")
    single = make_torrent(data / "film.mkv", tmp_path / "s.torrent")
    hm, hs = infohash(multi), infohash(single)
    load_torrent(rtorrent.rpc(), multi, str(data), label="tv")
    load_torrent(rtorrent.rpc(), single, str(data))
    _wait_complete(rt_client, hm)
    _wait_complete(rt_client, hs)

    cat = Catalog.open(tmp_path / "c.sqlite")
    client = _Counting(rt_client)
    rep = sync_client(cat, client)
    # first sync: the batched listing, no per-item file call
    assert (rep.mode, rep.added, rep.files_fetched) == ("listing", 2, 2)
    assert client.batched_calls == 1 and client.files_calls == 0
    rows = {t.hash: t for t in TorrentIndex(cat.conn).torrents()}
    assert rows[hm].category == "tv" and rows[hm].files == 2 and rows[hs].files == 1
    assert {f[1] for f in TorrentIndex(cat.conn).files("rt", hm)} == {"Show.R/e1.mkv", "Show.R/e2.mkv"}

    # unchanged: one listing, no file list
    rep = sync_client(cat, client)
    assert (rep.changed, rep.files_fetched) == (0, 0) and client.files_calls == 0

    # label change seen, no file list needed; removal marked gone
    rtorrent.rpc().call("d.custom1.set", hm, "movies")
    rtorrent.rpc().call("d.erase", hs)
    rep = sync_client(cat, client)
    assert rep.changed == 1 and rep.gone == 1 and client.files_calls == 0
    rows = {t.hash: t for t in TorrentIndex(cat.conn).torrents(include_gone=True)}
    assert rows[hm].category == "movies" and rows[hs].gone_at is not None
    cat.close()
