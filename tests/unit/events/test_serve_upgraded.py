"""A `serve` whose catalog a newer qbhook migrated ends, for its restart (R17).

Before: `serve` read the schema version once, at start. The package upgraded and `qbhook status`
run (which migrates), the old serve went on writing the old way: the sharers it could not start
again went to the step's args, which migration 12 had read once, and after its restart nothing
started those torrents again. Now its worker checks before each job and its sweeper before each
sweep; either stops serve the SIGTERM way, and `run` raises CatalogUpgraded (exit 75).
"""

from __future__ import annotations

import signal
import sqlite3
import threading

import pytest

from qbhook.catalog.db import migrations
from qbhook.catalog.store import Catalog
from qbhook.config import load_config
from qbhook.errors import CatalogUpgraded, ExitCode
from qbhook.events import service
from qbhook.events.model import Event
from qbhook.events.queue import JobQueue
from qbhook.events.worker import Worker

from .serve_helpers import TOKEN, write_config

NEWER = len(migrations()) + 1


def upgrade(path) -> None:
    """What a newer qbhook's first command does to the catalog, as far as this code can tell."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {NEWER}")
    conn.close()


@pytest.fixture
def cfg(tmp_path):
    return load_config(write_config(tmp_path, 8080), env={"T": TOKEN})


def test_the_worker_takes_no_job_once_the_catalog_is_upgraded(cfg):
    cat = Catalog.open(cfg.catalog)
    job_id, _ = JobQueue(cat.conn).enqueue(Event("qbittorrent", "torrent_finished", hashes=("a" * 40,)), now=0.0)
    cat.close()
    stop, raised = threading.Event(), []

    def serve_worker():  # its own thread, as serve's: the catalog opened before the upgrade
        cat = Catalog.open(cfg.catalog)
        try:
            wk = Worker(cfg, cat, [], debounce_s=0.0)
            upgrade(cfg.catalog)
            wk.loop(stop, idle_s=0.01)
        except CatalogUpgraded as err:
            raised.append(err)
        finally:
            cat.close()

    t = threading.Thread(target=serve_worker, daemon=True)
    t.start()
    t.join(10)
    stop.set()  # before: the job run, then idle passes for ever
    t.join(10)
    assert len(raised) == 1, "the worker went on"
    assert raised[0].exit_code == ExitCode.BUSY == 75
    assert str(raised[0]) == (
        f"the catalog was upgraded to schema {NEWER} by a newer qbhook; restart qbhook serve to run the new code"
    )
    conn = sqlite3.connect(cfg.catalog)
    assert conn.execute("SELECT state, attempts FROM event_jobs WHERE id = ?", (job_id,)).fetchone() == ("pending", 0)
    conn.close()


def test_the_sweeper_ends_serve_before_its_next_sweep(cfg, monkeypatch):
    import dataclasses

    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, sweep_interval=0.01))
    svc = service.Service(cfg, [], lambda *a: None, host="127.0.0.1", port=0, sweeper=True)
    sweeps = []
    monkeypatch.setattr(service, "sweep", lambda *a, **kw: sweeps.append(1) or upgrade(cfg.catalog))
    try:
        sweeper = threading.Thread(target=svc.sweeper_main, daemon=True)
        sweeper.start()
        sweeper.join(30)
        assert not sweeper.is_alive()
    finally:
        svc.server.close()
    assert sweeps == [1]  # the sweep after the upgrade never ran
    assert svc.stop.is_set() and isinstance(svc.upgraded, CatalogUpgraded)


def test_serve_exits_75_when_the_catalog_was_upgraded_under_it(cfg):
    """The whole `run`, in this (the main) thread as the CLI runs it: the worker finds the
    catalog upgraded, the port closes, the threads end and `run` raises for the exit code."""
    svc = service.Service(cfg, [], lambda *a: None, host="127.0.0.1", port=0, sweeper=False)
    upgrade(cfg.catalog)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}  # run installs its own
    try:
        with pytest.raises(CatalogUpgraded) as e:
            svc.run()
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    assert e.value.version == NEWER and e.value.exit_code == 75


def _serve_upgraded_in_a_job(cfg, monkeypatch, long_job, sweep_upgrades, join_s: float) -> float:
    """serve with one job queued (``long_job`` as its handling) and a sweeper whose sweeps are
    ``sweep_upgrades``; ``run`` must raise CatalogUpgraded. Returns the seconds ``run`` took."""
    import dataclasses
    import time

    from qbhook.events import worker as worker_mod

    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, sweep_interval=0.2))
    cat = Catalog.open(cfg.catalog)
    JobQueue(cat.conn).enqueue(Event("qbittorrent", "torrent_finished", hashes=("a" * 40,)), now=0.0)
    cat.close()
    monkeypatch.setattr(worker_mod, "handle_job", long_job)
    monkeypatch.setattr(service, "JOIN_TIMEOUT_S", join_s)
    monkeypatch.setattr(service, "sweep", sweep_upgrades)
    svc = service.Service(cfg, [], lambda *a: None, host="127.0.0.1", port=0, sweeper=True)
    svc.gate.ready = lambda *a, **k: True
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    t0 = time.monotonic()
    try:
        with pytest.raises(CatalogUpgraded):
            svc.run()
        return time.monotonic() - t0
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


def test_serve_stopped_by_an_upgrade_lets_the_job_under_way_end(cfg, monkeypatch):
    """R20: the sweeper saw the upgrade while the worker was in a long job (a relocation waiting
    out the client's move and recheck); ``run`` joined it for JOIN_TIMEOUT_S only and raised, and
    the process's exit cut the job off mid-step. Nothing outside asks for haste here: the job ends
    by itself first."""
    import time

    phases = []

    def long_job(*_a, **_kw):
        phases.append("started")
        time.sleep(1.5)
        phases.append("finished")
        return {}

    def sweep_upgrades(*_a, **_kw):  # the sweeper's next look finds the catalog migrated
        if phases:
            upgrade(cfg.catalog)

    _serve_upgraded_in_a_job(cfg, monkeypatch, long_job, sweep_upgrades, join_s=0.2)
    assert phases == ["started", "finished"]


def test_a_signal_during_the_upgrade_wait_gives_the_job_join_timeout_s(cfg, monkeypatch):
    """R22: stopped for an upgrade, serve waited for the job with no limit, and a SIGTERM
    (`systemctl restart`) or Ctrl-C arriving during that wait was ignored until the job ended.
    A signal starts the usual JOIN_TIMEOUT_S."""
    import os

    release = threading.Event()

    def long_job(*_a, **_kw):
        release.wait(30)  # a relocation waiting out the client
        return {}

    def sweep_upgrades(*_a, **_kw):
        upgrade(cfg.catalog)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()

    try:
        took = _serve_upgraded_in_a_job(cfg, monkeypatch, long_job, sweep_upgrades, join_s=0.5)
    finally:
        release.set()
    assert took < 10, "the signal did not end the wait"
