"""A durable job queue in SQLite, between intake (fast, must never lose an event) and the
workers (slow, may crash).

Senders never retry (*arr logs a failed delivery and forgets it), so a job must be on disk
before the sender hears 202: every write commits before returning, and the connection is
expected to run WAL with synchronous=FULL.

States: pending -> running -> done | (pending again, with backoff) | dead.
At most one *pending* job exists per coalesce key (a partial unique index enforces it even
across processes); new events for that key merge into it. A running job is never merged
into: its worker may already be past the point where new facts would matter.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

from qbhook.errors import QueueError
from qbhook.events.model import Event

QUEUE_DDL = """
CREATE TABLE IF NOT EXISTS event_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: ids are shown to senders
    coalesce_key  TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'dead')),
    hashes        TEXT    NOT NULL DEFAULT '[]',      -- JSON lists, merged on coalescing
    paths         TEXT    NOT NULL DEFAULT '[]',
    kinds         TEXT    NOT NULL DEFAULT '[]',
    sources       TEXT    NOT NULL DEFAULT '[]',
    events        TEXT    NOT NULL DEFAULT '[]',      -- the first MAX_KEPT_EVENTS events
    event_count   INTEGER NOT NULL DEFAULT 1,
    truncated     INTEGER NOT NULL DEFAULT 0,         -- 1: lists were capped, look wider
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    not_before    REAL    NOT NULL,
    created_at    REAL    NOT NULL,
    updated_at    REAL    NOT NULL,
    claimed_at    REAL,
    heartbeat_at  REAL,
    worker_id     TEXT,
    finished_at   REAL,
    result        TEXT,
    last_error    TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS event_jobs_one_pending_per_key
    ON event_jobs (coalesce_key) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS event_jobs_ready ON event_jobs (state, not_before, created_at);
