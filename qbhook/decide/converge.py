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
  index, so every group picks the same one and a kept inode is never replaced.
- **Replaced** (a victim): an inode of a torrent of this group, non-empty, hashed,
  with no link outside the seeding roots (every link of it is a known seeding link,
  so replacing them all frees it; a library file is never a victim), on the same
  dataset as the kept inode (a nested dataset has another fsid: hardlinks cannot
  reach it). *Every* known seeding link of a victim is relinked, each one a step.
- Only names inside seeding roots are ever replaced; the kept inode is only linked
  from. Library files are never modified, renamed or relinked.
- A victim read or written by a torrent that is not complete and stable (or whose
  file is not wanted) waits: its bytes may still change.
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

from dataclasses import dataclass

from qbhook.clients.model import SEEDING_STATES
from qbhook.decide.facts import (
    ContentKey,
    InodeFact,
    InodeKey,
    Snapshot,
    TorrentFact,
)
from qbhook.decide.plan import Action, Converge, ConvergeKeep, Delete, GroupPlan, Step
from qbhook.units import human_bytes


@dataclass(frozen=True, slots=True)
class Convergence:
    steps: tuple[Step, ...]
    bytes_freed: int  # victim inodes whose last seeding link goes, each counted once
    inodes: int  # victim inodes
    onto_library: int  # of those, converged onto an inode a library uses


def keeper(snap: Snapshot, keys: list[InodeKey]) -> InodeKey:
    """The inode to keep among ``keys`` (one content on one dataset)."""

    def rank(k: InodeKey):
        i = snap.inodes[k]
        return (0 if i.external_links else 1, -i.nlink, i.mtime_ns, i.ino)

    return min(keys, key=rank)


def candidates(snap: Snapshot, inode: InodeFact) -> list[InodeKey]:
    """Every known inode with ``inode``'s content on its dataset (itself included), that a link can reach."""
    content: ContentKey | None = inode.content
    if content is None:
        return []
    keys = {k for k in snap.content.get(content, ()) if k[0] == inode.fsid and k in snap.inodes}
    keys.add(inode.key)
    return sorted(
        k
        for k in keys
        if snap.inodes[k].content == content and (snap.inodes[k].seeding_paths or snap.inodes[k].other_paths)
    )


def settled(progress: float, state: str) -> bool:
    """A complete torrent in a state known to write none of its files (``clients.model.SEEDING_STATES``,
    a whitelist: a state a client adds later waits until someone decides, review 21)."""
    return progress >= 1 and state in SEEDING_STATES


def _settled(t: TorrentFact) -> bool:
    return settled(t.progress, t.state)


def plan_group(snap: Snapshot, group: list[TorrentFact]) -> Convergence | None:
    """The converge steps for ``group``'s duplicate inodes, or None when there is nothing to converge."""
    users: dict[InodeKey, list[tuple[TorrentFact, int]]] = {}
    for t in group:
        for f in t.files:
            if f.inode is not None and f.inode in snap.inodes:
                users.setdefault(f.inode, []).append((t, f.priority))
    steps: list[Step] = []
    freed = n = onto_library = 0
    for key in sorted(users):
        inode = snap.inodes[key]
        if inode.size == 0 or inode.content is None or inode.external_links or not inode.seeding_paths:
            continue
        if not all(_settled(t) and prio != 0 for t, prio in users[key]):
            continue
        keys = candidates(snap, inode)
        if len(keys) < 2:
            continue
        k = keeper(snap, keys)
        if k == key:
            continue  # this one is kept; the others converge onto it from their own groups
        kept = snap.inodes[k]
        # Link from a seeding name of the kept inode when it has one (qbhook's own ground), else its library name.
        keep_path = min(kept.seeding_paths) if kept.seeding_paths else min(kept.other_paths)
        for p in inode.seeding_paths:
            steps.append(
                Converge(
                    p,
                    inode.fsid,
                    inode.ino,
                    inode.size,
                    inode.mtime_ns or None,
                    inode.blake3,
                    ConvergeKeep(keep_path, kept.fsid, kept.ino, bool(kept.external_links)),
                )
            )
        freed += inode.size
        n += 1
        onto_library += bool(kept.external_links)
    if not steps:
        return None
    return Convergence(tuple(steps), freed, n, onto_library)


def apply_to(gp: GroupPlan, conv: Convergence, why_stay: str) -> GroupPlan:
    """Turn a staying group into a converging one (same pool, nothing copied, nothing relocated)."""
    gp.action = Action.CONVERGE
    gp.target_pool = gp.source_pool
    gp.steps = list(conv.steps)
    gp.bytes_to_copy = 0
    gp.bytes_freed = conv.bytes_freed
    what = f"{conv.inodes} duplicate inode(s) on {gp.source_pool} relinked onto the kept copy" + (
        f" ({conv.onto_library} onto a library's)" if conv.onto_library else ""
    )
    gp.reason = f"{what}; then stays: {why_stay}" if why_stay else what
    return gp


def report_only(gp: GroupPlan, conv: Convergence) -> GroupPlan:
    """``policy.converge: false``: the group keeps its decision (it stays) and only says what converging would do.

    No steps, nothing actionable: neither ``apply`` nor the event worker can carry it out.
    """
    what = f"{conv.inodes} duplicate inode(s) on {gp.source_pool}, {human_bytes(conv.bytes_freed)}" + (
        f", {conv.onto_library} onto a library's copy" if conv.onto_library else ""
    )
    note = f"would converge {what} (policy.converge is false: report only)"
    gp.reason = f"{gp.reason}; {note}" if gp.reason else note
    return gp


def resolve_cross_group(plans: list[GroupPlan]) -> None:
    """A convergence never links onto an inode that another group of the same plan deletes or moves."""
    # Only inodes some convergence keeps can matter: a map of every moved inode (a million
    # deletes in a big plan) was the planner's last peak of memory (issue 13).
    kept = {
        (s.keep.fsid, s.keep.ino)
        for g in plans
        if g.action == Action.CONVERGE
        for s in g.steps
        if isinstance(s, Converge)
    }
    moved = {
        s.inode: g.group_id
        for g in plans
        if kept and g.action in (Action.DEMOTE, Action.PROMOTE)
        for s in g.steps
        if isinstance(s, Delete) and s.inode in kept
    }
    for g in plans:
        if g.action != Action.CONVERGE:
            continue
        for s in g.steps:
            other = moved.get((s.keep.fsid, s.keep.ino)) if isinstance(s, Converge) else None
            if other is not None and other != g.group_id:
                g.action, g.steps, g.bytes_freed = Action.SKIP, [], 0
                g.reason = f"waits for group {other}, which moves the copy this group would converge onto"
                break
