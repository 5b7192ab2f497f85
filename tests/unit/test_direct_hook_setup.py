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
from tests.unit.test_hook_user import asked, fake_proc  # noqa: F401  (asked: a fixture)

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
    r, change = proposed("--config", "config.yaml", "--qbhook-path", "/usr/local/bin/qbhook")
    assert r.exit_code == 0, r.output
    assert change["autorun_on_torrent_added_program"].startswith(f"/usr/local/bin/qbhook --config {cfg} hook added ")
    assert change["autorun_program"].startswith(f"/usr/local/bin/qbhook --config {cfg} hook finished ")


def test_a_qbhook_found_by_a_relative_name_is_proposed_absolute(tmp_path, monkeypatch, root_qbt):
    """Not on PATH, qbhook is named as it was started (sys.argv[0], here venv/bin/qbhook)."""
    cfg = example_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("qbhook.cli.events._which", lambda name: None)
    monkeypatch.setattr("sys.argv", ["venv/bin/qbhook"])
    r, change = proposed("--config", str(cfg))
    assert r.exit_code == 0, r.output
    assert change["autorun_program"].startswith(f"{tmp_path}/venv/bin/qbhook --config {cfg} hook finished ")
