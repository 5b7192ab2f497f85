"""Targeted commands without full walks, hashed bytes in ``status``, FIFOs, a lost index
(issue 11, parts 3 and 5), against a real qbittorrent-nox and real zfs-fuse pools.

"No walk" is measured, not assumed: ``os.scandir`` (the scanner's only way into a folder)
and ``os.lstat`` are counted while the command runs in process.
"""

# ruff: noqa: F811  (pytest passes the imported `bed` fixture by parameter name)
from __future__ import annotations

import json
import os
import stat

import pytest
import yaml

from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex
from tests.integration.test_index_real import bed  # noqa: F401  (the shared bed fixture; the tests take it by name)
from tests.timebox import timebox

pytestmark = pytest.mark.integration

LOOSE = 1000  # files per pool no torrent references: a walk would stat every one


class _Calls:
    """Counts folders walked (os.scandir calls, plus every folder a rescan's ``find`` walker
    was started on: it walks the whole tree in its own process) and os.lstat calls."""

    def __init__(self, monkeypatch):
        from qbhook.catalog import scan

        self.scandir = 0
        self.lstat = 0
        real_scandir, real_lstat = os.scandir, os.lstat
        real_find_walk = scan._find_walk

        def find_walk(catalog, pool, root, subtree, ignore, *run):  # run: a find scan_pools started
            walk = real_find_walk(catalog, pool, root, subtree, ignore, *run)
            if walk is not None:
                self.scandir += sum(1 for _ in os.walk(root))  # the folders find went through
            return walk

        monkeypatch.setattr(scan, "_find_walk", find_walk)

        def scandir(*a, **k):
            self.scandir += 1
            return real_scandir(*a, **k)

        def lstat(*a, **k):
            self.lstat += 1
            return real_lstat(*a, **k)

        monkeypatch.setattr(os, "scandir", scandir)
        monkeypatch.setattr(os, "lstat", lstat)

    def reset(self):
        self.scandir = self.lstat = 0


def _loose_files(root, n: int) -> None:
    d = root / "loose"
    for i in range(n):
        sub = d / f"{i // 100:02}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"x{i:04}.bin").write_bytes(b"%d" % i)


def _config(bed, section: str = "scan", **values) -> None:
    cfg = yaml.safe_load(bed.config.read_text())
    cfg[section] = {**cfg.get(section, {}), **values}
    bed.config.write_text(yaml.safe_dump(cfg))


def _plan(bed, *args):
    r = bed.run("--json", "plan", *args)
    assert r.exit_code in (0, 10), r.output
    return json.loads(r.stdout), r.stderr


@pytest.mark.slow
def test_plan_and_apply_for_a_few_groups_never_walk_the_pools(bed, monkeypatch):
    hs = [bed.add(bed.stash_seed, f"Many.{i}", {"a.bin": 20_000 + i, "b.bin": 5_000}, seed=i) for i in range(5)]
    for seed_root in (bed.stash_seed, bed.pool_seed):
        _loose_files(seed_root.parent.parent, LOOSE)
    assert bed.run("scan").exit_code == 0
    calls = _Calls(monkeypatch)

    # one torrent's group: its own files and links are re-stat-ed, nothing is walked
    data, err = _plan(bed, "--hash", hs[0])
    assert calls.scandir == 0, calls.scandir
    assert calls.lstat < 100, calls.lstat  # vs. > 2,000 files in the pools
    assert [g["torrents"] for g in data["groups"]] == [[hs[0]]]
    assert data["catalog"]["source"] == "catalog" and "no walk" in data["catalog"]["reason"]
    assert err == ""  # --json: one document, the note is inside it
    r = bed.run("plan", "--hash", hs[0])
    assert r.exit_code in (0, 10) and "no walk" in r.stderr and calls.scandir == 0
    gid = data["groups"][0]["group_id"]

    # one group by id (the index names its torrents): same, and apply's dry run too
    calls.reset()
    data, _err = _plan(bed, "--group", gid)
    assert calls.scandir == 0 and [g["group_id"] for g in data["groups"]] == [gid]
    calls.reset()
    r = bed.run("--json", "apply", "--group", gid)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert calls.scandir == 0 and calls.lstat < 100 and out["catalog"]["source"] == "catalog"
    assert out["dry_run"] and [g["group_id"] for g in out["groups"]] in ([gid], [])

    # by the 12 characters `torrents` prints, any case: the same group; a name of no group is
    # bad input (exit 2), never an empty plan that exits 0
    data, _err = _plan(bed, "--group", gid[:12].upper())
    assert [g["group_id"] for g in data["groups"]] == [gid]
    for cmd in ("plan", "apply"):
        r = bed.run(cmd, "--group", "0" * 12 if not gid.startswith("0" * 12) else "f" * 12)
        assert r.exit_code == 2 and "no payload group" in r.output and "Traceback" not in r.output, r.output

    # everything, with a full scan younger than scan.max_age: the catalog, no walk
    calls.reset()
    data, _err = _plan(bed)
    assert calls.scandir == 0 and len(data["groups"]) == 5
    assert data["catalog"]["source"] == "catalog" and "scan.max_age" in data["catalog"]["reason"]

    # everything, the last full scan older than scan.max_age: scanned first, and it says so
    _config(bed, max_age=0)
    calls.reset()
    r = bed.run("plan")
    assert r.exit_code in (0, 10) and "older than scan.max_age" in r.stderr
    assert calls.scandir > 2 * LOOSE // 100
    calls.reset()
    data, _err = _plan(bed)
    assert data["catalog"]["source"] == "scanned" and calls.scandir > 2 * LOOSE // 100
    # --no-scan still means the catalog as is; --scan forces a walk for a targeted plan
    calls.reset()
    assert _plan(bed, "--no-scan")[0]["catalog"]["source"] == "as-is" and calls.scandir == 0
    assert _plan(bed, "--hash", hs[1], "--scan")[0]["catalog"]["source"] == "scanned" and calls.scandir > 0


