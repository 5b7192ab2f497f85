"""The executor's ``repair`` step against the fake qBittorrent (the real one: tests/integration/test_repair_real.py):
links of the library's inodes, stop before the recheck, start only at 100 %, a crash between the
view and the recheck resumed, a recheck under 100 % left stopped with what it linked removed."""

from __future__ import annotations

import os

import pytest

from qbhook.decide.facts import PoolFact
from qbhook.decide.repair import CatalogCopy, MissingTorrent, RepairFacts, RepairFile, plan_repairs
from qbhook.move.executor import Executor, build_executor
from tests.unit.test_executor import (  # noqa: F401  (fixture)
    FILES,
    H1,
    H2,
    AtmOffMovesQbt,
    Crash,
    IncompleteFolderQbt,
    b3,
    world,
)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)


def _delete_seed_files(w, cross_seed: bool = True) -> dict[str, str]:
    """H1's seed files (and the cross-seed's, unless ``cross_seed`` is False) are deleted; the
    library kept a link of each (non-empty) one. -> rel: library path."""
    lib = {}
    for rel, data in FILES:
        seed = os.path.join(w.seed_s, rel)
        if data:
            lib[rel] = os.path.join(w.lib, os.path.basename(rel))
            os.makedirs(w.lib, exist_ok=True)
            os.link(seed, lib[rel])
        os.unlink(seed)
        if cross_seed:
            os.unlink(os.path.join(w.seed_s, "cross-seed", rel))
    return lib


def _lose_files(w) -> dict[str, str]:
    """H1's seed files are deleted; the library kept a link of each (non-empty) one. -> rel: library path."""
    lib = _delete_seed_files(w)
    t = w.qbt.t[H1]
    t.progress, t.download_path = 0.0, ""
    t.transient = "missingFiles"  # what qBittorrent shows of a torrent whose files vanished
    del w.qbt.t["b" * 40]
    return lib


def _plan(w, lib: dict[str, str]):
    return _missing_pair(w, lib, ((H1, "qbt", w.seed_s),))


def _linked_from_library(w, lib) -> None:
    for rel, data in FILES:
        st = os.lstat(os.path.join(w.seed_s, rel))
        assert st.st_size == len(data)
        if data:
            assert st.st_ino == os.lstat(lib[rel]).st_ino and st.st_nlink == 2  # a link, not a copy


def test_repair_links_the_library_inodes_rechecks_stopped_and_starts_at_100(world):  # noqa: F811
    w = world
    lib = _lose_files(w)
    summary = w.executor().apply(_plan(w, lib))
    assert summary.groups_done and not summary.groups_failed and summary.bytes_copied == 0
    _linked_from_library(w, lib)
    calls = [c[0] for c in w.qbt.calls]
    assert calls == ["stop", "recheck", "start"]  # same save path: no setLocation
    assert w.qbt.violations == []
    assert not w.qbt.t[H1].stopped and w.qbt.t[H1].progress == 1.0


def test_a_file_renamed_in_the_client_after_verify_view_is_never_rechecked_or_moved(world):  # noqa: F811
    """R24's finding for relocations, in a repair: a file renamed in qBittorrent after the view
    was verified would be missing from it; the repair refuses before its move and recheck, and
    removes what it linked."""
    w = world
    lib = _lose_files(w)
    old, new = FILES[0][0], FILES[0][0] + ".renamed"

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "repair":
            t = w.qbt.t[H1]
            t.files = [(new if n == old else n, sz, p) for n, sz, p in t.files]

    summary = w.executor(hook=hook).apply(_plan(w, lib))
    (why,) = summary.groups_failed.values()
    assert f"refusing to repair {H1}: its files changed" in why and new in why and "\n" not in why
    assert [c[0] for c in w.qbt.calls if c[0] in ("recheck", "set_location", "start")] == []
    assert w.qbt.t[H1].stopped and w.qbt.violations == []
    for rel, _data in FILES:
        assert not os.path.lexists(os.path.join(w.seed_s, rel))  # its links removed by the undo


