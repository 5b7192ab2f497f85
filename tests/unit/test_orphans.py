"""The pure orphan decision (qbhook.move.orphans.decide / check_guards) over made-up walks and listings."""

import pytest

from qbhook.errors import ExitCode, OrphansRefused
from qbhook.move.orphans import (
    LIBRARY,
    RECLAIMABLE,
    Entry,
    References,
    Walk,
    check_guards,
    decide,
)

R = "/stash/seed"
NOW = 1_000_000.0
OLD = int((NOW - 3600) * 1e9)


def e(rel, ino, size=100, nlink=1, age_ns=OLD, dev=1, pool="stash", root=R):
    return Entry(f"{root}/{rel}", pool, root, dev, ino, size, nlink, age_ns, age_ns)


def refs(files=(), protected=(), torrents=1):
    return References(frozenset(f"{R}/{f}" for f in files), tuple(f"{R}/{p}" for p in protected), torrents)


def run(entries, r, settle=60):
    return decide(Walk(tuple(entries)), r, now=NOW, settle_seconds=settle)


def test_unreferenced_files_are_orphans_and_referenced_ones_are_not():
    rep = run(
        [e("movies/A/a.mkv", 1), e("movies/A/a.nfo", 2), e("movies/A/extra.txt", 3, size=7)],
        refs(files=["movies/A/a.mkv", "movies/A/a.nfo"]),
    )
    assert [(o.path, o.kind, o.frees) for o in rep.orphans] == [(f"{R}/movies/A/extra.txt", RECLAIMABLE, 7)]
    # the folder also holds referenced files: the item is the file, not the folder
    assert [(i.path, i.folder) for i in rep.items] == [(f"{R}/movies/A/extra.txt", False)]
    assert rep.counts == {"referenced": 2, "reclaimable": 1}


def test_a_folder_of_orphans_is_one_item_with_totals():
    rep = run([e("old/X/1.mkv", 1, 10), e("old/X/2.mkv", 2, 20), e("tv/S/e.mkv", 3)], refs(files=["tv/S/e.mkv"]))
    assert [(i.path, i.folder, i.files, i.bytes, i.frees) for i in rep.items] == [(f"{R}/old", True, 2, 30, 30)]


def test_link_outside_the_roots_is_library_and_frees_nothing():
    rep = run([e("old/lib.mkv", 1, 50, nlink=2)], refs())
    (o,) = rep.orphans
    assert o.kind == LIBRARY and o.frees == 0 and rep.pools["stash"].library_bytes == 50
    assert rep.pools["stash"].reclaimable_bytes == 0


def test_orphan_sharing_an_inode_with_a_torrent_file_is_reclaimable_but_frees_nothing():
    rep = run(
        [e("movies/A/a.mkv", 1, 50, nlink=2), e("stray/a-copy.mkv", 1, 50, nlink=2)], refs(files=["movies/A/a.mkv"])
    )
    (o,) = rep.orphans
    assert o.kind == RECLAIMABLE and o.frees == 0


def test_two_orphan_links_of_one_inode_free_its_size_once():
    rep = run([e("x/a", 1, 50, nlink=2), e("x/b", 1, 50, nlink=2)], refs())
    assert sum(o.frees for o in rep.orphans) == 50 and rep.pools["stash"].orphan_bytes == 50


def test_never_orphans_part_files_incomplete_torrents_young_files():
    entries = [
        e("dl/Show/e1.mkv.!qB", 1),
        e("dl/Show/e2.mkv", 2),
        e("inc/Movie/m.mkv", 3),
        e("new.mkv", 4, age_ns=int((NOW - 5) * 1e9)),
        e("temp/x.bin", 5),
    ]
    rep = run(entries, refs(protected=["inc/Movie", "temp"]))
    assert [o.path for o in rep.orphans] == [f"{R}/dl/Show/e2.mkv"]
    assert rep.counts["protected"] == 3 and rep.counts["young"] == 1


def test_a_leftover_view_the_journal_tracks_is_never_an_orphan():
    r = References(frozenset(), (), 1, leftovers=frozenset({f"{R}/Movie/view.mkv"}))
    rep = run([e("Movie/view.mkv", 1), e("Movie/stray.nfo", 2)], r)
    assert [o.path for o in rep.orphans] == [f"{R}/Movie/stray.nfo"] and rep.counts["leftover"] == 1
    assert [i.path for i in rep.items] == [f"{R}/Movie/stray.nfo"]  # not the folder: the view is no orphan


def test_libtorrents_part_file_is_never_an_orphan():
    """``.<infohash>.parts`` in the save path holds the pieces of skipped files (a partial
    cross-seed): lost, the torrent cannot complete. Only that exact name is protected."""
    v1, v2 = "ab" * 20, "cd" * 32
    entries = [
        e(f"tv/.{v1}.parts", 1),
        e(f"tv/.{v2}.parts", 2),
        e("tv/.abc.parts", 3),
        e(f"tv/{v1}.parts", 4),
        e(f"tv/.{v1}.parts.bak", 5),
    ]
    rep = run(entries, refs())
    assert {o.path for o in rep.orphans} == {f"{R}/tv/.abc.parts", f"{R}/tv/{v1}.parts", f"{R}/tv/.{v1}.parts.bak"}
    assert rep.counts["protected"] == 2


