"""The planner: a snapshot of facts in, a plan out. No I/O, no clock, no randomness.

Per payload group it decides:

- **stay**    the group is where it belongs (a library links it, hard or through a
              symbolic link onto a file or folder of it: ``library_use``; or it is
              seed-only on the cold pool, or policy says not yet);
- **demote**  primary -> cold: no link outside the seeding roots, policy allows;
              reuse identical content already on the cold pool, else copy once;
- **promote** cold -> primary: only when every file's content already exists on the
              primary pool in a copy something there consumes (a library's), up to a
              small copy allowance; never a blind copy (another torrent's seed-only file
              there is no donor: it is what a demote frees);
- **blocked** it should move but cannot safely now, with reasons a person can act on
              (a symlink anywhere in a torrent's source or destination path below a
              pool root always blocks: facts read through it describe somewhere else;
              so does a move while the libraries' symlinks are unseen: ``library_blockers``);
- **converge** stays on its pool, but its seeding files that duplicate another inode on
              the same dataset (a library's copy first) are relinked onto it: zero bytes
              written, the duplicate freed (``qbhook/decide/converge.py``);
- **skip**    actionable but over this run's batch cap or waiting on another group.

A group sharing a file (by path or inode) with what a torrent missing from its client's listing
last used stays, naming it, until that torrent has been missing for ``facts.MISSING_GRACE_S``
(``missing_holds``): a listing leaves torrents out while a restarted client loads them.

A partial torrent (files at priority 0, "skipped") is planned on its **wanted** files only
(``wanted_only``): its skipped files are neither built nor required at the destination, and
nothing of them at the source is deleted (qBittorrent may keep part files there). It moves
when complete in its wanted files, nothing of a skipped file sits at the source (a
setLocation would carry that along unverified), and nothing sits at a skipped file's place at
the destination (``facts.skipped_place_taken``: qBittorrent would write into it once the file
is wanted). Nor does any move put a file where another torrent may write: its skipped file's
place, in the snapshot (``write_place_blockers``) or where a group of the same run takes it
(``_skipped_places_kept``).

Converging identical payloads on both pools falls out of the same rules: the
side nobody consumes demotes or promotes onto the other side's inodes with zero
bytes copied.

A move that links a torrent's file onto such an inode (a donor: on /stash typically a library
file an *arr import copied, owned by the *arr) gives the file's name that inode's owner and mode:
it must give the owner of the torrent's file the access that file gave it (``access.access_lost``,
convergence's rule). Otherwise the group stays, and its reason names the file and the access
(``_access_kept_apart``); a file already at the destination that would take it blocks the move.
The executor asks the same rule before each link (``move.fsops.link_into``).
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import posixpath
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from itertools import pairwise
from typing import NamedTuple

from qbhook.catalog.identity import group_id_of
from qbhook.clients.model import STABLE_STATES, is_relative_path
from qbhook.config import PolicyConfig
from qbhook.decide import converge
from qbhook.decide.facts import (
    MAX_LINK_HOPS,
    NESTED,
    ContentKey,
    InodeFact,
    InodeKey,
    PoolFact,
    Snapshot,
    TorrentFact,
    ancestors,
    incidental_below,
    map_to_pool,
    missing_reason,
    missing_still_held,
    skipped_data_carried,
    skipped_data_reason,
    skipped_place_reason,
    skipped_place_taken,
    write_place_reason,
)
from qbhook.decide.grouping import payload_groups
from qbhook.decide.heap import collector_paused
from qbhook.decide.plan import (
    MAKE_COPY,
    MAKE_EMPTY,
    MAKE_LINK,
    MAKE_NONE,
    Action,
    Converge,
    CopyRun,
    DeleteRun,
    GroupPlan,
    MakeRun,
    Member,
    Plan,
    PruneDirs,
    Relocate,
    Start,
    Step,
    StepList,
    Tag,
    VerifyGroup,
    VerifyView,
    copied,
    deleted_paths,
    links_from,
    view_paths,
)
from qbhook.decide.policy import policy_blocks_demote
from qbhook.paths import is_within
from qbhook.space import Reserve, fits, leaves
from qbhook.units import human_bytes as _b


def make_plan(snap: Snapshot, policy: PolicyConfig, *, after_event: bool = False) -> Plan:
    """``after_event``: the plan is made for an event, moments after it (``policy.import_grace``)."""
    # Millions of small, long-lived objects and no cycles: the cyclic GC would only rescan them.
    with collector_paused():
        plans = []
        room = policy.max_groups_per_run or float("inf")
        groups = payload_groups(snap.torrents)
        _release_freed_heap()
        held = missing_holds(snap)
        for g in groups:
            if held is not None and (why := held(g)):
                plans.append(replace(staying(g), reason=why))  # not even converged: its files are used
                continue
            # Past this run's cap, decide but do not build steps: they would be thrown away.
            gp = decide(snap, policy, g, build=room > 0, after_event=after_event)
            if gp.action == Action.STAY:
                _converge_instead(snap, policy, g, gp, build=room > 0)
            room -= gp.actionable
            plans.append(gp)
        finish_run(plans, policy, pool_room(snap.pools))
    return Plan(groups=plans, created_at=snap.now)


class Room(NamedTuple):
    """A pool's free bytes and its size (what a percent ``policy.min_free`` is of)."""

    free: int
    size: int


def finish_run(plans: list[GroupPlan], policy: PolicyConfig, room: Mapping[str, Room]) -> None:
    """The passes that need every group of a run at once, in their order: groups waiting on
    another group's move, convergences whose keeper another group moves, groups whose copies no
    longer fit after the earlier groups' (``room``: each pool's free bytes and size, ``pool_room``;
    ``policy.min_free`` left free), then the batch cap. make_plan ends with them; a sweep that
    plans in chunks runs them once over all its chunks, so the space the run's copies take is
    counted across its chunks."""
    _resolve_cross_group(plans)
    converge.resolve_cross_group(plans)
    _within_free_space(plans, room, policy.min_free)
    _apply_batch_cap(plans, policy.max_groups_per_run)


def pool_room(pools: Iterable[PoolFact]) -> dict[str, Room]:
    """Each pool's free bytes and size as the snapshot read them: what ``finish_run`` spends a run's copies from."""
    return {p.name: Room(p.free_bytes, p.size_bytes) for p in pools}


def _release_freed_heap() -> None:
    """Give the grouping's freed maps back to the OS (glibc only; elsewhere a no-op).

    Grouping a million files grows one dict through tables of 5, 10, 20 MiB that glibc takes
    from the heap and keeps after they are freed; the steps built next live in Python's own
    arenas and never reuse them, so without this they stay resident: 40 MiB of the planner's
    peak at 50k torrents (bench/bench_plan.py). Touches no data.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


# ------------------------------------------------------------------ per group


def missing_holds(snap: Snapshot) -> Callable[[list[TorrentFact]], str | None] | None:
    """The rule for torrents missing from a listing (``Snapshot.missing``): a group that shares a
    file, by path or by inode as the grouping does, with what such a torrent last used, while it is
    within ``facts.MISSING_GRACE_S``, stays, naming it. A full listing that leaves a torrent out is
    not its removal (qBittorrent loading its session after a restart): planned as removed, the
    torrent's cross-seed group-mates demoted, and the file it still uses was deleted from under it.

    None when nothing is missing (the usual plan): then no group is looked at. Else the question
    for one group: the reason it stays, or None."""
    if not snap.missing:
        return None
    here = {(t.instance, t.hash) for t in snap.torrents}  # one that came back is no longer missing
    missing = [m for m in snap.missing if missing_still_held(m.since, snap.now) and (m.instance, m.hash) not in here]
    if not missing:
        return None
    by_path = {p: m for m in missing for p in m.paths}
    by_inode = {k: m for m in missing for k in m.inodes}

    def holds(group: list[TorrentFact]) -> str | None:
        for t in group:
            for f in t.files:
                m = by_path.get(f.path) or (by_inode.get(f.inode) if f.inode is not None else None)
                if m is not None:
                    return missing_reason(m, f.path)
        return None

    return holds


def staying(group: list[TorrentFact]) -> GroupPlan:
    """A payload group's plan before any decision: it stays, for no reason yet."""
    return GroupPlan(
        group_id=group_id_of((t.instance, t.hash) for t in group),
        torrents=[t.hash for t in group],
        names=[t.name for t in group],
        instances=[t.instance for t in group],
        action=Action.STAY,
        reason="",
    )