def test_an_atm_torrent_with_an_incomplete_folder_is_repaired_atm_off_first(world):  # noqa: F811
    """Under ATM it reports its category's download path, and setDownloadPath is refused: the
    repair asked for it first and failed on every such torrent. ATM off, then the path cleared
    (a recheck under 100 % would move the library's links into the incomplete folder)."""
    w = world
    lib = _lose_files(w)
    q = IncompleteFolderQbt(w.seed_s, "/downloads/incomplete/movies", copies_in=True)
    q.t, w.qbt = w.qbt.t, q
    q.t[H1].auto_tmm = True
    summary = w.executor().apply(_plan(w, lib))
    assert summary.groups_done and not summary.groups_failed, summary.groups_failed
    _linked_from_library(w, lib)
    assert [c[0] for c in q.calls] == ["stop", "set_auto_management", "set_download_path", "recheck", "start"]
    assert q.torrent(H1).download_path == "" and q.violations == []


def test_a_repair_whose_atm_off_would_move_the_torrent_is_refused_before_it_acts(world):  # noqa: F811
    """R24: turning ATM off moves a torrent whose data is not at its category's path (the repair
    turned it off after stopping it, and linking its view). Asked first, the repair does nothing."""
    w = world
    lib = _lose_files(w)
    q = AtmOffMovesQbt({H1})
    q.t, w.qbt = w.qbt.t, q
    q.t[H1].auto_tmm = True
    summary = w.executor().apply(_plan(w, lib))
    assert not summary.groups_done, summary.groups
    (reason,) = summary.groups_failed.values()
    assert reason.startswith("not started: turning ATM off for " + H1), reason
    assert q.calls == [] and q.violations == [] and q.t[H1].auto_tmm is True
    assert not os.path.exists(os.path.join(w.seed_s, FILES[0][0]))  # no view linked


def test_a_kill_between_view_and_recheck_is_resumed_to_the_same_end(world):  # noqa: F811
    w = world
    lib = _lose_files(w)
    plan = _plan(w, lib)
    seq = [s.kind for s in plan.groups[0].steps].index("repair")

    def kill(point, _gid, at, _step):
        if point == "after_intend" and at == seq:
            raise Crash()

    with pytest.raises(Crash):
        build_executor(
            w.cfg, w.cat, {"qbt": w.qbt}, w.journal, sleep=w.clock.sleep, clock=w.clock, hook=kill, poll_initial_s=0.5
        ).apply(plan)
    # The view is built and verified, qBittorrent asked nothing but the stop before the first link.
    assert w.qbt.calls == [("stop", H1)]
    (run,) = w.executor().resume()
    assert run.groups_done and not run.groups_failed
    _linked_from_library(w, lib)
    # Stopped again: the resumed run cannot tell a missingFiles torrent it stopped from one started since.
    assert [c[0] for c in w.qbt.calls] == ["stop", "stop", "recheck", "start"] and w.qbt.violations == []


def test_a_recheck_under_100_percent_leaves_the_torrent_stopped(world):  # noqa: F811
    w = world
    lib = _lose_files(w)
    w.qbt.fail_at[w.seed_s] = 0.5
    summary = w.executor().apply(_plan(w, lib))
    (why,) = summary.groups_failed.values()
    assert "50.0%" in why and "stopped" in why
    assert w.qbt.t[H1].stopped and w.qbt.count("start") == 0 and w.qbt.violations == []


def test_a_stopped_torrent_showing_100_percent_is_rechecked_before_it_starts(world):  # noqa: F811
    """A torrent a person stopped before its files vanished still shows 100 % (qBittorrent does not
    look while it is stopped). The repair took that for a previous attempt's finished recheck and
    started it unchecked: every torrent reaches 100 % after a recheck, or is not started."""
    w = world
    lib = _lose_files(w)
    t = w.qbt.t[H1]
    t.progress, t.transient, t.stopped = 1.0, None, True
    plan = _plan(w, lib)
    summary = w.executor().apply(plan)
    assert summary.groups_done and not summary.groups_failed
    assert [c[0] for c in w.qbt.calls] == ["recheck", "start"] and w.qbt.violations == []


