"""RtorrentClient on recorded rTorrent 0.9.8 answers: mapping, paths, relocation calls, errors."""

from __future__ import annotations

import inspect
import os
import re
import xmlrpc.client

import pytest

from qbhook.clients.model import STABLE_STATES
from qbhook.clients.port import PORT_METHODS, ClientPort, Pausing
from qbhook.clients.qbt.client import QbtClient
from qbhook.clients.rtorrent import (
    RtItem,
    RtorrentClient,
    event_rc_lines,
    normalize_rt_state,
)
from qbhook.clients.scgi import ScgiUnreachable
from qbhook.errors import (
    BadRequest,
    PathMapError,
    QbtError,
    RtorrentError,
    RtorrentUnreachable,
    UnknownTorrent,
    UnreadableRecord,
    UnsafeOperation,
    VerificationFailed,
)
from qbhook.pathmap import PathMap
from tests.unit.rtorrent.conftest import FakeRtorrent, wired

HM = "da7416fba531f00aaef182555dd82eeafb3a22fe"
HS = "bbca7120a1a0ddef230d4b7e263e64f62614aa9b"

# d.multicall2 rows as rtorrent 0.9.8 answered them on the test bed (fields in _ITEM_FIELDS order),
# client paths under /data (the container's view).
ROW_MULTI = [
    HM.upper(),
    "Show.X",
    "/data/torrents/Show.X",
    1,
    1,
    1,
    1,
    0,
    0,
    1,
    301000,
    301000,
    0,
    "tv",
    "",
    1796032163,
    1796032163,
    0,
    0,
    "Tracker: [Couldn't connect to server]",
    2,
    0,
]
ROW_SINGLE = [
    HS.upper(),
    "single.mkv",
    "/data/torrents",
    0,
    1,
    1,
    1,
    0,
    0,
    1,
    200000,
    200000,
    0,
    "",
    "",
    1796032163,
    1796032163,
    0,
    0,
    "Tracker: [Couldn't connect to server]",
    1,
    0,
]
FILES_MULTI = [["a.mkv", 300000, 1, 19, 19], ["sub/b.srt", 1000, 0, 0, 1]]
FILES_SINGLE = [["single.mkv", 200000, 1, 13, 13]]


def _row(base, **changes):
    from qbhook.clients.rtorrent import _ITEM_FIELDS

    names = [cmd.removeprefix("d.").replace(".", "_") if arg is None else "tags" for cmd, arg in _ITEM_FIELDS]
    row = list(base)
    for key, value in changes.items():
        row[names.index(key)] = value
    return row


class FakeRpc(FakeRtorrent):
    """Answers like rTorrent from a table of items; records every call."""

    def __init__(self, rows, files=None):
        self.rows = {r[0]: list(r) for r in rows}
        self.files = files or {}
        self.calls: list[tuple] = []
        self.down = 0  # the next N calls find no socket

    def call(self, method, *params):
        self.calls.append((method, *params))
        if self.down:
            self.down -= 1
            raise ScgiUnreachable("/run/rt.sock: Connection refused")
        return super().call(method, *params)

    def _one(self, method, *params):
        from qbhook.clients.rtorrent import _ITEM_FIELDS

        if method == "d.multicall2":
            return [list(r) for r in self.rows.values()]
        target = params[0]
        if method == "f.multicall":
            if target not in self.rows:
                raise xmlrpc.client.Fault(-501, "Could not find info-hash.")
            return self.files.get(target, [])
        if target not in self.rows:
            raise xmlrpc.client.Fault(-501, "Could not find info-hash.")
        row = self.rows[target]
        fields = [c for c, _ in _ITEM_FIELDS]
        if method in fields:
            return row[fields.index(method)]
        if method in (
            "d.stop",
            "d.close",
            "d.start",
            "d.check_hash",
            "d.resume",
            "d.pause",
            "d.custom1.set",
            "d.custom.set",
            "d.directory_base.set",
            "d.save_full_session",
        ):
            if method == "d.directory_base.set":
                row[fields.index("d.directory")] = params[1]
            if method == "d.custom.set":
                row[fields.index("d.custom")] = params[2]
            return 0
        raise xmlrpc.client.Fault(-506, f"Method '{method}' not defined")


def _client(rows=(ROW_MULTI, ROW_SINGLE), files=None, path_map=None, **kw):
    rpc = FakeRpc(rows, files if files is not None else {HM.upper(): FILES_MULTI, HS.upper(): FILES_SINGLE})
    return wired(rpc, path_map if path_map is not None else PathMap([("/data", "/stash/data")]), **kw)


# -- states -------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, state, raw",
    [
        ({}, "stalledUP", "started"),
        ({"up_rate": 512}, "uploading", "started"),
        ({"completed_bytes": 1000, "left_bytes": 300000}, "stalledDL", "started"),
        ({"completed_bytes": 1000, "left_bytes": 300000, "down_rate": 9}, "downloading", "started"),
        ({"state": 0}, "stoppedUP", "stopped"),
        ({"state": 0, "completed_bytes": 0, "left_bytes": 301000, "complete": 0}, "stoppedDL", "stopped"),
        # started but closed is paused (R26): a check alone would end resuming it
        ({"is_open": 0, "is_active": 0}, "stoppedUP", "paused"),
        ({"is_open": 0, "is_active": 0, "state": 0}, "stoppedUP", "closed"),
        ({"is_active": 0}, "stoppedUP", "paused"),
        ({"hashing": 3}, "checkingUP", "hashing:3"),
        ({"hashing": 1, "complete": 0}, "checkingDL", "hashing:1"),
        ({"hashing": 3, "hashing_failed": 1}, "error", "hash_failed"),
    ],
)
def test_states_map_onto_the_qbittorrent_vocabulary(changes, state, raw):
    item = RtItem.from_row(_row(ROW_MULTI, **changes))
    assert (normalize_rt_state(item), item.raw_state) == (state, raw)
    # The planner moves only torrents in a known stable state (a whitelist): every resting rTorrent
    # state must be one, or no rTorrent item would ever move.
    assert (state in STABLE_STATES) == (state not in ("checkingUP", "checkingDL", "error"))


