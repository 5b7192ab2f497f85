"""A quarantine's journal read back: after a crash (finish_quarantine) and as input (a bad row).

Review findings (R1): a quarantine killed between its link into holding and the unlink of the
original could never be finished (the original's second link, its own, failed the link count
check; the held link was tracked by nothing, the original classed "library" for good); and a
journal row of the wrong shape (a hand edit, a half-written row) was a traceback in the
listing, in every run's purge after its work, and in the finish of a dead quarantine.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from qbhook.decide.plan import Plan, RunStatus, StepStatus
from qbhook.errors import OrphansRefused, UnsafeOperation
from qbhook.move import fsops, orphans
from qbhook.move.fsops import HOLDING_DIR
from qbhook.move.journal import Journal
from tests.helpers import write
from tests.unit.test_cli_catalog import Env
from tests.unit.test_executor import FakeTorrent, demote_plan
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_orphans_purge import expire, keep_seeding, quarantine_one, unreachable, world  # noqa: F401  (fixture)


class _Died(BaseException):
    """The process dying between two lines (a SIGKILL, a power cut): nothing after it runs."""


def _dies_at_hold_of(monkeypatch, name: bytes, shape: str):
    """The hold of ``name`` dies at its act. ``link``: the state a hold of an older qbhook (link into
    holding, then unlink) left when it died between the two: both names link the file. ``rename``:
    right after this hold's one rename, before anything is journaled of it."""
    real = fsops._rename_noreplace

    def rename(src, sfd, dst, dfd):
        if src != name:
            return real(src, sfd, dst, dfd)
        monkeypatch.setattr(fsops, "_rename_noreplace", real)
        if shape == "link":
            os.link(src, dst, src_dir_fd=sfd, dst_dir_fd=dfd)
        else:
            real(src, sfd, dst, dfd)
        raise _Died

    monkeypatch.setattr(fsops, "_rename_noreplace", rename)


def _tree(top: str) -> dict[str, tuple[int, int]]:
    """Every file below ``top`` with its (inode, links)."""
    out = {}
    for dp, _dn, fn in os.walk(top):
        for f in fn:
            st = os.lstat(os.path.join(dp, f))
            out[os.path.join(dp, f)] = (st.st_ino, st.st_nlink)
    return out


# Review r4: a file dated before 1970 has a negative st_mtime_ns, journaled as is; the resume
# called it unreadable, closed the step failed and left its own half-made link untracked.
@pytest.mark.parametrize("mtime_ns", [None, -(10**9)], ids=["dated-now", "dated-1969"])
@pytest.mark.parametrize("finisher", ["the next quarantine", "resume"])
@pytest.mark.parametrize("shape", ["link", "rename"])
def test_a_quarantine_killed_between_its_link_into_holding_and_the_unlink_is_finished(
    world,  # noqa: F811
    monkeypatch,
    finisher,
    mtime_ns,
    shape,
):
    w = world
    path = write(os.path.join(w.seed_s, "old/Gone.2019/gone.mkv"), b"orphaned bytes" * 100)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    _dies_at_hold_of(monkeypatch, b"gone.mkv", shape)
    with pytest.raises(_Died):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    (run,) = w.journal.unfinished_runs()
    held_at = os.path.join(w.seed_s, HOLDING_DIR, str(run.id), "old/Gone.2019/gone.mkv")
    if shape == "link":  # the crash's state
        assert os.stat(path).st_nlink == 2 and os.path.samefile(path, held_at)
    else:
        assert not os.path.lexists(path) and os.stat(held_at).st_nlink == 1
    before = {p: v for p, v in _tree(w.stash).items() if p not in (path, held_at)}

    if finisher == "resume":
        (summary,) = w.executor().resume()
        assert summary.status == RunStatus.DONE
    else:
        assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).run_id is None  # nothing else to hold

    assert w.journal.run(run.id).status == RunStatus.DONE
    (step,) = w.journal.steps(run.id)
    assert step.status == StepStatus.DONE and step.result["status"] == "held" and step.error is None
    (h,) = w.journal.held_links()
    assert (h.origin, h.path, h.key) == (path, held_at, step.id)
    assert not os.path.lexists(path) and os.stat(held_at).st_nlink == 1
    assert {p: v for p, v in _tree(w.stash).items() if p != held_at} == before  # nothing else changed
    # ...and tracked, so purgeable once its grace period is over
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.error is None and out.refused is None and out.kept == []
    assert w.journal.held_links() == [] and not os.path.lexists(held_at)


