"""Library symlinks: the symbolic links a library keeps into the seeding roots, as facts for orphans and the planner.

The model: a library (an *arr media folder, a script's or a media manager's symlink mode)
may use a torrent's data through a symbolic link instead of a hard link. Its inode then has no
link outside the seeding roots, so once no torrent references it the orphans walk called it
reclaimable, the quarantine held it and the purge deleted the library's only copy, its
symlink left dangling. So every symlink that lies in a configured pool outside its seeding
roots is collected (``collect``) and followed, read-only (one ``stat``, and ``realpath``
where the target is a folder or is gone):

* a file target is kept by its (st_dev, st_ino): whatever path the walk meets it by;
* a folder target by its real path: everything below it; and by its identity (st_dev, st_ino):
  everything below that folder whichever path reaches it. ``realpath`` sees through symlinks,
  never through a bind mount: a library that links through one (an export, a container's alias
  folder of the seeding data, on the same filesystem) names the torrent's folder by a path the
  facts never spell, its symlink was missed and dangled after the demote. ``reaching`` matches an
  ancestor folder by identity when its caller can say what each folder is (``identity``), the real
  path staying the rule for a target that is gone;
* a target that is gone (dangling: its file was quarantined already, or never there) by the
  real path it names: the purge keeps the held file quarantined from that place; and, read as a
  container's path through each client's ``path_map`` (an *arr app in a container writes its
  own spelling, ``/data/...``), by what that names on the host.

Two rules read these facts. ``orphans.library_link``: what a symlink reaches is a library's,
never reclaimable (the walk's ``decide`` and the purge's ``screen_held`` both ask it). And
``planner.library_use``: a payload group a symlink reaches does not move (a demote deleted its
/stash file as surely as a purge), read through ``Snapshot.library`` (``facts.LibrarySymlinks``:
the snapshot builder's mapping of a file target's (st_dev, st_ino) onto its inode key, walked
once per snapshot, once per sweep, and only when some group may move). Here, below ``decide``,
since both the planner's snapshot and ``move.orphans`` read it; it only reads.

The collection never follows a symlinked folder while walking (``find -P``), and enters neither
qbhook's own folders nor ``scan.ignore_names`` (``.zfs`` among them: pruned at every level,
else each nested dataset's snapshots were walked) nor the seeding roots of any pool (a symlink
there may be cross-seed's, and what a torrent's file reaches is a torrent's: ``orphans.references``;
one there that no torrent lists as its file, a library's below a root set too high or beside a
torrent, ``orphans.library_of`` has followed too, ``followed``, from ``below_seeding_root``, for
the orphans walk, the purge of holding and the finish of a quarantine alike). Unlike the
scan and the orphans walk, it crosses into every filesystem mounted below a pool root (no
``-xdev``): a library on a dataset of its own nested in the pool (tank/media beside
tank/torrents, the usual ZFS layout) is exactly the one that uses symlinks, since hard links
cannot cross datasets, and not seeing it deleted its data. It only reads, so crossing a mount
can do no harm. A pool root below another one is walked once, as part of the outer one's walk.

It can only protect more, never act: a symlink onto a folder holding a whole seeding root
(``media/all -> /tank``) makes every orphan below that root a library's, and every group there
stay; kept (only ever more protection) but named (``LibraryLinks.whole_roots``, a warning of
``qbhook orphans``). A walk that cannot finish (find failing on an unreadable folder), or whose
folders keep changing under it (``WALKS`` walks each seeing an entry vanish: a folder renamed
meanwhile hides its new name, ``_pool_links``), raises ``LibraryLinksUnseen``, naming why: a
library not seen is data deleted. ``orphans`` refuses then (``OrphansRefused``), a plan withholds
every move (``planner.library_blockers``), each blocked group naming the line.

A plan's walk is its snapshot's, but a symlink may be made after it: between that snapshot and
the executor's delete of the /stash links lie the copy, relocation and verification (minutes
for a big payload). So the executor walks again (``collect``, this one walker) before a group's
first delete and every so often during its deletes, on the newcomer check's cadence
(``executor._look_due``), one walk per look shared by the groups of a run while it is younger
than that cadence: a symlink reaching an old link rolls the group back before its first delete,
and stops the rest of its deletes after (``Executor._check_no_library_symlink``), as does a
walk that cannot finish. What is still not seen: one made inside the last interval.
"""

