"""``qbhook apply``, ``qbhook converge``, ``qbhook resume`` and ``qbhook history``: carry out plans,
finish them, look back.

``apply`` is a dry run unless ``--yes`` is given (lesson 4: a plan is shown before
anything happens). Exit codes: 0 ok, 5 a group failed (safely: rolled back or
stopped before deleting), 75 a lock is busy (another qbhook is working).
"""

from __future__ import annotations

import sys

import click

from qbhook.cli.app import (
    COUNT,
    ROW_ID,
    TEXT,
    TORRENT_HASH,
    App,
    FilePath,
    catalog_note,
    echo_shown,
    main,
    pass_app,
    print_summary,
    wait_option,
    when,
)
from qbhook.decide.plan import describe_step
from qbhook.errors import ExitCode
from qbhook.move.journal import failed_not_paused
from qbhook.units import freed_bytes
from qbhook.units import human_bytes as _human_bytes


@main.command()
@click.option("--yes", is_flag=True, help="Really do it. Without --yes: print the steps, change nothing.")
@click.option(
    "--group", "group_ids", multiple=True, type=TEXT, help="Only this payload group: its id or its start (repeatable)."
)
@click.option(
    "--hash", "hashes", multiple=True, type=TORRENT_HASH, help="Only the group(s) of these torrents (repeatable)."
)
@click.option(
    "--scan/--no-scan",
    "scan",
    default=None,
    help="Scan the pools before planning, or use the catalog as is. Default: scan when the last "
    "full scan is older than scan.max_age; --hash/--group never walk the pools.",
)
@wait_option()
@click.option(
    "--plan",
    "plan_file",
    type=FilePath(),
    help="Apply exactly this saved plan (qbhook plan --save), refusing groups whose facts changed.",
)
@pass_app
def apply(app: App, yes, group_ids, hashes, scan, wait, plan_file):
    """Plan, then (with --yes) move payload groups between the pools.

    Every step is journaled before it runs; a crash is finished by `qbhook resume`.
    With --plan FILE: exit 6 when some saved groups were refused as stale, 65 for a bad file.

    Example: qbhook apply --plan /root/plan.json --yes
    """
    app.take_kept_notifications = yes  # before the config is first loaded
    if plan_file:
        if group_ids or hashes:
            raise click.UsageError("--plan applies the saved plan as a whole; it takes no --group or --hash")
        return _apply_saved(app, plan_file, yes, scan is False, wait)
    from qbhook.move.run import apply_planned

    catalog = app.open_catalog(writes=yes or scan is not False)
    # only these groups' files are stat-ed; a group the index does not know: plan everything
    done = apply_planned(
        app.cfg,
        catalog,
        app.clients,
        app.executor(wait),
        hashes=hashes,
        group_ids=group_ids,
        scan=scan,
        dry_run=not yes,
        progress=app.progress(),
    )
    note = catalog_note(app, done.planned.catalog_use)
    summary = done.summary
    app.emit({**summary.to_dict(), **note}, lambda d: print_summary(summary))
    sys.exit(summary.exit_code)


@main.command()
@click.option("--yes", is_flag=True, help="Really do it. Without --yes: print the steps, change nothing.")
@click.option(
    "--scan/--no-scan",
    "scan",
    default=None,
    help="Scan the pools first (the default: the pass decides on the catalog's paths), or use the "
    "catalog as is (a path gone since the last scan fails its group).",
)
@wait_option()
@pass_app
def converge(app: App, yes, scan, wait):
    """Relink seeding files that duplicate another inode on their dataset onto it, in one pass.

    What `apply` does for the converge groups of a plan, for every group at once, over the
    catalog's duplicate sets: a library's inode is kept first, only names inside seeding roots
    are replaced, each re-checked (inode, size, content) right before its atomic rename. No
    torrent is relocated or rechecked. Exit codes as `apply`: 0 ok, 5 a group failed, 75 busy;
    3 when a duplicate could be replaced but the libraries' symlinks could not be walked.

    \b
    Example:
      qbhook converge            # what it would relink, and the bytes it would free
      qbhook converge --yes      # do it
    """
    app.take_kept_notifications = yes  # before the config is first loaded
    from qbhook.move.run import apply_converged

    catalog = app.open_catalog(writes=yes or scan is not False)  # --no-scan dry run: only reads
    done = apply_converged(
        app.cfg, catalog, app.clients, app.executor(wait), scan=scan, dry_run=not yes, progress=app.progress()
    )
    run = done.planned
    note = catalog_note(app, run.catalog_use)
    summary = done.summary
    counts = {"duplicate_sets": run.duplicate_sets, "torrents": run.torrents}

    def human(_d):
        if not app.as_json:
            echo_shown(
                f"qbhook: {run.duplicate_sets} duplicate set(s) in the catalog, {run.torrents} torrent(s) may use one",
                err=True,
            )
        print_summary(summary)

    app.emit({**summary.to_dict(), **counts, **note}, human)
    sys.exit(summary.exit_code)