def test_the_hold_takes_its_own_half_made_link_only_when_resumed(tmp_path):
    """``fsops.hold_unreferenced(resumed=True)``: the one extra link allowed is the run's own
    holding entry of that path, looked up through the verified holding folder."""
    root = tmp_path / "seed"
    f = write(str(root / "old/x.bin"), b"x" * 100)
    st = os.lstat(f)
    facts = {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "max_nlink": 1, "roots": (root,)}
    own = root / HOLDING_DIR / "7/old"
    own.mkdir(parents=True, mode=0o700)
    for d in (root / HOLDING_DIR, root / HOLDING_DIR / "7"):
        d.chmod(0o700)
    os.link(f, own / "x.bin")  # the link a hold of run 7 made before it died
    with pytest.raises(UnsafeOperation, match="2 links now"):
        fsops.hold_unreferenced(f, **facts, run=7)  # not resuming: refused as before
    with pytest.raises(UnsafeOperation, match="2 links now"):
        fsops.hold_unreferenced(f, **facts, run=8, resumed=True)  # another run's entry is not its own
    res = fsops.hold_unreferenced(f, **facts, run=7, resumed=True)
    assert res["status"] == "held" and res["held_at"] == str(own / "x.bin")
    assert not os.path.lexists(f) and os.stat(own / "x.bin").st_nlink == 1


@pytest.mark.parametrize("meanwhile", ["a library linked it too", "another file in its holding place"])
def test_a_resumed_hold_still_refuses_any_other_extra_link(world, monkeypatch, tmp_path, meanwhile):  # noqa: F811
    """The boundary of the above (refused on the base too): only the run's own entry of the same
    inode counts; the original stays, the step closes failed, nothing is tracked."""
    w = world
    path = write(os.path.join(w.seed_s, "old/Gone.2019/gone.mkv"), b"orphaned bytes" * 100)
    _dies_at_hold_of(monkeypatch, b"gone.mkv", "link")
    with pytest.raises(_Died):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    (run,) = w.journal.unfinished_runs()
    held_at = os.path.join(w.seed_s, HOLDING_DIR, str(run.id), "old/Gone.2019/gone.mkv")
    os.makedirs(w.lib, exist_ok=True)
    if meanwhile == "a library linked it too":
        os.link(path, os.path.join(w.lib, "gone.mkv"))
    else:
        os.unlink(held_at)
        write(held_at, b"another file")
        os.link(path, os.path.join(w.lib, "gone.mkv"))  # still two links, neither its own

    orphans.finish_quarantine(w.cfg, w.journal, run.id, lambda: [w.qbt])

    (step,) = w.journal.steps(run.id)
    assert step.status == StepStatus.FAILED and "links now" in step.error
    assert os.path.exists(path) and w.journal.held_links() == []


# --------------------------------------------------------------------------- a bad row


BAD_HELD = {
    "ino not a number": "UPDATE steps SET args=json_set(args, '$.ino', 'abc') WHERE id=?",
    "size not a number": "UPDATE steps SET args=json_set(args, '$.size', 1.5) WHERE id=?",
    "path not a text": "UPDATE steps SET args=json_set(args, '$.path', 5) WHERE id=?",
    "keep not an object": "UPDATE steps SET args=json_set(args, '$.keep', 'x') WHERE id=?",
    "holding not a pair": "UPDATE steps SET result=json_set(result, '$.holding', 7) WHERE id=?",
    "holding of texts": "UPDATE steps SET result=json_set(result, '$.holding', json('[1, \"a\"]')) WHERE id=?",
    "held_at missing": "UPDATE steps SET result=json_remove(result, '$.held_at') WHERE id=?",
    "held_at not a text": "UPDATE steps SET result=json_set(result, '$.held_at', 12) WHERE id=?",
    "blake3 not a text": "UPDATE steps SET result=json_set(result, '$.blake3', 3) WHERE id=?",
    "args not json": "UPDATE steps SET args='{not json' WHERE id=?",
    "finished_at a text": "UPDATE steps SET finished_at='soon' WHERE id=?",
    # Review r4: "held forever ago" purged at once, without its grace period (a NaN is stored NULL).
    "finished_at far past": "UPDATE steps SET finished_at=-1e300 WHERE id=?",
    "finished_at null": "UPDATE steps SET finished_at=NULL WHERE id=?",
    "finished_at far future": "UPDATE steps SET finished_at=1e300 WHERE id=?",
    # Review r4: a NUL byte raised ValueError from a stat in every run's purge.
    "held_at with a NUL": (
        "UPDATE steps SET result=json_set(result, '$.held_at', result->>'$.held_at' || char(0)) WHERE id=?"
    ),
    "path with a NUL": "UPDATE steps SET args=json_set(args, '$.path', args->>'$.path' || char(0)) WHERE id=?",
}


