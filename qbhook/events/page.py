"""The read-only status page at ``/``: server-side HTML with inline SVG charts.

Rules: no JavaScript, no external resource (works offline, and the Content-Security-Policy
forbids loading anything); every string that came from outside (torrent names, reasons,
errors, paths) goes through ``_t``, which blanks configured secrets and HTML-escapes, so a
torrent named ``<script>`` stays text. The page sits behind the webhook endpoints'
authentication; ``create_app`` applies it to every blueprint it is given (see ``views``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import sqlite3
import time
from collections.abc import Callable

from flask import Blueprint, Response
from markupsafe import Markup, escape

from qbhook.errors import QbhookError
from qbhook.events.status import (
    PendingGroup,
    PoolStatus,
    Status,
    StatusSource,
)
from qbhook.paths import shown
from qbhook.units import freed_bytes, human_bytes

Redact = Callable[[str], str]
log = logging.getLogger(__name__)

COLORS = {
    "library": "#2f6fb0",
    "duplicated": "#d98b19",
    "seed_only": "#3e9a5b",
    "other": "#8a6fb8",
    "uncatalogued": "#9aa3ad",
    "used": "#4b5866",
    "free": "#e6e9ed",
}
ACTION_CLASS = {
    "stay": "act-stay",
    "demote": "act-demote",
    "promote": "act-promote",
    "blocked": "act-blocked",
    "skip": "act-skip",
}
HEADERS = {
    # Nothing may load or run: no scripts, no remote fonts, no frames; inline styles only.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Seconds between reloads of the page, and of the 503 that stands in for it while the catalog
# cannot be read, so a tab left open on it comes back by itself once the catalog reads again.
REFRESH_S = 60


def blueprint(source: StatusSource, redact: Redact) -> Blueprint:
    bp = Blueprint("status_page", __name__)

    @bp.get("/")
    def index() -> Response:
        try:
            html = render(source.status(), redact)
        except (QbhookError, sqlite3.Error) as e:
            # Plain text has no meta refresh: the header does it (a scraper of /metrics needs none).
            page = unavailable(e, redact)
            page.headers["Refresh"] = str(REFRESH_S)
            return page
        return Response(html, status=200, mimetype="text/html", headers=HEADERS)

    return bp


def unavailable(err: Exception, redact: Redact) -> Response:
    """The catalog could not be read (missing, locked, corrupt): one line, no traceback. A
    QbhookError's message only: its hint is a line of its own (a damaged or unwritable catalog)."""
    what = err.message if isinstance(err, QbhookError) else str(err)
    log.error("status: cannot read the catalog: %s", what)
    return Response(
        redact(f"status unavailable: cannot read the catalog ({what})\n"),
        status=503,
        mimetype="text/plain",
        headers={"Cache-Control": "no-store"},
    )


# ---------------------------------------------------------------------------- rendering


def render(st: Status, redact: Redact) -> str:
    def t(value: object) -> Markup:
        # shown: a file name that is not UTF-8 (lone surrogates from os.fsdecode, kept through the
        # stored plan's JSON) made encoding the page a UnicodeEncodeError, a 500 for everyone.
        return escape(redact(shown(str(value))))

    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width, initial-scale=1">',
        f'<meta http-equiv=refresh content="{REFRESH_S}">',
        "<title>qbhook status</title><style>",
        _CSS,
        "</style></head><body><main>",
        "<header><h1>qbhook</h1>",
        f"<p class=muted>as of {t(_when(st.generated_at))} · refreshes every minute</p></header>",
        _summary(st, t),
        _needs(st, t),
        "<section><h2>Pools</h2>",
        *(_pool(p, t) for p in st.pools),
        "</section>",
        _pending(st, t),
        _runs(st, t),
        _queue(st, t),
        "</main></body></html>",
    ]
    return "".join(str(p) for p in parts)


def _summary(st: Status, t) -> str:
    q = st.queue
    if st.sweep is None:
        sweep = "never (run <code>qbhook sweep</code>)"
    else:
        took = f" in {st.sweep.seconds:.1f} s" if st.sweep.seconds is not None else ""
        sweep = f"{t(_when(st.sweep.at))} ({t(_ago(st.generated_at - st.sweep.at))}){took}"
    cells = [
        *_worker_cell(st, t),
        ("Last sweep", sweep),
        ("Queue", f"{q.get('pending', 0)} pending · {q.get('running', 0)} running"),
        ("Dead letters", str(q.get("dead", 0))),
    ]
    if st.unfinished_runs:
        ids = ", ".join(str(i) for i in st.unfinished_runs)
        cells.append(("Unfinished runs", f"<span class=warn>{ids}</span> (<code>qbhook resume</code>)"))
    body = "".join(f"<div><dt>{label}</dt><dd>{value}</dd></div>" for label, value in cells)
    return f"<section><dl class=facts>{body}</dl></section>"


