"""Tests that mount (a bind mount of seeding data inside a pool), each in a mount namespace of its own.

``@own_mounts`` reruns the test it marks in a child pytest under ``unshare -m --propagation
private``: whatever it mounts lives and dies with that namespace, so a test killed half-way leaves
no mount behind on the machine, and none of it is seen outside. The test body runs only in the
child (the parent's run of it waits for the child's verdict: passed, skipped with its reason, or
failed with its output). Where ``unshare`` is missing or not permitted (not root, a container
without CAP_SYS_ADMIN), the test is skipped, saying why; ``bind`` skips the same way when mount
refuses. Fixtures are set up in both runs (the parent's are unused): keep them cheap.
"""

from __future__ import annotations

import functools
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

_INSIDE = "QBHOOK_TEST_OWN_MOUNTS"  # set to the test's node id in the child that runs its body
_ROOT = pathlib.Path(__file__).resolve().parents[1]
_UNSHARE = ["unshare", "-m", "--propagation", "private"]


def own_mounts(test):
    """Run ``test`` in its own private mount namespace (see the module docstring)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        node = os.environ.get("PYTEST_CURRENT_TEST", "").rpartition(" ")[0]
        if node and os.environ.get(_INSIDE) == node:
            return test(*args, **kwargs)
        _in_child(node)

    return run


def _in_child(node: str) -> None:
    if not node:
        pytest.skip("no test id to rerun in its own mount namespace")
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed: a test that mounts needs its own mount namespace")
    probe = subprocess.run([*_UNSHARE, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private mount namespace (needs root): {probe.stderr.strip()}")
    env = {
        **os.environ,
        _INSIDE: node,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
    }
    cmd = [*_UNSHARE, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "--no-header", node]
    done = subprocess.run(cmd, cwd=_ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    if done.returncode == 0 and " passed" in out:
        return
    if done.returncode == 0 and " skipped" in out:
        why = next((line for line in out.splitlines() if line.startswith("SKIPPED")), "skipped")
        pytest.skip(f"in its own mount namespace: {why}")
    pytest.fail(f"in its own mount namespace (exit {done.returncode}):\n{out}", pytrace=False)


def bind(source: os.PathLike | str, at: os.PathLike | str) -> None:
    """``mount --bind source at`` (only in a test run by ``own_mounts``: it is never unmounted, the
    namespace's end takes it); a refusal skips the test, saying why."""
    assert os.environ.get(_INSIDE), "bind() outside an @own_mounts test would leave a mount behind"
    r = subprocess.run(["mount", "--bind", str(source), str(at)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount (needs root): {r.stderr.strip()}")