from __future__ import annotations

import os
import posixpath
import stat as stat_mod
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from qbhook.catalog import findwalk
from qbhook.errors import LibraryLinksUnseen, PathMapError
from qbhook.pathmap import PathMap

# What a folder is, by its path: (st_dev, st_ino), None when that cannot be told (the caller's
# look: ``dirfd.FolderReader.identity`` through verified descriptors, cached per folder).
Identity = Callable[[str], "tuple[int, int] | None"]


@dataclass(frozen=True)
class LibraryLinks:
    """What the libraries' symlinks reach: identities of file and folder targets, real paths of
    folder and gone ones."""

    files: dict[tuple[int, int], str] = field(default_factory=dict)  # (st_dev, st_ino) -> a symlink to it
    places: dict[str, str] = field(default_factory=dict)  # real path (a folder, or gone) -> a symlink to it
    folders: dict[tuple[int, int], str] = field(default_factory=dict)  # a folder's (st_dev, st_ino) -> a symlink to it

    def __len__(self) -> int:
        return len(self.files) + len(self.places)

    def reaching(self, path: str, key: tuple[int, int] | None = None, identity: Identity | None = None) -> str | None:
        """A symlink that reaches ``path`` (or the file ``key`` names): ``path`` is at or below a
        place, or below a folder target by identity (a folder above ``path`` that ``identity``,
        given, says is one: (st_dev, st_ino) by path, None when it has none, cached by the caller
        so each distinct folder is looked at once), or ``key`` is a file target; None when none
        does. One lookup per folder above ``path``, not one per symlink (a symlink-mode library
        has one per file)."""
        if key is not None and (link := self.files.get(key)) is not None:
            return link
        by_id = self.folders if identity is not None else None
        if not self.places and not by_id:
            return None
        p = os.path.normpath(path)
        below = False  # ``path`` itself is a file's (a delete's, a group file's): no folder to ask of
        while True:
            if (link := self.places.get(p)) is not None:
                return link
            if below and by_id and (got := identity(p)) is not None and (link := by_id.get(got)) is not None:
                return link
            below = True
            up = posixpath.dirname(p)
            if up == p:
                return None
            p = up

    def merged(self, other: LibraryLinks) -> LibraryLinks:
        """What ``self`` or ``other`` reaches (``self``'s symlink named where both reach a target)."""
        if not other:
            return self
        return LibraryLinks(
            {**other.files, **self.files}, {**other.places, **self.places}, {**other.folders, **self.folders}
        )

    def whole_roots(self, roots) -> list[tuple[str, str]]:
        """(symlink, seeding root) for each of ``roots`` a folder symlink reaches all of (its place
        is the root or holds it): nothing below that root is reclaimable, which a person must be
        told (a symlink to the pool root, to ``/``). Sorted, one per root."""
        out = []
        for root in roots:
            for spelled in dict.fromkeys((os.path.normpath(str(root)), os.path.realpath(str(root)))):
                if (link := self.reaching(spelled)) is not None:
                    out.append((link, os.path.normpath(str(root))))
                    break
        return sorted(set(out))


NO_LINKS = LibraryLinks()


def matched_folders(found: LibraryLinks, paths: Iterable[str], identity: Identity, stop) -> dict[str, str]:
    """Each folder above one of ``paths`` (files), up to where ``stop`` says (a pool root, whose
    own folder is asked too), that is a folder target of ``found`` by identity, spelled as that
    path spells it: folder path -> symlink. What the snapshot adds to its places, so a folder
    symlink written through a second path of the folder (a bind mount) reaches the files the
    facts spell by the first (``LibraryLinks.reaching`` by path only, in the planner: no I/O).
    One ``identity`` per distinct folder: a folder met again is not climbed from twice."""
    if not found.folders:
        return {}
    out: dict[str, str] = {}
    seen: set[str] = set()
    for path in paths:
        d = posixpath.dirname(path)
        while d not in seen:
            seen.add(d)
            if (got := identity(d)) is not None and (link := found.folders.get(got)) is not None:
                out[d] = link
            up = posixpath.dirname(d)
            if stop(d) or up == d:
                break
            d = up
    return out


