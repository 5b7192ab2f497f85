"""What a convergence snapshot costs per file, and that hashing stays tied to the inode it found.

Same-pool convergence needs the content of both ends of every duplicate pair: the seeding copy
(a torrent file, lstat-ed by the snapshot) and the library file (a catalog inode of the same
size on the same dataset). Each is looked at once and read once per build: the snapshot hands
the seeding file's path and lstat to ``ensure_hashes`` instead of having it look the inode up
again, and adopts the library file as a donor from the read that hashed it (issue 12's
benchmark, docs/benchmarks.md section 9). What makes that safe is checked here too: the hash is
stored only if the descriptor opened is the inode that was located.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from qbhook.catalog import hashing
from qbhook.catalog.hashing import Located, ensure_hashes
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.decide.planner import make_plan
from qbhook.decide.snapshot import build_snapshot
from tests.helpers import b3, make_config, write
from tests.swap import full_path
from tests.unit.test_executor import FakeQbt, FakeTorrent

PAIRS = 12


@pytest.fixture
def bed(tmp_path):
    """PAIRS library files and a seeding copy of each (separate inodes), scanned into the catalog."""
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    cfg.cold.seeding_root.mkdir(parents=True)
    qbt = FakeQbt()
    seeding, library = [], []
    for k in range(PAIRS):
        data = b"%03d" % k * (50 + k)  # sizes differ: each pair is its own size
        lib = stash / f"data/media/movies/M{k}/m{k}.bin"
        save = cfg.primary.seeding_root / f"movies/T{k}"
        write(lib, data)
        write(save / f"m{k}.bin", data)
        qbt.add(FakeTorrent(f"{k:040x}", f"T{k}", str(save), [(f"m{k}.bin", len(data), 1)]))
        seeding.append(str(save / f"m{k}.bin"))
        library.append(str(lib))
    cat = Catalog.open(cfg.catalog, marker_roots=[p.path for p in cfg.pools])  # as the CLI: reads walk from the roots
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    yield SimpleNamespace(cfg=cfg, cat=cat, qbt=qbt, seeding=seeding, library=library)
    cat.close()


def _count_calls(monkeypatch, module, name: str) -> list[str]:
    """Paths passed to ``module.name`` by qbhook's snapshot and hashing code. Not counted: the
    filesystem identification's realpath, which runs again whenever the machine's mount table
    changes (another process mounting anything) and has nothing to do with the files' count."""
    calls: list[str] = []
    real = getattr(module, name)

    def counting(p, *a, **k):
        if sys._getframe(1).f_code.co_filename.endswith(("snapshot.py", "hashing.py", "store.py", "scan.py")):
            calls.append(full_path(p, k.get("dir_fd")))
        return real(p, *a, **k)

    monkeypatch.setattr(module, name, counting)
    return calls


def test_a_convergence_build_looks_at_and_reads_each_end_of_a_pair_once(bed, monkeypatch):
    lstats = _count_calls(monkeypatch, os, "lstat")
    reads = _count_calls(monkeypatch, hashing, "hash_file")
    snap = build_snapshot(bed.cfg, bed.cat, [bed.qbt])
    monkeypatch.undo()
    for path in bed.seeding + bed.library:
        # On the base: a seeding file lstat-ed by the snapshot and again by ensure_hashes, a
        # library file by ensure_hashes and again when adopted as the donor.
        assert lstats.count(path) <= 1, (path, lstats.count(path))
        assert reads.count(path) == 1, (path, reads.count(path))
    # ... and the facts are complete: every pair converges onto its library inode.
    plan = make_plan(snap, bed.cfg.policy)
    assert [g.action for g in plan.groups] == ["converge"] * PAIRS
    for path, lib in zip(bed.seeding, bed.library):
        step = next(s for g in plan.groups for s in g.steps if s.args["path"] == path)
        assert step.args["keep"]["ino"] == os.lstat(lib).st_ino
        assert snap.inodes[next(f.inode for t in snap.torrents for f in t.files if f.path == path)].blake3 == b3(
            Path(path).read_bytes()
        )


def test_a_convergence_build_does_not_read_the_rows_of_its_own_inodes_again(bed):
    statements: list[str] = []
    bed.cat.conn.set_trace_callback(statements.append)
    build_snapshot(bed.cfg, bed.cat, [bed.qbt])
    bed.cat.conn.set_trace_callback(None)
    # The seeding inodes' rows are read once (with their lstat); hashing them, learning the new
    # hashes and finding them among the donors' contents reads none of them again. Only the
    # library inodes (not in the snapshot before they are hashed) are read, twice: to be located
    # and hashed, then with their new hash to be adopted. On the base: 4 row reads per pair.
    reads = [s for s in statements if "LEFT JOIN paths p ON p.inode = i.id" in s]
    assert len(reads) <= 3, reads


