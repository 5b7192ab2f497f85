from __future__ import annotations

import json

import pytest
import requests
import responses

from qbhook.clients.qbt.client import QbtClient
from qbhook.clients.registry import Clients
from qbhook.errors import (
    RETRY_LOG,
    BadRequest,
    PathMapError,
    QbtError,
    QbtUnreachable,
    UnknownTorrent,
    UnsafeOperation,
)
from qbhook.pathmap import PathMap
from tests.unit.qbt import recorded as rec
from tests.unit.qbt.fakeqbt import FakeQbt

BASE = "http://qbt.test:8080"
PM = PathMap([("/data", "/stash/data")])


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


def make_client(path_map=PM, base=BASE, name="main", **kw) -> QbtClient:
    kw.setdefault("retries", 3)
    kw.setdefault("backoff", 0)
    return QbtClient(name, base, "admin", "adminadmin", path_map, **kw)


@pytest.fixture
def v4(rsps):
    return FakeQbt(rsps)


@pytest.fixture
def v5(rsps):
    return FakeQbt(rsps, api=rec.V5_API, version=rec.V5_VERSION, torrents=[rec.V5_SHOW, rec.V5_HYBRID])


@pytest.fixture
def host_map(tmp_path):
    """Client /data is host tmp_path/stash/data, with the folders existing."""
    host = tmp_path / "stash" / "data"
    for sub in ("torrents/single", "pool/moved", "downloads"):
        (host / sub).mkdir(parents=True)
    return PathMap([("/data", str(host))]), str(host)


# -- versions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "version", "is_v5"),
    [
        (rec.V4_API, rec.V4_VERSION, False),
        (rec.V5_API, rec.V5_VERSION, True),
        (rec.V515_API, "v5.2.0", True),
        ("2.10.4", "v4.6.7", False),
    ],
)
def test_versions(rsps, api, version, is_v5):
    fake = FakeQbt(rsps, api=api, version=version)
    c = make_client()
    assert c.version() == version
    assert c.api_version() == api
    assert c.is_v5() is is_v5
    c.is_v5()
    assert len(fake.calls("app/webapiVersion")) == 1  # cached
    assert len(fake.calls("auth/login")) == 1  # logged in once


# -- listing and path mapping -------------------------------------------------


def test_torrents_are_in_host_paths(v4):
    ts = {t.name: t for t in make_client().torrents()}
    show = ts["Show.S01"]
    assert show.save_path == "/stash/data/torrents"
    assert show.content_path == "/stash/data/torrents/Show.S01"
    assert show.client_save_path == "/data/torrents"
    assert show.instance == "main"
    assert ts["one.bin"].content_path == "/stash/data/torrents/single/one.bin"


def test_torrents_filters_are_sent(v4):
    c = make_client()
    assert [t.name for t in c.torrents(category="tv")] == ["Show.S01"]
    assert [t.name for t in c.torrents(tag="qbhook")] == ["Show.S01"]
    assert v4.calls("torrents/info")[0] == {"category": "tv"}


def test_torrents_by_hashes_any_spelling(v4):
    c = make_client()
    got = c.torrents(hashes=[rec.SHOW_ID.upper(), rec.HYBRID_V1.upper()])
    assert sorted(t.name for t in got) == ["Show.S01", "one.bin"]
    assert c.torrents(hashes=[]) == []


def test_unmapped_torrent_path_raises_on_listing(rsps):
    stray = {**rec.V4_SHOW, "save_path": "/downloads", "content_path": "/downloads/Show.S01"}
    FakeQbt(rsps, torrents=[stray, rec.V4_HYBRID])
    c = make_client()
    with pytest.raises(PathMapError, match="/downloads"):
        c.torrents()
    # ...but looking up another torrent is not blocked by it
    assert c.torrent(rec.HYBRID_V1).name == "one.bin"


def test_v5_states_and_fields(v5):
    t = make_client().torrent(rec.SHOW_ID)
    assert t.state == "stoppedUP" and t.raw_state == "stoppedUP"
    assert t.root_path == "/stash/data/torrents/Show.S01"


def test_v4_paused_state_is_normalized(rsps):
    FakeQbt(rsps, torrents=[{**rec.V4_SHOW, "state": "pausedUP"}])
    t = make_client().torrent(rec.SHOW_ID)
    assert t.state == "stoppedUP" and t.raw_state == "pausedUP"


def test_empty_path_map_is_identity(v4):
    t = make_client(path_map=PathMap()).torrent(rec.SHOW_ID)
    assert t.save_path == "/data/torrents"


