"""qBittorrent's own records: what only qBittorrent has (categories).

The records every adapter shares (``TorrentInfo``, ``TorrentFile``) and the hash and tag rules
live in ``qbhook.clients.model``, beside the port.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Category"]


@dataclass(frozen=True, slots=True)
class Category:
    """A category.

    ``raw_save_path`` is what qBittorrent stores (may be empty or relative);
    ``client_save_path``/``save_path`` are the absolute path ATM would move a
    complete torrent of this category to, in the client's and host's views.
    """

    name: str
    save_path: str
    client_save_path: str
    raw_save_path: str
