"""`qbhook repair` for real: a torrent whose files were deleted is rebuilt from a copy the catalog
holds (hardlinks, zero bytes written), rechecked to 100 % by the real qbittorrent-nox. The CLI in
a subprocess, real zfs-fuse pools; a SIGKILL between the view and the setLocation is resumed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import tests.integration.test_apply_real as ar
from qbhook.sandbox.scenario import MOVIES
from qbhook.sandbox.torrents import write_payload
from tests.integration.crash_helpers import (
    MiB,
    b3,
    journal_rows,
    leftovers,
    qbhook,
    qbhook_json,
    torrents_state,
    tree_state,
    wait_seeding_at,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def world(pools, qbt, qbt_client, tmp_path):
    return ar.make_bed(pools, qbt, qbt_client, tmp_path)


def _seeded(bed, name: str, size: int, seed: int) -> tuple[str, Path, Path]:
    """A one-file torrent seeding from stash: (hash, save path, the file)."""
    save = bed.sc.stash_seed / "movies"
    write_payload(save, {f"{name}/{name.lower()}.mkv": size}, seed=seed)
    h = bed.sc._add(bed.client, name, save / name, save)
    return h, save, save / name / f"{name.lower()}.mkv"


def _indexed(bed) -> None:
    """Hash everything and sync the index: the torrents' content is known while their files exist."""
    r = qbhook(bed.cfg, "scan", "--hash")
    assert r.returncode == 0, r.stderr
    qbhook_json(bed.cfg, "torrents")


def _lose(bed, hashes: list[str], *files: Path) -> None:
    """The files vanish behind qBittorrent's back; at its next start it finds them gone (missingFiles)."""
    for f in files:
        os.unlink(f)
    bed.qbt.restart()
    bed.client = bed.qbt.client()
    deadline = time.monotonic() + 30
    while (states := {t["hash"]: t["state"] for t in bed.client.torrents_info(torrent_hashes=hashes)}) != {
        h: "missingFiles" for h in hashes
    }:
        assert time.monotonic() < deadline, states
        time.sleep(0.2)


def test_repair_rebuilds_a_missing_torrent_from_the_library_by_links_only(world):
    bed = world
    sc, client = bed.sc, bed.client
    h, save, seed = _seeded(bed, "Film.R", 6 * MiB, 71)
    lib = sc.stash / MOVIES / "Film R (2022)" / "Film R (2022).mkv"
    lib.parent.mkdir(parents=True, exist_ok=True)
    os.link(seed, lib)
    lost, _lsave, lost_file = _seeded(bed, "Gone.X", 1 * MiB, 72)  # no copy anywhere once deleted
    digest = b3(lib)
    _indexed(bed)
    _lose(bed, [h, lost], seed, lost_file)
    client = bed.client
    lib_before = os.lstat(lib)
    assert lib_before.st_nlink == 1

    # dry run: both listed (one repair, one refusal with its reason), nothing changes
    tree0, state0 = tree_state(bed.roots), torrents_state(client, [h, lost], bed.roots)
    _rc, dry = qbhook_json(bed.cfg, "repair")
    assert dry["dry_run"] and [g["torrents"] for g in dry["repairs"]] == [[h]], dry
    (g,) = dry["repairs"]
    assert g["action"] == "repair" and "0 bytes copied" in g["reason"]
    assert [s["kind"] for s in g["steps"]] == ["link", "verify_view", "repair", "verify_group"]
    assert g["steps"][0]["args"]["src"] == str(lib) and g["steps"][0]["args"]["dst"] == str(seed)
    assert [(r["hash"], r["reason"].split(":")[0]) for r in dry["unrepairable"]] == [(lost, "no full copy")]
    assert tree_state(bed.roots) == tree0 and torrents_state(client, [h, lost], bed.roots) == state0
    assert journal_rows(bed.catalog, "SELECT count(*) FROM steps") in ([], [(0,)])

    # the named torrent with no copy: refused, one line naming the reason
    r = qbhook(bed.cfg, "repair", lost, "--yes")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "no full copy" in r.stderr, r.stderr
    # bad input: unknown or not missing
    r = qbhook(bed.cfg, "repair", "0" * 40)
    assert r.returncode == 2 and "has torrent " + "0" * 40 in r.stderr and "Traceback" not in r.stderr
    r = qbhook(bed.cfg, "repair", "not-a-hash")
    assert r.returncode == 2 and "not a torrent info hash" in r.stderr

    used_before = bed.used_bytes("stash")
    _rc, out = qbhook_json(bed.cfg, "repair", h, "--yes")
    assert out["run"]["groups_failed"] == {} and len(out["run"]["groups_done"]) == 1, out
    assert out["run"]["bytes_copied"] == 0
    wait_seeding_at(client, [h], lambda _h: save)
    info = client.torrents_info(torrent_hashes=h)[0]
    assert info["progress"] == 1 and info["amount_left"] == 0
    # a link of the library's inode, not a copy: same inode, two links, library file untouched
    st, lst = os.lstat(seed), os.lstat(lib)
    assert (st.st_dev, st.st_ino) == (lib_before.st_dev, lib_before.st_ino) and lst.st_nlink == 2
    assert (lst.st_mtime_ns, lst.st_size) == (lib_before.st_mtime_ns, lib_before.st_size) and b3(lib) == digest
    assert bed.used_bytes("stash") - used_before < 1 * MiB  # 6 MiB would show
    assert leftovers(*bed.roots.values()) == []
    # the repaired torrent is no longer missing: named again, it is bad input
    r = qbhook(bed.cfg, "repair", h)
    assert r.returncode == 2 and "not missing any file" in r.stderr


