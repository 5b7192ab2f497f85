from __future__ import annotations

import base64
import io
import json
import os
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbhook.events.model import Event
from qbhook.events.queue import QUEUE_DDL, JobQueue
from qbhook.events.server import AuthConfig, create_app
from qbhook.events.worker import WorkerHealth

from .conftest import fixture_names, load_fixture

TOKEN = "s3cret-token"
HDR = {"X-Qbhook-Token": TOKEN}
V1 = "8f3a1c2d4e5b6a7980c1d2e3f4a5b6c7d8e9f0a1"


class Recorder:
    def __init__(self, fail: bool = False):
        self.events: list[Event] = []
        self.fail = fail

    def __call__(self, event: Event) -> tuple[int, bool]:
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        self.events.append(event)
        return len(self.events), len(self.events) > 1


def make(auth=None, max_body=256 * 1024, fail=False):
    rec = Recorder(fail)
    app = create_app(enqueue=rec, auth=auth or AuthConfig(token=TOKEN), max_body=max_body)
    return app.test_client(), rec


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def strip_time(event: Event) -> dict:
    d = event.to_dict()
    d.pop("received_at")
    return d


def qbt_form(**overrides):
    fields = {
        "event": "added",
        "I": V1,
        "J": "-",
        "K": V1,
        "N": "A Name",
        "L": "tv",
        "G": "",
        "F": "/data/torrents/A Name",
        "R": "/data/torrents/A Name",
        "D": "/data/torrents",
        "C": "1",
        "Z": "9",
    }
    fields.update(overrides)
    return fields


# -- fixtures end to end -----------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in fixture_names() if not n.startswith("cross-seed")])
def test_arr_fixtures(name, expected):
    client, rec = make()
    want = expected[name]
    for url in ("/webhook/arr", f"/webhook/{name.split('-')[0]}"):
        rec.events.clear()
        resp = client.post(url, json=load_fixture(name), headers=HDR)
        if want["kind"] == "test":
            assert resp.status_code == 200 and resp.json["test"] is True
            assert rec.events == []
        elif want["kind"] == "ignored":
            assert resp.status_code == 200 and resp.json["ignored"] == want["raw_type"]
            assert rec.events == []
        else:
            assert resp.status_code == 202, resp.json
            assert resp.json == {"queued": 1, "coalesced": False}
            got = strip_time(rec.events[0])
            assert got == {k: v for k, v in want.items() if k != "coalesce_key"}


@pytest.mark.parametrize("name", [n for n in fixture_names() if n.startswith("cross-seed")])
def test_cross_seed_fixtures(name, expected):
    client, rec = make()
    resp = client.post(f"/webhook/cross-seed?token={TOKEN}", json=load_fixture(name))
    kind = expected[name]["kind"]
    assert resp.status_code == (202 if kind == "cross_seed_injected" else 200)
    assert len(rec.events) == (1 if kind == "cross_seed_injected" else 0)


def test_put_is_accepted_for_arr():
    client, rec = make()
    resp = client.put("/webhook/arr", json=load_fixture("radarr-download.json"), headers=HDR)
    assert resp.status_code == 202 and rec.events[0].source == "radarr"


def test_alias_mismatch_is_400():
    client, rec = make()
    resp = client.post("/webhook/lidarr", json=load_fixture("radarr-download.json"), headers=HDR)
    assert resp.status_code == 400 and "lidarr endpoint" in resp.json["error"]
    assert rec.events == []


def test_coalesced_flag_is_passed_through():
    client, _ = make()
    body = load_fixture("sonarr-download.json")
    client.post("/webhook/arr", json=body, headers=HDR)
    assert client.post("/webhook/arr", json=body, headers=HDR).json == {"queued": 2, "coalesced": True}


def test_enqueue_failure_is_503():
    client, _ = make(fail=True)
    resp = client.post("/webhook/arr", json=load_fixture("sonarr-download.json"), headers=HDR)
    assert resp.status_code == 503 and "could not queue" in resp.json["error"]


def test_test_event_is_answered_even_if_storage_is_down():
    client, _ = make(fail=True)
    assert client.post("/webhook/arr", json=load_fixture("sonarr-test.json"), headers=HDR).status_code == 200


