"""A resumed repair whose finished make steps' files are gone makes them again (R105).

A repair group's link or empty file, finished in an earlier attempt, may be gone when the group
resumes: a cross-seeding twin's repair group at the same save path failed since and took the files
this group had only found there (``already``: never held for it, R103), or a person removed them
while qbhook was down. The group used to replay the step as done and fail at its view ("is
missing") for good. It now makes the file again by the same verified act as a first make, after the
same write-place check (``Executor._repair_files_gone``). A file at the name (another inode or
not) is never replaced: the view judges it. The library file is never written.

Against the parent (06ecfb8) the remake tests fail at verify_view: the file is missing.

R111: a group killed after its Repair step ended (recheck, start) but before verify_group. A file
gone since was made again, the Repair step replayed, and verify_group took a stopped torrent's
100 %, its old recheck's over files gone since, for proof: the group ended done, the torrent
stopped and never rechecked on the files made now. Its Repair step and verify_group now run again
(``Executor._reopen_after_remake``), journaled before the remake, so after a kill too (b156c31
ended the group done with no recheck, or failed it at verify_group on a missingFiles torrent).

R115: such a group whose torrent kept running fails at the remake (not stopped); the clause said a
person started it and to start it, on the files just taken back. It now says the repair started it.

R119: "the repair started it" was read off the Repair row's result, wrong both ways: kept by the
remake's reopen, a torrent a person started after this run saw it stopped was said the repair's;
missing after a kill between the start and the outcome, one the repair started was said a person's.
``_started`` is journaled right before the start, ``_seen_stopped`` when a look sees it stopped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qbhook.decide.repair import NOT_AS_FOUND
from qbhook.move.locks import group_lock
from tests.unit.test_executor import FILES, H1, H2, Crash, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_repair_executor import _linked_from_library, _lose_files, _missing_pair, _plan
from tests.unit.test_repair_write_place import _refused_once, _twins
from tests.unit.test_write_place_live import WRITE_PLACE  # noqa: F401  (what _refused_once reads)

MOVIE = FILES[0][0]
REPAIR_STARTED = (
    "started by this repair after its recheck, stopped again as the group failed and the files it made "
    "under it were taken back: do not start it, run qbhook repair again"
)


def _library_as_it_was(lib: dict[str, str]) -> dict[str, tuple]:
    return {rel: (os.lstat(p).st_ino, Path(p).read_bytes()) for rel, p in lib.items()}


def _killed_before_the_recheck(w, lib):
    """One repair (H1) that made its view and was killed before its recheck."""
    plan = _plan(w, lib)

    def kill(point, _gid, _seq, step):
        if point == "before" and step.kind == "repair":
            raise Crash

    with pytest.raises(Crash):
        w.executor(hook=kill).apply(plan)
    _linked_from_library(w, lib)
    return plan


@pytest.mark.parametrize("progress", [1.0, 0.5], ids=["recheck-100", "recheck-50"])
def test_a_resumed_repair_makes_the_files_gone_since_again(world, progress):  # noqa: F811
    w = world
    lib = _lose_files(w)
    _killed_before_the_recheck(w, lib)
    before = _library_as_it_was(lib)
    for rel, _data in FILES:
        os.unlink(os.path.join(w.seed_s, rel))  # gone while qbhook was down (the library keeps its own)
    w.qbt.fail_at[w.seed_s] = progress
    (run,) = w.executor().resume()
    assert _library_as_it_was(lib) == before
    if progress == 1.0:
        assert run.groups_done and not run.groups_failed, run.groups_failed
        _linked_from_library(w, lib)
        assert w.qbt.t[H1].progress == 1.0 and not w.qbt.t[H1].stopped
        return
    # Made again by this group, so its undo takes them back: no library inode left under it.
    (reason,) = run.groups_failed.values()
    assert "50.0%" in reason, reason
    assert not any(os.path.lexists(os.path.join(w.seed_s, rel)) for rel, _d in FILES)
    assert all(os.lstat(p).st_nlink == 1 for p in lib.values())


def test_another_file_at_a_finished_links_name_is_never_replaced(world):  # noqa: F811
    w = world
    lib = _lose_files(w)
    _killed_before_the_recheck(w, lib)
    dst = os.path.join(w.seed_s, MOVIE)
    os.unlink(dst)
    with open(dst, "wb") as f:
        f.write(b"someone's own file")
    ino = os.lstat(dst).st_ino
    (run,) = w.executor().resume()
    (reason,) = run.groups_failed.values()
    assert reason.startswith("verify_view failed"), reason
    assert os.lstat(dst).st_ino == ino and Path(dst).read_bytes() == b"someone's own file"
    assert all(os.lstat(p).st_nlink == 1 for p in lib.values())


def test_a_twin_whose_found_links_its_failed_twin_took_is_judged_again(world):  # noqa: F811
    """R105: gA (H1) links, is killed; resumed, gA is busy while gB (H2) finds gA's links
    (``already``) and is killed; resumed again, gA's recheck ends at 50 % and it takes its links.
    gB makes them again only through the write-place check: H1, stopped under 100 % on those very
    names by its failed repair, is no twin any more (R99) and may write there, so gB is refused
    in one line naming it (the parent failed at its view: the files were missing). Never a
    library link left under H1."""
    w = world
    lib, before, ga, gb, hook = _twin_found_the_links_then_its_twin_fails(w)
    (run,) = w.executor(hook=hook).resume()
    reasons = run.groups_failed
    assert "50.0%" in reasons[ga], reasons
    _refused_once(reasons[gb], os.path.join(w.seed_s, MOVIE), f"({H1[:8]} on qbt), not settled (stoppedDL, 50%)")
    assert _library_as_it_was(lib) == before
    assert all(os.lstat(p).st_nlink == 1 for p in lib.values())
    assert w.qbt.t[H2].stopped


def test_a_twin_whose_failed_twin_is_gone_finishes_on_its_links_made_again(world):  # noqa: F811
    """R105 as above, but H1 is removed from qBittorrent after its failed repair: nothing else may
    write at gB's names, and gB makes its links again and finishes at 100 %."""
    w = world
    lib, before, ga, gb, hook = _twin_found_the_links_then_its_twin_fails(w)
    with group_lock(w.cfg, gb):  # gA fails first, alone
        (run,) = w.executor(hook=hook, group_lock_wait=0.01).resume()
    assert "50.0%" in run.groups_failed[ga], run.groups_failed
    del w.qbt.t[H1]  # a person removed the failed torrent
    (run,) = w.executor(hook=hook).resume()
    assert run.groups_done == [gb], run.groups_failed
    assert w.qbt.t[H2].progress == 1.0 and not w.qbt.t[H2].stopped
    assert _library_as_it_was(lib) == before
    for rel, p in lib.items():
        assert os.lstat(os.path.join(w.seed_s, rel)).st_ino == os.lstat(p).st_ino


