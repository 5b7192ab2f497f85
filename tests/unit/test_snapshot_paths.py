"""Path hygiene of the snapshot builder and the worker on real directories (issue 9).

A symlink below a pool root must never let a fact about somewhere else into a
decision, and one file spelled two ways must stay one link.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from types import SimpleNamespace

import pytest

from qbhook.catalog.fsid import MARKER_NAME
from qbhook.catalog.indexer import snapshot_view, sync_client
from qbhook.catalog.scan import scan_pools
from qbhook.catalog.store import Catalog
from qbhook.config import ScanConfig
from qbhook.decide import snapshot as snapshot_mod
from qbhook.decide.planner import make_plan
from qbhook.decide.snapshot import SnapshotBuilder, SweepReach, build_snapshot
from qbhook.dirfd import FolderReader
from qbhook.errors import FilesystemIdError
from qbhook.events._arr import parse_arr
from qbhook.events.worker import handle_job, torrents_touching
from qbhook.move import fsops
from tests.helpers import make_config, write
from tests.mountns import bind, own_mounts
from tests.swap import swap_after_first_look
from tests.unit.events.conftest import FIXTURES
from tests.unit.test_executor import FakeQbt, FakeTorrent

H = "a" * 40
H2 = "b" * 40
H3 = "c" * 40


@pytest.fixture
def bed(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool)
    seed_s, seed_p = cfg.primary.seeding_root, cfg.cold.seeding_root
    seed_p.mkdir(parents=True)
    seed_s.mkdir(parents=True)
    cat = Catalog.open(cfg.catalog)
    qbt = FakeQbt()
    yield SimpleNamespace(
        cfg=cfg,
        cat=cat,
        qbt=qbt,
        stash=stash,
        pool=pool,
        seed_s=seed_s,
        seed_p=seed_p,
        lib=stash / "media/movies",
        outside=tmp_path / "outside",
    )
    cat.close()


def torrent(bed, h, save, files):
    name = files[0][0].split("/")[0]  # qBittorrent's content path is save path + this
    bed.qbt.add(FakeTorrent(h, name, str(save), [(rel, size, 1) for rel, size in files], tags={"~noHL"}))


def plan_of(bed, hashes=None):
    snap = build_snapshot(bed.cfg, bed.cat, [bed.qbt], hashes=hashes)
    return snap, make_plan(snap, bed.cfg.policy)


def group(plan, h):
    return next(g for g in plan.groups if h in g.torrents)


def all_catalog_paths(cat) -> list[str]:
    return [os.fsdecode(r[0]) for r in cat.conn.execute("SELECT path FROM paths")]


# --------------------------------------------------------------------------- symlinks block


def test_symlinked_folder_in_the_source_path_blocks_and_nothing_outside_is_read(bed):
    write(bed.outside / "Movie/a.bin", b"outside data")
    (bed.seed_s / "m").mkdir()
    os.symlink(bed.outside / "Movie", bed.seed_s / "m/Movie")
    torrent(bed, H, bed.seed_s / "m", [("Movie/a.bin", 12)])
    snap, plan = plan_of(bed)
    link = f"{bed.seed_s}/m/Movie"
    assert snap.symlinks == {link: str(bed.outside / "Movie")}
    assert snap.torrents[0].files[0].inode is None  # never stat-ed through the link
    g = group(plan, H)
    assert g.action == "blocked" and not g.steps
    assert g.reason.startswith(f"Movie: symlink in the source path: {link} -> {bed.outside / 'Movie'}")
    assert not [p for p in all_catalog_paths(bed.cat) if "outside" in p or "/m/Movie" in p]


def test_symlinked_file_blocks_as_a_symlink_not_as_missing(bed):
    write(bed.outside / "a.bin", b"outside data")
    (bed.seed_s / "m").mkdir()
    os.symlink(bed.outside / "a.bin", bed.seed_s / "m/a.bin")
    torrent(bed, H, bed.seed_s / "m", [("a.bin", 12)])
    _snap, plan = plan_of(bed)
    assert f"symlink in the source path: {bed.seed_s}/m/a.bin" in group(plan, H).reason


def test_symlinked_folder_in_the_destination_path_blocks_the_demote(bed):
    write(bed.seed_s / "d/Show/e.bin", b"episode")
    torrent(bed, H, bed.seed_s / "d", [("Show/e.bin", 7)])
    _snap, plan = plan_of(bed)
    assert group(plan, H).action == "demote"
    write(bed.outside / "Show/e.bin", b"another")  # what the link would make us see "at the destination"
    os.symlink(bed.outside, bed.seed_p / "d")
    snap, plan = plan_of(bed)
    g = group(plan, H)
    assert g.action == "blocked" and not g.steps
    assert f"symlink in the destination path: {bed.seed_p}/d -> {bed.outside}" in g.reason
    assert f"{bed.seed_p}/d/Show/e.bin" not in {p for p, k in snap.existing.items() if k is not None}
    assert not [p for p in all_catalog_paths(bed.cat) if "outside" in p or str(bed.seed_p) in p]


@pytest.mark.parametrize("relative", [False, True])
def test_a_torrent_reaching_a_group_through_a_symlinked_folder_keeps_it_from_moving(bed, relative):
    """B is saved at ``xseed -> movies``: the builder never stats through the link, so B's files
    have no inode and B is a group of its own; A's demote would delete ``movies/Movie/m.mkv``,
    one directory entry (nlink 1), which is B's data too."""
    write(bed.seed_s / "movies/Movie/m.mkv", b"movie")
    os.symlink("movies" if relative else bed.seed_s / "movies", bed.seed_s / "xseed")
    torrent(bed, H, bed.seed_s / "movies", [("Movie/m.mkv", 5)])
    torrent(bed, H2, bed.seed_s / "xseed", [("Movie/m.mkv", 5)])
    _snap, plan = plan_of(bed)
    target = "movies" if relative else bed.seed_s / "movies"
    g = group(plan, H)
    assert g.action == "blocked" and not g.steps
    assert g.blockers == [
        f"torrent Movie ({H2[:8]}) reaches {bed.seed_s}/movies/Movie/m.mkv"
        f" through a symlink: {bed.seed_s}/xseed -> {target}"
    ]
    assert group(plan, H2).action == "blocked"


