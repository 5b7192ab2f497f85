"""Turn queued events into decisions (and, when policy allows, moves).

A job names torrents (hashes) and/or files (paths). The worker finds every
torrent those touch, re-reads their facts, plans their groups and, with
``policy.auto_apply``, hands actionable groups to the executor. The sweeper is
the same pipeline over everything, catching what events missed; a job whose lists were
capped (``truncated``: it cannot name everything its events did) runs a sweep (``_swept``).

**Incremental sweeps.** A sweep always scans both pools and syncs the torrent index; it
then re-plans only the groups whose decision may have changed ("dirty"), through the same
targeted path as a job (the snapshot's closure completes each to its whole group). When
nothing is dirty there is no snapshot and no plan; ``replanned`` and ``full`` in the
sweep's result (and its log line) say what was re-planned and why.

Why skipping a group is sound. A decision (``qbhook.decide``) is a pure function of

1. the group's torrent facts: save path, category, tags, state (stable or not), progress,
   ATM, sizes, completion time, file list. Covered: the index sync reports every torrent
   whose such facts changed, came or went (``SyncReport.touched``, volatile fields such as
   speeds ignored); those torrents and the rest of their last group are dirty;
2. inode facts: links (nlink and known paths), sizes, hashes, of the group's files and of
   same-content files elsewhere (donors, library copies, converge partners). Covered: a scan
   writes every path whose (inode, size, mtime, ctime, nlink) changed with its scan id
   (``seen_scan``), so files whose inode a scan recorded after the last plan's mark, or that
   were hashed after their torrent's decision, or that the catalog no longer has, are dirty;
   so are files of the size of such an inode (content is size + hash; payload sizes only,
   see ``_CONTENT_MIN_SIZE``). A library copy's deletion names no inode: the stay it
   explains is re-planned every sweep (``_UNSETTLED_STAYS``);
3. configuration. Covered: a changed config digest re-plans everything;
4. time: ``min_seeding_age`` and ``import_grace`` waits, and groups held for a torrent missing from its
   client's listing (``facts.MISSING_GRACE_S``), are re-planned every sweep (``_UNSETTLED_STAYS``);
   settle time and hash budgets only ever block, and blocked is re-planned every sweep.

Every decision other than a settled stay (demote, promote, converge, blocked, skip, a
failed apply, none yet) is re-planned every sweep, so cross-group rules and the per-run
cap see every actionable group. A skipped group's decision is a stay, which acts on
nothing; the worst a missed input can do is delay a move until the next full re-plan.
Everything is re-planned on the first sweep of a process, after a config change, a
qBittorrent full update (restart, lost rid), an index rebuild, and every
``sweep.full_every``. The executor still re-checks every file before it unlinks anything. A sync
whose listing was refused (no torrent from a client the index holds torrents of) plans nothing
(``_refused_round``).

A full re-plan plans the groups a chunk at a time (``_plan_in_chunks``), so a sweep's peak
memory is one chunk's snapshot, not one of every file.

**What an unchanged sweep waits for**, and what it no longer waits for: the ``find`` walks
of the scans (the floor); qBittorrent computing its ``sync/maindata`` answer, which is now
asked for before the scans and overlaps them (``_Prefetch``); an fsync per commit of the
sweep's own records, now written under ``synchronous=NORMAL`` while every act (leftover
views, the executor's journal) keeps FULL (``_Commits`` says why a power cut then still
leaves a catalog the next sweep handles); three joins over every file row, skipped when
no inode was recorded or hashed since the oldest decision, or when the catalog's write
generation did not move since the last plan (``_changed_files``); and the index sync's
decoding of every stored record (``qbhook.catalog.indexer``: only what an answer merges
into is read).

**A sweep that dies part-way** leaves a catalog from which the next sweep is correct: a
change a scan recorded stays above the re-plan memo's scan mark until a plan covers it;
a maindata answer taken but not applied is asked for again from the older response id
(qBittorrent answers with a full update, a full re-plan); a sync applied but not re-planned
makes the next sweep a full one (``_synced_since``), since the sync reports each change once.
Leftover-view removal and the executor are crash-safe on their own (journal first).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import logging
import os
import posixpath
import sqlite3
import stat as stat_mod
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from qbhook.catalog import indexer, state
from qbhook.catalog.db import connect, rollback, still_current
from qbhook.catalog.hashing import HashBudget
from qbhook.catalog.scan import filesystems_away, prune_scans, scan_pools, skipped_by_scan
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import IndexInconsistent, TorrentIndex, skipped_files_known
from qbhook.clients.port import ClientPort
from qbhook.config import Config, ServerConfig
from qbhook.decide.facts import MISSING_STAY_LIKE, ancestors
from qbhook.decide.plan import ACTIONS, Plan
from qbhook.decide.planner import Room, finish_run, make_plan, pool_room, tag_changes
from qbhook.decide.snapshot import SnapshotBuilder, SweepReach, build_snapshot
from qbhook.dirfd import FolderReader, FolderRefused
from qbhook.errors import (
    CatalogUpgraded,
    LockBusy,
    PathMapError,
    QbhookError,
    QbtUnreachable,
    QueueError,
    RtorrentUnreachable,
    UnfinishedRuns,
    UnknownTorrent,
)
from qbhook.events import alerts
from qbhook.events._job import FINISHED_KEPT
from qbhook.events.queue import OVERFLOW_KEY, JobQueue, backoff_s
from qbhook.events.queue import worker_id as queue_worker_id
from qbhook.events.status import overdue
from qbhook.move.run import run_apply
from qbhook.pathmap import PathMap
from qbhook.paths import is_within, normalize
from qbhook.space import space_at

log = logging.getLogger(__name__)

DEBOUNCE_S = 5.0  # "added" then "finished" seconds later: let them coalesce into one job
# One refused path's reason at most, in a job's result and its log line (``_first_few``): a path
# an event names may be 8,192 characters (``_fields.MAX_STRING_CHARS``), five of them 40 KB.
RESULT_ITEM_CHARS = 512


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

    A path that cannot be made canonical, or that goes through a symlink below its pool's root,
    is not looked up nor recorded; its reason is appended to ``rejected``. A path no scan records
    (``scan.skipped_by_scan``) is neither read, looked up nor recorded, and is no refusal: it
    matches the torrents whose content paths hold it, by its spelling only. Any other path in a
    pool is lstat-ed once, in its folder opened below the pool's root (``dirfd.FolderReader``),
    and that one lstat is what is recorded and what says whether it is gone. A path outside
    every pool is never read at all: only the catalog is asked about it.
    """
    with FolderReader(str(p.path) for p in cfg.pools) as reader:
        return _torrents_touching(cfg, catalog, infos, paths, rejected, reader)


def _torrents_touching(cfg: Config, catalog: Catalog, infos, paths, rejected, reader: FolderReader) -> set[str]:
    roots = [str(r) for r in cfg.seeding_roots]
    by_content: dict[str, list] = {}
    for t in infos:
        by_content.setdefault(posixpath.normpath(t.content_path or t.save_path), []).append(t.hash)
    candidates: set[str] = set()
    for raw in paths:
        try:
            p = host_path(cfg, raw)
        except PathMapError as e:
            if rejected is not None:
                rejected.append(f"event path refused: {e}")
            continue
        for r in _related_paths(cfg, catalog, p, rejected, reader):
            for q in ancestors(r, roots):
                candidates.update(by_content.get(q, ()))
    return candidates


def _related_paths(cfg: Config, catalog: Catalog, p: str, rejected, reader: FolderReader) -> set[str]:
    """``p`` and every catalogued link of the inode it was and of the one it is now (empty: refused;
    ``p`` alone: a path no scan records, ``scan.skipped_by_scan``).

    Both inodes: an upgrade under a naming scheme without quality replaces the library file
    under the same name (``deletedFiles[].path`` is the new ``episodeFile.path``), and the
    torrent seeding the old inode has just lost its library copy.
    """
    related = {p}
    pool = cfg.pool_of(p)
    st = None
    if pool is not None and p != (root := os.path.normpath(str(pool.path))):
        if skipped_by_scan(p, root, cfg.scan):
            # The scan's: a snapshot under .zfs (an automount), a Sample folder, qbhook's staging,
            # holding and relink names. What no scan records, no event reads, records nor looks up
            # either; but it is no refusal: a torrent's own file (``Movie/Sample/s.mkv``) still
            # matches that torrent by its content path, as a string, and that only re-plans it.
            return related
        try:
            st = reader.lstat(p)
        except FolderRefused as e:
            # Recording it would stat (and identify) whatever filesystem the link points to.
            if rejected is not None:
                rejected.append(f"event path refused: {p} goes through a symlink: {e.folder} -> {e.target}")
            return set()
        except PathMapError as e:  # host_path made it canonical; kept as the snapshot's _lstat
            if rejected is not None:
                rejected.append(f"event path refused: {e}")
            return set()
        gone = st is None
    else:
        # Never read: outside every pool is no place of ours (a sibling sharing the pool's prefix,
        # /etc, an autofs path this root process would mount), and a pool's root is no file. The
        # catalog's links of the path are still looked up; a row it may hold (a pool since taken
        # out of the config) stays, as a scan keeps what it cannot see: unknown is not deleted.
        gone = False
    before = catalog.inode_by_path(p)  # read before record_path points p at the new inode
    rows = [before] if before is not None else []
    if st is not None and stat_mod.S_ISREG(st.st_mode):
        # an import just linked it: refresh the facts
        after = catalog.inode(catalog.record_path(p, pool.name, st=st))
        if after is not None and (before is None or after.id != before.id):
            rows.append(after)
    links = [x for row in rows for x, _ in catalog.paths_of(row.id)]
    if not rows and _library_folder(cfg, p, st):
        links += catalog.links_under(p)
    for x in links:
        try:
            related.add(normalize(os.fsdecode(x)))
        except PathMapError:
            continue  # an odd spelling in an old catalog: not a path we look up
    # Deleted by the *arr: drop the stale link, unless its filesystem is not mounted now (an
    # *arr sends missingFromDisk for every file of a nested dataset that dropped): the scan
    # keeps those rows, hashes and all, and so does an event; the next scan judges them.
    if before is not None and gone and before.fs not in filesystems_away(catalog):
        catalog.forget_path(p)
    return related


