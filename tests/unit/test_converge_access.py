"""A convergence never takes access from the torrent's user (R36).

A relink puts a library's inode at a seeding name; the name then shows that inode's owner and
mode (a library file is never chmodded nor chowned). The kept inode must give the replaced
file's owner the access the replaced file gave it: read, and write if it was writable by its
owner (a piece repair opens read-write; a cross-seed tool's hard link needs write access or
ownership under ``fs.protected_hardlinks``). The rule (``qbhook.access``) has one home, asked by
the planner on its facts and by the executor on the stats it takes anyway.
"""

from __future__ import annotations

import os
import stat

import pytest

from qbhook.access import access_lost
from qbhook.config import PolicyConfig
from qbhook.decide.planner import make_plan
from qbhook.errors import ConfigError, UnsafeOperation
from tests.helpers import write
from tests.unit import test_executor as te
from tests.unit.test_config import BASE_YAML, _load_text
from tests.unit.test_converge import _dup, _relink_over, fs2  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.world import LIB, S, World

F = stat.S_IFREG
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    "kept, victim, groups, lost",
    [
        # R36: qBittorrent's 0664 file, Radarr's 0644 copy of group 1000: write lost
        ((F | 0o644, 1001, 1000), (F | 0o664, 1000, 1000), None, "write"),
        ((F | 0o664, 1001, 1000), (F | 0o664, 1000, 1000), None, None),
        ((F | 0o644, 1001, 1000), (F | 0o444, 1000, 1000), None, None),  # only read was given
        ((F | 0o600, 1001, 1001), (F | 0o644, 1000, 1000), None, "read and write"),
        ((F | 0o644, 1000, 1000), (F | 0o644, 1000, 1000), None, None),  # same owner
        ((F | 0o444, 1000, 1000), (F | 0o644, 1000, 1000), None, "write"),  # the owner's own bits decide
        ((F | 0o600, 1001, 1001), (F | 0o600, 0, 0), None, None),  # root loses nothing
        # another group: unknown membership needs the group's and the others' bits both
        ((F | 0o666, 1001, 1001), (F | 0o664, 1000, 1000), None, None),
        ((F | 0o664, 1001, 1001), (F | 0o664, 1000, 1000), None, "write"),
        ((F | 0o604, 1001, 1001), (F | 0o444, 1000, 1000), None, "read"),  # 1000 may be in group 1001
        # the user's groups known (policy.client_groups): the kernel's rule exactly
        ((F | 0o664, 1001, 1001), (F | 0o664, 1000, 1000), frozenset({1000, 1001}), None),
        ((F | 0o604, 1001, 1001), (F | 0o444, 1000, 1000), frozenset({1000}), None),
        ((F | 0o604, 1001, 1001), (F | 0o444, 1000, 1000), frozenset({1000, 1001}), "read"),
        # R38: the victim's group came from a setgid folder (2775 root:2000) and the user is not in
        # it: known groups are the only ones, so the kept file's group bits give uid 1000 nothing
        ((F | 0o660, 1001, 2000), (F | 0o644, 1000, 2000), frozenset({1000}), "read and write"),
        ((F | 0o664, 1001, 2000), (F | 0o664, 1000, 2000), frozenset({1000}), "write"),
        ((F | 0o660, 1001, 2000), (F | 0o644, 1000, 2000), frozenset({1000, 2000}), None),
        ((F | 0o660, 1001, 2000), (F | 0o644, 1000, 2000), None, None),  # not known: its group is taken as the user's
    ],
)
def test_the_kept_inode_must_give_the_replaced_files_owner_what_the_replaced_file_gave(kept, victim, groups, lost):
    assert access_lost(kept, victim, groups) == lost


def test_policy_client_groups_is_read_as_uid_to_gids(tmp_path):
    cfg = _load_text(tmp_path, BASE_YAML % ("", "policy: {client_groups: {1000: [1000, 100]}}"))
    assert cfg.policy.groups_of() == {1000: frozenset({1000, 100})}
    assert PolicyConfig().groups_of() == {}
    for bad in ("{client_groups: [1000]}", "{client_groups: {abc: [1]}}", "{client_groups: {1000: [x]}}"):
        with pytest.raises(ConfigError, match="policy.client_groups"):
            _load_text(tmp_path, BASE_YAML % ("", f"policy: {bad}"))


# --------------------------------------------------------------------------- the planner


def _world(victim_access, lib_access, client_groups=None):
    w = World(client_groups=client_groups or {})
    w.payload(S + "/movies", {"Film/film.mkv": "F"})
    w.inodes[w.paths[S + "/movies/Film/film.mkv"]]["access"] = victim_access
    lib = w.file(LIB + "/Film (2021)/Film (2021).mkv", "F")
    w.inodes[lib]["access"] = lib_access
    w.torrent("a" * 40, S + "/movies", ["Film/film.mkv"])
    return w