# -- hash lookup --------------------------------------------------------------


def test_hybrid_found_by_uppercase_v1(v4):
    c = make_client()
    t = c.torrent(rec.HYBRID_V1.upper())
    assert t.hash == rec.HYBRID_ID
    calls = v4.calls("torrents/info")
    # qBittorrent filters on its id only (recorded on 4.5.2): id query, then full list
    assert calls == [{"hashes": rec.HYBRID_V1}, {}]


def test_hybrid_found_by_full_v2(v4):
    t = make_client().torrent(rec.HYBRID_V2.upper())
    assert t.hash == rec.HYBRID_ID
    assert v4.calls("torrents/info") == [{}]  # a 64-digit hash is never sent as a filter


def test_lookup_by_id_needs_one_query(v4):
    assert make_client().torrent(rec.SHOW_ID.upper()).name == "Show.S01"
    assert v4.calls("torrents/info") == [{"hashes": rec.SHOW_ID}]


def test_unknown_hash(v4):
    c = make_client()
    assert c.find("0" * 40) is None
    with pytest.raises(UnknownTorrent, match="0" * 40):
        c.torrent("0" * 40)


@pytest.mark.parametrize("bad", ["all", "abc", rec.SHOW_ID + "|" + rec.HYBRID_ID, "g" * 40, ""])
def test_malformed_hash_never_reaches_qbittorrent(rsps, bad):
    FakeQbt(rsps)
    c = make_client()
    with pytest.raises(BadRequest):
        c.torrent(bad)
    with pytest.raises(BadRequest):
        c.stop(bad)
    assert len(rsps.calls) == 0


# -- files ---------------------------------------------------------------------


def test_files(v4):
    files = make_client().files(rec.SHOW_ID)
    assert [(f.index, f.name, f.size) for f in files] == [
        (0, "Show.S01/e01.mkv", 40000),
        (1, "Show.S01/e02.mkv", 30000),
        (2, "Show.S01/sub/e01.srt", 100),
    ]


def test_files_of_hybrid_by_v1_uses_the_id(v4):
    assert make_client().files(rec.HYBRID_V1) == []
    assert v4.calls("torrents/files") == [{"hash": rec.HYBRID_ID}]


def test_files_404_is_unknown_torrent(rsps):
    # the torrent vanished between the lookup and the files call
    fake = FakeQbt(rsps, files={})
    fake.torrents = [rec.V4_SHOW]
    c = make_client()
    rsps.replace(responses.POST, fake.url("torrents/files"), body="Not Found", status=404)
    with pytest.raises(UnknownTorrent):
        c.files(rec.SHOW_ID)
    assert len(fake.calls("torrents/files")) == 1  # 4xx: not retried


# -- set_location --------------------------------------------------------------


def test_set_location_maps_host_to_client(rsps, host_map):
    pm, host = host_map
    fake = FakeQbt(rsps)
    make_client(path_map=pm).set_location(rec.SHOW_ID, f"{host}/pool/moved/")
    assert fake.calls("torrents/setLocation") == [{"hashes": rec.SHOW_ID, "location": "/data/pool/moved"}]


def test_set_location_hybrid_by_v1_sends_the_id(rsps, host_map):
    pm, host = host_map
    fake = FakeQbt(rsps)
    make_client(path_map=pm).set_location(rec.HYBRID_V1.upper(), f"{host}/pool/moved")
    assert fake.calls("torrents/setLocation")[0]["hashes"] == rec.HYBRID_ID


def test_set_location_refuses_unknown_torrent(rsps, host_map):
    pm, host = host_map
    fake = FakeQbt(rsps)
    with pytest.raises(UnknownTorrent):
        make_client(path_map=pm).set_location("0" * 40, f"{host}/pool/moved")
    assert fake.calls("torrents/setLocation") == []


def test_set_location_refuses_missing_destination(rsps, host_map):
    pm, host = host_map
    fake = FakeQbt(rsps)
    with pytest.raises(UnsafeOperation, match="does not exist"):
        make_client(path_map=pm).set_location(rec.SHOW_ID, f"{host}/not/there")
    assert fake.calls("torrents/setLocation") == []


def test_set_location_refuses_unmapped_destination(rsps, tmp_path):
    fake = FakeQbt(rsps)
    with pytest.raises(PathMapError):
        make_client().set_location(rec.SHOW_ID, str(tmp_path))
    with pytest.raises(PathMapError):
        make_client().set_location(rec.SHOW_ID, "/stash/data/../etc")
    assert fake.calls("torrents/setLocation") == []


