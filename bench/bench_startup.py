#!/usr/bin/env python3
"""What a qbhook command costs before it does any work: interpreter start and imports.

Every CLI command is a new process. This times, each in its own process and in interleaved
rounds (so a burst of load from other jobs hits every variant alike), medians of ``--runs``:

  floors   python -c pass; python -c 'import click'; python -c 'import click, yaml, sqlite3, logging'
           (what any command that reads its YAML config and opens the catalog must load); the
           same without yaml (what PyYAML's import costs: a config reader without it was
           measured and not merged, docs/benchmarks.md §1)
  qbhook   --version; --help; scan --help; explain --help
  scan     an unchanged `qbhook scan` of a small generated tree (``--files``, default 20,000)
           against `find -printf '%i %s %T@ %p\\n'` of the same tree: at this size start-up is
           most of the rescan, so the ratio shows what start-up costs the rescan target
  explain  with ``--config CFG --explain HASH`` (a bed kept by `bench_index.py --keep`):
           `qbhook --json explain HASH` in its own process

for this checkout and, with ``--compare DIR``, the qbhook package in DIR (e.g. /work/main),
each with compiled bytecode in a private pycache, as an installed qbhook runs. Prints the CPU
model, the load average and each row's module count (python -X importtime).

    python bench/bench_startup.py [--runs 15] [--compare /work/main --compare-label main]
                                  [--config BED/config.yaml --explain HASH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import cleanup, machine, qbhook_versions, table, workdir, write_config


def _run(cmd: list[str], env: dict | None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, from wait4) of ``cmd`` in its own process.

    On a shared machine the CPU time moves much less with other jobs' load than the wall time
    (a process waiting for a core is not charged for it), so both are reported."""
    t0 = time.perf_counter()
    # cwd "/": `python -m` puts the working folder first on sys.path, shadowing --compare's PYTHONPATH
    proc = subprocess.Popen(cmd, env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, _status, ru = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped here: keep Popen from waiting for it again
    return time.perf_counter() - t0, ru.ru_utime + ru.ru_stime


def _modules(cmd: list[str], env: dict | None) -> int:
    """How many modules ``cmd`` (a python command) imports, from -X importtime's lines."""
    r = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, cwd="/", capture_output=True, text=True)
    return sum(1 for ln in r.stderr.splitlines() if ln.startswith("import time:") and "cumulative" not in ln)


def _tree(root: Path, files: int) -> None:
    """``files`` small files, 100 per torrent folder, in the primary pool's seeding root."""
    seed = root / "data/media/torrents/seeding"
    for i in range(files):
        d = seed / f"Item.{i // 100:05d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i % 100:03d}.bin").write_bytes(b"x" * (i % 97 + 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="interleaved rounds, median taken (default 15)")
    ap.add_argument("--files", type=int, default=20000, help="files of the scan tree (default 20000; 0: no scan rows)")
    ap.add_argument("--compare", metavar="DIR", help="also time the qbhook package found in DIR, in the same rounds")
    ap.add_argument("--compare-label", default="other")
    ap.add_argument("--config", help="config of an existing bed (bench_index.py --keep) for the explain row")
    ap.add_argument("--explain", metavar="HASH", help="torrent hash for `explain HASH` (with --config)")
    ap.add_argument("--tmpdir", default="/tmp")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    work = workdir(args.tmpdir, "qbhook-bench-startup-")
    py = sys.executable
    try:
        versions = qbhook_versions(work, args.compare, args.compare_label)
        plain_env = versions[0][1]
        rows: list[tuple[str, str, list[str], dict]] = [  # (group, label, command, env)
            ("floor", "python -c pass", [py, "-c", "pass"], plain_env),
            ("floor", "python -c 'import click'", [py, "-c", "import click"], plain_env),
            (
                "floor",
                "python -c 'import click, sqlite3, logging'",
                [py, "-c", "import click, sqlite3, logging"],
                plain_env,
            ),
            (
                "floor",
                "python -c 'import click, yaml, sqlite3, logging'",
                [py, "-c", "import click, yaml, sqlite3, logging"],
                plain_env,
            ),
        ]
        qb = [py, "-m", "qbhook"]
        for what in (["--version"], ["--help"], ["scan", "--help"], ["explain", "--help"]):
            for label, env in versions:
                rows.append((" ".join(what), label, [*qb, *what], env))
        find_cmd = None
        if args.files:
            stash, pool = work / "stash", work / "pool"
            _tree(stash, args.files)
            find_cmd = ["find", str(stash), str(pool), "-printf", "%i %s %T@ %p\n"]
            rows.append(("scan (unchanged)", "find -printf (baseline)", find_cmd, plain_env))
            for k, (label, env) in enumerate(versions):
                cfg = write_config(work / f"config{k}.yaml", work / f"catalog{k}.sqlite", stash, pool)
                cmd = [*qb, "--config", str(cfg), "--json", "scan"]
                subprocess.run(cmd, env=env, cwd="/", check=True, capture_output=True)  # the first scan, untimed
                rows.append(("scan (unchanged)", label, cmd, env))
        if args.config and args.explain:
            for label, env in versions:
                cmd = [*qb, "--config", args.config, "--json", "explain", args.explain]
                subprocess.run(cmd, env=env, cwd="/", check=True, capture_output=True)  # untimed: fills the pycache
                rows.append(("explain HASH", label, cmd, env))

        for _, _, cmd, env in rows:  # untimed: compiles every module into the private pycache
            _run(cmd, env)
        times: list[list[float]] = [[] for _ in rows]
        cpu: list[list[float]] = [[] for _ in rows]
        loads = [os.getloadavg()[0]]
        for _ in range(args.runs):
            for i, (_, _, cmd, env) in enumerate(rows):
                wall, used = _run(cmd, env)
                times[i].append(wall)
                cpu[i].append(used)
            loads.append(os.getloadavg()[0])

        print(f"machine: {machine()}")
        print(
            f"rounds: {args.runs}, interleaved; medians; each command in its own process; "
            f"load average (1 min) during the rounds {min(loads):.1f}-{max(loads):.1f}\n"
        )
        med = [statistics.median(t) for t in times]
        first = {}  # group -> median of the group's first row (this checkout, or find for scan)
        out = []
        for (group, label, cmd, env), m, t, c in zip(rows, med, times, cpu, strict=True):
            base = first.setdefault(group, m)
            mods = "-" if cmd[0] != py else str(_modules(cmd, env))
            out.append(
                [
                    group,
                    label,
                    f"{m * 1000:.1f}",
                    f"{min(t) * 1000:.1f}",
                    f"{statistics.median(c) * 1000:.0f} / {min(c) * 1000:.0f}",
                    f"{m / base:.2f}x",
                    mods,
                ]
            )
        print(
            table(
                [
                    "command",
                    "version",
                    "median ms",
                    "min ms",
                    "CPU ms median / min",
                    "vs first row of its group",
                    "imports (-X importtime lines)",
                ],
                out,
            )
        )
    finally:
        cleanup(work, args.keep)


if __name__ == "__main__":
    main()
