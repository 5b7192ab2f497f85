from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from dataclasses import replace

import pytest
from click.testing import CliRunner

from qbhook import notify
from qbhook.catalog.store import Catalog
from qbhook.cli import main
from qbhook.config import load_config
from qbhook.errors import QueueError
from qbhook.events import _job
from qbhook.events import queue as queue_mod
from qbhook.events.model import Event
from qbhook.events.parse import parse_arr
from qbhook.events.queue import OVERFLOW_KEY, QUEUE_DDL, JobQueue
from qbhook.events.worker import Worker

from .serve_helpers import TOKEN, write_config

H1 = "1" * 40
H2 = "2" * 40
H3 = "3" * 40


def connect(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(QUEUE_DDL)
    return conn


@pytest.fixture
def db(tmp_path):
    return tmp_path / "catalog.sqlite"


@pytest.fixture
def q(db):
    conn = connect(db)
    yield JobQueue(conn, max_attempts=3, backoff_base_s=10, backoff_cap_s=25)
    conn.close()


def ev(*hashes, kind="torrent_added", source="qbittorrent", paths=(), t=0.0):
    return Event(source, kind, hashes=hashes, paths=paths, received_at=t)


def test_ddl_is_idempotent(db):
    conn = connect(db)
    conn.executescript(QUEUE_DDL)
    conn.executescript(QUEUE_DDL)
    conn.close()


def test_enqueue_is_committed_on_return_and_survives_reconnect(db):
    conn = connect(db)
    job_id, coalesced = JobQueue(conn).enqueue(ev(H1, paths=("/a",)), now=100.0)
    assert coalesced is False
    # Another connection sees it while the first is still open: it was committed.
    other = sqlite3.connect(db)
    assert other.execute("SELECT state FROM event_jobs WHERE id = ?", (job_id,)).fetchone() == ("pending",)
    other.close()
    conn.close()

    reopened = JobQueue(connect(db))
    job = reopened.get(job_id)
    assert job.state == "pending" and job.hashes == (H1,) and job.paths == ("/a",)
    assert job.events == (ev(H1, paths=("/a",)),)
    assert reopened.claim("w", now=101.0).id == job_id


def test_coalesces_into_pending_job(q):
    first, c1 = q.enqueue(ev(H1, paths=("/a",)), now=10.0)
    second, c2 = q.enqueue(ev(H1, kind="torrent_finished", paths=("/b",)), now=20.0)
    assert (c1, c2) == (False, True) and first == second
    job = q.get(first)
    assert job.paths == ("/a", "/b")
    assert job.kinds == ("torrent_added", "torrent_finished")
    assert (job.created_at, job.updated_at, job.event_count) == (10.0, 20.0, 2)
    assert q.counts()["pending"] == 1


def test_cross_seed_burst_for_one_torrent_is_one_job(q):
    ids = {
        q.enqueue(Event("cross-seed", "cross_seed_injected", hashes=(H1, f"{i:040x}")), now=float(i))[0]
        for i in range(20)
    }
    assert len(ids) == 1
    job = q.get(ids.pop())
    assert job.event_count == 20 and len(job.hashes) == 21 and job.hashes[0] == H1


def test_different_keys_are_different_jobs(q):
    a, _ = q.enqueue(ev(H1), now=1.0)
    b, _ = q.enqueue(ev(H2), now=1.0)
    c, _ = q.enqueue(Event("radarr", "file_deleted", paths=("/m",)), now=1.0)
    assert len({a, b, c}) == 3


def test_running_job_is_not_merged_into(q):
    a, _ = q.enqueue(ev(H1), now=1.0)
    assert q.claim("w1", now=2.0).id == a
    b, coalesced = q.enqueue(ev(H1, kind="torrent_finished"), now=3.0)
    assert b != a and coalesced is False


def test_non_work_events_are_refused(q):
    with pytest.raises(QueueError):
        q.enqueue(Event("sonarr", "test"))
    with pytest.raises(QueueError):
        q.enqueue(Event("sonarr", "ignored"))


def test_claim_takes_oldest_ready_job(q):
    a, _ = q.enqueue(ev(H1), now=5.0)
    b, _ = q.enqueue(ev(H2), now=3.0)
    assert q.claim("w", now=2.0) is None  # neither ready yet
    job = q.claim("w", now=6.0)
    assert job.id == b and job.state == "running" and job.attempts == 1 and job.worker_id == "w"
    assert q.claim("w", now=6.0).id == a
    assert q.claim("w", now=6.0) is None


def test_coalesced_job_keeps_its_place(q):
    a, _ = q.enqueue(ev(H1), now=1.0)
    q.enqueue(ev(H2), now=2.0)
    q.enqueue(ev(H1), now=3.0)  # merges into a; a stays oldest
    assert q.claim("w", now=4.0).id == a


def test_complete(q):
    a, _ = q.enqueue(ev(H1), now=1.0)
    q.claim("w", now=2.0)
    q.complete(a, "promoted to /stash", now=3.0)
    job = q.get(a)
    assert (job.state, job.result, job.finished_at) == ("done", "promoted to /stash", 3.0)
    with pytest.raises(QueueError, match="is done, not running"):
        q.complete(a, "again")


def test_complete_by_wrong_worker_is_refused(q):
    a, _ = q.enqueue(ev(H1), now=1.0)
    q.claim("w1", now=2.0)
    with pytest.raises(QueueError, match="belongs to worker 'w1'"):
        q.complete(a, "x", worker_id="w2")
    q.complete(a, "x", worker_id="w1")


def test_unknown_job(q):
    with pytest.raises(QueueError, match="does not exist"):
        q.fail(999, "x")


def test_fail_backs_off_exponentially_then_dies(q):
    a, _ = q.enqueue(ev(H1), now=0.0)
    assert q.claim("w", now=0.0).attempts == 1
    assert q.fail(a, "qbittorrent unreachable", now=100.0) == "pending"
    job = q.get(a)
    assert (job.state, job.not_before, job.last_error) == ("pending", 110.0, "qbittorrent unreachable")
    assert q.claim("w", now=109.9) is None

    assert q.claim("w", now=110.0).attempts == 2
    q.fail(a, "still unreachable", now=200.0)
    assert q.get(a).not_before == 220.0  # 10 * 2

    assert q.claim("w", now=220.0).attempts == 3
    assert q.fail(a, "gave up", now=300.0) == "dead"
    job = q.get(a)
    assert (job.state, job.last_error, job.finished_at) == ("dead", "gave up", 300.0)
    assert q.claim("w", now=10_000.0) is None
    assert q.counts() == {"pending": 0, "running": 0, "done": 0, "dead": 1}


def test_backoff_is_capped(q):
    assert [q.backoff(n) for n in (1, 2, 3, 4)] == [10, 20, 25, 25]


def test_new_events_do_not_shorten_backoff(q):
    a, _ = q.enqueue(ev(H1), now=0.0)
    q.claim("w", now=0.0)
    q.fail(a, "busy", now=0.0)
    assert q.enqueue(ev(H1), now=1.0) == (a, True)
    assert q.get(a).not_before == 10.0


def test_retry_dead(q):
    a, _ = q.enqueue(ev(H1), now=0.0)
    for t in (0.0, 100.0, 200.0):
        q.claim("w", now=t + 50)
        q.fail(a, "boom", now=t + 50)
    assert q.get(a).state == "dead"
    assert q.retry_dead(a, now=500.0) == a
    job = q.get(a)
    assert (job.state, job.attempts, job.not_before) == ("pending", 0, 500.0)
    assert q.claim("w", now=500.0).id == a
    with pytest.raises(QueueError, match="not dead"):
        q.retry_dead(a)


def test_retry_dead_merges_into_newer_pending_job(q):
    a, _ = q.enqueue(ev(H1, paths=("/old",)), now=0.0)
    for t in (1.0, 2.0, 3.0):
        q.claim("w", now=100.0)
        q.fail(a, "boom", now=t)
    b, _ = q.enqueue(ev(H1, paths=("/new",)), now=50.0)
    assert b != a
    assert q.retry_dead(a, now=60.0) == b
    merged = q.get(b)
    assert set(merged.paths) == {"/old", "/new"} and merged.created_at == 0.0 and merged.event_count == 2
    assert q.get(a).state == "done" and q.get(a).result == f"merged into job {b}"


def test_fail_merges_when_a_new_pending_job_arrived_meanwhile(q):
    a, _ = q.enqueue(ev(H1, paths=("/1",)), now=0.0)
    q.claim("w", now=0.0)
    b, _ = q.enqueue(ev(H1, paths=("/2",)), now=1.0)
    assert q.fail(a, "checking", now=2.0) == "pending"
    job = q.get(b)
    assert set(job.paths) == {"/1", "/2"}
    assert job.attempts == 1 and job.not_before == 12.0 and job.last_error == "checking"
    assert q.counts() == {"pending": 1, "running": 0, "done": 1, "dead": 0}


def test_requeue_stale_and_heartbeat(q):
    a, _ = q.enqueue(ev(H1), now=0.0)
    b, _ = q.enqueue(ev(H2), now=0.0)
    q.claim("w1", now=10.0)
    q.claim("w2", now=10.0)
    q.heartbeat(b, worker_id="w2", now=95.0)
    assert q.requeue_stale(60, now=100.0) == [a]
    job = q.get(a)
    assert job.state == "pending" and job.worker_id is None and "w1" in job.last_error
    assert q.get(b).state == "running"


def test_requeue_stale_buries_a_job_that_keeps_killing_workers(q):
    a, _ = q.enqueue(ev(H1), now=0.0)
    for t in (10.0, 100.0, 200.0):
        q.claim("w", now=t)
        q.requeue_stale(30, now=t + 60)
    job = q.get(a)
    assert job.state == "dead" and "stopped without finishing" in job.last_error


def _claim_and_hang(db_path, ready):
    conn = sqlite3.connect(db_path, timeout=30)
    job = JobQueue(conn).claim("doomed-worker")
    ready.put(job.id)
    time.sleep(60)


def test_killed_worker_job_is_requeued(db):
    conn = connect(db)
    q = JobQueue(conn)
    a, _ = q.enqueue(ev(H1))
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    worker = ctx.Process(target=_claim_and_hang, args=(str(db), ready))
    worker.start()
    try:
        assert ready.get(timeout=30) == a
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)
    finally:
        if worker.is_alive():
            worker.kill()
    assert worker.exitcode == -signal.SIGKILL
    assert q.get(a).state == "running"
    later = time.time() + 1
    assert q.requeue_stale(0, now=later) == [a]
    job = q.claim("survivor", now=later)
    assert job.id == a and job.attempts == 2


