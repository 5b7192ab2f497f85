"""A promotion or a demotion never takes access from the torrent's user (R36, the moves' side).

A move links a torrent's file onto content already on the target pool (a donor): on /stash
typically a library file an *arr import copied there, owned by the *arr. The torrent's name then
shows the donor's owner and mode, as a convergence's kept inode does, so the same rule
(``qbhook.access``) decides: the planner keeps the group where it is, saying why, and the
executor refuses the link if the facts changed since planning.
"""

from __future__ import annotations

import os
import stat

import pytest

from qbhook.config import PolicyConfig
from qbhook.decide.planner import make_plan
from qbhook.errors import UnsafeOperation
from qbhook.move import fsops
from tests.helpers import b3, write
from tests.unit.test_fsops import fs2, tmpfs  # noqa: F401  (fixtures)
from tests.unit.world import LIB, P, S, World

F = stat.S_IFREG
QBT, RADARR = (1000, 1000), (1001, 1000)
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def _set(w: World, path: str, access) -> None:
    w.inodes[w.paths[path]]["access"] = access


# --------------------------------------------------------------------------- promote (the planner)


def _promote_world(cold, lib, client_groups=None) -> World:
    """A torrent's file on /pool (``cold``: its (mode, uid, gid)), Radarr's copy in the library on /stash."""
    w = World(client_groups=client_groups or {})
    w.payload(P + "/movies", {"Film/film.mkv": "F"})
    _set(w, P + "/movies/Film/film.mkv", cold)
    w.file(LIB + "/Film (2021)/Film (2021).mkv", "F")
    _set(w, LIB + "/Film (2021)/Film (2021).mkv", lib)
    w.torrent("a" * 40, P + "/movies", ["Film/film.mkv"])
    return w


def test_a_promotion_onto_a_library_file_that_would_take_write_access_stays_and_says_why():
    (g,) = make_plan(_promote_world((F | 0o664, *QBT), (F | 0o644, *RADARR)).snapshot(), PolicyConfig()).groups
    assert g.action == "stay" and not g.steps
    assert g.reason == (
        f"{P}/movies/Film/film.mkv is not promoted: the library's copy at {LIB}/Film (2021)/Film (2021).mkv "
        "would take write access from uid 1000 (owner 1001, group 1000, mode 0644)"
    )


@pytest.mark.parametrize(
    "cold, lib, groups",
    [
        ((F | 0o664, *QBT), (F | 0o664, *RADARR), None),  # the library's group may write
        ((F | 0o444, *QBT), (F | 0o644, *RADARR), None),  # the torrent's file gave only read
        ((F | 0o664, *QBT), (F | 0o664, 1001, 1001), {1000: frozenset({1000, 1001})}),  # a known member
        (None, (F | 0o600, 1001, 1001), None),  # no owner known: the executor's check decides
    ],
)
def test_a_promotion_onto_a_library_file_that_gives_what_the_torrents_file_gave_is_planned(cold, lib, groups):
    (g,) = make_plan(_promote_world(cold, lib, groups).snapshot(), PolicyConfig()).groups
    assert g.action == "promote" and [s.kind for s in g.steps if s.kind == "link"] == ["link"], g.reason


def test_every_file_that_would_lose_access_is_counted_in_the_reason():
    w = World()
    w.payload(P + "/shows", {"S01/e1.mkv": "E1", "S01/e2.mkv": "E2"})
    w.torrent("a" * 40, P + "/shows", ["S01/e1.mkv", "S01/e2.mkv"])
    for e in ("e1", "e2"):
        _set(w, f"{P}/shows/S01/{e}.mkv", (F | 0o644, *QBT))
        w.file(f"{LIB}/Show/{e}.mkv", e.upper())
        _set(w, f"{LIB}/Show/{e}.mkv", (F | 0o600, 1001, 1001))
    (g,) = make_plan(w.snapshot(), PolicyConfig()).groups
    assert g.action == "stay" and not g.steps
    assert g.reason.startswith(f"{P}/shows/S01/e1.mkv is not promoted: the library's copy at {LIB}/Show/e1.mkv ")
    assert g.reason.endswith(
        "would take read and write access from uid 1000 (owner 1001, group 1001, mode 0600) (and 1 more file(s) so)"
    )


# --------------------------------------------------------------------------- demote (the planner)


def _demote_world(mine, donor) -> World:
    """A torrent's file on /stash (``mine``), a settled torrent's identical file on /pool (``donor``)."""
    w = World()
    w.payload(S + "/movies", {"Movie/m.mkv": "M"})
    _set(w, S + "/movies/Movie/m.mkv", mine)
    w.torrent("a" * 40, S + "/movies", ["Movie/m.mkv"])
    w.payload(P + "/dl", {"B/b.mkv": "M", "B/b2.mkv": "Y"})
    _set(w, P + "/dl/B/b.mkv", donor)
    w.torrent("b" * 40, P + "/dl", ["B/b.mkv", "B/b2.mkv"], tags=set())
    return w


def test_a_demotion_onto_identical_data_on_pool_that_would_take_access_stays_and_says_why():
    plan = make_plan(_demote_world((F | 0o664, *QBT), (F | 0o644, 2000, 2000)).snapshot(), PolicyConfig())
    g = next(g for g in plan.groups if "a" * 40 in g.torrents)
    assert g.action == "stay" and not g.steps
    assert g.reason == (
        f"{S}/movies/Movie/m.mkv is not demoted: the copy at {P}/dl/B/b.mkv "
        "would take write access from uid 1000 (owner 2000, group 2000, mode 0644)"
    )
    plan = make_plan(_demote_world((F | 0o664, *QBT), (F | 0o664, *QBT)).snapshot(), PolicyConfig())
    g = next(g for g in plan.groups if "a" * 40 in g.torrents)
    assert g.action == "demote" and [s.args["src"] for s in g.steps if s.kind == "link"] == [P + "/dl/B/b.mkv"]