def test_the_complete_flag_alone_does_not_make_an_item_complete():
    # d.complete is a stored flag rTorrent updates only when a check ends; the bytes decide
    c = _client([_row(ROW_MULTI, completed_bytes=0, left_bytes=301000, state=0)])
    t = c.torrent(HM)
    assert not t.is_complete and t.progress == 0.0 and t.state == "stoppedDL"


@pytest.mark.parametrize("changes", [{"is_open": 0, "is_active": 0, "state": 0}, {"is_open": 0, "is_active": 0}])
def test_a_closed_item_keeps_its_count_for_planning_and_says_it_is_stale(changes):
    """R26: a closed item's count is the one it had when it closed (a check cancelled while queued
    leaves a relocated one at a stale 100 %): it says so for a relocation's wait, and is still
    complete for planning (ruTorrent's Stop closes items: they stay plannable)."""
    t = _client([_row(ROW_MULTI, **changes)]).torrent(HM)
    assert t.is_complete and t.progress == 1.0 and t.progress_stale
    assert not _client().torrent(HM).progress_stale  # open: a live count


def test_tracker_messages_are_not_errors():
    assert _client().torrent(HM).state == "stalledUP"


def _magnet_row(directory="/data/torrents", **changes):
    """A magnet's item while rTorrent 0.9.8 fetches its metadata: one file ``<HEX>.meta`` of one byte in
    the folder it was added to (libtorrent's ``DownloadConstructor::parse_magnet_uri``), d.is_meta 1."""
    meta = HS.upper() + ".meta"
    fields = dict(name=meta, directory=directory, size_bytes=1, completed_bytes=0, left_bytes=1, complete=0)
    return _row(ROW_SINGLE, **{**fields, "is_meta": 1, **changes}), {HS.upper(): [[meta, 1, 1, 0, 1]]}


def test_a_magnet_fetching_its_metadata_has_none():
    # It was listed with metadata: a one-byte item, stable, whose save folder orphans did not keep (R97).
    row, files = _magnet_row()
    c = _client([ROW_MULTI, row], files)
    got = {t.hash: t for t in c.torrents()}
    assert (got[HS].has_metadata, got[HS].is_stable, got[HM].has_metadata) == (False, False, True)
    assert {t.hash: t.has_metadata for t, _ in c.torrents_with_files()} == {HM: True, HS: False}
    assert c.find(HS).has_metadata is False


class OldRpc(FakeRpc):
    """An rTorrent before 0.9.7: no d.is_meta. d.multicall2 refuses the whole call for it (its
    parse_command), system.multicall that call (xmlrpc-c's unknown method)."""

    def _one(self, method, *params):
        if method == "d.multicall2":
            if "d.is_meta=" in params:
                raise xmlrpc.client.Fault(-503, 'Command "d.is_meta" does not exist.')
            return [list(r[:-1]) for r in self.rows.values()]
        if method == "d.is_meta":
            raise xmlrpc.client.Fault(-506, "Method 'd.is_meta' not defined")
        return super()._one(method, *params)


@pytest.mark.parametrize("first", ["torrents", "find"])
def test_an_rtorrent_without_is_meta_lists_and_knows_a_magnet_by_its_name(first):
    # d.is_meta came in 0.9.7: asked of 0.9.6 it failed every listing.
    row, files = _magnet_row()
    c = _client([ROW_MULTI, _row(ROW_SINGLE, hash=HM[::-1].upper())], files)
    c._rpc = OldRpc([ROW_MULTI, row], {**files, HM.upper(): FILES_MULTI})
    if first == "find":
        assert (c.find(HS).has_metadata, c.find(HM).has_metadata) == (False, True)
    assert {t.hash: t.has_metadata for t in c.torrents()} == {HM: True, HS: False}
    assert {t.hash: t.has_metadata for t, _ in c.torrents_with_files()} == {HM: True, HS: False}
    assert (c.find(HS).has_metadata, c.item(HM).is_meta) == (False, False)
    asked = [p for m, *p in c._rpc.calls if m == "d.multicall2" and "d.is_meta=" in p]
    asked += [c for m, *p in c._rpc.calls if m == "system.multicall" for c in p[0] if c["methodName"] == "d.is_meta"]
    assert len(asked) == 1  # once: then it is known not to have it


def test_a_name_like_a_magnets_is_no_magnet_where_is_meta_says_so():
    row, files = _magnet_row(is_meta=0)
    assert _client([row], files).torrent(HS).has_metadata is True


# -- paths and names -------------------------------------------------------------


def test_save_path_holds_the_content_for_both_kinds_in_host_paths():
    c = _client()
    m, s = c.torrent(HM), c.torrent(HS.upper())
    assert (m.save_path, m.content_path, m.root_path) == (
        "/stash/data/torrents",
        "/stash/data/torrents/Show.X",
        "/stash/data/torrents/Show.X",
    )
    assert (m.client_save_path, m.client_content_path) == ("/data/torrents", "/data/torrents/Show.X")
    assert (s.save_path, s.content_path, s.root_path) == ("/stash/data/torrents", "/stash/data/torrents/single.mkv", "")
    assert [(f.name, f.size, f.progress, f.wanted) for f in c.files(HM)] == [
        ("Show.X/a.mkv", 300000, 1.0, True),
        ("Show.X/sub/b.srt", 1000, 0.0, False),
    ]
    assert [f.name for f in c.files(HS)] == ["single.mkv"]
    assert (m.infohash_v1, m.infohash_v2, m.hashes) == (HM, None, frozenset({HM}))


def test_a_renamed_item_folder_names_the_files_and_the_relocation(tmp_path):
    # cross-seed style: the same torrent loaded at a folder not called d.name
    c = _client([_row(ROW_MULTI, directory="/data/torrents/Show.X.REPACK")], path_map=PathMap())
    assert c.torrent(HM).content_path == "/data/torrents/Show.X.REPACK"
    assert c.files(HM)[0].name == "Show.X.REPACK/a.mkv"
    c.set_location(HM, "/pool/torrents", require_existing=False)
    assert ("d.directory_base.set", HM.upper(), "/pool/torrents/Show.X.REPACK") in _multicalls(c)


