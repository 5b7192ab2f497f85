"""A move's destination file taken as another torrent's write place between plan and act.

The planner refuses a destination another torrent may write into (``converge.writer_at``: its
skipped file's place, any file of one not settled), but only on its snapshot. A sweep's chunks
hash for minutes, ``serve`` acts later, a copy takes hours: meanwhile a person renames a skipped
file onto the path (``renameFile``) or adds a torrent skipping a file there, and the group's only
copy would take that torrent's pieces once the file is wanted. The executor asks the clients again
right before it makes the view (``Executor._check_write_places``, ``converge.live_writer``): the
group is refused with nothing made, and the next plan blocks it. Asked again before the first
delete (``Executor._check_no_writer``), a rename during the copies rolls the group back (R85);
asked during the deletes and after the last one, a rename then stops the deletes and fails the
group with the writer named (nothing can be undone by then). Each test but the "still" one and
the cost guard fails on the code before the check (the parent makes the file; before the looks
during and after the deletes, the group ends done)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from qbhook import notify
from qbhook.catalog.indexer import sync_client
from qbhook.decide import converge
from qbhook.errors import UnknownTorrent
from qbhook.move import executor as executor_mod
from tests.helpers import write
from tests.unit.test_executor import FILES, H1, H2, Crash, FakeQbt, FakeTorrent, demote_plan, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_run_reporting import cap  # noqa: F401  (fixture)

D, E, F = "d" * 40, "e" * 40, "f" * 40
WRITE_PLACE = "a destination is a place another torrent may write into: "


class _LiveQbt(FakeQbt):
    """qBittorrent's sizes (``size`` the wanted bytes, so ``may_skip_files`` says a skip), a torrent
    of ``flat`` saved without its root folder (its content path is its save path), file lists counted."""

    def __init__(self, flat: set[str]):
        super().__init__()
        self.flat = flat
        self.file_calls: list[str] = []

    def _info(self, t):
        info = super()._info(t)
        wanted = sum(s for _n, s, p in t.files if p)
        info = replace(info, size=wanted)
        return replace(info, content_path=info.save_path) if t.hash in self.flat else info

    def files(self, h):
        self.file_calls.append(h.lower())
        return super().files(h)


def _live(w, flat: set[str]) -> _LiveQbt:
    q = _LiveQbt(flat)
    q.t = w.qbt.t
    w.qbt = q
    return q


def _pack(w, priority_of_second: int = 0) -> FakeTorrent:
    """d: complete on the pool's seeding root, saved without its root folder, its second file skipped."""
    write(os.path.join(w.seed_p, "pack1.mkv").encode(), b"P")
    d = FakeTorrent(D, "Pack", w.seed_p, [("pack1.mkv", 1, 1), ("pack2.mkv", 7, priority_of_second)])
    w.qbt.add(d)
    return d


def _refused(summary, place: str) -> str:
    reason = summary.groups_failed["g1"]
    assert WRITE_PLACE + place in reason and "Pack" in reason, reason
    return reason


def test_a_skipped_file_renamed_onto_a_destination_after_the_plan_refuses_the_group_before_its_copy(world):  # noqa: F811
    w = world
    _live(w, {D})
    d = _pack(w)
    sync_client(w.cat, w.qbt)  # the index knows d skips a file
    plan = demote_plan(w)
    place = os.path.join(w.seed_p, "Movie.2020/movie.mkv")  # the group's first copy
    d.files[1] = ("Movie.2020/movie.mkv", 7, 0)  # renamed in qBittorrent after the plan
    summary = w.executor().apply(plan)
    _refused(summary, place)
    assert not os.path.lexists(place)
    assert w.qbt.count("set_location") == 0 and w.qbt.torrent(H1).save_path == w.seed_s


