"""The purge of quarantined orphans asks the clients first (qbhook.move.orphans.screen_held / purge_held).

The decision over made-up held links and a simulated client, then the executor's purge after a run
on real files (tmpfs): an orphan whose place a torrent uses again stays in holding, reported and
notified; a client that cannot be listed keeps every orphan and purges the demote's held links by
their own rule."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from qbhook import notify
from qbhook.catalog import state
from qbhook.errors import ConfigError, QbtError
from qbhook.move import orphans
from qbhook.move.fsops import HOLDING_DIR, HeldLink
from qbhook.move.orphans import screen_held
from tests.helpers import write
from tests.unit.test_executor import FakeQbt, FakeTorrent, _make_world, demote_plan
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

NOW = 1_000_000.0
GRACE = 60.0
S = "/stash/seed"
H3, H4 = "c" * 40, "d" * 40


def held(key, origin, *, orphan=True, age=3600.0) -> HeldLink:
    return HeldLink(f"{S}/{HOLDING_DIR}/7/{key}", NOW - age, 1, key, orphan=orphan, origin=origin)


def client(*torrents: FakeTorrent) -> FakeQbt:
    q = FakeQbt()
    for t in torrents:
        q.add(t)
    return q


def other_torrent() -> FakeTorrent:
    """A torrent elsewhere: the client lists something, so 'no torrents' does not refuse."""
    return FakeTorrent(H4, "Other", f"{S}/tv", [("Other/o.mkv", 5, 1)])


def screen(links, *clients):
    return screen_held(links, lambda: list(clients), grace=GRACE, now=NOW)


def test_an_expired_orphan_no_torrent_uses_goes_and_one_a_torrent_uses_again_stays():
    gone, back, demote = (
        held("gone", f"{S}/old/gone.mkv"),
        held("back", f"{S}/movies/A/a.mkv"),
        held("d", None, orphan=False),
    )
    readded = FakeTorrent(H3, "A", f"{S}/movies", [("A/a.mkv", 5, 1)])  # complete again: its file is a.mkv

    out = screen([gone, back, demote], client(readded, other_torrent()))

    assert [h.key for h in out.purgeable] == ["gone", "d"] and out.refused is None
    assert [(k.held, k.origin) for k in out.kept] == [(back.path, f"{S}/movies/A/a.mkv")]
    assert "a torrent uses its place" in out.kept[0].line()


def test_a_re_added_torrent_still_checking_or_missing_its_files_keeps_the_orphan_too():
    """Re-added after the quarantine, its files are not there: it is incomplete, and its whole
    content folder is in use (the orphan walk's PROTECTED), not only complete torrents' files."""
    back = held("back", f"{S}/movies/A/a.mkv")
    readded = FakeTorrent(H3, "A", f"{S}/movies", [("A/a.mkv", 5, 1)], progress=0.0)
    out = screen([back], client(readded))
    assert out.purgeable == () and [k.held for k in out.kept] == [back.path]


def test_a_single_file_torrent_injected_onto_the_path_keeps_it():
    """cross-seed injecting a match whose one file is the orphan's path (its save path its folder)."""
    back = held("back", f"{S}/old/b.mkv")
    injected = FakeTorrent(H3, "b.mkv", f"{S}/old", [("b.mkv", 5, 1)], progress=0.0, stopped=True)
    assert [k.held for k in screen([back], client(injected, other_torrent())).kept] == [back.path]


def test_the_clients_are_asked_only_when_an_orphan_is_due():
    def never():
        raise AssertionError("a client was asked with no orphan to purge")

    links = [held("young", f"{S}/old/y.mkv", age=GRACE / 2), held("d", None, orphan=False)]
    out = screen_held(links, never, grace=GRACE, now=NOW)
    assert out.purgeable == tuple(links) and out.kept == () and out.refused is None


def unreachable() -> FakeQbt:
    q = client(other_torrent())

    def torrents(*_a, **_k):
        raise QbtError("cannot reach qBittorrent at http://127.0.0.1:9")

    q.torrents = torrents
    return q


@pytest.mark.parametrize(
    "clients, why",
    [
        (lambda: [unreachable()], "cannot be listed"),
        (lambda: [client()], "no torrents at all"),
        (lambda: [client(replace(other_torrent(), transient="moving"))], "being moved"),
        (lambda: (_ for _ in ()).throw(ConfigError("clients", "no torrent client configured")), "no torrent client"),
    ],
    ids=["unreachable", "no_torrents", "moving", "no_client"],
)
def test_a_listing_that_cannot_say_refuses_every_orphan_and_passes_the_others(clients, why):
    orphan, young, demote = held("o", f"{S}/old/o.mkv"), held("y", f"{S}/y", age=1), held("d", None, orphan=False)
    out = screen_held([orphan, young, demote], clients, grace=GRACE, now=NOW)
    assert [h.key for h in out.purgeable] == ["d"] and out.kept == ()
    msg = out.refused.message
    assert msg.startswith("refusing to purge quarantined orphans") and why in msg and "\n" not in msg, msg


def test_an_orphan_that_is_a_tracked_leftover_view_is_kept():
    """Quarantined by an older qbhook, a leftover view waiting for a person (maybe the last copy of
    its content) is no orphan: the purge keeps it, however unused its place is."""
    view = held("v", f"{S}/movies/V/v.mkv")
    out = screen_held(
        [view], lambda: [client(other_torrent())], grace=GRACE, now=NOW, leftover_views=frozenset({view.origin})
    )
    assert out.purgeable == () and [(k.held, k.leftover) for k in out.kept] == [(view.path, True)]
    assert "leftover view" in out.kept[0].line()


def test_an_orphan_whose_quarantine_recorded_no_path_is_kept():
    out = screen([held("o", None)], client(other_torrent()))
    assert out.purgeable == () and [k.origin for k in out.kept] == ["(not recorded)"]


# --------------------------------------------------------------------------- the executor's purge, real files


@pytest.fixture
def world(tmpfs, tmp_path):  # noqa: F811
    w = _make_world(tmpfs, tmp_path)
    w.cfg = replace(w.cfg, policy=replace(w.cfg.policy, grace_period=3600.0, orphans_max_share=1.0))
    yield w
    w.cat.close()


def quarantine_one(w, rel="old/Gone.2019/gone.mkv", data=b"orphaned bytes" * 100) -> tuple[str, str]:
    """Plant an orphan and quarantine it (``qbhook orphans --quarantine --yes``); (its path, held path)."""
    path = write(os.path.join(w.seed_s, rel), data)
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [path] and res.failed == {}, res
    (h,) = [h for h in w.journal.held_links() if h.orphan]
    assert h.origin == path and os.path.exists(h.path) and not os.path.exists(path)
    return path, h.path


def keep_seeding(w, root: str) -> None:
    """A complete torrent saved in ``root``, its file there: the root is a seeding folder again
    (``orphans.seeding_folders``) once a demote moved every other torrent out of it, so an orphan
    planted there is reclaimable, not "not in a seeding folder"."""
    write(os.path.join(root, "Keep/k.bin"), b"k" * 10)
    w.qbt.add(FakeTorrent("f" * 40, "Keep", root, [("Keep/k.bin", 10, 1)]))


def expire(w):
    w.cfg = replace(w.cfg, policy=replace(w.cfg.policy, grace_period=0.001))
    time.sleep(0.01)


@pytest.fixture
def notified(monkeypatch):
    seen: list[tuple[str, str, str]] = []
    monkeypatch.setattr(notify, "emit", lambda kind, text, severity="info": seen.append((kind, text, severity)))
    return seen


def test_executor_purge_keeps_an_orphan_whose_torrent_was_re_added_in_the_grace_window(world, notified, caplog):
    w = world
    path, at = quarantine_one(w)
    # in the grace window the user re-adds the torrent: qBittorrent finds no files (0 %)
    w.qbt.add(
        FakeTorrent(
            H3,
            "Gone.2019",
            os.path.join(w.seed_s, "old"),
            [("Gone.2019/gone.mkv", 1400, 1)],
            progress=0.0,
            stopped=True,
        )
    )
    expire(w)

    w.executor()._purge_holding()  # what the next run does after its groups

    assert os.path.exists(at) and [h.path for h in w.journal.held_links()] == [at]
    assert [(k, s) for k, _t, s in notified] == [("guard", "failure")] and path in notified[0][1]
    assert any(f"a torrent uses its place {path} again" in r.getMessage() for r in caplog.records)
    # the torrent removed again: the next purge lets the orphan go
    del w.qbt.t[H3]
    w.executor()._purge_holding()
    assert w.journal.held_links() == [] and not os.path.lexists(at)


def test_a_kept_orphan_is_told_once_while_it_lasts_and_once_when_it_is_gone(world, notified, monkeypatch):
    # R35: serve purges after every run, and each told the same kept link again: five runs with
    # nothing changed were five identical failure notices.
    w = world
    path, at = quarantine_one(w)
    w.qbt.add(FakeTorrent(H3, "Gone.2019", os.path.join(w.seed_s, "old"), [("Gone.2019/gone.mkv", 1400, 1)]))
    expire(w)
    for _ in range(5):
        w.executor()._purge_holding()
    assert [(k, s) for k, _t, s in notified] == [("guard", "failure")] and path in notified[0][1]
    assert os.path.exists(at)

    # Clients that cannot be listed say nothing of it: neither told again nor resolved.
    torrents = w.qbt.torrents
    monkeypatch.setattr(w.qbt, "torrents", unreachable().torrents)
    w.executor()._purge_holding()
    monkeypatch.setattr(w.qbt, "torrents", torrents)
    assert len(notified) == 1

    del w.qbt.t[H3]  # the torrent removed again: the orphan goes, and that is told once
    w.executor()._purge_holding()
    w.executor()._purge_holding()
    assert not os.path.lexists(at)
    assert [(k, t, s) for k, t, s in notified[1:]] == [("resolved", f"resolved: {notified[0][1]}", "info")]


def test_cli_purge_reports_the_kept_orphan(world, notified):
    """``qbhook holding --purge-expired``'s own call (orphans.purge_expired): the kept orphan is in its answer."""
    w = world
    path, at = quarantine_one(w)
    w.qbt.add(FakeTorrent(H3, "Gone.2019", os.path.join(w.seed_s, "old"), [("Gone.2019/gone.mkv", 1400, 1)]))
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.as_dict()["kept_in_use"] == [{"held": at, "origin": path, "leftover_view": False, "reason": None}]
    assert out.error is None
    assert out.refused is None and os.path.exists(at) and len(notified) == 1


def waiting_view(w, rel="Movie.2020/only-copy.mkv") -> str:
    """A rolled-back group's view on the target pool whose source is gone: the leftover pass keeps
    it for a person (it may be the last copy of its content); its path."""
    from qbhook.decide.plan import Plan
    from qbhook.move import leftovers

    view = write(os.path.join(w.seed_p, rel), b"last good copy" * 100)
    st = os.stat(view)
    run = w.journal.start_run(Plan(groups=[]).to_dict(), "test")
    gone = os.path.join(w.seed_s, "gone.mkv")
    w.journal.record_leftover(
        run,
        "g1",
        {"path": view, "ino": st.st_ino, "size": st.st_size, "ctime_ns": st.st_ctime_ns, "kind": "copy",
         "keep": gone, "blake3": None},
    )  # fmt: skip
    w.journal.finish_run(run, "done", {})
    assert [r["status"] for r in leftovers.remove_leftover_views(w.cfg, w.cat, [w.qbt])] == ["needs_person"]
    return view


def test_a_leftover_view_waiting_for_a_person_is_never_an_orphan(world):
    """It was listed reclaimable and quarantined; the leftover pass then found it "absent" and
    stopped tracking it, and the purge deleted what may have been the last copy of its content."""
    w = world
    view = waiting_view(w)
    report = orphans.find_orphans(w.cfg, [w.qbt], catalog=w.cat)
    assert report.orphans == [] and report.counts["leftover"] == 1
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [] and os.path.exists(view) and len(w.journal.leftover_waiting()) == 1


def test_a_leftover_view_an_older_qbhook_quarantined_is_kept_by_the_purge(world, notified, monkeypatch):
    from qbhook.move.journal import Journal

    w = world
    view = waiting_view(w)
    assert [k for k, _t, _s in notified] == ["needs_person"]  # the leftover pass told it waits
    notified.clear()
    with monkeypatch.context() as m:  # an older qbhook: its quarantine did not know leftover views
        m.setattr(Journal, "leftover_paths", lambda _self: frozenset())
        m.setattr(orphans, "seeding_folders", lambda _anchors: orphans.SeedingFolders(None))  # nor seeding folders
        assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [view]
    (h,) = w.journal.held_links()
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.as_dict()["kept_in_use"] == [{"held": h.path, "origin": view, "leftover_view": True, "reason": None}]
    assert os.path.exists(h.path) and [x.path for x in w.journal.held_links()] == [h.path] and len(notified) == 1


def test_executor_purge_with_the_client_unreachable_keeps_orphans_and_purges_the_demote_by_its_rule(
    world, notified, caplog
):
    w = world
    summary = w.executor().apply(demote_plan(w))
    assert summary.status == "done", summary.groups[0].reason
    demoted = [h for h in w.journal.held_links() if not h.orphan]
    assert demoted and all(os.path.exists(h.path) for h in demoted)
    keep_seeding(w, w.seed_s)
    _path, at = quarantine_one(w)
    w.qbt.torrents = unreachable().torrents
    expire(w)

    w.executor()._purge_holding()

    # the demote's held links went (their copies on the pool verify); the orphan stays, refused
    assert [h.path for h in w.journal.held_links()] == [at] and os.path.exists(at)
    assert not any(os.path.lexists(h.path) for h in demoted)
    assert any("refusing to purge quarantined orphans" in r.getMessage() for r in caplog.records)
    assert notified == []  # a refusal is postponed to the next purge, not a kept copy


def test_a_mount_table_that_cannot_be_read_refuses_the_orphans_purge_in_one_line_and_purges_the_demote(
    world, notified, caplog, monkeypatch
):
    """R119: /proc/self/mountinfo unreadable (a PermissionError under a hardened unit) escaped the
    purge's look for a dataset not mounted (``orphans._purge_library``) as a traceback out of
    ``Executor.apply``, after the run was journaled. What is mounted not known, the orphans' purge is
    refused in one line, nothing of them purged; the demote's held links go by their own rule."""
    from qbhook.catalog import scan

    w = world
    assert w.executor().apply(demote_plan(w)).status == "done"
    demoted = [h for h in w.journal.held_links() if not h.orphan]
    keep_seeding(w, w.seed_s)
    _path, at = quarantine_one(w)
    expire(w)

    def unreadable(_catalog, _forget=()):
        raise PermissionError(13, "Permission denied", "/proc/self/mountinfo")

    # The purge's own look unreadable, not fsid.read_mounts: other code reads the mount table again
    # whenever it changes (another test's, CI's integration tier's mounts), and failed there instead.
    monkeypatch.setattr(scan, "filesystems_away", unreadable)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.refused is not None and os.path.exists(at), out
    msg = out.refused.message
    assert msg.startswith("refusing to purge quarantined orphans: cannot read the mount table"), msg
    assert "\n" not in msg and "Permission denied" in msg, msg

    w.executor()._purge_holding()  # what every run does after its groups

    assert [h.path for h in w.journal.held_links()] == [at] and os.path.exists(at)
    assert demoted and not any(os.path.lexists(h.path) for h in demoted)
    assert any("cannot read the mount table" in r.getMessage() for r in caplog.records)


def test_a_mount_table_that_cannot_be_read_is_told_once_in_status_and_resolved_once_read_again(
    world, notified, monkeypatch
):
    """R120: under ``serve`` the refusal for an unreadable mount table was only a log line after each
    run: never notified, not in ``status``'s needs-a-person list, so status read healthy while
    holding grew. Told once while it lasts (``mounts``), kept by a purge that did not look (no orphan
    due), resolved by the first purge that reads the mount table again."""
    from qbhook.catalog import scan

    w = world
    _path, at = quarantine_one(w)
    expire(w)
    real = scan.filesystems_away

    def unreadable(_catalog, _forget=()):
        raise PermissionError(13, "Permission denied", "/proc/self/mountinfo")

    monkeypatch.setattr(scan, "filesystems_away", unreadable)  # the purge's look only (as above)
    for _ in range(3):  # serve purges after every run
        w.executor()._purge_holding()
    assert [(k, s) for k, _t, s in notified] == [("guard", "failure")], notified
    (line,) = orphans.holding_needs_person(w.cat.conn)
    assert line == notified[0][1] and "cannot read the mount table: " in line, line  # no errno: one outage
    assert os.path.exists(at)  # nothing purged while it is not known

    monkeypatch.setattr(scan, "filesystems_away", real)
    long_grace = replace(w.cfg, policy=replace(w.cfg.policy, grace_period=3600.0))
    out = orphans.purge_held(long_grace, w.cat, w.journal, lambda: [w.qbt])  # no orphan due: never looks
    assert out.away is None and len(notified) == 1 and orphans.holding_needs_person(w.cat.conn) == [line]

    w.executor()._purge_holding()  # reads it again
    assert [(k, s) for k, _t, s in notified[1:]] == [("resolved", "info")] and line in notified[1][1]
    assert orphans.holding_needs_person(w.cat.conn) == []
    assert not os.path.exists(at)  # read: purged


def test_purge_expired_names_a_holding_folder_renamed_away_and_keeps_its_links_journaled(world, notified):
    """``qbhook holding --purge-expired``: held links out of reach (their holding folder renamed away
    by a writer of the seeding root) are not marked purged; the error and an alert name the folder."""
    w = world
    summary = w.executor().apply(demote_plan(w))
    assert summary.status == "done", summary.groups[0].reason
    held = w.journal.held_links()
    hold = os.path.join(w.seed_s, HOLDING_DIR)
    os.rename(hold, os.path.join(w.seed_s, "renamed"))
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    gone = f"holding folder gone or replaced: {hold}, {len(held)} held link(s) not reached"
    assert gone in str(out.error) and len(w.journal.held_links()) == len(held)
    assert [(k, s) for k, _t, s in notified] == [("guard", "failure")] and gone in notified[0][1]


def test_forget_gone_stops_tracking_only_the_links_out_of_reach_and_deletes_nothing(world, notified):
    """``qbhook holding --forget-gone``: once a person has dealt with a holding folder renamed away,
    its links stop being reported by every purge; a dry run first, and never "purged"."""
    w = world
    summary = w.executor().apply(demote_plan(w))
    assert summary.status == "done", summary.groups[0].reason
    held = w.journal.held_links()
    hold, renamed = os.path.join(w.seed_s, HOLDING_DIR), os.path.join(os.path.dirname(w.seed_s), "renamed")
    os.rename(hold, renamed)  # out of the seeding root, so the quarantine below does not take it
    keep_seeding(w, w.seed_s)
    _path, at = quarantine_one(w)  # held in a new .qbhook-holding: in reach, stays tracked

    shown = orphans.forget_gone(w.cfg, w.cat, forget=False)
    assert sorted(h.path for h, _why in shown) == sorted(h.path for h in held)
    assert all(why == f"{hold}: another folder stands in its place" for _h, why in shown)
    assert len(w.journal.held_links()) == len(held) + 1  # a dry run changes nothing

    orphans.forget_gone(w.cfg, w.cat, forget=True)
    assert [h.path for h in w.journal.held_links()] == [at]
    assert all(os.path.exists(os.path.join(renamed, os.path.relpath(h.path, hold))) for h in held)  # nothing deleted
    rows = w.cat.conn.execute("SELECT count(*) FROM steps WHERE json_extract(result, '$.purged_at') IS NOT NULL")
    assert rows.fetchone()[0] == 0  # forgotten, never called purged


def test_forget_gone_resolves_what_the_purge_told_of_that_folder(world, notified):
    """Review R66: ``--forget-gone --yes`` stopped tracking the links but left the purge's "holding
    folder gone" line in ``qbhook status``' problems (exit 1) until a purge ran again, which with the
    default grace_period 0 none does. Forgotten, it is resolved, as a purge resolves what it no
    longer finds; what else a purge told stays."""
    w = world
    assert w.executor().apply(demote_plan(w)).status == "done"
    hold = os.path.join(w.seed_s, HOLDING_DIR)
    os.rename(hold, os.path.join(os.path.dirname(w.seed_s), "renamed"))
    expire(w)
    orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    (line,) = orphans.holding_needs_person(w.cat.conn)
    assert f"holding folder gone or replaced: {hold}" in line
    told, _at = state.get(w.cat.conn, orphans.HOLDING_TOLD, {})
    state.put(w.cat.conn, orphans.HOLDING_TOLD, {**told, "clock": "holding purge: a clock set wrong"})
    notified.clear()

    orphans.forget_gone(w.cfg, w.cat, forget=False)  # a dry run: the person has not said so yet
    assert len(orphans.holding_needs_person(w.cat.conn)) == 2 and notified == []

    orphans.forget_gone(w.cfg, w.cat, forget=True)
    assert w.journal.held_links() == []
    assert orphans.holding_needs_person(w.cat.conn) == ["holding purge: a clock set wrong"]
    assert notified == [("resolved", f"resolved: {line}", "info")]


@pytest.mark.parametrize("swapped_in", [False, True], ids=["untouched", "another-in-its-place"])
def test_a_reboot_that_renumbered_st_dev_leaves_held_links_in_reach(world, notified, swapped_in):
    """The reboot after a power cut can hand the seeding root's dataset another st_dev (field
    lessons: 44 -> 49). The untouched .qbhook-holding is still where the links were held: neither
    ``--forget-gone`` (it would stop tracking links in place, a leak for good) nor the purge calls
    it replaced. A folder really put in its place (another inode) still is."""
    w = world
    summary = w.executor().apply(demote_plan(w))
    assert summary.status == "done", summary.groups[0].reason
    held = w.journal.held_links()
    assert held and all(h.holding is not None for h in held)
    for h in held:  # the journaled [dev, inode]: the dev as it was before the reboot
        dev, ino = h.holding
        w.cat.conn.execute(
            "UPDATE steps SET result=json_set(result, '$.holding', json(?)) WHERE id=?", (f"[{dev + 5}, {ino}]", h.key)
        )
    w.cat.conn.commit()
    hold = os.path.join(w.seed_s, HOLDING_DIR)
    if swapped_in:
        os.rename(hold, os.path.join(w.seed_s, "renamed"))
        os.mkdir(hold, 0o700)

    shown = orphans.forget_gone(w.cfg, w.cat, forget=False)
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])

    if swapped_in:
        assert sorted(h.path for h, _why in shown) == sorted(h.path for h in held)
        assert "holding folder gone or replaced" in str(out.error) and len(w.journal.held_links()) == len(held)
        return
    assert shown == [] and out.error is None and notified == []
    assert w.journal.held_links() == [] and not any(os.path.lexists(h.path) for h in held)


