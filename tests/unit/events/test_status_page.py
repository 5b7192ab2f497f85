"""The status page and /metrics over a real SQLite catalog built by the real scanner,
served by the real Flask app (test client): authentication, escaping, secrets, numbers."""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import time

import pytest
from markupsafe import escape

from qbhook.catalog import state
from qbhook.catalog.hashing import ensure_hashes
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.events.model import Event
from qbhook.events.queue import JobQueue
from qbhook.events.server import create_app
from qbhook.events.status import PENDING_SHOWN, StatusSource, catalog_breakdown, redactor, secrets_of
from qbhook.events.views import views
from qbhook.move.journal import Journal
from tests.helpers import make_config, put

TOKEN = "page-token-0123456789abcdef"
PASSWORD = "basic-pass-9876543210"
QBT_PASSWORD = "qbt-pass-5555555555"
HOSTILE = "<script>alert(1)</script>"
SEED = "data/media/torrents/seeding"


def _cfg(tmp_path):
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    cfg = make_config(
        tmp_path / "catalog.sqlite",
        stash,
        pool,
        qbt=[{"name": "main", "url": "http://127.0.0.1:1", "username": "admin", "password": "placeholder"}],
    )
    return dataclasses.replace(
        cfg,
        server=dataclasses.replace(cfg.server, username="admin", password=PASSWORD, token=TOKEN),
        qbittorrent=tuple(dataclasses.replace(q, password=QBT_PASSWORD) for q in cfg.qbittorrent),
    )


@pytest.fixture
def world(tmp_path):
    """Two pools as plain folders with a scanned, hashed catalog:
    stash: 3000 B library-linked (seed + library link), 1000 B seed-only duplicated on pool,
           500 B seed-only, 700 B library-only; pool: the 1000 B duplicate."""
    cfg = _cfg(tmp_path)
    stash, pool = cfg.pools[0].path, cfg.pools[1].path
    put(stash / SEED / "Linked/a.mkv", b"L" * 3000)
    (stash / "data/media/library").mkdir(parents=True)
    os.link(stash / SEED / "Linked/a.mkv", stash / "data/media/library/a.mkv")
    put(stash / SEED / "Dup/d.mkv", b"D" * 1000)
    put(stash / SEED / "Only/o.mkv", b"O" * 500)
    put(stash / "data/media/library/lib-only.mkv", b"B" * 700)
    put(pool / SEED / "Dup/d.mkv", b"D" * 1000)
    cat = Catalog.open(cfg.catalog)
    for p in cfg.pools:
        scan_pool(cat, p, cfg.scan)
    ids = [r[0] for r in cat.conn.execute("SELECT id FROM inodes")]
    ensure_hashes(cat, ids, settle_seconds=0)
    yield cfg, cat
    cat.close()


def _sweep(cat, *, names, started_at=None):
    state.put(
        cat.conn,
        "last_sweep",
        {
            "started_at": started_at or time.time(),
            "seconds": 2.5,
            "plan": {
                "stay": 4,
                "demote": 1,
                "promote": 0,
                "blocked": 1,
                "skip": 0,
                "bytes_to_copy": 500,
                "bytes_freed": 500,
            },
            "pending": [
                {
                    "group_id": "g-demote",
                    "action": "demote",
                    "reason": "no links outside the seeding tree",
                    "names": names,
                    "source_pool": "stash",
                    "target_pool": "pool",
                    "payload_bytes": 500,
                    "bytes_to_copy": 500,
                    "bytes_freed": 500,
                },
                {
                    "group_id": "g-blocked",
                    "action": "blocked",
                    "reason": "torrent is checking",
                    "names": ["Blocked.Thing"],
                    "source_pool": "stash",
                    "target_pool": None,
                    "payload_bytes": 1234,
                    "bytes_to_copy": 0,
                    "bytes_freed": 0,
                },
            ],
        },
    )


def _client(cfg):
    from qbhook.events.auth import AuthConfig

    auth = AuthConfig(username=cfg.server.username, password=cfg.server.password, token=cfg.server.token)
    app = create_app(enqueue=lambda e: (1, False), auth=auth, views=views(cfg))
    return app.test_client()


