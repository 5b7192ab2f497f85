"""Command-line entry point. Thin: parse, load config, call one function, print.

Exit codes are named in ``qbhook.errors.ExitCode``: 0 ok; 1 generic failure;
2 usage / bad input; 3 refused by a safety guard (e.g. mass delete); 4 torrent
client unreachable; 5 unsafe operation refused; 6 stale groups of a saved plan
refused (apply --plan); 10 "plan has actionable groups" (plan only); 65 unusable
plan file; 74 catalog damaged or its disk failing; 75 busy (lock held, or serve's
port taken); 78 configuration problem.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys

import click

from qbhook import notify
from qbhook.catalog.db import sqlite_failure
from qbhook.config import Config, check_paths, describe, find_config_path, load_config
from qbhook.errors import ExitCode, QbhookError
from qbhook.units import human_bytes as _human_bytes

log = logging.getLogger("qbhook")


class App:
    def __init__(self, config_path: str | None, as_json: bool, verbose: int):
        self.config_path = config_path
        self.as_json = as_json
        self.verbose = verbose
        self._cfg: Config | None = None
        self._catalog = None

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            self._cfg = load_config(find_config_path(self.config_path))
            notify.configure(self._cfg)      # no-op without notify.urls
        return self._cfg

    @property
    def catalog(self):
        if self._catalog is None:
            from qbhook.catalog.store import Catalog
            self._catalog = Catalog.open(self.cfg.catalog, marker_roots=[p.path for p in self.cfg.pools])
        return self._catalog

    @property
    def clients(self):
        if getattr(self, "_clients", None) is None:
            from qbhook.clients.registry import Clients
            from qbhook.errors import ConfigError
            if not self.cfg.clients:
                raise ConfigError("clients", "no torrent client configured",
                                  hint="add a 'qbittorrent:' section (url, username, password_env) or a "
                                       "'clients:' list (type: qbittorrent | rtorrent)")
            self._clients = Clients.from_config(self.cfg.clients)
        return self._clients

    def emit(self, data, human=None) -> None:
        if self.as_json:
            # Compact: indent= switches json to its slow pure-Python encoder on big outputs.
            click.echo(json.dumps(data, sort_keys=True, default=str, separators=(",", ":")))
        elif human is not None:
            human(data)

    def progress(self):
        from qbhook.progress import Progress
        return Progress(enabled=None if not self.as_json else sys.stderr.isatty())


pass_app = click.make_pass_decorator(App)


class SizeParam(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx):
        from qbhook.config import parse_size
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError:
            self.fail(f"{value!r} is not a size (examples: 1000, 64KiB, 1M, 2GB)", param, ctx)


def shown(path) -> str:
    """A path as text a terminal can print: undecodable bytes appear as \\xNN, never crash."""
    b = os.fsencode(path)
    return b.decode("utf-8", "backslashreplace")


class QbhookGroup(click.Group):
    """Turns QbhookError into a message and its exit code instead of a traceback."""

    def invoke(self, ctx):
        try:
            try:
                return super().invoke(ctx)
            except sqlite3.DatabaseError as e:
                # One-line error naming the catalog (exit 74 when damaged); bugs keep their traceback.
                cfg = getattr(ctx.obj, "_cfg", None)
                err = sqlite_failure(e, cfg.catalog if cfg is not None else None)
                if err is None:
                    raise
                raise err from None
        except QbhookError as e:
            click.echo(f"qbhook: {e}", err=True)
            ctx.exit(e.exit_code)


@click.group(cls=QbhookGroup)
@click.option("--config", "-c", "config_path", envvar="QBHOOK_CONFIG", help="Config file (default /etc/qbhook/config.yaml).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="qbhook")
@click.pass_context
def main(ctx, config_path, as_json, verbose):
    """qbhook keeps torrent seed data on the right pool: libraries' data on the
    primary pool, seed-only data on the cold pool, one physical copy each."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = App(config_path, as_json, verbose)
    ctx.call_on_close(notify.flush_pending)     # bounded wait for pending notifications


# ---------------------------------------------------------------- config
@main.group()
def config():
    """Inspect the configuration."""


@config.command("check")
@pass_app
def config_check(app: App):
    """Validate the config and the pools it names; print it resolved (secrets masked)."""
    cfg = app.cfg
    problems = check_paths(cfg)
    data = describe(cfg)
    data["problems"] = problems

    def human(d):
        import yaml
        click.echo(yaml.safe_dump({k: v for k, v in d.items() if k != "problems"}, sort_keys=False).rstrip())
        for p in problems:
            click.echo(f"PROBLEM: {p}", err=True)
        if not problems:
            click.echo("config OK", err=True)
    app.emit(data, human)
    if problems:
        sys.exit(ExitCode.CONFIG)


