"""The direct hook as qBittorrent runs it, and the command `setup qbittorrent --mode direct` proposes.

qBittorrent runs `qbhook hook` with its own environment and working folder, splitting the
command line itself (no shell): the hook must run without the secrets only the systemd unit
loads (/etc/qbhook/env), and the proposed command must not lean on the folder or the quoting
of the shell `setup` was run from.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from qbhook.catalog.store import Catalog
from qbhook.cli import main
from qbhook.clients import webui_owner as owner
from qbhook.events.queue import JobQueue
from tests.unit.test_hook_user import asked, fake_proc, fake_qbhook  # noqa: F401  (asked: a fixture)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
HASH = "b" * 40
VALUES = [HASH, "-", HASH, "Movie.B", "", "", "/x/Movie.B", "/x/Movie.B", "/x", "1", "3040"]


def example_config(tmp_path: Path) -> Path:
    """config.example.yaml as shipped (its qbittorrent and server secrets named by *_env), its
    catalog and pools moved under ``tmp_path``."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["catalog"] = str(tmp_path / "db" / "catalog.sqlite")
    for name, pool in data["pools"].items():
        pool["path"] = str(tmp_path / name)
        data["seeding_roots"][name] = str(tmp_path / name / "seeding")
    (tmp_path / "db").mkdir()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def test_hook_with_the_example_config_queues_without_the_secrets_only_the_service_has(tmp_path, monkeypatch):
    """qBittorrent does not have /etc/qbhook/env's variables: the hook exited 78 ("environment
    variable QBHOOK_QBT_PASSWORD is not set") on every torrent, and the event was lost."""
    cfg = example_config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    assert data["qbittorrent"]["password_env"] and data["server"]["token_env"]  # the example names them
    for var in ("QBHOOK_QBT_PASSWORD", "QBHOOK_SERVER_PASSWORD", "QBHOOK_SERVER_TOKEN", "QBHOOK_NOTIFY_URLS"):
        monkeypatch.delenv(var, raising=False)
    r = CliRunner().invoke(main, ["--config", str(cfg), "--json", "hook", "added", *VALUES])
    assert r.exit_code == 0, r.output
    c = Catalog.open(Path(data["catalog"]), create=False)
    try:
        assert JobQueue(c.conn).counts()["pending"] == 1
    finally:
        c.close()
    # Every other command still needs them, and says so.
    r = CliRunner().invoke(main, ["--config", str(cfg), "config", "check"])
    assert r.exit_code == 78
    assert "QBHOOK_QBT_PASSWORD is not set" in r.stderr


@pytest.fixture
def root_qbt(tmp_path, monkeypatch, asked):  # noqa: F811  (the fixture imported above)
    """A qBittorrent Web UI on this host running as root (a fake /proc): --mode direct is allowed."""
    fake_proc(tmp_path / "proc", uid=0)
    monkeypatch.setattr(owner, "PROC", str(tmp_path / "proc"))
    monkeypatch.setenv("QBHOOK_QBT_PASSWORD", "x")
    monkeypatch.setenv("QBHOOK_SERVER_PASSWORD", "x")
    monkeypatch.setenv("QBHOOK_SERVER_TOKEN", "x")
    return asked


def proposed(*argv) -> tuple:
    r = CliRunner().invoke(main, [*argv[:2], "--json", "setup", "qbittorrent", "--mode", "direct", *argv[2:]])
    return r, (yaml.safe_load(r.stdout)[0]["change"] if r.exit_code == 0 else None)


def test_a_relative_config_path_is_proposed_absolute(tmp_path, monkeypatch, root_qbt):
    """qBittorrent runs the hook in a working folder of its own: `--config config.yaml` there names
    no file (or another one), and every event would be lost."""
    cfg = example_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    exe = fake_qbhook(tmp_path)
    r, change = proposed("--config", "config.yaml", "--qbhook-path", exe)
    assert r.exit_code == 0, r.output
    assert change["autorun_on_torrent_added_program"].startswith(f"{exe} --config {cfg} hook added ")
    assert change["autorun_program"].startswith(f"{exe} --config {cfg} hook finished ")


def test_a_qbhook_found_by_a_relative_name_is_proposed_absolute(tmp_path, monkeypatch, root_qbt):
    """Not on PATH, qbhook is named as it was started (sys.argv[0], here bin/qbhook)."""
    cfg = example_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("qbhook.cli.events._which", lambda name: None)
    monkeypatch.setattr("sys.argv", ["bin/qbhook"])
    exe = fake_qbhook(tmp_path)
    r, change = proposed("--config", str(cfg))
    assert r.exit_code == 0, r.output
    assert change["autorun_program"].startswith(f"{exe} --config {cfg} hook finished ")


