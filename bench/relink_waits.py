#!/usr/bin/env python3
"""What a rename that frees an inode waits for, and how much of it more processes overlap.

N folders each hold a "library" file and a "seeding" copy (separate inodes, 8.7 KB, the size of
bench_converge's files); each process links its folders' library file to a temporary name and
renames it over the seeding copy, dropping that copy's last link, as a convergence (and jdupes -L)
does. Nothing else: no checks, no catalog. Prints wall and the children's user and system CPU for
1, 2, 3, 4 and 8 processes. On a disk where freeing an inode waits (ext4 mounted ``discard``),
wall exceeds CPU and more processes than cores overlap the waits: docs/benchmarks.md §9
(2026-12-02 10:13). On tmpfs the loop is CPU only.

  python bench/relink_waits.py [--dir /tmp] [-n 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fstype_of, machine


def tree(base: str, n: int) -> None:
    for i in range(n):
        d = f"{base}/d{i}"
        os.mkdir(d)
        for name in ("lib", "seed"):
            with open(f"{d}/{name}", "wb") as f:
                f.write(os.urandom(8700))
    os.sync()  # written back first: the renames are timed, not the writeback


def relink(base: str, idx: range) -> None:
    for i in idx:
        d = f"{base}/d{i}"
        os.link(f"{d}/lib", f"{d}/tmp")
        os.rename(f"{d}/tmp", f"{d}/seed")


def run(base: str, n: int, procs: int) -> tuple[float, float, float]:
    t0, c0 = time.perf_counter(), os.times()
    pids = []
    for p in range(procs):
        pid = os.fork()
        if pid == 0:
            try:
                relink(base, range(p, n, procs))
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    c1 = os.times()
    return time.perf_counter() - t0, c1.children_user - c0.children_user, c1.children_system - c0.children_system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("-n", type=int, default=10_000)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    for procs in (1, 2, 3, 4, 8):
        base = tempfile.mkdtemp(prefix="qbhook-relink-waits-", dir=args.dir)
        try:
            tree(base, args.n)
            wall, user, system = run(base, args.n, procs)
            print(
                f"{fstype_of(Path(base))}, {args.n:,} relinks, {procs} process(es): {wall:.2f} s wall, "
                f"{user:.2f} s user, {system:.2f} s system"
            )
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