def test_a_path_swapped_for_another_file_before_it_is_opened_gets_no_hash(bed, monkeypatch):
    """A path string is not identity: ensure_hashes locates an inode by one of its paths, then opens
    that path. If another file took the name in between, its content must not be stored as the
    located inode's hash (on the base it was: the wrong hash, valid for the wrong stat)."""
    victim, other = bed.seeding[0], bed.seeding[1]
    row = bed.cat.inode_by_key(bed.cat.fs_for_path(victim), os.lstat(victim).st_ino)
    real = hashing.hash_file

    def swap_then_hash(path, dir_fd=None):
        if full_path(path, dir_fd) == victim:
            os.rename(victim, victim + ".old")  # keeps the located inode alive under another name
            os.link(other, victim)
        return real(path, dir_fd=dir_fd)

    monkeypatch.setattr(hashing, "hash_file", swap_then_hash)
    rep = ensure_hashes(bed.cat, [row.id], settle_seconds=0)
    assert rep.missing == [row.id] and rep.hashed == 0
    assert bed.cat.inode(row.id).hash is None


def test_a_located_inode_is_hashed_without_another_lookup_and_only_if_it_still_is_that_inode(bed, monkeypatch):
    a, b = bed.seeding[0], bed.seeding[1]
    fs = bed.cat.fs_for_path(a)
    sa, sb = os.lstat(a), os.lstat(b)
    ra, rb = (bed.cat.inode_by_key(fs, s.st_ino) for s in (sa, sb))
    lstats = _count_calls(monkeypatch, os, "lstat")
    rep = ensure_hashes(
        bed.cat,
        [],
        settle_seconds=0,
        located={
            ra.id: Located(fs, a, sa.st_dev, sa.st_ino, sa.st_size),
            # b's path with a stat of another inode: what a swap after the caller's lstat looks like
            rb.id: Located(fs, b, sa.st_dev, sa.st_ino, sb.st_size),
        },
        keep_digests=True,
    )
    monkeypatch.undo()
    assert a not in lstats and b not in lstats
    assert rep.hashed == 1 and rep.missing == [rb.id]
    assert bed.cat.inode(ra.id).hash.hex() == b3(Path(a).read_bytes())
    assert bed.cat.inode(rb.id).hash is None
    digest, path, after = rep.digests[ra.id]
    assert digest == bed.cat.inode(ra.id).hash and path == a and after.st_ino == sa.st_ino


def test_small_files_of_one_filesystem_are_read_by_two_threads_and_big_ones_by_one_in_order(bed, monkeypatch):
    """On zfs-fuse a small file's read is round trips to the daemon: a second reader keeps it busy.
    Big files stay one sequential reader per filesystem, in the order given."""
    items = [(i, f"/p{i}", 10 if i % 3 else hashing.SMALL_FILE + i, 1, i) for i in range(3 * hashing.RESULT_BATCH)]
    parts = hashing._split_small(items)
    big = [it for it in items if it[2] >= hashing.SMALL_FILE]
    assert parts[0] == big and len(parts) == 1 + hashing.SMALL_READERS
    assert sorted(it for p in parts[1:] for it in p) == [it for it in items if it[2] < hashing.SMALL_FILE]
    assert hashing._split_small(items[:10]) == [items[:10]]  # a handful: not worth a second thread

    threads: list[str] = []
    both = threading.Event()  # each reader waits (5 s at most) until another one has started
    real = hashing.hash_file

    def hash_file(p, dir_fd=None):
        threads.append(threading.current_thread().name)
        if len(set(threads)) > 1:
            both.set()
        both.wait(5)
        return real(p, dir_fd=dir_fd)

    monkeypatch.setattr(hashing, "RESULT_BATCH", 2)  # the bed's 24 files count as "many"
    monkeypatch.setattr(hashing, "hash_file", hash_file)
    ids = [r[0] for r in bed.cat.conn.execute("SELECT id FROM inodes")]
    rep = ensure_hashes(bed.cat, ids, settle_seconds=0)
    assert rep.hashed == 2 * PAIRS and len(set(threads)) == hashing.SMALL_READERS


def test_placing_many_inodes_links_normalizes_the_roots_once(monkeypatch):
    from qbhook import paths
    from qbhook.decide import facts

    roots = ["/p/seeding/", "/p/seeding2"]
    paths.within_any.cache_clear()  # this configuration's roots not met yet
    calls: list[str] = []
    real = os.path.normpath

    def counting(p):
        # split_links' own, or those of the containment test it asks (paths.within_any)
        if sys._getframe(1).f_code.co_filename.endswith(("facts.py", "paths.py")):
            calls.append(p)
        return real(p)

    monkeypatch.setattr(os.path, "normpath", counting)
    answers = [facts.split_links([f"/p/seeding/T{k}/f", f"/p/lib/M{k}/f", "/p/seeding2//x"], roots) for k in range(50)]
    monkeypatch.undo()
    # the answers themselves: each path on its side, canonical (the doubled slash gone)
    assert answers[7] == (("/p/seeding/T7/f", "/p/seeding2/x"), ("/p/lib/M7/f",))
    # on the base: both roots normpath-ed again for every inode (100 calls)
    assert sorted(calls) == sorted(roots), calls
