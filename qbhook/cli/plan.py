"""``qbhook plan`` and ``qbhook explain``: show decisions, change nothing."""

from __future__ import annotations

import shlex
import sys

import click

from qbhook.cli.app import SECONDS, TEXT, TORRENT_HASH, App, FilePath, catalog_note, echo_shown, main, pass_app, shown
from qbhook.decide.plan import describe_step
from qbhook.errors import ExitCode, QbtError, UnknownTorrent, hint_line
from qbhook.units import human_bytes as _human_bytes


@main.command()
@click.option(
    "--hash",
    "hashes",
    multiple=True,
    type=TORRENT_HASH,
    help="Only the group(s) of these torrents (no walk of the pools).",
)
@click.option(
    "--group",
    "group_ids",
    multiple=True,
    type=TEXT,
    help="Only this payload group: its id or the start of it, as `torrents` prints it (repeatable; no walk).",
)
@click.option(
    "--scan/--no-scan",
    "scan",
    default=None,
    help="Scan the pools first, or use the catalog as is. Default: a plan of everything scans "
    "when the last full scan is older than scan.max_age; --hash/--group never walk.",
)
@click.option("--steps", is_flag=True, help="Also list each group's steps.")
@click.option(
    "--save",
    "save_to",
    type=FilePath(replace=True),
    help="Also write the plan to this file, for `qbhook apply --plan FILE` after review.",
)
@pass_app
def plan(app: App, hashes, group_ids, scan, steps, save_to):
    """Show what qbhook would do for every payload group. Changes nothing.

    Exit code 0: nothing to do; 10: some groups would be acted on (demote, promote, converge
    or repair).

    Example: qbhook plan --steps --save /root/plan.json
    """
    from qbhook.decide.planner import plan_warnings
    from qbhook.decide.planning import plan_groups

    run = plan_groups(
        app.cfg,
        app.open_catalog(writes=scan is not False),
        app.clients,
        hashes=hashes,
        group_ids=group_ids,
        scan=scan,
        progress=app.progress(),
    )
    snap, p = run.snapshot, run.plan
    note = catalog_note(app, run.catalog_use)
    saved = _save(app, snap, p, save_to) if save_to else None
    warnings = plan_warnings(snap)
    app.emit(
        {**p.to_dict(), "warnings": warnings, **note, **({"plan_id": saved} if saved else {})},
        lambda d: _print_plan(p, steps, warnings),
    )
    if saved:
        echo_shown(
            f"plan {saved[:12]} saved to {save_to}; apply it with: qbhook apply --plan {_shell_word(save_to)} --yes",
            err=app.as_json,
        )
    sys.exit(ExitCode.ACTIONABLE if p.actionable else ExitCode.OK)


def _shell_word(path: str) -> str:
    """``path`` as one word a shell reads back as it is, for a command line to paste: quoted
    (shlex), or, when it holds what ``shown`` escapes (a newline, bytes that are not UTF-8),
    ANSI-C quoted ($'...', bash and zsh), whose \\xNN escapes are those bytes again."""
    if path.isprintable():
        return shlex.quote(path)
    return "$'" + shown(path.replace("\\", "\\\\").replace("'", "\\'")) + "'"


def _save(app: App, snap, p, path) -> str:
    from qbhook.decide import approved

    doc = approved.document(p, snap, approved.seeding_roots(app.cfg))
    approved.save(path, doc)
    return doc["plan_id"]


