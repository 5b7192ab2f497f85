"""The torrent index against a real qbittorrent-nox and real zfs-fuse pools.

Each test syncs through the real ``sync/maindata`` feed and checks what the index stores,
what an incremental sync sees, and what ``qbhook torrents`` / ``dupes --payloads`` answer,
including with qBittorrent stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
import yaml
from click.testing import CliRunner

from qbhook.catalog.indexer import sync_client
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex
from qbhook.cli import main
from qbhook.clients.qbt.client import QbtClient
from qbhook.pathmap import PathMap
from qbhook.sandbox.torrents import add_and_wait_seeding, make_torrent, write_payload

pytestmark = pytest.mark.integration

SEED = "data/media/torrents/seeding"


@pytest.fixture
def bed(pools, qbt, qbt_client, tmp_path):
    stash, pool = pools["stash"], pools["pool"]
    for p in (stash, pool):
        (p / SEED).mkdir(parents=True, exist_ok=True)
    cfg = {
        "catalog": str(tmp_path / "catalog.sqlite"),
        "pools": {"stash": {"path": str(stash), "role": "primary"}, "pool": {"path": str(pool), "role": "cold"}},
        "seeding_roots": {"stash": str(stash / SEED), "pool": str(pool / SEED)},
        # identity mappings of the two pools only: anything else is unmappable
        "qbittorrent": {
            "name": "qbt",
            "url": qbt.url,
            "username": "admin",
            "password": qbt.password,
            "path_map": [{"client": str(stash), "host": str(stash)}, {"client": str(pool), "host": str(pool)}],
        },
        "scan": {"settle_seconds": 0},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))

    class Bed:
        config = path
        catalog_path = tmp_path / "catalog.sqlite"
        torrents = tmp_path / "torrents"
        stash_seed = stash / SEED
        pool_seed = pool / SEED
        pm = PathMap([(str(stash), str(stash)), (str(pool), str(pool))])

        def client(self):
            return QbtClient("qbt", qbt.url, "admin", qbt.password, self.pm, retries=1)

        def catalog(self):
            return Catalog.open(self.catalog_path, marker_roots=[stash, pool])

        def add(self, save, name, files, seed=0, **kw):
            write_payload(save, {f"{name}/{rel}": size for rel, size in files.items()}, seed=seed)
            data = make_torrent(
                save / name, self.torrents / f"{name}-{time.monotonic_ns()}.torrent", piece_size=64 * 1024
            )
            return add_and_wait_seeding(qbt_client, data, save, **kw)

        def run(self, *args):
            return CliRunner().invoke(main, ["--config", str(path), *args], catch_exceptions=False)

    return Bed()


def _row(cat, h):
    return next(t for t in TorrentIndex(cat.conn).torrents(include_gone=True) if t.hash == h)


def test_added_changed_removed_follow_the_incremental_feed(bed, qbt_client):
    h = bed.add(bed.stash_seed, "Show.A", {"e01.mkv": 100_000, "e02.mkv": 50_000})
    cat, client = bed.catalog(), bed.client()
    rep = sync_client(cat, client)
    assert rep.mode == "full" and rep.added == 1 and rep.files_fetched == 1
    t = _row(cat, h)
    assert t.name == "Show.A" and t.save_path == str(bed.stash_seed) and t.state in ("stalledUP", "uploading")
    assert t.files == 2 and t.gone_at is None and t.map_error is None
    files = TorrentIndex(cat.conn).files("qbt", h)
    assert [(f[1], f[2]) for f in files] == [("Show.A/e01.mkv", 100_000), ("Show.A/e02.mkv", 50_000)]

    # Unchanged: an incremental answer with nothing in it, no file list fetched.
    rep = sync_client(cat, client)
    assert rep.mode == "incremental" and rep.changed == 0 and rep.files_fetched == 0

    # Category and tag: seen by the next sync, no file list needed.
    qbt_client.torrents_create_category(name="tv")
    qbt_client.torrents_set_category(category="tv", torrent_hashes=h)
    qbt_client.torrents_add_tags(tags="keep", torrent_hashes=h)
    rep = sync_client(cat, client)
    assert rep.mode == "incremental" and rep.changed == 1 and rep.files_fetched == 0
    t = _row(cat, h)
    assert t.category == "tv" and t.tags == ("keep",)

    # Save path change (qBittorrent moves the data): the file list is re-read under the new path.
    dest = bed.stash_seed / "moved"
    dest.mkdir()
    qbt_client.torrents_set_location(location=str(dest), torrent_hashes=h)
    deadline = time.monotonic() + 30
    while qbt_client.torrents_info(torrent_hashes=h)[0]["save_path"].rstrip("/") != str(dest):
        assert time.monotonic() < deadline, "setLocation did not finish"
        time.sleep(0.1)
    rep = sync_client(cat, client)
    assert rep.mode == "incremental" and rep.files_fetched == 1
    assert _row(cat, h).save_path == str(dest)
    assert [f[4] for f in TorrentIndex(cat.conn).files("qbt", h)] == [
        os.fsencode(dest / "Show.A/e01.mkv"),
        os.fsencode(dest / "Show.A/e02.mkv"),
    ]

    # Removed: marked gone, row kept.
    qbt_client.torrents_delete(delete_files=False, torrent_hashes=h)
    deadline = time.monotonic() + 10
    while qbt_client.torrents_info(torrent_hashes=h):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rep = sync_client(cat, client)
    assert rep.gone == 1
    assert _row(cat, h).gone_at is not None
    assert TorrentIndex(cat.conn).torrents() == []


def test_qbittorrent_restart_gives_a_full_resync(bed, qbt):
    h = bed.add(bed.stash_seed, "Film.B", {"film.mkv": 80_000})
    cat, client = bed.catalog(), bed.client()
    assert sync_client(cat, client).mode == "full"
    assert sync_client(cat, client).mode == "incremental"
    qbt.restart()
    # The same client object: its rid means nothing to the new qBittorrent, which says full_update.
    rep = sync_client(cat, client)
    assert rep.mode == "full" and rep.gone == 0 and rep.added == 0
    assert rep.files_fetched == 0  # the full listing is diffed: no file list re-read
    assert _row(cat, h).gone_at is None
    assert sync_client(cat, client).mode == "incremental"


def test_index_survives_a_qbhook_restart_and_answers_with_qbittorrent_stopped(bed, qbt):
    h = bed.add(bed.stash_seed, "Album.C", {"01.flac": 30_000, "02.flac": 20_000}, category=None)
    r = bed.run("--json", "torrents")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["torrents"]
    assert [t["hash"] for t in rows] == [h] and rows[0]["pool"] == "stash"

    # A new process: qBittorrent keeps sync state per login session, so it gets a full listing,
    # which is diffed against the stored index: nothing added, no file list fetched again.
    rep = sync_client(bed.catalog(), bed.client())
    assert rep.added == 0 and rep.files_fetched == 0 and rep.gone == 0

    qbt.stop()
    r = bed.run("--json", "torrents", "--pool", "stash")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [t["hash"] for t in data["torrents"]] == [h]
    assert data["torrents"][0]["files"] == 2
    assert any("cannot sync" in p and "qbt" in p for p in data["problems"])
    assert data["index"]["qbt"]["synced_at"] is not None
    # the human form says so on stderr, in one line, and how old the answer is
    r = bed.run("torrents")
    assert r.exit_code == 0 and "cannot sync" in r.stderr and "synced" in r.stderr and "Traceback" not in r.output


def test_one_payload_under_two_layouts_one_content_id_two_tree_ids(bed):
    a = bed.add(bed.stash_seed, "Pack", {"x.bin": 70_000, "sub/y.bin": 40_000}, seed=7)
    # The same bytes copied (not linked) to the cold pool under another layout.
    other = bed.pool_seed / "Pack.Other"
    (other / "deep").mkdir(parents=True)
    shutil.copyfile(bed.stash_seed / "Pack/x.bin", other / "deep/x.bin")
    shutil.copyfile(bed.stash_seed / "Pack/sub/y.bin", other / "y.bin")
    data = make_torrent(other, bed.torrents / "other.torrent", piece_size=64 * 1024)
    from qbhook.sandbox.torrents import add_and_wait_seeding as add

    b = add(bed.client()._api, data, bed.pool_seed)
    # A hardlinked cross-seed of the first, under a third layout: the same stored copy.
    xs = bed.stash_seed / "Pack.XS"
    xs.mkdir()
    os.link(bed.stash_seed / "Pack/x.bin", xs / "x.bin")
    os.link(bed.stash_seed / "Pack/sub/y.bin", xs / "y.bin")
    c = add(bed.client()._api, make_torrent(xs, bed.torrents / "xs.torrent", piece_size=64 * 1024), bed.stash_seed)

    # Before hashing: no ids, and the index says how far hashing got.
    r = bed.run("--json", "torrents")
    rows = {t["hash"]: t for t in json.loads(r.stdout)["torrents"]}
    assert rows[a]["content_id"] is None and rows[a]["ids_complete"] is False

    assert bed.run("scan", "--hash").exit_code == 0
    r = bed.run("--json", "torrents")
    rows = {t["hash"]: t for t in json.loads(r.stdout)["torrents"]}
    assert rows[a]["content_id"] == rows[b]["content_id"] == rows[c]["content_id"] is not None
    assert len({rows[a]["tree_id"], rows[b]["tree_id"], rows[c]["tree_id"]}) == 3
    assert rows[a]["files_resolved"] == 2 and rows[a]["files_hashed"] == 2
    # a and its hardlinked cross-seed share inodes: one payload group; b is apart
    assert rows[a]["group"] == rows[c]["group"] != rows[b]["group"]

    r = bed.run("--json", "dupes", "--payloads")
    assert r.exit_code == 0, r.output
    sets = json.loads(r.stdout)["payloads"]
    assert len(sets) == 1
    s = sets[0]
    assert s["copies"] == 2 and s["layouts"] == 3 and s["size"] == 110_000
    assert s["reclaimable_bytes"] == 110_000
    assert sorted(len(x["torrents"]) for x in s["stored"]) == [1, 2]

    # A member's content changes: its hash is no longer valid, the ids go with it.
    with open(other / "y.bin", "r+b") as f:
        f.write(b"changed")
    assert bed.run("scan").exit_code == 0
    rows = {t["hash"]: t for t in json.loads(bed.run("--json", "torrents").stdout)["torrents"]}
    assert rows[b]["content_id"] is None and rows[b]["files_hashed"] == 1
    assert json.loads(bed.run("--json", "dupes", "--payloads").stdout)["payloads"] == []


def test_unmappable_torrent_gets_a_row_with_the_reason(bed, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    h = bed.add(outside, "Stray", {"s.bin": 10_000})
    ok = bed.add(bed.stash_seed, "Fine", {"f.bin": 10_000})
    r = bed.run("--json", "torrents")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    rows = {t["hash"]: t for t in data["torrents"]}
    assert rows[ok]["map_error"] is None and rows[ok]["pool"] == "stash"
    stray = rows[h]
    assert stray["save_path"] is None and stray["pool"] is None
    assert "under no path_map prefix" in stray["map_error"] and stray["client_save_path"] == str(outside)
    assert stray["files"] == 1 and stray["files_resolved"] == 0
    assert any(h in p for p in data["problems"])


def test_corrupt_index_is_rebuilt_with_a_clear_message(bed):
    h = bed.add(bed.stash_seed, "Doc.D", {"d.mkv": 20_000})
    assert bed.run("torrents").exit_code == 0
    cat = bed.catalog()
    cat.conn.execute("UPDATE torrents SET raw = 'not json{' WHERE hash = ?", (h,))
    cat.conn.execute("PRAGMA foreign_keys = OFF")
    cat.conn.execute("INSERT INTO torrent_files(torrent, idx, rel, size, priority) VALUES (999, 0, 'x', 1, 1)")
    cat.close()
    r = bed.run("--json", "torrents")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert any("inconsistent" in p and "rebuilt from the client" in p for p in data["problems"])
    assert [t["hash"] for t in data["torrents"]] == [h] and data["torrents"][0]["files"] == 1
    assert data["index"]["qbt"]["mode"] == "full"
    cat = bed.catalog()
    assert cat.conn.execute("SELECT count(*) FROM torrent_files WHERE torrent = 999").fetchone()[0] == 0
    # and the next sync is an ordinary one: nothing to rebuild, nothing re-read
    rep = sync_client(cat, bed.client())
    assert rep.rebuilt is None and rep.files_fetched == 0 and rep.added == 0


class _Counter:
    """Counts the HTTP requests a QbtClient really sends (a hook on its requests session)."""

    def __init__(self, client: QbtClient):
        self.n = 0
        self.paths: list[str] = []
        client.version()  # log in first: the session exists from here on
        client._api._session.hooks["response"].append(self._hook)

    def _hook(self, r, *a, **k):
        self.n += 1
        self.paths.append(r.request.path_url.split("?")[0])


def test_sweep_plans_from_the_index_and_records_decisions(bed):
    from qbhook.config import load_config
    from qbhook.events.worker import sweep

    hs = [bed.add(bed.stash_seed, f"Seed.{i}", {"a.bin": 20_000 + i, "b.bin": 10_000}, seed=i) for i in range(3)]
    cfg = load_config(bed.config)
    cat, client = bed.catalog(), bed.client()
    count = _Counter(client)
    first = sweep(cfg, cat, [client])
    assert first["index_listing"] == "index" and first["index"][0]["files_fetched"] == 3
    count.n, count.paths = 0, []
    second = sweep(cfg, cat, [client])
    # one sync/maindata, no file list, no torrents/info: the snapshot's files came from the index
    assert second["index"][0]["mode"] == "incremental" and second["index"][0]["files_fetched"] == 0
    assert "/api/v2/torrents/files" not in count.paths and count.n <= 10, count.paths
    assert first["plan"] == second["plan"]
    rows = {t.hash: t for t in TorrentIndex(cat.conn).torrents()}
    assert set(rows) == set(hs)
    # every torrent carries the decision and group of the sweep's plan
    assert all(t.decision and t.group_id and t.decided_at for t in rows.values())
    r = bed.run("--json", "torrents", "--offline", "--decision", rows[hs[0]].decision)
    assert hs[0] in {t["hash"] for t in json.loads(r.stdout)["torrents"]}


def test_an_event_indexes_just_its_torrent_without_extra_requests(bed):
    from types import SimpleNamespace

    from qbhook.config import load_config
    from qbhook.events.worker import handle_job

    a = bed.add(bed.stash_seed, "Ev.A", {"x.bin": 30_000}, seed=1)
    b = bed.add(bed.stash_seed, "Ev.B", {"y.bin": 30_000}, seed=2)
    cfg = load_config(bed.config)
    cat, client = bed.catalog(), bed.client()
    handle_job(cfg, cat, [client], SimpleNamespace(id=1, hashes=[a], paths=[], truncated=False))
    rows = {t.hash: t for t in TorrentIndex(cat.conn).torrents()}
    assert set(rows) == {a}  # b was not part of the job: not touched
    assert rows[a].files == 1 and rows[a].decision is not None and rows[a].save_path == str(bed.stash_seed)
    # the next sync takes the client's full record over the event's row, without re-reading files
    rep = sync_client(cat, client)
    assert rep.added == 1 and rep.files_fetched == 1  # only b's list
    assert {t.hash for t in TorrentIndex(cat.conn).torrents()} == {a, b}
    assert _row(cat, a).client_save_path == str(bed.stash_seed)


def test_explain_decides_from_the_index_with_qbittorrent_stopped(bed, qbt):
    """explain takes its decision now, from the index's torrents and a live stat of every file
    of the group: with qBittorrent stopped, a library link made after the last scan and sync
    still keeps the data where it is, and the answer says how old the index is."""
    from qbhook.config import load_config
    from qbhook.events.worker import sweep

    h = bed.add(bed.stash_seed, "Gone.Dark", {"g.mkv": 40_000, "g.nfo": 500}, seed=3, tags="~noHL")
    cfg = load_config(bed.config)
    cat = bed.catalog()
    sweep(cfg, cat, [bed.client()])
    decided = _row(cat, h).decision
    assert decided not in (None, "stay")  # seed-only data on the primary pool
    qbt.stop()
    r = bed.run("--json", "explain", h)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["index"]["source"] == "index" and d["index"]["synced_age_s"]["qbt"] is not None
    assert d["group"]["action"] == decided and [t["hash"] for t in d["torrents"]] == [h]
    lib = bed.stash_seed.parent.parent / "movies" / "G.mkv"
    lib.parent.mkdir(parents=True)
    os.link(bed.stash_seed / "Gone.Dark/g.mkv", lib)  # after the scan and the sync
    d = json.loads(bed.run("--json", "explain", h).stdout)
    files = {os.path.basename(f["path"]): f for f in d["torrents"][0]["files"]}
    assert d["group"]["action"] == "stay", d["group"]
    assert (files["g.mkv"]["nlink"], files["g.mkv"]["external_links"]) == (2, 1)
    # human form: where the torrents came from and how old, on stderr; no traceback
    r = bed.run("explain", h)
    assert r.exit_code == 0 and "torrents from the index (qbt synced" in r.stderr and "STAY" in r.stdout
    # an index older than asked for: the sync is tried, fails, and the answer says so
    r = bed.run("--json", "explain", h, "--max-scan-age", "0")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["group"]["action"] == "stay" and any("cannot sync qbt" in p for p in d["index"]["problems"])
    # --index: the last recorded decision only, with its age
    d = json.loads(bed.run("--json", "explain", "--index", h).stdout)
    assert d["source"] == "index" and d["group"]["decision"] == decided and d["torrents"][0]["index_age_s"] is not None
    # a hash the index never saw: one line, the unknown-torrent exit code
    r = bed.run("explain", "f" * 40)
    assert r.exit_code != 0 and "not in the torrent index" in r.stderr and "Traceback" not in r.output


@pytest.mark.slow
def test_explain_from_the_index_answers_like_a_live_listing_without_a_client(
    pools, qbt, qbt_client, tmp_path, monkeypatch
):
    """The realistic scenario (library links, cross-seeds, conflicts, outside roots): for every
    torrent, explain from the index gives the answer of explain --live, and builds no client
    at all when the index could stand in (no request, no client library, no login)."""
    from qbhook.clients.registry import Clients
    from qbhook.config import load_config
    from qbhook.events.worker import sweep
    from qbhook.sandbox.scenario import Scenario

    sc = Scenario(stash=pools["stash"], pool=pools["pool"], torrent_dir=tmp_path / "torrents").build_all(qbt_client)
    cfgp = tmp_path / "config.yaml"
    cfgp.write_text(yaml.safe_dump(sc.config_dict(tmp_path / "catalog.sqlite", qbt.url)))
    cfg = load_config(cfgp)
    cat = Catalog.open(cfg.catalog, marker_roots=[p.path for p in cfg.pools])
    sweep(cfg, cat, [QbtClient("default", qbt.url, "admin", "adminadmin", retries=1)])
    cat.close()
    built: list[int] = []
    real = Clients.from_config.__func__
    monkeypatch.setattr(Clients, "from_config", classmethod(lambda cls, *a, **k: built.append(1) or real(cls, *a, **k)))

    def explain(*args):
        built.clear()
        r = CliRunner().invoke(main, ["--config", str(cfgp), "--json", "explain", *args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        d = json.loads(r.stdout)
        d.pop("catalog")  # "full scan N s ago": the second may be a second later
        return d.pop("index"), d, len(built)

    from_index = 0
    for h in sorted({h for hs in sc.hashes.values() for h in hs}):
        (idx, d, clients), (live, d_live, _) = explain(h), explain(h, "--live")
        assert live["source"] == "clients"
        assert d == d_live, h
        if idx["source"] == "index":
            from_index += 1
            assert clients == 0, h
    assert from_index >= len(sc.hashes) // 2


def test_sweep_from_the_index_decides_like_a_live_listing(pools, qbt, qbt_client, tmp_path, monkeypatch):
    """The realistic scenario (library links, cross-seeds, conflicts, outside roots): planning
    from the index's file lists gives the same groups and decisions as listing every torrent live."""
    import qbhook.catalog.indexer as indexer_mod
    from qbhook.config import load_config
    from qbhook.events.worker import sweep
    from qbhook.sandbox.scenario import Scenario

    sc = Scenario(stash=pools["stash"], pool=pools["pool"], torrent_dir=tmp_path / "torrents").build_all(qbt_client)
    cfgp = tmp_path / "config.yaml"
    cfgp.write_text(yaml.safe_dump(sc.config_dict(tmp_path / "catalog.sqlite", qbt.url)))
    cfg = load_config(cfgp)
    cat = Catalog.open(cfg.catalog, marker_roots=[p.path for p in cfg.pools])
    client = QbtClient("default", qbt.url, "admin", "adminadmin", retries=1)
    sweep(cfg, cat, [client])
    indexed = sweep(cfg, cat, [client])
    assert indexed["index_listing"] == "index" and indexed["index"][0]["files_fetched"] == 0
    monkeypatch.setattr(indexer_mod, "snapshot_view", lambda *a, **k: None)
    live = sweep(cfg, cat, [client])
    assert live["index_listing"] == "live"

    def decisions(out):
        return sorted((g["group_id"], g["action"], g["reason"]) for g in out["pending"])

    assert indexed["plan"] == live["plan"]
    assert decisions(indexed) == decisions(live) and len(decisions(live)) >= 4
    cat.close()


