"""Leftover views of a rolled-back group, for real (zfs-fuse pools, qbittorrent-nox): the executor
journals the view files it made on the target pool, `status` shows them, and the next
`apply --yes` removes exactly those (same inode, content still on the source pool), while a
view that changed since is released, never removed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qbhook.sandbox.scenario import MOVIES
from tests.integration.crash_helpers import b3, journal_rows, qbhook, qbhook_json, wait_seeding_at, walk_files
from tests.integration.test_apply_real import make_bed, run_in_process

pytestmark = pytest.mark.integration


@pytest.fixture
def bed(pools, qbt, qbt_client, tmp_path):
    return make_bed(pools, qbt, qbt_client, tmp_path)


def _roll_back_siblings_after_views(bed):
    """Demote the sibling group; an *arr links the source into a library after verify_group,
    so every delete refuses and the group rolls back with its views built on the pool."""
    sc = bed.sc
    sc.seed_only_with_cross_seeds(bed.client)
    src = sc.stash_seed / "tv/Show.S01.1080p/Show.S01E01.mkv"
    lib = sc.stash / MOVIES / "Show" / "Show.S01E01.mkv"

    def hook(point, _gid, _seq, step):
        if point == "after_act" and step.kind == "verify_group" and not lib.exists():
            lib.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, lib)

    _plan, summary = run_in_process(bed.cfg, hook)
    (g,) = summary.groups
    assert g.status == "rolled_back", g
    return summary


def test_rolled_back_views_are_journaled_shown_and_removed_by_the_next_apply(bed):
    sc = bed.sc
    _roll_back_siblings_after_views(bed)
    stash_before = {p: b3(p) for p, _st in walk_files(sc.stash_seed)}
    wait_seeding_at(bed.client, sc.hashes["siblings"], None, anywhere=True)
    views = sorted(p for p, _st in walk_files(sc.pool_seed))
    assert len(views) == 6, views  # 3 torrents x 2 episodes: 2 copies + 4 links

    _rc, st = qbhook_json(bed.cfg, "status", ok=(0, 1))
    assert sorted(st["leftover_views"]) == views

    qbhook_json(bed.cfg, "apply", "--yes", ok=(0, 5))

    assert list(walk_files(sc.pool_seed)) == [], list(walk_files(sc.pool_seed))
    assert not (sc.pool_seed / "tv").exists() and not (sc.pool_seed / "cross-seed").exists()
    # the stash side is untouched, every torrent still seeds from it
    assert {p: b3(p) for p, _st in walk_files(sc.stash_seed)} == stash_before
    for t in bed.client.torrents_info():
        assert os.path.normpath(t["save_path"]).startswith(str(sc.stash_seed)) and t["progress"] == 1
    _rc, st = qbhook_json(bed.cfg, "status", ok=(0, 1))
    assert st["leftover_views"] == []


def test_a_view_changed_since_is_released_not_removed(bed):
    sc = bed.sc
    _roll_back_siblings_after_views(bed)
    stash_before = {p: b3(p) for p, _st in walk_files(sc.stash_seed)}
    views = sorted(p for p, _st in walk_files(sc.pool_seed))
    # someone replaced one view file with their own data: not qbhook's any more
    mine = views[0]
    os.unlink(mine)
    with open(mine, "wb") as f:
        f.write(b"theirs" * 1000)

    qbhook_json(bed.cfg, "apply", "--yes", ok=(0, 5))

    with open(mine, "rb") as f:
        assert f.read() == b"theirs" * 1000
    assert {p: b3(p) for p, _st in walk_files(sc.stash_seed)} == stash_before
    _rc, st = qbhook_json(bed.cfg, "status", ok=(0, 1))
    assert st["leftover_views"] == []  # released or removed: no longer tracked


def test_a_copy_rewritten_in_place_at_the_same_size_is_released_not_removed(bed):
    # Review finding 1: the remover checked the copy's inode and size and the stash source's
    # content, never the copy's own: rewritten in place (rsync --inplace, another client, mtime
    # put back), it was unlinked with the only copy of its new bytes.
    sc = bed.sc
    _roll_back_siblings_after_views(bed)
    views = sorted(p for p, st in walk_files(sc.pool_seed))
    by_ino: dict[int, list[str]] = {}
    for p in views:
        by_ino.setdefault(os.lstat(p).st_ino, []).append(p)
    names = next(v for v in by_ino.values() if len(v) > 1)  # a copy and the links made onto it
    st = os.lstat(names[0])
    with open(names[0], "r+b") as f:
        f.write(b"mine" * 16)
    os.utime(names[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    theirs = Path(names[0]).read_bytes()

    qbhook_json(bed.cfg, "apply", "--yes", ok=(0, 5))

    left = [p for p in names if os.path.exists(p)]
    assert left and all(Path(p).read_bytes() == theirs for p in left)
    _rc, status = qbhook_json(bed.cfg, "status", ok=(0, 1))
    assert status["leftover_views"] == []  # released: kept, no longer tracked


def test_a_copy_whose_source_is_gone_waits_for_a_person_tried_once_and_kept(bed):
    """Its content may live nowhere else now: the view was tried (and a line logged) on every run
    forever. Now: one warning, kept, a `status` problem naming it; the next run neither tries
    it nor logs it."""
    sc = bed.sc
    _roll_back_siblings_after_views(bed)
    recorded = [
        json.loads(a) for (a,) in journal_rows(bed.catalog, "SELECT args FROM steps WHERE kind='leftover_view'")
    ]
    copy = next(v for v in recorded if v["keep"].startswith(str(sc.stash)))  # a copy: its source on the stash
    os.unlink(copy["keep"])  # its source gone: nothing proves the copy is redundant any more
    with open(copy["path"], "rb") as f:
        held = f.read()

    first = qbhook(bed.cfg, "apply", "--yes")
    assert first.returncode in (0, 5), first.stderr
    assert [ln for ln in first.stderr.splitlines() if "may be the last copy" in ln and copy["path"] in ln], first.stderr
    second = qbhook(bed.cfg, "apply", "--yes")
    assert "leftover view" not in second.stderr, second.stderr  # not tried again, not logged again

    with open(copy["path"], "rb") as f:
        assert f.read() == held  # kept
    _rc, st = qbhook_json(bed.cfg, "status", ok=(1,))  # a problem: it needs a person
    assert [w["path"] for w in st["leftover_views_waiting"]] == [copy["path"]]
    assert "is gone" in st["leftover_views_waiting"][0]["reason"] and st["leftover_views"] == []
    assert [p for p in st["problems"] if copy["path"] in p], st["problems"]
