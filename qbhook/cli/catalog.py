"""``qbhook scan``, ``dupes``, ``find``: the catalog of files, inodes and content hashes."""

from __future__ import annotations

import json
import os

import click

from qbhook.cli.app import SIZE, App, echo_json, echo_problems, echo_shown, main, pass_app, shown
from qbhook.units import human_bytes as _human_bytes


@main.command(secrets="notify")  # its mass-delete guard may notify; it asks no client
@click.argument("pools", nargs=-1)
@click.option("--allow-mass-delete", is_flag=True, help="Accept that a large share of files vanished.")
@click.option(
    "--forget-unmounted",
    "forget",
    metavar="MOUNTPOINT",
    multiple=True,
    callback=lambda ctx, param, values: _absolute(values, param),
    help="Forget the kept paths of the filesystem last mounted at MOUNTPOINT, not mounted now (repeatable).",
)
@click.option("--hash/--no-hash", "do_hash", default=False, help="Also hash every file lacking a valid hash (slow).")
@pass_app
def scan(app: App, pools, allow_mass_delete, forget, do_hash):
    """Incrementally scan POOLS (default: all) into the catalog.

    The paths of a nested filesystem that is not mounted are kept as they were, and said
    ("not mounted"); if its files are gone for good, --forget-unmounted drops them, and only
    them, uncounted by the mass-delete guard (--allow-mass-delete turns it off for every pool).

    \b
    Example:
      qbhook scan
      qbhook scan --forget-unmounted /stash/data/old-dataset
    """
    from qbhook.catalog import findwalk
    from qbhook.errors import ConfigError

    cfg = app.cfg
    try:
        targets = [cfg.pool(n) for n in pools] if pools else list(cfg.pools)
    except ConfigError as e:
        # The name came from the command line, not the file: a usage error (exit 2), not 78.
        raise click.BadParameter(
            f"{e.message.removeprefix('config: pools: ')} ({e.hint})", param_hint="POOLS"
        ) from None
    # The walks start as soon as the roots are known: the scanner's imports and the catalog's
    # opening then run on one core while find walks on the other. A first scan stops its find
    # unread; any error on the way (an unreachable catalog) stops and reaps them all here.
    runs = findwalk.start_finds(targets, cfg.scan)
    try:
        from qbhook.catalog.scan import scan_pools

        catalog = app.catalog
        # Counted while find walks; reported as they are if nothing was written since (an
        # unchanged rescan), else counted again. With --hash this process writes hashes, which
        # the mark does not follow: those runs always count after.
        before = None if do_hash else catalog.counts_marked()
        scanned = scan_pools(
            catalog,
            targets,
            cfg.scan,
            progress=app.progress(),
            allow_mass_delete=allow_mass_delete,
            runs=runs,
            forget_unmounted=_forgettable(catalog, forget),
        )
    finally:
        findwalk.close_all(runs)
    results = [res.as_dict() for res in scanned]
    out = {"scans": results}
    if do_hash:
        out.update(_hash_missing(app))
    out["catalog"] = catalog.counts(since=before)

    def human(d):
        for r in d["scans"]:
            echo_shown(
                f"{r['pool']}: {r['files_seen']:,} files seen, {r['added']:,} added, {r['changed']:,} changed, "
                f"{_removed(r)} ({r['seconds']:.1f}s)"
            )
            for u in r["unreadable"]:
                echo_shown(f"  unreadable (kept as is): {shown(u)}", err=True)
            for u in r["unmounted"]:
                echo_shown(f"  not mounted (its paths kept as is; gone? --forget-unmounted): {shown(u)}", err=True)
        if "hashing" in d:
            h = d["hashing"]
            left = d["hash_budget"]["deferred_files"]
            echo_shown(
                f"hashing: {h['hashed']:,} hashed, {h['cached']:,} cached, {h['unsettled']} still changing"
                + (f", {left:,} left for the next run (scan.hash_budget spent)" if left else "")
            )

    app.emit(out, human)


def _absolute(values: tuple[str, ...], param) -> tuple[str, ...]:
    """--forget-unmounted's mount points: absolute, as the mount table names them; a relative
    one was made absolute from wherever the command ran, a usage error (exit 2) instead."""
    for v in values:
        if not v.startswith("/"):
            raise click.BadParameter(f"'{shown(v)}' is not an absolute path (a mount point)", param=param)
    return values