def _print_plan(p, steps: bool, warnings: list[str] = ()) -> None:
    rows = sorted(
        p.groups, key=lambda g: (["demote", "promote", "converge", "blocked", "skip", "stay"].index(g.action), g.names)
    )
    for g in rows:
        extra = ""
        if g.actionable:
            extra = f"  copy {_human_bytes(g.bytes_to_copy)}, frees {_human_bytes(g.bytes_freed)} on {g.source_pool}"
        echo_shown(
            f"{g.action.upper():8} {g.group_id}  {len(g.torrents)} torrent(s), {_human_bytes(g.payload_bytes)}{extra}"
        )
        for n in g.names[:5]:
            echo_shown(f"           - {n}")
        if len(g.names) > 5:
            echo_shown(f"           ... and {len(g.names) - 5} more")
        echo_shown(f"           why: {g.reason}")  # reasons and steps name paths
        if steps:
            for s in g.steps:
                echo_shown(f"             {s.kind:12} {describe_step(s.kind, s.args)}")
    s = p.summary()
    echo_shown()
    echo_shown(
        f"{s['demote']} to demote, {s['promote']} to promote, {s['converge']} to converge, {s['blocked']} "
        f"blocked, {s['skip']} skipped, "
        f"{s['stay']} staying; {_human_bytes(s['bytes_to_copy'])} to copy, {_human_bytes(s['bytes_freed'])} to free"
    )
    for w in warnings:  # on stderr, as every warning: after the rows, where it is read
        echo_shown(f"qbhook: warning: {w}", err=True)
    if p.actionable:
        echo_shown("dry run: nothing changed. Apply with: qbhook apply --yes")


@main.command(secrets=lambda p: not p["from_index"])
@click.argument("torrent_hash", type=TORRENT_HASH)
@click.option("--no-scan", is_flag=True, help="Skip the incremental catalog scan first.")
@click.option(
    "--index",
    "from_index",
    is_flag=True,
    help="Only the last recorded decision, from the torrent index (no new decision, no scan).",
)
@click.option(
    "--live",
    is_flag=True,
    help="List the torrents from the clients (every torrent of each) instead of the torrent index.",
)
@click.option(
    "--max-scan-age",
    type=SECONDS,
    default=None,
    help="Seconds (default: scan.max_age): a full scan of every pool at most this old is used as "
    "is (the group's own files are re-stat-ed anyway); older, or never, and both pools are "
    "scanned first. The same age for the torrent index: older, and it is synced first.",
)
@pass_app
def explain(app: App, torrent_hash, no_scan, from_index, live, max_scan_age):
    """Why TORRENT_HASH's group gets its decision: its torrents, files and every link found.

    The decision is taken now: every file of the group is stat-ed live and every known link
    checked. The torrents (state, tags, category, file lists) come from the torrent index,
    as old as its last sync (said on stderr and in --json's ``index``), so qBittorrent may
    be down; --live lists them from the clients instead (and fails, exit 4, when they cannot
    answer). A hash the index lacks while qBittorrent is down is that client error (exit 4).

    Example: qbhook explain c12fe1c06bba254a9dc9f519b335aa7c1367a88a
    """
    if from_index and live:  # two answers: --index silently won
        raise click.UsageError("--index and --live are two different answers: give one")
    from qbhook.decide.planning import explain_group

    app.open_catalog(writes=not (no_scan or from_index))  # its scan writes
    if from_index:
        return explain_from_index(app, torrent_hash, None)
    r = explain_group(
        app.cfg,
        app.catalog,
        lambda: app.clients,
        torrent_hash,
        no_scan=no_scan,
        live=live,
        max_scan_age=max_scan_age,
        progress=app.progress(),
    )
    if r.live_error is not None:
        # No client could answer (a wrong hash raised UnknownTorrent in explain_group). --live
        # asked for the clients' answer: an index one would be the answer it said it is not.
        # Without it, the index stands in; a hash it lacks (added since its last sync, or wrong)
        # is the client's error, so "qBittorrent is down" never reads as "bad hash".
        if live:
            raise r.live_error
        try:
            why = f"live answer impossible: {r.live_error.message}"  # its hint below, on its own line
            return explain_from_index(app, torrent_hash, why, hint=r.live_error.hint)
        except UnknownTorrent as e:
            # The index's line already says both halves (what it lacks, why no client could be
            # asked), with the client's exit code and hint.
            raise QbtError(e.message, hint=e.hint or r.live_error.hint) from None
    app.emit(r.data, _print_explain)


