"""The direct hook (`qbhook hook`, run by qBittorrent as its own user) and the catalog's owner.

qBittorrent ignores a hook's exit status and output: a `qbhook hook` that cannot write root's
catalog lost every event without a word, and `setup qbittorrent --mode direct` wired it so for
any qBittorrent not running as root (Debian's qbittorrent-nox user). Now `setup` refuses unless
it can tell qBittorrent runs as root (or as the catalog's owner), and `hook` says in one line
why it cannot queue, making and changing nothing.
"""

from __future__ import annotations

import os
import re
import socket

import pytest
import yaml
from click.testing import CliRunner

from qbhook.catalog.store import Catalog
from qbhook.cli import main
from qbhook.clients import webui_owner as owner
from qbhook.clients.qbt.client import QbtClient
from qbhook.events.queue import JobQueue
from tests.helpers import config_data

QBT_USER = 64123  # an unprivileged uid no test machine names
HASH = "a" * 40
VALUES = [HASH, "-", HASH, "Movie.A", "", "", "/x/Movie.A", "/x/Movie.A", "/x", "1", "3040"]


@pytest.fixture
def bed(tmp_path):
    cat = tmp_path / "db" / "catalog.sqlite"
    cat.parent.mkdir()
    Catalog.open(cat).close()
    data = config_data(
        cat, tmp_path / "stash", tmp_path / "pool", qbt={"url": "http://127.0.0.1:8080", "password": "x"}
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    return cfg, cat


def as_user(monkeypatch, uid: int) -> None:
    """access(2) and geteuid as ``uid`` would see them (mode bits; not in the files' group)."""

    def access(path, mode, **kw):
        st = os.stat(path)
        bits = (st.st_mode >> 6 if st.st_uid == uid else st.st_mode) & 7  # rwx, as R_OK|W_OK|X_OK
        return uid == 0 or bits & mode == mode

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "geteuid", lambda: uid)


def tree(root) -> dict:
    return {p.relative_to(root).as_posix(): (p.stat().st_mode, p.stat().st_uid) for p in root.rglob("*")}


def test_hook_run_by_a_user_who_cannot_write_the_catalog_says_so_and_touches_nothing(bed, monkeypatch):
    cfg, cat = bed
    before = tree(cat.parent)
    as_user(monkeypatch, QBT_USER)
    r = CliRunner().invoke(main, ["--config", str(cfg), "hook", "added", *VALUES])
    monkeypatch.undo()
    assert r.exit_code == 74, r.output
    assert "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"qbhook: hook: uid {QBT_USER} may not write the catalog ({cat} is owned by ")
    assert "this 'added' event is lost" in lines[0] and "qbhook setup qbittorrent" in lines[0]
    assert tree(cat.parent) == before  # no -wal, -shm or mode change
    c = Catalog.open(cat, create=False)
    try:
        assert JobQueue(c.conn).counts()["pending"] == 0
    finally:
        c.close()
    # Its own user (or root) queues as before.
    r = CliRunner().invoke(main, ["--config", str(cfg), "--json", "hook", "added", *VALUES])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    ("where", "exit_code"),
    [("queueing", 75), ("opening", 75), ("damaged", 74)],
)
def test_hook_that_cannot_queue_says_the_event_is_lost_not_try_again(bed, monkeypatch, where, exit_code):
    # Review finding: a catalog held by another writer past the 60 s wait ended in "another
    # qbhook process is writing the catalog; try again later", but qBittorrent never runs a
    # hook again: the event was lost and nothing said so.
    import sqlite3

    from qbhook.catalog import db
    from qbhook.errors import LockBusy

    cfg, _cat = bed

    def enqueue(self, ev):
        if where == "damaged":
            raise sqlite3.DatabaseError("file is not a database")
        raise sqlite3.OperationalError("database is locked")

    def held(*a, **kw):
        raise LockBusy("catalog x: database is locked", hint="another qbhook process is writing the catalog")

    if where == "opening":
        monkeypatch.setattr(db, "connect", held)
    else:
        monkeypatch.setattr(JobQueue, "enqueue", enqueue)
    r = CliRunner().invoke(main, ["--config", str(cfg), "hook", "finished", *VALUES])
    assert r.exit_code == exit_code, r.output
    assert "Traceback" not in r.output and "try again" not in r.output
    assert r.stderr.startswith("qbhook: hook: ") and "this 'finished' event is lost" in r.stderr
    assert "qBittorrent does not retry a hook" in r.stderr


