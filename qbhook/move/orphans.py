"""Orphans: data under the seeding roots that no torrent of any configured client references.

The model (decided by ``decide``, pure; the walk, the client listing and the quarantine
are the thin side effects around it):

* every regular file below every seeding root is one *entry* (the walk never follows a
  symlink nor crosses into another filesystem; qbhook's own folders and ``scan.ignore_names``
  are not entered, nor its temporary relink links listed: ``paths.RELINK_PREFIX``; a drop name
  among those, a link a killed delete left hidden, is named for a person, never reclaimable;
  nor the catalog, its journal files or the lock folder, by identity: ``own_identities``);
* a file is *referenced* when a torrent of any client seeds from it, by path or by
  identity: a file of a complete torrent, or a wanted file of one at 100 % of what it wants
  that skips others (its skipped files and its folder are *protected*: ticked again, they are
  written) (``references``: each such path is stat-ed through its symlinks, and an entry whose
  (device, inode) one of them reaches is that torrent's data, whatever path the walk met it by:
  cross-seed's symlinks onto it, a save path that is a symlink to a folder, a client spelling a
  name in another Unicode normalization or case than the dataset shows it; so another hard link
  of a torrent's file is referenced too; a symlink that dangles on the host is read through its
  client's path_map too, as a library's is, ``library_links.as_host``: cross-seed in a container
  links in its own spelling, /data/...); it is
  *protected* (never an orphan, whatever else holds) when it is a part file (``.!qB``, or
  libtorrent's ``.<infohash>.parts``: ``model.is_part_file``), lies
  in the content folder of a torrent that is incomplete or skips files (qBittorrent keeps
  their pieces in ``.unwanted`` and part files), in its save or its download path, anywhere in
  either for one that lacks metadata (a bare magnet is named by its info hash: where its data
  lies is not known yet), or in qBittorrent's temp path (each such place by its path, as listed
  and resolved, and by identity: a folder above the file that is one, ``References.protected_ids``;
  one that holds a whole seeding root, a magnet saved through a symlink onto ``/``, is named in a
  warning, ``kept_whole_roots``, else the listing read as nothing to reclaim),
  or is what a file of such a torrent reaches (``partial_inodes``:
  stat-ed through its symlinks, in its save and download paths, or the place a dangling one
  names, read through its client's path_map as well: cross-seed's symlink mode fills a real
  content folder with per-file symlinks, in a container's spelling when it runs in one, so every
  listed file of every torrent, whatever its state, keeps what it resolves to), or is where
  qBittorrent keeps a skipped file of any torrent, whatever its state (``_unwanted``:
  ``<its folder>/.unwanted/<name>``, the option "keep unselected files in .unwanted folder" of
  qBittorrent up to 4.2; 4.5 moves such a file back out only when it loads the torrent, so one can
  sit there after an upgrade; for a single-file or NoSubfolder torrent that lies in no content
  folder), or when no
  torrent uses it but it may be the data of a torrent missing its files
  (``may_be_missing_data``: its size is the size of a file of a torrent its client calls
  ``missingFiles``, or of a torrent with metadata one of whose wanted files is absent, at
  any progress, any client: a force recheck after a rename leaves it at 0 %, the
  rule ``qbhook repair`` calls it missing by; names and layout may differ, a person renamed
  its folder, and it is the copy
  ``qbhook repair`` rebuilds that torrent from: reported with that torrent's name, an empty
  file holds no data); it is a *leftover* view when the journal still tracks it as a
  rolled-back group's view (``leftovers``: the next run removes it once proven redundant, or it
  waits for a person, maybe the last copy of its content); it is *in use by an unfinished run*
  when the plan of a run that did not finish (running now, or killed) makes or verifies a file
  at its path (``unfinished_views``: a demote's verified view on the target pool is unreferenced
  until the run relocates onto it; ``qbhook resume``, or ``serve`` at its start, finishes the
  run), listed for a person by that run (``Report.protected``), never reclaimable nor counted in
  ``last_orphans``; it is *young* when written within ``scan.settle_seconds``;
* every other file is an *orphan*: *not seeding* when no torrent of any client has its save or
  download path at or above it (``seeding_folders``: compared exactly, as listed and resolved,
  never by a shared top-level folder nor case-folded: a root set one level too high holds the
  library beside the torrents, and one torrent cross-seed saved into the library makes only its
  own folder seeding, not the library; a category folder whose torrents were all removed is not
  seeding either, on purpose), reported apart, never quarantined, outside the share guard;
  *still used by a library* when its inode has a link outside the seeding roots or in a
  not-seeding folder (more links than the walk met in seeding folders), or when a library's
  symbolic link reaches it (``library_link``: a symlink in a pool outside the seeding roots, or
  one below a seeding root that is not a file a torrent lists (``library_of``: a folder symlink a
  torrent saves or lists through is a library's too), onto the file, or onto a folder holding it,
  followed read-only: ``library_links``; its link count says nothing of it),
  otherwise *reclaimable*; a reclaimable
  inode frees its size only when every link of it is an orphan;
* orphans are shown as items: the highest folder below a root whose files are all orphans
  of one kind, or the file itself; a library's names a symlink that keeps it (``Item.link``):
  one no torrent lists (cross-seed's link of a removed torrent) keeps its target until removed.

Guards (``OrphansRefused``, nothing moved): a client that cannot be listed, no torrents at
all, a client whose complete torrents have files below the seeding roots of which the walk
met fewer than half (``MIN_MET_SHARE``), or orphans over ``policy.orphans_max_share`` of a
pool's seeding bytes. Each is what an unmounted dataset, a wrong path_map or a client outage
looks like, and each would make everything (or all of one client's data) look orphaned; the
per-client one catches what the share cannot: a second client holding less than the share,
its path_map off by a folder. (A client not configured at all lists nothing: only the share
guard stands for it.) Also refused: a torrent the client is moving (its old copy is
unreferenced until the move ends), a torrent missing its files whose file sizes the listing
does not give (nothing to tell its data apart by), a pool whose walk for library symlinks
cannot finish (``library_links``: a library not seen is data deleted) and, for quarantine, an
unfinished run (its views are unreferenced until resume relocates onto them).

A quarantine lists the clients twice, before and after the walk, and a file either listing
uses is no orphan (the guards judge both): a torrent added during the walk onto an old file
(a symlink onto it leaves its ctime alone: not young) keeps it.

Quarantine moves reclaimable orphan files into the holding folder of their own seeding
root (same dataset) through ``fsops.hold_unreferenced``, each step journaled first as a
``delete`` step that holds, exactly like a grace-period delete: the journal says what may
be purged (``qbhook holding --purge-expired --yes``), after ``policy.grace_period``. It never
deletes anything itself. A quarantine that died is finished (``finish_quarantine``: by the next
quarantine or ``qbhook resume``) after the clients were asked again: a torrent linked onto
an open step's file since keeps it, and a listing that cannot say holds nothing in place yet
ends the run (left open, it refused every ``apply`` for as long as the listing could not say).

The purge (``purge_held``, also the executor's after a run) asks the clients again first
(``screen_held``): an expired orphan whose original path a torrent uses again (re-added in
the grace period, or a cross-seed match injected onto it), that is a leftover view the
journal still tracks (quarantined by an older qbhook), that may be the data of a torrent
missing its files (held before that torrent went missing), or that a library's symlink
reaches (made in the grace period: by the held file's identity, or by its original place,
where that symlink now dangles; outside the seeding roots, or below one where no torrent lists
it as its file, ``library_of``'s one rule), is kept in holding and reported,
and a listing that cannot be trusted refuses the purge of every orphan (by the same guards), as
does a filesystem the catalog knows in a pool that is not mounted (``_purge_library``: a
library's symlinks on it are unseen).

Each listing and each quarantine records its totals (reclaimable bytes it would free, bytes
still used by a library, per pool) in the catalog's ``state`` under ``last_orphans``, so
``status`` and the status page show the last run's figures with their age (``last_run``)
instead of "unknown". A refused run records nothing: its figures are the ones not to trust.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat as stat_mod
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

from qbhook.catalog import findwalk, library_links, state
from qbhook.catalog.library_links import NO_LINKS, LibraryLinks
from qbhook.clients.model import PART_SUFFIX, TorrentFile, TorrentInfo, is_part_file
from qbhook.clients.port import ClientPort
from qbhook.dirfd import (
    LOOK_MAX_OPEN,
    FolderReader,
    FolderRefused,
    NotAFolder,
    folder_id,
    open_below,
    open_root,
)
from qbhook.errors import (
    HoldingGone,
    LastCopyKept,
    LibraryLinksUnseen,
    OrphansRefused,
    PathMapError,
    QbhookError,
    QbtError,
    UnsafeOperation,
)
from qbhook.paths import RELINK_PREFIX, is_within, within_any

if TYPE_CHECKING:
    from qbhook.move.fsops import HeldLink, HoldClock

REFERENCED, PROTECTED, YOUNG, RECLAIMABLE, LIBRARY = "referenced", "protected", "young", "reclaimable", "library"
# An orphan no torrent of any client has its save or download path above (``seeding_folders``):
# reported, never quarantined (a library below a root set too high).
NOT_SEEDING = "not_seeding"
LEFTOVER = "leftover"  # a leftover view the journal still tracks (``leftovers``): never an orphan
UNFINISHED = "unfinished"  # a file an unfinished run's plan makes or verifies (``unfinished_views``)
QUARANTINE_TRIGGER = "orphans"  # the journal's trigger of a quarantine run (``finish_quarantine``)

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class Entry:
    """One regular file met below a seeding root."""

    path: str
    pool: str
    root: str
    dev: int
    ino: int
    size: int
    nlink: int
    mtime_ns: int
    ctime_ns: int


@dataclass(frozen=True)
class ClientListing:
    """One client's complete torrents, for the per-client guard (``check_guards``)."""

    name: str
    path_map: str  # for the refusal: the mapping that put its files where the walk did not look
    torrents: tuple[tuple[str, tuple[str, ...]], ...]  # (host save path, its files) per complete torrent


@dataclass(frozen=True)
class MissingData:
    """A torrent missing its files, with the sizes of its files: a file of one of those sizes
    anywhere below the seeding roots may be its data, renamed or moved away from where its client
    looks (``may_be_missing_data``), the very copy ``qbhook repair`` would rebuild it from."""

    torrent: str  # its name as its client lists it (its hash when it has none)
    why: str  # what says its files are missing: its client's state, or the files absent on disk
    sizes: frozenset[int]

    def reason(self) -> str:
        return f"may be the data of {self.torrent} ({self.why}): repair or remove that torrent first"


