"""find_duplicates: partials and small files are read through a window of open files; what they read must
still be the catalogued inode, and the sets must be those of a one-file-at-a-time reader."""

import os
import sqlite3
import threading
import time
from pathlib import Path

import blake3
import pytest

from qbhook.catalog import dupes, hashing
from qbhook.catalog.db import connect
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


def test_same_first_block_different_tail_is_never_a_set_and_sets_carry_full_blake3(env):
    """Partials (first 4 KiB) only split candidates: two files whose first blocks match but whose
    tails differ are hashed in full and never reported together; every reported set carries the
    full BLAKE3 of its content."""
    cfg, cat, stash, pool = env
    head = os.urandom(dupes.PARTIAL_SIZE)
    a = head + os.urandom(100_000)
    b = head + a[dupes.PARTIAL_SIZE : -1] + bytes([a[-1] ^ 1])  # same size and head, last byte differs
    put(stash / SEED / "A/a.bin", a)
    put(pool / SEED / "A/a.bin", a)
    put(stash / SEED / "B/b.bin", b)
    put(stash / SEED / "L/lonely.bin", os.urandom(100_001))  # a size of its own: never read
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    sets = dupes.find_duplicates(cat, settle_seconds=0)
    assert [(s.hash, sorted(p for c in s.copies for p in c.paths)) for s in sets] == [
        (b3(a), sorted([str(stash / SEED / "A/a.bin"), str(pool / SEED / "A/a.bin")]))
    ]
    stored = dict(cat.conn.execute("SELECT p.path, i.hash FROM inodes i JOIN paths p ON p.inode = i.id"))
    assert stored[os.fsencode(stash / SEED / "B/b.bin")] == blake3.blake3(b).digest()  # tail told them apart
    assert stored[os.fsencode(stash / SEED / "L/lonely.bin")] is None
    lonely = cat.conn.execute(
        "SELECT sample FROM inodes i JOIN paths p ON p.inode = i.id WHERE p.path = ?",
        (os.fsencode(stash / SEED / "L/lonely.bin"),),
    ).fetchone()[0]
    assert lonely is None


def test_an_older_versions_head_tail_sample_is_never_compared_with_a_partial(env):
    """A catalog written by an older version holds 32-byte head+tail samples; comparing one with
    a 16-byte partial of the same content would call equal files different and miss the set."""
    cfg, cat, stash, pool = env
    data = os.urandom(200_000)
    x = put(stash / SEED / "X/x.bin", data)
    put(pool / SEED / "X/x.bin", data)
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    old, st = hashing.sample_file(x)  # what the older version stored for x
    iid = cat.inode_by_path(x).id
    cat.store_samples([(iid, old, st.st_mtime_ns, st.st_ctime_ns)])
    sets = dupes.find_duplicates(cat, settle_seconds=0)
    assert [(s.hash, len(s.copies)) for s in sets] == [(b3(data), 2)]
    lengths = {r[0] for r in cat.conn.execute("SELECT length(sample) FROM inodes")}
    assert lengths == {dupes.PARTIAL_LEN}


def test_the_read_window_closes_every_descriptor_even_when_left_early(env, monkeypatch):
    cfg, cat, stash, pool = env
    monkeypatch.setattr(dupes, "LOOKAHEAD", 4)
    for i in range(20):
        put(stash / SEED / f"F/{i}.bin", b"%d" % i * 50)
    scan_pool(cat, cfg.pools[0], cfg.scan)
    where = {
        r[0]: (r[1], r[2], [r[3]])
        for r in cat.conn.execute("SELECT i.id, i.fs, i.ino, p.path FROM inodes i JOIN paths p ON p.inode = i.id")
    }
    jobs = dupes._jobs(where, list(where))
    before = len(os.listdir("/proc/self/fd"))
    it = dupes._read_each(jobs, dupes._full, dupes._on_fs(cat))
    first = [next(it) for _ in range(3)]
    assert len(os.listdir("/proc/self/fd")) <= before + 5  # at most LOOKAHEAD + 1 open at once
    it.close()
    assert len(os.listdir("/proc/self/fd")) == before
    assert [r[2].digest for r in first] == [blake3.blake3(Path(os.fsdecode(r[1])).read_bytes()).digest() for r in first]
    assert len(list(dupes._read_each(jobs, dupes._full, dupes._on_fs(cat)))) == 20
    assert len(os.listdir("/proc/self/fd")) == before