def test_explain_after_a_recent_full_scan_does_not_walk_the_pools(bed, monkeypatch):
    from qbhook.catalog import scan as scanner

    h = bed.add(bed.stash_seed, "Lib.E", {"e.mkv": 30_000}, seed=5)
    lib = bed.stash_seed.parent.parent / "movies" / "E.mkv"
    lib.parent.mkdir(parents=True)
    os.link(bed.stash_seed / "Lib.E/e.mkv", lib)
    calls = []
    real = scanner.scan_pool
    monkeypatch.setattr(scanner, "scan_pool", lambda *a, **k: calls.append(a[1].name) or real(*a, **k))
    # never scanned: explain scans both pools first, and names the library link
    r = bed.run("explain", h)
    assert r.exit_code == 0, r.output
    assert sorted(calls) == ["pool", "stash"] and "pools scanned now" in r.stderr
    assert "STAY" in r.output and "E.mkv" in r.output
    # scanned a moment ago: no walk, same decision, and it says what it relied on
    calls.clear()
    r = bed.run("--json", "explain", h)
    assert calls == [] and "full scan" in json.loads(r.stdout)["catalog"]
    assert json.loads(r.stdout)["group"]["action"] == "stay"
    # too old for the caller: scanned again
    r = bed.run("explain", h, "--max-scan-age", "0")
    assert sorted(calls) == ["pool", "stash"]


