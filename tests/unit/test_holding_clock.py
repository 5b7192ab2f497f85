"""A grace period is measured on clocks that can be believed (fsops.HeldLink.expired, HoldClock).

R42: the grace of a quarantined orphan (its only undo: the purge skips the last-copy check) was
measured on the wall clock alone, so one wrong reading (an RTC at 2038, an NTP step) purged every
one at once, and a hold stamped under a 1970 clock had no grace at all. A hold of this boot now
ends when the wall clock and CLOCK_BOOTTIME both say so; one of another boot only on a wall clock
that is plausible, else nothing is purged and one line says why (the purge, `qbhook holding`).

R55: a hold stamped before NTP synced, under a clock restored from the last shutdown, looked as
much older as the machine was off, and at the next boot nothing relates to its CLOCK_BOOTTIME: a
week off, a 7-day grace, purged a day later. The newest (wall, CLOCK_BOOTTIME) qbhook recorded in
the hold's own boot now dates it (``HeldLink.start``)."""

from __future__ import annotations

import os
import time
from dataclasses import replace

from qbhook.move import fsops, orphans
from qbhook.move import journal as journal_mod
from qbhook.move.fsops import HeldLink, HoldClock
from tests.helpers import write
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


WEEK = 7 * DAY
T = 1_780_000_000.0  # when boot A began, really; its clock read the last shutdown's, a week earlier


def restored_hold(boot="A"):
    """Held 30 s into boot A, before NTP: stamped a week early, after qbhook's last run before the off."""
    return HeldLink("/s/.qbhook-holding/9/f.mkv", T - WEEK + 30, boot=boot, boottime=30.0, floor=T - WEEK - 60)


def test_a_hold_stamped_under_a_clock_restored_from_shutdown_waits_its_real_grace():
    h = restored_hold()
    synced = {"A": (T + 0.9 * DAY, 0.9 * DAY)}  # NTP stepped the clock; qbhook ran later in boot A
    a_day_later = HoldClock(T + DAY, "B", 120.0, T + 0.9 * DAY, synced)  # rebooted
    assert h.start(a_day_later) == T + 30
    assert not h.expired(WEEK, a_day_later) and fsops.clock_doubt([h], a_day_later, WEEK) is None
    a_week_later = HoldClock(T + WEEK + 30, "B", 6 * DAY, T + 0.9 * DAY, synced)
    assert h.expired(WEEK, a_week_later)
    # A reading of boot A still wrong (never synced) dates it no earlier than its own stamp
    unsynced = HoldClock(T + DAY, "B", 120.0, T - WEEK + 500, {"A": (T - WEEK + 400, 400.0)})
    assert h.start(unsynced) == h.since
    # Only the hold's own boot dates it, and a hold of this boot is judged by CLOCK_BOOTTIME
    assert restored_hold("C").start(a_day_later) == h.since
    assert not h.expired(WEEK, HoldClock(T + DAY, "A", DAY, None, synced))


def test_a_hold_dated_by_its_boots_later_clock_is_purged_on_its_real_grace(world, monkeypatch):  # noqa: F811
    w = world
    w.cfg = replace(w.cfg, policy=replace(w.cfg.policy, grace_period=WEEK))
    _path, at = quarantine_one(w)
    clock = {"wall": 0.0, "boot": ("A", 0.0)}
    monkeypatch.setattr(time, "time", lambda: clock["wall"])
    monkeypatch.setattr(journal_mod, "boot_clock", lambda: clock["boot"])
    # As boot A journaled it: held 30 s after boot, the clock restored a week behind, before NTP
    w.cat.conn.execute(
        "UPDATE steps SET finished_at=?, result=json_set(result, '$.boot_id', 'A', '$.boottime', 30.0) "
        "WHERE kind='delete'",
        (T - WEEK + 30,),
    )
    w.cat.conn.execute("UPDATE runs SET started_at=?, finished_at=?", (T - WEEK + 29,) * 2)
    w.cat.conn.commit()
    clock.update(wall=T + 0.9 * DAY, boot=("A", 0.9 * DAY))  # NTP synced; qbhook runs again in boot A
    w.journal.finish_run(w.journal.start_run({"groups": []}, "cli"), "done", {})
    clock.update(wall=T + DAY, boot=("B", 120.0))  # the nightly reboot: a real day after the hold
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert os.path.lexists(at) and out.clock is None and out.error is None
    (listed,) = orphans.holding(w.cfg, w.cat)
    assert not listed.expired and listed.expires == T + 30 + WEEK
    clock.update(wall=T + WEEK + 31, boot=("B", WEEK - DAY + 151))  # a real week after the hold
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.clock is None and out.error is None and not os.path.lexists(at)


