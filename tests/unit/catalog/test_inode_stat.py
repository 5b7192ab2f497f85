"""One representation of what the catalog keeps of a file's lstat (``store.InodeStat``), in one
order: the line find prints, the scan's parsed stat, a catalog row and its signature, and the
stat a forked relinker sends back all hold the same nine fields the same way."""

from __future__ import annotations

import os
import pickle
import stat

from qbhook.catalog import scan as scanner
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog, InodeStat, stat_fields, stat_signature
from qbhook.move import fsops
from tests.helpers import seeded_catalog, write


def test_a_find_line_parses_back_to_the_inode_stat_it_was_printed_from():
    st = InodeStat(2049, 7, 3, -(10**9) + 5, 2 * 10**9 + 1, 2, stat.S_IFREG | 0o640, 1000, 2000)
    line = Catalog.find_line(st, b"/a b/c")
    assert line == b"2049 7 3 -1.0000000050 2.0000000010 2 640 1000 2000 /a b/c"
    assert scanner._parse_find_line(line) == (b"/a b/c", st)
    assert Catalog.find_line(tuple(st), b"/a b/c") == line  # its plain tuple prints alike


def test_the_python_walks_signature_of_a_file_is_stat_signature_of_its_catalog_row(tmp_path, monkeypatch):
    monkeypatch.setattr(scanner, "FIND_WALK", False)  # the walk's inline signature, not find's lines
    with seeded_catalog(tmp_path) as (cfg, cat, stash):
        f = write(stash / "data/media/torrents/seeding/t/a.bin", b"abc")
        scan_pool(cat, cfg.primary, cfg.scan)
        st = os.lstat(f)
        fs = cat.fs_for_path(f)
        row = InodeStat(fs, *stat_fields(st)[1:])
        assert cat.stat_rows([os.fsencode(f)]) == {os.fsencode(f): tuple(row)}
        assert cat.load_pool_signatures("stash") == {os.fsencode(f): stat_signature(row)}
        assert stat_signature(row) == stat_signature(tuple(row))
        again = scan_pool(cat, cfg.primary, cfg.scan)  # the walk's inline hash: equal, so unchanged
        assert (again.files_seen, again.added, again.changed) == (1, 0, 0)


def test_a_relinked_names_stat_comes_back_from_a_child_as_its_inode_stat(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    st = os.lstat(f)
    wire = pickle.loads(pickle.dumps(fsops.relinked_to_parent({b"/a": fsops.Relinked(st, None)})))
    (after, carry) = fsops.relinked_from_child(wire)[b"/a"]
    assert type(after) is InodeStat and carry is None
    assert after._asdict() == {k: getattr(st, k) for k in InodeStat._fields}
