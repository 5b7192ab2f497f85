"""A sweeper that fails at every sweep is seen (review of `qbhook serve`).

Before: every failed sweep was one log line (a bug's without its traceback); no notification,
/healthz stayed 200 and `qbhook status` said healthy. qBittorrent's password changed: the
safety-net sweep failed silently for weeks.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
import types

import pytest
from werkzeug.test import Client

from qbhook.config import load_config
from qbhook.errors import QbhookError
from qbhook.events import service
from qbhook.events.auth import AuthConfig
from qbhook.events.server import create_app
from qbhook.events.status import sweep_overdue
from qbhook.events.worker import WorkerHealth

from .serve_helpers import TOKEN, write_config

HOUR = 3600.0
REFUSED = QbhookError("qBittorrent main at http://10.0.0.5:8080: login refused (HTTP 403)")


@pytest.fixture
def svc(tmp_path):
    cfg = load_config(write_config(tmp_path, 8080), env={"T": TOKEN})
    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, sweep_interval=0.01))
    s = service.Service(cfg, [], lambda *a: object(), host="127.0.0.1", port=0, sweeper=True)
    yield s
    s.server.close()


def run_sweeps(svc, monkeypatch, outcomes):
    """sweeper_main over fake sweeps: each outcome an exception to raise or None (success); the
    notifications sent and /healthz's answer before each sweep are returned."""
    sent, seen = [], []
    monkeypatch.setattr(service.notify, "emit", lambda kind, text, severity="info": sent.append((kind, severity)))
    client = Client(svc.server.application)  # the WSGI app `serve` answers with
    left = list(outcomes)

    def sweep(*a, **kw):
        r = client.get("/healthz", environ_base={"REMOTE_ADDR": "127.0.0.1"})
        seen.append((r.status_code, r.get_json()))
        outcome = left.pop(0)
        if not left:
            svc.stop.set()
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(service, "sweep", sweep)
    # Sweeps 0.01 s apart keep the test fast; health would call a sweep 0.02 s late overdue (a
    # loaded machine): these tests are about failing sweeps, so health judges lateness by an hour.
    started = svc.health.sweeper_started
    monkeypatch.setattr(svc.health, "sweeper_started", lambda interval_s: started(HOUR))
    # The fake sweep reads none; the sweeper asks its schema version (db.still_current) only.
    fake = types.SimpleNamespace(conn=sqlite3.connect(":memory:", check_same_thread=False))
    monkeypatch.setattr(svc, "_open_catalog", lambda: fake)
    sweeper = threading.Thread(target=svc.sweeper_main, daemon=True)
    sweeper.start()
    sweeper.join(30)
    assert not sweeper.is_alive() and not left, "the sweeper never got to the fake sweeps"
    r = client.get("/healthz", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    seen.append((r.status_code, r.get_json()))
    return sent, seen


def test_failing_sweeps_are_notified_once_shown_by_healthz_and_their_recovery_too(svc, monkeypatch):
    sent, seen = run_sweeps(svc, monkeypatch, [REFUSED, REFUSED, REFUSED, None])
    assert sent == [("sweep_failing", "failure"), ("sweep_recovered", "info")]
    started = seen[0][1].pop("sweeper_since")  # when the sweeper started: `qbhook status` counts from it
    assert seen[0] == (200, {"ok": True, "worker": "worker starting", "sweeper": True})
    assert isinstance(started, float) and time.time() - 30 < started <= time.time()
    for code, doc in seen[1:4]:
        assert code == 503 and doc["error"].startswith("sweeper failing") and doc["sweeper"] is True
        assert "10.0.0.5" not in doc["error"]  # /healthz answers anyone: no error text
    assert "3 sweep(s) in a row" in seen[3][1]["error"]
    assert seen[4][0] == 200
    report = svc.health.report()
    assert report.detail["sweep_failures_in_a_row"] == 0 and "login refused" in report.detail["last_sweep_error"]


def test_a_bug_in_the_sweep_logs_its_traceback_and_counts_as_a_failure(svc, monkeypatch, caplog):
    with caplog.at_level(logging.ERROR, logger="qbhook.serve"):
        sent, seen = run_sweeps(svc, monkeypatch, [KeyError("pool")])
    assert sent == [("sweep_failing", "failure")]
    assert seen[-1][0] == 503
    assert [r.exc_info is not None for r in caplog.records if r.getMessage().startswith("sweep failed")] == [True]
    assert "KeyError" in svc.health.report().reason


def test_a_worker_without_sweeper_says_nothing_of_sweeps(svc):
    assert svc.health.report().sweeper is False
    assert "sweep_failures_in_a_row" not in svc.health.report().detail


UP_WITH_SWEEPER = {"answered": True, "ok": True, "sweeper": True}


@pytest.mark.parametrize(
    ("server", "ago", "problem"),
    [
        (UP_WITH_SWEEPER, 13 * HOUR, True),  # interval 6 h: two missed
        (UP_WITH_SWEEPER, 11 * HOUR, False),
        (UP_WITH_SWEEPER, None, False),  # never swept yet (a new catalog)
        ({**UP_WITH_SWEEPER, "sweeper": False}, 30 * HOUR, False),  # `serve --no-sweep`: cron's business
        ({"answered": False, "ok": False}, 30 * HOUR, False),  # no server: nothing to expect
        # restarted an hour ago: its first sweep comes one interval after start, not "fails or hangs"
        ({**UP_WITH_SWEEPER, "sweeper_since": 1_000_000.0 - HOUR}, 13 * HOUR, False),
        ({**UP_WITH_SWEEPER, "sweeper_since": 1_000_000.0 - 30 * HOUR}, 13 * HOUR, True),
    ],
)
def test_status_names_a_last_sweep_older_than_twice_the_interval(server, ago, problem):
    now = 1_000_000.0
    out = sweep_overdue(server, None if ago is None else now - ago, 6 * HOUR, now)
    assert bool(out) is problem
    if problem:
        assert out[0].startswith("last successful sweep 13.0 h ago, over twice server.sweep_interval (6.0 h)")


def test_a_sweeper_that_never_succeeded_since_it_started_is_overdue_from_its_start():
    now = 1_000_000.0
    server = {**UP_WITH_SWEEPER, "sweeper_since": now - 13 * HOUR}
    assert sweep_overdue(server, now - 40 * HOUR, 6 * HOUR, now) == [
        "no successful sweep since the sweeper started 13.0 h ago, over twice server.sweep_interval (6.0 h): "
        "the sweeper fails or hangs (the server's log says why)"
    ]
    assert sweep_overdue(server, None, 6 * HOUR, now)  # never swept on this catalog either
    assert not sweep_overdue({**server, "sweeper_since": now - HOUR}, None, 6 * HOUR, now)


@pytest.mark.parametrize("sent", [None, "yesterday", True, float("nan"), -1.0, 1e300])
def test_status_reads_no_sweeper_start_from_a_healthz_answer_without_a_sane_one(sent):
    from qbhook.events import status

    assert status._time_or_none(sent) is None


def test_a_hung_sweeper_makes_healthz_unhealthy_by_the_rule_status_applies():
    # R35: twenty hours after the sweeper started and no sweep finished (none failed either: it
    # hangs), /healthz said 200 ok; only `qbhook status` said so.
    now = [1_000_000.0]
    health = WorkerHealth(clock=lambda: now[0])
    health.sweeper_started(6 * HOUR)
    app = create_app(enqueue=lambda e: (1, False), auth=AuthConfig(token="t" * 20), health=health.report)

    def healthz():
        health.beat("idle")
        r = app.test_client().get("/healthz")
        return r.status_code, r.get_json().get("error")

    def status_says(sweep_at):
        return sweep_overdue({**UP_WITH_SWEEPER, "sweeper_since": 1_000_000.0}, sweep_at, 6 * HOUR, now[0])

    now[0] += 12 * HOUR  # its first sweep is due at 6 h; twice the interval is not overdue yet
    assert healthz() == (200, None) and status_says(None) == []
    now[0] += 8 * HOUR
    assert healthz() == (503, status_says(None)[0])
    assert status_says(None)[0].startswith("no successful sweep since the sweeper started 20.0 h ago")

    health.sweep_succeeded()  # it came back: counted from that sweep on
    swept = now[0]
    assert healthz() == (200, None)
    now[0] += 13 * HOUR
    assert healthz() == (503, status_says(swept)[0])
    assert status_says(swept)[0].startswith("last successful sweep 13.0 h ago")

    health.sweep_failed("login refused")  # failing sweeps are named first: they say more
    assert healthz()[1].startswith("sweeper failing: 1 sweep(s) in a row")


def test_a_worker_without_sweeper_is_never_overdue():
    now = [1_000_000.0]
    health = WorkerHealth(clock=lambda: now[0])
    now[0] += 100 * HOUR
    health.beat("idle")
    assert health.report().ok
