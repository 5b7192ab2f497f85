#!/usr/bin/env python3
"""Planning time and memory for a synthetic snapshot (default 50,000 torrents / 1,000,000 files).

The planner is pure, so this measures exactly `make_plan` on an in-memory Snapshot shaped like a
big home server: 60% of torrents on the primary pool (a third of those hardlinked into a library,
a fifth with cross-seed siblings sharing inodes), 40% seed-only on the cold pool, some content
duplicated across pools. Baseline printed alongside: the time to merely build the snapshot
(allocating the same facts), so the ratio shows what deciding costs on top of holding the data.

    python bench/bench_plan.py [--torrents 50000] [--files-per-torrent 20] [--cap 0] [--compare DIR]

``--compare DIR`` also measures the qbhook package of another checkout (e.g. main before a
change): each version runs in its own process (its own peak RSS), both in this one run, with
the CPU model, the date and the load average printed.

Targets (issue 3, issue 13): under 10 s and under 1 GB, with no cap.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

# The qbhook to measure: this checkout, or the one a --compare parent names for its child.
sys.path.insert(0, os.environ.get("QBHOOK_BENCH_TREE") or str(Path(__file__).resolve().parents[1]))

from qbhook.config import PolicyConfig

try:
    from qbhook.decide.facts import FileFact, InodeFact, PoolFact, Snapshot, TorrentFact
    from qbhook.decide.planner import make_plan
except ImportError:  # a --compare checkout from before the package move (issue 10)
    from qbhook.facts import FileFact, InodeFact, PoolFact, Snapshot, TorrentFact
    from qbhook.planner import make_plan

S = "/stash/data/media/torrents/seeding"
P = "/pool/data/media/torrents/seeding"
LIB = "/stash/data/media/library"
FS_S, FS_P = "zfs:1", "zfs:2"


def build(n_torrents: int, per: int, seed: int = 1) -> Snapshot:
    rng = random.Random(seed)
    inodes: dict = {}
    content: dict = {}
    torrents = []
    ino = 0
    i = 0
    while i < n_torrents:
        on_primary = rng.random() < 0.6
        root, fs = (S, FS_S) if on_primary else (P, FS_P)
        siblings = 3 if on_primary and rng.random() < 0.2 else 1
        library = on_primary and rng.random() < 0.33
        save = f"{root}/movies"
        keys = []
        for f in range(per):
            ino += 1
            size = rng.randrange(1, 4 << 30)
            digest = f"{ino:064x}"
            seeding = tuple(
                sys.intern(f"{root}/{'movies' if s == 0 else f'cross-seed/T{s}'}/R{i}/f{f}.mkv")
                for s in range(siblings)
            )
            other = (f"{LIB}/M{i}/f{f}.mkv",) if library and f == 0 else ()
            key = (fs, ino)
            inodes[key] = InodeFact(fs, ino, size, len(seeding) + len(other), digest, seeding, other)
            content[(size, digest)] = (key,)
            keys.append((key, size))
        for s in range(siblings):
            base = save if s == 0 else f"{root}/cross-seed/T{s}"
            files = tuple(
                FileFact(n, f"R{i}/f{n}.mkv", size, sys.intern(f"{base}/R{i}/f{n}.mkv"), key)
                for n, (key, size) in enumerate(keys)
            )
            torrents.append(
                TorrentFact(
                    hash=f"{i:08x}{s:032x}",
                    instance="default",
                    name=f"R{i}",
                    state="stalledUP",
                    progress=1.0,
                    save_path=base,
                    files=files,
                    tags=frozenset({"~noHL"}),
                    completion_on=1.0,
                )
            )
        i += siblings
    pools = (
        PoolFact("stash", "primary", "/stash", S, FS_S, 10**15),
        PoolFact("pool", "cold", "/pool", P, FS_P, 10**15),
    )
    return Snapshot(
        torrents=tuple(torrents[:n_torrents]), inodes=inodes, pools=pools, content=content, existing={}, now=2.0
    )


def measure(n_torrents: int, per: int, cap: int) -> dict:
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    snap = build(n_torrents, per)
    t_build = time.perf_counter() - t0
    gc.collect()
    rss_snap = int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0])
    peak_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_files = sum(len(t.files) for t in snap.torrents)
    t1 = time.perf_counter()
    plan = make_plan(snap, PolicyConfig(max_groups_per_run=cap))
    t_plan = time.perf_counter() - t1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "torrents": len(snap.torrents),
        "files": n_files,
        "inodes": len(snap.inodes),
        "groups": len(plan.groups),
        "summary": plan.summary(),
        "steps": sum(len(g.steps) for g in plan.groups),
        "t_build": t_build,
        "t_plan": t_plan,
        "rss_start": rss0,
        "rss_snap": rss_snap,
        "peak_build": peak_build,
        "peak": rss,
    }


def _in_child(tree: str, a) -> dict:
    env = {**os.environ, "QBHOOK_BENCH_TREE": tree}
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--json",
            "--torrents",
            str(a.torrents),
            "--files-per-torrent",
            str(a.files_per_torrent),
            "--cap",
            str(a.cap),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} CPU)"
    except OSError:
        pass
    return "unknown CPU"


def _report(label: str, m: dict) -> None:
    s = m["summary"]
    print(
        f"[{label}] snapshot: {m['torrents']:,} torrents, {m['files']:,} files, {m['inodes']:,} inodes, "
        f"{m['groups']:,} groups"
    )
    print(
        f"[{label}] decisions: {s['demote']:,} demote, {s['promote']:,} promote, {s['stay']:,} stay, "
        f"{s['blocked']:,} blocked, {s['skip']:,} skip; steps: {m['steps']:,}"
    )
    print(f"{'what':38} {'seconds':>8} {'ratio':>7}")
    print(f"{'baseline: build the snapshot':38} {m['t_build']:8.2f} {1.0:7.2f}")
    print(f"{'qbhook: make_plan':38} {m['t_plan']:8.2f} {m['t_plan'] / m['t_build']:7.2f}")
    rss, cap = m["peak"], m.get("cap")
    print(
        f"cap: {cap or 'none'}; RSS holding the snapshot: {m['rss_snap'] / 1024:.0f} MiB; peak RSS: "
        f"{rss / 1024:.0f} MiB (at start {m['rss_start'] / 1024:.0f} MiB; peak while building the snapshot "
        f"{m['peak_build'] / 1024:.0f} MiB)"
    )
    print(
        f"target < 10 s and < 1024 MiB: {'MET' if m['t_plan'] < 10 and rss < 1024 * 1024 else 'MISSED'}"
        f" (time {'MET' if m['t_plan'] < 10 else 'MISSED'}, memory {'MET' if rss < 1024 * 1024 else 'MISSED'})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torrents", type=int, default=50_000)
    ap.add_argument("--files-per-torrent", type=int, default=20)
    ap.add_argument(
        "--cap",
        type=int,
        default=50,
        help="policy.max_groups_per_run (default 50 as shipped; 0: build steps for every group)",
    )
    ap.add_argument("--compare", metavar="DIR", help="also measure the qbhook package in this checkout")
    ap.add_argument("--compare-label", default="other", help="name for the --compare rows (default 'other')")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # a --compare child's answer
    a = ap.parse_args()
    if a.json:
        print(json.dumps({**measure(a.torrents, a.files_per_torrent, a.cap), "cap": a.cap}))
        return
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {_cpu()}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if not a.compare:
        _report("this", {**measure(a.torrents, a.files_per_torrent, a.cap), "cap": a.cap})
        return
    here = str(Path(__file__).resolve().parents[1])
    # Other version first, then this one: each a fresh process, one after the other.
    for label, tree in ((a.compare_label, a.compare), ("this", here)):
        _report(label, _in_child(tree, a))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
