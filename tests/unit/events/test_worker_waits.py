"""A job that cannot run yet waits; it does not fail (helper review of serve's worker).

Before: a job that waited out the executor lock a long sweep or `qbhook apply` held counted
the wait as a failed attempt: eight of them and the job was dead.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from qbhook.events import worker as worker_mod
from qbhook.events.model import Event
from qbhook.events.worker import Worker
from qbhook.move.locks import Lock, lock_dir
from tests.unit.test_executor import H1, H2, _make_world, demote_plan
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def world(tmpfs, tmp_path):  # noqa: F811
    w = _make_world(tmpfs, tmp_path)
    yield w
    w.cat.close()


def interrupted_run(w) -> int:
    """A demote whose rollback cannot finish (qBittorrent refuses the way back): the run stays
    interrupted, as after a restart mid-move."""
    w.qbt.fail_at[w.save(H2, "pool")] = 0.9
    w.qbt.refuse_set_location_to.add(w.save(H2, "stash"))
    first = w.executor().apply(demote_plan(w))
    assert w.journal.run(first.run_id).status == "interrupted"
    return first.run_id


def clear_the_cause(w) -> None:
    w.qbt.refuse_set_location_to.clear()
    w.qbt.fail_at.clear()


def applies(plan):
    """handle_job replaced: the job's plan is ``plan``, applied as the worker applies one."""

    def handle(cfg, cat, clients, job, executor=None):
        return {"applied": executor.apply(plan, trigger="worker").to_dict()}

    return handle


def job_row(db, job_id):
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT state, attempts, not_before FROM event_jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        conn.close()


def test_a_busy_executor_lock_sends_the_job_back_without_an_attempt(world, monkeypatch):
    plan = demote_plan(world)
    monkeypatch.setattr(worker_mod, "handle_job", applies(plan))
    ex = world.executor(lock_wait=600.0)  # serve's wait, on the world's fake clock
    wk = Worker(world.cfg, world.cat, [], executor=ex, debounce_s=0, retry_base_s=1.0, retry_cap_s=60.0)
    job_id, _ = wk.queue.enqueue(Event("qbittorrent", "torrent_finished", hashes=(H1,)), now=0.0)
    db = world.cfg.catalog
    waits = []
    held = Lock(lock_dir(world.cfg) / "executor.lock", "a long sweep").acquire()  # another fd: another executor
    try:
        for _ in range(8):  # the queue's max_attempts: before, the eighth wait made the job dead
            t0 = time.time()
            assert wk.run_once()
            state, attempts, not_before = job_row(db, job_id)
            assert (state, attempts) == ("pending", 0)
            waits.append(round(not_before - t0))
            conn = sqlite3.connect(db)
            with conn:
                conn.execute("UPDATE event_jobs SET not_before = 0 WHERE id = ?", (job_id,))  # its wait is over
            conn.close()
    finally:
        held.release()
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]  # backing off, not spinning
    assert world.journal.runs() == []
    assert wk.run_once()
    job = wk.queue.get(job_id)
    assert (job.state, job.attempts) == ("done", 1) and '"status": "done"' in job.result
