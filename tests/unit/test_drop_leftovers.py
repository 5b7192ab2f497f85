"""R19: what a killed delete leaves under its drop name (``fsops._drop_name``) is never left hidden.

A drop name sits under ``RELINK_PREFIX``: no scan catalogs it, so a link left there is one the
catalog never learns, and every later delete of that inode is refused ("2 links but only 1 known")."""

from __future__ import annotations

import os

import pytest

from qbhook.errors import UnsafeOperation
from qbhook.move import executor as executor_mod
from qbhook.move import fsops
from tests.helpers import write
from tests.unit.test_deletes_recheck_torrents import RELS, _change_h2_at_delete, _old_links_left
from tests.unit.test_executor import H1, H2, Crash, demote_plan, world  # noqa: F401
from tests.unit.test_fsops import b3, fs2, tmpfs  # noqa: F401
from tests.unit.test_fsops_hostile import _doomed
from tests.unit.test_hold_rename import DROP, PRECIOUS, _no_renameat2


def _killed_put_back_of_a_file_renamed_over(fs2, monkeypatch):  # noqa: F811
    """No renameat2: a file F (qBittorrent completing at that path) is renamed over the doomed name
    right before the delete's rename; ``_move_checked`` puts F back by link + unlink, killed between
    the two. F then sits at the name with a second link under the drop name of the planned inode."""
    _s, _p, seed_s, _sp, _cat = fs2
    _no_renameat2(monkeypatch)
    a, _b, _keep, kw = _doomed(fs2)
    intruder = write(seed_s / "C/g.bin", PRECIOUS)
    real_rename, real_unlink = os.rename, os.unlink
    swapped = []

    def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        if not swapped and os.fsencode(src) == b"f.bin":
            real_rename(intruder, os.path.join(f"/proc/self/fd/{src_dir_fd}", "f.bin"))
            swapped.append(True)
        return real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def unlink(p, *, dir_fd=None):
        if os.fsencode(p).startswith(DROP):
            raise KeyboardInterrupt
        return real_unlink(p, dir_fd=dir_fd)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(KeyboardInterrupt):
        fsops.safe_unlink(a, **kw)
    monkeypatch.undo()
    assert os.lstat(a).st_nlink == 2 and a.read_bytes() == PRECIOUS  # the spare is there
    return a, kw


def _drops(folder) -> list[str]:
    return [n for n in os.listdir(folder) if os.fsencode(n).startswith(DROP)]


def test_the_retried_delete_takes_the_spare_link_of_a_file_put_back_over_its_name(fs2, monkeypatch):  # noqa: F811
    a, kw = _killed_put_back_of_a_file_renamed_over(fs2, monkeypatch)
    with pytest.raises(UnsafeOperation, match="no longer the planned file"):
        fsops.safe_unlink(a, **kw)  # F is not the planned inode: refused, but its spare is taken
    assert _drops(a.parent) == []
    st = os.lstat(a)
    assert st.st_nlink == 1 and a.read_bytes() == PRECIOUS


def test_the_spare_of_a_file_put_back_is_kept_when_its_name_goes_before_the_drop(fs2, monkeypatch):  # noqa: F811
    """R63: the retry saw F at the name (two links), then took the drop name as F's spare on the
    strength of that look alone: F's name deleted in between left the drop name its last link, and
    it was unlinked. Now it must still be a second link, the name looked at again: else it stays
    (the next delete, finding the name gone, puts it back: ``_undo_drop``)."""
    a, kw = _killed_put_back_of_a_file_renamed_over(fs2, monkeypatch)
    real = fsops._drop_name

    def name_goes_first(name, ino):
        if os.path.lexists(a):
            os.unlink(a)  # the name removed after the retry's look at it
        return real(name, ino)

    monkeypatch.setattr(fsops, "_drop_name", name_goes_first)
    with pytest.raises(UnsafeOperation, match="no longer the planned file"):
        fsops.safe_unlink(a, **kw)
    monkeypatch.undo()
    (drop,) = _drops(a.parent)
    assert (a.parent / drop).read_bytes() == PRECIOUS and os.lstat(a.parent / drop).st_nlink == 1