@dataclass(frozen=True)
class References:
    """What the clients say is in use, in host paths."""

    # Files torrents seed from: each of a complete torrent, each wanted one of a torrent at 100 % of
    # what it wants that skips others (and where a link among them points, its target gone).
    files: frozenset[str]
    protected: tuple[str, ...]  # folders/files never to call orphaned
    torrents: int  # how many torrents were listed, all clients
    moving: tuple[str, ...] = ()  # torrents qBittorrent is relocating right now
    # Leftover views the journal still tracks: no torrent uses them, but they are the leftover
    # pass's to remove (proven redundant) or a person's to look at (maybe a last copy), never
    # the quarantine's. Filled by the caller that has the journal (``find_orphans``).
    leftovers: frozenset[str] = frozenset()
    # Each path an unfinished run's plan makes or verifies -> that run's id, and the ids of every
    # unfinished run (``unfinished_views``): its views are unreferenced until it relocates onto
    # them. Filled by the caller that has the journal (``find_orphans``).
    unfinished: Mapping[str, int] = field(default_factory=dict)
    unfinished_runs: tuple[int, ...] = ()
    clients: tuple[ClientListing, ...] = ()
    # (st_dev, st_ino) of every file of ``files`` that exists, its path followed through symlinks:
    # what the torrents use is an inode, not a spelling of its path (``_identities``).
    inodes: frozenset[tuple[int, int]] = frozenset()
    # Torrents missing their files (``MissingData``), and the names of those whose files' sizes
    # the listing does not give: nothing to match a file against, so ``check_listing`` refuses.
    missing: tuple[MissingData, ...] = ()
    unsized: tuple[str, ...] = ()
    # The symlinks libraries keep into the seeding roots (``library_links.collect``): what they
    # reach is still used by a library (``library_link``). Filled by the caller that has the
    # config (``find_orphans``; the purge's ``screen_held`` is given them).
    library: LibraryLinks = NO_LINKS
    # What a folder is by its path, (st_dev, st_ino) (``dirfd.FolderReader.identity``: verified
    # descriptors, one fstat per distinct folder): a folder target of ``library`` is matched by it
    # too, so a symlink written through a bind mount of the seeding data (``realpath`` does not see
    # through one) reaches the files the walk spells by the seeding path (``library_link``). None:
    # by path only. Filled next to ``library`` (``_folders_of``), asked only when it has a folder target.
    folder_identity: library_links.Identity | None = None
    # What the files of every torrent not complete (downloading, checking, partial, skipping a
    # file, missing its files) reach on disk, under its save path and its download path: the
    # (st_dev, st_ino) of each that exists, followed through symlinks, and, for one that does not,
    # the place its links resolve to (``_identities``). Its content folder alone is not what it
    # uses: cross-seed's symlink mode makes a real folder of per-file symlinks, whose targets
    # (the only copy once the original torrent is removed) lie elsewhere. Also the places where
    # qBittorrent keeps every torrent's skipped files (``_unwanted``). PROTECTED (``in_use``).
    partial_inodes: frozenset[tuple[int, int]] = frozenset()
    partial_places: frozenset[str] = frozenset()
    # Each inode of ``inodes`` and ``partial_inodes`` -> the listed paths (or the host places a
    # dangling link names) that reach it: which name of a hard-linked file a torrent uses
    # (``name_in_use``), not only that it uses the file.
    names: Mapping[tuple[int, int], tuple[str, ...]] = field(default_factory=dict)
    # The save and download paths of every torrent of every client, whatever its state, as listed
    # and resolved: a file at or below one is in a seeding folder (``seeding_folders``), any other
    # is ``not_seeding``. None: not known, every folder is one.
    anchors: frozenset[str] | None = None
    # (st_dev, st_ino) of each of ``protected`` that can be stat-ed, through its symlinks as the
    # kernel follows them: a file that is one, or lies in a folder that is one, is protected by
    # identity too (``in_use``), however its path is spelled. By spelling alone (as listed, and as
    # ``_real`` resolves it), a save path through a folder deeper than PATH_MAX lost its real place:
    # realpath's lstat fails there (ENAMETOOLONG) and it takes the link for a folder, so a magnet's
    # data was quarantined and purged (R89). One that cannot be stat-ed protects by spelling only.
    protected_ids: frozenset[tuple[int, int]] = frozenset()
    # Each place of ``protected`` kept whole, as listed -> who keeps it ("torrent NAME (no metadata
    # yet)", "client NAME's temp path"): one that holds a whole seeding root is named for a person
    # (``kept_whole_roots``), not left to read as "0 reclaimable".
    keepers: Mapping[str, str] = field(default_factory=dict)
    # (name, places) of each torrent that may still write where it keeps its data (every one not
    # complete, one skipping files at 100 % too): its files under its save and download paths, as
    # listed, skipped ones and their ``.unwanted`` places too, and the folders it keeps whole
    # (``_in_use_folders``). Which torrent a protected path waits for (``writer_of``): the
    # strings ``partial_inodes`` was made from, a tuple per torrent, looked through only for the
    # few views a leftover pass keeps, never per walked file.
    writers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Each save or download path -> the names of the files torrents list below it (a complete
    # torrent's below its save path, any other's below both): a symlink at one of them is a
    # torrent's (cross-seed's symlink mode), any other below a seeding root, a folder one a torrent
    # reaches its files through too, is a library's (``library_of``). Spelled into paths only when a
    # symlink is met (``_spelled``).
    listed: Mapping[str, AbstractSet[str]] = field(default_factory=dict)

    @cached_property
    def missing_by_size(self) -> dict[int, MissingData]:
        """``missing`` by the sizes of their files (the first torrent listed of each size): one
        lookup per file, not one per torrent missing its files."""
        out: dict[int, MissingData] = {}
        for m in self.missing:
            for size in m.sizes:
                out.setdefault(size, m)
        return out


@dataclass(frozen=True)
class Walk:
    entries: tuple[Entry, ...]
    skipped: tuple[str, ...] = ()  # symlinks and mounts met (never followed)
    # Drop names met (``fsops._drop_name``): a link a killed delete or put-back left hidden (R19),
    # for a person to look at, never reclaimable (maybe the only name of a file a torrent owns).
    drops: tuple[str, ...] = ()
    # Each folder walked (and each above a root) -> its (st_dev, st_ino), from its verified
    # descriptor: what ``in_use`` matches ``References.protected_ids`` against (``above``).
    folders: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def above(self, path: str) -> Iterable[tuple[int, int]]:
        """The identities of the walked folders holding ``path``, deepest first (no I/O)."""
        return (self.folders[d] for d in _upward(posixpath.dirname(path)) if d in self.folders)


# --------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class Orphan:
    path: str
    pool: str
    root: str
    size: int
    ino: int
    dev: int
    nlink: int
    mtime_ns: int
    kind: str  # reclaimable | library | not_seeding
    frees: int  # bytes freed if it goes (once per inode)
    # The library symlink that keeps it (``library_link``), also when a hard link keeps it too; ""
    # when none does (a hard link alone keeps it, or it is no library's): a person must find it to
    # reclaim what it keeps (``Item.link``).
    link: str = ""


@dataclass(frozen=True)
class Item:
    path: str
    pool: str
    kind: str  # reclaimable | library | not_seeding
    folder: bool
    files: int
    bytes: int
    frees: int
    # A library symlink that keeps one of its files (the first by path), "" when none does: named in
    # the listing, since one no torrent lists (cross-seed's link left by a removed torrent) keeps
    # its target for as long as it is there.
    link: str = ""


@dataclass(frozen=True)
class Protected:
    """A file no torrent uses that is still no orphan: it may be a torrent's missing data (``reason``)."""

    path: str
    pool: str
    bytes: int
    reason: str  # ``MissingData.reason``


@dataclass(frozen=True)
class ClientSeen:
    """How many files of one client's complete torrents below a seeding root the walk met."""

    name: str
    path_map: str
    expected: int
    met: int


@dataclass
class PoolTotals:
    seeding_bytes: int = 0
    orphan_bytes: int = 0
    reclaimable_bytes: int = 0
    library_bytes: int = 0


@dataclass
class Report:
    orphans: list[Orphan]
    items: list[Item]
    pools: dict[str, PoolTotals]
    counts: dict[str, int]  # entries per class (referenced, protected, young, ...)
    skipped: list[str] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)  # ``Walk.drops``: shown as a warning, never reclaimable
    torrents: int = 0
    moving: tuple[str, ...] = ()
    clients: list[ClientSeen] = field(default_factory=list)
    protected: list[Protected] = field(default_factory=list)  # unused files kept as a missing torrent's data
    unsized: tuple[str, ...] = ()  # torrents missing their files, without sizes (``References.unsized``)
    # (symlink, seeding root): a library symlink onto a folder holding a whole seeding root, so
    # nothing below it is reclaimable (``LibraryLinks.whole_roots``); shown as a warning.
    whole_roots: list[tuple[str, str]] = field(default_factory=list)
    # (who, place, seeding root): a place a torrent not complete (or a temp path) keeps whole that
    # holds a whole seeding root, so nothing below it is an orphan (``kept_whole_roots``); a warning.
    kept_whole: list[tuple[str, str, str]] = field(default_factory=list)
    unfinished_runs: tuple[int, ...] = ()  # runs that did not finish (``References.unfinished_runs``)
    # The highest folders below a seeding root that no torrent's save or download path lies at or
    # below (``SeedingFolders.outside``; a file where every folder on its way holds one): their
    # orphans are items of kind NOT_SEEDING, reported with a hint, never quarantined.
    not_seeding: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "items": [asdict(i) for i in self.items],
            "protected": [asdict(p) for p in self.protected],
            "reclaimable": {
                "items": sum(i.kind == RECLAIMABLE for i in self.items),
                "bytes": sum(i.bytes for i in self.items if i.kind == RECLAIMABLE),
                "frees": sum(i.frees for i in self.items if i.kind == RECLAIMABLE),
            },
            "library": {
                "items": sum(i.kind == LIBRARY for i in self.items),
                "bytes": sum(i.bytes for i in self.items if i.kind == LIBRARY),
            },
            "not_seeding": {
                "items": sum(i.kind == NOT_SEEDING for i in self.items),
                "bytes": sum(i.bytes for i in self.items if i.kind == NOT_SEEDING),
                "folders": list(self.not_seeding),
            },
            "pools": {k: asdict(v) for k, v in self.pools.items()},
            "counts": dict(self.counts),
            "skipped": list(self.skipped),
            "drop_names": list(self.drops),
            "torrents": self.torrents,
            "whole_roots": [{"symlink": link, "root": root} for link, root in self.whole_roots],
            "kept_whole_roots": [{"by": by, "place": place, "root": root} for by, place, root in self.kept_whole],
            "unfinished_runs": list(self.unfinished_runs),
        }


def in_use(
    path: str,
    refs: References,
    key: tuple[int, int] | None = None,
    folders: Iterable[tuple[int, int]] | None = None,
) -> str | None:
    """REFERENCED when ``path``, or the file ``key`` (its (st_dev, st_ino)) names, is a file of a
    complete torrent, PROTECTED when it is a part file, lies where an incomplete torrent keeps
    its data (by path, or by identity: ``_protected_by_identity``, ``folders`` the identities of the
    folders holding ``path`` when the caller has them, the walk's), or is what a file of an
    incomplete torrent reaches (by identity, or by the place its
    symlink resolves to while it is gone), None when no torrent uses it.

    So every listed file of every torrent, whatever its state, keeps what it resolves to.
    The one rule of "a torrent uses this path": the orphan walk (``classify``), the cleanup of
    leftover views and the purge of quarantined orphans (``screen_held``) all ask it. By path
    alone it called a file a torrent reaches through a symlink unused: cross-seed's only copy;
    by content folder alone, the target of an incomplete cross-seed torrent's per-file symlink."""
    if path in refs.files or (key is not None and key in refs.inodes):
        return REFERENCED
    if path in refs.partial_places or (key is not None and key in refs.partial_inodes):
        return PROTECTED
    if is_part_file(path) or within_any(refs.protected)(path) or _protected_by_identity(path, refs, key, folders):
        return PROTECTED
    return None


def _protected_by_identity(
    path: str, refs: References, key: tuple[int, int] | None, folders: Iterable[tuple[int, int]] | None
) -> bool:
    """Whether the file ``key`` at ``path`` is, or a folder holding it is, a protected place by
    identity (``References.protected_ids``). ``folders``: those folders' identities (the walk's,
    fstat-ed through its verified descriptors: ``Walk.above``); None: each stat-ed by its path, up
    to ``/`` (``_folder_ids``: the purge's held files, a quarantine's open steps, leftover views)."""
    ids = refs.protected_ids
    if not ids:
        return False
    if key is not None and key in ids:
        return True
    return any(f in ids for f in (_folder_ids(path) if folders is None else folders))


def _folder_ids(path: str) -> Iterable[tuple[int, int]]:
    """The (st_dev, st_ino) of each folder holding ``path`` that can be stat-ed, deepest first."""
    for d in _upward(posixpath.dirname(path)):
        try:
            st = os.stat(d)
        except (OSError, ValueError):
            continue  # gone since (a quarantine pruned it), or too long to spell: the ones above still say
        yield st.st_dev, st.st_ino


def _stat_ids(paths: Iterable[str]) -> frozenset[tuple[int, int]]:
    """(st_dev, st_ino) of each of ``paths`` that can be stat-ed, followed through its symlinks."""
    out = set()
    for p in paths:
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            continue  # a loop, a name too long, not there: protected by its spelling alone
        out.add((st.st_dev, st.st_ino))
    return frozenset(out)


def name_in_use(path: str, refs: References, key: tuple[int, int] | None) -> str | None:
    """``in_use`` of ``path`` as one name of the file ``key`` whose other names torrents may use:
    a leftover view linked from its keep (``leftovers``). Only a torrent that uses this name
    counts: one listing ``path`` itself or keeping its data there, or a listed name of ``key`` that
    lives in the view's folder (``_names_the_view``). One seeding the file by another name (the
    donor a demote linked the view from, usually another torrent's file) keeps that name, which
    removing this one leaves as it is: by identity alone the view read as in use for good, and its
    tracking ended with it still on disk."""
    if key is not None and _names_the_view(path, refs.names.get(key, ())):
        return in_use(path, refs, key)
    return in_use(path, refs)


def writer_of(path: str, refs: References, key: tuple[int, int] | None = None) -> str | None:
    """The name of a torrent that may still write ``path`` (one ``in_use`` calls PROTECTED): the
    first listed that names it, or a name of the file ``key``, as one of its files (a skipped one
    too), or keeps its data in a folder holding it (``References.writers``). None when no listed
    place says which (a match by identity alone, a part file, the temp path): the caller says "a
    torrent not complete". One pass over the torrents not complete, for a view a leftover pass keeps."""
    spelled = {path, *(refs.names.get(key, ()) if key is not None else ())}
    ups = {u for p in spelled for u in _upward(p)}
    return next((name for name, places in refs.writers if any(p in ups for p in places)), None)


def _names_the_view(path: str, listed: Iterable[str]) -> bool:
    """Whether one of ``listed`` (names of the view's inode) may be the view's own entry: it lives in
    the view's folder, told by the folder's identity (``dirfd.folder_id``), its symlinks resolved
    first (cross-seed's symlink onto the view, a save path through a symlinked folder). Not by the
    real path as a string: ``realpath`` keeps a bind mount's path (an alias of the seeding folder),
    so a torrent seeding the view through one read as not using it, and the view's removal took its
    file. Nor by the base name: a dataset that folds case or Unicode form (ZFS casesensitivity,
    normalization) resolves another spelling to the same entry, so a listed name in that folder is
    taken as the view's whatever its spelling (the safe side: a view kept, never a file taken). A
    folder that cannot be stat-ed, the view's or a listed name's, says nothing: by identity, used."""
    here = _folder_of(path)
    if here is None:
        return True
    for p in listed:
        there = _folder_of(p)
        if there is None or there == here:
            return True
    return False


def _folder_of(path: str) -> tuple[int, int] | None:
    """The ``folder_id`` of the folder ``path`` lives in once its symlinks are resolved (its own
    last component too: a symlink's entry is not the file it reaches), None if it cannot be stat-ed."""
    try:
        return folder_id(os.stat(os.path.dirname(_real(path))))
    except (OSError, ValueError):
        return None


def may_be_missing_data(size: int | None, refs: References) -> MissingData | None:
    """The torrent missing its files (``References.missing``) a file of ``size`` bytes may be the
    data of, or None.

    The one rule of "maybe a missing torrent's data": the orphan walk (``decide``) protects such
    a file and the purge of quarantined orphans (``screen_held``) keeps it in holding. A torrent in
    ``missingFiles`` whose folder a person renamed no longer names its data, and one among many
    does not trip the per-client guard: its data looked reclaimable, and the purge deleted the
    only copy ``qbhook repair`` would rebuild it from. Names and layout may differ (a renamed
    folder), so only the size is compared; an empty file holds no data to lose."""
    if not size:
        return None
    return refs.missing_by_size.get(size)


def library_of(cfg, refs: References | None = None) -> LibraryLinks:
    """``library_links.collect``, its walk not finishing an ``OrphansRefused`` (the walk, the purge
    and the finish of a quarantine refuse, one line): a library's symlink not seen makes its data
    look reclaimable.

    With the clients' listing (``refs``): also each symlink below a seeding root that is not a file
    a torrent lists (``_libraries``), followed, from a walk of the seeding roots for symlinks
    (``_root_symlinks``), the walk, the purge and the finish of a quarantine alike. ``collect``
    never enters a seeding root, so a library below a root set too high (TRaSH's layout) linked its
    data unseen: its target was quarantined and purged (R89); the purge, given no walk, still purged
    what such a symlink made in the grace period reached (R92); a symlink in any folder a torrent is
    saved in was taken for cross-seed's (R112). The orphans walk's own symlinks are not this walk's:
    it passes over a folder renamed while it lists (an *arr's import), which hid the library
    symlinks below the new name and quarantined their targets (R116); this walk sees such a vanish
    and walks again (``below_seeding_root``). The one rule of which symlinks below a seeding root
    are a library's."""
    try:
        found = library_links.collect(cfg)
        if refs is None or refs.anchors is None:
            return found
        theirs = _libraries(_root_symlinks(cfg), refs)
        return found.merged(library_links.followed(theirs, library_links.host_maps(cfg)))
    except LibraryLinksUnseen as e:
        raise OrphansRefused(
            f"refusing: {e.message}",
            hint=f"a library's symlink not seen would make its data look reclaimable; {e.hint}",
        ) from None


