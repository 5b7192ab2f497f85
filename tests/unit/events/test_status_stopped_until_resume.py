"""``qbhook status`` (and the status page: one source, ``needs_person``) names the torrents a
crashed run left stopped between their relocation and their start step (R65).

Since the start step (fix-w95) each relocated torrent of a demote or promote stays stopped until
``verify_group`` passes; the group's start steps then put each back as its relocation found it.
A run killed in between left the whole group stopped, and status said only "UNFINISHED runs":
healthy, exit 0. Now each group of an unfinished run no live process owns is a problem line
naming the torrents whose relocation is done, whose start is not, and which ran when found.
A run whose process still runs is not named: its starts follow, and relocations take hours.
"""

from __future__ import annotations

import pytest

from qbhook import procs
from qbhook.events.status import needs_person, report
from tests.unit.test_executor import H1, H2, Crash
from tests.unit.test_executor_start_after_verify import _recorder, promote, without_start_steps  # noqa: F401
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)


def _killed_at(w, plan, kind: str, n: int = 0, point: str = "after_act") -> int:
    """The run killed at ``point`` of the ``n``-th ``kind`` step; its id."""
    seq = [i for i, s in enumerate(plan.groups[0].steps) if s.kind == kind][n]
    with pytest.raises(Crash):
        w.executor(hook=_recorder(w, (point, seq))).apply(plan)
    return w.journal.runs(1)[0].id


def _process_gone(w, run: int) -> None:
    """As a SIGKILL leaves it: the run's recorded process (this test's own) is of another boot."""
    ident = f"another-boot:1:{procs.pid_namespace()}"
    w.cat.conn.execute("UPDATE runs SET process=? WHERE id=?", (ident, run))
    w.cat.conn.commit()


def _line(run: int, gid: str, *hashes: str) -> str:
    names = ", ".join(f"Movie.2020 ({h[:8]})" for h in hashes)
    return f"{names} stopped by qbhook until `qbhook resume` finishes run {run} (group {gid})"


def _needs_you(w) -> list[str]:
    return needs_person(w.cfg, w.cat.conn, pools={}, server=None, now=0)


def test_a_run_killed_after_verify_group_makes_status_name_its_stopped_torrents(promote):  # noqa: F811
    w, plan = promote
    run = _killed_at(w, plan, "verify_group")
    _process_gone(w, run)
    assert all(w.qbt.t[h].stopped for h in (H1, H2))
    line = _line(run, plan.groups[0].group_id, H1, H2)
    d = report(w.cfg, w.cat)
    assert line in d["problems"] and not d["healthy"]  # `qbhook status` exits 1 on it
    assert d["unfinished_runs"] == [run]
    assert line in _needs_you(w)  # the page's "Needs you" reads the same list
    (s,) = w.executor().resume()
    assert s.status == "done" and not any(w.qbt.t[h].stopped for h in (H1, H2))
    assert line not in report(w.cfg, w.cat)["problems"]


def test_a_torrent_its_start_step_already_started_is_not_named(promote):  # noqa: F811
    w, plan = promote
    run = _killed_at(w, plan, "start", 1, "after_intend")  # H1's start journaled done
    _process_gone(w, run)
    assert [w.qbt.t[h].stopped for h in (H1, H2)] == [False, True]
    assert _line(run, plan.groups[0].group_id, H2) in _needs_you(w)


def test_a_run_whose_process_still_runs_is_not_named(promote):  # noqa: F811
    # This test's own process journaled the run and runs still: a live executor's starts follow.
    w, plan = promote
    run = _killed_at(w, plan, "verify_group")
    assert w.journal.run(run).pid is not None
    assert not any("stopped by qbhook" in p for p in _needs_you(w))


def test_a_run_finished_interrupted_is_no_live_process_s(promote):  # noqa: F811
    w, plan = promote
    run = _killed_at(w, plan, "verify_group")
    w.cat.conn.execute("UPDATE runs SET status='interrupted' WHERE id=?", (run,))
    w.cat.conn.commit()
    assert _line(run, plan.groups[0].group_id, H1, H2) in _needs_you(w)


def test_a_torrent_found_stopped_is_not_named(promote):  # noqa: F811
    # H1 was stopped by a person when found: its start leaves it stopped, so qbhook holds nothing.
    w, plan = promote
    w.qbt.t[H1].stopped = True
    run = _killed_at(w, plan, "verify_group")
    _process_gone(w, run)
    assert _line(run, plan.groups[0].group_id, H2) in _needs_you(w)


def test_a_run_of_a_plan_without_start_steps_names_nothing(promote):  # noqa: F811
    # An older version's plan: each relocation started its own torrent.
    w, plan = promote
    plan = without_start_steps(plan)
    run = _killed_at(w, plan, "verify_group")
    _process_gone(w, run)
    assert not any("stopped by qbhook" in p for p in _needs_you(w))


@pytest.mark.parametrize(
    "plan",
    [
        {"groups": ["g"]},
        {"groups": {"g": 1}},
        {"groups": [{"steps": ["start"], "torrents": "ab"}]},
        {"groups": [{"steps": [{"kind": "start", "args": ["x"]}], "names": 5}]},
    ],
)
def test_a_journaled_plan_of_an_odd_shape_names_nothing_and_never_fails(plan):
    # R71: a plan JSON qbhook does not write (another version's, a hand edit) made `status` and
    # the page's Needs you fail with AttributeError for as long as the run stayed unfinished.
    from qbhook.move.journal import _plan_starts

    assert _plan_starts(plan) == {}
