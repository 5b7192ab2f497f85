"""The catalog's own looks by path go through verified folders below its pool roots.

``Catalog.record_path`` / ``record_paths`` given no stat, ``explain``'s live look
(``catalog.queries``) and the closure's ``_live_inodes`` (``decide.explain``) read each path
through ``Catalog.reader`` (a ``dirfd.FolderReader`` on ``marker_roots``). A folder on the way
swapped for a symlink (here: to the very folder, moved aside, so every inode is the same) is
never read through: a path behind it is not recorded as the pool's file, and is not "that
inode" now. Each test fails on the code that looked with ``os.lstat`` by the path string.
"""

from __future__ import annotations

import os

import pytest

from qbhook.catalog.queries import explain_from_index
from qbhook.catalog.store import Catalog
from qbhook.decide.explain import _live_inodes
from qbhook.errors import PathOutsideRoots
from tests.helpers import seeded_config, write
from tests.swap import swap
from tests.unit.test_explain_index import A, bed  # noqa: F401  (fixture)


@pytest.fixture
def cat(tmp_path):
    """(config, a catalog opened as the CLI opens it: with the pool roots, a file outside them)."""
    cfg = seeded_config(tmp_path)
    c = Catalog.open(cfg.catalog, marker_roots=[p.path for p in cfg.pools])
    write(tmp_path / "outside/Movie/movie.mkv", b"not the pool's\n")
    yield cfg, c, tmp_path / "outside"
    c.close()


def _recorded(c: Catalog) -> list[bytes]:
    return [r[0] for r in c.conn.execute("SELECT path FROM paths")]


def test_record_path_without_a_stat_refuses_a_path_behind_a_symlinked_folder(cat):
    cfg, c, outside = cat
    folder = cfg.primary.seeding_root / "Movie"
    write(folder / "movie.mkv", b"the pool's\n")
    swap(folder, outside / "Movie")
    with pytest.raises(PathOutsideRoots) as e:
        c.record_path(str(folder / "movie.mkv"), "stash")
    assert "\n" not in e.value.message and f"{folder} is a symlink" in e.value.message
    assert _recorded(c) == []


def test_record_paths_without_a_stat_leaves_out_a_path_behind_a_symlinked_folder(cat):
    cfg, c, outside = cat
    folder = cfg.primary.seeding_root / "Movie"
    write(folder / "movie.mkv", b"the pool's\n")
    write(folder / "other.nfo", b"kept\n")
    ok = cfg.primary.seeding_root / "Show/show.mkv"
    write(ok, b"a file of the pool\n")
    swap(folder, outside / "Movie")
    n = c.record_paths([(str(folder / "movie.mkv"), "stash"), (str(ok), "stash")])
    assert n == 1 and _recorded(c) == [os.fsencode(ok)]


def test_record_path_without_a_stat_refuses_a_path_under_no_pool_root(cat):
    _cfg, c, outside = cat
    with pytest.raises(PathOutsideRoots, match="under none of the pool roots"):
        c.record_path(str(outside / "Movie/movie.mkv"), "stash")
    assert c.record_paths([(str(outside / "Movie/movie.mkv"), "stash")]) == 0
    assert _recorded(c) == []


def test_record_path_without_a_stat_still_records_a_pool_file(cat):
    cfg, c, _outside = cat
    f = cfg.primary.seeding_root / "Movie/movie.mkv"
    write(f, b"the pool's\n")
    iid = c.record_path(str(f), "stash")
    assert c.inode(iid).ino == os.lstat(f).st_ino and _recorded(c) == [os.fsencode(f)]
    with pytest.raises(FileNotFoundError):
        c.record_path(str(f.with_name("gone.mkv")), "stash")


def test_live_inodes_leave_out_a_path_behind_a_symlinked_folder(cat):
    """The closure of explain's group: a path of the group behind a swapped folder pulled the
    inode found there (and every torrent sharing it) into the group."""
    cfg, c, _outside = cat
    folder = cfg.primary.seeding_root / "Movie"
    f = folder / "movie.mkv"
    write(f, b"the pool's\n")
    iid = c.record_path(str(f), "stash", st=os.lstat(f))
    assert _live_inodes(c, {os.fsencode(f)}) == {iid}
    swap(folder, folder.with_name("Movie.aside"))
    assert _live_inodes(c, {os.fsencode(f)}) == set()


def test_explain_from_the_index_does_not_call_a_path_behind_a_symlinked_folder_the_same_inode(bed):  # noqa: F811
    rooted = Catalog.open(bed.cfg.catalog, marker_roots=[p.path for p in bed.cfg.pools])
    try:

        def live():
            data = explain_from_index(rooted, A, None)
            t = next(t for t in data["torrents"] if t["hash"] == A)
            return [f["live"]["same_inode"] for f in t["files"]]

        assert live() == [True, True]
        folder = bed.seed / "Movie.A"
        swap(folder, folder.with_name("Movie.A.aside"))
        assert live() == [False, False]
    finally:
        rooted.close()