def _libraries(links: Iterable[str], refs: References) -> list[str]:
    """Of ``links`` (symlinks below a seeding root, as the walk spells them), the libraries': each
    that is not exactly a file a torrent lists (cross-seed's symlink mode: its target is that
    torrent's by identity, ``references``), by path as ``references`` normalizes them, as listed and
    through each base's real path (``_spelled``). Not by the folder it lies in: cross-seed saves
    into the library, a torrent is saved in the root itself, and a symlink there that no torrent
    lists is still a library's. Nor is a folder symlink a torrent reaches its files through (its
    content folder, its save path, a folder above a listed file) the torrent's: that torrent uses
    only the files it lists there, which stay its own (referenced by identity before any library
    is asked), while the library (``media/movies/Gone -> torrents/movies/Gone``, cross-seed
    injecting a match saved through it) uses the folder's other files too; taken for the torrent's,
    its subtitle was quarantined, then purged (R116). So it is followed as a library's: the
    conservative side. One lookup per symlink; the listed files spelled once, only when a symlink
    was met. A listed "file" that reaches a folder is a library's too: the torrent holds the
    folder's identity, never its files (R118: a torrent listing the library's folder symlink
    ``Gone`` as its one file left ``Gone/x.mkv`` reclaimable, then purged)."""
    links = list(links)
    if not links:
        return []
    listed = _spelled(refs.listed)
    return [link for link in links if link not in listed or _reaches_folder(link)]


def _reaches_folder(link: str) -> bool:
    """Whether the symlink ``link`` reaches a folder (read only: one ``stat`` through it)."""
    try:
        return stat_mod.S_ISDIR(os.stat(link).st_mode)
    except OSError:
        return False  # dangling or unreadable: what it names is no folder of data now


def _root_symlinks(cfg) -> list[str]:
    """Each symlink below a seeding root, each once (a root nested in another): the orphans walk's,
    the purge's and a died quarantine's finish's one look (``library_of``), one find per root that
    crosses mounts (a library on a dataset nested in the root, R112) and walks again when an entry
    vanishes meanwhile (``library_links.below_seeding_root``). Nothing pruned but the ignored names:
    ``_libraries`` tells a torrent's apart by set lookups. One ``-path`` prune per save path made
    find test every folder against every one (folders x save paths: 18,000 library folders and
    3,000 save paths were 29 s a purge, R112)."""
    ignore = findwalk.ignore_set(cfg.scan)
    out: dict[str, None] = {}
    for pool in cfg.pools:
        for r in pool.seeding_roots:
            root = os.path.normpath(str(r))
            if os.path.isdir(root):  # a missing root holds nothing
                out.update(dict.fromkeys(library_links.below_seeding_root(pool.name, root, ignore)))
    return list(out)


def library_link(path: str, refs: References, key: tuple[int, int] | None = None) -> str | None:
    """The library symlink that reaches ``path`` (or the file ``key``, its (st_dev, st_ino), names),
    or None: a symlink in a pool outside the seeding roots onto that file, onto a folder holding
    it, or naming its place while it is gone (``library_links``).

    The one rule of "a library uses this through a symlink": the orphan walk (``decide``) calls
    such an orphan still used by a library, whatever its link count, and the purge of quarantined
    orphans (``screen_held``) keeps it in holding. By link count alone a library's symlink was
    unseen: its target was reclaimable, quarantined and purged, the symlink left dangling.

    A folder target is also matched by identity (``References.folder_identity``): a folder above
    ``path`` that is it, however spelled. By real path alone, a symlink written through a bind
    mount of the seeding data (an export, a container's alias folder) named a path no walk
    spells: the orphan below it was reclaimable, quarantined, purged, the symlink left dangling.
    Asked only when some symlink has a folder target (``reaching``): the common case pays nothing."""
    return refs.library.reaching(path, key, refs.folder_identity)


def _folders_of(cfg) -> FolderReader:
    """A reader of folder identities below ``cfg``'s pools (``References.folder_identity``), as
    the executor's look reads them: each folder reached from its pool root by the verified walk,
    opened only when asked (no folder target: never). Its caller closes it (a context manager)."""
    return FolderReader((str(p.path) for p in cfg.pools), max_open=LOOK_MAX_OPEN)


def classify(
    e: Entry, refs: References, now: float, settle_seconds: float, folders: Iterable[tuple[int, int]] = ()
) -> str | None:
    """REFERENCED / PROTECTED / LEFTOVER / UNFINISHED / YOUNG for an entry no torrent uses nor is its own to
    keep, None for one that is an orphan unless it may be a missing torrent's data (``decide``
    asks ``may_be_missing_data`` then, for the reason it reports). ``folders``: the identities of
    the folders holding it (``Walk.above``)."""
    used = in_use(e.path, refs, (e.dev, e.ino), folders)
    if used is not None:
        return used
    if e.path in refs.leftovers:
        return LEFTOVER
    if e.path in refs.unfinished:
        return UNFINISHED
    # ctime too: a file linked or renamed into place keeps its old mtime
    if now - max(e.mtime_ns, e.ctime_ns) / 1e9 < settle_seconds:
        return YOUNG
    return None


def decide(
    walk: Walk,
    refs: References,
    *,
    now: float,
    settle_seconds: float,
    pool_roots: dict[str, tuple[str, ...]] | None = None,
) -> Report:
    """The orphans of ``walk`` given ``refs`` (pure: no I/O but ``refs.folder_identity``'s, the
    folders above an orphan when a library symlink has a folder target)."""
    # Long on purpose: classify, credit each inode's bytes once, then group into items: one pass each, in order.
    seeding = seeding_folders(refs.anchors)
    # Each inode's links the walk met in a seeding folder. A link in a not-seeding one (a library
    # below a root set too high) counts like one outside the roots: the library keeps the data.
    seen_links: dict[tuple[int, int], int] = defaultdict(int)
    for e in walk.entries:
        if e.nlink == 1 or seeding.outside(e) is None:
            seen_links[(e.dev, e.ino)] += 1
    status: dict[str, str] = {}
    counts: dict[str, int] = defaultdict(int)
    orphan_entries: list[Entry] = []
    protected: list[Protected] = []
    not_seeding: set[str] = set()
    symlinked: dict[str, str] = {}  # each orphan a library symlink keeps -> that symlink
    for e in walk.entries:
        c = classify(e, refs, now, settle_seconds, walk.above(e.path))
        if c is None and (m := may_be_missing_data(e.size, refs)) is not None:
            c = PROTECTED
            protected.append(Protected(e.path, e.pool, e.size, m.reason()))
        elif c is None:
            key = (e.dev, e.ino)
            if (top := seeding.outside(e)) is not None:
                c = NOT_SEEDING  # no torrent is saved above it: never quarantined
                not_seeding.add(top)
            else:
                # Asked even when a hard link already keeps it: a library symlink onto it too is
                # named in the listing (R118: the hard-link test decided first, its link left "").
                link = library_link(e.path, refs, key)
                if link is not None:
                    symlinked[e.path] = link
                c = LIBRARY if e.nlink > seen_links[key] or link is not None else RECLAIMABLE
            orphan_entries.append(e)
        status[e.path] = c
        counts[c] += 1

    # An inode frees bytes only when every one of its links goes.
    orphan_links: dict[tuple[int, int], int] = defaultdict(int)
    for e in orphan_entries:
        orphan_links[(e.dev, e.ino)] += 1
    orphans: list[Orphan] = []
    credited: set[tuple[int, int]] = set()
    for e in sorted(orphan_entries, key=lambda x: x.path):
        key = (e.dev, e.ino)
        kind = status[e.path]
        frees = 0
        if kind == RECLAIMABLE and key not in credited and orphan_links[key] == seen_links[key] == e.nlink:
            frees = e.size
            credited.add(key)
        link = symlinked.get(e.path, "")
        orphans.append(Orphan(e.path, e.pool, e.root, e.size, e.ino, e.dev, e.nlink, e.mtime_ns, kind, frees, link))

    pools: dict[str, PoolTotals] = {}
    counted: set[tuple[str, tuple[int, int]]] = set()
    for e in walk.entries:
        t = pools.setdefault(e.pool, PoolTotals())
        # Not seeding data (a library below a root set too high): out of the share guard's base.
        if status[e.path] == NOT_SEEDING or (e.pool, (e.dev, e.ino)) in counted:
            continue
        counted.add((e.pool, (e.dev, e.ino)))
        t.seeding_bytes += e.size
    counted.clear()
    for o in orphans:
        # Outside the seeding data (a library, most likely): not its orphans, and not where its
        # inode is counted either (its torrent-side link, met later, is).
        if o.kind == NOT_SEEDING or (o.pool, (o.dev, o.ino)) in counted:
            continue
        counted.add((o.pool, (o.dev, o.ino)))
        t = pools[o.pool]
        t.orphan_bytes += o.size
        if o.kind == RECLAIMABLE:
            t.reclaimable_bytes += o.frees
        else:
            t.library_bytes += o.size
    for name in pool_roots or {}:
        pools.setdefault(name, PoolTotals())
    roots = {e.root for e in walk.entries}.union(*(pool_roots or {}).values())
    return Report(
        orphans=orphans,
        items=_items(walk, status, orphans),
        pools=pools,
        counts=dict(counts),
        skipped=list(walk.skipped),
        drops=list(walk.drops),
        torrents=refs.torrents,
        moving=refs.moving,
        clients=_clients_seen(walk, status, refs, tuple(roots)),
        protected=sorted(protected + _in_unfinished(walk, status, refs), key=lambda p: p.path),
        unsized=refs.unsized,
        unfinished_runs=refs.unfinished_runs,
        not_seeding=sorted(not_seeding),
    )


def _in_unfinished(walk: Walk, status: dict[str, str], refs: References) -> list[Protected]:
    """The files ``decide`` found UNFINISHED, as protected items for a person, grouped the way
    orphans are (``_items``: the highest folder holding only that run's files), each naming its run."""
    if not status or UNFINISHED not in status.values():
        return []
    marks = dict(status)
    held = []
    for e in walk.entries:
        if status[e.path] == UNFINISHED:
            run = refs.unfinished[e.path]
            marks[e.path] = f"{UNFINISHED} {run}"  # one run's files group together, not two runs'
            held.append(Orphan(e.path, e.pool, e.root, e.size, e.ino, e.dev, e.nlink, e.mtime_ns, marks[e.path], 0))
    return [
        Protected(
            i.path + ("/" if i.folder else ""),
            i.pool,
            i.bytes,
            f"in use by unfinished run {i.kind.split()[1]} ({i.files} file(s)): `qbhook resume` finishes it",
        )
        for i in _items(walk, marks, held)
    ]


def unfinished_views(runs: Iterable) -> dict[str, int]:
    """Each path the plan of one of ``runs`` (``Journal.unfinished_runs``) makes (a copy's, a
    link's or an empty file's destination) or verifies (a view's files) -> that run's id. Read
    from the plan's stored JSON as it is: a step of a shape this does not know names nothing."""
    out: dict[str, int] = {}
    for r in runs:
        groups = r.plan.get("groups") if isinstance(r.plan, dict) else None
        for g in groups if isinstance(groups, list) else ():
            steps = g.get("steps") if isinstance(g, dict) else None
            for step in steps if isinstance(steps, list) else ():
                args = step.get("args") if isinstance(step, dict) else None
                if not isinstance(args, dict):
                    continue
                named = [args.get("dst")] + [f.get("path") for f in args.get("files") or () if isinstance(f, dict)]
                for path in named:
                    if isinstance(path, str) and path.startswith("/"):
                        out.setdefault(os.path.normpath(path), r.id)
    return out


@dataclass(frozen=True)
class SeedingFolders:
    """Where torrents are saved (``References.anchors``): a file at or below one of ``anchors`` is
    in a seeding folder. ``above``: every folder holding an anchor below it (the folders of the
    way down to one), so the highest folder of an orphan that holds none can be named."""

    anchors: frozenset[str] | None  # None: not known, every place is a seeding folder
    above: frozenset[str] = frozenset()

    def outside(self, e: Entry) -> str | None:
        """None when ``e`` lies at or below an anchor; else the highest folder below ``e``'s root
        holding ``e`` that no anchor lies at or below (``e``'s own path if every folder on its way
        holds one): what a person is told is not seeding."""
        return self.outside_at(e.path, e.root)

    def outside_at(self, path: str, root: str) -> str | None:
        """``outside`` of whatever lies at ``path`` below the seeding root ``root``."""
        if self.anchors is None:
            return None
        for up in _upward(path):  # a few set lookups per orphan, whatever the number of torrents
            if up in self.anchors:
                return None
        r = root.rstrip("/")
        at = r
        for name in path[len(r) + 1 :].split("/"):
            at = f"{at}/{name}"
            if at not in self.above:
                return at
        return path


def _upward(path: str):
    """``path`` and each folder above it, up to ``/``."""
    while True:
        yield path
        up = posixpath.dirname(path)
        if up == path:
            return
        path = up


def seeding_folders(anchors: Iterable[str] | None) -> SeedingFolders:
    """The seeding folders of ``anchors`` (every torrent's save and download path, as listed and
    resolved: ``References.anchors``). A file counts as seeding data only at or below one of them,
    by the exact path (normalized, case-sensitive): a seeding root set one level too high holds
    the library beside the torrents (TRaSH's /data/media with movies/ and torrents/), and every
    library-only file there looked reclaimable. Not by a shared top-level folder: one torrent
    cross-seed saved inside the library (no linkDir) made the whole library seeding; nor
    case-folded: a library ``Movies/`` beside a category ``movies/`` is another folder on a
    case-sensitive filesystem (on a case-insensitive one, a client spelling a folder in another
    case makes it not seeding: reported, never quarantined). A torrent saved in the root itself
    makes the whole root seeding. Conservative on purpose: a category folder whose torrents were
    all removed is no seeding folder either, its files reported, not quarantined."""
    if anchors is None:
        return SeedingFolders(None)
    anchors = frozenset(os.path.normpath(a) for a in anchors)
    above = {up for a in anchors for up in _upward(posixpath.dirname(a))}
    return SeedingFolders(anchors, frozenset(above))


