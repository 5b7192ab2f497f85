"""What a finished run reports: a quarantine run's history line and status-page row, the
notification of a run with many failed groups (R54).

Review findings (R54): ``history`` and the status page showed a quarantine run as zeros (its
summary counts files held, not groups nor bytes freed), and a finished quarantine's summary
lacked its bytes held; a run with more than MAX_LINES failed groups lost its totals line (the
one cut), and one reason of thousands of paths was one line of 45,000 characters.

R66: ``history`` counted a paused group (resume finishes it) as failed, and apply's summary
printed it FAILED right above "0 failed, 1 paused".
"""

from __future__ import annotations

import os

import pytest

from qbhook import notify
from qbhook.catalog.store import Catalog
from qbhook.cli.app import print_summary
from qbhook.cli.apply import _print_run_line, _run_dict
from qbhook.decide.plan import GroupStatus, Plan, RunStatus
from qbhook.errors import ExitCode
from qbhook.events.page import _runs
from qbhook.events.status import _run, totals
from qbhook.move import orphans
from qbhook.move.executor import GroupOutcome, RunSummary, build_executor
from qbhook.move.journal import Journal, failed_not_paused
from tests.helpers import write
from tests.unit.test_cli_catalog import Env
from tests.unit.test_converge_batch import _cache, _dups
from tests.unit.test_converge_batch import world as conv_world  # noqa: F401  (fixture)
from tests.unit.test_executor import Crash, demote_plan
from tests.unit.test_executor import world as ex_world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_orphans_purge import world  # noqa: F401  (fixture)
from tests.unit.test_orphans_resume_rows import _cannot_say, _Died, _died_before_its_hold, _dies_at_hold_of


def _quarantine_run(tmp_path):
    cat = Catalog.open(str(tmp_path / "c.db"))
    j = Journal(cat.conn)
    rid = j.start_run(Plan(groups=[]).to_dict(), orphans.QUARANTINE_TRIGGER)
    j.finish_run(rid, "failed", {"orphans_held": 120, "orphans_failed": 3, "bytes_held": 50 * 2**30})
    (r,) = j.runs(5)
    return r


def test_history_shows_a_quarantine_run_by_what_it_held(tmp_path, capsys):
    _print_run_line(_run_dict(_quarantine_run(tmp_path)))
    out = capsys.readouterr().out
    assert "held 120, failed 3, 50.0 GiB held" in out
    assert "freed" not in out and "copied" not in out


def test_status_page_shows_a_quarantine_run_by_what_it_held(tmp_path):
    row = _run(_quarantine_run(tmp_path))
    assert (row.orphans_held, row.orphans_failed, row.bytes_held) == (120, 3, 50 * 2**30)

    class St:
        runs = (row,)

    html = _runs(St, lambda x: x)
    assert "50.0 GiB held" in html and "120 file(s) held / 3 failed" in html


def test_an_apply_run_still_shows_copied_and_freed(tmp_path, capsys):
    cat = Catalog.open(str(tmp_path / "c.db"))
    j = Journal(cat.conn)
    rid = j.start_run(Plan(groups=[]).to_dict(), "cli")
    j.finish_run(rid, "done", {"bytes_copied": 2**30, "bytes_freed": 2**31, "groups_failed": {}})
    (r,) = j.runs(5)
    _print_run_line(_run_dict(r))
    assert "copied 1.0 GiB, freed 2.0 GiB" in capsys.readouterr().out
    row = _run(r)
    assert row.orphans_held is None and row.bytes_freed == 2**31


def test_a_finished_quarantine_journals_its_bytes_held(world, monkeypatch):  # noqa: F811
    w = world
    write(os.path.join(w.seed_s, "old/Gone.2019/gone.mkv"), b"orphaned bytes" * 100)
    _dies_at_hold_of(monkeypatch, b"gone.mkv", "rename")
    with pytest.raises(_Died):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    (run,) = w.journal.unfinished_runs()
    orphans.finish_quarantine(w.cfg, w.journal, run.id, lambda: [w.qbt])
    summary = w.journal.run(run.id).summary
    assert summary["orphans_held"] == 1
    assert summary["bytes_held"] == 1400