# -- a helper's review: nothing is put under a torrent that runs, nor linked unverified


def test_a_torrent_started_since_the_plan_gets_nothing_linked_under_it(world):  # noqa: F811
    # The plan saw it missingFiles; a person started it since (a force-recheck leaves it
    # downloading): arriving blocks would be written into the library inodes linked there.
    w = world
    lib = _lose_files(w)
    plan = _plan(w, lib)
    t = w.qbt.t[H1]
    t.transient, t.stopped = None, False  # downloading at 0 %
    summary = w.executor().apply(plan)
    (why,) = summary.groups_failed.values()
    assert "it is downloading now, not stopped" in why
    for rel, _data in FILES:
        assert not os.path.lexists(os.path.join(w.seed_s, rel))  # nothing linked under it
    assert w.qbt.calls == []


def test_a_library_file_rewritten_since_the_plan_is_never_linked(world):  # noqa: F811
    # A tagger rewrote the chosen catalog copy in place at the same size after the plan:
    # linked, a force-recheck would later download the differing pieces into the library file.
    w = world
    lib = _lose_files(w)
    plan = _plan(w, lib)
    rel, data = next((r, d) for r, d in FILES if d)
    with open(lib[rel], "r+b") as f:
        f.write(bytes([data[0] ^ 0xFF]))  # same inode, same size, other content
    summary = w.executor().apply(plan)
    (why,) = summary.groups_failed.values()
    assert "no longer holds the planned content" in why
    assert not os.path.lexists(os.path.join(w.seed_s, rel))
    assert w.qbt.count("start") == 0 and w.qbt.count("recheck") == 0


def test_a_view_file_written_during_the_recheck_leaves_the_torrent_stopped(world, monkeypatch):  # noqa: F811
    # The backstop runs before the start, as for a relocation: a write into a view file (a
    # library inode) after verify_view stops the repair there, the torrent left stopped.
    from qbhook import notify

    w = world
    lib = _lose_files(w)
    plan = _plan(w, lib)
    alerts = []
    monkeypatch.setattr(notify, "emit", lambda kind, text, severity="info": alerts.append((kind, severity)))
    rel = next(r for r, d in FILES if d)

    def touch(point, _gid, _at, step):
        if point == "poll" and step.kind == "repair":
            os.utime(lib[rel], ns=(1, 1))  # a write's trace: mtime and ctime move

    summary = build_executor(
        w.cfg, w.cat, {"qbt": w.qbt}, w.journal, sleep=w.clock.sleep, clock=w.clock, hook=touch, poll_initial_s=0.5
    ).apply(plan)
    (why,) = summary.groups_failed.values()
    assert "stopped where it is" in why
    assert w.qbt.t[H1].stopped and w.qbt.count("start") == 0 and ("guard", "failure") in alerts
    # Its links taken back all the same: a person's start must not write into the library's files.
    assert "the 3 file(s) it linked or made were removed" in why
    assert not any(os.path.lexists(os.path.join(w.seed_s, r)) for r, _d in FILES)


# -- rTorrent: a paused item (d.state 1, inactive) reads as stopped