def _library_folder(cfg: Config, p: str, st: os.stat_result | None) -> bool:
    """Whether ``p`` (no catalogued file) is a folder whose catalogued files' links name torrents.

    SeriesDelete, MovieDelete, AlbumDelete and AuthorDelete name only the media's folder
    (gone by now, or kept): the torrents seeding its files are found through those files'
    links (``Catalog.links_under``). A folder in a seeding root needs none of that: its torrents
    are found by their content paths (``ancestors``). A folder holding a seeding root (a pool
    root, ``/``) is refused: its files are every file, which is a sweep's work, not an event's.
    """
    if st is not None and not stat_mod.S_ISDIR(st.st_mode):
        return False
    return not any(is_within(p, r) or is_within(r, p) for r in map(str, cfg.seeding_roots))


def handle_job(cfg: Config, catalog: Catalog, clients: Iterable[ClientPort], job, *, executor=None) -> dict:
    """Plan (and maybe apply) the groups a job touches. Returns a JSON-able result."""
    if job.truncated or not (job.hashes or job.paths):
        return _swept(cfg, catalog, clients, job, executor)
    listed_at = time.time()  # the plan's created_at: never later than its listing (executor._check_no_newcomer)
    infos = [t for c in clients for t in c.torrents()]
    known = {h for t in infos for h in t.hashes}
    hashes = {h for h in job.hashes if h in known}
    missing = sorted(set(job.hashes) - hashes)
    rejected: list[str] = []
    hashes |= torrents_touching(cfg, catalog, infos, job.paths, rejected)
    if rejected:
        log.warning("job %s: %s", job.id, _first_few_said(rejected, "; "))
    if not hashes:
        return {
            "groups": [],
            "note": "no torrent in any configured client matches this event"
            + (f" (unknown hashes: {_first_few_said(missing, ', ')})" if missing else ""),
            **_unused(missing, rejected),
        }
    # Moments after the event: policy.import_grace, for the plan and the hashing it asks for alike.
    snap = build_snapshot(cfg, catalog, clients, hashes=sorted(hashes), infos=infos, now=listed_at, after_event=True)
    plan = make_plan(snap, cfg.policy, after_event=True)
    maintain_tags(cfg, clients, snap, plan)
    # The torrent index learns these torrents from what was just read (no extra request).
    indexer.record_snapshot(catalog, infos, snap)
    TorrentIndex(catalog.conn).record_decisions(plan.groups)
    result = {
        "groups": [
            {"group_id": g.group_id, "action": g.action, "reason": g.reason, "names": g.names} for g in plan.groups
        ]
    }
    result |= _unused(missing, rejected)
    if executor is not None and cfg.policy.auto_apply and plan.actionable:
        summary = executor.apply(plan, trigger="worker")
        result["applied"] = summary.to_dict()
    state.put(catalog.conn, "last_event_plan", {"job": job.id, **result})
    return result


def _unused(missing: list[str], rejected: list[str]) -> dict:
    """A job's result's lists of what it named and could not use: hashes no client has, paths
    refused; the first ``FINISHED_KEPT`` of each (``_first_few``) and how many there were."""
    out: dict = {}
    if missing:
        out |= {"unknown_hashes": _first_few(missing), "unknown_count": len(missing)}
    if rejected:
        out |= {"rejected_paths": _first_few(rejected), "rejected_count": len(rejected)}
    return out


def _first_few(items: list[str]) -> list[str]:
    """The first ``FINISHED_KEPT`` of a list that grows with what a job's events named, each at most
    ``RESULT_ITEM_CHARS``: a result is kept with its finished job and logged, and a Radarr delete
    naming 3,300 paths under .zfs kept 3,300 refusals (a 757 KB row, bigger than its body) and
    logged 3,300 warnings. As a finished job keeps of its own lists (``_job.FINISHED_KEPT``)."""
    return [s if len(s) <= RESULT_ITEM_CHARS else s[: RESULT_ITEM_CHARS - 3] + "..." for s in items[:FINISHED_KEPT]]


def _first_few_said(items: list[str], sep: str) -> str:
    """``_first_few`` of ``items`` as one line, saying how many more there were."""
    more = len(items) - FINISHED_KEPT
    return sep.join(_first_few(items)) + (f"{sep}and {more} more" if more > 0 else "")


def _swept(cfg: Config, catalog: Catalog, clients: Iterable[ClientPort], job, executor) -> dict:
    """A job that names no torrent and no file (``sweep:<source>``, e.g. an *arr's media deleted
    without its paths) means "something changed, look around" (``Event.coalesce_key``), and a
    job whose lists were capped (``events._job``: a hot subject's burst of events) lost the
    torrents and files named past the caps, and nothing says which: the worker sweeps for both,
    as for the overflow job (``queue.OVERFLOW_KEY``: events that came while the queue was full).
    The sweep's scans record every file those events changed and its index sync every torrent,
    so it re-plans (and, with ``auto_apply``, applies) their groups and the kept names' alike.
    Waiting for the sweeper instead could take ``server.sweep_interval`` (hours), or for ever
    under ``serve --no-sweep``."""
    out = sweep(cfg, catalog, clients, executor=executor, automatic=True)
    if job.coalesce_key == OVERFLOW_KEY:
        note = f"{job.event_count} event(s) came while the queue was full (server.max_pending): swept for them"
    elif job.truncated:
        note = f"more events than one job keeps ({job.event_count}): swept instead of planning the names kept"
    else:
        note = "the event names no torrent and no file: swept (a look around)"
    result = {
        "groups": out["pending"],
        "note": note,
        "sweep": {"full": out["full"], "replanned": out["replanned"]},
    }
    if "applied" in out:
        result["applied"] = out["applied"]
    state.put(catalog.conn, "last_event_plan", {"job": job.id, **result})
    return result


def sweep(
    cfg: Config,
    catalog: Catalog,
    clients: Iterable[ClientPort],
    *,
    executor=None,
    progress=None,
    automatic: bool = False,
) -> dict:
    """Incremental scan + sync, then re-plan what may have changed (+ apply when policy allows).

    ``automatic``: no person asked (`serve`'s sweeper, a ``_swept`` job, `qbhook sweep --automatic`
    from a timer): its plans hold back what ``policy.import_grace`` does (``policy_blocks_demote``),
    as a job's do. A person's `qbhook sweep` is not held back. See the module docstring for which
    groups are re-planned and why the others may be skipped, and for which of its commits are
    durable at once (``_Commits``).
    """
    commits = _Commits(catalog.conn)
    try:
        return _sweep(cfg, catalog, list(clients), commits, executor, progress, automatic)
    finally:
        commits.acts()  # the connection as it was, however the sweep ended


def _sweep(
    cfg: Config, catalog: Catalog, clients: list[ClientPort], commits: _Commits, executor, progress, automatic: bool
) -> dict:
    t0 = time.time()
    clock = _Phases()

    def replan() -> tuple[tuple[dict, list], Plan | None]:
        out, plan, tagged = _scan_sync_replan(cfg, catalog, clients, commits, progress, t0, clock, automatic)
        if not (cfg.policy.auto_apply and plan is not None and plan.actionable):
            return (out, tagged), None
        commits.acts()  # the executor's journal: durable before each act (synchronous=FULL)
        return (out, tagged), plan

    if executor is None:  # nothing may be acted on: no leftover view removed, no plan applied
        ((out, tagged), _), leftovers = replan(), []
    else:
        # move.run's order, as `apply --yes`: leftover views first (under acts(): _Commits
        # starts there), so the scans see the pools as they are; then the re-plan and the executor.
        done = run_apply(cfg, catalog, clients, executor, replan, dry_run=False, trigger="sweeper")
        (out, tagged), leftovers = done.planned, done.leftovers
        if done.summary is not None:
            out["applied"] = done.summary.to_dict()
            clock.lap("apply")
            commits.records()
    out.update(tags_changed=tagged, leftover_views=leftovers, pruned=housekeep(cfg, catalog.conn))
    out["seconds"] = round(time.time() - t0, 3)
    out["phase_seconds"] = clock.laps
    log.info(
        "sweep: %s re-plan of %d group(s) %s in %.1f s",
        "full" if out["full"] else "incremental",
        out["replanned"]["groups"],
        json.dumps(out["replanned"]["why"], sort_keys=True),
        out["seconds"],
    )
    state.put(catalog.conn, "last_sweep", out)
    return out


