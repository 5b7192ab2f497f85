#!/usr/bin/env python3
"""Benchmark same-pool convergence against `jdupes -L -r` on two identical trees.

Each tree is one pool (a folder, or with --zfs a zfs-fuse dataset) holding N library files
(``data/media/movies/M<i>/m<i>.bin``, small, each its own content) and N seeding copies of
them as separate inodes (``data/media/torrents/seeding/movies/T<i>/m<i>.bin``), one torrent
per seeding folder: the *arr-copied-instead-of-linked case, N times. Timed, each in its own
process, warm page cache:

  jdupes -L -r -q POOL                 find the duplicates and hardlink them (no journal,
                                       no re-checks, no catalog)
  qbhook converge, whole pipeline      scan into a fresh catalog, hash, snapshot (a stub
                                       torrent client lists the N torrents), plan, apply:
                                       N journaled converge steps, each re-checked through
                                       verified folder descriptors and renamed over atomically
  qbhook converge, apply only          the same process's apply phase (reported from inside)
  floor (--floor)                      bench/converge_floor.py: a minimal Python convergence with
                                       a catalog and a journal, no torrents, groups or plan: what
                                       the language and the kinds of work cost, apart from
                                       qbhook's machinery (on a fourth identical tree)

Correctness, asserted for both tools: the pool's distinct inodes shrink by exactly the sum
of the duplicates' sizes, every seeding path ends as a link of its library file's inode,
and no library file changed (inode, size, mtime). qbhook's own ``bytes_freed`` must equal
that sum too.

Target (issue 12): qbhook within 1.5x jdupes -L on the same tree (wall clock). Each tool's CPU
seconds (user + system, threads and children included, from the kernel's accounting of the
reaped process) are reported beside it, and the seconds the driver spent in the cyclic garbage
collector's passes per phase: on a machine other jobs load, the wall clock of a
single-threaded run moves with the load by 2x either way, its CPU seconds much less.

  python bench/bench_converge.py                 # 10,000 duplicates on --tmpdir (tmpfs or disk)
  python bench/bench_converge.py -n 2000 --zfs   # also on a zfs-fuse pool
  python bench/bench_converge.py --compare TREE  # also another checkout's qbhook (e.g. main's), on a
                                                 # third identical tree, in the same rounds
  python bench/bench_converge.py --floor         # also the floor script, in the same rounds
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (
    cleanup,
    fstype_of,
    machine,
    qbhook_versions,
    require,
    run_rss,
    table,
    tool_version,
    verdict,
    workdir,
)

SEED_REL = "data/media/torrents/seeding"
LIB_REL = "data/media/movies"


# --------------------------------------------------------------------------- the tree


def generate(pool: Path, n: int, seed: int) -> int:
    """N library files and N seeding copies (separate inodes); returns the duplicates' total size."""
    rng = random.Random(seed)
    total = 0
    for i in range(n):
        size = rng.randint(1024, 16 * 1024)
        data = rng.randbytes(size)
        for rel in (f"{LIB_REL}/M{i}/m{i}.bin", f"{SEED_REL}/movies/T{i}/m{i}.bin"):
            p = pool / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        total += size
    # scan.settle_seconds is 0 in the bench config, but keep mtimes clearly in the past anyway
    old = time.time_ns() - 3600 * 10**9
    for p in pool.rglob("*.bin"):
        os.utime(p, ns=(old, old))
    return total


def distinct(pool: Path) -> dict[tuple[int, int], int]:
    out = {}
    for dirpath, _dirs, files in os.walk(pool):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            out[(st.st_dev, st.st_ino)] = st.st_size
    return out


def library_facts(pool: Path, n: int) -> dict[int, tuple[int, int, int]]:
    return {
        i: (st.st_ino, st.st_size, st.st_mtime_ns)
        for i in range(n)
        for st in [os.lstat(pool / f"{LIB_REL}/M{i}/m{i}.bin")]
    }


def check(pool: Path, n: int, before: dict, lib_before: dict, dup_bytes: int, tool: str) -> int:
    """Assert the tool's result; returns the bytes freed (sum of sizes of inodes that went)."""
    after = distinct(pool)
    freed = sum(before.values()) - sum(after.values())
    assert freed == dup_bytes, f"{tool}: freed {freed} bytes, the duplicates hold {dup_bytes}"
    lib_after = library_facts(pool, n)
    if tool == "qbhook":
        assert lib_after == lib_before, "qbhook changed a library file"
    for i in range(n):
        s = os.lstat(pool / f"{SEED_REL}/movies/T{i}/m{i}.bin")
        lib = os.lstat(pool / f"{LIB_REL}/M{i}/m{i}.bin")
        assert (s.st_dev, s.st_ino) == (lib.st_dev, lib.st_ino), f"{tool}: T{i} not converged"
    return freed


# --------------------------------------------------------------------------- qbhook side (its own process)