def _enqueue_many(db_path, worker, n_own, n_shared, start):
    conn = sqlite3.connect(db_path, timeout=60)
    q = JobQueue(conn)
    start.wait()
    for i in range(max(n_own, n_shared)):
        if i < n_own:
            q.enqueue(Event("qbittorrent", "torrent_added", hashes=(f"{worker}{i:039x}",)))
        if i < n_shared:
            q.enqueue(Event("cross-seed", "cross_seed_injected", hashes=(f"f{i:039x}", f"{worker}" * 40)))
    conn.close()


def test_concurrent_enqueue_from_two_processes(db):
    connect(db).close()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    n_own, n_shared = 150, 100
    procs = [ctx.Process(target=_enqueue_many, args=(str(db), w, n_own, n_shared, start)) for w in ("a", "b")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    conn = connect(db)
    rows = conn.execute("SELECT coalesce_key, event_count, state FROM event_jobs").fetchall()
    keys = [k for k, _, _ in rows]
    assert len(keys) == len(set(keys)) == 2 * n_own + n_shared  # nothing duplicated
    assert sum(c for _, c, _ in rows) == 2 * (n_own + n_shared)  # nothing lost
    shared = [c for k, c, _ in rows if k.startswith("torrent:f")]
    assert shared == [2] * n_shared


def test_threads_share_one_queue(q):
    def work(t):
        for i in range(50):
            q.enqueue(ev(f"{t}{i:039x}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert q.counts()["pending"] == 200


def test_refuses_to_run_inside_callers_transaction(q, db):
    conn = q._conn
    conn.execute(
        "INSERT INTO event_jobs (coalesce_key, max_attempts, not_before, created_at, updated_at)"
        " VALUES ('x', 1, 0, 0, 0)"
    )
    assert conn.in_transaction
    with pytest.raises(QueueError, match="inside a transaction"):
        q.enqueue(ev(H1))
    conn.rollback()


def test_failed_write_rolls_back(q, monkeypatch):
    monkeypatch.setattr(_job.Parts, "columns", lambda self: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        q.enqueue(ev(H1))
    assert not q._conn.in_transaction
    assert q.counts()["pending"] == 0


def test_list_and_counts(q):
    a, _ = q.enqueue(ev(H1), now=1.0)
    b, _ = q.enqueue(ev(H2), now=2.0)
    c, _ = q.enqueue(ev(H3), now=3.0)
    q.claim("w", now=5.0)
    assert [j.id for j in q.list()] == [c, b, a]
    assert [j.id for j in q.list(states=["running"])] == [a]
    assert [j.id for j in q.list(states=("pending",), limit=1)] == [c]
    assert q.counts() == {"pending": 2, "running": 1, "done": 0, "dead": 0}
    with pytest.raises(QueueError, match="unknown job state"):
        q.list(states=["bogus"])


def test_prune_removes_old_done_jobs_only(q):
    a, _ = q.enqueue(ev(H1), now=0.0)
    b, _ = q.enqueue(ev(H2), now=0.0)
    q.claim("w", now=0.0)
    q.complete(a, "ok", now=10.0)
    assert q.prune(100, now=50.0) == 0
    assert q.prune(100, now=200.0) == 1
    assert q.get(a) is None and q.get(b) is not None


def radarr_delete(n: int) -> Event:
    """R110's flood: a Radarr delete naming ``n`` files (3,300: a 233 KB body)."""
    files = [{"path": f"/movies/M{k}/" + "p" * 40 + f"/{k}.mkv"} for k in range(n)]
    return parse_arr({"eventType": "MovieFileDelete", "movie": {"folderPath": "/movies"}, "deletedFiles": files})


def row_chars(q, job_id: int) -> int:
    """What ``prune`` counts of a row."""
    sql = (
        "SELECT length(hashes) + length(paths) + length(kinds) + length(sources) + length(events)"
        " + length(coalesce(result, '')) + length(coalesce(last_error, '')) FROM event_jobs WHERE id = ?"
    )
    return q._conn.execute(sql, (job_id,)).fetchone()[0]


def test_a_finished_job_keeps_a_few_of_what_it_named_and_all_a_reader_shows(q):
    # R110: a done job kept its whole lists for sweep.keep_history: a flood of big deletes kept
    # ~1.7x each body per job. A pending, failed or dead job stays whole: it may run again.
    big = radarr_delete(3300)
    done, _ = q.enqueue(big, now=0.0)
    failed, _ = q.enqueue(replace(big, paths=big.paths[1:]), now=1.0)
    q.claim("w", now=2.0)
    q.complete(done, '{"groups": [], "note": "nothing matches"}', now=3.0)
    job = q.get(done)
    assert (job.state, job.coalesce_key, job.kinds, job.sources) == (
        "done",
        big.coalesce_key(),
        (big.kind,),
        ("radarr",),
    )
    assert (job.event_count, job.attempts, job.result) == (1, 1, '{"groups": [], "note": "nothing matches"}')
    assert job.paths == big.paths[:5] and [e.paths for e in job.events] == [big.paths[:5]] and job.truncated
    assert row_chars(q, done) < 2_000
    q.claim("w", now=4.0)
    assert q.fail(failed, "boom", now=5.0) == "pending" and q.get(failed).paths == big.paths[1:]
    q.claim("w", now=100.0)
    assert q.fail(failed, "boom", now=101.0) == "pending"
    q.claim("w", now=200.0)
    assert q.fail(failed, "boom", now=201.0) == "dead" and q.get(failed).events[0].paths == big.paths[1:]
    q.retry_dead(failed, now=300.0)
    assert q.claim("w", now=301.0).paths == big.paths[1:] and not q.get(failed).truncated


def test_a_job_merged_into_a_newer_one_keeps_a_few_of_its_names_once_done(q):
    a, _ = q.enqueue(ev(H1, paths=tuple(f"/p{i}" for i in range(50))), now=0.0)
    q.claim("w", now=1.0)
    b, _ = q.enqueue(ev(H1, kind="torrent_finished"), now=2.0)
    assert q.fail(a, "boom", now=3.0) == "pending"
    merged, into = q.get(a), q.get(b)
    assert merged.result == f"merged into job {b}" and merged.paths == ("/p0", "/p1", "/p2", "/p3", "/p4")
    assert len(into.paths) == 50  # what runs keeps all


def test_qbhook_queue_shows_a_finished_big_job_as_it_was(tmp_path):
    def cli(*args):
        return CliRunner().invoke(main, ["--config", str(config), *args], env={"T": TOKEN})

    config = write_config(tmp_path, 1)
    assert cli("scan").exit_code == 0  # the catalog
    conn = sqlite3.connect(tmp_path / "catalog.sqlite")
    queue = JobQueue(conn)
    big = radarr_delete(3300)
    job_id, _ = queue.enqueue(big, now=0.0)
    queue.claim("w", now=1.0)
    queue.complete(job_id, '{"groups": [], "note": "no torrent in any configured client matches this event"}')
    conn.close()
    res = cli("queue")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [f"#{job_id:<6} done     {big.coalesce_key()[:40]:40} file_deleted x1 tries 1"]
    res = cli("--json", "queue")
    (shown,) = json.loads(res.output)
    assert (shown["state"], shown["key"], shown["kinds"], shown["sources"], shown["events"]) == (
        "done",
        big.coalesce_key(),
        ["file_deleted"],
        ["radarr"],
        1,
    )
    assert shown["result"] == {"groups": [], "note": "no torrent in any configured client matches this event"}


def test_a_job_refusing_thousands_of_paths_keeps_and_logs_a_few_and_their_count(tmp_path, caplog):
    # R114: a Radarr delete naming 3,300 paths the worker refused (then: under .zfs; still: through
    # a symlinked folder) kept 3,300 refusals in its finished row (757 KB, bigger than its body)
    # and logged 3,300 warnings. Its result keeps the first few and the count; one log line.
    def cli(*args):
        return CliRunner().invoke(main, ["--config", str(config), *args], env={"T": TOKEN})

    config = write_config(tmp_path, 1)
    assert cli("scan").exit_code == 0  # the catalog
    cfg = load_config(config, env={"T": TOKEN})
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "stash/s/movies")
    movies = f"{tmp_path}/stash/s/movies"
    files = [{"path": f"{movies}/M{k}/" + "p" * 40 + f"/{k}.mkv"} for k in range(3300)]
    big = parse_arr({"eventType": "MovieFileDelete", "movie": {"folderPath": movies}, "deletedFiles": files})
    cat = Catalog.open(cfg.catalog)
    try:
        job_id, _ = JobQueue(cat.conn).enqueue(big, now=0.0)
        with caplog.at_level(logging.WARNING, logger="qbhook.events.worker"):
            assert Worker(cfg, cat, [], debounce_s=0.0).run_once()
        assert row_chars(JobQueue(cat.conn), job_id) < 4_000
    finally:
        cat.close()
    warned = [r.getMessage() for r in caplog.records if r.name == "qbhook.events.worker"]
    refused = f"event path refused: {movies}/M0/{'p' * 40}/0.mkv goes through a symlink: {movies} -> {tmp_path}/outside"
    assert len(warned) == 1 and warned[0].startswith(f"job {job_id}: {refused}; ")
    assert warned[0].endswith("; and 3295 more") and len(warned[0]) < 4_000
    (shown,) = json.loads(cli("--json", "queue").output)
    assert (shown["state"], shown["result"]["rejected_count"]) == ("done", 3300)
    assert shown["result"]["rejected_paths"] == [
        refused.replace("/0.mkv", f"/{k}.mkv").replace("M0", f"M{k}") for k in range(5)
    ]


def test_prune_keeps_the_newest_finished_jobs_within_a_size(q):
    # However fast a flood of events finishes, the done rows kept stay within max_chars.
    ids = []
    for i in range(6):
        job_id, _ = q.enqueue(ev(f"{i}" * 40), now=float(i))
        q.claim("w", now=float(i))
        q.complete(job_id, "x" * 1000, now=float(i))
        ids.append(job_id)
    dead, _ = q.enqueue(ev(H1, kind="torrent_finished"), now=10.0)
    for t in (10.0, 100.0, 200.0):
        q.claim("w", now=t)
        q.fail(dead, "e" * 5000, now=t)
    assert q.get(dead).state == "dead"
    assert q.prune(3600, now=20.0, max_chars=2 * row_chars(q, ids[-1]) + 10) == 4
    assert [j.id for j in q.list(states=["done"])] == ids[:-3:-1] and q.get(dead) is not None


def test_huge_merges_are_capped_and_flagged(q, monkeypatch):
    monkeypatch.setattr(_job, "MAX_JOB_PATHS", 5)
    monkeypatch.setattr(_job, "MAX_KEPT_EVENTS", 3)
    for i in range(10):
        job_id, _ = q.enqueue(ev(H1, paths=(f"/p{i}",)), now=float(i))
    job = q.get(job_id)
    assert len(job.paths) == 5 and job.truncated and len(job.events) == 3 and job.event_count == 10


def test_a_truncated_job_counts_further_events_without_reading_or_writing_its_lists(q, monkeypatch):
    # R41: each further event for a truncated key read, parsed and wrote back its ~5 MB row
    # (~70 ms under the intake lock), though its worker sweeps and the names are never used.
    monkeypatch.setattr(_job, "MAX_JOB_PATHS", 5)
    for i in range(6):
        job_id, _ = q.enqueue(ev(H1, paths=(f"/p{i}",)), now=float(i))
    before = q.get(job_id)
    assert before.truncated and before.event_count == 6
    said: list[str] = []
    q._conn.set_trace_callback(said.append)
    try:
        got = q.enqueue(ev(H1, kind="torrent_finished", paths=("/new",)), now=10.0)
    finally:
        q._conn.set_trace_callback(None)
    assert got == (job_id, True)
    assert not [s for s in said if "paths" in s or "hashes" in s], said  # the lists: neither read nor written
    after = q.get(job_id)
    assert (after.paths, after.hashes, after.events) == (before.paths, before.hashes, before.events)
    assert after.event_count == 7 and after.kinds == ("torrent_added", "torrent_finished")
    assert after.updated_at == 10.0 and after.truncated


def test_a_hot_key_stays_bounded_in_characters_not_only_in_count(q, monkeypatch):
    # A helper's probe: 40 Sonarr events of 30 long paths for one download grew one row to 2 MB,
    # every byte stored twice (paths and kept events); at the count caps alone it reached ~190 MB,
    # read, parsed and written back whole by every further event under the queue's lock.
    monkeypatch.setattr(_job, "MAX_JOB_PATH_CHARS", 10_000)
    monkeypatch.setattr(_job, "MAX_KEPT_EVENT_CHARS", 5_000)
    long = "/tv/" + "x" * 996  # 1,000 characters
    for i in range(40):
        job_id, _ = q.enqueue(ev(H1, paths=tuple(f"{long}{i:03d}{k}" for k in range(3))), now=float(i))
    job = q.get(job_id)
    assert sum(map(len, job.paths)) <= 10_000 and len(job.paths) == 9 and job.truncated
    assert sum(len(p) for e in job.events for p in e.paths) <= 5_000 and len(job.events) == 1
    assert job.event_count == 40 and job.hashes == (H1,)


def test_odd_unicode_is_stored_faithfully(q):
    paths = ("/tv/\ud800 lone surrogate", "/tv/日本語 🎬", "/tv/nul-free \\ \" ' \n")
    job_id, _ = q.enqueue(Event("sonarr", "import", paths=paths))
    assert q.get(job_id).paths == paths


def test_error_text_with_undecodable_file_name(q):
    name = b"/pool/bad-\xff-name".decode("utf-8", "surrogateescape")
    a, _ = q.enqueue(ev(H1), now=0.0)
    q.claim(name, now=0.0)
    q.fail(a, f"[Errno 2] No such file or directory: {name!r}", now=0.0)
    assert "bad-\\udcff-name" in q.get(a).last_error
    q.claim("w", now=100.0)
    q.complete(a, f"moved {name}")
    assert q.get(a).result == "moved /pool/bad-\\udcff-name"


class _CommitFails:
    """A connection whose next COMMITs fail as on a full disk (sqlite3.Connection's own
    methods cannot be patched)."""

    def __init__(self, conn, times):
        self._conn, self.times = conn, times

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, sql, *args):
        if sql == "COMMIT" and self.times:
            self.times -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)


def test_failed_commit_rolls_back_and_the_queue_keeps_working(db):
    conn = connect(db)
    q = JobQueue(_CommitFails(conn, 1))
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        q.enqueue(ev(H1))
    assert not conn.in_transaction  # not stuck inside the failed transaction
    assert q.counts()["pending"] == 0  # nothing half-written
    job_id, _ = q.enqueue(ev(H1))  # and the next write works
    assert q.get(job_id).state == "pending"


def test_ready_since_counts_jobs_waiting_too_long(q):
    q.enqueue(ev(H1), now=0.0)
    q.enqueue(ev(H2), now=500.0)
    q.enqueue(ev(H3), now=0.0)
    q.claim("w", now=1.0)  # claims the oldest, H1
    assert q.ready_since(600, now=1000.0) == 1  # H3 only: H2 is younger, H1 is running
    assert q.ready_since(600, now=1200.0) == 2


def test_a_dead_letter_notice_goes_out_once_the_job_is_dead_for_everyone(db, monkeypatch):
    conn = connect(db)
    q = JobQueue(conn, max_attempts=1)
    seen = []

    def notice(job, error):
        # What any other reader (status, `queue`, a retry) sees when the alert goes out.
        with sqlite3.connect(db) as other:
            seen.append(
                (job.id, error, other.execute("SELECT state FROM event_jobs WHERE id = ?", (job.id,)).fetchone())
            )

    monkeypatch.setattr(notify, "dead_letter", notice)
    a, _ = q.enqueue(ev(H1), now=0.0)
    q.claim("w", now=0.0)
    assert q.fail(a, "boom", now=1.0) == "dead"
    assert seen == [(a, "boom", ("dead",))]


def test_no_dead_letter_notice_when_the_burial_is_not_committed(db, monkeypatch):
    conn = connect(db)
    failing = _CommitFails(conn, 0)
    q = JobQueue(failing, max_attempts=1)
    seen = []
    monkeypatch.setattr(notify, "dead_letter", lambda job, error: seen.append((job.id, error)))
    a, _ = q.enqueue(ev(H1), now=0.0)
    q.claim("w", now=0.0)
    failing.times = 1
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        q.fail(a, "boom", now=1.0)
    assert seen == [] and q.get(a).state == "running"  # nothing announced: the job is not dead
    assert q.fail(a, "boom again", now=2.0) == "dead"
    assert seen == [(a, "boom again")]


# -- a cap on pending jobs (server.max_pending) --------------------------------------


def _flood(i: int) -> Event:
    """An event with a key of its own and a big body: a sender flooding distinct paths."""
    return Event("sonarr", "import", paths=tuple(f"/tv/show{i}/" + "x" * 4000 + f"{j}.mkv" for j in range(10)))


def _pending_rows(q: JobQueue) -> list[tuple[str, int]]:
    return q._conn.execute(
        "SELECT coalesce_key, length(hashes) + length(paths) + length(events) FROM event_jobs"
        " WHERE state = 'pending' ORDER BY created_at, id"
    ).fetchall()


def test_past_max_pending_events_fold_into_one_sweep_job_not_new_rows(db, caplog):
    """N + k events with distinct keys leave N rows and one overflow job, whose row stays small
    however many fold in (it keeps what each event was, never what it named)."""
    conn = connect(db)
    q = JobQueue(conn, max_pending=5)
    answers = [q.enqueue(_flood(i), now=float(i)) for i in range(5 + 40)]
    assert [a.overflow for a in answers] == [False] * 5 + [True] * 40
    assert len({a[0] for a in answers[5:]}) == 1  # one job for all
    rows = _pending_rows(q)
    assert len(rows) == 5 + 1 and rows[-1][0] == OVERFLOW_KEY
    assert rows[-1][1] < 20_000, rows[-1]  # not 40 events' paths: bounded
    over = q.get(answers[-1][0])
    assert over.hashes == () and over.paths == () and over.event_count == 40 and over.kinds == ("import",)
    # A key already pending still merges (no new row): the cap is on rows, not on events.
    assert q.enqueue(_flood(0), now=99.0) == (answers[0][0], True)
    assert len(_pending_rows(q)) == 6
    conn.close()


def test_an_event_after_the_flood_is_queued_in_the_sweep_job_and_claimed(q):
    q.max_pending = 3
    for i in range(10):
        q.enqueue(_flood(i), now=float(i))
    real = q.enqueue(ev(H1, kind="torrent_finished"), now=20.0)
    assert real.overflow
    claimed = [q.claim("w", now=30.0) for _ in range(4)]
    assert [j.coalesce_key for j in claimed][-1] == OVERFLOW_KEY
    assert "torrent_finished" in claimed[-1].kinds and "qbittorrent" in claimed[-1].sources
    assert q.claim("w", now=30.0) is None


def test_one_warning_per_overflow_episode(q, caplog):
    q.max_pending = 2
    caplog.set_level("WARNING", logger="qbhook.events.queue")
    for i in range(30):
        q.enqueue(_flood(i), now=float(i))
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "event queue full (2 pending jobs, server.max_pending)" in warnings[0].getMessage()
    # The worker takes the sweep job: the episode is over; the next overflow is a new one.
    for _ in range(3):
        job = q.claim("w", now=40.0)
        q.complete(job.id, "{}")
    for i in range(30, 40):
        q.enqueue(_flood(i), now=float(i))
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2


# -- rows this qbhook cannot read (R27): a newer `qbhook hook`'s event kind, a damaged row -----


def _unreadable(db, job_id: int, sql: str = "events = replace(events, 'torrent_added', 'torrent_moved')") -> None:
    """The row as a newer qbhook (a new event kind) or a torn write would have left it."""
    conn = sqlite3.connect(db)
    conn.execute(f"UPDATE event_jobs SET {sql} WHERE id = ?", (job_id,))
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    "damage, cause",
    [
        ("events = replace(events, 'torrent_added', 'torrent_moved')", "events: unknown event kind 'torrent_moved'"),
        ("hashes = '{not json'", "hashes: "),
        ("paths = '{}'", "paths: not a list but dict"),
        ("events = '[1]'", "events: "),
    ],
)
def test_an_unreadable_oldest_row_is_buried_and_the_next_job_runs(q, db, damage, cause, monkeypatch):
    """Taken as the oldest ready row every pass, an unreadable row stopped every later job for good."""
    notices = []
    monkeypatch.setattr(notify, "dead_letter", lambda job, error: notices.append((job.id, error)))
    bad, _ = q.enqueue(ev(H1), now=0.0)
    good, _ = q.enqueue(ev(H2), now=1.0)
    _unreadable(db, bad, damage)
    assert q.claim("w", now=10.0).id == good
    job = q.get(bad)
    assert job.state == "dead" and job.unreadable
    assert job.last_error.startswith(f"job {bad} cannot be read: {cause}") and "\n" not in job.last_error
    assert notices == [(bad, job.last_error)]  # told once, as any dead job is
    assert q.claim("w", now=10.0) is None


