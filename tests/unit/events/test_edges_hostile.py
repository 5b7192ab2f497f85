"""serve's edges meet hostile input: `status` against a port that is not HTTP, /healthz's
unauthenticated answer, and one rule for "credentials configured" (findings 4, 7, 12)."""

from __future__ import annotations

import socket
import threading

from qbhook.config import ServerConfig
from qbhook.events.status import server_health


def _banner_server(banner: bytes) -> tuple[socket.socket, threading.Thread]:
    """A TCP port held by something that is not HTTP (an SSH daemon's banner), for one connection.

    One and done, in its own thread, which closes the socket: a thread left blocked in accept()
    on a socket closed from outside would keep its fd number, and answer with the banner on
    whatever socket a later test gets under that number."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(30)

    def serve():
        with srv:
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
    srv, thread = _banner_server(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    out = server_health(ServerConfig(listen="127.0.0.1", port=srv.getsockname()[1]))
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert out["answered"] is False and out["ok"] is False
    assert "not an HTTP server" in out["reason"] and "\n" not in out["reason"]


# -- finding 12: one rule for "credentials configured" ----------------------------------------

_CONFIG = """\
catalog: {catalog}
pools: {{stash: {{path: /stash, role: primary}}, pool: {{path: /pool, role: cold}}}}
seeding_roots: {{stash: /stash/seed, pool: /pool/seed}}
qbittorrent: {{url: "http://127.0.0.1:8080"}}
server: {server}
"""


def _load(tmp_path, server: str):
    from qbhook.config import load_config

    p = tmp_path / "c.yaml"
    p.write_text(_CONFIG.format(catalog=tmp_path / "c.sqlite", server=server))
    return load_config(p, env={"PW": "pw", "TOK": "tok"})


def test_a_server_password_without_a_username_is_a_one_line_config_error(tmp_path):
    """Main accepted it without a warning (serve warned only without password and token) while
    every endpoint answered 503 "no credentials configured": HTTP Basic needs both."""
    import pytest

    from qbhook.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        _load(tmp_path, "{password_env: PW}")
    assert "server.password" in str(e.value) and "username" in str(e.value) and "\n" not in str(e.value)
    # Either half of a working pair, or a token, is accepted; serve's warning and the
    # endpoints read the same rule.
    from qbhook.events.auth import AuthConfig

    for server, configured in (
        ("{username: u, password_env: PW}", True),
        ("{token_env: TOK}", True),
        ("{username: u}", False),
        ("{}", False),
    ):
        assert AuthConfig.of_server(_load(tmp_path, server).server).configured is configured, server
