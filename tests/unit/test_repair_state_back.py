"""A failed repair's torrent as it was found, or one line saying how it is not (``NOT_AS_FOUND``).

Before its setLocation a failure gives back what the repair changed (ATM, the download path; an
rTorrent item found paused is paused again); after it the save path goes back, as the move
executor's rollback does. What it cannot give back (a torrent qBittorrent showed missingFiles,
which does not say whether it ran; one rechecked under 100 %; a save path the client refused to
put back) is one clause, last in the group's reason: the run's output prints it on a line of its
own, the journal keeps it, and ``qbhook status`` lists it under "Needs you"."""

from __future__ import annotations

import os

from qbhook.decide.repair import NOT_AS_FOUND
from qbhook.move.executor import build_executor
from tests.unit.test_executor import FILES, H1, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_repair_executor import _delete_seed_files, _killed_in_the_undo, _lose_files, _plan
from tests.unit.test_repair_undo_gaps import _move_back_refused, _relocating_plan

MISSING_CLAUSE = (
    "stopped by the repair; qBittorrent showed it missingFiles, which does not say whether it ran: "
    "start it yourself if it did"
)


def _needs_you(w) -> list[str]:
    from qbhook.events.status import needs_person

    lines = needs_person(w.cfg, w.cat.conn, pools={}, server=None, now=w.clock())
    return [line for line in lines if line.startswith("repair ")]


def test_a_set_location_refused_gives_the_download_path_back_and_says_it_left_it_stopped(world):  # noqa: F811
    # Failed at its setLocation: the download path it cleared before the move stayed cleared
    # (only a moved-back torrent got its settings back).
    w = world
    lib = _lose_files(w)
    plan, to_path = _relocating_plan(w, lib)
    w.qbt.t[H1].download_path = "/downloads/incomplete"
    w.qbt.refuse_set_location_to.add(to_path)
    summary = w.executor().apply(plan)
    (why,) = summary.groups_failed.values()
    assert "setLocation to" in why and "refused" in why
    t = w.qbt.torrent(H1)
    assert t.save_path == w.seed_s and t.download_path == "/downloads/incomplete"
    assert [c for c in w.qbt.calls if c[0] == "set_download_path"] == [
        ("set_download_path", H1, ""),
        ("set_download_path", H1, "/downloads/incomplete"),
    ]
    assert why.endswith(f"{NOT_AS_FOUND}: torrent {H1} is missingFiles at {w.seed_s}: {MISSING_CLAUSE}")
    assert w.qbt.count("start") == 0  # never a start of one a person may have stopped


def test_a_move_back_refused_is_one_needs_you_line_in_status(world):  # noqa: F811
    # Pointed at the view's folder, now empty again: said last in the reason, so status lists it.
    w = world
    plan, to_path, why = _move_back_refused(w)
    clause = (
        f"{NOT_AS_FOUND}: torrent {H1} is stoppedDL at {to_path}: its save path could not be put back to {w.seed_s}"
    )
    assert clause in why and why.endswith(f"; set its location to {w.seed_s} yourself")
    gid = plan.groups[0].group_id
    assert w.journal.group_status(gid) == ("failed", why)
    (line,) = _needs_you(w)
    assert line.startswith(f"repair {gid}: {clause}") and "\n" not in line


def test_a_recheck_under_100_percent_is_a_needs_you_line_until_a_repair_runs_again(world):  # noqa: F811
    w = world
    lib = _lose_files(w)
    w.qbt.fail_at[w.seed_s] = 0.5
    plan = _plan(w, lib)
    w.executor().apply(plan)
    gid = plan.groups[0].group_id
    assert _needs_you(w) == [f"repair {gid}: {NOT_AS_FOUND}: torrent {H1} is stoppedDL at {w.seed_s}: {MISSING_CLAUSE}"]
    # Retried and repaired: the group's row is replaced, the line goes.
    del w.qbt.fail_at[w.seed_s]
    w.qbt.t[H1].transient = "missingFiles"
    assert w.executor().apply(_plan(w, lib)).groups_done == [gid]
    assert _needs_you(w) == []


