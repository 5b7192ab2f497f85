"""Event-side commands: serve, sweep, status, queue, hook, setup qbittorrent."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from qbhook.catalog.db import check_tables, reading
from qbhook.cli.app import (
    COUNT,
    PORT,
    ROW_ID,
    TEXT,
    App,
    QbhookCommand,
    echo_shown,
    main,
    pass_app,
    print_summary,
    shown,
    wait_option,
    when,
)
from qbhook.errors import (
    RETRY_LOG,
    CatalogError,
    CatalogUnwritable,
    ConfigError,
    DirectHookRefused,
    ExitCode,
    LockBusy,
    QbhookError,
)
from qbhook.units import human_bytes as _human_bytes
from qbhook.users import named_user

if TYPE_CHECKING:
    from qbhook.clients.port import ClientPort

log = logging.getLogger("qbhook.serve")

# How long serve's worker and a `qbhook sweep` wait for the executor lock a running `qbhook apply`
# holds: they are unattended (cron, systemd) and would otherwise fail where waiting is right.
SERVE_LOCK_WAIT = 600.0
HOOK_ARGS = ("%I", "%J", "%K", "%N", "%L", "%G", "%F", "%R", "%D", "%C", "%Z")
HOOK_FIELDS = ("I", "J", "K", "N", "L", "G", "F", "R", "D", "C", "Z")


# ---------------------------------------------------------------- sweep
@main.command("sweep")
@wait_option(default=SERVE_LOCK_WAIT)
@click.option(
    "--automatic",
    is_flag=True,
    help="What an unattended timer (cron, systemd) should pass: holds back torrents completed "
    "within policy.import_grace, like serve's own sweeper.",
)
@pass_app
def sweep_cmd(app: App, wait, automatic):
    """Scan, classify every group, plan (and apply when policy.auto_apply). Safe from cron/systemd.

    By default it waits out a running `qbhook apply` (--wait), as serve's worker does. A person's
    sweep demotes what just completed; --automatic waits policy.import_grace for the *arr import,
    which otherwise copies across pools instead of hardlinking.

    Exits as `apply --yes` does for what it applied (5 a group failed, 75 one paused or busy),
    and 75 when a client's listing was refused: that round planned nothing, the next one retries.

    Example: qbhook sweep --automatic
    """
    app.take_kept_notifications = True  # before the config is first loaded
    from qbhook.events.worker import sweep
    from qbhook.move.executor import RunSummary

    out = sweep(
        app.cfg, app.catalog, app.clients, executor=app.executor(wait), progress=app.progress(), automatic=automatic
    )
    # What the sweep applied, as `apply` reports it: its lines, its exit code.
    applied = RunSummary.from_dict(out["applied"]) if "applied" in out else None

    def human(d):
        s = d["plan"]
        echo_shown(
            f"swept in {d['seconds']:.1f}s: {s['demote']} to demote, {s['promote']} to promote, "
            f"{s['blocked']} blocked, {s['stay']} staying{_replanned(d)}"
        )
        for why in d.get("refused") or ():  # names the client: why this round planned nothing
            echo_shown(f"  not planned: {why}", err=True)
        for g in d["pending"]:
            echo_shown(f"  {g['action'].upper():8} {g['group_id']} {', '.join(g['names'][:2])}: {g['reason']}")
        if applied is not None:
            echo_shown(f"applied (run {applied.run_id}):")
            print_summary(applied)
        elif s["demote"] + s["promote"] and not app.cfg.policy.auto_apply:
            echo_shown("  (policy.auto_apply is off: run `qbhook apply --yes` to carry these out)")

    app.emit(out, human)
    sys.exit(_sweep_exit(applied, bool(out.get("refused"))))


def _sweep_exit(applied, refused: bool) -> ExitCode:
    """A sweep's exit status: its applied run's (``RunSummary.exit_code``); at least BUSY (75,
    try again) when a listing was refused, since that round planned nothing. Cron and systemd
    see a failed unattended sweep only by this."""
    code = applied.exit_code if applied is not None else ExitCode.OK
    return ExitCode.BUSY if refused and code == ExitCode.OK else code


def _replanned(sweep: dict) -> str:
    """' (full re-plan)' / ' (re-planned 3 groups: ...)' of a sweep's result; '' before incremental sweeps."""
    r = sweep.get("replanned")
    if not isinstance(r, dict):
        return ""
    if sweep.get("full"):
        return f" (full re-plan: {', '.join(r.get('why') or {})})"
    why = ", ".join(f"{k}: {v}" for k, v in (r.get("why") or {}).items())
    return f" (re-planned {r.get('groups', 0)} group(s){': ' + why if why else ''})"


