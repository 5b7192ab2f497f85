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
from tests.integration.crash_helpers import qbhook_json, wait_seeding_at
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
    assert msg["title"] == "qbhook: 1 run finished" and msg["type"] == "info"
    assert (f"run {out['run_id']} (cli) done: 1 group(s) done, 0 failed, 0 busy; copied 4.0 MiB, freed 4.0 MiB, "
            f"3 torrent(s) relocated") == msg["message"]
    assert elapsed < 120, elapsed
    wait_seeding_at(client, sc.hashes["siblings"][:1], lambda _h: sc.pool_seed / "tv")


def test_forced_rollback_is_notified_as_a_failure(bed, listener):
    from qbhook.cli import App
    from qbhook.cli_plan import compute_plan
    from qbhook.executor import Executor
    from qbhook.journal import Journal

    sc, client = bed.sc, bed.client
    sc.already_on_pool(client)
    h = sc.hashes["already_on_pool"][0]
    stash_file = sc.stash_seed / "movies/Doc.B.2019/doc.b.mkv"
    lib = sc.stash / MOVIES / "Doc B (2019)" / "Doc B (2019).mkv"

    def hook(point, _gid, _seq, step):
        if point == "after_act" and step.kind == "verify_group":
            lib.parent.mkdir(parents=True, exist_ok=True)
            os.link(stash_file, lib)          # an *arr import between verify and delete

    prev = notify.install(None)
    app = App(str(bed.cfg), False, 0)
    try:
        _snap, plan = compute_plan(app)       # loading the config starts the notifier (notify.configure)
        assert notify.active() is not None
        # the executor as the CLI and serve make it: wrapped by notify.watch
        ex = notify.watch(Executor(app.cfg, app.catalog, app.clients, Journal(app.catalog.conn), hook=hook,
                                   poll_initial_s=0.25, poll_max_s=1.0))
        summary = ex.apply(plan, trigger="cli")
        assert summary.status == "failed" and summary.groups[0].status == "rolled_back"
        assert notify.active().flush(20)
    finally:
        app.catalog.close()
        n = notify.install(prev)
        if n is not None:
            n.close(1)

    (msg,) = listener.wait_for(lambda r: len(r) >= 1, timeout=10)
    assert msg["type"] == "failure"
    assert "1 group failed" in msg["title"] and "1 run finished" in msg["title"]
    gid = summary.groups[0].group_id
    lines = msg["message"].splitlines()
    assert len(lines) == 2, lines           # one line per event, the error's hint folded in
    assert "; hint: re-plan: the group must stay where its library is" in lines[0]
    assert lines[0].startswith(f"[FAILURE] group {gid} (demote) rolled back: delete failed: refusing to delete")
    assert lines[1].startswith(f"[FAILURE] run {summary.run_id} (cli) failed: 0 group(s) done, 1 failed")
    wait_seeding_at(client, [h], lambda _h: sc.stash_seed / "movies")