def test_the_planner_leaves_a_file_unconverged_when_the_librarys_copy_would_take_write_access():
    g = make_plan(_world((F | 0o664, 1000, 1000), (F | 0o644, 1001, 1000)).snapshot(), PolicyConfig()).groups[0]
    assert g.action == "stay" and not g.steps
    assert (
        S + "/movies/Film/film.mkv is not converged: the library's copy would take write access from uid 1000 "
        "(owner 1001, group 1000, mode 0644)"
    ) in g.reason


@pytest.mark.parametrize(
    "victim, lib, groups",
    [
        ((F | 0o664, 1000, 1000), (F | 0o664, 1001, 1000), None),  # the library's group may write
        ((F | 0o444, 1000, 1000), (F | 0o644, 1001, 1000), None),  # only read was given
        ((F | 0o664, 1000, 1000), (F | 0o664, 1001, 1001), {1000: frozenset({1000, 1001})}),  # a known member
        (None, (F | 0o600, 1001, 1001), None),  # the converge pass: no owner known, the executor decides
    ],
)
def test_the_planner_converges_when_the_kept_inode_gives_what_the_victim_gave(victim, lib, groups):
    g = make_plan(_world(victim, lib, groups).snapshot(), PolicyConfig()).groups[0]
    assert g.action == "converge" and len(g.steps) == 1, g.reason


# --------------------------------------------------------------------------- the executor's re-check


@ROOT_ONLY
def test_relink_over_refuses_a_keeper_that_would_take_write_access_and_changes_nothing(fs2):  # noqa: F811
    # R36 part D: qBittorrent's 1000:1000 0664 file onto Radarr's 1001:1000 0644 copy.
    victim, lib, kw = _dup(fs2)
    os.chown(victim, 1000, 1000)
    os.chmod(victim, 0o664)
    os.chown(lib, 1001, 1000)
    os.chmod(lib, 0o644)
    before = os.lstat(victim)
    with pytest.raises(UnsafeOperation, match=r"would take write access from uid 1000 \(owner 1001, group 1000"):
        _relink_over(victim, lib, **kw)
    after = os.lstat(victim)
    assert (after.st_ino, after.st_uid, after.st_mode) == (before.st_ino, 1000, F | 0o664)
    assert os.lstat(lib).st_nlink == 1
    os.chmod(lib, 0o664)  # the library's group may write: uid 1000 keeps its write access
    assert _relink_over(victim, lib, **kw)["status"] == "relinked"
    assert os.lstat(victim).st_ino == os.lstat(lib).st_ino


@ROOT_ONLY
def test_relink_over_counts_the_owners_groups_only_where_the_config_gives_them(fs2):  # noqa: F811
    victim, lib, kw = _dup(fs2)
    os.chown(victim, 1000, 1000)
    os.chmod(victim, 0o664)
    os.chown(lib, 1001, 1001)
    os.chmod(lib, 0o664)
    with pytest.raises(UnsafeOperation, match="would take write access from uid 1000"):
        _relink_over(victim, lib, **kw)  # is uid 1000 in group 1001? unknown: the others' r-- decides
    with pytest.raises(UnsafeOperation, match="would take write access from uid 1000"):
        _relink_over(victim, lib, **kw, client_groups={1000: frozenset({1000})})
    assert _relink_over(victim, lib, **kw, client_groups={1000: frozenset({1000, 1001})})["status"] == "relinked"


@ROOT_ONLY
def test_the_real_planner_reads_the_owners_from_its_lstat_and_leaves_the_file(tmpfs, tmp_path):  # noqa: F811
    from qbhook.decide.snapshot import build_snapshot

    w = te._make_world(tmpfs, tmp_path)
    try:
        movie = te.FILES[0][1]
        lib = write(w.stash / "media/Movie (2020)/Movie (2020).mkv", movie)
        os.chown(lib, 1001, 1000)
        os.chmod(lib, 0o644)
        seeding = [os.path.join(w.save(h, "stash"), "Movie.2020/movie.mkv") for h in (te.H1, te.H2)]
        for p in seeding:
            os.chown(p, 1000, 1000)
            os.chmod(p, 0o664)
        plan = te.settled_plan(w)
        (g,) = plan.groups
        assert g.action == "stay" and not g.steps, g.reason
        assert "is not converged: the library's copy would take write access from uid 1000" in g.reason
        os.chmod(lib, 0o664)
        plan = make_plan(build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy)
        assert [g.action for g in plan.groups] == ["converge"], plan.groups[0].reason
    finally:
        w.cat.close()
