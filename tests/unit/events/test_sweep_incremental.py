"""Incremental sweeps (qbhook.events.worker.sweep): an unchanged sweep plans nothing, a change
re-plans just the groups it can affect, and the listed events re-plan everything.

Real files and a real catalog in tmp_path, real scans; qBittorrent is a fake that answers
``sync/maindata`` with real deltas (only the fields that changed since a response id).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sqlite3
import threading
import time
import types

import pytest

import qbhook.events.worker as worker
from qbhook.catalog.locate import locate
from qbhook.catalog.scan import scan_pools
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex
from qbhook.clients.model import TorrentFile, TorrentInfo
from qbhook.config import SweepConfig
from qbhook.decide import snapshot
from qbhook.decide.facts import MISSING_GRACE_S
from qbhook.decide.plan import Delete
from qbhook.errors import QbhookError
from qbhook.events import _job
from qbhook.events.model import Event
from qbhook.events.queue import OVERFLOW_KEY, JobQueue
from qbhook.move import leftovers as move_leftovers
from qbhook.pathmap import PathMap
from tests.helpers import make_config, write

H1, H2, H3, H4 = "1" * 40, "2" * 40, "3" * 40, "4" * 40


class LiveQbt:
    """A qBittorrent whose ``maindata`` diffs its torrents against what it sent at each rid."""

    def __init__(self, name: str = "default"):
        self.name = name
        self.path_map = PathMap([])
        self.torrents_raw: dict[str, dict] = {}
        self.file_lists: dict[str, list[tuple[str, int]]] = {}
        self.skipped: dict[str, set[int]] = {}  # file indexes at priority 0
        self._sent: dict[int, dict] = {}
        self._rid = 0
        self.only_last_rid = False  # as real qBittorrent: an older response id gets a full update
        self.asked = threading.Event()  # set when a maindata request arrives

    def add(self, h, save, name, files, **kw):
        self.torrents_raw[h] = {
            "name": name,
            "save_path": str(save),
            "content_path": f"{save}/{name}",
            "state": "stalledUP",
            "progress": 1.0,
            "amount_left": 0,
            "size": sum(s for _r, s in files),
            "total_size": sum(s for _r, s in files),
            "category": "",
            "tags": "~noHL",  # the default policy's demote_require_tag
            "auto_tmm": False,
            "added_on": 1,
            "completion_on": 2,
            "upspeed": 0,
            **kw,
        }
        self.file_lists[h] = [(f"{name}/{rel}", size) for rel, size in files]

    def restart(self):
        self._sent.clear()  # a restarted qBittorrent knows no earlier response id

    def maindata(self, rid=0):
        self.asked.set()
        self._rid += 1
        now = copy.deepcopy(self.torrents_raw)
        old = self._sent.get(rid)
        if self.only_last_rid:
            self._sent.clear()
        self._sent[self._rid] = now
        if old is None:
            return {"rid": self._rid, "full_update": True, "torrents": now}
        delta = {}
        for h, rec in now.items():
            if h not in old:
                delta[h] = rec
            elif part := {k: v for k, v in rec.items() if old[h].get(k) != v}:
                delta[h] = part
        return {"rid": self._rid, "torrents": delta, "torrents_removed": [h for h in old if h not in now]}

    def torrents(self, hashes=None, **_kw):
        return [TorrentInfo.from_api({**r, "hash": h}, self.path_map, self.name) for h, r in self.torrents_raw.items()]

    def files(self, h):
        skipped = self.skipped.get(h, set())
        return [
            TorrentFile(i, rel, size, 1.0, 0 if i in skipped else 1) for i, (rel, size) in enumerate(self.file_lists[h])
        ]

    files_of_id = files


@pytest.fixture
def bed(tmp_path, monkeypatch):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool, policy={"demote_categories": ["movies"]})
    for root in (cfg.primary.seeding_root, cfg.cold.seeding_root):
        root.mkdir(parents=True)
    cat = Catalog.open(cfg.catalog)
    snapshots: list = []  # per snapshot: the hashes it was asked for; None: every torrent
    real = worker._snapshot

    def counted(cfg, cat, clients, hashes, infos, *rest, **kw):
        asked = hashes
        if hashes is None and infos is not None and len(infos) < len(b.qbt.torrents_raw):
            asked = [t.hash for t in infos]  # a chunk of a full re-plan
        snapshots.append(None if asked is None else sorted(asked))
        return real(cfg, cat, clients, hashes, infos, *rest, **kw)

    monkeypatch.setattr(worker, "_snapshot", counted)

    class Bed:
        pass

    b = Bed()
    b.cfg, b.cat, b.qbt, b.snapshots = cfg, cat, LiveQbt(), snapshots
    b.seed_s, b.seed_p, b.lib = cfg.primary.seeding_root, cfg.cold.seeding_root, stash / "media/movies"
    b.pool_lib = pool / "media/movies"

    def payload(h, save, name, files, **kw):
        for rel, data in files.items():
            write(save / name / rel, data)
        b.qbt.add(h, save, name, [(rel, len(data)) for rel, data in files.items()], **kw)

    def sweep(cfg=None):
        return worker.sweep(cfg or b.cfg, b.cat, [b.qbt])

    def decision(h):
        return next(t for t in TorrentIndex(b.cat.conn).torrents() if t.hash == h)

    b.payload, b.sweep, b.decision = payload, sweep, decision
    yield b
    cat.close()


def three_staying(bed):
    """Three one-torrent groups on the primary pool, each a settled stay (category not allowed)."""
    for h, name in ((H1, "One"), (H2, "Two"), (H3, "Three")):
        bed.payload(h, bed.seed_s, name, {"a.bin": name.encode() * 10, "b.nfo": b"nfo " + name.encode()}, category="tv")


def test_an_unchanged_second_sweep_builds_no_snapshot_and_says_so(bed):
    three_staying(bed)
    first = bed.sweep()
    assert first["full"] and first["replanned"]["groups"] == 3
    assert first["plan"]["stay"] == 3 and len(bed.snapshots) == 1
    bed.qbt.torrents_raw[H1].update(upspeed=12345, state="uploading")  # volatile: not a planning fact
    second = bed.sweep()
    assert len(bed.snapshots) == 1, "an unchanged sweep must not build a snapshot"
    assert not second["full"] and second["replanned"] == {"groups": 0, "torrents": 0, "why": {}}
    assert second["index_listing"] == "none"
    # status still sees every group's decision: the ones not re-planned keep their last one
    assert second["plan"] == first["plan"]
    from qbhook.events.status import report

    shown = report(bed.cfg, bed.cat)["last_sweep"]
    assert shown["full"] is False and shown["replanned"]["groups"] == 0 and shown["plan"]["stay"] == 3


def test_a_category_change_re_plans_only_its_group(bed):
    three_staying(bed)
    bed.sweep()
    assert bed.decision(H2).decision == "stay"
    bed.qbt.torrents_raw[H2]["category"] = "movies"
    out = bed.sweep()
    assert bed.snapshots[-1] == [H2]  # the targeted path: only the changed torrent (and its group)
    assert out["replanned"]["groups"] == 1 and out["replanned"]["why"] == {"torrent changed": 1}
    assert bed.decision(H2).decision == "demote", bed.decision(H2).decision_reason
    assert bed.decision(H1).decision == bed.decision(H3).decision == "stay"
    assert out["plan"]["demote"] == 1 and out["plan"]["stay"] == 2


def test_a_new_library_hardlink_flips_demote_to_stay(bed):
    bed.payload(H1, bed.seed_s, "Film", {"film.mkv": b"film data" * 50}, category="movies")
    bed.sweep()
    assert bed.decision(H1).decision == "demote"
    write(bed.lib / "Film (2020)/x", b"")  # the library folder exists; then only a link is made
    os.link(bed.seed_s / "Film/film.mkv", bed.lib / "Film (2020)/film.mkv")
    out = bed.sweep()
    assert out["replanned"]["groups"] == 1
    row = bed.decision(H1)
    assert row.decision == "stay" and "linked outside the seeding tree" in row.decision_reason


def test_a_link_count_change_alone_re_plans_a_settled_stay(bed):
    """nlink only (no torrent change, no new file in the group): the scan's change mark reaches the group."""
    bed.payload(H1, bed.seed_p, "Old", {"old.mkv": b"cold data" * 50})
    bed.payload(H2, bed.seed_p, "Other", {"other.mkv": b"other data" * 50})
    bed.sweep()
    before, other = bed.decision(H1), bed.decision(H2)
    assert before.decision == "stay" and "seed-only data on pool" in before.decision_reason
    os.makedirs(bed.pool_lib)
    os.link(bed.seed_p / "Old/old.mkv", bed.pool_lib / "old.mkv")
    out = bed.sweep()
    assert out["replanned"] == {"groups": 1, "torrents": 1, "why": {"files changed": 1}}
    assert bed.snapshots[-1] == [H1]
    after = bed.decision(H1)
    assert after.decision == "stay" and "linked outside the seeding tree on the cold pool" in after.decision_reason
    assert bed.decision(H2).decided_at == other.decided_at  # not re-planned