def _basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$"
    m = re.search(pattern, text, re.MULTILINE)
    assert m, f"{name} {labels} not in metrics:\n{text}"
    return float(m.group(1))


def test_page_and_metrics_refuse_without_credentials(world):
    cfg, _cat = world
    c = _client(cfg)
    for path in ("/", "/metrics"):
        for headers in ({}, {"X-Qbhook-Token": "wrong"}, _basic("admin", "wrong"), {"Authorization": "Bearer x"}):
            r = c.get(path, headers=headers)
            assert r.status_code == 401, (path, headers)
            assert r.headers["WWW-Authenticate"].startswith("Basic")
            assert b"<html" not in r.data and b"qbhook_" not in r.data
        # ?token= is the cross-seed endpoint's exception only.
        assert c.get(f"{path}?token={TOKEN}").status_code == 401
        assert c.get(path, headers={"X-Qbhook-Token": TOKEN}).status_code == 200
        assert c.get(path, headers=_basic("admin", PASSWORD)).status_code == 200
        assert c.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # unchanged: liveness needs no credentials


def test_page_refuses_everything_when_no_credentials_are_configured(world):
    cfg, _ = world
    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, password=None, token=None))
    c = _client(cfg)
    assert c.get("/", headers={"X-Qbhook-Token": TOKEN}).status_code == 503
    assert c.get("/metrics", headers=_basic("admin", PASSWORD)).status_code == 503


def test_page_shows_pools_breakdown_plan_runs_and_dead_letters(world):
    cfg, cat = world
    _sweep(cat, names=["Plain.Name.2024"])
    j = Journal(cat.conn)
    run = j.start_run({"groups": []}, trigger="sweeper")
    j.finish_run(
        run,
        "done",
        {"bytes_copied": 5 * 2**20, "bytes_freed": 3 * 2**20, "groups_done": ["g-demote"], "groups_failed": {}},
    )
    j.set_group("g-demote", run, "done")
    q = JobQueue(cat.conn, max_attempts=1)
    job, _ = q.enqueue(Event(source="qbittorrent", kind="torrent_added", hashes=("a" * 40,)))
    q.claim("w")
    q.fail(job, "qBittorrent main: connection refused")
    html = _client(cfg).get("/", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)

    assert '<meta name=viewport content="width=device-width, initial-scale=1">' in html
    assert "<script" not in html.lower()
    for name in ("stash", "pool"):
        assert f"<h3>{name} <span" in html
    assert html.count("<svg class=bar") == 4  # per pool: capacity, and used space by kind
    assert 'aria-label="stash used space: library-linked 2.9 KiB, seed-only, duplicated on another pool 1000 B' in html
    # The catalog's numbers, each category once: see the world fixture.
    assert "library-linked</span><b>2.9 KiB</b>" in html
    assert "seed-only, duplicated on another pool</span><b>1000 B</b>" in html
    assert "seed-only</span><b>500 B</b>" in html
    assert "other files</span><b>700 B</b>" in html
    assert "blocked</span><b>1 group(s), 1.2 KiB</b>" in html
    assert "orphaned</span><b>unknown</b>" in html
    assert "Plain.Name.2024" in html and "no links outside the seeding tree" in html
    assert "stash → pool" in html and "since then: done" in html
    assert "Blocked.Thing" in html and "torrent is checking" in html
    assert "5.0 MiB" in html and "3.0 MiB" in html  # the run's bytes
    assert "connection refused" in html and "1 dead" in html  # the dead letter


def test_page_shows_the_workers_latest_event_plan_only_when_newer_than_the_sweep(world):
    cfg, cat = world
    _sweep(cat, names=["Swept.Thing"])
    c = _client(cfg)
    state.put(
        cat.conn,
        "last_event_plan",
        {
            "job": 7,
            "groups": [
                {
                    "group_id": "g-ev",
                    "action": "stay",
                    "reason": "linked outside the seeding tree: /lib/x.mkv",
                    "names": [f"Event.{HOSTILE}"],
                }
            ],
        },
    )
    html = c.get("/", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)
    assert "Latest event" in html and "Job #7" in html and "planned 1 group(s)." in html
    assert "Event.&lt;script&gt;" in html and "linked outside the seeding tree: /lib/x.mkv" in html
    # A sweep that started after the event's plan supersedes it.
    _sweep(cat, names=["Swept.Again"], started_at=time.time() + 5)
    html = c.get("/", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)
    assert "Latest event" not in html and "Swept.Again" in html


