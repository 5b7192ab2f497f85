"""A large converge batch relinked in several processes (``Executor._forked``, ``qbhook.forked``):
the same outcome as in one, no group or kept inode shared between the parts, and a child that
fails or is killed leaves what a crash leaves, which ``resume`` finishes."""

from __future__ import annotations

import dataclasses
import errno
import itertools
import os
import pickle
import signal
import threading
import time

import pytest

from qbhook import forked
from qbhook.decide.plan import ConvergeKeep, GroupPlan
from qbhook.errors import ChildFailed
from qbhook.forked import Forked
from qbhook.move import executor as ex_mod
from qbhook.move import fsops
from qbhook.move.executor import Executor, _parts
from tests.unit.test_converge_batch import _dups, _linked, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)


class _S:  # the two fields _parts reads of a Converge step
    def __init__(self, keep):
        self.keep = ConvergeKeep("/k", "fs", keep, True)


def _todo(spec):
    """[(group id, kept inode)] -> todo items in that order."""
    groups: dict[str, GroupPlan] = {}
    out = []
    for seq, (gid, keep) in enumerate(spec):
        g = groups.setdefault(gid, GroupPlan(gid, [], [], "converge", ""))
        out.append((g, seq, _S(keep)))
    return out


@pytest.mark.parametrize("n", [2, 3, 4])
def test_parts_never_split_a_group_or_a_kept_inode_and_keep_plan_order(n, monkeypatch):
    monkeypatch.setattr(ex_mod, "PARENT_SHARE", 1.0)  # even parts: the arithmetic below
    todo = _todo([("a", 1), ("b", 2), ("a", 3), ("c", 3), ("d", 4), ("e", 5), ("f", 6), ("g", 6)])
    parts = _parts(todo, n)
    assert len(parts) == n
    assert sorted(itertools.chain(*parts), key=lambda t: t[1]) == todo
    for part in parts:
        assert [t[1] for t in part] == sorted(t[1] for t in part)
    side = {}
    for k, part in enumerate(parts):
        for g, _q, s in part:
            assert side.setdefault(g.group_id, k) == k, "a group in two parts"
            assert side.setdefault(("keep", s.keep.ino), k) == k, "a kept inode in two parts"
    # components {a,c} 3 steps, {f,g} 2, then single steps
    assert max(map(len, parts)) - min(map(len, parts)) <= (2 if n == 2 else 3)
    assert _parts(_todo([("a", 1), ("b", 1), ("c", 1)]), n) is None  # one component: nothing to share
    assert len(_parts(_todo([("a", 1), ("b", 2)]), n)) == 2  # never more parts than components


def test_this_process_takes_a_smaller_part():
    todo = _todo([(str(i), i) for i in range(100)])
    parts = _parts(todo, 3)
    assert len(parts[0]) < len(parts[1]) == len(parts[2]) and sum(map(len, parts)) == 100


@pytest.fixture
def counted(monkeypatch):
    """Forks counted, allowed from 4 steps on, and whatever threads earlier tests left behind (the
    suite's own, not the executor's: ``may_fork`` is tested on its own below)."""
    forks = []
    real_forked, real_act = ex_mod.Forked, Executor._act

    def forked_and_counted(work):
        kid = real_forked(work)
        forks.append(1)
        CHILDREN.append(kid.pid)
        return kid

    CHILDREN.clear()
    monkeypatch.setattr(ex_mod, "FORK_MIN_STEPS", 4)
    monkeypatch.setattr(ex_mod, "FORK_PARTS", 2)
    monkeypatch.setattr(ex_mod, "may_fork", lambda: True)
    monkeypatch.setattr(ex_mod, "Forked", forked_and_counted)
    return forks, real_act


CHILDREN: list[int] = []  # the pids ``counted`` saw forked, for the tests that check each was reaped


