"""The click group ``main``, the ``App`` every command receives, and shared options.

Start-up is paid by every command, so this module imports only click and the error hierarchy:
the config (PyYAML), the catalog (sqlite3), notifications and logging load when a command
first needs them, and a command's module loads only when that command runs (COMMAND_MODULES).
`qbhook --version` and `qbhook --help` import no command module and read no file
(tests/unit/test_startup.py holds every command's import set to that).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
from typing import TYPE_CHECKING

import click

from qbhook import __version__
from qbhook.errors import ExitCode, OutputError, QbhookError

if TYPE_CHECKING:
    from qbhook.config import Config


class App:
    def __init__(self, config_path: str | None, as_json: bool, verbose: int):
        self.config_path = config_path
        self.as_json = as_json
        self.verbose = verbose
        self._cfg: Config | None = None
        self._catalog = None
        # False: the config is loaded without its secrets (``load_config(secrets=False)``), for a
        # command that talks to no client and may run without the service's environment (`hook`,
        # `status`...); "notify": only the notification URLs, for one that may notify but talks to
        # no client (`scan`). The command's ``secrets`` (CommandParts) sets it before ``cfg`` is
        # first used.
        self.secrets: bool | str = True
        # True: this command sends the notifications earlier processes could not deliver
        # (``notify.configure(take_kept=...)``): serve, sweep, resume, and apply/converge --yes.
        # The hook and read-only commands, run often and meant to be quick, never do. Set before
        # ``cfg`` is first used.
        self.take_kept_notifications = False

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            from qbhook.config import find_config_path, load_config

            self._cfg = load_config(find_config_path(self.config_path), secrets=self.secrets)
            # notify.configure is a no-op without notify.urls unless a notifier already runs,
            # which needs qbhook.notify imported: only then is the module worth loading.
            if self._cfg.notify.urls or "qbhook.notify" in sys.modules:
                from qbhook import notify

                notify.configure(self._cfg, take_kept=self.take_kept_notifications)
        return self._cfg

    @property
    def catalog(self):
        """The catalog, made if there is none: ``open_catalog(writes=True)``, or the one a
        command opened already."""
        return self.open_catalog(writes=True)

    def open_catalog(self, *, writes: bool):
        """The command's catalog. ``writes``: the command puts something of its own in it: a scan
        (scan; plan, explain, dupes, converge and a dry-run apply unless ``--no-scan``: with no
        catalog they scan first), a sync of the torrent index (torrents, dupes --payloads, unless
        ``--offline``), a run (every ``--yes``, resume, sweep), events (hook, serve), the totals
        of ``orphans``; only then is one made if there is none. A command that scans and syncs
        nothing (status, history, queue, find, ``--offline``, ``--no-scan``...) makes none (find
        and ``dupes --no-scan`` still cache the hashes they compute in one that exists):
        CatalogMissing (one line, ExitCode.NO_INPUT; CatalogFolderMissing, 78, in every command
        when its folder is missing), neither file nor folder made, so a command
        run before the first scan, with the pools not mounted or ``catalog:`` mistyped does not
        leave an empty catalog that answers "nothing" later as if it were the real one. Called
        before anything else opens the catalog; ``catalog`` then returns this one."""
        if self._catalog is None:
            from qbhook.catalog.store import Catalog

            self._catalog = Catalog.open(self.cfg.catalog, marker_roots=[p.path for p in self.cfg.pools], create=writes)
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
            import json

            # Compact: indent= switches json to its slow pure-Python encoder on big outputs.
            echo_json(json.dumps(data, sort_keys=True, default=str, separators=(",", ":")))
        elif human is not None:
            human(data)

    def progress(self):
        from qbhook.progress import Progress

        return Progress()  # on stderr when it is a terminal: never in the way of --json on stdout

    def executor(self, wait: float = 0):
        """The journaled executor of a one-shot command; ``wait``: seconds to wait for its lock
        (``wait_option``; 0 fails at once). It notifies, as every run does."""
        from qbhook.move.executor import build_executor

        lock_wait = float(wait) if wait else False
        return build_executor(self.cfg, self.catalog, self.clients, lock_wait=lock_wait, notify=True)


pass_app = click.make_pass_decorator(App)


class SettingParam(click.ParamType):
    """A command-line value read by the reader of the setting it stands for (qbhook.config's
    ``duration``, ``count``, ``size``, ``port``, ``text``): the same units and bounds as in the file, one
    home for each rule. Out of range, NaN, a number SQLite cannot hold, an empty or non-UTF-8
    string: a one-line usage error (exit 2) before the command opens anything."""

    def __init__(self, name: str, reader: str, *, whole: bool = False, **bounds):
        self.name = name
        self._reader = (reader, bounds)  # built on first use: qbhook.config imports PyYAML
        self._whole = whole  # a whole number: the text is read as an int first

    def convert(self, value, param, ctx):
        from qbhook import config
        from qbhook.errors import ConfigError

        kind, bounds = self._reader
        read = getattr(config, kind)
        read = read(**bounds) if kind in ("duration", "count", "size") else read
        if self._whole and isinstance(value, str):
            try:
                value = config.parse_whole(value)
            except ValueError:
                self.fail(f"{shown(value)!r} is not a whole number", param, ctx)
        key = param.name if param is not None else self.name
        try:
            return read(value, key)
        except ConfigError as e:
            self.fail(e.message.removeprefix(f"config: {key}: "), param, ctx)


SECONDS = SettingParam("seconds", "duration")  # 30, 30s, 5m, 2h: finite, >= 0, at most ten years
ROW_ID = SettingParam("id", "count", whole=True, minimum=1)  # a run or job id: SQLite's 64-bit range
COUNT = SettingParam("count", "count", whole=True)  # a limit: 0 and up, within SQLite's range
PORT = SettingParam("port", "port", whole=True)  # 1-65535, as server.port
TEXT = SettingParam("text", "text")  # non-empty UTF-8 without NUL, as a text setting
SIZE = SettingParam("size", "size")  # 1000, 64KiB, 1M, 2GB: whole bytes, as promote_copy_max_bytes


def wait_option(default: float = 0):
    """``--wait``: the executor's lock, for every command that takes it (apply, resume, repair, sweep,
    holding --purge-expired): seconds to wait for it when busy, handed to App.executor(wait)."""
    told = "fail at once" if not default else f"{default:g} s"
    return click.option(
        "--wait", type=SECONDS, default=default, help=f"Seconds to wait for a busy executor lock (default: {told})."
    )


class FilePath(click.Path):
    """A file named on the command line (``apply --plan``, ``plan --save``). An empty name is a
    usage error, as ``-c ''`` is: ``--plan "$UNSET"`` ran the whole-catalog apply instead.
    ``replace``: qbhook will write a new file over the name, so something other than a regular
    file there (a FIFO, /dev/null, a symlink) is refused before anything runs
    (``qbhook.files.check_replaceable``, which ``decide.approved.save`` applies again)."""

    def __init__(self, *, replace: bool = False):
        super().__init__(dir_okay=False)
        self._replace = replace

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            self.fail("names no file (an empty path)", param, ctx)
        value = super().convert(value, param, ctx)
        if self._replace:
            from qbhook.files import NotReplaceable, check_replaceable

            try:
                check_replaceable(value)
            except NotReplaceable as e:
                self.fail(shown(str(e)), param, ctx)
        return value


class FolderPath(click.Path):
    """A folder named on the command line (``demo --dir``). An empty name is a usage error, as
    for ``FilePath``: ``--dir "$UNSET"`` meant the current folder, which no one named."""

    def __init__(self):
        super().__init__(file_okay=False)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            self.fail("names no folder (an empty path)", param, ctx)
        return super().convert(value, param, ctx)


class TorrentHash(click.ParamType):
    """A torrent's info hash, lower-cased: the catalog and the clients' answers spell it in lower
    case, users and rTorrent may not. Anything else (``zz``, non-UTF-8 bytes, which SQLite could
    not even encode) is a usage error before any client or catalog is asked. The rule is
    ``qbhook.clients.model.is_info_hash``."""

    name = "hash"

    def convert(self, value, param, ctx):
        from qbhook.clients.model import is_info_hash

        if isinstance(value, str) and is_info_hash(value.lower()):
            return value.lower()
        self.fail(f"not a torrent info hash (40 or 64 hex digits): {shown(value)[:80]!r}", param, ctx)


TORRENT_HASH = TorrentHash()

# Libraries whose DEBUG lines print request URLs (notify's secrets ride in them): at INFO at most.
QUIET_AT_DEBUG = ("apprise", "urllib3")


# The modules of qbhook.cli that register commands on ``main``; which one holds each command, and
# the first paragraph of its help (what `qbhook --help` lists). Only the module of the command
# being run is imported: `qbhook dupes` then never loads the planner, the executor, Flask or
# the client libraries, and `qbhook --help` lists every command from this table without
# importing any (python -X importtime). A command name not listed here loads every module, so
# a command added to a module without updating this table still runs (only not lazily);
# tests/unit/test_startup.py checks the table against the real commands.
CLI_MODULES = ("apply", "catalog", "config", "demo", "events", "orphans", "plan", "repair", "torrents")
COMMANDS = {
    "apply": ("apply", "Plan, then (with --yes) move payload groups between the pools."),
    "resume": ("apply", "Finish runs that crashed or were interrupted, re-checking the step that was in flight."),
    "history": ("apply", "Past runs from the journal (newest first), or one run's steps."),
    "converge": (
        "apply",
        "Relink seeding files that duplicate another inode on their dataset onto it, in one pass.",
    ),
    "scan": ("catalog", "Incrementally scan POOLS (default: all) into the catalog."),
    "dupes": (
        "catalog",
        "List content stored more than once as distinct inodes, with the bytes converging would free.",
    ),
    "find": ("catalog", "Show every link of PATH's inode and every known copy of its content (both pools)."),
    "config": ("config", "Inspect the configuration."),
    "demo": (
        "demo",
        "Build a sandbox (two real pools, a real qBittorrent and, when installed, rTorrent; sample "
        "torrents) and run qbhook end to end.",
    ),
    "sweep": (
        "events",
        "Scan, classify every group, plan (and apply when policy.auto_apply). Safe from cron/systemd.",
    ),
    "status": (
        "events",
        "Queue depth, server and worker health, last sweep, pending plans, recent runs, pool usage.",
    ),
    "queue": ("events", "List queued event jobs (dead letters show their error)."),
    "hook": (
        "events",
        "Enqueue a qBittorrent hook call directly (no server): qbhook hook added %I %J %K %N %L %G %F %R %D %C %Z",
    ),
    "setup": ("events", "Wire qbhook into other programs."),
    "serve": (
        "events",
        "Run the webhook server, the queue worker and a periodic sweeper until stopped (SIGTERM/SIGINT).",
    ),
    "orphans": ("orphans", "Files under the seeding roots that no torrent of any configured client references."),
    "holding": ("orphans", "Links waiting in holding folders (journal-recorded), and when each may be purged."),
    "plan": ("plan", "Show what qbhook would do for every payload group. Changes nothing."),
    "explain": ("plan", "Why TORRENT_HASH's group gets its decision: its torrents, files and every link found."),
    "repair": (
        "repair",
        "Rebuild torrents in missingFiles from copies the catalog holds: hardlinks on one dataset, "
        "setLocation if the save path changes, recheck to 100 %. No bytes are copied.",
    ),
    "torrents": (
        "torrents",
        "List indexed torrents with their pool, payload group, payload id and last known decision.",
    ),
}
COMMAND_MODULES = {name: module for name, (module, _) in COMMANDS.items()}


def shown(text) -> str:
    """``qbhook.paths.shown`` (the rule lives there), imported on first use: `qbhook --version`
    and `--help` import nothing beyond this module and the errors."""
    from qbhook.paths import shown as rule

    return rule(text)


def when(ts) -> str:
    """A time stamp in a human line: local time to the second, ``-`` for none (the terminal's
    user reads their own clock; the status page, read from anywhere, says UTC)."""
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def echo_shown(line: str = "", err: bool = False) -> None:
    """Print a human line: what ``shown`` makes of it (bytes that are not UTF-8 and what a
    terminal would act on, as escapes), never the raw text. The one printer of every human line
    of qbhook.cli (tests/unit/test_house.py holds its modules to it), so a name from the
    filesystem or a client cannot reach a terminal raw, whichever line it ends up in. A line
    break in ``line`` is escaped too: print several lines with several calls."""
    with _writing(err):
        click.echo(shown(line), err=err)


def echo_json(text: str) -> None:
    """Print ``--json`` output as it is: JSON escapes every control character already, and a
    program reading it must get the names' exact text back."""
    with _writing(False):
        click.echo(text)