# --------------------------------------------------------------------------- a quarantine that died


class _Died(BaseException):
    """The process dying between two lines (a SIGKILL, a power cut): nothing after it runs."""


def _dies_once(monkeypatch, owner, name):
    real = getattr(owner, name)
    calls = []

    def once(*a, **k):
        if not calls:
            calls.append(1)
            raise _Died
        return real(*a, **k)

    monkeypatch.setattr(owner, name, once)


@pytest.mark.parametrize("when", ["after the hold", "before the hold"])
@pytest.mark.parametrize("finisher", ["the next quarantine", "resume"])
def test_a_quarantine_that_died_is_finished_and_its_held_file_tracked(world, monkeypatch, when, finisher):
    """Review finding: died after moving a file into holding but before closing its step, the run
    stayed open: resume replayed its empty plan and closed it, and the held file was listed by
    nothing and never purged. Now the step is done again with the facts it was decided on."""
    from qbhook.decide.plan import RunStatus
    from qbhook.move import fsops
    from qbhook.move.journal import Journal

    w = world
    path = write(os.path.join(w.seed_s, "old/Gone.2019/gone.mkv"), b"orphaned bytes" * 100)
    if when == "after the hold":
        _dies_once(monkeypatch, Journal, "done")
    else:
        _dies_once(monkeypatch, fsops, "hold_unreferenced")
    with pytest.raises(_Died):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    (run,) = w.journal.unfinished_runs()
    assert os.path.exists(path) == (when == "before the hold")
    if finisher == "resume":
        (summary,) = w.executor().resume()
        assert summary.run_id == run.id and summary.status == RunStatus.DONE
    else:
        assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).run_id is None  # nothing left to hold
    assert w.journal.unfinished_runs() == [] and w.journal.run(run.id).status == RunStatus.DONE
    (h,) = [h for h in w.journal.held_links() if h.orphan]
    assert h.origin == path and os.path.exists(h.path) and not os.path.exists(path)  # what the purge lists


