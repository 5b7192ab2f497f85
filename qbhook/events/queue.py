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

import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

from qbhook import notify
from qbhook.errors import QueueError
from qbhook.events._job import COLUMNS, Job, Parts, text
from qbhook.events.model import Event

__all__ = ["QUEUE_DDL", "STATES", "Job", "JobQueue"]

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
                f"SELECT {COLUMNS} FROM event_jobs WHERE coalesce_key = ? AND state = 'pending'",
                (key,),
            ).fetchone()
            if row is not None:
                job = Job.from_row(row)
                self._store_merge(c, job, Parts.of_event(event), now)
                return job.id, True
            parts = Parts.of_event(event)
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
                (text(worker_id), now, now, now, row[0]),
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
                (text(result), now, now, job_id),
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
                f"SELECT {COLUMNS} FROM event_jobs WHERE state = 'running'"
                " AND COALESCE(heartbeat_at, claimed_at) < ? ORDER BY id",
                (cutoff,),
            ).fetchall()
            for job in map(Job.from_row, rows):
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
        sql = f"SELECT {COLUMNS} FROM event_jobs"
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
        return [Job.from_row(r) for r in rows]

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
        row = c.execute(f"SELECT {COLUMNS} FROM event_jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else Job.from_row(row)

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
            (text(error), now, now, job.id),
        )
        notify.dead_letter(job, error)

    def _back_to_pending(
        self, c: sqlite3.Connection, job: Job, not_before: float, attempts: int, error: str | None, now: float
    ) -> int:
        other = c.execute(
            f"SELECT {COLUMNS} FROM event_jobs WHERE coalesce_key = ? AND state = 'pending'",
            (job.coalesce_key,),
        ).fetchone()
        if other is None:
            c.execute(
                "UPDATE event_jobs SET state = 'pending', not_before = ?, attempts = ?, last_error = ?,"
                " worker_id = NULL, claimed_at = NULL, heartbeat_at = NULL, finished_at = NULL,"
                " updated_at = ? WHERE id = ?",
                (not_before, attempts, text(error), now, job.id),
            )
            return job.id
        # Newer events for the key already wait in another pending job: fold this one in
        # (keeping the earlier created_at, the later not_before and the higher attempts).
        target = Job.from_row(other)
        self._store_merge(
            c,
            target,
            Parts.of_job(job),
            now,
            created_at=min(target.created_at, job.created_at),
            not_before=max(target.not_before, not_before),
            attempts=max(target.attempts, attempts),
            last_error=text(error),
        )
        c.execute(
            "UPDATE event_jobs SET state = 'done', result = ?, finished_at = ?, updated_at = ?,"
            " worker_id = NULL WHERE id = ?",
            (f"merged into job {target.id}", now, now, job.id),
        )
        return target.id

    @staticmethod
    def _store_merge(c: sqlite3.Connection, target: Job, extra: Parts, now: float, **overrides) -> None:
        merged = Parts.of_job(target).merge(extra)
        values = dict(zip(Parts.COLUMN_NAMES, merged.columns()))
        values["event_count"] = target.event_count + extra.count
        values["updated_at"] = now
        values.update(overrides)
        assignments = ", ".join(f"{name} = ?" for name in values)
        c.execute(f"UPDATE event_jobs SET {assignments} WHERE id = ?", (*values.values(), target.id))
