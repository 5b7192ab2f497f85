"""A library that uses a torrent's data through a symbolic link (qbhook.catalog.library_links,
``orphans.library_link``): its target is still used by a library, never quarantined nor purged.

Review (R1, test_F): a library symlink into the seeding roots was unseen (its target's link count
is 1), so once its torrent was removed the data was reclaimable, quarantined and purged, and the
library's symlink dangled: its only copy gone. Real files and symlinks on tmpfs pools."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from qbhook.catalog import library_links, scan
from qbhook.catalog.library_links import LibraryLinks
from qbhook.errors import OrphansRefused
from qbhook.move import orphans
from qbhook.move.orphans import LIBRARY, RECLAIMABLE, Entry, References, Walk, decide
from tests.helpers import write
from tests.mountns import bind, own_mounts
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_orphans_purge import expire, notified, world  # noqa: F401  (fixture)


def kinds(w) -> dict[str, str]:
    """path -> kind of every orphan the listing finds."""
    return {o.path: o.kind for o in orphans.find_orphans(w.cfg, [w.qbt]).orphans}


def library(w, name: str, target: str) -> str:
    """A library entry ``media/<name>`` that is a symlink onto ``target``; its path."""
    link = os.path.join(str(w.stash), "media", name)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(target, link)
    return link


def test_a_file_a_library_symlinks_is_library_never_quarantined_and_an_unrelated_orphan_goes(world):  # noqa: F811
    """The reviewer's test_F: the torrent removed, its data symlinked from the library stays."""
    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    link = library(w, "Film.mkv", film)

    assert kinds(w) == {film: LIBRARY, stray: RECLAIMABLE}
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [stray] and os.path.exists(film)
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.kept == [] and out.refused is None and os.path.exists(link)
    assert [h for h in w.journal.held_links() if h.orphan] == []  # the stray one purged


def test_a_file_a_library_both_hard_links_and_symlinks_names_the_symlink_in_the_listing(world):  # noqa: F811
    """R118: kept as library by a hard link and a symlink, its item's ``link`` was "": the hard-link
    test decided first and the symlink was never asked for. The listing names it: the symlink keeps
    the data as long as it is there, whatever becomes of the hard link."""
    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    hard = os.path.join(str(w.stash), "media", "Film.hard.mkv")
    os.makedirs(os.path.dirname(hard))
    os.link(film, hard)
    link = library(w, "Film.mkv", film)

    rep = orphans.find_orphans(w.cfg, [w.qbt])
    assert [(o.path, o.kind, o.link) for o in rep.orphans] == [(film, LIBRARY, link)]
    (item,) = rep.as_dict()["items"]
    assert item["kind"] == LIBRARY and item["link"] == link, item


def test_a_relative_symlink_counts_the_same(world):  # noqa: F811
    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    link = os.path.join(str(w.stash), "media/Film/film.mkv")
    os.makedirs(os.path.dirname(link))
    os.symlink(os.path.relpath(film, os.path.dirname(link)), link)
    assert kinds(w) == {film: LIBRARY}


def test_a_folder_a_library_symlinks_protects_everything_below_it(world):  # noqa: F811
    w = world
    show = os.path.join(w.seed_s, "old/Show.S01")
    eps = [write(os.path.join(show, f"Season 1/e{i}.mkv"), b"ep%d" % i * 100) for i in range(3)]
    library(w, "Show", show)
    assert kinds(w) == dict.fromkeys(eps, LIBRARY)
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == []
    assert all(os.path.exists(e) for e in eps)


@pytest.mark.parametrize("onto", ["file", "folder"])
def test_an_orphan_held_before_the_library_symlink_appeared_is_kept_by_the_purge(world, onto):  # noqa: F811
    """Quarantined while nothing used it; in the grace period a media manager links its old place
    (or its folder, which the quarantine emptied and removed): the symlink dangles until the purge,
    which keeps the held file and says which symlink."""
    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [film] and not os.path.exists(film)
    (h,) = [h for h in w.journal.held_links() if h.orphan]
    link = library(w, "Film", film if onto == "file" else os.path.dirname(film))
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert [(k.held, k.origin) for k in out.kept] == [(h.path, film)] and os.path.exists(h.path)
    assert f"a library links it by a symbolic link: {link}" in out.kept[0].line()