def _worker_cell(st: Status, t) -> list[tuple[str, str]]:
    """The serving worker's health, its reason whole: the page is behind credentials (/healthz is not)."""
    w = st.worker
    if w is None:
        return []
    return [("Worker", f"{t(w.reason)}" if w.ok else f"<span class=warn>{t(w.reason)}</span>")]


def _needs(st: Status, t) -> str:
    """What needs a person: the problems `qbhook status` lists (one source: ``status.needs_person``)."""
    if not st.needs:
        return ""
    items = "".join(f"<li>{t(n)}</li>" for n in st.needs)
    return f"<section><h2>Needs you</h2><ul class=needs>{items}</ul></section>"


def _orphaned(p: PoolStatus, now: float | None = None) -> str:
    """The last `qbhook orphans` run's figures for this pool, with their age; "unknown" when it never ran."""
    if p.orphaned_bytes is None or p.orphans_at is None:
        return "unknown"  # `qbhook orphans` never ran: only it computes this
    age = max((time.time() if now is None else now) - p.orphans_at, 0.0)
    return (
        f"{human_bytes(p.orphans_reclaimable or 0)} reclaimable · {human_bytes(p.orphans_library or 0)} "
        f"used by a library ({_age(age)} ago, qbhook orphans)"
    )


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _pool(p: PoolStatus, t) -> str:
    head = f"<h3>{t(p.name)} <span class=tag>{t(p.role)}</span></h3><p class='muted path'>{t(p.path)}</p>"
    if p.error or p.size is None or p.free is None:
        return f"<article class=pool>{head}<p class=warn>cannot read size: {t(p.error or 'unknown')}</p></article>"
    used = p.used or 0
    stats = f"<p class=nums><b>{human_bytes(p.free)}</b> free of {human_bytes(p.size)} · {_pct(used, p.size)} used</p>"
    parts = [(s.key, s.label, s.bytes) for s in p.segments]
    if not parts:
        parts = [("uncatalogued", "used (no catalog yet)", used)]
    legend = [_legend_item(COLORS[key], label, human_bytes(size), zero=not size) for key, label, size in parts]
    if p.blocked_groups:
        size = human_bytes(p.blocked_bytes) if p.blocked_bytes is not None else "size unknown"
        legend.append(_legend_item(None, "blocked", f"{p.blocked_groups} group(s), {size}"))
    else:
        legend.append(_legend_item(None, "blocked", "none", zero=True))
    legend.append(_legend_item(None, "orphaned", _orphaned(p), zero=p.orphaned_bytes == 0))
    if p.hashed_bytes is not None and p.unhashed_bytes is not None:
        legend.append(
            _legend_item(None, "hashed", f"{human_bytes(p.hashed_bytes)} · {human_bytes(p.unhashed_bytes)} not yet")
        )
    return (
        f"<article class=pool>{head}{stats}"
        f"{_svg_bar(p.name + ' capacity', [('used', 'used', used), ('free', 'free', p.free)], 10, t)}"
        "<p class=caption>Used space by kind</p>"
        f"{_svg_bar(p.name + ' used space', parts, 28, t)}"
        f"<ul class=legend>{''.join(legend)}</ul></article>"
    )


def _svg_bar(title: str, parts: list[tuple[str, str, int]], height: int, t) -> str:
    """A horizontal stacked bar, the parts in order, scaled to their sum."""
    total = sum(size for _k, _l, size in parts if size > 0)
    width, x, rects = 1000.0, 0.0, []
    for key, label, size in parts:
        if size <= 0 or total <= 0:
            continue
        w = min(width * size / total, width - x)
        rects.append(
            f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" fill="{COLORS[key]}">'
            f"<title>{t(label)}: {human_bytes(size)}</title></rect>"
        )
        x += w
    if not rects:
        rects.append(f'<rect x="0" y="0" width="1000" height="{height}" fill="{COLORS["free"]}"/>')
    label = f"{title}: " + ", ".join(f"{lbl} {human_bytes(b)}" for _k, lbl, b in parts)
    return (
        f'<svg class=bar viewBox="0 0 1000 {height}" preserveAspectRatio="none" role="img" '
        f'style="height:{height}px" aria-label="{t(label)}">{"".join(rects)}</svg>'
    )


def _legend_item(color: str | None, label: str, value: str, *, zero: bool = False) -> str:
    swatch = f"<i style='background:{color}'></i>" if color else "<i class=none></i>"
    return f"<li{' class=zero' if zero else ''}>{swatch}<span>{escape(label)}</span><b>{escape(value)}</b></li>"


