"""``qbhook plan`` and ``qbhook explain``: show decisions, change nothing."""

from __future__ import annotations

import sys

import click

from qbhook.cli.app import SECONDS, TEXT, TORRENT_HASH, App, echo_shown, main, pass_app
from qbhook.decide.plan import describe_step
from qbhook.errors import ExitCode
from qbhook.units import human_bytes as _human_bytes

EXIT_ACTIONABLE = ExitCode.ACTIONABLE


def hashes_of_groups(app: App, group_ids) -> list[str] | None:
    from qbhook.decide.planning import hashes_of_groups as of_groups

    return of_groups(app.catalog, app.clients, group_ids)


def compute_plan(app: App, hashes=None, scan: bool | None = True):
    """Snapshot and plan (``hashes``: only their groups); what the catalog rested on is kept
    in ``app.catalog_use`` for ``catalog_note``."""
    from qbhook.decide.planning import plan_run

    snap, plan, app.catalog_use = plan_run(
        app.cfg, app.catalog, app.clients, hashes=hashes, scan=scan, progress=app.progress()
    )
    return snap, plan


def catalog_note(app: App) -> dict:
    """What the catalog rested on: one line on stderr, or (``--json``) the ``catalog`` key only,
    so machine output stays one document."""
    use = getattr(app, "catalog_use", None)
    if use is None:
        return {}
    if not app.as_json:
        echo_shown(f"qbhook: {use.reason}", err=True)
    return {"catalog": use.as_dict()}


@main.command()
@click.option(
    "--hash",
    "hashes",
    multiple=True,
    type=TORRENT_HASH,
    help="Only the group(s) of these torrents (no walk of the pools).",
)
@click.option(
    "--group", "group_ids", multiple=True, type=TEXT, help="Only this payload group (repeatable; no walk of the pools)."
)
@click.option(
    "--scan/--no-scan",
    "scan",
    default=None,
    help="Scan the pools first, or use the catalog as is. Default: a plan of everything scans "
    "when the last full scan is older than scan.max_age; --hash/--group never walk.",
)
@click.option("--steps", is_flag=True, help="Also list each group's steps.")
@click.option(
    "--save",
    "save_to",
    type=click.Path(dir_okay=False),
    help="Also write the plan to this file, for `qbhook apply --plan FILE` after review.",
)
@pass_app
def plan(app: App, hashes, group_ids, scan, steps, save_to):
    """Show what qbhook would do for every payload group. Changes nothing.

    Exit code 0: nothing to do; 10: some groups would demote or promote.
    """
    targets = list(hashes)
    if group_ids:
        found = hashes_of_groups(app, group_ids)
        targets = None if found is None else targets + found
    snap, p = compute_plan(app, targets or None, scan=scan)
    if group_ids:
        p = only_groups(p, group_ids)
    note = catalog_note(app)
    saved = _save(app, snap, p, save_to) if save_to else None
    app.emit({**p.to_dict(), **note, **({"plan_id": saved} if saved else {})}, lambda d: _print_plan(p, steps))
    if saved:
        echo_shown(
            f"plan {saved[:12]} saved to {save_to}; apply it with: qbhook apply --plan {save_to} --yes", err=app.as_json
        )
    sys.exit(EXIT_ACTIONABLE if p.actionable else 0)


def only_groups(p, group_ids):
    """The plan restricted to the named groups (exact ids, as ``plan`` prints them)."""
    from qbhook.decide.plan import Plan

    wanted = {g.strip().lower() for g in group_ids}
    return Plan(groups=[g for g in p.groups if g.group_id in wanted], created_at=p.created_at)


def _save(app: App, snap, p, path) -> str:
    from qbhook.decide import approved

    doc = approved.document(p, snap, approved.seeding_roots(app.cfg))
    approved.save(path, doc)
    return doc["plan_id"]


def _print_plan(p, steps: bool) -> None:
    rows = sorted(
        p.groups, key=lambda g: (["demote", "promote", "converge", "blocked", "skip", "stay"].index(g.action), g.names)
    )
    for g in rows:
        extra = ""
        if g.actionable:
            extra = f"  copy {_human_bytes(g.bytes_to_copy)}, frees {_human_bytes(g.bytes_freed)} on {g.source_pool}"
        echo_shown(
            f"{g.action.upper():8} {g.group_id}  {len(g.torrents)} torrent(s), {_human_bytes(g.payload_bytes)}{extra}"
        )
        for n in g.names[:5]:
            echo_shown(f"           - {n}")
        if len(g.names) > 5:
            echo_shown(f"           ... and {len(g.names) - 5} more")
        echo_shown(f"           why: {g.reason}")  # reasons and steps name paths
        if steps:
            for s in g.steps:
                echo_shown(f"             {s.kind:12} {describe_step(s.kind, s.args)}")
    s = p.summary()
    echo_shown(
        f"\n{s['demote']} to demote, {s['promote']} to promote, {s['converge']} to converge, {s['blocked']} "
        f"blocked, {s['skip']} skipped, "
        f"{s['stay']} staying; {_human_bytes(s['bytes_to_copy'])} to copy, {_human_bytes(s['bytes_freed'])} to free"
    )
    if p.actionable:
        echo_shown("dry run: nothing changed. Apply with: qbhook apply --yes")


