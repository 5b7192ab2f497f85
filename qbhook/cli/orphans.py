"""``qbhook orphans`` and ``qbhook holding``: data no torrent references, and what waits in holding.

``orphans`` lists (dry run); ``orphans --quarantine --yes`` moves the reclaimable ones into
holding (never deletes); ``holding --purge-expired --yes`` purges what the journal recorded as held
once ``policy.grace_period`` is over. The rules live in ``qbhook.move.orphans``.
"""

from __future__ import annotations

import time

import click

from qbhook.cli.app import App, echo_shown, main, pass_app, shown, wait_option
from qbhook.errors import ExitCode
from qbhook.units import human_bytes


@main.command()
@click.option("--quarantine", is_flag=True, help="Move reclaimable orphans into the holding folder (with --yes).")
@click.option("--yes", is_flag=True, help="Really move them (without it --quarantine only shows what would move).")
@pass_app
def orphans(app: App, quarantine, yes):
    """Files under the seeding roots that no torrent of any configured client references.

    Example: qbhook orphans --quarantine --yes
    """
    if yes and not quarantine:  # a --yes that does nothing would read as "done"
        raise click.UsageError("--yes goes with --quarantine (without it, orphans only lists)")
    from qbhook.move import orphans as orph

    cfg = app.cfg
    if quarantine and yes:
        res = orph.quarantine(cfg, app.catalog, app.clients)
        data = {
            "run_id": res.run_id,
            "held": res.held,
            "failed": res.failed,
            "bytes_held": res.bytes_held,
            "folders_removed": res.folders_removed,
            "not_seeding": res.not_seeding,
            "grace_period": cfg.policy.grace_period,
        }

        def human(d):
            for p, why in d["failed"].items():
                echo_shown(f"not moved: {shown(p)}: {why}", err=True)
            _warn_not_seeding(d["not_seeding"])
            echo_shown(
                f"{len(d['held'])} file(s) moved into holding ({human_bytes(d['bytes_held'])} to free "
                f"once purged), run {d['run_id']}; purge after {d['grace_period']:g}s with "
                "`qbhook holding --purge-expired --yes`"
            )

        app.emit(data, human)
        if res.failed:
            raise SystemExit(ExitCode.FAILURE)
        return
    # It records its totals for `status` (move.orphans.record): it writes, so it makes a catalog.
    report = orph.find_orphans(cfg, app.clients, catalog=app.catalog)
    data = report.as_dict()
    data["dry_run"] = True
    app.emit(data, lambda d: _show_report(d, quarantine))


def _show_report(d: dict, quarantine: bool) -> None:
    """``qbhook orphans``' listing, for a person: orphans by kind, what is protected, the totals."""
    for kind, title in (
        ("reclaimable", "reclaimable (no link outside the seeding roots)"),
        ("library", "still used by a library (frees nothing)"),
        ("not_seeding", "not in a seeding folder (never quarantined)"),
    ):
        items = [i for i in d["items"] if i["kind"] == kind]
        if not items:
            continue
        echo_shown(f"{title}:")
        for i in items:
            what = f"{i['files']} files" if i["folder"] else "file"
            if i.get("link"):  # what keeps it until that symlink is removed (a stale cross-seed link too)
                what += f"; a library links it by a symbolic link: {shown(i['link'])}"
            echo_shown(f"  {human_bytes(i['bytes']):>10}  {shown(i['path'])}{'/' if i['folder'] else ''} ({what})")
    if d["protected"]:  # no orphans: maybe the data of a torrent missing its files
        echo_shown("protected (not orphans):")
        for p in d["protected"]:
            echo_shown(f"  {human_bytes(p['bytes']):>10}  {shown(p['path'])}: {p['reason']}")
    r, lib = d["reclaimable"], d["library"]
    echo_shown(
        f"{r['items']} reclaimable item(s), {human_bytes(r['frees'])} to free; "
        f"{lib['items']} item(s) still used by a library ({human_bytes(lib['bytes'])})"
    )
    if d.get("unfinished_runs"):  # its views are unreferenced until it relocates onto them: not orphans
        echo_shown(
            f"qbhook: warning: run(s) {', '.join(map(str, d['unfinished_runs']))} did not finish: the files "
            "its plan makes are not orphans; `qbhook resume` (or `qbhook serve` as it starts) finishes it",
            err=True,
        )
    _warn_not_seeding(d["not_seeding"]["folders"])
    if d["counts"].get("leftover"):  # never orphans: the leftover pass's, or a person's (maybe a last copy)
        echo_shown(f"{d['counts']['leftover']} leftover view(s) not counted: `qbhook status` lists them")
    for w in d.get("whole_roots", ()):  # kept (only ever more protection), but a person must know
        echo_shown(
            f"qbhook: warning: library symlink {shown(w['symlink'])} reaches all of seeding root "
            f"{shown(w['root'])}: nothing below it is reclaimable",
            err=True,
        )
    for k in d.get("kept_whole_roots", ()):  # kept (only ever more protection), but a person must know
        echo_shown(
            f"qbhook: warning: {k['by']} keeps {shown(k['place'])} whole, which holds all of seeding root "
            f"{shown(k['root'])}: nothing below it is an orphan while it does",
            err=True,
        )
    for p in d.get("drop_names", ()):  # a link a killed delete left hidden: a person looks (R19)
        echo_shown(
            f"qbhook: warning: {shown(p)}: a link a killed qbhook delete left under its temporary name "
            "(the next attempt of that delete puts it back); not reclaimable: look at it if it stays",
            err=True,
        )
    if quarantine:
        echo_shown("dry run: add --yes to move the reclaimable ones into holding", err=True)


