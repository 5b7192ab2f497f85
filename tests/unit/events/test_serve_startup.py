"""`qbhook serve` start-up and `qbhook status` / `queue` on a real process (issue 9,
findings 5, 7a and 8).

Today's main: serve waits up to 10 min for the executor lock before it listens; a busy
port is a traceback; a job left running by a killed server waits an hour; `status`
cannot tell a stalled worker and exits 0 on a damaged catalog.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from qbhook.cli import main
from qbhook.events.model import Event
from qbhook.events.queue import JobQueue
from qbhook.move.locks import Lock
from qbhook.sandbox.qbt import free_port
from qbhook.sandbox.serve import start_serve, stop_serve

from .serve_helpers import TOKEN, post_sonarr, write_config


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def get(port: int, path: str = "/healthz"):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post_event(port: int, i: int) -> int:
    return post_sonarr(port, i)[0]


def serve_cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "qbhook", "--config", str(config), "serve", "--no-sweep", *extra]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- finding 7a: the port first ------------------------------------------------------------


def test_port_opens_while_another_process_holds_the_executor_lock(tmp_path, procs):
    port = free_port()
    config = write_config(tmp_path, port)
    lock = Lock(tmp_path / "catalog.sqlite.locks" / "executor.lock", "executor lock").acquire()
    try:
        t0 = time.monotonic()
        procs.append(start_serve(config, port, {"T": TOKEN}, timeout=15))
        assert time.monotonic() - t0 < 15
        # Healthy while it waits: the worker is busy finishing what was in flight.
        wait_for(
            lambda: (
                get(port) == (200, {"ok": True, "worker": "worker finishing runs a previous process left unfinished"})
            ),
            10,
            "the worker to wait in resume",
        )
        assert post_event(port, 1) == 202  # intake works while the worker waits
    finally:
        lock.release()
    # Once the lock is free the worker gets past resume and into its loop.
    wait_for(lambda: "finishing runs" not in get(port)[1].get("worker", ""), 15, "the worker to start its loop")
    stop_serve(procs[0])


def test_busy_port_is_a_one_line_error(tmp_path):
    port = free_port()
    config = write_config(tmp_path, port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        run = subprocess.run(
            serve_cmd(config), check=False, env={**os.environ, "T": TOKEN}, capture_output=True, text=True, timeout=60
        )
    assert run.returncode == 75, run.stderr
    assert "Traceback" not in run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("qbhook: ")]
    assert lines == [f"qbhook: cannot listen on 127.0.0.1:{port}: the address is already in use"], run.stderr


def test_unusable_listen_address_is_a_config_error(tmp_path):
    config = write_config(tmp_path, free_port())
    config.write_text(config.read_text().replace('"listen": "127.0.0.1"', '"listen": "192.0.2.1"'))
    run = subprocess.run(
        serve_cmd(config), check=False, env={**os.environ, "T": TOKEN}, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 78, run.stderr
    assert "Traceback" not in run.stderr
    assert "qbhook: config: server.listen: cannot listen on 192.0.2.1:" in run.stderr


def test_an_unusable_listen_option_is_a_usage_error_naming_the_option(tmp_path):
    """`--listen` on the command line was blamed on `server.listen` (exit 78), a key the file may
    not even have: the person who typed the option looked for a fault in the wrong place."""
    config = write_config(tmp_path, free_port())
    run = subprocess.run(
        serve_cmd(config, "--listen", "192.0.2.1"),
        check=False,
        env={**os.environ, "T": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "qbhook: --listen: cannot listen on 192.0.2.1:" in run.stderr
    assert "server.listen" not in run.stderr


@pytest.mark.parametrize("given", [None, "--listen"])
def test_a_name_of_two_addresses_is_refused_in_one_line_and_both_ports_are_closed(monkeypatch, given):
    """A name of several addresses ("localhost": 127.0.0.1 and ::1) made waitress bind each and
    return a server of servers: `serve` then failed with an AttributeError traceback (no port)."""
    import waitress
    import waitress.adjustments

    from qbhook.errors import QbhookError
    from qbhook.events import service

    def two(host, port, *rest):
        assert host == "both.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port))) for a in ("127.0.0.1", "127.0.0.2")]

    monkeypatch.setattr(waitress.adjustments.socket, "getaddrinfo", two)
    made = []
    real = waitress.create_server
    monkeypatch.setattr(waitress, "create_server", lambda *a, **kw: made.append(real(*a, **kw)) or made[-1])
    with pytest.raises(QbhookError) as e:
        service.listen(lambda env, start: [], "both.example", 0, given=given)
    message = str(e.value.message)
    assert "\n" not in message
    assert "both.example is 2 addresses (127.0.0.1, 127.0.0.2); bind to one address" in message
    assert message.startswith("--listen: " if given else "config: server.listen: ")
    assert made and made[0].map == {}  # the two listening sockets closed, the task threads stopped
    assert not made[0].task_dispatcher.threads


# -- finding 5: a killed server's running job ---------------------------------------------------


def test_job_left_running_by_a_killed_server_is_requeued_at_once_on_restart(tmp_path, procs):
    # A qBittorrent that accepts connections and never answers: the worker hangs inside
    # the job (as in a long move) until its 60 s timeout; the server is killed meanwhile.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        port = free_port()
        config = write_config(tmp_path, port, f"http://127.0.0.1:{blackhole.getsockname()[1]}", qbt_timeout=60)
        db = tmp_path / "catalog.sqlite"
        procs.append(start_serve(config, port, {"T": TOKEN}))
        assert post_event(port, 1) == 202

        def job():
            conn = sqlite3.connect(db)
            try:
                return conn.execute("SELECT state, worker_id, attempts, last_error FROM event_jobs").fetchone()
            finally:
                conn.close()

        wait_for(lambda: job()[0] == "running", 20, "the worker to claim the job")
        first_worker = job()[1]
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        assert job()[0] == "running"

        # Restart while `qbhook apply` (here: this test) holds the executor lock: the
        # requeue must not wait for resume's lock wait either.
        lock = Lock(tmp_path / "catalog.sqlite.locks" / "executor.lock", "executor lock").acquire()
        try:
            t0 = time.monotonic()
            procs.append(start_serve(config, port, {"T": TOKEN}))
            wait_for(lambda: "died without finishing" in (job()[3] or ""), 10, "the orphaned job to be requeued")
            assert time.monotonic() - t0 < 10
            assert job()[0] == "pending"
        finally:
            lock.release()
        _, worker, attempts, error = job()
        assert first_worker in error and worker != first_worker
        assert attempts in (1, 2)  # 2 once the new worker claimed it again
        wait_for(lambda: job()[0] == "running" and job()[2] == 2, 20, "the new worker to take the job")
        stop_serve(procs[1], timeout=5)


# -- status and queue ----------------------------------------------------------------------------


def cli(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), *args], env={"T": TOKEN}, catch_exceptions=False)


class FakeHealth(http.server.BaseHTTPRequestHandler):
    answer = (503, {"ok": False, "error": "worker failing: 4 attempts in a row over 9 s, last: disk I/O error"})

    def do_GET(self):
        code, body = self.answer
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_status_shows_an_unhealthy_server_and_exits_non_zero(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHealth)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        config = write_config(tmp_path, httpd.server_address[1])
        assert cli(config, "scan").exit_code == 0  # a catalog for status to read (it makes none)
        res = cli(config, "status")
        assert res.exit_code == 1
        assert "server: UNHEALTHY" in res.output and "disk I/O error" in res.output
        res = cli(config, "--json", "status")
        doc = json.loads(res.stdout)
        assert res.exit_code == 1 and doc["healthy"] is False and doc["server"]["ok"] is False
    finally:
        httpd.shutdown()


def test_status_of_a_healthy_real_server_exits_zero(tmp_path, procs):
    port = free_port()
    config = write_config(tmp_path, port)
    procs.append(start_serve(config, port, {"T": TOKEN}))
    wait_for(lambda: get(port)[1].get("worker") == "worker idle", 15, "the worker to go idle")
    res = cli(config, "status")
    assert res.exit_code == 0, res.output
    assert f"server: ok at http://127.0.0.1:{port}/healthz" in res.output
    stop_serve(procs[0], timeout=5)


def test_status_exits_non_zero_when_jobs_wait_and_no_server_runs(tmp_path):
    config = write_config(tmp_path, free_port())
    assert cli(config, "scan").exit_code == 0  # a catalog for status to read (it makes none)
    assert cli(config, "status").exit_code == 0  # nothing waiting: no server needed
    conn = sqlite3.connect(tmp_path / "catalog.sqlite")
    JobQueue(conn).enqueue(Event("qbittorrent", "torrent_added", hashes=("a" * 40,)), now=time.time() - 3600)
    conn.close()
    res = cli(config, "status")
    assert res.exit_code == 1
    assert "1 job(s) ready for over 10 min and nothing processes them" in res.output
    assert "server: not answering" in res.output


def damage(db: Path) -> None:
    """Overwrite the event_jobs table's root page: what a bad sector or a torn write leaves."""
    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'event_jobs'").fetchone()[0]
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page + 8)
        f.write(b"\x0d" * (page - 16))