def test_repair_onto_the_other_pool_resumes_after_a_kill_between_view_and_set_location(world):
    bed = world
    sc, client = bed.sc, bed.client
    h, _save, seed = _seeded(bed, "Doc.K", 4 * MiB, 73)
    # the only copy left will be on the cold pool (outside its seeding root: a plain folder)
    other = sc.pool / MOVIES / "Doc K" / "doc.k.mkv"
    other.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(seed, other)
    _indexed(bed)
    _lose(bed, [h], seed)
    client = bed.client
    new_save = sc.pool_seed / "movies"

    _rc, dry = qbhook_json(bed.cfg, "repair", h)
    (g,) = dry["repairs"]
    kinds = [s["kind"] for s in g["steps"]]
    assert kinds == ["link", "verify_view", "repair", "verify_group"]
    assert g["steps"][2]["args"]["to_path"] == str(new_save) and "save path moves to" in g["reason"]

    r = qbhook(bed.cfg, "repair", h, "--yes", crash_at=f"{kinds.index('repair')}:after_intend")
    assert r.returncode == -9, (r.returncode, r.stderr)
    # killed with the view built and verified, the repair intended, qBittorrent not yet asked
    assert (new_save / "Doc.K/doc.k.mkv").exists()
    assert os.path.normpath(client.torrents_info(torrent_hashes=h)[0]["save_path"]) == str(sc.stash_seed / "movies")
    r = qbhook(bed.cfg, "repair", h, "--yes")
    assert r.returncode != 0 and "qbhook resume" in r.stderr  # an unfinished run is finished first

    r = qbhook(bed.cfg, "resume")
    assert r.returncode == 0, r.stderr
    wait_seeding_at(client, [h], lambda _h: new_save)
    st = os.lstat(new_save / "Doc.K/doc.k.mkv")
    assert (st.st_ino, st.st_nlink) == (os.lstat(other).st_ino, 2)  # linked, not copied
    rows = journal_rows(bed.catalog, "SELECT kind, status FROM steps ORDER BY seq")
    assert rows == [(k, "done") for k in kinds], rows
    assert leftovers(*bed.roots.values()) == []