def test_an_unmappable_directory_is_an_error_naming_the_item():
    # Asked for alone, a PathMapError; in a listing, that item's (test_unreadable_items, R100).
    c = _client([_row(ROW_MULTI, directory="/elsewhere/Show.X")])
    with pytest.raises(PathMapError, match=f"torrent {HM} \\('Show.X'\\)"):
        c.find(HM)
    with pytest.raises(UnreadableRecord, match=f"torrent {HM} \\('Show.X'\\): save path: .* under no path_map prefix"):
        c.torrents()


def test_listing_filters_and_batched_listing_agree():
    c = _client()
    assert [t.hash for t in c.torrents(hashes=[HS.upper()])] == [HS]
    assert [t.hash for t in c.torrents(category="tv")] == [HM]
    assert c.torrents(hashes=[]) == []
    batched = {t.hash: files for t, files in c.torrents_with_files()}
    assert batched == {HM: c.files(HM), HS: c.files(HS)}
    # one d.multicall2 and one system.multicall for all files
    c._rpc.calls.clear()
    c.torrents_with_files()
    assert [m for m, *_ in c._rpc.calls] == ["d.multicall2", "system.multicall"]


def test_an_item_erased_between_the_two_listing_calls_is_left_out():
    c = _client()
    rpc = c._rpc
    real = rpc.call

    def erase_after_list(method, *params):
        out = real(method, *params)
        if method == "d.multicall2":
            del rpc.rows[HS.upper()]
        return out

    rpc.call = erase_after_list
    assert [t.hash for t, _ in c.torrents_with_files()] == [HM]


# -- relocation ------------------------------------------------------------------


def _multicalls(c):
    return [(x["methodName"], *x["params"]) for m, *p in c._rpc.calls if m == "system.multicall" for x in p[0]]


def test_relocation_is_one_multicall_stop_close_set_base_check(tmp_path):
    (tmp_path / "Show.X").mkdir()
    c = _client(path_map=PathMap([("/data", str(tmp_path))]), rows=[_row(ROW_MULTI, directory="/data/old/Show.X")])
    c.set_location(HM, str(tmp_path))
    last = c._rpc.calls[-1]
    assert last[0] == "system.multicall"
    assert [(x["methodName"], *x["params"]) for x in last[1]] == [
        ("d.stop", HM.upper()),
        ("d.close", HM.upper()),
        ("d.directory_base.set", HM.upper(), "/data/Show.X"),  # the CLIENT's spelling
        ("d.check_hash", HM.upper()),
        # on disk at once: rTorrent killed after the old links went came back at the old place
        ("d.save_full_session", HM.upper()),
    ]


def test_single_file_relocation_sets_the_folder_holding_the_file(tmp_path):
    c = _client(path_map=PathMap([("/data", str(tmp_path))]), rows=[_row(ROW_SINGLE, directory="/data/old")])
    (tmp_path / "new").mkdir()
    c.set_location(HS, str(tmp_path / "new"))
    assert ("d.directory_base.set", HS.upper(), "/data/new") in _multicalls(c)


def test_relocation_refuses_a_missing_destination_and_a_running_check(tmp_path):
    c = _client(path_map=PathMap())
    with pytest.raises(UnsafeOperation, match="does not exist on the host"):
        c.set_location(HM, str(tmp_path))  # tmp_path/Show.X is missing
    c = _client([_row(ROW_MULTI, hashing=3)], path_map=PathMap())
    with pytest.raises(UnsafeOperation, match="hash check is running"):
        c.set_location(HM, str(tmp_path), require_existing=False)
    assert not any(m in ("d.stop", "d.close") for m, *_ in _multicalls(c))


def test_a_failed_check_is_not_running_the_item_relocates_and_pauses(tmp_path):
    """0.9.8 leaves d.hashing at 3 when a check fails (hash_done returns before resetting it):
    refusing then, a rollback could never move the item back from where its check failed."""
    c = _client([_row(ROW_MULTI, hashing=3, hashing_failed=1, state=0, is_active=0)], path_map=PathMap())
    assert c.torrent(HM).state == "error"
    c.set_location(HM, str(tmp_path), require_existing=False)
    assert [m for m, *_ in _multicalls(c)][-5:] == [
        "d.stop",
        "d.close",
        "d.directory_base.set",
        "d.check_hash",
        "d.save_full_session",
    ]
    c.pause(HM)
    assert [m for m, *_ in _multicalls(c)][-3:] == ["d.start", "d.pause", "d.save_full_session"]


@pytest.mark.parametrize(
    "changes, paused",
    [
        ({"is_active": 0}, True),
        ({}, False),
        ({"state": 0, "is_active": 0}, False),
        ({"is_open": 0, "is_active": 0}, True),  # closed but started: a check's end resumes it (R26)
        ({"is_open": 0, "is_active": 0, "state": 0}, False),
    ],
    ids=["paused", "started", "stopped", "closed-started", "closed-stopped"],
)
def test_only_a_started_inactive_item_says_paused(changes, paused):
    t = _client([_row(ROW_MULTI, **changes)]).torrent(HM)
    assert (t.is_paused, t.is_stopped) == (paused, t.state.startswith("stopped"))


def test_pause_is_one_multicall_start_pause_save_and_refused_during_a_check():
    c = _client([_row(ROW_MULTI, state=0, is_active=0)])
    c.pause(HM)
    assert [(x["methodName"], *x["params"]) for x in c._rpc.calls[-1][1]] == [
        ("d.start", HM.upper()),
        ("d.pause", HM.upper()),  # in the same request: rTorrent's event loop never runs it in between
        ("d.save_full_session", HM.upper()),
    ]
    c = _client([_row(ROW_MULTI, state=0, is_active=0, hashing=3)])
    with pytest.raises(UnsafeOperation, match="hash check is running"):
        c.pause(HM)  # started during a check, rTorrent resumes it when the check ends
    assert not any(m == "d.start" for m, *_ in _multicalls(c))
    assert isinstance(c, Pausing) and not isinstance(QbtClient("q", "http://localhost:1"), Pausing)


