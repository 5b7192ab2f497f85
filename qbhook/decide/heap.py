"""Python's cyclic garbage collector kept off what a convergence builds per file.

A snapshot and a plan are a few objects per file (facts, stat results, catalog rows, steps),
all alive to the end, with no garbage cycle among them. The collector still starts a pass
whenever allocations outnumber frees by 700, and its older passes walk every live object again,
the whole snapshot and plan included: 0.08 s of the snapshot at 2,000 duplicate pairs, ~0.9 s
at 10,000, and as much of the apply phase, every pass freeing nothing (docs/benchmarks.md
section 9). So the snapshot is built with the collector paused (``collector_paused``), and so is
``qbhook converge``'s pass from its scan to its plan (``converge_pass.plan_convergence``): reference
counting still frees every acyclic object at once, and a cycle made meanwhile (an exception's
traceback, a retry policy's copy) goes at the next full pass after the pause, or, when the pause
ends inside a run that froze the heap, once that run's freeze ends: a few MB at most (tenacity's
~10 objects per client call, 5,000 torrents). A run works on a plan already built, and may
last (a move waits on the torrent client): it leaves what is alive at its start out of every
pass (``heap_frozen``) instead of pausing, so what the run itself allocates is still collected.
Inside a run, a same-pool convergence batch (``Executor._converge_batch``) pauses again: it is
bounded (at most a thousand relinks), waits on no client, and keeps what it allocates to its end.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# ``heap_frozen`` blocks this process has open. While one is, a freeze is in place, and the
# pause below knows it without asking ``gc.get_freeze_count()``: that call counts the permanent
# generation object by object (~11 ms once a 10,000-pair snapshot and plan are frozen, once per
# converge batch: docs/benchmarks.md section 9, 2026-12-02 06:00). A forked child inherits this
# count together with the frozen heap it describes. Only what the collector walks depends on it.
_frozen_here = 0


def _freeze_in_place() -> bool:
    return _frozen_here > 0 or gc.get_freeze_count() > 0


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off inside the block, and back to what it was after (nesting is fine).

    What the block allocated goes straight to the oldest generation when the pause ends: left
    young, the first pass after the pause walked all of it (0.1-0.24 s after a 10,000-pair
    snapshot) to find no garbage. Freezing and unfreezing moves whole lists, it walks nothing;
    a cycle among those objects is collected by the next full pass."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if not _freeze_in_place():  # else unfreezing would end someone else's freeze early
                gc.freeze()
                gc.unfreeze()
            gc.enable()


@contextmanager
def heap_frozen() -> Iterator[None]:
    """The objects alive at entry (a snapshot, a plan) left out of every collection inside the block.

    For a run that works on a big plan already built: the collector keeps running for what the
    block allocates (its cycles are still freed), but no pass walks the plan again. They go
    back to the oldest generation after the block. Inside another freeze, a no-op: that one
    owns the frozen objects."""
    global _frozen_here
    if _freeze_in_place():
        yield
        return
    gc.freeze()
    _frozen_here += 1
    try:
        yield
    finally:
        _frozen_here -= 1
        gc.unfreeze()