def test_an_event_for_the_key_of_an_unreadable_pending_row_is_queued_not_refused(q, db):
    """Merging needs the row's content: the event was refused (503 at intake) for as long as the row
    stayed pending. It is no job to merge into: it is buried, and the event gets a new row."""
    bad, _ = q.enqueue(ev(H1), now=0.0)
    _unreadable(db, bad)
    new, coalesced = q.enqueue(ev(H1, kind="torrent_finished"), now=1.0)
    assert new != bad and not coalesced
    assert q.get(bad).state == "dead" and "cannot be read" in q.get(bad).last_error
    assert q.claim("w", now=2.0).kinds == ("torrent_finished",)


def test_a_failed_job_goes_back_to_pending_past_an_unreadable_row_of_its_key(q, db):
    a, _ = q.enqueue(ev(H1), now=0.0)
    q.claim("w", now=0.0)
    bad, _ = q.enqueue(ev(H1), now=1.0)  # a new pending row for the key, then damaged
    _unreadable(db, bad)
    assert q.fail(a, "boom", now=2.0) == "pending"
    assert (q.get(a).state, q.get(bad).state) == ("pending", "dead")


def test_list_shows_an_unreadable_row_with_its_error(q, db):
    bad, _ = q.enqueue(ev(H1), now=0.0)
    good, _ = q.enqueue(ev(H2), now=1.0)
    _unreadable(db, bad)
    jobs = q.list()
    assert [j.id for j in jobs] == [good, bad]
    shown = jobs[1]
    assert shown.state == "pending" and shown.kinds == ("torrent_added",) and shown.hashes == (H1,)
    assert shown.last_error == shown.unreadable and "torrent_moved" in shown.last_error