@pytest.mark.parametrize("command", [["queue"], ["queue", "retry", "1"], ["status"], ["--json", "status"]])
def test_damaged_catalog_is_a_one_line_error(tmp_path, command):
    config = write_config(tmp_path, free_port())
    assert cli(config, "scan").exit_code == 0  # makes the catalog (a reader such as queue makes none)
    conn = sqlite3.connect(tmp_path / "catalog.sqlite")
    q = JobQueue(conn)
    for i in range(300):
        q.enqueue(Event("qbittorrent", "torrent_added", hashes=(f"{i:040x}",), paths=(f"/data/{i}" * 20,)))
    conn.close()
    damage(tmp_path / "catalog.sqlite")
    run = subprocess.run(
        [sys.executable, "-m", "qbhook", "--config", str(config), *command],
        check=False,
        env={**os.environ, "T": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # 74: one exit code for a damaged catalog, whichever command meets it (ExitCode.IO_ERROR)
    assert run.returncode == 74, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    first, *rest = run.stderr.splitlines()
    assert first.startswith(f"qbhook: catalog {tmp_path / 'catalog.sqlite'}: ") and first.endswith("(table event_jobs)")
    assert [ln for ln in rest if not ln.startswith("  hint: ")] == []


def test_damaged_run_plans_are_named_by_status_check(tmp_path):
    """R109: the runs' plans live in their own table (migration 17); status's up-front check names it."""
    from qbhook.catalog.db import check_tables, connect
    from qbhook.errors import QbhookError
    from qbhook.events.status import CHECKED_TABLES
    from qbhook.move.journal import Journal

    db = tmp_path / "catalog.sqlite"
    conn = connect(db)
    for _ in range(3):
        Journal(conn).start_run({"groups": [{"group_id": f"g{k}", "reason": "r" * 300} for k in range(50)]})
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'run_plans'").fetchone()[0]
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page)
        f.write(b"\x07")  # the root page's b-tree type byte
    conn = connect(db)
    with pytest.raises(QbhookError, match=r"\(table run_plans\)\n"):
        check_tables(conn, db, CHECKED_TABLES)
    conn.close()