def test_an_orphan_an_older_qbhook_quarantined_under_a_cross_seed_symlink_is_kept(world, notified):
    """Quarantined by path (before in_use asked by identity): cross-seed's torrent seeds it through
    a symlink, dangling now that its target is in holding. The purge purged its only copy."""
    w = world
    path, at = quarantine_one(w, "movies/Film/film.mkv")
    links = os.path.join(w.seed_s, "cross-seed/trackerB/Film")
    os.makedirs(links)
    os.symlink(path, os.path.join(links, "film.mkv"))
    w.qbt.add(FakeTorrent(H3, "Film", os.path.dirname(links), [("Film/film.mkv", 1400, 1)]))
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert [(k.held, k.origin) for k in out.kept] == [(at, path)] and os.path.exists(at)


def test_an_orphan_a_torrent_reaches_by_its_identity_or_another_spelling_is_kept(tmp_path):
    """A torrent's path that reaches the held file itself (another link of it), or names its place
    in another Unicode normalization or case (a dataset that folds them finds it there)."""
    import unicodedata

    at = write(tmp_path / "held.mkv", b"x")
    os.link(at, tmp_path / "other.mkv")
    by_inode = HeldLink(str(at), NOW - 3600, 1, "inode", orphan=True, origin=f"{S}/old/x.mkv")
    nfd = unicodedata.normalize("NFD", "Amélie")
    by_name = held("name", f"{S}/movies/{nfd}/a.mkv")
    torrents = (
        FakeTorrent(H3, "other.mkv", str(tmp_path), [("other.mkv", 1, 1)]),
        FakeTorrent(H4, "AMÉLIE", f"{S}/movies", [("AMÉLIE/a.mkv", 1, 1)]),  # NFC, upper case
    )
    out = screen([by_inode, by_name], client(*torrents))
    assert out.purgeable == () and [k.held for k in out.kept] == [str(at), by_name.path]


