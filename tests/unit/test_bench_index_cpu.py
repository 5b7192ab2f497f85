"""bench_index's per-process CPU reading (row 8 splits an unchanged sweep's CPU by process with it)."""

from __future__ import annotations

import os
import time

from bench.bench_index import _cpu_of


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_of_reads_user_plus_system_seconds_of_the_process():
    before = _cpu_of(os.getpid())
    _burn(0.2)
    t = os.times()
    after = _cpu_of(os.getpid())
    # /proc counts in clock ticks (1/100 s here): the two readings agree to a few ticks
    assert abs(after - (t.user + t.system)) < 0.05
    assert after - before >= 0.15
