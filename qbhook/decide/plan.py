"""The data a planner produces and an executor consumes: typed, immutable, JSON-able.

A ``Plan`` is a list of ``GroupPlan``s, one per payload group (all torrents
sharing any file). Each group carries its decision, the reason a person can
read, and the ordered steps that carry it out. Steps are idempotent by
design: each names the state it produces, so an executor resuming after a
crash can tell "already done" from "not yet done" by looking at the world.

One frozen, slotted class per step kind (all paths are host paths):

- ``Copy``        src, dst, size, blake3     copy once onto the target dataset (staged, hashed, fsynced, renamed);
                   blake3 None ("hash": "from_copy" in JSON): no pre-hash was planned, the copy's own
                   hash becomes the content every later step of the group checks against
- ``Link``        src, dst, size, blake3     hardlink dst to the donor inode at src (same dataset)
- ``MkEmpty``     dst                        zero-length file (never link a 0-byte stub over data)
- ``VerifyView``  torrent, instance, save_path, files: (ViewFile(path, size, blake3), ...)
                   (stored as columns: paths, sizes, blake3s)
- ``Relocate``    torrent, instance, from_path, to_path, size   setLocation, wait for 100%, roll back on failure
- ``VerifyGroup`` torrents: (Member(torrent, instance, save_path), ...)
- ``Start``       torrent, instance          a relocated torrent back in the state its relocation
                   found it (started if it ran), only after the group's ``VerifyGroup``: until then
                   every relocated torrent stays stopped on its new files (a library's, on a promote)
- ``Delete``      path, fsid, ino, size, blake3, keep: Keep(path, fsid, ino), seeding_links
                   (``keep`` is stored flat: keep_path, keep_fsid, keep_ino)
                   unlink an old link after proving ``keep`` holds the same content and no
                   link outside ``seeding_links`` appeared since planning
- ``PruneDirs``   root, stop_at, below       remove folders emptied by the deletes, up to stop_at;
                   below (default true) also the empty folders under root
- ``Tag``         torrent, instance, add, remove
- ``Converge``    path, fsid, ino, size, mtime_ns, blake3, keep: ConvergeKeep(path, fsid, ino, library)
                   same-pool convergence (``decide/converge.py``): replace the seeding link ``path``
                   by a hardlink to the kept inode, atomically (``fsops.relink_over``)
- ``Repair``      torrent, instance, from_path, to_path, size   a missing torrent onto its verified view
                   (``decide/repair.py``): stop, setLocation when the path changes, recheck,
                   wait for 100 %, start; unlike ``Relocate`` it expects a torrent in ``missingFiles``

A planned group's ``steps`` is a ``StepList``: the per-file kinds (copy, link, mkempty,
delete) are held as columns per torrent and built when read, so a million-file plan holds no
object per file (issue 13); readers see the same typed steps, in order, and the same JSON.
A plan read back from JSON holds a plain list.

What a step *does* lives in the executor's dispatch table (keyed by these classes); here a
step only knows its fields, its one-line ``describe()`` and its JSON form.

JSON form (plans, ``plan --save`` files, the journal): ``{"kind": K, "args": {"v": 2, ...}}``,
where ``args`` has the field names above (``keep`` and the list members as objects) and the
step format version ``"v"``. The version sits inside ``args`` because the journal stores a
step's args as they are in the plan (one JSON form in both places). Version 1, written before
the steps were typed, is the same without ``"v"``; both are read (``step_from_json``), so a
journal a crash left behind and an older saved plan still load.

A new kind is one class here (a ``kind`` and ``from_args``) registered with ``@_kind``, plus one
entry in ``qbhook.move.executor.HANDLERS``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator, Mapping, MutableSequence, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import islice
from typing import Any, ClassVar

from qbhook.numbers import MAX_INT, MIN_INT, finite, whole

STEP_VERSION = 2  # written into every step's args as "v"; readers accept 1 and 2


class Action(enum.StrEnum):
    """A group's decision."""

    STAY = "stay"
    DEMOTE = "demote"
    PROMOTE = "promote"
    CONVERGE = "converge"
    REPAIR = "repair"  # qbhook repair: a missing torrent rebuilt from a catalog copy (decide/repair.py)
    BLOCKED = "blocked"
    SKIP = "skip"


ACTIONS = tuple(a.value for a in Action)
# The decisions that make a group act (``GroupPlan.actionable``). A set built once: an enum member
# read off its class costs a descriptor call each time (Python 3.11), and a plan's cross-group
# passes ask every group several times (7 times each of a 10,000-group convergence pass).
_ACTIONABLE = frozenset({Action.DEMOTE, Action.PROMOTE, Action.CONVERGE, Action.REPAIR})