def _scan_sync_replan(
    cfg: Config,
    catalog: Catalog,
    clients: list[ClientPort],
    commits: _Commits,
    progress,
    t0: float,
    clock: _Phases,
    automatic: bool,
) -> tuple[dict, Plan | None, list]:
    """The sweep's plan source: scans, index sync, the re-plan of what may have changed. Returns
    the sweep's result so far, the plan (None: nothing dirty, no snapshot) and the tag changes."""
    fetching = [_Prefetch.start(catalog, c) for c in clients]  # qBittorrent answers while the pools are walked
    commits.records()
    scans = [r.as_dict() for r in scan_pools(catalog, list(cfg.pools), cfg.scan, progress=progress)]
    clock.lap("scans")
    # The torrent index first (after the scans, so files resolve to fresh inodes): one request
    # per unchanged qBittorrent, then the snapshot takes its file lists from it.
    memo = _ReplanMemo.load(catalog.conn)
    synced, followed, behind = _sync_index(catalog, fetching, memo)
    clock.lap("index")
    if refused := [r.refused for r in synced if r.refused]:
        return _refused_round(catalog, synced, refused, t0, scans), None, 0
    full_why = _full_replan_reasons(cfg, memo, synced, t0) + behind
    mark = _scan_mark(catalog.conn)
    generation = catalog.generation()  # before the questions below: a later write makes the next sweep look again
    idx = TorrentIndex(catalog.conn)
    why: dict[str, int] = {}
    dirty = None if full_why else _dirty_torrents(catalog.conn, idx, memo, synced, why, generation)
    clock.lap("choose")
    plan, tagged, listing = _replan(cfg, catalog, idx, clients, synced, dirty, progress, automatic, t0)
    if plan is None:  # no snapshot to read the pools from: the checks that need no plan
        alerts.pool_checks(cfg, catalog.conn, _pool_space(cfg))
    groups = plan.groups if plan is not None else []
    _ReplanMemo.store(
        catalog.conn, cfg, memo, followed, full=dirty is None, started=t0, mark=mark, generation=generation
    )
    clock.lap("plan")
    out = {
        "started_at": t0,
        "scans": scans,
        # every group's current decision: re-planned now, or unchanged since it last was
        "plan": _decision_counts(idx, plan),
        "full": dirty is None,
        "replanned": {
            "groups": len(groups),
            "torrents": sum(len(g.torrents) for g in groups),
            "why": {r: 1 for r in full_why} if dirty is None else why,
        },
        "index": [r.as_dict() for r in synced],
        "index_listing": listing,
        "pending": _pending(groups),
    }
    return out, plan, tagged


def _refused_round(catalog: Catalog, synced, refused: list[str], t0: float, scans: list) -> dict:
    """The sweep's result when a client's listing was refused (``indexer._refuse``: no torrent,
    while the index holds some): nothing is planned or applied this round. The re-plan memo is
    left as it was, so the next sweep sees the index synced since the last plan and re-plans
    everything (``_synced_since``): the other clients' changes this sync reported are not lost."""
    for why in refused:
        log.warning("sweep: not planned: %s", why)
    return {
        "started_at": t0,
        "scans": scans,
        "plan": _decision_counts(TorrentIndex(catalog.conn), None),
        "full": False,
        "replanned": {"groups": 0, "torrents": 0, "why": {}},
        "refused": refused,
        "index": [r.as_dict() for r in synced],
        "index_listing": "none",
        "pending": [],
    }


def housekeep(cfg: Config, conn: sqlite3.Connection) -> dict[str, int]:
    """Forget the history that only grows with time (``sweep.keep_history``): event jobs done
    that long ago, scan records that old (``scan.prune_scans`` keeps what is still read), and
    torrents gone from their client that long ago, once the last stored plan has followed the
    sync that saw them go (``TorrentIndex.prune_gone``; its former group-mates are re-planned
    by then). Dead jobs stay (a person has to see them), and so does the journal (``qbhook
    history``). Runs after every sweep: `serve`'s and cron's `qbhook sweep` alike; the worker
    prunes the jobs on its own too (``Worker.PRUNE_EVERY``)."""
    keep = cfg.sweep.keep_history
    planned = _ReplanMemo.load(conn).synced or {}
    return {
        "jobs": JobQueue(conn).prune(keep),
        "scans": prune_scans(conn, cfg.pools, keep),
        "torrents": TorrentIndex(conn).prune_gone(keep, planned),
    }


class _Phases:
    """Wall seconds per phase of a sweep (``phase_seconds`` in its result): what it waited for."""

    def __init__(self):
        self.laps: dict[str, float] = {}
        self._at = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self._at, 3)
        self._at = now


class _Commits:
    """Which of a sweep's commits wait for the disk (``PRAGMA synchronous`` of its connection).

    The catalog runs WAL with ``synchronous=FULL``: every commit waits for an fsync. A sweep
    commits its own records several times (each pool's scan record and changes, the index's
    sync position and rows, the re-plan memo, decisions, alert state, ``last_sweep``): with
    ``records()`` those commits are written to the WAL without waiting for the disk
    (``synchronous=NORMAL``); ``acts()`` puts the connection back (FULL) before anything that
    acts, and the sweep ends with it in every case.

    Why this is safe. A process that dies (crash, kill) loses nothing committed: the WAL is
    written at each commit either way. Only a power cut or a kernel crash can lose commits
    made under NORMAL, and in WAL mode it loses a *suffix* of them (frames are appended in
    commit order and the file is synced as a whole), never a middle one, and never corrupts
    the database (SQLite's documented guarantee for WAL + NORMAL). So the catalog after a power
    cut is one an earlier moment (of this sweep or an earlier one) left, as if the process had
    died there; and every FULL commit (the executor's journal, the event queue) also makes
    durable every record committed before it. After a power cut the process is new: its first sweep
    re-plans everything, a new qBittorrent session answers with a full update, and the scans
    compare the disk with whatever the catalog kept, so a lost record is found again. What
    must be durable before an act is: the executor's journal (``executor.apply`` runs under
    ``acts()``), and leftover views are removed before ``records()``. Rollback-journal
    databases (not WAL) keep FULL: NORMAL could corrupt them.
    """

    FULL = 2

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        # At least FULL, whatever the connection was left at: acts never run with less.
        self.level = max(int(conn.execute("PRAGMA synchronous").fetchone()[0]), self.FULL)
        self.wal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
        conn.execute(f"PRAGMA synchronous = {self.level}")  # the sweep starts with acts (leftover views)

    def records(self) -> None:
        if self.wal:
            self.conn.execute("PRAGMA synchronous = NORMAL")

    def acts(self) -> None:
        # Only an error outside a Tx can leave one open here (a Tx ends its own): nothing of
        # it was committed, and the level cannot change inside a transaction.
        rollback(self.conn)
        self.conn.execute(f"PRAGMA synchronous = {self.level}")


class _Prefetch:
    """A client whose next ``sync/maindata`` request is sent in the background before the scans.

    qBittorrent takes most of an unchanged sync's time to compute its answer while the sweep
    would wait for the ``find`` walks of the scans: the two waits overlap. qBittorrent 4.x
    serializes every torrent on every request and diffs against the session's last answer
    (0.41-0.47 CPU-s at 5,000 torrents for an empty 9-byte diff, docs/benchmarks.md §8); 5.x
    keeps a per-session snapshot updated from torrent events, so there an unchanged answer costs
    little. Asked after the scans instead, the whole wait adds to the sweep (measured: 2.5-2.6x
    a bare ``find`` at 180k files against 1.7-1.9x with the prefetch). The answer is the
    client's state when asked, before the scans, which is what a sync right after the scans
    could also have seen had the client changed a moment later; its changes are applied after
    the scans (files resolve to fresh inodes) and the next sync reports what changed since. Only
    that one request, from the response id the index held, is answered from the prefetch;
    anything else (the index was reset or moved) asks the client. A sweep that fails before its
    sync has spent that response: the next one asks from the older id, which qBittorrent answers
    with a full update (a full re-plan).
    """

    def __init__(self, client, rid: int):
        self._client = client
        self._rid = rid
        self._answer: dict = {}
        self._thread = threading.Thread(target=self._fetch, name=f"maindata-{client.name}", daemon=True)

    @classmethod
    def start(cls, catalog: Catalog, client):
        if not hasattr(client, "maindata"):
            return client  # listed whole at sync time (indexer._sync_listing)
        try:
            rid = TorrentIndex(catalog.conn).sync_state(client.name)[0]
        except IndexInconsistent:
            return client  # an index the sync will rebuild: ask then
        p = cls(client, rid)
        p._thread.start()
        return p

    def _fetch(self) -> None:
        try:
            self._answer["data"] = self._client.maindata(self._rid)
        except BaseException as e:  # raised where the sync asks for it
            self._answer["error"] = e

    def maindata(self, rid: int = 0):
        self._thread.join()
        answer, self._answer = self._answer, {}
        if rid != self._rid or not answer:
            return self._client.maindata(rid)
        if "error" in answer:
            raise answer["error"]
        return answer["data"]

    def __getattr__(self, name: str):
        return getattr(self._client, name)


def _pool_space(cfg: Config) -> list[alerts.PoolSpace]:
    """Free space of each pool's seeding root (``space.space_at``, from its pool root down, as the
    snapshot reads it)."""
    out = []
    for p in cfg.pools:
        try:
            avail = space_at(p.seeding_root, p.path)[0].avail
        except OSError:
            continue  # not there: the scan of that pool has said so
        except FolderRefused as e:
            log.warning("pool %s: %s", p.name, e)  # swapped: its space would be another folder's
            continue
        out.append(alerts.PoolSpace(p.name, avail))
    return out


