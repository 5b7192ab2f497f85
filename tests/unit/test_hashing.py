import os
import signal
import sqlite3
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import blake3
import pytest

from qbhook.catalog import hashing
from qbhook.catalog.db import Tx
from qbhook.catalog.hashing import ensure_hashes, hash_file
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import CarryProof, Catalog
from qbhook.dirfd import Pin
from qbhook.errors import NotRegularFile
from tests.helpers import folder_chain, seeded_catalog, write
from tests.swap import swap, swap_after_first_look
from tests.timebox import run_bounded, timebox


@pytest.fixture
def env(tmp_path):
    with seeded_catalog(tmp_path, as_cli=True) as e:
        yield e


def old(path):
    t = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(t, t))
    return path


def test_hash_matches_reference_blake3(tmp_path, monkeypatch):
    data = os.urandom(3 * hashing.BUF_SIZE + 12345)
    p = write(tmp_path / "f", data)
    assert hash_file(p).digest == blake3.blake3(data).digest()
    monkeypatch.setattr(hashing, "MMAP_WORKERS", False)  # the read() path, several buffers
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
    with Pin.at(str(a)) as pin:  # held across qbhook's own act, from the stat it checked
        os.link(a, stash / "b")
        st = os.lstat(stash / "b")
        cat.record_path(stash / "b", "stash", st=st, carry=CarryProof.across(pin, st))
    with Pin.at(str(a)) as pin:
        os.rename(stash / "a", stash / "c")
        st = os.lstat(stash / "c")
        cat.record_path(stash / "c", "stash", st=st, carry=CarryProof.across(pin, st))
    cat.forget_path(stash / "a")
    r = ensure_hashes(cat, _ids(cat), settle_seconds=60)
    assert (r.hashed, r.cached) == (0, 1)


def test_a_batch_record_of_own_links_carries_the_hash_over_as_one_record_each_does(env):
    """record_paths(carry=...), the relink batch's record, keeps a hash exactly where
    record_path(carry=...) would: on the linked inode whose size and mtime did not move,
    not on one whose content changed, and not without a proof."""
    cfg, cat, stash = env
    a = old(write(stash / "a", b"content"))
    changed = old(write(stash / "changed", b"before"))
    foreign = old(write(stash / "foreign", b"other"))
    scan_pool(cat, cfg.primary, cfg.scan)
    ensure_hashes(cat, _ids(cat), settle_seconds=60)
    time.sleep(0.01)
    pins = {p: Pin.at(str(f)) for p, f in ((str(stash / "b"), a), (str(stash / "b2"), a), (str(changed), changed))}
    os.link(a, stash / "b")
    os.link(a, stash / "b2")
    write(changed, b"after!")  # same size, new mtime: the hash must not survive
    os.link(foreign, stash / "foreign2")
    stats = {p: os.lstat(p) for p in pins}
    proofs = {p: CarryProof.across(pins[p], stats[p]) for p in pins}
    for pin in pins.values():
        pin.close()
    n = cat.record_paths(
        [(str(stash / "b"), "stash"), (str(stash / "b2"), "stash"), (str(changed), "stash")],
        stats=stats,
        carry=proofs,
    )
    assert n == 3
    cat.record_paths([(str(stash / "foreign2"), "stash")])
    valid = dict(
        cat.conn.execute(
            "SELECT p.path, i.hash IS NOT NULL AND i.hash_size = i.size AND i.hash_mtime_ns = i.mtime_ns "
            "AND i.hash_ctime_ns = i.ctime_ns FROM paths p JOIN inodes i ON i.id = p.inode"
        ).fetchall()
    )
    assert valid[os.fsencode(stash / "a")] and valid[os.fsencode(stash / "b2")]
    assert not valid[os.fsencode(changed)] and not valid[os.fsencode(foreign)]
    r = ensure_hashes(cat, _ids(cat), settle_seconds=0)
    assert (r.hashed, r.cached) == (2, 1)


