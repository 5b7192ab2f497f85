"""A library that uses a torrent's data through a symbolic link keeps its group from moving
(``planner.library_use``: the one rule; ``Snapshot.library``, read by ``SnapshotBuilder._library``
from ``catalog.library_links``).

The inode such a library reaches has one link, so by link counts the group was seed-only: a
demote copied it to /pool, relocated the torrent and deleted the /stash file, and the library's
symlink dangled. Real files and symlinks under tmp_path, a fake client."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from qbhook.catalog import library_links
from qbhook.config import QbtConfig
from qbhook.decide.planning import explain_group
from qbhook.dirfd import FolderReader
from tests.helpers import write
from tests.mountns import bind, own_mounts
from tests.unit.test_snapshot_paths import H2, H, bed, group, plan_of, torrent  # noqa: F401  (fixture)


def movie(bed):  # noqa: F811
    """A seed-only movie on /stash that demotes; its file's path."""
    path = write(bed.seed_s / "m/Movie/x.mkv", b"movie bytes")
    torrent(bed, H, bed.seed_s / "m", [("Movie/x.mkv", 11)])
    return str(path)


def link(at, target) -> str:
    os.makedirs(os.path.dirname(at), exist_ok=True)
    os.symlink(target, at)
    return str(at)


def stays_for(bed, symlink: str, target: str):  # noqa: F811
    snap, plan = plan_of(bed)
    g = group(plan, H)
    assert g.action == "stay" and not g.steps, g.reason
    assert f"library symlink {symlink} -> {target} uses it" in g.reason
    return snap, g


def test_a_library_file_symlink_onto_a_seed_only_file_keeps_it_on_stash(bed):  # noqa: F811
    film = movie(bed)
    assert group(plan_of(bed)[1], H).action == "demote"
    at = link(bed.lib / "Movie (2020).mkv", film)
    stays_for(bed, at, film)


def test_a_library_folder_symlink_onto_the_torrents_folder_keeps_it_on_stash(bed):  # noqa: F811
    movie(bed)
    folder = str(bed.seed_s / "m/Movie")
    at = link(bed.lib / "Movie (2020)", folder)
    stays_for(bed, at, folder)


@own_mounts
def test_a_library_folder_symlink_written_through_a_bind_mount_of_the_seeding_data_keeps_it_on_stash(bed):  # noqa: F811
    """R32: an export (or a container's alias) folder in the pool is a bind mount of the seeding
    root, and the library's symlink names the torrent's folder through it: ``realpath`` does not
    see through a bind mount, so its place was the alias path, which no fact spells; the group
    demoted and the symlink dangled. The folder is also matched by identity (st_dev, st_ino)."""
    movie(bed)
    alias = bed.stash / "export"
    alias.mkdir()
    bind(bed.seed_s, alias)
    target = str(alias / "m/Movie")
    at = link(bed.lib / "Movie (2020)", target)
    snap, _g = stays_for(bed, at, target)
    assert snap.library.folders.places[str(bed.seed_s / "m/Movie")] == at  # as the facts spell it


def test_a_folder_symlink_asks_each_folder_of_the_snapshots_files_its_identity_once(bed, monkeypatch):  # noqa: F811
    """The identity match costs one fstat per distinct folder (through the build's verified
    descriptors), not one per file; and none at all when no symlink has a folder target."""
    asked: list[str] = []
    real = FolderReader.identity

    def identity(self, p):
        # Not the destination folders on the cold pool: the nested-dataset check asks each once
        # (``Snapshot.nested_destinations``), symlinks or not.
        if not (p == str(bed.pool) or p.startswith(f"{bed.pool}/")):
            asked.append(p)
        return real(self, p)

    monkeypatch.setattr(FolderReader, "identity", identity)
    movie(bed)
    write(bed.seed_s / "m/Movie/extra.nfo", b"nfo")
    torrent(bed, H2, bed.seed_s / "m", [("Movie/x.mkv", 11), ("Movie/extra.nfo", 3)])
    link(bed.lib / "Other.mkv", str(bed.seed_s / "m/Movie/extra.nfo"))  # a file target: no folder asked
    plan_of(bed)
    assert asked == []
    link(bed.lib / "Elsewhere", str(bed.outside))  # a folder target, elsewhere
    os.makedirs(bed.outside)
    plan_of(bed)
    assert sorted(asked) == sorted(set(asked)), asked  # each folder once
    assert str(bed.seed_s / "m/Movie") in asked and str(bed.stash) in asked  # up to the pool root
    assert all(p == str(bed.stash) or p.startswith(f"{bed.stash}/") for p in asked), asked  # never above it


