"""A relink lets go of the inode it replaced on a releasing thread (``fsops._Releaser``): freeing it
can wait on the disk, and that wait moves off the batch's loop. Nothing else changes: the name
holds the kept inode at once, every replaced inode is freed before the batch's sync, and no
descriptor or thread outlives the batch."""

from __future__ import annotations

import os
import queue
import threading
import time

import pytest

from qbhook import forked
from qbhook.move import fsops
from tests.unit.test_converge_batch import _dups, _linked, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)


def _fd_targets() -> list[str]:
    """What each of this process's descriptors names, as /proc says it."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return out


def _held_deleted(under: str) -> list[str]:
    """This process's descriptors of files under ``under`` whose last name is gone (what a held,
    replaced inode shows; SQLite's unlinked temporary files live elsewhere)."""
    return [t for t in _fd_targets() if t.startswith(under) and t.endswith(" (deleted)")]


def _gated(monkeypatch) -> threading.Event:
    """The releasing threads wait for the returned event before letting go of anything: the disk's
    wait, as long as the test likes (10 s at most)."""
    gate = threading.Event()
    real_release = fsops._release_all

    def slow_release(q):
        gate.wait(10)
        real_release(q)

    monkeypatch.setattr(fsops, "_release_all", slow_release)
    return gate


def _holds(monkeypatch) -> list[bytes]:
    """The names a relink asks to hold (``fsops._hold_entry``), in order; the holds still happen."""
    holds: list[bytes] = []
    real = fsops._hold_entry
    monkeypatch.setattr(fsops, "_hold_entry", lambda d, name, st: holds.append(name) or real(d, name, st))
    return holds


def test_replaced_inodes_are_held_until_the_batch_syncs_and_then_freed(world, monkeypatch):  # noqa: F811
    w = world
    plan, pairs = _dups(w, 6)
    gate = _gated(monkeypatch)
    seen = {}
    real_sync = fsops.Relinker.sync

    def sync(self):
        # Every rename is done: each name already holds its kept inode, the replaced ones are still held.
        seen["linked"] = all(_linked(s, lib) for s, lib in pairs)
        seen["held"] = len(_held_deleted(w.seed_s))
        gate.set()
        real_sync(self)
        seen["after"] = len(_held_deleted(w.seed_s))

    monkeypatch.setattr(fsops.Relinker, "sync", sync)
    threads = threading.active_count()
    summary = w.executor().apply(plan)
    assert summary.status == "done"
    assert seen == {"linked": True, "held": 6, "after": 0}
    assert summary.bytes_freed == sum(os.lstat(lib).st_size for _s, lib in pairs)
    assert threading.active_count() == threads  # the releasing threads ended with the batch
    assert _held_deleted(w.seed_s) == []


def test_an_inode_with_another_link_is_not_held(world, monkeypatch):  # noqa: F811
    # Replacing one of two links frees nothing: there is no wait to move, so no descriptor is taken.
    w = world
    plan, pairs = _dups(w, 3)
    for seed, _lib in pairs:
        os.link(seed, seed + ".sibling")
    holds = _holds(monkeypatch)
    summary = w.executor().apply(plan)
    assert summary.status == "done" and all(_linked(s, lib) for s, lib in pairs)
    assert holds == [] and summary.bytes_freed == 0