def decide(
    snap: Snapshot, policy: PolicyConfig, group: list[TorrentFact], build: bool = True, *, after_event: bool = False
) -> GroupPlan:
    # Long on purpose: reads top to bottom as the README's decision table, one branch per row.
    gp = staying(group)
    full, group = group, wanted_only(group)
    inodes = _group_inodes(snap, group)
    gp.payload_bytes = sum(i.size for i in inodes.values())
    gp.external_links = external_link_paths(inodes.values())
    # The files that may tie this payload to another one's inodes (facts.incidental_below): the rest
    # never keep it on /stash for a library's copy of them, and are linked from a copy on the
    # target only when one of these is (``_donors_tied``): then it is one payload.
    gp.incidental_below = incidental_below([f.size for f in t.files if f.priority != 0] for t in group)
    shared = [i for i in inodes.values() if i.size >= gp.incidental_below]

    pools = {p.name if p else None for p in (snap.seeding_pool_of(t.save_path) for t in group)}
    if None in pools:
        outside = [t.name for t in group if snap.seeding_pool_of(t.save_path) is None]
        return _blocked(gp, [f"save path outside every seeding root: {n}" for n in outside])
    if len(pools) > 1:
        return _blocked(gp, ["group spans both pools (files shared across pools?)"])
    src = snap.pool(pools.pop())
    gp.source_pool = src.name
    through_links = symlink_blockers(snap, full, src)
    if through_links:
        return _blocked(gp, through_links)

    has_external = any(i.external_links > 0 for i in inodes.values())
    if src.role == "primary":
        if has_external:
            gp.reason = "linked outside the seeding tree: " + _short(gp.external_links, _unknown_links(inodes.values()))
            return gp
        if inodes_missing_or_unknown(group, snap):
            # Without every inode we cannot prove "no external links": stay is the safe answer.
            return _blocked(gp, file_blockers(group, snap))
        why_not = policy_blocks_demote(group, policy, snap.now, after_event=after_event)
        if why_not:
            gp.reason = "policy: " + why_not
            return gp
        consumer = _consumer_elsewhere(snap, shared, src.seen_from([t.save_path for t in group]))
        if consumer:
            gp.reason = f"same content is used by a library on {src.name} ({consumer}); not demoting a duplicate"
            return gp
        if used := library_use(snap, full):
            gp.reason = used
            return gp
        tgt = snap.cold
        donors = _donors_tied(snap, shared, inodes.values(), _going_to(group, src, tgt))
        if why := _access_kept_apart(snap, inodes.values(), donors, "demoted"):
            gp.reason = why
            return gp
        gp.action, gp.target_pool = Action.DEMOTE, tgt.name
        contents = len({_copied_as(i) for i in inodes.values() if i.size}) if donors else 0
        gp.reason = "no links outside the seeding tree" + (
            f"; {len(donors)} of {contents} contents already on {tgt.name}" if donors else ""
        )
    else:
        if has_external:
            gp.reason = "linked outside the seeding tree on the cold pool: " + _short(gp.external_links, 0)
            return gp
        if inodes_missing_or_unknown(group, snap):
            blockers = file_blockers(group, snap)
            gp.reason = "seed-only on the cold pool (" + "; ".join(blockers[:2]) + ")"
            return gp
        tgt = snap.primary
        donors = _donors_tied(snap, shared, inodes.values(), _going_to(group, src, tgt))
        if not donors:
            gp.reason = f"seed-only data on {src.name}: nothing on {tgt.name} shares its content"
            return gp
        # Only a copy a library (or something outside the seeding roots) keeps there is a donor: the
        # content "already on the primary pool" a promote is for. Another torrent's seed-only file
        # there is no such copy: that group demotes (onto this one's inodes, if it likes), and a
        # promote linking from it plans against data leaving /stash. Both planned in one run, each
        # deleted the other's link source, and both waited forever (R44); counted, it also tied this
        # payload to that one on the pool it is to be freed from. Its content counts as missing here.
        donors = _donors_tied(snap, shared, inodes.values(), _going_to(group, src, tgt), _consumed)
        if not donors:
            gp.reason = (
                f"same content on {tgt.name} is only other torrents' seed data; "
                f"that group demotes onto this one instead"
            )
            return gp
        missing = {_copied_as(i): i.size for i in inodes.values() if i.size and i.content not in donors}
        missing_bytes = sum(missing.values())
        allowance = min(policy.promote_copy_max_bytes, policy.promote_copy_max_ratio * gp.payload_bytes)
        if missing_bytes > allowance:
            gp.reason = (
                f"{_b(missing_bytes)} of this payload is not on {tgt.name} (allowance {_b(int(allowance))}); "
                f"reported, not promoted"
            )
            return gp
        if used := library_use(snap, full):
            gp.reason = used
            return gp
        if why := _access_kept_apart(snap, inodes.values(), donors, "promoted"):
            gp.reason = why
            return gp
        gp.action, gp.target_pool = Action.PROMOTE, tgt.name
        gp.reason = f"a library on {tgt.name} already holds this content"  # and what it copies: below

    blockers = (
        symlink_blockers(snap, full, src, tgt)
        + nested_blockers(snap, full, src, tgt)
        + reached_blockers(snap, group)
        + library_blockers(snap)
        + skipped_blockers(full, snap)
        + skipped_place_blockers(snap, full, src, tgt)
        + write_place_blockers(snap, group, src, tgt)
        + unclaimed_blockers(full, inodes.values())
        + file_blockers(group, snap)
        + torrent_blockers(full)
    )
    if blockers:
        return _blocked(gp, blockers)
    if not build:
        gp.action, gp.reason = Action.SKIP, _CAP_REASON.format(cap=policy.max_groups_per_run) + f" (would {gp.action})"
        return gp
    steps, copy_bytes, conflicts = build_steps(snap, policy, group, src, tgt, _paths_of(donors))
    if conflicts:
        return _blocked(gp, conflicts)
    if not fits(copy_bytes, tgt.free_bytes, size=tgt.size_bytes, reserve=policy.min_free):
        return _blocked(gp, [_no_room(copy_bytes, tgt, policy.min_free)])
    gp.steps, gp.bytes_to_copy = steps, copy_bytes
    if gp.action == Action.PROMOTE and copy_bytes:
        # What the steps copy, not what no library holds: a file of it already at the destination is reused.
        gp.reason += f"; copying {_b(copy_bytes)} of small extras"
    skipped = sum(len(t.files) for t in full) - sum(len(t.files) for t in group)
    if skipped:
        gp.reason += f"; moves only the wanted files ({skipped} skipped at priority 0 stay as they are)"
    gp.bytes_freed = _bytes_freed(group, snap, inodes)
    gp.skipped_places = skipped_places(full, src, tgt)
    return gp


def _converge_instead(
    snap: Snapshot, policy: PolicyConfig, group: list[TorrentFact], gp: GroupPlan, build: bool
) -> None:
    """A staying group whose seeding files duplicate inodes on their own dataset converges onto them."""
    if not _may_converge(snap, group):
        return
    conv = converge.plan_group(snap, group)
    if conv is None:
        return
    if not conv.steps:  # every duplicate waits: the group stays, and says why
        converge.note_waiting(gp, conv)
        return
    if not policy.converge:
        converge.report_only(gp, conv)
        return
    if not build:
        gp.action, gp.reason = Action.SKIP, _CAP_REASON.format(cap=policy.max_groups_per_run) + " (would converge)"
        return
    converge.apply_to(gp, conv, gp.reason)


