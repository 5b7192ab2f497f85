"""Leftover views: files a rolled-back group built on its target pool and nobody uses.

The executor journals each view file of a group it rolls back (``Journal.record_leftover``:
path, inode, source, content). The next run (``apply --yes``, the sweeper) removes each one
through ``fsops.remove_leftover_view`` once it is verified to be the very inode qbhook made,
still holding the content qbhook proved it held, that content still lives elsewhere, and no
torrent of any client uses the path now (a view that is a name of its keep's inode: by that
name, ``orphans.name_in_use``; the keep's own torrent uses its own name). A file a torrent seeds
from ends its tracking (``in_use``, ``orphans.REFERENCED``: a complete torrent's file, or a wanted
file of one at 100 % of what it wants that skips others, R111). A place a torrent may still write
keeps it tracked (``KEPT``, ``INCOMPLETE_USER``; ``orphans.PROTECTED``: a file it still needs or
skips, or in a folder it keeps its data in) until that torrent completes on it or goes, and
``status`` says it waits for that torrent (``waits_for``, its name when the listing says which:
``orphans.writer_of``), not that the next run removes it: a failed repair's link it could not
take back lies under its own torrent, stopped under 100 %, and ending its tracking left a library
inode there for good, out of ``status`` (R105). A
client that cannot be listed postpones the cleanup (never a guess), and so does a listing that
cannot say what is unused (no torrents at all, a torrent being moved: ``orphans.check_listing``);
a view that changed is released (kept, and no longer tracked), never removed. A refusal that
says nothing about the view (its root or a folder refused, a change during the checks) or an
OSError keeps it for the next run.

A view whose source is gone or does not verify (``ViewUnproven``) may be the last copy of its
content: it is never removed, and trying again every run only logged the same line forever.
It waits for a person instead (``Journal.leftover_needs_person``): one warning and one notification
when it is found, then ``status`` and the status page name it and why (a problem: exit 1, and in
``--json``), until one of them
changes, which each run sees by a look that acts on nothing (``fsops.look_at_leftover_view``):
the view gone or another file at its name (the person removed or replaced it) ends its tracking;
its source back or changed (a pool mounted again, the file restored) puts it back among the
views a run tries to remove, verified as any other.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from qbhook.clients.port import ClientPort
from qbhook.errors import OrphansRefused, QbhookError, UnsafeOperation, ViewReleased, ViewUnproven
from qbhook.paths import is_within

_log = logging.getLogger(__name__)

KEPT = "kept"  # a view's result that is no verdict: still pending, tried again next run
NEEDS_PERSON = "needs_person"  # its source is gone or does not verify: kept, not tried again (see above)
INCOMPLETE_USER = "a torrent not complete on it may still write it: kept until that torrent completes on it or goes"


def pending(catalog) -> list[dict]:
    """Leftover views still on disk as the journal knows them (for ``status``)."""
    from qbhook.move.journal import Journal

    return [v for _sid, v in Journal(catalog.conn).leftover_views()]


def remove_leftover_views(cfg, catalog, clients: Iterable[ClientPort]) -> list[dict]:
    """Remove the journal's leftover views that are still qbhook's and redundant; one result per view."""
    from qbhook.move.journal import Journal
    from qbhook.move.locks import executor_lock
    from qbhook.move.orphans import LEFTOVERS, check_listing, references

    journal = Journal(catalog.conn)
    tracked = journal.leftover_tracked()
    out, again = _look_at_waiting(cfg, journal, [(sid, v, why) for sid, v, why in tracked if why is not None])
    views = sorted([(sid, v) for sid, v, why in tracked if why is None] + again, key=lambda sv: sv[0])
    if not views:
        return out
    try:
        lock = executor_lock(cfg, False).acquire()
    except QbhookError as e:
        _log.info("leftover views: %s; next time", e)
        return out
    try:
        try:
            refs = references(clients, LEFTOVERS)
            # A listing of no torrents (a client still loading its session) or with a torrent being
            # moved cannot say a view is unused: the orphan walk's refusals, for the same reason.
            check_listing(refs.torrents, refs.moving, LEFTOVERS)
        except OrphansRefused as e:
            _log.warning("leftover views kept for now: %s", e.message)
            return out
        # Newest first: links onto a copy go before the copy, which then has its one link left.
        kept: set[tuple[str | None, int]] = set()  # (pool, inode) of views kept for another run
        for sid, v in reversed(views):
            path = os.path.normpath(v["path"])
            pool = cfg.pool_of(path)
            inode = (pool.name if pool is not None else None, int(v["ino"]))
            used, writer = _in_use(path, v, refs)
            if used and writer is None:
                # A torrent seeds from it now (by its path, or through a symlink onto it): no leftover.
                res = {"status": "in_use"}
            elif used:
                # A torrent may still write it: most often the failed repair's own, stopped under 100 %
                # on a library inode it could not take back (R105). Untracked, it stayed there for good,
                # out of ``status``: kept, tried again each run, ``status`` naming that torrent.
                res = {"status": KEPT, "reason": INCOMPLETE_USER, "torrent": writer}
            elif inode in kept:
                # A link onto this copy stayed (a refusal that says nothing of it): the copy still
                # has it, and "linked elsewhere" would release it, its duplicate untracked for good.
                res = {"status": KEPT, "reason": "a link of it was kept for the next run"}
            else:
                res = _remove_one(cfg, catalog, path, v)
            if res["status"] == KEPT:
                kept.add(inode)
            waits = res["torrent"] if res.get("reason") == INCOMPLETE_USER else None
            if waits != v.get("waits_for"):
                journal.leftover_waits_for(sid, waits)
            if res["status"] == NEEDS_PERSON:
                journal.leftover_needs_person(sid, res["reason"], res.pop("source_seen"))
                _tell_waiting(res["reason"])
            elif res["status"] != KEPT:
                journal.leftover_done(sid, res)
            out.append({"path": path, **res})
        return out
    finally:
        lock.release()


def _in_use(path: str, v: dict, refs) -> tuple[bool, str | None]:
    """Whether a torrent uses the view at ``path`` (journaled as ``v``) now, and, when one may still
    write it (``orphans.in_use``'s PROTECTED), which: ``orphans.writer_of``, "" when the listing does
    not say (None: a torrent seeds from it, REFERENCED, or none uses it). A view that is a name
    of its keep's inode (a link a demote made from a donor on the target pool, usually another
    torrent's seeding file) is used only by that name (``orphans.name_in_use``: a listed name of the
    inode in the view's folder, by the folder's identity, whatever path or spelling): the donor's
    torrent uses the inode by its own, and removing the view's name (``fsops.remove_leftover_view``:
    only while the keep still names the same inode) takes nothing from it. By identity alone it read
    as in use, and its tracking ended with it on disk for good. Any other view by identity too
    (``orphans.in_use``): a torrent reaching its inode by any name uses the one copy it is."""
    from qbhook.move.orphans import PROTECTED, identity, in_use, name_in_use, writer_of

    key = identity(path)
    keep = v.get("keep")
    if key is not None and isinstance(keep, str) and identity(os.path.normpath(keep)) == key:
        used, by = name_in_use(path, refs, key), None  # by this name only: not the donor's torrent
    else:
        used, by = in_use(path, refs, key), key
    return used is not None, (writer_of(path, refs, by) or "") if used == PROTECTED else None


def _tell_waiting(why: str) -> None:
    """Notified once, when it starts waiting: it is not tried again, so this is not said again until
    its source changes and it is tried (and found unproven) again. Unattended, one log line and
    `qbhook status` reached nobody (R35); the status page lists it too (its "Needs you")."""
    from qbhook import notify

    notify.emit(
        "needs_person",
        f"leftover view kept, maybe the last copy of its content: {why} "  # why names the view
        "(remove or move it yourself once you know)",
        "failure",
    )


def _look_at_waiting(cfg, journal, waiting) -> tuple[list[dict], list[tuple[int, dict]]]:
    """The views waiting for a person: a look at each (no lock, no client: nothing is acted on),
    its tracking ended if it went or was replaced, back among the pending if its source changed.
    Silent unless something changed: a view left as it was is not reported again. Returns the
    results and the views to try again."""
    from qbhook.move import fsops

    out, again = [], []
    for sid, v, why in waiting:
        path = os.path.normpath(v["path"])
        try:
            state, source = fsops.look_at_leftover_view(
                path,
                ino=int(v["ino"]),
                size=int(v["size"]),
                keep=v.get("keep"),
                roots=cfg.anchored_seeding_roots,
                keep_roots=tuple(p.path for p in cfg.pools),
            )
        except (UnsafeOperation, OSError):
            continue  # a root or folder refused, EIO: no news, it keeps waiting
        if state != "there":
            res = (
                {"status": "absent"}
                if state == "absent"
                else {"status": "released", "reason": f"another file took its name while it waited ({why})"}
            )
            journal.leftover_done(sid, res)
            out.append({"path": path, **res})
        elif source != v.get("source_seen"):
            _log.info("leftover view %s: its source changed since (%s); trying it again", path, why)
            journal.leftover_retry(sid)
            again.append((sid, v))
    return out, again


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
    except ViewUnproven as e:
        _log.warning(
            "leftover view %s kept: %s; it may be the last copy of its content: `qbhook status` lists it "
            "until you remove or move it, or its source changes",
            path,
            e,
        )
        return {"status": NEEDS_PERSON, "reason": str(e), "source_seen": e.source}
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
                # Upwards only: the empty folders beside the view are not the rolled-back group's.
                fsops.prune_empty_dirs(os.path.dirname(path), root, roots=seeding, below=False)
            except (UnsafeOperation, OSError):
                pass
    return res
