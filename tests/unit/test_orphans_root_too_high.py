"""R89: a seeding root set one level too high (TRaSH's layout: torrents/ and media/ side by side
below it). The library below it is not seeding (``orphans.seeding_folders``): its links keep their
data (a hard link like one outside the roots, a symlink like a library's outside them), and its
bytes are no pool's seeding data for the share guard."""

import os
from dataclasses import replace

import pytest

from qbhook.errors import OrphansRefused
from qbhook.move import orphans
from tests.helpers import write
from tests.unit.test_executor import H1, FakeTorrent
from tests.unit.test_fsops import tmpfs  # noqa: F401
from tests.unit.test_orphans_purge import expire, world  # noqa: F401


def layout(w) -> str:
    """torrents/movies (one torrent saved there) and media/ below the one seeding root."""
    del w.qbt.t[H1]  # (its files stay referenced by H2's hard links)
    mv = os.path.join(w.seed_s, "torrents/movies")
    write(os.path.join(mv, "Keep/k.bin"), b"k" * 10)
    w.qbt.add(FakeTorrent("f" * 40, "Keep", mv, [("Keep/k.bin", 10, 1)]))
    return mv


def _library_link_below_the_root(w, name: str, content: bytes, link) -> tuple[str, str, str]:
    """A torrent-side file no torrent lists and the library's link of it (``os.link`` or
    ``os.symlink``) in media/ below the same seeding root: (movies folder, data, library link)."""
    mv = layout(w)
    data = write(os.path.join(mv, f"Gone/{name}"), content)
    lib = os.path.join(w.seed_s, f"media/movies/Gone/{name}")
    os.makedirs(os.path.dirname(lib))
    link(data, lib)
    return mv, data, lib


def test_a_library_hard_link_below_the_root_keeps_its_data(world):  # noqa: F811
    w = world
    mv, data, lib = _library_link_below_the_root(w, "y.mkv", b"y" * 5000, os.link)

    rep = orphans.find_orphans(w.cfg, [w.qbt])

    kinds = {o.path: (o.kind, o.frees) for o in rep.orphans}
    assert kinds[data] == (orphans.LIBRARY, 0)  # the library keeps it: quarantining frees nothing
    assert kinds[lib] == (orphans.NOT_SEEDING, 0)
    assert rep.as_dict()["reclaimable"]["frees"] == 0
    # Its bytes are the pool's orphans (still used by a library), counted at the torrent-side link.
    assert rep.pools["stash"].orphan_bytes == rep.pools["stash"].library_bytes == 5000


def test_the_share_guard_leaves_a_not_seeding_library_out_of_the_seeding_data(world):  # noqa: F811
    w = world
    w.cfg = replace(w.cfg, policy=replace(w.cfg.policy, orphans_max_share=0.2))
    mv = layout(w)
    for i in range(10):  # a library below the root set too high: 10 MiB, never seeding
        write(os.path.join(w.seed_s, f"media/movies/F{i}/f.mkv"), os.urandom(1 << 20))
    # data of a client missing from the config (saved beside the configured one's): 2 MiB
    for i in range(2):
        write(os.path.join(mv, f"Other{i}/o.mkv"), os.urandom(1 << 20))

    with pytest.raises(OrphansRefused, match="policy.orphans_max_share"):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])

    assert all(os.path.exists(os.path.join(mv, f"Other{i}/o.mkv")) for i in range(2))


def test_a_library_symlink_below_the_root_keeps_its_target(world):  # noqa: F811
    w = world
    mv, data, lib = _library_link_below_the_root(w, "x.mkv", b"library's only copy" * 100, os.symlink)

    rep = orphans.find_orphans(w.cfg, [w.qbt])
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    expire(w)
    orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])

    assert [(o.path, o.kind, o.frees) for o in rep.orphans] == [(data, orphans.LIBRARY, 0)]
    assert res.held == [] and os.path.exists(lib)


