"""The kept dupes report (issue 13): reused only while no write could have changed it.

duplicates_report keeps its result in the catalog when computing it read no file, keyed by the
write generation, the content_writes counter and --min-size. Each test makes the kept report
wrong in a way a memo keyed on less would miss (another process's rescan, another process's
hash write that leaves the write generation alone, a result that depended on the clock, a
damaged blob), and requires the truth.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from qbhook.catalog import dupes
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from tests.helpers import b3, make_config, put
from tests.unit.catalog.old import catalog_at

SEED = "data/media/torrents/seeding"


@pytest.fixture
def env(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for p in (stash, pool):
        (p / SEED).mkdir(parents=True)
    x, y = os.urandom(50_000), os.urandom(50_000)  # one size: partials split them, full hashes decide
    put(stash / SEED / "A/a.bin", x)
    put(pool / SEED / "A/a.bin", x)
    put(stash / SEED / "B/b.bin", y)
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    cat = Catalog.open(cfg.catalog)
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    yield cfg, cat, stash, pool, x, y
    cat.close()


def _computed(cat, min_size=1) -> str:
    """The report as computed now, never from a kept one."""
    return dupes.report_text(dupes.report(dupes.find_duplicates(cat, settle_seconds=0, min_size=min_size)))


def _no_compute(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the report was computed, not reused")

    monkeypatch.setattr(dupes, "_find_duplicates", refuse)


def _another_process(cfg, code: str) -> None:
    """Run ``code`` in a new interpreter with ``cat`` (a Catalog) and ``cfg`` (the same config)."""
    prelude = (
        "from qbhook.catalog.store import Catalog\n"
        "from qbhook.catalog.scan import scan_pool\n"
        "from pathlib import Path\n"
        "from tests.helpers import make_config\n"
        f"cfg = make_config(Path({str(cfg.catalog)!r}), Path({str(cfg.pools[0].path)!r}), "
        f"Path({str(cfg.pools[1].path)!r}))\n"
        "cat = Catalog.open(cfg.catalog)\n"
    )
    subprocess.run([sys.executable, "-c", prelude + code + "\ncat.close()\n"], check=True, cwd=os.getcwd())


def _sets(text: str) -> list[tuple[str, int]]:
    import json

    return [(s["blake3"], len(s["copies"])) for s in json.loads(text)["sets"]]


def test_the_kept_report_is_the_computed_one_and_is_reused(env, monkeypatch):
    cfg, cat, stash, pool, x, y = env
    first = dupes.duplicates_report(cat, settle_seconds=0)  # reads files: hashes stored, nothing kept
    assert _sets(first) == [(b3(x), 2)]
    assert cat.conn.execute("SELECT count(*) FROM dupes_memos").fetchone()[0] == 0
    second = dupes.duplicates_report(cat, settle_seconds=0)  # read nothing: kept
    assert second == first == _computed(cat)
    other = Catalog.open(cfg.catalog)  # a new process's connection
    _no_compute(monkeypatch)
    try:
        assert dupes.duplicates_report(other, settle_seconds=0) == first
    finally:
        other.close()


def test_a_rescan_in_another_process_that_finds_a_copy_voids_the_kept_report(env, monkeypatch):
    cfg, cat, stash, pool, x, y = env
    dupes.duplicates_report(cat, settle_seconds=0)
    kept = dupes.duplicates_report(cat, settle_seconds=0)
    put(pool / SEED / "B/b.bin", y)
    _another_process(cfg, "scan_pool(cat, cfg.pools[1], cfg.scan)")
    now = dupes.duplicates_report(cat, settle_seconds=0)
    assert now != kept and sorted(_sets(now)) == sorted([(b3(x), 2), (b3(y), 2)])


def test_a_hash_written_by_another_process_voids_the_kept_report(env):
    """A hash or partial write leaves the write generation alone (so the rescan memo survives
    hashing); content_writes is what tells the kept report it is stale."""
    cfg, cat, stash, pool, x, y = env
    dupes.duplicates_report(cat, settle_seconds=0)
    kept = dupes.duplicates_report(cat, settle_seconds=0)
    assert _sets(kept) == [(b3(x), 2)]
    generation = cat.generation()
    a = cat.inode_by_path(stash / SEED / "A/a.bin").id
    # Another process stores another (still valid) hash for one copy: the set is gone.
    _another_process(cfg, f"cat.conn.execute('UPDATE inodes SET hash = zeroblob(32) WHERE id = {a}')")
    assert cat.generation() == generation  # a memo keyed on the generation alone would miss it
    now = dupes.duplicates_report(cat, settle_seconds=0)
    assert now == _computed(cat) and _sets(now) == []


def test_a_report_that_read_files_is_never_kept(env):
    """Files still settling are read but not hashed for good: that report depends on the clock
    (and the disk), so a later run must compute again and see the set once they settle."""
    cfg, cat, stash, pool, x, y = env
    assert _sets(dupes.duplicates_report(cat, settle_seconds=3600)) == []
    assert _sets(dupes.duplicates_report(cat, settle_seconds=3600)) == []
    assert cat.conn.execute("SELECT count(*) FROM dupes_memos").fetchone()[0] == 0
    assert _sets(dupes.duplicates_report(cat, settle_seconds=0)) == [(b3(x), 2)]


def test_each_min_size_has_its_own_report(env, monkeypatch):
    cfg, cat, stash, pool, x, y = env
    put(stash / SEED / "S/s1.bin", b"tiny")
    put(pool / SEED / "S/s2.bin", b"tiny")
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    for _ in range(2):
        every = dupes.duplicates_report(cat, settle_seconds=0)
        big = dupes.duplicates_report(cat, settle_seconds=0, min_size=1000)
    assert sorted(_sets(every)) == sorted([(b3(x), 2), (b3(b"tiny"), 2)]) and _sets(big) == [(b3(x), 2)]
    _no_compute(monkeypatch)
    assert dupes.duplicates_report(cat, settle_seconds=0) == every
    assert dupes.duplicates_report(cat, settle_seconds=0, min_size=1000) == big


def test_a_damaged_kept_report_is_recomputed(env):
    cfg, cat, stash, pool, x, y = env
    dupes.duplicates_report(cat, settle_seconds=0)
    good = dupes.duplicates_report(cat, settle_seconds=0)
    with sqlite3.connect(cfg.catalog) as c:
        blob = c.execute("SELECT report FROM dupes_memos").fetchone()[0]
        c.execute("UPDATE dupes_memos SET report = ?", (blob[:-5] + bytes(5),))
    assert dupes.duplicates_report(cat, settle_seconds=0) == good == _computed(cat)


def test_a_report_is_kept_only_at_the_counters_it_was_computed_at(env):
    """The counters are read again in the writing transaction: a write that landed while the
    report was computed (here: a stamp older than the catalog's) means it may describe neither
    state, and it is not kept."""
    cfg, cat, stash, pool, x, y = env
    now = dupes._stamp(cat.conn)
    with sqlite3.connect(cfg.catalog) as c:  # another connection renames a filesystem's fsid
        c.execute("UPDATE filesystems SET fsid = fsid || '-renamed' WHERE id = 1")
    assert dupes._stamp(cat.conn) == (now[0], now[1] + 1)
    dupes._keep_report(cat.conn, 1, now, "stale")
    assert cat.conn.execute("SELECT count(*) FROM dupes_memos").fetchone()[0] == 0
    dupes._keep_report(cat.conn, 1, dupes._stamp(cat.conn), "fresh")
    assert dupes._kept_report(cat.conn, 1, dupes._stamp(cat.conn)) == "fresh"


def test_a_busy_catalog_gets_the_report_at_once_and_keeps_none(env):
    """Keeping the report is the only write a warm run makes: while another connection holds
    the write lock it is skipped at once (not after the 60 s busy wait), and the report is
    the same; the connection's busy wait is left as it was."""
    cfg, cat, stash, pool, x, y = env
    dupes.duplicates_report(cat, settle_seconds=0)  # hashes stored: the next run reads nothing
    other = sqlite3.connect(cfg.catalog, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        text = dupes.duplicates_report(cat, settle_seconds=0)
        assert time.monotonic() - started < 5
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert text == _computed(cat) and _sets(text) == [(b3(x), 2)]
    assert cat.conn.execute("SELECT count(*) FROM dupes_memos").fetchone()[0] == 0
    assert cat.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 60000


def test_migration_9_adds_the_content_counter_to_an_existing_catalog(tmp_path):
    """A catalog at version 7 (through migrations 8 and 9) gains content_writes (from 0) and dupes_memos; a hash written
    afterwards moves the counter, a stat-only write moves only the write generation."""
    from qbhook.catalog.db import connect

    path = tmp_path / "old.sqlite"
    old = catalog_at(path, 7)
    old.execute("INSERT INTO filesystems(fsid, kind, first_seen, last_seen) VALUES ('x', 'mount', 0, 0)")
    old.execute("INSERT INTO inodes(fs, ino, size, mtime_ns, ctime_ns, nlink) VALUES (1, 2, 3, 4, 5, 1)")
    old.execute("INSERT INTO paths(path, inode, pool) VALUES (x'2f61', 1, 'p')")  # an inode has a path (migration 11)
    old.close()
    cat = Catalog(connect(path))
    try:
        generation, content = dupes._stamp(cat.conn)
        assert content == 0
        cat.conn.execute("UPDATE inodes SET hash = x'00', hash_size = 3, hash_mtime_ns = 4, hash_ctime_ns = 5")
        assert dupes._stamp(cat.conn) == (generation, 1)
        cat.conn.execute("UPDATE inodes SET nlink = 2")
        assert dupes._stamp(cat.conn) == (generation + 1, 1)
        assert cat.conn.execute("SELECT count(*) FROM dupes_memos").fetchone()[0] == 0
    finally:
        cat.close()
