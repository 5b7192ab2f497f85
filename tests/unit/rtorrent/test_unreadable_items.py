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
HOSTILE = pytest.mark.parametrize("hostile", [NAME, DIRECTORY], ids=["d.name", "d.directory"])


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
