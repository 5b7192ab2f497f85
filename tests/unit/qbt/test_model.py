from __future__ import annotations

import dataclasses

import pytest

from qbhook.clients.model import (
    TorrentFile,
    TorrentInfo,
    normalize_state,
    parse_tags,
)
from qbhook.errors import PathMapError
from qbhook.pathmap import PathMap
from tests.unit.qbt import recorded as rec

PM = PathMap([("/data", "/stash/data")])


def info(raw, pm=PM):
    return TorrentInfo.from_api(raw, pm, "main")


def test_v4_recorded_entry_maps_paths_to_host():
    t = info(rec.V4_SHOW)
    assert t.instance == "main"
    assert t.hash == rec.SHOW_ID
    assert t.infohash_v1 == rec.SHOW_ID and t.infohash_v2 is None
    assert t.save_path == "/stash/data/torrents"
    assert t.client_save_path == "/data/torrents"
    assert t.content_path == "/stash/data/torrents/Show.S01"
    assert t.client_content_path == "/data/torrents/Show.S01"
    assert t.download_path == "" and t.root_path == ""  # 4.5.2 sends no root_path
    assert t.category == "tv"
    assert t.tags == frozenset({"cross-seed", "qbhook"})
    assert t.total_size == t.size == 70100
    assert t.added_on == 1795496974 and t.completion_on == 1795496975
    assert t.has_metadata  # 4.5.2 has no has_metadata field: inferred from state
    assert t.is_complete and t.is_stable and not t.is_checking and not t.is_moving


def test_v5_entry_root_path_and_metadata():
    t = info(rec.V5_SHOW)
    assert t.root_path == "/stash/data/torrents/Show.S01"
    assert t.state == t.raw_state == "stoppedUP"
    assert t.is_stopped and t.is_stable


def test_hybrid_hashes_and_matching_any_case():
    t = info(rec.V4_HYBRID)
    assert t.hash == rec.HYBRID_ID
    assert t.hashes == {rec.HYBRID_ID, rec.HYBRID_V1, rec.HYBRID_V2}
    assert t.matches(rec.HYBRID_V1.upper())
    assert t.matches(rec.HYBRID_V2)
    assert t.matches(rec.HYBRID_ID.upper())
    assert not t.matches("0" * 40)


def test_hash_fields_lowercased():
    t = info({**rec.V4_HYBRID, "hash": rec.HYBRID_ID.upper(), "infohash_v1": rec.HYBRID_V1.upper()})
    assert t.hash == rec.HYBRID_ID and t.infohash_v1 == rec.HYBRID_V1


@pytest.mark.parametrize(
    ("raw", "norm"),
    [("pausedUP", "stoppedUP"), ("pausedDL", "stoppedDL"), ("stoppedUP", "stoppedUP"), ("stalledUP", "stalledUP")],
)
def test_state_normalization(raw, norm):
    assert normalize_state(raw) == norm
    t = info({**rec.V4_SHOW, "state": raw})
    assert t.state == norm and t.raw_state == raw


@pytest.mark.parametrize(
    "state",
    [
        "moving",
        "checkingUP",
        "checkingDL",
        "checkingResumeData",
        "metaDL",
        "forcedMetaDL",
        "error",
        "missingFiles",
        "unknown",
        "someFutureState",
    ],
)
def test_unstable_states(state):
    t = info({**rec.V4_SHOW, "state": state})
    assert not t.is_stable


@pytest.mark.parametrize(
    "state",
    [
        "uploading",
        "stalledUP",
        "queuedUP",
        "forcedUP",
        "pausedUP",
        "stoppedUP",
        "downloading",
        "stalledDL",
        "queuedDL",
        "forcedDL",
        "pausedDL",
        "stoppedDL",
    ],
)
def test_stable_states(state):
    assert info({**rec.V4_SHOW, "state": state}).is_stable


