#!/usr/bin/env python3
"""Benchmark `qbhook scan`: first scan and unchanged rescan vs `find -printf` over the same tree.

Generates a realistic seeding tree (default 200,000 small files in 2,000 torrent folders, a
share of them hardlinked into a library folder) in a temp folder (default under /tmp, removed
afterwards), then measures, each run in its own process with a warm page cache:

  baseline  find ROOT -printf '%i %s %T@ %p\\n' > /dev/null     (median of --runs)
  qbhook    qbhook scan stash   on an empty catalog             (once: first scan)
  qbhook    qbhook scan stash   again, nothing changed          (median of --runs)
  qbhook    the same after forgetting the persisted rescan memos (the first rescan after a write)

and the peak RSS of the qbhook process (os.wait4 rusage), extrapolated to MB per 1M files
(peak minus the RSS of `qbhook --version`, i.e. interpreter + imports).
Targets: unchanged rescan <= 1.5x find; < 500 MB per 1M files.

  python bench/bench_scan.py                 # ext4 (/tmp), 200k files
  python bench/bench_scan.py --zfs           # also on a zfs-fuse pool (needs root + zfs-fuse)
  python bench/bench_scan.py --files 20000   # quick run
  python bench/bench_scan.py --runs 3 --cli-rounds 30 --compare DIR   # + 30 short A/B rounds of the CLI rescan
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (
    cleanup,
    drop_scan_memos,
    env_with_pythonpath,
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

RESCAN_TARGET = 1.5
MB_PER_MILLION_TARGET = 500


def generate_tree(stash: Path, files: int, folders: int, link_share: float) -> dict:
    """Torrent folders under data/media/torrents/seeding, each a season pack or a movie with
    extras; ``link_share`` of the folders is also hardlinked into data/media/library."""
    seeding = stash / "data/media/torrents/seeding"
    library = stash / "data/media/library"
    per = max(files // folders, 1)
    made = links = 0
    payload = b"x" * 64
    t0 = time.perf_counter()
    link_every = int(1 / link_share) if link_share > 0 else 0
    for i in range(folders):
        n = per if i < folders - 1 else files - made
        if n <= 0:
            break
        name = f"Show.Number.{i:05d}.S01.1080p.WEB-DL.x264-GRP{i % 37}"
        top = seeding / name
        # season packs get a subfolder layout for some files, like real releases
        subs = [top, top / "Subs", top / "Extras"]
        for s in subs:
            s.mkdir(parents=True, exist_ok=True)
        created = []
        for j in range(n):
            d = subs[0] if j % 10 < 8 else subs[1 + j % 2]
            p = d / f"{name}.E{j:03d}.mkv"
            with open(p, "wb") as f:
                f.write(payload)
            created.append(p)
        made += n
        if link_every and i % link_every == 0:
            lib = library / f"Show Number {i:05d}" / "Season 01"
            lib.mkdir(parents=True, exist_ok=True)
            for p in created:
                os.link(p, lib / p.name)
                links += 1
    return {"files": made, "links": links, "paths": made + links, "seconds": time.perf_counter() - t0}


def scan_once(cfg: Path, env: dict | None = None, pool: str = "stash"):
    out = cfg.parent / f"scan-{cfg.stem}.json"
    r = run_rss(qbhook_cmd(cfg, "--json", "scan", pool), stdout_path=str(out), env=env)
    return r, json.loads(r.stdout)["scans"][0]


# The floors under a Python rescan, each timed in its own process in the same rounds: the bare
# walk (os.scandir + lstat of every entry, nothing else) and the catalog's signature load alone.
FLOOR_WALK = r"""
import os, sys, time
t0 = time.perf_counter()
n, stack = 0, [os.fsencode(sys.argv[1])]
while stack:
    with os.scandir(stack.pop()) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            else:
                e.stat(follow_symlinks=False)
                n += 1
