"""Partial torrents for real: a torrent with a skipped file (priority 0) demotes with only its
wanted files. The CLI in a subprocess, real zfs-fuse pools, the real qbittorrent-nox."""

from __future__ import annotations

import json
import os
import time

import pytest

import tests.integration.test_apply_real as ar
from qbhook.sandbox.scenario import NOHL
from qbhook.sandbox.torrents import infohash, make_torrent, wait_seeding, write_payload
from tests.integration.crash_helpers import MiB, b3, journal_rows, leftovers, qbhook_json, wait_seeding_at

pytestmark = pytest.mark.integration


@pytest.fixture
def world(pools, qbt, qbt_client, tmp_path):
    return ar.make_bed(pools, qbt, qbt_client, tmp_path)


def test_partial_torrent_demotes_with_its_wanted_files_only(world):
    bed = world
    sc, client = bed.sc, bed.client
    save = sc.stash_seed / "tv"
    # piece-aligned sizes (256 KiB pieces): no piece straddles the skipped file, so no part file is needed
    files = {"Part.S01/e1.mkv": 1 * MiB, "Part.S01/e2.mkv": 2 * MiB, "Part.S01/e3.mkv": 1 * MiB}
    write_payload(save, files, seed=61)
    data = make_torrent(save / "Part.S01", sc.torrent_dir / "partial.torrent", piece_size=256 * 1024)
    h = infohash(data)
    # the user skips e3 (priority 0) and its bytes are gone: added stopped, skipped, then checked
    os.unlink(save / "Part.S01/e3.mkv")
    client.torrents_add(
        torrent_files=data, save_path=str(save), is_paused=True, use_auto_torrent_management=False, tags=[NOHL]
    )
    deadline = time.monotonic() + 30
    while not client.torrents_info(torrent_hashes=h) or not client.torrents_files(
        torrent_hash=h
    ):  # listed, then metadata
        assert time.monotonic() < deadline
        time.sleep(0.1)
    client.torrents_file_priority(torrent_hash=h, file_ids=[2], priority=0)
    while client.torrents_info(torrent_hashes=h)[0]["size"] != 3 * MiB:  # libtorrent applied the skip
        assert time.monotonic() < deadline, client.torrents_info(torrent_hashes=h)[0]
        time.sleep(0.1)
    client.torrents_recheck(torrent_hashes=h)
    while client.torrents_info(torrent_hashes=h)[0]["progress"] != 1:
        assert time.monotonic() < deadline, client.torrents_info(torrent_hashes=h)[0]
        time.sleep(0.1)
    client.torrents_resume(torrent_hashes=h)
    wait_seeding(client, h, timeout=30)
    wanted = {rel: b3(save / rel) for rel in ("Part.S01/e1.mkv", "Part.S01/e2.mkv")}

    _rc, plan = qbhook_json(bed.cfg, "plan", ok=(10,))
    g = ar._group_of(plan, h)
    assert g["action"] == "demote", g
    assert "moves only the wanted files (1 skipped" in g["reason"]
    assert g["bytes_to_copy"] == 3 * MiB and g["bytes_freed"] == 3 * MiB

    _rc, out = qbhook_json(bed.cfg, "apply", "--yes")
    assert out["groups_failed"] == {} and len(out["groups_done"]) == 1, out
    assert out["bytes_copied"] == 3 * MiB and out["torrents_relocated"] == 1

    new_save = sc.pool_seed / "tv"
    wait_seeding_at(client, [h], lambda _h: new_save)
    info = client.torrents_info(torrent_hashes=h)[0]
    assert info["progress"] == 1 and info["amount_left"] == 0
    for rel, digest in wanted.items():
        assert b3(new_save / rel) == digest
        assert not (save / rel).exists()  # the stash copy is gone ...
    # ... and was removed only after qBittorrent had the torrent at 100 % at its new place
    rows = journal_rows(bed.catalog, "SELECT seq, kind, status, started_at FROM steps ORDER BY seq")
    seq_of = {k: s for s, k, _st, _t in reversed(rows)}  # first seq of each kind
    assert all(st == "done" for _s, _k, st, _t in rows), rows
    assert seq_of["verify_group"] < seq_of["delete"], rows
    deleted = [
        json.loads(a)["path"] for (a,) in journal_rows(bed.catalog, "SELECT args FROM steps WHERE kind='delete'")
    ]
    assert sorted(deleted) == sorted(str(save / rel) for rel in wanted)
    # the skipped file was neither made at the destination nor required there
    assert not (new_save / "Part.S01/e3.mkv").exists()
    view = json.loads(journal_rows(bed.catalog, "SELECT args FROM steps WHERE kind='verify_view'")[0][0])
    assert sorted(f["path"] for f in view["files"]) == sorted(str(new_save / rel) for rel in wanted)
    assert leftovers(*bed.roots.values()) == []