def _killed_after_the_repair_step(w, lib, state: str) -> str:
    """H1's repair killed right before verify_group (its recheck and start done); while qbhook is
    down the view's movie goes and H1 is stopped (stoppedUP: qBittorrent still shows the 100 % of
    before), shows missingFiles, or keeps running (stalledUP). -> the gone file's path."""

    def kill(point, _gid, _seq, step):
        if point == "before" and step.kind == "verify_group":
            raise Crash

    with pytest.raises(Crash):
        w.executor(hook=kill).apply(_plan(w, lib))
    t = w.qbt.t[H1]
    assert not t.stopped and t.progress == 1.0  # started by the finished Repair step
    gone = os.path.join(w.seed_s, MOVIE)
    os.unlink(gone)
    if state == "stoppedUP":
        t.stopped = True
    elif state == "missingFiles":
        t.transient = "missingFiles"
    w.qbt.calls.clear()
    return gone


@pytest.mark.parametrize("state", ["stoppedUP", "missingFiles"])
def test_a_file_made_again_after_the_repair_step_is_rechecked_before_the_group_is_done(world, state):  # noqa: F811
    w = world
    lib = _lose_files(w)
    before = _library_as_it_was(lib)
    _killed_after_the_repair_step(w, lib, state)
    (run,) = w.executor().resume()
    assert run.groups_done and not run.groups_failed, run.groups_failed
    calls = [c[0] for c in w.qbt.calls]
    assert calls[-2:] == ["recheck", "start"], calls  # rechecked on the file made now, then started
    assert w.qbt.torrent(H1).state == "stalledUP" and w.qbt.t[H1].progress == 1.0
    _linked_from_library(w, lib)
    assert _library_as_it_was(lib) == before


def test_a_file_made_again_whose_recheck_fails_never_ends_the_group_done(world):  # noqa: F811
    w = world
    lib = _lose_files(w)
    _killed_after_the_repair_step(w, lib, "stoppedUP")
    w.qbt.fail_at[w.seed_s] = 0.5
    (run,) = w.executor().resume()
    assert not run.groups_done
    (reason,) = run.groups_failed.values()
    assert "50.0%" in reason, reason
    assert "recheck" in [c[0] for c in w.qbt.calls] and w.qbt.t[H1].stopped
    assert all(os.lstat(p).st_nlink == 1 for p in lib.values())  # what it made taken back


