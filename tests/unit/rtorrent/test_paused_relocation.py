"""rTorrent's three states through a relocation: the executor over the real RtorrentClient, on a
fake rTorrent that keeps ``d.state`` / ``d.is_active`` / ``d.hashing`` as 0.9.8 does.

Paused (``d.state`` 1, ``d.is_active`` 0, ruTorrent's "paused") is stopped in the normalized
vocabulary; the relocation's ``d.stop`` ends it. It must come back paused after the move and
after a rollback, not stopped and not started; a started item started, a stopped one stopped.
The plan is test_executor's ``demote_plan``, with the planner's start steps: each relocation leaves
its item stopped, and the item is started (or paused) again only after verify_group."""

from __future__ import annotations

import os
import xmlrpc.client

import pytest

from qbhook.clients.rtorrent import _ITEM_FIELDS
from qbhook.move.executor import build_executor
from tests.unit.rtorrent.conftest import FakeRtorrent, wired
from tests.unit.test_executor import FILES, H1, H2, Crash, _make_world, demote_plan
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

_FIELDS = [cmd for cmd, _ in _ITEM_FIELDS]


class StatefulRt(FakeRtorrent):
    """Answers like rTorrent 0.9.8 for the commands the adapter sends, keeping its state rules:
    d.stop ends a pause (state 0); d.start starts (and, during a check, only marks it started: it
    resumes when the check ends); d.pause holds an active item; a check takes ``check_polls``
    calls and counts the bytes found under the new directory (``fail_at``: a fraction there).

    A check at a directory in ``hash_fail`` (rTorrent cannot open or read the files there) FAILS
    as 0.9.8's does: d.hashing_failed 1 and d.hashing left at 3, never reset
    (Manager::receive_hashing_changed, DownloadList::hash_done's !is_hash_checked branch). d.stop
    of a stopped item does nothing; d.close ends a check (d.hashing 0); d.check_hash clears
    d.hashing_failed (DownloadList::hash_queue).

    ``saved``: each item's session on disk, written by d.save_full_session only (and by ``add``,
    rTorrent's periodic save before qbhook came); ``restart`` is rTorrent killed and started again:
    each item comes back as saved."""

    _SESSION = ("d.state", "d.is_active", "d.directory", "d.custom")

    def __init__(self, check_polls: int = 2):
        self.items: dict[str, dict] = {}
        self.files: dict[str, list] = {}
        self.fail_at: dict[str, float] = {}
        self.hash_fail: set[str] = set()
        self.check_polls = check_polls
        self.calls: list[str] = []
        self.saved: dict[str, dict] = {}

    def add(self, h: str, name: str, directory: str, files: list[tuple[str, int]], *, state: int, active: int):
        size = sum(s for _n, s in files)
        self.items[h.upper()] = {
            "d.hash": h.upper(),
            "d.name": name,
            "d.directory": directory,
            "d.is_multi_file": 1,
            "d.state": state,
            "d.is_open": 1,
            "d.is_active": active,
            "d.hashing": 0,
            "d.hashing_failed": 0,
            "d.complete": 1,
            "d.completed_bytes": size,
            "d.size_bytes": size,
            "d.left_bytes": 0,
            "d.custom1": "",
            "d.custom": "",
            "d.load_date": 1,
            "d.timestamp.finished": 1,
            "d.up.rate": 0,
            "d.down.rate": 0,
            "d.message": "",
            "d.size_files": len(files),
            "d.is_meta": 0,
            "_countdown": 0,
        }
        self.files[h.upper()] = [[n, s, 1, 1, 1] for n, s in files]
        self._save(h.upper())

    def _save(self, target: str) -> None:
        self.saved[target] = {k: self.items[target][k] for k in self._SESSION}

    def restart(self) -> None:
        for target, session in self.saved.items():
            self.items[target].update(session)

    def mode(self, h: str) -> str:
        it = self.items[h.upper()]
        if it["d.hashing"]:
            return "hashing"
        if it["d.state"] == 0:
            return "stopped"
        return "started" if it["d.is_active"] else "paused"

    def _tick(self) -> None:
        for it in self.items.values():
            if it["d.hashing"]:
                it["_countdown"] -= 1
                if it["_countdown"] <= 0:
                    self._check_ends(it)

    def _check_ends(self, it: dict) -> None:
        if it["d.directory"] in self.hash_fail:
            it.update({"d.hashing_failed": 1, "_countdown": 10**9})  # d.hashing stays; it never ends
            return
        size = it["d.size_bytes"]
        names = [n for n, *_ in self.files[it["d.hash"]]]
        here = all(os.path.exists(os.path.join(it["d.directory"], n)) for n in names)
        done = int(size * self.fail_at.get(it["d.directory"], 1.0)) if here else 0
        it.update({"d.hashing": 0, "d.completed_bytes": done, "d.left_bytes": size - done})
        it["d.complete"] = int(done == size)
        if it["d.state"] == 1:
            it["d.is_active"] = 1  # DownloadList::hash_done resumes a started item

    def call(self, method, *params):
        self._tick()
        if method == "d.multicall2":
            return [[it[f] for f in _FIELDS] for it in self.items.values()]
        return super().call(method, *params)

    def _one(self, method, target, *args):
        it = self.items.get(target)
        if it is None:
            raise xmlrpc.client.Fault(-501, "Could not find info-hash.")
        if method == "f.multicall":
            return self.files[target]
        if method in _FIELDS:
            return it[method]
        self.calls.append(f"{method} {target[:4]}")
        if method == "d.stop":
            if it["d.state"] == 1:  # a stopped item's d.stop (view.set_visible=stopped) changes nothing
                it["d.state"], it["d.is_active"] = 0, 0
        elif method == "d.close":
            if it["d.is_active"]:
                raise xmlrpc.client.Fault(-503, "Download is active.")
            it["d.is_open"], it["d.hashing"] = 0, 0
        elif method == "d.start":
            it["d.state"], it["d.is_open"] = 1, 1
            it["d.is_active"] = 0 if it["d.hashing"] else 1
        elif method == "d.pause":
            it["d.is_active"] = 0
        elif method == "d.resume":
            it["d.is_active"] = 1 if it["d.state"] == 1 and not it["d.hashing"] else it["d.is_active"]
        elif method == "d.check_hash":
            it.update({"d.hashing": 3, "d.hashing_failed": 0, "d.is_open": 1, "d.is_active": 0})
            it["_countdown"] = self.check_polls
        elif method == "d.directory_base.set":
            it["d.directory"] = args[0]
        elif method == "d.custom.set":
            it["d.custom"] = args[1]
        elif method == "d.save_full_session":
            self._save(target)
        else:
            raise xmlrpc.client.Fault(-506, f"Method '{method}' not defined")
        return 0


