"""serve's descriptor budget, measured: the executor's own term (``FD_BUDGET["executor files"]``)
was an estimate. Here a demote (copies, links, views, setLocation, holding for the grace
period, deletes, pruning) is applied while every descriptor qbhook opens is counted, and its
peak above what was open before must stay within that term. A change that keeps more files or
folders open at once (a leaked descriptor, a cache grown past its bound) fails here."""

from __future__ import annotations

import os
from dataclasses import replace

from qbhook.events import server
from tests.unit.test_executor import _make_world, demote_plan
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)


def _open_now() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor


class Peak:
    """The most descriptors open at once, sampled right after each one qbhook opens."""

    def __init__(self, monkeypatch) -> None:
        self.peak = self.base = _open_now()
        for name in ("open", "dup", "pipe"):
            real = getattr(os, name)

            def counted(*a, _real=real, **kw):
                out = _real(*a, **kw)
                self.peak = max(self.peak, _open_now())
                return out

            monkeypatch.setattr(os, name, counted)

    @property
    def above(self) -> int:
        return self.peak - self.base


def test_a_demote_keeps_within_the_executors_term(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    w = _make_world(tmpfs, tmp_path, "fd")
    w.cfg = replace(w.cfg, policy=replace(w.cfg.policy, grace_period=3600.0))  # holding folders too
    ex = w.executor()
    plan = demote_plan(w)
    peak = Peak(monkeypatch)
    summary = ex.apply(plan)
    monkeypatch.undo()
    assert summary.status == "done"
    print(f"descriptors above the start: {peak.above} (budget {server.FD_BUDGET['executor files']})")
    assert 0 < peak.above <= server.FD_BUDGET["executor files"], peak.above
    w.cat.close()


def test_a_deep_payload_keeps_within_the_executors_term(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    """Folders are walked one at a time, not held per level: 40 levels deep costs no more."""
    from tests.unit import test_executor

    deep = "Deep.2020/" + "/".join(f"d{i}" for i in range(40))
    files = [(f"{deep}/movie.mkv", os.urandom(70_000)), (f"{deep}/sub/en.srt", b"1\nhi\n"), ("Deep.2020/e.txt", b"")]
    monkeypatch.setattr(test_executor, "FILES", files)
    w = _make_world(tmpfs, tmp_path, "deep")
    ex = w.executor()
    plan = demote_plan(w)
    peak = Peak(monkeypatch)
    summary = ex.apply(plan)
    monkeypatch.undo()
    assert summary.status == "done", summary
    print(f"descriptors above the start, 40 levels: {peak.above} (budget {server.FD_BUDGET['executor files']})")
    assert 0 < peak.above <= server.FD_BUDGET["executor files"], peak.above
    w.cat.close()


def test_the_climb_back_up_stops_where_a_folder_was_moved_away(tmp_path):
    """``Dir.up`` proves each parent is the folder walked through on the way down: the deepest
    folder moved elsewhere between the walk and the climb stops the rmdirs at once, and neither it
    (at its new place) nor anything above it is removed. (A folder moved *with* its parent is
    still in the folder walked through, as when every level's descriptor was held.)"""
    from qbhook.move import fsops

    root = tmp_path / "root"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "elsewhere").mkdir()
    chain = [b"a", b"b", b"c"]
    d, stats = fsops._descend(os.fsencode(root), chain, own=False)
    assert len(stats) == 4
    os.rename(root / "a" / "b" / "c", root / "elsewhere" / "c")  # c's ".." is now elsewhere
    assert fsops._rmdir_up(d, chain, stats) == 0
    assert (root / "elsewhere" / "c").is_dir() and (root / "a" / "b").is_dir()


def test_the_climb_removes_every_empty_level_with_two_descriptors(tmp_path):
    from qbhook.move import fsops

    root = tmp_path / "root"
    chain = [f"d{i}".encode() for i in range(60)]
    (root / os.fsdecode(b"/".join(chain))).mkdir(parents=True)
    d, stats = fsops._descend(os.fsencode(root), chain, own=False)
    before = _open_now()
    assert fsops._rmdir_up(d, chain, stats) == 60
    assert _open_now() == before - 1 and os.listdir(root) == []
