"""Payload groups: torrents that share any file (by inode or by path) move as one unit."""

from __future__ import annotations

from collections.abc import Iterable

import blake3

from qbhook.facts import TorrentFact


def group_id(hashes: Iterable[str]) -> str:
    """Stable id of a group: independent of order, changes when membership changes."""
    return blake3.blake3("\n".join(sorted(h.lower() for h in hashes)).encode()).hexdigest()[:16]


def payload_groups(torrents: Iterable[TorrentFact]) -> list[list[TorrentFact]]:
    torrents = list(torrents)
    parent = list(range(len(torrents)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Paths are str and inode keys are tuples: one dict holds both without wrapping (memory).
    owner: dict[object, int] = {}
    for i, t in enumerate(torrents):
        for f in t.files:
            for k in (f.path, f.inode):
                if k is None:
                    continue
                j = owner.setdefault(k, i)
                if j != i:
                    a, b = find(i), find(j)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    groups: dict[int, list[TorrentFact]] = {}
    for i, t in enumerate(torrents):
        groups.setdefault(find(i), []).append(t)
    out = [sorted(g, key=lambda t: t.hash) for g in groups.values()]
    out.sort(key=lambda g: g[0].hash)
    return out
