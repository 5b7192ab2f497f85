"""``qbhook repair [HASH] [--yes]``: torrents whose files went missing, rebuilt from catalog copies.

Dry run unless ``--yes`` (like ``apply``). The decision is ``qbhook.decide.repair`` (pure); this
module gathers its facts live: the clients' torrents and file lists, each file's last known
content from the torrent index (synced first), the catalog inodes with that content (each path
lstat-ed: it must still be that inode, unchanged since hashed), and what sits at every path a
view could use. The plan runs through the journaled executor, so a crash is finished by
``qbhook resume``. Exit codes: 0 ok, 2 bad input (unknown torrent, not missing), 1 the named
torrent cannot be repaired (the reason is printed), 5 a repair failed.
"""

from __future__ import annotations

import os
import stat
import sys
import time

import click

from qbhook.cli.app import SECONDS, TORRENT_HASH, App, echo_shown, main, pass_app
from qbhook.errors import ExitCode, QbhookError
from qbhook.units import human_bytes as _human_bytes


class RepairInputError(QbhookError):
    """``qbhook repair HASH`` named a torrent that is unknown or not missing anything."""

    exit_code = ExitCode.BAD_INPUT


@main.command()
@click.argument("torrent_hash", required=False, type=TORRENT_HASH)
@click.option("--yes", is_flag=True, help="Really do it. Without --yes: print the repairs, change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout (as qbhook --json).")
@click.option(
    "--wait", type=SECONDS, default=0, help="Seconds to wait for a busy executor lock (default: fail at once)."
)
@pass_app
def repair(app: App, torrent_hash, yes, as_json, wait):
    """Rebuild torrents in missingFiles from copies the catalog holds: hardlinks on one dataset,
    setLocation if the save path changes, recheck to 100 %. No bytes are copied."""
    from qbhook.catalog.indexer import try_sync_all
    from qbhook.decide.repair import plan_repairs
    from qbhook.move.executor import build_executor

    app.as_json = app.as_json or as_json
    want = torrent_hash  # TORRENT_HASH: checked and lower-cased
    try_sync_all(app.catalog, app.clients)  # keeps the last known hashes of files still there
    facts = gather(app, want)
    plan, refused = plan_repairs(facts)
    if want is not None and refused:
        raise QbhookError(f"cannot repair {refused[0].name} ({want}): {refused[0].reason}")
    ex = build_executor(app.cfg, app.catalog, app.clients, lock_wait=False if not wait else float(wait), notify=True)
    summary = ex.apply(plan, trigger="repair", dry_run=not yes)
    out = {
        "dry_run": not yes,
        "repairs": [g.to_dict() for g in plan.groups],
        "unrepairable": [r.as_dict() for r in refused],
        "run": summary.to_dict(),
    }
    app.emit(out, lambda d: _print(d, yes))
    sys.exit(summary.exit_code)


def _print(d: dict, yes: bool) -> None:
    for g in d["repairs"]:
        echo_shown(f"repair {g['names'][0]} ({g['torrents'][0][:12]}): {g['reason']}")
        if not yes:
            from qbhook.decide.plan import describe_step

            for s in g["steps"]:
                echo_shown(f"    {s['kind']:<12} {describe_step(s['kind'], s['args'])}")
    for r in d["unrepairable"]:
        echo_shown(f"cannot repair {r['name']} ({r['hash'][:12]}): {r['reason']}")
    run = d["run"]
    if not d["repairs"] and not d["unrepairable"]:
        echo_shown("no torrent is missing its files")
    elif not yes:
        echo_shown("dry run: nothing changed (run with --yes to repair)")
    else:
        failed = run["groups_failed"]
        echo_shown(
            f"{len(run['groups_done'])} repaired, {len(failed)} failed, {_human_bytes(run['bytes_copied'])} copied"
        )
        for gid, why in failed.items():
            echo_shown(f"  {gid}: {why}")


# ------------------------------------------------------------------ gathering the facts (I/O)