# ----------------------------------------------------------------- torrents not complete (R14)

HX = "f" * 40
NOT_COMPLETE = {  # (its files: name, size, priority; FakeTorrent's state fields)
    "downloading": ([("Film/film.mkv", 4000, 1), ("Film/extra.nfo", 50, 1)], {"progress": 0.98}),
    "checking": ([("Film/film.mkv", 4000, 1)], {"progress": 0.4, "transient": "checkingDL"}),
    "skipping a file": ([("Film/film.mkv", 4000, 1), ("Film/sample.mkv", 50, 0)], {"stopped": True}),
}


def cross_seed(w, target: str, how: str, state: str) -> str:
    """Cross-seed's match onto ``target`` (``how``: symlink or hard link mode) in a real content
    folder of its own, its torrent in ``state`` (``NOT_COMPLETE``); the link's path."""
    xdir = os.path.join(w.seed_s, "xseed/Film")
    os.makedirs(xdir)
    link = os.path.join(xdir, "film.mkv")
    (os.symlink if how == "symlink" else os.link)(target, link)
    files, fields = NOT_COMPLETE[state]
    w.qbt.add(FakeTorrent(HX, "Film", os.path.dirname(xdir), files, **fields))
    return link


@pytest.mark.parametrize("state", NOT_COMPLETE)
@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_what_a_file_of_a_torrent_not_complete_reaches_is_protected_and_never_held(world, how, state):
    """Its original torrent removed, the file a cross-seed torrent still downloading, checking or
    skipping a file reaches through its content folder's per-file link is that torrent's data
    (the only copy): only its content folder was protected, and the quarantine held the target."""
    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    other = write(os.path.join(w.seed_s, "old/Gone/gone.mkv"), b"gone" * 10)  # a real orphan
    link = cross_seed(w, film, how, state)
    kinds = {o.path: o.kind for o in orphans.find_orphans(w.cfg, [w.qbt]).orphans}
    assert kinds == {other: orphans.RECLAIMABLE}
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [other] and os.path.exists(film) and os.path.exists(link)


