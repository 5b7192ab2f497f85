"""Small named facts qbhook remembers between runs: last sweep, latest plan summary, what was told.

What was told (``told``): a condition a notification names is told when it starts or changes, and
once when it is gone, never at every run that still finds it (R35: a kept held link was told after
every run). The memory is here, not in the process: a restart does not tell it again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from qbhook.catalog.db import Tx


def put(conn: sqlite3.Connection, key: str, value: Any) -> None:
    with Tx(conn) as c:
        c.execute(
            "INSERT INTO state(key, value, updated_at) VALUES (?,?,?) ON CONFLICT(key) DO UPDATE "
            "SET value=excluded.value, updated_at=excluded.updated_at",
            (key, json.dumps(value), time.time()),
        )


def get(conn: sqlite3.Connection, key: str, default: Any = None) -> tuple[Any, float | None]:
    r = conn.execute("SELECT value, updated_at FROM state WHERE key=?", (key,)).fetchone()
    return (json.loads(r[0]), r[1]) if r else (default, None)


def told(
    conn: sqlite3.Connection, key: str, current: dict[str, str], *, unseen: Callable[[str], bool] = lambda _id: False
) -> tuple[list[str], list[str]]:
    """Remember the conditions found now (``current``: an id -> the line that tells it) under ``key``;
    return the lines to tell (new ids, or a line that changed) and the lines told before whose
    condition is gone. ``unseen(id)``: this look could not say (a listing refused): what was told
    of it is kept, neither told again nor gone. Written only when it changes."""
    before, _ = get(conn, key, {})
    before = before if isinstance(before, dict) else {}
    now = {i: line for i, line in before.items() if i not in current and unseen(i)} | current
    if now != before:
        put(conn, key, now)
    return [line for i, line in current.items() if before.get(i) != line], [
        line for i, line in before.items() if i not in now
    ]