@pytest.mark.parametrize("edit", list(BAD_HELD.values()), ids=list(BAD_HELD))
def test_a_held_row_that_cannot_be_read_is_named_never_purged_and_stops_nothing_else(world, edit):  # noqa: F811
    w = world
    bad_origin = write(os.path.join(w.seed_s, "old/Bad/bad.mkv"), b"bad row" * 100)
    write(os.path.join(w.seed_s, "old/Good/good.mkv"), b"good row" * 100)
    assert len(orphans.quarantine(w.cfg, w.cat, [w.qbt]).held) == 2
    (bad,) = [h for h in w.journal.held_links() if h.origin == bad_origin]
    (good_at,) = [h.path for h in w.journal.held_links() if h.origin != bad_origin]
    bad_at = bad.path
    w.cat.conn.execute(edit, (bad.key,))
    w.cat.conn.commit()

    assert [h.path for h in w.journal.held_links()] == [good_at]
    (u,) = w.journal.unreadable_held()
    assert u.step == bad.key and f"journal step {bad.key}:" in u.line() and "\n" not in u.line()
    assert [h.path for h in orphans.holding(w.cfg, w.cat)] == [good_at]  # the listing
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.error is None and out.refused is None
    assert not os.path.lexists(good_at) and os.path.exists(bad_at)  # what cannot be read stays
    assert [u.step for u in w.journal.unreadable_held()] == [bad.key]


def test_every_run_s_purge_skips_a_bad_row_and_says_so(world, caplog):  # noqa: F811
    """``Executor._purge_holding`` runs after every apply and repair: it raised TypeError there."""
    w = world
    _path, at = quarantine_one(w)
    (h,) = w.journal.held_links()
    w.cat.conn.execute("UPDATE steps SET result=json_set(result, '$.holding', 7) WHERE id=?", (h.key,))
    w.cat.conn.commit()
    expire(w)

    summary = w.executor().apply(demote_plan(w), trigger="repair")

    assert summary.status == RunStatus.DONE and os.path.exists(at)
    assert any(f"journal step {h.key}: its held link cannot be read" in r.getMessage() for r in caplog.records)


BAD_INTENDED = {
    "path null": ("$.path", "null", "its path cannot be read (got None)"),
    "path a number": ("$.path", "5", "its path cannot be read (got 5)"),
    "frees a text": ("$.frees", '"x"', "its frees cannot be read"),
    "ino a bool": ("$.ino", "true", "its ino cannot be read"),
    "path with a NUL": (
        "$.path",
        '"/x/go\\u0000ne.mkv"',
        "its path cannot be read (path is '/x/go\\x00ne.mkv', with a NUL",
    ),
}


@pytest.mark.parametrize("field, value, why", list(BAD_INTENDED.values()), ids=list(BAD_INTENDED))
def test_finishing_a_dead_quarantine_closes_a_step_it_cannot_read_as_failed(world, monkeypatch, field, value, why):  # noqa: F811
    w = world
    path = write(os.path.join(w.seed_s, "old/x.mkv"), b"o" * 100)
    monkeypatch.setattr(fsops, "hold_unreferenced", lambda *a, **k: (_ for _ in ()).throw(_Died()))
    with pytest.raises(_Died):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    monkeypatch.undo()
    (run,) = w.journal.unfinished_runs()
    w.cat.conn.execute("UPDATE steps SET args=json_set(args, ?, json(?)) WHERE run=?", (field, value, run.id))
    w.cat.conn.commit()

    res = orphans.finish_quarantine(w.cfg, w.journal, run.id, lambda: [w.qbt])

    (step,) = w.journal.steps(run.id)
    assert step.status == StepStatus.FAILED and step.error.startswith(f"journal step {step.id}: ")
    assert why in step.error and list(res.failed.values()) == [step.error]
    assert w.journal.run(run.id).status == RunStatus.FAILED and os.path.exists(path)  # untouched


