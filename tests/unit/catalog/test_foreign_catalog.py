"""Another program's SQLite file named as the catalog is refused before anything is written.

SQLite opens any database: `catalog:` pointing at a browser's history switched it to WAL and
migrated it (user_version 11, our tables beside its own), and `history` said "no runs yet".
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from qbhook.catalog.db import connect, migrations
from qbhook.catalog.schema import FIRST_TABLES
from qbhook.errors import CatalogDamaged, CatalogError, ExitCode, NotACatalog, hint_line
from tests.unit.catalog.old import catalog_at
from tests.unit.test_cli_catalog import Env


def _sqlite(path, *ddl: str, version: int = 0) -> bytes:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for stmt in ddl:
            conn.execute(stmt)
        conn.execute(f"PRAGMA user_version = {version}")
    return path.read_bytes()


FOREIGN = {
    "moz_places": ["CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)"],
    # a `runs` table of its own: was "no such column: id" after the switch to WAL
    "runs": ["CREATE TABLE runs (x TEXT)"],
    "a view": ["CREATE VIEW v AS SELECT 1"],
}


def _refused(env, args, before: bytes, what: str) -> None:
    """One line naming the file and what it is, the hint below it; exit 78, a config problem
    (it was 1, a generic failure, for a foreign SQLite file and 74 "damaged" for a non-SQLite one);
    the file byte for byte as it was, and nothing made beside it."""
    r = env.run(*args, expect=ExitCode.CONFIG)
    assert r.stderr.splitlines() == [f"qbhook: catalog {env.catalog} is {what}", hint_line(NotACatalog.HINT)]
    assert r.stdout == ""
    assert env.catalog.read_bytes() == before
    assert sorted(p.name for p in env.catalog.parent.iterdir()) == ["catalog.sqlite"]  # no -wal, no -shm


READERS_AND_MAKERS = [["history"], ["status"], ["dupes"], ["--json", "scan"]]


@pytest.mark.parametrize("kind", sorted(FOREIGN))
@pytest.mark.parametrize("args", READERS_AND_MAKERS)
def test_another_programs_sqlite_file_is_refused_and_left_byte_for_byte(tmp_path, kind, args):
    env = Env(tmp_path)
    before = _sqlite(env.catalog, *FOREIGN[kind])
    _refused(env, args, before, "a SQLite file but not a qbhook catalog")


GARBAGE = {
    "text": b"catalog: /var/lib/qbhook/catalog.sqlite\n" * 40,  # the config itself, named by mistake
    "short": b"x",
    "binary": bytes(range(256)) * 16,
    "a header cut short": b"SQLite format",
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
@pytest.mark.parametrize("args", READERS_AND_MAKERS)
def test_a_file_that_is_no_sqlite_file_is_refused_as_no_catalog_not_as_damage(tmp_path, kind, args):
    env = Env(tmp_path)
    env.catalog.write_bytes(GARBAGE[kind])
    _refused(env, args, GARBAGE[kind], "not a SQLite file, so not a qbhook catalog")


def test_a_catalog_damaged_past_its_header_is_still_damage(tmp_path):
    """The SQLite header is what tells the two apart: a SQLite file SQLite cannot read is damaged (74)."""
    path = tmp_path / "cat.sqlite"
    connect(path).close()
    data = bytearray(path.read_bytes())
    data[16:100] = b"\xff" * 84  # the rest of the database header: "file is not a database"
    path.write_bytes(bytes(data))
    with pytest.raises(CatalogDamaged) as e:
        connect(path, readonly=True)
    assert e.value.exit_code == ExitCode.IO_ERROR and path.read_bytes() == bytes(data)


def test_a_file_with_a_version_but_without_the_first_tables_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    before = _sqlite(path, "CREATE TABLE scans (x)", version=3)
    for readonly in (False, True):
        with pytest.raises(CatalogError, match="is a SQLite file but not a qbhook catalog"):
            connect(path, readonly=readonly)
    assert path.read_bytes() == before


@pytest.mark.parametrize("start", ["missing", "empty"])
def test_a_missing_or_zero_byte_file_is_a_new_catalog(tmp_path, start):
    path = tmp_path / "cat.sqlite"
    if start == "empty":
        path.write_bytes(b"")
    with closing(connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())


@pytest.mark.parametrize("version", [1, 5])
def test_an_old_qbhook_catalog_still_migrates(tmp_path, version):
    path = tmp_path / "old.sqlite"
    catalog_at(path, version).close()
    with closing(connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())


def test_the_first_tables_are_those_of_the_first_step():
    assert sorted(FIRST_TABLES) == ["filesystems", "inodes", "paths", "scans"]
