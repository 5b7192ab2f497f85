"""A sweep forgets torrents gone from their client (TorrentIndex.prune_gone via worker.housekeep).

A row marked gone is kept for ``sweep.keep_history`` (``qbhook torrents --gone``) and, whatever
the retention, until a completed plan has followed the sync that marked it: the incremental
re-plan finds the group it left through that row. Real files, a real catalog and real scans;
qBittorrent is test_sweep_incremental's fake.
"""

from __future__ import annotations

import dataclasses
import time

import qbhook.catalog.indexer as indexer
import qbhook.events.worker as worker
from qbhook.catalog.torrents import MISSING_GRACE_S, TorrentIndex
from qbhook.config import SweepConfig
from tests.unit.events import test_sweep_incremental as inc
from tests.unit.events.test_sweep_incremental import H1, H2

bed = inc.bed  # the same real-files bed and fake qBittorrent

DAY = 86400.0


def _rows(bed) -> dict[str, float | None]:
    """hash -> gone_at of every torrent row."""
    return dict(bed.cat.conn.execute("SELECT hash, gone_at FROM torrents"))


def _file_rows(bed, h: str) -> int:
    return bed.cat.conn.execute(
        "SELECT count(*) FROM torrent_files f JOIN torrents t ON t.id = f.torrent WHERE t.hash = ?", (h,)
    ).fetchone()[0]


def _orphan_file_rows(bed) -> int:
    return bed.cat.conn.execute(
        "SELECT count(*) FROM torrent_files f WHERE NOT EXISTS (SELECT 1 FROM torrents t WHERE t.id = f.torrent)"
    ).fetchone()[0]


def _housekeeping_after_the_grace(monkeypatch) -> None:
    """The sweeps' housekeeping runs as if ``MISSING_GRACE_S`` had passed: a gone row is kept that
    long whatever the retention (the planner still counts it as there), which these tests are not about."""
    real = TorrentIndex.prune_gone

    def later(self, older_than_s, planned, *, now=None):
        return real(self, older_than_s, planned, now=time.time() + MISSING_GRACE_S + 60 if now is None else now)

    monkeypatch.setattr(TorrentIndex, "prune_gone", later)


def _cross_seeds(bed) -> str:
    """H1 and H2 share their files (one group); returns that group's id after a sweep."""
    bed.payload(H1, bed.seed_s, "Shared", {"s.mkv": b"shared" * 50}, category="tv")
    bed.qbt.add(H2, bed.seed_s, "Shared", [("s.mkv", 300)], category="tv")
    bed.sweep()
    assert bed.decision(H1).group_id == bed.decision(H2).group_id
    return bed.decision(H1).group_id


def test_a_gone_torrent_is_kept_for_keep_history_then_deleted_with_its_file_rows(bed):
    _cross_seeds(bed)
    del bed.qbt.torrents_raw[H2]
    out = bed.sweep()
    assert _rows(bed)[H2] is not None and _file_rows(bed, H2) == 1  # gone just now: kept 7 days
    assert out["pruned"]["torrents"] == 0
    bed.cat.conn.execute("UPDATE torrents SET gone_at = gone_at - 8 * 86400 WHERE hash = ?", (H2,))
    bed.cat.conn.commit()
    # the sync position moves back with it: the memo's sync is still the one that saw it go
    bed.cat.conn.execute("UPDATE torrent_sync SET synced_at = synced_at - 8 * 86400")
    bed.cat.conn.commit()
    out = bed.sweep()
    assert out["pruned"]["torrents"] == 1
    assert H2 not in _rows(bed) and _orphan_file_rows(bed) == 0
    assert _rows(bed)[H1] is None and _file_rows(bed, H1) == 1  # the present one is untouched


def test_with_retention_0_a_gone_row_outlives_a_sync_no_plan_followed(bed, monkeypatch):
    """Another command syncs (and sees H2 go) while a sweep plans: that sweep's housekeeping must
    keep H2's row, and the next sweep must re-plan what H2 left, then forget it."""
    _housekeeping_after_the_grace(monkeypatch)
    shared = _cross_seeds(bed)
    cfg = dataclasses.replace(bed.cfg, sweep=SweepConfig(keep_history=0))
    bed.sweep(cfg)
    real = worker._replan

    def another_command_syncs_meanwhile(*a, **k):
        del bed.qbt.torrents_raw[H2]
        indexer.sync_all(bed.cat, [bed.qbt])
        return real(*a, **k)

    monkeypatch.setattr(worker, "_replan", another_command_syncs_meanwhile)
    bed.sweep(cfg)
    monkeypatch.setattr(worker, "_replan", real)
    assert _rows(bed)[H2] is not None  # retention 0, but no plan followed the sync that saw it go
    out = bed.sweep(cfg)
    assert out["full"] and "index synced since the last plan" in out["replanned"]["why"]
    assert bed.decision(H1).group_id not in (None, shared)  # the group H2 left was re-planned
    assert H2 not in _rows(bed) and out["pruned"]["torrents"] == 1  # and then it is forgotten