@pytest.mark.parametrize("given", ["the stat checked", "no stat"])
def test_an_own_link_carries_no_hash_that_went_stale_before_it(env, given):
    """Rewritten in place with its mtime set back (a tagger, ``touch -d``) before qbhook's own link:
    only the ctime tells, and the carry-over must not make the old hash valid for the new bytes."""
    cfg, cat, stash = env
    a = old(write(stash / "a", b"AAAA"))
    scan_pool(cat, cfg.primary, cfg.scan)
    ensure_hashes(cat, _ids(cat), settle_seconds=60)
    hashed = os.lstat(a)
    time.sleep(0.01)
    with open(a, "r+b") as f:
        f.write(b"BBBB")
    os.utime(a, ns=(hashed.st_atime_ns, hashed.st_mtime_ns))
    b = str(stash / "b")
    with Pin.at(str(a)) as pin:  # the content was checked under pin.st (its new bytes, read)
        os.link(a, b)
        st = os.lstat(b)
        given_carry = {"carry": {b: CarryProof.across(pin, st)}} if given == "the stat checked" else {}
        cat.record_paths([(b, "stash")], stats={b: st}, **given_carry)
    assert cat.inode_by_path(a).hash is None  # stale, and still known to be
    # The same record after a link of unchanged content, with the stat checked: carried.
    ensure_hashes(cat, _ids(cat), settle_seconds=0)
    c = str(stash / "c")
    with Pin.at(str(a)) as pin:
        os.link(a, c)
        st = os.lstat(c)
        cat.record_paths([(c, "stash")], stats={c: st}, carry={c: CarryProof.across(pin, st)})
    assert cat.inode_by_path(a).hash == blake3.blake3(b"BBBB").digest()


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
    with open(a, "r+b") as f:  # same size, new content, then hide it behind the old mtime
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
    """On the read() path (the mapping worker's own case is tested below)."""
    cfg, cat, stash = env
    monkeypatch.setattr(hashing, "MMAP_WORKERS", False)
    a = old(write(stash / "a", b"x" * (3 * hashing.BUF_SIZE)))
    scan_pool(cat, cfg.primary, cfg.scan)
    real = hashing.hash_fd

    def writer_during_read(fd, hasher=None, **kw):
        with open(a, "ab") as f:  # a download appending while we read
            f.write(b"more")
        return real(fd, hasher, **kw)

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


# --------------------------------------------------------------------------- only regular files
# Issue 9 finding 7: opening a FIFO for reading blocks until a writer comes, and reading
# /dev/zero never ends. Each check runs under a timebox so a regression fails, not hangs.


def _record_opened(monkeypatch) -> list[tuple[int, int]]:
    """(st_dev, st_ino) of every file or folder ``os.open`` opens from now on: what was opened,
    whatever path string or folder descriptor named it."""
    opened: list[tuple[int, int]] = []
    real = os.open

    def recording(path, flags, *a, dir_fd=None, **kw):
        fd = real(path, flags, *a, dir_fd=dir_fd, **kw)
        st = os.fstat(fd)
        opened.append((st.st_dev, st.st_ino))
        return fd

    monkeypatch.setattr(os, "open", recording)
    return opened


@pytest.fixture
def show(env, tmp_path):
    """A settled file in ``d/Show`` of the stash pool, in the catalog, and an outside folder with
    a file of the same name and another content."""
    cfg, cat, stash = env
    inside = old(write(stash / "d/Show/e.bin", b"inside"))
    outside = write(tmp_path / "outside/Show/e.bin", b"outside!")
    iid = cat.record_path(os.fsencode(inside), "stash")
    return cat, inside, outside, iid


def test_a_folder_swapped_after_the_lookup_is_not_followed_by_the_read(show, monkeypatch):
    """``Show`` becomes a symlink to an outside folder right after ensure_hashes' first look at the
    file (its lstat). Opened by its path string (7270715), the read went through the symlink: the
    outside file was opened and read, and only the same-inode check kept its hash out (the inode
    was left unhashed). Each reading thread walks from the root in a reader of its own, so the
    read meets the symlink and is refused: nothing outside is opened, and the inode is left for
    the next run (its hash, had it been read, would have been checked against the inode located)."""
    cat, inside, outside, iid = show
    swapped = swap_after_first_look(monkeypatch, inside, inside.parent, outside.parent)
    opened = _record_opened(monkeypatch)
    rep = ensure_hashes(cat, [iid], settle_seconds=0)
    monkeypatch.undo()
    assert swapped and os.path.islink(inside.parent)
    st = os.stat(outside)
    assert (st.st_dev, st.st_ino) not in opened
    assert (rep.hashed, rep.missing) == (0, [iid])
    assert cat.inode(iid).hash is None