@contextlib.contextmanager
def _writing(err: bool):
    """Around a click.echo: a standard output that cannot be written (a full disk behind
    ``>file``, an I/O error) is OutputError, one line on stderr and exit 74, not an OSError
    traceback. EPIPE goes on to click's main, which exits quietly (a reader such as ``head``
    went away). A standard error that cannot be written (``2>&-``, ``2>/dev/full``) is passed
    over: there is nowhere to say so, and the command goes on to its own exit code (an OSError
    here made every error exit 1)."""
    if not err and sys.stdout is None:
        # Started with descriptor 1 closed (`>&-`): Python made no stdout and click.echo would
        # drop the output without a word, exit 0, as if it had been written.
        raise OutputError("cannot write to standard output: it is closed")
    try:
        yield
    except (OSError, ValueError) as e:  # ValueError: a stream closed in this process
        if err:
            return
        if not isinstance(e, OSError) or e.errno == errno.EPIPE:
            raise
        _discard_stdout()
        raise OutputError(f"cannot write to standard output: {e.strerror}") from None


def _discard_stdout() -> None:
    """Point descriptor 1 at /dev/null: what stays in stdout's buffer would fail again when
    Python flushes it at exit (an "Exception ignored" message, and exit status 120)."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # a stream without a descriptor (a test runner's): nothing to flush
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def echo_error(e: QbhookError) -> None:
    """An error on stderr: ``qbhook: MESSAGE``, then its hint on a line of its own
    (``QbhookError.lines``), each line shown. The one printer of an error: what ends a command
    (``_report``) and a problem an answer reports on its way (``echo_problems``)."""
    first, *rest = e.lines()
    echo_shown(f"qbhook: {first}", err=True)
    for line in rest:
        echo_shown(line, err=True)


def _report(ctx, e: QbhookError):
    """End the command on ``e``: its message (and hint) on stderr, shown, then its exit code."""
    echo_error(e)
    ctx.exit(e.exit_code)


def _print_and_exit(ctx, text: str) -> None:
    """Print qbhook's own text (help, version) through the CLI's printer, then end the command:
    a standard output that cannot be written is one line and exit 74 there too. Printed as is,
    as JSON is: no name from outside is in it, and shown() would import qbhook.paths."""
    try:
        echo_json(text)
    except OutputError as e:
        _report(ctx, e)
    ctx.exit()


_VERSION_ASKED = "qbhook.version_asked"


def _print_version(ctx, _param, value) -> None:
    """``--version``: noted here, printed once every option of ``main`` is read
    (``QbhookGroup.parse_args``): an eager option's callback runs before ``--json`` is known, and
    ``qbhook --json --version`` printed plain text."""
    if value and not ctx.resilient_parsing:
        ctx.meta[_VERSION_ASKED] = True


def _version_text(ctx) -> str:
    """The version as click's version_option prints it, or ``{"version": ...}`` under ``--json``.
    The package's own constant: click would import importlib.metadata and read the dist-info,
    ~20 ms (a test holds it equal to the metadata)."""
    if ctx.params.get("as_json"):
        import json

        return json.dumps({"version": __version__}, separators=(",", ":"))
    return f"{ctx.find_root().info_name}, version {__version__}"


def _print_help(ctx, _param, value) -> None:
    """``--help``: click's help page, printed by ``_print_and_exit`` instead of click's own
    callback, whose bare click.echo made ``qbhook --help >/dev/full`` an OSError traceback."""
    if value and not ctx.resilient_parsing:
        _print_and_exit(ctx, ctx.get_help())


class OwnHelp:
    """A click command or group whose ``--help`` prints through ``_print_help``. Every command of
    qbhook is one: ``main`` is, and it makes its commands and groups with these classes
    (``command_class``, ``group_class``), and theirs in turn (tests/unit/test_cli_hostile_io.py
    runs ``--help`` of every command into /dev/full)."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.callback = _print_help  # the option is click's (names, help text), cached per command
        return option


