"""An inode row no path points at any more is dropped when the write that took its last path
lands, not only when a scan finds paths gone: kept, its valid hash made it a phantom copy in
`qbhook dupes` (counted as reclaimable) and `qbhook find` (a person could delete the only real
copy thinking another exists). The readers skip such a row too (a catalog written before)."""

from __future__ import annotations

import os

import pytest

from qbhook.catalog import scan as scanner
from qbhook.catalog.dupes import find_duplicates
from qbhook.catalog.hashing import ensure_hashes
from qbhook.catalog.locate import locate
from qbhook.catalog.scan import scan_pool
from tests.helpers import seeded_catalog, write


@pytest.fixture
def env(tmp_path):
    with seeded_catalog(tmp_path) as e:
        yield e


def _twins_hashed(cfg, cat, stash):
    a = write(stash / "a.bin", b"A" * 1000)
    b = write(stash / "b.bin", b"A" * 1000)
    scan_pool(cat, cfg.primary, cfg.scan)
    ensure_hashes(cat, cat.inode_ids(), settle_seconds=0)
    return a, b


def _pathless(cat) -> list[int]:
    return [
        r[0]
        for r in cat.conn.execute(
            "SELECT id FROM inodes i WHERE NOT EXISTS (SELECT 1 FROM paths p WHERE p.inode = i.id)"
        )
    ]


@pytest.mark.parametrize("walk", ["find", "python"])
def test_a_file_renamed_over_leaves_no_phantom_copy(env, monkeypatch, walk):
    cfg, cat, stash = env
    monkeypatch.setattr(scanner, "FIND_WALK", walk == "find")
    a, b = _twins_hashed(cfg, cat, stash)
    assert [len(s.copies) for s in find_duplicates(cat, settle_seconds=0)] == [2]
    write(stash / "new.tmp", b"B" * 1000)
    os.rename(stash / "new.tmp", a)  # a.bin is another file now; nothing vanished from the pool
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.changed, r.removed) == (1, 0)
    assert _pathless(cat) == []
    assert find_duplicates(cat, settle_seconds=0) == []
    assert locate(cat, cfg, str(b))["copies"] == []


def test_a_swap_split_over_two_batches_keeps_both_hashes(env, monkeypatch):
    """The Python walk writes in batches: an inode a path leaves in one may get a path in the next.
    It is dropped only if pathless once the scan's writes are all in (else its hash is read again)."""
    cfg, cat, stash = env
    monkeypatch.setattr(scanner, "FIND_WALK", False)
    monkeypatch.setattr(scanner, "_FLUSH_EVERY", 1)
    a, b = _twins_hashed(cfg, cat, stash)
    os.rename(a, stash / "tmp")
    os.rename(b, a)
    os.rename(stash / "tmp", b)
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.changed, r.removed) == (2, 0)
    assert cat.conn.execute("SELECT count(*) FROM inodes WHERE hash IS NOT NULL").fetchone()[0] == 2
    assert [len(s.copies) for s in find_duplicates(cat, settle_seconds=0)] == [2]


def test_recording_a_path_that_now_names_another_file_drops_the_old_inode(env):
    """`qbhook find` and the executor record paths outside a scan (``record_path(s)``)."""
    cfg, cat, stash = env
    a, b = _twins_hashed(cfg, cat, stash)
    write(stash / "new.tmp", b"B" * 1000)
    os.rename(stash / "new.tmp", a)
    assert locate(cat, cfg, str(a))["copies"] == []
    assert _pathless(cat) == []
    assert locate(cat, cfg, str(b))["copies"] == []
    os.rename(b, stash / "c.bin")
    write(stash / "b.bin", b"C" * 1000)
    cat.record_paths([(str(b), "stash")])
    assert _pathless(cat) == []


def test_an_inode_left_without_a_path_by_an_older_version_is_no_copy(env):
    cfg, cat, stash = env
    a, b = _twins_hashed(cfg, cat, stash)
    cat.conn.execute("DELETE FROM paths WHERE path = ?", (os.fsencode(a),))  # as a scan before the fix left it
    cat.conn.commit()
    assert find_duplicates(cat, settle_seconds=0) == []
    assert locate(cat, cfg, str(b))["copies"] == []