@pytest.mark.parametrize("onto", ["its old place", "the held file"])
def test_the_purge_keeps_a_held_orphan_a_library_below_the_root_links_since(world, onto):  # noqa: F811
    """R92: quarantined while nothing used it; in the grace period the library below the root set too
    high (a not-seeding folder, which ``library_links.collect`` never enters) links it by a symlink,
    onto its old place (dangling) or onto the file in holding. The purge kept only what a symlink
    outside the seeding roots reaches, so it deleted the library's only copy; it keeps it now, as
    the quarantine's walk does (``library_of``), one line naming the symlink."""
    w = world
    mv = layout(w)
    data = write(os.path.join(mv, "Gone/x.mkv"), b"library's only copy" * 100)
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [data] and not os.path.exists(data)
    (h,) = [h for h in w.journal.held_links() if h.orphan]
    lib = os.path.join(w.seed_s, "media/movies/Gone/x.mkv")
    os.makedirs(os.path.dirname(lib))
    os.symlink(data if onto == "its old place" else h.path, lib)
    expire(w)

    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])

    assert out.refused is None and [(k.held, k.origin) for k in out.kept] == [(h.path, data)]
    assert os.path.exists(h.path)
    assert out.kept[0].line().endswith(f"a library links it by a symbolic link: {lib}")


def test_the_purge_goes_on_with_a_held_orphan_no_symlink_reaches(world):  # noqa: F811
    """A symlink below the root that reaches no held orphan (here one in a torrent's own folder
    onto its file) keeps none: the purge goes on with the held orphans."""
    w = world
    mv = layout(w)
    data = write(os.path.join(mv, "Gone/x.mkv"), b"orphan" * 100)
    write(os.path.join(mv, "Other/o.mkv"), b"o" * 10)
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [data, os.path.join(mv, "Other/o.mkv")]
    os.symlink(os.path.join(mv, "Keep/k.bin"), os.path.join(mv, "Keep/link.bin"))
    expire(w)

    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])

    assert out.refused is None and out.kept == [] and [h for h in w.journal.held_links() if h.orphan] == []


def test_the_finish_of_a_died_quarantine_leaves_in_place_what_a_library_below_the_root_links_since(
    world,  # noqa: F811
    monkeypatch,
):
    """R92: the finish of a quarantine that died asks the libraries again (``_finish_listing``), by
    the same rule as the quarantine's walk: a symlink made since in a not-seeding folder keeps its
    target in place (one ``collect`` alone never sees)."""
    from qbhook.move import fsops

    class Kill(BaseException):
        pass

    w = world
    mv = layout(w)
    data = write(os.path.join(mv, "Gone/x.mkv"), b"library's only copy" * 100)
    monkeypatch.setattr(fsops, "hold_unreferenced", lambda *a, **k: (_ for _ in ()).throw(Kill()))
    with pytest.raises(Kill):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    monkeypatch.undo()
    lib = os.path.join(w.seed_s, "media/movies/Gone/x.mkv")
    os.makedirs(os.path.dirname(lib))
    os.symlink(data, lib)

    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])

    assert res.held == [] and os.path.exists(data)
    assert f"a library links it by a symbolic link: {lib}" in res.failed[data]


def _held_and_linked(w) -> tuple[str, str]:
    """An orphan quarantined from torrents/movies, then linked by the library below the same root
    in the grace period (a held orphan the purge keeps, so every later purge screens it again):
    (its held path, the library's symlink)."""
    data = write(os.path.join(layout(w), "Gone/x.mkv"), b"library's only copy" * 100)
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [data]
    (h,) = [h for h in w.journal.held_links() if h.orphan]
    lib = os.path.join(w.seed_s, "media/movies/Gone/x.mkv")
    os.makedirs(os.path.dirname(lib))
    os.symlink(data, lib)
    expire(w)
    return h.path, lib