def test_a_symlink_in_a_nested_library_folder_onto_a_nested_folder_of_the_torrent_counts(bed):  # noqa: F811
    write(bed.seed_s / "tv/Show/Season 1/e1.mkv", b"episode one")
    write(bed.seed_s / "tv/Show/Season 1/Subs/e1.srt", b"subtitle")
    torrent(bed, H, bed.seed_s / "tv", [("Show/Season 1/e1.mkv", 11), ("Show/Season 1/Subs/e1.srt", 8)])
    subs = str(bed.seed_s / "tv/Show/Season 1/Subs")
    at = link(bed.stash / "media/tv/Show (2001)/Season 01/extras/Subs", subs)
    stays_for(bed, at, subs)


def test_a_relative_symlink_counts_the_same(bed):  # noqa: F811
    film = movie(bed)
    at = bed.lib / "Movie (2020).mkv"
    target = os.path.relpath(film, bed.lib)
    stays_for(bed, link(at, target), target)


def test_a_symlink_in_a_containers_spelling_counts_through_the_clients_path_map(bed):  # noqa: F811
    """An *arr app in a container writes /data/...: on the host the symlink dangles, and only the
    clients' path_map says it names the movie."""
    film = movie(bed)
    qbt = QbtConfig("qb", "http://127.0.0.1:1", "admin", path_map=(("/data", str(bed.stash)),))
    bed.cfg = replace(bed.cfg, qbittorrent=(qbt,))
    spelled = "/data" + film[len(str(bed.stash)) :]
    stays_for(bed, link(bed.lib / "Movie (2020).mkv", spelled), spelled)


def test_a_torrent_saved_outside_the_pools_on_a_pools_filesystem_hides_no_library_symlink(bed):  # noqa: F811
    """R12-1: the outside torrent's files are keyed on the same st_dev as the pool's (tmp_path is
    one filesystem) and looked at after them; one fsid per st_dev made that device the outside
    key's, the symlink's target (st_dev, st_ino) matched no snapshot inode, and the group demoted."""
    film = movie(bed)
    at = link(bed.lib / "Movie (2020).mkv", film)
    write(bed.outside / "Other/o.bin", b"other bytes!")
    torrent(bed, H2, bed.outside, [("Other/o.bin", 12)])
    snap, _g = stays_for(bed, at, film)
    assert os.stat(bed.outside / "Other/o.bin").st_dev == os.stat(film).st_dev
    assert list(snap.library.files.values()) == [at]


def test_a_dangling_library_symlink_that_reaches_no_file_of_the_group_changes_nothing(bed):  # noqa: F811
    movie(bed)
    link(bed.lib / "Gone.mkv", str(bed.seed_s / "m/Other/gone.mkv"))  # beside it, not it
    link(bed.lib / "Elsewhere.mkv", "/nowhere/at/all.mkv")
    snap, plan = plan_of(bed)
    assert group(plan, H).action == "demote"
    assert not snap.library.unseen and len(snap.library.folders) == 2  # looked for, and followed


def test_a_library_symlink_keeps_the_group_out_of_explain_too(bed):  # noqa: F811
    """``qbhook explain`` decides with the same snapshot and rule: its decision names the symlink."""
    film = movie(bed)
    at = link(bed.lib / "Movie (2020).mkv", film)
    r = explain_group(bed.cfg, bed.cat, lambda: [bed.qbt], H, no_scan=True)
    assert r.data["group"]["action"] == "stay", r.data["group"]
    assert f"library symlink {at} -> {film} uses it" in r.data["group"]["reason"]


# --------------------------------------------------------------------------- cost and refusals


@pytest.fixture
def walks(monkeypatch):
    """The pools walked for library symlinks, one entry per ``collect``."""
    done: list[int] = []
    real = library_links.collect
    monkeypatch.setattr(library_links, "collect", lambda cfg: done.append(1) or real(cfg))
    return done


def test_no_walk_for_library_symlinks_when_nothing_could_move(bed, walks):  # noqa: F811
    """A plan of staying groups (a library's hard link keeps each) pays no walk of the pools."""
    film = movie(bed)
    os.makedirs(bed.lib)
    os.link(film, bed.lib / "Movie (2020).mkv")
    snap, plan = plan_of(bed)
    assert group(plan, H).action == "stay" and walks == []
    assert snap.library.unseen  # and says it did not look


def test_one_walk_per_snapshot_whatever_the_number_of_movable_groups(bed, walks):  # noqa: F811
    movie(bed)
    write(bed.seed_s / "s/Show/e.mkv", b"episode")
    torrent(bed, H2, bed.seed_s / "s", [("Show/e.mkv", 7)])
    _snap, plan = plan_of(bed)
    assert {group(plan, h).action for h in (H, H2)} == {"demote"} and walks == [1]


