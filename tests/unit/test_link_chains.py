"""A symlink chain longer than the kernel follows, planted where qbhook resolves links: one line or
nothing, never a RecursionError (R74: ``os.path.realpath`` recursed once per link)."""

from __future__ import annotations

import os

from qbhook.catalog import library_links
from qbhook.move import orphans


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