def test_a_located_file_whose_folder_is_now_a_symlink_is_not_opened(show, monkeypatch):
    """The caller (a snapshot) lstat-ed the file, then ``Show`` was swapped for a symlink before
    ensure_hashes opens it. Main opened the outside file by its path (refused only after, by
    inode); walked from the root, the symlink is refused and nothing below it is opened."""
    cat, inside, outside, iid = show
    st = os.lstat(inside)
    loc = hashing.Located(cat.inode(iid).fs, str(inside), st.st_dev, st.st_ino, st.st_size)
    swap(inside.parent, outside.parent)
    opened = _record_opened(monkeypatch)
    rep = ensure_hashes(cat, [], settle_seconds=0, located={iid: loc})
    monkeypatch.undo()
    out = os.stat(outside)
    assert (out.st_dev, out.st_ino) not in opened
    assert (rep.hashed, rep.missing) == (0, [iid])
    assert cat.inode(iid).hash is None


def test_a_path_under_no_pool_root_is_still_read_by_its_string(show, tmp_path):
    """A catalog opened without pool roots (nothing to walk from): paths are read as before."""
    cat, inside, _outside, iid = show
    bare = Catalog.open(cat.conn.execute("PRAGMA database_list").fetchone()[2])
    try:
        assert bare.marker_roots == ()
        rep = ensure_hashes(bare, [iid], settle_seconds=0)
        assert rep.hashed == 1 and bare.inode(iid).hash == blake3.blake3(b"inside").digest()
    finally:
        bare.close()


