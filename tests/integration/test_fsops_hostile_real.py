"""Issue 9, findings 1 and 3 on the real bed: `qbhook apply --yes` (the CLI in a subprocess) against
real zfs-fuse pools and the real qbittorrent-nox, with what a writer of the seeding tree could plant.

The unit tests (tests/unit/test_fsops_hostile.py) prove each guard in fsops; these prove that
an ordinary demote, end to end, keeps outside folders and the last copy safe.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from qbhook.move.fsops import HOLDING_DIR
from qbhook.sandbox.scenario import MOVIES, Scenario
from tests.integration.crash_helpers import contents_on_disk, qbhook_json, walk_files

pytestmark = pytest.mark.integration

TWO_DAYS = 2 * 86400


def _bed(pools, qbt, tmp_path: Path, **policy) -> tuple[Scenario, Path]:
    sc = Scenario(stash=pools["stash"], pool=pools["pool"], torrent_dir=tmp_path / "torrents")
    for d in (sc.stash_seed, sc.pool_seed, sc.stash / MOVIES):
        d.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(sc.config_dict(tmp_path / "catalog.sqlite", qbt.url, **policy)))
    return sc, cfg


def _plant(folder: Path, files: dict[str, bytes], age_s: float = TWO_DAYS) -> dict[str, bytes]:
    t = time.time() - age_s
    for rel, data in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for dirpath, dirs, names in os.walk(folder):
        for n in dirs + names:
            os.utime(os.path.join(dirpath, n), (t, t))
    os.utime(folder, (t, t))
    return files


def _still_there(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        assert (folder / rel).read_bytes() == data, rel


def test_demote_with_holding_symlinked_outside_touches_nothing_there(pools, qbt, qbt_client, tmp_path):
    """Finding 1: .qbhook-holding is a symlink to an outside folder with two-day-old content; a demote
    with a grace period used to hold links there and then rmtree that content."""
    sc, cfg = _bed(pools, qbt, tmp_path, grace_period="1h")
    sc.seed_only_with_cross_seeds(qbt_client)
    private = sc.stash / "private"
    planted = _plant(private, {"1/tax-return.pdf": b"not qbhook's", "old/photo.jpg": b"family photo"})
    os.symlink(private, sc.stash_seed / HOLDING_DIR)
    before = contents_on_disk(sc.stash, sc.pool)

    _rc, out = qbhook_json(cfg, "apply", "--yes", ok=tuple(range(256)))

    _still_there(private, planted)
    assert sorted(os.listdir(private)) == ["1", "old"]  # nothing held in there either
    assert out["groups_done"] == [] and len(out["groups_failed"]) == 1, out
    assert "symlink" in next(iter(out["groups_failed"].values()))
    assert contents_on_disk(sc.stash, sc.pool) >= before  # no content lost anywhere


def test_demote_purges_only_the_links_it_held(pools, qbt, qbt_client, tmp_path):
    """Finding 1: a real .qbhook-holding folder with another torrent's data in it survives the purge;
    the links this run held are purged once the (tiny) grace period is over."""
    sc, cfg = _bed(pools, qbt, tmp_path, grace_period=0.001)
    sc.seed_only_with_cross_seeds(qbt_client)
    hold = sc.stash_seed / HOLDING_DIR
    hold.mkdir(mode=0o700)
    planted = _plant(hold, {"99/Other.Show/e01.mkv": b"another torrent's data"})

    _rc, out = qbhook_json(cfg, "apply", "--yes")

    assert len(out["groups_done"]) == 1 and out["groups_failed"] == {}, out
    _still_there(hold, planted)
    assert sorted(os.listdir(hold)) == ["99"]  # this run's held links are gone
    assert [p for p, _st in walk_files(sc.stash_seed / "tv")] == []


def test_demote_into_a_symlinked_view_folder_keeps_the_primary_copy(pools, qbt, qbt_client, tmp_path):
    """Finding 3: the cross-seed folder of the cold seeding root leads, by a symlink, out of the seeding
    root. The demote used to build the views there, report done and delete the primary links."""
    sc, cfg = _bed(pools, qbt, tmp_path)
    sc.seed_only_with_cross_seeds(qbt_client)
    elsewhere = sc.pool / "elsewhere"  # same filesystem, outside the root
    elsewhere.mkdir()
    os.symlink(elsewhere, sc.pool_seed / "cross-seed")
    stash_files = {p: Path(p).read_bytes() for p, _st in walk_files(sc.stash_seed)}

    # Two guards stand in the way: the planner blocks a group whose destination path has a symlink
    # (it names the link), and the executor's descriptor walk would refuse it anyway (unit-tested in
    # test_fsops_hostile.py, where the planner is bypassed).
    _rc, planned = qbhook_json(cfg, "plan", ok=(0, 10))
    blocked = [g for g in planned["groups"] if g["action"] == "blocked"]
    assert len(blocked) == 1 and "symlink" in blocked[0]["reason"], planned
    _rc, out = qbhook_json(cfg, "apply", "--yes", ok=tuple(range(256)))

    assert out["groups_done"] == [], out
    assert list(walk_files(elsewhere)) == []
    for p, data in stash_files.items():
        assert Path(p).read_bytes() == data, p
