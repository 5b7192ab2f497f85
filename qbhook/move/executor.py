"""Carries out a Plan, one payload group at a time, every step journaled before it acts.

Order of a group's steps (the planner's contract, qbhook/decide/plan.py): build the view
on the target pool (copy/link/mkempty), prove it from the host side
(verify_view), move each torrent onto it (relocate), prove qBittorrent agrees
(verify_group), start each torrent as it was found (start), tag, then remove the old
links (delete, prune_dirs).

Safety rules this module enforces:

* nothing is deleted before every torrent of the group is verified at its new
  place; until the first delete, any failure moves the group's torrents back to
  where they were (their old files are untouched), so a failed group ends exactly
  as it started, plus an unused view on the target pool;
* a torrent is relocated only if it is complete and stable, its view was
  verified in this run, and no other relocation is in flight (one at a time:
  qBittorrent's move queue is sequential anyway);
* a move or a repair makes no file at a destination another torrent may write into, asked of
  the clients right before its view is made, on resume too (``_check_write_places``: the
  planner's rule, on what a rename or a torrent added since the plan changed; the repair planner
  reads no other torrent, so for a repair this is the only look), and a move again before its
  first delete (``_check_no_writer``, on the newcomer check's listing): the copies take hours.
  Once deletes began the look follows the newcomer check's cadence and is taken once more at the
  group's end (``_check_no_writer_at_end``): nothing can be undone then, so a writer found stops
  the rest of the deletes and fails the group with the writer named (its only copy is where that
  torrent writes);
* no old link is deleted while a library symlink reaches it, or while the libraries cannot be
  walked: the plan's snapshot walked them once, so the deletes walk again before a group's
  first delete and on the newcomer check's cadence after (``_check_no_library_symlink``);
* an incomplete torrent is never left running; a torrent is started again only
  after its recheck ended at 100%, and a relocated one only once the whole group passed
  verify_group (its ``start`` step): on a promote its new files are a library's, and none
  runs on them while a sibling still moves or the group may yet roll back (a plan made
  before the ``start`` kind has its relocations start their torrents, as it did then);
* every wait polls observed state with backoff against a size-based budget, and
  is resumable: after a crash, ``resume`` re-reads the world for the step that was
  ``intended`` and waits for a move in flight instead of issuing a second one.

Same-pool convergence is the one exception to "one group at a time": consecutive converge
groups of one pool run as a ``_Batch`` (one converge lock, one journal commit of every intent
before the first relink, one of every outcome after one syncfs, folders and catalog rows read
once through ``fsops.Relinker``), with every per-file check of ``fsops.relink_over`` kept and
each group keeping its own outcome. ``policy.converge: false`` keeps converge groups out of
any run.

What each step kind does (act, resume accounting, undo, dry-run probe) is one ``StepHandler``
in ``HANDLERS``, keyed by the step's class; besides the converge batches (``_units``), nothing
else here looks at a step's kind. Adding a kind: its class in qbhook/decide/plan.py, one
``StepHandler`` entry here.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import stat as stat_mod
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, Protocol

from qbhook import notify as _notify
from qbhook import procs
from qbhook.catalog import library_links
from qbhook.catalog.identity import components
from qbhook.catalog.store import CarryProof
from qbhook.catalog.torrents import TorrentIndex, skipped_files_known
from qbhook.clients.model import MISSING_FILES_STATE, TorrentFile
from qbhook.decide import converge
from qbhook.decide.explain import VIEW_CHANGED  # in a backstop-stopped group's reason (status, explain)
from qbhook.decide.facts import (
    LinkResolver,
    skipped_data_carried,
    skipped_place_reason,
    skipped_place_taken,
    write_place_reason,
)
from qbhook.decide.heap import collector_paused, heap_frozen
from qbhook.decide.plan import (
    DST_ABSENT,
    DST_TAKEN,
    Action,
    Converge,
    Copy,
    Delete,
    GroupPlan,
    GroupStatus,
    Link,
    MkEmpty,
    Plan,
    PruneDirs,
    Relocate,
    Repair,
    RunStatus,
    Start,
    Step,
    StepStatus,
    Tag,
    VerifyGroup,
    VerifyView,
    torrent_moves,
    torrent_starts,
)
from qbhook.decide.repair import NOT_AS_FOUND, QUIET_STATES
from qbhook.dirfd import LOOK_MAX_OPEN, FolderReader, FolderRefused, Pin
from qbhook.errors import (
    ChildFailed,
    ExitCode,
    LibraryLinksUnseen,
    PathMapError,
    QbhookError,
    QbtError,
    QbtUnreachable,
    RtorrentUnreachable,
    UnfinishedRuns,
    UnknownTorrent,
    UnsafeOperation,
    VerificationFailed,
)
from qbhook.forked import Forked, may_fork
from qbhook.move import fsops, orphans
from qbhook.move.journal import (
    LEFTOVER_KIND,
    Journal,
    RunRow,
    StepRow,
    failed_not_paused,
    forced_sharers_of,
    sharers_of,
)
from qbhook.move.locks import converge_lock, executor_lock, group_lock
from qbhook.paths import is_within
from qbhook.space import fits, leaves, space_at
from qbhook.units import human_bytes

if TYPE_CHECKING:
    from qbhook.catalog.store import Catalog
    from qbhook.clients.port import ClientPort
    from qbhook.config import Config

__all__ = [
    "HANDLERS",
    "Executor",
    "ExecutorContext",
    "GroupOutcome",
    "RunSummary",
    "StepHandler",
    "Timing",
    "build_executor",
    "relocate_budget",
]

_log = logging.getLogger(__name__)

BAD_STATES = frozenset({"error", "missingFiles"})
_RECHECKING = frozenset({"checkingUP", "checkingDL"})  # a check of the data (checkingResumeData is not)
# A torrent added this long before its plan's snapshot may be missing from it (the snapshot reads
# the clients over a while): its files are looked at too (``Executor._check_no_newcomer``).
_ADDED_SLACK_S = 300
# Deletes re-read the group's torrents this often (``Executor._check_still_placed``): a delete
# re-hashes its link, so a long group is read again while it goes, a short one once.
_REREAD_S = 2.0
# Deletes list every client again this often for a torrent added since verify_group
# (``Executor._check_no_newcomer``): one full listing of 5,000 torrents took 1.2 s through
# qBittorrent 4.5's adapter here, 0.6 s through rTorrent's (docs/benchmarks.md section 7), so a
# group deleting for minutes pays ~4-6 % for it; a cross-seed injected during the deletes loses
# at most the links deleted in one interval, not every one. The walk for library symlinks
# (``Executor._check_no_library_symlink``) is repeated on the same cadence (``_look_due``), and the
# write-place look (``Executor._check_no_writer``) rides on each listing.
_NEWCOMER_REREAD_S = 30.0
_NONE_KEPT = "no old link left"  # ``Executor._kept_old_links`` of a group whose deletes all ran
# After a recheck request, how long the client's API may still show the torrent as it was before
# (``_recheck_lag``): at least _RECHECK_LAG_S, and two of the client's refresh intervals plus a
# margin (clients/port.py ``state_lag_s``). Two: the first refresh after the request may have been
# computed before qBittorrent handled it (its timer's phase; the update answer comes later).
_RECHECK_LAG_S = 5.0
_STATE_LAG_MARGIN_S = 1.0
_DEFAULT_STATE_LAG_S = 1.5  # a client that does not say: qBittorrent's default refresh interval

Hook = Callable[[str, str, int, Step], None]


# Test-only: ``QBHOOK_TEST_CRASH_AT=<seq>:<point>`` SIGKILLs this process when the executor
# reaches hook ``point`` (before | after_intend | mid_act | after_act | poll) of step ``seq``, so the
# integration tests can crash a real ``qbhook apply`` at an exact journal step (``mid_act``: a
# converge step between its temporary link and the rename). Unset: no effect.
CRASH_ENV = "QBHOOK_TEST_CRASH_AT"


def _env_crash_hook() -> Hook | None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return None
    seq_s, _sep, point = spec.partition(":")
    if not seq_s.isdigit():
        # A test's own variable, mistyped: say so in one line rather than fail every apply.
        raise QbhookError(f"{CRASH_ENV}={spec!r}: want <step number>[:<point>] (a test hook; unset it)")
    want_seq, want_point = int(seq_s), point or "after_intend"

    def hook(p: str, _gid: str, seq: int, _step: Step) -> None:
        if p == want_point and seq == want_seq:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def relocate_budget(size: int, base_s: float, rate_bps: float) -> float:
    """Seconds a move + recheck of ``size`` bytes may take before we call it failed."""
    return base_s + max(int(size or 0), 0) / rate_bps


# How long a group may stay paused on torrents checking or moving (``Executor._stuck``) before it
# is taken to be stuck and stops for good: a day, or a move + recheck of its bytes if longer. Not
# ``relocate_budget`` alone: after a restart qBittorrent checks every torrent's resume data in a
# queue, hours for a large library, and the group's torrents may wait behind all of them.
STUCK_PAUSE_S = 86400.0

# The most one look at a paused group adds to how long it has been paused (``_pause_note``). A
# pause spans restarts, so it is counted on the wall clock, which jumps: a box without RTC boots
# in 1970 (or at its last shutdown) and NTP sets it later, exactly while qBittorrent checks its
# resume data. Taking the noted start at face value stopped a group for good a minute after such
# a jump, or (clock ahead when noted) kept it paused and every plan refused for as long as it was
# ahead. So the pause is the sum of the gaps between looks: a gap back in time counts nothing, one
# longer than this counts this. serve looks every minute while a run is unfinished
# (``RunsGate``); a longer gap is qbhook not running, or the clock jumping: undercounted, never
# "stuck" from one jump. Far below ``STUCK_PAUSE_S``: stopping for good is the harsher mistake.
PAUSE_LOOK_CAP_S = 3600.0


def _pause_note(note: object, now: float, done: int) -> dict:
    """The verify_group's pause note (``Journal.note_paused``) after a look at ``now`` (wall clock)
    with ``done`` deletes done: ``paused_s`` grows by the gap since the last look (``last``),
    clamped to 0..``PAUSE_LOOK_CAP_S``. A new pause, a delete done since, or a note an older
    qbhook wrote (``since``: a start on the wall clock, which may have jumped) starts from 0 now."""
    if (
        not isinstance(note, dict)
        or note.get("done") != done
        or not isinstance(note.get("paused_s"), (int, float))
        or not isinstance(note.get("last"), (int, float))
    ):
        return {"paused_s": 0.0, "last": float(now), "done": done}
    gap = min(max(now - note["last"], 0.0), PAUSE_LOOK_CAP_S)
    return {"paused_s": float(note["paused_s"]) + gap, "last": float(now), "done": done}


def _norm(path: str | None) -> str:
    if not path:
        return ""
    return os.path.normpath(str(path))


def _at_rest(obs: Mapping[str, Any] | None, from_path: str) -> bool:
    """Whether a relocation's journaled look (``Relocate.observed``) saw the torrent at ``from_path``,
    complete and stable: only then may a move have been issued (``_issue_move``), and be undone."""
    if not obs:
        return False
    return _norm(obs.get("save_path")) == _norm(from_path) and bool(obs.get("complete") and obs.get("stable"))


def _storage_at(t, path: str) -> bool:
    """Whether libtorrent's files are at save path ``path``: qBittorrent reports ``save_path`` as
    where it WANTS them and derives ``content_path`` from libtorrent's save path, where they ARE
    (4.5.2: the two stay apart after a restart inside a move, until its own move runs)."""
    cp = _norm(t.content_path)
    return bool(cp) and is_within(cp, path)


class _Unverified(NamedTuple):
    """Why a torrent is not as verify_group requires it (``_unverified``); ``passes``: a check or a
    move under way, which ends by itself (``_NotSettled``)."""

    why: str
    passes: bool


def _unverified(t, save_path: str) -> _Unverified | None:
    """verify_group's rule, the one home of it: torrent ``t`` is at ``save_path`` in its client's
    eyes and its storage's (``_storage_at``), stable, and complete; else why not. Made again before
    the deletes and while they run (``Executor._check_still_placed``), on the same shared model
    (clients/model.py), so an rTorrent item hashing or short of its bytes is refused alike.

    A check (qBittorrent re-checks resume data after a restart, a person forced one) or a move
    (qBittorrent 4.5.2 shows the old save path while it runs) ends by itself: it passes.
    missingFiles, error, under 100 % or elsewhere does not."""
    if _norm(t.save_path) != _norm(save_path):
        return _Unverified(f"is at {t.save_path}, expected {save_path}", passes=False)
    if not t.is_stable:
        return _Unverified(f"is {t.state}, not stable", passes=t.is_checking or t.is_moving)
    if not t.is_complete:
        return _Unverified(f"is at {t.progress * 100:.1f}%", passes=False)
    if not _storage_at(t, save_path):
        return _Unverified(f"has its files at {t.content_path or 'a place its client does not report'}", passes=False)
    return None


def _unverified_error(head: str, problems: list[_Unverified], tail: str = "") -> VerificationFailed:
    """One error for every torrent that fails ``_unverified``: ``_NotSettled`` (a later look may
    pass) only when each of them passes by itself."""
    cls = _NotSettled if all(p.passes for p in problems) else VerificationFailed
    return cls(head + "; ".join(p.why for p in problems) + tail)


def _hides_from(c) -> bool:
    """Whether old links are hidden from client ``c`` while it relocates: only from one that moves
    files itself (clients/port.py ``relocation_moves_files``); a client that does not say is
    taken to."""
    return getattr(c, "relocation_moves_files", True)


def _progress_of(t) -> str:
    """A torrent's progress for a message: a closed rTorrent item's count is not one of its files.
    Closed after the recheck asked here, it was stopped from outside (a check cancelled while
    queued, a ruTorrent Stop, an rTorrent restart): which one, the client does not say."""
    if t.progress_stale:
        return (
            f"closed (stopped from outside: its check cancelled or its files closed; "
            f"its {t.progress * 100:.1f}% is from before it closed)"
        )
    return f"at {t.progress * 100:.1f}%"


def _recheck_lag(c) -> float:
    """Seconds from a recheck request until client ``c``'s API surely shows it: before that, a
    stopped torrent's complete reading may be the one of before the request (qBittorrent recomputes
    torrents/info's state and progress only on its refresh timer, the ``refresh_interval`` a person
    may have raised far above its 1.5 s default), so it proves nothing without a check seen (R68)."""
    lag = float(getattr(c, "state_lag_s", _DEFAULT_STATE_LAG_S))
    return max(_RECHECK_LAG_S, 2 * lag + _STATE_LAG_MARGIN_S)


def _checks_on_move(c) -> bool:
    """Whether client ``c``'s relocation checks the data at the new place by itself and reports it
    live (clients/port.py ``relocation_checks``): else ``_wait`` asks for the recheck and proves it
    was seen. A client that does not say is taken not to. qBittorrent shows a stopped torrent
    moved onto existing files with the progress it cached before the move, at the new save path,
    until its next refresh (1.5 s by default), then at 0 %: two polls there read as "checked"."""
    return getattr(c, "relocation_checks", False)


def _missing(found: Mapping[str, Any]) -> bool:
    """A repair's journaled first look (``_found``) saw its torrent missingFiles: whether it ran
    before the repair stopped it, qBittorrent does not say (``Executor._repair_state_back``)."""
    return found.get("state") == MISSING_FILES_STATE


def _as_found(c, h: str, obs: Mapping[str, Any], t, *, was_running: bool) -> bool:
    """Torrent ``h`` (``t``, stopped by its relocation or its undo) back in the state its journaled
    look ``obs`` found: started if it ran (forced, if it did: a plain start is queued), paused if
    its client held it paused (clients/port.py ``Pausing``: rTorrent's d.stop before a relocation
    ends a pause), else left stopped. True when it was started."""
    if not t.is_stopped:
        return False
    if was_running:
        c.start(h, forced=bool(obs.get("forced")))
        return True
    pause = getattr(c, "pause", None)
    if obs.get("paused") and not t.is_paused and pause is not None:
        pause(h)
    return False


# --------------------------------------------------------------------------- context


class ClientsByName(Protocol):
    """``qbhook.clients.registry.Clients``, or a plain mapping in tests."""

    def __getitem__(self, name: str) -> ClientPort: ...


# The actions that make a view at a destination and delete its source after: asked again before
# their first delete, during the deletes and at their end (``Executor._check_no_writer``).
_VIEW_MOVES = (Action.DEMOTE, Action.PROMOTE)
# A group's states in a run once it ended, done or not (``Executor._states``): a repair's twin in
# such a group is not its own any more (``Executor._repair_twins``).
_ENDED = frozenset({GroupStatus.DONE, GroupStatus.FAILED, GroupStatus.ROLLED_BACK, GroupStatus.BUSY})
# Every action that makes files at a destination, asked before its first make (``_check_write_places``):
# a repair links catalog copies (a library file's inode, another payload's) under its torrent.
_VIEW_MAKERS = (*_VIEW_MOVES, Action.REPAIR)


class _RepairView(NamedTuple):
    """One file of a repair group's view, as the plan verifies it (``_repair_views``)."""

    size: int
    blake3: str | None
    group_id: str  # the repair group whose view it is


class _RepairViews(NamedTuple):
    """Every repair group's view files of a plan, each path normalized once (``_repair_views``)."""

    at: dict[str, dict[tuple[str, str], _RepairView]]  # path -> {(client, hash): its view file there}
    of: dict[str, list[tuple[str, tuple[str, str], _RepairView]]]  # group id -> [(path, (client, hash), file)]


def _repair_views(groups: Iterable[GroupPlan]) -> _RepairViews:
    """Every repair group's view files of a plan, by path and by group (``Executor._repair_twins``).
    Built once a run: a lost disk is thousands of repairs, each asking of its own files who else is there."""
    out = _RepairViews({}, {})
    for g in groups:
        if g.action != Action.REPAIR:
            continue
        own = out.of.setdefault(g.group_id, [])
        for s in g.steps:
            if isinstance(s, VerifyView):
                for f in s.files:
                    path, who, v = _norm(f.path), (s.instance, s.torrent), _RepairView(f.size, f.blake3, g.group_id)
                    out.at.setdefault(path, {})[who] = v
                    own.append((path, who, v))
    return out


class _FilesAsked:
    """One live look's file lists (``Executor._live_writer``): each torrent's asked of its client at
    most once, whoever asks (the twins' check, then each pass of ``converge.live_writers``)."""

    def __init__(self, clients: Mapping[str, ClientPort]):
        self._clients = clients
        self._got: dict[tuple[str, str], list[TorrentFile] | None] = {}

    def listed(self, t) -> list[TorrentFile] | None:
        """Torrent ``t``'s files as its client lists them now; None: no answer."""
        key = (t.instance, t.hash)
        if key not in self._got:
            c = self._clients.get(t.instance)
            try:
                self._got[key] = None if c is None else list(c.files(t.hash))
            except QbhookError:
                self._got[key] = None
        return self._got[key]

    def __call__(self, t) -> list[tuple[str, int]] | None:
        """``converge.live_writers``' ``files_of``: (name, priority) of each file, made from ``listed``
        (the one kept form); None: no answer (its folder counts: ``converge.write_places``)."""
        files = self.listed(t)
        return None if files is None else [(f.name, f.priority) for f in files]


class _Writers(NamedTuple):
    """One live look's two verdicts (``Executor._live_writer``), on one listing."""

    found: tuple[str, str] | None  # the first writer listed, checking and moving torrents counted
    only_transient: bool  # found, and every torrent found writing there is checking or moving


def _writers(
    others: list, dsts: list[str], twins: Mapping[tuple[str, str], set[str]], known, files_of
) -> Iterator[tuple[str, str, object]]:
    """``converge.live_writers`` of ``others`` at ``dsts``, a repair's twins (``Executor._repair_twins``)
    last and each at the destinations outside its twin paths only: one lazy pass, each torrent's
    file list asked at most once."""
    resolve = LinkResolver()
    yield from converge.live_writers(
        [t for t in others if (t.instance, t.hash) not in twins], dsts, resolve, known, files_of
    )
    for t in others:
        same = twins.get((t.instance, t.hash))
        if same is not None:
            yield from converge.live_writers([t], [d for d in dsts if _norm(d) not in same], resolve, known, files_of)


def _look_due(last: float | None, now: float, deletes_started: bool) -> bool:
    """Whether a look the deletes repeat (newcomers, library symlinks) must be taken again at
    ``now``: before a group's first delete unless the last one is under ``_REREAD_S`` old (a sync
    may have taken a while since), then every ``_NEWCOMER_REREAD_S``. The one cadence of both:
    what is made meanwhile loses at most the links deleted in one interval."""
    limit = _NEWCOMER_REREAD_S if deletes_started else _REREAD_S
    return last is None or now - last >= limit


def _library_reach(found: library_links.LibraryLinks, steps, reader: FolderReader) -> tuple[str | None, str]:
    """(the library symlink that reaches an old link a ``Delete`` of ``steps`` removes, that
    path), or (None, ""): a file target by the link's identity, a folder target by real path or by
    the identity of a folder above it (``reader.identity``: one fstat a folder, however many
    deletes it holds), so a symlink written through a bind mount of the seeding data counts."""
    for d in steps:
        if not isinstance(d, Delete):
            continue
        path = _norm(d.path)
        if (link := _reaching(found, path, reader)) is not None:
            return link, path
    return None, ""


def _reaching(found: library_links.LibraryLinks, path: str, reader: FolderReader, lstat: bool = True) -> str | None:
    """The library symlink that reaches ``path`` (normalized), or None: ``LibraryLinks.reaching``
    by path, by the identity of a folder above it, and (``lstat``) by the inode it names now."""
    key = None
    if lstat:
        try:
            lst = os.lstat(path)
            key = (lst.st_dev, lst.st_ino)
        except OSError:  # deleted already: its place may still be a symlink's
            pass
    return found.reaching(path, key, reader.identity)


def _library_victims(
    found: library_links.LibraryLinks, todo: list[tuple[GroupPlan, int, Converge]], reader: FolderReader
) -> dict[tuple[str, int], str]:
    """Each victim inode ((fsid, ino)) of ``todo`` a library symlink reaches, by its inode or by any
    of its seeding names (``LibrarySymlinks.used``' rule): the symlink, shown. A name is lstat-ed
    only when its planned inode number is some file target's: a batch of 10,000 relinks with no
    file symlink costs no lstat here (each relink checks its name's inode itself)."""
    inos = {ino for _dev, ino in found.files}
    out: dict[tuple[str, int], str] = {}
    for _g, _q, s in todo:
        victim = (s.fsid, s.ino)
        if victim in out:
            continue
        path = _norm(s.path)
        if (link := _reaching(found, path, reader, lstat=s.ino in inos)) is not None:
            out[victim] = f"library symlink {link} -> {library_links.target(link)} uses {path}"
    return out


def _every_client(clients: ClientsByName) -> list[ClientPort]:
    """Every client of ``clients``: a ``Clients`` iterates its adapters, a plain mapping its names."""
    values = getattr(clients, "values", None)
    return list(values() if values is not None else clients)


def _listings(clients: ClientsByName) -> dict[str, list]:
    """Every client's torrent listing by client name: one ``torrents()`` a client. A client that
    does not answer raises (its ``QbhookError``): the write-place checks take no place not known free."""
    return {c.name: c.torrents() for c in _every_client(clients)}


@dataclass(frozen=True, slots=True)
class Timing:
    """How long the executor waits, and how often it looks."""

    lock_wait: bool | float = False  # for the executor lock: False fails at once
    group_lock_wait: bool | float = 30.0
    relocate_base_s: float = 300.0  # a move's budget: base + size / rate
    relocate_rate_bps: float = 50e6
    poll_initial_s: float = 1.0
    poll_max_s: float = 15.0
    # A move into pre-made files is followed by a recheck that may start a poll or two
    # later: require the finished state on consecutive polls.
    settle_polls: int = 2
    recheck_grace_s: float = 60.0

    def budget(self, size: int) -> float:
        return relocate_budget(size, self.relocate_base_s, self.relocate_rate_bps)


@dataclass(frozen=True, slots=True)
class ExecutorContext:
    """Everything an Executor works with; built once by ``build_executor``."""

    cfg: Config
    catalog: Catalog
    clients: ClientsByName
    journal: Journal
    timing: Timing = Timing()
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    hook: Hook | None = None
    log: logging.Logger = _log
    # Seconds since the epoch: what outlives a restart (a pause's start, ``Executor._stuck``),
    # which ``clock`` (monotonic) does not.
    wall: Callable[[], float] = time.time

    @property
    def seeding_roots(self) -> tuple:
        """Writes and deletes happen only below these (through verified folder descriptors, each
        opened from its pool root down: ``dirfd.SeedingRoot``)."""
        return self.cfg.anchored_seeding_roots

    @property
    def roots(self) -> tuple:
        """Link donors and kept copies may also live elsewhere in a pool."""
        return self.seeding_roots + tuple(p.path for p in self.cfg.pools)

    def reader(self) -> FolderReader:
        """A fresh reader of facts below the pools, each folder reached from its pool root by the
        verified walk (``dirfd.FolderReader``; a path under no pool is read by its string). One per
        look: a reader keeps its folders' verdicts for its life, and a look must see the world now."""
        return FolderReader((str(p.path) for p in self.cfg.pools), max_open=LOOK_MAX_OPEN)


def build_executor(
    cfg: Config,
    catalog: Catalog,
    clients: ClientsByName,
    journal: Journal | None = None,
    *,
    lock_wait: bool | float = False,
    notify: bool = False,
    hook: Hook | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: logging.Logger | None = None,
    wall: Callable[[], float] = time.time,
    **timing,
) -> Executor:
    """THE way to make an Executor. ``lock_wait``: seconds to wait for a busy executor lock (False:
    fail at once; the CLI passes --wait, the worker waits out a running apply). ``notify``: report
    every run's summary (``qbhook.notify.watch``). ``timing``: fields of ``Timing``."""
    ctx = ExecutorContext(
        cfg,
        catalog,
        clients,
        journal if journal is not None else Journal(catalog.conn),
        Timing(lock_wait=lock_wait, **timing),
        sleep,
        clock,
        hook if hook is not None else _env_crash_hook(),
        log or _log,
        wall,
    )
    ex = Executor(ctx)
    if notify:
        from qbhook.notify import watch

        ex = watch(ex)
    return ex


# --------------------------------------------------------------------------- results


@dataclass
class GroupOutcome:
    group_id: str
    action: str
    status: GroupStatus  # done | failed | rolled_back | busy | planned
    reason: str | None = None
    bytes_copied: int = 0
    bytes_freed: int = 0
    # ``bytes_freed`` is a lower bound: a resumed step found its work done by the attempt that was
    # killed, and what that attempt freed could not be proven afterwards (``_resumed_victim``).
    bytes_freed_at_least: bool = False
    torrents_relocated: int = 0
    needs_attention: bool = False  # rollback could not finish: resume will retry it
    # Paused after its deletes began by a problem that passes (a client not up yet, a torrent
    # checking): resume finishes its deletes (``Executor._stop_after_deletes``). Not a failure.
    paused: bool = False
    steps: list[dict] = field(default_factory=list)  # dry run: what would run

    @property
    def failed(self) -> bool:
        return self.status in (GroupStatus.FAILED, GroupStatus.ROLLED_BACK)


