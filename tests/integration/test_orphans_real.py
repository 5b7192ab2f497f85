"""`qbhook orphans` / `orphans --quarantine --yes` / `holding` for real: zfs-fuse pools, a real
qbittorrent-nox, the CLI in a subprocess. Proves the split (reclaimable / still used by a
library), that quarantine only ever moves reclaimable files into holding on their own dataset
(torrents keep seeding, library files untouched), that purge goes through the journal, and
that every guard refuses with nothing moved."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from qbhook.sandbox.scenario import MOVIES
from qbhook.sandbox.torrents import add_and_wait_seeding, infohash, make_torrent, write_payload
from tests.integration.crash_helpers import (
    b3,
    qbhook,
    qbhook_json,
    tree_state,
    walk_files,
)
from tests.integration.test_apply_real import make_bed

pytestmark = pytest.mark.integration

KiB = 1024


def _config(bed, **over) -> dict:
    d = yaml.safe_load(bed.cfg.read_text())
    for k, v in over.items():
        if isinstance(v, dict):
            d.setdefault(k, {}).update(v)
        else:
            d[k] = v
    return d


def _write_cfg(bed, d: dict) -> Path:
    bed.cfg.write_text(yaml.safe_dump(d))
    return bed.cfg


@pytest.fixture
def world(pools, qbt, qbt_client, tmp_path):
    bed = make_bed(pools, qbt, qbt_client, tmp_path)
    sc = bed.sc
    sc.movie_in_library(bed.client)
    sc.seed_only_with_cross_seeds(bed.client)
    sc.already_on_pool(bed.client)  # seeded data on the cold pool too (the share guard is per pool)
    links = sc.pool / "data/media/torrents/cross-seed-links"  # the cold pool's second seeding root
    links.mkdir(parents=True)
    _write_cfg(bed, _config(bed, seeding_roots={"stash": str(sc.stash_seed), "pool": [str(sc.pool_seed), str(links)]}))
    # planted: a leftover folder in a category folder other torrents are saved in
    # (reclaimable), a stray file inside a torrent's folder (reclaimable), a library-linked
    # orphan, a part file, an orphan in the second root below which no torrent is saved (not
    # a seeding folder: reported, never quarantined), and a symlink to the library (never followed)
    write_payload(
        sc.stash_seed / "movies" / "old",
        {"Leftover.Movie/leftover.mkv": 300 * KiB, "Leftover.Movie/leftover.nfo": 1 * KiB},
        seed=21,
    )
    stray = sc.stash_seed / "movies/Movie.A.2020.1080p/sample.txt"
    stray.write_bytes(b"s" * 5000)
    write_payload(sc.stash_seed / "tv" / "kept", {"Lib.G/lib.g.mkv": 200 * KiB}, seed=22)
    lib = sc.stash / MOVIES / "Lib G" / "Lib G.mkv"
    lib.parent.mkdir(parents=True)
    os.link(sc.stash_seed / "tv/kept/Lib.G/lib.g.mkv", lib)
    part = sc.stash_seed / "tv/Show.S01E03.mkv.!qB"
    part.write_bytes(b"p" * 4000)
    write_payload(links, {"TrackerZ/Gone.Show/gone.mkv": 100 * KiB}, seed=23)
    os.symlink(sc.stash / MOVIES, sc.stash_seed / "movies-link")
    return bed, {"stray": stray, "lib": lib, "part": part, "links": links}


def test_orphans_lists_reclaimable_and_library_apart_with_totals(world):
    bed, w = world
    sc = bed.sc
    _rc, out = qbhook_json(bed.cfg, "orphans")
    items = {os.path.relpath(i["path"], sc.stash if i["pool"] == "stash" else sc.pool): i for i in out["items"]}
    seed = "data/media/torrents/seeding"
    assert set(items) == {
        f"{seed}/movies/old",
        f"{seed}/movies/Movie.A.2020.1080p/sample.txt",
        f"{seed}/tv/kept",
        "data/media/torrents/cross-seed-links/TrackerZ",
    }, items
    old = items[f"{seed}/movies/old"]
    assert (old["kind"], old["folder"], old["files"], old["bytes"], old["frees"]) == (
        "reclaimable",
        True,
        2,
        301 * KiB,
        301 * KiB,
    )
    assert items[f"{seed}/tv/kept"]["kind"] == "library" and items[f"{seed}/tv/kept"]["frees"] == 0
    # no torrent is saved at or below the second root's TrackerZ: not a seeding folder, told apart
    assert items["data/media/torrents/cross-seed-links/TrackerZ"]["kind"] == "not_seeding"
    assert out["not_seeding"]["items"] == 1 and out["not_seeding"]["bytes"] == 100 * KiB
    assert out["reclaimable"] == {
        "items": 2,
        "bytes": 301 * KiB + 5000,
        "frees": 301 * KiB + 5000,
    }
    assert out["library"] == {"items": 1, "bytes": 200 * KiB}
    assert out["counts"]["protected"] == 1  # the part file
    assert str(sc.stash_seed / "movies-link") in out["skipped"]  # the symlink, not followed
    # a listing moves nothing
    assert w["stray"].exists() and w["part"].exists()
    # and `status` shows this run's totals (unknown before the first run)
    _rc, st = qbhook_json(bed.cfg, "status", ok=(0, 1))
    assert st["orphans"]["reclaimable"] == out["reclaimable"]["frees"] and st["orphans"]["library"] == 200 * KiB
    assert st["orphans"]["age_seconds"] < 120 and st["orphans"]["quarantine"] is False


def test_quarantine_moves_only_reclaimable_into_holding_and_purge_frees_it(world):
    bed, w = world
    sc, client = bed.sc, bed.client
    lib_before = os.stat(w["lib"])
    lib_hash = b3(w["lib"])
    torrent_files = {
        p: b3(p)
        for h in sc.hashes["siblings"] + sc.hashes["movie_in_library"]
        for p, _st in walk_files(Path(bed.save_path(h)))
        if not p.endswith("sample.txt") and ".!qB" not in p and "/old/" not in p and "/kept/" not in p  # planted
    }

    # without --yes: a dry run
    _rc, dry = qbhook_json(bed.cfg, "orphans", "--quarantine")
    assert dry["dry_run"] and w["stray"].exists()

    _rc, out = qbhook_json(bed.cfg, "orphans", "--quarantine", "--yes")

    assert out["failed"] == {} and len(out["held"]) == 3, out
    assert out["bytes_held"] == 301 * KiB + 5000
    # gone from where they were, waiting in the holding folder of their own root
    assert not w["stray"].exists() and not (sc.stash_seed / "movies/old").exists()
    run = out["run_id"]
    held = sc.stash_seed / ".qbhook-holding" / str(run)
    assert (held / "movies/old/Leftover.Movie/leftover.mkv").stat().st_size == 300 * KiB
    # not a seeding folder: left where it is
    assert (w["links"] / "TrackerZ/Gone.Show/gone.mkv").exists()
    assert not (w["links"] / ".qbhook-holding").exists()
    # library orphan, part file, library file, torrents' files: untouched
    assert (sc.stash_seed / "tv/kept/Lib.G/lib.g.mkv").exists() and w["part"].exists()
    st = os.stat(w["lib"])
    assert (st.st_ino, st.st_mtime_ns) == (lib_before.st_ino, lib_before.st_mtime_ns) and b3(w["lib"]) == lib_hash
    assert {p: b3(p) for p in torrent_files} == torrent_files
    for t in client.torrents_info():
        assert t["progress"] == 1 and t["state"] not in ("missingFiles", "error"), t
    # listed in holding, then purged through the journal (grace_period 0: expired at once)
    _rc, h = qbhook_json(bed.cfg, "holding")
    assert len(h["held"]) == 3 and all(x["expired"] for x in h["held"])
    # a purge deletes: without --yes it is a dry run like every other act
    _rc, dry = qbhook_json(bed.cfg, "holding", "--purge-expired")
    assert dry["dry_run"] is True and len(dry["held"]) == 3 and held.exists()
    _rc, p = qbhook_json(bed.cfg, "holding", "--purge-expired", "--yes")
    assert p["dry_run"] is False
    assert p["held"] == [] and not held.exists()
    # nothing reclaimable is left; the library orphan still is listed
    _rc, again = qbhook_json(bed.cfg, "orphans")
    assert again["reclaimable"]["items"] == 0 and again["library"]["items"] == 1


def test_grace_period_keeps_held_files_until_it_is_over(world):
    bed, _w = world
    _write_cfg(bed, _config(bed, policy={"grace_period": "1h"}))
    _rc, out = qbhook_json(bed.cfg, "orphans", "--quarantine", "--yes")
    assert len(out["held"]) == 3
    _rc, p = qbhook_json(bed.cfg, "holding", "--purge-expired", "--yes")
    assert len(p["held"]) == 3 and not any(x["expired"] for x in p["held"])
    assert (bed.sc.stash_seed / ".qbhook-holding" / str(out["run_id"]) / "movies/old").exists()


@pytest.mark.parametrize("case", ["unreachable", "wrong_path_map", "share"])
def test_every_guard_refuses_with_nothing_moved(world, case):
    bed, _w = world
    sc = bed.sc
    d = _config(bed)
    if case == "unreachable":
        d["qbittorrent"]["url"] = "http://127.0.0.1:9"  # nothing listens on discard
        d["qbittorrent"]["timeout"] = 2
    elif case == "wrong_path_map":
        # the client's paths land in a folder that holds nothing: every file looks orphaned
        d["qbittorrent"]["path_map"] = [{"client": str(sc.stash), "host": str(sc.stash / "elsewhere")}]
    else:
        d["policy"]["orphans_max_share"] = 0.01
    _write_cfg(bed, d)
    before = tree_state({'stash': sc.stash, 'pool': sc.pool})
    for args in (("orphans",), ("orphans", "--quarantine", "--yes")):
        r = qbhook(bed.cfg, *args)
        assert r.returncode == 3, (case, r.returncode, r.stdout, r.stderr)
        # one line naming the cause (retry warnings of the client may come before it)
        assert any(x.startswith("qbhook: refusing") for x in r.stderr.splitlines()), r.stderr
        assert "Traceback" not in r.stderr
    assert tree_state({'stash': sc.stash, 'pool': sc.pool}) == before
    assert not (sc.stash_seed / ".qbhook-holding").exists()


def test_no_torrents_at_all_refuses(pools, qbt, qbt_client, tmp_path):
    bed = make_bed(pools, qbt, qbt_client, tmp_path)
    write_payload(bed.sc.stash_seed / "movies", {"A/a.mkv": 100 * KiB}, seed=31)
    before = tree_state({'stash': bed.sc.stash, 'pool': bed.sc.pool})
    r = qbhook(bed.cfg, "orphans", "--quarantine", "--yes")
    assert r.returncode == 3 and "no torrents" in r.stderr, r.stderr
    assert tree_state({'stash': bed.sc.stash, 'pool': bed.sc.pool}) == before


def test_quarantine_refuses_while_a_run_is_unfinished(world):
    bed, w = world
    sc = bed.sc
    from qbhook.catalog.store import Catalog
    from qbhook.decide.plan import Plan
    from qbhook.move.journal import Journal

    cat = Catalog.open(bed.catalog, marker_roots=[sc.stash, sc.pool])
    try:
        Journal(cat.conn).start_run(Plan(groups=[]).to_dict(), "cli")  # a crashed apply, say
    finally:
        cat.close()
    before = tree_state({'stash': sc.stash, 'pool': sc.pool})
    r = qbhook(bed.cfg, "orphans", "--quarantine", "--yes")
    assert r.returncode == 3 and "did not finish" in r.stderr, r.stderr
    assert tree_state({'stash': sc.stash, 'pool': sc.pool}) == before and w["stray"].exists()


def test_qbittorrent_temp_path_is_never_orphaned(world):
    bed, _w = world
    sc, client = bed.sc, bed.client
    temp = sc.stash_seed / "incomplete"
    write_payload(temp, {"Half.Done/part.mkv": 50 * KiB}, seed=51)
    before = client.app_preferences()
    client.app_set_preferences({"temp_path_enabled": True, "temp_path": str(temp)})
    try:
        _rc, out = qbhook_json(bed.cfg, "orphans")
    finally:
        client.app_set_preferences({"temp_path_enabled": before["temp_path_enabled"], "temp_path": before["temp_path"]})
    assert not any(i["path"].startswith(str(temp)) for i in out["items"]), out["items"]
    assert out["counts"]["protected"] == 2  # the part file and the temp download
    # without the setting the same file is an orphan (the test can fail)
    _rc, out = qbhook_json(bed.cfg, "orphans")
    assert any(i["path"].startswith(str(temp)) for i in out["items"])


# --------------------------------------------------------------------------- the purge asks the clients again


def _gone_then_quarantined(pools, qbt, qbt_client, tmp_path):
    """A torrent the user removed (its files kept), its data quarantined with a grace period:
    (bed, the .torrent's bytes, the orphan's path, where it is held)."""
    bed = make_bed(pools, qbt, qbt_client, tmp_path)
    sc, client = bed.sc, bed.client
    sc.movie_in_library(client)  # the client lists a torrent: "no torrents" does not refuse
    _write_cfg(bed, _config(bed, policy={"grace_period": "1h", "orphans_max_share": 1.0}))
    save = sc.stash_seed / "movies"
    write_payload(save, {"Gone.2019/gone.mkv": 300 * KiB}, seed=61)
    data = make_torrent(save / "Gone.2019", tmp_path / "gone.torrent", piece_size=256 * KiB)
    h = add_and_wait_seeding(client, data, save)
    client.torrents_delete(delete_files=False, torrent_hashes=h)  # "remove torrent", files kept
    _wait(lambda: not client.torrents_info(torrent_hashes=h))
    orphan = save / "Gone.2019/gone.mkv"
    _rc, out = qbhook_json(bed.cfg, "orphans", "--quarantine", "--yes")
    assert out["held"] == [str(orphan)] and not orphan.exists(), out
    (held,) = [Path(x["path"]) for x in qbhook_json(bed.cfg, "holding")[1]["held"]]
    assert held.exists() and b3(held)
    return bed, data, orphan, held


def _wait(cond, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def _expire(bed) -> None:
    _write_cfg(bed, _config(bed, policy={"grace_period": 0.5}))
    time.sleep(1)


def test_holding_purge_keeps_a_quarantined_orphan_whose_torrent_was_re_added_in_the_grace_window(
    pools, qbt, qbt_client, tmp_path
):
    """The user re-adds the torrent in the grace window: qBittorrent finds its files missing, and the
    held file is the only copy of its data. The purge must ask the client, keep it, and say so."""
    bed, data, orphan, held = _gone_then_quarantined(pools, qbt, qbt_client, tmp_path)
    content = b3(held)
    client = bed.client
    h = infohash(data)
    res = client.torrents_add(
        torrent_files=data, save_path=str(orphan.parent.parent), is_paused=True, use_auto_torrent_management=False
    )
    assert res == "Ok.", res
    _wait(lambda: bool(client.torrents_info(torrent_hashes=h)))
    _expire(bed)

    r = qbhook(bed.cfg, "holding", "--purge-expired", "--yes")

    assert r.returncode == 5, (r.returncode, r.stdout, r.stderr)
    line = f"qbhook: kept {held} in holding: a torrent uses its place {orphan} again"
    assert any(x.startswith(line) for x in r.stderr.splitlines()), r.stderr
    assert held.exists() and b3(held) == content
    _rc, out = qbhook_json(bed.cfg, "holding", "--purge-expired", "--yes", ok=(5,))
    assert out["kept_in_use"] == [{"held": str(held), "origin": str(orphan), "leftover_view": False, "reason": None}], (
        out
    )
    assert [x["path"] for x in out["held"]] == [str(held)] and out["orphans_refused"] is None

    # the torrent removed again: nothing uses the place any more and the purge lets it go
    client.torrents_delete(delete_files=False, torrent_hashes=h)
    _wait(lambda: not client.torrents_info(torrent_hashes=h))
    _rc, out = qbhook_json(bed.cfg, "holding", "--purge-expired", "--yes")
    assert out["held"] == [] and out["kept_in_use"] == [] and not held.exists()


def test_holding_purge_of_orphans_refuses_with_the_client_unreachable(pools, qbt, qbt_client, tmp_path):
    bed, _data, _orphan, held = _gone_then_quarantined(pools, qbt, qbt_client, tmp_path)
    _expire(bed)
    d = _config(bed)
    d["qbittorrent"]["url"] = "http://127.0.0.1:9"  # nothing listens on discard
    d["qbittorrent"]["timeout"] = 2
    _write_cfg(bed, d)

    r = qbhook(bed.cfg, "holding", "--purge-expired", "--yes")

    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    refusals = [x for x in r.stderr.splitlines() if x.startswith("qbhook: refusing to purge quarantined orphans")]
    assert len(refusals) == 1 and "cannot be listed" in refusals[0], r.stderr
    assert "Traceback" not in r.stderr and held.exists()