def test_checking_and_moving_helpers():
    assert info({**rec.V4_SHOW, "state": "checkingResumeData"}).is_checking
    assert info({**rec.V4_SHOW, "state": "checkingUP"}).is_checking
    assert info({**rec.V4_SHOW, "state": "moving"}).is_moving


def test_incomplete_and_no_metadata():
    partial = info({**rec.V4_SHOW, "progress": 0.5, "amount_left": 100, "state": "stoppedDL"})
    assert not partial.is_complete
    meta = info({**rec.V4_SHOW, "state": "metaDL", "content_path": "", "progress": 0})
    assert not meta.has_metadata and not meta.is_complete and not meta.is_stable
    v5meta = info(rec.v5(rec.V4_SHOW, has_metadata=False, state="stoppedDL"))
    assert not v5meta.has_metadata and not v5meta.is_stable


def test_the_listing_hints_at_a_file_at_priority_0():
    """qBittorrent's ``size`` counts the wanted files only, ``total_size`` all of them (pad files too)."""
    assert not info(rec.V4_SHOW).may_skip_files
    skipping = info({**rec.V4_SHOW, "size": 70000, "total_size": 70100})
    assert skipping.may_skip_files and skipping.is_complete  # complete: what it wants is there
    assert not info({**rec.V4_SHOW, "size": 70000, "total_size": 70100, "state": "metaDL"}).may_skip_files


def test_never_completed_timestamps_are_none():
    for never in (-1, 0, 0xFFFFFFFF):
        assert info({**rec.V4_SHOW, "completion_on": never}).completion_on is None


def test_unmapped_path_names_torrent_and_field():
    raw = {**rec.V4_SHOW, "download_path": "/incomplete/Show.S01"}
    with pytest.raises(PathMapError) as err:
        info(raw)
    msg = str(err.value)
    assert rec.SHOW_ID in msg and "download_path" in msg and "/incomplete/Show.S01" in msg


def test_identity_map_keeps_paths():
    t = info(rec.V4_SHOW, PathMap())
    assert t.save_path == t.client_save_path == "/data/torrents"


def test_frozen():
    t = info(rec.V4_SHOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.save_path = "/x"  # type: ignore[misc]


def test_parse_tags():
    assert parse_tags("") == frozenset()
    assert parse_tags(None) == frozenset()
    assert parse_tags("a, b c,d") == {"a", "b c", "d"}


def test_torrent_file_from_recorded():
    files = [TorrentFile.from_api(r, i) for i, r in enumerate(rec.V4_SHOW_FILES)]
    assert [f.name for f in files] == ["Show.S01/e01.mkv", "Show.S01/e02.mkv", "Show.S01/sub/e01.srt"]
    assert [f.index for f in files] == [0, 1, 2]
    assert files[0].size == 40000 and files[0].progress == 1.0 and files[0].priority == 1
    assert files[0].wanted
    assert not TorrentFile.from_api({**rec.V4_SHOW_FILES[0], "priority": 0}, 0).wanted


def test_torrent_file_without_index_uses_position():
    raw = {k: v for k, v in rec.V4_SHOW_FILES[1].items() if k != "index"}
    assert TorrentFile.from_api(raw, 7).index == 7


def test_a_relative_content_path_reported_mid_move_reads_as_not_known_not_as_an_unmappable_path():
    """qBittorrent 4.5.2 (observed, leaving missingFiles) reports content_path relative for a
    while: the adapter reads it as "not known now" instead of raising PathMapError, so callers
    polling a moving torrent need no special case (the repair step had one)."""
    t = info({**rec.V4_SHOW, "content_path": "Show.S01", "state": "moving"})
    assert t.content_path == "" and t.client_content_path == "Show.S01"
    assert t.save_path == "/stash/data/torrents"
    with pytest.raises(PathMapError):  # an absolute path outside the map still is an error
        info({**rec.V4_SHOW, "content_path": "/elsewhere/Show.S01"})
