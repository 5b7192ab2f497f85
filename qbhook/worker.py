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
import socket
import threading
import time

from qbhook import state
from qbhook.catalog.store import Catalog
from qbhook.config import Config
from qbhook.errors import PathMapError, QbhookError, UnknownTorrent
from qbhook.events.queue import JobQueue
from qbhook.facts import ancestors
from qbhook.planner import make_plan, tag_changes
from qbhook.qbt.pathmap import PathMap
from qbhook.scanner import scan_pool
from qbhook.snapshot import build_snapshot

log = logging.getLogger(__name__)

DEBOUNCE_S = 5.0     # "added" then "finished" seconds later: let them coalesce into one job


def host_path(cfg: Config, path: str) -> str:
    """Events carry the sender's view of a path (often a container's): map it to the host if we can."""
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


def torrents_touching(cfg: Config, catalog: Catalog, infos, paths) -> set[str]:
    """Hashes of torrents whose files are, or share an inode with, any of ``paths``."""
    roots = [str(p.seeding_root) for p in cfg.pools]
    by_content: dict[str, list] = {}
    for t in infos:
        by_content.setdefault(posixpath.normpath(t.content_path or t.save_path), []).append(t.hash)
    candidates: set[str] = set()
    for raw in paths:
        p = host_path(cfg, raw)
        related = {p}
        pool = cfg.pool_of(p)
        if pool is not None and os.path.lexists(p) and os.path.isfile(p):
            catalog.record_path(p, pool.name)   # an import just linked it: refresh the facts
        row = catalog.inode_by_path(p)
        if row is not None:
            related |= {os.fsdecode(x) for x, _ in catalog.paths_of(row.id)}
            if not os.path.lexists(p):
                catalog.forget_path(p)   # deleted by the *arr: drop the stale link
        for r in related:
            for q in ancestors(r, roots):
                candidates.update(by_content.get(q, ()))
    return candidates


def handle_job(cfg: Config, catalog: Catalog, clients, job, *, executor=None) -> dict:
    """Plan (and maybe apply) the groups a job touches. Returns a JSON-able result."""
    infos = [t for c in clients for t in c.torrents()]
    known = {h for t in infos for h in t.hashes}
    hashes = {h for h in job.hashes if h in known}
    missing = sorted(set(job.hashes) - hashes)
    hashes |= torrents_touching(cfg, catalog, infos, job.paths)
    if not hashes:
        return {"groups": [], "note": "no torrent in any configured client matches this event" +
                (f" (unknown hashes: {', '.join(missing)})" if missing else "")}
    snap = build_snapshot(cfg, catalog, clients, hashes=sorted(hashes), infos=infos)
    plan = make_plan(snap, cfg.policy)
    maintain_tags(cfg, clients, snap, plan)
    result = {"groups": [{"group_id": g.group_id, "action": g.action, "reason": g.reason, "names": g.names}
                         for g in plan.groups]}
    if missing:
        result["unknown_hashes"] = missing
    if executor is not None and cfg.policy.auto_apply and plan.actionable:
        summary = executor.apply(plan, trigger="worker")
        result["applied"] = summary.to_dict()
    state.put(catalog.conn, "last_event_plan", {"job": job.id, **result})
    return result


def sweep(cfg: Config, catalog: Catalog, clients, *, executor=None, progress=None) -> dict:
    """Incremental scan + plan everything (+ apply when policy allows)."""
    t0 = time.time()
    scans = [scan_pool(catalog, p, cfg.scan, progress=progress).as_dict() for p in cfg.pools]
    snap = build_snapshot(cfg, catalog, clients, progress=progress)
    plan = make_plan(snap, cfg.policy)
    tagged = maintain_tags(cfg, clients, snap, plan)
    out = {"started_at": t0, "scans": scans, "plan": plan.summary(),
           "pending": [{"group_id": g.group_id, "action": g.action, "reason": g.reason, "names": g.names,
                        # sizes and pools: the status page charts blocked bytes per pool from these
                        "source_pool": g.source_pool, "target_pool": g.target_pool,
                        "payload_bytes": g.payload_bytes, "bytes_to_copy": g.bytes_to_copy,
                        "bytes_freed": g.bytes_freed}
                       for g in plan.groups if g.action in ("demote", "promote", "blocked", "skip")]}
    if executor is not None and cfg.policy.auto_apply and plan.actionable:
        out["applied"] = executor.apply(plan, trigger="sweeper").to_dict()
    out["tags_changed"] = tagged
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


class Worker:
    """Claims jobs one at a time. Several workers (processes) may run; the queue and locks serialize."""

    def __init__(self, cfg: Config, catalog: Catalog, clients, *, executor=None, debounce_s: float = DEBOUNCE_S,
                 worker_id: str | None = None):
        self.cfg = cfg
        self.catalog = catalog
        self.clients = clients
        self.executor = executor
        self.queue = JobQueue(catalog.conn)
        self.debounce_s = debounce_s
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"

    def run_once(self) -> bool:
        """Process one ready job; False when none is ready."""
        job = self.queue.claim(self.worker_id, now=time.time() - self.debounce_s)
        if job is None:
            return False
        try:
            result = handle_job(self.cfg, self.catalog, self.clients, job, executor=self.executor)
        except UnknownTorrent as e:
            self.queue.complete(job.id, json.dumps({"note": str(e)}), worker_id=self.worker_id)
        except QbhookError as e:
            log.warning("job %d failed: %s", job.id, e)
            self.queue.fail(job.id, str(e), worker_id=self.worker_id)
        except Exception as e:  # noqa: BLE001 - a bug must not kill the worker; the job parks as dead later
            log.exception("job %d crashed", job.id)
            self.queue.fail(job.id, f"internal error: {e!r}", worker_id=self.worker_id)
        else:
            self.queue.complete(job.id, json.dumps(result, sort_keys=True), worker_id=self.worker_id)
        return True

    def loop(self, stop: threading.Event, idle_s: float = 1.0) -> None:
        self.queue.requeue_stale(3600)
        while not stop.is_set():
            if not self.run_once():
                stop.wait(idle_s)