def _may_converge(snap: Snapshot, group: list[TorrentFact]) -> bool:
    """False when no file's content is known on another inode: then ``converge.plan_group`` finds
    nothing (it needs two inodes of one content), and skipping it saves a quarter of make_plan
    on a big snapshot, where most staying groups have no duplicate (issue 13)."""
    content, inodes = snap.content, snap.inodes
    for t in group:
        for f in t.files:
            i = inodes.get(f.inode) if f.inode is not None else None
            if i is not None and i.blake3 and any(k != i.key for k in content.get((i.size, i.blake3), ())):
                return True
    return False


def _no_room(need: int, tgt: PoolFact, reserve: Reserve) -> str:
    """A group's copies do not fit on ``tgt``: no room at all, or not room enough to leave the reserve."""
    if need > tgt.free_bytes:
        return f"not enough free space on {tgt.name}: needs {_b(need)}, has {_b(tgt.free_bytes)}"
    return f"waits for room on {tgt.name}: {leaves(need, tgt.free_bytes, size=tgt.size_bytes, reserve=reserve)}"


def _blocked(gp: GroupPlan, blockers: list[str]) -> GroupPlan:
    gp.action, gp.blockers, gp.steps = Action.BLOCKED, blockers, []
    gp.reason = "; ".join(blockers[:3]) + (f" (+{len(blockers) - 3} more)" if len(blockers) > 3 else "")
    return gp


# ------------------------------------------------------------------ facts about a group


def _group_inodes(snap: Snapshot, group: Iterable[TorrentFact]) -> dict[InodeKey, InodeFact]:
    return {
        f.inode: snap.inodes[f.inode] for t in group for f in t.files if f.inode is not None and f.inode in snap.inodes
    }


def external_link_paths(inodes: Iterable[InodeFact]) -> list[str]:
    return sorted({p for i in inodes if i.external_links for p in i.other_paths})


def _unknown_links(inodes: Iterable[InodeFact]) -> int:
    return sum(max(i.external_links - len(i.other_paths), 0) for i in inodes)


def inodes_missing_or_unknown(group: list[TorrentFact], snap: Snapshot) -> bool:
    return any(f.inode is None or f.inode not in snap.inodes for t in group for f in t.files)


def wanted_only(group: list[TorrentFact]) -> list[TorrentFact]:
    """The group as the planner moves it: each torrent with only its wanted files (priority > 0).

    The one home of the partial-torrent rule. A skipped file is not part of what qBittorrent
    seeds: it is not built at the destination, not required there (``VerifyView`` lists only
    the wanted files, and the executor checks them against the live list), and nothing of it
    at the source is deleted. ``skipped_blockers`` reads the full group.
    """
    return [
        t if all(f.priority for f in t.files) else replace(t, files=tuple(f for f in t.files if f.priority))
        for t in group
    ]


def skipped_blockers(full: list[TorrentFact], snap: Snapshot) -> list[str]:
    """Skipped files that stop a partial torrent from moving: nothing wanted at all, or bytes of a
    skipped file at the source (setLocation would carry them along, unverified)."""
    out = []
    for t in full:
        if t.files and not any(f.priority for f in t.files):
            out.append(f"{t.name}: every file is skipped (priority 0): nothing to move")
            continue
        for f in t.files:
            if f.priority or f.inode is None or (i := snap.inodes.get(f.inode)) is None:
                continue
            if skipped_data_carried(i.size):
                out.append(f"{t.name}: " + skipped_data_reason(f.path))
    return out


def skipped_place_blockers(snap: Snapshot, full: list[TorrentFact], src: PoolFact, tgt: PoolFact) -> list[str]:
    """Skipped files whose place at the destination is taken (``facts.skipped_place_taken``): by a
    file there now (``snap.existing``), or by a wanted file the move puts there. ``wanted_only``
    leaves skipped files out of ``build_steps``, so its destination check never sees their paths;
    qBittorrent would write into what is there once the file is wanted. The executor reads the
    same rule again right before setLocation (``Executor._verify_view``)."""
    wanted = {posixpath.join(_mapped(t.save_path, src, tgt), f.rel) for t in full for f in t.files if f.priority}
    out = []
    for t in full:
        new_save = _mapped(t.save_path, src, tgt)
        for f in t.files:
            if f.priority or not is_relative_path(f.rel):
                continue  # an unsafe name is file_blockers' (and names no place)
            dst = posixpath.join(new_save, f.rel)
            if dst in wanted or skipped_place_taken(snap.existing.get(dst), f.inode):
                out.append(f"{t.name}: " + skipped_place_reason(dst))
    return out


def write_place_blockers(snap: Snapshot, group: list[TorrentFact], src: PoolFact, tgt: PoolFact) -> list[str]:
    """Wanted files whose destination is a place another torrent may write into
    (``converge.writer_at``): most often its skipped file's (priority 0), which needs nothing on
    disk to be one, so ``build_steps``' check of what exists there never sees it. The file put
    there (a demote's only copy) would take that torrent's pieces once the file is wanted (R69).
    A file there now is ``build_steps``' (``converge.reusable`` reads the same writers); a place
    that a group of the same run moves there is ``_skipped_places_kept``'s. The executor asks the
    clients again right before it makes the view (``converge.live_writer``): a rename since the plan."""
    out = []
    for t in group:
        new_save = _mapped(t.save_path, src, tgt)
        for f in t.files:
            if not is_relative_path(f.rel):
                continue  # an unsafe name is file_blockers' (and names no place)
            dst = posixpath.join(new_save, f.rel)
            if snap.existing.get(dst) is None and (who := converge.writer_at(snap, dst)) is not None:
                out.append(f"{t.name}: " + write_place_reason(dst, who))
    return out


def skipped_places(full: list[TorrentFact], src: PoolFact, tgt: PoolFact) -> tuple[str, ...]:
    """Where the group's skipped files (priority 0) belong once moved (``GroupPlan.skipped_places``)."""
    return tuple(
        posixpath.join(_mapped(t.save_path, src, tgt), f.rel)
        for t in full
        for f in t.files
        if not f.priority and is_relative_path(f.rel)
    )


def unclaimed_blockers(group: list[TorrentFact], inodes: Iterable[InodeFact]) -> list[str]:
    """Seeding links of the group's inodes that no torrent lists (``converge.unclaimed_links``: a
    removed torrent's leftover, another client's cross-seed link). A move deletes the torrents' own
    links only: such a link keeps the inode on the source pool, so the move copies the payload and
    frees nothing (R44). Every torrent of the snapshot that lists a link of these inodes is in the
    group (grouping joins through a shared inode; a partial build's closure follows each link's
    folders), so the group's paths are every listed one. The group waits for a person to remove
    the link or add the torrent using it to a configured client (``qbhook orphans`` does not list
    it: it is another link of a torrent's file)."""
    listed = {f.path for t in group for f in t.files}
    return [
        f"{p} links a file of this payload and no torrent lists it (a removed torrent's leftover, or a client "
        "qbhook is not given?): moving would free nothing; remove it, or add its torrent to a configured client"
        for i in inodes
        for p in converge.unclaimed_links(i, listed)
    ]


def file_blockers(group: list[TorrentFact], snap: Snapshot) -> list[str]:
    out = []
    for t in group:
        for f in t.files:
            if not is_relative_path(f.rel):
                out.append(f"{t.name}: unsafe file name {f.rel!r}")
            elif f.inode is None or f.inode not in snap.inodes:
                out.append(f"{t.name}: missing file {f.path}")
            elif snap.inodes[f.inode].size != f.size:
                out.append(f"{t.name}: size on disk differs from the torrent's for {f.path}")
            elif snap.inodes[f.inode].blake3 is None and f.size and f.inode not in snap.hash_at_copy:
                # (in hash_at_copy: nothing to reuse on the target, the copy's own hash verifies it)
                out.append(f"{t.name}: not hashed yet or changed since hashed: {f.path}")
    return out


