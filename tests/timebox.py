"""A hard time limit for one block of a test, so a regression that blocks fails instead of hanging.

SIGALRM interrupts a blocking system call in the main thread (opening a FIFO with no
writer, reading an endless device); the handler raises, so Python does not retry it.
"""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def timebox(seconds: float, what: str = "block"):
    def expired(signum, frame):
        raise TimeoutError(f"{what} still running after {seconds}s (blocked on a FIFO or device?)")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