def _clients_seen(walk: Walk, status: dict[str, str], refs: References, roots: tuple[str, ...]) -> list[ClientSeen]:
    """Per client, the files of its complete torrents saved below a seeding root, and how many of
    them the walk met (one lookup each): as an entry, or as a symlink or folder it did not enter."""
    below = within_any(roots)  # one test per torrent, not per file
    skipped = set(walk.skipped)
    out = []
    for c in refs.clients:
        expected = met = 0
        for save, files in c.torrents:
            if below(save):
                expected += len(files)
                met += sum(1 for f in files if f in status or (skipped and _behind(f, skipped)))
        out.append(ClientSeen(c.name, c.path_map, expected, met))
    return out


def _behind(path: str, skipped: set[str]) -> bool:
    """``path`` or a folder holding it is one the walk did not enter (a symlink, a mount)."""
    while path not in ("/", ""):
        if path in skipped:
            return True
        path = posixpath.dirname(path)
    return False


def _items(walk: Walk, status: dict[str, str], orphans: list[Orphan]) -> list[Item]:
    """Orphans grouped: the highest folder below its root holding only orphans of one kind."""
    marks: dict[str, set[str]] = defaultdict(set)
    for e in walk.entries:
        for d in _dirs_below_root(e.path, e.root):
            marks[d].add(status[e.path])
    roots = _deepest_first({e.root for e in walk.entries})  # a few: one lookup per skipped path
    for s in walk.skipped:
        for d in _dirs_below_root(s, _root_of(s, roots)):
            marks[d].add("skipped")
    grouped: dict[str, list[Orphan]] = defaultdict(list)
    for o in orphans:
        top = next((d for d in reversed(list(_dirs_below_root(o.path, o.root))) if marks[d] == {o.kind}), None)
        grouped[top or o.path].append(o)
    items = []
    for path, members in sorted(grouped.items()):
        o = members[0]
        items.append(
            Item(
                path=path,
                pool=o.pool,
                kind=o.kind,
                folder=path != o.path or len(members) > 1,
                files=len(members),
                bytes=sum(m.size for m in members),
                frees=sum(m.frees for m in members),
                link=next((m.link for m in members if m.link), ""),
            )
        )
    return items


def _dirs_below_root(path: str, root: str | None):
    """The folders holding ``path``, deepest first, stopping before ``root``."""
    if root is None:
        return
    root = root.rstrip("/")
    d = posixpath.dirname(path)
    while d != root and is_within(d, root):
        yield d
        d = posixpath.dirname(d)


def _deepest_first(roots) -> list[str]:
    return sorted(map(str, roots), key=len, reverse=True)


def _root_of(path: str, roots: list[str]) -> str | None:
    """The root (of ``roots``, deepest first) ``path`` lies strictly below. It once scanned every
    walked entry for each skipped path: 100,000 files and 20,000 symlinks (cross-seed's link
    mode) were 2x10^9 comparisons."""
    return next((r for r in roots if is_within(posixpath.dirname(path), r)), None)


LOOK = "look for orphans"  # what a refusal refuses: the listing and the quarantine...
PURGE = "purge quarantined orphans"  # ...or the purge of quarantined orphans (``screen_held``)
LEFTOVERS = "remove leftover views"  # ...or the removal of a rolled-back group's views (``leftovers``)


def check_listing(torrents: int, moving: tuple[str, ...], doing: str = LOOK, unsized: tuple[str, ...] = ()) -> None:
    """Refuse when the clients' listing cannot say what is unreferenced (see the module docstring)."""
    if torrents == 0:
        raise OrphansRefused(
            f"refusing to {doing}: the torrent clients list no torrents at all, so every file would look orphaned",
            hint="is the client's session loaded, and the right client configured?",
        )
    if moving:
        # A move leaves the old copy unreferenced until the client deletes it: not an orphan.
        raise OrphansRefused(
            f"refusing to {doing} while {len(moving)} torrent(s) are being moved "
            f"by their client ({', '.join(moving[:3])})",
            hint="try again when the move ended",
        )
    if unsized:
        # Its data, renamed or moved, would look orphaned, and without sizes nothing tells it apart.
        raise OrphansRefused(
            f"refusing to {doing} while {len(unsized)} torrent(s) miss their files and their client "
            f"lists no sizes of them ({', '.join(unsized[:3])})",
            hint="repair or remove that torrent first",
        )


# A client's complete torrents below the seeding roots whose files the walk met fewer than this
# share of: its path_map (or a dataset) is wrong, not its data gone. A few torrents whose data
# a person deleted do not reach it; a map off by a folder meets none.
MIN_MET_SHARE = 0.5


def check_guards(report: Report, max_share: float) -> None:
    """Refuse when the listing cannot be trusted (see the module docstring)."""
    check_listing(report.torrents, report.moving, unsized=report.unsized)
    for c in report.clients:
        if c.expected and c.met < MIN_MET_SHARE * c.expected:
            raise OrphansRefused(
                f"refusing: the walk met {c.met:,} of the {c.expected:,} files client {c.name}'s complete "
                f"torrents have below the seeding roots (its path_map: {c.path_map})",
                hint="check that client's path_map and that its datasets are mounted; "
                "a torrent whose data is gone counts too: remove or recheck it",
            )
    for name, t in sorted(report.pools.items()):
        if t.seeding_bytes and t.orphan_bytes > max_share * t.seeding_bytes:
            raise OrphansRefused(
                f"refusing: {t.orphan_bytes / t.seeding_bytes:.0%} of pool {name}'s seeding data "
                f"({t.orphan_bytes:,} of {t.seeding_bytes:,} bytes) looks unreferenced, more than "
                f"policy.orphans_max_share ({max_share:.0%})",
                hint="check path_map, that every dataset is mounted and every client configured; "
                "raise policy.orphans_max_share only if this is really so",
            )


# --------------------------------------------------------------------------- side effects (thin)


def walk_roots(cfg) -> Walk:
    """Every regular file below every seeding root (lstat only; symlinks and mounts are not entered,
    only listed in ``Walk.skipped``: ``library_of`` walks the roots for a library's symlinks itself,
    mounts crossed, a folder that vanishes meanwhile walked again).

    Each seeding root is opened from its pool root down (``dirfd.open_root``: one swapped for a
    symlink refuses the walk, ``OrphansRefused`` naming it). Each folder is listed through its
    own descriptor, opened below its verified parent
    (``dirfd.open_below``) and checked to be on the root's filesystem: a folder swapped for a
    symlink after its parent was listed is refused there (skipped, named), never listed.
    qbhook's own files are never entries, whatever path leads to them (``own_identities``).
    """
    ignore = set(cfg.scan.ignore_names)
    own = own_identities(cfg)
    entries: list[Entry] = []
    skipped: list[str] = []
    drops: list[str] = []
    folders: dict[str, tuple[int, int]] = {}
    for pool in cfg.pools:
        for root in pool.anchored_seeding_roots:
            try:
                fd = open_root(root.path, root.pool)  # from the pool root down: never through a symlink
            except FolderRefused as e:
                # Not skipped: the walk would then say nothing about a whole root, and whatever a
                # caller decides from it (the share guard) would be decided without it.
                raise OrphansRefused(
                    f"refusing: seeding root {root.path}: {e}", hint="qbhook never follows links below a pool root"
                ) from None
            except OSError:
                continue  # a missing root is `config check`'s to report; there is nothing in it
            # The folders above the root, as the purge stats them (``_folder_ids``): a save path
            # that is a link to one protects the whole root, as its real path does.
            for up in _upward(posixpath.dirname(root.path)):
                if (got := _stat_ids((up,))) and up not in folders:
                    folders[up] = next(iter(got))
            out = (entries, skipped, drops, folders)
            _walk_root(fd, root.path, (pool.name, ignore, own), out)
    return Walk(tuple(entries), tuple(skipped), tuple(drops), folders)


def own_identities(cfg) -> frozenset[tuple[int, int]]:
    """(st_dev, st_ino) of qbhook's own files: the catalog, its -wal, -shm and -journal, and the
    lock folder, each followed through symlinks. The walk never lists one nor enters the folder:
    compared by identity, not path, since the config's refusal of a catalog in a seeding root
    (``config._in_a_pool``) sees only the path as it leads at load, and a catalog quarantined
    leaves its -wal behind (its last transactions lost, a purge deletes it)."""
    from qbhook.move.locks import lock_dir

    if getattr(cfg, "catalog", None) is None:
        return frozenset()
    cat = str(cfg.catalog)
    out = set()
    for p in (cat, cat + "-wal", cat + "-shm", cat + "-journal", str(lock_dir(cfg))):
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            continue
        out.add((st.st_dev, st.st_ino))
    return frozenset(out)


def _walk_root(root_fd: int, root_s: str, how: tuple, out: tuple) -> None:
    """``walk_roots`` below one root: depth first, holding one descriptor per level (a folder's
    subfolders are opened one at a time, after its listing is closed). ``how``: (pool name,
    ignored names, qbhook's own identities); ``out``: (entries, skipped, drops, folders), as
    ``Walk`` has them, each folder's identity read from its verified descriptor."""
    skipped, folders = out[1], out[3]
    st = os.fstat(root_fd)
    dev = st.st_dev
    folders[root_s] = (st.st_dev, st.st_ino)
    stack: list[tuple[int, str, list[str]]] = []  # (open folder, its path, subfolders not entered yet)
    fd, d = root_fd, root_s
    try:
        while True:
            if fd is not None:
                subdirs = _list(fd, d, root_s, dev, how, out)
                stack.append((fd, d, subdirs))
            if not stack:
                return
            pfd, pd, subdirs = stack[-1]
            if not subdirs:
                os.close(pfd)
                stack.pop()
                fd = None
                continue
            name = subdirs.pop()
            d = _join(pd, name)
            try:
                fd = open_below(pfd, name)
            except (NotAFolder, OSError):
                skipped.append(d)  # swapped for a symlink (or gone) since the listing: never entered
                fd = None
                continue
            st = os.fstat(fd)
            if st.st_dev != dev:  # swapped for a mount point since the listing
                os.close(fd)
                skipped.append(d)
                fd = None
            else:
                folders[d] = (st.st_dev, st.st_ino)
    except BaseException:
        if fd is not None and (not stack or stack[-1][0] != fd):
            os.close(fd)
        raise
    finally:
        for open_fd, _d, _subdirs in stack:  # left early (an error): close what is still open
            os.close(open_fd)


def _list(fd: int, d: str, root_s: str, dev: int, how: tuple, out: tuple) -> list[str]:
    """The folder open at ``fd`` (path ``d``): its regular files into ``entries``, what is not
    entered into ``skipped``, drop names into ``drops`` (``out``); returns its subfolders on the
    root's filesystem, by name. ``how``: as ``_walk_root``'s; one of qbhook's own is passed over."""
    pool, ignore, own = how
    entries, skipped, drops = out[:3]
    subdirs: list[str] = []
    try:
        it = os.scandir(fd)
    except OSError:
        skipped.append(d)
        return subdirs
    with it:
        for de in it:
            if de.name in ignore:
                continue
            path = _join(d, de.name)
            try:
                st = de.stat(follow_symlinks=False)  # fstatat on the listed folder's descriptor
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in own:
                continue  # the catalog, its journal files, the lock folder: qbhook's, never an orphan
            if stat_mod.S_ISLNK(st.st_mode):
                skipped.append(path)
            elif stat_mod.S_ISDIR(st.st_mode):
                if st.st_dev != dev:
                    skipped.append(path)  # a nested dataset: not this root's filesystem
                else:
                    subdirs.append(de.name)
            elif stat_mod.S_ISREG(st.st_mode):
                if de.name[0] == "." and de.name.startswith(RELINK_PREFIX):
                    if de.name.startswith(_DROP_PREFIX):
                        drops.append(path)
                    continue  # a relink's temporary link: a spare name of a file, in use or left by a crash
                entries.append(
                    Entry(
                        path,
                        pool,
                        root_s,
                        st.st_dev,
                        st.st_ino,
                        st.st_size,
                        st.st_nlink,
                        st.st_mtime_ns,
                        st.st_ctime_ns,
                    )
                )
    return subdirs


# ``fsops._drop_name``'s names: a delete's or a view removal's, between its rename and its unlink.
_DROP_PREFIX = RELINK_PREFIX + "drop."


def _join(d: str, name: str) -> str:
    return d + "/" + name if d != "/" else "/" + name


def references(clients: Iterable[ClientPort], doing: str = LOOK) -> References:
    """Ask every client for every torrent and its files; any failure refuses (never a partial answer)."""
    protected: dict[str, str] = {}  # each place kept whole -> who keeps it (``References.keepers``)
    moving: list[str] = []
    listings: list[ClientListing] = []
    maybe_missing: list[tuple[TorrentInfo, list[TorrentFile], tuple[str, ...], str]] = []
    found = _Found()
    below = _Below()
    writers: list[tuple[str, tuple[str, ...]]] = []  # ``References.writers``
    n = 0
    for c in clients:
        label = getattr(c, "name", "?")
        complete_ones: list[tuple[str, tuple[str, ...]]] = []
        mine: set[str] = set()  # the files its torrents seed from (``References.files``)
        partial: set[str] = set()  # the files of its torrents not complete, where it keeps them
        listing, temp = _list_client(c, label, doing)
        protected.update(dict.fromkeys(temp, f"client {label}'s temp path"))
        for t, fs in listing:
            n += 1
            if t.state == "moving":
                moving.append(t.name or t.hash)
            save, bases, complete = _places(t, fs, below)
            if complete and save:
                paths = tuple(os.path.normpath(posixpath.join(save, f.name)) for f in fs)
                mine.update(paths)
                complete_ones.append((save, paths))
                maybe_missing.append((t, fs, paths, ""))  # missing its files if one of them is absent
                continue
            mine.update(_seeded(t, fs, save))
            if (why := _why_missing(t, fs, save)) is not None:
                maybe_missing.append((t, fs, (), why))
            folders, places = _writes(t, fs, bases)
            protected.update(dict.fromkeys(folders, _keeper(t)))
            partial.update(places)  # what they reach (a folder of symlinks holds none of its data)
            writers.append((t.name or t.hash, (*places, *folders)))
        listings.append(ClientListing(label, _map_label(c), tuple(complete_ones)))
        found.add(mine, partial, _host_maps(c))
    # A folder in use reached through a symlink: what it points at is in use too.
    seen = set(protected)
    resolved = [r for r in {_real(p) for p in seen} if r not in seen]
    missing, unsized = _missing(maybe_missing, found.absent)
    return References(
        frozenset(found.files | found.targets),
        (*protected, *resolved),
        n,
        tuple(moving),
        clients=tuple(listings),
        inodes=frozenset(found.inodes),
        missing=missing,
        unsized=unsized,
        partial_inodes=frozenset(found.partial_inodes),
        partial_places=frozenset(found.partial_places | _spelled(below.unwanted)),
        names={k: tuple(v) for k, v in found.names.items()},
        # Every save and download path (``unwanted``'s keys: a few), as listed and resolved once.
        anchors=frozenset(below.unwanted.keys() | {_real(b) for b in below.unwanted}),
        protected_ids=_stat_ids(seen),  # ...and by identity, whatever realpath can spell
        keepers=protected,
        writers=tuple(writers),
        listed=below.listed,
    )


