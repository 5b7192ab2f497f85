"""A loopback HTTP listener for apprise ``json://`` (and ``form://``, ``xml://``) notifications
(tests only).

``Listener()`` records each body POSTed to it (``_parsed``); ``Listener(hang=True)`` accepts the
request and never answers (until stopped), like a wedged webhook receiver.
``dead_port()`` is a port nothing listens on.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class Listener:
    def __init__(self, hang: bool = False):
        self.received: list[dict] = []
        self.hits = 0
        self._release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.hits += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hang:
                    outer._release.wait(60)
                    return
                outer.received.append(_parsed(self.headers.get("Content-Type") or "", body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"json://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, pred, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.received):
                return self.received
            time.sleep(0.05)
        raise AssertionError(f"listener did not receive the expected notification in {timeout}s: {self.received}")

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()


def _parsed(content_type: str, body: bytes) -> dict:
    """apprise's ``json://`` body as its dict, ``form://``'s fields (first value of each), and
    anything else (``xml://``) as ``{"raw": its text}``."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {k: v[0] for k, v in parse_qs(body.decode()).items()}
    if content_type.startswith("application/json"):
        return json.loads(body)
    return {"raw": body.decode()}


def dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