def test_a_hold_the_os_refuses_with_value_error_closes_its_step_failed_in_one_line(world, monkeypatch):  # noqa: F811
    """Review r4: ``_hold_one`` caught only UnsafeOperation and OSError; a path os refuses
    (ValueError: embedded null character) was a traceback out of ``finish_quarantine``."""
    w = world
    path = write(os.path.join(w.seed_s, "old/x.mkv"), b"o" * 100)
    monkeypatch.setattr(fsops, "hold_unreferenced", lambda *a, **k: (_ for _ in ()).throw(_Died()))
    with pytest.raises(_Died):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    (run,) = w.journal.unfinished_runs()
    monkeypatch.setattr(fsops, "hold_unreferenced", lambda *a, **k: os.stat("a\x00b"))

    res = orphans.finish_quarantine(w.cfg, w.journal, run.id, lambda: [w.qbt])

    (step,) = w.journal.steps(run.id)
    assert step.status == StepStatus.FAILED and "\n" not in step.error
    assert step.error == f"{path!r} cannot be looked up (embedded null byte): not held"
    assert res.failed == {path: step.error} and os.path.exists(path)


def test_holding_lists_with_a_bad_row_and_warns_in_one_line(tmp_path):
    env = Env(tmp_path)
    env.run("scan")
    conn = sqlite3.connect(env.catalog)
    j = Journal(conn)
    run = j.start_run(Plan(groups=[]).to_dict(), orphans.QUARANTINE_TRIGGER)
    held = str(env.stash / "seeding" / HOLDING_DIR / str(run))
    for seq, holding in enumerate([[1, 2], 7]):
        sid = j.intend_record(run, seq, "orphans", "delete", {"path": f"/x/{seq}", "ino": 5, "orphan": True})
        j.done(sid, {"status": "held", "held_at": f"{held}/{seq}", "holding": holding})
    j.finish_run(run, "done", {})
    conn.close()

    r = env.run("holding", expect=0)
    assert r.exception is None
    assert f"{held}/0" in r.stdout and r.stdout.splitlines()[-1] == "1 link(s) in holding"
    (line,) = [x for x in r.stderr.splitlines() if "journal step" in x]
    assert line.startswith(f"qbhook: warning: journal step {sid}: its held link cannot be read (holding is 7")
    data = json.loads(env.run("--json", "holding").stdout)
    assert [h["path"] for h in data["held"]] == [f"{held}/0"]
    assert [u["step"] for u in data["unreadable"]] == [sid]


# --------------------------------------------------------------------------- asked again before finishing

XSEED = "f" * 40


def _died_before_its_hold(w, monkeypatch) -> tuple[str, int]:
    """An old orphan, a quarantine that journaled its hold and died before acting: (its path, the run)."""
    path = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    os.utime(path, (1, 1))  # old: not young to any listing
    monkeypatch.setattr(fsops, "hold_unreferenced", lambda *a, **k: (_ for _ in ()).throw(_Died()))
    with pytest.raises(_Died):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    monkeypatch.undo()
    (run,) = w.journal.unfinished_runs()
    return path, run.id


@pytest.mark.parametrize("finisher", ["the next quarantine", "resume"])
def test_a_died_quarantine_is_not_finished_onto_a_torrent_linked_since(world, monkeypatch, finisher):  # noqa: F811
    """Review R22: the finish held the open step by the facts on disk alone (inode, size, mtime,
    links); cross-seed's symlink mode, injecting a complete torrent onto the orphan meanwhile,
    changes none of them. The seeding torrent's data went into holding. Now the clients are asked
    first, and the step is closed failed, the file left in place, the user told why."""
    w = world
    path, run = _died_before_its_hold(w, monkeypatch)
    xdir = os.path.join(w.seed_s, "xseed/Film")
    os.makedirs(xdir)
    os.symlink(path, os.path.join(xdir, "film.mkv"))
    w.qbt.add(FakeTorrent(XSEED, "Film", os.path.dirname(xdir), [("Film/film.mkv", 4000, 1)]))  # complete
    assert orphans.find_orphans(w.cfg, [w.qbt]).orphans == []  # what a listing says now: in use

    if finisher == "resume":
        (summary,) = w.executor().resume()
        assert summary.run_id == run and summary.status == RunStatus.FAILED and summary.skipped is None
    else:
        res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
        assert res.run_id is None and res.held == []
        assert list(res.failed) == [path] and "in use since the quarantine began" in res.failed[path]

    assert os.path.exists(path) and os.path.exists(os.path.join(xdir, "film.mkv"))  # still seeding
    assert [h for h in w.journal.held_links() if h.orphan] == []
    (step,) = w.journal.steps(run)
    assert step.status == StepStatus.FAILED and "in use since the quarantine began" in step.error
    assert w.journal.unfinished_runs() == [] and w.journal.run(run).status == RunStatus.FAILED


