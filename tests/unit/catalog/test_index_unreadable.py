"""The torrent index meets unreadable client records (finding 3): one bad record is kept as not
known (``map_error`` naming the field, logged), the other torrents sync on, and the sweep does
not plan from the index (it lists live and refuses there, as for an unmappable torrent)."""

from __future__ import annotations

import pytest

from qbhook.catalog.indexer import snapshot_view, sync_client
from qbhook.catalog.store import Catalog
from qbhook.catalog.torrents import TorrentIndex
from qbhook.errors import UnreadableRecord
from tests.unit.catalog.test_torrent_index import H1, H2, H3, FakeQbt, _raw

# -- the torrent index: one bad record is kept as not known, the rest proceed ------------------


@pytest.fixture
def cat(tmp_path):
    c = Catalog.open(tmp_path / "c.sqlite")
    yield c
    c.close()


@pytest.mark.parametrize(
    "bad",
    [
        {"size": None},
        {"progress": "x"},
        {"infohash_v1": "zz"},
        # past SQLite's 64-bit INTEGER: stopped the whole sync with an OverflowError (review 3, s19)
        {"size": 2**64},
        {"added_on": 10**400},  # past a float's range: OverflowError inside the finiteness check
    ],
)
def test_one_unreadable_record_is_kept_as_not_known_and_the_sync_goes_on(cat, bad, caplog):
    q = FakeQbt()
    q.answers = [{"rid": 1, "full_update": True, "torrents": {H1: _raw("R1", **bad), H2: _raw("R2")}}]
    rep = sync_client(cat, q)
    field = next(iter(bad))
    assert len(rep.unmappable) == 1 and H1 in rep.unmappable[0] and field in rep.unmappable[0]
    assert any(H1 in r.message and field in r.message for r in caplog.records)  # logged, one line
    rows = {t.hash: t for t in TorrentIndex(cat.conn).torrents()}
    assert rows[H2].save_path == "/host/seed" and rows[H2].map_error is None
    assert rows[H1].save_path is None and field in rows[H1].map_error
    # the sweep does not plan from it: it lists live (and refuses there)
    assert snapshot_view(cat, [q], [rep]) is None


def test_a_record_keyed_by_something_not_a_hash_is_skipped_and_reported(cat):
    q = FakeQbt()
    q.answers = [{"rid": 1, "full_update": True, "torrents": {"all": _raw("R1"), H2: _raw("R2")}}]
    rep = sync_client(cat, q)
    assert len(rep.unmappable) == 1 and "'all'" in rep.unmappable[0]
    assert set(_hash for _hash in (t.hash for t in TorrentIndex(cat.conn).torrents())) == {H2}
    assert "all" not in q.files_asked
    assert snapshot_view(cat, [q], [rep]) is None


def test_an_unreadable_file_list_is_reported_and_the_others_are_stored(cat):
    q = FakeQbt()
    q.answers = [{"rid": 1, "full_update": True, "torrents": {H1: _raw("R1"), H3: _raw("R3")}}]
    real = q.files_of_id

    def files_of_id(h):
        if h == H1:
            raise UnreadableRecord(f"torrent {h}: file 0: unreadable record: size = None")
        return real(h)

    q.files_of_id = files_of_id
    rep = sync_client(cat, q)
    assert len(rep.unmappable) == 1 and H1 in rep.unmappable[0]
    assert TorrentIndex(cat.conn).files("q", H3) and snapshot_view(cat, [q], [rep]) is None


@pytest.mark.parametrize(
    "answer",
    [{"rid": "x", "torrents": {}}, {"rid": 2, "torrents": [H1]}, {"rid": 2, "torrents": {H1: "x"}}, ["x"]],
)
def test_a_maindata_answer_of_the_wrong_shape_is_one_line_and_changes_nothing(cat, answer):
    q = FakeQbt()
    q.answers = [{"rid": 1, "full_update": True, "torrents": {H1: _raw("R1")}}, answer]
    sync_client(cat, q)
    before = [(t.hash, t.save_path, t.gone_at) for t in TorrentIndex(cat.conn).torrents(include_gone=True)]
    with pytest.raises(UnreadableRecord, match="^q: sync/maindata: an answer of the wrong shape"):
        sync_client(cat, q)
    assert [(t.hash, t.save_path, t.gone_at) for t in TorrentIndex(cat.conn).torrents(include_gone=True)] == before
