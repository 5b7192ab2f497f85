"""A tiny in-memory world of pools, inodes and torrents, turned into a planner Snapshot."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from qbhook.decide import converge
from qbhook.decide.facts import (
    FileFact,
    InodeFact,
    PoolFact,
    Snapshot,
    TorrentFact,
    split_links,
)

S = "/stash/data/media/torrents/seeding"
P = "/pool/data/media/torrents/seeding"
LIB = "/stash/data/media/movies"
FS = {"stash": "zfs:111", "pool": "zfs:222", "lib-nested": "zfs:333"}


@dataclass
class World:
    inodes: dict = field(default_factory=dict)  # key -> {"size", "content", "paths": set, "unknown": int}
    paths: dict = field(default_factory=dict)  # path -> key
    torrents: list = field(default_factory=list)
    free: dict = field(default_factory=lambda: {"stash": 10**12, "pool": 10**12})
    # Filesystem sizes (PoolFact.size_bytes): 0, not read, gives a percent policy.min_free nothing.
    size: dict = field(default_factory=lambda: {"stash": 0, "pool": 0})
    hashed: bool = True
    symlinks: dict = field(default_factory=dict)  # path -> link target, as the snapshot builder reports them
    client_groups: dict = field(default_factory=dict)  # policy.client_groups: uid -> frozenset of gids
    _next: int = 100

    @staticmethod
    def fs_of(path: str) -> str:
        if path.startswith("/stash/data/media/nested"):
            return FS["lib-nested"]
        return FS["stash"] if path.startswith("/stash") else FS["pool"]

    def file(self, path: str, content: str, size: int = 1000) -> tuple:
        self._next += 1
        content = content if size else ""  # a zero-length file has one possible content
        key = (self.fs_of(path), self._next)
        self.inodes[key] = {"size": size, "content": content, "paths": {path}, "unknown": 0, "aliases": 0}
        self.paths[path] = key
        return key

    def link(self, existing: str, new: str) -> None:
        key = self.paths[existing]
        assert self.fs_of(new) == key[0], "hardlinks stay on one filesystem"
        self.inodes[key]["paths"].add(new)
        self.paths[new] = key

    def alias(self, existing: str, spelling: str) -> None:
        """The catalog also knows ``spelling`` for the link ``existing`` (e.g. ``seeding//x``): not a new link."""
        key = self.paths[existing]
        self.inodes[key]["paths"].add(spelling)
        self.inodes[key]["aliases"] += 1

    def torrent(self, h: str, save: str, rels: list[str], **kw) -> None:
        self.torrents.append((h, save, rels, kw))

    def payload(self, save: str, files: dict[str, str], size: int = 1000) -> None:
        for rel, content in files.items():
            self.file(posixpath.join(save, rel), content, size)

    def resolve(self, path: str) -> str:
        """``path`` with the symlinks of ``self.symlinks`` (folders) resolved, as ``facts.resolve_links`` would."""
        for link, target in self.symlinks.items():
            if path == link or path.startswith(link + "/"):
                return target + path[len(link) :]
        return path

    def snapshot(self, now: float = 1_000_000.0) -> Snapshot:
        roots = (S, P)
        inodes = {}
        content = {}
        for key, i in self.inodes.items():
            digest = (i["content"].encode().hex().ljust(64, "0")[:64]) if self.hashed else None
            seeding, other = split_links(i["paths"], roots)
            nlink = len(i["paths"]) + i["unknown"] - i["aliases"]
            # Spellings left distinct once canonical are one entry counted twice (InodeFact.aliases).
            aliases = max(len(seeding) + len(other) - (len(i["paths"]) - i["aliases"]), 0)
            inodes[key] = InodeFact(
                key[0], key[1], i["size"], nlink, digest, seeding, other, aliases=aliases, access=i.get("access")
            )  # access: (st_mode, st_uid, st_gid), set on an inode's dict (None: not known)
            if digest:
                content.setdefault((i["size"], digest), []).append(key)
        ts = []
        for h, save, rels, kw in self.torrents:
            files = []
            for n, rel in enumerate(rels):
                path = posixpath.join(save, rel)
                key = self.paths.get(path)
                size = self.inodes[key]["size"] if key else kw.get("size", 1000)
                prio = 0 if rel in kw.get("skipped", ()) else kw.get("priority", 1)
                files.append(FileFact(n, rel, size, path, key, prio))
            ts.append(
                TorrentFact(
                    hash=h,
                    instance="default",
                    name=kw.get("name", h),
                    state=kw.get("state", "stalledUP"),
                    progress=kw.get("progress", 1.0),
                    save_path=save,
                    files=tuple(files),
                    category=kw.get("category", ""),
                    tags=frozenset(kw.get("tags", {"~noHL"})),
                    download_path=kw.get("download_path", ""),
                    auto_tmm=kw.get("auto_tmm", False),
                    completion_on=kw.get("completion_on", 1.0),
                )
            )
        pools = (
            PoolFact("stash", "primary", "/stash", S, FS["stash"], self.free["stash"], size_bytes=self.size["stash"]),
            PoolFact("pool", "cold", "/pool", P, FS["pool"], self.free["pool"], size_bytes=self.size["pool"]),
        )
        return Snapshot(
            write_paths=converge.write_paths(ts, self.resolve),  # as the builders make them, through self.symlinks
            torrents=tuple(ts),
            inodes=inodes,
            pools=pools,
            content={k: tuple(v) for k, v in content.items()},
            existing=dict(self.paths),
            now=now,
            symlinks=dict(self.symlinks),
            client_groups=dict(self.client_groups),
        )
