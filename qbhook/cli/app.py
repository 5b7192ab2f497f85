"""The click group ``main``, the ``App`` every command receives, and shared options."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sqlite3
import sys

import click

from qbhook import notify
from qbhook.catalog.db import sqlite_failure
from qbhook.config import Config, find_config_path, load_config
from qbhook.errors import QbhookError

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
            notify.configure(self._cfg)  # no-op without notify.urls
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
                raise ConfigError(
                    "clients",
                    "no torrent client configured",
                    hint="add a 'qbittorrent:' section (url, username, password_env) or a "
                    "'clients:' list (type: qbittorrent | rtorrent)",
                )
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


# The modules of qbhook.cli that register commands on ``main``, and which one holds each
# command. Only the module of the command being run is imported: `qbhook dupes` then never
# loads the planner, the executor, Flask or the client libraries (python -X importtime). A
# command name not listed here loads every module, so a command added to a module without
# updating this map still works (only not lazily); --help lists them all.
CLI_MODULES = ("apply", "catalog", "config", "demo", "events", "orphans", "plan", "repair", "torrents")
COMMAND_MODULES = {
    "apply": "apply",
    "resume": "apply",
    "history": "apply",
    "scan": "catalog",
    "dupes": "catalog",
    "find": "catalog",
    "config": "config",
    "demo": "demo",
    "sweep": "events",
    "status": "events",
    "queue": "events",
    "hook": "events",
    "setup": "events",
    "serve": "events",
    "orphans": "orphans",
    "holding": "orphans",
    "plan": "plan",
    "explain": "plan",
    "repair": "repair",
    "torrents": "torrents",
}


def load_commands(*modules: str) -> None:
    """Import these modules of qbhook.cli (default: all), which registers their commands."""
    for m in modules or CLI_MODULES:
        importlib.import_module(f"qbhook.cli.{m}")


class QbhookGroup(click.Group):
    """Turns QbhookError into a message and its exit code instead of a traceback; loads each
    command's module only when that command is asked for (see COMMAND_MODULES)."""

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            load_commands(COMMAND_MODULES[cmd_name])
        if cmd_name not in self.commands:
            load_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx):
        load_commands()
        return super().list_commands(ctx)

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
@click.option(
    "--config", "-c", "config_path", envvar="QBHOOK_CONFIG", help="Config file (default /etc/qbhook/config.yaml)."
)
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
    ctx.call_on_close(notify.flush_pending)  # bounded wait for pending notifications


# ---------------------------------------------------------------- config