def write_config(base: Path, pool: Path, cold: Path) -> Path:
    """A fresh catalog per round (a catalog that knew another round's tree would trip the mass-delete guard)."""
    import yaml

    base.mkdir(parents=True, exist_ok=True)
    cfg = {
        "catalog": str(base / "catalog.sqlite"),
        "lock_dir": str(base / "locks"),
        "pools": {"stash": {"path": str(pool), "role": "primary"}, "pool": {"path": str(cold), "role": "cold"}},
        "seeding_roots": {"stash": str(pool / SEED_REL), "pool": str(cold / SEED_REL)},
        "scan": {"settle_seconds": 0},
        "policy": {"max_groups_per_run": 10**9},  # one run converges all N groups
    }
    (cold / SEED_REL).mkdir(parents=True, exist_ok=True)
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def seeding_sizes(pool: Path, n: int) -> list[int]:
    """The size of each seeding file T<i>: what the stub client lists (read before the timed run)."""
    return [os.lstat(pool / f"{SEED_REL}/movies/T{i}/m{i}.bin").st_size for i in range(n)]


class StubClient:
    """One complete, seeding torrent per seeding folder T<i> (what qBittorrent would list).

    ``sizes``: each torrent's file size, as a client knows it from its own state. Without them
    the stub lstat-s each file, which a real client's listing does not do (on zfs-fuse 2,000
    FUSE lookups that no qbhook code asked for, timed as part of the snapshot)."""

    name = "bench"

    def __init__(self, seed_root: Path, n: int, sizes: list[int] | None = None):
        try:
            from qbhook.clients.model import TorrentFile, TorrentInfo
        except ImportError:  # --compare with a checkout from before clients/model.py (6f0355a's parent and older)
            from qbhook.clients.qbt.model import TorrentFile, TorrentInfo

        self._files = {}
        self._infos = []
        movies = str(seed_root / "movies")
        for i in range(n):
            h = f"{i:040x}"
            size = sizes[i] if sizes is not None else os.lstat(seed_root / f"movies/T{i}/m{i}.bin").st_size
            self._files[h] = [TorrentFile(index=0, name=f"T{i}/m{i}.bin", size=size, progress=1.0, priority=1)]
            self._infos.append(
                TorrentInfo(
                    instance=self.name,
                    hash=h,
                    infohash_v1=h,
                    infohash_v2=None,
                    name=f"T{i}",
                    save_path=movies,
                    download_path="",
                    content_path=f"{movies}/T{i}",
                    root_path=f"{movies}/T{i}",
                    client_save_path=movies,
                    client_content_path=f"{movies}/T{i}",
                    auto_tmm=False,
                    category="",
                    tags=frozenset(),
                    state="stalledUP",
                    raw_state="stalledUP",
                    progress=1.0,
                    amount_left=0,
                    size=size,
                    total_size=size,
                    has_metadata=True,
                    added_on=1,
                    completion_on=1,
                )
            )

    def torrents(self):
        return list(self._infos)

    def files(self, h):
        return self._files[h]

    def forget_state_lag(self) -> None:
        """A port method (clients/port.py): the stub's lag is fixed, nothing to read again."""


def _collector_clock():
    """A function returning the wall seconds this process spent in cyclic collector passes since now."""
    import gc

    spent, began = [0.0], [0.0]

    def on_pass(phase: str, _info: dict) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - began[0]

    gc.callbacks.append(on_pass)
    return lambda: spent[0]


def driver(config: str, n: int, prof=None, prof_before=None, sizes: str | None = None, set_pass: bool = False) -> None:
    """One whole convergence in this process; ``prof``: a profiler enabled around the apply phase,
    ``prof_before``: another around scan, snapshot and plan; ``sizes``: a JSON file of the
    seeding files' sizes for the stub client (``seeding_sizes``); ``set_pass``: ``qbhook converge``'s
    set-based pass (``decide.converge_pass.plan_convergence`` after the scan, timed as "snapshot";
    its "plan" phase is then only the executor's construction) instead of snapshot + make_plan."""
    from qbhook.catalog.scan import scan_pool
    from qbhook.catalog.store import Catalog
    from qbhook.config import load_config
    from qbhook.decide.planner import make_plan
    from qbhook.decide.snapshot import build_snapshot
    from qbhook.move.executor import build_executor

    t = {"start": time.perf_counter()}
    cpu = {"start": time.process_time()}  # the whole process: the hashing threads too
    gcs = {"start": 0.0}
    gc_total = _collector_clock()  # seconds spent in the cyclic collector's passes so far
    if prof_before is not None:
        prof_before.enable()
    cfg = load_config(config)
    cat = Catalog.open(cfg.catalog)
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    t["scan"], cpu["scan"], gcs["scan"] = time.perf_counter(), time.process_time(), gc_total()
    listed = json.loads(Path(sizes).read_text()) if sizes else None
    client = StubClient(Path(next(p.seeding_root for p in cfg.pools if p.role == "primary")), n, listed)
    if set_pass:
        from qbhook.decide.converge_pass import plan_convergence

        plan = plan_convergence(cfg, cat, [client], scan=False).plan
        t["snapshot"], cpu["snapshot"], gcs["snapshot"] = time.perf_counter(), time.process_time(), gc_total()
    else:
        snap = build_snapshot(cfg, cat, [client])
        t["snapshot"], cpu["snapshot"], gcs["snapshot"] = time.perf_counter(), time.process_time(), gc_total()
        plan = make_plan(snap, cfg.policy)
    ex = build_executor(cfg, cat, {client.name: client})
    t["plan"], cpu["plan"], gcs["plan"] = time.perf_counter(), time.process_time(), gc_total()
    if prof_before is not None:
        prof_before.disable()
    if prof is not None:
        prof.enable()
    res = ex.apply(plan)
    if prof is not None:
        prof.disable()
    t["apply"], cpu["apply"], gcs["apply"] = time.perf_counter(), time.process_time(), gc_total()
    s = plan.summary()
    steps = ["start", "scan", "snapshot", "plan", "apply"]
    print(
        json.dumps(
            {
                "converge_groups": s["converge"],
                "planned_bytes_freed": s["bytes_freed"],
                "bytes_freed": res.bytes_freed,
                "failed": res.groups_failed,
                "status": res.status,
                "steps": sum(len(g.steps) for g in plan.groups),
                "seconds": {k: round(t[k] - t[prev], 3) for prev, k in itertools.pairwise(steps)},
                "cpu_seconds": {k: round(cpu[k] - cpu[prev], 3) for prev, k in itertools.pairwise(steps)},
                "gc_seconds": {k: round(gcs[k] - gcs[prev], 3) for prev, k in itertools.pairwise(steps)},
            }
        )
    )