def test_a_torrent_added_after_the_plan_skipping_a_file_at_a_destination_refuses_the_group(world):  # noqa: F811
    w = world
    _live(w, {D})
    plan = demote_plan(w)
    place = os.path.join(w.seed_p, "cross-seed/Movie.2020/movie.mkv")  # the second torrent's link
    write(os.path.join(w.seed_p, "pack1.mkv").encode(), b"P")
    # Not in the index: the listing's sizes say it skips a file.
    w.qbt.add(FakeTorrent(D, "Pack", w.seed_p, [("pack1.mkv", 1, 1), ("cross-seed/Movie.2020/movie.mkv", 7, 0)]))
    summary = w.executor().apply(plan)
    _refused(summary, place)
    assert not os.path.lexists(place) and not os.path.lexists(os.path.join(w.seed_p, "Movie.2020"))


def test_a_resumed_group_asks_again_before_the_files_it_has_not_made(world):  # noqa: F811
    w = world
    _live(w, {D})
    d = _pack(w)
    sync_client(w.cat, w.qbt)
    plan = demote_plan(w)

    def crash(point, _gid, seq, _step):
        if point == "after_act" and seq == 0:  # the first copy made
            raise Crash("killed after the first copy")

    with pytest.raises(Crash):
        w.executor(hook=crash).apply(plan)
    place = os.path.join(w.seed_p, "cross-seed/Movie.2020/movie.mkv")
    d.files[1] = ("cross-seed/Movie.2020/movie.mkv", 7, 0)
    summary = w.executor().resume()[0]
    _refused(summary, place)
    assert not os.path.lexists(place) and w.qbt.count("set_location") == 0


def test_a_group_still_moves_beside_a_torrent_skipping_a_file_elsewhere_in_its_folder(world):  # noqa: F811
    w = world
    q = _live(w, {D})
    _pack(w)
    sync_client(w.cat, w.qbt)
    q.file_calls.clear()  # the sync's
    asked = []

    def count(point, _gid, seq, _step):
        if point == "before" and seq == 0:
            asked.extend(q.file_calls)

    summary = w.executor(hook=count).apply(demote_plan(w))
    assert summary.groups_done == ["g1"], summary.groups_failed
    assert asked == [D]  # before the first copy: asked once, its folder holds the destinations


def test_only_a_torrent_whose_content_could_reach_a_destination_is_asked_for_its_file_list(world):  # noqa: F811
    """The user's scale: thousands of torrents in one category folder, each with a root folder of
    its own. One listing a client a group; a file list only of a torrent that may write and whose
    content's places hold a destination (a folder of its own elsewhere holds none of them)."""
    w = world
    q = _live(w, {D})
    _pack(w)
    write(os.path.join(w.seed_p, "Other.Show/ep1.mkv").encode(), b"E")
    q.add(FakeTorrent(E, "Other.Show", w.seed_p, [("Other.Show/ep1.mkv", 1, 1), ("Other.Show/ep2.mkv", 5, 0)]))
    q.add(FakeTorrent(F, "Movie.2020", w.seed_p, [("Movie.2020/other.mkv", 5, 1)], progress=0.5))  # downloading
    sync_client(w.cat, w.qbt)
    q.file_calls.clear()  # the sync's
    listings, asked = [], []

    def count(point, _gid, seq, _step):
        if point == "before" and seq == 0:  # what the group asked before its first copy
            listings.append(sum(1 for c in q.calls if c[0] == "torrents"))
            asked.extend(q.file_calls)

    orig = q.torrents

    def torrents(*a, **kw):
        q.calls.append(("torrents",))
        return orig(*a, **kw)

    q.torrents = torrents
    summary = w.executor(hook=count).apply(demote_plan(w))
    assert summary.groups_done == ["g1"], summary.groups_failed
    assert listings == [1]  # one listing of the client
    assert sorted(asked) == [D, F]  # e: its own root folder, elsewhere, not asked


# R85 F1: the check ran once, before the first make. The copies take hours at the user's scale, and
# a resume past the makes skipped it: a rename onto a destination meanwhile got through, the source
# was deleted, and the group's only copy sat where another torrent writes. Asked again before the
# first delete (``_check_no_newcomer``'s listing), the group rolls back with its source kept.

MOVIE = "Movie.2020/movie.mkv"