def symlink_blockers(snap: Snapshot, group: list[TorrentFact], src: PoolFact, tgt: PoolFact | None = None) -> list[str]:
    """Symlinks (from ``snap.symlinks``) on the group's paths, and on its destination paths with ``tgt``."""
    if not snap.symlinks:
        return []
    roots = [p.path for p in snap.pools]
    out: list[str] = []
    seen: set[str] = set()
    for t in group:
        sides = [("source", t.save_path)]
        if tgt is not None:
            sides.append(("destination", _mapped(t.save_path, src, tgt)))
        for side, save in sides:
            for path in [save] + [posixpath.join(save, f.rel) for f in t.files]:
                for p in ancestors(path, roots):
                    if p in snap.symlinks and p not in seen:
                        seen.add(p)
                        out.append(f"{t.name}: symlink in the {side} path: {p} -> {snap.symlinks[p]}")
    return out


def nested_blockers(snap: Snapshot, group: list[TorrentFact], src: PoolFact, tgt: PoolFact) -> list[str]:
    """At most one line (``facts.NESTED``): a file of the group, or a folder it would be copied or linked
    into, is in a dataset mounted below its seeding root. A group that stays for another reason says
    that reason instead: only a move would act there (a convergence leaves such files out itself,
    ``converge.plan_group``)."""
    line = nested_source(snap, group, src)
    return [line] if line is not None else nested_destination(snap, group, src, tgt)


def nested_source(snap: Snapshot, group: list[TorrentFact], src: PoolFact) -> str | None:
    """The one line (``facts.NESTED``) of the group's first file that is on another filesystem than
    the seeding root holding its save path: the executor would copy it, then refuse to hide, relink
    or delete it through that mount point, every run. By the inode's filesystem id, already known:
    a comparison per file, the root looked up once per torrent."""
    inodes = snap.inodes
    for t in group:
        root = src.root_of(t.save_path)
        own = src.fsid_of_root(root) if root is not None else ""
        if not own:
            continue
        for f in t.files:
            i = inodes.get(f.inode) if f.inode is not None else None
            if i is not None and i.fsid != own:
                return NESTED.format(path=f.path, root=root)
    return None


def nested_destination(snap: Snapshot, group: list[TorrentFact], src: PoolFact, tgt: PoolFact) -> list[str]:
    """One line (``facts.NESTED``) when a destination of the group is in a folder on another filesystem
    than its seeding root (``Snapshot.nested_destinations``): the first copy would be refused."""
    nested = snap.nested_destinations
    if not nested:
        return []
    for t in group:
        new_save = _mapped(t.save_path, src, tgt)
        for f in t.files:
            if not is_relative_path(f.rel):
                continue  # file_blockers' (and names no place)
            folder = nested.get(posixpath.dirname(posixpath.join(new_save, f.rel)))
            if folder is not None:
                return [NESTED.format(path=folder, root=tgt.root_of(folder) or tgt.seeding_root)]
    return []


def reached_blockers(snap: Snapshot, group: list[TorrentFact]) -> list[str]:
    """Another torrent reaches a file of the group through a symlink (``_reached``): moving the group
    would delete that torrent's data under it (its path is one directory entry, nlink 1, so the
    unlink's re-check passes). By the path its noted links resolve to, its tail, or the inode it
    reaches followed (``Snapshot.reached_inodes``). The group waits while that torrent is there."""
    exact, tails, by_inode = _reached(snap)
    if not exact and not tails and not by_inode:
        return []
    # By (instance, hash): the same infohash in another client, on a path through a symlink, is
    # another torrent (its own copy of the data, or this one's reached), never one of the group's.
    own = {(t.instance, t.hash) for t in group}
    hashes = {t.hash for t in group}
    out: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for t in group:
        for f in t.files:
            hits = exact.get(f.path, [])
            if f.inode is not None and f.inode in by_inode:
                hits = [*hits, *by_inode[f.inode]]
            for tail, size, hit in tails.get(posixpath.basename(f.path), ()):
                if size == f.size and f.path.endswith("/" + tail):
                    hits = [*hits, hit]
            for inst, h, name, link, target in hits:
                if (inst, h) not in own and (inst, h, link) not in seen:
                    seen.add((inst, h, link))
                    who = f"{name} ({h[:8]})" + (f" in {inst}" if h in hashes else "")
                    out.append(f"torrent {who} reaches {f.path} through a symlink: {link} -> {target}")
    return out


_Reach = tuple[str, str, str, str, str]  # (instance, hash, name, symlink, its target) of a torrent reaching a path
_REACHED = "planner.reached"  # its key in Snapshot.derived


def _reached(
    snap: Snapshot,
) -> tuple[dict[str, list[_Reach]], dict[str, list[tuple[str, int, _Reach]]], dict[InodeKey, list[_Reach]]]:
    """Where the torrents of ``snap``, and those a partial build left out but found reaching through
    a link (``Snapshot.reaching``), reach through the symlinks of ``snap.symlinks``, from the facts
    alone, once per snapshot: (resolved path -> who, file name -> [(path tail, who)], inode -> who).
    The inode is what the builder found the path reaches, followed (``Snapshot.reached_inodes``):
    an alias the noted links do not resolve (a folder symlink no torrent uses, a bind mount).

    A file the builder placed (``FileFact.inode``) had no symlink on its way; one it did not may.
    Its path is resolved through the links the builder noted (a relative target against the link's
    folder, a chain link by link). Resolved below a pool, it names a path exactly. Otherwise (a
    target in a container's spelling, ``/data/...``, or unreadable: field lesson 5) it can only be
    matched by its tail: the target's last folder and the path below the link, in any spelling."""
    got = snap.derived.get(_REACHED)
    if got is not None:
        return got
    exact: dict[str, list[_Reach]] = {}
    tails: dict[str, list[tuple[str, int, _Reach]]] = {}
    by_inode: dict[InodeKey, list[_Reach]] = {}
    roots = [p.path for p in snap.pools]
    if snap.symlinks:
        for inst, h, name, f_path, f_size in _unplaced(snap):
            if not f_path.startswith("/"):
                continue
            path, first, hops = f_path, None, 0
            while hops < MAX_LINK_HOPS:
                link = next((p for p in reversed(list(ancestors(path, roots))) if p in snap.symlinks), None)
                if link is None:
                    break
                hops += 1
                first = first or (link, snap.symlinks[link])
                target, rest = snap.symlinks[link], path[len(link) :]
                if target == "?":  # unreadable
                    path = None
                    break
                path = posixpath.normpath(posixpath.join(posixpath.dirname(link), target) + rest)
            if first is None:
                continue
            who = (inst, h, name, *first)
            if (key := snap.reached_inodes.get(f_path)) is not None:
                by_inode.setdefault(key, []).append(who)
            if path is not None and any(is_within(path, r) for r in roots):
                exact.setdefault(path, []).append(who)
                continue
            # The part of the path that names the content: the target's folder and file for a
            # link to a file (its name alone, RARBG.txt, would match every release's), its last
            # folder and the path below it for a link to a folder: two parts at least, but for
            # an unreadable target (then all there is), and only a file of the same size
            # (helper review of 6117183).
            if rest:
                tail = (posixpath.basename(target) + rest if path is not None else rest).strip("/")
            else:
                tail = "/".join(target.rstrip("/").split("/")[-2:]) if path is not None else ""
            if tail and all(tail.split("/")) and ("/" in tail or path is None):
                tails.setdefault(posixpath.basename(tail), []).append((tail, f_size, who))
    got = snap.derived[_REACHED] = (exact, tails, by_inode)
    return got


def _unplaced(snap: Snapshot) -> Iterable[tuple[str, str, str, str, int]]:
    """(instance, hash, name, path, size) of every file the builder did not place (no inode: it may be reached
    through a symlink): of the snapshot's torrents, and of those a partial build leaves out that it
    found reaching through one (``Snapshot.reaching``)."""
    for t in snap.torrents:
        for f in t.files:
            if f.inode is None:
                yield t.instance, t.hash, t.name, f.path, f.size
    for r in snap.reaching:
        yield r.instance, r.hash, r.name, r.path, r.size


def library_use(snap: Snapshot, group: list[TorrentFact]) -> str | None:
    """The one rule of "a library uses this group through a symbolic link", for a move: a file of
    it (its inode, or its path at or below a folder's) that a symlink a library keeps reaches
    (``Snapshot.library``); the reason it stays, naming that symlink, or None.

    Like a hard link outside the seeding tree (``InodeFact.external_links``), it is a library's use:
    the group stays. Its inode has one link, so by link counts it was seed-only: a demote deleted
    the /stash file and the library's symlink dangled. Asked only of a group about to move (every
    file, skipped ones too: the library may read those), so a plan of staying groups pays nothing."""
    return snap.library.used((f.path, f.inode) for t in group for f in t.files)


