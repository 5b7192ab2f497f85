"""A real, headless, offline rtorrent for tests, benchmarks and the sandbox demo.

rtorrent 0.9.8 (Debian bookworm) runs without its curses UI when the rc sets
``system.daemon.set = true``; it is started with ``-n`` (ignore ~/.rtorrent.rc)
and ``-o import=RC`` for a generated rc. It is offline on purpose: DHT and PEX
off, UDP trackers off, the listening port bound to loopback, and test torrents
announce to a dead loopback URL. XML-RPC is served on an SCGI unix socket.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
import xmlrpc.client
from collections.abc import Iterable
from pathlib import Path

from qbhook.clients.scgi import ScgiRpc, ScgiUnreachable
from qbhook.sandbox.daemon import SupervisedDaemon
from qbhook.sandbox.qbt import free_port

__all__ = ["RtorrentInstance", "load_torrent", "rc_text"]


def rc_text(session: Path, downloads: Path, socket_path: Path, port: int, log: Path, extra: Iterable[str] = ()) -> str:
    """The generated .rtorrent.rc (``extra`` lines are appended, e.g. event handlers)."""
    lines = [
        f"session.path.set = {session}",
        f"directory.default.set = {downloads}",
        f"network.scgi.open_local = {socket_path}",
        "system.daemon.set = true",
        # offline: nothing may reach the world from a test bed
        "network.bind_address.set = 127.0.0.1",
        f"network.port_range.set = {port}-{port}",
        "network.port_random.set = no",
        "dht.mode.set = disable",
        "protocol.pex.set = no",
        "trackers.use_udp.set = no",
        # a finished download is not re-hashed behind our back (pieces are verified on arrival)
        "pieces.hash.on_completion.set = no",
        f'log.open_file = "rtorrent", {log}',
        'log.add_output = "info", "rtorrent"',
        *extra,
    ]
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:
    # An orphaned rtorrent would keep its socket and pool files busy after a killed test run.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RtorrentInstance(SupervisedDaemon):
    """One rtorrent process with its own session folder and SCGI socket."""

    def __init__(self) -> None:
        self.base: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.extra_rc: list[str] = []
        self._log = None

    # paths -------------------------------------------------------------
    @property
    def socket_path(self) -> Path:
        return self.base / "rpc.sock"

    @property
    def session_dir(self) -> Path:
        return self.base / "session"

    @property
    def downloads_dir(self) -> Path:
        return self.base / "downloads"

    @property
    def rc_path(self) -> Path:
        return self.base / "rtorrent.rc"

    @property
    def log_path(self) -> Path:
        return self.base / "rtorrent.log"

    @property
    def address(self) -> str:
        return str(self.socket_path)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def rpc(self, timeout: float = 30.0) -> ScgiRpc:
        return ScgiRpc(self.address, timeout=timeout)

    # life cycle --------------------------------------------------------
    def start(self, base: Path, extra_rc: Iterable[str] = (), timeout: float = 30.0) -> RtorrentInstance:
        # AF_UNIX paths are limited to 107 bytes; pytest's tmp paths can come close.
        self.base = Path(base).resolve()
        if len(str(self.socket_path)) > 100:
            raise ValueError(f"SCGI socket path too long for AF_UNIX: {self.socket_path}")
        self.extra_rc = list(extra_rc)
        for d in (self.session_dir, self.downloads_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.rc_path.write_text(
            rc_text(
                self.session_dir,
                self.downloads_dir,
                self.socket_path,
                free_port(),
                self.base / "rtorrent-internal.log",
                self.extra_rc,
            )
        )
        self._launch(timeout)
        return self

    def _launch(self, timeout: float) -> None:
        try:
            self.socket_path.unlink()  # a killed rtorrent leaves its socket behind
        except FileNotFoundError:
            pass
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        # TERM must be set or rtorrent refuses to start even as a daemon.
        env = {**os.environ, "TERM": os.environ.get("TERM") or "xterm", "HOME": str(self.base)}
        self.proc = subprocess.Popen(
            ["rtorrent", "-n", "-o", f"import={self.rc_path}"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.base,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._wait_up(timeout)

    def _wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        rpc = self.rpc(timeout=2)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rtorrent exited with {self.proc.returncode}; log:\n{self._log_tail()}")
            if self.socket_path.exists():
                try:
                    rpc.call("system.client_version")
                    return
                except ScgiUnreachable:
                    pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"rtorrent not answering on {self.socket_path}; log:\n{self._log_tail()}")

    def _log_tail(self, n: int = 4000) -> str:
        out = []
        for p in (self.log_path, self.base / "rtorrent-internal.log"):
            try:
                out.append(p.read_bytes()[-n:].decode(errors="replace"))
            except OSError:
                pass
        return "\n".join(out)

    def _ask_to_exit(self) -> None:
        """Normal shutdown over XML-RPC (the session is saved), else SIGTERM."""
        try:
            self.rpc(timeout=5).call("system.shutdown.normal")
        except (ScgiUnreachable, xmlrpc.client.Fault):
            self.proc.terminate()

    # torrents -----------------------------------------------------------
    def remove_all(self) -> None:
        """Erase every item (data untouched: d.erase never deletes files)."""
        rpc = self.rpc()
        for h in rpc.call("download_list", ""):
            rpc.call("d.erase", h)


def load_torrent(
    rpc: ScgiRpc,
    torrent_bytes: bytes,
    directory: str,
    *,
    start: bool = True,
    base: bool = False,
    label: str = "",
    commands: Iterable[str] = (),
) -> None:
    """Add a .torrent over data in ``directory``.

    ``base=False``: ``d.directory.set`` (for a multi-file item, the PARENT of its folder, and
    rTorrent appends the torrent's name); ``base=True``: ``d.directory_base.set`` (the item's
    own folder for a multi-file item; same as d.directory.set for a single file).
    rTorrent hashes the data on load, so a complete payload ends complete.
    """
    method = "load.raw_start" if start else "load.raw"
    cmds = [f"d.directory_base.set={_rc_quote(directory)}" if base else f"d.directory.set={_rc_quote(directory)}"]
    if label:
        cmds.append(f"d.custom1.set={_rc_quote(label)}")
    cmds.extend(commands)
    rpc.call(method, "", xmlrpc.client.Binary(torrent_bytes), *cmds)


def _rc_quote(value: str) -> str:
    # Inside a load command rTorrent parses "key=value" with its own rc syntax: a value with
    # a comma, brace, quote or space must be quoted, and backslash escapes inside quotes.
    if value and all(c.isalnum() or c in "/._-+@:" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LoopbackTracker:
    """A minimal HTTP tracker on 127.0.0.1, so two local clients can find each other.

    Used to make rTorrent really *download* (the only way ``event.download.finished``
    fires: a hash check of complete local data does not fire it). Compact peer lists,
    every announcer is 127.0.0.1 at the port it announced.
    """

    def __init__(self) -> None:
        import http.server
        import threading
        from urllib.parse import parse_qs, urlsplit

        peers: dict[bytes, set[int]] = {}
        self.peers = peers

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                # info_hash is raw bytes percent-encoded: decode as latin-1 to keep them
                q = parse_qs(urlsplit(self.path).query, encoding="latin-1")
                ih = q.get("info_hash", [""])[0].encode("latin-1")
                port = int(q.get("port", ["0"])[0])
                known = peers.setdefault(ih, set())
                if q.get("event", [""])[0] == "stopped":
                    known.discard(port)
                others = b"".join(bytes([127, 0, 0, 1]) + p.to_bytes(2, "big") for p in known if p != port)
                if q.get("event", [""])[0] != "stopped":
                    known.add(port)
                body = b"d8:intervali2e12:min intervali1e5:peers%d:%se" % (len(others), others)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/announce"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