def test_the_purges_walk_of_a_seeding_root_has_no_find_test_per_save_path(world, monkeypatch):  # noqa: F811
    """R112: the walk of a seeding root for a library's symlinks pruned each save path below it by a
    find ``-path`` test, which find applies to every folder it meets: folders x save paths (18,000
    library folders and 3,000 save paths, 29 s a purge, every purge while a kept orphan is due).
    The seeding folders are told apart in Python now: its command is the same with 1 or 41 of them."""
    from qbhook.catalog import library_links

    w = world
    held, lib = _held_and_linked(w)
    root = os.fsencode(w.seed_s)
    cmds: list[list[bytes]] = []
    real = library_links.find_cmd
    monkeypatch.setattr(library_links, "find_cmd", lambda r, *a: cmds.append(real(r, *a)) or cmds[-1])

    def purge_walks() -> list[list[bytes]]:
        cmds.clear()
        out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
        assert out.refused is None and [k.held for k in out.kept] == [held], out
        return [c for c in cmds if c[2] == root]

    one = purge_walks()
    for i in range(40):  # 40 more torrents, each saved in a folder of its own below the root
        save = os.path.join(w.seed_s, f"torrents/c{i}")
        write(os.path.join(save, f"T{i}/t.bin"), b"t")
        w.qbt.add(FakeTorrent(f"{i + 1:040x}", f"T{i}", save, [(f"T{i}/t.bin", 1, 1)]))
    many = purge_walks()

    assert len(one) == len(many) == 1 and one == many
    assert os.path.exists(held) and os.path.islink(lib)


def test_find_not_started_refuses_the_purge_of_every_orphan_in_one_line(world):  # noqa: F811
    """R112: find that cannot be started (E2BIG: its command line too long, here by a name of
    ``scan.ignore_names`` beyond the kernel's 128 KiB for one argument) raised an OSError through
    the purge, a traceback. It is a library's symlinks unseen: the one-line refusal, nothing purged."""
    w = world
    held, _lib = _held_and_linked(w)
    w.cfg = replace(w.cfg, scan=replace(w.cfg.scan, ignore_names=(*w.cfg.scan.ignore_names, "n" * 200_000)))

    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])

    msg = out.refused.message
    assert msg.startswith("refusing: cannot look for library symlinks in pool stash (cannot run ") and "\n" not in msg
    assert "Argument list too long" in msg and out.kept == [] and os.path.exists(held)


def _torrent_in_the_library(w) -> None:
    """cross-seed's match saved into the library's folder (no linkDir): a seeding folder now."""
    lf = os.path.join(w.seed_s, "media/movies")
    write(os.path.join(lf, "XS/xs.bin"), b"x" * 10)
    w.qbt.add(FakeTorrent("e" * 40, "XS", lf, [("XS/xs.bin", 10, 1)]))


@pytest.mark.parametrize("saved", ["in the root itself", "in the library's folder"])
def test_a_library_symlink_in_a_seeding_folder_keeps_its_target_from_the_quarantine(world, saved):  # noqa: F811
    """R112: a symlink in any folder a torrent is saved in was taken for cross-seed's and passed
    over: a torrent saved in the seeding root itself (the whole root seeding), or one cross-seed
    saved into a library folder below a root set too high, hid every library symlink there, and
    the quarantine held (then the purge deleted) the library's only copy. A symlink no torrent
    lists is a library's, wherever it lies below the root."""
    w = world
    if saved == "in the library's folder":
        layout(w)
        _torrent_in_the_library(w)
    mv = os.path.join(w.seed_s, "torrents/movies")  # H1 (the world's) stays saved in the root itself
    _library_symlink_keeps_its_only_copy(w, mv, os.path.join(w.seed_s, "media/movies/Gone/x.mkv"))


@pytest.mark.parametrize("saved", ["in the root itself", "in the library's folder"])
def test_the_purge_keeps_a_held_orphan_a_library_in_a_seeding_folder_links_since(world, saved):  # noqa: F811
    """R112: the purge's walk of the seeding roots (``_root_symlinks``) skipped a root a torrent is
    saved in and pruned every folder one is saved in: the library's symlink made in the grace
    period onto the held orphan's old place went unseen and the purge deleted its target."""
    w = world
    mv = layout(w)
    if saved == "in the library's folder":
        _torrent_in_the_library(w)
    else:
        w.qbt.add(FakeTorrent("4" * 40, "AtRoot", w.seed_s, [("AtRoot/r.bin", 1, 1)]))
        write(os.path.join(w.seed_s, "AtRoot/r.bin"), b"r")
    data = write(os.path.join(mv, "Gone/x.mkv"), b"library's only copy" * 100)
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [data]
    (h,) = [h for h in w.journal.held_links() if h.orphan]
    lib = os.path.join(w.seed_s, "media/movies/Gone/x.mkv")
    os.makedirs(os.path.dirname(lib), exist_ok=True)
    os.symlink(data, lib)
    expire(w)

    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])

    assert out.refused is None and [(k.held, k.origin) for k in out.kept] == [(h.path, data)]
    assert os.path.exists(h.path)


