"""The data a planner produces and an executor consumes. Plain data, JSON-able.

A ``Plan`` is a list of ``GroupPlan``s, one per payload group (all torrents
sharing any file). Each group carries its decision, the reason a person can
read, and the ordered ``Step``s that carry it out. Steps are idempotent by
design: each names the state it produces, so an executor resuming after a
crash can tell "already done" from "not yet done" by looking at the world.

Step kinds and their args (all paths are host paths, strings):

- ``copy``      src, dst, size, blake3       copy once onto the target dataset (staged, hashed, fsynced, renamed)
- ``link``      src, dst, size, blake3       hardlink dst to the donor inode at src (same dataset)
- ``mkempty``   dst                          zero-length file (never link a 0-byte stub over data)
- ``verify_view`` torrent, instance, save_path, files: [{path, size, blake3}]
- ``relocate``  torrent, instance, from_path, to_path, size   setLocation, wait for 100%, roll back on failure
- ``verify_group`` torrents: [{torrent, instance, save_path}]
- ``delete``    path, fsid, ino, size, blake3, keep: {path, fsid, ino}, seeding_links: [paths]
                 unlink an old link after proving ``keep`` holds the same content and no
                 link outside ``seeding_links`` appeared since planning
- ``prune_dirs`` root, stop_at               remove folders emptied by the deletes, up to stop_at
- ``tag``       torrent, instance, add: [..], remove: [..]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

ACTIONS = ("stay", "demote", "promote", "blocked", "skip")
STEP_KINDS = ("copy", "link", "mkempty", "verify_view", "relocate", "verify_group", "delete", "prune_dirs", "tag")


@dataclass(frozen=True, slots=True)
class Step:
    kind: str
    args: dict

    def __post_init__(self):
        if self.kind not in STEP_KINDS:
            raise ValueError(f"unknown step kind {self.kind!r}")


@dataclass
class GroupPlan:
    group_id: str
    torrents: list[str]                 # hashes
    names: list[str]
    action: str                         # one of ACTIONS
    reason: str
    source_pool: str | None = None
    target_pool: str | None = None
    bytes_to_copy: int = 0
    bytes_freed: int = 0                # on the source pool, each inode counted once
    payload_bytes: int = 0
    external_links: list[str] = field(default_factory=list)   # paths that keep it on primary
    blockers: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def actionable(self) -> bool:
        return self.action in ("demote", "promote")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["steps"] = [{"kind": s.kind, "args": s.args} for s in self.steps]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GroupPlan":
        d = dict(d)
        d["steps"] = [Step(s["kind"], s["args"]) for s in d.get("steps", [])]
        return cls(**d)


@dataclass
class Plan:
    groups: list[GroupPlan]
    created_at: float = 0.0

    @property
    def actionable(self) -> list[GroupPlan]:
        return [g for g in self.groups if g.actionable]

    def to_dict(self) -> dict:
        return {"created_at": self.created_at, "groups": [g.to_dict() for g in self.groups],
                "summary": self.summary()}

    def summary(self) -> dict:
        out = {a: 0 for a in ACTIONS}
        for g in self.groups:
            out[g.action] += 1
        out["bytes_to_copy"] = sum(g.bytes_to_copy for g in self.actionable)
        out["bytes_freed"] = sum(g.bytes_freed for g in self.actionable)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        return cls(groups=[GroupPlan.from_dict(g) for g in d["groups"]], created_at=d.get("created_at", 0.0))


def describe_step(kind: str, a: dict) -> str:
    """One line for a person: what this step touches."""
    if kind in ("copy", "link"):
        return f"{a.get('src')} -> {a.get('dst')}"
    if kind == "mkempty":
        return str(a.get("dst"))
    if kind == "relocate":
        return f"{str(a.get('torrent'))[:12]} {a.get('from_path')} -> {a.get('to_path')}"
    if kind == "verify_view":
        return f"{str(a.get('torrent'))[:12]} {len(a.get('files', []))} files at {a.get('save_path')}"
    if kind == "verify_group":
        return f"{len(a.get('torrents', []))} torrent(s)"
    if kind == "delete":
        return str(a.get("path"))
    if kind == "prune_dirs":
        return f"{a.get('root')} (up to {a.get('stop_at')})"
    if kind == "tag":
        return f"{str(a.get('torrent'))[:12]} +{a.get('add') or []} -{a.get('remove') or []}"
    return ""
