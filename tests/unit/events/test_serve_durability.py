"""202 means on disk: events accepted by a running `qbhook serve` survive SIGKILL of the server."""

import json
import signal
import sqlite3
import urllib.request

import pytest

from qbhook.sandbox.qbt import free_port
from qbhook.sandbox.serve import start_serve

TOKEN = "durability-token-123456"


@pytest.fixture
def server(tmp_path):
    for d in ("stash/s", "pool/s"):
        (tmp_path / d).mkdir(parents=True)
    port = free_port()
    cfg = {
        "catalog": str(tmp_path / "catalog.sqlite"),
        "pools": {
            "stash": {"path": str(tmp_path / "stash"), "role": "primary"},
            "pool": {"path": str(tmp_path / "pool"), "role": "cold"},
        },
        "seeding_roots": {"stash": str(tmp_path / "stash/s"), "pool": str(tmp_path / "pool/s")},
        # Nothing answers here: the worker's jobs fail and back off, they are never lost.
        "qbittorrent": {"url": "http://127.0.0.1:1", "username": "admin", "password": "x", "timeout": 1},
        "server": {"listen": "127.0.0.1", "port": port, "token_env": "T"},
    }
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))

    def start():
        return start_serve(tmp_path / "c.yaml", port, {"T": TOKEN})

    procs = []
    yield tmp_path / "catalog.sqlite", port, lambda: procs.append(start()) or procs[-1]
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def post(port, i):
    body = json.dumps(
        {
            "eventType": "Download",
            "instanceName": "Sonarr",
            "series": {"id": 1, "title": "S", "path": "/tv/S"},
            "episodes": [{"id": i}],
            "episodeFile": {"id": i, "path": f"/tv/S/e{i}.mkv"},
            "downloadClientType": "qBittorrent",
            "downloadId": f"{i:040X}",
        }
    ).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook/sonarr",
        data=body,
        headers={"Content-Type": "application/json", "X-Qbhook-Token": TOKEN},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


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