def _specials(where):
    """A FIFO and, as root, a character device with /dev/zero's numbers (endless reads)."""
    where.mkdir(parents=True, exist_ok=True)
    fifo = where / "pipe"
    os.mkfifo(fifo)
    out = [fifo]
    if os.geteuid() == 0:
        dev = where / "zero"
        os.mknod(dev, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        out.append(dev)
    return out


def test_hash_and_sample_refuse_fifos_and_devices(tmp_path):
    specials = _specials(tmp_path) + [tmp_path]  # and a folder
    for p in specials:
        for fn in (hash_file, hashing.sample_file):
            with timebox(5, f"{fn.__name__}({p.name})"), pytest.raises(hashing.NotRegularFile, match="not a regular"):
                fn(os.fsencode(p))
    if os.geteuid() != 0:
        pytest.skip("character device check needs root (mknod); the FIFO case ran")


def test_open_regular_does_not_follow_symlinks(tmp_path):
    target = write(tmp_path / "t.bin", b"data")
    os.symlink(target, tmp_path / "link")
    with pytest.raises(OSError):
        hashing.open_regular(os.fsencode(tmp_path / "link"))
    fd, st = hashing.open_regular(os.fsencode(target))
    assert st.st_size == 4
    try:
        assert os.read(fd, 10) == b"data"
    finally:
        os.close(fd)


def test_record_path_refuses_non_regular_files(env, tmp_path):
    _cfg, cat, stash = env
    for p in _specials(stash / "data/media/torrents/seeding/odd"):
        with timebox(5, "record_path"), pytest.raises(NotRegularFile, match="not a regular file"):
            cat.record_path(os.fsencode(p), "stash")
    assert cat.counts()["inodes"] == 0


def test_ensure_hashes_skips_fifo_rows_left_by_older_catalogs(env):
    """A catalog written before record_path refused FIFOs may hold one; hashing must not hang on it."""
    cfg, cat, stash = env
    seed = stash / "data/media/torrents/seeding"
    empty = old(write(seed / "empty.bin", b""))
    ids = [cat.record_path(os.fsencode(empty), "stash")]
    for p in _specials(seed / "odd"):
        st = os.lstat(p)
        fs = cat.fs_for_path(os.fsencode(p), st.st_dev)
        with Tx(cat.conn) as c:  # what main's record_path did
            ids.append(cat.upsert(c, "stash", os.fsencode(p), fs, st, None))

    def child():
        rep = ensure_hashes(Catalog.open(cfg.catalog), ids, settle_seconds=0)
        return rep.hashed, rep.missing

    hashed, missing = run_bounded(child, 20, "ensure_hashes")
    assert hashed == 1 and sorted(missing) == sorted(ids[1:])
    assert cat.inode(ids[0]).hash == blake3.blake3(b"").digest()


# ------------------------------------------------------------ big files: mmap in a worker process


@pytest.fixture
def workers(monkeypatch):
    """A fresh worker pool for the test; its workers are stopped afterwards."""
    idle: list = []
    monkeypatch.setattr(hashing, "_idle", idle)
    monkeypatch.setattr(hashing, "_workers_broken", False)
    yield idle
    for w in idle:
        w.close()


def _zeros_digest(size: int) -> bytes:
    h, block = blake3.blake3(), bytes(16 * 2**20)
    for off in range(0, size, len(block)):
        h.update(block[: min(len(block), size - off)])
    return h.digest()


def _sparse(path, size: int):
    with open(path, "wb") as f:
        f.truncate(size)
    return old(path)


def _when_mapped(pid: int, path, action, timeout: float = 20.0) -> threading.Thread:
    """Run ``action`` as soon as process ``pid`` has ``path`` mapped (read from /proc/PID/maps)."""
    name = os.fsencode(os.path.realpath(path))

    def watch():
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with open(f"/proc/{pid}/maps", "rb") as f:
                    if name in f.read():
                        action()
                        return
            except OSError:
                return

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _warm_worker(tmp_path, workers) -> int:
    """Hash one big file so that a worker sits idle in the pool; return its pid."""
    data = os.urandom(hashing.MMAP_MIN + 4096)
    assert hash_file(write(tmp_path / "warm", data)).digest == blake3.blake3(data).digest()
    assert len(workers) == 1, "a big file was not hashed by a worker"
    return workers[0].proc.pid


def test_big_file_is_hashed_in_a_worker_and_matches_reference(tmp_path, workers):
    pid = _warm_worker(tmp_path, workers)
    data = os.urandom(3 * hashing.MMAP_MIN + 12345)
    res = hash_file(write(tmp_path / "big", data))
    assert res.digest == blake3.blake3(data).digest() and res.stable
    assert [w.proc.pid for w in workers] == [pid]  # reused, not one process per file


def test_file_truncated_while_mapped_kills_only_the_worker(env, tmp_path, workers, caplog):
    """SIGBUS from a file that shrinks under the mapping ends the worker; the parent re-reads the
    file with read(), sees it changed, and caches nothing."""
    cfg, cat, stash = env
    big = _sparse(stash / "growing.mkv", 2 * 2**30)
    scan_pool(cat, cfg.primary, cfg.scan)
    pid = _warm_worker(tmp_path, workers)
    worker = workers[0]
    watcher = _when_mapped(pid, big, lambda: os.truncate(big, 4096))
    r = ensure_hashes(cat, _ids(cat), settle_seconds=0)
    watcher.join()
    assert worker.proc.returncode == -signal.SIGBUS
    assert "hash worker died (SIGBUS)" in caplog.text
    assert r.hashed == 0 and len(r.unsettled) == 1
    assert cat.inode_by_path(big).hash is None
    assert worker not in workers  # the dead worker is not reused ...
    data = os.urandom(hashing.MMAP_MIN)
    assert hash_file(write(tmp_path / "next", data)).digest == blake3.blake3(data).digest()
    assert len(workers) == 1 and workers[0] is not worker  # ... a new one takes over


def test_worker_killed_mid_file_falls_back_to_read(tmp_path, workers, caplog):
    size = 512 * 2**20
    big = _sparse(tmp_path / "quiet.bin", size)
    pid = _warm_worker(tmp_path, workers)
    watcher = _when_mapped(pid, big, lambda: os.kill(pid, signal.SIGKILL))
    res = hash_file(big)
    watcher.join()
    assert "hash worker died (SIGKILL)" in caplog.text
    assert res.digest == _zeros_digest(size) and res.stable


def test_no_worker_process_means_read_path(tmp_path, workers, monkeypatch, caplog):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    data = os.urandom(hashing.MMAP_MIN + 1)
    assert hash_file(write(tmp_path / "big", data)).digest == blake3.blake3(data).digest()
    assert hashing._workers_broken and not workers
    assert "cannot start a hash worker" in caplog.text


def test_worker_ignores_modules_in_the_working_folder(tmp_path, workers, monkeypatch):
    """The daemon runs as root; a blake3.py planted in its working folder must not run in a worker."""
    marker = tmp_path / "planted-code-ran"
    (tmp_path / "blake3.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    data = os.urandom(hashing.MMAP_MIN + 1)
    assert hash_file(write(tmp_path / "big", data)).digest == blake3.blake3(data).digest()
    assert len(workers) == 1 and not marker.exists()


def test_at_most_max_idle_workers_are_kept(tmp_path, workers):
    data = os.urandom(hashing.MMAP_MIN)
    p = write(tmp_path / "big", data)
    with ThreadPoolExecutor(max_workers=4) as ex:  # four threads hashing at once: four workers
        digests = list(ex.map(lambda _i: hash_file(p).digest, range(16)))
    assert digests == [blake3.blake3(data).digest()] * 16
    assert 1 <= len(workers) <= hashing.MAX_IDLE_WORKERS


def test_file_the_worker_cannot_map_is_read_and_the_worker_kept(tmp_path, workers, monkeypatch):
    """A file emptied between the parent's fstat and the worker's mmap cannot be mapped: the
    worker says so and stays in service, and the read() path gives the verdict (changed)."""
    pid = _warm_worker(tmp_path, workers)
    big = write(tmp_path / "shrinking", os.urandom(hashing.MMAP_MIN))
    real = hashing._Worker.hash

    def emptied_first(self, fd):
        os.truncate(big, 0)
        return real(self, fd)

    monkeypatch.setattr(hashing._Worker, "hash", emptied_first)
    res = hash_file(big)
    assert res.digest == hashing.EMPTY_HASH and not res.stable
    assert [w.proc.pid for w in workers] == [pid] and workers[0].proc.poll() is None


def test_a_batch_record_with_its_own_stats_looks_each_device_up_once(env, monkeypatch):
    """record_paths given the caller's stats (a relink batch's: 10,000 paths) asks the filesystem
    of each st_dev once, not once per path (each ask polls the mount table); a path it has no
    stat for is still looked at, and its filesystem asked, on its own."""
    cfg, cat, stash = env
    paths = [str(write(stash / f"f{i}", b"x" * i)) for i in range(5)]
    asked = []
    real = cat.fs_for_path
    monkeypatch.setattr(cat, "fs_for_path", lambda p, dev=None, **kw: asked.append(dev) or real(p, dev, **kw))
    n = cat.record_paths([(p, "stash") for p in paths], stats={p: os.lstat(p) for p in paths[:4]})
    assert n == 5
    dev = os.lstat(paths[0]).st_dev
    assert asked == [dev, dev]  # the four stats given, then the one looked at
    recorded = {r[0] for r in cat.conn.execute("SELECT path FROM paths")}
    assert recorded == {os.fsencode(p) for p in paths}


def test_a_future_mtime_settles_by_its_ctime_and_is_cached(env):
    """A file dated in the future (a tar of future-dated files, a skewed clock) never aged by its
    mtime: re-read by every sweep, never cached, its group blocked. Setting the mtime moved the
    ctime, which no one can set: it settles by that."""
    cfg, cat, stash = env
    a = write(stash / "a", b"from the future")
    t = time.time_ns() + 365 * 86400 * 10**9
    os.utime(a, ns=(t, t))
    scan_pool(cat, cfg.primary, cfg.scan)
    r = ensure_hashes(cat, _ids(cat), settle_seconds=0)
    assert (r.hashed, r.unsettled) == (1, [])
    assert cat.inode_by_path(a).hash == blake3.blake3(b"from the future").digest()
    assert ensure_hashes(cat, _ids(cat), settle_seconds=0).cached == 1  # read once, not every sweep


def test_the_settle_rule_ages_the_mtime_or_a_future_one_s_ctime():
    from qbhook.catalog.hashing import settled

    now, s = 1_000_000.0, 10**9
    assert settled(int(now - 120) * s, int(now) * s, 60, now)  # mtime 2 min old: settled
    assert not settled(int(now - 30) * s, int(now - 30) * s, 60, now)  # written 30 s ago
    future = int(now + 86400) * s
    assert settled(future, int(now - 120) * s, 60, now)  # future mtime, set 2 min ago
    assert not settled(future, int(now - 30) * s, 60, now)  # ... or written 30 s ago


def test_a_row_id_reused_during_the_read_does_not_get_the_old_file_s_hash(env, monkeypatch):
    """inodes.id is not AUTOINCREMENT: if the hashed file's row is dropped while it is read (a
    scan by another process: the file gone) and a new row takes that id, the digest must not
    land on it: the new row is another file."""
    cfg, cat, stash = env
    a = old(write(stash / "a", b"the old file"))
    b = old(write(stash / "b", b"another file"))
    scan_pool(cat, cfg.primary, cfg.scan)
    ia = cat.inode_by_path(a).id
    real = hashing.hash_fd

    def swapped_meanwhile(*args, **kw):
        res = real(*args, **kw)
        other = sqlite3.connect(cfg.catalog, isolation_level=None)  # another process's scan
        with Tx(other) as c:  # a's row dropped, b's row re-made under a's id
            fs = c.execute("SELECT fs FROM inodes WHERE id=?", (ia,)).fetchone()[0]
            c.execute("DELETE FROM paths")
            c.execute("DELETE FROM inodes")
            st = os.lstat(b)
            c.execute(
                "INSERT INTO inodes(id, fs, ino, size, mtime_ns, ctime_ns, nlink) VALUES (?,?,?,?,?,?,?)",
                (ia, fs, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink),
            )
        other.close()
        return res

    monkeypatch.setattr(hashing, "hash_fd", swapped_meanwhile)
    ensure_hashes(cat, [ia], settle_seconds=60)
    assert cat.conn.execute("SELECT hash, ino FROM inodes WHERE id=?", (ia,)).fetchone() == (None, os.lstat(b).st_ino)


def test_no_hash_is_carried_onto_a_file_that_reused_the_inode_number(tmp_path):
    """Review finding R10 (its reproduction, as the delete path meets it): one link of a two-link
    inode unlinked by qbhook; a writer removes the other link and creates a file with the old size
    and mtime there, which gets the freed inode number (ext4, as tmp_path is here). Equal
    (dev, ino) made the old hash valid for the new bytes. A carry now needs a ``Pin`` held from
    the check to the recorded stat, and a pinned inode's number is never handed out again."""
    d = tmp_path / "pool" / "s"
    d.mkdir(parents=True)
    cat = Catalog.open(tmp_path / "cat.sqlite")
    f, g = str(d / "f.bin"), str(d / "g.bin")
    write(f, b"A" * 4096)
    os.link(f, g)
    old(f)
    iid = cat.record_path(f, "p")
    cat.record_path(g, "p")
    ensure_hashes(cat, [iid], settle_seconds=60)
    pin = Pin.at(g)
    checked = os.lstat(g)
    os.unlink(f)
    cat.forget_path(f)
    ino = checked.st_ino
    os.unlink(g)  # the writer; the pin keeps the inode (and its number) alive
    write(g, b"B" * 4096)
    os.utime(g, ns=(checked.st_atime_ns, checked.st_mtime_ns))
    pst = os.lstat(g)
    assert CarryProof.across(pin, pst, checked) is None or pst.st_ino == ino  # never proven another file
    cat.record_path(g, "p", st=pst, carry=CarryProof.across(pin, pst, checked))
    pin.close()
    assert cat.inode_by_path(g).hash is None
    # Without a pin, a reused number is indistinguishable: a closed pin proves nothing.
    assert CarryProof.across(pin, pst) is None
    r = ensure_hashes(cat, [cat.inode_by_path(g).id], settle_seconds=0)
    assert (r.hashed, r.cached) == (1, 0) and cat.inode_by_path(g).hash == blake3.blake3(b"B" * 4096).digest()
    cat.close()


def test_a_file_at_the_bottom_of_a_folder_chain_1200_deep_is_hashed(env):
    """R52: the verified walk to its folder recursed once per level (RecursionError, which no
    caller catches: every hashing caller of that inode broke)."""
    cfg, cat, stash = env
    with folder_chain(stash / "data/media/torrents/seeding", 1200, b"bottom", mtime_ns=10**18):
        scan_pool(cat, cfg.primary, cfg.scan)
        ids = [r[0] for r in cat.conn.execute("SELECT id FROM inodes")]
        assert len(ids) == 1
        rep = ensure_hashes(cat, ids, settle_seconds=0)
        assert (rep.hashed, rep.missing) == (1, [])
        assert cat.conn.execute("SELECT hash FROM inodes").fetchone()[0] == blake3.blake3(b"bottom").digest()