def test_incremental_sweeps_on_real_parts(bed, qbt_client, monkeypatch):
    """Real qbittorrent-nox, real zfs-fuse pools: an unchanged sweep builds no snapshot; a library
    hardlink (nlink only) and a category change each re-plan just their own group."""
    import qbhook.events.worker as worker
    from qbhook.config import load_config

    built: list = []
    real = worker._snapshot
    monkeypatch.setattr(worker, "_snapshot", lambda *a, **k: built.append(a[3]) or real(*a, **k))
    for name in ("tv", "movies"):
        qbt_client.torrents_create_category(name=name)
    film = bed.add(bed.stash_seed, "Film.Inc", {"film.mkv": 90_000}, seed=1, tags="~noHL", category="movies")
    show = bed.add(bed.stash_seed, "Show.Inc", {"e1.mkv": 70_000}, seed=2, tags="~noHL", category="tv")
    other = bed.add(bed.stash_seed, "Other.Inc", {"o.mkv": 60_000}, seed=3, tags="~noHL", category="tv")
    data = yaml.safe_load(bed.config.read_text())
    data["policy"] = {"demote_categories": ["movies"]}  # "movies" demotes, "tv" stays
    bed.config.write_text(yaml.safe_dump(data))
    cfg = load_config(bed.config)
    cat, client = bed.catalog(), bed.client()
    first = worker.sweep(cfg, cat, [client])
    assert first["full"] and first["replanned"]["groups"] == 3 and len(built) == 1
    assert _row(cat, film).decision == "demote" and _row(cat, show).decision == "stay"
    other_decided = _row(cat, other).decided_at

    second = worker.sweep(cfg, cat, [client])
    # the demote is re-planned every sweep (it is not a settled stay); the two stays are not
    assert second["replanned"] == {"groups": 1, "torrents": 1, "why": {"not a settled stay": 1}}
    assert built[-1] == [film] and second["index"][0]["mode"] == "incremental"

    # a library hardlink to the seed-only film: nlink changes, the torrent does not
    lib = bed.stash_seed.parents[2] / "movies/Film (2020)"
    lib.mkdir(parents=True)
    os.link(bed.stash_seed / "Film.Inc/film.mkv", lib / "film.mkv")
    third = worker.sweep(cfg, cat, [client])
    assert third["replanned"]["groups"] == 1 and built[-1] == [film]
    assert _row(cat, film).decision == "stay" and "linked outside" in _row(cat, film).decision_reason
    fourth = worker.sweep(cfg, cat, [client])
    assert fourth["replanned"]["groups"] == 0 and len(built) == 3, "unchanged: no snapshot at all"

    # a category change re-plans only its torrent's group
    qbt_client.torrents_set_category(category="movies", torrent_hashes=show)
    deadline = time.monotonic() + 10
    while True:
        fifth = worker.sweep(cfg, cat, [client])
        if fifth["replanned"]["groups"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert fifth["replanned"] == {"groups": 1, "torrents": 1, "why": {"torrent changed": 1}}
    assert built[-1] == [show] and _row(cat, show).decision == "demote"
    assert _row(cat, other).decision == "stay" and _row(cat, other).decided_at == other_decided  # never re-planned

    # the library drops its link: nlink alone again, and the settled stay is re-planned to demote
    os.unlink(lib / "film.mkv")
    sixth = worker.sweep(cfg, cat, [client])
    assert sixth["replanned"]["why"] == {"not a settled stay": 1, "files changed": 1}  # show's demote, film
    assert _row(cat, film).decision == "demote"
    cat.close()