def _rolled_back_keeping_the_source(w, summary, place: str) -> None:
    g = summary.groups[0]
    assert g.status == "rolled_back", g.reason
    _refused(summary, place)
    assert os.path.lexists(os.path.join(w.seed_s, MOVIE)), "the source is deleted: the only copy is at " + place
    assert w.qbt.torrent(H1).save_path == w.seed_s  # moved back onto its old links


@pytest.mark.parametrize("before_seq", [1, 2])
def test_a_skipped_file_renamed_onto_a_destination_while_the_copies_run_rolls_the_group_back(world, before_seq):  # noqa: F811
    w = world
    _live(w, {D})
    d = _pack(w)
    sync_client(w.cat, w.qbt)
    plan = demote_plan(w)
    place = os.path.join(w.seed_p, MOVIE)  # the first copy's destination

    def rename(point, _gid, seq, _step):
        if point == "before" and seq == before_seq:  # the first copy made, the next still to come
            d.files[1] = (MOVIE, 7, 0)  # renameFile in qBittorrent meanwhile

    summary = w.executor(hook=rename).apply(plan)
    _rolled_back_keeping_the_source(w, summary, place)


@pytest.mark.parametrize("crash_at", ["relocate", "delete"])
def test_a_group_resumed_past_its_makes_asks_again_before_its_first_delete(world, crash_at):  # noqa: F811
    """Killed with every file made and the view verified (before the first relocation, or before the
    first delete once verify_group passed), a rename meanwhile: the resume rolls the group back."""
    w = world
    _live(w, {D})
    d = _pack(w)
    sync_client(w.cat, w.qbt)
    plan = demote_plan(w)
    first = next(i for i, s in enumerate(plan.groups[0].steps) if s.kind == crash_at)

    def crash(point, _gid, seq, _step):
        if point == "before" and seq == first:
            raise Crash(f"killed before the first {crash_at}")

    with pytest.raises(Crash):
        w.executor(hook=crash).apply(plan)
    d.files[1] = (MOVIE, 7, 0)
    summary = w.executor().resume()[0]
    _rolled_back_keeping_the_source(w, summary, os.path.join(w.seed_p, MOVIE))


# R85 F2: the reason named the writer's own state, not why its place counted.


def test_a_writer_whose_file_list_could_not_be_read_is_named_for_its_folder(world):  # noqa: F811
    w = world
    q = _live(w, {D})
    _pack(w)
    sync_client(w.cat, w.qbt)
    plan = demote_plan(w)
    orig = q.files

    def files(h):
        if h.lower() == D:
            raise UnknownTorrent(f"no torrent {h}")
        return orig(h)

    q.files = files
    reason = _refused(w.executor().apply(plan), os.path.join(w.seed_p, MOVIE))
    assert "its file list could not be read, so its folder counts" in reason, reason
    assert "priority 0" not in reason, reason


def test_a_settled_torrent_beside_pad_files_counts_every_file_until_its_index_row_is_current():
    """Pad files make its sizes differ (``may_skip_files``) with nothing skipped. Its list may be
    the index's, older than a priority change (``IndexedFiles`` in a sweep), so without a current
    row every file counts: a move reusing one waits a sync (R85), never the other way round. With
    a current row, its files at priority 0 only, at plan and at act time alike."""
    pack = FakeTorrent(D, "Pack", "/p", [("pack1.mkv", 1, 1), ("Movie.2020/movie.mkv", 7, 1)])
    t = replace(FakeQbt()._info(pack), content_path="/p", size=8, total_size=8 + 4096)
    files = [("pack1.mkv", 1), ("Movie.2020/movie.mkv", 7)]
    assert t.may_skip_files
    dst = "/p/Movie.2020/movie.mkv"
    assert dst in converge.write_places(t, None, None, files)
    assert converge.live_writer([t], [dst], None, {}, lambda _t: files) is not None
    current = {("qbt", D): (False, t.size, t.total_size)}
    assert converge.write_places(t, None, current[("qbt", D)], files) == set()
    assert converge.write_prefixes([t], None, current, {("qbt", D): files}) == frozenset()
    assert converge.live_writer([t], [dst], None, current, lambda _t: files) is None
    skipping = [("pack1.mkv", 1), ("Movie.2020/movie.mkv", 0)]
    skips = {("qbt", D): (True, t.size, t.total_size)}  # the index knows it skips a file
    assert converge.live_writer([t], [dst], None, skips, lambda _t: skipping) == (
        dst,
        "torrent Pack (dddddddd on qbt), which lists it at priority 0",
    )