@pytest.mark.parametrize("rescan", ["find", "python"])
def test_a_scan_killed_between_batches_leaves_no_phantom_for_the_next_scan(env, monkeypatch, rescan):
    """The Python walk drops the inodes its batches took a path from in its last transaction
    only; killed before it, a batch's renamed-over inode kept its hash and no path, and no later
    scan dropped it (nothing vanished, and nothing was written over again): counted in the
    catalog's inodes, hashes and bytes for good. The batch records it; the next scan drops it."""
    cfg, cat, stash = env
    a, b = _twins_hashed(cfg, cat, stash)
    write(stash / "new.tmp", b"B" * 1000)
    os.rename(stash / "new.tmp", a)  # a.bin's old inode (hashed) loses its path; nothing vanished
    monkeypatch.setattr(scanner, "FIND_WALK", False)  # find failed (a file vanished mid-walk)
    monkeypatch.setattr(scanner, "_FLUSH_EVERY", 1)
    real_flush = scanner._flush

    def killed_after_the_batch(*args):
        real_flush(*args)
        raise KeyboardInterrupt  # the process dies between batches: the last transaction never runs

    monkeypatch.setattr(scanner, "_flush", killed_after_the_batch)
    with pytest.raises(KeyboardInterrupt):
        scan_pool(cat, cfg.primary, cfg.scan)
    assert len(_pathless(cat)) == 1  # the batch is in: a.bin names its new inode
    monkeypatch.setattr(scanner, "_flush", real_flush)
    monkeypatch.setattr(scanner, "FIND_WALK", rescan == "find")
    r = scan_pool(cat, cfg.primary, cfg.scan)
    assert (r.added, r.changed, r.removed) == (0, 0, 0)  # the catalog's paths were already right
    assert _pathless(cat) == []
    assert (cat.counts()["inodes"], cat.counts()["hashed"]) == (2, 1)
    assert cat.conn.execute("SELECT count(*) FROM state WHERE key LIKE 'scan.displaced.%'").fetchone()[0] == 0
    assert find_duplicates(cat, settle_seconds=0) == []  # dupes and find skip a pathless row anyway
    assert locate(cat, cfg, str(b))["copies"] == []


def test_a_scan_between_anothers_batches_takes_its_record_and_the_next_batch_records_anew(env, monkeypatch):
    """Another scan's last transaction drops a running scan's recorded inodes (those still
    pathless) and their record; the running scan's next batch records its whole set again, so
    its being killed after that batch still leaves nothing behind."""
    cfg, cat, stash = env
    a, b = _twins_hashed(cfg, cat, stash)
    for p, data in ((a, b"B"), (b, b"C")):
        write(stash / "new.tmp", data * 1000)
        os.rename(stash / "new.tmp", p)  # both hashed inodes lose their path
    monkeypatch.setattr(scanner, "FIND_WALK", False)
    monkeypatch.setattr(scanner, "_FLUSH_EVERY", 1)
    real_flush, batches = scanner._flush, []

    def flush(*args):
        real_flush(*args)
        batches.append(1)
        if len(batches) == 1:
            monkeypatch.setattr(scanner, "_flush", real_flush)
            assert len(_pathless(cat)) == 1
            other = next(p for p in cfg.pools if p.name != cfg.primary.name)
            scan_pool(cat, other, cfg.scan)  # another pool's scan runs to its end meanwhile
            monkeypatch.setattr(scanner, "_flush", flush)
            assert _pathless(cat) == []  # it dropped the running scan's recorded inode, and its record
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(scanner, "_flush", flush)
    with pytest.raises(KeyboardInterrupt):
        scan_pool(cat, cfg.primary, cfg.scan)
    assert len(batches) == 2 and len(_pathless(cat)) == 1  # the second batch's
    scan_pool(cat, cfg.primary, cfg.scan)
    assert _pathless(cat) == []
    assert cat.conn.execute("SELECT count(*) FROM state WHERE key LIKE 'scan.displaced.%'").fetchone()[0] == 0