@dataclass
class RunSummary:
    run_id: int | None
    dry_run: bool = False
    status: RunStatus = RunStatus.DONE
    groups: list[GroupOutcome] = field(default_factory=list)
    skipped: str | None = None  # resume: why this unfinished run was left alone (nothing of it ran)
    # A quarantine run's (resume finishing one, ``Executor._finish_quarantine``): it has no groups, its
    # work is orphans held. The counts its journal row records (what history and the status page
    # show); ``orphans_not_moved`` is this finish's refusals, path -> why. None: not a quarantine run.
    orphans_held: int | None = None
    orphans_failed: int = 0
    bytes_held: int = 0
    orphans_not_moved: dict[str, str] = field(default_factory=dict)

    @property
    def bytes_copied(self) -> int:
        return sum(g.bytes_copied for g in self.groups)

    @property
    def bytes_freed(self) -> int:
        return sum(g.bytes_freed for g in self.groups)

    @property
    def bytes_freed_at_least(self) -> bool:
        return any(g.bytes_freed_at_least for g in self.groups)

    @property
    def torrents_relocated(self) -> int:
        return sum(g.torrents_relocated for g in self.groups)

    @property
    def groups_done(self) -> list[str]:
        return [g.group_id for g in self.groups if g.status == GroupStatus.DONE]

    @property
    def groups_failed(self) -> dict[str, str]:
        """Failed groups with their reasons, the paused ones too: a count of failures leaves
        those out by ``journal.failed_not_paused`` (``groups_failed_not_paused``)."""
        return {g.group_id: g.reason or str(g.status) for g in self.groups if g.failed}

    @property
    def groups_failed_not_paused(self) -> list[str]:
        """The failures every count and line reports (the exit code, ``notify``): the one rule,
        ``journal.failed_not_paused``, read from what the journal keeps of this run."""
        return failed_not_paused(self.counters())

    @property
    def groups_busy(self) -> dict[str, str]:
        return {g.group_id: g.reason or "busy" for g in self.groups if g.status == GroupStatus.BUSY}

    @property
    def exit_code(self) -> ExitCode:
        if self.groups_failed_not_paused:
            return ExitCode.UNSAFE
        if self.orphans_failed:  # as a failed ``qbhook orphans --quarantine --yes`` exits
            return ExitCode.FAILURE
        if self.groups_busy or self.skipped or self.groups_failed:  # a paused group: try again later
            return ExitCode.BUSY
        return ExitCode.OK

    @property
    def groups_paused(self) -> list[str]:
        """Failed groups that only paused (``GroupOutcome.paused``): resume finishes them."""
        return [g.group_id for g in self.groups if g.failed and g.paused]

    def counters(self) -> dict:
        return {
            "bytes_copied": self.bytes_copied,
            "bytes_freed": self.bytes_freed,
            # Only when true: every reader takes its absence as an exact figure (older runs' summaries).
            **({"bytes_freed_at_least": True} if self.bytes_freed_at_least else {}),
            "torrents_relocated": self.torrents_relocated,
            "groups_done": self.groups_done,
            "groups_failed": self.groups_failed,
            "groups_paused": self.groups_paused,
            "groups_busy": self.groups_busy,
        }

    def orphans(self) -> dict:
        """A quarantine run's counts, by its journal row's names (empty for any other run)."""
        if self.orphans_held is None:
            return {}
        return {
            "orphans_held": self.orphans_held,
            "orphans_failed": self.orphans_failed,
            "bytes_held": self.bytes_held,
            "orphans_not_moved": self.orphans_not_moved,
        }

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "status": str(self.status),
            **({"skipped": self.skipped} if self.skipped else {}),
            **self.counters(),
            **self.orphans(),
            "groups": [{**asdict(g), "status": str(g.status)} for g in self.groups],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSummary:
        """The summary ``to_dict`` gave (a sweep's ``applied``), back as one: its exit code and its
        printed lines are the ``apply`` command's, not a second reading of the dict."""
        return cls(
            d.get("run_id"),
            dry_run=bool(d.get("dry_run")),
            status=RunStatus(d["status"]),
            groups=[GroupOutcome(**{**g, "status": GroupStatus(g["status"])}) for g in d.get("groups") or ()],
            skipped=d.get("skipped"),
            orphans_held=d.get("orphans_held"),
            orphans_failed=int(d.get("orphans_failed") or 0),
            bytes_held=int(d.get("bytes_held") or 0),
            orphans_not_moved=dict(d.get("orphans_not_moved") or {}),
        )


# --------------------------------------------------------------------------- per-group state


@dataclass
class _Reloc:
    """One relocation of this run, with what is needed to undo it (``step.observed``)."""

    seq: int
    step_id: int
    status: StepStatus  # journal status of its step
    step: Relocate
    # Other torrents of the group seeding from the same old paths, stopped by this relocation
    # while those paths were hidden (each was running: a stopped one is left alone); started
    # again once they are back. Each is (instance, hash): one save path may be seeded from two
    # clients, and each sharer is stopped and started through its own. Journaled in the step's
    # args (``_sharers``) before each stop and after each start, so a resume or a rollback after
    # a crash starts exactly these again.
    sharers: list[tuple[str, str]] = field(default_factory=list)
    # Those of them that ran force-started (``_forced_sharers``).
    forced: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _GroupRun:
    run_id: int
    plan: GroupPlan
    outcome: GroupOutcome
    # (instance, torrent, save_path) verified in this run -> the view's file sizes by name relative
    # to save_path: what ``_issue_move`` checks the torrent's file list against again (``_match_view``).
    views: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)
    relocs: list[_Reloc] = field(default_factory=list)
    deletes_started: bool = False
    synced: bool = False
    # Every view file as verify_view proved it: path -> (dev, ino, size, mtime_ns, ctime_ns).
    # Journaled with verify_view's result, so a resumed run checks against the same facts.
    seen: dict[str, tuple] = field(default_factory=dict)
    view_changed: bool = False  # the backstop tripped: no rollback, no delete, an alert
    # A repair's torrents this run stopped before putting a file under them (``_repair_quiet``).
    quieted: set = field(default_factory=set)
    # Content hashes this group learned from its copies (a ``Copy`` planned without one): target
    # path -> hex. Later steps planned without a hash for that path check against it. Rebuilt on
    # resume from the journaled results of the finished copies and links.
    learned: dict[str, str] = field(default_factory=dict)
    # Torrents ``_start_sharers`` could not start again, each with why: named in the outcome and
    # an alert (``Executor._report_left_stopped``), never dropped silently.
    left_stopped: list[str] = field(default_factory=list)
    # What a rollback could not restore as it was, one short clause each (ATM left off): added
    # to the group's reason by ``Executor._close_failed``.
    notes: list[str] = field(default_factory=list)
    # Old links a relocation's failed rollback still holds hidden on purpose (its torrent's own
    # move may be pending): another relocation's rollback from the journal leaves them there.
    held_back: set[str] = field(default_factory=set)
    # When the deletes last read the group's torrents at their verified place (clock), None: not yet.
    placed_at: float | None = None
    # When every client was last listed for torrents outside the plan (clock), None: not yet.
    newcomers_at: float | None = None
    # The library walk (its start, ``Executor._walked``) this group's old links were last judged
    # against, None: not yet.
    library_at: float | None = None
    # The group failed for a reason a later look may not meet (``_passing``): after deletes
    # began it pauses, resumable, instead of stopping for good (``Executor._stop_after_deletes``).
    passing: bool = False
    # ...and only torrents checking or moving (``_NotSettled``): a pause that may be stuck (``_stuck``).
    settling: bool = False
    # The sequence numbers of this group's own plan steps: a failed repair undoes only their rows.
    seqs: frozenset = frozenset()
    # Each torrent's new save path -> its old one (``like``), read off the plan once.
    moved_from: dict[str, str] | None = None

    def like(self, to_dir: str, roots) -> fsops.Like | None:
        """What the folders and empty files a make step puts below ``to_dir`` are made like: the
        same places below the torrent's save path before its move (``fsops.Like``)."""
        if self.moved_from is None:
            self.moved_from = {}
            for m in torrent_moves(self.plan.steps):
                self.moved_from.setdefault(_norm(m.to_path), m.from_path)
        src = self.moved_from.get(_norm(to_dir))
        return None if src is None else fsops.Like.of(to_dir, src, roots)

    def content_of(self, path: str, planned: str | None, size: int, what: str) -> str | None:
        """The hash a step must check ``path`` against: the planned one, else the one its copy learned."""
        if planned is not None or not size:
            return planned
        got = self.learned.get(_norm(path))
        if got is None:
            raise UnsafeOperation(
                f"{what}: no content hash for {path}: none was planned and no copy of this run made it",
                hint="re-plan (the copy that would have hashed it did not run)",
            )
        return got


class _At(NamedTuple):
    """Where a step is in the run: its sequence number and its journal row. ``again``: that row
    was journaled ``intended`` by an attempt that never closed it (a crash, a pause): the act may
    have begun, and what it left is the world's to tell (``fsops.safe_unlink``'s ``resumed``)."""

    seq: int
    step_id: int
    again: bool = False


class _Failure(Exception):
    """A step failed; the group is already closed (rolled back, or marked failed)."""


class _NotSettled(VerificationFailed):
    """verify_group, or a look during the deletes, found only torrents checking or moving, not
    stable (qBittorrent re-checks resume data after a restart, a person forced a recheck):
    a later look may pass (``_passing``, ``_unverified``)."""


# Steps per converge batch: one durable journal commit before and one after each batch, one
# syncfs, one fork (``FORK_MIN_STEPS``). Large enough that those stop mattering (on a disk
# mounted ``discard`` nine more of them cost 0.3-0.5 s per 10,000 relinks: docs/benchmarks.md
# section 9, the safe floor), small enough that a batch's intents stay a modest transaction
# (~3 MB) and its results a modest heap. Safe at any size: a relink onto a kept inode destroys
# no content whatever a crash leaves, and resume probes each intended step (``_probe_converge``);
# what the size bounds is the work one crash leaves to probe.
CONVERGE_BATCH_STEPS = 10_000
# A batch at least this long is relinked in FORK_PARTS processes (``Executor._forked``): a fork,
# the part's catalog rows read for it and its results pickled back cost ~10-20 ms, ~100 relinks'
# worth.
FORK_MIN_STEPS = 500
# Processes per large batch (this one and FORK_PARTS - 1 forked children), only where ``may_fork``
# (two cores or more). More than the two cores: a rename that frees an inode waits on the disk
# (~100 us on ext4 mounted ``discard``, a FUSE round trip on zfs-fuse) and a third process overlaps
# those waits; 10,000 relinks' apply phase took ~0.7 s less than in two (docs/benchmarks.md §9).
FORK_PARTS = 3
# This process's part against a child's: it also writes the journal and the catalog before and after.
PARENT_SHARE = 0.8


@dataclass
class _Batch:
    """Consecutive converge groups of one pool, carried out together (``Executor._converge_batch``).

    One converge lock for the batch, one journal commit of every intent before the first
    relink, the relinks (every check per file, through folders opened once), one syncfs,
    then one commit of every outcome and group state. Crash-safe like one step at a time:
    each relink is atomic and idempotent, and until the closing commit every step of the
    batch reads ``intended``, so resume re-checks each against the world (a relinked path
    answers "already"). Groups keep the plan's order and their own outcome: a failed step
    fails its group (later steps of that group are not tried), never the batch.
    """

    pool: str
    groups: list[tuple[GroupPlan, list[tuple[int, Step]]]] = field(default_factory=list)
    steps: int = 0

    def add(self, g: GroupPlan, numbered: list[tuple[int, Step]]) -> None:
        self.groups.append((g, numbered))
        self.steps += len(numbered)


def _parts(todo: list[tuple[GroupPlan, int, Converge]], n: int) -> list[list] | None:
    """``todo`` split in ``n`` for ``Executor._forked``, each in plan order: no group and no kept
    inode in two parts, the parts as even in steps as whole components allow (the first, this
    process's, a little lighter: it also writes the journal and the catalog). None when
    everything is one component (nothing to share)."""
    gids: dict[str, int] = {}
    for g, _q, _s in todo:
        gids.setdefault(g.group_id, len(gids))
    comp = components(len(gids), ((gids[g.group_id], (s.keep.fsid, s.keep.ino)) for g, _q, s in todo))
    size: dict[int, int] = {}
    for g, _q, _s in todo:
        c = comp[gids[g.group_id]]
        size[c] = size.get(c, 0) + 1
    if len(size) < 2:
        return None
    n = min(n, len(size))
    side: dict[int, int] = {}
    cap = [PARENT_SHARE] + [1.0] * (n - 1)
    load = [0] * n
    for c, k in sorted(size.items(), key=lambda kv: (-kv[1], kv[0])):
        i = min(range(n), key=lambda j: (load[j] + k) / cap[j])
        side[c] = i
        load[i] += k
    out: list[list] = [[] for _ in range(n)]
    for item in todo:
        out[side[comp[gids[item[0].group_id]]]].append(item)
    return out


def _collect(kids: list[Forked], log: logging.Logger) -> tuple[list, ChildFailed | None]:
    """Every child's answer, in order, and the first failure (the others logged); every child reaped,
    whatever is raised while waiting (a second Ctrl-C kills and reaps the ones left)."""
    answers: list = []
    failed: ChildFailed | None = None
    try:
        for kid in kids:
            try:
                answers.append(kid.result())
            except ChildFailed as e:
                if failed is not None:
                    log.warning("converge batch: another process failed too: %s", e.message)
                failed = failed or e
    finally:
        for kid in kids:
            kid.stop()
    return answers, failed


def _answer(closes: list, done_paths: list, after: dict, dead: dict, freed: dict, stored: list) -> tuple:
    """A forked child's ``Executor._act`` and hashes stored, as pickled back to ``_forked``: the
    relinked names' stats and proofs as plain ints (``fsops.relinked_to_parent``)."""
    return closes, done_paths, fsops.relinked_to_parent(after), dead, freed, stored


def _batchable(g: GroupPlan) -> bool:
    return g.action == Action.CONVERGE and bool(g.steps) and all(isinstance(s, Converge) for s in g.steps)


def _units(groups: list[GroupPlan]) -> Iterable[_Batch | tuple[GroupPlan, list[tuple[int, Step]]]]:
    """The run's groups in plan order, numbered; runs of converge groups of one pool come as ``_Batch``es."""
    seq = 0
    batch: _Batch | None = None
    for g in groups:
        numbered = list(enumerate(g.steps, start=seq))
        seq += len(g.steps)
        pool = g.source_pool or ""
        if _batchable(g):
            if batch is not None and (batch.pool != pool or batch.steps + len(numbered) > CONVERGE_BATCH_STEPS):
                yield batch
                batch = None
            if batch is None:
                batch = _Batch(pool)
            batch.add(g, numbered)
            continue
        if batch is not None:
            yield batch
            batch = None
        yield g, numbered
    if batch is not None:
        yield batch


# --------------------------------------------------------------------------- executor


