"""Intake refuses, with a 400 naming the field, what the worker would only refuse after the 202.

A path the worker's ``normalize`` refuses (relative, a ``..`` component) used to be queued and
then dropped by the worker ("no torrent matches"): the event was lost where its sender could not
hear. Multipart fields that are not UTF-8 were decoded with replacement characters and queued as
another path. A falsy wrong-typed cross-seed ``searchee.infoHash`` was read as "no hash".
"""

from __future__ import annotations

import json

import pytest

from qbhook.errors import PathMapError
from qbhook.events.model import Event
from qbhook.events.server import AuthConfig, create_app
from qbhook.paths import normalize

from .conftest import load_fixture

TOKEN = "s3cret-token"
HDR = {"X-Qbhook-Token": TOKEN}
V1 = "8f3a1c2d4e5b6a7980c1d2e3f4a5b6c7d8e9f0a1"


@pytest.fixture
def queued() -> list[Event]:
    return []


@pytest.fixture
def client(queued):
    def enqueue(event: Event) -> tuple[int, bool]:
        queued.append(event)
        return len(queued), False

    return create_app(enqueue=enqueue, auth=AuthConfig(token=TOKEN)).test_client()


def _sonarr(**changes) -> dict:
    payload = load_fixture("sonarr-download.json")
    for dotted, value in changes.items():
        holder, key = dotted.split("__")
        if value is None:
            del payload[holder][key]
        else:
            payload[holder][key] = value
    return payload


def _radarr_delete(folder: str, file_path: str | None) -> dict:
    payload = load_fixture("radarr-moviefiledelete.json")
    payload["movie"]["folderPath"] = folder
    if file_path is None:
        del payload["movieFile"]["path"]
    else:
        payload["movieFile"]["path"] = file_path
    return payload


def _cross_seed(**searchee) -> dict:
    payload = load_fixture("cross-seed-results-injected.json")
    payload["extra"]["searchee"].update(searchee)
    return payload


def _post_json(client, url: str, body: dict):
    return client.post(url, data=json.dumps(body), headers=HDR, content_type="application/json")


UNUSABLE = [
    ("/webhook/sonarr", _sonarr(episodeFile__path="tv/Show/e1.mkv"), "episodeFile.path", "tv/Show/e1.mkv"),
    ("/webhook/sonarr", _sonarr(series__path="x/../y"), "series.path", "x/../y"),
    (
        "/webhook/radarr",
        _radarr_delete("/media/movies/../../etc", "/media/movies/../../etc/shadow"),
        "movie.folderPath",
        "/media/movies/../../etc",
    ),
    (
        "/webhook/sonarr",
        _sonarr(episodeFile__path=None, episodeFile__relativePath="../../../etc/passwd"),
        "episodeFile.relativePath",
        "/data/media/tv/The Expanse/../../../etc/passwd",
    ),
    ("/webhook/cross-seed", _cross_seed(path="relative/dir"), "extra.searchee.path", "relative/dir"),
    ("/webhook/cross-seed", _cross_seed(path="/data/../etc"), "extra.searchee.path", "/data/../etc"),
    ("/hook/qbittorrent", {"event": "added", "K": V1, "F": "/data/../../etc"}, "F", "/data/../../etc"),
]


@pytest.mark.parametrize(("url", "body", "field", "path"), UNUSABLE, ids=[u[2] + ":" + u[3] for u in UNUSABLE])
def test_a_path_the_worker_would_refuse_is_a_400_naming_the_field(client, queued, url, body, field, path):
    with pytest.raises(PathMapError):  # the worker's rule (host_path -> normalize) refuses it
        normalize(path)
    resp = _post_json(client, url, body)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"].startswith(f"{field}: ") and repr(path) in resp.json["error"]
    assert queued == []


def test_the_sonarr_fixture_joins_its_relative_path_under_the_series_folder(client, queued):
    # The '..' case above joins under this folder: a fixture change must not make it vacuous.
    body = _sonarr(episodeFile__path=None, episodeFile__relativePath="Season 02/x.mkv")
    assert _post_json(client, "/webhook/sonarr", body).status_code == 202
    assert "/data/media/tv/The Expanse/Season 02/x.mkv" in queued[0].paths


def _with_download_id(payload: dict) -> dict:
    return {**payload, "downloadId": V1.upper(), "downloadClientType": "qBittorrent"}


def _without(payload: dict, *keys: str) -> dict:
    return {k: v for k, v in payload.items() if k not in keys}


def _cross_seed_without_hashes(**searchee) -> dict:
    payload = _cross_seed(**searchee)
    payload["extra"]["infoHashes"] = []
    del payload["extra"]["searchee"]["infoHash"]
    return payload


@pytest.mark.parametrize(
    ("url", "body", "path"),
    [
        # Kept as they were: an *arr or cross-seed on Windows names files so. The worker refuses
        # the path (rejected_paths) but the event's hashes still work; a 400 would cost them.
        (
            "/webhook/radarr",
            _with_download_id(_radarr_delete("D:\\Movies\\Arrival (2016)", None)),
            "D:\\Movies\\Arrival (2016)\\Arrival (2016) Remux-2160p.mkv",
        ),
        (
            "/webhook/radarr",
            _with_download_id(_radarr_delete("\\\\nas\\movies\\Arrival", "\\\\nas\\movies\\Arrival\\a.mkv")),
            None,
        ),
        ("/webhook/sonarr", _sonarr(episodeFile__path="E:/tv/Show/e1.mkv"), "E:/tv/Show/e1.mkv"),
        ("/webhook/cross-seed", _cross_seed(path="C:\\data\\x"), "C:\\data\\x"),
    ],
)
def test_windows_paths_are_queued_as_before_when_the_event_names_a_hash(client, queued, url, body, path):
    assert _post_json(client, url, body).status_code == 202
    assert queued[0].hashes and (path is None or path in queued[0].paths)


