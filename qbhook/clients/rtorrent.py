"""rTorrent adapter over XML-RPC via SCGI, speaking the client port.

The model (verified on Debian's rtorrent 0.9.8, see docs/rtorrent.md):

* An item's ``d.directory`` is its content folder for a multi-file item and the
  folder holding the file for a single-file one. qBittorrent's ``save_path`` is
  the folder that holds the content in both cases, so for a multi-file item
  ``save_path`` is the parent of ``d.directory`` and file names get the item
  folder's own name (which may differ from ``d.name``) as their first part.
* Relocation happens while the item is closed, in ONE ``system.multicall``:
  ``d.stop``, ``d.close``, ``d.directory_base.set`` (the exact new content
  folder, or the new parent of a single file), ``d.check_hash``. rTorrent runs
  one request to the end before anything else, so no crash of qbhook can leave
  the item at the new place with the old place's bitfield unchecked: right
  after ``d.directory_base.set`` rTorrent still reports ``d.complete`` 1 and the
  old ``d.completed_bytes`` (observed), and only the hash check makes them true.
  ``d.directory.set`` is not used: for a multi-file item it appends ``d.name``
  to its argument, which names the wrong folder after a cross-seed rename.
* Completion is ``d.completed_bytes == d.size_bytes`` (``d.left_bytes`` 0);
  ``d.complete`` is a stored flag that lags until a hash check ends.
* States map onto qBittorrent 5's names (the normalized model of
  ``qbhook.clients.model``): hash failed -> ``error``; a check running
  (``RtItem.checking``) -> ``checkingUP``/``checkingDL``; closed, stopped (``d.state`` 0) or paused
  (started but inactive, or started and closed) -> ``stoppedUP``/``stoppedDL``; started and active ->
  ``uploading``/``stalledUP`` or ``downloading``/``stalledDL`` by rate. Paused keeps its
  own ``raw_state`` (``TorrentInfo.is_paused``): it is started, so a check's end resumes it
  (``DownloadList::hash_done``) and every guard stops it first; the relocation's ``d.stop`` ends
  it, and ``pause()`` (d.start, d.pause) puts it back after the check.
  ``d.message`` is not a state: with a dead tracker it always holds a tracker
  error.
* A check runs only while ``d.hashing`` != 0 AND ``d.hashing_failed`` is 0: 0.9.8 leaves
  ``d.hashing`` as it was when a check fails (``Manager::receive_hashing_changed``: files it
  cannot open set hash_failed; ``DownloadList::hash_done``'s ``!is_hash_checked()`` branch sets
  hash_failed and returns before ``d.hashing`` is set to 0), and ``d.stop`` does nothing to a
  stopped item. A failed item can still be relocated (a rollback must move it back): the
  relocation's ``d.close`` clears ``d.hashing`` and its ``d.check_hash`` clears hash_failed.
* A magnet's item, while rTorrent fetches its metadata, is a one-file item of one byte named
  ``<HEX>.meta`` in the folder it was added to (``d.is_meta`` 1); rTorrent then erases it and
  loads the real torrent. It has no metadata (``TorrentInfo.has_metadata``): where its data will
  be is not known, so its whole save folder is in use (orphans, R42). An rTorrent before 0.9.7
  has no ``d.is_meta``: its name says it there (``_meta_by_name``).
* Label: ``d.custom1`` (ruTorrent's convention, percent-encoded as ruTorrent
  writes it); tags: a comma-separated list in ``d.custom=qbhook_tags``
  (rTorrent has no tags). rTorrent knows only v1 hashes (upper-case); a v2 hash
  never names an rTorrent item.
* A name that is not UTF-8 reaches us mangled: rTorrent's XML-RPC (0.9.8
  ``object_to_xmlrpc``) sends every byte >= 0x80 and every control byte of a string
  xmlrpc-c refuses as UTF-8 as ``?``, the whole string (d.directory, d.name, f.path:
  each one string) with its UTF-8 parts too. The path it spells is not the real one
  (absent, or another file that has real ``?`` in its name), and the real files would
  look unreferenced (``qbhook orphans``). A path with ``?`` where a folder on its way
  holds a name rTorrent could have sent as that part, the spelled name there or not, is
  read as an unreadable record (``_spelled``), and so are two files of one item
  reported under one name with ``?``: the item is unreadable, named, rather than guess
  which file was meant. A name rTorrent sends as it is (UTF-8) could have been sent so
  only when another part of the same string may not be (``_misspelled``). With no such
  name (real ``?``, the item not downloaded yet or its data lost), it is an ordinary
  path, present or absent.
* Line ends reach us as line feeds: 0.9.8 builds every string with xmlrpc-c's
  ``xmlrpc_string_new``, which turns CR and CRLF into LF, so a reported ``\n`` may stand for
  ``\n``, ``\r`` or ``\r\n``. A name with ``\n`` is read as one with ``?`` is, by the same walk
  (``_misspelled``, ``_line_ended``): a name beside it on the host that rTorrent would send so,
  or two files of one item reported under one such name, make the item unreadable.
* An item that does not read (that, a number rTorrent cannot report, a single file's d.name
  that is not one path component, a d.directory that is no absolute ``..``-free path or, for a
  multi-file item, no folder of its own: it is the added-to folder + its unchecked
  ``name.utf-8``, so "." or "" names the shared folder, ``_directory``; a save path under no
  path_map prefix, ``_unread``) is that item's: a listing raises ``UnreadableItems`` naming it
  and carrying the items that read (``_rows``). The torrent index keeps it as not known and
  syncs the others; every other reader refuses on it, as on any unreadable record.
* Failures: an unknown hash is UnknownTorrent; no answer on the socket is
  RtorrentUnreachable (retried a few times first: reads and our writes are
  idempotent); an answer not complete within the SCGI deadline is RtorrentTimedOut,
  a kind of no answer (a busy rTorrent: single-threaded, its answers come slowly
  while it checks or moves data), not retried here (the deadline already waited; the executor's
  pause and resume is the retry); an answer over the size limit, a whole answer that is
  not readable XML-RPC (``scgi.ScgiMalformed``) and any other fault is RtorrentError; a hash
  check that fails or outlasts its size-scaled budget is VerificationFailed.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
import xmlrpc.client
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from qbhook.clients.model import (  # one rule for hashes, tags and a record's fields
    PAUSED_RAW_STATE,
    RecordFields,
    TorrentFile,
    TorrentInfo,
    check_hash,
    check_tags,
    is_path_component,
    parse_tags,
)
from qbhook.clients.port import FindOrRaise, FixedStateLag
from qbhook.clients.scgi import ScgiRefused, ScgiRpc, ScgiTimedOut, ScgiUnreachable
from qbhook.config import rc_hook_path_problem, rc_word_problem
from qbhook.errors import (
    RETRY_LOG,
    PathMapError,
    RtorrentError,
    RtorrentTimedOut,
    RtorrentUnreachable,
    UnknownTorrent,
    UnreadableItems,
    UnreadableRecord,
    UnsafeOperation,
    VerificationFailed,
)
from qbhook.numbers import said, shown
from qbhook.pathmap import PathMap
from qbhook.paths import normalize, refusal

__all__ = [
    "HOOK_EVENTS",
    "TAGS_KEY",
    "RtItem",
    "RtorrentClient",
    "check_budget",
    "event_rc_lines",
    "normalize_rt_state",
]

log = logging.getLogger(__name__)
retry_log = logging.getLogger(RETRY_LOG)

#: d.custom key holding qbhook's tags for an item.
TAGS_KEY = "qbhook_tags"

#: rTorrent's fault for a hash it does not have ("Could not find info-hash.").
FAULT_UNKNOWN_HASH = -501

# (command, extra argument) for each listed field, in RtItem order.
_ITEM_FIELDS: tuple[tuple[str, str | None], ...] = (
    ("d.hash", None),
    ("d.name", None),
    ("d.directory", None),
    ("d.is_multi_file", None),
    ("d.state", None),
    ("d.is_open", None),
    ("d.is_active", None),
    ("d.hashing", None),
    ("d.hashing_failed", None),
    ("d.complete", None),
    ("d.completed_bytes", None),
    ("d.size_bytes", None),
    ("d.left_bytes", None),
    ("d.custom1", None),
    ("d.custom", TAGS_KEY),
    ("d.load_date", None),
    ("d.timestamp.finished", None),
    ("d.up.rate", None),
    ("d.down.rate", None),
    ("d.message", None),
    ("d.size_files", None),  # to cut the file listing in batches of files (_file_batches)
    ("d.is_meta", None),  # last: an rTorrent before 0.9.7 lacks it (RtorrentClient._item_rows)
)

_FIELD_NAMES = tuple(cmd for cmd, _ in _ITEM_FIELDS)

# The highest number rTorrent 0.9.8 can report for each number of an item row (the lowest is 0
# for all): d.state is 0 (stopped) or 1 (started), d.hashing 0 to 3 (none, initial, on finish,
# rehash), and its byte counts are of its own d.size_bytes (FileList::completed_bytes never passes
# it, left_bytes is the rest). Outside it the row is unreadable, as a surrogate name is: a negative
# size or a progress past 1 must not reach a plan, a state or the index.
_HIGHEST: dict[str, int | str | None] = {
    "d.state": 1,
    "d.hashing": 3,
    "d.completed_bytes": "d.size_bytes",
    "d.left_bytes": "d.size_bytes",
    "d.load_date": None,
    "d.timestamp.finished": None,
    "d.up.rate": None,
    "d.down.rate": None,
    "d.size_files": None,
}


def _flag(f: RecordFields) -> Callable[[str], bool]:
    """rTorrent's flags are the integers 0 and 1."""

    def read(key: str) -> bool:
        value = f.number(key, int, None)
        if value not in (0, 1):
            raise f.bad(key, value, "not 0 or 1")
        return bool(value)

    return read


