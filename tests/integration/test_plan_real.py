"""`qbhook plan` against a real qbittorrent-nox and real zfs-fuse pools."""

import json

import pytest
import yaml
from click.testing import CliRunner

from qbhook.cli import main
from qbhook.sandbox.scenario import Scenario

pytestmark = pytest.mark.integration


@pytest.fixture
def world(pools, qbt, qbt_client, tmp_path):
    sc = Scenario(stash=pools["stash"], pool=pools["pool"], torrent_dir=tmp_path / "torrents").build_all(qbt_client)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(sc.config_dict(tmp_path / "catalog.sqlite", qbt.url)))
    return sc, cfg


def run(cfg, *args):
    r = CliRunner().invoke(main, ["--config", str(cfg), *args], catch_exceptions=False)
    return r


def test_plan_decisions_on_the_real_bed(world):
    sc, cfg = world
    r = run(cfg, "--json", "plan")
    assert r.exit_code == 10, r.output  # something is actionable
    plan = json.loads(r.output)
    by_torrent = {h: g for g in plan["groups"] for h in g["torrents"]}

    def group(case):
        gs = {by_torrent[h]["group_id"] for h in sc.hashes[case]}
        assert len(gs) == 1, f"{case} split over groups"
        return by_torrent[sc.hashes[case][0]]

    g = group("movie_in_library")
    assert g["action"] == "stay" and "Movie A (2020).mkv" in g["reason"]

    g = group("siblings")
    assert len(g["torrents"]) == 3
    assert g["action"] == "demote" and g["bytes_to_copy"] == 4 * 1024 * 1024
    assert sum(1 for s in g["steps"] if s["kind"] == "copy") == 2

    g = group("already_on_pool")
    assert g["action"] == "demote" and g["bytes_to_copy"] == 0
    assert not [s for s in g["steps"] if s["kind"] == "copy"]

    g = group("arr_copy")
    assert g["action"] == "promote" and g["bytes_to_copy"] == 0

    g = group("conflict")
    assert g["action"] == "blocked" and "different content already at destination" in g["reason"]

    g = group("outside")
    assert g["action"] == "blocked" and "outside every seeding root" in g["reason"]


def test_blocked_download_path_and_incomplete(world, qbt_client):
    sc, cfg = world
    h = sc.hashes["siblings"][0]
    qbt_client.torrents_set_download_path(
        download_path=str(sc.stash / "data/media/torrents/incomplete"), torrent_hashes=h
    )
    plan = json.loads(run(cfg, "--json", "plan").output)
    g = next(g for g in plan["groups"] if h in g["torrents"])
    assert g["action"] == "blocked" and "download path" in g["reason"]

    # Corrupt one file of the conflict-free demote case and recheck: the torrent drops below 100%.
    h2 = sc.hashes["already_on_pool"][0]
    victim = sc.stash_seed / "movies/Doc.B.2019/doc.b.mkv"
    with open(victim, "r+b") as f:
        f.write(b"\0" * 300_000)
    qbt_client.torrents_recheck(torrent_hashes=h2)
    import time

    for _ in range(100):
        t = qbt_client.torrents_info(torrent_hashes=h2)[0]
        if not t["state"].startswith("checking") and t["progress"] < 1:
            break
        time.sleep(0.1)
    plan = json.loads(run(cfg, "--json", "plan").output)
    g = next(g for g in plan["groups"] if h2 in g["torrents"])
    assert g["action"] == "blocked" and ("incomplete" in g["reason"] or "state" in g["reason"])


def test_explain_names_the_library_link(world):
    sc, cfg = world
    r = run(cfg, "explain", sc.hashes["movie_in_library"][0])
    assert r.exit_code == 0, r.output
    assert "STAY" in r.output and "library/other:" in r.output and "Movie A (2020).mkv" in r.output