@pytest.mark.parametrize("ends_at, status", [(1.0, "done"), (0.4, "rolled_back")], ids=["matches", "differs"])
def test_a_cross_seed_checking_at_the_new_place_is_judged_once_its_check_ends(world, ends_at, status):  # noqa: F811
    """cross-seed injecting onto a group's new place during its run adds a torrent that checks what
    it found. Refused on sight, hours of copies rolled back for a state that ends by itself (R88);
    left out, one whose check ends under 100 % then downloaded into the group's only copy once the
    old links went (R91). Judged when its check ends: at 100 % the group finishes, else it rolls
    back with its source kept."""
    w = world
    q = _live(w, set())
    plan = demote_plan(w)
    vg = next(i for i, s in enumerate(plan.groups[0].steps) if s.kind == "verify_group")
    looks = []

    def inject(point, _gid, seq, _step):
        if point == "before" and seq == vg:
            t = FakeTorrent(E, "Movie.2020", w.seed_p, [(MOVIE, 300_000, 1)], progress=0.4)
            t.transient = "checkingUP"
            w.qbt.add(t)

    def torrents(*a, **k):
        e = q.t.get(E)
        if e is not None and e.transient:
            looks.append(1)
            if len(looks) > 3:  # the check ends after a few looks
                e.transient, e.progress = None, ends_at
        return FakeQbt.torrents(q, *a, **k)

    q.torrents = torrents
    summary = w.executor(hook=inject).apply(plan)
    g = summary.groups[0]
    assert g.status == status, g.reason
    assert os.path.lexists(os.path.join(w.seed_s, MOVIE)) == (status == "rolled_back")  # the source kept


def test_a_long_check_at_the_new_place_is_waited_for_by_the_groups_size(world):  # noqa: F811
    """R93: the wait's budget was a fixed 300 s: a 50 GB cross-seed's check (~400 s) was cut short,
    judged mid-check and refused, and the group rolled back its copies. It is a move's budget of
    the group's payload now (a 50 GB payload: 300 s + 1,000 s)."""
    w = world
    q = _live(w, set())
    plan = demote_plan(w)
    plan.groups[0].payload_bytes = 50 * 10**9
    vg = next(i for i, s in enumerate(plan.groups[0].steps) if s.kind == "verify_group")
    began = []

    def inject(point, _gid, seq, _step):
        if point == "before" and seq == vg:
            w.qbt.add(
                FakeTorrent(E, "Movie.2020", w.seed_p, [(MOVIE, 300_000, 1)], progress=0.0, transient="checkingUP")
            )

    def torrents(*a, **k):
        e = q.t.get(E)
        if e is not None and e.transient:
            began.append(w.clock.now)
            if w.clock.now - began[0] > 400:  # a 50 GB check at ~125 MB/s
                e.transient, e.progress = None, 1.0
        return FakeQbt.torrents(q, *a, **k)

    q.torrents = torrents
    summary = w.executor(hook=inject).apply(plan)
    assert summary.groups[0].status == "done", summary.groups[0].reason