def respelled(places: dict[str, str], roots) -> dict[str, str]:
    """``places`` (real paths) also spelled below each of ``roots`` (pool roots) that is not its
    real path (a pool root reached through a symlink, /stash -> /mnt/stash): facts and plans
    spell paths from the configured root, and a place only reaches what is spelled as it or below
    it. The one home of that respelling: the snapshot's and the executor's."""
    out = dict(places)
    for r in roots:
        root = os.path.normpath(str(r))
        real = os.path.realpath(root)
        if real == root:
            continue
        for place, link in places.items():
            if place == real or place.startswith(real.rstrip("/") + "/"):
                out.setdefault(root + place[len(real) :], link)
    return out


def target(link: str) -> str:
    """What ``link`` names, as written (a reason shows it); "?" if it is gone since the walk."""
    try:
        return os.readlink(link)
    except (OSError, ValueError):
        return "?"


def collect(cfg) -> LibraryLinks:
    """Every symlink in every configured pool outside its seeding roots, followed (see the model)."""
    files: dict[tuple[int, int], str] = {}
    places: dict[str, str] = {}
    folders: dict[tuple[int, int], str] = {}
    ignore = findwalk.ignore_set(cfg.scan)
    # Every pool's seeding roots, in every pool's walk: one pool's folder may hold another's.
    seeds = {os.path.normpath(str(r)) for p in cfg.pools for r in p.seeding_roots}
    maps = host_maps(cfg)
    # The whole pool is seeding data, or nothing there (`config check`'s to say): not walked.
    roots = {os.path.normpath(str(p.path)): p.name for p in reversed(cfg.pools)}  # a root once, its first pool
    roots = {r: n for r, n in roots.items() if r not in seeds and os.path.isdir(r)}
    for pool in cfg.pools:
        root = os.path.normpath(str(pool.path))
        if roots.get(root) != pool.name:
            continue  # not walked, or walked already (two pools, one root)
        if any(_below(root, r) for r in roots) and not any(root == s or _below(root, s) for s in seeds):
            continue  # in the walk of a pool root above it (mounts are crossed; a seeding root is pruned)
        _pool_links(pool.name, root, seeds, ignore, maps, (files, places, folders))
    return LibraryLinks(files, places, folders)


def followed(links: Iterable[str], maps: list[PathMap]) -> LibraryLinks:
    """``links``, symlinks some other walk met (``below_seeding_root``'s that no torrent lists as
    its file: a library below a root set too high, which ``collect`` never enters), followed as
    ``collect`` follows its own. One gone since that walk listed it raises
    ``LibraryLinksUnseen``: renamed, its new name was never seen (``_pool_links``' rule)."""
    got: tuple[dict, dict, dict] = ({}, {}, {})
    for link in links:
        if _follow(link, got, maps):
            raise LibraryLinksUnseen(
                f"the library symlink {link} vanished while qbhook looked (renamed, its new name unseen)",
                hint="run it again once the library is done renaming (an *arr's import)",
            )
    return LibraryLinks(*got)


# Walks of one pool before its changing is called unseen: enough to outlast one rename (an *arr's
# import renames a folder or two, then is quiet), few enough to bound a busy library's cost.
WALKS = 3


def _pool_links(pool: str, root: str, seeds: set[str], ignore: set[bytes], maps: list[PathMap], into: tuple) -> None:
    """The symlinks below ``root`` followed ``into`` (files, places, folders), from a walk that saw no
    entry vanish; a walk that saw one is walked again, up to ``WALKS``, then ``LibraryLinksUnseen``.

    Why no vanish is tolerated: an entry gone between a walk's listing and its look was once taken
    to hide nothing (files come and go all the time). But a folder renamed there (an *arr renames
    "Movie 2020" to "Movie (2020)") is gone under the name listed, and its new name, made after
    that listing, is never walked: every symlink below it unseen, the data they use deleted. A
    renamed symlink likewise (find names it by its listed name, unlooked-at). Which it was cannot be
    told once it is gone, so any vanish redoes the walk; find's and the Python walk's one rule."""
    for _ in range(WALKS):
        links, gone = _symlinks(pool, root, seeds, ignore)
        got: tuple[dict, dict, dict] = ({}, {}, {})
        # A symlink gone when followed: itself, or a folder above it, renamed since the listing.
        gone = gone or next((link for link in links if _follow(link, got, maps)), None)
        if gone is None:
            for kept, new in zip(into, got, strict=True):
                for k, v in new.items():
                    kept.setdefault(k, v)
            return
    raise _kept_changing(pool, gone)


