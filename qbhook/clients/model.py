"""The client port's records and the rules every adapter shares, in host paths.

``TorrentInfo`` and ``TorrentFile`` are what every adapter (``qbt``, ``rtorrent``) returns and
what the catalog, the planner and the executor read; they live here, beside the port
(``port.ClientPort``), so nothing above the clients depends on one adapter. Their vocabulary is
qBittorrent 5's (normalized states, ``save_path`` as qBittorrent means it), and ``from_api``
reads the API-shaped record, which is also the shape the torrent index stores for every client
(rTorrent's through ``catalog.indexer``), so the reader is port-level too. The shared rules:
a hash is v1/v2 hex in lower case (``check_hash``), tags are comma-joined and cannot contain
',' (``parse_tags``, ``check_tags``).

Snapshots are taken once and never refreshed in place: a decision is made on
one consistent view, and a newer view is a new object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from qbhook.errors import BadRequest, PathMapError
from qbhook.pathmap import PathMap

__all__ = [
    "CHECKING_STATES",
    "STABLE_STATES",
    "TorrentFile",
    "TorrentInfo",
    "check_hash",
    "check_tags",
    "is_info_hash",
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

CHECKING_STATES = frozenset({"checkingUP", "checkingDL", "checkingResumeData"})

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


def normalize_state(raw: str) -> str:
    return _STATE_ALIASES.get(raw, raw)


def parse_tags(raw: str | None) -> frozenset[str]:
    """qBittorrent joins tags with ', '; tags themselves cannot contain ','."""
    if not raw:
        return frozenset()
    return frozenset(t.strip() for t in raw.split(",") if t.strip())


def check_tags(tags: Iterable[str]) -> list[str]:
    """Tags to add or remove, stripped; BadRequest for one holding ','."""
    if isinstance(tags, str):
        tags = [tags]
    out = []
    for tag in tags:
        tag = tag.strip()
        if "," in tag:
            # qBittorrent splits on ',' and would add two tags instead
            raise BadRequest(f"a tag cannot contain ',': {tag!r}")
        if tag:
            out.append(tag)
    return out


def _hash_or_none(value: Any) -> str | None:
    return str(value).lower() if value else None


def _time_or_none(value: Any) -> int | None:
    # qBittorrent reports "never" as -1, 0 or 2**32-1 depending on version
    if value is None:
        return None
    value = int(value)
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

    @classmethod
    def from_api(cls, raw: Mapping[str, Any], path_map: PathMap, instance: str) -> TorrentInfo:
        raw_state = str(raw.get("state", "unknown"))
        return cls(
            instance=instance,
            hash=str(raw["hash"]).lower(),
            infohash_v1=_hash_or_none(raw.get("infohash_v1")),
            infohash_v2=_hash_or_none(raw.get("infohash_v2")),
            name=str(raw.get("name", "")),
            save_path=_host(path_map, raw.get("save_path"), "save_path", raw),
            download_path=_host(path_map, raw.get("download_path"), "download_path", raw),
            content_path=_host(path_map, _absolute(raw.get("content_path")), "content_path", raw),
            root_path=_host(path_map, _absolute(raw.get("root_path")), "root_path", raw),
            client_save_path=str(raw.get("save_path") or ""),
            client_content_path=str(raw.get("content_path") or ""),
            auto_tmm=bool(raw.get("auto_tmm", False)),
            category=str(raw.get("category") or ""),
            tags=parse_tags(raw.get("tags")),
            state=normalize_state(raw_state),
            raw_state=raw_state,
            progress=float(raw.get("progress", 0.0)),
            amount_left=int(raw.get("amount_left", 0)),
            size=int(raw.get("size", 0)),
            total_size=int(raw.get("total_size", raw.get("size", 0))),
            has_metadata=_has_metadata(raw, raw_state),
            added_on=_time_or_none(raw.get("added_on")),
            completion_on=_time_or_none(raw.get("completion_on")),
        )

    def matches(self, any_hash: str) -> bool:
        """True if ``any_hash`` names this torrent (id, v1 or full v2, any case)."""
        h = any_hash.lower()
        return h in (self.hash, self.infohash_v1, self.infohash_v2)

    @property
    def hashes(self) -> frozenset[str]:
        return frozenset(h for h in (self.hash, self.infohash_v1, self.infohash_v2) if h)

    @property
    def is_complete(self) -> bool:
        """All wanted data present: files at priority 0 do not count."""
        return self.has_metadata and self.progress >= 1.0 and self.amount_left == 0

    @property
    def is_checking(self) -> bool:
        return self.state in CHECKING_STATES

    @property
    def is_moving(self) -> bool:
        return self.state == "moving"

    @property
    def is_stopped(self) -> bool:
        return self.state in ("stoppedUP", "stoppedDL")

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
    def from_api(cls, raw: Mapping[str, Any], position: int) -> TorrentFile:
        return cls(
            index=int(raw.get("index", position)),
            name=str(raw["name"]),
            size=int(raw["size"]),
            progress=float(raw.get("progress", 0.0)),
            priority=int(raw.get("priority", 1)),
        )

    @property
    def wanted(self) -> bool:
        return self.priority != 0