def test_set_location_409_is_qbt_error_with_message(rsps, host_map):
    pm, host = host_map
    fake = FakeQbt(rsps)
    rsps.replace(responses.POST, fake.url("torrents/setLocation"), body="Cannot make save path", status=409)
    with pytest.raises(QbtError, match="Cannot make save path") as err:
        make_client(path_map=pm).set_location(rec.SHOW_ID, f"{host}/pool/moved")
    assert not isinstance(err.value, UnknownTorrent)
    assert len(fake.calls("torrents/setLocation")) == 1  # not retried


# -- download path ------------------------------------------------------------


def test_set_download_path_maps_and_clears(rsps, host_map):
    pm, host = host_map
    fake = FakeQbt(rsps)
    c = make_client(path_map=pm)
    c.set_download_path(rec.SHOW_ID, f"{host}/downloads")
    c.set_download_path(rec.SHOW_ID, "")
    assert fake.calls("torrents/setDownloadPath") == [
        {"id": rec.SHOW_ID, "path": "/data/downloads"},
        {"id": rec.SHOW_ID, "path": ""},
    ]


def test_set_download_path_refused_for_atm_torrent(rsps):
    # 4.5.2 answers 200 and ignores it (recorded): the caller must not believe it worked
    fake = FakeQbt(rsps, torrents=[{**rec.V4_SHOW, "auto_tmm": True}])
    with pytest.raises(UnsafeOperation, match="ATM"):
        make_client().set_download_path(rec.SHOW_ID, "")
    assert fake.calls("torrents/setDownloadPath") == []


# -- ATM -------------------------------------------------------------------------


def test_atm_enable_refused_without_category_path(v4):
    with pytest.raises(UnsafeOperation, match="not given"):
        make_client().set_auto_management(rec.SHOW_ID, True)
    assert v4.calls("torrents/setAutoManagement") == []


def test_atm_enable_refused_when_paths_differ(v4):
    with pytest.raises(UnsafeOperation, match="current save path"):
        make_client().set_auto_management(rec.SHOW_ID, True, category_save_path="/stash/data/elsewhere")
    assert v4.calls("torrents/setAutoManagement") == []


def test_atm_enable_refused_when_qbittorrent_disagrees(v4):
    # the caller claims the category path equals the save path; qBittorrent's
    # default save path (uncategorized torrent) says otherwise
    with pytest.raises(UnsafeOperation, match="qBittorrent's save path"):
        make_client().set_auto_management(rec.HYBRID_ID, True, category_save_path="/stash/data/torrents/single")
    assert v4.calls("torrents/setAutoManagement") == []


def test_atm_enable_refused_for_incomplete(rsps):
    fake = FakeQbt(rsps, torrents=[{**rec.V4_SHOW, "progress": 0.5, "amount_left": 9}])
    with pytest.raises(UnsafeOperation, match="not complete"):
        make_client().set_auto_management(rec.SHOW_ID, True, category_save_path="/stash/data/torrents")
    assert fake.calls("torrents/setAutoManagement") == []


def test_atm_enable_allowed_when_nothing_would_move(v4):
    make_client().set_auto_management(rec.SHOW_ID, True, category_save_path="/stash/data/torrents/")
    assert v4.calls("torrents/setAutoManagement") == [{"hashes": rec.SHOW_ID, "enable": "True"}]


def test_atm_disable_always_allowed(v4):
    make_client().set_auto_management(rec.HYBRID_V1, False)
    assert v4.calls("torrents/setAutoManagement") == [{"hashes": rec.HYBRID_ID, "enable": "False"}]


def test_category_save_paths(v4):
    cats = make_client().categories()
    assert cats["tv"].save_path == "/stash/data/torrents"
    assert cats["movies"].save_path == "/stash/data/downloads/movies"  # implicit: name
    assert cats["rel"].save_path == "/stash/data/downloads/relsub"  # relative to default
    assert cats["rel"].raw_save_path == "relsub"
    assert make_client().category_save_path("") == "/stash/data/downloads"


def test_category_outside_map_has_no_host_path(rsps):
    FakeQbt(rsps, categories={"x": {"name": "x", "savePath": "/elsewhere"}})
    c = make_client()
    assert c.categories()["x"].save_path == ""
    with pytest.raises(UnsafeOperation):
        c.category_save_path("x")
    with pytest.raises(UnsafeOperation):
        c.category_save_path("nope")


# -- stop / start / recheck / tags ----------------------------------------------