def test_only_a_symlink_a_torrent_lists_as_its_file_is_no_librarys(world, monkeypatch):  # noqa: F811
    """What stays a torrent's: a symlink a torrent lists as its file (cross-seed's symlink mode).
    A folder symlink a torrent reaches its files through (a save path that is one, a content folder
    that is one) is followed as a library's (R116): the torrent's listed files stay its own, and
    an unlisted file in its target folder (``.store/CF/extra.bin``) is a library's, kept. It was
    reclaimable before R116, which is what took a library's subtitle behind its folder symlink
    (``test_a_library_folder_symlink_a_torrent_lists_through_keeps_its_other_files``)."""
    from qbhook.catalog import library_links

    w = world
    mv = layout(w)
    links = os.path.join(w.seed_s, "torrents/links")  # cross-seed's linkDir, its torrent saved there
    os.makedirs(os.path.join(links, "Keep"))
    os.symlink(os.path.join(mv, "Keep/k.bin"), os.path.join(links, "Keep/k.bin"))
    w.qbt.add(FakeTorrent("1" * 40, "Keep", links, [("Keep/k.bin", 10, 1)]))
    mvlink = os.path.join(w.seed_s, "torrents/mvlink")
    os.symlink(mv, mvlink)  # saved through a symlinked folder
    write(os.path.join(mv, "S/s.bin"), b"s")
    w.qbt.add(FakeTorrent("2" * 40, "S", mvlink, [("S/s.bin", 1, 1)]))
    write(os.path.join(mv, ".store/CF/c.bin"), b"c")  # a content folder that is a symlink
    os.symlink(os.path.join(mv, ".store/CF"), os.path.join(mv, "CF"))
    w.qbt.add(FakeTorrent("3" * 40, "CF", mv, [("CF/c.bin", 1, 1)]))
    extra = write(os.path.join(mv, ".store/CF/extra.bin"), b"not listed" * 100)
    stray = os.path.join(links, "Keep/stray.bin")  # in the same folder, listed by no torrent: a library's
    os.symlink(os.path.join(mv, "Keep/k.bin"), stray)
    followed: list[str] = []
    real = library_links.followed
    monkeypatch.setattr(library_links, "followed", lambda found, maps: real(followed.extend(found) or found, maps))

    rep = orphans.find_orphans(w.cfg, [w.qbt])

    assert sorted(followed) == sorted([mvlink, os.path.join(mv, "CF"), stray])
    assert [(o.path, o.kind) for o in rep.orphans] == [(extra, orphans.LIBRARY)]


@pytest.mark.parametrize("through", ["its save path", "a folder above its file"])
def test_a_library_folder_symlink_a_torrent_lists_through_keeps_its_other_files(world, through):  # noqa: F811
    """R116: the library's folder symlink ``media/movies/Gone -> torrents/movies/Gone`` (x.mkv and
    x.srt, their torrent removed), and cross-seed injecting a match found in the library: saved
    through that folder (``media/movies/Gone``, listing ``x.mkv``) or through the folder above it
    (``media/movies``, listing ``Gone/x.mkv``). Every folder above a listed file or a save path was
    taken for the torrent's, so the symlink was no library's: x.srt was reclaimable, quarantined,
    then purged, though the library plays it through that symlink. The torrent keeps its file; the
    library keeps the rest."""
    w = world
    mv = layout(w)
    mkv = write(os.path.join(mv, "Gone/x.mkv"), b"m" * 1000)
    srt = write(os.path.join(mv, "Gone/x.srt"), b"the library's subtitle, its only copy")
    lib = os.path.join(w.seed_s, "media/movies/Gone")
    os.makedirs(os.path.dirname(lib))
    os.symlink(os.path.join(mv, "Gone"), lib)
    if through == "its save path":
        w.qbt.add(FakeTorrent("9" * 40, "x.mkv", lib, [("x.mkv", 1000, 1)]))
    else:
        w.qbt.add(FakeTorrent("9" * 40, "Gone", os.path.dirname(lib), [("Gone/x.mkv", 1000, 1)]))

    rep = orphans.find_orphans(w.cfg, [w.qbt])
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])

    assert [(o.path, o.kind, o.frees) for o in rep.orphans] == [(srt, orphans.LIBRARY, 0)]
    assert res.held == [] and out.refused is None
    assert os.path.exists(os.path.join(lib, "x.srt")) and os.path.exists(mkv)


