"""Plain helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import blake3

from qbhook.catalog.store import Catalog
from qbhook.config import Config, parse_config


def config_data(
    catalog: Path,
    stash: Path,
    pool: Path,
    *,
    seeding="data/media/torrents/seeding",
    qbt: dict | list | None = None,
    policy: dict | None = None,
    scan: dict | None = None,
    server: dict | None = None,
) -> dict:
    """A test's config as the file holds it: two pools, their seeding roots, settle time 0; for a
    process of its own, ``yaml.safe_dump`` it to a file (make_config parses it in-process)."""
    data = {
        "catalog": str(catalog),
        "pools": {"stash": {"path": str(stash), "role": "primary"}, "pool": {"path": str(pool), "role": "cold"}},
        "seeding_roots": {"stash": str(stash / seeding), "pool": str(pool / seeding)},
        "scan": {"settle_seconds": 0, **(scan or {})},
    }
    if qbt is not None:
        data["qbittorrent"] = qbt
    if policy is not None:
        data["policy"] = policy
    if server is not None:
        data["server"] = server
    return data


def make_config(catalog: Path, stash: Path, pool: Path, **kw) -> Config:
    """``config_data`` parsed, as qbhook reads its file."""
    return parse_config(config_data(catalog, stash, pool, **kw), env={})


def seeded_config(tmp_path: Path, **kw) -> Config:
    """``make_config`` with /stash and /pool under ``tmp_path`` and each pool's seeding root made."""
    cfg = make_config(tmp_path / "cat.sqlite", tmp_path / "stash", tmp_path / "pool", **kw)
    for p in cfg.pools:
        p.seeding_root.mkdir(parents=True)
    return cfg


@contextmanager
def seeded_catalog(tmp_path: Path, *, as_cli: bool = False):
    """``seeded_config``'s pools with their catalog open: yields (cfg, catalog, the stash pool's
    path); the catalog is closed at exit. ``as_cli``: opened as the CLI opens it, its reads
    walking from the pool roots (``marker_roots``)."""
    cfg = seeded_config(tmp_path)
    cat = Catalog.open(cfg.catalog, marker_roots=[p.path for p in cfg.pools]) if as_cli else Catalog.open(cfg.catalog)
    try:
        yield cfg, cat, tmp_path / "stash"
    finally:
        cat.close()


def put(path: Path | bytes, data: bytes = b"x") -> bytes:
    """Write ``data`` at ``path`` (str or raw bytes, parents created); return the path as bytes."""
    p = os.fsencode(path)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    return p


def write(path: Path | bytes, data: bytes = b"x", mtime_ns: int | None = None) -> Path | bytes:
    """Like put(), returning ``path`` as given; optionally set its mtime."""
    p = put(path, data)
    if mtime_ns is not None:
        os.utime(p, ns=(mtime_ns, mtime_ns))
    return path


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


@contextmanager
def folder_chain(top: Path | str, depth: int, data: bytes = b"bottom", mtime_ns: int | None = None):
    """A folder chain ``depth`` deep below ``top`` (``d/d/...``, made by descriptor: no path length
    limit is met) with a file ``f.bin`` holding ``data`` at its bottom; yields the bottom folder's
    path. Removed at exit one level at a time from the bottom up: shutil.rmtree (and pytest's
    cleanup of old tmp folders) recurses once per level and fails on such a chain."""
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fds[-1])
            fds.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        w = os.open("f.bin", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fds[-1])
        os.write(w, data)
        if mtime_ns is not None:
            os.utime(w, ns=(mtime_ns, mtime_ns))
        os.close(w)
        yield f"{top}/" + "/".join(["d"] * depth)
    finally:
        while len(fds) > 1:
            bottom = fds.pop()
            for name in os.listdir(bottom):
                try:
                    os.unlink(name, dir_fd=bottom)
                except IsADirectoryError:
                    os.rmdir(name, dir_fd=bottom)
            os.close(bottom)
            try:
                os.rmdir("d", dir_fd=fds[-1])
            except OSError:
                pass  # the test changed the chain (a symlink in it): a shorter chain is left, as made
        os.close(fds[0])