def _warn_not_seeding(folders) -> None:
    """A seeding root set too high, a library a torrent was saved into, or a category whose torrents
    are all gone: a person looks."""
    for f in folders:
        echo_shown(
            f"qbhook: warning: {shown(f)}: no torrent of any client has its save or download path at or above "
            "this folder of a seeding root, so nothing in it is quarantined (a library? check seeding_roots: "
            "a seeding root must hold only torrent data)",
            err=True,
        )


@main.command(secrets=lambda p: p["yes"])  # without --yes it only lists the journal's held links
@click.option("--purge-expired", is_flag=True, help="Purge held links whose grace period is over (with --yes).")
@click.option("--forget-gone", is_flag=True, help="Stop tracking held links whose holding folder is gone (with --yes).")
@click.option("--yes", is_flag=True, help="Really act (without it, --purge-expired and --forget-gone only show).")
@wait_option()
@pass_app
def holding(app: App, purge_expired, forget_gone, yes, wait):
    """Links waiting in holding folders (journal-recorded), and when each may be purged.

    A purge deletes, so like every other act it is a dry run until --yes. A holding folder
    renamed away or replaced keeps its links out of every purge's reach, reported each time;
    once you have dealt with them, --forget-gone --yes stops tracking them (deletes nothing).

    \b
    Example:
      qbhook holding --purge-expired --yes
      qbhook holding --forget-gone
    """
    if yes and not (purge_expired or forget_gone):  # a --yes that does nothing would read as "done"
        raise click.UsageError("--yes goes with --purge-expired or --forget-gone (without it, holding only lists)")
    if purge_expired and forget_gone:
        raise click.UsageError("--purge-expired and --forget-gone are two acts: one at a time")
    from qbhook.move import orphans as orph
    from qbhook.move.journal import Journal

    if forget_gone:
        _forget_gone(app, yes, wait)
        return

    cfg = app.cfg
    purging = purge_expired and yes
    catalog = app.open_catalog(writes=purging)
    purge = orph.purge_expired(cfg, catalog, lambda: app.clients, lock_wait=wait) if purging else orph.Purge()
    now = time.time()
    held = orph.holding(cfg, catalog)
    unreadable = Journal(catalog.conn).unreadable_held()  # rows left out of the listing and the purge
    clock = purge.clock if purging else orph.clock_doubt(cfg, catalog)  # the purge's own line
    data = {
        "held": [
            {"path": h.path, "origin": h.origin, "since": h.since, "expires": h.expires, "expired": h.expired}
            for h in held
        ],
        "unreadable": [{"step": u.step, "why": u.why} for u in unreadable],
        **purge.as_dict(),
        "clock_refused": clock,
        "grace_period": cfg.policy.grace_period,
        "dry_run": not purging,
    }

    def human(d):
        for h in d["held"]:
            echo_shown(f"  {shown(h['path'])} ({_when(h, now)})")
        for k in purge.kept:
            echo_shown(f"qbhook: {k.line()}", err=True)
        for u in unreadable:
            echo_shown(f"qbhook: warning: {u.line()}", err=True)
        if clock is not None:
            echo_shown(f"qbhook: warning: {clock}", err=True)
        echo_shown(
            f"{len(d['held'])} link(s) in holding"
            + (f"; {len(purge.folders)} folder(s) purged, {human_bytes(purge.bytes_freed)} freed" if purging else "")
        )
        if purge_expired and not yes:
            due = sum(1 for h in d["held"] if h["expired"])
            echo_shown(f"dry run: {due} link(s) due; add --yes to purge them", err=True)

    app.emit(data, human)
    # What the purge could not do, as every command's error (one line, its exit code), after the
    # answer: a refusal of the orphans' purge did not stop the purge of the other held links.
    problems = [e for e in (purge.refused, purge.error) if e is not None]
    for e in problems[:-1]:
        echo_shown(f"qbhook: {getattr(e, 'message', e)}", err=True)
    if problems:
        raise problems[-1]
    if purge.kept:
        raise SystemExit(ExitCode.UNSAFE)  # each one needs a person: put it back, or remove it


def _when(h: dict, now: float) -> str:
    """When a held link (``holding``'s listing) may go; one past its wall-clock expiry that is not
    due waits on a clock not believed (``orphans.clock_doubt``) or one that moved since its hold."""
    left = h["expires"] - now
    return "expired" if h["expired"] else f"expires in {left:.0f}s" if left > 0 else "waits: the clock moved since"


def _forget_gone(app: App, yes: bool, wait: float) -> None:
    """``holding --forget-gone``: the held links out of reach for good, forgotten with --yes."""
    from qbhook.move import orphans as orph

    gone = orph.forget_gone(app.cfg, app.open_catalog(writes=yes), forget=yes, lock_wait=wait)
    data = {"gone": [{"path": h.path, "origin": h.origin, "why": why} for h, why in gone], "dry_run": not yes}

    def human(d):
        for g in d["gone"]:
            echo_shown(f"  {shown(g['path'])} (holding folder {shown(g['why'])})")
        if yes:
            echo_shown(f"{len(d['gone'])} held link(s) no longer tracked; nothing deleted")
        else:
            n = len(d["gone"])
            echo_shown(f"dry run: {n} held link(s) out of reach; add --yes to stop tracking them", err=True)

    app.emit(data, human)
