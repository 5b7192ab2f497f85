"""Event-side commands: serve, sweep, status, queue, hook, setup qbittorrent."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shlex
import signal
import sqlite3
import sys
import threading
from contextlib import contextmanager

import click

from qbhook.catalog.db import sqlite_failure
from qbhook.cli import App, _human_bytes, main, pass_app
from qbhook.errors import CatalogError, QbhookError

log = logging.getLogger("qbhook.serve")

HOOK_ARGS = ("%I", "%J", "%K", "%N", "%L", "%G", "%F", "%R", "%D", "%C", "%Z")
HOOK_FIELDS = ("I", "J", "K", "N", "L", "G", "F", "R", "D", "C", "Z")


def _executor(app: App):
    return _executor_for(app.cfg, app.catalog, app.clients)


# ---------------------------------------------------------------- sweep
@main.command("sweep")
@pass_app
def sweep_cmd(app: App):
    """Scan, classify every group, plan (and apply when policy.auto_apply). Safe from cron/systemd."""
    from qbhook.worker import sweep
    out = sweep(app.cfg, app.catalog, app.clients, executor=_executor(app), progress=app.progress())

    def human(d):
        s = d["plan"]
        click.echo(f"swept in {d['seconds']:.1f}s: {s['demote']} to demote, {s['promote']} to promote, "
                   f"{s['blocked']} blocked, {s['stay']} staying")
        for g in d["pending"]:
            click.echo(f"  {g['action'].upper():8} {g['group_id']} {', '.join(g['names'][:2])}: {g['reason']}")
        if "applied" in d:
            click.echo(f"  applied: {json.dumps(d['applied'].get('counters', {}))}")
        elif s["demote"] + s["promote"] and not app.cfg.policy.auto_apply:
            click.echo("  (policy.auto_apply is off: run `qbhook apply --yes` to carry these out)")
    app.emit(out, human)


# ---------------------------------------------------------------- status
@main.command()
@pass_app
def status(app: App):
    """Queue depth, server and worker health, last sweep, pending plans, recent runs, pool usage.

    Exits 1 when something needs a person: the server answers unhealthy, or jobs have
    been ready for longer than STUCK_AFTER_S with nothing processing them. A damaged
    catalog is a one-line error (exit 1) instead of a report built around the damage.
    """
    from qbhook import state
    from qbhook.events.queue import JobQueue
    from qbhook.events.status import hashed_by_pool
    from qbhook.journal import Journal
    with _catalog_read(app):
        conn = app.catalog.conn
        _check_tables(conn, app.cfg.catalog)
        sweep_info, sweep_at = state.get(conn, "last_sweep")
        runs = Journal(conn).runs(limit=5)
        queue = JobQueue(conn)
        counts = queue.counts()
        stuck = queue.ready_since(STUCK_AFTER_S)
        unfinished = [r.id for r in Journal(conn).unfinished_runs()]
        catalog_counts = app.catalog.counts()
        hashed = hashed_by_pool(conn, app.cfg.pools)
    pools = {}
    for p in app.cfg.pools:
        try:
            sv = os.statvfs(p.path)
            pools[p.name] = {"path": str(p.path), "role": p.role, "size": sv.f_blocks * sv.f_frsize,
                             "free": sv.f_bavail * sv.f_frsize, **hashed[p.name]}
        except OSError as e:
            pools[p.name] = {"path": str(p.path), "role": p.role, "error": e.strerror, **hashed[p.name]}
    server = _server_health(app.cfg.server)
    problems = []
    if server["answered"] and not server["ok"]:
        problems.append(f"server unhealthy: {server['reason']}")
    if stuck and not server["answered"]:
        # With a server answering, waiting jobs are explained (its worker is busy with a
        # long move, or it says why it is not healthy above).
        problems.append(f"{stuck} job(s) ready for over {STUCK_AFTER_S // 60} min and nothing processes them "
                        "(is `qbhook serve` running?)")
    data = {
        "healthy": not problems,
        "problems": problems,
        "server": server,
        "queue": counts,
        "last_sweep": {"at": sweep_at, "plan": sweep_info.get("plan") if sweep_info else None,
                       "pending": sweep_info.get("pending", []) if sweep_info else []},
        "recent_runs": [{"id": r.id, "status": r.status, "trigger": r.trigger, "started_at": r.started_at,
                         "finished_at": r.finished_at, "summary": r.summary} for r in runs],
        "unfinished_runs": unfinished,
        "pools": pools,
        "catalog": catalog_counts,
    }

    def human(d):
        srv = d["server"]
        if srv["answered"]:
            click.echo(f"server: {'ok' if srv['ok'] else 'UNHEALTHY'} at {srv['url']}: {srv['reason']}")
        else:
            click.echo(f"server: not answering at {srv['url']} ({srv['reason']})")
        q = d["queue"]
        click.echo(f"queue: {q.get('pending', 0)} pending, {q.get('running', 0)} running, "
                   f"{q.get('dead', 0)} dead, {q.get('done', 0)} done")
        ls = d["last_sweep"]
        if ls["at"]:
            s = ls["plan"]
            click.echo(f"last sweep: {_when(ls['at'])}: {s['demote']} to demote, {s['promote']} to promote, "
                       f"{s['blocked']} blocked")
            for g in ls["pending"][:10]:
                click.echo(f"  {g['action'].upper():8} {', '.join(g['names'][:2])}: {g['reason']}")
        else:
            click.echo("last sweep: never (run `qbhook sweep`)")
        if d["unfinished_runs"]:
            click.echo(f"UNFINISHED runs: {d['unfinished_runs']} (run `qbhook resume`)")
        for r in d["recent_runs"]:
            click.echo(f"run {r['id']}: {r['status']} ({r['trigger']}, {_when(r['started_at'])})")
        for name, p in d["pools"].items():
            if "error" in p:
                click.echo(f"pool {name}: {p['path']}: {p['error']}")
            else:
                click.echo(f"pool {name} ({p['role']}): {_human_bytes(p['free'])} free of {_human_bytes(p['size'])}")
            click.echo(f"  catalogued: {_human_bytes(p['hashed_bytes'])} hashed ({p['hashed_files']:,} files), "
                       f"{_human_bytes(p['unhashed_bytes'])} not hashed ({p['unhashed_files']:,} files)")
        c = d["catalog"]
        click.echo(f"catalog: {c['paths']:,} paths, {c['inodes']:,} inodes ({c['hashed']:,} hashed)")
        for problem in d["problems"]:
            click.echo(f"PROBLEM: {problem}", err=True)
    app.emit(data, human)
    if problems:
        sys.exit(EXIT_UNHEALTHY)


EXIT_UNHEALTHY = 1
STUCK_AFTER_S = 600
# Small tables every command here reads whole; their integrity is cheap to check (the
# big paths/inodes tables are not checked: seconds per GB, and scan rebuilds them anyway).
_CHECKED_TABLES = ("event_jobs", "runs", "steps", "group_state", "state")


@contextmanager
def _catalog_read(app: App):
    """SQLite errors while reading the catalog become one line naming the file."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        raise _catalog_problem(app.cfg.catalog, e) from None