def test_an_orphan_held_before_a_downloading_torrent_linked_its_place_is_kept_by_the_purge(world, notified):
    """Quarantined while no torrent used it, then a cross-seed torrent still downloading linked it
    (its symlink dangles while the file is in holding): a fetching torrent is never called missing
    its files, so only what its files resolve to says it uses the held file's place."""
    w = world
    path, at = quarantine_one(w, "old/Film/film.mkv")
    cross_seed(w, path, "symlink", "downloading")
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert [(k.held, k.origin) for k in out.kept] == [(at, path)] and os.path.exists(at)


# ------------------------------------- cross-seed in a container, qBittorrent's .unwanted folder (R22)

CONTAINER = "/xseed-container-data"  # how cross-seed in a container spells the stash pool (none on the host)


def in_container(w, path: str) -> str:
    """``path`` as cross-seed in a container writes it: its client's path_map says so (the fake's
    listing is in host paths already; only the links cross-seed wrote are in the container's)."""
    from qbhook.pathmap import PathMap

    w.qbt.path_map = PathMap([(CONTAINER, str(w.stash))])
    return CONTAINER + path[len(str(w.stash)) :]


@pytest.mark.parametrize("state", ["downloading", "checking"])
def test_what_a_container_spelled_link_of_a_fetching_torrent_names_is_protected_and_never_held(world, state):
    """R22: a cross-seed match auto-resumed, still downloading, its per-file symlink written in
    the container's spelling (/data/...): on the host it dangles, and in a fetching state no file
    of it is called missing. Its realpath alone never met a host entry: the target, its only copy
    once the original torrent is removed, was reclaimable and held. Read through its client's
    path_map, as a library's symlink is, the target is that torrent's."""
    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    other = write(os.path.join(w.seed_s, "old/Gone/gone.mkv"), b"gone" * 10)  # a real orphan
    link = cross_seed(w, in_container(w, film), "symlink", state)
    kinds = {o.path: o.kind for o in orphans.find_orphans(w.cfg, [w.qbt]).orphans}
    assert kinds == {other: orphans.RECLAIMABLE}
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [other] and os.path.exists(film) and os.readlink(link).startswith(CONTAINER)