def library_blockers(snap: Snapshot) -> list[str]:
    """A move while the libraries' symlinks are unseen (their walk did not finish: an unreadable
    folder) is withheld, naming why: ``library_use`` cannot say the group is not used by one."""
    if not snap.library.unseen:
        return []
    return [f"not moved while library symlinks are unseen: {snap.library.unseen}"]


def plan_warnings(snap: Snapshot) -> list[str]:
    """What a person must be told about the whole plan, one line each: a library symlink onto a
    folder at or above a whole seeding root (``media/all -> /stash/torrents``) reaches every file
    there, so ``library_use`` keeps every group of that root where it is. Each group then only
    says "library symlink ... uses it": the one link behind them all was named nowhere (``qbhook
    orphans`` names it: ``LibraryLinks.whole_roots``). Kept (it only ever protects more), named."""
    lib = snap.library
    return [
        f"library symlink {lib.shown(link)} reaches all of seeding root {root}: every group there stays on {p.name}"
        for p in snap.pools
        for root in p.seeding_roots
        if (link := lib.folders.reaching(root)) is not None
    ]


def torrent_blockers(group: list[TorrentFact]) -> list[str]:
    """What stops a torrent of the group itself from moving (``group``: every file listed, skipped
    ones too): incomplete, not in a state known to be stable (``clients.model.STABLE_STATES``, a
    whitelist the executor's ``TorrentInfo.is_stable`` reads too: a state a client adds later waits
    until someone decides; a list of bad states let an unknown one move, R44), no file listed (a
    listing without metadata: a move would build nothing and delete nothing of it, and the executor
    refuses it), or a download path elsewhere."""
    out = []
    for t in group:
        if not t.files:
            out.append(f"{t.name}: no files listed (metadata not loaded?)")
        if t.progress < 1:
            out.append(f"{t.name}: incomplete ({t.progress * 100:.1f}%)")
        if t.state not in STABLE_STATES:
            out.append(f"{t.name}: state {t.state}, waiting for a stable state")
        # Under ATM the download path is its category's whenever "Keep incomplete torrents in" is on
        # (qBittorrent reports it, and ignores setDownloadPath): no person can clear it. The
        # executor turns ATM off, then clears it, before setLocation; a rollback's ATM-on brings
        # the category's back. One a person set on a non-ATM torrent is theirs: a rollback would
        # not put it back, so they clear it.
        if (
            t.download_path
            and not t.auto_tmm
            and posixpath.normpath(t.download_path) != posixpath.normpath(t.save_path)
        ):
            out.append(f"{t.name}: download path points elsewhere ({t.download_path}); clear it in qBittorrent")
    return out


def tag_changes(snap: Snapshot, plan: Plan, tag: str) -> list[tuple[str, str, str]]:
    """(instance, hash, "add"|"remove") so that ``tag`` marks exactly the torrents on the primary
    pool whose group has no link outside the seeding roots (what qbit_manage's ~noHL means).

    A group names its torrents by hash alone, and one infohash may be seeded by two clients: each
    hash stands for every torrent of it (keyed by hash, the last client's replaced the others, which
    were never tagged), those on the primary pool. One such torrent judged by two groups (its twin
    unlinked, in another group) is tagged only if both want it: the tag lets a group demote, so a
    doubt leaves it off."""
    by_hash: dict[str, list[TorrentFact]] = {}
    for t in snap.torrents:
        by_hash.setdefault(t.hash, []).append(t)
    primary = snap.primary
    wants: dict[tuple[str, str], tuple[TorrentFact, bool]] = {}
    for g in plan.groups:
        if g.source_pool != primary.name or (g.action == Action.BLOCKED and "missing file" in g.reason):
            continue
        torrents = [
            t for h in dict.fromkeys(g.torrents) for t in by_hash[h] if snap.seeding_pool_of(t.save_path) == primary
        ]
        want = not any(i.external_links for i in _group_inodes(snap, torrents).values())
        for t in torrents:
            wants[t.instance, t.hash] = (t, want and wants.get((t.instance, t.hash), (t, True))[1])
    out = []
    for (instance, h), (t, want) in wants.items():
        if want and tag not in t.tags:
            out.append((instance, h, "add"))
        elif not want and tag in t.tags:
            out.append((instance, h, "remove"))
    return out


def _going_to(group: list[TorrentFact], src: PoolFact, tgt: PoolFact) -> PoolFact:
    """``tgt`` as seen from the group's new save paths (``PoolFact.seen_from``): where its donors are."""
    if not tgt.more_seeding_roots:
        return tgt  # one root: nothing to map
    return tgt.seen_from([_mapped(t.save_path, src, tgt) for t in group])


def _copies_on(snap: Snapshot, content: ContentKey | None, fsid: str) -> list[InodeKey]:
    """Known inodes holding ``content`` on filesystem ``fsid`` (the only ones a link can reach)."""
    if content is None:
        return []
    return [k for k in snap.content.get(content, ()) if k[0] == fsid and k in snap.inodes]


def _donors(
    snap: Snapshot, inodes: Iterable[InodeFact], tgt: PoolFact, allow: Callable[[InodeFact], bool] | None = None
) -> dict[ContentKey, InodeFact]:
    """Content already on the target dataset -> the inode to link from: of its copies there, the one
    a convergence keeps (``converge.keep_rank``: a library's first).

    Only an inode convergence would keep (``converge.reusable``): one a library or a settled torrent
    uses and that may not change. A file of a torrent still downloading, or an orphan in an incomplete
    folder, is copied instead: linked, the group's only copy would change with it once its source
    links are deleted. ``allow``: only such inodes (``_donors_tied``)."""
    donors: dict[ContentKey, InodeFact] = {}
    for i in inodes:
        if i.size == 0 or i.content in donors:
            continue
        cands = sorted(
            (
                c
                for k in _copies_on(snap, i.content, tgt.seeding_fsid)
                if converge.reusable(snap, c := snap.inodes[k]) and (allow is None or allow(c))
            ),
            key=converge.keep_rank,  # the inode a convergence keeps: never one it relinks away
        )
        donor = next((c for c in cands if c.seeding_paths or c.other_paths), None)
        if donor is not None:
            donors[i.content] = donor
    return donors


def _consumed(i: InodeFact) -> bool:
    """A copy something outside the seeding roots keeps (a library): a promote's only donor."""
    return i.external_links > 0


def _donors_tied(
    snap: Snapshot,
    shared: list[InodeFact],
    inodes: Iterable[InodeFact],
    tgt: PoolFact,
    allow: Callable[[InodeFact], bool] | None = None,
) -> dict[ContentKey, InodeFact]:
    """Content on ``tgt`` -> the inode to link from (``_paths_of``: its path): for the files that
    may tie the payload (``shared``), any donor; for its incidental files, only one of the party
    those donors belong to (``converge.tied_to``: the same torrent's files, the same library folder's), since the
    payload is already there and its small files follow it. With no donor for ``shared``, none:
    a donor of an incidental file alone would tie this payload for good to whatever holds those
    few bytes, and so would one of a third payload (facts.incidental_below). ``allow``: only such
    donors for ``shared`` (a promote's: ``_consumed``)."""
    big = _donors(snap, shared, tgt, allow)
    if not big:
        return {}
    keys = {id(i) for i in shared}
    ours = converge.tied_to(snap, [d.key for d in big.values()])
    return {**_donors(snap, [i for i in inodes if id(i) not in keys], tgt, ours), **big}


def _paths_of(donors: Mapping[ContentKey, InodeFact]) -> dict[ContentKey, str]:
    """Content -> the path a move's links are made from: each donor's first name (``_donors``
    chose only inodes that have one)."""
    return {content: _name_of(d) for content, d in donors.items()}


def _name_of(d: InodeFact) -> str:
    return min(d.seeding_paths + d.other_paths, default="?")