def test_ctime_counts_as_young_too():
    # linked into place a second ago with an old mtime: not settled
    rep = run([Entry(f"{R}/a", "stash", R, 1, 1, 10, 1, OLD, int((NOW - 1) * 1e9))], refs())
    assert rep.orphans == [] and rep.counts == {"young": 1}


def test_guard_no_torrents_refuses():
    rep = run([e("a", 1)], refs(torrents=0))
    with pytest.raises(OrphansRefused) as ei:
        check_guards(rep, 0.2)
    assert "no torrents" in ei.value.message and ei.value.exit_code == ExitCode.GUARD_REFUSED


def test_guard_share_of_a_pool_refuses_above_and_passes_at_the_limit():
    entries = [e("ref", 1, 80), e("orphan", 2, 20)]
    rep = run(entries, refs(files=["ref"]))
    check_guards(rep, 0.2)  # exactly 20%: allowed
    with pytest.raises(OrphansRefused) as ei:
        check_guards(rep, 0.19)
    assert "pool stash" in ei.value.message and "orphans_max_share" in ei.value.message
    assert "\n" not in ei.value.message


def test_guard_counts_library_orphans_too():
    # a wrong path_map makes library-linked seed data look orphaned just the same
    rep = run([e("a", 1, 100, nlink=2)], refs(files=["other"]))
    with pytest.raises(OrphansRefused):
        check_guards(rep, 0.5)


def test_guard_a_torrent_being_moved_refuses():
    rep = decide(Walk((e("a", 1),)), References(frozenset(), (), 1, ("Show.S01",)), now=NOW, settle_seconds=0)
    with pytest.raises(OrphansRefused, match="being moved"):
        check_guards(rep, 1.0)


def _listing(name, prefix, n):
    """A client (``references``) listing ``n`` complete torrents saved at ``prefix``, one file each."""
    from qbhook.clients.model import TorrentFile, TorrentInfo
    from qbhook.pathmap import PathMap

    def torrent(i):
        h = f"{name}{i}".encode().hex().ljust(40, "0")[:40]
        info = TorrentInfo(
            instance=name, hash=h, infohash_v1=h, infohash_v2=None, name=f"{name}{i}", save_path=prefix,
            download_path="", content_path=f"{prefix}/{name}{i}", root_path=f"{prefix}/{name}{i}",
            client_save_path="/data", client_content_path=f"/data/{name}{i}", auto_tmm=False, category="",
            tags=frozenset(), state="stalledUP", raw_state="stalledUP", progress=1.0, amount_left=0, size=100,
            total_size=100, has_metadata=True, added_on=None, completion_on=None,
        )  # fmt: skip
        return info, [TorrentFile(index=0, name=f"{name}{i}/f.mkv", size=100, progress=1.0, priority=1)]

    class Client:
        def __init__(self):
            self.name, self.path_map = name, PathMap([("/data", prefix)])

        def torrents_with_files(self):
            return [torrent(i) for i in range(n)]

    return Client()


def test_guard_a_client_whose_files_the_walk_never_met_refuses_below_the_share():
    """A second client holding 15 % of the pool, its path_map off by a folder: all its files are
    where the walk did not look, and its real data (15 %, under the share) looked orphaned."""
    from qbhook.move.orphans import references

    main, xseed = _listing("main", f"{R}/main", 85), _listing("xs", R, 15)  # its data is in {R}/xseed
    entries = [e(f"main/main{i}/f.mkv", i) for i in range(85)] + [e(f"xseed/xs{i}/f.mkv", 100 + i) for i in range(15)]
    rep = run(entries, references([main, xseed]))
    with pytest.raises(OrphansRefused) as ei:
        check_guards(rep, 0.2)
    msg = ei.value.message
    assert "client xs" in msg and f"/data -> {R}" in msg and "0 of the 15" in msg and "\n" not in msg, msg
    assert ei.value.exit_code == ExitCode.GUARD_REFUSED
    # its map right: the same walk passes
    check_guards(run(entries, references([main, _listing("xs", f"{R}/xseed", 15)])), 0.2)


def test_guard_a_client_missing_a_few_files_or_seeding_through_symlinks_passes():
    from qbhook.move.orphans import references

    # 10 torrents, 4 of their files gone (a person deleted them): 6 of 10 met, over half
    some = [e(f"a/a{i}/f.mkv", i) for i in range(6)]
    check_guards(run(some, references([_listing("a", f"{R}/a", 10)])), 1.0)
    rep = run(some[:4], references([_listing("a", f"{R}/a", 10)]))
    with pytest.raises(OrphansRefused, match="4 of the 10"):
        check_guards(rep, 1.0)
    # cross-seed's symlink mode: every file a symlink, which the walk does not enter but met
    linked = decide(
        Walk((e("main", 1),), skipped=tuple(f"{R}/l/l{i}/f.mkv" for i in range(3)) + (f"{R}/l/l3",)),
        references([_listing("l", f"{R}/l", 4)]),
        now=NOW,
        settle_seconds=60,
    )
    check_guards(linked, 1.0)
    # a client whose torrents are saved outside every seeding root is not this guard's
    check_guards(run([e("x", 1)], references([_listing("o", "/elsewhere", 5)])), 1.0)