def test_a_kill_after_the_file_is_made_again_still_rechecks_on_resume(world):  # noqa: F811
    """The remake journaled its reason first: killed once the file is there again (nothing gone
    any more on the next resume), the Repair step still runs again instead of being replayed."""
    w = world
    lib = _lose_files(w)
    _killed_after_the_repair_step(w, lib, "stoppedUP")

    def kill(point, _gid, _seq, step):
        if point == "before" and step.kind == "verify_view":
            raise Crash  # the movie made again, nothing after it run

    with pytest.raises(Crash):
        w.executor(hook=kill).resume()
    assert "recheck" not in [c[0] for c in w.qbt.calls]
    (run,) = w.executor().resume()
    assert run.groups_done and not run.groups_failed, run.groups_failed
    assert [c[0] for c in w.qbt.calls][-2:] == ["recheck", "start"]
    assert not w.qbt.t[H1].stopped and w.qbt.t[H1].progress == 1.0
    _linked_from_library(w, lib)


def test_a_torrent_its_own_repair_step_started_is_never_said_started_by_a_person(world):  # noqa: F811
    """R115: the Repair step ended (recheck, start), the movie went while qbhook was down and H1
    kept running. Resumed, the remake is refused (stalledUP, not stopped), the group fails and the
    files it made are taken back. The reason told a person H1 was "started during the repair"
    and to "start it yourself", on files just removed: qbhook's own Repair step started it."""
    w = world
    lib = _lose_files(w)
    _killed_after_the_repair_step(w, lib, "stalledUP")
    (run,) = w.executor().resume()
    (reason,) = run.groups_failed.values()
    assert "stalledUP now, not stopped" in reason, reason
    assert w.qbt.t[H1].stopped
    assert all(os.lstat(p).st_nlink == 1 for p in lib.values())  # what it made taken back
    assert "start it yourself" not in reason and "started during the repair" not in reason, reason
    assert f"{NOT_AS_FOUND}: torrent {H1} is stoppedUP at {w.seed_s}: {REPAIR_STARTED}" in reason, reason


def test_a_torrent_a_person_started_during_the_repair_is_still_said_so(world):  # noqa: F811
    """The other side of R115: started by a person between two of its links, before any Repair
    step ran, the clause still says so (nothing of this repair's own start to tell)."""
    w = world
    lib = _lose_files(w)
    seen = []

    def start(point, _gid, _seq, step):
        if point == "before" and step.kind == "link":
            seen.append(step)
            if len(seen) == 2:
                t = w.qbt.t[H1]
                t.transient, t.stopped = None, False

    (reason,) = w.executor(hook=start).apply(_plan(w, lib)).groups_failed.values()
    assert "now, not stopped" in reason and REPAIR_STARTED not in reason, reason
    assert reason.endswith("started during the repair, stopped with files of ours under it; start it yourself")


def _person_starts_h1_before_link(w, nth: int):
    """A hook: a person starts H1 right before the ``nth`` link step this run makes."""
    seen = []

    def start(point, _gid, _seq, step):
        if point == "before" and step.kind == "link":
            seen.append(step)
            if len(seen) == nth:
                t = w.qbt.t[H1]
                t.transient, t.stopped = None, False

    return start


def test_a_torrent_a_person_stopped_while_down_and_started_again_is_said_a_persons(world):  # noqa: F811
    """R119: the Repair step started H1 and ended; while qbhook was down the movie went and a person
    stopped H1. Resumed, the person starts it again before the remade link: the remake is refused
    (not stopped) and the clause said the repair started it, "do not start it": the Repair row's
    result, kept by the remake's reopen, was read as "started by this repair". The resume saw it
    stopped first (``_repair_look_back``): a person's start, said so."""
    w = world
    lib = _lose_files(w)
    _killed_after_the_repair_step(w, lib, "stoppedUP")
    (run,) = w.executor(hook=_person_starts_h1_before_link(w, 1)).resume()
    (reason,) = run.groups_failed.values()
    assert "stalledUP now, not stopped" in reason, reason
    assert REPAIR_STARTED not in reason, reason
    assert reason.endswith("started during the repair, stopped with files of ours under it; start it yourself")


def test_a_torrent_the_remake_stopped_and_a_person_started_between_two_links_is_said_a_persons(world):  # noqa: F811
    """As above, H1 kept running (missingFiles) while down and two files went: the first remade
    link's look stops it (``_repair_quiet``), a person starts it before the second. Its run is the
    person's start, not the Repair step's of the earlier attempt."""
    w = world
    lib = _lose_files(w)
    _killed_after_the_repair_step(w, lib, "missingFiles")
    os.unlink(os.path.join(w.seed_s, FILES[1][0]))
    (run,) = w.executor(hook=_person_starts_h1_before_link(w, 2)).resume()
    (reason,) = run.groups_failed.values()
    assert "stalledUP now, not stopped" in reason and REPAIR_STARTED not in reason, reason
    assert reason.endswith("started during the repair, stopped with files of ours under it; start it yourself")


