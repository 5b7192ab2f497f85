"""Event-side commands: serve, sweep, status, queue, hook, setup qbittorrent."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shlex
import signal
import sys
import threading

import click

from qbhook.cli import App, _human_bytes, main, pass_app

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
    """Queue depth, last sweep, pending plans, recent runs, pool usage."""
    from qbhook import state
    from qbhook.events.queue import JobQueue
    from qbhook.journal import Journal
    conn = app.catalog.conn
    sweep_info, sweep_at = state.get(conn, "last_sweep")
    pools = {}
    for p in app.cfg.pools:
        try:
            sv = os.statvfs(p.path)
            pools[p.name] = {"path": str(p.path), "role": p.role, "size": sv.f_blocks * sv.f_frsize,
                             "free": sv.f_bavail * sv.f_frsize}
        except OSError as e:
            pools[p.name] = {"path": str(p.path), "role": p.role, "error": e.strerror}
    runs = Journal(conn).runs(limit=5)
    data = {
        "queue": JobQueue(conn).counts(),
        "last_sweep": {"at": sweep_at, "plan": sweep_info.get("plan") if sweep_info else None,
                       "pending": sweep_info.get("pending", []) if sweep_info else []},
        "recent_runs": [{"id": r.id, "status": r.status, "trigger": r.trigger, "started_at": r.started_at,
                         "finished_at": r.finished_at, "summary": r.summary} for r in runs],
        "unfinished_runs": [r.id for r in Journal(conn).unfinished_runs()],
        "pools": pools,
        "catalog": app.catalog.counts(),
    }

    def human(d):
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
        c = d["catalog"]
        click.echo(f"catalog: {c['paths']:,} paths, {c['inodes']:,} inodes ({c['hashed']:,} hashed)")
    app.emit(data, human)


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
    new = JobQueue(app.catalog.conn).retry_dead(job_id)
    app.emit({"requeued": new}, lambda d: click.echo(f"job {job_id} requeued as {new}"))


# ---------------------------------------------------------------- hook (direct mode)
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("event", type=click.Choice(["added", "finished"]))
@click.argument("values", nargs=-1)
@pass_app
def hook(app: App, event, values):
    """Enqueue a qBittorrent hook call directly (no server): qbhook hook added %I %J %K %N %L %G %F %R %D %C %Z"""
    from qbhook.events.parse import parse_qbt_hook
    from qbhook.events.queue import JobQueue
    fields = {"event": event, **dict(zip(HOOK_FIELDS, values))}
    ev = parse_qbt_hook(fields)
    job, coalesced = JobQueue(app.catalog.conn).enqueue(ev)
    app.emit({"queued": job, "coalesced": coalesced}, lambda d: None)


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
    out = []
    for client in app.clients:
        if instance and client.name != instance:
            continue
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
    """Run the webhook server, the queue worker and a periodic sweeper until stopped (SIGTERM/SIGINT)."""
    import waitress

    from qbhook.catalog.db import connect
    from qbhook.catalog.store import Catalog
    from qbhook.events.auth import AuthConfig
    from qbhook.events.queue import JobQueue
    from qbhook.events.server import create_app
    from qbhook.worker import Worker, sweep

    cfg = app.cfg
    srv = cfg.server
    auth = AuthConfig(username=srv.username, password=srv.password, token=srv.token)
    if not (srv.password or srv.token):
        click.echo("qbhook: warning: no server credentials configured (server.password_env / token_env); "
                   "every event endpoint will refuse requests", err=True)
    intake_conn = connect(cfg.catalog, check_same_thread=False)
    intake_queue = JobQueue(intake_conn)
    wsgi = create_app(enqueue=intake_queue.enqueue, auth=auth, max_body=srv.max_body)
    stop = threading.Event()

    # Finish what a previous process left in flight before taking new work.
    ex = _executor(app)
    if ex is not None:
        try:
            ex.resume()
        except Exception as e:  # noqa: BLE001 - report and keep serving intake
            log.error("resume at start failed: %s", e)

    def worker_main():
        cat = Catalog.open(cfg.catalog)
        wk = Worker(cfg, cat, app.clients, executor=_executor_for(cfg, cat, app.clients))
        wk.loop(stop)

    def sweeper_main():
        cat = Catalog.open(cfg.catalog)
        while not stop.wait(srv.sweep_interval):
            try:
                sweep(cfg, cat, app.clients, executor=_executor_for(cfg, cat, app.clients))
            except Exception as e:  # noqa: BLE001
                log.error("sweep failed: %s", e)

    threads = [threading.Thread(target=worker_main, name="worker", daemon=True)]
    if not no_sweep:
        threads.append(threading.Thread(target=sweeper_main, name="sweeper", daemon=True))
    for t in threads:
        t.start()
    server = waitress.create_server(wsgi, host=listen or srv.listen, port=port or srv.port, threads=4)

    def shutdown(signum, _frame):
        log.warning("signal %s: finishing the current step, then stopping", signum)
        stop.set()
        server.close()
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    click.echo(f"qbhook serving on http://{listen or srv.listen}:{server.effective_port}", err=True)
    try:
        server.run()
    except (OSError, ValueError):
        if not stop.is_set():
            raise
    stop.set()
    for t in threads:
        t.join(timeout=600)
    click.echo("qbhook stopped", err=True)


def _executor_for(cfg, catalog, clients):
    from qbhook.executor import Executor
    from qbhook.journal import Journal
    return Executor(cfg, catalog, clients, Journal(catalog.conn), lock_wait=600.0)