def _apply_saved(app: App, plan_file, yes, no_scan, wait):
    from qbhook.decide.approved import load, seeding_roots
    from qbhook.move.run import apply_saved

    saved = load(plan_file, seeding_roots(app.cfg))  # a bad file fails before anything is touched
    run = apply_saved(
        app.cfg,
        app.open_catalog(writes=yes or not no_scan),
        app.clients,
        app.executor(wait),
        saved,
        dry_run=not yes,
        scan=not no_scan,
        progress=app.progress(),
    )

    def human(_d):
        echo_shown(
            f"plan {run.plan_id[:12]}: {len(run.verdicts) - len(run.stale)} group(s) still valid, "
            f"{len(run.stale)} stale"
        )
        for v in run.stale:
            echo_shown(f"STALE      {v.group_id}  - refused: {v.reason}")
        print_summary(run.summary)

    app.emit(run.to_dict(), human)
    sys.exit(run.exit_code)


@main.command()
@click.option("--run", "run_id", type=ROW_ID, help="Resume this run (even if its pid looks alive).")
@wait_option()
@pass_app
def resume(app: App, run_id, wait):
    """Finish runs that crashed or were interrupted, re-checking the step that was in flight.

    Example: qbhook resume --wait 60
    """
    app.take_kept_notifications = True  # before the config is first loaded
    summaries = app.executor(wait).resume(run_id)
    data = {"runs": [s.to_dict() for s in summaries]}

    def human(_d):
        if not summaries:
            echo_shown("no unfinished runs")
        for s in summaries:
            if s.skipped:  # a run resume must not take: it says why (exit 75)
                echo_shown(f"run {s.run_id} left alone: {s.skipped}")
                continue
            echo_shown(f"run {s.run_id}:")
            print_summary(s)

    app.emit(data, human)
    codes = [s.exit_code for s in summaries]
    # A quarantine's step that failed (FAILURE, as `orphans --quarantine` says it) needs a person:
    # before a run that only has to be tried again later (BUSY).
    worst = next((c for c in (ExitCode.UNSAFE, ExitCode.FAILURE, ExitCode.BUSY) if c in codes), ExitCode.OK)
    sys.exit(int(worst))


@main.command(secrets=False)
@click.option("--run", "run_id", type=ROW_ID, help="Show one run with all its steps.")
@click.option("--limit", type=COUNT, default=20, show_default=True, help="How many recent runs to list.")
@pass_app
def history(app: App, run_id, limit):
    """Past runs from the journal (newest first), or one run's steps.

    Example: qbhook history --run 12
    """
    from qbhook.move.journal import Journal

    j = Journal(app.open_catalog(writes=False).conn)
    if run_id is not None:
        r = j.run(run_id)  # UnknownRun (exit 2) if there is none
        steps = j.steps(run_id)
        data = {
            "run": _run_dict(r),
            "steps": [
                {
                    "seq": s.seq,
                    "group_id": s.group_id,
                    "kind": s.kind,
                    "status": s.status,
                    "args": s.args,
                    "result": s.result,
                    "error": s.error,
                }
                for s in steps
            ],
        }

        def human(d):
            _print_run_line(d["run"])
            for s in d["steps"]:
                line = f"  {s['seq']:4} {s['status']:9} {s['kind']:12} {describe_step(s['kind'], s['args'])}"
                echo_shown(line)  # steps and errors name paths
                if s["error"]:
                    echo_shown(f"       error: {s['error']}")

        app.emit(data, human)
        return
    runs = [_run_dict(r) for r in j.runs(limit)]

    def human_list(d):
        if not d["runs"]:
            echo_shown("no runs yet")
        for r in d["runs"]:
            _print_run_line(r)

    app.emit({"runs": runs}, human_list)


# ------------------------------------------------------------------ printing


def _run_dict(r) -> dict:
    groups = r.plan.get("groups", [])
    return {
        "id": r.id,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "status": r.status,
        "trigger": r.trigger,
        "pid": r.pid,
        "host": r.host,
        "groups": [g["group_id"] for g in groups],
        "summary": r.summary,
    }


def _print_run_line(r: dict) -> None:
    s = r["summary"] or {}
    extra = ""
    if "orphans_held" in s:
        # A quarantine run (``orphans.quarantine``) counts files held, not groups nor bytes freed:
        # shown as an apply run, it read as zeros.
        extra = (
            f"  held {s.get('orphans_held') or 0}, failed {s.get('orphans_failed') or 0}, "
            f"{_human_bytes(s.get('bytes_held') or 0)} held"
        )
    elif s:
        freed = freed_bytes(s.get("bytes_freed", 0), bool(s.get("bytes_freed_at_least")))
        extra = (
            f"  copied {_human_bytes(s.get('bytes_copied', 0))}, freed {freed}, "
            f"{s.get('torrents_relocated', 0)} relocated, {len(failed_not_paused(s))} failed"
            + (f", {len(paused)} paused" if (paused := s.get("groups_paused")) else "")
        )
    echo_shown(
        f"run {r['id']:5}  {when(r['started_at'])}  {r['status']:11} {r['trigger'] or '-':8} "
        f"{len(r['groups'])} group(s){extra}"
    )
