"""A chunked re-plan's ``Plan.created_at`` is the time of the listing it was planned from.

The executor reads the files of every torrent added since ``created_at`` (less a slack) before a
group's copies (``executor._check_no_newcomer``): a later ``created_at`` makes a cross-seed added
after the listing, which no chunk planned, look old, and the copies leave it missing its files.
"""

import dataclasses
import time
import types

import qbhook.events.worker as worker
from qbhook.config import SweepConfig
from qbhook.decide import snapshot
from qbhook.move.executor import _ADDED_SLACK_S, _added_since
from tests.unit.events.test_sweep_incremental import bed, three_staying  # noqa: F401


def test_a_chunked_plan_is_dated_at_its_listing_not_at_its_last_chunk(bed, monkeypatch):  # noqa: F811
    three_staying(bed)
    cfg = dataclasses.replace(bed.cfg, sweep=SweepConfig(full_every=0))
    bed.sweep(cfg)  # the index synced: the next full re-plan plans from it, in chunks
    monkeypatch.setattr(worker, "_CHUNK_TORRENTS", 1)
    offset = [0.0]
    real_time = time.time
    shim = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("__")})
    shim.time = lambda: real_time() + offset[0]
    monkeypatch.setattr(snapshot, "time", shim)  # the snapshots' clock: each chunk hashes for ~7 minutes
    inner = worker._snapshot
    chunks = []

    def slow(*a, **kw):
        s = inner(*a, **kw)
        chunks.append(s.now)
        offset[0] += 400
        return s

    monkeypatch.setattr(worker, "_snapshot", slow)
    plans = []
    real_checks = worker.alerts.sweep_checks

    def checks(c, conn, seen, plan, **kw):
        plans.append(plan)
        return real_checks(c, conn, seen, plan, **kw)

    monkeypatch.setattr(worker.alerts, "sweep_checks", checks)
    listed_at = real_time()
    bed.sweep(cfg)
    assert len(chunks) == 3
    plan = plans[-1]
    assert plan.created_at <= min(chunks)
    assert plan.created_at - listed_at < 60
    # a cross-seed added a minute after the sweep listed the clients: no chunk planned it
    newcomer = types.SimpleNamespace(added_on=listed_at + 60, hash="f" * 40)
    assert _added_since(newcomer, plan.created_at - _ADDED_SLACK_S, None)
