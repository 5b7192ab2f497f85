"""Repair (``qbhook repair``): a torrent whose files went missing, rebuilt from a copy the catalog holds.

No I/O: facts in (``RepairFacts``, gathered and verified live by ``qbhook.decide.repair_facts``), a plan
and the refusals out. Rules:

- Only the torrent's **wanted** files count (priority > 0, as in ``planner.wanted_only``).
- Each wanted file's content is what the index last knew of it (size + BLAKE3, kept after the
  file vanished: ``catalog.torrents.last_known_files``). A file never hashed before it went
  missing makes the torrent unrepairable: **content unknown**.
- A file matches a catalog inode with the same size and BLAKE3 (verified still there by the
  gatherer). A file no inode holds: **no full copy**.
- Every file must be found on **one dataset**, and that dataset must be a pool's seeding-root
  dataset: the view is made of hardlinks, which cannot cross datasets, and repair never copies
  (its promise is "zero bytes written"). Otherwise: **no copy on one dataset**.
- The torrent's own pool is preferred (same save path, no setLocation); else the pool whose
  seeding dataset holds the copy, at the mapped save path (``map_to_pool``, the one formula).
- Something other than the wanted content already at a view path refuses the torrent (a
  repair never overwrites); the right content already there is kept and used.
- A skipped file with data at the torrent's save path refuses a repair at a new one
  (``facts.skipped_data_carried``, the move planner's rule): setLocation would carry it along
  unverified. A repair in place moves nothing.
- A skipped file's place in a view at a new save path must be empty (``facts.skipped_place_taken``):
  qBittorrent would write into what is there once the file is wanted. In place, the torrent
  already names that path: nothing there changes.
- Other torrents are not read here. One that may write at a path the repair makes a file at (its
  skipped file's place, a file of one still downloading) would write into the link, a library
  file's inode: the executor asks the clients right before the first make, by the move's rule
  (``Executor._check_write_places``, ``converge.live_writer``), and refuses the group with nothing
  made. A cross-seed lost with it that the same run repairs onto the same content there is its own.
- A partial torrent (skipped files) whose client keeps the pieces shared with skipped files in
  libtorrent's part file is refused when that file is not in its save path: those pieces would
  fail the recheck (``MissingTorrent.part_file_missing``, looked for by the gatherer).

Steps of one repair (one group per torrent): ``link``/``mkempty`` the missing files, ``verify_view``,
``repair`` (stop, setLocation if the path changes, recheck, 100 %, start), ``verify_group``.
Nothing is deleted but what a failed repair made: its links and empty files go again, the
torrent left stopped and missing them (``Executor._close_failed_repair``), so a later repair can
retry.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field

from qbhook.catalog.identity import group_id_of
from qbhook.clients.model import is_relative_path
from qbhook.decide.facts import (
    ContentKey,
    PoolFact,
    map_to_pool,
    skipped_data_carried,
    skipped_data_reason,
    skipped_place_reason,
    skipped_place_taken,
)
from qbhook.decide.plan import (
    Action,
    GroupPlan,
    Link,
    Member,
    MkEmpty,
    Plan,
    Repair,
    Step,
    VerifyGroup,
    VerifyView,
)
from qbhook.units import human_bytes as _b


@dataclass(frozen=True, slots=True)
class RepairFile:
    index: int
    rel: str  # relative to the save path, '/'-separated
    size: int
    priority: int
    blake3: str | None  # hex, as last known; None: never hashed


@dataclass(frozen=True, slots=True)
class MissingTorrent:
    hash: str
    instance: str
    name: str
    state: str
    save_path: str  # host path
    files: tuple[RepairFile, ...]
    # The torrent skips files and its client keeps the pieces they share with wanted ones in
    # libtorrent's part file (``.<infohash>.parts``), which is not in its save path.
    part_file_missing: bool = False


@dataclass(frozen=True, slots=True)
class CatalogCopy:
    """A catalog inode holding some content, verified by the gatherer to still be at ``path``."""

    path: str
    fsid: str
    ino: int


@dataclass(frozen=True, slots=True)
class Present:
    """What is at a view path now (``blake3``: a valid stored hash, else None)."""

    fsid: str
    ino: int
    size: int
    blake3: str | None


@dataclass(frozen=True)
class RepairFacts:
    torrents: tuple[MissingTorrent, ...]
    pools: tuple[PoolFact, ...]
    copies: Mapping[ContentKey, tuple[CatalogCopy, ...]] = field(default_factory=dict)
    present: Mapping[str, Present | None] = field(default_factory=dict)  # every view_paths() path
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class Unrepairable:
    hash: str
    instance: str
    name: str
    reason: str

    def as_dict(self) -> dict:
        return {"hash": self.hash, "instance": self.instance, "name": self.name, "reason": self.reason}


def wanted(t: MissingTorrent) -> list[RepairFile]:
    return [f for f in t.files if f.priority]


def source_pool(t: MissingTorrent, pools: tuple[PoolFact, ...]) -> PoolFact | None:
    return next((p for p in pools if p.root_of(t.save_path) is not None), None)


def save_paths(t: MissingTorrent, pools: tuple[PoolFact, ...]) -> list[tuple[PoolFact, str]]:
    """Where the view may go, in order of preference: the torrent's own pool, then the others mapped."""
    src = source_pool(t, pools)
    if src is None:
        return []
    return [(src, t.save_path)] + [(p, map_to_pool(t.save_path, src, p)) for p in pools if p is not src]