def _json_after(ctx, _param, value) -> None:
    """``--json`` given after the command: the same flag as ``qbhook --json``, on the same App."""
    if value and not ctx.resilient_parsing:
        app = ctx.find_object(App)
        if app is not None:
            app.as_json = True


class CommandParts:
    """What every command and subgroup of ``main`` has, declared once instead of per command:

    - ``--json`` after the command as well as before it (``qbhook plan --json`` is
      ``qbhook --json plan``): one option, made here, setting the flag ``main`` sets;
    - ``secrets``: whether the command reads the config's secrets (``App.secrets``). False, or
      a function of the command's parameters answering False, for a command that contacts no
      client and sends no notification (status, history, queue, find, hook, ``torrents
      --offline``...): it runs without the service's environment (/etc/qbhook/env) instead of
      stopping at "QBHOOK_QBT_PASSWORD is not set". "notify": only the notification URLs, for
      a command that may notify but contacts no client (``scan``, ``dupes``' scan), which a
      client's password file it cannot read does not stop. Applied before the command body
      first loads the config; it only ever narrows (True, "notify", False), so a group never
      widens them again for its subcommand."""

    def __init__(self, *args, secrets=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.secrets = secrets
        self.params.append(
            click.Option(
                ["--json", "json_after"],
                is_flag=True,
                expose_value=False,
                callback=_json_after,
                help="Machine-readable output on stdout (as qbhook --json).",
            )
        )

    def invoke(self, ctx):
        wants = self.secrets(ctx.params) if callable(self.secrets) else self.secrets
        app = ctx.find_object(App)
        if wants is not True and app is not None:
            app.secrets = wants if app.secrets else False
        return super().invoke(ctx)


class QbhookCommand(CommandParts, OwnHelp, click.Command):
    pass


class QbhookSubgroup(CommandParts, OwnHelp, click.Group):
    command_class = QbhookCommand
    group_class = type  # its own groups are of this class too


def catalog_note(app: App, use) -> dict:
    """What the catalog rested on (``CatalogUse``): one line on stderr, or (``--json``) the
    ``catalog`` key only, so machine output stays one document. A client whose torrent index
    could not be synced (``use.problems``) is said on stderr either way, as ``echo_problems``
    says it (its hint below), and is in ``catalog.problems``."""
    if use is None:
        return {}
    if not app.as_json:
        echo_shown(f"qbhook: {use.reason}", err=True)
    for p in use.problems:
        echo_error(p)
    return {"catalog": use.as_dict()}


def echo_problems(data: dict) -> None:
    """The ``problems`` of an answer from the torrent index (a client that could not be synced),
    one line each on stderr, a client's hint below its line (``torrents``, ``dupes --payloads``)."""
    for p in data["problems"]:
        echo_error(p if isinstance(p, QbhookError) else QbhookError(p))


def print_summary(s) -> None:
    """A run (``RunSummary``) as a person reads it: each group and its steps, the counts, each
    failed group's reason on stderr. The one printer of a run: `apply`, `resume`, `converge`
    and what a `sweep` applied. Its imports load on first use (start-up: the module docstring)."""
    from qbhook.decide.plan import describe_step
    from qbhook.move.journal import failed_not_paused
    from qbhook.units import freed_bytes, human_bytes

    if s.orphans_held is not None and not s.groups:  # a quarantine run resume finished
        _print_quarantine(s, human_bytes)
        return
    if not s.groups:
        echo_shown("nothing to do")
        return
    paused = set(s.groups_paused)
    for g in s.groups:
        # reasons and steps name paths
        echo_shown(
            f"{'PAUSED' if g.group_id in paused else g.status.upper():11} {g.action:8} {g.group_id}"
            + (f"  - {g.reason}" if g.reason and g.status != "planned" else "")
        )
        for st in g.steps:
            echo_shown(
                f"    {st['kind']:12} {describe_step(st['kind'], st['args'])}"
                + (f"  [{st['now']}]" if st.get("now") and st["now"] != "to do" else "")
            )
    verb = "would copy" if s.dry_run else "copied"
    echo_shown()
    echo_shown(
        f"{verb} {human_bytes(s.bytes_copied)}, {'would free' if s.dry_run else 'freed'} "
        f"{freed_bytes(s.bytes_freed, s.bytes_freed_at_least)}, {s.torrents_relocated} torrent(s) "
        f"{'to relocate' if s.dry_run else 'relocated'}; {len(s.groups_done)} group(s) done, "
        f"{len(failed_not_paused(s.counters()))} failed, "
        + (f"{len(s.groups_paused)} paused, " if s.groups_paused else "")
        + f"{len(s.groups_busy)} busy"
    )
    if s.dry_run:
        echo_shown("dry run: nothing changed. Run again with --yes to apply.")
    for gid, reason in s.groups_failed.items():
        echo_shown(f"{'PAUSED' if gid in paused else 'FAILED'} {gid}: {reason}", err=True)


def _print_quarantine(s, human_bytes) -> None:
    """A quarantine run's finish, as ``qbhook orphans --quarantine --yes`` tells its own (no groups:
    "nothing to do" hid the orphans it held, and a failed one)."""
    for p, why in s.orphans_not_moved.items():
        echo_shown(f"not moved: {shown(p)}: {why}", err=True)
    echo_shown(
        f"quarantine {s.status}: {s.orphans_held} file(s) held in holding ({human_bytes(s.bytes_held)} to free "
        f"once purged), {s.orphans_failed} failed"
    )


def load_commands(*modules: str) -> None:
    """Import these modules of qbhook.cli (default: all), which registers their commands."""
    for m in modules or CLI_MODULES:
        importlib.import_module(f"qbhook.cli.{m}")


class QbhookGroup(OwnHelp, click.Group):
    """Turns QbhookError into a message and its exit code instead of a traceback; loads each
    command's module only when that command is asked for (see COMMANDS)."""

    command_class = QbhookCommand
    group_class = QbhookSubgroup

    def parse_args(self, ctx, args):
        rest = super().parse_args(ctx, args)
        if ctx.meta.get(_VERSION_ASKED):
            # Through the CLI's printer: ``--version >/dev/full`` was an OSError traceback.
            _print_and_exit(ctx, _version_text(ctx))
        return rest

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            load_commands(COMMAND_MODULES[cmd_name])
        if cmd_name not in self.commands:
            load_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx):
        return sorted(set(self.commands) | set(COMMANDS))

    def format_commands(self, ctx, formatter):
        """click's listing (Group.format_commands), each command not loaded yet standing in as
        its summary from COMMANDS: the same text, and `qbhook --help` imports no command module."""
        commands = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
            if not cmd.hidden:
                commands.append((name, cmd))
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in commands])

    def invoke(self, ctx):
        try:
            try:
                return super().invoke(ctx)
            except Exception as e:
                # A catalog error becomes one line naming the catalog (exit 74 when damaged); bugs
                # keep their traceback. Only a loaded sqlite3 can have raised one, and a command
                # that never opened the catalog (--help, config) need not import it to check.
                sqlite3 = sys.modules.get("sqlite3")
                if sqlite3 is None or not isinstance(e, sqlite3.DatabaseError):
                    raise
                from qbhook.catalog.db import sqlite_failure

                cfg = getattr(ctx.obj, "_cfg", None)
                err = sqlite_failure(e, cfg.catalog if cfg is not None else None)
                if err is None:
                    raise
                raise err from None
        except QbhookError as e:
            # an error names paths and client answers: shown, the hint on a line of its own
            _report(ctx, e)
        except KeyboardInterrupt:
            # click's main said "Aborted!" and exited 1, as for any failure; an interrupt is
            # 130 by convention (128 + SIGINT). The executor has journaled its run as interrupted.
            echo_shown("", err=True)  # ends the line the terminal's ^C echo is on
            echo_shown("qbhook: interrupted", err=True)
            ctx.exit(ExitCode.INTERRUPTED)