def _pending(st: Status, t) -> str:
    out = ["<section><h2>Pending plan</h2>"]
    sw = st.sweep
    if sw is None:
        out.append("<p class=muted>No sweep has run yet, so there is no plan.</p>")
        out.append(_last_event(st, t))
        out.append("</section>")
        return "".join(out)
    counts = " · ".join(f"{n} {t(a)}" for a, n in sw.decisions.items() if n)
    out.append(
        f"<p class=muted>From the sweep of {t(_when(sw.at))}: {counts or 'no groups'}; "
        f"{human_bytes(sw.bytes_to_copy)} to copy, {human_bytes(sw.bytes_freed)} to free.</p>"
    )
    if not sw.pending:
        out.append("<p>Nothing to do: every group is where it belongs.</p>")
    else:
        out.append("<ol class=plan>")
        out.extend(_group(g, t) for g in sw.pending)
        out.append("</ol>")
        if sw.pending_total > len(sw.pending):
            out.append(
                f"<p class=muted>… and {sw.pending_total - len(sw.pending)} more (see <code>qbhook status</code>).</p>"
            )
    out.append(_last_event(st, t))
    out.append("</section>")
    return "".join(out)


def _last_event(st: Status, t) -> str:
    """The worker's plan for the newest event job, when it is newer than the sweep."""
    ev = st.last_event
    if ev is None or (st.sweep is not None and ev.at <= st.sweep.at):
        return ""
    job = f" #{ev.job}" if ev.job is not None else ""
    done = " and applied it" if ev.applied else ""
    out = [
        "<h3 class=sub>Latest event</h3>",
        f"<p class=muted>Job{job} at {t(_when(ev.at))}: the worker planned {len(ev.groups)} group(s){done}.</p>",
    ]
    if ev.note:
        out.append(f"<p class=muted>{t(ev.note)}</p>")
    if ev.groups:
        out.append("<ol class=plan>")
        out.extend(_group(g, t) for g in ev.groups)
        out.append("</ol>")
    return "".join(out)


def _group(g: PendingGroup, t) -> str:
    names = ", ".join(str(t(n)) for n in g.names[:3]) + (f" +{len(g.names) - 3} more" if len(g.names) > 3 else "")
    route = ""
    if g.source_pool and g.target_pool:
        route = f"{t(g.source_pool)} → {t(g.target_pool)}"
    elif g.source_pool:
        route = f"on {t(g.source_pool)}"
    sizes = []
    if g.payload_bytes is not None:
        sizes.append(human_bytes(g.payload_bytes))
    if g.bytes_to_copy:
        sizes.append(f"copy {human_bytes(g.bytes_to_copy)}")
    if g.bytes_freed:
        sizes.append(f"frees {human_bytes(g.bytes_freed)}")
    meta = " · ".join(x for x in [route, *sizes] if x)
    outcome = ""
    if g.outcome:
        outcome = f" <span class='tag out-{t(g.outcome)}'>since then: {t(g.outcome)}</span>"
        if g.outcome_reason:
            outcome += f" <span class=muted>{t(g.outcome_reason)}</span>"
    cls = ACTION_CLASS.get(g.action, "")
    return (
        f"<li><span class='badge {cls}'>{t(g.action)}</span> <b class=name>{names}</b>{outcome}"
        f"<div class=reason>{t(g.reason)}</div>" + (f"<div class=muted>{meta}</div>" if meta else "") + "</li>"
    )


def _run_cells(r) -> str:
    """A run's copied, freed and groups cells; a quarantine run's are what it held (its summary
    counts files held, not groups nor bytes freed)."""
    if r.orphans_held is not None:
        failed = f" / {r.orphans_failed} failed" if r.orphans_failed else ""
        return (
            f"<td class=num>-</td><td class=num>{human_bytes(r.bytes_held)} held</td>"
            f"<td class='num wide'>{r.orphans_held} file(s) held{failed}</td>"
        )
    return (
        f"<td class=num>{human_bytes(r.bytes_copied)}</td>"
        f"<td class=num>{freed_bytes(r.bytes_freed, r.bytes_freed_at_least)}</td>"
        f"<td class='num wide'>{r.groups_done}{f' / {r.groups_failed} failed' if r.groups_failed else ''}</td>"
    )


