#!/usr/bin/env python3
"""A demotion with nothing of its size on the target: pre-hash + copy vs the copy's own hash.

Needs root (mounts two tmpfs pools). One payload file on the "stash" tmpfs is demoted to the
"pool" tmpfs in two ways, interleaved round by round (baseline, qbhook, baseline, qbhook...):

- baseline (main before issue 11 part 5): the snapshot hashes the source
  (``hashing.hash_file``, as ``ensure_hashes`` does), then the executor's
  ``fsops.copy_verified`` copies it against that planned hash;
- qbhook: ``fsops.copy_verified`` with no planned hash (``"hash": "from_copy"``): it hashes
  the bytes as it copies them and returns that hash for the later steps.

Reported: median wall seconds of each, their ratio, and the bytes read from files (counted
through ``os.readv`` on a separate counting round with the mmap hash workers off, so every
read goes through it). On tmpfs the saved pass is CPU (BLAKE3 + a memory copy); on spinning
disks it is a whole sequential read of the payload.

    sudo python bench/bench_prehash.py [--size-mib 512] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import machine, table  # noqa: E402

from qbhook.catalog import hashing  # noqa: E402
from qbhook.move import fsops  # noqa: E402

MiB = 1 << 20


def baseline(src: str, dst: str, size: int, roots: tuple) -> str:
    digest = hashing.hash_file(src).digest.hex()
    fsops.copy_verified(src, dst, digest, size, roots=roots)
    return digest


def from_copy(src: str, dst: str, size: int, roots: tuple) -> str:
    return fsops.copy_verified(src, dst, None, size, roots=roots)["blake3"]


def bytes_read(fn, *args) -> int:
    real, mmap_on = os.readv, hashing.MMAP_WORKERS
    seen = [0]

    def readv(fd, bufs):
        n = real(fd, bufs)
        seen[0] += n
        return n

    os.readv, hashing.MMAP_WORKERS = readv, False
    try:
        fn(*args)
    finally:
        os.readv, hashing.MMAP_WORKERS = real, mmap_on
    return seen[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    size = a.size_mib * MiB
    base = Path(tempfile.mkdtemp(prefix="qbhook-bench-prehash-"))
    mounts = []
    try:
        for name in ("stash", "pool"):
            d = base / name
            d.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={a.size_mib * 3 + 64}M", "tmpfs", str(d)], check=True)
            mounts.append(d)
        roots = tuple(str(m) for m in mounts)
        src = str(mounts[0] / "payload.bin")
        with open(src, "wb") as f:
            for _ in range(a.size_mib):
                f.write(os.urandom(MiB))
        t = time.time_ns() - 3600 * 10**9
        os.utime(src, ns=(t, t))
        ways = {"baseline: pre-hash, then copy": baseline, "qbhook: hash taken from the copy": from_copy}
        times: dict[str, list[float]] = {k: [] for k in ways}
        digests = set()
        for r in range(a.rounds):
            for name, fn in ways.items():
                dst = str(mounts[1] / f"{r}-{len(times[name])}.bin")
                t0 = time.perf_counter()
                digests.add(fn(src, dst, size, roots))
                times[name].append(time.perf_counter() - t0)
                os.unlink(dst)
        assert len(digests) == 1, "both ways must find the same content hash"
        reads = {}
        for name, fn in ways.items():
            dst = str(mounts[1] / "count.bin")
            reads[name] = bytes_read(fn, src, dst, size, roots)
            os.unlink(dst)
        med = {k: statistics.median(v) for k, v in times.items()}
        b, q = med["baseline: pre-hash, then copy"], med["qbhook: hash taken from the copy"]
        print(machine())
        print(f"payload {a.size_mib} MiB on tmpfs, {a.rounds} interleaved rounds, medians\n")
        rows = [
            [k, f"{med[k]:.3f} s", " / ".join(f"{x:.2f}" for x in times[k]), f"{reads[k] / size:.2f}x payload"]
            for k in ways
        ]
        print(table(["way", "median", "rounds", "bytes read"], rows))
        print(f"\nqbhook / baseline time: {q / b:.2f}x")
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", str(m)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
