"""Migrations: every pending step in one transaction (one commit for a new catalog), atomically."""

import sqlite3

import pytest

from qbhook.catalog import db
from qbhook.catalog.db import migrate, migrations
from tests.unit.catalog.old import catalog_at


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


def test_migration_11_removes_the_rows_of_files_outside_every_pool(tmp_path):
    """A catalog at version 10 holding what older versions wrote for a torrent saved outside every
    pool (pool '?'): those paths go, with every inode left without a path; an inode that also
    has a pool's path keeps it; the write generation moves, so no memo over those rows holds."""
    from qbhook.catalog.store import Catalog

    path = tmp_path / "old.sqlite"
    old = catalog_at(path, 10)
    old.execute("INSERT INTO filesystems(fsid, kind, first_seen, last_seen) VALUES ('x', 'mount', 0, 0)")
    for ino in (1, 2, 3):
        old.execute(
            f"INSERT INTO inodes(id, fs, ino, size, mtime_ns, ctime_ns, nlink) VALUES ({ino}, 1, {ino}, 3, 4, 5, 1)"
        )
    rows = [
        (b"/stash/seed/a", 1, "stash"),
        (b"/elsewhere/b", 2, "?"),
        (b"/elsewhere/c", 3, "?"),
        (b"/stash/lib/c", 3, "stash"),
    ]
    old.executemany("INSERT INTO paths(path, inode, pool) VALUES (?, ?, ?)", rows)
    before = old.execute("SELECT n FROM catalog_writes").fetchone()[0]
    old.close()
    cat = Catalog(db.connect(path))
    try:
        assert cat.conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())
        assert sorted(cat.conn.execute("SELECT path, inode, pool FROM paths")) == [
            (b"/stash/lib/c", 3, "stash"),
            (b"/stash/seed/a", 1, "stash"),
        ]
        assert [r[0] for r in cat.conn.execute("SELECT id FROM inodes ORDER BY id")] == [1, 3]
        assert cat.generation() > before
    finally:
        cat.close()


def test_migration_12_keys_the_sharers_left_stopped_and_drops_one_seen_running(tmp_path):
    """A catalog at version 11 whose relocate steps kept, in their args, the sharers they left
    stopped (``_left_stopped``; one since started, cleared to ``{}``): the records move to the
    keyed table, the newest per torrent, and the journal reads them there. The torrent index
    writing a running state for one drops its record; a stopped state or a transition keeps it."""
    import json

    from qbhook.move.journal import Journal

    path = tmp_path / "old.sqlite"
    old = catalog_at(path, 11)
    old.execute("INSERT INTO runs(id, started_at, status, plan) VALUES (1, 0, 'done', '{}')")
    steps = [
        (1, {"instance": "qbt", "torrent": "h1", "_left_stopped": {"aa": True, "bb": False}}),
        (2, {"instance": "qbt", "torrent": "h3", "_left_stopped": {"aa": False}}),
        (3, {"instance": "qbt", "torrent": "h4", "_left_stopped": {}}),
        (4, {"instance": "other", "torrent": "h5", "_left_stopped": {"CC": True}}),
        (5, {"instance": "qbt", "torrent": "h6"}),
    ]
    old.executemany(
        "INSERT INTO steps(id, run, seq, group_id, kind, args, status, started_at) "
        "VALUES (?, 1, ?, 'g', 'relocate', ?, 'done', ?)",
        [(i, i, json.dumps(a), 100.0 + i) for i, a in steps],
    )
    old.close()
    conn = db.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())
        assert sorted(conn.execute("SELECT instance, hash, forced, step_id FROM left_stopped")) == [
            ("other", "cc", 1, 4),
            ("qbt", "aa", 0, 2),
            ("qbt", "bb", 0, 1),
        ]
        j = Journal(conn)
        assert (j.stopped_by_us("qbt", "AA"), j.stopped_by_us("other", "cc"), j.stopped_by_us("qbt", "cc")) == (
            False,
            True,
            None,
        )
        row = "INSERT INTO torrents(instance, hash, state, first_seen, last_seen) VALUES (?, ?, ?, 0, 0)"
        conn.execute(row, ("qbt", "aa", "stoppedUP"))
        conn.execute(row, ("qbt", "bb", "checkingResumeData"))
        conn.execute(row, ("other", "cc", "stalledUP"))  # seen running: a person started it
        assert (j.stopped_by_us("qbt", "aa"), j.stopped_by_us("qbt", "bb"), j.stopped_by_us("other", "cc")) == (
            False,
            False,
            None,
        )
        conn.execute("UPDATE torrents SET state = 'queuedUP' WHERE hash = 'aa'")
        assert j.stopped_by_us("qbt", "aa") is None and j.stopped_by_us("qbt", "bb") is False
        j.forget_stopped("qbt", "bb")
        assert conn.execute("SELECT count(*) FROM left_stopped").fetchone()[0] == 0
    finally:
        conn.close()