def _runs(st: Status, t) -> str:
    if not st.runs:
        return "<section><h2>Recent runs</h2><p class=muted>No runs yet.</p></section>"
    rows = "".join(
        f"<tr><td>{r.id}</td><td><span class='tag out-{t(r.status)}'>{t(r.status)}</span></td>"
        f"<td class=wide>{t(r.trigger or '-')}</td><td>{t(_when(r.started_at, short=True))}</td>{_run_cells(r)}</tr>"
        for r in st.runs
    )
    return (
        "<section><h2>Recent runs</h2><div class=scroll><table><thead><tr><th>#</th><th>outcome</th>"
        "<th class=wide>trigger</th><th>started</th><th class=num>copied</th><th class=num>freed</th>"
        "<th class='num wide'>groups</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def _queue(st: Status, t) -> str:
    q = st.queue
    counts = " · ".join(f"{q.get(k, 0)} {k}" for k in ("pending", "running", "done", "dead"))
    out = [f"<section><h2>Event queue</h2><p>{counts}</p>"]
    if st.dead_letters:
        out.append("<h3>Dead letters</h3><ul class=dead>")
        for d in st.dead_letters:
            out.append(
                f"<li><b>#{d.id}</b> {t(d.key)} <span class=muted>({t(', '.join(d.kinds))}, "
                f"{d.attempts} tries, {t(_when(d.at))})</span><div class=reason>{t(d.error or '')}</div></li>"
            )
        out.append("</ul><p class=muted>Retry one with <code>qbhook queue retry ID</code>.</p>")
    out.append("</section>")
    return "".join(out)


# ---------------------------------------------------------------------------- formatting


def _when(ts: float | None, *, short: bool = False) -> str:
    if not ts:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M UTC")


def _ago(seconds: float) -> str:
    s = max(int(seconds), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return "just now"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


_CSS = """
:root{--fg:#1d2329;--muted:#5f6b76;--bg:#f5f7f9;--card:#fff;--line:#dde2e7}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:960px;margin:0 auto;padding:12px}
header h1{margin:4px 0 0;font-size:1.5rem}
h2{font-size:1.15rem;margin:22px 0 8px}
h3{font-size:1rem;margin:0 0 2px}
section>article,.facts,.plan li,.dead li,.needs li,table{background:var(--card);border:1px solid var(--line);border-radius:8px}
.muted{color:var(--muted)}
.path{margin:0 0 6px;font-size:.85rem;word-break:break-all}
.warn{color:#b3261e;font-weight:600}
code{background:#eef1f4;padding:0 4px;border-radius:4px}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(180px,1fr));gap:8px;padding:10px;margin:8px 0}
.facts dt{font-size:.8rem;color:var(--muted)}.facts dd{margin:0;font-weight:600}
.pool{padding:12px;margin:0 0 10px}
.nums{margin:4px 0 8px}
.bar{display:block;width:100%;border-radius:5px;overflow:hidden;background:#e6e9ed}
.sub{margin:16px 0 2px}
.caption{margin:10px 0 4px;font-size:.8rem;color:var(--muted)}
.legend li.zero{color:var(--muted)}.legend li.zero b{font-weight:400}
.legend{list-style:none;padding:0;margin:10px 0 0;display:grid;grid-template-columns:repeat(auto-fit,minmax(230px,1fr));gap:4px 16px}
.legend li{display:flex;align-items:center;gap:8px;font-size:.9rem}
.legend i{width:12px;height:12px;border-radius:3px;flex:none}
.legend i.none{border:1px dashed var(--muted)}
.legend b{margin-left:auto;font-weight:600;white-space:nowrap}
.tag{white-space:nowrap;font-size:.75rem;padding:1px 6px;border-radius:10px;background:#eef1f4;color:var(--muted);font-weight:500}
.plan,.dead,.needs{list-style:none;padding:0;margin:0}
.plan li,.dead li,.needs li{padding:10px 12px;margin:0 0 6px;overflow-wrap:anywhere}
.needs li{border-left:4px solid #b3261e}
.reason{margin:2px 0}
.badge{display:inline-block;min-width:64px;text-align:center;font-size:.75rem;font-weight:700;text-transform:uppercase;padding:2px 6px;border-radius:4px;color:#fff;background:#6b7785}
.act-demote{background:#2f6fb0}.act-promote{background:#3e9a5b}.act-blocked{background:#b3261e}.act-skip{background:#8a6fb8}
.out-done{background:#dff0e3;color:#1e6b34}.out-failed,.out-rolled_back{background:#f8dcda;color:#8c1d18}
.out-running,.out-interrupted{background:#fdf0d5;color:#7a5a00}
.scroll{overflow-x:auto}
table{border-collapse:separate;border-spacing:0;width:100%;font-size:.9rem}
th,td{padding:6px 10px;text-align:left;border-bottom:1px solid var(--line);white-space:nowrap}
tr:last-child td{border-bottom:0}
td.num,th.num{text-align:right}
@media (max-width:520px){main{padding:8px}.badge{min-width:0}body{font-size:14px}.wide{display:none}th,td{padding:6px}}
"""