@pytest.mark.parametrize(
    "changes, sent",
    [
        ({"state": 0, "is_active": 0}, ["d.start", "d.save_full_session"]),
        ({"is_active": 0}, ["d.start", "d.resume", "d.save_full_session"]),  # paused
        ({"is_active": 0, "hashing": 3}, ["d.start", "d.save_full_session"]),  # the check's end resumes it
    ],
    ids=["stopped", "paused", "checking"],
)
def test_start_is_one_multicall_saved_at_once(changes, sent):
    """R43: the started state on disk at once, or rTorrent killed before its periodic save brings
    the item back stopped while qbhook's journal says it runs."""
    c = _client([_row(ROW_MULTI, **changes)])
    c.start(HM)
    assert [(x["methodName"], *x["params"]) for x in c._rpc.calls[-1][1]] == [(m, HM.upper()) for m in sent]
    c.stop(HM)
    assert [x["methodName"] for x in c._rpc.calls[-1][1]] == ["d.stop", "d.save_full_session"]


def test_wait_checked_returns_when_hashing_ends():
    c = _client([_row(ROW_MULTI, hashing=3, state=0)])
    polls = []

    def sleep(s):
        polls.append(s)
        if len(polls) == 3:
            c._rpc.rows[HM.upper()][7] = 0  # d.hashing

    c._sleep = sleep
    t = c.wait_checked(HM, budget=60)
    assert len(polls) == 3 and t.state == "stoppedUP" and t.is_complete


def test_wait_checked_fails_on_a_failed_check_and_on_an_exhausted_budget():
    c = _client([_row(ROW_MULTI, hashing=3, hashing_failed=1)])
    with pytest.raises(VerificationFailed, match="failed at /data/torrents/Show.X"):
        c.wait_checked(HM)
    now = [0.0]
    c = _client([_row(ROW_MULTI, hashing=3, completed_bytes=1000)], clock=lambda: now[0])
    c._sleep = lambda s: now.__setitem__(0, now[0] + 10)
    with pytest.raises(VerificationFailed, match="did not end within its budget \\(1000 of 301000"):
        c.wait_checked(HM)  # budget 30 s + size/50 MB/s
    assert 30 <= now[0] <= 40


# -- labels, tags, no-ATM ----------------------------------------------------------


def test_labels_are_percent_encoded_like_rutorrent_and_tags_live_in_a_custom_key():
    c = _client()
    c.set_label(HM, "tv, 4K")
    assert _multicalls(c) == [("d.custom1.set", HM.upper(), "tv%2C%204K"), ("d.save_full_session", HM.upper())]
    c._rpc.rows[HM.upper()][13] = "tv%2C%204K"
    assert c.torrent(HM).category == "tv, 4K"
    c._rpc.calls.clear()
    c.add_tags(HM, ["b", "a"])
    c.add_tags(HM, ["a"])  # already there: no write
    c.remove_tags(HM, ["b"])
    writes = [x for x in _multicalls(c) if x[0] in ("d.custom.set", "d.save_full_session")]
    # each write is saved to the session in the same request, or a crash would forget it
    assert writes == [
        ("d.custom.set", HM.upper(), "qbhook_tags", "a, b"),
        ("d.save_full_session", HM.upper()),
        ("d.custom.set", HM.upper(), "qbhook_tags", "a"),
        ("d.save_full_session", HM.upper()),
    ]
    assert c.torrent(HM).tags == frozenset({"a"})
    with pytest.raises(BadRequest, match="cannot contain ','"):
        c.add_tags(HM, ["a,b"])


def test_no_incomplete_folder_and_no_atm():
    c = _client()
    c.set_download_path(HM, "")  # clearing: nothing to clear
    c.set_auto_management(HM, False)  # off: it is never on
    with pytest.raises(UnsafeOperation, match="no incomplete-data folder"):
        c.set_download_path(HM, "/stash/data/incomplete")
    with pytest.raises(UnsafeOperation, match="no automatic torrent management"):
        c.set_auto_management(HM, True, category_save_path="/stash/data/torrents")


# -- errors ----------------------------------------------------------------------


def test_unknown_and_v2_hashes():
    c = _client()
    absent = "ab" * 20
    assert c.find(absent) is None and c.find("cd" * 32) is None
    for action in (
        c.torrent,
        c.files,
        c.stop,
        c.start,
        c.recheck,
        lambda h: c.set_label(h, "x"),
        lambda h: c.add_tags(h, ["x"]),
        lambda h: c.set_location(h, "/x", require_existing=False),
    ):
        with pytest.raises(UnknownTorrent, match=f"rTorrent 'rt' has no torrent {absent}"):
            action(absent)
    with pytest.raises(BadRequest):
        c.torrent("all")  # never reaches rTorrent as a target
    assert all("all" not in map(str, call) for call in c._rpc.calls)


def test_a_faults_text_is_quoted_in_one_bounded_line():
    """R80: a fault's text is another program's, quoted as qBittorrent's error body is (one rule,
    ``numbers.said``): its line breaks collapsed, its start, the cut marked."""
    c = _client()
    text = "Method\n   'd.multicall2'\r\n\tnot defined " + "x" * 5000
    c._rpc._one = lambda *a: (_ for _ in ()).throw(xmlrpc.client.Fault(-506, text))
    with pytest.raises(RtorrentError, match=r"refused: Method 'd.multicall2' not defined x+… \(fault -506\)$") as err:
        c.torrents()
    assert len(str(err.value)) < 300


def test_other_faults_are_rtorrent_errors_and_a_dead_socket_is_unreachable():
    c = _client()
    c._rpc._one = lambda *a: (_ for _ in ()).throw(xmlrpc.client.Fault(-506, "Method 'd.multicall2' not defined"))
    with pytest.raises(RtorrentError, match="not defined \\(fault -506\\)") as err:
        c.torrents()
    assert not isinstance(err.value, UnknownTorrent) and isinstance(err.value, QbtError)

    c = _client(retries=3)
    c._rpc.down = 2  # rtorrent coming back up: the third attempt answers
    assert c.torrent(HM).hash == HM
    c._rpc.down = 3
    with pytest.raises(RtorrentUnreachable, match="no answer") as err:
        c.torrent(HM)
    assert err.value.exit_code == 4 and "is rtorrent running" in str(err.value)