def test_a_kill_during_the_close_keeps_the_line_on_resume(world, monkeypatch):  # noqa: F811
    # How the torrent was found is journaled before the first stop: the resumed close says it too.
    w = world
    _killed_in_the_undo(w, monkeypatch)
    (run,) = w.executor().resume()
    (why,) = run.groups_failed.values()
    assert why.endswith(f"{NOT_AS_FOUND}: torrent {H1} is stoppedDL at {w.seed_s}: {MISSING_CLAUSE}")
    assert len(_needs_you(w)) == 1


def test_the_repair_output_prints_the_clause_on_a_line_of_its_own(capsys):
    from qbhook.cli.repair import _print

    clause = f"{NOT_AS_FOUND}: torrent {H1} is stoppedDL at /s: {MISSING_CLAUSE}"
    run = {"groups_failed": {"g1": f"repair failed: at 50.0%; the 3 file(s) it linked or made were removed; {clause}"}}
    _print(
        {
            "repairs": [{"names": ["Movie"], "torrents": [H1], "reason": "r", "steps": []}],
            "unrepairable": [],
            "run": {**run, "groups_done": [], "bytes_copied": 0},
        },
        True,
    )
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["  g1: repair failed: at 50.0%; the 3 file(s) it linked or made were removed", f"  {clause}"]


# -- rTorrent: an item found paused


def _rtorrent(w, lib):
    from qbhook.clients.rtorrent import RtorrentClient
    from qbhook.pathmap import PathMap
    from tests.unit.rtorrent.test_paused_relocation import StatefulRt

    rpc = StatefulRt()
    content = os.path.join(w.seed_s, "Movie.2020")
    rpc.add(H1, "Movie.2020", content, [(rel.split("/", 1)[1], len(d)) for rel, d in FILES], state=1, active=0)
    rt = RtorrentClient("qbt", "/run/rt.sock", PathMap(), sleep=lambda s: None, clock=w.clock)
    rt._rpc = rpc
    return rpc, rt


def test_a_paused_item_whose_repair_fails_before_its_recheck_is_paused_again(world):  # noqa: F811
    # The repair stops a paused item before its first link (rTorrent resumes a paused item when a
    # check ends); a library file rewritten since the plan fails the first link: nothing was put
    # under it, nothing checked, and it was left stopped, no longer paused.
    w = world
    lib = _delete_seed_files(w, cross_seed=False)
    rpc, rt = _rtorrent(w, lib)
    plan = _plan(w, lib)
    rel, data = next((r, d) for r, d in FILES if d)
    with open(lib[rel], "r+b") as f:
        f.write(bytes([data[0] ^ 0xFF]))
    summary = build_executor(
        w.cfg, w.cat, {"qbt": rt}, w.journal, sleep=w.clock.sleep, clock=w.clock, poll_initial_s=0.5
    ).apply(plan)
    (why,) = summary.groups_failed.values()
    assert "no longer holds the planned content" in why and NOT_AS_FOUND not in why
    assert rpc.mode(H1) == "paused" and f"d.stop {H1[:4].upper()}" in rpc.calls
    assert not any(c.startswith("d.check_hash") for c in rpc.calls)


def test_a_paused_item_rechecked_under_100_percent_stays_stopped_and_says_so(world):  # noqa: F811
    # After its check the item's progress is the check's over files gone again: paused, the next
    # check's end would resume it (downloading into its folder). Stopped, and said.
    w = world
    lib = _delete_seed_files(w, cross_seed=False)
    rpc, rt = _rtorrent(w, lib)
    rpc.fail_at[os.path.join(w.seed_s, "Movie.2020")] = 0.5
    summary = build_executor(
        w.cfg, w.cat, {"qbt": rt}, w.journal, sleep=w.clock.sleep, clock=w.clock, poll_initial_s=0.5
    ).apply(_plan(w, lib))
    (why,) = summary.groups_failed.values()
    assert rpc.mode(H1) == "stopped"
    assert f"{NOT_AS_FOUND}: torrent {H1} is stoppedDL at {w.seed_s}: paused when found, left stopped" in why
