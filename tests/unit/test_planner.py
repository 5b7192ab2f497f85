"""Planner decisions from plain data tables (no I/O)."""

import posixpath
from dataclasses import replace

import pytest

from qbhook.config import PolicyConfig
from qbhook.decide.facts import split_links
from qbhook.decide.planner import make_plan
from tests.unit.world import LIB, P, S, World

POLICY = PolicyConfig()


def plan(w: World, policy=POLICY):
    return make_plan(w.snapshot(), policy)


def only(p):
    assert len(p.groups) == 1, [g.names for g in p.groups]
    return p.groups[0]


def kinds(g):
    return [s.kind for s in g.steps]


def test_movie_hardlinked_into_library_stays():
    w = World()
    w.payload(S + "/movies", {"Movie.2020/movie.mkv": "M"})
    w.link(S + "/movies/Movie.2020/movie.mkv", LIB + "/Movie (2020)/Movie (2020).mkv")
    w.torrent("a" * 40, S + "/movies", ["Movie.2020/movie.mkv"])
    g = only(plan(w))
    assert g.action == "stay" and "Movie (2020).mkv" in g.reason and not g.steps
    assert g.external_links == [LIB + "/Movie (2020)/Movie (2020).mkv"]


def test_unknown_link_outside_scanned_pools_also_keeps_it():
    w = World()
    k = w.file(S + "/x/f.bin", "X")
    w.inodes[k]["unknown"] = 1
    w.torrent("a" * 40, S + "/x", ["f.bin"])
    g = only(plan(w))
    assert g.action == "stay" and "outside the scanned pools" in g.reason


def test_three_siblings_different_roots_demote_as_one_group_with_one_copy():
    w = World()
    w.payload(S + "/movies", {"Show.S01/e1.mkv": "E1", "Show.S01/e2.mkv": "E2"})
    # cross-seed siblings: other root names, hardlinked inside the seeding tree
    for root in ("cross-seed/TrackerA/Show.S01.REPACK", "cross-seed/TrackerB/Show Season 1"):
        for e in ("e1", "e2"):
            w.link(S + f"/movies/Show.S01/{e}.mkv", S + f"/{root}/{e}.mkv")
    w.torrent("a" * 40, S + "/movies", ["Show.S01/e1.mkv", "Show.S01/e2.mkv"])
    w.torrent("b" * 40, S + "/cross-seed/TrackerA", ["Show.S01.REPACK/e1.mkv", "Show.S01.REPACK/e2.mkv"])
    w.torrent("c" * 40, S + "/cross-seed/TrackerB", ["Show Season 1/e1.mkv", "Show Season 1/e2.mkv"])
    g = only(plan(w))
    assert g.action == "demote" and g.target_pool == "pool"
    assert g.bytes_to_copy == 2000 and g.bytes_freed == 2000
    copies = [s for s in g.steps if s.kind == "copy"]
    links = [s for s in g.steps if s.kind == "link"]
    assert len(copies) == 2 and len(links) == 4
    assert {s.args["src"] for s in links} == {s.args["dst"] for s in copies}  # everyone links to the one copy
    relocs = {s.args["torrent"]: s.args["to_path"] for s in g.steps if s.kind == "relocate"}
    assert relocs["b" * 40] == P + "/cross-seed/TrackerA"
    # order: make the view, verify it, then relocate, verify, then delete
    order = kinds(g)
    assert order.index("verify_view") > max(i for i, k in enumerate(order) if k in ("copy", "link"))
    assert order.index("relocate") > max(i for i, k in enumerate(order) if k == "verify_view")
    assert min(i for i, k in enumerate(order) if k == "delete") > order.index("verify_group")
    assert len([s for s in g.steps if s.kind == "delete"]) == 6


def test_demote_onto_identical_data_already_on_pool_copies_nothing():
    w = World()
    w.payload(S + "/movies", {"Movie/m.mkv": "M", "Movie/m.nfo": "N"})
    w.torrent("a" * 40, S + "/movies", ["Movie/m.mkv", "Movie/m.nfo"])
    # the same content on /pool under another name, another torrent's data
    w.payload(P + "/other", {"Film/film.mkv": "M", "Film/film.nfo": "N"})
    w.torrent("b" * 40, P + "/other", ["Film/film.mkv", "Film/film.nfo"], tags=set())
    p = plan(w)
    ga = next(g for g in p.groups if "a" * 40 in g.torrents)
    gb = next(g for g in p.groups if "b" * 40 in g.torrents)
    assert ga.action == "demote" and ga.bytes_to_copy == 0 and "copy" not in kinds(ga)
    assert {s.args["src"] for s in ga.steps if s.kind == "link"} == {
        P + "/other/Film/film.mkv",
        P + "/other/Film/film.nfo",
    }
    assert gb.action == "stay"  # no consumer on stash: the pool copy is the one to keep


@pytest.mark.parametrize("whose", ["a torrent still downloading", "a settled torrent with it at priority 0"])
def test_demote_copies_rather_than_link_onto_a_file_that_may_change(whose):
    """A donor is an inode convergence would keep (``converge.reusable``): linked onto one that a
    downloading torrent or something unseen still writes, the group's only copy on /pool would
    change with it once its /stash links are deleted."""
    w = World()
    w.payload(S + "/movies", {"Movie/m.mkv": "M"})
    w.torrent("a" * 40, S + "/movies", ["Movie/m.mkv"])
    w.payload(P + "/dl", {"B/b.mkv": "M", "B/b2.mkv": "Y"})
    if whose == "a torrent still downloading":
        w.torrent("b" * 40, P + "/dl", ["B/b.mkv", "B/b2.mkv"], state="downloading", progress=0.5, tags=set())
    else:
        w.torrent("b" * 40, P + "/dl", ["B/b.mkv", "B/b2.mkv"], skipped={"B/b.mkv"}, tags=set())
    g = next(g for g in plan(w).groups if "a" * 40 in g.torrents)
    assert g.action == "demote" and "link" not in kinds(g) and g.bytes_to_copy == 1000, g.reason
    assert [s.args["dst"] for s in g.steps if s.kind == "copy"] == [P + "/movies/Movie/m.mkv"]


