"""Leftover views are removed only on a listing that can say they are unused (``leftovers``
module docstring; review finding 4 of stop 19): no torrents at all (a client still loading its
session) or a torrent being moved postpones the cleanup, as the orphan walk refuses, and a
listing that can say goes on to the checked removal. A view is released (no longer tracked) only
on its own verdict; a root refused for a moment or an OSError keeps it for the next run."""

from __future__ import annotations

import errno
import logging
import os
from types import SimpleNamespace

import pytest

from qbhook.catalog.store import Catalog
from qbhook.move import fsops, leftovers, orphans
from qbhook.move.orphans import References
from tests.helpers import b3, seeded_config, write
from tests.mountns import bind, own_mounts
from tests.swap import swap


@pytest.fixture
def bed(tmp_path, monkeypatch):
    cfg = seeded_config(tmp_path)
    cat = Catalog.open(cfg.catalog)
    view = str(next(p for p in cfg.pools if p.name == "pool").seeding_root / "tv" / "e1.mkv")
    monkeypatch.setattr(
        "qbhook.move.journal.Journal.leftover_tracked",
        lambda self: [(1, {"path": view, "ino": 7, "size": 3, "keep": None, "blake3": None}, None)],
    )
    removed: list[str] = []
    monkeypatch.setattr(fsops, "remove_leftover_view", lambda path, **kw: removed.append(path) or {"status": "gone"})
    yield cfg, cat, view, removed
    cat.close()


@pytest.mark.parametrize(
    "refs",
    [
        References(frozenset(), (), torrents=0),  # qBittorrent still loading its session
        References(frozenset(), (), torrents=3, moving=("R1",)),  # a torrent being moved
    ],
)
def test_a_listing_that_cannot_say_what_is_unused_postpones_the_cleanup(bed, monkeypatch, refs):
    cfg, cat, _view, removed = bed
    monkeypatch.setattr(orphans, "references", lambda clients, doing=orphans.LOOK: refs)
    assert leftovers.remove_leftover_views(cfg, cat, []) == []
    assert removed == []


def test_a_listing_that_can_say_goes_on_to_the_checked_removal(bed, monkeypatch):
    cfg, cat, view, removed = bed
    monkeypatch.setattr(orphans, "references", lambda clients, doing=orphans.LOOK: References(frozenset(), (), 3))
    leftovers.remove_leftover_views(cfg, cat, [])
    assert removed == [view]


# --------------------------------------------------------------------------- released only on the view's own verdict


@pytest.fixture
def real(tmp_path, monkeypatch):
    """A real view file on the pool's seeding root, the real checked removal, and the journal's verdicts."""
    cfg = seeded_config(tmp_path)
    cat = Catalog.open(cfg.catalog)
    seed = next(p for p in cfg.pools if p.name == "pool").seeding_root
    view = write(seed / "tv/e1.mkv", b"abc")
    src = write(tmp_path / "pool/media/e1.mkv", b"abc")
    os.unlink(view)
    os.link(src, view)  # a linked view: its source is the same inode
    st = os.lstat(view)
    recorded = {"path": str(view), "ino": st.st_ino, "size": 3, "keep": str(src), "blake3": b3(b"abc")}
    monkeypatch.setattr("qbhook.move.journal.Journal.leftover_tracked", lambda self: [(1, dict(recorded), None)])
    done: list[dict] = []
    monkeypatch.setattr("qbhook.move.journal.Journal.leftover_done", lambda self, sid, res: done.append(res))
    monkeypatch.setattr(orphans, "references", lambda clients, doing=orphans.LOOK: References(frozenset(), (), 3))
    yield SimpleNamespace(cfg=cfg, cat=cat, seed=seed, view=view, recorded=recorded, done=done, outside=tmp_path / "o")
    cat.close()


def test_a_seeding_root_swapped_for_a_moment_keeps_the_view_for_the_next_run(real):
    real.outside.mkdir()
    swap(real.seed, real.outside)
    (res,) = leftovers.remove_leftover_views(real.cfg, real.cat, [])
    assert res["status"] == "kept" and "symlink" in res["reason"]
    assert real.done == []  # still pending: the next run tries again
    os.unlink(real.seed)
    os.rename(f"{real.seed}.aside", real.seed)
    (res,) = leftovers.remove_leftover_views(real.cfg, real.cat, [])
    assert res["status"] == "removed" and not os.path.exists(real.view)
    assert [r["status"] for r in real.done] == ["removed"]


