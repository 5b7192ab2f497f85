"""Notifications: batching, rate limit, a failing or hanging notifier never blocking, the
reporters at each call point, the sweep's once-per-condition memory, and the config section."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from qbhook import notify
from qbhook.catalog import schema, state
from qbhook.catalog.scan import scan_pool
from qbhook.catalog.store import Catalog
from qbhook.config import PolicyConfig, describe, parse_config
from qbhook.decide.planner import make_plan
from qbhook.errors import ConfigError, MassDeleteRefused
from qbhook.events import alerts
from qbhook.events.model import Event as QEvent
from qbhook.events.queue import QUEUE_DDL, JobQueue
from qbhook.move.executor import GroupOutcome, RunSummary
from qbhook.move.journal import failed_not_paused
from qbhook.notify import Event, Fanout, Notifier, compose
from tests.helpers import make_config, write
from tests.listener import Listener, dead_port
from tests.unit.world import LIB, P, S, World


class Recorder:
    """A Sender that records (time, title, body, severity); optionally fails or hangs."""

    def __init__(self, fail: bool = False, hang: threading.Event | None = None):
        self.calls: list[tuple[float, str, str, str]] = []
        self.fail = fail
        self.hang = hang

    def __call__(self, title, body, severity):
        if self.hang is not None:
            self.hang.wait(30)
        self.calls.append((time.monotonic(), title, body, severity))
        if self.fail:
            raise OSError("connection refused")


@pytest.fixture
def installed():
    """A recording notifier installed as the process's notifier for the reporters."""
    rec = Recorder()
    n = Notifier(rec, min_interval=0.2, gather_s=0.05)
    prev = notify.install(n)
    yield n, rec
    notify.install(prev)
    n.close(1)


def texts(n: Notifier, rec: Recorder) -> str:
    assert n.flush(5)
    return "\n".join(c[2] for c in rec.calls)


# ------------------------------------------------------------------ composing, batching, rate limit


def test_compose_counts_kinds_and_takes_the_worst_severity():
    title, body, sev = compose(
        [Event("run", "run 1 done"), Event("group_failed", "g rolled back", "failure"), Event("run", "run 2 done")]
    )
    assert title == "qbhook: run finished (2), group failed"
    assert sev == "failure" and body.splitlines() == ["run 1 done", "[FAILURE] g rolled back", "run 2 done"]


def test_compose_caps_the_body():
    _t, body, _s = compose([Event("dead_letter", f"job {i}") for i in range(100)])
    lines = body.splitlines()
    assert len(lines) == notify.MAX_LINES + 1 and lines[-1] == "... and 60 more"


def test_events_of_one_moment_arrive_as_one_message():
    rec = Recorder()
    n = Notifier(rec, min_interval=0.5, gather_s=0.3)
    for i in range(5):
        n.emit(Event("run", f"run {i}"))
    assert n.flush(5)
    assert len(rec.calls) == 1 and rec.calls[0][2].splitlines() == [f"run {i}" for i in range(5)]
    n.close(1)


