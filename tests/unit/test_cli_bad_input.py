"""Bad input never gives a traceback: every command, in-process, against what a user or a
hostile tree can hand it.

The rule (README, "Exit codes"): bad input is one line naming the cause (plus an optional hint
line) and an exit code of ``qbhook.errors.ExitCode``, and it changes nothing. Each case below
was a traceback, a hang, a wrong exit code or a silently accepted value before its fix; a case
asserts the exit code, the line that names the cause and that nothing was created, so a later
change cannot bring one back. Usage errors (a value of the wrong kind on the command line) are
click's: exit 2 with ``Error: Invalid value for '<option>': <why>`` under the usage line.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from qbhook.cli import main
from qbhook.errors import ExitCode
from tests.unit.test_cli_catalog import Env
from tests.unit.test_startup import HASH, bed  # noqa: F401  (the fixture: a catalog with a synced index)

BIG = str(10**23)  # past SQLite's 64-bit integers: was an OverflowError from sqlite3
NOT_UTF8 = os.fsdecode(b"\xff\xfe")  # what Python makes of non-UTF-8 bytes in argv


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


# Each: the arguments, and what the one error line must say. None of them may open the catalog.
USAGE = [
    (["history", "--run", BIG], "Invalid value for '--run': must be at most 9223372036854775807"),
    (["history", "--limit", BIG], "Invalid value for '--limit': must be at most 9223372036854775807"),
    (["history", "--limit", "-1"], "Invalid value for '--limit': must be at least 0"),
    (["resume", "--run", "0"], "Invalid value for '--run': must be at least 1"),
    (["resume", "--run", BIG], "Invalid value for '--run': must be at most"),
    (["queue", "--limit", BIG], "Invalid value for '--limit': must be at most"),
    (["queue", "retry", BIG], "Invalid value for 'JOB_ID': must be at most"),
    (["queue", "retry", "x"], "Invalid value for 'JOB_ID': 'x' is not a whole number"),
    # --port 99999 bound port 34463 (the kernel keeps the low 16 bits); --port 0 and --listen ''
    # fell back to the config's values as if not given.
    (["serve", "--port", "99999"], "Invalid value for '--port': must be a TCP port number from 1 to 65535"),
    (["serve", "--port", "0"], "Invalid value for '--port': must be a TCP port number from 1 to 65535"),
    (["serve", "--listen", ""], "Invalid value for '--listen': must not be empty"),
    (["apply", "--wait", "nan"], "Invalid value for '--wait': cannot read 'nan' as a duration"),
    (["apply", "--wait", "-1"], "Invalid value for '--wait': cannot read '-1' as a duration"),
    (["resume", "--wait", "inf"], "Invalid value for '--wait': cannot read 'inf' as a duration"),
    (["repair", "--wait", "1e400"], "Invalid value for '--wait': cannot read '1e400' as a duration"),
    # a relative mount point was made absolute from wherever the command ran
    (["scan", "--forget-unmounted", "mnt/old"], "Invalid value for '--forget-unmounted': 'mnt/old' is not an absolute"),
    (["explain", HASH, "--max-scan-age", "nan"], "Invalid value for '--max-scan-age': cannot read 'nan'"),
    # A hash goes to SQLite and to the clients: non-UTF-8 text was a UnicodeEncodeError there.
    (["explain", NOT_UTF8], "Invalid value for 'TORRENT_HASH': not a torrent info hash"),
    (["explain", "zz"], "Invalid value for 'TORRENT_HASH': not a torrent info hash (40 or 64 hex digits): 'zz'"),
    (["plan", "--hash", "-x"], "Invalid value for '--hash': not a torrent info hash"),
    (["apply", "--hash", NOT_UTF8], "Invalid value for '--hash': not a torrent info hash"),
    (["repair", "g" * 40], "Invalid value for '[TORRENT_HASH]': not a torrent info hash"),
    (["plan", "--group", ""], "Invalid value for '--group': must not be empty"),
    (["torrents", "--group", ""], "Invalid value for '--group': must not be empty"),  # listed every group
    (["apply", "--group", NOT_UTF8], "Invalid value for '--group': is not valid text"),
    # options that did nothing, exit 0, as if done (a CLI bad-input hunt)
    (["holding", "--yes"], "--yes goes with --purge-expired"),
    (["holding", "--purge-expired", "--forget-gone"], "--purge-expired and --forget-gone are two acts"),
    (["orphans", "--yes"], "--yes goes with --quarantine"),
    (["dupes", "--offline"], "--offline goes with --payloads"),
    # R53: --payloads reads the torrent index: these were ignored, an answer that looked filtered
    (["dupes", "--payloads", "--no-scan"], "--no-scan does not go with --payloads"),
    (["dupes", "--payloads", "--offline", "--min-size", "999T"], "--min-size does not go with --payloads"),
    (["dupes", "--payloads", "--min-size", "1"], "--min-size does not go with --payloads"),  # given, if default
    (["explain", HASH, "--live", "--index"], "--index and --live are two different answers: give one"),
    # R80: --min-size 1.5 ran with 1 byte, where promote_copy_max_bytes: 1.5 was refused (78): the
    # config's size reader now, one rule
    (["dupes", "--no-scan", "--min-size", "1.5"], "Invalid value for '--min-size': must be a whole number of bytes"),
    (["dupes", "--min-size", "0.9B"], "Invalid value for '--min-size': must be a whole number of bytes (got '0.9B')"),
    (["dupes", "--min-size", "-1"], "Invalid value for '--min-size': cannot read '-1' as a size (examples: "),
    # R80: --limit 1_0 was 10 and --wait ٣ 3 seconds, while --wait 1_000 was refused: ASCII digits only
    (["history", "--limit", "1_0"], "Invalid value for '--limit': '1_0' is not a whole number"),
    (["queue", "retry", "\u0663"], "Invalid value for 'JOB_ID': '\u0663' is not a whole number"),
    (["apply", "--wait", "\u0663"], "Invalid value for '--wait': cannot read '\u0663' as a duration"),
    (["apply", "--wait", "1_000"], "Invalid value for '--wait': cannot read '1_000' as a duration"),
]


@pytest.mark.parametrize("args, why", USAGE, ids=[" ".join(a)[:40] for a, _ in USAGE])
def test_a_bad_argument_is_a_usage_error_before_anything_opens(env, args, why):
    for as_json in ([], ["--json"]):
        r = env.run(*as_json, *args, expect=None)
        assert r.exit_code == ExitCode.BAD_INPUT, (r.exit_code, r.output, r.exception)
        assert r.stdout == "" and r.stderr.splitlines()[-1].startswith("Error: " + why), r.stderr
    assert not env.catalog.exists()  # refused before the catalog was opened (or created)


def test_a_good_value_of_each_kind_still_passes(env):
    """The same options take what they always took, units included, and 0 where it means 0."""
    env.run("scan")  # a catalog to read (history, queue, explain and status make none)
    assert env.run("history", "--limit", "0").exit_code == 0
    assert env.run("history", "--limit", "3", "--run", "7", expect=None).stderr.startswith("qbhook: ")
    assert env.run("queue", "--limit", "5").exit_code == 0
    assert env.run("history", "--limit", "+3").exit_code == 0
    for size in ("0", "12", "1.5K", "1M", "2GB"):
        assert env.run("dupes", "--no-scan", "--min-size", size).exit_code == 0
    r = env.run("explain", HASH.upper(), "--index", "--max-scan-age", "5m", expect=None)
    assert r.stderr == f"qbhook: torrent {HASH} is not in the torrent index\n"


def test_an_upper_case_hash_finds_the_indexed_torrent(bed):  # noqa: F811
    """rTorrent and users write hashes in upper case; the index keeps them lower-cased (the
    hash type lower-cases it, and must not refuse it)."""
    r = CliRunner().invoke(main, ["--config", str(bed), "--json", "explain", HASH.upper(), "--index"])
    assert r.exit_code == 0, (r.output, r.exception)
    answer = json.loads(r.stdout)
    assert [t["hash"] for t in answer["torrents"]] == [HASH]


def test_a_hash_no_client_has_is_bad_input_not_an_unreachable_client(bed):  # noqa: F811
    r = CliRunner().invoke(main, ["--config", str(bed), "explain", "f" * 40, "--index"])
    assert r.exit_code == ExitCode.BAD_INPUT, (r.exit_code, r.output, r.exception)
    assert r.stderr == f"qbhook: torrent {'f' * 40} is not in the torrent index\n"


def test_explain_with_the_client_down_says_so_not_bad_input(bed):  # noqa: F811
    """A hash the index lacks (added since its last sync) while qBittorrent is down was "not in
    the torrent index", exit 2: a script could not tell a wrong hash from a client that is down.
    And --live, which lists from the clients, answered from the index anyway."""
    for args, index_said in ((["explain", "f" * 40], True), (["explain", HASH, "--live"], False)):
        r = CliRunner().invoke(main, ["--config", str(bed), *args])
        assert r.exit_code == ExitCode.QBT_UNREACHABLE, (args, r.exit_code, r.output, r.exception)
        assert r.stdout == "" and "127.0.0.1:9" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
        # the index's half too, when it was asked: what it lacks, and why no client was
        assert ("not in the torrent index (and live answer impossible: " in r.stderr) == index_said, r.stderr


def test_explain_of_a_hash_no_answering_client_has_is_bad_input(bed, monkeypatch):  # noqa: F811
    """The clients answered and no one has the hash, nor the index: a wrong hash (exit 2), not
    "qBittorrent is down" (4); the client's own answer is the line (review R16)."""
    from qbhook.cli.app import App
    from tests.unit.test_executor import FakeQbt

    q = FakeQbt()  # answers, lacks the hash
    monkeypatch.setattr(App, "clients", property(lambda self: [q]))
    r = CliRunner().invoke(main, ["--config", str(bed), "explain", "f" * 40])
    assert r.exit_code == ExitCode.BAD_INPUT, (r.exit_code, r.output, r.exception)
    assert r.stderr == f"qbhook: no torrent with hash {'f' * 40} in any configured torrent client\n", r.stderr


