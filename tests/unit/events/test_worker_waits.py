"""A job that cannot run yet waits; it does not fail (helper review of serve's worker).

Before: a run resume could not finish at serve's start (qBittorrent not up after a reboot, a
rollback needing attention) was never resumed again; every later apply was refused, each job
with a move used up its attempts and died (a dead-letter notice each), and /healthz said ok.
And a job that waited out the executor lock a long sweep or `qbhook apply` held counted the
wait as a failed attempt: eight of them and the job was dead.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from qbhook.catalog.db import connect
from qbhook.errors import QbtError
from qbhook.events import worker as worker_mod
from qbhook.events.model import Event
from qbhook.events.queue import JobQueue
from qbhook.events.service import Service
from qbhook.events.worker import Worker, WorkerHealth
from qbhook.move.executor import build_executor
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


def test_a_run_resume_could_not_finish_at_start_is_resumed_before_a_job_applies(world, monkeypatch):
    run = interrupted_run(world)
    plan = demote_plan(world)  # the job's plan, made here: the catalog's connection is this thread's
    down = {"on": True}

    def executor_for(cfg, cat, clients):
        ex = build_executor(cfg, cat, {"qbt": world.qbt}, sleep=world.clock.sleep, clock=world.clock)
        resume = ex.resume

        def resume_unless_down(*a, **kw):
            if down["on"]:
                raise QbtError("qBittorrent at http://127.0.0.1:8080 is not answering")
            return resume(*a, **kw)

        ex.resume = resume_unless_down
        return ex

    monkeypatch.setattr(worker_mod, "handle_job", applies(plan))
    svc = Service(world.cfg, [], executor_for, host="127.0.0.1", port=0, sweeper=False)
    intake = JobQueue(connect(world.cfg.catalog, check_same_thread=False))
    job_id, _ = intake.enqueue(Event("qbittorrent", "torrent_finished", hashes=(H1,)), now=0.0)
    worker = threading.Thread(target=svc.worker_main, daemon=True)
    svc.health.attach(worker)
    worker.start()
    try:
        wait_for(lambda: not svc.health.report().ok, what="/healthz to say the executor is blocked")
        report = svc.health.report()
        assert f"run(s) {run} did not finish" in report.public and report.detail["unfinished_runs"] == [run]
        assert "not answering" in report.reason and "not answering" not in report.public  # the log's, not /healthz's
        time.sleep(0.5)
        assert job_row(world.cfg.catalog, job_id)[:2] == ("pending", 0)  # waits; no attempt spent on a refusal

        down["on"] = False  # qBittorrent is up, and takes the way back
        clear_the_cause(world)
        wait_for(lambda: job_row(world.cfg.catalog, job_id)[0] == "done", what="the job to be applied")
        assert svc.health.report().ok
    finally:
        svc.stop.set()
        worker.join(30)
        svc.server.close()
    job = intake.get(job_id)
    assert job.attempts == 1
    assert world.journal.run(run).status == "failed"  # resumed: its group is rolled back, the run over
    assert '"status": "done"' in job.result


def test_a_refusal_by_an_unfinished_run_costs_no_attempt_and_resume_runs_first(world, monkeypatch):
    run = interrupted_run(world)
    plan = demote_plan(world)
    monkeypatch.setattr(worker_mod, "handle_job", applies(plan))
    health = WorkerHealth()
    wk = Worker(world.cfg, world.cat, [], executor=world.executor(), debounce_s=0, health=health, retry_base_s=0.05)
    job_id, _ = wk.queue.enqueue(Event("qbittorrent", "torrent_finished", hashes=(H1,)), now=0.0)

    assert wk.run_once()  # claimed, planned, refused by the unfinished run
    job = wk.queue.get(job_id)
    assert (job.state, job.attempts, job.last_error) == ("pending", 0, None)
    assert not health.report().ok and health.report().detail["unfinished_runs"] == [run]
    assert not wk.run_once()  # within the backoff: no resume, and no job taken
    time.sleep(0.06)
    assert not wk.run_once()  # resumed, but qBittorrent still refuses the way back
    assert wk.queue.get(job_id).attempts == 0 and not health.report().ok

    clear_the_cause(world)
    time.sleep(0.11)
    assert wk.run_once()  # resumed (rolled back), then the job applied
    job = wk.queue.get(job_id)
    assert (job.state, job.attempts) == ("done", 1) and '"status": "done"' in job.result
    assert world.journal.run(run).status == "failed" and health.report().ok  # rolled back, over


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


def test_the_gate_says_which_group_keeps_a_resumed_run_unfinished():
    # R21: a run left unfinished by a group paused past its deletes (a client not up yet) was
    # said in /healthz's reason as "resume did not finish them (see the log)", never why.
    from types import SimpleNamespace

    from qbhook.events.worker import RunsGate

    told = []
    health = SimpleNamespace(busy=lambda *_a: None, blocked=lambda runs, why="": told.append((runs, why)))
    paused = SimpleNamespace(
        group_id="g1", needs_attention=True, paused=True, reason="verify_group failed: rTorrent 'rt': no answer"
    )
    executor = SimpleNamespace(
        resume=lambda: [SimpleNamespace(groups=[SimpleNamespace(group_id="g0", needs_attention=False), paused])],
        unfinished=lambda: (7,),
    )
    assert RunsGate(health).ready(executor, force=True) is False
    assert told == [((7,), "group g1 paused: verify_group failed: rTorrent 'rt': no answer")]
