"""CLI behaviour of the catalog commands on plain folders: config check, scan, dupes, find.

One filesystem (tmp_path) stands in for both pools; where `config check` insists on two
filesystems, the test says which st_dev the pool has instead.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import resource
import signal
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from qbhook.catalog import hashing
from qbhook.catalog.store import Catalog, Filesystem
from qbhook.cli import main
from qbhook.errors import ExitCode
from tests.helpers import b3, put

SEED = "data/media/torrents/seeding"


class Env:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.stash = tmp_path / "stash"
        self.pool = tmp_path / "pool"
        for root in (self.stash, self.pool):
            (root / SEED).mkdir(parents=True)
        self.catalog = tmp_path / "var/catalog.sqlite"
        self.catalog.parent.mkdir(mode=0o755)  # whatever the umask: a folder other users can write is refused
        self.config = tmp_path / "config.yaml"
        self.data = {
            "catalog": str(self.catalog),
            "pools": {
                "stash": {"path": str(self.stash), "role": "primary"},
                "pool": {"path": str(self.pool), "role": "cold"},
            },
            "seeding_roots": {"stash": str(self.stash / SEED), "pool": str(self.pool / SEED)},
            "scan": {"settle_seconds": 0, "mass_delete_min_paths": 3},
        }
        self.save()

    def save(self, **over) -> None:
        self.config.write_text(yaml.safe_dump({**self.data, **over}, sort_keys=False))

    def run(self, *args, expect: int | None = 0, env: dict | None = None):
        r = CliRunner().invoke(main, ["--config", str(self.config), *args], env=env)
        if expect is not None:
            assert r.exit_code == expect, (r.exit_code, r.output, r.exception)
        return r

    def json(self, *args, expect: int = 0) -> dict:
        return json.loads(self.run("--json", *args, expect=expect).stdout)


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


@pytest.fixture
def two_filesystems(env, monkeypatch):
    """Make `config check` see the pool on its own filesystem (tmp_path is one filesystem)."""
    real = os.stat

    def fake(path, *a, **kw):
        st = real(path, *a, **kw)
        if os.fspath(path) == str(env.pool):
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev + 1, *tuple(st)[3:]))
        return st

    monkeypatch.setattr("qbhook.config.os.stat", fake)
    return env


# --------------------------------------------------------------------------- config check


def test_config_check_ok(two_filesystems):
    env = two_filesystems
    r = env.run("config", "check")
    assert "config OK" in r.stderr and "PROBLEM" not in r.output
    shown = yaml.safe_load(r.stdout)
    assert shown["pools"]["stash"] == {
        "path": str(env.stash),
        "role": "primary",
        "seeding_root": str(env.stash / SEED),
        "seeding_roots": [str(env.stash / SEED)],
    }
    assert shown["scan"]["settle_seconds"] == 0 and shown["source"] == str(env.config)
    d = env.json("config", "check")
    assert d["problems"] == [] and d["catalog"] == str(env.catalog)


def test_config_check_warns_of_a_folder_above_a_pool_root_others_can_write_and_still_passes(two_filesystems):
    env = two_filesystems
    os.chmod(env.tmp, 0o777)  # anyone could rename stash away and put another folder at its name
    r = env.run("config", "check")
    assert "config OK" in r.stderr and "PROBLEM" not in r.output
    assert f"WARNING: pools.stash.path: {env.tmp} (writable by others) is above {env.stash}" in r.stderr
    d = env.json("config", "check")
    assert d["problems"] == [] and len(d["warnings"]) == 2  # both pools sit in it


QBT = {"url": "http://127.0.0.1:8080", "password": "p"}


@pytest.mark.parametrize(
    "over, key",
    [
        ({"qbittorrent": {**QBT, "timeout": "fast"}}, "qbittorrent.timeout"),
        ({"qbittorrent": {**QBT, "timeout": -5}}, "qbittorrent.timeout"),
        ({"policy": {"max_groups_per_run": float("nan")}}, "policy.max_groups_per_run"),
        ({"policy": {"max_groups_per_run": 2.5}}, "policy.max_groups_per_run"),
        ({"server": {"port": 99999}}, "server.port"),
        ({"server": {"max_body": 0}}, "server.max_body"),
        ({"server": {"sweep_interval": 0}}, "server.sweep_interval"),
        (
            {
                "qbittorrent": {
                    **QBT,
                    "path_map": [{"client": "/data", "host": "/stash/data"}, {"client": "/data", "host": "/pool/data"}],
                }
            },
            "qbittorrent.path_map",
        ),
        (
            {
                "qbittorrent": {
                    **QBT,
                    "path_map": [
                        {"client": "/data", "host": "/stash/data"},
                        {"client": "/data/media", "host": "/pool/media"},
                    ],
                }
            },
            "qbittorrent.path_map",
        ),
    ],
)
def test_config_check_defects_are_one_line_78(two_filesystems, over, key):
    """Issue 9 (8) and 14: tracebacks, silent acceptance and a late exit 1 before; now exit 78 at check."""
    env = two_filesystems
    env.run("config", "check")  # the base config is clean
    env.save(**over)
    r = env.run("config", "check", expect=78)
    assert "Traceback" not in r.output and not isinstance(r.exception, Exception), r.exception
    assert r.stderr.splitlines()[0].startswith(f"qbhook: config: {key}: "), r.stderr


def test_config_check_non_utf8_file_is_one_line_78(env):
    good = env.config.read_bytes()
    env.config.write_bytes(good + b"# caf\xe9\n")
    r = env.run("config", "check", expect=78)
    line = good.count(b"\n") + 1
    assert r.stderr.splitlines()[0] == f"qbhook: config: {env.config} is not UTF-8 text (byte 0xe9 on line {line})"


def test_config_check_reports_problems_with_78(env):
    r = env.run("config", "check", expect=78)
    assert "PROBLEM: pools stash, pool are on the same filesystem" in r.stderr
    d = env.json("config", "check", expect=78)
    assert any("same filesystem" in p for p in d["problems"])

    (env.pool / SEED).rmdir()
    r = env.run("config", "check", expect=78)
    assert f"PROBLEM: seeding_roots.pool: {env.pool / SEED} does not exist" in r.stderr

    env.save(
        catalog=str(env.tmp / "nowhere/catalog.sqlite"),
        pools={
            "stash": {"path": str(env.stash), "role": "primary"},
            "pool": {"path": str(env.tmp / "unmounted"), "role": "cold"},
        },
        seeding_roots={"stash": str(env.stash / SEED), "pool": str(env.tmp / "unmounted" / SEED)},
    )
    r = env.run("config", "check", expect=78)
    assert "pools.pool.path" in r.stderr and "is the pool mounted?" in r.stderr
    assert "catalog: folder" in r.stderr and "mkdir -p" in r.stderr
    assert "config OK" not in r.output


@pytest.mark.parametrize(
    "text, words",
    [
        ("catalog: [unclosed", "is not valid YAML"),
        ("- just\n- a list\n", "must contain a mapping"),
    ],
)
def test_unreadable_config_is_78_without_traceback(env, text, words):
    env.config.write_text(text)
    r = env.run("config", "check", expect=78)
    assert "qbhook: config:" in r.stderr and words in r.stderr and "Traceback" not in r.output


def test_config_errors_name_the_key_and_exit_78(env):
    env.save(scan={"settle_seconds": 0, "mass_delete_max_share": 3})
    r = env.run("scan", expect=78)
    assert "config: scan.mass_delete_max_share: must be a fraction" in r.stderr
    env.save(bogus=True)
    r = env.run("dupes", expect=78)
    assert "config: bogus: is not a known setting" in r.stderr and "hint: known here:" in r.stderr
    missing = env.tmp / "missing.yaml"
    r = CliRunner().invoke(main, ["--config", str(missing), "scan"])
    assert r.exit_code == 78 and f"file {missing} does not exist" in r.stderr


def test_no_config_anywhere_is_78(env, monkeypatch):
    monkeypatch.delenv("QBHOOK_CONFIG", raising=False)
    monkeypatch.setattr("qbhook.config.DEFAULT_CONFIG_PATHS", (str(env.tmp / "etc/config.yaml"),))
    r = CliRunner().invoke(main, ["config", "check"])
    assert r.exit_code == 78 and "no configuration file found" in r.stderr and "QBHOOK_CONFIG" in r.stderr
    # QBHOOK_CONFIG is honoured
    r = CliRunner().invoke(main, ["--json", "config", "check"], env={"QBHOOK_CONFIG": str(env.config)})
    assert r.exit_code == 78 and json.loads(r.stdout)["source"] == str(env.config)


def test_secrets_are_masked_in_config_check(two_filesystems, tmp_path):
    env = two_filesystems
    (tmp_path / "qbt2.secret").write_text("filepass-123\n")
    env.save(
        qbittorrent=[
            {"name": "main", "url": "http://127.0.0.1:8080", "username": "admin", "password": "inline-hunter2"},
            {"name": "env", "url": "http://127.0.0.1:8081", "password_env": "QBT_PW_TEST"},
            {"name": "file", "url": "http://127.0.0.1:8082", "password_file": "qbt2.secret"},
        ],
        server={"username": "srv", "password": "srv-pass-9", "token_env": "QBHOOK_TOKEN_TEST"},
    )
    for own in (tmp_path / "qbt2.secret", env.config):  # others may not read them: that is a problem too
        own.chmod(0o600)
    secrets = ("inline-hunter2", "env-pass-77", "filepass-123", "srv-pass-9", "tok-abc-555")
    environ = {"QBT_PW_TEST": "env-pass-77", "QBHOOK_TOKEN_TEST": "tok-abc-555"}
    human = env.run("config", "check", env=environ)
    as_json = env.run("--json", "config", "check", env=environ)
    for out in (human.output, as_json.output):
        for s in secrets:
            assert s not in out
    d = json.loads(as_json.stdout)
    assert [q["password"] for q in d["qbittorrent"]] == ["********"] * 3
    assert d["qbittorrent"][1]["password_env"] == "QBT_PW_TEST"  # where it comes from is shown
    assert d["qbittorrent"][2]["password_file"] == str(tmp_path / "qbt2.secret")
    assert d["server"]["password"] == "********" and d["server"]["token"] == "********"
    assert "********" in human.stdout


def test_missing_secret_env_is_a_config_error(env):
    env.save(qbittorrent={"url": "http://127.0.0.1:8080", "password_env": "QBHOOK_TEST_UNSET_VAR"})
    r = env.run("config", "check", expect=78, env={"QBHOOK_TEST_UNSET_VAR": None})
    assert "qbittorrent.password_env: environment variable QBHOOK_TEST_UNSET_VAR is not set" in r.stderr
    env.save(qbittorrent={"url": "http://127.0.0.1:8080"})
    r = env.run("config", "check", expect=78)
    assert "PROBLEM: qbittorrent default: no password" in r.stderr


# --------------------------------------------------------------------------- scan


def test_scan_json_and_human(env):
    for i in range(5):
        put(env.stash / SEED / f"T/{i}.bin", b"%d" % i)
    put(env.pool / SEED / "P/p.bin", b"p")
    d = env.json("scan")
    assert [(s["pool"], s["files_seen"], s["added"], s["status"]) for s in d["scans"]] == [
        ("stash", 5, 5, "ok"),
        ("pool", 1, 1, "ok"),
    ]
    assert d["catalog"]["paths"] == 6 and d["catalog"]["hashed"] == 0 and "hashing" not in d
    r = env.run("scan", "stash")
    assert r.stdout.startswith("stash: 5 files seen, 0 added, 0 changed, 0 removed (")
    assert "pool:" not in r.stdout
    d = env.json("scan", "--hash")
    assert d["hashing"] == {"hashed": 6, "cached": 0, "bytes_read": 6, "unsettled": 0, "missing": 0}
    assert env.json("scan", "--hash")["hashing"]["cached"] == 6


def test_scan_unknown_pool_is_bad_input(env):
    """The name comes from the command line, not the config file: a usage error (2), not 78."""
    r = env.run("scan", "stash", "tank", expect=2)
    assert "Error: Invalid value for POOLS: no pool named 'tank' (known pools: stash, pool)" in r.stderr
    assert not env.catalog.exists()


def test_scan_refuses_mass_delete_with_3(env):
    files = [put(env.stash / SEED / f"T/{i}.bin") for i in range(10)]
    env.run("scan")
    for f in files:
        os.unlink(f)
    r = env.run("scan", expect=3)
    assert "would drop 10 of 10 known paths" in r.stderr and "--allow-mass-delete" in r.stderr
    assert env.json("scan", "pool")["catalog"]["paths"] == 10  # nothing dropped
    d = env.json("scan", "--allow-mass-delete")
    assert d["scans"][0]["removed"] == 10 and d["catalog"]["paths"] == 0


def test_scan_forget_unmounted_reaches_the_scan(env, monkeypatch):
    from qbhook.catalog import scan as scanner

    real, seen = scanner.scan_pools, []

    def scan_pools(*a, **kw):
        seen.append(kw["forget_unmounted"])
        return real(*a, **kw)

    monkeypatch.setattr(scanner, "scan_pools", scan_pools)
    gone = [Filesystem(90 + i, f"zfs:tank/{m}", "zfs", f"/mnt/{m}", None) for i, m in enumerate("ab")]
    monkeypatch.setattr(scanner, "unmounted_filesystems", lambda catalog: gone)
    env.run("scan", "--forget-unmounted", "/mnt/a", "--forget-unmounted", "/mnt/b/")
    assert seen == [("/mnt/a", "/mnt/b/")]
    assert "Example:" in env.run("scan", "--help").output


def test_scan_forget_unmounted_that_matches_nothing_is_refused(env, monkeypatch):
    """A typo, or a filesystem that is mounted (a pool root), was a silent "0 removed"."""
    from qbhook.catalog import scan as scanner

    put(env.stash / SEED / "a.bin", b"a")
    env.run("scan")
    with closing(Catalog.open(env.catalog)) as cat:
        [pools_fs] = {f.mountpoint for f in cat.filesystems()}  # the pools' filesystem: mounted
    monkeypatch.setattr(scanner, "scan_pools", lambda *a, **kw: pytest.fail("scanned"))
    for m in ("/mnt/typo", pools_fs):
        r = env.run("scan", "--forget-unmounted", m, expect=ExitCode.BAD_INPUT)
        assert r.stdout == "" and f"Invalid value for '--forget-unmounted': matched nothing: '{m}'" in r.stderr


def test_scan_says_how_many_paths_it_forgot(env, monkeypatch):
    from qbhook.catalog import scan as scanner

    real = scanner.scan_pools

    def scan_pools(*a, **kw):
        return [dataclasses.replace(r, removed=r.removed + 7, forgotten=7) for r in real(*a, **kw)]

    monkeypatch.setattr(scanner, "scan_pools", scan_pools)
    assert env.json("scan", "stash")["scans"][0]["forgotten"] == 7
    assert "7 removed (7 of them forgotten, as asked)" in env.run("scan", "stash").output


def test_scan_missing_pool_folder_is_1_with_hint(env):
    os.rename(env.pool, env.tmp / "gone")
    r = env.run("scan", "pool", expect=1)
    assert "cannot scan pool pool" in r.stderr and "is the pool mounted?" in r.stderr


def _recorded_finds(monkeypatch, cmd=None) -> list:
    """Every find the scan starts, as started (``cmd``: run this instead of find)."""
    from qbhook.catalog import findwalk

    runs, real = [], findwalk.start_find
    if cmd is not None:
        monkeypatch.setattr(findwalk, "find_cmd", lambda root, ignore: cmd)

    def start(pool, root, ignore):
        runs.append(real(pool, root, ignore))
        return runs[-1]

    monkeypatch.setattr(findwalk, "start_find", start)
    return runs


def test_scan_starts_the_finds_before_opening_the_catalog_and_closes_them_all(env, monkeypatch):
    # The walks start as soon as the config names the roots; a first scan stops them unread,
    # a rescan uses them; either way each is reaped and the result is the scanner's own.
    from qbhook.catalog.store import Catalog

    put(env.stash / SEED / "T/a.bin", b"a")
    put(env.pool / SEED / "P/p.bin", b"p")
    runs = _recorded_finds(monkeypatch)
    order, real_open = [], Catalog.open.__func__
    monkeypatch.setattr(
        Catalog, "open", classmethod(lambda cls, *a, **k: order.append(len(runs)) or real_open(cls, *a, **k))
    )
    first = env.json("scan")
    assert order == [2] and [s["added"] for s in first["scans"]] == [1, 1]
    assert len(runs) == 2 and all(r.closed and r.proc.returncode is not None for r in runs)
    os.link(env.stash / SEED / "T/a.bin", env.tmp / "elsewhere.bin")  # a link count changes
    again = env.json("scan")
    assert [(s["files_seen"], s["added"], s["changed"], s["removed"]) for s in again["scans"]] == [
        (1, 0, 1, 0),
        (1, 0, 0, 0),
    ]
    assert len(runs) == 4 and all(r.closed and r.proc.returncode is not None for r in runs)


def test_scan_that_cannot_open_its_catalog_kills_and_reaps_the_finds_it_started(env, monkeypatch):
    # An unreachable catalog is still a one-line error that changes nothing, and a walk started
    # before the catalog was opened is killed, not left running (a find that would take 60 s).
    put(env.stash / SEED / "T/a.bin", b"a")
    env.run("scan")
    runs = _recorded_finds(monkeypatch, cmd=[b"/bin/sleep", b"60"])
    missing = env.tmp / "no/such/dir/catalog.sqlite"
    env.save(catalog=str(missing))
    r = env.run("scan", expect=ExitCode.CONFIG)
    assert "catalog: folder" in r.stderr and r.stdout == ""
    assert len(runs) == 2 and all(run.closed and run.proc.returncode == -9 for run in runs)
    assert not missing.parent.exists()


def test_scan_of_a_pool_named_twice_scans_it_twice(env, monkeypatch):
    # One find per pool is started early; the second scan of the pool must not reuse the first
    # one's closed memory files (a traceback, or another file's bytes under a reused fd number).
    put(env.stash / SEED / "T/a.bin", b"a")
    env.run("scan")
    runs = _recorded_finds(monkeypatch)
    d = env.json("scan", "stash", "stash")
    assert [(s["pool"], s["files_seen"], s["changed"]) for s in d["scans"]] == [("stash", 1, 0), ("stash", 1, 0)]
    assert len(runs) == 2 and all(r.closed and r.proc.returncode is not None for r in runs)


def test_scan_of_an_unknown_pool_starts_no_find(env, monkeypatch):
    runs = _recorded_finds(monkeypatch)
    env.run("scan", "stash", "tank", expect=2)
    assert runs == []


@pytest.mark.parametrize("args", [["scan"], ["hook", "added", "0" * 40], ["plan"], ["config", "check"]])
def test_catalog_folder_missing(env, args):
    """R30: a catalog folder that does not exist was a plain CatalogError, exit 1, from scan and
    hook, while `config check` called it a config problem (78): 78 everywhere, in one line, the
    same line."""
    folder = env.tmp / "no/such/dir"
    env.save(catalog=str(folder / "catalog.sqlite"))
    r = env.run(*args, expect=ExitCode.CONFIG)
    line = f"catalog: folder {folder} does not exist (create it: mkdir -p {folder})"
    if args[0] == "config":
        assert f"PROBLEM: {line}" in r.stderr.splitlines(), r.stderr
    elif args[0] == "hook":  # the hook's line says the event is lost, and what comes of it
        assert r.stderr.startswith(f"qbhook: hook: {line}: this 'added' event is lost\n"), r.stderr
    else:
        assert r.stderr.splitlines() == [f"qbhook: {line}"], r.stderr
    assert not (env.tmp / "no").exists()


# --------------------------------------------------------------------------- dupes


def test_dupes(env):
    big = os.urandom(100_000)
    a = put(env.stash / SEED / "A/a.mkv", big)
    put(env.pool / SEED / "A/a.mkv", big)
    put(env.stash / "data/media/movies/a.mkv", big)
    os.link(a, env.stash / SEED / "A.xseed.mkv")  # a link: same copy
    put(env.stash / SEED / "B/small.nfo", b"tiny")
    put(env.pool / SEED / "B/small.nfo", b"tiny")
    put(env.stash / SEED / "C/other.mkv", os.urandom(100_000))  # same size, other content

    d = env.json("dupes")
    assert [(s["size"], len(s["copies"]), s["scope"], s["reclaimable_bytes"]) for s in d["sets"]] == [
        (100_000, 3, "across-pools", 200_000),
        (4, 2, "across-pools", 4),
    ]
    assert d["reclaimable_bytes"] == 200_004 and d["across_pools"] == 2
    linked = next(c for c in d["sets"][0]["copies"] if c["nlink"] == 2)
    assert len(linked["paths"]) == 2 and linked["pools"] == ["stash"]
    assert d["sets"][0]["blake3"] == b3(big)

    small_skipped = env.json("dupes", "--no-scan", "--min-size", "1K")
    assert [s["size"] for s in small_skipped["sets"]] == [100_000]
    human = env.run("dupes", "--no-scan").stdout
    assert "97.7 KiB x3 across-pools (frees 195.3 KiB)" in human
    assert "2 duplicated contents, 195.3 KiB reclaimable (2 across pools)" in human


def test_dupes_scans_and_reports_with_the_collector_paused(env, monkeypatch):
    """The dupes command keeps the cyclic collector off its scan and report (decide.heap: they hold
    a few cycle-free objects per file that every full pass walked again) and turns it back on."""
    import gc

    from qbhook.catalog import dupes, scan

    seen = []
    for mod, name in ((scan, "scan_pools"), (dupes, "duplicates_report")):
        real = getattr(mod, name)

        def spy(*a, _real=real, _name=name, **k):
            seen.append((_name, gc.isenabled()))
            return _real(*a, **k)

        monkeypatch.setattr(mod, name, spy)
    put(env.stash / SEED / "A/a", b"same")
    put(env.pool / SEED / "A/a", b"same")
    assert gc.isenabled()
    assert len(env.json("dupes")["sets"]) == 1
    assert seen == [("scan_pools", False), ("duplicates_report", False)]
    assert gc.isenabled()


def test_dupes_no_scan_on_empty_catalog(env):
    env.run("scan")  # the empty catalog (dupes --no-scan makes none)
    put(env.stash / SEED / "A/a", b"same")
    put(env.pool / SEED / "A/a", b"same")
    assert env.run("dupes", "--no-scan").stdout == "no duplicate content found\n"
    assert env.json("dupes", "--no-scan") == {"sets": [], "reclaimable_bytes": 0, "across_pools": 0}
    assert len(env.json("dupes")["sets"]) == 1


def test_dupes_bad_min_size_is_a_usage_error(env):
    r = env.run("dupes", "--min-size", "lots", expect=None)
    assert r.exit_code == 2 and "min-size" in r.stderr


# --------------------------------------------------------------------------- find


def test_find(env):
    data = b"payload" * 1000
    src = put(env.stash / SEED / "S/e01.mkv", data)
    os.makedirs(env.stash / "data/media/tv")
    os.link(src, env.stash / "data/media/tv/e01.mkv")
    other = put(env.pool / SEED / "S/e01.mkv", data)
    env.run("dupes")
    f = env.json("find", os.fsdecode(src))
    assert (f["pool"], f["size"], f["nlink"], f["blake3"], f["unknown_links"]) == ("stash", len(data), 2, b3(data), 0)
    assert sorted(f["links"]) == sorted([os.fsdecode(src), str(env.stash / "data/media/tv/e01.mkv")])
    assert [c["paths"] for c in f["copies"]] == [[os.fsdecode(other)]]
    human = env.run("find", os.fsdecode(src)).stdout
    assert f"blake3: {b3(data)}" in human and "same content elsewhere:" in human


def test_find_large_file_hash_matches_reference(env, monkeypatch):
    """Files of PIPELINE_MIN and more are read on a helper thread (when not mapped by a worker):
    the digest must not change."""
    env.run("scan")  # a catalog to read: find makes none
    monkeypatch.setattr(hashing, "MMAP_WORKERS", False)
    data = os.urandom(hashing.PIPELINE_MIN + 3 * hashing.BUF_SIZE + 12345)
    p = put(env.pool / SEED / "big.bin", data)
    f = env.json("find", os.fsdecode(p))
    assert f["blake3"] == b3(data) and f["copies"] == []


def test_find_read_error_is_reported_not_crashed(env, monkeypatch):
    env.run("scan")  # a catalog to read: find makes none
    monkeypatch.setattr(hashing, "MMAP_WORKERS", False)  # a read() error, not a worker's
    p = put(env.pool / SEED / "bad.bin", os.urandom(hashing.PIPELINE_MIN + 1))
    calls = {"n": 0}
    real = os.readv

    def failing(fd, bufs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, bufs)

    monkeypatch.setattr(hashing.os, "readv", failing)
    f = env.json("find", os.fsdecode(p))
    assert f["blake3"] is None and calls["n"] == 2
    monkeypatch.undo()
    assert env.json("find", os.fsdecode(p))["blake3"] is not None


def test_find_outside_pools_and_missing_file(env):
    env.run("scan")  # a catalog to read: find makes none
    outside = put(env.tmp / "elsewhere/x.bin")
    r = env.run("find", os.fsdecode(outside), expect=2)
    assert "is not inside any configured pool" in r.stderr and "pools: stash=" in r.stderr
    r = env.run("find", str(env.stash / "nope.bin"), expect=2)
    assert "does not exist" in r.stderr


def test_version():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and "version" in r.stdout


@pytest.mark.parametrize("args", [["--json", "--version"], ["--version", "--json"], ["--json", "--version", "status"]])
def test_version_under_json_is_json(args):
    """R53: `qbhook --json --version` printed plain text (an eager --version ran before --json was read)."""
    from qbhook import __version__

    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and json.loads(r.stdout) == {"version": __version__}


# --------------------------------------------------------------------------- names that are not UTF-8


def _subprocess(env, *args, **extra_env):
    return subprocess.run(
        [sys.executable, "-m", "qbhook", "--config", str(env.config), *args],
        capture_output=True,
        env={**os.environ, **extra_env},
        timeout=120,
        check=False,
    )


def test_invalid_utf8_names_in_json(env):
    name = os.fsencode(env.stash / SEED) + b"/bad\xff\xfe.bin"
    put(name, b"same content")
    put(env.pool / SEED / "ok.bin", b"same content")
    r = _subprocess(env, "--json", "dupes")
    assert r.returncode == 0, r.stderr
    (s,) = json.loads(r.stdout)["sets"]
    assert sorted(os.fsencode(p) for c in s["copies"] for p in c["paths"]) == sorted(
        [name, os.fsencode(env.pool / SEED / "ok.bin")]
    )


def test_invalid_utf8_names_in_human_output_on_strict_utf8_terminal(env):
    put(os.fsencode(env.stash / SEED) + b"/bad\xff.bin", b"same content")
    put(env.pool / SEED / "ok.bin", b"same content")
    r = _subprocess(env, "dupes", PYTHONIOENCODING="utf-8:strict")
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr


# --------------------------------------------------------------------------- non-regular files (issue 9, 7b)
# Each runs `qbhook` in a child process with a timeout: on main these hung forever.


def _bounded(env, *args, timeout=30):
    try:
        return subprocess.run(
            [sys.executable, "-m", "qbhook", "--config", str(env.config), *args],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"qbhook {' '.join(args)} still running after {timeout}s (opened a FIFO or device?)")


def _special_files(where: Path) -> list[Path]:
    where.mkdir(parents=True, exist_ok=True)
    os.mkfifo(where / "pipe")
    out = [where / "pipe"]
    if os.geteuid() == 0:  # a character device with /dev/zero's numbers: reading it never ends
        os.mknod(where / "zero", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        out.append(where / "zero")
    return out


def test_find_refuses_fifo_and_device_instead_of_hanging(env):
    env.run("scan")  # a catalog to read: find makes none
    for p in _special_files(env.stash / SEED / "odd"):
        r = _bounded(env, "find", str(p))
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert (
            r.stderr.decode().splitlines()[0] == f"qbhook: {p} is not a regular file; "
            "the catalog records only regular files"
        )
    assert env.json("dupes", "--no-scan")["sets"] == []


def test_find_empty_file_after_a_fifo_was_catalogued(env):
    """A FIFO row left by an older qbhook is a same-size (0) candidate of every empty file."""
    from qbhook.catalog.db import Tx
    from qbhook.catalog.store import Catalog

    empty = put(env.stash / SEED / "S/empty.nfo", b"")
    cat = Catalog.open(env.catalog)
    for p in _special_files(env.stash / SEED / "odd"):
        st = os.lstat(p)
        fs = cat.fs_for_path(os.fsencode(p), st.st_dev)
        with Tx(cat.conn) as c:  # what record_path did before it refused them
            cat.upsert(c, "stash", os.fsencode(p), fs, st, None)
    cat.close()
    r = _bounded(env, "--json", "find", os.fsdecode(empty))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["blake3"] == b3(b"")


def test_scan_with_hash_skips_fifo_and_device(env):
    put(env.stash / SEED / "S/a.bin", b"a")
    _special_files(env.stash / SEED / "odd")
    r = _bounded(env, "--json", "scan", "--hash")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["catalog"]["paths"] == 1 and out["hashing"]["hashed"] == 1


# --------------------------------------------------------------------------- damaged catalog (issue 9, 8)


def _damage(catalog: Path, table: str | None) -> None:
    """Garbage over one table's root page, or ("*") over every table's and index's root page
    (the schema on page 1 survives: the catalog opens, reading fails), or (None) over every
    page but the first (opening fails). SQLite: 'database disk image is malformed'."""
    import sqlite3

    with sqlite3.connect(catalog) as c:
        page = c.execute("PRAGMA page_size").fetchone()[0]
        roots = [
            r[0]
            for r in c.execute(
                "SELECT rootpage FROM sqlite_master WHERE rootpage > 1 AND (name=? OR ?)", (table, table == "*")
            )
        ]
    c.close()
    size = catalog.stat().st_size
    with open(catalog, "r+b") as f:
        if table:
            assert roots, table
            for root in roots:
                f.seek((root - 1) * page)
                f.write(b"\xff" * page)
        else:
            f.seek(page)
            f.write(os.urandom(max(size - page, page)))


COMMAND_READS = [
    (("find", "FILE"), "paths"),
    (("dupes", "--no-scan"), "inodes"),
    (("dupes",), "paths"),
    (("scan",), "paths"),
    (("scan", "--hash"), "inodes"),
    (("queue",), "event_jobs"),
    (("status",), "*"),
]  # issue 9: queue tracebacked, status exit 0


@pytest.mark.parametrize(
    "args, table",
    COMMAND_READS + [(args, None) for args, _ in COMMAND_READS],
    ids=lambda v: "-".join(v) if isinstance(v, tuple) else {None: "all-pages", "*": "all-roots"}.get(v, str(v)),
)
def test_damaged_catalog_is_one_line_error_with_exit_74(env, args, table):
    f = put(env.stash / SEED / "S/a.bin", b"a" * 5000)
    assert _bounded(env, "scan").returncode == 0  # a child: its exit checkpoints the WAL
    assert not os.path.exists(f"{env.catalog}-wal")
    _damage(env.catalog, table)
    args = tuple(os.fsdecode(f) if a == "FILE" else a for a in args)
    r = _bounded(env, *args)
    err = r.stderr.decode()
    assert r.returncode == 74, (r.returncode, err)
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith(f"qbhook: catalog {env.catalog}: ") and (
        "malformed" in first or "not a database" in first
    ), first


def test_status_help_says_the_exit_code_and_the_wait_it_means(env):
    """It said a damaged catalog was exit 1 (it is 74, above) and named STUCK_AFTER_S, a
    constant of the code, where a user needs its value."""
    from qbhook.events.status import STUCK_AFTER_S

    text = " ".join(env.run("status", "--help").output.split())
    assert "one-line error (exit 74)" in text and f"longer than {STUCK_AFTER_S // 60} minutes" in text, text
    assert "STUCK_AFTER_S" not in text


README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_says_the_exit_codes_the_code_has():
    """R30: the README said `status` (and `queue`) exit 1 on a damaged catalog; they exit 74
    (test above). Its `qbhook status` entry says 74 for that, and its list of exit codes is
    ExitCode's, every one, none other."""
    import re

    text = " ".join(README.read_text().split())
    entry = text[text.index("- `qbhook status` —") :]
    entry = entry[: entry.index(" - `", 1)]
    assert "damaged catalog is one line and exit 74" in entry and "also `qbhook queue`" in entry, entry
    assert not re.search(r"Exits 1 [^.]*damaged", entry), entry
    listing = text[text.index("Exit codes (named once") :]
    listing = listing[: listing.index("(Ctrl-C)")]
    # each code is a number after ": " or ", " at the start of its clause, then its meaning
    listed = {int(n) for n in re.findall(r"(?:\): |, |^)(\d+) [a-z`]", listing)}
    assert listed == {int(c) for c in ExitCode}, sorted(listed)