@pytest.fixture
def rt_world(tmpfs, tmp_path):  # noqa: F811
    """test_executor's world (H1 and H2 cross-seeding on stash), its torrents in a fake rTorrent."""
    w = _make_world(tmpfs, tmp_path)
    rpc = StatefulRt()
    files = [(rel.split("/", 1)[1], len(data)) for rel, data in FILES]
    for h, state, active in ((H1, 1, 1), (H2, 0, 0)):
        rpc.add(h, "Movie.2020", os.path.join(w.save(h, "stash"), "Movie.2020"), files, state=state, active=active)
    rt = wired(rpc, name="qbt", clock=w.clock)
    yield w, rt, rpc
    w.cat.close()


def _executor(w, rt, **kw):
    return build_executor(
        w.cfg, w.cat, {"qbt": rt}, w.journal, sleep=w.clock.sleep, clock=w.clock, poll_initial_s=0.5, **kw
    )


def _apply(w, rt, **kw):
    return _executor(w, rt, **kw).apply(demote_plan(w))


def _paused(rpc, h: str) -> None:
    """Item ``h`` paused by a person (and saved so: rTorrent's periodic session save)."""
    rpc.items[h.upper()]["d.is_active"] = 0
    rpc._save(h.upper())


@pytest.mark.parametrize("fail", [False, True], ids=["relocated", "rolled-back"])
@pytest.mark.parametrize("h1", ["paused", "started"])
def test_an_item_comes_back_paused_started_or_stopped_as_it_was(rt_world, h1, fail):
    """Through the plan's start steps (R65: after verify_group, each as its relocation found it),
    or the rollback's: and so it stays once rTorrent restarts (each state saved)."""
    w, rt, rpc = rt_world
    if h1 == "paused":
        _paused(rpc, H1)
    assert rpc.mode(H1) == h1 and rt.torrent(H1).is_stopped is (h1 == "paused")  # paused is stopped, normalized
    if fail:
        rpc.fail_at[os.path.join(w.save(H2, "pool"), "Movie.2020")] = 0.9  # H2's check fails: both move back
    seen = []

    def hook(point, _gid, _seq, step):
        if point == "before" and step.kind in ("verify_group", "start"):
            seen.append((step.kind, rpc.mode(H1), rpc.mode(H2)))

    summary = _apply(w, rt, hook=hook)

    assert summary.groups[0].status == ("rolled_back" if fail else "done"), summary.groups[0].reason
    where = "stash" if fail else "pool"
    assert rt.torrent(H1).save_path == w.save(H1, where) and rt.torrent(H2).save_path == w.save(H2, where)
    assert (rpc.mode(H1), rpc.mode(H2)) == (h1, "stopped")  # as they were found
    assert rt.torrent(H1).is_complete and rt.torrent(H1).is_paused is (h1 == "paused")
    (row,) = [r for r in w.journal.steps(summary.run_id) if r.kind == "relocate" and r.args["torrent"] == H1]
    assert row.args["_observed"]["paused"] is (h1 == "paused")  # journaled: a resume or rollback knows it
    # No item ran at its new place before the group verified: the relocation left each stopped.
    assert seen[:1] == ([] if fail else [("verify_group", "stopped", "stopped")])
    rpc.restart()
    assert (rpc.mode(H1), rpc.mode(H2)) == (h1, "stopped")