# --------------------------------------------------------------------------- notification


class _Cap:
    def __init__(self):
        self.events = []

    def emit(self, e):
        self.events.append(e)


@pytest.fixture
def cap():
    c = _Cap()
    prev = notify.install(c)
    notify._told.clear()
    yield c
    notify.install(prev)
    notify._told.clear()


def test_many_failed_groups_keep_the_run_totals_line(cap):
    s = RunSummary(7, status=RunStatus.FAILED)
    for i in range(notify.MAX_LINES + 5):
        s.groups.append(GroupOutcome(f"g{i:02}", "demote", GroupStatus.ROLLED_BACK, "verify_view failed: x"))
    s.groups.append(GroupOutcome("ok", "demote", GroupStatus.DONE, bytes_copied=5 * 2**30, bytes_freed=5 * 2**30))
    notify.run_finished(s, "sweep")
    _title, body, _sev = notify.compose(cap.events)
    lines = body.splitlines()
    assert len(lines) <= notify.MAX_LINES + 1
    totals = [ln for ln in lines if "run 7 (sweep) failed" in ln]
    assert totals and "freed 5.0 GiB" in totals[0]
    assert lines[-1] == "... and 6 more"


def test_a_long_reason_is_one_bounded_line(cap):
    s = RunSummary(8, status=RunStatus.FAILED)
    reason = "; ".join(f"/seed/x/{i}.mkv kept" for i in range(2000))
    s.groups.append(GroupOutcome("g", "demote", GroupStatus.FAILED, reason))
    notify.run_finished(s)
    _title, body, _sev = notify.compose(cap.events)
    assert max(len(ln) for ln in body.splitlines()) <= notify.MAX_LINE_CHARS
    assert body.splitlines()[0].endswith("…")


# --------------------------------------------------------------------------- a resumed run's bytes freed


def _used(*roots) -> int:
    """Bytes the files below ``roots`` take, each inode once."""
    seen = {}
    for r in roots:
        for d, _ds, fs in os.walk(str(r)):
            for f in fs:
                st = os.lstat(os.path.join(d, f))
                seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def _killed_batch(w, plan, at: int) -> None:
    """``plan`` applied in a child killed right after its relink number ``at`` (its batch never closed)."""
    pid = os.fork()
    if pid == 0:
        try:

            def hook(p, _gid, s, _step):
                if p == "after_act" and s == at:
                    os._exit(9)

            cat = Catalog.open(w.cfg.catalog, marker_roots=[w.stash, w.pool])
            build_executor(w.cfg, cat, {"qbt": w.qbt}, Journal(cat.conn), hook=hook).apply(plan)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)


def test_a_resumed_converge_batch_counts_what_its_killed_attempt_freed(conv_world):  # noqa: F811
    """R54: each relink the killed attempt made answered "already" with nothing freed, for good."""
    w = conv_world
    plan, _pairs = _dups(w, 4, cache=True)
    before = _used(w.stash, w.pool)
    _killed_batch(w, plan, 2)
    (res,) = w.executor().resume()
    freed = before - _used(w.stash, w.pool)
    assert freed > 0
    assert res.bytes_freed == freed and not getattr(res, "bytes_freed_at_least", False)
    assert w.journal.run(res.run_id).summary["bytes_freed"] == freed
    assert "bytes_freed_at_least" not in w.journal.run(res.run_id).summary
    assert totals(w.cat.conn).bytes_freed == freed