def _find_unhashed(bed, path):
    """`qbhook find` on a file still settling: it records the path (``record_path``), hashes nothing."""
    cfg = dataclasses.replace(bed.cfg, scan=dataclasses.replace(bed.cfg.scan, settle_seconds=3600))
    locate(bed.cat, cfg, str(path))


def test_qbhook_find_after_a_scan_leaves_the_scans_change_to_the_next_sweep(bed):
    """A write outside a scan set the inode's ``seen_scan`` to NULL: the change the scan had just
    recorded (a new link) was no longer seen by the incremental sweep (R18)."""
    bed.payload(H1, bed.seed_p, "Old", {"old.mkv": b"cold data" * 50})
    bed.payload(H2, bed.seed_p, "Other", {"other.mkv": b"other data" * 50})
    bed.sweep()
    assert bed.decision(H1).decision == "stay"
    os.makedirs(bed.pool_lib)
    os.link(bed.seed_p / "Old/old.mkv", bed.pool_lib / "old.mkv")
    scan_pools(bed.cat, list(bed.cfg.pools), bed.cfg.scan)  # `qbhook scan` records the new link
    _find_unhashed(bed, bed.seed_p / "Old/old.mkv")
    out = bed.sweep()
    assert out["replanned"] == {"groups": 1, "torrents": 1, "why": {"files changed": 1}}
    assert "linked outside the seeding tree on the cold pool" in bed.decision(H1).decision_reason


def test_a_change_only_qbhook_find_recorded_re_plans_its_group(bed):
    """A link made outside every pool moves only nlink; `qbhook find` recorded it first, so the
    sweep's scan finds the row equal and writes nothing: the write's own stamp must say it."""
    bed.payload(H1, bed.seed_p, "Old", {"old.mkv": b"cold data" * 50})
    bed.payload(H2, bed.seed_p, "Other", {"other.mkv": b"other data" * 50})
    bed.sweep()
    other = bed.decision(H2)
    outside = bed.cfg.catalog.parent / "outside"
    outside.mkdir()
    os.link(bed.seed_p / "Old/old.mkv", outside / "old.mkv")
    _find_unhashed(bed, bed.seed_p / "Old/old.mkv")
    out = bed.sweep()
    assert out["replanned"] == {"groups": 1, "torrents": 1, "why": {"files changed": 1}}
    assert bed.decision(H2).decided_at == other.decided_at  # not re-planned
    assert bed.sweep()["replanned"]["groups"] == 0  # once: the sweep's scans lift the mark past the stamp


def test_a_group_waiting_for_min_seeding_age_is_re_planned_and_demotes_once_old_enough(bed):
    cfg = dataclasses.replace(bed.cfg, policy=dataclasses.replace(bed.cfg.policy, min_seeding_age=2.0))
    bed.payload(H1, bed.seed_s, "Fresh", {"f.mkv": b"fresh" * 50}, category="movies", completion_on=int(time.time()))
    bed.sweep(cfg)
    assert bed.decision(H1).decision == "stay" and "completed less than" in bed.decision(H1).decision_reason
    time.sleep(2.2)  # nothing changes but the clock
    out = bed.sweep(cfg)
    assert not out["full"] and out["replanned"]["why"] == {"not a settled stay": 1}
    assert bed.decision(H1).decision == "demote"


def test_full_every_zero_re_plans_everything_every_sweep(bed):
    cfg = dataclasses.replace(bed.cfg, sweep=SweepConfig(full_every=0))
    three_staying(bed)
    bed.sweep(cfg)
    out = bed.sweep(cfg)
    assert out["full"] and out["replanned"]["groups"] == 3 and len(bed.snapshots) == 2
    assert bed.snapshots[-1] is None  # every torrent, not a targeted list
    assert "sweep.full_every is 0" in out["replanned"]["why"]


def test_full_every_elapsed_re_plans_everything(bed, monkeypatch):
    three_staying(bed)
    bed.sweep()
    assert not bed.sweep()["full"]
    t = time.time()
    monkeypatch.setattr(worker.time, "time", lambda: t + bed.cfg.sweep.full_every + 1)
    out = bed.sweep()
    assert out["full"] and "sweep.full_every elapsed" in out["replanned"]["why"]


def test_a_config_change_forces_a_full_re_plan(bed):
    three_staying(bed)
    bed.sweep()
    assert not bed.sweep()["full"]
    cfg = dataclasses.replace(bed.cfg, policy=dataclasses.replace(bed.cfg.policy, demote_categories=("movies", "tv")))
    out = bed.sweep(cfg)
    assert out["full"] and out["replanned"]["why"] == {"configuration changed": 1}
    assert out["plan"]["demote"] == 3  # the new policy, applied to groups nothing else touched


def test_a_qbittorrent_restart_forces_a_full_re_plan(bed):
    three_staying(bed)
    bed.sweep()
    assert not bed.sweep()["full"]
    bed.qbt.restart()
    out = bed.sweep()
    assert out["full"] and out["replanned"]["why"] == {"default: full update from the client": 1}
    assert out["replanned"]["groups"] == 3


