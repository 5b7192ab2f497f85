"""Content identity, independent of names and layout.

A file's identity is (size, BLAKE3). A payload's *content id* hashes the sorted
multiset of its file identities, so the same files under another root name or
folder layout (a cross-seed, a renamed release) get the same id. Its *tree id*
also covers the relative paths, so two identical trees can be told apart from
two different layouts of the same content.
"""

from __future__ import annotations

from collections.abc import Iterable

import blake3

FileIdentity = tuple[int, bytes]  # (size, blake3 digest)


def file_identity(size: int, digest: bytes) -> FileIdentity:
    return (int(size), bytes(digest))


def _line(ident: FileIdentity) -> bytes:
    return b"%d:%s" % (ident[0], ident[1].hex().encode())


def content_id(files: Iterable[FileIdentity]) -> str:
    """Layout-independent: the multiset of (size, hash). None-hashes are not allowed."""
    h = blake3.blake3(b"qbhook-content-v1\n")
    for line in sorted(_line(f) for f in files):
        h.update(line + b"\n")
    return h.hexdigest()


def tree_id(files: Iterable[tuple[bytes | str, FileIdentity]]) -> str:
    """Relative path + identity for each file."""
    h = blake3.blake3(b"qbhook-tree-v1\n")
    entries = []
    for rel, ident in files:
        rel_b = rel.encode("utf-8", "surrogateescape") if isinstance(rel, str) else rel
        entries.append(rel_b + b"\0" + _line(ident))
    for e in sorted(entries):
        h.update(e + b"\n")
    return h.hexdigest()


def group_id(hashes: Iterable[str]) -> str:
    """Stable id of a group: independent of order, changes when membership changes. Its members'
    names: ``group_id_of`` names each by client and hash (hash-only ids are older journals')."""
    return blake3.blake3("\n".join(sorted(h.lower() for h in hashes)).encode()).hexdigest()[:16]


def group_id_of(members: Iterable[tuple[str, str]]) -> str:
    """The id of a group of (instance, hash) torrents: each member is ``hash@instance``. One
    infohash can be loaded in two clients on two unlinked copies of its data: two groups, which
    the journal (group_state, locks, resume), ``apply --group`` and serve tell apart by this id
    alone. Ids planned before the client was named were hash-only; a journaled run keeps the ids
    of the plan it journaled, so nothing recomputes them."""
    return group_id(f"{h}@{inst}" for inst, h in members)


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