def _all_reaped(pids) -> bool:
    """Every one of ``pids`` reaped (other tests' children, e.g. servers, may still run: not ours to ask)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        return False
    return bool(pids)


@pytest.mark.parametrize("parts", [2, 3])
def test_a_large_batch_is_relinked_in_several_processes_with_the_outcome_of_one(
    world,  # noqa: F811
    counted,
    monkeypatch,
    tmp_path,
    parts,
):
    forks, real_act = counted
    monkeypatch.setattr(ex_mod, "FORK_PARTS", parts)
    pids = tmp_path / "pids"

    def act(self, todo, ids, catalog):
        with open(pids, "a") as f:
            f.write(f"{os.getpid()} {len(todo)}\n")
        return real_act(self, todo, ids, catalog)

    monkeypatch.setattr(Executor, "_act", act)
    w = world
    plan, pairs = _dups(w, 12, per_group=2, cache=True)
    summary = w.executor().apply(plan)
    assert forks == [1] * (parts - 1)
    calls = [line.split() for line in pids.read_text().splitlines()]
    assert len({pid for pid, _n in calls}) == parts and sum(int(n) for _p, n in calls) == 24
    assert summary.status == "done" and len(summary.groups_done) == 12
    assert summary.bytes_freed == sum(os.lstat(lib).st_size for _s, lib in pairs)
    assert all(_linked(s, lib) for s, lib in pairs)
    assert {r.status for r in w.journal.steps(summary.run_id)} == {"done"}
    for s, lib in pairs:  # the catalog recorded every relinked path, the child's half too
        row = w.cat.inode_by_path(s)
        assert row.ino == os.lstat(lib).st_ino
        # its hash carried over our link's ctime change (the child's proof came back with its stat)
        assert row.hash is not None and row.ctime_ns == os.lstat(lib).st_ctime_ns
        # and the kept inode's owner and mode (migration 15), which the child's stat brings back too
        lst = os.lstat(lib)
        owner = w.cat.conn.execute("SELECT mode, uid, gid FROM inodes WHERE id=?", (row.id,)).fetchone()
        assert tuple(owner) == (lst.st_mode, lst.st_uid, lst.st_gid)


def test_a_childs_relinked_names_come_back_with_the_fields_the_catalog_records(tmp_path):
    from qbhook.catalog.store import CarryProof

    f = tmp_path / "f"
    f.write_bytes(b"x")
    st = os.lstat(f)
    proof = CarryProof(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns - 1, st.st_ctime_ns)
    after = {"/a": fsops.Relinked(st, proof), b"/b": fsops.Relinked(st, None)}
    back = fsops.relinked_from_child(pickle.loads(pickle.dumps(fsops.relinked_to_parent(after))))
    assert back.keys() == after.keys()
    fields = ("st_mode", "st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns", "st_nlink", "st_uid", "st_gid")
    for path, (was, carry) in after.items():
        assert [getattr(back[path].after, k) for k in fields] == [getattr(was, k) for k in fields]
        assert back[path].carry == carry
    assert back["/a"].carry.covers(back["/a"].after)


def test_no_fork_while_another_thread_runs(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(forked, "_kernel_threads", lambda: 1)
    assert forked.may_fork()
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # e.g. the notifier's sender, serve's threads
    assert not forked.may_fork()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(forked, "_kernel_threads", lambda: 3)  # a native pool (BLAKE3's) Python does not see
    assert not forked.may_fork()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})  # one core: nothing to gain
    assert not forked.may_fork()


def test_the_executor_asks_may_fork(world, monkeypatch):  # noqa: F811
    forks = []
    monkeypatch.setattr(ex_mod, "FORK_MIN_STEPS", 4)
    monkeypatch.setattr(ex_mod, "may_fork", lambda: False)
    monkeypatch.setattr(ex_mod, "Forked", lambda work: forks.append(1))
    plan, pairs = _dups(world, 8)
    assert world.executor().apply(plan).status == "done"
    assert forks == [] and all(_linked(s, lib) for s, lib in pairs)


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("how", ["raises", "killed"])
def test_a_failed_second_core_stops_the_run_and_resume_finishes_it(world, counted, monkeypatch, how, parts):  # noqa: F811
    """``raises``: the child's syncfs fails (EIO) after its relinks; ``killed``: SIGKILL after its first."""
    forks, _ = counted
    monkeypatch.setattr(ex_mod, "FORK_PARTS", parts)
    parent = os.getpid()
    real_relink, real_sync = Executor._relink, fsops.Relinker.sync

    def relink(self, rl, gid, seq, s, hook=None):
        res = real_relink(self, rl, gid, seq, s, hook)
        if os.getpid() != parent and how == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        return res

    def sync(self):
        if os.getpid() != parent:
            raise OSError(errno.EIO, "syncfs: Input/output error")
        return real_sync(self)

    monkeypatch.setattr(Executor, "_relink", relink)
    monkeypatch.setattr(fsops.Relinker, "sync", sync)
    w = world
    plan, pairs = _dups(w, 8)
    with pytest.raises(ChildFailed) as e:
        w.executor().apply(plan)
    assert forks == [1] * (parts - 1)
    assert _all_reaped(CHILDREN)  # the failed ones and any other
    msg = "failed: OSError: [Errno 5] syncfs" if how == "raises" else "ended without an answer"
    assert msg in e.value.message and "\n" not in e.value.message
    (run,) = w.journal.unfinished_runs()
    rows = w.journal.steps(run.id)
    # This process's part is closed done (R59); the failed child's part reads intended, as a crash leaves it.
    assert run.status == "interrupted" and {r.status for r in rows} == {"done", "intended"}
    assert all(_linked(*pairs[r.seq]) for r in rows if r.status == "done")
    linked = sum(_linked(s, lib) for s, lib in pairs)
    assert linked == 8 if how == "raises" else 1 <= linked < 8  # killed: the parent's half and the child's first

    monkeypatch.setattr(Executor, "_relink", real_relink)
    monkeypatch.setattr(fsops.Relinker, "sync", real_sync)
    (res,) = w.executor().resume()
    assert res.status == "done" and len(res.groups_done) == 8
    assert all(_linked(s, lib) for s, lib in pairs)
    assert {r.status for r in w.journal.steps(run.id)} == {"done"}