# --------------------------------------------------------------------------- one link, one spelling


def library_linked_movie(bed):
    movie = write(bed.seed_s / "m/Movie/x.mkv", b"movie bytes")
    os.makedirs(bed.lib / "Movie (2020)")
    os.link(movie, bed.lib / "Movie (2020)/Movie (2020).mkv")
    torrent(bed, H, bed.seed_s / "m", [("Movie/x.mkv", 11)])
    _snap, plan = plan_of(bed)
    assert group(plan, H).action == "stay"
    return movie


@pytest.mark.parametrize("spelling", ["m//Movie/x.mkv", "m/./Movie/x.mkv", "m/Movie//x.mkv"])
def test_a_catalog_alias_spelling_does_not_hide_the_library_link(bed, spelling):
    library_linked_movie(bed)
    bed.cat.record_path(f"{bed.seed_s}/{spelling}", "stash")  # what main's worker recorded for such an event
    bed.cat.record_path(str(bed.lib / "Movie (2020)/Movie (2020).mkv"), "stash")
    _snap, plan = plan_of(bed)
    g = group(plan, H)
    assert g.action == "stay" and "Movie (2020).mkv" in g.reason


def test_a_path_through_a_symlinked_folder_is_not_a_second_link(bed):
    library_linked_movie(bed)
    os.symlink(bed.seed_s / "m", bed.seed_s / "alias")
    bed.cat.record_path(f"{bed.seed_s}/alias/Movie/x.mkv", "stash")
    bed.cat.record_path(str(bed.lib / "Movie (2020)/Movie (2020).mkv"), "stash")
    _snap, plan = plan_of(bed)
    g = group(plan, H)
    assert g.action == "stay" and "Movie (2020).mkv" in g.reason


@own_mounts
def test_one_link_reached_two_ways_by_a_bind_mount_in_the_seeding_root_is_one_link(bed):
    """R32: a bind mount of seeding data inside the seeding root (an export, a container's alias
    folder: same filesystem, so a scan of the pool walks into it) gives the torrent's link a
    second path. Counted as two seeding links, nlink 2 (seeding + library) left no external link:
    the group demoted, and the executor's delete check (entries, not spellings) refused it after
    the whole copy, every sweep again. Counted as entries (``dirfd.entry_key``), it stays."""
    movie = library_linked_movie(bed)
    alias = bed.seed_s / "alias"
    alias.mkdir()
    bind(bed.seed_s / "m", alias)
    bed.cat.record_path(str(alias / "Movie/x.mkv"), "stash")  # what a scan walking into the mount records
    snap, plan = plan_of(bed)
    g = group(plan, H)
    assert g.action == "stay" and not g.steps, g.reason
    fact = next(i for i in snap.inodes.values() if i.ino == os.stat(movie).st_ino)
    assert len(fact.seeding_paths) == 2 and fact.aliases == 1 and fact.external_links == 1, fact
    # the executor's rule, on the same two paths: one entry
    roots = tuple(bed.cfg.anchored_seeding_roots)
    assert fsops._link_entry(str(alias / "Movie/x.mkv"), roots)[0] == fsops._link_entry(movie, roots)[0]


def test_a_cross_seeds_link_of_the_same_name_in_its_own_folder_is_a_link_of_its_own(bed):
    """Two seeding paths of one name in two folders are two entries: the library's link is still
    the one external link, no more (the cross-seed is not taken for an alias of the first)."""
    movie = library_linked_movie(bed)
    xs = bed.seed_s / "xs/Movie/x.mkv"
    os.makedirs(xs.parent)
    os.link(movie, xs)
    torrent(bed, H2, bed.seed_s / "xs", [("Movie/x.mkv", 11)])
    snap, plan = plan_of(bed)
    fact = next(i for i in snap.inodes.values() if i.ino == os.stat(movie).st_ino)
    assert (fact.nlink, len(fact.seeding_paths), fact.aliases, fact.external_links) == (3, 2, 0, 1), fact
    assert group(plan, H).action == "stay"


def test_an_inode_with_one_seeding_path_asks_no_folder_its_identity(bed, monkeypatch):
    """The common case (one seeding link) pays no syscall for the alias count: only an inode with
    two seeding paths of one name asks the folders what they are."""
    asked = []
    real = FolderReader.entry
    monkeypatch.setattr(FolderReader, "entry", lambda self, p: asked.append(p) or real(self, p))
    library_linked_movie(bed)
    write(bed.seed_s / "n/Other/y.mkv", b"other bytes")
    torrent(bed, H2, bed.seed_s / "n", [("Other/y.mkv", 11)])
    plan_of(bed)
    assert asked == []


