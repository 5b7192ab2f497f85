"""Work in another process: a function run in a forked child, its result pickled back.

Python threads do not help the executor's per-file work (each relink is a dozen system calls
and as many lines of Python, serialized by the interpreter lock: measured slower than one
thread, docs/benchmarks.md section 9); a forked child runs beside the parent on another core.

Rules, because a fork copies a process mid-flight:

- **Only from a single-threaded process** (``may_fork``): a lock another thread held at the
  fork (logging's, SQLite's, the allocator's) would stay locked forever in the child, and a
  native thread pool started before the fork is gone in the child while its library still
  thinks it runs (BLAKE3's, once a file of MULTITHREAD_MIN or more was hashed: the child's next
  such hash waited forever, review 21). So the threads are counted by the kernel
  (``/proc/self/task``), native ones included, not by ``threading``. The CLI is single-threaded
  when it relinks small files; ``serve`` (webhook server, worker, sweeper threads) never forks.
- **The child touches no SQLite**: an inherited connection must never be used across a fork,
  and one opened in the child takes no real file lock while the inherited one lives in its
  process image (review 21: its writes can be checkpointed away). The work reads what the
  parent read for it (``catalog.store.FrozenCatalog``) and hands back what is to be written.
  The child leaves with ``os._exit``, so no inherited object is finalized twice (the parent's
  connection, buffered files).
- **A child never outlives its parent** (``PR_SET_PDEATHSIG``): it holds copies of the parent's
  lock descriptors, and an orphaned child would keep qbhook's locks taken.
- **A failed child is a failed batch, not a guess**: its exception comes back as one line and
  is raised in the parent (``ChildFailed``); a child killed by a signal, or that sent nothing,
  too. Whatever it did before is what a crash leaves, and the journal's replay is made for that.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from qbhook.errors import ChildFailed

T = TypeVar("T")


_RESUME = "qbhook resume re-checks each step it left"


def may_fork() -> bool:
    """True when forking is safe here and can help: one thread (native ones counted), two cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    if cores < 2 or threading.active_count() != 1:
        return False
    # A thread Python has joined (a Relinker's releasing threads, ended by its drain) can still be
    # listed for a moment while the kernel reaps it: wait that out, briefly. A native pool stays.
    deadline = time.monotonic() + JOINED_THREAD_GRACE
    while (n := _kernel_threads()) > 1 and time.monotonic() < deadline:
        time.sleep(0.002)
    return n == 1


# Seconds ``may_fork`` waits for joined threads to leave the kernel's list.
JOINED_THREAD_GRACE = 0.05


def _kernel_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0  # no /proc: unknown, so no fork


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """In the child: SIGKILL when the parent dies (and now, if it already has)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


class Forked(Generic[T]):
    """``work()`` running in a forked child; ``result()`` waits for it and returns what it returned."""

    def __init__(self, work: Callable[[], T]):
        r, w = os.pipe()
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            raise
        if pid == 0:  # the child: never returns
            code = 0
            try:
                _die_with_parent(parent)
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
        self.pid: int | None = pid
        self._r: int | None = r

    def result(self) -> T:
        """The child's answer, once; the child reaped. Interrupted while waiting (Ctrl-C), the child is
        killed and reaped before the interruption goes on."""
        r, self._r = self._r, None
        if r is None:
            raise ChildFailed("the work in another process was already collected", hint=_RESUME)
        try:
            with os.fdopen(r, "rb") as back:
                data = back.read()
        except BaseException:
            self._kill()
            raise
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        try:
            kind, value = pickle.loads(data)
        except Exception:
            raise ChildFailed(
                f"the work in another process ended without an answer (wait status {status})", hint=_RESUME
            ) from None
        if kind != "ok":
            raise ChildFailed(f"the work in another process failed: {value}", hint=_RESUME)
        return value

    def stop(self) -> None:
        """Kill and reap the child unless ``result()`` already did: for a caller leaving on an error."""
        if self._r is not None:
            os.close(self._r)
            self._r = None
        self._kill()

    def _kill(self) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.pid = None
