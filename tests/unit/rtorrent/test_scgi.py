"""The SCGI transport: framing, answers, and failures split by meaning (real sockets, fake server)."""

from __future__ import annotations

import re
import socket
import threading
import time
import xmlrpc.client

import pytest

from qbhook.clients.scgi import (
    ScgiRefused,
    ScgiRpc,
    ScgiUnreachable,
    encode_request,
    parse_address,
    split_response,
)

# What rtorrent 0.9.8 sent for `system.client_version` (captured on the test bed).
RECORDED_ANSWER = (
    b'Status: 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 152\r\n\r\n<?xml version="1.0" '
    b'encoding="UTF-8"?>\r\n<methodResponse>\r\n<params>\r\n<param><value><string>0.9.8</string></value>'
    b'</param>\r\n</params>\r\n</methodResponse>\r\n'
)
# ... and for `d.name` of a hash it does not have.
RECORDED_FAULT = (
    b'Status: 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 305\r\n\r\n<?xml version="1.0" '
    b'encoding="UTF-8"?>\r\n<methodResponse>\r\n<fault>\r\n<value><struct>\r\n<member><name>faultCode'
    b'</name>\r\n<value><i4>-501</i4></value></member>\r\n<member><name>faultString</name>\r\n<value>'
    b'<string>Could not find info-hash.</string></value></member>\r\n</struct></value>\r\n</fault>\r\n'
    b'</methodResponse>\r\n'
)


def test_request_is_a_netstring_of_headers_then_the_body():
    assert encode_request(b"<x/>") == b"24:CONTENT_LENGTH\x004\x00SCGI\x001\x00,<x/>"


@pytest.mark.parametrize(
    "address, expected",
    [
        ("/run/rt.sock", (socket.AF_UNIX, "/run/rt.sock")),
        ("scgi:///run/rt.sock", (socket.AF_UNIX, "/run/rt.sock")),
        ("scgi://127.0.0.1:5000", (socket.AF_INET, ("127.0.0.1", 5000))),
        ("localhost:5000", (socket.AF_INET, ("localhost", 5000))),
        ("[::1]:5000", (socket.AF_INET6, ("::1", 5000))),  # was AF_INET with host "::1": never reached
        ("scgi://[fe80::1]:80", (socket.AF_INET6, ("fe80::1", 80))),
    ],
)
def test_addresses(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["rt.sock", "host:", ":5000", "host:port", "", "::1:5000", "[127.0.0.1]:5"])
def test_bad_addresses_are_refused(address):
    with pytest.raises(ValueError, match="not an SCGI address"):
        parse_address(address)


def test_answer_body_follows_the_blank_line():
    assert xmlrpc.client.loads(split_response(RECORDED_ANSWER)) == (("0.9.8",), None)
    assert split_response(b"Status: 200 OK\n\n<x/>") == b"<x/>"


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"Status: 200 OK\r\nContent-Type: text/xml", "without a header end"),
        (b"Status: 500 Internal Server Error\r\n\r\n", "SCGI status 500"),
        (RECORDED_ANSWER[:-20], "cut short"),
    ],
)
def test_broken_answers_are_unreachable_not_garbage(raw, match):
    with pytest.raises(ScgiUnreachable, match=match):
        split_response(raw)


class _FakeScgi:
    """A unix-socket server answering each connection with ``reply(request_bytes)``."""

    def __init__(self, path, reply):
        self.requests: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen()
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                self.requests.append(data)
                answer = self.reply(data)
                if answer:
                    conn.sendall(answer)

    def close(self):
        self.sock.close()


def test_call_round_trip_on_a_unix_socket(tmp_path):
    # rTorrent sends 64-bit values as <i8> (sizes above 2 GiB), which the stdlib cannot write
    body = (
        b"<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
        b"<value><string>" + b"A" * 40 + b"</string></value><value><i8>1099511627776</i8></value>"
        b"</data></array></value></param></params></methodResponse>"
    )
    server = _FakeScgi(tmp_path / "s", lambda req: b"Status: 200 OK\r\n\r\n" + body)
    try:
        assert ScgiRpc(str(tmp_path / "s")).call("d.multicall2", "", "main", "d.hash=") == ["A" * 40, 1 << 40]
    finally:
        server.close()
    raw = server.requests[0]
    length, _, rest = raw.partition(b":")
    headers, body = rest[: int(length)], rest[int(length) + 1 :]
    assert headers.split(b"\0")[:4] == [b"CONTENT_LENGTH", str(len(body)).encode(), b"SCGI", b"1"]
    assert xmlrpc.client.loads(body) == (("", "main", "d.hash="), "d.multicall2")


def test_fault_is_a_fault(tmp_path):
    server = _FakeScgi(tmp_path / "s", lambda req: RECORDED_FAULT)
    try:
        with pytest.raises(xmlrpc.client.Fault) as err:
            ScgiRpc(str(tmp_path / "s")).call("d.name", "AB" * 20)
    finally:
        server.close()
    assert err.value.faultCode == -501