def test_the_first_sweep_of_a_process_is_full(bed, monkeypatch):
    three_staying(bed)
    bed.sweep()
    monkeypatch.setattr(worker, "_PROCESS", "another process")
    out = bed.sweep()
    assert out["full"] and out["replanned"]["why"] == {"first sweep of this process": 1}


def test_a_removed_torrent_re_plans_the_group_it_left(bed):
    """Two torrents sharing files are one group; when one goes, the other is re-planned alone."""
    bed.payload(H1, bed.seed_s, "Shared", {"s.mkv": b"shared" * 50}, category="tv")
    bed.qbt.add(H2, bed.seed_s, "Shared", [("s.mkv", 300)], category="tv")  # a cross-seed of the same files
    bed.sweep()
    shared = bed.decision(H1).group_id
    assert shared == bed.decision(H2).group_id
    del bed.qbt.torrents_raw[H2]
    out = bed.sweep()
    assert out["replanned"]["groups"] == 1 and bed.snapshots[-1] == [H1]
    assert out["replanned"]["why"] == {"group-mate changed": 1}
    assert bed.decision(H1).group_id not in (None, shared)


def _restarted_listing_only_h1(bed):
    """H1 and H2, cross-seeds of one file at one path, planned; then qBittorrent restarts and its
    first full answer lists H1 only (H2 still loading, or its resume data failed)."""
    bed.payload(H1, bed.seed_s, "Shared", {"s.mkv": b"shared" * 50}, category="movies")
    bed.qbt.add(H2, bed.seed_s, "Shared", [("s.mkv", 300)], category="movies")
    bed.sweep()
    assert bed.decision(H1).group_id == bed.decision(H2).group_id
    bed.qbt.restart()
    return bed.qbt.torrents_raw.pop(H2)


def _plan_of(bed, monkeypatch) -> dict:
    got: dict = {}
    real = worker._replan

    def spy(*a, **kw):
        plan, tagged, listing = real(*a, **kw)
        got["plan"] = plan
        return plan, tagged, listing

    monkeypatch.setattr(worker, "_replan", spy)
    return got


def test_a_torrent_left_out_of_a_full_listing_keeps_the_group_sharing_its_files(bed, monkeypatch):
    """R34: the listing after a restart leaves H2 out; H1 alone would demote and delete the file
    H2 still uses. The group stays, naming H2, until H2 has been missing for the grace."""
    _restarted_listing_only_h1(bed)
    got = _plan_of(bed, monkeypatch)
    out = bed.sweep()
    (g,) = [g for g in got["plan"].groups if H1 in g.torrents]
    assert g.action == "stay" and not g.steps
    assert g.reason.startswith(f"torrent {H2} (Shared) missing from default's listing since ")
    assert str(bed.seed_s / "Shared/s.mkv") in g.reason
    assert out["plan"]["demote"] == 0
    # re-planned every sweep while it waits (an unsettled stay), still staying within the grace
    again = bed.sweep()
    assert again["replanned"]["why"] == {"not a settled stay": 1}
    assert bed.decision(H1).decision == "stay"


def test_after_the_grace_a_missing_torrent_is_gone_and_its_group_mate_demotes(bed, monkeypatch):
    _restarted_listing_only_h1(bed)
    bed.sweep()
    assert bed.decision(H1).decision == "stay"
    later = time.time() + MISSING_GRACE_S + 60
    monkeypatch.setattr(snapshot, "time", types.SimpleNamespace(time=lambda: later))  # the snapshot's clock
    got = _plan_of(bed, monkeypatch)
    out = bed.sweep()
    (g,) = [g for g in got["plan"].groups if H1 in g.torrents]
    assert g.action == "demote" and out["replanned"]["why"] == {"not a settled stay": 1}
    assert str(bed.seed_s / "Shared/s.mkv") in [s.path for s in g.steps if isinstance(s, Delete)]


def test_a_torrent_back_in_the_listing_is_planned_with_its_group_again(bed):
    raw = _restarted_listing_only_h1(bed)
    bed.sweep()
    bed.qbt.torrents_raw[H2] = raw  # its session loaded
    bed.sweep()
    assert bed.decision(H1).group_id == bed.decision(H2).group_id
    assert bed.decision(H1).decision == "demote"


def test_the_cli_plan_on_a_live_listing_that_lacks_an_indexed_torrent_keeps_its_group(bed):
    """`qbhook plan`/`apply` list live: H2, present in the index but not in the listing, is
    missing since that listing, and the group sharing its file stays; the index is synced then,
    so it records when H2 went (R38: the next plan counts the grace from it)."""
    from qbhook.decide.planning import plan_run

    _restarted_listing_only_h1(bed)
    _snap, plan, use = plan_run(bed.cfg, bed.cat, [bed.qbt], scan=False)
    (g,) = plan.groups
    assert g.torrents == [H1] and g.action == "stay" and f"torrent {H2} (Shared) missing" in g.reason
    assert TorrentIndex(bed.cat.conn).present_hashes("default") == {H1}  # H2's gone_at recorded
    assert use.problems == ()


def test_the_cli_plan_counts_the_grace_of_a_removed_torrent_from_the_first_plan_that_missed_it(bed, monkeypatch):
    """R38: no sweep ran since the user removed H2; each `qbhook plan` said "missing since now",
    so H1's group stayed for ever with a moving time. The first plan records when H2 went."""
    from qbhook.decide.planning import plan_run

    bed.payload(H1, bed.seed_s, "Shared", {"s.mkv": b"shared" * 50}, category="movies")
    bed.qbt.add(H2, bed.seed_s, "Shared", [("s.mkv", 300)], category="movies")
    bed.sweep()
    del bed.qbt.torrents_raw[H2]  # removed by the user, files kept (H1 uses them)
    _snap, first, _use = plan_run(bed.cfg, bed.cat, [bed.qbt], scan=False)
    (g,) = first.groups
    assert g.action == "stay" and f"torrent {H2} (Shared) missing" in g.reason
    later = time.time() + MISSING_GRACE_S + 60
    monkeypatch.setattr(snapshot, "time", types.SimpleNamespace(time=lambda: later))
    _snap, plan, _use = plan_run(bed.cfg, bed.cat, [bed.qbt], scan=False)
    (g,) = plan.groups
    assert "missing" not in g.reason, g.reason  # the grace ran out: H1 is planned on its own
    assert g.torrents == [H1]


def test_the_cli_plan_says_a_client_whose_index_it_could_not_sync(bed, monkeypatch):
    from qbhook.catalog import indexer
    from qbhook.decide import planning
    from qbhook.errors import QbtError

    _restarted_listing_only_h1(bed)

    def unreachable(_catalog, client, **_kw):
        raise QbtError("connection refused", hint="is qBittorrent running?")

    monkeypatch.setattr(indexer, "sync_client", unreachable)
    _snap, plan, use = planning.plan_run(bed.cfg, bed.cat, [bed.qbt], scan=False)
    assert [p.message for p in use.problems] == ["cannot sync default: connection refused"]
    assert use.problems[0].hint == "is qBittorrent running?"
    assert use.as_dict()["problems"] == ["cannot sync default: connection refused"]
    assert plan.groups[0].action == "stay"  # still missing since this listing


