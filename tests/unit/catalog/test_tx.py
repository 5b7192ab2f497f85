"""A transaction that fails ends cleanly and keeps the error that made it fail (``catalog.db.Tx``).

Two ways SQLite refuses a transaction, each made real here rather than simulated:

- a refused COMMIT (a deferred foreign key violation) leaves SQLite inside the transaction:
  left there, the connection's next BEGIN fails, and a job queue sharing it refuses every call;
- a full disk (``PRAGMA max_page_count`` at the file's current size) makes SQLite roll back by
  itself: a ROLLBACK then raises "cannot rollback - no transaction is active", which must not
  replace "database or disk is full" (exit 74, not 1).
"""

from __future__ import annotations

import sqlite3

import pytest

from qbhook.catalog import db
from qbhook.catalog.db import Tx, connect, migrate
from qbhook.events.model import Event
from qbhook.events.queue import JobQueue


@pytest.fixture
def conn(tmp_path):
    c = connect(tmp_path / "catalog.sqlite")
    yield c
    c.close()


def _orphan_path(c: sqlite3.Connection) -> None:
    """A paths row naming an inode that does not exist, its check deferred to COMMIT."""
    c.execute("PRAGMA defer_foreign_keys = ON")  # lasts until this transaction ends
    c.execute("INSERT INTO paths (path, inode, pool) VALUES (x'2f61', 424242, 'stash')")


def _disk_full_now(c: sqlite3.Connection) -> None:
    """Writes that need a new page now fail with "database or disk is full"."""
    pages = c.execute("PRAGMA page_count").fetchone()[0]
    assert c.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0] == pages


def _fill(c: sqlite3.Connection) -> None:
    # Rows of an indexed table, one statement each: SQLite answers this full disk by rolling
    # the transaction back itself (see the migration test).
    for i in range(200):
        c.execute("INSERT INTO state (key, value, updated_at) VALUES (?, ?, 0)", (f"k{i}", "x" * 2000))


def test_a_refused_commit_rolls_back_and_the_connection_keeps_working(conn):
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"), Tx(conn) as c:
        _orphan_path(c)
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM paths").fetchone()[0] == 0  # nothing half-written
    # serve's worker: its queue shares the connection and refuses to work inside a transaction.
    job_id, _ = JobQueue(conn).enqueue(Event("qbittorrent", "torrent_added", hashes=("1" * 40,)))
    assert JobQueue(conn).get(job_id).state == "pending"
    with Tx(conn) as c:  # and the next transaction commits
        c.execute("INSERT INTO state (key, value, updated_at) VALUES ('k', 'v', 0)")
    assert conn.execute("SELECT value FROM state WHERE key = 'k'").fetchone() == ("v",)


def test_a_full_disk_is_the_error_raised_not_the_rollback_that_followed(conn):
    _disk_full_now(conn)
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"), Tx(conn) as c:
        _fill(c)
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM state").fetchone()[0] == 0


def test_an_error_in_the_block_rolls_back_and_is_raised_unchanged(conn):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), Tx(conn) as c:
        c.execute("INSERT INTO state (key, value, updated_at) VALUES ('k', 'v', 0)")
        raise Boom
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM state").fetchone()[0] == 0


def test_a_migration_step_on_a_full_disk_fails_with_that_error_and_changes_nothing(conn, monkeypatch):
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    # Rows of an indexed table, one statement each: a full disk there is one SQLite rolls back
    # itself (after a bulk INSERT into a new table, or a schema change, it does not).
    step = "".join(
        f"INSERT INTO state (key, value, updated_at) VALUES ('k{i}', '{'x' * 2000}', 0);\n" for i in range(200)
    )
    monkeypatch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, step])
    _disk_full_now(conn)
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        migrate(conn)
    assert not conn.in_transaction
    assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    assert conn.execute("SELECT count(*) FROM state").fetchone()[0] == 0


def test_a_migration_step_whose_commit_is_refused_changes_nothing(conn, monkeypatch):
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    step = "PRAGMA defer_foreign_keys = ON;\nINSERT INTO paths (path, inode, pool) VALUES (x'2f61', 424242, 'stash');\n"
    monkeypatch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, step])
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        migrate(conn)
    assert not conn.in_transaction
    assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    assert conn.execute("SELECT count(*) FROM paths").fetchone()[0] == 0


def test_a_transaction_costs_begin_and_commit_and_nothing_more(conn):
    """Tx is on every hot path: rolling back on a refused COMMIT must add no statement."""
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    with Tx(conn) as c:
        c.execute("INSERT INTO state (key, value, updated_at) VALUES ('k', 'v', 0)")
    with pytest.raises(ZeroDivisionError), Tx(conn) as c:
        c.execute("INSERT INTO state (key, value, updated_at) VALUES ('j', 'v', 0)")
        1 / 0  # noqa: B018
    conn.set_trace_callback(None)
    assert [s.split()[0] for s in seen] == ["BEGIN", "INSERT", "COMMIT", "BEGIN", "INSERT", "ROLLBACK"]