# -- the port ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", [QbtClient, RtorrentClient])
def test_both_adapters_satisfy_the_port_with_its_signatures(cls):
    for name in PORT_METHODS:
        want = inspect.signature(getattr(ClientPort, name))
        got = inspect.signature(getattr(cls, name))
        assert list(got.parameters) == list(want.parameters), (cls.__name__, name)
        for p in want.parameters.values():
            assert got.parameters[p.name].kind == p.kind, (cls.__name__, name, p.name)


def test_an_instance_is_a_client_port():
    assert isinstance(_client(), ClientPort)


def test_forgetting_rtorrents_state_lag_asks_it_nothing():
    """Each executor run calls ``forget_state_lag`` on every client (clients/port.py): rTorrent's
    answers are live, its lag no setting of it, so there is nothing to read again."""
    c = _client()
    c.forget_state_lag()
    assert c.state_lag_s == 0.0 and c._rpc.calls == []


# -- events ------------------------------------------------------------------------


def test_event_lines_call_the_hook_with_qbittorrents_argv_order():
    added, finished = event_rc_lines("/hooks/qbt-hook.sh", instance="seedbox-rt")
    assert added.startswith('method.set_key = event.download.inserted_new,qbhook_added,"execute.nothrow.bg=')
    argv = finished.split('execute.nothrow.bg=', 1)[1].rstrip('"').split(",")
    assert argv == [
        "env",
        "QBHOOK_INSTANCE=seedbox-rt",
        "/hooks/qbt-hook.sh",
        "finished",
        "$d.hash=",
        "-",
        "$d.hash=",
        "$d.name=",
        "$d.custom1=",
        "$d.custom=qbhook_tags",
        "$d.base_path=",
        "$d.base_path=",
        "$d.directory=",
        "$d.size_files=",
        "$d.size_bytes=",
    ]


@pytest.mark.parametrize(
    "script, instance",
    [
        ("/hooks/my hook.sh", ""),
        ("/hooks/a,b.sh", ""),
        ('/hooks/"x".sh', ""),
        ("hooks/qbt-hook.sh", ""),
        ("/hooks/qbt-hook.sh", "rt;rm -rf /"),
        ("/hooks/qbt-hook.sh", "a b"),
    ],
)
def test_event_lines_refuse_what_the_rc_syntax_cannot_carry(script, instance):
    with pytest.raises(UnsafeOperation):
        event_rc_lines(script, instance=instance)


# -- config entries ------------------------------------------------------------------


def test_from_config_builds_a_client_with_its_path_map():
    from qbhook.clients.rtorrent import from_config

    c = from_config(
        {"name": "seedbox", "url": "scgi://127.0.0.1:5000", "timeout": 7, "path_map": {"/data": "/stash/data"}}
    )
    assert (c.name, c._rpc.sockaddr, c._rpc.timeout) == ("seedbox", ("127.0.0.1", 5000), 7.0)
    assert c.path_map == PathMap([("/data", "/stash/data")])
    with pytest.raises(RtorrentError, match="not an SCGI address"):
        from_config({"name": "x", "address": "rt.sock"})


@pytest.mark.parametrize("code", ["x", [1], 1e309, 2**70, None, True])
def test_a_malformed_fault_code_is_one_line_not_a_traceback(code):
    # int(answer["faultCode"]) raised ValueError / TypeError / OverflowError; inside a rollback it
    # abandoned the rollback halfway with a traceback.
    from qbhook.errors import QbhookError

    c = _client()
    real = c._rpc.call

    def hostile(method, *params):
        if method == "system.multicall":
            return [{"faultCode": code, "faultString": "no"} for _ in params[0]]
        return real(method, *params)

    c._rpc.call = hostile
    with pytest.raises(QbhookError, match="malformed fault in its answer"):
        c.torrent(HM)
    with pytest.raises(QbhookError, match="malformed fault in its answer"):
        c.torrents_with_files()


@pytest.mark.parametrize("flag", ["0", "1", [1], 2, None])
def test_files_read_the_multi_file_flag_by_the_item_rows_rule(flag):
    # files() took any truthy answer for "multi-file": "0" (a string) put every file of a single-file
    # item under a folder named after its save path's last part, a place it never was.
    from qbhook.errors import UnreadableRecord

    c = _client()
    real = c._rpc.call

    def hostile(method, *params):
        answer = real(method, *params)
        if method == "system.multicall" and params[0][0]["methodName"] == "d.is_multi_file":
            answer[0] = [flag]
        return answer

    c._rpc.call = hostile
    with pytest.raises(UnreadableRecord, match="d.is_multi_file"):
        c.files(HS)
    c._rpc.call = real
    assert [f.name for f in c.files(HS)] == ["single.mkv"]
    assert [f.name for f in c.files(HM)] == ["Show.X/a.mkv", "Show.X/sub/b.srt"]


# -- names that are not UTF-8 ------------------------------------------------------


def _latin1_item(tmp_path, folder=b"Caf\xe9.Show", file=b"a.mkv"):
    """A multi-file item whose real folder or file name is latin-1, as rTorrent 0.9.8's XML-RPC sends
    it (object_to_xmlrpc): every byte >= 0x80 of a string that is not UTF-8 becomes '?'."""
    real = os.fsencode(tmp_path) + b"/" + folder
    os.makedirs(real)
    with open(real + b"/" + file, "wb") as fh:
        fh.write(b"x" * 10)
    mangle = lambda b: bytes(c if c < 0x80 else 0x3F for c in b).decode()  # noqa: E731
    row = _row(ROW_MULTI, name=mangle(folder), directory=mangle(real))
    return _client([row], {HM.upper(): [[mangle(file), 10, 1, 1, 1]]}, path_map=PathMap())


