"""The CLI as README documents it: `--json` after a command, read-only commands without the
service's secrets, the exit codes `plan --help` states.

Each case was a reviewer's reproduction (R37): the docs said it, the CLI did otherwise.
"""

from __future__ import annotations

import json

import click
import pytest

from qbhook.catalog.store import Catalog
from qbhook.cli import main
from qbhook.cli.app import COMMANDS, load_commands
from tests.unit.test_cli_catalog import Env

HASH = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A config whose qBittorrent password comes from a variable that is not set, as outside
    systemd (/etc/qbhook/env), and a catalog to read."""
    e = Env(tmp_path)
    e.data["qbittorrent"] = {"url": "http://127.0.0.1:1", "password_env": "QBHOOK_TEST_QBT_PW"}
    e.data["server"] = {"token_env": "QBHOOK_TEST_TOKEN", "port": 1}
    e.data["clients"] = [{"type": "rtorrent", "name": "rt", "scgi": "127.0.0.1:5000"}]
    e.save()
    monkeypatch.delenv("QBHOOK_TEST_QBT_PW", raising=False)
    monkeypatch.delenv("QBHOOK_TEST_TOKEN", raising=False)
    Catalog.open(e.catalog).close()
    return e


def _every_command():
    load_commands()
    ctx = click.Context(main)
    for name in sorted(COMMANDS):
        cmd = main.get_command(ctx, name)
        yield (name,), cmd
        for sub, c in getattr(cmd, "commands", {}).items():
            yield (name, sub), c


# ----------------------------------------------------------------------------- secrets


READ_ONLY = [
    (["status"], (0, 1)),  # 1: the server does not answer (a problem for a person), not 78
    (["history"], (0,)),
    (["queue"], (0,)),
    (["queue", "retry", "1"], (2,)),  # no such dead job: bad input, after the config loaded
    (["torrents", "--offline"], (0,)),
    (["dupes", "--no-scan"], (0,)),
    (["dupes", "--payloads", "--offline"], (0,)),
    (["holding"], (0,)),
    (["holding", "--purge-expired"], (0,)),  # a dry run lists, acts on nothing
    (["explain", HASH, "--index"], (2,)),  # not in the index: UnknownTorrent
    (["setup", "rtorrent"], (0,)),  # prints lines, asks no client
    (["scan"], (0,)),  # reads notify's secrets only (its mass-delete guard may notify)
    (["dupes"], (0,)),  # its scan: the same
]


@pytest.mark.parametrize("args, codes", READ_ONLY, ids=lambda a: " ".join(a) if isinstance(a, list) else None)
def test_a_command_that_contacts_no_client_runs_without_the_secrets(env, args, codes):
    """They stopped at "QBHOOK_QBT_PASSWORD is not set" (exit 78) outside systemd, though they
    never use a password: the config is loaded without its secrets for them, as for `hook`."""
    r = env.run(*args, expect=None)
    assert r.exit_code in codes, (r.exit_code, r.output)
    assert "is not set" not in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(
    "args", [["plan", "--no-scan"], ["torrents"], ["dupes", "--payloads"], ["holding", "--purge-expired", "--yes"]]
)
def test_a_command_that_may_contact_a_client_still_reads_the_secrets(env, args):
    r = env.run(*args, expect=78)
    assert "environment variable QBHOOK_TEST_QBT_PW is not set" in r.stderr


def test_find_runs_without_the_secrets(env):
    f = env.stash / "data/media/torrents/seeding/a.bin"
    f.write_bytes(b"x" * 10)
    env.run("scan")
    r = env.run("find", str(f), expect=0)
    assert "is not set" not in r.output


@pytest.fixture(params=["missing", "a folder"])
def password_file(request, tmp_path):
    """A client's password file the process cannot read: chmod 000 would not stop root, a
    missing file or a folder at its path does."""
    path = tmp_path / "qbt.password"
    if request.param == "a folder":
        path.mkdir()
    why = "No such file or directory" if request.param == "missing" else "Is a directory"
    return path, f"config: qbittorrent.password_file: cannot read {path}: {why}"


@pytest.mark.parametrize("args", [["scan"], ["--json", "scan"], ["dupes"], ["dupes", "--no-scan"]])
def test_scan_and_dupes_run_with_a_client_password_file_they_cannot_read(env, password_file, args):
    """They ask no client, but read every secret (a scan may notify): a password file missing
    or unreadable stopped them, exit 78. They read notify's URLs only now."""
    env.save(qbittorrent={"url": "http://127.0.0.1:1", "password_file": str(password_file[0])})
    r = env.run(*args, expect=0)
    assert r.stderr == "" and "password" not in r.output