def test_at_most_one_message_per_interval_the_rest_batched():
    rec = Recorder()
    # The interval is long next to the gather so that "not held for the interval" is a real
    # check on a loaded 2-core machine: held, the first message would come after >= 2 s.
    interval = 2.0
    n = Notifier(rec, min_interval=interval, gather_s=0.05)
    t0 = time.monotonic()
    n.emit(Event("run", "first"))
    deadline = time.monotonic() + 5
    while not rec.calls and time.monotonic() < deadline:
        time.sleep(0.01)  # the first message goes after the short gather
    for i in range(3):
        n.emit(Event("dead_letter", f"later {i}", "failure"))
        time.sleep(0.05)
    deadline = time.monotonic() + 5
    while len(rec.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [c[2] for c in rec.calls] == ["first", "[FAILURE] later 0\n[FAILURE] later 1\n[FAILURE] later 2"]
    first_at, second_at = rec.calls[0][0], rec.calls[1][0]
    assert first_at - t0 < interval / 2  # quiet before: not held for the interval
    assert second_at - first_at >= interval - 0.01  # the rate limit held the rest back ...
    assert rec.calls[1][3] == "failure"  # ... and sent them as one message
    n.close(1)


def test_flush_sends_pending_at_once_despite_the_rate_limit():
    rec = Recorder()
    n = Notifier(rec, min_interval=60, gather_s=0.01)
    n.emit(Event("run", "a"))
    assert n.flush(5)
    n.emit(Event("run", "b"))
    t0 = time.monotonic()
    assert n.flush(5) and time.monotonic() - t0 < 1
    assert [c[2] for c in rec.calls] == ["a", "b"]
    n.close(1)


def test_a_failing_notifier_is_logged_and_later_events_still_go(caplog):
    rec = Recorder(fail=True)
    n = Notifier(rec, min_interval=0, gather_s=0)
    n.emit(Event("run", "a"))
    assert n.flush(5) is False  # kept to send again, not sent
    rec.fail = False
    n.emit(Event("run", "b"))
    assert n.flush(5)
    assert n.failed == 1 and n.sent == 1 and len(rec.calls) == 2
    assert "sending 1 event(s) failed: connection refused" in caplog.text
    n.close(1)


def test_a_failed_batch_is_sent_again_once_the_notifier_is_back():
    """ntfy restarting while a sweep first sees a pool low: the sweep records the pool as told,
    so the notifier must keep the batch and send it later, not drop it."""
    rec = Recorder(fail=True)
    n = Notifier(rec, min_interval=0, gather_s=0, retry_s=0.2)
    n.emit(Event("free_space", "pool p is low"))
    deadline = time.monotonic() + 5
    while not rec.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    rec.fail = False  # the endpoint is back; nothing new is emitted
    while len(rec.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [c[2] for c in rec.calls] == ["pool p is low", "pool p is low"]
    assert n.failed == 1 and n.sent == 1 and n.dropped == 0
    n.close(1)


def test_a_failed_sweep_alert_still_reaches_the_user_after_the_notifier_recovers(installed, conn):
    n, rec = installed
    rec.fail = True
    cfg = _Cfg(free_space_below=10 * 2**30)
    (ev,) = alerts.pool_checks(cfg, conn, [alerts.PoolSpace("pool", 5 * 2**30)], now=1)
    assert n.flush(5) is False and n.failed == 1
    rec.fail = False
    assert alerts.pool_checks(cfg, conn, [alerts.PoolSpace("pool", 5 * 2**30)], now=2) == []  # told already
    assert n.flush(5)  # a flush (a command ending) tries the kept batch at once
    assert n.sent == 1 and ev.text in rec.calls[-1][2]


def test_flush_says_false_while_a_failed_batch_is_kept_and_true_once_it_went_out():
    # "True: all sent": a flush after a failed send said True, so a caller waiting for its
    # notifications to go out was told they had while they were only kept for a retry.
    rec = Recorder(fail=True)
    n = Notifier(rec, min_interval=0, gather_s=0, retry_s=60)
    n.emit(Event("guard", "mass-delete guard tripped", "failure"))
    assert n.flush(5) is False and n.failed == 1 and len(n._held) == 1
    rec.fail = False
    assert n.flush(5) is True and n.sent == 1 and n._held == []
    assert n.flush(5) is True  # nothing pending: all sent
    n.close(1)


def test_what_a_failing_notifier_keeps_is_bounded():
    rec = Recorder(fail=True)
    n = Notifier(rec, min_interval=0, gather_s=0, queue_size=5, retry_s=60)
    for i in range(3):
        for j in range(4):
            n.emit(Event("run", f"run {i}.{j}"))
        assert n.flush(5) is False
    assert len(n._held) == 5 and n.dropped >= 3
    assert n._held[0].text == "run 0.0"  # the oldest facts are kept
    n.close(1)


def test_a_hanging_notifier_never_blocks_emit_and_overflow_is_dropped():
    release = threading.Event()
    rec = Recorder(hang=release)
    n = Notifier(rec, min_interval=0, gather_s=0, queue_size=50)
    t0 = time.monotonic()
    for i in range(1000):
        n.emit(Event("run", f"run {i}"))
    elapsed = time.monotonic() - t0
    # emit blocking on the stuck send would never return (release is set below); the bound
    # only has to tell "returns" from "hangs", with room for a loaded machine.
    assert elapsed < 3.0, elapsed
    # The queue stays bounded and what does not fit is dropped. How many the stuck batch took is
    # the scheduler's: the sender drains what is waiting into its batch while emit refills the
    # queue, so under load it took more than one queue's worth (a lower bound of 900 dropped
    # failed at load 2.7); a full queue after it did get in.
    assert n._q.qsize() <= 50 and 1 <= n.dropped <= 1000 - 50
    t1 = time.monotonic()
    assert n.flush(0.3) is False and time.monotonic() - t1 < 1.0  # bounded, even at exit
    release.set()
    n.close(5)


# ------------------------------------------------------------------ through apprise, on loopback


def test_apprise_json_reaches_a_loopback_listener():
    with Listener() as lis:
        n = Notifier(notify.apprise_sender([lis.url]), min_interval=0, gather_s=0)
        n.emit(Event("group_failed", "group abc rolled back: verify failed", "failure"))
        assert n.flush(10)
        (msg,) = lis.wait_for(lambda r: len(r) == 1)
        assert msg["title"] == "qbhook: group failed" and "rolled back" in msg["message"]
        assert msg["type"] == "failure"
        n.close(1)


@pytest.mark.parametrize("fmt", ["", "&format=html"])
def test_a_torrent_name_reaches_an_html_mail_escaped_never_as_markup(monkeypatch, fmt):
    """Names are tracker-chosen: apprise's own mailto plugin (the SMTP server faked) must carry
    one into the mail's HTML part, when there is one, as text: escaped, never a live tag. Without
    ``body_format`` apprise passed the body unconverted and the mail got a working <a> and <img>."""
    import email
    import smtplib

    sent: list[str] = []

    class FakeSMTP:
        def __init__(self, *a, **k):
            pass

        def __getattr__(self, name):
            return lambda *a, **k: (250, b"ok")

        def sendmail(self, frm, to, msg):
            sent.append(msg if isinstance(msg, str) else msg.decode())

    monkeypatch.setattr(smtplib, "SMTP", FakeSMTP)
    monkeypatch.setattr(smtplib, "SMTP_SSL", FakeSMTP)
    name = 'Show.S01 <a href="https://evil.example/login">sign in</a><img src="https://evil.example/t.gif">'
    title, body, severity = compose([Event("atm", f"torrent {name} (8f3a1c2d4e5b) has ATM on again", "warning")])
    url = "mailto://u:pw@mail.example.com?to=admin@example.com&smtp=mail.example.com&mode=insecure" + fmt
    notify.apprise_sender([url])(title, body, severity)
    (raw,) = sent
    leaves = [p for p in email.message_from_string(raw).walk() if not p.is_multipart()]
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in leaves}
    assert name in parts["text/plain"]  # the plain part says the name as it is
    html = parts.get("text/html", "")
    assert "<a " not in html and "<img" not in html
    if fmt:
        assert "&lt;img" in html and "evil.example/t.gif" in html  # there, as text


# A file name that is not UTF-8 (os.fsdecode's lone surrogate), a bidi override and a terminal escape.
HOSTILE = "group g1 failed: /tank/seed/Caf\udce9/\u202ea.mkv\x1b[31m: EIO"
HOSTILE_SHOWN = "group g1 failed: /tank/seed/Caf\\xe9/\\u202ea.mkv\\x1b[31m: EIO"


def _said(msg: dict) -> str:
    return msg.get("message") or msg.get("raw", "")


@pytest.mark.parametrize("scheme", ["form", "xml"])
def test_a_name_that_is_not_utf8_is_told_escaped_and_never_blocks_the_endpoint(installed, scheme):
    """R35: apprise's form:// and xml:// failed on the lone surrogate and sent nothing; the notifier
    kept the batch as the endpoint's failure, so every later event joined a batch that always
    failed (and the outbox carried it into the next start)."""
    with Listener() as lis:
        n = Notifier(notify.apprise_sender([f"{scheme}://127.0.0.1:{lis.port}/"]), min_interval=0, gather_s=0)
        notify.install(n)
        notify.emit("group_failed", HOSTILE, "failure")
        assert n.flush(10), "the batch was kept as failed"
        notify.emit("dead_letter", "event job 1 is dead", "failure")
        assert n.flush(10)
        first, second = lis.wait_for(lambda r: len(r) == 2)
        assert HOSTILE_SHOWN in _said(first) and "event job 1 is dead" in _said(second)
        assert n.failed == 0 and n.dropped == 0
        n.close(1)


def test_an_outbox_holding_a_name_that_is_not_utf8_is_delivered_escaped(tmp_path):
    """An outbox an earlier qbhook kept (the text as it was emitted) no longer blocks the endpoint."""
    path = tmp_path / "o"
    notify.Outbox(path).save([Event("group_failed", HOSTILE, "failure", 1.0)])
    with Listener() as lis:
        n = Notifier(
            notify.apprise_sender([f"form://127.0.0.1:{lis.port}/"]),
            min_interval=0,
            gather_s=0,
            outbox=notify.Outbox(path),
        )
        assert n.flush(10)
        (msg,) = lis.wait_for(lambda r: len(r) == 1)
        assert HOSTILE_SHOWN in msg["message"] and "(delayed, from " in msg["message"]
        assert not path.exists()
        _dispose(n)


def test_apprise_sender_says_text_that_is_not_utf8_is_the_message_s_fault():
    with pytest.raises(UnicodeEncodeError):
        notify.apprise_sender([f"json://127.0.0.1:{dead_port()}/"])("t", "Caf\udce9", "info")


def test_a_send_failing_on_its_own_text_is_dropped_not_retried_and_the_next_event_goes(caplog):
    """An encoding error is not the endpoint's: a batch kept for it failed at every retry, with every
    later event in it."""

    def send(title, body, severity):
        if "poison" in body:
            body.encode("ascii")  # a Sender whose service takes less than UTF-8
        rec(title, body, severity)

    rec = Recorder()
    n = Notifier(send, min_interval=0, gather_s=0, retry_s=0)
    n.emit(Event("run", "poison \u00e9", "info", time.time()))
    assert n.flush(5)
    n.emit(Event("run", "after", "info", time.time()))
    assert n.flush(5) and [c[2] for c in rec.calls] == ["after"]
    assert n.failed == 0 and n.dropped == 1
    assert "1 event(s) dropped: they cannot be put in a message" in caplog.text
    n.close(1)


def test_dead_port_and_hanging_listener_do_not_delay_the_executor(caplog):
    """The bounded-time promise: an apply that reports through a dead or wedged endpoint
    returns as fast as without a notifier; only the notifier thread waits."""

    class FakeExecutor:
        def apply(self, plan, **kw):
            return RunSummary(7, groups=[GroupOutcome("g1", "demote", "done", bytes_copied=10)])

        def resume(self, run_id=None):
            return []

    with Listener(hang=True) as hang, Listener() as good:
        urls = [f"json://127.0.0.1:{dead_port()}/", hang.url, good.url]
        n = Notifier(notify.apprise_sender(urls), min_interval=0, gather_s=0)
        prev = notify.install(n)
        try:
            ex = notify.watch(FakeExecutor())
            t0 = time.monotonic()
            for _ in range(20):
                ex.apply(None, trigger="worker")
            elapsed = time.monotonic() - t0
            # 20 runs; one send waiting on the hang alone takes apprise's 4 s timeout, so any
            # bound under 4 s tells "never waited" from "waited", with room for a loaded machine.
            assert elapsed < 3.0, elapsed
            assert n.flush(1.0) is False  # the notifier itself is stuck on the hang
            hang.close()
            good.wait_for(lambda r: len(r) >= 1, timeout=30)  # the good URL still got it
            assert "run 7 (worker) done" in good.received[0]["message"]
        finally:
            notify.install(prev)
            n.close(0)


# ------------------------------------------------------------------ reporters at the call points


def test_run_finished_reports_the_run_and_each_failed_group(installed):
    n, rec = installed
    s = RunSummary(
        12,
        status="failed",
        groups=[
            GroupOutcome("g-ok", "demote", "done", bytes_copied=4 * 2**20, bytes_freed=4 * 2**20, torrents_relocated=3),
            GroupOutcome("g-bad", "demote", "rolled_back", reason="delete failed: refusing to delete\n  hint: re-plan"),
        ],
    )
    ex = notify.watch(type("E", (), {"apply": lambda self, p, **kw: s, "resume": lambda self, r=None: [s]})())
    ex.apply(None, trigger="cli")
    body = texts(n, rec)
    assert "group g-bad (demote) rolled back: delete failed: refusing to delete; hint: re-plan\n" in body
    assert "run 12 (cli) failed: 1 group(s) done, 1 failed, 0 busy; copied 4.0 MiB, freed 4.0 MiB" in body
    assert rec.calls[-1][3] == "failure"


def test_a_paused_group_is_told_once_as_paused_not_at_every_resume(installed):
    # R21: serve's RunsGate resumes a run it could not finish up to once a minute; a group paused
    # after its deletes began (a client not up yet) was told "failed", at failure severity, by
    # every resume, for as long as the client stayed down. Told once, as paused; again only
    # when what is said of it changes.
    n, rec = installed

    def summary(reason):
        g = GroupOutcome("g-p", "demote", "failed", reason=reason, needs_attention=True, paused=True)
        return RunSummary(13, status="interrupted", groups=[g])

    for reason in ("rt down", "rt down", "rt down", "qbt checking"):
        notify.run_finished(summary(reason), trigger="worker")
    body = texts(n, rec)
    assert body.count("group g-p (demote) paused, resumable: rt down") == 1, body
    assert body.count("group g-p (demote) paused, resumable: qbt checking") == 1, body
    assert body.count("run 13 (worker) interrupted: 0 group(s) done, 0 failed, 1 paused, 0 busy") == 1, body
    assert "failed: rt down" not in body and rec.calls[-1][3] == "warning"


def test_a_run_with_a_paused_and_a_failed_group_is_told_one_failed_as_history_says(installed):
    """The run's line counts failures by the one rule (``journal.failed_not_paused``) that apply's
    summary, ``history`` and ``status`` read from the journaled summary: the paused group (it
    pauses after its deletes began, its status failed) is told paused, never counted failed."""
    n, rec = installed
    s = RunSummary(
        14,
        status="interrupted",
        groups=[
            GroupOutcome("g-p", "demote", "failed", reason="rt down", needs_attention=True, paused=True),
            GroupOutcome("g-bad", "demote", "rolled_back", reason="size differs"),
        ],
    )
    notify.run_finished(s, trigger="worker")
    body = texts(n, rec)
    assert "group g-p (demote) paused, resumable: rt down" in body
    assert "group g-bad (demote) rolled back: size differs" in body
    assert "run 14 (worker) interrupted: 0 group(s) done, 1 failed, 1 paused, 0 busy" in body, body
    assert failed_not_paused(s.to_dict()) == s.groups_failed_not_paused == ["g-bad"]  # history's reading
    assert rec.calls[-1][3] == "failure"


def test_dry_runs_and_empty_runs_are_not_reported(installed):
    n, rec = installed
    notify.run_finished(RunSummary(None, dry_run=True, groups=[GroupOutcome("g", "demote", "planned")]))
    notify.run_finished(RunSummary(None))
    assert n.flush(5) and rec.calls == []


def test_dead_lettered_job_is_reported(installed, tmp_path):
    n, rec = installed
    conn = sqlite3.connect(tmp_path / "q.sqlite", check_same_thread=False)
    conn.executescript(QUEUE_DDL)
    q = JobQueue(conn, max_attempts=1)
    job_id, _ = q.enqueue(
        QEvent(kind="torrent_finished", source="qbittorrent", hashes=("a" * 40,), paths=(), received_at=0.0), now=0.0
    )
    q.claim("w", now=1.0)
    assert q.fail(job_id, "qBittorrent unreachable", worker_id="w") == "dead"
    body = texts(n, rec)
    assert (
        f"event job {job_id} (torrent_finished: aaaaaaaaaaaa) is dead after 1 attempt(s): qBittorrent unreachable"
        in body
        and f"qbhook queue retry {job_id}" in body
    )


def test_mass_delete_guard_is_reported(installed, tmp_path):
    n, rec = installed
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for p in (stash, pool):
        (p / "data/media/torrents/seeding").mkdir(parents=True)
    cfg = make_config(tmp_path / "cat.sqlite", stash, pool, scan={"mass_delete_min_paths": 3})
    cat = Catalog.open(cfg.catalog)
    files = [write(stash / f"s/{i}", b"x") for i in range(10)]
    scan_pool(cat, cfg.primary, cfg.scan)
    for f in files:
        os.unlink(f)
    with pytest.raises(MassDeleteRefused):
        scan_pool(cat, cfg.primary, cfg.scan)
    cat.close()
    body = texts(n, rec)
    assert "[FAILURE] scan of pool stash would drop 10 of 10 known paths" in body


# ------------------------------------------------------------------ sweep checks


class _Cfg:
    def __init__(self, **kw):
        self.notify = make_config_notify(**kw)
        self.policy = PolicyConfig()


def make_config_notify(**kw):
    from qbhook.config import NotifyConfig

    return NotifyConfig(urls=("json://x",), **kw)


@pytest.fixture
def conn(tmp_path):
    c = sqlite3.connect(tmp_path / "state.sqlite")
    c.executescript(schema.STATE_DDL)
    return c


def test_blocked_group_reported_once_after_blocked_after(installed, conn):
    _n, _rec = installed
    w = World()
    w.payload(S + "/movies", {"Half/half.mkv": "H"})
    w.torrent("a" * 40, S + "/movies", ["Half/half.mkv"], progress=0.5, name="Half")
    cfg = _Cfg(blocked_after=3600)
    snap = w.snapshot()
    plan = make_plan(snap, cfg.policy)
    assert plan.groups[0].action == "blocked"
    assert alerts.sweep_checks(cfg, conn, snap, plan, now=1000) == []  # first seen
    assert alerts.sweep_checks(cfg, conn, snap, plan, now=1000 + 3599) == []  # not yet
    (ev,) = alerts.sweep_checks(cfg, conn, snap, plan, now=1000 + 3600)
    assert ev.kind == "blocked" and "(Half) blocked for 1.0 hours: Half: incomplete (50.0%)" in ev.text
    assert alerts.sweep_checks(cfg, conn, snap, plan, now=1000 + 7200) == []  # once per episode
    # unblocked, then blocked again: a new episode, its clock starts again
    w.torrents[0] = ("a" * 40, S + "/movies", ["Half/half.mkv"], {"name": "Half"})
    ok_snap = w.snapshot()
    alerts.sweep_checks(cfg, conn, ok_snap, make_plan(ok_snap, cfg.policy), now=9000)
    assert alerts.sweep_checks(cfg, conn, snap, plan, now=9001) == []
    assert len(alerts.sweep_checks(cfg, conn, snap, plan, now=9001 + 3600)) == 1


def test_low_free_space_reported_once_per_episode(installed, conn):
    w = World()
    w.free["pool"] = 5 * 2**30
    cfg = _Cfg(free_space_below=10 * 2**30)
    snap = w.snapshot()
    plan = make_plan(snap, cfg.policy)
    (ev,) = alerts.sweep_checks(cfg, conn, snap, plan, now=1)
    assert ev.kind == "free_space" and "pool pool has 5.0 GiB free, below 10.0 GiB" in ev.text
    assert alerts.sweep_checks(cfg, conn, snap, plan, now=2) == []
    w.free["pool"] = 20 * 2**30
    assert alerts.sweep_checks(cfg, conn, w.snapshot(), plan, now=3) == []
    w.free["pool"] = 1
    assert [e.kind for e in alerts.sweep_checks(cfg, conn, w.snapshot(), plan, now=4)] == ["free_space"]


def test_relocated_torrent_with_atm_back_on_is_reported(installed, conn):
    from dataclasses import replace

    w = World()
    w.payload(S + "/movies", {"M/m.mkv": "M"})
    w.link(S + "/movies/M/m.mkv", LIB + "/M.mkv")
    w.torrent("a" * 40, S + "/movies", ["M/m.mkv"], name="M", tags={"qbhook-relocated"})
    w.torrent("b" * 40, S + "/movies", ["M/m.mkv"], name="M-other", tags=set())
    cfg = _Cfg()
    snap = w.snapshot()
    atm_on = replace(snap, torrents=tuple(replace(t, auto_tmm=True) for t in snap.torrents))
    plan = make_plan(snap, cfg.policy)
    assert alerts.sweep_checks(cfg, conn, snap, plan, now=1) == []
    (ev,) = alerts.sweep_checks(cfg, conn, atm_on, plan, now=2)  # only the relocated one counts
    assert ev.kind == "atm" and ev.text.startswith(f"torrent M ({'a' * 12}) was relocated by qbhook")
    assert alerts.sweep_checks(cfg, conn, atm_on, plan, now=3) == []


def test_atm_on_a_torrent_the_journal_relocated_counts_without_the_tag(installed, conn):
    import json
    from dataclasses import replace

    from qbhook.catalog.schema import JOURNAL_DDL

    conn.executescript(JOURNAL_DDL)
    conn.execute("INSERT INTO runs(id, started_at, status, plan) VALUES (1, 0, 'done', '{}')")
    for n, (h, status) in enumerate((("a" * 40, "done"), ("c" * 40, "undone"))):
        conn.execute(
            "INSERT INTO steps(run, seq, group_id, kind, args, status, started_at) "
            "VALUES (1, ?, 'g', 'relocate', ?, ?, 0)",
            (n, json.dumps({"torrent": h}), status),
        )
    conn.commit()
    w = World()
    for h in ("a" * 40, "b" * 40, "c" * 40):
        w.payload(P + f"/{h[0]}", {"x.mkv": h[0]})
        w.torrent(h, P + f"/{h[0]}", ["x.mkv"], name=h[0], tags=set())
    cfg = _Cfg()
    snap = w.snapshot()
    atm_on = replace(snap, torrents=tuple(replace(t, auto_tmm=True) for t in snap.torrents))
    evs = alerts.sweep_checks(cfg, conn, atm_on, make_plan(snap, cfg.policy), now=1)
    assert [e.text.split(" (")[0] for e in evs] == ["torrent a"]  # b never moved, c's move was undone


def test_without_a_notifier_the_sweep_checks_do_nothing(conn):
    prev = notify.install(None)
    try:
        w = World()
        w.free["pool"] = 1
        snap = w.snapshot()
        assert alerts.sweep_checks(_Cfg(free_space_below=10), conn, snap, make_plan(snap, PolicyConfig())) == []
        assert state.get(conn, "notify.low_pools") == (None, None)
    finally:
        notify.install(prev)


# ------------------------------------------------------------------ config


BASE = {
    "catalog": "/var/lib/qbhook/c.sqlite",
    "pools": {"stash": {"path": "/stash", "role": "primary"}, "pool": {"path": "/pool", "role": "cold"}},
    "seeding_roots": {"stash": "/stash/seeding", "pool": "/pool/seeding"},
}


def test_notify_section_with_units_and_secret_sources(tmp_path):
    f = tmp_path / "urls"
    f.write_text("ntfy://ntfy.sh/topic-secret\njson://hooks.local/x\n")
    cfg = parse_config(
        {
            **BASE,
            "notify": {
                "urls": ["gotify://h/token1"],
                "urls_file": str(f),
                "min_interval": "10m",
                "blocked_after": "2h",
                "free_space_below": "500GiB",
            },
        },
        env={},
    )
    n = cfg.notify
    assert n.urls == ("gotify://h/token1", "ntfy://ntfy.sh/topic-secret", "json://hooks.local/x")
    assert (n.min_interval, n.blocked_after, n.free_space_below) == (600, 7200, 500 * 2**30)
    cfg2 = parse_config({**BASE, "notify": {"urls_env": "QBHOOK_NOTIFY"}}, env={"QBHOOK_NOTIFY": "a://1, b://2"})
    assert cfg2.notify.urls == ("a://1", "b://2")
    shown = describe(cfg)["notify"]
    assert "secret" not in repr(shown) and "token1" not in repr(shown) and shown["urls"] == ["********"] * 3
    assert "token1" not in repr(cfg.notify)
    assert parse_config(BASE, env={}).notify.urls == ()


@pytest.mark.parametrize(
    "section, key",
    [
        ({"urls": "json://x"}, "notify.urls"),
        ({"urls_env": "NOPE"}, "notify.urls_env"),
        ({"min_interval": "soon"}, "notify.min_interval"),
        ({"free_space_below": -1}, "notify.free_space_below"),
        ({"colour": "red"}, "notify.colour"),
    ],
)
def test_notify_config_errors_name_the_key(section, key):
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "notify": section}, env={})
    assert str(e.value).startswith(f"config: {key}: ")