# --------------------------------------------------------------------------- profile (--profile)

# Where the apply phase's time goes: (label, cProfile function names whose cumulative time counts).
# Names absent from a version of the code (main's per-group path vs the batches) count 0.
APPLY_PARTS = [
    ("serialise the plan (to_dict, start_run)", ["start_run", "Plan.to_dict"]),
    ("lock (group locks / converge lock)", ["group_lock", "converge_lock", "acquire", "release"]),
    ("journal commits", ["intend", "done", "set_group", "intend_batch", "close_batch"]),
    ("catalog (prefetch, record paths)", ["record_path", "record_paths", "prefetch"]),
    ("folder fds (walk from the roots / cached)", ["_walk", "_open_parent", "_dir"]),
    ("re-check content (cached hash or read)", ["_content_digest"]),
    ("lstat (fstatat through the held folder)", ["posix.stat", "posix.lstat"]),
    ("link + rename + fsync + syncfs", ["posix.link", "posix.rename", "posix.fsync", "sync_filesystem"]),
    ("journal: plan JSON, intents, outcomes", ["start_run", "intend_batch", "close_batch"]),
    ("waiting for the releasing threads (drain)", ["drain"]),
    ("waiting for the other processes (_collect)", ["_collect"]),
]


# Where scan, snapshot and plan go (--profile): the same way, over the profile of those phases.
BEFORE_PARTS = [
    ("scan (catalog/scan.py)", ["scan_pool"]),
    ("snapshot, all of it", ["build_snapshot"]),
    ("  torrents' files: lstat, symlink probe, catalog rows", ["_torrent_facts"]),
    ("  what to hash + hashing", ["_hash_what_decisions_need"]),
    ("    of which ensure_hashes (reads both ends of every pair)", ["ensure_hashes"]),
    ("  donor index (library copies, one batch)", ["_donor_index"]),
    ("  destinations on the other pool", ["_destinations"]),
    ("plan (make_plan)", ["make_plan"]),
    ("the set-based pass (--pass), all of it", ["plan_convergence"]),
    ("  find_duplicates (sizes, partials, hashes)", ["find_duplicates"]),
    ("    of which small files read and hashed here (and taken from the child)", ["_hash_small", "_take_theirs"]),
    ("  torrents' files placed on their inodes", ["_torrent_facts"]),
    ("  facts of the duplicate sets", ["convergence_snapshot"]),
    ("  payload groups and plan_group per group", ["convergence_plan"]),
]


def _part_seconds(stats: dict) -> dict[str, float]:
    """Cumulative seconds per qbhook function name (outermost to_dict: Plan's) and per posix builtin."""
    out: dict[str, float] = {}
    for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.items():
        if "qbhook" in file:
            key = "Plan.to_dict" if name == "to_dict" and file.endswith("plan.py") else name
            out[key] = max(out.get(key, 0.0), ct) if key == "Plan.to_dict" else out.get(key, 0.0) + ct
        elif file == "~" and "posix." in name:
            key = name.strip("<>{}").split()[-1]
            out[key] = out.get(key, 0.0) + ct
    return out


