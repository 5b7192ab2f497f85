"""Run a real `qbhook serve` in a child process (sandbox demo, tests, benchmarks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def http_ok(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
        return True
    except OSError:
        return False


def wait_http(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(url):
            return True
        time.sleep(0.05)
    return False


def start_serve(
    config: Path,
    port: int,
    env: dict[str, str] | None = None,
    *,
    log: Path | None = None,
    timeout: float = 30.0,
    cli: Sequence[str] = ("-m", "qbhook"),
    sweep: bool = False,
) -> subprocess.Popen:
    """`qbhook --config CONFIG serve --no-sweep` (``sweep``: with its sweeper), returned once
    /healthz answers on PORT.

    ``cli``: what follows the interpreter to run qbhook (the integration tests pass their
    wrapper script, which only shortens the executor's poll spacing)."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115  (the server process owns it)
    proc = subprocess.Popen(
        [sys.executable, *cli, "--config", str(config), "serve", *([] if sweep else ["--no-sweep"])],
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT if log else out,
    )
    if not wait_http(f"http://127.0.0.1:{port}/healthz", timeout):
        proc.kill()
        proc.wait()
        detail = Path(log).read_text() if log else "(no log kept)"
        raise RuntimeError(f"qbhook serve did not come up on port {port}: {detail}")
    return proc


def stop_serve(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM (graceful: finish or journal the current step), then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
