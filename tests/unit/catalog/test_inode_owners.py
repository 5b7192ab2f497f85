"""The catalog keeps each inode's mode, uid and gid as the scan saw them (schema.OWNER_DDL).

The converge pass decides on the catalog's rows (``decide.converge_pass``), and its access rule
needs the owner and mode of both ends of a relink (``access.access_lost``). So the scan records
them, both rescans (find's lines, the Python walk's signatures) compare them, a stat written
without them that moves the ctime makes them unknown, and rows of an older catalog are unknown
(NULL) until their next rescan writes them.
"""

from __future__ import annotations

import os
import stat

import pytest

from qbhook.catalog import db
from qbhook.catalog import scan as scanner
from qbhook.catalog.db import migrations
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog, InodeStat
from tests.helpers import seeded_catalog, write
from tests.unit.catalog.old import catalog_at

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@pytest.fixture
def env(tmp_path):
    with seeded_catalog(tmp_path) as e:
        yield e


def _owners(cat: Catalog) -> dict[bytes, tuple]:
    return dict(
        (p, (m, u, g))
        for p, m, u, g in cat.conn.execute(
            "SELECT p.path, i.mode, i.uid, i.gid FROM paths p JOIN inodes i ON i.id = p.inode"
        )
    )


def _as_lstat(*paths) -> dict[bytes, tuple]:
    return {os.fsencode(p): (st.st_mode, st.st_uid, st.st_gid) for p in paths for st in [os.lstat(p)]}


def _walk(monkeypatch, walk: str) -> None:
    """A rescan by ``walk`` only: find (the Python walk would fail the test) or Python (find off)."""
    if walk == "python":
        monkeypatch.setattr(scanner, "FIND_WALK", False)
    else:

        def no_python_walk(*a, **k):
            raise AssertionError("the Python walk ran")

        monkeypatch.setattr(scanner, "_python_walk", no_python_walk)


def test_a_scan_records_each_inodes_mode_and_owner(env):
    cfg, cat, stash = env
    a = write(stash / "data/media/torrents/seeding/t/a.bin", b"a")
    b = write(stash / "media/b.bin", b"b")
    os.chmod(a, 0o664)
    os.chmod(b, 0o640)
    scan_pool(cat, cfg.primary, cfg.scan)
    assert _owners(cat) == _as_lstat(a, b)
    assert stat.S_IMODE(_owners(cat)[os.fsencode(b)][0]) == 0o640


@pytest.mark.parametrize("walk", ["find", "python"])
@pytest.mark.parametrize("change", ["chmod", "chown"])
def test_a_chmod_or_chown_is_written_by_the_next_rescan(env, monkeypatch, walk, change):
    if change == "chown" and os.geteuid() != 0:
        pytest.skip("chown needs root")
    cfg, cat, stash = env
    files = [write(stash / f"data/media/torrents/seeding/t/{i}.bin", b"%d" % i) for i in range(5)]
    scan_pool(cat, cfg.primary, cfg.scan)
    _walk(monkeypatch, walk)
    assert scan_pool(cat, cfg.primary, cfg.scan).changed == 0  # an unchanged rescan: nothing written
    if change == "chmod":
        os.chmod(files[2], 0o600)
    else:
        os.chown(files[2], 1000, 2000)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert r.changed == 1
    assert _owners(cat) == _as_lstat(*files)
    assert scan_pool(cat, cfg.primary, cfg.scan).changed == 0


def test_a_stat_written_with_a_hash_that_moves_the_ctime_makes_the_owner_unknown_until_the_rescan(env, monkeypatch):
    """``store_stats``/``store_hashes`` write the ctime without the owner (dupes' forked children send
    none): kept, the old owner would pass for current, since the rescan then finds the ctime equal."""
    cfg, cat, stash = env
    f = write(stash / "data/media/torrents/seeding/t/a.bin", b"a")
    scan_pool(cat, cfg.primary, cfg.scan)
    iid = cat.inode_by_path(f).id
    cat.store_stats([(iid, os.lstat(f))])  # the same ctime: the owner stays known
    assert _owners(cat)[os.fsencode(f)][0] is not None
    os.chmod(f, 0o600)
    cat.store_hashes([(iid, b"\0" * 32, os.lstat(f))])
    assert _owners(cat)[os.fsencode(f)] == (None, None, None)
    _walk(monkeypatch, "find")
    assert scan_pool(cat, cfg.primary, cfg.scan).changed == 1
    assert _owners(cat) == _as_lstat(f)
    assert cat.inode(iid).hash == b"\0" * 32  # the owner's write leaves the hash valid