def test_a_library_folder_that_is_a_symlink_keeps_what_a_torrent_saved_through_it_does_not_list(world):  # noqa: F811
    """R116: the library's folder itself a symlink (``media/movies -> torrents/movies``), a torrent
    saved through it: its save path was the torrent's, so the film the library plays there (its
    torrent removed) was reclaimable, quarantined, then purged."""
    w = world
    mv = layout(w)
    film = write(os.path.join(mv, "Film/f.mkv"), b"f" * 800)
    os.makedirs(os.path.join(w.seed_s, "media"))
    os.symlink(mv, os.path.join(w.seed_s, "media/movies"))
    write(os.path.join(mv, "XS/xs.bin"), b"x" * 10)
    w.qbt.add(FakeTorrent("8" * 40, "XS", os.path.join(w.seed_s, "media/movies"), [("XS/xs.bin", 10, 1)]))

    rep = orphans.find_orphans(w.cfg, [w.qbt])
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    expire(w)
    orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])

    assert [(o.path, o.kind) for o in rep.orphans] == [(film, orphans.LIBRARY)]
    assert res.held == [] and os.path.exists(os.path.join(w.seed_s, "media/movies/Film/f.mkv"))


def test_a_library_folder_renamed_during_the_quarantines_walk_keeps_its_target(world, monkeypatch):  # noqa: F811
    """R116: the quarantine took the library's symlinks below a seeding root from its own walk,
    which passes over a folder gone since its parent was listed: Radarr renaming ``Gone 2020`` to
    ``Gone (2020)`` meanwhile hid the symlink below it, and its target was quarantined (the purge
    kept it, the library broken for the grace period). The symlinks are walked for after the walk,
    by the purge's walk, which walks again when an entry vanishes."""
    w = world
    mv = layout(w)
    data = write(os.path.join(mv, "Gone/x.mkv"), b"library's only copy" * 100)
    folder = os.path.join(w.seed_s, "media/movies/Gone 2020")
    os.makedirs(folder)
    os.symlink(data, os.path.join(folder, "x.mkv"))
    real = orphans.open_below

    def renaming(pfd, name, *a, **k):
        if name == "Gone 2020":  # Radarr renames it after its parent was listed
            os.rename(folder, folder.replace("Gone 2020", "Gone (2020)"))
        return real(pfd, name, *a, **k)

    monkeypatch.setattr(orphans, "open_below", renaming)
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])

    assert not os.path.exists(folder)  # the rename happened during the walk
    assert res.held == [] and os.path.exists(os.path.join(w.seed_s, "media/movies/Gone (2020)/x.mkv"))


def test_a_seeding_root_that_keeps_changing_refuses_the_quarantine_in_one_line(world, monkeypatch):  # noqa: F811
    """A seeding root whose every walk for symlinks sees an entry vanish (``library_links.WALKS``):
    the library's symlinks there are unseen, so the quarantine refuses, one line, nothing held."""
    from qbhook.catalog import library_links

    w = world
    data = write(os.path.join(layout(w), "Gone/x.mkv"), b"orphan" * 100)
    real = library_links._symlinks
    seed = os.path.normpath(w.seed_s)
    churning = lambda pool, root, *a: ([], root + "/Gone 2020") if root == seed else real(pool, root, *a)  # noqa: E731
    monkeypatch.setattr(library_links, "_symlinks", churning)

    with pytest.raises(OrphansRefused) as e:
        orphans.quarantine(w.cfg, w.cat, [w.qbt])

    msg = e.value.message
    assert msg.startswith("refusing: cannot look for library symlinks in pool stash (its folders kept changing")
    assert "Gone 2020" in msg and "\n" not in msg and os.path.exists(data)