def qbt_split(command: str) -> list[str]:
    """The command line as qBittorrent on Linux splits it (QProcess::splitCommand: no shell; spaces
    outside double quotes separate, the quotes go, three in a row stand for one)."""
    args, arg, quotes, inside = [], "", 0, False
    for c in command.strip():
        if c == '"':
            quotes += 1
            if quotes == 3:
                quotes, arg = 0, arg + c
            continue
        if quotes:
            inside, quotes = (not inside) if quotes == 1 else inside, 0
        if not inside and c.isspace():
            if arg:
                args, arg = [*args, arg], ""
        else:
            arg += c
    return [*args, arg] if arg else args


def test_a_hook_path_with_a_space_is_quoted_the_way_qbittorrent_splits_it(tmp_path, root_qbt):
    """shlex.quote made '/hooks dir/qbt-hook.sh' (single quotes), which qBittorrent splits into
    "'/hooks" and "dir/qbt-hook.sh'": a program that does not exist."""
    cfg = example_config(tmp_path)
    r = CliRunner().invoke(
        main, ["--config", str(cfg), "--json", "setup", "qbittorrent", "--hook-path", "/hooks dir/qbt-hook.sh"]
    )
    assert r.exit_code == 0, r.output
    command = yaml.safe_load(r.stdout)[0]["change"]["autorun_program"]
    assert qbt_split(command) == ["/hooks dir/qbt-hook.sh", "finished", *(f"%{f}" for f in "IJKNLGFRDCZ")]
    # direct: qbhook and its config too
    exe = fake_qbhook(tmp_path / "my bin")
    (tmp_path / "my etc").mkdir()
    cfg = cfg.rename(tmp_path / "my etc" / "config.yaml")
    r, change = proposed("--config", str(cfg), "--qbhook-path", exe)
    assert r.exit_code == 0, r.output
    split = qbt_split(change["autorun_on_torrent_added_program"])
    assert split[:5] == [exe, "--config", str(cfg), "hook", "added"] and len(split) == 5 + 11


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "is not an absolute path"),
        ("hooks/qbt-hook.sh", "is not an absolute path"),
        ("/hooks/qbt\nhook.sh", "contains a control character"),
        ('/hooks/"x".sh', "contains a double quote"),
        ("/hooks/100%N.sh", "contains a % (qBittorrent replaces %X in its command)"),
    ],
)
@pytest.mark.parametrize("option", ["--hook-path", "--qbhook-path"])
def test_a_program_path_qbittorrent_cannot_run_is_a_usage_error(tmp_path, root_qbt, option, path, why):
    """Empty, relative or holding a line break, it was proposed, and applied with --yes."""
    cfg = example_config(tmp_path)
    mode = ["--mode", "direct"] if option == "--qbhook-path" else []
    r = CliRunner().invoke(main, ["--config", str(cfg), "setup", "qbittorrent", *mode, option, path, "--yes"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    (error,) = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith(f"Error: Invalid value for '{option}': '") and f"' {why}" in error
    assert root_qbt == []  # nothing asked, nothing changed


def test_direct_mode_refuses_a_qbhook_or_config_qbittorrent_could_not_run(tmp_path, monkeypatch, root_qbt):
    cfg = example_config(tmp_path)
    r, _ = proposed("--config", str(cfg), "--qbhook-path", str(tmp_path / "no-such-qbhook"))
    assert r.exit_code == 2 and "no-such-qbhook is not an executable file here" in r.stderr
    exe = fake_qbhook(tmp_path)
    (tmp_path / 'a"b').mkdir()
    odd = cfg.rename(tmp_path / 'a"b' / "config.yaml")
    r, _ = proposed("--config", str(odd), "--qbhook-path", exe)
    assert r.exit_code == 2 and f"the config path {odd} contains a double quote" in r.stderr
    # a qbhook found on PATH is held to the same rule as --qbhook-path
    odd_exe = fake_qbhook(tmp_path / "100%N")
    monkeypatch.setattr("qbhook.cli.events._which", lambda name: odd_exe)
    r, _ = proposed("--config", str(odd.rename(cfg)))
    assert r.exit_code == 2 and f"qbhook {odd_exe} contains a % (" in r.stderr
    assert root_qbt == []
