"""Intake while the catalog's write lock is held elsewhere (a CLI scan, a sweep's transaction):
it answers 503 "catalog busy" within ``queue.INTAKE_BUSY_S`` instead of waiting the catalog's
60 s per event, one after the other on the shared intake connection (R41)."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from qbhook.errors import QueueBusy
from qbhook.events import queue
from qbhook.events.parse import parse_arr
from qbhook.events.server import AuthConfig, create_app
from qbhook.events.worker import WorkerHealth

from .conftest import load_fixture

TOKEN = "s3cret-token"
HDR = {"X-Qbhook-Token": TOKEN}
WAIT_S = 0.3


@pytest.fixture
def intake(tmp_path, monkeypatch):
    monkeypatch.setattr(queue, "INTAKE_BUSY_S", WAIT_S)
    q = queue.intake_queue(str(tmp_path / "catalog.sqlite"))
    yield q, tmp_path / "catalog.sqlite"
    q._conn.close()


def _post(client):
    t0 = time.monotonic()
    resp = client.post("/webhook/sonarr", json=load_fixture("sonarr-download.json"), headers=HDR)
    return resp, time.monotonic() - t0


def test_a_catalog_write_locked_elsewhere_answers_503_catalog_busy_at_once(intake, caplog):
    q, path = intake
    client = create_app(enqueue=q.enqueue, auth=AuthConfig(token=TOKEN)).test_client()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level("WARNING", logger="qbhook.events.server"):
            resp, took = _post(client)
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert resp.status_code == 503 and "catalog busy, try later" in resp.json["error"]
    assert took < 10 * WAIT_S  # the catalog's own busy timeout is 60 s
    [rec] = [r for r in caplog.records if r.name == "qbhook.events.server"]
    assert "catalog busy, try later" in rec.getMessage() and rec.exc_info is None  # one line, no traceback
    assert "storage failed" not in resp.json["error"]
    resp, _ = _post(client)  # the lock released: intake queues again
    assert resp.status_code == 202


def test_the_queues_lock_is_waited_for_only_until_the_deadline(intake):
    q, _path = intake
    taken, done = threading.Event(), threading.Event()

    def hold():  # another waitress thread, stuck in a write
        with q._lock:
            taken.set()
            done.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        taken.wait(5)
        client = create_app(enqueue=q.enqueue, auth=AuthConfig(token=TOKEN)).test_client()
        resp, took = _post(client)
        assert resp.status_code == 503 and "catalog busy" in resp.json["error"]
        assert WAIT_S * 0.9 <= took < 10 * WAIT_S
        with pytest.raises(QueueBusy):
            q.enqueue(_event())
    finally:
        done.set()
        t.join()


def _event():
    return parse_arr(load_fixture("sonarr-download.json"), app="sonarr")


def test_healthz_does_not_wait_for_the_intake(intake):
    q, _path = intake
    health = WorkerHealth()
    client = create_app(enqueue=q.enqueue, auth=AuthConfig(token=TOKEN), health=health.report).test_client()
    with q._lock:  # held by this thread: /healthz, answered here too, must not need it
        got = threading.Event()
        answers = []

        def probe():
            answers.append(client.get("/healthz").status_code)
            got.set()

        threading.Thread(target=probe).start()
        assert got.wait(5), "/healthz waited for the intake's lock"
    assert answers and answers[0] in (200, 503)
