"""R68: qBittorrent recomputes the state and progress torrents/info reports only on its refresh
timer (``refresh_interval``, 1500 ms by default, raised by people with big libraries). Right after
torrents/recheck the API keeps showing the torrent as it was before: a moved or repaired stopped
torrent at its stale 100 %. The executor took that 100 % for a finished check once a fixed 5 s had
passed, so with a refresh interval above that it started the torrent and deleted the old links
before any check was visible. Its lag now follows the client's refresh interval
(clients/port.py ``state_lag_s``)."""

from __future__ import annotations

import os

import pytest

from qbhook.clients.qbt.client import QbtClient
from qbhook.decide.plan import Step
from qbhook.errors import QbtError
from tests.unit.test_executor import FILES, H1, H2, FakeQbt, demote_plan, tree, world  # noqa: F401
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_repair_executor import _lose_files, _plan


class RefreshLagQbt(FakeQbt):
    """FakeQbt whose torrents/info lags a recheck by one refresh interval ``refresh_s``: until then
    it answers what it showed before the recheck (the reviewer's reproduction)."""

    def __init__(self, clock, refresh_s, **kw):
        super().__init__(**kw)
        self.clock, self.refresh_s, self.state_lag_s = clock, refresh_s, refresh_s
        self.pending = {}  # hash -> (due, frozen info)
        self.looks = []  # (clock, hash) of every torrent() read
        self.asked = []  # (clock, hash) of every recheck request

    def recheck(self, h):
        t = self._get(h)
        frozen = self._info(t)  # what the API shows until the next refresh
        self.asked.append((self.clock(), t.hash))
        super().recheck(h)
        self.pending[t.hash] = (self.clock() + self.refresh_s, frozen)

    def torrent(self, h):
        t = self._get(h)
        self.looks.append((self.clock(), t.hash))
        p = self.pending.get(t.hash)
        if p is not None:
            if self.clock() < p[0]:
                return p[1]
            del self.pending[t.hash]
        return super().torrent(h)

    def start(self, h, *, forced=False):
        if h.lower() in self.pending:
            self.violations.append(f"started {h} before its recheck was ever visible")
        super().start(h, forced=forced)


def _with_start_steps(plan):
    """The planner's shape: each torrent started after verify_group (then the deletes)."""
    g = plan.groups[0]
    i = next(i for i, s in enumerate(g.steps) if s.kind == "verify_group") + 1
    g.steps[i:i] = [Step.of("start", {"torrent": h, "instance": "qbt"}) for h in (H1, H2)]
    return plan


def _lagging(w, refresh_s) -> RefreshLagQbt:
    q = RefreshLagQbt(w.clock, refresh_s, stale_polls=1)
    q.t, w.qbt = w.qbt.t, q
    return q


@pytest.mark.parametrize("refresh_s", [1.5, 12.0, 30.0])
def test_a_stale_100_after_the_recheck_never_passes_for_a_check(world, refresh_s):  # noqa: F811
    """Every check would end at 99.9 % (a boundary piece in a missing part file): the group fails
    and rolls back, every stash file kept, whatever the refresh interval (at 1.5 s as before)."""
    w = world
    q = _lagging(w, refresh_s)
    for h in (H1, H2):
        q.fail_at[w.save(h, "pool")] = 0.999
    before = tree(w.stash)
    summary = w.executor().apply(_with_start_steps(demote_plan(w)))
    g = summary.groups[0]
    assert g.status != "done" and "99.9%" in (g.reason or "")
    assert tree(w.stash)["files"] == before["files"]  # nothing deleted
    assert q.violations == []


def test_a_good_check_behind_a_30s_refresh_is_waited_for_then_the_group_finishes(world):  # noqa: F811
    w = world
    q = _lagging(w, 30.0)
    summary = w.executor().apply(_with_start_steps(demote_plan(w)))
    assert summary.groups[0].status == "done", summary.groups[0].reason
    assert q.violations == [] and q.pending == {}
    assert not os.path.exists(os.path.join(w.save(H1, "stash"), FILES[0][0]))


def test_the_first_look_after_a_recheck_comes_at_the_initial_poll_delay(world):  # noqa: F811
    """The delay had backed off while the move ran; a check that shows up within a refresh must
    not wait out a long delay first."""
    w = world
    q = _lagging(w, 1.5)
    w.executor(poll_max_s=15.0).apply(demote_plan(w))
    assert q.asked
    for asked, which in q.asked:
        after = [t for t, h in q.looks if h == which and t > asked]
        assert after and after[0] - asked == pytest.approx(0.5)  # poll_initial_s


def test_a_repair_does_not_start_on_the_stale_100_of_before_its_recheck(world):  # noqa: F811
    """``_wait_rechecked``: a torrent a person stopped at 100 % before its files vanished; the check
    would find 50 %. Behind a 30 s refresh the stale 100 % was taken for it after 5 s."""
    w = world
    lib = _lose_files(w)
    q = _lagging(w, 30.0)
    t = q.t[H1]
    t.progress, t.transient, t.stopped = 1.0, None, True
    q.fail_at[w.seed_s] = 0.5
    summary = w.executor().apply(_plan(w, lib))
    (why,) = summary.groups_failed.values()
    assert "50.0%" in why
    assert q.count("start") == 0 and q.violations == [] and q.t[H1].stopped


class UntrustedRefreshQbt(FakeQbt):
    @property
    def state_lag_s(self):
        raise QbtError("qBittorrent 'qbt': its refresh interval (-5 ms) is not between 0 and 1 hour")


def test_a_refused_refresh_interval_fails_the_group_before_it_acts(world):  # noqa: F811
    """Read before the group acts: met in the middle of a wait, the rollback would meet it too."""
    w = world
    q = UntrustedRefreshQbt()
    q.t, w.qbt = w.qbt.t, q
    before = tree(w.pool)
    summary = w.executor().apply(demote_plan(w))
    (why,) = summary.groups_failed.values()
    assert why.startswith("not started:") and "refresh interval (-5 ms)" in why
    assert q.calls == [] and tree(w.pool) == before


class PreferencesQbt(FakeQbt):
    """FakeQbt whose ``state_lag_s`` is QbtClient's own: read from its preferences, kept until
    ``forget_state_lag``. ``ms``: the refresh interval a person has set now."""

    _label = "qBittorrent 'qbt'"
    state_lag_s = QbtClient.state_lag_s
    forget_state_lag = QbtClient.forget_state_lag
    _refresh_interval_ms = QbtClient._refresh_interval_ms

    def __init__(self, ms, **kw):
        super().__init__(**kw)
        self._state_lag_s, self.ms, self.reads = None, ms, 0

    def preferences(self):
        self.reads += 1
        return {"refresh_interval": self.ms}


def test_each_run_reads_the_refresh_interval_set_now_not_the_one_read_when_serve_started(world):  # noqa: F811
    """``serve`` keeps one client for its life and never closes it: the interval read at its first
    run was kept, so one a person changed since was never seen (R72). The second run here meets
    an interval qbhook refuses and fails its group before acting: it read the one set now."""
    w = world
    q = PreferencesQbt(1500)
    q.t, w.qbt = w.qbt.t, q
    ex, again = w.executor(), demote_plan(w)  # the same plan once more: read before the first moves it
    assert ex.apply(demote_plan(w)).groups[0].status == "done"
    assert q.reads == 1  # one preferences request a run, not one a group
    q.ms = -5  # changed while serve runs
    (why,) = ex.apply(again).groups_failed.values()
    assert why.startswith("not started:") and "refresh interval (-5 ms)" in why
    assert q.reads == 2
