"""Leftover views are removed only on a listing that can say they are unused (``leftovers``
module docstring; review finding 4 of stop 19): no torrents at all (a client still loading its
session) or a torrent being moved postpones the cleanup, as the orphan walk refuses, and a
listing that can say goes on to the checked removal."""

from __future__ import annotations

import pytest

from qbhook.catalog.store import Catalog
from qbhook.move import fsops, leftovers, orphans
from qbhook.move.orphans import References
from tests.helpers import seeded_config


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