def test_a_record_migration_12_moved_and_qbhook_later_dropped_is_not_brought_back(tmp_path):
    """Migration 12 copied the sharers left stopped out of the steps' args and left the args as
    they were. A record dropped since (the torrent seen running: a person started it) must stay
    dropped: read from the args again, a torrent the person later stopped on purpose would be
    started, forced if it had been, at its next relocation (R20 against a migration that moved
    the args to the table once more)."""
    import json

    from qbhook.move.journal import Journal

    path = tmp_path / "old.sqlite"
    old = catalog_at(path, 13)
    old.execute("INSERT INTO runs(id, started_at, status, plan) VALUES (1, 0, 'done', '{}')")
    args = {"instance": "qbt", "torrent": "h0", "_left_stopped": {"aabb": True}}
    old.execute(
        "INSERT INTO steps(id, run, seq, group_id, kind, args, status, started_at) "
        "VALUES (6, 1, 6, 'g', 'relocate', ?, 'done', 106)",
        (json.dumps(args),),
    )
    old.close()  # the table holds no record: dropped when the torrent was seen running
    conn = db.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())
        assert conn.execute("SELECT count(*) FROM left_stopped").fetchone()[0] == 0
        assert Journal(conn).stopped_by_us("qbt", "AABB") is None
    finally:
        conn.close()


def test_migration_12s_running_states_are_the_python_rules():
    """The left_stopped triggers spell out ``TorrentInfo.is_running``'s states (a migration's text
    is frozen): a change to the rule needs a new migration replacing the triggers, or a record of a
    torrent seen running stays (or goes) when the executor's own look would decide otherwise."""
    import re

    from qbhook.catalog.schema import LEFT_STOPPED_DDL
    from qbhook.clients.model import CHECKING_STATES, STABLE_STATES, TorrentInfo
    from qbhook.pathmap import PathMap

    lists = re.findall(r"WHEN new\.state IN \(([^)]*)\)", LEFT_STOPPED_DDL)
    assert len(lists) == 2  # the insert's trigger and the update's
    in_sql = [set(re.findall(r"'([^']*)'", ls)) for ls in lists]
    others = {"moving", "error", "missingFiles", "metaDL", "forcedMetaDL", "allocating", "unknown"}
    states = STABLE_STATES | CHECKING_STATES | others | set().union(*in_sql)

    def running(state: str) -> bool:
        return TorrentInfo.from_api({"hash": "a" * 40, "state": state}, PathMap(), "qbt").is_running

    assert in_sql[0] == in_sql[1] == {s for s in states if running(s)}


# What 22fb3d9's migration 8 made (content_writes with its triggers, and dupes_memos) and what
# 0750fe6's and ada4fce's made instead of content_writes: the statements that differ from today's.
_M8_22FB3D9 = """
CREATE TABLE content_writes (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
INSERT INTO content_writes(id, n) VALUES (1, 0);
CREATE TRIGGER content_writes_inodes_update AFTER UPDATE ON inodes
WHEN old.hash IS NOT new.hash BEGIN UPDATE content_writes SET n = n + 1 WHERE id = 1; END;
CREATE TABLE dupes_memos (
    min_size INTEGER PRIMARY KEY, writes INTEGER NOT NULL, content INTEGER NOT NULL,
    format TEXT NOT NULL, report BLOB NOT NULL
);
"""
_M8_0750FE6 = """
CREATE TABLE catalog_hash_writes (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
INSERT INTO catalog_hash_writes(id, n) VALUES (1, 0);
CREATE TRIGGER catalog_hash_writes_update AFTER UPDATE ON inodes
WHEN old.hash IS NOT new.hash BEGIN UPDATE catalog_hash_writes SET n = n + 1 WHERE id = 1; END;
CREATE INDEX scans_ok_pool_root ON scans(pool, root, finished_at) WHERE status = 'ok';
CREATE INDEX inodes_hashed_at ON inodes(hashed_at);
"""


@pytest.mark.parametrize(("migration_8", "version"), [(_M8_22FB3D9, 8), (_M8_0750FE6, 13)])
def test_a_catalog_of_an_edited_migration_8_is_repaired(tmp_path, migration_8, version):
    """R17: a catalog made by 22fb3d9 (at 8) failed migration 9, "table dupes_memos already
    exists"; one made by 0750fe6 or ada4fce reached 13 without content_writes, and every dupes
    and torrent-index query then failed. Both open at the newest version in today's shape: the
    counter moves on a hash write, the old one is gone (an inode update still works), the lookup
    indexes exist, inodes_hashed_at holds hashed inodes only, and the kept mark and reports go."""
    path = tmp_path / "old.sqlite"
    old = catalog_at(path, 7)
    old.executescript(migration_8)
    for step in range(8, version):
        old.executescript(migrations()[step])
    old.execute(f"PRAGMA user_version = {version}")
    old.execute("INSERT INTO filesystems(id, fsid, kind, first_seen, last_seen) VALUES (1, 'x', 'mount', 0, 0)")
    old.execute("INSERT INTO inodes(id, fs, ino, size, mtime_ns, ctime_ns, nlink) VALUES (1, 1, 1, 3, 4, 5, 1)")
    old.execute("INSERT INTO paths(path, inode, pool) VALUES (x'2f61', 1, 'stash')")  # kept by migration 11
    old.execute("INSERT INTO state(key, value, updated_at) VALUES ('index.refresh_mark', '[\"writes\", 1, 0]', 0)")
    old.execute("INSERT INTO dupes_memos VALUES (0, 1, 0, 'old', x'00')")
    old.close()
    conn = db.connect(path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())
        assert "catalog_hash_writes" not in names and "catalog_hash_writes_update" not in names
        assert {"content_writes_filesystems_update", "scans_unfinished", "torrents_save_path"} <= names
        conn.execute("UPDATE inodes SET hash = x'01', hashed_at = 1 WHERE id = 1")
        assert conn.execute("SELECT n FROM content_writes").fetchone()[0] == 1
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'inodes_hashed_at'").fetchone()[0]
        assert sql.endswith("WHERE hashed_at IS NOT NULL")
        assert conn.execute("SELECT count(*) FROM state WHERE key = 'index.refresh_mark'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM dupes_memos").fetchone()[0] == 0
        fresh = db.connect(tmp_path / "fresh.sqlite")
        try:
            want = "SELECT sql FROM sqlite_master WHERE name = 'content_writes_inodes_update'"
            assert conn.execute(want).fetchone() == fresh.execute(want).fetchone()  # 22fb3d9's: hash writes only
        finally:
            fresh.close()
    finally:
        conn.close()


