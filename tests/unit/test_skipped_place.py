"""A skipped file's (priority 0) place at the destination must be empty (``facts.skipped_place_taken``).

A move or a repair builds only a partial torrent's wanted files. If another file sat at a skipped
file's path in the new folder (another torrent's, a library's hard link), the torrent would be
relocated onto it, and once a person raises that file's priority qBittorrent downloads its pieces
into that inode (no recheck): another torrent's data or a library file modified. The planner
blocks it, repair refuses it, and the executor reads it again right before setLocation. Each test
but the "still moves" ones fails on the code before the rule (review R3-1).
"""

from __future__ import annotations

import os

import pytest

from qbhook.config import PolicyConfig
from qbhook.decide.planner import make_plan
from qbhook.decide.repair import Present, RepairFile
from tests.helpers import write
from tests.unit.test_executor import H1, demote_plan, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_repair import A, facts, lib, only_group, only_refusal, torrent
from tests.unit.test_repair import P as RP
from tests.unit.test_repair import S as RS
from tests.unit.world import P, S, World

TAKEN = "a skipped file's place at the destination holds another file: "


# ------------------------------------------------------------------ planner


def _partial(w: World) -> None:
    """Torrent a: e1 wanted, e3 skipped and never downloaded (nothing at its source path)."""
    w.payload(S + "/m", {"Show/e1.mkv": "A"})
    w.torrent("a" * 40, S + "/m", ["Show/e1.mkv", "Show/e3.mkv"], skipped=["Show/e3.mkv"])


def _group_of_a(w: World):
    return next(g for g in make_plan(w.snapshot(), PolicyConfig()).groups if "a" * 40 in g.torrents)


def test_planner_blocks_a_partial_torrent_whose_skipped_files_place_holds_another_torrents_file():
    w = World()
    _partial(w)
    # On the cold pool, at e3's mapped path: another torrent's file, cross-seeded by a third.
    w.payload(P + "/m", {"Show/e3.mkv": "OTHER"})
    w.link(P + "/m/Show/e3.mkv", P + "/xseed/Show/e3.mkv")
    w.torrent("b" * 40, P + "/m", ["Show/e3.mkv"], tags=set())
    w.torrent("c" * 40, P + "/xseed", ["Show/e3.mkv"], tags=set())
    g = _group_of_a(w)
    assert g.action == "blocked" and not g.steps, g.reason
    assert TAKEN + P + "/m/Show/e3.mkv" in g.reason and "if the file is wanted later" in g.reason


def test_planner_blocks_a_skipped_files_place_holding_a_lone_file_too():
    """Nothing else links it now, and its content is unknown: still not the torrent's own."""
    w = World()
    _partial(w)
    w.file(P + "/m/Show/e3.mkv", "WHATEVER")
    g = _group_of_a(w)
    assert g.action == "blocked" and TAKEN + P + "/m/Show/e3.mkv" in g.reason


def test_planner_still_moves_a_partial_torrent_whose_skipped_files_place_is_empty():
    w = World()
    _partial(w)
    g = _group_of_a(w)
    assert g.action == "demote" and [s.to_path for s in g.steps if s.kind == "relocate"] == [P + "/m"]


# ------------------------------------------------------------------ planner: another torrent's skipped place (R69)

WRITES_INTO = "a destination is a place another torrent may write into: "


def _other_skips_extra(w: World) -> None:
    """Torrent a seeds on the cold pool at P/x, Movie/extra.mkv at priority 0 (nothing on disk);
    torrent b, another payload seed-only on /stash at S/x, wants its own Movie/extra.mkv."""
    w.payload(P + "/x", {"Movie/a.mkv": "A"})
    w.torrent("a" * 40, P + "/x", ["Movie/a.mkv", "Movie/extra.mkv"], skipped={"Movie/extra.mkv"}, tags=set())
    w.payload(S + "/x", {"Movie/extra.mkv": "E-other-bytes"})
    w.torrent("b" * 40, S + "/x", ["Movie/extra.mkv"])


def _group_of(plan, h: str):
    return next(g for g in plan.groups if h * 40 in g.torrents)