def test_each_boot_keeps_its_newest_clock_reading_read_once_per_purge(world, monkeypatch):  # noqa: F811
    w = world
    for rel in ("old/A/a.mkv", "old/B/b.mkv", "old/C/c.mkv"):
        write(os.path.join(w.seed_s, rel), b"orphaned bytes" * 100)
    assert len(orphans.quarantine(w.cfg, w.cat, [w.qbt]).held) == 3
    clock = {"wall": T, "boot": ("A", 500.0)}
    monkeypatch.setattr(time, "time", lambda: clock["wall"])
    monkeypatch.setattr(journal_mod, "boot_clock", lambda: clock["boot"])
    w.journal.note_clock()
    clock.update(wall=T - 1000, boot=("A", 100.0))  # another process's older reading, committed later
    w.journal.note_clock()
    clock.update(wall=T + 5, boot=("B", 7.0))
    w.journal.note_clock()
    boots = w.journal.hold_clock().boots
    assert (boots["A"], boots["B"]) == ((T, 500.0), (T + 5, 7.0))
    seen: list[str] = []
    w.cat.conn.set_trace_callback(seen.append)
    try:
        orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    finally:
        w.cat.conn.set_trace_callback(None)
    assert len([q for q in seen if q.lstrip().upper().startswith("SELECT") and "boot_clocks" in q]) == 1


def test_a_clock_doubt_is_told_once_while_it_lasts_and_once_when_fixed(world, monkeypatch):  # noqa: F811
    """R58: the told line held the clock's reading to the minute and a day count, so serve, purging
    after every run, told it again at each run while the clock stayed wrong."""
    from qbhook import notify

    w = world
    month_grace(w)
    _path, at = quarantine_one(w)
    of_another_boot(w)
    told = []
    monkeypatch.setattr(notify, "emit", lambda kind, text, sev="info": told.append((kind, text)))
    real, now = time.time(), [Y2038]
    monkeypatch.setattr(time, "time", lambda: now[0])
    run = w.journal.start_run({"groups": []}, "cli")
    w.journal.finish_run(run, "done", {})
    for _ in range(3):  # three runs of serve, minutes apart, the clock still wrong
        out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
        now[0] += 300
    assert os.path.lexists(at) and "2038-01-19" in out.clock  # the full line: the log, `qbhook holding`
    assert len(told) == 1, told
    assert told == [("guard", f"holding purge: {fsops.ClockDoubt('', (fsops.CLOCK_JUMPED,)).told()}")]
    now[0] = real  # the clock fixed: the hold's grace is not over, nothing to doubt
    orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert [k for k, _t in told] == ["guard", "resolved"] and fsops.CLOCK_JUMPED in told[1][1]


def test_a_clock_doubt_needs_a_person_until_fixed(world, monkeypatch):  # noqa: F811
    """R58: a purge refused on a wrong clock (each refusal in ``notify.holding_told`` "needs a
    person") left ``qbhook status`` healthy and the status page's Needs you empty."""
    from qbhook.events.status import needs_person

    w = world
    month_grace(w)
    quarantine_one(w)
    of_another_boot(w)
    real = time.time()
    monkeypatch.setattr(time, "time", lambda: Y2038)
    run = w.journal.start_run({"groups": []}, "cli")
    w.journal.finish_run(run, "done", {})
    assert orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt]).clock
    probs = needs_person(w.cfg, w.cat.conn, pools={}, server=None, now=Y2038)
    assert [p for p in probs if fsops.CLOCK_JUMPED in p and "qbhook holding" in p] == probs
    assert len(probs) == 1
    monkeypatch.setattr(time, "time", lambda: real)  # the clock fixed
    orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert needs_person(w.cfg, w.cat.conn, pools={}, server=None, now=real) == []
