"""Migrations: every pending step in one transaction (one commit for a new catalog), atomically."""

import sqlite3

import pytest

from qbhook.catalog import db
from qbhook.catalog.db import migrate, migrations


def _raw(path):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    commits = []
    conn.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
    return conn, commits


def _tables(conn):
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_new_catalog_is_migrated_in_one_commit(tmp_path):
    conn, commits = _raw(tmp_path / "new.sqlite")
    assert migrate(conn) == len(migrations())
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())
    assert len(commits) == 1
    assert {"inodes", "paths", "dupes_memos"} <= _tables(conn)
    assert migrate(conn) == len(migrations()) and len(commits) == 1  # nothing pending: no transaction


@pytest.mark.parametrize("start", [0, 3])
def test_a_step_that_fails_leaves_the_version_it_started_from(tmp_path, monkeypatch, start):
    conn, _commits = _raw(tmp_path / "cat.sqlite")
    steps = migrations()
    for version in range(start):
        conn.executescript(steps[version])
        conn.execute(f"PRAGMA user_version = {version + 1}")
    before = _tables(conn)
    monkeypatch.setattr(db, "migrations", lambda: [*steps[:6], "CREATE TABLE broken (x"])
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == start
    assert _tables(conn) == before  # none of the steps after ``start`` is half-applied
