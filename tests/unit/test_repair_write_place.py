"""A repair makes no file where another torrent may write (R85/R95's gap: repair groups were never asked).

A repair links catalog copies (a library file's inode, another payload's) at its torrent's save
path. Another torrent at that path that skips a file there (priority 0), or is still downloading
one, writes its pieces into whatever is there once it gets to it: through the link, into the
library file or the other payload's last copy. The repair planner reads no other torrent, so the
executor asks the clients right before the repair's first make, as it does for a move
(``Executor._check_write_places``, ``converge.live_writer``): refused in one line, nothing made,
the torrent untouched. Only its own torrent and the torrents the same run repairs onto the same
content at the same path (a cross-seed lost with it) are its own there, and those only while
their repair is still to come and they are as planned, read live: missing their files, that file
of theirs at the path (R99). The "refused" tests fail on the code before the check (the parent
linked the file)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from qbhook.catalog.indexer import sync_client
from qbhook.decide.plan import VerifyView
from qbhook.move.locks import group_lock
from tests.unit.test_executor import FILES, H1, H2, Crash, FakeTorrent, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_repair_executor import _delete_seed_files, _lose_files, _missing_pair, _plan
from tests.unit.test_write_place_live import WRITE_PLACE, _live

D = "d" * 40
MOVIE = FILES[0][0]  # "Movie.2020/movie.mkv": the repair's first link


def _nothing_made(w) -> None:
    for rel, _data in FILES:
        assert not os.path.lexists(os.path.join(w.seed_s, rel)), rel


def _refused_once(reason: str, place: str, who: str) -> None:
    assert reason.startswith("refused before making its view: " + WRITE_PLACE + place), reason
    assert who in reason and "\n" not in reason, reason


@pytest.mark.parametrize(
    "files, progress, who",
    [
        ([("Movie.2020/extras.mkv", 5, 1), (MOVIE, 300_000, 0)], 1.0, "which lists it at priority 0"),
        ([(MOVIE, 300_000, 1)], 0.4, "not settled (downloading, 40%)"),
    ],
    ids=["skipped", "downloading"],
)
def test_a_repair_links_nothing_where_another_torrent_may_write(world, files, progress, who):  # noqa: F811
    w = world
    lib = _lose_files(w)
    _live(w, set())  # qBittorrent's sizes: a skipped file shows in them
    w.qbt.add(FakeTorrent(D, "Movie.2020", w.seed_s, files, progress=progress))
    summary = w.executor().apply(_plan(w, lib))
    (reason,) = summary.groups_failed.values()
    _refused_once(reason, os.path.join(w.seed_s, MOVIE), f"torrent Movie.2020 ({D[:8]} on qbt), {who}")
    _nothing_made(w)
    assert w.qbt.calls == [] and w.qbt.t[H1].transient == "missingFiles"  # not even stopped
    assert all(os.lstat(p).st_nlink == 1 for p in lib.values())  # no link of the library file


def test_a_repair_still_links_beside_a_torrent_skipping_another_file_there(world):  # noqa: F811
    w = world
    lib = _lose_files(w)
    _live(w, set())
    w.qbt.add(FakeTorrent(D, "Movie.2020", w.seed_s, [(MOVIE, 300_000, 1), ("Movie.2020/extras.mkv", 5, 0)]))
    sync_client(w.cat, w.qbt)  # the index knows which file it skips (without it, every file of it counts)
    summary = w.executor().apply(_plan(w, lib))
    assert summary.groups_done and not summary.groups_failed, summary.groups_failed


def _twins(w):
    """H1 and H2 cross-seeding the same files at one save path, both lost them: two repair groups."""
    lib = _delete_seed_files(w)
    for h in (H1, H2):
        t = w.qbt.t[h]
        t.save_path, t.progress, t.download_path, t.transient, t.stopped = w.seed_s, 0.0, "", "missingFiles", False
    return lib


def test_a_cross_seed_repaired_in_the_same_run_onto_the_same_content_is_no_writer(world):  # noqa: F811
    """Each twin is "not settled" (missingFiles, 0 %) at the other's paths: asked as strangers, both
    repairs refused each other, every run. The same run puts the same content there for both."""
    w = world
    lib = _twins(w)
    summary = w.executor().apply(_missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s))))
    assert len(summary.groups_done) == 2 and not summary.groups_failed, summary.groups_failed
    assert not w.qbt.t[H1].stopped and not w.qbt.t[H2].stopped


def test_a_cross_seed_the_run_repairs_onto_other_content_there_still_counts(world):  # noqa: F811
    w = world
    lib = _twins(w)
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s)))
    g2 = plan.groups[1]
    i = next(i for i, s in enumerate(g2.steps) if isinstance(s, VerifyView))
    v = g2.steps[i]
    g2.steps[i] = replace(v, blake3s=("0" * 64, *v.blake3s[1:]))  # its movie.mkv is another file
    summary = w.executor().apply(plan)
    assert not summary.groups_done, summary.groups
    (first, _second) = summary.groups
    assert first.group_id == plan.groups[0].group_id
    _refused_once(first.reason, os.path.join(w.seed_s, MOVIE), f"({H2[:8]} on qbt)")
    _nothing_made(w)


def _fails_first(w, g1: str, g2: str):
    """A hook: ``g1``'s recheck ends at 50 % (its group fails, its torrent left stopped under 100 %);
    ``g2``'s, if it gets there, at 100 %."""

    def hook(point, gid, _seq, step):
        if point == "before" and step.kind == "repair":
            if gid == g1:
                w.qbt.fail_at[w.seed_s] = 0.5
            elif gid == g2:
                w.qbt.fail_at.pop(w.seed_s, None)

    return hook