def test_the_cli_plan_on_a_catalog_opened_read_only_plans_without_syncing(bed):
    """R39: a plan on a catalog opened for reading only (``readonly=True``) whose listing lacks an
    indexed torrent raised "attempt to write a readonly database": the whole plan lost, exit 74.
    The sync that records when H2 went is skipped; the plan is the same."""
    from qbhook.decide.planning import plan_run

    _restarted_listing_only_h1(bed)
    ro = Catalog.open(bed.cfg.catalog, readonly=True)
    try:
        _snap, plan, use = plan_run(bed.cfg, ro, [bed.qbt], scan=False)
    finally:
        ro.close()
    (g,) = plan.groups
    assert g.torrents == [H1] and g.action == "stay" and f"torrent {H2} (Shared) missing" in g.reason
    assert use.problems == ()
    assert TorrentIndex(bed.cat.conn).present_hashes("default") == {H1, H2}  # nothing written


def test_the_cli_plan_on_a_catalog_it_may_not_write_says_so_and_keeps_the_plan(bed):
    """R39: a catalog opened to be written that SQLite opens read-only (``plan --no-scan`` by a
    user who may read the file but not write it): the failed sync is a problem line, as an
    unreachable client's, and the plan is kept."""
    from qbhook.catalog.db import connect
    from qbhook.decide.planning import plan_run

    _restarted_listing_only_h1(bed)
    unwritable = Catalog(connect(bed.cfg.catalog, readonly=True))  # not told: as SQLite's fallback
    try:
        _snap, plan, use = plan_run(bed.cfg, unwritable, [bed.qbt], scan=False)
    finally:
        unwritable.close()
    (g,) = plan.groups
    assert g.torrents == [H1] and g.action == "stay" and f"torrent {H2} (Shared) missing" in g.reason
    assert [p.message for p in use.problems] == [
        f"cannot sync default: catalog {bed.cfg.catalog}: attempt to write a readonly database"
    ]
    assert "may write" in use.problems[0].hint
    assert TorrentIndex(bed.cat.conn).present_hashes("default") == {H1, H2}


def test_a_full_listing_of_no_torrent_is_not_applied_and_nothing_is_planned(bed, monkeypatch, caplog):
    three_staying(bed)
    bed.sweep()
    bed.qbt.restart()
    bed.qbt.torrents_raw.clear()  # qBittorrent answers before it loaded any torrent
    got = _plan_of(bed, monkeypatch)
    out = bed.sweep()
    assert "plan" not in got and out["replanned"]["groups"] == 0
    assert out["refused"] == [
        "default: listed no torrent while the torrent index holds 3 of it; not applied, "
        "nothing planned this round (still loading its session after a restart?)"
    ]
    assert [t.gone_at for t in TorrentIndex(bed.cat.conn).torrents(include_gone=True)] == [None] * 3
    assert "default: listed no torrent" in caplog.text
    assert TorrentIndex(bed.cat.conn).sync_state("default")[0] == 0  # the next answer is a full one again


def test_a_file_hashed_after_the_decision_re_plans_its_group(bed):
    three_staying(bed)
    bed.sweep()
    bed.cat.conn.execute(
        "UPDATE inodes SET hashed_at = ? WHERE id = (SELECT inode FROM paths WHERE path = ?)",
        (time.time() + 1, os.fsencode(bed.seed_s / "Two/a.bin")),
    )
    bed.cat.conn.commit()
    out = bed.sweep()
    assert out["replanned"]["why"] == {"files changed": 1} and bed.snapshots[-1] == [H2]


def test_a_full_re_plan_in_chunks_decides_like_one_snapshot(bed, monkeypatch):
    """Chunks bound a full sweep's memory; groups are never split and the decisions are the same."""
    three_staying(bed)
    bed.qbt.add(H3[:-1] + "4", bed.seed_s, "Three", [("a.bin", 50), ("b.nfo", 9)], category="tv")  # a cross-seed
    bed.qbt.torrents_raw[H1]["category"] = "movies"
    cfg = dataclasses.replace(bed.cfg, sweep=SweepConfig(full_every=0))
    whole = bed.sweep(cfg)
    assert bed.snapshots == [None]
    monkeypatch.setattr(worker, "_CHUNK_TORRENTS", 2)
    chunked = bed.sweep(cfg)
    assert len(bed.snapshots) == 3 and all(len(c) <= 2 for c in bed.snapshots[1:])
    assert sorted(h for c in bed.snapshots[1:] for h in c) == sorted(bed.qbt.torrents_raw)
    assert [H3, H3[:-1] + "4"] in [sorted(c) for c in bed.snapshots[1:]]  # one group, one chunk
    assert chunked["plan"] == whole["plan"] and chunked["plan"]["demote"] == 1 and chunked["plan"]["stay"] == 2

    def decisions(out):
        return sorted((g["group_id"], g["action"], g["reason"]) for g in out["pending"])

    assert decisions(chunked) == decisions(whole)


def test_a_chunk_that_splits_a_group_is_planned_again_whole(bed, monkeypatch):
    """The index groups behind the disk (a hardlink made after the sync): the chunk sees a seeding
    link of a torrent outside it, and that group is planned again as one, through the closure."""
    h4 = H1[:-1] + "4"
    bed.payload(H1, bed.seed_s, "Film", {"film.mkv": b"film" * 100}, category="movies")
    write(bed.seed_s / "Film.Other/x", b"")
    os.link(bed.seed_s / "Film/film.mkv", bed.seed_s / "Film.Other/film.mkv")
    bed.qbt.add(h4, bed.seed_s, "Film.Other", [("film.mkv", 400)], category="movies")
    cfg = dataclasses.replace(bed.cfg, sweep=SweepConfig(full_every=0))
    whole = bed.sweep(cfg)
    (g,) = whole["pending"]
    assert g["action"] == "demote" and len(g["names"]) == 2
    monkeypatch.setattr(worker, "_CHUNK_TORRENTS", 1)
    monkeypatch.setattr(TorrentIndex, "groups", lambda self: {})  # every torrent its own group
    split = bed.sweep(cfg)
    assert bed.snapshots[-3:] == [[H1], [h4], sorted([H1, h4])]  # two chunks, then the whole group
    assert split["pending"] == whole["pending"] and split["replanned"]["groups"] == 1


