"""R48: the plain ``qbhook orphans`` listing and a run that did not finish (qbhook.move.orphans).

A demote killed (or still running) after its views on the target pool were made and verified,
before it relocated onto them: no torrent references those views yet. The quarantine refused
("run(s) N did not finish"), but the listing, which takes no lock, called them reclaimable and
saved that total in ``last_orphans`` for ``status``: a person could delete them by hand."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from qbhook.cli.orphans import _show_report
from qbhook.move import orphans
from tests.unit.test_executor import Crash, _make_world, demote_plan
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)


@pytest.fixture
def world(tmpfs, tmp_path):  # noqa: F811
    w = _make_world(tmpfs, tmp_path)
    w.cfg = replace(w.cfg, policy=replace(w.cfg.policy, orphans_max_share=1.0))
    yield w
    w.cat.close()


def _killed_before_the_first_relocate(w) -> int:
    plan = demote_plan(w)
    first = next(i for i, s in enumerate(plan.groups[0].steps) if s.kind == "relocate")

    def hook(point, gid, seq, step):
        if point == "before" and seq == first:
            raise Crash("killed with its views made and verified")

    with pytest.raises(Crash):
        w.executor(hook=hook).apply(plan)
    (run,) = w.journal.unfinished_runs()
    return run.id


def _files_below(root) -> list[str]:
    return sorted(os.path.join(d, n) for d, _s, ns in os.walk(root) for n in ns if not n.startswith(".qbhook"))


def test_an_unfinished_runs_views_are_listed_in_use_by_it_never_reclaimable(world, capsys):
    w = world
    run = _killed_before_the_first_relocate(w)
    views = _files_below(w.seed_p)
    assert views  # the demote's views on the pool, no torrent on them yet

    report = orphans.find_orphans(w.cfg, [w.qbt], catalog=w.cat)

    assert [o.path for o in report.orphans if o.path.startswith(w.seed_p)] == []
    assert report.counts[orphans.UNFINISHED] == len(views)
    mine = [p for p in report.protected if p.reason.startswith(f"in use by unfinished run {run} ")]
    assert mine and sum(p.bytes for p in mine) == sum(os.path.getsize(v) for v in views)
    assert report.unfinished_runs == (run,)
    assert orphans.last_run(w.cat.conn).reclaimable == 0  # status shows nothing to reclaim
    _show_report(report.as_dict(), quarantine=False)
    out, err = capsys.readouterr()
    assert f"in use by unfinished run {run}" in out
    (line,) = [x for x in err.splitlines() if "did not finish" in x]
    assert f"run(s) {run} did not finish" in line and "`qbhook resume`" in line

    w.executor().resume()  # finished: the same files are the torrents' now, still no orphans
    report = orphans.find_orphans(w.cfg, [w.qbt], catalog=w.cat)
    assert report.unfinished_runs == () and orphans.UNFINISHED not in report.counts


def test_unfinished_views_reads_the_destinations_and_verified_files_of_a_runs_plan():
    from qbhook.move.journal import RunRow

    plan = {
        "groups": [
            {
                "steps": [
                    {"kind": "copy", "args": {"src": "/s/a", "dst": "/p/x/a"}},
                    {"kind": "verify_view", "args": {"files": [{"path": "/p/x/b"}, {"path": 3}]}},
                    {"kind": "tag", "args": {"torrent": "h"}},
                    "not a step",
                ]
            },
            {"steps": None},
        ]
    }
    rows = [
        RunRow(7, 0.0, None, "running", "cli", 1, None, plan, None),
        RunRow(8, 0.0, None, "running", "x", 1, None, [], None),
    ]
    assert orphans.unfinished_views(rows) == {"/p/x/a": 7, "/p/x/b": 7}
