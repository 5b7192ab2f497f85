"""Same-pool convergence for real: the CLI in a subprocess, real zfs-fuse pools, the real qbittorrent-nox.

An *arr import copied a seeding file into the library on the same dataset. `plan` shows a
convergence with the bytes it frees, `apply --yes` relinks the seeding name onto the
library's inode: qBittorrent keeps seeding at the same place, the library file is
untouched, the pool gets the space back. (The SIGKILL cases are in test_apply_real.py's
crash matrix: "converge" at after_intend and mid_act.)
"""

from __future__ import annotations

import os
import shutil

import pytest

import tests.integration.test_apply_real as ar
from qbhook.sandbox.scenario import MOVIES
from qbhook.sandbox.torrents import write_payload
from tests.integration.crash_helpers import (
    MiB,
    b3,
    leftovers,
    qbhook_json,
    wait_seeding_at,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def world(pools, qbt, qbt_client, tmp_path):
    return ar.make_bed(pools, qbt, qbt_client, tmp_path)


def _arr_copy(bed, folder: str, title: str, size: int, nfo: int, seed: int):
    """A torrent seeding ``folder`` (a video of ``size`` and an .nfo) under the stash's movies, whose
    video an *arr import copied into the library as ``title``: (hash, save path, seeding file, library file)."""
    sc = bed.sc
    save = sc.stash_seed / "movies"
    name = folder.lower()
    write_payload(save, {f"{folder}/{name}.mkv": size, f"{folder}/{name}.nfo": nfo}, seed=seed)
    h = sc._add(bed.client, folder, save / folder, save)
    src = save / folder / f"{name}.mkv"
    lib = sc.stash / MOVIES / title / f"{title}.mkv"
    lib.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, lib)
    return h, save, src, lib


def test_arr_copy_in_the_library_is_converged_and_the_torrent_keeps_seeding_in_place(world):
    bed = world
    sc, client = bed.sc, bed.client
    h, save, seed, lib = _arr_copy(bed, "Copy.H.2023", "Copy H (2023)", 6 * MiB, 1500, 41)
    # the same bytes on the nested library dataset: another filesystem, never a keeper
    nested = sc.stash / "data/media/library/Copy H (2023).mkv"
    nested.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(seed, nested)
    lib_before = os.lstat(lib)
    nested_before = os.lstat(nested)
    digest = b3(seed)
    used_before = bed.used_bytes("stash")

    _rc, plan = qbhook_json(bed.cfg, "plan", ok=(10,))
    g = ar._group_of(plan, h)
    assert g["action"] == "converge" and "used by a library" in g["reason"], g
    assert g["bytes_to_copy"] == 0 and g["bytes_freed"] == 6 * MiB
    assert [(s["kind"], s["args"]["path"], s["args"]["keep"]["path"]) for s in g["steps"]] == [
        ("converge", str(seed), str(lib))
    ]
    assert plan["summary"]["converge"] == 1
    assert os.lstat(seed).st_ino != lib_before.st_ino  # plan is a dry run

    _rc, out = qbhook_json(bed.cfg, "apply", "--yes")
    assert out["groups_failed"] == {} and len(out["groups_done"]) == 1, out
    assert out["bytes_freed"] == 6 * MiB and out["bytes_copied"] == 0 and out["torrents_relocated"] == 0

    st, lst = os.lstat(seed), os.lstat(lib)
    assert (st.st_dev, st.st_ino) == (lib_before.st_dev, lib_before.st_ino) and lst.st_nlink == 2
    assert (lst.st_mtime_ns, lst.st_size) == (lib_before.st_mtime_ns, lib_before.st_size) and b3(lib) == digest
    assert os.lstat(nested).st_ino == nested_before.st_ino and os.lstat(nested).st_nlink == 1
    assert leftovers(*bed.roots.values()) == []
    # same save path, still complete and seeding: no relocation, and a recheck would find the same bytes
    wait_seeding_at(client, [h], lambda _h: save)
    client.torrents_recheck(torrent_hashes=h)
    wait_seeding_at(client, [h], lambda _h: save, timeout=90)
    freed = used_before - bed.used_bytes("stash")
    assert freed >= 5 * MiB, f"stash used only {freed} bytes less"

    # now the group is linked from the library: it stays, and nothing is left to do
    _rc, again = qbhook_json(bed.cfg, "plan")
    assert ar._group_of(again, h)["action"] == "stay"
    _rc, nothing = qbhook_json(bed.cfg, "apply", "--yes")
    assert nothing["run_id"] is None


def test_qbhook_converge_relinks_an_arr_copy_in_one_pass_and_the_torrent_keeps_seeding(world):
    """``qbhook converge``: the set-based pass over the catalog's duplicate sets (decide/converge_pass.py)."""
    bed = world
    client = bed.client
    h, save, seed, lib = _arr_copy(bed, "Copy.P.2024", "Copy P (2024)", 5 * MiB, 900, 43)
    lib_before = os.lstat(lib)
    digest = b3(seed)

    _rc, dry = qbhook_json(bed.cfg, "converge")
    assert dry["dry_run"] and dry["duplicate_sets"] >= 1, dry
    steps = [(s["kind"], s["args"]["path"], s["args"]["keep"]["path"]) for g in dry["groups"] for s in g["steps"]]
    assert ("converge", str(seed), str(lib)) in steps
    assert os.lstat(seed).st_ino != lib_before.st_ino  # a dry run

    _rc, out = qbhook_json(bed.cfg, "converge", "--yes")
    assert out["groups_failed"] == {} and out["bytes_freed"] >= 5 * MiB and out["torrents_relocated"] == 0, out
    st, lst = os.lstat(seed), os.lstat(lib)
    assert (st.st_dev, st.st_ino) == (lib_before.st_dev, lib_before.st_ino) and lst.st_nlink == 2
    assert (lst.st_mtime_ns, lst.st_size) == (lib_before.st_mtime_ns, lib_before.st_size) and b3(lib) == digest
    assert leftovers(*bed.roots.values()) == []
    wait_seeding_at(client, [h], lambda _h: save)
    client.torrents_recheck(torrent_hashes=h)
    wait_seeding_at(client, [h], lambda _h: save, timeout=90)

    _rc, again = qbhook_json(bed.cfg, "converge", "--yes")
    assert again["run_id"] is None and again["bytes_freed"] == 0, again
