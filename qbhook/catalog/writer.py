"""A thread with a connection of its own to the catalog's file, doing handed-over catalog work in order.

The model: the calling thread reads the disk (a walk, file reads and hashes) while this thread
writes what it found (SQLite releases the interpreter lock while it steps a statement and while
it waits for the disk in a commit), so the two overlap on a second core. Work is handed over as
callables ``fn(catalog)``; each runs on this thread's own Catalog, in the order given, and each
commits its own transactions.

A second connection because a SQLite connection belongs to the thread that opened it; both are
writers of one WAL database (the calling one may still register a filesystem meanwhile:
SQLite's lock and busy timeout order the two). ``finish()`` joins the thread and re-raises
what stopped it; once a piece of work failed, later ones are not done, and the next ``put``
raises that error, as the failing commit itself would have. ``finish(abandon=True)`` (the
caller is leaving on an error or Ctrl-C) lets the piece in hand end and drops the rest.

``queued`` bounds how many pieces may wait (0: no bound): a caller that produces faster than
SQLite writes then waits in ``put`` instead of holding every batch in memory. A catalog with no
file (in memory) cannot be opened twice: ``start`` returns None and the caller writes inline.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Self

from qbhook.catalog.store import Catalog


class CatalogThread:
    def __init__(self, path: str, marker_roots: tuple[str, ...], name: str, queued: int = 0):
        self._jobs: queue.Queue = queue.Queue(maxsize=queued)
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, args=(path, marker_roots), name=name, daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, catalog: Catalog, name: str, queued: int = 0) -> Self | None:
        """A thread writing to ``catalog``'s file, or None if it has none (then write inline)."""
        try:
            path = next((r[2] for r in catalog.conn.execute("PRAGMA database_list") if r[1] == "main"), "")
        except sqlite3.Error:
            return None
        return cls(path, catalog.marker_roots, name, queued) if path else None

    def _run(self, path: str, marker_roots: tuple[str, ...]) -> None:
        try:
            catalog = Catalog.open(path, marker_roots=marker_roots)
        except BaseException as e:
            self._error = e
            self._drain()
            return
        try:
            while (job := self._jobs.get()) is not None:
                if not self._abandoned:
                    job(catalog)
        except BaseException as e:
            self._error = e
            self._drain()
        finally:
            catalog.close()

    def _drain(self) -> None:
        """After a failure: take what is still handed over (undone) until finish(), so that a
        caller waiting in put() on a full queue is never left blocked."""
        while self._jobs.get() is not None:
            pass

    def put(self, job: Callable[[Catalog], object]) -> None:
        if self._error is not None:
            raise self._error
        self._jobs.put(job)

    def finish(self, abandon: bool = False) -> None:
        self._abandoned = abandon
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None and not abandon:
            raise self._error