def _catalog_problem(path, err: sqlite3.DatabaseError, table: str | None = None) -> CatalogError:
    """One line naming the file (and table); which class and exit code is sqlite_failure's call."""
    if table:
        err = type(err)(f"{err} (table {table})")
    return sqlite_failure(err, path) or CatalogError(f"cannot read catalog {path}: {err}")


def _check_tables(conn: sqlite3.Connection, path) -> None:
    for table in _CHECKED_TABLES:
        try:
            rows = conn.execute(f"PRAGMA quick_check({table})").fetchall()
        except sqlite3.DatabaseError as e:
            raise _catalog_problem(path, e, table) from None
        if rows != [("ok",)]:
            # quick_check lists every problem, after a "*** in database main ***" banner: the first says enough.
            lines = [ln for r in rows for ln in str(r[0]).splitlines() if ln.strip() and not ln.startswith("***")]
            first = lines[0] if lines else "integrity check failed"
            more = f" (and {len(lines) - 1} more problem(s))" if len(lines) > 1 else ""
            raise _catalog_problem(path, sqlite3.DatabaseError(first + more), table)


def _server_health(srv) -> dict:
    """Ask the configured server's /healthz (no credentials needed) how its worker does."""
    import urllib.error
    import urllib.request
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(srv.listen, srv.listen)
    url = f"http://{f'[{host}]' if ':' in host else host}:{srv.port}/healthz"
    out = {"url": url, "answered": False, "ok": False, "reason": ""}
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            body, code = r.read(4096), r.status
    except urllib.error.HTTPError as e:
        body, code = e.read(4096), e.code
    except (OSError, ValueError) as e:
        out["reason"] = str(getattr(e, "reason", None) or e)
        return out
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or code not in (200, 503):
        out["reason"] = f"HTTP {code} from something that is not qbhook"
        return out
    out.update(answered=True, ok=code == 200 and doc.get("ok") is True,
               reason=str(doc.get("worker") or doc.get("error") or "ok"))
    return out


