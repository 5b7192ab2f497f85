"""Every command that takes the executor's lock has the one ``--wait`` (``cli.app.wait_option``)
and hands it to the lock (review finding 7 of stop 19: `sweep` had a fixed 600 s and
`holding --purge-expired --yes` a fixed 0, neither with the option)."""

from __future__ import annotations

import pytest

from qbhook.cli import events as cli_events
from qbhook.cli import main
from qbhook.move import orphans
from tests.unit.test_cli_catalog import Env


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


@pytest.mark.parametrize(
    "command, default",
    [("apply", 0), ("resume", 0), ("repair", 0), ("holding", 0), ("sweep", cli_events.SERVE_LOCK_WAIT)],
)
def test_each_command_taking_the_executor_lock_has_the_one_wait_option(command, default):
    import click

    cmd = main.get_command(click.Context(main), command)  # the CLI loads its commands lazily
    wait = next(p for p in cmd.params if p.name == "wait")
    assert wait.opts == ["--wait"] and wait.default == default


def test_sweep_hands_its_wait_to_the_executor(env, monkeypatch):
    seen = []
    monkeypatch.setattr("qbhook.cli.app.App.executor", lambda self, wait=0: seen.append(wait) or None)

    def stop(*a, **kw):  # the sweep itself is not what is tested here
        raise SystemExit(0)

    monkeypatch.setattr("qbhook.events.worker.sweep", stop)
    env.save(qbittorrent={"url": "http://127.0.0.1:1", "username": "u", "password": "x"})  # never asked
    env.run("sweep", "--wait", "7")
    env.run("sweep")
    assert seen == [7.0, cli_events.SERVE_LOCK_WAIT]


def test_the_timers_sweep_is_automatic_and_waits_out_the_import_grace(env, monkeypatch):
    """contrib's timer ran `qbhook sweep`, a person's sweep: with auto_apply it demoted a torrent
    completed seconds before, and Sonarr/Radarr then copied it across pools instead of linking.
    `--automatic` is handed to the sweep (``worker.sweep(automatic=True)``: policy.import_grace,
    as serve's sweeper), and the unit file passes it."""
    from pathlib import Path

    seen = []
    monkeypatch.setattr("qbhook.cli.app.App.executor", lambda self, wait=0: None)

    def stop(*a, automatic=False, **kw):  # the sweep itself: test_sweep_incremental.py
        seen.append(automatic)
        raise SystemExit(0)

    monkeypatch.setattr("qbhook.events.worker.sweep", stop)
    env.save(qbittorrent={"url": "http://127.0.0.1:1", "username": "u", "password": "x"})  # never asked
    env.run("sweep", "--automatic")
    env.run("sweep")
    assert seen == [True, False]
    unit = (Path(__file__).resolve().parents[2] / "contrib/systemd/qbhook-sweep.service").read_text()
    (start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert start.split()[-2:] == ["sweep", "--automatic"]


def test_holding_purge_hands_its_wait_to_the_lock(env, monkeypatch):
    seen = []
    monkeypatch.setattr(
        orphans, "purge_expired", lambda *a, lock_wait=0, **kw: seen.append(lock_wait) or orphans.Purge()
    )
    env.run("holding", "--purge-expired", "--yes", "--wait", "5")
    env.run("holding", "--purge-expired")  # a dry run takes no lock
    assert seen == [5.0]
