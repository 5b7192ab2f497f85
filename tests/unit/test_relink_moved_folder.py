"""A seeding folder moved while a relink holds it open is never renamed in (review finding R9).

A ``Relinker`` keeps each verified folder open for its batch, and a single ``relink_over`` holds
it through its checks (minutes of hashing for a large victim). An *arr import in move mode can
rename the torrent's folder into the library on the same dataset meanwhile: the rename over the
name would then replace a library file, and the catalog would record a seeding path that is no
longer there. Right before each rename the folder is proven still below its seeding root
(``Dir.in_place``), through ``..`` from its descriptor; a folder moved is refused (``re-plan``),
its temporary link removed, and the batch walks to that root's folders again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from blake3 import blake3

from qbhook.catalog.store import Catalog
from qbhook.dirfd import SeedingRoot
from qbhook.errors import UnsafeOperation
from qbhook.move import fsops
from tests.helpers import write
from tests.unit import test_converge_batch as tcb
from tests.unit.test_converge_batch import world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)


class Pool:
    """A pool with a seeding root ``torrents/seeding`` and a library ``media``, and its catalog."""

    def __init__(self, base: Path, anchored: bool):
        self.pool = str(base / "pool")
        self.seed = os.path.join(self.pool, "torrents/seeding")
        self.lib = os.path.join(self.pool, "media")
        os.makedirs(self.seed)
        os.makedirs(self.lib)
        self.cat = Catalog.open(str(base / "cat.sqlite"), marker_roots=[self.pool])
        self.fsid = self.cat.fsid(self.cat.fs_for_path(self.pool, os.stat(self.pool).st_dev))
        # As serve hands them (``Config.anchored_seeding_roots``), or as a plain (pool-like) root.
        self.roots = [SeedingRoot(self.seed, self.pool)] if anchored else [self.seed]

    def pair(self, rel: str, lib_rel: str, data: bytes) -> tuple[str, str, fsops.RelinkTarget]:
        """A seeding file and its library twin (distinct inodes, same bytes), with the relink's target."""
        s = os.fsdecode(write(os.path.join(self.seed, rel).encode(), data))
        k = os.fsdecode(write(os.path.join(self.lib, lib_rel).encode(), data))
        st, kst = os.lstat(s), os.lstat(k)
        t = fsops.RelinkTarget(
            self.fsid, st.st_ino, len(data), blake3(data).hexdigest(), self.fsid, kst.st_ino, st.st_mtime_ns
        )
        return s, k, t

    def relinker(self) -> fsops.Relinker:
        return fsops.Relinker(self.roots, [self.pool], self.cat)

    def relink_over(self, s, k, t, on_temp_link=None) -> dict:
        return fsops.relink_over(
            s, k, t, seeding_roots=self.roots, keep_roots=[self.pool], catalog=self.cat, on_temp_link=on_temp_link
        )


@pytest.fixture(params=["anchored", "plain"])
def p(tmp_path, request):
    pool = Pool(tmp_path, request.param == "anchored")
    yield pool
    pool.cat.close()


def _no_temp_link(folder: str) -> bool:
    return not [n for n in os.listdir(folder) if n.startswith(os.fsdecode(fsops.RELINK_PREFIX))]


def test_a_batch_refuses_a_folder_moved_into_the_library_between_two_relinks(p):
    # /tmp/r9/repro_moved_folder.py: the library file's inode changed, "relinked" was reported.
    sa, la, ta = p.pair("T/a.bin", "M/a.bin", b"A" * 5000)
    sb, lb, tb = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    imported = os.path.join(p.lib, "Imported")
    with p.relinker() as rl:
        assert rl.relink(sa, la, ta)["status"] == "relinked"
        os.rename(os.path.join(p.seed, "T"), imported)  # an *arr import, move mode, same dataset
        ino = os.lstat(os.path.join(imported, "b.bin")).st_ino
        with pytest.raises(UnsafeOperation) as e:
            rl.relink(sb, lb, tb)
        rl.sync()
        assert sb not in rl.after
    assert "was moved" in e.value.message and e.value.hint == "re-plan"
    assert os.lstat(os.path.join(imported, "b.bin")).st_ino == ino  # the library file untouched
    assert _no_temp_link(imported)


def test_a_single_relink_refuses_a_folder_moved_into_the_library_during_its_checks(p):
    # /tmp/r9/repro_moved_folder_single.py: moved between the temporary link and the rename.
    sb, lb, tb = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    imported = os.path.join(p.lib, "Imported")
    ino = os.lstat(sb).st_ino
    with pytest.raises(UnsafeOperation) as e:
        p.relink_over(sb, lb, tb, on_temp_link=lambda: os.rename(os.path.join(p.seed, "T"), imported))
    assert "was moved" in e.value.message and e.value.hint == "re-plan"
    assert os.lstat(os.path.join(imported, "b.bin")).st_ino == ino
    assert _no_temp_link(imported)  # the temporary link went, as with every other refusal


def test_after_a_moved_folder_the_batch_walks_again_to_a_new_folder_at_the_old_name(p):
    sa, la, ta = p.pair("T/a.bin", "M/a.bin", b"A" * 5000)
    sb, lb, tb = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    with p.relinker() as rl:
        assert rl.relink(sa, la, ta)["status"] == "relinked"
        os.rename(os.path.join(p.seed, "T"), os.path.join(p.lib, "Imported"))
        with pytest.raises(UnsafeOperation):
            rl.relink(sb, lb, tb)
        # The client re-downloads into a new T: the held (moved) T must not be the one acted in.
        sc, lc, tc = p.pair("T/c.bin", "M/c.bin", b"C" * 3000)
        assert rl.relink(sc, lc, tc)["status"] == "relinked"
        rl.sync()
    assert os.lstat(sc).st_ino == os.lstat(lc).st_ino


