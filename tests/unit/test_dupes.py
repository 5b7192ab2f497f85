"""find_duplicates: partials and small files are read through a window of open files; what they read must
still be the catalogued inode, and the sets must be those of a one-file-at-a-time reader."""

import os

import pytest

from qbhook.catalog import dupes
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from tests.helpers import b3, make_config, put

SEED = "data/media/torrents/seeding"


@pytest.fixture
def env(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for p in (stash, pool):
        (p / SEED).mkdir(parents=True)
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    cat = Catalog.open(cfg.catalog)
    yield cfg, cat, stash, pool
    cat.close()


@pytest.mark.parametrize("size", [20_000, 100_000])  # hashed at once / sampled first
def test_a_path_now_holding_another_inode_is_not_read_as_the_catalogued_one(env, size):
    cfg, cat, stash, pool = env
    x, y = os.urandom(size), os.urandom(size)
    put(stash / SEED / "A/a.mkv", x)
    put(pool / SEED / "A/a.mkv", x)
    c = put(stash / SEED / "C/c.mkv", y)
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    # c's path now names a new inode holding x; the catalogued inode (content y) is gone.
    os.rename(put(stash / SEED / "C/new.mkv", x), c)
    sets = dupes.find_duplicates(cat, settle_seconds=0)
    assert [(s.size, len(s.copies), s.hash) for s in sets] == [(size, 2, b3(x))]
    assert all(os.fsencode(p) != c for s in sets for cp in s.copies for p in cp.paths)


def test_many_small_files_read_by_the_pool_give_every_set(env, monkeypatch):
    cfg, cat, stash, pool = env
    monkeypatch.setattr(dupes, "LOOKAHEAD", 3)  # many more files than the window of open ones
    contents = [os.urandom(1000 + i % 7 * 10_000) for i in range(700)]
    for i, data in enumerate(contents):
        put(stash / SEED / f"S{i % 13}/f{i}.bin", data)
        if i % 3 == 0:
            put(pool / SEED / f"S{i % 13}/f{i}.bin", data)
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    sets = dupes.find_duplicates(cat, settle_seconds=0)
    want = sorted(b3(d) for i, d in enumerate(contents) if i % 3 == 0)
    assert sorted(s.hash for s in sets) == want
    assert all(s.scope == "across-pools" and len(s.copies) == 2 for s in sets)
    assert cat.counts()["hashed"] >= 2 * len(want)
