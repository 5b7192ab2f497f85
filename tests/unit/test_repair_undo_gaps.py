"""A failed repair's undo after a kill took a link step's outcome row (the link made, its row still
``intended``), and a failed repair that moved its torrent put back at its old save path."""

from __future__ import annotations

import os

import pytest

from qbhook.decide.facts import PoolFact
from qbhook.decide.repair import CatalogCopy, MissingTorrent, RepairFacts, RepairFile, plan_repairs
from qbhook.move.executor import build_executor
from tests.unit.test_executor import FILES, H1, Crash, IncompleteFolderQbt, b3, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_repair_executor import _lose_files, _plan


def _killed_after_first_link(w, plan) -> str:
    """Apply ``plan``, SIGKILLed (``Crash``) right after its first link step linked, before its
    outcome row: -> that link's path."""
    steps = plan.groups[0].steps
    first = next(i for i, s in enumerate(steps) if s.kind == "link")

    def kill(point, _gid, at, _step):
        if point == "after_act" and at == first:
            raise Crash()

    with pytest.raises(Crash):
        build_executor(
            w.cfg, w.cat, {"qbt": w.qbt}, w.journal, sleep=w.clock.sleep, clock=w.clock, hook=kill, poll_initial_s=0.5
        ).apply(plan)
    (row,) = [r for r in w.journal.steps(w.journal.runs()[0].id) if r.seq == first]
    assert row.status == "intended" and row.args["_dst_before"] == "absent"  # the pre-state, in the intent
    dst = steps[first].dst
    assert os.lstat(dst).st_nlink == 2  # linked: the kill took only the outcome row
    return dst


def test_a_link_a_resumed_step_finds_is_kept_and_recorded_when_the_repair_fails(world):  # noqa: F811
    # Resumed, the link step finds the source's inode there (``already``) and the recheck fails.
    # Nothing tells its own link (killed after the act) from another's (killed before it, linked
    # there since: the next test): kept, journaled as a leftover view, named; the links the
    # resumed run made itself go.
    w = world
    lib = _lose_files(w)
    dst = _killed_after_first_link(w, _plan(w, lib))
    w.qbt.fail_at[w.seed_s] = 0.97
    (run,) = w.executor().resume()
    (why,) = run.groups_failed.values()
    assert "the 2 file(s) it linked or made were removed" in why
    assert f"1 kept (not provably the file it made any more; recorded as leftover views): {dst}" in why
    for rel, _data in FILES:
        view = os.path.join(w.seed_s, rel)
        assert os.path.lexists(view) == (view == dst)
    (left,) = [r for r in w.journal.steps(w.journal.runs()[0].id) if r.kind == "leftover_view"]
    assert left.args["path"] == dst and left.args["ino"] == os.lstat(dst).st_ino
    assert w.qbt.t[H1].stopped and w.qbt.count("start") == 0


def test_a_foreign_link_put_there_after_a_kill_before_the_act_is_kept(world):  # noqa: F811
    # R12-2: killed after the link step's intent (path empty), before its act; while qbhook is
    # down another party (a cross-seeding torrent at the same save path) links the same inode
    # there. The resumed step finds it (``already``) and the repair fails: the undo removed that
    # name as if it were the step's own (the intent's "absent" is kept across the resume).
    w = world
    lib = _lose_files(w)
    plan = _plan(w, lib)
    steps = plan.groups[0].steps
    first = next(i for i, s in enumerate(steps) if s.kind == "link")

    def kill(point, _gid, at, _step):
        if point == "after_intend" and at == first:
            raise Crash()

    with pytest.raises(Crash):
        build_executor(
            w.cfg, w.cat, {"qbt": w.qbt}, w.journal, sleep=w.clock.sleep, clock=w.clock, hook=kill, poll_initial_s=0.5
        ).apply(plan)
    dst, src = steps[first].dst, steps[first].src
    (row,) = [r for r in w.journal.steps(w.journal.runs()[0].id) if r.seq == first]
    assert row.status == "intended" and row.args["_dst_before"] == "absent" and not os.path.lexists(dst)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.link(src, dst)  # another's link, made while qbhook was down
    foreign = os.lstat(dst).st_ino
    w.qbt.fail_at[w.seed_s] = 0.97
    (run,) = w.executor().resume()
    (why,) = run.groups_failed.values()
    assert f"recorded as leftover views): {dst}" in why
    assert os.lstat(dst).st_ino == foreign
    rows = [r for r in w.journal.steps(w.journal.runs()[0].id) if r.seq == first and r.kind == "link"]
    assert rows[-1].result["status"] == "already"


def test_a_link_made_before_a_kill_is_removed_when_its_step_fails_on_resume(world):  # noqa: F811
    # A person started the torrent while the run was down: the link step, run again, refuses
    # (row failed, no result) and the group fails with that link under the running torrent.
    w = world
    lib = _lose_files(w)
    dst = _killed_after_first_link(w, _plan(w, lib))
    t = w.qbt.t[H1]
    t.transient, t.stopped = None, False  # downloading
    (run,) = w.executor().resume()
    (why,) = run.groups_failed.values()
    assert "it is downloading now, not stopped" in why and "the 1 file(s) it linked or made were removed" in why
    assert not os.path.lexists(dst)
    assert all(os.lstat(p).st_nlink == 1 for p in lib.values())
    assert w.qbt.t[H1].stopped and w.qbt.count("start") == 0