class Executor:
    def __init__(self, ctx: ExecutorContext):
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.catalog = ctx.catalog
        self.journal = ctx.journal
        self.timing = ctx.timing
        self.log = ctx.log
        self.seeding_roots = ctx.seeding_roots
        self.roots = ctx.roots
        # policy.client_groups, for a relink's and a move's link's access check (``fsops.Relinker``, ``link_into``)
        self._client_groups = self.cfg.policy.groups_of()
        # old link -> the cached hash its hiding carried (``_hide_old_links``), until put back
        self._carried: dict[str, dict] = {}
        # When the running plan's snapshot was taken (``Plan.created_at``; 0: unknown): a torrent
        # added since is one the planner never saw (``_check_no_newcomer``).
        self._planned_at = 0.0
        self._groups: list[GroupPlan] = []  # the running plan's, for a failed repair's undo (``_repair_made``)
        # The running plan's repair views by path and by group, built on a repair's first
        # write-place check (``_repair_twins``).
        self._repair_views: _RepairViews | None = None
        # The running plan's groups' states in this run (``_states_before``, then each outcome as it
        # comes; none: not begun): a repair's twin is its own only while its group has not ended
        # (``_repair_twins``), and a failed repair keeps only the files a group holding them uses
        # (``_repair_made``).
        self._states: dict[str, str] = {}
        # The run's last walk for library symlinks: (when it started, what it found, or why it
        # could not finish), shared by its groups while younger than the cadence (``_library_walk``).
        self._walked: tuple[float, library_links.LibraryLinks | LibraryLinksUnseen] | None = None

    # ------------------------------------------------------------------ entry points

    def apply(
        self,
        plan: Plan,
        *,
        trigger: str = "cli",
        group_ids: Iterable[str] | None = None,
        dry_run: bool = False,
        allow_unfinished: bool = False,
    ) -> RunSummary:
        wanted = set(group_ids) if group_ids is not None else None
        groups = [
            g
            for g in plan.groups
            if g.actionable
            and (wanted is None or g.group_id in wanted)
            # policy.converge: false means never applied, whatever plan (an older saved one) says
            and (g.action != Action.CONVERGE or self.cfg.policy.converge)
        ]
        if dry_run:
            return self._dry_run(groups)
        if not groups:
            return RunSummary(None)
        sub = Plan(groups=groups, created_at=plan.created_at)
        self._forget_state_lags()
        # heap_frozen: no collection walks the plan again during the run (decide.heap)
        with executor_lock(self.cfg, self.timing.lock_wait, sleep=self.ctx.sleep, clock=self.ctx.clock), heap_frozen():
            pending = self._unfinished()
            if pending and not allow_unfinished:
                # A half-done group (view built, some torrents moved) must be finished or
                # rolled back by its own journal before a new plan is laid over it.
                raise UnfinishedRuns(pending)
            run_id = self.journal.start_run(sub, trigger)
            self.log.info("run %d: %d group(s)", run_id, len(groups))
            return self._execute(run_id, sub, {})

    def resume(self, run_id: int | None = None) -> list[RunSummary]:
        """Finish unfinished runs: re-check the step that was in flight, then carry on."""
        with executor_lock(self.cfg, self.timing.lock_wait, sleep=self.ctx.sleep, clock=self.ctx.clock):
            if run_id is not None:
                runs = [self.journal.run(run_id)]  # UnknownRun (exit 2) if there is none
                if runs[0].status not in (RunStatus.RUNNING, RunStatus.INTERRUPTED):
                    raise QbhookError(f"run {run_id} is {runs[0].status}: nothing to resume")
            else:
                runs = self.journal.unfinished_runs()
            self._forget_state_lags()
            out = []
            for r in runs:
                why = self._left_alone(r, explicit=run_id is not None)
                if why is not None:
                    self.log.warning("run %d left alone: %s", r.id, why)
                    out.append(RunSummary(r.id, status=r.status, skipped=why))
                    continue
                if r.trigger == orphans.QUARANTINE_TRIGGER:
                    out.append(self._finish_quarantine(r))
                    continue
                self.journal.adopt_run(r.id)
                rows = {row.seq: row for row in self.journal.steps(r.id)}
                self.log.info("resuming run %d (%d step(s) journaled)", r.id, len(rows))
                out.append(self._execute(r.id, self._journaled_plan(r), rows))
            return out

    def _finish_quarantine(self, r: RunRow) -> RunSummary:
        """A quarantine run that died, finished (its steps are no plan's: holding its orphans is
        orphans.py's), after asking the clients whether a torrent uses its files since.

        Always finished, never left open: an open run blocks every ``apply`` and serve, and the
        clients may not be listable for good (one torrent stuck "moving" in qBittorrent). When
        they cannot be listed nothing in place is held (holding blind could move a seeding
        torrent's data: cross-seed links an orphan by a symlink, no fact on disk changes); a file
        its hold already moved into holding is recorded there, for the purge to ask again."""
        res = orphans.finish_quarantine(self.cfg, self.journal, r.id, lambda: _every_client(self.ctx.clients))
        # The run as journaled (every step of it, an earlier attempt's too): what resume says is
        # what history and the status page say. Without its counts it read "nothing to do", exit 0.
        row = self.journal.run(r.id)
        told = row.summary or {}
        return RunSummary(
            r.id,
            status=RunStatus.FAILED if row.status == RunStatus.FAILED or res.failed else RunStatus.DONE,
            orphans_held=int(told.get("orphans_held", len(res.held))),
            orphans_failed=int(told.get("orphans_failed", len(res.failed))),
            bytes_held=int(told.get("bytes_held", res.bytes_held)),
            orphans_not_moved=dict(res.failed),
        )

    def unfinished(self) -> tuple[int, ...]:
        """The runs ``apply`` refuses to lay a plan over (``UnfinishedRuns``), read under the
        executor lock as ``apply`` reads them: a run still "running" then is no live executor's.
        Waits for the lock as ``apply`` does (LockBusy)."""
        with executor_lock(self.cfg, self.timing.lock_wait, sleep=self.ctx.sleep, clock=self.ctx.clock):
            return self._unfinished()

    def _unfinished(self) -> tuple[int, ...]:
        return tuple(r.id for r in self.journal.unfinished_runs())

    @staticmethod
    def _journaled_plan(r: RunRow) -> Plan:
        try:
            return Plan.from_dict(r.plan)
        except (KeyError, TypeError, ValueError) as e:  # plan.StepFormatError is a ValueError
            raise QbhookError(
                f"run {r.id}: its journaled plan cannot be read ({e})",
                hint="resume it with the qbhook version that started it",
            ) from None

    def _left_alone(self, r: RunRow, explicit: bool) -> str | None:
        """Why ``resume`` must not take run ``r`` (None: it is an orphan, take it): it may
        belong to a process alive on another host, or on this one."""
        if r.status == RunStatus.INTERRUPTED or explicit:
            return None
        if r.host and r.host != socket.gethostname():
            return f"it belongs to host {r.host}; resume it there (or name it: qbhook resume --run {r.id})"
        # We hold the executor lock, so our own pid's run is a crashed attempt of this process.
        if r.pid is None or r.pid == os.getpid():
            return None
        # Its process, told by boot and start tick from a later one given its pid (after a
        # reboot a daemon, serve's own pid, often is); a run without them by its pid alone.
        alive = procs.running(r.pid, r.process)
        if alive is None and fsops.pid_alive(r.pid):
            return f"its pid {r.pid} is alive (reused?); resume it by name: qbhook resume --run {r.id}"
        if not alive:
            return None
        return f"its process {r.pid} still runs; resume it by name once it is gone: qbhook resume --run {r.id}"

    # ------------------------------------------------------------------ run

    def _execute(self, run_id: int, plan: Plan, rows: dict[int, StepRow]) -> RunSummary:
        summary = RunSummary(run_id)
        self._planned_at = plan.created_at
        self._groups = plan.groups
        self._repair_views = None
        self._states = self._states_before(run_id, rows)
        self._walked = None  # a run walks afresh: the last run's walk saw an older world
        try:
            for unit in _units(plan.groups):
                if isinstance(unit, _Batch):
                    outcomes = self._converge_batch(run_id, unit, rows)
                else:
                    g, numbered = unit
                    outcomes = [self._group(run_id, g, numbered, rows)]
                summary.groups.extend(outcomes)
                self._note_states(outcomes)
        except (KeyboardInterrupt, SystemExit, ChildFailed):
            # A converge batch's child failing leaves its steps intended, as a crash would.
            summary.status = RunStatus.INTERRUPTED
            self.journal.finish_run(run_id, RunStatus.INTERRUPTED, summary.counters())
            raise
        if any(g.needs_attention for g in summary.groups):
            summary.status = RunStatus.INTERRUPTED  # resume retries the unfinished rollback
        elif summary.groups_failed:
            summary.status = RunStatus.FAILED
        self.journal.finish_run(run_id, summary.status, summary.counters())
        if self.cfg.policy.grace_period > 0:
            self._purge_holding()
        return summary

    def _states_before(self, run_id: int, rows: Mapping[int, StepRow]) -> dict[str, str]:
        """The states of run ``run_id``'s groups a resumed run finds (``_states``): as journaled in
        it, and failed where a step failed (killed while it closed: only its rollback is left, and
        it ended without success). A fresh run has none."""
        states = self.journal.group_states(run_id)
        states.update((r.group_id, GroupStatus.FAILED) for r in rows.values() if r.status == StepStatus.FAILED)
        return states

    def _note_states(self, outcomes: Iterable[GroupOutcome]) -> None:
        """Each group's outcome as its state in this run (``_states``). Busy (another process held its
        lock) it did not run now: not begun, or, begun in an earlier attempt, still holding what
        it made (its run stays open for it)."""
        for o in outcomes:  # busy keeps what the journal said (R102: a done group's links were taken back)
            if o.status != GroupStatus.BUSY or o.group_id not in self._states:
                self._states[o.group_id] = o.status

    def _purge_holding(self) -> None:
        """Purge the held links whose grace period is over (``orphans.purge_held``: only those the
        journal recorded, orphans only when no torrent uses their place again)."""
        from qbhook.move.orphans import purge_held

        out = purge_held(self.cfg, self.catalog, self.journal, lambda: _every_client(self.ctx.clients))
        # The run itself is done; what was not purged stays journaled for the next run.
        if out.bytes_freed:
            self.log.info("holding purge: %d byte(s) freed", out.bytes_freed)
        for k in out.kept:
            self.log.warning("holding purge: %s", k.line())
        if out.refused is not None:
            self.log.warning("holding purge: %s; next time", out.refused.message)
        if out.clock is not None:
            self.log.warning("holding purge: %s", out.clock)
        if out.error is not None:
            self.log.warning("holding purge: %s", out.error)
        for bad in self.journal.unreadable_held():  # left out of the purge, never guessed at
            self.log.warning("holding purge: %s", bad.line())

    def _group(
        self, run_id: int, g: GroupPlan, numbered: list[tuple[int, Step]], rows: dict[int, StepRow]
    ) -> GroupOutcome:
        outcome = GroupOutcome(g.group_id, g.action, GroupStatus.DONE)
        try:
            lock = group_lock(
                self.cfg, g.group_id, self.timing.group_lock_wait, sleep=self.ctx.sleep, clock=self.ctx.clock
            ).acquire()
        except QbhookError as e:
            outcome.status, outcome.reason = GroupStatus.BUSY, str(e)
            # A resumed group with journaled steps must not be forgotten: keep the run open.
            outcome.needs_attention = any(seq in rows for seq, _s in numbered)
            return outcome
        try:
            st = _GroupRun(run_id, g, outcome, seqs=frozenset(seq for seq, _s in numbered))
            if self._states.get(g.group_id) != GroupStatus.DONE:  # one done replays: a kill must leave it done (R105)
                self.journal.set_group(g.group_id, run_id, GroupStatus.RUNNING)
            mine = [(seq, step, rows.get(seq)) for seq, step in numbered]
            failed = next((row for _s, _st, row in mine if row is not None and row.status == StepStatus.FAILED), None)
            if failed is not None:
                # The group had already failed when the run stopped: only the rollback may remain.
                with self.ctx.reader() as reader:
                    for seq, step, row in mine:
                        h = HANDLERS.get(type(step))
                        if row is not None and h is not None:
                            h.replay_failed(st, seq, step, row, reader)
                self._fail(st, failed.error or "failed earlier in this run")
                return outcome
            st.deletes_started = self._deleted_before(mine)
            remake = self._repair_files_gone(st, mine)
            self._repair_look_back(st, mine)
            listed = self._check_clients_answer(st, mine)
            self._check_room(st, mine)
            self._check_atm_off(st, mine)
            self._check_state_lag(st, mine)
            self._check_write_places(st, mine, listed, remake)
            self._steps(st, mine, remake)
            self._check_no_writer_at_end(st)
            self.journal.set_group(g.group_id, run_id, GroupStatus.DONE)
            self._report_left_stopped(st)
            self.log.info("group %s done", g.group_id)
        except _Failure:
            pass
        finally:
            lock.release()
        return outcome

    def _steps(self, st: _GroupRun, mine: list[tuple[int, Step, StepRow | None]], remake: frozenset[int]) -> None:
        """Carry out the group's steps in order: a step an earlier attempt finished is replayed
        (``StepHandler.replay``) unless its handler repeats it (``redo``) or it is a repair's make
        step whose file is gone since (``remake``: ``_repair_files_gone``), made again, the steps
        that judged the files before run again after it (``_reopen_after_remake``)."""
        if remake:
            mine = self._reopen_after_remake(mine)
        relocated = {
            (r.args.get("instance"), r.args.get("torrent"))
            for _s, step, r in mine
            if r is not None and isinstance(step, Relocate) and r.status == StepStatus.DONE
        }
        for i, (seq, step, row) in enumerate(mine):
            h = HANDLERS.get(type(step))  # None: _run_step fails the group safely
            if row is not None and seq in remake:
                self.log.warning(
                    "group %s: %s is gone since its %s step: made again", st.plan.group_id, step.dst, step.kind
                )
                self.journal.note_dst_before(row.id, DST_ABSENT)  # its undo may take what it makes now
            elif (
                h is not None
                and row is not None
                and row.status == StepStatus.DONE
                and not h.redo(step, relocated, mine[i + 1 :])
            ):
                h.replay(st, seq, step, row)
                continue
            self._run_step(st, seq, step, row)

    def _reopen_after_remake(
        self, mine: list[tuple[int, Step, StepRow | None]]
    ) -> list[tuple[int, Step, StepRow | None]]:
        """A resumed repair about to make again a file gone since (``_repair_files_gone``): its
        finished steps whose handler says so (``StepHandler.after_remake``: the Repair step's
        recheck, wait and start, and verify_group's verdict) are intended again, journaled before
        anything is made, so they run on the files made now, after a kill too. Replayed, a torrent
        stopped at its earlier recheck's 100 %, over files gone since, passed verify_group on that
        stale figure and the group ended done, the torrent stopped and never rechecked (R111)."""
        ids = {
            r.id
            for _q, s, r in mine
            if r is not None and r.status == StepStatus.DONE and getattr(HANDLERS.get(type(s)), "after_remake", False)
        }
        if not ids:
            return mine
        self.journal.reopen(sorted(ids))
        again = StepStatus.INTENDED
        return [(q, s, replace(r, status=again) if r is not None and r.id in ids else r) for q, s, r in mine]

    def _repair_files_gone(self, st: _GroupRun, mine: list[tuple[int, Step, StepRow | None]]) -> frozenset[int]:
        """The seqs of a resumed repair's finished make steps (a link, an empty file) whose
        destination holds nothing now, read through its verified folder: made again, by the same act
        as a first make, after the same write-place check (``_check_write_places``), instead of the
        group failing at its view. A cross-seeding twin's repair group at the same save path, failed
        since, took the files this group's steps had only found there (``already``, ``present``:
        never held for this group, R103); this one's recheck may still reach 100 % (R105). Only a
        name with nothing at it: a file there, another inode or not, is what the view judges, never
        replaced. A name that cannot be read now stays as journaled. Not for a group an earlier
        attempt ended done (its replay keeps its verdict)."""
        if st.plan.action != Action.REPAIR or self._states.get(st.plan.group_id) == GroupStatus.DONE:
            return frozenset()
        done = [
            (seq, s)
            for seq, s, r in mine
            if isinstance(s, (Link, MkEmpty)) and r is not None and r.status == StepStatus.DONE
        ]
        gone = set()
        with self.ctx.reader() as reader:
            for seq, s in done:
                try:
                    if reader.lstat_any(s.dst) is None:
                        gone.add(seq)
                except (OSError, FolderRefused, PathMapError):
                    continue  # unread: its view's check judges it, as before
        return frozenset(gone)

    def _deleted_before(self, mine: list[tuple[int, Step, StepRow | None]]) -> bool:
        """Whether a resumed group journaled a delete that may have acted before the crash
        (``_may_have_deleted``: an intended one by the world). Then verify_group, redone before
        the rest of the deletes (``_redo_group``), or the deletes' own re-checks failing must not
        move the torrents back onto old links that are partly gone (``_close_failed``); killed
        between a delete's intent and its unlink, nothing is gone and a failure rolls back."""
        journaled = [
            (h.irreversible, s, r)
            for _q, s, r in mine
            if (h := HANDLERS.get(type(s))) is not None and h.irreversible is not None and r is not None
        ]
        if not journaled:
            return False
        with self.ctx.reader() as reader:
            return any(
                r.status in (StepStatus.DONE, StepStatus.INTENDED) and acted(reader, s, r) for acted, s, r in journaled
            )

    def _check_clients_answer(
        self, st: _GroupRun, mine: list[tuple[int, Step, StepRow | None]]
    ) -> dict[str, list] | None:
        """Every client lists its torrents before a group whose verify_group is still to come
        (``_check_no_newcomer`` lists them all) changes anything: a client that is down fails
        the group here, having done nothing, rather than after its copies and relocations,
        which the rollback then undoes on every sweep. Still down at verify_group (it went down
        since), the group fails there, before any delete. Returns the listings by client name
        (None: not asked), for ``_check_write_places``: one listing a client a group."""
        if not any(isinstance(s, Delete) for _q, s, _r in mine) or not any(
            isinstance(s, VerifyGroup) and (r is None or r.status != StepStatus.DONE) for _q, s, r in mine
        ):
            return None
        try:
            return _listings(self.ctx.clients)
        except QbhookError as e:
            self._refuse(
                st, f"not started: a torrent client does not answer ({e}), and verify_group must list every client", e
            )

    def _check_write_places(
        self,
        st: _GroupRun,
        mine: list[tuple[int, Step, StepRow | None]],
        listed: dict[str, list] | None,
        remake: frozenset[int] = frozenset(),
    ) -> None:
        """A move or a repair with a file still to make at its destination (a first run, or a resume
        before its view is whole) asks the clients, right before, whether another torrent may write
        at one of its destination files (``_live_writer``). The plan checked its snapshot, maybe
        hours ago (a sweep's chunks, ``serve``, an approved plan); a file renamed in qBittorrent
        onto such a path since, or a torrent added skipping a file there, would write its pieces
        into the group's only copy. A repair's plan checked nothing of other torrents: its links
        (a library file's inode) would take those pieces. Refused here, nothing of the view is made
        (a resume keeps what it made, as a rollback keeps views), and the next plan blocks the group
        by the same rule (a repair is refused here again). Read-only: a resume asks again. A client
        that does not answer fails the group too: a place not known free is not taken. The copies
        take hours: the newcomer check asks a move again before its first delete and during the
        deletes, and its end asks once more (``_check_no_writer``)."""
        makes = (Copy, Link, MkEmpty)
        if st.plan.action not in _VIEW_MAKERS or not any(
            isinstance(s, makes) and (r is None or r.status != StepStatus.DONE or q in remake) for q, s, r in mine
        ):
            return
        g = st.plan
        try:
            if listed is None:
                listed = _listings(self.ctx.clients)
            found = self._live_writer(g, listed, settled_too=False).found
            if found is not None:
                raise UnsafeOperation(write_place_reason(*found))
        except QbhookError as e:
            self._refuse(st, f"refused before making its view: {e.message}", e)

    def _check_no_writer(self, st: _GroupRun, listed: dict[str, list], last: bool = False) -> None:
        """``_live_writer`` again on the newcomer check's listing (``_check_no_newcomer``: at
        verify_group, before the first delete when due, then on its cadence while the deletes run),
        and once more after the last delete (``last``, ``_check_no_writer_at_end``). The check
        before the first make is hours old once the copies ran, and a resume past the makes skips
        it: a rename onto a destination meanwhile would leave the group's only copy where another
        torrent writes once its source is deleted. Raised before any delete, the group rolls back
        (its source links are intact). Once deletes began nothing comes back, as for a newcomer or
        a library symlink found then: the rest of the old links are kept (a second copy of what
        they hold) and the group fails for good, the writer named, so a person keeps that torrent
        off the file before it is wanted. A torrent checking or moving there is waited for before
        the first delete (``_transients_ended``); once deletes began the group pauses for it as for
        a newcomer still checking (``_NotSettled``: resume looks again): a wait there ran the next
        unlink on newcomer and placement looks as old as the wait (R101), and a check longer than
        the budget failed the group for good though it ends by itself (R101)."""
        if st.plan.action not in _VIEW_MOVES:
            return
        look = self._live_writer(st.plan, listed)
        if look.only_transient and st.deletes_started:
            raise _NotSettled(f"{write_place_reason(*look.found)}; waiting for its check or move to end")
        found = self._transients_ended(st) if look.only_transient else look.found
        if found is None:
            return
        if not st.deletes_started:
            raise UnsafeOperation(
                f"{write_place_reason(*found)}; not deleting the old links",
                hint="re-plan: the next plan blocks the group by the same rule",
            )
        when = "found after the last delete" if last else "no more old links deleted"
        raise UnsafeOperation(
            f"{write_place_reason(*found)}; {when}",
            hint="the group's new place is its only copy there: keep that torrent off the file before it is wanted",
        )

    def _check_no_writer_at_end(self, st: _GroupRun) -> None:
        """``_check_no_writer`` once more when a move's deletes are done: the cadence's last look
        may be ``_NEWCOMER_REREAD_S`` older than the last delete, and a rename meanwhile left the
        group "done" with its only copy where another torrent writes, nobody told. One listing a
        client a group, skipped as the first delete's look is (``_look_due``) when the last look is
        under ``_REREAD_S`` old: a sweep's small groups pay none. Found, the group fails as a look
        during the deletes fails it (``_stop_after_deletes``): told in its outcome, history, status
        and the run's notification; a client that does not answer pauses it, and resume asks again.
        Not taken for a group an earlier attempt ended done (a resume replays it): a writer come
        since is a later world's, and the verdict stays the one journaled (R101). Any other resume
        takes it: one paused by this look, one killed after its last delete (R103)."""
        done_before = self._states.get(st.plan.group_id) == GroupStatus.DONE
        if not st.deletes_started or st.plan.action not in _VIEW_MOVES or done_before:
            return
        if not _look_due(st.newcomers_at, self.ctx.clock(), deletes_started=False):
            return
        try:
            self._check_no_writer(st, _listings(self.ctx.clients), last=True)
        except QbhookError as e:
            self._refuse(st, f"after the deletes: {e}", e)

    def _transients_ended(self, st: _GroupRun) -> tuple[str, str] | None:
        """The writer found (``_live_writer``) on the clients' listings once no torrent that may
        write at a destination of the group is checking or moving, or the budget of a move's wait
        (``timing.budget``) ran out, whichever comes first: such a torrent is judged by how its
        check or move ends, never left out. One there is most often cross-seed injecting onto the
        group's new place, which checks what it found: at 100 % it writes nothing; under it, it
        would download into the group's files, its only copy once the old links go (R91). Refused on
        sight, the group rolled back hours of copies for a state that ends by itself (R88). The
        budget is a move's of the group's payload: such a torrent checks about that much (R93: a
        fixed 300 s cut a large check short and refused it). Only a torrent listed near a
        destination is seen: qBittorrent lists a moving torrent at its old save path, so one moving
        onto a destination is not (named as left)."""
        tm, clock = self.timing, self.ctx.clock
        deadline, delay = clock() + tm.budget(st.plan.payload_bytes or 0), tm.poll_initial_s
        while True:
            listed = _listings(self.ctx.clients)
            late = clock() >= deadline
            look = self._live_writer(st.plan, listed, settled_too=not late)
            if late or not look.only_transient:
                return look.found  # None: none left that may write there
            self.ctx.sleep(delay)
            delay = min(delay * 1.5, tm.poll_max_s)

    def _live_writer(self, g: GroupPlan, listed: Mapping[str, list], settled_too: bool = True) -> _Writers:
        """(a destination file of ``g``, who) where a torrent of the clients' listings (``listed``,
        by client name) outside the group may write (``converge.live_writers``: the planner's rule,
        ``write_place_blockers``), or None, and whether every torrent that may write there is checking
        or moving. Its destinations are the files it makes and, for a move, the view's files it
        reuses in place (its only copy there once the old links go; a repair deletes nothing, and
        what it finds in place stays what it was). A repair's own are also the torrents the run
        repairs onto the same content at one of its paths, there only and while their repair is
        to come and they are as planned (``_repair_twins``). The one home of the live check: before
        the first make (``_check_write_places``, which counts every writer), before the first
        delete, during the deletes and after them (``_check_no_writer``). A file list a client does
        not give leaves the torrent's folder counting.

        One look gives both verdicts: the first writer (a lazy pass, stopping there), then, only if
        it is checking or moving and ``settled_too``, whether a torrent neither checking nor moving
        writes there too (a pass over those alone: R98, carrying on past every checking cross-seed
        asked each one's list). Each torrent's file list is asked at most once a look, and
        ``skipped_files_known`` read once. It is read every look, never kept for the group's run: a
        sync during the copies may learn of a file skipped since (rTorrent's sizes do not move with
        a priority), which an older read would miss.

        Before the first delete a torrent checking or moving writes nothing while it does, and one
        there then is most often cross-seed injecting onto the group's new place (it checks what it
        found): refused, hours of copies rolled back for a state that ends by itself (R88). Whether
        it then downloads into the group's files is the newcomer check's question, as for any
        torrent that uses them."""
        dsts = [s.dst for s in g.steps if isinstance(s, (Copy, Link, MkEmpty))]
        if g.action != Action.REPAIR:
            dsts += [f.path for s in g.steps if isinstance(s, VerifyView) for f in s.files]  # a reused file too
        pairs = set(zip(g.instances, g.torrents, strict=False)) if g.instances else None
        # once a look: the twins' check and the second pass may meet a torrent the first asked
        files_of = _FilesAsked({c.name: c for c in _every_client(self.ctx.clients)})
        others = [
            t
            for got in listed.values()
            for t in got
            if ((t.instance, t.hash) not in pairs if pairs is not None else t.hash not in g.torrents)
        ]
        known, twins = skipped_files_known(self.catalog.conn), self._repair_twins(g, others, files_of)
        first = next(_writers(others, dsts, twins, known, files_of), None)
        if first is None or not (first[2].is_checking or first[2].is_moving) or not settled_too:
            return _Writers(first and first[:2], only_transient=False)
        settled = [t for t in others if not (t.is_checking or t.is_moving)]
        other = next(_writers(settled, dsts, twins, known, files_of), None)
        return _Writers(first[:2], only_transient=other is None)

    def _repair_twins(self, g: GroupPlan, others: list, files_of: _FilesAsked) -> dict[tuple[str, str], set[str]]:
        """(client, hash) -> the paths of repair ``g``'s view where a torrent of ``others`` (listed
        live) is ``g``'s own, as a move group's cross-seeds are (``_live_writer``): a cross-seed lost
        with it at the same save path, whose own repair group in the running plan verifies the same
        content (size, BLAKE3) there and puts the same file there. Each is "not settled"
        (missingFiles, 0 %) at the other's paths, and taken for strangers the two repairs refused
        each other every run; its pieces there hash to that content.

        Only while that is still so, read now, not from the plan (R99): its group has not ended in
        this run (``_states``: one that failed left it stopped under 100 %, on these very files; one
        done left it settled, judged as any torrent), it writes nothing (``QUIET_STATES``, which
        its own repair needs too), and its file list as its client gives it now (``files_of``,
        asked once a look) has a wanted file of the planned size at the path (a file renamed
        since onto it is another). Where any of that fails, its content differs, at a file it
        skips (in no view), or left out of the run (``qbhook repair HASH``), it still counts.
        Empty for a move."""
        if g.action != Action.REPAIR:
            return {}
        if self._repair_views is None:
            self._repair_views = _repair_views(self._groups)
        views = self._repair_views
        planned: dict[tuple[str, str], dict[str, int]] = {}  # who -> {path: the size its view has there}
        for path, me, mine in views.of.get(g.group_id, ()):  # g is a group of the running plan
            for who, v in views.at[path].items():
                same = who != me and (v.size, v.blake3) == (mine.size, mine.blake3)
                if same and self._states.get(v.group_id) not in _ENDED:
                    planned.setdefault(who, {})[path] = v.size
        out: dict[tuple[str, str], set[str]] = {}
        for t in others:
            want = planned.get((t.instance, t.hash))
            if not want or t.state not in QUIET_STATES or not t.save_path:
                continue
            now = {_norm(os.path.join(t.save_path, f.name)): f for f in files_of.listed(t) or ()}
            same = {p for p, size in want.items() if (f := now.get(p)) is not None and f.size == size and f.priority}
            if same:
                out[(t.instance, t.hash)] = same
        return out

    def _check_room(self, st: _GroupRun, mine: list[tuple[int, Step, StepRow | None]]) -> None:
        """A group not started yet (none of its steps journaled) copies only if all its copies fit,
        now, on the filesystem of each seeding root they go below (read through its verified
        descriptor, ``space.space_at``): else it fails here, having written nothing, instead of
        filling the pool and rolling back part-way (R11 #4: the plan's figure is the snapshot's,
        and other writers, qBittorrent downloading, spend the same space). ``fsops`` still checks
        each file as it copies. A resumed group is left to that: the staged part of a copy its
        crash left would count against it, and only that copy cleans it up. The copies must leave
        ``policy.min_free`` free (``space.fits``), as the planner asked of the snapshot's figures."""
        if any(row is not None for _q, _s, row in mine):
            return
        need: dict = {}
        for _q, s, _r in mine:
            if isinstance(s, Copy) and s.size:
                root = next((r for r in self.ctx.seeding_roots if is_within(s.dst, r.path)), None)
                if root is not None:  # below no seeding root: the copy refuses it, journaled
                    need[root] = need.get(root, 0) + s.size
        # Summed per filesystem, not per root: two seeding roots on one dataset (movies/, tv/)
        # spend one free space, and each checked alone passed while together they did not fit.
        # The first root's reading of a filesystem is its free space.
        on_fs: dict[int, list] = {}  # st_dev -> [bytes to copy, Space, root paths]
        reason = None
        for root, n in need.items():
            try:
                space, fst = space_at(root.path, root.pool)
            except (OSError, FolderRefused) as e:
                reason = f"not started: the free space of {root.path} cannot be read ({e})"
                break
            fs = on_fs.setdefault(fst.st_dev, [0, space, []])
            fs[0] += n
            fs[2].append(root.path)
        reserve = self.ctx.cfg.policy.min_free
        for n, space, paths in on_fs.values() if reason is None else ():
            if not fits(n, space.avail, size=space.size, reserve=reserve):
                onto = f"{human_bytes(n)} to copy onto {' and '.join(paths)}"
                reason = (
                    f"not started: {onto}, {human_bytes(space.avail)} free"
                    if n > space.avail
                    else f"not started, waits for room: {onto} "
                    + leaves(n, space.avail, size=space.size, reserve=reserve)
                )
                break
        if reason is not None:
            self._refuse(st, reason)

    def _check_atm_off(self, st: _GroupRun, mine: list[tuple[int, Step, StepRow | None]]) -> None:
        """A group not started yet turns ATM off for a relocated or repaired torrent only where that
        moves nothing (clients/port.py ``AtmGuard``): qBittorrent gives it its category's path and
        moves it there in Overwrite mode, into hardlinked files, unless its data is already there
        (a category move that failed earlier left it elsewhere). Refused here, the group has done
        nothing; the client's own guard refuses the call itself too, for a resumed group."""
        if any(row is not None for _q, _s, row in mine):
            return
        for _q, s, _r in mine:
            if not isinstance(s, (Relocate, Repair)):
                continue
            ask = getattr(self._client(s.instance), "atm_off_refusal", None)
            try:
                why = ask(s.torrent) if ask is not None else None
            except QbhookError as e:
                st.passing = _passing(e)
                why = f"cannot tell whether turning ATM off for {s.torrent} would move it ({e})"
            if why is not None:
                self._refuse(st, f"not started: {why}")

    def _check_state_lag(self, st: _GroupRun, mine: list[tuple[int, Step, StepRow | None]]) -> None:
        """A group not started yet that relocates or repairs reads each such client's API lag
        (``_recheck_lag``) before it acts: a refresh interval the client refuses to vouch for
        (qBittorrent's, negative or above an hour) fails it here, having done nothing, rather
        than in the middle of a wait, where its rollback would meet the same refusal."""
        if any(row is not None for _q, _s, row in mine):
            return
        names = dict.fromkeys(s.instance for _q, s, _r in mine if isinstance(s, (Relocate, Repair)))
        for name in names:
            try:
                _recheck_lag(self._client(name))
            except QbhookError as e:
                self._refuse(st, f"not started: {e}", e)

    def _run_step(self, st: _GroupRun, seq: int, step: Step, row: StepRow | None) -> None:
        gid = st.plan.group_id
        self._hook("before", gid, seq, step)
        prepare_error = None
        try:
            h = _handler(step)
            # Read-only, so it may precede the intent; the intent then records it.
            step = h.prepare(self, st, step, row)
        except (QbhookError, OSError) as e:
            prepare_error = e
        step_id = self.journal.intend(st.run_id, seq, gid, step)
        self._hook("after_intend", gid, seq, step)
        try:
            if prepare_error is not None:
                raise prepare_error
            again = row is not None and row.status == StepStatus.INTENDED
            result = h.act(self, st, step, _At(seq, step_id, again))
        except (QbhookError, OSError) as e:
            self._refuse(st, f"{step.kind} failed: {e}", e, step_id=step_id)
        except Exception as e:  # a bug must still leave the group safe: no pause, the row closed, the trace logged
            reason = f"{step.kind} failed with an internal error: {type(e).__name__}: {e}"
            self.log.error("group %s: %s\n%s", gid, reason, traceback.format_exc())
            self.journal.failed(step_id, reason)
            self._fail(st, reason)
            raise _Failure(reason) from e
        self._hook("after_act", gid, seq, step)
        self.journal.done(step_id, result)
        for r in st.relocs:
            if r.step_id == step_id:
                r.status = StepStatus.DONE

    def _hook(self, point: str, gid: str, seq: int, step: Step) -> None:
        if self.ctx.hook is not None:
            self.ctx.hook(point, gid, seq, step)

    # ------------------------------------------------------------------ converge batches

    def _converge_batch(self, run_id: int, b: _Batch, rows: dict[int, StepRow]) -> list[GroupOutcome]:
        """Carry out consecutive converge groups of one pool together (see ``_Batch``).

        With the cyclic collector paused (``decide.heap``): a batch is at most
        CONVERGE_BATCH_STEPS relinks, waits on no torrent client, and keeps nearly all it
        allocates (each step's result and lstat, its journal rows) to its end, so the passes
        that started inside it freed nothing (docs/benchmarks.md section 9)."""
        with collector_paused():
            return self._converge_batch_paused(run_id, b, rows)

    def _converge_batch_paused(self, run_id: int, b: _Batch, rows: dict[int, StepRow]) -> list[GroupOutcome]:
        outcomes = {g.group_id: GroupOutcome(g.group_id, g.action, GroupStatus.DONE) for g, _n in b.groups}
        try:
            lock = converge_lock(
                self.cfg, b.pool, self.timing.group_lock_wait, sleep=self.ctx.sleep, clock=self.ctx.clock
            ).acquire()
        except QbhookError as e:
            for g, numbered in b.groups:
                o = outcomes[g.group_id]
                o.status, o.reason = GroupStatus.BUSY, str(e)
                o.needs_attention = any(seq in rows for seq, _s in numbered)
            return list(outcomes.values())
        try:
            todo, closed = self._batch_todo(run_id, b, rows, outcomes)
            live = [g.group_id for g, _n in b.groups if g.group_id not in closed]
            todo, refused, shut_out, held = self._library_refused(todo, rows)
            hook = self.ctx.hook
            if hook is not None:  # test hooks: unset (every real run), not even a call per step
                for g, seq, step in todo:
                    hook("before", g.group_id, seq, step)
            ids = self.journal.intend_batch(run_id, [(seq, g.group_id, s) for g, seq, s in todo], live)
            # Read before this attempt records its relinks in the catalog (resume only: a fresh run has no rows).
            victims = self._victims(todo + [(g, q, s) for g, q, s, _st in held], rows) if rows else {}
            self._record_held(held)
            closes, dead, failed = self._batch_act(todo, ids, outcomes) if todo else ([], {}, None)
            closes += shut_out
            dead = {gid: "; ".join(r for r in (refused.get(gid), dead.get(gid)) if r) for gid in {*refused, *dead}}
            if failed is not None:
                # A forked part failed: what the processes that answered did is closed (synced, and
                # recorded in the catalog); only the failed part's steps stay intended, its groups running.
                shut = {c[0] for c in closes}
                left = {g.group_id for g, seq, _s in todo if ids[seq] not in shut}
                todo = [t for t in todo if ids[t[1]] in shut]
                live = [gid for gid in live if gid not in left]
            if victims:
                ids |= {seq: rows[seq].id for _g, seq, _s, _st in held}
                self._count_resumed(
                    b, rows, todo + [(g, q, s) for g, q, s, _st in held], ids, closes, victims, outcomes
                )
            ends = []
            for gid in live:
                reason = dead.get(gid)
                o = outcomes[gid]
                if reason is None:
                    ends.append((gid, run_id, GroupStatus.DONE, None))
                else:
                    o.status, o.reason = GroupStatus.FAILED, reason
                    ends.append((gid, run_id, GroupStatus.FAILED, reason))
            self.journal.close_batch(closes, ends)
            if failed is not None:
                raise failed
            self.log.info("converge batch on %s: %d group(s), %d step(s)", b.pool, len(b.groups), len(todo))
        finally:
            lock.release()
        return list(outcomes.values())

    def _library_refused(
        self, todo: list[tuple[GroupPlan, int, Converge]], rows: dict[int, StepRow]
    ) -> tuple[list[tuple[GroupPlan, int, Converge]], dict[str, str], list, list]:
        """``todo`` without the steps whose victim a library symlink reaches now, walked once for the
        batch before anything is journaled (``_library_walk``): the plan's walk may be as old as a
        sweep, or a saved plan's. Returns the steps left, each refused group's reason (one line
        naming the symlink: the group fails, its other victims relinked), the closes of the steps
        an earlier attempt journaled and this walk keeps out (resume), and those of them that
        attempt had already relinked (group, seq, step, the name's lstat now). A walk that cannot
        finish refuses every step (a library not seen is a library's file changed), as a demote's
        deletes refuse.

        A step an earlier attempt journaled may have been relinked by it before its kill (a batch
        closes its steps at its end): one whose name holds the kept inode now (``_kept_stat``) has
        nothing left to refuse. It is closed done ("already"), recorded in the catalog and counted
        as a resumed relink is (``_record_held``, ``_count_resumed``), and refuses nothing of its
        group; it is not handed to the relinker, which would relink the name were it the victim
        again (R94, R96)."""
        if not todo:
            return todo, {}, [], []
        _at, found = self._library_walk(False)
        if isinstance(found, LibraryLinksUnseen):
            why = f"{found.message}, so whether a library uses the files it replaces is unseen"
            used = {(s.fsid, s.ino): why for _g, _q, s in todo}
        else:
            with self.ctx.reader() as reader:
                used = _library_victims(found, todo, reader)
            if not used:
                return todo, {}, [], []
        refused: dict[str, str] = {}
        left, shut_out, held = [], [], []
        with self.ctx.reader() as reader:
            for g, seq, s in todo:
                why = used.get((s.fsid, s.ino))
                if why is None:
                    left.append((g, seq, s))
                    continue
                # Intended by an attempt that never closed it: relinked by it, or not.
                st = _kept_stat(reader, s) if seq in rows else None
                if st is not None:
                    shut_out.append((rows[seq].id, StepStatus.DONE, {"status": "already", "bytes_freed": 0}, None))
                    held.append((g, seq, s, st))
                    continue
                refused.setdefault(g.group_id, f"{s.kind} refused: {why}")
                if seq in rows:
                    shut_out.append((rows[seq].id, StepStatus.FAILED, None, why))
        if isinstance(found, LibraryLinksUnseen):
            more = {g.group_id for g, _q, _s, _st in held}
            refused = {gid: f"{r}; nothing {'more ' if gid in more else ''}relinked" for gid, r in refused.items()}
        for gid, why in refused.items():
            self.log.warning("group %s: %s", gid, why)
        return left, refused, shut_out, held

    def _record_held(self, held: list[tuple[GroupPlan, int, Converge, os.stat_result]]) -> None:
        """The names an earlier attempt relinked and this one keeps out of its batch
        (``_library_refused``) in the catalog, each on its kept inode by the lstat that showed it,
        as a relink's are (``_record``): left out, the catalog named the freed victim there and the
        next plan relinked them again. No hash is carried: the relink changed the kept inode's
        ctime, and what it was read under is not known here (it is read again when needed)."""
        if held:
            self.catalog.record_paths(
                [(s.path, g.source_pool or self._pool_name(s.path, None)) for g, _q, s, _st in held],
                stats={s.path: st for _g, _q, s, st in held},
            )

    def _batch_todo(
        self, run_id: int, b: _Batch, rows: dict[int, StepRow], outcomes: dict[str, GroupOutcome]
    ) -> tuple[list[tuple[GroupPlan, int, Converge]], set[str]]:
        """The batch's steps still to do; a resumed attempt's done steps are counted, failed groups closed."""
        if not rows:  # a fresh run (not a resume): every step, none journaled yet
            return [(g, seq, step) for g, numbered in b.groups for seq, step in numbered], set()
        todo = []
        closed = set()
        for g, numbered in b.groups:
            mine = [(seq, step, rows.get(seq)) for seq, step in numbered]
            failed = next((r for _q, _s, r in mine if r is not None and r.status == StepStatus.FAILED), None)
            if failed is not None:
                # It had failed when the run stopped: a convergence has nothing to undo, only the verdict remains.
                reason = failed.error or "failed earlier in this run"
                o = outcomes[g.group_id]
                o.status, o.reason = GroupStatus.FAILED, reason
                self.journal.set_group(g.group_id, run_id, GroupStatus.FAILED, reason)
                closed.add(g.group_id)
                continue
            for seq, step, row in mine:
                if row is not None and row.status == StepStatus.DONE:
                    _replay_converge(_GroupRun(run_id, g, outcomes[g.group_id]), seq, step, row)
                else:
                    todo.append((g, seq, step))
        return todo, closed

    def _batch_act(
        self, todo: list[tuple[GroupPlan, int, Converge]], ids: dict[int, int], outcomes: dict[str, GroupOutcome]
    ) -> tuple[list, dict[str, str], ChildFailed | None]:
        """Relink each step (every check per file, ``fsops.Relinker``); the renames are synced and
        the relinked paths recorded in the catalog (``_record``) before returning.

        Returns the journal closes (step id, status, result, error), the reason of each group
        that failed (its later steps are not tried), and a forked part's failure (``_forked``:
        its steps have no close). A large batch is split between this process and forked
        children (``_forked``).
        """
        parts = (
            _parts(todo, FORK_PARTS) if len(todo) >= FORK_MIN_STEPS and self.ctx.hook is None and may_fork() else None
        )
        if parts is None:
            closes, done_paths, after, dead, freed = self._one_core(todo, ids)
            self._record(done_paths, after)
            failed = None
        else:
            closes, dead, freed, failed = self._forked(parts, ids)
        for gid, n in freed.items():
            outcomes[gid].bytes_freed += n
        return closes, dead, failed

    def _victims(
        self, todo: list[tuple[GroupPlan, int, Converge]], rows: dict[int, StepRow]
    ) -> dict[int, _Victim | None]:
        """For each step of ``todo`` an attempt that never closed it journaled (its row intended:
        killed, or its batch's process failed), the inode its relink replaces, as the catalog knew
        it before this attempt records anything (``_resumed_victim``)."""
        return {seq: _victim_known(self.catalog, s) for _g, seq, s in todo if seq in rows}

    def _count_resumed(
        self,
        b: _Batch,
        rows: dict[int, StepRow],
        todo: list[tuple[GroupPlan, int, Converge]],
        ids: dict[int, int],
        closes: list,
        victims: dict[int, _Victim | None],
        outcomes: dict[str, GroupOutcome],
    ) -> None:
        """A resumed step that answers ``already``: the killed attempt relinked it, and freed its
        victim's bytes if that was the victim's last link; counted when the evidence proves it
        (``_resumed_victim``), else its group's figure is marked a lower bound. Written into the
        step's result, which the batch's closing commit journals: a later resume replays it."""
        by_sid = {c[0]: c for c in closes}
        # Each victim inode frees its bytes once: one another step of the batch already counted is not counted again.
        counted = {
            (s.fsid, s.ino)
            for _g, numbered in b.groups
            for seq, s in numbered
            if seq in rows and rows[seq].status == StepStatus.DONE and (rows[seq].result or {}).get("bytes_freed", 0)
        }
        counted |= {(s.fsid, s.ino) for _g, seq, s in todo if (by_sid[ids[seq]][2] or {}).get("bytes_freed", 0)}
        with self.ctx.reader() as reader:
            for g, seq, s in todo:
                _sid, status, res, _err = by_sid[ids[seq]]
                if seq not in victims or status != StepStatus.DONE or res.get("status") != "already":
                    continue
                gone = _resumed_victim(reader, victims[seq])
                if gone is None:
                    res["bytes_freed_unknown"] = True
                    outcomes[g.group_id].bytes_freed_at_least = True
                elif gone and (s.fsid, s.ino) not in counted:
                    counted.add((s.fsid, s.ino))
                    res["bytes_freed"] = s.size
                    outcomes[g.group_id].bytes_freed += s.size

    def _record(self, done_paths: list[tuple[str, str]], after: dict) -> None:
        """The relinked (path, pool)s in the catalog, from the lstat taken right after each rename:
        each path now names its kept inode, whose ctime our link changed, so its hash is carried over
        if it was valid for the stat the relink checked the content under and the relink held the
        inode open until that lstat (``fsops.Relinked``'s ``carry``)."""
        self.catalog.record_paths(
            done_paths,
            stats={p: r.after for p, r in after.items()},
            carry={p: r.carry for p, r in after.items() if r.carry is not None},
        )

    def _relinker(self, todo: list[tuple[GroupPlan, int, Converge]]) -> fsops.Relinker:
        rl = fsops.Relinker(self.seeding_roots, self.roots, self.catalog, client_groups=self._client_groups)
        try:
            rl.prefetch((s.path, s.ino, s.keep.path, s.keep.ino) for _g, _q, s in todo)
        except BaseException:
            rl.close()  # its folders, opened so far
            raise
        return rl

    def _one_core(self, todo: list[tuple[GroupPlan, int, Converge]], ids: dict[int, int]) -> tuple:
        with self._relinker(todo) as rl:
            return self._act(todo, ids, rl)

    def _forked(self, parts: list[list], ids: dict[int, int]) -> tuple:
        """``_act`` of the first part here and of each other part in a forked child (``qbhook.forked``), merged.

        The parts never share a group (a failed step stops the rest of its group) nor a kept
        inode (each relink onto it moves its ctime, which another process would see as a
        change and read the file again to re-check): ``_parts``. A child never touches
        SQLite: its part's catalog rows are read here right before its fork, and the hashes it
        computes come back to be written here (``Relinker.frozen``). A child that fails (killed,
        an error) is returned, not raised: the closes and catalog rows of this process's part and
        of the children that answered (each synced before answering) are still written, so their
        steps are closed as done, and only the failed part's steps read ``intended``, as a crash
        leaves them: the catalog still names their victims, so ``qbhook resume`` re-checks them and
        counts the bytes their relinks freed (``_count_resumed``); ``ChildFailed`` then stops the
        run. A fork that fails (no memory, a pids limit) leaves its part to this process. Every
        child is reaped on every way out."""
        kids: list[Forked] = []
        here = list(parts[0])
        try:
            for part in parts[1:]:
                # Each child forked as soon as its rows are read: it relinks while the next part's
                # rows are read (a child writes no catalog row, and no file of another part).
                theirs = self._relinker(part).frozen()
                try:
                    kids.append(Forked(lambda p=part, rl=theirs: _answer(*self._act(p, ids, rl), rl.catalog.stored)))
                except OSError as e:
                    self.log.warning("converge batch: no other process (%s); relinking its part on this one", e)
                    here += part
                finally:
                    theirs.close()  # this process's copy: the child has its own
        except BaseException:
            # The children forked so far end their parts (or are killed on a second Ctrl-C), as
            # when this process's own part fails below; the error in hand is the news.
            _collect(kids, self.log)
            raise
        here.sort(key=lambda t: t[1])
        self.log.info("converge batch in %d process(es): %d step(s) here", len(kids) + 1, len(here))
        try:
            closes, done_paths, after, dead, freed = self._one_core(here, ids)
            # Recorded while the children still relink (they finish last: this part is the lighter).
            self._record(done_paths, after)
        except BaseException:
            # Their parts end (or they are killed on a second Ctrl-C); the error in hand is the news.
            _collect(kids, self.log)
            raise
        answers, failed = _collect(kids, self.log)
        if failed is not None:
            # Named now: an error while the other parts are recorded below would replace it.
            self.log.warning("converge batch: %s", failed.message)
        done_paths, after = [], {}
        for *other, stored in answers:
            for inode_id, digest, st in stored:
                self.catalog.store_hash(inode_id, digest, st)
            closes += other[0]
            done_paths += other[1]
            after.update(fsops.relinked_from_child(other[2]))
            dead.update(other[3])
            for gid, n in other[4].items():
                freed[gid] = freed.get(gid, 0) + n
        self._record(done_paths, after)
        return closes, dead, freed, failed

    def _act(self, todo: list[tuple[GroupPlan, int, Converge]], ids: dict[int, int], rl: fsops.Relinker) -> tuple:
        """The relinks of ``todo`` through ``rl`` (prefetched for them), synced: the journal closes,
        the (path, pool)s relinked and their lstat after the rename (``_record``), the reason of
        each group that failed, and the bytes each group freed."""
        closes: list[tuple[int, StepStatus, dict | None, str | None]] = []
        done_paths: list[tuple[str, str]] = []
        dead: dict[str, str] = {}
        freed: dict[str, int] = {}
        hook = self.ctx.hook  # test hooks: when unset (every real run), no call and no closure per step
        for g, seq, s in todo:
            gid, sid = g.group_id, ids[seq]
            if gid in dead:
                closes.append((sid, StepStatus.FAILED, None, "not tried: an earlier step of its group failed"))
                continue
            if hook is not None:
                hook("after_intend", gid, seq, s)
            try:
                res = self._relink(rl, gid, seq, s, hook)
            except (QbhookError, OSError) as e:
                dead[gid] = f"{s.kind} failed: {e}"
                self.log.warning("group %s: %s", gid, dead[gid])
                closes.append((sid, StepStatus.FAILED, None, str(e)))
                continue
            except Exception as e:  # a bug must still leave the batch journaled
                dead[gid] = f"{s.kind} failed with an internal error: {type(e).__name__}: {e}"
                self.log.error("group %s: %s\n%s", gid, dead[gid], traceback.format_exc())
                closes.append((sid, StepStatus.FAILED, None, dead[gid]))
                continue
            if hook is not None:
                hook("after_act", gid, seq, s)
            closes.append((sid, StepStatus.DONE, res, None))
            # A convergence never leaves its pool: the plan's source pool names it (cfg.pool_of costs 0.5 ms).
            done_paths.append((s.path, g.source_pool or self._pool_name(s.path, None)))
            freed[gid] = freed.get(gid, 0) + res.get("bytes_freed", 0)
        rl.sync()  # before the journal says done: a rename lost to a power cut is redone by resume
        return closes, done_paths, rl.after, dead, freed

    def _relink(self, rl: fsops.Relinker, gid: str, seq: int, s: Converge, hook: Hook | None) -> dict:
        k = s.keep
        target = fsops.RelinkTarget(
            fsid=s.fsid,
            ino=s.ino,
            size=s.size,
            blake3_hex=s.blake3,
            keep_fsid=k.fsid,
            keep_ino=k.ino,
            mtime_ns=s.mtime_ns,
        )
        return rl.relink(
            s.path,
            k.path,
            target,
            on_temp_link=None if hook is None else lambda: hook("mid_act", gid, seq, s),
        )

    # ------------------------------------------------------------------ failure

    def _fail(self, st: _GroupRun, reason: str) -> None:
        """Close a failed group: undo its relocations unless deletes have begun."""
        self._close_failed(st, reason)
        self._report_left_stopped(st)

    def _refuse(
        self, st: _GroupRun, reason: str, e: QbhookError | OSError | None = None, step_id: int | None = None
    ) -> NoReturn:
        """The one end of a group a check or a step stops: ``reason`` logged, whether a later look
        may pass noted from ``e`` (``_passing``; ``_NotSettled``: only torrents checking or moving,
        a pause that may be stuck), the group closed (``_fail``), and ``_Failure`` raised for
        ``_group`` to stop at. Without ``e`` (a refusal no error raised) the passing flag stays as
        the caller set it. ``step_id``: the failed step's row, closed failed, except when the group
        pauses after deletes began: then it stays intended, as a crash leaves it, and resume carries
        it out again (a failed row would only close the group); a pause ``_fail`` takes to be stuck
        (``_stop_after_deletes`` clears ``passing``) closes it after all."""
        self.log.warning("group %s: %s", st.plan.group_id, reason)
        if e is not None:
            st.passing, st.settling = _passing(e), isinstance(e, _NotSettled)
        if step_id is not None and not (st.deletes_started and st.passing):
            self.journal.failed(step_id, str(e))
        self._fail(st, reason)
        if step_id is not None and st.deletes_started and st.settling and not st.passing:
            self.journal.failed(step_id, str(e))
        raise _Failure(reason) from e

    def _close_failed(self, st: _GroupRun, reason: str) -> None:
        o = st.outcome
        o.status, o.reason = GroupStatus.FAILED, reason
        if st.plan.action == Action.REPAIR:
            self._close_failed_repair(st, reason)
            return
        if st.view_changed:
            # Something wrote into a view file (maybe a library file): no torrent may run on it.
            self._stop_where_it_is(st, reason)
            return
        if st.plan.action == Action.CONVERGE:
            # Nothing to undo: every relink is complete on its own (each name always held the same bytes).
            self.journal.set_group(st.plan.group_id, st.run_id, GroupStatus.FAILED, o.reason)
            return
        if st.deletes_started:
            self._stop_after_deletes(st, reason)
            return
        problems = []
        for r in reversed(st.relocs):
            if r.status == StepStatus.UNDONE:
                continue
            try:
                result = self._undo_relocation(st, r)
            except (QbhookError, OSError) as e:
                problems.append(f"{r.step.torrent}: {e}")
                # Only links it still keeps hidden: a failed undo may have put them back first
                # (a move back ending under 100 %), and those must not block a removed torrent's.
                roots = self.ctx.seeding_roots
                hidden = self.journal.hidden(r.step_id) or ()
                st.held_back.update(p for p in hidden if fsops.still_hidden(p, roots=roots, run=st.run_id))
                continue
            if r.status == StepStatus.DONE:
                self.journal.undone(r.step_id, result)
                r.status = StepStatus.UNDONE
        o.torrents_relocated = sum(1 for r in st.relocs if r.status == StepStatus.DONE)
        if st.notes:
            reason = o.reason = f"{reason}; {'; '.join(st.notes)}"
        if problems:
            o.needs_attention = True
            o.reason = f"{reason}; ROLLBACK INCOMPLETE ({'; '.join(problems)}): run qbhook resume"
            self.journal.set_group(st.plan.group_id, st.run_id, GroupStatus.FAILED, o.reason)
        else:
            o.status = GroupStatus.ROLLED_BACK
            # The views first: the group's end state is written once all of them are journaled.
            self._record_leftover_views(st)
            self.journal.set_group(st.plan.group_id, st.run_id, GroupStatus.ROLLED_BACK, reason)

    def _close_failed_repair(self, st: _GroupRun, reason: str) -> None:
        """A failed repair: its torrent stopped, then the links and empty files it made removed.

        Left in place, the torrent (incomplete, no longer missingFiles, so ``qbhook repair``
        refuses it) sits on the library's inodes: one start and qBittorrent downloads the failing
        pieces into them. Without them it misses its files again, and a later repair can retry.
        Stopped first (a torrent running on them would write into them as they go); the files are
        removed even when the stop fails: a name less only shrinks what it could write into.
        Then, as the move executor's rollback does (``_move_back``): its save path and settings
        back (``_repair_move_back``), its state back where that is safe, and where not, one
        ``NOT_AS_FOUND`` clause, last in the reason, for the run's output, the journal and
        ``qbhook status`` (``_repair_state_back``).
        Redone whole by a resumed run (the failed step closes the group again), each removed
        file's step marked undone so it is not looked at twice (``_undo_repair_views``).

        The run's journal is read once, here, for all of it: each read is every row of the run (a
        lost disk's is thousands of repair groups). What the close writes meanwhile is nothing
        those rows are read for (undone rows are ones it already picked; the move-back note is
        never read back here), but for the leftovers it records, added to ``recorded`` as it goes."""
        notes: list[str] = []
        rows = self.journal.steps(st.run_id)
        made, unrecorded = self._repair_made(st, rows)
        recorded = _recorded_leftovers(st, rows)
        # Only those with something at their path now: one whose act never ran left nothing under it.
        unrecorded = [r for r in unrecorded if self._may_exist(str(r.args.get("dst")))]
        stopped_running = self._stop_repaired(st, notes) if made or unrecorded else False
        removed, kept = self._undo_repair_views(st, made, recorded)
        more, also_kept = self._undo_unrecorded(st, unrecorded, recorded)
        removed, kept = removed + more, kept + also_kept
        left = None
        if not st.view_changed:
            stuck = self._repair_move_back(st, kept, notes, rows)
            left = self._repair_state_back(st, stuck, stopped_running, rows)
        if removed:
            notes.append(f"the {removed} file(s) it linked or made were removed")
        if kept:
            notes.append(
                f"{len(kept)} kept (not provably the file it made any more; recorded as leftover views): "
                f"{', '.join(kept[:3])}" + (f" (+{len(kept) - 3} more)" if len(kept) > 3 else "")
            )
        if left is not None:
            notes.append(left)  # last: ``status`` shows the reason from it on
        if notes:
            reason = f"{reason}; {'; '.join(notes)}"
        if st.view_changed:
            # Something wrote into a view file (maybe a library file): a person looks, alerted.
            self._stop_where_it_is(st, reason)
            return
        st.outcome.reason = reason
        self.journal.set_group(st.plan.group_id, st.run_id, GroupStatus.FAILED, reason)
        if left is not None:
            _notify.emit("left_stopped", f"group {st.plan.group_id}: {left}", "warning")

    def _stop_repaired(self, st: _GroupRun, notes: list[str]) -> bool:
        """A failed repair's torrent stopped before the files it made under it go (not one a
        person started with nothing of ours under it). True: it was seen running, not missing its
        files (a person started it during the repair, or the repair's own Repair step did in an
        earlier attempt: ``_repair_state_back`` says which), so this stop is one it was not found in."""
        ran = False
        for s in st.plan.steps:
            if isinstance(s, Repair):
                try:
                    c = self._client(s.instance)
                    t = c.torrent(s.torrent)
                    if not t.is_stopped or t.is_paused:
                        ran = ran or (t.is_running and not t.is_missing_files)
                        c.stop(s.torrent)
                except QbhookError as e:
                    notes.append(f"could not stop {s.torrent}: {e}")
        return ran

    def _repair_state_back(
        self, st: _GroupRun, stuck: str | None, stopped_running: bool, rows: list[StepRow]
    ) -> str | None:
        """A failed repair's torrent in the state it was found in (``_found``, else the Repair
        step's look), or one ``NOT_AS_FOUND`` clause saying why not and what a person does.

        Given back only where its client's picture of it is the one found and the found state is
        known: an rTorrent item found paused, stopped by the repair before any recheck, is paused
        again (``_as_found``). Never started: a torrent the repair may have stopped is one
        qBittorrent showed missingFiles, which it shows whether the torrent ran or not, and a
        start of one a person had stopped is qBittorrent's retry (a reload that may download the
        whole torrent into its save path), while stopped or running a torrent missing its files
        seeds nothing: left stopped costs nothing until a person reads the clause. After a recheck
        its progress is that check's, over files now gone again: never run, never paused again
        (lesson 3: started only after a recheck at 100 %; a paused rTorrent item resumes when a
        check ends). A save path that could not be put back (``stuck``) is said the same way.
        ``rows``: the run's journal, as the close read it."""
        s, row = _repair_row(st, rows)
        if s is None:
            return None
        found = _repair_found(st, rows) or ((row.args.get("_observed") or None) if row is not None else None)
        try:
            c = self._client(s.instance)
            t = c.torrent(s.torrent)
        except QbhookError as e:
            if stuck is None and not stopped_running and not (found and (found.get("paused") or _missing(found))):
                return None  # nothing of ours it was not found in
            return f"{NOT_AS_FOUND}: torrent {s.torrent} could not be read ({e.message}): {stuck or 'maybe stopped'}"
        at = f"{NOT_AS_FOUND}: torrent {s.torrent} is {t.state} at {t.save_path}"
        if stuck is not None:
            return f"{at}: {stuck}; set its location to {s.from_path} yourself"
        if stopped_running and _repair_started_it(row):
            # Its own start, on files it then took back: a start now downloads into the save path.
            return (
                f"{at}: started by this repair after its recheck, stopped again as the group failed "
                "and the files it made under it were taken back: do not start it, run qbhook repair again"
            )
        if stopped_running:
            return f"{at}: started during the repair, stopped with files of ours under it; start it yourself"
        if row is not None and row.args.get("_stopped_by_us"):
            # Its own start, stopped by qbhook itself before it made the files again: no person's run.
            return (
                f"{at}: started by this repair after its recheck, stopped by it again when its files were "
                "gone, then the group failed: do not start it, run qbhook repair again"
            )
        if found is None or found.get("state") not in QUIET_STATES:
            return None  # never looked at, so never stopped, by this repair
        rechecked = row is not None and bool(row.args.get("_rechecked"))
        if _missing(found):
            return (
                f"{at}: stopped by the repair; qBittorrent showed it missingFiles, which does not say "
                "whether it ran: start it yourself if it did"
            )
        if not found.get("paused"):
            return None  # stopped when found: a person's stop, kept
        if not rechecked and t.is_stopped and not t.is_paused:
            try:
                _as_found(c, s.torrent, {"paused": True}, t, was_running=False)
            except QbhookError as e:
                return (
                    f"{at}: paused when found, left stopped: pausing it again failed ({e.message}): pause it yourself"
                )
            return None
        if t.is_paused:
            return None
        return (
            f"{at}: paused when found, left stopped after its recheck ({_progress_of(t)}): pause or start it yourself"
        )

    def _repair_made(self, st: _GroupRun, rows: list[StepRow]) -> tuple[list[StepRow], list[StepRow]]:
        """The journal rows of the files this repair put under its torrent and did not remove yet,
        newest first: a link its own make step made (``linked``), an empty file it created; never a
        file found there (``present``, or ``already``: the same inode was at the path before the
        step, e.g. linked by a cross-seeding torrent's repair group at the same save path, which
        may be seeding on it now). Only rows of this group's own plan steps, and never a path a
        make step of another group of this run targets while that group holds it: done, or begun
        and its own make step there done, having made it (R102: begun alone held paths it never
        linked, for a group that then failed or was busy; R103: nor one whose step found this
        repair's link there, which its own undo then leaves too). One still to run makes its own
        again if it may, one that ended without success left it: kept for them, the files stayed
        under this failed repair's torrent, stopped under 100 %, one start from downloading into a
        library file (R99).

        Second, the rows of its make steps whose intent found the path empty (``dst_before``) and
        whose outcome does not say what they made: killed between the intent and its outcome row,
        the step then failed, was not re-run, or re-ran and found a file there (``already``, an
        empty file ``present``: its own, or another's put there while qbhook was down). What is
        there may be that file: ``_undo_unrecorded`` (which keeps a found one). ``rows``: the run's
        journal (``_close_failed_repair`` reads it once)."""
        ours = {Link.kind: ("linked",), MkEmpty.kind: ("created",)}
        # Every path a make step of another group of this run puts a file at: read only here, when a
        # repair failed, not for every run's plan (a demote's has a link step per file).
        # A begun group's own make, not one that found this repair's link there ("already", R103).
        made_by = {
            (r.group_id, _norm(r.args.get("dst")))
            for r in rows
            if r.kind in ours and r.status == StepStatus.DONE and (r.result or {}).get("status") in ours[r.kind]
        }
        steps = ((g.group_id, step) for g in self._groups for step in g.steps)
        others = {
            _norm(step.dst)
            for seq, (gid, step) in enumerate(steps)
            if seq not in st.seqs
            and isinstance(step, (Link, MkEmpty))
            and (
                self._states.get(gid) == GroupStatus.DONE
                or (self._states.get(gid) == GroupStatus.RUNNING and (gid, _norm(step.dst)) in made_by)
            )
        }
        mine = [
            r
            for r in reversed(rows)
            if r.group_id == st.plan.group_id
            and r.seq in st.seqs
            and r.kind in ours
            and _norm(r.args.get("dst")) not in others
        ]
        made = [r for r in mine if r.status == StepStatus.DONE and (r.result or {}).get("status") in ours[r.kind]]
        unproven = {Link.kind: ("already",), MkEmpty.kind: ("present",)}
        unrecorded = [
            r
            for r in mine
            if r.args.get("_dst_before") == DST_ABSENT
            and (
                r.status in (StepStatus.INTENDED, StepStatus.FAILED)
                or (r.status == StepStatus.DONE and (r.result or {}).get("status") in unproven[r.kind])
            )
        ]
        return made, unrecorded

    def _undo_repair_views(self, st: _GroupRun, made: list[StepRow], recorded: set) -> tuple[int, list[str]]:
        """Remove each file a failed repair put under its torrent (``made``: ``_repair_made``):
        (how many went, the paths kept).

        Never the link's source. Each through ``fsops.remove_leftover_view``, the
        rolled-back groups' own removal: through verified folders, only while the name is still
        the inode the step proved (device, inode, size) and its content lives on at the source
        (a link: only a name goes) or it is empty. A file it refuses (another file at the name,
        the source gone: the view may be its last copy), or cannot reach now, is kept and
        journaled as a leftover view, for ``move.leftovers`` and ``status`` (once: ``recorded``, the
        paths the group's leftover rows name, grows with each). A removed file's step is journaled
        undone; one found gone already counts as removed."""
        if not made:
            return 0, []
        removed, kept = 0, []
        for row in made:
            res = row.result or {}
            dst, src = row.args.get("dst"), row.args.get("src")
            if not isinstance(dst, str) or not all(isinstance(res.get(k), int) for k in ("ino", "size")):
                kept.append(str(dst))  # journaled by an older qbhook: no proof of which inode it made, no record
                continue
            if isinstance(src, str) and _norm(src) == _norm(dst):
                continue  # the source itself: never (the planner links only where nothing was)
            try:
                out = fsops.remove_leftover_view(
                    dst,
                    ino=res["ino"],
                    size=res["size"],
                    dev=res.get("dev"),
                    keep=src if row.kind == Link.kind else None,
                    blake3_hex=row.args.get("blake3") or res.get("blake3"),
                    roots=self.seeding_roots,
                    keep_roots=self.roots,
                    catalog=self.catalog,
                    ctime_ns=res.get("ctime_ns"),
                )
            except (QbhookError, OSError) as e:
                self.log.warning("group %s: kept %s: %s", st.plan.group_id, dst, e)
                kept.append(dst)
                if dst not in recorded:
                    self._record_kept_repair_view(st, row, dst)
                    recorded.add(dst)
                continue
            if out["status"] == "removed":
                self.catalog.forget_path(dst)
            self.journal.undone(row.id, {**res, "undone": out["status"]})
            removed += 1
        return removed, kept

    def _repair_move_back(self, st: _GroupRun, kept: list[str], notes: list[str], rows: list[StepRow]) -> str | None:
        """A failed repair that moved its torrent (``Repair.to_path`` not its ``from_path``) puts it
        back at the save path it had, its files there as missing as before, once the undo took the
        view: left at the view's path it names a folder the repair no longer stands behind, while
        the old one had it at missingFiles anyway, so pointing it back is safe (the move
        executor's rollback, ``_move_back``, does the same). The intent is journaled in the Repair
        step's row first (``Journal.note_move_back``), the outcome after. Not with files kept
        there (qBittorrent would carry them along), nor from a place the plan does not name
        (someone moved it since). Back, or never moved (a failure before or at its setLocation),
        its ATM and download path as found (``_repair_settings_back``: a repair turns them off
        before its setLocation). Returns why it stays where it is, for ``_repair_state_back``'s
        clause; None when it is back or never moved. ``rows``: the run's journal, as the close read it."""
        s, row = _repair_row(st, rows)
        if s is None or row is None:
            return None
        try:
            c = self._client(s.instance)
            t = c.torrent(s.torrent)
            if _norm(s.from_path) != _norm(s.to_path) and _norm(t.save_path) == _norm(s.to_path):
                if kept:
                    return f"its save path stays {s.to_path}: the kept file(s) would move with it to {s.from_path}"
                if not t.is_stopped or t.is_paused:
                    c.stop(s.torrent)  # never an incomplete torrent running, at either place
                self.journal.note_move_back(row.id, {"to": s.from_path})
                self._set_location_waited(c, s, s.from_path, _At(row.seq, row.id))
                self.journal.note_move_back(row.id, {"to": s.from_path, "done": True})
                notes.append(f"its save path is {s.from_path} again")
                t = c.torrent(s.torrent)
            if not kept and _norm(t.save_path) == _norm(s.from_path):
                self._repair_settings_back(st, c, s, row, t, notes)
        except QbhookError as e:
            return f"its save path could not be put back to {s.from_path} (it is at {s.to_path}): {e}"
        return None

    def _repair_settings_back(self, st: _GroupRun, c: ClientPort, s: Repair, row: StepRow, t, notes: list[str]) -> None:
        """A failed repair's torrent, moved back to ``s.from_path``, given the ATM and download path
        its repair turned off, as the Repair step's intent journaled them (``_observe``), the
        demote rollback's way (``_settings_back``). A row an older qbhook journaled has no look:
        nothing to give back. What a client refused goes into ``notes``, the group's reason."""
        obs = row.args.get("_observed")
        if not obs:
            return
        before = len(st.notes)
        self._settings_back(st, c, s.torrent, obs, t, s.from_path)
        notes.extend(st.notes[before:])
        del st.notes[before:]

    def _undo_unrecorded(self, st: _GroupRun, rows: list[StepRow], recorded: set) -> tuple[int, list[str]]:
        """Remove what the make steps of ``rows`` (``_repair_made``'s second list: the path empty at
        their intent, no outcome saying what they made) may have left: (how many went, the paths kept).

        A link goes only from a step with no outcome (intended, or failed before acting), and only
        while it is provably the one its step would have made: a name of the step's source inode,
        same device and inode, both read through verified folders (``fsops.remove_unrecorded_link``);
        the content stays at the source. Anything else there (another inode, the source gone or
        replaced, an empty file, which no inode proves qbhook's) might be another's file, and so is
        the name a resumed step found there (a DONE ``already``): the kill may have come before
        its first act and another linked the same inode there since. Kept, journaled as a leftover
        view with what it is now (for ``move.leftovers``, which removes it only while redundant
        and unused), and named. A row of one removed stays as it is (the group's failure, for a
        resumed run), and a look again finds the path empty."""
        removed, kept = 0, []
        for row in rows:
            dst, src = row.args.get("dst"), row.args.get("src")
            if not isinstance(dst, str):
                continue
            try:
                if row.kind != Link.kind or not isinstance(src, str):
                    raise UnsafeOperation(f"refusing to remove {dst}: no inode proves it is the file qbhook made")
                if row.status == StepStatus.DONE:
                    # Its resumed act found the source's inode there (``already``): the kill may have
                    # come before the first act, and another (a cross-seeding torrent at the same
                    # save path) linked it since. Which, nothing tells: never removed.
                    raise UnsafeOperation(f"refusing to remove {dst}: found there on resume, maybe another's link")
                out = fsops.remove_unrecorded_link(dst, src, roots=self.seeding_roots, src_roots=self.roots)
            except (QbhookError, OSError) as e:
                if self._keep_unrecorded(st, row, dst, recorded, e):
                    kept.append(dst)
                continue
            if out["status"] == "removed":
                self.catalog.forget_path(dst)
                removed += 1
        return removed, kept

    def _keep_unrecorded(self, st: _GroupRun, row: StepRow, dst: str, recorded: set, why: Exception) -> bool:
        """``_undo_unrecorded`` keeps ``dst``: journaled as a leftover view with what is there now,
        read through its verified folder (once). False: nothing is there (nothing to keep)."""
        try:
            with self.ctx.reader() as reader:
                now = reader.lstat_any(dst)
        except (OSError, FolderRefused, PathMapError):
            now = None
            self.log.warning("group %s: kept %s (unreadable now): %s", st.plan.group_id, dst, why)
            return True
        if now is None or not stat_mod.S_ISREG(now.st_mode):
            return now is not None
        self.log.warning("group %s: kept %s: %s", st.plan.group_id, dst, why)
        if dst not in recorded:
            facts = {"ino": now.st_ino, "size": now.st_size, "ctime_ns": now.st_ctime_ns}
            self._record_kept_repair_view(st, row, dst, facts)
            recorded.add(dst)
        return True

    def _record_kept_repair_view(self, st: _GroupRun, row: StepRow, dst: str, facts: dict | None = None) -> None:
        """Journal a file a failed repair could not remove as a leftover view (``_record_leftover_views``'
        record), with what its step proved it made (``facts``: what is there now, for a step whose
        outcome was not journaled)."""
        res = (row.result or {}) if facts is None else facts
        self.journal.record_leftover(
            st.run_id,
            st.plan.group_id,
            {
                "path": dst,
                "ino": res["ino"],
                "size": res["size"],
                "ctime_ns": res.get("ctime_ns"),
                "kind": row.kind,
                "keep": row.args.get("src"),
                "blake3": row.args.get("blake3") or res.get("blake3"),
            },
        )

    def _stop_after_deletes(self, st: _GroupRun, reason: str) -> None:
        """Old links are partly gone: the new place is the only complete one, and it was
        verified (verify_group precedes every delete). Stay there.

        A passing problem (``_passing``: a client not up yet after a reboot, a torrent checking
        its resume data) pauses the group: it needs attention, so its run stays resumable and
        ``qbhook resume`` (serve resumes unfinished runs) finishes its deletes later. Anything
        else (a newcomer, a torrent moved or ATM on) stops it for good: the old links not
        deleted yet stay, seeded by no torrent, which ``qbhook orphans`` lists and quarantines."""
        o = st.outcome
        stuck = st.passing and st.settling and self._stuck(st)
        if stuck:
            st.passing = False
            reason = f"{reason} (still so after {stuck / 3600:.1f} h: taken to be stuck)"
        if not st.passing:
            self._undo_drops(st)
        kept = self._kept_old_links(st)
        if st.passing:
            o.needs_attention = o.paused = True
            then = "looks again" if kept == _NONE_KEPT else "finishes the deletes"  # R101: none left to finish
            o.reason = (
                f"{reason} (after deletes began: paused at the verified new place, {kept}; "
                f"qbhook resume {then} once this passes)"
            )
        elif kept == _NONE_KEPT:  # the look after the last delete: no orphan to list
            o.reason = f"{reason} (after deletes began; torrents stay at their verified new place; {kept})"
        else:
            o.reason = (
                f"{reason} (after deletes began; torrents stay at their verified new place; {kept}, "
                "seeded by no torrent: qbhook orphans lists them, --quarantine --yes holds them for the purge)"
            )
        self.journal.set_group(st.plan.group_id, st.run_id, GroupStatus.FAILED, o.reason)
        if stuck:
            self.log.error("group %s: %s", st.plan.group_id, o.reason)
            _notify.emit("guard", f"group {st.plan.group_id}: {o.reason}", "failure")

    def _stuck(self, st: _GroupRun) -> float:
        """How long the group has been paused on torrents checking or moving with no delete done
        since, once that is past its budget; 0.0 while within it. The pause's length is journaled
        (``Journal.note_paused``: a pause spans restarts) and grows at each look by the wall-clock
        gap since the last one, clamped (``_pause_note``: the wall clock jumps); it starts again
        from 0 whenever a delete was done since. qBittorrent has known torrents stuck "moving" for
        ever: paused on one, the group's run stays unfinished and every later plan is refused."""
        rows = [r for r in self.journal.steps(st.run_id) if r.group_id == st.plan.group_id]
        vg = next((r for r in rows if r.kind == VerifyGroup.kind), None)
        if vg is None:
            return 0.0
        done = sum(1 for r in rows if r.kind == Delete.kind and r.status == StepStatus.DONE)
        note = _pause_note(vg.args.get("_paused"), self.ctx.wall(), done)
        self.journal.note_paused(vg.id, note)
        size = sum(d.size or 0 for d in st.plan.steps if isinstance(d, Delete))
        waited = note["paused_s"]
        return waited if waited > max(STUCK_PAUSE_S, self.timing.budget(size)) else 0.0

    def _undo_drops(self, st: _GroupRun) -> None:
        """Before the group stops for good, put back each old link a delete killed between its
        rename to the drop name and its unlink left hidden (``fsops.undo_drop``): no resume retries
        that delete now, and a hidden link of a cross-seed's inode would refuse its every later
        delete. A link that cannot be put back is named in the reason: a person looks."""
        for d in st.plan.steps:
            if isinstance(d, Delete):
                try:
                    fsops.undo_drop(d.path, ino=d.ino, seeding_roots=self.seeding_roots)
                except (QbhookError, OSError) as e:
                    self.log.warning("group %s: %s", st.plan.group_id, e)
                    st.outcome.reason = f"{st.outcome.reason}; {e}" if st.outcome.reason else str(e)

    def _kept_old_links(self, st: _GroupRun) -> str:
        """How many of the group's old links are still there, and under which folder (a link
        that cannot be read through its verified folder counts as kept: a person looks)."""
        kept = []
        with self.ctx.reader() as reader:
            for d in st.plan.steps:
                if isinstance(d, Delete):
                    try:
                        there = reader.lstat_any(d.path) is not None
                    except (OSError, FolderRefused, PathMapError):
                        there = True
                    if there:
                        kept.append(d.path)
        if not kept:
            return _NONE_KEPT
        return f"{len(kept)} old link(s) kept under {os.path.commonpath(kept)}"

    def _repair_quiet(self, st: _GroupRun, at: _At) -> None:
        """A repair's torrent writes nothing now (``decide.repair.QUIET_STATES``), asked right before
        each file is put under it: the plan saw it so, but a person may have started it since, and
        a running torrent would write arriving blocks into the catalog copies linked there.

        Stopped too, before the first file (``st.quieted``): a missingFiles torrent may be a
        started one whose files vanished, and the first file that appears under it is one it
        could start writing into (an rTorrent item paused reads stopped but resumes). Its state
        stays missingFiles after the stop (qBittorrent shows that first): stopped once per run.
        How it was found, before that stop, is journaled first in the step's row (``_found``):
        a failed repair gives it back (``_repair_state_back``), a resumed one too."""
        for s in st.plan.steps:
            if isinstance(s, Repair):
                c = self._client(s.instance)
                t = c.torrent(s.torrent)
                if t.state not in QUIET_STATES:
                    raise UnsafeOperation(
                        f"refusing to repair {s.torrent}: it is {t.state} now, not stopped",
                        hint="stop it, then run qbhook repair again",
                    )
                if (s.instance, s.torrent) not in st.quieted:
                    rows = self.journal.steps(st.run_id)
                    if _repair_found(st, rows) is None:
                        self.journal.note_found(at.step_id, {"state": t.state, "paused": t.is_paused})
                    if not t.is_stopped or t.is_paused:
                        self._note_stopping_own_start(st, rows)
                        c.stop(s.torrent)
                    self._note_seen_stopped(st, rows)  # stopped now, by this run or before it
                st.quieted.add((s.instance, s.torrent))

    def _note_seen_stopped(self, st: _GroupRun, rows: list[StepRow]) -> None:
        """A repair's torrent is stopped now, seen so or stopped by this run: journaled on its Repair
        row (``_seen_stopped``) when that step started it (``_started``), so a run of it from now on
        is a person's start (``_repair_started_it``). ``rows``: the run's journal."""
        _s, row = _repair_row(st, rows)
        if row is not None and _repair_started_it(row):
            self.journal.note_seen_stopped(row.id)

    def _note_stopping_own_start(self, st: _GroupRun, rows: list[StepRow]) -> None:
        """``_repair_quiet`` is about to stop a repair's torrent that its Repair step started
        (``_started``, not seen stopped since: missingFiles, its files gone while qbhook was down):
        journaled (``_stopped_by_us``) so a failed repair says the repair started it and it must
        not be started (``_repair_state_back``), never that a person may have run it (R120: that
        stop was read as a person's and the clause said "start it yourself if it did")."""
        _s, row = _repair_row(st, rows)
        if row is not None and _repair_started_it(row):
            self.journal.note_stopping_own_start(row.id)

    def _repair_look_back(self, st: _GroupRun, mine: list[tuple[int, Step, StepRow | None]]) -> None:
        """A resumed repair whose Repair step started its torrent looks at it once, before anything
        runs: stopped (a person stopped it while qbhook was down), a run of it from now on is a
        person's start (``_note_seen_stopped``). Else one a person stopped and starts again before
        the first look of this run (``_repair_quiet``, at a remade link) was said started by the
        repair, "do not start it" (R119). A torrent that cannot be read is left as journaled: the
        clause that never asks for a start on files taken back."""
        if st.plan.action != Action.REPAIR or self._states.get(st.plan.group_id) == GroupStatus.DONE:
            return
        rows = [r for _q, _s, r in mine if r is not None]
        s, row = _repair_row(st, rows)
        if s is None or not _repair_started_it(row):
            return
        try:
            t = self._client(s.instance).torrent(s.torrent)
        except QbhookError:
            return
        if t.is_stopped:
            self._note_seen_stopped(st, rows)

    def _stop_where_it_is(self, st: _GroupRun, reason: str) -> None:
        """The backstop tripped: stop the group's torrents, move nothing, delete nothing, alert.

        A rollback would move torrents again over files something already wrote into; a person
        decides. The group is journaled failed with the reason (``status``, ``explain`` and the
        run's summary say it), not needing attention: a resumed run must not try again. A
        repair's torrent is stopped the same way: it has no relocation, only its Repair step."""
        o = st.outcome
        o.reason = f"{reason} (stopped where it is: no rollback, no delete)"
        torrents = [(r.step.instance, r.step.torrent) for r in st.relocs]
        torrents += [(s.instance, s.torrent) for s in st.plan.steps if isinstance(s, Repair)]
        for instance, torrent in torrents:
            try:
                c = self._client(instance)
                if not c.torrent(torrent).is_stopped:
                    c.stop(torrent)
            except QbhookError as e:
                o.reason += f"; could not stop {torrent}: {e}"
        o.torrents_relocated = sum(1 for r in st.relocs if r.status == StepStatus.DONE)
        self.journal.set_group(st.plan.group_id, st.run_id, GroupStatus.FAILED, o.reason)
        self.log.error("group %s: %s", st.plan.group_id, o.reason)
        _notify.emit("guard", f"group {st.plan.group_id}: {o.reason}", "failure")

    def _record_leftover_views(self, st: _GroupRun) -> None:
        """Journal each view file this group made on its target pool, for ``move.leftovers`` to remove.

        Every file a make step of this run left at its destination, whatever it answered: the
        planner plans a make only where nothing was, so ``present`` or ``already`` is the step
        repeated after a crash finding what the crashed attempt made (or a file put there since,
        which the remover's checks release unless it is a redundant copy). Each with the inode,
        size and ctime the act proved (``_made``, journaled with its result), not a stat looked up
        again by name now: a writer of that folder may have renamed another file in since. The
        remover later acts only on that same inode, only while it still holds what the act
        proved, only while its content lives elsewhere, and only while nothing else links a copy.
        A result without those facts (journaled by an older qbhook) records nothing: that view
        stays where it is. A rollback resumed after a crash (killed while it journaled them)
        records only the views not journaled yet.
        """
        made = {Copy.kind, Link.kind, MkEmpty.kind}
        rows = [row for row in self.journal.steps(st.run_id) if row.group_id == st.plan.group_id]
        recorded = {row.args.get("path") for row in rows if row.kind == LEFTOVER_KIND}
        for row in rows:
            if (
                row.kind not in made
                or row.status != StepStatus.DONE
                or (row.result or {}).get("status") not in _ACT_STATUSES
            ):
                continue
            proven, dst = row.result or {}, row.args.get("dst")
            if not isinstance(dst, str) or not all(isinstance(proven.get(k), int) for k in ("ino", "size", "ctime_ns")):
                continue
            if dst in recorded:
                continue
            self.journal.record_leftover(
                st.run_id,
                st.plan.group_id,
                {
                    "path": dst,
                    "ino": proven["ino"],
                    "size": proven["size"],
                    "ctime_ns": proven["ctime_ns"],
                    "kind": row.kind,
                    "keep": row.args.get("src"),
                    "blake3": row.args.get("blake3") or proven.get("blake3"),
                },
            )

    # ------------------------------------------------------------------ filesystem steps

    def _pool_name(self, path: str, fallback: str | None) -> str:
        p = self.cfg.pool_of(path)
        if p is not None:
            return p.name
        if fallback:
            return fallback
        raise UnsafeOperation(f"{path} is not inside any configured pool")

    def _copy(self, st: _GroupRun, s: Copy, _at: _At) -> dict:
        # No planned hash (s.blake3 None): the copy hashes the source as it reads it, once, and
        # that hash is the content every later step of the group checks (``_GroupRun.learned``).
        # A view goes only below a seeding root; its source may be anywhere in a pool (a donor).
        res = fsops.copy_verified(
            s.src,
            s.dst,
            s.blake3,
            s.size,
            roots=self.seeding_roots,
            src_roots=self.roots,
            catalog=self.catalog,
            reserve=self.cfg.policy.min_free,
            like=st.like(s.to_dir, self.roots),
        )
        # We know the content of the new inode: cache it, so verify_view costs a stat, not a read.
        # Against the stat the copy proved it for (res.after), never the path looked up again.
        inode_id = self.catalog.record_path(s.dst, self._pool_name(s.dst, st.plan.target_pool), st=res.after)
        self.catalog.store_hash(inode_id, bytes.fromhex(res["blake3"]), res.after)
        if s.blake3 is None:
            st.learned[_norm(s.dst)] = res["blake3"]  # journaled with the result: a resume re-learns it
        st.outcome.bytes_copied += res["bytes_written"]
        return _made(res)

    def _link(self, st: _GroupRun, s: Link, at: _At) -> dict:
        learned = st.learned.get(_norm(s.src)) if s.blake3 is None else None
        blake3_hex = s.blake3 or learned
        repair = st.plan.action == Action.REPAIR
        if repair:
            self._repair_quiet(st, at)
        act = fsops.link_into(
            s.src,
            s.dst,
            roots=self.seeding_roots,
            src_roots=self.roots,
            size=s.size,
            blake3_hex=blake3_hex,
            catalog=self.catalog,
            verify_source=repair,
            like=st.like(s.to_dir, self.roots),
            # A move's donor must give the torrent's user what its own file gave (a repair's has none).
            client_groups=None if repair else self._client_groups,
        )
        # Our link changed the inode's ctime: its cached hash is carried over if it was valid for the
        # source, pinned across the link (act.carry). ``already`` (an earlier attempt's link) has no
        # such warrant: its hash, if stale, is re-proven by a read at verify_view.
        self.catalog.record_path(s.dst, self._pool_name(s.dst, st.plan.target_pool), st=act.after, carry=act.carry)
        res = _made(act)
        if learned is not None:
            st.learned[_norm(s.dst)] = learned
            res["blake3"] = learned
        return res

    def _note_dst(self, st: _GroupRun, s: Link | MkEmpty, row: StepRow | None) -> Link | MkEmpty:
        """A repair's make step as its intent is journaled: with whether its destination was empty
        right before (``dst_before``), so a failed repair's undo can take the link a kill left
        without its outcome row (``_undo_unrecorded``). The first intent's look is kept: a resumed
        attempt finds that attempt's own link there (``Journal.intend`` keeps a row's args).
        Only for repairs: a demote plans a link per file, and its rollback keeps its views anyway."""
        if st.plan.action != Action.REPAIR:
            return s
        if row is not None:
            return replace(s, dst_before=row.args.get("_dst_before"))
        with self.ctx.reader() as reader:
            there = _look(reader, s.dst, f"{s.kind} {s.dst}")
        return replace(s, dst_before=DST_ABSENT if there is None else DST_TAKEN)

    def _mkempty(self, st: _GroupRun, s: MkEmpty, at: _At) -> dict:
        if st.plan.action == Action.REPAIR:
            self._repair_quiet(st, at)
        act = fsops.make_empty(s.dst, roots=self.seeding_roots, like=st.like(s.to_dir, self.roots))
        # An empty file's content needs no cached hash (fsops knows it): nothing to carry over.
        self.catalog.record_path(s.dst, self._pool_name(s.dst, st.plan.target_pool), st=act.after)
        return _made(act)

    def _verify_view(self, st: _GroupRun, s: VerifyView, _at: _At) -> dict:
        c = self._client(s.instance)
        h = s.torrent
        save = _norm(s.save_path)
        want = {
            rel: (full, size, st.content_of(full, blake3, size, "verify_view"))
            for rel, (full, size, blake3) in _view_files(s).items()
        }
        sizes = {rel: v[1] for rel, v in want.items()}
        self._match_view(c, h, save, sizes)
        total, seen = 0, {}
        for full, size, blake3_hex in want.values():
            # The facts of the very stat the content was proven for, not a second look by name.
            seen[full] = _facts_of(fsops.verify_file(full, size, blake3_hex, self.catalog, roots=self.roots))
            total += size
        st.views[(s.instance, h, save)] = sizes
        st.seen.update(seen)
        return {"files": len(want), "bytes": total, "seen": {p: list(f) for p, f in seen.items()}}

    def _match_view(
        self, c: ClientPort, h: str, save: str, sizes: dict[str, int], current_save: str | None = None, why: str = ""
    ) -> None:
        """The one rule for "the view at ``save`` holds the torrent's files": the torrent's own file
        list (one read), not the plan's, decides what must be there, since a file missing from the
        view would be copied by qBittorrent itself (lesson 1). Each wanted file is in the view
        (``sizes``: name relative to ``save`` -> bytes) at its size; an unwanted one passes
        ``_check_unwanted``. At verify_view, and again right before setLocation (``_issue_move``):
        a file renamed or made wanted in the client in between is refused there. ``why`` leads
        each refusal's message; ``current_save`` spares a read of where the torrent is."""
        live = c.files(h)
        if not live:
            raise UnsafeOperation(f"{why}torrent {h} has no metadata (no file list): cannot prove its view")
        with self.ctx.reader() as reader:  # opens a folder only if an unwanted file is asked about
            for lf in live:
                size = sizes.get(_norm(lf.name))
                if size is None:
                    if lf.wanted:
                        raise UnsafeOperation(f"{why}torrent {h} has file {lf.name} that the view at {save} lacks")
                    current_save = current_save or _norm(c.torrent(h).save_path)
                    _check_unwanted(reader, h, lf.name, current_save, save)
                    continue
                if size != lf.size:
                    raise VerificationFailed(
                        f"{why}torrent {h}: {lf.name} is {lf.size} bytes in qBittorrent, {size} in the plan"
                    )

    def _delete(self, st: _GroupRun, s: Delete, at: _At) -> dict:
        if not st.synced:
            # New links must be on disk before old ones go, whatever a power cut does.
            fsops.sync_filesystem(s.keep_path, (*self.seeding_roots, *self.roots))
            st.synced = True
        self._check_still_placed(st)
        self._recheck_newcomers(st)
        self._check_no_library_symlink(st)
        hold = str(st.run_id) if self.cfg.policy.grace_period > 0 else None
        # Planned without a hash: the one the copy took of this file's content (the kept copy's),
        # so the doomed link must still hold exactly what was copied.
        blake3_hex = st.content_of(s.keep_path, s.blake3, s.size or 0, f"refusing to delete {s.path}")
        with self._pin_links(s) as pin:
            res = self._safe_unlink(s, blake3_hex, hold, resumed=at.again)
            # The inode right after the act, before the catalog's commit (an fsync: a wait): the
            # only stat a hash may be carried onto (``_record_other_links``).
            now = pin.look() if pin is not None and res.get("nlink_before", 0) > 1 else None
            st.deletes_started = True
            if res["status"] == "held" and s.blake3 is None:
                # The purge re-proves the kept copy before removing a last link: with the content proved here.
                res = {**res, "blake3": blake3_hex}
            self.catalog.forget_path(s.path)
            if res.get("nlink_before", 0) > 1:
                self._record_other_links(s, res, pin, now)
        if at.again and res.get("status") == "absent":
            self._count_absent(s, res)
        st.outcome.bytes_freed += res.get("bytes_freed", 0)
        st.outcome.bytes_freed_at_least |= bool(res.get("bytes_freed_unknown"))
        return res

    def _count_absent(self, s: Delete, res: dict) -> None:
        """A resumed delete whose link is gone: the killed attempt unlinked it (or a writer of the
        seeding folder did), and freed the inode if no other link was left. ``safe_unlink`` unlinks
        only while the inode has no link beyond the plan's ``seeding_links``: when none of them is
        still the inode, it is gone (``_resumed_victim``); unjudged, a lower bound. Into ``res``,
        which the journal keeps: a later resume replays it."""
        v = _Victim(s.ino, s.size or 0, tuple(s.seeding_links) or (s.path,))
        with self.ctx.reader() as reader:
            gone = _resumed_victim(reader, v)
        if gone is None:
            res["bytes_freed_unknown"] = True
        elif gone:
            res["bytes_freed"] = v.size

    def _pin_links(self, s: Delete) -> Pin | contextlib.nullcontext:
        """The doomed link's inode held open (``Pin``) across its delete, when it has other seeding
        links whose hash the delete may carry over (``_record_other_links``); else nothing."""
        if not any(p != s.path for p in s.seeding_links):
            return contextlib.nullcontext()
        try:
            with self.ctx.reader() as reader:
                where = reader.place_any(s.path)
                pin = Pin.at(where[1], where[0]) if where is not None else None
        except (OSError, FolderRefused, PathMapError):
            pin = None
        return pin or contextlib.nullcontext()

    def _safe_unlink(self, s: Delete, blake3_hex, hold: str | None, *, resumed: bool) -> dict:
        return fsops.safe_unlink(
            s.path,
            fsid=s.fsid,
            ino=s.ino,
            size=s.size,
            blake3_hex=blake3_hex,
            keep_path=s.keep_path,
            keep_blake3=blake3_hex,
            keep_fsid=s.keep_fsid,
            keep_ino=s.keep_ino,
            seeding_links=s.seeding_links,
            seeding_roots=self.seeding_roots,
            keep_roots=self.roots,
            catalog=self.catalog,
            hold_run=hold,
            resumed=resumed,
        )

    def _record_other_links(self, s: Delete, res: dict, pin: Pin | None, now: os.stat_result | None) -> None:
        """Unlinking changed the inode's ctime; its other links are recorded with it, the hash
        carried from the stat safe_unlink checked the content under and saw again right before
        the unlink (``checked``) when ``pin`` held the inode from before that check until each
        link's lstat: cross-seeds with own paths would each read the payload again. Without the
        pin equal (dev, ino) proves nothing: a writer of a seeding folder may have removed the
        last other link and created a file that got the freed inode number (``CarryProof``).
        Carried onto ``now``, the pin's fstat right after the act, and so onto a link's lstat
        only when it has that ctime: the lstats come after the catalog's commit (an fsync), and
        a rewrite through a link then (same size, mtime set back) shows in the ctime alone (R67).
        Each is looked at through its verified folder: one behind a symlinked folder is not
        provably that pool's file, and is left for the next scan."""
        checked = fsops.Checked.of(res, s.ino)
        with self.ctx.reader() as reader:
            for p in s.seeding_links:
                if p == s.path:
                    continue
                try:
                    pst = reader.lstat_any(p)
                except (OSError, FolderRefused, PathMapError):
                    continue
                if pst is not None and (pst.st_dev, pst.st_ino) == (res.get("dev"), s.ino):
                    pool = self.cfg.pool_of(p)
                    if pool is not None:
                        # That very stat, proven to be the inode whose content the delete checked.
                        carry = None
                        if pin is not None and checked is not None and now is not None:
                            carry = CarryProof.across(pin, now, checked)
                        self.catalog.record_path(p, pool.name, st=pst, carry=carry)

    def _check_still_placed(self, st: _GroupRun) -> None:
        """The group's torrents are still as verify_group saw them (``_unverified``: at the new
        place, stable, complete), ATM off: read before the group's first delete and again every
        ``_REREAD_S`` of deleting (one listing per client, whatever the number of files).

        A person turning ATM back on (its category path is the old folder), moving a torrent
        (qBittorrent 4.5.2 shows the old save path while the move runs) or forcing a recheck
        after verify_group, or its files going (missingFiles), and the deletes would remove what
        it may seed from next. Refused before the first delete, the group rolls back; later, it
        stops with the rest of the old links kept (``_close_failed``), paused if only a check or
        a move is under way (``_NotSettled``: resume redoes verify_group once it ends)."""
        now = self.ctx.clock()
        if st.placed_at is not None and now - st.placed_at < _REREAD_S:
            return
        members = [x for v in st.plan.steps if isinstance(v, VerifyGroup) for x in v.torrents]
        by_client: dict[str, list] = {}
        for x in members:
            by_client.setdefault(x.instance, []).append(x)
        problems = []
        for instance, xs in by_client.items():
            got = self._client(instance).torrents(hashes=[x.torrent for x in xs])
            seen = {i.lower(): t for t in got for i in (t.hash, t.infohash_v1, t.infohash_v2) if i}
            for x in xs:
                t = seen.get(x.torrent.lower())
                if t is None:
                    p = _Unverified("is gone from its client", passes=False)
                elif t.auto_tmm:
                    p = _Unverified(f"is at {t.save_path} (automatic management on)", passes=False)
                elif (p := _unverified(t, x.save_path)) is None:
                    continue
                why = f"torrent {x.torrent} changed after verification (at {x.save_path}): it {p.why}"
                problems.append(p._replace(why=why))
        if problems:
            raise _unverified_error("", problems, "; no more old links deleted" if st.deletes_started else "")
        st.placed_at = now

    def _converge(self, st: _GroupRun, s: Converge, at: _At) -> dict:
        # A batch of one, fsynced on its own (fsops.relink_over): the same call as a batch's.
        with fsops.Relinker(
            self.seeding_roots, self.roots, self.catalog, sync_each=True, client_groups=self._client_groups
        ) as rl:
            res = self._relink(rl, st.plan.group_id, at.seq, s, self.ctx.hook)
        # The path is now a link of the kept inode, whose ctime the link changed: carry its hash over,
        # onto the stat the relink took through its folder (rl.after), as a batch does.
        # A convergence never leaves its pool: the plan's source pool names it (cfg.pool_of costs 0.5 ms).
        pool = st.plan.source_pool or self._pool_name(s.path, None)
        self._record([(s.path, pool)], rl.after)
        st.outcome.bytes_freed += res.get("bytes_freed", 0)
        return res

    def _prune_dirs(self, st: _GroupRun, s: PruneDirs, _at: _At) -> dict:
        if self.cfg.seeding_root_of(s.stop_at) is None:
            raise UnsafeOperation(f"refusing to prune up to {s.stop_at}: not inside a seeding root")
        below = s.below
        if below is None:
            # An older version's step (``PruneDirs``): below only inside a torrent's own root folder,
            # never at a save path (a category folder, a cross-seed link folder, the seeding root).
            saved_at = {_norm(x.from_path) for x in st.plan.steps if isinstance(x, Relocate)}
            saved_at |= {_norm(str(r)) for r in self.cfg.seeding_roots}
            below = _norm(s.root) not in saved_at
        return {"removed": fsops.prune_empty_dirs(s.root, s.stop_at, roots=self.seeding_roots, below=below)}

    # ------------------------------------------------------------------ torrent client steps

    def _forget_state_lags(self) -> None:
        """Each client's ``state_lag_s`` read again in this run (``forget_state_lag``, clients/port.py):
        ``serve`` keeps its clients for its life, and a refresh interval raised since the last run
        would leave each recheck's wait too short for what qBittorrent now shows (R72)."""
        clients = self.ctx.clients
        for c in clients.values() if isinstance(clients, Mapping) else clients:
            try:
                c.forget_state_lag()
            except QbtError:
                # A client that cannot be reached even to be asked (a wrapper answering every
                # attribute through its connection) fails its groups where they use it, not the run.
                continue

    def _client(self, instance: str) -> ClientPort:
        try:
            return self.ctx.clients[instance]
        except KeyError:  # a plain mapping (tests); Clients raises its own QbtError naming what is configured
            raise QbtError(f"no torrent client named {instance!r}") from None

    def _tag(self, _st: _GroupRun, s: Tag, _at: _At) -> dict:
        c = self._client(s.instance)
        if s.add:
            c.add_tags(s.torrent, list(s.add))
        if s.remove:
            c.remove_tags(s.torrent, list(s.remove))
        return {}

    def _observe(self, _st: _GroupRun, s: Relocate | Repair, row: StepRow | None) -> Relocate | Repair:
        """The relocation (or repair) as it will be journaled: with the torrent as first seen, before we touch it."""
        if row is not None and row.args.get("_observed"):
            return replace(s, observed=dict(row.args["_observed"]))
        return replace(s, observed=self._observation(s, self._client(s.instance).torrent(s.torrent)))

    def _observation(self, s: Relocate | Repair, t) -> dict:
        """What relocation ``s`` journals of torrent ``t`` before acting on it, for its undo
        (``_move_back``) and its start at the end; a repair the same, for a failed one's move
        back (``_repair_move_back``: the settings it turned off, ``_settings_back``). Stopped by
        another relocation that could not start it again (``_start_sharers``; the journal keeps it
        across runs), it ran before qbhook stopped it: it runs again as it ran (forced, if it was).
        Seen running, that record goes: a person started it, and a stop of theirs after this look
        is theirs to keep."""
        tag = self.cfg.policy.relocated_tag
        by_us = self.journal.stopped_by_us(s.instance, s.torrent) if t.is_stopped else None
        if t.is_running:
            self.journal.forget_stopped(s.instance, s.torrent)
        return {
            "save_path": _norm(t.save_path),
            "state": t.state,
            "progress": t.progress,
            "complete": t.is_complete,
            "stable": t.is_stable,
            "was_running": not t.is_stopped or by_us is not None,
            # started forced again: a plain start is queued (clients/port.py)
            "forced": t.is_forced if by_us is None else by_us,
            "paused": t.is_paused,  # rTorrent's third state: paused again after the move (_as_found)
            "download_path": t.download_path,
            "auto_tmm": t.auto_tmm,
            "had_relocated_tag": bool(tag) and tag in t.tags,
            "tags": sorted(t.tags),  # a rollback puts back the tags the group's Tag steps changed (_tags_as_found)
        }

    def _verify_group(self, st: _GroupRun, s: VerifyGroup, _at: _At) -> dict:
        self._check_views_unchanged(st)  # the last look before the first delete
        problems = []
        for x in s.torrents:
            t = self._client(x.instance).torrent(x.torrent)
            if (p := _unverified(t, x.save_path)) is not None:
                problems.append(p._replace(why=f"{t.hash} {p.why}"))
        if problems:
            raise _unverified_error("group does not verify: ", problems)
        self._check_no_newcomer(st)
        return {"torrents": len(s.torrents)}

    def _recheck_newcomers(self, st: _GroupRun) -> None:
        """``_check_no_newcomer`` again during the deletes: before the group's first delete unless
        the last look is under ``_REREAD_S`` old (a sync may have taken a while since), then every
        ``_NEWCOMER_REREAD_S``. A cross-seed injected by the event that queued this demote, or a
        person adding the hash again, comes while the deletes run (minutes: each re-hashes its
        link); unseen, its files are deleted under it. Before the first delete a newcomer rolls
        the group back; later, the group stops with the rest of the old links kept."""
        if _look_due(st.newcomers_at, self.ctx.clock(), st.deletes_started):
            self._check_no_newcomer(st)

    def _check_no_library_symlink(self, st: _GroupRun) -> None:
        """No library symlink reaches what this group's deletes remove (``library_links``), on the
        newcomer check's cadence (``_look_due``): before the first delete, then every interval,
        judged against every old link, deleted or not. The plan's snapshot walked the libraries
        once; a symlink a library made since (an *arr importing in symlink mode while the copy,
        relocation and verification ran) dangles once its file is deleted. Refused before the
        first delete, the group rolls back; later, it stops with the rest of the old links kept.
        A walk that cannot finish refuses the same way: a library not seen is data deleted."""
        at, found = self._library_walk(st.deletes_started)
        if st.library_at == at:
            return  # this walk judged this group already
        stop = "; no more old links deleted" if st.deletes_started else ""
        if isinstance(found, LibraryLinksUnseen):
            raise LibraryLinksUnseen(
                f"{found.message}, so whether a library uses the old links is unseen{stop}", hint=found.hint
            )
        # A folder target is matched by identity too (a symlink written through a bind mount of the
        # seeding data): each folder above the deletes looked at once, through verified descriptors.
        with self.ctx.reader() as reader:
            link, path = _library_reach(found, st.plan.steps, reader)
        if link is not None:
            raise VerificationFailed(
                f"library symlink {link} -> {library_links.target(link)} uses {path}, "
                f"an old link this group deletes{stop}",
                hint="re-plan: a group a library uses stays where it is",
            )
        st.library_at = at

    def _library_walk(self, deletes_started: bool) -> tuple[float, library_links.LibraryLinks | LibraryLinksUnseen]:
        """The run's walk for library symlinks, walked again when due (``_look_due``): one walk per
        look, shared by every group of the run while younger than the cadence. Its places are
        spelled below every pool root too (``library_links.respelled``), as the plan's paths are."""
        now = self.ctx.clock()  # before walking: a symlink made during the walk is for the next look
        if self._walked is None or _look_due(self._walked[0], now, deletes_started):
            try:
                found = library_links.collect(self.cfg)
                roots = [p.path for p in self.cfg.pools]
                found = library_links.LibraryLinks(
                    found.files, library_links.respelled(found.places, roots), found.folders
                )
            except LibraryLinksUnseen as e:
                found = e
            self._walked = (now, found)
        return self._walked

    def _check_no_newcomer(self, st: _GroupRun) -> None:
        """No torrent outside the plan seeds from what this group's deletes remove: at
        verify_group, so a failure still rolls the group back, and again during the deletes
        (``_recheck_newcomers``), judged against every doomed path, deleted or not.

        A torrent added after planning (a cross-seed saving at the searchee's folder, or
        symlinking its files, a person adding a hash again at the old folder) reads the old
        links without a new hardlink, which safe_unlink's link count cannot see; deleted under
        it, it ends missingFiles. One listing per client. A torrent with metadata is judged by
        its files (``_uses_doomed``: a doomed path, or a link to a doomed inode, one that dangles on
        the host read through the clients' path_maps too: cross-seed in a container), read when its
        content path holds a doomed link or it was added since the plan was made
        (``_added_since``; an rTorrent item without d.load_date by the torrent index): an old
        torrent sharing the folder with files of its own only (field lesson 7) is no newcomer,
        and refusing it would roll the group back on every sweep. A magnet without metadata has
        no file list yet: its content folder holding a doomed link is enough to refuse it."""
        doomed = [_norm(d.path) for d in st.plan.steps if isinstance(d, Delete)]
        if not doomed:
            return
        started = self.ctx.clock()  # before listing: a torrent added during it is for the next look
        members = [x for v in st.plan.steps if isinstance(v, VerifyGroup) for x in v.torrents]
        mine = {(x.instance, x.torrent.lower()) for x in members}
        mine |= {(r.instance, r.torrent.lower()) for r in st.plan.steps if isinstance(r, Relocate)}
        holders = _holders(doomed)
        inodes = _inodes(doomed)
        doomed_set = set(doomed)
        maps = library_links.host_maps(self.cfg)  # a dangling link in a container's spelling
        since = self._planned_at - _ADDED_SLACK_S
        listings: dict[str, list] = {}
        for c in _every_client(self.ctx.clients):
            listed = listings[c.name] = c.torrents()
            # One read of the index for a client that does not say when each torrent was added.
            seen = self._first_seen(c.name) if any(t.added_on is None for t in listed) else None
            for t in listed:
                ids = {i.lower() for i in (t.hash, t.infohash_v1, t.infohash_v2) if i}
                if any((t.instance, i) in mine for i in ids):
                    continue
                content, save = _norm(t.content_path), _norm(t.save_path)
                if not t.has_metadata:
                    held = content in holders and content != save
                    why = f"its content {content} holds files this group deletes (no metadata yet)" if held else None
                elif content in holders or _added_since(t, since, seen):
                    why = _uses_doomed(c, t, doomed_set, inodes, maps)
                else:
                    why = None
                if why:
                    stop = "; no more old links deleted" if st.deletes_started else ""
                    raise VerificationFailed(
                        f"torrent {t.hash} ({t.instance}), not in the plan, seeds from the old place: {why}{stop}",
                        hint="re-plan: the new torrent must be part of the group",
                    )
        self._check_no_writer(st, listings)  # the same look, on the same cadence
        st.newcomers_at = started

    def _first_seen(self, instance: str) -> dict[str, float] | None:
        """The torrent index's first sighting of each torrent of ``instance`` (``_added_since``)."""
        return TorrentIndex(self.catalog.conn).first_seen(instance)

    def _relocate(self, st: _GroupRun, s: Relocate, at: _At) -> dict:
        c = self._client(s.instance)
        h = s.torrent
        # A resumed relocation may have stopped sharers before the crash: the journal says which.
        sharers = self.journal.sharers(at.step_id), self.journal.forced_sharers(at.step_id)
        r = _Reloc(at.seq, at.step_id, StepStatus.INTENDED, s, *sharers)
        st.relocs.append(r)  # registered before acting: any failure from here on undoes it
        from_path, to_path = _norm(s.from_path), _norm(s.to_path)
        budget = self.timing.budget(s.size)
        t0 = self.ctx.clock()
        t = c.torrent(h)
        if t.is_moving or t.is_checking:
            # A move (ours, before a crash, or anyone's) is in flight: wait for it, never issue another.
            t = self._wait(c, s, None, budget, st.plan.group_id, at.seq)
        where = _norm(t.save_path)
        proven = not _checks_on_move(c)
        if where == to_path:
            t = self._wait(c, s, to_path, budget, st.plan.group_id, at.seq, proven=proven)
            issued = False
        elif where == from_path:
            self._issue_move(st, c, s, r, t)
            issued = True
            t = self._wait(c, s, to_path, budget, st.plan.group_id, at.seq, proven=proven)
        else:
            raise UnsafeOperation(f"torrent {h} is at {t.save_path}, the plan expected {from_path} or {to_path}")
        t = self._settle_storage(st.run_id, c, s, t, budget, at)
        # Moved and settled: qBittorrent's save path and libtorrent's agree again, no restart
        # move can follow, and the old links go back where the delete step expects them.
        self._unhide_old_links(st.run_id, c, s, r.step_id)
        self._start_sharers(st, r)
        # qBittorrent never wrote into the view since verify_view (seen early: the siblings do not move then).
        self._check_views_unchanged(st)
        if not _start_planned(st.plan, s):
            # A plan without a Start step for it (planned by an older version): started here, as then.
            obs = r.step.observed or {}  # as _issue_move journaled it, if the first look was of a transition
            # Only now: the recheck at the new place ended at 100%.
            _as_found(c, h, obs, t, was_running=obs.get("was_running", True))
            self.journal.forget_stopped(s.instance, h)  # running as it ran, or stopped by a person
        tag = self.cfg.policy.relocated_tag
        if tag:
            try:
                c.add_tags(h, [tag])
            except QbtError as e:
                self.log.warning("torrent %s relocated but not tagged %s: %s", h, tag, e)
        st.outcome.torrents_relocated += 1
        return {
            "issued": issued,
            "state": t.state,
            "save_path": _norm(t.save_path),
            "seconds": round(self.ctx.clock() - t0, 3),
        }

    def _start(self, st: _GroupRun, s: Start, _at: _At) -> dict:
        """A relocated torrent, stopped at its new place since its relocation, back as that
        relocation found it (``_as_found``: started if it ran), once the group verified. Checked
        again first by verify_group's own rule (``_unverified``) and the backstop: started only at
        100 % on unchanged views. Idempotent: a running one is left running."""
        key = (s.instance, s.torrent.lower())
        r = next((r for r in st.relocs if (r.step.instance, r.step.torrent.lower()) == key), None)
        if r is None or r.status != StepStatus.DONE:
            raise UnsafeOperation(f"refusing to start {s.torrent}: this group has not relocated it")
        c, to_path = self._client(s.instance), _norm(r.step.to_path)
        self._check_views_unchanged(st)
        t = c.torrent(s.torrent)
        if (p := _unverified(t, to_path)) is not None:
            raise _unverified_error(f"not starting {s.torrent}: it ", [p])
        obs = r.step.observed or {}
        started = _as_found(c, s.torrent, obs, t, was_running=obs.get("was_running", True))
        self.journal.forget_stopped(s.instance, s.torrent)  # running as it ran, or stopped by a person
        return {"started": started, "state": t.state}

    def _issue_move(self, st: _GroupRun, c: ClientPort, s: Relocate, r: _Reloc, t) -> None:
        """The checks before a move from the old place, the torrent stopped, its files read again
        against its verified view (``_match_view``), the links hidden, setLocation."""
        h, to_path = s.torrent, _norm(s.to_path)
        if not t.is_complete:
            raise UnsafeOperation(
                f"torrent {h} is not complete ({t.progress * 100:.1f}%): only complete torrents are relocated"
            )
        if not t.is_stable:
            raise UnsafeOperation(f"torrent {h} is {t.state}: waiting for a stable state first")
        if (s.instance, h, to_path) not in st.views:
            raise UnsafeOperation(f"refusing to relocate {h}: its view at {to_path} was not verified in this run")
        if not _at_rest(r.step.observed, s.from_path):
            # First seen in a transition (a check a person started, checkingResumeData after a
            # restart) and waited for: the journaled look says "never moved" to a rollback. The
            # look the move is issued on replaces it, journal first: nothing of ours acted yet.
            obs = self._observation(s, t)
            self.journal.set_observed(r.step_id, obs)
            r.step = replace(r.step, observed=obs)
        if t.auto_tmm:
            # Off moves it too unless its data is already at its category's path; the client
            # refuses then (clients/port.py AtmGuard), as _check_atm_off did before the group acted.
            c.set_auto_management(h, False)
            # Under ATM qBittorrent reports its category's download path; off, the torrent's own
            # (the category's copied in, or on newer versions the one it kept all along).
            t = c.torrent(h)
        if t.download_path and _norm(t.download_path) != to_path:
            c.set_download_path(h, "")  # lesson 2: no stale incomplete folder left behind
        # Always stopped first, and its old links hidden (``_hide_old_links``): a running
        # torrent is no exception, since qBittorrent's restart move runs AT ONCE for a
        # running torrent and would copy into the view's inodes (library files on a promote).
        # Stopped, it also cannot download during the recheck at its new place; it is
        # started again only after 100%. Torrents of the group that seed from the very same
        # old paths are stopped while those are hidden (``_stop_sharers``).
        if not t.is_stopped:
            c.stop(h)
        self._wait_stopped(c, s.torrent)
        self._stop_sharers(st, c, s, r)
        # The torrent's files read again, stopped (the last look before the move): a file renamed
        # or made wanted in the client since verify_view (minutes ago, while siblings rechecked)
        # would be missing from the view, and setLocation only ever goes to a full view.
        why = f"refusing to relocate {h}: its files changed since its view was verified: "
        self._match_view(c, h, to_path, st.views[(s.instance, h, to_path)], _norm(t.save_path), why)
        self._hide_old_links(st.run_id, c, s, r.step_id)
        c.set_location(h, to_path)

    def _repair(self, st: _GroupRun, s: Repair, at: _At) -> dict:
        """A torrent in missingFiles onto its verified view: stop, setLocation if the path changes,
        recheck, wait for 100 %, start. Idempotent: a resumed attempt reads where the torrent is."""
        c = self._client(s.instance)
        h = s.torrent
        from_path, to_path = _norm(s.from_path), _norm(s.to_path)
        if (s.instance, h, to_path) not in st.views:
            raise UnsafeOperation(f"refusing to repair {h}: its view at {to_path} was not verified in this run")
        t = c.torrent(h)
        where = _norm(t.save_path)
        if where not in (from_path, to_path):
            raise UnsafeOperation(f"torrent {h} is at {t.save_path}, the plan expected {from_path} or {to_path}")
        if t.is_complete and t.is_stable and where == to_path and not t.is_stopped:
            # A previous attempt rechecked and started it (it is stopped until 100 % is proven). A
            # stopped torrent at 100 % proves nothing: a person stopped it before its files
            # vanished, and qBittorrent shows the progress it had then. It is rechecked below.
            issued = False
        else:
            # Stopped first: a recheck under 100 % must not download into the view, whose inodes
            # are catalog copies (maybe library files). Started again only at 100 %. A paused
            # rTorrent item reads stopped but is started: its check's end would resume it.
            # A missingFiles torrent stopped before its first link in this run reads missingFiles
            # still (``_repair_quiet``): not stopped twice.
            stopped = t.state == "missingFiles" and (s.instance, h) in st.quieted
            if (not t.is_stopped or t.is_paused) and not stopped:
                c.stop(h)
            if t.auto_tmm and (where != to_path or t.download_path):
                # Off before the download path is cleared: qBittorrent ignores that under ATM (the
                # client refuses it), and reports the category's path until then (as _issue_move).
                c.set_auto_management(h, False)
                t = c.torrent(h)
            if t.download_path and _norm(t.download_path) != to_path:
                c.set_download_path(h, "")
            # Its files read again, stopped, before its move and recheck, as ``_issue_move`` does: a
            # file renamed in the client since verify_view would be missing from the view.
            why = f"refusing to repair {h}: its files changed since its view was verified: "
            self._match_view(c, h, to_path, st.views[(s.instance, h, to_path)], _norm(t.save_path), why)
            if where != to_path:
                self._set_location_waited(c, s, to_path, at)
            # Journaled first: after a check, the client's progress is that check's, not the one
            # the repair found, and a failed repair never starts or pauses it (``_repair_state_back``).
            self.journal.note_rechecked(at.step_id)
            c.recheck(h)
            issued = True
            t = self._wait_rechecked(c, s, to_path, at)
        # The backstop before the start, as _relocate has it: a view file written since verify_view
        # (a tagger on a library file) stops the repair here, the torrent left stopped.
        self._check_views_unchanged(st)
        if issued:
            # Journaled first, as the recheck is: a kill between the start and the outcome leaves a
            # running torrent this step started, never to be called a person's (R119).
            self.journal.note_started(at.step_id)
        if t.is_stopped:
            c.start(h)
        return {"issued": issued, "state": t.state, "save_path": _norm(t.save_path)}

    def _set_location_waited(self, c: ClientPort, s: Repair, to_path: str, at: _At) -> None:
        """A repair's torrent moved to ``to_path`` (a stopped torrent missing its files: nothing of
        it moves but its save path), waited for: the repair's move and a failed repair's move back."""
        c.set_location(s.torrent, to_path)
        self._wait_moved(c, s, _norm(to_path), at)

    def _wait_moved(self, c: ClientPort, s: Repair, to_path: str, at: _At) -> None:
        """Poll until qBittorrent says the torrent's save path is ``to_path`` and it no longer moves."""
        deadline = self.ctx.clock() + self.timing.budget(s.size)
        delay = self.timing.poll_initial_s
        while True:
            t = c.torrent(s.torrent)
            if _norm(t.save_path) == to_path and not t.is_moving:
                return
            if self.ctx.clock() >= deadline:
                raise VerificationFailed(f"torrent {s.torrent} did not move to {to_path} (state {t.state})")
            self._hook("poll", "", at.seq, s)
            self.ctx.sleep(delay)
            delay = min(delay * 1.5, self.timing.poll_max_s)

    def _recheck_grace(self, c: ClientPort) -> float:
        """How long a recheck (or a stop) asked of client ``c`` may stay unseen before that counts as
        a failure: ``recheck_grace_s``, never less than the client's lag (``_recheck_lag``), so that a
        slow refresh interval fails no healthy torrent."""
        return max(self.timing.recheck_grace_s, _recheck_lag(c))

    def _wait_rechecked(self, c: ClientPort, s: Repair, to_path: str, at: _At):
        """Poll until the torrent is complete and stable at ``to_path`` on ``settle_polls`` polls in a
        row. A ``missingFiles`` state is expected until the recheck shows up (the API lags), so it
        fails only once a check was seen, or after ``recheck_grace_s`` without one."""
        h, tm, clock = s.torrent, self.timing, self.ctx.clock
        t0 = clock()
        deadline = t0 + self.timing.budget(s.size)
        delay, settled, checked = tm.poll_initial_s, 0, False
        lag, grace = _recheck_lag(c), self._recheck_grace(c)
        while True:
            t = c.torrent(h)
            if t.is_checking or t.is_moving:
                checked, settled = True, 0
            elif _norm(t.save_path) == to_path and t.is_stable and t.is_complete and not t.progress_stale:
                # A progress read before the recheck began may be the stale 100 % of before the files
                # vanished: it counts once a check was seen, or after the API's refresh lag at least.
                settled += checked or clock() - t0 >= lag
                if settled >= max(1, tm.settle_polls):
                    return t
            elif checked or clock() - t0 >= grace:
                if not t.is_stopped:
                    c.stop(h)  # never leave an incomplete torrent running
                raise VerificationFailed(
                    f"torrent {h} is {t.state} {_progress_of(t)} after the recheck at {t.save_path}; "
                    "it is stopped and needs attention"
                )
            if clock() >= deadline:
                raise VerificationFailed(
                    f"torrent {h} did not finish its recheck at {to_path} (state {t.state if t else 'unreadable'})",
                    hint="qBittorrent may still be checking; qbhook resume waits again",
                )
            self._hook("poll", "", at.seq, s)
            self.ctx.sleep(delay)
            delay = min(delay * 1.5, tm.poll_max_s)

    def _wait(
        self,
        c: ClientPort,
        s: Relocate,
        at: str | None,
        budget: float,
        gid: str = "",
        seq: int = -1,
        require_complete: bool = True,
        recheck_missing: bool = False,
        proven: bool = False,
        rechecked_at: float | None = None,
    ):
        # Long on purpose: one poll loop is the one state machine every move, rollback and resume waits in.
        """Poll until the torrent is stable (at ``at``, if given) on ``settle_polls`` polls in a row.

        ``proven`` (``_checks_on_move``): a stopped torrent's 100 % counts only once a check was
        seen, or its lag passed after the recheck asked here (or at ``rechecked_at``, by the caller).
        A check seen is checkingUP/DL at ``at``: checkingResumeData (qBittorrent restarting) reads
        no data, and the stopped 100 % after it is the resume data's, as stale as before.

        Raises VerificationFailed on error/missingFiles, on an incomplete torrent once its
        recheck at ``at`` is over (when ``require_complete``), and when the budget runs out.
        ``recheck_missing`` (the rollback, whose old links are back where libtorrent's files
        are): missingFiles is a settled state, cleared by a recheck (``_missing_files``). At the
        rollback's first look (``at`` None) so is error: a check that failed at the new place
        (rTorrent's d.hashing_failed, files it could not open) has nothing in flight either.
        Raised, the move back never ran and every resume failed the same way; the move back and
        its recheck are what clear it.
        """
        h = s.torrent
        tm, clock = self.timing, self.ctx.clock
        deadline = clock() + budget
        delay = tm.poll_initial_s
        settled = 0
        # rechecked_at: when we (or the caller) asked for a recheck
        checking_seen = False  # a check of the data at ``at`` observed since then
        lag, grace = _recheck_lag(c), self._recheck_grace(c)

        def lagged(since: float | None) -> bool:
            return since is not None and clock() - since >= lag

        while True:
            t = c.torrent(h)
            self._trace(logging.DEBUG, "poll", t)
            if t.state in BAD_STATES and not (recheck_missing and (t.state == "missingFiles" or at is None)):
                raise VerificationFailed(f"torrent {h} went to state {t.state} at {t.save_path}")
            if t.state in _RECHECKING and (at is None or _norm(t.save_path) == at):
                checking_seen = True
            if t.state in BAD_STATES:  # missingFiles, or error at the rollback's first look
                if at is None:
                    return t  # nothing in flight: what the rollback needs to know
                if self._missing_files(c, t, at, rechecked_at, checking_seen):
                    # Looked at soon again: the check shows up within the lag, not the backed-off delay.
                    rechecked_at, checking_seen, delay = clock(), False, tm.poll_initial_s
                settled = 0
            elif not t.is_stable:
                settled = 0
            elif at is None:
                return t
            elif _norm(t.save_path) != at:
                settled = 0  # the move is still queued behind others
            elif (
                t.is_complete
                and not t.progress_stale
                and (not proven or not t.is_stopped or checking_seen or lagged(rechecked_at))
            ):
                # (Running: a previous attempt proved it and started it.)
                settled += 1
                if settled >= max(1, tm.settle_polls):
                    return t
            elif t.is_stopped and rechecked_at is None:
                # qBittorrent (4.5.2, observed) does not recheck a STOPPED torrent after a move
                # onto existing files: it sits at stoppedDL 0% until asked. Asking is safe now
                # (stable, stopped: nothing can download) and it stays stopped afterwards.
                c.recheck(h)
                rechecked_at, checking_seen, settled, delay = clock(), False, 0, tm.poll_initial_s
            elif t.is_stopped and not checking_seen and clock() - rechecked_at < grace:
                settled = 0  # our recheck has not shown up yet (the API lags by its refresh interval)
            elif require_complete:
                raise VerificationFailed(f"torrent {h} is {_progress_of(t)} after the recheck at {at}")
            else:
                settled += 1
                if settled >= max(1, tm.settle_polls):
                    return t
            if clock() >= deadline:
                raise _unsettled(t, at, budget)
            self._hook("poll", gid, seq, s)
            self.ctx.sleep(delay)
            delay = min(delay * 1.5, tm.poll_max_s)

    def _missing_files(self, c: ClientPort, t, at: str, rechecked_at: float | None, checking_seen: bool) -> bool:
        """A rollback's torrent in missingFiles at ``at``: recheck it once (True when asked now).

        qBittorrent (4.5.2) restarted while the old links were hidden flags the torrent
        missingFiles and keeps the flag, stopped or not, until a recheck or a start clears it:
        the links coming back changes nothing by itself, so every resume would see it again. A
        recheck is safe once qBittorrent's save path and libtorrent's are both ``at`` (no move of
        its own can follow) and it is stopped first (the state hides whether it runs; a recheck
        of a stopped torrent leaves it stopped). The API shows the old state until the check
        shows up (its refresh lag), hence the grace; a check that ran and still ends here
        means the files really are missing."""
        h = t.hash
        if _norm(t.save_path) != at or not _storage_at(t, at):
            raise VerificationFailed(
                f"torrent {h} went to state missingFiles at {t.save_path} (files {t.content_path})"
            )
        if rechecked_at is None:
            c.stop(h)
            c.recheck(h)
            return True
        if checking_seen or self.ctx.clock() - rechecked_at >= self._recheck_grace(c):
            raise VerificationFailed(f"torrent {h} is still missingFiles at {at} after a recheck")
        return False  # our recheck has not shown up yet

    def _trace(self, level: int, what: str, t) -> None:
        """One line per look at a torrent (``-vv`` shows each poll): the sequence of states is what a
        failure seen only under load must be read from (design.md, "A rollback that needs two resumes")."""
        self.log.log(
            level,
            "%s %s: %s at %s (files %s), %.1f%%",
            what,
            t.hash,
            t.state,
            t.save_path,
            t.content_path,
            t.progress * 100,
        )

    def _old_links(self, c: ClientPort, s: Relocate) -> list[str]:
        """The torrent's wanted files at its old save path (skipped ones are never moved nor built)."""
        return [os.path.join(_norm(s.from_path), f.name) for f in c.files(s.torrent) if f.wanted]

    def _settle_storage(self, run_id: int, c: ClientPort, s: Relocate, t, budget: float, at: _At):
        """The torrent at ``to_path`` in qBittorrent's eyes AND libtorrent's.

        After qBittorrent restarted inside our move it may report the new save path and a
        complete stopped torrent while libtorrent's files are still at the old place: its own
        Overwrite move is pending and runs on the next check (a start would trigger it). Run it
        now, stopped and with the old links hidden, through a recheck: it finds nothing to copy,
        and the check after it (``_wait``) proves the view. Running, it is left alone (failed)."""
        h, to_path = s.torrent, _norm(s.to_path)
        if _storage_at(t, to_path):
            return t
        where = t.content_path or "a place qBittorrent does not report"
        if not t.is_stopped:
            raise UnsafeOperation(
                f"torrent {h}: qBittorrent has it at {to_path} but its files are still at {where}, "
                "and it is running: its own move would overwrite the view in place; not touching it"
            )
        self.log.warning("torrent %s: qBittorrent's own move to %s is pending (files at %s)", h, to_path, where)
        self._hide_old_links(run_id, c, s, at.step_id)
        c.recheck(h)
        # Its stopped 100 % until that check shows up is the one cached before: proven, from now.
        t = self._wait(c, s, to_path, budget, "", at.seq, proven=True, rechecked_at=self.ctx.clock())
        if not _storage_at(t, to_path):
            raise VerificationFailed(f"torrent {h}: qBittorrent has it at {to_path} but its files are at {where}")
        return t

    def _wait_stopped(self, c: ClientPort, h: str) -> None:
        """Poll until qBittorrent shows the torrent stopped (its API lags a stop by its refresh interval)."""
        tm, clock = self.timing, self.ctx.clock
        deadline, delay = clock() + self._recheck_grace(c), tm.poll_initial_s
        while not (t := c.torrent(h)).is_stopped:
            if clock() >= deadline:
                raise VerificationFailed(f"torrent {h} did not stop (state {t.state}): not relocating it")
            self.ctx.sleep(delay)  # no "poll" hook: the crash tests' poll point means "after setLocation"
            delay = min(delay * 1.5, tm.poll_max_s)

    def _hide_old_links(self, run_id: int, c: ClientPort, s: Relocate, step_id: int) -> int:
        """Move the old links into this run's ``-moving`` holding folder before ``setLocation``.

        If qBittorrent dies before libtorrent's move and its resume data catch up, it restarts
        into a move of its own in Overwrite mode, which copies each old file INTO the file at
        the new place: on a promote that is the library's inode (truncated and rewritten, seen
        on 4.5.2). libtorrent skips files whose source is missing, so hidden old links make that
        move a no-op. Our own setLocation keeps existing destination files either way. Nothing
        is deleted: ``_unhide_old_links`` puts them back once the torrent has settled, and a
        rollback puts them back before moving the torrent back. Only for a client that moves
        files itself (``relocation_moves_files``; unknown: assumed to).

        Journal first: the paths are recorded in the step (``_hidden``) before the first is
        hidden, for a rollback of a torrent removed from its client meanwhile (``_undo_gone``), with
        the holding folder's identity each will sit in (``_hidden_in``): a put-back, resumed after a
        crash too, that finds that folder gone or another says so (HoldingGone), never "absent".
        An identity an earlier attempt journaled is kept: its links may be held there already."""
        roots, n = self.ctx.seeding_roots, 0
        if not _hides_from(c):
            return 0
        links = self._old_links(c, s)
        held_in = self.journal.hidden_in(step_id)
        held_in.update(fsops.holding_ids([p for p in links if p not in held_in], roots=roots))
        self.journal.set_hidden(step_id, links, held_in)
        for p in links:
            res = fsops.hide_during_move(p, roots=roots, run=run_id, catalog=self.catalog, holding=held_in[p])
            n += res["status"] == "hidden"
            if "carry" in res:
                self._carried[p] = res["carry"]  # lost on a crash: the delete then reads the file again
        return n

    def _put_back(self, run_id: int, p: str, step_id: int, held_in: dict[str, list[int]]) -> dict:
        """``fsops.unhide_after_move`` of one old link, checked against the holding folder the
        journal recorded for it (none for a row of an older qbhook), forgotten once it is back."""
        ident = held_in.get(p)
        return fsops.unhide_after_move(
            p,
            roots=self.ctx.seeding_roots,
            run=run_id,
            catalog=self.catalog,
            carry=self._carried.pop(p, None),
            holding=ident,
            on_back=None if ident is None else functools.partial(self.journal.put_back, step_id, p),
        )

    def _unhide_old_links(self, run_id: int, c: ClientPort, s: Relocate, step_id: int) -> int:
        n, held_in = 0, self.journal.hidden_in(step_id)
        for p in self._old_links(c, s):
            n += self._put_back(run_id, p, step_id, held_in)["status"] == "restored"
        return n

    def _unhide_if_home(self, run_id: int, c: ClientPort, s: Relocate, t, step_id: int) -> None:
        """Put the old links back if ``t`` is at the old place in qBittorrent's eyes and libtorrent's,
        and not moving: no move of qBittorrent's own can follow then (its save path is where the files
        are), and any check from here on must find them, not missingFiles or 0 %."""
        from_path = _norm(s.from_path)
        if not t.is_moving and _norm(t.save_path) == from_path and _storage_at(t, from_path):
            self._unhide_old_links(run_id, c, s, step_id)

    def _stop_sharers(self, st: _GroupRun, c: ClientPort, s: Relocate, r: _Reloc) -> None:
        """Stop the group's other torrents that still seed from any of ``s``'s old paths.

        Cross-seeds of one save path share not only inodes but paths: hiding ``s``'s old links
        takes their files away too, and a running one would go to missingFiles (or error) on its
        next read. Stopped, it reads nothing until ``_start_sharers`` runs with the links back.
        A sibling with its own paths (other links of the same inodes) is not touched: hiding a
        path leaves the inode's other links where they are. Each is noted in ``r.sharers`` (and
        in ``r.forced`` if it ran force-started) and journaled before it is stopped (journal
        first, act second), so a failure part-way, or a kill, still starts the ones already
        stopped: the rollback, or the resumed relocation, reads them back. Nothing is hidden
        from a client that does not move files itself.

        One in a transition (checking, moving, checkingResumeData) is waited for first, within
        its own budget, nothing hidden yet (lesson 3: stopped mid-check it ends stoppedDL at
        partial progress, and a check under hidden paths finds nothing). Waited for rather than
        refused: a cross-seed is checked right after it is added, and a refusal would roll the
        whole group back for a state that ends by itself. One that does not settle (error,
        missingFiles, out of budget) fails the relocation before anything is hidden."""
        if not _hides_from(c):
            return
        mine = set(self._old_links(c, s))
        for o in st.plan.steps:
            # Every client's: a torrent of another client at the same save path reads these paths too.
            if not isinstance(o, Relocate) or (o.instance, o.torrent) == (s.instance, s.torrent):
                continue
            oc = self._client(o.instance)
            if not mine & set(self._old_links(oc, o)):
                continue
            t = oc.torrent(o.torrent)
            if not t.is_stable:
                self.log.info("torrent %s, seeding %s's old paths, is %s: waiting", o.torrent, s.torrent, t.state)
                t = self._wait(oc, o, None, self.timing.budget(o.size), st.plan.group_id)
            # A stopped one (rTorrent's paused too: is_stopped) reads nothing: left as it is.
            if t.is_stopped or not _storage_at(t, _norm(o.from_path)):
                continue  # (one stopped before a crash is journaled already: the resumed move starts it)
            key = (o.instance, o.torrent)
            if key not in r.sharers:  # else started by hand since the crash: stopped again
                r.sharers.append(key)
            if t.is_forced and key not in r.forced:
                r.forced.append(key)
            self.journal.set_sharers(r.step_id, s.instance, r.sharers, r.forced)
            oc.stop(o.torrent)
            self._wait_stopped(oc, o.torrent)

    def _start_sharers(self, st: _GroupRun, r: _Reloc) -> None:
        """Start again the torrents ``_stop_sharers`` stopped, now that their paths are back
        (forced, each that ran forced), each through its own client. Each was running when
        stopped (a stopped or paused one is never stopped), so started is as it was found.

        Each leaves the journal only once started (act, then record): killed in between, the
        next run finds it running and leaves it so; never forgotten while stopped. One in a
        transition (checkingResumeData after a restart, a check) is waited for first, within its
        own budget, as ``_stop_sharers`` does: left stopped for a state that ends by itself, it
        would seed nothing again. One that is not complete and stable then (lesson 3: never
        started before 100 % after a check) is left stopped and named: a warning, the group's
        outcome and an alert (``_report_left_stopped``), since it seeds nothing until a person looks."""
        while r.sharers:
            key = r.sharers[0]
            instance, h = key
            c = self._client(instance)
            try:
                t = c.torrent(h)
            except UnknownTorrent:  # removed from the client meanwhile: nothing left to start
                self.log.warning("torrent %s, stopped while %s's old paths were hidden, is gone", h, r.step.torrent)
                t = None
            t = self._sharer_settled(st, c, r, key, t)
            if t is not None and t.is_stopped and t.is_complete and t.is_stable:
                c.start(h, forced=key in r.forced)
                self.journal.forget_stopped(instance, h)
            elif t is not None and (t.is_stopped or not t.is_stable):
                why = f"{t.state} at {t.progress * 100:.1f}%"
                self.log.warning(
                    "torrent %s, stopped while %s's old paths were hidden, is not started again: %s",
                    h,
                    r.step.torrent,
                    why,
                )
                st.left_stopped.append(f"{_sharer_name(r, key)} ({why})")
                # Journal first: its own relocation must know it ran before we stopped it.
                self.journal.set_left_stopped(r.step_id, instance, h, key in r.forced)
            r.sharers.pop(0)
            self.journal.set_sharers(r.step_id, r.step.instance, r.sharers, r.forced)

    def _sharer_settled(self, st: _GroupRun, c: ClientPort, r: _Reloc, key: tuple[str, str], t):
        """``_start_sharers``' look at sharer ``key`` (instance, hash; ``t``, through its client
        ``c``) once its transition ended (``_wait``, within its own size budget); the last look if
        it does not settle (error, missingFiles, out of budget); None once it is gone."""
        if t is None or t.is_stable:
            return t
        h = key[1]
        o = next((o for o in st.plan.steps if isinstance(o, Relocate) and (o.instance, o.torrent) == key), None)
        if o is None:  # not of this group's plan: nothing to size a wait by, so no wait
            return t
        self.log.info(
            "torrent %s, stopped while %s's old paths were hidden, is %s: waiting", h, r.step.torrent, t.state
        )
        try:
            try:
                return self._wait(c, o, None, self.timing.budget(o.size), st.plan.group_id)
            except VerificationFailed:
                return c.torrent(h)
        except UnknownTorrent:
            self.log.warning("torrent %s, stopped while %s's old paths were hidden, is gone", h, r.step.torrent)
            return None

    def _report_left_stopped(self, st: _GroupRun) -> None:
        """Name in the group's outcome (the run's summary, the journal's group state) and in an
        alert the torrents ``_start_sharers`` left stopped."""
        if not st.left_stopped:
            return
        o = st.outcome
        note = f"not started again (start by hand once complete): {', '.join(st.left_stopped)}"
        o.reason = f"{o.reason}; {note}" if o.reason else note
        self.journal.set_group(st.plan.group_id, st.run_id, o.status, o.reason)
        _notify.emit("left_stopped", f"group {st.plan.group_id}: {note}", "warning")

    def _check_views_unchanged(self, st: _GroupRun) -> None:
        """The backstop: every view file still has the inode, size, mtime and ctime verify_view saw.

        Nothing after verify_view may write into a view file (qBittorrent's move keeps existing
        files, its recheck only reads): a change means something wrote into it, and on a promote
        a view file IS a library file. The content hash verify_view proved stays valid exactly
        while these facts do (the catalog's cache keys on them), so no re-read is needed. A
        change stops the group where it is (``_fail``: no rollback, no delete, its torrents
        stopped so none downloads into the changed files) with an alert."""
        changed = []
        with self.ctx.reader() as reader:
            for path, facts in st.seen.items():
                # Through its verified folder: a folder swapped for a symlink (even to the very
                # folder, moved aside) is a change, never "the same facts" read through it.
                try:
                    got = reader.lstat_any(path)
                    now = ("gone",) if got is None else _facts_of(got)
                except FolderRefused:
                    now = ("refused",)
                except OSError as e:
                    now = (e.strerror,)
                if now != tuple(facts):
                    changed.append(path)
        if not changed:
            return
        st.view_changed = True
        raise VerificationFailed(
            f"{VIEW_CHANGED} after verify_view (library files are view files on a promote): "
            f"{', '.join(changed[:5])}{' and more' if len(changed) > 5 else ''}; group stopped, nothing deleted",
            hint="compare those files with their library copies before anything else; qbhook will not touch this group",
        )

    def _undo_relocation(self, st: _GroupRun, r: _Reloc) -> dict:
        """Put a torrent back where this run found it, as it was (idempotent)."""
        s = r.step
        if not _at_rest(s.observed, s.from_path):
            # We cannot have moved it: it was not at the old place, complete and stable when last
            # seen before any action of ours (``_issue_move`` journals that look before acting).
            return {"moved_back": False, "note": "never moved"}
        c = self._client(s.instance)
        try:
            return self._move_back(st, c, r)
        except UnknownTorrent:
            if c.find(s.torrent) is not None:
                raise  # another torrent is unknown, not this one
            return self._undo_gone(st, c, r)

    def _move_back(self, st: _GroupRun, c: ClientPort, r: _Reloc) -> dict:
        """``_undo_relocation`` of a torrent its client still has."""
        s, run_id = r.step, st.run_id
        obs = s.observed or {}
        from_path, to_path = _norm(s.from_path), _norm(s.to_path)
        h, budget = s.torrent, self.timing.budget(s.size)
        t = c.torrent(h)
        self._trace(logging.INFO, "rollback", t)
        # Never moved (killed between hiding and setLocation, or qBittorrent killed before its new
        # save path was written): nothing of qBittorrent's is pending, so they come back first.
        self._unhide_if_home(run_id, c, s, t, r.step_id)
        t = self._wait(c, s, None, budget, recheck_missing=True)
        where = _norm(t.save_path)
        moved_back = False
        if where == to_path:
            if not t.is_stopped:
                c.stop(h)  # never leave an incomplete torrent running, nor let the recheck back start one
            if t.download_path:
                c.set_download_path(h, "")
            if _storage_at(t, to_path):
                # libtorrent's files are at the view: the hidden old links come back first, so the
                # move back finds them and keeps them. (Files still at the old place: qBittorrent's
                # own move is pending; the setLocation below cancels it, and they come back after.)
                self._unhide_old_links(run_id, c, s, r.step_id)
            # The old files were never touched (nothing is deleted before verify_group), so the
            # move back finds them in place, keeps them and rechecks.
            c.set_location(h, from_path)
            moved_back = True
        elif where != from_path:
            raise UnsafeOperation(f"torrent {h} is at {t.save_path}, neither {from_path} nor {to_path}: not moving it")
        self._unhide_if_home(run_id, c, s, c.torrent(h), r.step_id)  # before any check: hidden, it finds nothing
        # Also when it already is back (a resumed rollback): a stopped torrent may still wait for its recheck.
        # Moved back stopped onto its old links, it shows the progress cached before the move (100 %)
        # for a refresh interval, as at the new place: that counts only once a recheck was seen.
        proven = not _checks_on_move(c)
        t = self._wait(c, s, from_path, budget, require_complete=False, recheck_missing=True, proven=proven)
        # Back in qBittorrent's eyes and libtorrent's: no move of its own can follow. A check that
        # ran while they were hidden saw nothing there: check again with them back.
        if _storage_at(t, from_path) and self._unhide_old_links(run_id, c, s, r.step_id) and not t.is_complete:
            t = self._wait(c, s, from_path, budget, require_complete=False, proven=proven)
        if _storage_at(t, from_path):
            self._start_sharers(st, r)
        if not t.is_complete:
            if not t.is_stopped:
                c.stop(h)
            raise VerificationFailed(
                f"torrent {h} is back at {from_path} but at {t.progress * 100:.1f}%; it is stopped and needs attention"
            )
        self._settings_back(st, c, h, obs, t, from_path)
        if _as_found(c, h, obs, t, was_running=bool(obs.get("was_running"))):
            self.journal.forget_stopped(s.instance, h)
        self._tags_back(st, c, s, obs)
        return {"moved_back": moved_back, "state": t.state}

    def _tags_back(self, st: _GroupRun, c: ClientPort, s: Relocate, obs: dict) -> None:
        """A moved-back torrent's tags as found (``_tags_as_found``); a client refusing is logged:
        the data is back, which is what the rollback is for."""
        h = s.torrent
        drop, back = _tags_as_found(st.plan, s, obs, self.cfg.policy.relocated_tag)
        try:
            if drop:
                c.remove_tags(h, drop)  # the tags say "qbhook moved this": after a rollback it did not
            if back:
                c.add_tags(h, back)
        except QbtError as e:
            self.log.warning("torrent %s moved back but its tags are not as found (-%s +%s): %s", h, drop, back, e)

    def _settings_back(self, st: _GroupRun, c: ClientPort, h: str, obs: Mapping[str, Any], t, from_path: str) -> None:
        """Torrent ``h`` (``t``), back at ``from_path``, given the settings its move took, as its
        journaled look ``obs`` found them: the demote rollback's and a failed repair's one home.
        ATM on again if it had it (``setLocation`` turned it off), only through the client's guard
        (``_restore_atm``) and only with libtorrent's files back at ``from_path`` too: on while
        its own move is pending, it would move them. Under ATM the download path is its
        category's, which ATM brings back. Without ATM, the download path it had (cleared before
        the move, lesson 2) set again. A client refusing is named in the group's reason
        (``st.notes``): the torrent is back, which is what the undo is for."""
        if obs.get("auto_tmm"):
            if not t.auto_tmm and _storage_at(t, from_path):
                self._restore_atm(st, c, h, from_path)
            return
        was = obs.get("download_path") or ""
        if was and _norm(t.download_path or "") != _norm(was):
            try:
                c.set_download_path(h, was)
            except QbhookError as e:
                self.log.warning("torrent %s moved back without its download path %s: %s", h, was, e.message)
                st.notes.append(f"download path {was} not set again for {h}: {e.message}")

    def _restore_atm(self, st: _GroupRun, c: ClientPort, h: str, from_path: str) -> None:
        """ATM on again for a torrent that had it (``setLocation`` turned it off), only through the
        client's guard: on only while its category's save path is ``from_path``, where it is now,
        so nothing moves (an ATM move overwrites files in place, hardlinked ones too). Refused, it
        stays off, and the group's reason says so."""
        try:
            c.set_auto_management(h, True, category_save_path=from_path)
        except UnsafeOperation as e:
            self.log.warning("torrent %s moved back with ATM off: %s", h, e.message)
            st.notes.append(f"ATM left off for {h}: turning it on could move it")
        except QbhookError as e:
            self.log.warning("torrent %s moved back with ATM off: %s", h, e.message)
            st.notes.append(f"ATM left off for {h}: {e.message}")

    def _undo_gone(self, st: _GroupRun, c: ClientPort, r: _Reloc) -> dict:
        """``_undo_relocation`` of a torrent removed from its client meanwhile (a ratio-limit
        removal, an *arr's "remove completed", a person): it moves nothing any more, and its
        files can no longer be asked for. Its hidden old links come back from the paths the
        journal recorded before hiding them (``_hidden``), each only inside its old save path,
        through fsops' verified folders; then the torrents stopped for them start. Nothing is
        deleted. Links another relocation's failed rollback holds (``held_back``), or that cannot
        come back (another file at the place, a folder swapped), stay held, named with where
        they are, and the sharers stay stopped: a person looks, then ``resume``."""
        s, run_id = r.step, st.run_id
        h, from_path = s.torrent, _norm(s.from_path)
        self.log.warning("torrent %s was removed from %s during its relocation", h, s.instance)
        folder = self._moving_folder(run_id, from_path)
        links = self.journal.hidden(r.step_id)
        if links is None:
            # Nothing journaled: nothing hidden yet, or hidden by a qbhook that did not journal
            # it. The holding folder tells which; qbhook cannot tell which held files are its.
            links = []
            if folder is not None and self._may_exist(folder):
                raise self._gone_held(r, folder, ["not journaled by the qbhook that hid them"])
        kept, held_in = [], self.journal.hidden_in(r.step_id)
        for p in links:
            if os.path.normpath(p) != p or not is_within(p, from_path) or p == from_path:
                kept.append(f"{p} is not inside {from_path}: not touched")
            elif p in st.held_back:
                kept.append(f"{p} stays hidden for another torrent's rollback")
            else:
                try:
                    self._put_back(run_id, p, r.step_id, held_in)
                except QbhookError as e:
                    kept.append(e.message)
                except OSError as e:
                    kept.append(f"cannot put {p} back: {e.strerror}")
        if kept:
            raise self._gone_held(r, folder, kept)
        self._start_sharers(st, r)
        return {"moved_back": False, "note": "torrent gone"}

    @staticmethod
    def _gone_held(r: _Reloc, folder: str | None, why: list[str]) -> UnsafeOperation:
        """``_undo_gone`` could not put everything back: the failure, naming where the old files are."""
        more = f" (and {len(why) - 1} more)" if len(why) > 1 else ""
        names = ", ".join(_sharer_name(r, k) for k in r.sharers)
        stopped = f"; {names} left stopped until they are back" if r.sharers else ""
        return UnsafeOperation(
            f"torrent {r.step.torrent} was removed from {r.step.instance} during its relocation; "
            f"its old files are held in {folder or 'no holding folder (not in a seeding root)'}, nothing deleted: "
            f"{why[0]}{more}{stopped}"
        )

    def _moving_folder(self, run_id: int, from_path: str) -> str | None:
        """Where ``hide_during_move`` holds ``from_path``'s links in this run (None: outside every seeding root)."""
        roots = [os.fspath(x) for x in self.ctx.seeding_roots if is_within(from_path, os.fspath(x))]
        if not roots:
            return None
        return os.path.normpath(fsops.holding_path(from_path, max(roots, key=len), fsops.moving_hold_key(run_id)))

    def _may_exist(self, path: str) -> bool:
        """Read through verified folders: True unless ``path`` surely is not there."""
        try:
            with self.ctx.reader() as reader:
                return reader.lstat_any(path) is not None
        except (OSError, FolderRefused, PathMapError):
            return True

    # ------------------------------------------------------------------ dry run

    def _dry_run(self, groups: list[GroupPlan]) -> RunSummary:
        """What apply would do; reads the filesystem (lstat) only, writes nothing."""
        summary = RunSummary(None, dry_run=True, status=RunStatus.PLANNED)
        for g in groups:
            o = GroupOutcome(
                g.group_id,
                g.action,
                GroupStatus.PLANNED,
                g.reason,
                bytes_copied=g.bytes_to_copy,
                bytes_freed=g.bytes_freed,
                torrents_relocated=sum(1 for s in g.steps if isinstance(s, Relocate)),
            )
            with self.ctx.reader() as reader:
                for s in g.steps:
                    o.steps.append({"kind": s.kind, "args": s.args, "now": _handler(s).probe(reader, s)})
            summary.groups.append(o)
        return summary


