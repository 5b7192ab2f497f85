"""Notifications on the real bed: apprise ``json://`` to a loopback listener after a real
demotion (the CLI in a subprocess) and after a forced rollback (in process, a hook makes the
library link the delete must refuse), with a dead endpoint beside the good one."""

from __future__ import annotations

import os
import time

import pytest
import yaml

from qbhook import notify
from qbhook.sandbox.scenario import MOVIES
from tests.integration.crash_helpers import QBHOOK_CMD, qbhook_json, wait_seeding_at
from tests.integration.test_apply_real import make_bed
from tests.listener import Listener, dead_port

pytestmark = pytest.mark.integration


@pytest.fixture
def listener():
    with Listener() as lis:
        yield lis


@pytest.fixture
def bed(pools, qbt, qbt_client, tmp_path, listener):
    b = make_bed(pools, qbt, qbt_client, tmp_path)
    data = yaml.safe_load(b.cfg.read_text())
    # A dead endpoint first: it must neither stop the good one nor hold up the run.
    data["notify"] = {"urls": [f"json://127.0.0.1:{dead_port()}/", listener.url], "min_interval": 0}
    b.cfg.write_text(yaml.safe_dump(data))
    return b


def test_real_demotion_is_notified(bed, listener):
    sc, client = bed.sc, bed.client
    sc.seed_only_with_cross_seeds(client)
    t0 = time.monotonic()
    _rc, out = qbhook_json(bed.cfg, "apply", "--yes")
    elapsed = time.monotonic() - t0
    assert len(out["groups_done"]) == 1 and out["groups_failed"] == {}, out
    (msg,) = listener.wait_for(lambda r: len(r) >= 1, timeout=10)
    assert msg["title"] == "qbhook: run finished" and msg["type"] == "info"
    assert (
        f"run {out['run_id']} (cli) done: 1 group(s) done, 0 failed, 0 busy; copied 4.0 MiB, freed 4.0 MiB, "
        f"3 torrent(s) relocated"
    ) == msg["message"]
    assert elapsed < 120, elapsed
    wait_seeding_at(client, sc.hashes["siblings"][:1], lambda _h: sc.pool_seed / "tv")


def test_forced_rollback_is_notified_as_a_failure(bed, listener):
    from qbhook.cli import App
    from qbhook.decide.planning import plan_run
    from qbhook.move.executor import build_executor
    from qbhook.move.journal import Journal

    sc, client = bed.sc, bed.client
    sc.already_on_pool(client)
    h = sc.hashes["already_on_pool"][0]
    stash_file = sc.stash_seed / "movies/Doc.B.2019/doc.b.mkv"
    lib = sc.stash / MOVIES / "Doc B (2019)" / "Doc B (2019).mkv"

    def hook(point, _gid, _seq, step):
        if point == "after_act" and step.kind == "verify_group":
            lib.parent.mkdir(parents=True, exist_ok=True)
            os.link(stash_file, lib)  # an *arr import between verify and delete

    prev = notify.install(None)
    app = App(str(bed.cfg), False, 0)
    try:
        # loading the config starts the notifier (notify.configure)
        _snap, plan, _use = plan_run(app.cfg, app.catalog, app.clients)
        assert notify.active() is not None
        # the executor as the CLI and serve make it: wrapped by notify.watch
        ex = notify.watch(
            build_executor(
                app.cfg,
                app.catalog,
                app.clients,
                Journal(app.catalog.conn),
                hook=hook,
                poll_initial_s=0.25,
                poll_max_s=1.0,
            )
        )
        summary = ex.apply(plan, trigger="cli")
        assert summary.status == "failed" and summary.groups[0].status == "rolled_back"
        # False: the dead endpoint's batch is kept for its retry; the good endpoint has it once
        assert notify.active().flush(20) is False
    finally:
        app.catalog.close()
        n = notify.install(prev)
        if n is not None:
            n.close(1)

    (msg,) = listener.wait_for(lambda r: len(r) >= 1, timeout=10)
    assert msg["type"] == "failure"
    assert msg["title"] == "qbhook: group failed, run finished", msg
    gid = summary.groups[0].group_id
    lines = msg["message"].splitlines()
    assert len(lines) == 2, lines  # one line per event, the error's hint folded in
    assert "; hint: re-plan: the group must stay where its library is" in lines[0]
    assert lines[0].startswith(f"[FAILURE] group {gid} (demote) rolled back: delete failed: refusing to delete")
    assert lines[1].startswith(f"[FAILURE] run {summary.run_id} (cli) failed: 0 group(s) done, 1 failed")
    wait_seeding_at(client, [h], lambda _h: sc.stash_seed / "movies")


