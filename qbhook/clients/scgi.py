"""XML-RPC over SCGI, the way rTorrent serves it (stdlib only).

rTorrent answers XML-RPC on an SCGI socket (``network.scgi.open_local`` for a
unix socket, ``network.scgi.open_port`` for TCP), not over HTTP. One request
is one connection: a netstring of NUL-separated headers (``CONTENT_LENGTH``
first, then ``SCGI 1``), the XML body, and the server answers with CGI-style
headers, a blank line and the XML reply, then closes.

``rtorrent-rpc`` on PyPI does the same in a typed wrapper; the protocol is
forty lines and a controller running as root should not pull in a dependency
for it, so this is the whole transport. Failures are split by meaning:

* ``ScgiUnreachable``: no connection, or it broke before a full answer
  (rTorrent not running, killed mid-call, wrong socket path);
* ``xmlrpc.client.Fault``: rTorrent answered with an XML-RPC fault
  (unknown hash, unknown command, bad argument).
"""

from __future__ import annotations

import socket
import xmlrpc.client
from typing import Any

from qbhook.config import parse_address

__all__ = ["ScgiRpc", "ScgiUnreachable", "parse_address"]


class ScgiUnreachable(OSError):
    """The SCGI endpoint could not be reached or hung up mid-answer."""


def encode_request(body: bytes) -> bytes:
    """One SCGI request: netstring of headers, then the body."""
    headers = b"CONTENT_LENGTH\0%d\0SCGI\x001\0" % len(body)
    return b"%d:%s," % (len(headers), headers) + body


def split_response(raw: bytes) -> bytes:
    """Body of an SCGI answer (after the CGI headers); ScgiUnreachable if truncated."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(sep)
        if found:
            break
    else:
        raise ScgiUnreachable(f"SCGI answer without a header end ({len(raw)} bytes)")
    for line in head.splitlines():
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"status" and not value.strip().startswith(b"200"):
            raise ScgiUnreachable(f"SCGI status {value.strip().decode(errors='replace')}")
        if name.strip().lower() == b"content-length" and value.strip().isdigit() and len(body) < int(value):
            raise ScgiUnreachable(f"SCGI answer cut short ({len(body)} of {int(value)} bytes)")
    return body


class ScgiRpc:
    """Calls XML-RPC methods on one SCGI endpoint; one connection per call."""

    def __init__(self, address: str, *, timeout: float = 30.0):
        self.address = address
        self.family, self.sockaddr = parse_address(address)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ScgiRpc({self.address!r})"

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method``; raises xmlrpc.client.Fault or ScgiUnreachable."""
        body = xmlrpc.client.dumps(tuple(params), methodname=method, allow_none=False)
        raw = self._exchange(encode_request(body.encode("utf-8")))
        try:
            result, _ = xmlrpc.client.loads(split_response(raw), use_builtin_types=True)
        except xmlrpc.client.Fault:
            raise
        except Exception as exc:  # expat errors: a reply cut off mid-document
            raise ScgiUnreachable(f"unreadable XML-RPC answer to {method}: {exc}") from exc
        return result[0] if len(result) == 1 else result

    def _exchange(self, request: bytes) -> bytes:
        try:
            with socket.socket(self.family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.sockaddr)
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
                chunks = []
                while chunk := sock.recv(1 << 16):
                    chunks.append(chunk)
        except OSError as exc:
            raise ScgiUnreachable(f"{self.address}: {exc.strerror or exc}") from exc
        if not chunks:
            raise ScgiUnreachable(f"{self.address}: connection closed without an answer")
        return b"".join(chunks)
