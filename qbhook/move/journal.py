"""The run journal: every mutating step is written down before it runs.

A step row goes ``intended`` (committed, fsynced by SQLite's FULL sync) before
the executor touches anything, then ``done`` with its result, or ``failed``
with the error. A batch of same-pool convergence steps (``intend_batch``,
``close_batch``) journals all its intents in one commit before it acts on any, and
all its outcomes in one commit once its renames are durable. After a crash, the
rows of an unfinished run say exactly which step may have been half-done; the
executor's resume logic re-checks that step against the world instead of guessing.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from qbhook import procs
from qbhook.catalog.db import Tx
from qbhook.decide.plan import (
    STEP_VERSION,
    Converge,
    ConvergeKeep,
    Delete,
    GroupPlan,
    Plan,
    RunStatus,
    Step,
    StepStatus,
    check_version,
)
from qbhook.errors import UnknownRun
from qbhook.move.fsops import HOLD_EPOCH, HeldLink, HoldClock, boot_clock
from qbhook.numbers import finite, shown, whole
from qbhook.paths import shown_or_none

# Leftover-view rows are numbered from here, past any plan's own steps, and have this kind.
LEFTOVER_SEQ = 1_000_000
LEFTOVER_KIND = "leftover_view"


def _sorted_encoder() -> Callable[[Any], str]:
    """``json.dumps(x, sort_keys=True)``, with the encoder built once.

    ``dumps`` builds a new encoder per call when given any option, and so does
    ``JSONEncoder.encode``: it makes its C encoder afresh on every call, most of the cost of a
    small document (a converge batch writes two per step: 20,000 per 10,000 relinks). Here the C
    encoder is made once, with the same separators, key order, escaping, float spelling and
    ``default`` as ``JSONEncoder(sort_keys=True)``, so the text is the same byte for byte
    (``tests/unit/test_converge_batch.py``). Its one difference: no cycle check (a cyclic document
    raises RecursionError rather than ValueError; the journal's documents are plain trees).
    Where the C encoder is missing or takes other arguments, the plain encoder is used.
    """
    ref = json.JSONEncoder(sort_keys=True)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return ref.encode
    try:
        c = make(
            None, ref.default, json.encoder.encode_basestring_ascii, None,
            ref.key_separator, ref.item_separator, True, False, True,
        )  # fmt: skip
    except TypeError:
        return ref.encode

    def encode(o: Any) -> str:
        return "".join(c(o, 0))

    probe = {"b": [1, 2.5, None, True, "é\n\"x"], "a": {"z": float("inf"), "y": -0.0}, "c": "", "d": 2**70}
    try:
        same = encode(probe) == ref.encode(probe)
    except (TypeError, ValueError):
        same = False
    return encode if same else ref.encode


_dumps_sorted = _sorted_encoder()
_quoted = json.encoder.encode_basestring_ascii  # a str as the encoder above writes it
_STEP_V = _dumps_sorted(STEP_VERSION)  # the "v" every step's args carry (Step.to_json)


# The fields the spelled-out texts below write, as the dataclasses had them when they were
# written: a field added to either class turns the spelled-out path off (``_spelled``), never
# leaves it out of the journal.
_CONVERGE_FIELDS = ("path", "fsid", "ino", "size", "mtime_ns", "blake3", "keep")
_KEEP_FIELDS = ("path", "fsid", "ino", "library")
_GROUP_FIELDS = (
    "group_id", "torrents", "names", "action", "reason", "source_pool", "target_pool", "bytes_to_copy",
    "bytes_freed", "payload_bytes", "external_links", "blockers", "steps",
    "incidental_below",  # the planner's, never written (GroupPlan.to_dict leaves it out)
    "instances",
    "skipped_places",  # the planner's, never written either
)  # fmt: skip
_spelled = (
    tuple(f.name for f in fields(Converge)) == _CONVERGE_FIELDS
    and tuple(f.name for f in fields(ConvergeKeep)) == _KEEP_FIELDS
    and tuple(f.name for f in fields(GroupPlan)) == _GROUP_FIELDS
)


def _converge_args(step: Converge) -> str | None:
    """``_dumps_sorted(step.to_json()["args"])`` of a converge step, spelled out (keys in sorted
    order); None unless every field has the exact type the encoder writes that way (str, int,
    a bool for ``library``)."""
    k = step.keep
    m = step.mtime_ns
    if not (
        type(step.path) is str
        and type(step.fsid) is str
        and type(step.blake3) is str
        and type(k) is ConvergeKeep
        and type(k.path) is str
        and type(k.fsid) is str
        and type(step.ino) is int
        and type(step.size) is int
        and type(k.ino) is int
        and type(k.library) is bool
        and (m is None or type(m) is int)
    ):
        return None
    return (
        f'{{"blake3": {_quoted(step.blake3)}, "fsid": {_quoted(step.fsid)}, "ino": {step.ino}, '
        f'"keep": {{"fsid": {_quoted(k.fsid)}, "ino": {k.ino}, "library": {"true" if k.library else "false"}, '
        f'"path": {_quoted(k.path)}}}, "mtime_ns": {"null" if m is None else m}, '
        f'"path": {_quoted(step.path)}, "size": {step.size}, "v": {_STEP_V}}}'
    )


def _args_json(step: Step) -> str:
    """The journal's text of a step's args: ``_dumps_sorted(step.to_json()["args"])``.

    A converge step (one per duplicate: 10,000 rows per 10,000 relinks) is spelled out
    (``_converge_args``); the text is the same byte for byte (``tests/unit/test_converge_batch.py``
    compares both over generated steps). Any other step, or an odd type, goes the general way.
    """
    if _spelled and type(step) is Converge:
        text = _converge_args(step)
        if text is not None:
            return text
    return _dumps_sorted(step.to_json()["args"])


def _result_json(result: dict) -> str:
    """``_dumps_sorted(result)``; a relink's result (``fsops.Relinker.relink``: a status, the bytes
    freed, the link count before; one per relink, 10,000 per 10,000) spelled out in sorted key
    order, any other the general way."""
    if len(result) == 3:
        status, freed, nlink = result.get("status"), result.get("bytes_freed"), result.get("nlink_before")
        if type(status) is str and type(freed) is int and type(nlink) is int:
            return f'{{"bytes_freed": {freed}, "nlink_before": {nlink}, "status": {_quoted(status)}}}'
    return _dumps_sorted(result)


def _str_list(items) -> str:
    if not items:
        return "[]"
    if all(type(x) is str for x in items):
        return "[" + ", ".join(map(_quoted, items)) + "]"
    return _dumps_sorted(list(items))


def _opt_str(v) -> str | None:
    return "null" if v is None else _quoted(v) if type(v) is str else None


def _group_json(g: GroupPlan, texts: dict[int, tuple[Step, str]] | None = None) -> str:
    """``_dumps_sorted(g.to_dict())``: a group of converge steps spelled out (as ``_converge_args``),
    any other the general way. ``texts``: each converge step's args text is kept there too
    (``plan_json``)."""
    steps = []
    if _spelled and type(g.group_id) is str and type(g.reason) is str:
        for s in g.steps:
            text = _converge_args(s) if type(s) is Converge else None
            if text is None:
                break
            if texts is not None:
                texts[id(s)] = (s, text)
            steps.append('{"args": ' + text + ', "kind": "converge"}')
        else:
            src, dst = _opt_str(g.source_pool), _opt_str(g.target_pool)
            numbers = (g.bytes_freed, g.bytes_to_copy, g.payload_bytes)
            if src is not None and dst is not None and all(type(n) is int for n in numbers):
                return (
                    f'{{"action": {_quoted(str(g.action))}, "blockers": {_str_list(g.blockers)}, '
                    f'"bytes_freed": {g.bytes_freed}, "bytes_to_copy": {g.bytes_to_copy}, '
                    f'"external_links": {_str_list(g.external_links)}, "group_id": {_quoted(g.group_id)}, '
                    f'"instances": {_str_list(g.instances)}, '
                    f'"names": {_str_list(g.names)}, "payload_bytes": {g.payload_bytes}, '
                    f'"reason": {_quoted(g.reason)}, "source_pool": {src}, "steps": [{", ".join(steps)}], '
                    f'"target_pool": {dst}, "torrents": {_str_list(g.torrents)}}}'
                )
    return _dumps_sorted(g.to_dict())


def plan_json(plan: Plan, texts: dict[int, tuple[Step, str]] | None = None) -> str:
    """The journal's text of a run's plan: ``_dumps_sorted(plan.to_dict())``, byte for byte.

    A convergence journals one group of one step per duplicate; building every group's dict and
    then encoding it was 0.2-0.45 CPU-s per 10,000 (docs/benchmarks.md section 9): a group of
    converge steps is written straight from its fields instead (``_group_json``), every other
    group the general way. ``tests/unit/test_converge_batch.py`` compares both over generated plans.
    ``texts``: filled with id(step) -> (step, its args text) for each converge step spelled out,
    the very text its intent journals again (``Journal._args_text``).
    """
    groups = ", ".join(_group_json(g, texts) for g in plan.groups)
    return (
        f'{{"created_at": {_dumps_sorted(plan.created_at)}, "groups": [{groups}], '
        f'"summary": {_dumps_sorted(plan.summary())}}}'
    )


@dataclass
class StepRow:
    id: int
    run: int
    seq: int
    group_id: str
    kind: str
    args: dict  # the step's JSON args, without the version
    status: StepStatus
    result: dict | None
    error: str | None
    version: int = 1

    @property
    def step(self) -> Step:
        """The typed step this row journaled (raises plan.StepFormatError on a row it cannot read)."""
        check_version(self.version)
        return Step.of(self.kind, self.args)


@dataclass
class RunRow:
    id: int
    started_at: float
    finished_at: float | None
    status: RunStatus
    trigger: str | None
    pid: int | None
    host: str | None
    plan: dict
    summary: dict | None
    process: str | None = None  # procs.identity() of the process at ``pid`` (None: journaled before it was kept)


def failed_not_paused(summary: Mapping[str, Any]) -> list[str]:
    """The groups a run failed, by its summary (``RunSummary.counters``, journaled in ``RunRow.summary``):
    ``groups_failed`` without ``groups_paused``. A paused group is listed in both
    (``RunSummary.groups_paused``) but is no failure: ``qbhook resume`` finishes it. The one rule
    every count of failed groups reads (apply's summary, ``history``, ``status``)."""
    paused = set(summary.get("groups_paused") or ())
    return [g for g in summary.get("groups_failed") or () if g not in paused]


def owner_gone(r: RunRow) -> bool:
    """Whether no live process can own unfinished run ``r``: finished interrupted, or its
    process (``procs.running``; by its pid alone where /proc cannot tell) is gone on this host.
    A run of another host is never judged gone: nothing here can tell (``Executor._left_alone``
    leaves it alone for the same reason)."""
    if r.status == RunStatus.INTERRUPTED:
        return True
    if r.host and r.host != socket.gethostname():
        return False
    if r.pid is None:
        return True
    alive = procs.running(r.pid, r.process)
    return not (procs.live(r.pid)[0] if alive is None else alive)


@dataclass(frozen=True)
class WaitingStart:
    """A torrent run ``run`` relocated and left stopped for a start step of its own (after
    verify_group) that is not done, which ran when its relocation found it: stopped by qbhook
    until the run finishes. ``name``: as the plan named it (its hash where it did not)."""

    run: int
    group_id: str
    instance: str
    torrent: str
    name: str


def _plan_starts(plan: dict) -> dict[tuple[str, str, str], str]:
    """(group id, instance, lower hash) -> torrent name of each start step of journaled ``plan``
    (its JSON, as ``run_plans.plan`` holds it): a plan without start steps (an older version's)
    started each torrent in its relocation, and has none."""
    # A plan this version did not write (another version's, a hand edit) may hold anything where
    # a list of objects belongs: such a part names nothing, so `status` never fails on it (R71).
    out = {}
    for g in _objects(plan.get("groups")):
        torrents, names = _list(g.get("torrents")), _list(g.get("names"))
        for s in _objects(g.get("steps")):
            a = s.get("args")
            if s.get("kind") != "start" or not isinstance(a, Mapping) or not isinstance(a.get("torrent"), str):
                continue
            h = a["torrent"].lower()
            i = next((i for i, t in enumerate(torrents) if str(t).lower() == h), None)
            name = names[i] if i is not None and i < len(names) else a["torrent"]
            out[(str(g.get("group_id")), str(a.get("instance")), h)] = str(name)
    return out


def _list(v: Any) -> list:
    return v if isinstance(v, list) else []


def _objects(v: Any) -> list[Mapping]:
    """The objects of JSON list ``v`` (nothing when it is not a list)."""
    return [x for x in _list(v) if isinstance(x, Mapping)]


def sharers_of(args: dict) -> list[tuple[str, str]]:
    """The sharers ``Journal.set_sharers`` recorded in a relocate step's args, each (client
    instance, hash): a sharer may sit in another client than the relocated torrent (one save path
    in qBittorrent and rTorrent). A bare hash is of the step's own instance: so ``set_sharers``
    writes those, and so every row of the versions that stopped sharers in one client only reads."""
    return _sharer_keys(args, "_sharers")


def forced_sharers_of(args: dict) -> list[tuple[str, str]]:
    """Those of them that ran force-started (``set_sharers``' ``forced``): started forced again."""
    return _sharer_keys(args, "_forced_sharers")


def _sharer_keys(args: dict, key: str) -> list[tuple[str, str]]:
    own = str(args.get("instance", ""))
    return [(own, x) if isinstance(x, str) else (str(x[0]), str(x[1])) for x in args.get(key) or ()]


def _sharer_entries(instance: str, sharers: Iterable[tuple[str, str]]) -> list:
    """``sharers`` as journaled: a bare hash for one of ``instance`` (the relocation's own client:
    the format older versions read), an [instance, hash] pair for one of another client."""
    return [h if i == instance else [i, h] for i, h in sharers]


def hidden_of(args: dict) -> list[str] | None:
    """The old links ``Journal.set_hidden`` recorded in a relocate step's args (None: never recorded)."""
    paths = args.get("_hidden")
    return None if paths is None else [p for p in paths if isinstance(p, str)]


def hidden_in_of(args: dict) -> dict[str, list[int]]:
    """Each hidden old link's holding folder [dev, inode] ``Journal.set_hidden`` recorded, for the
    links not yet put back (empty: none, or a row journaled before this was kept: no check)."""
    held = args.get("_hidden_in")
    if not isinstance(held, dict):
        return {}
    return {p: [int(x) for x in v] for p, v in held.items() if isinstance(v, list) and len(v) == 2}


@dataclass(frozen=True)
class UnreadableHeld:
    """A held delete step whose row cannot be read (a hand edit, a row half-written by an older
    qbhook): never purged (what cannot be read cannot be re-checked), shown as one line."""

    step: int
    why: str

    def line(self) -> str:
        return (
            f"journal step {self.step}: its held link cannot be read ({self.why}): "
            "never purged; look in the holding folder by hand"
        )


def row_field(d: dict, key: str, kind: type, *, required: bool = False) -> Any:
    """``d[key]`` if it is a ``kind`` (None when missing and not ``required``); else ValueError naming it.

    The one check of a journal row's fields read as input (``held_link``, and the orphans'
    resume of an intended step): a text holding a NUL byte is no path to look up, and it raised
    ValueError from a stat deep in every run's purge, after its work."""
    v = d.get(key)
    if v is None and not required:
        return None
    if kind is int:
        try:
            return whole(v)
        except ValueError as e:
            raise ValueError(f"{key} {e}") from None
    if not isinstance(v, kind):
        raise ValueError(f"{key} is {shown(v)}, not a {kind.__name__}")
    if isinstance(v, str) and "\x00" in v:
        raise ValueError(f"{key} is {shown(v)}, with a NUL byte")
    return v


# The latest a held step's finished_at may be and still be read as a time (year 9999): a later
# one is no time at all. One merely later than now is a clock set back since (``HeldLink.doubt``).
LATEST_TIME = 253402300799.0


def _held_since(finished: Any) -> float:
    """A held step's finished_at, the start of its grace period: a finite time from the epoch on
    (``LATEST_TIME``); else ValueError. A -1e300 or NULL (SQLite stores a NaN as NULL) was
    "held forever ago": purged at once, without its grace period."""
    try:
        return finite(finished, 0.0, LATEST_TIME)
    except ValueError as e:
        raise ValueError(f"finished_at is not a time: {e}") from None


def _boottime(v: Any) -> float | None:
    try:
        return None if v is None else finite(v, 0.0, LATEST_TIME)
    except ValueError as e:
        raise ValueError(f"boottime {e}") from None


def _with_boot_clock(result: Any) -> Any:
    """A held result stamped with the boot clock of its hold (``fsops.boot_clock``), read as its
    step's finished_at is: what the purge measures a hold of this boot by besides the wall clock."""
    if isinstance(result, dict) and result.get("status") == "held":
        boot, up = boot_clock()
        if boot is not None:
            return {**result, "boot_id": boot, "boottime": up}
    return result


def _note_clock(c: sqlite3.Connection) -> None:
    """Record (table ``boot_clocks``) this boot's (wall clock, CLOCK_BOOTTIME) now, unless a newer
    pair of this boot is there (another process's, committed first): the latest reading of a
    boot is the likeliest after NTP synced, what dates its holds at later boots
    (``fsops.HeldLink.start``). Nothing where CLOCK_BOOTTIME or the boot id cannot be read."""
    boot, up = boot_clock()
    if boot is None:
        return
    c.execute(
        "INSERT INTO boot_clocks(boot, wall, boottime) VALUES (?, ?, ?) ON CONFLICT(boot) DO UPDATE SET "
        "wall=excluded.wall, boottime=excluded.boottime WHERE excluded.boottime >= boot_clocks.boottime",
        (boot, time.time(), up),
    )


def held_link(sid: int, args: str, result: str, finished: Any, floor: float | None = None) -> HeldLink:
    """One held delete step's row as the purge's ``HeldLink``, each field checked for its type
    (ValueError naming the field): a journal row is input, the one place it is read. ``floor``:
    the time it cannot have been held before (``Journal.held_scan``)."""
    a, res = json.loads(args), json.loads(result)
    if not isinstance(a, dict) or not isinstance(res, dict):
        raise ValueError("args or result is not an object")
    keep = row_field(a, "keep", dict) or {}
    holding = row_field(res, "holding", list)
    if holding and (len(holding) != 2 or any(isinstance(x, bool) or not isinstance(x, int) for x in holding)):
        raise ValueError(f"holding is {shown(holding)}, not a [dev, inode]")
    return HeldLink(
        row_field(res, "held_at", str, required=True),
        _held_since(finished),
        row_field(a, "ino", int),
        sid,
        keep_path=row_field(keep, "path", str),
        keep_fsid=row_field(keep, "fsid", str),
        size=row_field(a, "size", int),
        # Planned without a hash: the one the delete proved (journaled with its result).
        blake3_hex=row_field(a, "blake3", str) or row_field(res, "blake3", str),
        orphan=bool(a.get("orphan")),
        origin=row_field(a, "path", str),
        holding=tuple(holding) if holding else None,
        boot=row_field(res, "boot_id", str),
        boottime=_boottime(res.get("boottime")),
        floor=floor,
    )


# A run's row as ``Journal._run`` reads it: its plan from ``run_plans``, or from ``runs.plan`` for
# the runs journaled before that table (schema.RUN_PLANS_DDL).
_RUNS = (
    "SELECT r.id, r.started_at, r.finished_at, r.status, r.trigger, r.pid, r.host, coalesce(p.plan, r.plan), "
    "r.summary, r.process FROM runs r LEFT JOIN run_plans p ON p.run = r.id"
)


class Journal:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        # The args text of each converge step of the run this journal started (``start_run``),
        # by id(step), the step held with it: a convergence journals each step's args twice, in
        # the plan and in its intent, and the second is the first's text (the steps are frozen,
        # their fields immutable; an id names the step held here, no later object). Dropped when
        # the run finishes.
        self._texts: dict[int, tuple[Step, str]] = {}

    # ------------------------------------------------------------------ runs
    def start_run(self, plan: dict | Plan, trigger: str = "cli") -> int:
        """A new run, journaling its plan (a ``Plan``, or its ``to_dict()``: the same text)."""
        self._texts = {}
        text = plan_json(plan, self._texts) if isinstance(plan, Plan) else _dumps_sorted(plan)
        with Tx(self.conn) as c:
            # The plan in its own table (schema.RUN_PLANS_DDL): the run's row is written again at its
            # end, and would carry the plan's megabytes through the WAL a second time.
            run = c.execute(
                "INSERT INTO runs(started_at, status, trigger, pid, host, process, plan)"
                " VALUES (?, 'running', ?, ?, ?, ?, '')",
                (time.time(), trigger, os.getpid(), socket.gethostname(), procs.identity()),
            ).lastrowid
            c.execute("INSERT INTO run_plans(run, plan) VALUES (?, ?)", (run, text))
            _note_clock(c)
            return run

    def finish_run(self, run: int, status: str, summary: dict) -> None:
        self._texts = {}
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE runs SET status=?, finished_at=?, summary=? WHERE id=?",
                (status, time.time(), _dumps_sorted(summary), run),
            )
            _note_clock(c)

    def adopt_run(self, run: int) -> None:
        """A resumer takes over a run whose process died."""
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE runs SET pid=?, host=?, process=?, status='running' WHERE id=?",
                (os.getpid(), socket.gethostname(), procs.identity(), run),
            )

    def unfinished_runs(self) -> list[RunRow]:
        rows = self.conn.execute(_RUNS + " WHERE r.status IN ('running','interrupted') ORDER BY r.id").fetchall()
        return [self._run(r) for r in rows]

    def waiting_starts(self, r: RunRow) -> list[WaitingStart]:
        """The torrents of unfinished run ``r`` its relocations left stopped (step done) for a
        start step not done yet (``WaitingStart``), in step order. Its journaled look
        (``_observed``) says whether each ran; one journaled without it counts as running, as
        the start step reads it (``executor._as_found``)."""
        starts = _plan_starts(r.plan if isinstance(r.plan, dict) else {})
        rows = self.conn.execute(
            "SELECT group_id, kind, status, json_extract(args, '$.instance'), json_extract(args, '$.torrent'), "
            "coalesce(json_extract(args, '$._observed.was_running'), 1) FROM steps "
            "WHERE run=? AND kind IN ('relocate', 'start') AND json_valid(args) ORDER BY seq",
            (r.id,),
        ).fetchall()
        started = {(g, i, str(h).lower()) for g, kind, st, i, h, _ in rows if kind == "start" and st == "done"}
        out = []
        for g, kind, st, i, h, ran in rows:
            key = (g, i, str(h).lower())
            if kind == "relocate" and st == "done" and ran and key in starts and key not in started:
                out.append(WaitingStart(r.id, g, i, h, starts[key]))
        return out

    def run(self, run: int) -> RunRow:
        r = self.conn.execute(_RUNS + " WHERE r.id=?", (run,)).fetchone()
        if r is None:
            raise UnknownRun(run)
        return self._run(r)

    def runs(self, limit: int = 20) -> list[RunRow]:
        rows = self.conn.execute(_RUNS + " ORDER BY r.id DESC LIMIT ?", (limit,)).fetchall()
        return [self._run(r) for r in rows]

    # ------------------------------------------------------------------ steps
    def intend(self, run: int, seq: int, group_id: str, step: Step) -> int:
        with Tx(self.conn) as c:
            row = c.execute("SELECT id FROM steps WHERE run=? AND seq=?", (run, seq)).fetchone()
            if row:
                c.execute(
                    "UPDATE steps SET status='intended', started_at=?, error=NULL WHERE id=?", (time.time(), row[0])
                )
                return row[0]
            cur = c.execute(
                "INSERT INTO steps(run, seq, group_id, kind, args, status, started_at) VALUES (?,?,?,?,?, "
                "'intended', ?)",
                (run, seq, group_id, step.kind, self._args_text(step), time.time()),
            )
            return cur.lastrowid

    def _args_text(self, step: Step) -> str:
        """``_args_json(step)``, or the same text as ``start_run`` wrote it into the plan."""
        hit = self._texts.get(id(step))
        return hit[1] if hit is not None and hit[0] is step else _args_json(step)

    def intend_batch(self, run: int, items: list[tuple[int, str, Step]], groups: list[str]) -> dict[int, int]:
        """``intend`` for many steps and ``set_group(RUNNING)`` for their groups, in one commit.

        A batch (same-pool convergence) journals every step it may act on before it acts on
        any: after a crash anywhere in the batch, each of them reads ``intended`` (or ``done``
        from an earlier attempt) and resume re-checks each against the world, exactly as for
        a single intended step. Returns seq -> step row id.
        """
        now = time.time()
        if not items:
            return {}
        lo, hi = min(q for q, _g, _s in items), max(q for q, _g, _s in items)
        span = "SELECT seq, id FROM steps WHERE run=? AND seq BETWEEN ? AND ?"
        with Tx(self.conn) as c:
            have = dict(c.execute(span, (run, lo, hi)).fetchall())
            wanted = {q for q, _g, _s in items}
            c.executemany(
                "UPDATE steps SET status='intended', started_at=?, error=NULL WHERE id=?",
                [(now, sid) for q, sid in have.items() if q in wanted],
            )
            c.executemany(
                "INSERT INTO steps(run, seq, group_id, kind, args, status, started_at) VALUES (?,?,?,?,?, "
                "'intended', ?)",
                [
                    (run, seq, group_id, step.kind, self._args_text(step), now)
                    for seq, group_id, step in items
                    if seq not in have
                ],
            )
            self._set_groups(c, [(group_id, run, "running", None) for group_id in groups], now)
            ids = dict(c.execute(span, (run, lo, hi)).fetchall())
        return {q: ids[q] for q in wanted}

    def close_batch(
        self,
        closes: list[tuple[int, StepStatus, dict | None, str | None]],
        groups: list[tuple[str, int, str, str | None]],
    ) -> None:
        """Close many steps (step id, status, result, error) and set their groups' states
        (group id, run, status, reason), in one commit: what a batch did, written once it is durable."""
        now = time.time()
        with Tx(self.conn) as c:
            c.executemany(
                "UPDATE steps SET status=?, finished_at=?, result=?, error=? WHERE id=?",
                [
                    (
                        str(status),
                        now,
                        _result_json(_with_boot_clock(result)) if result is not None else None,
                        shown_or_none(error),
                        sid,
                    )
                    for sid, status, result, error in closes
                ],
            )
            self._set_groups(c, groups, now)

    def intend_record(self, run: int, seq: int, group_id: str, kind: str, args: dict) -> int:
        """Journal an act that is not a plan step (an orphan moved into holding) before doing it.

        Its args are stored as given: no plan step reads them back, only the purge and status do.
        """
        with Tx(self.conn) as c:
            cur = c.execute(
                "INSERT INTO steps(run, seq, group_id, kind, args, status, started_at) VALUES (?,?,?,?,?, "
                "'intended', ?)",
                (run, seq, group_id, kind, _dumps_sorted(args), time.time()),
            )
            return cur.lastrowid

    def done(self, step_id: int, result: dict | None = None) -> None:
        self._close(step_id, StepStatus.DONE, result, None)

    def failed(self, step_id: int, error: str, result: dict | None = None) -> None:
        self._close(step_id, StepStatus.FAILED, result, error)

    def undone(self, step_id: int, result: dict | None = None) -> None:
        self._close(step_id, StepStatus.UNDONE, result, None)

    def _close(self, step_id: int, status: str, result: Any, error: str | None) -> None:
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE steps SET status=?, finished_at=?, result=?, error=? WHERE id=?",
                (
                    status,
                    time.time(),
                    _dumps_sorted(_with_boot_clock(result)) if result is not None else None,
                    shown_or_none(error),
                    step_id,
                ),
            )

    def set_sharers(
        self, step_id: int, instance: str, sharers: list[tuple[str, str]], forced: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Record, in a relocate step's args (``_sharers``), the torrents its relocation (of a
        torrent of client ``instance``) has stopped and not yet started again, each (instance,
        hash) (``sharers_of``): written before each stop and after each start, so a resumed run or
        a rollback after a crash starts exactly those, each in its own client (``close`` never
        touches args). ``forced``: those of them that ran force-started (``_forced_sharers``), to
        be started forced."""
        forced = [k for k in forced if k in sharers]
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE steps SET args=json_set(args, '$._sharers', json(?), '$._forced_sharers', json(?)) WHERE id=?",
                (
                    json.dumps(_sharer_entries(instance, sharers)),
                    json.dumps(_sharer_entries(instance, forced)),
                    step_id,
                ),
            )

    def set_observed(self, step_id: int, observed: dict) -> None:
        """Replace a relocate step's observation (``_observed``): the torrent as it was right before
        the executor acted on it, when the one journaled with the intent showed it in a transition
        (a check) it then waited out. Written before the first action, so a resumed run or a
        rollback after a crash decides from what the move was issued on (``close`` never touches args)."""
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE steps SET args=json_set(args, '$._observed', json(?)) WHERE id=?",
                (json.dumps(observed, sort_keys=True), step_id),
            )

    def note_paused(self, step_id: int, note: dict) -> None:
        """Record, in a verify_group step's args (``_paused``), how long its group has been paused on
        torrents checking or moving (``paused_s``, summed from the gaps between looks), when it was
        last looked at (``last``, wall clock) and how many deletes were done then: a pause that
        outlasts its budget stops the group for good (``Executor._stuck``, ``_pause_note``).
        ``close`` never touches args."""
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE steps SET args=json_set(args, '$._paused', json(?)) WHERE id=?",
                (json.dumps(note, sort_keys=True), step_id),
            )

    def note_move_back(self, step_id: int, note: dict) -> None:
        """Record, in a repair step's args (``_move_back``), that a failed repair puts its torrent
        back at its old save path: written before the setLocation and again once it is there (its
        status and error stay the step's own: the group's failure, for a resumed run)."""
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE steps SET args=json_set(args, '$._move_back', json(?)) WHERE id=?",
                (json.dumps(note, sort_keys=True), step_id),
            )

    def note_found(self, step_id: int, found: dict) -> None:
        """Record, in a repair's make step's args (``_found``), its torrent as first seen, right
        before the repair's first stop (state, and whether its client held it paused): what a
        failed repair gives back (``Executor._repair_state_back``). ``close`` never touches args."""
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE steps SET args=json_set(args, '$._found', json(?)) WHERE id=?",
                (json.dumps(found, sort_keys=True), step_id),
            )

    def note_dst_before(self, step_id: int, before: str) -> None:
        """Replace, in a repair's make step's args (``_dst_before``), what its first intent found at
        its destination: a finished step made again because its file is gone
        (``Executor._repair_files_gone``) found it empty, so a kill before its outcome leaves a
        link its group's undo may take (``Executor._undo_unrecorded``). ``close`` never touches args."""
        self._note(step_id, "_dst_before", before)

    def reopen(self, step_ids: list[int]) -> None:
        """Put finished steps back to intended, their args and results kept: a resume runs them
        again (``Executor._reopen_after_remake``), as it does any step a kill left intended."""
        with Tx(self.conn) as c:
            c.executemany("UPDATE steps SET status='intended' WHERE id=?", [(i,) for i in step_ids])

    def note_rechecked(self, step_id: int) -> None:
        """Record, in a repair step's args (``_rechecked``), that it is about to ask its client for a
        recheck: from then on the client's progress is that check's, not the one found."""
        self._note(step_id, "_rechecked", True)

    def note_started(self, step_id: int) -> None:
        """Record, in a repair step's args (``_started``), that it is about to start its torrent after
        its recheck, dropping what an earlier attempt's look saw or did (``_seen_stopped``,
        ``_stopped_by_us``): from then on a running torrent is this step's start, not a person's
        (``Executor._repair_state_back``).
        Journaled before the start, so a kill between the start and the step's outcome still says so."""
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE steps SET args=json_remove(json_set(args, '$._started', json('true')), '$._seen_stopped', "
                "'$._stopped_by_us') WHERE id=?",
                (step_id,),
            )

    def note_seen_stopped(self, step_id: int) -> None:
        """Record, in a repair step's args (``_seen_stopped``), that its torrent was seen stopped (or
        stopped by the run) after the step started it (``note_started``): a run of it since is a
        person's start, which the step's own ``_started`` must no longer claim."""
        self._note(step_id, "_seen_stopped", True)

    def note_stopping_own_start(self, step_id: int) -> None:
        """Record, in a repair step's args (``_stopped_by_us``), that qbhook is about to stop the torrent
        this step started (``note_started``; ``Executor._repair_quiet``, its files gone since): that
        stop is qbhook's, not a person's, and a failed repair says its start was the repair's and it
        must not be started again. Journaled before the stop, so a kill right after it still says so."""
        self._note(step_id, "_stopped_by_us", True)

    def _note(self, step_id: int, key: str, value) -> None:
        """One key of a step's args (``$.<key>``) set to ``value``, JSON, in a transaction of its own:
        the repair's notes, each journaled before the act it speaks of. ``close`` never touches args."""
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE steps SET args=json_set(args, ?, json(?)) WHERE id=?", (f"$.{key}", json.dumps(value), step_id)
            )

    def set_left_stopped(self, step_id: int, instance: str, torrent: str, forced: bool) -> None:
        """Record (table ``left_stopped``, catalog/schema.py) that relocate step ``step_id`` stopped
        ``torrent`` and could not start it again (``Executor._start_sharers``): it ran (``forced``:
        force-started) before qbhook stopped it, which its own relocation, in this run or a later
        one, must not read as a person's stop (``stopped_by_us``)."""
        with Tx(self.conn) as c:
            c.execute(
                "INSERT INTO left_stopped(instance, hash, forced, step_id, at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(instance, hash) DO UPDATE SET forced=excluded.forced, step_id=excluded.step_id, "
                "at=excluded.at",
                (instance, torrent.lower(), int(bool(forced)), step_id, time.time()),
            )

    def stopped_by_us(self, instance: str, torrent: str) -> bool | None:
        """Whether a relocation left ``torrent`` stopped (``set_left_stopped``) and nothing since
        started it or saw it running (``forget_stopped``, the torrent index's triggers): None if
        not, else whether it ran force-started."""
        r = self.conn.execute(
            "SELECT forced FROM left_stopped WHERE instance=? AND hash=?", (instance, torrent.lower())
        ).fetchone()
        return None if r is None else bool(r[0])

    def forget_stopped(self, instance: str, torrent: str) -> None:
        """``torrent`` was started again by qbhook, seen running (a person's later stop is theirs)
        or its own relocation is over: drop the record that a relocation left it stopped. A look
        first, so the common case (no record) takes no write lock."""
        if self.stopped_by_us(instance, torrent) is None:
            return
        with Tx(self.conn) as c:
            c.execute("DELETE FROM left_stopped WHERE instance=? AND hash=?", (instance, torrent.lower()))

    def sharers(self, step_id: int) -> list[tuple[str, str]]:
        """The torrents ``set_sharers`` last recorded for this step, each (instance, hash) (none
        for a step never run)."""
        r = self.conn.execute("SELECT args FROM steps WHERE id=?", (step_id,)).fetchone()
        return sharers_of(json.loads(r[0])) if r else []

    def forced_sharers(self, step_id: int) -> list[tuple[str, str]]:
        """Which of them ran force-started (``set_sharers``' ``forced``)."""
        r = self.conn.execute("SELECT args FROM steps WHERE id=?", (step_id,)).fetchone()
        return forced_sharers_of(json.loads(r[0])) if r else []

    def set_hidden(self, step_id: int, paths: list[str], holding: dict[str, list[int]] | None = None) -> None:
        """Record, in a relocate step's args (``_hidden``), the old links its relocation hides,
        before the first is hidden: a rollback that can no longer ask the client for the
        torrent's files (it was removed meanwhile) puts back exactly these. ``holding``
        (``_hidden_in``): each one's holding folder [dev, inode] (``fsops.holding_ids``), the
        identity a put-back checks, after a crash too (the purge's is its delete's ``holding``)."""
        with Tx(self.conn) as c:
            c.execute(
                "UPDATE steps SET args=json_set(args, '$._hidden', json(?), '$._hidden_in', json(?)) WHERE id=?",
                (json.dumps(list(paths)), json.dumps(holding or {}, sort_keys=True), step_id),
            )

    def hidden_in(self, step_id: int) -> dict[str, list[int]]:
        """The holding folder identities ``set_hidden`` recorded for this step's links not yet put back."""
        r = self.conn.execute("SELECT args FROM steps WHERE id=?", (step_id,)).fetchone()
        return hidden_in_of(json.loads(r[0])) if r else {}

    def put_back(self, step_id: int, path: str) -> None:
        """Forget ``path``'s holding folder identity: its link is back (``fsops.unhide_after_move``'s
        ``on_back``, before the rmdir that may take ``.qbhook-holding`` itself)."""
        with Tx(self.conn) as c:
            (args,) = c.execute("SELECT args FROM steps WHERE id=?", (step_id,)).fetchone()
            a = json.loads(args)
            if isinstance(a.get("_hidden_in"), dict) and a["_hidden_in"].pop(path, None) is not None:
                c.execute("UPDATE steps SET args=? WHERE id=?", (_dumps_sorted(a), step_id))

    def hidden(self, step_id: int) -> list[str] | None:
        """The old links ``set_hidden`` recorded for this step (None: nothing recorded)."""
        r = self.conn.execute("SELECT args FROM steps WHERE id=?", (step_id,)).fetchone()
        return hidden_of(json.loads(r[0])) if r else None

    def steps(self, run: int) -> list[StepRow]:
        rows = self.conn.execute(
            "SELECT id, run, seq, group_id, kind, args, status, result, error FROM steps WHERE run=? ORDER BY seq",
            (run,),
        ).fetchall()
        return [self._step(r) for r in rows]

    @staticmethod
    def _step(r) -> StepRow:
        args = json.loads(r[5])
        version = args.pop("v", 1)  # rows written before step versions have none: version 1
        return StepRow(
            r[0], r[1], r[2], r[3], r[4], args, StepStatus(r[6]), json.loads(r[7]) if r[7] else None, r[8], version
        )

    # ------------------------------------------------------------------ holding
    def held_links(self) -> list[HeldLink]:
        """Every link a delete moved into holding and no purge removed, keyed by its step id, with
        the delete's facts the purge re-checks before removing a last link (``HeldLink``).

        The journal, not the holding folder's contents, says what may be purged: whatever else
        sits there (planted, or another tool's) is never qbhook's to delete. A row that cannot
        be read is left out (``unreadable_held`` names it): never purged, never a traceback.
        """
        return self.held_scan()[0]

    def unreadable_held(self) -> list[UnreadableHeld]:
        """The held delete steps ``held_links`` leaves out: their rows cannot be read."""
        return self.held_scan()[1]

    def held_scan(self) -> tuple[list[HeldLink], list[UnreadableHeld]]:
        """(``held_links``, ``unreadable_held``) from one read of the steps."""
        rows = self.conn.execute(
            "SELECT id, args, result, finished_at, run FROM steps WHERE kind=? AND status=? "
            "AND json_extract(result, '$.status')='held' AND json_extract(result, '$.purged_at') IS NULL "
            "AND json_extract(result, '$.released_at') IS NULL "
            "ORDER BY id",
            (Delete.kind, StepStatus.DONE.value),
        ).fetchall()
        floors = {run: self._floor(run) for run in {r[4] for r in rows}}
        out, bad = [], []
        for sid, args, result, finished, run in rows:
            try:
                out.append(held_link(sid, args, result, finished, floors[run]))
            except ValueError as e:  # json's decode error is one too
                bad.append(UnreadableHeld(sid, str(e)))
        return out, bad

    def _floor(self, run: int) -> float:
        """The time no step of ``run`` can have finished before: when it or an earlier run started
        (run ids go up as runs start), and no earlier than ``HOLD_EPOCH``. A hold stamped before it
        was stamped by a clock reset to 1970: its grace measured from there was over at once (R42)."""
        (t,) = self.conn.execute(
            "SELECT MAX(started_at) FROM runs WHERE id <= ? AND typeof(started_at) IN ('integer', 'real')", (run,)
        ).fetchone()
        return max(HOLD_EPOCH, t if isinstance(t, (int, float)) and t < LATEST_TIME else 0.0)

    def note_clock(self) -> None:
        """Record this boot's clocks now (``_note_clock``): a purge's, besides each run's."""
        with Tx(self.conn) as c:
            _note_clock(c)

    def hold_clock(self, now: float | None = None) -> HoldClock:
        """The clocks a purge judges holds by (``fsops.HoldClock``), read once: the wall clock (or
        ``now``), this boot's clock, and the newest time a run recorded before this boot began by
        this wall clock (now less CLOCK_BOOTTIME): rows of this boot, written under the clock being
        judged, prove nothing of it. Unknown without CLOCK_BOOTTIME."""
        wall = time.time() if now is None else now
        boot, up = boot_clock()
        last = None
        if up is not None:
            (last,) = self.conn.execute(
                "SELECT MAX(t) FROM (SELECT started_at AS t FROM runs UNION ALL SELECT finished_at FROM runs) "
                "WHERE typeof(t) IN ('integer', 'real') AND t < ?",
                (wall - up,),
            ).fetchone()
        return HoldClock(wall, boot, up, last, self._boot_clocks())

    def _boot_clocks(self) -> dict[str, tuple[float, float]]:
        """Each boot's newest recorded (wall, CLOCK_BOOTTIME) (``_note_clock``), in one read; a row
        that is not two times is left out (its boot's holds count from their own stamps)."""
        out = {}
        for boot, wall, up in self.conn.execute("SELECT boot, wall, boottime FROM boot_clocks"):
            try:
                out[boot] = (finite(wall, 0.0, LATEST_TIME), finite(up, 0.0, LATEST_TIME))
            except ValueError:
                continue
        return out

    def mark_purged(self, step_id: int) -> None:
        """Record that the held link of this delete step is gone (purged, or found already absent)."""
        with Tx(self.conn) as c:
            c.execute("UPDATE steps SET result=json_set(result, '$.purged_at', ?) WHERE id=?", (time.time(), step_id))

    def mark_released(self, step_id: int) -> None:
        """Stop tracking the held link of this delete step, not purged: its holding folder is gone
        or replaced and a person said so (``qbhook holding --forget-gone --yes``); nothing is deleted."""
        with Tx(self.conn) as c:
            c.execute("UPDATE steps SET result=json_set(result, '$.released_at', ?) WHERE id=?", (time.time(), step_id))

    # ------------------------------------------------------------------ leftover views
    def record_leftover(self, run: int, group_id: str, view: dict) -> int:
        """Record a view link a rolled-back group left on its target pool.

        A row of kind ``leftover_view`` after the plan's own steps (seq from LEFTOVER_SEQ),
        so resume, which walks the plan's steps, never mistakes it for one; its result stays
        NULL until ``leftover_done`` says what became of the link.
        """
        with Tx(self.conn) as c:
            top = c.execute("SELECT MAX(seq) FROM steps WHERE run=?", (run,)).fetchone()[0] or 0
            cur = c.execute(
                "INSERT INTO steps(run, seq, group_id, kind, args, status, started_at, finished_at) "
                "VALUES (?,?,?, 'leftover_view', ?, 'done', ?, ?)",
                (run, max(top + 1, LEFTOVER_SEQ), group_id, _dumps_sorted(view), time.time(), time.time()),
            )
            return cur.lastrowid

    def leftover_tracked(self) -> list[tuple[int, dict, str | None]]:
        """(step id, recorded view, why it waits for a person or None) of every leftover view not
        yet removed or released: one read of the steps (no index on kind: a run reads them once)."""
        rows = self.conn.execute(
            "SELECT id, args, error FROM steps WHERE kind='leftover_view' AND result IS NULL ORDER BY id"
        ).fetchall()
        return [(sid, json.loads(args), error) for sid, args, error in rows]

    def leftover_paths(self) -> frozenset[str]:
        """The path of every tracked leftover view, pending or waiting for a person: never an orphan
        (``orphans.References.leftovers``), whoever lists or purges them."""
        return frozenset(os.path.normpath(view["path"]) for _sid, view, _why in self.leftover_tracked())

    def leftover_views(self) -> list[tuple[int, dict]]:
        """(step id, recorded view) of every leftover view a run still tries to remove: tracked and
        not waiting for a person (``leftover_waiting``)."""
        return [(sid, view) for sid, view, why in self.leftover_tracked() if why is None]

    def leftover_waiting(self) -> list[tuple[int, dict, str]]:
        """(step id, recorded view, why) of every leftover view waiting for a person: its source was
        gone or did not verify (``leftover_needs_person``). Still tracked (``result`` NULL)."""
        return [(sid, view, why) for sid, view, why in self.leftover_tracked() if why is not None]

    def leftover_needs_person(self, step_id: int, why: str, source: list[int] | None) -> None:
        """Stop trying to remove this view: ``why`` goes in the step's error (``status`` and
        ``history`` show it), what its source was (``fsops.source_seen``) in its args, so a later
        look can tell when the source changed (``leftover_retry``)."""
        with Tx(self.conn) as c:
            (args,) = c.execute("SELECT args FROM steps WHERE id=?", (step_id,)).fetchone()
            view = {**json.loads(args), "source_seen": source}
            c.execute("UPDATE steps SET error=?, args=? WHERE id=?", (shown_or_none(why), _dumps_sorted(view), step_id))

    def leftover_waits_for(self, step_id: int, torrent: str | None) -> None:
        """Record in a leftover view's args (``waits_for``) that a torrent may still write it
        (``leftovers.INCOMPLETE_USER``): its name, "" when the listing did not say which. ``status``
        then says the view waits for that torrent, not that the next run removes it. None takes the
        record off: the view is tried as any other. Still tracked either way (``result`` NULL)."""
        with Tx(self.conn) as c:
            if torrent is None:
                c.execute("UPDATE steps SET args=json_remove(args, '$.waits_for') WHERE id=?", (step_id,))
            else:
                c.execute("UPDATE steps SET args=json_set(args, '$.waits_for', ?) WHERE id=?", (torrent, step_id))

    def leftover_retry(self, step_id: int) -> None:
        """Put a view waiting for a person back among those a run tries to remove."""
        with Tx(self.conn) as c:
            c.execute("UPDATE steps SET error=NULL WHERE id=?", (step_id,))

    def leftover_done(self, step_id: int, result: dict) -> None:
        with Tx(self.conn) as c:
            c.execute("UPDATE steps SET result=? WHERE id=?", (_dumps_sorted(result), step_id))

    # ------------------------------------------------------------------ groups
    def set_group(self, group_id: str, run: int, status: str, reason: str | None = None) -> None:
        with Tx(self.conn) as c:
            self._set_group(c, group_id, run, status, reason, time.time())

    _SET_GROUP = (
        "INSERT INTO group_state(group_id, run, status, reason, updated_at) VALUES (?,?,?,?,?) "
        "ON CONFLICT(group_id) DO UPDATE SET run=excluded.run, status=excluded.status, "
        "reason=excluded.reason, updated_at=excluded.updated_at"
    )

    @staticmethod
    def _set_group(c: sqlite3.Connection, group_id: str, run: int, status: str, reason: str | None, now: float) -> None:
        c.execute(Journal._SET_GROUP, (group_id, run, str(status), shown_or_none(reason), now))

    @staticmethod
    def _set_groups(c: sqlite3.Connection, groups: list[tuple[str, int, str, str | None]], now: float) -> None:
        """``_set_group`` for a batch's (group id, run, status, reason), as one statement."""
        c.executemany(
            Journal._SET_GROUP, [(g, run, str(status), shown_or_none(reason), now) for g, run, status, reason in groups]
        )

    def group_status(self, group_id: str) -> tuple[str, str | None] | None:
        r = self.conn.execute("SELECT status, reason FROM group_state WHERE group_id=?", (group_id,)).fetchone()
        return (r[0], r[1]) if r else None

    def group_states(self, run: int) -> dict[str, str]:
        """group id -> status of the groups whose last journaled state is run ``run``'s."""
        return dict(self.conn.execute("SELECT group_id, status FROM group_state WHERE run=?", (run,)).fetchall())

    @staticmethod
    def _run(r) -> RunRow:
        return RunRow(
            *r[:3], RunStatus(r[3]), *r[4:7], json.loads(r[7]), json.loads(r[8]) if r[8] else None, process=r[9]
        )
