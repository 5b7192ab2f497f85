"""A failed repair's link it could not take back, under its own torrent stopped under 100 % (R105).

The repair's undo keeps a link a resumed step only found there (``already``: maybe another's) and
journals it as a leftover view. Its torrent names the path and is incomplete: the leftover
remover took that for "in use" and ended its tracking, leaving the library inode under a torrent
one start from downloading into it, for good and out of ``status``. It now stays tracked until
that torrent completes on it or goes, and is removed then (the parent ended it on the first run).

R111: only while a torrent may still write it. One at 100 % of what it wants, skipping another
file, seeds from the view and writes it no more: its tracking ends (``in_use``), as for a complete
torrent (b156c31 kept it tracked for good, "kept" every run). One skipping the view itself may
write it once it is ticked again: kept. And ``status`` says such a view waits for that torrent,
named, not that the next run removes it (b156c31 said so, run after run)."""

from __future__ import annotations

import os

import pytest

from qbhook.cli.events import _leftover_lines
from qbhook.events.status import report
from qbhook.move import leftovers
from tests.unit.test_executor import FILES, H1, Crash, FakeTorrent, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_repair_executor import _lose_files, _plan

MOVIE = FILES[0][0]


def _kept_repair_link(w) -> tuple[str, dict[str, str]]:
    """H1's failed repair (a recheck at 50 %) keeps its link at MOVIE as a leftover view, H1 stopped
    under 100 % on it. -> (the view, rel: library path)."""
    lib = _lose_files(w)

    def kill(point, _gid, _seq, step):
        if point == "after_act" and step.kind == "link":
            raise Crash  # its first link made, its outcome not journaled

    with pytest.raises(Crash):
        w.executor(hook=kill).apply(_plan(w, lib))
    w.qbt.fail_at[w.seed_s] = 0.5
    (run,) = w.executor().resume()
    (why,) = run.groups_failed.values()
    view = os.path.join(w.seed_s, MOVIE)
    assert f"recorded as leftover views): {view}" in why, why
    return view, lib


def _waits_for(w, view: str, torrent: str) -> None:
    """``status`` lists ``view`` as kept for ``torrent``, never as one the next run removes."""
    data = report(w.cfg, w.cat)
    assert data["leftover_views"] == [] and data["leftover_views_kept"] == [{"path": view, "torrent": torrent}]
    assert _leftover_lines(data) == [
        f"leftover view {view}: kept while torrent {torrent} may still write it (until it completes on it or goes)"
    ]


def test_a_kept_repair_link_under_its_stopped_torrent_stays_tracked_until_it_goes(world):  # noqa: F811
    w = world
    view, lib = _kept_repair_link(w)
    assert w.qbt.t[H1].stopped and w.qbt.t[H1].progress == 0.5
    for _ in range(2):  # every later run, while H1 stays stopped under 100 % on it
        (res,) = leftovers.remove_leftover_views(w.cfg, w.cat, [w.qbt])
        assert res["status"] == leftovers.KEPT and res["reason"] == leftovers.INCOMPLETE_USER, res
        assert [v["path"] for v in leftovers.pending(w.cat)] == [view]  # still tracked
        _waits_for(w, view, "Movie.2020")
    assert os.lstat(view).st_ino == os.lstat(lib[MOVIE]).st_ino
    del w.qbt.t[H1]  # a person removed the torrent
    w.qbt.add(FakeTorrent("d" * 40, "Other", os.path.join(w.seed_s, "other"), [("Other/x.mkv", 5, 1)]))
    (res,) = leftovers.remove_leftover_views(w.cfg, w.cat, [w.qbt])
    assert res["status"] == "removed", res
    assert not os.path.lexists(view) and os.lstat(lib[MOVIE]).st_nlink == 1
    assert leftovers.pending(w.cat) == []
    data = report(w.cfg, w.cat)
    assert data["leftover_views"] == data["leftover_views_kept"] == [] and _leftover_lines(data) == []


def _recheck_to_100(w, skipped: str) -> None:
    """A person unticks ``skipped`` (priority 0) in H1 and rechecks it: 100 % of what it wants, seeding."""
    t = w.qbt.t[H1]
    t.transient, t.stopped, t.progress = None, False, 1.0
    t.files = [(n, s, 0 if n == skipped else p) for n, s, p in t.files]


def test_a_view_a_torrent_seeds_from_at_100_of_what_it_wants_ends_as_in_use(world):  # noqa: F811
    """R111: H1 skips its subtitle and seeds the rest from the view: in use, no leftover; kept
    tracked "until it completes" it stayed for good, H1 being complete on all it will ever write."""
    w = world
    view, lib = _kept_repair_link(w)
    _recheck_to_100(w, FILES[1][0])
    assert w.qbt.torrent(H1).state == "stalledUP"
    (res,) = leftovers.remove_leftover_views(w.cfg, w.cat, [w.qbt])
    assert res == {"path": view, "status": "in_use"}
    assert leftovers.pending(w.cat) == [] and leftovers.remove_leftover_views(w.cfg, w.cat, [w.qbt]) == []
    assert os.lstat(view).st_ino == os.lstat(lib[MOVIE]).st_ino  # its seeding file, never taken
    data = report(w.cfg, w.cat)
    assert data["leftover_views"] == data["leftover_views_kept"] == []


def test_a_view_a_torrent_at_100_skips_stays_kept_for_it_until_it_goes(world):  # noqa: F811
    """R111: H1 at 100 % of what it wants, the view its one skipped file: ticked again, H1 writes
    it, so it stays tracked, ``status`` naming H1, until H1 goes; then removed."""
    w = world
    view, lib = _kept_repair_link(w)
    _recheck_to_100(w, MOVIE)
    for _ in range(2):
        (res,) = leftovers.remove_leftover_views(w.cfg, w.cat, [w.qbt])
        kept = {"status": leftovers.KEPT, "reason": leftovers.INCOMPLETE_USER, "torrent": "Movie.2020"}
        assert res == {"path": view, **kept}
        _waits_for(w, view, "Movie.2020")
    del w.qbt.t[H1]
    w.qbt.add(FakeTorrent("d" * 40, "Other", os.path.join(w.seed_s, "other"), [("Other/x.mkv", 5, 1)]))
    (res,) = leftovers.remove_leftover_views(w.cfg, w.cat, [w.qbt])
    assert res["status"] == "removed", res
    assert not os.path.lexists(view) and os.lstat(lib[MOVIE]).st_nlink == 1
    assert report(w.cfg, w.cat)["leftover_views_kept"] == []


def test_a_missing_files_torrent_s_old_100_does_not_end_a_kept_view(world):  # noqa: F811
    """R115: after a restart a missingFiles torrent still shows its old 100 %: skipping a file, its
    wanted files were taken for files it seeds from, and the repair link it could not take back (a
    library inode under it) ended as in_use, out of ``status``. It stays kept for that torrent."""
    w = world
    view, lib = _kept_repair_link(w)
    t = w.qbt.t[H1]
    t.transient, t.stopped, t.progress = "missingFiles", True, 1.0
    t.files = [(n, s, 0 if n == FILES[1][0] else p) for n, s, p in t.files]
    (res,) = leftovers.remove_leftover_views(w.cfg, w.cat, [w.qbt])
    assert res["status"] == leftovers.KEPT, res
    assert [v["path"] for v in leftovers.pending(w.cat)] == [view]
    assert os.lstat(view).st_ino == os.lstat(lib[FILES[0][0]]).st_ino
