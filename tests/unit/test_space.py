"""A pool's size and free space (``qbhook.space``), and what each reader does with a root it
cannot read: ``status`` shows the error, the sweeper's free-space check skips the pool, a
snapshot stops."""

from __future__ import annotations

import errno
import os
import shutil

import pytest

from qbhook import space as space_mod
from qbhook.catalog.store import Catalog
from qbhook.decide.snapshot import build_snapshot
from qbhook.dirfd import FolderRefused
from qbhook.errors import QbhookError
from qbhook.events import status
from qbhook.events.worker import _pool_space
from qbhook.space import Space, space_of
from tests.helpers import seeded_config
from tests.swap import swap


def test_space_is_what_the_filesystem_reports_in_bytes(tmp_path):
    # The standard library's own reading of the same statvfs, taken on both sides of ours until
    # the two agree: the disk is shared (CI's integration tier writes beside the unit tier), and
    # one block written between two readings failed this once (4,096 bytes apart).
    for _ in range(50):
        du = shutil.disk_usage(tmp_path)
        s = space_of(tmp_path)
        if shutil.disk_usage(tmp_path) == du:
            break
    assert isinstance(s, Space) and s.size == du.total and s.avail == du.free and s.size - s.free == du.used
    assert s.size >= s.free >= s.avail >= 0


def test_a_root_that_cannot_be_read_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        space_of(tmp_path / "not-mounted")
    assert e.value.errno == errno.ENOENT and e.value.strerror


@pytest.fixture
def unreadable(tmp_path, monkeypatch):
    """A config whose cold pool's statvfs fails (EIO: a pool gone bad under a mounted folder)."""
    cfg = seeded_config(tmp_path)
    bad = str(cfg.cold.path)
    real = os.statvfs

    def statvfs(path):
        # a root's descriptor (space_at's way), or a path
        where = os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else os.fspath(path)
        if where.startswith(bad):
            raise OSError(errno.EIO, os.strerror(errno.EIO), where)
        return real(path)

    monkeypatch.setattr(os, "statvfs", statvfs)
    return cfg


def test_status_shows_the_error_of_a_pool_it_cannot_read(unreadable):
    cfg = unreadable
    good, bad = (status._pool(p, None, None) for p in (cfg.primary, cfg.cold))
    assert good.error is None and good.size == space_of(cfg.primary.path).size
    assert (bad.size, bad.free, bad.error) == (None, None, f"{cfg.cold.path}: {os.strerror(errno.EIO)}")
    cat = Catalog.open(cfg.catalog)
    try:
        data = status.report(cfg, cat)
    finally:
        cat.close()
    pools = data["pools"]
    assert pools[cfg.cold.name]["error"] == os.strerror(errno.EIO) and "size" not in pools[cfg.cold.name]
    # a problem (exit 1), not only a line: status exited 0 with a pool it could not read
    assert not data["healthy"]
    assert data["problems"] == [f"pool {cfg.cold.name} ({cfg.cold.path}): {os.strerror(errno.EIO)}"]
    good = pools[cfg.primary.name]  # free space moves with other writers: its size does not
    assert good["size"] == space_of(cfg.primary.path).size and good["free"] > 0 and "error" not in good


def test_the_sweepers_free_space_check_skips_a_pool_it_cannot_read(unreadable):
    cfg = unreadable
    assert [(p.name, p.free_bytes > 0) for p in _pool_space(cfg)] == [(cfg.primary.name, True)]


def _snapshot_error(cfg, kind: type[BaseException]) -> BaseException:
    """What building a snapshot of ``cfg`` raised (it must raise ``kind``)."""
    cat = Catalog.open(cfg.catalog)
    try:
        with pytest.raises(kind) as e:
            build_snapshot(cfg, cat, [])
    finally:
        cat.close()
    return e.value


def test_a_snapshot_stops_on_a_pool_it_cannot_read(unreadable):
    assert _snapshot_error(unreadable, OSError).errno == errno.EIO


@pytest.fixture
def swapped(tmp_path):
    """A config whose cold pool's seeding root a writer of that pool swapped for a symlink to an
    outside folder (here on the same filesystem; on a NAS, any other one with its own free space)."""
    cfg = seeded_config(tmp_path)
    (tmp_path / "outside").mkdir()
    swap(cfg.cold.seeding_root, tmp_path / "outside")
    return cfg


def test_the_sweepers_free_space_check_skips_a_swapped_seeding_root(swapped):
    """Read by its path, the swapped root's space was the outside folder's: the writer chose the
    free space the "pool low" alerts and the planner saw."""
    assert [p.name for p in _pool_space(swapped)] == [swapped.primary.name]


def test_a_snapshot_stops_on_a_swapped_seeding_root_naming_it(swapped):
    message = _snapshot_error(swapped, QbhookError).message
    root = swapped.cold.seeding_root
    assert "\n" not in message
    assert message.startswith(f"seeding root {root} of pool {swapped.cold.name}: {root} is a symlink to")


def test_space_at_reads_through_the_descriptor_of_a_seeding_root_opened_from_its_pool_root(tmp_path):
    cfg = seeded_config(tmp_path)
    space, st = space_mod.space_at(cfg.primary.seeding_root, cfg.primary.path)
    assert st.st_ino == os.stat(cfg.primary.seeding_root).st_ino and space.size == space_of(tmp_path).size
    swap(cfg.primary.seeding_root, tmp_path)
    with pytest.raises(FolderRefused):
        space_mod.space_at(cfg.primary.seeding_root, cfg.primary.path)