class StepStatus(enum.StrEnum):
    """A journaled step: written ``intended`` before it acts, then closed."""

    INTENDED = "intended"
    DONE = "done"
    FAILED = "failed"
    UNDONE = "undone"


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PLANNED = "planned"  # a dry run: nothing was journaled


class GroupStatus(enum.StrEnum):
    """What happened to one group in a run (journal ``group_state`` and ``GroupOutcome``)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    BUSY = "busy"
    PLANNED = "planned"


class StepFormatError(ValueError):
    """A step's JSON is not one this qbhook can read (the callers turn it into their own error)."""


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class Step:
    """Base of every step kind. ``Step.of(kind, args)`` builds the typed step from its JSON args."""

    kind: ClassVar[str] = ""

    @property
    def args(self) -> dict[str, Any]:
        """The JSON args (version 1 and 2 share them): what the journal and saved plans hold."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "args": {**self.args, "v": STEP_VERSION}}

    def describe(self) -> str:
        """One line for a person: what this step touches."""
        raise NotImplementedError

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> Step:
        raise NotImplementedError

    @staticmethod
    def of(kind: str, args: Mapping[str, Any]) -> Step:
        try:
            cls = STEP_TYPES[kind]
        except (KeyError, TypeError):
            raise StepFormatError(f"unknown step kind {kind!r}") from None
        if not isinstance(args, Mapping):
            raise StepFormatError(f"{kind} step: args are not an object")
        try:
            return cls.from_args(args)
        except KeyError as e:
            raise StepFormatError(f"{kind} step lacks {e.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise StepFormatError(f"{kind} step has a malformed field ({e})") from None


STEP_TYPES: dict[str, type[Step]] = {}


def _kind(cls: type[Step]) -> type[Step]:
    STEP_TYPES[cls.kind] = cls
    return cls


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if hasattr(v, "__dataclass_fields__"):
        return v.to_json() if hasattr(v, "to_json") else asdict(v)
    return v


def _int(v: Any, name: str, lo: int = 0) -> int:
    """A whole number of a step or group field, bounded (numbers.whole): a saved plan or a
    journal row is input, and int() took 1e999 (OverflowError) or 10**30 (past SQLite)."""
    try:
        return whole(v, lo)
    except ValueError as e:
        raise ValueError(f"{name} {e}") from None


def _opt_int(v: Any, name: str, lo: int = 0) -> int | None:
    return None if v is None else _int(v, name, lo)


def _strs(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        raise TypeError("expected a list of paths, not one string")
    return tuple(str(x) for x in v or ())


def split_path(path: str) -> tuple[str, str]:
    """(folder with its trailing "/", name): the two halves a new path is stored as."""
    i = path.rfind("/") + 1
    return path[:i], path[i:]


# A plan makes one new path per file, each the target folder of its torrent plus the file's
# path inside the torrent. Steps keep those two halves (both shared with other objects: the
# folder per torrent, the relative path with the facts) and join them when asked: a second
# string per file is ~50 MiB in a million-file plan (issue 13).


class _FromSrc:
    """Copy and Link: make ``to_dir + rel`` from ``src`` (same JSON shape, same one-line description)."""

    __slots__ = ()

    @property
    def dst(self) -> str:
        return self.to_dir + self.rel

    @property
    def args(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "size": self.size, "blake3": self.blake3}

    def describe(self) -> str:
        return f"{self.src} -> {self.dst}"


HASH_FROM_COPY = "from_copy"


@_kind
@dataclass(frozen=True, slots=True)
class Copy(_FromSrc, Step):
    kind: ClassVar[str] = "copy"
    src: str
    to_dir: str  # dst = to_dir + rel (to_dir ends with "/")
    rel: str
    size: int
    # None: the snapshot did not pre-hash the source (nothing on the target has its size, so
    # there is nothing to reuse); the executor takes the hash from the copy itself.
    blake3: str | None

    @property
    def args(self) -> dict[str, Any]:
        out = _FromSrc.args.fget(self)
        if self.blake3 is None:
            # Said out loud, not only a null: a plan that lost its hash by accident must not read
            # as "no verification wanted" (``from_args`` refuses a null without the marker).
            out["hash"] = HASH_FROM_COPY
        return out

    def describe(self) -> str:
        return _FromSrc.describe(self) + (" (hash taken from the copy)" if self.blake3 is None else "")

    @classmethod
    def from_args(cls, a):
        step = cls(a["src"], *split_path(a["dst"]), _int(a["size"], "size"), a["blake3"])
        if step.blake3 is None and a.get("hash") != HASH_FROM_COPY:
            raise ValueError('blake3 is null without "hash": "from_copy"')
        return step


@_kind
@dataclass(frozen=True, slots=True)
class Link(_FromSrc, Step):
    kind: ClassVar[str] = "link"
    src: str
    to_dir: str
    rel: str
    size: int | None = None
    blake3: str | None = None
    # What was at ``dst`` right before the act (``DST_ABSENT``, ``DST_TAKEN``), journaled with a
    # repair's intent: after a kill between the link and its outcome row, a failed repair's undo
    # tells its own link from a name it found. The planner leaves it empty.
    dst_before: str | None = None

    @property
    def args(self) -> dict[str, Any]:
        return _with_before(_FromSrc.args.fget(self), self.dst_before)

    @classmethod
    def from_args(cls, a):
        return cls(a["src"], *split_path(a["dst"]), _opt_int(a.get("size"), "size"), a.get("blake3"), _before_of(a))


@_kind
@dataclass(frozen=True, slots=True)
class MkEmpty(Step):
    kind: ClassVar[str] = "mkempty"
    to_dir: str
    rel: str
    dst_before: str | None = None  # as ``Link.dst_before``

    @property
    def dst(self) -> str:
        return self.to_dir + self.rel

    @property
    def args(self) -> dict[str, Any]:
        return _with_before({"dst": self.dst}, self.dst_before)

    def describe(self) -> str:
        return self.dst

    @classmethod
    def from_args(cls, a):
        return cls(*split_path(a["dst"]), _before_of(a))


DST_ABSENT, DST_TAKEN = "absent", "taken"  # a make step's ``dst_before``


def _with_before(args: dict[str, Any], before: str | None) -> dict[str, Any]:
    if before is not None:
        args["_dst_before"] = before
    return args


def _before_of(a: Mapping[str, Any]) -> str | None:
    v = a.get("_dst_before")
    if v not in (None, DST_ABSENT, DST_TAKEN):
        raise ValueError(f"_dst_before is {v!r}")
    return v


@dataclass(frozen=True, slots=True)
class ViewFile:
    path: str  # absolute, or relative to the view's save path
    size: int
    blake3: str | None


@_kind
@dataclass(frozen=True, slots=True)
class VerifyView(Step):
    kind: ClassVar[str] = "verify_view"
    torrent: str
    instance: str
    save_path: str
    # The files as three parallel columns (``files`` gives them as ViewFiles): one object per
    # file less, ~25 MiB in a million-file plan.
    paths: tuple[str, ...]  # relative to save_path, or absolute
    sizes: tuple[int, ...]
    blake3s: tuple[str | None, ...]

    @classmethod
    def of_files(cls, torrent: str, instance: str, save_path: str, files: Iterable[ViewFile]) -> VerifyView:
        files = tuple(files)
        return cls(
            torrent,
            instance,
            save_path,
            tuple(f.path for f in files),
            tuple(f.size for f in files),
            tuple(f.blake3 for f in files),
        )

    def __post_init__(self):
        if not len(self.paths) == len(self.sizes) == len(self.blake3s):
            raise ValueError("verify_view: paths, sizes and blake3s differ in length")

    @property
    def files(self) -> tuple[ViewFile, ...]:
        """Paths absolute (a relative one is below ``save_path``)."""
        base = self.save_path + "/"
        return tuple(
            ViewFile(p if p.startswith("/") else base + p, s, b)
            for p, s, b in zip(self.paths, self.sizes, self.blake3s)
        )

    @property
    def args(self) -> dict[str, Any]:
        return {
            "torrent": self.torrent,
            "instance": self.instance,
            "save_path": self.save_path,
            "files": [{"path": f.path, "size": f.size, "blake3": f.blake3} for f in self.files],
        }

    def describe(self) -> str:
        return f"{self.torrent[:12]} {len(self.paths)} files at {self.save_path}"

    @classmethod
    def from_args(cls, a):
        base = a["save_path"] + "/"
        # Stored relative when below the save path, as the planner stores them (see split_path).
        files = (
            ViewFile(
                p[len(base) :] if (p := f["path"]).startswith(base) else p, _int(f["size"], "size"), f.get("blake3")
            )
            for f in a["files"]
        )
        return cls.of_files(a["torrent"], a["instance"], a["save_path"], files)


@dataclass(frozen=True, slots=True)
class _TorrentMove(Step):
    """What ``Relocate`` and ``Repair`` share: a torrent pointed from one save path to another,
    and ``observed``, the torrent as the executor first saw it (running? where? ATM, download
    path), journaled with the intent so whoever undoes the step after a crash knows what to
    restore; first seen in a transition (a check), replaced by the look the move is issued on,
    before it. The planner leaves it empty. Not a kind of its own (siblings, so an
    ``isinstance(s, Relocate)`` never takes a repair)."""

    torrent: str
    instance: str
    from_path: str
    to_path: str
    size: int = 0
    observed: Mapping[str, Any] | None = None

    @property
    def args(self) -> dict[str, Any]:
        out = {
            "torrent": self.torrent,
            "instance": self.instance,
            "from_path": self.from_path,
            "to_path": self.to_path,
            "size": self.size,
        }
        if self.observed is not None:
            out["_observed"] = dict(self.observed)
        return out

    @classmethod
    def from_args(cls, a):
        obs = a.get("_observed")
        return cls(
            a["torrent"],
            a["instance"],
            a["from_path"],
            a["to_path"],
            _int(a.get("size") or 0, "size"),
            dict(obs) if obs else None,
        )


@_kind
@dataclass(frozen=True, slots=True)
class Relocate(_TorrentMove):
    kind: ClassVar[str] = "relocate"

    def describe(self) -> str:
        return f"{self.torrent[:12]} {self.from_path} -> {self.to_path}"


@dataclass(frozen=True, slots=True)
class Member:
    torrent: str
    instance: str
    save_path: str


@_kind
@dataclass(frozen=True, slots=True)
class VerifyGroup(Step):
    kind: ClassVar[str] = "verify_group"
    torrents: tuple[Member, ...]

    def describe(self) -> str:
        return f"{len(self.torrents)} torrent(s)"

    @classmethod
    def from_args(cls, a):
        return cls(tuple(Member(x["torrent"], x["instance"], x["save_path"]) for x in a["torrents"]))


@_kind
@dataclass(frozen=True, slots=True)
class Start(Step):
    """Torrent ``torrent`` of ``instance``, relocated by this group and left stopped there, started
    again as its relocation found it (``Relocate.observed``). Planned after ``VerifyGroup``: no torrent
    of a group runs on its new files before every one of them is proven there. A plan without one
    for a relocated torrent (written before this kind existed) has its ``Relocate`` start it."""

    kind: ClassVar[str] = "start"
    torrent: str
    instance: str

    def describe(self) -> str:
        return f"{self.torrent[:12]} as its relocation found it"

    @classmethod
    def from_args(cls, a):
        return cls(a["torrent"], a["instance"])


@dataclass(frozen=True, slots=True)
class Keep:
    """The copy that must still hold the content when an old link is deleted."""

    path: str
    fsid: str | None = None
    ino: int | None = None

    def to_json(self) -> dict[str, Any]:
        # Only what is known: the planner names the path, and v1 plans spelled it the same way.
        out: dict[str, Any] = {"path": self.path}
        if self.fsid is not None:
            out["fsid"] = self.fsid
        if self.ino is not None:
            out["ino"] = self.ino
        return out


@_kind
@dataclass(frozen=True, slots=True)
class Delete(Step):
    """Unlink an old link (``path``, planned to be inode ``ino`` on ``fsid``) once ``keep`` is proven."""

    kind: ClassVar[str] = "delete"
    path: str
    # (fsid, ino) as one tuple: the facts' own inode key, shared, not two more fields per file.
    inode: tuple[str, int]
    size: int | None
    blake3: str | None
    # The copy to keep, flat (``keep`` gives it as one Keep): no object of its own per file, and
    # its path in two halves like a Copy's dst (``split_path``). A planned keep names only the path.
    keep_dir: str
    keep_rel: str
    seeding_links: tuple[str, ...] = ()
    keep_inode: tuple[str | None, int | None] | None = None

    @property
    def fsid(self) -> str:
        return self.inode[0]

    @property
    def ino(self) -> int:
        return self.inode[1]

    @property
    def keep_path(self) -> str:
        return self.keep_dir + self.keep_rel

    @property
    def keep_fsid(self) -> str | None:
        return self.keep_inode[0] if self.keep_inode else None

    @property
    def keep_ino(self) -> int | None:
        return self.keep_inode[1] if self.keep_inode else None

    @property
    def keep(self) -> Keep:
        return Keep(self.keep_path, self.keep_fsid, self.keep_ino)

    @property
    def args(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "fsid": self.fsid,
            "ino": self.ino,
            "size": self.size,
            "blake3": self.blake3,
            "keep": self.keep.to_json(),
            "seeding_links": list(self.seeding_links),
        }

    def describe(self) -> str:
        return self.path

    @classmethod
    def from_args(cls, a):
        k = a["keep"]
        keep_id = (k.get("fsid"), _opt_int(k.get("ino"), "keep ino"))
        return cls(
            a["path"],
            (a["fsid"], _int(a["ino"], "ino")),
            _opt_int(a.get("size"), "size"),
            a.get("blake3"),
            *split_path(k["path"]),
            _strs(a.get("seeding_links")),
            keep_id if keep_id != (None, None) else None,
        )


@_kind
@dataclass(frozen=True, slots=True)
class PruneDirs(Step):
    """Remove ``root`` if empty, then its empty parents up to (never including) ``stop_at``;
    ``below`` also every empty folder under ``root`` (``fsops.prune_empty_dirs``). ``below`` is
    only for a torrent's own root folder; the folder a torrent without one was saved in (a category
    folder, a cross-seed link folder, the seeding root) holds other torrents' folders and mount
    points, so it is pruned upwards only (False).

    JSON: ``below`` is written when known. A step without it is one an older version wrote (None
    here), which pruned below every root, the folder a torrent without its own root folder was
    saved in too (R47). Resumed as planned, a run such a version left unfinished removed other
    torrents' folders and a nested dataset's mount point after the upgrade (R50); the executor
    reads None as below only for a root that is not one of the group's save paths
    (``Executor._prune_dirs``), the one case the older planner got right. Kept None here, so the
    step's JSON stays what was journaled."""

    kind: ClassVar[str] = "prune_dirs"
    root: str
    stop_at: str
    below: bool | None = True

    @property
    def args(self) -> dict[str, Any]:
        a = {"root": self.root, "stop_at": self.stop_at}
        return a if self.below is None else {**a, "below": self.below}

    def describe(self) -> str:
        return f"{self.root} (up to {self.stop_at}{', nothing below it' if self.below is False else ''})"

    @classmethod
    def from_args(cls, a):
        below = a.get("below")  # absent: an older version's step (the docstring)
        if below is not None and not isinstance(below, bool):
            raise TypeError(f"below is {below!r}, not true or false")
        return cls(a["root"], a["stop_at"], below)


