#!/usr/bin/env python3
"""Benchmark qbhook's file hashing (qbhook.catalog.hashing.hash_file) against b3sum on page-cached files.

Writes --count files of --size each (default 4 x 1 GiB, shrunk to fit if free RAM is short) into
a temp folder (default under /tmp, removed afterwards), reads them once so they sit in the page
cache, then times hashing all of them, each tool in its own process, median of --runs:

  b3sum --no-mmap FILES    read() into a buffer, one thread (the baseline for a streaming reader)
  b3sum FILES              default: mmap + multithreaded (the fastest BLAKE3 there is)
  qbhook hash_file()       as shipped: files >= MMAP_MIN are mmap'd and hashed in a worker process
  hash_file, read path     MMAP_WORKERS off: read into BUF_SIZE buffers (pipelined), blake3 multithreaded

plus the read path with other BUF_SIZE values, and blake3's own update_mmap() for reference.
Target: qbhook >= 0.9x b3sum's throughput (i.e. its time <= b3sum's time / 0.9).

  python bench/bench_hash.py
  python bench/bench_hash.py --count 2 --size 256M --runs 5
  python bench/bench_hash.py --bufs 4           # only the shipped variants and references
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (
    cleanup,
    env_with_pythonpath,
    fstype_of,
    machine,
    require,
    run_rss,
    table,
    tool_version,
    verdict,
    workdir,
)

TARGET = 0.9
MiB = 1 << 20

HASHER = r"""
import sys, json, time
from qbhook.catalog import hashing
mode, buf = sys.argv[1], int(sys.argv[2])
if buf:
    hashing.BUF_SIZE = buf
if mode == "hash_file_read":
    hashing.MMAP_WORKERS = False
import blake3
out = {}
t0 = time.perf_counter()
for p in sys.argv[3:]:
    if mode in ("hash_file", "hash_file_read"):
        out[p] = hashing.hash_file(p).digest.hex()
    elif mode == "update_mmap":
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        h.update_mmap(p)
        out[p] = h.hexdigest()