# --------------------------------------------------------------------------- the dispatch table


def _holders(paths: list[str]) -> set[str]:
    """Every path in ``paths`` and every folder above one: a content path among them holds one."""
    out = set()
    for p in paths:
        while p not in out:
            out.add(p)
            p = os.path.dirname(p)
    return out


def _inodes(paths: list[str]) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of each of ``paths`` still there (read-only)."""
    out = set()
    for p in paths:
        try:
            st = os.lstat(p)
        except OSError:
            continue
        out.add((st.st_dev, st.st_ino))
    return out


def _added_since(t, since: float, seen: Mapping[str, float] | None) -> bool:
    """Whether torrent ``t`` came after the plan's snapshot (``since``, slack included): by the
    client's added time, else (an rTorrent item with d.load_date 0) by when the torrent index
    first listed it, a hash a synced index never listed being younger than its last sync.
    ``seen`` None (the index never synced that client): not new, since reading the files of
    every such torrent for every group costs minutes on a large rTorrent; its content folder
    holding a doomed link still has its files read (``Executor._check_no_newcomer``)."""
    if t.added_on is not None:
        return t.added_on >= since
    if seen is None:
        return False
    first = seen.get(t.hash.lower())
    return first is None or first >= since


def _uses_doomed(c, t, doomed: set[str], inodes: set[tuple[int, int]], maps=()) -> str | None:
    """Which file of torrent ``t`` is a doomed path, or resolves (links followed) to a doomed inode,
    or dangles on the host but names one read through the clients' path_maps (``_reaches_mapped``)."""
    save = _norm(t.save_path)
    for f in c.files(t.hash):
        p = _norm(os.path.join(save, f.name))
        if p in doomed:
            return f"its file {p} is one this group deletes"
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            if _reaches_mapped(p, doomed, inodes, maps):
                return f"its file {p} links to a file this group deletes"
            continue
        if (st.st_dev, st.st_ino) in inodes:
            return f"its file {p} links to a file this group deletes"
    return None


