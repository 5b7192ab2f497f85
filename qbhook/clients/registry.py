"""Every configured torrent client, by instance name, whatever its type.

The one place that turns ``Config.clients`` (``qbittorrent:`` entries and the
``clients:`` list) into adapters speaking the client port: ``QbtClient`` for
``type: qbittorrent``, ``RtorrentClient`` for ``type: rtorrent``. Everything
downstream (snapshot, planner, executor, worker) holds a ``Clients`` and asks it
for iteration and lookup by instance name only, never for a type; a torrent's
``TorrentInfo.instance`` is the name that finds its client again.

Rules:

* instance names are unique across types: the journal, plans and events record
  a name, and a name that could mean two clients could act on the wrong one;
* lookups that fail name the instance and, for a known one, its type
  ("rTorrent 'seedbox'"), so a message says which program to look at;
* "not found" means not found: a client that does not answer raises (its
  adapter's QbtError subclass), it is never skipped as if it had no torrent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from qbhook.clients.model import TorrentInfo
from qbhook.clients.port import ClientPort
from qbhook.errors import QbtError, UnknownTorrent

__all__ = ["Clients", "client_label", "client_type"]

_TYPE_LABELS = {"qbittorrent": "qBittorrent", "rtorrent": "rTorrent"}


def client_type(client: Any) -> str:
    """``qbittorrent`` or ``rtorrent`` for an adapter (by class, never by asking the client)."""
    from qbhook.clients.rtorrent import RtorrentClient

    return "rtorrent" if isinstance(client, RtorrentClient) else "qbittorrent"


def client_label(client: Any) -> str:
    """How messages name a client: ``rTorrent 'seedbox'``."""
    return f"{_TYPE_LABELS[client_type(client)]} {client.name!r}"


class Clients:
    """All configured torrent clients (``ClientPort`` adapters), by instance name."""

    def __init__(self, clients: Iterable[ClientPort]):
        self._clients: dict[str, ClientPort] = {}
        for client in clients:
            if client.name in self._clients:
                raise QbtError(
                    f"two torrent clients are named {client.name!r} "
                    f"({client_label(self._clients[client.name])} and {client_label(client)})",
                    hint="give every entry of qbittorrent: and clients: its own name",
                )
            self._clients[client.name] = client

    @classmethod
    def from_config(cls, entries: Iterable[Any], **client_kwargs: Any) -> Clients:
        """Build each entry of ``Config.clients`` (``QbtConfig`` / ``RtorrentConfig``) by its type."""
        from qbhook.clients.qbt.client import _client_from_config
        from qbhook.clients.rtorrent import from_config as rtorrent_from_config
        from qbhook.config import RtorrentConfig

        built: list[ClientPort] = []
        for entry in entries:
            if isinstance(entry, RtorrentConfig):
                built.append(
                    rtorrent_from_config(
                        {
                            "name": entry.name,
                            "address": entry.scgi,
                            "path_map": entry.path_map,
                            "timeout": entry.timeout,
                        }
                    )
                )
            else:
                built.append(_client_from_config(entry, client_kwargs))
        return cls(built)

    def __iter__(self) -> Iterator[ClientPort]:
        return iter(self._clients.values())

    def __len__(self) -> int:
        return len(self._clients)

    def __getitem__(self, name: str) -> ClientPort:
        try:
            return self._clients[name]
        except KeyError:
            raise QbtError(
                f"no torrent client named {name!r} is configured (configured: {self.describe() or 'none'})",
                hint="a plan or journal names the client it was made for; was it renamed or removed from the config?",
            ) from None

    def names(self) -> list[str]:
        return list(self._clients)

    def describe(self) -> str:
        """``qBittorrent 'default', rTorrent 'rt'``: for messages."""
        return ", ".join(client_label(c) for c in self)

    def find_all(self, any_hash: str) -> list[TorrentInfo]:
        """The torrent on every client that has it (an unreachable client raises)."""
        return [t for c in self for t in [c.find(any_hash)] if t is not None]

    def find(self, any_hash: str) -> TorrentInfo | None:
        found = self.find_all(any_hash)
        if len(found) > 1:
            where = ", ".join(client_label(self._clients[t.instance]) for t in found)
            raise QbtError(
                f"torrent {any_hash} is in several clients ({where})",
                hint="name the torrent by the client it belongs to",
            )
        return found[0] if found else None

    def torrent(self, any_hash: str) -> TorrentInfo:
        info = self.find(any_hash)
        if info is None:
            raise UnknownTorrent(f"no configured torrent client ({self.describe()}) has torrent {any_hash}")
        return info

    def client_for(self, info: TorrentInfo) -> ClientPort:
        return self[info.instance]
