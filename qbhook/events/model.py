"""The one shape every incoming notification is reduced to.

Senders disagree on everything (camelCase JSON, form fields, argv placeholders); workers
should not have to care. An Event keeps only what placement needs: which torrents (hashes)
and which files (paths, exactly as the sender saw them: translating container paths is the
path map's job, not intake's).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

SOURCES = frozenset(
    {
        "qbittorrent",
        "sonarr",
        "radarr",
        "lidarr",
        "readarr",
        # An *arr whose payload names no series/movie/artist/author (Health,
        # ApplicationUpdate...). Only ever carries kind "test" or "ignored".
        "arr",
        "cross-seed",
        "sweeper",
        "manual",
    }
)

KINDS = frozenset(
    {
        "torrent_added",
        "torrent_finished",
        "import",
        "upgrade",
        "file_deleted",
        "media_deleted",
        "rename",
        "cross_seed_injected",
        "test",
        "ignored",
    }
)

# Kinds that must never reach the queue: answering them is the whole job.
NON_WORK_KINDS = frozenset({"test", "ignored"})


@dataclass(frozen=True)
class Event:
    """A normalized notification.

    ``hashes[0]``, when present, is the event's subject: the torrent whose payload group
    must be re-evaluated (qBittorrent's torrent id, an *arr's downloadId, cross-seed's
    searchee). Further hashes are related torrents (cross-seed's new injections, v1/v2
    aliases of the same torrent).
    """

    source: str
    kind: str
    hashes: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    instance: str = ""
    received_at: float = 0.0
    raw_type: str = ""
    # Sender's own qualifier: deleteReason, "files_deleted"/"files_kept", cross-seed result.
    reason: str = ""
    # The download client the sender talked to (downloadClient, cross-seed clientHost):
    # with several qBittorrent instances it says where the hash lives.
    client: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown event source {self.source!r}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")
        # Tuples, not lists: events are hashable, frozen and safe to share across threads.
        object.__setattr__(self, "hashes", tuple(self.hashes))
        object.__setattr__(self, "paths", tuple(self.paths))

    @property
    def is_work(self) -> bool:
        return self.kind not in NON_WORK_KINDS

    def coalesce_key(self) -> str:
        """Events with equal keys describe the same unit of work and may share one job.

        - ``torrent:<hash>`` when the event names a torrent (its subject, ``hashes[0]``):
          a burst of cross-seed injections for one searchee, or the added+finished pair
          of one torrent, become one job.
        - ``path:<sha256 of the sorted, NUL-joined paths>`` (first 32 hex digits) when it
          names files but no torrent (usenet imports, deletes, renames).
        - ``sweep:<source>`` when it names neither: all such events mean "something
          changed, look around", so one pending job per source is enough.
        """
        if self.hashes:
            return f"torrent:{self.hashes[0]}"
        if self.paths:
            digest = hashlib.sha256("\0".join(sorted(set(self.paths))).encode("utf-8", "surrogatepass"))
            return f"path:{digest.hexdigest()[:32]}"
        return f"sweep:{self.source}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hashes"] = list(self.hashes)
        data["paths"] = list(self.paths)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(
            source=data["source"],
            kind=data["kind"],
            hashes=tuple(data.get("hashes", ())),
            paths=tuple(data.get("paths", ())),
            instance=data.get("instance", ""),
            received_at=float(data.get("received_at", 0.0)),
            raw_type=data.get("raw_type", ""),
            reason=data.get("reason", ""),
            client=data.get("client", ""),
        )
