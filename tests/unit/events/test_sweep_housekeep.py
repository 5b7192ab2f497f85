"""A sweep forgets the history that only grows with time (worker.housekeep, sweep.keep_history).

`serve` left running for months adds an event_jobs row per event and a scans row per pool per
sweep and per rescanned subtree; found by bench/bench_soak.py (docs/benchmarks.md section 11).
Real files, a real catalog and real scans; qBittorrent is test_sweep_incremental's fake.
"""

from __future__ import annotations

import dataclasses
import time

import qbhook.catalog.scan as scan
from qbhook.catalog.queries import last_full_scan_age
from qbhook.config import SweepConfig
from qbhook.events.model import Event
from qbhook.events.queue import JobQueue
from qbhook.events.worker import Worker
from tests.unit.events import test_sweep_incremental as inc
from tests.unit.events.test_sweep_incremental import H1, H2, H3, H4, three_staying

bed = inc.bed  # the same real-files bed and fake qBittorrent

DAY = 86400.0


def _jobs(conn, now: float) -> dict[str, int]:
    """Four jobs: done long ago, done just now, dead long ago, pending; their ids by name."""
    q = JobQueue(conn, max_attempts=1)
    ids = {}
    for name, h in (("old_done", H1), ("new_done", H2), ("old_dead", H3), ("pending", H4)):
        ids[name] = q.enqueue(Event("qbittorrent", "torrent_added", hashes=(h,), received_at=now), now=now)[0]
    at = {"old_done": now - 30 * DAY, "new_done": now - 60, "old_dead": now - 30 * DAY}
    for name, when in at.items():
        job = q.claim("w", now=when + 1e9)  # claim in id order whatever not_before says
        assert job.id == ids[name]
        if name == "old_dead":
            q.fail(job.id, "boom", worker_id="w", now=when)
        else:
            q.complete(job.id, "ok", worker_id="w", now=when)
    return ids


def test_a_sweep_deletes_done_jobs_older_than_keep_history_and_keeps_the_rest(bed):
    ids = _jobs(bed.cat.conn, time.time())
    out = bed.sweep()
    left = {r[0]: r[1] for r in bed.cat.conn.execute("SELECT id, state FROM event_jobs")}
    assert ids["old_done"] not in left  # done 30 days ago, keep_history is 7 days
    assert left == {ids["new_done"]: "done", ids["old_dead"]: "dead", ids["pending"]: "pending"}
    assert out["pruned"]["jobs"] == 1


def test_scan_records_stay_bounded_over_many_sweeps_and_ids_keep_growing(bed, monkeypatch):
    three_staying(bed)
    monkeypatch.setattr(scan, "KEEP_SCANS", 3)
    cfg = dataclasses.replace(bed.cfg, sweep=SweepConfig(keep_history=0))
    last_ids = []
    for _ in range(6):
        bed.sweep(cfg)
        rows = bed.cat.conn.execute("SELECT id FROM scans ORDER BY id").fetchall()
        assert len(rows) <= 3  # two pools per sweep: without pruning, 2, 4, ... 12
        last_ids.append(rows[-1][0])
    assert last_ids == sorted(set(last_ids))  # the newest record is never deleted: ids never reused
    assert last_full_scan_age(bed.cat, bed.cfg.pools) is not None


def test_prune_scans_keeps_each_pools_newest_whole_pool_scan_behind_newer_subtree_scans(bed):
    three_staying(bed)
    bed.sweep()  # one whole-pool scan per pool
    subtree = bed.cfg.primary.seeding_root / "One"
    for _ in range(4):
        scan.scan_pool(bed.cat, bed.cfg.primary, bed.cfg.scan, subtree=str(subtree))
    deleted = scan.prune_scans(bed.cat.conn, bed.cfg.pools, 0, keep_last=1)
    assert deleted == 3  # the older subtree scans; the newest (kept by keep_last) and both pools' full scans stay
    assert last_full_scan_age(bed.cat, bed.cfg.pools) is not None


def test_the_worker_prunes_finished_jobs_every_few_completions_without_any_sweep(bed, monkeypatch):
    # R114: jobs were pruned only after a sweep that succeeded: a sweep failing for days, or
    # `serve --no-sweep`, kept every finished job for ever, past keep_history and the size cap.
    # R117: and the first completion of each process prunes (one restarted before PRUNE_EVERY never did).
    monkeypatch.setattr(Worker, "PRUNE_EVERY", 3, raising=False)
    now = time.time()
    ids = _jobs(bed.cat.conn, now)
    q = JobQueue(bed.cat.conn)
    more = [q.enqueue(Event("qbittorrent", "torrent_added", hashes=(f"{k}" * 40,)), now=now)[0] for k in (5, 6, 7)]
    wk = Worker(bed.cfg, bed.cat, [], debounce_s=0.0)
    assert wk.run_once()
    assert q.get(ids["old_done"]) is None  # the process's first completion pruned it
    with bed.cat.conn:  # new_done now finished long ago too
        bed.cat.conn.execute("UPDATE event_jobs SET finished_at = ? WHERE id = ?", (now - 30 * DAY, ids["new_done"]))
    for _ in range(2):
        assert wk.run_once()
    assert q.get(ids["new_done"]) is not None  # two completions since: no prune yet
    assert wk.run_once()
    left = {r[0]: r[1] for r in bed.cat.conn.execute("SELECT id, state FROM event_jobs")}
    assert left == {ids["old_dead"]: "dead", ids["pending"]: "done", **dict.fromkeys(more, "done")}
