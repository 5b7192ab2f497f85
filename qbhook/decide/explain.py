"""``explain HASH`` decided from the torrent index: the group's torrents as the index holds
them, every one of their paths re-stat-ed live, no client listing, no walk.

Why: explain answers a question about one group. Listing every torrent of every client to
find that group costs a request whose answer grows with the client (5,000 torrents), plus
the client library and a login; the index already holds every torrent's record and file
list as the last sync (sweep, hook, ``qbhook torrents``) saw them. So:

* the group's torrents are found in the index with a few queries that touch only the
  group: the torrents whose content path (or save path) is one of the group's paths or
  their folders (the snapshot's closure rule), and those sharing a path or a catalog inode
  with them, until nothing new is found. The answer is a superset of the group the
  snapshot then forms from it, never a subset of what a full listing would give it. The
  folder rule is two lookups per folder on the content and save path indexes
  (``folder_sql``), not a read of every torrent row (a magnet without metadata saved in a
  seeding root, or a torrent without a subfolder there, belongs with every group under
  that root, so the rule cannot be dropped);
* the snapshot is built as for ``plan --hash``: every file of the group is lstat-ed, every
  known link of its inode checked, so link counts are live (a library link made since the
  last scan shows as an outside link). Only the torrent records (state, tags, category,
  file lists) are as old as the index's last sync, and the answer says how old that is;
* the snapshot asks the catalog which file sizes more than one inode has (same-pool
  convergence candidates). For a whole sweep one pass over every inode is the cheap answer;
  for one group it is the one step that grows with the catalog, so explain hands the
  snapshot a catalog (``GroupCatalog``) that answers it per size asked, one indexed lookup each;
* the index cannot stand in when the torrent is not in it, a member's paths could not be
  mapped, or a member's client is not configured: the caller then asks the clients, as
  before (``None`` here).

The view backstop's verdict on the group, if it stopped it, is read from the journal
(``backstop_stops``): explain says it with what to do, as ``status`` does.

The answer itself is shaped here too: ``explain_data`` (a decision taken now: the group, its
torrents, every file's links) and ``index_answer`` (``explain --index``: the last recorded
decision, from the index alone). The decision chain that feeds ``explain_data`` (sync a stale
index, scan, snapshot, plan, the index -> clients fallback) is
``qbhook.decide.planning.explain_group``.

Read-only: nothing here writes the index or talks to a client. The files a decision needs
hashed are hashed by the snapshot, as for ``plan --hash``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Set
from dataclasses import dataclass

from qbhook.catalog.queries import explain_from_index
from qbhook.catalog.store import Catalog
from qbhook.clients.model import TorrentFile, TorrentInfo
from qbhook.decide.facts import ancestors
from qbhook.dirfd import FolderRefused
from qbhook.errors import PathMapError

_CHUNK = 500  # ids per IN (...) list: under SQLite's 999-variable floor of old builds

# What the executor's view backstop writes into the journaled reason of a group it stopped.
# Defined here, not in ``qbhook.move.executor`` (which takes it from here): explain reads it and
# must not load the executor (the layers forbid it, and its start-up is measured).
VIEW_CHANGED = "VIEW FILE CHANGED"

BACKSTOP_TODO = (
    "something wrote into a view file after qbhook verified it (on a promote a view file is a "
    "library file): compare the files named with their library copies, and restore any that "
    "changed, before anything else. The group's torrents were left stopped where they were; "
    "nothing was deleted or moved back, and qbhook will not retry on its own. Once the files "
    "match, a run of the group that ends done (qbhook apply --hash HASH) clears it from status."
)


@dataclass(frozen=True)
class IndexedGroup:
    """What ``build_snapshot`` needs to decide one group without a client."""

    infos: list[TorrentInfo]  # the candidate torrents (a superset of the group), typed from the index
    clients: list[IndexClient]  # one per instance: file lists from the index
    synced_at: dict[str, float | None]  # instance -> when its index was last synced


def backstop_stops(conn: sqlite3.Connection, group_id: str, hashes: Iterable[str]) -> list[dict]:
    """The view backstop's standing verdicts on this group, from the journal (``status`` lists
    the same rows as problems): a group journaled failed with ``VIEW_CHANGED`` that is this
    group (same id: same members) or whose steps in that run named one of ``hashes`` (the
    members may have changed since). Usually none: one lookup on the small group table."""
    rows = conn.execute(
        "SELECT group_id, run, reason, updated_at FROM group_state WHERE status = 'failed' AND reason LIKE ? "
        "ORDER BY updated_at",
        ("%" + VIEW_CHANGED + "%",),
    ).fetchall()
    hs = sorted({h.strip().lower() for h in hashes})
    found = []
    for gid, run, reason, at in rows:
        if gid == group_id or _named_in_run(conn, run, gid, hs):
            found.append({"group_id": gid, "run": run, "reason": reason, "at": at, "todo": BACKSTOP_TODO})
    return found


def _named_in_run(conn: sqlite3.Connection, run: int, group_id: str, hashes: list[str]) -> bool:
    """Whether a journaled step of ``group_id`` in ``run`` acted on one of these torrents."""
    if not hashes:
        return False
    marks = ",".join("?" * len(hashes))
    return (
        conn.execute(
            "SELECT 1 FROM steps WHERE run = ? AND group_id = ? "
            f"AND lower(json_extract(args, '$.torrent')) IN ({marks}) LIMIT 1",
            (run, group_id, *hashes),
        ).fetchone()
        is not None
    )


class IndexClient:
    """A client stand-in that answers ``files()`` from the index, for the snapshot builder.

    Only ``name`` and ``files`` exist: the builder is given its torrents (``infos``), and
    explain never acts, so any other call would be a bug and fails loudly (AttributeError).
    The index keeps no per-file progress; every file gets its torrent's progress (the
    planner reads only the torrent's).
    """

    def __init__(self, name: str, files: dict[str, list[TorrentFile]]):
        self.name = name
        self._files = files

    def files(self, any_hash: str) -> list[TorrentFile]:
        return self._files[any_hash.lower()]


def indexed_group(catalog: Catalog, torrent_hash: str, instances: Iterable[str], roots: list[str]):
    """The torrents of ``torrent_hash``'s group as the index holds them, or None (ask the clients).

    ``instances``: the configured client names (rows of others are never used); ``roots``:
    the seeding roots (where the folder rule of the closure stops).
    """
    conn = catalog.conn
    names = sorted(set(instances))
    if not names:
        return None
    h = torrent_hash.strip().lower()
    marks = ",".join("?" * len(names))
    # One indexed lookup per spelling: with ORs SQLite walks every torrent of the instance.
    seed = conn.execute(
        f"SELECT id FROM torrents WHERE instance IN ({marks}) AND hash=? AND gone_at IS NULL "
        f"UNION SELECT id FROM torrents WHERE infohash_v1=? AND instance IN ({marks}) AND gone_at IS NULL "
        f"UNION SELECT id FROM torrents WHERE infohash_v2=? AND instance IN ({marks}) AND gone_at IS NULL",
        [*names, h, h, *names, h, *names],
    ).fetchall()
    if not seed:
        return None
    ids = _closure(catalog, {r[0] for r in seed}, names, roots)
    return _typed(catalog, ids, names)


def _closure(catalog: Catalog, seed: set[int], names: list[str], roots: list[str]) -> set[int]:
    """Torrent row ids reachable from ``seed`` by a shared path, inode or folder (see the docstring)."""
    conn = catalog.conn
    marks = ",".join("?" * len(names))
    seen: set[int] = set()
    todo = set(seed)
    while todo:
        seen |= todo
        paths: set[bytes] = set()
        inodes: set[int] = set()
        for chunk in _chunks(todo):
            for path, inode in conn.execute(
                f"SELECT path, inode FROM torrent_files WHERE torrent IN ({','.join('?' * len(chunk))})", chunk
            ):
                if path is not None:
                    paths.add(path)
                if inode is not None:
                    inodes.add(inode)
        inodes |= _live_inodes(catalog, paths)  # a path re-linked since the last refresh
        links = set(paths)
        for chunk in _chunks(inodes):
            links.update(
                r[0]
                for r in conn.execute(f"SELECT path FROM paths WHERE inode IN ({','.join('?' * len(chunk))})", chunk)
            )
        # The index's torrent paths are the clients' text, always UTF-8 (it stores nothing else),
        # so a folder whose name is not UTF-8 (a link a user named with other bytes) is no
        # torrent's folder: leaving it out changes no answer. SQLite could not even bind it
        # (UnicodeEncodeError: explain failed on any group with such a link).
        folders = {a for p in links for a in ancestors(os.fsdecode(p), roots) if _is_utf8(a)}
        found: set[int] = set()
        for chunk in _chunks(folders):
            found.update(r[0] for r in conn.execute(folder_sql(len(names), len(chunk)), [*names, *chunk, *chunk]))
        for col, keys in (("path", links), ("inode", inodes)):
            for chunk in _chunks(keys):
                found.update(
                    r[0]
                    for r in conn.execute(
                        # CROSS JOIN: from the few matching files to their torrents; a plain
                        # JOIN lets SQLite walk every torrent of the instance instead.
                        f"SELECT f.torrent FROM torrent_files f CROSS JOIN torrents t ON t.id = f.torrent "
                        f"WHERE f.{col} IN ({','.join('?' * len(chunk))}) AND t.gone_at IS NULL "
                        f"AND t.instance IN ({marks})",
                        [*chunk, *names],
                    )
                )
        todo = found - seen
    return seen


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, held as lone surrogates (os.fsdecode)
        return False
    return True


def folder_sql(instances: int, folders: int) -> str:
    """The folder rule's query: present torrents of these instances whose content path is one of
    these folders, or with no content path, whose save path is. ``+instance``: the instance is
    a filter, not the index to search (the unique (instance, hash) index would walk every
    torrent of the instance); the two path terms are then searched on their own indexes."""
    marks, q = ",".join("?" * instances), ",".join("?" * folders)
    return (
        f"SELECT id FROM torrents WHERE gone_at IS NULL AND +instance IN ({marks}) AND "
        f"(content_path IN ({q}) OR (coalesce(content_path, '') = '' AND save_path IN ({q})))"
    )


def _live_inodes(catalog: Catalog, paths: set[bytes]) -> set[int]:
    """Catalog inode ids of what is at these paths now (one lstat each, through its verified
    folder: ``Catalog.reader``; unknown ones left out, and so is one behind a symlinked folder,
    whose inode is not that path's)."""
    keys = set()
    with catalog.reader() as reader:
        for p in paths:
            try:
                st = reader.lstat_any(os.fsdecode(p))
            except (OSError, FolderRefused, PathMapError):
                continue
            if st is not None:
                keys.add((catalog.fs_for_path(p, st.st_dev), st.st_ino))
    return {row.id for row, _paths in catalog.inodes_and_paths_by_key(keys).values()} if keys else set()


def _typed(catalog: Catalog, ids: set[int], names: list[str]) -> IndexedGroup | None:
    """TorrentInfo and file lists of these rows; None when one cannot stand in for the client."""
    conn = catalog.conn
    infos: list[TorrentInfo] = []
    files: dict[str, dict[str, list[TorrentFile]]] = {n: {} for n in names}
    tids: dict[int, tuple[str, str, float]] = {}
    for chunk in _chunks(ids):
        rows = conn.execute(
            "SELECT id, instance, hash, infohash_v1, infohash_v2, name, save_path, download_path, content_path, "
            "client_save_path, client_content_path, auto_tmm, category, tags, state, progress, size, total_size, "
            "has_metadata, added_on, completion_on, map_error, raw "
            f"FROM torrents WHERE id IN ({','.join('?' * len(chunk))})",
            chunk,
        ).fetchall()
        for r in rows:
            if r[21] is not None or not r[6]:
                return None  # unmappable: the live listing reports it (and the planner blocks it)
            progress = float(r[15] or 0.0)
            infos.append(_info(r, json.loads(r[22] or "{}")))
            tids[r[0]] = (r[1], r[2], progress)
            files[r[1]][r[2]] = []
    for chunk in _chunks(set(tids)):
        for tid, i, rel, size, prio in conn.execute(
            "SELECT torrent, idx, rel, size, priority FROM torrent_files "
            f"WHERE torrent IN ({','.join('?' * len(chunk))}) ORDER BY torrent, idx",
            chunk,
        ):
            inst, h, progress = tids[tid]
            files[inst][h].append(TorrentFile(index=i, name=rel, size=size, progress=progress, priority=prio))
    synced = {
        r[0]: r[1]
        for r in conn.execute(
            f"SELECT instance, synced_at FROM torrent_sync WHERE instance IN ({','.join('?' * len(names))})", names
        )
    }
    used = sorted({t.instance for t in infos})
    return IndexedGroup(
        infos=infos,
        clients=[IndexClient(n, files[n]) for n in used],
        synced_at={n: synced.get(n) for n in used},
    )


def _info(r, raw: dict) -> TorrentInfo:
    """A TorrentInfo from an index row (host spellings, as the sync typed them) and its raw record."""
    progress = float(r[15] or 0.0)
    state = r[14] or "unknown"
    return TorrentInfo(
        instance=r[1],
        hash=r[2],
        infohash_v1=r[3],
        infohash_v2=r[4],
        name=r[5],
        save_path=r[6],
        download_path=r[7] or "",
        content_path=r[8] or "",
        root_path="",  # not indexed; nothing in deciding reads it
        client_save_path=r[9] or "",
        client_content_path=r[10] or "",
        auto_tmm=bool(r[11]),
        category=r[12] or "",
        tags=frozenset(json.loads(r[13] or "[]")),
        state=state,
        raw_state=str(raw.get("raw_state") or raw.get("state") or state),
        progress=progress,
        amount_left=int(raw.get("amount_left", 0 if progress >= 1 else 1)),
        size=int(r[16] or 0),
        total_size=int(r[17] or 0),
        has_metadata=bool(r[18]) if r[18] is not None else True,
        added_on=r[19],
        completion_on=r[20],
    )


class GroupCatalog:
    """The catalog as explain's snapshot sees it: itself, but ``shared_sizes`` answers per size."""

    def __init__(self, catalog: Catalog):
        self._catalog = catalog

    def __getattr__(self, name: str):
        return getattr(self._catalog, name)

    def shared_sizes(self) -> SharedSizes:
        return SharedSizes(self._catalog.conn)


class SharedSizes(Set):
    """``Catalog.shared_sizes()`` as a set asked size by size: ``size in it`` is one lookup on the
    size index (memoized). Iterating or sizing it reads every size once, as the catalog does."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        self._known: dict[int, bool] = {}
        self._all: frozenset[int] | None = None

    def __contains__(self, size: object) -> bool:
        if not isinstance(size, int) or size <= 0:
            return False
        if size not in self._known:
            n = self._conn.execute("SELECT count(*) FROM (SELECT 1 FROM inodes WHERE size=? LIMIT 2)", (size,))
            self._known[size] = n.fetchone()[0] > 1
        return self._known[size]

    def _every(self) -> frozenset[int]:
        if self._all is None:
            self._all = frozenset(
                r[0]
                for r in self._conn.execute("SELECT size FROM inodes WHERE size > 0 GROUP BY size HAVING count(*) > 1")
            )
        return self._all

    def __iter__(self) -> Iterator[int]:
        return iter(self._every())

    def __len__(self) -> int:
        return len(self._every())


def _chunks(items: Iterable) -> Iterable[list]:
    seq = sorted(items)
    for i in range(0, len(seq), _CHUNK):
        yield seq[i : i + _CHUNK]


# ------------------------------------------------------------------ the answer
def explain_data(catalog: Catalog, snap, p, torrent_hash: str, notes: dict) -> dict:
    """explain's answer: the group's decision, its torrents, every file's links, and the view
    backstop's verdict on the group (``backstop_stops``)."""
    h = torrent_hash.lower()
    # The snapshot holds only this torrent's group (closure over shared files); match v1/v2 spellings too.
    group = next((g for g in p.groups if h in g.torrents), p.groups[0])
    torrents = [t for t in snap.torrents if t.hash in group.torrents]
    data = {"group": group.to_dict(), "torrents": [], **notes}
    for t in torrents:
        files = []
        for f in t.files:
            i = snap.inodes.get(f.inode) if f.inode else None
            files.append(
                {
                    "path": f.path,
                    "size": f.size,
                    "inode": list(f.inode) if f.inode else None,
                    "nlink": i.nlink if i else None,
                    "external_links": i.external_links if i else None,
                    "seeding_links": list(i.seeding_paths) if i else [],
                    "other_links": list(i.other_paths) if i else [],
                    "blake3": i.blake3 if i else None,
                }
            )
        data["torrents"].append(
            {
                "hash": t.hash,
                "name": t.name,
                "state": t.state,
                "progress": t.progress,
                "save_path": t.save_path,
                "tags": sorted(t.tags),
                "category": t.category,
                **payload_ids(t, snap),
                "files": files,
            }
        )
    g = data["group"]
    data["backstop"] = backstop_stops(catalog.conn, g["group_id"], [torrent_hash, *g["torrents"]])
    return data


def payload_ids(t, snap) -> dict:
    """Layout-independent content id and layout-bound tree id (None until every file is hashed)."""
    from qbhook.catalog.hashing import EMPTY_HASH
    from qbhook.catalog.identity import content_id, tree_id

    idents = []
    for f in t.files:
        i = snap.inodes.get(f.inode) if f.inode else None
        digest = EMPTY_HASH if f.size == 0 else (bytes.fromhex(i.blake3) if i and i.blake3 else None)
        if digest is None:
            return {"content_id": None, "tree_id": None}
        idents.append((f.rel, (f.size, digest)))
    return {"content_id": content_id(x for _, x in idents), "tree_id": tree_id(idents)}


def index_answer(catalog: Catalog, torrent_hash: str, why: str | None) -> dict:
    """``explain`` answered from the torrent index (``catalog.queries.explain_from_index``: no
    client, no scan, with ``now`` for the ages), and the view backstop's verdict on the group."""
    data = explain_from_index(catalog, torrent_hash, why)
    # The backstop's verdict is the journal's, not the client's: an answer without a client
    # says it as the live one does (a stopped group must not look merely undecided).
    planned = data["group"]["planned_group_id"] or ""
    data["backstop"] = backstop_stops(catalog.conn, planned, [torrent_hash, *(t["hash"] for t in data["torrents"])])
    return data
