"""A catalog as an older qbhook left it: the first ``version`` migrations applied, nothing after,
for the tests of what a later migration does to it (the one way they build one)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from qbhook.catalog.db import migrations


def catalog_at(path: Path, version: int) -> sqlite3.Connection:
    """An autocommit connection to a new catalog at ``path`` at schema ``version``."""
    old = sqlite3.connect(path, isolation_level=None)
    for step, script in enumerate(migrations()[:version]):
        old.executescript(script)
        old.execute(f"PRAGMA user_version = {step + 1}")
    return old