def profile(n: int, tmpdir: str, zfs: bool = False, set_pass: bool = False) -> None:
    """Phase wall times of one in-process run (printed by the driver), then scan + snapshot + plan
    and the apply phase, each under its own cProfile (its overhead included). ``zfs``: on a
    zfs-fuse dataset instead of ``tmpdir``; ``set_pass``: the set-based pass (``--pass``)."""
    import cProfile
    import pstats

    base = workdir(tmpdir, "qbhook-bench-converge-prof-")
    prof, before = cProfile.Profile(), cProfile.Profile()
    stop = None
    try:
        pool = base / "q"
        if zfs:
            pool, stop = zfs_pool(base, "prof")
        generate(pool, n, seed=1)
        cfg = write_config(base / "qb", pool, base / "cold")
        sizes = base / "sizes.json"
        sizes.write_text(json.dumps(seeding_sizes(pool, n)))
        driver(str(cfg), n, prof=prof, prof_before=before, sizes=str(sizes), set_pass=set_pass)
    finally:
        if stop is not None:
            stop()
        cleanup(base, False)
    secs = _part_seconds(pstats.Stats(before).stats)
    rows = [[label, f"{sum(secs.get(nm, 0.0) for nm in names):.2f}"] for label, names in BEFORE_PARTS]
    print(table(["scan, snapshot, plan: part (cProfile, cumulative)", "seconds"], rows))
    secs = _part_seconds(pstats.Stats(prof).stats)
    rows = [[label, f"{sum(secs.get(nm, 0.0) for nm in names):.2f}"] for label, names in APPLY_PARTS]
    rows.append(["apply under cProfile (all of it)", f"{secs.get('apply', 0.0):.2f}"])
    print(table(["apply phase, part (cProfile, cumulative)", "seconds"], rows))


# --------------------------------------------------------------------------- zfs (optional)


def zfs_pool(base: Path, name: str) -> tuple[Path, callable]:
    from qbhook.sandbox.zfs import create_pools, destroy_pools

    pools = create_pools(base / f"zfs-{name}", names=("stash",), kind="zfs")
    root = Path(pools["stash"])
    return root, lambda: destroy_pools(pools)


def _summary_rows(rounds: list[dict], where: str, n: int) -> tuple[list[list[str]], dict]:
    """Table rows (wall and CPU medians, ratios to jdupes's) for one kind of pool, and the medians."""
    keys = ("qbhook", "apply", "jdupes", "qbhook_cpu", "apply_cpu", "jdupes_cpu")
    med = {k: statistics.median(r[k] for r in rounds) for k in keys}
    pre = f"{where} ({n:,}): " if where else f"({n:,}): "

    def row(label: str, key: str, rss: str) -> list[str]:
        return [
            pre + label,
            f"{med[key]:.2f}",
            f"{med[key] / med['jdupes']:.2f}x",
            f"{med[key + '_cpu']:.2f}",
            f"{med[key + '_cpu'] / med['jdupes_cpu']:.2f}x",
            rss,
        ]

    rows = [
        row("jdupes -L -r", "jdupes", f"{rounds[-1]['jdupes_rss'] / 1024:.0f}"),
        row("qbhook scan+hash+plan+apply", "qbhook", f"{rounds[-1]['qbhook_rss'] / 1024:.0f}"),
        row("qbhook apply only (same process)", "apply", "-"),
    ]
    if "floor" in rounds[0]:
        med.update({k: statistics.median(r[k] for r in rounds) for k in ("floor", "floor_cpu")})
        rows.append(row("floor: minimal Python, catalog + journal", "floor", f"{rounds[-1]['floor_rss'] / 1024:.0f}"))
    if "safe" in rounds[0]:
        med.update({k: statistics.median(r[k] for r in rounds) for k in ("safe", "safe_cpu")})
        rows.append(row("safe floor: the floor + the design's checks", "safe", f"{rounds[-1]['safe_rss'] / 1024:.0f}"))
    if "safe2" in rounds[0]:
        med.update({k: statistics.median(r[k] for r in rounds) for k in ("safe2", "safe2_cpu")})
        rows.append(row("safe floor on two cores (--two)", "safe2", f"{rounds[-1]['safe2_rss'] / 1024:.0f}"))
    return rows, med