def _replan(
    cfg: Config,
    catalog: Catalog,
    idx: TorrentIndex,
    clients: Iterable[ClientPort],
    synced,
    dirty: set[str] | None,
    progress,
    automatic: bool,
    listed_at: float,
):
    """(plan or None, tags changed, where file lists came from) for ``dirty`` (None: everything).
    ``automatic``: `serve`'s sweep (``sweep``); ``listed_at``: a time no later than the listing the
    index holds (the sweep's start: its qBittorrent answer is prefetched before the scans)."""
    if dirty is not None and not dirty:
        return None, 0, "none"
    # Typing every stored record for the view costs more than the rest of an unchanged sweep.
    view = indexer.snapshot_view(catalog, clients, synced)
    listing = "live" if view is None else "index"
    if view is None and dirty:
        view = (clients, [t for c in clients for t in c.torrents()])  # to know which hashes exist
    if dirty:
        dirty = dirty & {h for t in view[1] for h in t.hashes}  # gone since the sync: nothing to plan
        if not dirty:
            return None, 0, listing
    if view is None:
        budget = HashBudget(cfg.scan.hash_budget)
        snap = _snapshot(cfg, catalog, clients, None, None, budget, progress, after_event=automatic)
        plan = make_plan(snap, cfg.policy, after_event=automatic)
        tagged = maintain_tags(cfg, clients, snap, plan)
        seen = _AlertView(snap.pools, [_AlertTorrent.of(t) for t in snap.torrents])
        del snap
    else:
        plan, seen, tagged = _plan_in_chunks(
            cfg, catalog, idx, clients, view, dirty, progress, automatic, listed_at, live=listing == "live"
        )
        indexer.write_back(catalog, view[0])  # lists asked live because a file may be renamed
    idx.record_decisions(plan.groups)
    alerts.sweep_checks(cfg, catalog.conn, seen, plan, partial=dirty is not None)
    return plan, tagged, listing


def _pending(groups) -> list[dict]:
    return [
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
        for g in groups
        if g.action in ("demote", "promote", "blocked", "skip")
    ]


# ------------------------------------------------------------------ what a sweep re-plans
#
# Set once per process: the first sweep of a process re-plans everything (nothing it keeps in
# memory, such as the scan memo, is trusted across processes to have seen every change).
_PROCESS = uuid.uuid4().hex
_MEMO_KEY = "sweep.replan"
# A scan still running (another process's `qbhook scan`) may not have written all its changes
# yet: changes are taken as planned only up to the scan before it. One that never finished
# (a killed process) stops holding the mark back after this long.
_UNFINISHED_SCAN_S = 3600.0
# Stays re-planned every sweep: ones that may end with time alone (min_seeding_age, import_grace, a
# torrent missing from its client's listing: ``facts.MISSING_GRACE_S``), and one that rests on
# another inode's existence (a library's own copy of the content: its removal is a deleted inode,
# which no changed-inode query can name). SQL LIKE prefixes.
_UNSETTLED_STAYS = ("policy: completed less than", "same content is used by a library", MISSING_STAY_LIKE)
# The same-size rule below only for files at least this big: payload files, whose sizes
# rarely collide. Extras (nfo, srt, artwork) share small sizes by the thousand; a change
# among them re-planning every group that has one would make every sweep a full one. What
# this can delay is a stay becoming a promote/converge of small files alone: until the next
# full re-plan (sweep.full_every), never a move.
_CONTENT_MIN_SIZE = 1 << 20


@dataclass(frozen=True)
class _ReplanMemo:
    """What the last sweep's plan covered (``state`` key ``sweep.replan``)."""

    process: str | None = None
    config: str | None = None
    full_at: float | None = None  # last full re-plan
    scan_mark: int = 0  # changes recorded by scans with ids up to this were planned
    synced: dict | None = None  # instance -> synced_at of the index sync this plan followed
    generation: int | None = None  # the catalog's write generation this plan's questions saw

    @classmethod
    def load(cls, conn) -> _ReplanMemo:
        raw, _ = state.get(conn, _MEMO_KEY, {})
        if not isinstance(raw, dict):
            return cls()
        try:
            return cls(
                process=raw.get("process"),
                config=raw.get("config"),
                full_at=_float_or_none(raw.get("full_at")),
                scan_mark=int(raw.get("scan_mark") or 0),
                synced=raw.get("synced") if isinstance(raw.get("synced"), dict) else None,
                generation=raw["generation"] if isinstance(raw.get("generation"), int) else None,
            )
        except (TypeError, ValueError):
            return cls()  # unreadable: the next sweep is a full one

    @staticmethod
    def store(
        conn,
        cfg: Config,
        old: _ReplanMemo,
        synced: dict,
        *,
        full: bool,
        started: float,
        mark: int,
        generation: int | None,
    ) -> None:
        state.put(
            conn,
            _MEMO_KEY,
            {
                "process": _PROCESS,
                "config": config_digest(cfg),
                "full_at": started if full else old.full_at,
                "scan_mark": mark,
                "synced": synced,
                "generation": generation,
            },
        )


def _float_or_none(v) -> float | None:
    return None if v is None else float(v)


def config_digest(cfg: Config) -> str:
    """A fingerprint of the loaded configuration (secrets are not part of its repr)."""
    return hashlib.sha256(repr(cfg).encode()).hexdigest()


def _full_replan_reasons(cfg: Config, memo: _ReplanMemo, synced, now: float) -> list[str]:
    """Why this sweep must re-plan every group (empty: an incremental re-plan is enough)."""
    why = []
    if memo.process != _PROCESS:
        why.append("first sweep of this process")
    if memo.config != config_digest(cfg):
        why.append("configuration changed")
    for r in synced:
        if r.mode == "full":
            why.append(f"{r.instance}: full update from the client")
        if r.rebuilt:
            why.append(f"{r.instance}: torrent index rebuilt")
    every = cfg.sweep.full_every
    if every <= 0:
        why.append("sweep.full_every is 0")
    elif memo.full_at is None or now - memo.full_at >= every:
        why.append("sweep.full_every elapsed")
    return why


def _sync_index(catalog: Catalog, fetching, memo: _ReplanMemo) -> tuple[list, dict, list[str]]:
    """(the sync's reports, each instance's ``synced_at`` right after it, ``_synced_since``
    read before it moved them).

    The times are the sync this sweep's plan follows, read before it plans: a sync by another
    command while the sweep plans is not in its plan, so the memo must not say it was (the next
    sweep re-plans it whole), and the rows it marked gone are kept for that sweep (``housekeep``)."""
    behind = _synced_since(catalog.conn, memo)
    synced = indexer.sync_all(catalog, fetching)
    return synced, _sync_times(catalog.conn), behind


def _sync_times(conn) -> dict:
    return {k: v["synced_at"] for k, v in TorrentIndex(conn).synced().items()}


def _synced_since(conn, memo: _ReplanMemo) -> list[str]:
    """A full re-plan reason if the index was synced after the last plan read it.

    A sync hands the torrents that changed to the sweep that made it, once: the next sync
    reports only later changes. A sweep that failed between its sync and its re-plan (an
    error while planning, qBittorrent gone mid-sweep) leaves the index newer than the last
    plan and those changes with no one to re-plan them; so does a sync by another command.
    """
    if memo.synced is None or memo.synced == _sync_times(conn):
        return []
    return ["index synced since the last plan"]


# The oldest scan still running: ``+id`` keeps SQLite from walking every scan in id order (its
# MIN shortcut), so it searches the few unfinished ones on their index (scans_unfinished).
SCAN_RUNNING_SQL = "SELECT MIN(+id) FROM scans WHERE finished_at IS NULL AND started_at > ?"


def _scan_mark(conn) -> int:
    """The highest scan id all of whose changes are in the catalog now."""
    running = conn.execute(SCAN_RUNNING_SQL, (time.time() - _UNFINISHED_SCAN_S,)).fetchone()[0]
    if running is not None:
        return running - 1
    return conn.execute("SELECT COALESCE(MAX(id), 0) FROM scans").fetchone()[0]


def _dirty_torrents(
    conn, idx: TorrentIndex, memo: _ReplanMemo, synced, why: dict[str, int], generation: int | None = None
) -> set[str]:
    """Present torrents whose group must be re-planned (``why`` counts them per reason)."""
    present = {r[0] for r in conn.execute("SELECT hash FROM torrents WHERE gone_at IS NULL")}

    def add(reason: str, hashes) -> None:
        hashes = (set(hashes) & present) - dirty  # counted under the first reason that names it
        if hashes:
            why[reason] = why.get(reason, 0) + len(hashes)
            dirty.update(hashes)

    dirty: set[str] = set()
    add("torrent changed", {h for r in synced for h in r.touched})
    add(
        "not a settled stay",
        (
            r[0]
            for r in conn.execute(
                "SELECT hash FROM torrents WHERE gone_at IS NULL AND (decision IS NULL OR group_id IS NULL "
                "OR decision != 'stay' OR " + " OR ".join("decision_reason LIKE ?" for _ in _UNSETTLED_STAYS) + ")",
                [p + "%" for p in _UNSETTLED_STAYS],
            )
        ),
    )
    changed, same_size = _changed_files(conn, memo, generation)
    add("files changed", changed)
    add("same size as a changed file", same_size)
    # A torrent that changed or went leaves its old group: the rest of that group re-plans too.
    gone_or_dirty = dirty | {h for r in synced for h in r.touched}
    if gone_or_dirty:
        rows = conn.execute("SELECT hash, group_id, gone_at FROM torrents WHERE group_id IS NOT NULL").fetchall()
        old_groups = {g for h, g, _gone in rows if h in gone_or_dirty}
        add("group-mate changed", (h for h, g, gone in rows if gone is None and g in old_groups))
    return dirty


