"""What qbhook (root) leaves for qBittorrent's user on a view: folders and empty files it makes are
owned and moded like their counterparts at the torrent's current save path (``fsops.Like``), else
like their folder; never like qbhook, never through the process umask (R36).

Real folders on two tmpfs mounts (the pool boundary), real owners (uid 1000 plays qBittorrent with
umask 002 and setgid folders); the acts run as root, as qbhook does. Skipped unless root."""

from __future__ import annotations

import os
import stat

import pytest

from qbhook import config
from qbhook.decide.plan import Action, GroupPlan, Relocate, Repair, StepList
from qbhook.move import fsops
from qbhook.move.executor import GroupOutcome, _GroupRun
from tests.helpers import b3, seeded_config, write
from tests.unit.test_fsops import fs2, tmpfs  # noqa: F401 (fixtures)

QBT = (1000, 1000)


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    old = os.umask(0o022)  # root's (systemd's) umask: a mode must not come from it
    yield
    os.umask(old)


def owner(path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def qbt_tree(top, *folders, mode=0o2775, who=QBT):
    """Folders as qBittorrent's user makes them (umask 002, setgid: ``mode``), parents first."""
    for f in folders:
        d = top / f
        d.mkdir(exist_ok=True)
        os.chown(d, *who)
        os.chmod(d, mode)


def as_qbt(folder, fn) -> bool:
    """Does ``fn(fd)`` succeed as qBittorrent's user (uid/gid 1000, umask 002), ``fd`` the folder
    ``folder`` opened before the switch (pytest's tmp folders above it are root's 0700)?"""
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            os.setgroups([QBT[1]])
            os.setgid(QBT[1])
            os.setuid(QBT[0])
            os.umask(0o002)
            fn(fd)
        except OSError:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


@pytest.fixture
def root_owned(fs2):  # noqa: F811
    """fs2 with the target seeding root as an admin's ``mkdir -p`` as root leaves it (root:root 0755),
    and a torrent at seed_s/movies/Film as qBittorrent keeps it."""
    stash, pool, seed_s, seed_p, cat = fs2
    os.chmod(seed_p, 0o755)
    qbt_tree(seed_s, "movies", "movies/Film")
    src = write(seed_s / "movies/Film/film.mkv", b"film")
    os.chown(src, *QBT)
    os.chmod(src, 0o664)
    return seed_s, seed_p, src


def test_a_copy_into_a_root_owned_seeding_root_makes_its_folders_like_the_torrents_own(root_owned):
    seed_s, seed_p, src = root_owned
    dst = seed_p / "movies/Film/film.mkv"
    fsops.copy_verified(src, dst, b3(b"film"), 4, roots=(seed_s, seed_p))
    assert owner(seed_p) == (0, 0, 0o755)  # the root itself: never touched
    for d in ("movies", "movies/Film"):
        assert owner(seed_p / d) == (*QBT, 0o2775), d
    assert owner(dst) == (*QBT, 0o664)
    # What qBittorrent does with its torrent's files there: a part file, a delete, a rename.
    movies = seed_p / "movies"
    assert as_qbt(movies, lambda fd: os.close(os.open("Film/film.mkv.!qB", os.O_CREAT | os.O_WRONLY, dir_fd=fd)))
    assert as_qbt(movies, lambda fd: os.unlink("Film/film.mkv", dir_fd=fd))
    assert as_qbt(movies, lambda fd: os.rename("Film", "Film2", src_dir_fd=fd, dst_dir_fd=fd))
    assert not as_qbt(seed_p, lambda fd: os.mkdir("tv", dir_fd=fd))  # the root: root's, as config check says


def test_a_link_makes_its_folders_like_the_torrents_not_like_its_donors_or_the_root(root_owned):
    seed_s, seed_p, _src = root_owned
    lib = seed_p / "lib/Film (2021)"
    lib.mkdir(parents=True)  # root's 0755: the donor's folders are nobody's model
    donor = write(lib / "film.mkv", b"film")
    like = fsops.Like.of(seed_p / "movies", seed_s / "movies", (seed_s, seed_p))
    dst = seed_p / "movies/Film/film.mkv"
    assert fsops.link_into(donor, dst, roots=(seed_s, seed_p), like=like)["status"] == "linked"
    for d in ("movies", "movies/Film"):
        assert owner(seed_p / d) == (*QBT, 0o2775), d


def test_a_folder_without_counterpart_is_made_like_its_parent(root_owned):
    seed_s, seed_p, src = root_owned
    qbt_tree(seed_p, "movies")
    os.chown(seed_p / "movies", 1234, 2345)
    like = fsops.Like.of(seed_p / "movies", seed_s / "movies", (seed_s, seed_p))
    dst = seed_p / "movies/Extra/sub/e.nfo"  # seed_s/movies/Extra does not exist
    fsops.make_empty(dst, roots=(seed_s, seed_p), like=like)
    for d in ("movies/Extra", "movies/Extra/sub"):
        assert owner(seed_p / d) == (1234, 2345, 0o2775), d


def test_a_symlinked_counterpart_is_not_followed_for_its_owner(root_owned):
    seed_s, seed_p, src = root_owned
    elsewhere = seed_s / "elsewhere"
    elsewhere.mkdir()
    os.chown(elsewhere, 4242, 4242)
    os.chmod(elsewhere, 0o700)
    os.symlink(elsewhere, seed_s / "shows")
    like = fsops.Like.of(seed_p / "shows", seed_s / "shows", (seed_s, seed_p))
    fsops.make_empty(seed_p / "shows/e.nfo", roots=(seed_s, seed_p), like=like)
    assert owner(seed_p / "shows") == (0, 0, 0o755)  # like its parent, the root


def test_a_repair_in_place_never_takes_the_folder_it_made_as_its_own_model(root_owned):
    seed_s, seed_p, src = root_owned
    qbt_tree(seed_p, "movies")
    like = fsops.Like.of(seed_p / "movies", seed_p / "movies", (seed_s, seed_p))
    fsops.make_empty(seed_p / "movies/Gone/e.nfo", roots=(seed_s, seed_p), like=like)
    assert owner(seed_p / "movies/Gone") == (*QBT, 0o2775)  # its parent's, not 0500 root's


def test_an_empty_file_is_owned_and_moded_like_the_torrents_own_empty_file(root_owned):
    seed_s, seed_p, src = root_owned
    e = write(seed_s / "movies/Film/e.nfo", b"")
    os.chown(e, 1000, 1001)
    os.chmod(e, 0o660)
    like = fsops.Like.of(seed_p / "movies", seed_s / "movies", (seed_s, seed_p))
    dst = seed_p / "movies/Film/e.nfo"
    assert fsops.make_empty(dst, roots=(seed_s, seed_p), like=like)["status"] == "created"
    assert owner(dst) == (1000, 1001, 0o660)


HOSTILE = (4242, 4242)  # a less trusted container that may write the old seeding tree


def test_folders_made_after_another_writers_folders_take_no_set_uid_and_no_world_write(root_owned):
    """R39: a writer of the old tree chose the modes qbhook (root) gave the folders it made on the
    target pool: 6777 and 0777 let anyone there rename away another torrent's view below them.
    Set-group-id stays (group inheritance); a sticky world-writable folder stays one; the owner
    is the writer's uid, which it could own anyway."""
    seed_s, seed_p, _src = root_owned
    qbt_tree(seed_s, "tv", mode=0o6777, who=HOSTILE)
    qbt_tree(seed_s, "tv/Show", mode=0o777, who=HOSTILE)
    qbt_tree(seed_s, "tv/Shared", mode=0o1777, who=HOSTILE)
    like = fsops.Like.of(seed_p / "tv", seed_s / "tv", (seed_s, seed_p))
    for sub in ("Show", "Shared"):
        fsops.make_empty(seed_p / "tv" / sub / "e.nfo", roots=(seed_s, seed_p), like=like)
    assert owner(seed_p / "tv") == (*HOSTILE, 0o2775)
    assert owner(seed_p / "tv/Show") == (*HOSTILE, 0o775)
    assert owner(seed_p / "tv/Shared") == (*HOSTILE, 0o1777)


def test_an_empty_file_or_a_copy_after_another_writers_file_takes_no_set_id_bit_and_no_world_write(root_owned):
    """R39: an empty file made, or a file copied, like a 6777 file of the old tree was a set-id
    executable root made on the target pool; a 1666 one world-writable (a file's sticky bit is
    nothing on Linux)."""
    seed_s, seed_p, _src = root_owned
    qbt_tree(seed_s, "tv", "tv/Show", who=HOSTILE)
    e = write(seed_s / "tv/Show/e.nfo", b"")
    f = write(seed_s / "tv/Show/run.sh", b"#!/bin/sh\n")
    w = write(seed_s / "tv/Show/w.txt", b"w")
    for path, mode in ((e, 0o6777), (f, 0o6777), (w, 0o1666)):
        os.chown(path, *HOSTILE)
        os.chmod(path, mode)
    like = fsops.Like.of(seed_p / "tv", seed_s / "tv", (seed_s, seed_p))
    fsops.make_empty(seed_p / "tv/Show/e.nfo", roots=(seed_s, seed_p), like=like)
    fsops.copy_verified(f, seed_p / "tv/Show/run.sh", b3(b"#!/bin/sh\n"), 10, roots=(seed_s, seed_p))
    fsops.copy_verified(w, seed_p / "tv/Show/w.txt", b3(b"w"), 1, roots=(seed_s, seed_p))
    assert owner(seed_p / "tv/Show/e.nfo") == (*HOSTILE, 0o775)
    assert owner(seed_p / "tv/Show/run.sh") == (*HOSTILE, 0o775)
    assert owner(seed_p / "tv/Show/w.txt") == (*HOSTILE, 0o1664)


def test_an_empty_file_without_counterpart_gets_the_mode_qbittorrents_umask_gives(fs2):  # noqa: F811
    stash, pool, seed_s, seed_p, cat = fs2
    qbt_tree(seed_p, "shared")  # group-writable: 0664, an *arr of the group may hardlink it
    qbt_tree(seed_p, "private", mode=0o755)
    fsops.make_empty(seed_p / "shared/e.nfo", roots=(seed_s, seed_p))
    fsops.make_empty(seed_p / "private/e.nfo", roots=(seed_s, seed_p))
    assert owner(seed_p / "shared/e.nfo") == (*QBT, 0o664)
    assert owner(seed_p / "private/e.nfo") == (*QBT, 0o644)


def test_like_maps_a_folder_above_the_save_path_only_while_the_names_agree():
    like = fsops.Like.of("/pool/seed/tv/Show", "/stash/seed/tv/Show/", ())
    assert like.counterpart(b"/pool/seed/tv/Show/S01") == b"/stash/seed/tv/Show/S01"
    assert like.counterpart(b"/pool/seed/tv/Show") == b"/stash/seed/tv/Show"
    assert like.counterpart(b"/pool/seed/tv") == b"/stash/seed/tv"
    assert like.counterpart(b"/pool/seed/other") is None
    moved = fsops.Like.of("/pool/seed/tv/Show", "/stash/dl/Show", ())
    assert moved.counterpart(b"/pool/seed/tv") == b"/stash/dl"  # the folder the save folder sits in
    renamed = fsops.Like.of("/pool/seed/tv/Show", "/stash/seed/tv/Other", ())
    assert renamed.counterpart(b"/pool/seed/tv") is None  # "Show" is not below it at the source


def test_the_executor_makes_a_views_files_like_the_torrents_old_save_path():
    plan = GroupPlan("g", ["h1", "h2"], ["a", "b"], Action.DEMOTE, "r")
    plan.steps = StepList(
        [
            Relocate("h1", "q", "/stash/seed/movies", "/pool/seed/movies"),
            Repair("h2", "q", "/pool/seed/gone", "/pool/seed/tv/"),
        ]
    )
    st = _GroupRun(1, plan, GroupOutcome("g", "demote", "planned"))
    like = st.like("/pool/seed/movies/", ("/stash", "/pool"))
    assert (like.dst, like.src) == (b"/pool/seed/movies", b"/stash/seed/movies")
    assert st.like("/pool/seed/tv/", ("/stash", "/pool")).src == b"/pool/seed/gone"
    assert st.like("/pool/seed/other/", ("/stash", "/pool")) is None


def test_config_check_warns_of_a_seeding_root_only_root_may_write_when_a_client_is_configured(tmp_path):
    qbt = [{"name": "q", "url": "http://localhost:8080", "username": "u", "password": "p"}]
    cfg = seeded_config(tmp_path, qbt=qbt)
    os.chmod(cfg.cold.seeding_root, 0o755)
    os.chown(cfg.primary.seeding_root, *QBT)
    warnings = config.seeding_root_warnings(cfg)
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith(f"seeding_roots.pool: {cfg.cold.seeding_root} is root's")
    os.chmod(cfg.cold.seeding_root, 0o775)  # its group may write: the client's, presumably
    assert config.seeding_root_warnings(cfg) == []
    os.chmod(cfg.cold.seeding_root, 0o755)
    assert config.seeding_root_warnings(seeded_config(tmp_path / "noclient")) == []