def test_the_repair_of_migration_8_changes_no_row_of_a_catalog_made_right(tmp_path):
    """On a catalog whose migration 8 is today's, the repair keeps the torrent index's refresh
    mark and the dupes reports (R20: it dropped both on every catalog: one full index refresh
    and one dupes recomputation each, for nothing)."""
    path = tmp_path / "good.sqlite"
    old = catalog_at(path, len(migrations()) - 1)
    old.execute("INSERT INTO state(key, value, updated_at) VALUES ('index.refresh_mark', '[\"writes\", 1, 0]', 0)")
    old.execute("INSERT INTO dupes_memos VALUES (0, 1, 0, 'text', x'00')")
    old.close()
    conn = db.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())
        assert conn.execute("SELECT count(*) FROM state WHERE key = 'index.refresh_mark'").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM dupes_memos").fetchone()[0] == 1
    finally:
        conn.close()


# sha256 of each shipped MIGRATIONS[i]'s text, frozen. Entry 8 (DUPES_MEMO_DDL) is its text since
# it became CREATE TABLE IF NOT EXISTS (migration 14's repair), harmless to every catalog it ran on.
_SHIPPED = (
    "d53fdb566fe4cfa8c7bfd921ac303e4beef3c68b84e7181abe1673eb9319bd9e",
    "c9d153c0f5d641e833fd268fd972315b93b26204907e3ef8a1fafe50114f2688",
    "7932ec75ab677468263ee74d97fca5083e7fad9d656a886714c7965af83d069f",
    "5d1cf5a763f9abef87bd176c559dde82ac8895833a61f9066444240060025e0f",
    "3cd8439a4a9d91b436106adc45dbd65b4e4f196d5dc327c9894ca0f460b01ab5",
    "96f01f1c6cdeaf090f80033a3af5aba83da0c6b4df96c5fbf7fc01801bf04a1f",
    "9d18a605a112627890adf5d07d380472151fdabd34222812820bb6407d6af39c",
    "c930017e4c607d01d7ab1216607c38eb81a948365ffd655478ec62e17a1c06fa",
    "2bcfa6993adb10ef4eab323fd3fcc5dc50305db264fca28e4721c2d2e1a9c02e",
    "c340e8cbf22e82df6b6585911698f395c9ce8876c2085f700a7fca416b655573",
    "8813f57ec3ed2212dafbc9da6ed8b41f46f2bbc8c86e3c4404b62ded77dfb129",
    "48ea4e8b9d7ccc456c6bfb4a3fdcf0747bfd50b6847cee87d4d22895f111d74c",
    "567a568cfa9299c16fb61626361f9e45cfc26b0025328ddc047532776c171536",
    "f2c517be720e870ea52bac394d4ed493e21b03be2ca9ef836e9ba8c3adf4c554",
    "1e112755e9c95bf82a0fc6623407689abf51efe3306ba09fc9c0fe4a31ed6af7",
    "0144a0178a04f371d8268223a1875d9a94ec955eb4a4b99e5a7787f91a214111",
    "d9278617e8c2f6ee8b28a3cbc427998b5e25079eec8f5ee313c4dc704c2b4fd2",
)


def test_no_shipped_migration_is_edited():
    """A catalog that ran a migration never runs its new text: an edit after release leaves
    catalogs in two shapes (migration 8, R17). A new migration is appended and pinned here."""
    import hashlib

    texts = migrations()
    assert len(texts) >= len(_SHIPPED), "a shipped migration was removed"
    for i, want in enumerate(_SHIPPED):
        got = hashlib.sha256(texts[i].encode()).hexdigest()
        assert got == want, f"migration {i + 1} (MIGRATIONS[{i}]) was edited after release: add a new migration instead"
    assert len(texts) == len(_SHIPPED), "pin the new migration's sha256 in _SHIPPED"
