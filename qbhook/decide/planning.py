"""Planning a run: get the catalog ready (scan the pools, or reuse a recent full scan), pick
the torrents of the groups asked for, gather live facts, decide. What the CLI's ``plan``,
``apply`` and ``explain`` share; each says what the catalog rested on (``CatalogUse``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from qbhook.catalog.indexer import try_sync_all
from qbhook.catalog.queries import last_full_scan_age
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex
from qbhook.clients.port import ClientPort
from qbhook.config import Config
from qbhook.decide.facts import Snapshot
from qbhook.decide.plan import Plan
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

    def as_dict(self) -> dict:
        age = None if self.full_scan_age_s is None else round(self.full_scan_age_s, 1)
        return {"source": self.source, "reason": self.reason, "full_scan_age_s": age}


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
        found = [k[1] for k, v in groups.items() if v == g] or [k[1] for k, v in recorded.items() if v == g]
        if not found:
            return None
        out += found
    return sorted(set(out))


def plan_run(
    cfg: Config,
    catalog: Catalog,
    clients: Iterable[ClientPort],
    *,
    hashes=None,
    scan: bool | None = True,
    progress: Progress | None = None,
) -> tuple[Snapshot, Plan, CatalogUse]:
    """Snapshot and plan (``hashes``: only their groups); ``scan``: see ``ready_catalog``."""
    from qbhook.decide.planner import make_plan
    from qbhook.decide.snapshot import build_snapshot

    use = ready_catalog(cfg, catalog, targeted=bool(hashes), scan=scan, progress=progress)
    snap = build_snapshot(cfg, catalog, clients, hashes=hashes, progress=progress, hash_budget=cfg.scan.hash_budget)
    return snap, make_plan(snap, cfg.policy), use
