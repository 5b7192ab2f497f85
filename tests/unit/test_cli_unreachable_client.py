"""A client that is down: a one-shot command prints one line naming the url and the cause; `serve`
logs its retries (a daemon says it is retrying).

Before: qBittorrent's retries (tenacity's before_sleep, WARNING) printed three log lines above
the error, whose own text was a 400-character repr of requests' and urllib3's exceptions, then a
hint line. Real processes (logging is configured once per process, as a user runs qbhook) against
a closed port: no qBittorrent needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qbhook.errors import ExitCode
from qbhook.sandbox.qbt import free_port
from qbhook.sandbox.serve import start_serve, stop_serve
from tests.unit.events.serve_helpers import write_config

HASH = "1" * 40

# the command, and its exit code by qbhook.errors: an unreachable client is 4; orphans is a
# guard that refuses (3); torrents answers from the index and reports the client (0); status
# asks no client. explain of a hash the index lacks is the client's error (4), not "bad hash".
ONE_SHOT = [
    (["plan"], ExitCode.QBT_UNREACHABLE),
    (["torrents"], ExitCode.OK),
    (["orphans"], ExitCode.GUARD_REFUSED),
    (["repair"], ExitCode.QBT_UNREACHABLE),
    (["repair", HASH], ExitCode.QBT_UNREACHABLE),
    (["sweep"], ExitCode.QBT_UNREACHABLE),
    (["explain", HASH], ExitCode.QBT_UNREACHABLE),
    (["status"], None),
]


@pytest.fixture(scope="module")
def down(tmp_path_factory) -> tuple[str, dict]:
    """(the client's url, command -> (exit code, stderr)), all commands run at once."""
    tmp = tmp_path_factory.mktemp("down")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = write_config(tmp, free_port(), qbt_url=url)
    env = {**os.environ, "T": "x"}
    env.pop("QBHOOK_CONFIG", None)
    # the catalog the commands that only read need (they make none), made before they run at once
    subprocess.run([sys.executable, "-m", "qbhook", "--config", str(config), "scan"], env=env, check=True)
    procs = {}
    for args, _ in ONE_SHOT:  # each waits out its backoff (~3.5 s): in parallel
        cmd = [sys.executable, "-m", "qbhook", "--config", str(config), *args]
        procs[" ".join(args)] = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return url, {k: (p.wait(timeout=120), p.stderr.read().decode()) for k, p in procs.items()}


@pytest.mark.parametrize("args, code", ONE_SHOT, ids=[" ".join(a) for a, _ in ONE_SHOT])
def test_an_unreachable_client_is_one_line_naming_the_url_and_the_cause(down, args, code):
    url, runs = down
    rc, err = runs[" ".join(args)]
    if code is None:  # status reads the catalog and the server, never a client
        assert "retrying" not in err and "qBittorrent" not in err, err
        return
    assert rc == code, (rc, err)
    assert len(err.splitlines()) == 1, err
    assert err.startswith("qbhook: ") and url in err and "Connection refused" in err, err
    assert "(4 attempts)" in err  # the retries it did not log are counted in the line
    assert "MaxRetryError" not in err and " object at 0x" not in err  # no library reprs


def test_verbose_shows_the_retries(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, free_port(), qbt_url=url)
    r = subprocess.run(
        [sys.executable, "-m", "qbhook", "--config", str(config), "-v", "plan"],
        env={**os.environ, "T": "x"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == ExitCode.QBT_UNREACHABLE
    assert r.stderr.count("failed (Connection refused); retrying") == 1, r.stderr  # 2 requests a round
    assert r.stderr.splitlines()[-1].startswith("qbhook: "), r.stderr


def test_serve_logs_its_retries_of_a_client_that_is_down(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, port, qbt_url=url)
    data = json.loads(config.read_text())
    data["server"]["sweep_interval"] = "1s"  # its sweeper asks the client a second after start
    config.write_text(json.dumps(data))
    log = tmp_path / "serve.log"
    proc = start_serve(config, port, {"T": "x"}, log=log, sweep=True)
    try:
        deadline = time.monotonic() + 60
        while "2 of 4 attempts failed (Connection refused); retrying" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        stop_serve(proc)
    assert f"WARNING qbhook.retry: qBittorrent default ({url})" in Path(log).read_text()