# ---------------------------------------------------------------- status
class _StatusCommand(QbhookCommand):
    """``status``, whose help says how long a ready job may wait (``STUCK_AFTER_S``), read when
    the help is printed: importing qbhook.events.status with this module would load status's
    machinery into ``hook``, which must start fast."""

    def get_help(self, ctx):
        from qbhook.events.status import STUCK_AFTER_S

        self.help = (self.help or "").replace("STUCK_AFTER_S", f"{STUCK_AFTER_S // 60} minutes")
        return super().get_help(ctx)


@main.command(cls=_StatusCommand, secrets=False)
@pass_app
def status(app: App):
    """Queue depth, server and worker health, last sweep, pending plans, recent runs, pool usage.

    Exits 1 when something needs a person: the server answers unhealthy, or jobs have
    been ready for longer than STUCK_AFTER_S with nothing processing them. A damaged
    catalog is a one-line error (exit 74) instead of a report built around the damage.

    Example: qbhook --json status | jq .problems
    """
    from qbhook.events.status import report

    data = report(app.cfg, app.open_catalog(writes=False))

    def human(d):
        srv = d["server"]
        if srv["answered"]:
            echo_shown(f"server: {'ok' if srv['ok'] else 'UNHEALTHY'} at {srv['url']}: {srv['reason']}")
        else:
            echo_shown(f"server: not answering at {srv['url']} ({srv['reason']})")
        q = d["queue"]
        echo_shown(
            f"queue: {q.get('pending', 0)} pending, {q.get('running', 0)} running, "
            f"{q.get('dead', 0)} dead, {q.get('done', 0)} done"
        )
        ls = d["last_sweep"]
        if ls["at"]:
            s = ls["plan"]
            echo_shown(
                f"last sweep: {when(ls['at'])}: {s['demote']} to demote, {s['promote']} to promote, "
                f"{s['blocked']} blocked{_replanned(ls)}"
            )
            for g in ls["pending"][:10]:
                echo_shown(f"  {g['action'].upper():8} {', '.join(g['names'][:2])}: {g['reason']}")
        else:
            echo_shown("last sweep: never (run `qbhook sweep`)")
        if d["unfinished_runs"]:
            echo_shown(f"UNFINISHED runs: {d['unfinished_runs']} (run `qbhook resume`)")
        for line in _leftover_lines(d):
            echo_shown(line)
        for r in d["recent_runs"]:
            echo_shown(f"run {r['id']}: {r['status']} ({r['trigger']}, {when(r['started_at'])})")
        for name, p in d["pools"].items():
            if "error" in p:
                echo_shown(f"pool {name}: {p['path']}: {p['error']}")
            else:
                echo_shown(f"pool {name} ({p['role']}): {_human_bytes(p['free'])} free of {_human_bytes(p['size'])}")
            echo_shown(
                f"  catalogued: {_human_bytes(p['hashed_bytes'])} hashed ({p['hashed_files']:,} files), "
                f"{_human_bytes(p['unhashed_bytes'])} not hashed ({p['unhashed_files']:,} files)"
            )
        echo_shown(_orphans_line(d["orphans"]))
        c = d["catalog"]
        echo_shown(f"catalog: {c['paths']:,} paths, {c['inodes']:,} inodes ({c['hashed']:,} hashed)")
        for problem in d["problems"]:
            echo_shown(f"PROBLEM: {problem}", err=True)

    app.emit(data, human)
    if data["problems"]:
        sys.exit(ExitCode.FAILURE)  # something needs a person


