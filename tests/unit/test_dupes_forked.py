"""find_duplicates hashes the second half of the small files in a forked child (``dupes._share``).

The child only reads: it never asks the catalog, and checks no filesystem. Its answers are
checked and written by the parent, which hashes again itself whatever the child could not
answer for. The sets and the stored hashes must be those of a one-process run.
"""

import logging
import os
import threading

import pytest

from qbhook import forked
from qbhook.catalog import dupes, hashing
from qbhook.catalog.scan import scan_pool
from tests.helpers import b3, put

from .test_dupes import SEED, env  # noqa: F401  (the fixture)

N = 40  # files per pool: 80 small files, every one a duplicate of one on the other pool


@pytest.fixture
def tree(env, monkeypatch):  # noqa: F811
    cfg, cat, stash, pool = env
    contents = [os.urandom(500 + 37 * i) for i in range(N)]
    for i, data in enumerate(contents):
        put(stash / SEED / f"S{i % 5}/f{i}.bin", data)
        put(pool / SEED / f"S{i % 5}/f{i}.bin", data)
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    monkeypatch.setattr(dupes, "FORK_MIN_SMALL", 4)
    # Whatever threads earlier tests left behind (a BLAKE3 pool): ``may_fork`` is tested on its own,
    # and the child hashes small files with one thread, as here.
    monkeypatch.setattr(dupes, "may_fork", lambda: True)
    forks = []
    real = dupes.Forked

    def counting(work):
        kid = real(work)
        kid.first_pid = kid.pid  # Forked forgets it once the child is reaped
        forks.append(kid)
        return kid

    monkeypatch.setattr(dupes, "Forked", counting)
    return cat, contents, forks


def _stored(cat) -> dict[int, bytes]:
    return dict(cat.conn.execute("SELECT id, hash FROM inodes WHERE hash IS NOT NULL"))


def _sets(sets) -> list[tuple[str, int]]:
    return sorted((s.hash, len(s.copies)) for s in sets)


def test_a_child_hashes_half_and_the_sets_are_those_of_one_process(tree, monkeypatch, caplog):
    cat, contents, forks = tree
    with caplog.at_level(logging.INFO, logger="qbhook.catalog.dupes"):
        sets = dupes.find_duplicates(cat, settle_seconds=0)
    assert len(forks) == 1 and forks[0].pid is None  # one child, reaped
    assert "hashing its" not in caplog.text  # its answers were taken, not hashed again here
    assert _sets(sets) == sorted((b3(d), 2) for d in contents)
    both = _stored(cat)
    assert len(both) == 2 * N

    # the same catalog hashed again in one process stores the same hashes
    cat.conn.execute("UPDATE inodes SET hash = NULL")
    cat.conn.commit()
    monkeypatch.setattr(dupes, "may_fork", lambda: False)
    assert _sets(dupes.find_duplicates(cat, settle_seconds=0)) == _sets(sets)
    assert _stored(cat) == both and len(forks) == 1


def test_an_answer_read_on_another_filesystem_is_not_taken_and_is_hashed_here(tree, monkeypatch):
    """The child cannot ask the catalog which filesystem a st_dev is, so the parent asks for it:
    an answer whose file was read on another filesystem is dropped (here: its digest forged too)
    and that inode read again in this process."""
    cat, contents, forks = tree
    real_child, real_on_fs = dupes._hashed_unchecked, dupes._on_fs
    forged_dev = -7

    def child(jobs, settle_seconds, now):
        out = real_child(jobs, settle_seconds, now)
        iid, path, _dev, _digest, *st = out[0]
        out[0] = (iid, path, forged_dev, b"\0" * 32, *st)
        return out

    def on_fs(catalog):
        check = real_on_fs(catalog)
        return lambda path, dev, fs: dev != forged_dev and check(path, dev, fs)

    redone = []
    real_small = dupes._hash_small

    def hash_small(writes, jobs, *a, **k):
        redone.append([j[0] for j in jobs])
        return real_small(writes, jobs, *a, **k)

    monkeypatch.setattr(dupes, "_hashed_unchecked", child)
    monkeypatch.setattr(dupes, "_on_fs", on_fs)
    monkeypatch.setattr(dupes, "_hash_small", hash_small)
    sets = dupes.find_duplicates(cat, settle_seconds=0)
    assert len(forks) == 1
    assert len(redone) == 2 and len(redone[1]) == 1  # this process's half, then the one dropped answer
    assert b"\0" * 32 not in _stored(cat).values()
    assert _sets(sets) == sorted((b3(d), 2) for d in contents)


@pytest.mark.parametrize("how", ["raises", "killed"])
def test_a_failed_child_leaves_its_files_to_this_process(tree, monkeypatch, caplog, how):
    cat, contents, forks = tree

    def child(*_a):
        if how == "killed":
            os.kill(os.getpid(), 9)
        raise OSError("no such luck")

    monkeypatch.setattr(dupes, "_hashed_unchecked", child)
    with caplog.at_level(logging.WARNING, logger="qbhook.catalog.dupes"):
        sets = dupes.find_duplicates(cat, settle_seconds=0)
    assert len(forks) == 1 and forks[0].pid is None
    assert _sets(sets) == sorted((b3(d), 2) for d in contents)
    assert len(_stored(cat)) == 2 * N
    assert "hashing its" in caplog.text


