"""R24: where qBittorrent puts a torrent when ATM is turned on or off, and the guard that refuses
either direction unless nothing would move (an ATM move is libtorrent's Overwrite mode: it
copies into the shared inodes of hardlinked library files).

Semantics read from qBittorrent's source: ``SessionImpl::categorySavePath`` (5.0+, with
subcategories on, a subcategory without a path lies below its parent's; 4.5/4.6 join the full
name to the default save path) and ``TorrentImpl::setAutoTMMEnabled`` / ``adjustStorageLocation``
(either direction moves unless libtorrent's storage is already at the target and no move runs).
"""

from __future__ import annotations

import pytest

from qbhook.errors import UnsafeOperation
from tests.unit.qbt import recorded as rec
from tests.unit.qbt.fakeqbt import FakeQbt
from tests.unit.qbt.test_client import make_client, rsps  # noqa: F401

SUBCATS = {
    "tv": {"name": "tv", "savePath": "/data/tvroot"},
    "tv/hd": {"name": "tv/hd", "savePath": ""},
    "tv/hd/x": {"name": "tv/hd/x", "savePath": ""},
    "tv/rel": {"name": "tv/rel", "savePath": "relsub"},
    "a": {"name": "a", "savePath": ""},
    "a/b": {"name": "a/b", "savePath": ""},
}
ON = {"use_subcategories": True}


def _show(**changes) -> dict:
    return {**rec.V4_SHOW, **changes}


def _fake(rsps, api=rec.V5_API, prefs=ON, cats=SUBCATS, torrents=None, **kw):  # noqa: F811
    return FakeQbt(rsps, api=api, categories=cats, preferences=prefs, torrents=torrents or [rec.V4_SHOW], **kw)


# -- where ATM puts a category's torrents -------------------------------------------


def test_5x_subcategory_without_path_lies_below_its_parent(rsps):  # noqa: F811
    _fake(rsps)
    cats = make_client().categories()
    assert cats["tv/hd"].save_path == "/stash/data/tvroot/hd"
    assert cats["tv/hd/x"].save_path == "/stash/data/tvroot/hd/x"  # recursively
    assert cats["tv/rel"].save_path == "/stash/data/downloads/relsub"  # own relative path: the default's
    assert cats["a/b"].save_path == "/stash/data/downloads/a/b"  # parent implicit too


@pytest.mark.parametrize(
    ("api", "prefs"),
    [(rec.V4_API, ON), (rec.V5_API, {"use_subcategories": False})],
    ids=["4.x-ignores-parents", "5.x-subcategories-off"],
)
def test_subcategory_by_full_name_below_the_default(rsps, api, prefs):  # noqa: F811
    _fake(rsps, api=api, prefs=prefs)
    assert make_client().category_save_path("tv/hd") == "/stash/data/downloads/tv/hd"


@pytest.mark.parametrize(
    ("api", "prefs", "cats"),
    [
        (rec.V5_API, {}, SUBCATS),  # the preference not reported
        ("2.10.4", ON, SUBCATS),  # 5.0 beta: the rule changed among 2.10 builds
        (rec.V5_API, ON, {"tv/hd": {"name": "tv/hd", "savePath": ""}}),  # parent not listed
    ],
    ids=["no-preference", "api-2.10", "parent-unlisted"],
)
def test_subcategory_path_unknown_is_not_predicted(rsps, api, prefs, cats):  # noqa: F811
    _fake(rsps, api=api, prefs=prefs, cats=cats)
    c = make_client()
    assert c.categories()["tv/hd"].save_path == ""
    with pytest.raises(UnsafeOperation, match="cannot tell"):
        c.category_save_path("tv/hd")


def test_atm_on_refused_where_qbittorrent_puts_the_subcategory_below_its_parent(rsps):  # noqa: F811
    t = _show(category="tv/hd", save_path="/data/downloads/tv/hd", content_path="/data/downloads/tv/hd/Show.S01")
    fake = _fake(rsps, torrents=[t])
    with pytest.raises(UnsafeOperation, match="/stash/data/tvroot/hd"):
        make_client().set_auto_management(rec.SHOW_ID, True, category_save_path="/stash/data/downloads/tv/hd")
    assert fake.calls("torrents/setAutoManagement") == []