def _reaches_mapped(p: str, doomed: set[str], inodes: set[tuple[int, int]], maps) -> bool:
    """Whether ``p``, a torrent's file that cannot be stat-ed, is a link whose target, read as a
    container's spelling through ``maps`` (every client's path_map, ``library_links.as_host``: the
    planner's tail matching and orphans read it so too), is a doomed path or a doomed inode.
    cross-seed in a container writes ``/data/...``, which dangles on the host: followed as it is,
    the newcomer looked like no user of the group's files, whose deletes left its links dangling.
    Read-only (realpath, stat): nothing is ever written through the link. A chain of ~1,000
    links planted by the torrent's user exhausts realpath's recursion (one frame a link): it was a
    RecursionError traceback failing the group (R74); the kernel follows no more than 40, so such a
    chain reaches nothing here. (Not ``facts.resolve_links``: its component budget gives up on a
    short chain padded with ``./`` that the kernel follows, R78.)"""
    if not maps:
        return False
    try:
        real = os.path.realpath(p)
    except (OSError, ValueError, RecursionError):
        return False
    if real == p:
        return False  # no link on the way: simply not there
    for host in library_links.as_host(real, maps):
        host = _norm(host)
        if host in doomed:
            return True
        try:
            st = os.stat(host)
        except (OSError, ValueError):
            continue
        if (st.st_dev, st.st_ino) in inodes:
            return True
    return False


