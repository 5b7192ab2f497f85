"""Shared helpers for the bench scripts (timing, peak RSS, tables, configs, machine facts).

Every measurement runs the measured program in its own process: wall time from
time.perf_counter() around it, peak RSS from os.wait4()'s rusage (ru_maxrss, KiB on Linux),
so qbhook and the baseline tool are measured the same way.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    seconds: float
    maxrss_kib: int
    returncode: int
    stdout: bytes
    stderr: bytes
    cpu: float = 0.0  # user + system CPU seconds of the command (and its children, GNU time's too)


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_rss(
    cmd: list[str], *, stdout_path: str | None = None, env: dict | None = None, check: bool = True, cwd: str = "/"
) -> Run:
    """Run ``cmd`` with stdout to a file (or /dev/null); wall seconds and the command's peak RSS.

    Peak RSS comes from GNU time (/usr/bin/time -f %M) when installed: a child forked from this
    Python process would otherwise inherit our own high-water mark into its ru_maxrss (vfork +
    exec keeps the larger of the two). Without GNU time, wait4()'s ru_maxrss is used and is an
    upper bound that includes this process's RSS. Runs in ``cwd`` ("/" by default): `python -m`
    puts the working folder first on sys.path, which would shadow --compare's PYTHONPATH.
    """
    rss_file = None
    full = list(cmd)
    if GNU_TIME:
        fd, rss_file = tempfile.mkstemp(prefix="qbhook-bench-rss-")
        os.close(fd)
        full = [GNU_TIME, "-f", "%M", "-o", rss_file, *cmd]
    with open(stdout_path or os.devnull, "wb") as target:
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, stdout=target, stderr=subprocess.PIPE, env=env, cwd=cwd)
        # stderr is small (errors only); read it before wait4 to avoid a pipe deadlock.
        err = proc.stderr.read()
        proc.stderr.close()
        _pid, status, ru = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    maxrss = ru.ru_maxrss
    if rss_file:
        try:
            maxrss = int(Path(rss_file).read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            pass
        os.unlink(rss_file)
    out = Path(stdout_path).read_bytes() if stdout_path else b""
    if check and proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err.decode(errors='replace')[-2000:]}")
    return Run(dt, maxrss, proc.returncode, out, err, ru.ru_utime + ru.ru_stime)


def rss_method() -> str:
    return (
        "peak RSS by GNU time (%M)"
        if GNU_TIME
        else "peak RSS by wait4 ru_maxrss (upper bound: includes the bench process's own RSS)"
    )


def env_with_pythonpath(path: str | None) -> dict | None:
    """Environment that imports qbhook from ``path`` (another checkout's folder) first; None: as is."""
    if not path:
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(path) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def qbhook_versions(base: Path, compare: str | None, label: str) -> list[tuple[str, dict]]:
    """(label, env) of each qbhook to time: this checkout, and ``compare`` (another checkout) if given.

    Each runs with compiled bytecode, as an installed qbhook does: a private pycache under
    ``base`` (nothing written into the checkouts), filled by an untimed first run, even when
    PYTHONDONTWRITEBYTECODE is set (it would make every timed run recompile its modules)."""

    def bytecode_env(env: dict | None) -> dict:
        env = dict(env or os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
        return env

    versions = [("qbhook", bytecode_env(None))]
    if compare:
        versions.append((f"qbhook@{label}", bytecode_env(env_with_pythonpath(compare))))
    return versions


def median_of(fn, n: int) -> tuple[float, list[Run]]:
    """Call ``fn`` (returning a Run) n times; median wall seconds and all runs."""
    runs = [fn() for _ in range(n)]
    return statistics.median(r.seconds for r in runs), runs


def qbhook_cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "qbhook", "--config", str(config), *args]


def write_config(
    path: Path, catalog: Path, stash: Path, pool: Path, *, settle_seconds: float = 0, extra_scan: dict | None = None
) -> Path:
    import yaml

    data = {
        "catalog": str(catalog),
        "pools": {"stash": {"path": str(stash), "role": "primary"}, "pool": {"path": str(pool), "role": "cold"}},
        "seeding_roots": {
            "stash": str(stash / "data/media/torrents/seeding"),
            "pool": str(pool / "data/media/torrents/seeding"),
        },
        "scan": {"settle_seconds": settle_seconds, **(extra_scan or {})},
    }
    (stash / "data/media/torrents/seeding").mkdir(parents=True, exist_ok=True)
    (pool / "data/media/torrents/seeding").mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def drop_scan_memos(catalog: Path) -> bool:
    """Forget a catalog's persisted rescan memos (False: this qbhook version keeps none), so the
    next rescan is the first after a write: it rebuilds the catalog's lines in SQLite."""
    import sqlite3

    with sqlite3.connect(catalog) as c:
        if not c.execute("SELECT 1 FROM sqlite_master WHERE name = 'scan_memos'").fetchone():
            return False
        c.execute("DELETE FROM scan_memos")
    return True


def workdir(base: str, prefix: str) -> Path:
    """A fresh folder under ``base`` (default /tmp), removed by cleanup()."""
    Path(base).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def cleanup(path: Path, keep: bool) -> None:
    if keep:
        print(f"kept {path}", file=sys.stderr)
    else:
        shutil.rmtree(path, ignore_errors=True)


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cpu ({cpu}), {mem} RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"load average now {load} (1/5/15 min): on a shared machine compare ratios, not seconds"
    )


def fstype_of(path: Path) -> str:
    best, fstype = "", "?"
    real = os.path.realpath(path)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        mp = left.split()[4].replace("\\040", " ")
        if (real == mp or real.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
            best, fstype = mp, right.split()[0]
    return fstype


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not found"


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)} (scripts/install-system-deps.sh installs them)")


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join([line, sep, *body])


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def drop_caches_possible() -> bool:
    return os.geteuid() == 0 and os.path.exists("/proc/sys/vm/drop_caches")


def drop_caches() -> None:
    """Write back and drop the page cache (whole machine; root only)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
