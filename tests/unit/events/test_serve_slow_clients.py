"""Idle and slow connections cannot starve the senders that matter (issue 9, finding 6).

A real `qbhook serve` on loopback: 500 connections that never finish their headers (no
credentials needed to open them) while authenticated senders post events. Today's main
(waitress's connection_limit of 100) stops accepting: every normal request times out.
"""

from __future__ import annotations

import resource
import socket
import statistics
import time

import pytest

from qbhook.sandbox.qbt import free_port
from qbhook.sandbox.serve import start_serve, stop_serve

from .serve_helpers import TOKEN, post_sonarr, write_config

IDLE = 500
SAMPLES = 60


def post(port: int, i: int) -> float:
    status, seconds = post_sonarr(port, i, timeout=5)
    assert status == 202
    return seconds


def measure(port: int, first: int) -> dict[str, float]:
    times = sorted(post(port, first + i) for i in range(SAMPLES))
    return {"p50": statistics.median(times), "p99": times[int(0.99 * (len(times) - 1))], "max": times[-1]}


def open_idle(port: int, n: int) -> list[socket.socket]:
    """n connections: half send an unfinished request head, half send nothing at all."""
    conns = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2:
            s.sendall(b"POST /webhook/sonarr HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
        conns.append(s)
    return conns


@pytest.mark.slow
def test_500_idle_connections_do_not_slow_normal_requests(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * IDLE + 200
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    port = free_port()
    proc = start_serve(write_config(tmp_path, port), port, {"T": TOKEN})
    idle: list[socket.socket] = []
    try:
        measure(port, 1_000)  # warm-up (imports, first SQLite pages)
        before = measure(port, 2_000)
        t0 = time.monotonic()
        idle = open_idle(port, IDLE)
        opened_s = time.monotonic() - t0
        time.sleep(1.0)  # let the server accept and buffer them all
        during = measure(port, 3_000)
        # Still open: nothing was refused or reset to make room.
        alive = sum(1 for s in idle if _open(s))
        numbers = (
            f"p50 {before['p50'] * 1e3:.1f} ms / p99 {before['p99'] * 1e3:.1f} ms without, "
            f"p50 {during['p50'] * 1e3:.1f} ms / p99 {during['p99'] * 1e3:.1f} ms "
            f"(max {during['max'] * 1e3:.1f} ms) with {IDLE} idle connections "
            f"({alive} still open, opened in {opened_s:.2f} s)"
        )
        print(numbers)
        assert alive == IDLE, numbers
        # Usual latency: same order as without them (bounds generous for a shared 2-core box).
        assert during["p50"] <= max(3 * before["p50"], before["p50"] + 0.05), numbers
        assert during["p99"] <= max(3 * before["p99"], before["p99"] + 0.25), numbers
    finally:
        for s in idle:
            s.close()
        stop_serve(proc, timeout=10)


def _open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""  # b"": the server closed it
    except BlockingIOError:
        return True  # nothing to read: still open
    except OSError:
        return False
    finally:
        s.setblocking(True)