# --------------------------------------------------------------------------- start-up cost

_HEAVY = ("flask", "waitress", "qbittorrentapi", "qbhook.move.executor", "qbhook.decide.plan", "qbhook.events.server")


def test_dupes_and_scan_import_only_their_own_command_module(env):
    """`qbhook dupes` / `scan` load only qbhook.cli.catalog: no planner, executor, web server or
    client library (0.2 s of a 0.7 s warm dupes run before this was lazy). The commands of the
    other modules still run, and --help still lists every command."""
    put(env.stash / SEED / "A/a.bin", b"same")
    put(env.pool / SEED / "A/a.bin", b"same")
    probe = (
        "import sys\nfrom qbhook.cli import main\n"
        "try:\n    main(sys.argv[1:], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {_HEAVY!r} if m in sys.modules), 'qbhook.cli.catalog' in sys.modules)\n"
    )
    for args in (["--json", "dupes"], ["--json", "scan"]):
        r = subprocess.run(
            [sys.executable, "-c", probe, "--config", str(env.config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert r.stdout.strip().splitlines()[-1] == "[] True", (args, r.stdout, r.stderr)
    assert env.json("dupes")["reclaimable_bytes"] == 4
    listed = CliRunner().invoke(main, ["--help"]).stdout
    for name in ("apply", "dupes", "explain", "holding", "plan", "serve", "setup", "sweep", "torrents"):
        assert f"  {name} " in listed
    assert env.run("history", "--help").exit_code == 0


def test_every_command_is_in_the_lazy_map_under_the_module_that_defines_it():
    """app.COMMAND_MODULES is the lazy loader's one table: a command missing from it still runs
    but imports every module, and a wrong entry would load a module that does not register it.
    Every module of qbhook/cli that defines commands is in CLI_MODULES, and every command maps to
    the module that defines it."""
    import pkgutil

    import qbhook.cli as cli_pkg
    from qbhook.cli import app

    app.load_commands()
    defined = {name: cmd.callback.__module__.rsplit(".", 1)[-1] for name, cmd in main.commands.items()}
    assert defined == app.COMMAND_MODULES
    modules = {m.name for m in pkgutil.iter_modules(cli_pkg.__path__)} - {"app", "__main__"}
    assert set(app.CLI_MODULES) == modules


def test_disk_failing_mid_scan_is_one_line_error_with_exit_74(env, monkeypatch):
    """A write the disk refuses in the middle of a transaction: SQLite rolls the transaction back
    itself, and the ROLLBACK that followed raised "cannot rollback - no transaction is active",
    which replaced the cause (exit 1, "the catalog is damaged" never said)."""
    put(env.stash / SEED / "S/a.bin", b"a")
    env.run("scan")
    with closing(sqlite3.connect(env.catalog)) as conn:  # everything into the file, the WAL emptied
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    for i in range(1500):
        put(env.stash / SEED / f"S/{i:04d}-{'n' * 150}.bin", b"b")
    real = sqlite3.connect

    def small_cache(*args, **kwargs):
        conn = real(*args, **kwargs)
        conn.execute("PRAGMA cache_size = 8")  # pages: the scan's changes spill to the WAL mid-transaction
        return conn

    monkeypatch.setattr(sqlite3, "connect", small_cache)
    # The disk refuses writes past the catalog's size (EFBIG: SQLite's "disk I/O error"); only
    # the catalog's files are written while the limit holds (CliRunner keeps the output).
    limit = os.path.getsize(env.catalog)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        r = env.run("scan", expect=None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert r.exit_code == 74, (r.exit_code, r.output, r.exception)
    assert r.output.splitlines()[0] == f"qbhook: catalog {env.catalog}: disk I/O error", r.output


def test_scan_of_a_pool_folder_it_may_not_open_names_the_cause_not_mounting(env, monkeypatch):
    """A pool root there but not to be opened (EACCES as a non-root user) was reported as "is not a
    folder ... is the pool mounted?"."""
    from qbhook.catalog import scan

    def refused(pool_cfg, root):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(scan, "_open_walk_root", refused)
    r = env.run("scan", "pool", expect=1)
    assert r.stderr.splitlines() == [f"qbhook: cannot scan pool pool: cannot open {env.pool}: Permission denied"]


def test_a_catalog_of_a_newer_schema_is_a_config_error(env):
    """Exit 1 before: the installed qbhook or `catalog:` must change (78); not 75, which tells a
    running serve to restart for code that is already new."""
    import sqlite3

    from qbhook.catalog.db import migrations

    env.run("scan")
    with sqlite3.connect(env.catalog) as c:
        c.execute(f"PRAGMA user_version = {len(migrations()) + 1}")
    r = env.run("scan", expect=78)
    assert r.stderr.splitlines()[0] == (
        f"qbhook: catalog schema version {len(migrations()) + 1} is newer than this qbhook understands "
        f"({len(migrations())})"
    )