def test_planner_blocks_a_move_into_another_torrents_skipped_files_place():
    """b's demote copied its only copy to P/x/Movie/extra.mkv, a's skipped place: once a person
    wants a's file, qBittorrent writes a's pieces into b's file (review R69)."""
    w = World()
    _other_skips_extra(w)
    g = _group_of(make_plan(w.snapshot(), PolicyConfig()), "b")
    place = P + "/x/Movie/extra.mkv"
    assert g.action == "blocked" and not g.steps, g.reason
    assert (
        WRITES_INTO + place + " (torrent " + "a" * 40 + " (aaaaaaaa on default), which lists it at priority 0)"
        in g.reason
    )


def test_planner_blocks_a_move_into_a_place_a_torrent_left_out_of_the_snapshot_may_write():
    """A partial snapshot (an event's closure) lacks a's file list: its content folder, where it
    may write (``Snapshot.write_prefixes``), is enough to refuse b's file there."""
    from dataclasses import replace

    w = World()
    w.payload(S + "/x", {"Movie/extra.mkv": "E-other-bytes"})
    w.torrent("b" * 40, S + "/x", ["Movie/extra.mkv"])
    snap = replace(w.snapshot(), write_prefixes=frozenset({P + "/x/Movie"}))
    g = _group_of(make_plan(snap, PolicyConfig()), "b")
    assert g.action == "blocked" and WRITES_INTO + P + "/x/Movie/extra.mkv (a torrent that may still write" in g.reason


def _saved_without_root_folder(**kw):
    """Torrent d's listing: multi-file, saved with "Don't create subfolder" into the cold pool's
    movies folder, so qBittorrent reports its content path as its save path (R72)."""
    from types import SimpleNamespace

    fields = {"hash": "d" * 40, "instance": "default", "progress": 0.3, "state": "downloading"}
    fields |= {"content_path": P + "/movies", "save_path": P + "/movies", "download_path": ""}
    return SimpleNamespace(**fields | {"may_skip_files": False, "size": 2, "total_size": 2} | kw)


_SEEDING_SKIPPING = {"progress": 1.0, "state": "stalledUP", "size": 1}


def _b_beside_left_out_d(kw: dict, second: str):
    """b's group, planned from a partial snapshot that left out d (saved without its root folder,
    in b's destination category) whose index file list names ``new1.mkv`` and ``second`` (the one
    it skips when it seeds)."""
    from dataclasses import replace

    from qbhook.decide import converge

    w = World()
    w.payload(S + "/movies", {"Old.Movie/old.mkv": "OLD"})
    w.torrent("b" * 40, S + "/movies", ["Old.Movie/old.mkv"])
    d = _saved_without_root_folder(**kw)
    key = ("default", "d" * 40)
    skipping = {key: (bool(kw), d.size, d.total_size)}
    files = {key: [("new1.mkv", 1), (second, 0 if kw else 1)]}
    snap = replace(w.snapshot(), write_prefixes=converge.write_prefixes([d], None, skipping, files))
    return _group_of(make_plan(snap, PolicyConfig()), "b")


@pytest.mark.parametrize("kw", [{}, _SEEDING_SKIPPING], ids=["downloading", "seeding-skipping-one"])
def test_a_torrent_left_out_saved_without_its_root_folder_blocks_no_demote_into_its_category(kw):
    """A partial snapshot (an event's closure, a sweep's chunk) leaves d out: d's content path is
    the whole category folder, and as a place it may write it blocked b's demote into that folder
    while d downloaded, or for good while it skipped a file. The index's file list of d names its
    files' places: b's file is none of them, so b demotes as in one full snapshot (R72)."""
    g = _b_beside_left_out_d(kw, "new2.mkv")
    assert g.action == "demote", g.reason


@pytest.mark.parametrize("kw", [{}, _SEEDING_SKIPPING], ids=["downloading", "seeding-skipping-it"])
def test_a_torrent_left_out_still_blocks_a_demote_onto_its_known_file(kw):
    """The same world, where d's file (the one it skips, when it seeds) is b's destination exactly:
    blocked, as in one full snapshot."""
    g = _b_beside_left_out_d(kw, "Old.Movie/old.mkv")
    place = P + "/movies/Old.Movie/old.mkv"
    assert g.action == "blocked" and WRITES_INTO + place + " (a torrent that may still write" in g.reason