def test_an_orphan_held_before_a_fetching_torrent_linked_it_in_a_containers_spelling_is_kept(world, notified):
    """The purge's screen reads the link through the same path_map: the place it names is the
    held file's original place."""
    w = world
    path, at = quarantine_one(w, "old/Film/film.mkv")
    cross_seed(w, in_container(w, path), "symlink", "downloading")
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert [(k.held, k.origin) for k in out.kept] == [(at, path)] and os.path.exists(at)


def test_a_complete_torrents_container_spelled_link_references_its_target_by_identity_and_place(world):
    """A complete (seeding) torrent's container-spelled link: what it names on the host is that
    torrent's file, by identity while there and by place once held (not only, by its size, the
    data of a torrent missing its files)."""
    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    xdir = os.path.join(w.seed_s, "xseed/Film")
    os.makedirs(xdir)
    os.symlink(in_container(w, film), os.path.join(xdir, "film.mkv"))
    w.qbt.add(FakeTorrent(HX, "Film", os.path.dirname(xdir), [("Film/film.mkv", 4000, 1)]))
    refs = orphans.references([w.qbt])
    assert orphans.in_use(film, refs, orphans.identity(film)) == orphans.REFERENCED
    os.unlink(film)  # as if held: its place alone
    assert orphans.in_use(film, orphans.references([w.qbt])) == orphans.REFERENCED