def _changed_files(conn, memo: _ReplanMemo, generation: int | None = None) -> tuple[set[str], set[str]]:
    """(torrents with a changed file, torrents with a file the size of a changed payload file).

    ``generation``: the catalog's write generation now (``Catalog.generation``), None if unknown.
    """
    # Files whose inode a scan recorded since the last plan (new, changed size/mtime/ctime, a
    # link made or removed: nlink), hashed after their torrent's decision, or that the catalog
    # no longer has (inode NULL, or an inode row a scan dropped). Hashes the deciding sweep
    # made itself are older than its decision: they were planned with.
    missing = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT t.hash FROM torrent_files f JOIN torrents t ON t.id = f.torrent "
            "WHERE t.gone_at IS NULL AND f.inode IS NULL"
        )
    }
    # An inode row dropped under a file row: a pass over every file row (0.2 s at 180,000), so
    # only when the catalog was written since the last plan. A drop moves the write generation
    # (a trigger, any process), and the index refresh that follows any such move points the
    # row at what its path names now, NULL if nothing (found above, every sweep).
    if generation is None or generation != memo.generation:
        missing |= {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT t.hash FROM torrent_files f JOIN torrents t ON t.id = f.torrent "
                "WHERE t.gone_at IS NULL AND f.inode IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM inodes i WHERE i.id = f.inode)"
            )
        }
    # The two joins below read every file row; when no inode was recorded or hashed since the
    # oldest decision (one pass over the inodes, the usual unchanged sweep), they find nothing.
    # ``since`` is the earliest time a present torrent's rows below compare with.
    since = conn.execute("SELECT coalesce(MIN(coalesce(decided_at, 0)), 0) FROM torrents WHERE gone_at IS NULL")
    since = since.fetchone()[0]
    if not conn.execute(
        "SELECT EXISTS (SELECT 1 FROM inodes WHERE seen_scan > ? OR hashed_at > ?)", (memo.scan_mark, since)
    ).fetchone()[0]:
        return missing, set()
    changed = missing | {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT t.hash FROM torrent_files f JOIN torrents t ON t.id = f.torrent "
            "JOIN inodes i ON i.id = f.inode WHERE t.gone_at IS NULL "
            "AND (i.seen_scan > ? OR i.hashed_at > coalesce(t.decided_at, 0))",
            (memo.scan_mark,),
        )
    }
    # Same-size content elsewhere can be a donor, a library copy or a converge partner of a
    # group's file (content = size + hash): a new, changed or newly hashed inode of a payload
    # size re-plans the torrents with a file of that size decided before it.
    oldest = conn.execute("SELECT coalesce(MIN(decided_at), 0) FROM torrents WHERE gone_at IS NULL").fetchone()[0]
    same_size = {
        r[0]
        for r in conn.execute(
            "WITH s AS (SELECT size, MAX(CASE WHEN seen_scan > ? THEN 1e300 ELSE hashed_at END) AS at "
            "FROM inodes WHERE size >= ? AND (seen_scan > ? OR hashed_at > ?) GROUP BY size) "
            "SELECT DISTINCT t.hash FROM torrent_files f JOIN torrents t ON t.id = f.torrent "
            "JOIN s ON s.size = f.size WHERE t.gone_at IS NULL AND s.at > coalesce(t.decided_at, 0)",
            (memo.scan_mark, _CONTENT_MIN_SIZE, memo.scan_mark, oldest),
        )
    }
    return changed, same_size


def _decision_counts(idx: TorrentIndex, plan) -> dict:
    """plan.summary()'s shape over every group: this plan's, plus the last decision of the rest."""
    out = {a: 0 for a in ACTIONS}
    planned = set()
    if plan is not None:
        for g in plan.groups:
            out[str(g.action)] += 1
            planned.add(g.group_id)
    for gid, decision in idx.conn.execute(
        "SELECT DISTINCT group_id, decision FROM torrents WHERE gone_at IS NULL AND group_id IS NOT NULL"
    ):
        if gid not in planned and decision in out:
            planned.add(gid)
            out[decision] += 1
    actionable = plan.actionable if plan is not None else []
    out["bytes_to_copy"] = sum(g.bytes_to_copy for g in actionable)
    out["bytes_freed"] = sum(g.bytes_freed for g in actionable)
    return out


# ------------------------------------------------------------------ planning in chunks
#
# A snapshot holds a fact per file and per inode: at 180,000 files it was most of `serve`'s
# peak memory. A decision is a function of its own group's facts (plus catalog content, read
# per group), so groups can be planned a chunk at a time, each snapshot freed before the next;
# only what crosses groups (a link from a path another group deletes, converging onto an
# inode another group moves, the per-run cap) is resolved once over the merged plan, by the
# planner's own rules.
_CHUNK_TORRENTS = 1000


@dataclass(frozen=True)
class _AlertTorrent:
    """What the sweep's alerts read of a torrent (not its files: those are what chunks free)."""

    hash: str
    name: str
    auto_tmm: bool
    tags: frozenset

    @classmethod
    def of(cls, t) -> _AlertTorrent:
        return cls(t.hash, t.name, t.auto_tmm, t.tags)


@dataclass(frozen=True)
class _AlertView:
    pools: tuple
    torrents: list


def _snapshot(
    cfg: Config,
    catalog: Catalog,
    clients: Iterable[ClientPort],
    hashes,
    infos,
    budget: HashBudget,
    progress,
    listing=None,
    skipping=None,
    reach=None,
    *,
    after_event: bool = False,
    live: bool = True,
):
    """build_snapshot with one hash budget for the whole sweep, whatever the number of chunks.
    ``listing``: every torrent, when ``infos`` is a chunk of them, ``skipping`` what the index
    says of their skipped files and ``reach`` what the chunks share of the torrents each leaves out,
    ``live`` whether they were listed from the clients, not the index (``SnapshotBuilder.build``);
    ``after_event``: as ``make_plan``'s."""
    # background hashing: idle I/O, nice 19, at most scan.hash_budget bytes per sweep
    b = SnapshotBuilder(cfg, catalog, list(clients), progress=progress, background=True, after_event=after_event)
    b.budget = budget
    return b.build(hashes, infos=infos, listing=listing, skipping=skipping, reach=reach, live=live)


def _chunks(idx: TorrentIndex, infos, hashes: set[str] | None) -> list[list[str] | None]:
    """The torrents to plan, whole groups (as the index groups them) per chunk of ~_CHUNK_TORRENTS."""
    wanted = [t for t in infos if hashes is None or t.hash in hashes]
    if len(wanted) <= _CHUNK_TORRENTS:
        return [None if hashes is None else sorted(t.hash for t in wanted)]
    gid = idx.groups()
    members: dict[str, list[str]] = {}
    for t in wanted:
        members.setdefault(gid.get((t.instance, t.hash), t.hash), []).append(t.hash)
    out: list[list[str] | None] = [[]]
    for hs in members.values():
        if len(out[-1]) >= _CHUNK_TORRENTS:
            out.append([])
        out[-1].extend(hs)
    return out


def _plan_in_chunks(
    cfg: Config,
    catalog: Catalog,
    idx: TorrentIndex,
    clients: Iterable[ClientPort],
    view,
    hashes,
    progress,
    automatic: bool,
    listed_at: float,
    *,
    live: bool = True,
):
    """(merged plan, what the alerts read, tags changed) for ``hashes`` (None: every torrent).
    ``live``: ``view`` was listed from the clients, not from the index (``SnapshotBuilder.build``).

    The plan's ``created_at`` is ``listed_at``, the listing's time, not a chunk's: the executor
    reads the files of every torrent added since then (``_check_no_newcomer``), and chunks that
    hash for minutes would make a torrent added after the listing (in no chunk) look old.

    ``hashes`` given: each chunk is completed to whole groups by the snapshot's own closure.
    Every torrent: a chunk is the index's groups as they are (the closure would query the
    catalog for every file's links, doubling a full sweep), and ``_split_groups`` then checks
    the chunk's inodes for a seeding link of a torrent outside it; such groups (the index
    was behind the disk) are planned again through the closure.
    """
    budget = HashBudget(cfg.scan.hash_budget)
    grace = {"after_event": automatic}  # `serve`'s sweep: policy.import_grace, to plan and to hash alike
    groups: list = []
    seen = _AlertView((), [])
    tagged = 0
    chunks = _chunks(idx, view[1], hashes)
    incomplete: set[str] = set()
    room: dict[str, Room] = {}  # each pool's least free space a chunk read: the run's copies are spent from it
    # The index's file lists do not change while the chunks are planned: read once (~60 ms at
    # 180,000 file rows), not once a chunk; so are its unplaced files, lstat-ed once (``SweepReach``).
    shared = {
        "skipping": functools.cache(lambda: skipped_files_known(catalog.conn)),
        "reach": SweepReach(),
        "live": live,
    }
    for n, chunk in enumerate(chunks + [None]):
        if n == len(chunks):  # the pass for groups found incomplete
            if not incomplete:
                break
            groups = [g for g in groups if not incomplete.intersection(g.torrents)]
            snap = _snapshot(cfg, catalog, view[0], sorted(incomplete), view[1], budget, progress, **shared, **grace)
        elif chunk is None or hashes is not None:
            snap = _snapshot(cfg, catalog, view[0], chunk, view[1], budget, progress, **shared, **grace)
        else:
            members = set(chunk)
            # The whole listing too: a torrent of another chunk that may still write makes what is linked
            # where it keeps its content wait (converge.write_prefixes), as it would in one snapshot.
            part_infos = [t for t in view[1] if t.hash in members]
            snap = _snapshot(
                cfg, catalog, view[0], None, part_infos, budget, progress, listing=view[1], **shared, **grace
            )
            incomplete |= _split_groups(idx, snap, members)
        part = make_plan(snap, cfg.policy, **grace)
        room = {n: min(r, room.get(n, r), key=lambda x: x.free) for n, r in pool_room(snap.pools).items()}
        # a group the closure pulled into two chunks (the index behind the disk) is planned once
        have = {h for g in groups for h in g.torrents}
        part = Plan(groups=[g for g in part.groups if not have.intersection(g.torrents)], created_at=part.created_at)
        groups.extend(part.groups)
        tagged += maintain_tags(cfg, clients, snap, part)
        seen = _AlertView(snap.pools, seen.torrents + [_AlertTorrent.of(t) for t in snap.torrents])
        del snap, part
        gc.collect()  # the chunk's facts, before the next chunk builds its own
    # make_plan's passes over every chunk's groups (each chunk ran them on its own): the free space
    # a chunk's copies take is spent before the next chunk's, not checked again in full per chunk.
    finish_run(groups, cfg.policy, room)
    return Plan(groups=groups, created_at=listed_at), seen, tagged


