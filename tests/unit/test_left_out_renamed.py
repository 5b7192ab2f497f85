"""A torrent left out of a partial snapshot whose file was renamed in its client (``renameFile``):
the torrent index keeps the old name (its files_key does not move), so the index's file list let
a partial snapshot demote another torrent onto the renamed file's new place, where the left-out
torrent writes: that torrent's only copy overwritten (R75). A partial snapshot must block what
one full snapshot blocks. A torrent with a root folder of its own keeps it as its place: a rename
below it stays inside; one out of it leaves the files no common root, and qBittorrent's content
path becomes the save path, the layout tested here."""

from __future__ import annotations

from dataclasses import replace

from qbhook.catalog.indexer import sync_client
from qbhook.decide.planner import make_plan
from qbhook.decide.snapshot import build_snapshot
from tests.helpers import write
from tests.unit.test_executor import FakeQbt, FakeTorrent
from tests.unit.test_snapshot_paths import bed  # noqa: F401  (fixture)

B, D = "b" * 40, "d" * 40


class _NoSubfolderQbt(FakeQbt):
    """D saved with "Don't create subfolder": its content path is its save path."""

    def _info(self, t):
        info = super()._info(t)
        return replace(info, content_path=info.save_path) if t.hash == D else info


def _b_group(bed, hashes):  # noqa: F811
    snap = build_snapshot(bed.cfg, bed.cat, [bed.qbt], hashes=hashes)
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