def test_each_look_before_the_first_delete_asks_a_file_list_and_reads_the_index_once(world, monkeypatch):  # noqa: F811
    """The check before the first delete judged each listing twice (every writer, then those neither
    checking nor moving), and waiting for a check to end twice a poll and once more at its end: each
    judgement asked the clients for the same file lists again and ran ``skipped_files_known`` (a
    grouped pass over the whole file index) again. One pass a look gives both verdicts. Here a
    cross-seed checks at the new place for three looks and ends under 100 %: the group rolls back."""
    w = world
    q = _live(w, set())
    plan = demote_plan(w)
    vg = next(i for i, s in enumerate(plan.groups[0].steps) if s.kind == "verify_group")
    looks: list[list[int]] = []  # from verify_group to the verdict, by listing: index reads, first file call
    done: list[int] = []  # where the looks' file calls end

    def inject(point, _gid, seq, _step):
        if point == "before" and seq == vg:
            t = FakeTorrent(E, "Movie.2020", w.seed_p, [(MOVIE, 300_000, 1)], progress=0.4)
            t.transient = "checkingUP"
            w.qbt.add(t)

    def torrents(*a, **k):
        e = q.t.get(E)
        if e is not None and len(looks) < 4:
            looks.append([0, len(q.file_calls)])
            if len(looks) == 4:  # the check ends under 100 %: this look's verdict is a writer
                e.transient = None
        elif looks and not done:  # a listing after the verdict (the rollback's)
            done.append(len(q.file_calls))
        return FakeQbt.torrents(q, *a, **k)

    real = executor_mod.skipped_files_known

    def known(conn):
        if looks and not done:
            looks[-1][0] += 1
        return real(conn)

    q.torrents = torrents
    monkeypatch.setattr(executor_mod, "skipped_files_known", known)
    summary = w.executor(hook=inject).apply(plan)
    g = summary.groups[0]
    assert g.status == "rolled_back" and "Movie.2020" in g.reason, g.reason
    ends = [at for _n, at in looks[1:]] + (done or [len(q.file_calls)])
    asked = [q.file_calls[at:end].count(E) for (_n, at), end in zip(looks, ends, strict=True)]
    assert (asked, [n for n, _at in looks]) == ([1, 1, 1, 1], [1, 1, 1, 1])


def test_a_writer_found_before_the_first_delete_has_its_file_list_asked_once(world, monkeypatch):  # noqa: F811
    """A settled torrent renamed onto a destination during the copies: the look before the first
    delete found it among every writer, then again among those neither checking nor moving, asking
    its file list and reading the index twice. One pass gives both verdicts."""
    w = world
    q = _live(w, {D})
    d = _pack(w)
    sync_client(w.cat, w.qbt)
    plan = demote_plan(w)
    vg = next(i for i, s in enumerate(plan.groups[0].steps) if s.kind == "verify_group")
    at: list[int] = []  # where verify_group's look begins in the file calls
    reads = []
    real = executor_mod.skipped_files_known

    def rename(point, _gid, seq, _step):
        if point == "before" and seq == vg:
            d.files[1] = (MOVIE, 7, 0)  # renameFile in qBittorrent during the copies
            at.append(len(q.file_calls))

    def known(conn):
        reads.append(bool(at))
        return real(conn)

    monkeypatch.setattr(executor_mod, "skipped_files_known", known)
    summary = w.executor(hook=rename).apply(plan)
    _rolled_back_keeping_the_source(w, summary, os.path.join(w.seed_p, MOVIE))
    # D's list: the newcomer check's (the index first saw it within the plan's slack), then one pass's.
    assert (q.file_calls[at[0] :].count(D), reads.count(True)) == (2, 1)


def test_several_cross_seeds_checking_at_the_new_place_are_asked_one_file_list_a_look(world, monkeypatch):  # noqa: F811
    """R98 F4: the one-pass look carried on past every checking or moving writer to find one that is
    neither, asking each one's file list: five cross-seeds checking at the new place were five file
    lists a poll (two HTTP calls each on qBittorrent), where two passes ask the first writer's, then
    only those of torrents neither checking nor moving. Here the checks end under 100 % after three
    looks: the group rolls back, each look having asked one file list."""
    w = world
    q = _live(w, set())
    plan = demote_plan(w)
    vg = next(i for i, s in enumerate(plan.groups[0].steps) if s.kind == "verify_group")
    crossed = [c * 40 for c in "56789"]
    looks: list[int] = []  # where each look's file calls begin
    done: list[int] = []

    def inject(point, _gid, seq, _step):
        if point == "before" and seq == vg:
            for h in crossed:
                t = FakeTorrent(h, "Movie.2020", w.seed_p, [(MOVIE, 300_000, 1)], progress=0.4)
                t.transient = "checkingUP"
                w.qbt.add(t)

    def torrents(*a, **k):
        if crossed[0] in q.t and len(looks) < 4:
            looks.append(len(q.file_calls))
            if len(looks) == 4:  # every check ends under 100 %: this look's verdict is a writer
                for h in crossed:
                    q.t[h].transient = None
        elif looks and not done:
            done.append(len(q.file_calls))
        return FakeQbt.torrents(q, *a, **k)

    q.torrents = torrents
    summary = w.executor(hook=inject).apply(plan)
    g = summary.groups[0]
    assert g.status == "rolled_back" and "Movie.2020" in g.reason, g.reason
    ends = looks[1:] + (done or [len(q.file_calls)])
    asked = [sum(q.file_calls[at:end].count(h) for h in crossed) for at, end in zip(looks, ends, strict=True)]
    assert asked == [1, 1, 1, 1]


