#!/usr/bin/env python3
"""Planning time and memory for a synthetic snapshot (default 50,000 torrents / 1,000,000 files).

The planner is pure, so this measures exactly `make_plan` on an in-memory Snapshot shaped like a
big home server: 60% of torrents on the primary pool (a third of those hardlinked into a library,
a fifth with cross-seed siblings sharing inodes), 40% seed-only on the cold pool, some content
duplicated across pools. Baseline printed alongside: the time to merely build the snapshot
(allocating the same facts), so the ratio shows what deciding costs on top of holding the data.

    python bench/bench_plan.py [--torrents 50000] [--files-per-torrent 20]

Targets (issue 3): under 10 s and under 1 GB.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qbhook.config import PolicyConfig  # noqa: E402
from qbhook.decide.facts import FileFact, InodeFact, PoolFact, Snapshot, TorrentFact  # noqa: E402
from qbhook.decide.planner import make_plan  # noqa: E402

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
            seeding = tuple(sys.intern(f"{root}/{'movies' if s == 0 else f'cross-seed/T{s}'}/R{i}/f{f}.mkv")
                            for s in range(siblings))
            other = (f"{LIB}/M{i}/f{f}.mkv",) if library and f == 0 else ()
            key = (fs, ino)
            inodes[key] = InodeFact(fs, ino, size, len(seeding) + len(other), digest, seeding, other)
            content[(size, digest)] = (key,)
            keys.append((key, size))
        for s in range(siblings):
            base = save if s == 0 else f"{root}/cross-seed/T{s}"
            files = tuple(FileFact(n, f"R{i}/f{n}.mkv", size, sys.intern(f"{base}/R{i}/f{n}.mkv"), key)
                          for n, (key, size) in enumerate(keys))
            torrents.append(TorrentFact(hash=f"{i:08x}{s:032x}", instance="default", name=f"R{i}", state="stalledUP",
                                        progress=1.0, save_path=base, files=files, tags=frozenset({"~noHL"}),
                                        completion_on=1.0))
        i += siblings
    pools = (PoolFact("stash", "primary", "/stash", S, FS_S, 10**15), PoolFact("pool", "cold", "/pool", P, FS_P, 10**15))
    return Snapshot(torrents=tuple(torrents[:n_torrents]), inodes=inodes, pools=pools, content=content, existing={},
                    now=2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torrents", type=int, default=50_000)
    ap.add_argument("--files-per-torrent", type=int, default=20)
    ap.add_argument("--cap", type=int, default=50,
                    help="policy.max_groups_per_run (default 50 as shipped; 0: build steps for every group)")
    a = ap.parse_args()
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    snap = build(a.torrents, a.files_per_torrent)
    t_build = time.perf_counter() - t0
    gc.collect()
    rss_snap = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
    peak_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_files = sum(len(t.files) for t in snap.torrents)
    t1 = time.perf_counter()
    plan = make_plan(snap, PolicyConfig(max_groups_per_run=a.cap))
    t_plan = time.perf_counter() - t1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    s = plan.summary()
    print(f"snapshot: {len(snap.torrents):,} torrents, {n_files:,} files, {len(snap.inodes):,} inodes, "
          f"{len(plan.groups):,} groups")
    print(f"decisions: {s['demote']:,} demote, {s['promote']:,} promote, {s['stay']:,} stay, {s['blocked']:,} blocked, "
          f"{s['skip']:,} skip; steps: {sum(len(g.steps) for g in plan.groups):,}")
    print(f"{'what':38} {'seconds':>8} {'ratio':>7}")
    print(f"{'baseline: build the snapshot':38} {t_build:8.2f} {1.0:7.2f}")
    print(f"{'qbhook: make_plan':38} {t_plan:8.2f} {t_plan / t_build:7.2f}")
    print(f"cap: {a.cap or 'none'}; RSS holding the snapshot: {rss_snap / 1024:.0f} MiB; peak RSS: {rss / 1024:.0f} MiB "
          f"(at start {rss0 / 1024:.0f} MiB; peak while building the snapshot {peak_build / 1024:.0f} MiB)")
    print(f"target < 10 s and < 1024 MiB: {'MET' if t_plan < 10 and rss < 1024 * 1024 else 'MISSED'}")


if __name__ == "__main__":
    main()