STUCK = "a torrent stuck moving elsewhere"
CANNOT_SAY = ["unreachable", "lists no torrents", STUCK]


def _cannot_say(w, client: str):
    """The clients' listing cannot say, the way ``client`` names; a function that brings it back."""
    real = w.qbt.torrents
    if client == STUCK:
        # qBittorrent's known torrent stuck "moving" for good (``executor._stuck``), an unrelated one
        w.qbt.add(FakeTorrent("e" * 40, "Other", "/elsewhere", [("Other/x", 10, 1)], transient="moving"))
        return lambda: w.qbt.t.pop("e" * 40)
    w.qbt.torrents = unreachable().torrents if client == "unreachable" else (lambda *_a, **_k: [])
    return lambda: setattr(w.qbt, "torrents", real)


def _finish_blind(w, finisher: str, run: int) -> None:
    """Finish the died ``run`` while the clients cannot say: it ends all the same."""
    if finisher == "resume":
        (summary,) = w.executor().resume()
        assert summary.run_id == run and summary.skipped is None
    else:
        with pytest.raises(OrphansRefused):  # the new quarantine's own listing: after the finish
            orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert w.journal.unfinished_runs() == [] and w.executor().unfinished() == ()


@pytest.mark.parametrize("client", CANNOT_SAY)
@pytest.mark.parametrize("finisher", ["the next quarantine", "resume"])
def test_a_died_quarantine_ends_unheld_while_the_clients_cannot_say(world, monkeypatch, finisher, client):  # noqa: F811
    """Review R23: a listing that cannot say left the run open (w40), and an open run refuses every
    ``apply`` (UnfinishedRuns): one unrelated torrent stuck "moving" in qBittorrent, which can last
    for good, stopped qbhook for good. Now nothing in place is held blind, yet the run ends: the
    step closed failed, its file left where it is, for a later quarantine to hold."""
    w = world
    path, run = _died_before_its_hold(w, monkeypatch)
    back = _cannot_say(w, client)

    _finish_blind(w, finisher, run)

    assert os.path.exists(path) and w.journal.held_links() == []  # nothing moved
    (step,) = w.journal.steps(run)
    assert step.status == StepStatus.FAILED and "\n" not in step.error, step.error
    assert step.error.startswith("not held: the clients could not be listed (refusing to "), step.error
    assert w.journal.run(run).status == RunStatus.FAILED
    summary = w.executor().apply(demote_plan(w))  # not refused: UnfinishedRuns before
    assert summary.run_id is not None and summary.run_id != run
    keep_seeding(w, w.seed_s)  # the demote moved every torrent out of it

    back()  # the client is back: the orphan, still unused, is held by a new quarantine
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [path] and res.run_id != run and not os.path.exists(path)


@pytest.mark.parametrize("finisher", ["the next quarantine", "resume"])
@pytest.mark.parametrize("shape", ["rename", "link"])
def test_a_died_hold_is_finished_without_a_listing_as_far_as_it_got(world, monkeypatch, finisher, shape):  # noqa: F811
    """The same, for a hold that had acted when it died. ``rename``: its file already in holding is
    recorded held (the purge asks the clients again, ``screen_held``). ``link``: an older
    qbhook's hold, killed between its link into holding and the unlink, left the file in place
    and a second link of it at its holding name: that spare goes, the file stays, unheld."""
    w = world
    path = write(os.path.join(w.seed_s, "old/Gone.2019/gone.mkv"), b"orphaned bytes" * 100)
    _dies_at_hold_of(monkeypatch, b"gone.mkv", shape)
    with pytest.raises(_Died):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    (run,) = w.journal.unfinished_runs()
    held_at = os.path.join(w.seed_s, HOLDING_DIR, str(run.id), "old/Gone.2019/gone.mkv")
    _cannot_say(w, STUCK)
    before = {p: v for p, v in _tree(w.stash).items() if p not in (path, held_at)}

    _finish_blind(w, finisher, run.id)

    (step,) = w.journal.steps(run.id)
    if shape == "rename":
        assert step.status == StepStatus.DONE and step.result["status"] == "held"
        (h,) = w.journal.held_links()
        assert (h.origin, h.path) == (path, held_at) and not os.path.lexists(path)
        assert w.journal.run(run.id).status == RunStatus.DONE
    else:
        assert step.status == StepStatus.FAILED and step.error.startswith("not held: the clients could not")
        assert w.journal.held_links() == [] and not os.path.lexists(held_at)  # the spare is gone
        assert os.stat(path).st_nlink == 1 and Path(path).read_bytes() == b"orphaned bytes" * 100
        assert w.journal.run(run.id).status == RunStatus.FAILED
    assert {p: v for p, v in _tree(w.stash).items() if p not in (path, held_at)} == before  # nothing else