@pytest.mark.parametrize("err", [errno.EIO, errno.EMFILE])
def test_a_transient_error_keeps_the_view_for_the_next_run(real, monkeypatch, err):
    def failing(*_a, **_k):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(fsops, "_open_root", failing)
    (res,) = leftovers.remove_leftover_views(real.cfg, real.cat, [])
    assert res["status"] == "kept" and real.done == [] and os.path.exists(real.view)


def test_a_seeding_root_missing_its_pool_not_mounted_keeps_the_view_never_calls_it_absent(real):
    # Review finding: the empty mount point's missing seeding root read as "absent", which ended
    # the view's tracking for good; once the pool was back its duplicate stayed forever.
    os.rename(real.seed, f"{real.seed}.aside")
    (res,) = leftovers.remove_leftover_views(real.cfg, real.cat, [])
    assert res["status"] == "kept" and "is missing" in res["reason"] and real.done == []
    os.rename(f"{real.seed}.aside", real.seed)
    (res,) = leftovers.remove_leftover_views(real.cfg, real.cat, [])
    assert res["status"] == "removed" and not os.path.exists(real.view)


def test_removing_a_view_prunes_its_emptied_folders_upwards_only(real):
    # Review finding: the prune also removed every empty folder below the view's folder: a
    # category folder qBittorrent writes into, the mount point of a dataset not mounted now.
    beside = real.seed / "tv/Season 2"
    beside.mkdir()
    (res,) = leftovers.remove_leftover_views(real.cfg, real.cat, [])
    assert res["status"] == "removed" and not os.path.exists(real.view)
    assert beside.is_dir()  # not the rolled-back group's
    os.rmdir(beside)
    os.link(real.recorded["keep"], real.view)
    (res,) = leftovers.remove_leftover_views(real.cfg, real.cat, [])
    assert res["status"] == "removed" and not (real.seed / "tv").exists()  # emptied by the view: gone


def test_a_copy_whose_link_view_was_kept_is_kept_too_not_released(tmp_path, monkeypatch):
    # Review finding: the link onto the copy was kept for a transient reason; the copy, next,
    # had two links and was released as "linked elsewhere", its duplicate untracked for good.
    cfg = seeded_config(tmp_path)
    cat = Catalog.open(cfg.catalog)
    seed = next(p for p in cfg.pools if p.name == "pool").seeding_root
    src = write(tmp_path / "pool/media/e1.mkv", b"abc")
    copy = write(seed / "tv/e1.mkv", b"abc")  # a copy view: its own inode, the source's content
    link = seed / "cross/e1.mkv"
    link.parent.mkdir()
    os.link(copy, link)  # a link view onto the copy, made after it
    st = os.lstat(copy)
    facts = {"ino": st.st_ino, "size": 3, "blake3": b3(b"abc"), "ctime_ns": st.st_ctime_ns}
    views = [
        (1, {"path": str(copy), "keep": str(src), **facts}, None),
        (2, {"path": str(link), "keep": str(copy), **facts}, None),
    ]
    monkeypatch.setattr("qbhook.move.journal.Journal.leftover_tracked", lambda self: views)
    done: list[dict] = []
    monkeypatch.setattr("qbhook.move.journal.Journal.leftover_done", lambda self, sid, res: done.append(res))
    monkeypatch.setattr(orphans, "references", lambda clients, doing=orphans.LOOK: References(frozenset(), (), 3))
    real_remove = fsops.remove_leftover_view

    def eio_for_the_link(path, **kw):
        if path == str(link):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_remove(path, **kw)

    monkeypatch.setattr(fsops, "remove_leftover_view", eio_for_the_link)
    try:
        out = leftovers.remove_leftover_views(cfg, cat, [])
    finally:
        cat.close()
    assert [(r["path"], r["status"]) for r in out] == [(str(link), "kept"), (str(copy), "kept")]
    assert done == [] and copy.read_bytes() == b"abc" and link.exists()  # both tried again next run


def test_a_view_a_torrent_seeds_through_a_symlink_is_in_use_and_never_removed(real, monkeypatch):
    """cross-seed's symlink onto the view: the listing names the link, whose target is the view's inode."""
    link = f"{real.seed}/cross-seed/e1.mkv"
    os.makedirs(os.path.dirname(link))
    os.symlink(real.view, link)
    key = (os.stat(real.view).st_dev, os.stat(real.view).st_ino)
    in_use = References(frozenset({link}), (), 3, inodes=frozenset({key}), names={key: (link,)})
    monkeypatch.setattr(orphans, "references", lambda clients, doing=orphans.LOOK: in_use)
    (res,) = leftovers.remove_leftover_views(real.cfg, real.cat, [])
    assert res["status"] == "in_use" and os.path.exists(real.view)