# --------------------------------------------------------------------------- the worker


def job(*paths):
    return SimpleNamespace(id=1, hashes=(), paths=tuple(paths), truncated=False)


@pytest.mark.parametrize("spelling", ["m//Movie/x.mkv", "m/./Movie/x.mkv", "m/Movie/x.mkv/", "m/Movie//x.mkv"])
def test_event_path_spelled_oddly_is_one_path_and_the_library_file_stays(bed, spelling):
    library_linked_movie(bed)
    bed.cat.record_path(str(bed.lib / "Movie (2020)/Movie (2020).mkv"), "stash")
    result = handle_job(bed.cfg, bed.cat, [bed.qbt], job(f"{bed.seed_s}/{spelling}"))
    assert [g["action"] for g in result["groups"]] == ["stay"], result
    assert "rejected_paths" not in result
    assert sorted(p for p in all_catalog_paths(bed.cat) if "x.mkv" in p) == [f"{bed.seed_s}/m/Movie/x.mkv"]


@pytest.mark.parametrize(
    "raw, words",
    [
        ("{seed}/m/../m/Movie/x.mkv", "'..'"),
        ("{seed}/../../../etc/passwd", "'..'"),
        ("m/Movie/x.mkv", "not an absolute path"),
    ],
)
def test_event_path_with_dotdot_or_relative_is_refused_with_a_reason(bed, raw, words):
    library_linked_movie(bed)
    result = handle_job(bed.cfg, bed.cat, [bed.qbt], job(raw.format(seed=bed.seed_s)))
    assert result["groups"] == [] and len(result["rejected_paths"]) == 1
    assert result["rejected_paths"][0].startswith("event path refused: ") and words in result["rejected_paths"][0]


def test_event_path_through_a_symlinked_folder_is_refused_and_not_recorded(bed, tmp_path):
    write(bed.outside / "Movie/x.mkv", b"not ours")
    os.symlink(bed.outside, bed.seed_s / "via")
    rejected: list[str] = []
    got = torrents_touching(bed.cfg, bed.cat, [], [f"{bed.seed_s}/via/Movie/x.mkv"], rejected)
    assert got == set()
    assert rejected == [
        (f"event path refused: {bed.seed_s}/via/Movie/x.mkv goes through a symlink: {bed.seed_s}/via -> {bed.outside}")
    ]
    assert all_catalog_paths(bed.cat) == []
    assert not (bed.outside / MARKER_NAME).exists()


def test_a_refused_path_s_reason_in_a_result_is_clipped(bed):
    # R114: a result keeps the first few refusals (test_queue), each at most 512 characters: an
    # event's path may be 8,192 (``_fields.MAX_STRING_CHARS``). The hashes no client has, alike.
    os.symlink(bed.outside, bed.seed_s / "via")
    long = f"{bed.seed_s}/via/" + "/".join(["q" * 200] * 30) + "/x.mkv"
    unknown = tuple(f"{k:040x}" for k in range(7))
    result = handle_job(bed.cfg, bed.cat, [bed.qbt], SimpleNamespace(**{**vars(job(long)), "hashes": unknown}))
    (clipped,) = result["rejected_paths"]
    assert len(clipped) == 512 and clipped.startswith(f"event path refused: {long[:100]}") and clipped.endswith("q...")
    assert (result["rejected_count"], result["unknown_hashes"], result["unknown_count"]) == (1, list(unknown[:5]), 7)
    assert result["note"] == (
        f"no torrent in any configured client matches this event (unknown hashes: {', '.join(unknown[:5])}, and 2 more)"
    )


def test_an_upgrade_that_keeps_the_library_name_re_plans_the_old_torrent(bed):
    """Sonarr/Radarr upgrades with a naming scheme without quality: ``deletedFiles[].path`` is the
    new ``episodeFile.path``. The old inode's links must be read before the path is recorded as the
    new file, or the torrent that just lost its library copy is not re-planned until a sweep."""
    old = write(bed.seed_s / "old/Movie/x.mkv", b"old movie")
    new = write(bed.seed_s / "new/Movie/y.mkv", b"new movie!")
    torrent(bed, H, bed.seed_s / "old", [("Movie/x.mkv", 9)])
    torrent(bed, H2, bed.seed_s / "new", [("Movie/y.mkv", 10)])
    lib = bed.lib / "Movie (2020)/Movie (2020).mkv"
    os.makedirs(lib.parent)
    os.link(old, lib)
    for p in (old, new, lib):
        bed.cat.record_path(str(p), "stash")
    os.unlink(lib)  # the *arr's upgrade: the same name, now the new file
    os.link(new, lib)
    got = torrents_touching(bed.cfg, bed.cat, bed.qbt.torrents(), [str(lib)])
    assert got == {H, H2}
    assert bed.cat.inode_by_path(str(lib)).ino == os.stat(new).st_ino