def test_the_index_refresh_runs_only_when_the_catalog_or_a_file_list_changed(bed, monkeypatch):
    calls = []
    real = TorrentIndex.refresh
    monkeypatch.setattr(TorrentIndex, "refresh", lambda self, now=None: calls.append(1) or real(self, now))
    three_staying(bed)
    bed.sweep()
    assert len(calls) == 1  # first sync: every file list written
    bed.sweep()
    assert len(calls) == 2  # the first sweep's snapshot stored hashes after that refresh
    bed.sweep()
    assert len(calls) == 2, "unchanged: nothing the refresh reads changed"
    write(bed.seed_s / "Two/b.nfo", b"rewritten, same path, new ctime")
    bed.sweep()
    assert len(calls) == 3  # the scan recorded a changed inode
    bed.sweep()
    n = len(calls)
    bed.cat.conn.execute("UPDATE inodes SET hashed_at = 5 WHERE id = (SELECT min(id) FROM inodes)")
    bed.cat.conn.commit()
    bed.sweep()
    assert len(calls) == n, "a time written alone (a re-hash to the same digest) changes no payload id"
    bed.cat.conn.execute(
        "UPDATE inodes SET hash = randomblob(32), hash_size = size, hash_mtime_ns = mtime_ns, "
        "hash_ctime_ns = ctime_ns, hashed_at = 6 WHERE id = (SELECT min(id) FROM inodes)"
    )
    bed.cat.conn.commit()
    bed.sweep()
    assert len(calls) == n + 1  # a hash stored by someone else (a hash worker)
    bed.qbt.torrents_raw[H1]["name"] = "One.Renamed"  # its file list is fetched again
    bed.sweep()
    assert len(calls) == n + 2


def test_a_group_blocked_on_scan_settle_time_is_re_planned_and_demotes_once_hashed(bed):
    """A file modified seconds ago is not hashed yet (scan.settle_seconds): blocked, re-planned each sweep."""
    cfg = dataclasses.replace(bed.cfg, scan=dataclasses.replace(bed.cfg.scan, settle_seconds=2.0))
    bed.payload(H1, bed.seed_s, "Busy", {"b.mkv": b"still settling" * 20}, category="movies")
    bed.sweep(cfg)
    assert bed.decision(H1).decision == "blocked" and "not hashed yet" in bed.decision(H1).decision_reason
    time.sleep(2.2)  # nothing changes but the clock
    out = bed.sweep(cfg)
    assert out["replanned"]["why"] == {"not a settled stay": 1}
    assert bed.decision(H1).decision == "demote"


# ------------------------------------------------------------------ waiting, durability, crashes


def _synchronous(cat) -> int:
    return cat.conn.execute("PRAGMA synchronous").fetchone()[0]


class _Applied:
    def to_dict(self):
        return {"applied": True}


def test_a_sweep_commits_its_records_without_fsync_and_acts_with_full_durability(bed, monkeypatch):
    """Scans, index and sweep state commit under synchronous=NORMAL; the leftover-view removal and
    the executor (journal first, act second) see FULL; the connection ends FULL."""
    seen: dict[str, list[int]] = {"scan": [], "leftovers": [], "apply": []}
    real_scan = worker.scan_pools

    def scan(cat, *a, **k):
        seen["scan"].append(_synchronous(cat))
        return real_scan(cat, *a, **k)

    def leftovers(cfg, cat, clients):
        seen["leftovers"].append(_synchronous(cat))
        return []

    class Executor:
        def apply(self, plan, trigger, group_ids=None, dry_run=False):
            assert (trigger, group_ids, dry_run) == ("sweeper", None, False)
            seen["apply"].append(_synchronous(bed.cat))
            return _Applied()

    monkeypatch.setattr(worker, "scan_pools", scan)
    monkeypatch.setattr(move_leftovers, "remove_leftover_views", leftovers)
    cfg = dataclasses.replace(bed.cfg, policy=dataclasses.replace(bed.cfg.policy, auto_apply=True))
    assert _synchronous(bed.cat) == 2  # FULL: how the catalog is opened
    bed.payload(H1, bed.seed_s, "Film", {"film.mkv": b"film data" * 50}, category="movies")
    out = worker.sweep(cfg, bed.cat, [bed.qbt], executor=Executor())
    assert out["applied"] == {"applied": True} and out["plan"]["demote"] == 1
    assert seen == {"scan": [1], "leftovers": [2], "apply": [2]}
    assert _synchronous(bed.cat) == 2
    assert set(out["phase_seconds"]) == {"scans", "index", "choose", "plan", "apply"}
    # a connection something left at NORMAL: the acts still run with FULL, and it ends FULL
    bed.cat.conn.execute("PRAGMA synchronous = NORMAL")
    bed.qbt.torrents_raw[H1]["category"] = ""
    bed.sweep()
    bed.qbt.torrents_raw[H1]["category"] = "movies"
    bed.cat.conn.execute("PRAGMA synchronous = NORMAL")
    worker.sweep(cfg, bed.cat, [bed.qbt], executor=Executor())
    assert seen["apply"] == [2, 2] and seen["leftovers"] == [2, 2] and _synchronous(bed.cat) == 2


def test_a_sweep_that_raises_leaves_the_connection_fully_durable(bed, monkeypatch):
    three_staying(bed)

    def broken(*_a, **_k):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(worker, "_full_replan_reasons", broken)
    with pytest.raises(sqlite3.OperationalError):
        bed.sweep()
    assert _synchronous(bed.cat) == 2


def test_a_sweep_that_failed_after_its_sync_leaves_the_change_to_the_next_sweep(bed, monkeypatch):
    """The sync hands a torrent's change to the sweep that made it, once: if that sweep dies before
    re-planning, the next one must not take the torrent as unchanged."""
    three_staying(bed)
    bed.sweep()
    bed.sweep()
    bed.qbt.torrents_raw[H2]["category"] = "movies"
    real = worker._replan

    def dies(*_a, **_k):
        raise QbhookError("qBittorrent went away mid-sweep")

    monkeypatch.setattr(worker, "_replan", dies)
    with pytest.raises(QbhookError):
        bed.sweep()
    monkeypatch.setattr(worker, "_replan", real)
    out = bed.sweep()
    assert out["full"] and "index synced since the last plan" in out["replanned"]["why"]
    assert bed.decision(H2).decision == "demote", bed.decision(H2).decision_reason
    assert not bed.sweep()["full"]  # and back to incremental once planned


@pytest.mark.parametrize("only_last_rid", [False, True], ids=["client keeps old rids", "real qBittorrent"])
def test_a_sweep_that_failed_in_its_scans_leaves_both_changes_to_the_next_sweep(bed, monkeypatch, only_last_rid):
    """The scans fail after the prefetched maindata answer was taken: neither the torrent change it
    carried nor the link a scan recorded may be lost."""
    bed.payload(H4, bed.seed_p, "Old", {"old.mkv": b"cold data" * 50})
    three_staying(bed)
    bed.qbt.only_last_rid = only_last_rid
    bed.sweep()
    bed.sweep()
    bed.qbt.torrents_raw[H2]["category"] = "movies"
    os.makedirs(bed.pool_lib)
    os.link(bed.seed_p / "Old/old.mkv", bed.pool_lib / "old.mkv")
    real = worker.scan_pools

    def dies_after_the_scans(cat, pools, *a, **k):
        results = real(cat, pools, *a, **k)  # the cold pool's scan records the new link, then
        assert len(results) == 2
        raise QbhookError("the sweep dies before its sync")

    monkeypatch.setattr(worker, "scan_pools", dies_after_the_scans)
    with pytest.raises(QbhookError):
        bed.sweep()
    monkeypatch.setattr(worker, "scan_pools", real)
    bed.sweep()
    assert bed.decision(H2).decision == "demote", bed.decision(H2).decision_reason
    assert "linked outside the seeding tree on the cold pool" in bed.decision(H4).decision_reason


