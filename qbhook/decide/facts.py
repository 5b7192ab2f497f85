"""What the planner knows: plain, immutable facts gathered by the snapshot builder.

Nothing here does I/O but ``LinkResolver`` (read-only lstat/readlink, for the builders to
classify a writer's paths; see ``may_write_at``). A fact is as true as the moment it was read;
the executor re-checks every fact it depends on right before it acts.

Paths in facts are spelled canonically (``qbt.pathmap.normalize``: absolute, no
``//``, no ``.``, no trailing slash, never a ``..``), so that one link is one
string: two spellings of one link counted twice would hide a library link
(``split_links``).
"""

from __future__ import annotations

import os
import posixpath
import stat as stat_mod
import time
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from qbhook.catalog import library_links
from qbhook.catalog.library_links import NO_LINKS, LibraryLinks
from qbhook.catalog.torrents import MISSING_GRACE_S
from qbhook.clients.model import PART_SUFFIX, is_relative_path
from qbhook.errors import PathMapError
from qbhook.paths import is_within, normalize, root_holding, within_any

InodeKey = tuple[str, int]  # (stable filesystem id, inode number)
ContentKey = tuple[int, str]  # (size, blake3 hex)


# A file under this size that is also under half of its payload (an .nfo, a tracker's .txt, a
# cover, a subtitle) is *incidental* to it: the same bytes in another payload or a library are a
# coincidence (every RARBG release carries one RARBG.txt), not the same payload. Such a file
# never ties its payload to another one: it is not converged onto, linked from, nor kept on
# /stash for, an inode outside its group. Linked, it would join the two groups for good
# (``decide.grouping`` joins through any shared inode): a seed-only 1 GB payload then stayed on
# /stash with a library's payload, or could never be promoted (helper review, stop 26).
# Duplicating it costs a few KiB. A file that is most of its payload is never incidental,
# however small (a 4 KiB payload of one file converges onto its library copy).
INCIDENTAL_BYTES = 1 << 20


