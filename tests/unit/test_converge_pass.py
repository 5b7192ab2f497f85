"""The set-based convergence pass (qbhook/decide/converge_pass.py, ``qbhook converge``).

Its rules are ``decide.converge``'s (guarded by test_converge.py and
test_converge_properties.py); what is tested here is that the pass hands them the facts the
snapshot would: over random worlds it plans every convergence the planner plans (and the
planner only converges groups that stay), and everything it plans is safe; on real files
through the catalog and the executor, it does the same relinks as the planner and is done
after one run.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings

import tests.unit.test_planner_properties as base
from qbhook.catalog.dupes import Copy, DupeSet
from qbhook.catalog.scan import scan_pool
from qbhook.config import PolicyConfig
from qbhook.decide.converge_pass import convergence_plan, convergence_snapshot, plan_convergence
from qbhook.decide.facts import LinkResolver
from qbhook.decide.planner import make_plan
from tests.helpers import write
from tests.unit import test_executor as te
from tests.unit.test_converge import (
    UNSEEN_BUT_HARMLESS,
    WAITING_WORLDS,
    library_keeper_used_by,
    seed_only_keeper_used_by,
    unseen_writer,
)
from tests.unit.test_converge_properties import _inside_seeding, _relink, dup_worlds, may_change
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.world import World


def _pass_snapshot(w: World):
    """The pass's facts of world ``w``: its duplicate sets as the catalog's dupes finds them
    (contents held by two or more inodes with a path), its torrents as listed."""
    snap = w.snapshot()
    by_content: dict = {}
    for key, i in w.inodes.items():
        if i["paths"]:
            by_content.setdefault((i["size"], i["content"]), []).append(key)
    sets, mtimes = [], {}
    for n, ((size, _c), keys) in enumerate(sorted(by_content.items())):
        if len(keys) < 2:
            continue
        copies = []
        for m, key in enumerate(sorted(keys)):
            fact = snap.inodes[key]
            inode_id = n * 1000 + m
            mtimes[inode_id] = fact.mtime_ns
            copies.append(Copy(inode_id, key[0], key[1], fact.nlink, [], sorted(w.inodes[key]["paths"])))
        sets.append(DupeSet(size, snap.inodes[keys[0]].blake3, copies))
    return convergence_snapshot(sets, snap.torrents, snap.pools, mtimes, snap.now, write_paths=snap.write_paths)


def _steps(plan) -> set:
    return {
        (s.args["path"], s.args["fsid"], s.args["ino"], s.args["keep"]["fsid"], s.args["keep"]["ino"])
        for g in plan.groups
        if g.action == "converge"
        for s in g.steps
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dup_worlds())
def test_the_pass_plans_every_convergence_the_planner_plans_and_only_safe_ones(w):
    planned = make_plan(w.snapshot(), PolicyConfig())
    plan = convergence_plan(_pass_snapshot(w))
    assert _steps(planned) <= _steps(plan)
    assert all(g.action == "converge" and g.steps for g in plan.groups)

    library_before = {p: k for p, k in w.paths.items() if not _inside_seeding(p)}
    contents_before = {base._content(w, k) for k in w.inodes if w.inodes[k]["paths"]}
    busy = may_change(w)
    for g in plan.groups:
        victims = {(s.args["fsid"], s.args["ino"]) for s in g.steps}
        kept = {(s.args["keep"]["fsid"], s.args["keep"]["ino"]) for s in g.steps}
        assert not (victims | kept) & busy, "converged an inode a torrent may still write"
        for s in g.steps:
            _relink(w, s.args)  # asserts: inside the seeding roots, same dataset, same content, no library inode
        assert all(not w.inodes[k]["paths"] for k in victims)
        assert g.bytes_freed == sum(w.inodes[k]["size"] for k in victims)
    assert {p: w.paths.get(p) for p in library_before} == library_before, "a library file changed"
    assert {base._content(w, k) for k in w.inodes if w.inodes[k]["paths"]} == contents_before


def test_the_property_sees_the_pass_converge_more_than_the_planner():
    """Over the worlds above the pass converges in some (else the property proves nothing), and in
    some converges groups the planner does not (groups that move: converging first frees the same).
    Derandomized: a count over examples must not depend on which ones a run draws."""
    seen = []

    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(dup_worlds())
    def count(w):
        ours, theirs = _steps(convergence_plan(_pass_snapshot(w))), _steps(make_plan(w.snapshot(), PolicyConfig()))
        seen.append((bool(ours), ours > theirs))

    count()
    assert sum(a for a, _ in seen) >= 10 and sum(b for _, b in seen) >= 1, seen


def test_policy_converge_false_makes_the_pass_a_report():
    w = World()
    w.payload(base.S + "/movies", {"Film/film.mkv": "F"})
    w.file(base.LIB + "/Film (2021)/Film (2021).mkv", "F")
    w.torrent("a" * 40, base.S + "/movies", ["Film/film.mkv"])
    (g,) = convergence_plan(_pass_snapshot(w), PolicyConfig(converge=False)).groups
    assert g.action == "stay" and not g.steps and "would converge 1 duplicate inode(s)" in g.reason
    (g,) = convergence_plan(_pass_snapshot(w)).groups
    assert g.action == "converge" and len(g.steps) == 1 and g.source_pool == "stash"


def test_the_pass_keeps_the_run_cap():
    w = World()
    for n in "FG":
        w.payload(base.S + "/movies", {f"{n}/{n}.mkv": n})
        w.file(f"{base.LIB}/{n} (2021)/{n}.mkv", n)
        w.torrent(n.lower() * 40, base.S + "/movies", [f"{n}/{n}.mkv"])
    groups = convergence_plan(_pass_snapshot(w), PolicyConfig(max_groups_per_run=1)).groups
    assert [g.action for g in groups] == ["converge", "skip"] and "max_groups_per_run" in groups[1].reason


@pytest.mark.parametrize(
    "kw", [{"state": "downloading", "progress": 0.5}, {"state": "someStateOfQbt6"}, {"state": "forcedDL"}]
)
def test_a_file_a_torrent_may_still_write_is_left_to_a_later_pass(kw):
    """A whitelist (``clients.model.SEEDING_STATES``): a state not known to write nothing waits."""
    w = World()
    w.payload(base.S + "/movies", {"Film/film.mkv": "F"})
    w.file(base.LIB + "/Film (2021)/Film (2021).mkv", "F")
    w.torrent("a" * 40, base.S + "/movies", ["Film/film.mkv"])
    w.torrent("b" * 40, base.S + "/movies", ["Film/film.mkv"], **kw)
    assert convergence_plan(_pass_snapshot(w)).groups == []
    assert not [g for g in make_plan(w.snapshot(), PolicyConfig()).groups if g.action == "converge"]


@pytest.mark.parametrize("name", list(WAITING_WORLDS))
def test_the_pass_leaves_a_duplicate_whose_kept_inode_or_itself_may_still_be_written(name):
    """test_converge.py's worlds where a torrent (of another group) may still write the kept inode,
    or writes through a download path or a symlinked save path: the pass plans nothing there."""
    assert convergence_plan(_pass_snapshot(WAITING_WORLDS[name]())).groups == []


@pytest.mark.parametrize("name", list(UNSEEN_BUT_HARMLESS))
def test_the_pass_is_not_held_back_by_an_unplaced_file_of_a_settled_torrent_or_of_another_size(name):
    plan = convergence_plan(_pass_snapshot(unseen_writer(**UNSEEN_BUT_HARMLESS[name])))
    assert [(g.torrents, g.action) for g in plan.groups] == [(["b" * 40], "converge")]


@pytest.mark.parametrize("make", [library_keeper_used_by, seed_only_keeper_used_by])
def test_the_pass_converges_onto_a_kept_inode_whose_torrents_are_all_settled(make):
    (g,) = convergence_plan(_pass_snapshot(make())).groups
    assert g.action == "converge" and g.torrents == ["b" * 40] and len(g.steps) == 1


# --------------------------------------------------------------------------- real files


def _library_copy(w):
    """An *arr import's copy of the world's movie in the library, the two cross-seeded torrents
    complete and settled; the pools scanned. Returns (library path, its lstat, the seeding paths)."""
    from qbhook.catalog.scan import scan_pool

    movie = te.FILES[0][1]
    lib = write(w.stash / "media/Movie (2020)/Movie (2020).mkv", movie)
    seeding = sorted(os.path.join(w.save(h, "stash"), "Movie.2020/movie.mkv") for h in (te.H1, te.H2))
    for t in w.qbt.t.values():
        t.download_path = ""
    old = 1_600_000_000 * 10**9  # settled: an hour-old default settle time is long past
    for p in [lib, *seeding]:
        os.utime(p, ns=(old, old))
    for p in w.cfg.pools:
        scan_pool(w.cat, p, w.cfg.scan)
    return lib, os.lstat(lib), seeding


def test_the_pass_relinks_what_the_planner_would_through_the_executor_and_is_then_done(tmpfs, tmp_path):  # noqa: F811
    from qbhook.decide.snapshot import build_snapshot
    from qbhook.move.run import apply_converged

    w = te._make_world(tmpfs, tmp_path)
    try:
        lib, lib_before, seeding = _library_copy(w)
        planner = make_plan(build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy)
        run = plan_convergence(w.cfg, w.cat, [w.qbt], scan=False)
        assert _steps(run.plan) == _steps(planner) and len(_steps(run.plan)) == 2
        (g,) = run.plan.groups
        assert g.group_id == planner.groups[0].group_id and g.bytes_freed == len(te.FILES[0][1])

        dry = apply_converged(w.cfg, w.cat, [w.qbt], w.executor(), scan=False, dry_run=True)
        assert dry.summary.dry_run and w.journal.runs() == []
        assert {os.lstat(p).st_ino for p in seeding} != {lib_before.st_ino}

        done = apply_converged(w.cfg, w.cat, [w.qbt], w.executor(), scan=False, dry_run=False)
        s = done.summary
        assert s.status == "done" and s.bytes_freed == len(te.FILES[0][1]) and s.torrents_relocated == 0
        assert [(x.kind, x.status) for x in w.journal.steps(s.run_id)] == [("converge", "done")] * 2
        assert {os.lstat(p).st_ino for p in seeding} == {lib_before.st_ino}
        after = os.lstat(lib)
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
            lib_before.st_ino,
            lib_before.st_size,
            lib_before.st_mtime_ns,
        )
        assert not [c for c in w.qbt.calls if c[0] in ("set_location", "stop", "recheck")]

        again = apply_converged(w.cfg, w.cat, [w.qbt], w.executor(), scan=True, dry_run=False)
        assert again.planned.plan.groups == [] and not again.summary.groups
    finally:
        w.cat.close()


def test_cli_converge_is_a_dry_run_until_yes(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    from click.testing import CliRunner

    from qbhook import cli as cli_mod
    from qbhook.cli import main
    from qbhook.clients.registry import Clients

    w = te._make_world(tmpfs, tmp_path)
    try:
        _lib, lib_before, seeding = _library_copy(w)
        cfg = te._cli_env(w, tmp_path, monkeypatch, None)
        monkeypatch.setattr(cli_mod.App, "clients", property(lambda self: Clients([w.qbt])))
        r = CliRunner().invoke(main, ["--config", cfg, "converge", "--no-scan"])
        assert r.exit_code == 0, r.output
        assert "dry run: nothing changed" in r.output and "converge" in r.output and seeding[0] in r.output
        assert {os.lstat(p).st_ino for p in seeding} != {lib_before.st_ino}

        r = CliRunner().invoke(main, ["--config", cfg, "--json", "converge", "--yes", "--no-scan"])
        assert r.exit_code == 0, r.output
        data = json.loads(r.output)
        assert data["bytes_freed"] == len(te.FILES[0][1]) and data["duplicate_sets"] >= 1
        assert data["catalog"]["source"] == "as-is"
        assert {os.lstat(p).st_ino for p in seeding} == {lib_before.st_ino}
    finally:
        w.cat.close()


def test_only_torrents_that_may_use_a_duplicate_have_their_files_listed(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    """A settled torrent whose content lies at no duplicate's path costs no file listing; one that may
    still write is always listed, and a duplicate it writes waits."""
    w = te._make_world(tmpfs, tmp_path)
    try:
        other = write(os.path.join(w.seed_s, "Other/other.bin").encode(), b"only one copy of this")
        w.qbt.add(te.FakeTorrent("c" * 40, "Other", w.seed_s, [("Other/other.bin", 21, 1)]))
        w.qbt.add(te.FakeTorrent("d" * 40, "Late", w.seed_s, [("Late/late.bin", 5, 1)], progress=0.5))
        _lib, lib_before, seeding = _library_copy(w)
        asked = []
        real = w.qbt.files
        monkeypatch.setattr(w.qbt, "files", lambda h: asked.append(h) or real(h))
        run = plan_convergence(w.cfg, w.cat, [w.qbt], scan=False)
        assert sorted(asked) == sorted([te.H1, te.H2, "d" * 40]) and run.torrents == 3
        assert len(_steps(run.plan)) == 2 and os.path.exists(other)

        # the same duplicate, now also the file of a torrent that is still downloading elsewhere
        late = os.path.join(w.seed_s, "Late/movie.mkv")
        os.makedirs(os.path.dirname(late))
        os.link(seeding[0], late)
        w.qbt.t["d" * 40].files = [("Late/movie.mkv", len(te.FILES[0][1]), 1)]
        for p in w.cfg.pools:
            scan_pool(w.cat, p, w.cfg.scan)
        assert plan_convergence(w.cfg, w.cat, [w.qbt], scan=False).plan.groups == []
        assert {os.lstat(p).st_ino for p in seeding} != {lib_before.st_ino}
    finally:
        w.cat.close()


@pytest.mark.parametrize(
    "how",
    [
        "a downloading torrent's file is the kept copy",  # its file list places it: the kept inode's users
        "a download path holds the kept copy",  # written there, listed at its save path
        "a download path holds the victims",
        "a symlinked save path reaches the victims",  # the catalog knows them by their real spelling only
    ],
)
def test_what_a_torrent_may_still_write_waits_in_the_snapshot_and_in_the_pass(tmpfs, tmp_path, how):  # noqa: F811
    """On real files, through the snapshot builder and the planner, and through the pass: a torrent
    that is still downloading writes the kept copy or the replaced one, placed by its file list or
    only by its download path or a symlink; nothing is converged, and the planner says why."""
    from qbhook.decide.snapshot import build_snapshot

    w = te._make_world(tmpfs, tmp_path)
    try:
        lib, lib_before, seeding = _library_copy(w)
        size = len(te.FILES[0][1])
        library, seed = os.path.dirname(os.path.dirname(lib)), w.seed_s
        save, download, name = {
            "a downloading torrent's file is the kept copy": (library, "", "Movie (2020)/Movie (2020).mkv"),
            "a download path holds the kept copy": (seed + "/Late", library, "Movie (2020)/Movie (2020).mkv"),
            "a download path holds the victims": (seed + "/Late", seed, "Movie.2020/movie.mkv"),
            "a symlinked save path reaches the victims": (seed + "/alias", "", "Movie.2020/movie.mkv"),
        }[how]
        if "symlink" in how:
            os.symlink(seed, save)
        w.qbt.add(te.FakeTorrent("d" * 40, "Late", save, [(name, size, 1)], progress=0.5, download_path=download))

        planner = make_plan(build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy)
        assert not [g for g in planner.groups if g.action == "converge"], [(g.action, g.reason) for g in planner.groups]
        (g,) = [g for g in planner.groups if te.H1 in g.torrents]
        assert g.action == "stay" and "1 duplicate inode(s) wait to converge" in g.reason, g.reason
        assert plan_convergence(w.cfg, w.cat, [w.qbt], scan=False).plan.groups == []
        assert {os.lstat(p).st_ino for p in seeding} != {lib_before.st_ino} and os.lstat(lib).st_nlink == 1

        w.qbt.t["d" * 40].progress = 1.0  # settled: now it converges as before
        done = _steps(plan_convergence(w.cfg, w.cat, [w.qbt], scan=False).plan)
        assert done == _steps(make_plan(build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy)) and len(done) == 2
    finally:
        w.cat.close()


@pytest.mark.parametrize("partial", ["an event's closure", "a sweep's chunk"])
@pytest.mark.parametrize(
    "how",
    [
        "its content path holds the kept copy",
        "its download path holds the kept copy",  # the content path says the save path
        "its download path holds the victims",
        "a symlinked save path reaches the victims",
        "its part file is the kept copy",
    ],
)
def test_a_writer_left_out_of_a_partial_snapshot_still_makes_what_it_may_write_wait(
    tmpfs,  # noqa: F811
    tmp_path,
    how,
    partial,
):
    """An event's closure or a sweep's chunk (``events.worker._plan_in_chunks``: the chunk's listing
    and the whole one) builds a snapshot of some torrents only: torrent "d", still downloading, is
    not in it (it shares no catalogued file with H1), yet it writes the kept copy or the replaced
    one. The builder lends its content's places to the snapshot (``Snapshot.write_prefixes``), so
    nothing is converged until it settles."""
    from qbhook.decide.snapshot import SnapshotBuilder

    def build_snapshot(cfg, cat, clients, hashes):
        if partial == "an event's closure":
            return SnapshotBuilder(cfg, cat, clients).build(hashes)
        listing = [t for c in clients for t in c.torrents()]
        chunk = [t for t in listing if t.hash in (te.H1, te.H2)]
        return SnapshotBuilder(cfg, cat, clients).build(infos=chunk, listing=listing)

    w = te._make_world(tmpfs, tmp_path)
    try:
        lib, _lib_before, _seeding = _library_copy(w)
        size = len(te.FILES[0][1])
        library, seed = os.path.dirname(os.path.dirname(lib)), w.seed_s
        save, download, name, file = {
            "its content path holds the kept copy": (library, "", "Movie (2020)", "Movie (2020)/Movie (2020).mkv"),
            "its download path holds the kept copy": (seed + "/Late", library, "Movie (2020)", "Movie (2020)/M.mkv"),
            "its download path holds the victims": (seed + "/Late", seed, "Movie.2020", "Movie.2020/movie.mkv"),
            "a symlinked save path reaches the victims": (seed + "/alias", "", "Movie.2020", "Movie.2020/movie.mkv"),
            "its part file is the kept copy": (os.path.dirname(lib), "", "Other.mkv", "Other.mkv"),
        }[how]
        if "symlink" in how:
            os.symlink(seed, save)
        if "part file" in how:  # a single-file torrent writing "Other.mkv.!qB", a link of the library's copy
            os.link(lib, os.path.join(save, file + ".!qB"))
            for p in w.cfg.pools:
                scan_pool(w.cat, p, w.cfg.scan)
        w.qbt.add(te.FakeTorrent("d" * 40, name, save, [(file, size, 1)], progress=0.5, download_path=download))

        snap = build_snapshot(w.cfg, w.cat, [w.qbt], hashes=[te.H1])
        assert "d" * 40 not in {t.hash for t in snap.torrents}  # left out: only its places are known
        planner = make_plan(snap, w.cfg.policy)
        assert not [g for g in planner.groups if g.action == "converge"], [(g.action, g.reason) for g in planner.groups]
        (g,) = [g for g in planner.groups if te.H1 in g.torrents]
        assert g.action == "stay" and "1 duplicate inode(s) wait to converge" in g.reason, g.reason

        w.qbt.t["d" * 40].progress = 1.0  # settled: now it converges as before
        planner = make_plan(build_snapshot(w.cfg, w.cat, [w.qbt], hashes=[te.H1]), w.cfg.policy)
        assert [g.action for g in planner.groups if te.H1 in g.torrents] == ["converge"]
    finally:
        w.cat.close()


def test_a_link_made_since_the_scan_where_a_torrent_writes_is_seen_by_the_snapshot_and_by_a_scanning_pass(
    tmpfs,  # noqa: F811
    tmp_path,
):
    """The library copy gets a new link in a torrent's download path after the scan (the torrent
    is checking it): the snapshot lstat-s the places a torrent may write and sees it; the pass
    reads the catalog, so it sees it after its scan (its default), as its docstring says."""
    from qbhook.decide.snapshot import build_snapshot

    w = te._make_world(tmpfs, tmp_path)
    try:
        lib, lib_before, seeding = _library_copy(w)
        incomplete = os.path.join(w.seed_s, "incomplete/Late")
        os.makedirs(incomplete)
        os.link(lib, os.path.join(incomplete, "late.mkv"))
        late = te.FakeTorrent("d" * 40, "Late", w.seed_s + "/Late", [("late.mkv", len(te.FILES[0][1]), 1)])
        late.transient, late.download_path = "checkingDL", incomplete
        w.qbt.add(late)

        planner = make_plan(build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy)
        assert not [g for g in planner.groups if g.action == "converge"], [(g.action, g.reason) for g in planner.groups]
        assert plan_convergence(w.cfg, w.cat, [w.qbt]).plan.groups == []
        assert {os.lstat(p).st_ino for p in seeding} != {lib_before.st_ino}
    finally:
        w.cat.close()


@pytest.mark.parametrize(
    "progress,state,content,skipped",
    [
        (1.0, "stalledUP", "/s/seeding/movies/Other", True),  # settled, content at no duplicate
        (1.0, "stalledUP", "/s/seeding/movies/Film", False),  # its root folder holds a duplicate
        (1.0, "stalledUP", "/s/seeding/movies", False),  # no root folder: content is the save path
        (1.0, "stalledUP", "/s/seeding/movies/Film/film.mkv", False),  # a single-file torrent: the file
        (1.0, "stalledUP", "", False),  # no content path given: listed to be sure
        (1.0, "stalledUP", "relative/Other", False),  # not a canonical path: listed to be sure
        (0.5, "downloading", "/elsewhere/Other", False),  # may write: always listed
        (1.0, "checkingUP", "/s/seeding/movies/Other", False),
        (1.0, "moving", "/s/seeding/movies/Other", False),
        (1.0, "someStateOfQbt6", "/s/seeding/movies/Other", False),  # unknown: may write, listed
        (1.0, "stalledDL", "/s/seeding/movies/Other", False),  # 100 % but still finishing
    ],
)
def test_which_torrents_have_their_files_listed(progress, state, content, skipped):
    from types import SimpleNamespace

    from qbhook.decide.converge_pass import _held_under, _uses_none

    held = _held_under([DupeSet(5, "ab" * 32, [Copy(1, "fs", 7, 1, [], ["/s/seeding/movies/Film/film.mkv"])])])
    t = SimpleNamespace(progress=progress, state=state, content_path=content, save_path="", download_path="")
    assert _uses_none(t, held, LinkResolver()) is skipped


def test_a_settled_torrent_saved_through_a_symlink_with_a_skipped_duplicate_is_listed_and_waits(tmpfs, tmp_path):  # noqa: F811
    # Settled torrent "c" is saved through a symlinked folder and skips (priority 0) what is, resolved,
    # the seeding copy of a library file: raising its priority writes into whatever that name holds.
    # Its content path is no catalogued spelling, so the pass must resolve it to ask for its files.
    w = te._make_world(tmpfs, tmp_path)
    try:
        lib, lib_before, seeding = _library_copy(w)
        alias = os.path.join(w.seed_s, "alias")
        os.symlink(w.seed_s, alias)
        files = [(rel, len(data), 0 if rel.endswith("movie.mkv") else 1) for rel, data in te.FILES]
        w.qbt.add(te.FakeTorrent("c" * 40, "Movie.2020", alias, files))
        run = plan_convergence(w.cfg, w.cat, [w.qbt], scan=False)
        assert run.torrents == 3  # "c" was listed with its files
        assert _steps(run.plan) == set(), [(g.action, g.reason) for g in run.plan.groups]
        # (a group whose duplicates all wait plans nothing: the pass lists only groups with steps)
    finally:
        w.cat.close()


# --------------------------------------------------------------------------- the access rule


def _owned(w, seeding_owner, lib_owner):
    """``_library_copy`` with the seeding files and the library's copy given ((uid, gid), mode);
    the pools scanned after. Returns the seeding paths."""
    lib, _st, seeding = _library_copy(w)
    for paths, ((uid, gid), mode) in (([lib], lib_owner), (seeding, seeding_owner)):
        for p in paths:
            os.chown(p, uid, gid)
            os.chmod(p, mode)
    for p in w.cfg.pools:
        scan_pool(w.cat, p, w.cfg.scan)
    return seeding


def _planned_with_reasons(w, monkeypatch, **kw):
    """plan_convergence's plan, and what plan_group kept apart in it (the access rule's reasons)."""
    from qbhook.decide import converge

    apart = []
    real = converge.plan_group

    def spy(snap, group):
        conv = real(snap, group)
        apart.extend(conv.kept_apart if conv else ())
        return conv

    monkeypatch.setattr(converge, "plan_group", spy)
    return plan_convergence(w.cfg, w.cat, [w.qbt], **kw), apart


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_the_pass_keeps_apart_a_file_whose_owner_the_librarys_copy_would_take_write_from(
    tmpfs,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """The seeding file is qBittorrent's (1000, 0664), the library's copy Radarr's (2000, 0644): the
    pass reads both owners from the catalog and plans no step, with the planner's reason, instead of
    promising bytes the executor refuses to free at every run."""
    from qbhook.move.run import apply_converged

    w = te._make_world(tmpfs, tmp_path)
    try:
        seeding = _owned(w, ((1000, 1000), 0o664), ((2000, 2000), 0o644))
        run, apart = _planned_with_reasons(w, monkeypatch, scan=False)
        assert _steps(run.plan) == set() and run.plan.groups == []
        assert len(apart) == 1 and all(
            "is not converged: the library's copy would take write access from uid 1000 (owner 2000, group 2000" in a
            for a in apart
        ), apart
        done = apply_converged(w.cfg, w.cat, [w.qbt], w.executor(), scan=True, dry_run=False)
        assert done.planned.plan.groups == [] and w.journal.runs() == []
        assert len({os.lstat(p).st_ino for p in seeding}) == 1  # the two cross-seeds' one inode, untouched
    finally:
        w.cat.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_the_pass_converges_a_pair_the_access_rule_allows(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    w = te._make_world(tmpfs, tmp_path)
    try:
        _owned(w, ((1000, 1000), 0o664), ((1000, 1000), 0o664))
        run, apart = _planned_with_reasons(w, monkeypatch, scan=False)
        assert len(_steps(run.plan)) == 2 and apart == []
    finally:
        w.cat.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_catalog_that_knows_no_owner_yet_leaves_the_access_rule_to_the_executor(
    tmpfs,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """Rows written before the catalog kept owners (NULL): the pass plans the step as it did, the
    executor refuses it on its own stats; the next scan writes the owners and the pass keeps it apart."""
    from qbhook.move.run import apply_converged

    w = te._make_world(tmpfs, tmp_path)
    try:
        _owned(w, ((1000, 1000), 0o664), ((2000, 2000), 0o644))
        with w.cat.conn:
            w.cat.conn.execute("UPDATE inodes SET mode = NULL, uid = NULL, gid = NULL")  # as migrated
        run, apart = _planned_with_reasons(w, monkeypatch, scan=False)
        assert len(_steps(run.plan)) == 2 and apart == []
        refused = apply_converged(w.cfg, w.cat, [w.qbt], w.executor(), scan=False, dry_run=False)
        (g,) = refused.summary.groups
        assert g.status == "failed" and "would take write access from uid 1000" in g.reason
        run, apart = _planned_with_reasons(w, monkeypatch)  # scanned: the rescan writes the owners
        assert _steps(run.plan) == set() and len(apart) == 1  # one victim inode: the cross-seeds share it
        again = apply_converged(w.cfg, w.cat, [w.qbt], w.executor(), scan=False, dry_run=False)
        assert again.planned.plan.groups == [] and len(w.journal.runs()) == 1  # no run refused again
    finally:
        w.cat.close()