def _access_kept_apart(
    snap: Snapshot, inodes: Iterable[InodeFact], donors: Mapping[ContentKey, InodeFact], verb: str
) -> str | None:
    """Why the group is not ``verb`` (moved) onto its donors, or None: a donor must give the owner
    of each file linked onto it the access that file gave it (``access.access_lost``, convergence's
    rule: a library file is never chmodded nor chowned, so the torrent's name would show the donor's
    owner and mode). The first file so and how many more; unknown stats answer None (the
    executor's check before each link decides then)."""
    apart = [why for i in inodes if i.size and (why := _takes_access(snap, i, donors.get(i.content), verb))]
    if not apart:
        return None
    more = len(apart) - 1
    return min(apart) + (f" (and {more} more file(s) so)" if more else "")


def _takes_access(snap: Snapshot, i: InodeFact, d: InodeFact | None, verb: str) -> str | None:
    """Why the torrent's file ``i`` is not ``verb`` onto the inode ``d`` (``_access_kept_apart``), or None."""
    why = converge.access_taken(snap, i, d) if d is not None else None
    if why is None:
        return None
    whose = "the library's copy" if d.external_links else "the copy"
    return f"{_name_of(i)} is not {verb}: {whose} at {_name_of(d)} {why}"


def _copied_as(i: InodeFact) -> ContentKey | InodeKey:
    """What a move copies once and links after: the inode's content, or, unhashed (hash_at_copy:
    the copy's own hash verifies it), the inode itself. Every file without a hash is its own
    content: as one (None) they counted once in a reason, whatever their number and size."""
    return i.content or i.key


def _consumer_elsewhere(snap: Snapshot, inodes: Iterable[InodeFact], pool: PoolFact) -> str | None:
    own = {i.key for i in inodes}
    for i in inodes:
        for k in _copies_on(snap, i.content, pool.seeding_fsid):
            other = snap.inodes[k]
            if k not in own and other.external_links and other.other_paths:
                return other.other_paths[0]
    return None


def _bytes_freed(group: list[TorrentFact], snap: Snapshot, inodes: dict[InodeKey, InodeFact] | None = None) -> int:
    old_paths = {f.path for t in group for f in t.files}
    freed = 0
    for inode in (inodes if inodes is not None else _group_inodes(snap, group)).values():
        if not inode.other_paths and inode.external_links == 0 and set(inode.seeding_paths) <= old_paths:
            freed += inode.size
    return freed


# ------------------------------------------------------------------ steps


def build_steps(
    snap: Snapshot,
    policy: PolicyConfig,
    group: list[TorrentFact],
    src: PoolFact,
    tgt: PoolFact,
    donors: dict[ContentKey, str],
) -> tuple[StepList, int, list[str]]:
    """The ordered steps of one group's move (qbhook/decide/plan.py): make the view, prove it, relocate
    (each torrent left stopped), prove the group, start the torrents as found, tag, delete the old
    links, prune. Returns (steps, bytes to copy, conflicts).

    The per-file steps (copy, link, mkempty, delete) are kept as columns per torrent (a
    ``StepList`` of runs, ``qbhook/decide/plan.py``) and built when read: ~150 MiB and ~2 s less
    for a million-file plan (issue 13)."""
    # Long on purpose: one pass per torrent fills every step list in the plan's order.
    donors = dict(donors)
    copies: list[CopyRun] = []
    others: list[MakeRun] = []
    hashes_of: list[tuple[str | None, ...]] = []
    views: list[Step] = []
    relocs: list[Step] = []
    planned: dict[str, ContentKey | None] = {}
    conflicts: list[str] = []
    copy_bytes = 0
    # Per torrent by (instance, hash): one infohash seeded by two clients is two torrents of the
    # group, each with its own folder (keyed by hash, the second's replaced the first's).
    new_saves: dict[tuple[str, str], str] = {}
    # Steps keep a new path as (target folder + "/", rel): both halves are shared (one folder
    # string per torrent, rel with the facts), so a million-file plan makes no string per file.
    bases: dict[tuple[str, str], str] = {}

    for t in group:
        new_save = _mapped(t.save_path, src, tgt)
        new_saves[t.instance, t.hash] = new_save
        base = bases[t.instance, t.hash] = _folder(new_save)
        hashes = []
        codes = bytearray()  # what to make per file: MAKE_COPY, MAKE_LINK (from srcs), ...
        srcs: list[str] = []
        for f in t.files:
            inode = snap.inodes[f.inode]
            ck = _copied_as(inode) if f.size else (0, "")
            dst = base + f.rel  # for the checks; the steps keep (base, rel)
            hashes.append(inode.blake3)
            if dst in planned:
                if planned[dst] != ck:
                    conflicts.append(f"two torrents of the group want different content at {dst}")
                codes += MAKE_NONE
                continue
            planned[dst] = ck
            present = snap.existing.get(dst)
            if present is not None:
                there = snap.inodes.get(present)
                if there is None or (f.size and there.content != ck) or there.size != f.size:
                    conflicts.append(f"different content already at destination {dst}")
                elif not converge.reusable(snap, there):
                    # Reused, it would be the group's only copy once the old links go, and its
                    # writer would change it; nor may a copy replace another torrent's file.
                    conflicts.append(
                        f"destination {dst} is occupied by a file another torrent may still write: "
                        f"{converge.writer_of(snap, there)}; waits until it settles (or the file is moved away)"
                    )
                elif f.size and (why := _takes_access(snap, inode, there, "moved")):
                    conflicts.append(why)  # the torrent's name would become that file: _access_kept_apart's rule
                elif f.size:
                    donors.setdefault(ck, dst)
                codes += MAKE_NONE
                continue
            if f.size == 0:
                codes += MAKE_EMPTY
            elif ck in donors:
                codes += MAKE_LINK
                srcs.append(donors[ck])
            else:
                codes += MAKE_COPY
                copy_bytes += f.size
                donors[ck] = dst
        hashes = tuple(hashes)  # one column shared by the torrent's view, makes and deletes
        hashes_of.append(hashes)
        # Links must come after the copies they link from: every torrent's copies first.
        copies.append(CopyRun(base, t.files, hashes, bytes(codes)))
        others.append(MakeRun(base, t.files, hashes, bytes(codes), tuple(srcs)))
        views.append(
            VerifyView(
                t.hash,
                t.instance,
                new_save,
                tuple(f.rel for f in t.files),
                tuple(f.size for f in t.files),
                hashes,
            )
        )
        relocs.append(Relocate(t.hash, t.instance, t.save_path, new_save, sum(f.size for f in t.files)))

    verify = VerifyGroup(tuple(Member(t.hash, t.instance, new_saves[t.instance, t.hash]) for t in group))
    # Every relocation leaves its torrent stopped; each starts (as found) only once the whole group
    # is verified: on a promote the new files are a library's, and no client may write into them
    # (nor ATM move them) while a sibling still moves or the group may yet roll back.
    starts = [Start(t.hash, t.instance) for t in group]
    add = (policy.relocated_tag,)
    tags = [Tag(t.hash, t.instance, add, ()) for t in group] if policy.relocated_tag else []

    deletes: list[DeleteRun] = []
    seen: set[str] = set()
    old_by_inode: dict[InodeKey, set[str]] = {}
    for t in group:
        for f in t.files:
            old_by_inode.setdefault(f.inode, set()).add(f.path)
    links_by_inode: dict[InodeKey, tuple[str, ...]] = {}
    for t, hashes in zip(group, hashes_of, strict=True):
        links: list[tuple[str, ...] | None] = []  # per file its delete's seeding_links (None: no delete)
        for f in t.files:
            if f.path in seen:
                links.append(None)
                continue
            seen.add(f.path)
            links.append(_links_of(f.inode, snap.inodes[f.inode], old_by_inode[f.inode], links_by_inode))
        deletes.append(DeleteRun(bases[t.instance, t.hash], t.files, hashes, tuple(links)))
    prunes = _prune_steps(snap, group, src)
    steps = StepList([*copies, *others, *views, *relocs, verify, *starts, *tags, *deletes, *prunes])
    return steps, copy_bytes, conflicts