def view_paths(t: MissingTorrent, pools: tuple[PoolFact, ...]) -> list[str]:
    """Every path the decision looks at (the gatherer lstat-s them into ``RepairFacts.present``):
    each file's, skipped ones' too (their place must be empty, ``_group``), at every save path."""
    return [
        posixpath.join(save, f.rel) for _p, save in save_paths(t, pools) for f in t.files if is_relative_path(f.rel)
    ]


def plan_repairs(facts: RepairFacts) -> tuple[Plan, list[Unrepairable]]:
    groups: list[GroupPlan] = []
    refused: list[Unrepairable] = []
    for t in facts.torrents:
        out = plan_one(facts, t)
        if isinstance(out, str):
            refused.append(Unrepairable(t.hash, t.instance, t.name, out))
        else:
            groups.append(out)
    return Plan(groups=groups, created_at=facts.now), refused


# States in which the client writes nothing: a repair links catalog copies (maybe library files)
# under the torrent's save path before the executor stops it, so a torrent still running (a
# force-recheck left it downloading at 85 %) would write arriving blocks into those links.
QUIET_STATES = frozenset({"missingFiles", "stoppedDL", "stoppedUP"})

# What a failed repair writes into its group's journaled reason, last, when it leaves its torrent
# otherwise than it found it (stopped, or at another save path): the executor writes it
# (``Executor._repair_state_back``), ``qbhook status`` lists it under "Needs you". Here, not in
# the executor: status reads it and must not load the executor for it.
NOT_AS_FOUND = "NOT AS FOUND"


def plan_one(facts: RepairFacts, t: MissingTorrent) -> GroupPlan | str:
    """The repair of one torrent, or the reason it cannot be repaired."""
    files = wanted(t)
    if not files:
        return "every file is skipped (priority 0): nothing to repair"
    if not all(is_relative_path(f.rel) for f in files):
        return "unsafe file name in the torrent"
    options = save_paths(t, facts.pools)
    if not options:
        return f"save path outside every seeding root: {t.save_path}"
    unknown = [f.rel for f in files if f.size and f.blake3 is None]
    if unknown:
        return f"content unknown: {_few(unknown)} never hashed before going missing"
    data = [f for f in files if f.size]
    nocopy = [f.rel for f in data if not facts.copies.get((f.size, f.blake3))]
    if nocopy:
        return f"no full copy: nothing in the catalog holds {_few(nocopy)}"
    common: set[str] | None = None
    for f in data:
        here = {c.fsid for c in facts.copies[(f.size, f.blake3)]}
        common = here if common is None else common & here
    choice = next(((p, save) for p, save in options if common is None or p.seeding_fsid in common), None)
    if choice is None:
        where = "a dataset without a seeding root" if common else f"{_spread(facts, data)} datasets"
        return f"no copy on one dataset: the copies are on {where}; repair links, it never copies across pools"
    pool, new_save = choice
    if t.part_file_missing:
        # A piece shared by a wanted file and a skipped one is checked from both: without the
        # skipped side's bytes the recheck ends under 100 %, the view linked for nothing.
        return (
            f"partial torrent ({len(t.files) - len(files)} skipped file(s)) whose part file .{t.hash}.parts is "
            f"not in {t.save_path}: a piece shared with a skipped file would fail the recheck"
        )
    if t.state not in QUIET_STATES:  # last: a torrent that cannot be repaired anyway says why first
        return (
            f"it is {t.state}, not stopped: stop it first (a repair links files under it, and it would write into them)"
        )
    return _group(facts, t, files, options[0][0], pool, new_save)