def test_a_movie_delete_re_plans_the_torrents_linked_under_its_folder(bed):
    """MovieDelete (SeriesDelete, AlbumDelete, AuthorDelete) names only the library folder: the
    torrents seeding what the catalog knows below it are re-planned, not "no torrent matches"."""
    library_linked_movie(bed)
    bed.cat.record_path(str(bed.lib / "Movie (2020)/Movie (2020).mkv"), "stash")
    write(bed.seed_s / "other/O/o.bin", b"unrelated")
    torrent(bed, H2, bed.seed_s / "other", [("O/o.bin", 9)])
    payload = json.loads((FIXTURES / "radarr-moviedelete.json").read_text(encoding="utf-8"))
    payload["movie"]["folderPath"] = str(bed.lib / "Movie (2020)")
    payload["deletedFiles"] = True
    event = parse_arr(payload)
    assert event.kind == "media_deleted" and event.paths == (str(bed.lib / "Movie (2020)"),)
    shutil.rmtree(bed.lib / "Movie (2020)")  # Radarr deleted the folder before it told us
    result = handle_job(bed.cfg, bed.cat, [bed.qbt], job(*event.paths))
    assert "note" not in result
    assert [(g["names"], g["action"]) for g in result["groups"]] == [(["Movie"], "demote")], result


def test_links_under_reads_whole_components_through_the_path_index(bed):
    movie = library_linked_movie(bed)
    folder = bed.lib / "Movie (2020)"
    odd = write(folder / os.fsdecode(b"\xff.nfo"), b"nfo")  # a name that is not UTF-8
    sibling = write(bed.lib / "Movie (2020)0/y.mkv", b"y")  # "0": the byte after "/"
    for f in (movie, folder / "Movie (2020).mkv", odd, sibling):
        bed.cat.record_path(str(f), "stash")
    statements: list[str] = []
    bed.cat.conn.set_trace_callback(statements.append)
    got = bed.cat.links_under(str(folder) + "/")
    bed.cat.conn.set_trace_callback(None)
    assert sorted(got) == sorted(os.fsencode(f) for f in (movie, folder / "Movie (2020).mkv", odd))
    (sql,) = statements
    plan = " ".join(r[3] for r in bed.cat.conn.execute("EXPLAIN QUERY PLAN " + sql))
    assert "SEARCH p USING INDEX sqlite_autoindex_paths_1 (path>? AND path<?)" in plan, plan


def test_an_event_naming_a_folder_that_holds_a_seeding_root_reads_no_links(bed):
    library_linked_movie(bed)
    bed.cat.record_path(str(bed.lib / "Movie (2020)/Movie (2020).mkv"), "stash")
    assert torrents_touching(bed.cfg, bed.cat, bed.qbt.torrents(), [str(bed.stash)]) == set()


def test_an_event_path_outside_every_pool_touches_no_filesystem(bed, tmp_path, monkeypatch):
    """R110: the worker (root) lstat-ed any path an event named outside every pool: a sibling
    sharing the pool's prefix, /etc, an autofs path it would have mounted. Its answer is what it
    was (no match, nothing refused: the catalog's links of the path are still read), unstat-ed."""
    sibling = write(tmp_path / "stash2/secret", b"x")  # /stash2 beside pool /stash
    library_linked_movie(bed)
    bed.cat.record_path(str(bed.lib / "Movie (2020)/Movie (2020).mkv"), "stash")
    pools = [str(p.path) for p in bed.cfg.pools]
    touched: list[str] = []

    def spy(real):
        def call(path, *a, **k):
            if not isinstance(path, int) and os.path.isabs(os.fsdecode(path)):
                touched.append(os.fsdecode(path))
            return real(path, *a, **k)

        return call

    for name in ("lstat", "stat", "open", "access", "scandir", "listdir"):
        monkeypatch.setattr(os, name, spy(getattr(os, name)))
    outside = [str(sibling), str(tmp_path / "net/host/share/x.mkv"), "/etc/shadow"]
    result = handle_job(bed.cfg, bed.cat, [bed.qbt], job(*outside))
    monkeypatch.undo()
    assert [p for p in touched if not any(p == r or p.startswith(r + "/") for r in pools)] == []
    assert result == {"groups": [], "note": "no torrent in any configured client matches this event"}


def spied_lstats(monkeypatch) -> list[str]:
    """Every path ``FolderReader.lstat`` (the worker's one read of an event path) is asked about."""
    asked: list[str] = []
    real = FolderReader.lstat

    def lstat(self, path, *a, **k):
        asked.append(os.fsdecode(path))
        return real(self, path, *a, **k)

    monkeypatch.setattr(FolderReader, "lstat", lstat)
    return asked


@pytest.mark.parametrize(
    ("rel", "matches"),
    [
        (".zfs/snapshot/daily/data/media/torrents/seeding/m/Movie/x.mkv", False),
        ("data/media/torrents/seeding/m/.qbhook-staging/x.mkv", False),
        ("data/media/torrents/seeding/m/Movie/.qbhook-holding/x.mkv", True),
        ("data/media/torrents/seeding/m/Movie/.qbhook-relink.1f.x.mkv", True),
    ],
)
def test_an_event_records_no_path_the_scan_skips(bed, rel, matches, monkeypatch):
    """R110: an event recorded any regular file it named in a pool, also one no scan ever records:
    in a ZFS snapshot (its lstat automounts it), qbhook's staging or holding folder, a relink
    link. The scan's own rule (``scan.skipped_by_scan``) keeps it from any lstat, lookup or
    record; it is no refusal (R114): inside a torrent's folder it re-plans that torrent."""
    assert str(bed.seed_s).startswith(str(bed.stash) + "/data/media/torrents/seeding")
    write(bed.seed_s / "m/Movie/x.mkv", b"movie")
    torrent(bed, H, bed.seed_s / "m", [("Movie/x.mkv", 5)])
    named = write(bed.stash / rel, b"movie")
    scan_pools(bed.cat, list(bed.cfg.pools), bed.cfg.scan)
    scanned = all_catalog_paths(bed.cat)
    assert str(named) not in scanned
    asked = spied_lstats(monkeypatch)
    result = handle_job(bed.cfg, bed.cat, [bed.qbt], job(str(named)))
    assert all_catalog_paths(bed.cat) == scanned and str(named) not in asked
    assert "rejected_paths" not in result and bool(result["groups"]) == matches


