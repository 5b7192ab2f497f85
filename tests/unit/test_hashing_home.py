"""Hashing that respects a home server: per-run budget, background priority, resumable, progress.

Each test pins one promise of ``qbhook.catalog.hashing.ensure_hashes`` (issue 11, part 5):

- the budget: no file is started once a run has hashed ``scan.hash_budget`` bytes, the rest
  stays unhashed and the next run picks it up;
- background hashing runs its threads and mmap workers at nice 19 and in the idle I/O class,
  and leaves the caller's own thread (the event server's) as it was;
- a kill loses at most the file in flight: results are committed as they finish;
- progress lines carry bytes/s and an ETA; a log line comes every LOG_INTERVAL seconds.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import blake3
import pytest

from qbhook.catalog import hashing
from qbhook.catalog.hashing import HashBudget, ensure_hashes
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.progress import Progress, Throughput
from tests.helpers import seeded_catalog, write


@pytest.fixture
def env(tmp_path):
    with seeded_catalog(tmp_path, as_cli=True) as (cfg, cat, stash):
        yield cfg, cat, stash / "data/media/torrents/seeding"


def _old(path):
    t = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(t, t))
    return path


def _files(cfg, cat, seed, n: int, size: int) -> list[int]:
    for i in range(n):
        _old(write(seed / f"f{i:02}.bin", os.urandom(size)))
    scan_pool(cat, cfg.primary, cfg.scan)
    return [r[0] for r in cat.conn.execute("SELECT id FROM inodes ORDER BY id")]


def _hashed(cat) -> int:
    return cat.conn.execute("SELECT count(*) FROM inodes WHERE hash IS NOT NULL").fetchone()[0]


def test_budget_stops_hashing_and_the_next_run_goes_on(env):
    cfg, cat, seed = env
    ids = _files(cfg, cat, seed, 10, 100_000)
    # one filesystem: one reader, files in order; the 3rd file starts at 200,000 < 250,000
    rep = ensure_hashes(cat, ids, settle_seconds=0, budget=250_000)
    assert (rep.hashed, len(rep.deferred), rep.deferred_bytes) == (3, 7, 700_000)
    assert rep.bytes_read == 300_000 and _hashed(cat) == 3
    # the next run: what was hashed is cached, the budget buys three more
    rep = ensure_hashes(cat, ids, settle_seconds=0, budget=250_000)
    assert (rep.cached, rep.hashed, len(rep.deferred)) == (3, 3, 4)
    # unlimited: the rest
    rep = ensure_hashes(cat, ids, settle_seconds=0, budget=0)
    assert (rep.cached, rep.hashed, rep.deferred) == (6, 4, [])
    assert _hashed(cat) == 10


def test_one_budget_is_shared_by_the_calls_of_a_run(env):
    cfg, cat, seed = env
    ids = _files(cfg, cat, seed, 4, 50_000)
    budget = HashBudget(60_000)
    first = ensure_hashes(cat, ids[:2], settle_seconds=0, budget=budget)
    second = ensure_hashes(cat, ids[2:], settle_seconds=0, budget=budget)
    assert (first.hashed, len(first.deferred)) == (2, 0)  # 0 then 50,000 < 60,000: both start
    assert (second.hashed, len(second.deferred)) == (0, 2)  # 100,000 spent: nothing more
    assert budget.as_dict() == {"limit": 60_000, "spent": 100_000, "deferred_files": 2, "deferred_bytes": 100_000}


def test_a_file_bigger_than_the_whole_budget_is_still_hashed_when_it_comes_first(env):
    cfg, cat, seed = env
    ids = _files(cfg, cat, seed, 2, 300_000)
    rep = ensure_hashes(cat, ids, settle_seconds=0, budget=1000)
    assert (rep.hashed, len(rep.deferred)) == (1, 1)


def _thread_priority() -> tuple[int, tuple[int, int]]:
    tid = threading.get_native_id()
    return os.getpriority(os.PRIO_PROCESS, tid), hashing.io_priority(tid)


def test_background_hashing_threads_run_idle_and_nice_and_the_caller_keeps_its_priority(env, monkeypatch):
    cfg, cat, seed = env
    ids = _files(cfg, cat, seed, 3, 10_000)
    before = _thread_priority()
    assert before[0] < hashing.BACKGROUND_NICE and before[1][0] != hashing.IOPRIO_CLASS_IDLE
    seen = []
    real = hashing.hash_file

    def recording(path, dir_fd=None):
        seen.append(_thread_priority())
        return real(path, dir_fd=dir_fd)

    monkeypatch.setattr(hashing, "hash_file", recording)
    ensure_hashes(cat, ids, settle_seconds=0, background=True)
    assert seen and all(s == (hashing.BACKGROUND_NICE, (hashing.IOPRIO_CLASS_IDLE, 0)) for s in seen), seen
    assert _thread_priority() == before  # the caller (the event server's thread) is untouched
    # foreground hashing (a CLI plan the user waits for) keeps the normal priority
    seen.clear()
    cat.conn.execute("UPDATE inodes SET hash = NULL")
    cat.conn.commit()
    ensure_hashes(cat, ids, settle_seconds=0)
    assert seen and all(s == before for s in seen), seen


def test_background_mmap_workers_inherit_the_low_priority_and_are_kept_apart(env, monkeypatch):
    cfg, cat, seed = env
    big = _old(write(seed / "big.bin", b""))
    with open(big, "r+b") as f:
        f.truncate(hashing.MMAP_MIN)  # sparse: hashed through a worker process
    _old(big)
    scan_pool(cat, cfg.primary, cfg.scan)
    ids = [r[0] for r in cat.conn.execute("SELECT id FROM inodes")]
    fg: list = []
    bg: list = []
    monkeypatch.setattr(hashing, "_idle", fg)
    monkeypatch.setattr(hashing, "_idle_background", bg)
    monkeypatch.setattr(hashing, "_workers_broken", False)
    try:
        rep = ensure_hashes(cat, ids, settle_seconds=0, background=True)
        assert rep.hashed == 1 and len(bg) == 1 and fg == []
        pid = bg[0].proc.pid
        assert os.getpriority(os.PRIO_PROCESS, pid) == hashing.BACKGROUND_NICE
        assert hashing.io_priority(pid)[0] == hashing.IOPRIO_CLASS_IDLE
        # a foreground hash does not reuse the background worker
        cat.conn.execute("UPDATE inodes SET hash = NULL")
        cat.conn.commit()
        ensure_hashes(cat, ids, settle_seconds=0)
        assert len(fg) == 1 and fg[0].proc.pid != pid
        assert os.getpriority(os.PRIO_PROCESS, fg[0].proc.pid) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        for w in fg + bg:
            w.close()


_SLOW_HASHER = textwrap.dedent("""
    import os, sys, time
    from qbhook.catalog import hashing
    from qbhook.catalog.store import Catalog
    real = hashing.hash_file
    done = open(sys.argv[2], "a", buffering=1)

    def slow(path, dir_fd=None):
        time.sleep(float(sys.argv[3]))
        res = real(path, dir_fd=dir_fd)
        done.write("x\\n")          # this file's hash is computed (not yet stored)
        return res
    hashing.hash_file = slow
    cat = Catalog.open(sys.argv[1])
    ids = [r[0] for r in cat.conn.execute("SELECT id FROM inodes ORDER BY id")]
    hashing.ensure_hashes(cat, ids, settle_seconds=0)