def test_hook_behind_a_held_catalog_gives_up_within_seconds(bed):
    """R51: the direct hook waited the catalog's 60 s (~27 MB each), one per added torrent, to lose
    the event anyway. It waits the intake's INTAKE_BUSY_S, then says so: one line, exit 75."""
    import sqlite3
    import time

    from qbhook.events.queue import INTAKE_BUSY_S

    cfg, cat = bed
    holder = sqlite3.connect(cat, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer (a scan) holding the catalog
    try:
        started = time.monotonic()
        r = CliRunner().invoke(main, ["--config", str(cfg), "hook", "added", *VALUES])
        took = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert r.exit_code == 75, r.output
    assert INTAKE_BUSY_S <= took < INTAKE_BUSY_S + 10, took
    line, hint = r.stderr.splitlines()
    assert line == "qbhook: hook: the catalog's write lock stayed taken for 5 s: this 'added' event is lost", line
    assert "qBittorrent does not retry a hook" in hint
    c = Catalog.open(cat, create=False)
    try:
        assert JobQueue(c.conn).counts()["pending"] == 0
    finally:
        c.close()


def fake_proc(root, *, uid: int, name: str = "qbittorrent-nox", port: int = 8080):
    """A /proc with one process listening on ``port`` (inode 5555)."""
    (root / "net").mkdir(parents=True)
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    line = f"   0: 0100007F:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000  {uid}  0 5555 1\n"
    (root / "net" / "tcp").write_text(head + line)
    (root / "net" / "tcp6").write_text(head)
    (root / "4242" / "fd").mkdir(parents=True)
    os.symlink("socket:[5555]", root / "4242" / "fd" / "7")
    (root / "4242" / "comm").write_text(name + "\n")
    (root / "4242" / "status").write_text(f"Name:\t{name}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    (root / "self").mkdir()


@pytest.fixture
def asked(monkeypatch):
    calls = []

    def preferences(self):
        calls.append(self.name)
        return {}

    monkeypatch.setattr(QbtClient, "preferences", preferences)
    monkeypatch.setattr(QbtClient, "set_preferences", lambda self, change: calls.append(change))
    monkeypatch.setattr(QbtClient, "version", lambda self: "v4.6.7")
    return calls


def fake_qbhook(folder) -> str:
    """An executable file standing for qbhook (`setup --mode direct` refuses a qbhook it cannot run)."""
    exe = folder / "bin" / "qbhook"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return str(exe)


def setup_direct(cfg, *extra):
    exe = fake_qbhook(cfg.parent)
    return CliRunner().invoke(
        main, ["--config", str(cfg), "setup", "qbittorrent", "--mode", "direct", "--qbhook-path", exe, *extra]
    )


def test_setup_direct_refuses_a_qbittorrent_running_as_another_user(bed, tmp_path, monkeypatch, asked):
    cfg, cat = bed
    fake_proc(tmp_path / "proc", uid=QBT_USER)
    monkeypatch.setattr(owner, "PROC", str(tmp_path / "proc"))
    r = setup_direct(cfg, "--yes")
    assert r.exit_code == 3, r.output
    assert "Traceback" not in r.output
    first, hint = r.stderr.splitlines()
    assert first == (
        "qbhook: qBittorrent default: --mode direct refused: qbittorrent-nox (pid 4242) runs as "
        f"uid {QBT_USER}, who may not write the catalog {cat}"
    )
    assert hint.startswith("  hint: use the HTTP hook, the default mode")
    assert asked == []  # nothing asked, nothing changed


def test_setup_direct_wires_a_qbittorrent_running_as_root(bed, tmp_path, monkeypatch, asked):
    cfg, _ = bed
    fake_proc(tmp_path / "proc", uid=0)
    monkeypatch.setattr(owner, "PROC", str(tmp_path / "proc"))
    r = setup_direct(cfg, "--yes")
    assert r.exit_code == 0, r.output
    assert asked[0] == "default" and "hook added" in asked[1]["autorun_on_torrent_added_program"]


@pytest.mark.parametrize(
    ("url", "proc", "why"),
    [
        ("http://10.9.8.7:8080", {"uid": 0}, "http://10.9.8.7:8080 is not this host"),
        ("http://127.0.0.1:8080", {"uid": 0, "port": 9090}, "nothing listens on port 8080 here"),
        ("http://127.0.0.1:8080", {"uid": 0, "name": "docker-proxy"}, "port 8080 is held by docker-proxy (pid 4242)"),
    ],
)
def test_setup_direct_refuses_when_the_user_cannot_be_told(tmp_path, monkeypatch, asked, url, proc, why):
    cat = tmp_path / "catalog.sqlite"
    data = config_data(cat, tmp_path / "stash", tmp_path / "pool", qbt={"url": url, "password": "x"})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    fake_proc(tmp_path / "proc", **proc)
    monkeypatch.setattr(owner, "PROC", str(tmp_path / "proc"))
    r = setup_direct(cfg)
    assert r.exit_code == 3, r.output
    assert r.stderr.splitlines()[0].startswith(f"qbhook: qBittorrent default: --mode direct refused: {why}")
    assert asked == []
    assert not cat.exists()


def _own_lan_address() -> str | None:
    """A non-loopback address of this host: the source the kernel picks toward a TEST-NET address
    (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("203.0.113.1", 9))
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "127.0.0.1", "localhost", pytest.param("lan", id="this host's LAN address")],
)
def test_a_web_ui_url_naming_this_host_by_any_of_its_addresses_is_this_host(tmp_path, host):
    """The host's own LAN address and 0.0.0.0 (a common Web UI setting) were refused as "not this
    host": only loopback and the host name counted."""
    if host == "lan":
        host = _own_lan_address()
        if host is None:
            pytest.skip("this host has no non-loopback IPv4 address")
    fake_proc(tmp_path / "proc", uid=0)
    got = owner.web_ui_process(f"http://{host}:8080", str(tmp_path / "proc"))
    assert (got.pid, got.name, got.uid) == (4242, "qbittorrent-nox", 0)


@pytest.mark.parametrize(
    "url", ["http://10.9.8.7:8080", "http://198.51.100.7:8080", "http://name.invalid:8080", "http://:8080"]
)
def test_a_web_ui_url_naming_another_host_is_not_this_host(tmp_path, url):
    fake_proc(tmp_path / "proc", uid=0)
    with pytest.raises(owner.CannotTell, match="is not this host"):
        owner.web_ui_process(url, str(tmp_path / "proc"))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://127.0.0.1:eighty", "Port could not be cast"),
        ("http://[::1:8080", "Invalid IPv6 URL"),
    ],
)
def test_a_web_ui_url_with_a_bad_port_cannot_tell_instead_of_a_traceback(tmp_path, url, why):
    fake_proc(tmp_path / "proc", uid=0)
    with pytest.raises(owner.CannotTell, match=f"^{re.escape(url)} cannot be read as a URL: {why}"):
        owner.web_ui_process(url, str(tmp_path / "proc"))