def test_an_url_apprise_cannot_read_is_a_config_error_without_echoing_it():
    cfg = parse_config({**BASE, "notify": {"urls": ["json://ok.local/", "nosuchscheme://secret-token"]}}, env={})
    prev = notify.install(None)
    try:
        with pytest.raises(ConfigError) as e:
            notify.configure(cfg)
        assert "notify.urls: entry 2 is not a URL apprise understands" in str(e.value)
        assert "secret-token" not in str(e.value) and e.value.exit_code == 78
    finally:
        notify.install(prev)


def test_a_backlog_behind_a_slow_send_goes_out_as_one_message():
    release = threading.Event()
    rec = Recorder(hang=release)
    n = Notifier(rec, min_interval=0, gather_s=0)
    n.emit(Event("run", "first"))
    time.sleep(0.2)  # the sender is now stuck on "first"
    for i in range(30):
        n.emit(Event("run", f"queued {i}"))
    release.set()
    assert n.flush(5)
    assert [len(c[2].splitlines()) for c in rec.calls] == [1, 30]
    n.close(1)


def test_a_dead_endpoint_s_retries_never_repeat_a_batch_to_the_endpoint_that_had_it():
    """Two endpoints, one dead: apprise says only that "at least one" failed, so retrying the
    whole batch sent it again, every backoff, to the endpoint that already had it. Each
    endpoint has its own notifier (``Fanout``): the retry goes only where it failed."""
    good, dead = Recorder(), Recorder(fail=True)
    f = Fanout(
        [
            Notifier(good, min_interval=0, gather_s=0, retry_s=0.05),
            Notifier(dead, min_interval=0, gather_s=0, retry_s=0.05),
        ]
    )
    f.emit(Event("group_failed", "group g rolled back", "failure"))
    assert f.flush(5) is False  # the dead endpoint's batch is kept
    deadline = time.monotonic() + 1
    while len(dead.calls) < 3 and time.monotonic() < deadline:  # its retries go on
        time.sleep(0.01)
    assert len(dead.calls) >= 3
    assert [c[2] for c in good.calls] == ["[FAILURE] group g rolled back"]  # once, not once per retry
    dead.fail = False
    assert f.flush(5) is True and f.failed >= 3 and f.dropped == 0
    f.close(1)


