#!/usr/bin/env python3
"""Listing every torrent with its files: rTorrent (XML-RPC multicall) against qBittorrent (Web API).

Loads the same N generated multi-file torrents (default 5,000, three small files each, data
present) into a headless rtorrent and a qbittorrent-nox, both offline, then times what a
snapshot needs: every torrent and every torrent's file list, through qbhook's adapters.

* qBittorrent: ``QbtClient.torrents()`` + ``files(h)`` per torrent (the Web API has no
  call that lists files of many torrents; this is what snapshot.py does today);
* rTorrent, same shape: ``RtorrentClient.torrents()`` + ``files(h)`` per item;
* rTorrent, batched: ``RtorrentClient.torrents_with_files()`` (one d.multicall2, then one
  system.multicall of f.multicall per 100,000 files).

qBittorrent gets the torrents with ``is_skip_checking=True``; rTorrent hashes the (tiny)
data on load. The timed part starts once both report every item.

    python bench/bench_list_clients.py [--items 5000] [--files 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
import xmlrpc.client
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import cleanup, machine, table, tool_version, workdir
from qbhook.clients.qbt.client import QbtClient
from qbhook.clients.rtorrent import RtorrentClient
from qbhook.sandbox.qbt import QbtInstance
from qbhook.sandbox.rtorrent import RtorrentInstance
from qbhook.sandbox.torrents import DEAD_ANNOUNCE

PIECE = 16384


def bencode(x) -> bytes:
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, list):
        return b"l" + b"".join(bencode(i) for i in x) + b"e"
    if isinstance(x, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in x.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(type(x))


def make_items(data: Path, n: int, files: int) -> list[tuple[str, bytes]]:
    """Write n payloads of ``files`` small files under data/; return (infohash, .torrent bytes)."""
    out = []
    for i in range(n):
        name = f"Item.{i:05d}"
        root = data / name
        root.mkdir(parents=True)
        blob, entries = b"", []
        for j in range(files):
            content = hashlib.sha256(f"{i}:{j}".encode()).digest() * (16 + 8 * j)
            (root / f"f{j}.bin").write_bytes(content)
            blob += content
            entries.append({"length": len(content), "path": [f"f{j}.bin"]})
        pieces = b"".join(hashlib.sha1(blob[k : k + PIECE]).digest() for k in range(0, len(blob), PIECE))
        info = {"name": name, "piece length": PIECE, "pieces": pieces, "files": entries, "private": 1}
        torrent = bencode({"announce": DEAD_ANNOUNCE, "info": info})
        out.append((hashlib.sha1(bencode(info)).hexdigest(), torrent))
    return out


def load_rtorrent(rt: RtorrentInstance, items, data: Path, batch: int = 200) -> None:
    rpc = rt.rpc(timeout=120)
    for k in range(0, len(items), batch):
        calls = [
            {"methodName": "load.raw_start", "params": ["", xmlrpc.client.Binary(t), f"d.directory.set={data}"]}
            for _, t in items[k : k + batch]
        ]
        rpc.call("system.multicall", calls)


def load_qbt(client, items, data: Path, batch: int = 100) -> None:
    for k in range(0, len(items), batch):
        res = client.torrents_add(
            torrent_files=[t for _, t in items[k : k + batch]],
            save_path=str(data),
            is_skip_checking=True,
            use_auto_torrent_management=False,
        )
        if res != "Ok.":
            raise SystemExit(f"qBittorrent refused a batch: {res!r}")


def wait_for(what: str, fn, want: int, timeout: float = 900) -> float:
    t0 = time.perf_counter()
    while (got := fn()) < want:
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"{what}: only {got} of {want} after {timeout}s")
        time.sleep(0.5)
    return time.perf_counter() - t0


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--files", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--base", default="/tmp")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    work = workdir(args.base, "qbhook-bench-list-")
    rt, qbt = RtorrentInstance(), QbtInstance()
    try:
        data = work / "data"
        t0 = time.perf_counter()
        items = make_items(data, args.items, args.files)
        gen_s = time.perf_counter() - t0
        rt.start(work / "rt")
        qbt.start(work / "qbt")
        rtc = RtorrentClient("rt", rt.address, timeout=300)
        qbc = QbtClient("qbt", qbt.url, qbt.username, qbt.password, timeout=300)

        t0 = time.perf_counter()
        load_rtorrent(rt, items, data)
        rt_rpc = rt.rpc(timeout=300)
        rt_load_s = (time.perf_counter() - t0) + wait_for(
            "rtorrent hashed",
            lambda: sum(
                1 for h, c in rt_rpc.call("d.multicall2", "", "main", "d.hashing=", "d.complete=") if not h and c
            ),
            args.items,
        )
        t0 = time.perf_counter()
        raw_qbt = qbt.client()
        load_qbt(raw_qbt, items, data)
        # right after an add qBittorrent 4.5 reports a relative content_path for a moment
        qbt_load_s = (time.perf_counter() - t0) + wait_for(
            "qBittorrent added",
            lambda: sum(1 for t in raw_qbt.torrents_info() if str(t["content_path"]).startswith("/")),
            args.items,
        )

        def per_item(client):
            infos = client.torrents()
            return sum(len(client.files(t.hash)) for t in infos), len(infos)

        def batched():
            pairs = rtc.torrents_with_files()
            return sum(len(f) for _, f in pairs), len(pairs)

        qbt_s, qbt_counts = timed(lambda: per_item(qbc), args.repeat)
        rt_naive_s, rt_naive_counts = timed(lambda: per_item(rtc), args.repeat)
        rt_batch_s, rt_batch_counts = timed(batched, args.repeat)
        want = (args.items * args.files, args.items)
        for label, counts in (
            ("qBittorrent", qbt_counts),
            ("rTorrent per item", rt_naive_counts),
            ("rTorrent batched", rt_batch_counts),
        ):
            if counts != want:
                raise SystemExit(f"{label} listed {counts[1]} torrents / {counts[0]} files, expected {want}")
        listing_only_s, _ = timed(rtc.torrents, args.repeat)
        # What the executor's newcomer check costs per look: one listing of every torrent, no files.
        qbt_listing_s, _ = timed(qbc.torrents, args.repeat)

        print(f"machine: {machine()}")
        print(
            f"clients: {tool_version(['rtorrent', '-h'])}; qbittorrent-nox {qbc.version()} "
            f"(Web API {qbc.api_version()})"
        )
        print(
            f"items: {args.items} torrents x {args.files} files = {args.items * args.files} files "
            f"(generated in {gen_s:.1f}s; loaded: rtorrent {rt_load_s:.1f}s incl. hashing, "
            f"qBittorrent {qbt_load_s:.1f}s skip-checking)"
        )
        print(f"median of {args.repeat} runs, every torrent with its files through qbhook's adapters:\n")
        print(
            table(
                ["client / method", "round trips", "seconds", "vs qBittorrent"],
                [
                    ["qBittorrent: torrents() + files() each", 2 * args.items + 1, f"{qbt_s:.2f}", "1.00x"],
                    [
                        "rTorrent: torrents() + files() each",
                        2 * args.items + 1,
                        f"{rt_naive_s:.2f}",
                        f"{qbt_s / rt_naive_s:.2f}x faster",
                    ],
                    [
                        "rTorrent: torrents_with_files() (multicall)",
                        1 + -(-args.items // 500),
                        f"{rt_batch_s:.2f}",
                        f"{qbt_s / rt_batch_s:.2f}x faster",
                    ],
                    ["rTorrent: torrents() only (d.multicall2)", 1, f"{listing_only_s:.2f}", "-"],
                    ["qBittorrent: torrents() only (torrents/info)", 1, f"{qbt_listing_s:.2f}", "-"],
                ],
            )
        )
    finally:
        rt.stop()
        qbt.stop()
        cleanup(work, args.keep)


if __name__ == "__main__":
    main()
