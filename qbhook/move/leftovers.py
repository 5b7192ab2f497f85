"""Leftover views: files a rolled-back group built on its target pool and nobody uses.

The executor journals each view file of a group it rolls back (``Journal.record_leftover``:
path, inode, source, content). The next run (``apply --yes``, the sweeper) removes each one
through ``fsops.remove_leftover_view`` once it is verified to be the very inode qbhook made,
still holding the content qbhook proved it held, that content still lives elsewhere, and no
torrent of any client uses the path now. A
client that cannot be listed postpones the cleanup (never a guess), and so does a listing that
cannot say what is unused (no torrents at all, a torrent being moved: ``orphans.check_listing``);
a view that changed is released (kept, and no longer tracked), never removed. A refusal that
says nothing about the view (its root or a folder refused, its source gone or not verifying) or
an OSError keeps it for the next run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from qbhook.clients.port import ClientPort
from qbhook.errors import OrphansRefused, QbhookError, UnsafeOperation, ViewReleased
from qbhook.paths import is_within

_log = logging.getLogger(__name__)

KEPT = "kept"  # a view's result that is no verdict: still pending, tried again next run


def pending(catalog) -> list[dict]:
    """Leftover views still on disk as the journal knows them (for ``status``)."""
    from qbhook.move.journal import Journal

    return [v for _sid, v in Journal(catalog.conn).leftover_views()]


def remove_leftover_views(cfg, catalog, clients: Iterable[ClientPort]) -> list[dict]:
    """Remove the journal's leftover views that are still qbhook's and redundant; one result per view."""
    from qbhook.move.journal import Journal
    from qbhook.move.locks import executor_lock
    from qbhook.move.orphans import LEFTOVERS, check_listing, in_use, references

    journal = Journal(catalog.conn)
    views = journal.leftover_views()
    if not views:
        return []
    try:
        lock = executor_lock(cfg, False).acquire()
    except QbhookError as e:
        _log.info("leftover views: %s; next time", e)
        return []
    try:
        try:
            refs = references(clients, LEFTOVERS)
            # A listing of no torrents (a client still loading its session) or with a torrent being
            # moved cannot say a view is unused: the orphan walk's refusals, for the same reason.
            check_listing(refs.torrents, refs.moving, LEFTOVERS)
        except OrphansRefused as e:
            _log.warning("leftover views kept for now: %s", e.message)
            return []
        out = []
        # Newest first: links onto a copy go before the copy, which then has its one link left.
        for sid, v in reversed(views):
            path = os.path.normpath(v["path"])
            # In use: a torrent seeds from it now, it is no leftover.
            res = {"status": "in_use"} if in_use(path, refs) is not None else _remove_one(cfg, catalog, path, v)
            if res["status"] != KEPT:
                journal.leftover_done(sid, res)
            out.append({"path": path, **res})
        return out
    finally:
        lock.release()


def _remove_one(cfg, catalog, path: str, v: dict) -> dict:
    """The checked removal of one view (``fsops.remove_leftover_view``), its folders pruned after."""
    from qbhook.move import fsops

    seeding = cfg.anchored_seeding_roots
    try:
        res = fsops.remove_leftover_view(
            path,
            ino=int(v["ino"]),
            size=int(v["size"]),
            keep=v.get("keep"),
            blake3_hex=v.get("blake3"),
            roots=seeding,
            keep_roots=tuple(p.path for p in cfg.pools),
            catalog=catalog,
            ctime_ns=v.get("ctime_ns"),  # absent in a view an older qbhook journaled: a hash
        )
    except ViewReleased as e:
        return {"status": "released", "reason": str(e)}
    except (UnsafeOperation, OSError) as e:
        # A root swapped for a moment, a folder refused, EIO or EMFILE: nothing about the view
        # itself. Releasing it would leave its duplicate data untracked for good.
        _log.warning("leftover view %s kept for the next run: %s", path, e)
        return {"status": KEPT, "reason": str(e)}
    if res["status"] == "removed":
        catalog.forget_path(path)
        root = next((r for r in seeding if is_within(os.path.dirname(path), r)), None)  # strictly below r
        if root is not None:
            try:
                fsops.prune_empty_dirs(os.path.dirname(path), root, roots=seeding)
            except (UnsafeOperation, OSError):
                pass
    return res