def test_dangling_and_looping_library_symlinks_change_nothing_and_raise_nothing(world):  # noqa: F811
    w = world
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    library(w, "gone.mkv", os.path.join(w.seed_s, "old/never-there.mkv"))
    library(w, "a", os.path.join(str(w.stash), "media/b"))
    library(w, "b", os.path.join(str(w.stash), "media/a"))
    library(w, "self", os.path.join(str(w.stash), "media/self"))
    assert kinds(w) == {stray: RECLAIMABLE}
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [stray]


def test_a_symlink_in_an_ignored_folder_is_no_library_one_below_a_seeding_root_no_torrent_lists_is(world):  # noqa: F811
    """One in an ignored folder (``.zfs``, qbhook's own) is nobody's library. One below a seeding
    root is cross-seed's only when a torrent lists it as its file (``orphans.library_of``): any other is
    a library's, though the folder it lies in is a save path (here the root itself, the world's
    H1's), which once passed it over and its target was quarantined (R112)."""
    w = world
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    os.makedirs(os.path.join(str(w.stash), ".zfs/snapshot"))
    os.symlink(stray, os.path.join(str(w.stash), ".zfs/snapshot/stray.mkv"))
    assert kinds(w) == {stray: RECLAIMABLE}
    os.makedirs(os.path.join(w.seed_s, "links"))
    os.symlink(stray, os.path.join(w.seed_s, "links/stray.mkv"))
    assert kinds(w) == {stray: LIBRARY}


def test_a_symlinked_folder_is_never_walked_into(world, tmp_path):  # noqa: F811
    """The collection follows a symlink's target by one stat only: a symlinked folder's content
    (here, another pool's library) is not walked, so its symlinks are nobody's library."""
    w = world
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(stray, elsewhere / "stray.mkv")
    library(w, "elsewhere", str(elsewhere))
    assert kinds(w) == {stray: RECLAIMABLE}


def test_the_python_walk_finds_what_find_finds(world, monkeypatch):  # noqa: F811
    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    library(w, "Film.mkv", film)
    library(w, "Old", os.path.dirname(film))
    library(w, "gone.mkv", os.path.join(w.seed_s, "gone.mkv"))
    os.symlink(film, os.path.join(w.seed_s, "old/cross.mkv"))
    by_find = library_links.collect(w.cfg)
    monkeypatch.setattr(library_links.findwalk, "FIND", None)
    assert library_links.collect(w.cfg) == by_find and len(by_find) == 3


# --------------------------------------------------------------------------- the rule, pure


def entry(path: str, ino: int, nlink: int = 1) -> Entry:
    return Entry(path, "stash", "/stash/seed", 1, ino, 100, nlink, 0, 0)


def test_decide_calls_an_orphan_a_library_symlink_reaches_library_whatever_its_link_count():
    lib = LibraryLinks(files={(1, 1): "/stash/media/a.mkv"}, places={"/stash/seed/old/B": "/stash/media/B"})
    refs = References(frozenset(), (), 1, library=lib)
    walk = Walk((entry("/stash/seed/x/a.mkv", 1), entry("/stash/seed/old/B/b.mkv", 2), entry("/stash/seed/c", 3)))
    rep = decide(walk, refs, now=1e9, settle_seconds=0)
    assert {o.path: (o.kind, o.frees) for o in rep.orphans} == {
        "/stash/seed/x/a.mkv": (LIBRARY, 0),
        "/stash/seed/old/B/b.mkv": (LIBRARY, 0),
        "/stash/seed/c": (RECLAIMABLE, 100),
    }
    assert rep.pools["stash"].library_bytes == 200 and rep.pools["stash"].reclaimable_bytes == 100


