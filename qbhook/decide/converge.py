"""Same-pool convergence: one inode per content per dataset. Facts in, steps out; no I/O.

An *arr import that copied instead of hardlinking, or a cross-seed that downloaded
again, leaves the same bytes twice on one dataset: a torrent's seeding file and a
library file (or another seeding file) as two inodes. Converging replaces the
seeding *name* by a hardlink to the kept inode; the torrent keeps seeding the same
bytes at the same path (no relocation), and the duplicate inode goes once its last
seeding link does.

Rules:

- **Kept inode** per (dataset, content): a library's inode first (it has links
  outside the seeding roots), else the one with most links, then the oldest (mtime),
  then the lowest inode number. The choice depends only on the snapshot's content
  index and torrents, so every group picks the same one and a kept inode is never replaced.
- An inode with no link outside the seeding roots that no torrent of the snapshot uses
  (an unclaimed file in a seeding root: a leftover, or a file in an incomplete folder
  being written by something qbhook cannot place) is never kept: whatever writes it is
  unseen, and a victim linked onto it would share its changing bytes. It is left out of
  the choice (the other copies may still converge among themselves); it is never a
  victim either (a victim is a file of the group's torrents). A move does not take a group whose
  inode has such a link beside the torrents' own (``unclaimed_links``): it would stay, keeping the
  inode, and the move would free nothing.
- **Replaced** (a victim): an inode of a torrent of this group, non-empty, hashed,
  with no link outside the seeding roots (every link of it is a known seeding link,
  so replacing them all frees it; a library file is never a victim), on the same
  dataset as the kept inode (a nested dataset has another fsid: hardlinks cannot
  reach it). *Every* known seeding link of a victim is relinked, each one a step.
- A victim with a seeding link on another filesystem than the seeding root holding it (a
  dataset mounted below the root, ``facts.NESTED``) is none: ``move.fsops`` never acts through a
  mount point below a root, so its relink would fail every run.
- Only names inside seeding roots are ever replaced; the kept inode is only linked
  from. Library files are never modified, renamed or relinked.
- A name like qbhook's temporary relink link (``paths.relink_temp_named``: a crashed relink's
  leftover, a link of the inode it was keeping, or a torrent's file named so) is never linked
  from, nor replaced: ``move.fsops`` refuses both, and the refusal would repeat every run. An
  inode is kept only through another of its names (``keep_path``); an inode with a seeding
  link so named is no victim (relinking its other names would free nothing).
- An inode that may still change waits, whether it would be the victim or the kept
  inode (then its victims wait): one that a torrent of the snapshot (any group) uses
  while it is not settled (``settled``: complete, in a state known to write nothing),
  or has at priority 0, or that is linked at a path where a torrent that is not settled
  may be writing, or where a settled one has a file at priority 0 (``Snapshot.write_paths``,
  made by ``write_paths`` for both builders: those file names under its save path and its
  download path, each also resolved through symlinks), since qBittorrent writes an
  incomplete torrent into its download path, a skipped file once its priority is raised,
  and a symlinked save path names a catalogued folder under another spelling. Replacing a
  victim by a link to a changing inode would hand a settled torrent (and maybe a
  library) those bytes. A group whose duplicates all wait stays and says so
  (``note_waiting``).
- **Unseen writers**: a torrent that is not settled with a wanted file (priority not 0) that
  the snapshot could not place (``FileFact.inode`` None) may be writing an inode qbhook
  cannot see it write: its save path through a symlink whose target is a container's path
  (``/data/...``, nothing on the host), a download folder outside the pool roots, a file
  the catalog has not seen (the pass places files by the catalog's paths only). Every
  duplicate inode, victim or kept, whose size is the size of one of those unplaced files
  waits. A torrent still downloading has files not yet on disk, and those count too (qbhook
  cannot tell "not yet written" from "written where it cannot look"): a duplicate of exactly
  such a size waits until that torrent settles. That is conservative (it only delays), and
  rare: two files of one byte size that are not the same content.
- **Writers outside a partial snapshot** (an event's closure, a sweep's chunk of torrents):
  the builder lists every torrent, and each one left out that is not settled, or is settled
  but has a file at priority 0 (written once its priority is raised: the torrent index's file
  list says so, ``catalog.torrents.skipped_files_known``; for a torrent the index holds no file
  list of, the listing's hint ``TorrentInfo.may_skip_files``), lends the places it may
  write to ``Snapshot.write_prefixes`` (``write_prefixes``): its files' places as the index's
  file list has them (those at priority 0 of a settled one), as if that torrent were in the
  snapshot; without a list, its content path, the same name under its save and download paths,
  each also resolved through symlinks and with ``.!qB``. A duplicate linked at or under one
  waits. A whole save path is never one while a file list can be had: in the "Don't create
  subfolder" layout that is a category folder (``SnapshotBuilder._left_out_files``).
- **Access**: a library file is never chmodded nor chowned, so a victim's name would show the
  kept inode's owner and mode. A victim converges only onto an inode that gives the victim's
  owner at least the access the victim gave it (``access.access_lost``: read, and write when
  the victim was writable by its owner; a torrent client opens a file read-write to repair a
  piece, a cross-seed tool hard-links only a file it may write). Otherwise that file is not
  converged, and the group's reason says why (``Convergence.kept_apart``). Decided on the
  snapshot's lstat (``InodeFact.access``), in the converge pass on the owners the catalog's scan
  recorded; where those are not known (a row written before they were kept, or whose ctime a
  hash's stat moved since its scan) it is left to the executor, which refuses such a relink on
  the stats it takes anyway.
- ``bytes_freed`` counts each victim inode once (its last seeding link goes away).

``policy.converge: false`` turns all of this into a report: the group keeps its decision and
its reason says what converging would free (``report_only``); no step is ever planned.

``plan_group`` is called by the planner for groups that stay where they are; a
group that would stay only because a library on its own pool uses the same content
through another inode gets the convergence instead, and afterwards rightly stays
with that library. ``resolve_cross_group`` keeps a convergence from linking onto an
inode another group of the same plan moves away.

The executor carries out the ``converge`` steps of consecutive converge groups in batches
(``move.fsops.Relinker``, the batch form of ``relink_over``), which re-checks every fact
above for each file right before its atomic rename.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from qbhook.access import access_lost, lost_reason
from qbhook.clients.model import PART_SUFFIX, SEEDING_STATES
from qbhook.decide.facts import (
    ContentKey,
    InodeFact,
    InodeKey,
    Snapshot,
    TorrentFact,
    canonical_path,
    incidental_in,
    may_write_at,
)
from qbhook.decide.plan import Action, Converge, ConvergeKeep, Delete, GroupPlan, Step
from qbhook.paths import is_within, relink_temp_named
from qbhook.units import human_bytes


@dataclass(frozen=True, slots=True)
class Convergence:
    steps: tuple[Step, ...]
    bytes_freed: int  # victim inodes whose last seeding link goes, each counted once
    inodes: int  # victim inodes
    onto_library: int  # of those, converged onto an inode a library uses
    waiting: int = 0  # duplicate inodes of the group left for later: they or their kept inode may change
    # Duplicate inodes not converged: a library uses them through a symlink, or the kept inode would
    # take access from their owner (``_library_uses``, ``_takes_access``): why, each.
    kept_apart: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Usage:
    """Who uses the inodes that convergence may keep, across every group of one snapshot."""

    busy: frozenset[InodeKey]  # used by a torrent that is not settled, or at priority 0
    claimed: frozenset[InodeKey]  # duplicated inodes some torrent of the snapshot uses
    unseen_sizes: frozenset[int]  # sizes of the wanted files of unsettled torrents the snapshot could not place


_USAGE = "converge.usage"  # its key in Snapshot.derived


def _usage(snap: Snapshot) -> _Usage:
    """``_Usage`` of ``snap``, built on first use and kept in ``snap.derived``: a group's kept inode is
    often another group's file, so this looks at every torrent, once per snapshot (the pass plans
    10,000 groups). Only inodes of a content held twice are kept in ``claimed`` (a keeper is one)."""
    got = snap.derived.get(_USAGE)
    if got is None:
        dup = {k for keys in snap.content.values() if len(keys) > 1 for k in keys}
        busy: set[InodeKey] = set()
        claimed: set[InodeKey] = set()
        unseen: set[int] = set()
        for t in snap.torrents:
            if not _settled(t):
                busy.update(f.inode for f in t.files if f.inode is not None)
                unseen.update(f.size for f in t.files if f.inode is None and f.priority != 0)
            else:
                busy.update(f.inode for f in t.files if f.inode is not None and not f.priority)
            claimed.update(f.inode for f in t.files if f.inode in dup)
        got = snap.derived[_USAGE] = _Usage(frozenset(busy), frozenset(claimed), frozenset(unseen))
    return got


def write_paths(torrents: Iterable[TorrentFact], resolve: Callable[[str], str] | None = None) -> frozenset[str]:
    """``Snapshot.write_paths``, for both builders (the snapshot and the pass): where each torrent
    that is not settled may be writing (``facts.may_write_at``: under its save and download paths,
    with ``resolve``, a ``facts.LinkResolver``, also through symlinks), and where a settled one has
    a file at priority 0 (raising its priority makes the client write into whatever is there; a
    placed one is in ``_usage``'s busy set, this covers one the snapshot could not place, e.g.
    through a symlinked folder). A settled torrent with every file wanted costs nothing."""
    out: set[str] = set()
    for t in torrents:
        settled_t = _settled(t)
        if names := [f.rel for f in t.files if not settled_t or not f.priority]:
            out |= may_write_at((t.save_path, t.download_path), names, resolve)
    return frozenset(out)


def write_prefixes(
    infos: Iterable,
    resolve: Callable[[str], str] | None = None,
    skipping: Mapping[tuple[str, str], tuple[bool, int | None, int | None]] | None = None,
    files: Mapping[tuple[str, str], Sequence[tuple[str, int]]] | None = None,
) -> frozenset[str]:
    """``Snapshot.write_prefixes``: where each of ``infos`` (``clients.model.TorrentInfo``, host paths:
    torrents a partial snapshot leaves out) that is not settled, or skips files (``may_write``), may
    write. With its file list (``files``: (rel, priority) by (instance, hash), asked of its client
    by ``SnapshotBuilder._left_out_files``) the places of its files exactly, as ``write_paths`` has
    them for a torrent of the snapshot (``_write_names``). Without one its content's places
    (``content_places``): a folder of its own, a single file. Only a torrent whose content path is
    its save path has a list: in qBittorrent's "Don't create subfolder" layout that is a whole
    category folder, and as a prefix it blocked every move into that category while the torrent
    downloaded, or for good while it skipped a file (R72). One whose client did not answer keeps
    its folder here, for that run.
    ``skipping``: what the index's file lists say (``catalog.torrents.skipped_files_known``); see
    ``_skips``."""
    out: set[str] = set()
    known = skipping or {}
    lists = files or {}
    for t in infos:
        key = (t.instance, t.hash)
        out |= write_places(t, resolve, known.get(key), lists.get(key))
    return frozenset(out)


def write_places(
    t,
    resolve: Callable[[str], str] | None,
    indexed: tuple[bool, int | None, int | None] | None,
    files: Sequence[tuple[str, int]] | None,
) -> set[str]:
    """Where torrent ``t`` (a ``clients.model.TorrentInfo``, host paths) may write, each place a
    prefix (what is below it too): nothing when it may not (``may_write``, on ``indexed``:
    ``skipped_files_known``'s row of it) or has no metadata yet (no file to write); with its file
    list (``files``: (rel, priority), asked of its client) its files' places (``_write_names``);
    without one, its content's places (``content_places``). The one rule for a torrent known by
    its listing: ``write_prefixes`` at plan time, ``live_writer`` at act time."""
    if not may_write(t, indexed) or not t.content_path.startswith("/"):
        return set()
    names = _write_names(t, indexed, files)
    if names is None:
        return content_places(t, resolve)
    return may_write_at((t.save_path, t.download_path), names, resolve)


def live_writer(
    infos: Iterable,
    dsts: Iterable[str],
    resolve: Callable[[str], str] | None,
    skipping: Mapping[tuple[str, str], tuple[bool, int | None, int | None]],
    files_of: Callable[[object], Sequence[tuple[str, int]] | None],
) -> tuple[str, str] | None:
    """(a path of ``dsts``, who) where one of ``infos`` (torrents listed live, host paths; not the
    moving group's own) may write (``write_places``), or None: the executor's re-check right before
    a move first makes files at its destination, since a person may rename a file onto one
    (``renameFile``) or add a torrent skipping one there after the plan. The first of
    ``live_writers``, which says whom it asks and how a torrent's places decide."""
    return next(((hit, who) for hit, who, _t in live_writers(infos, dsts, resolve, skipping, files_of)), None)


def live_writers(
    infos: Iterable,
    dsts: Iterable[str],
    resolve: Callable[[str], str] | None,
    skipping: Mapping[tuple[str, str], tuple[bool, int | None, int | None]],
    files_of: Callable[[object], Sequence[tuple[str, int]] | None],
) -> Iterator[tuple[str, str, object]]:
    """(a path of ``dsts``, who, the torrent) for each of ``infos`` that may write at one, in their
    order and lazily: a caller stops at the writer it needs, and each torrent's file list is asked
    at most once a pass (the executor takes both of its verdicts from one: ``Executor._live_writer``).
    ``files_of`` (a torrent's (rel, priority) list asked of its client, None: no answer) is asked
    only of a torrent that may write and whose content's places (``content_places``: a root folder
    of its own, or its save path when it has none) are one of ``dsts`` or a folder of one: a torrent
    with its own root folder elsewhere writes nowhere near them unless renamed, and is not asked.
    With a list its files' places decide, exactly as a snapshot holding it decides (``writer_at``);
    without one its content's places do, as for a torrent a partial snapshot leaves out."""
    wanted = [canonical_path(d) for d in dsts]
    near = {a for d in wanted for a in _with_folders(d)}
    for t in infos:
        indexed = skipping.get((t.instance, t.hash))
        if not may_write(t, indexed) or near.isdisjoint(content_places(t, resolve)):
            continue
        files = files_of(t)
        places = frozenset(write_places(t, resolve, indexed, files))
        if hit := next((d for d in wanted if _at_or_under(d, places)), None):
            yield hit, _named(t, unread=not files), t


def _with_folders(path: str) -> Iterator[str]:
    """``path`` and each folder above it: what ``_at_or_under`` walks, as a set to meet places in."""
    while True:
        yield path
        parent = posixpath.dirname(path)
        if parent == path:
            return
        path = parent


def may_write(t, indexed: tuple[bool, int | None, int | None] | None) -> bool:
    """Whether torrent ``t`` (its live listing) left out of a snapshot may still write: not settled, or
    with a file at priority 0 (``_skips``, on ``indexed``: ``skipped_files_known``'s row of it)."""
    return not settled(t.progress, t.state) or _skips(t, indexed)


def _write_names(t, indexed, files: Sequence[tuple[str, int]] | None) -> list[str] | None:
    """The file names (relative to its save path) at which torrent ``t``, which may write, may write;
    None: no file list known. Settled, with a list as of its listing's sizes: its files at priority 0
    (``write_paths``' rule). Not settled, or a list older than the listing (which files are skipped
    now is not known): every file of it. Either way its own files' places, never a folder.

    "As of its listing's sizes" is the index's row agreeing with the listing: a left-out torrent's
    list can still come from the index in a sweep (``IndexedFiles``), and one older than a priority
    change would name the wrong files. A torrent with pad files and no current row yet has every
    file counted until the next sync: a move reusing such a file waits one sweep (R85), never the
    other way round."""
    if not files:
        return None
    current = indexed is not None and (indexed[1], indexed[2]) == (t.size, t.total_size)
    if settled(t.progress, t.state) and current:
        return [rel for rel, priority in files if not priority]
    return [rel for rel, _priority in files]


def shares_its_folder(t) -> bool:
    """Whether torrent ``t``'s content path is its save path or its download path itself (a multi-file
    torrent saved without its root folder): as a prefix, every torrent's folder in it."""
    if not t.content_path.startswith("/"):
        return False
    content = canonical_path(t.content_path)
    return any(b.startswith("/") and canonical_path(b) == content for b in (t.save_path, t.download_path))


def _skips(t, indexed: tuple[bool, int | None, int | None] | None) -> bool:
    """Whether settled torrent ``t`` (its live listing) has a file at priority 0. The index's file list
    decides while the listing's sizes are the ones it was fetched with (pad files make the sizes
    differ with nothing skipped, and a small skipped file may not show in them); a list older than
    the listing (sizes changed since, an event before the next sync) or none at all: either says so."""
    if indexed is None:
        return t.may_skip_files
    skips, size, total = indexed
    if (size, total) == (t.size, t.total_size):
        return skips
    return skips or t.may_skip_files


def content_places(t, resolve: Callable[[str], str] | None = None) -> set[str]:
    """Where torrent ``t`` (a ``clients.model.TorrentInfo``, host paths) keeps its content, from its
    listing alone: its content path, the same name under its save path and its download path, each
    also with ``.!qB`` and resolved through symlinks by ``resolve``. Empty without a content path
    (no metadata yet: no file to write). ``write_prefixes`` for a torrent that may write;
    ``converge_pass`` to tell whether a settled one may use a duplicate at all."""
    if not t.content_path.startswith("/"):
        return set()
    content = canonical_path(t.content_path)
    places = {content}
    for base in (t.save_path, t.download_path):
        if base.startswith("/") and is_within(content, canonical_path(base)):
            rel = posixpath.relpath(content, canonical_path(base))
            places.update(canonical_path(posixpath.join(b, rel)) for b in (t.save_path, t.download_path) if b)
            break
    out: set[str] = set()
    for p in places:
        for q in (p, p + PART_SUFFIX):
            out.add(q)
            if resolve is not None and q.startswith("/"):
                out.add(canonical_path(resolve(q)))
    return out


def _at_or_under(path: str, prefixes: frozenset[str]) -> bool:
    """``path`` or one of its folders is in ``prefixes``: a walk up its few components, not a scan of them."""
    return any(p in prefixes for p in _with_folders(path))


def _may_change(snap: Snapshot, use: _Usage, inode: InodeFact) -> bool:
    """The rules of the module docstring: a torrent that may write uses ``inode``, or may write at one of
    its links, or has a file of its size that the snapshot could not place (an unseen writer), or is
    not in this snapshot and keeps its content where one of its links is."""
    if inode.key in use.busy or inode.size in use.unseen_sizes:
        return True
    links = inode.seeding_paths + inode.other_paths
    w, pre = snap.write_paths, snap.write_prefixes
    return (bool(w) and any(p in w for p in links)) or (bool(pre) and any(_at_or_under(p, pre) for p in links))


def reusable(snap: Snapshot, inode: InodeFact) -> bool:
    """Whether a file of another payload may be hardlinked onto ``inode`` now: nothing that may write
    it (``_may_change``: a torrent not settled, one with it at priority 0, a writer's place, an
    unseen writer of its size). The planner's donors (``planner._donors``) are these: a
    demotion's only copy on the target, linked onto an inode a downloading torrent still
    changes, would change with it once the source links are gone.

    Not also claimed by a torrent or a library, as a kept inode of a convergence must be: a partial snapshot
    (an event's closure, a saved plan's groups, a sweep's chunk) does not hold the torrent that
    seeds a donor on the target, so every donor looked unclaimed there and a demote copied data
    already on the pool (and a saved plan went stale between ``plan --save`` and ``apply --plan``:
    tests/integration/test_approved_real.py). Writers left out of a partial snapshot are in
    ``Snapshot.write_prefixes``, which ``_may_change`` reads."""
    return not _may_change(snap, _usage(snap), inode)


_WRITERS = "converge.writers"  # its key in Snapshot.derived


def writer_of(snap: Snapshot, inode: InodeFact) -> str:
    """Who may change ``inode`` (one ``reusable`` refuses), for a person to act on: the first torrent of
    the snapshot, by name, that uses it while not settled or has it at priority 0; else what
    ``_may_change`` saw in general. Looked up in an index of every torrent's such files, built on
    the first refusal and kept in ``snap.derived``: a scan per refused file took 0.23 s at
    1,000,000 files, so a refused 500-file season pack added ~2 minutes to every plan."""
    writers = snap.derived.get(_WRITERS)
    if writers is None:
        writers = {}
        for t in snap.torrents:
            settled_t = _settled(t)
            keys = [f.inode for f in t.files if f.inode is not None and (not settled_t or not f.priority)]
            if keys:
                why = "which has it at priority 0" if settled_t else f"not settled ({t.state}, {t.progress * 100:.0f}%)"
                who = f"torrent {t.name} ({t.hash[:8]} on {t.instance}), {why}"
                for k in keys:
                    writers.setdefault(k, who)  # the first torrent in the snapshot's order
        snap.derived[_WRITERS] = writers
    return writers.get(inode.key, "a torrent not settled, or skipping a file, that may write at its path")


_PLACES = "converge.write_places"  # its key in Snapshot.derived


def writer_at(snap: Snapshot, path: str) -> str | None:
    """Who may write at ``path`` (None: nobody known to), for a move that would put a file there: a
    torrent of the snapshot that lists that path at priority 0 (qBittorrent writes its pieces into
    whatever is there once a person raises the priority, no recheck) or lists it while not settled,
    another spelling of such a place (``Snapshot.write_paths``), or a place of a torrent the snapshot
    leaves out that may write (``Snapshot.write_prefixes``). The file put there would take those
    writes: a demote's only copy overwritten by another torrent's pieces (R69). The torrents by
    path, built on first use and kept in ``snap.derived``: a lookup per destination file."""
    places = snap.derived.get(_PLACES)
    if places is None:
        places = {}
        for t in snap.torrents:
            settled_t = _settled(t)
            for f in t.files:
                if not settled_t or not f.priority:
                    places.setdefault(f.path, _named(t))
        snap.derived[_PLACES] = places
    who = places.get(path)
    if who is None and (path in snap.write_paths or (snap.write_prefixes and _at_or_under(path, snap.write_prefixes))):
        who = "a torrent that may still write there (not settled, or with a file at priority 0)"
    return who


def _named(t, *, unread: bool = False) -> str:
    """A torrent (a ``TorrentFact`` or a listed ``TorrentInfo``) that may write at a place, for a
    person to act on: ``writer_at``'s and ``live_writer``'s words. ``unread``: its file list could
    not be read, so its content's folder counted (``write_places``), not a file it lists."""
    if not settled(t.progress, t.state):
        why = f"not settled ({t.state}, {t.progress * 100:.0f}%)"
    else:
        why = "which may skip a file" if unread else "which lists it at priority 0"
    if unread:
        why += " and may write there: its file list could not be read, so its folder counts"
    return f"torrent {t.name} ({t.hash[:8]} on {t.instance}), {why}"


def unclaimed_links(inode: InodeFact, listed: Container[str]) -> tuple[str, ...]:
    """The seeding links of ``inode`` no torrent lists (``listed``: the paths of every torrent that
    uses it), the module docstring's *unclaimed* for one link: a removed torrent's leftover, or the
    link of a client qbhook is not given. Nothing when the unlisted ones may all be second spellings of
    listed links (``InodeFact.aliases``). A move deletes only listed links, so one of these keeps the
    inode where it was (``planner.unclaimed_blockers``)."""
    extra = tuple(p for p in inode.seeding_paths if p not in listed)
    return extra if len(extra) > inode.aliases else ()


def keeper(snap: Snapshot, keys: list[InodeKey]) -> InodeKey:
    """The inode to keep among ``keys`` (one content on one dataset)."""
    return min(keys, key=lambda k: keep_rank(snap.inodes[k]))


def keep_rank(i: InodeFact) -> tuple[int, int, int, int]:
    """The order of the kept-inode rule (the module docstring), lowest first: a library's copy, then
    most links, the oldest, the lowest inode number. A demote picks its donor on the target by it
    too (``planner._donors``): by another order it linked from an inode a convergence of the same
    plan relinks away, which then stayed, held by the new link (R44)."""
    return (0 if i.external_links else 1, -i.nlink, i.mtime_ns, i.ino)


def candidates(snap: Snapshot, inode: InodeFact) -> list[InodeKey]:
    """Every known inode with ``inode``'s content on its dataset (itself included), that a link can reach."""
    content: ContentKey | None = inode.content
    if content is None:
        return []
    inodes, fsid = snap.inodes, inode.fsid
    keys = {k for k in snap.content.get(content, ()) if k[0] == fsid and k in inodes}
    keys.add(inode.key)
    out = []
    for k in keys:  # each fact looked up once (the pass asks this for 10,000 inodes)
        i = inodes[k]
        if i.content == content and (i.seeding_paths or i.other_paths):
            out.append(k)
    out.sort()
    return out


def settled(progress: float, state: str) -> bool:
    """A complete torrent in a state known to write none of its files (``clients.model.SEEDING_STATES``,
    a whitelist: a state a client adds later waits until someone decides, review 21)."""
    return progress >= 1 and state in SEEDING_STATES


def _settled(t: TorrentFact) -> bool:
    return settled(t.progress, t.state)


def plan_group(snap: Snapshot, group: list[TorrentFact]) -> Convergence | None:
    """The converge steps for ``group``'s duplicate inodes, or None when it has no duplicate to converge
    now or later (a Convergence without steps: its duplicates all wait, ``Convergence.waiting``).

    A file incidental to the payload (``facts.incidental_below``: an .nfo, a tracker's .txt) converges
    onto an inode outside the group only onto the party a file that is not incidental converges
    onto in this plan (``tied_to``: that torrent's files, that library folder's): then the payloads
    are one, and its small files follow it (else the next plan, seeing one group, would converge
    them then). Otherwise it converges among the group's own inodes only: a coincidence of a few
    bytes never ties a seed-only payload to a library or another payload, nor a tied one to a
    third."""
    inodes = snap.inodes
    users: dict[InodeKey, list[tuple[TorrentFact, int]]] = {}
    for t in group:
        for f in t.files:
            if f.inode is not None and f.inode in inodes:
                users.setdefault(f.inode, []).append((t, f.priority))
    small = incidental_in(group)
    chosen: list[tuple[InodeFact, InodeKey]] = []  # (duplicate, the inode it converges onto)
    deferred: list[tuple[InodeFact, list[InodeKey]]] = []  # incidental, onto another group: (dup, candidates)
    for key in sorted(users):
        inode = inodes[key]
        if inode.size == 0 or inode.content is None or inode.external_links or not inode.seeding_paths:
            continue
        if any(map(relink_temp_named, inode.seeding_paths)):
            continue  # fsops never replaces such a name (the module docstring)
        keys = candidates(snap, inode)
        if len(keys) < 2:
            continue
        if any(snap.nested_root(p, inode.fsid) for p in inode.seeding_paths):
            continue  # in a dataset mounted below its seeding root: fsops never relinks there (facts.NESTED)
        use = _usage(snap)
        keys = [c for c in keys if (c == key or inodes[c].external_links or c in use.claimed) and keep_path(inodes[c])]
        k = keeper(snap, keys)
        if k != key and k not in users and small(inode.size):
            deferred.append((inode, keys))
            continue
        chosen.append((inode, k))
    conv = _converge_steps(snap, users, chosen)
    if deferred:
        # The party: inodes outside the group that a step (not a wait) converges onto.
        made = {(s.keep.fsid, s.keep.ino) for s in conv.steps} if conv else set()
        ours = tied_to(snap, made - users.keys())
        rest = []
        for inode, keys in deferred:
            mine = [c for c in keys if c in users or ours(snap.inodes[c])]
            if len(mine) > 1:
                rest.append((inode, keeper(snap, mine)))
        conv = _joined(conv, _converge_steps(snap, users, rest))
    return conv


def tied_to(snap: Snapshot, kept: Iterable[InodeKey]) -> Callable[[InodeFact], bool]:
    """Whether an inode belongs to the party of ``kept`` (inodes a payload is tied to): it has a link
    in a folder where one of them has a link (the movie's folder holds its .nfo, a release's folder
    its RARBG.txt). By folders, not by torrents: a partial snapshot (an event's closure, a saved
    plan's groups) lacks the torrents seeding on the target, and the rule must answer the same
    there as in a full one. Nothing belongs to no party."""
    folders = {posixpath.dirname(p) for k in kept for p in snap.inodes[k].seeding_paths + snap.inodes[k].other_paths}
    if not folders:
        return lambda _inode: False
    return lambda inode: any(posixpath.dirname(p) in folders for p in inode.seeding_paths + inode.other_paths)


def _joined(a: Convergence | None, b: Convergence | None) -> Convergence | None:
    if a is None or b is None:
        return a or b
    return Convergence(
        a.steps + b.steps,
        a.bytes_freed + b.bytes_freed,
        a.inodes + b.inodes,
        a.onto_library + b.onto_library,
        a.waiting + b.waiting,
        a.kept_apart + b.kept_apart,
    )


def _converge_steps(
    snap: Snapshot, users: dict[InodeKey, list[tuple[TorrentFact, int]]], chosen: list[tuple[InodeFact, InodeKey]]
) -> Convergence | None:
    """``plan_group``'s steps: each duplicate relinked onto the inode chosen for it, unless that is
    itself, or either may still change (then it waits)."""
    use = _usage(snap)
    steps: list[Step] = []
    apart: list[str] = []
    freed = n = onto_library = waiting = 0
    for inode, k in chosen:  # in the order of their keys (plan_group's sorted users)
        key = inode.key
        if k == key:
            continue  # this one is kept; the others converge onto it from their own groups
        # Only now: an inode that is kept never converges, so it is not "waiting" however busy it is.
        if not all(_settled(t) and prio != 0 for t, prio in users[key]):
            waiting += 1
            continue
        kept = snap.inodes[k]
        if _may_change(snap, use, inode) or _may_change(snap, use, kept):
            waiting += 1
            continue
        if why := _library_uses(snap, inode) or _takes_access(snap, inode, kept):
            apart.append(why)
            continue
        kept_at, library = keep_path(kept), bool(kept.external_links)
        for p in inode.seeding_paths:
            steps.append(
                Converge(
                    p,
                    inode.fsid,
                    inode.ino,
                    inode.size,
                    inode.mtime_ns or None,
                    inode.blake3,
                    ConvergeKeep(kept_at, kept.fsid, kept.ino, library),
                )
            )
        freed += inode.size
        n += 1
        onto_library += library
    if not steps and not waiting and not apart:
        return None
    return Convergence(tuple(steps), freed, n, onto_library, waiting, tuple(apart))


def _library_uses(snap: Snapshot, victim: InodeFact) -> str | None:
    """Why ``victim`` is no victim, being a library's file through a symlink (``Snapshot.library``'s
    one rule, ``LibrarySymlinks.used``: its inode, or a seeding name of it at or below a folder
    target), or while the libraries' symlinks are unseen (a walk that did not finish): None when
    neither. Its inode has no link outside the seeding roots, so by links alone it was a victim, and
    the relink swapped the file a Plex or Jellyfin library reads for the kept inode, with that
    inode's owner and mode: the library's file changed, and its reader could lose access."""
    lib = snap.library
    if lib.unseen:
        return f"{min(victim.seeding_paths)} is not converged while library symlinks are unseen: {lib.unseen}"
    if why := lib.used((p, victim.key) for p in victim.seeding_paths):
        return f"{min(victim.seeding_paths)} is not converged: {why}"
    return None


def any_duplicate(inodes: Mapping[InodeKey, InodeFact], content: Mapping[ContentKey, Sequence[InodeKey]]) -> bool:
    """Whether a convergence may replace some inode of ``inodes``: one with seeding links and none
    outside the seeding roots shares its content (``content``: the snapshot's index) with another
    inode on its dataset. Then the libraries' symlinks are looked for (``SnapshotBuilder._library``),
    as for a move: a plan in which nothing moves still converges (``_library_uses``)."""
    for keys in content.values():
        if len(keys) < 2:
            continue
        for k in keys:
            i = inodes.get(k)
            seed_only = i is not None and i.size and i.seeding_paths and not i.external_links
            if seed_only and any(o != k and o[0] == k[0] for o in keys):
                return True
    return False


def _takes_access(snap: Snapshot, victim: InodeFact, kept: InodeFact) -> str | None:
    """Why ``victim`` must not be linked onto ``kept`` (the module docstring's access rule), or None."""
    why = access_taken(snap, victim, kept)
    if why is None:
        return None
    whose = "the library's copy" if kept.external_links else "the copy to keep"
    return f"{min(victim.seeding_paths)} is not converged: {whose} {why}"


def access_taken(snap: Snapshot, named: InodeFact, onto: InodeFact) -> str | None:
    """What a name of ``named`` would lose if it became a link of ``onto`` (``access.lost_reason``:
    "would take write access from uid ..."), or None: the one access rule of every decision that
    links a torrent's name onto another inode (a convergence, a move's donor: ``planner``).
    Unknown stats (the converge pass before a rescan) answer None: the executor's check decides then."""
    if named.access is None or onto.access is None:
        return None
    uid = named.access[1]
    lost = access_lost(onto.access, named.access, snap.client_groups.get(uid))
    return None if lost is None else lost_reason(lost, onto.access, uid)


def keep_path(inode: InodeFact) -> str | None:
    """The name a relink links ``inode`` from as the copy to keep: a seeding name of it when it has one
    (qbhook's own ground), else its library name; never one named like qbhook's temporary links
    (``paths.relink_temp_named``). None when it has no other: it cannot be kept."""
    for names in (inode.seeding_paths, inode.other_paths):
        if names and (ok := [p for p in names if not relink_temp_named(p)]):
            return min(ok)
    return None


def waiting_note(conv: Convergence) -> str:
    """Why some of a group's duplicates are not converged now ("" when all are): those that wait,
    and those the access rule keeps apart (the first one's reason, and how many more)."""
    notes = []
    if conv.waiting:
        notes.append(
            f"{conv.waiting} duplicate inode(s) wait to converge: a torrent that is not settled"
            " (or has the file at priority 0) may still write them or the copy they would be linked onto,"
            " or has a file of their size that qbhook cannot place"
        )
    if conv.kept_apart:
        more = len(conv.kept_apart) - 1
        notes.append(conv.kept_apart[0] + (f" (and {more} more duplicate inode(s) so)" if more else ""))
    return "; ".join(notes)


def note_waiting(gp: GroupPlan, conv: Convergence) -> GroupPlan:
    """A group that stays because all its duplicates wait says so (``waiting_note``)."""
    note = waiting_note(conv)
    if note:
        gp.reason = f"{gp.reason}; {note}" if gp.reason else note
    return gp


def apply_to(gp: GroupPlan, conv: Convergence, why_stay: str) -> GroupPlan:
    """Turn a staying group into a converging one (same pool, nothing copied, nothing relocated)."""
    if not conv.steps:
        return note_waiting(gp, conv)
    gp.action = Action.CONVERGE
    gp.target_pool = gp.source_pool
    gp.steps = list(conv.steps)
    gp.bytes_to_copy = 0
    gp.bytes_freed = conv.bytes_freed
    what = f"{conv.inodes} duplicate inode(s) on {gp.source_pool} relinked onto the kept copy" + (
        f" ({conv.onto_library} onto a library's)" if conv.onto_library else ""
    )
    gp.reason = f"{what}; then stays: {why_stay}" if why_stay else what
    return note_waiting(gp, conv)


def report_only(gp: GroupPlan, conv: Convergence) -> GroupPlan:
    """``policy.converge: false``: the group keeps its decision (it stays) and only says what converging would do.

    No steps, nothing actionable: neither ``apply`` nor the event worker can carry it out.
    """
    if not conv.steps:
        return note_waiting(gp, conv)
    what = f"{conv.inodes} duplicate inode(s) on {gp.source_pool}, {human_bytes(conv.bytes_freed)}" + (
        f", {conv.onto_library} onto a library's copy" if conv.onto_library else ""
    )
    note = f"would converge {what} (policy.converge is false: report only)"
    gp.reason = f"{gp.reason}; {note}" if gp.reason else note
    return note_waiting(gp, conv)


def resolve_cross_group(plans: list[GroupPlan]) -> None:
    """A convergence never links onto an inode that another group of the same plan deletes or moves."""
    # The members read once, not per group: each read off the enum class is a descriptor call (3.11).
    converging, moving = Action.CONVERGE, frozenset({Action.DEMOTE, Action.PROMOTE})
    # Only inodes some convergence keeps can matter: a map of every moved inode (a million
    # deletes in a big plan) was the planner's last peak of memory (issue 13).
    kept = {
        (s.keep.fsid, s.keep.ino) for g in plans if g.action == converging for s in g.steps if isinstance(s, Converge)
    }
    moved = {
        s.inode: g.group_id
        for g in plans
        if kept and g.action in moving
        for s in g.steps
        if isinstance(s, Delete) and s.inode in kept
    }
    for g in plans:
        if g.action != converging:
            continue
        for s in g.steps:
            other = moved.get((s.keep.fsid, s.keep.ino)) if isinstance(s, Converge) else None
            if other is not None and other != g.group_id:
                g.action, g.steps, g.bytes_freed = Action.SKIP, [], 0
                g.reason = f"waits for group {other}, which moves the copy this group would converge onto"
                break