""")


def test_killed_hashing_loses_at_most_the_file_in_flight_and_resumes(env, tmp_path):
    cfg, cat, seed = env
    ids = _files(cfg, cat, seed, 8, 20_000)
    cat.close()
    done = tmp_path / "done"
    # each file takes longer than STORE_INTERVAL: each is committed when it finishes
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_HASHER, str(cfg.catalog), str(done), str(hashing.STORE_INTERVAL + 0.2)]
    )
    try:
        deadline = time.monotonic() + 60
        while not done.exists() or len(done.read_text().splitlines()) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the hashing child stopped early"
            time.sleep(0.05)
        time.sleep(0.3)  # well inside the 4th file
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finished = len(done.read_text().splitlines())
    cat = Catalog.open(cfg.catalog)
    stored = _hashed(cat)
    assert 3 <= finished < len(ids)
    assert stored >= finished - 1, (stored, finished)  # at most the one in flight is lost
    rep = ensure_hashes(cat, ids, settle_seconds=0)
    assert (rep.cached, rep.hashed) == (stored, len(ids) - stored)
    for iid in ids:
        row = cat.inode(iid)
        path = cat.paths_of(iid)[0][0]
        with open(path, "rb") as f:
            assert row.hash == blake3.blake3(f.read()).digest()
    cat.close()


def test_throughput_rate_and_eta():
    now = [100.0]
    t = Throughput(1000, clock=lambda: now[0])
    assert t.eta() is None and "ETA ?" in t.line()
    now[0] += 2.0
    t.add(200)
    assert t.rate() == 100.0 and t.eta() == 8.0
    t.skip(300)  # deferred by the budget: no longer waited for
    assert t.eta() == 5.0
    assert t.line() == "0.00/0.00 GiB, 100 B/s, ETA 5 s"
    big = Throughput(10 * 2**30, clock=lambda: now[0])
    now[0] += 10.0
    big.add(2**30)
    assert big.line() == "1.00/10.00 GiB, 102.4 MiB/s, ETA 1 min 30 s"


class _Tty:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_terminal_progress_and_periodic_log_lines_show_rate_and_eta(env, monkeypatch, caplog):
    cfg, cat, seed = env
    ids = _files(cfg, cat, seed, 3, 50_000)
    tty = _Tty()
    monkeypatch.setattr(hashing, "LOG_INTERVAL", 0.0)  # every file, instead of every 30 s
    with caplog.at_level(logging.INFO, logger="qbhook.catalog.hashing"):
        ensure_hashes(cat, ids, settle_seconds=0, progress=Progress(stream=tty, interval=0), budget=100_000)
    assert "hashing 1/3 files" in tty.text and "/s, ETA" in tty.text
    assert "left for the next run" in tty.text and "hash budget" in tty.text
    lines = [r.getMessage() for r in caplog.records if r.name == "qbhook.catalog.hashing"]
    assert any(m.startswith("hashing: 1/3 files") and "/s, ETA" in m for m in lines), lines
    assert any("stopped at the budget" in m for m in lines), lines


def test_a_budgeted_run_never_reads_a_file_that_is_mostly_holes(env, caplog):
    """R52: the budget admits a first file of any size, and a sparse file's read costs its whole
    apparent size (a writer can make 4 GiB of nothing, or exabytes on ZFS): hours or forever in
    the background pass. It is left unhashed, as a file not settled, with a reason in the log;
    the budget is not spent on it, so the dense file after it is still hashed."""
    cfg, cat, seed = env
    for n in ("a", "b"):
        with open(seed / f"{n}.bin", "wb") as f:
            f.truncate(1 << 30)
        _old(seed / f"{n}.bin")
    if os.stat(seed / "a.bin").st_blocks * 512 * 8 >= 1 << 30:
        pytest.skip("this filesystem does not keep holes")
    _old(write(seed / "c.bin", b"dense"))
    scan_pool(cat, cfg.primary, cfg.scan)
    ids = [r[0] for r in cat.conn.execute("SELECT id FROM inodes ORDER BY size DESC")]
    budget = HashBudget(1 << 20)
    with caplog.at_level(logging.INFO, logger="qbhook.catalog.hashing"):
        rep = ensure_hashes(cat, ids, settle_seconds=0, budget=budget)
    assert rep.bytes_read == 5 and rep.hashed == 1 and sorted(rep.sparse) == sorted(ids[:2])
    assert budget.spent == 5 and rep.deferred == []
    assert _hashed(cat) == 1
    assert "2 files mostly holes" in caplog.text and "MiB on disk of 1024 MiB" in caplog.text


def test_sparse_is_judged_by_blocks_on_disk_against_apparent_size():
    def st(size, blocks):
        return os.stat_result((0o100644, 1, 1, 1, 0, 0, size, 0, 0, 0), {"st_blocks": blocks})

    big = 1 << 30
    assert hashing.is_sparse(st(big, 0)) and hashing.is_sparse(st(big, big // 512 // 9))
    assert not hashing.is_sparse(st(big, big // 512 // 8))  # compressed 8:1 or a partial download: read
    assert not hashing.is_sparse(st(hashing.SPARSE_MIN, 0))  # small: its read is cheap anyway
