"""A durable job queue in SQLite, between intake (fast, must never lose an event) and the
workers (slow, may crash).

Senders never retry (*arr logs a failed delivery and forgets it), so a job must be on disk
before the sender hears 202: every write commits before returning, and the connection is
expected to run WAL with synchronous=FULL.

States: pending -> running -> done | (pending again, with backoff) | dead.
A job that could not run yet (``postpone``: the executor lock is held, an unfinished run
blocks the executor) goes back to pending without its attempt counted: it did not fail.
A running job whose worker is gone goes back to pending with the interrupted run counted
as an attempt: at once when the worker is known dead (same host, its process or thread
no longer exists: ``requeue_orphaned``, run at every worker start and every minute),
otherwise once its heartbeat is older than a cutoff (workers on other hosts, in another pid
namespace, or of a container restarted under another name). A live worker beats while its
job runs (``heartbeat``; serve's worker does so every few minutes), so no cutoff takes it.
At most one *pending* job exists per coalesce key (a partial unique index enforces it even
across processes); new events for that key merge into it. A running job is never merged
into: its worker may already be past the point where new facts would matter.

Pending jobs are capped (``max_pending``, ``server.max_pending``): every event with a new key
added a row of up to ``server.max_body``, so a flood of distinct subjects filled the disk and
real events waited behind it. Past the cap an event adds no row: it is folded into the one
pending overflow job (``OVERFLOW_KEY``), which names no torrent and no file, so the worker
sweeps, reconciling whatever the folded events named. The event is still on disk (as that
job's count and kind) before the sender hears 202; a warning is logged once per episode, when
the overflow job is created (not while later events merge into it), in whichever process.
A row this qbhook cannot read (a new event kind from another version's ``qbhook hook``, or a
damaged row) is marked dead with a one-line error where it is met (``claim``, merging into it)
and the queue goes on; ``list`` shows it with that error. Times are wall time: a pending job due
further ahead than any delay this queue sets, or created in the future, was stranded by a
backward clock step, and ``claim`` makes it due now (``_unstep``).

A finished ('done') job is history: it keeps what ``qbhook queue`` shows (key, kinds, sources,
count of events, tries, result) and only the first few of the hashes and paths it named
(``Parts.finished``); a pending, running or dead job keeps everything, as it may run again.
``prune`` drops finished jobs past ``sweep.keep_history`` and the oldest past
``MAX_FINISHED_CHARS`` together, however fast a flood of events finished.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from qbhook import notify
from qbhook.catalog.db import Tx, connect, sqlite_failure
from qbhook.catalog.schema import (
    QUEUE_DDL,  # re-exported: the queue's table, for callers building one
)
from qbhook.config import ServerConfig
from qbhook.errors import LockBusy, NotADeadJob, QueueBusy, QueueError, UnreadableJob
from qbhook.events._job import COLUMNS, OVERFLOW_KEY, Job, Parts, counted, text
from qbhook.events.model import Event
from qbhook.procs import live, pid_namespace, process_state

__all__ = [
    "OVERFLOW_KEY",
    "QUEUE_DDL",
    "STATES",
    "Enqueued",
    "Job",
    "JobQueue",
    "backoff_s",
    "intake_queue",
    "worker_alive",
    "worker_id",
]

log = logging.getLogger(__name__)

MAX_PENDING = ServerConfig.max_pending  # the default: one home, the config's


STATES = ("pending", "running", "done", "dead")

# Finished jobs kept at most, in characters of their contents together (newest first): the age
# (``sweep.keep_history``) bounds them in time only, and a flood of events finishes as fast as the
# worker runs. Each holds little (``Parts.finished``: a few KB), so tens of thousands of the latest fit.
MAX_FINISHED_CHARS = 64 * 1024 * 1024
# Finished jobs deleted a transaction by ``prune``: intake waits for the write lock between them.
PRUNE_BATCH = 200

# How long intake waits for the catalog's write lock (another process's scan or sweep, the
# worker's transaction) before it answers 503: the queue's lock and SQLite's busy timeout each.
# Waitress's threads share the one intake connection, so the N-th event waiting answers after
# about N x this (2 x with the lock's own deadline): 60 s (the catalog's) made 4 events take
# minutes, past *arr's ~100 s webhook timeout, and left no thread for /healthz, failing a
# container's health probe. 5 s stays well below that even when every waitress thread waits.
INTAKE_BUSY_S = 5.0

# How far a job's times may run ahead of this process's clock before ``claim`` takes it for a
# backward clock step (``JobQueue._unstep``): well past the worker's debounce (it claims with
# ``now`` that far back) and the skew between processes, well short of a step worth noticing.
CLOCK_SLACK_S = 600.0

# Doublings past which a backoff no longer grows: far past any cap (2**62 s), far short of a
# float's limit (2**1024).
_MAX_DOUBLINGS = 62


def backoff_s(base_s: float, cap_s: float, n: int) -> float:
    """The wait after ``n`` waits in a row (0: the first): ``base_s`` doubled ``n`` times, at most
    ``cap_s``. Every backoff of the queue and the worker is this one: counts of waits in a row
    grow without end while a client or the disk stays down, and ``base_s * 2**n`` raised
    OverflowError at n = 1024 (R35: about 17 h at a 60 s cap, in the worker's except clauses)."""
    return min(base_s * 2 ** min(max(n, 0), _MAX_DOUBLINGS), cap_s)


class Enqueued(tuple):
    """What ``enqueue`` returns: ``(job_id, coalesced)``, as callers unpack it, and ``overflow``:
    the queue was full, so the event was folded into the overflow sweep job."""

    overflow: bool

    def __new__(cls, job_id: int, coalesced: bool, overflow: bool = False) -> Enqueued:
        self = super().__new__(cls, (job_id, coalesced))
        self.overflow = overflow
        return self


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
        max_pending: int = MAX_PENDING,
        clock=time.time,
        wait_s: float | None = None,
    ):
        self._conn = conn
        self._wait_s = wait_s  # None: writes wait for the queue's lock as long as it takes
        self.max_pending = max_pending
        self._lock = threading.RLock()
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._clock = clock
        self._buried: list[tuple[Job, str | None]] = []  # jobs the current _write made dead

    # -- intake ----------------------------------------------------------------------

    def enqueue(self, event: Event, *, now: float | None = None) -> Enqueued:
        """Store ``event`` durably; return (job_id, coalesced) (``Enqueued``).

        Merging never moves ``not_before``: a job backing off after failures keeps its
        delay, so a storm of events cannot turn backoff into a busy loop. A new key past
        ``max_pending`` pending jobs adds no row: the event goes to the overflow job.
        """
        if not event.is_work:
            raise QueueError(f"a {event.kind!r} event is not work; it must not be queued")
        now = self._now(now)
        key = event.coalesce_key()
        with self._write() as c:
            done = self._count_into_truncated(c, key, event, now)
            if done is not None:
                return done
            job = self._pending(c, key, now)
            if job is not None:
                self._store_merge(c, job, Parts.of_event(event), now)
                return Enqueued(job.id, True)
            if self._pending_count(c) >= self.max_pending:
                return self._overflow(c, event, now)
            return Enqueued(self._insert(c, key, Parts.of_event(event), now), False)

    def _count_into_truncated(self, c: sqlite3.Connection, key: str, event: Event, now: float) -> Enqueued | None:
        """``event`` counted into ``key``'s pending job if that is truncated (``_job.counted``),
        its capped lists neither read nor written; None: no such job, or one to read whole."""
        row = c.execute(
            "SELECT id, kinds, sources FROM event_jobs WHERE coalesce_key = ? AND state = 'pending' AND truncated",
            (key,),
        ).fetchone()
        if row is None:
            return None
        try:
            kinds, sources = counted(row[1], row[2], event)
        except UnreadableJob:
            return None  # _pending reads it and buries it, saying why
        c.execute(
            "UPDATE event_jobs SET kinds = ?, sources = ?, event_count = event_count + 1, updated_at = ? WHERE id = ?",
            (kinds, sources, now, row[0]),
        )
        return Enqueued(row[0], True)

    def _overflow(self, c: sqlite3.Connection, event: Event, now: float) -> Enqueued:
        # Only what the event was, never what it named: the row stays small however many fold in,
        # and the sweep it asks for finds every torrent and file anyway.
        parts = Parts.of_event(Event(event.source, event.kind, instance=event.instance, received_at=now))
        job = self._pending(c, OVERFLOW_KEY, now)
        if job is not None:
            self._store_merge(c, job, parts, now)
            return Enqueued(job.id, True, overflow=True)
        job_id = self._insert(c, OVERFLOW_KEY, parts, now)
        log.warning(
            "event queue full (%d pending jobs, server.max_pending): events for new torrents or files "
            "now wait in one sweep job (%d) until the worker catches up",
            self.max_pending,
            job_id,
        )
        return Enqueued(job_id, False, overflow=True)

    def _insert(self, c: sqlite3.Connection, key: str, parts: Parts, now: float) -> int:
        cur = c.execute(
            "INSERT INTO event_jobs (coalesce_key, hashes, paths, kinds, sources, events,"
            " event_count, truncated, max_attempts, not_before, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
            (key, *parts.columns(), self.max_attempts, now, now, now),
        )
        return int(cur.lastrowid)

    def _pending(self, c: sqlite3.Connection, key: str, now: float) -> Job | None:
        """The pending job for ``key`` to merge into. One this qbhook cannot read is no such job:
        it is buried (its content could never be merged or run), so that a new one can be made
        (one pending job per key), instead of every event for the key refused for good."""
        row = c.execute(
            f"SELECT {COLUMNS} FROM event_jobs WHERE coalesce_key = ? AND state = 'pending'", (key,)
        ).fetchone()
        if row is None:
            return None
        job = Job.read(row)
        if job.unreadable:
            self._bury(c, job, job.unreadable, now)
            return None
        return job

    @staticmethod
    def _pending_count(c: sqlite3.Connection) -> int:
        """Pending jobs besides the overflow job (the cap's +1)."""
        row = c.execute(
            "SELECT COUNT(*) FROM event_jobs WHERE state = 'pending' AND coalesce_key != ?", (OVERFLOW_KEY,)
        ).fetchone()
        return int(row[0])

    # -- workers ---------------------------------------------------------------------

    def claim(self, worker_id: str, now: float | None = None) -> Job | None:
        """Take the oldest ready job (earliest created_at whose not_before has passed).

        A row this qbhook cannot read is buried on the way (dead, its error saying why), in the
        same transaction: taken as the oldest every pass, it stopped every later job for good.
        """
        now = self._now(now)
        with self._write() as c:
            self._unstep(c, now)
            while True:
                row = c.execute(
                    f"SELECT {COLUMNS} FROM event_jobs WHERE state = 'pending' AND not_before <= ?"
                    " ORDER BY created_at, id LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    return None
                job = Job.read(row)
                if not job.unreadable:
                    break
                log.warning("%s; marked dead", job.unreadable)
                self._bury(c, job, job.unreadable, now)
            c.execute(
                "UPDATE event_jobs SET state = 'running', worker_id = ?, claimed_at = ?,"
                " heartbeat_at = ?, attempts = attempts + 1, updated_at = ? WHERE id = ?",
                (text(worker_id), now, now, now, job.id),
            )
            return self._get(c, job.id)

    def _unstep(self, c: sqlite3.Connection, now: float) -> None:
        """Make ready the pending jobs a backward wall-clock step left waiting in the future.

        ``not_before`` and ``created_at`` are wall time: once NTP steps the clock back N hours
        (an RTC that ran ahead), every job queued before waited N hours more, and merging never
        moves ``not_before``. No job of this queue is due later than ``backoff_cap_s`` (``fail``;
        ``postpone`` is capped to it too) nor created in the future: past those, plus
        ``CLOCK_SLACK_S`` (the worker's debounce, clocks of other processes), the clock moved,
        not the job's due time, so it is due now (and created now, or it would count as stepped
        again after its next backoff).
        """
        horizon, slack = now + self.backoff_cap_s + CLOCK_SLACK_S, now + CLOCK_SLACK_S
        # not_before >= created_at for every row this queue writes: the first test uses the index.
        cur = c.execute(
            "UPDATE event_jobs SET not_before = ?, created_at = MIN(created_at, ?)"
            " WHERE state = 'pending' AND not_before > ? AND (not_before > ? OR created_at > ?)",
            (now, now, slack, horizon, slack),
        )
        if cur.rowcount > 0:
            log.warning(
                "the clock went back: %d queued job(s) were due or created in the future; they are due now",
                cur.rowcount,
            )

    def heartbeat(self, job_id: int, *, worker_id: str | None = None, now: float | None = None) -> None:
        """Tell requeue_stale this long-running job's worker is alive (moves take hours)."""
        now = self._now(now)
        with self._write() as c:
            self._running(c, job_id, worker_id)
            c.execute("UPDATE event_jobs SET heartbeat_at = ? WHERE id = ?", (now, job_id))

    def complete(self, job_id: int, result: str, *, worker_id: str | None = None, now: float | None = None) -> None:
        now = self._now(now)
        with self._write() as c:
            self._done(c, self._running(c, job_id, worker_id), result, now)

    def fail(self, job_id: int, error: str, *, worker_id: str | None = None, now: float | None = None) -> str:
        """Record a failed attempt; retry after an exponential delay or, out of attempts,
        park the job as 'dead' with the error. Returns the job's new state."""
        now = self._now(now)
        with self._write() as c:
            job = self._running(c, job_id, worker_id)
            if job.attempts >= job.max_attempts or job.unreadable:
                self._bury(c, job, job.unreadable or error, now)
                return "dead"
            self._back_to_pending(c, job, self.backoff(job.attempts) + now, job.attempts, error, now)
            return "pending"

    def postpone(self, job_id: int, delay_s: float, *, worker_id: str | None = None, now: float | None = None) -> int:
        """Back to pending for ``delay_s`` without counting this attempt (``claim`` counted it):
        the job did not fail, something it needs was not ready, so waiting never makes it dead.
        Its last error stays. Returns the id of the job that will run (``_back_to_pending``).
        The delay is capped at ``backoff_cap_s``: later than that is a clock step to ``claim``."""
        now = self._now(now)
        with self._write() as c:
            job = self._running(c, job_id, worker_id)
            due = now + min(delay_s, self.backoff_cap_s)
            return self._back_to_pending(c, job, due, max(job.attempts - 1, 0), job.last_error, now)

    def backoff(self, attempts: int) -> float:
        return backoff_s(self.backoff_base_s, self.backoff_cap_s, attempts - 1)

    def requeue_stale(self, older_than_s: float, *, now: float | None = None) -> list[int]:
        """Return jobs whose worker went silent (killed, crashed) to pending.

        The interrupted run counts as an attempt, so a job that kills its worker every
        time ends up dead instead of looping forever.
        """
        now = self._now(now)
        cutoff = now - older_than_s
        with self._write() as c:
            rows = c.execute(
                f"SELECT {COLUMNS} FROM event_jobs WHERE state = 'running'"
                " AND COALESCE(heartbeat_at, claimed_at) < ? ORDER BY id",
                (cutoff,),
            ).fetchall()
            return [
                job.id
                for job in map(Job.read, rows)
                if self._requeue(
                    c,
                    job,
                    f"worker {job.worker_id!r} stopped without finishing (no heartbeat for {older_than_s:g} s)",
                    now,
                )
            ]

    def requeue_orphaned(self, *, stale_after_s: float | None = None, now: float | None = None) -> list[int]:
        """Return to pending, at once, running jobs whose worker is known to be dead.

        Known dead: its id names this host and a process that no longer exists (or one
        started after the claim: a reused pid), or a thread of this process that ended.
        A worker this cannot judge (another host, a foreign id) is taken for dead only
        when its heartbeat is older than ``stale_after_s``; a live one never is, however
        long its job runs.
        """
        now = self._now(now)
        requeued: list[int] = []
        with self._write() as c:
            rows = c.execute(f"SELECT {COLUMNS} FROM event_jobs WHERE state = 'running' ORDER BY id").fetchall()
            for job in map(Job.read, rows):
                alive = worker_alive(job.worker_id, job.claimed_at)
                if alive is False:
                    error = f"worker {job.worker_id!r} died without finishing"
                elif (
                    alive is None
                    and stale_after_s is not None
                    and ((job.heartbeat_at or job.claimed_at or 0.0) < now - stale_after_s)
                ):
                    error = f"worker {job.worker_id!r} stopped without finishing (no heartbeat for {stale_after_s:g} s)"
                else:
                    continue
                if self._requeue(c, job, error, now):
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
                raise NotADeadJob(f"job {job_id} is {'unknown' if job is None else job.state}, not dead")
            if job.unreadable:
                # Back in the queue it would only be buried again; a qbhook that can read it can retry it.
                raise UnreadableJob(f"job {job_id} cannot be retried by this qbhook: {job.unreadable}")
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
        return [Job.read(r) for r in rows]  # an unreadable row shows, with why, rather than raising

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) FROM event_jobs GROUP BY state").fetchall()
        return {state: 0 for state in STATES} | dict(rows)

    def ready_since(self, seconds: float, *, now: float | None = None) -> int:
        """How many pending jobs have been ready to run for over ``seconds``."""
        cutoff = self._now(now) - seconds
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM event_jobs WHERE state = 'pending' AND not_before < ?", (cutoff,)
            ).fetchone()
        return int(row[0])

    def prune(self, older_than_s: float, *, now: float | None = None, max_chars: int = MAX_FINISHED_CHARS) -> int:
        """Delete finished ('done') jobs older than ``older_than_s``, and the oldest of the rest past
        ``max_chars`` of content together (``MAX_FINISHED_CHARS``); dead jobs stay. ``PRUNE_BATCH``
        rows a transaction: the first prune after an upgrade may delete a gigabyte of old rows, and
        one transaction held intake's write lock past its wait (R117: 11.6 s, events answered 503)."""
        cutoff = self._now(now) - older_than_s
        with self._lock:
            old = [
                r[0]
                for r in self._conn.execute(
                    "SELECT id FROM event_jobs WHERE state = 'done' AND finished_at < ?", (cutoff,)
                )
            ]
            over = [
                r[0]
                for r in self._conn.execute(
                    "SELECT id FROM (SELECT id, finished_at, SUM(length(hashes) + length(paths)"
                    " + length(kinds) + length(sources) + length(events) + length(coalesce(result, ''))"
                    " + length(coalesce(last_error, ''))) OVER (ORDER BY finished_at DESC, id DESC) AS upto"
                    " FROM event_jobs WHERE state = 'done')"
                    " WHERE upto > ? AND (finished_at IS NULL OR finished_at >= ?)",
                    (max_chars, cutoff),
                )
            ]
        gone = 0
        ids = old + over
        for i in range(0, len(ids), PRUNE_BATCH):
            part = ids[i : i + PRUNE_BATCH]
            with self._write() as c:  # state re-checked: a row is deleted only while still done
                gone += c.execute(
                    f"DELETE FROM event_jobs WHERE state = 'done' AND id IN ({', '.join('?' * len(part))})", part
                ).rowcount
        return gone

    # -- internals -------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else float(now)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if not self._lock.acquire(timeout=-1 if self._wait_s is None else self._wait_s):
            raise QueueBusy(f"the queue's lock stayed taken for {self._wait_s:g} s")
        try:
            c = self._conn
            if c.in_transaction:
                raise QueueError("the queue's connection is inside a transaction; give the queue its own connection")
            # Tx's BEGIN IMMEDIATE takes the write lock up front: two processes cannot both
            # read "no pending job for this key" and then both insert. A refused COMMIT rolls
            # back there too, so a full disk never leaves every later call refused.
            self._buried = []
            try:
                with Tx(c):
                    yield c
            except sqlite3.OperationalError as e:
                if self._wait_s is not None and isinstance(sqlite_failure(e, None), LockBusy):
                    raise QueueBusy(f"the catalog's write lock stayed taken for {self._wait_s:g} s") from None
                raise
            # After the commit, never inside it: a COMMIT refused after a burial undoes it, and
            # a "dead" alert would name a job that is still running or pending.
            buried, self._buried = self._buried, []
            for job, error in buried:
                notify.dead_letter(job, error)
        finally:
            self._lock.release()

    @staticmethod
    def _get(c: sqlite3.Connection, job_id: int) -> Job | None:
        row = c.execute(f"SELECT {COLUMNS} FROM event_jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else Job.read(row)

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

    def _requeue(self, c: sqlite3.Connection, job: Job, error: str, now: float) -> bool:
        """Back to pending now (True), or dead when out of attempts (False)."""
        if job.attempts >= job.max_attempts or job.unreadable:
            self._bury(c, job, job.unreadable or error, now)
            return False
        self._back_to_pending(c, job, now, job.attempts, error, now)
        return True

    def _bury(self, c: sqlite3.Connection, job: Job, error: str | None, now: float) -> None:
        c.execute(
            "UPDATE event_jobs SET state = 'dead', last_error = ?, finished_at = ?, updated_at = ?,"
            " worker_id = NULL WHERE id = ?",
            (text(error), now, now, job.id),
        )
        self._buried.append((job, error))  # its notice goes out once this is committed (_write)

    def _back_to_pending(
        self, c: sqlite3.Connection, job: Job, not_before: float, attempts: int, error: str | None, now: float
    ) -> int:
        if job.unreadable:  # its content would be lost in a merge, and never run: dead, saying why
            self._bury(c, job, job.unreadable, now)
            return job.id
        target = self._pending(c, job.coalesce_key, now)
        if target is None:
            c.execute(
                "UPDATE event_jobs SET state = 'pending', not_before = ?, attempts = ?, last_error = ?,"
                " worker_id = NULL, claimed_at = NULL, heartbeat_at = NULL, finished_at = NULL,"
                " updated_at = ? WHERE id = ?",
                (not_before, attempts, text(error), now, job.id),
            )
            return job.id
        # Newer events for the key already wait in another pending job: fold this one in
        # (keeping the earlier created_at, the later not_before and the higher attempts).
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
        self._done(c, job, f"merged into job {target.id}", now, worker_id=None)
        return target.id

    @staticmethod
    def _done(c: sqlite3.Connection, job: Job, result: str, now: float, **overrides) -> None:
        """``job`` finished with ``result``; of what it named, the few a finished job keeps
        (``Parts.finished``). A row that cannot be read keeps what it holds: it is no list to cut."""
        values = {"state": "done", "result": text(result), "finished_at": now, "updated_at": now, **overrides}
        if not job.unreadable:
            values |= dict(zip(Parts.COLUMN_NAMES, Parts.of_job(job).finished().columns()))
        assignments = ", ".join(f"{name} = ?" for name in values)
        c.execute(f"UPDATE event_jobs SET {assignments} WHERE id = ?", (*values.values(), job.id))

    @staticmethod
    def _store_merge(c: sqlite3.Connection, target: Job, extra: Parts, now: float, **overrides) -> None:
        merged = Parts.of_job(target).merge(extra)
        values = dict(zip(Parts.COLUMN_NAMES, merged.columns()))
        values["event_count"] = target.event_count + extra.count
        values["updated_at"] = now
        values.update(overrides)
        assignments = ", ".join(f"{name} = ?" for name in values)
        c.execute(f"UPDATE event_jobs SET {assignments} WHERE id = ?", (*values.values(), target.id))


def intake_queue(path: str, *, max_pending: int = MAX_PENDING) -> JobQueue:
    """The queue HTTP intake writes through: its own connection, shared by waitress's threads,
    whose every write waits at most ``INTAKE_BUSY_S`` for the queue's lock and again for the
    catalog's (``QueueBusy``, answered 503). Opened (and migrated) with the catalog's own wait."""
    conn = connect(path, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(INTAKE_BUSY_S * 1000)}")
    return JobQueue(conn, max_pending=max_pending, wait_s=INTAKE_BUSY_S)


def worker_id() -> str:
    """``host:pid:thread:start:pidns``, enough for ``worker_alive`` to tell whether its
    owner still runs. ``start`` (the process's start tick since boot) tells a restarted
    process apart from its predecessor even with the same pid, as a container's PID 1;
    ``pidns`` says which pid namespace the pid means (containers sharing a host name)."""
    import socket  # here: `qbhook hook` enqueues without claiming (start-up cost per event)

    _, start = process_state(os.getpid())
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{start or '-'}:{pid_namespace()}"


def worker_alive(worker: str | None, claimed_at: float | None = None) -> bool | None:
    """True/False when this host can tell whether ``worker`` (a ``worker_id()``) still
    runs; None when it cannot (another host or pid namespace, an id in another format)."""
    fields = (worker or "").split(":")
    if not 3 <= len(fields) <= 5 or not fields[1].isdigit() or not fields[2].isdigit():
        return None
    host, pid, ident = fields[0], int(fields[1]), int(fields[2])
    claimed_start = fields[3] if len(fields) >= 4 and fields[3] != "-" else None
    import socket

    if host != socket.gethostname():
        return None
    if len(fields) == 5 and fields[4] != pid_namespace():
        return None
    alive, start = live(pid)
    if not alive:
        return False
    if start is not None:
        if claimed_start is not None and claimed_start != start:
            return False  # the pid now belongs to another (or a restarted) process
        if claimed_start is None and claimed_at is not None and _start_epoch(start) > claimed_at + 2:
            return False  # an id without a start: a process started after the claim is not its owner
    if pid == os.getpid():
        return any(t.ident == ident for t in threading.enumerate())
    return True


def _start_epoch(start: str) -> float:
    try:
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, ValueError, StopIteration):
        return 0.0
    return btime + int(start) / os.sysconf("SC_CLK_TCK")