def test_sets_whose_partials_were_cached_by_an_earlier_run_are_still_hashed(env):
    """A first run that found the files still settling stores their partials but no full hash;
    the next run has nothing left to sample and must still hash the colliding ones (it once
    looked up no file locations then, and silently reported no set)."""
    cfg, cat, stash, pool = env
    data = os.urandom(50_000)  # above FULL_AT_ONCE: partial first
    put(stash / SEED / "A/a.bin", data)
    put(pool / SEED / "A/a.bin", data)
    put(stash / SEED / "B/b.bin", os.urandom(50_000))
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    assert dupes.find_duplicates(cat, settle_seconds=3600) == []  # just written: not settled
    assert cat.conn.execute("SELECT count(*) FROM inodes WHERE sample IS NOT NULL").fetchone()[0] == 3
    sets = dupes.find_duplicates(cat, settle_seconds=0)
    assert [(s.hash, len(s.copies)) for s in sets] == [(b3(data), 2)]


def _copies(stash: Path, pool: Path, sizes: list[int]) -> list[bytes]:
    """One content per size, stored once in each pool (two inodes each)."""
    contents = [os.urandom(n) for n in sizes]
    for i, data in enumerate(contents):
        put(stash / SEED / f"D{i}/f.bin", data)
        put(pool / SEED / f"D{i}/f.bin", data)
    return contents


def test_big_files_are_hashed_on_the_helper_while_the_caller_reads_the_small_ones(env, monkeypatch):
    """The overlap a first run relies on: ensure_hashes (big files) runs on the helper thread, not
    the caller's; everything it and the small files' reads stored is in the catalog once
    find_duplicates returns, and the sets are those of the contents."""
    cfg, cat, stash, pool = env
    contents = _copies(stash, pool, [2 * hashing.MULTITHREAD_MIN, 3000, 70_000])
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    threads = []
    real = dupes.ensure_hashes
    monkeypatch.setattr(dupes, "ensure_hashes", lambda *a, **k: threads.append(threading.get_ident()) or real(*a, **k))
    sets = dupes.find_duplicates(cat, settle_seconds=0)
    assert threads and threading.get_ident() not in threads
    assert sorted(s.hash for s in sets) == sorted(b3(d) for d in contents)
    other = Catalog.open(cfg.catalog)  # another connection sees every hash committed
    try:
        assert other.counts()["hashed"] == 2 * len(contents)
    finally:
        other.close()
    assert not any(t.name == "qbhook-dupes-writer" for t in threading.enumerate())


def test_a_write_that_fails_on_the_helper_stops_the_run_with_its_error(env, monkeypatch):
    """A commit the helper thread could not make is the run's error, raised to the caller once the
    helper has stopped: never a report built on hashes that were silently not stored."""
    cfg, cat, stash, pool = env
    _copies(stash, pool, [3000, 5000])
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    real = Catalog.store_hashes

    def store_hashes(self, rows):
        if threading.current_thread() is not threading.main_thread():
            raise sqlite3.OperationalError("disk I/O error")
        return real(self, rows)

    monkeypatch.setattr(Catalog, "store_hashes", store_hashes)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        dupes.find_duplicates(cat, settle_seconds=0)
    assert not any(t.name == "qbhook-dupes-writer" for t in threading.enumerate())


def test_a_catalog_in_memory_hashes_on_the_calling_thread(tmp_path):
    """No second connection can reach a catalog in memory: the work is then done inline."""
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    contents = _copies(stash, pool, [3000, 70_000])
    cat = Catalog(connect(":memory:"))
    try:
        for p in cfg.pools:
            scan_pool(cat, p, cfg.scan)
        sets = dupes.find_duplicates(cat, settle_seconds=0)
        assert sorted(s.hash for s in sets) == sorted(b3(d) for d in contents)
        assert cat.counts()["hashed"] == 4
    finally:
        cat.close()