def test_configure_gives_each_url_its_own_notifier(monkeypatch):
    made = []
    monkeypatch.setattr(notify, "apprise_sender", lambda urls, first=1: made.append((tuple(urls), first)) or Recorder())

    class _N:
        urls = ("json://a/", "json://b/")
        min_interval = 0

    class _C:
        notify = _N()

    prev = notify.install(None)
    try:
        n = notify.configure(_C())
        assert isinstance(n, Fanout) and len(n.notifiers) == 2
        assert made == [(("json://a/",), 1), (("json://b/",), 2)]
    finally:
        n = notify.install(prev)
        if n is not None:
            n.close(1)


# ------------------------------------------------------------------ the outbox: undelivered events outlive the process

SECRET_URL = "ntfy://secret-token@ntfy.example/qbhook"


class _NotifyCfg:
    def __init__(self, urls):
        self.urls = tuple(urls)
        self.min_interval = 0


class _CfgWithCatalog:
    def __init__(self, catalog, urls):
        self.catalog = catalog
        self.notify = _NotifyCfg(urls)


def _process(monkeypatch, catalog, senders: dict, take_kept: bool = True) -> Notifier | Fanout:
    """A new qbhook process's notifier: what ``configure`` makes from the config (no notifier yet)."""
    monkeypatch.setattr(notify, "apprise_sender", lambda urls, first=1: senders[urls[0]])
    notify.install(None)
    return notify.configure(_CfgWithCatalog(catalog, list(senders)), take_kept=take_kept)