# ---------------------------------------------------------------- catalog
@main.command()
@click.argument("pools", nargs=-1)
@click.option("--allow-mass-delete", is_flag=True, help="Accept that a large share of files vanished.")
@click.option("--hash/--no-hash", "do_hash", default=False, help="Also hash every file lacking a valid hash (slow).")
@pass_app
def scan(app: App, pools, allow_mass_delete, do_hash):
    """Incrementally scan POOLS (default: all) into the catalog."""
    from qbhook.hashing import ensure_hashes
    from qbhook.scanner import scan_pool
    cfg = app.cfg
    targets = [cfg.pool(n) for n in pools] if pools else list(cfg.pools)
    results = []
    for pool in targets:
        res = scan_pool(app.catalog, pool, cfg.scan, progress=app.progress(), allow_mass_delete=allow_mass_delete)
        results.append(res.as_dict())
    out = {"scans": results}
    if do_hash:
        ids = [r[0] for r in app.catalog.conn.execute("SELECT id FROM inodes")]
        # background: idle I/O and nice 19 in the hashing threads; at most scan.hash_budget bytes
        rep = ensure_hashes(app.catalog, ids, settle_seconds=cfg.scan.settle_seconds, progress=app.progress(),
                            budget=cfg.scan.hash_budget, background=True)
        out["hashing"] = {"hashed": rep.hashed, "cached": rep.cached, "bytes_read": rep.bytes_read,
                          "unsettled": len(rep.unsettled), "missing": len(rep.missing)}
        out["hash_budget"] = {"limit": cfg.scan.hash_budget, "deferred_files": len(rep.deferred),
                              "deferred_bytes": rep.deferred_bytes}
    out["catalog"] = app.catalog.counts()

    def human(d):
        for r in d["scans"]:
            click.echo(f"{r['pool']}: {r['files_seen']:,} files seen, {r['added']:,} added, {r['changed']:,} changed, "
                       f"{r['removed']:,} removed ({r['seconds']:.1f}s)")
            for u in r["unreadable"]:
                click.echo(f"  unreadable (kept as is): {u}", err=True)
        if "hashing" in d:
            h = d["hashing"]
            left = d["hash_budget"]["deferred_files"]
            click.echo(f"hashing: {h['hashed']:,} hashed, {h['cached']:,} cached, {h['unsettled']} still changing"
                       + (f", {left:,} left for the next run (scan.hash_budget spent)" if left else ""))
    app.emit(out, human)


@main.command()
@click.option("--no-scan", is_flag=True, help="Use the catalog as is (no incremental scan first).")
@click.option("--min-size", default="1", type=SizeParam(), help="Ignore files smaller than this (e.g. 1M, 64MiB).")
@click.option("--payloads", is_flag=True, help="Whole torrent payloads stored more than once (torrent index).")
@click.option("--offline", is_flag=True, help="With --payloads: do not sync the index from the clients first.")
@pass_app
def dupes(app: App, no_scan, min_size, payloads, offline):
    """List content stored more than once as distinct inodes, with the bytes converging would free."""
    from qbhook.dupes import find_duplicates
    from qbhook.scanner import scan_pool
    cfg = app.cfg
    if payloads:
        from qbhook.cli_torrents import payload_dupes
        return payload_dupes(app, offline)
    if not no_scan:
        for pool in cfg.pools:
            scan_pool(app.catalog, pool, cfg.scan, progress=app.progress())
    sets = find_duplicates(app.catalog, settle_seconds=cfg.scan.settle_seconds, min_size=min_size,
                           progress=app.progress())
    data = {"sets": [s.as_dict() for s in sets],
            "reclaimable_bytes": sum(s.reclaimable for s in sets),
            "across_pools": sum(1 for s in sets if s.scope == "across-pools")}

    def human(d):
        if not d["sets"]:
            click.echo("no duplicate content found")
            return
        for s in d["sets"]:
            click.echo(f"{_human_bytes(s['size'])} x{len(s['copies'])} {s['scope']} "
                       f"(frees {_human_bytes(s['reclaimable_bytes'])}) blake3:{s['blake3'][:16]}")
            for c in s["copies"]:
                click.echo(f"    inode {c['inode']} on {c['fsid']} (links: {c['nlink']})")
                for p in c["paths"]:
                    click.echo(f"        {shown(p)!r}" if "\n" in p else f"        {shown(p)}")
        click.echo(f"{len(d['sets'])} duplicated contents, {_human_bytes(d['reclaimable_bytes'])} reclaimable "
                   f"({d['across_pools']} across pools)")
    app.emit(data, human)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@pass_app
def find(app: App, path):
    """Show every link of PATH's inode and every known copy of its content (both pools)."""
    from qbhook.locate import locate
    data = locate(app.catalog, app.cfg, path)

    def human(d):
        click.echo(f"{shown(d['path'])}: {_human_bytes(d['size'])}, inode {d['inode']} on {d['fsid']}, {d['nlink']} links")
        click.echo(f"  blake3: {d['blake3'] or '(not hashed)'}")
        click.echo("  links of this inode:")
        for p in d["links"]:
            click.echo(f"    {shown(p)}")
        if d["unknown_links"]:
            click.echo(f"    ... and {d['unknown_links']} link(s) outside the scanned pools")
        click.echo("  same content elsewhere:" if d["copies"] else "  no other copy of this content is known")
        for c in d["copies"]:
            click.echo(f"    inode {c['inode']} on {c['fsid']} ({c['nlink']} links):")
            for p in c["paths"]:
                click.echo(f"      {shown(p)}")
    app.emit(data, human)




# Subcommands live in their own modules (heavy imports stay inside the commands).
from qbhook import cli_apply, cli_demo, cli_events, cli_plan, cli_torrents  # noqa: F401  (register on `main`)