@pytest.mark.parametrize("h1", ["paused", "started"])
def test_rtorrent_killed_between_verify_group_and_the_starts_resumes_each_as_found(rt_world, h1):
    """qbhook and rTorrent killed after verify_group, before any start: both items stopped at the
    new place (as saved). ``resume`` starts each as its relocation found it: H1 paused or started,
    H2 stopped, and each state saved."""
    w, rt, rpc = rt_world
    if h1 == "paused":
        _paused(rpc, H1)
    plan = demote_plan(w)
    seq = next(i for i, s in enumerate(plan.groups[0].steps) if s.kind == "verify_group")

    def hook(point, _gid, q, _step):
        if (point, q) == ("after_act", seq):
            raise Crash("kill")

    with pytest.raises(Crash):
        _executor(w, rt, hook=hook).apply(plan)
    rpc.restart()
    assert (rpc.mode(H1), rpc.mode(H2)) == ("stopped", "stopped")
    assert rt.torrent(H1).save_path == w.save(H1, "pool")

    (summary,) = _executor(w, rt).resume()

    assert summary.status == "done", summary.groups_failed
    assert (rpc.mode(H1), rpc.mode(H2)) == (h1, "stopped")
    rpc.restart()
    assert (rpc.mode(H1), rpc.mode(H2)) == (h1, "stopped")


@pytest.mark.parametrize("when", ["at the relocation", "after the tag steps"])
def test_a_rolled_back_item_keeps_the_tags_it_had_in_its_custom_field(rt_world, when):
    """rTorrent keeps qbhook's tags in ``d.custom=qbhook_tags``: a rollback, whether H2's check
    failed (H1 already moved and tagged) or the first delete refused after the Tag steps
    (+demoted -~noHL), leaves each item tagged as it was found."""
    w, rt, rpc = rt_world
    rpc.items[H1.upper()]["d.custom"] = "~noHL"
    if when == "at the relocation":
        rpc.fail_at[os.path.join(w.save(H2, "pool"), "Movie.2020")] = 0.9
    else:  # a library link the plan does not know: the first delete refuses
        os.makedirs(w.lib, exist_ok=True)
        os.link(os.path.join(w.save(H1, "stash"), FILES[0][0]), os.path.join(w.lib, "Movie (2020).mkv"))

    summary = _apply(w, rt)

    assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
    assert "d.custom.set AAAA" in rpc.calls and rt.torrent(H1).save_path == w.save(H1, "stash")
    assert set(rt.torrent(H1).tags) == {"~noHL"} and set(rt.torrent(H2).tags) == set()


def test_a_check_that_fails_at_the_new_place_is_rolled_back(rt_world):
    """rTorrent cannot read H2's files at the new place: its check fails and 0.9.8 leaves
    d.hashing at 3. The rollback's d.stop does nothing to the stopped item; set_location must
    still move it back (d.close ends the stale check, d.check_hash clears the failure), not
    refuse "a hash check is running" forever (every resume met the same refusal)."""
    w, rt, rpc = rt_world
    rpc.hash_fail.add(os.path.join(w.save(H2, "pool"), "Movie.2020"))

    summary = _apply(w, rt)

    assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
    for h in (H1, H2):
        assert rt.torrent(h).save_path == w.save(h, "stash") and rt.torrent(h).is_complete
    assert (rpc.mode(H1), rpc.mode(H2)) == ("started", "stopped")
    assert rt.torrent(H2).state == "stoppedUP"  # the failure is gone with the check at home