def test_a_write_of_the_owner_alone_moves_the_write_generation(env):
    """The rescan compares the owner, so the memo's generation must cover it (migration 7's rule)."""
    cfg, cat, stash = env
    write(stash / "data/media/torrents/seeding/t/a.bin", b"a")
    scan_pool(cat, cfg.primary, cfg.scan)
    before = cat.generation()
    with db.Tx(cat.conn) as c:
        c.execute("UPDATE inodes SET uid = uid + 1")
    assert cat.generation() > before


def test_a_catalog_from_before_has_no_owner_until_a_rescan_writes_it(env, tmp_path, monkeypatch):
    """Rows of a catalog at the previous version get NULL (unknown: the converge pass leaves the
    access rule to the executor); its first rescan (find's, the usual one) writes every one."""
    cfg, _cat, stash = env
    _cat.close()
    files = [write(stash / f"data/media/torrents/seeding/t/{i}.bin", b"%d" % i) for i in range(3)]
    path = tmp_path / "old.sqlite"
    old = catalog_at(path, len(migrations()) - 1)
    old.execute("INSERT INTO filesystems(fsid, kind, first_seen, last_seen) VALUES ('x', 'mount', 0, 0)")
    old.close()
    cat = Catalog(db.connect(path))
    try:
        assert cat.conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())
        scan_pool(cat, cfg.primary, cfg.scan)
        assert _owners(cat) == _as_lstat(*files)
        # as the previous version's scan left them: no owner columns written
        with db.Tx(cat.conn) as c:
            c.execute("UPDATE inodes SET mode = NULL, uid = NULL, gid = NULL")
        assert set(_owners(cat).values()) == {(None, None, None)}
        mtimes, access = cat.inode_mtimes_and_access(r[0] for r in cat.conn.execute("SELECT id FROM inodes"))
        assert len(mtimes) == 3 and access == {}
        _walk(monkeypatch, "find")
        assert scan_pool(cat, cfg.primary, cfg.scan).changed == 3
        assert _owners(cat) == _as_lstat(*files)
        mtimes, access = cat.inode_mtimes_and_access(r[0] for r in cat.conn.execute("SELECT id FROM inodes"))
        assert len(access) == 3 and len({id(a) for a in access.values()}) == 1  # one shared tuple
    finally:
        cat.close()


def test_the_migration_leaves_the_rows_it_finds_unknown(tmp_path):
    path = tmp_path / "old.sqlite"
    old = catalog_at(path, len(migrations()) - 1)
    old.execute("INSERT INTO filesystems(fsid, kind, first_seen, last_seen) VALUES ('x', 'mount', 0, 0)")
    old.execute("INSERT INTO inodes(id, fs, ino, size, mtime_ns, ctime_ns, nlink) VALUES (1, 1, 7, 3, 4, 5, 1)")
    old.close()
    conn = db.connect(path)
    try:
        assert conn.execute("SELECT mode, uid, gid FROM inodes").fetchall() == [(None, None, None)]
    finally:
        conn.close()


def test_find_lines_of_an_unknown_owner_never_parse_as_find_output():
    line = Catalog.find_line(InodeStat(5, 7, 3, 10**9, 2 * 10**9, 1, None, None, None), b"/a b/c")
    assert line == b"5 7 3 1.0000000000 2.0000000000 1 - - - /a b/c"
    path, st = scanner._line_fields(line)
    assert (path, st.st_mode, st.st_uid, st.st_gid) == (b"/a b/c", None, None, None)
    with pytest.raises(ValueError):
        scanner._parse_find_line(line)
    known = Catalog.find_line(InodeStat(5, 7, 3, 10**9, 2 * 10**9, 1, stat.S_IFREG | 0o4755, 1000, 2000), b"/a b/c")
    assert known == b"5 7 3 1.0000000000 2.0000000000 1 4755 1000 2000 /a b/c"
    assert scanner._parse_find_line(known)[1].st_mode == stat.S_IFREG | 0o4755


@ROOT_ONLY
def test_find_prints_the_mode_owner_and_group_as_the_catalog_rebuilds_them(env, monkeypatch):
    """Special bits and numeric ids as find's %m %U %G print them: an unchanged rescan matches every line."""
    cfg, cat, stash = env
    f = write(stash / "data/media/torrents/seeding/t/a.bin", b"a")
    os.chown(f, 4242, 4343)
    os.chmod(f, 0o6750)
    scan_pool(cat, cfg.primary, cfg.scan)
    _walk(monkeypatch, "find")
    assert scan_pool(cat, cfg.primary, cfg.scan).changed == 0
    assert _owners(cat) == _as_lstat(f)