SKIPPED = {  # a torrent whose file qBittorrent keeps in .unwanted: (its name, its files, FakeTorrent's fields)
    "single file, unticked": ("Film.2020.mkv", [("Film.2020.mkv", 4000, 0)], {"stopped": True}),
    "no subfolder, one unticked": ("Pack", [("a.mkv", 40, 1), ("Film.2020.mkv", 4000, 0)], {"stopped": True}),
    "no subfolder, downloading": ("Pack", [("a.mkv", 40, 1), ("Film.2020.mkv", 4000, 0)], {"progress": 0.5}),
}


def unwanted_torrent(w, case: str) -> str:
    """``SKIPPED[case]`` saved in ``<seed>/singles``; where qBittorrent keeps its skipped file."""
    save = os.path.join(w.seed_s, "singles")
    name, files, fields = SKIPPED[case]
    for f, size, _prio in files:
        if f != "Film.2020.mkv":
            os.utime(write(os.path.join(save, f), b"a" * size), (1, 1))
    w.qbt.add(FakeTorrent(HX, name, save, files, **fields))
    return os.path.join(save, ".unwanted", "Film.2020.mkv")


@pytest.mark.parametrize("case", SKIPPED)
def test_a_file_qbittorrent_keeps_in_unwanted_beside_its_place_is_in_use_never_held(world, case):
    """R22: "keep unselected files in .unwanted folder" puts a skipped file at
    <its folder>/.unwanted/<name>; for a single-file or NoSubfolder torrent that is
    <save>/.unwanted/<name>, in no content folder and no listed file: a file downloaded, then
    unticked, was reclaimable, held and purged, whatever the torrent's state."""
    w = world
    skipped = unwanted_torrent(w, case)
    write(skipped, b"film" * 1000)
    os.utime(skipped, (1, 1))
    other = write(os.path.join(w.seed_s, "old/Gone/gone.mkv"), b"gone" * 10)  # a real orphan
    kinds = {o.path: o.kind for o in orphans.find_orphans(w.cfg, [w.qbt]).orphans}
    assert kinds == {other: orphans.RECLAIMABLE}
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [other] and os.path.exists(skipped)


def test_an_orphan_held_from_a_place_qbittorrent_keeps_a_skipped_file_in_is_kept_by_the_purge(world, notified):
    """Held while no torrent used it; the torrent re-added in the grace period skips that file:
    the purge's screen asks the same rule."""
    w = world
    rel = os.path.relpath(unwanted_torrent(w, "single file, unticked"), w.seed_s)
    w.qbt.t.pop(HX)
    path, at = quarantine_one(w, rel)
    unwanted_torrent(w, "single file, unticked")
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert [(k.held, k.origin) for k in out.kept] == [(at, path)] and os.path.exists(at)


def inject_during_the_walk(monkeypatch, act) -> None:
    """``act()`` runs after the quarantine listed the clients, before it walks the seeding roots."""
    real_walk = orphans.walk_roots

    def walk(cfg):
        act()
        return real_walk(cfg)

    monkeypatch.setattr(orphans, "walk_roots", walk)


