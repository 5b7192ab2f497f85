"""The torrent index: what each client instance last said about its torrents, kept in the catalog.

Model:

* one ``torrents`` row per (client instance, torrent id), never deleted by a sync: a torrent
  the client no longer lists gets ``gone_at`` (and loses it again if it comes back), so
  questions about it can still be answered after it was removed; ``prune_gone`` deletes it
  (with its file rows) once it has been gone for the retention (``MISSING_GRACE_S`` at least)
  and a plan has followed the sync that saw it go. A torrent that comes back after that is a new row;
* ``raw`` is the client's own record (for qBittorrent the merged ``sync/maindata`` entry):
  maindata sends only the fields that changed, so the full record must be kept to merge into;
  the typed columns are derived from it and may be rebuilt from it at any time;
* ``files_key`` is the part of that record a file list depends on (paths, name, sizes,
  metadata): the file list is fetched again only when it changes;
* one ``torrent_files`` row per file: its host path as the catalog spells it (BLOB, the same
  bytes as ``paths.path``) and the catalog inode that path resolved to at the last refresh;
* a torrent whose paths cannot be mapped to the host keeps its row, with the reason in
  ``map_error`` and files without host paths: it is reported, never dropped, because a
  dropped torrent would make its files look unreferenced;
* payload identity (``qbhook.catalog.identity``): ``content_id`` (layout-free) and ``tree_id``
  (layout-bound) are set only when every file has a valid hash; otherwise both are NULL,
  ``ids_complete`` is 0 and ``files_hashed`` says how far it got. ``refresh`` recomputes
  them from the catalog, so a member's new or invalidated hash shows at the next refresh;
* the last decision the planner took for a torrent's group (``decision``, ``group_id``) is
  recorded by whoever planned: it is a memory of the past, answered with its time, and never
  an input to a new decision (those re-read everything live).

Nothing here talks to a client; ``qbhook.catalog.indexer`` does, and writes through this module.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass

from qbhook.catalog.db import Tx
from qbhook.catalog.identity import components, group_id_of
from qbhook.catalog.store import hash_valid
from qbhook.paths import shown

# How long a torrent missing from its client's listing still counts as there. A listing can
# leave torrents out without their removal: qBittorrent loads a big session over minutes after a
# restart (5,000 torrents), and lists none whose resume data failed to load. Until this long after
# the listing (or the index's sync) first lacked it, a group sharing a file with what it last used
# stays (``decide.planner.missing_holds``); after it, the torrent is gone, as a removed one is.
# Its home is here because the index's gone rows are what it is measured from: ``prune_gone``
# keeps them at least this long, whatever ``sweep.keep_history`` says.
MISSING_GRACE_S = 30 * 60.0

# the hash-valid rule (store.hash_valid), qualified for joins with the torrents tables (which have a ``hash`` too).
_I_HASH_VALID = hash_valid("i")

_COLUMNS = (
    "infohash_v1",
    "infohash_v2",
    "name",
    "category",
    "tags",
    "save_path",
    "client_save_path",
    "content_path",
    "client_content_path",
    "download_path",
    "state",
    "progress",
    "auto_tmm",
    "size",
    "total_size",
    "has_metadata",
    "added_on",
    "completion_on",
    "map_error",
)


@dataclass(frozen=True)
class TorrentRecord:
    """One torrent as the index will store it (typed columns + the client's raw record)."""

    hash: str
    fields: dict  # _COLUMNS -> value
    raw: dict
    files_key: str


@dataclass(frozen=True)
class FileRecord:
    index: int
    rel: str
    size: int
    priority: int
    path: bytes | None


@dataclass(frozen=True)
class IndexedTorrent:
    """A row of the index, as queries return it."""

    instance: str
    hash: str
    infohash_v1: str | None
    infohash_v2: str | None
    name: str
    category: str
    tags: tuple[str, ...]
    save_path: str | None
    client_save_path: str | None
    content_path: str | None
    state: str | None
    progress: float | None
    auto_tmm: bool
    size: int | None
    added_on: int | None
    completion_on: int | None
    map_error: str | None
    last_seen: float
    gone_at: float | None
    content_id: str | None
    tree_id: str | None
    files: int
    files_hashed: int
    files_resolved: int
    ids_complete: bool
    group_id: str | None
    decision: str | None
    decision_reason: str | None
    decided_at: float | None

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["tags"] = list(self.tags)
        return d


class IndexInconsistent(Exception):
    """The stored index contradicts itself; the caller rebuilds it from the client."""


class TorrentIndex:
    """Reads and writes the torrent index tables on one catalog connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    # ------------------------------------------------------------ sync state
    def sync_state(self, instance: str) -> tuple[int, float | None, float | None]:
        """(rid, synced_at, full_at) of an instance; rid 0 when never synced."""
        r = self.conn.execute(
            "SELECT rid, synced_at, full_at FROM torrent_sync WHERE instance=?", (instance,)
        ).fetchone()
        if r is None:
            return 0, None, None
        if not isinstance(r[0], int) or r[0] < 0:
            raise IndexInconsistent(f"stored sync position {r[0]!r} is not a response id")
        return r[0], r[1], r[2]

    def synced(self) -> dict[str, dict]:
        return {
            r[0]: {"rid": r[1], "mode": r[2], "synced_at": r[3], "full_at": r[4]}
            for r in self.conn.execute("SELECT instance, rid, mode, synced_at, full_at FROM torrent_sync")
        }

    def check(self, instance: str) -> None:
        """Raise IndexInconsistent when the stored index of ``instance`` cannot be synced into.

        Cheap on purpose (two index lookups, no record decoded): it runs before every sync, and
        an unchanged sync must cost next to nothing. What it proves: the sync position is a
        response id, and no file row can be adopted by a torrent inserted later. SQLite gives a
        new row the largest id + 1, so a file row pointing at an id above every torrent's would
        become the next torrent's; one below it points at a deleted id, never handed out again,
        and every read reaches file rows through a torrent's id (``check_all`` still counts
        those at each full listing). A stored record that cannot be read is found when a sync
        merges into it (``raw_records``), which rebuilds the index then.
        """
        self.sync_state(instance)
        top_file, top_torrent = self.conn.execute(
            "SELECT (SELECT max(torrent) FROM torrent_files), (SELECT coalesce(max(id), 0) FROM torrents)"
        ).fetchone()
        if top_file is not None and top_file > top_torrent:
            raise IndexInconsistent(f"file rows belong to torrent id {top_file}, which does not exist")

    def check_all(self, instance: str) -> None:
        """``check``, and no file row without its torrent: for syncs that read every record anyway
        (a full update, a listing), where one pass over the file rows is small beside the rest."""
        self.check(instance)
        orphans = self.conn.execute(
            "SELECT count(*) FROM torrent_files f WHERE NOT EXISTS (SELECT 1 FROM torrents t WHERE t.id = f.torrent)"
        ).fetchone()[0]
        if orphans:
            raise IndexInconsistent(f"{orphans} file row(s) belong to no torrent")

    def reset(self, instance: str) -> None:
        """Forget everything about ``instance`` (rows, files, sync position): the next sync is a full one."""
        with Tx(self.conn) as c:
            # Orphan file rows cannot be attributed to an instance: drop them all, they are only a cache.
            c.execute("DELETE FROM torrent_files WHERE NOT EXISTS (SELECT 1 FROM torrents t WHERE t.id = torrent)")
            c.execute(
                "DELETE FROM torrent_files WHERE torrent IN (SELECT id FROM torrents WHERE instance=?)", (instance,)
            )
            c.execute("DELETE FROM torrents WHERE instance=?", (instance,))
            c.execute("DELETE FROM torrent_sync WHERE instance=?", (instance,))

    def prune_gone(self, older_than_s: float, planned: dict[str, float], *, now: float | None = None) -> int:
        """Delete the torrents gone for over ``older_than_s`` and their file rows (one transaction).

        ``planned``: instance -> the ``synced_at`` of the last sync a completed plan followed (the
        sweep's re-plan memo). A row goes only if the sync that marked it gone is at or before
        that one: that plan re-planned the group it left (an incremental re-plan finds its former
        group-mates through this row's ``group_id``, a full one re-plans every present torrent),
        so no later plan needs the row. ``gone_at`` and
        ``synced_at`` are the same ``now`` of the same transaction (``apply``), so ``<=`` is
        exact. An instance missing from ``planned`` keeps its rows. Returns the torrents deleted.

        A row is kept for ``MISSING_GRACE_S`` at least, whatever ``older_than_s`` says: until then
        the planner still counts the torrent as there (``decide.snapshot`` reads it from this row),
        and a row deleted sooner would let its cross-seed mate demote and delete the files it used.
        """
        cutoff = (time.time() if now is None else now) - max(older_than_s, MISSING_GRACE_S)
        # gone_at <= a number is never true of NULL: the partial index torrents_gone answers it
        sel = "SELECT id FROM torrents WHERE instance = ? AND gone_at <= ? AND gone_at < ?"
        due = [
            (instance, synced_at, cutoff)
            for instance, synced_at in sorted(planned.items())
            if isinstance(synced_at, int | float)  # a memo that does not say: keep them
            and self.conn.execute(f"SELECT EXISTS ({sel})", (instance, synced_at, cutoff)).fetchone()[0]
        ]
        if not due:
            return 0  # the usual sweep: no write transaction
        pruned = 0
        with Tx(self.conn) as c:
            for args in due:
                c.execute(f"DELETE FROM torrent_files WHERE torrent IN ({sel})", args)
                pruned += c.execute(f"DELETE FROM torrents WHERE id IN ({sel})", args).rowcount
        return pruned

    def raw_records(self, instance: str, only: Iterable[str] | None = None) -> dict[str, tuple[dict, str | None]]:
        """hash -> (raw record, files_key) of the present torrents of ``instance`` (``only``: of
        these hashes; the others are not read). Raises IndexInconsistent on a record that is
        not a JSON object: nothing can be merged into it."""
        out: dict[str, tuple[dict, str | None]] = {}
        for h, text, key in self._raw_rows(instance, only):
            try:
                raw = json.loads(text)
            except (TypeError, ValueError):
                raw = None
            if not isinstance(raw, dict):
                raise IndexInconsistent(f"stored record of torrent {h} is not readable")
            out[h] = (raw, key)
        return out

    def raw_texts(self, instance: str) -> dict[str, tuple[str, str | None]]:
        """hash -> (raw record as stored, files_key), undecoded: ``apply`` writes each record as
        ``json.dumps(raw, sort_keys=True)``, so equal records are equal texts."""
        return {h: (text, key) for h, text, key in self._raw_rows(instance, None)}

    def _raw_rows(self, instance: str, only: Iterable[str] | None):
        sql = "SELECT hash, raw, files_key FROM torrents WHERE instance=? AND gone_at IS NULL"
        if only is None:
            yield from self.conn.execute(sql, (instance,))
            return
        wanted = sorted(set(only))
        for at in range(0, len(wanted), 500):
            chunk = wanted[at : at + 500]
            yield from self.conn.execute(f"{sql} AND hash IN ({','.join('?' * len(chunk))})", (instance, *chunk))

    def forget_position(self, instance: str) -> None:
        """Make the next sync of ``instance`` a full one (rid 0): its answer lists every torrent."""
        with Tx(self.conn) as c:
            c.execute("UPDATE torrent_sync SET rid = 0 WHERE instance=?", (instance,))

    def first_seen(self, instance: str) -> dict[str, float] | None:
        """When the index first listed each torrent of ``instance`` (hash -> time), gone ones
        too; None when it never synced ``instance``, so it cannot say which torrents are new."""
        if self.conn.execute("SELECT 1 FROM torrent_sync WHERE instance=?", (instance,)).fetchone() is None:
            return None
        sql = "SELECT hash, first_seen FROM torrents WHERE instance=?"
        return {h.lower(): at for h, at in self.conn.execute(sql, (instance,))}

    def present_hashes(self, instance: str, only: Iterable[str] | None = None) -> set[str]:
        """Hashes of the present torrents of ``instance`` (``only``: those among these hashes)."""
        sql = "SELECT hash FROM torrents WHERE instance=? AND gone_at IS NULL"
        if only is None:
            return {r[0] for r in self.conn.execute(sql, (instance,))}
        wanted, out = sorted(set(only)), set()
        for at in range(0, len(wanted), 500):
            chunk = wanted[at : at + 500]
            q = f"{sql} AND hash IN ({','.join('?' * len(chunk))})"
            out.update(r[0] for r in self.conn.execute(q, (instance, *chunk)))
        return out

    # ------------------------------------------------------------ writing
    def apply(
        self,
        instance: str,
        upserts: Sequence[TorrentRecord],
        files: dict[str, list[FileRecord]],
        gone: Iterable[str],
        *,
        rid: int | None,
        mode: str,
        now: float | None = None,
        keep_raw: bool = False,
    ) -> None:
        """Write one sync's outcome in one transaction: rows, file lists, removals, position.

        ``files`` holds the new file list of each torrent whose list was fetched; a torrent
        without an entry keeps its stored files. ``keep_raw``: an event's partial view, which
        must not replace the record a later maindata delta is merged into.
        """
        now = time.time() if now is None else now
        cols = ", ".join(_COLUMNS)
        marks = ", ".join("?" * len(_COLUMNS))
        updates = ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS)
        raw_update = "" if keep_raw else ", raw=excluded.raw"
        with Tx(self.conn) as c:
            for rec in upserts:
                c.execute(
                    f"INSERT INTO torrents(instance, hash, {cols}, raw, files_key, first_seen, last_seen) "
                    f"VALUES (?, ?, {marks}, ?, ?, ?, ?) ON CONFLICT(instance, hash) DO UPDATE SET {updates}"
                    f"{raw_update}, last_seen=excluded.last_seen, gone_at=NULL"
                    + (", files_key=excluded.files_key" if rec.hash in files else ""),
                    (
                        instance,
                        rec.hash,
                        *(rec.fields[k] for k in _COLUMNS),
                        json.dumps(rec.raw, sort_keys=True),
                        rec.files_key if rec.hash in files else None,
                        now,
                        now,
                    ),
                )
            for h, flist in files.items():
                tid = c.execute("SELECT id FROM torrents WHERE instance=? AND hash=?", (instance, h)).fetchone()
                if tid is None:
                    continue
                kept = _kept_hashes_of(c, tid[0])
                c.execute("DELETE FROM torrent_files WHERE torrent=?", (tid[0],))
                c.executemany(
                    "INSERT INTO torrent_files(torrent, idx, rel, size, priority, path, inode) VALUES "
                    "(?,?,?,?,?,?,(SELECT inode FROM paths WHERE paths.path = ?))",
                    [(tid[0], f.index, f.rel, f.size, f.priority, f.path, f.path) for f in flist],
                )
                _restore_kept_hashes(c, tid[0], kept)
                c.execute("UPDATE torrents SET ids_at=NULL WHERE id=?", (tid[0],))
            c.executemany(
                "UPDATE torrents SET gone_at=? WHERE instance=? AND hash=? AND gone_at IS NULL",
                [(now, instance, h) for h in gone],
            )
            if rid is not None:
                c.execute(
                    "INSERT INTO torrent_sync(instance, rid, mode, synced_at, full_at) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(instance) DO UPDATE SET rid=excluded.rid, mode=excluded.mode, "
                    "synced_at=excluded.synced_at, full_at=coalesce(excluded.full_at, full_at)",
                    (instance, rid, mode, now, now if mode in ("full", "listing") else None),
                )

    def refresh(self, now: float | None = None) -> int:
        """Re-resolve every file path to its catalog inode and recompute payload ids where they changed.

        Catalog-only (no client, no filesystem). Returns how many torrents' ids changed.
        """
        from qbhook.catalog.hashing import EMPTY_HASH
        from qbhook.catalog.identity import content_id, tree_id

        now = time.time() if now is None else now
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE torrent_files SET inode = (SELECT inode FROM paths WHERE paths.path = torrent_files.path) "
                "WHERE inode IS NOT (SELECT inode FROM paths WHERE paths.path = torrent_files.path)"
            )
            members: dict[int, list] = defaultdict(list)
            cur = c.execute(
                f"SELECT f.torrent, f.rel, f.size, CASE WHEN {_I_HASH_VALID} THEN i.hash END "
                "FROM torrent_files f JOIN torrents t ON t.id = f.torrent LEFT JOIN inodes i ON i.id = f.inode "
                "WHERE t.gone_at IS NULL"
            )
            while rows := cur.fetchmany(10000):
                for tid, rel, size, digest in rows:
                    members[tid].append((rel, size, EMPTY_HASH if size == 0 else digest))
            stored = {
                r[0]: (r[1], r[2], r[3], r[4])
                for r in c.execute(
                    "SELECT id, content_id, tree_id, files_hashed, ids_complete FROM torrents WHERE gone_at IS NULL"
                )
            }
            changes = []
            for tid, old in stored.items():
                files = members.get(tid, [])
                hashed = sum(1 for _r, _s, d in files if d is not None)
                complete = bool(files) and hashed == len(files)
                if complete:
                    idents = [(rel.encode("utf-8", "surrogateescape"), (size, bytes(d))) for rel, size, d in files]
                    new = (content_id(x for _, x in idents), tree_id(idents), hashed, 1)
                else:
                    new = (None, None, hashed, 0)
                if new != old:
                    changes.append((*new, now, tid))
            c.executemany(
                "UPDATE torrents SET content_id=?, tree_id=?, files_hashed=?, ids_complete=?, ids_at=? WHERE id=?",
                changes,
            )
            c.execute("UPDATE torrents SET ids_at=? WHERE ids_at IS NULL AND gone_at IS NULL", (now,))
            _keep_last_hashes(c)
        return len(changes)

    def record_decisions(self, groups: Iterable, now: float | None = None) -> None:
        """Remember each planned group's decision on its torrents: by (instance, hash), as the group
        names them (one infohash in two clients can be two groups); a group that names no clients
        (an older saved plan) on every instance holding the hash."""
        now = time.time() if now is None else now
        named, anywhere = [], []
        for g in groups:
            row = (g.group_id, g.action, shown(g.reason), now)
            instances = getattr(g, "instances", None) or []
            if len(instances) == len(g.torrents) and instances:
                named.extend((*row, inst, h) for inst, h in zip(instances, g.torrents, strict=True))
            else:
                anywhere.extend((*row, h) for h in g.torrents)
        sql = "UPDATE torrents SET group_id=?, decision=?, decision_reason=?, decided_at=? WHERE "
        with Tx(self.conn) as c:
            c.executemany(sql + "hash=?", anywhere)
            c.executemany(sql + "instance=? AND hash=?", named)

    # ------------------------------------------------------------ reading
    def torrents(self, *, include_gone: bool = False, instance: str | None = None) -> list[IndexedTorrent]:
        where, args = [], []
        if not include_gone:
            where.append("t.gone_at IS NULL")
        if instance is not None:
            where.append("t.instance = ?")
            args.append(instance)
        sql = (
            "SELECT t.instance, t.hash, t.infohash_v1, t.infohash_v2, t.name, t.category, t.tags, t.save_path, "
            "t.client_save_path, t.content_path, t.state, t.progress, t.auto_tmm, t.size, t.added_on, "
            "t.completion_on, t.map_error, t.last_seen, t.gone_at, t.content_id, t.tree_id, "
            "(SELECT count(*) FROM torrent_files f WHERE f.torrent = t.id), t.files_hashed, "
            "(SELECT count(*) FROM torrent_files f WHERE f.torrent = t.id AND f.inode IS NOT NULL), "
            "t.ids_complete, t.group_id, t.decision, t.decision_reason, t.decided_at FROM torrents t"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY t.name, t.hash"
        )
        out = []
        for r in self.conn.execute(sql, args):
            r = list(r)
            r[6] = tuple(json.loads(r[6] or "[]"))
            r[12] = bool(r[12])
            r[24] = bool(r[24])
            out.append(IndexedTorrent(*r))
        return out

    def files(self, instance: str, torrent_hash: str) -> list[tuple[int, str, int, int, bytes | None, int | None]]:
        """(index, rel, size, priority, host path, inode id) of one torrent's files, in index order."""
        return list(
            self.conn.execute(
                "SELECT f.idx, f.rel, f.size, f.priority, f.path, f.inode FROM torrent_files f "
                "JOIN torrents t ON t.id = f.torrent WHERE t.instance=? AND t.hash=? ORDER BY f.idx",
                (instance, torrent_hash),
            )
        )

    def unplaced_wanted(self, instance: str) -> dict[str, list[bytes]]:
        """hash -> host paths of the wanted files that resolved to no catalog inode at the last
        refresh, for the present torrents of ``instance`` (missing, not scanned yet, renamed in
        the client since its list was fetched, or reached through a symlink, which the scan
        never catalogues). Read through the inode index: the unplaced rows only."""
        out: dict[str, list[bytes]] = defaultdict(list)
        for h, path in self.conn.execute(
            "SELECT t.hash, f.path FROM torrent_files f JOIN torrents t ON t.id = f.torrent "
            "WHERE f.inode IS NULL AND f.path IS NOT NULL AND f.priority != 0 "
            "AND t.instance = ? AND t.gone_at IS NULL",
            (instance,),
        ):
            out[h].append(bytes(path))
        return dict(out)

    def skipping(self, instance: str) -> set[str]:
        """Hashes of the present torrents of ``instance`` with a file at priority 0 (skipped) in
        their stored list. One pass over the file rows (no index serves a priority)."""
        return {
            h
            for (h,) in self.conn.execute(
                "SELECT DISTINCT t.hash FROM torrent_files f JOIN torrents t ON t.id = f.torrent "
                "WHERE f.priority = 0 AND t.instance = ? AND t.gone_at IS NULL",
                (instance,),
            )
        }

    def groups(self) -> dict[tuple[str, str], str]:
        """(instance, hash) -> payload group id, grouping present torrents that share a path or an inode.

        The same rule and id as the planner's groups (``qbhook.decide.grouping``), computed from the
        index alone: it names the group a torrent was last seen in, without stat-ing anything.
        """
        keys: list[tuple[str, str]] = []
        pos: dict[int, int] = {}
        for tid, inst, h in self.conn.execute("SELECT id, instance, hash FROM torrents WHERE gone_at IS NULL"):
            pos[tid] = len(keys)
            keys.append((inst, h))
        cur = self.conn.execute(
            "SELECT f.torrent, f.path, f.inode FROM torrent_files f JOIN torrents t "
            "ON t.id = f.torrent WHERE t.gone_at IS NULL"
        )

        def keyed():
            while rows := cur.fetchmany(10000):
                for tid, path, inode in rows:
                    if path is not None:
                        yield pos[tid], path
                    if inode is not None:
                        yield pos[tid], ("i", inode)

        roots = components(len(keys), keyed())  # the planner's group rule, one home
        members: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for i, k in enumerate(keys):
            members[roots[i]].append(k)
        ids = {root: group_id_of(ks) for root, ks in members.items()}
        return {k: ids[roots[i]] for i, k in enumerate(keys)}

    def inode_sets(self) -> dict[tuple[str, str], frozenset[int]]:
        """(instance, hash) -> the catalog inodes its files resolve to (present torrents)."""
        out: dict[tuple[str, str], set[int]] = defaultdict(set)
        for inst, h, inode in self.conn.execute(
            "SELECT t.instance, t.hash, f.inode FROM torrent_files f JOIN torrents t ON t.id = f.torrent "
            "WHERE t.gone_at IS NULL AND f.inode IS NOT NULL"
        ):
            out[(inst, h)].add(inode)
        return {k: frozenset(v) for k, v in out.items()}


# ------------------------------------------------------------ last known content (qbhook repair)
#
# A torrent whose files vanished (missingFiles) can be rebuilt from another copy of its content
# only if its content is still known: each file's last valid BLAKE3 (``last_blake3``) and the
# torrent's last complete content id (``last_content_id``) are written whenever the files are
# hashed and kept when they go missing; a new file list keeps them for files of the same
# index, path and size.


def _keep_last_hashes(c: sqlite3.Connection) -> None:
    """Copy every file's valid hash (and every torrent's content id) into its last-known column."""
    c.execute(
        "UPDATE torrent_files SET last_blake3 = (SELECT i.hash FROM inodes i WHERE i.id = torrent_files.inode) "
        f"WHERE inode IS NOT NULL AND EXISTS (SELECT 1 FROM inodes i WHERE i.id = torrent_files.inode "
        f"AND i.size = torrent_files.size AND {_I_HASH_VALID} AND i.hash IS NOT torrent_files.last_blake3)"
    )
    c.execute(
        "UPDATE torrents SET last_content_id = content_id "
        "WHERE content_id IS NOT NULL AND last_content_id IS NOT content_id"
    )


def _kept_hashes_of(c: sqlite3.Connection, tid: int) -> dict[tuple[int, str, int], bytes]:
    return {
        (r[0], r[1], r[2]): r[3]
        for r in c.execute(
            "SELECT idx, rel, size, last_blake3 FROM torrent_files WHERE torrent=? AND last_blake3 IS NOT NULL",
            (tid,),
        )
    }


def _restore_kept_hashes(c: sqlite3.Connection, tid: int, kept: dict[tuple[int, str, int], bytes]) -> None:
    c.executemany(
        "UPDATE torrent_files SET last_blake3=? WHERE torrent=? AND idx=? AND rel=? AND size=?",
        [(digest, tid, idx, rel, size) for (idx, rel, size), digest in kept.items()],
    )


def last_known_files(
    conn: sqlite3.Connection, instance: str, torrent_hash: str
) -> tuple[str | None, list[tuple[int, str, int, int, bytes | None]]]:
    """(last content id, [(index, rel, size, priority, last BLAKE3 or None)]) of one torrent, as the
    index last knew it (also after its files vanished); (None, []) for a torrent it does not hold."""
    row = conn.execute(
        "SELECT id, last_content_id FROM torrents WHERE instance=? AND hash=?", (instance, torrent_hash)
    ).fetchone()
    if row is None:
        return None, []
    files = conn.execute(
        "SELECT idx, rel, size, priority, last_blake3 FROM torrent_files WHERE torrent=? ORDER BY idx", (row[0],)
    ).fetchall()
    return row[1], [(i, r, s, p, bytes(b) if b is not None else None) for i, r, s, p, b in files]


def missing_torrents(
    conn: sqlite3.Connection,
    instances: Iterable[str],
    gone_after: float,
    listed: Set[tuple[str, str]] | None = None,
) -> list[tuple[str, str, str, float | None, list[tuple[bytes, int | None, int | None]]]]:
    """(instance, hash, name, gone_at, [(host path, inode's fs, ino)]) of each torrent of ``instances``
    the index saw go at or after ``gone_after``; with ``listed`` (the (instance, id) pairs of a live
    listing of every torrent of ``instances``), also of each one it still holds present that the
    listing lacks (gone_at None: no sync has seen it go yet). Its files as the index last knew them,
    each with the catalog inode its path resolved to at the last refresh (None: none).

    What ``SnapshotBuilder._missing`` turns into ``facts.MissingTorrent``. The gone rows are found
    through torrents_gone (none: no row read); the present ones are read only with ``listed``."""
    names = sorted(set(instances))
    if not names:
        return []
    marks = ",".join("?" * len(names))
    rows = conn.execute(
        f"SELECT id, instance, hash, name, gone_at FROM torrents WHERE instance IN ({marks}) AND gone_at >= ?",
        [*names, gone_after],
    ).fetchall()
    if listed is not None:
        present = conn.execute(
            f"SELECT id, instance, hash, name, gone_at FROM torrents WHERE instance IN ({marks}) AND gone_at IS NULL",
            names,
        )
        rows += [r for r in present if (r[1], r[2]) not in listed]
    out = []
    for tid, instance, h, name, gone_at in rows:
        files = conn.execute(
            "SELECT f.path, i.fs, i.ino FROM torrent_files f LEFT JOIN inodes i ON i.id = f.inode "
            "WHERE f.torrent = ? AND f.path IS NOT NULL ORDER BY f.idx",
            (tid,),
        ).fetchall()
        out.append((instance, h, name or h, gone_at, [(bytes(p), fs, ino) for p, fs, ino in files]))
    return out


def skipped_files_known(conn: sqlite3.Connection) -> dict[tuple[str, str], tuple[bool, int | None, int | None]]:
    """(instance, hash) -> (a file at priority 0, size, total size as of that file list) for every
    torrent the index holds, not gone, with its file list: what a partial snapshot knows of the
    torrents it leaves out (``converge.write_prefixes``, which trusts it only while the live
    listing's sizes are still these). A file list is fetched again when the torrent's sizes change
    (``indexer._files_key``); rTorrent's sizes do not move with a priority, so its lists are as of
    their fetch. One grouped pass over the file rows."""
    rows = conn.execute(
        "SELECT t.instance, t.hash, m.p, t.size, t.total_size FROM (SELECT torrent, MIN(priority) = 0 AS p "
        "FROM torrent_files GROUP BY torrent) m JOIN torrents t ON t.id = m.torrent WHERE t.gone_at IS NULL"
    )
    return {(instance, h): (bool(p), size, total) for instance, h, p, size, total in rows}


def unplaced_files(
    conn: sqlite3.Connection, sizes: Iterable[int] | None = None
) -> list[tuple[str, str, str, bytes, int]]:
    """(instance, hash, name, host path, size) of every file of a present torrent that resolves to no
    catalog inode (``refresh``: a path the scan never catalogued, which every path through a symlink
    is, as are missing and not yet scanned files) and whose size is one of ``sizes`` (None: any): the
    files a partial snapshot must look at for a torrent it leaves out that reaches its own through a
    symlink (``SnapshotBuilder._reaching``; a sweep reads every size once for all its chunks). Read
    through the inode index: the unplaced rows only, filtered by size in SQLite, not the whole file
    table."""
    sql = (
        "SELECT t.instance, t.hash, t.name, f.path, f.size FROM torrent_files f JOIN torrents t "
        "ON t.id = f.torrent WHERE f.inode IS NULL AND f.path IS NOT NULL AND t.gone_at IS NULL"
    )
    args: tuple = ()
    if sizes is not None:
        sql += " AND f.size IN (SELECT value FROM json_each(?))"
        args = (json.dumps(sorted(set(sizes))),)
    return [(instance, h, name, bytes(path), size) for instance, h, name, path, size in conn.execute(sql, args)]


def payload_duplicates(index: TorrentIndex) -> list[dict]:
    """Whole payloads stored more than once: torrents with one content id on distinct inodes.

    Torrents whose files resolve to the same inodes (hardlinked cross-seeds) are one stored
    copy, whatever their layouts; a content id is reported when it has two or more stored
    copies. ``layouts`` counts distinct tree ids: more than one means the same content under
    different directory layouts.
    """
    rows = [t for t in index.torrents() if t.content_id]
    inodes = index.inode_sets()
    by_content: dict[str, list[IndexedTorrent]] = defaultdict(list)
    for t in rows:
        by_content[t.content_id].append(t)
    sizes = dict(
        index.conn.execute(
            "SELECT t.content_id, sum(f.size) FROM torrents t JOIN torrent_files f ON f.torrent = t.id "
            "WHERE t.content_id IS NOT NULL AND t.gone_at IS NULL GROUP BY t.id"
        )
    )
    out = []
    for cid, members in sorted(by_content.items()):
        copies: dict[frozenset[int], list[IndexedTorrent]] = defaultdict(list)
        for t in members:
            copies[inodes.get((t.instance, t.hash), frozenset())].append(t)
        if len(copies) < 2:
            continue
        size = sizes.get(cid, 0)
        out.append(
            {
                "content_id": cid,
                "size": size,
                "copies": len(copies),
                "layouts": len({t.tree_id for t in members}),
                "reclaimable_bytes": size * (len(copies) - 1),
                "stored": [
                    {
                        "inodes": len(k),
                        "torrents": [
                            {
                                "instance": t.instance,
                                "hash": t.hash,
                                "name": t.name,
                                "tree_id": t.tree_id,
                                "save_path": t.save_path,
                            }
                            for t in v
                        ],
                    }
                    for k, v in sorted(copies.items(), key=lambda kv: min(t.hash for t in kv[1]))
                ],
            }
        )
    return out
