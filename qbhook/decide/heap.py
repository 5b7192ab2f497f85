"""Python's cyclic garbage collector, paused around the passes that allocate per file.

A snapshot, a plan and a converge batch allocate a few objects per file (facts, stat results,
catalog rows, step dicts) and keep most of them: no cycle among them is garbage. The
collector still runs whenever allocations outnumber frees by 700, and each of its full passes
walks every live object, the whole snapshot and plan included, so its cost grows with the
square of the files: at 10,000 duplicate pairs it was ~0.9 s of the snapshot and ~0.9 s of
the apply phase (docs/benchmarks.md section 9). Paused, nothing is lost: reference counting
still frees every acyclic object at once, and the cycles made meanwhile (an exception's
traceback) are collected by the first pass after the pause ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off inside the block, and back to what it was after (nesting is fine)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def heap_frozen() -> Iterator[None]:
    """The objects alive at entry (a snapshot, a plan) left out of every collection inside the block.

    For a run that works on a big plan already built: the collector keeps running for what the
    block allocates (its cycles are still freed), but no pass walks the plan again. They go
    back to the oldest generation after the block. Inside another freeze, a no-op: that one
    owns the frozen objects."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