def test_a_view_that_is_no_longer_the_one_qbhook_made_is_released(real):
    os.unlink(real.view)
    write(real.view, b"new")  # another inode at its name: not qbhook's any more
    (res,) = leftovers.remove_leftover_views(real.cfg, real.cat, [])
    assert res["status"] == "released" and "no longer the view" in res["reason"]
    assert [r["status"] for r in real.done] == ["released"] and open(real.view, "rb").read() == b"new"  # noqa: SIM115


# --------------------------------------------------------------------------- a view whose source is gone


@pytest.fixture
def unproven(tmp_path, monkeypatch):
    """A copy view (its one link) on the pool's seeding root whose source is gone, journaled for
    real; every try of the checked removal counted."""
    from qbhook.move.journal import Journal

    cfg = seeded_config(tmp_path)
    cat = Catalog.open(cfg.catalog)
    seed = next(p for p in cfg.pools if p.name == "pool").seeding_root
    view = write(seed / "tv/e1.mkv", b"abc")
    src = next(p for p in cfg.pools if p.name == "stash").path / "media/e1.mkv"  # never written: gone
    st = os.lstat(view)
    journal = Journal(cat.conn)
    run = journal.start_run({}, "test")
    facts = {"ino": st.st_ino, "size": 3, "keep": str(src), "blake3": b3(b"abc"), "ctime_ns": st.st_ctime_ns}
    journal.record_leftover(run, "g1", {"path": str(view), **facts})
    monkeypatch.setattr(orphans, "references", lambda clients, doing=orphans.LOOK: References(frozenset(), (), 3))
    tries: list[str] = []
    real = fsops.remove_leftover_view
    monkeypatch.setattr(fsops, "remove_leftover_view", lambda path, **kw: tries.append(path) or real(path, **kw))
    yield SimpleNamespace(cfg=cfg, cat=cat, journal=journal, view=view, src=src, tries=tries)
    cat.close()