def test_a_file_at_the_destination_that_would_take_access_blocks_the_move():
    """The file already at the destination path is the torrent's once it moves (no link is made),
    whatever donor the content has elsewhere on /pool (here one that would do)."""
    w = _demote_world((F | 0o664, *QBT), (F | 0o664, *QBT))
    w.payload(P + "/movies", {"Movie/m.mkv": "M", "Movie/b2.mkv": "Z"})
    _set(w, P + "/movies/Movie/m.mkv", (F | 0o640, 2000, 2000))
    w.torrent("c" * 40, P + "/movies", ["Movie/m.mkv", "Movie/b2.mkv"], tags=set(), name="Other")
    g = next(g for g in make_plan(w.snapshot(), PolicyConfig()).groups if "a" * 40 in g.torrents)
    assert g.action == "blocked" and not g.steps
    assert (
        f"{S}/movies/Movie/m.mkv is not moved: the copy at {P}/movies/Movie/m.mkv "
        "would take read and write access from uid 1000 (owner 2000, group 2000, mode 0640)"
    ) in g.reason


# --------------------------------------------------------------------------- the executor's check before a link


@pytest.fixture
def promote_fs(fs2):  # noqa: F811
    """The torrent's file on the cold side (seed_s here: the other filesystem) as qBittorrent keeps it
    (1000:1000 0664), and Radarr's copy of it in a library folder on the target (seed_p/lib)."""
    _stash, _pool, seed_s, seed_p, cat = fs2
    own = write(seed_s / "movies/Film/film.mkv", b"film")
    os.chown(own, *QBT)
    os.chmod(own, 0o664)
    lib = write(seed_p / "lib/Film (2021)/film.mkv", b"film")
    os.chown(lib, *RADARR)
    os.chmod(lib, 0o644)
    like = fsops.Like.of(seed_p / "movies", seed_s / "movies", (seed_s, seed_p))
    return lib, seed_p / "movies/Film/film.mkv", like, (seed_s, seed_p)


def _link(lib, dst, like, roots, groups):
    return fsops.link_into(lib, dst, roots=roots, size=4, blake3_hex=b3(b"film"), like=like, client_groups=groups)


@ROOT_ONLY
def test_link_into_refuses_a_donor_that_would_take_write_access_and_links_nothing(promote_fs):
    lib, dst, like, roots = promote_fs
    with pytest.raises(
        UnsafeOperation,
        match=r"refusing to link .*film\.mkv to .*: the link source would take write access from uid 1000 "
        r"\(owner 1001, group 1000, mode 0644\), the owner of the torrent's file .*/movies/Film/film\.mkv",
    ):
        _link(lib, dst, like, roots, {})
    assert not os.path.lexists(dst) and os.lstat(lib).st_nlink == 1
    with pytest.raises(UnsafeOperation, match="would take write access from uid 1000"):
        _link(lib, dst, like, roots, {1000: frozenset({1000})})  # Radarr's group 1000, but its bits say r--


@ROOT_ONLY
def test_link_into_links_a_donor_that_gives_what_the_torrents_file_gave(promote_fs):
    lib, dst, like, roots = promote_fs
    os.chmod(lib, 0o664)
    assert _link(lib, dst, like, roots, {})["status"] == "linked"
    assert os.lstat(dst).st_ino == os.lstat(lib).st_ino


@ROOT_ONLY
def test_link_into_without_client_groups_asks_nothing(promote_fs):
    """A repair's link (its donor is a catalog copy, its torrent's files are missing) passes None."""
    lib, dst, like, roots = promote_fs
    assert _link(lib, dst, like, roots, None)["status"] == "linked"


@ROOT_ONLY
def test_the_executor_refuses_a_promotion_whose_library_file_lost_its_group_write_since_planning(tmpfs, tmp_path):  # noqa: F811
    from qbhook.catalog.scan import scan_pool
    from qbhook.decide.snapshot import build_snapshot
    from tests.unit import test_executor as te

    w = te._make_world(tmpfs, tmp_path)
    try:
        movie = te.FILES[0][1]
        h = "c" * 40
        own = write(os.path.join(w.seed_p, "Film/film.mkv").encode(), movie)
        os.chown(own, *QBT)
        os.chmod(own, 0o664)
        lib = write(w.stash / "media/Film (2021)/Film (2021).mkv", movie)
        os.chown(lib, *RADARR)
        os.chmod(lib, 0o664)
        w.qbt.t.clear()
        w.qbt.add(te.FakeTorrent(h, "Film", w.seed_p, [("Film/film.mkv", len(movie), 1)]))
        for p in w.cfg.pools:
            scan_pool(w.cat, p, w.cfg.scan)
        plan = make_plan(build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy)
        (g,) = plan.groups
        assert g.action == "promote", g.reason
        os.chmod(lib, 0o644)  # a later *arr import or a chmod: Radarr's group may no longer write
        summary = w.executor().apply(plan)
        assert summary.status != "done" and "would take write access from uid 1000" in str(summary), summary
        assert w.qbt.t[h].save_path == w.seed_p and os.lstat(own).st_ino != os.lstat(lib).st_ino
        assert not os.path.lexists(os.path.join(w.seed_s, "Film/film.mkv"))
    finally:
        w.cat.close()