def test_hang_up_without_answer_and_no_server_are_unreachable(tmp_path):
    server = _FakeScgi(tmp_path / "s", lambda req: b"")
    try:
        with pytest.raises(ScgiUnreachable, match="without an answer"):
            ScgiRpc(str(tmp_path / "s")).call("system.client_version")
    finally:
        server.close()
    with pytest.raises(ScgiUnreachable, match="No such file"):
        ScgiRpc(str(tmp_path / "absent.sock")).call("system.client_version")


def test_answer_cut_mid_document_is_unreachable(tmp_path):
    body = xmlrpc.client.dumps(("x" * 100,), methodresponse=True).encode()
    server = _FakeScgi(tmp_path / "s", lambda req: b"Status: 200 OK\r\n\r\n" + body[:60])
    try:
        with pytest.raises(ScgiUnreachable, match="unreadable XML-RPC answer"):
            ScgiRpc(str(tmp_path / "s")).call("d.name", "AB" * 20)
    finally:
        server.close()


# -- finding 6: the answer is read within limits ----------------------------------------------


class _Trickle:
    """A unix-socket peer that answers with ``size`` bytes, one ``step`` every ``every`` s."""

    def __init__(self, path, *, size: int, step: int, every: float):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen()
        self.stop = threading.Event()
        self.size, self.step, self.every = size, step, every
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            sent = 0
            try:
                while sent < self.size and not self.stop.is_set():
                    conn.sendall(b"x" * self.step)
                    sent += self.step
                    if self.every:
                        time.sleep(self.every)
            except OSError:
                return  # the reader gave up: what the limits are for

    def close(self):
        self.stop.set()
        self.sock.close()


def test_an_endless_answer_stops_at_the_size_cap(tmp_path):
    peer = _Trickle(tmp_path / "s", size=10 << 20, step=1 << 16, every=0)
    try:
        with pytest.raises(ScgiRefused, match="larger than 100,000 bytes") as err:
            ScgiRpc(str(tmp_path / "s"), max_bytes=100_000).call("system.client_version")
    finally:
        peer.close()
    assert "\n" not in str(err.value)


def test_a_peer_trickling_bytes_stops_at_the_deadline(tmp_path):
    # each recv gets a byte well within the socket timeout: only the overall deadline ends it
    peer = _Trickle(tmp_path / "s", size=10_000, step=1, every=0.05)
    rpc = ScgiRpc(str(tmp_path / "s"), timeout=0.5)
    t0 = time.monotonic()
    try:
        with pytest.raises(ScgiRefused, match=r"no complete answer within 2 s \(\d+ bytes so far\)"):
            rpc.call("system.client_version")
    finally:
        peer.close()
    assert time.monotonic() - t0 < 10


def test_a_slow_answer_is_timed_out_with_what_was_read(tmp_path):
    from qbhook.clients.scgi import ScgiTimedOut  # here, not at the top: new with the split

    peer = _Trickle(tmp_path / "s", size=10_000, step=1, every=0.05)
    try:
        with pytest.raises(ScgiTimedOut, match=r"no complete answer within 2 s \(\d+ bytes so far\)") as err:
            ScgiRpc(str(tmp_path / "s"), timeout=0.5).call("system.client_version")
    finally:
        peer.close()
    assert isinstance(err.value, ScgiRefused) and err.value.deadline_s == 2.0 and 0 < err.value.received < 10_000


def _adapter_failure(tmp_path, case: str):
    """What RtorrentClient.version() raises against a peer too slow, or answering too much (not
    retried: a retry sleeps first, and its sleep fails the test)."""
    from qbhook.clients.rtorrent import RtorrentClient

    if case == "deadline":  # busy: each piece within the socket timeout, the whole too late
        peer = _Trickle(tmp_path / "s", size=10_000, step=1, every=0.05)
    else:
        peer = _Trickle(tmp_path / "s", size=10 << 20, step=1 << 16, every=0)
    client = RtorrentClient("rt", str(tmp_path / "s"), timeout=0.5, sleep=lambda s: pytest.fail("retried"))
    client._rpc.max_bytes = 100_000
    try:
        with pytest.raises(Exception) as err:
            client.version()
    finally:
        peer.close()
    return err.value


def test_a_busy_rtorrent_is_no_answer_in_one_line_and_not_retried(tmp_path):
    # A deadline missed is what a busy rTorrent looks like: no answer, as a socket gone is, so
    # the executor pauses a group on it (and `orphans` refuses), never "needs attention" for good.
    from qbhook.errors import RtorrentUnreachable

    err = _adapter_failure(tmp_path, "deadline")
    assert isinstance(err, RtorrentUnreachable), repr(err)
    assert type(err).__name__ == "RtorrentTimedOut"
    assert err.client == "rTorrent 'rt'"  # what serve's health names while it does not answer
    assert re.fullmatch(
        rf"rTorrent 'rt' \({re.escape(str(tmp_path / 's'))}\): system.client_version: no answer within 2 s "
        r"\(\d+ bytes so far\): busy checking or moving data\? \(a later try may pass\)",
        str(err),
    ), str(err)