def test_a_folder_target_reaches_by_identity_what_is_below_it_however_spelled():
    """R32: a folder symlink written through a bind mount is kept by the real path of the alias,
    which no fact spells; by its (st_dev, st_ino) it reaches the files below the folder whichever
    path reaches them, when the caller says what each folder above them is (``identity``). The
    path itself is a file's: never asked. Without ``identity`` the real path is the only rule."""
    lib = LibraryLinks(places={"/stash/export/m/Movie": "/stash/media/M"}, folders={(7, 70): "/stash/media/M"})
    ids = {"/stash/seed/m/Movie": (7, 70), "/stash/seed/m": (7, 60)}
    asked: list[str] = []

    def identity(p):
        asked.append(p)
        return ids.get(p)

    assert lib.reaching("/stash/seed/m/Movie/sub/x.mkv", None, identity) == "/stash/media/M"
    assert asked == ["/stash/seed/m/Movie/sub", "/stash/seed/m/Movie"]
    assert lib.reaching("/stash/seed/m/Other/y.mkv", None, identity) is None
    assert lib.reaching("/stash/seed/m/Movie/x.mkv") is None  # by path alone: the alias only
    assert lib.reaching("/stash/export/m/Movie/x.mkv") == "/stash/media/M"  # the fallback, gone or not


def test_matched_folders_spells_each_identity_match_as_the_files_do_asking_each_folder_once():
    lib = LibraryLinks(folders={(7, 70): "/stash/media/M"})
    ids = {"/stash/seed/m/Movie": (7, 70)}
    asked: list[str] = []

    def identity(p):
        asked.append(p)
        return ids.get(p)

    files = ["/stash/seed/m/Movie/a.mkv", "/stash/seed/m/Movie/b.mkv", "/stash/seed/m/Other/c.mkv"]
    got = library_links.matched_folders(lib, files, identity, lambda d: d == "/stash")
    assert got == {"/stash/seed/m/Movie": "/stash/media/M"}
    assert asked == ["/stash/seed/m/Movie", "/stash/seed/m", "/stash/seed", "/stash", "/stash/seed/m/Other"]
    assert library_links.matched_folders(LibraryLinks(), files, identity, bool) == {}  # no folder target: no look


def test_a_walk_for_library_symlinks_that_fails_refuses_and_holds_nothing(world, monkeypatch):  # noqa: F811
    """A library not seen is data deleted: find failing (an unreadable folder) refuses, one line."""
    w = world
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    monkeypatch.setattr(library_links.findwalk, "FIND", "/bin/false")
    with pytest.raises(OrphansRefused) as e:
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert "cannot look for library symlinks in pool stash" in e.value.message and "\n" not in e.value.message
    assert os.path.exists(stray) and w.journal.held_links() == []


def test_a_library_symlink_in_a_containers_spelling_counts_through_the_clients_path_map(world):  # noqa: F811
    """An *arr app in a container links in symlink mode with its own paths (/data/...): on the host
    the symlink dangles, and only the clients' path_map says what it names (one /data mount for
    every container, as TRaSH's guides give it)."""
    from dataclasses import replace

    from qbhook.config import QbtConfig

    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    host_root = str(w.stash)
    qbt = QbtConfig("qb", "http://127.0.0.1:1", "admin", path_map=(("/data", host_root),))
    w.cfg = replace(w.cfg, qbittorrent=(qbt,))
    library(w, "Film.mkv", "/data" + film[len(host_root) :])  # dangling on the host

    found = library_links.collect(w.cfg)
    assert found.reaching(film, (os.stat(film).st_dev, os.stat(film).st_ino)) is not None
    assert found.reaching(stray, (os.stat(stray).st_dev, os.stat(stray).st_ino)) is None


# --------------------------------------------------------------------------- mounts, .zfs, whole roots