def test_stop_start_on_4x_use_pause_resume(v4):
    c = make_client()
    c.stop(rec.HYBRID_V1)
    c.start(rec.SHOW_ID)
    assert v4.calls("torrents/pause") == [{"hashes": rec.HYBRID_ID}]
    assert v4.calls("torrents/resume") == [{"hashes": rec.SHOW_ID}]
    assert v4.calls("torrents/stop") == v4.calls("torrents/start") == []


def test_stop_start_on_5x_use_stop_start(v5):
    c = make_client()
    c.stop(rec.SHOW_ID)
    c.start(rec.SHOW_ID)
    assert v5.calls("torrents/stop") == [{"hashes": rec.SHOW_ID}]
    assert v5.calls("torrents/start") == [{"hashes": rec.SHOW_ID}]
    assert v5.calls("torrents/pause") == v5.calls("torrents/resume") == []


@pytest.mark.parametrize("server", ["v4", "v5"])
def test_a_forced_start_is_set_force_start_on_either_version(server, request):
    fake = request.getfixturevalue(server)
    make_client().start(rec.HYBRID_V1, forced=True)
    assert fake.calls("torrents/setForceStart") == [{"hashes": rec.HYBRID_ID, "value": "True"}]
    assert fake.calls("torrents/start") == fake.calls("torrents/resume") == []


def test_stop_unknown_torrent(v5):
    with pytest.raises(UnknownTorrent):
        make_client().stop("1" * 40)
    assert v5.calls("torrents/stop") == []


def test_recheck(v4):
    make_client().recheck(rec.SHOW_ID)
    assert v4.calls("torrents/recheck") == [{"hashes": rec.SHOW_ID}]


def test_tags(v4):
    c = make_client()
    c.add_tags(rec.SHOW_ID, ["qbhook:moved", "x"])
    c.remove_tags(rec.SHOW_ID, "x")
    c.add_tags(rec.SHOW_ID, [])
    assert v4.calls("torrents/addTags") == [{"hashes": rec.SHOW_ID, "tags": "qbhook:moved,x"}]
    assert v4.calls("torrents/removeTags") == [{"hashes": rec.SHOW_ID, "tags": "x"}]
    with pytest.raises(BadRequest):
        c.add_tags(rec.SHOW_ID, ["a,b"])


def test_preferences(v4):
    c = make_client()
    assert c.preferences() == {"save_path": "/data/downloads"}
    c.set_preferences({"torrent_changed_tmm_enabled": False})
    body = v4.calls("app/setPreferences")[0]
    assert json.loads(body["json"]) == {"torrent_changed_tmm_enabled": False}
    assert c.default_save_path() == "/stash/data/downloads"


# -- the API's refresh lag (R68) --------------------------------------------------


def _preference_reads(rsps) -> int:
    return sum(1 for call in rsps.calls if call.request.url.endswith("app/preferences"))


@pytest.mark.parametrize(("prefs", "lag"), [({"refresh_interval": 30000}, 30.0), ({"refresh_interval": 0}, 0.0)])
def test_the_state_lag_is_the_refresh_interval_read_once_per_connection(rsps, prefs, lag):
    FakeQbt(rsps, preferences=prefs)
    c = make_client()
    assert c.state_lag_s == lag and c.state_lag_s == lag
    assert _preference_reads(rsps) == 1
    c.close()  # a next connection may find it changed
    assert c.state_lag_s == lag and _preference_reads(rsps) == 2
    c.forget_state_lag()  # and so may the executor's next run on this one (serve never closes it)
    assert c.state_lag_s == lag and _preference_reads(rsps) == 3


@pytest.mark.parametrize("prefs", [{}, {"refresh_interval": "slow"}, {"refresh_interval": True}])
def test_a_refresh_interval_not_reported_is_qbittorrents_default(rsps, caplog, prefs):
    FakeQbt(rsps, preferences=prefs)
    assert make_client().state_lag_s == 1.5
    assert "taking its default, 1500 ms" in caplog.text


@pytest.mark.parametrize("ms", [-1, 3_600_001])
def test_an_absurd_refresh_interval_is_refused_in_one_line(rsps, ms):
    FakeQbt(rsps, preferences={"refresh_interval": ms})
    c = make_client()
    with pytest.raises(QbtError) as e:
        c.state_lag_s  # noqa: B018
    assert f"refresh interval ({ms} ms)" in str(e.value) and "\n" not in str(e.value)