def test_a_victim_still_linked_elsewhere_is_not_counted(conv_world):  # noqa: F811
    """The relink replaced a link of an inode that keeps another (the catalog knows it): nothing freed."""
    w = conv_world
    plan, pairs = _dups(w, 2, cache=True)
    other = pairs[0][0] + ".cross"
    os.link(pairs[0][0], other)
    _cache(w, other, pairs[0][0])  # the catalog's link count: 2, both paths known
    before = _used(w.stash, w.pool)
    _killed_batch(w, plan, 1)
    (res,) = w.executor().resume()
    assert res.bytes_freed == before - _used(w.stash, w.pool) and not getattr(res, "bytes_freed_at_least", False)


def test_an_unprovable_resumed_figure_is_a_lower_bound(conv_world, capsys):  # noqa: F811
    """Without the catalog's word on the victims (never catalogued), the figure says it is a lower bound."""
    w = conv_world
    plan, _pairs = _dups(w, 4)
    before = _used(w.stash, w.pool)
    _killed_batch(w, plan, 2)
    (res,) = w.executor().resume()
    assert res.bytes_freed < before - _used(w.stash, w.pool)
    assert res.bytes_freed_at_least
    (r,) = [r for r in w.journal.runs(5) if r.id == res.run_id]
    assert r.summary["bytes_freed_at_least"] is True
    _print_run_line(_run_dict(r))
    assert "freed ≥ " in capsys.readouterr().out
    assert _run(r).bytes_freed_at_least


def _delete_seqs(plan) -> list[int]:
    return [i for i, s in enumerate(plan.groups[0].steps) if s.kind == "delete"]


# The plan's deletes: the first three unlink a link of an inode the cross-seed keeps, the fourth
# the payload's last link (300,000 bytes), the fifth the last link of a small file.
@pytest.mark.parametrize("nth", [0, 3, 4], ids=["not-the-last-link", "payload-last-link", "small-last-link"])
def test_a_resumed_delete_counts_what_its_killed_attempt_freed(ex_world, nth):  # noqa: F811
    """R54: a demote killed between an unlink and its journal's done: the resume answered "absent", nothing freed."""
    w = ex_world
    plan = demote_plan(w)
    k = _delete_seqs(plan)[nth]

    def hook(p, _gid, seq, _step):
        if p == "after_act" and seq == k:
            raise Crash("killed")

    with pytest.raises(Crash):
        w.executor(hook=hook).apply(plan)
    (res,) = w.executor().resume()
    assert res.status == "done"
    # A demote moves every file of its torrents: it frees what it copies, as the uninterrupted run reports.
    assert res.bytes_copied > 0
    assert res.bytes_freed == res.bytes_copied and not getattr(res, "bytes_freed_at_least", False)


def _paused_run(tmp_path):
    """A run whose only group paused past its deletes (a client not up yet): resume finishes it."""
    s = RunSummary(1, status=RunStatus.INTERRUPTED)
    s.groups.append(GroupOutcome("g1", "demote", GroupStatus.FAILED, "qBittorrent not up yet", paused=True))
    j = Journal(Catalog.open(str(tmp_path / "c.db")).conn)
    rid = j.start_run(Plan(groups=[]).to_dict(), "cli")
    j.finish_run(rid, s.status, s.counters())
    (r,) = j.runs(5)
    return s, r


def test_a_paused_group_is_not_counted_failed_in_history(tmp_path, capsys):
    """R66: history counted a paused group failed, while apply, status and the notification did not."""
    s, r = _paused_run(tmp_path)
    _print_run_line(_run_dict(r))
    assert "0 failed, 1 paused" in capsys.readouterr().out
    assert _run(r).groups_failed == 0


def test_a_paused_group_reads_paused_in_applys_summary(tmp_path, capsys):
    """R66: the group's line said FAILED right above "0 failed, 1 paused"."""
    s, _r = _paused_run(tmp_path)
    print_summary(s)
    out = capsys.readouterr()
    assert out.out.splitlines()[0].startswith("PAUSED      demote   g1  - qBittorrent not up yet")
    assert "FAILED" not in out.out + out.err
    assert "0 failed, 1 paused, 0 busy" in out.out


