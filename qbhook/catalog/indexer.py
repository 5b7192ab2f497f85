"""Keep the torrent index (qbhook.catalog.torrents) current from the clients, cheaply.

How each kind of client is followed:

* qBittorrent: ``sync/maindata`` with the response id (rid) stored per instance. An answer
  with ``full_update`` (first sync, a lost or reset rid, qBittorrent restarted) lists every
  torrent: those not in it are marked gone (``gone_at``: the planner still holds a group sharing
  their files for a grace, ``facts.MISSING_GRACE_S``: a restarting qBittorrent lists its torrents
  late). A full answer of no torrent while the index holds some is not applied at all
  (``_refuse``, and a listing client's empty listing alike). Otherwise it holds only what changed since the
  rid: new torrents in full, changed ones as partial records merged into the stored record,
  removed ids in ``torrents_removed``. An unchanged client costs one request.
* file lists are fetched only for torrents that are new, came back, or whose ``files_key``
  (paths, name, sizes, metadata) changed: one ``torrents/files`` request each;
* clients without maindata (rTorrent) are re-listed with their batched listing; file lists
  again only for new or changed torrents;
* events (``record_snapshot``) write just the torrents a job looked at, from facts the job
  already read, without any extra request.

A torrent whose paths cannot be mapped is stored with the reason (``map_error``) instead of
failing the sync. An index that contradicts itself (unreadable record, orphaned rows, a
garbled sync position) is dropped for that instance and rebuilt by a full sync, and the
report says so. Each contradiction is looked for where it costs nothing extra, so that an
unchanged client costs one request and no pass over the index: the sync position and the
file rows a new torrent could adopt before every sync (``TorrentIndex.check``, two index
lookups), a stored record when an answer merges into it (only those are decoded), every
orphaned file row at each full listing (``check_all``). After a sync, file paths are
re-resolved to catalog inodes and payload ids recomputed (``TorrentIndex.refresh``,
catalog-only) when a file list was written or the catalog's paths, inodes or hashes changed
since the last refresh (``refresh_mark``: two counters).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qbhook.catalog import state
from qbhook.catalog.db import sqlite_failure
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import (
    FileRecord,
    IndexInconsistent,
    TorrentIndex,
    TorrentRecord,
)
from qbhook.clients.model import TorrentFile, TorrentInfo, check_hash, is_info_hash, is_relative_path
from qbhook.clients.port import ClientPort
from qbhook.errors import (
    CatalogUnwritable,
    PathMapError,
    QbhookError,
    UnknownTorrent,
    UnreadableItems,
    UnreadableRecord,
)
from qbhook.paths import normalize, shown

log = logging.getLogger(__name__)

# The raw record of a row an event created: not a client record, never merged into.
_EVENT_MARK = "_qbhook_event"


@dataclass
class SyncReport:
    instance: str
    mode: str  # full | incremental | listing
    rid: int | None = None
    listed: int = 0  # torrent records received
    added: int = 0
    changed: int = 0
    gone: int = 0
    files_fetched: int = 0  # torrents whose file list was (re)fetched
    unmappable: list[str] = field(default_factory=list)
    rebuilt: str | None = None  # why the stored index was dropped and rebuilt
    refused: str | None = None  # why the answer was not applied (``_refuse``): nothing was written
    seconds: float = 0.0
    # listing clients: every present torrent, typed (maindata clients: typed on demand)
    infos: list[TorrentInfo] | None = field(default=None, repr=False)
    # torrents whose planning facts (``_plan_facts``) changed, came, came back or went: what
    # an incremental sweep re-plans (qbhook.events.worker). A full update lists them all.
    touched: set[str] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        del d["infos"], d["touched"]
        return d


# ------------------------------------------------------------------ records
def _files_key(info: TorrentInfo | None, raw: Mapping[str, Any]) -> str:
    """What a file list depends on; the list is re-fetched only when this changes."""
    if info is not None:
        key = [
            info.client_save_path,
            info.client_content_path,
            info.name,
            info.size,
            info.total_size,
            info.has_metadata,
        ]
    else:
        key = [
            raw.get("save_path"),
            raw.get("content_path"),
            raw.get("name"),
            raw.get("size"),
            raw.get("total_size"),
            raw.get("state") in ("metaDL", "forcedMetaDL"),
        ]
    return json.dumps(key)


# Record fields a decision never reads (speeds, ratios, peers, activity times) change on every
# sync of a seeding torrent and must not make it look changed to the sweep; so does its state
# between these, which only say whether peers are being served right now. Every other state
# (stopped, checking, moving, error...) counts as itself.
_ACTIVITY = {
    **dict.fromkeys(("uploading", "stalledUP", "forcedUP", "queuedUP"), "seeding"),
    **dict.fromkeys(("downloading", "stalledDL", "forcedDL", "queuedDL"), "downloading"),
}


def _plan_facts(rec: TorrentRecord) -> tuple:
    """What the planner reads of a torrent's listing (qbhook.decide: TorrentFact), as one value.

    ``state`` counts by ``_ACTIVITY``: uploading and stalledUP decide alike (neither is an
    unstable state), and a seeding torrent flips between them all the time.
    """
    f = rec.fields
    return (
        rec.files_key,
        f["name"],
        f["category"],
        f["tags"],
        f["save_path"],
        f["content_path"],
        f["download_path"],
        _ACTIVITY.get(f["state"], f["state"]),
        f["progress"],
        f["auto_tmm"],
        f["size"],
        f["total_size"],
        f["has_metadata"],
        f["completion_on"],
        f["map_error"],
    )


def _record(raw: dict, info: TorrentInfo | None, map_error: str | None) -> TorrentRecord:
    if info is not None:
        fields = {
            "infohash_v1": info.infohash_v1,
            "infohash_v2": info.infohash_v2,
            "name": info.name,
            "category": info.category,
            "tags": json.dumps(sorted(info.tags)),
            "save_path": info.save_path,
            "client_save_path": info.client_save_path,
            "content_path": info.content_path,
            "client_content_path": info.client_content_path,
            "download_path": info.download_path,
            "state": info.state,
            "progress": info.progress,
            "auto_tmm": int(info.auto_tmm),
            "size": info.size,
            "total_size": info.total_size,
            "has_metadata": int(info.has_metadata),
            "added_on": info.added_on,
            "completion_on": info.completion_on,
            "map_error": None,
        }
        return TorrentRecord(info.hash, fields, raw, _files_key(info, raw))
    # Unmappable or unreadable: keep what the client said that reads (client spellings only;
    # a field that does not read is NULL) and the reason. ``map_error`` set is what makes every
    # reader treat the row as not known (snapshot_view, decide.explain): it is never planned
    # from, and it is still a torrent of this client, so its files are never unreferenced.
    from qbhook.clients.model import RecordFields, normalize_state, parse_tags

    numbers = RecordFields(raw, "")  # the one rule of what a number in a client record is

    def read(get):
        try:
            return get()
        except (QbhookError, TypeError, ValueError):  # e.g. UnreadableRecord: NULL
            return None

    fields = {
        "infohash_v1": read(lambda: _hash_text(raw.get("infohash_v1"))),
        "infohash_v2": read(lambda: _hash_text(raw.get("infohash_v2"))),
        "name": _text(raw.get("name")),
        "category": _text(raw.get("category")),
        "tags": json.dumps(sorted(parse_tags(_text(raw.get("tags"))))),
        "save_path": None,
        "client_save_path": _text(raw.get("save_path")),
        "content_path": None,
        "client_content_path": _text(raw.get("content_path")),
        "download_path": None,
        "state": normalize_state(_text(raw.get("state")) or "unknown"),
        "progress": read(lambda: numbers.number("progress", float, 0.0)),
        "auto_tmm": int(bool(raw.get("auto_tmm"))),
        "size": read(lambda: numbers.number("size", int, 0)),
        "total_size": read(lambda: numbers.number("total_size", int, raw.get("size", 0))),
        "has_metadata": None,
        "added_on": None,
        "completion_on": None,
        "map_error": map_error,
    }
    return TorrentRecord(check_hash(str(raw["hash"])), fields, raw, _files_key(None, raw))


def _text(value: Any) -> str:
    """A field of an unreadable record, kept to be shown: one that is not UTF-8 (a lone surrogate
    from JSON, what made the record unreadable) is stored as ``shown`` spells it, as SQLite
    refuses it raw and would stop the sync of every torrent of the client."""
    if not isinstance(value, str):
        return ""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return shown(value)
    return value


def _hash_text(value: Any) -> str | None:
    return check_hash(value) if isinstance(value, str) and value else None


def _typed(raw: dict, client) -> tuple[TorrentInfo | None, str | None]:
    """The record typed, or None and why not (one line naming the torrent and the field)."""
    try:
        return TorrentInfo.from_api(raw, client.path_map, client.name), None
    except (PathMapError, UnreadableRecord) as e:
        return None, e.message


def _file_records(info: TorrentInfo | None, files: Iterable[TorrentFile]) -> list[FileRecord]:
    out = []
    for f in files:
        path = None
        # A name that is not below the save path ('..', absolute: posixpath.join would put
        # "/etc/passwd" in place of it) has no path: never looked up, the planner blocks it.
        if info is not None and info.save_path and is_relative_path(f.name):
            try:
                path = normalize(posixpath.join(info.save_path, f.name)).encode("utf-8", "surrogateescape")
            except PathMapError:
                path = None  # a relative save path: never looked up
        out.append(FileRecord(f.index, f.name, f.size, f.priority, path))
    return out


# ------------------------------------------------------------------ syncing
def sync_client(catalog: Catalog, client, *, now: float | None = None) -> SyncReport:
    """Bring the index of one client instance up to date (see the module docstring)."""
    t0 = time.monotonic()
    idx = TorrentIndex(catalog.conn)
    rebuilt = None
    try:
        idx.check(client.name)
    except IndexInconsistent as e:
        rebuilt = _rebuild(idx, client.name, e)
    # qBittorrent's sync/maindata is incremental (rid); a client without it is listed whole.
    sync = _sync_maindata if hasattr(client, "maindata") else _sync_listing
    try:
        rep = sync(idx, client, now)
    except IndexInconsistent as e:
        # Found while reading what the answer merges into, before anything was written: drop
        # the instance's index and list it whole (a maindata answer from rid 0 is a full one).
        rebuilt = _rebuild(idx, client.name, e)
        rep = sync(idx, client, now)
    rep.rebuilt = rebuilt or rep.rebuilt
    # The refresh re-reads every file row (seconds at 180,000 files, more than the rest of an
    # unchanged sweep): only when a file list was written or the catalog changed under them.
    mark = refresh_mark(catalog)
    if rep.files_fetched or rep.added or rep.gone or rebuilt or state.get(catalog.conn, _REFRESH_KEY)[0] != mark:
        idx.refresh(now)
        state.put(catalog.conn, _REFRESH_KEY, mark)
    rep.seconds = round(time.monotonic() - t0, 3)
    return rep


def _rebuild(idx: TorrentIndex, instance: str, why: IndexInconsistent) -> str:
    said = f"torrent index of {instance!r} was inconsistent ({why}); rebuilt from the client"
    log.warning("%s", said)
    idx.reset(instance)
    return said


_REFRESH_KEY = "index.refresh_mark"
_P = 1_000_000_007  # sums of row terms modulo a prime: exact integers, no float rounding


def refresh_mark(catalog: Catalog) -> list:
    """A fingerprint of what ``TorrentIndex.refresh`` reads besides the file rows: which inode
    each catalog path names, and whether each inode's hash is valid.

    Two counters, no table scan: the catalog's write generation (``Catalog.generation``) moves
    on every path added, removed or pointed elsewhere and on every inode added, removed or
    changed in size, mtime or ctime (what a hash's validity is checked against); the hash
    write count (``_hash_writes``) moves whenever a hash or the stat it was taken under
    is written. A catalog without them (not migrated: read-only) is summed as before: which
    inode each path names (count, max id, sum of inode ids), each inode's ctime, its hashed_at.
    """
    generation, hashes = catalog.generation(), _hash_writes(catalog)
    if generation is not None and hashes is not None:
        return ["writes", generation, hashes]
    inodes = catalog.conn.execute(
        "SELECT count(*), coalesce(max(id), 0), coalesce(sum(ctime_ns % ?), 0), total(hashed_at) FROM inodes", (_P,)
    ).fetchone()
    paths = catalog.conn.execute("SELECT count(*), coalesce(max(id), 0), coalesce(sum(inode), 0) FROM paths").fetchone()
    return [*inodes, *paths]


def _hash_writes(catalog: Catalog) -> int | None:
    """How many times a hash or partial (or the stat it was taken under), or an fsid, was
    written, by anyone; None on a catalog without the counter (schema.LOOKUP_INDEXES_DDL). A
    partial write moves it too: the index then refreshes once more than it needs, never less."""
    try:
        row = catalog.conn.execute("SELECT n FROM content_writes WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def sync_all(catalog: Catalog, clients: Iterable[ClientPort], *, now: float | None = None) -> list[SyncReport]:
    return [sync_client(catalog, c, now=now) for c in clients]


def _sync_maindata(idx: TorrentIndex, client, now: float | None) -> SyncReport:
    rid, _synced, _full = idx.sync_state(client.name)
    data = client.maindata(rid)
    torrents, new_rid = _maindata_shape(client.name, data)
    full = bool(data.get("full_update")) or rid == 0
    rep = SyncReport(client.name, "full" if full else "incremental", rid=new_rid)
    if full and not torrents and (held := idx.present_hashes(client.name)):
        return _refuse(idx, rep, len(held))
    records, to_fetch = [], []
    incoming = {str(h).lower(): dict(v or {}) for h, v in torrents.items()}
    try:
        if full:
            idx.check_all(client.name)  # every record is read below anyway
        # Only the records this answer merges into are read: an unchanged client decodes none.
        stored = idx.raw_records(client.name, incoming)
    except IndexInconsistent as e:
        if not full:
            raise  # a delta needs what it merges into: the caller asks for a full answer
        # A full answer merges into nothing: drop the stored index and take it as a first sync.
        rep.rebuilt = _rebuild(idx, client.name, e)
        stored = {}
    rep.listed = len(incoming)
    for h, part in incoming.items():
        if not is_info_hash(h):
            # Not an id any request could name: nothing to store or fetch. Reported, so the sweep
            # lists live and refuses on it (snapshot_view) rather than plan without it.
            # ``unmappable`` lines are the client's (its name goes before them where they are shown)
            why = f"a torrent record keyed {h[:70]!r}, not a torrent hash: skipped"
            log.warning("torrent index: %s: %s", client.name, why)
            rep.unmappable.append(why)
            continue
        old = stored.get(h)
        # an event-made row has no client record to merge into: take what the client sends
        raw = part if full or old is None or old[0].get(_EVENT_MARK) else {**old[0], **part}
        raw["hash"] = h
        info, why = _typed(raw, client)
        rec = _record(raw, info, why)
        records.append((rec, info))
        if why is not None:
            log.warning("torrent index: %s", why)
            rep.unmappable.append(f"{h}: {why}")
        if old is None:
            rep.added += 1
        elif part:
            rep.changed += 1
        if old is None or old[0].get(_EVENT_MARK) or (part and _plan_facts(rec) != _old_facts(old, h, client)):
            rep.touched.add(h)
        if old is None or old[1] != rec.files_key:
            to_fetch.append((rec, info))
    if full:
        gone = idx.present_hashes(client.name) - set(incoming)
    else:
        gone = idx.present_hashes(client.name, {str(h).lower() for h in data.get("torrents_removed") or ()})
    rep.gone = len(gone)
    rep.touched |= gone
    files = _fetch_files(client, to_fetch, by_id=True, unreadable=rep.unmappable)
    rep.files_fetched = len(files)
    idx.apply(client.name, [r for r, _ in records], files, gone, rid=new_rid, mode=rep.mode, now=now)
    return rep


def _refuse(idx: TorrentIndex, rep: SyncReport, held: int) -> SyncReport:
    """A full listing of no torrent from a client the index holds torrents of: not applied.

    A client answers so while it loads its session after a restart, or when its session did not
    load; applied, it marks every torrent gone, and the sweep plans as if they were removed. Like
    ``orphans.check_listing``'s refusal, one line names the client; the sweep plans nothing this
    round (``SyncReport.refused``), and the next sync asks for a full listing again (rid 0). A
    client whose every torrent was removed is applied once it lists one again."""
    rep.refused = (
        f"{rep.instance}: listed no torrent while the torrent index holds {held} of it; not applied, "
        "nothing planned this round (still loading its session after a restart?)"
    )
    log.warning("torrent index: %s", rep.refused)
    rep.rid = 0
    idx.forget_position(rep.instance)
    return rep


def _maindata_shape(instance: str, data: Any) -> tuple[Mapping[str, Any], int]:
    """(torrents by id, the new rid) of a maindata answer, or UnreadableRecord: the shape of the
    whole answer is wrong, not one torrent's record, so nothing in it can be trusted."""
    torrents = (data.get("torrents") or {}) if isinstance(data, Mapping) else None
    new_rid = data.get("rid", 0) if isinstance(data, Mapping) else None
    if (
        not isinstance(torrents, Mapping)
        or not all(isinstance(v, Mapping) or v is None for v in torrents.values())
        or isinstance(new_rid, bool)
        or not isinstance(new_rid, int)
    ):
        raise UnreadableRecord(f"{instance}: sync/maindata: an answer of the wrong shape, nothing synced")
    return torrents, new_rid


def _old_facts(old: tuple[dict, str | None], h: str, client) -> tuple:
    """``_plan_facts`` of a stored record (the one a maindata delta is merged into)."""
    raw = {**old[0], "hash": h}
    info, why = _typed(raw, client)
    return _plan_facts(TorrentRecord(h, _record(raw, info, why).fields, raw, old[1] or ""))


def _stored_infos(idx: TorrentIndex, client) -> list[TorrentInfo] | None:
    """Every present torrent of ``client`` typed from its merged record (None if one cannot be)."""
    out = []
    try:
        stored = idx.raw_records(client.name)
    except IndexInconsistent as e:
        # Planned from a live listing this time; the next sync lists every torrent and rebuilds.
        log.warning("torrent index of %r: %s; listing live, the next sync rebuilds it", client.name, e)
        idx.forget_position(client.name)
        return None
    for h, (raw, _key) in stored.items():
        if raw.get(_EVENT_MARK):
            return None  # known only from an event so far: no full record to type
        info, _why = _typed({**raw, "hash": h}, client)
        if info is None:
            return None
        out.append(info)
    return out


def _sync_listing(idx: TorrentIndex, client, now: float | None) -> SyncReport:
    """Clients without an incremental feed: one batched listing, files only where needed.

    Every listed record is compared with the stored one as text (the way ``apply`` writes it),
    not decoded: a record that no longer reads is simply replaced."""
    idx.check_all(client.name)
    stored = idx.raw_texts(client.name)
    rep = SyncReport(client.name, "listing", rid=0)
    batched, unreadable = None, {}
    first = not stored and hasattr(client, "torrents_with_files")  # everything in a few round trips
    try:
        listing = client.torrents_with_files() if first else client.torrents()
    except UnreadableItems as e:  # kept as not known (map_error), the others synced: as a qBittorrent record
        listing, unreadable = e.rest, e.items
    if first:
        batched = listing
        infos = [t for t, _ in batched]
    else:
        infos = listing
    rep.listed = len(infos) + len(unreadable)
    if not infos and not unreadable and stored:
        return _refuse(idx, rep, len(stored))
    records, to_fetch, listed = [], [], set()
    for info in infos:
        raw = _info_raw(info)
        rec = _record(raw, info, None)
        listed.add(rec.hash)
        records.append((rec, info))
        old = stored.get(rec.hash)
        text = json.dumps(raw, sort_keys=True)
        if old is None:
            rep.added += 1
        elif old[0] != text:
            rep.changed += 1
        if old is None or old[0] != text:
            rep.touched.add(rec.hash)  # a listing holds planning facts only, nothing volatile
        if old is None or old[1] != rec.files_key:
            to_fetch.append((rec, info))
    for h, (why, seen) in unreadable.items():
        log.warning("torrent index: %s", why)
        rep.unmappable.append(why)
        listed.add(h)  # still a torrent of this client: never marked gone, so never "unreferenced"
        records.append((_record({**seen, "hash": h}, None, why), None))
        rep.touched.add(h)
    if batched is not None:
        files = {t.hash: _file_records(t, fl) for t, fl in batched}
    else:
        files = _fetch_files(client, to_fetch, by_id=False, unreadable=rep.unmappable)
    rep.files_fetched = len(files)
    gone = set(stored) - listed
    rep.gone = len(gone)
    rep.touched |= gone
    idx.apply(client.name, [r for r, _ in records], files, gone, rid=0, mode="listing", now=now)
    rep.infos = list(infos)
    return rep


def _info_raw(info: TorrentInfo) -> dict:
    """A JSON-able record of a typed listing (what changed is judged by comparing these)."""
    d = {k: getattr(info, k) for k in info.__slots__}
    d["tags"] = sorted(info.tags)
    return d


def _fetch_files(
    client, wanted: list[tuple[TorrentRecord, TorrentInfo | None]], *, by_id: bool, unreadable: list[str]
) -> dict[str, list[FileRecord]]:
    """File lists of ``wanted``; a list the client answers unreadably is left out and reported
    in ``unreadable`` (the sync report's ``unmappable``: the sweep then lists live, and refuses)."""
    out: dict[str, list[FileRecord]] = {}
    for rec, info in wanted:
        try:
            flist = client.files_of_id(rec.hash) if by_id else client.files(rec.hash)
        except UnknownTorrent:
            continue  # removed meanwhile: the next sync reports it gone
        except UnreadableRecord as e:
            log.warning("torrent index: %s", e.message)
            unreadable.append(f"{rec.hash}: {e.message}")
            continue
        out[rec.hash] = _file_records(info, flist)
    return out


# ------------------------------------------------------------------ events
def record_snapshot(catalog: Catalog, infos: Iterable[TorrentInfo], snap, *, now: float | None = None) -> int:
    """Write the torrents a job planned (their listing and file facts) into the index.

    No request: the job already listed them. The stored raw record is left alone (a maindata
    delta is merged into it later); rows and file lists are updated. Returns torrents written.
    """
    idx = TorrentIndex(catalog.conn)
    by_key = {(t.instance, t.hash): t for t in infos}
    per_instance: dict[str, tuple[list, dict]] = {}
    for fact in snap.torrents:
        info = by_key.get((fact.instance, fact.hash))
        if info is None:
            continue
        recs, files = per_instance.setdefault(fact.instance, ([], {}))
        recs.append(_record({_EVENT_MARK: True}, info, None))
        files[info.hash] = [
            FileRecord(
                f.index, f.rel, f.size, f.priority, f.path.encode("utf-8", "surrogateescape") if f.path else None
            )
            for f in fact.files
        ]
    for instance, (recs, files) in per_instance.items():
        idx.apply(instance, recs, files, (), rid=None, mode="event", now=now, keep_raw=True)
    if per_instance:
        idx.refresh(now)
    return sum(len(r) for r, _ in per_instance.values())


def try_sync_all(catalog: Catalog, clients: Iterable[ClientPort]) -> tuple[list[SyncReport], list[QbhookError]]:
    """sync_all, but an unreachable client is reported (its index kept as it was), not raised:
    ``cannot sync NAME: ...``, with the client's hint kept apart (``QbhookError.lines``).

    So is a catalog this process may not write (a user who may only read it, ``plan --no-scan``
    opening it without creating it): these syncs only refresh the index on the way to a plan or
    a listing, which the index as it is still serves (R39: the plan was lost, exit 74). Any other
    SQLite failure (a damaged file, a held lock) is raised as before."""
    reports: list[SyncReport] = []
    errors: list[QbhookError] = []
    for c in clients:
        try:
            reports.append(sync_client(catalog, c))
        except QbhookError as e:
            errors.append(QbhookError(f"cannot sync {c.name}: {e.message}", hint=e.hint))
        except sqlite3.OperationalError as e:
            err = sqlite_failure(e, _catalog_file(catalog))
            if not isinstance(err, CatalogUnwritable):
                raise
            errors.append(QbhookError(f"cannot sync {c.name}: {err.message}", hint=err.hint))
    return reports, errors


def _catalog_file(catalog: Catalog) -> str | None:
    """The catalog's file, for a message (SQLite knows it; a read-only connection may ask)."""
    try:
        return next((r[2] for r in catalog.conn.execute("PRAGMA database_list") if r[1] == "main"), None) or None
    except sqlite3.Error:
        return None


# ------------------------------------------------------------------ the sweep's view
class IndexedFiles:
    """A client whose ``files()`` answers from the index for complete torrents the last sync saw.

    Their file lists were fetched under the paths, name and sizes the sync just confirmed
    (``files_key``), so re-listing them would only repeat the answer. Incomplete torrents are
    asked live. Planning on these lists is safe because nothing acts on them: the executor
    re-reads the live file list of every torrent before it moves it (``_verify_view``).
    Everything else is the wrapped client's.

    A file renamed in the client (qBittorrent's renameFile/renameFolder below the root) moves
    none of ``files_key``, so the index would keep the old name for good; its old path then
    resolves to no catalog inode once a scan drops it, and is gone from disk. A complete
    torrent with a wanted file that resolves to none and is absent on disk (``relist``,
    ``_absent``) is asked live instead, and the live answer kept in ``relisted`` for
    ``write_back`` to put in the index.

    A skipped file (priority 0) is never written, so a rename of it leaves nothing absent on disk
    to see, and its old name would stay for good: the place the torrent writes into once its
    priority is raised, which a demote could fill with another torrent's only copy (R76). A
    complete torrent skipping a file is therefore always asked live (``snapshot_view``): one
    request per such torrent a sweep (the answer is kept in ``relisted`` and given again to the
    sweep's other chunks). Torrents wanting every file keep the index's list.
    """

    def __init__(
        self, client, index: TorrentIndex, complete: set[str], relist: Mapping[str, TorrentInfo] | None = None
    ):
        self._client = client
        self._index = index
        self._complete = complete
        self._relist = relist or {}
        self.relisted: dict[str, tuple[TorrentInfo, list[TorrentFile]]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def files(self, any_hash: str) -> list[TorrentFile]:
        h = any_hash.lower()
        if h in self._complete:
            return [
                TorrentFile(index=i, name=rel, size=size, progress=1.0, priority=prio)
                for i, rel, size, prio, _path, _inode in self._index.files(self._client.name, h)
            ]
        if h in self.relisted:  # asked once a sweep: its chunks and their left-out torrents ask again (R77)
            return self.relisted[h][1]
        live = self._client.files(any_hash)
        if h in self._relist:
            self.relisted[h] = (self._relist[h], live)
        return live


def snapshot_view(
    catalog: Catalog, clients: Iterable[ClientPort], reports: list[SyncReport]
) -> tuple[list, list[TorrentInfo]] | None:
    """(clients serving file lists from the index, every torrent) for build_snapshot after a sync.

    None when the index cannot stand in for a listing (an unmappable torrent, a row known only
    from an event): the caller then lists live, as without an index.
    """
    by_name = {r.instance: r for r in reports}
    idx = TorrentIndex(catalog.conn)
    wrapped, infos = [], []
    for c in clients:
        rep = by_name.get(c.name)
        if rep is None or rep.unmappable:
            return None
        typed = rep.infos
        if typed is None and hasattr(c, "maindata"):
            typed = _stored_infos(idx, c)  # typed only here: a plain sync does not need them
        if typed is None:
            return None
        stored = {t.hash: t.files for t in idx.torrents(instance=c.name)}
        done = {t.hash for t in typed if t.is_complete and stored.get(t.hash)}
        unplaced = idx.unplaced_wanted(c.name)
        renamed = {h for h in done & unplaced.keys() if _absent(unplaced[h])}  # maybe: listed live
        # A skipped file's place is where the torrent writes once its priority is raised, and a
        # rename of it is never seen on disk (it has no file): such a torrent is always listed live.
        # The cost: one files request per complete torrent skipping a file, every sweep.
        live = renamed | (done & idx.skipping(c.name))
        complete = done - live
        relist = {t.hash: t for t in typed if t.hash in live}
        wrapped.append(IndexedFiles(c, idx, complete, relist))
        infos.extend(typed)
    return wrapped, infos


def _absent(paths: list[bytes]) -> bool:
    """Whether one of these host paths is not on disk: the old name of a file renamed in the
    client. Only such a torrent is worth a live listing. Present paths with no catalog inode
    are symlinks (cross-seeds in symlink mode: thousands of files, never catalogued) or files
    not scanned yet, whose stored names are still right: listing them live would cost a
    request per torrent on every sweep and change nothing. An lstat each, no request."""
    return not all(os.path.lexists(p) for p in paths)


def write_back(catalog: Catalog, clients: Iterable) -> int:
    """Put the file lists a sweep listed live for complete torrents (``IndexedFiles.relisted``)
    into the index where they differ from it, and refresh it then; returns the torrents written.

    What heals a file renamed in the client: its new path resolves again, and the next sweep
    serves the torrent from the index. A list equal to the stored one (a wanted file simply
    missing on disk) writes nothing: it is asked live again next sweep, one request.
    """
    idx = TorrentIndex(catalog.conn)
    written = 0
    for c in clients:
        relisted = getattr(c, "relisted", None) if isinstance(c, IndexedFiles) else None
        changed = {}
        for h, (info, live) in (relisted or {}).items():
            new = _file_records(info, live)
            old = [row[:5] for row in idx.files(c.name, h)]
            if [(f.index, f.rel, f.size, f.priority, f.path) for f in new] != old:
                changed[h] = new
        if changed:
            idx.apply(c.name, [], changed, (), rid=None, mode="relist")
            written += len(changed)
    if written:
        mark = refresh_mark(catalog)
        idx.refresh()
        state.put(catalog.conn, _REFRESH_KEY, mark)
    return written
