"""The worker survives storage errors and says so on /healthz (issue 9, finding 5).

Today's main: a full disk while recording a job's outcome ends the worker thread for
good, /healthz keeps saying ok, and a job claimed by a killed server stays "running"
for an hour.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest

from qbhook.catalog.db import Tx, connect
from qbhook.catalog.store import Catalog
from qbhook.config import SweepConfig
from qbhook.errors import QbhookError
from qbhook.events import worker as worker_mod
from qbhook.events.auth import AuthConfig
from qbhook.events.model import Event
from qbhook.events.queue import JobQueue, worker_alive, worker_id
from qbhook.events.server import create_app
from qbhook.events.worker import Worker, WorkerHealth

# The worker reads only the sweep's keep_history from its config here (its prune of finished jobs).
CFG = SimpleNamespace(sweep=SweepConfig())

H1, H2 = "1" * 40, "2" * 40
LONG_ERROR = "qBittorrent said no: " + "x" * 40000  # needs new pages in the db: refused when it is "full"


def ev(h):
    return Event("qbittorrent", "torrent_added", hashes=(h,))


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def catalog(tmp_path):
    cat = Catalog(connect(tmp_path / "catalog.sqlite", check_same_thread=False))
    yield cat
    cat.conn.close()


class Running:
    """A Worker.loop in a thread, with handle_job replaced by ``handle``."""

    def __init__(self, catalog, monkeypatch, handle, **kw):
        monkeypatch.setattr(worker_mod, "handle_job", handle)
        self.health = WorkerHealth(fail_threshold=2, stall_after_s=30)
        self.worker = Worker(
            CFG, catalog, [], debounce_s=0, health=self.health, retry_base_s=0.02, retry_cap_s=0.1, **kw
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.loop, args=(self.stop,), kwargs={"idle_s": 0.02})
        self.health.attach(self.thread)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def running(catalog, monkeypatch):
    started = []

    def start(handle, **kw):
        started.append(Running(catalog, monkeypatch, handle, **kw))
        return started[-1]

    yield start
    for r in started:
        r.close()


def test_full_disk_while_recording_a_failure_keeps_the_worker_alive_and_healthz_says_so(catalog, running, tmp_path):
    intake = JobQueue(connect(tmp_path / "catalog.sqlite", check_same_thread=False))
    bad, _ = intake.enqueue(ev(H1))

    def handle(cfg, cat, clients, job, executor=None):
        if job.id == bad:
            raise QbhookError(LONG_ERROR)
        return {"groups": []}

    # SQLite's own limit: writes that need a new page fail with "database or disk is full".
    assert catalog.conn.execute("PRAGMA max_page_count = 1").fetchone()[0] > 1
    r = running(handle)
    app = create_app(enqueue=intake.enqueue, auth=AuthConfig(token="t"), health=r.health.report).test_client()

    wait_for(lambda: not r.health.report().ok, what="the worker to report failing")
    resp = app.get("/healthz")
    assert resp.status_code == 503
    assert resp.json["error"].startswith("worker failing") and "\n" not in resp.json["error"]
    # the cause is the worker's to tell (log, status page); /healthz answers anyone
    assert "database or disk is full" in r.health.report().reason and "disk is full" not in resp.text
    assert r.thread.is_alive()
    assert intake.get(bad).state == "running"  # outcome held back, not lost

    # Intake still works meanwhile (its own connection), and the disk gets space again.
    other, _ = intake.enqueue(ev(H2))
    with r.worker.queue._lock:
        catalog.conn.execute("PRAGMA max_page_count = 1073741823")

    wait_for(lambda: intake.get(other).state == "done", what="the next job to be processed")
    job = intake.get(bad)
    assert job.state == "pending" and job.last_error == LONG_ERROR and job.attempts == 1
    assert r.health.report().ok
    assert app.get("/healthz").status_code == 200


@pytest.mark.parametrize("error", [sqlite3.OperationalError("disk I/O error"), RuntimeError("a bug")])
def test_errors_while_claiming_are_retried_with_backoff(catalog, running, monkeypatch, tmp_path, error):
    intake = JobQueue(connect(tmp_path / "catalog.sqlite", check_same_thread=False))
    job_id, _ = intake.enqueue(ev(H1))
    real_claim = JobQueue.claim
    calls = []

    def flaky_claim(self, *a, **kw):
        calls.append(time.monotonic())
        if len(calls) <= 4:
            raise error
        return real_claim(self, *a, **kw)

    monkeypatch.setattr(JobQueue, "claim", flaky_claim)
    r = running(lambda *a, **kw: {"groups": []})
    wait_for(lambda: intake.get(job_id).state == "done", what="the job to be processed after the errors")
    # The job's row says done before the worker's pass returns and records the success: wait for it.
    wait_for(lambda: r.health.report().ok, what="the worker's health after a pass that succeeded")
    assert r.thread.is_alive()
    # Backing off (0.02 + 0.04 + 0.08 + 0.1 s between the five claims), not spinning.
    assert calls[4] - calls[0] >= 0.2


def test_storage_errors_inside_jobs_count_against_health(catalog, running, tmp_path):
    intake = JobQueue(connect(tmp_path / "catalog.sqlite", check_same_thread=False))
    full = {"on": True}

    def handle(cfg, cat, clients, job, executor=None):
        if full["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        return {"groups": []}

    failing = [intake.enqueue(ev(f"{i}" * 40))[0] for i in range(3)]
    r = running(handle)
    wait_for(lambda: not r.health.report().ok, what="the worker to report failing")
    assert "database or disk is full" in r.health.report().reason
    wait_for(lambda: all(intake.get(j).last_error for j in failing), what="the failures to be recorded")
    assert [intake.get(j).last_error for j in failing] == ["catalog error: database or disk is full"] * 3
    full["on"] = False
    fine, _ = intake.enqueue(ev("f" * 40))
    wait_for(lambda: intake.get(fine).state == "done", what="the worker to recover")
    assert r.health.report().ok and r.thread.is_alive()


def test_health_model():
    now = [1000.0]
    h = WorkerHealth(stall_after_s=60, fail_threshold=3, clock=lambda: now[0])
    h.beat("idle")
    assert h.report().ok
    now[0] += 61
    report = h.report()
    assert not report.ok and report.reason.startswith("worker stalled: no progress for 61 s")
    h.busy("busy with job 7")
    now[0] += 7200  # a long move is not a stall
    assert h.report().ok and h.report().detail["busy_s"] == 7200
    h.beat("idle")
    for _ in range(2):
        h.failed("OperationalError: database or disk is full")
    assert h.report().ok  # below the threshold: a failed pass or two is not an alarm
    h.failed("OperationalError: database or disk is full")
    assert not h.report().ok and "3 attempts in a row" in h.report().reason
    h.failed("RuntimeError: first line\n  second line")
    assert "last: RuntimeError: first line second line" in h.report().reason and "\n" not in h.report().reason
    h.succeeded()
    h.beat("idle")
    assert h.report().ok
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    h.attach(dead)
    assert not h.report().ok and "thread has stopped" in h.report().reason


def _claim_as_real_worker_and_hang(db_path, ready):
    conn = sqlite3.connect(db_path, timeout=30)
    job = JobQueue(conn).claim(worker_id())
    ready.put(job.id)
    time.sleep(60)


def test_job_of_a_killed_worker_is_requeued_at_once_at_start(catalog, running, tmp_path):
    db = tmp_path / "catalog.sqlite"
    intake = JobQueue(connect(db, check_same_thread=False))
    job_id, _ = intake.enqueue(ev(H1))
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    proc = ctx.Process(target=_claim_as_real_worker_and_hang, args=(str(db), ready))
    proc.start()
    try:
        assert ready.get(timeout=30) == job_id
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    finally:
        if proc.is_alive():
            proc.kill()
    assert intake.get(job_id).state == "running"
    started = time.monotonic()
    running(lambda *a, **kw: {"groups": []})
    wait_for(lambda: intake.get(job_id).state == "done", timeout=10, what="the orphaned job to run again")
    assert time.monotonic() - started < 10  # not after an hour
    job = intake.get(job_id)
    assert job.attempts == 2  # the killed run counted


def test_jobs_of_live_workers_are_left_alone(tmp_path):
    conn = connect(tmp_path / "catalog.sqlite", check_same_thread=False)
    q = JobQueue(conn)
    a, _ = q.enqueue(ev(H1), now=0.0)
    b, _ = q.enqueue(ev(H2), now=0.0)
    q.claim(worker_id(), now=1.0)  # this very thread: alive
    q.claim("otherhost:123:456", now=1.0)  # cannot be judged from here
    assert q.requeue_orphaned(stale_after_s=3600, now=100.0) == []
    assert q.requeue_orphaned(stale_after_s=3600, now=5000.0) == [b]  # silent too long
    assert q.get(a).state == "running"


def test_worker_alive_sees_through_pid_reuse():
    host = worker_id().split(":")[0]
    proc = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.1)
        old_style = f"{host}:{proc.pid}:1"
        assert worker_alive(old_style, claimed_at=time.time()) is True
        # The pid belongs to a process started after the claim: not the claimer.
        assert worker_alive(old_style, claimed_at=time.time() - 3600) is False
    finally:
        proc.kill()
        proc.wait()
    assert worker_alive(f"{host}:{proc.pid}:1", claimed_at=time.time()) is False
    assert worker_alive("doomed-worker") is None


def test_a_restarted_process_with_the_same_pid_is_not_the_claimer():
    # A container's PID 1 comes back with the same pid (and maybe the same thread id):
    # the start tick in the id tells the two apart.
    me = worker_id()
    host, pid, ident, start, ns = me.split(":")
    assert worker_alive(me) is True
    assert worker_alive(f"{host}:{pid}:{ident}:{int(start) - 100}:{ns}") is False
    assert worker_alive(f"{host}:{pid}:{ident}:{int(start) + 100}:{ns}") is False
    # Another container with the same host name: its pids mean other processes here.
    assert worker_alive(f"{host}:{pid}:{ident}:{int(start) - 100}:{ns}0") is None


class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_silent_foreign_workers_job_is_requeued_by_a_later_check(catalog):
    # A container restarted under another host name or pid namespace cannot judge its
    # predecessor's worker by pid: only the heartbeat cutoff can take its job back, and a
    # job claimed less than the cutoff before the start-up check used to stay running forever.
    start = 1_000_000.0
    clock = FakeClock(start)
    q = JobQueue(catalog.conn)
    job, _ = q.enqueue(ev(H1), now=start - 700)
    q.claim("oldname:1:1:42:4026531836", now=start - 600)  # ten minutes before the start
    wk = Worker(CFG, catalog, [], debounce_s=5, clock=clock)
    wk.requeue_orphans()  # the start-up check: not silent long enough yet
    assert q.get(job).state == "running"
    clock.now = start + 2 * 3600
    assert wk.run_once() is False  # the periodic check; the requeued job then waits out the debounce
    assert q.get(job).state == "pending" and q.get(job).attempts == 1


def test_a_live_workers_long_job_keeps_its_heartbeat(catalog, running, monkeypatch):
    # Another qbhook (another host or pid namespace) judges this worker by its heartbeat
    # alone: a job running for hours must keep beating or that check takes it mid-move.
    start = 1_000_000.0
    clock = FakeClock(start)
    monkeypatch.setattr(Worker, "HEARTBEAT_S", 0.02)
    judge = JobQueue(connect(catalog_path(catalog), check_same_thread=False))
    job, _ = judge.enqueue(ev(H1), now=start)
    verdict = []

    def long_move(cfg, cat, clients, j, executor=None):
        clock.now = start + 2 * 3600  # two hours into the move
        try:
            wait_for(lambda: (judge.get(j.id).heartbeat_at or 0) >= clock.now, timeout=3, what="a heartbeat")
        except AssertionError:
            pass
        verdict.append(judge.requeue_orphaned(stale_after_s=Worker.STALE_AFTER_S, now=clock.now))
        return {"groups": []}

    running(long_move, worker_id="elsewhere:7:7", clock=clock)
    wait_for(lambda: judge.get(job).state == "done", what="the long job to finish")
    assert verdict == [[]]
    assert judge.get(job).attempts == 1


def catalog_path(cat) -> str:
    return next(row[2] for row in cat.conn.execute("PRAGMA database_list") if row[1] == "main")


def test_a_refused_commit_inside_a_job_fails_that_job_only(catalog, running, tmp_path):
    """A transaction whose COMMIT SQLite refuses (here a deferred foreign key) used to leave the
    worker's connection inside it: the queue, sharing that connection, then refused every call,
    the job stayed 'running' and every later pass failed until a restart."""
    intake = JobQueue(connect(tmp_path / "catalog.sqlite", check_same_thread=False))
    bad, _ = intake.enqueue(ev(H1))

    def handle(cfg, cat, clients, job, executor=None):
        if job.id == bad:
            with Tx(cat.conn) as c:
                c.execute("PRAGMA defer_foreign_keys = ON")
                c.execute("INSERT INTO paths (path, inode, pool) VALUES (x'2f61', 424242, 'stash')")
        return {"groups": []}

    r = running(handle)
    wait_for(lambda: intake.get(bad).state != "running" and intake.get(bad).attempts, what="the failure to be recorded")
    job = intake.get(bad)
    assert job.state == "pending" and job.last_error == "catalog error: FOREIGN KEY constraint failed"
    fine, _ = intake.enqueue(ev(H2))
    wait_for(lambda: intake.get(fine).state == "done", what="the next job to be processed")
    assert r.thread.is_alive() and not catalog.conn.in_transaction


def test_serves_watch_tells_a_stalled_or_failing_worker_once_and_its_recovery(monkeypatch):
    # R35: /healthz said 503 (failing, stalled) and nothing told anyone; the worker cannot tell
    # that it is stalled, so serve's watch thread does (alerts.WorkerWatch), only what lasts.
    from qbhook import notify
    from qbhook.events import alerts

    told: list[tuple[str, str, str]] = []
    monkeypatch.setattr(notify, "emit", lambda kind, text, severity="info": told.append((kind, text, severity)))
    now = [1_700_000_000.0]
    health, watch = WorkerHealth(stall_after_s=300, clock=lambda: now[0]), alerts.WorkerWatch()

    def watch_for(seconds: float) -> None:
        for _ in range(int(seconds // 30)):
            now[0] += 30
            watch.check(health.report(), now[0])

    health.beat("idle")
    watch_for(5 * 60 + 9 * 60)  # stalled from 300 s on, for 9 minutes: not yet
    assert told == []
    watch_for(5 * 60)
    assert [(k, s) for k, _t, s in told] == [("worker_trouble", "failure")]
    assert told[0][1].startswith("worker stalled: no progress for")
    health.beat("idle")
    watch_for(60)
    assert [k for k, _t, _s in told] == ["worker_trouble", "worker_back"]
    assert told[1][1] == "the worker makes progress again, after 14 minutes"  # seen stalled at 330 s

    for _ in range(3):  # failing passes: told once however long it lasts, no error text
        health.failed("OperationalError: disk I/O error at /secret/catalog.sqlite")
    watch_for(3600)
    assert [k for k, _t, _s in told] == ["worker_trouble", "worker_back", "worker_trouble"]
    assert told[2][1].startswith("worker failing: 3 attempts in a row") and "/secret" not in told[2][1]

    # A client's silence is ClientDown's to tell (with its name), not this watch's.
    health.succeeded()
    health.beat("idle")
    health.client_unreachable("qBittorrent 'main'", "connection refused")
    watch_for(3600)
    assert [k for k, _t, _s in told] == ["worker_trouble", "worker_back", "worker_trouble", "worker_back"]
