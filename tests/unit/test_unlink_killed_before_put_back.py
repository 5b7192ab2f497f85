"""A delete or hold killed between its rename and the look after it, in a folder moved into the library (R33).

``safe_unlink`` looks at its folder (``Dir.in_place``) right before the rename to a drop name or
into holding, and right after it, putting the file back if the folder moved in between. A folder
moved into the library (an *arr import) after the look before, and a SIGKILL before the put-back,
leave the library's file in holding, or under a drop name in the library folder. The resume no
longer reaches the folder by its path. It must not call the file "held" (journaled, then purged
after the grace like any held link) nor the delete "absent" (the library's file hidden for good):
it refuses, naming where the file is, and the group waits for a person.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from qbhook.errors import UnsafeOperation
from qbhook.move import fsops
from tests.unit.test_executor import Crash, demote_plan, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_relink_moved_folder import Pool, p  # noqa: F401  (fixture)
from tests.unit.test_safe_unlink_last_look import _delete, _held, _right_before_the_rename


class _Killed(BaseException):
    """A SIGKILL at that point: nothing after it runs, no handler sees it."""


def _killed_after_the_rename_as_the_folder_moved(p: Pool, monkeypatch, s, k, t, hold_run) -> str:  # noqa: F811
    """The folder moved into the library right before the rename, and the process killed right after
    it, before the look that would put the file back: -> the library folder."""
    imported = os.path.join(p.lib, "Imported")
    _right_before_the_rename(monkeypatch, lambda: os.rename(os.path.join(p.seed, "T"), imported))

    def killed(*_a):
        raise _Killed

    monkeypatch.setattr(fsops, "_back_unless_placed", killed)
    with pytest.raises(_Killed):
        _delete(p, s, k, t, hold_run=hold_run)
    monkeypatch.undo()
    return imported


def test_a_hold_killed_before_its_put_back_is_not_taken_for_held(p, monkeypatch):  # noqa: F811
    s, k, t = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    imported = _killed_after_the_rename_as_the_folder_moved(p, monkeypatch, s, k, t, 7)
    assert os.listdir(imported) == [] and _held(p) == ["b.bin"]  # the library's file, in holding
    with pytest.raises(UnsafeOperation) as e:
        _delete(p, s, k, t, hold_run=7)  # the resume: never "held", so never purged
    held_at = fsops.holding_path(s, p.seed, 7)
    msg = e.value.message
    assert "waits for a person" in msg and held_at in msg and os.path.join(p.seed, "T") in msg
    assert "\n" not in msg
    assert os.lstat(held_at).st_ino == t.ino  # nothing removed: it waits in holding, unjournaled
    with pytest.raises(UnsafeOperation):
        _delete(p, s, k, t, hold_run=7, resumed=True)  # and again: the same answer


def test_a_delete_killed_before_its_put_back_is_not_taken_for_absent(p, monkeypatch):  # noqa: F811
    s, k, t = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    imported = _killed_after_the_rename_as_the_folder_moved(p, monkeypatch, s, k, t, None)
    drop = os.fsdecode(fsops._drop_name(b"b.bin", t.ino))
    assert os.listdir(imported) == [drop]  # the library's file, hidden under the drop name
    with pytest.raises(UnsafeOperation) as e:
        _delete(p, s, k, t, resumed=True)
    msg = e.value.message
    assert "waits for a person" in msg and drop in msg and os.path.join(p.seed, "T") in msg and "not found" in msg
    assert os.lstat(os.path.join(imported, drop)).st_ino == t.ino


def test_a_fresh_delete_whose_folder_is_gone_is_still_absent(p):  # noqa: F811
    """No earlier attempt (not ``resumed``): nothing of it can be anywhere, the link is just gone."""
    s, k, t = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    os.unlink(s)
    os.rmdir(os.path.join(p.seed, "T"))
    assert _delete(p, s, k, t)["status"] == "absent"
    assert _delete(p, s, k, t, hold_run=7, resumed=True)["status"] == "absent"  # nothing in holding


def test_a_hold_that_finished_reads_held_while_its_folder_is_there(p):  # noqa: F811
    """Killed after the look after the rename, before the journal's done: the resume finds it held."""
    s, k, t = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    assert _delete(p, s, k, t, hold_run=7)["status"] == "held"
    res = _delete(p, s, k, t, hold_run=7, resumed=True)
    assert res["status"] == "held" and res["held_at"] == fsops.holding_path(s, p.seed, 7)


def test_a_hold_that_finished_then_lost_its_folder_waits_for_a_person(p):  # noqa: F811
    """The price of the rule: a finished hold, killed before the journal's done, whose folder a
    person then removed before the resume, reads like the hold above (no state tells the two
    apart). It waits for a person too; nothing is removed."""
    s, k, t = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    assert _delete(p, s, k, t, hold_run=7)["status"] == "held"
    os.rmdir(os.path.join(p.seed, "T"))
    with pytest.raises(UnsafeOperation, match="waits for a person"):
        _delete(p, s, k, t, hold_run=7, resumed=True)
    assert os.lstat(fsops.holding_path(s, p.seed, 7)).st_ino == t.ino


@pytest.mark.parametrize("grace", [0.0, 3600.0], ids=["delete", "hold"])
def test_a_resumed_demote_leaves_the_library_file_to_a_person(world, monkeypatch, grace):  # noqa: F811
    """The executor end to end: the first delete of a demote killed as above; its resume (the
    delete's intent journaled, never closed) refuses instead of closing the delete, so the library's
    file is neither journaled as held (purged after the grace) nor hidden under a drop name for good."""
    world.cfg = replace(world.cfg, policy=replace(world.cfg.policy, grace_period=grace))
    folder, imported = os.path.join(world.seed_s, "Movie.2020"), os.path.join(world.lib, "Movie.2020")
    os.makedirs(world.lib)
    real, back, deleting = fsops._rename_noreplace, fsops._back_unless_placed, []

    def hook(point, _gid, _seq, step):
        if point == "after_intend" and step.kind == "delete":
            deleting.append(step)

    def import_then_rename(src, sfd, dst, dfd):
        if deleting and os.path.isdir(folder):  # the first delete's rename (not a relocation's hide)
            os.rename(folder, imported)
        return real(src, sfd, dst, dfd)

    def killed(*a):
        if not deleting:
            return back(*a)  # a relocation's hide
        raise Crash("killed between the rename and the look after it")

    monkeypatch.setattr(fsops, "_rename_noreplace", import_then_rename)
    monkeypatch.setattr(fsops, "_back_unless_placed", killed)
    with pytest.raises(Crash):
        world.executor(hook=hook).apply(demote_plan(world))
    monkeypatch.undo()
    g = world.executor().resume()[0].groups[0]
    assert g.status != "done" and "waits for a person" in g.reason, g.reason
    assert world.journal.held_links() == []
    hidden = [n for n in os.listdir(imported) if n.startswith(os.fsdecode(fsops.RELINK_PREFIX))]
    assert "movie.mkv" not in os.listdir(imported) and len(hidden) == (grace == 0)  # held, or hidden here
    assert grace == 0 or "holding" in g.reason
