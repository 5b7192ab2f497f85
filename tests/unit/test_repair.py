"""The repair decision (qbhook/decide/repair.py): a missing torrent rebuilt from catalog copies by
links on one dataset, or refused with the reason a person can act on."""

from __future__ import annotations

import pytest

from qbhook.decide.facts import PoolFact
from qbhook.decide.plan import Link, MkEmpty, Plan, Repair, VerifyGroup, VerifyView
from qbhook.decide.repair import (
    CatalogCopy,
    MissingTorrent,
    Present,
    RepairFacts,
    RepairFile,
    plan_repairs,
    view_paths,
)

S = "/stash/data/media/torrents/seeding"
P = "/pool/data/media/torrents/seeding"
POOLS = (
    PoolFact("stash", "primary", "/stash", S, "zfs:1", 0),
    PoolFact("pool", "cold", "/pool", P, "zfs:2", 0),
)
A, B = "aa" * 32, "bb" * 32


def torrent(files=None, save=S + "/movies", state="missingFiles") -> MissingTorrent:
    files = files or [RepairFile(0, "M/m.mkv", 100, 1, A), RepairFile(1, "M/m.nfo", 10, 1, B)]
    return MissingTorrent("c" * 40, "qbt", "M", state, save, tuple(files))


def facts(t: MissingTorrent, copies: dict, present: dict | None = None) -> RepairFacts:
    return RepairFacts((t,), POOLS, copies, present or {})


def lib(name: str, fsid: str = "zfs:1", ino: int = 7) -> CatalogCopy:
    root = "/stash" if fsid == "zfs:1" else "/pool" if fsid == "zfs:2" else "/stash/data/media/nested"
    return CatalogCopy(f"{root}/data/media/movies/{name}", fsid, ino)


def only_group(f: RepairFacts):
    plan, refused = plan_repairs(f)
    assert not refused, refused
    (g,) = plan.groups
    return g


def only_refusal(f: RepairFacts) -> str:
    plan, refused = plan_repairs(f)
    assert plan.groups == [], plan
    (r,) = refused
    return r.reason


def test_library_copies_on_the_torrents_own_dataset_are_linked_in_place():
    t = torrent()
    g = only_group(facts(t, {(100, A): (lib("m.mkv"),), (10, B): (lib("m.nfo", ino=8),)}))
    assert g.action == "repair" and g.actionable and g.bytes_to_copy == 0
    base = S + "/movies/"
    assert g.steps == [
        Link("/stash/data/media/movies/m.mkv", base, "M/m.mkv", 100, A),
        Link("/stash/data/media/movies/m.nfo", base, "M/m.nfo", 10, B),
        VerifyView("c" * 40, "qbt", S + "/movies", ("M/m.mkv", "M/m.nfo"), (100, 10), (A, B)),
        Repair("c" * 40, "qbt", S + "/movies", S + "/movies", 110),
        VerifyGroup(g.steps[-1].torrents),
    ]
    assert "0 bytes copied" in g.reason and "moves" not in g.reason
    # the plan is journal-ready: it survives its own JSON
    back = Plan.from_dict(Plan(groups=[g]).to_dict()).groups[0]
    assert [s.to_json() for s in back.steps] == [s.to_json() for s in g.steps] and back.action == "repair"


def test_a_copy_only_on_the_other_pool_moves_the_save_path_there():
    t = torrent()
    g = only_group(facts(t, {(100, A): (lib("m.mkv", "zfs:2"),), (10, B): (lib("m.nfo", "zfs:2", 9),)}))
    (rep,) = [s for s in g.steps if isinstance(s, Repair)]
    assert (rep.from_path, rep.to_path) == (S + "/movies", P + "/movies")
    assert all(s.dst.startswith(P + "/movies/") for s in g.steps if isinstance(s, Link))
    assert g.target_pool == "pool" and "save path moves to " + P + "/movies" in g.reason


def test_own_dataset_is_preferred_when_both_hold_a_copy():
    both = {(100, A): (lib("m.mkv", "zfs:2"), lib("m.mkv")), (10, B): (lib("m.nfo", "zfs:2"), lib("m.nfo"))}
    g = only_group(facts(torrent(), both))
    assert all(s.src.startswith("/stash/") for s in g.steps if isinstance(s, Link))