def _when(ts) -> str:
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


# ---------------------------------------------------------------- queue
@main.group(invoke_without_command=True)
@click.option("--state", "states", multiple=True, type=click.Choice(["pending", "running", "done", "dead"]))
@click.option("--limit", default=30)
@click.pass_context
def queue(ctx, states, limit):
    """List queued event jobs (dead letters show their error)."""
    if ctx.invoked_subcommand:
        return
    from qbhook.events.queue import JobQueue
    app: App = ctx.obj
    with _catalog_read(app):
        _check_tables(app.catalog.conn, app.cfg.catalog)
        jobs = JobQueue(app.catalog.conn).list(states=list(states) or None, limit=limit)
    data = [{"id": j.id, "state": j.state, "key": j.coalesce_key, "kinds": list(j.kinds), "sources": list(j.sources),
             "events": j.event_count, "attempts": j.attempts, "created_at": j.created_at,
             "error": j.last_error, "result": json.loads(j.result) if j.result and j.result.startswith("{") else j.result}
            for j in jobs]

    def human(rows):
        for r in rows:
            click.echo(f"#{r['id']:<6} {r['state']:8} {r['key'][:40]:40} {','.join(r['kinds'])} x{r['events']} "
                       f"tries {r['attempts']}" + (f"\n        error: {r['error']}" if r["error"] else ""))
        if not rows:
            click.echo("queue is empty")
    app.emit(data, human)


@queue.command("retry")
@click.argument("job_id", type=int)
@pass_app
def queue_retry(app: App, job_id):
    """Put a dead job back in the queue."""
    from qbhook.events.queue import JobQueue
    with _catalog_read(app):
        _check_tables(app.catalog.conn, app.cfg.catalog)
        new = JobQueue(app.catalog.conn).retry_dead(job_id)
    app.emit({"requeued": new}, lambda d: click.echo(f"job {job_id} requeued as {new}"))


# ---------------------------------------------------------------- hook (direct mode)
# Options end at the event: everything after it is qBittorrent's placeholder values, and a
# torrent may be named "--help", "--" or "-x". (`qbhook hook --help` still shows help, and
# a leading "--" is allowed: the hook script sends one.)
@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("event", type=click.Choice(["added", "finished"]))
@click.argument("values", nargs=-1, type=click.UNPROCESSED)
@pass_app
def hook(app: App, event, values):
    """Enqueue a qBittorrent hook call directly (no server): qbhook hook added %I %J %K %N %L %G %F %R %D %C %Z"""
    from qbhook.events.parse import parse_qbt_hook
    from qbhook.events.queue import JobQueue
    ev = parse_qbt_hook(hook_fields(event, values))
    job, coalesced = JobQueue(app.catalog.conn).enqueue(ev)
    app.emit({"queued": job, "coalesced": coalesced}, lambda d: None)


def hook_fields(event: str, values) -> dict[str, str]:
    """argv after the event, by position, as the form fields the script would post.

    Python hands argv over as ``os.fsdecode`` strings, so bytes that are not UTF-8 arrive
    escaped and the paths the event carries encode back to the exact bytes.
    """
    return {"event": event, **dict(zip(HOOK_FIELDS, values))}


# ---------------------------------------------------------------- setup qbittorrent
@main.group()
def setup():
    """Wire qbhook into other programs."""


@setup.command("qbittorrent")
@click.option("--mode", type=click.Choice(["http", "direct"]), default="http",
              help="http: qBittorrent runs hooks/qbt-hook.sh (works in containers); direct: runs `qbhook hook`.")
@click.option("--hook-path", default="/hooks/qbt-hook.sh", show_default=True,
              help="Where qbt-hook.sh is, as qBittorrent sees it (inside its container).")
