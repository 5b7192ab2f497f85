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


def run_bounded(fn, seconds: float, what: str = "call"):
    """Run ``fn()`` in a forked child and return its (picklable) result within ``seconds``.

    For code that blocks on a worker thread (where SIGALRM cannot reach) or would leave a
    thread stuck forever: the child is killed on expiry and the test fails with TimeoutError.
    Exceptions raised by ``fn`` are re-raised here.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child():
        try:
            send.send((True, fn()))
        except BaseException as e:
            send.send((False, e))

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(seconds):
            raise TimeoutError(f"{what} still running after {seconds}s (blocked on a FIFO or device?)")
        ok, value = recv.recv()
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    if not ok:
        raise value
    return value