@pytest.mark.parametrize(
    ("files", "copies", "words"),
    [
        ([RepairFile(0, "M/m.mkv", 100, 1, None)], {}, "content unknown: M/m.mkv never hashed"),
        ([RepairFile(0, "M/m.mkv", 100, 1, A)], {}, "no full copy: nothing in the catalog holds M/m.mkv"),
        (None, {(100, A): (lib("m.mkv"),)}, "no full copy: nothing in the catalog holds M/m.nfo"),
        # each file has a copy, but on two datasets: links cannot join them, and repair never copies
        (None, {(100, A): (lib("m.mkv"),), (10, B): (lib("m.nfo", "zfs:2"),)}, "no copy on one dataset"),
        # one dataset, but not one a seeding root is on (a nested library dataset)
        ([RepairFile(0, "M/m.mkv", 100, 1, A)], {(100, A): (lib("m.mkv", "zfs:3"),)}, "dataset without a seeding"),
        ([RepairFile(0, "M/m.mkv", 100, 0, A)], {(100, A): (lib("m.mkv"),)}, "every file is skipped"),
    ],
)
def test_unrepairable_torrents_say_why(files, copies, words):
    assert words in only_refusal(facts(torrent(files), copies))


@pytest.mark.parametrize("state", ["downloading", "stalledDL", "checkingDL", "error", "queuedDL"])
def test_a_torrent_that_may_write_is_refused_until_stopped(state):
    # Links of catalog copies (library files) go under it before the executor stops it.
    why = only_refusal(facts(torrent(state=state), {(100, A): (lib("m.mkv"),), (10, B): (lib("m.nfo"),)}))
    assert why.startswith(f"it is {state}, not stopped: stop it first")


@pytest.mark.parametrize("state", ["missingFiles", "stoppedDL", "stoppedUP"])
def test_a_torrent_that_writes_nothing_is_repaired(state):
    assert only_group(facts(torrent(state=state), {(100, A): (lib("m.mkv"),), (10, B): (lib("m.nfo"),)}))


def test_save_path_outside_the_seeding_roots_is_refused():
    t = torrent(save="/stash/data/media/downloads")
    assert "outside every seeding root" in only_refusal(facts(t, {(100, A): (lib("m.mkv"),)}))


def test_skipped_files_are_neither_needed_nor_built_and_empty_files_are_made():
    files = [
        RepairFile(0, "M/m.mkv", 100, 1, A),
        RepairFile(1, "M/extra.bin", 50, 0, None),
        RepairFile(2, "M/e", 0, 1, None),
    ]
    g = only_group(facts(torrent(files), {(100, A): (lib("m.mkv"),)}))
    made = [s for s in g.steps if isinstance(s, Link | MkEmpty)]
    assert [type(s).__name__ for s in made] == ["Link", "MkEmpty"] and made[1].dst == S + "/movies/M/e"
    (view,) = [s for s in g.steps if isinstance(s, VerifyView)]
    assert view.paths == ("M/m.mkv", "M/e") and "1 skipped file(s) left as they are" in g.reason


def test_the_right_content_already_in_place_is_kept_and_anything_else_refuses():
    t = torrent([RepairFile(0, "M/m.mkv", 100, 1, A), RepairFile(1, "M/m.nfo", 10, 1, B)])
    copies = {(100, A): (lib("m.mkv"),), (10, B): (lib("m.nfo", ino=8),)}
    assert set(view_paths(t, POOLS)) == {
        S + "/movies/M/m.mkv",
        S + "/movies/M/m.nfo",
        P + "/movies/M/m.mkv",
        P + "/movies/M/m.nfo",
    }
    kept = {S + "/movies/M/m.nfo": Present("zfs:1", 9, 10, B)}
    g = only_group(facts(t, copies, kept))
    assert [s.dst for s in g.steps if isinstance(s, Link)] == [S + "/movies/M/m.mkv"]
    other = {S + "/movies/M/m.nfo": Present("zfs:1", 9, 10, A)}
    assert "something else is already at " + S + "/movies/M/m.nfo" in only_refusal(facts(t, copies, other))
    unhashed = {S + "/movies/M/m.nfo": Present("zfs:1", 9, 10, None)}
    assert "a repair never overwrites" in only_refusal(facts(t, copies, unhashed))


def test_a_partial_torrent_without_its_part_file_is_refused():
    # A piece a wanted file shares with a skipped one is checked from both: libtorrent keeps the
    # skipped side in .<infohash>.parts. Gone, the recheck ends under 100 % whatever is linked.
    files = [RepairFile(0, "M/m.mkv", 100, 1, A), RepairFile(1, "M/extra.bin", 50, 0, None)]
    t = torrent(files)
    copies = {(100, A): (lib("m.mkv"),)}
    assert only_group(facts(t, copies))  # its part file there (the gatherer found it)
    gone = MissingTorrent(t.hash, t.instance, t.name, t.state, t.save_path, t.files, part_file_missing=True)
    why = only_refusal(facts(gone, copies))
    assert why.startswith("partial torrent (1 skipped file(s)) whose part file .cccc") and "\n" not in why
    assert "would fail the recheck" in why
