"""Helpers for tests/integration/test_apply_real.py: running the real CLI, and reading the
world (pools, qBittorrent, journal) in a form two runs can be compared by."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import blake3

from qbhook.move.executor import CRASH_ENV
from qbhook.move.fsops import HOLDING_DIR, RELINK_PREFIX, STAGING_DIR
from qbhook.sandbox.torrents import SEEDING_STATES

MiB = 1024 * 1024
RELINK_TEMP = os.fsdecode(RELINK_PREFIX)

# The steps an uninterrupted apply plans for the crash beds' two shared cases, whichever client
# seeds them (qBittorrent in test_apply_real, rTorrent in test_rtorrent_crash): a pair (a pack and
# its cross-seed under another root name) demoted, and a single torrent promoted onto an *arr copy.
DEMOTE_PAIR_STEPS = [
    "copy",
    "link",
    "verify_view",
    "verify_view",
    "relocate",
    "relocate",
    "verify_group",
    "start",
    "start",
    "tag",
    "tag",
    "delete",
    "delete",
    "prune_dirs",
    "prune_dirs",
]
PROMOTE_STEPS = ["link", "verify_view", "relocate", "verify_group", "start", "tag", "delete", "prune_dirs"]


# --------------------------------------------------------------------------- the CLI

# The real CLI in its own process; qbhook_cli.py only shortens the executor's poll spacing.
QBHOOK_CMD = (
    ["-m", "qbhook"]
    if os.environ.get("QBHOOK_TEST_DEFAULT_POLLS") == "1"
    else [str(Path(__file__).with_name("qbhook_cli.py"))]
)


def qbhook(cfg, *args, crash_at: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m qbhook --config CFG ARGS`` in a subprocess (the real CLI)."""
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [sys.executable, *QBHOOK_CMD, "--config", str(cfg), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def qbhook_json(cfg, *args, ok=(0,), **kw) -> tuple[int, dict]:
    r = qbhook(cfg, "--json", *args, **kw)
    if r.returncode not in ok:
        raise AssertionError(
            f"qbhook {' '.join(args)} -> exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        )
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else {})


def popen_qbhook(cfg, *args) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    return subprocess.Popen(
        [sys.executable, "-m", "qbhook", "--config", str(cfg), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


# --------------------------------------------------------------------------- the journal


def journal_rows(catalog: Path, sql: str, params=()) -> list[tuple]:
    """Read the catalog's journal from outside the qbhook process (WAL: readers never block it)."""
    if not Path(catalog).exists():
        return []
    conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        conn.close()


def wait_for_step(
    catalog: Path, kind: str, status: str, proc: subprocess.Popen, timeout: float = 120
) -> tuple[int, dict]:
    """Poll the steps table until a step of ``kind`` has ``status``; returns its (seq, args)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = journal_rows(
            catalog, "SELECT seq, args FROM steps WHERE kind=? AND status=? ORDER BY seq", (kind, status)
        )
        if rows:
            return rows[0][0], json.loads(rows[0][1])
        if proc.poll() is not None:
            raise AssertionError(
                f"qbhook exited ({proc.returncode}) before a {kind} step was {status}:\n"
                f"{proc.stdout.read()}\n{proc.stderr.read()}"
            )
        time.sleep(0.02)
    raise AssertionError(f"no {kind} step became {status} within {timeout}s")


# --------------------------------------------------------------------------- qBittorrent


def wait_seeding_at(client, hashes, save_path_of, timeout: float = 60, anywhere: bool = False) -> dict[str, dict]:
    """Every torrent at its expected save path, progress 1, in a seeding state, on 3 polls in a row."""
    deadline = time.monotonic() + timeout
    streak, last = 0, {}
    while time.monotonic() < deadline:
        info = {t["hash"]: t for t in client.torrents_info(torrent_hashes="|".join(hashes))}
        last = info
        good = len(info) == len(hashes) and all(
            (anywhere or os.path.normpath(info[h]["save_path"]) == os.path.normpath(str(save_path_of(h))))
            and info[h]["progress"] == 1
            and info[h]["state"] in SEEDING_STATES
            and info[h]["amount_left"] == 0
            for h in hashes
        )
        streak = streak + 1 if good else 0
        if streak >= 3:
            return info
        time.sleep(0.15)
    raise AssertionError(
        "torrents not seeding at their expected place: "
        + json.dumps(
            {h: {k: last.get(h, {}).get(k) for k in ("save_path", "state", "progress")} for h in hashes}, indent=1
        )
        + "\nexpected: "
        + json.dumps({h: str(save_path_of(h)) for h in hashes}, indent=1)
    )


# --------------------------------------------------------------------------- the pools


def b3(path) -> str:
    h = blake3.blake3()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def walk_files(root: Path):
    """Every regular file under root (path, lstat), skipping the .zfs control folder."""
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".zfs"]
        for n in files:
            p = os.path.join(dirpath, n)
            yield p, os.lstat(p)


def distinct_inodes(root: Path) -> dict[tuple[int, int], int]:
    """(dev, ino) -> size of every distinct inode under root."""
    return {(st.st_dev, st.st_ino): st.st_size for _p, st in walk_files(root)}


def contents_on_disk(*roots: Path) -> set[str]:
    return {b3(p) for r in roots for p, st in walk_files(r) if st.st_size}


def leftovers(*roots: Path) -> list[str]:
    """Staging or holding folders/files, or relink temporary names, anywhere under the roots (must never linger)."""
    out = []
    for r in roots:
        for dirpath, dirs, files in os.walk(r):
            out += [
                os.path.join(dirpath, n)
                for n in dirs + files
                if n in (STAGING_DIR, HOLDING_DIR) or n.startswith(RELINK_TEMP)
            ]
    return out


def tree_state(pools: dict[str, Path]) -> set[tuple]:
    """The files on the pools independent of inode numbers and mount paths: one entry per
    inode, (pool, sorted relative paths of its links, size, blake3)."""
    by_inode: dict[tuple, list] = {}
    for name, root in pools.items():
        for p, st in walk_files(root):
            rel = os.path.relpath(p, root)
            if rel.startswith(".qbhook"):  # fsid markers and the like, not payload
                continue
            e = by_inode.setdefault((name, st.st_dev, st.st_ino), [name, [], st.st_size, None])
            e[1].append(rel)
            if e[3] is None:
                e[3] = b3(p)
    return {(e[0], tuple(sorted(e[1])), e[2], e[3]) for e in by_inode.values()}


def torrents_state(client, hashes, pools: dict[str, Path]) -> dict[str, tuple]:
    """hash -> (pool, save path relative to that pool, progress, seeding?)."""
    out = {}
    for t in client.torrents_info(torrent_hashes="|".join(hashes)):
        sp = os.path.normpath(t["save_path"])
        where = next(
            ((n, os.path.relpath(sp, r)) for n, r in pools.items() if sp == str(r) or sp.startswith(str(r) + "/")),
            (None, sp),
        )
        out[t["hash"]] = (*where, t["progress"], t["state"] in SEEDING_STATES)
    return out


def wait_settled(client, hashes, timeout: float = 60) -> dict[str, dict]:
    """Every torrent complete and seeding (wherever it is) on 3 polls in a row."""
    return wait_seeding_at(client, hashes, lambda h: None, timeout=timeout, anywhere=True)
