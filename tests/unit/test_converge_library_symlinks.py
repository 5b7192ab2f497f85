"""A convergence never replaces a seeding file a library reaches through a symlink (R90).

A Jellyfin folder or an *arr in symlink mode uses the torrent's own file by a symbolic link: its
inode has no link outside the seeding roots, so by links alone it was a victim, and a relink onto
the *arr's imported copy (same bytes, same dataset) swapped the file the library reads for another
inode, with that inode's owner, mode and mtime. The planner (``converge.plan_group`` on the
snapshot's ``library``), the set-based pass (``plan_convergence``) and a plan in which nothing
moves (the snapshot walks the libraries when a convergence may be) all keep it.
"""

from __future__ import annotations

import os

import pytest

from qbhook.decide.converge_pass import plan_convergence
from qbhook.decide.planner import make_plan
from tests.helpers import write
from tests.unit import test_executor as te
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)


def _world(tmpfs, tmp_path, tagged: bool):  # noqa: F811
    """The executor's world, settled; the *arr's imported copy of the movie in the library (its own
    inode, 0666, old mtime), and a Jellyfin folder's symlink to H1's seeding file (0644). ``tagged``:
    the torrents carry ``~noHL``, so the group would move but stays for that symlink
    (``planner.library_use``); untagged, it stays for the policy, and no move made the snapshot walk.
    Returns (world, symlink, seeding paths)."""
    from qbhook.catalog.scan import scan_pool

    w = te._make_world(tmpfs, tmp_path)
    lib = write(w.stash / "media/Movie (2020)/Movie (2020).mkv", te.FILES[0][1])
    os.chmod(lib, 0o666)
    os.utime(lib, (1_600_000_000, 1_600_000_000))
    seeding = [os.path.join(w.save(h, "stash"), "Movie.2020/movie.mkv") for h in (te.H1, te.H2)]
    os.chmod(seeding[0], 0o644)
    sym = w.stash / "media/jelly/Movie (2020).mkv"
    os.makedirs(sym.parent)
    os.symlink(seeding[0], sym)
    for t in w.qbt.t.values():
        t.download_path = ""
        if tagged:
            t.tags = {"~noHL"}
    for p in w.cfg.pools:
        scan_pool(w.cat, p, w.cfg.scan)
    return w, sym, seeding


def _seen(path) -> tuple:
    st = os.stat(path)
    return st.st_ino, st.st_uid, st.st_gid, st.st_mode, st.st_mtime_ns


@pytest.mark.parametrize("tagged", [False, True], ids=["stays for the policy", "stays for the symlink"])
def test_a_planned_convergence_never_replaces_the_file_a_library_symlink_reaches(tmpfs, tmp_path, tagged):  # noqa: F811
    from qbhook.decide.snapshot import build_snapshot

    w, sym, seeding = _world(tmpfs, tmp_path, tagged)
    try:
        before = _seen(sym)
        plan = make_plan(build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy)
        (g,) = plan.groups
        assert g.action == "stay", (g.action, g.reason)
        assert f"is not converged: library symlink {sym} -> {seeding[0]} uses it" in g.reason
        w.executor().apply(plan)
        assert _seen(sym) == before  # the library's file: same inode, owner, mode and mtime
    finally:
        w.cat.close()


def test_the_converge_pass_never_replaces_the_file_a_library_symlink_reaches(tmpfs, tmp_path):  # noqa: F811
    from qbhook.move.run import apply_converged

    w, sym, _seeding = _world(tmpfs, tmp_path, tagged=False)
    try:
        before = _seen(sym)
        run = plan_convergence(w.cfg, w.cat, [w.qbt], scan=False)
        assert run.plan.groups == []
        done = apply_converged(w.cfg, w.cat, [w.qbt], w.executor(), scan=True, dry_run=False)
        assert done.planned.plan.groups == [] and w.journal.runs() == []
        assert _seen(sym) == before
    finally:
        w.cat.close()


def test_without_the_symlink_the_same_pair_converges(tmpfs, tmp_path):  # noqa: F811
    """The control: the rule keeps only what a symlink reaches."""
    from qbhook.decide.snapshot import build_snapshot

    w, sym, _seeding = _world(tmpfs, tmp_path, tagged=False)
    try:
        os.unlink(sym)
        (g,) = make_plan(build_snapshot(w.cfg, w.cat, [w.qbt]), w.cfg.policy).groups
        assert g.action == "converge" and len(g.steps) == 2
        assert len(plan_convergence(w.cfg, w.cat, [w.qbt], scan=False).plan.groups) == 1
    finally:
        w.cat.close()


# R91 F2: the plan's walk may be as old as a sweep (``serve``) or a saved plan's; a symlink a
# library made since reached a victim the batch then relinked. The batch walks again before it
# journals anything (``Executor._library_refused``).
SUB = "Movie.2020/sub/en.srt"


