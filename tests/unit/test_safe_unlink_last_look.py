"""A delete or hold of an old seeding link acts only while its world is still the one checked (R29).

``safe_unlink`` opens the link's folder once, then reads the kept copy and the link (minutes for a
large file whose cached hash is stale) before it renames the link away. Two things can change in
that window and must stop the act:

* the folder is moved into the library on the same dataset (an *arr import in move mode): the
  name acted on is then a library file. The folder is proven still below its seeding root
  (``Dir.in_place``) right before the rename to the drop name or into holding, and right after it
  (the file put back, never over a name, if it moved in between);
* the kept copy is rewritten at the same size (``rsync --inplace``, a tagger): the link about to
  go is then the only copy of the planned content. The kept copy is pinned while it is verified
  and its pin compared with the stat its content was proven under at the last look.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qbhook.errors import UnsafeOperation
from qbhook.move import fsops
from tests.unit.test_relink_moved_folder import Pool, p  # noqa: F401  (fixture)

DROP = os.fsdecode(fsops.RELINK_PREFIX)


def _delete(p: Pool, s: str, k: str, t: fsops.RelinkTarget, **more) -> dict:  # noqa: F811
    """``safe_unlink`` of the seeding link ``s``, its library twin ``k`` the copy to keep."""
    return fsops.safe_unlink(
        s,
        fsid=p.fsid,
        ino=t.ino,
        size=t.size,
        blake3_hex=t.blake3_hex,
        keep_path=k,
        keep_blake3=t.blake3_hex,
        seeding_links=[s],
        seeding_roots=p.roots,
        keep_roots=[p.pool],
        catalog=p.cat,
        **more,
    )


def _while_the_link_is_read(monkeypatch, then) -> None:
    """Run ``then`` right after the doomed link's content check (the long read of a large file)."""
    real = fsops._content_unchanged

    def read_then(u, parent, name, st, doomed):
        real(u, parent, name, st, doomed)
        then()

    monkeypatch.setattr(fsops, "_content_unchanged", read_then)


def _right_before_the_rename(monkeypatch, then) -> None:
    """Run ``then`` right before the rename that starts the act (to the drop name, into holding):
    after the look before it, the narrowest window."""
    real = fsops._rename_noreplace

    def then_rename(src, sfd, dst, dfd):
        then()
        return real(src, sfd, dst, dfd)

    monkeypatch.setattr(fsops, "_rename_noreplace", then_rename)


def _hidden(folder: str) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(DROP)]


def _held(p: Pool) -> list[str]:  # noqa: F811
    """Every file in holding (its folders may have been made before the refusal)."""
    return [f for _d, _s, files in os.walk(os.path.join(p.seed, fsops.HOLDING_DIR)) for f in files]


@pytest.mark.parametrize("hold_run", [None, 7], ids=["delete", "hold"])
def test_a_delete_or_hold_in_a_folder_moved_into_the_library_during_the_checks_is_refused(p, monkeypatch, hold_run):  # noqa: F811
    s, k, t = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    imported = os.path.join(p.lib, "Imported")
    _while_the_link_is_read(monkeypatch, lambda: os.rename(os.path.join(p.seed, "T"), imported))
    with pytest.raises(UnsafeOperation) as e:
        _delete(p, s, k, t, hold_run=hold_run)
    assert "was moved during the checks" in e.value.message and e.value.hint == "re-plan"
    assert os.listdir(imported) == ["b.bin"] and os.lstat(os.path.join(imported, "b.bin")).st_ino == t.ino
    assert _held(p) == []


@pytest.mark.parametrize("hold_run", [None, 7], ids=["delete", "hold"])
def test_a_file_renamed_away_as_its_folder_moved_into_the_library_is_put_back(p, monkeypatch, hold_run):  # noqa: F811
    """Moved after the look before the rename: the rename took the library's name. The look right
    after it sees the move, and the file goes back to that name; a retry finds the link gone."""
    s, k, t = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    imported = os.path.join(p.lib, "Imported")
    moved: list = []

    def import_once():
        if not moved:
            os.rename(os.path.join(p.seed, "T"), imported)
            moved.append(True)

    _right_before_the_rename(monkeypatch, import_once)
    with pytest.raises(UnsafeOperation) as e:
        _delete(p, s, k, t, hold_run=hold_run)
    assert moved and "was moved during the checks" in e.value.message and "put back" in e.value.message
    assert os.listdir(imported) == ["b.bin"] and os.lstat(os.path.join(imported, "b.bin")).st_ino == t.ino
    assert _held(p) == []
    monkeypatch.undo()
    assert _delete(p, s, k, t, hold_run=hold_run)["status"] == "absent"  # the seeding link is gone
    assert os.listdir(imported) == ["b.bin"]


