"""An orphan's hold and a move's hide take a name only while its folder is still a seeding folder.

``hold_unreferenced`` (``qbhook orphans --quarantine --yes``) and ``hide_during_move`` rename a
name of a seeding folder into holding. An *arr import in move mode can rename that folder into
the library on the same dataset between the walk to it and the rename: the name taken is then a
library file, held (and purged after the grace) or hidden (and put back at the old path, out of
the library). ``safe_unlink``'s rule, applied to both: the folder is proven still below its seeding
root right before the rename and right after it, the file put back (never over a name) if it
moved; a kill before that put-back leaves a file in holding whose folder the path no longer
reaches, and the finish of the died quarantine refuses it (the step closed failed, the file
named, never tracked for a purge) instead of reading it as held.
"""

from __future__ import annotations

import os

import pytest

from qbhook.decide.plan import RunStatus, StepStatus
from qbhook.errors import UnsafeOperation
from qbhook.move import fsops, orphans
from qbhook.move.fsops import HOLDING_DIR
from tests.helpers import write
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_orphans_purge import world  # noqa: F401  (fixture)
from tests.unit.test_relink_moved_folder import Pool, p  # noqa: F401  (fixture)


class _Died(BaseException):
    """The process dying between two lines (a SIGKILL, a power cut): nothing after it runs."""


def _facts(path: str) -> dict:
    st = os.lstat(path)
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "max_nlink": st.st_nlink}


def _hold(pool: Pool, path: str, facts: dict, **more) -> dict:
    return fsops.hold_unreferenced(path, **facts, roots=pool.roots, run=7, **more)


def _held(pool: Pool) -> list[str]:
    """Every file in holding (its folders may have been made before the refusal)."""
    return [f for _d, _s, files in os.walk(os.path.join(pool.seed, HOLDING_DIR)) for f in files]


def _import_at_rename(monkeypatch, folder: str, to: str, *, die: bool = False) -> list:
    """Right before the rename into holding (after the look before it, the narrowest window), the
    folder ``folder`` is moved to ``to`` (an import into the library), once. ``die``: the rename
    done, the process dies right after it, before anything looks at where it went."""
    real = fsops._rename_noreplace
    moved: list = []

    def rename(src, sfd, dst, dfd):
        if moved:
            return real(src, sfd, dst, dfd)
        os.rename(folder, to)
        moved.append(True)
        real(src, sfd, dst, dfd)
        if die:
            raise _Died

    monkeypatch.setattr(fsops, "_rename_noreplace", rename)
    return moved


def test_an_orphan_whose_folder_moved_into_the_library_before_the_look_is_not_held(p, monkeypatch):  # noqa: F811
    """Moved after the walk, before the look right before the rename: refused, nothing renamed."""
    f = write(os.path.join(p.seed, "old/T/x.bin"), b"x" * 4000)
    facts, imported = _facts(f), os.path.join(p.lib, "Imported")
    real = fsops._open_holding_id

    def import_then_open(*a, **k):
        os.rename(os.path.join(p.seed, "old/T"), imported)
        monkeypatch.setattr(fsops, "_open_holding_id", real)
        return real(*a, **k)

    monkeypatch.setattr(fsops, "_open_holding_id", import_then_open)
    with pytest.raises(UnsafeOperation) as e:
        _hold(p, f, facts)
    assert "was moved during the checks" in e.value.message and e.value.hint == "re-plan"
    assert os.listdir(imported) == ["x.bin"] and os.lstat(os.path.join(imported, "x.bin")).st_ino == facts["ino"]
    assert _held(p) == []


def test_an_orphan_renamed_into_holding_as_its_folder_moved_into_the_library_is_put_back(p, monkeypatch):  # noqa: F811
    """Moved between the look and the rename: the rename took the library's file. The look right
    after it sees the move, and the file goes back to its name in the library."""
    f = write(os.path.join(p.seed, "old/T/x.bin"), b"x" * 4000)
    facts, imported = _facts(f), os.path.join(p.lib, "Imported")
    moved = _import_at_rename(monkeypatch, os.path.join(p.seed, "old/T"), imported)
    with pytest.raises(UnsafeOperation) as e:
        _hold(p, f, facts)
    assert moved and "was moved during the checks" in e.value.message and "put back" in e.value.message
    assert os.listdir(imported) == ["x.bin"] and os.lstat(os.path.join(imported, "x.bin")).st_ino == facts["ino"]
    assert _held(p) == []
    monkeypatch.undo()
    assert _hold(p, f, facts)["status"] == "absent"  # the orphan's path is gone, nothing of it held