def test_hostile_names_are_escaped_and_secrets_never_shown(world):
    cfg, cat = world
    _sweep(cat, names=[HOSTILE, f"leak {TOKEN} {PASSWORD} {QBT_PASSWORD}", "a\"b'c&d"])
    q = JobQueue(cat.conn, max_attempts=1)
    job, _ = q.enqueue(Event(source="qbittorrent", kind="torrent_added", hashes=("b" * 40,)))
    q.claim("w")
    q.fail(job, f"login failed with password {QBT_PASSWORD} <img src=x onerror=alert(2)>")
    c = _client(cfg)
    page = c.get("/", headers=_basic("admin", PASSWORD)).get_data(as_text=True)
    metrics = c.get("/metrics", headers=_basic("admin", PASSWORD)).get_data(as_text=True)

    assert HOSTILE not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&#34;b&#39;c&amp;d" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    for secret in (TOKEN, PASSWORD, QBT_PASSWORD):
        assert secret not in page and secret not in metrics
    assert "leak ******** ******** ********" in page
    r = c.get("/", headers=_basic("admin", PASSWORD))
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]


def test_a_name_that_is_not_utf8_is_shown_escaped_not_a_500(world):
    # os.fsdecode keeps a file name's non-UTF-8 bytes as lone surrogates, and the stored plan's
    # JSON brings them back: encoding the page raised UnicodeEncodeError, a 500 for everyone.
    cfg, cat = world
    _sweep(cat, names=["Caf\udce9 <b>"])
    c = _client(cfg)
    r = c.get("/", headers=_basic("admin", PASSWORD))
    assert r.status_code == 200
    assert "Caf\\xe9 &lt;b&gt;" in r.get_data(as_text=True)
    m = c.get("/metrics", headers=_basic("admin", PASSWORD))
    assert m.status_code == 200


def test_blocked_groups_are_counted_beyond_the_pending_groups_shown(world):
    # The page lists only the first PENDING_SHOWN pending groups; the pool card counted its
    # blocked groups from that cut list and said "none" with 50 blocked after 200 demotes.
    cfg, cat = world

    def group(gid, action, size):
        return {
            "group_id": gid,
            "action": action,
            "reason": "r",
            "names": [gid],
            "source_pool": "stash",
            "target_pool": "pool" if action == "demote" else None,
            "payload_bytes": size,
        }

    pending = [group(f"d{i}", "demote", 10) for i in range(PENDING_SHOWN)]
    pending += [group(f"b{i}", "blocked", 1000) for i in range(50)]
    state.put(
        cat.conn,
        "last_sweep",
        {
            "started_at": time.time(),
            "seconds": 1.0,
            "plan": {"demote": PENDING_SHOWN, "blocked": 50},
            "pending": pending,
        },
    )
    st = StatusSource(cfg).status()
    assert len(st.sweep.pending) == PENDING_SHOWN and st.sweep.pending_total == PENDING_SHOWN + 50
    stash = next(p for p in st.pools if p.name == "stash")
    assert (stash.blocked_groups, stash.blocked_bytes) == (50, 50_000)
    page = _client(cfg).get("/", headers=_basic("admin", PASSWORD)).get_data(as_text=True)
    assert "50 group(s), 48.8 KiB" in page


def test_secrets_of_finds_every_hidden_field(world):
    cfg, _ = world
    assert secrets_of(cfg) == {TOKEN, PASSWORD, QBT_PASSWORD}

    @dataclasses.dataclass(frozen=True)
    class Notify:  # a section that forgot repr=False on its apprise URLs
        urls: tuple[str, ...] = ("tgram://bot-token/chat",)
        api_key: str = "k-123"
        token_env: str = "NOT_A_SECRET_NAME"
        title: str = "qbhook"

    @dataclasses.dataclass(frozen=True)
    class Outer:
        notify: Notify = Notify()

    assert secrets_of(Outer()) == {"tgram://bot-token/chat", "k-123"}
    redact = redactor(["abc", "abcdef"])
    assert redact("x abcdef y abc") == "x ******** y ********"