def _two_victims(tmpfs, tmp_path):  # noqa: F811
    """The executor's world, settled, with the *arr's copies of the movie and of its subtitle in the
    library (their own inodes): two victims, each seeded by H1 and H2 (one inode, two names).
    Returns (world, the converge plan, made with no library symlink)."""
    w = te._make_world(tmpfs, tmp_path)
    for rel, data in te.FILES[:2]:
        write(w.stash / "media/Movie (2020)" / os.path.basename(rel), data)
    plan = te.settled_plan(w)
    (g,) = plan.groups
    assert g.action == "converge" and len(g.steps) == 4, (g.action, g.reason)
    return w, plan


@pytest.mark.parametrize("onto", ["the movie's file", "the subtitle's folder"])
def test_a_library_symlink_made_after_the_plan_keeps_its_victim_and_the_rest_converges(tmpfs, tmp_path, onto):  # noqa: F811
    w, plan = _two_victims(tmpfs, tmp_path)
    try:
        h1, h2 = (w.save(h, "stash") for h in (te.H1, te.H2))
        if onto == "the movie's file":  # H1's name: its inode, so H2's name of it is kept too
            target, kept, relinked = os.path.join(h1, te.FILES[0][0]), te.FILES[0][0], SUB
        else:  # H2's folder only: H1's name of the same inode is kept too (every seeding name)
            target, kept, relinked = os.path.join(h2, "Movie.2020/sub"), SUB, te.FILES[0][0]
        sym = w.stash / "media/jelly/link"
        os.makedirs(sym.parent)
        os.symlink(target, sym)
        before = [_seen(os.path.join(h, kept)) for h in (h1, h2)]
        (g,) = w.executor().apply(plan).groups
        assert g.status == "failed", g.reason
        assert f"library symlink {sym} -> {target} uses" in g.reason and "\n" not in g.reason, g.reason
        assert [_seen(os.path.join(h, kept)) for h in (h1, h2)] == before  # the library's file, unchanged
        lib = os.stat(w.stash / "media/Movie (2020)" / os.path.basename(relinked)).st_ino
        assert [os.stat(os.path.join(h, relinked)).st_ino for h in (h1, h2)] == [lib, lib]
    finally:
        w.cat.close()


