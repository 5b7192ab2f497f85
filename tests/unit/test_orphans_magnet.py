"""A torrent without metadata keeps its whole save and download paths (orphans._in_use_folders).

R42: re-added from a bare magnet (no name yet: its name is its info hash) in the grace period,
a torrent protected only ``<save>/<info hash>``: the purge deleted the held data it will want,
and the orphan walk would have quarantined it."""

from __future__ import annotations

import os

import pytest

from qbhook.move import orphans
from qbhook.paths import is_within
from tests.helpers import write
from tests.unit.rtorrent.conftest import FakeRtorrent, wired
from tests.unit.test_executor import FakeTorrent
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)
from tests.unit.test_orphans_purge import expire, quarantine_one, world  # noqa: F401  (fixtures)

H3 = "c" * 40


def magnet(save: str, name: str = H3, download: str = "") -> FakeTorrent:
    """A torrent added from a magnet link, no peers yet: it lists no files (metaDL)."""
    return FakeTorrent(H3, name, save, [], progress=0.0, has_metadata=False, download_path=download)


@pytest.mark.parametrize("name", ["Gone.2019", H3], ids=["named", "bare"])
def test_a_purge_keeps_the_held_data_of_a_torrent_readded_from_a_magnet(world, name):  # noqa: F811
    w = world
    _path, at = quarantine_one(w)
    w.qbt.add(magnet(os.path.join(w.seed_s, "old"), name))
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt])
    assert os.path.exists(at) and [k.held for k in out.kept] == [at]


class MagnetRt(FakeRtorrent):
    """rTorrent 0.9.8 holding one magnet's item while it fetches the metadata: a one-byte file
    '<HEX>.meta' in the folder it was added to, d.is_meta 1. Answers by command name."""

    def __init__(self, save: str):
        from qbhook.clients.rtorrent import _ITEM_FIELDS
        from tests.unit.rtorrent.test_adapter import ROW_SINGLE

        self.meta = H3.upper() + ".meta"
        self.item = dict(zip((cmd for cmd, _ in _ITEM_FIELDS), ROW_SINGLE, strict=False))
        self.item.update({"d.hash": H3.upper(), "d.name": self.meta, "d.directory": save, "d.is_meta": 1})
        self.item.update({"d.size_bytes": 1, "d.completed_bytes": 0, "d.left_bytes": 1, "d.complete": 0})

    def _one(self, method, *params):
        if method == "d.multicall2":
            return [[self.item[field.split("=")[0]] for field in params[2:]]]
        return [[self.meta, 1, 1, 0, 1]] if method == "f.multicall" else self.item[method]


def test_a_purge_keeps_the_held_data_of_a_torrent_readded_from_a_magnet_in_rtorrent(world):  # noqa: F811
    # R97: read as having metadata, the magnet's item kept its '<HEX>.meta' alone, not its save
    # folder, and the purge deleted the held data the torrent will want.
    w = world
    _path, at = quarantine_one(w)
    rt = wired(MagnetRt(os.path.join(w.seed_s, "old")))
    expire(w)
    out = orphans.purge_expired(w.cfg, w.cat, lambda: [w.qbt, rt])
    assert os.path.exists(at) and [k.held for k in out.kept] == [at]


@pytest.mark.parametrize("where", ["save", "download"])
def test_nothing_below_a_magnet_s_save_or_download_path_is_an_orphan(world, where):  # noqa: F811
    w = world
    base = os.path.join(w.seed_s, "incoming")
    path = write(os.path.join(base, "Some.Name/a.mkv"), b"old data" * 100)
    save, download = (base, "") if where == "save" else (os.path.join(w.seed_s, "elsewhere"), base)
    w.qbt.add(magnet(save, download=download))
    report = orphans.find_orphans(w.cfg, [w.qbt])
    assert path not in {o.path for o in report.orphans}
    assert orphans.quarantine(w.cfg, w.cat, [w.qbt]).held == [] and os.path.exists(path)
    w.qbt.t.pop(H3)  # gone again: the file is an orphan once more
    assert path in {o.path for o in orphans.find_orphans(w.cfg, [w.qbt]).orphans}


@pytest.mark.parametrize("onto", ["/", "pool root"])
def test_a_magnet_whose_save_path_holds_a_whole_seeding_root_is_named_not_silent(world, capsys, onto):  # noqa: F811
    """R92: a bare magnet keeps its whole save path (``_in_use_folders``); one saved through a
    symlink onto ``/`` (or onto a folder above the seeding roots) keeps every file below every
    root, and the listing said only "0 reclaimable". It keeps them still (only ever more
    protection), but says which torrent and place, one line per root, and in --json."""
    from qbhook.cli.orphans import _show_report

    w = world
    path = write(os.path.join(w.seed_s, "old/Gone/a.mkv"), b"old data" * 100)
    link = os.path.join(str(w.stash), "everything")
    os.symlink("/" if onto == "/" else str(w.stash), link)
    w.qbt.add(magnet(link))

    report = orphans.find_orphans(w.cfg, [w.qbt])

    assert path not in {o.path for o in report.orphans}
    roots = {str(r) for p in w.cfg.pools for r in p.seeding_roots if onto == "/" or is_within(r, w.stash)}
    kept = report.as_dict()["kept_whole_roots"]
    assert {k["root"] for k in kept} == roots and {k["place"] for k in kept} == {link}
    assert all(k["by"] == f"torrent {H3} (no metadata yet)" for k in kept)
    _show_report(report.as_dict(), False)
    err = capsys.readouterr().err
    assert f"torrent {H3} (no metadata yet) keeps {link} whole" in err and w.seed_s in err


def test_a_magnet_saved_below_the_seeding_root_names_no_root(world):  # noqa: F811
    w = world
    w.qbt.add(magnet(os.path.join(w.seed_s, "incoming")))
    assert orphans.find_orphans(w.cfg, [w.qbt]).as_dict()["kept_whole_roots"] == []
