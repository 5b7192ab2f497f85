"""Approved plans: save a plan someone reviewed, later apply exactly that plan or nothing of it.

``qbhook plan --save FILE`` writes a versioned JSON document: the plan's groups
(decision, reason, steps), a ``fingerprint`` per group and a ``plan_id``, the
SHA-256 of everything else in the document, so an edited file is refused.

A group's fingerprint is a hash of the facts its decision rests on, read from
the snapshot the plan was made from: its torrents (hash, instance, save path,
files with size and inode), every inode of those files (size, link count,
content hash, every known link inside and outside the seeding roots), and what
sits at each path its steps would write to. Facts that churn without changing
any decision (free space, the torrent's transfer state, the clock) are left out:
the decision and the steps are compared separately, and the executor re-checks
space and state right before it acts.

``qbhook apply --plan FILE --yes`` re-gathers facts for the plan's groups only,
plans them again and, per group, approves the saved group only when the fresh
decision, the fresh steps and the fresh fingerprint all equal the saved ones.
Any difference refuses that group, with one line saying which fact moved; the
other groups still apply (``move.run.apply_saved`` runs the executor on them). The
rule: an approval covers the world as it was shown, never a world that has changed since.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from qbhook.clients.port import ClientPort
from qbhook.decide.facts import Snapshot
from qbhook.decide.plan import Delete, GroupPlan, Plan
from qbhook.errors import ExitCode, NotRegularFile, PlanFileError, PlanFileUnwritable

FORMAT = "qbhook-plan"
# The document's version. Each step inside carries its own (``"v"``, qbhook.decide.plan); files saved
# before steps had one (no ``"v"``) read as step version 1, the same fields.
VERSION = 1
# A saved plan is JSON of its groups and steps: megabytes for thousands of groups. Far more is
# a wrong path, not a plan (and is never read whole into memory).
MAX_PLAN_BYTES = 256 * 2**20

# ------------------------------------------------------------------ fingerprints


def group_facts(snap: Snapshot, torrent_hashes: list[str], steps_dsts: list[str]) -> dict:
    """The facts one group's decision rests on, as canonical plain data (see the module docstring)."""
    wanted = set(torrent_hashes)
    torrents = sorted((t for t in snap.torrents if t.hash in wanted), key=lambda t: (t.hash, t.instance))
    keys = sorted({f.inode for t in torrents for f in t.files if f.inode is not None})
    inodes = []
    for k in keys:
        i = snap.inodes.get(k)
        inodes.append(
            None
            if i is None
            else {
                "fsid": i.fsid,
                "ino": i.ino,
                "size": i.size,
                "nlink": i.nlink,
                "blake3": i.blake3,
                "seeding_paths": sorted(i.seeding_paths),
                "other_paths": sorted(i.other_paths),
            }
        )
    existing = {}
    for d in sorted(set(steps_dsts)):
        k = snap.existing.get(d)
        existing[d] = list(k) if k is not None else None
    return {
        "torrents": [
            {
                "hash": t.hash,
                "instance": t.instance,
                "save_path": t.save_path,
                "download_path": t.download_path,
                "files": [
                    {
                        "rel": f.rel,
                        "size": f.size,
                        "path": f.path,
                        "priority": f.priority,
                        "inode": list(f.inode) if f.inode else None,
                    }
                    for f in t.files
                ],
            }
            for t in torrents
        ],
        "inodes": inodes,
        "destinations": existing,
    }


def _dsts(g: GroupPlan) -> list[str]:
    # Any step with a ``dst`` writes there, whatever its kind.
    return [d for s in g.steps if (d := getattr(s, "dst", None)) is not None]


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def fingerprint(snap: Snapshot, g: GroupPlan) -> str:
    return _digest(group_facts(snap, g.torrents, _dsts(g)))


def _steps_of(g: GroupPlan) -> list[dict]:
    return [{"kind": s.kind, "args": s.args} for s in g.steps]


# ------------------------------------------------------------------ the file


def document(plan: Plan, snap: Snapshot, pools: dict[str, list[str]]) -> dict:
    """The saved form of ``plan``. ``pools``: pool name -> its seeding roots, to refuse another setup's file."""
    groups = []
    for g in plan.groups:
        d = g.to_dict()
        d["fingerprint"] = fingerprint(snap, g)
        groups.append(d)
    body = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": plan.created_at,
        "pools": pools,
        "groups": groups,
        "summary": plan.summary(),
    }
    # JSON round trip first, so the id is computed over exactly what a reader will see.
    body = json.loads(json.dumps(body, sort_keys=True))
    return {"plan_id": _digest(body), **body}


