"""The executor's own looks by path (besides fsops' acts) go through verified folders too.

A folder on the way to a path the executor looks at, swapped for a symlink by a writer of the
pool (before the look, or between two looks), must never make it answer "nothing there" or
"unchanged": the step that looks is refused, naming the folder (``executor._look``), or the
look counts as a change. Each test here fails on the code that looked with ``os.lstat`` /
``os.path.lexists`` by the path string.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qbhook.decide.explain import VIEW_CHANGED
from qbhook.move.executor import Executor
from tests.helpers import write
from tests.swap import swap, swap_after_first_look
from tests.unit.test_executor import FILES, H1, H2, Crash, demote_plan, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

EXTRA = "Movie.2020/extras/extra.nfo"  # an unwanted file of H1, in a folder of its own


def _unwanted(w) -> Path:
    """H1 gets an unwanted (priority 0) file that exists at its old save path only."""
    data = b"not wanted, not in the view\n"
    w.qbt.t[H1].files.append((EXTRA, len(data), 0))
    return Path(write(os.path.join(w.seed_s, EXTRA).encode(), data).decode())


def _refused(summary, folder) -> None:
    line = summary.groups_failed["g1"].split("\n  hint: ")[0]  # the message, then its hint
    assert "\n" not in line and f"{folder} is a symlink" in line and "unwanted file" in line, line


def test_an_unwanted_file_missing_from_the_view_is_refused(world):  # noqa: F811
    _unwanted(world)
    summary = world.executor().apply(demote_plan(world))
    assert "qBittorrent would copy it unverified" in summary.groups_failed["g1"]
    assert world.qbt.count("set_location") == 0


def test_an_old_folder_swapped_for_a_symlink_refuses_the_view_never_nothing_there(world, tmp_path):  # noqa: F811
    """The old save path's folder holding the unwanted file is now a symlink to an empty outside
    folder: by the path string the file looked absent, the view passed and the torrent moved."""
    old = _unwanted(world)
    (tmp_path / "empty").mkdir()
    swap(old.parent, tmp_path / "empty")
    summary = world.executor().apply(demote_plan(world))
    _refused(summary, old.parent)
    assert world.qbt.count("set_location") == 0


def test_a_view_folder_swapped_after_the_old_file_was_seen_refuses_the_view(world, tmp_path, monkeypatch):  # noqa: F811
    """The race: the old file is seen, then the view's (empty) folder for it is swapped for a
    symlink to an outside folder holding a file of that name. By the path string the file was
    "in the view" (outside it), the view passed and qBittorrent was told to move there."""
    _unwanted(world)
    view_folder = Path(world.save(H1, "pool"), os.path.dirname(EXTRA))
    view_folder.mkdir(parents=True)
    outside = tmp_path / "outside"
    write(outside / os.path.basename(EXTRA), b"someone else's\n")
    looked = swap_after_first_look(monkeypatch, Path(world.seed_s, EXTRA), view_folder, outside)
    summary = world.executor().apply(demote_plan(world))
    assert looked
    _refused(summary, view_folder)
    assert world.qbt.count("set_location") == 0


def test_a_failed_delete_behind_a_swapped_folder_is_never_taken_as_still_there(world, tmp_path, monkeypatch):  # noqa: F811
    """Fail-open on main: a delete unlinked its path, then failed (its catalog write) and the run
    was killed before closing the group. The resume asks the world whether that delete acted; the
    doomed file's folder is now a symlink to a folder holding a file of that name, so by the path
    string it was "still there", no delete had begun, and the group was rolled back onto old
    paths a delete had already emptied. Through the verified folder nothing is proven: the group
    stays at its verified new place."""
    plan = demote_plan(world)
    first = next(s for s in plan.groups[0].steps if s.kind == "delete")
    doomed = Path(first.args["path"])
    real_forget, real_fail = world.cat.forget_path, Executor._fail
    monkeypatch.setattr(world.cat, "forget_path", lambda p: (_ for _ in ()).throw(OSError(5, "catalog write failed")))

    def killed(self, st, reason):
        raise Crash("killed before the failed group was closed")

    monkeypatch.setattr(Executor, "_fail", killed)
    with pytest.raises(Crash):
        world.executor().apply(plan)
    assert not doomed.exists()  # the delete did act
    monkeypatch.setattr(world.cat, "forget_path", real_forget)
    monkeypatch.setattr(Executor, "_fail", real_fail)
    outside = tmp_path / "outside"
    write(outside / doomed.name, b"a file of that name\n")
    swap(doomed.parent, outside)
    out = world.executor().resume()
    g = out[0].groups[0]
    assert g.status == "failed" and "after deletes began" in g.reason, g.reason
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "pool") and world.qbt.count("set_location", h) == 1


def test_a_view_folder_swapped_for_a_symlink_to_itself_counts_as_changed(world):  # noqa: F811
    """The backstop before the first delete: the view's folder moved aside and a symlink to it put
    in its place. By the path string every view file had the same facts; through the verified
    folder the view is not what verify_view proved, and the group stops where it is."""
    plan = demote_plan(world)
    folder = Path(world.save(H1, "pool"), "Movie.2020")

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "verify_group" and not folder.is_symlink():
            swap(folder, folder.with_name(folder.name + ".aside"))

    summary = world.executor(hook=hook).apply(plan)
    assert VIEW_CHANGED in summary.groups_failed["g1"]
    assert all(os.path.exists(os.path.join(world.save(h, "stash"), r)) for h in (H1, H2) for r, _d in FILES)


def test_the_dry_run_says_a_swapped_folder_is_refused(world, tmp_path):  # noqa: F811
    """Wording only (the act refuses anyway): a doomed file behind a symlinked folder is reported
    as refused, not "to do" read through the symlink."""
    plan = demote_plan(world)
    folder = Path(world.save(H1, "stash"), "Movie.2020")
    swap(folder, folder.with_name(folder.name + ".aside"))
    summary = world.executor().apply(plan, dry_run=True)
    deletes = [
        s for s in summary.groups[0].steps if s["kind"] == "delete" and s["args"]["path"].startswith(f"{folder}/")
    ]
    assert deletes and all(s["now"].startswith(f"refused: {folder} is a symlink") for s in deletes), deletes