def _no_library_link_left(w, lib) -> None:
    _nothing_made(w)
    assert all(os.lstat(p).st_nlink == 1 for p in lib.values())


def test_a_cross_seed_whose_repair_failed_in_the_run_counts_again(world):  # noqa: F811
    """R99 F1: H1's repair failed first (its recheck ended at 50 %, H1 left stopped there). Taken for
    a twin still, as the plan said, H2's repair went on and left the library's inodes under H1:
    one start and H1 downloads its missing pieces into the library files. Its group ended without
    success: H1 counts as any torrent at that path, and its own links go with its failure, not kept
    for H2's repair still to run."""
    w = world
    lib = _twins(w)
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s)))
    g1, g2 = (g.group_id for g in plan.groups)
    summary = w.executor(hook=_fails_first(w, g1, g2)).apply(plan)
    assert not summary.groups_done and list(summary.groups_failed) == [g1, g2], summary.groups
    _refused_once(
        summary.groups_failed[g2], os.path.join(w.seed_s, MOVIE), f"({H1[:8]} on qbt), not settled (stoppedDL, 50%)"
    )
    assert "the 3 file(s) it linked or made were removed" in summary.groups_failed[g1]
    _no_library_link_left(w, lib)
    assert all(h == H1 for _call, h, *_ in w.qbt.calls)  # H2 untouched: still missingFiles
    assert w.qbt.t[H2].transient == "missingFiles"


def test_a_resumed_run_takes_the_twin_groups_ended_from_its_journal(world, monkeypatch):  # noqa: F811
    """R99 F1 on resume: the twins were rebuilt from the journaled plan, ended groups included. H1's
    group busy in the first attempt (another process held it): H2's repair, before, took H1 for
    its twin, linked, failed its recheck at 50 % and kept the links for H1's repair still to come.
    Killed before the run closed; resumed, H1's repair took H2 (stopped at 50 % on the library's
    inodes) for its twin too, and carried on. Now H1, its repair not run, counts for H2's; H2,
    whose group the journal says ended in this run (not replayed before H1's: it comes later in
    the plan), counts for H1's."""
    w = world
    lib = _twins(w)
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s)))
    g1, g2 = (g.group_id for g in plan.groups)

    def killed(*_a, **_k):
        raise Crash

    monkeypatch.setattr(w.journal, "finish_run", killed)
    with group_lock(w.cfg, g1), pytest.raises(Crash):
        w.executor(hook=_fails_first(w, g2, g1), group_lock_wait=0.5).apply(plan)
    monkeypatch.undo()
    assert w.journal.group_status(g2)[0] == "failed" and w.journal.group_status(g1) is None
    (run,) = w.executor(hook=_fails_first(w, g2, g1)).resume()
    assert not run.groups_done and list(run.groups_failed) == [g1, g2], run.groups
    _refused_once(run.groups_failed[g1], os.path.join(w.seed_s, MOVIE), f"({H2[:8]} on qbt), not settled")
    _no_library_link_left(w, lib)


