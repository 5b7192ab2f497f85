"""What the status page and /metrics show: one typed snapshot read from the catalog.

Everything here is read at request time from what qbhook already persists, so a restart
loses nothing and nothing can drift from the database:

- pools: size and free space from ``statvfs`` (``space.space_at``: through the pool root's
  descriptor); the breakdown of used space from the catalog (each inode counted once, by the
  links the last scan saw):

  * library-linked: seed data that also has a link outside the seeding root (or more
    links than the catalog knows: something unseen uses it), so it has to stay;
  * seed-only, duplicated: seed data with no outside link whose content (a valid hash)
    also sits on another pool; converging it frees space;
  * seed-only: the rest of the seed data with no outside link;
  * other files: catalogued files outside the seeding root (libraries, downloads);
  * not catalogued: used space the catalog does not account for (snapshots, metadata,
    files created since the last scan).

  "Blocked" is the payload of the groups the last sweep could not move (they overlap the
  categories above, so they are reported beside the bar, not inside it). "Orphaned" (seed
  data no torrent references) needs every client's torrent list, so only ``qbhook orphans``
  computes it: the figures shown are that run's (``move.orphans.last_run``: reclaimable
  bytes, bytes still used by a library) with their age; never run, it is "unknown", never
  guessed.
- the pending plan: the last sweep's decisions (``state`` key ``last_sweep``), each with the
  newest journal outcome of its group when a run touched it after that sweep;
- runs: the journal's ``runs`` rows with their byte counters;
- the queue: job counts by state and the dead letters with their errors;
- what needs a person (``needs_person``): the problems ``qbhook status`` prints, from the same
  function, with the serving worker's own health in place of its /healthz.

The breakdown query walks every catalogued path, so its result is kept until a scan, a run
step or an event job moves (``change_marker``) or a minute passes; the rest is cheap and
read fresh.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from qbhook.catalog import state
from qbhook.catalog.db import check_tables, connect, reading
from qbhook.catalog.store import hash_valid
from qbhook.config import Config, PoolConfig
from qbhook.dirfd import FolderRefused
from qbhook.events.queue import JobQueue
from qbhook.move.journal import Journal, failed_not_paused, owner_gone
from qbhook.move.orphans import LastOrphans, holding_needs_person
from qbhook.move.orphans import last_run as last_orphans
from qbhook.numbers import MAX_INT, finite
from qbhook.space import space_at

BREAKDOWN_TTL_S = 60.0
RECENT_RUNS = 10
DEAD_LETTERS = 20
PENDING_SHOWN = 200

# (key, label) in bar order; the keys are also the CSS classes and metric label values.
SEGMENTS = (
    ("library", "library-linked"),
    ("duplicated", "seed-only, duplicated on another pool"),
    ("seed_only", "seed-only"),
    ("other", "other files"),
    ("uncatalogued", "not catalogued"),
)


@dataclass(frozen=True)
class Segment:
    key: str
    label: str
    bytes: int


@dataclass(frozen=True)
class PoolStatus:
    name: str
    role: str
    path: str
    size: int | None  # None when statvfs failed (error says why)
    free: int | None
    error: str | None
    segments: tuple[Segment, ...]  # disjoint parts of the used space
    blocked_groups: int
    blocked_bytes: int | None  # None: the sweep that blocked them did not record sizes
    orphaned_bytes: int | None  # None: `qbhook orphans` never ran (see the module docstring)
    hashed_bytes: int | None = None  # catalogued bytes with a valid hash (None: not computed)
    unhashed_bytes: int | None = None
    orphans_reclaimable: int | None = None  # of orphaned_bytes: what quarantining would free
    orphans_library: int | None = None  # of orphaned_bytes: still used by a library (frees nothing)
    orphans_at: float | None = None  # when `qbhook orphans` found them

    @property
    def used(self) -> int | None:
        return None if self.size is None or self.free is None else max(self.size - self.free, 0)


@dataclass(frozen=True)
class PendingGroup:
    group_id: str
    action: str  # demote | promote | blocked | skip
    reason: str
    names: tuple[str, ...]
    source_pool: str | None
    target_pool: str | None
    payload_bytes: int | None
    bytes_to_copy: int | None
    bytes_freed: int | None
    outcome: str | None  # the group's journal status when a run touched it after the sweep
    outcome_reason: str | None


@dataclass(frozen=True)
class SweepStatus:
    at: float
    seconds: float | None
    decisions: dict[str, int]  # action -> number of groups
    bytes_to_copy: int
    bytes_freed: int
    pending: tuple[PendingGroup, ...]  # the first PENDING_SHOWN, for rendering
    pending_total: int
    # source pool -> (blocked groups, their payload bytes or None when one has no size),
    # counted over every pending group, not only the ones shown
    blocked: dict[str, tuple[int, int | None]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class EventPlan:
    """What the worker decided for the latest event job (``state`` key ``last_event_plan``)."""

    at: float
    job: int | None
    groups: tuple[PendingGroup, ...]
    applied: bool
    note: str | None


@dataclass(frozen=True)
class RunStatus:
    id: int
    status: str
    trigger: str | None
    started_at: float
    finished_at: float | None
    bytes_copied: int
    bytes_freed: int
    groups_done: int
    groups_failed: int
    # A resumed run whose bytes freed are a lower bound (``RunSummary.bytes_freed_at_least``).
    bytes_freed_at_least: bool = False
    # A quarantine run (``orphans.quarantine``): files held and failed, bytes held; None for any other
    # run. Its summary has no groups nor bytes freed: shown as an apply run, it read as zeros.
    orphans_held: int | None = None
    orphans_failed: int = 0
    bytes_held: int = 0


@dataclass(frozen=True)
class DeadLetter:
    id: int
    key: str
    kinds: tuple[str, ...]
    attempts: int
    error: str | None
    at: float | None


@dataclass(frozen=True)
class Status:
    generated_at: float
    pools: tuple[PoolStatus, ...]
    sweep: SweepStatus | None
    last_event: EventPlan | None
    queue: dict[str, int]
    dead_letters: tuple[DeadLetter, ...]
    runs: tuple[RunStatus, ...]
    unfinished_runs: tuple[int, ...]
    needs: tuple[str, ...] = ()  # what needs a person (``needs_person``); the page's, not /metrics'
    worker: Any = None  # the serving worker's health (``worker.Health``; None: not known here)


@dataclass(frozen=True)
class Totals:
    """Whole-history numbers for /metrics, all from the database."""

    runs_by_status: dict[str, int]
    bytes_copied: int
    bytes_freed: int
    groups_by_state: dict[str, int]  # journal group_state: done | failed | rolled_back | running
    catalog_bytes: int
    hashed_bytes: int  # bytes of content whose hash is known and still valid
    hashed_files: int


class StatusSource:
    """Reads a Status from the catalog at ``cfg.catalog``; one short-lived connection per call,
    so it is safe from any server thread."""

    def __init__(
        self,
        cfg: Config,
        *,
        clock: Callable[[], float] = time.time,
        ttl_s: float = BREAKDOWN_TTL_S,
        health: Callable[[], Any] | None = None,
    ):
        self.cfg = cfg
        self._health = health  # the serving worker's report (``worker.WorkerHealth.report``)
        self._clock = clock
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, tuple, Any]] = {}

    def status(self) -> Status:
        """Everything the page shows, what needs a person and the worker's health included."""
        worker = self._health() if self._health is not None else None
        server = served_health(worker) if worker is not None else None
        with self._connect() as conn:
            st = gather(
                self.cfg,
                conn,
                breakdown=self._cached_breakdown(conn),
                now=self._clock(),
                hashed=self._cached("hashed", conn, lambda c: hashed_by_pool(c, self.cfg.pools)),
            )
            needs = needs_person(self.cfg, conn, pools=pool_facts(self.cfg), server=server, now=st.generated_at)
        return dataclasses.replace(st, needs=tuple(needs), worker=worker)

    def totals(self) -> Totals:
        with self._connect() as conn:
            return totals(conn, self._cached("sums", conn, catalog_sums))

    def light(self) -> Status:
        """Status without the breakdown query (what /metrics needs, every scrape)."""
        with self._connect() as conn:
            return gather(self.cfg, conn, breakdown={}, now=self._clock())

    def _cached_breakdown(self, conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
        return self._cached("breakdown", conn, lambda c: catalog_breakdown(c, self.cfg.pools))

    def _cached(self, key: str, conn: sqlite3.Connection, compute: Callable[[sqlite3.Connection], Any]) -> Any:
        """compute(conn), reused until change_marker() moves or ttl_s passes (hashing alone
        moves no marker, so hashed bytes can lag by up to ttl_s)."""
        with self._lock:
            now, marker = self._clock(), change_marker(conn)
            hit = self._cache.get(key)
            if hit is None or now - hit[0] >= self._ttl_s or marker != hit[1]:
                hit = self._cache[key] = (now, marker, compute(conn))
            return hit[2]

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # Read-only and short-lived: the page never migrates or writes the catalog, and a
        # connection per request is safe from any of the server's threads.
        conn = connect(self.cfg.catalog, readonly=True)
        try:
            yield conn
        finally:
            conn.close()


# ---------------------------------------------------------------------------- gathering


def gather(
    cfg: Config,
    conn: sqlite3.Connection,
    *,
    breakdown: dict[str, dict[str, int]],
    now: float,
    hashed: dict[str, dict[str, int]] | None = None,
) -> Status:
    sweep = _sweep(conn)
    orphans = last_orphans(conn)
    pools = tuple(_pool(p, breakdown.get(p.name), sweep, (hashed or {}).get(p.name), orphans) for p in cfg.pools)
    queue = JobQueue(conn)
    journal = Journal(conn)
    dead = tuple(
        DeadLetter(j.id, j.coalesce_key, tuple(j.kinds), j.attempts, j.last_error, j.finished_at)
        for j in queue.list(states=["dead"], limit=DEAD_LETTERS)
    )
    return Status(
        generated_at=now,
        pools=pools,
        sweep=sweep,
        last_event=_last_event(conn),
        queue=queue.counts(),
        dead_letters=dead,
        runs=tuple(_run(r) for r in journal.runs(limit=RECENT_RUNS)),
        unfinished_runs=tuple(r.id for r in journal.unfinished_runs()),
    )


def _pool(
    p: PoolConfig,
    counts: dict[str, int] | None,
    sweep: SweepStatus | None,
    hashed: dict[str, int] | None = None,
    orphans: LastOrphans | None = None,
) -> PoolStatus:
    size = free = None
    error = None
    try:
        space = space_at(p.path)[0]  # the pool root, walked to and pinned
        size, free = space.size, space.avail
    except OSError as e:
        error = f"{p.path}: {e.strerror}"
    except FolderRefused as e:
        error = str(e)
    segments: tuple[Segment, ...] = ()
    if counts is not None:
        parts = dict(counts)
        if size is not None and free is not None:
            # Whatever statvfs counts as used that the catalog cannot name.
            parts["uncatalogued"] = max(size - free - sum(parts.values()), 0)
        segments = tuple(Segment(k, label, parts[k]) for k, label in SEGMENTS if k in parts)
    o = orphans.pools.get(p.name) if orphans is not None else None
    blocked_groups, blocked_bytes = sweep.blocked.get(p.name, (0, 0)) if sweep else (0, 0)
    return PoolStatus(
        name=p.name,
        role=p.role,
        path=str(p.path),
        size=size,
        free=free,
        error=error,
        segments=segments,
        blocked_groups=blocked_groups,
        blocked_bytes=blocked_bytes,
        orphaned_bytes=(o.reclaimable + o.library) if o else None,
        hashed_bytes=hashed["hashed_bytes"] if hashed else None,
        unhashed_bytes=hashed["unhashed_bytes"] if hashed else None,
        orphans_reclaimable=o.reclaimable if o else None,
        orphans_library=o.library if o else None,
        orphans_at=orphans.at if o else None,
    )


def catalog_breakdown(conn: sqlite3.Connection, pools: Iterable[PoolConfig]) -> dict[str, dict[str, int]]:
    """pool name -> {library, duplicated, seed_only, other: bytes}, each inode counted once."""
    out: dict[str, dict[str, int]] = {}
    for p in pools:
        # A link under any of the pool's seeding roots is a seeding link.
        prefixes = [os.fsencode(os.path.normpath(str(r))) + b"/" for r in p.seeding_roots]
        seed_expr = " + ".join(f"(substr(pa.path, 1, {len(x)}) = :prefix{i})" for i, x in enumerate(prefixes))
        row = conn.execute(
            f"""
            WITH per_inode AS (
                SELECT i.id, i.size, i.nlink, i.hash,
                       SUM({seed_expr}) AS seed_links,
                       ({hash_valid("i")}) AS hashed
                FROM paths pa JOIN inodes i ON i.id = pa.inode
                WHERE pa.pool = :pool
                GROUP BY i.id
            )
            SELECT
                COALESCE(SUM(CASE WHEN seed_links > 0 AND nlink > seed_links THEN size END), 0),
                COALESCE(SUM(CASE WHEN seed_links > 0 AND nlink <= seed_links AND hashed AND EXISTS (
                    SELECT 1 FROM inodes j JOIN paths q ON q.inode = j.id
                    WHERE j.hash = per_inode.hash AND j.size = per_inode.size AND q.pool != :pool
                      AND {hash_valid("j")}
                ) THEN size END), 0),
                COALESCE(SUM(CASE WHEN seed_links > 0 AND nlink <= seed_links THEN size END), 0),
                COALESCE(SUM(CASE WHEN seed_links = 0 THEN size END), 0)
            FROM per_inode
            """,
            {"pool": p.name, **{f"prefix{i}": x for i, x in enumerate(prefixes)}},
        ).fetchone()
        library, duplicated, seed_all, other = (int(v) for v in row)
        out[p.name] = {"library": library, "duplicated": duplicated, "seed_only": seed_all - duplicated, "other": other}
    return out


def hashed_by_pool(conn: sqlite3.Connection, pools: Iterable[PoolConfig]) -> dict[str, dict[str, int]]:
    """pool name -> {hashed_bytes, unhashed_bytes, hashed_files, unhashed_files}: catalogued
    inodes with a path on that pool, each counted once; "hashed" means a hash that is still
    valid for the inode's current size, mtime and ctime (what the next plan can use as is)."""
    out = {p.name: {"hashed_bytes": 0, "unhashed_bytes": 0, "hashed_files": 0, "unhashed_files": 0} for p in pools}
    rows = conn.execute(
        f"""
        SELECT pool, hashed, COALESCE(SUM(size), 0), COUNT(*) FROM (
            SELECT DISTINCT pa.pool AS pool, i.id, i.size AS size, ({hash_valid("i")} OR i.size = 0) AS hashed
            FROM paths pa JOIN inodes i ON i.id = pa.inode)
        GROUP BY pool, hashed
        """
    )
    for pool, hashed, size, files in rows:
        if pool in out:
            kind = "hashed" if hashed else "unhashed"
            out[pool][f"{kind}_bytes"] = int(size)
            out[pool][f"{kind}_files"] = int(files)
    return out


def change_marker(conn: sqlite3.Connection) -> tuple:
    """Cheap values (primary keys, small tables) that move whenever a scan, a run step or an event job may
    have changed the catalog's paths: the breakdown is recomputed when they do."""
    return tuple(
        conn.execute(
            "SELECT (SELECT MAX(id) FROM scans), (SELECT MAX(id) FROM paths), (SELECT MAX(id) FROM steps),"
            " (SELECT MAX(finished_at) FROM runs), (SELECT MAX(updated_at) FROM event_jobs)"
        ).fetchone()
    )


def _sweep(conn: sqlite3.Connection) -> SweepStatus | None:
    info, at = state.get(conn, "last_sweep")
    if not isinstance(info, dict) or at is None:
        return None
    plan = info.get("plan") or {}
    raw = [g for g in info.get("pending") or [] if isinstance(g, dict)]
    outcomes = _group_outcomes(conn, [str(g.get("group_id", "")) for g in raw[:PENDING_SHOWN]], since=at)
    pending = tuple(_pending(g, outcomes.get(str(g.get("group_id", "")))) for g in raw[:PENDING_SHOWN])
    decisions = {k: int(v) for k, v in plan.items() if not k.startswith("bytes_") and isinstance(v, int)}
    return SweepStatus(
        at=float(info.get("started_at") or at),
        seconds=_num(info.get("seconds")),
        decisions=decisions,
        bytes_to_copy=int(plan.get("bytes_to_copy") or 0),
        bytes_freed=int(plan.get("bytes_freed") or 0),
        pending=pending,
        pending_total=len(raw),
        blocked=_blocked_by_pool(raw),
    )


def _blocked_by_pool(raw: list[dict[str, Any]]) -> dict[str, tuple[int, int | None]]:
    """Every blocked group of the sweep by source pool: (count, payload bytes; None if one has no size).
    From the whole pending list: the page shows only the first PENDING_SHOWN groups, the pool
    cards must not count only those."""
    out: dict[str, tuple[int, int | None]] = {}
    for g in raw:
        if g.get("action") != "blocked" or (pool := _str(g.get("source_pool"))) is None:
            continue
        n, total = out.get(pool, (0, 0))
        size = _int(g.get("payload_bytes"))
        out[pool] = (n + 1, None if total is None or size is None else total + size)
    return out


def _last_event(conn: sqlite3.Connection) -> EventPlan | None:
    info, at = state.get(conn, "last_event_plan")
    if not isinstance(info, dict) or at is None:
        return None
    raw = [g for g in info.get("groups") or [] if isinstance(g, dict)][:PENDING_SHOWN]
    outcomes = _group_outcomes(conn, [str(g.get("group_id", "")) for g in raw], since=at)
    return EventPlan(
        at=at,
        job=_int(info.get("job")),
        applied="applied" in info,
        note=_str(info.get("note")),
        groups=tuple(_pending(g, outcomes.get(str(g.get("group_id", "")))) for g in raw),
    )


def _pending(g: dict[str, Any], outcome: tuple[str, str | None] | None) -> PendingGroup:
    names = g.get("names") or []
    return PendingGroup(
        group_id=str(g.get("group_id", "")),
        action=str(g.get("action", "")),
        reason=str(g.get("reason", "")),
        names=tuple(str(n) for n in names) if isinstance(names, list) else (str(names),),
        source_pool=_str(g.get("source_pool")),
        target_pool=_str(g.get("target_pool")),
        payload_bytes=_int(g.get("payload_bytes")),
        bytes_to_copy=_int(g.get("bytes_to_copy")),
        bytes_freed=_int(g.get("bytes_freed")),
        outcome=outcome[0] if outcome else None,
        outcome_reason=outcome[1] if outcome else None,
    )


def _group_outcomes(conn: sqlite3.Connection, group_ids: list[str], since: float) -> dict[str, tuple[str, str | None]]:
    out: dict[str, tuple[str, str | None]] = {}
    for i in range(0, len(group_ids), 500):
        chunk = group_ids[i : i + 500]
        rows = conn.execute(
            f"SELECT group_id, status, reason FROM group_state WHERE updated_at >= ? "
            f"AND group_id IN ({','.join('?' * len(chunk))})",
            (since, *chunk),
        )
        out.update({r[0]: (r[1], r[2]) for r in rows})
    return out


def _run(r) -> RunStatus:
    s = r.summary or {}
    return RunStatus(
        id=r.id,
        status=r.status,
        trigger=r.trigger,
        started_at=r.started_at,
        finished_at=r.finished_at,
        bytes_copied=_int(s.get("bytes_copied")) or 0,
        bytes_freed=_int(s.get("bytes_freed")) or 0,
        groups_done=len(s.get("groups_done") or ()),
        groups_failed=len(failed_not_paused(s)),  # a paused group (resume finishes it) is not a failed one
        bytes_freed_at_least=s.get("bytes_freed_at_least") is True,
        orphans_held=(_int(s.get("orphans_held")) or 0) if "orphans_held" in s else None,
        orphans_failed=_int(s.get("orphans_failed")) or 0,
        bytes_held=_int(s.get("bytes_held")) or 0,
    )


def totals(conn: sqlite3.Connection, sums: tuple[int, int, int] | None = None) -> Totals:
    """Whole-history numbers; ``sums`` is a (possibly cached) catalog_sums() result."""
    runs_by_status = dict(conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
    copied = freed = 0
    for (summary,) in conn.execute("SELECT summary FROM runs WHERE summary IS NOT NULL"):
        try:
            s = json.loads(summary)
        except ValueError:
            continue
        copied += _int(s.get("bytes_copied")) or 0
        freed += _int(s.get("bytes_freed")) or 0
    groups = dict(conn.execute("SELECT status, COUNT(*) FROM group_state GROUP BY status").fetchall())
    catalog_bytes, hashed_bytes, hashed_files = sums if sums is not None else catalog_sums(conn)
    return Totals(
        runs_by_status=runs_by_status,
        bytes_copied=copied,
        bytes_freed=freed,
        groups_by_state=groups,
        catalog_bytes=catalog_bytes,
        hashed_bytes=hashed_bytes,
        hashed_files=hashed_files,
    )


def catalog_sums(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(bytes catalogued, bytes with a valid hash, files with a valid hash) in one pass over
    the inodes (a full scan beats the partial hash index here: ~0.1 s per 300k inodes)."""
    row = conn.execute(
        f"SELECT COALESCE(SUM(size), 0), COALESCE(SUM(CASE WHEN {hash_valid()} THEN size END), 0),"
        f" COALESCE(SUM({hash_valid()}), 0) FROM inodes"
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


# ---------------------------------------------------------------------------- qbhook status (CLI)

STUCK_AFTER_S = 600
# Small tables `status` and `queue` read whole; their integrity is cheap to check (the big
# paths/inodes tables are not checked: seconds per GB, and scan rebuilds them anyway).
CHECKED_TABLES = ("event_jobs", "runs", "run_plans", "steps", "group_state", "state")


def report(cfg: Config, catalog) -> dict:
    """What ``qbhook status`` prints: queue, server health, last sweep, runs, pools, catalog, problems."""
    # Long on purpose: gathers the one document `status` prints, a few lines per part, in print order.
    with reading(cfg.catalog):
        conn = catalog.conn
        check_tables(conn, cfg.catalog, CHECKED_TABLES)
        sweep_info, sweep_at = state.get(conn, "last_sweep")
        runs = Journal(conn).runs(limit=5)
        counts = JobQueue(conn).counts()
        unfinished = [r.id for r in Journal(conn).unfinished_runs()]
        tracked = Journal(conn).leftover_tracked()
        leftover_views = [v["path"] for _sid, v, why in tracked if why is None and "waits_for" not in v]
        # ...and those a torrent may still write (``leftovers.INCOMPLETE_USER``): no run removes them yet.
        kept = [
            {"path": v["path"], "torrent": v["waits_for"] or None}
            for _sid, v, why in tracked
            if why is None and "waits_for" in v
        ]
        waiting = [{"path": v["path"], "reason": why} for _sid, v, why in tracked if why is not None]
        orphans = last_orphans(conn)
        catalog_counts = catalog.counts()
        hashed = hashed_by_pool(conn, cfg.pools)
    pools = pool_facts(cfg, hashed)
    server = server_health(cfg.server)
    with reading(cfg.catalog):
        problems = needs_person(cfg, conn, pools=pools, server=server, now=time.time())
    data = {
        "healthy": not problems,
        "problems": problems,
        "server": server,
        "queue": counts,
        "last_sweep": {
            "at": sweep_at,
            "plan": sweep_info.get("plan") if sweep_info else None,
            "pending": sweep_info.get("pending", []) if sweep_info else [],
            # incremental sweeps: whether it re-planned every group, and how many groups and why
            "full": sweep_info.get("full") if sweep_info else None,
            "replanned": sweep_info.get("replanned") if sweep_info else None,
        },
        "recent_runs": [
            {
                "id": r.id,
                "status": r.status,
                "trigger": r.trigger,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "summary": r.summary,
            }
            for r in runs
        ],
        "unfinished_runs": unfinished,
        "leftover_views": leftover_views,  # views of rolled-back groups, removed by the next apply/sweep
        # ...that a torrent not complete on them may still write (its name, None: not known): kept
        # until it completes on them or goes, then removed or no longer tracked.
        "leftover_views_kept": kept,
        "leftover_views_waiting": waiting,  # ...whose source is gone or does not verify: a person's (problems)
        # The last `qbhook orphans` run's totals (None: it never ran; nothing else computes them).
        "orphans": None
        if orphans is None
        else {
            "at": orphans.at,
            "age_seconds": max(time.time() - orphans.at, 0.0),
            "reclaimable": orphans.reclaimable,
            "library": orphans.library,
            "quarantine": orphans.held,
            "pools": {k: dataclasses.asdict(v) for k, v in orphans.pools.items()},
        },
        "pools": pools,
        "catalog": catalog_counts,
    }

    return data


def pool_facts(cfg: Config, hashed: dict[str, dict[str, int]] | None = None) -> dict[str, dict]:
    """pool name -> its path, role and size and free space, or why they cannot be read."""
    pools = {}
    for p in cfg.pools:
        extra = (hashed or {}).get(p.name, {})
        try:
            space = space_at(p.path)[0]
            pools[p.name] = {"path": str(p.path), "role": p.role, "size": space.size, "free": space.avail, **extra}
        except (OSError, FolderRefused) as e:
            why = e.strerror if isinstance(e, OSError) else str(e)
            pools[p.name] = {"path": str(p.path), "role": p.role, "error": why, **extra}
    return pools


def needs_person(
    cfg: Config, conn: sqlite3.Connection, *, pools: dict[str, dict], server: dict | None, now: float
) -> list[str]:
    """What needs a person, one line each: the problems ``qbhook status`` prints (exit 1) and the
    status page's "Needs you" section shows. One source, so the two cannot disagree (R35: a leftover
    view that may be the last copy was in the first only). ``pools``: ``pool_facts``; ``server``:
    what the configured server's /healthz said (``server_health``), or the page's own worker's
    report (``served_health``), or None when not known."""
    from qbhook.move.executor import VIEW_CHANGED

    _info, sweep_at = state.get(conn, "last_sweep")
    stuck = JobQueue(conn).ready_since(STUCK_AFTER_S, now=now)
    # Views whose source is gone or does not verify: kept (maybe the last copy), not tried
    # again, a person's to look at (move.leftovers).
    waiting = [why for _sid, _v, why in Journal(conn).leftover_waiting()]  # each why names its view
    # Groups the executor's view backstop stopped (something wrote into a view file: a library
    # file on a promote); they stay a problem until a person re-runs them to done.
    view_changed = conn.execute(
        "SELECT group_id, reason FROM group_state WHERE status = 'failed' AND reason LIKE ? ORDER BY group_id",
        ("%" + VIEW_CHANGED + "%",),
    ).fetchall()
    problems = [f"group {gid} stopped: {reason}" for gid, reason in view_changed]
    # Torrents a crashed run left stopped between their relocation and their start (R65): they
    # stay stopped until resume finishes the run, and "unfinished" alone never said so.
    problems += stopped_until_resume(conn)
    # Failed repairs that left their torrent otherwise than found (stopped, or at another save
    # path): the clause the executor wrote last says how and what to do (``_repair_state_back``);
    # they stay a problem until the group runs again (a repair retried replaces its row).
    problems += [f"repair {gid}: {clause}" for gid, clause in _not_as_found(conn)]
    # A pool that cannot be read (not mounted, swapped): nothing it holds can be planned or moved.
    problems += [f"pool {name} ({v['path']}): {v['error']}" for name, v in pools.items() if "error" in v]
    problems += [
        f"leftover view kept, maybe the last copy of its content: {why} (remove or move it yourself once you know)"
        for why in waiting
    ]
    # What the purge of holding refused and notified (a clock set wrong, a kept last copy, a holding
    # folder renamed away): each a person's until a purge no longer finds it (R58).
    problems += holding_needs_person(conn)
    server = server or {}
    late = sweep_overdue(server, sweep_at, cfg.server.sweep_interval, now)
    # A server unhealthy only for an overdue sweep says what ``late`` says: one line, not two.
    if server.get("answered") and not server.get("ok") and not (late and SWEEPER_STUCK in server["reason"]):
        problems.append(f"server unhealthy: {server['reason']} (its log says why)")
    if stuck and not server.get("answered", True):
        # With a server answering, waiting jobs are explained (its worker is busy with a
        # long move, or it says why it is not healthy above).
        problems.append(
            f"{stuck} job(s) ready for over {STUCK_AFTER_S // 60} min and nothing processes them "
            "(is `qbhook serve` running?)"
        )
    return problems + late


def stopped_until_resume(conn: sqlite3.Connection) -> list[str]:
    """One line per group of an unfinished run no live process owns (``journal.owner_gone``)
    naming each torrent its relocation left stopped for a start step not done, that ran when
    found (``Journal.waiting_starts``). A live run's are not named: its starts follow its
    verify_group, and a group's relocations can take hours."""
    journal = Journal(conn)
    lines = []
    for r in journal.unfinished_runs():
        if not owner_gone(r):
            continue
        by_group: dict[str, list[str]] = {}
        for w in journal.waiting_starts(r):
            by_group.setdefault(w.group_id, []).append(f"{w.name} ({w.torrent[:8]})")
        lines += [
            f"{', '.join(names)} stopped by qbhook until `qbhook resume` finishes run {r.id} (group {gid})"
            for gid, names in by_group.items()
        ]
    return lines


def _not_as_found(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(group id, its ``decide.repair.NOT_AS_FOUND`` clause) of each failed repair group whose
    reason ends with one.

    Matched as the executor writes it (``_repair_state_back``: ``"; NOT AS FOUND: ..."``, last,
    case and all): ``instr`` and ``rindex`` agree where ``LIKE`` (ASCII case-insensitive) and
    ``index`` did not, and a move whose reason names a path holding the words (a release called
    "Not As Found") is no repair line, so only groups their run's plan says are repairs."""
    from qbhook.decide.repair import NOT_AS_FOUND

    marker = f"; {NOT_AS_FOUND}: "
    rows = conn.execute(
        # The run's plan in run_plans, or in runs for a run journaled before that table (schema.RUN_PLANS_DDL).
        "SELECT gs.group_id, gs.reason FROM group_state gs JOIN runs r ON r.id = gs.run "
        "LEFT JOIN run_plans p ON p.run = r.id "
        "WHERE gs.status = 'failed' AND instr(gs.reason, ?) > 0 AND json_valid(coalesce(p.plan, r.plan)) "
        "AND EXISTS (SELECT 1 FROM json_each(coalesce(p.plan, r.plan), '$.groups') g "
        "WHERE json_extract(g.value, '$.group_id') = gs.group_id AND json_extract(g.value, '$.action') = 'repair') "
        "ORDER BY gs.group_id",
        (marker,),
    ).fetchall()
    # The last one: the clause is last, and the failure before it may quote a path holding the marker.
    return [(gid, reason[reason.rindex(marker) + 2 :]) for gid, reason in rows]


def served_health(health) -> dict:
    """``needs_person``'s ``server`` from this process's own worker health (``worker.Health``): the
    page is served by the server it would ask. Its full reason: the page is behind credentials."""
    return {
        "answered": True,
        "ok": health.ok,
        "reason": health.reason,
        "sweeper": health.sweeper,
        "sweeper_since": health.sweeper_since,
    }


def server_health(srv) -> dict:
    """Ask the configured server's /healthz (no credentials needed) how its worker does.

    Whatever holds the port is not trusted to speak HTTP: an SSH banner or a TLS port answers
    with a status line urllib cannot read (``http.client.HTTPException``, neither an OSError nor
    a ValueError); that is "not qbhook", one line, never a traceback."""
    import http.client
    import urllib.error
    import urllib.request

    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(srv.listen, srv.listen)
    url = f"http://{f'[{host}]' if ':' in host else host}:{srv.port}/healthz"
    out = {"url": url, "answered": False, "ok": False, "reason": ""}
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            body, code = r.read(4096), r.status
    except urllib.error.HTTPError as e:
        body, code = e.read(4096), e.code
    except (OSError, ValueError) as e:
        out["reason"] = str(getattr(e, "reason", None) or e)
        return out
    except http.client.HTTPException as e:
        out["reason"] = f"something that is not an HTTP server holds port {srv.port} ({type(e).__name__})"
        return out
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or code not in (200, 503):
        out["reason"] = f"HTTP {code} from something that is not qbhook"
        return out
    out.update(
        answered=True,
        ok=code == 200 and doc.get("ok") is True,
        reason=str(doc.get("worker") or doc.get("error") or "ok"),
        sweeper=doc.get("sweeper") is True,
        sweeper_since=_time_or_none(doc.get("sweeper_since")),
    )
    return out


def _time_or_none(value) -> float | None:
    """A time another process sent, or None (absent, or not a number a clock can hold)."""
    try:
        return finite(value, 0.0, MAX_INT)
    except ValueError:
        return None


def sweep_overdue(server: dict, sweep_at: float | None, interval: float, now: float) -> list[str]:
    """The problem when the answering server runs a sweeper and neither its last successful sweep
    nor its start (``sweeper_since``: a restarted sweeper sweeps first one interval on) is within
    2 x ``server.sweep_interval``: a sweeper that fails (health says so too) or hangs. The safety
    net for the events intake missed; no sweep recorded yet by a server that does not say when its
    sweeper started is no problem (a new catalog)."""
    if not (server.get("answered") and server.get("sweeper")):
        return []
    late = overdue(sweep_at, server.get("sweeper_since"), interval, now)
    return [late] if late else []


def overdue(sweep_at: float | None, started: float | None, interval: float, now: float) -> str | None:
    """The rule of ``sweep_overdue``, and the one line saying it, or None: ``qbhook status`` applies
    it to the catalog's last sweep, the server's health (``WorkerHealth.report``) to its sweeper's
    (R35: a hung sweeper left /healthz at 200; only `qbhook status` said so)."""
    since = max((t for t in (sweep_at, started) if t is not None), default=None)
    if since is None or now - since <= 2 * interval:
        return None
    limit = f"over twice server.sweep_interval ({interval / 3600:.1f} h)"
    if since == sweep_at:
        what = f"last successful sweep {(now - since) / 3600:.1f} h ago, {limit}"
    else:
        what = f"no successful sweep since the sweeper started {(now - since) / 3600:.1f} h ago, {limit}"
    return f"{what}: {SWEEPER_STUCK} (the server's log says why)"


SWEEPER_STUCK = "the sweeper fails or hangs"


# ---------------------------------------------------------------------------- secrets


# Field names that hold secrets even where a config dataclass forgot repr=False: apprise
# notification URLs embed tokens and passwords, so every ``urls`` list counts.
_SECRET_FIELD = re.compile(r"password|token|secret|api_?key|^urls$", re.IGNORECASE)


def secrets_of(cfg: Any) -> frozenset[str]:
    """Every secret value in the configuration: the fields declared ``repr=False``
    (passwords, tokens) and fields named like secrets, found by walking the dataclasses."""

    def walk(obj: Any) -> Iterator[str]:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if not f.repr or (_SECRET_FIELD.search(f.name) and not f.name.endswith(("_env", "_file"))):
                    yield from _strings(value)
                else:
                    yield from walk(value)
        elif isinstance(obj, (tuple, list)):
            for item in obj:
                yield from walk(item)

    return frozenset(s for s in walk(cfg) if s)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (tuple, list, frozenset, set)):
        for v in value:
            yield from _strings(v)


# A secret at least this long is blanked wherever it occurs, even inside a longer word or number.
REDACT_ANYWHERE_LEN = 8


def redactor(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function that blanks every secret inside a string (longest first, so a secret
    containing another is blanked whole). Applied to every string a view prints: an error
    message or a torrent name that happens to contain a token must not show it.

    A short secret is blanked only where it stands as a token of its own, not inside a
    longer word or number. Blanking it inside every match breaks the page: a password
    "1000" turned "1000.0" into "********.0", and a one-character secret would blank that
    character everywhere. The rule: a short secret is blanked unless a letter, a digit or
    '_' touches it, or a '.' or ',' joins a digit at its edge to another digit (the "."
    of "1000.0", the "," of "1,000"). Every other neighbour separates: a space, a quote,
    ':', '@', '/', '=', '&', and a '.' or ',' next to a letter or at the end
    ("https://s3cr.ntfy.example", "auth=s3cr,scope=all", "password 1000."). A short secret
    inside a longer word or number ("1000" in "10000", "1000.0" or "2,1000") stays, because
    it cannot be told apart from ordinary text. The price, kept: a secret "1" still blanks
    a count of 1 standing alone. Secrets of REDACT_ANYWHERE_LEN characters or more are
    blanked everywhere, as before."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    short = {s: _standalone(s) for s in ordered if len(s) < REDACT_ANYWHERE_LEN}

    def redact(text: str) -> str:
        for s in ordered:
            if s not in text:
                continue
            pattern = short.get(s)
            text = text.replace(s, "********") if pattern is None else pattern.sub("********", text)
        return text

    return redact


def _standalone(secret: str) -> re.Pattern[str]:
    """``secret`` where it stands as a token of its own (the rule in ``redactor``)."""
    # A '.' or ',' joins a number only between two digits: it counts against the secret only
    # where the secret's own edge character is a digit, so "1.p4ss" and "s3cr.ntfy" blank.
    before = r"(?<!\w)" + (r"(?<!\d[.,])" if secret[0].isdigit() else "")
    after = r"(?!\w)" + (r"(?![.,]\d)" if secret[-1].isdigit() else "")
    return re.compile(before + re.escape(secret) + after)


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None
