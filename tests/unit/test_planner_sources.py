"""What a group's own sources say before it moves (R44): a link of its files that no torrent lists,
a torrent in a state the planner does not know, a torrent that lists no file."""

import pytest

from qbhook.config import PolicyConfig
from qbhook.decide.planner import make_plan
from tests.unit.world import LIB, P, S, World

POLICY = PolicyConfig(import_grace=0)


def only(w: World):
    p = make_plan(w.snapshot(), POLICY)
    assert len(p.groups) == 1, [g.names for g in p.groups]
    return p.groups[0]


def test_a_demote_waits_while_its_file_has_a_seeding_link_no_torrent_lists():
    # A cross-seed link of a client qbhook is not given (or a removed torrent's leftover): moving
    # would copy the payload and free nothing, the old inode kept by that link.
    leftover = S + "/cross-seed/TrackerX/Movie.2020/m.mkv"
    w = World()
    w.payload(S + "/movies", {"Movie.2020/m.mkv": "M"})
    w.link(S + "/movies/Movie.2020/m.mkv", leftover)
    w.torrent("a" * 40, S + "/movies", ["Movie.2020/m.mkv"])
    g = only(w)
    assert g.action == "blocked" and leftover in g.reason and "free nothing" in g.reason and not g.steps


def test_a_demote_goes_once_a_torrent_lists_that_link():
    w = World()
    w.payload(S + "/movies", {"Movie.2020/m.mkv": "M"})
    w.link(S + "/movies/Movie.2020/m.mkv", S + "/cross-seed/TrackerX/Movie.2020/m.mkv")
    w.torrent("a" * 40, S + "/movies", ["Movie.2020/m.mkv"])
    w.torrent("b" * 40, S + "/cross-seed/TrackerX", ["Movie.2020/m.mkv"])
    g = only(w)
    assert g.action == "demote" and g.bytes_freed == 1000


def test_a_second_spelling_of_the_torrents_own_link_is_no_unclaimed_link():
    w = World()
    w.payload(S + "/movies", {"Movie.2020/m.mkv": "M"})
    w.alias(S + "/movies/Movie.2020/m.mkv", S + "/bind/movies/Movie.2020/m.mkv")
    w.torrent("a" * 40, S + "/movies", ["Movie.2020/m.mkv"])
    assert only(w).action == "demote"


def test_a_promote_waits_while_its_file_has_a_seeding_link_no_torrent_lists():
    leftover = P + "/leftover/M/m.mkv"
    w = World()
    w.payload(P + "/movies", {"M/m.mkv": "M"})
    w.link(P + "/movies/M/m.mkv", leftover)
    w.torrent("b" * 40, P + "/movies", ["M/m.mkv"], tags=set())
    w.file(LIB + "/M (2020).mkv", "M")
    g = only(w)
    assert g.action == "blocked" and leftover in g.reason and not g.steps


@pytest.mark.parametrize("state", ["seeding_v6", "moving", "missingFiles", "error", "unknown"])
def test_a_torrent_in_a_state_not_known_stable_blocks_its_group(state):
    w = World()
    w.payload(S + "/tv", {"Show.S01/e1.mkv": "E1", "Show.S01/e2.mkv": "E2"})
    w.link(S + "/tv/Show.S01/e1.mkv", S + "/xseed/Show.S01E01.mkv")
    w.torrent("a" * 40, S + "/tv", ["Show.S01/e1.mkv", "Show.S01/e2.mkv"])
    w.torrent("b" * 40, S + "/xseed", ["Show.S01E01.mkv"], state=state)
    g = only(w)
    assert g.action == "blocked" and f"state {state}" in g.reason


@pytest.mark.parametrize("state", ["stalledUP", "uploading", "stoppedUP", "queuedUP", "forcedUP"])
def test_a_complete_torrent_in_a_stable_state_moves(state):
    w = World()
    w.payload(S + "/m", {"a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["a.bin"], state=state)
    assert only(w).action == "demote"


def test_a_torrent_listing_no_file_is_blocked_not_demoted():
    # A listing without metadata: a move would build and delete nothing of it; the executor refuses it.
    w = World()
    w.payload(S + "/movies", {"M/m.mkv": "M"})
    w.link(S + "/movies/M/m.mkv", LIB + "/M.mkv")
    w.torrent("a" * 40, S + "/movies", [])
    g = only(w)
    assert g.action == "blocked" and "no files listed" in g.reason and not g.steps