@pytest.mark.parametrize("case, passing", [("deadline", True), ("size", False)])
def test_the_executor_waits_out_a_deadline_but_not_a_size_refusal(tmp_path, case, passing):
    # After deletes began, a passing problem pauses the group (resumed later); any other stops
    # it for good. A size refusal does not pass: the same peer gives the same answer.
    from qbhook.move.executor import _passing

    err = _adapter_failure(tmp_path, case)
    assert _passing(err) is passing, repr(err)


def test_orphans_refuses_on_a_busy_rtorrent_never_reads_it_as_no_torrents(tmp_path):
    from qbhook.clients.rtorrent import RtorrentClient
    from qbhook.errors import OrphansRefused
    from qbhook.move.orphans import references

    peer = _Trickle(tmp_path / "s", size=10_000, step=1, every=0.05)
    client = RtorrentClient("rt", str(tmp_path / "s"), timeout=0.5, sleep=lambda s: pytest.fail("retried"))
    try:
        with pytest.raises(OrphansRefused, match=r"client rt cannot be listed .*: no answer within 2 s ") as err:
            references([client])
    finally:
        peer.close()
    assert "\n" not in str(err.value)


def test_the_adapter_says_so_in_one_line_and_does_not_retry(tmp_path):
    from qbhook.clients.rtorrent import RtorrentClient
    from qbhook.errors import RtorrentError, RtorrentUnreachable

    peer = _Trickle(tmp_path / "s", size=10 << 20, step=1 << 16, every=0)
    client = RtorrentClient("rt", str(tmp_path / "s"), sleep=lambda s: pytest.fail("retried"))
    client._rpc.max_bytes = 100_000
    try:
        with pytest.raises(RtorrentError) as err:
            client.version()
    finally:
        peer.close()
    assert not isinstance(err.value, RtorrentUnreachable)
    assert str(err.value).startswith("rTorrent 'rt': system.client_version: ") and "\n" not in str(err.value)


# -- R43: a complete answer that cannot be read is refused, not "no answer" -------------------


def _answer(xml: bytes, *, length: bool = True) -> bytes:
    head = b"Status: 200 OK\r\nContent-Type: text/xml\r\n"
    return head + (b"Content-Length: %d\r\n" % len(xml) if length else b"") + b"\r\n" + xml


def _response(value: bytes) -> bytes:
    return (
        b"<?xml version='1.0'?><methodResponse><params><param><value>"
        + value
        + b"</value></param></params></methodResponse>"
    )


_DEEP = b"<array><data><value>" * 3000 + b"<int>1</int>" + b"</value></data></array>" * 3000
_MALFORMED = {
    "deep": _response(_DEEP),
    "huge int": _response(b"<i8>" + b"9" * 5000 + b"</i8>"),
    "bad xml": _response(b"<string>a</strin>"),
    "fault without members": b"<?xml version='1.0'?><methodResponse><fault><value><struct></struct></value>"
    b"</fault></methodResponse>",
    "deep fault": b"<?xml version='1.0'?><methodResponse><fault><value><struct><member><name>faultCode</name>"
    b"<value><int>1</int></value></member><member><name>faultString</name><value>"
    + _DEEP
    + b"</value></member></struct></value></fault></methodResponse>",
}


@pytest.mark.parametrize("case", list(_MALFORMED))
def test_a_whole_answer_that_cannot_be_read_is_malformed_in_one_line(tmp_path, case):
    """Read in full (Content-Length met) and still not XML-RPC: the same peer gives the same answer.
    It was ScgiUnreachable (retried, and the executor paused on it forever), or, nested 3000 deep,
    a RecursionError traceback where a message quoted it."""
    from qbhook.clients.rtorrent import RtorrentClient
    from qbhook.clients.scgi import ScgiMalformed
    from qbhook.errors import RtorrentError, RtorrentUnreachable
    from qbhook.move.executor import _passing

    server = _FakeScgi(tmp_path / "s", lambda req: _answer(_MALFORMED[case]))
    client = RtorrentClient("rt", str(tmp_path / "s"), timeout=2, sleep=lambda s: pytest.fail("retried"))
    try:
        with pytest.raises(ScgiMalformed, match="malformed XML-RPC answer to d.name"):
            ScgiRpc(str(tmp_path / "s")).call("d.name", "AB" * 20)
        for call in (client.version, client.torrents):
            with pytest.raises(RtorrentError) as err:
                call()
            assert not isinstance(err.value, RtorrentUnreachable) and not _passing(err.value)
            assert "malformed XML-RPC answer" in str(err.value) and "\n" not in str(err.value)
            assert len(str(err.value)) < 400
    finally:
        server.close()


def test_an_answer_without_content_length_cut_mid_document_stays_unreachable(tmp_path):
    # Nothing vouches that it is whole: a peer killed mid-answer looks so (rTorrent always sends
    # Content-Length, so its own answers are judged by the rule above).
    server = _FakeScgi(tmp_path / "s", lambda req: _answer(_MALFORMED["bad xml"], length=False))
    try:
        with pytest.raises(ScgiUnreachable, match="unreadable XML-RPC answer"):
            ScgiRpc(str(tmp_path / "s")).call("d.name", "AB" * 20)
    finally:
        server.close()
