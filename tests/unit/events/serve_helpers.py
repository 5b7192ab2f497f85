"""What the tests of a real `qbhook serve` process share: a minimal config and a Sonarr event.

One home for both, so the serve tests (start-up, durability, slow clients) cannot drift into
posting different events or configuring different servers.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

TOKEN = "serve-token-123456"


def write_config(tmp_path: Path, port: int, qbt_url: str = "http://127.0.0.1:1", qbt_timeout: float = 1) -> Path:
    """Two pools under ``tmp_path``; the default client URL answers nothing, so jobs back off."""
    for d in ("stash/s", "pool/s"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    cfg = {
        "catalog": str(tmp_path / "catalog.sqlite"),
        "pools": {
            "stash": {"path": str(tmp_path / "stash"), "role": "primary"},
            "pool": {"path": str(tmp_path / "pool"), "role": "cold"},
        },
        "seeding_roots": {"stash": str(tmp_path / "stash/s"), "pool": str(tmp_path / "pool/s")},
        "qbittorrent": {"url": qbt_url, "username": "admin", "password": "x", "timeout": qbt_timeout},
        "server": {"listen": "127.0.0.1", "port": port, "token_env": "T"},
    }
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    return path


def post_sonarr(port: int, i: int, *, timeout: float = 10) -> tuple[int, float]:
    """POST Sonarr's "Download" event number ``i``; (HTTP status, seconds it took)."""
    body = json.dumps(
        {
            "eventType": "Download",
            "instanceName": "Sonarr",
            "series": {"id": 1, "title": "S", "path": "/tv/S"},
            "episodes": [{"id": i}],
            "episodeFile": {"id": i, "path": f"/tv/S/e{i}.mkv"},
            "downloadClientType": "qBittorrent",
            "downloadId": f"{i:040X}",
        }
    ).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook/sonarr",
        data=body,
        headers={"Content-Type": "application/json", "X-Qbhook-Token": TOKEN},
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, time.perf_counter() - t0
