"""Carrying out a plan, in one order for every caller: ``apply``, ``apply --plan``, ``converge`` and the sweep.

1. Unless it is a dry run, leftover views a rolled-back group left behind are removed first
   (each verified, ``move.leftovers``), so the plan is made from the pools as they are.
2. The plan source makes the plan: a fresh plan of the asked groups (``apply``), the convergence
   pass's plan (``converge``), a saved plan re-validated against fresh facts (``apply --plan``),
   the sweep's re-plan. It returns what its caller reports and the plan to apply, or None when
   there is nothing to apply.
3. The executor applies that plan (journal first; a dry run says what would run).

Command modules and the sweep call this instead of chaining the steps themselves: before,
``apply --plan --yes`` skipped step 1, and decide (``approved.apply_saved``) ran the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from qbhook.clients.port import ClientPort
from qbhook.decide.plan import Plan
from qbhook.move import leftovers

if TYPE_CHECKING:  # the executor is built by the caller; this module only hands it the plan
    from qbhook.move.executor import RunSummary

T = TypeVar("T")


@dataclass
class Applied(Generic[T]):
    planned: T  # what the plan source returned for its caller
    leftovers: list[dict]  # one result per leftover view handled (move.leftovers)
    summary: RunSummary | None  # None: the source had nothing to apply


def run_apply(
    cfg,
    catalog,
    clients: Iterable[ClientPort],
    executor,
    plan_source: Callable[[], tuple[T, Plan | None]],
    *,
    dry_run: bool,
    trigger: str,
    group_ids: Iterable[str] | None = None,
) -> Applied[T]:
    """Leftover views (not on a dry run), then ``plan_source()``, then the executor on its plan."""
    removed = [] if dry_run else leftovers.remove_leftover_views(cfg, catalog, clients)
    planned, plan = plan_source()
    if plan is None:
        return Applied(planned, removed, None)
    summary = executor.apply(plan, trigger=trigger, group_ids=group_ids, dry_run=dry_run)
    return Applied(planned, removed, summary)


def apply_planned(
    cfg, catalog, clients, executor, *, hashes=(), group_ids=(), scan=None, dry_run: bool, progress=None
) -> Applied:
    """``qbhook apply``: plan the asked groups (``decide.planning.plan_groups``) and apply them.
    ``planned`` is the PlanRun."""
    from qbhook.decide.planning import plan_groups

    def source():
        run = plan_groups(cfg, catalog, clients, hashes=hashes, group_ids=group_ids, scan=scan, progress=progress)
        return run, run.plan

    # The plan holds only the asked groups (``pick_groups``: ids as given, or their start).
    return run_apply(cfg, catalog, clients, executor, source, dry_run=dry_run, trigger="cli")


def apply_converged(cfg, catalog, clients, executor, *, scan=None, dry_run: bool, progress=None) -> Applied:
    """``qbhook converge``: the set-based convergence pass (``decide.converge_pass``), applied.
    ``planned`` is the ``ConvergeRun``."""
    from qbhook.decide.converge_pass import plan_convergence

    def source():
        run = plan_convergence(cfg, catalog, clients, scan=scan, progress=progress)
        return run, run.plan

    return run_apply(cfg, catalog, clients, executor, source, dry_run=dry_run, trigger="converge")


def apply_saved(
    cfg, catalog, clients, executor, saved, *, dry_run: bool, scan: bool = True, progress=None, trigger="approved-plan"
):
    """``qbhook apply --plan``: the saved plan's groups that still hold (``decide.approved.revalidate_saved``)
    are applied, the others refused as stale. Returns the ``approved.SavedRun``."""
    from qbhook.decide.approved import SavedRun, revalidate_saved

    def source():
        return revalidate_saved(cfg, catalog, clients, saved, scan=scan, progress=progress)

    done = run_apply(cfg, catalog, clients, executor, source, dry_run=dry_run, trigger=trigger)
    return SavedRun(saved.plan_id, done.planned, done.summary)
