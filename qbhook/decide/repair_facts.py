"""The facts of a repair (``qbhook repair``), gathered live; the decision is ``decide.repair``.

Beside ``snapshot.py`` (the planner's facts), this module does the repair's I/O so the decision
stays pure: the clients' torrents and file lists, each file's last known content from the
torrent index (synced first), the catalog inodes with that content (each path lstat-ed: it
must still be that inode, unchanged since hashed, or hash again to it), and what sits at every
path a view could use. ``repair_plan`` is the one call ``qbhook repair`` makes before handing
the plan to the executor.
"""

from __future__ import annotations

import os
import stat
import time
from typing import TYPE_CHECKING

from qbhook.catalog.indexer import try_sync_all
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import last_known_files
from qbhook.clients.model import TorrentInfo
from qbhook.decide.facts import PoolFact
from qbhook.decide.plan import Plan
from qbhook.decide.repair import (
    CatalogCopy,
    MissingTorrent,
    Present,
    RepairFacts,
    RepairFile,
    Unrepairable,
    plan_repairs,
    view_paths,
)
from qbhook.dirfd import FolderReader, FolderRefused
from qbhook.errors import ExitCode, PathMapError, QbhookError

if TYPE_CHECKING:
    from qbhook.clients.registry import Clients

__all__ = ["RepairInputError", "gather", "repair_plan"]


class RepairInputError(QbhookError):
    """``qbhook repair HASH`` named a torrent that is unknown or not missing anything."""

    exit_code = ExitCode.BAD_INPUT


def repair_plan(cfg, catalog: Catalog, clients: Clients, want: str | None) -> tuple[Plan, list[Unrepairable]]:
    """The repairs of every torrent missing files (``want``: only that one), and the refusals.

    The index is synced first (it keeps the last known hashes of files still there). A named
    torrent that is unknown or misses nothing is RepairInputError; one that cannot be repaired
    is a QbhookError with the reason.
    """
    try_sync_all(catalog, clients)
    plan, refused = plan_repairs(gather(cfg, catalog, clients, want))
    if want is not None and refused:
        raise QbhookError(f"cannot repair {refused[0].name} ({want}): {refused[0].reason}")
    return plan, refused


def gather(cfg, catalog: Catalog, clients: Clients, want: str | None) -> RepairFacts:
    """The repair's facts, read live (``want``: only that torrent; it must exist and miss files)."""
    with FolderReader(str(p.path) for p in cfg.pools) as reader:
        return _gather(cfg, catalog, clients, want, reader)


def _gather(cfg, catalog: Catalog, clients: Clients, want: str | None, reader: FolderReader) -> RepairFacts:
    pools = tuple(_pool_fact(catalog, p) for p in cfg.pools)
    listed_at = time.time()  # the plan's created_at: never later than its listing (executor._check_no_newcomer)
    if want is not None:
        infos = clients.find_all(want)
        if not infos:
            raise RepairInputError(f"no configured torrent client ({clients.describe()}) has torrent {want}")
    else:
        infos = [t for c in clients for t in c.torrents()]
    torrents = [t for info in infos if (t := _missing_torrent(catalog, clients, info, reader)) is not None]
    if want is not None and not torrents:
        # Refused only when no client's copy misses anything: the same torrent seeding fine in
        # one client while its copy in another lost its files is that copy's repair.
        states = ", ".join(f"{i.state} in {i.instance}" for i in infos) if len(infos) > 1 else infos[0].state
        raise RepairInputError(
            f"torrent {infos[0].name} ({want}) is not missing any file (state {states}): nothing to repair"
        )
    # Only content with a known hash can have copies: a file never hashed before it went missing
    # is plan_repairs' "content unknown" refusal (bytes.fromhex(None) was a traceback here).
    known = {(f.size, f.blake3) for t in torrents for f in t.files if f.priority and f.size and f.blake3 is not None}
    copies = _copies(catalog, reader, known)
    present = {p: _present(catalog, reader, p) for t in torrents for p in view_paths(t, pools)}
    return RepairFacts(tuple(torrents), pools, copies, present, now=listed_at)


def _pool_fact(catalog: Catalog, p) -> PoolFact:
    root = str(p.seeding_root)
    return PoolFact(
        name=p.name,
        role=p.role,
        path=str(p.path),
        seeding_root=root,
        seeding_fsid=catalog.fsid(catalog.fs_for_path(root)) if os.path.isdir(root) else f"unmounted:{root}",
        free_bytes=0,  # a repair writes no payload bytes
        more_seeding_roots=tuple(str(r) for r in p.more_seeding_roots),
    )


