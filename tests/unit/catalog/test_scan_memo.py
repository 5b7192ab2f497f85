"""The persisted rescan memo and the catalog's write generation (issue 13).

A rescan in a new process may skip rebuilding the catalog's lines only when find printed
byte for byte what it printed when the catalog last matched, at the same write generation,
with the same st_dev per filesystem. Each test makes one of those conditions false in a way
a memo that ignored it would miss, and requires the rescan to see the truth.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys

import blake3
import pytest

from qbhook.catalog import findwalk
from qbhook.catalog import fsid as fsid_mod
from qbhook.catalog import scan as scanner
from qbhook.catalog.db import connect
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from tests.helpers import make_config, write
from tests.unit.catalog.old import catalog_at

_PYTHON_WALK = scanner._python_walk


@pytest.fixture
def env(tmp_path, monkeypatch):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for p in (stash, pool):
        (p / "data/media/torrents/seeding").mkdir(parents=True)
    seed = stash / "data/media/torrents/seeding"
    files = [write(seed / f"t{i % 3}/{i}.bin", b"%d" % i) for i in range(12)]
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool, scan={"mass_delete_min_paths": 3})
    cat = Catalog.open(cfg.catalog)
    scan_pool(cat, cfg.primary, cfg.scan)  # first scan: the Python walk, no memo
    scan_pool(cat, cfg.primary, cfg.scan)  # first rescan: builds the lines, leaves a memo
    cat.close()
    reads: list[int] = []
    real = Catalog.iter_find_lines

    def counting(self, *a, **k):
        reads.append(1)
        yield from real(self, *a, **k)

    def no_python_walk(*a, **k):
        raise AssertionError("the Python walk ran")

    monkeypatch.setattr(Catalog, "iter_find_lines", counting)
    monkeypatch.setattr(scanner, "_python_walk", no_python_walk)
    yield cfg, files, reads, monkeypatch


def _rescan(cfg):
    """A rescan as `qbhook scan` runs it: a new Catalog (new connection, no in-process memo)."""
    cat = Catalog.open(cfg.catalog)
    try:
        r = scan_pool(cat, cfg.primary, cfg.scan)
        return (r.files_seen, r.added, r.changed, r.removed)
    finally:
        cat.close()


def _nlink(cfg, path) -> int:
    cat = Catalog.open(cfg.catalog)
    try:
        return cat.inode_by_path(path).nlink
    finally:
        cat.close()


def _memo_blob(cfg) -> bytes:
    with sqlite3.connect(cfg.catalog) as c:
        return c.execute("SELECT memo FROM scan_memos").fetchone()[0]


def _set_memo_blob(cfg, blob) -> None:
    with sqlite3.connect(cfg.catalog) as c:
        c.execute("UPDATE scan_memos SET memo = ?", (blob,))


def test_a_new_process_reuses_the_memo_of_an_unchanged_pool(env):
    cfg, _files, reads, _mp = env
    assert _rescan(cfg) == (12, 0, 0, 0) and reads == []
    assert _rescan(cfg) == (12, 0, 0, 0) and reads == []


def test_a_change_on_disk_is_seen_with_a_valid_memo(env, tmp_path):
    # A link made outside the pool moves the file's link count and ctime only: find's output
    # differs, so the memo is not used, and the rescan records the new count.
    cfg, files, reads, _mp = env
    os.link(files[5], tmp_path / "elsewhere.bin")
    assert _rescan(cfg) == (12, 0, 1, 0) and reads
    assert _nlink(cfg, files[5]) == 2
    reads.clear()
    assert _rescan(cfg) == (12, 0, 0, 0) and reads == []  # the new memo after that rescan's write


def test_a_write_by_another_connection_makes_the_memo_stale(env):
    # The disk is unchanged, so find prints exactly what the memo describes; only the write
    # generation tells that the catalog rows are no longer what matched it.
    cfg, files, reads, _mp = env
    with sqlite3.connect(cfg.catalog) as other:  # a bare connection: the triggers are the database's
        other.execute("UPDATE inodes SET nlink = 7")
    assert _rescan(cfg) == (12, 0, 12, 0) and reads
    assert _nlink(cfg, files[0]) == 1


def test_a_write_by_another_process_makes_the_memo_stale(env):
    cfg, files, reads, _mp = env
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('DELETE FROM paths WHERE path = ?', (sys.argv[2].encode(),)); c.commit()"
    )
    subprocess.run([sys.executable, "-c", script, str(cfg.catalog), str(files[3])], check=True)
    assert _rescan(cfg) == (12, 1, 0, 0) and reads


def test_a_rolled_back_write_leaves_the_generation_and_the_memo(env):
    cfg, _files, reads, _mp = env
    cat = Catalog.open(cfg.catalog)
    before = cat.generation()
    cat.conn.execute("BEGIN IMMEDIATE")
    cat.conn.execute("UPDATE inodes SET nlink = nlink + 1")
    assert cat.generation() > before  # visible inside the transaction ...
    cat.conn.execute("ROLLBACK")
    assert cat.generation() == before  # ... and gone with it
    cat.close()
    assert _rescan(cfg) == (12, 0, 0, 0) and reads == []


def test_writes_that_a_rescan_does_not_compare_leave_the_generation(env):
    cfg, _files, reads, _mp = env
    cat = Catalog.open(cfg.catalog)
    before = cat.generation()
    with cat.conn:
        cat.conn.execute("UPDATE inodes SET hash = x'00', sample = x'01', seen_scan = 99")
        cat.conn.execute("UPDATE filesystems SET last_seen = 1")
        cat.conn.execute("UPDATE paths SET seen_scan = 99")
    assert cat.generation() == before
    with cat.conn:
        cat.conn.execute("UPDATE filesystems SET dev = dev + 1")
    assert cat.generation() == before + 1
    cat.close()


def test_a_write_during_the_rescan_is_not_covered_by_its_memo(env):
    # Another process writes after the rescan read the catalog's lines: that rescan must not
    # save a memo at a generation that includes a write it never compared.
    cfg, files, reads, mp = env
    os.utime(files[0], ns=(1, 1))  # something to compare, so the lines are read
    real = Catalog.iter_find_lines
    wrote: list[int] = []

    def write_meanwhile(self, *a, **k):
        yield from real(self, *a, **k)
        if not wrote:  # after the first read only
            wrote.append(1)
            with sqlite3.connect(cfg.catalog) as other:
                other.execute("UPDATE inodes SET nlink = 9")

    mp.setattr(Catalog, "iter_find_lines", write_meanwhile)
    assert sum(_rescan(cfg)[1:3]) == 1 and wrote  # the file touched above is written
    # The touched file too: its row was rewritten after the walk loaded it, so that rescan left it.
    assert _rescan(cfg) == (12, 0, 12, 0)  # the nlink=9 rows are corrected, not trusted
    assert _nlink(cfg, files[4]) == 1


def test_a_remount_that_gives_the_device_to_another_filesystem_is_not_trusted(env):
    # Same st_dev, same bytes from find, but the device is now another filesystem (a replica
    # mounted in place): the memo's devices are checked against the filesystem's identity.
    cfg, files, reads, mp = env
    real = fsid_mod.identify

    def replica(path=None, **k):
        ident = real(path, **k)
        return dataclasses.replace(ident, fsid=ident.fsid + "-replica")

    mp.setattr(fsid_mod, "identify", replica)
    mp.setattr(scanner, "_python_walk", _PYTHON_WALK)  # where the find path must hand over
    assert _rescan(cfg) == (12, 0, 12, 0)  # every file now belongs to the other filesystem
    cat = Catalog.open(cfg.catalog)
    assert cat.fsid(cat.inode_by_path(files[0]).fs).endswith("-replica")
    cat.close()


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "flipped digest", "other version", "wrong type", "empty", "not bytes"],
)
def test_a_damaged_memo_falls_back_to_reading_the_catalog(env, damage):
    cfg, files, reads, _mp = env
    blob = _memo_blob(cfg)
    body = blob[:-32]
    at = body.index(b'"digest":"') + len(b'"digest":"')
    flipped = body[:at] + (b"1" if body[at : at + 1] == b"0" else b"0") + body[at + 1 :] + blob[-32:]

    def signed(b: bytes) -> bytes:
        return b + blake3.blake3(b).digest()

    bad = {
        "garbage": os.urandom(len(blob)),
        "truncated": blob[: len(blob) // 2],
        "flipped digest": flipped,  # the checksum no longer matches
        "other version": signed(body.replace(b'"v":1', b'"v":99')),
        "wrong type": signed(body.replace(b'"lines":12', b'"lines":"12"')),
        "empty": b"",
        "not bytes": "text",
    }[damage]
    _set_memo_blob(cfg, bad)
    os.utime(files[2], ns=(5, 5))  # a change the fallback must find
    assert _rescan(cfg) == (12, 0, 1, 0) and reads
    reads.clear()
    assert _rescan(cfg) == (12, 0, 0, 0) and reads == []  # rewritten by that rescan


def test_a_memo_of_another_find_command_is_not_used(env):
    cfg, _files, reads, _mp = env
    cfg2 = dataclasses.replace(cfg, scan=dataclasses.replace(cfg.scan, ignore_names=("x",)))
    assert _rescan(cfg2) == (12, 0, 0, 0) and reads


def test_a_subtree_scan_walks_in_python_and_leaves_the_pools_memo_as_it_was(env):
    """A subtree is never walked by find (R52: find is handed a path string, and a folder above
    the subtree swapped for a symlink while it walked sent it outside): the Python walk, and no
    write, so the pool's memo still holds."""
    cfg, files, reads, mp = env
    sub = os.path.dirname(files[0])
    real_start, no_python_walk = findwalk.start_find, scanner._python_walk
    mp.setattr(scanner, "_python_walk", _PYTHON_WALK)
    mp.setattr(findwalk, "start_find", lambda *a: pytest.fail("find started for a subtree"))
    cat = Catalog.open(cfg.catalog)
    try:
        r = scan_pool(cat, cfg.primary, cfg.scan, subtree=sub)
        assert (r.files_seen, r.added, r.changed, r.removed) == (4, 0, 0, 0)
    finally:
        cat.close()
    mp.setattr(findwalk, "start_find", real_start)
    mp.setattr(scanner, "_python_walk", no_python_walk)
    assert _rescan(cfg) == (12, 0, 0, 0) and reads == []  # no write: the pool's memo holds