LOGIN = "qBittorrent 'qbt' (http://127.0.0.1:9): login failed"
LOGIN_HINT = "check username/password for this instance"


@pytest.fixture
def login_fails(monkeypatch):
    """The bed's client answers every request with a refused login, an error with a hint."""
    from qbhook.cli.app import App
    from qbhook.errors import QbtError

    class LoginFails:
        name = "qbt"

        def __getattr__(self, _attr):
            def refuse(*_a, **_kw):
                raise QbtError(LOGIN, hint=LOGIN_HINT)

            return refuse

    monkeypatch.setattr(App, "clients", property(lambda self: [LoginFails()]))


def test_a_client_errors_hint_is_printed_on_its_own_line_not_escaped(bed, login_fails):  # noqa: F811
    """R30: a client error quoted in another line with f"{e}" carried its hint in it, and the
    printer escaped the line break: `login failed\\x0a  hint: check username/password`. The
    message in the line, the hint below it, as the error that ends a command prints it."""
    hint = f"  hint: {LOGIN_HINT}"
    r = CliRunner().invoke(main, ["--config", str(bed), "torrents"])  # answers from the index
    assert r.exit_code == 0, (r.output, r.exception)
    assert r.stderr.splitlines()[:2] == [f"qbhook: cannot sync qbt: {LOGIN}", hint], r.stderr
    assert "\\x0a" not in r.stderr
    r = CliRunner().invoke(main, ["--config", str(bed), "--json", "torrents"])  # JSON: as it was
    assert json.loads(r.stdout)["problems"] == [f"cannot sync qbt: {LOGIN}\n{hint}"]
    # explain from an index older than asked for: the sync tried, its failure in the reason
    r = CliRunner().invoke(main, ["--config", str(bed), "explain", HASH, "--max-scan-age", "0"])
    assert r.exit_code == 0, (r.output, r.exception)
    lines = r.stderr.splitlines()
    said = [i for i, line in enumerate(lines) if f"; cannot sync qbt: {LOGIN})" in line]
    assert said and lines[said[0] + 1] == hint and "\\x0a" not in r.stderr, r.stderr
    # explain of a hash the index lacks, no client to ask: the client's error, its hint below
    r = CliRunner().invoke(main, ["--config", str(bed), "explain", "f" * 40, "--max-scan-age", "1d"])
    assert r.exit_code == ExitCode.QBT_UNREACHABLE, (r.exit_code, r.output, r.exception)
    assert r.stderr.splitlines() == [
        f"qbhook: torrent {'f' * 40} is not in the torrent index (and live answer impossible: {LOGIN})",
        hint,
    ], r.stderr