def _group(
    facts: RepairFacts, t: MissingTorrent, files: list[RepairFile], src: PoolFact, pool: PoolFact, new_save: str
) -> GroupPlan | str:
    base = new_save + "/"
    if (why := _skipped_refusal(facts, t, new_save)) is not None:
        return why
    make: list[Step] = []
    for f in files:
        dst = base + f.rel
        there = facts.present.get(dst)
        if there is not None:
            if there.size != f.size or (f.size and there.blake3 != f.blake3):
                return f"something else is already at {dst} (a repair never overwrites)"
            continue  # the right content is already in place
        if f.size == 0:
            make.append(MkEmpty(base, f.rel))
        else:
            keep = min(
                (c for c in facts.copies[(f.size, f.blake3)] if c.fsid == pool.seeding_fsid), key=lambda c: c.path
            )
            make.append(Link(keep.path, base, f.rel, f.size, f.blake3))
    size = sum(f.size for f in files)
    steps: list[Step] = [
        *make,
        VerifyView(
            t.hash,
            t.instance,
            new_save,
            tuple(f.rel for f in files),
            tuple(f.size for f in files),
            tuple(f.blake3 for f in files),
        ),
        Repair(t.hash, t.instance, t.save_path, new_save, size),
        VerifyGroup((Member(t.hash, t.instance, new_save),)),
    ]
    moved = "" if new_save == t.save_path else f"; save path moves to {new_save}"
    skipped = len(t.files) - len(files)
    return GroupPlan(
        # The client in the id too (the planner's rule): one hash in two clients (each copy at its own
        # save path) is two repairs, and a group's journal rows, lock and outcome are found by this id.
        group_id=group_id_of([(t.instance, t.hash)]),
        torrents=[t.hash],
        names=[t.name],
        instances=[t.instance],
        action=Action.REPAIR,
        reason=(
            f"{t.state}: rebuilt from catalog copies on {pool.name} ({len(make)} link(s), {_b(size)} "
            f"linked, 0 bytes copied){moved}" + (f"; {skipped} skipped file(s) left as they are" if skipped else "")
        ),
        source_pool=src.name,
        target_pool=pool.name,
        payload_bytes=size,
        steps=steps,
    )


def _skipped_refusal(facts: RepairFacts, t: MissingTorrent, new_save: str) -> str | None:
    """Why a skipped file refuses the repair at ``new_save``, or None. In place nothing moves: a
    skipped file's place is the one the torrent names already, and its bytes stay where they are."""
    if new_save == t.save_path:
        return None
    for f in t.files:
        if f.priority or not is_relative_path(f.rel):
            continue
        old = facts.present.get(posixpath.join(t.save_path, f.rel))
        if old is not None and skipped_data_carried(old.size):
            # setLocation would carry it along unverified: the executor refused the view anyway
            # (``_check_unwanted``), each run, after linking the files and stopping the torrent.
            return skipped_data_reason(posixpath.join(t.save_path, f.rel))
        if skipped_place_taken(_identity(facts.present.get(posixpath.join(new_save, f.rel))), _identity(old)):
            return skipped_place_reason(posixpath.join(new_save, f.rel))
    return None


def _identity(p: Present | None) -> tuple[str, int] | object | None:
    """What is at a path, for ``skipped_place_taken``: its inode, None if nothing; a folder or a
    symlink (no filesystem id, ``repair_facts._present``) is itself only."""
    if p is None:
        return None
    return (p.fsid, p.ino) if p.fsid else object()


def _few(rels: list[str]) -> str:
    return ", ".join(rels[:2]) + (f" (+{len(rels) - 2} more)" if len(rels) > 2 else "")


def _spread(facts: RepairFacts, data: list[RepairFile]) -> int:
    return len({c.fsid for f in data for c in facts.copies[(f.size, f.blake3)]})
