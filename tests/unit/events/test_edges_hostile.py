"""serve's edges meet hostile input: `status` against a port that is not HTTP, /healthz's
unauthenticated answer, and one rule for "credentials configured" (findings 4, 7, 12)."""

from __future__ import annotations

import socket
import threading

from qbhook.config import ServerConfig
from qbhook.events.status import server_health


def _banner_server(banner: bytes) -> tuple[socket.socket, threading.Thread]:
    """A TCP port held by something that is not HTTP (an SSH daemon's banner)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(banner)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def test_status_against_an_ssh_banner_is_one_line_not_a_traceback():
    srv, _ = _banner_server(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    try:
        out = server_health(ServerConfig(listen="127.0.0.1", port=srv.getsockname()[1]))
    finally:
        srv.close()
    assert out["answered"] is False and out["ok"] is False
    assert "not an HTTP server" in out["reason"] and "\n" not in out["reason"]