@_kind
@dataclass(frozen=True, slots=True)
class Tag(Step):
    kind: ClassVar[str] = "tag"
    torrent: str
    instance: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.torrent[:12]} +{list(self.add)} -{list(self.remove)}"

    @classmethod
    def from_args(cls, a):
        return cls(a["torrent"], a["instance"], _strs(a.get("add")), _strs(a.get("remove")))


@dataclass(frozen=True, slots=True)
class ConvergeKeep:
    """The inode a converging link is replaced by a link of (``library``: a library uses it)."""

    path: str
    fsid: str
    ino: int
    library: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "fsid": self.fsid, "ino": self.ino, "library": self.library}


@_kind
@dataclass(frozen=True, slots=True)
class Converge(Step):
    """Replace the seeding link ``path`` (planned inode ``ino`` on ``fsid``, ``size``, ``mtime_ns``,
    content ``blake3``) by a hardlink to ``keep``'s inode on the same dataset."""

    kind: ClassVar[str] = "converge"
    path: str
    fsid: str
    ino: int
    size: int
    mtime_ns: int | None
    blake3: str
    keep: ConvergeKeep

    @property
    def args(self) -> dict[str, Any]:
        # Step.args spelled out: a convergence plans one step per duplicate (10,000s per run), each
        # serialised for the run's plan and again for its journal row, and the generic field walk
        # was most of that cost. tests/unit/test_converge_batch.py checks both give the same dict.
        return {
            "path": self.path,
            "fsid": self.fsid,
            "ino": self.ino,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "blake3": self.blake3,
            "keep": self.keep.to_json(),
        }

    def describe(self) -> str:
        return f"{self.path} => link of {self.keep.path}"

    @classmethod
    def from_args(cls, a):
        k = a["keep"]
        return cls(
            a["path"],
            a["fsid"],
            _int(a["ino"], "ino"),
            _int(a["size"], "size"),
            _opt_int(a.get("mtime_ns"), "mtime_ns", MIN_INT),
            a["blake3"],
            ConvergeKeep(k["path"], k["fsid"], _int(k["ino"], "keep ino"), bool(k.get("library"))),
        )