@pytest.mark.parametrize(
    "folder, file, field",
    [(b"Caf\xe9.Show", b"a.mkv", "d.directory"), (b"Show.X", b"caf\xe9.mkv", "f.path")],
)
def test_a_name_rtorrent_sent_with_question_marks_is_unreadable_and_orphans_refuses(tmp_path, folder, file, field):
    # The '?' path does not exist: taken as read, orphans protected it alone and called the real
    # (latin-1) file reclaimable: quarantined, then purged.
    from qbhook.errors import OrphansRefused, UnreadableRecord
    from qbhook.move.orphans import references

    c = _latin1_item(tmp_path, folder, file)
    with pytest.raises(UnreadableRecord, match=f"item {HM}.*{field} = .*not UTF-8"):
        c.torrents_with_files()
    if field == "d.directory":
        with pytest.raises(UnreadableRecord, match=field):
            c.torrents()
    else:
        with pytest.raises(UnreadableRecord, match=field):
            c.files(HM)
    with pytest.raises(OrphansRefused, match=f"client rt cannot be listed.*{HM}") as e:
        references([c])
    assert "\n" not in str(e.value.message)


def test_a_real_question_mark_in_a_name_reads(tmp_path):
    c = _latin1_item(tmp_path, b"What?.Show", b"why?.mkv")
    ((info, files),) = c.torrents_with_files()
    assert info.content_path == f"{tmp_path}/What?.Show" and [f.name for f in files] == ["What?.Show/why?.mkv"]
    assert [f.name for f in c.files(HM)] == ["What?.Show/why?.mkv"]


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_real_question_mark_beside_a_name_rtorrent_spells_alike_is_unreadable(tmp_path, where):
    # R97: 'caf?.mkv' (a real '?') and the item's latin-1 b'caf\xe9.mkv' in one folder (or folders
    # 'Caf?.Show' and b'Caf\xe9.Show' side by side) both read 'caf?.mkv': as the spelled path was
    # there, it was taken as read and the latin-1 file, the item's only copy, was a reclaimable orphan.
    from qbhook.errors import OrphansRefused, UnreadableRecord
    from qbhook.move.orphans import references

    folder, file = (b"Show.X", b"caf\xe9.mkv") if where == "file" else (b"Caf\xe9.Show", b"a.mkv")
    c = _latin1_item(tmp_path, folder, file)
    twin = os.fsencode(tmp_path) + b"/" + folder.replace(b"\xe9", b"?")
    os.makedirs(twin, exist_ok=True)
    with open(twin + b"/" + file.replace(b"\xe9", b"?"), "wb") as fh:
        fh.write(b"y" * 10)
    field = "f.path" if where == "file" else "d.directory"
    with pytest.raises(UnreadableRecord, match=f"item {HM}.*{field} = .*the host has .*not UTF-8"):
        c.torrents_with_files()
    with pytest.raises(UnreadableRecord, match=field):
        c.files(HM) if where == "file" else c.torrents()
    with pytest.raises(OrphansRefused, match=f"client rt cannot be listed.*{HM}"):
        references([c])


def test_a_mangled_file_below_a_utf8_folder_with_a_real_question_mark_is_unreadable(tmp_path):
    # d.directory 'Café?' is UTF-8, sent as it is (5 characters, 6 bytes); f.path b'caf\xe9.mkv' is not.
    from qbhook.errors import UnreadableRecord

    folder = tmp_path / "Caf\u00e9?"
    folder.mkdir()
    (folder / "sub").mkdir()
    with open(os.fsencode(folder) + b"/sub/caf\xe9.mkv", "wb") as fh:
        fh.write(b"x" * 10)
    c = _client([_row(ROW_MULTI, directory=str(folder))], {HM.upper(): [["sub/caf?.mkv", 10, 1, 1, 1]]}, PathMap())
    with pytest.raises(UnreadableRecord, match=r"f\.path = .*the host has 'caf\\udce9\.mkv'"):
        c.torrents_with_files()


def test_two_files_reported_under_one_name_are_unreadable(tmp_path):
    # b'caf\xe9.mkv' and b'caf\xe8.mkv', not on disk yet (no name beside them to tell): both 'caf?.mkv'.
    (tmp_path / "Show.X").mkdir()
    row = _row(ROW_MULTI, directory=f"{tmp_path}/Show.X")
    c = _client([row], {HM.upper(): [["caf?.mkv", 10, 1, 0, 1], ["caf?.mkv", 10, 1, 0, 1]]}, path_map=PathMap())
    with pytest.raises(UnreadableRecord, match=r"file 1: unreadable record: f\.path = 'Show\.X/caf\?\.mkv' \(another"):
        c.torrents_with_files()
    with pytest.raises(UnreadableRecord, match="another file"):
        c.files(HM)


def test_a_question_mark_in_the_path_maps_own_folder_is_not_rtorrents(tmp_path):
    # The host folder the path map puts in place of /data is not a name rTorrent spelled.
    host = tmp_path / "wh?t"
    (host / "Show?X").mkdir(parents=True)
    (host / "Show?X" / "a.mkv").write_bytes(b"x" * 10)
    os.makedirs(os.fsencode(tmp_path) + b"/wh\xe9t")
    row = _row(ROW_MULTI, name="Show?X", directory="/data/Show?X")
    c = _client([row], {HM.upper(): [["a.mkv", 10, 1, 1, 1]]}, path_map=PathMap([("/data", str(host))]))
    ((info, files),) = c.torrents_with_files()
    assert info.content_path == f"{host}/Show?X" and [f.name for f in files] == ["Show?X/a.mkv"]


def test_a_real_question_mark_in_an_absent_item_reads_and_the_others_are_listed(tmp_path):
    # "What If?.S01" added stopped (nothing on disk yet): its '?' path is absent with no name spelled
    # so next to it. Read as unreadable, it failed the listing of every item, so the snapshot, the
    # worker, the replan and repair of every client, for a name that is UTF-8.
    from qbhook.move.orphans import references

    (tmp_path / "single.mkv").write_bytes(b"x")
    (tmp_path / "What If!.S01").mkdir()  # a neighbour that rTorrent would not spell so
    row = _row(ROW_MULTI, name="What If?.S01", directory=f"{tmp_path}/What If?.S01")
    other = _row(ROW_SINGLE, directory=str(tmp_path))
    files = {HM.upper(): [["e01?.mkv", 10, 1, 0, 1]], HS.upper(): [["single.mkv", 1, 1, 1, 1]]}
    c = _client([row, other], files, path_map=PathMap())
    assert sorted(t.name for t in c.torrents()) == ["What If?.S01", "single.mkv"]
    assert sorted(t.name for t, _ in c.torrents_with_files()) == ["What If?.S01", "single.mkv"]
    assert [f.name for f in c.files(HM)] == ["What If?.S01/e01?.mkv"]
    assert references([c])  # orphans reads it: its absent files are referenced, nothing refused