def test_a_proc_whose_processes_cannot_be_listed_cannot_tell_instead_of_a_traceback(tmp_path, monkeypatch):
    """Its net/ tables read, its process list refused (a hardened /proc, hidepid): CannotTell."""
    proc = tmp_path / "proc"
    fake_proc(proc, uid=0)
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(proc):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(owner.CannotTell, match=f"^the processes of {re.escape(str(proc))} cannot be listed: Perm"):
        owner.web_ui_process("http://127.0.0.1:8080", str(proc))


def denied_below(monkeypatch, folder) -> None:
    """os.stat as a user who may not enter ``folder`` (mode 0700, another owner) sees it: anything
    below it is EACCES. Python 3.11's Path.is_dir raised that, a traceback from `hook`."""
    real, top = os.stat, str(folder) + os.sep

    def stat(path, *a, **kw):
        if os.fsdecode(os.fspath(path)).startswith(top):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(os, "stat", stat)


@pytest.mark.parametrize("args", [["hook", "added", *VALUES], ["scan"], ["status"]])
def test_a_catalog_folder_the_user_may_not_enter_is_one_line_exit_74(bed, monkeypatch, args):
    cfg, cat = bed
    denied_below(monkeypatch, cat.parent.parent)
    r = CliRunner().invoke(main, ["--config", str(cfg), *args])
    monkeypatch.undo()
    assert r.exit_code == 74, (r.output, r.exception)
    assert "Traceback" not in r.output and "Permission denied" in r.stderr
    assert r.stderr.splitlines()[0].startswith("qbhook: ") and str(cat.parent) in r.stderr.splitlines()[0]


def test_hook_refuses_a_relative_content_path_as_bad_input(bed):
    cfg, cat = bed
    values = [*VALUES]
    values[6] = "relative/Movie.A"
    r = CliRunner().invoke(main, ["--config", str(cfg), "hook", "added", *values])
    assert r.exit_code == 2, r.output
    assert r.stderr.splitlines() == ["qbhook: F: must be an absolute path (qBittorrent's %F), got 'relative/Movie.A'"]
    c = Catalog.open(cat, create=False)
    try:
        assert JobQueue(c.conn).counts()["pending"] == 0
    finally:
        c.close()


@pytest.mark.parametrize(
    ("version", "warned"), [("v4.4.5", True), ("v4.5.0", False), ("v5.1.0beta1", False), ("unknown", False)]
)
def test_setup_warns_of_a_qbittorrent_that_substitutes_before_it_splits(bed, monkeypatch, asked, version, warned):
    """R51: before 4.5.0 qBittorrent put %N into the command line before splitting it, so a name
    with a quote or a space shifted the hook's arguments. `setup` says so in one line."""
    cfg, _ = bed
    monkeypatch.setattr(QbtClient, "version", lambda self: version)
    r = CliRunner().invoke(main, ["--config", str(cfg), "setup", "qbittorrent"])
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stderr.splitlines() if "warning" in line]
    if warned:
        assert lines == [
            f"qbhook: warning: qBittorrent default is {version}, older than 4.5.0: it puts a torrent's name into "
            "the command before splitting it, so a name with a quote or a space can shift the hook's arguments; "
            "upgrade qBittorrent"
        ]
    else:
        assert lines == []
    assert asked == ["default"]  # shown as before, warned or not