def test_an_entry_swapped_before_the_hold_is_not_held(world, monkeypatch):  # noqa: F811
    # The hold is taken by name after the last look: whatever was swapped in between is another
    # inode, and holding it would keep the wrong blocks for the batch. It is let go at once.
    w = world
    plan, pairs = _dups(w, 2)
    gate = _gated(monkeypatch)
    swapped = pairs[0][0]
    real = fsops._hold_entry
    got = []

    def swap_then_hold(d, name, st):
        if os.fsdecode(d.show(name)) == swapped:
            with open(swapped + ".other", "wb") as f:
                f.write(b"x" * 10)
            os.rename(swapped + ".other", swapped)  # what a writer of the seeding root could do
        fd = real(d, name, st)
        got.append(fd is not None)
        return fd

    monkeypatch.setattr(fsops, "_hold_entry", swap_then_hold)
    seen = {}
    real_sync = fsops.Relinker.sync

    def sync(self):
        seen["held"] = len(_held_deleted(w.seed_s))
        gate.set()
        real_sync(self)

    monkeypatch.setattr(fsops.Relinker, "sync", sync)
    w.executor().apply(plan)
    assert got == [False, True]  # the swapped entry was refused, the other held
    assert seen["held"] == 1
    assert _held_deleted(w.seed_s) == []


def test_on_zfs_nothing_is_held(world, monkeypatch):  # noqa: F811
    # ZFS frees a removed file's blocks in a later transaction group: the rename waits for nothing,
    # so a hold would only cost an open per relink (on zfs-fuse, +11 % for the apply phase).
    from qbhook.catalog.store import Catalog

    real_fsid = Catalog.fsid
    monkeypatch.setattr(Catalog, "fsid", lambda self, fs: "zfs:" + real_fsid(self, fs))
    w = world
    plan, pairs = _dups(w, 3)  # its steps name the filesystem as the catalog now spells it
    holds = _holds(monkeypatch)
    summary = w.executor().apply(plan)
    assert summary.status == "done" and all(_linked(s, lib) for s, lib in pairs)
    assert holds == [] and summary.bytes_freed == sum(os.lstat(lib).st_size for _s, lib in pairs)


def test_a_failed_rename_lets_go_of_what_it_held(world, monkeypatch):  # noqa: F811
    w = world
    plan, pairs = _dups(w, 2)
    real_rename = os.rename

    def failing(src, dst, **kw):
        if isinstance(src, bytes) and src.startswith(fsops.RELINK_PREFIX):
            raise OSError(5, "Input/output error")
        return real_rename(src, dst, **kw)

    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "rename", failing)
    summary = w.executor().apply(plan)
    monkeypatch.setattr(os, "rename", real_rename)
    assert summary.status == "failed" and set(summary.groups_failed) == {"g0", "g1"}
    assert not any(_linked(s, lib) for s, lib in pairs)
    assert len(os.listdir("/proc/self/fd")) == before  # nothing held, nothing leaked


