"""A dataset (another filesystem) mounted below a seeding root: nothing is planned through it.

``move.fsops`` never acts through a mount point below a configured root, so a demote out of one
copied in full, then failed at the hide, every sweep (the copy left on the cold pool); a
destination in one failed at the first copy; a convergence there failed every run (R56). The
planner and the converge pass now leave such files where they are, with one line saying to make
that folder a seeding root of its own, and a folder that is one works. A tmpfs stands in for
each dataset.
"""

from __future__ import annotations

import os

import pytest

from qbhook.catalog.fsid import mounts_below, parse_mountinfo
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.cli.config import nested_mount_warnings
from qbhook.config import load_config, parse_config
from qbhook.decide import planner, snapshot
from qbhook.decide.converge_pass import plan_convergence
from qbhook.decide.plan import Action
from qbhook.move.journal import Journal
from qbhook.move.run import apply_converged
from tests.helpers import config_data, make_config, write
from tests.unit.test_cli_catalog import SEED, Env
from tests.unit.test_executor import FakeClock, FakeQbt, FakeTorrent, World
from tests.unit.test_fsops import tmpfs  # noqa: F401

HA, HB = "a" * 40, "b" * 40
BIG = os.urandom(100_000)
OLD = 1_600_000_000 * 10**9  # settled long ago


def _world(tmpfs, tmp_path, cfg=None) -> World:  # noqa: F811
    stash, pool = tmpfs("stash"), tmpfs("pool")
    cfg = cfg or make_config(tmp_path / "cat.sqlite", stash, pool, seeding="torrents/seeding")
    seed_s, seed_p = str(cfg.primary.seeding_root), str(cfg.cold.seeding_root)
    os.makedirs(seed_p, exist_ok=True)
    os.makedirs(seed_s, exist_ok=True)
    cat = Catalog.open(cfg.catalog, marker_roots=[stash, pool])
    return World(cfg, cat, Journal(cat.conn), FakeQbt(), FakeClock(), stash, pool, seed_s, seed_p, str(stash / "media"))


@pytest.fixture
def w(tmpfs, tmp_path):  # noqa: F811
    world = _world(tmpfs, tmp_path)
    yield world
    world.cat.close()


def _dataset(tmpfs, w: World, path: str) -> str:  # noqa: F811
    """A dataset (a tmpfs) mounted at ``path``, below the test's folder."""
    return str(tmpfs(os.path.relpath(path, w.stash.parent)))


def _plan(w: World):
    for p in w.cfg.pools:
        scan_pool(w.cat, p, w.cfg.scan)
    return planner.make_plan(snapshot.build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy)


def _files_below(root: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _s, fs in os.walk(root) for f in fs)


def _nested_line(path: str, root: str) -> str:
    return f"{path} is on another filesystem (a dataset mounted below seeding root {root}): configure it as its own"


def test_a_source_in_a_dataset_below_the_seeding_root_stays_and_nothing_is_copied(w, tmpfs):  # noqa: F811
    tv = _dataset(tmpfs, w, os.path.join(w.seed_s, "tv"))
    ep = write(os.path.join(tv, "Show/ep.mkv"), BIG)
    w.qbt.add(FakeTorrent(HA, "Show", tv, [("Show/ep.mkv", len(BIG), 1)], tags={"~noHL"}))
    for _ in range(2):  # every sweep alike: no copy left on the cold pool for nobody
        plan = _plan(w)
        (g,) = plan.groups
        assert g.action == Action.BLOCKED and g.steps == []
        assert g.blockers == [
            _nested_line(ep, w.seed_s)
            + " seeding root (seeding_roots.<pool> takes a list of "
            + "folders, none inside another)"
        ]
        w.executor().apply(plan)
        assert _files_below(w.seed_p) == []
    assert w.qbt.t[HA].save_path == tv


def test_a_destination_in_a_dataset_below_the_target_seeding_root_stays(w, tmpfs):  # noqa: F811
    tvp = _dataset(tmpfs, w, os.path.join(w.seed_p, "tv"))
    save = os.path.join(w.seed_s, "tv")
    write(os.path.join(save, "Show/ep.mkv"), BIG)
    w.qbt.add(FakeTorrent(HA, "Show", save, [("Show/ep.mkv", len(BIG), 1)], tags={"~noHL"}))
    plan = _plan(w)
    (g,) = plan.groups
    assert g.action == Action.BLOCKED
    assert len(g.blockers) == 1 and g.blockers[0].startswith(_nested_line(tvp, w.seed_p))
    w.executor().apply(plan)
    assert _files_below(w.seed_p) == [] and w.qbt.t[HA].save_path == save