def test_serve_worker_run_is_notified(pools, qbt, qbt_client, tmp_path, listener):
    """`qbhook serve` with auto_apply: a queued event makes its worker demote, and the run is
    notified from the serve process (the worker's executor is wrapped like the CLI's)."""
    from qbhook.sandbox.qbt import free_port
    from qbhook.sandbox.serve import start_serve, stop_serve
    from qbhook.sandbox.torrents import (
        add_and_wait_seeding,
        make_torrent,
        write_payload,
    )
    from tests.integration.crash_helpers import qbhook

    b = make_bed(pools, qbt, qbt_client, tmp_path)
    port = free_port()
    data = yaml.safe_load(b.cfg.read_text())
    data["policy"]["auto_apply"] = True
    data["server"] = {"listen": "127.0.0.1", "port": port, "token": "t" * 24, "sweep_interval": 3600}
    data["notify"] = {"urls": [listener.url], "min_interval": "1s"}
    b.cfg.write_text(yaml.safe_dump(data))
    save = b.sc.stash_seed / "movies"
    write_payload(save, {"Served.2024/served.mkv": 1 << 20}, seed=21)
    h = add_and_wait_seeding(
        qbt_client, make_torrent(save / "Served.2024", b.sc.torrent_dir / "s.torrent"), save, tags=["~noHL"]
    )
    proc = start_serve(b.cfg, port, log=tmp_path / "serve.log", cli=QBHOOK_CMD)
    try:
        assert qbhook(b.cfg, "hook", "finished", h).returncode == 0
        (msg,) = listener.wait_for(lambda r: len(r) >= 1, timeout=120)
    finally:
        stop_serve(proc)
    assert msg["title"] == "qbhook: run finished", msg
    assert " (worker) done: 1 group(s) done, 0 failed, 0 busy; copied 1.0 MiB, freed 1.0 MiB" in msg["message"]
    wait_seeding_at(qbt_client, [h], lambda _h: b.sc.pool_seed / "movies")


def test_sweep_reports_low_space_blocked_groups_and_atm_back_on(bed, listener):
    """`qbhook sweep` on the real bed: a pool below the free-space threshold, a group blocked
    longer than blocked_after, and a torrent qbhook relocated whose ATM is on again, each
    reported once."""
    sc, client = bed.sc, bed.client
    data = yaml.safe_load(bed.cfg.read_text())
    data["notify"].update(blocked_after="1s", free_space_below="1000TiB")
    bed.cfg.write_text(yaml.safe_dump(data))
    sc.conflict_at_destination(client)  # blocked: different data at its pool path
    sc.seed_only_with_cross_seeds(client)
    _rc, out = qbhook_json(bed.cfg, "apply", "--yes")
    assert len(out["groups_done"]) == 1, out
    listener.wait_for(lambda r: len(r) >= 1, timeout=10)  # the run's own message
    moved = sc.hashes["siblings"][0]
    wait_seeding_at(client, [moved], lambda _h: sc.pool_seed / "tv")
    # ATM on, in a category whose folder is where the torrent already is: qBittorrent moves
    # nothing now, but it would follow the category's folder from here on.
    here = bed.save_path(moved)
    client.torrents_create_category(name="atm-test", save_path=here)
    client.torrents_set_category(category="atm-test", torrent_hashes=moved)
    client.torrents_set_auto_management(enable=True, torrent_hashes=moved)
    assert client.torrents_info(torrent_hashes=moved)[0]["auto_tmm"] is True

    try:
        qbhook_json(bed.cfg, "sweep")
        first = listener.wait_for(lambda r: len(r) >= 2, timeout=15)[1]
        time.sleep(1.2)
        qbhook_json(bed.cfg, "sweep")
        second = listener.wait_for(lambda r: len(r) >= 3, timeout=15)[2]
        qbhook_json(bed.cfg, "sweep")  # nothing new: no message
        time.sleep(3)
    finally:
        client.torrents_set_auto_management(enable=False, torrent_hashes=moved)
        client.torrents_remove_categories(categories="atm-test")  # the qBittorrent is shared
    assert len(listener.received) == 3, listener.received

    assert first["title"] == "qbhook: pool low on space (2), ATM switched back on", first
    lines = first["message"].splitlines()
    assert any(x.startswith("[WARNING] pool stash has ") and "below 1000.0 TiB" in x for x in lines), lines
    assert any(x.startswith("[WARNING] pool pool has ") for x in lines), lines
    assert any(
        f"({moved[:12]}) was relocated by qbhook but has Automatic Torrent Management on again" in x for x in lines
    ), lines
    (blocked,) = second["message"].splitlines()
    assert blocked.startswith("[WARNING] group ") and "blocked for" in blocked
    assert "different content already at destination" in blocked, blocked