def test_a_delete_below_a_seeding_root_moved_into_the_library_is_refused(tmp_path, monkeypatch):
    """The seeding root itself moved (its parent writable): proven at its place below its pool root."""
    pool = Pool(tmp_path, anchored=True)
    s, k, t = pool.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    moved = os.path.join(pool.lib, "seeding")
    _while_the_link_is_read(monkeypatch, lambda: os.rename(pool.seed, moved))
    with pytest.raises(UnsafeOperation, match="was moved during the checks"):
        _delete(pool, s, k, t)
    assert os.lstat(os.path.join(moved, "T/b.bin")).st_ino == t.ino and not _hidden(os.path.join(moved, "T"))
    pool.cat.close()


def test_a_leftover_view_in_a_folder_moved_into_the_library_is_kept(p, monkeypatch):  # noqa: F811
    """``remove_leftover_view`` has the same shape: one folder opened, a copy's content read, a
    removal by name. The view, now a library file, stays."""
    s, k, t = p.pair("T/view.bin", "M/view.bin", b"V" * 7000)
    imported = os.path.join(p.lib, "Imported")
    real = fsops._check_file

    def check_then_import(*a):
        problem = real(*a)
        os.rename(os.path.join(p.seed, "T"), imported)
        return problem

    monkeypatch.setattr(fsops, "_check_file", check_then_import)
    with pytest.raises(UnsafeOperation, match="was moved during the checks"):
        fsops.remove_leftover_view(
            s, ino=t.ino, size=t.size, keep=k, blake3_hex=t.blake3_hex, roots=p.roots, keep_roots=[p.pool]
        )
    assert os.listdir(imported) == ["view.bin"] and os.lstat(os.path.join(imported, "view.bin")).st_ino == t.ino


@pytest.mark.parametrize("hold_run", [None, 7], ids=["delete", "hold"])
def test_a_kept_copy_rewritten_while_the_link_is_read_stops_the_delete(p, monkeypatch, hold_run):  # noqa: F811
    """Verified first, then never looked at again: the rewrite (same size, other bytes) left the
    doomed link the last copy of the planned content, and it was deleted."""
    s, k, t = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)

    def rewrite_in_place():
        with open(k, "r+b") as f:  # rsync --inplace, a tagger: same size, other bytes
            f.write(b"X" * 20)

    _while_the_link_is_read(monkeypatch, rewrite_in_place)
    with pytest.raises(UnsafeOperation) as e:
        _delete(p, s, k, t, hold_run=hold_run)
    assert e.value.message.endswith(f"the copy to keep, {k}, changed during the checks")
    assert e.value.hint == "re-plan"
    assert os.lstat(s).st_ino == t.ino and Path(s).read_bytes() == b"B" * 7000  # the planned content stays
    assert not _hidden(os.path.dirname(s))


def test_a_kept_copy_replaced_by_rename_while_the_link_is_read_stops_the_delete(p, monkeypatch):  # noqa: F811
    """The kept name now another file (a rename over it): the inode proven lost that name, so its
    content may be gone with it; the pin's ctime says so."""
    s, k, t = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    other = os.path.join(p.lib, "M/other.bin")

    def replace_kept():
        with open(other, "wb") as f:
            f.write(b"B" * 7000)  # the same bytes even: not the inode proven
        os.rename(other, k)

    _while_the_link_is_read(monkeypatch, replace_kept)
    with pytest.raises(UnsafeOperation, match="the copy to keep, .* changed during the checks"):
        _delete(p, s, k, t)
    assert os.lstat(s).st_ino == t.ino


def test_a_delete_whose_world_held_still_goes_ahead(p):  # noqa: F811
    """The added looks cost no refusal of an ordinary delete or hold."""
    s, k, t = p.pair("T/a.bin", "M/a.bin", b"A" * 5000)
    assert _delete(p, s, k, t)["status"] == "unlinked" and not os.path.exists(s)
    s, k, t = p.pair("T/b.bin", "M/b.bin", b"B" * 5000)
    assert _delete(p, s, k, t, hold_run=3)["status"] == "held" and not os.path.exists(s)
    assert not _hidden(os.path.join(p.seed, "T"))
