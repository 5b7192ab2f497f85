"""A grace period is measured on clocks that can be believed (fsops.HeldLink.expired, HoldClock).

R42: the grace of a quarantined orphan (its only undo: the purge skips the last-copy check) was
measured on the wall clock alone, so one wrong reading (an RTC at 2038, an NTP step) purged every
one at once, and a hold stamped under a 1970 clock had no grace at all. A hold of this boot now
ends when the wall clock and CLOCK_BOOTTIME both say so; one of another boot only on a wall clock
that is plausible, else nothing is purged and one line says why (the purge, `qbhook holding`)."""

from __future__ import annotations

import os
import time
from dataclasses import replace

from qbhook.move import fsops, orphans
from qbhook.move.fsops import HeldLink, HoldClock
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_orphans_purge import expire, quarantine_one, world  # noqa: F401  (fixtures)

Y2038 = 2**31 - 1.0
DAY = 86400.0
GRACE = 30 * DAY


def month_grace(w):
    w.cfg = replace(w.cfg, policy=replace(w.cfg.policy, grace_period=GRACE))


def of_another_boot(w, **finished):
    """The held row as an earlier boot (or an older qbhook, ``boot_id=None``) journaled it."""
    w.cat.conn.execute("UPDATE steps SET result=json_set(result, '$.boot_id', 'another-boot') WHERE kind='delete'")
    for k, v in finished.items():
        w.cat.conn.execute(f"UPDATE steps SET {k}=? WHERE kind='delete'", (v,))
    w.cat.conn.commit()


def test_a_hold_is_journaled_with_its_boot_clock(world):  # noqa: F811
    w = world
    quarantine_one(w)
    (h,) = w.journal.held_links()
    boot, up = fsops.boot_clock()
    assert h.boot == boot and h.boot is not None and 0 < h.boottime <= up


def test_a_clock_jumping_forward_purges_no_hold_of_this_boot(world, monkeypatch):  # noqa: F811
    w = world
    month_grace(w)
    _path, at = quarantine_one(w)  # held just now
    monkeypatch.setattr(time, "time", lambda: Y2038)  # an RTC wrong at boot, an NTP step: one sweep
    w.executor()._purge_holding()
    assert os.path.lexists(at) and len(w.journal.held_links()) == 1


def test_a_clock_jumping_forward_purges_no_hold_of_an_earlier_boot_and_says_why(world, monkeypatch):  # noqa: F811
    w = world
    month_grace(w)
    _path, at = quarantine_one(w)
    of_another_boot(w)
    monkeypatch.setattr(time, "time", lambda: Y2038)
    run = w.journal.start_run({"groups": []}, "cli")  # a run under that clock records that clock...
    w.journal.finish_run(run, "done", {})
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])  # ...and proves nothing of it
    assert os.path.lexists(at)
    assert "2038-01-19" in out.clock and "days after qbhook's last record before this boot" in out.clock
    assert "\n" not in out.clock and out.as_dict()["clock_refused"] == out.clock
    assert orphans.clock_doubt(w.cfg, w.cat) == out.clock  # what `qbhook holding` shows
    assert [h.expired for h in orphans.holding(w.cfg, w.cat)] == [False]


def test_a_hold_of_an_earlier_boot_goes_once_its_grace_is_over_on_a_plausible_clock(world, monkeypatch):  # noqa: F811
    w = world
    month_grace(w)
    _path, at = quarantine_one(w)
    of_another_boot(w, finished_at=time.time() - 31 * DAY)
    w.cat.conn.execute("UPDATE runs SET started_at=?, finished_at=?", (time.time() - 31 * DAY,) * 2)
    w.cat.conn.commit()
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.clock is None and out.error is None and not os.path.lexists(at)


def test_a_hold_stamped_under_a_1970_clock_keeps_its_grace(world):  # noqa: F811
    w = world
    month_grace(w)
    _path, at = quarantine_one(w)
    w.cat.conn.execute("UPDATE steps SET finished_at=5000.0 WHERE kind='delete'")  # no RTC, before NTP
    w.cat.conn.commit()
    w.executor()._purge_holding()  # this boot's: CLOCK_BOOTTIME says it was held just now
    assert os.path.lexists(at)
    of_another_boot(w)  # an earlier boot's, or an older qbhook's: nothing measures its grace
    w.cat.conn.execute("UPDATE steps SET result=json_remove(result, '$.boot_id', '$.boottime')")
    w.cat.conn.commit()
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert os.path.lexists(at) and "held at 1970-01-01" in out.clock and "before qbhook's earlier records" in out.clock


def test_a_hold_stamped_later_than_the_clock_reads_is_listed_kept_and_said(world):  # noqa: F811
    w = world
    month_grace(w)
    _path, at = quarantine_one(w)
    of_another_boot(w, finished_at=time.time() + 40 * DAY)  # the clock was set back since
    assert w.journal.unreadable_held() == [] and [h.path for h in orphans.holding(w.cfg, w.cat)] == [at]
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert os.path.lexists(at) and "later than the clock reads now: the clock went back?" in out.clock


def test_a_hold_of_this_boot_needs_both_clocks():
    t = 1_800_000_000.0
    h = HeldLink("/s/.qbhook-holding/1/x", t, boot="b", boottime=50.0, floor=t - DAY)
    assert h.expired(GRACE, HoldClock(t + 2 * GRACE, "b", 50.0 + GRACE))
    assert not h.expired(GRACE, HoldClock(t + 2 * GRACE, "b", 50.0 + GRACE - 1))  # the wall jumped
    assert not h.expired(GRACE, HoldClock(t + GRACE - 1, "b", 50.0 + 2 * GRACE))  # stepped back
    # Another boot's: the wall clock, unless it reads more than a year past qbhook's last record
    assert h.expired(GRACE, HoldClock(t + GRACE, "c", 10.0, t + 300 * DAY))
    jumped = HoldClock(t + 400 * DAY, "c", 10.0, t + 30 * DAY)
    assert not h.expired(GRACE, jumped) and "days after" in fsops.clock_doubt([h], jumped, GRACE)
