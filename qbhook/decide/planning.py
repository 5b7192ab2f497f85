"""Planning a run: get the catalog ready (scan the pools, or reuse a recent full scan), pick
the torrents of the groups asked for, gather live facts, decide. What the CLI's ``plan``,
``apply`` and ``explain`` share; each says what the catalog rested on (``CatalogUse``).

Each command makes one call here: ``plan`` and ``apply`` ``plan_groups`` (a ``PlanRun``: the
plan, the snapshot it was decided on, what the catalog rested on), ``explain``
``explain_group`` (an ``ExplainResult``: decided on the torrent index when it can stand in,
else on the clients' listing; ``qbhook.decide.explain`` says why and shapes the answer).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from qbhook.catalog.indexer import try_sync_all
from qbhook.catalog.queries import last_full_scan_age
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex
from qbhook.clients.port import ClientPort
from qbhook.config import Config
from qbhook.decide.facts import Snapshot
from qbhook.decide.plan import Plan
from qbhook.errors import QbhookError, QbtError, UnknownGroup, UnknownTorrent
from qbhook.progress import Progress


@dataclass(frozen=True)
class CatalogUse:
    """What the catalog under a plan rests on, said on stderr and in ``--json`` (``catalog``).

    ``source``: ``scanned`` (the pools were walked now), ``catalog`` (a full scan younger than
    ``scan.max_age``, or a targeted plan), ``as-is`` (``--no-scan``). Whatever the source, the
    snapshot lstat-s every torrent file and every known link it decides on, and the executor
    re-checks before it unlinks: the catalog only says where the other links of an inode were.
    A link made since the last scan is unknown, so it counts as an outside link, which keeps
    the data where it is (never a reason to delete).
    """

    source: str
    reason: str
    full_scan_age_s: float | None
    # the clients whose torrent index the plan could not sync (``plan_run``): ``cannot sync NAME: ...``
    problems: tuple[QbhookError, ...] = ()

    def as_dict(self) -> dict:
        age = None if self.full_scan_age_s is None else round(self.full_scan_age_s, 1)
        out = {"source": self.source, "reason": self.reason, "full_scan_age_s": age}
        return {**out, "problems": [p.message for p in self.problems]} if self.problems else out


def ready_catalog(
    cfg: Config,
    catalog: Catalog,
    *,
    targeted: bool,
    scan: bool | None,
    max_age: float | None = None,
    progress: Progress | None = None,
) -> CatalogUse:
    """Scan the pools first, or not, and say why.

    ``scan`` True/False: the caller's explicit ``--scan``/``--no-scan``. None: a targeted
    plan (``--hash``/``--group``) re-stats only its groups' paths and never walks the pools,
    unless no full scan was ever made; a plan of everything uses the catalog when the last
    full scan is younger than ``max_age`` (default ``scan.max_age``), else scans first.
    """
    limit = cfg.scan.max_age if max_age is None else max_age
    age = last_full_scan_age(catalog, cfg.pools)
    if scan is False:
        use = CatalogUse("as-is", "catalog as is (--no-scan)", age)
    elif scan is True:
        use = CatalogUse("scanned", "pools scanned now (--scan)", age)
    elif age is None:
        use = CatalogUse("scanned", "pools scanned now: no full scan on record", None)
    elif targeted:
        use = CatalogUse(
            "catalog", f"catalog from a full scan {_ago(age)} ago; only these groups' files re-stat-ed, no walk", age
        )
    elif age <= limit:
        use = CatalogUse(
            "catalog",
            f"catalog from a full scan {_ago(age)} ago (scan.max_age {_ago(limit)}); every file decided on re-stat-ed",
            age,
        )
    else:
        use = CatalogUse(
            "scanned", f"pools scanned now: last full scan {_ago(age)} ago, older than scan.max_age {_ago(limit)}", age
        )
    if use.source == "scanned":
        # Imported here: explain and plan on a recent catalog never walk (start-up cost).
        from qbhook.catalog import scan as scanner

        for pool in cfg.pools:
            # through the module: one name to patch for whoever counts the walks (tests, benchmarks)
            scanner.scan_pool(catalog, pool, cfg.scan, progress=progress)
    return use


def _ago(seconds: float) -> str:
    s = max(seconds, 0.0)
    return (
        f"{s:.0f} s"
        if s < 120
        else f"{s / 60:.0f} min"
        if s < 7200
        else f"{s / 3600:.1f} h"
        if s < 172800
        else f"{s / 86400:.1f} d"
    )


def hashes_of_groups(catalog: Catalog, clients: Iterable[ClientPort], group_ids) -> list[str] | None:
    """The torrents of these payload groups, from the torrent index (synced first: one request
    per unchanged qBittorrent); None when a group is not in the index (plan everything then).

    A group is named by the id ``plan`` printed; the index knows it either as the group its
    files form now (``TorrentIndex.groups``) or as the one the planner last recorded.
    """
    try_sync_all(catalog, clients)  # unreachable: planning live fails with its own message
    idx = TorrentIndex(catalog.conn)
    groups = idx.groups()
    recorded = {(t.instance, t.hash): t.group_id for t in idx.torrents()}
    out: list[str] = []
    for gid in group_ids:
        g = gid.strip().lower()
        for known in (groups, recorded):
            ids = {v for v in known.values() if v and v.startswith(g)}
            if len(ids) == 1:
                out += [k[1] for k, v in known.items() if v in ids]
                break
        else:
            return None  # unknown to the index, or ambiguous: ``pick_groups`` says which
    return sorted(set(out))


def pick_groups(plan: Plan, group_ids: Iterable[str], hashes: Iterable[str] = ()) -> Plan:
    """``plan`` restricted to the groups named by id or by the start of one (``torrents`` prints
    12 characters of it), and to those holding a torrent of ``hashes``. A name no group of the
    plan has, or that begins two of them, is ``UnknownGroup``."""
    keep = {g.group_id for g in plan.groups if {h.lower() for h in hashes}.intersection(g.torrents)}
    for gid in group_ids:
        g = gid.strip().lower()
        ids = {p.group_id for p in plan.groups if p.group_id == g} or {
            p.group_id for p in plan.groups if g and p.group_id.startswith(g)
        }
        if not ids:
            raise UnknownGroup(f"no payload group {gid!r}: `qbhook torrents` lists each torrent's group")
        if len(ids) > 1:
            raise UnknownGroup(f"{gid!r} begins the ids of {len(ids)} payload groups: give more of it")
        keep |= ids
    return Plan(groups=[g for g in plan.groups if g.group_id in keep], created_at=plan.created_at)


def plan_run(
    cfg: Config,
    catalog: Catalog,
    clients: Iterable[ClientPort],
    *,
    hashes=None,
    scan: bool | None = True,
    progress: Progress | None = None,
) -> tuple[Snapshot, Plan, CatalogUse]:
    """Snapshot and plan (``hashes``: only their groups); ``scan``: see ``ready_catalog``.

    The snapshot lists the clients live; a torrent the index holds present that the listing
    lacks is missing since this listing (``Snapshot.missing``), and the index is synced then
    (``_record_unlisted``) so that it records the moment: the next plan counts the grace from
    it. The clients it could not sync are ``CatalogUse.problems``."""
    from qbhook.decide.planner import make_plan
    from qbhook.decide.snapshot import build_snapshot

    use = ready_catalog(cfg, catalog, targeted=bool(hashes), scan=scan, progress=progress)
    snap = build_snapshot(cfg, catalog, clients, hashes=hashes, progress=progress, hash_budget=cfg.scan.hash_budget)
    problems = _record_unlisted(catalog, clients, snap)
    return snap, make_plan(snap, cfg.policy), replace(use, problems=tuple(problems)) if problems else use


def _record_unlisted(catalog: Catalog, clients: Iterable[ClientPort], snap: Snapshot) -> list[QbhookError]:
    """Sync the index of the clients whose live listing lacked a torrent the index holds present;
    the clients it could not sync (``try_sync_all``).

    Without it such a torrent was "missing since now" at every plan (no sync had seen it go), so
    the grace never ran out, and a group sharing its files stayed for ever, its reason's time
    moving (R38). Only then: a sync by a command makes the next sweep of ``serve`` re-plan
    everything (the sync hands its changes to its caller once, ``worker._synced_since``), and
    the first sync of a client lists every torrent's files, which a plan of a client no sync
    has seen yet (no present row, so nothing missing) must not pay for. A torrent the index
    already saw go has its ``gone_at``: nothing to record.

    Never on a catalog opened for reading only: the plan is what was asked, the record only a
    help to the next one (R39); a catalog that turns out unwritable is a problem line."""
    if catalog.readonly:
        return []
    idx = TorrentIndex(catalog.conn)
    unlisted = {m.instance for m in snap.missing if idx.present_hashes(m.instance, [m.hash])}
    if not unlisted:
        return []
    _reports, errors = try_sync_all(catalog, [c for c in clients if c.name in unlisted])
    return errors


@dataclass(frozen=True)
class PlanRun:
    """A plan with what it was decided on: the snapshot (``plan --save`` keeps its facts) and
    what the catalog rested on (said on stderr, or in ``--json``'s ``catalog``)."""

    snapshot: Snapshot
    plan: Plan
    catalog_use: CatalogUse


def plan_groups(
    cfg: Config,
    catalog: Catalog,
    clients: Iterable[ClientPort],
    *,
    hashes: Iterable[str] = (),
    group_ids: Iterable[str] = (),
    scan: bool | None = None,
    progress: Progress | None = None,
) -> PlanRun:
    """``plan``'s and ``apply``'s decision: the groups of ``hashes`` and ``group_ids`` (none:
    every group), ``scan`` as ``ready_catalog`` takes it.

    Only the named groups' files are stat-ed; a group the torrent index does not know makes
    it a plan of everything (``hashes_of_groups``). With ``group_ids``, the plan holds only
    the named groups and those of ``hashes`` (``pick_groups``).
    """
    hashes = list(hashes)
    targets: list[str] | None = hashes
    group_ids = list(group_ids)
    if group_ids:
        found = hashes_of_groups(catalog, clients, group_ids)
        targets = None if found is None else targets + found
    snap, plan, use = plan_run(cfg, catalog, clients, hashes=targets or None, scan=scan, progress=progress)
    if group_ids:
        plan = pick_groups(plan, group_ids, hashes)
    return PlanRun(snap, plan, use)


@dataclass(frozen=True)
class ExplainResult:
    """``explain``'s answer (``data``, shaped by ``qbhook.decide.explain.explain_data``), or
    ``live_error``: the clients could not be listed, so only the torrent index can answer. The
    client's own error, kept whole: when the index cannot answer either, it is what the user
    is told (its exit code says "unreachable", not "bad input"). Never ``UnknownTorrent``: the
    clients answered that, and ``explain_group`` raises it (a wrong hash is bad input)."""

    data: dict | None
    live_error: QbtError | None = None


def explain_group(
    cfg: Config,
    catalog: Catalog,
    open_clients: Callable[[], Iterable[ClientPort]],
    torrent_hash: str,
    *,
    no_scan: bool = False,
    live: bool = False,
    max_scan_age: float | None = None,
    progress: Progress | None = None,
) -> ExplainResult:
    """Why ``torrent_hash``'s group gets its decision, decided now.

    The catalog is scanned first only when the last full scan is older than ``max_scan_age``
    (default ``scan.max_age``) and not ``no_scan``. The torrents come from the torrent index
    (``_decide_from_index``) unless ``live`` or the index cannot stand in; then from the
    clients' listing, and a client that cannot answer that is ``live_error``; clients that
    answered without the hash raise ``UnknownTorrent``.

    ``open_clients`` is called only when a client is asked (an index to sync, or a live
    listing): building the clients loads their libraries, which an answer from a recent index
    never needs (``tests/unit/test_startup.py``).
    """
    # explain changes nothing, so a recent catalog is enough: a link made since shows as a
    # link "outside the scanned pools" (counted, not named), never as no link.
    age = last_full_scan_age(catalog, cfg.pools)
    limit = cfg.scan.max_age if max_scan_age is None else max_scan_age
    scan = not no_scan and (age is None or age > limit)
    note = (
        "pools scanned now"
        if scan
        else "catalog as is (--no-scan)"
        if no_scan
        else f"catalog from a full scan {age:.0f} s ago; this group's files re-stat-ed"
    )
    decided = None if live else _decide_from_index(cfg, catalog, open_clients, torrent_hash, scan, limit, progress)
    if decided is None:
        try:
            snap, p, _use = plan_run(cfg, catalog, open_clients(), hashes=[torrent_hash], scan=scan, progress=progress)
        except UnknownTorrent:
            # A QbtError, but the clients answered: no such torrent. Not "no client could
            # answer", which the index may stand in for (and whose exit code says "unreachable").
            raise
        except QbtError as e:
            return ExplainResult(None, live_error=e)
        index = {"source": "clients", "reason": "torrents listed from the clients now"}
    else:
        snap, p, index = decided
    from qbhook.decide.explain import explain_data

    return ExplainResult(explain_data(catalog, snap, p, torrent_hash, {"catalog": note, "index": index}))


def _decide_from_index(
    cfg: Config,
    catalog: Catalog,
    open_clients: Callable[[], Iterable[ClientPort]],
    torrent_hash: str,
    scan: bool,
    limit: float,
    progress: Progress | None,
) -> tuple[Snapshot, Plan, dict] | None:
    """(snapshot, plan, what the torrents came from) decided on the torrent index, or None when
    the index cannot stand in (``qbhook.decide.explain``): the caller then asks the clients.

    An index older than ``limit`` (or never synced) is synced first: one request per unchanged
    qBittorrent. A client that cannot be reached then leaves the index as it was, and the
    answer says so; explain still answers, with every file stat-ed live.
    """
    from qbhook.decide.explain import GroupCatalog, indexed_group

    names = [c.name for c in cfg.clients]
    synced = TorrentIndex(catalog.conn).synced()
    now = time.time()
    problems: list[QbhookError] = []
    if any((synced.get(n) or {}).get("synced_at") is None or now - synced[n]["synced_at"] > limit for n in names):
        _reports, errors = try_sync_all(catalog, open_clients())
        problems = errors
    view = indexed_group(catalog, torrent_hash, names, [str(r) for r in cfg.seeding_roots])
    if view is None:
        return None
    from qbhook.decide.planner import make_plan
    from qbhook.decide.snapshot import build_snapshot

    ready_catalog(cfg, catalog, targeted=True, scan=scan, progress=progress)
    snap = build_snapshot(
        cfg,
        GroupCatalog(catalog),
        view.clients,
        hashes=[torrent_hash],
        infos=view.infos,
        progress=progress,
        hash_budget=cfg.scan.hash_budget,
        live=False,  # the group's torrents from the index: the index holds none they lack
    )
    now = time.time()
    ages = {n: None if at is None else round(now - at, 1) for n, at in view.synced_at.items()}
    said = ", ".join(f"{n} {'never synced' if a is None else f'synced {a:.0f} s ago'}" for n, a in ages.items())
    # the messages only: a hint in the middle of this line would be escaped (cli.plan prints them)
    reason = f"torrents from the index ({said}); files stat-ed now" + "".join(f"; {p.message}" for p in problems)
    index = {"source": "index", "reason": reason, "synced_age_s": ages, "problems": problems}
    return snap, make_plan(snap, cfg.policy), index