def test_an_absent_file_with_a_real_question_mark_reads(tmp_path):
    # A file not downloaded (priority 0, or lost) in a folder that is there.
    d = tmp_path / "Show.X"
    d.mkdir()
    (d / "a.mkv").write_bytes(b"x" * 10)
    row = _row(ROW_MULTI, directory=str(d))
    c = _client([row], {HM.upper(): [["a.mkv", 10, 1, 1, 1], ["Why?.nfo", 100, 0, 0, 1]]}, path_map=PathMap())
    ((_, files),) = c.torrents_with_files()
    assert [f.name for f in files] == ["Show.X/a.mkv", "Show.X/Why?.nfo"]


def test_a_listing_lists_a_folder_once_for_all_its_absent_question_mark_items(tmp_path, monkeypatch):
    # 200 items added stopped in one folder, each "What If?" (nothing on disk yet): the folder was
    # listed again for each item, 200 listings of a folder of thousands of names at every sweep.
    from qbhook.clients import rtorrent

    hashes = [f"{n:040x}" for n in range(1, 201)]
    rows = [
        _row(ROW_MULTI, hash=h.upper(), name=f"What If?.S{n}", directory=f"{tmp_path}/What If?.S{n}")
        for n, h in enumerate(hashes)
    ]
    files = {h.upper(): [[f"e01?.{n}.mkv", 10, 1, 0, 1]] for n, h in enumerate(hashes)}
    c = _client(rows, files, path_map=PathMap())
    listings = []
    real = os.listdir
    monkeypatch.setattr(rtorrent.os, "listdir", lambda p: (listings.append(p), real(p))[1])
    assert len(c.torrents()) == 200
    assert listings == [os.fsencode(tmp_path)]
    listings.clear()
    assert len(c.torrents_with_files()) == 200
    assert listings == [
        os.fsencode(tmp_path)
    ]  # the items' folders are absent: their files' first missing part is the same


@pytest.mark.parametrize(
    "real, sent, why",
    [
        # one name not UTF-8 mangles the whole string: the UTF-8 "Café" above it too
        ("Caf\u00e9/X\udcff", "Caf??/X?", "a UTF-8 name, which rTorrent spells with '?' too when another name"),
        ("Show\x01X", "Show?X", "a UTF-8 name rTorrent's XML-RPC does not send as it is (a control character"),
    ],
)
def test_a_mangled_directory_is_found_above_its_first_missing_part(tmp_path, real, sent, why):
    from qbhook.errors import UnreadableRecord

    os.makedirs(os.fsencode(f"{tmp_path}/{real}"))
    row = _row(ROW_MULTI, name=sent.rsplit("/", 1)[-1], directory=f"{tmp_path}/{sent}")
    c = _client([row], {HM.upper(): [["a.mkv", 10, 1, 1, 1]]}, path_map=PathMap())
    with pytest.raises(UnreadableRecord, match=r"d\.directory = .*the host has .* there, " + re.escape(why)):
        c.torrents()


@pytest.mark.parametrize(
    "beside, reads",
    [
        ("Wha\u00e9t.mkv", True),  # UTF-8: rTorrent sends a d.name of it as it is, never 'Wha??t.mkv'
        (b"Wha\xe9\xe9t.mkv", False),  # latin-1: it could be the item's (R97)
        ("Wha\U0001f600.mkv", False),  # UTF-8, but past U+FFFD: xmlrpc-c refuses it, rTorrent sends '????'
    ],
)
def test_a_real_question_mark_beside_a_name_rtorrent_would_send_as_it_is_reads(tmp_path, beside, reads):
    # R100: a real 'Wha??t.mkv' beside a UTF-8 'Whaét.mkv' made the item unreadable (orphans and the
    # sweep refused for the whole client), saying the UTF-8 name was not UTF-8. d.name is one string:
    # rTorrent spells it with '?' only when it is not UTF-8 itself.
    from qbhook.move.orphans import references

    sent = "Wha??t.mkv" if reads else ("Wha??t.mkv" if isinstance(beside, bytes) else "Wha????.mkv")
    (tmp_path / sent).write_bytes(b"x" * 10)
    with open(os.fsencode(tmp_path) + b"/" + os.fsencode(beside), "wb") as fh:
        fh.write(b"y" * 10)
    row = _row(ROW_SINGLE, name=sent, directory=str(tmp_path), size_bytes=10, completed_bytes=10)
    c = _client([row], {HS.upper(): [[sent, 10, 1, 1, 1]]}, path_map=PathMap())
    if reads:
        assert [t.content_path for t in c.torrents()] == [f"{tmp_path}/{sent}"]
        assert [f.name for t, fs in c.torrents_with_files() for f in fs] == [sent]
        assert [f.name for f in c.files(HS)] == [sent]
        assert references([c])
        return
    why = (
        "a name that is not UTF-8"
        if isinstance(beside, bytes)
        else "a UTF-8 name rTorrent's XML-RPC does not send as it is"
    )
    with pytest.raises(UnreadableRecord, match=f"d\\.name = .* there, {why}"):
        c.torrents()


def test_a_utf8_name_beside_a_folder_counts_when_a_name_below_in_its_string_is_not_utf8(tmp_path):
    # One f.path is one string: b'Caf\xc3\xa9/a\xff.mkv' is not UTF-8 as a whole, so rTorrent sends
    # 'Caf??/a?.mkv', the UTF-8 'Café' mangled too. A real 'Caf??' folder beside it proves nothing.
    for folder in ("Caf??", "Caf\u00e9"):
        (tmp_path / "Show.X" / folder).mkdir(parents=True)
    with open(os.fsencode(tmp_path) + b"/Show.X/Caf\xc3\xa9/a\xff.mkv", "wb") as fh:
        fh.write(b"x" * 10)
    (tmp_path / "Show.X" / "Caf??" / "a?.mkv").write_bytes(b"y" * 10)
    row = _row(ROW_MULTI, directory=f"{tmp_path}/Show.X")
    c = _client([row], {HM.upper(): [["Caf??/a?.mkv", 10, 1, 1, 1]]}, path_map=PathMap())
    why = "the host has 'Caf\u00e9' there, a UTF-8 name, which rTorrent spells with '?' too when another name"
    with pytest.raises(UnreadableRecord, match=r"f\.path = 'Show\.X/Caf\?\?/a\?\.mkv' \(" + re.escape(why)):
        c.torrents_with_files()