def _prune_steps(snap: Snapshot, group: list[TorrentFact], src: PoolFact) -> list[PruneDirs]:
    """The folders a group's deletes may empty, pruned after them (``PruneDirs``).

    A torrent's own root folder (every file below one top folder) is pruned with everything
    below it: the empty folders it left there are its own, unless a torrent outside the group
    keeps anything at or under that folder too (the same name, disjoint files), or one not in
    the snapshot may write there (``write_prefixes``): then it is as below. Any other deleted
    file's folder (a single file's, one of a torrent saved without its root folder: a category
    folder, a cross-seed link folder, the seeding root) is pruned upwards only, nothing below:
    it holds other torrents' folders (qBittorrent and cross-seed make a folder before its first
    file), nested datasets' mount points and category folders, none of them the group's.
    Parents go while empty, up to the seeding root; a folder another step's climb reaches is
    left to that step."""
    ids = {(t.instance, t.hash) for t in group}
    whole: dict[str, str] = {}  # a torrent's own root folder -> where its climb stops
    folders: dict[str, str] = {}  # a deleted file's folder -> where its climb stops
    for t in group:
        stop = src.root_of(t.save_path) or src.seeding_root
        top = _own_folder(t)
        if top is not None:
            root = posixpath.join(t.save_path, top)
            if not _others_in(snap, root, ids):
                whole.setdefault(root, stop)
                continue
        for f in t.files:
            folders.setdefault(posixpath.dirname(f.path), stop)
    below = sorted({*whole, *folders})

    def reached(d: str) -> bool:  # by a deeper step's climb, or inside a root pruned below
        i = bisect.bisect_left(below, d + "/")
        if i < len(below) and below[i].startswith(d + "/"):
            return True
        return any(is_within(d, r) for r in whole)

    steps = [PruneDirs(r, s) for r, s in sorted(whole.items())]
    steps += [
        PruneDirs(d, s, below=False) for d, s in sorted(folders.items()) if d not in whole and d != s and not reached(d)
    ]
    return steps


def _own_folder(t: TorrentFact) -> str | None:
    """The torrent's root folder (relative), when every file of it is below one; None: it has none
    (a single file, or saved with "Don't create subfolder")."""
    first = t.files[0].rel if t.files else ""
    top, sep, _ = first.partition("/")
    if not sep:
        return None
    prefix = top + "/"
    return top if all(f.rel.startswith(prefix) for f in t.files) else None


_TOPS = "planner.tops"  # its key in Snapshot.derived


def _others_in(snap: Snapshot, folder: str, ids: set[tuple[str, str]]) -> bool:
    """Whether a torrent other than ``ids`` keeps a file at or under ``folder``, or one the snapshot
    leaves out may write there. The snapshot's torrents by the first folder of each file
    (``save_path/top``), sorted, built once per snapshot (``Snapshot.derived``)."""
    tops = snap.derived.get(_TOPS)
    if tops is None:
        entries = set()
        for t in snap.torrents:
            own = _own_folder(t)
            for name in (own,) if own is not None else {f.rel.partition("/")[0] for f in t.files}:
                entries.add((posixpath.join(t.save_path, name), t.instance, t.hash))
        tops = snap.derived[_TOPS] = sorted(entries)
    under = folder + "/"
    i = bisect.bisect_left(tops, (folder,))  # torrents whose top is this folder, then those below it
    while i < len(tops) and tops[i][0] == folder:
        if tops[i][1:] not in ids:
            return True
        i += 1
    i = bisect.bisect_left(tops, (under,))
    while i < len(tops) and tops[i][0].startswith(under):
        if tops[i][1:] not in ids:
            return True
        i += 1
    return any(is_within(p, folder) or is_within(folder, p) for p in snap.write_prefixes)


@functools.lru_cache(maxsize=1024)
def _mapped(save_path: str, src: PoolFact, tgt: PoolFact) -> str:
    """``map_to_pool``, once per save path: torrents share save paths (a category's folder), and
    the mapping goes through pathlib, ~0.1 ms a torrent (~5% of make_plan at 50k torrents)."""
    return map_to_pool(save_path, src, tgt)


@functools.lru_cache(maxsize=1024)
def _folder(path: str) -> str:
    """``path + "/"``, one string per target folder, not per torrent (the steps keep it)."""
    return path + "/"


def _links_of(
    key: InodeKey, inode: InodeFact, old: set[str], cache: dict[InodeKey, tuple[str, ...]]
) -> tuple[str, ...]:
    """The seeding links a delete of this inode may leave, sorted: ``old`` (the group's paths of
    it) and the facts' ``seeding_paths``. Reuses the facts' tuple when it already is that, else
    builds one tuple per inode for all its deletes (a million-file plan holds no copies)."""
    links = inode.seeding_paths
    if len(links) == 1 and len(old) == 1 and links[0] in old:
        return links  # the common case: one link, the file being deleted
    got = cache.get(key)
    if got is None:
        if not (old.issubset(links) and all(a < b for a, b in pairwise(links))):
            links = tuple(sorted(old.union(links)))
        got = cache[key] = links
    return got


# ------------------------------------------------------------------ across groups


def _resolve_cross_group(plans: list[GroupPlan]) -> None:
    """A group may not link from a path that another group in the same plan deletes, nor copy a
    content that an earlier group of the same plan copies to the same pool (``_copied_once``)."""
    # A group whose steps all relink in place (``Converge``) links from, deletes, makes, copies and
    # skips nothing these passes read: it neither waits nor makes another wait here, so it is left
    # out of them (the converge pass plans 10,000 such groups, each walked by every pass).
    plans = [g for g in plans if not _relinks_only(g)]
    _links_wait_for_deletes(plans)
    _one_writer_per_destination(plans)
    _skipped_places_kept(plans)
    _copied_once(plans)


def _relinks_only(g: GroupPlan) -> bool:
    """Every step of ``g`` a ``Converge`` and no skipped place kept (a list of steps: a StepList is a move's)."""
    return type(g.steps) is list and not g.skipped_places and all(type(s) is Converge for s in g.steps)


def _links_wait_for_deletes(plans: list[GroupPlan]) -> None:
    """A group that links from a path another group of the plan deletes, or whose view reuses a
    file in place that one deletes (a file already at the destination: no step makes it, R69),
    waits (skipped) while that group still acts. Looked at from the last group to the first, each
    against the deletes of the groups still actionable then: of two groups that each delete what
    the other rests on (a cycle) the later one waits and the first goes ahead, as in
    ``_later_ones_wait``; the next run plans the other against what the first left. Counted once,
    before any group was skipped, such a cycle skipped both, every run (R44). No group that goes
    ahead rests on a path a group going ahead deletes: a group skipped here stays skipped, and each
    was checked against every group not skipped yet."""
    # Only paths some group rests on can matter: a map of every deleted path (a million
    # entries, built when every step already exists) was the planner's peak memory. A view path
    # another group deletes is met twice (``_repeated``): only those join the links' sources.
    # Read from the steps' columns (links_from, view_paths, deleted_paths): no step object is built here.
    acting = [g for g in plans if g.actionable]
    maybe = _repeated(p for g in acting for read in (view_paths, deleted_paths) for p in read(g.steps))

    def rests_on(g: GroupPlan) -> Iterator[tuple[str, str]]:
        yield from ((p, "moves the data this group would link from") for p in links_from(g.steps))
        yield from ((p, f"deletes {p}, which this group's view reuses") for p in view_paths(g.steps) if maybe(p))

    donors = {p for g in acting for p, _why in rests_on(g)}
    if not donors:
        return
    deleted = {p: g for g in acting for p in deleted_paths(g.steps) if p in donors}
    for g in reversed(plans):
        if not g.actionable:
            continue
        for src, why in rests_on(g):
            other = deleted.get(src)
            if other is not None and other is not g and other.actionable:
                g.action, g.steps = Action.SKIP, []
                g.reason = f"waits for group {other.group_id}, which {why}"
                break


_COPY_BITS = 1 << 23  # bits per map in _repeated (1 MiB each)