# R88's gap: asked before the first make and before the first delete, nothing asked again once
# deletes began. A rename onto a destination while the deletes ran (minutes: each re-hashes its
# link), or after the last one, left the group "done" with its only copy where another torrent
# writes, and nobody told. Deletes cannot be undone: the look follows the newcomer and library
# symlink checks' rule after deletes began (on their cadence, ``_look_due``, and once more at the
# group's end): the rest of the old links kept, the group failed for good with the writer named.


def _renamed_at(w, d, kind: str, nth: int):
    """A hook: each delete takes 31 s (past the newcomer check's cadence); right before the
    ``nth`` step of ``kind`` (0: the first), d's skipped file is renamed onto the first copy's
    destination, as renameFile in qBittorrent does."""
    seen: dict[str, int] = {}

    def hook(point, _gid, _seq, step):
        if point == "after_act" and step.kind == "delete":
            w.clock.now += 31
        if point == "before" and step.kind == kind:
            if seen.setdefault(kind, 0) == nth:
                d.files[1] = (MOVIE, 7, 0)
            seen[kind] += 1

    return hook


def _old_links(w, h) -> list[str]:
    return [rel for rel, _d in FILES if os.path.lexists(os.path.join(w.save(h, "stash"), rel))]


@pytest.mark.parametrize(
    "kind, nth, kept",
    [("delete", 1, (2, 3)), ("prune_dirs", 0, (0, 0))],
    ids=["after_the_first_delete", "after_the_last_delete"],
)
def test_a_rename_onto_a_destination_once_deletes_began_is_told_and_stops_them(world, cap, kind, nth, kept):  # noqa: F811
    """On the parent the group ends done, its reason empty: nobody is told that its only copy of
    movie.mkv is now a place torrent Pack writes into once that file is wanted."""
    w = world
    _live(w, {D})
    d = _pack(w)
    sync_client(w.cat, w.qbt)
    plan = demote_plan(w)
    summary = w.executor(hook=_renamed_at(w, d, kind, nth)).apply(plan)
    g = summary.groups[0]
    assert g.status == "failed" and not g.paused and not g.needs_attention, (g.status, g.reason)
    _refused(summary, os.path.join(w.seed_p, MOVIE))
    assert "after deletes began" in g.reason, g.reason
    if kept == (0, 0):
        assert "after the last delete" in g.reason and "no old link left" in g.reason, g.reason
        assert "qbhook orphans" not in g.reason, g.reason  # nothing was kept for it to list
    else:
        assert "no more old links deleted" in g.reason and "qbhook orphans lists them" in g.reason, g.reason
    # The rest of the old links kept: H1's movie.mkv went with the first delete, nothing after the look.
    assert (len(_old_links(w, H1)), len(_old_links(w, H2))) == kept
    for h in (H1, H2):
        assert w.qbt.torrent(h).save_path == w.save(h, "pool")  # they stay at their verified new place
    assert summary.status == "failed" and w.journal.group_status("g1")[0] == "failed"  # history and status say it
    notify.run_finished(summary)  # what apply's caller tells (``notify.watch``)
    told = [e.text for e in cap.events if e.kind == "group_failed"]
    assert len(told) == 1 and told[0].startswith("group g1 (demote) failed: "), told
    assert WRITE_PLACE in told[0] and "torrent Pack (dddddddd on qbt)" in told[0], told
    assert w.executor().resume() == []  # it does not pass by itself: nothing to retry
