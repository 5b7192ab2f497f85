"""Payload groups: torrents that share any file (by inode or by path) move as one unit.

The rule is ``catalog.identity.components`` over (torrent, key) pairs where a key is a file's
path or its inode. It runs in two passes, paths first, then inodes plus each torrent's
first-pass root (an ``int`` key, which equals no path ``str`` and no inode ``tuple``), so that
only one of the two key maps exists at a time: on a million files the one map of both (1.8M
keys) was the planner's peak memory, ~160 MiB for an instant (issue 13). Same components: two
torrents sharing a path share a first-pass root, and the second pass joins those roots and
every torrent sharing an inode.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

from qbhook.catalog.identity import components
from qbhook.decide.facts import TorrentFact


def payload_groups(torrents: Iterable[TorrentFact]) -> list[list[TorrentFact]]:
    torrents = list(torrents)
    n = len(torrents)
    by_path = components(n, ((i, f.path) for i, t in enumerate(torrents) for f in t.files))
    roots = components(
        n,
        chain(
            enumerate(by_path),
            ((i, f.inode) for i, t in enumerate(torrents) for f in t.files if f.inode is not None),
        ),
    )
    groups: dict[int, list[TorrentFact]] = {}
    for t, root in zip(torrents, roots, strict=True):
        groups.setdefault(root, []).append(t)
    out = [sorted(g, key=lambda t: t.hash) for g in groups.values()]
    out.sort(key=lambda g: g[0].hash)
    return out
