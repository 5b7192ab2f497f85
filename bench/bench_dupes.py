#!/usr/bin/env python3
"""Benchmark `qbhook dupes` against jdupes and rdfind on a generated two-pool tree.

The tree (in a temp folder, default under /tmp, removed afterwards) has two pool folders with
many small files and some large ones; about --dup-share of the files are copies of another
file as separate inodes (within a pool and across the two), some files have extra hardlinks,
and some files share a size (and for large ones head and tail) with a different content, so
every tool has to read to tell them apart. Timed, each in its own process, warm page cache:

  jdupes -r -q STASH POOL              (median of 2 x --runs, one before each round of qbhook
                                        runs; jdupes keeps no cache between runs)
  rdfind -dryrun true STASH POOL       (median of --runs)
  qbhook dupes, first run              (empty catalog: scan + partial + full hash; median of --runs,
                                        each on a fresh catalog)
  qbhook dupes, warm run               (same catalog again: rescan, nothing re-read)
  qbhook dupes, warm, no rescan memo   (the same, after forgetting the persisted rescan memos:
                                        a warm run right after any catalog write)
  floor (--floor)                      bench/dupes_floor.py: a minimal Python duplicate finder
                                        that keeps a catalog (walk, partial and full BLAKE3, a
                                        row per path): what the language and the kinds of work
                                        cost, apart from qbhook's machinery (median of --runs);
                                        and the same with its hashing in two processes beside
                                        the catalog writes (dupes_floor.py --two): both cores

CPU-s: user + system seconds of each run (medians), from wait4(): on a shared machine a ratio of
wall times moves with the load, the CPU a run spends much less.

Correctness cross-check: the number of duplicate sets and the reclaimable bytes must agree.
jdupes without -H never matches two hardlinks of one inode (they are "the same file"), which
is qbhook's rule too (duplicates are distinct inodes); with -H it would also report link-only
groups. rdfind's -removeidentinode (default true) does the same. Empty files are ignored by
all three (jdupes without -z, rdfind -ignoreempty, qbhook --min-size 1).

Targets: first run no slower than jdupes; warm run >= 3x faster than jdupes.
--cold drops the page cache before every timed run (the case of pools much bigger than RAM).

  python bench/bench_dupes.py
  python bench/bench_dupes.py --small 5000 --large 10 --runs 1     # quick
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (
    cleanup,
    drop_caches,
    drop_caches_possible,
    drop_scan_memos,
    fstype_of,
    machine,
    qbhook_cmd,
    qbhook_versions,
    require,
    rss_method,
    run_rss,
    table,
    tool_version,
    verdict,
    workdir,
    write_config,
)

KiB, MiB = 1024, 1 << 20
WARM_TARGET = 3.0


class Gen:
    """Content generator: distinct content per id, cheap to produce in bulk."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.block = self.rng.randbytes(4 * MiB)

    def content(self, cid: int, size: int, middle_variant: int = 0) -> bytes:
        # A unique 16-byte prefix and suffix per content id; the bulk comes from a shared
        # random block at an id-dependent offset. middle_variant changes one byte in the
        # middle only: same size, same head and tail, different content.
        tag = cid.to_bytes(8, "little") * 2
        if size <= 32:
            return (tag * 2)[:size]
        off = (cid * 7919) % (len(self.block) // 2)
        body = bytearray()
        need = size - 32
        while len(body) < need:
            take = min(need - len(body), len(self.block) - off)
            body += self.block[off : off + take]
            off = 0
        if middle_variant:
            body[len(body) // 2] ^= middle_variant & 0xFF or 1
        return tag + bytes(body) + tag


def generate(base: Path, args) -> dict:
    rng = random.Random(args.seed)
    gen = Gen(args.seed)
    roots = {"stash": base / "stash", "pool": base / "pool"}
    seeding = {k: v / "data/media/torrents/seeding" for k, v in roots.items()}
    for s in seeding.values():
        s.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    written = 0
    files = []  # (path, size, cid, variant)
    n_folders = max(args.small // 20, 1)

    def target(i: int) -> Path:
        pool = "stash" if rng.random() < 0.6 else "pool"
        folder = seeding[pool] / f"Release.{i % n_folders:05d}.1080p-GRP"
        return folder / f"file.{i:06d}.bin"

    def small_size() -> int:
        # log-uniform 1 KiB .. 512 KiB, rounded to 512 bytes: many natural size collisions
        return max(512, int(2 ** rng.uniform(10, 19)) // 512 * 512)

    specs = []
    cid = 0
    for _ in range(args.small):
        specs.append((small_size(), cid, 0))
        cid += 1
    for _ in range(args.large):
        specs.append((rng.randint(args.large_min, args.large_max) // 4096 * 4096, cid, 0))
        cid += 1
    # Same size + same head/tail, different middle: some large, some small.
    for k in range(max(args.large // 10, 1)):
        size, c, _ = specs[args.small + k] if args.large else specs[k]
        specs.append((size, c, k + 1))
    # Copies: a share of files gets a duplicate (separate inode) somewhere in either pool.
    originals = list(specs)
    n_dup = int(len(originals) * args.dup_share / (1 - args.dup_share))
    for _ in range(n_dup):
        specs.append(rng.choice(originals))
    rng.shuffle(specs)

    for i, (size, c, variant) in enumerate(specs):
        p = target(i)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            f.write(gen.content(c, size, variant))
        written += size
        files.append(p)
    # Hardlinks: some files get a second name (a cross-seed folder) in the same pool.
    links = 0
    for p in rng.sample(files, int(len(files) * args.link_share)):
        q = p.parent.with_name(p.parent.name + ".xseed") / p.name
        q.parent.mkdir(exist_ok=True)
        os.link(p, q)
        links += 1
    # A few empty files (ignored by everyone)
    for k in range(10):
        (seeding["stash"] / f"empty{k}.nfo").touch()
    return {
        "files": len(files),
        "links": links,
        "bytes": written,
        "seconds": time.perf_counter() - t0,
        "roots": roots,
        "contents": cid,
        "copies_made": n_dup,
    }


def forget_memos(catalog: Path) -> bool:
    """What a write to the catalog does to a warm run: no rescan memo (drop_scan_memos) and no
    kept dupes report (catalog/dupes.py), so the run rebuilds the catalog's lines and recomputes
    the report. False: this qbhook version keeps no rescan memo."""
    import sqlite3

    if not drop_scan_memos(catalog):
        return False
    with sqlite3.connect(catalog) as c:
        if c.execute("SELECT 1 FROM sqlite_master WHERE name = 'dupes_memos'").fetchone():
            c.execute("DELETE FROM dupes_memos")
    return True


def warm_cache(roots) -> None:
    subprocess.run(
        ["bash", "-c", "find \"$@\" -type f -exec cat {} + > /dev/null", "_", *map(str, roots.values())], check=True
    )


def parse_jdupes(text: str) -> list[list[str]]:
    sets, cur = [], []
    for line in text.splitlines():
        if line.strip():
            cur.append(line)
        elif cur:
            sets.append(cur)
            cur = []
    if cur:
        sets.append(cur)
    return sets


def summarize_paths(sets: list[list[str]]) -> tuple[int, int]:
    """(sets, reclaimable bytes) counting each inode once per set."""
    reclaim = 0
    n = 0
    for s in sets:
        inodes = {}
        for p in s:
            st = os.lstat(p)
            inodes[(st.st_dev, st.st_ino)] = st.st_size
        if len(inodes) > 1:
            n += 1
            size = next(iter(inodes.values()))
            reclaim += size * (len(inodes) - 1)
    return n, reclaim


def parse_rdfind(path: Path) -> list[list[str]]:
    groups = defaultdict(list)
    for line in path.read_text(errors="surrogateescape").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split(" ", 7)
        groups[abs(int(parts[1]))].append(parts[7])
    return list(groups.values())


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--small", type=int, default=20000, help="small files (1-512 KiB) before copies (default 20000)")
    ap.add_argument("--large", type=int, default=40, help="large files before copies (default 40)")
    ap.add_argument("--large-min", type=int, default=8 * MiB, help="smallest large file in bytes (default 8 MiB)")
    ap.add_argument("--large-max", type=int, default=48 * MiB, help="biggest large file in bytes (default 48 MiB)")
    ap.add_argument("--dup-share", type=float, default=0.3, help="share of files that are copies (default 0.3)")
    ap.add_argument("--link-share", type=float, default=0.05, help="share of files with an extra hardlink (0.05)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool, median taken (default 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-rdfind", action="store_true", help="skip rdfind")
    ap.add_argument("--tmpdir", default="/tmp", help="where the tree is generated (default /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated tree")
    ap.add_argument(
        "--cold",
        action="store_true",
        help="drop the page cache (sync; echo 3 > /proc/sys/vm/drop_caches: root, whole machine) "
        "before every timed run: pools far bigger than RAM are read from disk",
    )
    ap.add_argument(
        "--compare", metavar="DIR", help="also time the qbhook package found in DIR (e.g. an older checkout)"
    )
    ap.add_argument("--compare-label", default="other", help="name for the --compare rows (default 'other')")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    ap.add_argument("--floor", action="store_true", help="also time bench/dupes_floor.py in the same rounds")
    args = ap.parse_args()
    require("jdupes", *(() if args.no_rdfind else ("rdfind",)))
    if args.cold and not drop_caches_possible():
        raise SystemExit("--cold needs root (writes /proc/sys/vm/drop_caches)")

    base = workdir(args.tmpdir, "qbhook-bench-dupes-")
    try:
        info = generate(base, args)
        roots = info["roots"]
        print(
            f"generated {info['files']:,} files ({info['bytes'] / 2**30:.2f} GiB, {info['copies_made']:,} "
            f"copies) + {info['links']:,} hardlinks in {info['seconds']:.1f}s on {fstype_of(base)}",
            file=sys.stderr,
        )
        warm_cache(roots)
        dirs = [str(roots["stash"]), str(roots["pool"])]
        rows, res = [], {}

        versions = qbhook_versions(base, args.compare, args.compare_label)

        def prepare() -> None:
            if args.cold:
                drop_caches()

        jd_runs = []

        def jdupes_round() -> None:
            prepare()
            jd_runs.append(run_rss(["jdupes", "-r", "-q", *dirs], stdout_path=str(base / "jdupes.txt")))

        # rdfind (writes its results file; -dryrun changes nothing)
        rd = rd_sets = rd_bytes = None
        if not args.no_rdfind:
            rd_runs = []
            for _ in range(args.runs):
                prepare()
                rd_runs.append(run_rss(["rdfind", "-dryrun", "true", "-outputname", str(base / "rdfind.txt"), *dirs]))
            rd = statistics.median(r.seconds for r in rd_runs)
            rd_sets, rd_bytes = summarize_paths(parse_rdfind(base / "rdfind.txt"))
            print(f"  rdfind: {rd:.2f}s, {rd_sets} sets", file=sys.stderr)

        for _name, env in versions:  # fills the pycache; untimed
            run_rss([sys.executable, "-m", "qbhook", "--version"], env=env)
        # Rounds interleave jdupes and the qbhook versions (jdupes, A, B, jdupes, A, B, ...), so a
        # burst of load from other processes hits each alike: first runs on fresh catalogs, then
        # warm runs on the last one. jdupes' time is the median over all its rounds.
        firsts = {name: [] for name, _env in versions}
        first_cpu = {name: [] for name, _env in versions}
        first_rss = {name: [] for name, _env in versions}
        cfgs, outs, cfgs_catalog = {}, {}, {}
        floor_runs, floor_out = [], None
        floor2_runs, floor2_out = [], None
        floor_script = str(Path(__file__).resolve().parent / "dupes_floor.py")
        for k in range(args.runs):
            jdupes_round()
            if args.floor:
                prepare()
                floor_runs.append(
                    run_rss(
                        [sys.executable, floor_script, str(base / f"floor-{k}.sqlite"), *dirs],
                        stdout_path=str(base / "floor.json"),
                    )
                )
                floor_out = json.loads(floor_runs[-1].stdout)
                prepare()
                floor2_runs.append(
                    run_rss(
                        [sys.executable, floor_script, "--two", str(base / f"floor2-{k}.sqlite"), *dirs],
                        stdout_path=str(base / "floor2.json"),
                    )
                )
                floor2_out = json.loads(floor2_runs[-1].stdout)
            for vi, (name, env) in enumerate(versions):
                cat = base / f"catalog{vi}-{k}.sqlite"
                if k:
                    for suffix in ("", "-wal", "-shm"):
                        Path(str(base / f"catalog{vi}-{k - 1}.sqlite") + suffix).unlink(missing_ok=True)
                cfgs[name] = write_config(base / f"config{vi}-{k}.yaml", cat, roots["stash"], roots["pool"])
                cfgs_catalog[name] = cat
                prepare()
                r = run_rss(
                    qbhook_cmd(cfgs[name], "--json", "dupes"), stdout_path=str(base / f"qbhook{vi}.json"), env=env
                )
                firsts[name].append(r.seconds)
                first_cpu[name].append(r.cpu)
                first_rss[name].append(r.maxrss_kib)
                outs[name] = json.loads((base / f"qbhook{vi}.json").read_text())
        warm_runs = {name: [] for name, _env in versions}
        # A warm run right after any catalog write has no rescan memo (it rebuilds the catalog's
        # lines in SQLite) and no kept report (it recomputes the sets): timed in the same rounds,
        # after forgetting both.
        unmemoed = {name: [] for name, _env in versions}
        for _ in range(args.runs):
            jdupes_round()
            for vi, (name, env) in enumerate(versions):
                if forget_memos(cfgs_catalog[name]):
                    prepare()
                    unmemoed[name].append(
                        run_rss(qbhook_cmd(cfgs[name], "--json", "dupes"), stdout_path=os.devnull, env=env).seconds
                    )
                prepare()
                warm_runs[name].append(
                    run_rss(
                        qbhook_cmd(cfgs[name], "--json", "dupes"),
                        stdout_path=str(base / f"qbhook{vi}-warm.json"),
                        env=env,
                    )
                )
        jd = statistics.median(r.seconds for r in jd_runs)
        jd_sets, jd_bytes = summarize_paths(parse_jdupes(jd_runs[-1].stdout.decode(errors="surrogateescape")))
        jd_cpu = statistics.median(r.cpu for r in jd_runs)
        print(
            f"  jdupes: {jd:.2f}s ({', '.join(f'{r.seconds:.2f}' for r in jd_runs)}), "
            f"{jd_cpu:.2f} CPU-s, {jd_sets} sets",
            file=sys.stderr,
        )
        qres = {}
        for vi, (name, _env) in enumerate(versions):
            q, q2 = outs[name], json.loads((base / f"qbhook{vi}-warm.json").read_text())
            assert (len(q2["sets"]), q2["reclaimable_bytes"]) == (len(q["sets"]), q["reclaimable_bytes"]), (
                f"{name}: warm run disagrees with first"
            )
            qres[name] = {
                "first": statistics.median(firsts[name]),
                "first_cpu": statistics.median(first_cpu[name]),
                "warm": statistics.median(r.seconds for r in warm_runs[name]),
                "sets": len(q["sets"]),
                "bytes": q["reclaimable_bytes"],
                "rss_first": max(first_rss[name]),
                "rss_warm": max(r.maxrss_kib for r in warm_runs[name]),
                "warm_no_memo": statistics.median(unmemoed[name]) if unmemoed[name] else None,
            }
            print(
                f"  {name}: first {qres[name]['first']:.2f}s ({', '.join(f'{x:.2f}' for x in firsts[name])}; "
                f"{qres[name]['first_cpu']:.2f} CPU-s), warm {qres[name]['warm']:.2f}s, {qres[name]['sets']} sets",
                file=sys.stderr,
            )
        q_sets, q_bytes = qres["qbhook"]["sets"], qres["qbhook"]["bytes"]

        agree = (
            all(q["sets"] == jd_sets and q["bytes"] == jd_bytes for q in qres.values())
            and (rd_sets is None or (q_sets == rd_sets and q_bytes == rd_bytes))
            and all(
                out is None or (out["sets"], out["reclaimable_bytes"]) == (jd_sets, jd_bytes)
                for out in (floor_out, floor2_out)
            )
        )
        rows.append(
            [
                "jdupes -r -q (baseline)",
                f"{jd:.2f}",
                f"{jd_cpu:.2f}",
                "1.00x",
                str(jd_sets),
                f"{jd_bytes:,}",
                f"{max(r.maxrss_kib for r in jd_runs) / 1024:.0f}",
                "-",
            ]
        )
        if rd is not None:
            rows.append(
                [
                    "rdfind -dryrun true",
                    f"{rd:.2f}",
                    f"{statistics.median(r.cpu for r in rd_runs):.2f}",
                    f"{jd / rd:.2f}x",
                    str(rd_sets),
                    f"{rd_bytes:,}",
                    f"{max(r.maxrss_kib for r in rd_runs) / 1024:.0f}",
                    "-",
                ]
            )
        if floor_runs:
            fl = statistics.median(r.seconds for r in floor_runs)
            fl_cpu = statistics.median(r.cpu for r in floor_runs)
            rows.append(
                [
                    "floor: minimal Python, catalog rows",
                    f"{fl:.2f}",
                    f"{fl_cpu:.2f}",
                    f"{jd / fl:.2f}x",
                    str(floor_out["sets"]),
                    f"{floor_out['reclaimable_bytes']:,}",
                    f"{max(r.maxrss_kib for r in floor_runs) / 1024:.0f}",
                    f"CPU {jd_cpu / fl_cpu:.2f}x jdupes'; qbhook's first run "
                    f"{qres['qbhook']['first_cpu'] / fl_cpu:.2f}x the floor's CPU",
                ]
            )
        if floor2_runs:
            fl2 = statistics.median(r.seconds for r in floor2_runs)
            rows.append(
                [
                    "floor on both cores: hashing in two processes",
                    f"{fl2:.2f}",
                    f"{statistics.median(r.cpu for r in floor2_runs):.2f}",
                    f"{jd / fl2:.2f}x",
                    str(floor2_out["sets"]),
                    f"{floor2_out['reclaimable_bytes']:,}",
                    f"{max(r.maxrss_kib for r in floor2_runs) / 1024:.0f}",
                    "the most a two-core design of the floor's work gains",
                ]
            )
        for name, q in qres.items():
            rows.append(
                [
                    f"{name} dupes, first run (empty catalog)",
                    f"{q['first']:.2f}",
                    f"{q['first_cpu']:.2f}",
                    f"{jd / q['first']:.2f}x",
                    str(q["sets"]),
                    f"{q['bytes']:,}",
                    f"{q['rss_first'] / 1024:.0f}",
                    f"no slower than jdupes: {verdict(q['first'] <= jd)}",
                ]
            )
            rows.append(
                [
                    f"{name} dupes, warm run",
                    f"{q['warm']:.2f}",
                    f"{statistics.median(r.cpu for r in warm_runs[name]):.2f}",
                    f"{jd / q['warm']:.2f}x",
                    str(q["sets"]),
                    f"{q['bytes']:,}",
                    f"{q['rss_warm'] / 1024:.0f}",
                    f">= {WARM_TARGET}x faster than jdupes: {verdict(jd / q['warm'] >= WARM_TARGET)}",
                ]
            )
            if q["warm_no_memo"] is not None:
                rows.append(
                    [
                        f"{name} dupes, warm run, the first after a write (no rescan memo, no kept report)",
                        f"{q['warm_no_memo']:.2f}",
                        "-",
                        f"{jd / q['warm_no_memo']:.2f}x",
                        "-",
                        "-",
                        "-",
                        "-",
                    ]
                )
        print(f"\nmachine: {machine()}")
        print(f"{tool_version(['jdupes', '-v'])}; {tool_version(['rdfind', '-v'])}")
        cache = "page cache dropped before every run (--cold)" if args.cold else "page-cached (warm)"
        print(
            f"tree: {info['files']:,} files, {info['bytes'] / 2**30:.2f} GiB, {info['links']:,} extra hardlinks, "
            f"on {fstype_of(base)}, {cache}; median of {args.runs} runs; speed = jdupes time / this time; "
            f"{rss_method()}\n"
        )
        print(
            table(
                [
                    "what",
                    "seconds",
                    "CPU-s",
                    "speed vs jdupes",
                    "dup sets",
                    "reclaimable bytes",
                    "peak RSS MB",
                    "target",
                ],
                rows,
            )
        )
        print(f"\ncross-check (sets and reclaimable bytes equal for all tools): {'OK' if agree else 'MISMATCH'}")
        res = {
            "files": info["files"],
            "bytes": info["bytes"],
            "links": info["links"],
            "cold": args.cold,
            "jdupes": jd,
            "jdupes_cpu": jd_cpu,
            "rdfind": rd,
            "qbhook": qres,
            "floor": [
                {
                    "two_processes": two,
                    "seconds": statistics.median(r.seconds for r in runs),
                    "cpu": statistics.median(r.cpu for r in runs),
                }
                for two, runs in ((False, floor_runs), (True, floor2_runs))
                if runs
            ],
            "sets": {"jdupes": jd_sets, "rdfind": rd_sets},
            "reclaimable": {"jdupes": jd_bytes, "rdfind": rd_bytes},
            "agree": agree,
        }
        if args.json:
            print(json.dumps(res, indent=2))
        if not agree:
            return 1
    finally:
        cleanup(base, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
