from __future__ import annotations

import copy
import os

import pytest

from qbhook.errors import BadRequest
from qbhook.events import _fields
from qbhook.events.parse import parse_arr, parse_cross_seed, parse_qbt_hook

from .conftest import fixture_names, load_fixture

V1 = "8f3a1c2d4e5b6a7980c1d2e3f4a5b6c7d8e9f0a1"
V2 = "5c2b0f7a9e1d3c5b7a9f1e3d5c7b9a1f3e5d7c9b1a3f5e7d9c1b3a5f7e9d1c3b"


def parse_fixture(name: str, **kwargs):
    payload = load_fixture(name)
    if name.startswith("cross-seed"):
        return parse_cross_seed(payload, received_at=1.0)
    return parse_arr(payload, received_at=1.0, **kwargs)


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_parses_to_expected_event(name, expected):
    event = parse_fixture(name)
    got = event.to_dict()
    got.pop("received_at")
    got["coalesce_key"] = event.coalesce_key()
    assert got == expected[name]


def test_every_fixture_has_an_expectation(expected):
    assert sorted(expected) == fixture_names()


@pytest.mark.parametrize("name", [n for n in fixture_names() if not n.startswith("cross-seed")])
def test_arr_fixture_accepted_by_its_own_alias(name):
    event = parse_fixture(name)
    app = name.split("-")[0]
    assert parse_fixture(name, app=app).source == (app if event.source == "arr" else event.source)


# -- *arr ------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [[], "Download", 3, None])
def test_arr_body_must_be_an_object(payload):
    with pytest.raises(BadRequest, match="body"):
        parse_arr(payload)


def test_arr_missing_event_type():
    with pytest.raises(BadRequest, match="eventType: missing"):
        parse_arr({"series": {"path": "/x"}})


def test_arr_event_type_wrong_type():
    with pytest.raises(BadRequest, match="eventType: expected a string"):
        parse_arr({"eventType": 7})


def test_download_id_is_lowercased():
    payload = load_fixture("sonarr-download.json")
    assert parse_arr(payload).hashes == (payload["downloadId"].lower(),)


def test_bad_download_id_from_qbittorrent_is_refused():
    payload = load_fixture("sonarr-download.json")
    payload["downloadId"] = "ABC123"
    with pytest.raises(BadRequest, match="downloadId"):
        parse_arr(payload)


def test_usenet_download_id_is_dropped():
    payload = load_fixture("radarr-download.json")
    payload.update(downloadId="SABnzbd_nzo_p86tgx", downloadClientType="SABnzbd", downloadClient="SABnzbd")
    event = parse_arr(payload)
    assert event.hashes == () and event.kind == "import"
    assert event.coalesce_key().startswith("path:")


def test_download_id_wrong_type():
    payload = load_fixture("radarr-download.json")
    payload["downloadId"] = 12345
    with pytest.raises(BadRequest, match="downloadId: expected a string"):
        parse_arr(payload)


def test_v2_download_id_accepted():
    payload = load_fixture("radarr-download.json")
    payload["downloadId"] = V2.upper()
    assert parse_arr(payload).hashes == (V2,)


def test_alias_mismatch_is_refused():
    with pytest.raises(BadRequest, match="looks like a radarr payload.*sonarr endpoint"):
        parse_arr(load_fixture("radarr-download.json"), app="sonarr")


def test_unknown_alias_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_arr(load_fixture("radarr-download.json"), app="prowlarr")


def test_health_takes_the_app_from_the_alias():
    event = parse_arr(load_fixture("sonarr-health.json"), app="sonarr")
    assert (event.source, event.kind, event.raw_type) == ("sonarr", "ignored", "Health")


def test_download_without_any_app_object_is_unusable():
    with pytest.raises(BadRequest, match="cannot tell which app"):
        parse_arr({"eventType": "Download", "downloadId": V1})


def test_mixed_apps_are_refused():
    payload = load_fixture("sonarr-download.json")
    payload["movie"] = {"folderPath": "/m"}
    with pytest.raises(BadRequest, match="mixes fields of sonarr and radarr"):
        parse_arr(payload)


def test_is_upgrade_must_be_boolean():
    payload = load_fixture("sonarr-download.json")
    payload["isUpgrade"] = "yes"
    with pytest.raises(BadRequest, match="isUpgrade"):
        parse_arr(payload)


