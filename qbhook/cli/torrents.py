"""``qbhook torrents``: the torrent index, answered from the catalog (qBittorrent may be down).

By default the index is synced first (one request per unchanged qBittorrent); a client that
cannot be reached is reported on stderr with the age of what is shown, and the answer
comes from the index as it is. ``--offline`` never contacts a client.
"""

from __future__ import annotations

import click

from qbhook.cli.app import TEXT, App, echo_problems, echo_shown, main, pass_app, shown


@main.command(secrets=lambda p: not p["offline"])
@click.option("--pool", help="Only torrents whose save path is in this pool ('none': in no pool).")
@click.option("--state", help="Only torrents in this state (e.g. stalledUP, stoppedUP).")
@click.option("--category", help="Only torrents of this category.")
@click.option("--group", "group", type=TEXT, help="Only torrents of this payload group (id or its prefix).")
@click.option("--decision", help="Only torrents whose last known decision is this (stay, demote, ...; 'none').")
@click.option(
    "--gone",
    is_flag=True,
    help="Include torrents the client no longer has (a sweep forgets them sweep.keep_history after they went).",
)
@click.option("--offline", is_flag=True, help="Do not contact any client; answer from the index as it is.")
@pass_app
def torrents(app: App, pool, state, category, group, decision, gone, offline):
    """List indexed torrents with their pool, payload group, payload id and last known decision.

    Example: qbhook torrents --pool stash --decision demote
    """
    # Each filter is checked against the values it can match: an unknown pool or decision
    # matched nothing and said "no indexed torrent matches", exit 0, as if the name were right.
    # Only the config knows the pools, so click's Choice cannot check --pool; --decision's values
    # come from the planner, imported only when it is given (that module costs ~40 ms at start).
    if pool is not None:
        _one_of(pool, [p.name for p in app.cfg.pools] + ["none"], "--pool")
    if decision is not None:
        from qbhook.decide.plan import ACTIONS

        _one_of(decision, [*ACTIONS, "none"], "--decision")
    from qbhook.catalog.queries import list_torrents

    data = list_torrents(
        app.cfg,
        app.open_catalog(writes=not offline),  # a sync writes the torrent index; --offline only reads
        app.clients,
        pool=pool,
        state=state,
        category=category,
        group=group,
        decision=decision,
        gone=gone,
        offline=offline,
    )
    echo_problems(data)

    def human(d):
        if not d["torrents"]:
            echo_shown("no indexed torrent matches")
        for r in d["torrents"]:
            pid = r["content_id"][:16] if r["content_id"] else f"(hashed {r['files_hashed']}/{r['files']})"
            dec = r["decision"] or "-"
            where = r["pool"] or ("unmapped: " + r["map_error"] if r["map_error"] else "no pool")
            echo_shown(
                f"{r['hash'][:12]} {r['state'] or '?':<11} {where:<8} group {(r['group'] or '-')[:12]} "
                f"payload {pid} {dec:<8} {shown(r['name'])}" + (" [gone]" if r["gone_at"] else "")
            )
        for name, s in d["index"].items():
            age = f"{s['age_s']:.0f} s ago" if s["age_s"] is not None else "never"
            echo_shown(f"index of {name}: synced {age} ({s['mode']})", err=True)

    app.emit(data, human)


def _one_of(value: str, known: list[str], option: str) -> None:
    """A usage error (exit 2) naming the known values unless ``value`` is one, worded as click's Choice."""
    if value not in known:
        names = ", ".join(f"'{shown(k)}'" for k in known)
        raise click.BadParameter(
            f"'{shown(value)}' is not one of {names}.",
            ctx=click.get_current_context(),
            param_hint=f"'{option}'",
        )