def _keeper(t: TorrentInfo) -> str:
    """Who keeps the places ``_in_use_folders`` gives for ``t``, as a warning names it."""
    return f"torrent {t.name or t.hash} ({'not complete' if t.has_metadata else 'no metadata yet'})"


@dataclass
class _Below:
    """Each save or download path (a base) -> what lies below it, every torrent's together: where
    qBittorrent keeps a skipped file (``unwanted``: ``_unwanted``), and the names of the files
    torrents list (``listed``: ``References.listed``)."""

    unwanted: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    listed: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def _places(t: TorrentInfo, fs: list[TorrentFile], below: _Below) -> tuple[str, list[str], bool]:
    """``t``'s save path and its bases (save and download paths, host spelling, normalized), and
    whether it is complete (every file wanted and had); each base with what lies below it for
    ``t`` into ``below``: its skipped files' places, and its files, a complete one's below its save
    path only (where its client has them), any other's below both."""
    save = os.path.normpath(t.save_path) if t.save_path else ""
    bases = [b for b in (save, os.path.normpath(t.download_path) if t.download_path else "") if b]
    complete = t.has_metadata and t.progress >= 1.0 and bool(fs) and all(f.wanted for f in fs)
    skipped = _unwanted(fs)
    for base in bases:
        below.unwanted[base] |= skipped
    for base in [save] if complete and save else bases:
        below.listed[base].update(f.name for f in fs)
    return save, bases, complete


def _seeded(t: TorrentInfo, fs: list[TorrentFile], save: str) -> list[str]:
    """The files ``t``, a torrent not complete, seeds from: each wanted one of a torrent at 100 % of
    what it wants that skips others (R111); none of one missing its files, whose 100 % after a
    restart is the old one (R115), nor of any other."""
    if not (t.has_metadata and t.progress >= 1.0 and fs and save) or t.is_missing_files:
        return []
    return [os.path.normpath(posixpath.join(save, f.name)) for f in fs if f.wanted]


def _why_missing(t: TorrentInfo, fs: list[TorrentFile], save: str) -> str | None:
    """Why ``t``, a torrent not complete, may be missing its files (``_missing``): "" when its
    client says so, ``_absent_wanted``'s why when a wanted file is absent (rechecked to 0 % after its
    folder was renamed), None when neither. Not one its client is still getting: a file not written
    yet is the download, not a loss."""
    if t.is_missing_files:
        return ""
    if t.has_metadata and save and not t.is_fetching and (gone := _absent_wanted(t, save, fs)):
        return gone
    return None


def _writes(t: TorrentInfo, fs: list[TorrentFile], bases: list[str]) -> tuple[list[str], list[str]]:
    """Where ``t``, a torrent not complete (or skipping files), may still write: the folders it
    keeps whole (``_in_use_folders``), and each of its files' places below each of ``bases``, a
    skipped one's ``.unwanted`` place too (``_unwanted``: only a skipped file is kept there)."""
    held_back = _unwanted([f for f in fs if not f.wanted])
    places = [os.path.normpath(posixpath.join(b, rel)) for b in bases for rel in held_back]
    places += [os.path.normpath(posixpath.join(b, f.name)) for b in bases for f in fs]
    return _in_use_folders(t, fs, bases), places


def _in_use_folders(t: TorrentInfo, fs: list[TorrentFile], bases: list[str]) -> list[str]:
    """Where a torrent that is incomplete, skips files or lacks metadata keeps its data, in use
    whole: the top folder of each of its files below each of ``bases`` (its save and download
    paths), and its content path. One without metadata (a bare magnet still fetching it) keeps
    each of ``bases`` whole: its name is its info hash until the metadata comes, so its data's
    place is not known, and its files may be the very ones a quarantine held (R42: a torrent
    re-added from a magnet in the grace period had its held data purged)."""
    if not t.has_metadata:
        out = list(bases)
    else:
        tops = {f.name.split("/", 1)[0] for f in fs} or {t.name}
        out = [os.path.normpath(posixpath.join(base, top)) for base in bases for top in tops if top]
    if t.content_path:
        out.append(os.path.normpath(t.content_path))
    return out


# Where qBittorrent up to 4.2 kept a skipped file ("keep unselected files in .unwanted folder");
# 4.5's TorrentImpl moves one back out when it loads the torrent, so old ones can still be there.
UNWANTED = ".unwanted"


def _unwanted(fs: list[TorrentFile]) -> set[str]:
    """Where qBittorrent keeps each file of ``fs`` once it is skipped, relative to the torrent's
    save (or download) path: ``.unwanted`` beside the file's own place, its name kept (the
    listing still names the file at its place). For a single-file or NoSubfolder torrent that is
    ``<save>/.unwanted/<name>``, in no content folder: a file downloaded, then unticked, was
    reclaimable there. Every torrent's, whatever its state (a ticked one comes back)."""
    out = set()
    for f in fs:
        folder, name = posixpath.split(f.name)
        out.add(posixpath.join(folder, UNWANTED, name))
    return out


def _spelled(below: Mapping[str, Iterable[str]]) -> set[str]:
    """Each relative path of ``below`` under its base, spelled as listed and through the base's
    real path (a save path that is a symlink to a folder the walk meets elsewhere): one
    ``realpath`` per base, not per file."""
    out: set[str] = set()
    for base, rels in below.items():
        for b in {base, _real(base)}:
            out.update(os.path.normpath(posixpath.join(b, rel)) for rel in rels)
    return out


def _list_client(c: ClientPort, label: str, doing: str) -> tuple[list, list[str]]:
    """One client's torrents with their files, and its temp path (``_temp_paths``); a client that
    cannot be listed or mapped refuses ``doing`` (``OrphansRefused``, one line)."""
    try:
        if hasattr(c, "torrents_with_files"):
            listing = c.torrents_with_files()
        else:
            listing = [(t, c.files(t.hash)) for t in c.torrents()]
        return listing, _temp_paths(c)
    except QbtError as e:
        # One line, as every unreachable client: the why is in it, not on a hint line.
        raise OrphansRefused(
            f"refusing to {doing}: client {label} cannot be listed "
            f"(its torrents' data would look orphaned): {e.message}"
        ) from None
    except PathMapError as e:
        raise OrphansRefused(
            f"refusing to {doing}: client {label}: {e.message}",
            hint="fix path_map: an unmapped path would make its data look orphaned",
        ) from None


def _absent_wanted(t: TorrentInfo, save: str, fs: list[TorrentFile]) -> str:
    """Why ``t``, a torrent with metadata that is not complete, is missing its files: a wanted
    file of it is neither in its save path nor in its download path (where qBittorrent keeps an
    incomplete one); "" when every one is there. A torrent its owner force-rechecked after
    renaming its folder is such a one: 0 %, stoppedDL, no longer ``missingFiles`` (rTorrent's
    hash check alike). Stops at the first absent file: one stat per present file, as a complete
    torrent's (``_identities``). A file being written under qBittorrent's "append .!qB" option
    (``name`` + ``PART_SUFFIX``) is there."""
    bases = [save] + ([os.path.normpath(t.download_path)] if t.download_path else [])
    wanted = [f.name for f in fs if f.wanted]
    for name in wanted:
        if not any(_exists(posixpath.join(b, n)) for b in bases for n in (name, name + PART_SUFFIX)):
            return f"{name} (of its {len(wanted)} wanted file(s)) not where its client keeps it"
    return ""


def _exists(path: str) -> bool:
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def _missing(
    listed: list[tuple[TorrentInfo, list[TorrentFile], tuple[str, ...], str]], absent: set[str]
) -> tuple[tuple[MissingData, ...], tuple[str, ...]]:
    """The torrents missing their files, of ``listed`` (each with its files, and their host paths
    when it is complete, or why an incomplete one is: ``_absent_wanted``): its client says so
    (``is_missing_files``, whatever its progress), or a wanted file of one with metadata is
    absent on disk, at any progress (``absent``, for a complete one: rTorrent has no such state,
    qBittorrent says it only once it looked, and a recheck turns it into an incomplete torrent).
    The same rule as ``qbhook repair``'s (``repair_facts._missing_torrent``): the data it would
    rebuild a torrent from is never reclaimable. Also the names of those whose files the listing
    gives no sizes of (``References.unsized``)."""
    missing: list[MissingData] = []
    unsized: list[str] = []
    for t, fs, paths, absent_why in listed:
        if t.is_missing_files:
            why = t.state
        elif absent_why:
            why = absent_why
        elif gone := sum(p in absent for p in paths):
            why = f"{gone} of its {len(paths)} file(s) not where its client keeps them"
        else:
            continue
        sizes = [f.size for f in fs]
        if not sizes or not all(isinstance(x, int) and x >= 0 for x in sizes):
            unsized.append(t.name or t.hash)
        else:
            missing.append(MissingData(t.name or t.hash, why, frozenset(sizes)))
    return tuple(missing), tuple(unsized)


@dataclass
class _Found:
    """What the torrents' files reach on disk (``_identities``), every client's together: of
    complete torrents' files (``files``; ``inodes``, ``targets``; ``absent``: those not there)
    and of the files of torrents not complete (``partial_inodes``, ``partial_places``)."""

    files: set[str] = field(default_factory=set)
    inodes: set[tuple[int, int]] = field(default_factory=set)
    targets: set[str] = field(default_factory=set)
    absent: set[str] = field(default_factory=set)
    partial_inodes: set[tuple[int, int]] = field(default_factory=set)
    partial_places: set[str] = field(default_factory=set)
    names: defaultdict[tuple[int, int], set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, complete: set[str], partial: set[str], maps: list) -> None:
        """One client's files, a dangling link's target read through its ``maps`` (its path_map)."""
        self.files |= complete
        names, targets, absent = _identities(complete, maps)
        self.inodes |= names.keys()
        self.targets |= targets
        self.absent |= absent
        for k, v in names.items():
            self.names[k] |= v
        names, places, _absent = _identities(partial, maps)
        self.partial_inodes |= names.keys()
        self.partial_places |= places
        for k, v in names.items():
            self.names[k] |= v


def _identities(files: set[str], maps: list = ()) -> tuple[dict[tuple[int, int], set[str]], set[str], set[str]]:
    """What the torrents' file paths reach on disk: the (st_dev, st_ino) of each that exists
    (with the paths that reach it),
    followed through symlinks (one stat each: read-only; a hostile link can only make more files
    look used, which keeps them), and, for one that does not, where it points once its links are
    resolved (a cross-seed link whose target an older qbhook quarantined: the purge asks about
    that place), and that target read as its client's spelling (``library_links.as_host``
    through ``maps``, its client's path_map, as a library's symlink is): cross-seed in a
    container links in its own spelling, /data/..., which dangles on the host, and what it names
    there (by identity, or by place once it is gone) is the torrent's, its only copy once the
    original torrent is removed. A path that is simply not there adds nothing to either; every
    path that cannot be stat-ed is the third set (a torrent missing its files: ``_missing``)."""
    names: dict[tuple[int, int], set[str]] = defaultdict(set)
    targets: set[str] = set()
    absent: set[str] = set()
    for p in files:
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            absent.add(p)
            real = _real(p)
            if real != p:
                targets.add(real)
                for host in library_links.as_host(real, maps):
                    _reach(host, names, targets)
            continue
        names[(st.st_dev, st.st_ino)].add(p)
    return names, targets, absent


def _reach(host: str, names: dict[tuple[int, int], set[str]], places: set[str]) -> None:
    """What a dangling link names on the host (``host``, through its client's path_map): its
    file's identity while it is there (reached by ``host``), and its place, as spelled and as
    real (the purge compares a held file's original place with it once it is gone)."""
    try:
        st = os.stat(host)
    except (OSError, ValueError):
        st = None
    if st is not None:
        names[(st.st_dev, st.st_ino)].add(host)
    places.update({os.path.normpath(host), _real(host)})


def _real(path: str) -> str:
    """``os.path.realpath``, or ``path`` when it cannot be spelled (a NUL byte in a listed name).
    A planted chain of ~1,000 links exhausts realpath's recursion (one frame a link, R74); the
    kernel follows no more than 40, so no client reaches anything through it: ``path`` itself.
    Not ``facts.resolve_links`` for every path: its component budget gave up on two links padded
    with ``./`` that the kernel follows, and a protected folder's real place went unprotected (R78)."""
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError, RecursionError):
        return path
    if len(os.fsencode(real)) < _PATH_MAX:
        return real
    # A prefix too long for one call: realpath's lstat failed there (ENAMETOOLONG) and it took a
    # symlink for a folder, its place unspelled; one that dangles has no identity either (R89).
    return _resolved_by_fds(path) or real


_PATH_MAX = 4096  # Linux's: a longer path string fails whole, though the kernel walks deeper by descriptors
_MAX_LINKS = 40  # the kernel's MAXSYMLINKS: a path through more reaches nothing for any client