def test_without_a_thread_to_be_had_the_relink_lets_go_itself(world, monkeypatch):  # noqa: F811
    w = world
    plan, pairs = _dups(w, 3)

    def no_thread(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    summary = w.executor().apply(plan)
    assert summary.status == "done" and all(_linked(s, lib) for s, lib in pairs)
    assert summary.bytes_freed == sum(os.lstat(lib).st_size for _s, lib in pairs)
    assert _held_deleted(w.seed_s) == []


def _open_on(paths) -> set[str]:
    """Which of ``paths`` this process holds a descriptor on (by what /proc says it names)."""
    return {str(p) for p in paths} & set(_fd_targets())


def test_a_full_queue_makes_the_relink_wait_so_few_descriptors_are_held(monkeypatch, tmp_path):
    rel = fsops._Releaser(depth=2, threads=1)
    gate = _gated(monkeypatch)
    files = [tmp_path / f"f{i}" for i in range(3)]
    for f in files:
        f.write_bytes(b"x")
    fds = [os.open(f, os.O_PATH) for f in files]
    for fd in fds[:2]:
        rel.put(fd)  # the thread takes none yet (gated): the queue holds these two
    put = threading.Thread(target=rel.put, args=(fds[2],))
    put.start()
    put.join(0.2)
    assert put.is_alive()  # waiting for room
    gate.set()
    put.join(10)
    rel.drain()
    assert not put.is_alive() and rel._running == [] and rel._q is None
    assert _open_on(files) == set()  # all three let go


def test_a_descriptor_that_cannot_be_queued_is_closed_not_left_open(monkeypatch, tmp_path):
    # Ctrl-C while the queue is full: the relink's rename is done, its held inode must not stay open.
    rel = fsops._Releaser(depth=1, threads=1)
    gate = _gated(monkeypatch)
    f = tmp_path / "held"
    f.write_bytes(b"x")
    rel.put(os.open(tmp_path, os.O_PATH))  # fills the queue
    real_put = queue.Queue.put

    def interrupted(self, item, *a, **k):
        if item is not None:
            raise KeyboardInterrupt
        return real_put(self, item, *a, **k)

    monkeypatch.setattr(queue.Queue, "put", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rel.put(os.open(f, os.O_PATH))
    assert _open_on([f]) == set()
    gate.set()
    rel.drain()
    assert rel._running == []


def test_may_fork_waits_briefly_for_a_joined_thread_to_leave_the_kernels_list(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    listed = iter([2, 2, 1])
    monkeypatch.setattr(forked, "_kernel_threads", lambda: next(listed, 1))
    assert forked.may_fork()
    monkeypatch.setattr(forked, "_kernel_threads", lambda: 2)  # a native pool: it stays, so no fork
    start = time.monotonic()
    assert not forked.may_fork()
    assert time.monotonic() - start < forked.JOINED_THREAD_GRACE + 0.5  # and it gives up promptly


def test_descriptors_are_handed_over_a_chunk_at_a_time_and_drain_hands_over_the_rest(monkeypatch, tmp_path):
    # Each hand-over wakes a releasing thread: a batch hands over RELEASE_CHUNK at once, not one per relink.
    rel = fsops._Releaser(depth=6, threads=1, chunk=3)
    gate = _gated(monkeypatch)
    files = [tmp_path / f"f{i}" for i in range(5)]
    for f in files:
        f.write_bytes(b"x")
    fds = [os.open(f, os.O_PATH) for f in files]
    for fd in fds[:2]:
        rel.put(fd)
    assert rel._q is None and rel._running == []  # held here, no thread woken (none even started)
    rel.put(fds[2])
    assert rel._q is not None and rel._q.qsize() == 1  # the first chunk, whole
    rel.put(fds[3])
    rel.put(fds[4])
    assert rel._q.qsize() == 1 and _open_on(files) == {str(f) for f in files}  # gated: nothing let go yet
    gate.set()
    rel.drain()  # the partial chunk too
    assert rel._running == [] and rel._q is None and rel._hand == []
    assert _open_on(files) == set()
    assert rel.held_at_most == 6 + 2 * 3  # the queue (two chunks), one being closed, one in hand


def test_a_chunk_that_cannot_be_queued_is_closed_whole(monkeypatch, tmp_path):
    rel = fsops._Releaser(depth=2, threads=1, chunk=2)
    gate = _gated(monkeypatch)
    files = [tmp_path / f"f{i}" for i in range(4)]
    for f in files:
        f.write_bytes(b"x")
    for f in files[:2]:
        rel.put(os.open(f, os.O_PATH))  # one chunk: the queue is full
    real_put = queue.Queue.put

    def interrupted(self, item, *a, **k):
        if item is not None:
            raise KeyboardInterrupt
        return real_put(self, item, *a, **k)

    monkeypatch.setattr(queue.Queue, "put", interrupted)
    rel.put(os.open(files[2], os.O_PATH))  # in hand
    with pytest.raises(KeyboardInterrupt):
        rel.put(os.open(files[3], os.O_PATH))
    assert _open_on(files[2:]) == set()  # both of the chunk that could not be queued
    gate.set()
    rel.drain()
    assert rel._running == [] and _open_on(files) == set()


def test_a_relinker_hands_replaced_inodes_over_in_chunks():
    with fsops.Relinker(()) as rl:
        assert rl._release.chunk == fsops.RELEASE_CHUNK > 1
