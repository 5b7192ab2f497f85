"""What an unchanged snapshot build costs (issue 11, docs/benchmarks.md §8), and that it stays live.

The catalog is read in batches (one query per torrent, not three per file), each torrent file is
lstat-ed exactly once per build (never zero: its link count and identity are re-read every time),
and a destination under a folder that is not there is not lstat-ed at all.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from qbhook.catalog.store import Catalog
from qbhook.decide.snapshot import build_snapshot
from tests.helpers import make_config, write
from tests.swap import record_looks
from tests.unit.test_executor import FakeQbt, FakeTorrent

FILES = 40


@pytest.fixture
def bed(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    cfg.cold.seeding_root.mkdir(parents=True)
    qbt = FakeQbt()
    for n, h in enumerate(("a" * 40, "b" * 40, "c" * 40)):
        save = cfg.primary.seeding_root / f"t{n}"
        rels = [f"T{n}/f{j:02d}.bin" for j in range(FILES)]
        for j, rel in enumerate(rels):
            write(save / rel, b"x" * (100 * n + j + 1))
        qbt.add(FakeTorrent(h, f"T{n}", str(save), [(rel, 100 * n + j + 1, 1) for j, rel in enumerate(rels)]))
    lib = stash / "media/movies/T0"
    lib.mkdir(parents=True)
    os.link(cfg.primary.seeding_root / "t0/T0/f00.bin", lib / "f00.bin")  # t0 stays: a library link
    cat = Catalog.open(cfg.catalog)
    cat.record_path(str(lib / "f00.bin"), "stash")  # as a scan would have
    yield SimpleNamespace(cfg=cfg, cat=cat, qbt=qbt, lib=lib)
    cat.close()


def build(bed):
    return build_snapshot(bed.cfg, bed.cat, [bed.qbt])


def test_an_unchanged_build_asks_the_catalog_per_torrent_not_per_file(bed):
    first = build(bed)  # records every file and hashes what the demotions need
    statements = []
    bed.cat.conn.set_trace_callback(statements.append)
    again = build(bed)
    bed.cat.conn.set_trace_callback(None)
    files = sum(len(t.files) for t in again.torrents)
    assert files == 3 * FILES
    # three per file before (inode_by_key, inode, paths_of) plus two per hashed inode: 440 here
    assert len(statements) <= 3 + 3 * 2, statements
    assert again.inodes == first.inodes and again.torrents == first.torrents


def test_each_torrent_file_and_link_is_lstat_ed_exactly_once_per_build(bed, monkeypatch):
    build(bed)
    calls = record_looks(monkeypatch)  # by path or relative to its folder's descriptor
    snap = build(bed)
    for t in snap.torrents:
        for f in t.files:
            assert calls.count(f.path) == 1, f.path
    assert calls.count(str(bed.lib / "f00.bin")) == 1  # the library link is still checked to be that inode


def test_a_file_replaced_between_builds_is_seen_by_the_next_build(bed):
    snap = build(bed)
    path = str(bed.cfg.primary.seeding_root / "t1/T1/f03.bin")
    old = next(f.inode for t in snap.torrents for f in t.files if f.path == path)
    write(path + ".new", b"y" * 104)  # same size, made while the old inode lives: a new inode number
    os.replace(path + ".new", path)
    os.link(path, path + ".extra")  # and a second link the catalog has not seen
    snap = build(bed)
    new = next(f.inode for t in snap.torrents for f in t.files if f.path == path)
    assert new != old and new[1] == os.stat(path).st_ino
    assert snap.inodes[new].nlink == 2  # the live link count, not the catalog's


def test_a_destination_under_a_missing_folder_is_not_lstat_ed_and_an_existing_one_is_seen(bed, monkeypatch):
    build(bed)
    dst = str(bed.cfg.cold.seeding_root / "t1/T1/f00.bin")
    calls = record_looks(monkeypatch)
    snap = build(bed)
    assert dst in snap.existing and snap.existing[dst] is None
    assert dst not in calls and str(bed.cfg.cold.seeding_root / "t1") in calls  # its folder was looked at
    write(dst, b"z")
    snap = build(bed)
    assert snap.existing[dst] == (snap.existing[dst][0], os.stat(dst).st_ino)


def test_many_seed_only_files_of_one_size_cost_one_size_query_not_one_each(tmp_path):
    """Same-pool convergence needs the same-size inodes of every seed-only file's dataset: asked
    once per batch of sizes, the rows read grow with the files, not with their square (asked per
    inode, 60 files of one size read 60 x 60 rows; a 50k-file bed with 9 sizes ran 20 minutes)."""
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    cfg.cold.seeding_root.mkdir(parents=True)
    qbt = FakeQbt()
    n = 60
    for k in range(n):
        save = cfg.primary.seeding_root / f"t{k}"
        write(save / f"T{k}/same.bin", b"%05d" % k)  # one size, different contents: no duplicates
        qbt.add(FakeTorrent(f"{k:040x}", f"T{k}", str(save), [(f"T{k}/same.bin", 5, 1)]))
    cat = Catalog.open(cfg.catalog)
    rows = []
    real = cat.inodes_of_sizes
    cat.inodes_of_sizes = lambda sizes: rows.append(r := real(sizes)) or r
    try:
        snap = build_snapshot(cfg, cat, [qbt])
    finally:
        cat.close()
    assert sum(len(r) for r in rows) <= 2 * n, [len(r) for r in rows]
    # ... and the comparison still happened: every file of the shared size was hashed
    assert all(snap.inodes[f.inode].blake3 for t in snap.torrents for f in t.files)


def _convergence_bed(tmp_path, n: int):
    """N torrents, each one seed-only copy of a library file (the *arr copied instead of linking)."""
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    cfg.cold.seeding_root.mkdir(parents=True)
    qbt = FakeQbt()
    cat = Catalog.open(cfg.catalog)
    for k in range(n):
        data = b"payload %05d " % k * (k + 1)
        lib = write(stash / f"media/movies/M{k}/m.bin", data)
        cat.record_path(str(lib), "stash")  # as a scan would have
        save = cfg.primary.seeding_root / f"t{k}"
        write(save / f"T{k}/m.bin", data)
        qbt.add(FakeTorrent(f"{k:040x}", f"T{k}", str(save), [(f"T{k}/m.bin", len(data), 1)]))
    return cfg, cat, qbt


@pytest.mark.parametrize("n", [4, 24])
def test_a_convergence_sweep_reads_the_catalog_in_batches_not_per_torrent_or_content(tmp_path, n):
    """The torrents' files, the donors of their contents and those donors' links are read in
    batches: an unchanged build's statements do not grow with the torrents (per torrent and per
    content they grew by 6 statements per pair, and 10,000 pairs took seconds, docs/benchmarks.md §9)."""
    cfg, cat, qbt = _convergence_bed(tmp_path, n)
    try:
        first = build_snapshot(cfg, cat, [qbt])  # records and hashes both ends of every pair
        statements: list[str] = []
        cat.conn.set_trace_callback(statements.append)
        again = build_snapshot(cfg, cat, [qbt])
        cat.conn.set_trace_callback(None)
    finally:
        cat.close()
    assert len(statements) <= 8, statements
    # ... and every pair is still seen whole: the library inode is a donor of its seeding copy
    assert again.inodes == first.inodes and again.content == first.content
    for t in again.torrents:
        fact = again.inodes[t.files[0].inode]
        donors = again.content[fact.content]
        assert len(donors) == 2 and t.files[0].inode in donors
        lib = next(again.inodes[k] for k in donors if k != t.files[0].inode)
        assert lib.other_paths == (str(cfg.primary.path / f"media/movies/M{t.name[1:]}/m.bin"),)


def test_files_split_over_several_lstat_batches_get_the_same_facts(tmp_path, monkeypatch):
    """A sweep's files are lstat-ed in bounded batches (memory); each batch's facts are whole."""
    import qbhook.decide.snapshot as snapshot_mod

    cfg, cat, qbt = _convergence_bed(tmp_path, 7)
    monkeypatch.setattr(snapshot_mod, "_LSTAT_BATCH", 3)  # 7 files: batches of 3, 3 and 1
    try:
        snap = build_snapshot(cfg, cat, [qbt])
    finally:
        cat.close()
    assert len(snap.torrents) == 7
    for t in snap.torrents:
        f = t.files[0]
        st = os.lstat(f.path)
        assert f.inode == (f.inode[0], st.st_ino) and snap.inodes[f.inode].seeding_paths == (f.path,)
        assert len(snap.content[snap.inodes[f.inode].content]) == 2  # its library copy found too