@pytest.mark.parametrize("parts", [2, 3])
def test_resume_counts_every_byte_a_batch_with_a_killed_child_freed(world, counted, monkeypatch, tmp_path, parts):  # noqa: F811
    """R59: one child is SIGKILLed after its first relink, the other parts succeed. The steps known
    done (this process's part, a child that answered) are closed done and recorded in the catalog;
    the killed part's steps stay intended, and the catalog still names their victims, so resume
    counts exactly the bytes freed, none left "at least" (it counted 0 for each step the catalog
    had already recorded as relinked while the journal still read it intended)."""
    monkeypatch.setattr(ex_mod, "FORK_PARTS", parts)
    parent = os.getpid()
    real_relink = Executor._relink
    marker = tmp_path / "killed"

    def relink(self, rl, gid, seq, s, hook=None):
        res = real_relink(self, rl, gid, seq, s, hook)
        if os.getpid() != parent:
            try:  # the first child here is the one killed; any other answers
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return res
            os.kill(os.getpid(), signal.SIGKILL)
        return res

    monkeypatch.setattr(Executor, "_relink", relink)
    w = world
    plan, pairs = _dups(w, 12, cache=True)
    with pytest.raises(ChildFailed, match="ended without an answer"):
        w.executor().apply(plan)
    assert counted[0] == [1] * (parts - 1) and _all_reaped(CHILDREN)
    (run,) = w.journal.unfinished_runs()
    rows = w.journal.steps(run.id)
    done = {r.seq for r in rows if r.status == "done"}
    intended = {r.seq for r in rows if r.status == "intended"}
    assert done | intended == set(range(12)) and done and intended
    assert all(_linked(*pairs[q]) for q in done)  # no step is closed done that was not done
    for q in range(12):  # the killed part's groups stay running, the others are ended
        assert w.journal.group_status(f"g{q}")[0] == ("running" if q in intended else "done")
    if parts == 3:  # the child that answered: its steps closed too, not only this process's
        assert len(done) > len(_parts([(g, q, s) for q, (g, s) in enumerate(_steps(plan))], 3)[0])

    monkeypatch.setattr(Executor, "_relink", real_relink)
    (res,) = w.executor().resume()
    assert res.status == "done" and len(res.groups_done) == 12
    assert all(_linked(s, lib) for s, lib in pairs)
    assert res.bytes_freed == sum(os.lstat(lib).st_size for _s, lib in pairs)
    assert not res.bytes_freed_at_least


