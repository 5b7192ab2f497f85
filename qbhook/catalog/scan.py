"""Incremental scan of a pool into the catalog.

Walks with os.scandir through each folder's descriptor, opened below its parent's
(``dirfd.open_below``; names that are not UTF-8 round-trip as bytes paths), never
follows symlinks, and compares each file's lstat with the catalog; only
differences are written. Paths that vanished are dropped only if the share is
plausible: an unmounted pool looks like an empty folder, and treating that as
"everything was deleted" is how catalogs drift (field lesson 10). Nor are those of a
filesystem the walk saw no file of whose recorded mount point is not mounted now (a
nested dataset unmounted, a bind mount gone): below the mass-delete threshold they would
otherwise go, hashes and all, though nothing was deleted. Nor is a row another process
(`serve`'s executor) wrote after the walk loaded it written over or dropped (``_Loaded``).

A rescan (the pool already has paths) lets GNU find do the walk and compares its lines with
the catalog's; a rescan in a new process may instead compare one digest of find's output
with the memo the last rescan persisted, while the catalog's write generation says nothing
was written since. Both are described where they are defined below; any doubt falls back to
the Python walk. Every file is stat'ed on every rescan, whichever way it is compared. find's
command and process live in catalog/findwalk.py, so that a command can start the walks before
it imports this module or opens the catalog (scan_pools(runs=...)).
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import select
import stat as stat_mod
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import blake3

from qbhook import notify
from qbhook.catalog import findwalk, fsid
from qbhook.catalog.db import Tx
from qbhook.catalog.findwalk import FindRun
from qbhook.catalog.store import Catalog, Filesystem, InodeStat, stat_signature
from qbhook.config import PoolConfig, ScanConfig
from qbhook.dirfd import FolderRefused, NotAFolder, open_below, open_root
from qbhook.errors import MassDeleteRefused, QbhookError
from qbhook.paths import RELINK_PREFIX, relink_temp_named, shown
from qbhook.progress import Progress

log = logging.getLogger(__name__)

# qbhook's temporary relink links (``paths.RELINK_PREFIX``): a file so named is never catalogued.
_RELINK = RELINK_PREFIX.encode()
_RELINK_NAMED = b"/" + _RELINK  # how a find line's path holds such a name, right after a "/"


def skipped_by_scan(path: str, root: str, scan_cfg: ScanConfig) -> bool:
    """Whether no scan of the pool rooted at ``root`` ever records ``path`` (below it) as a file.

    The walks' rule, for a path named from elsewhere (an event): a component below ``root`` is
    one of ``scan.ignore_names`` (a folder so named is not entered, a file so named not kept), or
    the last is named like qbhook's relink link (``paths.relink_temp_named``; a folder so named
    is walked, but a folder is never recorded either). The walks apply it name by name in their
    loops, where a call per entry would cost (the Python walk's filter, find's ``-prune`` and
    ``_ignored_lines``); tests hold them to this statement of it.
    """
    rel = path[len(root.rstrip("/")) + 1 :]
    return relink_temp_named(rel) or not set(rel.split("/")).isdisjoint(scan_cfg.ignore_names)


@dataclass
class ScanResult:
    pool: str
    scan_id: int
    files_seen: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    status: str = "ok"
    unreadable: list[str] = field(default_factory=list)
    unmounted: list[str] = field(default_factory=list)  # mount points whose vanished paths were kept
    forgotten: int = 0  # of ``removed``: paths of a filesystem named by --forget-unmounted
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "pool": self.pool,
            "scan_id": self.scan_id,
            "files_seen": self.files_seen,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "status": self.status,
            "unreadable": self.unreadable,
            "unmounted": self.unmounted,
            "forgotten": self.forgotten,
            "seconds": round(self.seconds, 3),
        }


def scan_pools(
    catalog: Catalog,
    pools: list[PoolConfig],
    scan_cfg: ScanConfig,
    *,
    progress: Progress | None = None,
    allow_mass_delete: bool = False,
    runs: dict[str, FindRun] | None = None,
    forget_unmounted: Iterable[str] = (),
) -> list[ScanResult]:
    """scan_pool() of each pool, in order, with every pool's find started before any is compared.

    Each find is its own process, so the walks of all pools overlap (on another core) while
    this process compares one pool after the other. The first error stops it, as a loop over
    scan_pool() would (the later pools' finds are stopped, their pools not scanned).

    ``runs``: finds the caller already started on these pools' roots (findwalk.start_finds,
    e.g. before the catalog was opened); they are used as if started here, and closed here on
    every path out. Without it, a find is started for each pool that has catalogued paths.

    ``forget_unmounted``: mount points whose filesystem's paths are dropped like any vanished
    path though it is not mounted (its files are gone for good), instead of kept (_on_unmounted);
    the mass-delete guard does not count them (the person asked for exactly that drop).
    """
    forget = frozenset(os.path.abspath(m) for m in forget_unmounted)
    if runs is None:
        runs = findwalk.start_finds(pools, scan_cfg, catalog.pool_has_paths) if FIND_WALK else {}
    try:
        return [
            _scan(catalog, pool, scan_cfg, progress, allow_mass_delete, None, runs.get(pool.name), forget)
            for pool in pools
        ]
    finally:
        findwalk.close_all(runs)  # those already used were closed after their walk


def scan_pool(
    catalog: Catalog,
    pool: PoolConfig,
    scan_cfg: ScanConfig,
    *,
    progress: Progress | None = None,
    allow_mass_delete: bool = False,
    subtree: str | None = None,
) -> ScanResult:
    """Scan ``pool`` (or only ``subtree`` inside it) and bring the catalog up to date."""
    return _scan(catalog, pool, scan_cfg, progress, allow_mass_delete, subtree, None)


def _scan(
    catalog: Catalog,
    pool: PoolConfig,
    scan_cfg: ScanConfig,
    progress: Progress | None,
    allow_mass_delete: bool,
    subtree: str | None,
    run: FindRun | None,
    forget: frozenset[str] = frozenset(),
) -> ScanResult:
    # Long on purpose: open the scan's record, walk, apply the mass-delete guard, close the record, in order.
    root = findwalk.pool_root(subtree or pool.path)
    started_on = _walk_root_identity(pool, root)  # walked to and pinned: a swapped root is refused here
    t0 = time.monotonic()
    conn = catalog.conn
    with Tx(conn) as c:
        scan_id = c.execute(
            "INSERT INTO scans(pool, root, started_at) VALUES (?,?,?)", (pool.name, root, time.time())
        ).lastrowid
    result = ScanResult(pool=pool.name, scan_id=scan_id)
    ignore = findwalk.ignore_set(scan_cfg)

    if run is not None and run.closed:
        run = None  # used by an earlier scan of the same pool (a pool named twice): its fds are gone
    walk = None
    # A first scan writes every path anyway: only rescans gain from comparing find's lines. Never
    # a subtree's: find is handed a path string, and the folders above a subtree are inside the
    # pool, where its writers rename folders: one swapped for a symlink while find walked and
    # back before the second identity check sent find outside, its lines recorded as the
    # pool's. The Python walk descends by verified descriptors (and no production caller scans
    # a subtree: the speed is not missed).
    if FIND_WALK and findwalk.FIND and subtree is None and catalog.pool_has_paths(pool.name):
        walk = _find_walk(catalog, pool.name, root, False, ignore, run)
        # find was given the path (-P: a root that is a symlink is not followed); its lines are
        # the root's only if the path still leads, by the verified walk, to the folder checked
        if walk is not None and _walk_root_identity(pool, root) != started_on:
            raise QbhookError(f"cannot scan pool {pool.name}: {os.fsdecode(root)} changed while it was scanned")
    elif run is not None:
        run.close()
    if walk is None:
        walk = _python_walk(catalog, pool, root, subtree is not None, ignore, scan_id, progress)
    known_count, vanished, changes, unreadable, seen, added, changed, memo, seen_fs, loaded = walk
    result.added, result.changed = added, changed
    result.files_seen = seen
    result.unreadable = [os.fsdecode(u) for u in unreadable]

    unmounted, forgotten = (
        ({}, {})
        if not vanished or (allow_mass_delete and not forget)
        else _on_unmounted(catalog, list(vanished), seen_fs, forget)
    )
    if allow_mass_delete:
        unmounted = {}  # every vanished path goes
    # The guard judges the scan as if the forgotten rows were not in the catalog: they are the
    # drop the person asked for by name, and must not trip it; what else vanished still counts,
    # as a share of what else was known. The rows kept (unmounted) are counted: a whole pool
    # unmounted stays a refusal.
    n_forgotten = sum(map(len, forgotten.values()))
    judged, judged_known = len(vanished) - n_forgotten, known_count - n_forgotten
    refuse = (
        judged > scan_cfg.mass_delete_min_paths
        and judged > scan_cfg.mass_delete_max_share * max(judged_known, 1)
        and not allow_mass_delete
    )
    dropped = vanished
    if unmounted:
        kept = {p for paths in unmounted.values() for p in paths}
        dropped = [p for p in vanished if p not in kept]
        result.unmounted = sorted(unmounted)
    for mp, paths in sorted(unmounted.items()) if not refuse else ():  # a refusal names them itself
        log.warning(
            "scan of pool %s: %s is not mounted; its %d catalogued paths are kept as they were "
            "(gone for good? qbhook scan --forget-unmounted %s)",
            pool.name,
            shown(mp),
            len(paths),
            shown(mp),
        )

    with Tx(conn) as c:
        # The memo may be saved only if nobody wrote since the walk read the catalog: this
        # transaction holds the write lock, and the scan's own writes come after this read.
        unwritten = memo is not None and catalog.generation() == memo.generation
        changes, dropped = loaded.current(catalog, changes, [] if refuse else list(dropped))
        if changes:
            catalog.upsert_many(c, pool.name, changes, scan_id, displaced=loaded.displaced)
        if dropped:
            catalog.remove_paths_named(c, dropped)
            catalog.drop_orphan_inodes(c)
            catalog.drop_displaced(c, ())  # only their records are left to go
            result.removed = len(dropped)
            if forgotten:
                result.forgotten = len({p for ps in forgotten.values() for p in ps}.intersection(dropped))
        else:
            # A path renamed over or replaced leaves its old inode without a path though nothing
            # vanished: kept, its valid hash made it a phantom copy in `dupes` and `find`. Only
            # those inodes are looked at (drop_orphan_inodes reads them all: 45 ms at 180,000),
            # and those a scan killed between its batches left (Catalog.keep_displaced).
            catalog.drop_displaced(c, loaded.displaced)
        result.status = "refused" if refuse else "ok"
        said = []
        if unmounted:
            said.append(
                "not mounted, paths kept: "
                + ", ".join(f"{shown(m)} ({len(ps)})" for m, ps in sorted(unmounted.items()))
            )
        if result.forgotten:
            said.append(f"forgotten: {', '.join(map(shown, sorted(forgotten)))} ({result.forgotten})")
        msg = f"refused to drop {judged} of {judged_known} known paths" if refuse else "; ".join(said) or None
        c.execute(
            "UPDATE scans SET finished_at=?, status=?, files_seen=?, added=?, changed=?, removed=?, message=? "
            "WHERE id=?",
            (time.time(), result.status, seen, result.added, result.changed, result.removed, msg, scan_id),
        )
        generation = catalog.generation()
        # Not with rows kept: the catalog then holds lines find did not print, and an equal
        # output next time must be compared again (and the unmount said again).
        if unwritten and not refuse and not unmounted and generation is not None:
            _save_memo(catalog, c, pool.name, root if subtree is not None else None, memo, generation)
    if progress is not None:
        progress.done(f"{pool.name}: {seen:,} files, +{result.added} ~{result.changed} -{result.removed}")
    result.seconds = time.monotonic() - t0
    if refuse:
        raise notify.guard_tripped(
            MassDeleteRefused(
                f"scan of pool {pool.name} would drop {judged:,} of {judged_known:,} known paths "
                f"({100 * judged / max(judged_known, 1):.0f}%)"
                + (f", besides the {n_forgotten:,} of --forget-unmounted" if n_forgotten else "")
                + "; nothing was removed from the catalog",
                hint=f"is {', '.join(map(shown, sorted(unmounted))) or pool.path} mounted? "
                "If the files really are gone, re-run with --allow-mass-delete",
            )
        )
    return result


# What a walk hands back to scan_pool: catalog paths under the root before the walk, the
# catalogued paths that are gone, (path, fs, stat) to write, folders that could not be read,
# files seen, how many of the writes are new paths / changed paths, the memo to persist
# once the writes are in (find walks only), the filesystem rows of the files it saw, and what
# it loaded of the rows it means to write or drop (_Loaded).
_Walk = tuple[
    int, "list[bytes] | dict[bytes, int]", list, list[bytes], int, int, int, "_OutputMemo | None", set[int], "_Loaded"
]

_FLUSH_EVERY = 5000  # changes a Python walk writes at a time (_flush)
_NO_ROW_SEEN = object()  # _Loaded.was of a path the walk did not say: never equal to a row


@dataclass(slots=True)
class _Loaded:
    """What a walk compared the files with, for the rows it will write or drop.

    Nothing stops another process from writing the catalog while a scan walks (`serve`'s
    executor records the paths it links, moves and puts back; `qbhook scan`, `dupes` and `plan`
    take no lock against it). Its row is then newer than the walk's stat: written over, a
    relinked path would point at its old inode again; dropped, a path hidden and put back meanwhile
    would lose its row and its inode's hash. So a write or drop goes ahead only while the row is
    still the one the walk loaded: ``generation`` was read before the walk loaded the rows (a
    write in between only costs a re-check), ``was`` holds each such path's stat_signature then
    (None: no row). When the generation did not move, no row did (``Catalog.generation``)."""

    generation: int | None
    was: dict[bytes, int | None] = field(default_factory=dict)
    # Whether the last ``current`` found the generation where ``generation`` left it: only
    # then are the writes that follow the only ones since, and the baseline may advance.
    unmoved: bool = False
    # Inodes the walk's writes took a path from (``Catalog.upsert_many``), dropped in the last
    # transaction if no path points at them then: a swap split over two batches keeps its hashes.
    # Each batch records them with its writes (Catalog.keep_displaced): killed before its last
    # transaction, the scan leaves them to the next scan's (Catalog.drop_displaced).
    displaced: set[int] = field(default_factory=set)

    def current(self, catalog: Catalog, changes: list, gone: list[bytes]) -> tuple[list, list[bytes]]:
        """``changes`` ((path, fs, stat)) and ``gone`` (paths) without those whose row another writer
        changed since the walk loaded it. Called in the writing transaction, so that nobody writes
        between this look and the writes; reads the rows (500 a query) only if the generation moved.
        Afterwards the scan's own writes in that transaction are not another's (``wrote``)."""
        self.unmoved = self.generation is not None and catalog.generation() == self.generation
        if self.unmoved:
            return changes, gone
        rows = catalog.stat_rows([p for p, _fs, _st in changes] + gone)
        was = self.was

        def unchanged(path: bytes) -> bool:
            row = rows.get(path)
            return was.get(path, _NO_ROW_SEEN) == (None if row is None else stat_signature(row))

        kept = [ch for ch in changes if unchanged(ch[0])]
        dropped = [p for p in gone if unchanged(p)]
        if len(kept) < len(changes) or len(dropped) < len(gone):
            log.info(
                "scan: %d path(s) recorded by another process meanwhile were left as it wrote them",
                len(changes) - len(kept) + len(gone) - len(dropped),
            )
        return kept, dropped

    def registered(self, before: int | None, after: int | None) -> None:
        """``Catalog.fs_for_path``'s ``on_write``: the walk registered a filesystem it met (a first
        scan always does), in a transaction no other writer could enter. If the generation was
        still the baseline when it began, its bump is the walk's own and the baseline moves
        with it; else the baseline stays behind and the next ``current`` re-reads its rows.
        Without this, every first scan re-read each row it was about to write (20,000 at
        bench_converge's 10,000 pairs) though no other writer had come."""
        if before is not None and before == self.generation:
            self.generation = after

    def wrote(self, catalog: Catalog) -> None:
        """In the writing transaction, after its writes: they are the walk's own, not another's.

        A flush re-checks only its own batch; the rows the walk loaded for the rest (the paths
        it will drop, the changes still to come) are as old as before. So the baseline moves up
        only if nobody else wrote since the last look; else it is None, and every later
        ``current`` re-reads its rows."""
        self.generation = catalog.generation() if self.unmoved else None
        self.was.clear()  # the batch's paths: written, or left to the next scan


def unmounted_filesystems(catalog: Catalog) -> list[Filesystem]:
    """The catalogued filesystems whose recorded mount point is not in the mount table now:
    the only ones whose paths a scan keeps unseen, and so the only ones --forget-unmounted can
    name (a mounted pool root never is one: its vanished files are judged by the guard)."""
    mounted = {m.mountpoint for m in fsid.read_mounts()}
    return [f for f in catalog.filesystems() if f.mountpoint and f.mountpoint not in mounted]


def filesystems_away(catalog: Catalog, forget: Iterable[str] = ()) -> dict[int, str]:
    """Filesystem id -> recorded mount point, of each filesystem whose vanished paths are not
    known to be gone, only out of sight: not mounted now (``unmounted_filesystems``), and not
    a user's FUSE mount (fsid.is_user_mount; a less-trusted user would decide how long its rows
    stay by not mounting it). A mount point in ``forget`` (named by the admin, for the caller to
    drop) is listed even when a user's mount.

    The one rule for "a vanished row stays": the scan's (``_on_unmounted``) and the event
    worker's (an *arr's delete event, missingFromDisk, for each file of a dataset that dropped)."""
    forget = frozenset(forget)
    return {
        f.id: f.mountpoint
        for f in unmounted_filesystems(catalog)
        if f.mountpoint in forget or not fsid.is_user_mount(f.fsid)
    }


def _on_unmounted(
    catalog: Catalog, vanished: list[bytes], seen_fs: set[int], forget: frozenset[str] = frozenset()
) -> tuple[dict[str, list[bytes]], dict[str, list[bytes]]]:
    """(kept, forgotten), each mount point -> ``vanished`` paths of a filesystem the walk saw no
    file of and whose recorded mount point is not in the mount table now.

    Kept: its files are not known to be gone, only out of sight (an unmounted dataset, a bind
    mount gone, leaving an empty folder); a filesystem that is mounted, or showed any file, had
    its files really go. Never kept: a user's FUSE mount (fsid.is_user_mount; a less-trusted
    user would decide how long its rows stay by not mounting it).

    Forgotten: a mount point in ``forget`` (the admin said its files are gone: ``qbhook scan
    --forget-unmounted``); dropped, and not counted by the mass-delete guard."""
    away = {i: mp for i, mp in filesystems_away(catalog, forget).items() if i not in seen_fs}
    kept: dict[str, list[bytes]] = {}
    forgotten: dict[str, list[bytes]] = {}
    if not away:
        return kept, forgotten
    for path, row in catalog.stat_rows(vanished).items():
        if (mp := away.get(row[0])) is not None:
            (forgotten if mp in forget else kept).setdefault(mp, []).append(path)
    return kept, forgotten


def _walk_root_identity(pool_cfg: PoolConfig, root: bytes) -> tuple[int, int]:
    """(st_dev, st_ino) of the folder a scan of ``root`` walks, opened by ``_open_walk_root``; a
    root that is not there is the QbhookError that asks whether the pool is mounted."""
    try:
        fd = _open_walk_root(pool_cfg, root)
    except (FileNotFoundError, NotADirectoryError):
        raise QbhookError(
            f"cannot scan pool {pool_cfg.name}: {os.fsdecode(root)} is not a folder",
            hint="is the pool mounted? check 'pools' in the config",
        ) from None
    except OSError as e:  # there, but not to be opened by this user (EACCES), or a name too long
        raise QbhookError(f"cannot scan pool {pool_cfg.name}: cannot open {os.fsdecode(root)}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_dev, st.st_ino


def _open_walk_root(pool_cfg: PoolConfig, root: bytes) -> int:
    """The descriptor the Python walk starts from: the pool root (``dirfd.open_root``: walked to
    from ``/``, pinned), or a subtree opened from it down; a folder on the way swapped for a
    symlink is a QbhookError naming it. OSError: no folder there."""
    pool_path = os.fsencode(findwalk.pool_root(pool_cfg.path))
    try:
        return open_root(root, None if root == pool_path else pool_path)
    except ValueError as e:  # a subtree outside the pool, or through '..'
        raise QbhookError(f"cannot scan pool {pool_cfg.name}: {e}") from None
    except FolderRefused as e:
        raise QbhookError(
            f"cannot scan pool {pool_cfg.name}: {e}", hint="qbhook never follows links below a pool root"
        ) from None


def _python_walk(
    catalog: Catalog,
    pool_cfg: PoolConfig,
    root: bytes,
    subtree: bool,
    ignore: set[bytes],
    scan_id: int,
    progress: Progress | None,
) -> _Walk:
    """os.scandir + lstat of every entry, compared with the catalog's stat signatures.

    Each folder is listed through its own descriptor, opened below its parent's with
    ``dirfd.open_below`` (depth first, one descriptor per level, a folder's subfolders opened
    one at a time after its listing is closed), and each entry lstat-ed relative to it: a
    folder swapped for a symlink after its parent was listed is never followed (it is
    unreadable: its rows are kept, as for any folder that cannot be read). The catalog keeps
    path strings; only the descent goes by descriptor.
    """
    # Long on purpose: the walk's hot loop keeps its state in locals (measured: the rescan's floor).
    pool = pool_cfg.name
    # path -> signature of (fs, ino, size, mtime_ns, ctime_ns, nlink, mode, uid, gid): one int per
    # path keeps the rescan's memory and per-file work small (see store.stat_signature).
    loaded = _Loaded(catalog.generation())  # read first: a write before the load only costs a re-check
    known = catalog.load_pool_signatures(pool)
    if subtree:
        prefix = root + b"/"
        known = {p: v for p, v in known.items() if p == root or p.startswith(prefix)}
    known_count = len(known)
    changes: list[tuple[bytes, int, os.stat_result]] = []
    unreadable: list[bytes] = []
    dev_fs: dict[int, int] = {}
    S_ISREG = stat_mod.S_ISREG
    relink = _RELINK
    seen = added = changed = 0

    fsencode = os.fsencode
    try:
        fd: int | None = _open_walk_root(pool_cfg, root)
    except OSError:
        fd = None
        unreadable.append(root)
    d = root
    # (open folder, its path, names of its subfolders not entered yet), one per level
    frames: list[tuple[int, bytes, list[bytes]]] = []
    try:
        while True:
            if fd is not None:
                subdirs: list[bytes] = []
                prefix = d.rstrip(b"/") + b"/"
                try:
                    it = os.scandir(fd)  # str names (a descriptor's listing): fsencode gives back the bytes
                except OSError:
                    unreadable.append(d)
                    os.close(fd)
                else:
                    frames.append((fd, d, subdirs))
                    with it:
                        for entry in it:
                            name = fsencode(entry.name)
                            if name in ignore:
                                continue
                            path = prefix + name
                            try:
                                if entry.is_dir(follow_symlinks=False):
                                    subdirs.append(name)
                                    continue
                                if name[0] == 46 and name.startswith(relink):  # 46: "."; a relink link
                                    continue
                                st = entry.stat(follow_symlinks=False)  # fstatat relative to fd
                            except OSError:
                                unreadable.append(path)
                                continue
                            if not S_ISREG(st.st_mode):
                                continue  # symlinks, sockets, fifos: never followed, never catalogued
                            seen += 1
                            fs = dev_fs.get(st.st_dev)
                            if fs is None:
                                fs = dev_fs[st.st_dev] = catalog.fs_for_path(
                                    path, st.st_dev, on_write=loaded.registered
                                )
                            rec = known.pop(path, None)
                            # inline stat_signature(): this line runs once per file
                            if rec != hash(
                                (
                                    fs,
                                    st.st_ino,
                                    st.st_size,
                                    st.st_mtime_ns,
                                    st.st_ctime_ns,
                                    st.st_nlink,
                                    st.st_mode,
                                    st.st_uid,
                                    st.st_gid,
                                )
                            ):
                                changes.append((path, fs, st))
                                loaded.was[path] = rec
                                if len(changes) >= _FLUSH_EVERY:
                                    _flush(catalog, pool, changes, scan_id, loaded)
                                if rec is None:
                                    added += 1
                                else:
                                    changed += 1
                            if progress is not None and not seen & 1023:
                                progress.update(seen, f"{pool}: {seen:,} files")
                    subdirs.reverse()  # entered in listing order
            fd = None
            if not frames:
                break
            pfd, pd, todo = frames[-1]
            if not todo:
                frames.pop()
                os.close(pfd)
                continue
            name = todo.pop()
            d = pd.rstrip(b"/") + b"/" + name
            try:
                fd = open_below(pfd, name)
            except NotAFolder:
                # a symlink (or a file) now, a folder when listed: swapped meanwhile, never followed
                log.warning("scan of pool %s: %s changed while listed; not entered", pool, os.fsdecode(d))
                unreadable.append(d)
            except OSError:
                unreadable.append(d)
    finally:
        for f, _d, _todo in frames:
            os.close(f)

    # Keep rows below folders we could not read: unknown is not deleted.
    if unreadable:
        bad = tuple(u + b"/" for u in unreadable)
        unreadable_set = set(unreadable)
        vanished = {p: v for p, v in known.items() if not p.startswith(bad) and p not in unreadable_set}
    else:
        vanished = known
    loaded.was.update(vanished)
    return known_count, vanished, changes, unreadable, seen, added, changed, None, set(dev_fs.values()), loaded


# ---------------------------------------------------------------- the find fast path
#
# An unchanged rescan spends its time stat'ing every file and comparing. CPython adds about
# 1 us per entry to the kernel's stat (bench/bench_scan.py: a bare scandir + lstat walk is
# 1.7x `find` on ext4), so the walk is done by GNU find in its own process, on the other core,
# while this process has SQLite rebuild, for every catalogued path, the exact line find prints
# for it (Catalog.iter_find_lines). Lines that are equal are unchanged files: every field the
# rescan compares (device, inode, size, mtime and ctime to the nanosecond, link count, mode,
# owner and group, path) is in the line. Only lines that differ are parsed. Directory mtimes are
# never used to skip anything: a link made or removed elsewhere changes a file's st_nlink and
# st_ctime, not its folder's mtime, so every file is stat'ed on every rescan (find stats each one
# for -printf). A chmod or chown changes the mode or owner (and the ctime) in the line.
#
# find is trusted only as a stat tool, and only when everything checks out: it must exit 0
# (any unreadable folder or file that vanished mid-walk makes it report an error, and then the
# Python walk runs, which knows which folders to keep); every differing line must parse and
# print back byte for byte (else find's format is not the one assumed); and the st_dev -> catalog
# filesystem mapping assumed for the catalog's lines must hold now (checked with fs_for_path
# on a path find printed for that device). Otherwise the scan falls back to the Python walk.

FIND_WALK = True  # False: always walk in Python (e.g. to compare in benchmarks)
_FIND_CHUNK = 4 * 1024 * 1024
_PATH_FIELD = 9  # the path is a line's tenth field, the rest of it: line.split(b" ", _PATH_FIELD)


def _ignored_lines(buf: bytes, lines: list[bytes], ends: tuple[bytes, ...]) -> list[bytes]:
    """``lines`` (the complete lines of ``buf``) without those of files whose name is ignored
    or is a relink link's (``_RELINK``).

    ``ends`` are b"/NAME" for each ignored name. A line's path ends with one of them exactly
    when ``buf`` holds it followed by the line's NUL (paths hold no NUL, and find prints every
    path below the root, after a "/"), and a relink link's name follows a "/" in its line; so
    one search in C per name spares the per-line test for every chunk that has none (nearly
    all of them). Only a line's last name counts: a folder named like a relink link is walked."""
    if _RELINK_NAMED not in buf and not any(e + b"\0" in buf for e in ends):
        return lines
    return [ln for ln in lines if not ln.endswith(ends) and not ln.startswith(_RELINK_NAMED, ln.rfind(b"/"))]


def _parse_find_line(line: bytes) -> tuple[bytes, InodeStat]:
    """(path, stat) from one line; ValueError unless it prints back to exactly ``line``."""
    path, st = _line_fields(line)
    if st.st_mode is None:
        raise ValueError("unexpected find output")  # find always prints a mode: only the catalog's lines lack one
    if Catalog.find_line(st, path) != line:
        raise ValueError("unexpected find output")
    return path, st


def _line_fields(line: bytes) -> tuple[bytes, InodeStat]:
    """(path, stat) from a line in find's format (ValueError if it has not its ten fields), the
    stat as find printed it. The mode is find's %m (the permission bits) made a regular file's
    st_mode (find prints only those); "- - -" (a catalog row's unknown owner: Catalog.find_line)
    is None for all three."""
    dev, ino, size, mt, ct, nlink, mode, uid, gid, path = line.split(b" ", _PATH_FIELD)
    ms, _, mf = mt.partition(b".")
    cs, _, cf = ct.partition(b".")
    unknown = mode == b"-" and uid == b"-" and gid == b"-"
    # Built as the tuple it is: InodeStat(...)'s Python-level __new__ costs 7 % of this function,
    # run for every line find prints that the catalog lacks (all of them on a first scan).
    st = tuple.__new__(
        InodeStat,
        (
            int(dev),
            int(ino),
            int(size),
            int(ms) * 1_000_000_000 + int(mf[:9]),
            int(cs) * 1_000_000_000 + int(cf[:9]),
            int(nlink),
            None if unknown else stat_mod.S_IFREG | int(mode, 8),
            None if unknown else int(uid),
            None if unknown else int(gid),
        ),
    )
    return path, st


def _find_chunks(fd: int):
    """(buffer, complete NUL-terminated lines in it) of find's output, a few MiB at a time;
    (b"", None) last if the output ends mid-line."""
    size = os.fstat(fd).st_size
    off, carry = 0, b""
    while off < size:
        part = os.pread(fd, _FIND_CHUNK, off)
        if not part:
            break
        off += len(part)
        buf = carry + part
        lines = buf.split(b"\0")
        carry = lines.pop()
        yield buf, lines
    if carry:
        yield b"", None


def _find_walk(
    catalog: Catalog, pool: str, root: bytes, subtree: bool, ignore: set[bytes], run: FindRun | None = None
) -> _Walk | None:
    """The rescan with find as the walker (``run``: one already started on ``root``); None when
    its answer cannot be trusted (see above)."""
    run = run or findwalk.start_find(pool, root, ignore)
    if run is None:
        return None
    try:
        return _find_walk_run(catalog, pool, root, subtree, run)
    finally:
        run.close()


def _find_walk_run(catalog: Catalog, pool: str, root: bytes, subtree: bool, run: FindRun) -> _Walk | None:
    # Long on purpose: the memo check, the catalog's lines while find walks, and the diff, in order.
    proc, cmd, out, err = run.proc, run.cmd, run.out, run.err
    under = root if subtree else None
    try:
        # Read at the start: a memo saved at this generation describes the catalog as it is now.
        generation = catalog.generation()
        devs = catalog.fs_devs()
        cmd_digest = _cmd_digest(cmd)
        memo = _load_memo(catalog, _memo_key(pool, under), cmd_digest)
        if memo is not None and (memo.generation != generation or memo.devs != devs):
            memo = None
        # Without a usable memo the catalog's lines are built while find walks (the other core);
        # with one, find's output is hashed as it grows, so little is left once find exits.
        expected = None if memo is not None else _expected_lines(catalog, pool, under, generation, devs)
        hashed = _Hashed()
        if memo is not None:
            rc = _wait_hashing(proc, out, hashed, lambda line: _identify_early(catalog, line, devs))
        else:
            rc = proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    if rc != 0:
        why = os.pread(err, 300, 0).decode(errors="replace").strip().splitlines()
        log.info("scan of %s: find exited with %s (%s); walking in Python", pool, rc, why[0] if why else "no message")
        return None
    size, digest, sample = _digest_output(out, set(devs.values()), hashed)
    dev_fs = _devices_still_mapped(catalog, pool, devs, sample)
    if dev_fs is None:
        return None
    if memo is not None:
        if (size, digest) == (memo.size, memo.digest):
            # Byte for byte what find printed when the catalog last matched it, at this very
            # generation: every file's stat (link counts, ctimes) and every path is unchanged.
            return memo.lines, [], [], [], memo.lines, 0, 0, None, set(dev_fs.values()), _Loaded(generation)
        expected = _expected_lines(catalog, pool, under, generation, devs)
    known, known_count = expected
    diff = _compare(catalog, pool, under, devs, known, run, dev_fs)
    if diff is None:
        return None
    vanished, kept, seen, added, changed, was = diff
    fresh = _OutputMemo(generation, devs, cmd_digest, size, seen, digest) if generation is not None else None
    return known_count, vanished, kept, [], seen, added, changed, fresh, set(dev_fs.values()), _Loaded(generation, was)


def _expected_lines(
    catalog: Catalog, pool: str, under: bytes | None, generation: int | None, devs: dict[int, int]
) -> tuple[set[int], int]:
    """The catalog's lines as hashes (SipHash of the bytes, keyed per process), and how many;
    reused from this Catalog's last rescan if the write generation did not move since."""
    key = (pool, under)
    kept = catalog.scan_memo.get(key)
    if generation is not None and kept is not None and kept[0] == generation and kept[1] == devs:
        return kept[2], kept[3]
    catalog.scan_memo.pop(key, None)
    known: set[int] = set()
    count = 0
    for lines in catalog.iter_find_lines(pool, devs, under):
        count += len(lines)
        known.update(map(hash, lines))
    if generation is not None:
        catalog.scan_memo[key] = (generation, devs, known, count)
    return known, count


@dataclass(slots=True)
class _Hashed:
    """The BLAKE3 of find's output so far: its first ``upto`` bytes."""

    hasher: blake3.blake3 = field(default_factory=blake3.blake3)
    upto: int = 0


def _wait_hashing(
    proc: subprocess.Popen, out: int, hashed: _Hashed, first_line: Callable[[bytes], None] | None = None
) -> int:
    """Wait for find while hashing what it has written so far; its exit status. ``first_line``
    is called once with the first complete line find printed, while find still walks.

    find only appends to the memory file, and the kernel raises a shared-memory file's size
    only after the bytes below it are copied in, so every byte below the size read here is
    final: hashing them now gives the digest a single pass after find's exit would."""
    # A pidfd turns readable when find exits: the wait ends then, not at the next poll of a
    # sleep loop (subprocess's timed wait polls waitpid with growing sleeps).
    try:
        pidfd = os.pidfd_open(proc.pid) if proc.returncode is None else None
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            if pidfd is not None:
                select.select([pidfd], [], [], 0.01)
                rc = proc.poll()
            else:
                try:
                    rc = proc.wait(timeout=0.01)
                except subprocess.TimeoutExpired:
                    rc = None
            size = os.fstat(out).st_size
            while hashed.upto < size:
                part = os.pread(out, min(_FIND_CHUNK, size - hashed.upto), hashed.upto)
                if not part:
                    break
                if first_line is not None and (end := part.find(b"\0")) >= 0 and not hashed.upto:
                    first_line(part[:end])
                    first_line = None
                hashed.hasher.update(part)
                hashed.upto += len(part)
            if rc is not None:
                return rc
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _identify_early(catalog: Catalog, line: bytes, devs: dict[int, int]) -> None:
    """Look up the filesystem of the first file find printed while find still walks.

    It is the very call _devices_still_mapped makes after the walk for that device (its sample
    of a device is the first line printed for it), which then is answered from this Catalog's
    cache, itself dropped if the mount table changes meanwhile (Catalog.fs_for_path). A new
    process's first lookup forks blkid (zfs on ZFS): 5-25 ms no longer after the walk."""
    try:
        dev, rest = line.split(b" ", 1)
        path = rest.split(b" ", _PATH_FIELD - 1)[_PATH_FIELD - 1]
        if int(dev) in devs.values():
            catalog.fs_for_path(path, int(dev))
    except (ValueError, IndexError, OSError):
        pass  # the check after the walk asks again, and decides


def _digest_output(out: int, devices: set[int], hashed: _Hashed | None = None) -> tuple[int, bytes, dict[int, bytes]]:
    """find's output: its size, its BLAKE3 (continuing ``hashed``, the part already hashed
    while find ran), and one line it printed for each of ``devices``."""
    hashed = hashed or _Hashed()
    size = os.fstat(out).st_size
    if size == 0:
        return 0, blake3.blake3(b"").digest(), {}
    with mmap.mmap(out, size, prot=mmap.PROT_READ) as mm:
        with memoryview(mm) as view, view[hashed.upto :] as rest:
            hashed.hasher.update(rest)
        digest = hashed.hasher.digest()
        sample: dict[int, bytes] = {}
        for dev in devices:
            pfx = b"%d " % dev
            first = mm[: len(pfx)] == pfx
            at = 0 if first else mm.find(b"\0" + pfx) + 1
            if first or at > 0:
                end = mm.find(b"\0", at)
                if end >= 0:
                    sample[dev] = mm[at:end]
    return size, digest, sample


def _devices_still_mapped(
    catalog: Catalog, pool: str, devs: dict[int, int], sample: dict[int, bytes]
) -> dict[int, int] | None:
    """st_dev -> filesystem for the devices find printed that the catalog's lines assumed (devs:
    filesystem -> st_dev); None if one of them is now another filesystem (a remount)."""
    dev_fs: dict[int, int] = {}
    fs_of_dev = {dev: fs for fs, dev in devs.items()}
    for dev, line in sample.items():
        try:
            path = line.split(b" ", _PATH_FIELD)[_PATH_FIELD]
        except IndexError:
            return None
        dev_fs[dev] = catalog.fs_for_path(path, dev)
        if dev_fs[dev] != fs_of_dev[dev]:
            log.info("scan of %s: device %d is now another filesystem; walking in Python", pool, dev)
            return None
    return dev_fs


def _compare(
    catalog: Catalog, pool: str, under: bytes | None, devs: dict[int, int], known: set[int], run: FindRun, dev_fs: dict
) -> tuple[list[bytes], list, int, int, int, dict[bytes, int | None]] | None:
    """find's lines against the catalog's (``known``, left as it is: it may be kept for the next
    rescan): (vanished paths, (path, fs, stat) to write, lines seen, added, changed, and the
    stat_signature each of those paths had in ``known``, None if none: ``_Loaded.was``). Lines find
    printed that the catalog does not have are parsed; if every catalog line was matched and
    none is new, nothing changed."""
    # Long on purpose: match by hash, parse the new lines, name the gone ones, drop dev-only differences.
    fresh_lines: list[bytes] = []
    matched = seen = 0
    out, ends = run.out, run.ends
    for buf, lines in _find_chunks(out):
        if lines is None:
            log.info("scan of %s: find's output ends mid-line; walking in Python", pool)
            return None
        lines = _ignored_lines(buf, lines, ends)
        seen += len(lines)
        hs = set(map(hash, lines))
        new = hs - known
        matched += len(hs) - len(new)
        if new:
            fresh_lines.extend(ln for ln in lines if hash(ln) in new)
    if not fresh_lines and matched == len(known):
        return [], [], seen, 0, 0, {}

    changes: list[tuple[bytes, int, InodeStat]] = []
    for line in fresh_lines:
        try:
            path, st = _parse_find_line(line)
        except ValueError:
            log.info("scan of %s: unexpected find output; walking in Python", pool)
            return None
        fs = dev_fs.get(st.st_dev)
        if fs is None:
            fs = dev_fs[st.st_dev] = catalog.fs_for_path(path, st.st_dev)
        changes.append((path, fs, st))
    gone: dict[bytes, int] = {}  # path -> its line's stat_signature, as ``known`` had it
    if matched < len(known):
        # Something is gone (rarer): which catalog lines find did not print, and their paths.
        printed: set[int] = set()
        for buf, lines in _find_chunks(out):
            printed.update(map(hash, _ignored_lines(buf, lines, ends)))
        unmatched = known - printed
        fs_of_dev = {dev: fs for fs, dev in devs.items()}
        for lines in catalog.iter_find_lines(pool, devs, under):
            for ln in lines:
                if hash(ln) in unmatched:
                    path, st = _line_fields(ln)  # the catalog's own line (Catalog.iter_find_lines)
                    # Device -1 (a filesystem with no st_dev of its own): no row is filesystem -1,
                    # so such a path is never written or dropped over another's write.
                    fs = fs_of_dev.get(st.st_dev, -1)
                    gone[path] = stat_signature((fs, *st[1:]))
    vanished = list(gone.keys() - {p for p, _fs, _st in changes})
    # A path on both sides changed only if its (filesystem, stat) did, as the Python walk
    # decides: a line can also differ because the st_dev a filesystem had when last seen is
    # stale (a remount, a reboot) while the file and its filesystem are the same.
    was = catalog.stat_rows([p for p, _fs, _st in changes if p in gone])
    kept = [(p, fs, st) for p, fs, st in changes if was.get(p) != (fs, *st[1:])]
    changed = sum(1 for p, _fs, _st in kept if p in gone)
    loaded = {p: gone[p] for p in vanished} | {p: gone.get(p) for p, _fs, _st in kept}
    return vanished, kept, seen, len(kept) - changed, changed, loaded


# ---------------------------------------------------------------- the persisted rescan memo
#
# A new process (the CLI's `qbhook scan`, `qbhook dupes`) has no in-process memo, and rebuilding
# every catalog line in SQLite costs about as much as find's walk. So a rescan that found the
# catalog equal to find's output leaves a memo in the catalog (table scan_memos): the write
# generation at which that was true, the st_dev each filesystem row had, the find command, and
# the size, line count and BLAKE3 of find's whole output. The next rescan runs find as always
# (every file stat'ed: link counts and ctimes are in every line) and, if the generation and the
# st_dev mapping are the memo's, compares only the digest of the output: equal bytes are the
# same files with the same stat, and the catalog rows still are what matched them, since any
# write to paths, inodes or filesystems, by any process, moves the generation (triggers in
# schema.WRITE_GENERATION_DDL). Anything else (no memo, another version, a bad checksum, a
# field of the wrong type, another generation, other devices, another output) compares line
# by line as before; the devices find printed are checked against the catalog's filesystems
# (fs_for_path) either way. The memo is only an optimisation: it never changes a result.
# One whole-output digest (not one per line) because a per-line digest that is stable across
# processes costs a Python call per line (Python's own hash() is salted per process), and the
# lines themselves are ~200 bytes per path.

# 2: lines of relink links dropped (_ignored_lines); a memo of 1 vouched for a catalog that may hold one.
_MEMO_VERSION = 2


@dataclass(frozen=True, slots=True)
class _OutputMemo:
    generation: int
    devs: dict[int, int]  # filesystem row -> st_dev, as in the catalog's lines
    cmd: bytes  # BLAKE3 of the find command (root, pruned names, format)
    size: int
    lines: int
    digest: bytes


def _memo_key(pool: str, under: bytes | None) -> bytes:
    return pool.encode() + b"\0" + (under or b"")


def _cmd_digest(cmd: list[bytes]) -> bytes:
    return blake3.blake3(b"\0".join(cmd)).digest()


def _encode_memo(m: _OutputMemo) -> bytes:
    body = json.dumps(
        {
            "v": _MEMO_VERSION,
            "generation": m.generation,
            "devs": sorted(m.devs.items()),
            "cmd": m.cmd.hex(),
            "size": m.size,
            "lines": m.lines,
            "digest": m.digest.hex(),
        },
        separators=(",", ":"),
    ).encode()
    return body + blake3.blake3(body).digest()


def _decode_memo(blob: bytes) -> _OutputMemo | None:
    """The memo in ``blob``, or None for anything that is not exactly what _encode_memo wrote."""
    body, check = blob[:-32], blob[-32:]
    if len(blob) <= 32 or blake3.blake3(body).digest() != check:
        return None
    try:
        d = json.loads(body)
        if d["v"] != _MEMO_VERSION:
            return None
        devs = {int(fs): int(dev) for fs, dev in d["devs"]}
        m = _OutputMemo(
            d["generation"], devs, bytes.fromhex(d["cmd"]), d["size"], d["lines"], bytes.fromhex(d["digest"])
        )
    except (ValueError, TypeError, KeyError):
        return None
    if not all(type(v) is int and v >= 0 for v in (m.generation, m.size, m.lines)) or len(m.digest) != 32:
        return None
    return m


def _load_memo(catalog: Catalog, key: bytes, cmd: bytes) -> _OutputMemo | None:
    blob = catalog.scan_memo_blob(key)
    memo = _decode_memo(blob) if blob else None
    return memo if memo is not None and memo.cmd == cmd else None


def _save_memo(catalog: Catalog, c, pool: str, under: bytes | None, memo: _OutputMemo, generation: int) -> None:
    """Called inside the scan's last transaction, after its writes: the catalog now matches
    find's output, at ``generation`` (read in the same transaction)."""
    fresh = _OutputMemo(generation, memo.devs, memo.cmd, memo.size, memo.lines, memo.digest)
    catalog.put_scan_memo(c, _memo_key(pool, under), _encode_memo(fresh))


def _flush(catalog: Catalog, pool: str, changes: list, scan_id: int, loaded: _Loaded) -> None:
    # Batches bound memory on first scans of huge pools; each batch is a fact on its own.
    if not changes:
        return
    with Tx(catalog.conn) as c:
        current, _ = loaded.current(catalog, changes, [])
        before = len(loaded.displaced)
        catalog.upsert_many(c, pool, current, scan_id, displaced=loaded.displaced)
        if len(loaded.displaced) > before:  # kept with the batch: a kill before the last transaction leaves them
            catalog.keep_displaced(c, scan_id, loaded.displaced)
        loaded.wrote(catalog)
    changes.clear()


# Scan records kept whatever their age. `last_scans` shows the newest few; and a new record's
# id is SQLite's max(id) + 1, so keeping the newest keeps ids growing, which ``seen_scan`` and
# the sweep's re-plan mark (worker._scan_mark) compare.
KEEP_SCANS = 20


def prune_scans(conn, pools, older_than_s: float, *, keep_last: int | None = None, now: float | None = None) -> int:
    """Delete scan records that ended (or, unfinished, started) over ``older_than_s`` ago.

    A record is one row per scan: each sweep writes one per pool and each event one per
    subtree it rescans, so without this the table grows with every sweep and event for as
    long as `serve` runs. Never deleted: the newest ``keep_last`` records, and the newest
    successful whole-pool scan of each of ``pools`` (``queries.last_full_scan_age`` reads it)."""
    cutoff = (time.time() if now is None else now) - older_than_s
    keep_last = KEEP_SCANS if keep_last is None else keep_last
    roots = [(p.name, findwalk.pool_root(p.path)) for p in pools]
    keep_full = " UNION ".join("SELECT max(id) FROM scans WHERE pool = ? AND root = ? AND status = 'ok'" for _ in roots)
    with Tx(conn) as c:
        cur = c.execute(
            "DELETE FROM scans WHERE coalesce(finished_at, started_at) < ?"
            " AND id < (SELECT coalesce(min(id), 0) FROM (SELECT id FROM scans ORDER BY id DESC LIMIT ?))"
            + (f" AND id NOT IN ({keep_full})" if roots else ""),
            (cutoff, keep_last, *(x for r in roots for x in r)),
        )
        return cur.rowcount


def last_scans(catalog: Catalog, limit: int = 10) -> list[dict]:
    rows = catalog.conn.execute(
        "SELECT id, pool, started_at, finished_at, status, files_seen, added, changed, removed, message "
        "FROM scans ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    keys = ("id", "pool", "started_at", "finished_at", "status", "files_seen", "added", "changed", "removed", "message")
    return [dict(zip(keys, r)) for r in rows]