def _forgettable(catalog, forget: tuple[str, ...]) -> tuple[str, ...]:
    """``forget`` if each --forget-unmounted names a catalogued filesystem not mounted now, else
    a usage error (exit 2) before anything is scanned: a typo was a silent "0 removed", and the
    admin believed the rows gone. A mounted one (a pool root) never is: its files are walked."""
    if not forget:
        return forget
    from qbhook.catalog.scan import unmounted_filesystems

    away = {f.mountpoint for f in unmounted_filesystems(catalog)}
    for m in forget:
        if os.path.abspath(m) not in away:
            raise click.BadParameter(
                f"matched nothing: '{shown(m)}' is not where a catalogued filesystem that is not "
                "mounted now was mounted",
                param_hint="'--forget-unmounted'",
            )
    return forget


def _removed(r: dict) -> str:
    """A scan's removed paths, and how many of them --forget-unmounted named (not the guard's)."""
    forgot = f" ({r['forgotten']:,} of them forgotten, as asked)" if r["forgotten"] else ""
    return f"{r['removed']:,} removed{forgot}"


def _hash_missing(app: App) -> dict:
    """`scan --hash`: hash every inode lacking a valid hash; the output's hashing sections."""
    # Here, not at the top: the hashing machinery (threads, ctypes, the worker pool) is
    # ~10 ms of imports a plain rescan never uses.
    from qbhook.catalog.hashing import ensure_hashes

    cfg = app.cfg
    ids = app.catalog.inode_ids()
    # background: idle I/O and nice 19 in the hashing threads; at most scan.hash_budget bytes
    rep = ensure_hashes(
        app.catalog,
        ids,
        settle_seconds=cfg.scan.settle_seconds,
        progress=app.progress(),
        budget=cfg.scan.hash_budget,
        background=True,
    )
    return {
        "hashing": {
            "hashed": rep.hashed,
            "cached": rep.cached,
            "bytes_read": rep.bytes_read,
            "unsettled": len(rep.unsettled),
            "missing": len(rep.missing),
        },
        "hash_budget": {
            "limit": cfg.scan.hash_budget,
            "deferred_files": len(rep.deferred),
            "deferred_bytes": rep.deferred_bytes,
        },
    }


# A sync of the torrent index asks the clients: every secret; a scan may notify: notify's.
@main.command(secrets=lambda p: (not p["offline"]) if p["payloads"] else (False if p["no_scan"] else "notify"))
@click.option("--no-scan", is_flag=True, help="Use the catalog as is (no incremental scan first).")
@click.option("--min-size", default="1", type=SIZE, help="Ignore files smaller than this (e.g. 1M, 64MiB).")
@click.option("--payloads", is_flag=True, help="Whole torrent payloads stored more than once (torrent index).")
@click.option("--offline", is_flag=True, help="With --payloads: do not sync the index from the clients first.")
@pass_app
def dupes(app: App, no_scan, min_size, payloads, offline):
    """List content stored more than once as distinct inodes, with the bytes converging would free.

    Example: qbhook dupes --min-size 100M
    """
    from qbhook.catalog.dupes import duplicates_report
    from qbhook.catalog.scan import scan_pools
    from qbhook.decide.heap import collector_paused

    cfg = app.cfg
    if offline and not payloads:
        raise click.UsageError("--offline goes with --payloads (the file duplicates never ask the clients)")
    if payloads:
        _payload_options(click.get_current_context(), no_scan)
    # Its scan writes, and so does --payloads' sync of the torrent index: they make a catalog if
    # there is none. --no-scan and --offline make none (App.open_catalog), but --no-scan is no
    # read-only look: it caches the hashes it computes (and its report) in the catalog.
    app.open_catalog(writes=not (offline if payloads else no_scan))
    if payloads:
        return payload_dupes(app, offline)
    # The collector paused (decide.heap): a first run holds a few objects per file (walked
    # stats, candidate rows, paths) with no cycle among them, and each full pass walked them
    # all again to free nothing (~5 passes, 0.1-0.2 CPU-s on bench_dupes' tree: §3 of
    # docs/benchmarks.md).
    with collector_paused():
        if not no_scan:
            scan_pools(app.catalog, list(cfg.pools), cfg.scan, progress=app.progress())
        # The report's JSON text (kept in the catalog while nothing it depends on was written):
        # --json prints it as is, byte for byte what app.emit would print for the parsed report.
        text = duplicates_report(
            app.catalog, settle_seconds=cfg.scan.settle_seconds, min_size=min_size, progress=app.progress()
        )
    if app.as_json:
        echo_json(text)
        return

    def human(d):
        if not d["sets"]:
            echo_shown("no duplicate content found")
            return
        for s in d["sets"]:
            echo_shown(
                f"{_human_bytes(s['size'])} x{len(s['copies'])} {s['scope']} "
                f"(frees {_human_bytes(s['reclaimable_bytes'])}) blake3:{s['blake3'][:16]}"
            )
            for c in s["copies"]:
                echo_shown(f"    inode {c['inode']} on {c['fsid']} (links: {c['nlink']})")
                for p in c["paths"]:
                    echo_shown(f"        {shown(p)}")
        echo_shown(
            f"{len(d['sets'])} duplicated contents, {_human_bytes(d['reclaimable_bytes'])} reclaimable "
            f"({d['across_pools']} across pools)"
        )

    human(json.loads(text))