def _exit(*ns):
    """The process of these notifiers ends: its flocks go with it."""
    for n in ns:
        for one in getattr(n, "notifiers", (n,)):
            if one._outbox is not None:
                one._outbox.release()


def _dispose(*ns):
    """Stop the threads of notifiers whose process is over (without writing their outbox again)."""
    for n in ns:
        for one in getattr(n, "notifiers", (n,)):
            one._outbox = None
            one.close(1)


def test_events_undelivered_when_the_process_ends_are_sent_by_the_next_one(monkeypatch, tmp_path):
    """ntfy restarting while `serve` stops: the sweep recorded "pool low" as told, so the next
    process must send it, marked as delayed, and the outbox goes once it is delivered."""
    catalog = tmp_path / "catalog.sqlite"
    prev = notify.active()
    try:
        down = Recorder(fail=True)
        first = _process(monkeypatch, catalog, {SECRET_URL: down})
        notify.emit("free_space", "pool cold is low: 3 GiB free", "warning")
        notify.flush_pending(5)  # the command (serve) ends: the flush fails
        assert down.calls and first.sent == 0
        (outbox,) = tmp_path.glob("catalog.sqlite.notify-*.outbox")
        on_disk = " ".join([outbox.name, outbox.read_text()])
        assert "secret-token" not in on_disk and "ntfy.example" not in on_disk  # the URL carries a token
        assert oct(outbox.stat().st_mode & 0o777) == "0o600"
        _exit(first)

        up = Recorder()
        second = _process(monkeypatch, catalog, {SECRET_URL: up})
        assert second.flush(5)
        (body,) = [c[2] for c in up.calls]
        assert body.startswith("(delayed, from ") and body.endswith("[WARNING] pool cold is low: 3 GiB free")
        assert list(tmp_path.glob("*.outbox")) == []  # delivered: gone
        _dispose(first, second)
    finally:
        notify.install(prev)