def test_a_failed_group_beside_a_paused_one_is_counted_once(tmp_path, capsys):
    s = RunSummary(2, status=RunStatus.FAILED)
    s.groups += [
        GroupOutcome("g1", "demote", GroupStatus.FAILED, "client down", paused=True),
        GroupOutcome("g2", "demote", GroupStatus.ROLLED_BACK, "size differs"),
    ]
    assert failed_not_paused(s.counters()) == ["g2"]
    print_summary(s)
    out = capsys.readouterr().out
    assert "ROLLED_BACK demote   g2" in out and "PAUSED      demote   g1" in out
    assert "1 failed, 1 paused" in out


# --------------------------------------------------------------------------- resume of a quarantine run


@pytest.mark.parametrize("clients", ["answer", "cannot say"])
def test_resume_of_a_died_quarantine_says_what_it_held_and_failed(world, monkeypatch, capsys, cap, clients):  # noqa: F811
    """Review R66: resume finishing a died quarantine returned a summary without groups: exit 0,
    "nothing to do", no notification, and --json without the counts its journal row records
    (orphans_failed: 1), so history and the status page disagreed with what resume said."""
    w = world
    path, run = _died_before_its_hold(w, monkeypatch)
    if clients == "cannot say":
        _cannot_say(w, "unreachable")
    (s,) = notify.watch(w.executor()).resume()
    journaled = w.journal.run(run)
    d = s.to_dict()
    assert {k: d[k] for k in ("orphans_held", "orphans_failed", "bytes_held")} == {
        k: journaled.summary[k] for k in ("orphans_held", "orphans_failed", "bytes_held")
    }
    assert d["status"] == journaled.status
    print_summary(s)
    out, err = capsys.readouterr()
    assert "nothing to do" not in out
    (event,) = cap.events
    assert event.kind == "run" and f"run {run} (resume)" in event.text
    if clients == "cannot say":
        assert journaled.status == RunStatus.FAILED and d["orphans_failed"] == 1 and d["orphans_held"] == 0
        assert s.exit_code == ExitCode.FAILURE  # as a failed `orphans --quarantine --yes` exits
        assert list(d["orphans_not_moved"]) == [path] and f"not moved: {path}" in err
        assert "0 file(s) held" in out and "1 failed" in out
        assert event.severity == "failure" and "1 failed" in event.text
    else:
        assert journaled.status == RunStatus.DONE and (d["orphans_held"], d["bytes_held"]) == (1, 4000)
        assert s.exit_code == ExitCode.OK and "1 file(s) held" in out and "3.9 KiB" in out
        assert event.severity == "info" and "1 orphan(s) held" in event.text


def test_cli_resume_exits_as_a_failed_quarantine_before_a_run_left_alone(tmp_path, monkeypatch):
    """A failed quarantine needs a person (1), a run left alone only a later try (75)."""
    from qbhook.cli import App

    failed = RunSummary(3, status=RunStatus.FAILED, orphans_held=2, orphans_failed=1, bytes_held=10)
    alone = RunSummary(4, status=RunStatus.RUNNING, skipped="its process may be alive")

    class Ex:
        def resume(self, _run_id=None):
            return [failed, alone]

    monkeypatch.setattr(App, "executor", lambda self, wait=0: Ex())
    env = Env(tmp_path)
    r = env.run("resume", expect=ExitCode.FAILURE)
    assert "quarantine failed: 2 file(s) held" in r.stdout and "1 failed" in r.stdout
    runs = env.json("resume", expect=ExitCode.FAILURE)["runs"]
    assert (runs[0]["orphans_held"], runs[0]["orphans_failed"], runs[0]["bytes_held"]) == (2, 1, 10)
    assert "orphans_held" not in runs[1]
