"""R16 for rTorrent: the deletes' re-read holds each item to verify_group's rule on the shared
model (``executor._unverified``), so an item hashing (``RtItem.checking``: checkingUP), failing
its check (``error``) or short of its bytes after verify_group keeps its old links, as a
qBittorrent torrent does (tests/unit/test_deletes_recheck_torrents.py). Over the real
RtorrentClient on test_paused_relocation's fake 0.9.8."""

from __future__ import annotations

import os

import pytest

from qbhook.move.executor import build_executor
from tests.unit.rtorrent.test_paused_relocation import rt_world  # noqa: F401  (fixture)
from tests.unit.test_executor import FILES, H1, H2, demote_plan
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

RELS = [rel for rel, _d in FILES]


def _hashing(it: dict) -> None:
    it.update({"d.hashing": 3, "_countdown": 10**9, "d.is_active": 0})  # a check that goes on


def _failed(it: dict) -> None:
    it["d.hashing_failed"] = 1


def _short(it: dict) -> None:
    it.update({"d.completed_bytes": it["d.size_bytes"] - 1, "d.left_bytes": 1, "d.complete": 0})


CHANGES = {"hashing": _hashing, "check failed": _failed, "short of bytes": _short}


def _apply(w, rt, rpc, deleted: int, change):
    """The demote, H2's item changed by ``change`` right before delete number ``deleted``; each
    delete takes 5 s (past the executor's re-read interval)."""
    seen = {"deletes": 0}

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "delete":
            w.clock.now += 5
            if seen["deletes"] == deleted:
                change(rpc.items[H2.upper()])
            seen["deletes"] += 1

    ex = build_executor(
        w.cfg, w.cat, {"qbt": rt}, w.journal, sleep=w.clock.sleep, clock=w.clock, poll_initial_s=0.5, hook=hook
    )
    return ex.apply(demote_plan(w)).groups[0]


def _old_links_left(w, h) -> list[str]:
    return [rel for rel in RELS if os.path.lexists(os.path.join(w.save(h, "stash"), rel))]


@pytest.mark.parametrize("what", CHANGES)
def test_an_item_changed_before_the_first_delete_keeps_every_old_link(rt_world, what):  # noqa: F811
    w, rt, rpc = rt_world
    g = _apply(w, rt, rpc, 0, CHANGES[what])
    assert g.status != "done" and f"torrent {H2} changed after verification" in g.reason, g.reason
    assert "after deletes began" not in g.reason, g.reason
    if what != "hashing":  # a check under way: the move back waits for it
        assert g.status == "rolled_back", g.reason
    for h in (H1, H2):
        assert _old_links_left(w, h) == RELS, h


@pytest.mark.parametrize("what", CHANGES)
def test_an_item_changed_during_the_deletes_stops_them_paused_only_while_hashing(rt_world, what):  # noqa: F811
    w, rt, rpc = rt_world
    g = _apply(w, rt, rpc, 2, CHANGES[what])
    assert g.status == "failed" and "after deletes began" in g.reason, g.reason
    assert g.paused is (what == "hashing"), g.reason
    assert _old_links_left(w, H1) == RELS[2:] and _old_links_left(w, H2) == RELS