@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
@pytest.mark.parametrize("found", [1.0, 0.5])
def test_a_paused_rtorrent_item_is_stopped_before_its_recheck(world, monkeypatch, found, closed):  # noqa: F811
    # Paused normalises to stoppedUP, so the repair sent d.check_hash alone; rTorrent's hash_done
    # then resumes any item with d.state 1: running before the backstop, and under 100 % it
    # downloaded into the view (catalog copies, maybe library files). Closed but started (d.state
    # 1, d.is_open 0: a d.close or d.pause of it, R26) is paused too: it read "closed", not paused.
    from qbhook.clients.rtorrent import RtorrentClient
    from qbhook.move.executor import Executor
    from qbhook.pathmap import PathMap
    from tests.unit.rtorrent.test_paused_relocation import StatefulRt

    w = world
    lib = _delete_seed_files(w, cross_seed=False)
    rpc = StatefulRt()
    content = os.path.join(w.seed_s, "Movie.2020")
    rpc.add(H1, "Movie.2020", content, [(rel.split("/", 1)[1], len(d)) for rel, d in FILES], state=1, active=0)
    rpc.fail_at[content] = found
    if closed:
        rpc.items[H1.upper()]["d.is_open"] = 0
    rt = RtorrentClient("qbt", "/run/rt.sock", PathMap(), sleep=lambda s: None, clock=w.clock)
    rt._rpc = rpc
    modes, at_backstop = [], []  # the item during the repair's polls; at each backstop
    backstop = Executor._check_views_unchanged
    monkeypatch.setattr(
        Executor, "_check_views_unchanged", lambda ex, st: (at_backstop.append(rpc.mode(H1)), backstop(ex, st))[1]
    )

    def hook(point, _gid, _at, step):
        if point == "poll" and step.kind == "repair":
            modes.append(rpc.mode(H1))

    summary = build_executor(
        w.cfg, w.cat, {"qbt": rt}, w.journal, sleep=w.clock.sleep, clock=w.clock, hook=hook, poll_initial_s=0.5
    ).apply(_plan(w, lib))
    a = H1[:4].upper()
    assert rpc.calls[:3] == [f"d.stop {a}", f"d.save_full_session {a}", f"d.check_hash {a}"]
    assert "started" not in modes + at_backstop[:1]  # never running during the check nor at the backstop
    if found == 1.0:
        assert summary.groups_done and rpc.calls[-2:] == [f"d.start {a}", f"d.save_full_session {a}"]
        assert rpc.mode(H1) == "started"
    else:
        assert summary.groups_failed and rpc.mode(H1) == "stopped"
    mode = rpc.mode(H1)
    rpc.restart()  # rTorrent killed now: its session holds the item as left (R43)
    assert rpc.mode(H1) == mode


# -- a failed repair takes back what it put under its torrent (review R3-2)


def _library_facts(lib) -> dict:
    out = {}
    for rel, p in lib.items():
        st = os.lstat(p)
        with open(p, "rb") as f:
            out[rel] = (st.st_dev, st.st_ino, st.st_nlink, st.st_mtime_ns, f.read())
    return out


def test_a_recheck_under_100_percent_removes_the_links_it_made(world):  # noqa: F811
    # Left linked, the stopped torrent (no longer missingFiles: repair refuses it) sits on the
    # library's inodes, and one start downloads the failing pieces into them.
    w = world
    lib = _lose_files(w)
    before = _library_facts(lib)
    w.qbt.fail_at[w.seed_s] = 0.97
    summary = w.executor().apply(_plan(w, lib))
    (why,) = summary.groups_failed.values()
    assert "97.0%" in why and "the 3 file(s) it linked or made were removed" in why
    assert (
        f"; NOT AS FOUND: torrent {H1} is stoppedDL at {w.seed_s}: stopped by the repair; " in why
    )  # last: its own line
    for rel, _data in FILES:
        assert not os.path.lexists(os.path.join(w.seed_s, rel))  # it misses its files again: repairable
    after = _library_facts(lib)
    assert after == {rel: (dev, ino, 1, mtime, data) for rel, (dev, ino, _n, mtime, data) in before.items()}
    assert w.qbt.t[H1].stopped and w.qbt.count("start") == 0 and w.qbt.violations == []
    run = w.journal.runs()[0]
    rows = w.journal.steps(run.id)
    assert [r.status for r in rows if r.kind in ("link", "mkempty")] == ["undone"] * 3
    assert not [r for r in rows if r.kind == "leftover_view"]