@_kind
@dataclass(frozen=True, slots=True)
class Repair(_TorrentMove):
    """Point a torrent whose files went missing at its verified view ``to_path`` and recheck it to 100 %.

    ``Relocate`` cannot say this: it moves only complete, stable torrents and fails on
    ``missingFiles``, which is where a repair starts. Its ``observed`` (ATM, download path)
    lets a failed repair's move back, resumed after a crash too, give back what it turned off."""

    kind: ClassVar[str] = "repair"

    def describe(self) -> str:
        where = self.to_path if self.to_path == self.from_path else f"{self.from_path} -> {self.to_path}"
        return f"{self.torrent[:12]} recheck at {where}"


STEP_KINDS = tuple(STEP_TYPES)


def step_from_json(d: Mapping[str, Any]) -> Step:
    """A step from its JSON: version 2 (``{"kind", "args": {"v": 2, ...}}``) or version 1 (no ``"v"``)."""
    if not isinstance(d, Mapping):
        raise StepFormatError("a step is not an object")
    if "kind" not in d or "args" not in d:
        raise StepFormatError("a step lacks 'kind' or 'args'")
    args = d["args"]
    if isinstance(args, Mapping):
        check_version(args.get("v", 1))
    return Step.of(d["kind"], args)


def check_version(v: Any) -> None:
    if v not in (1, STEP_VERSION):
        raise StepFormatError(f"step format version {v!r} is not one this qbhook reads (1 or {STEP_VERSION})")