def test_a_file_of_a_torrent_in_an_ignored_folder_still_matches_its_torrent(bed, monkeypatch):
    """R114: with ``Sample`` in scan.ignore_names, an event naming a torrent's ``Sample/s.mkv``
    matched no torrent ("no torrent in any configured client matches this event"), where it had
    matched by the torrent's content path. It matches again, and is still never lstat-ed,
    looked up in the catalog nor recorded."""
    cfg = replace(bed.cfg, scan=ScanConfig(ignore_names=("@eaDir", "Sample")))
    write(bed.seed_s / "m/Movie/x.mkv", b"movie")
    sample = write(bed.seed_s / "m/Movie/Sample/s.mkv", b"sample")
    torrent(bed, H, bed.seed_s / "m", [("Movie/x.mkv", 5), ("Movie/Sample/s.mkv", 6)])
    scan_pools(bed.cat, list(cfg.pools), cfg.scan)
    scanned = all_catalog_paths(bed.cat)
    assert str(sample) not in scanned
    asked = spied_lstats(monkeypatch)
    looked: list[str] = []
    real_lookup = Catalog.inode_by_path
    monkeypatch.setattr(Catalog, "inode_by_path", lambda self, p: looked.append(p) or real_lookup(self, p))
    rejected: list[str] = []
    assert torrents_touching(cfg, bed.cat, bed.qbt.torrents(), [str(sample)], rejected) == {H}
    assert (rejected, asked, looked, all_catalog_paths(bed.cat)) == ([], [], [], scanned)


# --------------------------------------------------------------------------- swapped between check and read


def test_event_path_whose_folder_is_swapped_after_the_check_never_records_the_outside_file(bed, monkeypatch):
    """``Movie`` is a real folder when the event's path is checked, a symlink to an outside
    folder right after. Looked up by path again (is it a file? record it), the outside file was
    recorded as this pool's; read through the folder descriptor checked, it is the pool's file."""
    inside = write(bed.seed_s / "m/Movie/x.mkv", b"movie")
    write(bed.outside / "Movie/x.mkv", b"not ours")
    folder = bed.seed_s / "m/Movie"
    swapped = swap_after_first_look(monkeypatch, folder, folder, bed.outside / "Movie")
    inside_ino = os.stat(inside).st_ino
    torrents_touching(bed.cfg, bed.cat, [], [str(inside)], [])
    assert swapped
    row = bed.cat.inode_by_path(str(inside))
    assert row is not None and row.ino == inside_ino != os.stat(bed.outside / "Movie/x.mkv").st_ino


def test_torrent_folder_swapped_after_its_check_never_puts_the_outside_file_in_the_snapshot(bed, monkeypatch):
    """``Movie`` is a real folder when the build checks it, a symlink to an outside folder right
    after. The probe kept its verdict and lstat-ed the file by path: the outside file's inode
    became the torrent's file (and the catalog's). Read through the descriptor checked, the
    torrent's file is the one that was in the folder checked."""
    inside = write(bed.seed_s / "m/Movie/a.bin", b"inside data!")
    write(bed.outside / "Movie/a.bin", b"outside data")
    torrent(bed, H, bed.seed_s / "m", [("Movie/a.bin", 12)])
    folder = bed.seed_s / "m/Movie"
    swapped = swap_after_first_look(monkeypatch, folder, folder, bed.outside / "Movie")
    inside_ino, outside_ino = os.stat(inside).st_ino, os.stat(bed.outside / "Movie/a.bin").st_ino
    snap = build_snapshot(bed.cfg, bed.cat, [bed.qbt])
    assert swapped
    assert snap.torrents[0].files[0].inode[1] == inside_ino
    assert outside_ino not in {k[1] for k in snap.inodes}
    assert bed.cat.conn.execute("SELECT count(*) FROM inodes WHERE ino = ?", (outside_ino,)).fetchone()[0] == 0


def test_torrent_folder_swapped_before_it_is_opened_blocks_naming_it(bed, monkeypatch):
    """Swapped right after the build looked at its parent: the folder is a symlink when opened,
    refused and reported as the group's blocker, and nothing below it is read."""
    write(bed.seed_s / "m/Movie/a.bin", b"inside data!")
    write(bed.outside / "Movie/a.bin", b"outside data")
    torrent(bed, H, bed.seed_s / "m", [("Movie/a.bin", 12)])
    folder = bed.seed_s / "m/Movie"
    swapped = swap_after_first_look(monkeypatch, bed.seed_s / "m", folder, bed.outside / "Movie")
    snap, plan = plan_of(bed)
    assert swapped
    assert snap.symlinks == {str(folder): str(bed.outside / "Movie")}
    assert snap.torrents[0].files[0].inode is None
    assert f"symlink in the source path: {folder} -> {bed.outside / 'Movie'}" in group(plan, H).reason


