"""Read-only questions asked of the catalog and the torrent index (qBittorrent may be down).

How old the last full scan is, the indexed torrents with their groups and payload ids, the
payloads stored more than once, and a torrent's group as the index last saw it with each
file stat-ed live (one lstat per file, no walk). Each answer says how fresh it is; the CLI
only formats them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from qbhook.catalog.indexer import try_sync_all
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex, payload_duplicates
from qbhook.clients.port import ClientPort
from qbhook.config import Config, PoolConfig
from qbhook.dirfd import FolderReader, FolderRefused
from qbhook.errors import PathMapError, QbhookError, UnknownTorrent


def last_full_scan_age(catalog: Catalog, pools: Iterable[PoolConfig]) -> float | None:
    """Seconds since every configured pool last finished a full scan (None: one never did)."""
    finished = []
    for pool in pools:
        # a whole-pool scan only: a subtree scan (events) says nothing about the rest
        r = catalog.conn.execute(
            "SELECT max(finished_at) FROM scans WHERE pool=? AND status='ok' AND root=?",
            (pool.name, os.fsencode(os.path.normpath(str(pool.path)))),
        ).fetchone()
        if r is None or r[0] is None:
            return None
        finished.append(r[0])
    return time.time() - min(finished) if finished else None


def sync_index(catalog: Catalog, clients: Iterable[ClientPort], offline: bool) -> tuple[dict, list[str]]:
    """Sync (unless offline); returns (freshness per instance, problems met). A problem is a line,
    or a client's error (``cannot sync NAME: ...``) whose hint a printer puts on its own line
    (``QbhookError.lines``; ``--json`` has ``str()`` of it, the hint after a line break)."""
    from qbhook.catalog.torrents import TorrentIndex

    problems: list[str | QbhookError] = []
    if not offline:
        _reports, errors = try_sync_all(catalog, clients)
        problems += errors
        problems += [r.rebuilt for r in _reports if r.rebuilt]
        problems += [f"{r.instance}: {u}" for r in _reports for u in r.unmappable]
    synced = TorrentIndex(catalog.conn).synced()
    return synced, problems


def list_torrents(
    cfg: Config,
    catalog: Catalog,
    clients: Iterable[ClientPort],
    *,
    pool=None,
    state=None,
    category=None,
    group=None,
    decision=None,
    gone: bool = False,
    offline: bool = False,
) -> dict:
    """``qbhook torrents``: indexed torrents with pool, group, payload ids and last decision, filtered."""
    synced, problems = sync_index(catalog, clients, offline)
    idx = TorrentIndex(catalog.conn)
    groups = idx.groups()
    now = time.time()
    rows = []
    for t in idx.torrents(include_gone=gone):
        p = cfg.pool_of(t.save_path) if t.save_path else None
        d = t.as_dict()
        d["pool"] = p.name if p else None
        d["group"] = groups.get((t.instance, t.hash))
        rows.append(d)
    if pool is not None:
        rows = [r for r in rows if (r["pool"] or "none") == pool]
    if state is not None:
        rows = [r for r in rows if r["state"] == state]
    if category is not None:
        rows = [r for r in rows if r["category"] == category]
    if group is not None:
        rows = [r for r in rows if (r["group"] or "").startswith(group.lower())]
    if decision is not None:
        rows = [r for r in rows if (r["decision"] or "none") == decision]
    fresh = {
        name: {**s, "age_s": round(now - s["synced_at"], 1) if s["synced_at"] else None} for name, s in synced.items()
    }
    data = {"torrents": rows, "index": fresh, "problems": problems}
    return data


def payload_copies(catalog: Catalog, clients: Iterable[ClientPort], offline: bool) -> dict:
    """``qbhook dupes --payloads``: whole payloads stored more than once, from the index."""
    _synced, problems = sync_index(catalog, clients, offline)
    sets = payload_duplicates(TorrentIndex(catalog.conn))
    data = {"payloads": sets, "reclaimable_bytes": sum(s["reclaimable_bytes"] for s in sets), "problems": problems}
    return data


def explain_from_index(catalog: Catalog, torrent_hash: str, why: str | None, now: float | None = None) -> dict:
    """``explain`` answered from the torrent index: no client, no scan; says how old it is.

    The torrent's group as the index last saw it, each file's catalog inode and, stat-ed
    live (one lstat per file, no walk), whether that path still is that inode and its links.
    The decision shown is the last one the planner recorded, with its time: a memory, not a
    new decision.
    """
    idx = TorrentIndex(catalog.conn)
    h = torrent_hash.strip().lower()
    rows = idx.torrents()
    hit = [t for t in rows if h in (t.hash, t.infohash_v1, t.infohash_v2)]
    if not hit:
        raise UnknownTorrent(f"torrent {torrent_hash} is not in the torrent index" + (f" (and {why})" if why else ""))
    groups = idx.groups()
    gid = groups.get((hit[0].instance, hit[0].hash))
    members = [t for t in rows if groups.get((t.instance, t.hash)) == gid]
    synced = idx.synced()
    now = time.time() if now is None else now
    out_t = []
    with catalog.reader() as reader:
        for t in members:
            out_t.append(_indexed_torrent(catalog, idx, reader, t, synced, now))
    first = hit[0]
    data = {
        "source": "index",
        "why": why,
        "group": {
            "group_id": gid,
            "decision": first.decision,
            "decision_reason": first.decision_reason,
            "decided_at": first.decided_at,
            "planned_group_id": first.group_id,
        },
        "torrents": out_t,
        "now": now,
    }
    return data


def _indexed_torrent(catalog: Catalog, idx: TorrentIndex, reader: FolderReader, t, synced: dict, now: float) -> dict:
    """One torrent of ``explain_from_index``: its index record, each file with its catalog inode
    and what is at its path now (``_live``)."""
    files = []
    for _i, rel, size, _prio, path, inode in idx.files(t.instance, t.hash):
        row = catalog.inode(inode) if inode else None
        files.append(
            {
                "rel": rel,
                "size": size,
                "path": path,
                "inode": [row.fsid, row.ino] if row else None,
                "catalog_nlink": row.nlink if row else None,
                "blake3": row.hash.hex() if row and row.hash else None,
                "live": None if path is None else _live(catalog, reader, path, row),
            }
        )
    s = synced.get(t.instance, {})
    return {
        **t.as_dict(),
        "files": files,
        "index_age_s": round(now - s["synced_at"], 1) if s.get("synced_at") else None,
    }


def _live(catalog: Catalog, reader: FolderReader, path, row) -> dict:
    """Whether ``path`` still is the indexed inode, and its links, looked at through its verified
    folder (``Catalog.reader``): behind a folder swapped for a symlink it is not that file."""
    try:
        st = reader.lstat_any(os.fsdecode(path))
    except (OSError, FolderRefused, PathMapError):
        st = None
    if st is None:
        return {"same_inode": False, "nlink": None}
    return {"same_inode": bool(row) and catalog.still_is(path, st, row), "nlink": st.st_nlink}