@pytest.mark.parametrize("walk", ["find", "python"])
def test_a_library_on_a_filesystem_mounted_below_the_pool_root_is_seen(world, tmpfs, monkeypatch, walk):  # noqa: F811
    """Review (R4): a library on a dataset of its own nested in the pool (tank/media beside
    tank/torrents; symlink mode because hard links cannot cross datasets) was never walked
    (``find -xdev``, the fallback's st_dev test): its target was quarantined and purged. Its
    ``.zfs`` (each dataset has one) is still never entered."""
    w = world
    media = tmpfs("stash/media")  # below the pool root, its own filesystem
    assert os.stat(media).st_dev != os.stat(w.stash).st_dev
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    eps = [write(os.path.join(w.seed_s, f"old/Show/e{i}.mkv"), b"ep%d" % i * 100) for i in range(2)]
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    os.makedirs(media / "Films/Film")
    os.symlink(film, media / "Films/Film/film.mkv")
    os.symlink(os.path.dirname(eps[0]), media / "Show")
    os.makedirs(media / "Films/.zfs/snapshot/daily")  # a snapshot's symlink is nobody's library
    os.symlink(stray, media / "Films/.zfs/snapshot/daily/stray.mkv")
    if walk == "python":
        monkeypatch.setattr(library_links.findwalk, "FIND", None)

    assert kinds(w) == {film: LIBRARY, eps[0]: LIBRARY, eps[1]: LIBRARY, stray: RECLAIMABLE}
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [stray]
    assert os.path.exists(film) and all(os.path.exists(e) for e in eps)


def _recorded_not_mounted(w, mountpoint: str, pool: str = "stash") -> None:
    """The catalog knows a filesystem at ``mountpoint`` holding a file (a scan of ``pool`` met it
    there), not in the mount table now: only its empty mount point is left, as after an unmount
    (``test_scanner``'s ``_nested_unmounted``), or an encrypted dataset whose key was not loaded at boot."""
    with w.cat.conn:
        fs = w.cat.conn.execute(
            "INSERT INTO filesystems(fsid, kind, fstype, source, mountpoint, dev, first_seen, last_seen) "
            "VALUES ('zfs:4242', 'zfs', 'zfs', 'stash/media', ?, NULL, 0, 0)",
            (os.fsencode(mountpoint),),
        ).lastrowid
        ino = w.cat.conn.execute(
            "INSERT INTO inodes(fs, ino, size, mtime_ns, ctime_ns, nlink) VALUES (?, 7, 10, 0, 0, 1)", (fs,)
        ).lastrowid
        w.cat.conn.execute(
            "INSERT INTO paths(path, inode, pool) VALUES (?, ?, ?)",
            (os.fsencode(os.path.join(mountpoint, "Films/poster.jpg")), ino, pool),
        )


def test_the_purge_refuses_while_a_dataset_the_catalog_knows_in_a_pool_is_not_mounted(world, monkeypatch):  # noqa: F811
    """Held, then linked in the grace period by a library on a dataset of its own (stash/media),
    which is not mounted at the purge: its walk saw an empty folder, no symlink, and the purge
    deleted the library's only copy. Refused now in one line naming it, nothing of the orphans
    purged; mounted again, its symlink keeps the held file, as any library's does."""
    from qbhook.catalog import fsid

    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [film]
    (h,) = [h for h in w.journal.held_links() if h.orphan]
    media = os.path.join(str(w.stash), "media")
    os.makedirs(media)
    _recorded_not_mounted(w, media)
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.refused is not None and os.path.exists(h.path), out
    msg = out.refused.message
    assert msg.startswith("refusing to purge quarantined orphans") and media in msg and "\n" not in msg, msg
    assert f"qbhook scan --forget-unmounted {media}" in out.refused.hint
    # Mounted again: its symlink is seen.
    real = fsid.read_mounts
    there = fsid.Mount(os.makedev(0, 4242), "/", media, "zfs", "stash/media")
    monkeypatch.setattr(fsid, "read_mounts", lambda: [*real(), there])
    link = library(w, "Film.mkv", film)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.refused is None and [k.held for k in out.kept] == [h.path] and os.path.exists(h.path)
    assert os.path.lexists(link)


