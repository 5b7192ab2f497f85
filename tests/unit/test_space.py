"""A pool's size and free space (``qbhook.space``), and what each reader does with a root it
cannot read: ``status`` shows the error, the sweeper's free-space check skips the pool, a
snapshot stops."""

from __future__ import annotations

import errno
import os
import shutil

import pytest

from qbhook.catalog.store import Catalog
from qbhook.decide.snapshot import build_snapshot
from qbhook.events import status
from qbhook.events.worker import _pool_space
from qbhook.space import Space, space_of
from tests.helpers import seeded_config


def test_space_is_what_the_filesystem_reports_in_bytes(tmp_path):
    du = shutil.disk_usage(tmp_path)  # the standard library's own reading of the same statvfs
    s = space_of(tmp_path)
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
        if os.fspath(path).startswith(bad):
            raise OSError(errno.EIO, os.strerror(errno.EIO), os.fspath(path))
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
        pools = status.report(cfg, cat)["pools"]
    finally:
        cat.close()
    assert pools[cfg.cold.name]["error"] == os.strerror(errno.EIO) and "size" not in pools[cfg.cold.name]
    good = pools[cfg.primary.name]  # free space moves with other writers: its size does not
    assert good["size"] == space_of(cfg.primary.path).size and good["free"] > 0 and "error" not in good


def test_the_sweepers_free_space_check_skips_a_pool_it_cannot_read(unreadable):
    cfg = unreadable
    assert [(p.name, p.free_bytes > 0) for p in _pool_space(cfg)] == [(cfg.primary.name, True)]


def test_a_snapshot_stops_on_a_pool_it_cannot_read(unreadable):
    cat = Catalog.open(unreadable.catalog)
    try:
        with pytest.raises(OSError) as e:
            build_snapshot(unreadable, cat, [])
    finally:
        cat.close()
    assert e.value.errno == errno.EIO