def _missing_torrent(
    catalog: Catalog, clients: Clients, info: TorrentInfo, reader: FolderReader
) -> MissingTorrent | None:
    """The torrent with its files' last known content, or None when nothing of it is missing."""
    if not info.has_metadata or not info.save_path:
        return None
    live = clients[info.instance].files(info.hash)
    gone = [f for f in live if f.wanted and not _is_file(reader, os.path.join(info.save_path, f.name))]
    if info.state != "missingFiles" and not gone:
        return None
    _cid, known = last_known_files(catalog.conn, info.instance, info.hash)
    by_index = {i: (rel, size, digest) for i, rel, size, _prio, digest in known}
    files = []
    for f in live:
        k = by_index.get(f.index)
        digest = k[2].hex() if k is not None and k[0] == f.name and k[1] == f.size and k[2] is not None else None
        files.append(RepairFile(f.index, f.name, f.size, f.priority, digest))
    skips = any(not f.wanted for f in live) and getattr(clients[info.instance], "part_file", True)
    return MissingTorrent(
        info.hash,
        info.instance,
        info.name,
        info.state,
        os.path.normpath(info.save_path),
        tuple(files),
        part_file_missing=skips and not _has_part_file(reader, info),
    )


def _has_part_file(reader: FolderReader, info: TorrentInfo) -> bool:
    """Whether libtorrent's part file of ``info`` is in its save path: ``.<hash>.parts``, the hash
    being libtorrent's "best" one (a hybrid torrent's v2 hash cut to 40 digits, not its v1 hash
    qBittorrent lists it by), so every spelling the torrent may have is looked for."""
    v2 = info.infohash_v2
    hashes = {h for h in (info.hash, info.infohash_v1, v2, v2[:40] if v2 else None) if h}
    return any(_is_file(reader, os.path.join(info.save_path, f".{h}.parts")) for h in hashes)


def _is_file(reader: FolderReader, path: str) -> bool:
    st = _lstat(reader, path)
    return isinstance(st, os.stat_result) and stat.S_ISREG(st.st_mode)


def _lstat(reader: FolderReader, path: str) -> os.stat_result | FolderRefused | None:
    """lstat of ``path`` through its verified folder: None if nothing is there, FolderRefused
    (returned, not raised) if a folder on the way is a symlink. A path under no pool is
    lstat-ed as it is: nothing there is inside the roots, and a repair acts only inside them."""
    try:
        return reader.lstat_any(path)
    except FolderRefused as e:
        return e
    except PathMapError:
        return None  # ".." or relative: never looked up


def _copies(catalog: Catalog, reader: FolderReader, contents) -> dict:
    """(size, blake3) -> catalog inodes holding it, each at a path lstat-ed just now that still is
    that inode. A hash taken before the inode's ctime moved (a link added or removed, as when the
    torrent's own link vanished) is confirmed by hashing the file again, opened in the folder
    the lstat was taken in; ``verify_view`` checks the content once more before qBittorrent is
    asked anything."""
    out = {}
    for size, digest in contents:
        found = []
        want = bytes.fromhex(digest)
        for inode_id in catalog.inode_ids_with_stored_hash(size, want):
            row = catalog.inode(inode_id)
            for path, _pool in catalog.paths_of(inode_id):
                p = os.fsdecode(path)
                try:
                    d, name = reader.place(p)
                    st = None if d is None else os.stat(name, dir_fd=d, follow_symlinks=False)
                except (FolderRefused, PathMapError, ValueError, OSError):
                    continue  # through a symlinked folder, under no pool, or gone: not a copy here
                if st is None:
                    continue
                if not (stat.S_ISREG(st.st_mode) and st.st_size == size and catalog.still_is(p, st, row)):
                    continue
                valid = row.hash == want and (st.st_mtime_ns, st.st_ctime_ns) == (row.mtime_ns, row.ctime_ns)
                if valid or _hashes_to(d, name, st, want):
                    found.append(CatalogCopy(p, row.fsid, row.ino))
                break
        out[(size, digest)] = tuple(found)
    return out


def _hashes_to(d: int, name: str, st: os.stat_result, want: bytes) -> bool:
    """Does the file ``name`` in the verified folder ``d``, still the inode ``st``, hash to ``want``?"""
    # Here, not at the top: the hashing machinery (threads, ctypes, the worker pool) is ~10 ms
    # of imports a repair whose stored hashes are all still valid never uses.
    from qbhook.catalog.hashing import hash_file

    try:
        res = hash_file(name, dir_fd=d)
    except OSError:
        return False
    same = (res.before.st_dev, res.before.st_ino) == (st.st_dev, st.st_ino)
    return same and res.stable and res.digest == want


def _present(catalog: Catalog, reader: FolderReader, path: str) -> Present | None:
    """What is at a view path now: None (nothing), or its inode with a valid stored hash."""
    st = _lstat(reader, path)
    if st is None:
        return None
    if isinstance(st, FolderRefused) or not stat.S_ISREG(st.st_mode):
        # a folder or symlink, or a path through a symlinked folder: never the wanted content
        return Present("", 0 if isinstance(st, FolderRefused) else st.st_ino, -1, None)
    fs = catalog.fs_for_path(path, st.st_dev)
    row = catalog.inode_by_key(fs, st.st_ino)
    ok = (
        row is not None
        and row.hash is not None
        and (row.size, row.mtime_ns, row.ctime_ns)
        == (
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
        )
    )
    return Present(catalog.fsid(fs), st.st_ino, st.st_size, row.hash.hex() if ok else None)
