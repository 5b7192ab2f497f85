"""End to end: qBittorrent runs the hook on "torrent added", a running `qbhook serve` queues it,
the worker plans the torrent's group; the sweeper catches an event that never arrived."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from qbhook.sandbox.qbt import free_port
from qbhook.sandbox.scenario import NOHL, Scenario
from qbhook.sandbox.serve import start_serve, stop_serve
from qbhook.sandbox.torrents import add_and_wait_seeding, make_torrent, write_payload
from tests.integration.crash_helpers import QBHOOK_CMD

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TOKEN = "e2e-token-" + "x" * 20


def qbhook(cfg, *args, check=True):
    r = subprocess.run(
        [sys.executable, "-m", "qbhook", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "QBHOOK_TOKEN": TOKEN},
    )
    if check and r.returncode not in (0, 10):
        raise AssertionError(f"qbhook {args} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(params=[False], ids=["plan-only"])
def served(request, pools, qbt, qbt_client, tmp_path):
    sc = Scenario(stash=pools["stash"], pool=pools["pool"], torrent_dir=tmp_path / "torrents")
    for d in (sc.stash_seed, sc.pool_seed):
        d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    data = sc.config_dict(tmp_path / "catalog.sqlite", qbt.url, auto_apply=request.param)
    data["server"] = {"listen": "127.0.0.1", "port": port, "token_env": "QBHOOK_TOKEN", "sweep_interval": 3600}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    # The hook script as it would sit in a container, with its settings file next to it.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    shutil.copy(REPO / "hooks/qbt-hook.sh", hooks / "qbt-hook.sh")
    (hooks / "qbt-hook.conf").write_text(f"QBHOOK_URL=http://127.0.0.1:{port}\nQBHOOK_TOKEN={TOKEN}\n")
    proc = start_serve(cfg, port, {"QBHOOK_TOKEN": TOKEN}, log=tmp_path / "serve.log", cli=QBHOOK_CMD)
    yield sc, cfg, hooks, proc
    stop_serve(proc)
    qbt_client.app_set_preferences({"autorun_on_torrent_added_enabled": False, "autorun_enabled": False})


def _wait_done_job(cfg, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = json.loads(qbhook(cfg, "--json", "queue", "--state", "done").stdout)
        if jobs:
            return jobs
        time.sleep(0.5)
    raise AssertionError("no job finished: " + qbhook(cfg, "--json", "queue").stdout)


def test_hook_to_plan_and_sweeper_catches_missed_event(served, qbt_client):
    sc, cfg, hooks, proc = served
    r = qbhook(cfg, "setup", "qbittorrent", "--hook-path", str(hooks / "qbt-hook.sh"))
    assert "dry run" in r.stdout
    assert not qbt_client.app_preferences()["autorun_on_torrent_added_enabled"]  # dry run changed nothing
    qbhook(cfg, "setup", "qbittorrent", "--hook-path", str(hooks / "qbt-hook.sh"), "--yes")
    prefs = qbt_client.app_preferences()
    assert (
        prefs["autorun_on_torrent_added_enabled"] and "qbt-hook.sh added" in prefs["autorun_on_torrent_added_program"]
    )

    save = sc.stash_seed / "movies"
    write_payload(save, {"Seed.Only.2022/seed.mkv": 1 << 20}, seed=7)
    h = add_and_wait_seeding(
        qbt_client, make_torrent(save / "Seed.Only.2022", sc.torrent_dir / "a.torrent"), save, tags=[NOHL]
    )
    jobs = _wait_done_job(cfg)
    job = next(j for j in jobs if j["key"] == f"torrent:{h}")
    assert "torrent_added" in job["kinds"] or "torrent_finished" in job["kinds"]
    assert job["result"]["groups"][0]["action"] == "demote", job

    # An event that never arrives: hooks off, another torrent added. The sweeper finds it.
    qbt_client.app_set_preferences({"autorun_on_torrent_added_enabled": False, "autorun_enabled": False})
    write_payload(save, {"Missed.2023/missed.mkv": 1 << 20}, seed=8)
    h2 = add_and_wait_seeding(
        qbt_client, make_torrent(save / "Missed.2023", sc.torrent_dir / "b.torrent"), save, tags=[NOHL]
    )
    time.sleep(1)
    assert not [j for j in json.loads(qbhook(cfg, "--json", "queue").stdout) if h2 in j["key"]]
    out = json.loads(qbhook(cfg, "--json", "sweep").stdout)
    assert any("Missed.2023" in n for g in out["pending"] for n in g["names"] if g["action"] == "demote")
    st = json.loads(qbhook(cfg, "--json", "status").stdout)
    assert st["last_sweep"]["plan"]["demote"] >= 2 and st["queue"]["done"] >= 1


@pytest.mark.parametrize("served", [True], ids=["auto-apply"], indirect=True)
def test_hook_event_demotes_when_auto_apply_is_on(served, qbt_client):
    sc, cfg, hooks, proc = served
    qbhook(cfg, "setup", "qbittorrent", "--hook-path", str(hooks / "qbt-hook.sh"), "--yes")
    save = sc.stash_seed / "movies"
    write_payload(save, {"Auto.2024/auto.mkv": 2 << 20, "Auto.2024/auto.nfo": 1000}, seed=9)
    h = add_and_wait_seeding(
        qbt_client, make_torrent(save / "Auto.2024", sc.torrent_dir / "c.torrent"), save, tags=[NOHL]
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        t = qbt_client.torrents_info(torrent_hashes=h)[0]
        if (
            t["save_path"].rstrip("/") == str(sc.pool_seed / "movies")
            and t["progress"] == 1
            and t["state"] in ("stalledUP", "uploading")
        ):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"not demoted: {t}\n" + qbhook(cfg, "history").stdout)
    assert (sc.pool_seed / "movies/Auto.2024/auto.mkv").stat().st_size == 2 << 20
    # The torrent seeds at its new place before the run's delete and prune steps finish:
    # wait for the run to end, then the old folder must be gone.
    while time.monotonic() < deadline:
        runs = json.loads(qbhook(cfg, "--json", "history").stdout)["runs"]
        if runs and runs[0]["status"] not in ("running", "pending"):
            break
        time.sleep(0.5)
    assert runs and runs[0]["trigger"] == "worker" and runs[0]["status"] == "done", runs
    assert not (save / "Auto.2024").exists()