def test_deleted_files_list_alone_marks_an_upgrade():
    payload = load_fixture("sonarr-download-upgrade.json")
    del payload["isUpgrade"]
    assert parse_arr(payload).kind == "upgrade"


@pytest.mark.parametrize("value", ["yes", [], 1])
def test_media_delete_deleted_files_must_be_boolean(value):
    payload = load_fixture("sonarr-seriesdelete.json")
    payload["deletedFiles"] = value
    with pytest.raises(BadRequest, match="deletedFiles: expected true or false"):
        parse_arr(payload)


def test_media_delete_without_deleted_files_flag():
    payload = load_fixture("radarr-moviedelete.json")
    del payload["deletedFiles"]
    event = parse_arr(payload)
    assert (event.kind, event.reason, event.paths) == ("media_deleted", "", ("/data/media/movies/Arrival (2016)",))


@pytest.mark.parametrize(
    "event_type",
    [
        "Grab",
        "Health",
        "HealthRestored",
        "ApplicationUpdate",
        "ManualInteractionRequired",
        "SeriesAdd",
        "Retag",
        "DownloadFailure",
        "ImportFailure",
        "SomethingNew",
    ],
)
def test_other_event_types_are_ignored(event_type):
    payload = load_fixture("sonarr-grab.json")
    payload["eventType"] = event_type
    event = parse_arr(payload)
    assert event.kind == "ignored" and event.raw_type == event_type


def test_ignored_events_tolerate_garbage():
    payload = {"eventType": "Grab", "series": {"path": 5}, "downloadId": ["x"], "downloadClientType": "qBittorrent"}
    assert parse_arr(payload).kind == "ignored"


def test_test_event_tolerates_fake_paths_and_queues_nothing():
    event = parse_arr(load_fixture("radarr-test.json"))
    assert event.kind == "test" and event.paths == () and not event.is_work


def test_relative_path_joined_to_library_folder_when_path_missing():
    payload = load_fixture("sonarr-episodefiledelete.json")
    del payload["episodeFile"]["path"]
    assert parse_arr(payload).paths == (
        "/data/media/tv/The Expanse/Season 02/The Expanse - S02E01 - Safe WEBDL-1080p.mkv",
    )


def test_windows_library_folder_join():
    payload = load_fixture("radarr-moviefiledelete.json")
    payload["movie"]["folderPath"] = "D:\\Movies\\Arrival (2016)"
    del payload["movieFile"]["path"]
    payload["downloadId"] = "8F3A1C2D4E5B6A7980C1D2E3F4A5B6C7D8E9F0A1"  # with no hash, a 400 (test_intake_refusals)
    assert parse_arr(payload).paths == ("D:\\Movies\\Arrival (2016)\\Arrival (2016) Remux-2160p.mkv",)


def test_unknown_fields_are_ignored():
    payload = load_fixture("lidarr-download.json")
    payload["someFutureField"] = {"deeply": [1, 2, {"x": None}]}
    payload["trackFiles"][0]["newThing"] = True
    assert parse_arr(payload).kind == "import"


def test_null_optional_fields_are_fine():
    payload = load_fixture("radarr-download.json")
    payload.update(instanceName=None, downloadClient=None, deletedFiles=None, isUpgrade=None)
    event = parse_arr(payload)
    assert (event.kind, event.instance, event.client) == ("import", "", "")


def test_path_of_wrong_type_names_the_field():
    payload = load_fixture("lidarr-download.json")
    payload["trackFiles"][1]["path"] = 42
    with pytest.raises(BadRequest, match=r"trackFiles\[1\]\.path: expected a string"):
        parse_arr(payload)


def test_file_entry_of_wrong_type_names_the_field():
    payload = load_fixture("readarr-download.json")
    payload["bookFiles"] = ["oops"]
    with pytest.raises(BadRequest, match=r"bookFiles\[0\]: expected a JSON object"):
        parse_arr(payload)


def test_absurdly_long_path_is_refused():
    payload = load_fixture("radarr-download.json")
    payload["movieFile"]["path"] = "/" + "x" * _fields.MAX_STRING_CHARS
    with pytest.raises(BadRequest, match=r"movieFile\.path: longer than"):
        parse_arr(payload)


def test_absurdly_long_list_is_refused():
    payload = load_fixture("lidarr-download.json")
    payload["trackFiles"] = [{"path": "/a"}] * (_fields.MAX_LIST_ITEMS + 1)
    with pytest.raises(BadRequest, match="trackFiles: more than"):
        parse_arr(payload)