def test_a_torrent_the_repair_step_started_right_before_a_kill_is_said_the_repairs(world):  # noqa: F811
    """R119: killed after the Repair step's start but before its outcome was journaled; while down
    the movie went, H1 kept running. Resumed, the remake is refused (not stopped) and H1 stopped
    with the files taken back: the clause said a person started it, "start it yourself" (the R115
    harm: a start downloads into the save path), the row having no result. ``_started`` is
    journaled before the start."""
    w = world
    lib = _lose_files(w)

    def kill(point, _gid, _seq, step):
        if point == "after_act" and step.kind == "repair":
            raise Crash

    with pytest.raises(Crash):
        w.executor(hook=kill).apply(_plan(w, lib))
    assert not w.qbt.t[H1].stopped  # started, its outcome not journaled
    os.unlink(os.path.join(w.seed_s, MOVIE))
    (run,) = w.executor().resume()
    (reason,) = run.groups_failed.values()
    assert "stalledUP now, not stopped" in reason and w.qbt.t[H1].stopped, reason
    assert all(os.lstat(p).st_nlink == 1 for p in lib.values())  # what it made taken back
    assert "start it yourself" not in reason, reason
    assert f"{NOT_AS_FOUND}: torrent {H1} is stoppedUP at {w.seed_s}: {REPAIR_STARTED}" in reason, reason


def test_a_journal_from_before_started_was_journaled_is_judged_by_its_outcome(world):  # noqa: F811
    """R120: a run killed by an older qbhook (no ``_started`` on its Repair row) and resumed after
    the upgrade told a person to start a torrent the repair had started, on files just taken back."""
    w = world
    lib = _lose_files(w)
    _killed_after_the_repair_step(w, lib, "stalledUP")  # killed before verify_group, H1 running
    with w.journal.conn as c:  # the row as the older qbhook wrote it
        c.execute("UPDATE steps SET args = json_remove(args, '$._started') WHERE kind = 'repair'")
    (run,) = w.executor().resume()
    (reason,) = run.groups_failed.values()
    assert REPAIR_STARTED in reason and "start it yourself" not in reason


def _twin_found_the_links_then_its_twin_fails(w):
    """R105's bed: twins H1 (gA) and H2 (gB) repaired at one save path; gA links and is killed
    before its recheck; on a resume gA is busy and gB's links find gA's ("already"), killed too;
    from then on gA's recheck reads 50 % and gB's 100 %. -> (library, as it was, gA, gB, hook)."""
    lib = _twins(w)
    before = _library_as_it_was(lib)
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s)))
    ga, gb = (g.group_id for g in plan.groups)
    act = {ga: "kill", gb: "kill"}

    def hook(point, gid, _seq, step):
        if point == "before" and step.kind == "repair":
            if act.get(gid) == "kill":
                raise Crash
            w.qbt.fail_at[w.seed_s] = 0.5 if act.get(gid) == "fail" else 1.0

    with pytest.raises(Crash):
        w.executor(hook=hook).apply(plan)
    with group_lock(w.cfg, ga), pytest.raises(Crash):
        w.executor(hook=hook, group_lock_wait=0.01).resume()
    act.update({ga: "fail", gb: "ok"})
    return lib, before, ga, gb, hook


REMAKE_STOPPED_IT = (
    "started by this repair after its recheck, stopped by it again when its files were gone, then the group "
    "failed: do not start it, run qbhook repair again"
)


@pytest.mark.parametrize("journal", ["started", "older"])
def test_a_torrent_its_own_repair_step_started_that_the_remake_stopped_is_still_said_the_repairs(world, journal):  # noqa: F811
    """R120: the Repair step started H1 and ended; while qbhook was down the movie went (H1
    missingFiles). Resumed, the remake's look stops H1 itself (``_repair_quiet``), then the view
    fails (another's file at a name of the view). That stop of qbhook's own was journaled as any
    stop seen (``_seen_stopped``), and the clause read the torrent as one the repair may have found
    running: "start it yourself if it did", on files just taken back. It is qbhook's stop of its
    own start (``_stopped_by_us``): said so, never to be started. ``older``: a Repair row from
    before ``_started``, judged by its outcome."""
    w = world
    lib = _lose_files(w)
    _killed_after_the_repair_step(w, lib, "missingFiles")
    if journal == "older":
        with w.journal.conn as c:
            c.execute("UPDATE steps SET args = json_remove(args, '$._started') WHERE kind = 'repair'")
    other = os.path.join(w.seed_s, FILES[1][0])
    os.unlink(other)
    Path(other).write_bytes(b"someone's own file")
    (run,) = w.executor().resume()
    (reason,) = run.groups_failed.values()
    assert w.qbt.t[H1].stopped
    assert "start it yourself" not in reason, reason
    assert reason.endswith(f"{NOT_AS_FOUND}: torrent {H1} is missingFiles at {w.seed_s}: {REMAKE_STOPPED_IT}"), reason