def test_a_small_file_that_grew_after_its_stat_is_hashed_whole_and_not_stable(tmp_path):
    """The one-pread read of a small file takes it whole only when it got exactly the fstat'ed size:
    a file appended to meanwhile is hashed to its end and reported unstable (never cached)."""
    path = put(tmp_path / "f.bin", os.urandom(5000))
    fd, st = hashing.open_regular(path)
    try:
        with open(path, "ab") as f:
            f.write(b"more")
        res = dupes._full(fd, st)
    finally:
        os.close(fd)
    assert res.digest == blake3.blake3(Path(os.fsdecode(path)).read_bytes()).digest()
    assert not res.stable


def test_the_read_window_stays_within_a_quarter_of_the_descriptor_limit(env, monkeypatch):
    """Under a low RLIMIT_NOFILE the window shrinks instead of failing opens (a file whose open
    fails is left out of the run): every set is still found."""
    import resource

    cfg, cat, stash, pool = env
    contents = _copies(stash, pool, [1000 + i for i in range(40)])
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    monkeypatch.setattr(resource, "getrlimit", lambda what: (64, 64))
    assert dupes._window() == 16
    peak = 0
    real = hashing.open_regular

    def counting(path):
        nonlocal peak
        peak = max(peak, len(os.listdir("/proc/self/fd")))
        return real(path)

    monkeypatch.setattr(dupes, "open_regular", counting)
    before = len(os.listdir("/proc/self/fd"))
    sets = dupes.find_duplicates(cat, settle_seconds=0)
    assert sorted(s.hash for s in sets) == sorted(b3(d) for d in contents)
    assert peak <= before + 16 + 8  # the window, plus the helper's catalog connection


def test_a_run_given_up_lets_the_helper_end_its_piece_and_drops_the_rest(env, monkeypatch):
    """Ctrl-C or an error on the calling thread: the big files' piece in hand is finished (and its
    hashes kept), the pieces still queued are never started, and the error reaches the caller."""
    cfg, cat, stash, pool = env
    _copies(stash, pool, [2 * hashing.MULTITHREAD_MIN, 2 * hashing.MULTITHREAD_MIN + 4096, 3000])
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    monkeypatch.setattr(dupes, "BIG_JOB", 1)  # one big file per piece: four pieces
    helpers, calls = [], []
    real_start, real_ensure = dupes._Helper.start, dupes.ensure_hashes
    monkeypatch.setattr(
        dupes._Helper, "start", classmethod(lambda cls, c: helpers.append(real_start(c)) or helpers[-1])
    )

    def ensure(c, ids, **kw):
        calls.append(ids)
        deadline = time.monotonic() + 10
        while len(calls) == 1 and not helpers[0]._abandoned and time.monotonic() < deadline:
            time.sleep(0.01)  # the first piece is still in hand when the caller gives up
        return real_ensure(c, ids, **kw)

    def give_up(*_a, **_k):
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)  # the helper has taken the first piece
        raise KeyboardInterrupt

    monkeypatch.setattr(dupes, "ensure_hashes", ensure)
    monkeypatch.setattr(dupes, "_hash_small", give_up)
    with pytest.raises(KeyboardInterrupt):
        dupes.find_duplicates(cat, settle_seconds=0)
    assert len(calls) == 1 and helpers[0]._abandoned
    assert cat.counts()["hashed"] == 1
    assert not any(t.name == "qbhook-dupes-writer" for t in threading.enumerate())


def test_running_out_of_descriptors_stops_the_run_instead_of_leaving_a_file_out(env, monkeypatch):
    """EMFILE is not the file's fault: leaving that file out would drop its whole set from the
    report without a word. The run stops with a one-line error naming the limit instead."""
    import errno

    from qbhook.errors import OutOfDescriptors

    cfg, cat, stash, pool = env
    data = os.urandom(50_000)
    put(stash / SEED / "A/a.mkv", data)
    victim = put(pool / SEED / "A/a.mkv", data)
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    real = dupes.open_regular

    def open_regular(path, *a, **k):
        if os.fsencode(path) == os.fsencode(victim):
            raise OSError(errno.EMFILE, "Too many open files")
        return real(path, *a, **k)

    monkeypatch.setattr(dupes, "open_regular", open_regular)
    with pytest.raises(OutOfDescriptors, match="too many open files while opening .*a.mkv"):
        dupes.find_duplicates(cat, settle_seconds=0)
    monkeypatch.setattr(dupes, "open_regular", real)
    assert [len(s.copies) for s in dupes.find_duplicates(cat, settle_seconds=0)] == [2]