def test_the_snapshot_asks_a_torrent_left_out_for_its_file_list_only_when_its_folder_is_a_category():
    """``SnapshotBuilder._left_out_files``: the client's lists (never the index's) of the torrents
    left out that may write and whose content path is their save path; none for one with its own
    root folder (that folder is exact, a rename below it stays inside), nor for one whose client
    does not answer (its folder stays, for this run), nor for a settled one wanting every file."""
    from types import SimpleNamespace

    from qbhook.clients.model import TorrentFile
    from qbhook.decide import snapshot
    from qbhook.errors import QbtUnreachable

    one = _saved_without_root_folder(hash="1" * 40)
    own_folder = _saved_without_root_folder(hash="3" * 40, content_path=P + "/movies/Own")
    unanswered = _saved_without_root_folder(hash="4" * 40)
    settled = _saved_without_root_folder(hash="5" * 40, progress=1.0, state="stalledUP")
    asked: list = []

    def files_of(t):
        asked.append(t.hash)
        if t.hash == "4" * 40:
            raise QbtUnreachable("qbt unreachable")
        return [TorrentFile(0, "b.mkv", 5, 0.0, 0)]

    me = SimpleNamespace(catalog=None, _files_of=files_of)
    got = snapshot.SnapshotBuilder._left_out_files(me, [one, own_folder, unanswered, settled], {})
    assert got == {("default", "1" * 40): [("b.mkv", 0)]}
    assert asked == ["1" * 40, "4" * 40]


def test_a_file_renamed_below_a_left_out_torrents_folder_still_blocks_the_move_onto_it(tmp_path):
    """R75: the index keeps a file's old name after ``renameFile`` (its files_key does not move),
    and the index's list let a partial snapshot demote b onto the renamed file's new place, where d
    (left out, downloading, saved without its root folder) writes: b's only copy overwritten. The
    client's own list names the new place."""
    from dataclasses import replace

    from qbhook.decide import converge

    w = World()
    w.payload(S + "/movies", {"Old.Movie/old.mkv": "OLD"})
    w.torrent("b" * 40, S + "/movies", ["Old.Movie/old.mkv"])
    d = _saved_without_root_folder()
    live = {("default", "d" * 40): [("new1.mkv", 1), ("Old.Movie/old.mkv", 1)]}  # renamed in qBittorrent
    snap = replace(w.snapshot(), write_prefixes=converge.write_prefixes([d], None, {}, live))
    g = _group_of(make_plan(snap, PolicyConfig()), "b")
    assert g.action == "blocked" and WRITES_INTO + P + "/movies/Old.Movie/old.mkv" in g.reason, g.reason


def test_planner_still_moves_beside_another_torrents_skipped_file():
    w = World()
    _other_skips_extra(w)
    w.torrents[0] = (
        "a" * 40,
        P + "/x",
        ["Movie/a.mkv", "Movie/other.mkv"],
        {"skipped": {"Movie/other.mkv"}, "tags": set()},
    )
    g = _group_of(make_plan(w.snapshot(), PolicyConfig()), "b")
    assert g.action == "demote" and [s.args["dst"] for s in g.steps if s.kind == "copy"] == [P + "/x/Movie/extra.mkv"]


