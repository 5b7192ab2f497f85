"""``qbhook repair [HASH] [--yes]``: torrents whose files went missing, rebuilt from catalog copies.

Dry run unless ``--yes`` (like ``apply``). The decision is ``qbhook.decide.repair`` (pure), its
facts are gathered live by ``qbhook.decide.repair_facts`` (``repair_plan``: one call); this
module parses the options and prints. The plan runs through the journaled executor, so a crash
is finished by ``qbhook resume``. Exit codes: 0 ok, 2 bad input (unknown torrent, not missing), 1 the named
torrent cannot be repaired (the reason is printed), 5 a repair failed.
"""

from __future__ import annotations

import sys

import click

from qbhook.cli.app import TORRENT_HASH, App, echo_shown, main, pass_app, wait_option
from qbhook.units import human_bytes as _human_bytes


@main.command()
@click.argument("torrent_hash", required=False, type=TORRENT_HASH)
@click.option("--yes", is_flag=True, help="Really do it. Without --yes: print the repairs, change nothing.")
@wait_option()
@pass_app
def repair(app: App, torrent_hash, yes, wait):
    """Rebuild torrents in missingFiles from copies the catalog holds: hardlinks on one dataset,
    setLocation if the save path changes, recheck to 100 %. No bytes are copied.

    Example: qbhook repair c12fe1c06bba254a9dc9f519b335aa7c1367a88a --yes
    """
    from qbhook.decide.repair_facts import repair_plan

    catalog = app.open_catalog(writes=yes)
    plan, refused = repair_plan(app.cfg, catalog, app.clients, torrent_hash)  # TORRENT_HASH: lower-cased
    summary = app.executor(wait).apply(plan, trigger="repair", dry_run=not yes)
    out = {
        "dry_run": not yes,
        "repairs": [g.to_dict() for g in plan.groups],
        "unrepairable": [r.as_dict() for r in refused],
        "run": summary.to_dict(),
    }
    app.emit(out, lambda d: _print(d, yes))
    sys.exit(summary.exit_code)


def _print(d: dict, yes: bool) -> None:
    for g in d["repairs"]:
        echo_shown(f"repair {g['names'][0]} ({g['torrents'][0][:12]}): {g['reason']}")
        if not yes:
            from qbhook.decide.plan import describe_step

            for s in g["steps"]:
                echo_shown(f"    {s['kind']:<12} {describe_step(s['kind'], s['args'])}")
    for r in d["unrepairable"]:
        echo_shown(f"cannot repair {r['name']} ({r['hash'][:12]}): {r['reason']}")
    run = d["run"]
    if not d["repairs"] and not d["unrepairable"]:
        echo_shown("no torrent is missing its files")
    elif not yes:
        echo_shown("dry run: nothing changed (run with --yes to repair)")
    else:
        from qbhook.decide.repair import NOT_AS_FOUND

        failed = run["groups_failed"]
        echo_shown(
            f"{len(run['groups_done'])} repaired, {len(failed)} failed, {_human_bytes(run['bytes_copied'])} copied"
        )
        for gid, why in failed.items():
            # The torrent left otherwise than found gets a line of its own (``qbhook status`` lists it too).
            head, sep, left = why.partition(f"; {NOT_AS_FOUND}")
            echo_shown(f"  {gid}: {head}")
            if sep:
                echo_shown(f"  {NOT_AS_FOUND}{left}")