def test_a_record_that_is_no_torrent_is_named_with_its_client_once(bed, monkeypatch):  # noqa: F811
    """R30: `torrents` printed "qbt: qbt: a torrent record keyed 'zz'...": the client's name was
    in the record's line and put before it again with the other records' lines."""
    from qbhook.cli.app import App

    class Garbage:
        name = "qbt"

        def maindata(self, rid=0):
            return {"rid": 1, "full_update": True, "torrents": {"zz": {"name": "x"}}}

    monkeypatch.setattr(App, "clients", property(lambda self: [Garbage()]))
    r = CliRunner().invoke(main, ["--config", str(bed), "torrents"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "qbhook: qbt: a torrent record keyed 'zz', not a torrent hash: skipped" in r.stderr.splitlines(), r.stderr
    assert "qbt: qbt:" not in r.stderr


# ------------------------------------------------------------------ the config file


class _Hung(Exception):
    pass


@pytest.fixture
def alarm():
    """Fail (instead of hanging the suite) if a command blocks for 5 s."""

    def hung(*_):
        raise _Hung("blocked for 5 s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])  # device: /dev/null read as empty
def test_a_config_that_is_not_a_regular_file_is_one_line_and_never_blocks(env, alarm, kind):
    """A FIFO nobody writes blocked open() forever (qbhook -c /some/fifo never returned)."""
    path = {"fifo": env.tmp / "fifo.yaml", "device": Path("/dev/null"), "directory": env.tmp}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    r = CliRunner().invoke(main, ["--config", str(path), "status"])
    assert r.exit_code == ExitCode.CONFIG, (r.exit_code, r.output, r.exception)
    want = f"cannot read {path}: Is a directory" if kind == "directory" else f"{path} is not a regular file"
    assert r.stderr == f"qbhook: config: {want}\n"
    assert not env.catalog.exists()


def test_an_oversized_config_is_refused_unread(env):
    big = env.tmp / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse: costs nothing, and was read whole into memory
    r = CliRunner().invoke(main, ["--config", str(big), "status"])
    assert (
        r.exit_code == ExitCode.CONFIG
        and r.stderr == f"qbhook: config: {big} is larger than 1 MiB: not a file qbhook reads\n"
    )


def test_an_unreadable_notify_url_is_one_line_and_never_logged(env, caplog):
    """apprise logged "Unsupported URL: <the URL>" at ERROR, above qbhook's line: the token in
    the URL went to the log qbhook promises never to echo it to."""
    caplog.set_level(logging.DEBUG)
    env.save(notify={"urls": ["json://127.0.0.1:1/ok", "bogus://secret-token@host"]})
    r = env.run("status", expect=None)
    assert r.exit_code == ExitCode.CONFIG, (r.exit_code, r.output, r.exception)
    assert r.stderr.splitlines()[0] == "qbhook: config: notify.urls: entry 2 is not a URL apprise understands"
    assert "secret-token" not in r.output + caplog.text
    assert not [x for x in caplog.records if x.name.startswith("apprise") and x.levelno >= logging.WARNING]


@pytest.fixture
def library_log_levels():
    """main sets these process-wide loggers' levels: put back what they were."""
    loggers = [logging.getLogger(n) for n in ("apprise", "urllib3")]
    was = [lg.level for lg in loggers]
    yield
    for lg, level in zip(loggers, was):
        lg.setLevel(level)


def test_a_notify_url_s_secrets_never_reach_the_log_even_at_debug(env, caplog, library_log_levels):
    """R35: at -vv apprise's debug lines printed the URL it posts to and urllib3's the request line:
    a webhook token in the path, an apikey in the query, in the service's own spelling of the URL
    (no redaction of the configured URL finds it)."""
    from qbhook import notify
    from tests.listener import Listener

    caplog.set_level(logging.DEBUG)
    env.run("-vv", "status", expect=None)  # sets up logging as every command does
    with Listener() as lis:
        notify.apprise_sender([f"json://u:PWSECRET1@127.0.0.1:{lis.port}/hook/PATHSECRET2?-apikey=QSECRET3"])(
            "t", "b", "info"
        )
        lis.wait_for(lambda r: len(r) == 1)
    assert not [s for s in ("PWSECRET1", "PATHSECRET2", "QSECRET3") if s in caplog.text], caplog.text


# ------------------------------------------------------------------ a hostile tree, a client that answers

SWAPPED = f"{101:040x}"  # its file was replaced by a folder before it was ever hashed
EVIL = f"{100:040x}"  # its folder is a symlink to /etc
ODD = [b"new\nline", "café \u202e rtl".encode(), b"-rf", b"--json", b"glob*?[x]\\", b"cr\rtab\t\x7f", b"L" * 250]
ODD.append(b"esc\x1b]0;pwned\x07\xc2\x9b2J")  # sets a terminal's title; CSI (U+009B) clears it


@pytest.fixture
def hostile(env, monkeypatch):
    """Both pools hold what a less trusted user can make: names with newlines, control and
    bidi characters, glob characters, leading dashes, 250 bytes; a FIFO, a socket, a symlink
    loop, a torrent folder that is a symlink out of the pool, a file swapped for a folder,
    a world-writable .qbhook-staging, a .qbhook-holding that is a symlink, an orphan whose
    name is not UTF-8. A stub qBittorrent seeds the torrents; the catalog is scanned."""
    from qbhook.clients import registry
    from tests.helpers import put
    from tests.unit.test_executor import FakeQbt, FakeTorrent

    env.save(
        qbittorrent={"name": "qbt", "url": "http://127.0.0.1:9", "username": "u", "password": "p"},
        policy={"demote_require_tag": None, "orphans_max_share": 0.9},  # orphans lists, never refuses
    )
    seed, cold = os.fsencode(env.stash / "data/media/torrents/seeding"), os.fsencode(env.pool)

    class Qbt(FakeQbt):
        def find(self, any_hash):  # the real adapters' lookup, which `repair HASH` uses
            return self.torrent(any_hash) if any_hash.lower() in self.t else None

    qbt = Qbt()
    for i, name in enumerate(ODD, start=1):
        put(os.path.join(seed, name, b"f.bin"), b"data%d" % i)
        qbt.add(FakeTorrent(f"{i:040x}", name.decode(), os.fsdecode(seed), [(name.decode() + "/f.bin", 5, 1)]))
    os.symlink("/etc", os.path.join(seed, b"evil"))
    qbt.add(FakeTorrent(EVIL, "evil", os.fsdecode(seed), [("evil/passwd", os.path.getsize("/etc/passwd"), 1)]))
    put(os.path.join(seed, b"swapped", b"f.bin", b"x"))
    qbt.add(FakeTorrent(SWAPPED, "swapped", os.fsdecode(seed), [("swapped/f.bin", 5, 1)]))
    put(os.path.join(seed, b"orphan\n\xff\xfe", b"o.bin"), b"orphan")
    # a library link and a second seeding name that are not UTF-8: explain's SQL could not bind
    # them, and plan/explain printed them raw (UnicodeEncodeError on a UTF-8 terminal)
    library = os.fsencode(env.stash / "data/media/library")
    os.makedirs(library)
    os.link(os.path.join(seed, ODD[0], b"f.bin"), os.path.join(library, b"lib\xff\xfe.bin"))
    os.link(os.path.join(seed, ODD[2], b"f.bin"), os.path.join(seed, b"other\xff.bin"))
    put(os.path.join(library, b"copy\xff.bin"), b"data4")  # a library copy: ODD[3] converges onto it
    os.mkfifo(os.path.join(seed, b"fifo"))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(seed, b"sock"))
    os.symlink(b"loop2", os.path.join(seed, b"loop1"))
    os.symlink(b"loop1", os.path.join(seed, b"loop2"))
    os.mkdir(os.path.join(seed, b".qbhook-staging"), 0o777)
    os.symlink(b"/etc", os.path.join(cold, b"data/media/torrents/seeding/.qbhook-holding"))
    monkeypatch.setattr(registry.Clients, "from_config", classmethod(lambda cls, entries, **kw: cls([qbt])))
    env.run("scan")
    yield env
    sock.close()


def _tree(env) -> dict:
    """Every entry under both pools: (mode, inode, size, mtime, links); what must not change."""
    out = {}
    for root in (env.stash, env.pool):
        for top, dirs, files in os.walk(os.fsencode(root)):
            for name in dirs + files:
                p = os.path.join(top, name)
                st = os.lstat(p)
                out[p] = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_nlink)
    return out


# Read-only and dry-run commands over the hostile tree: the exit code each gives (plan: 10,
# something would move), and no change on disk, with and without --json.
READ_ONLY = [
    (["scan"], 0),
    (["dupes"], 0),
    (["plan", "--steps"], ExitCode.ACTIONABLE),
    (["plan", "--hash", EVIL], 0),
    (["apply"], 0),
    (["apply", "--hash", f"{1:040x}"], 0),
    (["orphans"], 0),
    (["orphans", "--quarantine"], 0),
    (["explain", EVIL], 0),
    (["explain", f"{1:040x}"], 0),  # linked from the library under a non-UTF-8 name
    (["explain", f"{3:040x}"], 0),  # a second seeding name that is not UTF-8
    (["plan", "--steps", "--hash", f"{1:040x}"], 0),
    (["explain", SWAPPED], 0),
    (["torrents"], 0),
    (["dupes", "--payloads"], 0),
    # a decision whose reason names the non-UTF-8 library link: recording it in the index was a
    # UnicodeEncodeError, so every sweep (serve's too) failed while that link existed
    (["sweep"], 0),
    (["status"], 0),
    (["history"], 0),
    (["holding"], 0),
    # the swapped file was never hashed: bytes.fromhex(None) was a traceback before "content unknown"
    (["repair"], 0),
    (["repair", SWAPPED], ExitCode.FAILURE),
]


@pytest.mark.parametrize("args, code", READ_ONLY, ids=[" ".join(a)[:30] for a, _ in READ_ONLY])
def test_read_only_and_dry_run_commands_over_a_hostile_tree(hostile, args, code):
    before = _tree(hostile)
    for as_json in ([], ["--json"]):
        r = hostile.run(*as_json, *args, expect=None)
        assert r.exit_code == code, (r.exit_code, r.output, r.exception)
        if code not in (0, ExitCode.ACTIONABLE):
            assert r.stderr.startswith("qbhook: ") and len(r.stderr.splitlines()) <= 2, r.stderr
    assert _tree(hostile) == before


# What a terminal acts on instead of showing (paths._ACTIVE): none of it may reach the screen raw.
ACTIVE = ["\x1b", "\x07", "\r", "\x7f", "\x9b", "\u202e"]


@pytest.mark.parametrize("args", [["torrents"], ["plan", "--steps"], ["apply"], ["explain", f"{8:040x}"]])
def test_names_a_terminal_would_act_on_are_printed_as_escapes(hostile, args):
    r = hostile.run(*args, expect=None)
    assert r.exit_code in (0, ExitCode.ACTIONABLE), (r.exit_code, r.output, r.exception)
    out = r.output + r.stderr
    assert "esc\\x1b]0;pwned\\x07\\u009b2J" in out  # the name, shown
    assert [c for c in ACTIVE if c in out] == []


def test_a_repair_of_content_never_hashed_says_so(hostile):
    r = hostile.run("repair", SWAPPED, expect=ExitCode.FAILURE)
    why = "content unknown: swapped/f.bin never hashed before going missing"
    assert r.stderr == f"qbhook: cannot repair swapped ({SWAPPED}): {why}\n"


def test_find_through_a_symlink_out_of_the_pools_is_bad_input(hostile):
    """`find` resolves its argument: a link in a pool to /etc/passwd names a file outside every
    pool, refused as bad input (exit 2, as a path that does not exist), never recorded."""
    link = hostile.stash / "data/media/torrents/seeding/evil/passwd"
    r = hostile.run("find", str(link), expect=ExitCode.BAD_INPUT)
    assert r.stderr.splitlines()[0] == f"qbhook: {link} is not inside any configured pool"
    assert "/etc/passwd" not in hostile.run("--json", "dupes", "--no-scan").stdout


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_catalog_that_is_not_a_regular_file_is_one_line_and_left_alone(env, alarm, kind):
    """SQLite opened whatever `catalog:` named: a folder gave "unable to open database file", a
    FIFO "damaged" (exit 74), /dev/null a ROLLBACK error hiding the real one (and, as root, a
    /dev/null-journal file)."""
    where = env.tmp / "odd"
    os.mkfifo(where) if kind == "fifo" else where.mkdir()
    env.save(catalog=str(where))
    for args in (["status"], ["--json", "scan"], ["history"]):
        r = env.run(*args, expect=ExitCode.CONFIG)  # `catalog:` must change: 78, not the generic 1
        assert r.stderr.splitlines()[0] == f"qbhook: catalog {where} is not a regular file", r.stderr
        assert len(r.stderr.splitlines()) == 2 and r.stdout == ""
    assert sorted(os.listdir(env.tmp)) == ["config.yaml", "odd", "pool", "stash", "var"]
    assert (stat.S_ISFIFO if kind == "fifo" else stat.S_ISDIR)(os.lstat(where).st_mode)


@pytest.mark.parametrize("kind", ["fifo", "deep", "device"])
def test_a_saved_plan_that_is_no_plan_is_exit_65_and_never_blocks(hostile, alarm, kind):
    """`apply --plan` read its file whole: a FIFO blocked forever, JSON nested 100,000 deep was a
    RecursionError traceback. Same reader as the config file (qbhook.files)."""
    path = {"fifo": hostile.tmp / "plan.fifo", "deep": hostile.tmp / "deep.json", "device": Path("/dev/null")}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "deep":
        path.write_text("[" * 100_000)
    before = _tree(hostile)
    r = hostile.run("apply", "--plan", str(path), "--yes", expect=65)
    want = {
        "fifo": f"qbhook: plan file: {path} is not a regular file",
        "deep": f"qbhook: plan file {path} is not a qbhook plan (JSON nested too deeply)",
        "device": f"qbhook: plan file: {path} is not a regular file",
    }[kind]
    assert r.stderr.splitlines() == [want] and r.stdout == ""
    assert _tree(hostile) == before


def test_an_empty_config_path_is_refused_not_replaced_by_the_default(env, monkeypatch):
    """`qbhook -c "$CFG" ...` with CFG unset ran against /etc/qbhook/config.yaml, a config
    nobody named on that command line."""
    monkeypatch.setattr("qbhook.config.DEFAULT_CONFIG_PATHS", (str(env.config),))
    monkeypatch.delenv("QBHOOK_CONFIG", raising=False)
    r = CliRunner().invoke(main, ["-c", "", "history"])
    assert r.exit_code == ExitCode.CONFIG, (r.exit_code, r.output, r.exception)
    assert r.stderr == "qbhook: config: --config names no file (an empty path)\n"
    assert not env.catalog.exists()
    r = CliRunner().invoke(main, ["history"])  # the default itself still works: its catalog is the one named
    assert r.exit_code == ExitCode.NO_INPUT and r.stderr == f"qbhook: there is no catalog yet at {env.catalog}" + (
        " (`qbhook scan` makes one)\n"
    )


def test_an_empty_qbhook_config_variable_is_refused_as_an_empty_config_path_is(env, monkeypatch):
    """R30: QBHOOK_CONFIG="" (set, empty: `QBHOOK_CONFIG="$CFG"` with CFG unset) ran against
    /etc/qbhook/config.yaml, while `-c ""` is refused."""
    monkeypatch.setattr("qbhook.config.DEFAULT_CONFIG_PATHS", (str(env.config),))
    r = CliRunner().invoke(main, ["history"], env={"QBHOOK_CONFIG": ""})
    assert r.exit_code == ExitCode.CONFIG, (r.exit_code, r.output, r.exception)
    assert r.stderr == "qbhook: config: QBHOOK_CONFIG names no file (an empty path)\n"
    r = CliRunner().invoke(main, ["history"], env={"QBHOOK_CONFIG": str(env.config)})  # still read when set
    assert r.exit_code == ExitCode.NO_INPUT and str(env.catalog) in r.stderr


@pytest.mark.parametrize("text", ["", "# catalog: /var/lib/qbhook/catalog.sqlite\n"])
def test_an_empty_config_file_says_it_is_empty(env, text):
    """R30: an empty config file (or one of comments only) said "got NoneType"."""
    env.config.write_text(text)
    r = env.run("status", expect=ExitCode.CONFIG)
    assert r.stderr == "qbhook: config: the file holds no settings (it is empty, or only comments)\n", r.stderr


def _alias_tree(depth: int, width: int = 9) -> str:
    """A "billion laughs" YAML value: ``width ** depth`` leaves from a few hundred bytes."""
    rows = [f"&a0 [{', '.join(['lol'] * width)}]"]
    rows += [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)]
    return "[" + ", ".join(rows) + "]"


