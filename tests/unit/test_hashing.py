import os
import time

import blake3
import pytest

from qbhook import hashing
from qbhook.catalog.store import Catalog
from qbhook.hashing import ensure_hashes, hash_file
from qbhook.scanner import scan_pool
from tests.helpers import make_config, write


@pytest.fixture
def env(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for p in (stash, pool):
        (p / "data/media/torrents/seeding").mkdir(parents=True)
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    cat = Catalog.open(cfg.catalog)
    yield cfg, cat, stash
    cat.close()


def old(path):
    t = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(t, t))
    return path


def test_hash_matches_reference_blake3(tmp_path):
    data = os.urandom(3 * hashing.BUF_SIZE + 12345)
    p = write(tmp_path / "f", data)
    assert hash_file(p).digest == blake3.blake3(data).digest()
    assert hash_file(write(tmp_path / "e", b"")).digest == hashing.EMPTY_HASH


def _ids(cat):
    return [r[0] for r in cat.conn.execute("SELECT id FROM inodes ORDER BY id")]


def test_hash_once_per_inode_and_reused(env):
    cfg, cat, stash = env
    a = old(write(stash / "a", b"content"))
    os.link(a, stash / "b")
    scan_pool(cat, cfg.primary, cfg.scan)
    r1 = ensure_hashes(cat, _ids(cat), settle_seconds=60)
    assert (r1.hashed, r1.cached) == (1, 0)
    r2 = ensure_hashes(cat, _ids(cat), settle_seconds=60)
    assert (r2.hashed, r2.cached) == (0, 1)


def test_own_rename_and_link_do_not_force_rehash(env):
    cfg, cat, stash = env
    a = old(write(stash / "a", b"content"))
    scan_pool(cat, cfg.primary, cfg.scan)
    ensure_hashes(cat, _ids(cat), settle_seconds=60)
    os.link(a, stash / "b")
    cat.record_path(stash / "b", "stash", own_change=True)
    os.rename(stash / "a", stash / "c")
    cat.record_path(stash / "c", "stash", own_change=True)
    cat.forget_path(stash / "a")
    r = ensure_hashes(cat, _ids(cat), settle_seconds=60)
    assert (r.hashed, r.cached) == (0, 1)


def test_foreign_link_changes_ctime_and_forces_rehash(env):
    cfg, cat, stash = env
    a = old(write(stash / "a", b"content"))
    scan_pool(cat, cfg.primary, cfg.scan)
    ensure_hashes(cat, _ids(cat), settle_seconds=60)
    time.sleep(0.01)
    os.link(a, stash / "b")  # someone else (an *arr import) linked it
    scan_pool(cat, cfg.primary, cfg.scan)
    assert ensure_hashes(cat, _ids(cat), settle_seconds=60).hashed == 1


def test_mtime_set_back_while_ctime_moves_must_rehash(env):
    cfg, cat, stash = env
    a = old(write(stash / "a", b"AAAA"))
    scan_pool(cat, cfg.primary, cfg.scan)
    ensure_hashes(cat, _ids(cat), settle_seconds=60)
    before = os.stat(a)
    time.sleep(0.01)
    with open(a, "r+b") as f:   # same size, new content, then hide it behind the old mtime
        f.write(b"BBBB")
    os.utime(a, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(a).st_mtime_ns == before.st_mtime_ns and os.stat(a).st_ctime_ns != before.st_ctime_ns
    scan_pool(cat, cfg.primary, cfg.scan)
    assert cat.inode_by_path(a).hash is None
    ensure_hashes(cat, _ids(cat), settle_seconds=60)
    assert cat.inode_by_path(a).hash == blake3.blake3(b"BBBB").digest()


def test_fresh_file_is_not_cached(env):
    cfg, cat, stash = env
    write(stash / "a", b"fresh")
    scan_pool(cat, cfg.primary, cfg.scan)
    r = ensure_hashes(cat, _ids(cat), settle_seconds=60)
    assert r.hashed == 0 and len(r.unsettled) == 1
    assert cat.inode_by_path(stash / "a").hash is None


def test_file_changing_while_hashed_is_not_cached(env, monkeypatch):
    cfg, cat, stash = env
    a = old(write(stash / "a", b"x" * (3 * hashing.BUF_SIZE)))
    scan_pool(cat, cfg.primary, cfg.scan)
    real = hashing.hash_fd

    def writer_during_read(fd, hasher=None):
        with open(a, "ab") as f:  # a download appending while we read
            f.write(b"more")
        return real(fd, hasher)
    monkeypatch.setattr(hashing, "hash_fd", writer_during_read)
    r = ensure_hashes(cat, _ids(cat), settle_seconds=0)
    assert r.hashed == 0 and r.unsettled
    assert cat.inode_by_path(a).hash is None


def test_path_now_pointing_at_other_inode_is_not_trusted(env):
    cfg, cat, stash = env
    a = old(write(stash / "a", b"one"))
    scan_pool(cat, cfg.primary, cfg.scan)
    iid = _ids(cat)[0]
    other = old(write(stash / "b", b"two"))
    os.rename(other, a)  # same path string, different inode (both existed at once)
    r = ensure_hashes(cat, [iid], settle_seconds=0)
    assert r.missing == [iid] and r.hashed == 0