def _two_roots_onto_one(w: World):
    """/stash's two seeding roots S and S1 both map onto P: a (at S, partial, Movie/extra.mkv
    skipped) and b (at S1, wanting its own Movie/extra.mkv) both demote to P/TrackerA."""
    from dataclasses import replace

    from qbhook.decide.facts import split_links

    s1 = "/stash/data/media/xseed-links"
    w.payload(S + "/TrackerA", {"Movie/m.mkv": "M1"})
    w.payload(s1 + "/TrackerA", {"Movie/extra.mkv": "E"})
    a = ("a" * 40, S + "/TrackerA", ["Movie/m.mkv", "Movie/extra.mkv"], {"skipped": {"Movie/extra.mkv"}})
    b = ("b" * 40, s1 + "/TrackerA", ["Movie/extra.mkv"], {})
    w.torrents.extend([a, b])
    snap = w.snapshot()
    keys = ("seeding_paths", "other_paths")
    inodes = {
        k: replace(i, **dict(zip(keys, split_links(i.seeding_paths + i.other_paths, (S, s1, P)), strict=True)))
        for k, i in snap.inodes.items()
    }
    pools = (replace(snap.pool("stash"), more_seeding_roots=(s1,)), snap.pool("pool"))
    return replace(snap, pools=pools, inodes=inodes)


def test_of_two_groups_of_one_run_the_later_one_waits_whichever_writes_the_others_skipped_place():
    """Same run: each group's checks see the snapshot only, where a is still on /stash (R69). The
    group later in the plan waits, whether it is the writer or the one with the skipped file."""
    from qbhook.decide.grouping import payload_groups
    from qbhook.decide.planner import _resolve_cross_group, decide

    snap = _two_roots_onto_one(World())
    place = P + "/TrackerA/Movie/extra.mkv"
    assert [g.action for g in make_plan(snap, PolicyConfig()).groups] == ["demote", "skip"]
    for order in (1, -1):
        going, waiting = plans = [decide(snap, PolicyConfig(), g) for g in payload_groups(snap.torrents)][::order]
        _resolve_cross_group(plans)
        assert going.action == "demote" and waiting.action == "skip" and not waiting.steps, waiting.reason
        assert waiting.reason.startswith(f"waits for group {going.group_id}, ") and place in waiting.reason


# ------------------------------------------------------------------ repair

SKIPPED = RepairFile(1, "M/extra.bin", 50, 0, None)


def _repair_facts(present: dict, pool_copy: bool = True):
    """A missing torrent (one wanted file, one skipped) whose only copy is on the cold pool
    (``pool_copy``: the view goes to the mapped save path) or on its own."""
    t = torrent([RepairFile(0, "M/m.mkv", 100, 1, A), SKIPPED])
    copy = lib("m.mkv", fsid="zfs:2") if pool_copy else lib("m.mkv")
    return facts(t, {(100, A): (copy,)}, present)


def test_repair_refuses_a_new_save_path_where_a_skipped_files_place_is_taken():
    dst = RP + "/movies/M/extra.bin"
    reason = only_refusal(_repair_facts({dst: Present("zfs:2", 55, 50, None)}))
    assert reason.startswith(TAKEN + dst), reason


def test_repair_still_rebuilds_with_a_skipped_files_place_empty_or_in_place():
    g = only_group(_repair_facts({}))
    assert g.target_pool == "pool" and "1 skipped file(s) left as they are" in g.reason
    # In place the torrent already names that path: what is there is left as it is.
    there = {RS + "/movies/M/extra.bin": Present("zfs:1", 55, 50, None)}
    assert only_group(_repair_facts(there, pool_copy=False)).target_pool == "stash"


# ------------------------------------------------------------------ executor

EXTRA = "Movie.2020/extras/extra.mkv"  # H1's skipped file, never downloaded


def _skipped_extra(w) -> int:
    size = 46
    w.qbt.t[H1].files.append((EXTRA, size, 0))
    return size


def test_executor_refuses_at_verify_view_a_file_put_at_a_skipped_files_place_after_planning(world):  # noqa: F811
    w = world
    size = _skipped_extra(w)
    place = os.path.join(w.seed_p, EXTRA)
    other = os.path.join(w.seed_p, "other-torrent", "extra.mkv")
    planted = []

    def plant(point, gid, seq, step):
        # Between plan and verify: another torrent's file (cross-seeded) lands at that place.
        if point == "before" and step.kind == "verify_view" and step.torrent == H1 and not planted:
            write(place.encode(), b"X" * size)
            os.makedirs(os.path.dirname(other))
            os.link(place, other)
            planted.append(True)

    summary = w.executor(hook=plant).apply(demote_plan(w))
    assert planted and TAKEN + place in summary.groups_failed["g1"]
    assert w.qbt.count("set_location") == 0 and w.qbt.torrent(H1).save_path == w.seed_s
    st = os.lstat(other)
    assert st.st_ino == os.lstat(place).st_ino and st.st_nlink == 2  # left as it was
    with open(other, "rb") as f:
        assert f.read() == b"X" * size