def _split_groups(idx: TorrentIndex, snap, members: set[str]) -> set[str]:
    """Torrents of ``snap`` whose files share an inode with a torrent outside ``members``."""
    own = {f.path for t in snap.torrents for f in t.files}
    by_inode: dict = {}
    for t in snap.torrents:
        for f in t.files:
            if f.inode is not None:
                by_inode.setdefault(f.inode, set()).add(t.hash)
    out: set[str] = set()
    for key, users in by_inode.items():
        fact = snap.inodes.get(key)
        extra = [p for p in (fact.seeding_paths if fact else ()) if p not in own]
        if extra and _torrents_at(idx, extra) - members:
            out |= users
    return out


def _torrents_at(idx: TorrentIndex, paths: list[str]) -> set[str]:
    marks = ",".join("?" * len(paths))
    return {
        r[0]
        for r in idx.conn.execute(
            f"SELECT t.hash FROM torrent_files f JOIN torrents t ON t.id = f.torrent "
            f"WHERE t.gone_at IS NULL AND f.path IN ({marks})",
            [os.fsencode(p) for p in paths],
        )
    }


def maintain_tags(cfg: Config, clients: Iterable[ClientPort], snap, plan) -> int:
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
    """What the worker's health is: ok, one line why (``reason``, may hold the last error's text)
    and the same without any error text (``public``).

    /healthz answers anyone, without credentials, so it shows ``public`` only: an error's text
    names catalog paths, torrent names and client URLs, which the status page and /metrics
    show only redacted, behind credentials. The reason is in the server's log."""

    ok: bool
    reason: str
    public: str
    detail: dict = field(default_factory=dict)
    sweeper: bool = False  # a sweeper runs beside the worker (`qbhook status` checks its last sweep's age)
    sweeper_since: float | None = None  # when it started: its first sweep comes one interval later


class WorkerHealth:
    """The worker loop's vital signs, shared with the HTTP thread.

    Model: the loop beats on every pass (claiming, recording, idling). It is unhealthy
    when its thread is gone, when it has not beaten for ``stall_after_s`` while not busy
    with a job (stuck in a lock or a hung call), or when its last ``fail_threshold``
    passes all failed (storage errors: full disk, I/O error). Being busy with one job
    counts as alive however long it takes: moves take hours and the executor bounds
    every wait itself.

    A client that does not answer the worker's jobs (``client_unreachable``) is no failed pass
    and costs no job an attempt (``Worker``), but it is not health either: events are queued and
    none is processed. Health says which client and since when, until a job's try ends any
    other way (``client_answered``): a client back, or one whose URL was wrong from the start,
    which no try ever gets past, so it never goes silent.

    The sweeper, when one runs (``sweeper_started``), is the safety net for the events
    intake missed: while its last sweep failed (qBittorrent's password changed, a pool gone)
    it is unhealthy too, until a sweep succeeds; the worker's own trouble is named first. So is
    it when no sweep succeeded for twice its interval since it started or since its last success
    (hung: no sweep fails either), the rule `qbhook status` applies (``status.overdue``).
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
        self._blocked: tuple[int, ...] = ()  # unfinished runs the executor is refused by (RunsGate)
        self._blocked_why = ""
        self._unreachable: tuple[str, float, str] | None = None  # (client, since, its error's text)
        self._sweeper = False
        self._sweeper_since: float | None = None
        self._sweep_interval_s = ServerConfig.sweep_interval
        self._sweep_at: float | None = None  # the sweeper's last successful sweep
        self._sweep_failures = 0
        self._sweep_failing_since: float | None = None
        self._sweep_error: str | None = None

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

    def sweeper_started(self, interval_s: float = ServerConfig.sweep_interval) -> None:
        """A sweeper runs, a sweep every ``interval_s`` (``server.sweep_interval``) from now."""
        with self._lock:
            self._sweeper, self._sweeper_since, self._sweep_interval_s = True, self._clock(), interval_s

    def sweep_failed(self, error: str) -> int:
        """Record a failed sweep; returns how many failed in a row."""
        with self._lock:
            self._sweep_failures += 1
            if self._sweep_failing_since is None:
                self._sweep_failing_since = self._clock()
            self._sweep_error = " ".join(error.split())[:500]
            return self._sweep_failures

    def sweep_succeeded(self) -> int:
        """Record a sweep that succeeded; returns how many had failed in a row before it."""
        with self._lock:
            failed, self._sweep_failures, self._sweep_failing_since = self._sweep_failures, 0, None
            self._sweep_at = self._clock()
            return failed

    def blocked(self, runs: tuple[int, ...], why: str = "") -> None:
        """The executor refuses every plan while ``runs`` stay unfinished (``RunsGate``); () clears."""
        with self._lock:
            self._blocked, self._blocked_why = tuple(runs), " ".join(why.split())[:500]

    def client_unreachable(self, client: str, error: str) -> float:
        """A job's try found ``client`` not answering; returns since when it has not (the first
        such try in a row, that client's; another client starts again)."""
        with self._lock:
            if self._unreachable is None or self._unreachable[0] != client:
                self._unreachable = (client, self._clock(), "")
            self._unreachable = (client, self._unreachable[1], " ".join(error.split())[:500])
            return self._unreachable[1]

    def unreachable(self) -> tuple[str, float] | None:
        """The client a job's try found not answering and since when, while it lasts."""
        with self._lock:
            return None if self._unreachable is None else self._unreachable[:2]

    def client_answered(self) -> tuple[str, float] | None:
        """A job's try ended otherwise than on a client not answering; returns the client that
        did not and since when, if one did not until now."""
        with self._lock:
            was, self._unreachable = self._unreachable, None
        return None if was is None else was[:2]

    def report(self) -> Health:
        with self._lock:
            now = self._clock()
            detail = {
                "doing": self._doing,
                "last_beat_s_ago": round(now - self._beat, 1),
                "failures_in_a_row": self._failures,
                "last_error": self._last_error,
            }
            if self._sweeper:
                detail["sweep_failures_in_a_row"] = self._sweep_failures
                detail["last_sweep_error"] = self._sweep_error
            health = self._worker_report(now, detail)
            if health.ok and self._sweeper:
                health = self._sweeper_report(now, detail) or health
            return replace(health, sweeper=self._sweeper, sweeper_since=self._sweeper_since)

    def _sweeper_report(self, now: float, detail: dict) -> Health | None:
        """The sweeper's trouble (under ``_lock``), or None: failing sweeps, else none succeeding."""
        if self._sweep_failures:
            since = now - (self._sweep_failing_since or now)
            failing = f"sweeper failing: {self._sweep_failures} sweep(s) in a row over {since:.0f} s"
            return Health(False, f"{failing}, last: {self._sweep_error}", failing, detail)
        late = overdue(self._sweep_at, self._sweeper_since, self._sweep_interval_s, now)
        # Its own words, no error's text: there is none (a hung sweep raises nothing).
        return None if late is None else Health(False, late, late, detail)

    def _worker_report(self, now: float, detail: dict) -> Health:
        """The worker's own health (under ``_lock``)."""
        if self._busy_since is not None:
            detail["busy_s"] = round(now - self._busy_since, 1)
        if self._thread is not None and not self._thread.is_alive():
            stopped = "worker thread has stopped; events are queued but not processed"
            return Health(False, stopped, stopped, detail)
        if self._blocked:
            detail["unfinished_runs"] = list(self._blocked)
            ids = ", ".join(map(str, self._blocked))
            blocked = f"executor blocked: run(s) {ids} did not finish and resume cannot finish them yet; jobs wait"
            return Health(False, f"{blocked} (last: {self._blocked_why})", blocked, detail)
        if self._failures >= self.fail_threshold:
            since = now - (self._failing_since or now)
            failing = f"worker failing: {self._failures} attempts in a row over {since:.0f} s"
            return Health(False, f"{failing}, last: {self._last_error}", failing, detail)
        if self._unreachable is not None:
            client, since, error = self._unreachable
            detail["client_unreachable"] = {"client": client, "since": since}
            # The client's name is the config's (``QbtError.client``), never its URL: anyone may read it.
            down = f"{client} unreachable since {_utc(since)} ({now - since:.0f} s): jobs wait, no attempt counted"
            return Health(False, f"{down}, last: {error}", down, detail)
        if self._busy_since is None and now - self._beat > self.stall_after_s:
            # ``doing`` is always one of the loop's own fixed phrases (beat/busy), never error text
            stalled = f"worker stalled: no progress for {now - self._beat:.0f} s (last: {self._doing})"
            return Health(False, stalled, stalled, detail)
        return Health(True, f"worker {self._doing}", f"worker {self._doing}", detail)


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _unfinished_why(summaries) -> str | None:
    """What keeps a resumed run unfinished, for health and the log: the first group a person may
    want to know of (paused past its deletes until a client answers, a rollback to retry), or None
    (R21: health said only "resume did not finish them (see the log)")."""
    for s in summaries or ():
        for g in getattr(s, "groups", ()):
            if getattr(g, "needs_attention", False) and g.reason:
                state = "paused" if getattr(g, "paused", False) else "needs attention"
                return f"group {g.group_id} {state}: {g.reason}"
    return None


