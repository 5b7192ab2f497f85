"""What a sweep or the worker notices and tells the user once: blocked too long, low free space,
ATM back on, a client that does not answer.

Each condition is reported when it starts; the memory of what was reported lives in the
catalog's ``state`` table, so a restart does not repeat it (and is written only when it
changes: a sweep that notices nothing new writes nothing here). Sending is ``qbhook.notify``'s job.

Two kinds of check. ``sweep_checks`` reads a plan and its snapshot: it runs on every sweep
that plans something. ``pool_checks`` (free space) reads only the pools: it runs on every
sweep, also one that re-plans nothing (no snapshot, no plan), so a pool filling up is told
at the next sweep, not the next one with a change to plan. The plan-reading checks lose
nothing on such a sweep: a blocked group is re-planned every sweep (it is never "settled"),
and a torrent's ATM flag coming back on is a torrent change, which re-plans its group.

A client that does not answer is the worker's to notice (``ClientDown``): its jobs wait, no
attempt counted, and only /healthz said so, which nobody watches unattended. It is told once
when the client has been silent for ``CLIENT_DOWN_AFTER_S`` (a qBittorrent restart or a container
update is over well before), and once when a job gets past it again, with how long it was silent.
The worker's own trouble (failing passes, stalled, its thread gone) cannot be told by the worker:
``serve`` watches its health from another thread (``WorkerWatch``), with the same delay.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from qbhook import notify
from qbhook.catalog import state
from qbhook.units import human_bytes

CLIENT_DOWN_AFTER_S = 600.0  # a client silent this long is told; a restart is over well before


@dataclass(frozen=True)
class PoolSpace:
    """What the free-space check reads of a pool (a snapshot's PoolFact has these too)."""

    name: str
    free_bytes: int


def pool_checks(cfg, conn, pools: Iterable[PoolSpace], now: float | None = None) -> list[notify.Event]:
    """The checks that need no plan (free space below ``notify.free_space_below``).

    Run by a sweep that re-plans nothing; ``sweep_checks`` runs the same check on the
    snapshot's pools. Returns the events emitted."""
    n = getattr(cfg, "notify", None)
    if n is None or notify.active() is None:
        return []
    out: list[notify.Event] = []
    _free_space(n, conn, pools, _reporter(out, time.time() if now is None else now))
    return out


def _reporter(out: list[notify.Event], now: float):
    def report(kind: str, text: str, severity: str) -> None:
        out.append(notify.Event(kind, text, severity, now))
        notify.emit(kind, text, severity)

    return report


def _put(conn, key: str, before, value) -> None:
    """state.put, skipped when the value is what was read (no write, no commit)."""
    if value != before:
        state.put(conn, key, value)


def _free_space(n, conn, pools: Iterable[PoolSpace], report) -> None:
    # free space below notify.free_space_below (0: never report)
    pools = list(pools)
    low_before, _ = state.get(conn, "notify.low_pools", [])
    low = [p.name for p in pools if n.free_space_below and p.free_bytes < n.free_space_below]
    for p in pools:
        if p.name in low and p.name not in low_before:
            report(
                "free_space",
                f"pool {p.name} has {human_bytes(p.free_bytes)} free, below "
                f"{human_bytes(n.free_space_below)} (notify.free_space_below)",
                "warning",
            )
    _put(conn, "notify.low_pools", low_before, low)


def sweep_checks(cfg, conn, snap, plan, now: float | None = None, *, partial: bool = False) -> list[notify.Event]:
    """What a full sweep notices: blocked too long, low free space, ATM back on a relocated torrent.

    Each condition is reported once when it starts; the memory of what was reported lives in
    the ``state`` table, so a restart does not repeat it. Returns the events emitted.
    ``partial``: an incremental sweep's snap; a torrent outside it keeps what was reported."""
    n = getattr(cfg, "notify", None)
    if n is None or notify.active() is None:
        return []
    now = time.time() if now is None else now
    out: list[notify.Event] = []
    report = _reporter(out, now)

    # blocked for longer than notify.blocked_after (0: never report)
    since_before, _ = state.get(conn, "notify.blocked_since", {})
    told_before, _ = state.get(conn, "notify.blocked_told", [])
    blocked = {g.group_id: g for g in plan.groups if g.action == "blocked"}
    since = {gid: since_before.get(gid, now) for gid in blocked}
    told = [gid for gid in told_before if gid in blocked]
    if n.blocked_after > 0:
        for gid, g in sorted(blocked.items()):
            age = now - since[gid]
            if age >= n.blocked_after and gid not in told:
                told.append(gid)
                report(
                    "blocked", f"group {gid} ({', '.join(g.names[:2])}) blocked for {_age(age)}: {g.reason}", "warning"
                )
    _put(conn, "notify.blocked_since", since_before, since)
    _put(conn, "notify.blocked_told", told_before, told)

    _free_space(n, conn, snap.pools, report)

    # a torrent qbhook relocated, with Automatic Torrent Management on again: qBittorrent would
    # move its data back to the category's folder by itself, undoing the move behind our back.
    tag = cfg.policy.relocated_tag
    atm_before, _ = state.get(conn, "notify.atm_told", [])
    on = [t for t in snap.torrents if t.auto_tmm]
    moved = _relocated_by_journal(conn, {t.hash for t in on}) if on else set()
    atm = sorted(t.hash for t in on if (tag and tag in t.tags) or t.hash in moved)
    names = {t.hash: t.name for t in snap.torrents}
    atm = sorted({*atm, *(h for h in atm_before if h not in names)}) if partial else atm
    for h in atm:
        if h not in atm_before:
            report(
                "atm",
                f"torrent {names[h]} ({h[:12]}) was relocated by qbhook but has Automatic Torrent "
                f"Management on again: qBittorrent would move its data back; turn ATM off for it",
                "warning",
            )
    _put(conn, "notify.atm_told", atm_before, atm)
    return out


def _relocated_by_journal(conn, hashes: set[str]) -> set[str]:
    """Which of ``hashes`` a finished relocate step moved (the relocated tag may be off or removed)."""
    import json
    import sqlite3

    try:
        rows = conn.execute("SELECT args FROM steps WHERE kind = 'relocate' AND status = 'done'").fetchall()
    except sqlite3.OperationalError:  # no journal in this database
        return set()
    return {h for (a,) in rows if (h := json.loads(a).get("torrent")) in hashes}


def _age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


class ClientDown:
    """The worker's memory of the client it told is down: the ``state`` table's
    ``notify.client_down`` ({"client", "since"} or None), read once, written when it changes.

    Health forgets a client's silence when the process restarts; this does not: a client still
    silent after a restart is not told again, and its answering again is told even so."""

    KEY = "notify.client_down"

    def __init__(self, conn):
        self._conn = conn
        self._told: dict | None = None
        self._loaded = False

    def check(self, down: tuple[str, float] | None, now: float) -> list[notify.Event]:
        """``down``: the client not answering and since when (``WorkerHealth.unreachable``), or
        None once a job's try got past every client. Returns the events emitted."""
        if not self._loaded:
            told, _ = state.get(self._conn, self.KEY)
            self._told, self._loaded = told if isinstance(told, dict) else None, True
        out: list[notify.Event] = []
        report = _reporter(out, now)
        told = self._told
        if told is not None and (down is None or down[0] != told.get("client")):
            # A job got past it (health names one client at a time: another silent one got past it too).
            silent = max(now - float(told.get("since") or now), 0.0)
            report("client_back", f"{told.get('client')} answers again after {_age(silent)}: waiting jobs run", "info")
            told = None
        if told is None and down is not None and now - down[1] >= CLIENT_DOWN_AFTER_S:
            client, since = down
            report(
                "client_down",
                f"{client} has not answered for {_age(now - since)}: events are queued, none is processed "
                "until it answers (no job fails of it); check that it runs and that its URL is right",
                "failure",
            )
            told = {"client": client, "since": since}
        if told != self._told:
            state.put(self._conn, self.KEY, told)
            self._told = told
        return out


class WorkerWatch:
    """``serve``'s watch over its worker's health, from a thread of its own (a stalled worker tells
    nothing itself): trouble that lasts ``CLIENT_DOWN_AFTER_S`` is told once, its end once.

    Only what nobody else tells: a client's silence is ``ClientDown``'s, a failing sweeper the
    sweeper's own notice, an executor blocked by an unfinished run the run's (``notify.run_finished``).
    In memory: a restarted ``serve`` starts with a new worker, whose health starts afresh too."""

    def __init__(self):
        self._since: float | None = None  # when the trouble began (seen by this watch)
        self._told = False

    def check(self, health, now: float) -> list[notify.Event]:
        out: list[notify.Event] = []
        report = _reporter(out, now)
        trouble = worker_trouble(health)
        if trouble is None:
            if self._told:
                report("worker_back", f"the worker makes progress again, after {_age(now - self._since)}", "info")
            self._since, self._told = None, False
            return out
        self._since = now if self._since is None else self._since
        if not self._told and now - self._since >= CLIENT_DOWN_AFTER_S:
            self._told = True
            report("worker_trouble", f"{trouble}: events are queued, none is processed (the log says why)", "failure")
        return out


def worker_trouble(health) -> str | None:
    """The worker's trouble its health names (``public``: no error text), or None when it is fine
    or the trouble is told elsewhere (see ``WorkerWatch``)."""
    if health.ok or {"client_unreachable", "unfinished_runs"} & set(health.detail):
        return None
    if health.public.startswith("sweeper failing"):
        return None
    return health.public
