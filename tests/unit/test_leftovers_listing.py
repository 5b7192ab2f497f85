"""Leftover views are removed only on a listing that can say they are unused (``leftovers``
module docstring; review finding 4 of stop 19): no torrents at all (a client still loading its
session) or a torrent being moved postpones the cleanup, as the orphan walk refuses, and a
listing that can say goes on to the checked removal. A view is released (no longer tracked) only
on its own verdict; a root refused for a moment or an OSError keeps it for the next run."""

from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pytest

from qbhook.catalog.store import Catalog
from qbhook.move import fsops, leftovers, orphans
from qbhook.move.orphans import References
from tests.helpers import b3, seeded_config, write
from tests.swap import swap


@pytest.fixture
def bed(tmp_path, monkeypatch):
    cfg = seeded_config(tmp_path)
    cat = Catalog.open(cfg.catalog)
    view = str(next(p for p in cfg.pools if p.name == "pool").seeding_root / "tv" / "e1.mkv")
    monkeypatch.setattr(
        "qbhook.move.journal.Journal.leftover_views",
        lambda self: [(1, {"path": view, "ino": 7, "size": 3, "keep": None, "blake3": None})],
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
    monkeypatch.setattr("qbhook.move.journal.Journal.leftover_views", lambda self: [(1, dict(recorded))])
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

    monkeypatch.setattr(fsops, "_walk", failing)
    (res,) = leftovers.remove_leftover_views(real.cfg, real.cat, [])
    assert res["status"] == "kept" and real.done == [] and os.path.exists(real.view)


def test_a_view_that_is_no_longer_the_one_qbhook_made_is_released(real):
    os.unlink(real.view)
    write(real.view, b"new")  # another inode at its name: not qbhook's any more
    (res,) = leftovers.remove_leftover_views(real.cfg, real.cat, [])
    assert res["status"] == "released" and "no longer the view" in res["reason"]
    assert [r["status"] for r in real.done] == ["released"] and open(real.view, "rb").read() == b"new"  # noqa: SIM115