def test_a_string_rtorrent_sent_with_a_character_past_ascii_has_real_question_marks(tmp_path):
    # Mangled, d.directory b'.../Caf\xc3\xa9/Wh\xe9\xe9' would read '.../Caf??/Wh??': one that reads
    # 'Café/Wh??' was sent as it is, so the latin-1 neighbour 'Wh\xe9\xe9' is not the item's folder.
    (tmp_path / "Caf\u00e9" / "Wh??").mkdir(parents=True)
    (tmp_path / "Caf\u00e9" / "Wh??" / "a.mkv").write_bytes(b"x" * 10)
    os.makedirs(os.fsencode(tmp_path) + b"/Caf\xc3\xa9/Wh\xe9\xe9")
    row = _row(ROW_MULTI, name="Wh??", directory=f"{tmp_path}/Caf\u00e9/Wh??")
    c = _client([row], {HM.upper(): [["a.mkv", 10, 1, 1, 1]]}, path_map=PathMap())
    ((info, _files),) = c.torrents_with_files()
    assert info.content_path == f"{tmp_path}/Caf\u00e9/Wh??"


def test_a_files_question_marks_say_nothing_of_its_folders_utf8_neighbour(tmp_path):
    # d.directory and f.path are two strings: a '?' in f.path does not make the folder's UTF-8
    # neighbour 'Whaté' (6 bytes, spelled 'What??' were d.directory mangled) the item's folder.
    (tmp_path / "What??").mkdir()
    (tmp_path / "What??" / "a?.mkv").write_bytes(b"x" * 10)
    (tmp_path / "What\u00e9").mkdir()
    row = _row(ROW_MULTI, name="What??", directory=f"{tmp_path}/What??")
    c = _client([row], {HM.upper(): [["a?.mkv", 10, 1, 1, 1]]}, path_map=PathMap())
    ((info, files),) = c.torrents_with_files()
    assert info.content_path == f"{tmp_path}/What??" and [f.name for f in files] == ["What??/a?.mkv"]
    assert [f.name for f in c.files(HM)] == ["What??/a?.mkv"]


def test_what_rtorrent_spells_with_question_marks():
    from qbhook.clients.rtorrent import _spells

    assert _spells("Caf?", b"Caf\xe9")
    assert _spells("a\tb?", b"a\tb\xff") and _spells("a?b?", b"a\tb\xff")  # tab kept or not
    assert not _spells("What?", b"What?")  # the name itself: a real '?'
    assert not _spells("Caf?", b"Cafe") and not _spells("Caf?", b"Caf\xe9s")
    assert not _spells("Caf\u00e9", b"Caf\xc3\xa9")  # UTF-8 is sent as it is


def test_what_rtorrent_sends_as_it_is():
    from qbhook.clients.rtorrent import _sent_as_is

    assert _sent_as_is("Caf\u00e9 \ufffd\t.mkv".encode()) and _sent_as_is(b"What?")
    assert not _sent_as_is(b"Caf\xe9")  # not UTF-8
    assert not _sent_as_is("\U0001f600".encode()) and not _sent_as_is("\ufffe".encode())  # xmlrpc-c refuses
    assert not _sent_as_is(b"Show\x01X")  # no XML carries it: unsure


# -- batches of the file listing ------------------------------------------------------


def test_the_file_listing_is_batched_by_files_and_by_items():
    # ~272 bytes of XML a file: 500 items of music or ebook packs broke the SCGI answer cap
    # (64 MiB) with "is this rTorrent's SCGI address?". Batches now hold up to 100,000 files,
    # and at most 500 items: rTorrent refuses a request over 512 KiB by default (the real
    # client's limit: tests/integration/test_rtorrent_client.py).
    def listing(counts):
        rows = [_row(ROW_MULTI, hash=f"{i + 1:040X}", size_files=n) for i, n in enumerate(counts)]
        c = _client(rows, {r[0]: FILES_MULTI for r in rows})
        listed = c.torrents_with_files()
        assert len(listed) == len(counts)
        return [len(p[0]) for m, *p in c._rpc.calls if m == "system.multicall"]

    assert listing([60_000, 30_000, 20_000, 150_000, 1]) == [2, 1, 1, 1]  # one over the budget: alone
    assert listing([1] * 1200) == [500, 500, 200]  # the request's size: 500 items a call at most
    assert listing([1] * 499 + [60_000, 50_000]) == [500, 1]


def test_a_deeply_nested_value_in_an_answer_is_quoted_bounded_in_one_line():
    """R43: ``{row!r:.80}`` and ``repr()`` built the whole repr before cutting it: a value nested
    3000 deep (no transport check on this fake) raised RecursionError, a traceback."""
    deep: list = [1]
    for _ in range(3000):
        deep = [deep]
    for rows, match in (
        ([_row(ROW_MULTI, name=deep)], r"unreadable record: d.name = \[\[\[\[\.\.\.\]\]\]\] \(not text\)"),
        ([deep], r"an item row that is not \d+ fields: "),
    ):
        c = _client(rows=())
        c._rpc.rows = dict(enumerate(rows))
        with pytest.raises(UnreadableRecord, match=match) as err:
            c.torrents()
        assert "\n" not in str(err.value) and len(str(err.value)) < 300
    c = _client()
    c._rpc._one = lambda *a: deep
    with pytest.raises(RtorrentError, match="system.client_version: not text: ") as err:
        c.version()
    c._rpc._one = lambda *a: (_ for _ in ()).throw(xmlrpc.client.Fault(-506, deep))
    with pytest.raises(RtorrentError, match=r"refused: \[\[\[\[\.\.\.\]\]\]\] \(fault -506\)"):
        c.stop(HM)