def test_a_link_replaced_before_the_undo_is_kept_and_recorded_as_a_leftover(world):  # noqa: F811
    # Another file took a linked name during the recheck: not the inode the repair made, never
    # removed; recorded as a leftover view and named. The other links still go.
    w = world
    lib, rel, view, swap = _replaced_during_the_recheck(w)

    summary = build_executor(
        w.cfg, w.cat, {"qbt": w.qbt}, w.journal, sleep=w.clock.sleep, clock=w.clock, hook=swap, poll_initial_s=0.5
    ).apply(_plan(w, lib))
    (why,) = summary.groups_failed.values()
    assert "the 2 file(s) it linked or made were removed" in why
    assert f"1 kept (not provably the file it made any more; recorded as leftover views): {view}" in why
    with open(view, "rb") as f:
        assert f.read() == b"someone else's file"
    assert [os.path.lexists(os.path.join(w.seed_s, r)) for r, _d in FILES] == [r == rel for r, _d in FILES]
    (left,) = [r for r in w.journal.steps(w.journal.runs()[0].id) if r.kind == "leftover_view"]
    assert left.args["path"] == view and left.args["ino"] == os.lstat(lib[rel]).st_ino
    assert w.qbt.t[H1].stopped and w.qbt.count("start") == 0


def test_a_failed_repairs_close_reads_the_runs_journal_once(world, monkeypatch):  # noqa: F811
    # The close needs the run's rows for what it made, the leftovers recorded already, its Repair
    # row and how it found its torrent: each read is every row of the run (a lost disk's run holds
    # thousands of repair groups), and one read serves them all. A leftover the close records
    # itself is still recorded once (a link replaced during the recheck, as above).
    w = world
    lib, rel, view, swap = _replaced_during_the_recheck(w)

    reads, closing = [], []
    steps, close = w.journal.steps, Executor._close_failed_repair

    def counted(run):
        if closing:
            reads.append(run)
        return steps(run)

    def watched(self, st, reason):
        closing.append(st)
        try:
            close(self, st, reason)
        finally:
            closing.pop()

    monkeypatch.setattr(w.journal, "steps", counted)
    monkeypatch.setattr(Executor, "_close_failed_repair", watched)
    summary = w.executor(hook=swap).apply(_plan(w, lib))
    (why,) = summary.groups_failed.values()
    assert "the 2 file(s) it linked or made were removed" in why and f"recorded as leftover views): {view}" in why
    assert f"NOT AS FOUND: torrent {H1} is stoppedDL" in why  # its Repair row and found state were read
    assert len(reads) == 1
    (left,) = [r for r in steps(w.journal.runs()[0].id) if r.kind == "leftover_view"]
    assert left.args["path"] == view


def test_a_failure_after_the_first_link_removes_it_and_stops_the_torrent(world):  # noqa: F811
    # A person started the torrent after the first link: the next one refuses, and the first is
    # taken back (the torrent stopped first: it would write into it).
    w = world
    lib = _lose_files(w)
    plan = _plan(w, lib)
    first = next(i for i, s in enumerate(plan.groups[0].steps) if s.kind == "link")

    def start(point, _gid, at, _step):
        if point == "after_act" and at == first:
            t = w.qbt.t[H1]
            t.transient, t.stopped = None, False  # downloading

    summary = build_executor(
        w.cfg, w.cat, {"qbt": w.qbt}, w.journal, sleep=w.clock.sleep, clock=w.clock, hook=start, poll_initial_s=0.5
    ).apply(plan)
    (why,) = summary.groups_failed.values()
    assert "it is downloading now, not stopped" in why and "the 1 file(s) it linked or made were removed" in why
    for rel, _data in FILES:
        assert not os.path.lexists(os.path.join(w.seed_s, rel))
    assert all(os.lstat(p).st_nlink == 1 for p in lib.values())
    assert w.qbt.t[H1].stopped and [c[0] for c in w.qbt.calls] == ["stop", "stop"]