@pytest.mark.parametrize("resumes_killed", [0, 1])
def test_resume_counts_every_byte_when_every_child_is_killed(world, counted, monkeypatch, resumes_killed):  # noqa: F811
    """R59's reproduction: the child killed after its first relink; resume's figure is the sum of the
    duplicates freed, as after a crash of one process (it was this process's part short, "at least").
    ``resumes_killed``: a first resume's child is killed too; the steps that resume closed (answered
    "already") keep the bytes it counted for them, and the last resume counts the rest."""
    parent = os.getpid()
    real_relink = Executor._relink

    def relink(self, rl, gid, seq, s, hook=None):
        res = real_relink(self, rl, gid, seq, s, hook)
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return res

    monkeypatch.setattr(Executor, "_relink", relink)
    plan, pairs = _dups(world, 8, cache=True)
    with pytest.raises(ChildFailed):
        world.executor().apply(plan)
    for _ in range(resumes_killed):
        with pytest.raises(ChildFailed):
            world.executor().resume()
    monkeypatch.setattr(Executor, "_relink", real_relink)
    (res,) = world.executor().resume()
    assert res.status == "done" and all(_linked(s, lib) for s, lib in pairs)
    assert (res.bytes_freed, res.bytes_freed_at_least) == (sum(os.lstat(lib).st_size for _s, lib in pairs), False)


def _steps(plan):
    return [(g, s) for g in plan.groups for s in g.steps]


def test_forked_returns_the_childs_answer_and_reaps_it():
    kid = Forked(lambda: {"pid": os.getpid(), "big": b"x" * (1 << 20)})  # more than a pipe holds
    pid = kid.pid
    got = kid.result()
    assert got["pid"] == pid != os.getpid() and len(got["big"]) == 1 << 20
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    with pytest.raises(ChildFailed, match="already collected"):
        kid.result()
    kid.stop()  # nothing left to stop: no error


def test_a_stopped_child_is_killed_and_reaped():
    kid = Forked(lambda: time.sleep(60))
    pid = kid.pid
    kid.stop()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_failure_while_forking_the_second_child_stops_and_reaps_the_first(world, counted, monkeypatch):  # noqa: F811
    """Something other than a failed fork (here Ctrl-C) while the children are started: the ones
    already running end their parts (as when this process's own part fails) and are reaped,
    nothing is left behind, and resume finishes the batch."""
    forks, _ = counted
    monkeypatch.setattr(ex_mod, "FORK_PARTS", 3)
    real_forked = forked.Forked
    made, pids = [], []

    def second_is_interrupted(work):
        if made:
            raise KeyboardInterrupt
        made.append(real_forked(work))
        pids.append(made[-1].pid)
        return made[-1]

    monkeypatch.setattr(ex_mod, "Forked", second_is_interrupted)
    w = world
    plan, pairs = _dups(w, 12)
    with pytest.raises(KeyboardInterrupt):  # the run is journaled interrupted, then the interruption goes on
        w.executor().apply(plan)
    assert made and made[0].pid is None and _all_reaped(pids)  # the first child: collected and reaped
    monkeypatch.setattr(ex_mod, "Forked", real_forked)
    (res,) = w.executor().resume()
    assert res.status == "done" and all(_linked(s, lib) for s, lib in pairs)


def test_the_kernel_counts_a_native_thread_pool_python_does_not():
    """BLAKE3's multi-threaded hashing starts native threads: after it, ``threading`` still sees one
    thread, the kernel more, and may_fork says no (a child would wait forever on the pool)."""
    import blake3

    blake3.blake3(b"x" * (1 << 22), max_threads=blake3.blake3.AUTO).digest()
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: BLAKE3 starts no pool")
    assert forked._kernel_threads() > threading.active_count()
    assert not forked.may_fork()


