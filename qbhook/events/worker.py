"""Turn queued events into decisions (and, when policy allows, moves).

A job names torrents (hashes) and/or files (paths). The worker finds every
torrent those touch, re-reads their facts, plans their groups and, with
``policy.auto_apply``, hands actionable groups to the executor. The sweeper is
the same pipeline over everything, catching what events missed.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import sqlite3
import stat as stat_mod
import threading
import time
from dataclasses import dataclass, field

from qbhook.catalog import indexer, state
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex
from qbhook.config import Config
from qbhook.decide.facts import ancestors
from qbhook.decide.planner import make_plan, tag_changes
from qbhook.decide.snapshot import SymlinkProbe, build_snapshot
from qbhook.errors import PathMapError, QbhookError, QueueError, UnknownTorrent
from qbhook.events import alerts
from qbhook.events.queue import JobQueue
from qbhook.events.queue import worker_id as queue_worker_id
from qbhook.move.leftovers import remove_leftover_views
from qbhook.pathmap import PathMap
from qbhook.paths import normalize

log = logging.getLogger(__name__)

DEBOUNCE_S = 5.0  # "added" then "finished" seconds later: let them coalesce into one job


def host_path(cfg: Config, path: str) -> str:
    """Events carry the sender's view of a path (often a container's): map it to the host if we can.

    The path is normalised lexically first (``qbt.pathmap.normalize``), so ``seeding//x``,
    ``seeding/./x`` and ``seeding/x/`` are one path; a relative path or one with a ``..``
    component raises PathMapError: it is refused, never resolved.
    """
    path = normalize(path)
    if cfg.pool_of(path):
        return path
    for q in cfg.clients:
        pm = PathMap(q.path_map)
        if pm.is_identity:
            continue
        try:
            return pm.to_host(path)
        except PathMapError:
            continue
    return path


def torrents_touching(cfg: Config, catalog: Catalog, infos, paths, rejected: list[str] | None = None) -> set[str]:
    """Hashes of torrents whose files are, or share an inode with, any of ``paths``.

    A path that cannot be made canonical, or that goes through a symlink below its pool's
    root, is not looked up nor recorded; its reason is appended to ``rejected``.
    """
    roots = [str(r) for r in cfg.seeding_roots]
    by_content: dict[str, list] = {}
    for t in infos:
        by_content.setdefault(posixpath.normpath(t.content_path or t.save_path), []).append(t.hash)
    candidates: set[str] = set()
    symlinks = SymlinkProbe()
    for raw in paths:
        try:
            p = host_path(cfg, raw)
        except PathMapError as e:
            if rejected is not None:
                rejected.append(f"event path refused: {e}")
            continue
        related = {p}
        pool = cfg.pool_of(p)
        if pool is not None:
            link = symlinks.first_symlink(p, str(pool.path))
            if link is not None:
                # Recording it would stat (and identify) whatever filesystem the link points to.
                if rejected is not None:
                    rejected.append(f"event path refused: {p} goes through a symlink: {link[0]} -> {link[1]}")
                continue
            if _is_regular(p):
                catalog.record_path(p, pool.name)  # an import just linked it: refresh the facts
        row = catalog.inode_by_path(p)
        if row is not None:
            for x, _ in catalog.paths_of(row.id):
                try:
                    related.add(normalize(os.fsdecode(x)))
                except PathMapError:
                    continue  # an odd spelling in an old catalog: not a path we look up
            if not os.path.lexists(p):
                catalog.forget_path(p)  # deleted by the *arr: drop the stale link
        for r in related:
            for q in ancestors(r, roots):
                candidates.update(by_content.get(q, ()))
    return candidates


def _is_regular(path: str) -> bool:
    try:
        return stat_mod.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def handle_job(cfg: Config, catalog: Catalog, clients, job, *, executor=None) -> dict:
    """Plan (and maybe apply) the groups a job touches. Returns a JSON-able result."""
    infos = [t for c in clients for t in c.torrents()]
    known = {h for t in infos for h in t.hashes}
    hashes = {h for h in job.hashes if h in known}
    missing = sorted(set(job.hashes) - hashes)
    rejected: list[str] = []
    hashes |= torrents_touching(cfg, catalog, infos, job.paths, rejected)
    for why in rejected:
        log.warning("job %s: %s", job.id, why)
    if not hashes:
        return {
            "groups": [],
            "note": "no torrent in any configured client matches this event"
            + (f" (unknown hashes: {', '.join(missing)})" if missing else ""),
            **({"rejected_paths": rejected} if rejected else {}),
        }
    snap = build_snapshot(cfg, catalog, clients, hashes=sorted(hashes), infos=infos)
    plan = make_plan(snap, cfg.policy)
    maintain_tags(cfg, clients, snap, plan)
    # The torrent index learns these torrents from what was just read (no extra request).
    indexer.record_snapshot(catalog, infos, snap)
    TorrentIndex(catalog.conn).record_decisions(plan.groups)
    result = {
        "groups": [
            {"group_id": g.group_id, "action": g.action, "reason": g.reason, "names": g.names} for g in plan.groups
        ]
    }
    if missing:
        result["unknown_hashes"] = missing
    if rejected:
        result["rejected_paths"] = rejected
    if executor is not None and cfg.policy.auto_apply and plan.actionable:
        summary = executor.apply(plan, trigger="worker")
        result["applied"] = summary.to_dict()
    state.put(catalog.conn, "last_event_plan", {"job": job.id, **result})
    return result


def sweep(cfg: Config, catalog: Catalog, clients, *, executor=None, progress=None) -> dict:
    """Incremental scan + plan everything (+ apply when policy allows)."""
    t0 = time.time()
    clients = list(clients)
    leftovers = remove_leftover_views(cfg, catalog, clients) if executor is not None else []
    scans = [scan_pool(catalog, p, cfg.scan, progress=progress).as_dict() for p in cfg.pools]
    # The torrent index first (after the scans, so files resolve to fresh inodes): one request
    # per unchanged qBittorrent, then the snapshot takes its file lists from it.
    clients = list(clients)
    synced = indexer.sync_all(catalog, clients)
    view = indexer.snapshot_view(catalog, clients, synced)
    # background hashing: idle I/O, nice 19, at most scan.hash_budget bytes per sweep
    bg = {"progress": progress, "hash_budget": cfg.scan.hash_budget, "background": True}
    if view is None:
        snap = build_snapshot(cfg, catalog, clients, **bg)
    else:
        snap = build_snapshot(cfg, catalog, view[0], infos=view[1], **bg)
    plan = make_plan(snap, cfg.policy)
    TorrentIndex(catalog.conn).record_decisions(plan.groups)
    tagged = maintain_tags(cfg, clients, snap, plan)
    alerts.sweep_checks(cfg, catalog.conn, snap, plan)
    out = {
        "started_at": t0,
        "scans": scans,
        "plan": plan.summary(),
        "index": [r.as_dict() for r in synced],
        "index_listing": "live" if view is None else "index",
        "pending": [
            {
                "group_id": g.group_id,
                "action": g.action,
                "reason": g.reason,
                "names": g.names,
                # sizes and pools: the status page charts blocked bytes per pool from these
                "source_pool": g.source_pool,
                "target_pool": g.target_pool,
                "payload_bytes": g.payload_bytes,
                "bytes_to_copy": g.bytes_to_copy,
                "bytes_freed": g.bytes_freed,
            }
            for g in plan.groups
            if g.action in ("demote", "promote", "blocked", "skip")
        ],
    }
    if executor is not None and cfg.policy.auto_apply and plan.actionable:
        out["applied"] = executor.apply(plan, trigger="sweeper").to_dict()
    out["tags_changed"] = tagged
    out["leftover_views"] = leftovers
    out["seconds"] = round(time.time() - t0, 3)
    state.put(catalog.conn, "last_sweep", out)
    return out


def maintain_tags(cfg: Config, clients, snap, plan) -> int:
    """policy.tag_no_external_links: keep demote_require_tag true to qbhook's own link facts."""
    tag = cfg.policy.demote_require_tag
    if not (cfg.policy.tag_no_external_links and tag):
        return 0
    by_name = {c.name: c for c in clients}
    changes = tag_changes(snap, plan, tag)
    for instance, h, op in changes:
        client = by_name[instance]
        (client.add_tags if op == "add" else client.remove_tags)(h, [tag])
    return len(changes)