def test_job_is_on_disk_before_202(tmp_path):
    path = tmp_path / "q.sqlite"
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(QUEUE_DDL)
    queue = JobQueue(conn)
    app = create_app(enqueue=queue.enqueue, auth=AuthConfig(token=TOKEN))
    resp = app.test_client().post("/hook/qbittorrent", data=qbt_form(), headers=HDR)
    assert resp.status_code == 202
    other = sqlite3.connect(path)
    row = other.execute("SELECT coalesce_key, state FROM event_jobs WHERE id = ?", (resp.json["queued"],)).fetchone()
    assert row == (f"torrent:{V1}", "pending")


def test_a_full_queue_answers_202_saying_the_event_was_folded_into_a_sweep(tmp_path):
    """Past server.max_pending a new subject adds no row; the answer is still 202 (the event is
    on disk, in the overflow sweep job; senders never retry a 503) and says so."""
    conn = sqlite3.connect(tmp_path / "q.sqlite", isolation_level=None, check_same_thread=False)
    conn.executescript(QUEUE_DDL)
    client = create_app(enqueue=JobQueue(conn, max_pending=3).enqueue, auth=AuthConfig(token=TOKEN)).test_client()
    answers = []
    for i in range(8):
        body = {
            "eventType": "Download",
            "series": {"path": f"/tv/show{i}"},
            "episodeFile": {"path": f"/tv/show{i}/e.mkv"},
        }
        answers.append(client.post("/webhook/sonarr", json=body, headers=HDR))
    resp = client.post("/hook/qbittorrent", data=qbt_form(event="finished"), headers=HDR)
    assert all(r.status_code == 202 for r in answers) and resp.status_code == 202
    assert [r.json.get("overflow", False) for r in answers] == [False] * 3 + [True] * 5
    assert resp.json["overflow"] is True and resp.json["coalesced"] is True
    assert resp.json["note"].startswith("queue full (server.max_pending)")
    assert conn.execute("SELECT COUNT(*) FROM event_jobs WHERE state = 'pending'").fetchone() == (3 + 1,)


def test_lone_surrogate_in_path_is_refused_before_the_queue(tmp_path):
    """No byte string decodes to U+D800: such a path names no file, and a queued job would
    fail at its first os.fsencode on every retry. Escaped bytes (U+DC80..U+DCFF) are paths."""
    conn = sqlite3.connect(tmp_path / "q.sqlite", check_same_thread=False)
    conn.executescript(QUEUE_DDL)
    queue = JobQueue(conn)
    app = create_app(enqueue=queue.enqueue, auth=AuthConfig(token=TOKEN))
    body = json.dumps(load_fixture("radarr-moviefiledelete.json")).replace("Remux-2160p.mkv", "\\ud800.mkv")
    resp = app.test_client().post("/webhook/arr", data=body, headers=HDR, content_type="application/json")
    assert resp.status_code == 400 and "lone UTF-16 surrogate" in resp.json["error"]
    assert sum(queue.counts().values()) == 0
    body = body.replace("\\ud800.mkv", "\\udcff.mkv")
    resp = app.test_client().post("/webhook/arr", data=body, headers=HDR, content_type="application/json")
    assert resp.status_code == 202
    assert os.fsencode(queue.get(resp.json["queued"]).paths[0]).endswith(b"\xff.mkv")


# -- qBittorrent hook endpoint ---------------------------------------------------------


def test_qbt_form():
    client, rec = make()
    resp = client.post("/hook/qbittorrent", data=qbt_form(N="a & b = c+d %41"), headers=HDR)
    assert resp.status_code == 202
    assert rec.events[0].hashes == (V1,) and rec.events[0].kind == "torrent_added"


def test_qbt_multipart():
    client, rec = make()
    resp = client.post(
        "/hook/qbittorrent", data=qbt_form(event="finished"), headers=HDR, content_type="multipart/form-data"
    )
    assert resp.status_code == 202 and rec.events[0].kind == "torrent_finished"


def test_qbt_json():
    client, _rec = make()
    resp = client.post("/hook/qbittorrent", json=qbt_form(), headers=HDR)
    assert resp.status_code == 202