def test_a_link_not_provably_the_killed_steps_is_kept_and_recorded(world):  # noqa: F811
    # The library file was replaced (a tagger's rename) while the run was down: the name under the
    # torrent is no longer a link of the step's source, so nothing proves it is the one the step
    # made. Kept, journaled as a leftover view, named; the source untouched.
    w = world
    lib = _lose_files(w)
    dst = _killed_after_first_link(w, _plan(w, lib))
    src = next(p for p in lib.values() if os.path.samefile(p, dst))
    with open(src + ".tmp", "wb") as f:
        f.write(b"x" * os.path.getsize(src))
    os.replace(src + ".tmp", src)
    (run,) = w.executor().resume()
    (why,) = run.groups_failed.values()
    assert "no longer holds the planned content" in why
    assert f"1 kept (not provably the file it made any more; recorded as leftover views): {dst}" in why
    assert os.path.lexists(dst)
    (left,) = [r for r in w.journal.steps(w.journal.runs()[0].id) if r.kind == "leftover_view"]
    assert left.args["path"] == dst and left.args["ino"] == os.lstat(dst).st_ino and left.args["keep"] == src


def test_a_make_step_whose_path_was_taken_at_its_intent_is_never_undone_by_the_kill_window(world):  # noqa: F811
    # Something was at the path when the step was intended: whatever is there is not the step's.
    w = world
    lib = _lose_files(w)
    rel = next(r for r, d in FILES if d)
    view = os.path.join(w.seed_s, rel)
    os.makedirs(os.path.dirname(view), exist_ok=True)
    os.link(lib[rel], view)  # put there after the plan (the planner saw the path empty)
    w.qbt.fail_at[w.seed_s] = 0.97
    summary = w.executor().apply(_plan(w, lib))
    (why,) = summary.groups_failed.values()
    assert "the 2 file(s) it linked or made were removed" in why
    assert os.lstat(view).st_ino == os.lstat(lib[rel]).st_ino  # ``already``, taken at its intent: kept
    rows = w.journal.steps(w.journal.runs()[0].id)
    assert [r.args["_dst_before"] for r in rows if r.kind == "link" and r.args["dst"] == view] == ["taken"]


# -- a failed repair that moved its torrent


def _relocating_plan(w, lib):
    """H1 (save path on stash) missing its files, whose only catalog copies are on the cold pool:
    the plan repairs it there, at the mapped save path (setLocation)."""
    fsid_p = w.cat.fsid(w.cat.fs_for_path(w.seed_p))
    pools = (
        PoolFact("stash", "primary", str(w.stash), w.seed_s, w.cat.fsid(w.cat.fs_for_path(w.seed_s)), 0),
        PoolFact("pool", "cold", str(w.pool), w.seed_p, fsid_p, 0),
    )
    copies = {}
    os.makedirs(os.path.join(str(w.pool), "library"), exist_ok=True)
    for rel, d in FILES:
        if d:
            there = os.path.join(str(w.pool), "library", os.path.basename(rel))
            with open(there, "wb") as f:
                f.write(d)
            os.unlink(lib[rel])  # the copy lives on the pool only
            lib[rel] = there
            copies[(len(d), b3(d))] = (CatalogCopy(there, pools[1].seeding_fsid, os.lstat(there).st_ino),)
    files = tuple(RepairFile(i, rel, len(d), 1, b3(d) if d else None) for i, (rel, d) in enumerate(FILES))
    t = MissingTorrent(H1, "qbt", "Movie.2020", "missingFiles", w.seed_s, files)
    plan, refused = plan_repairs(RepairFacts((t,), pools, copies, {}))
    assert not refused
    (repair,) = [s for s in plan.groups[0].steps if s.kind == "repair"]
    assert repair.from_path == w.seed_s and repair.to_path != w.seed_s
    return plan, repair.to_path


def test_a_failed_repair_that_moved_its_torrent_puts_it_back_at_its_save_path(world):  # noqa: F811
    w = world
    lib = _lose_files(w)
    plan, to_path = _relocating_plan(w, lib)
    w.qbt.fail_at[to_path] = 0.5
    summary = w.executor().apply(plan)
    (why,) = summary.groups_failed.values()
    assert "50.0%" in why and "were removed" in why and f"its save path is {w.seed_s} again" in why
    assert w.qbt.t[H1].save_path == w.seed_s and w.qbt.t[H1].stopped and w.qbt.count("start") == 0
    assert [c for c in w.qbt.calls if c[0] == "set_location"] == [
        ("set_location", H1, to_path),
        ("set_location", H1, w.seed_s),
    ]
    assert not any(os.path.lexists(os.path.join(to_path, rel)) for rel, _d in FILES)
    (row,) = [r for r in w.journal.steps(w.journal.runs()[0].id) if r.kind == "repair"]
    assert row.status == "failed" and row.args["_move_back"] == {"to": w.seed_s, "done": True}


