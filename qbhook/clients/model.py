"""The client port's records and the rules every adapter shares, in host paths.

``TorrentInfo`` and ``TorrentFile`` are what every adapter (``qbt``, ``rtorrent``) returns and
what the catalog, the planner and the executor read; they live here, beside the port
(``port.ClientPort``), so nothing above the clients depends on one adapter. Their vocabulary is
qBittorrent 5's (normalized states, ``save_path`` as qBittorrent means it), and ``from_api``
reads the API-shaped record, which is also the shape the torrent index stores for every client
(rTorrent's through ``catalog.indexer``), so the reader is port-level too. The shared rules:
a hash is v1/v2 hex in lower case (``check_hash``), tags are comma-joined and cannot contain
',' (``parse_tags``, ``check_tags``; what a tag may hold is ``qbhook.names``', which config
checks the tag settings by too).

A client's answer is input like any other: every record is checked where it enters, here
(``from_api``; rTorrent's rows in ``clients.rtorrent.RtItem.from_row`` with the same rules).
A hash must be one (a row whose id is ``all`` would otherwise reach a ``hashes=`` parameter),
numbers must be numbers (in the range the client can report, where the reader knows it),
paths text, and a name used as a path component one component (``is_path_component``). A
record that is not is ``UnreadableRecord``: one line naming the torrent and the field, never a
half-typed torrent.

Snapshots are taken once and never refreshed in place: a decision is made on
one consistent view, and a newer view is a new object.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from qbhook.errors import BadRequest, PathMapError, UnreadableRecord
from qbhook.names import tag_problem
from qbhook.numbers import shown
from qbhook.pathmap import PathMap

__all__ = [
    "CHECKING_STATES",
    "FETCHING_STATES",
    "MISSING_FILES_STATE",
    "PART_SUFFIX",
    "PAUSED_RAW_STATE",
    "STABLE_STATES",
    "RecordFields",
    "TorrentFile",
    "TorrentInfo",
    "check_hash",
    "check_tags",
    "is_info_hash",
    "is_part_file",
    "is_path_component",
    "normalize_state",
    "parse_tags",
]

# A torrent's id as qbhook keeps it (the catalog, plans, the clients' answers): a v1 (40) or v2
# (64) info hash in lower-case hex. Users and rTorrent may write upper case: lower it first.
_INFO_HASH = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def is_info_hash(text: str) -> bool:
    return _INFO_HASH.fullmatch(text) is not None


def check_hash(value: str) -> str:
    """Lower-cased v1/v2/id hash, or BadRequest for anything else."""
    h = str(value).strip().lower()
    if not is_info_hash(h):
        raise BadRequest(f"not a torrent hash (40 or 64 hex digits): {value!r}")
    return h


# qBittorrent 5 (Web API 2.11) renamed paused* to stopped*; callers only ever
# see the new names so one state machine serves both major versions.
_STATE_ALIASES = {"pausedUP": "stoppedUP", "pausedDL": "stoppedDL"}

# rTorrent's third state, ``raw_state`` of an item started but held inactive (``d.state`` 1,
# ``d.is_active`` 0; ruTorrent's "paused"). Normalized it is stopped: it transfers nothing and
# the executor's state machine treats it so; ``TorrentInfo.is_paused`` tells it apart, so a
# relocation can leave it paused, not stopped. qBittorrent has no such state: its 4.x
# ``pausedUP`` is a stop, and never this raw state.
PAUSED_RAW_STATE = "paused"

# qBittorrent's "append .!qB extension to incomplete files": a file being written is named
# ``name + PART_SUFFIX``, and renamed (same inode) to ``name`` once complete. The orphan walk
# protects such a file; convergence counts it among the places an unsettled torrent writes.
PART_SUFFIX = ".!qB"

# libtorrent's part file, ``"." + info_hash_hex + ".parts"`` (40 hex digits, 64 for a v2-only
# torrent) in the save path itself: it holds the pieces of files set to priority 0 that overlap
# wanted ones. Lose it and a partial cross-seed at 100 % cannot be rechecked or completed. Any
# such name is a part file, whether or not a listed torrent's hash matches: a torrent of a
# client not configured (or a hash v1/v2 mismatch) must not make it reclaimable.
_LIBTORRENT_PARTS = re.compile(r"\.(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})\.parts")


def is_part_file(path: str) -> bool:
    """A file a client writes while a torrent is incomplete (qBittorrent's ``.!qB``, libtorrent's
    ``.<infohash>.parts``): the orphan walk never calls it an orphan."""
    if path.endswith(PART_SUFFIX):
        return True
    return path.endswith(".parts") and _LIBTORRENT_PARTS.fullmatch(path.rpartition("/")[2]) is not None


# qBittorrent's state of a torrent whose files are not where it keeps them (``TorrentInfo.is_missing_files``).
MISSING_FILES_STATE = "missingFiles"

CHECKING_STATES = frozenset({"checkingUP", "checkingDL", "checkingResumeData"})

# The states of a torrent its client is still getting the data of (downloading, queued or waiting
# to, checking what it has): its files not being there yet is the download, not a loss. Not
# ``missingFiles`` nor stopped: a stopped torrent gets nothing (one force-rechecked to 0 % after
# its folder was renamed stays stoppedDL). Nor ``checkingResumeData``: every torrent passes it at
# the client's start, a lost one too, on its way to missingFiles. A whitelist: a state added later is not one.
FETCHING_STATES = frozenset(
    {"downloading", "stalledDL", "queuedDL", "forcedDL", "metaDL", "forcedMetaDL", "checkingDL"}
)

# A whitelist, not a blacklist: a state qBittorrent adds later is treated as
# "not stable" until someone decides otherwise (lessons 3 and 9).
STABLE_STATES = frozenset(
    {
        "uploading",
        "stalledUP",
        "queuedUP",
        "forcedUP",
        "stoppedUP",
        "downloading",
        "stalledDL",
        "queuedDL",
        "forcedDL",
        "stoppedDL",
    }
)
# The stable states of a complete torrent: it reads its files to seed and writes none of them.
# (A torrent at 100 % in a downloading state is finishing: not one of these.)
SEEDING_STATES = frozenset({"uploading", "stalledUP", "queuedUP", "forcedUP", "stoppedUP"})


def normalize_state(raw: str) -> str:
    return _STATE_ALIASES.get(raw, raw)


def parse_tags(raw: str | None) -> frozenset[str]:
    """qBittorrent joins tags with ', '; tags themselves cannot contain ','."""
    if not raw:
        return frozenset()
    return frozenset(t.strip() for t in raw.split(",") if t.strip())


def check_tags(tags: Iterable[str]) -> list[str]:
    """Tags to add or remove, stripped; BadRequest for one that is no tag (``names.tag_problem``:
    one holding ',' would be two tags to qBittorrent, which splits on it)."""
    if isinstance(tags, str):
        tags = [tags]
    out = []
    for tag in tags:
        tag = tag.strip()
        if not tag:
            continue
        if why := tag_problem(tag):
            raise BadRequest(f"{why}: {tag!r}")
        out.append(tag)
    return out


def is_path_component(name: str) -> bool:
    """One folder entry's name: not empty, no '/', not '.' or '..', no NUL. A client's name for
    a torrent's content (rTorrent's ``d.name`` of a single file) is joined under its save path:
    ``/etc/shadow`` or ``../x`` there would name a file outside it."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def is_relative_path(rel: str) -> bool:
    """A torrent file's name as a client lists it, below the torrent's save path: not absolute, no
    '..' component, no NUL. Anything else is hostile input (the client's user writes the .torrent
    or renames files through the API): joined under the save path, ``/etc/passwd`` or ``a/../../x``
    names a file outside it, so such a file is never looked at and its torrent is blocked
    (``planner.file_blockers``, ``repair.plan_one``)."""
    # ".." as a substring first: the split only for the rare name that has it (every file of
    # every snapshot passes here).
    return bool(rel) and rel[0] != "/" and "\0" not in rel and (".." not in rel or ".." not in rel.split("/"))


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class RecordFields:
    """Reads one client record's fields; the first that does not read is UnreadableRecord."""

    def __init__(self, raw: Mapping[str, Any], what: str):
        self.raw = raw
        self.what = what

    def bad(self, key: str, value: Any, why: str = "") -> UnreadableRecord:
        # bounded before it is made: the whole repr() of a deeply nested answer raised RecursionError
        text = shown(value, 80)
        return UnreadableRecord(f"{self.what}: unreadable record: {key} = {text}{f' ({why})' if why else ''}")

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def number(self, key: str, kind: type, default: Any, lo: float | None = None, hi: float | None = None) -> Any:
        """A number field; ``lo``/``hi``: the range the client can report, where a value outside
        it is no reading of the torrent (a size of -5, 2 where a flag is 0 or 1), not a value to use."""
        value = self.raw.get(key, default)
        # bool is an int to Python, and a float would be truncated by int(): both are other kinds
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.bad(key, value, "not a number")
        try:
            finite = math.isfinite(value)  # an int past a float's range raises OverflowError here
        except OverflowError:
            finite = False
        if not finite:
            raise self.bad(key, value, "not a number")
        if kind is int and value != int(value):
            raise self.bad(key, value, "not a whole number")
        # Every number ends in an SQLite INTEGER or REAL column, or in arithmetic with one; an int
        # past 64 bits would stop the whole index sync there (OverflowError), not this record.
        if kind is int and not _INT64_MIN <= int(value) <= _INT64_MAX:
            raise self.bad(key, value, "out of range")
        if lo is not None and value < lo:
            raise self.bad(key, value, f"below {shown(lo)}")
        if hi is not None and value > hi:
            raise self.bad(key, value, f"above {shown(hi)}")
        return kind(value)

    def text(self, key: str, default: str = "") -> str:
        """A string field; absent or null is ``default``. Text that is not UTF-8 is unreadable:
        JSON decodes ``"\\ud800"`` or ``"\\udcff"`` to a lone surrogate, which SQLite refuses and no
        file name holds (a file name's surrogate escape would be a byte the client never meant),
        so one such name would stop the whole index sync instead of this record."""
        value = self.raw.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.bad(key, value, "not text")
        if not value.isascii():  # most are: the check below only for the others
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise self.bad(key, value, "not UTF-8") from None
        return value

    def hash(self, key: str, length: int | None = None) -> str | None:
        """A hash field (None when absent or empty), lower-cased; ``length``: 40 (v1) or 64 (v2)."""
        value = self.raw.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not is_info_hash(value.lower()) or (length and len(value) != length):
            raise self.bad(key, value, "not a torrent hash")
        return value.lower()

    def time(self, key: str) -> int | None:
        # qBittorrent reports "never" as -1, 0 or 2**32-1 depending on version
        if self.raw.get(key) is None:
            return None
        value = self.number(key, int, None)
        return value if 0 < value < 0xFFFFFFFF else None