def test_demote_links_onto_a_settled_torrents_file():
    w = World()
    w.payload(S + "/movies", {"Movie/m.mkv": "M"})
    w.torrent("a" * 40, S + "/movies", ["Movie/m.mkv"])
    w.payload(P + "/dl", {"B/b.mkv": "M", "B/b2.mkv": "Y"})
    w.torrent("b" * 40, P + "/dl", ["B/b.mkv", "B/b2.mkv"], tags=set())
    g = next(g for g in plan(w).groups if "a" * 40 in g.torrents)
    assert g.action == "demote" and g.bytes_to_copy == 0
    assert [s.args["src"] for s in g.steps if s.kind == "link"] == [P + "/dl/B/b.mkv"]


@pytest.mark.parametrize("whose", ["downloading", "skipped", "settled"])
def test_a_file_at_the_destination_is_reused_only_if_nothing_writes_it(whose):
    """The file already at the destination path passes ``converge.reusable`` too (R11 #2): reused, it
    is the group's only copy once the /stash links go, and a torrent still downloading it, or with it
    at priority 0, would change it; nor may a copy replace that torrent's file. The group waits."""
    w = World()
    w.payload(S + "/movies", {"Movie/m.mkv": "M"})
    w.torrent("a" * 40, S + "/movies", ["Movie/m.mkv"])
    w.payload(P + "/movies", {"Movie/m.mkv": "M", "Movie/b2.mkv": "Y"})
    kw = {"downloading": {"state": "downloading", "progress": 0.5}, "skipped": {"skipped": {"Movie/m.mkv"}}}
    w.torrent("b" * 40, P + "/movies", ["Movie/m.mkv", "Movie/b2.mkv"], tags=set(), name="Other", **kw.get(whose, {}))
    g = next(g for g in plan(w).groups if "a" * 40 in g.torrents)
    if whose == "settled":  # a settled torrent's file, wanted: nothing writes it, reused as before
        assert g.action == "demote" and g.bytes_to_copy == 0 and "copy" not in kinds(g), g.reason
        return
    assert g.action == "blocked" and not g.steps and g.bytes_to_copy == 0
    assert f"destination {P}/movies/Movie/m.mkv is occupied by a file another torrent may still write" in g.reason
    assert "torrent Other (bbbbbbbb on default)" in g.reason
    assert ("priority 0" if whose == "skipped" else "not settled (downloading, 50%)") in g.reason


def test_one_infohash_in_two_clients_keeps_each_torrents_destination():
    """Per-torrent maps are keyed by (instance, hash) (R11 #3): keyed by hash, the second client's
    torrent overwrote the first's new folder, so verify_group expected both at one folder (it failed
    and rolled back every sweep) and the first one's deletes kept the other's paths."""
    w = World()
    w.payload(S + "/movies", {"Movie/m.mkv": "M"})
    w.link(S + "/movies/Movie/m.mkv", S + "/rt/Movie/m.mkv")
    w.torrent("a" * 40, S + "/movies", ["Movie/m.mkv"])
    w.torrent("a" * 40, S + "/rt", ["Movie/m.mkv"])
    snap = w.snapshot()
    snap = replace(snap, torrents=(snap.torrents[0], replace(snap.torrents[1], instance="rtorrent")))
    (g,) = make_plan(snap, POLICY).groups
    assert g.action == "demote", g.reason
    at = {"default": P + "/movies", "rtorrent": P + "/rt"}
    (vg,) = [s for s in g.steps if s.kind == "verify_group"]
    assert {(m["instance"], m["save_path"]) for m in vg.args["torrents"]} == set(at.items())
    assert {(s.args["instance"], s.args["to_path"]) for s in g.steps if s.kind == "relocate"} == set(at.items())
    keeps = {s.args["path"]: s.args["keep"]["path"] for s in g.steps if s.kind == "delete"}
    assert keeps == {S + "/movies/Movie/m.mkv": P + "/movies/Movie/m.mkv", S + "/rt/Movie/m.mkv": P + "/rt/Movie/m.mkv"}


def test_promote_when_an_arr_import_copied_the_file_into_the_library():
    w = World()
    w.payload(P + "/movies", {"Movie.2020/movie.mkv": "M"})
    w.torrent("a" * 40, P + "/movies", ["Movie.2020/movie.mkv"])
    w.file(LIB + "/Movie (2020)/Movie (2020).mkv", "M")  # a copy (other inode) on the primary pool
    g = only(plan(w))
    assert g.action == "promote" and g.bytes_to_copy == 0
    link = next(s for s in g.steps if s.kind == "link")
    assert link.args == {
        "src": LIB + "/Movie (2020)/Movie (2020).mkv",
        "dst": S + "/movies/Movie.2020/movie.mkv",
        "size": 1000,
        "blake3": link.args["blake3"],
    }
    assert next(s for s in g.steps if s.kind == "delete").args["path"] == P + "/movies/Movie.2020/movie.mkv"


