"""A short soak of a real `qbhook serve` (server + worker + sweeper) against a real qBittorrent:
after many sweeps and events its open descriptors and threads are no more than after the first.

The long measurement is bench/bench_soak.py (docs/benchmarks.md section 11); this is its
deterministic part, counts only (RSS is not deterministic). Counts are read at a quiet moment:
just after a sweep ended (``last_sweep`` rewritten), with no job pending or running, as the
smallest of a few samples, so a request or a sweep in flight never counts. A sweep that leaked
one descriptor or one thread fails it: SWEEPS more at the end than at the start.

One kind of descriptor may be more at the end, up to a bound, without a leak: keep-alive
connections to qBittorrent (``QBT_CONNECTIONS``). A failure lists every descriptor that came
or went, with what it is (a file's path, a pipe, a socket's addresses and state), so it
explains itself.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sqlite3
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from qbhook.sandbox.qbt import free_port
from qbhook.sandbox.serve import start_serve, stop_serve
from qbhook.sandbox.torrents import add_and_wait_seeding, make_torrent, write_payload
from tests.helpers import config_data
from tests.integration.crash_helpers import QBHOOK_CMD

pytestmark = pytest.mark.integration

TOKEN = "soak-token-0123456789"
SWEEPS = 8  # after the first: each one must leave the counts where they were
# serve's worker and sweeper share one client object per qBittorrent, so one requests session
# and its urllib3 pool (requests' default: up to 10 idle connections per host). The pool opens
# a connection whenever a request finds none idle, and keeps each one when it is returned:
# after two requests overlap, two keep-alive sockets stay open for good (measured: a shared
# QbtClient session asked by N threads at once keeps N connections, and no more after any
# number of rounds one at a time). What may ask one qBittorrent at the same moment: the worker,
# the sweeper, and each one's sync/maindata prefetch thread while it sweeps
# (events.worker._Prefetch; the worker sweeps for a job naming no torrent): 4. On a loaded
# machine the worker's job and the sweeper's prefetch overlap now and then, which is how one CI
# run saw 17 descriptors after the first sweep and 18 after 8 more. A leak (a connection or a
# session per sweep) passes this bound within the test's sweeps.
QBT_CONNECTIONS = 4

_TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "0A": "LISTEN"}


def _address(hexaddr: str) -> tuple[str, int]:
    """An address of /proc/net/tcp{,6}: the IP as 32-bit words in host (little-endian) order."""
    ip, port = hexaddr.split(":")
    raw = b"".join(bytes.fromhex(ip[i : i + 8])[::-1] for i in range(0, len(ip), 8))
    addr = ipaddress.ip_address(raw)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr), int(port, 16)


@dataclass(frozen=True)
class Sock:
    kind: str  # tcp, tcp6, udp, udp6, unix
    local: tuple[str, int] | str
    remote: tuple[str, int] | None
    state: str

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix socket {self.local or '(unnamed)'}"
        loc = f"{self.local[0]}:{self.local[1]}"
        rem = f" -> {self.remote[0]}:{self.remote[1]}" if self.remote and self.remote[1] else ""
        return f"{self.kind} socket {loc}{rem} {self.state}"


def _sockets(pid: int) -> dict[str, Sock]:
    """socket inode -> what it is, from the tables of ``pid``'s network namespace."""
    out: dict[str, Sock] = {}
    for kind in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{kind}").read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            state = _TCP_STATES.get(f[3], f[3]) if kind.startswith("tcp") else ""
            out[f[9]] = Sock(kind, _address(f[1]), _address(f[2]), state)
    try:
        for ln in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
            f = ln.split()
            out[f[6]] = Sock("unix", f[7] if len(f) > 7 else "", None, "")
    except OSError:
        pass
    return out


def descriptors(pid: int) -> dict[int, str | Sock]:
    """Every open descriptor of ``pid``: its link target (a path, ``pipe:[...]``, ``anon_inode:...``),
    a socket as what it is (``Sock``: addresses and state), or the bare ``socket:[inode]``."""
    out: dict[int, str | Sock] = {}
    socks: dict[str, Sock] | None = None
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue  # closed between the listing and the look
        if target.startswith("socket:["):
            socks = _sockets(pid) if socks is None else socks
            out[int(name)] = socks.get(target[8:-1], target)
        else:
            out[int(name)] = target
    return out


@dataclass(frozen=True)
class Sample:
    fds: dict[int, str | Sock]
    threads: int


def counts(pid: int) -> Sample:
    """``pid``'s open descriptors (the fewest of five samples 50 ms apart) and threads (the fewest)."""
    samples, threads = [], []
    for _ in range(5):
        samples.append(descriptors(pid))
        status = Path(f"/proc/{pid}/status").read_text()
        threads.append(int(next(ln for ln in status.splitlines() if ln.startswith("Threads:")).split()[1]))
        time.sleep(0.05)
    return Sample(min(samples, key=len), min(threads))


def to_qbt(qbt_url: str):
    """A predicate: is this descriptor a TCP connection to qBittorrent's web UI?"""
    u = urllib.parse.urlsplit(qbt_url)
    where = (socket.gethostbyname(u.hostname), u.port)
    return lambda d: isinstance(d, Sock) and d.kind.startswith("tcp") and d.remote == where