def _resolved_by_fds(path: str) -> str | None:
    """``path`` resolved as realpath does (non-strict: from the first component that is not there
    on, the rest as written), one component at a time below an open folder, so no prefix is ever
    handed to the kernel whole and none is too long; None when it cannot be (a relative path, a
    folder that cannot be opened, more links than the kernel follows)."""
    if not path.startswith("/"):
        return None
    todo = [c for c in reversed(path.split("/")) if c]  # a stack: the next component last
    fds = [os.open("/", os.O_PATH | os.O_DIRECTORY)]
    names: list[str] = []
    links = 0
    try:
        while todo:
            c = todo.pop()
            if c == ".":
                continue
            if c == "..":
                if names:
                    names.pop()
                    os.close(fds.pop())
                continue
            try:
                st = os.lstat(c, dir_fd=fds[-1])
            except FileNotFoundError:
                return posixpath.normpath("/" + "/".join([*names, c, *reversed(todo)]))
            if stat_mod.S_ISLNK(st.st_mode):
                links += 1
                body = os.readlink(c, dir_fd=fds[-1])
                if links > _MAX_LINKS:
                    return None
                if body.startswith("/"):
                    while names:
                        names.pop()
                        os.close(fds.pop())
                todo.extend(x for x in reversed(body.split("/")) if x)
            elif stat_mod.S_ISDIR(st.st_mode):
                fds.append(os.open(c, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
                names.append(c)
            else:
                return posixpath.normpath("/" + "/".join([*names, c, *reversed(todo)]))
        return "/" + "/".join(names)
    except (OSError, ValueError):
        return None
    finally:
        for fd in fds:
            os.close(fd)


def _host_maps(client) -> list:
    """The client's path_map when it maps anything (``library_links.as_host`` reads through it)."""
    pm = getattr(client, "path_map", None)
    return [pm] if pm is not None and not getattr(pm, "is_identity", True) else []


def _map_label(client) -> str:
    """The client's path_map as the user wrote it (client prefix -> host prefix), for a refusal."""
    pairs = getattr(getattr(client, "path_map", None), "pairs", ())
    return ", ".join(f"{c} -> {h}" for c, h in pairs) or "none, its paths are the host's"


def _temp_paths(client) -> list[str]:
    """qBittorrent's temp folder (incomplete downloads), when enabled, as a host path."""
    prefs_of = getattr(client, "preferences", None)
    if prefs_of is None:
        return []
    prefs = prefs_of()
    if not prefs.get("temp_path_enabled") or not prefs.get("temp_path"):
        return []
    try:
        return [os.path.normpath(client.path_map.to_host(prefs["temp_path"]))]
    except PathMapError:
        return []  # outside every mapped prefix: not below a seeding root qbhook knows


LAST_ORPHANS = "last_orphans"  # the catalog ``state`` key of the last run's totals


@dataclass(frozen=True)
class OrphanTotals:
    """One pool's orphans as the last ``qbhook orphans`` run found them."""

    reclaimable: int  # bytes quarantining would free
    library: int  # bytes of orphans still used by a library (free nothing)


@dataclass(frozen=True)
class LastOrphans:
    at: float  # when it ran (epoch seconds)
    pools: dict[str, OrphanTotals]
    held: bool  # a quarantine (its reclaimable figure is what was left after it)

    @property
    def reclaimable(self) -> int:
        return sum(t.reclaimable for t in self.pools.values())

    @property
    def library(self) -> int:
        return sum(t.library for t in self.pools.values())


def record(conn, report: Report, held: Iterable[str] = (), *, now: float | None = None) -> None:
    """Remember this run's totals per pool (``held``: paths a quarantine just moved away: no longer orphans)."""
    from qbhook.catalog import state

    gone = set(held)
    pools = {name: {"reclaimable": 0, "library": 0} for name in report.pools}
    for i in report.items:
        t = pools.setdefault(i.pool, {"reclaimable": 0, "library": 0})
        if i.kind == LIBRARY:
            t["library"] += i.bytes
        elif (
            i.kind == RECLAIMABLE
            and i.path not in gone
            and not any(is_within(posixpath.dirname(h), i.path) for h in gone)
        ):
            t["reclaimable"] += i.frees
    at = time.time() if now is None else now
    state.put(conn, LAST_ORPHANS, {"at": at, "pools": pools, "held": bool(gone)})


def last_run(conn) -> LastOrphans | None:
    """The totals the last ``qbhook orphans`` run recorded, or None (never ran, or unreadable)."""
    from qbhook.catalog import state

    raw, _updated = state.get(conn, LAST_ORPHANS)
    try:
        pools = {str(k): OrphanTotals(int(v["reclaimable"]), int(v["library"])) for k, v in dict(raw["pools"]).items()}
        return LastOrphans(float(raw["at"]), pools, bool(raw.get("held")))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def find_orphans(
    cfg, clients: Iterable[ClientPort], *, now: float | None = None, catalog=None, relist: bool = False
) -> Report:
    """List the clients first, then walk: a file added between the two is young, never orphaned.

    ``relist`` (the quarantine's): list them again once the walk ended, and call used what either
    listing uses (``_either``), the guards judging both. A torrent added during the walk onto a
    file already there (cross-seed's symlink mode links an old unreferenced file: a symlink
    leaves its target's ctime alone, so it is not young) was held, its only copy.
    ``catalog``: record the totals (``record``) once the guards passed, and never call a leftover
    view the journal still tracks an orphan (``References.leftovers``), nor a file an unfinished
    run's plan makes or verifies (``References.unfinished``).
    """
    clients = tuple(clients) if relist else clients  # listed twice: an iterator would be empty
    refs = references(clients)
    if catalog is not None:
        from qbhook.move.journal import Journal

        journal = Journal(catalog.conn)
        runs = journal.unfinished_runs()  # a running or killed run's views: unreferenced until it relocates
        refs = replace(
            refs,
            leftovers=journal.leftover_paths(),
            unfinished=unfinished_views(runs),
            unfinished_runs=tuple(r.id for r in runs),
        )
    walk = walk_roots(cfg)
    refs = replace(refs, library=library_of(cfg, refs))  # after the walk: a symlink made meanwhile counts
    if relist:
        refs = _either(refs, references(clients))
    with _folders_of(cfg) as folders:
        report = decide(
            walk,
            replace(refs, folder_identity=folders.identity),
            now=time.time() if now is None else now,
            settle_seconds=cfg.scan.settle_seconds,
            pool_roots={p.name: tuple(map(str, p.seeding_roots)) for p in cfg.pools},
        )
    check_guards(report, cfg.policy.orphans_max_share)
    report.whole_roots = refs.library.whole_roots(r for p in cfg.pools for r in p.seeding_roots)
    report.kept_whole = kept_whole_roots(refs, (r for p in cfg.pools for r in p.seeding_roots))
    if catalog is not None:
        record(catalog.conn, report)
    return report


def kept_whole_roots(refs: References, roots: Iterable) -> list[tuple[str, str, str]]:
    """(who, place, seeding root) for each of ``roots`` that a place ``refs`` keeps whole holds:
    the root itself or a folder above it, as listed, resolved or by identity (a save path that is
    a symlink onto ``/`` or onto the pool root). Nothing below that root is an orphan while it is
    kept (a bare magnet keeps its whole save path, ``_in_use_folders``): kept so, only ever more
    protection, but a person is told which torrent, else the listing read as "0 reclaimable".
    Sorted, one per root. One realpath and one stat per kept place."""
    looked = []
    for place, who in refs.keepers.items():
        got = _stat_ids((place,))
        looked.append((who, place, {place, _real(place)}, next(iter(got), None)))
    out = []
    for r in roots:
        root = os.path.normpath(str(r))
        spelled, chain = {root, _real(root)}, _stat_ids(_upward(root))  # the root and every folder above it
        for who, place, places, key in looked:
            if key in chain or any(is_within(s, p) for s in spelled for p in places):
                out.append((who, place, root))
                break
    return sorted(out)


_NONE: frozenset[str] = frozenset()


def _either(first: References, again: References) -> References:
    """What the listing ``first`` or the listing ``again`` says is in use (``find_orphans``' relist),
    so that a file either one uses is no orphan; its refusals (``check_guards``) judge both: no
    torrents in either, a torrent moving or missing its files without sizes in either, and each
    listing's clients against the walk. ``first``'s leftovers and library links are kept."""
    had = set(first.protected)
    return replace(
        first,
        files=first.files | again.files,
        protected=first.protected + tuple(p for p in again.protected if p not in had),
        torrents=min(first.torrents, again.torrents),  # none in either refuses
        moving=tuple(dict.fromkeys(first.moving + again.moving)),
        clients=first.clients + again.clients,
        inodes=first.inodes | again.inodes,
        missing=first.missing + again.missing,
        unsized=tuple(dict.fromkeys(first.unsized + again.unsized)),
        partial_inodes=first.partial_inodes | again.partial_inodes,
        partial_places=first.partial_places | again.partial_places,
        names={
            k: tuple(dict.fromkeys(first.names.get(k, ()) + again.names.get(k, ())))
            for k in {*first.names, *again.names}
        },
        anchors=None if first.anchors is None or again.anchors is None else first.anchors | again.anchors,
        protected_ids=first.protected_ids | again.protected_ids,
        keepers={**again.keepers, **first.keepers},
        writers=first.writers + again.writers,
        listed={b: first.listed.get(b, _NONE) | again.listed.get(b, _NONE) for b in {*first.listed, *again.listed}},
    )


@dataclass
class QuarantineResult:
    run_id: int | None
    held: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes_held: int = 0
    folders_removed: list[str] = field(default_factory=list)
    not_seeding: list[str] = field(default_factory=list)  # ``Report.not_seeding``: left where they are, told


def quarantine(cfg, catalog, clients: Iterable[ClientPort], *, lock_wait: float = 0) -> QuarantineResult:
    """Move every reclaimable orphan into holding, journaled first; under the executor lock.

    The listing is taken again under the lock, right before acting, so a torrent added since
    the user looked keeps its files; and once more after the walk (``find_orphans``' relist), so
    a torrent added during the walk keeps them too.
    """
    from qbhook.decide.plan import Delete, Plan
    from qbhook.move import fsops
    from qbhook.move.journal import Journal
    from qbhook.move.locks import executor_lock

    clients = tuple(clients)  # listed by the finish of a died run, then twice by ``find_orphans``
    with executor_lock(cfg, lock_wait):
        journal = Journal(catalog.conn)
        earlier = QuarantineResult(None)  # what the finish of a died run held and did not, for the user
        for r in journal.unfinished_runs():
            if r.trigger == QUARANTINE_TRIGGER:  # an earlier quarantine that died: ours to finish
                fin = finish_quarantine(cfg, journal, r.id, lambda: clients)
                earlier.held += fin.held
                earlier.bytes_held += fin.bytes_held
                earlier.failed.update(fin.failed)
        unfinished = [r.id for r in journal.unfinished_runs()]
        if unfinished:
            # A crashed run's view files are unreferenced until its resume relocates onto them.
            raise OrphansRefused(
                f"refusing to quarantine: run(s) {', '.join(map(str, unfinished))} did not finish",
                hint="run `qbhook resume` first",
            )
        report = find_orphans(cfg, clients, catalog=catalog, relist=True)
        todo = [o for o in report.orphans if o.kind == RECLAIMABLE]
        if not todo:
            return replace(earlier, not_seeding=report.not_seeding)
        run = journal.start_run(Plan(groups=[]).to_dict(), QUARANTINE_TRIGGER)
        res = QuarantineResult(run, not_seeding=report.not_seeding)
        roots = cfg.anchored_seeding_roots
        for seq, o in enumerate(todo):
            # Everything the act re-checks, so that a run that died here is finished as decided.
            args = {
                "path": o.path, "ino": o.ino, "size": o.size, "orphan": True,
                "mtime_ns": o.mtime_ns, "max_nlink": o.nlink, "frees": o.frees,
            }  # fmt: skip
            sid = journal.intend_record(run, seq, "orphans", Delete.kind, args)
            _hold_one(journal, sid, args, roots, run, res)
        # Folders the quarantine emptied go (rmdir only: anything left in them stays).
        seeds = _deepest_first(r.path for r in roots)
        for item in report.items:
            if item.kind == RECLAIMABLE and item.folder:
                # Its seeding root, of the few configured (not of every orphan, once per folder).
                root = next((r for r in seeds if is_within(item.path, r)), None)
                if root is None:
                    continue
                try:
                    res.folders_removed += fsops.prune_empty_dirs(item.path, root, roots=roots)
                except (UnsafeOperation, OSError):
                    pass
        record(catalog.conn, report, res.held)
        journal.finish_run(
            run,
            "failed" if res.failed else "done",
            {"orphans_held": len(res.held), "orphans_failed": len(res.failed), "bytes_held": res.bytes_held},
        )
        # The died run's journal has its own; the user sees both.
        res.held, res.bytes_held = earlier.held + res.held, earlier.bytes_held + res.bytes_held
        res.failed = {**earlier.failed, **res.failed}
        return res


def _hold_one(journal, sid: int, args: dict, roots, run: int, res: QuarantineResult, *, resumed=False) -> None:
    """The journaled step ``sid`` done: its orphan moved into holding (``fsops.hold_unreferenced``,
    every check of the decision again), the step closed with the outcome, ``res`` counting it.
    ``resumed``: finishing a run that died, whose own link into holding may be there already."""
    from qbhook.move import fsops

    path = args["path"]
    try:
        out = fsops.hold_unreferenced(
            path,
            ino=args["ino"],
            size=args["size"],
            max_nlink=args["max_nlink"],
            mtime_ns=args["mtime_ns"],
            roots=roots,
            run=run,
            resumed=resumed,
        )
    except (UnsafeOperation, OSError) as e:
        journal.failed(sid, str(e))
        res.failed[path] = str(e)
        return
    except ValueError as e:  # a path os refuses (a NUL byte): a traceback out of finish_quarantine
        why = f"{path!r} cannot be looked up ({e}): not held"  # repr: the NUL shown, not written
        journal.failed(sid, why)
        res.failed[path] = why
        return
    journal.done(sid, out)
    if out["status"] == "held":
        res.held.append(path)
        res.bytes_held += int(args.get("frees", 0))


_FACTS = ("ino", "size", "mtime_ns", "max_nlink")  # what a quarantine step's hold re-checks


def _unreadable_step(sid: int, a: dict) -> str | None:
    """Why the intended quarantine step ``sid`` (its args ``a``) cannot be done again, or None.

    Read as input (a hand edit, a half-written row): a fact of the wrong type would fail deep in
    the hold with a traceback, after the run was adopted; the step is closed failed instead."""
    from qbhook.move.journal import row_field
    from qbhook.numbers import MIN_INT, shown, whole

    if any(a.get(k) is None for k in _FACTS):  # journaled by an older qbhook
        return "interrupted before it finished; journaled without its facts: not retried"
    for k in (*_FACTS, "frees"):
        try:
            if k in a:
                # A file dated before 1970 has a negative st_mtime_ns: refused, the resume left
                # its own half-made link in holding untracked.
                whole(a[k], lo=MIN_INT if k == "mtime_ns" else 0)
        except ValueError as e:
            return f"journal step {sid}: its {k} cannot be read ({e}): not retried"
    if not isinstance(a.get("path"), str):
        return f"journal step {sid}: its path cannot be read (got {shown(a.get('path'))}): not retried"
    try:
        row_field(a, "path", str, required=True)
    except ValueError as e:
        return f"journal step {sid}: its path cannot be read ({e}): not retried"
    return None


FINISH = "finish a quarantine that died"  # what ``finish_quarantine``'s refusal refuses


def finish_quarantine(cfg, journal, run: int, clients: Callable[[], Iterable[ClientPort]]) -> QuarantineResult:
    """A quarantine run that died (a crash, a power cut, Ctrl-C) finished: each step journaled but
    not closed is done again with the facts it was decided on. Its file may be in holding already
    (``hold_unreferenced`` then says ``held``, found where this run holds it), still in place (held
    now, if nothing changed), or changed (refused; but when this run's holding entry is the
    journaled inode, its hold happened and another file came since: held, ``_held_before``).
    Left open, the step's held file was listed by nothing and never purged, and the run stopped
    every later quarantine and ``apply``. A step journaled by an older qbhook (without those
    facts) is closed failed, its file never touched.

    The clients are asked first (``_finish_listing``), when a step is open: a torrent added since
    the run died changes none of the facts on disk (cross-seed's symlink mode links a file by a
    symlink: its inode, size, mtime and link count stay), so the facts alone held a complete,
    seeding torrent's data. A step whose file a torrent, a leftover view, a torrent missing its
    files or a library now uses (``_used_since``, the walk's rules) is closed failed, its file
    left in place. A listing that cannot say (a client unreachable, one torrent stuck "moving",
    which qBittorrent can be for good) holds nothing in place (``_not_held_blind``), yet finishes
    the run: left open, it blocked every ``apply`` and serve for as long as the listing could not
    say. The run always ends here, failed if any step did.
    Called under the executor lock: no other process acts for this run."""
    from qbhook.decide.plan import StepStatus

    todo = [row for row in journal.steps(run) if row.status == StepStatus.INTENDED]
    refs, blind = None, None
    try:
        refs = _finish_listing(cfg, clients) if todo else None
    except OrphansRefused as e:
        blind = e.message
        _log.warning("quarantine run %d: nothing in place is held, the clients cannot be listed: %s", run, blind)
    journal.adopt_run(run)
    res = QuarantineResult(run)
    leftovers = journal.leftover_paths() if refs is not None else frozenset()
    # A library's folder symlink through a bind mount is matched by folder identity (``library_link``).
    with _folders_of(cfg) as folders:
        refs = refs and replace(refs, folder_identity=folders.identity)
        for row in todo:
            a = row.args
            why = _unreadable_step(row.id, a)
            if why is None and _held_before(journal, row.id, a, cfg.anchored_seeding_roots, run, res):
                continue
            if why is None and refs is not None:
                why = _used_since(a["path"], refs, leftovers)
                if why is not None:
                    why += _half_hold_dropped(a, cfg.anchored_seeding_roots, run)[1]
            elif why is None and blind is not None:
                why = _not_held_blind(a, cfg.anchored_seeding_roots, run, blind)
            if why is not None:
                journal.failed(row.id, why)
                res.failed[a["path"] if isinstance(a.get("path"), str) else f"(journal step {row.id})"] = why
                continue
            _hold_one(journal, row.id, a, cfg.anchored_seeding_roots, run, res, resumed=True)
    closed = journal.steps(run)  # read once more, after this pass closed the open steps
    done = [r for r in closed if r.status == StepStatus.DONE and (r.result or {}).get("status") == "held"]
    failed = [r for r in closed if r.status == StepStatus.FAILED]
    _log.warning(
        "quarantine run %d had not finished: %d step(s) done again, %d held in all, %d failed",
        run,
        len(res.held) + len(res.failed),
        len(done),
        len(failed),
    )
    journal.finish_run(
        run,
        "failed" if failed else "done",
        # Bytes held by every held step of the run (an earlier attempt's too), as ``quarantine``'s own
        # summary counts them: without it history and the status page showed a finished run as 0 B held.
        {
            "orphans_held": len(done),
            "orphans_failed": len(failed),
            "bytes_held": sum(_int_or_0(r.args.get("frees")) for r in done),
            "resumed": True,
        },
    )
    return res


def _int_or_0(value) -> int:
    """A journaled step's ``frees`` as a count (0 when it is not a whole number: an older or damaged row)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _held_before(journal, sid: int, a: dict, roots, run: int, res: QuarantineResult) -> bool:
    """Whether the open step ``sid`` (its args ``a``) had held its own file before the run died,
    and another file is at its place since (a torrent re-added, its data fetched again): this run's
    holding entry is the journaled inode (``fsops.held_in_run``). The step is then closed held, as
    ``_absent`` closes one whose place is empty (its folder is there: placed), whatever uses the
    new file: the purge keeps the held one while a torrent uses that place (``screen_held``: put it
    back by hand). Judged as in use, or refused as another file, it was closed "not held" and sat
    in holding, tracked by nothing (R42). A place that is empty or holds the journaled inode itself
    is the other rules' (``_absent``, ``_half_hold_dropped``)."""
    from qbhook.move import fsops

    try:
        if os.lstat(a["path"]).st_ino == a["ino"]:
            return False
    except (OSError, ValueError):
        return False
    out = fsops.held_in_run(a["path"], ino=a["ino"], roots=roots, run=run)
    if out is None:
        return False
    journal.done(sid, out)
    res.held.append(a["path"])
    res.bytes_held += int(a.get("frees", 0))
    return True


def _finish_listing(cfg, clients: Callable[[], Iterable[ClientPort]]) -> References:
    """What the clients and the libraries use now, for ``finish_quarantine``: ``references`` and
    ``library_of``, judged as the purge judges its listing (``check_listing``: a client
    unreachable or unmapped, no torrents at all, one moving, one missing its files without
    sizes). Anything else that stops the listing (no client configured) refuses too
    (``OrphansRefused``, one line): a finish that cannot ask must not hold blind."""
    try:
        refs = references(clients(), FINISH)
        check_listing(refs.torrents, refs.moving, FINISH, refs.unsized)
        return replace(refs, library=library_of(cfg, refs))
    except QbhookError as e:
        why = e.message if isinstance(e, OrphansRefused) else f"refusing to {FINISH}: {e.message}"
        raise OrphansRefused(why) from None


def _not_held_blind(a: dict, roots, run: int, blind: str) -> str | None:
    """Why the open step ``a`` of quarantine run ``run`` is closed without its hold, the clients
    not listed (``blind``: why), or None: its file is gone from its place, and its hold only
    records it where this run holds it (``_absent``, no listing needed: the purge asks the
    clients again, ``screen_held``). A file still in place stays there, unheld; a spare link a
    half-made hold left of it in holding goes (``_half_hold_dropped``)."""
    in_place, failed = _half_hold_dropped(a, roots, run)
    return f"not held: the clients could not be listed ({blind}){failed}" if in_place else None


def _half_hold_dropped(a: dict, roots, run: int) -> tuple[bool, str]:
    """For an open step closed unheld (in use since, or the clients not listed): the spare link a
    half-made hold left of its file in holding removed (``fsops.kept_in_place``). Left, it was one
    more name of a kept file, named by no journal row, and every later hold or delete of that
    inode refused an unknown link. Whether the file is still in place (taken so when the look
    fails: the hold would refuse it too), and what the step's reason adds then ("": nothing)."""
    from qbhook.move import fsops

    try:
        return fsops.kept_in_place(a["path"], ino=a["ino"], roots=roots, run=run), ""
    except (UnsafeOperation, OSError, ValueError) as e:
        return True, f"; {e.message if isinstance(e, UnsafeOperation) else e}"


def _used_since(path: str, refs: References, leftovers: frozenset[str]) -> str | None:
    """Why the file at ``path``, an orphan when a quarantine that died decided on it, is no orphan
    now (``refs``: the listing taken by its finish), or None. ``decide``'s rules, in its order
    (``in_use``, a leftover view, ``may_be_missing_data``, ``library_link``), by the file in place:
    its path and its (st_dev, st_ino) as the walk would meet it (lstat, never followed).

    Only a file still in place is judged: one already gone from it (the hold moved it, or a person
    did) is moved by nothing now, and ``hold_unreferenced`` only records it where this run holds
    it, so that the purge, which asks the clients again (``screen_held``), keeps it and says so.
    (A hold that died between its link into holding and the unlink of the original left a spare
    link there: the caller removes it, ``_half_hold_dropped``.)"""
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    if not stat_mod.S_ISREG(st.st_mode):
        return None  # the hold refuses it (not a regular file)
    key = (st.st_dev, st.st_ino)
    since = "in use since the quarantine began"
    if (used := in_use(path, refs, key)) is not None:
        by = "a complete torrent's file" if used == REFERENCED else "kept for a torrent not complete"
        return f"{since} ({by}): not held"
    if path in leftovers:
        return f"{since} (a leftover view the journal tracks, maybe a last copy): not held"
    if (m := may_be_missing_data(st.st_size, refs)) is not None:
        return f"{since}: {m.reason()}; not held"
    if (link := library_link(path, refs, key)) is not None:
        return f"{since} (a library links it by a symbolic link: {link}): not held"
    return None


@dataclass(frozen=True)
class Held:
    step: int
    path: str
    since: float
    expires: float  # by the wall clock, from when its grace began (``HeldLink.start``)
    ino: int | None
    origin: str | None  # where it was before it was held
    expired: bool = False  # its grace is over by every clock the purge asks (``HeldLink.expired``)


def holding(cfg, catalog) -> list[Held]:
    """Every link the journal recorded as held and no purge removed, with when it may go."""
    from qbhook.move.journal import Journal

    grace, journal = cfg.policy.grace_period, Journal(catalog.conn)
    clock = journal.hold_clock()
    return [
        Held(h.key, h.path, h.since, h.start(clock) + grace, h.ino, h.origin, h.expired(grace, clock))
        for h in journal.held_links()
    ]


def clock_doubt(cfg, catalog) -> str | None:
    """Why held links whose wall-clock grace is over are not purged (``fsops.clock_doubt``), or None:
    the line ``qbhook holding`` shows, the very one its purge gives."""
    from qbhook.move import fsops
    from qbhook.move.journal import Journal

    journal = Journal(catalog.conn)
    return fsops.clock_doubt(journal.held_links(), journal.hold_clock(), cfg.policy.grace_period)


def forget_gone(cfg, catalog, *, forget: bool, lock_wait: float = 0) -> list[tuple[Held, str]]:
    """The held links whose holding folder is gone from its place or replaced (what every purge
    reports as ``HoldingGone``), each with why; ``forget``: the journal stops tracking them, under
    the executor lock. Never "purged" and nothing deleted: whatever of them is left, in a renamed
    folder, is the person's who said so (``qbhook holding --forget-gone --yes``). What a purge told
    of their folders (``HOLDING_TOLD``) is over with them: resolved, out of ``qbhook status``."""
    from qbhook.move import fsops
    from qbhook.move.journal import Journal
    from qbhook.move.locks import executor_lock

    grace, journal = cfg.policy.grace_period, Journal(catalog.conn)

    def gone() -> list[tuple[HeldLink, HoldingGone]]:
        found = ((h, fsops.holding_gone(h, cfg.anchored_seeding_roots)) for h in journal.held_links())
        return [(h, e) for h, e in found if e is not None]

    if forget:
        with executor_lock(cfg, lock_wait):
            out = gone()
            for h, _e in out:
                journal.mark_released(h.key)
            # Else the "holding folder gone" line stayed a problem of `status` (exit 1) until a purge
            # ran, which with grace_period 0 none ever does: the person dealt with it, as asked.
            _resolve_told(journal.conn, {_gone_id(e) for _h, e in out})
    else:
        out = gone()
    return [(Held(h.key, h.path, h.since, h.since + grace, h.ino, h.origin), f"{e.folder}: {e.why}") for h, e in out]


@dataclass(frozen=True)
class KeptOrphan:
    """A quarantined orphan whose grace period is over, kept in holding: a torrent uses its place
    again, it may be the data of a torrent missing its files (``may_be_missing_data``), or a
    library's symlink reaches it (``library_link``)."""

    held: str  # where it waits
    origin: str  # where it was quarantined from
    leftover: bool = False  # its place is a leftover view the journal tracks (maybe a last copy)
    why: str | None = None  # why else it is kept (``MissingData.reason``)

    def line(self) -> str:
        if self.why is not None:
            return f"kept {self.held} in holding (quarantined from {self.origin}): {self.why}"
        if self.leftover:
            return (
                f"kept {self.held} in holding: it is the leftover view {self.origin}, maybe the last copy "
                "of its content (put it back by hand; `qbhook status` lists it)"
            )
        return f"kept {self.held} in holding: a torrent uses its place {self.origin} again (put it back by hand)"

    def as_dict(self) -> dict:
        return {"held": self.held, "origin": self.origin, "leftover_view": self.leftover, "reason": self.why}


@dataclass(frozen=True)
class Screen:
    """What of the held links a purge may go on with, after the clients were asked about the orphans."""

    purgeable: tuple[HeldLink, ...]  # for ``fsops.purge_holding`` (which applies its own rules)
    kept: tuple[KeptOrphan, ...] = ()
    refused: OrphansRefused | None = None  # why no quarantined orphan is purged this time


def screen_held(
    held: Iterable[HeldLink],
    clients: Callable[[], Iterable[ClientPort]],
    *,
    grace: float,
    now: float | HoldClock,
    leftover_views: frozenset[str] = frozenset(),
    library: Callable[[References], LibraryLinks] = lambda _refs: NO_LINKS,
    folder_identity: library_links.Identity | None = None,
) -> Screen:
    """Ask the clients, right before a purge, whether a torrent uses a quarantined orphan's place again.

    An orphan was unreferenced when it was quarantined; in the grace period the user may re-add
    its torrent, or cross-seed inject a match onto that path, and the held file is then the
    torrent's data. So an expired orphan is purged only if no torrent of any client uses its
    original path now (``in_use``, the orphan walk's own rule, on ``references``' listing: by that
    path, by the held file's identity, through a link that pointed there (in its client's
    spelling too, read through its path_map), as the place qBittorrent keeps a skipped file of a
    torrent in (``.unwanted``), or spelled in another normalization or case) and
    it is no leftover view the journal tracks (``leftover_views``: never an orphan, maybe a last copy),
    nor may be the data of a torrent missing its files (``may_be_missing_data``: held before that
    torrent's folder was renamed, it is the copy a repair needs), nor is reached by a library's
    symlink (``library_link``: by the held file's identity, or by its original place, where the
    symlink now dangles; ``library`` collects them, given the listing (below a seeding root, each
    symlink no torrent lists as its file), only when an orphan is due: ``library_of``; a folder target
    also by the identity of a folder above that place, ``folder_identity``: a bind mount's alias).
    A listing that cannot say (a client unreachable or unmapped, no torrents at all, a torrent
    being moved, one missing its files without sizes: ``check_listing``) refuses the purge of
    every orphan, never a guess. Held links
    of a demote or another delete are no orphans: they pass on untouched, to the purge's rule
    for them (the copy to keep must still verify). Clients are listed only when an orphan is due.
    """
    held = tuple(held)
    due = [h for h in held if h.orphan and h.expired(grace, now)]
    if not due:
        return Screen(held)
    try:
        refs = references(clients(), PURGE)
        check_listing(refs.torrents, refs.moving, PURGE, refs.unsized)
        refs = replace(refs, library=library(refs), folder_identity=folder_identity)
    except QbhookError as e:  # also no client configured, or two with one name: nothing to ask
        refused = e if isinstance(e, OrphansRefused) else OrphansRefused(f"refusing to {PURGE}: {e.message}")
        return Screen(tuple(h for h in held if not h.orphan), refused=refused)
    # A client spelling the place in another normalization or case (a dataset that folds them):
    # its path no longer reaches the held file, so the places are compared folded too.
    folded = {_fold(p) for p in refs.files | refs.partial_places}
    kept: dict[object, KeptOrphan] = {}
    for h in due:
        # A quarantine always journals the orphan's path; without one there is nothing to check.
        origin = os.path.normpath(h.origin) if h.origin else None
        if origin is None or in_use(origin, refs, identity(h.path)) is not None or _fold(origin) in folded:
            kept[h.key] = KeptOrphan(h.path, origin or "(not recorded)")
        elif origin in leftover_views:
            kept[h.key] = KeptOrphan(h.path, origin, leftover=True)
        elif (m := may_be_missing_data(_size(h.path), refs)) is not None:
            kept[h.key] = KeptOrphan(h.path, origin, why=m.reason())
        elif (link := library_link(origin, refs, identity(h.path))) is not None:
            kept[h.key] = KeptOrphan(h.path, origin, why=f"a library links it by a symbolic link: {link}")
    return Screen(tuple(h for h in held if h.key not in kept), tuple(kept.values()))


def identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file at ``path`` (a held link, a leftover view), None when it cannot be stat-ed."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _size(path: str) -> int | None:
    """The size of the file at ``path`` (a held link), None when it cannot be stat-ed (then there is
    nothing for the purge to unlink either)."""
    try:
        return os.stat(path).st_size
    except (OSError, ValueError):
        return None


def _fold(path: str) -> str:
    return unicodedata.normalize("NFC", path).casefold()


@dataclass
class Purge:
    """What one purge of holding did and left."""

    folders: list[str] = field(default_factory=list)  # holding run folders that became empty and went
    kept: list[KeptOrphan] = field(default_factory=list)  # orphans a torrent uses again, or leftover views
    refused: OrphansRefused | None = None  # no orphan was purged: the clients could not be asked
    error: Exception | None = None  # what ``fsops.purge_holding`` left (``LastCopyKept``: a person must look)
    clock: str | None = None  # why held links were not purged on the wall clock (``fsops.clock_doubt``)
    # The mount points of the pools' datasets found not mounted, refusing the orphans' purge
    # (``_purge_library``); None: not looked at (no orphan due, the listing refused first, or the
    # mount table could not be read).
    away: tuple[str, ...] | None = None
    # Why the mount table could not be read, refusing the orphans' purge (``_purge_library``); None:
    # read, or not looked at.
    mounts: str | None = None
    # What the links it unlinked as their inode's last freed (a run's summary never counts these: with a
    # grace period its delete only held them).
    bytes_freed: int = 0

    def as_dict(self) -> dict:
        return {
            "purged_folders": self.folders,
            "bytes_freed": self.bytes_freed,
            "kept_in_use": [k.as_dict() for k in self.kept],
            "orphans_refused": self.refused.message if self.refused is not None else None,
            "clock_refused": self.clock,
        }


def purge_held(
    cfg, catalog, journal, clients: Callable[[], Iterable[ClientPort]], *, now: float | None = None
) -> Purge:
    """The purge of held links whose grace period is over, under the executor lock the caller holds.

    The one purge of holding: ``qbhook holding --purge-expired --yes`` and the executor after a run.
    Orphans first pass ``screen_held``; then ``fsops.purge_holding`` unlinks what the journal
    recorded, keeping a last copy whose copy to keep no longer verifies. A wall clock that cannot
    end a grace (``fsops.clock_doubt``: it went back, or jumped) purges nothing it alone would, and
    says why (``Purge.clock``). What needs a person (a kept orphan, a kept last copy, a holding
    folder renamed away, that clock, a pool's dataset not mounted or a mount table that cannot be
    read refusing the orphans' purge) is also notified, once while it lasts and once when it is gone
    (``_tell_purge``); any other refusal is the caller's to report.
    """
    from qbhook.move import fsops

    clock = journal.hold_clock(now)  # read once: the screen and the purge judge by the same clocks
    grace = cfg.policy.grace_period
    held = journal.held_links()
    out = Purge()
    with _folders_of(cfg) as folders:
        screen = screen_held(
            held,
            clients,
            grace=grace,
            now=clock,
            leftover_views=journal.leftover_paths(),
            library=lambda refs: _purge_library(cfg, catalog, refs, out),
            folder_identity=folders.identity,
        )
    doubt = fsops.clock_doubts(held, clock, grace)
    out.kept, out.refused, out.clock = list(screen.kept), screen.refused, doubt.line if doubt is not None else None
    found = {f"kept {k.held}": f"holding purge: {k.line()}" for k in screen.kept}
    # Under serve the refusal was only a log line: status read healthy while holding grew (R119).
    found.update(
        {
            _away_id(mp): f"holding purge: refusing to {PURGE}: {_away_line(mp)}; {_away_hint(mp)}"
            for mp in out.away or ()
        }
    )
    if out.mounts is not None:  # each purge refused while holding grows, status healthy (R120)
        found[MOUNTS_ID] = f"holding purge: {out.mounts}"
    if doubt is not None:  # a clock set wrong: a person must look at it; told by its kinds (R58)
        found["clock"] = f"holding purge: {doubt.told()}"
    try:
        out.folders = fsops.purge_holding(
            cfg.anchored_seeding_roots,
            grace,
            held=screen.purgeable,
            now=clock,
            on_purged=lambda h: journal.mark_purged(h.key),
            # A held link out of reach may be a last copy in a folder renamed away: a person must look.
            on_gone=lambda e: found.update({_gone_id(e): f"holding purge: {e.message}"}),
            on_freed=lambda n: setattr(out, "bytes_freed", out.bytes_freed + n),
            catalog=catalog,
            keep_roots=tuple(p.path for p in cfg.pools),
        )
    except (QbhookError, OSError) as e:
        out.error = e  # what could not be purged stays journaled for the next purge
        if isinstance(e, LastCopyKept):  # it may be the only copy left
            found["last copy"] = f"holding purge: {e}"
    # No held orphan left (released by `holding --forget-gone`, put back): nothing of theirs waits on
    # a look at the mounts, and an outage told stayed in status for ever (R121).
    _tell_purge(journal.conn, found, out, orphans_left=any(h.orphan for h in journal.held_links()))
    return out


def _purge_library(cfg, catalog, refs: References, out: Purge) -> LibraryLinks:
    """``library_of`` for the purge, refused (``OrphansRefused``: no orphan purged) while a
    filesystem the catalog holds files of in a configured pool, at, below or above a pool root, is
    not mounted (``scan.filesystems_away``, the scan's rule for paths out of sight): its walk sees an
    empty mount point, no symlink on it, and what a library there links (an encrypted dataset whose
    key was not loaded at boot) looked unused and was purged. The quarantine only holds; the purge
    is the act that cannot be undone. Files recorded under a pool no longer configured do not count:
    no scan walks that pool again, so the hint's ``--forget-unmounted`` could never drop them, and a
    removed pool's destroyed dataset refused every purge for ever (R119); a configured pool's scan
    records what it meets under its own name, so a dataset holding its library still refuses.
    What it found is ``out.away``, a mount table it could not read ``out.mounts``, each told by the
    purge (``_tell_purge``)."""
    from qbhook.catalog.scan import filesystems_away

    roots = [os.path.normpath(str(p.path)) for p in cfg.pools]
    names = [p.name for p in cfg.pools]
    try:
        known_away = filesystems_away(catalog)
    except OSError as e:
        # What is mounted not known is a dataset maybe away: refused like one, in one line. It
        # escaped as a traceback out of the purge after the run was journaled (R119).
        # Told without the error's text: an outage whose errno changes is one outage (R121).
        out.mounts = (
            f"refusing to {PURGE}: cannot read the mount table: whether a dataset in a pool is not mounted is not known"
        )
        raise OrphansRefused(out.mounts.replace("mount table", f"mount table ({e.strerror or e})", 1)) from e
    away = sorted(
        mp
        for fs, mp in known_away.items()
        if any(is_within(mp, r) or is_within(r, mp) for r in roots) and catalog.fs_has_pool_paths(fs, names)
    )
    out.away = tuple(away)
    if away:
        raise OrphansRefused(
            f"refusing to {PURGE}: {_away_line(away[0])}",
            hint=_away_hint(away[0]),
        )
    return library_of(cfg, refs)


def _away_line(mountpoint: str) -> str:
    return (
        f"{mountpoint} is not mounted (a filesystem the catalog knows in a pool; a library's symlinks on it are unseen)"
    )


def _away_hint(mountpoint: str) -> str:
    return f"mount it; if it is gone for good: qbhook scan --forget-unmounted {mountpoint}"


# The id (``state.told``) a purge tells an unreadable mount table by: told once while the orphans'
# purge is refused for it, resolved by the first purge that reads the mount table again.
MOUNTS_ID = "mounts"


def _away_id(mountpoint: str) -> str:
    """The id (``state.told``) a purge tells a pool's dataset not mounted by: told once while the
    orphans' purge is refused for it, resolved by the first purge that looks and finds it mounted."""
    return f"away {mountpoint}"


# What the last purge of holding found that needs a person, as told (``state.told``): each condition's
# line until a purge no longer finds it. ``holding_needs_person`` reads it for ``qbhook status``.
HOLDING_TOLD = "notify.holding_told"


def _gone_id(e: HoldingGone) -> str:
    """The id (``state.told``) a purge tells a holding folder gone by; ``forget_gone`` resolves it."""
    return f"gone {e.folder}"


def holding_needs_person(conn) -> list[str]:
    """What the last purge of holding found that needs a person and is still so, one line each (a
    kept orphan, a kept last copy, a holding folder renamed away, a clock set wrong, a pool's dataset
    not mounted or a mount table that cannot be read refusing the orphans' purge): the lines it
    notified, which a purge drops once gone. ``qbhook status`` and the status page's "Needs you"
    show them (R58: a purge refused on a wrong clock left status healthy)."""
    told, _at = state.get(conn, HOLDING_TOLD, {})
    return sorted(told.values()) if isinstance(told, dict) else []


def _tell_purge(conn, found: dict[str, str], out: Purge, orphans_left: bool = True) -> None:
    """Tell what needs a person once, and when it is gone (``state.told``): serve purges after every
    run, and each told the same kept links again (R35). What this purge could not look at (orphans
    refused a listing, before their library or the mount table was looked at; the purge stopped by
    an error of its own) is neither told again nor gone. A pool's dataset found not mounted is gone
    only once a purge looks and finds it mounted, a mount table that could not be read once a purge
    reads it: one with no orphan due never looks (R120: it read as resolved while still unmounted,
    and the next purge told it again); with no held orphan left (``orphans_left``) nothing waits on
    that look, and it is gone."""
    from qbhook import notify

    def unseen(what: str) -> bool:
        if what.startswith("kept "):
            return out.refused is not None
        # Not looked at (no orphan due, the listing refused first; the mount table unread): still so.
        if what.startswith("away ") or what == MOUNTS_ID:
            return out.away is None and orphans_left
        return out.error is not None and not isinstance(out.error, LastCopyKept)

    tell, gone = state.told(conn, HOLDING_TOLD, found, unseen=unseen)
    for line in tell:
        notify.emit("guard", line, "failure")
    for line in gone:
        notify.emit("resolved", f"resolved: {line}", "info")


def _resolve_told(conn, ids: set[str]) -> None:
    """The conditions ``ids`` of ``HOLDING_TOLD`` are over (a person dealt with them): dropped, each
    told resolved as a purge that no longer finds one tells it (``_tell_purge``); the others kept."""
    from qbhook import notify

    _tell, gone = state.told(conn, HOLDING_TOLD, {}, unseen=lambda what: what not in ids)
    for line in gone:
        notify.emit("resolved", f"resolved: {line}", "info")


def purge_expired(
    cfg, catalog, clients: Callable[[], Iterable[ClientPort]], *, now: float | None = None, lock_wait: float = 0
) -> Purge:
    """``purge_held`` under the executor lock (``qbhook holding --purge-expired --yes``)."""
    from qbhook.move.journal import Journal
    from qbhook.move.locks import executor_lock

    with executor_lock(cfg, lock_wait):
        journal = Journal(catalog.conn)
        # A timer's purge may be the only qbhook of a boot after NTP synced: its clocks date this
        # boot's holds at later boots (``fsops.HeldLink.start``). A run records its own.
        journal.note_clock()
        return purge_held(cfg, catalog, journal, clients, now=now)
