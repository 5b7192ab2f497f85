"""One rTorrent item that does not read is that item's problem, not its client's (R70).

A single file's d.name of ``../x`` (libtorrent checks ``name`` for '..' and '/', not
``name.utf-8``, which ``encoding.add = utf8`` makes d.name) failed the whole listing, so one
hostile torrent stopped the index of every item of the client. The item is unreadable
(``UnreadableItems``, an UnreadableRecord carrying the items that read): the index keeps it as
not known (``map_error``, never gone) and syncs the others, as a qBittorrent record; orphans and
the sweep still refuse on it, so its files never look unreferenced. So is a multi-file item's
d.directory that ends with such a name (R97)."""

from __future__ import annotations

import re

import pytest

from qbhook.catalog.indexer import snapshot_view, sync_client
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex
from qbhook.clients.model import is_relative_path
from qbhook.errors import OrphansRefused, UnreadableItems, UnreadableRecord
from tests.unit.rtorrent.test_adapter import HM, HS, ROW_MULTI, ROW_SINGLE, _client, _row

# (rows, the hostile item, the other one, what of it does not read)
NAME = ([_row(ROW_SINGLE, name="../x"), ROW_MULTI], HS, HM, "d.name = '../x'")
# R97: a multi-file item's d.directory ends with its name.utf-8, unchecked too: '..' failed the
# whole listing (a PathMapError), and with it all automation of the client.
DIRECTORY = (
    [_row(ROW_MULTI, name="..", directory="/data/torrents/.."), ROW_SINGLE],
    HM,
    HS,
    "d.directory = '/data/torrents/..'",
)
# R100: rTorrent appends the d.name "." or "" to the folder the item was added to, and libtorrent's
# set_root_dir strips a trailing '/': the item's content folder read as the shared download folder
# itself (or its "."), its save path as the parent, outside the path map (a PathMapError that failed
# the whole listing) or, with an identity map, a content folder holding every other torrent's data.
DOT = (
    [_row(ROW_MULTI, name=".", directory="/data/torrents/."), ROW_SINGLE],
    HM,
    HS,
    "d.directory = '/data/torrents/.'",
)
EMPTY = ([_row(ROW_MULTI, name="", directory="/data/torrents"), ROW_SINGLE], HM, HS, "d.directory = '/data/torrents'")
HOSTILE = pytest.mark.parametrize(
    "hostile", [NAME, DIRECTORY, DOT, EMPTY], ids=["d.name", "d.directory", "name-dot", "name-empty"]
)


@HOSTILE
@pytest.mark.parametrize("listing", ["torrents", "torrents_with_files"])
def test_a_hostile_name_leaves_the_other_items_listed(listing, hostile):
    rows, bad, good, field = hostile
    c = _client(rows)
    with pytest.raises(UnreadableItems) as err:
        getattr(c, listing)()
    assert isinstance(err.value, UnreadableRecord)  # every reader that cannot take it apart refuses
    text = str(err.value)
    assert text.startswith(f"rTorrent 'rt': item {bad}: unreadable record: {field}") and "\n" not in text
    rest = [t if listing == "torrents" else t[0] for t in err.value.rest]
    assert [t.hash for t in rest] == [good]
    assert list(err.value.items) == [bad]
    (t,) = c.torrents(hashes=[good])  # asked only for the readable one: it reads
    assert t.hash == good


def test_a_multi_file_items_files_and_relocation_refuse_its_hostile_directory_as_unreadable():
    rows, bad, _good, field = DIRECTORY
    c = _client(rows)
    for call in (lambda: c.files(bad), lambda: c.find(bad), lambda: c.set_location(bad, "/x", require_existing=False)):
        with pytest.raises(UnreadableRecord, match=f"item {bad}: unreadable record: {field}"):
            call()
    c = _client([_row(ROW_MULTI, directory="/"), ROW_SINGLE])  # a content folder of / says no save path either
    with pytest.raises(UnreadableItems, match=f"item {HM}: unreadable record: d.directory = '/' "):
        c.torrents()


@HOSTILE
def test_the_index_keeps_the_hostile_item_as_not_known_and_syncs_the_others(tmp_path, hostile):
    rows_in, bad, good, field = hostile
    cat = Catalog.open(tmp_path / "c.sqlite")
    try:
        c = _client(rows_in)
        for _ in range(2):  # the first sync (batched) and a later one (torrents)
            rep = sync_client(cat, c)
            assert len(rep.unmappable) == 1 and bad in rep.unmappable[0] and field in rep.unmappable[0]
            rows = {t.hash: t for t in TorrentIndex(cat.conn).torrents()}
            assert rows[good].map_error is None and rows[good].save_path == "/stash/data/torrents"
            assert field in rows[bad].map_error and rows[bad].gone_at is None and rows[bad].save_path is None
            assert TorrentIndex(cat.conn).files("rt", good)
            assert snapshot_view(cat, [c], [rep]) is None  # the sweep lists live, and refuses there
    finally:
        cat.close()


