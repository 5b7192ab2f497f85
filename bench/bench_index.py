#!/usr/bin/env python3
"""API requests and time of a torrent index sync (qbhook.catalog.indexer) against a real qbittorrent-nox.

Loads N generated multi-file torrents (default 5,000 x 36 files = 180,000 files, tiny files
on local disk, ``is_skip_checking=True``) into an offline qbittorrent-nox, then counts the
HTTP requests qbhook's QbtClient really sends (a response hook on its requests session) for:

1. the first sync into an empty index (sync/maindata + one torrents/files per torrent);
2. an unchanged second sync, same session (target: <= 10 requests);
3. a sync from a new process (new login session: qBittorrent answers full_update; the full
   listing is diffed against the stored index, so no file list is re-read);
4. a sync after 10 torrents changed: 5 re-categorised + tagged, 5 renamed (a name change
   re-reads the file list) (target: <= 10 + 2 per changed torrent);
5. for comparison, what a listing without the index costs: torrents() + files() per torrent
   (``--baseline``; 2N+1 requests);
6. ``--sweep``: two whole ``worker.sweep`` runs (scan of both pools, index sync, snapshot from
   the index, plan) after the syncs above, the second one unchanged. The data lies in the
   primary pool's seeding root (plain folders on one filesystem: the bench counts requests,
   not ZFS facts); a demote tag nobody has keeps the planner from hashing everything.
   Then the same sweep once more with the snapshot listing every file list live (what a
   sweep did before the index) and re-planning every group (``sweep.full_every: 0``, what a
   sweep did before incremental re-planning), for a ratio measured in the same run; then
   ``--rounds`` rounds of: a bare ``find`` of both pools, an unchanged sweep (target <= 1.5x
   the find), and a sweep after 10 changes (5 torrents re-categorised, 5 given a library
   hardlink: nlink only), interleaved;
7. with ``--sweep``: ``explain HASH`` (answered from the index) against the unchanged sweep,
   ``--rounds`` rounds interleaved: in its own process (compiled bytecode, as installed) and
   in-process, and ``explain --live`` (every torrent listed from qBittorrent) the same way
   (target: explain <= 0.1x the unchanged sweep, flat from 50k to 180k files);
8. with ``--sweep --compare TREE`` (another checkout, e.g. main's): unchanged sweeps of this
   checkout and of TREE, each in a process of its own (compiled bytecode, its own copy of the
   catalog, its own qBittorrent session), ``--rounds`` rounds interleaved with a bare ``find``
   of both pools (the order of the two alternates per round): the before/after ratio in one
   run, with each version's phase times.

    python bench/bench_index.py [--items 5000] [--files 36] [--baseline] [--sweep] [--compare TREE]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import cleanup, machine, qbhook_versions, table, workdir, write_config
from bench.bench_list_clients import bencode, load_qbt, wait_for
from qbhook.catalog.indexer import sync_client
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex
from qbhook.clients.qbt.client import QbtClient
from qbhook.sandbox.qbt import QbtInstance
from qbhook.sandbox.serve import stop_serve
from qbhook.sandbox.torrents import DEAD_ANNOUNCE

PIECE = 16384


def make_items(data: Path, n: int, files: int) -> list[tuple[str, bytes]]:
    """n payloads of ``files`` files, each of a size no other file has (64 B + its number:
    sparse, as media files mostly have sizes of their own). With a handful of shared sizes
    every file would be a same-size candidate of thousands of others, which the snapshot
    pre-hashes for convergence: the first sweep would hash every file."""
    out = []
    k = 0
    for i in range(n):
        name = f"Item.{i:05d}"
        root = data / name
        root.mkdir(parents=True)
        blob, entries = [], []
        for j in range(files):
            k += 1
            head = hashlib.sha256(f"{i}:{j}".encode()).digest()
            size = 64 + k
            sub = f"d{j % 4}"
            (root / sub).mkdir(exist_ok=True)
            with open(root / sub / f"f{j}.bin", "wb") as f:
                f.write(head)
                f.truncate(size)  # the rest reads as zeros without being written
            blob.append(head + bytes(size - len(head)))
            entries.append({"length": size, "path": [sub, f"f{j}.bin"]})
        whole = b"".join(blob)
        pieces = b"".join(hashlib.sha1(whole[p : p + PIECE]).digest() for p in range(0, len(whole), PIECE))
        info = {"name": name, "piece length": PIECE, "pieces": pieces, "files": entries, "private": 1}
        out.append((hashlib.sha1(bencode(info)).hexdigest(), bencode({"announce": DEAD_ANNOUNCE, "info": info})))
    return out


class Counter:
    def __init__(self, client: QbtClient):
        self.n = 0
        client.version()  # logs in: the session exists from here on
        client._api._session.hooks["response"].append(self._hook)
        self.n = 0

    def _hook(self, *_a, **_k):
        self.n += 1


def explain_cost(cfg_path: Path, args: list[str], env: dict | None = None, strace: bool = True) -> tuple[float, str]:
    """Wall seconds of a qbhook command in its own process, and its stat-family calls (strace -c).

    ``env``: the process environment (``bytecode_env``: compiled modules, as installed)."""
    import shutil
    import subprocess
    import tempfile

    cmd = [sys.executable, "-m", "qbhook", "--config", str(cfg_path), "--json", *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=args[0] != "status", capture_output=True, cwd="/", env=env)  # status: 1 without a server
    secs = time.perf_counter() - t0
    if not strace or not shutil.which("strace"):
        return secs, "?"
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        subprocess.run(
            ["strace", "-f", "-c", "-o", out.name, "-e", "trace=lstat,stat,newfstatat,statx,fstatat64", *cmd],
            check=False,
            capture_output=True,
            cwd="/",
            env=env,
        )
        total = [ln for ln in out.read().splitlines() if ln.strip().endswith("total")]
    return secs, total[0].split()[3] if total else "?"


def explain_rounds(
    cfg_path: Path, work: Path, h: str, run_sweep, rounds: int, compare: str | None = None, label: str = "other"
) -> tuple[list, str]:
    """``explain HASH`` interleaved with unchanged sweeps (the issue's ratio is against the sweep).

    Per round: an unchanged sweep (in-process, as the bench's other sweeps), explain in its own
    process (as a user runs it: interpreter start, imports, config, catalog, answer; compiled
    bytecode in a private pycache, as an installed qbhook has), the same in-process (click's
    runner: config, catalog and answer, no interpreter start or imports), and ``explain --live``
    (lists every torrent from qBittorrent, as explain did before the index answered it).
    ``compare``: also time explain in its own process with the qbhook package in that folder
    (another checkout), in the same rounds."""
    from click.testing import CliRunner

    from bench._common import qbhook_versions
    from qbhook.cli.app import main as cli_main

    versions = qbhook_versions(work, compare, label)
    env = versions[0][1]
    for _, v_env in versions:
        explain_cost(cfg_path, ["explain", h], v_env, strace=False)  # untimed: fills the pycache
    explain_cost(cfg_path, ["explain", h, "--live"], env, strace=False)

    def in_process(*extra: str) -> float:
        t0 = time.perf_counter()
        r = CliRunner().invoke(cli_main, ["--config", str(cfg_path), "--json", "explain", h, *extra])
        assert r.exit_code == 0, r.output
        return time.perf_counter() - t0

    in_process()  # imports, once
    sweeps, proc, inproc, live, live_in = [], [], [], [], []
    other = {name: [] for name, _ in versions[1:]}
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = run_sweep()
        sweeps.append(time.perf_counter() - t0)
        assert out["replanned"]["groups"] == 0, out["replanned"]
        proc.append(explain_cost(cfg_path, ["explain", h], env, strace=False)[0])
        for name, v_env in versions[1:]:
            other[name].append(explain_cost(cfg_path, ["explain", h], v_env, strace=False)[0])
        inproc.append(in_process())
        live.append(explain_cost(cfg_path, ["explain", h, "--live"], env, strace=False)[0])
        live_in.append(in_process("--live"))
    _, stats = explain_cost(cfg_path, ["explain", h], env)
    _, stats_live = explain_cost(cfg_path, ["explain", h, "--live"], env)
    base = statistics.median(sweeps)

    def row(label, xs, extra=""):
        m = statistics.median(xs)
        return [label, "-", f"{m:.3f}", f"{m / base:.3f}x the unchanged sweep{extra}; {_fmt(xs)}", "-"]

    rows = [
        [f"7. unchanged sweep (in-process), median of {rounds}", 1, f"{base:.3f}", _fmt(sweeps), 0],
        row("   explain HASH, own process", proc, f", {stats} stat calls"),
        *(row(f"   explain HASH, own process, {name}", xs) for name, xs in other.items()),
        row("   explain HASH, in-process", inproc),
        row("   explain HASH --live, own process", live, f", {stats_live} stat calls"),
        row("   explain HASH --live, in-process", live_in),
    ]
    p, i = statistics.median(proc), statistics.median(inproc)
    verdict = (
        f"explain HASH vs the unchanged sweep (medians of {rounds}, interleaved): own process "
        f"{p:.3f} s = {p / base:.3f}x, in-process {i:.3f} s = {i / base:.3f}x (target <= 0.1x: own process "
        f"{'MET' if p / base <= 0.1 else 'MISSED'}, in-process {'MET' if i / base <= 0.1 else 'MISSED'}); "
        f"--live {statistics.median(live):.3f} s own process, {statistics.median(live_in):.3f} s in-process"
    )
    return rows, verdict


def _fmt(xs: list[float]) -> str:
    return "/".join(f"{x:.2f}" for x in xs)


def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (KiB) of a live process from /proc/PID/status."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def serve_memory(cfg_path: Path, work: Path, cat: Catalog, sweeps: int = 2, timeout: float = 1800) -> str:
    """Start a real `qbhook serve` on this bed (sweeper every 5 s), let it finish ``sweeps`` sweeps
    (each scans both pools, syncs the index from qBittorrent and plans), and read its RSS from
    /proc/PID/status: VmHWM is the peak, VmRSS the size after the last sweep. Only the serve
    process itself (the hash workers, if any ran, are separate processes)."""

    import yaml

    conf = yaml.safe_load(cfg_path.read_text())
    import socket

    with socket.socket() as probe:  # a free loopback port for the webhook listener
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    conf["server"] = {"listen": "127.0.0.1", "port": free_port, "sweep_interval": "5s", "token": "bench-token"}
    serve_cfg = work / "serve.yaml"
    serve_cfg.write_text(yaml.safe_dump(conf))
    before = cat.conn.execute("SELECT count(*) FROM scans WHERE finished_at IS NOT NULL").fetchone()[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "qbhook", "--config", str(serve_cfg), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "serve.log", "wb"),  # noqa: SIM115  (the child owns it for its lifetime)
        cwd="/",
    )
    t0 = time.perf_counter()
    samples: list[int] = []
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise SystemExit(f"qbhook serve exited ({proc.returncode}): {(work / 'serve.log').read_text()[-2000:]}")
            st = _proc_status(proc.pid)
            if "VmRSS" in st:
                samples.append(st["VmRSS"])
            done = cat.conn.execute("SELECT count(*) FROM scans WHERE finished_at IS NOT NULL").fetchone()[0] - before
            if done >= 2 * sweeps:
                time.sleep(3)  # the sweep goes on after its scans (index sync, plan): let it end
                break
            time.sleep(0.2)
        else:
            raise SystemExit("qbhook serve did not finish its sweeps in time")
        st = _proc_status(proc.pid)
    finally:
        stop_serve(proc, timeout=120)
    hwm = st.get("VmHWM", max(samples, default=0))
    return (
        f"qbhook serve (pid {proc.pid}) after {sweeps} sweeps of this bed: peak RSS (VmHWM) "
        f"{hwm / 1024:.0f} MiB, RSS now {st.get('VmRSS', 0) / 1024:.0f} MiB, largest sampled RSS "
        f"{max(samples, default=0) / 1024:.0f} MiB ({len(samples)} samples, 0.2 s apart, "
        f"{time.perf_counter() - t0:.0f} s); target < 300 MB: {'MET' if hwm * 1024 < 300e6 else 'MISSED'}"
    )


# One qbhook version's sweeps, in a process of its own: the first two sweeps (a full re-plan:
# new process, new qBittorrent session) untimed, then one unchanged sweep per line read.
_SWEEP_CHILD = """
import json, resource, sys, time
from qbhook.catalog.store import Catalog
from qbhook.clients.qbt.client import QbtClient
from qbhook.config import load_config
from qbhook.events.worker import sweep

cfg = load_config(sys.argv[1])
q = json.loads(sys.argv[2])
cat = Catalog.open(cfg.catalog)
client = QbtClient("qbt", q["url"], q["username"], q["password"], timeout=600)
client.version()  # logs in: the session (and its response hook) exists from here on
md = {"bytes": 0}
client._api._session.hooks["response"].append(lambda r, *a, **k: md.update(bytes=md["bytes"] + len(r.content)))
real_maindata = client.maindata


def maindata(rid=0):
    t0 = time.perf_counter()
    data = real_maindata(rid)
    md.update(s=time.perf_counter() - t0, n=len(data.get("torrents") or {}), full=bool(data.get("full_update")))
    return data


client.maindata = maindata  # the sweep's prefetch thread calls it: its own wall time, the answer's size


def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


sweep(cfg, cat, [client])
sweep(cfg, cat, [client])
print("ready", flush=True)
for _line in sys.stdin:
    md["bytes"] = 0
    own, kids = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = sweep(cfg, cat, [client])
    secs = time.perf_counter() - t0
    own, kids = cpu(resource.RUSAGE_SELF) - own, cpu(resource.RUSAGE_CHILDREN) - kids
    print(
        json.dumps(
            {
                "s": secs,
                "phases": out["phase_seconds"],
                "groups": out["replanned"]["groups"],
                "cpu": own,
                "finds_cpu": kids,
                "maindata": dict(md),
            }
        ),
        flush=True,
    )
"""

# What migrations 8 and 9 (schema.LOOKUP_INDEXES_DDL, DUPES_MEMO_DDL) added, undone on the
# catalog copy an older checkout opens (it refuses a schema newer than its own), newest first:
# (the user_version the migration leads to, its statements undone).
_MIGRATIONS_UNDONE = (
    (9, ("DROP TABLE IF EXISTS dupes_memos",)),
    (
        8,
        (
            "DROP TRIGGER IF EXISTS content_writes_inodes_update",
            "DROP TRIGGER IF EXISTS content_writes_filesystems_update",
            "DROP TABLE IF EXISTS content_writes",
            "DROP INDEX IF EXISTS scans_ok_pool_root",
            "DROP INDEX IF EXISTS scans_unfinished",
            "DROP INDEX IF EXISTS torrents_content_path",
            "DROP INDEX IF EXISTS torrents_save_path",
            "DROP INDEX IF EXISTS inodes_seen_scan",
            "DROP INDEX IF EXISTS inodes_hashed_at",
        ),
    ),
)


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare_sweeps(
    work: Path, cfg_path: Path, qbt: QbtInstance, trees: list[tuple[str, str]], stash: Path, pool: Path, rounds: int
):
    """Row 8: unchanged sweeps of this checkout and of each (label, tree), interleaved with a bare find.

    Per sweep: wall, the sweep process's own CPU, its children's (the scans' finds), qBittorrent's
    CPU over the same span (read from /proc before and after), and the maindata answer (its
    wall seen from the prefetch, torrents in it, full or not, bytes of every response)."""
    import json
    import sqlite3

    import yaml

    conf = yaml.safe_load(cfg_path.read_text())
    here = str(Path(__file__).resolve().parents[1])
    creds = json.dumps({"url": qbt.url, "username": qbt.username, "password": qbt.password})
    children: dict[str, subprocess.Popen] = {}
    for label, path in [*((lb, os.path.abspath(t)) for lb, t in trees), ("this", here)]:
        db = work / f"catalog-{label}.sqlite"
        with sqlite3.connect(conf["catalog"]) as a, sqlite3.connect(db) as b:
            a.backup(b)  # a consistent copy, WAL included
        version = _schema_version(path)
        with sqlite3.connect(db) as c:
            if c.execute("PRAGMA user_version").fetchone()[0] > version:
                for to_version, stmts in _MIGRATIONS_UNDONE:
                    for stmt in stmts if to_version > version else ():
                        c.execute(stmt)
                c.execute(f"PRAGMA user_version = {version}")
        ccfg = work / f"config-{label}.yaml"
        ccfg.write_text(yaml.safe_dump({**conf, "catalog": str(db)}))
        env = qbhook_versions(work / f"pyc-{label}", None, label)[0][1]
        env["PYTHONPATH"] = path  # this checkout's qbhook or the other's, never the installed one
        proc = subprocess.Popen(
            [sys.executable, "-c", _SWEEP_CHILD, str(ccfg), creds],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",
            env=env,
        )
        children[label] = proc
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"the {label} sweep process did not start: {line!r}")
    from qbhook.catalog.findwalk import find_cmd as _find_cmd
    from qbhook.config import ScanConfig

    ignore = {os.fsencode(n) for n in ScanConfig().ignore_names}
    scanner_cmds = [_find_cmd(os.fsencode(str(p)), ignore) for p in (stash, pool) if p.is_dir()]
    finds: list[float] = []
    finds_cpu: list[float] = []
    scanner: list[float] = []
    scanner_cpu: list[float] = []
    loads: list[float] = []
    runs: dict[str, list[dict]] = {k: [] for k in children}
    order = list(children)

    def kids_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    try:
        for k in range(rounds):
            loads.append(os.getloadavg()[0])
            c0, t0 = kids_cpu(), time.perf_counter()
            subprocess.run(
                ["find", str(stash), str(pool), "-printf", "%i %s %T@ %p\n"], check=True, stdout=subprocess.DEVNULL
            )
            finds.append(time.perf_counter() - t0)
            finds_cpu.append(kids_cpu() - c0)
            # The scanner's own finds (its fields and prune), one per pool at once as scan_pools
            # runs them, output discarded: what of the scans phase is find itself.
            c0, t0 = kids_cpu(), time.perf_counter()
            procs = [
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
                for cmd in scanner_cmds
            ]
            for p in procs:
                p.wait()
            scanner.append(time.perf_counter() - t0)
            scanner_cpu.append(kids_cpu() - c0)
            for label in order[k % len(order) :] + order[: k % len(order)]:  # each goes first in turn
                proc = children[label]
                q0 = _cpu_of(qbt.pid)
                proc.stdin.write("sweep\n")
                proc.stdin.flush()
                out = json.loads(proc.stdout.readline())
                out["qbt_cpu"] = _cpu_of(qbt.pid) - q0
                assert out["groups"] == 0, (label, out)
                runs[label].append(out)
    finally:
        for proc in children.values():
            proc.stdin.close()
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
    f = statistics.median(finds)
    rows, lines = [], []
    for label in children:
        rs = runs[label]
        xs = [r["s"] for r in rs]
        m = statistics.median(xs)
        phases = ", ".join(f"{p} {statistics.median(r['phases'].get(p, 0.0) for r in rs):.3f}" for p in rs[0]["phases"])
        md = rs[-1]["maindata"]
        cpu = (
            f"CPU-s qbhook {statistics.median(r['cpu'] for r in rs):.3f}, finds "
            f"{statistics.median(r['finds_cpu'] for r in rs):.3f}, "
            f"qBittorrent {statistics.median(r['qbt_cpu'] for r in rs):.3f}; "
            f"maindata {statistics.median(r['maindata'].get('s', 0.0) for r in rs):.3f} s, "
            f"{md.get('n')} torrents, full {md.get('full')}, {md.get('bytes')} bytes"
        )
        rows.append(
            [f"8. unchanged sweep, {label}", 1, f"{m:.3f}", f"{m / f:.2f}x find; {phases}; {cpu}; {_fmt(xs)}", 0]
        )
        lines.append(f"{label}: {m:.3f} s = {m / f:.2f}x a bare find ({phases}; {cpu})")
    fc, sw, sc = statistics.median(finds_cpu), statistics.median(scanner), statistics.median(scanner_cpu)
    rows.append(["   bare find of both pools (same rounds)", "-", f"{f:.3f}", f"CPU-s {fc:.3f}; {_fmt(finds)}", "-"])
    rows.append(["   the scanner's finds, output discarded", "-", f"{sw:.3f}", f"CPU-s {sc:.3f}; {_fmt(scanner)}", "-"])
    verdict = (
        f"unchanged sweeps each in a process of its own (medians of {rounds}, interleaved with a bare find of "
        f"{f:.3f} s, {fc:.3f} CPU-s, and the scanner's own finds with their output discarded, {sw:.3f} s = "
        f"{sw / f:.2f}x, {sc:.3f} CPU-s; load average 1 min {min(loads):.1f}-{max(loads):.1f}):\n  "
        + "\n  ".join(lines)
    )
    return rows, verdict


def _schema_version(tree: str) -> int:
    """How many migrations the checkout at ``tree`` has (read from its source, not imported)."""
    import ast

    text = (Path(tree) / "qbhook/catalog/schema.py").read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MIGRATIONS":
            return len(node.value.elts)
    raise SystemExit(f"{tree}: no MIGRATIONS in qbhook/catalog/schema.py")


def measured(label: str, fn, counter: Counter) -> list:
    counter.n = 0
    t0 = time.perf_counter()
    rep = fn()
    dt = time.perf_counter() - t0
    return [label, counter.n, f"{dt:.2f}", getattr(rep, "mode", "-"), getattr(rep, "files_fetched", "-")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--files", type=int, default=36)
    ap.add_argument("--baseline", action="store_true", help="also list torrents() + files() per torrent")
    ap.add_argument("--sweep", action="store_true", help="also time two whole sweeps (scan + sync + plan)")
    ap.add_argument(
        "--serve",
        action="store_true",
        help="with --sweep: also run a real `qbhook serve` on the bed and read its RSS from /proc",
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds of unchanged sweep vs find (default 3)")
    ap.add_argument("--profile", action="store_true", help="with --sweep: cProfile one more unchanged sweep")
    ap.add_argument(
        "--compare",
        metavar="TREE",
        action="append",
        default=[],
        help="with --sweep: another checkout (e.g. main's): time its explain in its own process and its"
        " unchanged sweeps (row 8) in the same rounds; repeat for more checkouts (row 8 only)",
    )
    ap.add_argument("--compare-label", default="other", help="the first --compare's label (the others: folder name)")
    ap.add_argument("--no-explain", action="store_true", help="with --sweep: skip row 7 and the explain rows")
    ap.add_argument("--base", default="/tmp")
    ap.add_argument(
        "--zfs",
        action="store_true",
        help="the two pools on zfs-fuse datasets (issue 11's field-scale bed; root, zfs-fuse running)",
    )
    ap.add_argument("--zfs-size", default="8G", help="size of each sparse zfs-fuse pool image (default 8G)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    work = workdir(args.base, "qbhook-bench-index-")
    qbt = QbtInstance()
    zpools = None
    try:
        if args.zfs:
            from qbhook.sandbox.zfs import create_pools, ensure_zfs_fuse

            if not ensure_zfs_fuse():
                raise SystemExit("zfs-fuse is not available (run scripts/install-system-deps.sh as root)")
            # the bed's files are a 32-byte head and zeros: compression keeps them holes
            zpools = create_pools(work / "bed", size=args.zfs_size, kind="zfs", compression=True)
            stash, pool = zpools["stash"], zpools["pool"]
        else:
            stash, pool = work / "stash", work / "pool"
        data = stash / "data/media/torrents/seeding"
        cfg_path = write_config(work / "config.yaml", work / "catalog.sqlite", stash, pool)
        t0 = time.perf_counter()
        items = make_items(data, args.items, args.files)
        gen_s = time.perf_counter() - t0
        qbt.start(work / "qbt")
        raw = qbt.client()
        t0 = time.perf_counter()
        load_qbt(raw, items, data)
        load_s = (time.perf_counter() - t0) + wait_for(
            "qBittorrent added",
            lambda: sum(1 for t in raw.torrents_info() if str(t["content_path"]).startswith("/")),
            args.items,
        )
        cat = Catalog.open(work / "catalog.sqlite")

        def client():
            return QbtClient("qbt", qbt.url, qbt.username, qbt.password, timeout=600)

        c1 = client()
        n1 = Counter(c1)
        rows = [measured("1. first sync, empty index", lambda: sync_client(cat, c1), n1)]
        rows.append(measured("2. unchanged, same session", lambda: sync_client(cat, c1), n1))
        c2 = client()
        n2 = Counter(c2)
        rows.append(measured("3. unchanged, new process (full_update)", lambda: sync_client(cat, c2), n2))
        rows.append(measured("   then unchanged again", lambda: sync_client(cat, c2), n2))
        hs = [h for h, _ in items[:10]]
        raw.torrents_create_category(name="bench")
        raw.torrents_set_category(category="bench", torrent_hashes=hs[:5])
        raw.torrents_add_tags(tags="benched", torrent_hashes=hs[:5])
        for h in hs[5:]:
            raw.torrents_rename(torrent_hash=h, new_torrent_name=f"Renamed.{h[:8]}")
        time.sleep(1.5)  # let qBittorrent's state settle into the next sync answer
        rows.append(measured("4. after 10 torrents changed", lambda: sync_client(cat, c2), n2))
        idx = TorrentIndex(cat.conn)
        present = idx.torrents()
        nfiles = sum(t.files for t in present)
        assert len(present) == args.items and nfiles == args.items * args.files, (len(present), nfiles)
        changed = {t.hash: t for t in present if t.hash in hs}
        assert all(changed[h].category == "bench" for h in hs[:5])
        assert all(changed[h].name.startswith("Renamed.") for h in hs[5:])
        if args.baseline:

            def per_item():
                infos = c2.torrents()
                return sum(len(c2.files(t.hash)) for t in infos)

            rows.append(measured("5. without index: torrents() + files() each", per_item, n2))
        if args.sweep:
            import yaml

            from qbhook.config import load_config
            from qbhook.events.worker import sweep

            conf = yaml.safe_load(cfg_path.read_text())
            conf["qbittorrent"] = {
                "name": "qbt",
                "url": qbt.url,
                "username": qbt.username,
                "password": qbt.password,
                "timeout": 600,
            }
            conf["policy"] = {"demote_require_tag": "bench-never"}
            cfg_path.write_text(yaml.safe_dump(conf))
            cfg = load_config(cfg_path)
            sweeps = []

            def mode(out):
                kind = "full" if out["full"] else "incr."
                listing = f"{out['index'][0]['mode']}/{out['index_listing']}"
                return f"{listing}, {kind} re-plan of {out['replanned']['groups']} groups"

            for label in ("6. sweep (scan + sync + plan), first", "   sweep again, unchanged"):
                n2.n = 0
                t0 = time.perf_counter()
                out = sweep(cfg, cat, [c2])
                dt = time.perf_counter() - t0
                sweeps.append(out)
                rows.append([label, n2.n, f"{dt:.2f}", mode(out), out["index"][0]["files_fetched"]])
            assert not sweeps[-1]["full"] and sweeps[-1]["replanned"]["groups"] == 0, sweeps[-1]["replanned"]
            # The same sweep with the snapshot listing every torrent's files live, as before the
            # index, and re-planning everything (sweep.full_every 0), as before incremental sweeps.
            import dataclasses

            import qbhook.catalog.indexer as indexer_mod
            from qbhook.config import SweepConfig

            cfg_full = dataclasses.replace(cfg, sweep=SweepConfig(full_every=0))
            real_view = indexer_mod.snapshot_view
            indexer_mod.snapshot_view = lambda *a, **k: None
            try:
                n2.n = 0
                t0 = time.perf_counter()
                out = sweep(cfg_full, cat, [c2])
                dt = time.perf_counter() - t0
            finally:
                indexer_mod.snapshot_view = real_view
            rows.append(
                [
                    "   same sweep, full re-plan, files listed live (no index)",
                    n2.n,
                    f"{dt:.2f}",
                    mode(out),
                    out["index"][0]["files_fetched"],
                ]
            )
            assert out["plan"] == sweeps[-1]["plan"], "the index and the live listing must plan the same"
            sweep(cfg, cat, [c2])  # back to cfg: a config change re-plans everything once
            # An unchanged sweep, and one after 10 changes, against a bare `find` walk of both
            # pools, rounds interleaved. Changes per round: 5 torrents re-categorised, 5 torrents
            # get a library hardlink to one of their files (nlink only: no torrent change).
            lib = stash / "data/media/library"
            finds, unchanged, changed, replanned, req_changed, phases = [], [], [], [], [], []
            for k in range(args.rounds):
                t0 = time.perf_counter()
                subprocess.run(
                    ["find", str(stash), str(pool), "-printf", "%i %s %T@ %p\n"], check=True, stdout=subprocess.DEVNULL
                )
                finds.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                out = sweep(cfg, cat, [c2])
                unchanged.append(time.perf_counter() - t0)
                phases.append(out["phase_seconds"])
                assert out["replanned"]["groups"] == 0, out["replanned"]
                first = (len(items) // 2 + 10 * k) % max(len(items) - 10, 1)  # not the 10 of row 4
                batch = [h for h, _ in items[first : first + 10]]
                raw.torrents_create_category(name=f"bench{k}")
                raw.torrents_set_category(category=f"bench{k}", torrent_hashes=batch[:5])
                for j in range(len(batch[5:])):
                    name = f"Item.{first + 5 + j:05d}"
                    (lib / name).mkdir(parents=True, exist_ok=True)
                    os.link(data / name / "d0" / "f0.bin", lib / name / "f0.bin")
                time.sleep(1.5)  # let qBittorrent's state settle into the next sync answer
                n2.n = 0
                t0 = time.perf_counter()
                out = sweep(cfg, cat, [c2])
                changed.append(time.perf_counter() - t0)
                req_changed.append(n2.n)
                replanned.append(out["replanned"]["groups"])
            f_med, s_med, c_med = statistics.median(finds), statistics.median(unchanged), statistics.median(changed)
            sweep_vs_find = (
                f"unchanged sweep {s_med:.2f} s vs bare find of both pools {f_med:.2f} s "
                f"(medians of {args.rounds}, interleaved): {s_med / f_med:.2f}x (target <= 1.5x: "
                f"{'MET' if s_med / f_med <= 1.5 else 'MISSED'}); sweeps {_fmt(unchanged)}, "
                f"finds {_fmt(finds)}\n"
                f"unchanged sweep's wall time by phase (medians): "
                + ", ".join(f"{k} {statistics.median(p.get(k, 0.0) for p in phases):.2f} s" for k in phases[0])
                + "\n"
                f"sweep after 10 changes (5 categories, 5 library links): {c_med:.2f} s = {c_med / f_med:.2f}x find; "
                f"{_fmt(changed)} s, groups re-planned {replanned}, HTTP requests {req_changed}"
            )
            if args.profile:
                import cProfile
                import pstats

                prof = cProfile.Profile(time.process_time)
                prof.runcall(sweep, cfg, cat, [c2])
                pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
            explain_verdict = "explain: not run (--no-explain)"
            if not args.no_explain:
                ex_rows, explain_verdict = explain_rounds(
                    cfg_path,
                    work,
                    items[0][0],
                    lambda: sweep(cfg, cat, [c2]),
                    args.rounds,
                    args.compare[0] if args.compare else None,
                    args.compare_label,
                )
                rows += ex_rows
                # explain forced to rescan (--max-scan-age 0: walks both pools first, as explain did
                # before a recent full scan was used), and `status` for the interpreter start alone.
                env = qbhook_versions(work, None, "")[0][1]
                for label, extra in (
                    (
                        "   explain HASH --max-scan-age 0 (walks), own process",
                        ["explain", items[0][0], "--max-scan-age", "0"],
                    ),
                    ("   reference: qbhook --json status (startup, imports)", ["status"]),
                ):
                    secs, stats = explain_cost(cfg_path, extra, env)
                    rows.append([label, "-", f"{secs:.2f}", f"{stats} stat calls", "-"])
            compare_verdict = None
            if args.compare:
                trees = [(args.compare_label if i == 0 else Path(t).name, t) for i, t in enumerate(args.compare)]
                cmp_rows, compare_verdict = compare_sweeps(work, cfg_path, qbt, trees, stash, pool, args.rounds)
                rows += cmp_rows
            print(f"sweep plans: {sweeps[-1]['plan']}")
            if args.serve:
                serve_rss = serve_memory(cfg_path, work, cat)

        print(f"machine: {machine()}")
        print(f"qbittorrent-nox {c1.version()} (Web API {c1.api_version()})")
        print(
            f"bed: {args.items} torrents x {args.files} files = {nfiles} files (generated in {gen_s:.1f}s, "
            f"loaded in {load_s:.1f}s skip-checking); catalog {work / 'catalog.sqlite'}"
        )
        import resource

        print(
            f"peak RSS of this process (bench + index syncs{' + sweeps' if args.sweep else ''}): "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        )
        print("targets: unchanged sync <= 10 requests; after 10 changes <= 10 + 2 x 10 = 30\n")
        print(table(["sync", "HTTP requests", "seconds", "mode", "file lists fetched"], rows))
        if args.sweep:
            print(f"\n{sweep_vs_find}")
            print(f"\n{explain_verdict}")
            if compare_verdict:
                print(f"\n{compare_verdict}")
            if args.serve:
                print(f"\n{serve_rss}")
    finally:
        qbt.stop()
        if zpools is not None and not args.keep:
            from qbhook.sandbox.zfs import destroy_pools

            destroy_pools(zpools)
        cleanup(work, args.keep)


if __name__ == "__main__":
    main()
