"""Several seeding roots per pool, for real (zfs-fuse pools, qbittorrent-nox, the CLI): a link
in a second root (cross-seed's link folder beside the data folder) is seeding data, not a
library, so the group demotes; each torrent lands under the matching root of the cold pool."""

from __future__ import annotations

import os

import pytest
import yaml

from qbhook.sandbox.scenario import NOHL
from qbhook.sandbox.torrents import add_and_wait_seeding, make_torrent, write_payload
from tests.integration.crash_helpers import (
    MiB,
    qbhook_json,
    wait_seeding_at,
    walk_files,
)
from tests.integration.test_apply_real import make_bed

pytestmark = pytest.mark.integration

LINKS = "data/media/torrents/cross-seed-links"


def test_second_root_links_are_seeding_data_and_map_root_to_root(pools, qbt, qbt_client, tmp_path):
    bed = make_bed(pools, qbt, qbt_client, tmp_path)
    sc, client = bed.sc, bed.client
    d = yaml.safe_load(bed.cfg.read_text())
    d["seeding_roots"] = {
        "stash": [str(sc.stash_seed), str(sc.stash / LINKS)],
        "pool": [str(sc.pool_seed), str(sc.pool / LINKS)],
    }
    bed.cfg.write_text(yaml.safe_dump(d))
    (sc.pool / LINKS).mkdir(parents=True)
    save = sc.stash_seed / "tv"
    files = {"Show.S02.1080p/Show.S02E01.mkv": 2 * MiB, "Show.S02.1080p/Show.S02E02.mkv": 1 * MiB}
    write_payload(save, files, seed=41)
    h1 = add_and_wait_seeding(
        client, make_torrent(save / "Show.S02.1080p", tmp_path / "t1.torrent", piece_size=256 * 1024), save, tags=[NOHL]
    )
    xs = sc.stash / LINKS / "TrackerA"
    for rel in files:
        dst = xs / "Show S02 (1080p)" / os.path.basename(rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(save / rel, dst)
    h2 = add_and_wait_seeding(
        client,
        make_torrent(xs / "Show S02 (1080p)", tmp_path / "t2.torrent", piece_size=256 * 1024),
        xs,
        tags=[NOHL],
        category="cross-seed",
    )

    _rc, plan = qbhook_json(bed.cfg, "plan", ok=(0, 10))
    (g,) = [g for g in plan["groups"] if h1 in g["torrents"]]
    assert g["action"] == "demote" and h2 in g["torrents"], g  # the link folder is no library

    _rc, out = qbhook_json(bed.cfg, "apply", "--yes")

    assert out["groups_failed"] == {} and out["torrents_relocated"] == 2, out
    wait_seeding_at(client, [h1, h2], {h1: sc.pool_seed / "tv", h2: sc.pool / LINKS / "TrackerA"}.__getitem__)
    # one copy on the pool, linked from both roots (same dataset); nothing left on the stash
    inodes = {(st.st_dev, st.st_ino) for r in (sc.pool_seed, sc.pool / LINKS) for _p, st in walk_files(r)}
    assert len(inodes) == 2
    assert list(walk_files(sc.stash_seed)) == [] and list(walk_files(sc.stash / LINKS)) == []
