"""Small named facts qbhook remembers between runs: last sweep, latest plan summary."""

from __future__ import annotations

import json
import sqlite3
import time
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
