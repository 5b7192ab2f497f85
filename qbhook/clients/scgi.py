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
  (unknown hash, unknown command, bad argument);
* ``ScgiRefused``: the peer's answer broke a limit, so it was not read to the end. The
  socket's timeout bounds each recv only, so without the limits a wrong address or a peer
  sending a byte every 29 s would hold the worker forever, or fill its memory. Two meanings:

  - the size limit, ``MAX_ANSWER_BYTES``: the same peer gives the same answer, so it does
    not pass (plain ``ScgiRefused``);
  - the deadline, ``DEADLINE_TIMEOUTS`` times the socket timeout (``ScgiTimedOut``, a
    subclass): what a busy rTorrent looks like too. It is single-threaded: while it
    hash-checks a large item or waits on a loaded disk, a large answer (the listing of
    every item) comes out in pieces between that work, each within the socket timeout,
    the whole too late; a later call may pass. The caller says what it means (the
    adapter: ``RtorrentTimedOut``, a kind of no answer). A peer silent for a whole socket
    timeout never reaches the deadline: that recv ends first, ``ScgiUnreachable``.

  - a malformed answer (``ScgiMalformed``, a subclass): read in full (as long as its
    ``Content-Length`` said, which rTorrent always sends) and still not XML-RPC that can be
    read: XML that does not parse, an integer past Python's 4300 digits, values nested deeper
    than ``MAX_DEPTH`` (an rTorrent answer nests 4: a repr() of a deeper one raised
    RecursionError, a traceback, where it was quoted in a message). The same peer gives the
    same answer. It was ``ScgiUnreachable``: retried, and the executor paused on it forever
    rather than fail the step. An answer without ``Content-Length`` whose XML breaks off stays
    ``ScgiUnreachable``: it may be one cut off by a peer killed mid-answer.

  None is retried here: a second try at once would meet the same peer, and a deadline
  has already waited long.
"""

from __future__ import annotations

import socket
import time
import xml.parsers.expat
import xmlrpc.client
from collections.abc import Callable
from typing import Any

from qbhook.config import parse_address
from qbhook.numbers import said

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_DEPTH",
    "ScgiMalformed",
    "ScgiRefused",
    "ScgiRpc",
    "ScgiTimedOut",
    "ScgiUnreachable",
    "parse_address",
]

#: Largest answer read. The largest one qbhook asks for is the listing of every item
#: (``d.multicall2``, 21 fields, under 2 KB of XML an item: about 20 MB for 10,000 items);
#: file lists come in batches of files that stay near 27 MB (rtorrent._FILES_BUDGET). More is not
#: rTorrent, or one item of more files than that budget.
MAX_ANSWER_BYTES = 64 << 20

#: A whole call (connect, send, every recv) ends within this many times the socket timeout.
DEADLINE_TIMEOUTS = 4

#: Deepest nesting of arrays and structs read. rTorrent's deepest answer qbhook asks for is 4
#: (system.multicall of f.multicall: calls, the call's value, rows, a row's fields).
MAX_DEPTH = 16


class ScgiUnreachable(OSError):
    """The SCGI endpoint could not be reached or hung up mid-answer."""


class ScgiRefused(Exception):
    """The answer broke a limit (size, deadline) and was not read to the end."""


class ScgiMalformed(ScgiRefused):
    """A complete answer that is not readable XML-RPC (module docstring): the same every time."""


class ScgiTimedOut(ScgiRefused):
    """No complete answer within the call's deadline: a busy peer or a wrong one. ``deadline_s``
    and ``received`` (bytes read by then) let a caller word it for its own reader."""

    def __init__(self, message: str, *, deadline_s: float, received: int):
        super().__init__(message)
        self.deadline_s = deadline_s
        self.received = received


def encode_request(body: bytes) -> bytes:
    """One SCGI request: netstring of headers, then the body."""
    headers = b"CONTENT_LENGTH\0%d\0SCGI\x001\0" % len(body)
    return b"%d:%s," % (len(headers), headers) + body


def split_response(raw: bytes) -> bytes:
    """Body of an SCGI answer (after the CGI headers); ScgiUnreachable if truncated."""
    return _split(raw)[0]


def _split(raw: bytes) -> tuple[bytes, bool]:
    """(body, whether a Content-Length vouched that it is whole); ScgiUnreachable if truncated."""
    whole = False
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
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            whole = True
    return body, whole


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Arrays or structs ``limit`` levels below ``value`` or deeper (no recursion). One
    level at a time, each a flat list of its containers: about 0.1 s for 100,000 file rows."""
    level = [value] if type(value) in _NESTED else []
    for _ in range(limit):
        level = [x for c in level for x in (c.values() if type(c) is dict else c) if type(x) in _NESTED]
        if not level:
            return False
    return True