@pytest.mark.parametrize("args", [["plan"], ["plan", "--no-scan"], ["torrents"], ["dupes", "--payloads"]])
def test_a_command_that_asks_a_client_still_stops_at_its_password_file(env, password_file, args):
    env.save(qbittorrent={"url": "http://127.0.0.1:1", "password_file": str(password_file[0])})
    r = env.run(*args, expect=78)
    assert r.stderr.splitlines() == [f"qbhook: {password_file[1]}"] and r.stdout == ""


def test_scan_still_reads_notifys_urls(env, monkeypatch):
    """Its mass-delete guard notifies: a notify URL variable not set stops it, as before."""
    monkeypatch.delenv("QBHOOK_TEST_NOTIFY", raising=False)
    env.save(notify={"urls_env": "QBHOOK_TEST_NOTIFY"})
    r = env.run("scan", expect=78)
    assert "notify.urls_env: environment variable QBHOOK_TEST_NOTIFY is not set" in r.stderr


def test_config_check_names_an_unreadable_password_file_as_a_problem_and_checks_the_rest(env, password_file):
    """It ended at the file, one error line and nothing of the rest; it is one of its problems now."""
    env.save(qbittorrent={"url": "http://127.0.0.1:1", "password_file": str(password_file[0])})
    r = env.run("config", "check", expect=78)
    assert f"PROBLEM: {password_file[1]}" in r.stderr.splitlines()
    assert "pools:" in r.stdout.splitlines()
    d = json.loads(env.run("--json", "config", "check", expect=78).stdout)
    assert password_file[1] in d["problems"] and d["qbittorrent"][0]["password_file"] == str(password_file[0])


def _secrets() -> dict:
    return {"QBHOOK_TEST_QBT_PW": "pw", "QBHOOK_TEST_TOKEN": "t"}


# ----------------------------------------------------------------------------- --json


def test_every_command_takes_json_after_its_name(env):
    """README: "Every command takes `--json`", and shows `plan --json`: it was an option of
    `qbhook` only, and `plan --json` was a usage error (exit 2)."""
    missing = [" ".join(name) for name, cmd in _every_command() if "--json" not in cmd.get_help(click.Context(cmd))]
    assert missing == []


@pytest.mark.parametrize("args", [["history"], ["queue"], ["holding"], ["dupes", "--no-scan"]])
def test_json_after_the_command_is_the_same_as_before_it(env, args):
    before = env.run("--json", *args).stdout
    after = env.run(*args, "--json").stdout
    assert after == before and json.loads(after) is not None


def test_plan_json_after_the_command_is_no_usage_error(env):
    r = env.run("plan", "--no-scan", "--json", expect=None, env=_secrets())
    assert r.exit_code != 2 and "No such option" not in r.output, r.output


# ----------------------------------------------------------------------------- plan's help


def test_plan_help_names_every_action_that_makes_it_exit_10():
    """It said "10: some groups would demote or promote"; converge and repair groups count too."""
    from qbhook.decide.plan import _ACTIONABLE

    load_commands("plan")
    help_text = " ".join(main.commands["plan"].help.split())
    said = help_text.split("10:", 1)[1].split(".")[0]
    assert all(a.value in said for a in _ACTIONABLE), said


# ----------------------------------------------------------------------------- install


def test_the_systemd_units_start_the_qbhook_readmes_install_puts_on_path():
    """README said `pip install .` (refused on Debian 12: externally-managed-environment); the
    units started /usr/local/bin/qbhook, which nothing in README put there."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    install = root.joinpath("README.md").read_text().split("## Install for real", 1)[1].split("\n\n", 2)[1]
    assert "python3 -m venv /opt/qbhook" in install and "\n    pip install ." not in install
    for unit in ("qbhook.service", "qbhook-sweep.service"):
        text = root.joinpath("contrib/systemd", unit).read_text()
        exe = next(line for line in text.splitlines() if line.startswith("ExecStart=")).split()[0].split("=", 1)[1]
        assert f"ln -s /opt/qbhook/bin/qbhook {exe}" in install or exe == "/opt/qbhook/bin/qbhook", (unit, exe)


def test_every_environment_file_of_the_systemd_units_is_optional():
    """R62: the README lets every secret come from a *_file setting and its install never makes
    /etc/qbhook/env, yet the units named it without systemd's '-' (a missing file fails the start)."""
    from pathlib import Path

    units = sorted((Path(__file__).resolve().parents[2] / "contrib/systemd").glob("*.service"))
    lines = [
        (u.name, line) for u in units for line in u.read_text().splitlines() if line.startswith("EnvironmentFile=")
    ]
    assert lines, "no EnvironmentFile= line left to check"
    assert [(name, line) for name, line in lines if not line.startswith("EnvironmentFile=-")] == []