def explain_from_index(app: App, torrent_hash: str, why: str | None, hint: str | None = None) -> None:
    """``explain`` answered from the torrent index: no client, no scan; says how old it is.
    ``why`` it answers, and ``hint``: the client error's that made it, printed below ``why``."""
    from qbhook.decide.explain import index_answer

    data = index_answer(app.catalog, torrent_hash, why)
    now = data.pop("now")
    for t in data["torrents"]:
        for f in t["files"]:
            f["path"] = shown(f["path"]) if f["path"] else None

    def human(d):
        g = d["group"]
        echo_shown(f"from the torrent index ({d['why'] or 'as asked'}):", err=True)
        if hint:
            echo_shown(hint_line(hint), err=True)
        when = f", decided {now - g['decided_at']:.0f} s ago" if g["decided_at"] else ""
        echo_shown(
            f"group {g['group_id']}: last decision {(g['decision'] or 'none').upper()}"
            f"{' - ' + g['decision_reason'] if g['decision_reason'] else ''}{when}"
        )
        for v in d["backstop"]:
            echo_shown(f"  STOPPED BY THE VIEW BACKSTOP in run {v['run']} (group {v['group_id']}): {v['reason']}")
            echo_shown(f"    what to do: {v['todo']}")
        for t in d["torrents"]:
            age = f"{t['index_age_s']:.0f} s old" if t["index_age_s"] is not None else "never synced"
            echo_shown(
                f"  torrent {t['hash']} {t['name']!r} [{t['state']}] at {t['save_path'] or '(unmapped)'} (index {age})"
            )
            echo_shown(f"    content id: {t['content_id'] or '(not all files hashed)'}; tree id: {t['tree_id'] or '-'}")
            for f in t["files"]:
                lv = f["live"]
                state = (
                    "MISSING"
                    if lv and lv["nlink"] is None
                    else f"{lv['nlink']} link(s) now" + ("" if lv["same_inode"] else ", not the indexed inode")
                    if lv
                    else "no host path"
                )
                echo_shown(f"    {f['path'] or f['rel']}: {state}")

    app.emit(data, human)


def _print_explain(d: dict) -> None:
    g = d["group"]
    echo_shown(f"({d['catalog']}; {d['index']['reason']})", err=True)
    for p in d["index"].get("problems", ()):  # the reason has their messages; their hints, each on its line
        if p.hint:
            echo_shown(hint_line(p.hint), err=True)
    echo_shown(f"group {g['group_id']}: {g['action'].upper()} - {g['reason']}")
    for b in g["blockers"]:
        echo_shown(f"  blocked: {b}")
    for v in d.get("backstop", ()):
        echo_shown(f"  STOPPED BY THE VIEW BACKSTOP in run {v['run']} (group {v['group_id']}): {v['reason']}")
        echo_shown(f"    what to do: {v['todo']}")
    for t in d["torrents"]:
        echo_shown(
            f"  torrent {t['hash']} {t['name']!r} [{t['state']}, {t['progress'] * 100:.0f}%] at {t['save_path']}"
        )
        echo_shown(f"    tags: {', '.join(t['tags']) or '-'}; category: {t['category'] or '-'}")
        echo_shown(f"    content id: {t['content_id'] or '(not all files hashed)'}; tree id: {t['tree_id'] or '-'}")
        for f in t["files"]:
            if f["inode"] is None:
                echo_shown(f"    {f['path']}: MISSING")
                continue
            echo_shown(
                f"    {f['path']}: inode {f['inode'][1]} on {f['inode'][0]}, {f['nlink']} link(s), "
                f"{f['external_links']} outside the seeding roots"
            )
            for o in f["other_links"]:
                echo_shown(f"      library/other: {o}")
            unknown = f["external_links"] - len(f["other_links"])
            if unknown > 0:
                echo_shown(f"      + {unknown} link(s) outside the scanned pools")