_NESTED = (list, tuple, dict)  # what xmlrpc.client.loads makes of an array or a struct


class ScgiRpc:
    """Calls XML-RPC methods on one SCGI endpoint; one connection per call."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 30.0,
        max_bytes: int = MAX_ANSWER_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.address = address
        self.family, self.sockaddr = parse_address(address)
        self.timeout = timeout
        self.deadline_s = DEADLINE_TIMEOUTS * timeout
        self.max_bytes = max_bytes
        self._clock = clock

    def __repr__(self) -> str:
        return f"ScgiRpc({self.address!r})"

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method``; raises xmlrpc.client.Fault, ScgiUnreachable, ScgiRefused (ScgiMalformed,
        ScgiTimedOut)."""
        body = xmlrpc.client.dumps(tuple(params), methodname=method, allow_none=False)
        raw = self._exchange(encode_request(body.encode("utf-8")))
        answer, whole = _split(raw)
        try:
            result, _ = xmlrpc.client.loads(answer, use_builtin_types=True)
        except xmlrpc.client.Fault as fault:
            if _too_deep([fault.faultCode, fault.faultString]):
                raise self._malformed(method, f"a fault nested deeper than {MAX_DEPTH}") from None
            raise
        except xml.parsers.expat.ExpatError as exc:
            if not whole:  # no Content-Length to vouch for it: maybe cut off mid-document
                raise ScgiUnreachable(f"unreadable XML-RPC answer to {method}: {exc}") from exc
            raise self._malformed(method, str(exc)) from None
        except Exception as exc:  # RecursionError, an int past 4300 digits (ValueError), a memberless fault
            raise self._malformed(method, f"{type(exc).__name__}: {said(str(exc), 120)}") from None
        if _too_deep(result):
            raise self._malformed(method, f"values nested deeper than {MAX_DEPTH}")
        return result[0] if len(result) == 1 else result

    def _malformed(self, method: str, why: str) -> ScgiMalformed:
        return ScgiMalformed(
            f"{self.address}: malformed XML-RPC answer to {method} ({why}): is this rTorrent's SCGI address?"
        )

    def _exchange(self, request: bytes) -> bytes:
        deadline = self._clock() + self.deadline_s
        chunks: list[bytes] = []
        total = 0
        try:
            with socket.socket(self.family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.sockaddr)
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
                while True:
                    left = deadline - self._clock()
                    if left <= 0:
                        raise self._late(total)
                    sock.settimeout(min(self.timeout, left))
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > self.max_bytes:
                        raise ScgiRefused(
                            f"{self.address}: answer larger than {self.max_bytes:,} bytes, not read further: "
                            "is this rTorrent's SCGI address?"
                        )
                    chunks.append(chunk)
        except TimeoutError as exc:
            if self._clock() >= deadline:
                raise self._late(total) from exc
            raise ScgiUnreachable(f"{self.address}: {exc.strerror or exc}") from exc
        except OSError as exc:
            raise ScgiUnreachable(f"{self.address}: {exc.strerror or exc}") from exc
        if not chunks:
            raise ScgiUnreachable(f"{self.address}: connection closed without an answer")
        return b"".join(chunks)

    def _late(self, total: int) -> ScgiTimedOut:
        return ScgiTimedOut(
            f"{self.address}: no complete answer within {self.deadline_s:.0f} s ({total} bytes so far): "
            "busy, or is this not rTorrent's SCGI address?",
            deadline_s=self.deadline_s,
            received=total,
        )