def _payload_options(ctx, no_scan: bool) -> None:
    """`dupes --payloads` reads the torrent index, no file of the pools: --min-size and --no-scan
    were silently ignored there, an answer that looked filtered and was not."""
    from click.core import ParameterSource

    if no_scan:
        raise click.UsageError("--no-scan does not go with --payloads (it scans nothing; --offline skips its sync)")
    if ctx.get_parameter_source("min_size") != ParameterSource.DEFAULT:
        raise click.UsageError("--min-size does not go with --payloads (it filters files, not whole payloads)")


@main.command(secrets=False)
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@pass_app
def find(app: App, path):
    """Show every link of PATH's inode and every known copy of its content (both pools).

    Example: qbhook find '/stash/data/media/movies/Film (2020)/Film (2020).mkv'
    """
    from qbhook.catalog.locate import locate

    data = locate(app.open_catalog(writes=False), app.cfg, path)

    def human(d):
        echo_shown(
            f"{shown(d['path'])}: {_human_bytes(d['size'])}, inode {d['inode']} on {d['fsid']}, {d['nlink']} links"
        )
        echo_shown(f"  blake3: {d['blake3'] or '(not hashed)'}")
        echo_shown("  links of this inode:")
        for p in d["links"]:
            echo_shown(f"    {shown(p)}")
        if d["unknown_links"]:
            echo_shown(f"    ... and {d['unknown_links']} link(s) outside the scanned pools")
        echo_shown("  same content elsewhere:" if d["copies"] else "  no other copy of this content is known")
        for c in d["copies"]:
            echo_shown(f"    inode {c['inode']} on {c['fsid']} ({c['nlink']} links):")
            for p in c["paths"]:
                echo_shown(f"      {shown(p)}")

    app.emit(data, human)


def payload_dupes(app: App, offline: bool) -> None:
    """``qbhook dupes --payloads``: whole payloads stored more than once, from the index."""
    from qbhook.catalog.queries import payload_copies
    from qbhook.units import human_bytes

    data = payload_copies(app.catalog, app.clients, offline)
    echo_problems(data)

    def human(d):
        if not d["payloads"]:
            echo_shown("no payload is stored more than once (among fully hashed torrents)")
            return
        for s in d["payloads"]:
            lay = f", {s['layouts']} layouts" if s["layouts"] > 1 else ""
            echo_shown(
                f"payload {s['content_id'][:16]} {human_bytes(s['size'])} stored x{s['copies']}{lay} "
                f"(frees {human_bytes(s['reclaimable_bytes'])})"
            )
            for c in s["stored"]:
                for t in c["torrents"]:
                    echo_shown(
                        f"    {t['hash'][:12]} tree {t['tree_id'][:12]} {shown(t['name'])} "
                        f"at {shown(t['save_path'] or '?')}"
                    )
        echo_shown(f"{len(d['payloads'])} payload(s), {human_bytes(d['reclaimable_bytes'])} reclaimable")

    app.emit(data, human)