@dataclass(frozen=True)
class Health:
    """What /healthz and ``qbhook status`` say about the worker: ok, and one line why."""

    ok: bool
    reason: str
    detail: dict = field(default_factory=dict)


class WorkerHealth:
    """The worker loop's vital signs, shared with the HTTP thread.

    Model: the loop beats on every pass (claiming, recording, idling). It is unhealthy
    when its thread is gone, when it has not beaten for ``stall_after_s`` while not busy
    with a job (stuck in a lock or a hung call), or when its last ``fail_threshold``
    passes all failed (storage errors: full disk, I/O error). Being busy with one job
    counts as alive however long it takes: moves take hours and the executor bounds
    every wait itself.
    """

    def __init__(self, *, stall_after_s: float = 300.0, fail_threshold: int = 3, clock=time.time):
        self.stall_after_s = stall_after_s
        self.fail_threshold = fail_threshold
        self._clock = clock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._beat = clock()
        self._doing = "starting"
        self._busy_since: float | None = None
        self._failures = 0
        self._failing_since: float | None = None
        self._last_error: str | None = None

    def attach(self, thread: threading.Thread) -> None:
        self._thread = thread

    def beat(self, doing: str) -> None:
        with self._lock:
            self._beat = self._clock()
            self._doing = doing
            self._busy_since = None

    def busy(self, doing: str) -> None:
        with self._lock:
            self._beat = self._busy_since = self._clock()
            self._doing = doing

    def failed(self, error: str) -> int:
        """Record a failed pass; returns how many failed in a row."""
        error = " ".join(error.split())[:500]  # /healthz promises one line
        with self._lock:
            self._beat = self._clock()
            self._busy_since = None
            self._failures += 1
            if self._failing_since is None:
                self._failing_since = self._beat
            self._last_error = error
            return self._failures

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._failing_since = None

    def report(self) -> Health:
        with self._lock:
            now = self._clock()
            detail = {
                "doing": self._doing,
                "last_beat_s_ago": round(now - self._beat, 1),
                "failures_in_a_row": self._failures,
                "last_error": self._last_error,
            }
            if self._busy_since is not None:
                detail["busy_s"] = round(now - self._busy_since, 1)
            if self._thread is not None and not self._thread.is_alive():
                return Health(False, "worker thread has stopped; events are queued but not processed", detail)
            if self._failures >= self.fail_threshold:
                since = now - (self._failing_since or now)
                return Health(
                    False,
                    f"worker failing: {self._failures} attempts in a row over {since:.0f} s, last: {self._last_error}",
                    detail,
                )
            if self._busy_since is None and now - self._beat > self.stall_after_s:
                return Health(
                    False, f"worker stalled: no progress for {now - self._beat:.0f} s (last: {self._doing})", detail
                )
            return Health(True, f"worker {self._doing}", detail)


