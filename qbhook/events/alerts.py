"""What a sweep notices and tells the user once: blocked too long, low free space, ATM back on.

Each condition is reported when it starts; the memory of what was reported lives in the
catalog's ``state`` table, so a restart does not repeat it (and is written only when it
changes: a sweep that notices nothing new writes nothing here). Sending is ``qbhook.notify``'s job.

Two kinds of check. ``sweep_checks`` reads a plan and its snapshot: it runs on every sweep
that plans something. ``pool_checks`` (free space) reads only the pools: it runs on every
sweep, also one that re-plans nothing (no snapshot, no plan), so a pool filling up is told
at the next sweep, not the next one with a change to plan. The plan-reading checks lose
nothing on such a sweep: a blocked group is re-planned every sweep (it is never "settled"),
and a torrent's ATM flag coming back on is a torrent change, which re-plans its group.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from qbhook import notify
from qbhook.catalog import state
from qbhook.units import human_bytes


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