def test_targeted_plan_still_sees_a_library_link_made_after_the_scan(bed):
    """Safety does not rest on the catalog: a link made since the last scan is not in it, yet
    the live link count shows it and the group stays where it is."""
    h = bed.add(bed.stash_seed, "Fresh.Lib", {"f.mkv": 40_000}, seed=9)
    _config(bed, "policy", demote_require_tag=None)  # seed-only data demotes without a tag
    assert bed.run("scan").exit_code == 0
    data, _ = _plan(bed, "--hash", h)
    assert data["groups"][0]["action"] == "demote"
    lib = bed.stash_seed.parent.parent / "movies" / "F.mkv"
    lib.parent.mkdir(parents=True)
    os.link(bed.stash_seed / "Fresh.Lib/f.mkv", lib)
    data, _ = _plan(bed, "--hash", h)
    assert data["catalog"]["source"] == "catalog"
    assert data["groups"][0]["action"] == "stay", data["groups"][0]


def test_status_shows_hashed_and_unhashed_bytes_per_pool(bed):
    bed.add(bed.stash_seed, "Hash.Me", {"h.bin": 70_000}, seed=4)
    (bed.pool_seed / "cold.bin").write_bytes(b"c" * 30_000)
    assert bed.run("scan").exit_code == 0
    r = bed.run("--json", "status")
    pools = json.loads(r.stdout)["pools"]
    assert (pools["stash"]["hashed_bytes"], pools["stash"]["unhashed_bytes"]) == (0, 70_000)
    assert (pools["pool"]["hashed_bytes"], pools["pool"]["unhashed_bytes"]) == (0, 30_000)
    _config(bed, hash_budget=1)  # one file per run at most
    r = bed.run("--json", "scan", "--hash")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["hash_budget"] == {
        "limit": 1,
        "deferred_files": 1,
        "deferred_bytes": json.loads(r.stdout)["hash_budget"]["deferred_bytes"],
    }
    assert json.loads(r.stdout)["hash_budget"]["deferred_bytes"] in (30_000, 70_000)
    pools = json.loads(bed.run("--json", "status").stdout)["pools"]
    assert pools["stash"]["hashed_bytes"] + pools["pool"]["hashed_bytes"] in (30_000, 70_000)
    assert bed.run("scan", "--hash").exit_code == 0
    r = bed.run("status")
    pools = json.loads(bed.run("--json", "status").stdout)["pools"]
    assert (pools["stash"]["hashed_bytes"], pools["stash"]["unhashed_bytes"]) == (70_000, 0)
    assert (pools["stash"]["hashed_files"], pools["pool"]["hashed_files"]) == (1, 1)
    assert "68.4 KiB hashed (1 files), 0 B not hashed" in r.stdout


def test_a_fifo_in_a_seeding_root_is_never_opened(bed, monkeypatch):
    """A FIFO where a torrent's file should be (and one beside it): scan, hash, plan and
    explain finish, report the file missing, and never open the FIFO."""
    h = bed.add(bed.stash_seed, "Pipe.Dream", {"p.bin": 10_000, "q.bin": 10_000}, seed=6)
    target = bed.stash_seed / "Pipe.Dream/p.bin"
    target.unlink()
    os.mkfifo(target)
    os.mkfifo(bed.stash_seed / "stray.fifo")
    fifos = {os.fsencode(target), os.fsencode(bed.stash_seed / "stray.fifo")}
    opened = []
    real_open = os.open

    def watching_open(path, *a, **k):
        if isinstance(path, (str, bytes)) and os.fsencode(path) in fifos:
            opened.append(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", watching_open)
    with timebox(120, "commands over a FIFO"):
        assert bed.run("scan", "--hash").exit_code == 0
        data, _ = _plan(bed, "--hash", h)
        r = bed.run("--json", "explain", h)
        assert r.exit_code == 0, r.output
    assert opened == []
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    g = data["groups"][0]
    assert g["action"] == "blocked" and any("missing file" in b and "p.bin" in b for b in g["blockers"]), g
    cat = Catalog.open(bed.catalog_path)
    assert cat.conn.execute("SELECT count(*) FROM paths WHERE path IN (?, ?)", tuple(fifos)).fetchone()[0] == 0
    cat.close()


def test_a_missing_index_is_rebuilt_from_the_client_and_a_scan_with_a_clear_message(bed):
    h = bed.add(bed.stash_seed, "Lost.Idx", {"l.bin": 25_000}, seed=7)
    assert bed.run("scan").exit_code == 0
    assert bed.run("torrents").exit_code == 0
    # the catalog file is gone (disk swapped, deleted by hand): index, scans, everything
    for suffix in ("", "-wal", "-shm"):
        p = bed.catalog_path.with_name(bed.catalog_path.name + suffix)
        if p.exists():
            p.unlink()
    r = bed.run("plan")
    assert r.exit_code in (0, 10), r.output
    assert "pools scanned now: no full scan on record" in r.stderr
    r = bed.run("--json", "torrents")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [t["hash"] for t in data["torrents"]] == [h] and data["index"]["qbt"]["mode"] == "full"
    assert data["torrents"][0]["files_resolved"] == 1  # the scan's inode, found again
    cat = Catalog.open(bed.catalog_path)
    assert TorrentIndex(cat.conn).files("qbt", h)[0][5] is not None
    cat.close()