# --------------------------------------------------------------------------- odd torrents, outside files
# One odd torrent must not stop every snapshot (and so every plan, apply and sweep of serve): a
# folder name over NAME_MAX (ENAMETOOLONG), a file name with ``..`` (PathMapError: the planner
# refuses it), an event path with a too-long name are each "nothing there" for that path; the
# torrent is blocked with its reason and the others still plan. A torrent saved outside every
# pool is kept in the snapshot's facts only, never catalogued (``find`` would hash it as root).

LONG = "L" * 300  # over NAME_MAX (255 bytes)


def _healthy(bed):
    write(bed.seed_s / "ok/Movie/a.bin", b"movie")
    torrent(bed, H2, bed.seed_s / "ok", [("Movie/a.bin", 5)])


def test_a_too_long_folder_name_blocks_that_torrent_only(bed):
    _healthy(bed)
    (bed.seed_s / "odd").mkdir()  # the long name is asked of a real folder
    torrent(bed, H, bed.seed_s / "odd", [(f"{LONG}/a.bin", 5)])
    _snap, plan = plan_of(bed)
    assert group(plan, H).action == "blocked"
    assert group(plan, H2).action != "blocked"


def test_a_dotdot_file_name_blocks_that_torrent_with_its_reason_only(bed):
    _healthy(bed)
    write(bed.seed_s / "odd/R/x.bin", b"x")
    torrent(bed, H, bed.seed_s / "odd", [("R/../../x.bin", 1)])
    _snap, plan = plan_of(bed)
    g = group(plan, H)
    assert g.action == "blocked" and "unsafe file name 'R/../../x.bin'" in g.reason
    assert group(plan, H2).action != "blocked"


@pytest.mark.parametrize("where", ["outside", "seeding root"])
def test_an_absolute_file_name_blocks_that_torrent_and_is_never_looked_at(bed, where):
    # A client's file list may name "/etc/passwd": posixpath.join put it in place of the save
    # path, the snapshot lstat-ed that file, and its destination crashed every plan (KeyError).
    _healthy(bed)
    target = write((bed.outside if where == "outside" else bed.seed_s / "other") / "secret.bin", b"secret")
    write(bed.seed_s / "odd/R/x.bin", b"x")
    torrent(bed, H, bed.seed_s / "odd", [("R/x.bin", 1), (str(target), 6)])
    snap, plan = plan_of(bed)
    g = group(plan, H)
    assert g.action == "blocked" and f"unsafe file name {str(target)!r}" in g.reason
    (t,) = [t for t in snap.torrents if t.hash == H]
    assert [f.inode for f in t.files if f.rel == str(target)] == [None]
    assert os.lstat(target).st_ino not in {ino for _fs, ino in snap.inodes}
    assert group(plan, H2).action != "blocked"


def test_an_event_path_with_a_too_long_name_is_nothing_there(bed):
    _healthy(bed)
    got = torrents_touching(bed.cfg, bed.cat, [], [f"{bed.seed_s}/ok/{LONG}/x.bin"])
    assert got == set()


def test_a_torrent_saved_outside_every_pool_is_blocked_and_never_catalogued(bed):
    _healthy(bed)
    write(bed.outside / "Out/o.bin", b"outside")
    torrent(bed, H, bed.outside, [("Out/o.bin", 7)])
    snap, plan = plan_of(bed)
    g = group(plan, H)
    assert g.action == "blocked" and g.reason
    assert not [p for p in all_catalog_paths(bed.cat) if str(bed.outside) in p]
    assert group(plan, H2).action != "blocked"
    assert [t for t in snap.torrents if t.hash == H]  # still in the facts


def test_a_torrent_saved_on_an_unidentifiable_filesystem_blocks_only_itself(bed, monkeypatch):
    """The outside file's filesystem is never identified: a btrfs nested subvolume's st_dev is in
    no mountinfo line (``mount_for_dev`` raises), and identifying it would register it anyway."""
    _healthy(bed)
    write(bed.outside / "Out/o.bin", b"outside")
    torrent(bed, H, bed.outside, [("Out/o.bin", 7)])
    asked: list[str] = []
    real = bed.cat.fs_for_path

    def fs_for_path(path, dev=None):
        asked.append(os.fsdecode(path))
        if os.fsdecode(path).startswith(str(bed.outside)):
            raise FilesystemIdError("cannot find the mount of device 0:99")
        return real(path, dev)

    monkeypatch.setattr(bed.cat, "fs_for_path", fs_for_path)
    _snap, plan = plan_of(bed)
    g = group(plan, H)
    assert g.action == "blocked" and "outside every seeding root" in g.reason
    assert group(plan, H2).action != "blocked"
    assert asked and not [p for p in asked if p.startswith(str(bed.outside))]  # so no filesystems row for it


# --------------------------------------------------------------------------- reached, in a partial snapshot


