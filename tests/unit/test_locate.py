"""``qbhook find`` (``qbhook.catalog.locate``) identifies the file a person named, inside the pools
only: the path is resolved once, then lstat-ed in its folder opened below the pool's root."""

from __future__ import annotations

import os

import pytest

from qbhook.catalog.locate import locate
from qbhook.catalog.store import Catalog
from qbhook.errors import PathOutsideRoots
from tests.helpers import seeded_config, write
from tests.swap import swap_after_first_look


@pytest.fixture
def bed(tmp_path):
    cfg = seeded_config(tmp_path)
    cat = Catalog.open(cfg.catalog)
    yield cfg, cat, cfg.primary.seeding_root, tmp_path / "outside"
    cat.close()


def test_a_file_in_a_pool_is_found_by_its_inode(bed):
    cfg, cat, seed, _outside = bed
    f = write(seed / "d/Show/e.bin", b"episode")
    found = locate(cat, cfg, str(f))
    assert (found["path"], found["inode"], found["links"]) == (str(f), os.stat(f).st_ino, [str(f)])


def test_a_folder_swapped_for_a_symlink_after_the_path_was_resolved_is_refused_and_named(bed, monkeypatch):
    """``Show`` is a real folder when realpath looks at it, a symlink to an outside folder right
    after. Looked up by path again, the outside file was recorded in the catalog as this pool's
    file and shown as the one named; lstat-ed through verified folders, it is refused."""
    cfg, cat, seed, outside = bed
    f = write(seed / "d/Show/e.bin", b"episode")
    write(outside / "Show/e.bin", b"outside")
    swapped = swap_after_first_look(monkeypatch, seed / "d/Show", seed / "d/Show", outside / "Show")
    with pytest.raises(PathOutsideRoots, match=f"{seed}/d/Show is a symlink to {outside}/Show: refusing"):
        locate(cat, cfg, str(f))
    assert swapped
    outside_ino = os.stat(outside / "Show/e.bin").st_ino
    assert cat.conn.execute("SELECT count(*) FROM inodes WHERE ino = ?", (outside_ino,)).fetchone()[0] == 0