def test_nul_in_path_is_refused():
    payload = load_fixture("radarr-download.json")
    payload["movieFile"]["sourcePath"] = "/a\0b"
    with pytest.raises(BadRequest, match=r"movieFile\.sourcePath: contains a NUL"):
        parse_arr(payload)


def test_parse_does_not_mutate_the_payload():
    payload = load_fixture("sonarr-import-complete.json")
    before = copy.deepcopy(payload)
    parse_arr(payload)
    assert payload == before


def test_received_at_defaults_to_now():
    import time

    t0 = time.time()
    assert parse_arr(load_fixture("sonarr-test.json")).received_at >= t0


# -- cross-seed ------------------------------------------------------------------------


def test_cross_seed_body_must_be_object():
    with pytest.raises(BadRequest, match="body"):
        parse_cross_seed(["RESULTS"])


def test_cross_seed_extra_must_be_object():
    with pytest.raises(BadRequest, match="extra: expected a JSON object"):
        parse_cross_seed({"title": "cross-seed", "body": "x", "extra": "RESULTS"})


def test_cross_seed_without_extra_is_ignored():
    assert parse_cross_seed({"title": "cross-seed", "body": "hello"}).kind == "ignored"


def test_cross_seed_unknown_event_is_ignored():
    assert parse_cross_seed({"body": "x", "extra": {"event": "SOMETHING"}}).kind == "ignored"


def test_cross_seed_bad_info_hash_names_the_index():
    payload = load_fixture("cross-seed-results-injected.json")
    payload["extra"]["infoHashes"][1] = "not-a-hash"
    with pytest.raises(BadRequest, match=r"extra\.infoHashes\[1\]: not an info hash"):
        parse_cross_seed(payload)


def test_cross_seed_bad_searchee_hash():
    payload = load_fixture("cross-seed-results-injected.json")
    payload["extra"]["searchee"]["infoHash"] = 5
    with pytest.raises(BadRequest, match=r"extra\.searchee\.infoHash"):
        parse_cross_seed(payload)


def test_cross_seed_injected_without_anything_to_act_on():
    payload = {"body": "x", "extra": {"event": "RESULTS", "result": "INJECTED", "infoHashes": []}}
    with pytest.raises(BadRequest, match="names no info hash"):
        parse_cross_seed(payload)


def test_cross_seed_burst_for_one_searchee_shares_a_key():
    a = load_fixture("cross-seed-results-injected.json")
    b = copy.deepcopy(a)
    b["extra"]["infoHashes"] = ["ab" * 20]
    assert parse_cross_seed(a).coalesce_key() == parse_cross_seed(b).coalesce_key() == f"torrent:{V1}"


def test_cross_seed_searchee_null():
    payload = load_fixture("cross-seed-results-injected.json")
    payload["extra"]["searchee"] = None
    event = parse_cross_seed(payload)
    assert event.hashes == tuple(payload["extra"]["infoHashes"])


# -- qBittorrent hook ------------------------------------------------------------------


def qbt_fields(**overrides):
    fields = {
        "event": "added",
        "I": V1.upper(),
        "J": "-",
        "K": V1,
        "N": "Some Name",
        "L": "tv-sonarr",
        "G": "a,b",
        "F": "/data/torrents/tv/Some Name",
        "R": "/data/torrents/tv/Some Name",
        "D": "/data/torrents/tv",
        "C": "3",
        "Z": "123456",
    }
    fields.update(overrides)
    return fields


def test_qbt_added():
    event = parse_qbt_hook(qbt_fields(), received_at=5.0)
    assert event == type(event)(
        "qbittorrent", "torrent_added", (V1,), ("/data/torrents/tv/Some Name",), "", 5.0, "added"
    )


def test_qbt_finished_with_instance_and_hybrid_hashes():
    event = parse_qbt_hook(qbt_fields(event="finished", J=V2, K=V2[:40], instance="qb-main"))
    assert event.kind == "torrent_finished" and event.instance == "qb-main"
    assert event.hashes == (V2[:40], V1, V2)
    assert event.coalesce_key() == f"torrent:{V2[:40]}"


def test_qbt_v2_only_torrent():
    event = parse_qbt_hook(qbt_fields(I="-", J=V2, K=V2[:40]))
    assert event.hashes == (V2[:40], V2)