def difference(first: Sample, last: Sample) -> str:
    """What came and what went between two samples, each descriptor with what it is."""
    came = [f"  fd {n}: {d}" for n, d in sorted(last.fds.items()) if first.fds.get(n) != d]
    went = [f"  fd {n}: {d}" for n, d in sorted(first.fds.items()) if last.fds.get(n) != d]
    return "\n".join(
        [
            f"(fds, threads) after the first sweep {(len(first.fds), first.threads)}, "
            f"after {SWEEPS} more {(len(last.fds), last.threads)}"
        ]
        + ["opened since:"]
        + (came or ["  none"])
        + ["closed since:"]
        + (went or ["  none"])
    )


def post(port: int, path: str, body: bytes, ctype: str) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": ctype, "X-Qbhook-Token": TOKEN}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def events(port: int, h: str, content: str, i: int) -> None:
    """One of each: qBittorrent's added and finished hook calls, a Radarr import, a cross-seed injection."""
    for kind in ("added", "finished"):
        form = {"event": kind, "I": h, "J": "-", "K": h, "N": "n", "F": content}
        assert (
            post(port, "/hook/qbittorrent", urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded")
            == 202
        )
    radarr = {
        "eventType": "Download",
        "movie": {"id": i, "title": "M", "folderPath": "/movies/M"},
        "movieFile": {"id": i, "relativePath": "m.mkv", "path": "/movies/M/m.mkv"},
        "downloadClient": "qBittorrent",
        "downloadId": h.upper(),
    }
    assert post(port, "/webhook/radarr", json.dumps(radarr).encode(), "application/json") == 202
    xseed = {"extra": {"event": "RESULTS", "result": "INJECTED", "infoHashes": [h], "searchee": {"infoHash": h}}}
    assert (
        post(port, "/webhook/cross-seed", json.dumps({"title": "t", "body": "b", **xseed}).encode(), "application/json")
        == 202
    )


def after_next_sweep(catalog: Path, *, idle: bool = True, timeout: float = 30) -> None:
    """Return just after a sweep ended (``idle``: one that ended with no job pending or running).

    A job waits a few seconds for more events about its torrent before it runs, so the rounds
    in between do not wait for the queue: their jobs run during the later sweeps."""

    def read():
        with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=10) as c:
            row = c.execute("SELECT value FROM state WHERE key = 'last_sweep'").fetchone()
            busy = c.execute("SELECT count(*) FROM event_jobs WHERE state IN ('pending', 'running')").fetchone()[0]
        c.close()
        return row, busy

    before, _ = read()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now, busy = read()
        if now != before and not (idle and busy):
            return
        time.sleep(0.05)
    raise AssertionError(f"no sweep ended with an empty queue within {timeout} s")


def test_serve_keeps_its_descriptors_and_threads_over_sweeps_and_events(qbt, qbt_client, tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    seed = stash / "data/media/torrents/seeding"
    (pool / "data/media/torrents/seeding").mkdir(parents=True)
    hashes = []
    for i in range(3):
        write_payload(seed, {f"Item.{i}/a.mkv": 4096 + i, f"Item.{i}/b.nfo": 64 + i}, seed=i)
        hashes.append(
            add_and_wait_seeding(qbt_client, make_torrent(seed / f"Item.{i}", tmp_path / f"{i}.torrent"), seed)
        )
    port = free_port()
    catalog = tmp_path / "catalog.sqlite"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            config_data(
                catalog,
                stash,
                pool,
                qbt={"url": qbt.url, "username": qbt.username, "password": qbt.password},
                # 2 s: room between two sweeps for the samples
                server={"listen": "127.0.0.1", "port": port, "token": TOKEN, "sweep_interval": "2s"},
            )
        )
    )
    proc = start_serve(cfg, port, log=tmp_path / "serve.log", cli=QBHOOK_CMD, sweep=True)
    try:
        # The first sweep and one event of each kind open what stays open (catalog connections,
        # the worker's client session): the counts after them are the baseline.
        events(port, hashes[0], str(seed / "Item.0"), 0)
        after_next_sweep(catalog)
        after_next_sweep(catalog)
        first = counts(proc.pid)
        for k in range(SWEEPS):
            events(port, hashes[k % 3], str(seed / f"Item.{k % 3}"), k + 1)
            after_next_sweep(catalog, idle=False)
        after_next_sweep(catalog)
        last = counts(proc.pid)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
        # Keep-alive connections to qBittorrent may be more, up to QBT_CONNECTIONS; every other
        # descriptor, and the threads, no more than after the first sweep.
        is_qbt = to_qbt(qbt.url)
        qbt_conns = sum(1 for d in last.fds.values() if is_qbt(d))
        others = [sum(1 for d in s.fds.values() if not is_qbt(d)) for s in (first, last)]
        why = difference(first, last)
        assert qbt_conns <= QBT_CONNECTIONS, f"{qbt_conns} connections to qBittorrent\n{why}"
        assert others[1] <= others[0] and last.threads <= first.threads, why
    finally:
        stop_serve(proc)
