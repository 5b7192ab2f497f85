"""Work on the second core: a function run in a forked child, its result pickled back.

Python threads do not help the executor's per-file work (each relink is a dozen system calls
and as many lines of Python, serialized by the interpreter lock: measured slower than one
thread, docs/benchmarks.md section 9); a forked child runs beside the parent on another core.

Rules, because a fork copies a process mid-flight:

- **Only from a single-threaded process** (``may_fork``): a lock another thread held at the
  fork (logging's, SQLite's, the allocator's) would stay locked forever in the child. The CLI
  is single-threaded when it acts; ``serve`` (webhook server, worker, sweeper threads) never forks.
- **The child shares nothing it did not open itself**: the work opens its own catalog
  connection (an SQLite connection must never be used across a fork), and the child leaves
  with ``os._exit``, so no inherited object is finalized twice (the parent's connection,
  buffered files).
- **A failed child is a failed batch, not a guess**: its exception comes back as one line and
  is raised in the parent (``ChildFailed``); a child killed by a signal, or that sent nothing,
  too. Whatever it did before is what a crash leaves, and the journal's replay is made for that.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from qbhook.errors import QbhookError

T = TypeVar("T")


class ChildFailed(QbhookError):
    """The work on the second core failed."""


def may_fork() -> bool:
    """True when forking is safe here and can help: one thread, and two cores to run on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return cores >= 2 and threading.active_count() == 1


class Forked(Generic[T]):
    """``work()`` running in a forked child; ``result()`` waits for it and returns what it returned."""

    def __init__(self, work: Callable[[], T]):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 0
            try:
                os.close(r)
                try:
                    payload = ("ok", work())
                except BaseException as e:  # reported to the parent, which raises it
                    payload, code = ("error", f"{type(e).__name__}: {e}"), 1
                with os.fdopen(w, "wb") as out:
                    out.write(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
            finally:
                os._exit(code)
        os.close(w)
        self.pid, self._r = pid, r

    def result(self) -> T:
        with os.fdopen(self._r, "rb") as back:
            data = back.read()
        _, status = os.waitpid(self.pid, 0)
        try:
            kind, value = pickle.loads(data)
        except Exception:
            raise ChildFailed(f"the work on the second core ended without an answer (wait status {status})") from None
        if kind != "ok":
            raise ChildFailed(f"the work on the second core failed: {value}")
        return value