def test_qbt_unsubstituted_placeholders_are_empty():
    # Versions without v2-hash support leave %K and %J as literal text.
    event = parse_qbt_hook(qbt_fields(K="%K", J="%J"))
    assert event.hashes == (V1,)


def test_qbt_magnet_without_metadata_has_no_path():
    assert parse_qbt_hook(qbt_fields(F="", R="")).paths == ()


@pytest.mark.parametrize("event", ["", "deleted", "ADDED", "added "])
def test_qbt_bad_event(event):
    with pytest.raises(BadRequest, match="event: must be"):
        parse_qbt_hook(qbt_fields(event=event))


def test_qbt_missing_event():
    fields = qbt_fields()
    del fields["event"]
    with pytest.raises(BadRequest, match="event"):
        parse_qbt_hook(fields)


@pytest.mark.parametrize("field", ["I", "J", "K"])
def test_qbt_bad_hash_names_the_field(field):
    with pytest.raises(BadRequest, match=f"^{field}: not an info hash"):
        parse_qbt_hook(qbt_fields(**{field: "zz" * 20}))


def test_qbt_no_hash_at_all():
    with pytest.raises(BadRequest, match="no info hash"):
        parse_qbt_hook(qbt_fields(I="-", J="-", K=""))


def test_qbt_field_wrong_type():
    with pytest.raises(BadRequest, match="F: expected a string"):
        parse_qbt_hook(qbt_fields(F=["/a"]))


def test_qbt_unknown_and_unneeded_fields_ignored():
    event = parse_qbt_hook(qbt_fields(C=3, Z=None, T="http://tracker", extra="x"))
    assert event.kind == "torrent_added"


def test_qbt_not_a_mapping():
    with pytest.raises(BadRequest, match="body"):
        parse_qbt_hook(["added"])  # type: ignore[arg-type]


# -- values that are not UTF-8 (issue 9, finding 8) --------------------------------------


def test_qbt_hex_field_is_decoded_byte_exact():
    raw = b"/data/torrents/caf\xe9 \xff\xfe"
    fields = qbt_fields()
    del fields["F"]
    fields["F.hex"] = raw.hex()
    event = parse_qbt_hook(fields)
    assert [os.fsencode(p) for p in event.paths] == [raw]
    assert event.paths == (raw.decode("utf-8", "surrogateescape"),)


def test_qbt_hex_field_may_hold_any_field():
    fields = qbt_fields()
    for name in ("event", "K", "instance"):
        fields[name + ".hex"] = fields.pop(name, "qb-\x01").encode().hex()
    event = parse_qbt_hook(fields)
    assert event.kind == "torrent_added" and event.hashes[0] == V1 and event.instance == "qb-\x01"


def test_qbt_hex_and_plain_spelling_of_one_field_is_refused():
    with pytest.raises(BadRequest, match=r"F, F\.hex: both given"):
        parse_qbt_hook(qbt_fields(**{"F.hex": b"/x".hex()}))


@pytest.mark.parametrize("value", ["abc", "zz", "2f 78", ["2f"], 7, "0" * (2 * _fields.MAX_STRING_CHARS + 2)])
def test_qbt_bad_hex_field_names_it(value):
    fields = qbt_fields()
    del fields["F"]
    fields["F.hex"] = value
    with pytest.raises(BadRequest, match=r"^F\.hex: "):
        parse_qbt_hook(fields)


def test_qbt_hex_nul_in_path_is_refused():
    fields = qbt_fields()
    del fields["F"]
    fields["F.hex"] = b"/a\0b".hex()
    with pytest.raises(BadRequest, match="F: contains a NUL"):
        parse_qbt_hook(fields)


@pytest.mark.parametrize("bad", [chr(0xD800), "a" + chr(0xDBFF), chr(0xDFFF), chr(0xDC41)])
def test_path_with_lone_surrogate_is_refused(bad):
    """No byte string decodes (os.fsdecode) to these: the worker's os.fsencode would fail."""
    with pytest.raises(BadRequest, match="p: contains a lone UTF-16 surrogate"):
        _fields.path_value("/x/" + bad, "p")


def test_path_escaped_bytes_have_one_spelling():
    # "\udcc3\udca9" are the escaped bytes of "é": the same file, so the same string.
    assert _fields.path_value("/x/\udcc3\udca9", "p") == "/x/é"
    assert _fields.path_value("/x/\udcff", "p") == "/x/\udcff"
