"""A pool root is walked to from ``/`` without following a symlink, and pinned to the folder it
was when this process first opened it (``dirfd.open_root``).

Before, a pool root was opened by its path and trusted as a mount point; nothing checked it was
one, and even a mount point moves when a folder above it is renamed. A pool kept as a plain
folder in a dataset whose root an apps user can write (``/mnt/tank/data``) could then be swapped
(``mv data data.old; ln -s /elsewhere data``), and the orphan walk, the snapshot and every act
went on inside ``/elsewhere``.
"""

from __future__ import annotations

import os

import pytest

from qbhook import config
from qbhook.dirfd import FolderRefused, open_root
from qbhook.errors import ConfigError, OrphansRefused
from qbhook.move.orphans import walk_roots
from tests.helpers import make_config, write
from tests.swap import swap


@pytest.fixture
def nested(tmp_path):
    """(config whose stash pool is the plain folder <tmp>/mnt/tank/stash, the outside folder
    <tmp>/elsewhere laid out like <tmp>/mnt/tank with a victim file where a seeded file would be)."""
    cfg = make_config(tmp_path / "cat.sqlite", tmp_path / "mnt/tank/stash", tmp_path / "pool")
    for p in cfg.pools:
        p.seeding_root.mkdir(parents=True)
    rel = cfg.primary.seeding_root.relative_to(tmp_path / "mnt/tank")
    write(tmp_path / "elsewhere" / rel / "victim.txt", b"not ours")
    return cfg, tmp_path / "elsewhere"


def _listed(walk) -> list[str]:
    return [e.path for e in walk.entries]


def test_a_folder_above_the_pool_root_swapped_for_a_symlink_is_refused_naming_it(nested):
    cfg, elsewhere = nested
    tank = cfg.primary.path.parent
    swap(tank, elsewhere)  # mv tank tank.aside; ln -s elsewhere tank: the pool path now leads outside
    with pytest.raises(FolderRefused, match=f"^{tank} is a symlink to {elsewhere}: refusing") as e:
        os.close(open_root(cfg.primary.path))
    assert e.value.folder == str(tank)
    with pytest.raises(OrphansRefused) as o:
        walk_roots(cfg)  # was: the victim listed as an orphan of the stash seeding root
    assert "\n" not in o.value.message and str(tank) in o.value.message


def test_the_pool_root_itself_swapped_for_a_symlink_is_refused(nested):
    cfg, elsewhere = nested
    swap(cfg.primary.path, elsewhere / "stash")
    with pytest.raises(OrphansRefused, match="symlink"):
        walk_roots(cfg)


def test_a_pool_root_swapped_for_another_real_folder_after_the_first_open_is_refused_by_the_pin(nested):
    cfg, elsewhere = nested
    pool = cfg.primary.path
    write(cfg.primary.seeding_root / "ours.bin", b"ours")
    assert [os.path.basename(p) for p in _listed(walk_roots(cfg))] == ["ours.bin"]  # the first open pins it
    os.rename(pool, pool.with_name("stash.old"))
    os.rename(elsewhere / "stash", pool)  # a real folder now, no symlink anywhere: only the pin sees it
    with pytest.raises(FolderRefused, match=f"^pool root {pool} is no longer the folder it was at start"):
        os.close(open_root(pool))
    with pytest.raises(OrphansRefused, match="no longer the folder it was at start"):
        walk_roots(cfg)
    os.rename(pool, elsewhere / "stash")
    os.rename(pool.with_name("stash.old"), pool)  # the pinned folder back at its name: accepted again
    assert [os.path.basename(p) for p in _listed(walk_roots(cfg))] == ["ours.bin"]


def test_plain_folder_pools_in_tmp_work_and_raise_no_warning(nested):
    cfg, _elsewhere = nested
    write(cfg.cold.seeding_root / "x.bin")
    for _ in range(2):  # a second open lands on the pinned folder
        assert [os.path.basename(p) for p in _listed(walk_roots(cfg))] == ["x.bin"]
    assert config.path_warnings(cfg) == []  # /tmp is sticky and root's; the folders below it root's


def test_config_check_warns_naming_a_folder_above_a_pool_root_others_can_write(nested, tmp_path):
    cfg, _elsewhere = nested
    tank = cfg.primary.path.parent
    os.chmod(tank, 0o777)
    os.chown(tank.parent, 1000, 0)
    warnings = config.path_warnings(cfg)
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert f"{tank.parent} (owned by uid 1000)" in warnings[0] and f"{tank} (writable by others)" in warnings[1]
    os.chmod(tank, 0o1777)  # sticky, and the pool root is root's: only root may rename it
    assert len(config.path_warnings(cfg)) == 1
    os.chown(cfg.primary.path, 1000, 0)  # sticky, but its owner may rename the pool root
    assert "sticky but the entry is not root's" in config.path_warnings(cfg)[1]


def test_a_pool_path_through_a_symlink_is_refused_at_load_saying_to_configure_the_real_path(tmp_path):
    real = tmp_path / "mnt/data"
    real.mkdir(parents=True)
    os.symlink(real, tmp_path / "data")
    with pytest.raises(ConfigError) as e:
        make_config(tmp_path / "cat.sqlite", tmp_path / "data/stash", tmp_path / "pool")
    msg = e.value.message
    assert "\n" not in msg and f"{tmp_path}/data is a symlink to {real}: configure the real path" in msg
    assert e.value.hint == f"e.g. path: {real}/stash"


def test_a_pool_remounted_with_a_new_device_number_is_followed_but_a_plain_folder_there_is_not(tmp_path):
    """serve keeps running across a pool exported and imported again: the same mount point, a
    filesystem mounted there again with a new st_dev (integration/test_catalog_zfs.py's remount
    test failed on the pin alone). Only root can mount, so the pin follows a mount point that
    comes back with its root's inode number; a plain folder left there (the pool unmounted, or a
    folder a writer renamed in) is still refused."""
    import subprocess

    from qbhook import dirfd

    pool, aside = tmp_path / "stash", tmp_path / "aside"
    pool.mkdir()
    aside.mkdir()

    def mount(where):
        cmd = ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(where)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount tmpfs (needs root): {r.stderr.strip()}")

    mount(pool)
    try:
        os.close(dirfd.open_root(pool))  # pinned: a mount point
        first = os.stat(pool).st_dev
        # the first filesystem moved aside keeps its device number, so the next one gets another
        subprocess.run(["mount", "--move", str(pool), str(aside)], check=True)
        mount(pool)
        assert os.stat(pool).st_dev != first
        os.close(dirfd.open_root(pool))  # followed: a mount point again, the same root inode number
        subprocess.run(["umount", str(pool)], check=True)
        with pytest.raises(dirfd.FolderRefused):  # the bare folder under it: not a mount point
            dirfd.open_root(pool)
    finally:
        for where in (pool, aside):
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