def test_with_retention_0_the_sweep_that_re_plans_the_group_mates_prunes_after_its_plan(bed, monkeypatch):
    _housekeeping_after_the_grace(monkeypatch)
    shared = _cross_seeds(bed)
    cfg = dataclasses.replace(bed.cfg, sweep=SweepConfig(keep_history=0))
    bed.sweep(cfg)
    del bed.qbt.torrents_raw[H2]
    out = bed.sweep(cfg)
    assert not out["full"] and out["replanned"]["why"] == {"group-mate changed": 1}
    assert bed.decision(H1).group_id not in (None, shared)
    assert H2 not in _rows(bed) and out["pruned"]["torrents"] == 1


def test_a_torrent_that_comes_back_after_being_pruned_is_new_again(bed, monkeypatch):
    _housekeeping_after_the_grace(monkeypatch)
    _cross_seeds(bed)
    cfg = dataclasses.replace(bed.cfg, sweep=SweepConfig(keep_history=0))
    raw, files = bed.qbt.torrents_raw.pop(H2), bed.qbt.file_lists[H2]
    bed.sweep(cfg)
    assert H2 not in _rows(bed)
    bed.qbt.torrents_raw[H2], bed.qbt.file_lists[H2] = raw, files
    out = bed.sweep(cfg)
    assert out["index"][0]["added"] == 1
    back = next(t for t in TorrentIndex(bed.cat.conn).torrents() if t.hash == H2)
    assert back.gone_at is None and back.files == 1 and back.files_resolved == 1
    assert back.group_id == bed.decision(H1).group_id  # planned with its cross-seed again
    assert _orphan_file_rows(bed) == 0


def test_prune_gone_keeps_rows_of_an_instance_no_plan_followed_and_rows_younger_than_the_retention(bed):
    _cross_seeds(bed)
    del bed.qbt.torrents_raw[H2]
    indexer.sync_all(bed.cat, [bed.qbt])
    idx = TorrentIndex(bed.cat.conn)
    (gone_at,) = bed.cat.conn.execute("SELECT gone_at FROM torrents WHERE hash = ?", (H2,)).fetchone()
    assert idx.prune_gone(0, {}, now=gone_at + DAY) == 0  # no plan followed any sync
    assert idx.prune_gone(0, {"default": gone_at - 1}, now=gone_at + DAY) == 0  # a plan before it went
    assert idx.prune_gone(2 * DAY, {"default": gone_at}, now=gone_at + DAY) == 0  # gone 1 day, kept 2
    assert idx.prune_gone(0, {"other": gone_at}, now=gone_at + DAY) == 0  # another instance's plan
    assert _rows(bed)[H2] is not None
    assert idx.prune_gone(DAY / 2, {"default": gone_at}, now=gone_at + DAY) == 1
    assert H2 not in _rows(bed) and _orphan_file_rows(bed) == 0


def test_prune_gone_keeps_a_row_for_the_missing_grace_whatever_the_retention(bed):
    """R38: the planner counts a torrent missing for under MISSING_GRACE_S as there, from its gone
    row; pruned sooner (keep_history below 30 min), its cross-seed mate would demote and delete."""
    _cross_seeds(bed)
    del bed.qbt.torrents_raw[H2]
    indexer.sync_all(bed.cat, [bed.qbt])
    idx = TorrentIndex(bed.cat.conn)
    (gone_at,) = bed.cat.conn.execute("SELECT gone_at FROM torrents WHERE hash = ?", (H2,)).fetchone()
    assert idx.prune_gone(0, {"default": gone_at}, now=gone_at + MISSING_GRACE_S - 1) == 0
    assert idx.prune_gone(60, {"default": gone_at}, now=gone_at + MISSING_GRACE_S - 1) == 0
    assert _rows(bed)[H2] is not None
    assert idx.prune_gone(0, {"default": gone_at}, now=gone_at + MISSING_GRACE_S + 1) == 1


def test_keep_history_0_does_not_cut_the_missing_grace_short_across_sweeps(bed):
    """R38: a restart's listing leaves H2 out; with keep_history 0 the first sweep's housekeeping
    pruned H2's row, so the second sweep no longer saw it missing and planned H1 alone."""
    cfg = dataclasses.replace(bed.cfg, sweep=SweepConfig(keep_history=0))
    inc._restarted_listing_only_h1(bed)
    assert bed.sweep(cfg)["pruned"]["torrents"] == 0
    assert _rows(bed)[H2] is not None
    bed.sweep(cfg)
    d = bed.decision(H1)
    assert d.decision == "stay" and f"torrent {H2} (Shared) missing from" in d.decision_reason