def below_seeding_root(pool: str, root: str, ignore: set[bytes]) -> list[str]:
    """The symlinks below the seeding root ``root`` of ``pool``, unfollowed, for the rule that
    tells a library's from a torrent's (``orphans.library_of``: the orphans walk, the purge of
    holding, the finish of a quarantine that died; the orphans walk's own listing passes over a
    folder renamed while it lists, and so hid the symlinks below its new name, R116).
    ``collect``'s walk (nothing followed, mounts crossed, ignored names pruned, no other prune:
    which folders are a torrent's is that rule's, by set lookups, not one find test per folder
    each) and its rule for an entry that vanished (walked again, up to ``WALKS``)."""
    gone = None
    for _ in range(WALKS):
        links, gone = _symlinks(pool, root, set(), ignore)
        if gone is None:
            return links
    raise _kept_changing(pool, gone)


def _kept_changing(pool: str, gone: str | None) -> LibraryLinksUnseen:
    """The refusal of a walk whose every try saw an entry vanish (``_pool_links``' rule)."""
    return LibraryLinksUnseen(
        f"cannot look for library symlinks in pool {pool} (its folders kept changing: each of {WALKS}"
        f" walks saw an entry vanish, as a renamed folder does, the last {gone})",
        hint="run it again once the library is done renaming (an *arr's import)",
    )


def _below(path: str, root: str) -> bool:
    """``path`` lies strictly below ``root`` (both normalized)."""
    return path != root and path.startswith(root.rstrip("/") + "/")


def _follow(link: str, got: tuple[dict, dict, dict], maps: list[PathMap] = ()) -> bool:
    """One symlink followed, read-only: its target's identity, or the real path it names. A
    dangling one is also read as a container's path (``_as_host``): an *arr app in a container
    that links in symlink mode writes its own spelling, /data/... where the host has /stash/data/...
    Whether the symlink itself is gone since the walk listed it (nothing kept then)."""
    if _reach(link, link, got):
        return False
    try:
        os.lstat(link)  # only for one that reached nothing: dangling, or itself gone
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        pass
    for host in _as_host(link, maps):
        _reach(host, link, got)
    return False


def _reach(path: str, link: str, got: tuple[dict, dict, dict]) -> bool:
    """What ``path`` names, followed, kept for ``link`` in ``got`` (files, places, folders): a
    file's identity, else (a folder, or nothing there) the real path, and a folder's identity too;
    whether something was there."""
    files, places, folders = got
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # dangling, a loop, a name too long: the place it names
        st = None
    if st is not None and not stat_mod.S_ISDIR(st.st_mode):
        files.setdefault((st.st_dev, st.st_ino), link)
        return True
    if st is not None:
        folders.setdefault((st.st_dev, st.st_ino), link)
    try:
        places.setdefault(os.path.realpath(path), link)
    except (OSError, ValueError, RecursionError):
        # Nothing it names can be spelled: it reaches nothing the walk meets. RecursionError:
        # realpath recurses once per link, and a planted chain of ~1,000 exhausts the stack (R74);
        # the kernel gives up after 40, so no client reaches anything through it either.
        pass
    return st is not None


def _as_host(link: str, maps: list[PathMap]) -> list[str]:
    """Where a dangling symlink's absolute target would be on the host, through each client's
    path_map that covers it (``as_host``; TRaSH's guides give every container the same /data mount)."""
    try:
        target = os.readlink(link)
    except (OSError, ValueError):
        return []
    return as_host(target, maps)


def host_maps(cfg) -> list[PathMap]:
    """Every configured client's path_map that maps anything: what ``as_host`` reads a link
    written in a container's spelling through, whichever client's container wrote it."""
    return [PathMap(c.path_map) for c in cfg.clients if c.path_map]


