"""Catalog.counts(since=counts_marked()): counts taken early are reported only while they hold.

`qbhook scan` counts the catalog while find walks and reports those counts after the scan when
nothing was written since. Each test writes one kind of change between the mark and the report
that a stale mark would miss, and requires the report to be a fresh count.
"""

from __future__ import annotations

import os

import pytest

from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from tests.helpers import make_config, write


@pytest.fixture
def env(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for p in (stash, pool):
        (p / "data/media/torrents/seeding").mkdir(parents=True)
    seed = stash / "data/media/torrents/seeding"
    files = [write(seed / f"t/{i}.bin", b"%d" % i) for i in range(4)]
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    cat = Catalog.open(cfg.catalog)
    scan_pool(cat, cfg.primary, cfg.scan)
    scan_pool(cat, cfg.primary, cfg.scan)  # leaves a rescan memo: the next rescan writes no row
    cat.close()
    cat = Catalog.open(cfg.catalog)
    yield cfg, cat, files
    cat.close()


def _hash_one(cat: Catalog, path) -> None:
    row = cat.inode_by_path(path)
    cat.store_hash(row.id, b"\1" * 32, os.stat(path))


def test_an_unchanged_rescan_reports_the_early_counts(env, monkeypatch):
    cfg, cat, _files = env
    mark = cat.counts_marked()
    r = scan_pool(cat, cfg.primary, cfg.scan)  # writes its scans row, nothing counted
    assert (r.added, r.changed, r.removed) == (0, 0, 0)
    monkeypatch.setattr(cat, "conn", _NoCounting(cat.conn))
    assert cat.counts(since=mark) == mark.counts == {**mark.counts, "paths": 4, "inodes": 4, "hashed": 0}


def test_a_hash_stored_by_another_connection_is_counted(env):
    # Hash writes do not move the write generation; data_version sees any other connection's commit.
    cfg, cat, files = env
    mark = cat.counts_marked()
    other = Catalog.open(cfg.catalog)
    _hash_one(other, files[0])
    other.close()
    assert cat.counts(since=mark)["hashed"] == 1


def test_a_change_this_connection_writes_is_counted(env):
    # data_version ignores this connection's own commits; the write generation sees them.
    cfg, cat, files = env
    mark = cat.counts_marked()
    write(os.path.dirname(files[0]) + "/new.bin", b"new")
    assert scan_pool(cat, cfg.primary, cfg.scan).added == 1
    assert cat.counts(since=mark)["paths"] == 5
    mark = cat.counts_marked()
    cat.forget_path(files[1])
    assert cat.counts(since=mark)["paths"] == 4


class _NoCounting:
    """A connection that answers the marks' reads only: any count would fail the test."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql, *a):
        assert "count(" not in sql and "sum(" not in sql, sql
        return self._conn.execute(sql, *a)


def test_a_failed_read_keeps_its_own_error_and_leaves_no_transaction(env, monkeypatch):
    """A read that fails after SQLite ended the transaction itself (an I/O error does): the
    caller sees that error, not "cannot commit - no transaction is active"."""
    import sqlite3

    _cfg, cat, _files = env

    def failing_counts():
        cat.conn.execute("ROLLBACK")  # what SQLite does on its own after SQLITE_IOERR
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(cat, "counts", failing_counts)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        cat.counts_marked()
    assert not cat.conn.in_transaction
