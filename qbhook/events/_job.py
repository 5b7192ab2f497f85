"""Rows of the event_jobs table and how their contents merge."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

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
    arrival order; ``events`` keeps the first MAX_KEPT_EVENTS of ``event_count``.
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

    @classmethod
    def from_row(cls, row: Sequence) -> Job:
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