@main.command()
@click.argument("torrent_hash", type=TORRENT_HASH)
@click.option("--no-scan", is_flag=True, help="Skip the incremental catalog scan first.")
@click.option(
    "--index",
    "from_index",
    is_flag=True,
    help="Only the last recorded decision, from the torrent index (no new decision, no scan).",
)
@click.option(
    "--live",
    is_flag=True,
    help="List the torrents from the clients (every torrent of each) instead of the torrent index.",
)
@click.option(
    "--max-scan-age",
    type=SECONDS,
    default=None,
    help="Seconds (default: scan.max_age): a full scan of every pool at most this old is used as "
    "is (the group's own files are re-stat-ed anyway); older, or never, and both pools are "
    "scanned first. The same age for the torrent index: older, and it is synced first.",
)
@pass_app
def explain(app: App, torrent_hash, no_scan, from_index, live, max_scan_age):
    """Why TORRENT_HASH's group gets its decision: its torrents, files and every link found.

    The decision is taken now: every file of the group is stat-ed live and every known link
    checked. The torrents (state, tags, category, file lists) come from the torrent index,
    as old as its last sync (said on stderr and in --json's ``index``), so qBittorrent may
    be down; --live lists them from the clients instead.
    """
    from qbhook.catalog.queries import last_full_scan_age
    from qbhook.cli.torrents import explain_from_index
    from qbhook.errors import QbtError

    if from_index:
        return explain_from_index(app, torrent_hash, None)
    # explain changes nothing, so a recent catalog is enough: a link made since shows as a
    # link "outside the scanned pools" (counted, not named), never as no link.
    age = last_full_scan_age(app.catalog, app.cfg.pools)
    limit = app.cfg.scan.max_age if max_scan_age is None else max_scan_age
    scan = not no_scan and (age is None or age > limit)
    note = (
        "pools scanned now"
        if scan
        else "catalog as is (--no-scan)"
        if no_scan
        else f"catalog from a full scan {age:.0f} s ago; this group's files re-stat-ed"
    )
    decided = None if live else _decide_from_index(app, torrent_hash, scan, limit)
    if decided is None:
        try:
            snap, p = compute_plan(app, [torrent_hash], scan=scan)
        except QbtError as e:
            return explain_from_index(app, torrent_hash, f"live answer impossible: {e}")
        index = {"source": "clients", "reason": "torrents listed from the clients now"}
    else:
        snap, p, index = decided
    from qbhook.decide.explain import backstop_stops

    data = _explain_data(snap, p, torrent_hash, {"catalog": note, "index": index})
    g = data["group"]
    data["backstop"] = backstop_stops(app.catalog.conn, g["group_id"], [torrent_hash, *g["torrents"]])
    app.emit(data, _print_explain)


def _explain_data(snap, p, torrent_hash: str, notes: dict) -> dict:
    """explain's answer: the group's decision, its torrents and every file's links."""
    h = torrent_hash.lower()
    # The snapshot holds only this torrent's group (closure over shared files); match v1/v2 spellings too.
    group = next((g for g in p.groups if h in g.torrents), p.groups[0])
    torrents = [t for t in snap.torrents if t.hash in group.torrents]
    data = {"group": group.to_dict(), "torrents": [], **notes}
    for t in torrents:
        files = []
        for f in t.files:
            i = snap.inodes.get(f.inode) if f.inode else None
            files.append(
                {
                    "path": f.path,
                    "size": f.size,
                    "inode": list(f.inode) if f.inode else None,
                    "nlink": i.nlink if i else None,
                    "external_links": i.external_links if i else None,
                    "seeding_links": list(i.seeding_paths) if i else [],
                    "other_links": list(i.other_paths) if i else [],
                    "blake3": i.blake3 if i else None,
                }
            )
        data["torrents"].append(
            {
                "hash": t.hash,
                "name": t.name,
                "state": t.state,
                "progress": t.progress,
                "save_path": t.save_path,
                "tags": sorted(t.tags),
                "category": t.category,
                **payload_ids(t, snap),
                "files": files,
            }
        )

    return data