@pytest.mark.parametrize(
    "move_to",
    [
        "torrents/old",  # renamed within its own parent
        "media/seeding",  # moved into the library
    ],
)
def test_a_seeding_root_moved_during_the_checks_is_refused(tmp_path, move_to):
    """The seeding root itself is held too (it is the top of every walk): its parent may be
    writable, so it is proven still at its configured place below its pinned pool root."""
    p = Pool(tmp_path, anchored=True)
    sb, lb, tb = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    moved = os.path.join(p.pool, move_to)
    ino = os.lstat(sb).st_ino
    with pytest.raises(UnsafeOperation) as e:
        p.relink_over(sb, lb, tb, on_temp_link=lambda: os.rename(p.seed, moved))
    assert "was moved" in e.value.message
    assert os.lstat(os.path.join(moved, "T/b.bin")).st_ino == ino
    p.cat.close()


def test_a_seeding_root_moved_into_the_library_behind_a_symlink_at_its_parents_name_is_refused(tmp_path):
    """R13-1 (/tmp/r13/repro/inplace_symlink.py): a writer of a folder above the seeding root (a
    ``chown -R`` of the pool's data folder) moves the root into the library at the same depth and
    leaves a symlink where its parent was. The configured path, resolved again, led through the
    symlink to the moved root, and the relink replaced what is now a library file: each folder
    above the root is proven by its identity through ``..``, and the symlink is never followed."""
    p = Pool(tmp_path, anchored=True)
    sa, la, ta = p.pair("T/a.bin", "M/a.bin", b"A" * 5000)
    sb, lb, tb = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    victim = os.path.join(p.lib, "seeding/T/b.bin")
    with p.relinker() as rl:
        assert rl.relink(sa, la, ta)["status"] == "relinked"
        os.rename(p.seed, os.path.join(p.lib, "seeding"))
        os.rename(os.path.join(p.pool, "torrents"), os.path.join(p.pool, "torrents.old"))
        os.symlink("media", os.path.join(p.pool, "torrents"))
        ino = os.lstat(victim).st_ino
        with pytest.raises(UnsafeOperation, match="was moved"):
            rl.relink(sb, lb, tb)
        rl.sync()
        assert sb not in rl.after
    assert os.lstat(victim).st_ino == ino  # the library file untouched
    assert _no_temp_link(os.path.dirname(victim))
    p.cat.close()


def test_a_folder_above_the_seeding_root_renamed_within_its_parent_is_refused(tmp_path):
    # The seeding root is no longer at its configured path: named, level by level, not only by identity.
    p = Pool(tmp_path, anchored=True)
    sb, lb, tb = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    moved = os.path.join(p.pool, "torrents2")
    with pytest.raises(UnsafeOperation, match="was moved"):
        p.relink_over(sb, lb, tb, on_temp_link=lambda: os.rename(os.path.join(p.pool, "torrents"), moved))
    assert os.lstat(os.path.join(moved, "seeding/T/b.bin")).st_ino != os.lstat(lb).st_ino
    p.cat.close()


def test_a_folder_moved_to_another_folder_below_the_seeding_root_is_refused_too(p):
    # Conservative: still below the root, but no longer the folder the plan names.
    sb, lb, tb = p.pair("A/T/b.bin", "M/b.bin", b"B" * 7000)
    os.makedirs(os.path.join(p.seed, "B"))
    with pytest.raises(UnsafeOperation, match="was moved"):
        p.relink_over(
            sb, lb, tb, on_temp_link=lambda: os.rename(os.path.join(p.seed, "A/T"), os.path.join(p.seed, "B/T"))
        )


def test_a_folder_renamed_within_its_own_parent_is_still_below_its_root_and_relinked(p):
    # The same folders above it, up to the seeding root: nothing outside the root is touched.
    sb, lb, tb = p.pair("T/b.bin", "M/b.bin", b"B" * 7000)
    renamed = os.path.join(p.seed, "T2")
    res = p.relink_over(sb, lb, tb, on_temp_link=lambda: os.rename(os.path.join(p.seed, "T"), renamed))
    assert res["status"] == "relinked"
    assert os.lstat(os.path.join(renamed, "b.bin")).st_ino == os.lstat(lb).st_ino


def test_an_executor_batch_fails_the_moved_folders_step_and_records_no_path_for_it(world):  # noqa: F811
    """Through the executor: the step fails (re-plan), the library file keeps its inode, and the
    catalog gets no row for the seeding path that is gone."""
    w = world
    plan, pairs = tcb._dups(w, 1, per_group=2)
    (s0, l0), (s1, l1) = pairs
    folder = os.path.dirname(s0)
    imported = os.path.join(str(w.stash), "media/Imported")

    def hook(point, _gid, seq, _step):
        if point == "after_act" and seq == 0:
            os.rename(folder, imported)

    ino = os.lstat(s1).st_ino
    summary = w.executor(hook=hook).apply(plan)
    assert summary.status != "done"
    steps = w.journal.steps(summary.run_id)
    assert [s.status for s in steps] == ["done", "failed"]
    assert os.lstat(os.path.join(imported, os.path.basename(s1))).st_ino == ino
    assert w.cat.inode_by_path(s1) is None