def reaching_bed(bed, *, link="folder", indexed=True):
    """A at ``movies``; B reaches A's file through ``xseed -> movies`` (a folder link, or
    ``/data/movies`` as the container spells it), or ``xseed/Movie/m.mkv -> movies/Movie/m.mkv``
    (a file link in a real folder, as cross-seed makes them); C is unrelated (``other``). The
    index holds them all after a sync, or none."""
    write(bed.seed_s / "movies/Movie/m.mkv", b"movie")
    write(bed.seed_s / "other/Show/s.mkv", b"show!")  # C: same size as A's file, reached by no one
    if link in ("folder", "container"):  # a container's spelling, /data/...: matched by its tail and size
        os.symlink(bed.seed_s / "movies" if link == "folder" else "/data/movies", bed.seed_s / "xseed")
    else:
        (bed.seed_s / "xseed/Movie").mkdir(parents=True)
        os.symlink(bed.seed_s / "movies/Movie/m.mkv", bed.seed_s / "xseed/Movie/m.mkv")
    torrent(bed, H, bed.seed_s / "movies", [("Movie/m.mkv", 5)])
    torrent(bed, H2, bed.seed_s / "xseed", [("Movie/m.mkv", 5)])
    torrent(bed, H3, bed.seed_s / "other", [("Show/s.mkv", 5)])
    if indexed:
        sync_client(bed.cat, bed.qbt)


def reached_reason(bed, link="folder"):
    where, target = (
        (f"{bed.seed_s}/xseed", bed.seed_s / "movies")
        if link == "folder"
        else (f"{bed.seed_s}/xseed", "/data/movies")
        if link == "container"
        else (f"{bed.seed_s}/xseed/Movie/m.mkv", bed.seed_s / "movies/Movie/m.mkv")
    )
    return f"torrent Movie ({H2[:8]}) reaches {bed.seed_s}/movies/Movie/m.mkv through a symlink: {where} -> {target}"


@pytest.mark.parametrize("link", ["folder", "file", "container"])
def test_an_event_s_closure_sees_a_torrent_reaching_its_group_through_a_symlink(bed, link):
    """The closure of A (shared inodes, content folders) never holds B: B's files resolve to A's
    inode only through the link. A's demote would delete B's data all the same."""
    reaching_bed(bed, link=link)
    snap, plan = plan_of(bed, hashes=[H])
    assert [t.hash for t in snap.torrents] == [H]
    g = group(plan, H)
    assert g.action == "blocked" and not g.steps
    assert g.blockers == [reached_reason(bed, link)]


def test_a_sweep_chunk_sees_a_torrent_of_another_chunk_reaching_its_group(bed):
    reaching_bed(bed)
    listing = bed.qbt.torrents()
    chunk = [t for t in listing if t.hash == H]
    snap = SnapshotBuilder(bed.cfg, bed.cat, [bed.qbt]).build(infos=chunk, listing=listing)
    g = group(make_plan(snap, bed.cfg.policy), H)
    assert g.action == "blocked" and g.blockers == [reached_reason(bed)]


@pytest.mark.parametrize("indexed", [True, False])
def test_a_sweep_s_chunks_read_and_lstat_what_they_leave_out_once(bed, monkeypatch, indexed):
    """Each chunk leaves out nearly every torrent: the index's unplaced files are read, the files of
    torrents it does not hold listed, and each of them lstat-ed once a sweep (``SweepReach``), and a
    later chunk still sees the link (its snapshot notes it, so the planner resolves through it)."""
    reaching_bed(bed, link="file", indexed=indexed)
    listing = bed.qbt.torrents()
    queries, lstats, listed = [], [], []
    real_query, real_lstat, real_files = snapshot_mod.unplaced_files, SnapshotBuilder._lstat_file, bed.qbt.files
    monkeypatch.setattr(snapshot_mod, "unplaced_files", lambda *a: queries.append(a[1:]) or real_query(*a))
    monkeypatch.setattr(
        SnapshotBuilder, "_lstat_file", lambda self, p, *a, **k: lstats.append(p) or real_lstat(self, p, *a, **k)
    )
    monkeypatch.setattr(bed.qbt, "files", lambda h: listed.append(h) or real_files(h))
    reach, plans = SweepReach(), {}
    for h in (H3, H):  # C first: it reads and lstat-s B's file, A's chunk reuses both
        chunk = [t for t in listing if t.hash == h]
        snap = SnapshotBuilder(bed.cfg, bed.cat, [bed.qbt]).build(infos=chunk, listing=listing, reach=reach)
        plans[h] = group(make_plan(snap, bed.cfg.policy), h)
    assert plans[H].action == "blocked" and plans[H].blockers == [reached_reason(bed, "file")]
    assert plans[H3].action == "demote"
    assert queries == [(None,)]  # every size, once
    assert lstats.count(f"{bed.seed_s}/xseed/Movie/m.mkv") == 1
    assert listed.count(H2) == (0 if indexed else 1)


@pytest.mark.parametrize("link", ["folder", "file"])
def test_a_torrent_the_index_does_not_hold_yet_is_seen_by_its_files(bed, link):
    """Added since the last sync (no event of its own yet): its files are listed when its content
    path is a folder or passes through a link. With cross-seed's file links its content folder is
    a real one: only its files show the links below it."""
    reaching_bed(bed, link=link, indexed=False)
    _snap, plan = plan_of(bed, hashes=[H])
    g = group(plan, H)
    assert g.action == "blocked" and g.blockers == [reached_reason(bed, link)]


