"""``qbhook torrents``: the torrent index, answered from the catalog (qBittorrent may be down).

By default the index is synced first (one request per unchanged qBittorrent); a client that
cannot be reached is reported on stderr with the age of what is shown, and the answer
comes from the index as it is. ``--offline`` never contacts a client.
"""

from __future__ import annotations

import time

import click

from qbhook.cli.app import App, main, pass_app, shown


def last_full_scan_age(app: App) -> float | None:
    """Seconds since every configured pool last finished a full scan (None: one never did)."""
    import os
    finished = []
    for pool in app.cfg.pools:
        # a whole-pool scan only: a subtree scan (events) says nothing about the rest
        r = app.catalog.conn.execute(
            "SELECT max(finished_at) FROM scans WHERE pool=? AND status='ok' AND root=?",
            (pool.name, os.fsencode(os.path.normpath(str(pool.path))))).fetchone()
        if r is None or r[0] is None:
            return None
        finished.append(r[0])
    return time.time() - min(finished) if finished else None


def load_index(app: App, offline: bool) -> tuple[dict, list[str]]:
    """Sync (unless offline); returns (freshness per instance, problems met)."""
    from qbhook.catalog.indexer import try_sync_all
    from qbhook.catalog.torrents import TorrentIndex
    problems: list[str] = []
    if not offline:
        _reports, errors = try_sync_all(app.catalog, app.clients)
        problems += [f"cannot sync {e}" for e in errors]
        problems += [r.rebuilt for r in _reports if r.rebuilt]
        problems += [f"{r.instance}: {u}" for r in _reports for u in r.unmappable]
    synced = TorrentIndex(app.catalog.conn).synced()
    return synced, problems


@main.command()
@click.option("--pool", help="Only torrents whose save path is in this pool ('none': in no pool).")
@click.option("--state", help="Only torrents in this state (e.g. stalledUP, stoppedUP).")
@click.option("--category", help="Only torrents of this category.")
@click.option("--group", "group", help="Only torrents of this payload group (id or its prefix).")
@click.option("--decision", help="Only torrents whose last known decision is this (stay, demote, ...; 'none').")
@click.option("--gone", is_flag=True, help="Include torrents the client no longer has.")
@click.option("--offline", is_flag=True, help="Do not contact any client; answer from the index as it is.")
@pass_app
def torrents(app: App, pool, state, category, group, decision, gone, offline):
    """List indexed torrents with their pool, payload group, payload id and last known decision."""
    from qbhook.catalog.torrents import TorrentIndex
    cfg = app.cfg
    synced, problems = load_index(app, offline)
    for p in problems:
        click.echo(f"qbhook: {p}", err=True)
    idx = TorrentIndex(app.catalog.conn)
    groups = idx.groups()
    now = time.time()
    rows = []
    for t in idx.torrents(include_gone=gone):
        p = cfg.pool_of(t.save_path) if t.save_path else None
        d = t.as_dict()
        d["pool"] = p.name if p else None
        d["group"] = groups.get((t.instance, t.hash))
        rows.append(d)
    if pool is not None:
        rows = [r for r in rows if (r["pool"] or "none") == pool]
    if state is not None:
        rows = [r for r in rows if r["state"] == state]
    if category is not None:
        rows = [r for r in rows if r["category"] == category]
    if group is not None:
        rows = [r for r in rows if (r["group"] or "").startswith(group.lower())]
    if decision is not None:
        rows = [r for r in rows if (r["decision"] or "none") == decision]
    fresh = {name: {**s, "age_s": round(now - s["synced_at"], 1) if s["synced_at"] else None}
             for name, s in synced.items()}
    data = {"torrents": rows, "index": fresh, "problems": problems}

    def human(d):
        if not d["torrents"]:
            click.echo("no indexed torrent matches")
        for r in d["torrents"]:
            pid = r["content_id"][:16] if r["content_id"] else f"(hashed {r['files_hashed']}/{r['files']})"
            dec = r["decision"] or "-"
            where = r["pool"] or ("unmapped: " + r["map_error"] if r["map_error"] else "no pool")
            click.echo(f"{r['hash'][:12]} {r['state'] or '?':<11} {where:<8} group {(r['group'] or '-')[:12]} "
                       f"payload {pid} {dec:<8} {shown(r['name'])}" + (" [gone]" if r["gone_at"] else ""))
        for name, s in d["index"].items():
            age = f"{s['age_s']:.0f} s ago" if s["age_s"] is not None else "never"
            click.echo(f"index of {name}: synced {age} ({s['mode']})", err=True)
    app.emit(data, human)


