"""Payload groups: torrents that share any file (by inode or by path) move as one unit."""

from __future__ import annotations

from collections.abc import Iterable

import blake3

from qbhook.facts import TorrentFact


def group_id(hashes: Iterable[str]) -> str:
    """Stable id of a group: independent of order, changes when membership changes."""
    return blake3.blake3("\n".join(sorted(h.lower() for h in hashes)).encode()).hexdigest()[:16]


def components(n: int, keyed: Iterable[tuple[int, object]]) -> list[int]:
    """The group rule's core: items ``0..n-1`` that share any key are one component.

    ``keyed`` yields ``(item, key)`` pairs: a file's path (str) or inode key (tuple), so
    sharing either joins two torrents. Returns each item's component root (its smallest
    member). Used by the planner's groups and by the torrent index's last-known groups.
    """
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Paths are str and inode keys are tuples: one dict holds both without wrapping (memory).
    owner: dict[object, int] = {}
    for i, k in keyed:
        j = owner.setdefault(k, i)
        if j != i:
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(n)]


def payload_groups(torrents: Iterable[TorrentFact]) -> list[list[TorrentFact]]:
    torrents = list(torrents)
    roots = components(len(torrents), ((i, k) for i, t in enumerate(torrents) for f in t.files
                                       for k in (f.path, f.inode) if k is not None))
    groups: dict[int, list[TorrentFact]] = {}
    for t, root in zip(torrents, roots, strict=True):
        groups.setdefault(root, []).append(t)
    out = [sorted(g, key=lambda t: t.hash) for g in groups.values()]
    out.sort(key=lambda g: g[0].hash)
    return out