_FILE_FIELDS = ("f.path=", "f.size_bytes=", "f.priority=", "f.completed_chunks=", "f.size_chunks=")

# Files per system.multicall of f.multicall requests: about 272 bytes of XML a file, so a batch
# answers some 27 MB, under scgi.MAX_ANSWER_BYTES. Counted in items (500), a batch of music or
# ebook packs (thousands of files each) broke that cap. An item with more is a batch of its own.
_FILES_BUDGET = 100_000
# Items per such system.multicall too: the *request* must stay under rTorrent's
# network.xmlrpc.size_limit, whose default (xmlrpc-c's) is 512 KiB. One f.multicall request is
# ~540 bytes, so 500 send ~270 KB. Measured on rtorrent 0.9.8: 1,000 in one call were refused
# ("XML-RPC request too large"), 4,000 broke the pipe; with only the file budget every listing of
# an rTorrent holding more than ~970 small items failed, and with it all automation.
_ITEMS_PER_CALL = 500


def check_budget(size_bytes: int, base_s: float = 30.0, rate_bps: float = 50e6) -> float:
    """Seconds a hash check of ``size_bytes`` may take before it counts as stuck."""
    return base_s + max(int(size_bytes or 0), 0) / rate_bps


@dataclass(frozen=True, slots=True)
class RtItem:
    """One item exactly as rTorrent reported it (client paths)."""

    hash: str
    name: str
    directory: str
    is_multi_file: bool
    state: int
    is_open: bool
    is_active: bool
    hashing: int
    hashing_failed: bool
    complete: bool
    completed_bytes: int
    size_bytes: int
    left_bytes: int
    custom1: str
    tags_raw: str
    load_date: int
    finished: int
    up_rate: int
    down_rate: int
    message: str
    size_files: int
    is_meta: bool

    @classmethod
    def from_row(cls, row: Sequence[Any], instance: str = "?") -> RtItem:
        """Type one item row (``_ITEM_FIELDS`` order) by ``clients.model``'s rules: the hash is
        one, numbers are whole numbers in the range rTorrent can report (``_HIGHEST``: a byte count
        is 0 to d.size_bytes, so progress never passes 1), text is text, and a single file's name
        is one path component (it is joined under the save path). Else UnreadableRecord naming
        the field: a size of -5 or a d.state of 2 is no reading of the item, not a value to plan on."""
        where = f"rTorrent {instance!r}"
        if not isinstance(row, (list, tuple)) or len(row) != len(_ITEM_FIELDS):
            raise UnreadableRecord(f"{where}: an item row that is not {len(_ITEM_FIELDS)} fields: {shown(row, 80)}")
        f = RecordFields(dict(zip(_FIELD_NAMES, row, strict=True)), f"{where}: item {said(row[0], 70)}")
        h = f.hash("d.hash", 40)  # rTorrent knows v1 hashes only
        if h is None:
            raise f.bad("d.hash", row[0], "missing")
        f.what = f"{where}: item {h}"
        flag = _flag(f)
        multi = flag("d.is_multi_file")
        name = f.text("d.name")
        if not multi and not is_path_component(name):
            raise f.bad("d.name", name, "a single file's name must be one path component")
        size = f.number("d.size_bytes", int, None, 0)
        n = {key: f.number(key, int, None, 0, size if hi == "d.size_bytes" else hi) for key, hi in _HIGHEST.items()}
        return cls(
            hash=h,
            name=name,
            directory=f.text("d.directory"),
            is_multi_file=multi,
            state=n["d.state"],
            is_open=flag("d.is_open"),
            is_active=flag("d.is_active"),
            hashing=n["d.hashing"],
            hashing_failed=flag("d.hashing_failed"),
            complete=flag("d.complete"),
            completed_bytes=n["d.completed_bytes"],
            size_bytes=size,
            left_bytes=n["d.left_bytes"],
            custom1=f.text("d.custom1"),
            tags_raw=f.text("d.custom"),
            load_date=n["d.load_date"],
            finished=n["d.timestamp.finished"],
            up_rate=n["d.up.rate"],
            down_rate=n["d.down.rate"],
            message=f.text("d.message"),
            size_files=n["d.size_files"],
            is_meta=flag("d.is_meta"),
        )

    @property
    def raw_state(self) -> str:
        """rTorrent's own words for the state (kept in TorrentInfo.raw_state)."""
        if self.hashing_failed:
            return "hash_failed"
        if self.hashing:
            return f"hashing:{self.hashing}"
        if self.state == 0:
            return "closed" if not self.is_open else "stopped"
        # Started (d.state 1) but closed is paused too (d.close or d.pause of a started item, or
        # of one whose check was queued): a d.check_hash alone would end with DownloadList::hash_done
        # resuming it, so every guard that stops a paused item first must see it (R26).
        return "started" if self.is_open and self.is_active else PAUSED_RAW_STATE

    @property
    def checking(self) -> bool:
        """A hash check runs: a failed one leaves d.hashing non-zero (0.9.8, module docstring)."""
        return bool(self.hashing) and not self.hashing_failed

    @property
    def has_all_bytes(self) -> bool:
        return self.size_bytes > 0 and self.completed_bytes >= self.size_bytes and self.left_bytes == 0

    @property
    def progress_stale(self) -> bool:
        """Its byte count is the one it had when it closed, not one of its files now: 0.9.8 keeps the
        count and d.complete of a closed item, and a d.stop or d.pause while its check is still
        queued (DownloadList::pause sets d.hashing 0, no d.hashing_failed) leaves a relocated item
        closed at its new place at the old place's 100 %, never checked there (R26). A finished
        check leaves the item open. Only a relocation's wait reads it: an item a person closed is
        planned on its count as before, and its relocation's check is what vouches."""
        return not self.is_open