# -- retries and errors --------------------------------------------------------
# qbittorrent-api itself tries each request twice (once more after a 5xx or a
# connection error), so one of our attempts is two HTTP requests.


def _replace_info(rsps, fake, *bodies):
    rsps.remove(responses.POST, fake.url("torrents/info"))
    for body in bodies:
        rsps.add(responses.POST, fake.url("torrents/info"), **body)


def test_retries_5xx_then_succeeds(rsps):
    fake = FakeQbt(rsps)
    ok = {"json": [rec.V4_SHOW]}
    _replace_info(rsps, fake, {"status": 502, "body": "Bad Gateway"}, {"status": 500, "body": ""}, ok)
    assert make_client(retries=4).torrent(rec.SHOW_ID).name == "Show.S01"
    assert len(fake.calls("torrents/info")) == 3


def test_5xx_retries_are_bounded(rsps):
    fake = FakeQbt(rsps)
    _replace_info(rsps, fake, {"status": 503, "body": "busy"})
    with pytest.raises(QbtUnreachable, match="503"):  # R22: still "did not answer", a passing problem
        make_client(retries=4).torrents()
    assert len(fake.calls("torrents/info")) == 4  # the library's own retry counted in them


def test_only_no_answer_is_unreachable_a_refusal_is_not(rsps):
    # The executor pauses a demote past its deletes on QbtUnreachable only (``_passing``): a
    # refusal (HTTP 403 after a password change) never passes by itself and must not pause it.
    fake = FakeQbt(rsps)
    _replace_info(rsps, fake, {"body": requests.ConnectionError("refused")})
    with pytest.raises(QbtUnreachable) as down:
        make_client(retries=1).torrents()
    assert down.value.client == "qBittorrent 'main'"  # serve's health names it so: no URL
    _replace_info(rsps, fake, {"status": 403, "body": "Forbidden"})
    with pytest.raises(QbtError, match="403") as err:
        make_client(retries=1).torrents()
    assert not isinstance(err.value, QbtUnreachable)


def test_connection_error_retried_then_reported(rsps):
    fake = FakeQbt(rsps)
    _replace_info(rsps, fake, {"body": requests.ConnectionError("refused")})
    with pytest.raises(QbtError, match=r"cannot reach qBittorrent \(2 attempts\): .*refused") as err:
        make_client(retries=2).torrents()
    assert err.value.hint is None and "\n" not in str(err.value)  # one line: the url and the cause say it
    assert len(fake.calls("torrents/info")) == 2  # as many as the message says


@pytest.mark.parametrize("retries, sent", [(4, 4), (5, 4), (1, 2)])
def test_a_hung_qbittorrent_is_asked_at_most_the_attempts_the_message_counts(monkeypatch, retries, sent):
    """qbittorrent-api sends a timed-out request again itself: one of our attempts was two
    requests, and a hung qBittorrent cost twice retries x timeout."""
    timeouts = []

    def hung(self, request, **kw):
        timeouts.append(kw.get("timeout"))
        raise requests.Timeout("read timed out")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", hung)
    c = QbtClient("main", BASE, None, None, PM, retries=retries, backoff=0, timeout=7)
    # A timeout is no answer (serve's worker then waits, counting no attempt: worker._client_down).
    with pytest.raises(QbtUnreachable, match=rf"cannot reach qBittorrent \({sent} attempts\)"):
        c.version()
    assert timeouts == [7] * sent


def test_connection_error_then_success(rsps):
    fake = FakeQbt(rsps)
    _replace_info(
        rsps,
        fake,
        {"body": requests.ConnectionError("refused")},
        {"body": requests.ConnectionError("refused")},
        {"json": []},
    )
    assert make_client(retries=4).torrents() == []  # the library's retry, then ours


@pytest.mark.parametrize("status", [400, 401, 403, 409])
def test_4xx_not_retried(rsps, status):
    fake = FakeQbt(rsps)
    _replace_info(rsps, fake, {"status": status, "body": "nope"})
    with pytest.raises(QbtError, match=str(status)):
        make_client().torrents()
    # 403 makes qbittorrent-api log in again once and repeat: still no retry of ours
    expected = 2 if status == 403 else 1
    assert len(fake.calls("torrents/info")) == expected


def test_login_failed_4x_not_retried(rsps):
    fake = FakeQbt(rsps, login_body="Fails.")
    with pytest.raises(QbtError, match="login failed") as err:
        make_client().torrents()
    assert "password" in err.value.hint
    assert len(fake.calls("auth/login")) == 1
    assert fake.calls("torrents/info") == []