def test_a_send_in_progress_when_the_process_ends_is_kept_too(tmp_path):
    """A hanging endpoint (the network out): the batch being sent is neither queued nor held, and
    must reach the outbox all the same."""
    release = threading.Event()
    n = Notifier(Recorder(hang=release), min_interval=0, gather_s=0, outbox=notify.Outbox(tmp_path / "o"))
    n.emit(Event("group_failed", "group g failed", "failure"))
    prev = notify.install(n)
    try:
        notify.flush_pending(0.3)
    finally:
        notify.install(prev)
    _exit(n)
    (ev,) = notify.Outbox(tmp_path / "o").load()
    assert ev.text == "group g failed" and ev.delayed
    release.set()
    _dispose(n)


def test_a_crash_between_loading_the_outbox_and_delivering_it_keeps_the_events(tmp_path):
    path = tmp_path / "o"
    notify.Outbox(path).save([Event("guard", "mass-delete guard tripped", "failure", 1.0)])
    release = threading.Event()
    hanging = Recorder(hang=release)
    loaded = Notifier(hanging, min_interval=0, gather_s=0, outbox=notify.Outbox(path))
    time.sleep(0.2)  # it loaded the outbox and is stuck sending it: then the process is killed
    assert path.exists()
    _exit(loaded)
    up = Recorder()
    after = Notifier(up, min_interval=0, gather_s=0, outbox=notify.Outbox(path))
    assert after.flush(5) and "[FAILURE] mass-delete guard tripped" in up.calls[0][2]
    assert not path.exists()
    release.set()
    _dispose(loaded, after)


def test_a_corrupt_outbox_is_set_aside_with_one_line_and_start_goes_on(tmp_path, caplog):
    path = tmp_path / "o"
    path.write_bytes(b"\x00{not json")
    rec = Recorder()
    n = Notifier(rec, min_interval=0, gather_s=0, outbox=notify.Outbox(path))
    assert not path.exists() and (tmp_path / "o.bad").read_bytes() == b"\x00{not json"
    lines = [r.getMessage() for r in caplog.records if r.name == "qbhook.notify"]
    assert len(lines) == 1 and "set aside as o.bad" in lines[0] and "Traceback" not in caplog.text
    n.emit(Event("run", "a"))
    assert n.flush(5) and [c[2] for c in rec.calls] == ["a"]
    _dispose(n)


def test_the_outbox_is_never_read_or_written_through_a_symlink(tmp_path):
    """qbhook runs as root; the catalog's folder may be writable by others."""
    target = tmp_path / "elsewhere"
    target.write_text('{"version": 1, "dropped": 0, "events": []}')
    path = tmp_path / "o"
    path.symlink_to(target)
    ob = notify.Outbox(path)
    assert ob.load() == [] and (tmp_path / "o.bad").is_symlink()  # set aside, not followed
    path.symlink_to(target)
    ob.save([Event("run", "x", "info", 1.0)])  # the link is set aside again, the file written in its place
    assert target.read_text() == '{"version": 1, "dropped": 0, "events": []}'
    assert not path.is_symlink() and [e.text for e in ob.load()] == ["x"]


def test_an_outbox_another_user_owns_is_set_aside_unsent(monkeypatch, tmp_path):
    path = tmp_path / "o"
    notify.Outbox(path).save([Event("guard", "forged", "failure", 1.0)])
    ob = notify.Outbox(path)
    assert ob.take()  # its lock, made by this user before the other uid is played (it would refuse it too)
    monkeypatch.setattr(notify.os, "geteuid", lambda: os.lstat(path).st_uid + 1)
    assert ob.load() == [] and (tmp_path / "o.bad").exists() and not path.exists()