def _move_back_refused(w):
    """H1 repaired at the cold pool's save path, its recheck failing there (50 %), and the client
    refusing to set its location back to ``w.seed_s``: -> (plan, the path moved to, the group's reason)."""
    plan, to_path = _relocating_plan(w, _lose_files(w))
    w.qbt.fail_at[to_path] = 0.5
    w.qbt.refuse_set_location_to.add(w.seed_s)
    (why,) = w.executor().apply(plan).groups_failed.values()
    return plan, to_path, why


def test_a_move_back_refused_is_named_in_the_groups_outcome(world):  # noqa: F811
    w = world
    _, to_path, why = _move_back_refused(w)
    assert f"its save path could not be put back to {w.seed_s} (it is at {to_path}): " in why
    assert w.qbt.t[H1].save_path == to_path and w.qbt.t[H1].stopped


CATEGORY_DOWNLOAD = "/downloads/incomplete/movies"


def _violations(q) -> list[str]:
    """The fake's violations but its "would copy": a move back onto the missing files' old place
    is what the undo means (qBittorrent has nothing of a missingFiles torrent to carry along)."""
    return [v for v in q.violations if not v.startswith("qBittorrent would copy")]


@pytest.mark.parametrize("category", ["old-place", "elsewhere"])
def test_a_failed_repair_moved_back_gets_its_atm_back_through_the_guard(world, category):  # noqa: F811
    """The repair turned ATM off (setLocation does too) and cleared the download path it then
    reported; its move back left both so. ATM comes back, bringing its category's download path,
    only through the client's guard and only once it is back at its old save path; where the guard
    refuses (its category's path is not that save path) it stays off and the reason says so."""
    w = world
    lib = _lose_files(w)
    plan, to_path = _relocating_plan(w, lib)
    q = IncompleteFolderQbt(
        w.seed_s if category == "old-place" else os.path.join(w.seed_s, "elsewhere"), CATEGORY_DOWNLOAD, copies_in=True
    )
    q.t, w.qbt = w.qbt.t, q
    q.t[H1].auto_tmm = True
    q.fail_at[to_path] = 0.5
    summary = w.executor().apply(plan)
    (why,) = summary.groups_failed.values()
    assert f"its save path is {w.seed_s} again" in why
    t = q.torrent(H1)
    assert t.save_path == w.seed_s and q.t[H1].stopped
    note = f"ATM left off for {H1}: turning it on could move it"
    if category == "old-place":
        assert t.auto_tmm is True and t.download_path == CATEGORY_DOWNLOAD and note not in why
        mine = [c for c in q.calls if c[0] in ("set_location", "set_auto_management")]
        assert mine[-2:] == [("set_location", H1, w.seed_s), ("set_auto_management", H1, True)]  # back first
    else:
        assert t.auto_tmm is False and note in why
        assert note in w.journal.group_status(plan.groups[0].group_id)[1]
    assert _violations(q) == []


def test_a_failed_repair_moved_back_gets_its_download_path_back(world):  # noqa: F811
    """Without ATM, the download path the repair cleared (lesson 2) is set again once it is back."""
    w = world
    lib = _lose_files(w)
    plan, to_path = _relocating_plan(w, lib)
    w.qbt.t[H1].download_path = "/downloads/incomplete"
    w.qbt.fail_at[to_path] = 0.5
    summary = w.executor().apply(plan)
    assert summary.groups_failed
    t = w.qbt.torrent(H1)
    assert t.save_path == w.seed_s and t.download_path == "/downloads/incomplete" and t.auto_tmm is False
    mine = [c for c in w.qbt.calls if c[0] in ("set_location", "set_download_path")]
    assert mine == [
        ("set_download_path", H1, ""),
        ("set_location", H1, to_path),
        ("set_location", H1, w.seed_s),
        ("set_download_path", H1, "/downloads/incomplete"),
    ]
    assert _violations(w.qbt) == []


def test_a_resumed_close_gives_the_settings_back_after_a_kill_right_after_the_move_back(world):  # noqa: F811
    """Killed once the move back is journaled done, before the settings came back: the resumed
    close finds the torrent back (``_move_back`` done) and gives them back then."""
    w = world
    lib = _lose_files(w)
    plan, to_path = _relocating_plan(w, lib)
    w.qbt.t[H1].download_path = "/downloads/incomplete"
    w.qbt.fail_at[to_path] = 0.5
    real = w.qbt.set_download_path

    def killed(h, path):
        if path:
            raise Crash()
        return real(h, path)

    w.qbt.set_download_path = killed
    with pytest.raises(Crash):
        w.executor().apply(plan)
    assert w.qbt.t[H1].save_path == w.seed_s and w.qbt.t[H1].download_path == ""
    w.qbt.set_download_path = real
    w.executor().resume()
    assert w.qbt.t[H1].save_path == w.seed_s and w.qbt.t[H1].download_path == "/downloads/incomplete"