def test_promote_copies_small_extras_within_allowance_only():
    w = World()
    w.payload(P + "/m", {"Movie/movie.mkv": "M"}, size=10**9)
    w.payload(P + "/m", {"Movie/movie.nfo": "N"}, size=2000)
    w.torrent("a" * 40, P + "/m", ["Movie/movie.mkv", "Movie/movie.nfo"])
    w.file(LIB + "/Movie/Movie.mkv", "M", size=10**9)
    g = only(plan(w))
    assert g.action == "promote" and g.bytes_to_copy == 2000
    tight = replace(POLICY, promote_copy_max_bytes=1000)
    g = only(plan(w, tight))
    assert g.action == "stay" and "reported, not promoted" in g.reason


def _unhashed(snap, w: World, paths, at_copy: bool):
    """``snap`` with the inodes of ``paths`` not hashed (a hash budget spent, or hash_at_copy)."""
    keys = {w.paths[p] for p in paths}
    inodes = {k: replace(i, blake3=None) if k in keys else i for k, i in snap.inodes.items()}
    content = {c: ks for c, ks in snap.content.items() if not keys & set(ks)}
    return replace(snap, inodes=inodes, content=content, hash_at_copy=frozenset(keys) if at_copy else frozenset())


def test_a_demote_reason_counts_each_unhashed_file_as_its_own_content():
    # Files left to the copy's hash (hash_at_copy) all had content None: two counted as one.
    w = World()
    w.payload(S + "/m", {"Movie/m.mkv": "M", "Movie/x1.mkv": "X1", "Movie/x2.mkv": "X2"})
    w.torrent("a" * 40, S + "/m", ["Movie/m.mkv", "Movie/x1.mkv", "Movie/x2.mkv"])
    w.payload(P + "/dl", {"B/b.mkv": "M"})
    w.torrent("b" * 40, P + "/dl", ["B/b.mkv"], tags=set())
    snap = _unhashed(w.snapshot(), w, [S + "/m/Movie/x1.mkv", S + "/m/Movie/x2.mkv"], at_copy=True)
    g = next(g for g in make_plan(snap, POLICY).groups if "a" * 40 in g.torrents)
    assert g.action == "demote" and g.bytes_to_copy == 2000, g.reason
    assert g.reason.endswith("1 of 3 contents already on pool"), g.reason


def test_a_promote_reason_counts_every_unhashed_extra_it_would_copy():
    w = World()
    w.payload(P + "/m", {"Movie/movie.mkv": "M"}, size=10**9)
    w.payload(P + "/m", {"Movie/e1.nfo": "E1", "Movie/e2.nfo": "E2"}, size=3000)
    w.torrent("a" * 40, P + "/m", ["Movie/movie.mkv", "Movie/e1.nfo", "Movie/e2.nfo"])
    w.file(LIB + "/Movie/Movie.mkv", "M", size=10**9)
    snap = _unhashed(w.snapshot(), w, [P + "/m/Movie/e1.nfo", P + "/m/Movie/e2.nfo"], at_copy=False)
    g = only(make_plan(snap, replace(POLICY, promote_copy_max_bytes=1000)))
    assert g.action == "stay" and g.reason.startswith("5.9 KiB of this payload is not on stash"), g.reason


def test_no_promote_when_library_is_on_a_nested_dataset():
    w = World()
    w.payload(P + "/m", {"Movie/movie.mkv": "M"})
    w.torrent("a" * 40, P + "/m", ["Movie/movie.mkv"])
    w.file("/stash/data/media/nested/Movie.mkv", "M")  # other dataset: cannot be hardlinked from seeding root
    g = only(plan(w))
    assert g.action == "stay" and "seed-only" in g.reason


def test_seed_only_on_cold_stays():
    w = World()
    w.payload(P + "/m", {"a.bin": "A"})
    w.torrent("a" * 40, P + "/m", ["a.bin"])
    assert only(plan(w)).action == "stay"