"""

STATES = ("pending", "running", "done", "dead")
MAX_KEPT_EVENTS = 100
MAX_JOB_HASHES = 2000
MAX_JOB_PATHS = 20000

_COLUMNS = (
    "id, coalesce_key, state, hashes, paths, kinds, sources, events, event_count, truncated, "
    "attempts, max_attempts, not_before, created_at, updated_at, claimed_at, heartbeat_at, "
    "worker_id, finished_at, result, last_error"
)


@dataclass(frozen=True)
class Job:
    id: int
    coalesce_key: str
    state: str
    hashes: tuple[str, ...]
    paths: tuple[str, ...]
    kinds: tuple[str, ...]
    sources: tuple[str, ...]
    events: tuple[Event, ...]
    event_count: int
    truncated: bool
    attempts: int
    max_attempts: int
    not_before: float
    created_at: float
    updated_at: float
    claimed_at: float | None
    heartbeat_at: float | None
    worker_id: str | None
    finished_at: float | None
    result: str | None
    last_error: str | None

    @classmethod
    def _from_row(cls, row: Sequence) -> Job:
        (id_, key, state, hashes, paths, kinds, sources, events, count, truncated, *rest) = row
        return cls(
            id_,
            key,
            state,
            tuple(json.loads(hashes)),
            tuple(json.loads(paths)),
            tuple(json.loads(kinds)),
            tuple(json.loads(sources)),
            tuple(Event.from_dict(e) for e in json.loads(events)),
            count,
            bool(truncated),
            *rest,
        )


class JobQueue:
    """Queue operations over one connection; safe to share between threads of a process.

    The connection must not be inside a transaction when a method is called: each method
    runs its own ``BEGIN IMMEDIATE`` transaction and commits before returning.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        max_attempts: int = 8,
        backoff_base_s: float = 15.0,
        backoff_cap_s: float = 3600.0,
        clock=time.time,
    ):
        self._conn = conn
        self._lock = threading.RLock()
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._clock = clock

    # -- intake ----------------------------------------------------------------------

    def enqueue(self, event: Event, *, now: float | None = None) -> tuple[int, bool]:
        """Store ``event`` durably; return (job_id, coalesced).

        Merging never moves ``not_before``: a job backing off after failures keeps its
        delay, so a storm of events cannot turn backoff into a busy loop.
        """
        if not event.is_work:
            raise QueueError(f"a {event.kind!r} event is not work; it must not be queued")
        now = self._now(now)
        key = event.coalesce_key()
        with self._write() as c:
            row = c.execute(
                f"SELECT {_COLUMNS} FROM event_jobs WHERE coalesce_key = ? AND state = 'pending'",
                (key,),
            ).fetchone()
            if row is not None:
                job = Job._from_row(row)
                self._store_merge(c, job, _Parts.of_event(event), now)
                return job.id, True
            parts = _Parts.of_event(event)
            cur = c.execute(
                "INSERT INTO event_jobs (coalesce_key, hashes, paths, kinds, sources, events,"
                " event_count, truncated, max_attempts, not_before, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                (key, *parts.columns(), self.max_attempts, now, now, now),
            )
            return int(cur.lastrowid), False

    # -- workers ---------------------------------------------------------------------

    def claim(self, worker_id: str, now: float | None = None) -> Job | None:
        """Take the oldest ready job (earliest created_at whose not_before has passed)."""
        now = self._now(now)
        with self._write() as c:
            row = c.execute(
                "SELECT id FROM event_jobs WHERE state = 'pending' AND not_before <= ?"
                " ORDER BY created_at, id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            c.execute(
                "UPDATE event_jobs SET state = 'running', worker_id = ?, claimed_at = ?,"
                " heartbeat_at = ?, attempts = attempts + 1, updated_at = ? WHERE id = ?",
                (worker_id, now, now, now, row[0]),
            )
            return self._get(c, row[0])

    def heartbeat(self, job_id: int, *, worker_id: str | None = None, now: float | None = None) -> None:
        """Tell requeue_stale this long-running job's worker is alive (moves take hours)."""
        now = self._now(now)
        with self._write() as c:
            self._running(c, job_id, worker_id)
            c.execute("UPDATE event_jobs SET heartbeat_at = ? WHERE id = ?", (now, job_id))

    def complete(self, job_id: int, result: str, *, worker_id: str | None = None, now: float | None = None) -> None:
        now = self._now(now)
        with self._write() as c:
            self._running(c, job_id, worker_id)
            c.execute(
                "UPDATE event_jobs SET state = 'done', result = ?, finished_at = ?, updated_at = ?"
                " WHERE id = ?",
                (result, now, now, job_id),
            )

    def fail(self, job_id: int, error: str, *, worker_id: str | None = None, now: float | None = None) -> str:
        """Record a failed attempt; retry after an exponential delay or, out of attempts,
        park the job as 'dead' with the error. Returns the job's new state."""
        now = self._now(now)
        with self._write() as c:
            job = self._running(c, job_id, worker_id)
            if job.attempts >= job.max_attempts:
                self._bury(c, job, error, now)
                return "dead"
            self._back_to_pending(c, job, self.backoff(job.attempts) + now, job.attempts, error, now)
            return "pending"

    def backoff(self, attempts: int) -> float:
        return min(self.backoff_base_s * 2 ** max(attempts - 1, 0), self.backoff_cap_s)

    def requeue_stale(self, older_than_s: float, *, now: float | None = None) -> list[int]:
        """Return jobs whose worker went silent (killed, crashed) to pending.

        The interrupted run counts as an attempt, so a job that kills its worker every
        time ends up dead instead of looping forever.
        """
        now = self._now(now)
        cutoff = now - older_than_s
        requeued: list[int] = []
        with self._write() as c:
            rows = c.execute(
                f"SELECT {_COLUMNS} FROM event_jobs WHERE state = 'running'"
                " AND COALESCE(heartbeat_at, claimed_at) < ? ORDER BY id",
                (cutoff,),
            ).fetchall()
            for job in map(Job._from_row, rows):
                error = f"worker {job.worker_id!r} stopped without finishing (no heartbeat for {older_than_s:g} s)"
                if job.attempts >= job.max_attempts:
                    self._bury(c, job, error, now)
                else:
                    self._back_to_pending(c, job, now, job.attempts, error, now)
                    requeued.append(job.id)
        return requeued

    # -- operators -------------------------------------------------------------------

    def retry_dead(self, job_id: int, *, now: float | None = None) -> int:
        """Give a dead job a fresh set of attempts; returns the id of the job that will run
        (another pending job for the same key absorbs it)."""
        now = self._now(now)
        with self._write() as c:
            job = self._get(c, job_id)
            if job is None or job.state != "dead":
                raise QueueError(f"job {job_id} is {'unknown' if job is None else job.state}, not dead")
            return self._back_to_pending(c, job, now, 0, job.last_error, now)

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._get(self._conn, job_id)

    def list(self, states: Sequence[str] | None = None, limit: int = 100) -> list[Job]:
        """Newest first."""
        sql = f"SELECT {_COLUMNS} FROM event_jobs"
        args: list = []
        if states:
            unknown = set(states) - set(STATES)
            if unknown:
                raise QueueError(f"unknown job state(s): {', '.join(sorted(unknown))}")
            sql += f" WHERE state IN ({', '.join('?' * len(states))})"
            args += list(states)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, int(limit))).fetchall()
        return [Job._from_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) FROM event_jobs GROUP BY state").fetchall()
        return {state: 0 for state in STATES} | dict(rows)

    def prune(self, older_than_s: float, *, now: float | None = None) -> int:
        """Delete finished ('done') jobs older than ``older_than_s``; dead jobs stay."""
        cutoff = self._now(now) - older_than_s
        with self._write() as c:
            cur = c.execute("DELETE FROM event_jobs WHERE state = 'done' AND finished_at < ?", (cutoff,))
            return cur.rowcount

    # -- internals -------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else float(now)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            c = self._conn
            if c.in_transaction:
                raise QueueError(
                    "the queue's connection is inside a transaction; give the queue its own connection"
                )
            # IMMEDIATE takes the write lock up front: two processes cannot both read "no
            # pending job for this key" and then both insert.
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.rollback()
                raise
            c.commit()

    @staticmethod
    def _get(c: sqlite3.Connection, job_id: int) -> Job | None:
        row = c.execute(f"SELECT {_COLUMNS} FROM event_jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else Job._from_row(row)

    def _running(self, c: sqlite3.Connection, job_id: int, worker_id: str | None) -> Job:
        job = self._get(c, job_id)
        if job is None:
            raise QueueError(f"job {job_id} does not exist")
        if job.state != "running":
            raise QueueError(f"job {job_id} is {job.state}, not running")
        if worker_id is not None and job.worker_id != worker_id:
            # It was requeued as stale and another worker owns it now.
            raise QueueError(f"job {job_id} belongs to worker {job.worker_id!r}, not {worker_id!r}")
        return job

    @staticmethod
    def _bury(c: sqlite3.Connection, job: Job, error: str | None, now: float) -> None:
        c.execute(
            "UPDATE event_jobs SET state = 'dead', last_error = ?, finished_at = ?, updated_at = ?,"
            " worker_id = NULL WHERE id = ?",
            (error, now, now, job.id),
        )

    def _back_to_pending(
        self, c: sqlite3.Connection, job: Job, not_before: float, attempts: int, error: str | None, now: float
    ) -> int:
        other = c.execute(
            f"SELECT {_COLUMNS} FROM event_jobs WHERE coalesce_key = ? AND state = 'pending'",
            (job.coalesce_key,),
        ).fetchone()
        if other is None:
            c.execute(
                "UPDATE event_jobs SET state = 'pending', not_before = ?, attempts = ?, last_error = ?,"
                " worker_id = NULL, claimed_at = NULL, heartbeat_at = NULL, finished_at = NULL,"
                " updated_at = ? WHERE id = ?",
                (not_before, attempts, error, now, job.id),
            )
            return job.id
        # Newer events for the key already wait in another pending job: fold this one in
        # (keeping the earlier created_at, the later not_before and the higher attempts).
        target = Job._from_row(other)
        self._store_merge(
            c,
            target,
            _Parts.of_job(job),
            now,
            created_at=min(target.created_at, job.created_at),
            not_before=max(target.not_before, not_before),
            attempts=max(target.attempts, attempts),
            last_error=error,
        )
        c.execute(
            "UPDATE event_jobs SET state = 'done', result = ?, finished_at = ?, updated_at = ?,"
            " worker_id = NULL WHERE id = ?",
            (f"merged into job {target.id}", now, now, job.id),
        )
        return target.id

    @staticmethod
    def _store_merge(c: sqlite3.Connection, target: Job, extra: _Parts, now: float, **overrides) -> None:
        merged = _Parts.of_job(target).merge(extra)
        values = dict(zip(_Parts.COLUMN_NAMES, merged.columns()))
        values["event_count"] = target.event_count + extra.count
        values["updated_at"] = now
        values.update(overrides)
        assignments = ", ".join(f"{name} = ?" for name in values)
        c.execute(f"UPDATE event_jobs SET {assignments} WHERE id = ?", (*values.values(), target.id))


@dataclass(frozen=True)
class _Parts:
    """The mergeable content of a job."""

    hashes: tuple[str, ...]
    paths: tuple[str, ...]
    kinds: tuple[str, ...]
    sources: tuple[str, ...]
    events: tuple[dict, ...]
    truncated: bool
    count: int

    COLUMN_NAMES = ("hashes", "paths", "kinds", "sources", "events", "truncated")

    @classmethod
    def of_event(cls, event: Event) -> _Parts:
        return cls(event.hashes, event.paths, (event.kind,), (event.source,), (event.to_dict(),), False, 1)._capped()

    @classmethod
    def of_job(cls, job: Job) -> _Parts:
        return cls(
            job.hashes,
            job.paths,
            job.kinds,
            job.sources,
            tuple(e.to_dict() for e in job.events),
            job.truncated,
            job.event_count,
        )

    def merge(self, other: _Parts) -> _Parts:
        def union(a: tuple, b: tuple) -> tuple:
            return tuple(dict.fromkeys(a + b))

        return _Parts(
            union(self.hashes, other.hashes),
            union(self.paths, other.paths),
            union(self.kinds, other.kinds),
            union(self.sources, other.sources),
            (self.events + other.events)[:MAX_KEPT_EVENTS],
            self.truncated or other.truncated,
            self.count + other.count,
        )._capped()

    def _capped(self) -> _Parts:
        over = len(self.hashes) > MAX_JOB_HASHES or len(self.paths) > MAX_JOB_PATHS
        if not over:
            return self
        return _Parts(
            self.hashes[:MAX_JOB_HASHES],
            self.paths[:MAX_JOB_PATHS],
            self.kinds,
            self.sources,
            self.events,
            True,
            self.count,
        )

    def columns(self) -> tuple:
        dump = lambda v: json.dumps(list(v), ensure_ascii=False)  # noqa: E731
        return (
            dump(self.hashes),
            dump(self.paths),
            dump(self.kinds),
            dump(self.sources),
            dump(self.events),
            int(self.truncated),
        )