def test_a_dataset_forgotten_by_the_scan_no_longer_refuses_the_purge(world):  # noqa: F811
    """Gone for good, its files dropped by ``qbhook scan --forget-unmounted`` (its row stays): the
    refusal's way out, else one destroyed dataset refused every purge for ever."""
    w = world
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [stray]
    media = os.path.join(str(w.stash), "media")
    _recorded_not_mounted(w, media)
    with w.cat.conn:
        w.cat.conn.execute("DELETE FROM paths WHERE path = ?", (os.fsencode(os.path.join(media, "Films/poster.jpg")),))
        w.cat.conn.execute("DELETE FROM inodes WHERE NOT EXISTS (SELECT 1 FROM paths WHERE inode = inodes.id)")
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.refused is None and out.bytes_freed == 500
    assert [h for h in w.journal.held_links() if h.orphan] == []


def test_a_dataset_only_a_pool_removed_from_the_config_knows_does_not_refuse_the_purge(world):  # noqa: F811
    """R119: a pool "media" at <stash>/media was dropped from the config and its dataset destroyed.
    Its files stay recorded under "media", a pool no scan walks again, so the refusal's way out,
    ``qbhook scan --forget-unmounted``, dropped nothing and every purge was refused for ever. Only
    files a configured pool recorded count (the guard's point: such a dataset holds that pool's
    library, ``test_the_purge_refuses_while_...``)."""
    w = world
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [stray]
    media = os.path.join(str(w.stash), "media")
    os.makedirs(media, exist_ok=True)
    _recorded_not_mounted(w, media, pool="media")
    assert "media" not in [p.name for p in w.cfg.pools]
    scan.scan_pools(w.cat, list(w.cfg.pools), w.cfg.scan, forget_unmounted=[media])  # the hint, taken
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.refused is None and out.bytes_freed == 500, out
    assert [h for h in w.journal.held_links() if h.orphan] == []


def test_a_dataset_not_mounted_refusing_the_purge_is_told_once_in_status_and_resolved_when_mounted(
    world,  # noqa: F811
    notified,  # noqa: F811
    monkeypatch,
):
    """R119: under ``serve`` the refusal was only a log warning after each run: never notified, not in
    ``status``'s needs-a-person list, so status read healthy while holding grew. Told once while it
    lasts (``away <mount point>``), in ``holding_needs_person``, resolved once it is mounted again."""
    from qbhook.catalog import fsid

    w = world
    media = _stray_held_and_media_away(w)
    for _ in range(3):  # serve purges after every run
        w.executor()._purge_holding()
    assert [(k, s) for k, _t, s in notified] == [("guard", "failure")], notified
    (line,) = orphans.holding_needs_person(w.cat.conn)
    assert line == notified[0][1] and media in line and "is not mounted" in line, line
    assert f"qbhook scan --forget-unmounted {media}" in line, line
    assert [h for h in w.journal.held_links() if h.orphan]  # nothing purged while it is away

    real = fsid.read_mounts
    there = fsid.Mount(os.makedev(0, 4242), "/", media, "zfs", "stash/media")
    monkeypatch.setattr(fsid, "read_mounts", lambda: [*real(), there])
    w.executor()._purge_holding()
    assert [(k, s) for k, _t, s in notified[1:]] == [("resolved", "info")] and media in notified[1][1]
    assert orphans.holding_needs_person(w.cat.conn) == []
    assert [h for h in w.journal.held_links() if h.orphan] == []  # mounted: purged


def test_ignored_names_are_pruned_at_every_level_of_every_filesystem(world, tmpfs):  # noqa: F811
    """``.zfs`` (each dataset's own) and qbhook's folders deep below a nested mount are pruned as at
    the top: every snapshot walked would be slow, and its symlinks are nobody's library."""
    w = world
    deep = tmpfs("stash/media/tv")
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    os.makedirs(deep / "a/b/.zfs/snapshot/s1")
    os.symlink(stray, deep / "a/b/.zfs/snapshot/s1/stray.mkv")
    os.makedirs(deep / ".qbhook-holding")
    os.symlink(stray, deep / ".qbhook-holding/stray.mkv")
    assert b"-xdev" not in library_links.find_cmd(str(w.stash), set(), {b".zfs"})
    assert len(library_links.collect(w.cfg)) == 0
    assert kinds(w) == {stray: RECLAIMABLE}