def test_a_library_walk_that_cannot_finish_relinks_nothing_of_the_batch(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    from qbhook.catalog import library_links
    from qbhook.errors import LibraryLinksUnseen

    w, plan = _two_victims(tmpfs, tmp_path)
    try:
        h1 = w.save(te.H1, "stash")
        before = [_seen(os.path.join(h1, rel)) for rel, _d in te.FILES[:2]]

        def unseen(cfg):
            raise LibraryLinksUnseen("cannot look for library symlinks in pool stash: /stash/media: denied")

        monkeypatch.setattr(library_links, "collect", unseen)
        (g,) = w.executor().apply(plan).groups
        assert g.status == "failed" and "cannot look for library symlinks" in g.reason, g.reason
        assert "nothing relinked" in g.reason and "\n" not in g.reason, g.reason
        assert [_seen(os.path.join(h1, rel)) for rel, _d in te.FILES[:2]] == before
        assert all(s.status != "intended" for s in w.journal.steps(w.journal.runs()[0].id))
    finally:
        w.cat.close()


def test_the_converge_pass_with_no_duplicate_walks_no_library(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    """R91 F4: nothing to converge, an unreadable library folder is no refusal (exit 3)."""
    from qbhook.catalog import library_links
    from qbhook.errors import LibraryLinksUnseen
    from qbhook.move.run import apply_converged

    w = te._make_world(tmpfs, tmp_path)  # H1 and H2 share their inodes: no duplicate content
    try:

        def unseen(cfg):
            raise LibraryLinksUnseen("cannot look for library symlinks in pool stash: /stash/media: denied")

        monkeypatch.setattr(library_links, "collect", unseen)
        assert plan_convergence(w.cfg, w.cat, [w.qbt], scan=True).plan.groups == []
        done = apply_converged(w.cfg, w.cat, [w.qbt], w.executor(), scan=False, dry_run=False)
        assert done.planned.plan.groups == []
    finally:
        w.cat.close()


def test_a_resume_whose_walk_fails_keeps_the_kills_relink_done(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    """R94: a batch closes its steps at its end, so a kill after a relink leaves it intended; a
    resume whose library walk then cannot finish refused every step, closed the relinked one
    failed and said "nothing relinked". It is closed done ("already"), the others failed, and the
    reason says "nothing more relinked"; its victim keeps H2's name (refused), so nothing is freed,
    and that is known (R96: not a lower bound)."""
    from qbhook.catalog import library_links
    from qbhook.errors import LibraryLinksUnseen

    w, plan = _two_victims(tmpfs, tmp_path)
    try:

        def kill(point, _gid, seq, _step):
            if point == "after_act" and seq == 0:
                raise te.Crash("killed after the first relink")

        with pytest.raises(te.Crash):
            w.executor(hook=kill).apply(plan)

        def unseen(_cfg):
            raise LibraryLinksUnseen("cannot look for library symlinks in pool stash: denied")

        monkeypatch.setattr(library_links, "collect", unseen)
        (run,) = w.executor().resume()
        (g,) = run.groups
        assert g.status == "failed" and g.reason.endswith("nothing more relinked"), g.reason
        assert (g.bytes_freed, g.bytes_freed_at_least) == (0, False)
        steps = {s.seq: s for s in w.journal.steps(w.journal.runs()[0].id)}
        assert steps[0].status == "done" and steps[0].result["status"] == "already"
        assert all(steps[q].status == "failed" for q in (1, 2, 3))
    finally:
        w.cat.close()


def _killed_after_every_relink(w, plan):
    def kill(point, _gid, seq, _step):
        if point == "after_act" and seq == 3:  # the last relink made, the batch not closed
            raise te.Crash("killed after every relink")

    with pytest.raises(te.Crash):
        w.executor(hook=kill).apply(plan)


def _killed_before_any_relink(w, plan):
    def kill(point, _gid, seq, _step):
        if point == "after_intend" and seq == 0:
            raise te.Crash("killed before any relink")

    with pytest.raises(te.Crash):
        w.executor(hook=kill).apply(plan)


def _unseen(monkeypatch):
    from qbhook.catalog import library_links
    from qbhook.errors import LibraryLinksUnseen

    def unseen(_cfg):
        raise LibraryLinksUnseen("cannot look for library symlinks in pool stash: denied")

    monkeypatch.setattr(library_links, "collect", unseen)


@pytest.mark.parametrize("walk", ["unseen", "seen"])
def test_a_resume_after_every_relink_is_done_whether_the_walk_finishes_or_not(tmpfs, tmp_path, monkeypatch, walk):  # noqa: F811
    """R96 F1, F2: killed after every relink, before its batch closed: a resume whose walk could
    not finish failed the group ("nothing more relinked", freed "at least 0") though nothing was
    left to do, and left the catalog naming the freed victims at the relinked names, so the next
    plan relinked them all again. Now it ends as a resume whose walk finishes: done, the victims'
    bytes counted, every name on its kept inode in the catalog."""
    from qbhook.decide.converge_pass import plan_convergence

    w, plan = _two_victims(tmpfs, tmp_path)
    try:
        _killed_after_every_relink(w, plan)
        if walk == "unseen":
            _unseen(monkeypatch)
        (run,) = w.executor().resume()
        (g,) = run.groups
        assert (g.status, g.reason, g.bytes_freed_at_least) == ("done", None, False), g.reason
        assert g.bytes_freed == sum(len(d) for _r, d in te.FILES[:2])
        steps = w.journal.steps(w.journal.runs()[0].id)
        assert [(s.status, s.result["status"]) for s in steps] == [("done", "already")] * 4
        for s in plan.groups[0].steps:
            assert w.cat.inode_by_path(s.path).ino == os.lstat(s.path).st_ino == s.keep.ino
        monkeypatch.undo()
        assert plan_convergence(w.cfg, w.cat, [w.qbt], scan=False).plan.groups == []
    finally:
        w.cat.close()


def test_a_resume_before_any_relink_whose_walk_fails_says_nothing_relinked(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    """R96 F3: killed after its intents, before any relink: "nothing more relinked" claimed a
    relink that never was."""
    w, plan = _two_victims(tmpfs, tmp_path)
    try:
        _killed_before_any_relink(w, plan)
        _unseen(monkeypatch)
        (run,) = w.executor().resume()
        (g,) = run.groups
        assert g.status == "failed" and g.reason.endswith("is unseen; nothing relinked"), g.reason
    finally:
        w.cat.close()


def test_a_name_holding_another_devices_inode_of_the_kept_number_is_not_taken_as_relinked(tmpfs, tmp_path, monkeypatch):  # noqa: F811
    """R96 suspicion: "holds the kept inode" compared the inode number and size only, where the
    relinker compares the device too (ZFS datasets repeat inode numbers): a name still the victim,
    shown as another device's file of the kept number, was closed done."""
    from qbhook.move import executor as ex

    w, plan = _two_victims(tmpfs, tmp_path)
    try:
        _killed_before_any_relink(w, plan)
        _unseen(monkeypatch)
        s0 = plan.groups[0].steps[0]
        real = ex._probe_stat

        def probe(reader, path):
            st = real(reader, path)
            if path == s0.path:  # another filesystem's file at the name: the kept inode's number and size
                t = list(st)
                t[1], t[2] = s0.keep.ino, st.st_dev + 1
                return os.stat_result(t)
            return st

        monkeypatch.setattr(ex, "_probe_stat", probe)
        w.executor().resume()
        steps = w.journal.steps(w.journal.runs()[0].id)
        assert steps[0].status == "failed" and os.lstat(s0.path).st_ino == s0.ino
    finally:
        w.cat.close()