def test_the_child_never_opens_sqlite_and_its_hashes_are_stored_here(world, counted, monkeypatch):  # noqa: F811
    """The child's half reads the catalog rows the parent read for it (``Relinker.frozen``); a hash it
    has to compute (a kept file whose ctime moved) is written by the parent."""
    import sqlite3

    from qbhook.catalog.store import Catalog
    from tests.unit.test_converge_batch import _cache

    parent = os.getpid()
    real_connect = sqlite3.connect

    def connect(*a, **kw):
        if os.getpid() != parent:
            raise AssertionError("SQLite opened in the forked child")
        return real_connect(*a, **kw)

    monkeypatch.setattr(sqlite3, "connect", connect)
    w = world
    plan, pairs = _dups(w, 8)
    old = 1_600_000_000 * 10**9
    for s, lib in pairs:
        os.utime(s, ns=(old, old))
        os.utime(lib, ns=(old, old))
        _cache(w, s, lib)
        os.chmod(lib, 0o644)  # its ctime moves: the cached hash no longer applies, the relink reads it
    for g in plan.groups:
        g.steps = [dataclasses.replace(st, mtime_ns=old) for st in g.steps]
    stored = []
    real_store = Catalog.store_hash
    monkeypatch.setattr(Catalog, "store_hash", lambda self, *a: stored.append(a[0]) or real_store(self, *a))
    summary = w.executor().apply(plan)
    assert summary.status == "done" and counted[0] == [1]
    assert all(_linked(s, lib) for s, lib in pairs)
    keepers = {w.cat.inode_by_path(lib).id for _s, lib in pairs}
    assert keepers <= set(stored)  # both halves' kept files, the child's written here


def test_a_fork_that_fails_relinks_the_batch_on_this_core(world, monkeypatch):  # noqa: F811
    monkeypatch.setattr(ex_mod, "FORK_MIN_STEPS", 4)
    monkeypatch.setattr(ex_mod, "may_fork", lambda: True)

    def no_fork(_work):
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(ex_mod, "Forked", no_fork)
    plan, pairs = _dups(world, 8)
    summary = world.executor().apply(plan)
    assert summary.status == "done" and len(summary.groups_done) == 8
    assert all(_linked(s, lib) for s, lib in pairs)


def test_ctrl_c_in_this_half_is_an_interruption_not_a_child_failure(world, counted, monkeypatch):  # noqa: F811
    parent = os.getpid()
    real_relink = Executor._relink

    def relink(self, rl, gid, seq, s, hook=None):
        if os.getpid() == parent:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends the whole process group
        return real_relink(self, rl, gid, seq, s, hook)

    monkeypatch.setattr(Executor, "_relink", relink)
    plan, _pairs = _dups(world, 8)
    with pytest.raises(KeyboardInterrupt):
        world.executor().apply(plan)
    (run,) = world.journal.unfinished_runs()
    assert run.status == "interrupted"


def test_a_mount_table_that_moved_before_the_fork_leaves_the_child_its_filesystems(world, counted, monkeypatch):  # noqa: F811
    """A container started between the batch's prefetch and the fork moves the mount table, which empties
    the catalog's device cache: the child must still be handed its part's filesystems (looked up again),
    else it refuses every relink of its part as "on another filesystem"."""
    from qbhook.catalog.store import Catalog

    real_frozen = Catalog.frozen

    def frozen_after_a_mount(self, *a, **kw):
        monkeypatch.setattr(self._mounts, "changed", lambda: True)  # from now on, as if it moved each time
        return real_frozen(self, *a, **kw)

    monkeypatch.setattr(Catalog, "frozen", frozen_after_a_mount)
    w = world
    plan, pairs = _dups(w, 8)
    summary = w.executor().apply(plan)
    assert counted[0] == [1]
    assert summary.status == "done" and len(summary.groups_done) == 8, summary.groups_failed
    assert all(_linked(s, lib) for s, lib in pairs)
