"""A move's put-back links its hidden link back only into a folder still below its seeding root.

``unhide_after_move`` walks by descriptors to the folder a hidden link goes back to, links it
there, then unlinks the held name. A writer of the seeding folder (qBittorrent's user, an *arr
import in move mode) can rename that folder into the library on the same dataset after the walk
and leave a symlink where it was: the put-back then linked the file into the library and took it
out of holding, acting outside the configured roots (R122). ``safe_unlink``'s rule, applied: the
folder is proven in place right before the link and again before the held name goes; moved, the
link just made is taken back and the held link stays.
"""

from __future__ import annotations

import os

import pytest

from qbhook.errors import UnsafeOperation
from qbhook.move import fsops
from tests.helpers import write
from tests.unit.test_relink_moved_folder import Pool, p  # noqa: F401  (fixture)


def _hidden(pool: Pool) -> tuple[str, str, int]:
    """A seeding file hidden by a move (run 7): (its path, where it is held, its inode)."""
    f = os.fsdecode(write(os.path.join(pool.seed, "T/x.bin"), b"x" * 4000))
    ino = os.lstat(f).st_ino
    res = fsops.hide_during_move(f, roots=pool.roots, run=7)
    assert res["status"] == "hidden" and not os.path.lexists(f)
    return f, res["held_at"], ino


def _import(pool: Pool) -> str:
    """The seeding folder ``T`` renamed into the library, a symlink to it left where it was."""
    imported = os.path.join(pool.lib, "Imported")
    os.rename(os.path.join(pool.seed, "T"), imported)
    os.symlink(imported, os.path.join(pool.seed, "T"))
    return imported


def _refused_and_kept(pool: Pool, f: str, held: str, ino: int, imported: str) -> None:
    with pytest.raises(UnsafeOperation) as e:
        fsops.unhide_after_move(f, roots=pool.roots, run=7)
    assert "was moved during the checks" in e.value.message and e.value.hint == "re-plan"
    assert os.listdir(imported) == []  # nothing linked into the library
    assert os.lstat(held).st_ino == ino and os.lstat(held).st_nlink == 1  # the hidden link as it was


def test_a_put_back_refuses_a_folder_moved_into_the_library_after_its_walk(p, monkeypatch):  # noqa: F811
    f, held, ino = _hidden(p)
    real, moved = fsops._walk, []

    def walk_then_import(root, parts, **k):
        d = real(root, parts, **k)
        if parts == [b"T"] and not moved:
            moved.append(_import(p))
        return d

    monkeypatch.setattr(fsops, "_walk", walk_then_import)
    _refused_and_kept(p, f, held, ino, os.path.join(p.lib, "Imported"))
    assert moved


def test_a_link_made_as_its_folder_moved_into_the_library_is_taken_back(p, monkeypatch):  # noqa: F811
    """Moved between the look before the link and the link: the look before the held name's
    unlink sees it, and the link just made (provably ours: that inode, made by this linkat) goes."""
    f, held, ino = _hidden(p)
    real, moved = fsops._link_same, []

    def import_at_link(src, dst, name, st):
        if not moved:
            moved.append(_import(p))
        return real(src, dst, name, st)

    monkeypatch.setattr(fsops, "_link_same", import_at_link)
    _refused_and_kept(p, f, held, ino, os.path.join(p.lib, "Imported"))
    assert moved