def test_the_migration_adds_the_generation_to_an_existing_catalog(tmp_path):
    path = tmp_path / "old.sqlite"
    old = catalog_at(path, 6)
    old.execute("INSERT INTO filesystems(fsid, kind, first_seen, last_seen) VALUES ('x', 'mount', 0, 0)")
    old.close()
    cat = Catalog(connect(path))
    assert cat.generation() == 0
    with cat.conn:
        cat.conn.execute("INSERT INTO inodes(fs, ino, size, mtime_ns, ctime_ns, nlink) VALUES (1, 2, 3, 4, 5, 1)")
        cat.conn.execute("INSERT INTO paths(path, inode, pool) VALUES (x'2f61', 1, 'p')")
    assert cat.generation() == 2
    cat.close()


# ---------------------------------------------------------------- several pools at once


@pytest.fixture
def two_pools(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    files = {}
    for name, root in (("stash", stash), ("pool", pool)):
        files[name] = [write(root / f"data/media/torrents/seeding/t/{i}.bin", b"%d" % i) for i in range(6)]
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool, scan={"mass_delete_min_paths": 3})
    cat = Catalog.open(cfg.catalog)
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    yield cfg, cat, files
    cat.close()


def test_scan_pools_starts_every_find_before_comparing_any(two_pools, monkeypatch, tmp_path):
    cfg, cat, files = two_pools
    events = []
    real_start, real_walk = findwalk.start_find, scanner._find_walk_run

    def start(pool, root, ignore):
        events.append(("start", pool))
        return real_start(pool, root, ignore)

    def walk(catalog, pool, *a):
        events.append(("compare", pool))
        return real_walk(catalog, pool, *a)

    monkeypatch.setattr(findwalk, "start_find", start)
    monkeypatch.setattr(scanner, "_find_walk_run", walk)
    monkeypatch.setattr(scanner, "_python_walk", _no_python_walk)
    os.link(files["pool"][2], tmp_path / "elsewhere.bin")  # one change, in the second pool
    results = scanner.scan_pools(cat, list(cfg.pools), cfg.scan)
    assert events == [("start", "stash"), ("start", "pool"), ("compare", "stash"), ("compare", "pool")]
    assert [(r.pool, r.files_seen, r.added, r.changed, r.removed) for r in results] == [
        ("stash", 6, 0, 0, 0),
        ("pool", 6, 0, 1, 0),
    ]
    assert cat.inode_by_path(files["pool"][2]).nlink == 2


def test_scan_pools_stops_at_a_refusal_and_stops_the_other_finds(two_pools, monkeypatch):
    cfg, cat, files = two_pools
    runs = []
    real_start = findwalk.start_find

    def start(pool, root, ignore):
        runs.append(real_start(pool, root, ignore))
        return runs[-1]

    monkeypatch.setattr(findwalk, "start_find", start)
    for f in files["stash"]:
        os.unlink(f)  # every file of the first pool gone: the mass-delete guard refuses
    with pytest.raises(scanner.MassDeleteRefused):
        scanner.scan_pools(cat, list(cfg.pools), cfg.scan)
    assert len(runs) == 2 and all(r.closed and r.proc.returncode is not None for r in runs)
    assert cat.conn.execute("SELECT count(*) FROM paths").fetchone()[0] == 12  # nothing dropped
    assert cat.conn.execute("SELECT count(*) FROM scans WHERE pool = 'pool'").fetchone()[0] == 1  # not rescanned


def _no_python_walk(*a, **k):
    raise AssertionError("the Python walk ran")