_GOOD = '{"kind": "run", "text": "kept", "severity": "info", "at": 1.0}'


@pytest.mark.parametrize(
    "doc",
    [
        '{"version": 1, "dropped": Infinity, "events": []}',  # json.loads takes it; int() raised OverflowError
        '{"version": 1, "dropped": NaN, "events": []}',
        '{"version": 1, "dropped": 1e400, "events": []}',
        '{"version": 1, "dropped": -1, "events": []}',
        '{"version": 1, "dropped": true, "events": []}',
        f'{{"version": 1, "dropped": 0, "events": [{_GOOD}, {_GOOD.replace("1.0", "1e300")}]}}',  # localtime raised
        f'{{"version": 1, "dropped": 0, "events": [{_GOOD.replace("1.0", "NaN")}]}}',
        f'{{"version": 1, "dropped": 0, "events": [{_GOOD.replace("1.0", "-Infinity")}]}}',
        f'{{"version": 1, "dropped": 0, "events": [{_GOOD.replace("1.0", "true")}]}}',
        f'{{"version": 1, "dropped": 0, "events": [{_GOOD.replace(chr(34) + "run", chr(34) + "lost")}]}}',
        f'{{"version": 1, "dropped": 0, "events": [{_GOOD.replace(chr(34) + "kept" + chr(34), "null")}]}}',
        '{"version": 1, "dropped": 0, "events": {"kind": "run"}}',
        "[" * 100_000,  # deeper than json's recursion
    ],
    ids=lambda doc: doc[:60] if len(doc) < 1000 else "deep",
)
def test_an_outbox_with_what_qbhook_never_writes_is_set_aside_and_the_sender_lives_on(tmp_path, caplog, doc):
    """json.loads takes Infinity, NaN and 1e400: "dropped": Infinity killed every command that
    sends the outbox with a traceback, and "at": 1e300 killed the sender thread for good."""
    path = tmp_path / "o"
    path.write_text(doc)
    rec = Recorder()
    n = Notifier(rec, min_interval=0, gather_s=0, outbox=notify.Outbox(path))
    assert not path.exists() and (tmp_path / "o.bad").read_text() == doc
    assert "not an outbox qbhook wrote" in caplog.text and "Traceback" not in caplog.text
    n.emit(Event("run", "a", "info", time.time()))
    assert n.flush(5) and [c[2] for c in rec.calls] == ["a"] and n._thread.is_alive()
    _dispose(n)


def test_a_delayed_event_at_a_time_the_platform_cannot_show_still_makes_a_line():
    line = notify._line(Event("run", "x", "info", 1e300, delayed=True))
    assert line == "(delayed, from an unknown time) x"


def test_a_batch_that_cannot_be_composed_is_dropped_and_the_thread_sends_the_next(monkeypatch, tmp_path, caplog):
    path = tmp_path / "o"
    notify.Outbox(path).save([Event("guard", "poison", "failure", 1.0)])
    real = notify.compose

    def compose(events):
        if any(e.text == "poison" for e in events):
            raise OverflowError("timestamp out of range for platform time_t")
        return real(events)

    monkeypatch.setattr(notify, "compose", compose)
    rec = Recorder()
    n = Notifier(rec, min_interval=0, gather_s=0, outbox=notify.Outbox(path))
    n.emit(Event("run", "after", "info", time.time()))
    assert n.flush(5) and [c[2] for c in rec.calls] == ["after"] and n._thread.is_alive()
    assert "1 event(s) dropped: they cannot be put in a message" in caplog.text
    assert not path.exists()  # out of the outbox too: not merged back at every save
    _dispose(n)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the outbox another owner")
def test_the_owner_is_judged_on_the_outbox_read_not_on_the_name_afterwards(monkeypatch, tmp_path):
    """The owner was lstat'ed by name after another open read the file: a rename in between
    (another user's file read, qbhook's own at the name when judged) sent forged lines as ours."""
    path = tmp_path / "o"
    path.write_text(f'{{"version": 1, "dropped": 0, "events": [{_GOOD.replace("kept", "forged")}]}}')
    os.chown(path, 65534, 65534)
    ours = tmp_path / "o.write.lock"
    ours.touch()
    real = notify.read_regular_file

    def racing(p, limit, **kw):
        data = real(p, limit, **kw)
        os.rename(ours, p)  # another user's rename, between the read and the check
        return data

    monkeypatch.setattr(notify, "read_regular_file", racing)
    assert notify.Outbox(path).load() == []


def test_an_outbox_with_a_second_link_is_set_aside_unsent(tmp_path):
    path = tmp_path / "o"
    notify.Outbox(path).save([Event("guard", "forged", "failure", 1.0)])
    os.link(path, tmp_path / "elsewhere")
    assert notify.Outbox(path).load() == [] and (tmp_path / "o.bad").exists()


def test_an_outbox_lock_another_user_owns_or_with_a_second_link_is_refused(monkeypatch, tmp_path, caplog):
    path = tmp_path / "o"
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    os.link(target, tmp_path / "o.write.lock")
    notify.Outbox(path).save([Event("run", "x", "info", 1.0)])
    assert not path.exists() and "refusing the outbox lock" in caplog.text and "has 2 links" in caplog.text
    (tmp_path / "o.lock").touch()
    monkeypatch.setattr(notify.os, "geteuid", lambda: os.lstat(tmp_path / "o.lock").st_uid + 1)
    assert not notify.Outbox(path).take() and "not this user" in caplog.text


def test_the_outbox_keeps_the_newest_events_and_counts_the_rest(monkeypatch, tmp_path):
    monkeypatch.setattr(notify, "QUEUE_SIZE", 5)
    ob = notify.Outbox(tmp_path / "o")
    ob.save([Event("run", f"run {i}", "info", float(i)) for i in range(8)])
    rec = Recorder()
    n = Notifier(rec, min_interval=0, gather_s=0, queue_size=5, outbox=notify.Outbox(tmp_path / "o"))
    assert n.flush(5)
    lines = rec.calls[0][2].splitlines()
    assert lines[0] == "[WARNING] 3 older notification(s) were dropped while the notifier was down"
    assert [x.rsplit(") ", 1)[1] for x in lines[1:]] == [f"run {i}" for i in range(3, 8)]
    assert not (tmp_path / "o").exists()
    _dispose(n)