def _decide_from_index(app: App, torrent_hash: str, scan: bool, limit: float):
    """(snapshot, plan, what the torrents came from) decided on the torrent index, or None when
    the index cannot stand in (``qbhook.decide.explain``): the caller then asks the clients.

    An index older than ``limit`` (or never synced) is synced first: one request per unchanged
    qBittorrent. A client that cannot be reached then leaves the index as it was, and the
    answer says so; explain still answers, with every file stat-ed live.
    """
    import time

    from qbhook.catalog.torrents import TorrentIndex
    from qbhook.decide.explain import GroupCatalog, indexed_group

    names = [c.name for c in app.cfg.clients]
    synced = TorrentIndex(app.catalog.conn).synced()
    now = time.time()
    problems: list[str] = []
    if any((synced.get(n) or {}).get("synced_at") is None or now - synced[n]["synced_at"] > limit for n in names):
        from qbhook.catalog.indexer import try_sync_all

        _reports, errors = try_sync_all(app.catalog, app.clients)
        problems = [f"cannot sync {e}" for e in errors]
    view = indexed_group(app.catalog, torrent_hash, names, [str(r) for r in app.cfg.seeding_roots])
    if view is None:
        return None
    from qbhook.decide.planner import make_plan
    from qbhook.decide.planning import ready_catalog
    from qbhook.decide.snapshot import build_snapshot

    app.catalog_use = ready_catalog(app.cfg, app.catalog, targeted=True, scan=scan, progress=app.progress())
    snap = build_snapshot(
        app.cfg,
        GroupCatalog(app.catalog),
        view.clients,
        hashes=[torrent_hash],
        infos=view.infos,
        progress=app.progress(),
        hash_budget=app.cfg.scan.hash_budget,
    )
    now = time.time()
    ages = {n: None if at is None else round(now - at, 1) for n, at in view.synced_at.items()}
    said = ", ".join(f"{n} {'never synced' if a is None else f'synced {a:.0f} s ago'}" for n, a in ages.items())
    reason = f"torrents from the index ({said}); files stat-ed now" + "".join(f"; {p}" for p in problems)
    index = {"source": "index", "reason": reason, "synced_age_s": ages, "problems": problems}
    return snap, make_plan(snap, app.cfg.policy), index


def _print_explain(d: dict) -> None:
    g = d["group"]
    echo_shown(f"({d['catalog']}; {d['index']['reason']})", err=True)
    echo_shown(f"group {g['group_id']}: {g['action'].upper()} - {g['reason']}")
    for b in g["blockers"]:
        echo_shown(f"  blocked: {b}")
    for v in d.get("backstop", ()):
        echo_shown(f"  STOPPED BY THE VIEW BACKSTOP in run {v['run']} (group {v['group_id']}): {v['reason']}")
        echo_shown(f"    what to do: {v['todo']}")
    for t in d["torrents"]:
        echo_shown(
            f"  torrent {t['hash']} {t['name']!r} [{t['state']}, {t['progress'] * 100:.0f}%] at {t['save_path']}"
        )
        echo_shown(f"    tags: {', '.join(t['tags']) or '-'}; category: {t['category'] or '-'}")
        echo_shown(f"    content id: {t['content_id'] or '(not all files hashed)'}; tree id: {t['tree_id'] or '-'}")
        for f in t["files"]:
            if f["inode"] is None:
                echo_shown(f"    {f['path']}: MISSING")
                continue
            echo_shown(
                f"    {f['path']}: inode {f['inode'][1]} on {f['inode'][0]}, {f['nlink']} link(s), "
                f"{f['external_links']} outside the seeding roots"
            )
            for o in f["other_links"]:
                echo_shown(f"      library/other: {o}")
            unknown = f["external_links"] - len(f["other_links"])
            if unknown > 0:
                echo_shown(f"      + {unknown} link(s) outside the scanned pools")


def payload_ids(t, snap) -> dict:
    """Layout-independent content id and layout-bound tree id (None until every file is hashed)."""
    from qbhook.catalog.hashing import EMPTY_HASH
    from qbhook.catalog.identity import content_id, tree_id

    idents = []
    for f in t.files:
        i = snap.inodes.get(f.inode) if f.inode else None
        digest = EMPTY_HASH if f.size == 0 else (bytes.fromhex(i.blake3) if i and i.blake3 else None)
        if digest is None:
            return {"content_id": None, "tree_id": None}
        idents.append((f.rel, (f.size, digest)))
    return {"content_id": content_id(x for _, x in idents), "tree_id": tree_id(idents)}
