"""R16: the deletes hold the group's torrents to verify_group's whole rule, not only to its save path.

Between verify_group and the first delete (the Tag steps) and while the deletes run (minutes:
each re-hashes its link), a torrent may go missingFiles, be force-rechecked, lose pieces, or be
moved (qBittorrent 4.5.2 shows the OLD save path while a move runs). Only its save path and ATM
were re-read: every old link was deleted and the group ended done. Now each re-read
(``Executor._check_still_placed``, once per ``_REREAD_S``, one listing per client) applies
``_unverified``: a check or a move under way rolls the group back before the first delete and
pauses it after (resume finishes once it ends); anything else rolls back, or stops for good.

The world is test_executor's: H1 and H2 cross-seed the same files on stash, demoted to the pool;
its deletes go H1's three old links first, then H2's."""

from __future__ import annotations

import itertools
import os
from dataclasses import replace

import pytest

from qbhook.move import executor as executor_mod
from tests.unit.test_executor import FILES, H1, H2, demote_plan, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

RELS = [rel for rel, _d in FILES]

# What a person or the client does to H2 after verify_group: (state, progress).
NOT_PASSING = {
    "missingFiles": ("missingFiles", 1.0),  # its dataset unmounted, its files renamed
    "error": ("error", 1.0),
    "under 100 %": (None, 0.97),  # a recheck that lost pieces, stable again
}
PASSING = {
    "checking": ("checkingUP", 0.3),  # a person forced a recheck
    "moving": ("moving", 1.0),  # 4.5.2: the old save path (the verified place) while it runs
}


def _change_h2_at_delete(world, deleted: int, state, progress) -> list:  # noqa: F811
    """A hook: right before delete number ``deleted`` (0: the first), H2 goes ``state`` at
    ``progress`` and stays so; each delete takes 5 s (past ``_REREAD_S``)."""
    seen = {"deletes": 0}

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "delete":
            world.clock.now += 5
            if seen["deletes"] == deleted:
                t = world.qbt.t[H2]
                t.transient, t.progress, t.script = state, progress, []
            seen["deletes"] += 1

    return hook


def _old_links_left(world, h) -> list[str]:  # noqa: F811
    return [rel for rel in RELS if os.path.lexists(os.path.join(world.save(h, "stash"), rel))]


def _settle(world) -> None:  # noqa: F811
    """The check or the move ends with H2 complete where it was verified."""
    t = world.qbt.t[H2]
    t.transient, t.progress = None, 1.0


@pytest.mark.parametrize("what", NOT_PASSING)
def test_a_torrent_broken_before_the_first_delete_rolls_the_group_back(world, what):  # noqa: F811
    summary = world.executor(hook=_change_h2_at_delete(world, 0, *NOT_PASSING[what])).apply(demote_plan(world))
    g = summary.groups[0]
    assert g.status == "rolled_back", g.reason
    assert f"torrent {H2} changed after verification" in g.reason and "after deletes began" not in g.reason
    for h in (H1, H2):
        assert _old_links_left(world, h) == RELS, h
    assert world.qbt.t[H1].save_path == world.save(H1, "stash")


@pytest.mark.parametrize("what", NOT_PASSING)
def test_a_torrent_broken_during_the_deletes_stops_them_for_good(world, what):  # noqa: F811
    summary = world.executor(hook=_change_h2_at_delete(world, 2, *NOT_PASSING[what])).apply(demote_plan(world))
    g = summary.groups[0]
    assert g.status == "failed" and not g.paused and not g.needs_attention, g.reason
    assert f"torrent {H2} changed after verification" in g.reason, g.reason
    assert "no more old links deleted" in g.reason and "qbhook orphans lists them" in g.reason, g.reason
    assert _old_links_left(world, H1) == RELS[2:] and _old_links_left(world, H2) == RELS
    assert world.executor().resume() == []  # nothing to retry: it does not pass by itself