def describe_step(kind: str, a: Mapping[str, Any]) -> str:
    """One line for a person, from a step's JSON parts (history rows, dry-run output)."""
    try:
        return Step.of(kind, a).describe()
    except StepFormatError:
        return ""


# --------------------------------------------------------------------------- steps as columns
#
# A big plan is mostly per-file steps: one Copy or Link and one Delete per file, ~170 bytes of
# objects each, ~150 MiB for a million-file plan on top of the facts (issue 13). The planner
# keeps them as columns instead (``CopyRun``, ``MakeRun``, ``DeleteRun``: one object per torrent
# holding the facts' own file tuple, the content hashes and one byte or pointer per file) inside
# a ``StepList``, which builds the typed steps when they are read. Readers see the same steps in
# the same order, equal to the eagerly built ones, and the same JSON.


def _builder(cls: type[Step]):
    """``cls(*all_fields)`` without the frozen dataclass ``__init__``: that sets each field through
    ``object.__setattr__`` by name (2.5 us per Delete against 0.6 for a dict); this sets the slots
    through their descriptors. Same object (frozen, equal, hashable); used for the per-file kinds."""
    # Generated like the dataclass's own __init__ (one line per field, no loop): a loop over the
    # setters costs as much as what it replaces.
    names = [f.name for f in fields(cls)]
    env: dict[str, Any] = {"new": object.__new__, "cls": cls}
    env.update({f"set_{n}": cls.__dict__[n].__set__ for n in names})
    body = "".join(f"    set_{n}(o, {n})\n" for n in names)
    exec(f"def build({', '.join(names)}):\n    o = new(cls)\n{body}    return o\n", env)
    build = env["build"]
    return build