def test_the_client_is_asked_while_the_pools_are_scanned(bed, monkeypatch):
    """The maindata request (qBittorrent's wait) is under way before the first scan ends."""
    three_staying(bed)
    bed.sweep()
    real = worker.scan_pools
    during: list[bool] = []

    def scan(*a, **k):
        during.append(bed.qbt.asked.wait(5))  # main asked only after the scans: this timed out
        return real(*a, **k)

    bed.qbt.asked.clear()
    monkeypatch.setattr(worker, "scan_pools", scan)
    out = bed.sweep()
    assert during[0], "no maindata request was sent while the scans ran"
    assert out["replanned"]["groups"] == 0 and out["index"][0]["mode"] == "incremental"


def test_the_free_space_alert_is_checked_by_a_sweep_that_plans_nothing(bed, monkeypatch):
    from qbhook import notify
    from qbhook.config import NotifyConfig

    sent: list[tuple[str, str, str]] = []
    monkeypatch.setattr(notify, "active", lambda: object())
    monkeypatch.setattr(notify, "emit", lambda kind, text, severity: sent.append((kind, text, severity)))
    cfg = dataclasses.replace(bed.cfg, notify=NotifyConfig(urls=("json://x",), free_space_below=2**20))
    three_staying(bed)
    bed.sweep(cfg)
    bed.sweep(cfg)
    assert sent == []  # the test disk has more than 1 MiB free
    real = os.statvfs

    def nearly_full(path):
        st = real(path)
        return os.statvfs_result((st.f_bsize, 4096, st.f_blocks, 10, 10, *tuple(st)[5:]))

    monkeypatch.setattr(os, "statvfs", nearly_full)
    out = bed.sweep(cfg)
    assert out["replanned"]["groups"] == 0 and bed.snapshots == [None]  # nothing planned: no snapshot
    assert [k for k, _t, _s in sent] == ["free_space", "free_space"]
    assert "pool stash has 40.0 KiB free" in sent[0][1]
    bed.sweep(cfg)
    assert len(sent) == 2  # once per episode, as on a sweep that plans


# ------------------------------------------------------------------ what an unchanged sweep reads
def test_an_unchanged_sweep_reads_no_file_row_and_no_stored_record(bed, monkeypatch):
    """After the index sync, choosing what to re-plan must not pass over every file row (the
    dropped-inode join) nor decode the torrents' stored records when nothing changed."""
    import json

    from tests.unit.catalog.test_torrent_index import _plans_of

    three_staying(bed)
    bed.sweep()
    bed.sweep()
    stored = {r[0] for r in bed.cat.conn.execute("SELECT raw FROM torrents")}
    real_loads, decoded = json.loads, []
    monkeypatch.setattr(json, "loads", lambda s, *a, **k: (s in stored and decoded.append(s)) or real_loads(s, *a, **k))
    statements: list[str] = []
    bed.cat.conn.set_trace_callback(statements.append)
    try:
        out = bed.sweep()
    finally:
        bed.cat.conn.set_trace_callback(None)
    assert out["replanned"]["groups"] == 0 and decoded == []
    plans = _plans_of(bed.cat, [q for q in statements if "torrent_files" in q])
    assert plans and not [p for p in plans if p.startswith("SCAN ")], plans


def test_an_inode_dropped_under_a_file_row_is_still_seen_by_the_next_sweep(bed):
    """The pass over every file row runs when the catalog was written since the last plan: an
    inode row removed (here with foreign keys off, as a damaged catalog) re-plans its torrent."""
    three_staying(bed)
    bed.sweep()
    bed.sweep()
    inode = bed.cat.conn.execute(
        "SELECT f.inode FROM torrent_files f JOIN torrents t ON t.id = f.torrent WHERE t.hash = ?", (H2,)
    ).fetchone()[0]
    bed.cat.conn.execute("PRAGMA foreign_keys = OFF")
    bed.cat.conn.execute("DELETE FROM inodes WHERE id = ?", (inode,))
    bed.cat.conn.execute("PRAGMA foreign_keys = ON")
    bed.cat.conn.commit()
    out = bed.sweep()
    assert out["replanned"]["why"].get("files changed") == 1 and out["replanned"]["torrents"] == 1


def test_a_truncated_job_re_plans_what_fell_past_its_lists(bed, monkeypatch):
    """A burst of events past a job's caps (``events._job``) keeps only the first names: the
    worker must look wider than the lists, or the torrents named past the caps wait for the
    next sweep (hours) or, with ``serve --no-sweep``, for ever."""
    three_staying(bed)
    bed.sweep()
    bed.payload(H4, bed.seed_s, "Four", {"a.bin": b"four" * 10}, category="movies")
    monkeypatch.setattr(_job, "MAX_JOB_HASHES", 1)
    queue = JobQueue(bed.cat.conn)
    queue.enqueue(Event("cross-seed", "torrent_added", hashes=(H1, H4)), now=0.0)
    job = queue.claim("w", now=0.0)
    assert job.hashes == (H1,) and job.truncated  # H4 fell past the cap
    result = worker.handle_job(bed.cfg, bed.cat, [bed.qbt], job)
    assert bed.decision(H4).decision == "demote", result
    assert result["sweep"]["replanned"]["groups"] == 1 and "swept" in result["note"]
    assert [g["names"] for g in result["groups"]] == [["Four"]]


def test_a_job_naming_no_torrent_and_no_file_looks_around(bed):
    """``sweep:<source>`` jobs (``Event.coalesce_key``: an *arr's media deleted without its
    paths) mean "something changed, look around"; the worker answered "no torrent matches" and
    planned nothing, so a library file deleted that way left its torrent staying until the next
    sweep (hours, or never under ``serve --no-sweep``)."""
    three_staying(bed)
    bed.sweep()
    bed.payload(H4, bed.seed_s, "Four", {"a.bin": b"four" * 10}, category="movies")
    queue = JobQueue(bed.cat.conn)
    queue.enqueue(Event("radarr", "media_deleted"), now=0.0)
    job = queue.claim("w", now=0.0)
    assert job.hashes == () and job.paths == () and not job.truncated
    result = worker.handle_job(bed.cfg, bed.cat, [bed.qbt], job)
    assert bed.decision(H4).decision == "demote", result
    assert "look around" in result["note"] and result["sweep"]["replanned"]["groups"] == 1