def _leftover_lines(d: dict) -> list[str]:
    """``status``'s lines on the leftover views a run still tries to remove: those the next one
    removes once verified, and each one a torrent may still write, which none removes until that
    torrent completes on it or goes (``leftovers.INCOMPLETE_USER``): saying the next run removes it
    sent a person waiting on a run that only keeps it, run after run (R111)."""
    out = []
    if d["leftover_views"]:
        out.append(
            f"{len(d['leftover_views'])} leftover view file(s) of rolled-back groups "
            "(the next `apply --yes` or sweep removes them once verified)"
        )
    kept = d["leftover_views_kept"]
    for k in kept[:10]:
        who = f"torrent {k['torrent']}" if k["torrent"] else "a torrent not complete on it"
        out.append(f"leftover view {k['path']}: kept while {who} may still write it (until it completes on it or goes)")
    if len(kept) > 10:
        out.append(f"...and {len(kept) - 10} more leftover view(s) kept so (`qbhook --json status` lists them)")
    return out


def _orphans_line(o: dict | None) -> str:
    if o is None:
        return "orphans: unknown (run `qbhook orphans`)"
    return (
        f"orphans (`qbhook orphans` at {when(o['at'])}): {_human_bytes(o['reclaimable'])} reclaimable, "
        f"{_human_bytes(o['library'])} still used by a library"
    )


# ---------------------------------------------------------------- queue
@main.group(invoke_without_command=True, secrets=False)
@click.option("--state", "states", multiple=True, type=click.Choice(["pending", "running", "done", "dead"]))
@click.option("--limit", type=COUNT, default=30)
@click.pass_context
def queue(ctx, states, limit):
    """List queued event jobs (dead letters show their error).

    Example: qbhook queue --state dead
    """
    if ctx.invoked_subcommand:
        return
    from qbhook.events.queue import JobQueue

    # Here, not at the top: qbhook.events.status (the journal, the planner's types) is ~40% of
    # the imports of `qbhook hook`, which qBittorrent runs once per torrent event.
    from qbhook.events.status import CHECKED_TABLES

    app: App = ctx.obj
    app.open_catalog(writes=False)
    with reading(app.cfg.catalog):
        check_tables(app.catalog.conn, app.cfg.catalog, CHECKED_TABLES)
        jobs = JobQueue(app.catalog.conn).list(states=list(states) or None, limit=limit)
    data = [
        {
            "id": j.id,
            "state": j.state,
            "key": j.coalesce_key,
            "kinds": list(j.kinds),
            "sources": list(j.sources),
            "events": j.event_count,
            "attempts": j.attempts,
            "created_at": j.created_at,
            "error": j.last_error,
            "result": json.loads(j.result) if j.result and j.result.startswith("{") else j.result,
        }
        for j in jobs
    ]

    def human(rows):
        for r in rows:
            echo_shown(
                f"#{r['id']:<6} {r['state']:8} {r['key'][:40]:40} {','.join(r['kinds'])} x{r['events']} "
                f"tries {r['attempts']}"
            )
            if r["error"]:
                echo_shown(f"        error: {r['error']}")
        if not rows:
            echo_shown("queue is empty")

    app.emit(data, human)


@queue.command("retry", secrets=False)
@click.argument("job_id", type=ROW_ID)
@pass_app
def queue_retry(app: App, job_id):
    """Put a dead job back in the queue.

    Example: qbhook queue retry 42
    """
    from qbhook.events.queue import JobQueue
    from qbhook.events.status import CHECKED_TABLES

    app.open_catalog(writes=False)  # it changes only a dead job that must be there already
    with reading(app.cfg.catalog):
        check_tables(app.catalog.conn, app.cfg.catalog, CHECKED_TABLES)
        new = JobQueue(app.catalog.conn).retry_dead(job_id)
    app.emit({"requeued": new}, lambda d: echo_shown(f"job {job_id} requeued as {new}"))