def test_a_yaml_alias_tree_is_quoted_in_one_short_line_at_once(env):
    """R30: ``numbers.shown`` made the whole repr() before cutting it to 60 characters: an 800-byte
    config of 9**8 leaves took ~28 s and 1.6 GB to say "must be true or false" (one level more:
    out of memory). 9**6 here keeps the unfixed code quick; the bound is the test below."""
    text = env.config.read_text() + f"policy:\n  auto_apply: {_alias_tree(6)}\n"
    env.config.write_text(text)
    r = env.run("config", "check", expect=ExitCode.CONFIG)
    got = "[['lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol',..."
    want = f"qbhook: config: policy.auto_apply: must be true or false (got {got})"
    assert r.stderr.splitlines() == [want], r.stderr


def test_a_value_quoted_in_a_message_is_looked_at_only_in_part():
    """What bounds it: however many values a tree holds (shared, as YAML aliases make them), a
    bounded number of them is looked at (the unfixed code looked at all of them, here until the
    leaf's 1001st repr raised and the message said only "list")."""
    from qbhook.numbers import shown

    class Leaf:
        calls = 0

        def __repr__(self):
            Leaf.calls += 1
            if Leaf.calls > 1000:
                raise RuntimeError("looked at too much")
            return "lol"

    tree: object = [Leaf()] * 9
    for _ in range(7):
        tree = [tree] * 9  # 9**8 leaves, 9 distinct lists
    assert shown(tree) == "[[[[...], [...], [...], [...], [...], [...], [...], [...]..."
    assert Leaf.calls == 0  # deeper than anything quoted
    assert shown([[Leaf()] * 5000]) == "[[lol, lol, lol, lol, lol, lol, lol, lol, ...]]"
    assert Leaf.calls == 8
    # a long string is quoted as before: the start of its repr, cut to 60; a long list by its first items
    assert shown("x" * 100) == repr("x" * 57)[:57] + "..."
    assert shown(list(range(100))) == "[0, 1, 2, 3, 4, 5, 6, 7, ...]"
    assert (
        shown(10**40) == "a number with more than 30 digits"
        and shown([10**400]) == "[a number with more than 30 digits]"
    )
    assert shown(True) == "True" and shown(None) == "None" and shown({"a": 1.5}) == "{'a': 1.5}"