def test_a_pool_root_below_another_is_walked_once_and_its_seeding_root_still_pruned(world, tmpfs, monkeypatch):  # noqa: F811
    """Mounts are crossed, so a pool whose root is mounted below another pool's root is in that
    walk: not walked twice; its seeding root, below the mount, is pruned (cross-seed's symlinks)."""
    from dataclasses import replace

    w = world
    inner = tmpfs("stash/cold")
    seed_i = inner / "torrents/seeding"
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    os.makedirs(seed_i)
    os.symlink(stray, seed_i / "stray.mkv")  # in a seeding root: no library's
    os.makedirs(inner / "media")
    os.symlink(film, inner / "media/film.mkv")
    stash, cold = w.cfg.pools
    cold = replace(cold, path=inner, seeding_root=seed_i, more_seeding_roots=())
    w.cfg = replace(w.cfg, pools=(stash, cold))
    walked = []
    real = library_links._symlinks
    monkeypatch.setattr(library_links, "_symlinks", lambda *a: walked.append(a[1]) or real(*a))
    found = library_links.collect(w.cfg)
    assert walked == [str(w.stash)] and found.files == {
        (os.stat(film).st_dev, os.stat(film).st_ino): str(inner / "media/film.mkv")
    }
    assert found.places == {}


NOTHING = "nothing below it is reclaimable"


