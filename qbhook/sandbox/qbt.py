"""A real qbittorrent-nox for tests and the sandbox demo, offline and pre-configured."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import qbittorrentapi

from qbhook.sandbox.daemon import SupervisedDaemon

USERNAME = "admin"
PASSWORD = "adminadmin"
# PBKDF2 hash of "adminadmin" as qBittorrent stores it (see docs/reference qbittorrent.md)
_PASSWORD_PBKDF2 = (
    "ARQ77eY1NUZaQsuDHbIMCA==:0WMRkYTUWVT9wVvdDtHAjU9b3b7uB8NR1Gur2hmQCvCDpm39Q+PsJRJPaCU51dEiz+dTzh8qbPsL8WkFljQYFQ=="
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(webui_port: int, listen_port: int, downloads: Path) -> str:
    # Offline on purpose: no DHT/PeX/LSD/UPnP, so test torrents never talk to the world.
    # Queueing off, so many seeding test torrents never sit in queuedUP.
    # RefreshInterval: torrent states reach the API only at this period (default 1500 ms), which
    # hides short states like checkingUP and slows every wait.
    # FileLogger: qBittorrent rolls its log over at 65 KiB by default; tests read it for what
    # happened since a restart, so it is kept in one file.
    return f"""\
[LegalNotice]
Accepted=true

[Application]
FileLogger\\MaxSizeBytes=52428800

[BitTorrent]
Session\\DHTEnabled=false
Session\\PeXEnabled=false
Session\\LSDEnabled=false
Session\\QueueingSystemEnabled=false
Session\\Port={listen_port}
Session\\RefreshInterval=100
Session\\DefaultSavePath={downloads}
Session\\TempPathEnabled=false
Session\\DisableAutoTMMByDefault=true

[Network]
PortForwardingEnabled=false

[Preferences]
WebUI\\Address=127.0.0.1
WebUI\\Port={webui_port}
WebUI\\Username={USERNAME}
WebUI\\Password_PBKDF2="@ByteArray({_PASSWORD_PBKDF2})"
WebUI\\LocalHostAuth=true
WebUI\\UPnP=false
"""


def _die_with_parent() -> None:
    # Runs in the child before exec: if the test runner is killed (timeout, SIGKILL) there is
    # no teardown, and an orphaned qbittorrent-nox would keep its port and pool files busy.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _supports_confirm_legal_notice() -> bool:
    # 4.5.x has no such flag and refuses unknown options; newer versions ask without it.
    res = subprocess.run(["qbittorrent-nox", "--help"], capture_output=True, text=True)
    return "confirm-legal-notice" in res.stdout + res.stderr


class QbtInstance(SupervisedDaemon):
    """One qbittorrent-nox process with its own profile folder and WebUI port."""

    username = USERNAME
    password = PASSWORD

    def __init__(self) -> None:
        self.profile_dir: Path | None = None
        self.port: int | None = None
        self.url: str | None = None
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log_path(self) -> Path:
        return self.profile_dir / "qbittorrent-nox.log"

    @property
    def downloads_dir(self) -> Path:
        return self.profile_dir / "downloads"

    def start(self, profile_dir: Path, port: int | None = None, timeout: float = 30.0) -> QbtInstance:
        self.profile_dir = Path(profile_dir).resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = self.profile_dir / "qBittorrent" / "config" / "qBittorrent.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        self.downloads_dir.mkdir(parents=True, exist_ok=True)
        conf.write_text(_conf(self.port, free_port(), self.downloads_dir))
        self._launch(timeout)
        return self

    def _launch(self, timeout: float) -> None:
        args = ["qbittorrent-nox", f"--profile={self.profile_dir}"]
        if _supports_confirm_legal_notice():
            args.append("--confirm-legal-notice")
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (closed by stop(), after the process ends)
        # Own session: a Ctrl-C in the test runner must not kill it before teardown runs.
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._wait_up(timeout)

    def _wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"qbittorrent-nox exited with {self.proc.returncode}; log {self.log_path}:\n" + self._log_tail()
                )
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/app/version", timeout=2) as r:
                    if r.status in (200, 403):  # 403: up, just wants a login
                        return
            except urllib.error.HTTPError as e:
                if e.code in (401, 403):
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"qbittorrent-nox not answering on {self.url}; log:\n{self._log_tail()}")

    def _log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def client(self) -> qbittorrentapi.Client:
        c = qbittorrentapi.Client(
            host=self.url,
            username=self.username,
            password=self.password,
            REQUESTS_ARGS={"timeout": (5, 30)},
        )
        c.auth_log_in()
        return c
