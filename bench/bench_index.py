#!/usr/bin/env python3
"""API requests and time of a torrent index sync (qbhook.catalog.indexer) against a real qbittorrent-nox.

Loads N generated multi-file torrents (default 5,000 x 36 files = 180,000 files, tiny files
on local disk, ``is_skip_checking=True``) into an offline qbittorrent-nox, then counts the
HTTP requests qbhook's QbtClient really sends (a response hook on its requests session) for:

1. the first sync into an empty index (sync/maindata + one torrents/files per torrent);
2. an unchanged second sync, same session (target: <= 10 requests);
3. a sync from a new process (new login session: qBittorrent answers full_update; the full
   listing is diffed against the stored index, so no file list is re-read);
4. a sync after 10 torrents changed: 5 re-categorised + tagged, 5 renamed (a name change
   re-reads the file list) (target: <= 10 + 2 per changed torrent);
5. for comparison, what a listing without the index costs: torrents() + files() per torrent
   (``--baseline``; 2N+1 requests);
6. ``--sweep``: two whole ``worker.sweep`` runs (scan of both pools, index sync, snapshot from
   the index, plan) after the syncs above, the second one unchanged. The data lies in the
   primary pool's seeding root (plain folders on one filesystem: the bench counts requests,
   not ZFS facts); a demote tag nobody has keeps the planner from hashing everything.
   Then the same sweep once more with the snapshot listing every file list live (what a
   sweep did before the index), for a ratio measured in the same run.

    python bench/bench_index.py [--items 5000] [--files 36] [--baseline] [--sweep]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import cleanup, machine, table, workdir, write_config
from bench.bench_list_clients import bencode, load_qbt, wait_for
from qbhook.catalog.indexer import sync_client
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex
from qbhook.clients.qbt.client import QbtClient
from qbhook.sandbox.qbt import QbtInstance
from qbhook.sandbox.torrents import DEAD_ANNOUNCE

PIECE = 16384


def make_items(data: Path, n: int, files: int) -> list[tuple[str, bytes]]:
    """n payloads of ``files`` files of 64-320 bytes each (sizes differ per file)."""
    out = []
    for i in range(n):
        name = f"Item.{i:05d}"
        root = data / name
        root.mkdir(parents=True)
        blob, entries = b"", []
        for j in range(files):
            content = hashlib.sha256(f"{i}:{j}".encode()).digest() * (2 + j % 9)
            sub = f"d{j % 4}"
            (root / sub).mkdir(exist_ok=True)
            (root / sub / f"f{j}.bin").write_bytes(content)
            blob += content
            entries.append({"length": len(content), "path": [sub, f"f{j}.bin"]})
        pieces = b"".join(hashlib.sha1(blob[k:k + PIECE]).digest() for k in range(0, len(blob), PIECE))
        info = {"name": name, "piece length": PIECE, "pieces": pieces, "files": entries, "private": 1}
        out.append((hashlib.sha1(bencode(info)).hexdigest(), bencode({"announce": DEAD_ANNOUNCE, "info": info})))
    return out


class Counter:
    def __init__(self, client: QbtClient):
        self.n = 0
        client.version()                      # logs in: the session exists from here on
        client._api._session.hooks["response"].append(self._hook)
        self.n = 0

    def _hook(self, *_a, **_k):
        self.n += 1


def explain_cost(cfg_path: Path, args: list[str]) -> tuple[float, str]:
    """Wall seconds of a qbhook command in its own process, and its stat-family calls (strace -c)."""
    import shutil
    import subprocess
    import tempfile
    cmd = [sys.executable, "-m", "qbhook", "--config", str(cfg_path), "--json", *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=args[0] != "status", capture_output=True, cwd="/")   # status: 1 without a server
    secs = time.perf_counter() - t0
    if not shutil.which("strace"):
        return secs, "?"
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        subprocess.run(["strace", "-f", "-c", "-o", out.name, "-e", "trace=lstat,stat,newfstatat,statx,fstatat64",
                        *cmd], check=False, capture_output=True, cwd="/")
        total = [ln for ln in out.read().splitlines() if ln.strip().endswith("total")]
    return secs, total[0].split()[3] if total else "?"


def measured(label: str, fn, counter: Counter) -> list:
    counter.n = 0
    t0 = time.perf_counter()
    rep = fn()
    dt = time.perf_counter() - t0
    return [label, counter.n, f"{dt:.2f}", getattr(rep, "mode", "-"), getattr(rep, "files_fetched", "-")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--files", type=int, default=36)
    ap.add_argument("--baseline", action="store_true", help="also list torrents() + files() per torrent")
    ap.add_argument("--sweep", action="store_true", help="also time two whole sweeps (scan + sync + plan)")
    ap.add_argument("--base", default="/tmp")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    work = workdir(args.base, "qbhook-bench-index-")
    qbt = QbtInstance()
    try:
        stash, pool = work / "stash", work / "pool"
        data = stash / "data/media/torrents/seeding"
        cfg_path = write_config(work / "config.yaml", work / "catalog.sqlite", stash, pool)
        t0 = time.perf_counter()
        items = make_items(data, args.items, args.files)
        gen_s = time.perf_counter() - t0
        qbt.start(work / "qbt")
        raw = qbt.client()
        t0 = time.perf_counter()
        load_qbt(raw, items, data)
        load_s = (time.perf_counter() - t0) + wait_for(
            "qBittorrent added", lambda: sum(1 for t in raw.torrents_info()
                                             if str(t["content_path"]).startswith("/")), args.items)
        cat = Catalog.open(work / "catalog.sqlite")

        def client():
            return QbtClient("qbt", qbt.url, qbt.username, qbt.password, timeout=600)

        c1 = client()
        n1 = Counter(c1)
        rows = [measured("1. first sync, empty index", lambda: sync_client(cat, c1), n1)]
        rows.append(measured("2. unchanged, same session", lambda: sync_client(cat, c1), n1))
        c2 = client()
        n2 = Counter(c2)
        rows.append(measured("3. unchanged, new process (full_update)", lambda: sync_client(cat, c2), n2))
        rows.append(measured("   then unchanged again", lambda: sync_client(cat, c2), n2))
        hs = [h for h, _ in items[:10]]
        raw.torrents_create_category(name="bench")
        raw.torrents_set_category(category="bench", torrent_hashes=hs[:5])
        raw.torrents_add_tags(tags="benched", torrent_hashes=hs[:5])
        for h in hs[5:]:
            raw.torrents_rename(torrent_hash=h, new_torrent_name=f"Renamed.{h[:8]}")
        time.sleep(1.5)   # let qBittorrent's state settle into the next sync answer
        rows.append(measured("4. after 10 torrents changed", lambda: sync_client(cat, c2), n2))
        idx = TorrentIndex(cat.conn)
        present = idx.torrents()
        nfiles = sum(t.files for t in present)
        assert len(present) == args.items and nfiles == args.items * args.files, (len(present), nfiles)
        changed = {t.hash: t for t in present if t.hash in hs}
        assert all(changed[h].category == "bench" for h in hs[:5])
        assert all(changed[h].name.startswith("Renamed.") for h in hs[5:])
        if args.baseline:
            def per_item():
                infos = c2.torrents()
                return sum(len(c2.files(t.hash)) for t in infos)
            rows.append(measured("5. without index: torrents() + files() each", per_item, n2))
        if args.sweep:
            import yaml

            from qbhook.config import load_config
            from qbhook.events.worker import sweep
            conf = yaml.safe_load(cfg_path.read_text())
            conf["qbittorrent"] = {"name": "qbt", "url": qbt.url, "username": qbt.username,
                                   "password": qbt.password, "timeout": 600}
            conf["policy"] = {"demote_require_tag": "bench-never"}
            cfg_path.write_text(yaml.safe_dump(conf))
            cfg = load_config(cfg_path)
            sweeps = []
            for label in ("6. sweep (scan + sync + plan)", "   sweep again, unchanged"):
                n2.n = 0
                t0 = time.perf_counter()
                out = sweep(cfg, cat, [c2])
                dt = time.perf_counter() - t0
                sweeps.append(out)
                rows.append([label, n2.n, f"{dt:.2f}", f"{out['index'][0]['mode']}/{out['index_listing']}",
                             out["index"][0]["files_fetched"]])
            # The same sweep with the snapshot listing every torrent's files live, as before the index.
            import qbhook.catalog.indexer as indexer_mod
            real_view = indexer_mod.snapshot_view
            indexer_mod.snapshot_view = lambda *a, **k: None
            try:
                n2.n = 0
                t0 = time.perf_counter()
                out = sweep(cfg, cat, [c2])
                dt = time.perf_counter() - t0
            finally:
                indexer_mod.snapshot_view = real_view
            rows.append(["   same sweep, files listed live (no index)", n2.n, f"{dt:.2f}",
                         f"{out['index'][0]['mode']}/{out['index_listing']}", out["index"][0]["files_fetched"]])
            assert out["plan"] == sweeps[-1]["plan"], "the index and the live listing must plan the same"
            # explain one torrent in its own process: right after the sweeps (recent full scan),
            # and forced to rescan (--max-scan-age 0), as explain did before; stat calls by strace.
            for label, extra in (("7. explain HASH (recent full scan)", ["explain", items[0][0]]),
                                 ("   explain HASH --max-scan-age 0 (walks)",
                                  ["explain", items[0][0], "--max-scan-age", "0"]),
                                 ("   reference: qbhook --json status (startup, imports)", ["status"])):
                secs, stats = explain_cost(cfg_path, extra)
                rows.append([label, "-", f"{secs:.2f}", f"{stats} stat calls", "-"])
            print(f"sweep plans: {sweeps[-1]['plan']}")

        print(f"machine: {machine()}")
        print(f"qbittorrent-nox {c1.version()} (Web API {c1.api_version()})")
        print(f"bed: {args.items} torrents x {args.files} files = {nfiles} files (generated in {gen_s:.1f}s, "
              f"loaded in {load_s:.1f}s skip-checking); catalog {work / 'catalog.sqlite'}")
        import resource
        print(f"peak RSS of this process (bench + index syncs{' + sweeps' if args.sweep else ''}): "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        print("targets: unchanged sync <= 10 requests; after 10 changes <= 10 + 2 x 10 = 30\n")
        print(table(["sync", "HTTP requests", "seconds", "mode", "file lists fetched"], rows))
    finally:
        qbt.stop()
        cleanup(work, args.keep)


if __name__ == "__main__":
    main()
