#!/usr/bin/env python3
"""Planning time and memory for a synthetic snapshot (default 50,000 torrents / 1,000,000 files).

The planner is pure, so this measures exactly `make_plan` on an in-memory Snapshot shaped like a
big home server: 60% of torrents on the primary pool (a third of those hardlinked into a library,
a fifth with cross-seed siblings sharing inodes), 40% seed-only on the cold pool, some content
duplicated across pools. Baseline printed alongside: the time to merely build the snapshot
(allocating the same facts), so the ratio shows what deciding costs on top of holding the data.

    python bench/bench_plan.py [--torrents 50000] [--files-per-torrent 20] [--cap 0] [--compare DIR]
                               [--runs 3] [--digest]

``--compare DIR`` also measures the qbhook package of another checkout (e.g. main before a
change): each version runs in its own process (its own peak RSS), both in this one run, with
the CPU model, the date and the load average printed. With ``--runs N`` the rounds are
interleaved (other, this, other, this, ...) and the medians reported, so that both versions
see the same load. ``--digest`` also hashes each plan's JSON (after the peak is read), to show
that two versions plan the same thing.

Targets (issue 3, issue 13): under 10 s and under 1 GB (10^9 bytes, 953.7 MiB), with no cap.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import resource
import statistics
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


GB_KIB = 10**9 / 1024  # the 1 GB target in KiB (ru_maxrss unit): 953.7 MiB


def measure(n_torrents: int, per: int, cap: int, digest: bool = False) -> dict:
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
    h = hashlib.sha256()
    for g in plan.groups if digest else ():  # one group's JSON at a time: after the peak, and small
        h.update(json.dumps(g.to_dict(), sort_keys=True).encode())
    return {
        "digest": h.hexdigest()[:16] if digest else "",
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
            *(["--digest"] if a.digest else []),
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
    if m.get("digest"):
        print(f"plan JSON sha256: {m['digest']}")
    ok_t, ok_m = m["t_plan"] < 10, rss < GB_KIB
    print(
        f"target < 10 s and < 1 GB (953.7 MiB): {'MET' if ok_t and ok_m else 'MISSED'}"
        f" (time {'MET' if ok_t else 'MISSED'}, memory {'MET' if ok_m else 'MISSED'})"
    )


def _median(rounds: list[dict]) -> dict:
    """The median of each number over the rounds (the last round's counts and digest)."""
    out = dict(rounds[-1])
    for k in ("t_build", "t_plan", "rss_snap", "peak_build", "peak", "rss_start"):
        out[k] = statistics.median(r[k] for r in rounds)
    return out


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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
    ap.add_argument("--runs", type=int, default=1, help="rounds (interleaved with --compare); medians reported")
    ap.add_argument("--digest", action="store_true", help="also hash each plan's JSON (same plan in both versions?)")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # a --compare child's answer
    a = ap.parse_args()
    if a.json:
        print(json.dumps({**measure(a.torrents, a.files_per_torrent, a.cap, a.digest), "cap": a.cap}))
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {_cpu()}, load average {_load()}")
    if not a.compare and a.runs <= 1:
        _report("this", {**measure(a.torrents, a.files_per_torrent, a.cap, a.digest), "cap": a.cap})
        return
    here = str(Path(__file__).resolve().parents[1])
    versions = ((a.compare_label, a.compare), ("this", here)) if a.compare else (("this", here),)
    rounds: dict[str, list[dict]] = {label: [] for label, _ in versions}
    # Other version first, then this one, round after round: each a fresh process.
    for r in range(1, a.runs + 1):
        for label, tree in versions:
            m = _in_child(tree, a)
            rounds[label].append(m)
            print(
                f"round {r} [{label}]: make_plan {m['t_plan']:.2f} s, build {m['t_build']:.2f} s, "
                f"peak {m['peak'] / 1024:.0f} MiB, load {_load()}",
                flush=True,
            )
    for label, _ in versions:
        print(f"--- [{label}] median of {len(rounds[label])} round(s)")
        _report(label, _median(rounds[label]))
    if a.compare:
        t_other, t_this = (statistics.median(m["t_plan"] for m in rounds[label]) for label, _ in versions)
        print(f"make_plan this / {a.compare_label}: {t_this / t_other:.2f}x (medians)")
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