@pytest.mark.parametrize("how", ["event", "sweep chunk"])
def test_a_file_link_renamed_in_its_client_still_blocks_the_group_it_reaches(bed, how):
    """cross-seed's file link renamed in qBittorrent (renameFile renames the link): nothing of the
    torrent's record moves, so the index keeps the old name, where no link is left to lstat. A
    torrent with an index path gone from disk is listed, as one the index does not hold (R76)."""
    reaching_bed(bed, link="file")
    os.rename(bed.seed_s / "xseed/Movie/m.mkv", bed.seed_s / "xseed/Movie/m2.mkv")
    bed.qbt.t[H2].files[0] = ("Movie/m2.mkv", 5, 1)
    rep = sync_client(bed.cat, bed.qbt)
    if how == "event":
        _snap, plan = plan_of(bed, hashes=[H])
    else:  # the sweep's clients answer a complete torrent's files from the index (snapshot_view)
        clients, listing = snapshot_view(bed.cat, [bed.qbt], [rep])
        chunk = [t for t in listing if t.hash == H]
        builder = SnapshotBuilder(bed.cfg, bed.cat, list(clients))
        plan = make_plan(builder.build(infos=chunk, listing=listing, reach=SweepReach(), live=False), bed.cfg.policy)
    g = group(plan, H)
    assert g.action == "blocked", (g.action, g.reason)
    assert g.blockers == [reached_reason(bed, "file").replace("xseed/Movie/m.mkv ->", "xseed/Movie/m2.mkv ->")]


@pytest.mark.parametrize("link", ["folder", "file"])
@pytest.mark.parametrize("indexed", [True, False])
def test_a_group_no_symlink_reaches_is_not_blocked_by_another_s_link(bed, indexed, link):
    reaching_bed(bed, link=link, indexed=indexed)
    _snap, plan = plan_of(bed, hashes=[H3])
    assert group(plan, H3).action == "demote"


def test_a_single_file_torrent_the_index_does_not_hold_is_not_listed(bed, monkeypatch):
    """Its content path is its one file: lstat-ed without a link on its way, there is nothing
    below it to list (the client is asked for the files of the folders only)."""
    reaching_bed(bed, link="file", indexed=False)
    write(bed.seed_s / "single.mkv", b"alone")
    torrent(bed, "d" * 40, bed.seed_s, [("single.mkv", 5)])
    asked, real = [], bed.qbt.files
    monkeypatch.setattr(bed.qbt, "files", lambda h: asked.append(h) or real(h))
    _snap, plan = plan_of(bed, hashes=[H])
    assert group(plan, H).action == "blocked"
    assert set(asked) == {H, H2, H3}  # H, built; H2 and H3, folders left out


# --------------------------------------------------------------------------- reached by identity


def aliased_bed(bed, alias) -> str:
    """A at ``movies``; B, cross-seed's file link, reaches A's file through ``alias``: a folder
    of the pool that is ``movies`` under another name, which no torrent's path passes through
    (so no noted symlink resolves it, and the tail of the target is that alias's). Returns the
    link's target, as B's line names it."""
    write(bed.seed_s / "movies/Movie/m.mkv", b"movie")
    (bed.seed_s / "xseed/Movie").mkdir(parents=True)
    target = alias / "Movie/m.mkv"
    os.symlink(target, bed.seed_s / "xseed/Movie/m.mkv")
    assert os.path.samefile(bed.seed_s / "xseed/Movie/m.mkv", bed.seed_s / "movies/Movie/m.mkv")
    torrent(bed, H, bed.seed_s / "movies", [("Movie/m.mkv", 5)])
    torrent(bed, H2, bed.seed_s / "xseed", [("Movie/m.mkv", 5)])
    sync_client(bed.cat, bed.qbt)
    return str(target)


def assert_reached_by_identity(bed, target: str) -> None:
    """A is blocked naming B's link, in a full build and in A's event closure (B left out)."""
    line = (
        f"torrent Movie ({H2[:8]}) reaches {bed.seed_s}/movies/Movie/m.mkv"
        f" through a symlink: {bed.seed_s}/xseed/Movie/m.mkv -> {target}"
    )
    for hashes in (None, [H]):
        _snap, plan = plan_of(bed, hashes=hashes)
        g = group(plan, H)
        assert g.action == "blocked" and not g.steps, (hashes, g.reason)
        assert line in g.blockers, (hashes, g.blockers)


def test_a_link_through_a_folder_symlink_no_torrent_uses_keeps_the_group_it_reaches(bed):
    """R73: ``films -> movies``, an old category name kept as a link: B's target path
    ``films/Movie/m.mkv`` matched no file and its tail was the alias's, so A demoted and its
    delete left B's link dangling. By identity (the link followed), it is A's file."""
    os.symlink(bed.seed_s / "movies", bed.seed_s / "films")
    assert_reached_by_identity(bed, aliased_bed(bed, bed.seed_s / "films"))


@own_mounts
def test_a_link_through_a_bind_mount_alias_keeps_the_group_it_reaches(bed):
    """R73: the seeding data bind-mounted elsewhere in the pool (an export, a container's alias
    folder): no symlink on the way at all past B's own, so only the identity tells."""
    write(bed.seed_s / "movies/Movie/m.mkv", b"movie")
    export = bed.stash / "export"
    export.mkdir()
    bind(bed.seed_s / "movies", export)
    assert_reached_by_identity(bed, aliased_bed(bed, export))