def _unsettled(t, at: str | None, budget: float) -> VerificationFailed:
    return VerificationFailed(
        f"torrent {t.hash} did not settle{' at ' + at if at else ''} within "
        f"{budget:.0f}s (state {t.state}, at {t.save_path})",
        hint="qBittorrent may still be moving or checking; qbhook resume waits again",
    )


def _nothing(*_a) -> None:
    """No bookkeeping for this kind."""


def _never(*_a) -> bool:
    return False


def _as_planned(_ex: Executor, _st: _GroupRun, s: Step, _row: StepRow | None) -> Step:
    return s


def _to_do(_reader: FolderReader, _s: Step) -> str:
    return "to do"


@dataclass(frozen=True, slots=True)
class StepHandler:
    """What the executor does with one step kind.

    ``act`` carries the step out (idempotent: it may run again after a crash) and returns the
    result the journal records. The rest say how a resumed run accounts for a journaled step:
    ``replay`` for one a previous attempt finished, ``replay_failed`` for each journaled step of
    a group that had already failed (so its rollback knows what to undo), ``redo`` whether a
    finished step is repeated anyway (cheap read-only checks of a world that may have changed).
    ``prepare`` may add what was observed to the step before its intent is journaled;
    ``irreversible`` (None: never) whether a journaled step of this kind may have taken the group
    past the point of moving back, asked of the world for one only intended (``_may_have_deleted``).
    ``probe`` is the dry run's read-only look at the world; it, ``replay_failed`` and ``irreversible`` look
    through the ``FolderReader`` they are given (``ExecutorContext.reader``). Undo: relocations register
    themselves in the group's state as they act; ``Executor._fail`` moves them back.
    """

    act: Callable[[Executor, _GroupRun, Step, _At], dict]
    probe: Callable[[FolderReader, Step], str] = _to_do
    replay: Callable[[_GroupRun, int, Step, StepRow], None] = _nothing
    replay_failed: Callable[[_GroupRun, int, Step, StepRow, FolderReader], None] = _nothing
    redo: Callable[[Step, set, list], bool] = _never
    prepare: Callable[[Executor, _GroupRun, Step, StepRow | None], Step] = _as_planned
    irreversible: Callable[[FolderReader, Step, StepRow], bool] | None = None
    # Whether a finished step runs again when a resumed repair makes a file again that is gone
    # since (``Executor._reopen_after_remake``): it judged the files that were there.
    after_remake: bool = False