@pytest.mark.parametrize("what", PASSING)
def test_a_torrent_checking_or_moving_before_the_first_delete_deletes_nothing(world, what):  # noqa: F811
    # The rollback's move back waits for the check or the move to end: resumable, then rolled back.
    ex = world.executor(hook=_change_h2_at_delete(world, 0, *PASSING[what]))
    g = ex.apply(demote_plan(world)).groups[0]
    assert g.status != "done" and "after deletes began" not in g.reason, g.reason
    assert f"torrent {H2} changed after verification" in g.reason and f"is {PASSING[what][0]}" in g.reason
    for h in (H1, H2):
        assert _old_links_left(world, h) == RELS, h
    _settle(world)
    (out,) = world.executor().resume()
    assert out.groups[0].status == "rolled_back", out.groups[0].reason
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "stash") and _old_links_left(world, h) == RELS


@pytest.mark.parametrize("what", PASSING)
def test_a_torrent_checking_or_moving_during_the_deletes_pauses_them_until_it_ends(world, what):  # noqa: F811
    out = world.executor(hook=_change_h2_at_delete(world, 2, *PASSING[what])).apply(demote_plan(world))
    g = out.groups[0]
    assert g.status == "failed" and g.paused and g.needs_attention, g.reason
    assert "paused at the verified new place, 4 old link(s) kept under" in g.reason, g.reason
    assert _old_links_left(world, H1) == RELS[2:] and _old_links_left(world, H2) == RELS
    (out,) = world.executor().resume()  # still under way: paused again, nothing deleted
    assert out.groups[0].paused and _old_links_left(world, H2) == RELS, out.groups[0].reason
    _settle(world)
    (out,) = world.executor().resume()
    assert out.status == "done" and out.groups[0].status == "done", out.groups[0].reason
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "pool") and _old_links_left(world, h) == []


def test_a_move_that_ends_elsewhere_stops_a_paused_group_for_good(world, tmp_path):  # noqa: F811
    world.executor(hook=_change_h2_at_delete(world, 2, "moving", 1.0)).apply(demote_plan(world))
    t = world.qbt.t[H2]
    t.transient, t.save_path = None, str(tmp_path)  # a person's move, done
    (out,) = world.executor().resume()
    g = out.groups[0]
    assert g.status == "failed" and not g.paused, g.reason
    assert _old_links_left(world, H1) == RELS[2:] and _old_links_left(world, H2) == RELS


def test_a_torrent_whose_files_are_elsewhere_before_the_first_delete_rolls_back(world):  # noqa: F811
    # qBittorrent restarted inside a move: its save path says the verified place while
    # libtorrent's files (content_path) are still at the old one, which the deletes remove.
    info, state = world.qbt._info, {"deletes": 0}

    def moved_back(t):
        i = info(t)
        if t.hash == H2 and state["deletes"]:
            return replace(i, content_path=os.path.join(world.save(H2, "stash"), t.name))
        return i

    world.qbt._info = moved_back

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "delete":
            state["deletes"] += 1

    g = world.executor(hook=hook).apply(demote_plan(world)).groups[0]
    assert g.status == "rolled_back" and "has its files at" in g.reason, g.reason
    for h in (H1, H2):
        assert _old_links_left(world, h) == RELS, h


def test_the_deletes_read_the_torrents_once_per_interval_not_per_file(world):  # noqa: F811
    # The re-check rides the one listing per client per ``_REREAD_S``: no per-torrent call.
    reads, per_torrent, state = [], [], {"deleting": False}
    torrents, torrent = world.qbt.torrents, world.qbt.torrent

    def counted_list(hashes=None, **kw):
        if state["deleting"] and hashes is not None:
            reads.append(world.clock.now)
        return torrents(hashes, **kw)

    def one(h):
        if state["deleting"]:
            per_torrent.append(h)
        return torrent(h)

    world.qbt.torrents, world.qbt.torrent = counted_list, one

    def hook(point, gid, seq, step):
        if point == "before":
            state["deleting"] = step.kind == "delete"
            world.clock.now += step.kind == "delete"  # six deletes, 1 s apart

    summary = world.executor(hook=hook).apply(demote_plan(world))
    assert summary.groups_done == ["g1"], summary.groups_failed
    assert per_torrent == []
    assert len(reads) == 3 and all(b - a >= executor_mod._REREAD_S for a, b in itertools.pairwise(reads)), reads
