"""A failed repair's link it could not take back, under its own torrent stopped under 100 % (R105).

The repair's undo keeps a link a resumed step only found there (``already``: maybe another's) and
journals it as a leftover view. Its torrent names the path and is incomplete: the leftover
remover took that for "in use" and ended its tracking, leaving the library inode under a torrent
one start from downloading into it, for good and out of ``status``. It now stays tracked until
that torrent completes on it or goes, and is removed then (the parent ended it on the first run)."""

from __future__ import annotations

import os

import pytest

from qbhook.move import leftovers
from tests.unit.test_executor import FILES, H1, Crash, FakeTorrent, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_repair_executor import _lose_files, _plan

MOVIE = FILES[0][0]


def test_a_kept_repair_link_under_its_stopped_torrent_stays_tracked_until_it_goes(world):  # noqa: F811
    w = world
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
    assert w.qbt.t[H1].stopped and w.qbt.t[H1].progress == 0.5
    for _ in range(2):  # every later run, while H1 stays stopped under 100 % on it
        (res,) = leftovers.remove_leftover_views(w.cfg, w.cat, [w.qbt])
        assert res["status"] == leftovers.KEPT and res["reason"] == leftovers.INCOMPLETE_USER, res
        assert [v["path"] for v in leftovers.pending(w.cat)] == [view]  # status still names it
    assert os.lstat(view).st_ino == os.lstat(lib[MOVIE]).st_ino
    del w.qbt.t[H1]  # a person removed the torrent
    w.qbt.add(FakeTorrent("d" * 40, "Other", os.path.join(w.seed_s, "other"), [("Other/x.mkv", 5, 1)]))
    (res,) = leftovers.remove_leftover_views(w.cfg, w.cat, [w.qbt])
    assert res["status"] == "removed", res
    assert not os.path.lexists(view) and os.lstat(lib[MOVIE]).st_nlink == 1
    assert leftovers.pending(w.cat) == []