def test_the_torrent_is_stopped_before_the_first_file_is_put_under_it(world, monkeypatch):  # noqa: F811
    # A missingFiles torrent may be a started one: the first linked file is one it could write into.
    w = world
    lib = _lose_files(w)
    seen = []
    stop = w.qbt.stop
    monkeypatch.setattr(
        w.qbt, "stop", lambda h: (seen.append([os.path.lexists(os.path.join(w.seed_s, r)) for r, _d in FILES]), stop(h))
    )
    summary = w.executor().apply(_plan(w, lib))
    assert summary.groups_done and not summary.groups_failed
    assert seen[0] == [False] * len(FILES)  # the first stop came before any file was there
    assert [c[0] for c in w.qbt.calls] == ["stop", "recheck", "start"] and w.qbt.violations == []


def test_a_view_on_another_device_than_its_act_proved_is_not_removed(world):  # noqa: F811
    # Same inode number, another device (a mount over the folder since): not the view qbhook made.
    from qbhook.errors import ViewReleased
    from qbhook.move import fsops

    w = world
    lib = _lose_files(w)
    rel = next(r for r, d in FILES if d)
    view = os.path.join(w.seed_s, rel)
    os.link(lib[rel], view)
    st = os.lstat(view)
    kw = dict(ino=st.st_ino, size=st.st_size, keep=lib[rel], blake3_hex=None, roots=w.cfg.anchored_seeding_roots)
    kw["keep_roots"] = tuple(p.path for p in w.cfg.pools)
    with pytest.raises(ViewReleased, match="no longer the view qbhook made"):
        fsops.remove_leftover_view(view, dev=st.st_dev + 1, **kw)
    assert os.path.lexists(view)
    assert fsops.remove_leftover_view(view, dev=st.st_dev, **kw)["status"] == "removed"
    assert os.lstat(lib[rel]).st_nlink == 1


def _killed_in_the_undo(w, monkeypatch) -> dict[str, str]:
    """H1's repair fails its recheck (97 %) and is SIGKILLed (``Crash``) in its undo, right after
    the first unlink, before that step was journaled undone; the journal then works again.
    -> ``_lose_files``'s answer."""
    lib = _lose_files(w)
    w.qbt.fail_at[w.seed_s] = 0.97
    undone = w.journal.undone

    def killed(step_id, result=None):
        raise Crash()

    monkeypatch.setattr(w.journal, "undone", killed)
    with pytest.raises(Crash):
        w.executor().apply(_plan(w, lib))
    monkeypatch.setattr(w.journal, "undone", undone)
    return lib


def test_a_kill_during_the_undo_is_finished_by_resume(world, monkeypatch):  # noqa: F811
    # Killed after the first unlink, before its step was journaled undone: resume closes the
    # failed group again, that file found gone (counted removed), the others removed.
    w = world
    lib = _killed_in_the_undo(w, monkeypatch)
    assert sum(os.path.lexists(os.path.join(w.seed_s, r)) for r, _d in FILES) == len(FILES) - 1
    (run,) = w.executor().resume()
    (why,) = run.groups_failed.values()
    assert "the 3 file(s) it linked or made were removed" in why
    assert not any(os.path.lexists(os.path.join(w.seed_s, r)) for r, _d in FILES)
    assert all(os.lstat(p).st_nlink == 1 for p in lib.values())
    assert w.qbt.t[H1].stopped and w.qbt.count("start") == 0


def _missing_pair(w, lib, places: tuple[tuple[str, str, str], ...]):
    """A repair plan for the torrents ``places`` names (hash, client instance, save path), each
    missing the whole of ``FILES``, rebuilt from the library's links at ``lib``."""
    fsid = w.cat.fsid(w.cat.fs_for_path(w.seed_s))
    pools = (
        PoolFact("stash", "primary", str(w.stash), w.seed_s, fsid, 0),
        PoolFact("pool", "cold", str(w.pool), w.seed_p, w.cat.fsid(w.cat.fs_for_path(w.seed_p)), 0),
    )
    files = tuple(RepairFile(i, rel, len(d), 1, b3(d) if d else None) for i, (rel, d) in enumerate(FILES))
    copies = {(len(d), b3(d)): (CatalogCopy(lib[rel], fsid, os.lstat(lib[rel]).st_ino),) for rel, d in FILES if d}
    ts = tuple(MissingTorrent(h, inst, "Movie.2020", "missingFiles", save, files) for h, inst, save in places)
    plan, refused = plan_repairs(RepairFacts(ts, pools, copies, {}))
    assert not refused and len(plan.groups) == len(places)
    return plan