def test_a_config_path_that_is_not_utf8_is_shown_as_its_bytes(tmp_path):
    """A config path with a byte that is not UTF-8 was shown as `\\udcff`, a code the person never
    typed; shown as the byte (`\\xff`), as every other path qbhook prints."""
    missing = os.path.join(os.fsdecode(tmp_path), os.fsdecode(b"c\xff.yaml"))
    r = CliRunner().invoke(main, ["-c", missing, "history"])
    assert r.exit_code == ExitCode.CONFIG, (r.exit_code, r.output, r.exception)
    assert r.stderr == f"qbhook: config: file {tmp_path}/c\\xff.yaml does not exist\n"


def test_serve_on_a_name_that_does_not_resolve_names_the_listen_address(hostile):
    """waitress's "Invalid host/port specified" was reported as `server.port` though the port was
    fine (checked before) and the host was what did not resolve."""
    r = hostile.run("serve", "--listen", "nosuch.invalid", "--port", "9", "--no-sweep", expect=ExitCode.BAD_INPUT)
    assert r.stderr.splitlines()[-2].startswith("qbhook: --listen: cannot listen on nosuch.invalid:9")
    assert r.stderr.splitlines()[-1].startswith("  hint: --listen must be an address")


def test_the_journal_records_an_error_naming_a_path_that_is_not_utf8(tmp_path):
    """fsops names the entry it refuses (`<path> is a symlink: refusing to go through it`); with a
    name a user made of other bytes, journaling that failure was a UnicodeEncodeError mid-run."""
    from qbhook.catalog.store import Catalog
    from qbhook.decide.plan import Relocate
    from qbhook.move.journal import Journal

    bad = os.fsdecode(b"/pool/seed/x\xff/a.mkv")
    cat = Catalog.open(tmp_path / "catalog.sqlite")
    try:
        j = Journal(cat.conn)
        run = j.start_run({})
        step = j.intend(run, 1, "g", Relocate(HASH, "qbt", "/x", "/y"))
        j.failed(step, f"{bad} is a symlink: refusing to go through it")
        j.set_group("g", run, "failed", f"relocate failed: {bad}")
        assert [s.error for s in j.steps(run)] == ["/pool/seed/x\\xff/a.mkv is a symlink: refusing to go through it"]
        assert j.group_status("g") == ("failed", "relocate failed: /pool/seed/x\\xff/a.mkv")
    finally:
        cat.close()


