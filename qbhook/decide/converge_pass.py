"""Same-pool convergence as one pass over the catalog's duplicate sets: ``qbhook converge``.

The planner converges group by group, on a snapshot that lstat-s every torrent file and every
known link of its inode, because it also decides moves, and a move rests on "no link outside
the seeding tree", which a stale catalog could fake. A pass that only converges needs much
less, and does its work set by set instead of group by group:

1. the catalog made current (``planning.ready_catalog``: a scan, unless ``--no-scan``; a plan
   reuses a recent scan because it re-stats every file it decides on, this pass does not);
2. the content index from the catalog (``catalog.dupes.find_duplicates``: sizes that collide,
   a partial hash, then BLAKE3 of what still collides, each cached per inode), one set per
   content held by two or more inodes;
3. the clients' torrents that may use a duplicate (a settled torrent whose content lies at no
   duplicate's path is left out before its file list is asked for), each file placed on its
   inode through the catalog's paths (no lstat), grouped into payload groups (``decide.grouping``);
   every torrent that may still write is listed in full, and the places it may write at
   (``converge.write_paths``: its save and download paths, each also resolved through
   symlinks, the only reads of the filesystem here, to classify) make whatever duplicate
   is linked there wait; a file of such a torrent that the catalog does not place (not yet
   written, in its download path, behind a symlink) makes every duplicate of its size wait
   (converge's "unseen writers": conservative, it only delays);
4. for each group that uses an inode of a set, ``decide.converge.plan_group``: the rules of a
   convergence (which inode is kept, which may be replaced, which must wait) have one home,
   and this pass hands them facts of the same shape as the snapshot does, each inode's owner
   and mode included as its scan recorded them (the access rule: a seeding file is not linked
   onto an inode its owner could not read or write, ``access.access_lost``; not known for a
   row the scan has not written since the catalog began keeping them: the executor decides);
5. the executor carries out the ``converge`` steps, in batches, journaled first.

Why facts from the catalog are enough for a convergence, and not for a move: a convergence
never deletes content and never touches a name outside the seeding roots. Right before each
rename the executor re-checks, through folders walked from the pool root (``fsops.Relinker``),
that the seeding name still is the planned inode (filesystem, inode, size, mtime), that both
ends still have the planned content, and that both are on one filesystem. A stale row can
therefore only make a step refused (the file changed: re-plan) or free fewer bytes than said
(a link made since the scan keeps the replaced inode alive); it cannot replace a library's
name or lose the last copy of a content: a relink replaces a name by a link of the same bytes.
The same holds for owners: one chmodded or chowned since the scan (``--no-scan``) at worst
makes a step the executor refuses on its own stats, or keeps apart a pair it would allow.

What a torrent may still write is read from the catalog's links too (step 3), and there a
stale catalog errs the other way: a link made since the scan at a place a torrent writes is
not seen, and the executor's checks cannot catch it (the bytes are still equal when it
relinks). That is why the pass scans first unless told ``--no-scan``; the planner's snapshot
lstat-s those places instead.

``policy.converge: false`` makes the pass a report (each group says what it would free, no step).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from qbhook.catalog import library_links
from qbhook.catalog.dupes import DupeSet, find_duplicates
from qbhook.catalog.store import Catalog
from qbhook.clients.port import BatchListing, ClientPort
from qbhook.config import Config, PolicyConfig
from qbhook.decide import converge
from qbhook.decide.facts import (
    FileFact,
    InodeFact,
    InodeKey,
    LibrarySymlinks,
    LinkResolver,
    PoolFact,
    Snapshot,
    TorrentFact,
    split_links,
    torrent_file_path,
)
from qbhook.decide.grouping import payload_groups
from qbhook.decide.heap import collector_paused
from qbhook.decide.plan import Plan
from qbhook.decide.planner import finish_run, pool_room, staying
from qbhook.decide.planning import CatalogUse, ready_catalog
from qbhook.dirfd import FolderReader, FolderRefused, SeedingRoot, open_root
from qbhook.errors import PathMapError, QbhookError
from qbhook.paths import normalize
from qbhook.progress import Progress


@dataclass(frozen=True)
class ConvergeRun:
    """What ``qbhook converge`` decided on: the plan (converge groups only), what the catalog rested
    on, and how many duplicate sets the catalog holds (most may be a library's own copies, which
    are never replaced)."""

    plan: Plan
    catalog_use: CatalogUse
    duplicate_sets: int
    torrents: int  # torrents whose files were looked at (those that may use a duplicate: _uses_none)


def plan_convergence(
    cfg: Config,
    catalog: Catalog,
    clients: Iterable[ClientPort],
    *,
    scan: bool | None = None,
    progress: Progress | None = None,
    now: float | None = None,
) -> ConvergeRun:
    """Steps 1-4 of the module docstring: the converge plan of every group that has something to converge."""
    # The collector paused throughout (decide.heap), as ``qbhook dupes`` pauses it: the scan's
    # stats, the candidate rows, the sets, the torrents' facts and the plan are a few objects per
    # file, alive to the end, with no cycle among them. Left on, its passes walked them again
    # and again to free nothing: 0.5-0.75 s of this pass at 10,000 duplicate pairs
    # (bench_converge's gc_seconds, docs/benchmarks.md section 9).
    with collector_paused():
        # Scanned unless --no-scan, whatever the last scan's age: the pass decides on the catalog's
        # paths without re-stat-ing them as a plan does, and a path gone since would fail its group.
        use = ready_catalog(cfg, catalog, targeted=False, scan=scan is not False, progress=progress)
        if scan is None:
            use = CatalogUse(
                "scanned", "pools scanned now (converge decides on the catalog's paths)", use.full_scan_age_s
            )
        sets = find_duplicates(catalog, settle_seconds=cfg.scan.settle_seconds, progress=progress)
        now = time.time() if now is None else now  # before the listing: the plan's created_at (_check_no_newcomer)
        torrents = _torrent_facts(catalog, list(clients), _held_under(sets))
        mtimes, access = catalog.inode_mtimes_and_access(c.inode_id for s in sets for c in s.copies)
        # Read-only symlink resolution, to classify: the pass's only reads of the filesystem besides the catalog.
        writes = converge.write_paths(torrents, LinkResolver())
        pools, devs = _pools(cfg, catalog)
        snap = convergence_snapshot(
            sets,
            torrents,
            pools,
            mtimes,
            now,
            write_paths=writes,
            access=access,
            client_groups=cfg.policy.groups_of(),
        )
        # Walked only when a copy may be replaced: with none, an unreadable library folder is no
        # refusal (exit 3) of a pass that has nothing to do.
        if converge.any_duplicate(snap.inodes, snap.content):
            snap = replace(snap, library=_library(cfg, snap, devs))
        plan = convergence_plan(snap, cfg.policy)
    return ConvergeRun(plan, use, len(sets), len(torrents))


def convergence_snapshot(
    sets: Iterable[DupeSet],
    torrents: Iterable[TorrentFact],
    pools: tuple[PoolFact, ...],
    mtimes: dict[int, int],
    now: float,
    write_paths: frozenset[str] = frozenset(),
    access: Mapping[int, tuple[int, int, int]] | None = None,
    client_groups: Mapping[int, frozenset[int]] | None = None,
) -> Snapshot:
    """The facts ``converge.plan_group`` reads, for the inodes of ``sets`` only. No I/O.

    An inode's links are split at the seeding roots as the snapshot splits them
    (``facts.split_links``); its link count is the catalog's (``mtimes``: inode id -> mtime, the
    catalog's too), both from the last scan. ``write_paths``: ``converge.write_paths`` of the
    torrents, matched against the catalog's links of the duplicates (a link made since the scan
    is not seen: the pass scans first unless ``--no-scan``). ``access``: inode id -> (st_mode,
    st_uid, st_gid) as the scan saw them (``InodeFact.access``), so the access rule keeps apart
    what the executor would refuse (``converge._takes_access``); an inode not in it (the catalog
    does not know its owner yet) is None, and the executor's own check decides, as before.
    ``client_groups``: ``policy.client_groups`` (``PolicyConfig.groups_of``), for that rule.
    """
    access = access or {}
    roots = tuple(r for p in pools for r in p.seeding_roots)
    intern = sys.intern
    inodes: dict[InodeKey, InodeFact] = {}
    content: dict = {}
    for s in sets:
        keys = []
        for c in s.copies:
            seeding, other = split_links(c.paths, roots)
            fact = InodeFact(
                fsid=c.fsid,
                ino=c.ino,
                size=s.size,
                nlink=c.nlink,
                blake3=s.hash,
                seeding_paths=tuple(map(intern, seeding)) if seeding else (),
                other_paths=tuple(map(intern, other)) if other else (),
                mtime_ns=mtimes.get(c.inode_id, 0),
                access=access.get(c.inode_id),
            )
            key = fact.key
            inodes[key] = fact
            keys.append(key)
        content[(s.size, s.hash)] = tuple(keys)
    return Snapshot(
        torrents=tuple(torrents),
        inodes=inodes,
        pools=pools,
        content=content,
        now=now,
        write_paths=write_paths,
        client_groups=client_groups or {},
    )


def convergence_plan(snap: Snapshot, policy: PolicyConfig | None = None) -> Plan:
    """A ``converge`` group for every payload group with a duplicate to replace (``converge.plan_group``),
    in group order, under the planner's last passes (``planner.finish_run``: the batch cap
    ``policy.max_groups_per_run``); with ``policy.converge`` false each only says what it would free."""
    policy = PolicyConfig() if policy is None else policy
    plans = []
    inodes = snap.inodes
    for group in payload_groups(snap.torrents):
        if not _uses_any(group, inodes):
            continue  # no file of this group is one of the duplicates: nothing to look at
        conv = converge.plan_group(snap, group)
        if conv is None or not conv.steps:
            continue  # nothing to converge, or every duplicate waits (a later pass takes it)
        gp = staying(group)
        pool = snap.seeding_pool_of(conv.steps[0].path)  # every step of a convergence is on one dataset
        gp.source_pool = pool.name if pool else None
        if policy.converge:
            converge.apply_to(gp, conv, "")
        else:
            converge.report_only(gp, conv)
        plans.append(gp)
    finish_run(plans, policy, pool_room(snap.pools))  # a convergence copies nothing: no room is spent
    return Plan(groups=plans, created_at=snap.now)


def _uses_any(group: list[TorrentFact], inodes: Mapping[InodeKey, InodeFact]) -> bool:
    """Whether a file of ``group`` is on an inode of ``inodes`` (loops, not a generator: 10,000 groups)."""
    for t in group:
        for f in t.files:
            if f.inode is not None and f.inode in inodes:
                return True
    return False


def _pools(cfg: Config, catalog: Catalog) -> tuple[tuple[PoolFact, ...], dict[int, set[str]]]:
    """The pools' facts, and the fsids met on each seeding root's st_dev (``_library``'s keys)."""
    # Only names, roots and the roots' filesystems matter to a convergence (its steps never leave
    # their filesystem): no free space is read here.
    out = []
    devs: dict[int, set[str]] = {}
    for p in cfg.pools:
        fs = [_root_fs(catalog, r) for r in p.anchored_seeding_roots]
        for dev, fsid in fs:
            if dev is not None and fsid:
                devs.setdefault(dev, set()).add(fsid)
        fsids = [fsid for _dev, fsid in fs]
        out.append(
            PoolFact(
                name=p.name,
                role=p.role,
                path=str(p.path),
                seeding_root=str(p.seeding_root),
                seeding_fsid=fsids[0],
                free_bytes=0,
                more_seeding_roots=tuple(str(r) for r in p.more_seeding_roots),
                more_seeding_fsids=tuple(fsids[1:]),
            )
        )
    return tuple(out), devs


def _root_fs(catalog: Catalog, root: SeedingRoot) -> tuple[int | None, str]:
    """(st_dev, the catalog's id of the filesystem) of seeding root ``root`` (opened from its pool
    root down, one fstat). The fsid is what a duplicate's own (its catalog row's) is compared with:
    one on another is in a dataset mounted below the root, where no step may act (``facts.NESTED``).
    "" when it cannot be read: nothing is compared then, and the executor refuses such a step on
    its own (it cannot open that root either). The st_dev keys a library symlink's file target."""
    try:
        fd = open_root(root.path, root.pool)
        try:
            dev = os.fstat(fd).st_dev
        finally:
            os.close(fd)
    except (OSError, FolderRefused, QbhookError):
        return None, ""
    try:
        return dev, catalog.fsid(catalog.fs_for_path(root.path, dev))
    except (OSError, QbhookError, sqlite3.Error):  # a read-only catalog may not register it
        return dev, ""


def _library(cfg: Config, snap: Snapshot, devs: Mapping[int, Iterable[str]]) -> LibrarySymlinks:
    """``Snapshot.library`` for the pass: the planner's walk (``library_links.collect``) and keys
    (``LibrarySymlinks.of``), so ``converge.plan_group`` replaces no seeding file a library's
    symlink reaches, by the planner's one rule. A file target is keyed by the seeding roots' own
    st_dev (``devs``): a victim is on its root's filesystem (one on a dataset below it is none).
    A walk that cannot finish raises ``LibraryLinksUnseen``: the pass refuses, naming why, rather
    than converge blind or say nothing. Its cost: one ``find -type l`` per pool (no stat of a
    regular file), then one stat per symlink found."""
    found = library_links.collect(cfg)
    roots = [p.path for p in snap.pools]
    paths = {p for i in snap.inodes.values() for p in i.seeding_paths}
    with FolderReader(roots) as reader:
        return LibrarySymlinks.of(
            found, devs, snap.inodes, roots, paths, reader.identity, lambda d: reader.root_of(d) in (None, d)
        )


def _held_under(sets: Iterable[DupeSet]) -> frozenset[str]:
    """Every path of a duplicate and every folder above one: a torrent whose content lies at none
    of them uses no duplicate."""
    out: set[str] = set()
    for s in sets:
        for c in s.copies:
            for p in c.paths:
                while p not in out and p != "/":
                    out.add(p)
                    # posixpath.dirname's answer, without its call (40,000 paths at 20,000 copies)
                    head = p[: p.rfind("/") + 1]
                    p = head.rstrip("/") or head
    return frozenset(out)


def _uses_none(t, held: frozenset[str], resolve: LinkResolver) -> bool:
    """True when torrent ``t`` (a listing's ``TorrentInfo``) surely uses no path in ``held``, so its
    file list need not be asked for: it is settled (``converge.settled``: it writes none of its
    files, and its files all lie under its content path, one file or the root folder, or the
    save path for a torrent without one) and none of its content's places
    (``converge.content_places``: the content path, its spelling under the download path, each
    resolved through symlinks) is in ``held``. Resolved, because the catalog knows a folder by
    its real spelling only: a settled torrent saved through a symlinked folder may have a file
    at priority 0 there, which it writes once the priority is raised (``converge.write_paths``).
    A torrent that may write is always listed in full: the rules make a duplicate it writes wait."""
    if not converge.settled(t.progress, t.state) or not t.content_path:
        return False
    try:
        content = normalize(t.content_path)
    except PathMapError:
        return False
    # The common answer first, with no lstat: a torrent with a duplicate holds it at its own spelling.
    return content not in held and held.isdisjoint(converge.content_places(t, resolve))


def _torrent_facts(catalog: Catalog, clients: list[ClientPort], held: frozenset[str]) -> list[TorrentFact]:
    """The torrents of every client that may use a path in ``held`` (``_uses_none``), each file placed
    on the inode the catalog knows at its path (None: not catalogued, e.g. under a symlinked
    folder, which the scan never follows). A client's file list is asked for only for those: at
    field scale that is a request per torrent with a duplicate, not one per torrent."""
    listed = []
    resolve = LinkResolver()  # read-only, to classify: each folder resolved once for every listing
    for c in clients:
        if isinstance(c, BatchListing):  # one listing of everything: nothing to save
            listed.extend(c.torrents_with_files())
        else:
            listed.extend((t, c.files(t.hash)) for t in c.torrents() if not _uses_none(t, held, resolve))
    # The snapshot's spelling (``facts.torrent_file_path``): a name not below its save path
    # (absolute, ``..``) is never looked up.
    spelled = [[torrent_file_path(t.save_path, f.name) for f in files] for t, files in listed]
    where = catalog.inode_keys_at([os.fsencode(p) for ps in spelled for p, ok in ps if ok])
    return [
        TorrentFact.listed(
            t,
            tuple(
                FileFact.listed(f, sys.intern(p), where.get(os.fsencode(p)) if ok else None)
                for f, (p, ok) in zip(files, ps, strict=True)
            ),
        )
        for (t, files), ps in zip(listed, spelled, strict=True)
    ]