def test_a_file_made_wanted_after_verify_view_never_gets_a_new_directory(rt_world):
    """R24 through rTorrent's adapter: H2's skipped file (f.priority 0, not in its view) made
    wanted while H1 rechecks at its new place. The file list read again right before the move
    refuses H2's: no d.directory_base.set for it, the group rolled back, nothing deleted."""
    w, rt, rpc = rt_world
    rpc.files[H2.upper()].append(["extra.nfo", 10, 0, 0, 1])

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "relocate" and step.args["torrent"] == H2:
            rpc.files[H2.upper()][-1][2] = 1  # f.priority.set: wanted now

    ex = build_executor(
        w.cfg, w.cat, {"qbt": rt}, w.journal, sleep=w.clock.sleep, clock=w.clock, poll_initial_s=0.5, hook=hook
    )
    summary = ex.apply(demote_plan(w))

    assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
    assert f"refusing to relocate {H2}: its files changed" in summary.groups[0].reason
    assert "Movie.2020/extra.nfo" in summary.groups[0].reason
    assert all(c != f"d.directory_base.set {H2.upper()[:4]}" for c in rpc.calls)
    for h in (H1, H2):
        assert rt.torrent(h).save_path == w.save(h, "stash")
        assert all(os.path.exists(os.path.join(w.save(h, "stash"), rel)) for rel, _d in FILES)
    assert (rpc.mode(H1), rpc.mode(H2)) == ("started", "stopped")


@pytest.mark.parametrize("data", ["whole", "short"])
def test_a_check_cancelled_while_queued_is_never_taken_for_a_verified_item(rt_world, data):
    """R26: H2's check at the new place still queued (one rehash at a time) when a person's d.stop
    or d.pause cancels it (DownloadList::pause: d.hashing 0, no d.hashing_failed). It is left
    closed with d.complete 1 and the count it had at the old place: read as 100 % there, the
    relocation was verified on data never checked. A closed item's count is stale
    (``TorrentInfo.progress_stale``): the wait asks for the check again, and the data found decides
    (short: rolled back)."""
    w, rt, rpc = rt_world
    new_dir = os.path.join(w.save(H2, "pool"), "Movie.2020")
    if data == "short":
        rpc.fail_at[new_dir] = 0.9
    cancelled = []

    def hook(point, _gid, _seq, step):
        it = rpc.items[H2.upper()]
        if point == "poll" and step.args.get("torrent") == H2 and it["d.hashing"] and not cancelled:
            size = it["d.size_bytes"]  # the check not begun: the old count and flag kept
            it.update({"d.hashing": 0, "d.is_open": 0, "d.state": 0, "d.complete": 1})
            it.update({"d.completed_bytes": size, "d.left_bytes": 0, "_countdown": 0})
            cancelled.append(it["d.directory"])

    ex = build_executor(
        w.cfg, w.cat, {"qbt": rt}, w.journal, sleep=w.clock.sleep, clock=w.clock, poll_initial_s=0.5, hook=hook
    )
    summary = ex.apply(demote_plan(w))

    assert cancelled == [new_dir]
    assert rpc.calls.count(f"d.check_hash {H2.upper()[:4]}") >= 2  # asked again at the new place
    if data == "short":
        assert summary.groups[0].status == "rolled_back", summary.groups[0].reason
        assert rt.torrent(H2).save_path == w.save(H2, "stash")
    else:
        assert summary.groups[0].status == "done", summary.groups[0].reason
        assert rt.torrent(H2).save_path == w.save(H2, "pool") and rt.torrent(H2).is_complete


@pytest.mark.parametrize("fail", [False, True], ids=["relocated", "rolled-back"])
@pytest.mark.parametrize("tagged", [False, True], ids=["untagged", "tagged-before"])
def test_each_item_comes_back_as_left_after_rtorrent_is_killed(rt_world, fail, tagged):
    """R43: start() did not save the session; an item started after its relocation reached the
    session only if a later tag write saved it. H1 relocated by qbhook once before (its tag already
    there) and rolled back has no tag write after its start: rTorrent killed then brought it back
    stopped at the old place's session while the journal said it runs, and its seeding ended."""
    w, rt, rpc = rt_world
    if tagged:
        rpc.items[H1.upper()]["d.custom"] = "qbhook-relocated"
        rpc._save(H1.upper())
    if fail:
        rpc.fail_at[os.path.join(w.save(H2, "pool"), "Movie.2020")] = 0.9  # H2's check fails: both move back

    summary = _apply(w, rt)
    live = {h: (rpc.mode(h), rt.torrent(h).save_path) for h in (H1, H2)}
    rpc.restart()

    assert summary.groups[0].status == ("rolled_back" if fail else "done"), summary.groups[0].reason
    assert {h: (rpc.mode(h), rt.torrent(h).save_path) for h in (H1, H2)} == live
    assert (live[H1][0], live[H2][0]) == ("started", "stopped")


@pytest.mark.parametrize("found", ["stopped", "paused"])
def test_start_and_stop_are_saved_in_their_own_request(rt_world, found):
    w, rt, rpc = rt_world
    if found == "paused":
        rpc.items[H2.upper()].update({"d.state": 1, "d.is_active": 0})
        rpc._save(H2.upper())
    rt.start(H2)
    rpc.restart()
    assert rpc.mode(H2) == "started"
    rt.stop(H2)
    rpc.restart()
    assert rpc.mode(H2) == "stopped"