def test_a_walk_that_cannot_finish_withholds_every_move_naming_why(bed, monkeypatch):  # noqa: F811
    """An unreadable folder: a library not seen is data deleted, so no group moves; the plan still
    answers (its other groups' decisions), each withheld group naming the walk's one line."""
    movie(bed)
    os.makedirs(bed.lib)
    monkeypatch.setattr(library_links.findwalk, "FIND", "/bin/false")
    _snap, plan = plan_of(bed)
    g = group(plan, H)
    assert g.action == "blocked" and not g.steps
    assert g.blockers == [
        "not moved while library symlinks are unseen: cannot look for library symlinks in pool stash (find exited 1)"
    ]


# --------------------------------------------------------------------------- one link above a whole root


@pytest.fixture
def plan_cli(bed, tmp_path, monkeypatch):  # noqa: F811
    """``qbhook plan`` on ``bed``'s pools and fake client: run(*args) -> the CliRunner result."""
    import yaml
    from click.testing import CliRunner

    from qbhook.cli import main
    from qbhook.cli.app import App
    from tests.helpers import config_data

    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config_data(bed.cfg.catalog, bed.stash, bed.pool)))
    monkeypatch.setattr(App, "clients", property(lambda self: [bed.qbt]))
    return lambda *args: CliRunner().invoke(main, ["--config", str(cfg), *args])


def test_a_library_symlink_above_a_whole_seeding_root_is_one_plan_warning(bed, plan_cli):  # noqa: F811
    """``media/all -> <folder above /stash's seeding root>`` keeps every group of /stash there
    (``library_use``), each group saying only "library symlink ... uses it": ``qbhook plan`` names
    the one link and the root it covers, in text (stderr) and in --json's ``warnings``."""
    film = movie(bed)
    at = link(bed.lib / "Movie (2020).mkv", film)  # one movie's: no warning
    r = plan_cli("plan")
    assert r.exit_code == 0, (r.output, r.exception)
    assert "warning" not in r.stderr and json.loads(plan_cli("--json", "plan").stdout)["warnings"] == []
    os.unlink(at)
    above = str(bed.seed_s.parent)  # .../torrents: holds the seeding root .../torrents/seeding
    at = link(bed.stash / "media/all", above)
    want = f"library symlink {at} -> {above} reaches all of seeding root {bed.seed_s}: every group there stays on stash"
    r = plan_cli("plan")
    assert r.exit_code == 0, (r.output, r.exception)  # nothing demotes
    assert f"library symlink {at} -> {above} uses it" in r.stdout  # the group's own reason
    assert [line for line in r.stderr.splitlines() if "warning" in line] == [f"qbhook: warning: {want}"]
    r = plan_cli("--json", "plan")
    assert r.exit_code == 0, (r.output, r.exception)
    d = json.loads(r.stdout)
    assert d["warnings"] == [want] and d["summary"]["stay"] == 1 and "warning" not in r.stderr


# --------------------------------------------------------------------------- the rule, on facts


def test_a_library_symlink_onto_a_cold_file_keeps_it_from_promoting_too():
    """The same rule for a promote, which deletes the /pool file a /pool library's symlink names."""
    from qbhook.config import PolicyConfig
    from qbhook.decide.facts import LibrarySymlinks
    from qbhook.decide.planner import make_plan
    from tests.unit.world import LIB, P, World

    w = World()
    w.payload(P + "/movies", {"Movie.2020/movie.mkv": "M"})
    w.torrent("a" * 40, P + "/movies", ["Movie.2020/movie.mkv"])
    w.file(LIB + "/Movie (2020)/Movie (2020).mkv", "M")  # the library's copy on /stash: a promote
    snap = w.snapshot()
    assert make_plan(snap, PolicyConfig()).groups[0].action == "promote"
    cold = next(f for t in snap.torrents for f in t.files)
    sym = "/pool/data/media/movies/Movie.mkv"
    used = replace(snap, library=LibrarySymlinks(files={cold.inode: sym}, targets={sym: cold.path}))
    g = make_plan(used, PolicyConfig()).groups[0]
    assert (g.action, g.reason) == ("stay", f"library symlink {sym} -> {cold.path} uses it ({cold.path})")
    unseen = replace(snap, library=LibrarySymlinks(unseen="cannot look for library symlinks in pool pool (x)"))
    g = make_plan(unseen, PolicyConfig()).groups[0]
    assert g.action == "blocked" and "library symlinks are unseen: cannot look" in g.reason
