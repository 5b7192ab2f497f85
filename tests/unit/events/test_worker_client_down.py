"""A client that does not answer makes serve's jobs wait, not fail (R27).

Before: a job whose try met qBittorrent (or rTorrent) not answering counted an attempt, as any
failure; eight tries (about half an hour of backoff) and it was dead, a dead-letter notice each,
waiting for `qbhook queue retry` or the next sweep (hours; never under ``--no-sweep``). And
/healthz said "worker idle" all along. A client down for half an hour (a container update, a
reboot) is routine.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from qbhook import notify
from qbhook.catalog.db import connect
from qbhook.catalog.store import Catalog
from qbhook.config import SweepConfig
from qbhook.errors import LockBusy, QbhookError, QbtUnreachable, RtorrentTimedOut
from qbhook.events import worker as worker_mod
from qbhook.events.auth import AuthConfig
from qbhook.events.model import Event
from qbhook.events.queue import backoff_s
from qbhook.events.server import create_app
from qbhook.events.worker import Worker, WorkerHealth

# The worker reads only the sweep's keep_history from its config here (its prune of finished jobs).
CFG = SimpleNamespace(sweep=SweepConfig())

URL = "http://127.0.0.1:8080"


class World:
    """A worker on a fake clock whose client is down while ``down`` says so."""

    def __init__(self, tmp_path, monkeypatch, error):
        self.now = 1_700_000_000.0
        self.cat = Catalog(connect(tmp_path / "catalog.sqlite", check_same_thread=False))
        self.down, self.error, self.tries, self.told = True, error, [], []
        monkeypatch.setattr(notify, "dead_letter", lambda job, err: self.told.append(job.id))
        monkeypatch.setattr(worker_mod, "handle_job", self.handle)
        self.health = WorkerHealth(clock=self.clock)
        self.worker = Worker(CFG, self.cat, [], debounce_s=5, health=self.health, clock=self.clock)
        self.ids = [self.worker.queue.enqueue(ev(c))[0] for c in "123"]

    def clock(self) -> float:
        return self.now

    def handle(self, cfg, cat, clients, job, executor=None):
        self.tries.append(self.now)
        if self.down:
            raise self.error
        return {"groups": []}

    def run_for(self, seconds: float, step: float = 10.0) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now += step
            self.worker.run_once()

    def jobs(self):
        return [(j.state, j.attempts) for j in map(self.worker.queue.get, self.ids)]


def ev(c: str) -> Event:
    return Event("qbittorrent", "torrent_finished", hashes=(c * 40,))


@pytest.fixture
def world(tmp_path, monkeypatch):
    made = []

    def make(error):
        made.append(World(tmp_path, monkeypatch, error))
        return made[-1]

    yield make
    for w in made:
        w.cat.close()


DOWN = QbtUnreachable(
    f"qBittorrent 'main' ({URL}): torrents/info: cannot reach qBittorrent (4 attempts): Connection refused",
    client="qBittorrent 'main'",
)
BUSY = RtorrentTimedOut(
    "rTorrent 'rt' (/run/rt.sock): d.multicall2: no answer within 60 s (0 bytes so far)", client="rTorrent 'rt'"
)


@pytest.mark.parametrize("error, client", [(DOWN, "qBittorrent 'main'"), (BUSY, "rTorrent 'rt'")])
def test_a_client_down_for_40_minutes_costs_no_attempt_and_health_names_it(world, error, client):
    w = world(error)
    start = w.now
    w.run_for(40 * 60)
    assert w.jobs() == [("pending", 0)] * 3 and w.told == []  # none dead, no dead-letter notice
    # Backing off, not spinning: the worker claims nothing until its wait (at most 60 s) is over.
    assert 30 <= len(w.tries) <= 50 and all(b - a >= 60 for a, b in zip(w.tries[-20:], w.tries[-19:]))

    report = w.health.report()
    assert not report.ok
    assert report.public.startswith(f"{client} unreachable since 2023-11-14 22:13:30 UTC (2390 s)")
    assert "no attempt counted" in report.public and "\n" not in report.public
    assert report.detail["client_unreachable"] == {"client": client, "since": start + 10}
    assert error.message in report.reason  # the cause: the log's and the status page's, not /healthz's
    app = create_app(enqueue=lambda e: None, auth=AuthConfig(token="t"), health=w.health.report).test_client()
    resp = app.get("/healthz")
    assert resp.status_code == 503 and resp.json["error"] == report.public and URL not in resp.text

    w.down = False  # back: every job runs at the next try, health with them
    w.run_for(60 + 5 + 30)
    assert w.jobs() == [("done", 1)] * 3 and w.told == []
    assert w.health.report().ok and "client_unreachable" not in w.health.report().detail


def test_a_client_wrong_from_the_start_is_never_silent(world):
    # Its URL mistyped: no try ever gets past it. No job dies of it, and health says so for ever.
    w = world(DOWN)
    w.run_for(6 * 3600, step=60)
    assert w.jobs() == [("pending", 0)] * 3
    report = w.health.report()
    assert not report.ok and report.public.startswith("qBittorrent 'main' unreachable since")
    assert f"({6 * 3600 - 60} s)" in report.public


def test_a_client_that_answers_with_a_refusal_is_an_ordinary_failure(world):
    # It answered (a login refused, a 403): waiting will not pass it, so attempts count as before.
    w = world(QbhookError("qBittorrent 'main': login failed"))
    w.run_for(10)
    assert w.worker.queue.get(w.ids[0]).attempts == 1
    assert w.health.report().ok  # a single failed job is the queue's to retry, as before


# ---------------------------------------------------------------------------- long waits (R35)


def test_backoff_grows_to_its_cap_and_never_overflows():
    assert [backoff_s(1.0, 60.0, n) for n in (-1, 0, 1, 5, 6)] == [1.0, 1.0, 2.0, 32.0, 60.0]
    # 1.0 * 2**1024 raised OverflowError: 1024 waits in a row is about 17 h at a 60 s cap.
    assert backoff_s(1.0, 60.0, 1024) == backoff_s(1.0, 60.0, 10**9) == 60.0


LOCKED = LockBusy("executor lock held by pid 4242 (qbhook apply)")


@pytest.mark.parametrize("error, waits", [(DOWN, "_client_waits"), (LOCKED, "_lock_waits")])
def test_a_wait_past_1024_in_a_row_strands_no_job(world, error, waits):
    # R35: a client down about 17 h (or the executor lock held as long): the 1024th wait in a row
    # raised OverflowError after the claim, so each pass left one job "running" for good.
    w = world(error)
    setattr(w.worker, waits, 1100)
    w.now += 60
    assert w.worker.run_once() is True
    assert w.jobs() == [("pending", 0)] * 3  # back to pending, no attempt counted
    w.down = False
    w.run_for(3 * 60)
    assert w.jobs() == [("done", 1)] * 3


def test_the_loop_survives_failing_passes_past_1024_in_a_row(world):
    w = world(DOWN)

    class Failing(WorkerHealth):
        def failed(self, error: str) -> int:
            super().failed(error)
            return 1100  # a full disk for about 17 h at the 60 s cap

    class OnePass(threading.Event):
        def wait(self, timeout=None) -> bool:
            self.set()  # the backoff's wait ends the loop
            return True

    w.worker.health = Failing(clock=w.clock)
    w.worker.run_once = lambda: 1 / 0
    w.worker.loop(OnePass())  # raised OverflowError: the worker thread ended
    assert w.worker.health.report().detail["last_error"] == "ZeroDivisionError: division by zero"


def test_a_bug_while_handling_a_jobs_error_fails_it_with_a_reason(world, monkeypatch):
    # Whatever raises after the claim, the job gets an outcome: never "running" for good.
    w = world(DOWN)

    def broken(*args):
        raise RuntimeError("bug in the wait path")

    monkeypatch.setattr(Worker, "_client_down", broken)
    w.now += 10
    assert w.worker.run_once() is True
    first = w.worker.queue.get(w.ids[0])
    assert (first.state, first.attempts) == ("pending", 1)
    assert "internal error: RuntimeError('bug in the wait path')" in first.last_error


@pytest.fixture
def notices(monkeypatch):
    seen: list[tuple[str, str, str]] = []
    monkeypatch.setattr(notify, "emit", lambda kind, text, severity="info": seen.append((kind, text, severity)))
    return seen


def test_a_client_down_past_ten_minutes_is_told_once_and_its_return_once(world, notices):
    # R35: /healthz answered 503 for a day and nobody was told: no notice at all, unattended.
    w = world(DOWN)
    w.run_for(8 * 60, step=60)  # a qBittorrent restart: over before anyone is told
    assert notices == []
    w.run_for(3 * 3600, step=60)
    assert [(k, s) for k, _t, s in notices] == [("client_down", "failure")]
    assert notices[0][1].startswith("qBittorrent 'main' has not answered for 10 minutes") and URL not in notices[0][1]

    w.down = False
    w.run_for(2 * 3600, step=60)
    assert [k for k, _t, _s in notices] == ["client_down", "client_back"]
    assert notices[1][1].startswith("qBittorrent 'main' answers again after 3.1 hours")
    assert w.jobs() == [("done", 1)] * 3


def test_a_restart_during_the_silence_does_not_tell_it_again(world, notices):
    # Health forgets a silence when serve restarts; what was told is the catalog's, so it does not.
    w = world(DOWN)
    w.run_for(20 * 60, step=60)
    assert [k for k, _t, _s in notices] == ["client_down"]
    w.health = WorkerHealth(clock=w.clock)
    w.worker = Worker(CFG, w.cat, [], debounce_s=5, health=w.health, clock=w.clock)  # a new serve
    w.run_for(3600, step=60)
    assert [k for k, _t, _s in notices] == ["client_down"]
    w.down = False
    w.run_for(5 * 60, step=60)
    assert [k for k, _t, _s in notices] == ["client_down", "client_back"]