def test_atm_on_allowed_at_the_parent_derived_path(rsps):  # noqa: F811
    t = _show(category="tv/hd", save_path="/data/tvroot/hd", content_path="/data/tvroot/hd/Show.S01")
    fake = _fake(rsps, torrents=[t])
    make_client().set_auto_management(rec.SHOW_ID, True, category_save_path="/stash/data/tvroot/hd")
    assert fake.calls("torrents/setAutoManagement") == [{"hashes": rec.SHOW_ID, "enable": "True"}]


@pytest.mark.parametrize(
    "changes",
    [{"content_path": "/data/old/Show.S01"}, {"state": "moving"}],
    ids=["earlier-move-failed", "moving"],
)
def test_atm_on_refused_where_the_data_is_not_at_the_save_path(rsps, changes):  # noqa: F811
    # 4.5.2 sets the save path before its move; a failed move leaves the data where it was
    fake = FakeQbt(rsps, torrents=[_show(**changes)])
    with pytest.raises(UnsafeOperation, match="move"):
        make_client().set_auto_management(rec.SHOW_ID, True, category_save_path="/stash/data/torrents")
    assert fake.calls("torrents/setAutoManagement") == []


# -- turning ATM off -----------------------------------------------------------------


def test_atm_off_refused_where_the_data_is_not_at_the_category_path(rsps):  # noqa: F811
    # under ATM qBittorrent reports its category's path; the data stayed where a move failed
    fake = FakeQbt(rsps, torrents=[_show(auto_tmm=True, content_path="/data/old/Show.S01")])
    c = make_client()
    with pytest.raises(UnsafeOperation) as e:
        c.set_auto_management(rec.SHOW_ID, False)
    assert "/stash/data/old" in e.value.message and "/stash/data/torrents" in e.value.message
    assert rec.SHOW_ID in e.value.message and "\n" not in e.value.message
    assert fake.calls("torrents/setAutoManagement") == []
    assert "/stash/data/old" in c.atm_off_refusal(rec.SHOW_ID)


@pytest.mark.parametrize(
    "changes",
    [
        {"state": "moving"},  # adjustStorageLocation moves again whenever a move is in progress
        {"progress": 0.5, "amount_left": 9, "download_path": "/data/incoming/tv"},  # target unknown
        {"has_metadata": False},
    ],
    ids=["moving", "unfinished-with-download-path", "no-metadata"],
)
def test_atm_off_refused_when_it_cannot_be_told_nothing_moves(rsps, changes):  # noqa: F811
    fake = FakeQbt(rsps, torrents=[_show(auto_tmm=True, **changes)])
    with pytest.raises(UnsafeOperation, match="refusing to turn ATM off"):
        make_client().set_auto_management(rec.SHOW_ID, False)
    assert fake.calls("torrents/setAutoManagement") == []


@pytest.mark.parametrize(
    ("torrent", "files"),
    [
        (_show(auto_tmm=True), rec.V4_SHOW_FILES),  # a root folder
        (_show(auto_tmm=True, download_path="/data/incoming/tv"), rec.V4_SHOW_FILES),  # finished: save path
        ({**rec.V4_HYBRID, "auto_tmm": True}, [{**rec.V4_SHOW_FILES[0], "name": "one.bin"}]),  # one file
        (  # several files, no common folder: the content path is the storage
            _show(auto_tmm=True, content_path="/data/torrents"),
            [{**f, "name": f["name"].split("/")[1]} for f in rec.V4_SHOW_FILES],
        ),
    ],
    ids=["root-folder", "finished-with-download-path", "single-file", "no-root-folder"],
)
def test_atm_off_allowed_when_the_data_is_already_there(rsps, torrent, files):  # noqa: F811
    fake = FakeQbt(rsps, torrents=[torrent], files={torrent["hash"]: files})
    c = make_client()
    assert c.atm_off_refusal(torrent["hash"]) is None
    c.set_auto_management(torrent["hash"], False)
    assert fake.calls("torrents/setAutoManagement") == [{"hashes": torrent["hash"], "enable": "False"}]