def test_a_library_on_a_filesystem_mounted_below_the_root_keeps_its_target_from_the_quarantine(
    world,  # noqa: F811
    tmpfs,  # noqa: F811
):
    """R112: the quarantine's walk enters no filesystem mounted below a root (a nested dataset:
    tank/data/media beside tank/data/torrents), so a library there had its symlinks unseen and their
    targets quarantined (the purge, which crosses mounts, then kept them in holding). Its symlinks
    are walked for as the purge's are: the target stays where it is."""
    w = world
    mv = layout(w)
    media = tmpfs(os.path.relpath(os.path.join(w.seed_s, "media"), os.path.dirname(str(w.stash))))
    assert os.path.ismount(media)
    _library_symlink_keeps_its_only_copy(w, mv, os.path.join(media, "movies/Gone/x.mkv"))


def test_a_symlink_no_torrent_lists_keeps_its_target_and_the_listing_names_it(world, capsys):  # noqa: F811
    """R116: cross-seed's link of a torrent since removed (``torrents/links/trk/Dead/d.mkv``) is a
    symlink below the root no torrent lists: a library's, so what it reaches stays until it is
    removed (the conservative side). The listing said only "still used by a library", leaving a
    person no way to learn what keeps it: it names the symlink, per item, and in --json. A real
    orphan beside it is still reclaimable."""
    from qbhook.cli.orphans import _show_report

    w = world
    mv = layout(w)
    dead = write(os.path.join(mv, "Dead/d.mkv"), b"d" * 500)
    link = os.path.join(w.seed_s, "torrents/links/trk/Dead/d.mkv")
    os.makedirs(os.path.dirname(link))
    os.symlink(dead, link)
    old = write(os.path.join(mv, "Old/o.mkv"), b"o" * 300)

    report = orphans.find_orphans(w.cfg, [w.qbt])

    items = {i["path"]: (i["kind"], i["link"]) for i in report.as_dict()["items"]}
    assert items == {os.path.dirname(dead): (orphans.LIBRARY, link), os.path.dirname(old): (orphans.RECLAIMABLE, "")}
    _show_report(report.as_dict(), False)
    out = capsys.readouterr().out
    assert f"{os.path.dirname(dead)}/ (1 files; a library links it by a symbolic link: {link})" in out, out


def test_a_symlink_a_torrent_lists_as_its_file_that_reaches_a_folder_is_a_librarys(world):  # noqa: F811
    """R118: a torrent listing the library's folder symlink ``Gone`` as its one file was exempt as
    a torrent's file; the folder's files were reclaimable, quarantined, then purged."""
    w = world
    mv = layout(w)
    gone = write(os.path.join(mv, "Gone/x.mkv"), b"x" * 100)
    lib = os.path.join(w.seed_s, "media/movies")
    os.makedirs(lib)
    os.symlink(os.path.join(mv, "Gone"), os.path.join(lib, "Gone"))  # the library's folder symlink
    w.qbt.add(FakeTorrent("9" * 40, "Gone", lib, [("Gone", 4096, 1)]))  # "Gone" listed as its file
    kinds = {o.path: o.kind for o in orphans.find_orphans(w.cfg, [w.qbt]).orphans}
    assert kinds.get(gone) == orphans.LIBRARY, kinds
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [] and os.path.exists(gone)


def _library_symlink_keeps_its_only_copy(w, mv: str, lib: str) -> None:
    """``mv``/Gone/x.mkv, no torrent's, reached only by the library's symlink ``lib``: listed as
    the library's, nothing freed, and the quarantine holds nothing."""
    data = write(os.path.join(mv, "Gone/x.mkv"), b"library's only copy" * 100)
    os.makedirs(os.path.dirname(lib))
    os.symlink(data, lib)
    rep = orphans.find_orphans(w.cfg, [w.qbt])
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert [(o.path, o.kind, o.frees) for o in rep.orphans] == [(data, orphans.LIBRARY, 0)]
    assert res.held == [] and os.path.exists(lib)