print(n, time.perf_counter() - t0)
"""
FLOOR_LOAD = r"""
import sys, time
from qbhook.catalog.store import Catalog
cat = Catalog.open(sys.argv[1], readonly=True)
t0 = time.perf_counter()
n = len(cat.load_pool_signatures("stash"))
print(n, time.perf_counter() - t0)
"""

# The sweeper's case: one Catalog kept across rescans (qbhook serve). The first rescan primes
# it; the second, timed, reuses the catalog side while nothing was written in between.
FLOOR_SWEEPER = r"""
import sys, time
from qbhook.catalog.store import Catalog
from qbhook.config import load_config
from qbhook.catalog.scan import scan_pool
cfg = load_config(sys.argv[1])
cat = Catalog.open(cfg.catalog)
scan_pool(cat, cfg.primary, cfg.scan)
t0 = time.perf_counter()
r = scan_pool(cat, cfg.primary, cfg.scan)
assert (r.added, r.changed, r.removed) == (0, 0, 0), r
print(r.files_seen, time.perf_counter() - t0)
"""


def bench_root(label: str, base: Path, stash: Path, pool: Path, args) -> tuple[list[list], dict]:
    info = generate_tree(stash, args.files, args.folders, args.link_share)
    print(
        f"[{label}] generated {info['files']:,} files + {info['links']:,} hardlinks in "
        f"{args.folders:,} folders ({info['seconds']:.1f}s) on {fstype_of(stash)}",
        file=sys.stderr,
    )

    # this checkout, and optionally another one (--compare DIR); the --version run below fills the pycache
    versions = qbhook_versions(base, args.compare, args.compare_label)
    find_cmd = ["find", str(stash), "-printf", "%i %s %T@ %p\n"]
    run_rss(find_cmd)  # warm the cache before anything is timed

    cfgs, cats, firsts, base_rss = {}, {}, {}, {}
    for name, env in versions:
        cats[name] = base / f"catalog-{len(cfgs)}.sqlite"
        cfgs[name] = write_config(base / f"config-{len(cfgs)}.yaml", cats[name], stash, pool)
        base_rss[name] = run_rss(qbhook_cmd(cfgs[name], "--version"), env=env).maxrss_kib
        r, res = scan_once(cfgs[name], env)
        assert res["added"] == info["paths"], (res, info)
        firsts[name] = r

    # Rounds interleave find and the rescans so load from other processes hits all alike.
    finds, rescans, inner = [], {n: [] for n, _ in versions}, {n: [] for n, _ in versions}
    unmemoed: dict[str, list] = {n: [] for n, _ in versions}
    walks, loads, sweeper, own_finds = [], [], [], []
    catalog0 = base / "catalog-0.sqlite"
    # The find command this checkout's scanner runs (its prune and fields), as it runs it.
    from qbhook.catalog.findwalk import find_cmd as _find_cmd
    from qbhook.config import ScanConfig

    own_find = _find_cmd(os.fsencode(stash), {os.fsencode(n) for n in ScanConfig().ignore_names})
    own_env = {"LC_ALL": "C", "PATH": "/usr/bin:/bin"}
    for _ in range(args.runs):
        finds.append(run_rss(find_cmd))
        own_finds.append(run_rss(own_find, env=own_env).seconds)
        walks.append(run_rss([sys.executable, "-c", FLOOR_WALK, str(stash)]).seconds)
        loads.append(
            float(
                run_rss(
                    [sys.executable, "-c", FLOOR_LOAD, str(catalog0)],
                    stdout_path=str(base / "floor.out"),
                    env=env_with_pythonpath(str(Path(__file__).resolve().parents[1])),
                ).stdout.split()[1]
            )
        )
        sweeper.append(
            float(
                run_rss(
                    [sys.executable, "-c", FLOOR_SWEEPER, str(cfgs["qbhook"])],
                    stdout_path=str(base / "sweeper.out"),
                    env=env_with_pythonpath(str(Path(__file__).resolve().parents[1])),
                ).stdout.split()[1]
            )
        )
        for name, env in versions:
            if drop_scan_memos(cats[name]):
                r, res = scan_once(cfgs[name], env)
                assert (res["added"], res["changed"], res["removed"]) == (0, 0, 0), res
                unmemoed[name].append(r.seconds)
            r, res = scan_once(cfgs[name], env)
            assert (res["added"], res["changed"], res["removed"]) == (0, 0, 0), res
            rescans[name].append(r)
            inner[name].append(res["seconds"])
    # --cli-rounds: the CLI rescan alone against find, many short rounds in alternating order.
    # A full round above runs seven commands, so each rescan meets whatever the others left in
    # the caches; here only find and the rescans alternate, as a user's repeated `qbhook scan`.
    cli_finds, cli_rescans = [], {n: [] for n, _ in versions}
    for i in range(args.cli_rounds):
        order = [("find", None), *versions]
        for name, env in order if i % 2 == 0 else order[::-1]:
            if name == "find":
                cli_finds.append(run_rss(find_cmd).seconds)
            else:
                r, res = scan_once(cfgs[name], env)
                assert (res["added"], res["changed"], res["removed"]) == (0, 0, 0), res
                cli_rescans[name].append(r.seconds)
    find_med = statistics.median(r.seconds for r in finds)
    paths = info["paths"]
    walk_med, load_med = statistics.median(walks), statistics.median(loads)
    own_med = statistics.median(own_finds)
    rows = [
        [label, "find -printf (baseline)", f"{find_med:.3f}", "1.00x", "-", "-"],
        [
            label,
            "floor: the scanner's own find (its prune and fields, to /dev/null)",
            f"{own_med:.3f}",
            f"{own_med / find_med:.2f}x",
            "-",
            "-",
        ],
        [
            label,
            "floor: bare Python walk (scandir + lstat, own process)",
            f"{walk_med:.3f}",
            f"{walk_med / find_med:.2f}x",
            "-",
            "-",
        ],
        [
            label,
            "floor: load_pool_signatures() alone (in-process)",
            f"{load_med:.3f}",
            f"{load_med / find_med:.2f}x",
            "-",
            "-",
        ],
    ]
    sweep_med = statistics.median(sweeper)
    rows.append(
        [
            label,
            "qbhook rescan by a long-lived Catalog (serve's sweeper; in-process, 2nd rescan)",
            f"{sweep_med:.3f}",
            f"{sweep_med / find_med:.2f}x",
            "-",
            f"<= {RESCAN_TARGET}x: {verdict(sweep_med / find_med <= RESCAN_TARGET)}",
        ]
    )
    result = {
        "label": label,
        "paths": paths,
        "find": find_med,
        "floor_walk": walk_med,
        "floor_own_find": own_med,
        "floor_load": load_med,
        "sweeper_rescan": sweep_med,
    }
    for name, _env in versions:
        first = firsts[name]
        re_med = statistics.median(r.seconds for r in rescans[name])
        in_med = statistics.median(inner[name])
        rss_first = first.maxrss_kib
        rss_re = max(r.maxrss_kib for r in rescans[name])
        per_m_first = (rss_first - base_rss[name]) / 1024 / paths * 1e6
        per_m_re = (rss_re - base_rss[name]) / 1024 / paths * 1e6
        rows += [
            [
                label,
                f"{name} scan, first (empty catalog)",
                f"{first.seconds:.3f}",
                f"{first.seconds / find_med:.2f}x",
                f"{rss_first / 1024:.0f} MB ({per_m_first:.0f} MB/1M)",
                "-",
            ],
            [
                label,
                f"{name} scan, unchanged rescan",
                f"{re_med:.3f}",
                f"{re_med / find_med:.2f}x",
                f"{rss_re / 1024:.0f} MB ({per_m_re:.0f} MB/1M)",
                (
                    f"<= {RESCAN_TARGET}x: {verdict(re_med / find_med <= RESCAN_TARGET)}; "
                    f"< {MB_PER_MILLION_TARGET} MB/1M: {verdict(max(per_m_first, per_m_re) < MB_PER_MILLION_TARGET)}"
                ),
            ],
            [label, "  of which in-process scan_pool()", f"{in_med:.3f}", f"{in_med / find_med:.2f}x", "-", "-"],
        ]
        if unmemoed[name]:
            un_med = statistics.median(unmemoed[name])
            rows.append(
                [
                    label,
                    f"{name} scan, unchanged rescan without a memo (the first after a write)",
                    f"{un_med:.3f}",
                    f"{un_med / find_med:.2f}x",
                    "-",
                    "-",
                ]
            )
        result[name] = {
            "first": first.seconds,
            "rescan": re_med,
            "rescan_inproc": in_med,
            "rescan_no_memo": statistics.median(unmemoed[name]) if unmemoed[name] else None,
            "rss_base_mb": base_rss[name] / 1024,
            "rss_first_mb": rss_first / 1024,
            "rss_rescan_mb": rss_re / 1024,
            "mb_per_million": max(per_m_first, per_m_re),
        }
        print(
            f"[{label}] {name}: first {first.seconds:.3f}s, rescan {re_med:.3f}s (in-process {in_med:.3f}s), "
            f"find {find_med:.3f}s",
            file=sys.stderr,
        )
    if cli_finds:
        cli_find = statistics.median(cli_finds)
        rows.append([label, f"find -printf, {args.cli_rounds} CLI rounds", f"{cli_find:.3f}", "1.00x", "-", "-"])
        result["cli_rounds"] = {"rounds": args.cli_rounds, "find": cli_find}
        for name, _env in versions:
            med = statistics.median(cli_rescans[name])
            rows.append(
                [
                    label,
                    f"{name} scan, unchanged rescan, {args.cli_rounds} CLI rounds",
                    f"{med:.3f}",
                    f"{med / cli_find:.2f}x",
                    "-",
                    f"<= {RESCAN_TARGET}x: {verdict(med / cli_find <= RESCAN_TARGET)}",
                ]
            )
            result["cli_rounds"][name] = med
        if len(versions) > 1:
            (a, _), (b, _) = versions[0], versions[1]
            diffs = [x - y for x, y in zip(cli_rescans[a], cli_rescans[b], strict=True)]
            print(
                f"[{label}] CLI rounds: {a} - {b} paired median {statistics.median(diffs) * 1000:+.0f} ms, "
                f"{a} faster in {sum(d < 0 for d in diffs)} of {len(diffs)}",
                file=sys.stderr,
            )
    return rows, result


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--files", type=int, default=200_000, help="regular files to generate (default 200000)")
    ap.add_argument("--folders", type=int, default=2000, help="torrent folders (default 2000)")
    ap.add_argument(
        "--link-share",
        type=float,
        default=0.1,
        help="share of torrent folders also hardlinked into the library (default 0.1)",
    )
    ap.add_argument("--runs", type=int, default=3, help="timed runs per measurement, median taken (default 3)")
    ap.add_argument("--tmpdir", default="/tmp", help="where the tree is generated (default /tmp)")
    ap.add_argument("--zfs", action="store_true", help="also run on a zfs-fuse pool (root, zfs-fuse running)")
    ap.add_argument("--zfs-only", action="store_true", help="only the zfs-fuse run")
    ap.add_argument("--zfs-size", default="4G", help="size of the sparse zfs-fuse pool image (default 4G)")
    ap.add_argument("--keep", action="store_true", help="keep the generated tree")
    ap.add_argument(
        "--cli-rounds",
        type=int,
        default=0,
        help="also N short rounds of only find and the CLI rescan(s), in alternating order (e.g. 30)",
    )
    ap.add_argument(
        "--compare",
        metavar="DIR",
        help="also time the qbhook package found in DIR (e.g. an older checkout) in the same rounds",
    )
    ap.add_argument("--compare-label", default="other", help="name for the --compare rows (default 'other')")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args()
    require("find")

    rows, results = [], []
    if not args.zfs_only:
        base = workdir(args.tmpdir, "qbhook-bench-scan-")
        try:
            (base / "stash").mkdir()
            (base / "pool").mkdir()
            r, res = bench_root(fstype_of(base), base, base / "stash", base / "pool", args)
            rows += r
            results.append(res)
        finally:
            cleanup(base, args.keep)
    if args.zfs or args.zfs_only:
        from qbhook.sandbox.zfs import create_pools, destroy_pools, ensure_zfs_fuse

        if not ensure_zfs_fuse():
            raise SystemExit("zfs-fuse is not available (run scripts/install-system-deps.sh as root)")
        base = workdir(args.tmpdir, "qbhook-bench-scan-zfs-")
        pools = None
        try:
            pools = create_pools(base / "bed", size=args.zfs_size, kind="zfs")
            r, res = bench_root("zfs-fuse", base, pools["stash"], pools["pool"], args)
            rows += r
            results.append(res)
        finally:
            if pools is not None:
                destroy_pools(pools)
            cleanup(base, args.keep)

    print(f"\nmachine: {machine()}")
    print(
        f"find: {tool_version(['find', '--version'])}; runs per timing: {args.runs} (median, rounds "
        f"interleaved), warm cache; {rss_method()}\n"
    )
    print(table(["fs", "what", "seconds", "vs find", "peak RSS (per 1M paths)", "target"], rows))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