class Worker:
    """Claims jobs one at a time. Several workers (processes) may run; the queue and locks serialize.

    The loop never dies of an error: a failed pass (storage full, I/O error, a bug) is
    logged, counted in ``health`` and retried after a backoff. A job's outcome that could
    not be recorded is kept and recorded first on the next pass, so the job neither
    stays "running" nor runs twice because the disk was full for a while.
    """

    ORPHAN_CHECK_S = 60.0
    # Workers this host cannot judge (other hosts, other pid namespaces): silent this long
    # means gone. Checked at start only, as before: a job's heartbeat is not refreshed
    # during a long move, so a periodic check could take a live worker's job.
    STALE_AFTER_S = 3600.0

    def __init__(
        self,
        cfg: Config,
        catalog: Catalog,
        clients,
        *,
        executor=None,
        debounce_s: float = DEBOUNCE_S,
        worker_id: str | None = None,
        health: WorkerHealth | None = None,
        retry_base_s: float = 1.0,
        retry_cap_s: float = 60.0,
    ):
        self.cfg = cfg
        self.catalog = catalog
        self.clients = clients
        self.executor = executor
        self.queue = JobQueue(catalog.conn)
        self.debounce_s = debounce_s
        # Default: named after the thread that runs the loop (set again in loop()), so
        # requeue_orphaned can tell whether that thread still lives.
        self._own_id = worker_id is None
        self.worker_id = worker_id or queue_worker_id()
        self.health = health or WorkerHealth()
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self._unrecorded: tuple[int, str, str] | None = None  # (job id, "complete"|"fail", text)
        self._next_orphan_check = 0.0
        self._stale_checked = False

    def run_once(self) -> bool:
        """One pass: record a held-back outcome, or process one ready job. False when idle.

        Storage errors propagate (the loop retries); errors of the job itself become its
        recorded failure.
        """
        if self._unrecorded is not None:
            self.health.beat(f"recording the outcome of job {self._unrecorded[0]}")
            self._record()
            return True
        now = time.time()
        if now >= self._next_orphan_check:
            self.health.beat("requeueing jobs of dead workers")
            self.requeue_orphans()
        self.health.beat("claiming")
        job = self.queue.claim(self.worker_id, now=time.time() - self.debounce_s)
        if job is None:
            self.health.beat("idle")
            return False
        self.health.busy(f"busy with job {job.id}")
        outcome, text, storage_error = self._process(job)
        self._unrecorded = (job.id, outcome, text)
        self.health.beat(f"recording the outcome of job {job.id}")
        self._record()
        if storage_error is not None:
            # The job's failure is recorded (it retries with the queue's backoff), and the
            # loop backs off and counts it too: a full disk fails every job alike.
            raise storage_error
        return True

    def _process(self, job) -> tuple[str, str, sqlite3.Error | None]:
        try:
            result = handle_job(self.cfg, self.catalog, self.clients, job, executor=self.executor)
            # Inside the try: a result that cannot be serialised must not leave the job running.
            text = json.dumps(result, sort_keys=True)
        except UnknownTorrent as e:
            return "complete", json.dumps({"note": str(e)}), None
        except QbhookError as e:
            log.warning("job %d failed: %s", job.id, e)
            return "fail", str(e), None
        except sqlite3.Error as e:
            log.error("job %d failed on the catalog: %s", job.id, e)
            return "fail", f"catalog error: {e}", e
        except Exception as e:  # a bug must not kill the worker; the job parks as dead later
            log.exception("job %d crashed", job.id)
            return "fail", f"internal error: {e!r}", None
        return "complete", text, None

    def _record(self) -> None:
        if self._unrecorded is None:
            return
        job_id, outcome, text = self._unrecorded
        try:
            if outcome == "complete":
                self.queue.complete(job_id, text, worker_id=self.worker_id)
            else:
                self.queue.fail(job_id, text, worker_id=self.worker_id)
        except QueueError as e:
            # Not ours any more (requeued meanwhile): whoever owns it records its own outcome.
            log.warning("outcome of job %d dropped: %s", job_id, e)
        self._unrecorded = None

    def requeue_orphans(self) -> None:
        """Jobs a dead worker left running go back to pending now (see JobQueue.requeue_orphaned);
        the first call also applies the heartbeat cutoff to workers this host cannot judge."""
        stale = None if self._stale_checked else self.STALE_AFTER_S
        for job_id in self.queue.requeue_orphaned(stale_after_s=stale):
            log.warning("job %d was left running by a worker that is gone; requeued", job_id)
        self._stale_checked = True
        self._next_orphan_check = time.time() + self.ORPHAN_CHECK_S

    def loop(self, stop: threading.Event, idle_s: float = 1.0) -> None:
        if self._own_id and self._unrecorded is None:
            self.worker_id = queue_worker_id()
        failures = 0
        while not stop.is_set():
            try:
                worked = self.run_once()
            except Exception as e:  # storage errors and bugs alike: never end the loop
                failures = self.health.failed(f"{type(e).__name__}: {e}")
                delay = min(self.retry_base_s * 2 ** (failures - 1), self.retry_cap_s)
                if failures == 1:
                    log.exception("worker pass failed; retrying in %.2g s", delay)
                else:
                    log.error(
                        "worker pass failed %d times in a row (%s: %s); retrying in %.2g s",
                        failures,
                        type(e).__name__,
                        e,
                        delay,
                    )
                stop.wait(delay)
                continue
            if failures:
                log.warning("worker recovered after %d failed pass(es)", failures)
                failures = 0
            self.health.succeeded()
            if not worked:
                stop.wait(idle_s)