_new_copy, _new_link, _new_mkempty, _new_delete = map(_builder, (Copy, Link, MkEmpty, Delete))

# MakeRun's per-file codes
MAKE_COPY, MAKE_LINK, MAKE_EMPTY, MAKE_NONE = b"c", b"l", b"e", b"-"


class _Run:
    """Per-file steps of one torrent as columns: ``files`` are the facts' FileFacts (``path``,
    ``rel``, ``size``, ``inode``), ``hashes`` their content hashes, ``base`` the new save path + "/"."""

    __slots__ = ("_n", "base", "files", "hashes")

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[Step]:
        raise NotImplementedError

    def __getitem__(self, i: int) -> Step:
        return next(islice(iter(self), i, None))


class CopyRun(_Run):
    """The copies of one torrent's MakeRun (a group's copies come before its links)."""

    __slots__ = ("codes",)

    def __init__(self, base: str, files: Sequence, hashes: tuple, codes: bytes):
        self.base, self.files, self.hashes, self.codes = base, files, hashes, codes
        self._n = codes.count(MAKE_COPY)

    def __iter__(self) -> Iterator[Step]:
        base, c = self.base, MAKE_COPY[0]
        for f, h, k in zip(self.files, self.hashes, self.codes, strict=True):
            if k == c:
                yield _new_copy(f.path, base, f.rel, f.size, h)

    def copied(self) -> Iterator[tuple[int, str | None]]:
        """(size, BLAKE3 or None) of each copied file, from the columns."""
        c = MAKE_COPY[0]
        return ((f.size, h) for f, h, k in zip(self.files, self.hashes, self.codes, strict=True) if k == c)


class MakeRun(_Run):
    """Links (from ``srcs``, in file order) and empty files of one torrent; ``codes`` one byte per file."""

    __slots__ = ("codes", "srcs")

    def __init__(self, base: str, files: Sequence, hashes: tuple, codes: bytes, srcs: tuple[str, ...]):
        self.base, self.files, self.hashes, self.codes, self.srcs = base, files, hashes, codes, srcs
        self._n = codes.count(MAKE_LINK) + codes.count(MAKE_EMPTY)

    def __iter__(self) -> Iterator[Step]:
        base, srcs, j = self.base, self.srcs, 0
        link, empty = MAKE_LINK[0], MAKE_EMPTY[0]
        for f, h, k in zip(self.files, self.hashes, self.codes, strict=True):
            if k == link:
                yield _new_link(srcs[j], base, f.rel, f.size, h, None)
                j += 1
            elif k == empty:
                yield _new_mkempty(base, f.rel, None)

    def link_srcs(self) -> tuple[str, ...]:
        return self.srcs


