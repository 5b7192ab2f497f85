"""Test payloads and offline .torrent files, and adding them to a real qBittorrent."""

from __future__ import annotations

import io
import random
import time
from pathlib import Path

import torf

DEAD_ANNOUNCE = "http://127.0.0.1:1/announce"  # nothing listens: torrents stay offline
SEEDING_STATES = {"uploading", "stalledUP", "queuedUP", "forcedUP"}
_CHUNK = 1 << 20


def write_payload(root: Path, files: dict[str, int | bytes], seed: int = 0) -> list[Path]:
    """Write files under root: relative path -> size (deterministic pseudo-random bytes) or bytes.

    Same (seed, path, size) gives the same content, so a test can rebuild an identical file
    elsewhere; different paths differ, so no two files dedupe by accident.
    """
    written = []
    for rel, spec in files.items():
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            if isinstance(spec, (bytes, bytearray)):
                f.write(spec)
            else:
                rng = random.Random(f"{seed}:{rel}")
                left = spec
                while left:
                    n = min(left, _CHUNK)
                    f.write(rng.randbytes(n))
                    left -= n
        written.append(path)
    return written


def make_torrent(path: Path, out: Path, name: str | None = None, piece_size: int | None = None) -> bytes:
    """Make a private v1 .torrent over path (file or folder), write it to out, return its bytes."""
    t = torf.Torrent(
        path=Path(path),
        name=name,
        private=True,
        trackers=[DEAD_ANNOUNCE],
        piece_size=piece_size,
        created_by=None,
        creation_date=None,
    )
    t.generate()
    data = t.dump()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_bytes(data)
    return data


def infohash(torrent_bytes: bytes) -> str:
    return torf.Torrent.read_stream(io.BytesIO(torrent_bytes)).infohash


def add_and_wait_seeding(
    client,
    torrent_bytes: bytes,
    save_path: Path,
    category: str | None = None,
    tags: list[str] | str | None = None,
    timeout: float = 60,
) -> str:
    """Add a torrent over existing data at save_path; wait until it checked to 100% and seeds."""
    h = infohash(torrent_bytes)
    res = client.torrents_add(
        torrent_files=torrent_bytes,
        save_path=str(save_path),
        is_paused=False,
        use_auto_torrent_management=False,
        category=category,
        tags=tags,
    )
    if res != "Ok.":
        raise RuntimeError(f"torrents_add refused {h}: {res!r} (already added?)")
    wait_seeding(client, h, timeout)
    return h


def wait_seeding(client, torrent_hash: str, timeout: float = 60) -> dict:
    """Wait for progress 1.0 in a seeding state on two polls in a row (checking can flicker)."""
    deadline = time.monotonic() + timeout
    stable, info = 0, None
    while time.monotonic() < deadline:
        found = client.torrents_info(torrent_hashes=torrent_hash)
        info = found[0] if found else None
        if info and info["progress"] == 1 and info["state"] in SEEDING_STATES:
            stable += 1
            if stable >= 2:
                return info
        else:
            stable = 0
        time.sleep(0.1)
    state = (info["state"], info["progress"]) if info else "not present"
    raise TimeoutError(f"torrent {torrent_hash} not seeding after {timeout}s: {state}")