@HOSTILE
def test_orphans_still_refuse_so_its_files_never_look_unreferenced(hostile):
    from qbhook.move.orphans import references

    rows, bad, _good, field = hostile
    with pytest.raises(OrphansRefused, match=rf"client rt cannot be listed .*{bad}.*{re.escape(field)}"):
        references([_client(rows)])


@pytest.mark.parametrize("path", ["../../etc/x", "a/../../x"])
def test_a_multi_file_path_out_of_its_folder_never_failed_the_listing(path):
    # Kept as spelled, never joined: the planner blocks its group (file_blockers), orphans reads it.
    from qbhook.move.orphans import references

    c = _client(files={HM.upper(): [[path, 10, 1, 1, 1]], HS.upper(): [["single.mkv", 200000, 1, 13, 13]]})
    listed = {t.hash: fs for t, fs in c.torrents_with_files()}
    assert set(listed) == {HM, HS} and not is_relative_path(listed[HM][0].name)
    assert references([c])


@pytest.mark.parametrize(
    "name, directory",
    [
        (".", "/data/torrents/."),  # rTorrent's "/data/torrents" + "/" + "."
        ("", "/data/torrents"),  # "/data/torrents/", its '/' stripped (FileList::set_root_dir)
        ("/", "/data/torrents"),  # "/data/torrents//", alike
        ("Show.X", "/data/torrents/"),  # a trailing '/': no folder of its own either
        ("a/b", "/data/torrents/a/b"),  # a save path below the folder it was added to, a/ not its own
    ],
)
@pytest.mark.parametrize("path_map", ["mapped", "identity"])
def test_a_multi_file_items_folder_that_is_not_its_own_is_that_items_alone(name, directory, path_map):
    from qbhook.pathmap import PathMap

    c = _client(
        [_row(ROW_MULTI, name=name, directory=directory), ROW_SINGLE],
        path_map=None if path_map == "mapped" else PathMap(),
    )
    for listing in ("torrents", "torrents_with_files"):
        with pytest.raises(UnreadableItems, match=f"item {HM}: unreadable record: d.directory = ") as err:
            getattr(c, listing)()
        assert [(t if listing == "torrents" else t[0]).hash for t in err.value.rest] == [HS]
    for call in (lambda: c.find(HM), lambda: c.files(HM), lambda: c.set_location(HM, "/x", require_existing=False)):
        with pytest.raises(UnreadableRecord, match=f"item {HM}: unreadable record: d.directory"):
            call()


def test_a_save_path_outside_the_path_map_is_that_items_alone(tmp_path):
    # A PathMapError from one item failed torrents() and torrents_with_files() for every item: the
    # index synced none of them. Every reader but the index still refuses (orphans below).
    from qbhook.errors import PathMapError
    from qbhook.move.orphans import references

    c = _client([_row(ROW_MULTI, directory="/elsewhere/Show.X"), ROW_SINGLE])
    why = "save path: rTorrent 'rt' path /elsewhere is under no path_map prefix (/data) (add a path_map entry"
    for listing in ("torrents", "torrents_with_files"):
        with pytest.raises(UnreadableItems, match=re.escape(f"torrent {HM} ('Show.X'): {why}")) as err:
            getattr(c, listing)()
        assert [(t if listing == "torrents" else t[0]).hash for t in err.value.rest] == [HS]
    with pytest.raises(PathMapError, match=f"torrent {HM}"):  # asked for alone: its own error, as before
        c.find(HM)
    with pytest.raises(OrphansRefused, match=rf"client rt cannot be listed .*{HM}.*under no path_map prefix"):
        references([c])
    cat = Catalog.open(tmp_path / "c.sqlite")
    try:
        for _ in range(2):
            rep = sync_client(cat, c)
            assert len(rep.unmappable) == 1 and "under no path_map prefix" in rep.unmappable[0]
            rows = {t.hash: t for t in TorrentIndex(cat.conn).torrents()}
            assert rows[HS].map_error is None and "under no path_map prefix" in rows[HM].map_error
    finally:
        cat.close()