def incidental_below(wanted: Iterable[Iterable[int]]) -> int:
    """For one group, from each torrent's wanted file sizes: its files under this many bytes are
    incidental to it (above: under ``INCIDENTAL_BYTES`` and under half the payload), 0 for none.
    The payload weighs what its largest torrent does (its file list, whatever of it the catalog
    knows). A payload with no file that is not incidental (a pack of small files: ebook formats,
    chapters) has none: every file of it may tie it, as one file of a big payload does."""
    torrents = [list(sizes) for sizes in wanted]
    payload = max((sum(sizes) for sizes in torrents), default=0)
    below = min(INCIDENTAL_BYTES, (payload + 1) // 2)  # size < below  <=>  2 * size < payload
    return 0 if all(size < below for sizes in torrents for size in sizes) else below


def incidental_in(group: Sequence[TorrentFact]) -> Callable[[int], bool]:
    """Whether a size is incidental to this group of torrent facts (``incidental_below``)."""
    if len(group) == 1 and len(group[0].files) == 1:
        return _never  # one file is its whole payload (the common converge group: cheap, 10,000 a pass)
    below = incidental_below([f.size for f in t.files if f.priority != 0] for t in group)
    return lambda size: size < below


def _never(_size: int) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class InodeFact:
    fsid: str
    ino: int
    size: int
    nlink: int
    blake3: str | None  # hex; None when not hashed or changed since hashed
    seeding_paths: tuple[str, ...] = ()  # known links inside any seeding root
    other_paths: tuple[str, ...] = ()  # known links outside the seeding roots (libraries ...)
    mtime_ns: int = 0  # as lstat-ed for this snapshot (convergence keeps the oldest)
    ctime_ns: int = 0  # as lstat-ed for this snapshot (the settle rule: hashing.settled)
    # Seeding paths that spell an entry another one counts already (one folder reached two ways
    # inside a seeding root: a bind mount of seeding data, an export or alias folder), by the
    # executor's rule (``dirfd.entry_key``): each is no link of its own (``external_links``).
    aliases: int = 0
    # (st_mode, st_uid, st_gid) as lstat-ed for this snapshot (the converge pass: as its scan
    # recorded them), for ``access.access_lost``: may a seeding name be linked onto this inode
    # (convergence)? None: not known (a catalog row that keeps none yet; the executor's own check
    # then decides). One tuple shared by every inode of the same three (``SnapshotBuilder``,
    # ``Catalog.inode_mtimes_and_access``): a pointer per fact, not three ints.
    access: tuple[int, int, int] | None = None

    @property
    def key(self) -> InodeKey:
        return (self.fsid, self.ino)

    @property
    def content(self) -> ContentKey | None:
        return (self.size, self.blake3) if self.blake3 else None

    @property
    def external_links(self) -> int:
        """Links that are not inside any seeding root: a library (or something unknown) uses it.
        Seeding links are counted as entries, not spellings (``aliases``): two paths of one entry
        counted twice hid the library's hard link, and the group demoted."""
        return max(self.nlink - len(self.seeding_paths) + self.aliases, 0)


@dataclass(frozen=True, slots=True)
class FileFact:
    index: int
    rel: str  # relative to the torrent's save path, '/'-separated, root folder included
    size: int
    path: str  # host path
    inode: InodeKey | None  # None: nothing (or not a regular file) at path
    priority: int = 1
    progress: float = 1.0

    @classmethod
    def listed(cls, f, path: str, inode: InodeKey | None) -> FileFact:
        """The fact of a client's listed file ``f`` (``clients.model.TorrentFile``) at host ``path``."""
        return cls(f.index, f.name, f.size, path, inode, f.priority, f.progress)


@dataclass(frozen=True, slots=True)
class TorrentFact:
    hash: str
    instance: str
    name: str
    state: str  # normalized to qBittorrent 5 names (stoppedUP, not pausedUP)
    progress: float
    save_path: str  # host path
    files: tuple[FileFact, ...]
    category: str = ""
    tags: frozenset[str] = frozenset()
    auto_tmm: bool = False
    download_path: str = ""  # host path, "" when unset
    completion_on: float = 0.0

    @classmethod
    def listed(cls, t, files: tuple[FileFact, ...]) -> TorrentFact:
        """The fact of a client's listed torrent ``t`` (``clients.model.TorrentInfo``) with its files' facts."""
        return cls(
            hash=t.hash,
            instance=t.instance,
            name=t.name,
            state=t.state,
            progress=t.progress,
            save_path=t.save_path,
            files=files,
            category=t.category or "",
            tags=frozenset(t.tags),
            auto_tmm=bool(t.auto_tmm),
            download_path=t.download_path or "",
            completion_on=float(t.completion_on or 0),
        )


@dataclass(frozen=True, slots=True)
class ReachingFile:
    """A file of a torrent a partial snapshot leaves out whose path passes through a symlink noted in
    ``Snapshot.symlinks``: it may name a file of the snapshot's groups (``planner.reached_blockers``)."""

    hash: str
    name: str  # the torrent's
    path: str  # host path, as the torrent names it (through the link)
    size: int
    instance: str = ""  # its client: the same infohash in another client is another torrent


# How long a torrent missing from its client's listing still counts as there: ``MISSING_GRACE_S``,
# kept beside the index rows it is read from (``qbhook.catalog.torrents``), which must outlive it.
# What the reason of such a stay looks like to SQL (LIKE): the sweep re-plans it every time.
MISSING_STAY_LIKE = "torrent % missing from %"


@dataclass(frozen=True)
class MissingTorrent:
    """A torrent its client's listing lacks that the torrent index held, since ``since`` (when a sync
    saw it go; a live listing's time when no sync has yet), with what it last used: its files' host
    paths (canonical, as ``FileFact.path``) and the inodes they resolved to (``SnapshotBuilder._missing``)."""

    instance: str
    hash: str
    name: str
    since: float
    paths: frozenset[str]
    inodes: frozenset[InodeKey]


def missing_still_held(since: float, now: float) -> bool:
    """The one rule of the grace: is a torrent missing since ``since`` still taken as there at ``now``?"""
    return now - since < MISSING_GRACE_S


def missing_reason(m: MissingTorrent, path: str) -> str:
    """Why a group sharing ``path`` (or its inode) with missing torrent ``m`` stays, naming it."""
    at = time.strftime("%H:%M UTC", time.gmtime(m.since))
    return (
        f"torrent {m.hash} ({m.name}) missing from {m.instance}'s listing since {at}; it used these files "
        f"({path}): not moved for {MISSING_GRACE_S / 60:.0f} min after it went (restarting, or not loaded?)"
    )


@dataclass(frozen=True)
class LibrarySymlinks:
    """The symlinks libraries keep into the pools (``catalog.library_links``), as this snapshot's
    planner reads them (``planner.library_blockers``): a file target by this snapshot's inode key,
    a folder (or gone) target by its real path, spelled below the pool roots as the facts are.
    ``unseen``: why they were not read (the walk did not finish, or the builder did not look,
    nothing being movable): then nothing may move, since a library not seen is data deleted. A
    snapshot built by hand (a test's) has none, read."""

    files: dict[InodeKey, str] = field(default_factory=dict)  # inode -> a symlink onto it
    folders: LibraryLinks = NO_LINKS  # its ``places`` only: what is at or below a real path
    targets: dict[str, str] = field(default_factory=dict)  # symlink -> its target, as written
    unseen: str = ""

    def reaching(self, path: str, key: InodeKey | None) -> str | None:
        """A symlink that reaches the file ``key`` or ``path`` (at or below a folder target): the
        one rule, ``LibraryLinks.reaching``'s, on this snapshot's keys."""
        if key is not None and (link := self.files.get(key)) is not None:
            return link
        return self.folders.reaching(path)

    def shown(self, link: str) -> str:
        """``link -> target`` for a reason a person reads."""
        return f"{link} -> {self.targets.get(link, '?')}"

    def used(self, files: Iterable[tuple[str, InodeKey | None]]) -> str | None:
        """Why a library uses one of ``files`` ((path, inode key)) through a symlink (``reaching``),
        naming that symlink, or None: the one rule of "a library's file, never changed", for a move
        (``planner.library_use``: the group stays) and a convergence (``converge``: never a victim;
        a relink swapped the inode the symlink reads, its owner and mode with it)."""
        for path, key in files:
            if (link := self.reaching(path, key)) is not None:
                return f"library symlink {self.shown(link)} uses it ({path})"
        return None

    @classmethod
    def of(
        cls,
        found: LibraryLinks,
        fsids: Mapping[int, Iterable[str]],
        inodes: Container[InodeKey],
        pool_roots: Iterable[str],
        paths: Iterable[str],
        identity: Callable[[str], tuple[int, int] | None],
        stop: Callable[[str], bool],
    ) -> LibrarySymlinks:
        """The walk's symlinks (``library_links.collect``) as a snapshot keys them, for both builders
        (the snapshot's and the converge pass's): a file target by the inode key of ``inodes`` its
        (st_dev, st_ino) is (``fsids``: the fsids met on each st_dev; a target that is no file of
        ``inodes`` is irrelevant), a folder target by its real path spelled below ``pool_roots``
        (``library_links.respelled``) and by each folder above ``paths`` (files) that is that folder
        by ``identity`` (``library_links.matched_folders``, climbing no higher than ``stop``)."""
        files = {
            (fsid, ino): link
            for (dev, ino), link in found.files.items()
            for fsid in fsids.get(dev, ())
            if (fsid, ino) in inodes
        }
        places = library_links.respelled(found.places, pool_roots)
        places.update(library_links.matched_folders(found, paths, identity, stop))
        folders = LibraryLinks(places=places)
        return cls(files, folders, {k: library_links.target(k) for k in {*files.values(), *folders.places.values()}})


NO_LIBRARY_SYMLINKS = LibrarySymlinks()


@dataclass(frozen=True, slots=True)
class PoolFact:
    name: str
    role: str  # primary | cold
    path: str
    seeding_root: str
    seeding_fsid: str  # filesystem of the seeding root: the only place links can be made
    free_bytes: int
    more_seeding_roots: tuple[str, ...] = ()  # further seeding roots (seeding tree, but no new views)
    # The seeding root's filesystem size, what a percent ``policy.min_free`` is of (0: not read,
    # facts of a pass that writes nothing: a convergence, a repair).
    size_bytes: int = 0
    # The filesystem of each of ``more_seeding_roots``, in order ("" or missing: not read, and then
    # nothing is checked against it: ``fsid_of_root``).
    more_seeding_fsids: tuple[str, ...] = ()

    @property
    def seeding_roots(self) -> tuple[str, ...]:
        return (self.seeding_root, *self.more_seeding_roots)

    def fsid_of_root(self, root: str) -> str:
        """The filesystem id of this pool's seeding root ``root`` ("": not known)."""
        if root == self.seeding_root:
            return self.seeding_fsid
        i = self.more_seeding_roots.index(root)
        return self.more_seeding_fsids[i] if i < len(self.more_seeding_fsids) else ""

    def root_of(self, path: str) -> str | None:
        """The seeding root of this pool that holds ``path`` (None: none does)."""
        return self.root_finder()(path)

    def root_finder(self) -> Callable[[str], str | None]:
        """``root_of`` as one function of a path, for a caller that asks it of many."""
        return root_holding(self.seeding_roots)  # is_within's rule, the roots normalised once

    def seen_from(self, folders: Iterable[str]) -> PoolFact:
        """This pool with ``seeding_fsid`` the filesystem of the seeding root holding ``folders`` (a
        group's save paths, or where they go), for the rules that look for copies a link can reach
        (the planner's donors, the hashes a demotion asks for): a second seeding root may be a
        dataset of its own (``NESTED``'s advice), and a donor on the first root's filesystem
        failed the link every run. Itself when that is the first root's, or not known; ``seeding_fsid``
        "" (no copy anywhere) when roots of two filesystems hold them."""
        if not self.more_seeding_roots:
            return self
        fsids = {self.fsid_of_root(r) for f in folders if (r := self.root_of(f)) is not None} - {""}
        fs = fsids.pop() if len(fsids) == 1 else ("" if fsids else self.seeding_fsid)
        return self if fs == self.seeding_fsid else replace(self, seeding_fsid=fs)


@dataclass(frozen=True)
class Snapshot:
    torrents: tuple[TorrentFact, ...]
    inodes: dict[InodeKey, InodeFact]
    pools: tuple[PoolFact, ...]
    # Known inodes per content (any pool), for donors: verified to still exist by the builder.
    content: dict[ContentKey, tuple[InodeKey, ...]] = field(default_factory=dict)
    # What exists right now at paths a plan may write to: path -> inode key (None: nothing there).
    existing: dict[str, InodeKey | None] = field(default_factory=dict)
    now: float = 0.0
    # Symlinks met in torrent and destination paths below a pool root: path -> link target.
    symlinks: dict[str, str] = field(default_factory=dict)
    # Inodes left unhashed on purpose: a demotion's source files with no file of their size on
    # the target dataset (nothing to reuse), so the copy's own hash is their verification.
    hash_at_copy: frozenset[InodeKey] = frozenset()
    # Every path at which a torrent that may still write (not settled) could be writing one of its
    # files, each spelling (``may_write_at``): what is linked there may change under a convergence.
    write_paths: frozenset[str] = frozenset()
    # Where a torrent that may still write but is not in this snapshot (a partial build: an event's
    # closure, a sweep's chunk) keeps its content (``converge.write_prefixes``): what is linked at or
    # under one of these may change under a convergence.
    write_prefixes: frozenset[str] = frozenset()
    # Files of torrents a partial build leaves out that reach through a symlink (a full build holds
    # every torrent: none): ``SnapshotBuilder._reaching`` says which are looked at.
    reaching: tuple[ReachingFile, ...] = ()
    # What a file of a torrent (or of ``reaching``) that passes through a noted symlink is, by
    # identity: its path -> the inode of this snapshot its links reach, followed (one stat each,
    # ``SnapshotBuilder._link_identities``). A folder symlink no torrent's path uses
    # (seeding/films -> seeding/movies) or a bind-mount alias in the target names a path no
    # noted link resolves, nor a tail matches: the inode does (``planner.reached_blockers``).
    reached_inodes: Mapping[str, InodeKey] = field(default_factory=dict)
    # What libraries reach through symlinks (``SnapshotBuilder._library``): a group any file of
    # which one reaches does not move (``planner.library_blockers``).
    library: LibrarySymlinks = NO_LIBRARY_SYMLINKS
    # Torrents the index held that a listing lacks, still within ``MISSING_GRACE_S``: a group sharing
    # a file with one stays (``planner.missing_holds``). Usually none: then nothing is looked up.
    missing: tuple[MissingTorrent, ...] = ()
    # ``policy.client_groups`` (``PolicyConfig.groups_of``): the groups of a torrent client's user,
    # where known, for ``access.access_lost``.
    client_groups: Mapping[int, frozenset[int]] = field(default_factory=dict)
    # Folders destination files would be in whose deepest existing folder is on another filesystem
    # than their seeding root (a dataset mounted below it: ``NESTED``): folder -> that folder.
    nested_destinations: Mapping[str, str] = field(default_factory=dict)
    # Indexes derived from the facts above by the rule that reads them, built on its first use and
    # kept for this snapshot (``converge._usage``): once per snapshot, not once per group.
    derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def pool(self, name: str) -> PoolFact:
        return next(p for p in self.pools if p.name == name)

    @property
    def primary(self) -> PoolFact:
        return next(p for p in self.pools if p.role == "primary")

    @property
    def cold(self) -> PoolFact:
        return next(p for p in self.pools if p.role == "cold")

    def seeding_pool_of(self, path: str) -> PoolFact | None:
        for p, root_of in self._roots_of():
            if root_of(path) is not None:
                return p
        return None

    def nested_root(self, path: str, fsid: str) -> str | None:
        """The seeding root holding ``path`` when ``fsid`` (the filesystem of the file there) is
        not that root's own: a dataset mounted below the root (``NESTED``); None otherwise, or when
        the root's filesystem is not known. Compared by id, so it costs no stat."""
        for p, root_of in self._roots_of():
            root = root_of(path)
            if root is not None:
                own = p.fsid_of_root(root)
                return root if own and fsid != own else None
        return None

    def _roots_of(self) -> tuple[tuple[PoolFact, Callable[[str], str | None]], ...]:
        """Each pool with its ``PoolFact.root_finder``, looked up once per snapshot and kept in
        ``derived``: the converge pass asks ``seeding_pool_of`` and ``nested_root`` for 10,000
        groups' files each."""
        got = self.derived.get(_ROOTS_OF)
        if got is None:
            got = self.derived[_ROOTS_OF] = tuple((p, p.root_finder()) for p in self.pools)
        return got


_ROOTS_OF = "facts.roots_of"  # its key in Snapshot.derived


NESTED = (
    "{path} is on another filesystem (a dataset mounted below seeding root {root}): configure it as its own "
    "seeding root (seeding_roots.<pool> takes a list of folders, none inside another)"
)
"""Why a file or destination below a seeding root but on another filesystem is left where it is:
``move.fsops`` never acts through a mount point below a root (a hard link cannot cross it, and a
rename or unlink there would act on another dataset than the one planned), so any step there
fails, every run. A folder that is its own seeding root is opened as one and works."""


def skipped_place_taken(at_destination: object | None, at_source: object | None) -> bool:
    """The one rule for a skipped file's (priority 0) place in a torrent's new folder: is it taken?

    A move or a repair builds only the wanted files; a skipped one stays unbuilt, and qBittorrent
    writes its pieces into whatever is at its path once a person raises its priority (no
    recheck). Something at that path that is not the torrent's own file there would be written
    into: another torrent's file, a library's hard link. So the place must be empty, or hold the
    very inode the torrent already has at its current path (the same path, as a repair in place
    keeps it). "Same content" is not enough: that inode's other links would take the writes.

    ``at_destination`` / ``at_source``: an identity of what is at each path (an ``InodeKey``, or
    ``(st_dev, st_ino)`` as the executor reads it live), None where nothing is. Read by the
    planner (``planner.skipped_place_blockers``), repair (``repair._group``) and the executor
    right before setLocation (``Executor._verify_view``)."""
    return at_destination is not None and at_destination != at_source


def skipped_place_reason(path: str) -> str:
    """Why a taken place (``skipped_place_taken``) refuses the move, naming the path."""
    return (
        f"a skipped file's place at the destination holds another file: {path}; "
        "qBittorrent would write into it if the file is wanted later"
    )


def write_place_reason(path: str, who: str) -> str:
    """Why a move puts no file at ``path``: ``who`` may write there (``converge.writer_at``), another
    torrent's skipped file's place most often; said as ``skipped_place_reason`` says its own."""
    return (
        f"a destination is a place another torrent may write into: {path} ({who}); "
        "qBittorrent would write into the file put there"
    )


def skipped_data_carried(size_at_source: int | None) -> bool:
    """The one rule for a skipped file's (priority 0) bytes at the torrent's current save path
    when a move or a repair gives it a new one: refused. setLocation makes qBittorrent carry
    them along to the new place, and nothing verifies them there (only the wanted files are
    built and checked). Nothing there (None) or an empty file carries nothing.

    ``size_at_source``: the size of what is at the skipped file's current path (any nonzero
    size, a folder's or a symlink's too, refuses). Read by the planner
    (``planner.skipped_blockers``) and repair (``repair._group``); the executor reads the
    same fact live right before setLocation (``executor._check_unwanted``)."""
    return bool(size_at_source)


def skipped_data_reason(path: str) -> str:
    """Why a skipped file's bytes at the current save path (``skipped_data_carried``) refuse it, naming the path."""
    return f"skipped file (priority 0) has data at the source, qBittorrent would carry it along unverified: {path}"


def torrent_file_path(save_path: str, name: str) -> tuple[str, bool]:
    """(the path of a torrent's file ``name`` under ``save_path``, whether it may be looked up):
    canonical (``canonical_path``) when the name is a path below the save path
    (``clients.model.is_relative_path``); else shown below the save path as given and never
    looked up (``posixpath.join`` would put "/etc/passwd" in place of the save path): the
    planner blocks that torrent. The one spelling of the snapshot and the converge pass."""
    if is_relative_path(name):
        return canonical_path(posixpath.join(save_path, name)), True
    return save_path.rstrip("/") + "/" + name, False


def canonical_path(path: str) -> str:
    """``normalize(path)``, or ``path`` unchanged when it cannot be (relative, ``..``): such a path is
    never looked up (``_lstat_file`` treats it as unsafe) and the planner blocks its file name."""
    try:
        return normalize(path)
    except PathMapError:
        return path


def may_write_at(bases: Iterable[str], names: Iterable[str], resolve: Callable[[str], str] | None = None) -> set[str]:
    """Every canonical path at which a torrent with the file ``names`` may be writing, under each of
    ``bases`` (its save path and its download path: qBittorrent writes an incomplete torrent into
    the download path when one is set, and reports it nowhere in the file list), each also as
    ``name + PART_SUFFIX``: the name qBittorrent writes an incomplete file under when told to
    append ``.!qB``, the same inode as ``name`` once it is renamed.

    With ``resolve`` (a ``LinkResolver``) each base and each file is also spelled as it resolves
    through symlinks: a save path through a symlinked folder names, resolved, a folder that the
    catalog knows by its real spelling only (the scan never follows a symlink), and a file that
    is a symlink is written at its target. Only to classify (what is linked at such a path
    waits): nothing is ever read or done through these paths. A ``LinkResolver`` resolves each
    folder once per build, so a file costs one lstat.
    """
    names = [n for name in names for n in (name, name + PART_SUFFIX)]
    out: set[str] = set()
    for base in dict.fromkeys(b for b in bases if b):
        # A relative base names no place on the host (the planner blocks such a torrent): resolved, it
        # would be read against qbhook's own working folder.
        resolving = resolve is not None and base.startswith("/")
        for b in dict.fromkeys((base, resolve(base)) if resolving else (base,)):
            for name in names:
                p = canonical_path(posixpath.join(b, name))
                out.add(p)
                if resolving:
                    out.add(canonical_path(resolve(p)))
    return out


# The kernel's limit on symlinks followed in one path lookup (MAXSYMLINKS, then ELOOP).
MAX_LINK_HOPS = 40
# Components looked at in one resolution, a link's target's included: PATH_MAX (4096) spells at most
# 2048, and a real folder has a few dozen. A hostile target (``b/b/b/...`` with ``b -> .``) stops here.
MAX_LINK_PARTS = 2048
# Components of a path asked about: a media path has a few dozen; a longer one (a hostile name) is
# answered as given rather than walked and kept.
MAX_PATH_PARTS = 256


class LinkResolver:
    """``resolve_links`` with the folders it resolved kept, for one snapshot or pass build: the files of
    10,000 torrents share a few thousand folders, each resolved once. A new build makes a new one (a
    folder may have been relinked since). Read-only, iterative (a chain of links costs no recursion).
    Only the folder of each path asked about is kept (not each of its ancestors): the cache grows
    like the paths asked about, however deep a hostile tree is.
    """

    def __init__(self) -> None:
        self.folders: dict[str, str] = {}  # the folder of a path asked about, as given -> resolved

    def __call__(self, path: str) -> str:
        """``path`` with every symlink on it resolved (as ``os.path.realpath``, not strict: from the first
        missing component on, the rest is kept as spelled), or ``path`` itself when that cannot be done:
        a relative path, a NUL, more than ``MAX_PATH_PARTS`` components, more than ``MAX_LINK_HOPS``
        links or ``MAX_LINK_PARTS`` components followed (a loop, a hostile chain). ``path`` itself
        then matches nothing more: the conservative answer."""
        if not path.startswith("/") or "\x00" in path:
            return path
        parts = [c for c in path.split("/") if c and c != "."]
        if len(parts) > MAX_PATH_PARTS:
            return path
        folder = "/" + "/".join(parts[:-1])
        real = self.folders.get(folder)
        start = len(parts) - 1 if real is not None else 0  # folder resolved in this build: the name only
        real = "/" if real is None else real
        budget = _Budget()
        for i in range(start, len(parts)):
            real = _resolve_part(real, parts[i], budget)
            if real is None:
                return path
            if i == len(parts) - 2:
                self.folders[folder] = real
        return real


class _Budget:
    """What is left of one resolution's ``MAX_LINK_HOPS`` and ``MAX_LINK_PARTS``; once a component is
    missing, the rest is only spelled (every lstat under it would fail)."""

    __slots__ = ("hops", "missing", "parts")

    def __init__(self) -> None:
        self.hops, self.parts, self.missing = MAX_LINK_HOPS, MAX_LINK_PARTS, False


def _resolve_part(real: str, part: str, budget: _Budget) -> str | None:
    """``real`` (resolved) joined with ``part``, resolved; a link's target's components are worked
    off a stack, not by recursion. None when a budget runs out or a read fails but for a missing name."""
    todo = [part]
    while todo:
        c = todo.pop()
        budget.parts -= 1
        if budget.parts < 0:
            return None
        if c in ("", "."):
            continue
        if c == "..":
            real = posixpath.dirname(real)
            continue
        nxt = posixpath.join(real, c)
        if budget.missing:
            real = nxt
            continue
        try:
            st = os.lstat(nxt)
        except (FileNotFoundError, NotADirectoryError):
            budget.missing = True  # not there (yet): spelled as given from here on
            real = nxt
            continue
        except (OSError, ValueError):
            return None
        if not stat_mod.S_ISLNK(st.st_mode):
            real = nxt
            continue
        budget.hops -= 1
        if budget.hops < 0:
            return None
        try:
            target = os.readlink(nxt)
        except (OSError, ValueError):
            return None
        if target.startswith("/"):
            real = "/"
        todo.extend(reversed(target.split("/")))
    return real


def resolve_links(path: str) -> str:
    """``path`` with every symlink on it resolved, or ``path`` itself when it cannot be (``LinkResolver``,
    keeping nothing: a builder uses one ``LinkResolver`` for all its paths)."""
    return LinkResolver()(path)


def split_links(paths: Iterable[str], roots: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(links inside a seeding root, other links) of one inode, canonical, each counted once.

    ``external_links`` is nlink minus the seeding links, so ``seeding//x`` and
    ``seeding/x`` counted as two would make a library-linked inode look seed-only
    and demote it. A spelling that cannot be made canonical (relative, ``..``) is
    dropped: the inode then looks *more* linked from outside, never less.
    """
    # One test per set of roots (paths.within_any): this runs for every inode of every snapshot.
    inside = within_any(tuple(roots))
    if isinstance(paths, (list, tuple)) and len(paths) == 1:
        # Most inodes have one link (a seed-only copy): the same answer without a set and two sorts.
        try:
            p = normalize(paths[0])
        except PathMapError:
            return (), ()
        return ((p,), ()) if inside(p) else ((), (p,))
    canon: set[str] = set()
    for p in paths:
        try:
            canon.add(normalize(p))
        except PathMapError:
            continue
    seeding = tuple(sorted(filter(inside, canon)))
    other = tuple(sorted(canon.difference(seeding)))
    return seeding, other


def _dir_prefix(root: str) -> str:
    """What a path strictly below the normpath-ed ``root`` starts with (whole components)."""
    return root if root.endswith("/") else root + "/"  # "/" and "//" (normpath keeps a leading "//")


def ancestors(path: str, roots: list[str]):
    """``path`` itself and its parents, stopping at the seeding root that holds it."""
    p = os.path.normpath(path)
    root = next((r for r in roots if is_within(p, r)), None)
    while True:
        yield p
        if root is None or p == os.path.normpath(root) or p == "/":
            return
        p = os.path.dirname(p)


def map_seeding_path(path: str, src_root: str, dst_root: str) -> str:
    """THE mapping from a torrent's path on one pool to its path on the other.

    Keeps the path relative to the seeding root exactly, so cross-seed link
    folders (``seeding/cross-seed/<tracker>/...``) stay where they were relative
    to the root (field lesson 4: a formula that dropped a prefix broke ~2,000
    torrents). The root itself maps onto ``dst_root`` (a torrent saved directly in the
    seeding root); anything else not inside ``src_root`` is refused (ValueError).
    """
    # Plain strings, not PurePosixPath: this runs for every torrent of every snapshot, and pathlib
    # parsing was a quarter of a 10,000-torrent snapshot (docs/benchmarks.md section 9).
    for label, v in (("path", path), ("source root", src_root), ("target root", dst_root)):
        if not v.startswith("/"):
            raise ValueError(f"{label} must be absolute: {v!r}")
        if ".." in v.split("/"):
            raise ValueError(f"{label} must not contain '..': {v!r}")
    p, src, dst = os.path.normpath(path), os.path.normpath(src_root), os.path.normpath(dst_root)
    if p == src:
        return dst
    src_prefix = _dir_prefix(src)
    # normpath keeps a leading "//" (POSIX leaves its meaning open): it is not below "/".
    if not p.startswith(src_prefix) or (src == "/" and p.startswith("//")):
        raise ValueError(f"{path} is not inside seeding root {src_root}")
    return _dir_prefix(dst) + p[len(src_prefix) :]


def map_to_pool(path: str, src: PoolFact, dst: PoolFact) -> str:
    """``path`` (below one of ``src``'s seeding roots) mapped onto ``dst`` by ``map_seeding_path``.

    The i-th seeding root of one pool maps onto the i-th of the other, so a cross-seed link
    folder configured as both pools' second root round-trips; when ``dst`` has no i-th root,
    its first (build) root takes the path. Raises ValueError when no root of ``src`` holds it.
    """
    roots = src.seeding_roots
    i = next((k for k, r in enumerate(roots) if is_within(path, r)), None)
    if i is None:
        raise ValueError(f"{path} is not inside a seeding root of pool {src.name}")
    targets = dst.seeding_roots
    return map_seeding_path(path, roots[i], targets[i] if i < len(targets) else targets[0])
