"""A torrent left out of a partial snapshot whose file was renamed in its client (``renameFile``):
the torrent index keeps the old name (its files_key does not move), so the index's file list let
a partial snapshot demote another torrent onto the renamed file's new place, where the left-out
torrent writes: that torrent's only copy overwritten (R75). A partial snapshot must block what
one full snapshot blocks. A torrent with a root folder of its own keeps it as its place: a rename
below it stays inside; one out of it leaves the files no common root, and qBittorrent's content
path becomes the save path, the layout tested here."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from qbhook.catalog import indexer
from qbhook.catalog.indexer import sync_client
from qbhook.catalog.torrents import TorrentIndex
from qbhook.decide.planner import make_plan
from qbhook.decide.snapshot import SnapshotBuilder, build_snapshot
from tests.helpers import write
from tests.unit.test_executor import FakeQbt, FakeTorrent
from tests.unit.test_snapshot_paths import bed  # noqa: F401  (fixture)

B, D, E = "b" * 40, "d" * 40, "e" * 40


class _NoSubfolderQbt(FakeQbt):
    """D saved with "Don't create subfolder": its content path is its save path."""

    def _info(self, t):
        info = super()._info(t)
        return replace(info, content_path=info.save_path) if t.hash == D else info


def _b_group(bed, hashes):  # noqa: F811
    return _b_of(build_snapshot(bed.cfg, bed.cat, [bed.qbt], hashes=hashes), bed)


def _b_of(snap, bed):  # noqa: F811
    return next(g for g in make_plan(snap, bed.cfg.policy).groups if B in g.torrents)


def test_a_file_renamed_in_its_client_blocks_a_move_onto_its_new_place_in_a_partial_snapshot(bed):  # noqa: F811
    bed.qbt = _NoSubfolderQbt()
    write(bed.seed_s / "movies/Old.Movie/old.mkv", b"OLD")
    bed.qbt.add(FakeTorrent(B, "Old.Movie", str(bed.seed_s / "movies"), [("Old.Movie/old.mkv", 3, 1)], tags={"~noHL"}))
    (bed.seed_p / "movies").mkdir(parents=True)
    d = FakeTorrent(D, "Pack", str(bed.seed_p / "movies"), [("new1.mkv", 1, 1), ("new2.mkv", 3, 1)], progress=0.3)
    bed.qbt.add(d)
    sync_client(bed.cat, bed.qbt)
    d.files[1] = ("Old.Movie/old.mkv", 3, 1)  # renamed in qBittorrent: b's demote destination
    sync_client(bed.cat, bed.qbt)
    assert _b_group(bed, None).action == "blocked"
    part = _b_group(bed, [B])
    assert part.action == "blocked", (part.action, part.reason)


def _skipped_file_renamed(bed):  # noqa: F811
    """b beside d, complete and settled, saved without its root folder; d's second file skipped
    (priority 0, never written) and renamed in qBittorrent onto b's demote destination: d writes
    there once its priority is raised. Nothing of d's record moves, and the skipped file has no
    old name on disk to miss: the index keeps ``new2.mkv`` (R76). Returns the second sync."""
    bed.qbt = _NoSubfolderQbt()
    write(bed.seed_s / "movies/Old.Movie/old.mkv", b"OLD")
    bed.qbt.add(FakeTorrent(B, "Old.Movie", str(bed.seed_s / "movies"), [("Old.Movie/old.mkv", 3, 1)], tags={"~noHL"}))
    write(bed.seed_p / "movies/new1.mkv", b"N")
    d = FakeTorrent(D, "Pack", str(bed.seed_p / "movies"), [("new1.mkv", 1, 1), ("new2.mkv", 3, 0)])
    bed.qbt.add(d)
    sync_client(bed.cat, bed.qbt)
    d.files[1] = ("Old.Movie/old.mkv", 3, 0)
    return sync_client(bed.cat, bed.qbt)


def test_a_skipped_file_renamed_in_its_client_blocks_the_sweeps_full_snapshot(bed):  # noqa: F811
    """The sweep plans on file lists from the index (``snapshot_view``): a complete torrent that
    skips a file is asked live, so the renamed place is in write_paths; the live list is then
    written back to the index."""
    rep = _skipped_file_renamed(bed)
    clients, infos = indexer.snapshot_view(bed.cat, [bed.qbt], [rep])
    snap = SnapshotBuilder(bed.cfg, bed.cat, list(clients)).build(None, infos=infos, live=False)
    g = _b_of(snap, bed)
    assert g.action == "blocked", (g.action, g.reason)
    assert str(bed.seed_p / "movies/Old.Movie/old.mkv") in snap.write_paths
    assert indexer.write_back(bed.cat, clients) == 1
    assert [r[1] for r in TorrentIndex(bed.cat.conn).files(bed.qbt.name, D)] == ["new1.mkv", "Old.Movie/old.mkv"]


def test_a_skipped_file_renamed_in_its_client_blocks_a_sweep_chunk_leaving_it_out(bed):  # noqa: F811
    rep = _skipped_file_renamed(bed)
    clients, infos = indexer.snapshot_view(bed.cat, [bed.qbt], [rep])
    part = [t for t in infos if t.hash == B]
    snap = SnapshotBuilder(bed.cfg, bed.cat, list(clients)).build(None, infos=part, listing=infos, live=False)
    g = _b_of(snap, bed)
    assert g.action == "blocked", (g.action, g.reason)


class _CountingQbt(_NoSubfolderQbt):
    def __init__(self):
        super().__init__()
        self.file_calls: list[str] = []

    def files(self, h):
        self.file_calls.append(h)
        return super().files(h)


def _b_e_and_d_skipping(bed):  # noqa: F811
    """b and e complete on /stash; d complete on /pool, saved without its root folder, skipping a file."""
    from qbhook.catalog.indexer import sync_client

    bed.qbt = _CountingQbt()
    write(bed.seed_s / "movies/Old.Movie/old.mkv", b"OLD")
    bed.qbt.add(FakeTorrent(B, "Old.Movie", str(bed.seed_s / "movies"), [("Old.Movie/old.mkv", 3, 1)], tags={"~noHL"}))
    write(bed.seed_s / "tv/Show/ep.mkv", b"EPIS")
    bed.qbt.add(FakeTorrent("e" * 40, "Show", str(bed.seed_s / "tv"), [("Show/ep.mkv", 4, 1)], tags={"~noHL"}))
    write(bed.seed_p / "movies/new1.mkv", b"N")
    bed.qbt.add(FakeTorrent(D, "Pack", str(bed.seed_p / "movies"), [("new1.mkv", 1, 1), ("new2.mkv", 3, 0)]))
    return sync_client(bed.cat, bed.qbt)


def test_a_sweep_in_chunks_asks_a_torrent_skipping_a_file_for_its_list_once(bed, monkeypatch):  # noqa: F811
    # R77: each chunk and each left-out torrent's check asked again (3 chunks: 4 requests).
    import time

    from qbhook.catalog import indexer
    from qbhook.catalog.torrents import TorrentIndex
    from qbhook.events import worker

    rep = _b_e_and_d_skipping(bed)
    monkeypatch.setattr(worker, "_CHUNK_TORRENTS", 1)
    view = indexer.snapshot_view(bed.cat, [bed.qbt], [rep])
    bed.qbt.file_calls.clear()
    index = TorrentIndex(bed.cat.conn)
    worker._plan_in_chunks(bed.cfg, bed.cat, index, [bed.qbt], view, None, None, True, time.time(), live=False)
    assert bed.qbt.file_calls.count(D) == 1


def test_a_chunk_leaving_out_a_torrent_removed_since_the_sync_still_plans(bed):  # noqa: F811
    # R77: the left-out torrent's listing raised UnknownTorrent and failed the whole sweep.
    from qbhook.catalog import indexer
    from qbhook.decide.snapshot import SnapshotBuilder, SweepReach

    rep = _b_e_and_d_skipping(bed)
    clients, infos = indexer.snapshot_view(bed.cat, [bed.qbt], [rep])
    del bed.qbt.t[D]
    part = [t for t in infos if t.hash == B]
    builder = SnapshotBuilder(bed.cfg, bed.cat, list(clients))
    snap = builder.build(None, infos=part, listing=infos, live=False, reach=SweepReach())
    assert [t.hash for t in snap.torrents] == [B]


def _sweep(bed, view, hashes=None):  # noqa: F811
    import time

    from qbhook.catalog.torrents import TorrentIndex
    from qbhook.events import worker

    index = TorrentIndex(bed.cat.conn)
    return worker._plan_in_chunks(bed.cfg, bed.cat, index, [bed.qbt], view, hashes, None, True, time.time(), live=False)


@pytest.mark.parametrize("chunk", [1, None], ids=["three chunks", "one chunk"])
def test_a_sweep_plans_without_a_torrent_of_its_chunk_removed_since_the_sync(bed, monkeypatch, caplog, chunk):  # noqa: F811
    # R77: d (skipping a file: listed live) removed between the sweep's sync and its chunk's
    # snapshot raised UnknownTorrent and failed the whole sweep (cron's `qbhook sweep`: exit 2).
    from qbhook.events import worker

    rep = _b_e_and_d_skipping(bed)
    if chunk is not None:
        monkeypatch.setattr(worker, "_CHUNK_TORRENTS", chunk)
    view = indexer.snapshot_view(bed.cat, [bed.qbt], [rep])
    del bed.qbt.t[D]
    bed.qbt.file_calls.clear()
    with caplog.at_level(logging.WARNING, logger="qbhook.decide.snapshot"):
        plan, seen, _tagged = _sweep(bed, view)
    planned = {h for g in plan.groups for h in g.torrents}
    assert planned == {B, E}
    assert {t.hash for t in seen.torrents} == {B, E}
    assert bed.qbt.file_calls.count(D) == 1  # asked once: the other chunks know it is gone
    assert [r for r in caplog.records if D in r.getMessage()] and len(caplog.records) == 1


def test_an_incremental_sweep_plans_without_an_incomplete_torrent_removed_since_the_sync(bed):  # noqa: F811
    # The same for an incomplete torrent (always listed live), named dirty by an event.
    rep = _b_e_and_d_skipping(bed)
    bed.qbt.t[D].progress = 0.5
    rep = indexer.sync_client(bed.cat, bed.qbt)
    view = indexer.snapshot_view(bed.cat, [bed.qbt], [rep])
    del bed.qbt.t[D]
    plan, _seen, _tagged = _sweep(bed, view, {B, D})
    assert {h for g in plan.groups for h in g.torrents} == {B}


def test_a_sweep_still_fails_on_any_other_client_error(bed):  # noqa: F811
    # Only a torrent its client no longer has is left out: a client that does not answer fails the sweep.
    from qbhook.errors import QbtError

    rep = _b_e_and_d_skipping(bed)
    view = indexer.snapshot_view(bed.cat, [bed.qbt], [rep])

    def down(h):
        raise QbtError("qBittorrent 'qbt' did not answer")

    bed.qbt.files = down
    with pytest.raises(QbtError, match="did not answer"):
        _sweep(bed, view)


def test_a_snapshot_outside_a_sweep_still_raises_for_a_removed_torrent(bed):  # noqa: F811
    # A hash a user named, or an event's torrent: gone is an answer the caller reports.
    from qbhook.errors import UnknownTorrent

    rep = _b_e_and_d_skipping(bed)
    clients, infos = indexer.snapshot_view(bed.cat, [bed.qbt], [rep])
    del bed.qbt.t[D]
    with pytest.raises(UnknownTorrent):
        SnapshotBuilder(bed.cfg, bed.cat, list(clients)).build([D], infos=infos, live=False)


@pytest.mark.parametrize("chunk", [None, 1], ids=["one chunk", "a chunk each"])
def test_a_torrent_of_the_chunk_answering_unknown_keeps_its_folder_a_write_prefix(bed, monkeypatch, chunk):  # noqa: F811
    # R79: d, skipping a file renamed onto b's demote destination, answered UnknownTorrent once (removed
    # and re-added, or unknown for a moment) while in b's chunk: it left the chunk's torrents and, as
    # ``inside`` still held it, was not left out either: nothing of it reached the write places, and
    # b was planned a demote onto the place d writes. Left out now, its folder is kept, as for a
    # left-out torrent whose client did not answer.
    from qbhook.errors import UnknownTorrent
    from qbhook.events import worker

    rep = _skipped_file_renamed(bed)
    if chunk is not None:
        monkeypatch.setattr(worker, "_CHUNK_TORRENTS", chunk)
    view = indexer.snapshot_view(bed.cat, [bed.qbt], [rep])
    real, asked = bed.qbt.files, []

    def files(h):
        asked.append(h)
        if h == D and asked.count(D) == 1:
            raise UnknownTorrent(f"qBittorrent 'qbt' has no torrent {D}")
        return real(h)

    bed.qbt.files = files
    plan, seen, _tagged = _sweep(bed, view)
    g = next(g for g in plan.groups if B in g.torrents)
    assert g.action == "blocked", (g.action, g.reason)
    assert D not in {t.hash for t in seen.torrents}


def test_a_chunk_keeps_the_folder_of_its_torrent_answering_unknown(bed):  # noqa: F811
    # The same, one builder: d of the chunk answers unknown; its content folder (its save path,
    # no subfolder) is a write prefix as for a left-out torrent whose client did not answer.
    from qbhook.decide.snapshot import SweepReach
    from qbhook.errors import UnknownTorrent

    rep = _skipped_file_renamed(bed)
    clients, infos = indexer.snapshot_view(bed.cat, [bed.qbt], [rep])

    def files(h):
        raise UnknownTorrent(f"qBittorrent 'qbt' has no torrent {h}")

    bed.qbt.files = files
    reach = SweepReach()
    snap = SnapshotBuilder(bed.cfg, bed.cat, list(clients)).build(
        None, infos=infos, listing=infos, live=False, reach=reach
    )
    assert D not in {t.hash for t in snap.torrents}
    assert str(bed.seed_p / "movies") in snap.write_prefixes
    assert reach.removed == {(bed.qbt.name, D)}
