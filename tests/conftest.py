"""Shared fixtures for the real test bed: zfs-fuse pools and a real qbittorrent-nox.

If a real part cannot start, the fixture fails (a green run without the bed would prove
nothing); QBHOOK_SKIP_INTEGRATION=1 turns that into a skip for machines without it.
"""

from __future__ import annotations

import os
import time

import pytest

from qbhook.sandbox.qbt import QbtInstance
from qbhook.sandbox.zfs import create_pools, destroy_pools, ensure_zfs_fuse


def _unavailable(msg: str):
    if os.environ.get("QBHOOK_SKIP_INTEGRATION") == "1":
        pytest.skip(msg)
    pytest.fail(
        f"{msg} (run scripts/install-system-deps.sh as root, or set QBHOOK_SKIP_INTEGRATION=1 to skip)", pytrace=False
    )


@pytest.fixture(scope="session")
def zfs_available() -> bool:
    """True when the zfs-fuse daemon answers (started here if needed)."""
    return ensure_zfs_fuse()


@pytest.fixture
def pools(tmp_path, zfs_available):
    """Fresh "stash" and "pool" filesystems (+ nested dataset stash/data/media/library) per test.

    zfs-fuse pools when possible (creation ~0.15 s, so per-test is affordable), else tmpfs.
    """
    p, err = None, None
    try:
        p = create_pools(
            tmp_path / "bed", nested={"stash": "data/media/library"}, kind="zfs" if zfs_available else "tmpfs"
        )
    except Exception as e:
        err = f"cannot create test pools: {e}"
    if err:  # outside the except block, so the report is the message, not a traceback chain
        _unavailable(err)
    yield p
    destroy_pools(p)


@pytest.fixture
def zfs_pools(pools):
    """The `pools` fixture, required to be real ZFS (for tests of ZFS facts)."""
    if pools.kind != "zfs":
        msg = "zfs-fuse is not running: pools fell back to tmpfs, ZFS facts cannot be checked"
        if os.environ.get("QBHOOK_SKIP_INTEGRATION") == "1":
            pytest.skip(msg)
        pytest.fail(msg)
    return pools


@pytest.fixture(scope="session")
def qbt(tmp_path_factory):
    """One real qbittorrent-nox for the whole session (user admin / adminadmin)."""
    inst, err = QbtInstance(), None
    try:
        inst.start(tmp_path_factory.mktemp("qbt-profile"))
    except Exception as e:
        err = f"cannot start qbittorrent-nox: {e}"
    if err:
        _unavailable(err)
    yield inst
    inst.stop()


@pytest.fixture
def qbt_client(request, qbt):
    """Logged-in client; after the test all torrents, categories and tags are removed."""
    if "pools" in request.fixturenames:
        # Set pools up first so they are torn down last: torrents must let go of their files
        # before the pools are destroyed.
        request.getfixturevalue("pools")
    if qbt.proc.poll() is not None:  # a previous test killed it on purpose
        qbt.restart()
    client = qbt.client()
    yield client
    if qbt.proc.poll() is not None:
        qbt.restart()
        client = qbt.client()
    hashes = [t["hash"] for t in client.torrents_info()]
    if hashes:
        client.torrents_delete(delete_files=False, torrent_hashes=hashes)
        deadline = time.monotonic() + 10
        while client.torrents_info() and time.monotonic() < deadline:
            time.sleep(0.05)
    if cats := list(client.torrents_categories()):
        client.torrents_remove_categories(categories=cats)
    if tags := list(client.torrents_tags()):
        client.torrents_delete_tags(tags=tags)


@pytest.fixture(scope="session")
def rtorrent(tmp_path_factory):
    """One real headless rtorrent for the whole session (SCGI unix socket, offline)."""
    from qbhook.sandbox.rtorrent import RtorrentInstance

    inst, err = RtorrentInstance(), None
    try:
        inst.start(tmp_path_factory.mktemp("rt"))
    except Exception as e:
        err = f"cannot start rtorrent: {e}"
    if err:
        _unavailable(err)
    yield inst
    inst.stop()


@pytest.fixture
def rt_client(request, rtorrent):
    """RtorrentClient on the session rtorrent; every item is erased after the test (data kept)."""
    from qbhook.clients.rtorrent import RtorrentClient

    if "pools" in request.fixturenames:
        request.getfixturevalue("pools")  # pools torn down after rtorrent let go of the files
    if rtorrent.proc.poll() is not None:  # a previous test killed it on purpose
        rtorrent.restart()
    yield RtorrentClient("rt", rtorrent.address, retries=1)
    if rtorrent.proc.poll() is not None:
        rtorrent.restart()
    rtorrent.remove_all()