def _renamed(t) -> None:
    (m, ms, mp), (srt, ss, sp), *rest = t.files
    t.files = [(srt, ms, mp), (m, ss, sp), *rest]  # its subtitle now sits at the movie's path (and back)


def _skipped(t) -> None:
    (m, ms, _mp), *rest = t.files
    t.files = [(m, ms, 0), *rest]  # a file it skips there: partial pieces, written into what is there


def _started(t) -> None:
    t.transient = None  # started since: downloading (0 %), not missing its files


@pytest.mark.parametrize(
    "since, who",
    [
        (_renamed, "not settled (missingFiles, 0%)"),
        (_skipped, "not settled (missingFiles, 0%)"),
        (_started, "not settled (downloading, 0%)"),
    ],
    ids=["renamed", "skipped", "started"],
)
def test_a_cross_seed_no_longer_as_planned_counts(world, since, who):  # noqa: F811
    """R99 F2: the twin was read from the saved plan alone. H2's file renamed in qBittorrent since
    (another of its files now at the path), skipped since, or H2 started: H1's repair linked the
    library's movie where H2 writes what it takes for another file, partial pieces, or downloads.
    Its live state decides: refused, nothing made (then H2's repair refuses H1, missing its files
    and no twin once H1's group failed)."""
    w = world
    lib = _twins(w)
    plan = _missing_pair(w, lib, ((H1, "qbt", w.seed_s), (H2, "qbt", w.seed_s)))
    since(w.qbt.t[H2])
    summary = w.executor().apply(plan)
    assert not summary.groups_done, summary.groups
    first = summary.groups[0]
    assert first.group_id == plan.groups[0].group_id
    _refused_once(first.reason, os.path.join(w.seed_s, MOVIE), f"({H2[:8]} on qbt), {who}")
    _no_library_link_left(w, lib)


def test_a_cross_seed_left_out_of_the_run_still_counts(world):  # noqa: F811
    """``qbhook repair H1`` alone: H2, lost with it and not repaired, may be rechecked and started."""
    w = world
    lib = _twins(w)
    summary = w.executor().apply(_plan(w, lib))
    (reason,) = summary.groups_failed.values()
    _refused_once(reason, os.path.join(w.seed_s, MOVIE), f"({H2[:8]} on qbt), not settled (missingFiles, 0%)")
    _nothing_made(w)


def test_a_file_the_repair_finds_in_place_is_not_one_it_makes(world):  # noqa: F811
    """A move's reused file counts (its only copy once the old links go); a repair deletes nothing,
    and a file it finds in place (the torrent's own, still there) stays what it was: a torrent
    skipping it there refuses the repair of the files it lost no more than it stopped its seeding."""
    w = world
    lib = _lose_files(w)
    srt = FILES[1][0]
    os.link(lib[srt], os.path.join(w.seed_s, srt))  # never lost: in place, the right content
    plan = _plan(w, lib)
    g = plan.groups[0]
    g.steps = [s for s in g.steps if getattr(s, "dst", None) != os.path.join(w.seed_s, srt)]  # as planned "present"
    _live(w, set())
    w.qbt.add(FakeTorrent(D, "Movie.2020", w.seed_s, [("Movie.2020/extras.mkv", 5, 1), (srt, len(FILES[1][1]), 0)]))
    sync_client(w.cat, w.qbt)
    summary = w.executor().apply(plan)
    assert summary.groups_done and not summary.groups_failed, summary.groups_failed
