"""Rows of the event_jobs table and how their contents merge."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from qbhook.errors import UnreadableJob
from qbhook.events.model import Event

# One hot key must not grow a row without bound; past these caps the job is flagged
# ``truncated``, and the worker sweeps instead of planning the names kept (worker._swept).
MAX_KEPT_EVENTS = 100
MAX_JOB_HASHES = 2000
MAX_JOB_PATHS = 20000
# ...and in characters: 20,000 paths of up to 8 KiB each (and each kept event holding its own
# again) made a row of ~190 MB that every further event for that key read, parsed and wrote
# back under the queue's lock. The kept events are a record, not the job: past their budget the
# rest are counted (``event_count``), not stored.
MAX_JOB_PATH_CHARS = 4 * 1024 * 1024
MAX_KEPT_EVENT_CHARS = 1024 * 1024

# A finished ('done') job is history, kept ``sweep.keep_history``: ``qbhook queue`` shows its key,
# kinds, sources, count of events, tries and result, nothing of what it named, and no finished job
# runs or merges again. So it keeps the first few of its lists (``Parts.finished``): a Radarr
# delete naming 3,300 paths kept them twice (paths and its event), ~1.7x its 233 KB body, per job.
FINISHED_KEPT = 5
FINISHED_KEPT_CHARS = 16 * 1024

# The one job a full queue folds every new subject into (``JobQueue.enqueue``): it names no
# torrent and no file, so the worker sweeps for it (worker._swept). No Event's key can equal it:
# "overflow" is no source.
OVERFLOW_KEY = "sweep:overflow"

COLUMNS = (
    "id, coalesce_key, state, hashes, paths, kinds, sources, events, event_count, truncated, "
    "attempts, max_attempts, not_before, created_at, updated_at, claimed_at, heartbeat_at, "
    "worker_id, finished_at, result, last_error"
)


@dataclass(frozen=True)
class Job:
    """One unit of work: everything the coalesced events said about one subject.

    ``hashes``/``paths``/``kinds``/``sources`` are the union over all merged events in
    arrival order; ``events`` keeps the first MAX_KEPT_EVENTS of ``event_count``. A finished
    ('done') job keeps only the first few of each (``Parts.finished``; ``truncated`` says so).
    ``attempts`` counts claims, so a run killed mid-way counts too.
    """

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

    # Set on a row this qbhook cannot read (``Job.read``): why, in one line. Its lists are then
    # whatever could be read, never the row's whole content: such a job must never run or merge.
    unreadable: str | None = None

    @classmethod
    def from_row(cls, row: Sequence) -> Job:
        """The row as a job; ``UnreadableJob`` when its contents cannot be read."""
        (id_, key, state, *lists, count, truncated), rest = row[:10], row[10:]
        try:
            parsed = [_column(name, value) for name, value in zip(_LISTS, lists)]
        except _BadColumn as e:
            raise UnreadableJob(
                f"job {id_} cannot be read: {e} (written by another qbhook version, or damaged)"
            ) from None
        return cls(id_, key, state, *parsed, count, bool(truncated), *rest)

    @classmethod
    def read(cls, row: Sequence) -> Job:
        """The row as a job even when it cannot be read: then ``unreadable`` says why, and the
        job shows that as its error (``qbhook queue``), with the lists that could be read."""
        try:
            return cls.from_row(row)
        except UnreadableJob as e:
            (id_, key, state, *lists, count, truncated), rest = row[:10], row[10:]
            kept = []
            for name, value in zip(_LISTS[:4], lists):
                try:
                    kept.append(_column(name, value))
                except _BadColumn:
                    kept.append(())
            return cls(id_, key, state, *kept, (), count, bool(truncated), *rest[:-1], e.message, unreadable=e.message)


_LISTS = ("hashes", "paths", "kinds", "sources", "events")


class _BadColumn(Exception):
    pass


def _column(name: str, value) -> tuple:
    """One JSON list column, checked: a row written by a newer qbhook (a new event kind) or
    damaged must fail here, on reading, not later inside the worker or a merge."""
    try:
        items = json.loads(value)
        if not isinstance(items, list):
            raise ValueError(f"not a list but {type(items).__name__}")
        if name == "events":
            return tuple(Event.from_dict(e) for e in items)
        if not all(isinstance(i, str) for i in items):
            raise ValueError("an item is not a string")
        return tuple(items)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        cause = str(e) if not isinstance(e, KeyError) else f"no {e}"
        raise _BadColumn(f"{name}: {' '.join(cause.split())[:200]}") from None


def counted(kinds: str, sources: str, event: Event) -> tuple[str, str]:
    """A truncated job's ``kinds`` and ``sources`` columns with ``event`` merged in: all such a
    job still takes of an event, besides its count. Its worker sweeps (worker._swept), so names
    past the caps are neither planned nor needed; and reading, parsing and writing back its
    capped lists (~5 MB) for each further event cost ~70 ms under the queue's lock.
    ``UnreadableJob``: a column cannot be read (the caller reads the whole row, and buries it)."""
    try:
        had = _column("kinds", kinds), _column("sources", sources)
    except _BadColumn as e:
        raise UnreadableJob(str(e)) from None
    return (
        json.dumps(list(dict.fromkeys((*had[0], event.kind)))),
        json.dumps(list(dict.fromkeys((*had[1], event.source)))),
    )


def text(value: str | None) -> str | None:
    """Error texts carry undecodable file names as lone surrogates; sqlite3 refuses those."""
    return None if value is None else value.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class Parts:
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
    def of_event(cls, event: Event) -> Parts:
        return cls(event.hashes, event.paths, (event.kind,), (event.source,), (event.to_dict(),), False, 1)._capped()

    @classmethod
    def of_job(cls, job: Job) -> Parts:
        return cls(
            job.hashes,
            job.paths,
            job.kinds,
            job.sources,
            tuple(e.to_dict() for e in job.events),
            job.truncated,
            job.event_count,
        )

    def merge(self, other: Parts) -> Parts:
        def union(a: tuple, b: tuple) -> tuple:
            return tuple(dict.fromkeys(a + b))

        return Parts(
            union(self.hashes, other.hashes),
            union(self.paths, other.paths),
            union(self.kinds, other.kinds),
            union(self.sources, other.sources),
            _kept(self.events + other.events),
            self.truncated or other.truncated,
            self.count + other.count,
        )._capped()

    def _capped(self) -> Parts:
        paths = _within(self.paths[:MAX_JOB_PATHS], MAX_JOB_PATH_CHARS)
        over = len(self.hashes) > MAX_JOB_HASHES or len(paths) < len(self.paths)
        if not over:
            return self
        return Parts(
            self.hashes[:MAX_JOB_HASHES],
            paths,
            self.kinds,
            self.sources,
            self.events,
            True,
            self.count,
        )

    def finished(self) -> Parts:
        """What a finished job keeps: the first ``FINISHED_KEPT`` hashes and paths, of the job and
        of each of its first ``FINISHED_KEPT`` events; ``truncated`` when that is not all of them."""

        def few(items) -> tuple:
            return _within(tuple(items[:FINISHED_KEPT]), FINISHED_KEPT_CHARS)

        events = tuple(
            {**e, "hashes": list(few(e.get("hashes", ()))), "paths": list(few(e.get("paths", ())))}
            for e in self.events[:FINISHED_KEPT]
        )
        hashes, paths = few(self.hashes), few(self.paths)
        cut = (
            len(hashes) < len(self.hashes)
            or len(paths) < len(self.paths)
            or len(events) < len(self.events)
            or any(len(k["hashes"]) < len(e.get("hashes", ())) for k, e in zip(events, self.events))
            or any(len(k["paths"]) < len(e.get("paths", ())) for k, e in zip(events, self.events))
        )
        return replace(self, hashes=hashes, paths=paths, events=events, truncated=self.truncated or cut)

    def columns(self) -> tuple:
        # ASCII escapes: a lone surrogate from a JSON payload would make sqlite3 raise.
        def dump(v) -> str:
            return json.dumps(list(v))

        return (
            dump(self.hashes),
            dump(self.paths),
            dump(self.kinds),
            dump(self.sources),
            dump(self.events),
            int(self.truncated),
        )


def _within(paths: tuple[str, ...], chars: int) -> tuple[str, ...]:
    """The first of ``paths`` that fit in ``chars`` characters together."""
    total = 0
    for i, p in enumerate(paths):
        total += len(p)
        if total > chars:
            return paths[:i]
    return paths


def _kept(events: tuple) -> tuple:
    """The first MAX_KEPT_EVENTS event records whose paths fit in MAX_KEPT_EVENT_CHARS together."""
    total = 0
    for i, e in enumerate(events[:MAX_KEPT_EVENTS]):
        total += sum(len(p) for p in e.get("paths", ()))
        if total > MAX_KEPT_EVENT_CHARS:
            return events[:i]
    return events[:MAX_KEPT_EVENTS]
