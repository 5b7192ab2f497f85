"""A quarantine killed after its rename into holding, finished once another file is at the old place
(orphans.finish_quarantine, _held_before, fsops.held_in_run).

R42: killed before the journal recorded the hold, then the torrent re-added and its file fetched
again at its place: the finish judged the new file in use and closed the step "not held", while
the quarantined file sat in .qbhook-holding tracked by nothing (`qbhook holding` listed nothing,
no purge reached it). A finish that only finished the died run also reported nothing held."""

from __future__ import annotations

import os
import time

import pytest

from qbhook.move import fsops, orphans
from tests.helpers import write
from tests.unit.test_executor import FakeTorrent
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_orphans_purge import expire, world  # noqa: F401  (fixtures)

H3 = "c" * 40
REL = "old/Gone.2019/gone.mkv"


class Kill(BaseException):
    pass


def killed_after_rename(w, monkeypatch) -> tuple[str, str]:
    """An orphan whose quarantine died right after its rename into holding; (its path, held path)."""
    path = write(os.path.join(w.seed_s, REL), b"orphaned bytes" * 100)
    t = time.time() - 3600
    os.utime(path, (t, t))
    real = fsops._move_checked

    def move(*a, **k):
        real(*a, **k)
        raise Kill()

    monkeypatch.setattr(fsops, "_move_checked", move)
    with pytest.raises(Kill):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    monkeypatch.setattr(fsops, "_move_checked", real)
    at = fsops.holding_path(path, w.seed_s, 1)
    assert os.path.exists(at) and not os.path.exists(path) and w.journal.held_links() == []
    return path, at


@pytest.mark.parametrize("readded", [True, False], ids=["a torrent's file", "any file"])
def test_a_file_at_the_old_place_leaves_the_held_one_journaled(world, monkeypatch, readded):  # noqa: F811
    w = world
    path, at = killed_after_rename(w, monkeypatch)
    write(path, b"fetched again" * 100)  # a new inode at the old place
    if readded:
        w.qbt.add(FakeTorrent(H3, "Gone.2019", os.path.join(w.seed_s, "old"), [("Gone.2019/gone.mkv", 1300, 1)]))
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert [(h.path, h.origin) for h in orphans.holding(w.cfg, w.cat)][:1] == [(at, path)]
    assert res.held[0] == path and res.failed == {}  # the died run's, reported (then a new orphan's)
    (step,) = w.journal.steps(1)
    assert step.status == "done" and step.result["status"] == "held" and step.result["holding"]
    if readded:  # the purge keeps it while a torrent uses its place, and says so
        expire(w)
        out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
        assert os.path.exists(at) and [k.held for k in out.kept] == [at] and "uses its place" in out.kept[0].line()


def test_a_quarantine_that_only_finishes_a_died_run_reports_what_it_held(world, monkeypatch):  # noqa: F811
    w = world
    path, at = killed_after_rename(w, monkeypatch)
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.run_id is None and res.held == [path] and res.bytes_held > 0
    assert [h.path for h in w.journal.held_links()] == [at]