def test_a_short_secret_blanks_tokens_not_parts_of_numbers_or_words():
    # A numeric password "1000" turned "1000.0" into "********.0"; a one-character secret
    # would blank that character everywhere. Short secrets are blanked where they stand alone.
    redact = redactor(["1000", "abc", "a-long-secret"])
    assert redact("1000.0 1,000 10000 1.5 GiB abcdef") == "1000.0 1,000 10000 1.5 GiB abcdef"
    assert redact("login failed: password 1000") == "login failed: password ********"
    assert redact("http://admin:1000@host/?k=abc&x=1") == "http://admin:********@host/?k=********&x=1"
    assert redact("it is a-long-secret, inside xa-long-secretx") == "it is ********, inside x********x"


def test_a_short_secret_next_to_a_dot_or_comma_outside_a_number_is_blanked():
    # Only a '.' or ',' between digits joins a number; the exception for "1000.0" once let
    # every short secret next to a '.' or ',' through: in a host name, a query, a sentence.
    redact = redactor(["s3cr", "hunter2", "p4ss", "1000"])
    assert redact("https://s3cr.ntfy.example/topic") == "https://********.ntfy.example/topic"
    assert redact("auth=s3cr,scope=all") == "auth=********,scope=all"
    assert redact("login hunter2,retrying") == "login ********,retrying"
    assert redact("1.p4ss and pw=p4ss,x") == "1.******** and pw=********,x"
    assert redact("ends with p4ss. Or p4ss, then") == "ends with ********. Or ********, then"
    # ... while numbers that contain a short numeric secret stay as they are.
    assert redact("1000.0 1,000 2.1000 3,1000 1000.5x 10000") == "1000.0 1,000 2.1000 3,1000 1000.5x 10000"
    assert redact("password 1000.") == "password ********."