def save(path: str | os.PathLike, doc: dict) -> None:
    """Write atomically: a reader never sees half a plan."""
    # Path strings, not the fd-relative helpers of move/fsops, on purpose: a plan file goes where
    # the operator's own argument (`plan --save FILE`) says, never into a seeding tree the
    # client's users can write; mkstemp creates the temporary name exclusively (O_EXCL).
    from qbhook.files import NotReplaceable, replace_file

    path = Path(path)
    try:
        replace_file(path, json.dumps(doc, sort_keys=True, indent=1) + "\n", prefix=".qbhook-plan.")
    except NotReplaceable as e:  # before anything is written: the rename replaces what is there
        raise NotRegularFile(f"cannot save the plan: {e}") from None
    except OSError as e:
        raise PlanFileUnwritable(f"cannot write plan file {path}: {e.strerror}") from None


@dataclass
class SavedPlan:
    plan_id: str
    pools: dict[str, list[str]]
    plan: Plan
    fingerprints: dict[str, str]  # group_id -> fingerprint


def load(path: str | os.PathLike, pools: dict[str, list[str]]) -> SavedPlan:
    """Read and check a saved plan; any defect is a PlanFileError naming it."""
    from qbhook.files import Missing, NotReadable, decode_text, read_regular_file

    try:
        text = decode_text(read_regular_file(path, MAX_PLAN_BYTES), path)
    except Missing:
        raise PlanFileError(f"plan file {path} does not exist") from None
    except NotReadable as e:  # a FIFO blocked here forever, /dev/zero never ended; binary bytes
        raise PlanFileError(f"plan file: {e}") from None
    try:
        doc = json.loads(text)
    except RecursionError:  # [[[[... was a RecursionError traceback
        raise PlanFileError(f"plan file {path} is not a qbhook plan (JSON nested too deeply)") from None
    except ValueError as e:
        raise PlanFileError(f"plan file {path} is not JSON ({e.msg} at line {e.lineno})") from None
    return parse(doc, pools, str(path))


def parse(doc, pools: dict[str, list[str]], where: str = "plan file") -> SavedPlan:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PlanFileError(
            f"{where} is not a qbhook plan (no \"format\": \"{FORMAT}\")", hint="make one with: qbhook plan --save FILE"
        )
    if doc.get("version") != VERSION:
        raise PlanFileError(
            f"{where} has plan format version {doc.get('version')!r}; this qbhook reads version {VERSION}",
            hint="make the plan again with this qbhook: qbhook plan --save FILE",
        )
    body = {k: v for k, v in doc.items() if k != "plan_id"}
    if doc.get("plan_id") != _digest(body):
        raise PlanFileError(
            f"{where} was changed after it was saved (its plan id does not match its content)",
            hint="make the plan again: qbhook plan --save FILE",
        )
    if not same_pools(doc.get("pools"), pools):
        raise PlanFileError(
            f"{where} was made for other pools ({_pools_text(doc.get('pools'))}) than this "
            f"configuration's ({_pools_text(pools)})"
        )
    try:
        groups = doc["groups"]
        fps = {g["group_id"]: str(g["fingerprint"]) for g in groups}
        plan = Plan.from_dict(
            {
                "groups": [{k: v for k, v in g.items() if k != "fingerprint"} for g in groups],
                "created_at": doc.get("created_at") or 0.0,  # bounded by Plan.from_dict
            }
        )
    except (KeyError, TypeError, ValueError) as e:
        raise PlanFileError(f"{where} has a malformed group ({type(e).__name__}: {e})") from None
    return SavedPlan(doc["plan_id"], pools, plan, fps)


def same_pools(saved, pools: dict[str, list[str]]) -> bool:
    """Was the file made for these pools and seeding roots?

    A file records every seeding root of each pool, in order (the first is where views are
    built). Files saved before that recorded one path per pool, the first root, which is all
    such a file can say: it matches when that path is this configuration's first root.
    """
    if not isinstance(saved, dict) or set(saved) != set(pools):
        return False
    for name, given in pools.items():
        roots = [given] if isinstance(given, str) else list(given)  # one root may be given bare
        v = saved[name]
        if isinstance(v, str):
            if not roots or v != roots[0]:
                return False
        elif v != roots:
            return False
    return True


def _pools_text(pools) -> str:
    if not isinstance(pools, dict):
        return "unknown"

    def roots(v) -> str:
        return v if isinstance(v, str) else " + ".join(map(str, v)) if isinstance(v, list) else repr(v)

    return ", ".join(f"{k}: {roots(v)}" for k, v in sorted(pools.items(), key=lambda kv: str(kv[0])))


# ------------------------------------------------------------------ re-validation


@dataclass
class Verdict:
    group_id: str
    ok: bool
    reason: str  # why it still holds, or which fact changed