def _run(u, caplog) -> tuple[list[dict], list[str]]:
    """One run's leftover cleanup: its results and the lines it logged."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="qbhook.move.leftovers"):
        out = leftovers.remove_leftover_views(u.cfg, u.cat, [])
    return out, [r.getMessage() for r in caplog.records]


def test_a_view_whose_source_is_gone_waits_for_a_person_instead_of_being_tried_every_run(unproven, caplog):
    """It was tried (and logged) on every run forever: nothing can ever prove its content lives
    elsewhere. Now one warning, then it waits, kept, and `status` names it as a problem."""
    from qbhook.events.status import report

    u = unproven
    (res,), logged = _run(u, caplog)
    assert res["status"] == leftovers.NEEDS_PERSON and f"its source {u.src} is gone" in res["reason"]
    assert len(logged) == 1 and "may be the last copy" in logged[0]
    for _ in range(3):
        assert _run(u, caplog) == ([], [])  # not tried, not logged
    assert u.tries == [str(u.view)] and u.view.read_bytes() == b"abc"  # tried once, kept
    data = report(u.cfg, u.cat)
    assert data["leftover_views"] == []
    assert data["leftover_views_waiting"] == [{"path": str(u.view), "reason": res["reason"]}]
    assert [p for p in data["problems"] if "leftover view" in p] == [
        f"leftover view kept, maybe the last copy of its content: {res['reason']} "
        "(remove or move it yourself once you know)"
    ]


def test_a_waiting_view_the_person_removed_is_no_longer_tracked(unproven, caplog):
    from qbhook.events.status import report

    u = unproven
    _run(u, caplog)
    os.unlink(u.view)
    assert _run(u, caplog)[0] == [{"path": str(u.view), "status": "absent"}]
    assert u.journal.leftover_waiting() == [] and u.journal.leftover_views() == []
    assert report(u.cfg, u.cat)["leftover_views_waiting"] == []


def test_a_waiting_view_whose_pool_is_not_mounted_keeps_waiting(unproven, caplog):
    # It may be the last copy of its content: a look that cannot reach its seeding root says
    # nothing about it, and `status` keeps naming it.
    u = unproven
    _run(u, caplog)
    seed = next(p for p in u.cfg.pools if p.name == "pool").seeding_root
    os.rename(seed, f"{seed}.aside")
    assert _run(u, caplog)[0] == []
    assert [v["path"] for _sid, v, _why in u.journal.leftover_waiting()] == [str(u.view)]
    os.rename(f"{seed}.aside", seed)
    assert _run(u, caplog)[0] == [] and len(u.journal.leftover_waiting()) == 1 and u.view.read_bytes() == b"abc"


def test_a_waiting_view_replaced_by_another_file_is_released_never_removed(unproven, caplog):
    u = unproven
    _run(u, caplog)
    os.unlink(u.view)
    write(u.view, b"mine")
    ((res,), _logged) = _run(u, caplog)
    assert res["status"] == "released" and res["reason"].startswith("another file took its name")
    assert u.view.read_bytes() == b"mine"
    assert u.journal.leftover_waiting() == [] and len(u.tries) == 1


def test_a_waiting_view_is_tried_again_once_its_source_is_back(unproven, caplog):
    """A pool mounted again, the file restored: the source changed, so the view is verified anew
    (and removed, its content living in the source again)."""
    u = unproven
    _run(u, caplog)
    write(u.src, b"abc")
    ((res,), _logged) = _run(u, caplog)
    assert res["status"] == "removed" and not u.view.exists() and u.src.read_bytes() == b"abc"
    assert len(u.tries) == 2 and u.journal.leftover_waiting() == []


def test_a_source_that_does_not_verify_waits_until_it_changes(unproven, caplog):
    u = unproven
    write(u.src, b"xyz")  # same size, other content: the view may hold the only "abc"
    (res,), _logged = _run(u, caplog)
    assert res["status"] == leftovers.NEEDS_PERSON and "does not verify" in res["reason"]
    assert _run(u, caplog) == ([], []) and u.view.read_bytes() == b"abc"
    write(u.src, b"abc")  # rewritten (a new ctime): worth a new try
    ((res,), _logged) = _run(u, caplog)
    assert res["status"] == "removed" and len(u.tries) == 2


# --------------------------------------------------------------------------- a view linked from another torrent's file

H_DONOR, H_AT_VIEW = "d" * 40, "e" * 40


@pytest.fixture
def linked(tmp_path, monkeypatch):
    """A view a demote linked from a donor on its target pool (its keep: the same inode), the donor
    another torrent's seeding file; the real listing of a fake client (``orphans.references``)."""
    from tests.unit.test_executor import FakeQbt, FakeTorrent

    cfg = seeded_config(tmp_path)
    cat = Catalog.open(cfg.catalog)
    seed = next(p for p in cfg.pools if p.name == "pool").seeding_root
    donor = write(seed / "other/Show/e1.mkv", b"abc")
    view = seed / "tv/Show/e1.mkv"
    view.parent.mkdir(parents=True)
    os.link(donor, view)
    st = os.lstat(view)
    recorded = {"path": str(view), "ino": st.st_ino, "size": 3, "keep": str(donor), "blake3": b3(b"abc")}
    monkeypatch.setattr("qbhook.move.journal.Journal.leftover_tracked", lambda self: [(1, dict(recorded), None)])
    done: list[dict] = []
    monkeypatch.setattr("qbhook.move.journal.Journal.leftover_done", lambda self, sid, res: done.append(res))
    qbt = FakeQbt()
    qbt.add(FakeTorrent(H_DONOR, "Show", str(seed / "other"), [("Show/e1.mkv", 3, 1)]))  # seeds the donor
    yield SimpleNamespace(cfg=cfg, cat=cat, seed=seed, donor=donor, view=view, done=done, qbt=qbt, torrent=FakeTorrent)
    cat.close()


def test_a_view_linked_from_another_torrents_file_is_removed_not_called_in_use(linked):
    """Review R31: by identity the donor's torrent "used" the view (another name of its inode), so
    its tracking ended with it on disk for good, no longer in ``status``. Only the name goes."""
    (res,) = leftovers.remove_leftover_views(linked.cfg, linked.cat, [linked.qbt])
    assert res["status"] == "removed" and not os.path.lexists(linked.view), res
    assert linked.donor.read_bytes() == b"abc" and os.lstat(linked.donor).st_nlink == 1
    assert [r["status"] for r in linked.done] == ["removed"]


def test_a_torrent_re_added_at_a_linked_views_path_uses_it(linked):
    linked.qbt.add(linked.torrent(H_AT_VIEW, "Show", str(linked.seed / "tv"), [("Show/e1.mkv", 3, 1)]))
    (res,) = leftovers.remove_leftover_views(linked.cfg, linked.cat, [linked.qbt])
    assert res["status"] == "in_use" and os.path.exists(linked.view)