def test_an_event_that_came_while_the_queue_was_full_is_handled_by_the_sweep_job(bed):
    """Past server.max_pending an event adds no row of its own (``JobQueue.enqueue``): it waits
    in the overflow job, which names nothing, so the worker's sweep is what handles it."""
    three_staying(bed)
    bed.sweep()
    bed.payload(H4, bed.seed_s, "Four", {"a.bin": b"four" * 10}, category="movies")
    queue = JobQueue(bed.cat.conn, max_pending=2)
    for i in range(5):  # a flood of subjects no client knows
        queue.enqueue(Event("sonarr", "import", paths=(f"/nowhere/{i}.mkv",)), now=0.0)
    assert queue.enqueue(Event("qbittorrent", "torrent_finished", hashes=(H4,)), now=1.0).overflow
    for _ in range(2):
        queue.complete(queue.claim("w", now=2.0).id, "{}")
    job = queue.claim("w", now=2.0)
    assert job.coalesce_key == OVERFLOW_KEY and job.event_count == 4
    result = worker.handle_job(bed.cfg, bed.cat, [bed.qbt], job)
    assert bed.decision(H4).decision == "demote", result
    assert "queue was full" in result["note"] and result["sweep"]["replanned"]["groups"] == 1


def test_a_chunk_sees_a_writer_of_another_chunk_before_converging(bed, monkeypatch):
    """A full re-plan in chunks (one torrent each): "Film" stays on the primary pool with a library
    copy of its file (another inode), so it would converge onto it; torrent H4, in another chunk,
    is still downloading into that library folder (it may rewrite the copy). The chunk's snapshot
    gets the whole listing, so "Film" waits as it does in one snapshot (converge.write_prefixes)."""
    data = b"film data" * 50
    bed.payload(H1, bed.seed_s, "Film", {"film.mkv": data}, category="tv")
    write(bed.lib / "Film (2020)/film.mkv", data)
    bed.qbt.add(H4, bed.lib, "Film (2020)", [("film.mkv", len(data))], state="downloading", progress=0.5)
    old = 1_600_000_000 * 10**9  # settled files: an hour-old default settle time is long past
    for p in (bed.seed_s / "Film/film.mkv", bed.lib / "Film (2020)/film.mkv"):
        os.utime(p, ns=(old, old))
    cfg = dataclasses.replace(bed.cfg, sweep=SweepConfig(full_every=0))
    whole = bed.sweep(cfg)
    assert bed.snapshots == [None]
    monkeypatch.setattr(worker, "_CHUNK_TORRENTS", 1)
    monkeypatch.setattr(TorrentIndex, "groups", lambda self: {})  # every torrent its own group
    chunked = bed.sweep(cfg)
    assert [H1] in bed.snapshots[1:] and [H4] in bed.snapshots[1:]  # not one snapshot
    row = bed.decision(H1)
    assert row.decision == "stay" and "wait to converge" in row.decision_reason, row.decision_reason
    assert chunked["plan"] == whole["plan"] and chunked["plan"]["converge"] == 0

    bed.qbt.torrents_raw[H4].update(state="stalledUP", progress=1.0, amount_left=0)  # settled: it converges
    bed.sweep(cfg)
    assert bed.decision(H1).decision == "converge", bed.decision(H1).decision_reason


@pytest.mark.parametrize("pad_files", [False, True])
def test_a_chunk_sees_a_settled_torrent_of_another_chunk_that_skips_a_file(bed, monkeypatch, pad_files):
    """As above, but H4 is settled: with the library's file at priority 0 (its file list in the index
    says so), raising that priority makes it write into that file, so "Film" waits in its chunk
    until H4 wants every file. Its file's place, exactly, as in one snapshot: not its whole folder
    (R72). With pad files instead (hybrid torrents: the listing's size below its total size, every
    file wanted) nothing is skipped and "Film" converges."""
    data = b"film data" * 50
    bed.payload(H1, bed.seed_s, "Film", {"film.mkv": data}, category="tv")
    write(bed.lib / "Film (2020)/film.mkv", data)
    files = [("film.mkv", len(data)), ("extra.mkv", 100)]
    bed.qbt.add(H4, bed.lib, "Film (2020)", files, size=100, total_size=len(data) + 100)
    if not pad_files:
        bed.qbt.skipped[H4] = {0}
    old = 1_600_000_000 * 10**9
    for p in (bed.seed_s / "Film/film.mkv", bed.lib / "Film (2020)/film.mkv"):
        os.utime(p, ns=(old, old))
    cfg = dataclasses.replace(bed.cfg, sweep=SweepConfig(full_every=0))
    monkeypatch.setattr(worker, "_CHUNK_TORRENTS", 1)
    monkeypatch.setattr(TorrentIndex, "groups", lambda self: {})  # every torrent its own group
    asked = []
    real = worker.skipped_files_known
    monkeypatch.setattr(worker, "skipped_files_known", lambda conn: asked.append(1) or real(conn))
    monkeypatch.setattr(snapshot, "skipped_files_known", None)  # a chunk's build never reads it itself
    bed.sweep(cfg)
    assert [H1] in bed.snapshots and [H4] in bed.snapshots  # not one snapshot
    assert asked == [1]  # the index's lists are read once a sweep, not once a chunk
    row = bed.decision(H1)
    if pad_files:
        assert row.decision == "converge", row.decision_reason
        return
    assert row.decision == "stay" and "wait to converge" in row.decision_reason, row.decision_reason

    bed.qbt.skipped[H4] = set()  # every file wanted: its size changes, so the index fetches its files again
    bed.qbt.torrents_raw[H4].update(size=len(data) + 100)
    bed.sweep(cfg)
    assert bed.decision(H1).decision == "converge", bed.decision(H1).decision_reason


def test_a_sweep_reads_the_unplaced_files_once_not_once_a_chunk(bed, monkeypatch):
    """Each chunk looks for the torrents it leaves out that reach it through a symlink
    (``SnapshotBuilder._reaching``): one query on the index and one lstat per file a sweep, shared
    by its chunks (``SweepReach``), not one a chunk (180,000 file rows at field scale)."""
    three_staying(bed)
    monkeypatch.setattr(worker, "_CHUNK_TORRENTS", 1)
    monkeypatch.setattr(TorrentIndex, "groups", lambda self: {})  # every torrent its own group
    asked = []
    real = snapshot.unplaced_files
    monkeypatch.setattr(snapshot, "unplaced_files", lambda conn, sizes=None: asked.append(sizes) or real(conn, sizes))
    bed.sweep(dataclasses.replace(bed.cfg, sweep=SweepConfig(full_every=0)))
    assert [H1] in bed.snapshots and [H3] in bed.snapshots  # chunks
    assert asked == [None]