def test_a_file_put_back_over_a_doomed_name_can_be_deleted_later(fs2, monkeypatch):  # noqa: F811
    """The later plan that deletes F (its copy kept on the pool) is not refused for a hidden link."""
    _s, _p, _seed_s, seed_p, _cat = fs2
    a, kw = _killed_put_back_of_a_file_renamed_over(fs2, monkeypatch)
    with pytest.raises(UnsafeOperation):
        fsops.safe_unlink(a, **kw)
    keep = write(seed_p / "C/g.bin", PRECIOUS)
    st = os.lstat(a)
    got = fsops.safe_unlink(
        a,
        **{
            **kw,
            "ino": st.st_ino,
            "size": len(PRECIOUS),
            "blake3_hex": b3(PRECIOUS),
            "keep_path": str(keep),
            "keep_blake3": b3(PRECIOUS),
            "seeding_links": [str(a)],
        },
    )
    assert got["status"] == "unlinked" and not a.exists() and keep.read_bytes() == PRECIOUS


def _killed_at_third_drop_unlink(world, monkeypatch):  # noqa: F811
    """Apply the demotion, killed (``Crash``) in the third delete between its rename to the drop
    name and its unlink: H1's third old link hides under its drop name."""
    real_unlink, seen = os.unlink, []

    def unlink(p, *, dir_fd=None):
        if os.fsencode(p).startswith(DROP):
            seen.append(p)
            if len(seen) == 3:
                raise Crash("killed before the drop name's unlink")
        return real_unlink(p, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(Crash):
        world.executor().apply(demote_plan(world))
    monkeypatch.undo()
    hidden = os.path.join(world.save(H1, "stash"), RELS[2])
    assert not os.path.lexists(hidden) and _drops(os.path.dirname(hidden))
    return hidden


def test_a_group_stopping_for_good_puts_back_the_link_a_killed_delete_hid(world, monkeypatch):  # noqa: F811
    hidden = _killed_at_third_drop_unlink(world, monkeypatch)
    t = world.qbt.t[H2]
    t.transient, t.progress, t.script = "missingFiles", 1.0, []  # a lasting reason: stops for good
    (out,) = world.executor().resume()
    g = out.groups[0]
    assert g.status == "failed" and not g.paused, g.reason
    assert os.path.lexists(hidden) and _drops(os.path.dirname(hidden)) == [], g.reason
    assert _old_links_left(world, H1) == RELS[2:] and _old_links_left(world, H2) == RELS
    # H2's links (the cross-seed of the same inodes) are deleted later without an unknown link.
    assert os.lstat(hidden).st_nlink == 2


@pytest.mark.parametrize("state", ["moving", "checkingResumeData"])
def test_a_group_paused_on_a_stuck_torrent_stops_for_good_past_its_budget(world, monkeypatch, state):  # noqa: F811
    alerts = []
    monkeypatch.setattr(executor_mod._notify, "emit", lambda *a, **k: alerts.append(a))
    world.executor(hook=_change_h2_at_delete(world, 2, state, 1.0)).apply(demote_plan(world))
    for _ in range(24):  # within the budget: paused, the run unfinished
        world.clock.now += executor_mod.PAUSE_LOOK_CAP_S  # an hour a look: a day in all, STUCK_PAUSE_S
        (out,) = world.executor().resume()
        assert out.groups[0].paused, out.groups[0].reason
    assert world.executor().unfinished() and not alerts
    world.clock.now += 60
    (out,) = world.executor().resume()
    g = out.groups[0]
    assert g.status == "failed" and not g.paused and "taken to be stuck" in g.reason, g.reason
    assert f"{H2} is {state}" in g.reason, g.reason
    assert _old_links_left(world, H1) == RELS[2:] and _old_links_left(world, H2) == RELS  # kept
    assert not world.executor().unfinished() and world.executor().resume() == []
    run = world.journal.runs(1)[0].id
    (vg,) = [r for r in world.journal.steps(run) if r.kind == "verify_group"]
    assert vg.status == "failed" and vg.args["_paused"]["done"] == 2  # closed as a lasting failure is
    assert any(f"{H2} is {state}" in a[1] and a[2] == "failure" for a in alerts), alerts


# R21: the pause is counted on the wall clock, which jumps (a box without RTC boots in 1970, NTP
# sets it later): its length is summed from the gaps between looks, each clamped (``_pause_note``).
NOW = 1_750_000_000.0
BOOT_RTC = 86_400.0 * 30  # what a Raspberry Pi without fake-hwclock says before NTP


def _looks(world, wall: float, n: int, every: float) -> list:  # noqa: F811
    """Up to ``n`` resumes ``every`` seconds apart, the first at ``wall``, until the group stops for
    good (serve looks every minute); each look's group outcome."""
    outs = []
    for i in range(n):
        world.clock.now += every
        (out,) = world.executor(wall=lambda t=wall + i * every: t).resume()
        outs.append(out.groups[0])
        if not outs[-1].paused:
            break
    return outs


def _paused_at(world, wall: float):  # noqa: F811
    g = world.executor(hook=_change_h2_at_delete(world, 2, "checkingResumeData", 1.0), wall=lambda: wall)
    assert g.apply(demote_plan(world)).groups[0].paused


def test_a_pause_noted_before_ntp_set_the_clock_is_not_stuck_a_minute_later(world, monkeypatch):  # noqa: F811
    alerts = []
    monkeypatch.setattr(executor_mod._notify, "emit", lambda *a, **k: alerts.append(a))
    _paused_at(world, BOOT_RTC)
    # A minute later NTP has set the clock 55 years ahead: that gap counts an hour at most.
    (g,) = _looks(world, NOW, 1, 60.0)
    assert g.paused and not alerts, g.reason
    # Still stopped for good once paused a day: 23 h of hourly looks more (24 h counted), then past it.
    outs = _looks(world, NOW + 3600, 30, 3600.0)
    assert [g.paused for g in outs] == [True] * 23 + [False], outs[-1].reason
    assert "taken to be stuck" in outs[-1].reason and "after 25.0 h" in outs[-1].reason, outs[-1].reason


def test_a_pause_noted_with_the_clock_ahead_stops_a_day_after_the_clock_is_set_back(world):  # noqa: F811
    _paused_at(world, NOW + 5 * 365 * 86400.0)
    outs = _looks(world, NOW, 30, 3600.0)  # the first gap is back in time: counts nothing
    assert [g.paused for g in outs] == [True] * 25 + [False], outs[-1].reason
    assert "taken to be stuck" in outs[-1].reason and not world.executor().unfinished(), outs[-1].reason


def test_a_long_gap_between_looks_counts_as_an_hour(world):  # noqa: F811
    _paused_at(world, NOW)
    g = _looks(world, NOW + 30 * 86400.0, 1, 30 * 86400.0)[0]  # qbhook not running a month, or the clock jumping
    assert g.paused, g.reason
    run = world.journal.runs(1)[0].id
    (vg,) = [r for r in world.journal.steps(run) if r.kind == "verify_group"]
    assert vg.args["_paused"] == {"paused_s": executor_mod.PAUSE_LOOK_CAP_S, "last": NOW + 30 * 86400.0, "done": 2}


def test_a_pause_note_in_the_old_shape_is_read_as_starting_now(world):  # noqa: F811
    _paused_at(world, NOW)
    run = world.journal.runs(1)[0].id
    (vg,) = [r for r in world.journal.steps(run) if r.kind == "verify_group"]
    world.journal.note_paused(vg.id, {"since": BOOT_RTC, "done": 2})  # an older qbhook's: a start in 1970
    g = _looks(world, NOW + 60.0, 1, 60.0)[0]
    assert g.paused, g.reason
    (vg,) = [r for r in world.journal.steps(run) if r.kind == "verify_group"]
    assert vg.args["_paused"] == {"paused_s": 0.0, "last": NOW + 60.0, "done": 2}
