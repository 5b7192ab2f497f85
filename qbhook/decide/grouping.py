"""Payload groups: torrents that share any file (by inode or by path) move as one unit."""

from __future__ import annotations

from collections.abc import Iterable

from qbhook.catalog.identity import components
from qbhook.decide.facts import TorrentFact


def payload_groups(torrents: Iterable[TorrentFact]) -> list[list[TorrentFact]]:
    torrents = list(torrents)
    roots = components(
        len(torrents),
        ((i, k) for i, t in enumerate(torrents) for f in t.files for k in (f.path, f.inode) if k is not None),
    )
    groups: dict[int, list[TorrentFact]] = {}
    for t, root in zip(torrents, roots, strict=True):
        groups.setdefault(root, []).append(t)
    out = [sorted(g, key=lambda t: t.hash) for g in groups.values()]
    out.sort(key=lambda g: g[0].hash)
    return out