class RunsGate:
    """Whether serve's executor may apply, as far as the runs it left unfinished go.

    Model: the executor refuses every plan while a run it journaled is unfinished
    (``UnfinishedRuns``), and ``resume`` is the one way to finish one (the journaled recovery,
    never bypassed). The gate learns of unfinished runs from a refusal (``refused``: a job's
    apply, the sweeper's) or from a resume that could not finish them (``ready``; at serve's
    start: qBittorrent not up yet after a reboot, a rollback that needs attention). While it
    knows of any, ``ready`` is False: the worker takes no job (each would plan and be refused)
    and the sweeper applies nothing; health says so, naming them; and the worker's ``ready``
    resumes again after ``base_s`` doubling to ``cap_s``. Knowing of none, ``ready`` is True
    and reads nothing: the worker's polls cost no lock and no query.
    """

    def __init__(self, health: WorkerHealth, *, base_s: float = 1.0, cap_s: float = 60.0, clock=time.time):
        self.health = health
        self.base_s, self.cap_s = base_s, cap_s
        self._clock = clock
        self._lock = threading.Lock()  # the sweeper thread tells refusals too
        self._runs: tuple[int, ...] = ()
        self._delay = base_s
        self._retry_at = 0.0

    @property
    def runs(self) -> tuple[int, ...]:
        """The unfinished runs known to block the executor; () when none is known."""
        return self._runs

    def refused(self, e: UnfinishedRuns) -> None:
        """An ``apply`` was refused: resume (after the backoff) before the next one."""
        if not self._runs:
            self._block(e.runs, "a plan was refused")

    def ready(self, executor, *, force: bool = False) -> bool:
        """True when no unfinished run is known to block ``executor``. Resumes first when one is
        known and its retry time has come, or always with ``force`` (serve's start)."""
        with self._lock:
            if not force and (not self._runs or self._clock() < self._retry_at):
                return not self._runs
        if not force:
            self.health.busy("finishing runs left unfinished")
        why = None
        try:
            why = _unfinished_why(executor.resume())
        except LockBusy as e:  # another executor runs (`qbhook apply`): nothing to say of the runs
            return self._later(e)
        except QbhookError as e:
            log.error("resuming unfinished runs failed: %s", e)
            why = e.message
        try:
            runs = executor.unfinished()
        except QbhookError as e:
            return self._later(e)
        if runs:
            self._block(runs, why or "resume did not finish them (see the log)")
            return False
        with self._lock:
            was, self._runs, self._delay, self._retry_at = self._runs, (), self.base_s, 0.0
        if was:
            self.health.blocked(())
            log.warning("run(s) %s finished: plans are applied again", ", ".join(map(str, was)))
        return True

    def _block(self, runs: tuple[int, ...], why: str) -> None:
        with self._lock:
            new, self._runs = tuple(runs) != self._runs, tuple(runs)
            delay = self._next_delay()
        self.health.blocked(self._runs, why)
        ids = ", ".join(map(str, runs))
        # Once at error level; each retry after that (every minute at most) at info.
        (log.error if new else log.info)(
            "executor blocked: run(s) %s did not finish (%s); no job is taken, resume again in %.0f s", ids, why, delay
        )

    def _later(self, e: QbhookError) -> bool:
        with self._lock:
            if self._runs:
                self._next_delay()
            blocked = bool(self._runs)
        (log.info if isinstance(e, LockBusy) else log.error)("unfinished runs not looked at: %s; later", e.message)
        return not blocked

    def _next_delay(self) -> float:
        delay, self._delay = self._delay, min(self._delay * 2, self.cap_s)
        self._retry_at = self._clock() + delay
        return delay


