"""The repair gatherer's copies (``qbhook.decide.repair_facts``): a stale stored hash is a candidate.

A torrent's own link vanishing moves the ctime of the library copy that remains, and the next
scan stores that ctime: the stored hash is then stale (``inodes_with_content`` no longer finds
the inode), yet the copy is exactly the lost content. The gatherer asks the catalog for every
inode whose stored hash matches, valid or not, and confirms a stale one by hashing the file
again; a file whose bytes changed is not a copy.
"""

from __future__ import annotations

import os

import blake3
import pytest

from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.decide.repair_facts import _copies
from tests.helpers import make_config, write

DATA = b"the lost content" * 64


@pytest.fixture
def env(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for p in (stash, pool):
        (p / "data/media/torrents/seeding").mkdir(parents=True)
    lib = stash / "data/media/movies/m.mkv"
    lib.parent.mkdir(parents=True)
    write(lib, DATA)
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    cat = Catalog.open(cfg.catalog)
    scan_pool(cat, cfg.primary, cfg.scan)
    row = cat.inode_by_path(str(lib))
    cat.store_hash(row.id, blake3.blake3(DATA).digest(), os.lstat(lib))
    yield cfg, cat, lib
    cat.close()


def _key() -> tuple[int, str]:
    return (len(DATA), blake3.blake3(DATA).hexdigest())


def test_a_copy_with_a_valid_hash_is_found(env):
    _cfg, cat, lib = env
    assert [c.path for c in _copies(cat, {_key()})[_key()]] == [str(lib)]


def test_a_copy_whose_hash_went_stale_by_a_link_change_is_confirmed_by_hashing_again(env):
    cfg, cat, lib = env
    link = lib.parent / "gone.mkv"
    os.link(lib, link)
    os.unlink(link)  # the torrent's link vanished: the copy's ctime moved
    scan_pool(cat, cfg.primary, cfg.scan)
    size, digest = _key()
    assert cat.inodes_with_content(size, bytes.fromhex(digest)) == []  # stale: not "valid"
    assert [c.path for c in _copies(cat, {_key()})[_key()]] == [str(lib)]


def test_a_file_whose_bytes_changed_is_not_a_copy(env):
    cfg, cat, lib = env
    lib.write_bytes(DATA[:-1] + b"!")  # same size, other content
    scan_pool(cat, cfg.primary, cfg.scan)
    assert _copies(cat, {_key()})[_key()] == ()
