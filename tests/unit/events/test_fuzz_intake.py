"""Fuzzing the event intake with a real queue: issue 9's "≥ 10,000 cases each" proof.

Every body goes through the Flask app's test client (``create_app``) into a real
``JobQueue`` on a fresh SQLite catalog (``qbhook.catalog.db.connect``: the real schema).
After every request:

- the answer is 2xx or 4xx, JSON, and a 4xx carries a one-line ``error`` (never a 5xx,
  never a traceback: Flask turns an escaped exception into a 500, which fails here);
- the queue agrees with the answers: the events stored (``SUM(event_count)``) equal the
  number of 202s, the 202's job exists, is pending and loads back (``JobQueue.get``), and
  every path it holds encodes to bytes (``os.fsencode``: JSON's lone surrogates name no
  file and would fail the job on every retry); a 200 or 4xx adds nothing;

and at the end ``PRAGMA integrity_check`` is ``ok`` and every job loads.

One test per source (*arr, cross-seed, the qBittorrent hook's wire format), each
``FUZZ_EXAMPLES`` (10,000) cases. The catalog runs with ``synchronous=OFF``: what is under
test is consistency, not durability across power loss (test_queue covers crashes), and
10,000 fsyncs would be most of the minute.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbhook.catalog.db import connect
from qbhook.events.queue import JobQueue
from qbhook.events.server import AuthConfig, create_app

from .conftest import fixture_names, load_fixture

# QBHOOK_FUZZ_EXAMPLES lowers it for a quick local look; CI runs the full count.
FUZZ_EXAMPLES = int(os.environ.get("QBHOOK_FUZZ_EXAMPLES", "10000"))
TOKEN = "fuzz-token"
HDR = {"X-Qbhook-Token": TOKEN}
V1 = "8f3a1c2d4e5b6a7980c1d2e3f4a5b6c7d8e9f0a1"
V2 = "5c2b0f7a9e1d3c5b7a9f1e3d5c7b9a1f3e5d7c9b1a3f5e7d9c1b3a5f7e9d1c3b"

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,  # the count must be the count: no replayed examples from earlier runs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


class Intake:
    """The app over a real queue, with the bookkeeping the properties need."""

    def __init__(self, tmp_path):
        self.conn = connect(tmp_path / "catalog.sqlite", check_same_thread=False)
        self.conn.execute("PRAGMA synchronous = OFF")
        self.queue = JobQueue(self.conn)
        self.client = create_app(enqueue=self.queue.enqueue, auth=AuthConfig(token=TOKEN)).test_client()
        self.accepted = 0
        self.statuses: dict[int, int] = {}
        self.started = (time.perf_counter(), time.process_time())

    def post(self, url: str, data: bytes, content_type: str | None, headers=HDR):
        kwargs = {"content_type": content_type} if content_type is not None else {}
        resp = self.client.post(url, data=data, headers=headers, **kwargs)
        status = resp.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        text = resp.get_data(as_text=True)
        assert 200 <= status < 500, (status, url, data[:300], text)
        assert "Traceback" not in text
        assert resp.is_json, text
        body = resp.json
        if status >= 400:
            assert isinstance(body.get("error"), str) and body["error"], body
            assert "\n" not in body["error"], body["error"]
        if status == 202:
            self.accepted += 1
            job = self.queue.get(body["queued"])
            assert job is not None and job.state == "pending", body
            # A queued path must name a file: the worker's first os.fsencode must not fail.
            for path in job.paths:
                os.fsencode(path)
        stored = self.conn.execute("SELECT COALESCE(SUM(event_count), 0) FROM event_jobs").fetchone()[0]
        assert stored == self.accepted, (status, url, data[:300], text)
        return resp

    def check_end(self, *, min_accepted: int = 1):
        assert self.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        jobs = self.queue.list(limit=10**9)
        assert sum(j.event_count for j in jobs) == self.accepted
        assert (
            self.conn.execute(
                "SELECT COUNT(*) FROM event_jobs WHERE state = 'pending' GROUP BY coalesce_key HAVING COUNT(*) > 1"
            ).fetchall()
            == []
        )
        # The fuzz must reach the queue, not only the parsers' error paths.
        assert self.accepted >= min_accepted, self.statuses
        wall, cpu = time.perf_counter() - self.started[0], time.process_time() - self.started[1]
        print(
            f"\n{sum(self.statuses.values())} requests, statuses {dict(sorted(self.statuses.items()))}, "
            f"{len(jobs)} jobs; {wall:.0f} s wall, {cpu:.0f} s CPU"
        )


# -- strategies shared by the sources ---------------------------------------------------

# Text as hostile senders write it: control characters, lone surrogates (JSON can say
# "\ud800"), escaped bytes, option-like and placeholder-like strings.
odd_text = st.text(st.characters(exclude_categories=()), max_size=16) | st.sampled_from(
    ["", "-", "--", "--help", "%F", "%K", "\ud800", "\udcff", "a\x00b", "\n", "../../etc", "/data/./x//y", "é" * 5]
)
# Mostly fresh hashes: a few fixed ones exercise coalescing, but thousands of events merged
# into one job make every later merge rewrite a job of thousands of paths.
rand_hash = st.binary(min_size=20, max_size=20).map(bytes.hex) | st.binary(min_size=32, max_size=32).map(bytes.hex)
hashlike = rand_hash | st.sampled_from([V1, V1.upper(), V2, "-", "", "%K", "zz" * 20, "a" * 63, " " + V1]) | odd_text
# Kept small: Hypothesis spends more time drawing deep values than the app spends on them,
# and 10,000 cases must fit in the minute.
json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_text
json_values = st.recursive(
    json_scalar,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(odd_text, children, max_size=3),
    max_leaves=4,
)
path_text = st.sampled_from(["/data/media/tv/Show/S01E01.mkv", "/data/torrents/x", "relative/x.mkv"]) | odd_text


def dump(value) -> bytes:
    """JSON as a sender would post it; lone surrogates become \\ud800 escapes."""
    return json.dumps(value).encode()


def _leaves(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    yield path


_DELETE = object()


@st.composite
def mutated(draw, docs):
    """A real payload with a few values replaced or removed: reaches deep into the parsers."""
    doc = json.loads(json.dumps(draw(st.sampled_from(docs))))
    for _ in range(draw(st.integers(0, 2))):
        path = draw(st.sampled_from(list(_leaves(doc))))
        new = draw(st.just(_DELETE) | json_scalar | hashlike | path_text | st.just([]) | st.just({}))
        if not path:
            doc = {} if new is _DELETE else new
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if new is _DELETE:
            del parent[path[-1]]
        else:
            parent[path[-1]] = new
    return doc


raw_bodies = st.binary(max_size=200) | st.sampled_from([b"", b" ", b"{", b"[]", b"null", b"1" * 5000, b"[" * 5000])
content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/vnd.x+json",
        "image/png",
        None,
    ]
)


# -- *arr -------------------------------------------------------------------------------

ARR_FIXTURES = [load_fixture(n) for n in fixture_names() if not n.startswith("cross-seed")]
ARR_URLS = ["/webhook/arr", "/webhook/sonarr", "/webhook/radarr", "/webhook/lidarr", "/webhook/readarr"]
EVENT_TYPES = [
    "Test",
    "Download",
    "Rename",
    "EpisodeFileDelete",
    "MovieFileDelete",
    "BookFileDelete",
    "TrackFileDelete",
    "SeriesDelete",
    "MovieDelete",
    "AlbumDelete",
    "AuthorDelete",
    "Grab",
    "Health",
]
file_obj = st.dictionaries(
    st.sampled_from(["path", "sourcePath", "relativePath", "previousPath", "recycleBinPath"]),
    path_text | json_scalar,
    max_size=2,
)
ARR_KEYS = [
    "instanceName",
    "downloadId",
    "downloadClient",
    "downloadClientType",
    "isUpgrade",
    "deleteReason",
    "series",
    "movie",
    "artist",
    "author",
    "episodeFile",
    "movieFile",
    "trackFile",
    "bookFile",
    "trackFiles",
    "bookFiles",
    "episodeFiles",
    "renamedEpisodeFiles",
    "renamedMovieFiles",
    "renamedTrackFiles",
    "deletedFiles",
    "sourcePath",
    "destinationPath",
]
arr_value = st.one_of(
    hashlike,
    path_text,
    json_scalar,
    file_obj,
    st.lists(file_obj, max_size=2),
    st.fixed_dictionaries({"path": path_text}),
    st.fixed_dictionaries({"folderPath": path_text}),
)
arr_shaped = st.builds(
    lambda event_type, rest: {"eventType": event_type, **rest},
    st.sampled_from(EVENT_TYPES) | json_scalar,
    st.dictionaries(st.sampled_from(ARR_KEYS), arr_value, max_size=4),
)


def test_fuzz_arr_webhooks(tmp_path):
    intake = Intake(tmp_path)

    @FUZZ
    @given(
        body=st.one_of(
            st.builds(dump, arr_shaped),
            st.builds(dump, mutated(ARR_FIXTURES)),
            st.builds(dump, mutated(ARR_FIXTURES)),
            st.builds(dump, json_values),
            raw_bodies,
        ),
        url=st.sampled_from(ARR_URLS),
        ctype=st.sampled_from(["application/json"] * 6) | content_types,
    )
    def case(body, url, ctype):
        intake.post(url, body, ctype)

    case()
    intake.check_end(min_accepted=FUZZ_EXAMPLES // 20)


# -- cross-seed -------------------------------------------------------------------------

CROSS_SEED_FIXTURES = [load_fixture(n) for n in fixture_names() if n.startswith("cross-seed")]
cross_seed_shaped = st.fixed_dictionaries(
    {},
    optional={
        "title": odd_text,
        "body": odd_text,
        "extra": st.fixed_dictionaries(
            {"event": st.sampled_from(["RESULTS", "TEST", "X"]) | json_values},
            optional={
                "result": st.sampled_from(["INJECTED", "SAVED", "FAILURE"]) | json_values,
                "name": odd_text,
                "infoHashes": st.lists(hashlike, max_size=4) | json_values,
                "trackers": st.lists(odd_text, max_size=2),
                "searchee": st.fixed_dictionaries(
                    {},
                    optional={
                        "infoHash": hashlike | json_values,
                        "path": path_text | json_values,
                        "clientHost": odd_text | json_values,
                        "source": odd_text,
                    },
                )
                | json_values,
            },
        )
        | json_values,
    },
)


# Mostly well-formed injections, so that the queue sees plenty of work.
cross_seed_injected = st.fixed_dictionaries(
    {
        "extra": st.fixed_dictionaries(
            {
                "event": st.just("RESULTS"),
                "result": st.just("INJECTED"),
                "infoHashes": st.lists(
                    rand_hash | rand_hash | st.sampled_from([V1, V2, V1.upper()]) | hashlike, max_size=3
                ),
                "searchee": st.fixed_dictionaries(
                    {"infoHash": rand_hash | rand_hash | st.sampled_from([V1, V2]) | hashlike},
                    optional={"path": path_text, "clientHost": odd_text},
                ),
            }
        )
    }
)


def test_fuzz_cross_seed_webhooks(tmp_path):
    intake = Intake(tmp_path)

    @FUZZ
    @given(
        body=st.one_of(
            st.builds(dump, cross_seed_shaped),
            st.builds(dump, cross_seed_injected),
            st.builds(dump, mutated(CROSS_SEED_FIXTURES)),
            st.builds(dump, json_values),
            raw_bodies,
        ),
        query_token=st.booleans(),
        ctype=st.sampled_from(["application/json"] * 6) | content_types,
    )
    def case(body, query_token, ctype):
        # cross-seed can only put its credentials in the URL.
        if query_token:
            intake.post(f"/webhook/cross-seed?token={TOKEN}", body, ctype, headers={})
        else:
            intake.post("/webhook/cross-seed", body, ctype)

    case()
    intake.check_end(min_accepted=FUZZ_EXAMPLES // 20)


# -- the qBittorrent hook's wire format --------------------------------------------------

QBT_NAMES = ("event", "I", "J", "K", "N", "L", "G", "F", "R", "D", "C", "Z", "instance")
# The ones the script sends (those qbhook reads), by their place in QBT_NAMES.
SCRIPT_SENT = (0, 1, 2, 3, 7, 12)


def script_fields(values) -> list[tuple[str, bytes]]:
    """The (name, value) pairs hooks/qbt-hook.sh sends for these values, in its order."""
    return [(QBT_NAMES[i], values[i]) for i in SCRIPT_SENT if i < len(values)]


def script_form(values) -> bytes:
    """What hooks/qbt-hook.sh posts for these values: each byte percent-encoded, or, for a
    value that is not UTF-8, ``NAME.hex=<hex>``. test_fuzz_hook_argv checks this against
    the real script."""
    parts = []
    for name, raw in script_fields(values):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            parts.append(f"{name}.hex={raw.hex()}".encode())
        else:
            parts.append(name.encode() + b"=" + b"".join(b"%%%02x" % c for c in raw))
    return b"&".join(parts)


argv_bytes = st.one_of(
    st.binary(max_size=30),
    st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),  # CESU-style surrogates too
    st.text(st.characters(max_codepoint=255), max_size=20).map(lambda t: t.encode("latin-1")),
    st.sampled_from([b"", b"-", b"--", b"--help", b"-x", b"%F", b"\n", b"caf\xe9", b"\xed\xa0\x80", b"\xc0\xaf"]),
).map(lambda b: b.replace(b"\0", b""))  # argv cannot hold NUL
# Mostly hashes or qBittorrent's "nothing here" spellings (one bad value refuses the
# event); one in ten any bytes. Mostly fresh hashes (a digest of a drawn number: cheap to
# draw, and Hypothesis's favourite zero bytes would pile every event into one job).
_FIXED = [V1, V1.upper(), V2, "-", "", "%K"]


def _pick_hash(choice: tuple[int, int, bytes]) -> bytes:
    branch, number, junk = choice
    if branch == 0:
        return junk.replace(b"\0", b"")
    if branch <= 3:
        return _FIXED[number % len(_FIXED)].encode()
    digest = hashlib.sha256 if number % 2 else hashlib.sha1
    return digest(str(number).encode()).hexdigest().encode()


hash_bytes = st.tuples(st.integers(0, 9), st.integers(0, 2**32), st.binary(max_size=12)).map(_pick_hash)
event_bytes = st.sampled_from([b"added", b"finished"] * 8 + [b"deleted", b"--help", b"", b"add\xff"])
# N (name), F (content path) and instance get the full range; the fields no parser reads
# (L, G, R, D, C, Z) a few odd values, to keep the drawing cheap.
minor_bytes = st.sampled_from([b"", b"tv-sonarr", b"a,b", b"caf\xe9", b"--", b"\n", b"\xff", b"3"])
# F: qBittorrent's %F is absolute, and a relative one is refused; mostly absolute, so that most
# events still get past it to the checks after.
content_bytes = st.one_of(*[argv_bytes.map(lambda b: b"/" + b)] * 3, argv_bytes)
qbt_argv = st.tuples(
    event_bytes,
    hash_bytes,
    hash_bytes,
    hash_bytes,
    argv_bytes,
    minor_bytes,
    minor_bytes,
    content_bytes,
    minor_bytes,
    minor_bytes,
    minor_bytes,
    minor_bytes,
    argv_bytes,
)


def form_junk(values):
    return st.lists(
        st.tuples(st.sampled_from([*QBT_NAMES, *[n + ".hex" for n in QBT_NAMES], "x", ""]), argv_bytes), max_size=3
    ).map(
        lambda extra: (
            script_form(values)
            + b"".join(b"&" + k.encode() + b"=" + b"".join(b"%%%02x" % c for c in v) for k, v in extra)
        )
    )


def test_fuzz_qbittorrent_hook_bodies(tmp_path):
    intake = Intake(tmp_path)

    @FUZZ
    @given(
        data=st.data(),
        kind=st.sampled_from(["script"] * 5 + ["junk", "json", "raw", "multipart"]),
    )
    def case(data, kind):
        values = data.draw(qbt_argv)
        if kind == "script":
            body, ctype = script_form(values), "application/x-www-form-urlencoded"
        elif kind == "junk":
            body, ctype = data.draw(form_junk(values)), "application/x-www-form-urlencoded"
        elif kind == "json":
            doc = {n: os.fsdecode(v) for n, v in zip(QBT_NAMES, values)}
            doc.update(
                data.draw(st.dictionaries(st.sampled_from([*QBT_NAMES, "F.hex", "K.hex"]), json_values, max_size=2))
            )
            body, ctype = dump(doc), "application/json"
        elif kind == "multipart":
            body, ctype = data.draw(raw_bodies), "multipart/form-data; boundary=x"
        else:
            body, ctype = data.draw(raw_bodies), data.draw(content_types)
        resp = intake.post("/hook/qbittorrent", body, ctype)
        if kind == "script" and resp.status_code == 202:
            # Byte-exact: the path queued is the bytes qBittorrent passed.
            job = intake.queue.get(resp.json["queued"])
            if values[7] and not values[7].startswith(b"%"):
                assert values[7] in {os.fsencode(p) for p in job.paths}

    case()
    intake.check_end(min_accepted=FUZZ_EXAMPLES // 10)


def test_harness_notices_a_broken_queue(tmp_path):
    """Guard on the harness itself: a broken queue must make these properties fail."""
    intake = Intake(tmp_path)
    intake.conn.execute("DROP TABLE event_jobs")
    with pytest.raises((AssertionError, sqlite3.Error)):
        intake.post("/hook/qbittorrent", script_form([b"added", V1.encode()]), "application/x-www-form-urlencoded")
