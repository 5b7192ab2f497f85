"""One infohash in two clients, on two unlinked copies of its data, is two payload groups: their
ids, their members and the symlink rule must tell them apart (a group is found by its id in the
journal's group_state, the executor's group lock, resume, serve's health and ``apply --group``)."""

import json
from dataclasses import replace

from qbhook.catalog.db import connect
from qbhook.catalog.store import Catalog
from qbhook.config import PolicyConfig
from qbhook.decide.plan import GroupPlan, Plan
from qbhook.decide.planner import make_plan
from qbhook.decide.planning import pick_groups
from qbhook.move.journal import Journal
from tests.unit.world import S, World

POLICY = PolicyConfig()
H = "a" * 40


def _two_copies():
    """``H`` in qBittorrent on /stash/…/movies and in rTorrent on its own copy on /stash/…/rt."""
    w = World()
    w.payload(S + "/movies", {"Movie/m.mkv": "M"})
    w.payload(S + "/rt", {"Movie/m.mkv": "M"})
    w.torrent(H, S + "/movies", ["Movie/m.mkv"])
    w.torrent(H, S + "/rt", ["Movie/m.mkv"])
    snap = w.snapshot()
    return replace(snap, torrents=(snap.torrents[0], replace(snap.torrents[1], instance="rtorrent")))


def test_one_infohash_in_two_clients_is_two_groups_with_two_ids():
    """Hash-only ids gave both groups one id: the journal's group_state kept one row for both, so the
    group that failed read as done (or the other way), and ``apply --group ID`` applied both."""
    p = make_plan(_two_copies(), POLICY)
    a, b = p.groups
    j = Journal(Catalog(connect(":memory:")).conn)
    run = j.start_run(p, "test")
    j.set_group(a.group_id, run, "done")
    j.set_group(b.group_id, run, "failed", "verify failed")
    assert j.group_status(a.group_id) == ("done", None)  # base: ("failed", "verify failed")
    assert [g.group_id for g in pick_groups(p, [a.group_id]).groups] == [a.group_id]  # base: both
    assert a.group_id != b.group_id
    assert {(tuple(g.instances), tuple(g.torrents)) for g in p.groups} == {(("default",), (H,)), (("rtorrent",), (H,))}


def test_a_group_id_names_each_members_client_as_a_repair_does():
    """One rule, one home (``identity.group_id_of``): a repair's id is the id of its one-torrent group."""
    from qbhook.catalog.identity import group_id, group_id_of

    assert group_id_of([("rtorrent", H)]) == group_id([f"{H}@rtorrent"])
    assert group_id_of([("default", H), ("x", "b" * 40)]) == group_id_of([("x", "B" * 40), ("default", H)])


def test_a_plan_saved_before_groups_named_their_clients_still_loads():
    """An old journaled or saved plan: hash-only ids, no ``instances``; it loads as it was written."""
    old = {"created_at": 1.0, "groups": [{"group_id": "0123456789abcdef", "torrents": [H], "names": ["Movie"]}]}
    old["groups"][0].update(action="stay", reason="", source_pool=None, target_pool=None, bytes_to_copy=0)
    old["groups"][0].update(bytes_freed=0, payload_bytes=0, external_links=[], blockers=[], steps=[])
    p = Plan.from_dict(json.loads(json.dumps(old)))
    (g,) = p.groups
    assert (g.group_id, g.torrents, g.instances) == ("0123456789abcdef", [H], [])
    assert GroupPlan.from_dict(g.to_dict()) == g


def test_a_torrent_of_the_same_hash_in_another_client_reaching_the_files_blocks_the_group():
    """``reached_blockers`` told the group's own torrents by hash: the same infohash in another client,
    saved through a symlink onto this group's folder, counted as one of its own, and the demote deleted
    the data that client seeds from."""
    w = World()
    w.payload(S + "/movies", {"Movie/m.mkv": "M"})
    w.torrent(H, S + "/movies", ["Movie/m.mkv"])
    w.symlinks[S + "/xseed"] = S + "/movies"
    w.torrent(H, S + "/xseed", ["Movie/m.mkv"])
    snap = w.snapshot()
    snap = replace(snap, torrents=(snap.torrents[0], replace(snap.torrents[1], instance="rtorrent")))
    p = make_plan(snap, POLICY)
    (g,) = [g for g in p.groups if "symlink in the source path" not in g.reason]  # the one in qBittorrent
    assert g.action == "blocked" and not g.steps, g.reason
    assert g.blockers == [
        f"torrent {H} ({H[:8]}) in rtorrent reaches {S}/movies/Movie/m.mkv through a symlink: {S}/xseed -> {S}/movies"
    ]