WINDOWS_ONLY = [
    (
        "/webhook/radarr",
        _radarr_delete("D:\\Movies\\Arrival (2016)", None),
        "movieFile.relativePath",
        "D:\\Movies\\Arrival (2016)\\Arrival (2016) Remux-2160p.mkv",
    ),
    (
        "/webhook/radarr",
        _radarr_delete("\\\\nas\\movies\\Arrival", "\\\\nas\\movies\\Arrival\\a.mkv"),
        "movieFile.path",
        "\\\\nas\\movies\\Arrival\\a.mkv",
    ),
    (
        "/webhook/sonarr",
        _without(_sonarr(episodeFile__path="E:/tv/Show/e1.mkv", episodeFile__sourcePath=None), "downloadId"),
        "episodeFile.path",
        "E:/tv/Show/e1.mkv",
    ),
    ("/webhook/cross-seed", _cross_seed_without_hashes(path="C:\\data\\x"), "extra.searchee.path", "C:\\data\\x"),
]


@pytest.mark.parametrize(("url", "body", "field", "path"), WINDOWS_ONLY, ids=[w[2] for w in WINDOWS_ONLY])
def test_an_event_with_no_hash_and_only_windows_paths_is_a_400_naming_the_field(client, queued, url, body, field, path):
    # No path_map can name a Windows prefix and there is no hash: answered 202, the worker
    # dropped it where its sender could not hear (review R60). The sweep reconciles it.
    resp = _post_json(client, url, body)
    assert resp.status_code == 400, resp.json
    error = resp.json["error"]
    assert error.startswith(f"{field}: a Windows path cannot be mapped") and error.endswith(f"'{path}'")
    assert "sweep" in error and queued == []


def test_a_hashless_event_with_one_usable_path_besides_windows_ones_is_queued(client, queued):
    body = _without(_sonarr(episodeFile__path="E:/tv/Show/e1.mkv"), "downloadId")
    source = body["episodeFile"]["sourcePath"]
    assert source.startswith("/data/")  # the fixture's import source: a path the worker can map
    assert _post_json(client, "/webhook/sonarr", body).status_code == 202
    assert queued[0].hashes == () and source in queued[0].paths


def test_an_empty_path_is_no_path_as_before(client, queued):
    body = _sonarr(episodeFile__recycleBinPath="")
    assert _post_json(client, "/webhook/sonarr", body).status_code == 202
    assert "" not in queued[0].paths


# -- multipart ------------------------------------------------------------------------------


def _multipart(fields: list[tuple[bytes, bytes]], part_headers: bytes = b"") -> bytes:
    parts = b"".join(
        b'--XyZb\r\nContent-Disposition: form-data; name="' + name + b'"\r\n' + part_headers + b"\r\n" + value + b"\r\n"
        for name, value in fields
    )
    return parts + b"--XyZb--\r\n"


def _post_multipart(client, body: bytes):
    return client.post(
        "/hook/qbittorrent", data=body, headers={**HDR, "Content-Type": "multipart/form-data; boundary=XyZb"}
    )


@pytest.mark.parametrize(
    "part_headers",
    [b"", b"Content-Type: text/plain; charset=iso-8859-1\r\n"],
    ids=["no charset", "latin-1 declared"],
)
def test_a_multipart_field_that_is_not_utf8_is_a_400_like_urlencoded(client, queued, part_headers):
    body = _multipart([(b"event", b"added"), (b"K", V1.encode()), (b"F", b"/data/torrents/Caf\xe9")], part_headers)
    resp = _post_multipart(client, body)
    assert (resp.status_code, resp.json["error"]) == (400, "body: form fields are not UTF-8")
    assert queued == []


def test_a_utf8_multipart_field_is_queued_exactly(client, queued):
    # U+FFFD sent on purpose is a character like any other, not a sign of replacement.
    path = "/data/torrents/Café \ufffd"
    body = _multipart([(b"event", b"finished"), (b"K", V1.encode()), (b"F", path.encode())])
    assert _post_multipart(client, body).status_code == 202
    assert queued[0].paths == (path,) and queued[0].kind == "torrent_finished"


def test_a_truncated_multipart_body_is_a_400(client, queued):
    body = _multipart([(b"event", b"added"), (b"K", V1.encode())])[: -len(b"--XyZb--\r\n")]
    resp = _post_multipart(client, body)
    assert resp.status_code == 400 and "unusable form data" in resp.json["error"]
    assert queued == []


# -- cross-seed searchee.infoHash -------------------------------------------------------------


@pytest.mark.parametrize("value", [0, False, "", [], {}])
def test_a_falsy_wrong_typed_searchee_hash_is_a_400(client, queued, value):
    resp = _post_json(client, "/webhook/cross-seed", _cross_seed(infoHash=value, path="/data/x"))
    assert resp.status_code == 400 and resp.json["error"].startswith("extra.searchee.infoHash: ")
    assert queued == []


def test_a_null_searchee_hash_is_still_no_hash(client, queued):
    # cross-seed's data-dir searchee sends infoHash: null (fixtures/README.md).
    assert _post_json(client, "/webhook/cross-seed", _cross_seed(infoHash=None, path="/data/x")).status_code == 202
    assert queued[0].paths == ("/data/x",)