def _absolute(client_path: str | None) -> str | None:
    """A content or root path as an answer: qBittorrent 4.5.2 (observed) reports a relative one
    while it moves a torrent out of missingFiles; that is a transition, read as "not known now"
    (empty) like a torrent without metadata, not as a path to map."""
    return client_path if client_path and client_path.startswith("/") else None


def _host(path_map: PathMap, client_path: str | None, what: str, raw: Mapping) -> str:
    """Map one path of a torrent, naming the torrent if it cannot be mapped."""
    if not client_path:
        return ""
    try:
        return path_map.to_host(client_path)
    except PathMapError as exc:
        raise PathMapError(
            f"torrent {raw.get('hash', '?')} ({raw.get('name', '?')}): {what}: {exc.message}",
            hint=exc.hint,
        ) from exc


@dataclass(frozen=True, slots=True)
class TorrentInfo:
    """One torrent as qBittorrent reported it; every path is a HOST path.

    Empty strings stand for "not set" (no download path, no root folder, no
    metadata yet), as in the API.
    """

    instance: str
    hash: str
    infohash_v1: str | None
    infohash_v2: str | None
    name: str
    save_path: str
    download_path: str
    content_path: str
    root_path: str
    client_save_path: str
    client_content_path: str
    auto_tmm: bool
    category: str
    tags: frozenset[str]
    state: str
    raw_state: str
    progress: float
    amount_left: int
    size: int
    total_size: int
    has_metadata: bool
    added_on: int | None
    completion_on: int | None
    # Its progress is a count its client kept from before it closed the torrent's files, not one
    # made on them since (rTorrent's closed item, clients/rtorrent.py ``RtItem.progress_stale``): a
    # check cancelled while queued leaves a relocated item so, at the old place's 100 %. Only a
    # relocation's wait reads it (move/executor.py ``_wait``); qBittorrent's count is always live.
    progress_stale: bool = False

    @classmethod
    def from_api(cls, raw: Mapping[str, Any], path_map: PathMap, instance: str) -> TorrentInfo:
        """Type one API-shaped record; UnreadableRecord names the torrent and the first bad field,
        PathMapError a path that cannot be mapped."""
        if not isinstance(raw, Mapping):
            raise UnreadableRecord(f"{instance}: a torrent record that is not a mapping: {raw!r:.80}")
        f = RecordFields(raw, f"{instance}: torrent {str(raw.get('hash', '?'))[:70]}")
        h = f.hash("hash")
        if h is None:
            raise f.bad("hash", raw.get("hash"), "missing")
        f.what = f"{instance}: torrent {h}"
        raw_state = f.text("state", "unknown")
        paths = {k: f.text(k) for k in ("save_path", "download_path", "content_path", "root_path")}
        size = f.number("size", int, 0)
        return cls(
            instance=instance,
            hash=h,
            infohash_v1=f.hash("infohash_v1", 40),
            infohash_v2=f.hash("infohash_v2", 64),
            name=f.text("name"),
            save_path=_host(path_map, paths["save_path"], "save_path", raw),
            download_path=_host(path_map, paths["download_path"], "download_path", raw),
            content_path=_host(path_map, _absolute(paths["content_path"]), "content_path", raw),
            root_path=_host(path_map, _absolute(paths["root_path"]), "root_path", raw),
            client_save_path=paths["save_path"],
            client_content_path=paths["content_path"],
            auto_tmm=bool(raw.get("auto_tmm", False)),
            category=f.text("category"),
            tags=parse_tags(f.text("tags")),
            state=normalize_state(raw_state),
            raw_state=raw_state,
            progress=f.number("progress", float, 0.0),
            amount_left=f.number("amount_left", int, 0),
            size=size,
            total_size=f.number("total_size", int, size),
            has_metadata=_has_metadata(raw, raw_state),
            added_on=f.time("added_on"),
            completion_on=f.time("completion_on"),
        )

    def matches(self, any_hash: str) -> bool:
        """True if ``any_hash`` names this torrent (id, v1 or full v2, any case)."""
        h = any_hash.lower()
        return h in (self.hash, self.infohash_v1, self.infohash_v2)

    @property
    def hashes(self) -> frozenset[str]:
        return frozenset(h for h in (self.hash, self.infohash_v1, self.infohash_v2) if h)

    @property
    def may_skip_files(self) -> bool:
        """What the listing alone says of files at priority 0: qBittorrent's wanted size (``size``)
        is below the total (``total_size``). Only a hint, both ways: pad files (hybrid and v2
        torrents, "optimize alignment") count in the total and never in the wanted size, and a
        small skipped file whose pieces also hold wanted data lowers neither. A file list says it
        (``catalog.torrents.skipped_files_known``). rTorrent's listing never tells (its
        ``total_size`` is its ``size``)."""
        return self.has_metadata and self.size < self.total_size

    @property
    def is_complete(self) -> bool:
        """All wanted data present: files at priority 0 do not count."""
        return self.has_metadata and self.progress >= 1.0 and self.amount_left == 0

    @property
    def is_checking(self) -> bool:
        return self.state in CHECKING_STATES

    @property
    def is_fetching(self) -> bool:
        """Its client is still getting its data (``FETCHING_STATES``)."""
        return self.state in FETCHING_STATES

    @property
    def is_moving(self) -> bool:
        return self.state == "moving"

    @property
    def is_missing_files(self) -> bool:
        """Its client says its files are gone (qBittorrent's ``missingFiles``: deleted, renamed or
        moved by someone, or their dataset not mounted). rTorrent has no such state: an item whose
        files went keeps its state until a hash check, so what is on disk says it (the orphan
        listing's ``orphans.references``, the repair's facts)."""
        return self.state == MISSING_FILES_STATE

    @property
    def is_stopped(self) -> bool:
        return self.state in ("stoppedUP", "stoppedDL")

    @property
    def is_running(self) -> bool:
        """Started: a stable state other than stopped (queued counts: the client runs it in its turn).
        A transition (a check, checkingResumeData, a move) says neither: a stopped torrent has them too."""
        return self.is_stable and not self.is_stopped

    @property
    def is_paused(self) -> bool:
        """Stopped, but held by its client as started-and-paused (``PAUSED_RAW_STATE``, rTorrent):
        ``pause()`` (clients/port.py ``Pausing``) brings it back so, ``start()`` runs it."""
        return self.is_stopped and self.raw_state == PAUSED_RAW_STATE

    @property
    def is_forced(self) -> bool:
        """Force-started: it runs outside the client's queue (qBittorrent's forcedUP / forcedDL)."""
        return self.state in ("forcedUP", "forcedDL")

    @property
    def is_stable(self) -> bool:
        """Not in a transition qBittorrent would be disturbed by (or is in)."""
        return self.state in STABLE_STATES and self.has_metadata


