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
from qbhook.errors import CatalogError, ExitCode
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


@pytest.mark.parametrize("kind", sorted(FOREIGN))
@pytest.mark.parametrize("args", [["history"], ["status"], ["--json", "scan"]])
def test_another_programs_sqlite_file_is_refused_and_left_byte_for_byte(tmp_path, kind, args):
    env = Env(tmp_path)
    before = _sqlite(env.catalog, *FOREIGN[kind])
    r = env.run(*args, expect=ExitCode.FAILURE)
    assert r.stderr.splitlines()[0] == f"qbhook: catalog {env.catalog} is a SQLite file but not a qbhook catalog"
    assert len(r.stderr.splitlines()) == 2 and r.stdout == ""
    assert env.catalog.read_bytes() == before
    assert sorted(p.name for p in env.catalog.parent.iterdir()) == ["catalog.sqlite"]  # no -wal, no -shm


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