def test_a_failed_cross_seed_repair_keeps_the_links_its_sibling_group_made(world):  # noqa: F811
    """Two torrents cross-seeding the same files at the same save path, both missingFiles: two
    repair groups linking the same paths. H1's links its files and seeds; H2's link steps find them
    there (``already``) and its recheck fails: its undo must not remove the files H1 seeds on."""
    w = world
    lib = _delete_seed_files(w)
    for h in (H1, H2):
        t = w.qbt.t[h]
        t.save_path, t.progress, t.download_path, t.transient, t.stopped = w.seed_s, 0.0, "", "missingFiles", False
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s)))
    g1, g2 = (g.group_id for g in plan.groups)

    def hook(point, gid, _seq, step):
        if point == "before" and gid == g2 and step.kind == "repair":
            w.qbt.fail_at[w.seed_s] = 0.5  # only H2's recheck ends under 100 %

    summary = build_executor(
        w.cfg, w.cat, {"qbt": w.qbt}, w.journal, sleep=w.clock.sleep, clock=w.clock, hook=hook, poll_initial_s=0.5
    ).apply(plan)
    assert summary.groups_done == [g1] and list(summary.groups_failed) == [g2]
    assert not w.qbt.t[H1].stopped
    assert all(os.path.lexists(os.path.join(w.seed_s, rel)) for rel, _ in FILES)


def test_one_hash_in_two_clients_is_two_repairs_and_one_failing_keeps_the_others_links(world):  # noqa: F811
    """The same torrent in two clients, each at its own save path, both missing its files: two
    groups with their own ids; the second's failed recheck undoes only its own links."""
    import copy

    from tests.unit.test_executor import FakeQbt

    w = world
    lib = _delete_seed_files(w)
    q2 = FakeQbt(name="qbt2")
    t1 = w.qbt.t[H1]
    t1.progress, t1.download_path, t1.transient, t1.stopped = 0.0, "", "missingFiles", False
    t2 = copy.deepcopy(t1)
    t2.save_path = os.path.join(w.seed_s, "cross-seed")
    q2.add(t2)
    del w.qbt.t[H2]
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H1, "qbt2", t2.save_path)))
    g1, g2 = (g.group_id for g in plan.groups)
    assert g1 != g2
    q2.fail_at[t2.save_path] = 0.5  # the second copy's recheck ends under 100 %
    summary = build_executor(
        w.cfg, w.cat, {"qbt": w.qbt, "qbt2": q2}, w.journal, sleep=w.clock.sleep, clock=w.clock, poll_initial_s=0.5
    ).apply(plan)
    assert summary.groups_done == [g1] and list(summary.groups_failed) == [g2]
    assert all(os.path.lexists(os.path.join(w.seed_s, rel)) for rel, _ in FILES)
    assert not any(os.path.lexists(os.path.join(t2.save_path, rel)) for rel, d in FILES if d)


def _replaced_during_the_recheck(w):
    """A repair whose recheck ends at 97 %, and a hook that puts another file at its first linked
    name while the recheck runs: -> (library, that name relative, its path, the hook)."""
    lib = _lose_files(w)
    w.qbt.fail_at[w.seed_s] = 0.97
    rel = next(r for r, d in FILES if d)
    view = os.path.join(w.seed_s, rel)

    def swap(point, _gid, _at, step):
        if point == "poll" and step.kind == "repair" and os.lstat(view).st_nlink == 2:
            with open(view + ".new", "wb") as f:
                f.write(b"someone else's file")
            os.replace(view + ".new", view)

    return lib, rel, view, swap
