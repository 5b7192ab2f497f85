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

from tests.helpers import write
from tests.swap import swap, swap_after_first_look
from tests.unit.test_executor import H1, demote_plan, world  # noqa: F401  (fixture)
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