def test_retry_refuses_an_unreadable_dead_row_in_one_line(q, db):
    bad, _ = q.enqueue(ev(H1), now=0.0)
    _unreadable(db, bad)
    assert q.claim("w", now=1.0) is None
    with pytest.raises(QueueError, match=f"job {bad} cannot be retried by this qbhook: job {bad} cannot be read"):
        q.retry_dead(bad)
    assert q.get(bad).state == "dead"


def test_qbhook_queue_prints_an_unreadable_row_and_retry_refuses_it(tmp_path):
    def cli(*args):
        return CliRunner().invoke(main, ["--config", str(config), *args], env={"T": TOKEN})

    config = write_config(tmp_path, 1)
    assert cli("scan").exit_code == 0  # the catalog
    conn = sqlite3.connect(tmp_path / "catalog.sqlite")
    bad, _ = JobQueue(conn).enqueue(ev(H1), now=0.0)
    conn.close()
    _unreadable(tmp_path / "catalog.sqlite", bad)
    res = cli("queue")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [
        f"#{bad:<6} pending  {('torrent:' + H1)[:40]:40} torrent_added x1 tries 0",
        f"        error: job {bad} cannot be read: events: unknown event kind 'torrent_moved'"
        " (written by another qbhook version, or damaged)",
    ]
    conn = sqlite3.connect(tmp_path / "catalog.sqlite")
    assert JobQueue(conn).claim("w") is None
    conn.close()
    res = cli("queue", "retry", str(bad))
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert f"job {bad} cannot be retried by this qbhook" in res.output