def test_policy_tag_required():
    w = World()
    w.payload(S + "/m", {"a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["a.bin"], tags=set())
    g = only(plan(w))
    assert g.action == "stay" and "~noHL" in g.reason
    assert only(plan(w, replace(POLICY, demote_require_tag=None))).action == "demote"


def test_policy_categories_and_age():
    w = World()
    w.payload(S + "/m", {"a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["a.bin"], category="tv", completion_on=999_990.0)
    assert "category" in only(plan(w, replace(POLICY, demote_categories=("movies",)))).reason
    assert "completed less than" in only(plan(w, replace(POLICY, min_seeding_age=3600))).reason
    assert only(plan(w, replace(POLICY, min_seeding_age=5))).action == "demote"


def test_duplicate_of_a_library_file_on_stash_is_not_demoted():
    w = World()
    w.payload(S + "/m", {"a.mkv": "A"})
    w.torrent("a" * 40, S + "/m", ["a.mkv"])
    w.file(LIB + "/A/A.mkv", "A")  # same content, separate inode, used by the library
    g = only(plan(w))
    # Not demoted: converged onto the library's inode instead (tests/unit/test_converge.py), then it stays.
    assert g.action == "converge" and "used by a library" in g.reason and g.bytes_to_copy == 0
    assert [s.args["keep"]["path"] for s in g.steps] == [LIB + "/A/A.mkv"]


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"progress": 0.5}, "incomplete"),
        ({"state": "checkingUP"}, "state checkingUP"),
        ({"state": "moving"}, "state moving"),
        ({"download_path": "/stash/data/media/torrents/incomplete"}, "download path"),
    ],
)
def test_blocked_torrent_states(kw, words):
    w = World()
    w.payload(S + "/m", {"a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["a.bin"], **kw)
    g = only(plan(w))
    assert g.action == "blocked" and words in g.reason and not g.steps


def test_an_atm_torrent_is_not_blocked_by_its_categorys_incomplete_folder():
    """Under ATM qBittorrent reports the category's download path ("Keep incomplete torrents in")
    and ignores setDownloadPath: no one can clear it, so blocking on it blocked every ATM torrent
    for good. The executor turns ATM off, then clears it. Set on a non-ATM torrent, it still blocks."""
    incomplete = "/stash/data/media/torrents/incomplete/movies"
    w = World()
    w.payload(S + "/m", {"a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["a.bin"], auto_tmm=True, download_path=incomplete)
    assert only(plan(w)).action == "demote"
    w = World()
    w.payload(S + "/m", {"a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["a.bin"], auto_tmm=True, download_path=incomplete, progress=0.5)
    assert only(plan(w)).action == "blocked"  # incomplete: its data is in that folder


def test_blocked_missing_file_and_partial_and_unhashed():
    w = World()
    w.payload(S + "/m", {"a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["a.bin", "missing.bin"])
    g = only(plan(w))
    assert g.action == "blocked" and "missing file" in g.reason
    w = World()
    w.payload(S + "/m", {"a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["a.bin"], priority=0)
    assert "every file is skipped (priority 0)" in only(plan(w)).reason
    w = World(hashed=False)
    w.payload(S + "/m", {"a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["a.bin"])
    assert "not hashed" in only(plan(w)).reason


def test_partial_torrent_demotes_with_only_its_wanted_files():
    w = World()
    w.payload(S + "/m", {"Show/e1.mkv": "A", "Show/e2.mkv": "B"})
    # e3 is skipped (priority 0) and was never downloaded: nothing at its path
    w.torrent("a" * 40, S + "/m", ["Show/e1.mkv", "Show/e2.mkv", "Show/e3.mkv"], skipped=["Show/e3.mkv"])
    g = only(plan(w))
    assert g.action == "demote", g.reason
    assert "moves only the wanted files (1 skipped at priority 0" in g.reason
    made = [s.dst for s in g.steps if s.kind in ("copy", "link", "mkempty")]
    assert made == [P + "/m/Show/e1.mkv", P + "/m/Show/e2.mkv"]
    (view,) = [s for s in g.steps if s.kind == "verify_view"]
    assert [f.path for f in view.files] == made  # the skipped file is not required at the destination
    deleted = [s.path for s in g.steps if s.kind == "delete"]
    assert deleted == [S + "/m/Show/e1.mkv", S + "/m/Show/e2.mkv"]  # nothing of the skipped file is deleted
    (reloc,) = [s for s in g.steps if s.kind == "relocate"]
    assert reloc.size == 2000 and g.bytes_to_copy == 2000 and g.bytes_freed == 2000


def test_partial_torrent_with_bytes_of_a_skipped_file_at_the_source_is_blocked():
    w = World()
    w.payload(S + "/m", {"Show/e1.mkv": "A", "Show/e3.mkv": "C"})
    w.torrent("a" * 40, S + "/m", ["Show/e1.mkv", "Show/e3.mkv"], skipped=["Show/e3.mkv"])
    g = only(plan(w))
    assert g.action == "blocked" and "skipped file (priority 0) has data at the source" in g.reason
    assert S + "/m/Show/e3.mkv" in g.reason and not g.steps


def test_blocked_outside_seeding_roots():
    w = World()
    w.payload("/stash/data/media/downloads", {"a.bin": "A"})
    w.torrent("a" * 40, "/stash/data/media/downloads", ["a.bin"])
    g = only(plan(w))
    assert g.action == "blocked" and "outside every seeding root" in g.reason


def test_blocked_conflict_at_destination():
    w = World()
    w.payload(S + "/m", {"Movie/a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["Movie/a.bin"])
    w.file(P + "/m/Movie/a.bin", "DIFFERENT")
    g = only(plan(w))
    assert g.action == "blocked" and "different content already at destination" in g.reason


def test_identical_file_at_destination_is_reused():
    w = World()
    w.payload(S + "/m", {"Movie/a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["Movie/a.bin"])
    w.file(P + "/m/Movie/a.bin", "A")  # a previous interrupted run left it
    g = only(plan(w))
    assert g.action == "demote" and g.bytes_to_copy == 0 and "link" not in kinds(g) and "copy" not in kinds(g)


def test_blocked_not_enough_space_counts_each_inode_once():
    w = World()
    w.payload(S + "/m", {"a.bin": "A"}, size=600)
    w.link(S + "/m/a.bin", S + "/x/a.bin")
    w.torrent("a" * 40, S + "/m", ["a.bin"])
    w.torrent("b" * 40, S + "/x", ["a.bin"])
    w.free["pool"] = 1000
    assert only(plan(w)).action == "demote"  # 600 bytes once, not twice
    w.free["pool"] = 500
    g = only(plan(w))
    assert g.action == "blocked" and "free space" in g.reason


def test_zero_length_files_are_made_not_linked():
    w = World()
    w.payload(S + "/m", {"T/a.bin": "A"})
    w.payload(S + "/m", {"T/empty": ""}, size=0)
    w.torrent("a" * 40, S + "/m", ["T/a.bin", "T/empty"])
    g = only(plan(w))
    assert g.action == "demote"
    assert [s.args["dst"] for s in g.steps if s.kind == "mkempty"] == [P + "/m/T/empty"]


def test_groups_join_through_shared_paths_and_inodes_and_stay_together():
    w = World()
    w.payload(S + "/m", {"a.bin": "A", "b.bin": "B"})
    w.link(S + "/m/b.bin", S + "/y/b.bin")
    w.link(S + "/y/b.bin", LIB + "/b.bin")  # library link through a sibling
    w.torrent("a" * 40, S + "/m", ["a.bin"])
    w.torrent("b" * 40, S + "/m", ["a.bin", "b.bin"])  # shares a path with a
    w.torrent("c" * 40, S + "/y", ["b.bin"])  # shares an inode with b
    g = only(plan(w))
    assert sorted(g.torrents) == ["a" * 40, "b" * 40, "c" * 40]
    assert g.action == "stay"  # one library link keeps the whole group


def test_batch_cap_skips_the_rest():
    w = World()
    for i in range(3):
        w.payload(S + f"/m{i}", {"a.bin": f"A{i}"})
        w.torrent(f"{i}" * 40, S + f"/m{i}", ["a.bin"])
    p = plan(w, replace(POLICY, max_groups_per_run=2))
    assert [g.action for g in p.groups] == ["demote", "demote", "skip"]


@pytest.mark.parametrize("bits", [8, 1 << 23])
def test_one_copy_per_run_is_exact_whatever_the_prefilter_bitmap_shares(monkeypatch, bits):
    """_copied_once's bitmaps only choose which keys the exact map checks: with 8 bits, 20
    contents must share bits (pigeonhole), and still only the second group of the one content two
    groups hold waits; different contents never do."""
    from qbhook.decide import planner

    monkeypatch.setattr(planner, "_COPY_BITS", bits)
    w = World()
    contents = ["X", "X"] + [f"C{k}" for k in range(18)]
    for k, content in enumerate(contents):
        w.payload(S + f"/{k}", {f"R{k}/f.mkv": content})
        w.torrent(f"{k:040x}", S + f"/{k}", [f"R{k}/f.mkv"])
    p = plan(w)
    actions = {int(g.torrents[0], 16): g.action for g in p.groups}
    assert sorted(actions.values()) == ["demote"] * 19 + ["skip"], actions
    assert {k for k, a in actions.items() if a == "skip"} <= {0, 1}
    assert p.summary()["bytes_to_copy"] == 19 * 1000


def test_two_groups_of_one_content_copy_it_to_the_pool_once_per_run():
    # a release downloaded twice (a re-grab beside the first: other inodes, no shared path) is two
    # groups; both demoting in one run copied it twice (scenario seed 9): the later one waits
    w = World()
    w.payload(S + "/tv", {"Show/e1.mkv": "E1", "Show/e2.mkv": "E2"})
    w.torrent("a" * 40, S + "/tv", ["Show/e1.mkv", "Show/e2.mkv"])
    w.payload(S + "/movies", {"Show.RE/e1.mkv": "E1", "Show.RE/e2.mkv": "E2"})
    w.torrent("b" * 40, S + "/movies", ["Show.RE/e1.mkv", "Show.RE/e2.mkv"])
    w.payload(S + "/other", {"Other/o.mkv": "O"})  # another content demotes beside them
    w.torrent("c" * 40, S + "/other", ["Other/o.mkv"])
    p = plan(w)
    first, second = (next(g for g in p.groups if h * 40 in g.torrents) for h in "ab")
    other = next(g for g in p.groups if "c" * 40 in g.torrents)
    done, waits = (first, second) if p.groups.index(first) < p.groups.index(second) else (second, first)
    assert done.action == "demote" and kinds(done).count("copy") == 2
    assert waits.action == "skip" and not waits.steps
    assert waits.reason == f"waits for group {done.group_id}, which copies the same content to pool in this run"
    assert other.action == "demote" and kinds(other).count("copy") == 1
    assert p.summary()["bytes_to_copy"] == 3000
    # the next run: the first copy is on the pool, so the waiting group links to it, copying nothing
    for rel, c in (("Show/e1.mkv", "E1"), ("Show/e2.mkv", "E2")):
        w.file(P + "/x/" + rel, c)
    w.torrent("d" * 40, P + "/x", ["Show/e1.mkv", "Show/e2.mkv"], tags=set())
    again = next(g for g in plan(w).groups if "b" * 40 in g.torrents or "a" * 40 in g.torrents)
    assert again.action == "demote" and "copy" not in kinds(again)


def test_plan_is_json_round_trippable():
    from qbhook.decide.plan import Plan

    w = World()
    w.payload(S + "/m", {"a.bin": "A"})
    w.torrent("a" * 40, S + "/m", ["a.bin"])
    p = plan(w)
    assert Plan.from_dict(p.to_dict()).to_dict() == p.to_dict()


def test_tag_maintenance_marks_exactly_the_unlinked_primary_groups():
    from qbhook.decide.planner import tag_changes

    w = World()
    w.payload(S + "/m", {"lib.mkv": "L", "seed.mkv": "S"})
    w.link(S + "/m/lib.mkv", LIB + "/lib.mkv")
    w.torrent("a" * 40, S + "/m", ["lib.mkv"], tags={"~noHL"})  # wrongly tagged: has a library link
    w.torrent("b" * 40, S + "/m", ["seed.mkv"], tags=set())  # seed-only, untagged
    w.payload(P + "/m", {"cold.mkv": "C"})
    w.torrent("c" * 40, P + "/m", ["cold.mkv"], tags=set())  # cold pool: not our business
    policy = replace(POLICY, tag_no_external_links=True)
    snap = w.snapshot()
    p = make_plan(snap, policy)
    assert sorted(tag_changes(snap, p, "~noHL")) == [("default", "a" * 40, "remove"), ("default", "b" * 40, "add")]
    # qbhook's own link facts stand in for the tag: the untagged seed-only group demotes now
    assert next(g for g in p.groups if "b" * 40 in g.torrents).action == "demote"


def test_tag_maintenance_tags_one_infohash_in_each_client():
    """A group names its torrents by hash: keyed by hash alone, the second client's torrent hid the
    first, which was never tagged (R11 #3). A twin on the cold pool is still not our business."""
    from qbhook.decide.planner import tag_changes

    w = World()
    w.payload(S + "/m", {"seed.mkv": "S"})
    w.link(S + "/m/seed.mkv", S + "/rt/seed.mkv")
    w.torrent("a" * 40, S + "/m", ["seed.mkv"], tags=set())
    w.torrent("a" * 40, S + "/rt", ["seed.mkv"], tags=set())
    w.payload(P + "/m", {"seed.mkv": "S"})
    w.torrent("a" * 40, P + "/m", ["seed.mkv"], tags=set())  # a third client's copy on the cold pool
    snap = w.snapshot()
    ts = snap.torrents
    snap = replace(snap, torrents=(ts[0], replace(ts[1], instance="rtorrent"), replace(ts[2], instance="cold")))
    p = make_plan(snap, replace(POLICY, tag_no_external_links=True))
    assert sorted(tag_changes(snap, p, "~noHL")) == [("default", "a" * 40, "add"), ("rtorrent", "a" * 40, "add")]


@pytest.mark.parametrize(
    "spelling", ["//Movie/x.mkv", "/./Movie/x.mkv", "/Movie//x.mkv", "/Movie/x.mkv/", "/Movie/./x.mkv"]
)
def test_second_spelling_of_a_seeding_link_does_not_hide_the_library_link(spelling):
    # Finding 7: an event spelled seeding//Movie/x.mkv got recorded as a second path of the inode;
    # counted as a second seeding link it cancelled the library link and the planner demoted.
    w = World()
    w.payload(S, {"Movie/x.mkv": "M"})
    w.link(S + "/Movie/x.mkv", LIB + "/Movie (2020)/Movie (2020).mkv")
    w.alias(S + "/Movie/x.mkv", S + spelling)
    w.torrent("a" * 40, S, ["Movie/x.mkv"])
    g = only(plan(w))
    assert g.action == "stay" and "Movie (2020).mkv" in g.reason and not g.steps


# A symlink below a pool root, as the snapshot builder reports it. Files under a symlinked folder
# have no inode fact (the builder never stats through one); a symlinked file is not a file either.
@pytest.mark.parametrize(
    "where, link, expect, words",
    [
        ("source folder", S + "/m/Movie", "blocked", "symlink in the source path: " + S + "/m/Movie -> /elsewhere"),
        ("source save path", S + "/m", "blocked", "symlink in the source path: " + S + "/m -> /elsewhere"),
        ("source file", S + "/m/Movie/a.bin", "blocked", "symlink in the source path: " + S + "/m/Movie/a.bin"),
        ("destination folder", P + "/m/Movie", "blocked", "symlink in the destination path: " + P + "/m/Movie"),
        ("destination save path", P + "/m", "blocked", "symlink in the destination path: " + P + "/m -> /elsewhere"),
        ("unrelated folder", S + "/other", "demote", "no links outside the seeding tree"),
        ("unrelated destination", P + "/other", "demote", "no links outside the seeding tree"),
    ],
)
def test_symlink_in_a_torrent_path_blocks_the_group(where, link, expect, words):
    w = World()
    if not link.startswith(S + "/m"):
        w.payload(S + "/m", {"Movie/a.bin": "A"})
    w.symlinks[link] = "/elsewhere"
    w.torrent("a" * 40, S + "/m", ["Movie/a.bin"])
    g = only(plan(w))
    assert g.action == expect and words in g.reason, (where, g.reason)
    if expect == "blocked":
        assert not g.steps and g.blockers[0].startswith("a" * 40 + ": symlink in the ")


def test_symlink_in_a_cold_group_path_blocks_even_a_promote():
    w = World()
    w.payload(P + "/m", {"Movie/a.bin": "A"})
    w.torrent("a" * 40, P + "/m", ["Movie/a.bin"])
    w.file(LIB + "/Movie/Movie.bin", "A")
    assert only(plan(w)).action == "promote"
    w.symlinks[S + "/m"] = "../../elsewhere"
    g = only(plan(w))
    assert g.action == "blocked" and f"symlink in the destination path: {S}/m -> ../../elsewhere" in g.reason


@pytest.mark.parametrize(
    "target, link, rel",
    [
        (S + "/movies", S + "/xseed", "Movie/m.mkv"),  # the save path's folder, absolute
        ("movies", S + "/xseed", "Movie/m.mkv"),  # relative to the link's folder
        (S + "/movies/Movie", S + "/xseed/Film", "Film/m.mkv"),  # a folder below the save path, another name
        ("/data/media/torrents/seeding/movies", S + "/xseed", "Movie/m.mkv"),  # a container's spelling (lesson 5)
        ("?", S + "/xseed", "Movie/m.mkv"),  # unreadable: matched by the path below the link
    ],
)
def test_a_group_another_torrent_reaches_through_a_symlink_does_not_move(target, link, rel):
    """B holds A's files through a symlinked folder: B's files have no inode fact, so B is a group of
    its own (blocked: a symlink in its path), and A's demote deleted B's data with A's links."""
    w = World()
    w.payload(S + "/movies", {"Movie/m.mkv": "M"})
    w.torrent("a" * 40, S + "/movies", ["Movie/m.mkv"])
    w.symlinks[link] = target
    w.torrent("b" * 40, S + "/xseed", [rel])
    p = plan(w)
    ga = next(g for g in p.groups if "a" * 40 in g.torrents)
    gb = next(g for g in p.groups if "b" * 40 in g.torrents)
    assert gb.action == "blocked" and "symlink in the source path" in gb.reason
    assert ga.action == "blocked" and not ga.steps, ga.reason
    assert ga.blockers == [
        f"torrent {'b' * 40} ({'b' * 8}) reaches {S}/movies/Movie/m.mkv through a symlink: {link} -> {target}"
    ]


def test_a_symlink_into_another_folder_does_not_block_the_group():
    w = World()
    w.payload(S + "/movies", {"Movie/m.mkv": "M"})
    w.torrent("a" * 40, S + "/movies", ["Movie/m.mkv"])
    w.symlinks[S + "/xseed"] = S + "/tv"
    w.torrent("b" * 40, S + "/xseed", ["Movie/m.mkv"])
    assert next(g for g in plan(w).groups if "a" * 40 in g.torrents).action == "demote"


S1 = "/stash/data/media/xseed-links"  # a second seeding root on /stash; /pool has one


def _with_second_stash_root(w: World):
    """``w``'s snapshot with ``S1`` a seeding root of /stash too (``map_to_pool`` maps it onto /pool's first)."""
    snap = w.snapshot()
    inodes = {}
    for k, i in snap.inodes.items():
        seeding, other = split_links(i.seeding_paths + i.other_paths, (S, S1, P))
        inodes[k] = replace(i, seeding_paths=seeding, other_paths=other)
    stash = replace(snap.pool("stash"), more_seeding_roots=(S1,))
    return replace(snap, pools=(stash, snap.pool("pool")), inodes=inodes)


def test_two_groups_mapped_onto_one_destination_path_move_one_at_a_time():
    w = World()
    w.payload(S + "/TrackerA", {"Movie/m.mkv": "M1"})
    w.torrent("a" * 40, S + "/TrackerA", ["Movie/m.mkv"])
    w.payload(S1 + "/TrackerA", {"Movie/m.mkv": "M2"})  # other content, the same path below its root
    w.torrent("b" * 40, S1 + "/TrackerA", ["Movie/m.mkv"])
    ga, gb = make_plan(_with_second_stash_root(w), POLICY).groups
    assert ga.action == "demote"
    assert [s.args["dst"] for s in ga.steps if s.kind == "copy"] == [P + "/TrackerA/Movie/m.mkv"]
    assert gb.action == "skip" and not gb.steps
    assert gb.reason == f"waits for group {ga.group_id}, which writes the same destination path in this run"


def test_destination_symlink_does_not_block_a_group_that_stays():
    w = World()
    w.payload(S + "/m", {"Movie/a.bin": "A"})
    w.link(S + "/m/Movie/a.bin", LIB + "/Movie/Movie.bin")
    w.torrent("a" * 40, S + "/m", ["Movie/a.bin"])
    w.symlinks[P + "/m"] = "/elsewhere"
    g = only(plan(w))
    assert g.action == "stay" and "Movie.bin" in g.reason


# -- incidental files (decide.facts.incidental_below): a coincidence of bytes never ties two payloads


MOVIE = 2 << 20  # a payload's big file, over facts.INCIDENTAL_BYTES


def _release(w: World, h: str, name: str, movie: str, txt_size: int = 30) -> None:
    w.file(f"{S}/{name}/{name}.mkv", movie, MOVIE)
    w.file(f"{S}/{name}/RARBG.txt", "RARBG", txt_size)
    w.torrent(h, S, [f"{name}/{name}.mkv", f"{name}/RARBG.txt"])


def test_a_seed_only_payload_whose_tracker_txt_a_library_also_holds_demotes():
    """Its 30-byte RARBG.txt equals a library's: the 2 MiB payload stayed on /stash ("same content is
    used by a library"), and was then converged onto the library's .txt, staying for good."""
    w = World()
    _release(w, "c" * 40, "C", "movie-C")
    w.file(LIB + "/D/RARBG.txt", "RARBG", 30)
    g = only(plan(w))
    assert g.action == "demote", g.reason
    assert not any(s.kind == "converge" for s in g.steps)


def test_a_seed_only_payload_is_not_joined_to_a_library_linked_one_by_its_txt():
    w = World()
    _release(w, "c" * 40, "C", "movie-C")
    _release(w, "d" * 40, "D", "movie-D")
    w.link(f"{S}/D/D.mkv", LIB + "/D/D.mkv")  # D's payload is a library's
    p = plan(w)
    by = {g.torrents[0]: g for g in p.groups}
    assert len(p.groups) == 2 and by["c" * 40].action == "demote", by["c" * 40].reason
    assert by["d" * 40].action in ("stay", "converge")
    for g in p.groups:  # no step relinks or links one payload's file to the other's inode
        assert all(not (s.kind == "converge" and "RARBG" in s.args["path"]) for s in g.steps)


def test_a_demote_copies_an_incidental_file_a_foreign_payload_holds_on_the_cold_pool():
    """Linked from E's RARBG.txt on /pool, C and E became one group: E could never be promoted alone."""
    w = World()
    _release(w, "c" * 40, "C", "movie-C")
    w.file(f"{P}/E/E.mkv", "movie-E", MOVIE)
    w.file(f"{P}/E/RARBG.txt", "RARBG", 30)
    w.torrent("e" * 40, P, ["E/E.mkv", "E/RARBG.txt"])
    p = plan(w)
    c = next(g for g in p.groups if "c" * 40 in g.torrents)
    assert c.action == "demote", c.reason
    assert not any(s.kind == "link" and s.args["src"].startswith(P + "/E/") for s in c.steps)
    assert any(s.kind == "copy" and s.args["dst"].endswith("/C/RARBG.txt") for s in c.steps)


def test_a_file_that_is_most_of_its_payload_is_never_incidental_however_small():
    w = World()
    w.file(S + "/m/a.nfo", "N", 300)  # a 300-byte payload of one file
    w.torrent("a" * 40, S + "/m", ["a.nfo"])
    w.file(LIB + "/A/a.nfo", "N", 300)
    g = only(plan(w))
    assert g.action == "converge" and [s.args["keep"]["path"] for s in g.steps] == [LIB + "/A/a.nfo"]


def test_the_small_files_of_a_payload_already_on_the_target_follow_its_big_ones():
    """A second download of a release A seeds on /pool: its big file ties it to A's copy, and its
    RARBG.txt is linked from A's too. Copied instead, the one group of the next plan held two inodes
    of one content and converged them then: a plan that was not done after its apply (seen in
    tests/integration/test_world_scenarios.py, seed 2)."""
    w = World()
    _release(w, "b" * 40, "B", "movie-A")
    w.file(f"{P}/A/A.mkv", "movie-A", MOVIE)
    w.file(f"{P}/A/RARBG.txt", "RARBG", 30)
    w.torrent("a" * 40, P, ["A/A.mkv", "A/RARBG.txt"])
    b = next(g for g in plan(w).groups if "b" * 40 in g.torrents)
    assert b.action == "demote" and b.bytes_to_copy == 0, b.reason
    assert sorted(s.args["src"] for s in b.steps if s.kind == "link") == [f"{P}/A/A.mkv", f"{P}/A/RARBG.txt"]


def test_a_converge_onto_another_payload_takes_the_small_files_along():
    """A library-linked payload B and a second download C of it on /stash: C's movie converges onto
    B's inode, and so does its .txt (incidental alone, it would wait for the next plan)."""
    w = World()
    _release(w, "b" * 40, "B", "movie-B")
    w.link(f"{S}/B/B.mkv", LIB + "/B/B.mkv")
    _release(w, "c" * 40, "C", "movie-B")  # seed-only, its movie a library's: it stays and converges
    p = plan(w)
    kept = {s.args["path"]: s.args["keep"]["path"] for g in p.groups for s in g.steps if s.kind == "converge"}
    assert kept == {f"{S}/C/C.mkv": f"{S}/B/B.mkv", f"{S}/C/RARBG.txt": f"{S}/B/RARBG.txt"}, kept


def test_a_file_symlink_in_a_containers_spelling_blocks_only_the_file_it_names():
    """cross-seed's `linkType: symlink` in a container links each file to `/data/...`, which the host
    cannot resolve: matched by the target's file name alone, it blocked every group holding a
    RARBG.txt of its own (helper review of 6117183). Folder and name, and the size, must agree."""
    w = World()
    w.payload(S + "/movies", {"Movie/RARBG.txt": "R"})
    w.torrent("a" * 40, S + "/movies", ["Movie/RARBG.txt"])
    w.payload(S + "/other", {"Other/RARBG.txt": "R2"})
    w.torrent("c" * 40, S + "/other", ["Other/RARBG.txt"])
    w.symlinks[S + "/xseed/Movie/RARBG.txt"] = "/data/media/torrents/seeding/movies/Movie/RARBG.txt"
    w.torrent("b" * 40, S + "/xseed", ["Movie/RARBG.txt"])
    p = plan(w)
    by = {g.torrents[0]: g for g in p.groups}
    assert by["c" * 40].action == "demote", by["c" * 40].reason
    assert by["a" * 40].action == "blocked" and "reaches" in by["a" * 40].reason


def test_a_tied_payload_s_small_files_go_to_the_party_it_is_tied_to_not_to_a_third():
    """G's movie converges onto a library's copy (tied), and its RARBG.txt then converged onto the
    best-linked copy of those bytes: seed-only H's. G and H became one library-linked group, and H
    could never demote (helper review of ad31988)."""
    w = World()
    _release(w, "g" * 40, "G", "movie-G")
    w.file(LIB + "/G/G.mkv", "movie-G", MOVIE)  # the *arr copied G's movie, not its .txt
    _release(w, "h" * 40, "H", "movie-H")
    w.link(f"{S}/H/RARBG.txt", f"{S}/H-extra/RARBG.txt")  # H's .txt has the most links: the keeper
    w.torrent("i" * 40, f"{S}/H-extra", ["RARBG.txt"])  # listed (an unlisted link keeps H: R44)
    p = plan(w)
    by = {g.torrents[0]: g for g in p.groups}
    assert by["h" * 40].action == "demote", by["h" * 40].reason
    steps = [s for g in p.groups for s in g.steps if s.kind == "converge"]
    assert [(s.args["path"], s.args["keep"]["path"]) for s in steps] == [(f"{S}/G/G.mkv", LIB + "/G/G.mkv")]


def test_a_pack_of_small_files_is_its_own_payload_and_promotes():
    """Five 500 KiB files: each under 1 MiB and under half the payload, so each was incidental and
    nothing tied the pack to the library's copy of it: it never promoted."""
    w = World()
    files = {f"Pack/p{i}.epub": f"E{i}" for i in range(5)}
    for rel, content in files.items():
        w.file(f"{P}/{rel}", content, 500 << 10)
        w.file(f"{LIB}/Pack/{posixpath.basename(rel)}", content, 500 << 10)
    w.torrent("e" * 40, P, list(files))
    g = only(plan(w))
    assert g.action == "promote", g.reason


def test_a_waiting_big_file_ties_nothing():
    """C's movie would converge onto B's library-linked inode, but C is still checking, so it waits:
    C's RARBG.txt must not go ahead and tie C to B on its own (helper review of ad31988)."""
    w = World()
    w.file(f"{S}/C/C.mkv", "movie-B", MOVIE)
    w.file(f"{S}/C/RARBG.txt", "RARBG", 30)
    w.torrent("c" * 40, S, ["C/C.mkv", "C/RARBG.txt"], state="checkingUP")
    _release(w, "b" * 40, "B", "movie-B")
    w.link(f"{S}/B/B.mkv", LIB + "/B/B.mkv")
    p = plan(w)
    assert not [s.args["path"] for g in p.groups for s in g.steps if s.kind == "converge"]
