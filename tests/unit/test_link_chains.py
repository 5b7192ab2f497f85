"""A symlink chain longer than the kernel follows, planted where qbhook resolves links: one line or
nothing, never a RecursionError (R74: ``os.path.realpath`` recursed once per link)."""

from __future__ import annotations

import os

from qbhook.catalog import library_links
from qbhook.move import orphans
from tests.unit.test_fsops import tmpfs  # noqa: F401
from tests.unit.test_orphans_purge import world  # noqa: F401


def _chain(folder, n: int = 3000) -> str:
    for i in range(n):
        os.symlink(f"c{i + 1}" if i + 1 < n else "/nowhere", os.path.join(folder, f"c{i}"))
    return os.path.join(folder, "c0")


def test_an_orphan_walks_real_path_of_a_long_chain_is_the_path_itself(tmp_path):
    head = _chain(tmp_path)
    assert orphans._real(head) == head  # a chain no client can follow reaches nothing


def test_an_orphan_walks_real_path_still_resolves_an_ordinary_link(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    assert orphans._real(str(tmp_path / "alias" / "x")) == str(tmp_path / "real" / "x")


def test_a_library_symlink_heading_a_long_chain_reaches_nothing(tmp_path):
    head = _chain(tmp_path)
    got: tuple[dict, dict, dict] = ({}, {}, {})
    assert library_links._reach(head, head, got) is False
    assert got == ({}, {}, {})


def test_a_magnets_save_path_through_two_links_padded_with_dots_keeps_its_folder(world):  # noqa: F811
    # R78: resolve_links' component budget gave up on targets padded with "./" (the kernel follows
    # them), the real save folder went unprotected, and a magnet's data was quarantined.
    from tests.helpers import write
    from tests.unit.test_orphans_magnet import magnet

    w = world
    data = write(os.path.join(w.seed_s, "incoming", "Some.Name/a.mkv"), b"old data" * 100)
    os.symlink("./" * 1100 + "incoming", os.path.join(w.seed_s, "hop2"))
    os.symlink("./" * 1100 + "hop2", os.path.join(w.seed_s, "alias"))
    save = os.path.join(w.seed_s, "alias")
    assert os.path.samefile(save, os.path.join(w.seed_s, "incoming"))  # the kernel follows it
    w.qbt.add(magnet(save))
    assert data not in {o.path for o in orphans.find_orphans(w.cfg, [w.qbt]).orphans}
    assert not orphans.quarantine(w.cfg, w.cat, [w.qbt]).held and os.path.exists(data)
