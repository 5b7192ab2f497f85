"""SIGTERM stops `serve` in seconds, whatever connections are open (review of `qbhook serve`).

Before: the signal closed only waitress's listening socket. An idle keep-alive connection (a
Prometheus scraper, an *arr) kept waitress's loop running, and its idle-connection cleanup,
run from the listening socket, never ran again: `serve` outlived SIGTERM until systemd's
TimeoutStopSec (15 min) SIGKILLed it, in the middle of the step it was told to finish.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest
from flask import Flask

from qbhook.config import load_config
from qbhook.events import service
from qbhook.events.service import Service, listen

from .serve_helpers import TOKEN, write_config

GET_KEEP_ALIVE = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def read_answer(s: socket.socket) -> bytes:
    s.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def closed_by_server(s: socket.socket) -> bool:
    """The server ended the connection within 5 s: the rest of an answer (a body the headers'
    read did not take, depending on how the segments came) is read past first."""
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
        return True
    except (ConnectionResetError, TimeoutError):
        return False


def test_sigterm_stops_serve_despite_an_idle_keep_alive_connection_and_the_step_finishes(tmp_path):
    cfg = load_config(write_config(tmp_path, 8080), env={"T": TOKEN})
    svc = Service(cfg, [], lambda *a: None, host="127.0.0.1", port=0, sweeper=False)
    steps = []

    def worker_main():  # a step under way when the signal comes: it must get to its end
        svc.health.beat("moving")
        svc.stop.wait(30)
        time.sleep(0.3)
        steps.append("finished")

    svc.worker_main = worker_main
    returned = threading.Event()
    client = {}

    def scraper():
        s = socket.create_connection(("127.0.0.1", svc.port))
        client["s"] = s
        s.sendall(GET_KEEP_ALIVE)  # HTTP/1.1: keep-alive, then idle
        client["answer"] = read_answer(s)
        os.kill(os.getpid(), signal.SIGTERM)
        if not returned.wait(10):  # the old code waited for this connection: end it, end the test
            s.close()

    old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    threading.Thread(target=scraper, daemon=True).start()
    t0 = time.monotonic()
    try:
        svc.run()
    finally:
        returned.set()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    took = time.monotonic() - t0
    assert client["answer"].startswith(b"HTTP/1.1 200"), client
    assert took < 5, f"serve ran {took:.1f} s after SIGTERM with an idle connection open"
    assert steps == ["finished"]
    assert closed_by_server(client["s"])
    client["s"].close()


@pytest.fixture
def slow_server():
    release, entered = threading.Event(), threading.Event()
    app = Flask("t")

    @app.get("/slow")
    def slow():
        entered.set()
        release.wait(10)
        return "done"

    server = listen(app, "127.0.0.1", 0)
    stop = threading.Event()
    yield server, stop, entered, release
    release.set()
    stop.set()


def run_serve(server, stop, drain_s):
    t = threading.Thread(target=service.serve, args=(server, stop), kwargs={"drain_s": drain_s}, daemon=True)
    t.start()
    return t


def test_a_request_being_answered_at_the_signal_gets_its_answer(slow_server):
    server, stop, entered, release = slow_server
    t = run_serve(server, stop, drain_s=5)
    s = socket.create_connection(("127.0.0.1", server.effective_port))
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert entered.wait(5)
    stop.set()
    time.sleep(0.3)
    release.set()
    answer = read_answer(s)
    t.join(10)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert not t.is_alive()
    assert closed_by_server(s)
    s.close()


def test_a_request_that_hangs_past_the_grace_does_not_hold_the_stop(slow_server):
    server, stop, entered, _release = slow_server
    t = run_serve(server, stop, drain_s=0.5)
    s = socket.create_connection(("127.0.0.1", server.effective_port))
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert entered.wait(5)
    t0 = time.monotonic()
    stop.set()
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 4
    assert closed_by_server(s)
    s.close()
