"""Build the planner's Snapshot from the torrent clients, the catalog and the live filesystems.

Every fact a decision rests on is re-read here, not trusted from the catalog:
each torrent file is lstat-ed, each known link of its inode is checked to still
be that inode (a stale path would undercount external links and could demote a
library's data), and hashes are computed only for groups whose decision needs
them (field lessons 5, 10).

A demotion hashes its source files first only where the hash can change the plan: a
file with a file of its size on the target dataset may be reused instead of copied
(and an existing destination must be compared), so it is hashed, with its candidates.
A settled file with no such file is not: nothing could be reused, and the copy reads
it anyway, so the copy's own hash is its verification (``Snapshot.hash_at_copy``,
a ``Copy`` with no planned hash). One read of each byte instead of two.

qbhook runs as root over trees that others (qBittorrent's container) can write,
so a path below a pool root is read only through its folders, each opened below its
verified parent once per snapshot (``dirfd.FolderReader``): a file is lstat-ed relative
to its folder's descriptor, never by its path string after a check of its folders, so a
folder swapped for a symlink between the two cannot redirect the read. A symlinked folder:

- a torrent file under a symlinked folder (or itself a symlink) is not stat-ed,
  recorded nor hashed: its inode is unknown and the symlink is reported in
  ``Snapshot.symlinks`` (the planner blocks the group naming it); the same for
  every destination path a plan could write to; only what it is, followed through its links
  (one stat, read-only: ``Snapshot.reached_inodes``), is kept when that is a file of the
  snapshot, so a link through an alias no noted link resolves (a folder symlink no torrent
  uses, a bind mount) still blocks the group it reaches;
- a catalog link reached through a symlink is not counted as a link (it may be
  a second name for a link already counted, which would hide a library link);
- a partial build (an event's closure, a sweep's chunk, a saved plan's groups) also looks
  for the torrents it leaves out whose files pass through a symlink (``Snapshot.reaching``):
  the closure never follows a link, and moving a group such a torrent reaches deletes its data.

The torrents a listing lacks that the torrent index holds, or saw go less than
``facts.MISSING_GRACE_S`` ago, are read from the index with the files they last used
(``Snapshot.missing``, ``SnapshotBuilder._missing``): a client restarting lists them late.

Clients are read through the client port only. A client that offers the batched
listing (``BatchListing.torrents_with_files``: rTorrent, a few round trips for
thousands of items) is listed that way when the builder lists everything itself;
others answer ``files()`` per torrent.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat as stat_mod
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from qbhook.catalog import library_links
from qbhook.catalog.hashing import HashBudget, Located, ensure_hashes, settled
from qbhook.catalog.library_links import LibraryLinks
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import missing_torrents, skipped_files_known, unplaced_files
from qbhook.clients.model import is_relative_path
from qbhook.clients.port import BatchListing, ClientPort
from qbhook.config import Config
from qbhook.decide import converge
from qbhook.decide.facts import (
    MISSING_GRACE_S,
    FileFact,
    InodeFact,
    InodeKey,
    LibrarySymlinks,
    LinkResolver,
    MissingTorrent,
    PoolFact,
    ReachingFile,
    Snapshot,
    TorrentFact,
    ancestors,
    canonical_path,
    map_to_pool,
    missing_still_held,
    split_links,
    torrent_file_path,
)
from qbhook.decide.grouping import payload_groups
from qbhook.decide.heap import collector_paused
from qbhook.decide.policy import policy_blocks_demote
from qbhook.dirfd import FolderReader, FolderRefused
from qbhook.errors import LibraryLinksUnseen, PathMapError, QbhookError, QbtError, UnknownTorrent
from qbhook.paths import root_holding
from qbhook.progress import Progress
from qbhook.space import Space, space_at

log = logging.getLogger(__name__)

_LSTAT_BATCH = 2000  # paths lstat-ed before their catalog rows are read (_inodes_at)
# The fsid of a file under no pool: its st_dev, never a catalog id, so it can equal no pool's key.
_OUTSIDE_FSID = "outside:"


class SweepReach:
    """What ``SnapshotBuilder._reaching`` reads of the torrents a partial build leaves out, kept
    across the partial builds of one sweep (its chunks), as ``skipping`` is: a chunk leaves out
    nearly every torrent, so each asked again what the one before it had. The index's unplaced
    files, every size at once (a chunk keeps those of its sizes); the files of the left-out
    torrents the index does not hold (``_maybe_linked``); and the symlinks on the way of each
    path lstat-ed, which a later chunk notes in its own ``symlinks`` without an lstat. The
    facts are as old as the sweep's first chunk, as its plan's other facts are when it is run."""

    def __init__(self) -> None:
        self.unplaced: dict[int, list[tuple[str, str, str, str]]] | None = None  # size -> (instance, hash, name, path)
        self.listed: dict[tuple[str, str], list[tuple[str, int]]] = {}
        self.ways: dict[str, dict[str, str]] = {}  # path -> the symlinks on its way (path -> target)
        # (instance, hash) -> the client's file list of a left-out torrent that may write into its
        # category folder (``_left_out_files``), None: its client did not answer (its folder kept)
        self.write_lists: dict[tuple[str, str], list[tuple[str, int]] | None] = {}
        self.there: dict[str, bool] = {}  # index path -> on disk, a dangling link included (``_renamed``)
        # path -> (st_dev, st_ino) its links reach, followed (None: nothing), ``_link_identities``
        self.followed: dict[str, tuple[int, int] | None] = {}
        # The libraries' symlinks (``SnapshotBuilder._library``), or why they are unseen: one walk a sweep.
        self.library: LibraryLinks | str | None = None
        # The torrents missing from the listing (``SnapshotBuilder._missing``): read once a sweep.
        self.missing: tuple[MissingTorrent, ...] | None = None
        # (instance, hash) of the torrents of a chunk whose client no longer has them (removed since
        # the sweep's sync): left out of every chunk, asked once (``SnapshotBuilder._files_of``).
        self.removed: set[tuple[str, str]] = set()


class SnapshotBuilder:
    # A sweep's torrents its clients no longer have (``SweepReach.removed``, set by ``_build``); None:
    # not a sweep, where a torrent gone is an error (a hash a user named, an event's torrent).
    _removed: set[tuple[str, str]] | None = None

    def __init__(
        self,
        cfg: Config,
        catalog: Catalog,
        clients: Iterable[ClientPort],
        *,
        progress: Progress | None = None,
        hash_budget: int = 0,
        background: bool = False,
        after_event: bool = False,
    ):
        self.cfg = cfg
        # The plan this snapshot is for is an automatic one (``policy_blocks_demote``): a group
        # that plan will not demote yet is not hashed for a demotion either.
        self.after_event = after_event
        # One budget for every hash this snapshot asks for; what it leaves unhashed blocks its
        # group ("not hashed yet") until a later run hashes it.
        self.budget = HashBudget(hash_budget)
        self.background = background
        self.catalog = catalog
        self.clients = clients  # iterable of QbtClient-like objects (name, torrents(), files())
        self.progress = progress
        self.inodes: dict[InodeKey, InodeFact] = {}
        self._inode_ids: dict[InodeKey, int] = {}
        self.roots = [str(r) for r in cfg.seeding_roots]
        self._pool_roots = tuple(
            sorted((canonical_path(str(p.path)).rstrip("/") for p in cfg.pools), key=len, reverse=True)
        )
        # Every folder below a pool root this build reads in; its descriptors are closed when the
        # build ends (the reader opens them again if it is asked anything later).
        self.reader = FolderReader(str(p.path) for p in cfg.pools)
        self.symlinks: dict[str, str] = {}  # symlinks met in torrent and destination paths -> target
        # (instance, hash) -> files, from a batched listing; others are asked per torrent
        self._listed_files: dict[tuple[str, str], list] = {}
        # Demotion sources left unhashed on purpose (see the module docstring).
        self._at_copy: set[InodeKey] = set()
        # Inodes of this snapshot without a valid hash, where this build lstat-ed them: hashing
        # one opens that path (and checks it still is that inode) instead of looking it up again.
        self._unhashed_at: dict[InodeKey, Located] = {}
        # Paths under no pool, lstat-ed by their string (FolderReader.lstat_any notes them): a
        # set lookup per file, where asking the pool roots again cost 0.6 µs a file.
        self._outside: set[str] = set()
        # Catalog inodes hashed by this build that are not in it (yet): id -> (path read, its fstat
        # after the read), so a donor among them is adopted without another lstat (``_adopt``).
        self._hashed_at: dict[int, tuple[bytes | str, os.stat_result]] = {}
        # The fsids each st_dev's files of this build were keyed on: a library symlink's file
        # target is known by (st_dev, st_ino), the snapshot's inodes by (fsid, ino). A set, never
        # one per device: a torrent saved outside the pools on a pool's filesystem (a pool root
        # that is a subfolder of its dataset) keys its files ``_OUTSIDE_FSID``+st_dev on the same
        # st_dev as that pool's, and one fsid per device (the last file looked at) dropped every
        # library symlink into that pool, so its groups demoted. Each fsid here was met on that
        # device and inode numbers are unique within a device, so (fsid, ino) found among the
        # snapshot's inodes is that very file.
        self._dev_fsids: dict[int, set[str]] = {}
        # Each (st_mode, st_uid, st_gid) of an InodeFact (``access``) once: a pool's files share a few.
        self._access: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        # Some group may move (``_hash_what_decisions_need`` says): only then are the libraries'
        # symlinks looked for (``_library``).
        self._movable = False
        self._root_devs: dict[str, int] = {}  # each seeding root's st_dev (``_pool_fact``)

    # ------------------------------------------------------------ public
    def build(
        self,
        hashes: Iterable[str] | None = None,
        now: float | None = None,
        infos=None,
        listing=None,
        skipping: Callable[[], dict] | None = None,
        reach: SweepReach | None = None,
        live: bool = True,
    ) -> Snapshot:
        """``infos``: every torrent of every instance, when the caller already listed them, or the part
        of them to build (a sweep's chunk), then with ``listing``, every torrent: those left out may
        still write where this snapshot's torrents are (``Snapshot.write_prefixes``). ``skipping``:
        what gives ``catalog.torrents.skipped_files_known`` for them, when the caller builds several
        partial snapshots over one index (a sweep's chunks ask it once, not once a chunk), and
        ``reach`` what they share of the torrents they leave out (``SweepReach``). ``live``: the
        torrents given are the clients' own listing (False: read from the torrent index, which then
        holds no present torrent they lack; see ``_missing``)."""
        try:
            return self._build(hashes, now, infos, listing, skipping, reach, live)
        finally:
            self.reader.close()

    def _build(
        self,
        hashes: Iterable[str] | None,
        now: float | None,
        infos,
        listing=None,
        skipping=None,
        reach=None,
        live: bool = True,
    ) -> Snapshot:
        now = time.time() if now is None else now
        self._removed = reach.removed if reach is not None else None
        if infos is None:
            infos = self._list_all()
        chosen = self._closure(infos, hashes) if hashes else infos
        torrents = self._torrent_facts(chosen)
        resolve = LinkResolver()  # one per build: each folder resolved once
        write_paths = self._write_paths(torrents, resolve)
        # A partial build (an event's closure, a sweep's chunk) still sees where the torrents it leaves
        # out may be writing: from the listing alone, no file list asked for. Inside is what has facts:
        # a torrent of a sweep's chunk its client answered unknown for (``_listed_or_removed``) is
        # left out like any other, so its folder stays a write prefix (``_left_out_files`` gets no
        # list for it). Taken from ``chosen``, it was in neither, and a demote could be planned onto
        # a place it writes, should it be back (re-added, or unknown for a moment) (R79).
        inside = {(t.instance, t.hash) for t in torrents}
        everyone = infos if listing is None else listing
        left_out = [t for t in everyone if (t.instance, t.hash) not in inside]
        partial = bool(hashes) or listing is not None
        known = None
        if left_out or partial:
            known = skipping() if skipping is not None else skipped_files_known(self.catalog.conn)
        write_prefixes = converge.write_prefixes(left_out, resolve, known, self._left_out_files(left_out, known, reach))
        reaching = self._reaching(torrents, left_out, known, reach) if partial else ()
        pools = tuple(self._pool_fact(p) for p in self.cfg.pools)
        self._hash_what_decisions_need(torrents, pools, now)
        content = self._donor_index(torrents)
        existing, nested = self._destinations(torrents, pools)
        library = self._library(pools, reach, torrents, content)
        missing = self._missing(everyone, now, live, reach)
        reached_inodes = self._link_identities(torrents, reaching, reach)
        return Snapshot(
            torrents=tuple(torrents),
            inodes=dict(self.inodes),
            pools=pools,
            content=content,
            existing=existing,
            now=now,
            symlinks=dict(self.symlinks),
            hash_at_copy=frozenset(k for k in self._at_copy if self.inodes[k].blake3 is None),
            write_paths=write_paths,
            write_prefixes=write_prefixes,
            reaching=reaching,
            reached_inodes=reached_inodes,
            library=library,
            missing=missing,
            client_groups=self.cfg.policy.groups_of(),
            nested_destinations=nested,
        )

    def _missing(self, everyone, now: float, live: bool, reach: SweepReach | None) -> tuple[MissingTorrent, ...]:
        """``Snapshot.missing``: the torrents of these clients the index saw go less than
        ``MISSING_GRACE_S`` ago, and, when ``everyone`` is a live listing (``live``), those it still
        holds present that the listing lacks (missing since now: no sync has seen them go yet), each
        with the files it last used (``torrents.missing_torrents``). A client listing torrents late
        after a restart leaves them out without their removal. Once a sweep with ``reach``; when
        nothing is missing, one indexed query (and, live, one pass over the present rows)."""
        if reach is not None and reach.missing is not None:
            return reach.missing

        def keys() -> set[tuple[str, str]]:
            return {(t.instance, h) for t in everyone for h in t.hashes}

        listed = keys() if live else None
        names = [c.name for c in self.clients]
        rows = missing_torrents(self.catalog.conn, names, now - MISSING_GRACE_S, listed)
        if rows and listed is None:
            listed = keys()
        out = []
        for instance, h, name, gone_at, files in rows:
            since = now if gone_at is None else gone_at
            if (instance, h) in listed or not missing_still_held(since, now):
                continue  # back in the listing since the sync saw it go, or gone for good
            paths = frozenset(canonical_path(os.fsdecode(p)) for p, _fs, _ino in files)
            keys = frozenset((self.catalog.fsid(fs), ino) for _p, fs, ino in files if fs is not None)
            out.append(MissingTorrent(instance, h, name, since, paths, keys))
        missing = tuple(out)
        if reach is not None:
            reach.missing = missing
        return missing

    # ------------------------------------------------------------ torrents and files
    def _list_all(self) -> list:
        infos = []
        for c in self.clients:
            if isinstance(c, BatchListing):
                # 15x faster than per-torrent files() on 5,000 rTorrent items (docs/benchmarks.md)
                for t, files in c.torrents_with_files():
                    infos.append(t)
                    self._listed_files[(t.instance, t.hash)] = files
            else:
                infos.extend(c.torrents())
        return infos

    def _closure(self, infos, hashes: Iterable[str]):
        """The named torrents plus every torrent that shares a file with them, transitively."""
        wanted = {h.lower() for h in hashes}
        by_hash = {h: t for t in infos for h in t.hashes}
        unknown = [h for h in wanted if h not in by_hash]
        if unknown:
            from qbhook.errors import UnknownTorrent

            raise UnknownTorrent(f"no torrent with hash {', '.join(sorted(unknown))} in any configured torrent client")
        by_content = defaultdict(list)
        for t in infos:
            by_content[posixpath.normpath(t.content_path or t.save_path)].append(t)
        todo = [by_hash[h] for h in wanted]
        seen: dict[tuple[str, str], object] = {}
        while todo:
            t = todo.pop()
            if (t.instance, t.hash) in seen:
                continue
            seen[(t.instance, t.hash)] = t
            fact = self._torrent_fact(t)
            for f in fact.files if fact is not None else ():
                paths = [f.path] + (list(self._links(f.inode)) if f.inode else [])
                for p in paths:
                    for anc in ancestors(p, self.roots):
                        todo.extend(u for u in by_content.get(anc, ()) if (u.instance, u.hash) not in seen)
        return list(seen.values())

    def _reaching(
        self, torrents: list[TorrentFact], left_out: list, known: dict, reach: SweepReach | None
    ) -> tuple[ReachingFile, ...]:
        """``Snapshot.reaching``: the files of torrents this partial build leaves out that pass through
        a symlink and are of a size of one of its placed files (a file reached through a link is that
        file: its size). Its closure follows shared inodes and content folders, never a link, so a
        torrent saved through one (``xseed -> movies``, or cross-seed's file links) is left out while
        moving the group it reaches would delete its data (``planner.reached_blockers``).

        Where to look is the torrent index's (``torrents.unplaced_files``): a path through a link is
        never catalogued, so its file has no inode there; each such file of a wanted size is lstat-ed
        here, which notes the link in ``self.symlinks``. A left-out torrent the index holds no files of
        (added since its last sync) is looked at by its content path, and its files listed unless that
        is a single file reached without a link (``_maybe_linked``); so is one with such a file gone
        from disk (``_renamed``): a file link renamed in its client (renameFile) keeps the index's old
        name, where no link is left to see (R76). The cost: one indexed query returning those files,
        one lstat each, plus one lstat and at most one file listing per left-out torrent the index
        does not hold (none after a sync) or with such a file gone: not per torrent; and with
        ``reach``, once a sweep, not once a chunk."""
        sizes = {f.size for t in torrents for f in t.files if f.inode is not None}
        if not sizes:
            return ()
        if reach is None:  # one build: only its sizes are read
            reach = SweepReach()
            reach.unplaced = self._unplaced(sizes)
        elif reach.unplaced is None:
            reach.unplaced = self._unplaced(None)
        inside = {(t.instance, t.hash) for t in torrents}
        files = [
            (instance, h, name, path, size)
            for size in sorted(sizes)
            for instance, h, name, path in reach.unplaced.get(size, ())
            if (instance, h) not in inside
        ]
        gone = self._renamed(files, reach)
        ask = {
            (t.instance, t.hash): t
            for t in left_out
            if t.content_path.startswith("/") and ((t.instance, t.hash) not in known or (t.instance, t.hash) in gone)
        }
        files = [f for f in files if (f[0], f[1]) not in ask]
        for key, t in ask.items():
            listed = reach.listed.get(key)
            if listed is None:
                listed = reach.listed[key] = self._maybe_linked(t)
            files.extend((t.instance, t.hash, t.name, path, size) for path, size in listed if size in sizes)
        return tuple(
            ReachingFile(h, name, path, size, inst)
            for inst, h, name, path, size in files
            if self._links_on(path, reach)
        )

    @staticmethod
    def _renamed(files: list, reach: SweepReach) -> set[tuple[str, str]]:
        """(instance, hash) of the torrents with one of these index paths not on disk, not even as a
        dangling link (``indexer._absent``): renamed in the client since the index listed it, or
        not written yet. Their index names say nothing of where their links are now. One lstat a
        path, once per ``reach``."""
        out = set()
        for instance, h, _name, path, _size in files:
            there = reach.there.get(path)
            if there is None:
                there = reach.there[path] = os.path.lexists(path)
            if not there:
                out.add((instance, h))
        return out

    def _link_identities(
        self, torrents: list[TorrentFact], reaching: tuple[ReachingFile, ...], reach: SweepReach | None
    ) -> dict[str, InodeKey]:
        """``Snapshot.reached_inodes``: each file of ``torrents`` and ``reaching`` that passes through a
        noted symlink (``self.symlinks``), stat-ed through its links (read-only; with ``reach``, once a
        sweep), kept when that is a file of this snapshot (by its st_dev's fsids, as ``_library``
        keys a library's targets). A path names its target through any alias, a folder symlink no
        torrent uses or a bind mount, that the noted links cannot resolve: its identity cannot lie.
        Only the files a link is on the way of: cross-seed's symlink mode; never an ordinary file."""
        followed = reach.followed if reach is not None else {}
        paths = {f.path for t in torrents for f in t.files if f.inode is None} | {r.path for r in reaching}
        out: dict[str, InodeKey] = {}
        for path in paths:
            if not path.startswith("/") or not self._via_link(path):
                continue
            if path not in followed:
                try:
                    st = os.stat(path)
                except (OSError, ValueError):
                    st = None
                followed[path] = (st.st_dev, st.st_ino) if st is not None and stat_mod.S_ISREG(st.st_mode) else None
            dev_ino = followed[path]
            if dev_ino is None:
                continue
            dev, ino = dev_ino
            key = next(((fs, ino) for fs in self._dev_fsids.get(dev, ()) if (fs, ino) in self.inodes), None)
            if key is not None:
                out[path] = key
        return out

    def _unplaced(self, sizes: set[int] | None) -> dict[int, list[tuple[str, str, str, str]]]:
        """``torrents.unplaced_files`` of ``sizes`` (None: every size), by size."""
        out: dict[int, list[tuple[str, str, str, str]]] = {}
        for instance, h, name, path, size in unplaced_files(self.catalog.conn, sizes):
            out.setdefault(size, []).append((instance, h, name, os.fsdecode(path)))
        return out

    def _links_on(self, path: str, reach: SweepReach) -> bool:
        """Does ``path`` pass through a symlink? lstat-ed once per ``reach``; the links on its way are
        noted in ``self.symlinks`` either way (the planner resolves the path through them)."""
        ways = reach.ways.get(path)
        if ways is None:
            roots = [str(p.path) for p in self.cfg.pools]
            placed = self._lstat_file(path) is not None
            ways = {} if placed else {p: self.symlinks[p] for p in ancestors(path, roots) if p in self.symlinks}
            reach.ways[path] = ways
        else:
            self.symlinks.update(ways)
        return bool(ways)

    def _maybe_linked(self, t) -> list[tuple[str, int]]:
        """(path, size) of the files of ``t``, a left-out torrent the index does not hold (or holds
        under a name gone from disk, ``_reaching``), that may pass through a symlink: every file
        when its content path is a folder (cross-seed's file links are below a real one, where no
        lstat of the content path sees them) or passes through a link; none for a single file
        reached without one, or nothing there."""
        content = canonical_path(t.content_path)
        st = self._lstat(content, note=True)
        if st is None and not self._via_link(content):
            return []
        if st is not None and stat_mod.S_ISREG(st.st_mode):
            return []
        try:
            listed = self._files_of(t)
        except UnknownTorrent:
            # Removed since the listing (a sweep's chunks run minutes after its sync): it reaches
            # nothing now, and the next sync marks it gone. Raised, it failed the whole sweep (R77).
            return []
        out = []
        for f in listed:
            path, looked_up = torrent_file_path(t.save_path, f.name)
            if looked_up:
                out.append((path, f.size))
        return out

    def _left_out_files(
        self, left_out: list, known: dict | None, reach: SweepReach | None = None
    ) -> dict[tuple[str, str], list[tuple[str, int]]]:
        """The file lists, (rel, priority) each, of the torrents ``left_out`` that may write
        (``converge.may_write``) and whose content path is their save or download path
        (``converge.shares_its_folder``: as a prefix their folder would be a whole category's), for
        ``converge.write_prefixes`` to name their files' places. Asked of the client (the batched
        listing when it gave one), never taken from the index: a file renamed below the root
        (``renameFile``) or a re-add keeps the index's old names for good, and a stale name let a
        move put its only copy where that torrent writes (R75). A torrent with a folder of its own
        keeps that folder (a rename stays inside it); one whose client does not answer keeps its
        folder for this run: a move blocked is safe, a file put where that torrent writes is not."""
        known = known or {}
        out: dict[tuple[str, str], list[tuple[str, int]]] = {}
        asked = reach.write_lists if reach is not None else {}  # once a sweep, not once a chunk (R77)
        for t in left_out:
            key = (t.instance, t.hash)
            if not (converge.shares_its_folder(t) and converge.may_write(t, known.get(key))):
                continue
            if key not in asked:
                try:
                    asked[key] = [(f.name, f.priority) for f in self._files_of(t)]
                except QbtError:
                    asked[key] = None
            if asked[key] is not None:
                out[key] = asked[key]
        return out

    def _files_of(self, t) -> list:
        """Torrent ``t``'s files: from the batched listing when the client gave one, else asked.
        UnknownTorrent without a request for one a sweep's client already said it no longer has."""
        key = (t.instance, t.hash)
        listed = self._listed_files.get(key)
        if listed is not None:
            return listed
        if self._removed is not None and key in self._removed:
            raise UnknownTorrent(f"{t.instance!r} has no torrent {t.hash} any more")
        try:
            return next(c for c in self.clients if c.name == t.instance).files(t.hash)
        except UnknownTorrent as e:
            if self._removed is not None:  # once a sweep: later chunks are not told again
                self._removed.add(key)
                log.warning("sweep: %s %r left out, gone from %s since the sync: %s", t.hash, t.name, t.instance, e)
            raise

    def _via_link(self, path: str) -> bool:
        """Is a symlink noted (``self.symlinks``) at ``path`` or on a folder of it below a pool?"""
        roots = [str(p.path) for p in self.cfg.pools]
        return any(p in self.symlinks for p in ancestors(path, roots))

    def _torrent_fact(self, t) -> TorrentFact | None:
        """None: ``t`` is gone from its client, in a sweep (``_torrent_facts``)."""
        facts = self._torrent_facts([t])
        return facts[0] if facts else None

    def _torrent_facts(self, chosen) -> list[TorrentFact]:
        """The facts of many torrents: every file of all of them lstat-ed, then the catalog asked
        in one batch (``_inodes_at``), not one query per torrent. In a sweep, a torrent its client
        no longer has is left out (``_listed_or_removed``)."""
        kept = []
        unsafe: set[str] = set()  # paths of file names that are not below their save path
        for t in chosen:
            listed = self._listed_or_removed(t)
            if listed is None:
                continue
            paths = []
            for f in listed:
                path, looked_up = torrent_file_path(t.save_path, f.name)
                # interned: shared with the inodes' link tuples
                paths.append(sys.intern(path))
                if not looked_up:
                    unsafe.add(path)
            kept.append((t, listed, paths))
        every = [p for _t, _l, paths in kept for p in paths]
        found = iter(self._inodes_at([p for p in every if p not in unsafe] if unsafe else every, canonical=True))
        keys = iter([None if p in unsafe else next(found) for p in every] if unsafe else found)
        return [self._torrent_fact_of(t, listed, paths, keys) for t, listed, paths in kept]

    def _listed_or_removed(self, t) -> list | None:
        """``_files_of(t)``; None when a sweep's chunk lists a torrent its client no longer has.

        A sweep's chunks are built minutes after its sync, and a torrent removed in between is
        unknown to its client (the index still lists it; the next sync marks it gone). Raised, it
        failed the whole sweep as bad input (R77); it has no files to plan now, so the chunk plans
        without it, as a torrent it leaves out whose list could not be had: its folder kept as a
        write prefix (``_build``; it may be back, R79). Outside a sweep (a hash a user named, an
        event's torrent) it is still raised, and only UnknownTorrent is taken so: any other client
        error still fails the sweep."""
        try:
            return self._files_of(t)
        except UnknownTorrent:
            if self._removed is None:
                raise
            return None  # noted and logged by ``_files_of``

    def _torrent_fact_of(self, t, listed: list, paths: list[str], keys) -> TorrentFact:
        """``keys``: an iterator over the inode keys of ``paths`` (and the next torrents' paths)."""
        return TorrentFact.listed(t, tuple(FileFact.listed(f, path, next(keys)) for f, path in zip(listed, paths)))

    def _write_paths(self, torrents: list[TorrentFact], resolve: LinkResolver) -> frozenset[str]:
        """``Snapshot.write_paths`` (``converge.write_paths``, resolved through symlinks by one
        ``facts.LinkResolver`` for the build). Those under a pool that are not listed files (already
        lstat-ed) are lstat-ed too, so that an inode linked there, even by a link the catalog has not
        seen yet, is in this snapshot with that link."""
        out = converge.write_paths(torrents, resolve)
        if out:
            listed = {f.path for t in torrents if not converge.settled(t.progress, t.state) for f in t.files}
            self._inodes_at(sorted(p for p in out - listed if self._pool_root(p) is not None), canonical=True)
        return out

    def _inode_at(self, path: str) -> InodeKey | None:
        """Live identity of the file at ``path`` (None: missing, not a regular file, or reached through
        a symlink, which is then noted in ``self.symlinks``)."""
        return self._inodes_at([path])[0]

    def _inodes_at(self, paths: list[str], canonical: bool = False) -> list[InodeKey | None]:
        """``_inode_at`` for many paths, in batches of ``_LSTAT_BATCH``: the lstat results of a
        batch are held until its catalog rows are read, and a whole sweep's files at once
        (180,000 at field scale) would hold tens of MB of them for one query saved per batch."""
        out: list[InodeKey | None] = []
        for i in range(0, len(paths), _LSTAT_BATCH):
            out.extend(self._inodes_at_batch(paths[i : i + _LSTAT_BATCH], canonical))
        return out

    def _inodes_at_batch(self, paths: list[str], canonical: bool) -> list[InodeKey | None]:
        """``_inode_at`` for many paths: each lstat-ed once, the catalog asked once for all of them.

        The catalog rows are read in one batch before any is recorded; a row is used at most once
        (``pop``), so an inode met twice here is re-read after the first one's ``record_path``.
        """
        keys: list[InodeKey | None] = []
        seen: list[tuple[str, os.stat_result, int, InodeKey]] = []  # the pools' files, to record
        for path in paths:
            st = self._lstat_file(path, canonical=canonical)
            if st is None:
                keys.append(None)
                continue
            if path in self._outside:  # lstat-ed by its string just now: under no pool
                # Keyed without the catalog: identifying its filesystem would register it (a
                # filesystems row, maybe a ``zfs get``) and can fail outright (a btrfs nested
                # subvolume's st_dev is in no mountinfo line), failing the snapshot of every torrent.
                key = (f"{_OUTSIDE_FSID}{st.st_dev}", st.st_ino)
                keys.append(key)
                self._dev_fsids.setdefault(st.st_dev, set()).add(key[0])
                self._outside_fact(path, st, key)
                continue
            fs = self.catalog.fs_for_path(path, st.st_dev)
            key = (self.catalog.fsid(fs), st.st_ino)
            keys.append(key)
            seen.append((path, st, fs, key))
            self._dev_fsids.setdefault(st.st_dev, set()).add(key[0])
        todo = [s for s in seen if self._stale(s[0], s[1], s[3])]
        rows = self.catalog.inodes_and_paths_by_key({(fs, st.st_ino) for _p, st, fs, _k in todo}) if todo else {}
        for path, st, fs, key in todo:
            # An earlier path of this batch may have recorded the same inode (two names in one torrent).
            if self._stale(path, st, key):
                self._record(path, st, fs, key, rows.pop((fs, st.st_ino), None))
        return keys

    def _outside_fact(self, path: str, st: os.stat_result, key: InodeKey) -> None:
        """A file under no pool (a torrent saved outside them: its save path is the client user's
        choice): a fact of this snapshot only, for the planner to block that torrent with its
        reason. Never recorded in the catalog: a catalogued inode is one ``find`` and the hashing
        read as root, and nothing outside the pools is qbhook's to read. It has no catalog row,
        so nothing hashes it; it counts as linked from outside (``other_paths``), so nothing
        converges it either. Its key is its own (``_OUTSIDE_FSID`` and its st_dev), never a pool
        inode's: a pool file hard-linked to it still counts that link (its nlink) as one from
        outside, so that torrent stays too."""
        if key not in self.inodes:
            self.inodes[key] = InodeFact(
                fsid=key[0],
                ino=key[1],
                size=st.st_size,
                nlink=st.st_nlink,
                blake3=None,
                other_paths=(sys.intern(path),),
                mtime_ns=st.st_mtime_ns,
                ctime_ns=st.st_ctime_ns,
                access=self._access_of(st),
            )

    def _stale(self, path: str, st: os.stat_result, key: InodeKey) -> bool:
        known = self.inodes.get(key)
        # A link the catalog has not seen yet (a fresh cross-seed) must be counted as ours,
        # or the inode would look linked from outside.
        return known is None or path not in known.seeding_paths + known.other_paths or known.nlink != st.st_nlink

    def _lstat_file(self, path: str, canonical: bool = False) -> os.stat_result | None:
        """lstat of the regular file at ``path``; None if missing, not regular, or reached through a
        symlink (noted in ``self.symlinks``)."""
        if not canonical and path != canonical_path(path):
            return None
        st = self._lstat(path, note=True)
        if st is None:
            return None
        if stat_mod.S_ISLNK(st.st_mode):
            self.symlinks[path] = self.reader.readlink(path)
            return None
        return st if stat_mod.S_ISREG(st.st_mode) else None

    def _lstat(self, path: str, note: bool = False) -> os.stat_result | None:
        """lstat of ``path`` (canonical) through its folder's verified descriptor; None if nothing
        is there or a folder on the way is a symlink (noted in ``self.symlinks`` with ``note``).
        A path under no pool is lstat-ed as it is: no root to place it under (the planner blocks
        such a torrent as outside the seeding roots). A path with ``..`` (a torrent may name its
        files so: ``TorrentFile`` keeps them for the planner to refuse) is never looked up: None,
        as in ``repair_facts._lstat``; raised, it would fail the snapshot of every torrent."""
        try:
            return self.reader.lstat_any(path, self._outside)
        except FolderRefused as e:
            if note:
                self.symlinks[e.folder] = e.target
            return None
        except PathMapError:
            return None

    def _folder_verified(self, path: str) -> bool:
        """Is ``path`` canonical, and its folder (under a pool) there and reached without a symlink?"""
        if path != canonical_path(path):
            return False
        if self._pool_root(path) is None:
            return True
        try:
            return self.reader.place(path)[0] is not None
        except (FolderRefused, ValueError):
            return False

    def _pool_root(self, path: str) -> str | None:
        # Plain strings (paths.root_holding, the roots normalised once): cfg.pool_of (pathlib) cost
        # ~0.5 ms per call, on every file and link.
        return root_holding(self._pool_roots)(path)

    def _record(self, path: str, st: os.stat_result, fs: int, key: InodeKey, fetched=None) -> None:
        """``fetched``: (row, paths) of this inode as read from the catalog in this build, before any
        write of it (``Catalog.inodes_and_paths_by_key``); None: read it now."""
        if fetched is None:
            row = self.catalog.inode_by_key(fs, st.st_ino)
            known_paths = {os.fsdecode(p) for p, _ in self.catalog.paths_of(row.id)} if row else set()
        else:
            row, known_paths = fetched[0], {os.fsdecode(p) for p in fetched[1]}
        if (
            row is None
            or path not in known_paths
            or (row.size, row.mtime_ns, row.ctime_ns, row.nlink)
            != (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink)
        ):
            pool = self.cfg.pool_of(path)
            self.catalog.record_path(path, pool.name if pool else "?", st=st)  # this build's lstat, not another
            row = self.catalog.inode_by_key(fs, st.st_ino)
            known_paths = {os.fsdecode(p) for p, _ in self.catalog.paths_of(row.id)}
        self._inode_ids[key] = row.id
        self.inodes[key] = self._inode_fact(key, row, st, known_paths, path)

    def _inode_fact(self, key: InodeKey, row, st: os.stat_result, known_paths: set[str], at: str) -> InodeFact:
        """``st``: the lstat just made of ``at`` (one of ``known_paths``, checked for symlinks)."""
        # Canonical spellings first (one link, one string), then only those that still are this inode;
        # ``at`` is that inode by the lstat just made, so it is not lstat-ed a second time.
        seeding, other = split_links(known_paths, self.roots)
        seeding = tuple(sys.intern(p) for p in seeding if self._still_links(p, st, at))
        other = tuple(sys.intern(p) for p in other if self._still_links(p, st, at))
        valid = (
            row.hash if (row.size, row.mtime_ns, row.ctime_ns) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns) else None
        )
        if valid is None:
            self._unhashed_at[key] = Located(row.fs, at, st.st_dev, st.st_ino, st.st_size)
        else:
            self._unhashed_at.pop(key, None)
        return InodeFact(
            fsid=key[0],
            ino=key[1],
            size=st.st_size,
            nlink=st.st_nlink,
            blake3=valid.hex() if valid else None,
            seeding_paths=seeding,
            other_paths=other,
            mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
            aliases=self._aliases(seeding) if len(seeding) > 1 else 0,
            access=self._access_of(st),
        )

    def _access_of(self, st: os.stat_result) -> tuple[int, int, int]:
        """``InodeFact.access`` of ``st``, one shared tuple per distinct value."""
        a = (st.st_mode, st.st_uid, st.st_gid)
        return self._access.setdefault(a, a)

    def _aliases(self, seeding: tuple[str, ...]) -> int:
        """How many of ``seeding`` (2+ paths, each still this inode) spell an entry another one
        spells too: one folder reached two ways (a bind mount inside the seeding root). Counted by
        ``dirfd.entry_key``, the executor's delete check's rule (``fsops._no_new_outside_link``),
        through this build's verified folders: one fstat per distinct folder. Only paths of one
        name can be one entry, so links of distinct names cost nothing, and a cross-seed's link (its
        own folder, the same name) one fstat a folder. A path whose folder cannot be read counts as
        no entry: more external links, so it stays, as the executor would refuse it."""
        names = Counter(p.rpartition("/")[2] for p in seeding)
        same = [p for p in seeding if names[p.rpartition("/")[2]] > 1]
        if not same:
            return 0
        entries = {self.reader.entry(p) for p in same}
        return len(same) - len(entries - {None})

    def _still_links(self, p: str, st: os.stat_result, at: str) -> bool:
        # split_links gave canonical spellings. ``at`` was lstat-ed by the caller (``_lstat_file``,
        # ``_adopt``) through its verified folder: asking again is a no-op.
        if p == at:
            return True
        s = self._lstat(p)
        return s is not None and s.st_ino == st.st_ino and s.st_dev == st.st_dev

    def _links(self, key: InodeKey) -> tuple[str, ...]:
        i = self.inodes.get(key)
        return (i.seeding_paths + i.other_paths) if i else ()

    # ------------------------------------------------------------ hashing only what decides
    def _hash_what_decisions_need(self, torrents: list[TorrentFact], pools: tuple[PoolFact, ...], now: float) -> None:
        primary = next(p for p in pools if p.role == "primary")
        cold = next(p for p in pools if p.role == "cold")
        groups = []
        for group in payload_groups(torrents):
            if any(f.inode is None and f.priority for t in group for f in t.files):
                continue  # missing wanted files: blocked whatever the hashes say (skipped ones: planner.wanted_only)
            keys = {f.inode for t in group for f in t.files if f.inode in self.inodes}
            groups.append((group, keys, [self.inodes[k] for k in keys]))
        # Same-pool convergence (qbhook/decide/converge.py) first, over every group at once: a
        # seed-only inode and the same-size inodes on its own dataset, whatever its group decides.
        shared = self.catalog.shared_sizes() if groups else set()  # one query, not one per size
        need = self._convergence_candidates(
            {(i.fsid, i.size) for _g, _k, facts in groups for i in facts if i.size in shared and not i.external_links}
        )
        for group, keys, facts in groups:
            if any(i.external_links for i in facts):
                # Stays where it is: no hash needed. Unless only skipped files are linked out (the
                # planner decides on the wanted ones: ``planner.wanted_only``): it may then move.
                self._movable = self._movable or not self._wanted_linked_out(group)
                continue
            src = {_pool_of(t.save_path, pools) for t in group}
            if None in src or len(src) > 1:
                continue  # blocked by the planner: outside the seeding roots or spanning pools
            if src.pop() is primary:
                if policy_blocks_demote(group, self.cfg.policy, now, after_event=self.after_event):
                    continue
                self._movable = True
                to = _seen_from(cold, primary, group)  # where the planner looks for donors
                need |= self._demotion_hashes(facts, to, now, need)
            else:
                to = _seen_from(primary, cold, group)
                cands = self._same_size_on(to.seeding_fsid, facts)
                if cands:
                    self._movable = True  # a promotion may be: its content on the primary pool
                    need |= {self._inode_ids[k] for k in keys} | cands
        self._hash(need, progress=self.progress)

    def _wanted_linked_out(self, group: list[TorrentFact]) -> bool:
        """Is a wanted file of ``group`` linked outside the seeding tree (the planner's "stay")?"""
        return any(
            (i := self.inodes.get(f.inode)) is not None and i.external_links
            for t in group
            for f in t.files
            if f.priority and f.inode is not None
        )

    # ------------------------------------------------------------ libraries' symlinks
    def _library(
        self, pools: tuple[PoolFact, ...], reach: SweepReach | None, torrents: list[TorrentFact], content: dict
    ) -> LibrarySymlinks:
        """``Snapshot.library``: the libraries' symlinks (``library_links.collect``), walked once per
        snapshot (once per sweep, with ``reach``) and only when a group may move (``self._movable``)
        or a seeding file may be converged (``converge.any_duplicate``, on ``content``: a
        convergence replaces no file a library symlink reaches): a plan that can do neither pays no
        walk. A walk that cannot finish withholds every move and convergence, naming why
        (``planner.library_blockers``, ``converge._library_uses``): a library not seen is data
        deleted, or changed under it.

        A folder target is a place by its real path, and also each folder of ``torrents``' files
        that is that folder by identity (``library_links.matched_folders``): a symlink written
        through a bind mount of the seeding data names a path the facts never spell. Asked only
        when some symlink has a folder target, once per distinct folder, through this build's
        verified descriptors (``FolderReader.identity``), so the planner matches by path alone."""
        if not self._movable and not converge.any_duplicate(self.inodes, content):
            return LibrarySymlinks(unseen="library symlinks not looked for (nothing looked movable)")
        found = reach.library if reach is not None else None
        if found is None:
            try:
                found = library_links.collect(self.cfg)
            except LibraryLinksUnseen as e:
                found = e.message
            if reach is not None:
                reach.library = found
        if isinstance(found, str):
            return LibrarySymlinks(unseen=found)
        paths = (f.path for t in torrents for f in t.files)
        return LibrarySymlinks.of(
            found, self._dev_fsids, self.inodes, (p.path for p in pools), paths, self.reader.identity, self._climbed
        )

    def _climbed(self, folder: str) -> bool:
        """``matched_folders`` climbs no higher than ``folder``: a pool root, or under none."""
        return self.reader.root_of(folder) in (None, folder)

    def _demotion_hashes(self, facts: list[InodeFact], cold: PoolFact, now: float, need: set[int]) -> set[int]:
        """What a demotion must hash before planning: the files that could be reused from the target
        (a file of their size is there) and those candidates. A settled file without one is left to
        the copy (``self._at_copy``); an unsettled one is asked for, so it blocks as "not hashed yet"."""
        cands = self._same_size_by_size(cold.seeding_fsid, facts)
        out: set[int] = set().union(*cands.values())
        margin = self.cfg.scan.settle_seconds
        for i in facts:
            iid = self._inode_ids[i.key]
            if (
                i.size in cands
                or i.blake3 is not None
                or iid in need
                or not settled(i.mtime_ns, i.ctime_ns, margin, now)
            ):
                out.add(iid)
            elif i.size:
                self._at_copy.add(i.key)
        return out

    def _hash(self, inode_ids: set[int], progress: Progress | None = None) -> None:
        """Hash what lacks a valid hash, then carry the new hashes into the facts of those inodes.

        An inode of this snapshot already has its answer: a hash valid for the lstat of this
        build (nothing to do), or the path and lstat it was found at (``ensure_hashes`` opens
        that path and checks it still is that inode: no second catalog read nor lstat). Only
        catalog inodes outside the snapshot are looked up by ``ensure_hashes``. The digests come
        back with the report, so no row is read again to learn them."""
        if not inode_ids:
            return
        known = {iid: key for key, iid in self._inode_ids.items() if iid in inode_ids and key in self.inodes}
        located = {iid: self._unhashed_at[key] for iid, key in known.items() if key in self._unhashed_at}
        rest = sorted(
            iid
            for iid in inode_ids
            if iid not in located and (iid not in known or self.inodes[known[iid]].blake3 is None)
        )
        if not rest and not located:
            return
        report = ensure_hashes(
            self.catalog,
            rest,
            settle_seconds=self.cfg.scan.settle_seconds,
            progress=progress,
            budget=self.budget,
            background=self.background,
            located=located,
            keep_digests=True,
            reader=self.reader,  # the folders this build opened: not opened (nor checked) again
        )
        for iid, (digest, path, after) in report.digests.items():
            key = known.get(iid)
            if key is None:
                self._hashed_at[iid] = (path, after)
                continue
            old = self.inodes[key]
            # Still the file this build saw (the read's own stat check made the hash valid for ``after``).
            if (after.st_size, after.st_nlink, after.st_mtime_ns) == (old.size, old.nlink, old.mtime_ns):
                self._unhashed_at.pop(key, None)
                self.inodes[key] = InodeFact(
                    old.fsid,
                    old.ino,
                    old.size,
                    old.nlink,
                    digest.hex(),
                    old.seeding_paths,
                    old.other_paths,
                    old.mtime_ns,
                    old.ctime_ns,
                    old.aliases,
                    old.access,
                )

    def _convergence_candidates(self, wanted: set[tuple[str, int]]) -> set[int]:
        """Catalog inode ids of every (dataset, size) in ``wanted`` that two or more inodes share there.

        One pass over the catalog rows of those sizes (500 sizes per query). Asking per inode
        was quadratic in the inodes of one size: thousands of small files of one size (subtitles,
        .nfo files, a generated bed's fixed sizes) made a 50k-file sweep run for 20 minutes."""
        by_key: dict[tuple[str, int], set[int]] = defaultdict(set)
        for iid, size, fsid, _ino in self.catalog.inodes_of_sizes(sorted({size for _fs, size in wanted})):
            if (fsid, size) in wanted:
                by_key[(fsid, size)].add(iid)
        return set().union(*(ids for ids in by_key.values() if len(ids) > 1))

    def _same_size_on(self, fsid: str, facts: list[InodeFact]) -> set[int]:
        """Catalog inodes on ``fsid`` of the size of one of ``facts`` and not that fact itself."""
        return set().union(*self._same_size_by_size(fsid, facts).values())

    def _same_size_by_size(self, fsid: str, facts: list[InodeFact]) -> dict[int, set[int]]:
        """``_same_size_on``, per size: size -> those catalog inode ids (sizes without any left out)."""
        keys_of_size: dict[int, set[InodeKey]] = defaultdict(set)
        for i in facts:
            if i.size:
                keys_of_size[i.size].add(i.key)
        out: dict[int, set[int]] = defaultdict(set)
        for iid, size, row_fsid, ino in self.catalog.inodes_of_sizes(sorted(keys_of_size)):
            # Some fact of this size is another inode than this row (the per-fact rule, in one pass).
            if row_fsid == fsid and keys_of_size[size] != {(row_fsid, ino)}:
                out[size].add(iid)
        return out

    # ------------------------------------------------------------ donors and destinations
    def _donor_index(self, torrents: list[TorrentFact]) -> dict:
        """Every catalog inode (any pool) holding a content of the torrents' files, still there.

        The catalog is read in batches, not per content: the ids of the inodes with a valid hash
        of one of those contents (one query per 500), then those rows with their paths (one per
        500 ids). Per content, it was three queries per inode and 10,000 contents cost seconds
        (docs/benchmarks.md section 9)."""
        wanted = {
            self.inodes[f.inode].content
            for t in torrents
            for f in t.files
            if f.inode in self.inodes and self.inodes[f.inode].content
        }
        if not wanted:
            return {}
        ids = self.catalog.inode_ids_with_contents((size, bytes.fromhex(h)) for size, h in wanted)
        found: dict = defaultdict(list)
        # Inodes of this snapshot are known by their facts (this build's lstat and hash): their rows
        # are not read again; only the others' are, to adopt them.
        key_of = {iid: key for key, iid in self._inode_ids.items() if key in self.inodes}
        for iid in ids:
            key = key_of.get(iid)
            if key is not None and self.inodes[key].content in wanted:
                found[self.inodes[key].content].append(key)
        for row, paths in self.catalog.inodes_and_paths([i for i in ids if i not in key_of]).values():
            ck = (row.size, row.hash.hex()) if row.hash is not None else None
            if ck not in wanted:
                continue
            key = (row.fsid, row.ino)
            if key not in self.inodes and not self._adopt(row, paths):
                continue
            if self.inodes[key].content == ck:
                found[ck].append(key)
        return {ck: tuple(sorted(found.get(ck, ()))) for ck in wanted}

    def _adopt(self, row, paths: list[bytes]) -> bool:
        """Bring a catalog inode into the snapshot if one of its ``paths`` (all of its catalog
        paths, read in this build) still is that inode."""
        known = {os.fsdecode(x) for x in paths}
        read = self._hashed_at.get(row.id)
        if read is not None:
            # Hashed in this build through this path: the descriptor read was this inode (checked
            # by ensure_hashes) and its fstat serves as this path's lstat.
            path, st = os.fsdecode(read[0]), read[1]
            if path in known and self._folder_verified(path) and self.catalog.still_is(path, st, row):
                key = (row.fsid, row.ino)
                self._inode_ids[key] = row.id
                self.inodes[key] = self._inode_fact(key, row, st, known, path)
                self._dev_fsids.setdefault(st.st_dev, set()).add(key[0])
                return True
        for p in paths:
            path = os.fsdecode(p)
            if path != canonical_path(path):
                continue
            st = self._lstat(path)
            if st is not None and self.catalog.still_is(path, st, row):
                key = (row.fsid, row.ino)
                self._inode_ids[key] = row.id
                self.inodes[key] = self._inode_fact(key, row, st, known, path)
                self._dev_fsids.setdefault(st.st_dev, set()).add(key[0])
                return True
        return False

    def _destinations(self, torrents: list[TorrentFact], pools: tuple[PoolFact, ...]) -> tuple[dict, dict]:
        """What is at every path a plan could write to, right now; and ``Snapshot.nested_destinations``."""
        wanted: list[tuple[str, FileFact]] = []
        # Torrents share save paths (a category's folder): each is placed and mapped once.
        saves: dict[str, list[str]] = {}
        for t in torrents:
            new_saves = saves.get(t.save_path)
            if new_saves is None:
                new_saves = saves[t.save_path] = self._mapped_saves(t.save_path, pools)
            # A file name that is not below its save path names no destination: its torrent is blocked.
            wanted.extend(
                (posixpath.join(new_save, f.rel), f)
                for new_save in new_saves
                for f in t.files
                if is_relative_path(f.rel)
            )
        keys = self._inodes_at([dst for dst, _f in wanted])  # lstat each, the catalog asked in one batch
        nested = self._nested_destinations({posixpath.dirname(dst) for dst, _f in wanted}, pools)
        existing: dict[str, InodeKey | None] = {}
        to_hash: set[int] = set()
        for (dst, f), key in zip(wanted, keys):
            existing[dst] = key
            if key is not None and self.inodes[key].blake3 is None and self.inodes[key].size:
                to_hash.add(self._inode_ids[key])
            if key is not None and f.inode in self._at_copy:
                # Something is already there: only hashes can say whether it is this file.
                self._at_copy.discard(f.inode)
                to_hash.add(self._inode_ids[f.inode])
        self._hash(to_hash)
        return existing, nested

    def _nested_destinations(self, folders: set[str], pools: tuple[PoolFact, ...]) -> dict[str, str]:
        """``Snapshot.nested_destinations``: each of ``folders`` (those destination files would be
        in) whose deepest existing folder is on another filesystem than its seeding root, a dataset
        mounted there (``facts.NESTED``): the executor refuses to copy or link through it. One fstat
        a distinct folder (``FolderReader.identity``, its descriptor opened by the lstat just made
        of the files), none per file."""
        deepest: dict[str, tuple[str, int] | None] = {}  # folder -> (deepest existing folder, its st_dev)

        def existing(folder: str, root: str) -> tuple[str, int] | None:
            walked, cur = [], folder
            while cur not in deepest:
                ident = self.reader.identity(cur)
                if ident is not None or cur == root or "/" not in cur.rstrip("/"):
                    deepest[cur] = None if ident is None else (cur, ident[0])
                    break
                walked.append(cur)
                cur = posixpath.dirname(cur)
            for w in walked:
                deepest[w] = deepest[cur]
            return deepest[folder]

        out = {}
        for folder in sorted(folders):
            pool = _pool_of(folder, pools)
            root = pool.root_of(folder) if pool is not None else None
            dev = self._root_devs.get(root) if root is not None else None
            found = existing(folder, root) if dev is not None else None
            if found is not None and found[1] != dev:
                out[folder] = found[0]
        return out

    @staticmethod
    def _mapped_saves(save_path: str, pools: tuple[PoolFact, ...]) -> list[str]:
        """``save_path`` mapped onto every other pool that can take it (none: not in a seeding root)."""
        src = _pool_of(save_path, pools)
        out = []
        for dst_pool in pools if src is not None else ():
            if dst_pool is src:
                continue
            try:
                out.append(map_to_pool(save_path, src, dst_pool))
            except ValueError:
                continue
        return out

    # ------------------------------------------------------------ pools
    def _pool_fact(self, p) -> PoolFact:
        """The pool's facts, each seeding root read through its descriptor from its pool root down
        (``space.space_at``): a missing one, or one swapped for a symlink or another folder, stops
        the build (its free space and filesystem would be another folder's)."""
        root = str(p.seeding_root)
        read = [_root_space(r, p) for r in p.seeding_roots]  # each one: a missing or swapped one stops the build
        space, _st = read[0]  # the build root's
        # Each root's filesystem: a file below a root on another one is in a dataset mounted there
        # (``facts.NESTED``); its st_dev, for the destinations' folders (``_nested_destinations``).
        fsids = []
        for r, (_space, st) in zip(p.seeding_roots, read, strict=True):
            fsids.append(self.catalog.fsid(self.catalog.fs_for_path(str(r), st.st_dev)))
            self._root_devs[str(r)] = st.st_dev
        return PoolFact(
            name=p.name,
            role=p.role,
            path=str(p.path),
            seeding_root=root,
            seeding_fsid=fsids[0],
            free_bytes=space.avail,
            more_seeding_roots=tuple(str(r) for r in p.more_seeding_roots),
            size_bytes=space.size,
            more_seeding_fsids=tuple(fsids[1:]),
        )


def _root_space(root, p) -> tuple[Space, os.stat_result]:
    """``space.space_at`` of the seeding root ``root`` of pool ``p``; a missing or swapped one is a
    QbhookError naming it (any other OSError stops the build too)."""
    try:
        return space_at(root, p.path)
    except (FileNotFoundError, NotADirectoryError):
        raise QbhookError(f"seeding root {root} of pool {p.name} does not exist", hint="is the pool mounted?") from None
    except FolderRefused as e:
        raise QbhookError(
            f"seeding root {root} of pool {p.name}: {e}", hint="qbhook never follows links below a pool root"
        ) from None


def _seen_from(tgt: PoolFact, src: PoolFact, group: list[TorrentFact]) -> PoolFact:
    """``tgt`` as seen from where ``group`` goes (``PoolFact.seen_from``): ``planner._going_to``'s rule."""
    if not tgt.more_seeding_roots:
        return tgt  # one root: nothing to map (a mapping a torrent, on every group of every build)
    return tgt.seen_from([map_to_pool(t.save_path, src, tgt) for t in group])


def _pool_of(path: str, pools: tuple[PoolFact, ...]) -> PoolFact | None:
    return next((p for p in pools if p.root_of(path) is not None), None)


def build_snapshot(
    cfg: Config,
    catalog: Catalog,
    clients: Iterable[ClientPort],
    hashes=None,
    *,
    progress: Progress | None = None,
    now: float | None = None,
    infos=None,
    hash_budget: int = 0,
    background: bool = False,
    after_event: bool = False,
    live: bool = True,
) -> Snapshot:
    """``hash_budget``: bytes this snapshot may hash (0: no limit); ``background``: hash at idle
    I/O and nice 19 (``qbhook.hashing``); ``after_event``: for ``make_plan(after_event=True)``, so
    its hashing skips what that plan holds back (``policy_blocks_demote``); ``live``: as
    ``SnapshotBuilder.build``'s. Built with the cyclic collector paused (``decide.heap``)."""
    with collector_paused():
        return SnapshotBuilder(
            cfg,
            catalog,
            list(clients),
            progress=progress,
            hash_budget=hash_budget,
            background=background,
            after_event=after_event,
        ).build(hashes, now=now, infos=infos, live=live)