class _Heartbeat:
    """``with _Heartbeat(...):`` refreshes a running job's heartbeat every ``every_s`` while the
    worker thread is inside it, so no worker's staleness check takes a live worker's job
    (moves take hours; ``Worker.STALE_AFTER_S``).

    The worker thread cannot beat itself: it is inside the job until the job ends. So a daemon
    thread per job, like ``_Prefetch``'s, with its own connection, opened at the first beat:
    the worker's connection may be inside one of the job's transactions, and a job shorter
    than ``every_s`` (nearly all) costs no connection and no write. A failed beat is logged
    and tried again at the next; a job no longer this worker's ends the beats.
    """

    def __init__(self, conn: sqlite3.Connection, job_id: int, worker: str, every_s: float, clock):
        # The catalog's file ("" for an in-memory database, which no other connection sees).
        self._path = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")
        self._job_id, self._worker, self._every_s, self._clock = job_id, worker, every_s, clock
        self._stop = threading.Event()

    def __enter__(self) -> _Heartbeat:
        if self._path:
            threading.Thread(target=self._run, name=f"heartbeat-{self._job_id}", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()  # not joined: a beat waiting on a busy catalog must not delay the outcome

    def _run(self) -> None:
        conn = None
        try:
            while not self._stop.wait(self._every_s):
                try:
                    conn = conn or connect(self._path, create=False)
                    JobQueue(conn, clock=self._clock).heartbeat(self._job_id, worker_id=self._worker)
                except QueueError:
                    return  # done, or requeued and someone else's: nothing of ours to keep alive
                except (QbhookError, sqlite3.Error) as e:
                    log.warning("job %d: heartbeat not recorded (%s); trying again later", self._job_id, e)
        finally:
            if conn is not None:
                conn.close()


class Worker:
    """Claims jobs one at a time. Several workers (processes) may run; the queue and locks serialize.

    The loop never dies of an error: a failed pass (storage full, I/O error, a bug) is
    logged, counted in ``health`` and retried after a backoff. A job's outcome that could
    not be recorded is kept and recorded first on the next pass, so the job neither
    stays "running" nor runs twice because the disk was full for a while.

    A job that could not run yet is no failure and costs no attempt (``JobQueue.postpone``):
    the executor lock held past its wait (a long sweep, `qbhook apply`) sends it back for
    ``retry_base_s`` doubling to ``retry_cap_s`` while the lock stays busy; a refusal by an
    unfinished run sends it back until ``gate`` (``RunsGate``) has resumed that run. A client
    that does not answer (``QbtUnreachable``, ``RtorrentUnreachable``: restarting, a container
    update, a reboot) sends the job back with the same backoff, and the worker claims no job
    until that wait is over: every job lists every client, so each would meet the same silence
    (``_client_down``). Health names the client meanwhile (``WorkerHealth.client_unreachable``),
    and a silence of ``alerts.CLIENT_DOWN_AFTER_S`` is notified once, its end once (``alerts.ClientDown``).
    Before, each try counted: eight (about half an hour) and every job was dead, a dead-letter
    notice each, and only `qbhook queue retry` or the next sweep (hours; never under
    ``--no-sweep``) caught up.
    """

    ORPHAN_CHECK_S = 60.0
    # Workers this host cannot judge (other hosts, other pid namespaces, a restarted
    # container): silent this long means gone. Checked at every orphan check: a live
    # worker's job beats every HEARTBEAT_S however long it runs (``_Heartbeat``).
    STALE_AFTER_S = 3600.0
    HEARTBEAT_S = 300.0
    # Finished jobs are pruned (``JobQueue.prune``: ``sweep.keep_history``, ``MAX_FINISHED_CHARS``)
    # after every this many completions too, not only after a sweep that succeeds (``housekeep``):
    # a sweep failing for days, or ``serve --no-sweep``, never pruned while jobs kept finishing.
    # One prune reads every finished row's length (at most the 64 MiB it keeps): every few hundred
    # jobs it costs little, and the rows finished meanwhile (a few KB each) stay few.
    PRUNE_EVERY = 256

    def __init__(
        self,
        cfg: Config,
        catalog: Catalog,
        clients: Iterable[ClientPort],
        *,
        executor=None,
        debounce_s: float = DEBOUNCE_S,
        worker_id: str | None = None,
        health: WorkerHealth | None = None,
        retry_base_s: float = 1.0,
        retry_cap_s: float = 60.0,
        gate: RunsGate | None = None,
        clock=time.time,
    ):
        self.cfg = cfg
        self.catalog = catalog
        self.clients = clients
        self.executor = executor
        self._clock = clock
        self.queue = JobQueue(catalog.conn, clock=clock)
        self.debounce_s = debounce_s
        # Default: named after the thread that runs the loop (set again in loop()), so
        # requeue_orphaned can tell whether that thread still lives.
        self._own_id = worker_id is None
        self.worker_id = worker_id or queue_worker_id()
        self.health = health or WorkerHealth()
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.gate = gate or RunsGate(self.health, base_s=retry_base_s, cap_s=retry_cap_s)
        # (job id, "complete"|"fail"|"wait", text, seconds a waiting job waits)
        self._unrecorded: tuple[int, str, str, float] | None = None
        self._lock_waits = 0  # jobs in a row sent back because the executor lock was busy
        self._client_waits = 0  # jobs in a row sent back because a client did not answer
        self._client_retry_at = 0.0  # no job is claimed before: the client's silence is waited out
        self._next_orphan_check = 0.0
        # Jobs completed since the last prune (PRUNE_EVERY); the first completion of each process
        # prunes: a `serve --no-sweep` restarted before PRUNE_EVERY jobs never pruned (R117).
        self._completed = self.PRUNE_EVERY - 1
        self._client_alert = alerts.ClientDown(catalog.conn)  # told once when long silent, once when back

    def run_once(self) -> bool:
        """One pass: record a held-back outcome, or process one ready job. False when idle.

        Storage errors propagate (the loop retries); errors of the job itself become its
        recorded failure.
        """
        if self._unrecorded is not None:
            self.health.beat(f"recording the outcome of job {self._unrecorded[0]}")
            self._record()
            return True
        # Before any work (a requeue, a resume, a job): a newer qbhook that migrated the catalog
        # ends this process (CatalogUpgraded passes ``loop``), the outcome above recorded first.
        still_current(self.catalog.conn)
        if self._clock() >= self._next_orphan_check:
            self.health.beat("requeueing jobs of dead workers")
            self.requeue_orphans()
        if self.executor is not None and not self.gate.ready(self.executor):
            self.health.beat("waiting for unfinished runs to be finished")
            return False
        if self._clock() < self._client_retry_at:
            self.health.beat("waiting for a client to answer")
            return False
        self.health.beat("claiming")
        job = self.queue.claim(self.worker_id, now=self._clock() - self.debounce_s)
        if job is None:
            self.health.beat("idle")
            return False
        self.health.busy(f"busy with job {job.id}")
        try:
            outcome, text, wait_s, storage_error = self._process(job)
        except Exception as e:
            # Raised while handling the job's own error (R35: an overflowing backoff): the job is
            # claimed, so it must get an outcome here, or it stays "running" for good.
            log.exception("job %d: handling its outcome failed", job.id)
            outcome, text, wait_s, storage_error = "fail", f"internal error: {e!r}", 0.0, None
        # Kept before anything else can raise: the next pass records it (``_record``).
        self._unrecorded = (job.id, outcome, text, wait_s)
        if not self._client_waits:
            self._client_back()
        self.health.beat(f"recording the outcome of job {job.id}")
        self._record()
        # After the outcome is recorded: a catalog that cannot write what was told loses no job.
        self._client_alert.check(self.health.unreachable(), self._clock())
        if storage_error is not None:
            # The job's failure is recorded (it retries with the queue's backoff), and the
            # loop backs off and counts it too: a full disk fails every job alike.
            raise storage_error
        return True

    def _process(self, job) -> tuple[str, str, float, sqlite3.Error | None]:
        lock_waits, self._lock_waits = self._lock_waits, 0
        client_waits, self._client_waits = self._client_waits, 0
        try:
            with _Heartbeat(self.catalog.conn, job.id, self.worker_id, self.HEARTBEAT_S, self._clock):
                result = handle_job(self.cfg, self.catalog, self.clients, job, executor=self.executor)
            # Inside the try: a result that cannot be serialised must not leave the job running.
            text = json.dumps(result, sort_keys=True)
        except UnknownTorrent as e:
            return "complete", json.dumps({"note": str(e)}), 0.0, None
        except UnfinishedRuns as e:
            # Not the job's fault: it runs once the gate has resumed them (run_once).
            self.gate.refused(e)
            log.info("job %d waits until run(s) %s are finished", job.id, ", ".join(map(str, e.runs)))
            return "wait", str(e), 0.0, None
        except LockBusy as e:
            self._lock_waits = lock_waits + 1
            wait_s = backoff_s(self.retry_base_s, self.retry_cap_s, lock_waits)
            # Said once while the lock stays busy: the job is waiting, not failing.
            (log.debug if lock_waits else log.warning)(
                "job %d waits: %s; back to pending for %.0f s (no attempt counted)", job.id, e.message, wait_s
            )
            return "wait", str(e), wait_s, None
        except (QbtUnreachable, RtorrentUnreachable) as e:
            return "wait", str(e), self._client_down(job, e, client_waits), None
        except QbhookError as e:
            log.warning("job %d failed: %s", job.id, e)
            return "fail", str(e), 0.0, None
        except sqlite3.Error as e:
            log.error("job %d failed on the catalog: %s", job.id, e)
            return "fail", f"catalog error: {e}", 0.0, e
        except Exception as e:  # a bug must not kill the worker; the job parks as dead later
            log.exception("job %d crashed", job.id)
            return "fail", f"internal error: {e!r}", 0.0, None
        return "complete", text, 0.0, None

    def _client_down(self, job, e: QbtUnreachable | RtorrentUnreachable, waits: int) -> float:
        """A client did not answer the job's try: how long the job (and the worker) waits.

        Timed out counts as not answering, here as in the hierarchy (``RtorrentTimedOut`` is an
        ``RtorrentUnreachable``; qBittorrent's request timeout is a ``QbtUnreachable``): an
        rTorrent hash-checking a large item stalls its XML-RPC for as long as the check takes,
        a routine wait, not the job's fault. And a job cannot time out by itself: every job
        lists every client the same way, so one that never answers in time is the client's
        trouble, which health names while it lasts (and the sweeper's sweeps meet it too),
        rather than each job dying of it, a notice each."""
        self._client_waits = waits + 1
        wait_s = backoff_s(self.retry_base_s, self.retry_cap_s, waits)
        self._client_retry_at = self._clock() + wait_s
        client = e.client or ("rTorrent" if isinstance(e, RtorrentUnreachable) else "qBittorrent")
        since = self.health.client_unreachable(client, str(e))
        # Once at warning level while the client stays silent; health says so meanwhile.
        (log.info if waits else log.warning)(
            "job %d waits: %s; back to pending for %.0f s (no attempt counted; %s silent for %.0f s)",
            job.id,
            e.message,
            wait_s,
            client,
            self._clock() - since,
        )
        return wait_s

    def _client_back(self) -> None:
        self._client_retry_at = 0.0
        was = self.health.client_answered()
        if was is not None:
            log.warning("%s no longer stops jobs (silent for %.0f s): jobs run again", was[0], self._clock() - was[1])

    def _record(self) -> None:
        if self._unrecorded is None:
            return
        job_id, outcome, text, wait_s = self._unrecorded
        try:
            if outcome == "complete":
                self.queue.complete(job_id, text, worker_id=self.worker_id)
                self._completed += 1
            elif outcome == "wait":
                self.queue.postpone(job_id, wait_s, worker_id=self.worker_id)
            else:
                self.queue.fail(job_id, text, worker_id=self.worker_id)
        except QueueError as e:
            # Not ours any more (requeued meanwhile): whoever owns it records its own outcome.
            log.warning("outcome of job %d dropped: %s", job_id, e)
        self._unrecorded = None
        if self._completed >= self.PRUNE_EVERY:
            self._prune()

    def _prune(self) -> None:
        """Finished jobs past ``sweep.keep_history`` or ``queue.MAX_FINISHED_CHARS`` (PRUNE_EVERY).
        Housekeeping, after the outcome is recorded: a catalog that cannot write it now (busy, a
        full disk) is logged, and the next PRUNE_EVERY completions try again."""
        self._completed = 0
        try:
            pruned = self.queue.prune(self.cfg.sweep.keep_history)
        except (QbhookError, sqlite3.Error) as e:
            log.warning("finished jobs not pruned: %s; trying again after %d more", e, self.PRUNE_EVERY)
            return
        if pruned:
            log.info("pruned %d finished job(s)", pruned)

    def requeue_orphans(self) -> None:
        """Jobs a dead worker left running go back to pending now, and those of a worker this host
        cannot judge once silent for STALE_AFTER_S (see JobQueue.requeue_orphaned). Every check,
        not only the first: a container restarted with another host name or pid namespace leaves
        jobs that no check can judge dead, claimed at any time before it."""
        for job_id in self.queue.requeue_orphaned(stale_after_s=self.STALE_AFTER_S):
            log.warning("job %d was left running by a worker that is gone; requeued", job_id)
        self._next_orphan_check = self._clock() + self.ORPHAN_CHECK_S

    def loop(self, stop: threading.Event, idle_s: float = 1.0) -> None:
        if self._own_id and self._unrecorded is None:
            self.worker_id = queue_worker_id()
        failures = 0
        while not stop.is_set():
            try:
                worked = self.run_once()
            except CatalogUpgraded:
                raise  # not a failed pass: this process must end (service.Service.worker_main)
            except Exception as e:  # storage errors and bugs alike: never end the loop
                failures = self.health.failed(f"{type(e).__name__}: {e}")
                delay = backoff_s(self.retry_base_s, self.retry_cap_s, failures - 1)
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
