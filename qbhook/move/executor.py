"""Carries out a Plan, one payload group at a time, every step journaled before it acts.

Order of a group's steps (the planner's contract, qbhook/decide/plan.py): build the view
on the target pool (copy/link/mkempty), prove it from the host side
(verify_view), move each torrent onto it (relocate), prove qBittorrent agrees
(verify_group), then remove the old links (delete, prune_dirs) and tag.

Safety rules this module enforces:

* nothing is deleted before every torrent of the group is verified at its new
  place; until the first delete, any failure moves the group's torrents back to
  where they were (their old files are untouched), so a failed group ends exactly
  as it started, plus an unused view on the target pool;
* a torrent is relocated only if it is complete and stable, its view was
  verified in this run, and no other relocation is in flight (one at a time:
  qBittorrent's move queue is sequential anyway);
* an incomplete torrent is never left running; a torrent is started again only
  after its recheck ended at 100%;
* every wait polls observed state with backoff against a size-based budget, and
  is resumable: after a crash, ``resume`` re-reads the world for the step that was
  ``intended`` and waits for a move in flight instead of issuing a second one.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from qbhook.decide.plan import GroupPlan, Plan, Step
from qbhook.errors import QbhookError, QbtError, UnsafeOperation, VerificationFailed
from qbhook.move import fsops
from qbhook.move.journal import Journal, RunRow, StepRow
from qbhook.move.locks import executor_lock, group_lock

__all__ = ["Executor", "GroupOutcome", "RunSummary", "relocate_budget"]

_log = logging.getLogger(__name__)

EXIT_GROUP_FAILED = 5
EXIT_BUSY = 75

BAD_STATES = frozenset({"error", "missingFiles"})


# Test-only: ``QBHOOK_TEST_CRASH_AT=<seq>:<point>`` SIGKILLs this process when the executor
# reaches hook ``point`` (before | after_intend | after_act | poll) of step ``seq``, so the
# integration tests can crash a real ``qbhook apply`` at an exact journal step. Unset: no effect.
CRASH_ENV = "QBHOOK_TEST_CRASH_AT"


def _env_crash_hook() -> Callable[[str, str, int, Step], None] | None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return None
    seq_s, _sep, point = spec.partition(":")
    want_seq, want_point = int(seq_s), point or "after_intend"

    def hook(p: str, _gid: str, seq: int, _step: Step) -> None:
        if p == want_point and seq == want_seq:
            os.kill(os.getpid(), signal.SIGKILL)
    return hook


def relocate_budget(size: int, base_s: float, rate_bps: float) -> float:
    """Seconds a move + recheck of ``size`` bytes may take before we call it failed."""
    return base_s + max(int(size or 0), 0) / rate_bps


def _norm(path: str | None) -> str:
    if not path:
        return ""
    return os.path.normpath(str(path))


# --------------------------------------------------------------------------- results


@dataclass
class GroupOutcome:
    group_id: str
    action: str
    status: str                      # done | failed | rolled_back | busy | planned
    reason: str | None = None
    bytes_copied: int = 0
    bytes_freed: int = 0
    torrents_relocated: int = 0
    needs_attention: bool = False    # rollback could not finish: resume will retry it
    steps: list[dict] = field(default_factory=list)   # dry run: what would run

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "rolled_back")


@dataclass
class RunSummary:
    run_id: int | None
    dry_run: bool = False
    status: str = "done"
    groups: list[GroupOutcome] = field(default_factory=list)

    @property
    def bytes_copied(self) -> int:
        return sum(g.bytes_copied for g in self.groups)

    @property
    def bytes_freed(self) -> int:
        return sum(g.bytes_freed for g in self.groups)

    @property
    def torrents_relocated(self) -> int:
        return sum(g.torrents_relocated for g in self.groups)

    @property
    def groups_done(self) -> list[str]:
        return [g.group_id for g in self.groups if g.status == "done"]

    @property
    def groups_failed(self) -> dict[str, str]:
        return {g.group_id: g.reason or g.status for g in self.groups if g.failed}

    @property
    def groups_busy(self) -> dict[str, str]:
        return {g.group_id: g.reason or "busy" for g in self.groups if g.status == "busy"}

    @property
    def exit_code(self) -> int:
        if self.groups_failed:
            return EXIT_GROUP_FAILED
        if self.groups_busy:
            return EXIT_BUSY
        return 0

    def counters(self) -> dict:
        return {"bytes_copied": self.bytes_copied, "bytes_freed": self.bytes_freed,
                "torrents_relocated": self.torrents_relocated, "groups_done": self.groups_done,
                "groups_failed": self.groups_failed, "groups_busy": self.groups_busy}

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "dry_run": self.dry_run, "status": self.status, **self.counters(),
                "groups": [asdict(g) for g in self.groups]}


# --------------------------------------------------------------------------- per-group state


@dataclass
class _Reloc:
    """One relocation of this run, with what is needed to undo it."""
    seq: int
    step_id: int
    status: str                 # journal status of its step: intended | done | failed | undone
    torrent: str
    instance: str
    from_path: str
    to_path: str
    size: int
    observed: dict              # the torrent as first seen, before we touched it


@dataclass
class _GroupRun:
    run_id: int
    plan: GroupPlan
    outcome: GroupOutcome
    views: set = field(default_factory=set)          # (instance, torrent, save_path) verified in this run
    relocs: list[_Reloc] = field(default_factory=list)
    deletes_started: bool = False
    synced: bool = False


class _Failure(Exception):
    """A step failed; the group is already closed (rolled back, or marked failed)."""


# --------------------------------------------------------------------------- executor


class Executor:
    def __init__(self, cfg, catalog, clients, journal: Journal, *, log: logging.Logger | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 hook: Callable[[str, str, int, Step], None] | None = None,
                 lock_wait: bool | float = False, group_lock_wait: bool | float = 30.0,
                 relocate_base_s: float = 300.0, relocate_rate_bps: float = 50e6,
                 poll_initial_s: float = 1.0, poll_max_s: float = 15.0, settle_polls: int = 2,
                 recheck_grace_s: float = 60.0, stop_while_moving: bool = True):
        self.cfg = cfg
        self.catalog = catalog
        self.clients = clients
        self.journal = journal
        self.log = log or _log
        self.sleep = sleep
        self.clock = clock
        self.hook = hook if hook is not None else _env_crash_hook()
        self.lock_wait = lock_wait
        self.group_lock_wait = group_lock_wait
        self.relocate_base_s = relocate_base_s
        self.relocate_rate_bps = relocate_rate_bps
        self.poll_initial_s = poll_initial_s
        self.poll_max_s = poll_max_s
        # A move into pre-made files is followed by a recheck that may start a poll or
        # two later: require the finished state on consecutive polls.
        self.settle_polls = max(1, settle_polls)
        self.recheck_grace_s = recheck_grace_s
        # A stopped torrent cannot download during the recheck at its new place, so a
        # recheck under 100% can never write into the view (whose inodes may be
        # library files on a promote). It is started again only after 100%.
        self.stop_while_moving = stop_while_moving
        # fsops acts only below these, through verified folder descriptors: writes and deletes
        # below a seeding root; link donors and kept copies may also live elsewhere in a pool.
        self.seeding_roots = tuple(cfg.seeding_roots)
        self.roots = self.seeding_roots + tuple(p.path for p in cfg.pools)

    # ------------------------------------------------------------------ entry points

    def apply(self, plan: Plan, *, trigger: str = "cli", group_ids: Iterable[str] | None = None,
              dry_run: bool = False, allow_unfinished: bool = False) -> RunSummary:
        wanted = set(group_ids) if group_ids is not None else None
        groups = [g for g in plan.groups if g.actionable and (wanted is None or g.group_id in wanted)]
        if dry_run:
            return self._dry_run(groups)
        if not groups:
            return RunSummary(None)
        sub = Plan(groups=groups, created_at=plan.created_at)
        with executor_lock(self.cfg, self.lock_wait, sleep=self.sleep, clock=self.clock):
            pending = [r.id for r in self.journal.unfinished_runs()]
            if pending and not allow_unfinished:
                # A half-done group (view built, some torrents moved) must be finished or
                # rolled back by its own journal before a new plan is laid over it.
                raise UnsafeOperation(f"run(s) {', '.join(map(str, pending))} did not finish",
                                      hint="run `qbhook resume` first (it finishes or rolls back what was in flight)")
            run_id = self.journal.start_run(sub.to_dict(), trigger)
            self.log.info("run %d: %d group(s)", run_id, len(groups))
            return self._execute(run_id, sub, {})

    def resume(self, run_id: int | None = None) -> list[RunSummary]:
        """Finish unfinished runs: re-check the step that was in flight, then carry on."""
        with executor_lock(self.cfg, self.lock_wait, sleep=self.sleep, clock=self.clock):
            if run_id is not None:
                try:
                    runs = [self.journal.run(run_id)]
                except KeyError:
                    raise QbhookError(f"there is no run {run_id} in the journal") from None
                if runs[0].status not in ("running", "interrupted"):
                    raise QbhookError(f"run {run_id} is {runs[0].status}: nothing to resume")
            else:
                runs = self.journal.unfinished_runs()
            out = []
            for r in runs:
                if not self._orphaned(r, explicit=run_id is not None):
                    continue
                self.journal.adopt_run(r.id)
                rows = {row.seq: row for row in self.journal.steps(r.id)}
                self.log.info("resuming run %d (%d step(s) journaled)", r.id, len(rows))
                out.append(self._execute(r.id, Plan.from_dict(r.plan), rows))
            return out

    def _orphaned(self, r: RunRow, explicit: bool) -> bool:
        if r.status == "interrupted" or explicit:
            return True
        if r.host and r.host != socket.gethostname():
            self.log.warning("run %d belongs to host %s; resume it there (or name it: qbhook resume --run %d)",
                             r.id, r.host, r.id)
            return False
        # We hold the executor lock, so our own pid's run is a crashed attempt of this process.
        if r.pid is None or r.pid == os.getpid() or not fsops.pid_alive(r.pid):
            return True
        self.log.warning("run %d: its pid %d is alive (reused?); resume it by name: qbhook resume --run %d",
                         r.id, r.pid, r.id)
        return False

    # ------------------------------------------------------------------ run

    def _execute(self, run_id: int, plan: Plan, rows: dict[int, StepRow]) -> RunSummary:
        summary = RunSummary(run_id)
        seq = 0
        try:
            for g in plan.groups:
                numbered = list(enumerate(g.steps, start=seq))
                seq += len(g.steps)
                summary.groups.append(self._group(run_id, g, numbered, rows))
        except (KeyboardInterrupt, SystemExit):
            summary.status = "interrupted"
            self.journal.finish_run(run_id, "interrupted", summary.counters())
            raise
        if any(g.needs_attention for g in summary.groups):
            summary.status = "interrupted"       # resume retries the unfinished rollback
        elif summary.groups_failed:
            summary.status = "failed"
        self.journal.finish_run(run_id, summary.status, summary.counters())
        if self.cfg.policy.grace_period > 0:
            self._purge_holding()
        return summary

    def _purge_holding(self) -> None:
        """Purge the held links whose grace period is over: only those the journal recorded."""
        held = [fsops.HeldLink(path, since, ino, key) for key, path, since, ino in self.journal.held_links()]
        try:
            fsops.purge_holding(self.seeding_roots, self.cfg.policy.grace_period, held=held,
                                on_purged=lambda h: self.journal.mark_purged(h.key))
        except (QbhookError, OSError) as e:
            # The run itself is done; what could not be purged stays journaled for the next run.
            self.log.warning("holding purge: %s", e)

    def _group(self, run_id: int, g: GroupPlan, numbered: list[tuple[int, Step]],
               rows: dict[int, StepRow]) -> GroupOutcome:
        outcome = GroupOutcome(g.group_id, g.action, "done")
        try:
            lock = group_lock(self.cfg, g.group_id, self.group_lock_wait, sleep=self.sleep, clock=self.clock).acquire()
        except QbhookError as e:
            outcome.status, outcome.reason = "busy", str(e)
            # A resumed group with journaled steps must not be forgotten: keep the run open.
            outcome.needs_attention = any(seq in rows for seq, _s in numbered)
            return outcome
        try:
            st = _GroupRun(run_id, g, outcome)
            self.journal.set_group(g.group_id, run_id, "running")
            mine = [(seq, step, rows.get(seq)) for seq, step in numbered]
            failed = next((row for _s, _st, row in mine if row is not None and row.status == "failed"), None)
            if failed is not None:
                # The group had already failed when the run stopped: only the rollback may remain.
                self._replay_failed(st, mine)
                self._fail(st, failed.error or "failed earlier in this run")
                return outcome
            relocated = {(r.args.get("instance"), r.args.get("torrent")) for _s, _st, r in mine
                         if r is not None and r.kind == "relocate" and r.status == "done"}
            for i, (seq, step, row) in enumerate(mine):
                if row is not None and row.status == "done" and not self._redo(step, relocated, mine[i + 1:]):
                    self._replay(st, seq, step, row)
                    continue
                if row is not None and row.kind == "delete":
                    st.deletes_started = True   # it may have unlinked before the crash
                self._run_step(st, seq, step, row)
            self.journal.set_group(g.group_id, run_id, "done")
            self.log.info("group %s done", g.group_id)
        except _Failure:
            pass
        finally:
            lock.release()
        return outcome

    @staticmethod
    def _redo(step: Step, relocated: set, later: list) -> bool:
        # Read-only checks are cheap to repeat (cached hashes make a verified view cost a
        # stat per file) and the world may have changed while the run was down.
        if step.kind == "verify_view":
            return (step.args.get("instance"), step.args.get("torrent")) not in relocated
        if step.kind == "verify_group":
            return any(s.kind == "delete" and (r is None or r.status != "done") for _q, s, r in later)
        return False

    def _replay(self, st: _GroupRun, seq: int, step: Step, row: StepRow) -> None:
        """Account for a step a previous attempt of this run finished."""
        res = row.result or {}
        a = step.args
        if step.kind == "copy":
            st.outcome.bytes_copied += int(res.get("bytes_written", 0))
        elif step.kind == "verify_view":
            st.views.add((a["instance"], a["torrent"], _norm(a["save_path"])))
        elif step.kind == "relocate":
            st.relocs.append(self._reloc_from_row(seq, row))
            st.outcome.torrents_relocated += 1
        elif step.kind == "delete":
            st.deletes_started = True
            st.outcome.bytes_freed += int(res.get("bytes_freed", 0))

    def _replay_failed(self, st: _GroupRun, mine) -> None:
        for seq, step, row in mine:
            if row is None:
                continue
            if step.kind == "relocate" and row.status in ("done", "failed"):
                st.relocs.append(self._reloc_from_row(seq, row))
            elif step.kind == "delete":
                # A failed delete raised before unlinking, unless what failed came after it:
                # the world (is the path still there?) decides, not the row.
                gone = not os.path.lexists(step.args["path"])
                st.deletes_started = st.deletes_started or row.status in ("done", "intended") or gone
            elif step.kind == "copy" and row.status == "done":
                st.outcome.bytes_copied += int((row.result or {}).get("bytes_written", 0))

    @staticmethod
    def _reloc_from_row(seq: int, row: StepRow) -> _Reloc:
        a = row.args
        return _Reloc(seq, row.id, row.status, a["torrent"], a["instance"], _norm(a["from_path"]),
                      _norm(a["to_path"]), int(a.get("size") or 0), dict(a.get("_observed") or {}))

    def _run_step(self, st: _GroupRun, seq: int, step: Step, row: StepRow | None) -> None:
        gid = st.plan.group_id
        self._hook("before", gid, seq, step)
        args = dict(step.args)
        observe_error = None
        if step.kind == "relocate":
            if row is not None and row.args.get("_observed"):
                args["_observed"] = row.args["_observed"]
            else:
                # Read-only, so it may precede the intent; the intent then records what we saw
                # (running or not, where) for whoever has to undo this after a crash.
                try:
                    args["_observed"] = self._observe(step.args)
                except (QbhookError, OSError) as e:
                    observe_error = e
        step_id = self.journal.intend(st.run_id, seq, gid, step.kind, args)
        self._hook("after_intend", gid, seq, step)
        try:
            if observe_error is not None:
                raise observe_error
            result = self._act(st, seq, step_id, step, args)
        except (QbhookError, OSError) as e:
            reason = f"{step.kind} failed: {e}"
            self.log.warning("group %s: %s", gid, reason)
            self.journal.failed(step_id, str(e))
            self._fail(st, reason)
            raise _Failure(reason) from e
        except Exception as e:  # a bug must still leave the group safe
            reason = f"{step.kind} failed with an internal error: {type(e).__name__}: {e}"
            self.log.error("group %s: %s\n%s", gid, reason, traceback.format_exc())
            self.journal.failed(step_id, reason)
            self._fail(st, reason)
            raise _Failure(reason) from e
        self._hook("after_act", gid, seq, step)
        self.journal.done(step_id, result)
        for r in st.relocs:
            if r.step_id == step_id:
                r.status = "done"

    def _hook(self, point: str, gid: str, seq: int, step: Step) -> None:
        if self.hook is not None:
            self.hook(point, gid, seq, step)

    # ------------------------------------------------------------------ failure

    def _fail(self, st: _GroupRun, reason: str) -> None:
        """Close a failed group: undo its relocations unless deletes have begun."""
        o = st.outcome
        o.status, o.reason = "failed", reason
        if st.deletes_started:
            # Old links are partly gone: the new place is the only complete one, and it
            # was verified (verify_group precedes every delete). Stay there.
            o.reason = f"{reason} (after deletes began; torrents stay at their verified new place)"
            self.journal.set_group(st.plan.group_id, st.run_id, "failed", o.reason)
            return
        problems = []
        for r in reversed(st.relocs):
            if r.status == "undone":
                continue
            try:
                result = self._undo_relocation(r)
            except (QbhookError, OSError) as e:
                problems.append(f"{r.torrent}: {e}")
                continue
            if r.status == "done":
                self.journal.undone(r.step_id, result)
                r.status = "undone"
        o.torrents_relocated = sum(1 for r in st.relocs if r.status == "done")
        if problems:
            o.needs_attention = True
            o.reason = f"{reason}; ROLLBACK INCOMPLETE ({'; '.join(problems)}): run qbhook resume"
            self.journal.set_group(st.plan.group_id, st.run_id, "failed", o.reason)
        else:
            o.status = "rolled_back"
            self.journal.set_group(st.plan.group_id, st.run_id, "rolled_back", reason)
            self._record_leftover_views(st)

    def _record_leftover_views(self, st: _GroupRun) -> None:
        """Journal each view file this group made on its target pool, for ``qbhook.leftovers`` to remove.

        Only what this run made (copied, linked, created), with the inode it has now: the
        remover later acts only on that same inode, and only while its content lives elsewhere.
        """
        made = {"copy": "copied", "link": "linked", "mkempty": "created"}
        for row in self.journal.steps(st.run_id):
            if (row.group_id != st.plan.group_id or made.get(row.kind) is None or row.status != "done"
                    or (row.result or {}).get("status") != made[row.kind]):
                continue
            dst = row.args.get("dst")
            try:
                lst = os.lstat(dst)
            except (OSError, TypeError):
                continue
            self.journal.record_leftover(st.run_id, st.plan.group_id, {
                "path": dst, "ino": lst.st_ino, "size": lst.st_size, "kind": row.kind,
                "keep": row.args.get("src"), "blake3": row.args.get("blake3")})

    # ------------------------------------------------------------------ steps

    def _act(self, st: _GroupRun, seq: int, step_id: int, step: Step, args: dict) -> dict:
        kind = step.kind
        if kind == "copy":
            return self._copy(st, args)
        if kind == "link":
            return self._link(st, args)
        if kind == "mkempty":
            res = fsops.make_empty(args["dst"], roots=self.roots)
            self.catalog.record_path(args["dst"], self._pool_name(args["dst"], st.plan.target_pool),
                                     own_change=res["status"] == "created")
            return res
        if kind == "verify_view":
            return self._verify_view(st, args)
        if kind == "relocate":
            return self._relocate(st, seq, step_id, args)
        if kind == "verify_group":
            return self._verify_group(args)
        if kind == "delete":
            return self._delete(st, args)
        if kind == "prune_dirs":
            if self.cfg.seeding_root_of(args["stop_at"]) is None:
                raise UnsafeOperation(f"refusing to prune up to {args['stop_at']}: not inside a seeding root")
            return {"removed": fsops.prune_empty_dirs(args["root"], args["stop_at"], roots=self.seeding_roots)}
        if kind == "tag":
            c = self._client(args["instance"])
            if args.get("add"):
                c.add_tags(args["torrent"], args["add"])
            if args.get("remove"):
                c.remove_tags(args["torrent"], args["remove"])
            return {}
        raise UnsafeOperation(f"unknown step kind {kind!r}")

    def _pool_name(self, path: str, fallback: str | None) -> str:
        p = self.cfg.pool_of(path)
        if p is not None:
            return p.name
        if fallback:
            return fallback
        raise UnsafeOperation(f"{path} is not inside any configured pool")

    def _copy(self, st: _GroupRun, a: dict) -> dict:
        res = fsops.copy_verified(a["src"], a["dst"], a["blake3"], int(a["size"]), roots=self.roots,
                                  catalog=self.catalog)
        inode_id = self.catalog.record_path(a["dst"], self._pool_name(a["dst"], st.plan.target_pool), own_change=True)
        # We know the content of the new inode: cache it, so verify_view costs a stat, not a read.
        self.catalog.store_hash(inode_id, bytes.fromhex(res["blake3"]), os.lstat(a["dst"]))
        st.outcome.bytes_copied += res["bytes_written"]
        return res

    def _link(self, st: _GroupRun, a: dict) -> dict:
        res = fsops.link_into(a["src"], a["dst"], roots=self.roots, size=a.get("size"), blake3_hex=a.get("blake3"),
                              catalog=self.catalog)
        # A link changes the inode's ctime; own_change carries its cached hash over.
        self.catalog.record_path(a["dst"], self._pool_name(a["dst"], st.plan.target_pool),
                                 own_change=res["status"] in ("linked", "already"))
        return res

    def _verify_view(self, st: _GroupRun, a: dict) -> dict:
        c = self._client(a["instance"])
        h = a["torrent"]
        save = _norm(a["save_path"])
        want: dict[str, dict] = {}
        for f in a["files"]:
            full = _norm(f["path"] if os.path.isabs(f["path"]) else os.path.join(save, f["path"]))
            rel = os.path.relpath(full, save)
            if rel.startswith(".."):
                raise UnsafeOperation(f"view file {full} is outside the save path {save}")
            want[rel] = {**f, "path": full}
        live = c.files(h)
        if not live:
            raise UnsafeOperation(f"torrent {h} has no metadata (no file list): cannot prove its view")
        # The torrent's own file list, not the plan's, decides what must be there: a file
        # missing from the view would be copied by qBittorrent itself (lesson 1).
        current_save = None
        for lf in live:
            v = want.get(_norm(lf.name))
            if v is None:
                if lf.wanted:
                    raise UnsafeOperation(f"torrent {h} has file {lf.name} that the view at {save} lacks")
                current_save = current_save or _norm(c.torrent(h).save_path)
                old = os.path.join(current_save, lf.name)
                if os.path.lexists(old) and os.lstat(old).st_size and not os.path.lexists(os.path.join(save, lf.name)):
                    raise UnsafeOperation(f"torrent {h}: unwanted file {lf.name} exists at {current_save} but not in "
                                          "the view: qBittorrent would copy it unverified")
                continue
            if int(v["size"]) != lf.size:
                raise VerificationFailed(f"torrent {h}: {lf.name} is {lf.size} bytes in qBittorrent, "
                                         f"{v['size']} in the plan")
        total = 0
        for v in want.values():
            fsops.verify_file(v["path"], int(v["size"]), v.get("blake3"), self.catalog, roots=self.roots)
            total += int(v["size"])
        st.views.add((a["instance"], h, save))
        return {"files": len(want), "bytes": total}

    def _delete(self, st: _GroupRun, a: dict) -> dict:
        keep = a["keep"]
        if not st.synced:
            # New links must be on disk before old ones go, whatever a power cut does.
            fsops.sync_filesystem(_existing_parent(keep["path"]))
            st.synced = True
        hold = str(st.run_id) if self.cfg.policy.grace_period > 0 else None
        res = fsops.safe_unlink(
            a["path"], fsid=a["fsid"], ino=int(a["ino"]), size=a.get("size"), blake3_hex=a.get("blake3"),
            keep_path=keep["path"], keep_blake3=a.get("blake3"), keep_fsid=keep.get("fsid"), keep_ino=keep.get("ino"),
            seeding_links=a.get("seeding_links", ()), seeding_roots=self.seeding_roots, keep_roots=self.roots,
            catalog=self.catalog, hold_run=hold)
        st.deletes_started = True
        self.catalog.forget_path(a["path"])
        if res.get("nlink_before", 0) > 1:
            # Unlinking changed the inode's ctime; its other links keep their cached hash.
            for p in a.get("seeding_links", ()):
                if p == a["path"]:
                    continue
                try:
                    pst = os.lstat(p)
                except OSError:
                    continue
                if (pst.st_dev, pst.st_ino) == (res.get("dev"), int(a["ino"])):
                    pool = self.cfg.pool_of(p)
                    if pool is not None:
                        self.catalog.record_path(p, pool.name, own_change=True)
        st.outcome.bytes_freed += res.get("bytes_freed", 0)
        return res

    # ------------------------------------------------------------------ qBittorrent

    def _client(self, instance: str):
        try:
            return self.clients[instance]
        except KeyError:   # a plain mapping (tests); Clients raises its own QbtError naming what is configured
            raise QbtError(f"no torrent client named {instance!r}") from None

    def _observe(self, a: dict) -> dict:
        t = self._client(a["instance"]).torrent(a["torrent"])
        return {"save_path": _norm(t.save_path), "state": t.state, "progress": t.progress,
                "complete": t.is_complete, "stable": t.is_stable, "was_running": not t.is_stopped,
                "download_path": t.download_path, "auto_tmm": t.auto_tmm,
                "had_relocated_tag": bool(self.cfg.policy.relocated_tag) and self.cfg.policy.relocated_tag in t.tags}

    def _verify_group(self, a: dict) -> dict:
        problems = []
        for x in a["torrents"]:
            t = self._client(x["instance"]).torrent(x["torrent"])
            if _norm(t.save_path) != _norm(x["save_path"]):
                problems.append(f"{t.hash} is at {t.save_path}, expected {x['save_path']}")
            elif not t.is_stable:
                problems.append(f"{t.hash} is {t.state}, not stable")
            elif not t.is_complete:
                problems.append(f"{t.hash} is at {t.progress * 100:.1f}%")
        if problems:
            raise VerificationFailed("group does not verify: " + "; ".join(problems))
        return {"torrents": len(a["torrents"])}

    def _relocate(self, st: _GroupRun, seq: int, step_id: int, a: dict) -> dict:
        c = self._client(a["instance"])
        h = a["torrent"]
        obs = a["_observed"]
        r = _Reloc(seq, step_id, "intended", h, a["instance"], _norm(a["from_path"]), _norm(a["to_path"]),
                   int(a.get("size") or 0), obs)
        st.relocs.append(r)   # registered before acting: any failure from here on undoes it
        budget = relocate_budget(r.size, self.relocate_base_s, self.relocate_rate_bps)
        t0 = self.clock()
        t = c.torrent(h)
        if t.is_moving or t.is_checking:
            # A move (ours, before a crash, or anyone's) is in flight: wait for it, never issue another.
            t = self._wait(c, h, None, budget, st.plan.group_id, seq)
        where = _norm(t.save_path)
        if where == r.to_path:
            t = self._wait(c, h, r.to_path, budget, st.plan.group_id, seq)
            issued = False
        elif where == r.from_path:
            if not t.is_complete:
                raise UnsafeOperation(f"torrent {h} is not complete ({t.progress * 100:.1f}%): only complete "
                                      "torrents are relocated")
            if not t.is_stable:
                raise UnsafeOperation(f"torrent {h} is {t.state}: waiting for a stable state first")
            if (a["instance"], h, r.to_path) not in st.views:
                raise UnsafeOperation(f"refusing to relocate {h}: its view at {r.to_path} was not verified in this run")
            if t.auto_tmm:
                c.set_auto_management(h, False)   # turning ATM off never moves anything; turning it on might
            if t.download_path and _norm(t.download_path) != r.to_path:
                c.set_download_path(h, "")        # lesson 2: no stale incomplete folder left behind
            if self.stop_while_moving and not t.is_stopped:
                c.stop(h)
            c.set_location(h, r.to_path)
            issued = True
            t = self._wait(c, h, r.to_path, budget, st.plan.group_id, seq)
        else:
            raise UnsafeOperation(f"torrent {h} is at {t.save_path}, the plan expected {r.from_path} or {r.to_path}")
        if obs.get("was_running", True) and t.is_stopped:
            c.start(h)   # only now: the recheck at the new place ended at 100%
        tag = self.cfg.policy.relocated_tag
        if tag:
            try:
                c.add_tags(h, [tag])
            except QbtError as e:
                self.log.warning("torrent %s relocated but not tagged %s: %s", h, tag, e)
        st.outcome.torrents_relocated += 1
        return {"issued": issued, "state": t.state, "save_path": _norm(t.save_path),
                "seconds": round(self.clock() - t0, 3)}

    def _wait(self, c, h: str, at: str | None, budget: float, gid: str = "", seq: int = -1,
              require_complete: bool = True):
        """Poll until the torrent is stable (at ``at``, if given) on ``settle_polls`` polls in a row.

        Raises VerificationFailed on error/missingFiles, on an incomplete torrent once its
        recheck at ``at`` is over (when ``require_complete``), and when the budget runs out.
        """
        deadline = self.clock() + budget
        delay = self.poll_initial_s
        settled = 0
        rechecked_at = None        # when we asked for a recheck ourselves
        checking_seen = False      # a checking state observed since then
        while True:
            t = c.torrent(h)
            if t.state in BAD_STATES:
                raise VerificationFailed(f"torrent {h} went to state {t.state} at {t.save_path}")
            if t.is_checking:
                checking_seen = True
            if not t.is_stable:
                settled = 0
            elif at is None:
                return t
            elif _norm(t.save_path) != at:
                settled = 0   # the move is still queued behind others
            elif t.is_complete:
                settled += 1
                if settled >= self.settle_polls:
                    return t
            elif t.is_stopped and rechecked_at is None:
                # qBittorrent (4.5.2, observed) does not recheck a STOPPED torrent after a move
                # onto existing files: it sits at stoppedDL 0% until asked. Asking is safe now
                # (stable, stopped: nothing can download) and it stays stopped afterwards.
                c.recheck(h)
                rechecked_at, checking_seen, settled = self.clock(), False, 0
            elif t.is_stopped and not checking_seen and self.clock() - rechecked_at < self.recheck_grace_s:
                settled = 0   # our recheck has not shown up yet (the API lags by its refresh interval)
            elif require_complete:
                raise VerificationFailed(f"torrent {h} is at {t.progress * 100:.1f}% after the recheck at {at}")
            else:
                settled += 1
                if settled >= self.settle_polls:
                    return t
            if self.clock() >= deadline:
                raise VerificationFailed(f"torrent {h} did not settle{' at ' + at if at else ''} within "
                                         f"{budget:.0f}s (state {t.state}, at {t.save_path})",
                                         hint="qBittorrent may still be moving or checking; qbhook resume waits again")
            if self.hook is not None:
                self.hook("poll", gid, seq, Step("relocate", {"torrent": h}))
            self.sleep(delay)
            delay = min(delay * 1.5, self.poll_max_s)

    def _undo_relocation(self, r: _Reloc) -> dict:
        """Put a torrent back where this run found it, as it was (idempotent)."""
        obs = r.observed
        if not obs or _norm(obs.get("save_path")) != r.from_path or not obs.get("complete") or not obs.get("stable"):
            # We cannot have moved it: it was not at the old place, complete and stable when first seen.
            return {"moved_back": False, "note": "never moved"}
        c = self._client(r.instance)
        h = r.torrent
        budget = relocate_budget(r.size, self.relocate_base_s, self.relocate_rate_bps)
        t = self._wait(c, h, None, budget)
        where = _norm(t.save_path)
        moved_back = False
        if where == r.to_path:
            if not t.is_stopped and (not t.is_complete or self.stop_while_moving):
                c.stop(h)   # never leave an incomplete torrent running, nor let the recheck back start one
            if t.download_path:
                c.set_download_path(h, "")
            # The old files were never touched (nothing is deleted before verify_group), so the
            # move back finds them in place, keeps them and rechecks.
            c.set_location(h, r.from_path)
            moved_back = True
        elif where != r.from_path:
            raise UnsafeOperation(f"torrent {h} is at {t.save_path}, neither {r.from_path} nor {r.to_path}: "
                                  "not moving it")
        # Also when it already is back (a resumed rollback): a stopped torrent may still wait for its recheck.
        t = self._wait(c, h, r.from_path, budget, require_complete=False)
        if not t.is_complete:
            if not t.is_stopped:
                c.stop(h)
            raise VerificationFailed(f"torrent {h} is back at {r.from_path} but at {t.progress * 100:.1f}%; "
                                     "it is stopped and needs attention")
        if obs.get("was_running") and t.is_stopped:
            c.start(h)
        tag = self.cfg.policy.relocated_tag
        if tag and obs.get("had_relocated_tag") is False:
            try:
                c.remove_tags(h, [tag])   # the tag says "qbhook moved this": after a rollback it did not
            except QbtError as e:
                self.log.warning("torrent %s moved back but still tagged %s: %s", h, tag, e)
        return {"moved_back": moved_back, "state": t.state}

    # ------------------------------------------------------------------ dry run

    def _dry_run(self, groups: list[GroupPlan]) -> RunSummary:
        """What apply would do; reads the filesystem (lstat) only, writes nothing."""
        summary = RunSummary(None, dry_run=True, status="planned")
        for g in groups:
            o = GroupOutcome(g.group_id, g.action, "planned", g.reason, bytes_copied=g.bytes_to_copy,
                             bytes_freed=g.bytes_freed,
                             torrents_relocated=sum(1 for s in g.steps if s.kind == "relocate"))
            for s in g.steps:
                o.steps.append({"kind": s.kind, "args": s.args, "now": _probe(s)})
            summary.groups.append(o)
        return summary


def _probe(s: Step) -> str:
    a = s.args
    if s.kind in ("copy", "link", "mkempty"):
        return "something already there" if os.path.lexists(a["dst"]) else "to do"
    if s.kind == "delete":
        return "already gone" if not os.path.lexists(a["path"]) else "to do"
    return "to do"


def _existing_parent(path: str) -> str:
    p = os.path.dirname(str(path))
    while p and not os.path.isdir(p):
        p = os.path.dirname(p)
    return p or "/"