def _flush_notifications() -> None:
    """Give pending notifications a bounded wait when a command ends. Nothing can be pending
    unless qbhook.notify was imported (a notifier lives there), so this never imports it."""
    notify = sys.modules.get("qbhook.notify")
    if notify is not None:
        notify.flush_pending()


@click.group(cls=QbhookGroup)
@click.option(
    "--config", "-c", "config_path", envvar="QBHOOK_CONFIG", help="Config file (default /etc/qbhook/config.yaml)."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
@click.pass_context
def main(ctx, config_path, as_json, verbose):
    """qbhook keeps torrent seed data on the right pool: libraries' data on the
    primary pool, seed-only data on the cold pool, one physical copy each."""
    import logging

    from qbhook.paths import SHOWN_ERRORS, ShownFormatter

    # Paths may hold bytes that are not UTF-8 and reach many printers (plan, apply, history, sweep,
    # status...): on a UTF-8 terminal Python's stdout refuses them and the whole answer was lost
    # to a UnicodeEncodeError. One rule for every line: such a byte prints as \\xNN (paths.shown).
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=SHOWN_ERRORS)
    from qbhook.errors import RETRY_LOG

    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ShownFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # A client's retries are heard with -v only: a one-shot command's error line says what they
    # came to (bad input and an unreachable client are one line). `serve` hears them (cli.events).
    logging.getLogger(RETRY_LOG).setLevel(logging.NOTSET if verbose else logging.ERROR)
    # Never DEBUG, even with -vv: apprise's and urllib3's debug lines print the URL they send to,
    # and a notify URL's path and query carry its secrets (a webhook token, ?apikey=) in the
    # service's own spelling, not the configured URL's, so no redaction of the config finds them.
    for name in QUIET_AT_DEBUG:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    ctx.obj = App(config_path, as_json, verbose)
    ctx.call_on_close(_flush_notifications)


# ---------------------------------------------------------------- config
