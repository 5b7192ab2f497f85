"""202 means on disk: events accepted by a running `qbhook serve` survive SIGKILL of the server."""

import json
import signal
import sqlite3

import pytest

from qbhook.sandbox.qbt import free_port
from qbhook.sandbox.serve import start_serve

from .serve_helpers import TOKEN, post_sonarr, write_config


@pytest.fixture
def server(tmp_path):
    port = free_port()
    config = write_config(tmp_path, port)  # nothing answers as qBittorrent: jobs back off, never lost

    def start():
        return start_serve(config, port, {"T": TOKEN})

    procs = []
    yield tmp_path / "catalog.sqlite", port, lambda: procs.append(start()) or procs[-1]
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def post(port, i):
    return post_sonarr(port, i)[0]


def test_accepted_events_survive_sigkill_and_restart(server):
    db, port, start = server
    p = start()
    assert [post(port, i) for i in range(1, 31)] == [202] * 30
    p.send_signal(signal.SIGKILL)
    p.wait()
    conn = sqlite3.connect(db)
    hashes = {h for (hs,) in conn.execute("SELECT hashes FROM event_jobs") for h in json.loads(hs)}
    assert hashes == {f"{i:040x}" for i in range(1, 31)}
    conn.close()
    # A restarted server keeps them (and keeps taking new ones).
    start()
    assert post(port, 31) == 202
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM event_jobs").fetchone()[0] == 31