def test_executor_still_moves_a_partial_torrent_whose_skipped_files_place_is_empty(world):  # noqa: F811
    w = world
    _skipped_extra(w)
    summary = w.executor().apply(demote_plan(w))
    assert summary.groups_done and not summary.groups_failed
    assert w.qbt.torrent(H1).save_path == w.seed_p and not os.path.lexists(os.path.join(w.seed_p, EXTRA))


# ------------------------------------------------------------------ repair: a skipped file's data at the old place

CARRIED = "skipped file (priority 0) has data at the source, qBittorrent would carry it along unverified: "


def test_repair_refuses_a_new_save_path_while_a_skipped_file_has_data_at_the_old_one():
    """The move planner's rule (``facts.skipped_data_carried``): setLocation would carry the bytes
    along unverified, and the executor refused the view at verify_view every run, after linking
    the files and stopping the torrent (review R31). Now the dry run says so, in the same words."""
    old = RS + "/movies/M/extra.bin"
    reason = only_refusal(_repair_facts({old: Present("zfs:1", 55, 50, None)}))
    assert reason == CARRIED + old
    # Not a file (a folder or a symlink there, ``repair_facts._present``): refused too, as the executor does.
    assert only_refusal(_repair_facts({old: Present("", 55, -1, None)})) == CARRIED + old


def test_repair_still_rebuilds_with_a_skipped_files_old_place_empty_or_in_place():
    old = RS + "/movies/M/extra.bin"
    assert only_group(_repair_facts({old: Present("zfs:1", 55, 0, None)})).target_pool == "pool"  # an empty file
    # In place nothing moves: what is at the skipped file's place stays where the torrent names it.
    assert only_group(_repair_facts({old: Present("zfs:1", 55, 50, None)}, pool_copy=False)).target_pool == "stash"


def test_a_skipped_files_data_on_disk_refuses_the_repair_in_the_dry_run(world):  # noqa: F811
    """The R31 reproduction on real files: the executor refused this plan at verify_view (after
    linking the view and stopping the torrent) on every ``--yes``; the dry run now refuses it."""
    from qbhook.decide.facts import PoolFact
    from qbhook.decide.repair import CatalogCopy, MissingTorrent, RepairFacts, plan_repairs
    from tests.unit.test_executor import FILES, b3

    w = world
    copies = {}
    for rel, data in FILES:  # the wanted files gone from stash, their copies only on the cold pool
        os.unlink(os.path.join(w.seed_s, rel))
        if data:
            p = str(w.pool / "media" / os.path.basename(rel))
            write(p.encode(), data)
            fsid = w.cat.fsid(w.cat.fs_for_path(w.seed_p))
            copies[(len(data), b3(data))] = (CatalogCopy(p, fsid, os.lstat(p).st_ino),)
    old = os.path.join(w.seed_s, EXTRA)
    write(old.encode(), b"X" * 46)  # downloaded before it was unticked
    pools = tuple(
        PoolFact(n, role, str(root), seed, w.cat.fsid(w.cat.fs_for_path(seed)), 0)
        for n, role, root, seed in (("stash", "primary", w.stash, w.seed_s), ("pool", "cold", w.pool, w.seed_p))
    )
    files = tuple(RepairFile(i, rel, len(d), 1, b3(d) if d else None) for i, (rel, d) in enumerate(FILES))
    files += (RepairFile(len(FILES), EXTRA, 46, 0, None),)
    st = os.lstat(old)
    t = MissingTorrent(H1, "qbt", "Movie.2020", "missingFiles", w.seed_s, files)
    plan, refused = plan_repairs(RepairFacts((t,), pools, copies, {old: Present("x", st.st_ino, 46, None)}))
    assert plan.groups == [] and [r.reason for r in refused] == [CARRIED + old]