def _has_metadata(raw: Mapping[str, Any], raw_state: str) -> bool:
    if "has_metadata" in raw:
        return bool(raw["has_metadata"])
    return raw_state not in ("metaDL", "forcedMetaDL")


@dataclass(frozen=True, slots=True)
class TorrentFile:
    """One file of a torrent; ``name`` is relative to the save path, '/'-separated."""

    index: int
    name: str
    size: int
    progress: float
    priority: int

    @classmethod
    def from_api(cls, raw: Mapping[str, Any], position: int, torrent: str = "?") -> TorrentFile:
        """Type one file record of ``torrent``; UnreadableRecord names the file and the bad field.

        The name is kept as the client spelled it: a '..' in it is not a path to look up, and
        ``catalog.indexer`` and the planner refuse it where it would be joined."""
        if not isinstance(raw, Mapping):
            raise UnreadableRecord(f"torrent {torrent}: file {position}: a record that is not a mapping: {raw!r:.80}")
        f = RecordFields(raw, f"torrent {torrent}: file {position}")
        name = f.text("name")
        if not name:
            raise f.bad("name", raw.get("name"), "missing")
        return cls(
            index=f.number("index", int, position),
            name=name,
            size=f.number("size", int, None),
            progress=f.number("progress", float, 0.0),
            priority=f.number("priority", int, 1),
        )

    @property
    def wanted(self) -> bool:
        return self.priority != 0