class DeleteRun(_Run):
    """One torrent's deletes: ``links`` per file, its ``seeding_links`` (None: no delete for it)."""

    __slots__ = ("links",)

    def __init__(self, base: str, files: Sequence, hashes: tuple, links: tuple):
        self.base, self.files, self.hashes, self.links = base, files, hashes, links
        self._n = len(links) - links.count(None)

    def __iter__(self) -> Iterator[Step]:
        base = self.base
        for f, h, links in zip(self.files, self.hashes, self.links, strict=True):
            if links is not None:
                yield _new_delete(f.path, f.inode, f.size, h, base, f.rel, links, None)

    def paths(self) -> Iterator[str]:
        return (f.path for f, links in zip(self.files, self.links, strict=True) if links is not None)


class StepList(MutableSequence):
    """A group's steps: typed steps and column runs, read as the steps in order.

    Iterating builds each run's steps afresh (equal, not identical, each time); any change to
    the list first turns it into plain steps. ``links_from`` and ``deleted_paths`` answer the
    planner's cross-group check from the columns without building steps.
    """

    __slots__ = ("_len", "_parts")

    def __init__(self, parts: Iterable[Step | _Run] = ()):
        self._parts = [p for p in parts if isinstance(p, Step) or len(p)]
        self._len = sum(1 if isinstance(p, Step) else len(p) for p in self._parts)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Step]:
        for p in self._parts:
            if isinstance(p, Step):
                yield p
            else:
                yield from p

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(self)[i]
        n = self._len
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("step index out of range")
        for p in self._parts:
            k = 1 if isinstance(p, Step) else len(p)
            if i < k:
                return p if isinstance(p, Step) else p[i]
            i -= k
        raise IndexError("step index out of range")  # unreachable: _len counts the parts

    def _plain(self) -> list[Step | _Run]:
        if not all(isinstance(p, Step) for p in self._parts):
            self._parts = list(self)
        return self._parts

    def __setitem__(self, i, v) -> None:
        self._plain()[i] = v
        self._len = len(self._parts)

    def __delitem__(self, i) -> None:
        del self._plain()[i]
        self._len = len(self._parts)

    def insert(self, i: int, v: Step) -> None:
        self._plain().insert(i, v)
        self._len = len(self._parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"StepList({list(self)!r})"

    def links_from(self) -> Iterator[str]:
        """The ``src`` of every Link step."""
        for p in self._parts:
            if isinstance(p, Link):
                yield p.src
            elif isinstance(p, MakeRun):
                yield from p.link_srcs()

    def copied(self) -> Iterator[tuple[int, str | None]]:
        """(size, BLAKE3 or None) of every Copy step."""
        for p in self._parts:
            if isinstance(p, Copy):
                yield p.size, p.blake3
            elif isinstance(p, CopyRun):
                yield from p.copied()

    def deleted_paths(self) -> Iterator[str]:
        """The ``path`` of every Delete step."""
        for p in self._parts:
            if isinstance(p, Delete):
                yield p.path
            elif isinstance(p, DeleteRun):
                yield from p.paths()


# The four readers below test for a plain list first: ``isinstance`` against ``StepList`` (a
# ``MutableSequence``, an abstract base class) runs Python code on every call, and the cross-group
# passes ask it of every group's steps, a list in a convergence (3 % of a 10,000-group pass).
def links_from(steps: Iterable[Step]) -> Iterator[str]:
    """``src`` of every Link in ``steps`` (from the columns when it is a StepList)."""
    if type(steps) is not list and isinstance(steps, StepList):
        return steps.links_from()
    return (s.src for s in steps if isinstance(s, Link))


def copied(steps: Iterable[Step]) -> Iterator[tuple[int, str | None]]:
    """(size, BLAKE3 or None) of every Copy in ``steps`` (from the columns when it is a StepList)."""
    if type(steps) is not list and isinstance(steps, StepList):
        return steps.copied()
    return ((s.size, s.blake3) for s in steps if isinstance(s, Copy))


def deleted_paths(steps: Iterable[Step]) -> Iterator[str]:
    """``path`` of every Delete in ``steps`` (from the columns when it is a StepList)."""
    if type(steps) is not list and isinstance(steps, StepList):
        return steps.deleted_paths()
    return (s.path for s in steps if isinstance(s, Delete))


def view_paths(steps: Iterable[Step]) -> Iterator[str]:
    """Every path a move's views hold at the destination (each VerifyView's files, absolute): what
    the move makes or reuses there. From the views alone, no per-file step is built."""
    for p in steps._parts if type(steps) is not list and isinstance(steps, StepList) else steps:
        if isinstance(p, VerifyView):
            base = p.save_path + "/"
            for q in p.paths:
                yield q if q.startswith("/") else base + q


def torrent_moves(steps: Iterable[Step]) -> Iterator[Relocate | Repair]:
    """Every Relocate and Repair in ``steps`` (where each torrent's view is, and where it was:
    the executor makes a view's folders like the old ones). No per-file step is built."""
    for p in steps._parts if type(steps) is not list and isinstance(steps, StepList) else steps:
        if isinstance(p, _TorrentMove):
            yield p


def torrent_starts(steps: Iterable[Step]) -> Iterator[Start]:
    """Every Start in ``steps``, as ``torrent_moves`` reads them: no per-file step is built."""
    for p in steps._parts if type(steps) is not list and isinstance(steps, StepList) else steps:
        if isinstance(p, Start):
            yield p


# --------------------------------------------------------------------------- plans


_UNSAVED = ("steps", "incidental_below", "skipped_places")  # to_dict writes the steps; the rest is the planner's


@dataclass(slots=True)
class GroupPlan:
    group_id: str
    torrents: list[str]  # hashes
    names: list[str]
    action: Action
    reason: str
    source_pool: str | None = None
    target_pool: str | None = None
    bytes_to_copy: int = 0
    bytes_freed: int = 0  # on the source pool, each inode counted once
    payload_bytes: int = 0
    external_links: list[str] = field(default_factory=list)  # paths that keep it on primary
    blockers: list[str] = field(default_factory=list)
    steps: MutableSequence[Step] = field(default_factory=list)  # a list, or the planner's StepList
    # Files under this size are incidental to the payload (facts.incidental_below): read by the
    # planner's cross-group passes of the same run, not saved with a plan.
    incidental_below: int = 0
    # Each torrent's client, in the order of ``torrents``: one infohash can be in two clients
    # (identity.group_id_of). Empty in a plan saved or journaled before groups named them.
    instances: list[str] = field(default_factory=list)
    # Where its moved torrents' skipped files (priority 0) belong at the destination: read by the
    # planner's cross-group passes of the same run (``planner._skipped_places_kept``), not saved.
    skipped_places: tuple[str, ...] = ()

    @property
    def actionable(self) -> bool:
        return self.action in _ACTIONABLE

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in _UNSAVED}
        d["action"] = str(self.action)
        d["torrents"], d["names"], d["instances"] = list(self.torrents), list(self.names), list(self.instances)
        d["external_links"], d["blockers"] = list(self.external_links), list(self.blockers)
        d["steps"] = [s.to_json() for s in self.steps]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GroupPlan:
        """A group as ``to_dict`` wrote it. A saved plan is input (its plan id is a plain digest
        anyone can recompute after an edit): every field is checked for its type here, and
        ValueError names the first that is not, never a TypeError deep in what reads it later."""
        d = dict(d)
        d["action"] = Action(d["action"])
        for name in ("bytes_to_copy", "bytes_freed", "payload_bytes"):
            if name in d:
                d[name] = _int(d[name], name)
        for name in ("group_id", "reason"):
            if not isinstance(d.get(name), str):
                raise ValueError(f"{name} is not text: {d.get(name)!r}"[:200])
        for name in ("source_pool", "target_pool"):
            if d.get(name) is not None and not isinstance(d[name], str):
                raise ValueError(f"{name} is not text: {d[name]!r}"[:200])
        for name in ("torrents", "names", "external_links", "blockers", "instances"):
            v = d.get(name, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"{name} is not a list of text: {v!r}"[:200])
        if d.get("instances") and len(d["instances"]) != len(d.get("torrents", [])):
            raise ValueError(f"instances do not match torrents: {d['instances']!r}"[:200])
        d["steps"] = [step_from_json(s) for s in d.get("steps", [])]
        return cls(**d)


@dataclass(slots=True)
class Plan:
    groups: list[GroupPlan]
    created_at: float = 0.0

    @property
    def actionable(self) -> list[GroupPlan]:
        return [g for g in self.groups if g.actionable]

    def to_dict(self) -> dict:
        return {"created_at": self.created_at, "groups": [g.to_dict() for g in self.groups], "summary": self.summary()}

    def summary(self) -> dict:
        out = {a: 0 for a in ACTIONS}
        for g in self.groups:
            out[str(g.action)] += 1
        out["bytes_to_copy"] = sum(g.bytes_to_copy for g in self.actionable)
        out["bytes_freed"] = sum(g.bytes_freed for g in self.actionable)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        try:
            created_at = finite(d.get("created_at", 0.0), 0.0, MAX_INT)
        except ValueError as e:
            raise ValueError(f"created_at {e}") from None
        return cls(groups=[GroupPlan.from_dict(g) for g in d["groups"]], created_at=created_at)