def _handler(step: Step) -> StepHandler:
    try:
        return HANDLERS[type(step)]
    except KeyError:
        raise UnsafeOperation(f"this qbhook cannot carry out a {step.kind!r} step") from None


def _probe_stat(reader: FolderReader, path: str) -> os.stat_result | str | None:
    """The dry run's look at ``path`` through its verified folder: its lstat, None if nothing is
    there (or it cannot be read), or why it is refused (a folder on the way is a symlink: the
    act would refuse it too, so the dry run says so instead of "to do" or "already gone")."""
    try:
        return reader.lstat_any(path)
    except FolderRefused as e:
        return f"refused: {e}"
    except (OSError, PathMapError):
        return None


def _probe_made(reader: FolderReader, s: Copy | Link | MkEmpty) -> str:
    st = _probe_stat(reader, s.dst)
    return st if isinstance(st, str) else "to do" if st is None else "something already there"


def _probe_delete(reader: FolderReader, s: Delete) -> str:
    st = _probe_stat(reader, s.path)
    return st if isinstance(st, str) else "already gone" if st is None else "to do"


_ACT_STATUSES = frozenset(s.value for s in fsops.ActStatus)  # what a make step's result says it did or found


def _made(act: fsops.Act) -> dict:
    """What the journal keeps of an act that put a view file in place: its result, and the inode,
    size and ctime its ``after`` stat proved that result for (``_record_leftover_views`` hands them
    to the leftover remover, which removes only that inode, unchanged since or re-proven)."""
    a = act.after
    return {**act, "dev": a.st_dev, "ino": a.st_ino, "size": a.st_size, "ctime_ns": a.st_ctime_ns}