out["_seconds"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def parse_size(s: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper().rstrip("IB")
    return int(float(s[:-1]) * units[s[-1]]) if s[-1] in units else int(s)


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable"):
            return int(line.split()[1]) * 1024
    return 0


def make_files(folder: Path, count: int, size: int) -> list[Path]:
    # Random 16 MiB block, each copy prefixed with its position: distinct content, cheap to write.
    block = os.urandom(16 * MiB)
    files = []
    for i in range(count):
        p = folder / f"payload-{i}.bin"
        with open(p, "wb") as f:
            left, k = size, 0
            while left > 0:
                chunk = (b"%d:%d:" % (i, k) + block)[: min(len(block), left)]
                f.write(chunk)
                left -= len(chunk)
                k += 1
        files.append(p)
    return files


def warm(files: list[Path]) -> None:
    for p in files:
        with open(p, "rb", buffering=0) as f:
            while f.read(16 * MiB):
                pass


def b3sum_digests(files: list[Path], extra: list[str]) -> dict:
    import subprocess

    out = subprocess.run(["b3sum", *extra, *map(str, files)], capture_output=True, text=True, check=True).stdout
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in out.splitlines()}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--count", type=int, default=4, help="number of files (default 4)")
    ap.add_argument("--size", default="1G", help="size of each file, e.g. 1G, 256M (default 1G)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool, median taken (default 3)")
    ap.add_argument(
        "--bufs", default="1,4,8,16,64", help="BUF_SIZE values in MiB to try with hash_file (default 1,4,8,16,64)"
    )
    ap.add_argument("--tmpdir", default="/tmp", help="where the files are written (default /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the files")
    ap.add_argument(
        "--compare",
        metavar="DIR",
        help="also time hash_file of the qbhook package found in DIR (e.g. an older checkout)",
    )
    ap.add_argument("--compare-label", default="other", help="name for the --compare row (default 'other')")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args()
    require("b3sum")
    from qbhook.catalog import hashing

    size = parse_size(args.size)
    need = args.count * size
    avail = mem_available()
    if need > avail - 2 * (1 << 30):
        # Files must stay page-cached or we measure the disk, not the hasher.
        count = max(1, int((avail - 2 * (1 << 30)) // size))
        print(
            f"only {avail / 2**30:.1f} GiB RAM available: using {count} files instead of {args.count}", file=sys.stderr
        )
        args.count = count
        need = count * size
    base = workdir(args.tmpdir, "qbhook-bench-hash-")
    try:
        files = make_files(base, args.count, size)
        warm(files)
        names = list(map(str, files))
        gib = need / 2**30
        print(f"{args.count} x {size / 2**30:.2f} GiB on {fstype_of(base)}, page-cached", file=sys.stderr)

        ref = b3sum_digests(files, [])
        assert ref == b3sum_digests(files, ["--no-mmap"])

        default_buf = hashing.BUF_SIZE
        py = [sys.executable, "-c", HASHER]
        variants = [
            ("b3sum --no-mmap", ["b3sum", "--no-mmap", *names], False),
            ("b3sum (mmap, threads)", ["b3sum", *names], False),
            ("qbhook hash_file (as shipped: mmap in a worker process)", [*py, "hash_file", "0", *names], True),
            (
                f"qbhook hash_file, read path (BUF_SIZE {default_buf // MiB} MiB)",
                [*py, "hash_file_read", "0", *names],
                True,
            ),
        ]
        for mib in (int(x) for x in args.bufs.split(",") if x.strip()):
            if mib * MiB != default_buf:
                variants.append(
                    (
                        f"qbhook hash_file, read path, BUF_SIZE {mib} MiB",
                        [*py, "hash_file_read", str(mib * MiB), *names],
                        True,
                    )
                )
        variants.append(("blake3-py update_mmap (reference)", [*py, "update_mmap", "0", *names], True))
        envs = {}
        if args.compare:
            label = f"qbhook@{args.compare_label} hash_file (as shipped there)"
            variants.append((label, [*py, "hash_file", "0", *names], True))
            envs[label] = env_with_pythonpath(args.compare)

        # Rounds interleave the variants (A B C A B C ...): load from other processes on a shared
        # machine then hits every variant alike instead of skewing one of them.
        walls: dict[str, list[float]] = {v[0]: [] for v in variants}
        inner: dict[str, list[float]] = {v[0]: [] for v in variants if v[2]}
        for rnd in range(args.runs):
            for label, cmd, is_py in variants:
                r = run_rss(cmd, stdout_path=str(base / "out.json") if is_py else None, env=envs.get(label))
                walls[label].append(r.seconds)
                if is_py:
                    data = json.loads(r.stdout)
                    inner[label].append(data.pop("_seconds"))
                    assert data == ref, f"{label}: digests differ from b3sum"
            print(
                f"  round {rnd + 1}/{args.runs}: "
                + ", ".join(f"{k.split(' (')[0]} {v[-1]:.2f}s" for k, v in walls.items()),
                file=sys.stderr,
            )
        results = {k: statistics.median(v) for k, v in walls.items()}
        inproc = {k: statistics.median(v) for k, v in inner.items()}
        shipped = variants[2][0]
        base_nm = results["b3sum --no-mmap"]
        base_mm = results["b3sum (mmap, threads)"]
        rows = []
        for label, sec in results.items():
            inner = inproc.get(label)
            tgt = "-"
            if label.startswith("qbhook"):
                tgt = (
                    f">= {TARGET}x b3sum: {verdict(base_mm / sec >= TARGET)} (process), "
                    f"{verdict(base_mm / inner >= TARGET)} (in-process)"
                )
            rows.append(
                [
                    label,
                    f"{sec:.3f}",
                    f"{inner:.3f}" if inner else "-",
                    f"{gib / sec:.2f}",
                    f"{base_nm / sec:.2f}x",
                    f"{base_mm / sec:.2f}x",
                    f"{base_mm / inner:.2f}x" if inner else "-",
                    tgt,
                ]
            )
        print(f"\nmachine: {machine()}")
        print(
            f"{tool_version(['b3sum', '--version'])}; blake3-py {_blake3_version()}; {args.count} x "
            f"{size / 2**30:.2f} GiB page-cached on {fstype_of(base)}; median of {args.runs} runs; "
            "speed = baseline time / this time (higher is faster)\n"
        )
        print(
            table(
                [
                    "what",
                    "process s",
                    "in-process s",
                    "GiB/s (process)",
                    "vs b3sum --no-mmap",
                    "vs b3sum",
                    "vs b3sum (in-process)",
                    "target",
                ],
                rows,
            )
        )
        print(
            "\nprocess s: whole process incl. Python start-up and imports (~0.1 s); in-process s: only the "
            "hashing calls (b3sum's start-up is ~1 ms, so its process time is its hashing time)"
        )
        print(
            f"as shipped -> {base_mm / results[shipped]:.2f}x b3sum (process), "
            f"{base_mm / inproc[shipped]:.2f}x (in-process)"
        )
        if args.json:
            print(json.dumps({"gib": gib, "seconds": results, "in_process_seconds": inproc}, indent=2))
    finally:
        cleanup(base, args.keep)
    return 0


def _blake3_version() -> str:
    try:
        from importlib.metadata import version

        return version("blake3")
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