def test_a_torrent_added_during_the_walk_onto_an_old_file_keeps_it(world, monkeypatch):
    """Cross-seed's symlink mode injects a complete match onto an old unreferenced file between the
    listing and the walk: a symlink leaves its target's ctime alone, so it is not young either; the
    quarantine lists the clients again after the walk and a file either listing uses stays."""
    w = world
    film = write(os.path.join(w.seed_s, "old/Film/film.mkv"), b"film" * 1000)
    os.utime(film, (1, 1))
    other = write(os.path.join(w.seed_s, "old/Gone/gone.mkv"), b"gone" * 10)

    def inject():
        xdir = os.path.join(w.seed_s, "xseed/Film")
        os.makedirs(xdir)
        os.symlink(film, os.path.join(xdir, "film.mkv"))
        w.qbt.add(FakeTorrent(HX, "Film", os.path.dirname(xdir), [("Film/film.mkv", 4000, 1)]))

    inject_during_the_walk(monkeypatch, inject)
    res = orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert res.held == [other] and os.path.exists(film)


@pytest.mark.parametrize("change", ["moving", "no torrents", "unreachable", "files unmet"])
def test_the_listing_after_the_walk_refuses_as_the_first_would(world, monkeypatch, change):
    """The second listing is judged by the same guards: a torrent moving, no torrents at all, a
    client that cannot be listed or whose complete torrents' files the walk did not meet (a
    path_map off by a folder) by then refuses the quarantine, nothing held."""
    w = world
    other = write(os.path.join(w.seed_s, "old/Gone/gone.mkv"), b"gone" * 10)
    w.qbt.add(other_torrent())

    def act():
        if change == "moving":
            w.qbt.t[H4].transient = "moving"
        elif change == "no torrents":
            w.qbt.t.clear()
        elif change == "files unmet":
            unmet = [(f"E/e{i}.mkv", 7, 1) for i in range(20)]  # more than the world's files met
            w.qbt.add(FakeTorrent(HX, "E", os.path.join(w.seed_s, "nowhere"), unmet))
        else:
            monkeypatch.setattr(w.qbt, "files", lambda h: (_ for _ in ()).throw(QbtError("connection refused")))

    inject_during_the_walk(monkeypatch, act)
    with pytest.raises(orphans.OrphansRefused):
        orphans.quarantine(w.cfg, w.cat, [w.qbt])
    assert os.path.exists(other) and not [h for h in w.journal.held_links() if h.orphan]


def test_a_purge_after_the_grace_period_says_what_it_freed(world, notified):
    """Review R66 (optional): with a grace period the delete only holds, and the purge that later
    frees the bytes reported no figure anywhere. It counts each link it unlinks as its inode's last."""
    w = world
    quarantine_one(w)  # 1400 bytes, its one link now in holding
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert out.error is None and w.journal.held_links() == []
    assert out.bytes_freed == 1400 and out.as_dict()["bytes_freed"] == 1400


def _mount_table_unreadable(monkeypatch, err: OSError) -> None:
    """The purge's own look at the mounts fails with ``err`` (see the tests above)."""
    from qbhook.catalog import scan

    def unreadable(_catalog, _forget=()):
        raise err

    monkeypatch.setattr(scan, "filesystems_away", unreadable)


def test_a_mount_table_unreadable_with_another_error_is_the_same_outage(world, notified, monkeypatch):
    """R121: the told line carried the error's text; EACCES then EMFILE told one outage twice."""
    import errno

    w = world
    quarantine_one(w)
    expire(w)
    _mount_table_unreadable(monkeypatch, PermissionError(13, "Permission denied", "/proc/self/mountinfo"))
    w.executor()._purge_holding()
    _mount_table_unreadable(monkeypatch, OSError(errno.EMFILE, "Too many open files"))
    w.executor()._purge_holding()
    assert [(k, s) for k, _t, s in notified] == [("guard", "failure")], notified


def test_a_told_mount_outage_goes_once_no_held_orphan_is_left(world, notified, monkeypatch):
    """R121: with the only held orphan released (`holding --forget-gone --yes`), no purge looked at
    the mounts again, and the told outage stayed in status for ever."""
    from qbhook.catalog import scan
    from qbhook.move.fsops import HOLDING_DIR

    w = world
    quarantine_one(w)
    expire(w)
    real = scan.filesystems_away
    _mount_table_unreadable(monkeypatch, PermissionError(13, "Permission denied", "/proc/self/mountinfo"))
    w.executor()._purge_holding()
    assert orphans.holding_needs_person(w.cat.conn) != []
    monkeypatch.setattr(scan, "filesystems_away", real)
    hold = os.path.join(w.seed_s, HOLDING_DIR)
    os.rename(hold, os.path.join(os.path.dirname(w.seed_s), "renamed"))
    orphans.forget_gone(w.cfg, w.cat, forget=True)
    w.executor()._purge_holding()
    assert not [h for h in w.journal.held_links() if h.orphan]
    assert orphans.holding_needs_person(w.cat.conn) == []
    assert [k for k, _t, _s in notified] == ["guard", "resolved"], notified