@click.option("--qbhook-path", default=None, help="Path of the qbhook executable (direct mode).")
@click.option("--instance", default=None, help="Which configured qBittorrent (default: all).")
@click.option("--yes", is_flag=True, help="Apply. Without it, only show the change.")
@pass_app
def setup_qbittorrent(app: App, mode, hook_path, qbhook_path, instance, yes):
    """Set qBittorrent's "run external program" on torrent added/finished to notify qbhook."""
    if mode == "http":
        base = [hook_path]
    else:
        exe = qbhook_path or _which("qbhook") or sys.argv[0]
        base = [exe] + (["--config", str(app.cfg.source)] if app.cfg.source else []) + ["hook"]

    def cmd(event):
        # qBittorrent splits the line itself (no shell) and strips the quotes around each argument.
        return " ".join([shlex.quote(b) for b in base] + [event] + [f'"{a}"' for a in HOOK_ARGS])
    wanted = {"autorun_on_torrent_added_enabled": True, "autorun_on_torrent_added_program": cmd("added"),
              "autorun_enabled": True, "autorun_program": cmd("finished")}
    from qbhook.clients.registry import client_type
    out = []
    for client in app.clients:
        if (instance and client.name != instance) or client_type(client) != "qbittorrent":
            continue   # rTorrent is wired by .rtorrent.rc lines: `qbhook setup rtorrent`
        prefs = client.preferences()
        current = {k: prefs.get(k) for k in wanted}
        change = {k: v for k, v in wanted.items() if current.get(k) != v}
        if change and yes:
            client.set_preferences(change)
        out.append({"instance": client.name, "current": current, "change": change, "applied": bool(change and yes)})

    def human(rows):
        for r in rows:
            click.echo(f"qBittorrent {r['instance']}:")
            if not r["change"]:
                click.echo("  already wired, nothing to change")
            for k, v in r["change"].items():
                click.echo(f"  {k}:\n    now: {r['current'].get(k)!r}\n    new: {v!r}")
            if r["change"] and not r["applied"]:
                click.echo("  dry run: re-run with --yes to apply")
        if mode == "http":
            click.echo("Make hooks/qbt-hook.sh available inside the qBittorrent container at that path, and set "
                       "QBHOOK_URL and QBHOOK_TOKEN (or QBHOOK_TOKEN_FILE) in a qbt-hook.conf next to it.")
    app.emit(out, human)


@setup.command("rtorrent")
@click.option("--hook-path", default="/hooks/qbt-hook.sh", show_default=True,
              help="Where qbt-hook.sh is, as rTorrent sees it (inside its container).")
@click.option("--instance", default=None, help="Which configured rTorrent (default: all).")
@pass_app
def setup_rtorrent(app: App, hook_path, instance):
    """Print the .rtorrent.rc lines that call qbt-hook.sh when an item is added or finishes.

    Printed, not applied: rTorrent reads them at start (or paste them into a running
    rTorrent's XML-RPC `method.set_key`); qbhook never edits rTorrent's config file.
    """
    from qbhook.clients.registry import client_type
    from qbhook.clients.rtorrent import event_rc_lines
    from qbhook.errors import ConfigError
    out = []
    for client in app.clients:
        if client_type(client) == "rtorrent" and (not instance or client.name == instance):
            out.append({"instance": client.name, "address": client.address,
                        "lines": event_rc_lines(hook_path, instance=client.name)})
    if not out:
        raise ConfigError("clients", "no rTorrent configured" + (f" named {instance!r}" if instance else ""),
                          hint="add {type: rtorrent, name: ..., scgi: /run/rtorrent/rpc.sock} under clients:")

    def human(rows):
        for r in rows:
            click.echo(f"# rTorrent {r['instance']} ({r['address']}): add to .rtorrent.rc")
            for line in r["lines"]:
                click.echo(line)
    app.emit(out, human)


def _which(name: str) -> str | None:
    from shutil import which
    return which(name)