def test_login_failed_2_15_returns_401(rsps):
    # Web API 2.14+ answers a failed login with 401 instead of 200 "Fails."
    fake = FakeQbt(rsps, api=rec.V515_API, login_body="", login_status=401)
    with pytest.raises(QbtError, match="login failed"):
        make_client().version()
    assert len(fake.calls("auth/login")) == 1


def test_no_username_means_no_login(rsps):
    fake = FakeQbt(rsps)
    c = QbtClient("main", BASE, None, None, PM, retries=1, backoff=0)
    assert c.version() == rec.V4_VERSION
    assert fake.calls("auth/login") == []


# -- several instances ----------------------------------------------------------

BASE2 = "http://qbt2.test:8080"


def test_clients_find_across_instances(rsps):
    FakeQbt(rsps, torrents=[rec.V4_SHOW])
    FakeQbt(rsps, base=BASE2, api=rec.V5_API, torrents=[rec.V5_HYBRID])
    clients = Clients.from_config(
        [
            {"name": "a", "url": BASE, "username": "admin", "password": "x", "path_map": {"/data": "/stash/data"}},
            {
                "name": "b",
                "url": BASE2,
                "username": "admin",
                "password": "x",
                "path_map": [["/data", "/pool/data"]],
                "timeout": 5,
            },
        ],
        retries=1,
        backoff=0,
    )
    assert clients.names() == ["a", "b"]
    t = clients.torrent(rec.HYBRID_V1.upper())
    assert t.instance == "b" and t.save_path == "/pool/data/torrents/single"
    assert clients.client_for(t) is clients["b"]
    assert clients.find(rec.SHOW_ID).instance == "a"
    assert clients.find("0" * 40) is None
    with pytest.raises(UnknownTorrent, match="qBittorrent 'a', qBittorrent 'b'"):
        clients.torrent("0" * 40)
    with pytest.raises(QbtError):
        clients["c"]


def test_clients_same_torrent_on_two_instances_is_ambiguous(rsps):
    FakeQbt(rsps, torrents=[rec.V4_SHOW])
    FakeQbt(rsps, base=BASE2, torrents=[rec.V4_SHOW])
    clients = Clients([make_client(name="a"), make_client(name="b", base=BASE2)])
    assert {t.instance for t in clients.find_all(rec.SHOW_ID)} == {"a", "b"}
    with pytest.raises(QbtError, match="several"):
        clients.find(rec.SHOW_ID)


def test_clients_unreachable_instance_is_an_error_not_a_miss(rsps):
    FakeQbt(rsps, torrents=[])
    rsps.add(responses.POST, f"{BASE2}/api/v2/auth/login", body=requests.ConnectionError("down"))
    clients = Clients([make_client(name="a"), make_client(name="b", base=BASE2, retries=1)])
    with pytest.raises(QbtError, match="cannot reach"):
        clients.find(rec.SHOW_ID)


def test_clients_duplicate_names_rejected():
    with pytest.raises(QbtError, match="named"):
        Clients([make_client(name="a"), make_client(name="a", base=BASE2)])


PAGE = "<!DOCTYPE HTML>\n<html lang='en'>\n    <head>\n        <title>Error response</title>\n" + "x " * 400


@pytest.mark.parametrize(
    "status, body",
    [(500, "E" * 200_000 + "\n" * 1000), (501, PAGE), (409, PAGE)],
    ids=["huge-5xx", "page-5xx", "page-4xx"],
)
def test_an_error_body_is_quoted_in_one_bounded_line(rsps, caplog, status, body):
    """R80: a 5 MB answer was a 5 MB error line, logged whole at each retry; a web page (a URL
    that is not qBittorrent's) a line of escaped HTML. The body is quoted by the one rule for
    another program's text (``numbers.said``)."""
    fake = FakeQbt(rsps)
    _replace_info(rsps, fake, {"status": status, "body": body})
    with caplog.at_level("WARNING", logger=RETRY_LOG), pytest.raises(QbtError) as err:
        make_client(retries=4).torrents()
    line = err.value.message
    assert "\n" not in line and len(line) < 400 and line.endswith("…")
    assert f"refused (HTTP {status}): " in line
    assert "<!DOCTYPE HTML> <html lang='en'> <head> <title>" in line or body.startswith("E")
    retries = [r.getMessage() for r in caplog.records if r.name == RETRY_LOG]
    assert len(retries) == (1 if status >= 500 else 0)  # serve logs each retry: that line too
    assert all(len(r) < 400 for r in retries)