def test_the_outbox_of_a_url_no_longer_configured_is_dropped(monkeypatch, tmp_path, caplog):
    catalog = tmp_path / "catalog.sqlite"
    prev = notify.active()
    try:
        first = _process(monkeypatch, catalog, {"json://a/": Recorder(fail=True), "json://b/": Recorder(fail=True)})
        notify.emit("group_failed", "group g failed", "failure")
        notify.flush_pending(5)
        assert len(list(tmp_path.glob("*.outbox"))) == 2
        _exit(first)
        a = Recorder()
        second = _process(monkeypatch, catalog, {"json://a/": a})
        assert second.flush(5) and "group g failed" in a.calls[0][2]
        assert list(tmp_path.glob("*.outbox")) == []
        assert "1 undelivered event(s) for an endpoint no longer in notify.urls dropped" in caplog.text
        _dispose(first, second)
    finally:
        notify.install(prev)


# ------------------------------------------------------------------ who sends the outbox


def test_one_process_at_a_time_takes_the_outbox(tmp_path):
    """Two processes starting while the notifier is down must not both send the kept events
    (duplicates once it is back): the second loads nothing until the first is gone."""
    path = tmp_path / "o"
    notify.Outbox(path).save([Event("guard", "mass-delete guard tripped", "failure", 1.0)])
    first, second = notify.Outbox(path), notify.Outbox(path)
    assert [e.text for e in first.load()] == ["mass-delete guard tripped"]
    assert second.load() == []
    first.release()  # its process ended, the events undelivered
    assert [e.text for e in second.load()] == ["mass-delete guard tripped"]
    second.release()


def test_a_process_whose_own_events_wait_in_the_outbox_keeps_others_from_sending_them(monkeypatch, tmp_path):
    """`serve` with ntfy down writes its failed batch to the outbox and keeps retrying it: a cron
    `sweep` starting meanwhile must not send it too."""
    catalog = tmp_path / "catalog.sqlite"
    prev = notify.active()
    try:
        serve = _process(monkeypatch, catalog, {SECRET_URL: Recorder(fail=True)})
        notify.emit("group_failed", "group g failed", "failure")
        assert not serve.flush(5)
        assert list(tmp_path.glob("*.outbox"))
        up = Recorder()
        sweep = _process(monkeypatch, catalog, {SECRET_URL: up})
        assert sweep.flush(5) and up.calls == []
        _dispose(serve, sweep)
    finally:
        notify.install(prev)


def test_a_command_that_does_not_take_kept_events_leaves_the_outbox_alone(monkeypatch, tmp_path):
    """`qbhook status` (or the hook, without the secrets: some URLs missing) with the notifier back
    up: it sends nothing of the outbox, rewrites nothing and drops no outbox as stale."""
    catalog = tmp_path / "catalog.sqlite"
    mine = notify.Outbox(notify.Outbox.name_for(catalog, SECRET_URL))
    mine.save([Event("guard", "mass-delete guard tripped", "failure", 1.0)])
    other = notify.Outbox(notify.Outbox.name_for(catalog, "json://from-the-env/"))
    other.save([Event("run", "run 7 failed", "failure", 2.0)])
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.glob("*.outbox")}
    prev = notify.active()
    try:
        up = Recorder()
        status = _process(monkeypatch, catalog, {SECRET_URL: up}, take_kept=False)
        assert status.flush(5) and up.calls == []
        notify.flush_pending(5)
        assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.glob("*.outbox")} == before
        _dispose(status)
    finally:
        notify.install(prev)


def test_the_hook_does_not_wait_at_exit_for_an_outbox_it_does_not_send(monkeypatch, tmp_path):
    """qBittorrent runs `qbhook hook` for every torrent: with an outbox present and the endpoint
    hanging, its exit must not wait FLUSH_S for events that are not its own."""
    catalog = tmp_path / "catalog.sqlite"
    notify.Outbox(notify.Outbox.name_for(catalog, SECRET_URL)).save([Event("run", "run 7 failed", "failure", 1.0)])
    release = threading.Event()
    hanging = Recorder(hang=release)
    prev = notify.active()
    try:
        hook = _process(monkeypatch, catalog, {SECRET_URL: hanging}, take_kept=False)
        started = time.monotonic()
        notify.flush_pending(notify.FLUSH_S)
        assert time.monotonic() - started < 1.0 and hanging.calls == []
        release.set()
        _dispose(hook)
    finally:
        notify.install(prev)


def test_the_outbox_lock_is_never_a_symlink(tmp_path, caplog):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    path = tmp_path / "o"
    notify.Outbox(path).save([Event("run", "x", "info", 1.0)])
    (tmp_path / "o.lock").symlink_to(target)
    ob = notify.Outbox(path)
    assert ob.load() == [] and target.read_text() == "keep"
    assert "cannot use the outbox lock" in caplog.text


def test_saving_waits_boundedly_for_another_writer_of_the_outbox(monkeypatch, tmp_path, caplog):
    """Two processes merging into the file at once would lose one's events: the second waits for
    the first (at most SAVE_WAIT_S, then it logs and writes nothing)."""
    monkeypatch.setattr(notify, "SAVE_WAIT_S", 0.2)
    path = tmp_path / "o"
    held = notify._flock(tmp_path / "o.write.lock", 0)
    try:
        notify.Outbox(path).save([Event("run", "x", "info", 1.0)])
    finally:
        os.close(held)
    assert not path.exists() and "cannot be kept for the next start" in caplog.text
    notify.Outbox(path).save([Event("run", "x", "info", 1.0)])
    assert path.exists()


@pytest.mark.parametrize(
    "args, takes",
    [
        (["status"], False),
        (["hook", "added", "0" * 40], False),
        (["apply"], False),  # a dry run
        (["apply", "--yes"], True),
        (["resume"], True),
        (["sweep"], True),
    ],
)
def test_only_serve_and_the_commands_that_act_take_the_kept_notifications(monkeypatch, tmp_path, args, takes):
    from tests.unit.test_cli_catalog import Env

    seen = []
    monkeypatch.setattr(notify, "configure", lambda cfg, take_kept=False: seen.append(take_kept))
    env = Env(tmp_path)
    env.save(notify={"urls": ["json://127.0.0.1:1/"]})
    env.run(*args, expect=None)
    assert seen[:1] == [takes]