# ---------------------------------------------------------------- serve
@main.command()
@click.option("--listen", default=None, help="Address to bind (default: server.listen, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: server.port, 9797).")
@click.option("--no-sweep", is_flag=True, help="Do not run the periodic sweeper in this process.")
@pass_app
def serve(app: App, listen, port, no_sweep):
    """Run the webhook server, the queue worker and a periodic sweeper until stopped (SIGTERM/SIGINT).

    The port opens first: intake answers (and queues durably) at once, while the worker
    finishes what a previous process left in flight, which may wait for the executor
    lock. A busy or unusable address is a one-line error, never a traceback.
    """
    from qbhook.catalog.db import connect
    from qbhook.catalog.store import Catalog
    from qbhook.events.auth import AuthConfig
    from qbhook.events.page import views
    from qbhook.events.queue import JobQueue
    from qbhook.events.server import create_app
    from qbhook.worker import Worker, WorkerHealth, sweep

    cfg = app.cfg
    srv = cfg.server
    clients = app.clients   # config errors before anything opens
    # Long background hashing says how far it got (a line every ~30 s) even without -v.
    hashing_log = logging.getLogger("qbhook.hashing")
    if hashing_log.getEffectiveLevel() > logging.INFO:
        hashing_log.setLevel(logging.INFO)
    auth = AuthConfig(username=srv.username, password=srv.password, token=srv.token)
    if not (srv.password or srv.token):
        click.echo("qbhook: warning: no server credentials configured (server.password_env / token_env); "
                   "every event endpoint will refuse requests", err=True)
    intake_conn = connect(cfg.catalog, check_same_thread=False)
    intake_queue = JobQueue(intake_conn)
    health = WorkerHealth()
    wsgi = create_app(enqueue=intake_queue.enqueue, auth=auth, max_body=srv.max_body, health=health.report,
                      views=views(cfg))
    host = listen or srv.listen
    server = _listen(wsgi, host, port or srv.port)
    stop = threading.Event()
    roots = [p.path for p in cfg.pools]   # .qbhook-fsid markers are written only at these

    def worker_main():
        delay = 1.0
        while not stop.is_set():
            cat = None
            try:
                cat = Catalog.open(cfg.catalog, marker_roots=roots)
                ex = _executor_for(cfg, cat, clients)
                wk = Worker(cfg, cat, clients, executor=ex, health=health)
                # Jobs a killed server left running: back to pending now, not after resume's lock wait.
                health.beat("requeueing jobs of dead workers")
                wk.requeue_orphans()
                # Finish what a previous process left in flight before taking new work.
                health.busy("finishing runs a previous process left unfinished")
                try:
                    ex.resume()
                except QbhookError as e:
                    log.error("resume at start failed: %s", e)
                wk.loop(stop)
                return
            except Exception as e:  # a full disk at start must not end the worker for good
                health.failed(f"starting the worker: {type(e).__name__}: {e}")
                log.exception("worker could not start; retrying in %.0f s", delay)
                if cat is not None:
                    cat.close()
                stop.wait(delay)
                delay = min(delay * 2, 60.0)

    def sweeper_main():
        cat = None
        while not stop.wait(srv.sweep_interval):
            try:
                cat = cat or Catalog.open(cfg.catalog, marker_roots=roots)
                sweep(cfg, cat, clients, executor=_executor_for(cfg, cat, clients))
            except Exception as e:  # noqa: BLE001 - a failed sweep is retried at the next interval
                log.error("sweep failed: %s", e)

    worker = threading.Thread(target=worker_main, name="worker", daemon=True)
    health.attach(worker)
    threads = [worker]
    if not no_sweep:
        threads.append(threading.Thread(target=sweeper_main, name="sweeper", daemon=True))
    for t in threads:
        t.start()

    def shutdown(signum, _frame):
        log.warning("signal %s: finishing the current step, then stopping", signum)
        stop.set()
        server.close()
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    click.echo(f"qbhook serving on http://{host}:{server.effective_port}", err=True)
    try:
        server.run()
    except (OSError, ValueError):
        if not stop.is_set():
            raise
    stop.set()
    for t in threads:
        t.join(timeout=600)
    click.echo("qbhook stopped", err=True)


def _listen(wsgi, host: str, port: int):
    """Bind the server socket now, or fail with one line naming the cause."""
    import errno

    import waitress

    from qbhook.errors import ConfigError, PortBusy
    from qbhook.events.server import waitress_options
    try:
        return waitress.create_server(wsgi, host=host, port=port, **waitress_options())
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise PortBusy(f"cannot listen on {host}:{port}: the address is already in use",
                           hint="another `qbhook serve`, or another program, holds it; "
                                "stop it or set server.port / --port") from None
        raise ConfigError("server.listen", f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    except (OverflowError, ValueError) as e:
        raise ConfigError("server.port", f"cannot listen on {host}:{port}: {e}") from None


def _executor_for(cfg, catalog, clients):
    from qbhook.executor import Executor
    from qbhook.journal import Journal
    from qbhook.notify import watch
    return watch(Executor(cfg, catalog, clients, Journal(catalog.conn), lock_wait=600.0))
