#!/usr/bin/env python3
"""Cost of `build_snapshot` for an unchanged sweep (issue 11, docs/benchmarks.md §8).

Builds a real tree (default 1,000 torrents x 20 files = 20,000 files, in a temporary folder,
/dev/shm by default) with a fifth of the torrents hardlinked into a library, scans both pools
into a fresh catalog, then times `build_snapshot` over a fake client listing every torrent
(no network): the catalog already knows everything, as on an unchanged sweep. Per build it
prints wall seconds, this process's CPU seconds and, from a cProfile of one build, the number
of SQLite `execute` calls and of lstat calls (`os.lstat`, and `os.stat` relative to a folder).

    python bench/bench_snapshot.py [--torrents 1000] [--files 20] [--runs 3] [--compare DIR]

``--compare DIR`` also measures the qbhook package of another checkout (e.g. ``git archive
main qbhook | tar -x -C DIR``): each version in its own process, on the same tree, in this run.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The qbhook to measure: this checkout, or the one a --compare parent names for its child.
sys.path.insert(0, os.environ.get("QBHOOK_BENCH_TREE") or str(Path(__file__).resolve().parents[1]))

from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.clients.model import TorrentFile, TorrentInfo
from qbhook.config import parse_config
from qbhook.decide.snapshot import build_snapshot
from qbhook.pathmap import PathMap

SEEDING = "data/media/torrents/seeding"


class Client:
    """The client surface the builder uses (name, torrents(), files()), from a dict."""

    def __init__(self, torrents: dict[str, tuple[str, str, list[str]]]):
        self.name = "qbt"
        self.t = torrents  # hash -> (save_path, name, [rel])

    def torrents(self, hashes=None, category=None, tag=None):
        out = []
        for h, (save, name, rels) in self.t.items():
            raw = {
                "hash": h,
                "name": name,
                "save_path": save,
                "content_path": os.path.join(save, name),
                "state": "stalledUP",
                "progress": 1.0,
                "amount_left": 0,
                "size": len(rels),
                "total_size": len(rels),
                "tags": "",
                "category": "",
                "has_metadata": True,
            }
            out.append(TorrentInfo.from_api(raw, PathMap(), self.name))
        return out

    def files(self, h):
        return [
            TorrentFile.from_api({"index": i, "name": r, "size": 1, "progress": 1.0, "priority": 1}, i)
            for i, r in enumerate(self.t[h][2])
        ]


def make_bed(base: Path, n: int, per: int) -> dict:
    stash, pool = base / "stash", base / "pool"
    torrents = {}
    k = 0
    for i in range(n):
        on_stash = i % 5 < 3
        save = (stash if on_stash else pool) / SEEDING
        name = f"T{i:06d}"
        rels = [f"{name}/d{j % 4}/f{j:03d}.bin" for j in range(per)]
        for r in rels:
            p = save / r
            p.parent.mkdir(parents=True, exist_ok=True)
            k += 1
            with open(p, "wb") as f:  # a size of its own (sparse), as media files mostly have
                f.write(b"%d/%s" % (i, r.encode()))
                f.truncate(64 + k)
            if on_stash and i % 5 == 0:  # a library link: the group stays where it is
                lib = stash / "media/movies" / r
                lib.parent.mkdir(parents=True, exist_ok=True)
                os.link(p, lib)
        torrents[f"{i:040x}"] = (str(save), name, rels)
    return {"stash": str(stash), "pool": str(pool), "torrents": torrents}


def measure(bed: dict, catalog: str, runs: int) -> dict:
    stash, pool = Path(bed["stash"]), Path(bed["pool"])
    cfg = parse_config(
        {
            "catalog": catalog,
            "pools": {"stash": {"path": str(stash), "role": "primary"}, "pool": {"path": str(pool), "role": "cold"}},
            "seeding_roots": {"stash": str(stash / SEEDING), "pool": str(pool / SEEDING)},
            "scan": {"settle_seconds": 0},
        },
        env={},
    )
    cat = Catalog.open(cfg.catalog)
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    client = Client(bed["torrents"])
    build_snapshot(cfg, cat, [client])  # hashes what decisions need: later builds are unchanged sweeps
    times, cpus = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        snap = build_snapshot(cfg, cat, [client])
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)  # this process's CPU-s: steadier than wall on a loaded machine
    prof = cProfile.Profile()
    prof.enable()
    build_snapshot(cfg, cat, [client])
    prof.disable()
    calls = {"execute": 0, "lstat": 0}
    for (_file, _line, fn), (_cc, nc, *_rest) in pstats.Stats(prof).stats.items():
        if "method 'execute' of 'sqlite3.Connection'" in fn:
            calls["execute"] += nc
        elif fn in ("<built-in method posix.lstat>", "<built-in method posix.stat>"):
            calls["lstat"] += nc  # an lstat by path, or (dirfd.FolderReader) relative to a folder's descriptor
    cat.close()
    return {
        "seconds": statistics.median(times),
        "cpu": statistics.median(cpus),
        "cpu_min": min(cpus),  # the least disturbed build: what to compare on a loaded machine
        "files": sum(len(t.files) for t in snap.torrents),
        "inodes": len(snap.inodes),
        **calls,
    }


def _child(tree: str, bed_json: str, catalog: str, runs: int) -> dict:
    env = {**os.environ, "QBHOOK_BENCH_TREE": tree}
    out = subprocess.run(
        [sys.executable, __file__, "--child", bed_json, "--catalog", catalog, "--runs", str(runs)],
        env=env,
        cwd="/",
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torrents", type=int, default=1000)
    ap.add_argument("--files", type=int, default=20, help="files per torrent")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tmpdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--compare", metavar="DIR", help="also measure the qbhook package in this checkout")
    ap.add_argument("--compare-label", default="other")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--catalog", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(measure(json.loads(Path(a.child).read_text()), a.catalog, a.runs)))
        return
    base = Path(tempfile.mkdtemp(prefix="qbhook-bench-snap-", dir=a.tmpdir))
    try:
        t0 = time.perf_counter()
        bed = make_bed(base, a.torrents, a.files)
        bed_json = base / "bed.json"
        bed_json.write_text(json.dumps(bed))
        print(
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {a.torrents * a.files:,} files in "
            f"{a.torrents:,} torrents under {base} ({time.perf_counter() - t0:.1f}s to make); load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        here = str(Path(__file__).resolve().parents[1])
        versions = ([(a.compare_label, a.compare)] if a.compare else []) + [("this", here)]
        print(
            f"{'version':<10} {'s/build':>8} {'cpu-s':>7} {'min cpu':>7} {'files':>7} {'inodes':>7} "
            f"{'execute':>8} {'lstat':>8}"
        )
        for label, tree in versions:
            # Each version its own fresh catalog, so neither profits from the other's writes.
            r = _child(tree, str(bed_json), str(base / f"cat-{label}.sqlite"), a.runs)
            print(
                f"{label:<10} {r['seconds']:>8.3f} {r['cpu']:>7.3f} {r['cpu_min']:>7.3f} {r['files']:>7,} "
                f"{r['inodes']:>7,} "
                f"{r['execute']:>8,} {r['lstat']:>8,}"
            )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