# --------------------------------------------------------------------------- main


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _children_cpu() -> float:
    """CPU seconds (user + system) of every child this process has reaped so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def bytecode_env(base: Path, trees: list[str]) -> dict:
    """The drivers' environment: compiled bytecode, as an installed qbhook has, in a private
    pycache under ``base`` filled here, untimed, for each checkout in ``trees`` (with
    PYTHONDONTWRITEBYTECODE set, every timed run recompiled each module whose .pyc was stale:
    up to 0.4 s for qbhook/decide/plan.py alone at load 5)."""
    env = qbhook_versions(base, None, "")[0][1]
    code = "import compileall, sys; [compileall.compile_dir(d, quiet=1) for d in sys.argv[1:]]"
    dirs = [str(Path(tree).resolve() / "qbhook") for tree in trees] + [str(Path(__file__).resolve().parent)]
    run_rss([sys.executable, "-c", code, *dirs], env=env)
    return env


# --pass: this checkout's qbhook runs the set-based pass, and so does a compared checkout that has it
# (qbhook/decide/converge_pass.py; an older one runs its per-group pipeline)
SET_PASS = [False]
FORK_PARTS = [0]  # --fork-parts N: this checkout's executor relinks a batch in N processes (0: its default)


def run_qbhook(
    base: Path, pool: Path, n: int, dup_bytes: int, label: str, code: str | None = None, env: dict | None = None
) -> dict:
    """One whole convergence in its own process (``code``: another checkout's qbhook), checked."""
    before, lib = distinct(pool), library_facts(pool, n)
    cfg = write_config(base / f"qbhook-{label}", pool, base / f"cold-{label}")
    sizes = base / f"sizes-{label}.json"
    sizes.write_text(json.dumps(seeding_sizes(pool, n)))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--driver", str(cfg), "-n", str(n), "--sizes", str(sizes)]
    c0 = _children_cpu()
    cmd += ["--code", code] if code else []
    if SET_PASS[0] and (code is None or (Path(code) / "qbhook/decide/converge_pass.py").exists()):
        cmd.append("--pass")
    if FORK_PARTS[0] and code is None:
        cmd += ["--fork-parts", str(FORK_PARTS[0])]
    q = run_rss(cmd, stdout_path=str(base / f"driver-{label}.json"), env=env)
    q_cpu = _children_cpu() - c0
    out = json.loads(q.stdout)
    assert out["status"] == "done" and not out["failed"], out
    assert out["converge_groups"] == n, out
    assert out["bytes_freed"] == out["planned_bytes_freed"] == dup_bytes, (out, dup_bytes)
    check(pool, n, before, lib, dup_bytes, "qbhook")
    return {
        "seconds": q.seconds,
        "cpu": q_cpu,
        "gc": out["gc_seconds"],
        "rss": q.maxrss_kib,
        "apply": out["seconds"]["apply"],
        "apply_cpu": out["cpu_seconds"]["apply"],
        "phases": out["seconds"],
        "phases_cpu": out["cpu_seconds"],
    }


def run_floor(base: Path, pool: Path, n: int, dup_bytes: int, label: str) -> dict:
    """bench/converge_floor.py on its own tree, in its own process, checked like the others."""
    before = distinct(pool)
    db = base / f"floor-{label}.sqlite"
    c0 = _children_cpu()
    script = str(Path(__file__).resolve().parent / "converge_floor.py")
    f = run_rss([sys.executable, script, str(pool), str(db)], stdout_path=str(base / f"floor-{label}.json"))
    f_cpu = _children_cpu() - c0
    out = json.loads(f.stdout)
    assert out["bytes_freed"] == dup_bytes, (out, dup_bytes)
    check(pool, n, before, {}, dup_bytes, "floor")
    return {"floor": f.seconds, "floor_cpu": f_cpu, "floor_rss": f.maxrss_kib}


SAFE_BATCH: list[int | None] = [None]  # --safe-batch, for every safe-floor run of this process


def floors_only(base: Path, n: int, runs: int) -> None:
    """``--floors-only``: per round, jdupes, the floor and the safe floor on one and on two cores,
    each on its own fresh identical tree, in an order reversed every other round; per-round
    ratios to that round's jdupes, then their medians."""
    rows = []
    for r in range(runs):
        pools = {k: base / f"{k}{r}" for k in ("jdupes", "floor", "safe", "safe2")}
        dup_bytes = generate(pools["jdupes"], n, seed=r)
        for k in ("floor", "safe", "safe2"):
            assert generate(pools[k], n, seed=r) == dup_bytes
        os.sync()  # every tool starts on a clean, cached tree
        out: dict[str, tuple[float, float]] = {}
        for k in list(pools)[:: -1 if r % 2 else 1]:
            if k == "jdupes":
                before, c0 = distinct(pools[k]), _children_cpu()
                j = run_rss(["jdupes", "-L", "-r", "-q", str(pools[k])])
                out[k] = (j.seconds, _children_cpu() - c0)
                check(pools[k], n, before, {}, dup_bytes, "jdupes")
            elif k == "floor":
                f = run_floor(base, pools[k], n, dup_bytes, f"o{r}")
                out[k] = (f["floor"], f["floor_cpu"])
            else:
                f = run_safe_floor(base, pools[k], n, dup_bytes, f"o{r}", two=k == "safe2", batch=SAFE_BATCH[0])
                out[k] = (f[k], f[f"{k}_cpu"])
            shutil.rmtree(pools[k])
        j = out["jdupes"][0]
        print(
            f"round {r + 1}: "
            + ", ".join(f"{k} {s:.2f} s ({s / j:.2f}x), {c:.2f} CPU s" for k, (s, c) in out.items())
            + f", {_load()}",
            flush=True,
        )
        rows.append(out)
    print()
    body = []
    for k in ("jdupes", "floor", "safe", "safe2"):
        ratios = [o[k][0] / o["jdupes"][0] for o in rows]
        body.append(
            [
                k,
                f"{statistics.median(o[k][0] for o in rows):.2f}",
                f"{statistics.median(ratios):.2f}x",
                ", ".join(f"{x:.2f}" for x in ratios),
                f"{statistics.median(o[k][1] for o in rows):.2f}",
            ]
        )
    print(table(["what", "wall s (median)", "vs jdupes (median of rounds)", "per round", "CPU s (median)"], body))


def run_safe_floor(
    base: Path, pool: Path, n: int, dup_bytes: int, label: str, two: bool = False, batch: int | None = None
) -> dict:
    """bench/converge_safe_floor.py (``two``: with --two) on its own tree, in its own process,
    checked like qbhook (library files unchanged), given the stub client's sizes as qbhook's driver is."""
    key = "safe2" if two else "safe"
    before, lib = distinct(pool), library_facts(pool, n)
    db = base / f"{key}-{label}.sqlite"
    sizes = base / f"sizes-{key}-{label}.json"
    sizes.write_text(json.dumps(seeding_sizes(pool, n)))
    c0 = _children_cpu()
    script = str(Path(__file__).resolve().parent / "converge_safe_floor.py")
    cmd = [sys.executable, script, *(["--two"] if two else []), *(["--batch", str(batch)] if batch else [])]
    cmd += [str(pool), str(db), str(sizes)]
    f = run_rss(cmd, stdout_path=str(base / f"{key}-{label}.json"))
    f_cpu = _children_cpu() - c0  # its forked children included: reaped by it, counted in its rusage
    out = json.loads(f.stdout)
    assert out["bytes_freed"] == dup_bytes, (out, dup_bytes)
    check(pool, n, before, lib, dup_bytes, "qbhook")  # "qbhook": also asserts no library file changed
    return {key: f.seconds, f"{key}_cpu": f_cpu, f"{key}_rss": f.maxrss_kib, f"{key}_phases": out["phases"]}


def one_round(
    base: Path,
    pool_q: Path,
    pool_j: Path,
    n: int,
    dup_bytes: int,
    label: str,
    pool_c: Path | None = None,
    code=None,
    env: dict | None = None,
    other_first: bool = False,
    pool_f: Path | None = None,
    pool_s: Path | None = None,
    pool_s2: Path | None = None,
) -> dict:
    """qbhook, jdupes, then (``pool_c``) the other checkout's qbhook, each on its own identical tree.

    ``other_first``: the other checkout runs first instead (main alternates it per round: the
    first run after the trees were written may share the disk with their write-back)."""
    if pool_c is not None and other_first:
        c = run_qbhook(base, pool_c, n, dup_bytes, label + "-compare", code=code, env=env)
    q = run_qbhook(base, pool_q, n, dup_bytes, label, env=env)
    before_j = distinct(pool_j)
    c0 = _children_cpu()
    j = run_rss(["jdupes", "-L", "-r", "-q", str(pool_j)])
    j_cpu = _children_cpu() - c0
    check(pool_j, n, before_j, {}, dup_bytes, "jdupes")
    out = {
        "qbhook": q["seconds"],
        "qbhook_cpu": q["cpu"],
        "qbhook_rss": q["rss"],
        "apply": q["apply"],
        "apply_cpu": q["apply_cpu"],
        "phases": q["phases"],
        "phases_cpu": q["phases_cpu"],
        "phases_gc": q["gc"],
        "jdupes": j.seconds,
        "jdupes_cpu": j_cpu,
        "jdupes_rss": j.maxrss_kib,
    }
    if pool_f is not None:
        out.update(run_floor(base, pool_f, n, dup_bytes, label))
    if pool_s is not None:
        out.update(run_safe_floor(base, pool_s, n, dup_bytes, label, batch=SAFE_BATCH[0]))
    if pool_s2 is not None:
        out.update(run_safe_floor(base, pool_s2, n, dup_bytes, label, two=True, batch=SAFE_BATCH[0]))
    if pool_c is not None:
        if not other_first:
            c = run_qbhook(base, pool_c, n, dup_bytes, label + "-compare", code=code, env=env)
        out.update(
            other=c["seconds"],
            other_cpu=c["cpu"],
            other_apply=c["apply"],
            other_apply_cpu=c["apply_cpu"],
            other_phases=c["phases"],
            other_phases_cpu=c["phases_cpu"],
            other_phases_gc=c["gc"],
            other_rss=c["rss"],
        )
    return out


def _round_line(r: dict) -> str:
    line = (
        f"qbhook {r['qbhook']:.2f} s, {r['qbhook_cpu']:.2f} CPU s (phases {r['phases']}, CPU {r['phases_cpu']}, "
        f"collector passes {r['phases_gc']}), "
        f"jdupes -L {r['jdupes']:.2f} s, {r['jdupes_cpu']:.2f} CPU s"
    )
    if "floor" in r:
        line += f", floor {r['floor']:.2f} s, {r['floor_cpu']:.2f} CPU s"
    if "safe" in r:
        line += f", safe floor {r['safe']:.2f} s, {r['safe_cpu']:.2f} CPU s (phases {r['safe_phases']})"
    if "safe2" in r:
        line += f", on two cores {r['safe2']:.2f} s, {r['safe2_cpu']:.2f} CPU s (phases {r['safe2_phases']})"
    if "other" in r:
        line += (
            f"; compared qbhook {r['other']:.2f} s, {r['other_cpu']:.2f} CPU s "
            f"(phases {r['other_phases']}, CPU {r['other_phases_cpu']}, collector passes {r['other_phases_gc']})"
        )
    return line


def _compare_rows(rounds: list[dict], where: str) -> list[list[str]]:
    """Medians of this tree and the compared one, wall and CPU, whole and per phase."""

    def med(*path: str) -> float:
        def get(r):
            for k in path:
                r = r[k]
            return r

        return statistics.median(get(r) for r in rounds)

    jd = med("jdupes")
    rows = [
        [
            f"{where}: whole",
            f"{med('qbhook'):.2f} / {med('qbhook_cpu'):.2f}",
            f"{med('other'):.2f} / {med('other_cpu'):.2f}",
            f"{med('qbhook') / jd:.2f}x vs {med('other') / jd:.2f}x",
        ]
    ]
    for ph in ("scan", "snapshot", "plan", "apply"):
        rows.append(
            [
                f"{where}: {ph}",
                f"{med('phases', ph):.2f} / {med('phases_cpu', ph):.2f}",
                f"{med('other_phases', ph):.2f} / {med('other_phases_cpu', ph):.2f}",
                "",
            ]
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="duplicate files (default 10,000)")
    ap.add_argument("--runs", type=int, default=3, help="rounds on fresh trees; medians reported")
    ap.add_argument("--tmpdir", default="/tmp")
    ap.add_argument("--zfs", action="store_true", help="also --runs rounds on zfs-fuse pools")
    ap.add_argument("--zfs-n", type=int, default=2000, help="duplicate files on zfs-fuse (default 2,000)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="one in-process run under cProfile: seconds per phase and part (--zfs: on zfs-fuse)",
    )
    ap.add_argument(
        "--compare", metavar="TREE", help="also time the qbhook in TREE (another checkout) on a third tree, same rounds"
    )
    ap.add_argument(
        "--floor", action="store_true", help="also time bench/converge_floor.py on a fourth tree, same rounds"
    )
    ap.add_argument(
        "--safe-floor",
        action="store_true",
        help="also time bench/converge_safe_floor.py (the floor plus the design's safety checks) on its own tree, "
        "and its --two (both cores) on another",
    )
    ap.add_argument(
        "--safe-batch",
        type=int,
        default=None,
        help="relinks per batch for the safe floor (default 1,000, qbhook's): each pays a durable commit and a syncfs",
    )
    ap.add_argument(
        "--floors-only",
        action="store_true",
        help="no qbhook: jdupes, the floor and the safe floor (one core, two cores) in alternating order per round",
    )
    ap.add_argument(
        "--pass",
        dest="set_pass",
        action="store_true",
        help="this checkout's qbhook converges with the set-based pass (qbhook converge); so does --compare "
        "TREE's if it has the pass, else its per-group snapshot + plan",
    )
    ap.add_argument(
        "--fork-parts",
        type=int,
        default=0,
        metavar="N",
        help="this checkout's executor relinks a large batch in N processes instead of its FORK_PARTS "
        "(compare two counts with --compare pointing at this same checkout)",
    )
    ap.add_argument("--driver", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", help=argparse.SUPPRESS)
    ap.add_argument("--code", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.driver:
        if args.code:  # before any qbhook import: the other checkout's package shadows this one
            sys.path.insert(0, os.path.abspath(args.code))
        if args.fork_parts:
            from qbhook.move import executor

            executor.FORK_PARTS = args.fork_parts
        driver(args.driver, args.n, sizes=args.sizes, set_pass=args.set_pass)
        return 0
    if args.profile:
        print(f"machine: {machine()}")
        profile(args.zfs_n if args.zfs else args.n, args.tmpdir, zfs=args.zfs, set_pass=args.set_pass)
        return 0
    require("jdupes")
    if args.zfs:
        from qbhook.sandbox.zfs import ensure_zfs_fuse

        # checked before the ext4 rounds: a daemon that is not running would otherwise end the
        # bench with zpool's traceback minutes in (bench_scan and bench_index check it the same way)
        if not ensure_zfs_fuse():
            raise SystemExit("--zfs: the zfs-fuse daemon does not answer and could not be started")
    base = workdir(args.tmpdir, "qbhook-bench-converge-")
    print(f"machine: {machine()}")
    SAFE_BATCH[0] = args.safe_batch
    SET_PASS[0] = args.set_pass
    FORK_PARTS[0] = args.fork_parts
    if args.floors_only:
        print(f"tree: {args.n:,} pairs on {fstype_of(base)} ({base}); {tool_version(['jdupes', '--version'])}")
        try:
            floors_only(base, args.n, args.runs)
        finally:
            cleanup(base, args.keep)
        return 0
    print(f"tree: {args.n:,} duplicate pairs on {fstype_of(base)} ({base}); {tool_version(['jdupes', '--version'])}")
    rounds = []
    env = bytecode_env(base, [str(Path(__file__).resolve().parents[1])] + ([args.compare] if args.compare else []))
    try:
        for r in range(args.runs):
            pq, pj, pc = base / f"q{r}", base / f"j{r}", (base / f"c{r}" if args.compare else None)
            pf = base / f"f{r}" if args.floor else None
            ps = base / f"s{r}" if args.safe_floor else None
            ps2 = base / f"t{r}" if args.safe_floor else None
            dup_bytes = generate(pq, args.n, seed=r)
            assert generate(pj, args.n, seed=r) == dup_bytes
            for p in (pc, pf, ps, ps2):
                if p is not None:
                    assert generate(p, args.n, seed=r) == dup_bytes
            # Written back before any tool runs: else the first tool's syncfs (qbhook's, once per
            # batch) writes every fresh tree's data, and the others find a clean disk.
            os.sync()
            rounds.append(
                one_round(base, pq, pj, args.n, dup_bytes, f"r{r}", pc, args.compare, env, r % 2 == 1, pf, ps, ps2)
            )
            print(
                f"round {r + 1}: {_round_line(rounds[-1])}; each freed exactly {dup_bytes:,} bytes, {_load()}",
                flush=True,
            )
        zfs_rounds = []
        if args.zfs:
            pq, stop_q = zfs_pool(base, "q")
            pj, stop_j = zfs_pool(base, "j")
            pc, stop_c = zfs_pool(base, "c") if args.compare else (None, lambda: None)
            pf, stop_f = zfs_pool(base, "f") if args.floor else (None, lambda: None)
            try:
                for r in range(args.runs):  # fresh trees on the same datasets, interleaved like above
                    for p in (pq, pj, pc, pf):
                        for sub in ("data", "qbhook-zfs"):
                            if p is not None:
                                shutil.rmtree(p / sub, ignore_errors=True)
                    dup_bytes = generate(pq, args.zfs_n, seed=99 + r)
                    assert generate(pj, args.zfs_n, seed=99 + r) == dup_bytes
                    for p in (pc, pf):
                        if p is not None:
                            assert generate(p, args.zfs_n, seed=99 + r) == dup_bytes
                    os.sync()
                    zfs_rounds.append(
                        one_round(base, pq, pj, args.zfs_n, dup_bytes, f"zfs{r}", pc, args.compare, env, r % 2 == 1, pf)
                    )
                    print(f"zfs round {r + 1}: {_round_line(zfs_rounds[-1])}, {_load()}", flush=True)
            finally:
                stop_q()
                stop_j()
                stop_c()
                stop_f()
    finally:
        cleanup(base, args.keep)

    rows, med = _summary_rows(rounds, fstype_of(Path(args.tmpdir)), args.n)
    if zfs_rounds:
        rows += _summary_rows(zfs_rounds, "zfs-fuse", args.zfs_n)[0]
    print()
    print(table(["what", "wall s (median)", "vs jdupes", "CPU s (median)", "vs jdupes", "peak RSS MiB"], rows))
    if args.compare:
        cmp_rows = _compare_rows(rounds, fstype_of(Path(args.tmpdir)))
        if zfs_rounds:
            cmp_rows += _compare_rows(zfs_rounds, "zfs-fuse")
        print(f"\nthis tree vs {args.compare} (same rounds, medians):")
        print(table(["what", "this tree: wall / CPU s", "compared: wall / CPU s", "vs jdupes"], cmp_rows))
    if "floor" in med:
        print(
            f"floor (a minimal Python convergence with a catalog and a journal): {med['floor'] / med['jdupes']:.2f}x "
            f"jdupes -L in wall, {med['floor_cpu'] / med['jdupes_cpu']:.2f}x in CPU seconds; qbhook "
            f"{med['qbhook_cpu'] / med['floor_cpu']:.2f}x the floor's CPU seconds"
        )
    if "safe" in med:
        print(
            f"safe floor (the floor plus the design's safety checks): {med['safe'] / med['jdupes']:.2f}x "
            f"jdupes -L in wall, {med['safe_cpu'] / med['jdupes_cpu']:.2f}x in CPU seconds; on two cores "
            f"{med['safe2'] / med['jdupes']:.2f}x in wall, {med['safe2_cpu'] / med['jdupes_cpu']:.2f}x in CPU seconds"
        )
    ratio = med["qbhook"] / med["jdupes"]
    print(
        f"\ntarget qbhook <= 1.5x jdupes -L: {verdict(ratio <= 1.5)} ({ratio:.2f}x whole pipeline, "
        f"{med['apply'] / med['jdupes']:.2f}x apply only; CPU seconds "
        f"{med['qbhook_cpu'] / med['jdupes_cpu']:.2f}x and {med['apply_cpu'] / med['jdupes_cpu']:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