def test_a_finished_event_waits_out_the_import_grace_before_demoting(bed, monkeypatch):
    """qBittorrent's "finished" hook fires seconds after completion; Sonarr imports (hardlinks)
    at its next poll, about a minute later. With auto_apply and tag_no_external_links (no tag
    to wait for) and min_seeding_age 0, the job demoted at once: a copy of a payload the *arr
    was about to link. Within ``policy.import_grace`` of completion the event's plan stays,
    saying why; past it, the same job demotes."""
    cfg = dataclasses.replace(
        bed.cfg, policy=dataclasses.replace(bed.cfg.policy, tag_no_external_links=True, auto_apply=True)
    )
    assert cfg.policy.import_grace == 900 and cfg.policy.min_seeding_age == 0
    monkeypatch.setattr(worker, "maintain_tags", lambda *a: 0)  # the fake client keeps no tags
    bed.payload(H1, bed.seed_s, "Fresh", {"fresh.mkv": b"fresh data" * 50}, category="movies", tags="")
    applied = []

    class Executor:
        def apply(self, plan, trigger):
            applied.append([g.action for g in plan.groups if g.actionable])

            class Summary:
                def to_dict(self):
                    return {}

            return Summary()

    def finished_job():
        queue = JobQueue(bed.cat.conn)
        queue.enqueue(Event("qbittorrent", "torrent_finished", hashes=(H1,)), now=0.0)
        return queue.claim("w", now=0.0)

    bed.qbt.torrents_raw[H1]["completion_on"] = int(time.time()) - 20
    result = worker.handle_job(cfg, bed.cat, [bed.qbt], finished_job(), executor=Executor())
    (group,) = result["groups"]
    assert group["action"] == "stay" and applied == [], result
    assert group["reason"].startswith("policy: completed less than 900s ago, waiting for the *arr import")
    JobQueue(bed.cat.conn).complete(1, "{}")
    bed.qbt.torrents_raw[H1]["completion_on"] = int(time.time()) - 901
    result = worker.handle_job(cfg, bed.cat, [bed.qbt], finished_job(), executor=Executor())
    assert [g["action"] for g in result["groups"]] == ["demote"] and applied == [["demote"]], result


def _fresh_film(bed, monkeypatch, completed_ago: float):
    """A movies torrent on the primary pool, completed ``completed_ago`` s ago; auto_apply and
    tag_no_external_links. Returns the config, an executor, what it applied, and the groups the
    snapshot asked demotion hashes for (``SnapshotBuilder._demotion_hashes``: reuse candidates,
    unsettled files; a payload's size in reads)."""
    cfg = dataclasses.replace(
        bed.cfg, policy=dataclasses.replace(bed.cfg.policy, tag_no_external_links=True, auto_apply=True)
    )
    assert cfg.policy.import_grace == 900 and cfg.policy.min_seeding_age == 0
    monkeypatch.setattr(worker, "maintain_tags", lambda *a: 0)  # the fake client keeps no tags
    bed.payload(H1, bed.seed_s, "Fresh", {"fresh.mkv": b"fresh data" * 50}, category="movies", tags="")
    bed.qbt.torrents_raw[H1]["completion_on"] = int(time.time() - completed_ago)
    applied: list = []
    hashing: list = []
    real = snapshot.SnapshotBuilder._demotion_hashes

    def demotion_hashes(self, facts, *a):
        hashing.append(len(facts))
        return real(self, facts, *a)

    monkeypatch.setattr(snapshot.SnapshotBuilder, "_demotion_hashes", demotion_hashes)

    class Executor:
        def apply(self, plan, trigger, group_ids=None, dry_run=False):
            applied.append([g.action for g in plan.groups if g.actionable])
            return _Applied()

    return cfg, Executor(), applied, hashing


def test_serves_sweeps_wait_out_the_import_grace_and_hash_nothing_meanwhile(bed, monkeypatch):
    """`serve`'s sweeper, and a job that sweeps (``_swept``: a truncated burst, ``sweep:<source>``),
    a finished event's job aside,
    planned without ``policy.import_grace``: with auto_apply a torrent completed seconds before
    demoted at once, copying a payload the *arr was about to link; and the snapshot hashed it
    (a 50 GB read, the queue waiting) for a plan that should not demote it. Within the grace both
    hold back; after it the sweep demotes."""
    cfg, executor, applied, hashing = _fresh_film(bed, monkeypatch, completed_ago=30)
    queue = JobQueue(bed.cat.conn)
    queue.enqueue(Event("qbittorrent", "torrent_finished", hashes=(H1,)), now=0.0)
    result = worker.handle_job(cfg, bed.cat, [bed.qbt], queue.claim("w", now=0.0), executor=executor)
    assert result["groups"][0]["action"] == "stay" and applied == [] and hashing == [], result
    queue.complete(1, "{}")
    queue.enqueue(Event("radarr", "media_deleted"), now=0.0)
    result = worker.handle_job(cfg, bed.cat, [bed.qbt], queue.claim("w", now=0.0), executor=executor)
    assert "look around" in result["note"] and applied == [] and hashing == [], result
    assert bed.decision(H1).decision == "stay"
    assert bed.decision(H1).decision_reason.startswith("policy: completed less than 900s ago, waiting for the *arr")
    worker.sweep(cfg, bed.cat, [bed.qbt], executor=executor, automatic=True)  # the sweeper's: re-planned, stays
    assert applied == [] and hashing == [] and bed.decision(H1).decision == "stay"
    bed.qbt.torrents_raw[H1]["completion_on"] = int(time.time() - 901)
    out = worker.sweep(cfg, bed.cat, [bed.qbt], executor=executor, automatic=True)
    assert applied == [["demote"]] and out["plan"]["demote"] == 1 and hashing == [1], out


def test_a_persons_sweep_is_not_held_back_by_the_import_grace(bed, monkeypatch):
    """`qbhook sweep` (and `plan`/`apply`): a person asked, nothing waits for an *arr's poll."""
    cfg, executor, applied, hashing = _fresh_film(bed, monkeypatch, completed_ago=30)
    out = worker.sweep(cfg, bed.cat, [bed.qbt], executor=executor)
    assert applied == [["demote"]] and out["plan"]["demote"] == 1 and hashing == [1], out


def test_the_sweeper_thread_sweeps_as_automatic(bed, monkeypatch):
    from qbhook.events import service

    cfg = dataclasses.replace(bed.cfg, server=dataclasses.replace(bed.cfg.server, sweep_interval=0.01))
    svc = service.Service(cfg, [bed.qbt], lambda *a: None, host="127.0.0.1", port=0, sweeper=True)
    asked = []

    def sweep(*a, **kw):
        asked.append(kw.get("automatic"))
        svc.stop.set()

    monkeypatch.setattr(service, "sweep", sweep)
    try:
        svc.sweeper_main()
    finally:
        svc.server.close()
    assert asked == [True]


def test_the_cli_says_a_sync_problem_of_a_plan_on_stderr_with_its_hint(capsys):
    from qbhook.cli.app import catalog_note
    from qbhook.decide.planning import CatalogUse

    use = CatalogUse(
        "as-is", "catalog as is (--no-scan)", 5.0, (QbhookError("cannot sync default: refused", hint="up?"),)
    )
    for as_json in (False, True):
        note = catalog_note(types.SimpleNamespace(as_json=as_json), use)
        assert note["catalog"]["problems"] == ["cannot sync default: refused"]
        err = capsys.readouterr().err
        assert "qbhook: cannot sync default: refused\n" in err and "up?" in err