def test_a_step_naming_a_path_that_is_not_utf8_prints_it_as_escaped_bytes(hostile):
    """apply's dry run printed the converge step onto the library copy raw: UnicodeEncodeError on
    a UTF-8 terminal (as history would for the journaled step). Every line now shows such a byte
    as \\xNN, the text `shown` gives."""
    r = hostile.run("apply", "--hash", f"{4:040x}")
    assert "library/copy\\xff.bin" in r.stdout and "converge" in r.stdout, r.stdout
    assert "library/copy\\xff.bin" in hostile.run("plan", "--steps", "--hash", f"{4:040x}", expect=10).stdout


# The hostile names as shown: a newline, a bidi override and ESC/BEL/CSI, each escaped.
SHOWN_ODD = {1: "new\\x0aline", 2: "café \\u202e rtl", 8: "esc\\x1b]0;pwned\\x07\\u009b2J"}


@pytest.mark.parametrize(
    "args, names",
    [
        (["torrents"], [1, 2, 8]),
        (["plan", "--steps"], [1, 2, 8]),
        (["explain", f"{1:040x}"], [1]),
        (["explain", f"{2:040x}"], [2]),
        (["explain", f"{8:040x}"], [8]),
        (["status"], [2, 8]),  # the groups the last sweep left to act on (1 stays)
    ],
    ids=lambda v: " ".join(v)[:20] if isinstance(v, list) and isinstance(v[0], str) else None,
)
def test_a_name_with_a_newline_esc_or_a_bidi_override_is_shown_escaped_on_every_line(hostile, args, names):
    """Every human line goes through one printer (cli.app.echo_shown; test_house holds the CLI
    to it): a newline in a name cannot forge a line, nor ESC or U+202E act on the terminal."""
    if args == ["status"]:
        hostile.run("sweep", expect=None)  # status names the groups the last sweep left pending
    r = hostile.run(*args, expect=None)
    assert r.exit_code in (0, ExitCode.ACTIONABLE), (r.exit_code, r.output, r.exception)
    for stream in (r.stdout, r.stderr):
        assert [c for c in ACTIVE if c in stream] == [], stream
        assert not any(line.startswith("line") for line in stream.splitlines()), stream  # no forged line
    for i in names:
        assert SHOWN_ODD[i] in r.stdout, (i, r.stdout)