# ---------------------------------------------------------------- hook (direct mode)
# Options end at the event: everything after it is qBittorrent's placeholder values, and a
# torrent may be named "--help", "--" or "-x". (`qbhook hook --help` still shows help, and
# a leading "--" is allowed: the hook script sends one.)
@main.command(secrets=False, context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("event", type=click.Choice(["added", "finished"]))
@click.argument("values", nargs=-1, type=click.UNPROCESSED)
@pass_app
def hook(app: App, event, values):
    """Enqueue a qBittorrent hook call directly (no server): qbhook hook added %I %J %K %N %L %G %F %R %D %C %Z

    Run as a user who may not write the catalog (qBittorrent's own, when it is not root), it
    says so in one line and exits 74, making and changing nothing: qBittorrent ignores the
    status, so that line (qBittorrent's stderr: the journal under systemd) is all that tells
    the event was lost. A catalog it cannot queue in (another writer holding it past a 5 s
    wait: exit 75; a damaged file: 74) is said the same way: the event is lost, never "try again".

    It reads no secret (no ``*_env`` variable, no ``*_file``): it only records the event, and
    qBittorrent runs it without the service's environment (/etc/qbhook/env).

    Example: qbhook hook finished %I %J %K %N %L %G %F %R %D %C %Z
    """
    import sqlite3

    from qbhook.catalog.db import connect, sqlite_failure, unwritable
    from qbhook.events.parse import parse_qbt_hook
    from qbhook.events.queue import INTAKE_BUSY_S, JobQueue

    why = unwritable(app.cfg.catalog)
    if why is not None:
        raise CatalogUnwritable(
            f"hook: {named_user(os.geteuid())} may not write the catalog ({why}): this {event!r} event is lost; "
            "let qBittorrent run the HTTP hook instead (`qbhook setup qbittorrent`)"
        )
    ev = parse_qbt_hook(hook_fields(event, values))
    # The HTTP intake's short wait, not the catalog's 60 s: qBittorrent starts one hook per torrent
    # and waits for none, so behind a long scan each waited its 60 s (~27 MB each), as many at
    # once as torrents were added, to lose the event anyway. Past it, one line and exit 75.
    busy_s = INTAKE_BUSY_S
    try:
        conn = connect(app.cfg.catalog, busy_s=busy_s)
        job, coalesced = JobQueue(conn, max_pending=app.cfg.server.max_pending, wait_s=busy_s).enqueue(ev)
    except (LockBusy, CatalogError) as e:  # opening the catalog: a writer held it past its wait
        raise _event_lost(e, event) from None
    except sqlite3.DatabaseError as e:  # queueing: the same, or a damaged catalog
        err = sqlite_failure(e, app.cfg.catalog)
        if err is None:
            raise  # a bug keeps its traceback
        raise _event_lost(err, event) from None
    app.emit({"queued": job, "coalesced": coalesced}, lambda d: None)


def _event_lost(e: QbhookError, event: str) -> QbhookError:
    """``e`` as the direct hook must say it: qBittorrent never runs a hook again, so the
    catalog's "try again later" would be wrong. Its class and exit code stay (75, 74...)."""
    e.message = f"hook: {e.message}: this {event!r} event is lost"
    e.hint = "qBittorrent does not retry a hook; the next sweep reconciles the torrent"
    return e


def hook_fields(event: str, values) -> dict[str, str]:
    """argv after the event, by position, as the form fields the script would post.

    Python hands argv over as ``os.fsdecode`` strings, so bytes that are not UTF-8 arrive
    escaped and the paths the event carries encode back to the exact bytes.
    """
    return {"event": event, **dict(zip(HOOK_FIELDS, values))}


# ---------------------------------------------------------------- setup qbittorrent
@main.group()
def setup():
    """Wire qbhook into other programs.

    Example: qbhook setup qbittorrent --mode http --yes
    """


@setup.command("qbittorrent")
@click.option(
    "--mode",
    type=click.Choice(["http", "direct"]),
    default="http",
    help="http: qBittorrent runs hooks/qbt-hook.sh (works in containers); direct: runs `qbhook hook`"
    " (only for a qBittorrent on this host running as root or as qbhook's user).",
)
@click.option(
    "--hook-path",
    default="/hooks/qbt-hook.sh",
    show_default=True,
    callback=lambda ctx, param, value: _program_path(value, param),
    help="Where qbt-hook.sh is, as qBittorrent sees it (inside its container).",
)
@click.option(
    "--qbhook-path",
    default=None,
    callback=lambda ctx, param, value: _program_path(value, param),
    help="Path of the qbhook executable (direct mode).",
)
@click.option("--instance", default=None, help="Which configured qBittorrent (default: all).")
@click.option("--yes", is_flag=True, help="Apply. Without it, only show the change.")
@pass_app
def setup_qbittorrent(app: App, mode, hook_path, qbhook_path, instance, yes):
    """Set qBittorrent's "run external program" on torrent added/finished to notify qbhook.

    Example: qbhook setup qbittorrent --mode http --yes
    """
    base = [hook_path] if mode == "http" else _direct_hook(app, qbhook_path)

    def cmd(event):
        return " ".join([_qbt_arg(b) for b in base] + [event] + [f'"{a}"' for a in HOOK_ARGS])

    wanted = {
        "autorun_on_torrent_added_enabled": True,
        "autorun_on_torrent_added_program": cmd("added"),
        "autorun_enabled": True,
        "autorun_program": cmd("finished"),
    }
    from qbhook.clients.registry import client_type

    out = []
    for client in app.clients:
        if (instance and client.name != instance) or client_type(client) != "qbittorrent":
            continue  # rTorrent is wired by .rtorrent.rc lines: `qbhook setup rtorrent`
        if mode == "direct":
            _check_direct(client, app.cfg.catalog)  # before anything is asked or changed
        if old := _splits_after_substituting(client):
            echo_shown(
                f"qbhook: warning: qBittorrent {client.name} is {old}, older than 4.5.0: it puts a torrent's "
                "name into the command before splitting it, so a name with a quote or a space can shift "
                "the hook's arguments; upgrade qBittorrent",
                err=True,
            )
        prefs = client.preferences()
        current = {k: prefs.get(k) for k in wanted}
        change = {k: v for k, v in wanted.items() if current.get(k) != v}
        if change and yes:
            client.set_preferences(change)
        out.append({"instance": client.name, "current": current, "change": change, "applied": bool(change and yes)})
    if not out:  # as `setup rtorrent`: a name of no instance is a mistake, not "nothing to change"
        raise ConfigError(
            "qbittorrent",
            "no qBittorrent configured" + (f" named {instance!r}" if instance else ""),
            hint="`qbhook config check` lists the configured clients",
        )

    def human(rows):
        for r in rows:
            echo_shown(f"qBittorrent {r['instance']}:")
            if not r["change"]:
                echo_shown("  already wired, nothing to change")
            for k, v in r["change"].items():
                echo_shown(f"  {k}:")
                echo_shown(f"    now: {r['current'].get(k)!r}")
                echo_shown(f"    new: {v!r}")
            if r["change"] and not r["applied"]:
                echo_shown("  dry run: re-run with --yes to apply")
        if mode == "http":
            echo_shown(
                "Make hooks/qbt-hook.sh available inside the qBittorrent container at that path, and set "
                "QBHOOK_URL and QBHOOK_TOKEN (or QBHOOK_TOKEN_FILE) in a qbt-hook.conf next to it."
            )

    app.emit(out, human)


# qBittorrent (Linux, 4.5.0 and newer) runs its "external program" without a shell: it splits the
# line at spaces outside double quotes (QProcess::splitCommand, Utils::String::splitCommand since
# 4.6), drops the double quotes around each argument, and only then replaces every %X inside each
# argument: so "%N" is one argument whatever the name holds. Before 4.5.0 it replaced first and
# split after, and a name with a quote or a space shifted the arguments (`setup` warns). Never wrap
# the command in `sh -c '...'`: a name would then be shell code. In a path of ours a double quote,
# a line break or a % cannot be carried; a space only between double quotes.
_QBT_UNSAFE = {'"': "a double quote", "%": "a % (qBittorrent replaces %X in its command)"}


def _splits_after_substituting(client) -> str | None:
    """qBittorrent's version when it is older than 4.5.0 (see above), else None; None too when it
    cannot be told (a version string of another shape: no warning is better than a wrong one)."""
    import re

    try:
        text = client.version()
    except QbhookError:
        return None
    numbers = tuple(int(n) for n in re.findall(r"\d+", text)[:2])
    return text if len(numbers) == 2 and numbers < (4, 5) else None


def _qbt_arg_problem(value: str) -> str | None:
    """Why ``value`` cannot be one argument of the command qBittorrent runs (None: it can)."""
    for c in value:
        if c in _QBT_UNSAFE:
            return f"contains {_QBT_UNSAFE[c]}"
        if not c.isprintable() and c != " ":
            return "contains a control character"
    return None


def _qbt_arg(value: str) -> str:
    """``value`` as qBittorrent's split gives it back: between double quotes when it holds a space."""
    return f'"{value}"' if any(c.isspace() for c in value) else value


def _program_path(value: str | None, param) -> str | None:
    """A program path for qBittorrent's command (--hook-path, --qbhook-path): absolute, and one
    argument as qBittorrent splits the line; anything else a one-line usage error (exit 2), so
    --yes never applies a command that cannot run."""
    if value is None:
        return None
    why = _qbt_arg_problem(value)
    if why is None and not value.startswith("/"):
        why = "is not an absolute path (qBittorrent runs it from a folder of its own)"
    if why is not None:
        raise click.BadParameter(f"'{shown(value)}' {why}", param=param)
    return value


def _direct_hook(app: App, qbhook_path: str | None) -> list[str]:
    """The start of the direct hook's command: qbhook, its config, `hook`. Both absolute: qBittorrent
    runs it from a working folder of its own. A qbhook that is not an executable file here, or a
    config path qBittorrent's split cannot carry, is a usage error before any client is asked."""
    exe = qbhook_path or os.path.abspath(_which("qbhook") or sys.argv[0])
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise click.UsageError(
            f"{shown(exe)} is not an executable file here, so qBittorrent could not run the hook: "
            "name qbhook with --qbhook-path"
        )
    source = app.cfg.source
    for what, value, other in (("qbhook", exe, "--qbhook-path"), ("the config path", str(source or ""), "--config")):
        if why := _qbt_arg_problem(value):
            raise click.UsageError(
                f"{what} {shown(value)} {why}: qBittorrent could not run the hook; name another with {other}"
            )
    return [exe] + (["--config", str(source)] if source else []) + ["hook"]


def _check_direct(client, catalog) -> None:
    """A direct hook is `qbhook hook` run by qBittorrent as its own user: allowed only when that
    user is root or the catalog's owner (qbhook's own user). Any other user cannot write the
    catalog (`hook` refuses then) and qBittorrent ignores the failure: every event would be lost
    unheard. Making the catalog writable for it instead would hand it the journal."""
    from qbhook.clients.webui_owner import CannotTell, web_ui_process

    try:
        proc = web_ui_process(client.url)
    except CannotTell as e:
        why = str(e)
    else:
        try:
            owner = os.stat(catalog).st_uid
        except OSError:
            owner = os.geteuid()  # no catalog yet: it will be this user's
        if proc.uid in (0, owner):
            return
        why = f"{proc.name} (pid {proc.pid}) runs as {named_user(proc.uid)}, who may not write the catalog {catalog}"
    raise DirectHookRefused(
        f"qBittorrent {client.name}: --mode direct refused: {why}",
        hint="use the HTTP hook, the default mode: qbhook setup qbittorrent --hook-path PATH-OF-qbt-hook.sh",
    )


@setup.command("rtorrent", secrets=False)  # prints lines: no client is contacted
@click.option(
    "--hook-path",
    default="/hooks/qbt-hook.sh",
    show_default=True,
    callback=lambda ctx, param, value: _rc_hook_path(value, param),
    help="Where qbt-hook.sh is, as rTorrent sees it (inside its container).",
)
@click.option("--instance", default=None, help="Which configured rTorrent (default: all).")
@pass_app
def setup_rtorrent(app: App, hook_path, instance):
    """Print the .rtorrent.rc lines that call qbt-hook.sh when an item is added or finishes.

    Printed, not applied: rTorrent reads them at start (or paste them into a running
    rTorrent's XML-RPC `method.set_key`); qbhook never edits rTorrent's config file.

    Example: qbhook setup rtorrent --instance rt
    """
    from qbhook.clients.registry import client_type
    from qbhook.clients.rtorrent import event_rc_lines

    out = []
    for client in app.clients:
        if client_type(client) == "rtorrent" and (not instance or client.name == instance):
            out.append(
                {
                    "instance": client.name,
                    "address": client.address,
                    "lines": event_rc_lines(hook_path, instance=client.name),
                }
            )
    if not out:
        raise ConfigError(
            "clients",
            "no rTorrent configured" + (f" named {instance!r}" if instance else ""),
            hint="add {type: rtorrent, name: ..., scgi: /run/rtorrent/rpc.sock} under clients:",
        )

    def human(rows):
        for r in rows:
            echo_shown(f"# rTorrent {r['instance']} ({r['address']}): add to .rtorrent.rc")
            for line in r["lines"]:
                echo_shown(line)

    app.emit(out, human)


def _rc_hook_path(value: str, param) -> str:
    """--hook-path of `setup rtorrent`: what an .rtorrent.rc line can run (``config.rc_hook_path_problem``,
    the adapter's rule); anything else a one-line usage error (exit 2), as `setup qbittorrent` says it."""
    from qbhook.config import rc_hook_path_problem

    why = rc_hook_path_problem(value)
    if why is not None:
        raise click.BadParameter(f"'{shown(value)}' {why}", param=param)
    return value


def _which(name: str) -> str | None:
    from shutil import which

    return which(name)


# ---------------------------------------------------------------- serve
@main.command()
@click.option("--listen", type=TEXT, default=None, help="Address to bind (default: server.listen, 127.0.0.1).")
@click.option("--port", type=PORT, default=None, help="Port (default: server.port, 9797).")
@click.option("--no-sweep", is_flag=True, help="Do not run the periodic sweeper in this process.")
@pass_app
def serve(app: App, listen, port, no_sweep):
    """Run the webhook server, the queue worker and a periodic sweeper until stopped (SIGTERM/SIGINT).

    The port opens first: intake answers (and queues durably) at once, while the worker
    finishes what a previous process left in flight, which may wait for the executor
    lock. A busy or unusable address is a one-line error, never a traceback.

    Example: qbhook serve --listen 0.0.0.0 --port 9797
    """
    app.take_kept_notifications = True  # before the config is first loaded
    from qbhook.config import path_warnings
    from qbhook.events.auth import AuthConfig
    from qbhook.events.service import Service

    cfg = app.cfg
    srv = cfg.server
    clients = app.clients  # config errors before anything opens
    # Long background hashing says how far it got (a line every ~30 s) even without -v.
    hashing_log = logging.getLogger("qbhook.catalog.hashing")
    if hashing_log.getEffectiveLevel() > logging.INFO:
        hashing_log.setLevel(logging.INFO)
    # A daemon says it is retrying a client (one-shot commands only say what the retries came to).
    logging.getLogger(RETRY_LOG).setLevel(logging.NOTSET)
    if not AuthConfig.of_server(srv).configured:  # the rule the endpoints answer 503 by
        echo_shown(
            "qbhook: warning: no server credentials configured (server.password_env / token_env); "
            "every event endpoint will refuse requests",
            err=True,
        )
    for w in path_warnings(cfg):  # a pool root swapped before this start is not caught by the pin
        echo_shown(f"qbhook: warning: {w}", err=True)
    service = Service(
        cfg,
        clients,
        _executor_for,
        host=srv.listen if listen is None else listen,
        port=srv.port if port is None else port,
        sweeper=not no_sweep,
        host_given=None if listen is None else "--listen",
    )
    echo_shown(f"qbhook serving on http://{service.host}:{service.port}", err=True)
    service.run()
    echo_shown("qbhook stopped", err=True)


def _executor_for(cfg, catalog, clients: Iterable[ClientPort]):
    from qbhook.move.executor import build_executor

    # The worker waits out a running `qbhook apply` (which holds the executor lock) instead of failing.
    return build_executor(cfg, catalog, clients, lock_wait=SERVE_LOCK_WAIT, notify=True)
