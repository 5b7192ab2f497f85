import os

import pytest

from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.errors import MassDeleteRefused, QbhookError
from tests.helpers import make_config, write


@pytest.fixture
def env(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for p in (stash, pool):
        (p / "data/media/torrents/seeding").mkdir(parents=True)
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool, scan={"mass_delete_min_paths": 3})
    cat = Catalog.open(cfg.catalog)
    yield cfg, cat, stash
    cat.close()


def test_first_scan_then_unchanged_rescan_writes_nothing(env):
    cfg, cat, stash = env
    for i in range(20):
        write(stash / f"data/media/torrents/seeding/t/{i}.bin", b"%d" % i)
    r1 = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r1.files_seen, r1.added, r1.changed, r1.removed) == (20, 20, 0, 0)
    r2 = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r2.files_seen, r2.added, r2.changed, r2.removed) == (20, 0, 0, 0)


def test_hardlinks_are_one_inode_with_many_paths(env):
    cfg, cat, stash = env
    a = write(stash / "data/media/torrents/seeding/a/f.mkv", b"movie")
    os.makedirs(stash / "media/movies")
    os.link(a, stash / "media/movies/f.mkv")
    scan_pool(cat, cfg.primary, cfg.scan)
    c = cat.counts()
    assert c["inodes"] == 1 and c["paths"] == 2
    row = cat.inode_by_path(stash / "media/movies/f.mkv")
    assert row.nlink == 2 and len(cat.paths_of(row.id)) == 2


def test_symlinks_and_special_files_are_not_followed(env, tmp_path):
    cfg, cat, stash = env
    outside = write(tmp_path / "outside/secret.bin", b"s")
    os.symlink(outside, stash / "link-to-file")
    os.symlink(tmp_path / "outside", stash / "link-to-dir")
    os.mkfifo(stash / "fifo")
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert r.files_seen == 0 and cat.counts()["paths"] == 0


def test_weird_names_round_trip(env):
    cfg, cat, stash = env
    names = [b"new\nline.bin", b"bad\xff\xfeutf8.bin", b"-leading dash", "ünï cødé.mkv".encode()]
    base = os.fsencode(stash / "data/media/torrents/seeding")
    for n in names:
        write(base + b"/" + n, n)
    scan_pool(cat, cfg.primary, cfg.scan)
    stored = {p for (p,) in cat.conn.execute("SELECT path FROM paths")}
    assert stored == {base + b"/" + n for n in names}
    assert scan_pool(cat, cfg.primary, cfg.scan).changed == 0


def test_vanished_paths_removed_and_mass_delete_guard(env):
    cfg, cat, stash = env
    files = [write(stash / f"s/{i}", b"x") for i in range(10)]
    scan_pool(cat, cfg.primary, cfg.scan)
    os.unlink(files[0])
    assert scan_pool(cat, cfg.primary, cfg.scan).removed == 1
    for f in files[1:]:
        os.unlink(f)
    with pytest.raises(MassDeleteRefused, match="mounted"):
        scan_pool(cat, cfg.primary, cfg.scan)
    assert cat.counts()["paths"] == 9  # nothing dropped
    assert scan_pool(cat, cfg.primary, cfg.scan, allow_mass_delete=True).removed == 9
    assert cat.counts() ["inodes"] == 0


def test_unreadable_folder_is_not_deleted(env, monkeypatch):
    cfg, cat, stash = env
    write(stash / "locked/a", b"a")
    write(stash / "open/b", b"b")
    scan_pool(cat, cfg.primary, cfg.scan)
    real = os.scandir

    def fake(path):
        if os.fsdecode(path).endswith("locked"):
            raise PermissionError(13, "denied")
        return real(path)
    monkeypatch.setattr("qbhook.catalog.scan.os.scandir", fake)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert r.removed == 0 and r.unreadable and cat.counts()["paths"] == 2


def test_missing_pool_root_is_an_error(env, tmp_path):
    cfg, cat, stash = env
    os.rename(stash, tmp_path / "elsewhere")
    with pytest.raises(QbhookError, match="mounted"):
        scan_pool(cat, cfg.primary, cfg.scan)


def test_nlink_change_is_noticed(env):
    cfg, cat, stash = env
    a = write(stash / "a", b"x")
    scan_pool(cat, cfg.primary, cfg.scan)
    os.link(a, stash / "b")
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert r.added == 1 and r.changed == 1
    assert cat.inode_by_path(a).nlink == 2