def test_a_deeper_missing_destination_folder_is_judged_by_its_deepest_existing_folder(w, tmpfs):  # noqa: F811
    tvp = _dataset(tmpfs, w, os.path.join(w.seed_p, "tv"))
    save = os.path.join(w.seed_s, "tv", "Show", "S01")  # /pool/.../tv/Show/S01 does not exist yet
    write(os.path.join(save, "ep.mkv"), BIG)
    w.qbt.add(FakeTorrent(HA, "ep", save, [("ep.mkv", len(BIG), 1)], tags={"~noHL"}))
    (g,) = _plan(w).groups
    assert g.action == Action.BLOCKED and g.blockers[0].startswith(_nested_line(tvp, w.seed_p))


def _duplicates_in(w: World, folder: str) -> None:
    for h, sub in ((HA, "a"), (HB, "b")):
        write(os.path.join(folder, sub, "Show/ep.mkv"), BIG, mtime_ns=OLD)
        w.qbt.add(FakeTorrent(h, "Show", os.path.join(folder, sub), [("Show/ep.mkv", len(BIG), 1)]))


def test_duplicates_in_a_dataset_below_the_seeding_root_are_not_converged(w, tmpfs):  # noqa: F811
    tv = _dataset(tmpfs, w, os.path.join(w.seed_s, "tv"))
    _duplicates_in(w, tv)
    for p in w.cfg.pools:
        scan_pool(w.cat, p, w.cfg.scan)
    assert plan_convergence(w.cfg, w.cat, [w.qbt], scan=False).plan.groups == []
    done = apply_converged(w.cfg, w.cat, [w.qbt], w.executor(), scan=False, dry_run=False)
    assert done.summary.groups_failed == {}
    plan = planner.make_plan(snapshot.build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy)
    assert [g.action for g in plan.groups] == [Action.STAY, Action.STAY]  # no converge step either
    assert all(g.steps == [] for g in plan.groups)


def test_duplicates_on_the_seeding_roots_own_filesystem_still_converge(w):
    _duplicates_in(w, os.path.join(w.seed_s, "tv"))
    for p in w.cfg.pools:
        scan_pool(w.cat, p, w.cfg.scan)
    (g,) = plan_convergence(w.cfg, w.cat, [w.qbt], scan=False).plan.groups
    assert g.action == Action.CONVERGE


@pytest.fixture
def own_root(tmpfs, tmp_path):  # noqa: F811
    """The advice taken: the dataset mounted outside the first seeding root and listed as a second one."""
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    data = config_data(tmp_path / "cat.sqlite", stash, pool, seeding="torrents/seeding")
    data["seeding_roots"]["stash"] = [data["seeding_roots"]["stash"], str(stash / "tv")]
    world = _world(tmpfs, tmp_path, parse_config(data, env={}))
    tmpfs("stash/tv")
    yield world
    world.cat.close()


def test_a_dataset_configured_as_its_own_seeding_root_demotes(own_root):
    w = own_root
    save = str(w.stash / "tv")
    write(os.path.join(save, "Show/ep.mkv"), BIG)
    w.qbt.add(FakeTorrent(HA, "Show", save, [("Show/ep.mkv", len(BIG), 1)], tags={"~noHL"}))
    plan = _plan(w)
    (g,) = plan.groups
    assert g.action == Action.DEMOTE, g.reason
    summary = w.executor().apply(plan)
    assert summary.groups_failed == {}
    assert w.qbt.t[HA].save_path == w.seed_p  # the second root maps onto the pool's only one
    assert _files_below(save) == [] and _files_below(w.seed_p) == [os.path.join(w.seed_p, "Show/ep.mkv")]


def test_duplicates_in_a_dataset_that_is_its_own_seeding_root_converge(own_root):
    w = own_root
    _duplicates_in(w, str(w.stash / "tv"))
    for p in w.cfg.pools:
        scan_pool(w.cat, p, w.cfg.scan)
    (g,) = plan_convergence(w.cfg, w.cat, [w.qbt], scan=False).plan.groups
    assert g.action == Action.CONVERGE
    done = apply_converged(w.cfg, w.cat, [w.qbt], w.executor(), scan=False, dry_run=False)
    assert done.summary.groups_failed == {}
    a, b = (os.lstat(w.stash / "tv" / s / "Show/ep.mkv") for s in "ab")
    assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# --------------------------------------------------------------------------- config check

