"""What `qbhook sweep` reports and how it exits: the unattended path (cron, systemd) sees a
failed sweep only by its exit status.

Review findings (R66): a sweep with ``policy.auto_apply`` exited 0 when a group it applied
failed (the run's own exit code was 5), printed ``applied: {}`` (it read a ``counters`` key
``RunSummary.to_dict`` does not have), and a round whose client listing was refused printed
zero counts and exited 0, its reason only in ``--json``.
"""

from __future__ import annotations

import pytest

from qbhook.decide.plan import GroupStatus, RunStatus
from qbhook.errors import ExitCode
from qbhook.move.executor import GroupOutcome, RunSummary
from tests.unit.test_cli_catalog import Env

REFUSAL = "qbt: listed no torrents while the index holds 40: not applied"


def _swept(applied=None, refused=None) -> dict:
    d = {
        "started_at": 1.0,
        "scans": [],
        "plan": {"demote": 1, "promote": 0, "blocked": 0, "stay": 3, "skip": 0},
        "full": True,
        "replanned": {"groups": 1, "torrents": 1, "why": {"first": 1}},
        "index": [],
        "index_listing": "full",
        "pending": [],
        "seconds": 0.5,
    }
    if applied is not None:
        d["applied"] = applied.to_dict()
    if refused is not None:  # as worker._refused_round: nothing planned
        d.update(refused=refused, plan=dict.fromkeys(d["plan"], 0), index_listing="none", full=False)
        d["replanned"] = {"groups": 0, "torrents": 0, "why": {}}
    return d


@pytest.fixture
def sweeping(tmp_path, monkeypatch):
    """An Env whose `qbhook sweep` returns what ``set(result)`` gave it, acting on nothing."""
    env = Env(tmp_path)
    env.save(qbittorrent={"url": "http://127.0.0.1:1", "username": "u", "password": "x"}, policy={"auto_apply": True})
    monkeypatch.setattr("qbhook.cli.app.App.executor", lambda self, wait=0: None)

    def set_result(d):
        monkeypatch.setattr("qbhook.events.worker.sweep", lambda *a, **k: d)

    env.set_result = set_result
    return env


def _summary(*outcomes: GroupOutcome, status=RunStatus.DONE) -> RunSummary:
    s = RunSummary(3, status=status)
    s.groups.extend(outcomes)
    return s


def test_a_sweep_whose_applied_group_rolled_back_exits_as_apply_would(sweeping):
    s = _summary(
        GroupOutcome("g1", "demote", GroupStatus.ROLLED_BACK, "verify_view failed: size differs"),
        status=RunStatus.FAILED,
    )
    sweeping.set_result(_swept(applied=s))
    r = sweeping.run("sweep", expect=None)
    assert r.exit_code == s.exit_code == ExitCode.UNSAFE, r.output
    assert "applied: {}" not in r.output
    # apply's own lines: the group, the real counts, the reason
    assert "ROLLED_BACK demote   g1" in r.stdout
    assert "0 group(s) done, 1 failed, 0 busy" in r.stdout
    assert "FAILED g1: verify_view failed: size differs" in r.stderr
    assert sweeping.json("sweep", expect=ExitCode.UNSAFE)["applied"]["groups_failed"] == {
        "g1": "verify_view failed: size differs"
    }


def test_a_sweep_that_applied_cleanly_exits_0_with_its_counts(sweeping):
    done = GroupOutcome("g1", "demote", GroupStatus.DONE, bytes_copied=2**30, bytes_freed=2**30, torrents_relocated=2)
    sweeping.set_result(_swept(applied=_summary(done)))
    r = sweeping.run("sweep")
    assert "copied 1.0 GiB, freed 1.0 GiB, 2 torrent(s) relocated; 1 group(s) done, 0 failed" in r.stdout


def test_a_sweep_whose_applied_group_paused_exits_75(sweeping):
    paused = GroupOutcome("g1", "demote", GroupStatus.FAILED, "qBittorrent not up yet", paused=True)
    sweeping.set_result(_swept(applied=_summary(paused, status=RunStatus.INTERRUPTED)))
    assert sweeping.run("sweep", expect=None).exit_code == ExitCode.BUSY


def test_a_sweep_whose_listing_was_refused_says_why_and_exits_75(sweeping):
    sweeping.set_result(_swept(refused=[REFUSAL]))
    r = sweeping.run("sweep", expect=None)
    assert r.exit_code == ExitCode.BUSY, r.output
    assert f"not planned: {REFUSAL}" in r.stderr
    assert sweeping.json("sweep", expect=ExitCode.BUSY)["refused"] == [REFUSAL]


def test_a_run_summary_read_back_from_its_dict_is_the_same_run():
    s = _summary(
        GroupOutcome("g1", "demote", GroupStatus.DONE, bytes_copied=5, bytes_freed=5, bytes_freed_at_least=True),
        GroupOutcome("g2", "promote", GroupStatus.FAILED, "x", paused=True),
        GroupOutcome("g3", "demote", GroupStatus.BUSY, "locked"),
        status=RunStatus.INTERRUPTED,
    )
    back = RunSummary.from_dict(s.to_dict())
    assert back == s and back.to_dict() == s.to_dict() and back.exit_code == s.exit_code


def test_a_quarantine_summary_read_back_from_its_dict_keeps_its_orphans():
    # R71: from_dict dropped the orphan fields fix-w104 added, so a read-back failed quarantine
    # exited 0 and said nothing of what it held.
    s = RunSummary(7, status=RunStatus.FAILED, orphans_held=2, orphans_failed=1, bytes_held=300)
    s.orphans_not_moved["/stash/x"] = "in use"
    back = RunSummary.from_dict(s.to_dict())
    assert back == s and back.exit_code == s.exit_code == ExitCode.FAILURE