def test_a_hold_killed_before_its_look_after_the_rename_is_never_read_as_held(p, monkeypatch):  # noqa: F811
    """The kill leaves the library's file in holding and a path that no longer reaches its folder:
    a resumed hold refuses and names where the file waits, never "held" (purged after the grace)."""
    f = write(os.path.join(p.seed, "old/T/x.bin"), b"x" * 4000)
    facts, imported = _facts(f), os.path.join(p.lib, "Imported")
    _import_at_rename(monkeypatch, os.path.join(p.seed, "old/T"), imported, die=True)
    with pytest.raises(_Died):
        _hold(p, f, facts)
    monkeypatch.undo()
    held_at = os.path.join(p.seed, HOLDING_DIR, "7/old/T/x.bin")
    assert os.lstat(held_at).st_ino == facts["ino"] and os.listdir(imported) == []
    with pytest.raises(UnsafeOperation) as e:
        _hold(p, f, facts, resumed=True)
    assert f"held at {held_at}, but its folder" in e.value.message and "waits for a person" in e.value.message
    assert "put it back there by hand" in e.value.hint
    assert os.lstat(held_at).st_ino == facts["ino"]  # left where the refusal names it


@pytest.mark.parametrize("finisher", ["the next quarantine", "resume"])
def test_a_died_quarantine_whose_folder_moved_into_the_library_closes_the_step_failed(world, monkeypatch, finisher):  # noqa: F811
    """The finish (``finish_quarantine``) of a quarantine killed right after its rename into
    holding, the orphan's folder moved into the library in that instant: the step closes failed,
    naming where the file waits, and no held link is tracked for the purge."""
    w = world
    path = write(os.path.join(w.seed_s, "old/Gone.2019/gone.mkv"), b"orphaned bytes" * 100)
    ino = os.lstat(path).st_ino
    imported = os.path.join(w.stash, "media/Gone.2019")
    os.makedirs(os.path.dirname(imported))
    _import_at_rename(monkeypatch, os.path.dirname(path), imported, die=True)
    with pytest.raises(_Died):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    monkeypatch.undo()
    (run,) = w.journal.unfinished_runs()
    held_at = os.path.join(w.seed_s, HOLDING_DIR, str(run.id), "old/Gone.2019/gone.mkv")
    assert os.lstat(held_at).st_ino == ino

    if finisher == "resume":
        w.executor().resume()
    else:
        orphans.quarantine(w.cfg, w.cat, [w.qbt])

    assert w.journal.run(run.id).status == RunStatus.FAILED
    (step,) = w.journal.steps(run.id)
    assert step.status == StepStatus.FAILED and f"held at {held_at}" in step.error
    assert "waits for a person" in step.error
    assert w.journal.held_links() == []  # nothing a purge would take
    assert os.lstat(held_at).st_ino == ino  # and nothing taken


def test_a_hide_in_a_folder_moved_into_the_library_at_its_rename_is_put_back(p, monkeypatch):  # noqa: F811
    """``hide_during_move`` has the same shape: its old link renamed into holding, later put back
    by its old path; a library file hidden so would leave the library."""
    f = write(os.path.join(p.seed, "T/x.bin"), b"x" * 4000)
    ino, imported = os.lstat(f).st_ino, os.path.join(p.lib, "Imported")
    moved = _import_at_rename(monkeypatch, os.path.join(p.seed, "T"), imported)
    with pytest.raises(UnsafeOperation) as e:
        fsops.hide_during_move(f, roots=p.roots, run=3)
    assert moved and "was moved during the checks" in e.value.message and "put back" in e.value.message
    assert os.listdir(imported) == ["x.bin"] and os.lstat(os.path.join(imported, "x.bin")).st_ino == ino
    assert _held(p) == []


def test_a_hold_and_a_hide_whose_folder_held_still_go_ahead(p):  # noqa: F811
    """The added looks cost no refusal of an ordinary hold or hide."""
    f = write(os.path.join(p.seed, "old/T/x.bin"), b"x" * 4000)
    assert _hold(p, f, _facts(f))["status"] == "held" and not os.path.lexists(f)
    g = write(os.path.join(p.seed, "T/y.bin"), b"y" * 4000)
    assert fsops.hide_during_move(g, roots=p.roots, run=3)["status"] == "hidden" and not os.path.lexists(g)
    assert fsops.unhide_after_move(g, roots=p.roots, run=3)["status"] == "restored" and os.path.exists(g)
