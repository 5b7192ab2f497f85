"""Which user a qBittorrent runs as, told from this host's /proc: `setup qbittorrent --mode direct`
asks it, since a direct hook runs `qbhook hook` as that user.

Model: qBittorrent is the process listening on its Web UI's port. The URL must name this host:
its host name, or a name or address an ephemeral socket here can be bound to (loopback, a LAN
address of its own, ``0.0.0.0``: the kernel's own answer for this network namespace, with no
interface list to read); ``/proc/net/tcp`` and ``tcp6`` (this network namespace) give the
listening socket's inode, the ``fd`` links of ``/proc/PID`` the process holding it (another
user's need root to read), its ``comm`` whether it is qBittorrent at all (a container's port is
held by a proxy, and a hook there runs inside the container), and ``status`` its effective uid.
Whatever cannot be told is said as the reason, never guessed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from qbhook.config import shown_url

PROC = "/proc"
_LISTEN = "0A"


@dataclass(frozen=True)
class WebUiProcess:
    pid: int
    name: str
    uid: int  # effective


class CannotTell(Exception):
    """Which local process, or user, serves the Web UI cannot be told; the message says why."""


def web_ui_process(url: str, proc: str | None = None) -> WebUiProcess:
    """The qBittorrent process serving ``url`` on this host, or CannotTell."""
    proc = proc or PROC
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:  # a port out of range or not a number, an unclosed [IPv6 address
        raise CannotTell(f"{shown_url(url)} cannot be read as a URL: {e}") from None
    if not _this_host(host):
        raise CannotTell(f"{shown_url(url)} is not this host, so the user qBittorrent runs as cannot be told")
    inodes = _listening(port, proc)
    if not inodes:
        raise CannotTell(f"nothing listens on port {port} here (qBittorrent in a container or another host?)")
    pid = _holder(inodes, proc)
    if pid is None:
        raise CannotTell(f"the process listening on port {port} cannot be found (run as root to see it)")
    try:
        name = _read(f"{proc}/{pid}/comm").strip()
        status = _read(f"{proc}/{pid}/status")
    except OSError as e:
        raise CannotTell(f"the process listening on port {port} (pid {pid}) cannot be read: {e.strerror}") from None
    if "qbittorrent" not in name.lower():
        raise CannotTell(f"port {port} is held by {name or '?'} (pid {pid}), not qBittorrent (a container's proxy?)")
    uid = _effective_uid(status)
    if uid is None:
        raise CannotTell(f"the user of {name} (pid {pid}) cannot be read")
    return WebUiProcess(pid, name, uid)


def _this_host(host: str) -> bool:
    if not host:
        return False
    if host in ("localhost", socket.gethostname().lower()):
        return True
    try:
        found = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False  # a name this host cannot resolve: not one it answers to
    return any(_bindable(family, sockaddr) for family, _t, _p, _c, sockaddr in found)


def _bindable(family: int, sockaddr: tuple) -> bool:
    """Whether ``sockaddr`` (port 0) is this host's own address (or the unspecified one): binding
    fails with EADDRNOTAVAIL for any other."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind(sockaddr)
    except OSError:
        return False
    return True


def _listening(port: int, proc: str) -> set[str]:
    """Inodes of the sockets listening on ``port`` (any address) in this network namespace."""
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = _read(f"{proc}/net/{table}").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if len(f) >= 10 and f[3] == _LISTEN and f[1].rsplit(":", 1)[-1].upper() == f"{port:04X}":
                found.add(f[9])
    return found


def _holder(inodes: set[str], proc: str) -> int | None:
    wanted = {f"socket:[{i}]" for i in inodes}
    try:
        with os.scandir(proc) as it:
            entries = list(it)
    except OSError as e:
        raise CannotTell(f"the processes of {proc} cannot be listed: {e.strerror}") from None
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"{proc}/{entry.name}/fd")
        except OSError:
            continue  # gone, or another user's
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) in wanted:
                        return int(entry.name)
                except OSError:
                    continue
    return None


def _effective_uid(status: str) -> int | None:
    for line in status.splitlines():
        if line.startswith("Uid:"):
            ids = line.split()[1:]
            return int(ids[1]) if len(ids) > 1 and ids[1].isdigit() else None
    return None


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()