def test_a_library_symlink_onto_a_folder_holding_a_whole_seeding_root_is_named_by_a_warning(
    world,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """``media/everything -> <pool root>`` makes every orphan below its seeding root a library's:
    kept (it only ever protects more), but ``qbhook orphans`` says which symlink, one line."""
    import yaml
    from click.testing import CliRunner

    from qbhook.cli import main
    from qbhook.cli.app import App
    from tests.helpers import config_data

    w = world
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    library(w, "Old", os.path.join(w.seed_s, "old"))  # a part of the root only: no warning
    assert library_links.collect(w.cfg).whole_roots([w.seed_s, w.seed_p]) == []
    link = library(w, "everything", str(w.stash))
    assert library_links.collect(w.cfg).whole_roots([w.seed_s, w.seed_p]) == [(link, w.seed_s)]
    report = orphans.find_orphans(w.cfg, [w.qbt])
    assert {o.path: o.kind for o in report.orphans} == {stray: LIBRARY}
    assert report.whole_roots == [(link, w.seed_s)]

    cfg = tmp_path / "config.yaml"
    data = config_data(w.cfg.catalog, w.stash, w.pool, seeding="torrents/seeding", policy={"orphans_max_share": 1.0})
    cfg.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(App, "clients", property(lambda self: [w.qbt]))
    r = CliRunner().invoke(main, ["--config", str(cfg), "orphans"])
    assert r.exit_code == 0, (r.output, r.exception)
    said = [line for line in r.stderr.splitlines() if "reaches all of seeding root" in line]
    assert said == [f"qbhook: warning: library symlink {link} reaches all of seeding root {w.seed_s}: " + NOTHING]


def through_an_alias(w, folder: str) -> tuple[str, str]:
    """A bind mount of the seeding root at ``<stash>/export`` (an export, a container's alias
    folder of the seeding data) and a library symlink ``media/Film`` onto ``folder`` spelled
    through it: (the symlink, its target). ``realpath`` does not see through a bind mount."""
    alias = os.path.join(str(w.stash), "export")
    os.makedirs(alias)
    bind(w.seed_s, alias)
    target = os.path.join(alias, os.path.relpath(folder, w.seed_s))
    return library(w, "Film", target), target


@own_mounts
def test_an_orphan_below_a_folder_a_library_links_through_a_bind_mount_is_library_never_held(world):  # noqa: F811
    """R32 in the orphan walk: the folder symlink's place was the alias's real path, which the walk
    never spells (it walks the seeding root): the film was reclaimable, quarantined, then purged,
    the symlink left dangling. The folder is also matched by identity, as the planner does."""
    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    link, target = through_an_alias(w, os.path.dirname(film))
    assert os.path.exists(os.path.join(target, "film.mkv"))
    assert kinds(w) == {film: LIBRARY, stray: RECLAIMABLE}
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [stray] and os.path.exists(film)
    assert os.path.exists(os.path.join(link, "film.mkv"))


@own_mounts
def test_a_held_orphan_whose_folder_a_library_links_through_a_bind_mount_is_kept_by_the_purge(world):  # noqa: F811
    """Quarantined while nothing used it; in the grace period a library links its folder (still
    there: another file in it is young) through the alias: the purge keeps the held file."""
    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    cfg = w.cfg
    w.cfg = replace(cfg, scan=replace(cfg.scan, settle_seconds=0))
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [film] and not os.path.exists(film)
    (h,) = [h for h in w.journal.held_links() if h.orphan]
    os.makedirs(os.path.dirname(film), exist_ok=True)  # the folder (re)made, its new file young
    write(os.path.join(os.path.dirname(film), "film.nfo"), b"nfo")
    link, _ = through_an_alias(w, os.path.dirname(film))
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert [(k.held, k.origin) for k in out.kept] == [(h.path, film)] and os.path.exists(h.path)
    assert f"a library links it by a symbolic link: {link}" in out.kept[0].line()


def test_the_finish_of_a_died_quarantine_asks_folder_identity_only_when_a_symlink_has_a_folder_target(
    tmp_path, monkeypatch
):
    """``_used_since`` (a died quarantine's finish) keeps the walk's rule: a folder above the file
    that is a folder target by identity makes it a library's; no folder target, no folder asked."""
    f = str(write(tmp_path / "seed/m/Movie/x.mkv", b"x"))
    st = os.stat(tmp_path / "seed/m/Movie")
    asked: list[str] = []

    def identity(p):
        asked.append(p)
        return (st.st_dev, st.st_ino) if p == str(tmp_path / "seed/m/Movie") else None

    plain = References(frozenset(), (), 1, folder_identity=identity)
    assert orphans._used_since(f, plain, frozenset()) is None and asked == []
    lib = LibraryLinks(places={"/elsewhere/export/m/Movie": "/lib/M"}, folders={(st.st_dev, st.st_ino): "/lib/M"})
    assert orphans._used_since(f, replace(plain, library=lib, folder_identity=None), frozenset()) is None
    why = orphans._used_since(f, replace(plain, library=lib), frozenset())
    assert why is not None and "/lib/M" in why


def test_a_dataset_still_not_mounted_is_not_resolved_by_a_purge_that_did_not_look(world, notified):  # noqa: F811
    """R120: a purge with no orphan due (the wall clock stepped back) never looks at the mounts,
    yet read the unmounted dataset as resolved; the next purge told it again."""
    import time

    w = world
    _stray_held_and_media_away(w)
    w.executor()._purge_holding()
    told = list(notified)
    assert [k for k, _t, _s in told] == ["guard"]
    out = orphans.purge_held(w.cfg, w.cat, w.journal, lambda: [w.qbt], now=time.time() - 86400)
    assert out.away is None and list(notified) == told  # not looked: neither resolved nor told
    assert orphans.holding_needs_person(w.cat.conn) != []
    w.executor()._purge_holding()
    assert list(notified) == told  # still the same outage: not told again


def _stray_held_and_media_away(w) -> str:
    """An orphan held by a quarantine and past its grace period, and a dataset at the stash's
    ``media`` the catalog knows but the mount table lacks: -> that mount point."""
    stray = write(os.path.join(w.seed_s, "old/Stray/stray.mkv"), b"stray" * 100)
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [stray]
    media = os.path.join(str(w.stash), "media")
    os.makedirs(media)
    _recorded_not_mounted(w, media)
    expire(w)
    return media