def _repeated(keys: Iterable[str]) -> Callable[[str], bool]:
    """Whether a key may be met twice in ``keys`` (a str of them, e.g. a path): true of every key met
    twice, and of a few more (a shared bit). A first pass marks each key's hash in a 1 MiB bitmap and
    the hashes met again in a second one, so that the exact map a caller then builds holds only
    those keys (a str caches its hash: nothing is built for the rest). A map of every key was
    +39 MiB of peak at 50k torrents / 1M files, over issue 13's 1 GB (bench_plan --cap 0)."""
    mask = _COPY_BITS - 1
    seen, twice = bytearray(_COPY_BITS >> 3), bytearray(_COPY_BITS >> 3)
    for k in keys:
        i = hash(k) & mask
        if seen[i >> 3] & (1 << (i & 7)):
            twice[i >> 3] |= 1 << (i & 7)
        else:
            seen[i >> 3] |= 1 << (i & 7)

    def maybe(k: str) -> bool:
        i = hash(k) & mask
        return bool(twice[i >> 3] & (1 << (i & 7)))

    return maybe


def _one_writer_per_destination(plans: list[GroupPlan]) -> None:
    """Two moves of one run never make or reuse the same destination path: the later group waits.

    Two groups plan one path when two source roots map onto one target root (``map_to_pool``: a
    pool with fewer seeding roots takes the rest into its first): each group's ``build_steps``
    compares the contents of its own torrents only. The second copy would fail at
    the executor (it never overwrites) and block that group; with the same content, the second
    group's view would rest on the first's. Next run the first group's files are at the
    destination, and the second is planned against them (reused, or blocked as different
    content)."""
    maybe = _repeated(p for g in plans if g.actionable for p in view_paths(g.steps))
    _later_ones_wait(
        plans,
        lambda g: {p for p in view_paths(g.steps) if maybe(p)},
        lambda g, other: f"waits for group {other}, which writes the same destination path in this run",
    )


def _skipped_places_kept(plans: list[GroupPlan]) -> None:
    """No move of a run puts a file where a torrent another group of the run moves has a skipped
    file (priority 0): the later of the two groups waits. ``write_place_blockers`` sees the places
    of the snapshot's torrents where they are now, not where a group of this run takes them (two
    source roots mapped onto one target root, ``map_to_pool``): the file put there would take the
    skipped file's pieces once it is wanted (R69). Next run the moved torrent is where its group
    took it, and the other group is checked against it (blocked), or its file is there (the
    torrent's own ``skipped_place_blockers``). Two skipped places of one path write nothing: no wait."""
    places = {p for g in plans if g.actionable for p in g.skipped_places}
    if not places:
        return
    skips: dict[str, str] = {}  # a skipped place -> the first group holding it
    writes: dict[str, str] = {}  # a view path that is also someone's skipped place -> its first group
    for g in plans:
        if not g.actionable:
            continue
        mine = {p for p in view_paths(g.steps) if p in places}
        why = _first_held(mine, skips, g.group_id, "which moves a torrent with a skipped file (priority 0) at {p}")
        why = why or _first_held(set(g.skipped_places), writes, g.group_id, "which puts a file at {p}")
        if why:
            g.action, g.steps = Action.SKIP, []
            g.reason = why + (
                ", where this group would put a file" if mine else ", where a torrent of this group has a skipped file"
            )
            continue
        for p in mine:
            writes.setdefault(p, g.group_id)
        for p in g.skipped_places:
            skips.setdefault(p, g.group_id)


def _first_held(mine: set[str], held: Mapping[str, str], me: str, what: str) -> str:
    """ "waits for group X, <what>" of the first of ``mine`` another group holds in ``held``; "" if none."""
    for p in sorted(mine):
        if held.get(p, me) != me:
            return f"waits for group {held[p]}, " + what.format(p=p)
    return ""


def _later_ones_wait(
    plans: list[GroupPlan], claims: Callable[[GroupPlan], set], reason: Callable[[GroupPlan, str], str]
) -> None:
    """The rule of both cross-group passes: the first actionable group to claim a key keeps it; a
    later group claiming a key another one holds waits for the next run (skipped, ``reason``)."""
    first: dict = {}
    for g in plans:
        if not g.actionable:
            continue
        mine = claims(g)
        if not mine:
            continue  # claims nothing (a convergence copies and makes nothing): nothing to hold or wait for
        other = next((first[k] for k in sorted(mine) if first.get(k, g.group_id) != g.group_id), None)
        if other is not None:
            g.action, g.steps = Action.SKIP, []
            g.reason = reason(g, other)
            continue
        for k in mine:
            first.setdefault(k, g.group_id)


def _copied_once(plans: list[GroupPlan]) -> None:
    """One copy of a content per target pool and run: a later group that would copy a content an
    earlier actionable group of this plan copies to the same pool waits for the next run.

    Each group's donors are what is on the target when the snapshot was taken, so two groups of
    one content (a second download of a release, a re-grab beside the first: other inodes, no
    shared path) both copied it, and the run left it twice on the target until a later run
    converged it (found by tests/integration/test_world_scenarios.py, seed 9). Waiting instead
    of linking from the earlier group's copy keeps each group's steps its own (a failed or
    rolled-back earlier group leaves nothing another group depends on); the next run finds the
    copy on the target as a donor and links to it, copying nothing. Only copies with a planned
    hash can be matched: a demoting file with a same-content file on its own dataset is hashed
    for convergence (``Snapshot._hash_what_decisions_need``), so equal contents are known here.
    """
    # Most contents are copied by one group only: only hashes ``_repeated`` meets twice are mapped.
    maybe = _repeated(h for g in plans if g.actionable for _size, h in copied(g.steps) if h is not None)
    _later_ones_wait(
        plans,
        lambda g: {
            (g.target_pool, size, h)
            for size, h in copied(g.steps)
            if h is not None
            and size >= g.incidental_below  # an incidental file is copied by each payload
            and maybe(h)
        },
        lambda g, other: f"waits for group {other}, which copies the same content to {g.target_pool} in this run",
    )


def _within_free_space(plans: list[GroupPlan], room: Mapping[str, Room], reserve: Reserve) -> None:
    """The copies of one run fit on their pools together, not each group alone: in plan order each
    actionable group's bytes to copy (a demote's payload, a promote's small extras) are spent from
    its target pool's free bytes; a group that no longer fits waits for the next run (skipped),
    and a later, smaller one may still fit. Each group alone was checked against the whole of
    the free space (``decide``), so three 1000-byte groups all planned onto a pool with 1500
    bytes free, and the run filled the pool (R11 #4). Every pool keeps ``reserve`` free. A pool
    missing from ``room`` has no room."""
    left = dict(room)
    for g in plans:
        if not g.actionable or not g.bytes_to_copy:
            continue  # a convergence, or a move that only links: nothing written
        pool = g.target_pool or ""
        free, size = left.get(pool, Room(0, 0))
        if not fits(g.bytes_to_copy, free, size=size, reserve=reserve):
            g.action, g.steps = Action.SKIP, []
            g.reason = (
                f"waits: {_b(g.bytes_to_copy)} to copy, {_b(free)} left on {pool} after earlier groups of this run"
                if g.bytes_to_copy > free
                else f"waits for room on {pool} after earlier groups of this run: "
                + leaves(g.bytes_to_copy, free, size=size, reserve=reserve)
            )
            continue
        left[pool] = Room(free - g.bytes_to_copy, size)


def _apply_batch_cap(plans: list[GroupPlan], cap: int) -> None:
    n = 0
    for g in plans:
        if g.actionable:
            n += 1
            if cap and n > cap:
                g.action, g.steps = Action.SKIP, []
                g.reason = _CAP_REASON.format(cap=cap)


_CAP_REASON = "over this run's cap of {cap} groups (policy.max_groups_per_run); next run"


def _short(paths: list[str], unknown: int) -> str:
    s = ", ".join(paths[:2]) + (f" (+{len(paths) - 2} more)" if len(paths) > 2 else "")
    if unknown:
        s += (", " if s else "") + f"{unknown} link(s) outside the scanned pools"
    return s