# -- a backward wall-clock step (R27) -------------------------------------------------------------


def test_a_job_queued_before_the_clock_went_back_hours_is_ready_at_once(q):
    """NTP stepping the clock back N hours left every job queued before waiting N hours more."""
    a, _ = q.enqueue(ev(H1), now=6 * 3600.0)
    now = 60.0  # the clock went back 6 h, and a minute passed
    assert q.enqueue(ev(H1), now=now) == (a, True)  # merging never moved not_before
    job = q.claim("w", now=now)
    assert job.id == a and job.not_before == now and job.created_at == now
    q.fail(a, "boom", now=now)
    assert q.claim("w", now=now + 1) is None  # its backoff holds again: created_at is no longer ahead


def test_a_job_created_in_the_future_beyond_the_slack_is_a_clock_step(q):
    """Back less than the backoff cap: not_before alone cannot tell, created_at can."""
    a, _ = q.enqueue(ev(H1), now=1000.0)
    assert q.claim("w", now=1000.0 - 601).id == a  # 25 s cap + 600 s slack: not_before alone is within
    q.enqueue(ev(H2), now=2000.0)
    assert q.claim("w", now=2000.0 - 599) is None  # within the slack: the worker's debounce, skew


def test_a_backoff_within_the_cap_is_kept(q):
    a, _ = q.enqueue(ev(H1), now=0.0)
    q.claim("w", now=0.0)
    q.fail(a, "boom", now=0.0)
    assert q.claim("w", now=9.0) is None and q.get(a).not_before == 10.0


def test_postpone_never_sets_a_delay_past_the_backoff_cap(q):
    a, _ = q.enqueue(ev(H1), now=0.0)
    q.claim("w", now=0.0)
    q.postpone(a, 10_000.0, now=0.0)
    assert q.get(a).not_before == 25.0


def test_prune_deletes_in_batches_so_intake_gets_the_write_lock_between(q, monkeypatch):
    # R117: the first prune after an upgrade deleted ~1 GB of old rows in one transaction, holding
    # the write lock 11.6 s, past intake's 5 s wait (events answered 503, `qbhook hook` exit 75).
    monkeypatch.setattr(queue_mod, "PRUNE_BATCH", 2)
    for i in range(5):
        job_id, _ = q.enqueue(ev(f"{i}" * 40), now=float(i))
        q.claim("w", now=float(i))
        q.complete(job_id, "x" * 100, now=float(i))
    begins = []
    q._conn.set_trace_callback(lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None)
    assert q.prune(3600, now=1e9) == 5
    q._conn.set_trace_callback(None)
    assert len(begins) == 3 and q.list(states=["done"]) == []