def normalize_rt_state(item: RtItem) -> str:
    """rTorrent's state in the qBittorrent 5 vocabulary the executor understands."""
    done = item.has_all_bytes
    if item.hashing_failed:
        return "error"
    if item.checking:
        return "checkingUP" if item.complete else "checkingDL"
    if not item.is_open or item.state == 0 or not item.is_active:
        # Closed, stopped and paused all transfer nothing and need d.start to run.
        return "stoppedUP" if done else "stoppedDL"
    if done:
        return "uploading" if item.up_rate > 0 else "stalledUP"
    return "downloading" if item.down_rate > 0 else "stalledDL"


def _mc(method: str, *params: Any) -> dict[str, Any]:
    return {"methodName": method, "params": list(params)}


class RtorrentClient(FindOrRaise, FixedStateLag):
    """One rTorrent instance, seen in host paths (implements ClientPort)."""

    # d.directory_base.set repoints the item and never copies a file (clients/port.py). Hiding
    # its old links would only make a restart's hash check find them missing: rTorrent then
    # clears the item's state ("Download registered as completed, but hash check returned
    # unfinished chunks") and ignores d.start even after a good recheck (0.9.8, seen).
    relocation_moves_files = False
    relocation_checks = True  # set_location's multicall ends in d.check_hash; d.hashing is live
    part_file = False  # a chunk shared with a skipped file is written into that file (clients/port.py)
    state_lag_s = 0.0  # answers are live: d.hashing is set by d.check_hash itself (clients/port.py)

    def __init__(
        self,
        name: str,
        address: str,
        path_map: PathMap | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.address = address
        # its messages say "rTorrent 'name' path ...", not qBittorrent's
        self.path_map = (path_map if path_map is not None else PathMap()).labelled(f"rTorrent {name!r}")
        try:
            self._rpc = ScgiRpc(address, timeout=timeout)
        except ValueError as exc:
            raise RtorrentError(
                f"rTorrent {name!r}: {exc}", hint="give the SCGI unix socket path or host:port"
            ) from None
        self._retries = max(1, retries)
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._asks_is_meta = True  # until this rTorrent says it has no d.is_meta (_item_rows)

    def __repr__(self) -> str:
        return f"RtorrentClient({self.name!r}, {self.address!r}, {self.path_map!r})"

    # -- plumbing -------------------------------------------------------

    @property
    def _label(self) -> str:
        """This client for a person, without its address (``QbtError.client``)."""
        return f"rTorrent {self.name!r}"

    def _call(self, what: str, method: str, *params: Any, torrent: str | None = None) -> Any:
        """One XML-RPC call with bounded retries on a dead socket; faults translated."""
        delay = self._backoff
        for attempt in range(1, self._retries + 1):
            try:
                return self._rpc.call(method, *params)
            except xmlrpc.client.Fault as fault:
                raise self._fault(what, fault, torrent) from None
            except ScgiTimedOut as exc:  # before ScgiRefused, its base: too slow is no answer, too large is one
                raise self._late(what, exc) from None
            except ScgiRefused as exc:  # too large or malformed: the same peer gives the same answer (scgi docstring)
                raise RtorrentError(f"rTorrent {self.name!r}: {what}: {exc}") from None
            except ScgiUnreachable as exc:
                if attempt >= self._retries:
                    # One line, as qBittorrent's: the retries a one-shot command does not log are counted.
                    raise RtorrentUnreachable(
                        f"rTorrent {self.name!r} ({self.address}): {what}: no answer ({attempt} attempts): {exc} "
                        "(is rtorrent running, and is network.scgi.open_local/open_port this address?)",
                        client=self._label,
                    ) from None
                retry_log.warning("rTorrent %s: %s: attempt %d failed (%s); retrying", self.name, what, attempt, exc)
                self._sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _late(self, what: str, exc: ScgiTimedOut) -> RtorrentTimedOut:
        # Not retried: the deadline already waited several socket timeouts. No answer, so the
        # executor pauses a group on it and resumes later: that is the retry.
        return RtorrentTimedOut(
            f"rTorrent {self.name!r} ({self.address}): {what}: no answer within {exc.deadline_s:.0f} s "
            f"({exc.received} bytes so far): busy checking or moving data? (a later try may pass)",
            client=self._label,
        )

    def _fault(self, what: str, fault: xmlrpc.client.Fault, torrent: str | None) -> Exception:
        if torrent is not None and fault.faultCode == FAULT_UNKNOWN_HASH:
            return self._unknown(torrent)
        return RtorrentError(
            f"rTorrent {self.name!r}: {what} refused: {said(fault.faultString)} (fault {shown(fault.faultCode)})"
        )

    def _multicall(self, what: str, calls: list[dict[str, Any]], torrent: str | None = None) -> list[Any]:
        """system.multicall; the first fault inside is raised like a top-level one."""
        answers = self._call(what, "system.multicall", calls, torrent=torrent)
        if not isinstance(answers, list) or len(answers) != len(calls):
            raise RtorrentError(f"rTorrent {self.name!r}: {what}: malformed multicall answer")
        out = []
        for answer in answers:
            if isinstance(answer, dict):  # {'faultCode': .., 'faultString': ..}
                raise self._fault(what, self._fault_of(what, answer), torrent)
            out.append(answer[0] if isinstance(answer, list) and len(answer) == 1 else answer)
        return out

    def _fault_of(self, what: str, answer: dict) -> xmlrpc.client.Fault:
        """A multicall's fault entry, read as hostile input: a faultCode that is not a plain whole
        number ("x", a list, an infinite double) was a ValueError traceback, and one raised inside
        a rollback abandoned it halfway."""
        code = answer.get("faultCode", 0)
        if type(code) is not int or abs(code) >= 2**63:
            raise RtorrentError(f"rTorrent {self.name!r}: {what}: malformed fault in its answer ({shown(code, 80)})")
        return xmlrpc.client.Fault(code, said(answer.get("faultString", "")))

    def _where(self, h: str) -> str:
        return f"rTorrent {self.name!r}: item {h}"

    def _unknown(self, any_hash: str) -> UnknownTorrent:
        return UnknownTorrent(f"rTorrent {self.name!r} has no torrent {any_hash}")

    def version(self) -> str:
        got = self._call("system.client_version", "system.client_version")
        if not isinstance(got, str):
            raise RtorrentError(f"rTorrent {self.name!r}: system.client_version: not text: {shown(got, 80)}")
        return got

    # -- reading --------------------------------------------------------

    def items(self) -> list[RtItem]:
        """Every item as rTorrent reports it (one d.multicall2); UnreadableItems if one does not read."""
        items, bad = self._rows()
        if bad:
            raise UnreadableItems(self._label, items, bad)
        return items

    def _rows(self) -> tuple[list[RtItem], _Unreadable]:
        """The items that read, and each one that does not by its hash (``UnreadableItems``): a row a
        torrent's author can make unreadable (a single file's d.name of ``../x``: libtorrent checks
        only ``name``, not ``name.utf-8``, which ``encoding.add = utf8`` makes d.name) must not stop
        the listing of every other item. A row whose hash does not read names no item: it does."""
        rows = self._item_rows(
            lambda fields: self._call(
                "list items", "d.multicall2", "", "main", *(f"{cmd}={arg}" if arg else f"{cmd}=" for cmd, arg in fields)
            )
        )
        if not isinstance(rows, list):
            raise UnreadableRecord(f"rTorrent {self.name!r}: list items: not a list of rows: {shown(rows, 80)}")
        items: list[RtItem] = []
        bad: _Unreadable = {}
        for row in rows:
            try:
                items.append(RtItem.from_row(row, self.name))
            except UnreadableRecord as e:
                h = _row_hash(row)
                if h is None:
                    raise
                bad[h] = (e.message, {"name": row[1], "save_path": row[2]})
        return items, bad

    def _item_rows(self, read: Callable[[tuple[tuple[str, str | None], ...]], Any]) -> Any:
        """``read(fields)``: item rows of ``fields`` (``_ITEM_FIELDS``), in that order. An rTorrent
        without d.is_meta (it came in 0.9.7, rakshasa/rtorrent 8140c3f: 0.9.6 and builds on it
        lack it) refuses the whole call, which would end every listing of it; it is asked without
        it from then on, each row's d.is_meta read from its name instead (``_meta_by_name``)."""
        if self._asks_is_meta:
            try:
                return read(_ITEM_FIELDS)
            except RtorrentError as e:
                # "Command "d.is_meta" does not exist." (d.multicall2), "Method 'd.is_meta' not defined"
                if type(e) is not RtorrentError or "d.is_meta" not in e.message:
                    raise
            log.warning("rTorrent %s has no d.is_meta (before 0.9.7): a magnet's item is known by its name", self.name)
            self._asks_is_meta = False
        rows = read(_ITEM_FIELDS[:-1])
        return [_meta_by_name(row) for row in rows] if isinstance(rows, list) else rows

    def item(self, any_hash: str) -> RtItem | None:
        """One item by hash (one system.multicall), None if rTorrent has no such item."""
        h = check_hash(any_hash)
        if len(h) != 40:
            return None  # rTorrent knows v1 hashes only
        target = h.upper()
        try:
            (row,) = self._item_rows(
                lambda fields: [
                    self._multicall(
                        f"read item {h}", [_mc(cmd, target, *([arg] if arg else [])) for cmd, arg in fields], torrent=h
                    )
                ]
            )
        except UnknownTorrent:
            return None
        item = RtItem.from_row(row, self.name)
        if item.hash != h:
            raise UnreadableRecord(f"rTorrent {self.name!r}: asked for item {h}, the answer is item {item.hash}")
        return item

    def _info(self, item: RtItem, listed: dict | None = None) -> TorrentInfo:
        """``listed``: the folders listed so far by this listing (``_misspelled``), shared by its items."""
        client_save, content_leaf = self._split(item)
        try:
            save = self.path_map.to_host(client_save)
        except PathMapError as exc:
            raise PathMapError(
                f"torrent {item.hash} ({shown(item.name, 80)}): save path: {exc.message}", hint=exc.hint
            ) from exc
        content = posixpath.join(save, content_leaf)
        client_content = posixpath.join(client_save, content_leaf)
        key = "d.directory" if _doubtful(item.directory) else "d.name"
        # two strings for a single file: its folder (d.directory) and its d.name (_misspelled)
        units = [client_content] if item.is_multi_file else [client_save, content_leaf]
        _spelled(self._where(item.hash), key, units, content, listed)
        done = item.has_all_bytes
        return TorrentInfo(
            instance=self.name,
            hash=item.hash,
            infohash_v1=item.hash,
            infohash_v2=None,
            name=item.name,
            save_path=save,
            download_path="",
            content_path=content,
            root_path=content if item.is_multi_file else "",
            client_save_path=client_save,
            client_content_path=client_content,
            auto_tmm=False,
            category=unquote(item.custom1),
            tags=parse_tags(item.tags_raw),
            state=normalize_rt_state(item),
            raw_state=item.raw_state,
            progress=1.0 if done else (item.completed_bytes / item.size_bytes if item.size_bytes else 0.0),
            amount_left=item.left_bytes,
            size=item.size_bytes,
            total_size=item.size_bytes,
            has_metadata=not item.is_meta,
            added_on=item.load_date or None,
            completion_on=item.finished or None,
            progress_stale=item.progress_stale,
        )

    def _split(self, item: RtItem) -> tuple[str, str]:
        """(client save path, content name under it) in qBittorrent's sense."""
        directory = _directory(self._where(item.hash), item.directory, item.is_multi_file, item.name)
        if item.is_multi_file:
            return posixpath.dirname(directory), posixpath.basename(directory)
        return directory, item.name

    def torrents(
        self,
        hashes: Iterable[str] | None = None,
        category: str | None = None,
        tag: str | None = None,
    ) -> list[TorrentInfo]:
        """Items, optionally filtered (all filters in Python: d.multicall2 cannot filter by hash)."""
        wanted = None if hashes is None else {check_hash(h) for h in hashes}
        if wanted is not None and not wanted:
            return []
        out = []
        listed: _Listed = {}  # one listing of a folder per call, not per item in it
        items, bad = self._rows()
        for item in items:
            if wanted is not None and item.hash not in wanted:
                continue  # rTorrent's id is its v1 hash, its only one (TorrentInfo.hashes)
            try:
                info = self._info(item, listed)
            except (UnreadableRecord, PathMapError) as e:  # this item only (_unread): a name spelled with "?", ...
                bad[item.hash] = _unread(item, e)
                continue
            if category is not None and info.category != category:
                continue
            if tag is not None and tag not in info.tags:
                continue
            out.append(info)
        bad = {h: why for h, why in bad.items() if wanted is None or h in wanted}
        if bad:  # its category and tags are unknown: kept whatever the filters
            raise UnreadableItems(self._label, out, bad)
        return out

    def find(self, any_hash: str) -> TorrentInfo | None:
        item = self.item(any_hash)
        return self._info(item) if item is not None else None

    def files(self, any_hash: str) -> list[TorrentFile]:
        """Files, names relative to the save path (one system.multicall)."""
        h = self._resolve(any_hash)
        multi, directory, name, rows = self._multicall(
            f"files of {h}",
            [
                _mc("d.is_multi_file", h.upper()),
                _mc("d.directory", h.upper()),
                _mc("d.name", h.upper()),  # a multi-file d.directory is read against it (_own_folder)
                _mc("f.multicall", h.upper(), "", *_FILE_FIELDS),
            ],
            torrent=any_hash,
        )
        # Read by the rules an item row is read by (RtItem.from_row): a "0" string or a list here
        # must not pass as a multi-file item, which would put every file under a folder it lacks.
        f = RecordFields({"d.is_multi_file": multi, "d.directory": directory, "d.name": name}, self._where(h))
        is_multi = _flag(f)("d.is_multi_file")
        client_dir = _directory(self._where(h), f.text("d.directory"), is_multi, f.text("d.name"))
        files = _files(rows, posixpath.basename(client_dir) if is_multi else "", self._where(h))
        if any(_doubtful(t.name) for t in files):
            save = self.path_map.to_host(posixpath.dirname(client_dir) if is_multi else client_dir)
            _spelled_files(self._where(h), save, files, folder=client_dir if is_multi else None)
        return files

    def torrents_with_files(self) -> list[tuple[TorrentInfo, list[TorrentFile]]]:
        """Every item with its files: one d.multicall2 + one system.multicall per batch of items
        holding up to ``_FILES_BUDGET`` files (``_file_batches``)."""
        out: list[tuple[TorrentInfo, list[TorrentFile]]] = []
        listed: _Listed = {}  # one listing of a folder per call, not per item in it
        items, bad = self._rows()
        for chunk in _file_batches(items):
            calls = [_mc("f.multicall", it.hash.upper(), "", *_FILE_FIELDS) for it in chunk]
            answers = self._call("list files", "system.multicall", calls)
            if not isinstance(answers, list) or len(answers) != len(calls):
                raise RtorrentError(f"rTorrent {self.name!r}: list files: malformed multicall answer")
            for it, answer in zip(chunk, answers, strict=True):
                if isinstance(answer, dict):
                    fault = self._fault_of("list files", answer)
                    if fault.faultCode == FAULT_UNKNOWN_HASH:
                        continue  # erased between the two calls: it is gone, not unlisted
                    raise self._fault("list files", fault, None)
                if not isinstance(answer, list) or len(answer) != 1:
                    raise RtorrentError(f"rTorrent {self.name!r}: list files of {it.hash}: malformed answer")
                try:
                    out.append(self._with_files(it, answer[0], listed))
                except (UnreadableRecord, PathMapError) as e:  # this item only, as a row that does not read
                    bad[it.hash] = _unread(it, e)
        if bad:
            raise UnreadableItems(self._label, out, bad)
        return out

    def _with_files(self, it: RtItem, rows: Any, listed: dict) -> tuple[TorrentInfo, list[TorrentFile]]:
        info = self._info(it, listed)
        prefix = posixpath.basename(info.client_content_path) if it.is_multi_file else ""  # d.directory's own name
        files = _files(rows, prefix, self._where(it.hash))
        _spelled_files(
            self._where(it.hash), info.save_path, files, listed, info.client_content_path if it.is_multi_file else None
        )
        return info, files

    def _resolve(self, any_hash: str) -> str:
        """The id rTorrent reported for this hash (lower-case v1), or UnknownTorrent."""
        h = check_hash(any_hash)
        if len(h) != 40:
            raise self._unknown(any_hash)
        got = self._call(f"resolve {h}", "d.hash", h.upper(), torrent=any_hash)
        if not isinstance(got, str) or got.lower() != h:
            # every call after this names the item by this id: it must be the one asked for
            raise UnreadableRecord(f"rTorrent {self.name!r}: asked for item {h}, the answer is {shown(got, 80)}")
        return h

    # -- acting ---------------------------------------------------------

    def stop(self, any_hash: str) -> None:
        """Stop (d.stop: the item stays open; state 0), saved at once in the same multicall as
        ``start``: a backstop's or a repair's stop must not come back started after a crash."""
        h = self._resolve(any_hash)
        self._multicall(
            f"stop {h}", [_mc("d.stop", h.upper()), _mc("d.save_full_session", h.upper())], torrent=any_hash
        )

    def start(self, any_hash: str, *, forced: bool = False) -> None:
        """Start; a paused item (started but inactive) is resumed too. ``forced`` changes nothing:
        rTorrent has no queue to bypass (and never reports a forced state).

        One system.multicall, d.start, d.resume (paused only), d.save_full_session, as ``pause``:
        the started state is on disk at once. Without the save it reached the session only at
        rTorrent's periodic save or a later tag write, so rTorrent killed in between brought the
        item back stopped while qbhook's journal said running: its seeding silently ended (R43).
        d.resume is not sent during a check (d.start only marks the item started then; the
        check's end resumes it) nor to an active item (it does nothing there)."""
        item = self.item(any_hash)
        if item is None:
            raise self._unknown(any_hash)
        target = item.hash.upper()
        paused = item.state == 1 and item.is_open and not item.is_active and not item.checking
        self._multicall(
            f"start {item.hash}",
            [
                _mc("d.start", target),
                *([_mc("d.resume", target)] if paused else []),
                _mc("d.save_full_session", target),
            ],
            torrent=any_hash,
        )

    def pause(self, any_hash: str) -> None:
        """Started but held inactive (ruTorrent's "paused", ``TorrentInfo.is_paused``): how a paused
        item comes back after a relocation, whose d.stop ended its pause (``Pausing``).

        One system.multicall, d.start, d.pause, d.save_full_session: rTorrent runs it to its end
        before its event loop, so the item never transfers in between, and the state is on disk at
        once, as the relocation's. Refused during a hash check: started then, rTorrent resumes it
        when the check ends, and d.pause of an inactive item does nothing."""
        item = self._idle_item(any_hash, "pause")
        target = item.hash.upper()
        self._multicall(
            f"pause {item.hash}",
            [_mc("d.start", target), _mc("d.pause", target), _mc("d.save_full_session", target)],
            torrent=any_hash,
        )

    def _idle_item(self, any_hash: str, verb: str):
        """The item, refused (``UnsafeOperation``) while a hash check runs: ``pause`` and
        ``set_location`` change nothing under rTorrent's own check (their docstrings say why).
        A failed check is not a running one (``RtItem.checking``, both fields from one multicall):
        were it refused, a rollback could never move a failed item back, nor a resume after it."""
        item = self.item(any_hash)
        if item is None:
            raise self._unknown(any_hash)
        if item.checking:
            raise UnsafeOperation(
                f"refusing to {verb} {item.hash} ({item.name}): a hash check is running", hint="wait until it ends"
            )
        return item

    def recheck(self, any_hash: str) -> None:
        """d.check_hash (a no-op while a check runs). A started item resumes after it."""
        h = self._resolve(any_hash)
        self._call(f"check_hash {h}", "d.check_hash", h.upper(), torrent=any_hash)

    def set_location(self, any_hash: str, host_path: str, *, require_existing: bool = True) -> None:
        """Point the item at the same content under save path ``host_path`` and recheck it.

        One system.multicall: d.stop, d.close, d.directory_base.set, d.check_hash.
        The item ends stopped (the caller starts it once the check reached 100 %, or pauses it
        again, ``pause``, if it was paused).
        """
        dest = normalize(host_path)
        item = self._idle_item(any_hash, "relocate")
        _, leaf = self._split(item)
        host_dir = posixpath.join(dest, leaf) if item.is_multi_file else dest
        if require_existing and not os.path.isdir(host_dir):
            raise UnsafeOperation(
                f"refusing to relocate {item.hash} ({item.name}): destination {host_dir} does not exist on the host",
                hint="build the complete view at the destination first",
            )
        client_dir = self.path_map.to_client(host_dir)
        target = item.hash.upper()
        self._multicall(
            f"relocate {item.hash} to {client_dir}",
            [
                _mc("d.stop", target),
                _mc("d.close", target),
                _mc("d.directory_base.set", target, client_dir),
                _mc("d.check_hash", target),
                # On disk now, not at rTorrent's next periodic save (20 min): killed after qbhook
                # deleted the old links, it came back at the old, empty place. Saved mid-check it
                # comes back at the new place and checks there (docs/rtorrent.md, verified).
                _mc("d.save_full_session", target),
            ],
            torrent=any_hash,
        )

    def wait_checked(self, any_hash: str, budget: float | None = None, poll: float = 0.1) -> TorrentInfo:
        """Wait until no hash check runs (``RtItem.checking``); budget scales with size by default.

        Raises VerificationFailed when the check failed or outlasted the budget; the
        item's completeness is the caller's to judge (``TorrentInfo.is_complete``).
        """
        first = self.item(any_hash)
        if first is None:
            raise self._unknown(any_hash)
        deadline = self._clock() + (budget if budget is not None else check_budget(first.size_bytes))
        while True:
            item = self.item(any_hash)
            if item is None:
                raise self._unknown(any_hash)
            if item.hashing_failed:
                raise VerificationFailed(
                    f"rTorrent {self.name!r}: hash check of {item.hash} ({item.name}) "
                    f"failed at {item.directory}: {item.message or 'no message'}"
                )
            if not item.checking:
                return self._info(item)
            if self._clock() >= deadline:
                raise VerificationFailed(
                    f"rTorrent {self.name!r}: hash check of {item.hash} ({item.name}) did not end "
                    f"within its budget ({item.completed_bytes} of {item.size_bytes} bytes verified)",
                    hint="rTorrent is still checking; wait and retry",
                )
            self._sleep(poll)

    def set_download_path(self, any_hash: str, host_path: str) -> None:
        """rTorrent has no separate incomplete folder: clearing is a no-op, setting is refused."""
        self._resolve(any_hash)
        if host_path:
            raise UnsafeOperation(
                f"rTorrent {self.name!r} has no incomplete-data folder to set",
                hint="relocate with set_location instead",
            )

    def set_auto_management(self, any_hash: str, enabled: bool, *, category_save_path: str | None = None) -> None:
        """rTorrent has no automatic placement: off is a no-op, on is refused."""
        self._resolve(any_hash)
        if enabled:
            raise UnsafeOperation(f"rTorrent {self.name!r} has no automatic torrent management")

    def set_label(self, any_hash: str, label: str) -> None:
        """d.custom1, percent-encoded the way ruTorrent writes it (saved at once, see _change_tags)."""
        h = self._resolve(any_hash)
        self._multicall(
            f"set label of {h}",
            [_mc("d.custom1.set", h.upper(), quote(label, safe="")), _mc("d.save_full_session", h.upper())],
            torrent=any_hash,
        )

    def add_tags(self, any_hash: str, tags: Iterable[str]) -> None:
        self._change_tags(any_hash, tags, add=True)

    def remove_tags(self, any_hash: str, tags: Iterable[str]) -> None:
        self._change_tags(any_hash, tags, add=False)

    def _change_tags(self, any_hash: str, tags: Iterable[str], *, add: bool) -> None:
        # rTorrent writes d.custom values to its session only when it saves the session
        # (every 20 min by default): without d.save_full_session a crash forgets the tag
        # (observed: a killed rtorrent came back without a freshly set tag).
        wanted = check_tags(tags)
        item = self.item(any_hash)
        if item is None:
            raise self._unknown(any_hash)
        current = parse_tags(item.tags_raw)
        new = current | set(wanted) if add else current - set(wanted)
        if new != current:
            target = item.hash.upper()
            self._multicall(
                f"set tags of {item.hash}",
                [_mc("d.custom.set", target, TAGS_KEY, ", ".join(sorted(new))), _mc("d.save_full_session", target)],
                torrent=any_hash,
            )

    def close(self) -> None:
        """Nothing to release: one connection per call."""


def _directory(where: str, value: str, multi: bool, name: str) -> str:
    """``value``, an item's d.directory, normalized; UnreadableRecord naming the item when it is no
    folder qbhook takes. A torrent's author can make it so: a multi-file item's d.directory is the
    folder it was added to with its d.name appended (rTorrent's ``apply_d_directory``), and d.name
    is ``name.utf-8`` under ``encoding.add = utf8``, which libtorrent does not check (``..`` gives
    ``/data/torrents/..``; ``_own_folder``). Refused as a PathMapError, it failed the listing of
    every item of the client, and with it all automation; it is that item's, as a single file's
    d.name of ``../x`` is (``RtItem.from_row``). ``name``: the item's d.name."""
    why = refusal(value)
    if why is None and multi:
        why = _own_folder(value, name)
    if why is not None:
        raise UnreadableRecord(f"{where}: unreadable record: d.directory = {shown(value, 80)} ({why})")
    return normalize(value)


def _own_folder(directory: str, name: str) -> str | None:
    """Why ``directory``, a multi-file item's d.directory, is not a folder of the item's own (its
    content folder, whose parent is its save path), or None when it may be.

    rTorrent makes it the folder the item was added to + "/" + d.name, and libtorrent's
    ``FileList::set_root_dir`` strips the trailing '/': a d.name of "" or "/" leaves the folder
    it was added to (``/downloads``), one of "." gives ``/downloads/.``, one of ``a/b`` a folder
    below ``a``. Taken as read, the item's save path was the parent of the shared download folder
    (or /), outside the path map (a PathMapError that failed the whole listing, R100) or, mapped,
    a content folder holding every other torrent's data. A d.directory named otherwise than its
    d.name is not refused: ``d.directory_base.set`` puts an item at a folder of any name (a
    cross-seed's renamed folder, qbhook's own relocation), and that is its own."""
    if normalize(directory) == "/":
        return "a multi-file item's content folder cannot be /"
    if directory.rsplit("/", 1)[-1] in ("", "."):
        return "it ends in '/' or '/.': the folder holding the item, not a folder of its own"
    if not is_path_component(name):
        return (
            f"its d.name {shown(name, 40)} is not one path component, and rTorrent appends it to the folder "
            "the item was added to: that folder, or another, is not the item's own"
        )
    return None


# item id -> (why it does not read, its name and folder as rTorrent sent them): UnreadableItems.items
_Unreadable = dict[str, tuple[str, dict[str, Any]]]


def _unread(item: RtItem, e: UnreadableRecord | PathMapError) -> tuple[str, dict[str, Any]]:
    """A listed item that does not read, as ``UnreadableItems`` keeps it (``_Unreadable``).

    A save path under no path_map prefix is that item's too (R100), not the listing's: the index
    keeps a record it cannot map as not known (``map_error``) and syncs the others, as it does a
    qBittorrent record (``catalog.indexer``), and every other reader refuses on UnreadableItems
    as it did on the PathMapError, so no item's files are left out unseen (the reason qBittorrent's
    ``torrents`` raises). A path_map that misses every item makes each one unreadable, the hint in
    each line. Failing the whole listing instead stopped the index of every item of the client."""
    why = e.message if isinstance(e, UnreadableRecord) or not e.hint else f"{e.message} ({e.hint})"
    return why, {"name": item.name, "save_path": item.directory}


def _row_hash(row: Any) -> str | None:
    """The item a row that does not read is of, or None when its hash does not read either."""
    if not isinstance(row, (list, tuple)) or len(row) != len(_ITEM_FIELDS):
        return None
    try:
        return RecordFields({"d.hash": row[0]}, "").hash("d.hash", 40)
    except UnreadableRecord:
        return None


def _meta_by_name(row: Any) -> Any:
    """A row read without d.is_meta (``RtorrentClient._item_rows``) with it, as the item's name says:
    libtorrent names a magnet's item ``<info hash in hex>.meta`` until its metadata comes (0.13.x
    ``DownloadConstructor::parse_magnet_uri``), a name no torrent has of its own (its info hash is
    of its name). Anything else, as it came: ``RtItem.from_row`` refuses it."""
    if not isinstance(row, (list, tuple)) or len(row) != len(_ITEM_FIELDS) - 1:
        return row
    h, name = row[0], row[1]
    return [*row, int(isinstance(h, str) and isinstance(name, str) and name.lower() == f"{h}.meta".lower())]


def _file_batches(
    items: Iterable[RtItem], budget: int = _FILES_BUDGET, max_items: int = _ITEMS_PER_CALL
) -> Iterator[list[RtItem]]:
    """``items`` in order, cut where the next item's d.size_files would take a batch over ``budget``
    (each item counts one file at least) or the batch holds ``max_items`` already (the request's
    size); an item over the budget alone is a batch of its own."""
    batch: list[RtItem] = []
    count = 0
    for item in items:
        n = max(item.size_files, 1)
        if batch and (count + n > budget or len(batch) >= max_items):
            yield batch
            batch, count = [], 0
        batch.append(item)
        count += n
    if batch:
        yield batch


def _files(rows: Any, prefix: str, where: str) -> list[TorrentFile]:
    """Typed file rows (``_FILE_FIELDS`` order); UnreadableRecord names the file and the field.

    A path is kept as rTorrent spelled it: a '..' in it is never joined (``catalog.indexer``
    and the planner refuse it)."""
    if not isinstance(rows, list):
        raise UnreadableRecord(f"{where}: file list is not a list: {shown(rows, 80)}")
    out = []
    for index, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != len(_FILE_FIELDS):
            raise UnreadableRecord(f"{where}: file {index}: not {len(_FILE_FIELDS)} fields: {shown(row, 80)}")
        f = RecordFields(dict(zip(_FILE_FIELDS, row, strict=True)), f"{where}: file {index}")
        path = f.text("f.path=")
        if not path:
            raise f.bad("f.path", row[0], "missing")
        # counts as rTorrent keeps them: chunks done of the file's chunks, priority 0 (off) to 2 (high).
        # Done may exceed the file's chunks (a real rtorrent 0.9.8 reported 5 of 4: the two count a
        # file's edge chunks differently), so the share is capped, not refused.
        chunks = f.number("f.size_chunks=", int, None, 0)
        out.append(
            TorrentFile(
                index=index,
                name=f"{prefix}/{path}" if prefix else path,
                size=f.number("f.size_bytes=", int, None, 0),
                progress=min(1.0, f.number("f.completed_chunks=", int, None, 0) / chunks) if chunks else 1.0,
                priority=f.number("f.priority=", int, None, 0, 2),
            )
        )
    return out


# folder -> its names by length (``_by_length``), None when it is not there: listed once per listing
_Listed = dict[str, dict[int, list[bytes]] | None]


def _spelled(
    where: str, key: str, units: Sequence[str], host_path: str, listed: dict | None = None, above: str = ""
) -> None:
    """UnreadableRecord when ``units`` (the strings rTorrent reported that spell ``host_path``'s end,
    ``_misspelled``) have a ``?`` and a part of ``host_path`` has a name beside it on the host that
    rTorrent could have sent so (``_misspelled``): rTorrent sends a string that is not UTF-8 with
    ``?`` in place of its bytes (module docstring), so the item's files may be under that name,
    whether or not the spelling is a name there too (a real ``caf?.mkv`` beside a latin-1
    ``caf\xe9.mkv``: taken as read, the latin-1 one, the item's only copy, was a reclaimable
    orphan). A path with ``?`` that is simply absent (an item added stopped, one that lost its data:
    what ``qbhook repair`` is for) or whose ``?`` are real ones reads as any path does."""
    value = "/".join(units)
    if not _doubtful(value):
        return
    real = _misspelled(host_path, units, {} if listed is None else listed, above)
    if real is not None:
        raise UnreadableRecord(
            f"{where}: unreadable record: {key} = {value!r:.80} (the host has {real!r:.80} there, {_why_spelled(real)})"
        )


def _doubtful(text: str) -> bool:
    """May ``text``, a string rTorrent sent, spell another name on the host: a ``?`` (a byte it
    could not send) or a line feed (a CR it turned into one, module docstring)?"""
    return "?" in text or "\n" in text


def _why_spelled(name: str) -> str:
    """Why rTorrent may have sent ``name``, a name on the host, with ``?`` or a line feed: the end
    of a message."""
    raw = os.fsencode(name)
    if b"\r" in raw:
        return "a name with a carriage return, which rTorrent's XML-RPC sends as a line feed; rename it"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "a name that is not UTF-8, which rTorrent spells with '?'; rename it to UTF-8"
    if not _sent_as_is(raw):
        return (
            "a UTF-8 name rTorrent's XML-RPC does not send as it is (a control character, or one past "
            "U+FFFD), spelling it with '?'; rename it"
        )
    return (
        "a UTF-8 name, which rTorrent spells with '?' too when another name of the one string it "
        "sends is not UTF-8; rename to UTF-8 the item's names that are not"
    )


def _misspelled(host_path: str, units: Sequence[str], listed: _Listed, above: str = "") -> str | None:
    """A name on the host that rTorrent could have sent as a part of ``host_path`` with ``?`` in it
    and that is not that part itself, or None when there is none.

    ``units``: the strings rTorrent sent, each as one (d.directory; d.directory and a single
    file's d.name; a multi-file item's folder name and a file's f.path), whose parts spell the end
    of ``host_path``; ``above``: what stands before the first in its own string (the rest of
    d.directory above a multi-file item's folder). rTorrent mangles a string as a whole
    (0.9.8 ``object_to_xmlrpc``): when xmlrpc-c refuses it as UTF-8, every byte >= 0x80 of every
    part becomes ``?``, of a UTF-8 part too. So a string with a character past ASCII was sent as it
    is, its ``?`` real; and a name beside a part that rTorrent would send as it is (``_sent_as_is``)
    is that part's real name only if another part of the same string may be the one that is not:
    one with a ``?`` below it, or one not looked at here (``above``, the path map's own folders).
    One above it was looked at on the way down: no name beside it is spelled so, so it is itself.

    Only the parts ``host_path`` shares at its end with the units are looked at: the path map's
    own folders above them are not rTorrent's. Each of them with a ``?`` is, top down, an existing
    one too, until one is not on the host (nothing is below it). ``listed`` caches each folder's
    names (an item's files share folders). A folder that cannot be listed is unreadable: whether
    the item's files are there is unknown."""
    said = [(u, part) for u, text in enumerate(units) for part in text.split("/")]
    whole = [posixpath.join(above, units[0]) if above else units[0], *units[1:]]
    mangled = [text.isascii() for text in whole]  # a mangled string is ASCII: '?' for every other byte
    unsure = [sum("?" in part for part in text.split("/")) for text in whole]  # '?' parts not seen to be themselves
    parts = host_path.split("/")
    shared = 0
    for host_part, (_u, said_part) in zip(reversed(parts), reversed(said), strict=False):
        if host_part != said_part:
            break
        shared += 1
    for i in range(len(parts) - shared, len(parts)):
        u, part = said[len(said) - len(parts) + i]
        qmark = "?" in part and mangled[u]
        if not qmark and "\n" not in part:
            continue
        folder = "/".join(parts[:i]) or "/"
        if folder not in listed:
            listed[folder] = _by_length(folder)
        names = listed[folder] or {}
        others = unsure[u] > 1  # another '?' part of this string may be the one that is not UTF-8
        real = None
        if qmark:  # a byte spelled one character
            real = next(
                (n for n in names.get(len(part), ()) if _spells(part, n) and (others or not _sent_as_is(n))), None
            )
        if real is None and "\n" in part:
            real = _line_ended(part, names, qmark, others)
        if real is not None:
            return os.fsdecode(real)
        own = os.fsencode(part)
        if own not in names.get(len(own), ()):
            return None  # absent, and so is everything below it
        unsure[u] -= qmark  # no other name here is spelled so: this part is itself (or the item's is not here)
    return None


def _sent_as_is(name: bytes) -> bool:
    """Would rTorrent's XML-RPC surely send ``name`` as it is, were it a string of its own? 0.9.8
    spells a string with ``?`` when xmlrpc-c refuses it as UTF-8, and xmlrpc-c takes only characters
    up to U+FFFD (its decoder refuses 4-byte sequences, outside the Basic Multilingual Plane, and
    U+FFFE, U+FFFF; surrogates and overlong forms too, as Python's does): such a name is spelled so
    even when it is UTF-8. A control character other than tab, newline and carriage return passes
    xmlrpc-c's check but no XML 1.0 can carry it: not surely sent as it is either. Unsure is no:
    only a name ruled out as the item's can make its files look unreferenced."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if not text:
        return True
    if min(text) < " " and any(c < " " and c not in "\t\n\r" for c in text):
        return False
    return max(text) <= "\ufffd"


def _line_ended(part: str, names: dict[int, list[bytes]], mangled: bool = False, others: bool = False) -> bytes | None:
    """A name among ``names`` (a folder's, ``_by_length``), not ``part`` itself, that rTorrent would
    send as ``part``: xmlrpc-c turns its CR and CRLF into LF (module docstring), so each reported
    line feed may be a CR, or a CRLF one byte longer, on the host."""
    own = os.fsencode(part)
    for size in range(len(own), len(own) + part.count("\n") + 1):
        for name in names.get(size, ()):
            if b"\r" not in name:
                continue
            lf = name.replace(b"\r\n", b"\n")
            if lf.replace(b"\r", b"\n") == own or (
                mangled and len(lf) == len(own) and _spells(part, lf) and (others or not _sent_as_is(name))
            ):
                return name
    return None


def _by_length(folder: str) -> dict[int, list[bytes]] | None:
    """``folder``'s names by their length in bytes (a name's spelling has as many characters: each
    look at a folder of thousands of names tries only a few), or None when it is not there."""
    try:
        names = os.listdir(os.fsencode(folder))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise UnreadableRecord(
            f"cannot list {folder!r:.80} to read a name with '?' or a line feed: {e.strerror}"
        ) from e
    out: dict[int, list[bytes]] = {}
    for name in names:
        out.setdefault(len(name), []).append(name)
    return out


def _spells(reported: str, name: bytes) -> bool:
    """Would rTorrent's XML-RPC send ``name`` (a name on the host) as ``reported``, and is that not
    ``name`` itself? It sends a string that is not UTF-8 with every byte >= 0x80 and every control
    byte as ``?``; tab, newline, carriage return and DEL are taken either way (kept or ``?``), and a
    carriage return kept is sent as a line feed (``_line_ended``)."""
    if len(reported) != len(name) or reported.encode("utf-8", "surrogateescape") == name:
        return False
    for ch, b in zip(reported, name, strict=True):
        if b >= 0x80 or b < 0x20:
            ok = ch == "?" or (b in b"\t\n\r" and ch == chr(b)) or (b == 0x0D and ch == "\n")
        else:
            ok = ch == chr(b) or (b == 0x7F and ch == "?")
        if not ok:
            return False
    return True


def _spelled_files(
    where: str, host_save: str, files: Iterable[TorrentFile], listed: dict | None = None, folder: str | None = None
) -> None:
    """``_spelled`` for each file name with a ``?`` (a listing of each folder holding a part with one,
    once per folder: ``listed``, shared by a listing's items), and UnreadableRecord when two files
    are reported under one such name: rTorrent spells ``caf\xe9.mkv`` and ``caf\xe8.mkv`` alike,
    and which of the item's files each name on the host is cannot be told. A file not to be
    downloaded (priority 0) is checked too: its name on the host would look unreferenced as any other.
    ``folder``: a multi-file item's d.directory (client path), whose name starts each file's name;
    None for a single file. Its f.path is a string of its own (``_misspelled``)."""
    listed = {} if listed is None else listed
    above = posixpath.dirname(folder) if folder else ""
    seen: set[str] = set()
    for f in files:
        if _doubtful(f.name):
            if f.name in seen:
                why = (
                    "names that are not UTF-8, which rTorrent spells with '?'; rename them to UTF-8"
                    if "?" in f.name
                    else "names with a carriage return, which rTorrent sends as a line feed; rename them"
                )
                raise UnreadableRecord(
                    f"{where}: file {f.index}: unreadable record: f.path = {f.name!r:.80} (another file of the item is "
                    f"reported so too: {why})"
                )
            seen.add(f.name)
            units = f.name.split("/", 1) if folder else [f.name]
            _spelled(f"{where}: file {f.index}", "f.path", units, posixpath.join(host_save, f.name), listed, above)


def from_config(entry: Mapping[str, Any] | Any, **kwargs: Any) -> RtorrentClient:
    """Build from a config entry with ``name``, ``url`` (or ``address``), ``path_map``, ``timeout``."""

    def field(key: str, default: Any = None) -> Any:
        if isinstance(entry, Mapping):
            return entry.get(key, default)
        return getattr(entry, key, default)

    path_map = field("path_map")
    if not isinstance(path_map, PathMap):
        path_map = PathMap.from_config(path_map)
    if field("timeout") is not None:
        kwargs["timeout"] = float(field("timeout"))
    return RtorrentClient(str(field("name")), str(field("address") or field("url")), path_map, **kwargs)


# -- events -----------------------------------------------------------------

#: rTorrent event -> the hook script's first argument.
HOOK_EVENTS = {"event.download.inserted_new": "added", "event.download.finished": "finished"}

# The hook script's argv after the event name, in qBittorrent's placeholder order
# (I J K N L G F R D C Z); rTorrent evaluates each "$cmd=" per item AFTER splitting
# on commas, so a name with commas or spaces stays one argument.
_HOOK_ARGS = (
    "$d.hash=",  # I: v1 hash (rTorrent has no v2)
    "-",  # J: no v2 hash
    "$d.hash=",  # K: the id
    "$d.name=",  # N
    "$d.custom1=",  # L: label (percent-encoded by ruTorrent)
    f"$d.custom={TAGS_KEY}",  # G
    "$d.base_path=",  # F: content path (file or item folder; the item is open here)
    "$d.base_path=",  # R: root path (qBittorrent leaves it empty for a single file)
    "$d.directory=",  # D: for a multi-file item this is the item folder, not its parent
    "$d.size_files=",  # C
    "$d.size_bytes=",  # Z
)


def event_rc_lines(script: str, *, instance: str = "") -> list[str]:
    """``.rtorrent.rc`` lines that call qbt-hook.sh on added/finished, as qBittorrent would.

    ``execute.nothrow.bg``: rTorrent forks the script and does not wait (the hook may
    take seconds to post; rTorrent's event loop must not), and a failing script never
    aborts the event. ``instance`` becomes QBHOOK_INSTANCE through env(1), no shell.
    The script path and instance name are limited to characters rTorrent's rc parser
    takes literally, rather than trusting its quoting rules.
    """
    # The rules are qbhook.config's: the command and the config refuse such values first (a
    # usage error, a config error); this refusal is for any other caller.
    for what, value, why in (
        ("hook script path", script, rc_hook_path_problem(script)),
        ("instance name", instance, rc_word_problem(instance)),
    ):
        if why is not None:
            raise UnsafeOperation(f"{what} {value!r} {why}")
    prefix = ["env", f"QBHOOK_INSTANCE={instance}", script] if instance else [script]
    lines = []
    for event, arg in HOOK_EVENTS.items():
        argv = ",".join([*prefix, arg, *_HOOK_ARGS])
        lines.append(f'method.set_key = {event},qbhook_{arg},"execute.nothrow.bg={argv}"')
    return lines