@pytest.mark.parametrize("how", ["file", "folder"])
def test_a_torrent_reaching_a_linked_views_path_through_a_symlink_uses_it(linked, how):
    """cross-seed's symlink onto the view, or a save path through a symlinked folder: that torrent
    loses its file if the view's name goes (the donor's name would not help it)."""
    xseed = linked.seed / "xseed"
    if how == "file":
        (xseed / "Show").mkdir(parents=True)
        os.symlink(linked.view, xseed / "Show/e1.mkv")
    else:
        os.symlink(linked.seed / "tv", xseed)
    linked.qbt.add(linked.torrent(H_AT_VIEW, "Show", str(xseed), [("Show/e1.mkv", 3, 1)]))
    (res,) = leftovers.remove_leftover_views(linked.cfg, linked.cat, [linked.qbt])
    assert res["status"] == "in_use" and os.path.exists(linked.view)


def test_a_partial_torrent_reaching_a_linked_view_through_a_symlink_uses_it(linked):
    (linked.seed / "xseed/Show").mkdir(parents=True)
    os.symlink(linked.view, linked.seed / "xseed/Show/e1.mkv")
    t = linked.torrent(H_AT_VIEW, "Show", str(linked.seed / "xseed"), [("Show/e1.mkv", 3, 1)], progress=0.5)
    linked.qbt.add(t)
    (res,) = leftovers.remove_leftover_views(linked.cfg, linked.cat, [linked.qbt])
    assert res["status"] == "in_use" and os.path.exists(linked.view)


@own_mounts
def test_a_torrent_listing_a_linked_view_through_a_bind_mount_uses_it(linked, tmp_path):
    """R33: a torrent whose save path is a bind mount of the view's seeding folder lists the view's
    own name by a path ``realpath`` does not reduce to the view's path; compared as strings, no listed
    name was the view's, so it was removed and the torrent lost its file (the data lived on under
    the keep's name). Where the name lives is its folder's identity, whatever path reaches it."""
    alias = tmp_path / "alias"
    alias.mkdir()
    bind(linked.seed / "tv", alias)
    linked.qbt.add(linked.torrent(H_AT_VIEW, "Show", str(alias), [("Show/e1.mkv", 3, 1)]))
    (res,) = leftovers.remove_leftover_views(linked.cfg, linked.cat, [linked.qbt])
    assert res["status"] == "in_use" and os.path.exists(alias / "Show/e1.mkv") and os.path.exists(linked.view)


def _names(view, *listed) -> References:
    """A listing whose complete torrents list ``listed``, all names of the view's inode."""
    key = orphans.identity(str(view))
    return References(
        frozenset(map(str, listed)), (), torrents=1, inodes=frozenset({key}), names={key: tuple(map(str, listed))}
    )


def test_a_name_listed_in_the_views_folder_by_another_spelling_is_the_views(linked):
    """R33: on a dataset that folds case or Unicode form (ZFS casesensitivity=insensitive,
    normalization=formD) a torrent may list the view's own entry by a spelling of its base name no
    string compare matches. A listed name of the view's inode in the view's own folder is taken as
    the view's (the conservative side: that leaves a file on disk, never a torrent without it)."""
    key = orphans.identity(str(linked.view))
    spelled = linked.view.parent / "E1.MKV"  # the spelling a case-folding dataset resolves to the view
    assert orphans.name_in_use(str(linked.view), _names(linked.view, spelled), key) == orphans.REFERENCED
    # the donor's own name, in its own folder, is still not a use of the view's name (R31)
    assert orphans.name_in_use(str(linked.view), _names(linked.view, linked.donor), key) is None


def test_a_listed_name_whose_folder_cannot_be_looked_at_keeps_the_view(linked):
    """Where it lives unknown (its folder gone or not enterable since the listing): by identity, in use."""
    key = orphans.identity(str(linked.view))
    gone = linked.seed / "gone/Show/e1.mkv"
    assert orphans.name_in_use(str(linked.view), _names(linked.view, gone), key) == orphans.REFERENCED


def test_a_view_that_starts_waiting_for_a_person_is_notified_once(unproven, caplog, monkeypatch):
    # R35: unattended, one log line and `qbhook status` reached nobody; it may be the last copy.
    from qbhook import notify

    told: list[tuple[str, str, str]] = []
    monkeypatch.setattr(notify, "emit", lambda kind, text, severity="info": told.append((kind, text, severity)))
    u = unproven
    (res,), _logged = _run(u, caplog)
    for _ in range(3):
        _run(u, caplog)  # it waits: not tried, not told again
    assert told == [
        (
            "needs_person",
            f"leftover view kept, maybe the last copy of its content: {res['reason']} "
            "(remove or move it yourself once you know)",
            "failure",
        )
    ]
    assert str(u.view) in told[0][1]
