"""The integration tests' CLI wrapper (tests/integration/qbhook_cli.py) must reach every
executor the CLI builds: if a call site stopped looking build_executor up at call time, the
patch would silently stop working and the real-parts tier would only get slower again
(as test_executor's CLI tests once did when the executor stopped reading a patched field)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

WRAPPER = Path(__file__).resolve().parents[1] / "integration" / "qbhook_cli.py"

CHECK = """
import runpy, sqlite3, sys
from types import SimpleNamespace

runpy.run_path(sys.argv[1])  # the wrapper's patch, without running the CLI
from qbhook.cli import events
from qbhook.cli.app import App
from qbhook.config import load_config

cfg = load_config(sys.argv[2])
catalog = SimpleNamespace(conn=sqlite3.connect(":memory:"))
app = SimpleNamespace(cfg=cfg, catalog=catalog, clients={})
built = {
    "apply, resume, repair": App.executor(app, 0),
    "serve worker": events._executor_for(cfg, catalog, {}),
}
for name, ex in built.items():
    timing = ex.ctx.timing
    print(name, timing.poll_initial_s, timing.poll_max_s)
"""


def test_wrapper_shortens_the_polls_of_every_executor_the_cli_builds(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "catalog": str(tmp_path / "cat.sqlite"),
                "pools": {
                    "stash": {"path": str(stash), "role": "primary"},
                    "pool": {"path": str(pool), "role": "cold"},
                },
                "seeding_roots": {"stash": str(stash / "seeding"), "pool": str(pool / "seeding")},
                "qbittorrent": {"url": "http://127.0.0.1:1", "password": "x"},
            }
        )
    )
    r = subprocess.run(
        [sys.executable, "-c", CHECK, str(WRAPPER), str(cfg)], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["apply, resume, repair 0.25 1.0", "serve worker 0.25 1.0"], r.stdout