def _replay_copy(st: _GroupRun, _seq: int, s: Copy, row: StepRow) -> None:
    st.outcome.bytes_copied += int((row.result or {}).get("bytes_written", 0))
    _relearn(st, s, row)


def _relearn(st: _GroupRun, s: Copy | Link, row: StepRow) -> None:
    """A finished copy or link planned without a hash: learn its hash again from the journal."""
    got = (row.result or {}).get("blake3")
    if s.blake3 is None and isinstance(got, str):
        st.learned[_norm(s.dst)] = got


def _replay_link(st: _GroupRun, _seq: int, s: Link, row: StepRow) -> None:
    _relearn(st, s, row)


def _replay_copy_failed(st: _GroupRun, seq: int, s: Copy, row: StepRow, _reader: FolderReader) -> None:
    if row.status == StepStatus.DONE:
        _replay_copy(st, seq, s, row)


def _replay_view(st: _GroupRun, _seq: int, s: VerifyView, row: StepRow) -> None:
    st.views[(s.instance, s.torrent, _norm(s.save_path))] = {rel: v[1] for rel, v in _view_files(s).items()}
    st.seen.update({p: tuple(f) for p, f in ((row.result or {}).get("seen") or {}).items()})


def _view_files(s: VerifyView) -> dict[str, tuple[str, int, str | None]]:
    """The view's files: name relative to its save path -> (full path, size, planned hash)."""
    save = _norm(s.save_path)
    out: dict[str, tuple[str, int, str | None]] = {}
    for f in s.files:
        full = _norm(f.path if os.path.isabs(f.path) else os.path.join(save, f.path))
        # Containment by whole components (paths.is_within): a string test on the relpath
        # would refuse a legitimate top-level "..nfo" the planner accepted, every sweep.
        if not is_within(full, save):
            raise UnsafeOperation(f"view file {full} is outside the save path {save}")
        out[os.path.relpath(full, save)] = (full, int(f.size), f.blake3)
    return out


def _check_unwanted(reader: FolderReader, h: str, name: str, current_save: str, save: str) -> None:
    """An unwanted (skipped) file of torrent ``h`` may go to the view at ``save`` from
    ``current_save``: nothing of it at the old place that the view lacks (qBittorrent would copy
    it unverified), and its place in the view empty or the old place's own inode
    (``facts.skipped_place_taken``: qBittorrent writes into what is there once the file is
    wanted). Read live right before setLocation: a file put there after planning is seen."""
    # Both facts through verified folders: a folder of either path swapped for a symlink could
    # make the old file look absent (or present in the view), and qBittorrent would then copy it
    # unverified or write into what is behind it. Such a folder refuses the step.
    what = f"torrent {h}: cannot check unwanted file {name}"
    old = _look(reader, os.path.join(current_save, name), what)
    if save == current_save:
        return  # a repair in place: the file's place is the one the torrent names already
    new = _look(reader, os.path.join(save, name), what)
    if old is not None and skipped_data_carried(old.st_size) and new is None:
        raise UnsafeOperation(
            f"torrent {h}: unwanted file {name} exists at {current_save} but not in "
            "the view: qBittorrent would copy it unverified"
        )
    ident = None if new is None else (new.st_dev, new.st_ino)
    if skipped_place_taken(ident, None if old is None else (old.st_dev, old.st_ino)):
        raise UnsafeOperation(f"torrent {h}: " + skipped_place_reason(os.path.join(save, name)))


def _look(reader: FolderReader, path: str, what: str) -> os.stat_result | None:
    """lstat of ``path`` through its verified folder (``FolderReader.lstat_any``: a path under no
    pool by its string), None if nothing is there. A folder on the way that is a symlink refuses
    the step, naming it: it never answers "nothing there" (what is behind it is not the pool's)."""
    try:
        return reader.lstat_any(path)
    except FolderRefused as e:
        raise UnsafeOperation(f"{what}: {e}", hint="qbhook never follows links below a pool root") from None


def _facts_of(st: os.stat_result) -> tuple:
    """What any write into a file changes: a write or truncate moves mtime and ctime (the kernel
    sets ctime; no unprivileged user can set it back), a replacement changes the inode."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _redo_view(s: VerifyView, relocated: set, _later: list) -> bool:
    # Read-only checks are cheap to repeat (cached hashes make a verified view cost a stat per
    # file) and the world may have changed while the run was down; not once the torrent moved.
    return (s.instance, s.torrent) not in relocated


def _tags_as_found(plan: GroupPlan, s: Relocate, obs: dict, relocated_tag: str) -> tuple[list[str], list[str]]:
    """(tags to take off, tags to put back) for torrent ``s.torrent`` moved back by a rollback:
    those its relocation (``relocated_tag``) and the group's Tag steps added that it lacked when
    first seen, and those the Tag steps removed that it had. A Tag step has no undo of its own:
    the relocation's observation, journaled before any of them acted, is what "as found" is,
    across a crash and a resume too. Observed before "tags" was journaled: the relocated tag only."""
    if "tags" not in obs:
        return ([relocated_tag] if relocated_tag and obs.get("had_relocated_tag") is False else []), []
    had = set(obs["tags"])
    mine = [
        t
        for t in plan.steps
        if isinstance(t, Tag) and t.instance == s.instance and t.torrent.lower() == s.torrent.lower()
    ]
    added = {a for t in mine for a in t.add} | ({relocated_tag} if relocated_tag else set())
    removed = {r for t in mine for r in t.remove}
    return sorted(added - had), sorted(removed & had)


def _start_planned(plan: GroupPlan, s: Relocate) -> bool:
    """Whether ``plan`` starts the torrent relocation ``s`` moves in a Start step of its own (after
    verify_group): then the relocation leaves it stopped. A plan an older version made has none."""
    key = (s.instance, s.torrent.lower())
    return any((x.instance, x.torrent.lower()) == key for x in torrent_starts(plan.steps))


def _redo_group(_s: VerifyGroup, _relocated: set, later: list) -> bool:
    return any(isinstance(s, Delete) and (r is None or r.status != StepStatus.DONE) for _q, s, r in later)


def _sharer_name(r: _Reloc, key: tuple[str, str]) -> str:
    """Sharer ``key`` as a person reads it: its hash, with its client when not the relocation's own."""
    instance, h = key
    return h if instance == r.step.instance else f"{h} in {instance}"


def _reloc_of(seq: int, row: StepRow) -> _Reloc:
    return _Reloc(seq, row.id, row.status, row.step, sharers_of(row.args), forced_sharers_of(row.args))


def _replay_relocate(st: _GroupRun, seq: int, _s: Relocate, row: StepRow) -> None:
    st.relocs.append(_reloc_of(seq, row))
    st.outcome.torrents_relocated += 1


def _replay_relocate_failed(st: _GroupRun, seq: int, _s: Relocate, row: StepRow, _reader: FolderReader) -> None:
    if row.status in (StepStatus.DONE, StepStatus.FAILED):
        st.relocs.append(_reloc_of(seq, row))


def _replay_delete(st: _GroupRun, _seq: int, _s: Delete, row: StepRow) -> None:
    st.deletes_started = True
    st.outcome.bytes_freed += int((row.result or {}).get("bytes_freed", 0))
    st.outcome.bytes_freed_at_least |= bool((row.result or {}).get("bytes_freed_unknown"))


def _replay_delete_failed(st: _GroupRun, _seq: int, s: Delete, row: StepRow, reader: FolderReader) -> None:
    st.deletes_started = st.deletes_started or _may_have_deleted(reader, s, row)


def _may_have_deleted(reader: FolderReader, s: Delete, row: StepRow) -> bool:
    """Whether journaled delete ``row`` may have removed its link: a done one did. An intended
    or failed one raised before unlinking, unless it was killed (or what failed came) after it,
    and the gap between the intent and the unlink is long (the sync after a big copy, client
    listings, re-hashing the link): the world decides, not the row. Still there means the very
    planned file (regular, its inode, its size); anything else may be the delete's doing.
    Read through its verified folder: a folder swapped for a symlink to a folder holding a file
    of that name proves nothing, and taken as "still there" it rolled the group back onto old
    paths a delete had already emptied. Unproven means "deletes may have begun": the group
    stays at its verified new place."""
    if row.status == StepStatus.DONE:
        return True
    try:
        now = reader.lstat_any(s.path)
    except (OSError, FolderRefused, PathMapError):
        return True
    return (
        now is None
        or not stat_mod.S_ISREG(now.st_mode)
        or now.st_ino != s.ino
        or (s.size is not None and now.st_size != s.size)
    )


def _repair_row(st: _GroupRun, rows: list[StepRow]) -> tuple[Repair | None, StepRow | None]:
    """A repair group's Repair step and its row of ``rows``, the run's journal (None: not journaled yet)."""
    seq, s = next(((q, x) for q, x in enumerate(st.plan.steps) if isinstance(x, Repair)), (None, None))
    if s is None:
        return None, None
    abs_seq = min(st.seqs) + seq if st.seqs else seq
    return s, next((r for r in rows if r.seq == abs_seq and r.kind == Repair.kind), None)


def _repair_started_it(row: StepRow | None) -> bool:
    """A repair's Repair step ``row`` started its torrent after its recheck (``_started``, journaled
    right before the start) and no look since saw it stopped (``_seen_stopped``: a person's stop while
    qbhook was down, or ``_repair_quiet``'s, then also ``_stopped_by_us``): a run of it is then this
    step's start, not a person's.
    Not its outcome: a result survives a remake's ``Journal.reopen`` (a torrent a person started
    after this run saw it stopped was said started by the repair), and a kill between the start and
    the outcome leaves none (a torrent it started was said a person's: "start it yourself", R119).
    A row journaled before ``_started`` existed is judged by its outcome, the older rule (R120: a
    run killed by an older qbhook and resumed after the upgrade was told "start it yourself")."""
    if row is None:
        return False
    return bool(row.args.get("_started", row.result is not None)) and not row.args.get("_seen_stopped")


def _repair_found(st: _GroupRun, rows: list[StepRow]) -> dict | None:
    """How ``_repair_quiet`` first found a repair's torrent, journaled in ``rows``, the run's (``_found``), or None."""
    for r in rows:
        if r.group_id == st.plan.group_id and r.seq in st.seqs and r.args.get("_found"):
            return r.args["_found"]
    return None


def _recorded_leftovers(st: _GroupRun, rows: list[StepRow]) -> set:
    """The paths a group's leftover view rows of ``rows`` (the run's journal) name."""
    return {r.args.get("path") for r in rows if r.group_id == st.plan.group_id and r.kind == LEFTOVER_KIND}


def _passing(e: BaseException) -> bool:
    """A failure a later look may not meet: a client that does not answer (not up yet after a
    reboot: unreachable is exit 4, an unknown hash or an unreadable record is an answer), a
    connection error, torrents checking (``_NotSettled``). After deletes began it pauses the
    group (``Executor._stop_after_deletes``) instead of stopping it for good."""
    # Only no answer at all: every QbtError has exit code 4, a refusal (HTTP 403, a login
    # failed), an XML-RPC fault and a client name the config lacks too, and those never pass by
    # themselves: paused on them, a group blocked serve's worker for good (R21).
    return isinstance(e, (QbtUnreachable, RtorrentUnreachable, _NotSettled, ConnectionError, TimeoutError))


def _replay_converge(st: _GroupRun, _seq: int, _s: Converge, row: StepRow) -> None:
    st.outcome.bytes_freed += int((row.result or {}).get("bytes_freed", 0))
    st.outcome.bytes_freed_at_least |= bool((row.result or {}).get("bytes_freed_unknown"))


# --------------------------------------------------------------------------- resumed bytes freed
#
# A converge batch journals its outcomes only when it ends (``_Batch``), a delete when its unlink
# returns: killed in between, a done relink reads ``intended`` and its resume answers ``already``
# (a done unlink: ``absent``), with nothing freed, and the bytes the killed attempt freed were
# never counted: history, the status page, qbhook_freed_bytes_total and the notification
# under-reported for good. The relink's own figure comes from the kernel (the replaced name's
# link count right before the rename); afterwards the victim inode has no name to look at, so the
# resume decides from what it can still see, and no extra write is made on the batch's hot path.
#
# The victim's links: a relink's are the paths the catalog knew of the inode before this attempt
# records anything, when the catalog still names the step's path as that very inode (no finished
# run recorded its relink: the killed attempt did it) and its link count is that many paths (each
# link the last scan saw is known); a delete's are the plan's ``seeding_links`` (``safe_unlink``
# unlinks only while the inode has no other). When none of them is the inode any more, its last
# link went and its bytes are counted freed. What no look can rule out: a link made since by a
# writer of a seeding folder, through a name it knew, somewhere qbhook does not look. Anything
# less than that evidence (the catalog rescanned or recorded since, a folder refused) is not
# counted, and the figure is marked a lower bound (``bytes_freed_at_least``, shown "≥ N").


@dataclass(frozen=True, slots=True)
class _Victim:
    """The inode a resumed step's killed attempt may have freed: its number, size and every link it had."""

    ino: int
    size: int
    links: tuple[str, ...]


def _victim_known(catalog, s: Converge) -> _Victim | None:
    """The victim of relink ``s`` as the catalog knows it, None when that proves nothing (see above)."""
    r = catalog.inode_by_path(s.path)
    if r is None or (r.fsid, r.ino, r.size) != (s.fsid, s.ino, s.size):
        return None
    links = tuple(os.fsdecode(p) for p, _pool in catalog.paths_of(r.id))
    return _Victim(s.ino, s.size, links) if r.nlink == len(links) else None


def _resumed_victim(reader: FolderReader, v: _Victim | None) -> bool | None:
    """Whether victim ``v`` is gone (True), still named by one of its links (False), or unknown (None).
    A link of its number and size is taken as the inode itself: a new file that got the freed number
    only makes the count smaller, never larger."""
    if v is None:
        return None
    try:
        for p in v.links:
            st = reader.lstat_any(p)
            if st is not None and stat_mod.S_ISREG(st.st_mode) and (st.st_ino, st.st_size) == (v.ino, v.size):
                return False
    except (OSError, FolderRefused, PathMapError):
        return None
    return True


def _kept_stat(reader: FolderReader, s: Converge) -> os.stat_result | None:
    """The lstat of converge step ``s``'s name if it holds the kept inode now (an attempt killed
    before its batch closed relinked it), else None: a regular file of the kept file's device and
    inode, as the relinker's "already" takes it, of the step's size."""
    st, kst = _probe_stat(reader, s.path), _probe_stat(reader, s.keep.path)
    if not (isinstance(st, os.stat_result) and isinstance(kst, os.stat_result)):
        return None
    same = (st.st_dev, st.st_ino) == (kst.st_dev, kst.st_ino) and kst.st_ino == s.keep.ino
    return st if same and stat_mod.S_ISREG(st.st_mode) and st.st_size == s.size else None


def _probe_converge(reader: FolderReader, s: Converge) -> str:
    st = _probe_stat(reader, s.path)
    if isinstance(st, str):
        return st
    if st is None:
        return "gone"
    return "to do" if st.st_ino == s.ino else "already relinked or changed"


HANDLERS: dict[type[Step], StepHandler] = {
    Copy: StepHandler(Executor._copy, probe=_probe_made, replay=_replay_copy, replay_failed=_replay_copy_failed),
    Link: StepHandler(Executor._link, probe=_probe_made, replay=_replay_link, prepare=Executor._note_dst),
    MkEmpty: StepHandler(Executor._mkempty, probe=_probe_made, prepare=Executor._note_dst),
    VerifyView: StepHandler(Executor._verify_view, replay=_replay_view, redo=_redo_view),
    Relocate: StepHandler(
        Executor._relocate, replay=_replay_relocate, replay_failed=_replay_relocate_failed, prepare=Executor._observe
    ),
    VerifyGroup: StepHandler(Executor._verify_group, redo=_redo_group, after_remake=True),
    Start: StepHandler(Executor._start),
    Delete: StepHandler(
        Executor._delete,
        probe=_probe_delete,
        replay=_replay_delete,
        replay_failed=_replay_delete_failed,
        irreversible=_may_have_deleted,
    ),
    PruneDirs: StepHandler(Executor._prune_dirs),
    Tag: StepHandler(Executor._tag),
    Converge: StepHandler(Executor._converge, probe=_probe_converge, replay=_replay_converge),
    Repair: StepHandler(Executor._repair, prepare=Executor._observe, after_remake=True),
}