def test_status_shows_a_pool_path_with_a_newline_esc_and_a_bidi_override_escaped(env):
    """status' pool line printed the configured path raw (a pool that is gone names it)."""
    env.run("scan")  # a catalog to read (history, queue, explain and status make none)
    bad = str(env.tmp / "gone\x1b[2J\nline \u202e x")
    seeding = {"stash": str(env.stash / "data/media/torrents/seeding"), "pool": bad + "/s"}
    env.save(pools={**env.data["pools"], "pool": {"path": bad, "role": "cold"}}, seeding_roots=seeding)
    r = env.run("status", expect=None)
    assert [c for c in ACTIVE + ["\x1b"] if c in r.stdout + r.stderr] == [], r.stdout
    assert "gone\\x1b[2J\\x0aline \\u202e x: No such file or directory" in r.stdout, r.stdout
    assert not any(line.startswith("line") for line in r.stdout.splitlines()), r.stdout


def test_log_lines_name_things_by_the_same_rule(tmp_path):
    """A log line carrying a name (a job's rejected path, a torrent's name) reaches stderr or the
    journal as paths.shown makes it; a traceback keeps its line breaks. Its own interpreter:
    logging is configured once per process, as `qbhook` runs."""
    env = Env(tmp_path)
    code = (
        "import logging, sys\n"
        "from qbhook.cli import main\n"
        "try:\n    main(['--config', sys.argv[1], 'config', 'check'], standalone_mode=False)\n"
        "except SystemExit:\n    pass  # one filesystem for both pools: a PROBLEM line, exit 78\n"
        "log = logging.getLogger('qbhook.events.worker')\n"
        "log.warning('job 1: %s', 'esc\\x1b]0;t\\x07 new\\nline \\u202e \\udcff')\n"
        "try:\n    raise ValueError('bad \\x1b[2J name')\nexcept ValueError:\n    log.exception('failed')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(env.config)], capture_output=True, text=True, errors="replace", timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "job 1: esc\\x1b]0;t\\x07 new\\x0aline \\u202e \\xff" in r.stderr, r.stderr
    assert "ValueError: bad \\x1b[2J name" in r.stderr and "Traceback (most recent call last):\n" in r.stderr
    assert [c for c in ACTIVE + ["\x1b"] if c in r.stderr] == [], r.stderr
    assert not any(line.startswith("line") for line in r.stderr.splitlines()), r.stderr


def test_a_catalog_qbhook_may_not_write_is_the_io_exit_code_without_a_word_of_damage(env):
    """SQLite's "unable to open database file" (a read-only or immutable folder: the -wal and
    -shm files cannot be made) was a plain catalog error, exit 1; ExitCode names 74 for a file
    that cannot be read or written. Nothing is damaged, so the line says so in no word."""
    import sqlite3

    from qbhook.catalog.db import sqlite_failure

    for text in ("unable to open database file", "attempt to write a readonly database"):
        err = sqlite_failure(sqlite3.OperationalError(text), "/x/catalog.sqlite")
        assert err is not None and err.exit_code == ExitCode.IO_ERROR
        assert "damag" not in str(err).lower() and "restore" not in (err.hint or "").lower()
    folder = env.tmp / "ro"
    folder.mkdir()
    env.save(catalog=str(folder / "catalog.sqlite"))
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here: the real folder case needs it (root ignores modes)")
    try:
        r = env.run("scan", expect=ExitCode.IO_ERROR)  # a command that makes the catalog
        assert r.stderr.splitlines()[0].startswith(f"qbhook: catalog {folder / 'catalog.sqlite'}: "), r.stderr
        assert len(r.stderr.splitlines()) == 2
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