def test_interrupted_while_the_child_hashes_the_child_is_killed_and_reaped(tree, monkeypatch):
    cat, _contents, forks = tree

    def give_up(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(dupes, "_hash_small", give_up)
    with pytest.raises(KeyboardInterrupt):
        dupes.find_duplicates(cat, settle_seconds=0)
    (kid,) = forks
    assert kid.pid is None
    with pytest.raises(ChildProcessError):  # killed and reaped: no child of that pid is left
        os.waitpid(kid.first_pid, os.WNOHANG)


def test_no_child_below_the_threshold_or_where_forking_is_unsafe(tree, monkeypatch):
    cat, contents, forks = tree
    monkeypatch.setattr(dupes, "FORK_MIN_SMALL", 2 * N + 1)
    assert _sets(dupes.find_duplicates(cat, settle_seconds=0)) == sorted((b3(d), 2) for d in contents)
    cat.conn.execute("UPDATE inodes SET hash = NULL")
    cat.conn.commit()
    monkeypatch.setattr(dupes, "FORK_MIN_SMALL", 4)
    monkeypatch.setattr(dupes, "may_fork", forked.may_fork)
    monkeypatch.setattr(forked, "_kernel_threads", lambda: 2)  # a native thread pool, say
    monkeypatch.setattr(forked, "JOINED_THREAD_GRACE", 0.0)
    assert _sets(dupes.find_duplicates(cat, settle_seconds=0)) == sorted((b3(d), 2) for d in contents)
    assert forks == []


def test_files_still_settling_in_the_childs_half_get_their_stat_stored_and_no_hash(tree):
    """As in one process: a file written less than settle_seconds ago is hashed for this run's sets
    but its hash is not kept (it may still change); its stat is stored."""
    cat, contents, forks = tree
    before = {r[0]: r[1:] for r in cat.conn.execute("SELECT id, size, mtime_ns FROM inodes")}
    sets = dupes.find_duplicates(cat, settle_seconds=3600)
    assert len(forks) == 1
    assert _stored(cat) == {}  # neither half kept a hash
    assert {r[0]: r[1:] for r in cat.conn.execute("SELECT id, size, mtime_ns FROM inodes")} == before
    assert _sets(sets) == []  # no set from hashes not kept: they are read again once settled


def _a_big_duplicate(env) -> bytes:  # noqa: F811
    """A content of MULTITHREAD_MIN bytes in both pools, scanned: a big file for ensure_hashes."""
    cfg, cat, stash, pool = env
    data = os.urandom(hashing.MULTITHREAD_MIN)
    put(stash / SEED / "B/big.bin", data)
    put(pool / SEED / "B/big.bin", data)
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    return data


def _helpers(monkeypatch) -> list:
    """The writer threads find_duplicates starts, recorded."""
    started, real = [], dupes._Helper.start
    monkeypatch.setattr(dupes._Helper, "start", classmethod(lambda cls, c: started.append(real(c)) or started[-1]))
    return started


def test_with_a_child_and_no_big_file_the_writes_are_made_on_this_thread(tree, monkeypatch):
    """The child holds the second core: a writer thread would have none of its own, only turns at
    the interpreter lock. The hashes of both halves are stored all the same, by this thread."""
    cat, contents, forks = tree
    started = _helpers(monkeypatch)
    writers, real_do = [], dupes._do
    monkeypatch.setattr(dupes, "_do", lambda c, job: writers.append(threading.get_ident()) or real_do(c, job))
    sets = dupes.find_duplicates(cat, settle_seconds=0)
    assert len(forks) == 1 and started == []
    assert writers and set(writers) == {threading.get_ident()}
    assert len(_stored(cat)) == 2 * N
    assert _sets(sets) == sorted((b3(d), 2) for d in contents)


def test_with_a_child_and_a_big_file_the_writer_thread_hashes_it(tree, env, monkeypatch):  # noqa: F811
    """ensure_hashes of the big files still overlaps the small files' reads on the writer thread."""
    cat, contents, forks = tree
    big = _a_big_duplicate(env)
    started = _helpers(monkeypatch)
    sets = dupes.find_duplicates(cat, settle_seconds=0)
    assert len(forks) == 1 and len(started) == 1
    assert _sets(sets) == sorted((b3(d), 2) for d in [*contents, big])


def test_a_writer_thread_that_cannot_start_stops_the_child(tree, env, monkeypatch):  # noqa: F811
    """The child is forked before the catalog writer thread starts: a failure to start it (no more
    threads under a pids limit) must not leave the child behind. (A big file: the thread is started
    beside a child only for one.)"""
    cat, _contents, forks = tree
    _a_big_duplicate(env)

    def no_thread(cls, catalog):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(dupes._Helper, "start", classmethod(no_thread))
    with pytest.raises(RuntimeError):
        dupes.find_duplicates(cat, settle_seconds=0)
    (kid,) = forks
    with pytest.raises(ChildProcessError):
        os.waitpid(kid.first_pid, os.WNOHANG)