def as_host(target: str, maps) -> list[str]:
    """Where ``target``, an absolute path as a container spells it (a dangling symlink's), is on
    the host, through each of ``maps`` (the clients' path_maps) that covers it. The one reading of
    a container's spelling met on disk: a library's symlink (``_as_host``) and a torrent's own
    file that dangles (``orphans._identities``, and the executor's newcomer check,
    ``executor._uses_doomed``: cross-seed in a container links in its spelling).
    Only ever more protection: a wrong guess keeps more, never less."""
    if not target.startswith("/"):
        return []
    out = []
    for m in maps:
        try:
            out.append(m.to_host(target))
        except (PathMapError, ValueError):
            continue  # not under this client's container folders
    return out


def find_cmd(root: str, seeds: set[str], ignore: set[bytes]) -> list[bytes]:
    """find below ``root`` printing its symlinks, NUL-separated: -P never follows one; no -xdev,
    every filesystem mounted below is walked (see the model); qbhook's own folders, ignored names
    (at every level) and the seeding roots are pruned (folders only: ``findwalk.find_cmd``'s
    rule), each named exactly."""
    assert findwalk.FIND is not None
    tests = [t for n in sorted(ignore) for t in (b"-o", b"-name", findwalk._GLOB_SPECIAL.sub(rb"\\\1", n))]
    tests += [t for s in sorted(seeds) for t in (b"-o", b"-path", findwalk._GLOB_SPECIAL.sub(rb"\\\1", os.fsencode(s)))]
    cmd = [os.fsencode(findwalk.FIND), b"-P", os.fsencode(root), b"-mindepth", b"1"]
    if tests:
        cmd += [b"-type", b"d", b"(", *tests[1:], b")", b"-prune", b"-o"]
    return cmd + [b"-type", b"l", b"-print0"]


def _symlinks(pool: str, root: str, seeds: set[str], ignore: set[bytes]) -> tuple[list[str], str | None]:
    """The symlinks below ``root`` outside ``seeds`` (find's walk; a Python one without find), and
    an entry the walk saw vanish (None: none did; ``_pool_links`` says why that matters)."""
    if findwalk.FIND is None:
        return _walk(root, seeds, {os.fsdecode(n) for n in ignore})
    cmd = find_cmd(root, seeds, ignore)
    try:
        env = findwalk._ENV
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env, cwd="/", check=False)
    except OSError as e:  # find not started (gone, E2BIG: a command line too long, no memory): nothing seen
        raise LibraryLinksUnseen(
            f"cannot look for library symlinks in pool {pool} (cannot run {findwalk.FIND}: {e.strerror or e})",
            hint=f"a name of {IGNORE} too long for a command line makes it so; else run it again",
        ) from None
    said = [w for w in os.fsdecode(done.stderr).splitlines() if w]
    why = [w for w in said if not w.endswith(_VANISHED)]
    if done.returncode != 0 and (why or not said):
        failed = why[0] if why else f"find exited {done.returncode}"
        raise LibraryLinksUnseen(
            f"cannot look for library symlinks in pool {pool} ({failed})",
            hint=f"add a folder qbhook may skip to {IGNORE}",
        )
    # find's line: "<find>: '<path>': No such file or directory"; the path, as find quoted it.
    gone = next((w[: -len(_VANISHED)].partition(": ")[2] or w for w in said if w.endswith(_VANISHED)), None)
    return [os.fsdecode(p) for p in done.stdout.split(b"\0") if p], gone


IGNORE = "scan.ignore_names"  # what a person changes to let the walk finish
_VANISHED = ": No such file or directory"  # find's words for it (LC_ALL=C)


def _walk(root: str, seeds: set[str], ignore: set[str]) -> tuple[list[str], str | None]:
    """``_symlinks`` without find: the same walk (nothing followed, mounts crossed, same prunes),
    the same rule (an entry gone since its listing ends the walk: it is walked again)."""
    out: list[str] = []
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                listed = [(de, de.stat(follow_symlinks=False)) for de in it]
        except FileNotFoundError as e:
            return out, e.filename or d  # d, or an entry of it, gone since its listing (renamed, say)
        except OSError as e:
            raise LibraryLinksUnseen(
                f"cannot look for library symlinks below {d} ({e.strerror})",
                hint=f"add a folder qbhook may skip to {IGNORE}",
            ) from None
        for de, st in listed:
            if stat_mod.S_ISLNK(st.st_mode):
                out.append(de.path)
            elif stat_mod.S_ISDIR(st.st_mode) and de.name not in ignore and de.path not in seeds:
                stack.append(de.path)
    return out, None