def payload_dupes(app: App, offline: bool) -> None:
    """``qbhook dupes --payloads``: whole payloads stored more than once, from the index."""
    from qbhook.catalog.torrents import TorrentIndex, payload_duplicates
    from qbhook.units import human_bytes
    _synced, problems = load_index(app, offline)
    for p in problems:
        click.echo(f"qbhook: {p}", err=True)
    sets = payload_duplicates(TorrentIndex(app.catalog.conn))
    data = {"payloads": sets, "reclaimable_bytes": sum(s["reclaimable_bytes"] for s in sets),
            "problems": problems}

    def human(d):
        if not d["payloads"]:
            click.echo("no payload is stored more than once (among fully hashed torrents)")
            return
        for s in d["payloads"]:
            lay = f", {s['layouts']} layouts" if s["layouts"] > 1 else ""
            click.echo(f"payload {s['content_id'][:16]} {human_bytes(s['size'])} stored x{s['copies']}{lay} "
                       f"(frees {human_bytes(s['reclaimable_bytes'])})")
            for c in s["stored"]:
                for t in c["torrents"]:
                    click.echo(f"    {t['hash'][:12]} tree {t['tree_id'][:12]} {shown(t['name'])} "
                               f"at {shown(t['save_path'] or '?')}")
        click.echo(f"{len(d['payloads'])} payload(s), {human_bytes(d['reclaimable_bytes'])} reclaimable")
    app.emit(data, human)


def explain_from_index(app: App, torrent_hash: str, why: str | None) -> None:
    """``explain`` answered from the torrent index: no client, no scan; says how old it is.

    The torrent's group as the index last saw it, each file's catalog inode and, stat-ed
    live (one lstat per file, no walk), whether that path still is that inode and its links.
    The decision shown is the last one the planner recorded, with its time: a memory, not a
    new decision.
    """
    import os

    from qbhook.catalog.torrents import TorrentIndex
    from qbhook.errors import UnknownTorrent
    idx = TorrentIndex(app.catalog.conn)
    h = torrent_hash.strip().lower()
    rows = idx.torrents()
    hit = [t for t in rows if h in (t.hash, t.infohash_v1, t.infohash_v2)]
    if not hit:
        raise UnknownTorrent(f"torrent {torrent_hash} is not in the torrent index"
                             + (f" (and {why})" if why else ""))
    groups = idx.groups()
    gid = groups.get((hit[0].instance, hit[0].hash))
    members = [t for t in rows if groups.get((t.instance, t.hash)) == gid]
    synced = idx.synced()
    now = time.time()
    out_t = []
    for t in members:
        files = []
        for _i, rel, size, _prio, path, inode in idx.files(t.instance, t.hash):
            row = app.catalog.inode(inode) if inode else None
            live = None
            if path is not None:
                try:
                    st = os.lstat(path)
                    live = {"same_inode": bool(row) and st.st_ino == row.ino, "nlink": st.st_nlink}
                except OSError:
                    live = {"same_inode": False, "nlink": None}
            files.append({"rel": rel, "size": size, "path": shown(path) if path else None,
                          "inode": [row.fsid, row.ino] if row else None, "catalog_nlink": row.nlink if row else None,
                          "blake3": row.hash.hex() if row and row.hash else None, "live": live})
        s = synced.get(t.instance, {})
        out_t.append({**t.as_dict(), "files": files,
                      "index_age_s": round(now - s["synced_at"], 1) if s.get("synced_at") else None})
    first = hit[0]
    data = {"source": "index", "why": why, "group": {"group_id": gid, "decision": first.decision,
                                                      "decision_reason": first.decision_reason,
                                                      "decided_at": first.decided_at,
                                                      "planned_group_id": first.group_id},
            "torrents": out_t}

    def human(d):
        g = d["group"]
        click.echo(f"from the torrent index ({d['why'] or 'as asked'}):", err=True)
        when = f", decided {now - g['decided_at']:.0f} s ago" if g["decided_at"] else ""
        click.echo(f"group {g['group_id']}: last decision {(g['decision'] or 'none').upper()}"
                   f"{' - ' + g['decision_reason'] if g['decision_reason'] else ''}{when}")
        for t in d["torrents"]:
            age = f"{t['index_age_s']:.0f} s old" if t["index_age_s"] is not None else "never synced"
            click.echo(f"  torrent {t['hash']} {t['name']!r} [{t['state']}] at {t['save_path'] or '(unmapped)'} "
                       f"(index {age})")
            click.echo(f"    content id: {t['content_id'] or '(not all files hashed)'}; tree id: {t['tree_id'] or '-'}")
            for f in t["files"]:
                lv = f["live"]
                state = ("MISSING" if lv and lv["nlink"] is None else
                         f"{lv['nlink']} link(s) now" + ("" if lv["same_inode"] else ", not the indexed inode")
                         if lv else "no host path")
                click.echo(f"    {f['path'] or f['rel']}: {state}")
    app.emit(data, human)
