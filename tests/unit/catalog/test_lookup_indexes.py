"""Lookups that grew with the catalog or with time use an index (schema.LOOKUP_INDEXES_DDL).

Each test runs the real query (captured with SQLite's trace callback, values inlined) and asks
SQLite for its plan: a ``SCAN`` of the table is the read of every row these indexes remove.
``scans`` gains two rows per sweep forever; ``inodes`` holds every file of both pools.
"""

from __future__ import annotations

import time

import pytest

from qbhook.catalog.queries import last_full_scan_age
from qbhook.catalog.store import Catalog
from qbhook.events import worker
from tests.helpers import make_config
from tests.unit.catalog.test_torrent_index import _plans_of


@pytest.fixture
def bed(tmp_path):
    cfg = make_config(tmp_path / "cat.sqlite", tmp_path / "stash", tmp_path / "pool")
    cat = Catalog.open(cfg.catalog)
    now = time.time()
    with cat.conn:
        for i in range(200):  # a history of sweeps: two finished scans each
            for p in cfg.pools:
                cat.conn.execute(
                    "INSERT INTO scans(pool, root, started_at, finished_at, status) VALUES (?, ?, ?, ?, 'ok')",
                    (p.name, str(p.path).encode(), now - 1000 + i, now - 999 + i),
                )
    yield cfg, cat
    cat.close()


def _traced(cat, fn):
    statements: list[str] = []
    cat.conn.set_trace_callback(statements.append)
    try:
        out = fn()
    finally:
        cat.conn.set_trace_callback(None)
    return out, statements


def test_last_full_scan_age_searches_the_scans_index(bed):
    cfg, cat = bed
    age, statements = _traced(cat, lambda: last_full_scan_age(cat, cfg.pools))
    assert age is not None and 799 < age < 900  # the newest of the 200: finished 800 s ago
    plans = _plans_of(cat, [q for q in statements if "FROM scans" in q])
    assert plans and all("scans_ok_pool_root" in p for p in plans), plans


def test_the_sweeps_scan_mark_searches_only_unfinished_scans(bed):
    _cfg, cat = bed
    cat.conn.execute("INSERT INTO scans(pool, root, started_at) VALUES ('stash', x'00', ?)", (time.time(),))
    running = cat.conn.execute("SELECT max(id) FROM scans").fetchone()[0]
    mark, statements = _traced(cat, lambda: worker._scan_mark(cat.conn))
    assert mark == running - 1
    plans = _plans_of(cat, [q for q in statements if "finished_at IS NULL" in q])
    assert plans and all("scans_unfinished" in p for p in plans), plans


def test_did_anything_change_since_the_last_plan_is_two_index_searches(bed):
    """The sweep's first question about files (``_changed_files``): with nothing recorded or
    hashed since the last plan it must not read every inode to say so."""
    _cfg, cat = bed
    with cat.conn:
        fs = cat.conn.execute(
            "INSERT INTO filesystems(fsid, kind, first_seen, last_seen) VALUES ('t', 'mount', 0, 0)"
        ).lastrowid
        cat.conn.executemany(
            "INSERT INTO inodes(fs, ino, size, mtime_ns, ctime_ns, nlink, seen_scan, hashed_at) "
            "VALUES (?, ?, 1, 1, 1, 1, 1, 1.0)",
            [(fs, i) for i in range(500)],
        )
    memo = worker._ReplanMemo(scan_mark=10**6)
    (changed, same_size), statements = _traced(cat, lambda: worker._changed_files(cat.conn, memo))
    assert changed == set() and same_size == set()
    exists = [q for q in statements if "EXISTS (SELECT 1 FROM inodes" in q]
    plans = _plans_of(cat, exists)
    assert any("inodes_seen_scan" in p for p in plans) and any("inodes_hashed_at" in p for p in plans), plans
    assert not [p for p in plans if p.startswith("SCAN inodes")], plans