MOUNTINFO = (
    "22 1 0:20 / / rw - ext4 /dev/sda1 rw\n"
    "40 22 0:41 / /stash rw - zfs stash rw\n"
    "41 40 0:42 / /stash/seeding/tv rw - zfs stash/tv rw\n"
    "42 40 0:42 / /stash/seeding/tv rw - zfs stash/tv rw\n"  # mounted over twice: one place
    "43 40 0:43 / /stash/seeding rw - zfs stash/seeding rw\n"  # the root itself: its own dataset, fine
    "44 40 0:44 / /stash/seedingx rw - zfs stash/x rw\n"  # beside the root, not below it
    "45 22 0:45 / /pool/seeding/a\\040b rw - zfs pool/ab rw\n"
)


def test_mounts_below_names_each_mount_strictly_below_a_root_once():
    mounts = parse_mountinfo(MOUNTINFO)
    assert mounts_below(["/stash/seeding", "/pool/seeding/"], mounts) == [
        ("/stash/seeding", "/stash/seeding/tv"),
        ("/pool/seeding", "/pool/seeding/a b"),
    ]
    assert mounts_below(["/stash/other"], mounts) == []


def test_config_check_warns_of_a_dataset_mounted_below_a_seeding_root(tmp_path, tmpfs):  # noqa: F811
    env = Env(tmp_path)
    assert nested_mount_warnings(load_config(env.config)) == []
    tv = tmpfs(os.path.relpath(env.stash / SEED / "tv", tmp_path))
    (line,) = nested_mount_warnings(load_config(env.config))
    assert line == (
        f"seeding_roots.stash: {tv} is another filesystem (a dataset mounted below seeding root {env.stash / SEED}): "
        "nothing in it is moved or converged; configure it as its own seeding root "
        "(seeding_roots.stash takes a list of folders, none inside another)"
    )
    r = env.run("config", "check", expect=None)  # (both pools on tmp_path's filesystem is a problem too)
    assert f"WARNING: {line}" in r.stderr


@pytest.fixture
def own_roots(tmpfs, tmp_path):  # noqa: F811
    """Each pool's second seeding root a dataset of its own (stash/tv onto pool/tv)."""
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    data = config_data(tmp_path / "cat.sqlite", stash, pool, seeding="torrents/seeding")
    for name, top in (("stash", stash), ("pool", pool)):
        data["seeding_roots"][name] = [data["seeding_roots"][name], str(top / "tv")]
    world = _world(tmpfs, tmp_path, parse_config(data, env={}))
    tmpfs("stash/tv")
    tmpfs("pool/tv")
    yield world
    world.cat.close()


def test_a_demote_into_a_second_root_of_its_own_links_only_from_that_roots_filesystem(own_roots):
    w = own_roots
    save, on_tv, on_main = str(w.stash / "tv"), str(w.pool / "tv" / "old"), os.path.join(w.seed_p, "old")
    write(os.path.join(save, "Show/ep.mkv"), BIG, mtime_ns=OLD)
    w.qbt.add(FakeTorrent(HA, "Show", save, [("Show/ep.mkv", len(BIG), 1)], tags={"~noHL"}))
    # The same content seeded on the cold pool twice: on its first root's filesystem, and on the
    # dataset the demote goes to. Only the second can be linked into /pool/tv.
    for h, where in ((HB, on_main), ("c" * 40, on_tv)):
        write(os.path.join(where, "Show/ep.mkv"), BIG, mtime_ns=OLD if where == on_main else OLD + 1)
        w.qbt.add(FakeTorrent(h, "Show", where, [("Show/ep.mkv", len(BIG), 1)]))
    plan = _plan(w)
    (g,) = [g for g in plan.groups if HA in g.torrents]
    assert g.action == Action.DEMOTE, g.reason
    summary = w.executor().apply(plan)
    assert summary.groups_failed == {}
    moved = os.lstat(w.pool / "tv" / "Show/ep.mkv")
    donor = os.lstat(os.path.join(on_tv, "Show/ep.mkv"))
    assert (moved.st_dev, moved.st_ino) == (donor.st_dev, donor.st_ino)
