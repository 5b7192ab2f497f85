"""A real `qbhook serve` refuses a body longer than ``server.max_body`` while reading its head,
before any of it is stored, credentials or not (a helper's probe: waitress's default limit of
1 GiB read a whole body, past 512 KiB into a temporary file, before the app's authentication
ran; anyone who could connect could store a GiB per connection in /tmp)."""

from __future__ import annotations

import socket

from qbhook.sandbox.qbt import free_port
from qbhook.sandbox.serve import start_serve, stop_serve

from .serve_helpers import TOKEN, post_sonarr, write_config


def _answer_to_a_head(port: int, length: int) -> bytes:
    """What the server says to a POST head announcing ``length`` bytes, none of them sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /webhook/arr HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {length}\r\n\r\n".encode()
        )
        s.settimeout(5)
        try:
            return s.recv(200)
        except TimeoutError:
            return b"(no answer: the server waits for the body)"


def test_a_body_longer_than_max_body_is_refused_from_its_head_without_credentials(tmp_path):
    port = free_port()
    proc = start_serve(write_config(tmp_path, port), port, {"T": TOKEN})
    try:
        got = _answer_to_a_head(port, 50 * 1024 * 1024)
        assert got.startswith(b"HTTP/1.1 413"), got
        assert post_sonarr(port, 1)[0] == 202  # a normal event still goes through
    finally:
        stop_serve(proc)
