"""`qbhook torrents` filters: a value no torrent can have is a usage error, not an empty answer.

`--pool nosuch` and `--decision bogus` matched nothing and printed "no indexed torrent
matches", exit 0, while `scan nosuch` refused the unknown pool.
"""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from qbhook.cli import main
from qbhook.errors import ExitCode
from tests.unit.test_cli_catalog import Env
from tests.unit.test_startup import HASH, bed  # noqa: F401  (the fixture: a catalog with a synced index)

DECISIONS = "'stay', 'demote', 'promote', 'converge', 'repair', 'blocked', 'skip', 'none'"


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--pool", "nosuch"], "Invalid value for '--pool': 'nosuch' is not one of 'stash', 'pool', 'none'."),
        (["--pool", os.fsdecode(b"\xff")], "Invalid value for '--pool': '\\xff' is not one of"),
        (["--decision", "bogus"], f"Invalid value for '--decision': 'bogus' is not one of {DECISIONS}."),
        (["--decision", "DEMOTE"], "Invalid value for '--decision': 'DEMOTE' is not one of"),
    ],
)
def test_an_unknown_pool_or_decision_is_a_usage_error_naming_the_known_values(tmp_path, args, why):
    env = Env(tmp_path)
    r = env.run("torrents", "--offline", *args, expect=ExitCode.BAD_INPUT)
    assert r.stderr.splitlines()[-1].startswith(f"Error: {why}"), r.stderr
    assert r.stdout == "" and not env.catalog.exists()


@pytest.mark.parametrize(
    ("args", "hashes"),
    [
        (["--pool", "stash"], [HASH]),
        (["--pool", "pool"], ["b" * 40]),
        (["--pool", "none"], []),
        (["--decision", "none"], sorted([HASH, "b" * 40])),
        (["--decision", "stay"], []),
    ],
)
def test_a_known_pool_or_decision_still_filters(bed, args, hashes):  # noqa: F811
    r = CliRunner().invoke(main, ["--config", str(bed), "--json", "torrents", "--offline", *args])
    assert r.exit_code == 0, r.output
    assert sorted(t["hash"] for t in json.loads(r.stdout)["torrents"]) == hashes