def revalidate(saved: SavedPlan, snap: Snapshot, fresh: Plan) -> list[Verdict]:
    """Per saved actionable group: does the fresh plan, made from fresh facts, say exactly the same?"""
    by_id = {g.group_id: g for g in fresh.groups}
    out = []
    for g in saved.plan.actionable:
        now = by_id.get(g.group_id)
        if now is None:
            reason = _membership_change(g, fresh)
        elif (now.action, now.source_pool, now.target_pool) != (g.action, g.source_pool, g.target_pool):
            reason = f"decision changed: now {now.action.upper()} ({now.reason}), was {g.action.upper()}"
        elif _digest(_steps_of(now)) != _digest(_steps_of(g)):
            reason = (
                "its steps changed (the data or what sits at its destinations changed, "
                "or another qbhook version saved the plan: save it again)"
            )
        elif fingerprint(snap, g) != saved.fingerprints.get(g.group_id):
            reason = "its facts changed since the plan was saved: " + _what_changed(g, snap)
        else:
            out.append(Verdict(g.group_id, True, "unchanged since the plan was saved"))
            continue
        out.append(Verdict(g.group_id, False, reason))
    return out


def _membership_change(g: GroupPlan, fresh: Plan) -> str:
    holders = {g2.group_id for g2 in fresh.groups for h in g.torrents if h in g2.torrents}
    if not holders:
        return "its torrents are gone from qBittorrent"
    return "its torrents changed (a torrent was added to or removed from the group)"


def _what_changed(g: GroupPlan, snap: Snapshot) -> str:
    # The saved file keeps only the digest, so say which kind of fact cannot be the same,
    # judged against what the saved steps expected.
    links = {s.path: s.seeding_links for s in g.steps if isinstance(s, Delete)}
    by_path = {f.path: f for t in snap.torrents if t.hash in g.torrents for f in t.files}
    for path, seeding in links.items():
        f = by_path.get(path)
        i = snap.inodes.get(f.inode) if f and f.inode else None
        if i is None:
            return f"{path} is missing"
        if i.nlink != len(seeding) or i.other_paths:
            return f"{path} now has {i.nlink} link(s), the plan expected {len(seeding)}"
    return "inode identities, sizes, hashes or links of its files, or what sits at its destinations"


# ------------------------------------------------------------------ apply


def seeding_roots(cfg) -> dict[str, list[str]]:
    """Pool name -> every seeding root of the pool, in configured order (what a saved plan records)."""
    return {p.name: [str(r) for r in p.seeding_roots] for p in cfg.pools}


@dataclass
class SavedRun:
    plan_id: str
    verdicts: list[Verdict]
    summary: object  # executor.RunSummary (dry run: what would run)

    @property
    def stale(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.ok]

    @property
    def exit_code(self) -> ExitCode:
        # A group failed or busy while running says more than a stale one refused before (the others ran).
        return self.summary.exit_code or (ExitCode.STALE if self.stale else ExitCode.OK)

    def to_dict(self) -> dict:
        return {
            "plan_id": self.plan_id,
            "stale": {v.group_id: v.reason for v in self.stale},
            "valid": [v.group_id for v in self.verdicts if v.ok],
            **self.summary.to_dict(),
        }


def revalidate_saved(
    cfg, catalog, clients: Iterable[ClientPort], saved: SavedPlan, *, scan: bool = True, progress=None
) -> tuple[list[Verdict], Plan]:
    """Re-gather facts for the saved plan's groups only and re-validate each: the verdicts, and
    the plan of the groups that hold (what ``move.run.apply_saved`` applies)."""
    from qbhook.catalog.scan import scan_pool
    from qbhook.decide.planner import make_plan
    from qbhook.decide.snapshot import build_snapshot

    groups = saved.plan.actionable
    verdicts: list[Verdict] = []
    if groups:
        hashes = sorted({h for g in groups for h in g.torrents})
        live = {h for c in clients for t in c.torrents() for h in t.hashes}
        gone = {g.group_id for g in groups if not set(g.torrents) <= live}
        verdicts = [Verdict(gid, False, "one of its torrents is gone from qBittorrent") for gid in sorted(gone)]
        hashes = [h for h in hashes if h in live]
        if hashes:
            if scan:
                for pool in cfg.pools:
                    scan_pool(catalog, pool, cfg.scan, progress=progress)
            snap = build_snapshot(cfg, catalog, clients, hashes=hashes, progress=progress)
            fresh = make_plan(snap, cfg.policy)
            keep = Plan(groups=[g for g in groups if g.group_id not in gone], created_at=saved.plan.created_at)
            verdicts += revalidate(SavedPlan(saved.plan_id, saved.pools, keep, saved.fingerprints), snap, fresh)
    ok = [v.group_id for v in verdicts if v.ok]
    return verdicts, Plan(groups=[g for g in groups if g.group_id in ok], created_at=saved.plan.created_at)