def test_qbt_bad_hash_names_field():
    client, rec = make()
    resp = client.post("/hook/qbittorrent", data=qbt_form(I="xyz"), headers=HDR)
    assert resp.status_code == 400 and resp.json["error"].startswith("I: ")
    assert rec.events == []


def test_qbt_form_not_utf8():
    client, _ = make()
    resp = client.post(
        "/hook/qbittorrent", data=b"event=added&N=%ff%fe", headers=HDR, content_type="application/x-www-form-urlencoded"
    )
    assert resp.status_code == 400 and "UTF-8" in resp.json["error"]


def test_qbt_too_many_form_fields():
    client, _ = make()
    body = "&".join(f"x{i}=1" for i in range(500))
    resp = client.post("/hook/qbittorrent", data=body, headers=HDR, content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400


def test_qbt_wrong_content_type():
    client, _ = make()
    resp = client.post("/hook/qbittorrent", data="<xml/>", headers=HDR, content_type="text/xml")
    assert resp.status_code == 415 and "Content-Type" in resp.json["error"]


# -- authentication --------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Qbhook-Token": "wrong"},
        {"X-Qbhook-Token": ""},
        {"X-Qbhook-Token": "s3cret-tokén"},  # non-ASCII must be a 401, not a TypeError
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Token " + TOKEN},
    ],
)
def test_unauthenticated_is_401_with_challenge(headers):
    client, rec = make()
    resp = client.post("/webhook/arr", json=load_fixture("sonarr-download.json"), headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="qbhook"'
    assert "error" in resp.json and rec.events == []


@pytest.mark.parametrize("headers", [HDR, {"Authorization": f"Bearer {TOKEN}"}, {"authorization": f"bearer {TOKEN}"}])
def test_token_accepted(headers):
    client, _ = make()
    assert client.post("/webhook/arr", json=load_fixture("sonarr-download.json"), headers=headers).status_code == 202


def test_basic_auth():
    client, _ = make(auth=AuthConfig(username="sonarr", password="pä:ss"))
    body = load_fixture("sonarr-download.json")
    assert client.post("/webhook/arr", json=body, headers=basic("sonarr", "pä:ss")).status_code == 202
    assert client.post("/webhook/arr", json=body, headers=basic("sonarr", "pä:sx")).status_code == 401
    assert client.post("/webhook/arr", json=body, headers=basic("radarr", "pä:ss")).status_code == 401
    assert client.post("/webhook/arr", json=body, headers=HDR).status_code == 401  # no token configured


def test_both_configured_either_works():
    client, _ = make(auth=AuthConfig(username="u", password="p", token=TOKEN))
    body = load_fixture("radarr-download.json")
    assert client.post("/webhook/arr", json=body, headers=basic("u", "p")).status_code == 202
    assert client.post("/webhook/arr", json=body, headers=HDR).status_code == 202


def test_query_token_only_on_cross_seed():
    client, _ = make()
    assert client.post(f"/webhook/arr?token={TOKEN}", json=load_fixture("sonarr-download.json")).status_code == 401
    injected = load_fixture("cross-seed-results-injected.json")
    assert client.post(f"/webhook/cross-seed?token={TOKEN}", json=injected).status_code == 202
    assert client.post("/webhook/cross-seed?token=nope", json=injected).status_code == 401


# The *arr and cross-seed convention (issue 14): X-Api-Key header or ?apikey=, on every endpoint.
API_URLS = ["/webhook/arr", "/webhook/sonarr", "/webhook/radarr", "/webhook/cross-seed"]


@pytest.mark.parametrize("url", API_URLS)
def test_api_key_header_and_query_accepted_everywhere(url):
    client, rec = make()
    body = load_fixture("cross-seed-results-injected.json" if "cross" in url else "sonarr-download.json")
    if "radarr" in url:
        body = load_fixture("radarr-download.json")
    assert client.post(url, json=body, headers={"X-Api-Key": TOKEN}).status_code == 202
    assert client.post(url, json=body, headers={"x-api-key": TOKEN}).status_code == 202
    assert client.post(f"{url}?apikey={TOKEN}", json=body).status_code == 202
    assert len(rec.events) == 3


def test_api_key_on_the_qbittorrent_hook():
    client, _ = make()
    assert client.post("/hook/qbittorrent", data=qbt_form(), headers={"X-Api-Key": TOKEN}).status_code == 202
    assert client.post(f"/hook/qbittorrent?apikey={TOKEN}", data=qbt_form()).status_code == 202


@pytest.mark.parametrize(
    "url, headers",
    [
        ("/webhook/sonarr", {"X-Api-Key": "wrong"}),
        ("/webhook/sonarr", {"X-Api-Key": TOKEN + "x"}),
        ("/webhook/sonarr", {"X-Api-Key": TOKEN[:-1]}),
        ("/webhook/sonarr", {"X-Api-Key": "s3cret-tokén"}),
        ("/webhook/sonarr?apikey=wrong", {}),
        ("/webhook/sonarr?apikey=", {}),
        ("/webhook/sonarr?api_key=" + TOKEN, {}),
        ("/webhook/cross-seed?apikey=nope", {}),
    ],
)
def test_wrong_api_key_is_401(url, headers):
    client, rec = make()
    body = load_fixture("cross-seed-results-injected.json" if "cross" in url else "sonarr-download.json")
    resp = client.post(url, json=body, headers=headers)
    assert resp.status_code == 401 and rec.events == []
    assert "X-Api-Key" in resp.json["error"] and "apikey" in resp.json["error"]


def test_api_key_only_with_a_token_configured():
    client, _ = make(auth=AuthConfig(username="u", password="p"))
    body = load_fixture("sonarr-download.json")
    assert client.post("/webhook/sonarr", json=body, headers={"X-Api-Key": "p"}).status_code == 401
    assert client.post("/webhook/sonarr?apikey=p", json=body).status_code == 401


def test_api_keys_never_reach_the_logs(caplog):
    client, _ = make()
    body = load_fixture("sonarr-download.json")
    with caplog.at_level("DEBUG"):
        client.post(f"/webhook/sonarr?apikey={TOKEN}", json=body)
        client.post("/webhook/sonarr?apikey=guessed-key-123", json=body)
        client.post("/webhook/sonarr", json=body, headers={"X-Api-Key": "guessed-key-456"})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged  # the queued event was logged...
    assert TOKEN not in logged and "guessed-key" not in logged  # ...without any key


@pytest.mark.parametrize("auth", [AuthConfig(), AuthConfig(username="u"), AuthConfig(token="")])
@pytest.mark.parametrize("url", ["/webhook/arr", "/webhook/sonarr", "/webhook/cross-seed", "/hook/qbittorrent"])
def test_no_credentials_configured_refuses_everything(auth, url):
    client, _rec = make(auth=auth)
    resp = client.post(url, json={"eventType": "Test"}, headers=HDR | basic("u", ""))
    assert resp.status_code == 503 and resp.json == {"error": "no credentials configured"}


# -- cross-site requests (a browser with cached Basic credentials) ---------------------

BROWSER_AUTH = AuthConfig(username="admin", password="pw")


def _simple_posts() -> list[tuple[str, str, bytes]]:
    """What a page elsewhere can post without a preflight: forms and text/plain, to each sender's route."""
    radarr = json.dumps(load_fixture("radarr-moviedelete.json")).encode()
    cross_seed = json.dumps(load_fixture("cross-seed-results-injected.json")).encode()
    form = "&".join(f"{k}={v}" for k, v in qbt_form(event="finished").items()).encode()
    return [
        ("/hook/qbittorrent", "application/x-www-form-urlencoded", form),
        ("/webhook/radarr", "text/plain;charset=UTF-8", radarr),
        ("/webhook/arr", "text/plain", radarr),
        ("/webhook/cross-seed", "text/plain", cross_seed),
    ]


@pytest.mark.parametrize(
    "browser",
    [
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example"},  # an older browser: no Sec-Fetch-*
        {"Origin": "null"},  # a sandboxed frame, a data: URL
        {"Origin": "http://localhost:8080"},  # another port: qBittorrent's WebUI, say
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
@pytest.mark.parametrize(("url", "ctype", "data"), _simple_posts())
def test_a_cross_site_post_is_refused_with_403_and_nothing_queued(browser, url, ctype, data):
    client, rec = make(auth=BROWSER_AUTH)
    headers = {**basic("admin", "pw"), **browser, "Content-Type": ctype}
    resp = client.post(url, data=data, headers=headers)
    assert resp.status_code == 403, resp.get_data()
    assert resp.json["error"].startswith("cross-site request refused (")
    assert "\n" not in resp.json["error"]
    assert rec.events == []


@pytest.mark.parametrize(("url", "ctype", "data"), _simple_posts())
def test_senders_without_origin_are_still_accepted(url, ctype, data):
    """*arr, cross-seed and curl send neither Origin nor Sec-Fetch-Site."""
    client, rec = make(auth=BROWSER_AUTH)
    resp = client.post(url, data=data, headers={**basic("admin", "pw"), "Content-Type": ctype})
    assert resp.status_code == 202, resp.get_data()
    assert len(rec.events) == 1


def test_an_origin_no_browser_sends_is_not_judged():
    # Some Node fetch releases (cross-seed's runtime) sent a bogus Origin of their own (undici
    # #3235); a browser sends a serialized origin or "null", and only those tell a cross-site post.
    client, rec = make(auth=BROWSER_AUTH)
    resp = client.post(
        "/webhook/arr",
        json=load_fixture("radarr-download.json"),
        headers={**basic("admin", "pw"), "Origin": "client"},
    )
    assert resp.status_code == 202 and len(rec.events) == 1


@pytest.mark.parametrize(
    "own",
    [
        {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "HTTP://LOCALHOST"},
        {"Sec-Fetch-Site": "none"},  # typed or bookmarked, not sent by a page
    ],
)
def test_a_same_origin_post_is_accepted(own):
    client, rec = make(auth=BROWSER_AUTH)
    resp = client.post(
        "/webhook/arr", json=load_fixture("radarr-download.json"), headers={**basic("admin", "pw"), **own}
    )
    assert resp.status_code == 202 and len(rec.events) == 1


def test_reads_from_another_site_are_not_refused():
    """A page elsewhere may make a browser GET; it never sees the answer, and a GET changes nothing."""
    client, _ = make(auth=BROWSER_AUTH)
    assert (
        client.get("/healthz", headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}).status_code
        == 200
    )


def test_healthz_needs_no_auth():
    client, _ = make(auth=AuthConfig())
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json == {"ok": True}


def test_healthz_reports_the_worker_without_its_error_text():
    """/healthz needs no credentials: it says how the worker does, never the last error's text
    (it names catalog paths, torrents, client URLs: finding 7)."""
    rec = Recorder()
    health = WorkerHealth(fail_threshold=1)
    health.beat("idle")
    client = create_app(enqueue=rec, auth=AuthConfig(token=TOKEN), health=health.report).test_client()
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json == {"ok": True, "worker": "worker idle"}
    health.failed("QbtError: qBittorrent 'main' (http://user@10.0.0.5:8080): /srv/secret-name.mkv")
    assert "secret-name" in health.report().reason  # the log and the status page keep it
    resp = client.get("/healthz")
    assert resp.status_code == 503
    assert resp.json["error"].startswith("worker failing: 1 attempts in a row")
    assert "secret-name" not in resp.text and "10.0.0.5" not in resp.text and "QbtError" not in resp.text
    # Intake keeps answering meanwhile: events are on disk, the worker catches up later.
    assert client.post("/webhook/sonarr", json=load_fixture("sonarr-download.json"), headers=HDR).status_code == 202


def test_healthz_survives_a_broken_probe():
    def probe():
        raise RuntimeError("boom")

    client = create_app(enqueue=Recorder(), auth=AuthConfig(token=TOKEN), health=probe).test_client()
    resp = client.get("/healthz")
    assert resp.status_code == 503 and "boom" not in resp.text  # what broke is in the log only


def test_auth_config_repr_hides_secrets():
    assert TOKEN not in repr(AuthConfig(username="u", password="pw-secret", token=TOKEN))
    assert "pw-secret" not in repr(AuthConfig(username="u", password="pw-secret"))


# -- size, format, routing -------------------------------------------------------------


def test_oversized_body_with_length_is_413():
    client, rec = make(max_body=1024)
    body = load_fixture("sonarr-download.json")
    body["padding"] = "x" * 2000
    resp = client.post("/webhook/arr", json=body, headers=HDR)
    assert resp.status_code == 413 and "1024" in resp.json["error"]
    assert rec.events == []


def test_oversized_body_without_length_is_413():
    client, rec = make(max_body=1024)
    data = json.dumps({"eventType": "Download", "x": "y" * 5000}).encode()
    resp = client.post(
        "/webhook/arr",
        input_stream=io.BytesIO(data),
        headers=HDR | {"Content-Type": "application/json"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert resp.status_code == 413 and rec.events == []


def test_oversized_form_is_413():
    client, rec = make(max_body=512)
    resp = client.post("/hook/qbittorrent", data=qbt_form(N="n" * 1000), headers=HDR)
    assert resp.status_code == 413 and rec.events == []


def test_too_many_form_fields_says_so_not_body_too_large():
    # Werkzeug raises RequestEntityTooLarge past 1,000 form parts: a 60 KB body was answered
    # "body larger than 262144 bytes".
    client, rec = make()
    body = "".join(f"--b\r\nContent-Disposition: form-data; name=f{i}\r\n\r\nv\r\n" for i in range(1100)) + "--b--\r\n"
    resp = client.post("/hook/qbittorrent", data=body, headers=HDR, content_type="multipart/form-data; boundary=b")
    assert resp.status_code == 413 and resp.json["error"] == "too many form fields" and rec.events == []


def test_unauthenticated_oversized_is_401_first():
    client, _ = make(max_body=10)
    assert client.post("/webhook/arr", data="x" * 100, content_type="application/json").status_code == 401


@pytest.mark.parametrize(
    "data,fragment",
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'"Download"', "expected a JSON object"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
        (b'{"eventType": 1' + b"1" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_bad_json_is_400(data, fragment):
    client, rec = make(max_body=512 * 1024)
    resp = client.post("/webhook/arr", data=data, headers=HDR, content_type="application/json")
    assert resp.status_code == 400 and fragment in resp.json["error"]
    assert rec.events == []


@pytest.mark.parametrize(
    "ctype", ["text/html", "application/x-www-form-urlencoded", "multipart/form-data", "image/png"]
)
def test_wrong_content_type_on_json_endpoints(ctype):
    client, rec = make()
    for url in ("/webhook/arr", "/webhook/cross-seed"):
        resp = client.post(url, data=json.dumps(load_fixture("sonarr-download.json")), headers=HDR, content_type=ctype)
        assert resp.status_code == 415 and ctype in resp.json["error"]
    assert rec.events == []


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/json; charset=utf-8", "application/vnd.x+json"])
def test_json_tolerated_content_types(ctype):
    client, _rec = make()
    data = json.dumps(load_fixture("sonarr-download.json"))
    kwargs = {"content_type": ctype} if ctype else {}
    assert client.post("/webhook/arr", data=data, headers=HDR, **kwargs).status_code == 202


def test_method_and_route_errors_are_json():
    client, _ = make()
    resp = client.get("/webhook/arr", headers=HDR)
    assert resp.status_code == 405 and "error" in resp.json
    resp = client.post("/nope", headers=HDR)
    assert resp.status_code == 404 and "error" in resp.json


# -- fuzz ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=30,
)
ARR_KEYS = [
    "eventType",
    "instanceName",
    "downloadId",
    "downloadClient",
    "downloadClientType",
    "isUpgrade",
    "deletedFiles",
    "series",
    "movie",
    "artist",
    "author",
    "episodeFile",
    "movieFile",
    "trackFiles",
    "bookFiles",
    "episodeFiles",
    "renamedEpisodeFiles",
    "sourcePath",
    "destinationPath",
    "deleteReason",
    "extra",
    "event",
    "I",
    "J",
    "K",
    "F",
    "instance",
]
EVENT_TYPES = [
    "Test",
    "Download",
    "Rename",
    "EpisodeFileDelete",
    "MovieFileDelete",
    "BookFileDelete",
    "SeriesDelete",
    "MovieDelete",
    "AlbumDelete",
    "Grab",
    "Health",
    "added",
    "finished",
]
file_obj = st.fixed_dictionaries(
    {},
    optional={
        k: json_values | st.text(max_size=30)
        for k in ["path", "sourcePath", "relativePath", "previousPath", "recycleBinPath"]
    },
)
hashlike = st.sampled_from([V1, V1.upper(), "-", "", "%K", "zz" * 20, "a" * 64]) | st.text(max_size=64)
shaped = st.fixed_dictionaries(
    {"eventType": st.sampled_from(EVENT_TYPES) | json_values},
    optional={
        **{k: json_values for k in ARR_KEYS if k != "eventType"},
        "downloadId": hashlike,
        "I": hashlike,
        "K": hashlike,
        "event": st.sampled_from(["added", "finished", "TEST", "RESULTS"]),
        "episodeFile": file_obj | json_values,
        "trackFiles": st.lists(file_obj | json_values, max_size=3),
        "series": st.fixed_dictionaries({}, optional={"path": json_values | st.text()}) | json_values,
        "extra": st.fixed_dictionaries(
            {"event": st.sampled_from(["TEST", "RESULTS", "X"]) | json_values},
            optional={
                "result": st.sampled_from(["INJECTED", "SAVED", "FAILURE"]) | json_values,
                "infoHashes": st.lists(hashlike, max_size=3) | json_values,
                "searchee": st.fixed_dictionaries(
                    {}, optional={"infoHash": hashlike | json_values, "path": json_values}
                )
                | json_values,
            },
        )
        | json_values,
    },
)
URLS = [
    "/webhook/arr",
    "/webhook/sonarr",
    "/webhook/radarr",
    "/webhook/lidarr",
    "/webhook/readarr",
    "/webhook/cross-seed",
    "/hook/qbittorrent",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=json_values | shaped, url=st.sampled_from(URLS))
def test_fuzz_never_5xx_and_never_enqueues_on_4xx(payload, url):
    client, rec = make()
    resp = client.post(url, data=json.dumps(payload), headers=HDR, content_type="application/json")
    assert resp.status_code < 500, resp.get_data(as_text=True)
    assert resp.is_json
    if resp.status_code >= 400:
        assert rec.events == [] and "error" in resp.json
    elif resp.status_code == 202:
        assert len(rec.events) == 1 and rec.events[0].is_work
    else:
        assert resp.status_code == 200 and rec.events == []


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    ctype=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""]
    ),
)
def test_fuzz_raw_bytes(data, ctype):
    client, rec = make()
    for url in ("/webhook/arr", "/hook/qbittorrent", "/webhook/cross-seed"):
        resp = client.post(url, data=data, headers=HDR | ({"Content-Type": ctype} if ctype else {}))
        assert resp.status_code < 500
        if resp.status_code >= 400:
            assert rec.events == []
        rec.events.clear()


def _leaves(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, path + (i,))
    yield path


def _replace(doc, path, new):
    if not path:
        return {} if new is _DELETE else new
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if new is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return doc


_DELETE = object()
SEEDS = [(n, "/webhook/cross-seed" if n.startswith("cross-seed") else "/webhook/arr") for n in fixture_names()]
SEEDS.append(("qbt", "/hook/qbittorrent"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), data=st.data())
def test_fuzz_mutated_fixtures(seed, data):
    """Real payloads with a few values replaced or removed: reaches deep into the parsers."""
    name, url = seed
    doc = qbt_form() if name == "qbt" else load_fixture(name)
    paths = list(_leaves(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_leaves(doc))
        path = data.draw(st.sampled_from(paths))
        new = data.draw(st.just(_DELETE) | json_values | hashlike)
        doc = _replace(doc, path, new)
    client, rec = make()
    resp = client.post(url + f"?token={TOKEN}", data=json.dumps(doc), headers=HDR, content_type="application/json")
    assert resp.status_code < 500, resp.get_data(as_text=True)
    if resp.status_code >= 400:
        assert rec.events == [] and "error" in resp.json
    elif resp.status_code == 202:
        assert len(rec.events) == 1 and rec.events[0].is_work
    else:
        assert rec.events == []