def gather(app: App, want: str | None):
    """The repair's facts, read live (``want``: only that torrent; it must exist and miss files)."""
    from qbhook.decide.repair import RepairFacts, view_paths

    cfg, catalog = app.cfg, app.catalog
    pools = tuple(_pool_fact(catalog, p) for p in cfg.pools)
    if want is not None:
        infos = app.clients.find_all(want)
        if not infos:
            raise RepairInputError(f"no configured torrent client ({app.clients.describe()}) has torrent {want}")
    else:
        infos = [t for c in app.clients for t in c.torrents()]
    torrents = []
    for info in infos:
        t = _missing_torrent(app, info)
        if t is not None:
            torrents.append(t)
        elif want is not None:
            raise RepairInputError(
                f"torrent {info.name} ({want}) is not missing any file (state {info.state}): nothing to repair"
            )
    # Only content with a known hash can have copies: a file never hashed before it went missing
    # is plan_repairs' "content unknown" refusal (bytes.fromhex(None) was a traceback here).
    known = {(f.size, f.blake3) for t in torrents for f in t.files if f.priority and f.size and f.blake3 is not None}
    copies = _copies(catalog, known)
    present = {p: _present(catalog, p) for t in torrents for p in view_paths(t, pools)}
    return RepairFacts(tuple(torrents), pools, copies, present, now=time.time())


def _pool_fact(catalog, p):
    from qbhook.decide.facts import PoolFact

    root = str(p.seeding_root)
    return PoolFact(
        name=p.name,
        role=p.role,
        path=str(p.path),
        seeding_root=root,
        seeding_fsid=catalog.fsid(catalog.fs_for_path(root)) if os.path.isdir(root) else f"unmounted:{root}",
        free_bytes=0,  # a repair writes no payload bytes
        more_seeding_roots=tuple(str(r) for r in p.more_seeding_roots),
    )


def _missing_torrent(app: App, info):
    """The torrent with its files' last known content, or None when nothing of it is missing."""
    from qbhook.catalog.torrents import last_known_files
    from qbhook.decide.repair import MissingTorrent, RepairFile

    if not info.has_metadata or not info.save_path:
        return None
    live = app.clients[info.instance].files(info.hash)
    gone = [f for f in live if f.wanted and not _is_file(os.path.join(info.save_path, f.name))]
    if info.state != "missingFiles" and not gone:
        return None
    _cid, known = last_known_files(app.catalog.conn, info.instance, info.hash)
    by_index = {i: (rel, size, digest) for i, rel, size, _prio, digest in known}
    files = []
    for f in live:
        k = by_index.get(f.index)
        digest = k[2].hex() if k is not None and k[0] == f.name and k[1] == f.size and k[2] is not None else None
        files.append(RepairFile(f.index, f.name, f.size, f.priority, digest))
    return MissingTorrent(
        info.hash, info.instance, info.name, info.state, os.path.normpath(info.save_path), tuple(files)
    )


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _copies(catalog, contents):
    """(size, blake3) -> catalog inodes holding it, each at a path lstat-ed just now that still is
    that inode. A hash taken before the inode's ctime moved (a link added or removed, as when the
    torrent's own link vanished) is confirmed by hashing the file again; ``verify_view`` checks
    the content once more before qBittorrent is asked anything."""
    from qbhook.decide.repair import CatalogCopy

    out = {}
    for size, digest in contents:
        found = []
        want = bytes.fromhex(digest)
        ids = [r[0] for r in catalog.conn.execute("SELECT id FROM inodes WHERE size=? AND hash=?", (size, want))]
        for inode_id in ids:
            row = catalog.inode(inode_id)
            for path, _pool in catalog.paths_of(inode_id):
                p = os.fsdecode(path)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if not (stat.S_ISREG(st.st_mode) and st.st_size == size and catalog.still_is(p, st, row)):
                    continue
                valid = row.hash == want and (st.st_mtime_ns, st.st_ctime_ns) == (row.mtime_ns, row.ctime_ns)
                if valid or _hashes_to(p, want):
                    found.append(CatalogCopy(p, row.fsid, row.ino))
                break
        out[(size, digest)] = tuple(found)
    return out


def _hashes_to(path: str, want: bytes) -> bool:
    from qbhook.catalog.hashing import hash_file

    try:
        res = hash_file(path)
    except OSError:
        return False
    return res.stable and res.digest == want


def _present(catalog, path: str):
    """What is at a view path now: None (nothing), or its inode with a valid stored hash."""
    from qbhook.decide.repair import Present

    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return Present("", st.st_ino, -1, None)  # a folder or symlink: never the wanted content
    fs = catalog.fs_for_path(path, st.st_dev)
    row = catalog.inode_by_key(fs, st.st_ino)
    ok = (
        row is not None
        and row.hash is not None
        and (row.size, row.mtime_ns, row.ctime_ns)
        == (
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
        )
    )
    return Present(catalog.fsid(fs), st.st_ino, st.st_size, row.hash.hex() if ok else None)
