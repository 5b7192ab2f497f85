"""Symlinks in torrent paths on the real bed: real pools, a real qbittorrent-nox, `qbhook plan/apply`.

qBittorrent happily seeds through a symlinked folder; qbhook must not decide or act on
facts read through one (issue 9): the group is blocked naming the link, and `apply --yes`
moves nothing of it, while an ordinary group in the same run still demotes.
"""

import json
import os

import pytest
import yaml
from click.testing import CliRunner

from qbhook.cli import main
from qbhook.sandbox.scenario import Scenario
from qbhook.sandbox.torrents import write_payload

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def run(cfg, *args):
    return CliRunner().invoke(main, ["--config", str(cfg), *args], catch_exceptions=False)


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.name.startswith(".qbhook"))


@pytest.fixture
def bed(pools, qbt, qbt_client, tmp_path):
    sc = Scenario(stash=pools["stash"], pool=pools["pool"], torrent_dir=tmp_path / "torrents")
    for d in (sc.stash_seed, sc.pool_seed):
        d.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "outside"  # on neither pool
    cases = {}
    # 1. a folder of the save path is a symlink to another folder inside the seeding root
    write_payload(sc.stash_seed / "real-movies", {"Inner.F/inner.mkv": 1 * MiB}, seed=11)
    os.symlink(sc.stash_seed / "real-movies", sc.stash_seed / "linked")
    cases["inner"] = (sc.stash_seed / "linked", sc.stash_seed / "linked", sc.stash_seed / "real-movies")
    sc._add(qbt_client, "inner", sc.stash_seed / "linked/Inner.F", sc.stash_seed / "linked")
    # 2. a folder of the save path is a symlink to a folder outside both pools
    write_payload(outside / "movies", {"Far.G/far.mkv": 1 * MiB}, seed=12)
    os.symlink(outside / "movies", sc.stash_seed / "far")
    cases["far"] = (sc.stash_seed / "far", sc.stash_seed / "far", outside / "movies")
    sc._add(qbt_client, "far", sc.stash_seed / "far/Far.G", sc.stash_seed / "far")
    # 3. the destination folder on the cold pool is a symlink to outside both pools
    write_payload(sc.stash_seed / "tv", {"Dest.H/dest.mkv": 1 * MiB}, seed=13)
    (outside / "cold").mkdir(parents=True)
    os.symlink(outside / "cold", sc.pool_seed / "tv")
    cases["dest"] = (sc.stash_seed / "tv", sc.pool_seed / "tv", outside / "cold")
    sc._add(qbt_client, "dest", sc.stash_seed / "tv/Dest.H", sc.stash_seed / "tv")
    # control: an ordinary seed-only torrent, demoted in the same run
    write_payload(sc.stash_seed / "movies", {"Plain.I/plain.mkv": 1 * MiB}, seed=14)
    sc._add(qbt_client, "plain", sc.stash_seed / "movies/Plain.I", sc.stash_seed / "movies")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(sc.config_dict(tmp_path / "catalog.sqlite", qbt.url)))
    return sc, cfg, cases, outside


def test_symlink_in_a_save_path_or_destination_blocks_the_group_and_apply_moves_nothing(bed, qbt_client):
    sc, cfg, cases, outside = bed
    r = run(cfg, "--json", "plan")
    plan = json.loads(r.output)
    by_torrent = {h: g for g in plan["groups"] for h in g["torrents"]}
    for case, (_save, link, target) in cases.items():
        g = by_torrent[sc.hashes[case][0]]
        side = "destination" if case == "dest" else "source"
        assert g["action"] == "blocked", (case, g)
        assert f"symlink in the {side} path: {link} -> {target}" in g["reason"], (case, g["reason"])
        assert not g["steps"]
    assert by_torrent[sc.hashes["plain"][0]]["action"] == "demote"

    r = run(cfg, "explain", sc.hashes["far"][0])
    assert "BLOCKED" in r.output.upper() and f"{sc.stash_seed / 'far'} -> {outside / 'movies'}" in r.output

    before = {"outside": tree(outside), "real-movies": tree(sc.stash_seed / "real-movies")}
    r = run(cfg, "--json", "apply", "--yes")
    assert r.exit_code == 0, r.output
    assert (sc.pool_seed / "movies/Plain.I/plain.mkv").is_file()  # the run did act...
    assert not (sc.stash_seed / "movies/Plain.I/plain.mkv").exists()
    # ...but on nothing reached through a symlink
    assert {"outside": tree(outside), "real-movies": tree(sc.stash_seed / "real-movies")} == before
    assert not (sc.pool_seed / "linked").exists() and not (sc.pool_seed / "far").exists()
    assert (sc.stash_seed / "tv/Dest.H/dest.mkv").is_file()
    for case, (save, _link, _target) in cases.items():
        info = qbt_client.torrents_info(torrent_hashes=sc.hashes[case][0])[0]
        assert os.path.normpath(info["save_path"]) == str(save), case
    assert not (outside / ".qbhook-fsid").exists()
