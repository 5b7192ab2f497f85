"""``qbhook find``: every link of a file's inode and every other copy of its content."""

from __future__ import annotations

import os

from qbhook.catalog.hashing import ensure_hashes
from qbhook.catalog.store import Catalog
from qbhook.config import Config
from qbhook.dirfd import FolderReader, FolderRefused
from qbhook.errors import PathOutsideRoots


def locate(catalog: Catalog, cfg: Config, path: str) -> dict:
    real = os.path.realpath(path)
    pool = cfg.pool_of(real)
    if pool is None:
        raise PathOutsideRoots(
            f"{path} is not inside any configured pool",
            hint="pools: " + ", ".join(f"{p.name}={p.path}" for p in cfg.pools),
        )
    # Identity is (filesystem, inode): refresh this path's row from the live file first, lstat-ed
    # in its folder opened below the pool's root. realpath resolved the path a person gave; the
    # folders it went through may be swapped since, and are not resolved again.
    with FolderReader([str(pool.path)]) as reader:
        try:
            st = reader.lstat(real)
        except FolderRefused as e:
            raise PathOutsideRoots(f"{path}: {e}", hint="qbhook never follows links below a configured root") from None
    if st is None:
        raise PathOutsideRoots(f"{path}: no such file (any more)")
    inode_id = catalog.record_path(real, pool.name, st=st)
    # Copies are found by content: hash this inode and every same-size candidate (cheap when
    # cached; only same-size files can be copies).
    size = catalog.inode(inode_id).size
    ensure_hashes(catalog, [inode_id] + catalog.inode_ids_of_size(size), settle_seconds=cfg.scan.settle_seconds)
    row = catalog.inode(inode_id)
    links = [os.fsdecode(p) for p, _ in catalog.paths_of(inode_id)]
    copies = []
    if row.hash is not None:
        for other in catalog.inodes_with_content(row.size, row.hash):
            if other.id == row.id:
                continue
            copies.append(
                {
                    "fsid": other.fsid,
                    "inode": other.ino,
                    "nlink": other.nlink,
                    "paths": [os.fsdecode(p) for p, _ in catalog.paths_of(other.id)],
                }
            )
    return {
        "path": real,
        "pool": pool.name,
        "size": row.size,
        "fsid": row.fsid,
        "inode": row.ino,
        "nlink": row.nlink,
        "blake3": row.hash.hex() if row.hash else None,
        "links": links,
        "unknown_links": max(row.nlink - len(links), 0),
        "copies": copies,
    }