@pytest.mark.parametrize("finisher", ["the next quarantine", "resume"])
def test_a_half_made_hold_of_a_file_in_use_since_leaves_no_spare_in_holding(world, monkeypatch, finisher):  # noqa: F811
    """An older qbhook's hold killed between its link into holding and the unlink left the file in
    place and a second link of it in holding; a torrent linked the file since (cross-seed): the
    step is closed "in use since", the file stays, and the spare goes too (left, it was named by
    no journal row and made every later hold or delete of the inode refuse an unknown link)."""
    w = world
    path = write(os.path.join(w.seed_s, "old/Gone.2019/gone.mkv"), b"orphaned bytes" * 100)
    _dies_at_hold_of(monkeypatch, b"gone.mkv", "link")
    with pytest.raises(_Died):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    (run,) = w.journal.unfinished_runs()
    held_at = os.path.join(w.seed_s, HOLDING_DIR, str(run.id), "old/Gone.2019/gone.mkv")
    assert os.stat(path).st_nlink == 2 and os.path.samefile(path, held_at)
    xdir = os.path.join(w.seed_s, "xseed/Gone")
    os.makedirs(xdir)
    os.symlink(path, os.path.join(xdir, "gone.mkv"))
    w.qbt.add(FakeTorrent(XSEED, "Gone", os.path.dirname(xdir), [("Gone/gone.mkv", 1400, 1)]))  # complete

    if finisher == "resume":
        (summary,) = w.executor().resume()
        assert summary.run_id == run.id and summary.status == RunStatus.FAILED
    else:
        orphans.quarantine(w.cfg, w.cat, [w.qbt])

    (step,) = w.journal.steps(run.id)
    assert step.status == StepStatus.FAILED and "in use since the quarantine began" in step.error, step.error
    assert not os.path.lexists(held_at) and w.journal.held_links() == []  # the spare is gone
    assert os.stat(path).st_nlink == 1 and Path(path).read_bytes() == b"orphaned bytes" * 100


@pytest.mark.parametrize("gone", ["deleted", "replaced"])
def test_a_half_made_holds_spare_is_kept_when_its_name_goes_as_it_is_dropped(tmp_path, monkeypatch, gone):
    """Review R25: ``kept_in_place`` looked at the name in place, closed its folder, then dropped
    the holding entry of that inode: the name deleted (or replaced) in between left the entry the
    last link, and it was unlinked. Now the name is looked at again through the folder held open,
    right before, and the entry must be a second link: else it is kept."""
    root = tmp_path / "seed"
    f = write(root / "old/x.bin", b"x" * 100)
    own = root / HOLDING_DIR / "7" / "old"
    own.mkdir(parents=True)
    for d in (root / HOLDING_DIR, root / HOLDING_DIR / "7", own):
        d.chmod(0o700)
    os.link(f, own / "x.bin")  # a half-made hold's spare
    ino = os.lstat(f).st_ino
    real = fsops._open_holding_id

    def racing(*a, **k):
        os.unlink(f)  # a person deletes the name in that window
        if gone == "replaced":
            write(f, b"new")
        return real(*a, **k)

    monkeypatch.setattr(fsops, "_open_holding_id", racing)
    fsops.kept_in_place(str(f), ino=ino, roots=(str(root),), run=7)
    assert (own / "x.bin").read_bytes() == b"x" * 100  # the data's last link, kept
