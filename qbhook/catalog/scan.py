"""Incremental scan of a pool into the catalog.

Walks with os.scandir on bytes paths (names that are not UTF-8 round-trip),
never follows symlinks, and compares each file's lstat with the catalog; only
differences are written. Paths that vanished are dropped only if the share is
plausible: an unmounted pool looks like an empty folder, and treating that as
"everything was deleted" is how catalogs drift (field lesson 10).
"""

from __future__ import annotations

import os
import stat as stat_mod
import time
from dataclasses import dataclass, field

from qbhook import notify
from qbhook.catalog.db import Tx
from qbhook.catalog.store import Catalog
from qbhook.config import PoolConfig, ScanConfig
from qbhook.errors import MassDeleteRefused, QbhookError
from qbhook.progress import Progress


@dataclass
class ScanResult:
    pool: str
    scan_id: int
    files_seen: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    status: str = "ok"
    unreadable: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"pool": self.pool, "scan_id": self.scan_id, "files_seen": self.files_seen, "added": self.added,
                "changed": self.changed, "removed": self.removed, "status": self.status,
                "unreadable": self.unreadable, "seconds": round(self.seconds, 3)}


def scan_pool(catalog: Catalog, pool: PoolConfig, scan_cfg: ScanConfig, *,
              progress: Progress | None = None, allow_mass_delete: bool = False,
              subtree: str | None = None) -> ScanResult:
    """Scan ``pool`` (or only ``subtree`` inside it) and bring the catalog up to date."""
    root = os.fsencode(os.path.normpath(subtree or str(pool.path)))
    if not os.path.isdir(root):
        raise QbhookError(f"cannot scan pool {pool.name}: {os.fsdecode(root)} is not a folder",
                          hint="is the pool mounted? check 'pools' in the config")
    t0 = time.monotonic()
    conn = catalog.conn
    with Tx(conn) as c:
        scan_id = c.execute("INSERT INTO scans(pool, root, started_at) VALUES (?,?,?)",
                            (pool.name, root, time.time())).lastrowid
    result = ScanResult(pool=pool.name, scan_id=scan_id)

    # path -> signature of (fs, ino, size, mtime_ns, ctime_ns, nlink): one int per path keeps
    # the rescan's memory and per-file work small (see store.stat_signature).
    known = catalog.load_pool_signatures(pool.name)
    if subtree:
        prefix = root + b"/"
        known = {p: v for p, v in known.items() if p == root or p.startswith(prefix)}
    known_count = len(known)
    ignore = {os.fsencode(n) for n in scan_cfg.ignore_names}
    changes: list[tuple[bytes, int, os.stat_result]] = []
    unreadable: list[bytes] = []
    dev_fs: dict[int, int] = {}
    S_ISREG = stat_mod.S_ISREG
    seen = 0

    stack = [root]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            unreadable.append(d)
            continue
        with it:
            for entry in it:
                if entry.name in ignore:
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        continue
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    unreadable.append(entry.path)
                    continue
                if not S_ISREG(st.st_mode):
                    continue  # symlinks, sockets, fifos: never followed, never catalogued
                seen += 1
                fs = dev_fs.get(st.st_dev)
                if fs is None:
                    fs = dev_fs[st.st_dev] = catalog.fs_for_path(entry.path, st.st_dev)
                rec = known.pop(entry.path, None)
                # inline stat_signature(): this line runs once per file
                if rec != hash((fs, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink)):
                    changes.append((entry.path, fs, st))
                    if len(changes) >= 5000:
                        _flush(catalog, pool.name, changes, scan_id)
                    if rec is None:
                        result.added += 1
                    else:
                        result.changed += 1
                if progress is not None and not seen & 1023:
                    progress.update(seen, f"{pool.name}: {seen:,} files")

    result.files_seen = seen
    result.unreadable = [os.fsdecode(u) for u in unreadable]
    # Keep rows below folders we could not read: unknown is not deleted.
    if unreadable:
        bad = tuple(u + b"/" for u in unreadable)
        unreadable_set = set(unreadable)
        vanished = {p: v for p, v in known.items() if not p.startswith(bad) and p not in unreadable_set}
    else:
        vanished = known

    refuse = (len(vanished) > scan_cfg.mass_delete_min_paths
              and len(vanished) > scan_cfg.mass_delete_max_share * max(known_count, 1)
              and not allow_mass_delete)

    _flush(catalog, pool.name, changes, scan_id)
    with Tx(conn) as c:
        if not refuse and vanished:
            catalog.remove_paths_named(c, list(vanished))
            catalog.drop_orphan_inodes(c)
            result.removed = len(vanished)
        result.status = "refused" if refuse else "ok"
        msg = (f"refused to drop {len(vanished)} of {known_count} known paths" if refuse else None)
        c.execute("UPDATE scans SET finished_at=?, status=?, files_seen=?, added=?, changed=?, removed=?, message=? WHERE id=?",
                  (time.time(), result.status, seen, result.added, result.changed, result.removed, msg, scan_id))
    if progress is not None:
        progress.done(f"{pool.name}: {seen:,} files, +{result.added} ~{result.changed} -{result.removed}")
    result.seconds = time.monotonic() - t0
    if refuse:
        raise notify.guard_tripped(MassDeleteRefused(
            f"scan of pool {pool.name} would drop {len(vanished):,} of {known_count:,} known paths "
            f"({100 * len(vanished) / max(known_count, 1):.0f}%); nothing was removed from the catalog",
            hint=f"is {pool.path} mounted? If the files really are gone, re-run with --allow-mass-delete"))
    return result


def _flush(catalog: Catalog, pool: str, changes: list, scan_id: int) -> None:
    # Batches bound memory on first scans of huge pools; each batch is a fact on its own.
    if not changes:
        return
    with Tx(catalog.conn) as c:
        catalog.upsert_many(c, pool, changes, scan_id)
    changes.clear()


def last_scans(catalog: Catalog, limit: int = 10) -> list[dict]:
    rows = catalog.conn.execute(
        "SELECT id, pool, started_at, finished_at, status, files_seen, added, changed, removed, message "
        "FROM scans ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    keys = ("id", "pool", "started_at", "finished_at", "status", "files_seen", "added", "changed", "removed", "message")
    return [dict(zip(keys, r)) for r in rows]