def test_metrics_stay_parseable_with_a_numeric_password_and_blank_secrets_in_labels(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    cfg = _cfg(tmp_path)
    # "1.0" is a token of its own in "1.0"; the pool's name is a secret of a client
    cfg = dataclasses.replace(
        cfg,
        server=dataclasses.replace(cfg.server, password="1.0"),
        qbittorrent=tuple(dataclasses.replace(q, password="stash") for q in cfg.qbittorrent),
    )
    cfg.pools[0].path.mkdir()
    cfg.pools[1].path.mkdir()
    cat = Catalog.open(cfg.catalog)
    _sweep(cat, names=["X"], started_at=1735689600.0)
    text = _client(cfg).get("/metrics", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)
    cat.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["qbhook_last_sweep_groups"].samples  # parsed, values intact
    assert _metric(text, "qbhook_last_sweep_groups", decision="blocked") == 1.0
    pools = {s.labels["pool"] for s in families["qbhook_pool_size_bytes"].samples}
    assert pools == {"********", "pool"}


def test_metrics_are_read_from_the_database_at_scrape_time(world):
    cfg, cat = world
    c = _client(cfg)
    before = c.get("/metrics", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)
    assert _metric(before, "qbhook_copied_bytes_total") == 0
    assert _metric(before, "qbhook_runs", status="done") == 0
    assert _metric(before, "qbhook_queue_jobs", state="pending") == 0
    assert not re.search("^qbhook_last_sweep_timestamp_seconds ", before, re.MULTILINE)  # never swept: no sample, not 0
    assert _metric(before, "qbhook_hashed_bytes") == 3000 + 1000 + 500 + 700 + 1000
    assert _metric(before, "qbhook_pool_size_bytes", pool="stash", role="primary") > 0

    # Another process (a CLI apply, the worker) writes the database; no counter is bumped here.
    at = time.time() - 30
    _sweep(cat, names=["X"], started_at=at)
    j = Journal(cat.conn)
    for copied, freed, status in ((1000, 400, "done"), (0, 0, "failed")):
        run = j.start_run({"groups": []})
        j.finish_run(run, status, {"bytes_copied": copied, "bytes_freed": freed})
    JobQueue(cat.conn).enqueue(Event(source="sonarr", kind="import", paths=("/x/y.mkv",)))
    after = c.get("/metrics", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)
    assert _metric(after, "qbhook_copied_bytes_total") == 1000
    assert _metric(after, "qbhook_freed_bytes_total") == 400
    assert _metric(after, "qbhook_runs", status="done") == 1
    assert _metric(after, "qbhook_runs", status="failed") == 1
    assert _metric(after, "qbhook_queue_jobs", state="pending") == 1
    assert _metric(after, "qbhook_last_sweep_groups", decision="demote") == 1
    assert _metric(after, "qbhook_last_sweep_groups", decision="stay") == 4
    assert _metric(after, "qbhook_last_sweep_timestamp_seconds") == pytest.approx(at)
    assert _metric(after, "qbhook_last_sweep_duration_seconds") == 2.5

    # A restarted server reports the same totals: nothing lived in process memory.
    again = _client(cfg).get("/metrics", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)
    assert _metric(again, "qbhook_copied_bytes_total") == 1000
    assert _metric(again, "qbhook_runs", status="done") == 1


def test_breakdown_counts_each_inode_once_and_reads_the_catalog_only(world):
    cfg, cat = world
    got = catalog_breakdown(cat.conn, cfg.pools)
    assert got["stash"] == {"library": 3000, "duplicated": 1000, "seed_only": 500, "other": 700}
    assert got["pool"] == {"library": 0, "duplicated": 1000, "seed_only": 0, "other": 0}
    # A second link inside the seeding root is the same inode: not counted twice, still seed-only.
    os.link(cfg.pools[0].seeding_root / "Only/o.mkv", cfg.pools[0].seeding_root / "Only/o2.mkv")
    scan_pool(cat, cfg.pools[0], cfg.scan)
    assert catalog_breakdown(cat.conn, cfg.pools)["stash"]["seed_only"] == 500


def test_breakdown_is_cached_until_the_catalog_moves_or_a_minute_passes(world):
    cfg, cat = world
    clock = [1000.0]
    src = StatusSource(cfg, clock=lambda: clock[0], ttl_s=60)

    def seed_only():
        return {s.key: s.bytes for s in src.status().pools[0].segments}["seed_only"]

    assert seed_only() == 500
    # A change no scan, run or job made (nothing marks it): served from the cache for a minute.
    with cat.conn:
        cat.conn.execute("UPDATE inodes SET size = 501 WHERE size = 500")
    assert seed_only() == 500
    clock[0] += 61
    assert seed_only() == 501
    # A scan moves the marker: the next request recomputes at once.
    os.unlink(cfg.pools[0].seeding_root / "Only/o.mkv")
    scan_pool(cat, cfg.pools[0], cfg.scan)
    assert seed_only() == 0


def test_page_without_any_sweep_or_run_says_so(tmp_path):
    cfg = _cfg(tmp_path)
    for p in cfg.pools:
        p.seeding_root.mkdir(parents=True)
    Catalog.open(cfg.catalog).close()
    html = _client(cfg).get("/", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)
    assert "never (run <code>qbhook sweep</code>)" in html
    assert "No sweep has run yet" in html and "No runs yet." in html


def test_unreadable_catalog_is_a_one_line_503_not_a_traceback(tmp_path):
    cfg = _cfg(tmp_path)  # its catalog file was never created
    c = _client(cfg)
    for path in ("/", "/metrics"):
        r = c.get(path, headers={"X-Qbhook-Token": TOKEN})
        assert r.status_code == 503, path
        body = r.get_data(as_text=True)
        assert body.startswith("status unavailable: cannot read the catalog") and body.count("\n") == 1
        assert "Traceback" not in body


def test_unreadable_catalog_page_refreshes_like_the_page(tmp_path):
    """R35: the 503 that stands in for the page had no refresh, so a tab left open on it stayed
    there after the catalog came back; it reloads at the page's own interval (/metrics: none)."""
    c = _client(_cfg(tmp_path))  # its catalog file was never created
    r = c.get("/", headers={"X-Qbhook-Token": TOKEN})
    assert r.status_code == 503 and r.headers.get("Refresh") == "60"  # the page's meta refresh
    assert "Refresh" not in c.get("/metrics", headers={"X-Qbhook-Token": TOKEN}).headers


def test_hashed_and_unhashed_bytes_per_pool_on_the_page(world):
    from qbhook.events.status import hashed_by_pool

    cfg, cat = world
    # the fixture hashed everything; a new file on stash and a changed one on pool are not
    put(cfg.pools[0].path / SEED / "New/n.mkv", b"N" * 400)
    scan_pool(cat, cfg.pools[0], cfg.scan)
    with cat.conn:
        cat.conn.execute(
            "UPDATE inodes SET mtime_ns = mtime_ns + 1 WHERE size = 1000 AND id IN "
            "(SELECT inode FROM paths WHERE pool = 'pool')"
        )
    got = hashed_by_pool(cat.conn, cfg.pools)
    # stash: 3000 (two links, counted once) + 1000 + 500 + 700 hashed, the new 400 not
    assert got["stash"] == {"hashed_bytes": 5200, "unhashed_bytes": 400, "hashed_files": 4, "unhashed_files": 1}
    assert got["pool"] == {"hashed_bytes": 0, "unhashed_bytes": 1000, "hashed_files": 0, "unhashed_files": 1}
    html = _client(cfg).get("/", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)
    assert "hashed</span><b>5.1 KiB · 400 B not yet</b>" in html
    assert "hashed</span><b>0 B · 1000 B not yet</b>" in html


def test_the_page_and_status_show_the_last_orphans_runs_totals_with_their_age(world):
    from qbhook.events.status import report
    from qbhook.move import orphans as orph

    cfg, cat = world
    html = _client(cfg).get("/", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)
    assert "orphaned</span><b>unknown</b>" in html  # `qbhook orphans` never ran: never guessed
    assert report(cfg, cat)["orphans"] is None

    stash_root = str(cfg.pools[0].seeding_root)
    items = [
        orph.Item(stash_root + "/Gone", "stash", orph.RECLAIMABLE, True, 3, 4096, 4096),
        orph.Item(stash_root + "/Held.mkv", "stash", orph.RECLAIMABLE, False, 1, 2048, 2048),
        orph.Item(stash_root + "/Lib.mkv", "stash", orph.LIBRARY, False, 1, 1536, 0),
    ]
    rep = orph.Report([], items, {"stash": orph.PoolTotals(), "pool": orph.PoolTotals()}, {})
    orph.record(cat.conn, rep, held=[stash_root + "/Held.mkv"], now=time.time() - 2 * 3600)
    last = orph.last_run(cat.conn)
    assert last.reclaimable == 4096 and last.library == 1536 and last.held  # the held file is no orphan now
    assert last.pools["pool"] == orph.OrphanTotals(0, 0)

    html = _client(cfg).get("/", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)
    assert "orphaned</span><b>4.0 KiB reclaimable · 1.5 KiB used by a library (2 h ago, qbhook orphans)</b>" in html
    assert "orphaned</span><b>0 B reclaimable · 0 B used by a library (2 h ago" in html  # the pool pool
    doc = report(cfg, cat)["orphans"]
    assert (doc["reclaimable"], doc["library"], doc["quarantine"]) == (4096, 1536, True)
    assert 2 * 3600 - 60 < doc["age_seconds"] < 2 * 3600 + 600

    state.put(cat.conn, orph.LAST_ORPHANS, {"pools": "garbage"})
    assert orph.last_run(cat.conn) is None  # an unreadable record is unknown, not a traceback


def test_a_run_with_a_paused_group_counts_it_as_paused_not_failed():
    # R22: a demote paused past its deletes (resume finishes it) was listed as a failed group.
    from types import SimpleNamespace

    from qbhook.events.status import _run

    row = SimpleNamespace(
        id=3,
        status="interrupted",
        trigger="worker",
        started_at=0.0,
        finished_at=1.0,
        summary={"groups_done": ["g0"], "groups_failed": {"g1": "paused", "g2": "refused"}, "groups_paused": ["g1"]},
    )
    r = _run(row)
    assert (r.groups_done, r.groups_failed) == (1, 1)


def test_status_says_a_hung_sweeper_once_when_the_server_says_it_too(world, monkeypatch):
    # /healthz now applies status's overdue rule (R35): `qbhook status` shows its own line for it,
    # not the same again as "server unhealthy".
    from qbhook.events import status

    cfg, cat = world
    started = time.time() - 20 * 3600
    said = status.overdue(None, started, cfg.server.sweep_interval, time.time())
    server = {"answered": True, "ok": False, "reason": said, "sweeper": True, "sweeper_since": started}
    monkeypatch.setattr(status, "server_health", lambda srv: server)
    problems = status.report(cfg, cat)["problems"]
    assert [p for p in problems if "sweep" in p] == [
        f"no successful sweep since the sweeper started 20.0 h ago, over twice server.sweep_interval "
        f"({cfg.server.sweep_interval / 3600:.1f} h): the sweeper fails or hangs (the server's log says why)"
    ]
    # Unhealthy for something else: said as before, beside the overdue sweep.
    server["reason"] = "worker stalled: no progress for 900 s (last: claiming)"
    assert (
        "server unhealthy: worker stalled: no progress for 900 s (last: claiming) (its log says why)"
        in (status.report(cfg, cat)["problems"])
    )


def _page(cfg, health=None) -> str:
    from qbhook.events.auth import AuthConfig

    auth = AuthConfig(token=cfg.server.token)
    app = create_app(enqueue=lambda e: (1, False), auth=auth, views=views(cfg, health))
    return app.test_client().get("/", headers={"X-Qbhook-Token": TOKEN}).get_data(as_text=True)


def test_the_page_lists_what_needs_a_person_as_qbhook_status_does(world):
    # R35: a leftover view that may be the last copy was in `qbhook status` and one log line only.
    from qbhook.events.status import report

    cfg, cat = world
    assert "Needs you" not in _page(cfg)
    view = str(cfg.pools[1].seeding_root / f"tv/{HOSTILE}.mkv")
    journal = Journal(cat.conn)
    journal.record_leftover(journal.start_run({}, "test"), "g1", {"path": view, "ino": 1, "size": 3})
    (sid, _v), *_ = journal.leftover_views()
    journal.leftover_needs_person(sid, f"refusing to remove {view}: its source /x/e1.mkv is gone", None)

    html = _page(cfg)
    problems = [p for p in report(cfg, cat)["problems"] if not p.startswith("server")]
    assert len(problems) == 1 and "leftover view kept, maybe the last copy" in problems[0]
    section = html[html.index("<h2>Needs you</h2>") : html.index("<h2>Pools</h2>")]
    assert re.findall(r"<li>(.*?)</li>", section) == [str(escape(problems[0]))]  # one source, escaped
    assert HOSTILE not in html


def test_the_page_shows_the_serving_workers_health_and_its_trouble(world):
    # R35: a client down for a day: /healthz said 503, the page (behind credentials) nothing.
    from qbhook.events.worker import Health

    cfg, _cat = world
    assert "<dt>Worker</dt>" not in _page(cfg)  # not served by a worker: nothing to say
    assert "<dt>Worker</dt><dd>worker idle</dd>" in _page(cfg, lambda: Health(True, "worker idle", "worker idle"))
    down = "qBittorrent 'main' unreachable since 2023-11-14 22:13:30 UTC (86400 s): jobs wait, no attempt counted"
    sick = Health(False, f"{down}, last: cannot reach qBittorrent: Connection refused", down)
    html = _page(cfg, lambda: sick)
    assert f"<dt>Worker</dt><dd><span class=warn>{escape(sick.reason)}</span></dd>" in html
    section = html[html.index("<h2>Needs you</h2>") : html.index("<h2>Pools</h2>")]
    assert str(escape(f"server unhealthy: {sick.reason} (its log says why)")) in section
