"""`clients:` in the config: qBittorrent and rTorrent entries side by side, `qbittorrent:` kept.

Every defect is one ConfigError naming the key (exit 78 through the CLI, no traceback),
and the CLI builds one client collection from every entry, whatever its type.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from click.testing import CliRunner

from qbhook.catalog.store import Catalog
from qbhook.cli import App, main
from qbhook.clients.qbt.client import QbtClient
from qbhook.clients.registry import Clients, client_label
from qbhook.clients.rtorrent import RtorrentClient
from qbhook.config import QbtConfig, RtorrentConfig, check_paths, describe, parse_config
from qbhook.errors import ConfigError

BASE = {
    "catalog": "/var/lib/qbhook/catalog.sqlite",
    "pools": {"stash": {"path": "/stash", "role": "primary"}, "pool": {"path": "/pool", "role": "cold"}},
    "seeding_roots": {"stash": "/stash/data/media/torrents/seeding", "pool": "/pool/data/media/torrents/seeding"},
    "qbittorrent": {"url": "http://127.0.0.1:8080", "password_env": "QBT_PW"},
    "clients": [
        {
            "type": "rtorrent",
            "name": "rt",
            "scgi": "/run/rtorrent/rpc.sock",
            "path_map": [{"client": "/downloads", "host": "/stash/data/media/torrents/seeding"}],
        },
        {"type": "qbittorrent", "name": "qb2", "url": "http://10.0.0.2:8080", "password": "inline"},
        {"type": "rtorrent", "name": "rt-tcp", "scgi": "127.0.0.1:5000", "timeout": "2m"},
    ],
}


def parse(data):
    return parse_config(data, env={"QBT_PW": "s3cret"})


def test_clients_list_beside_the_qbittorrent_key():
    c = parse(BASE)
    assert [(x.type, x.name) for x in c.clients] == [
        ("qbittorrent", "default"),
        ("qbittorrent", "qb2"),
        ("rtorrent", "rt"),
        ("rtorrent", "rt-tcp"),
    ]
    assert [q.name for q in c.qbittorrent] == ["default", "qb2"]  # qBittorrent-only readers keep working
    assert all(isinstance(q, QbtConfig) for q in c.qbittorrent)
    rt, tcp = c.rtorrent
    assert isinstance(rt, RtorrentConfig) and rt.scgi == "/run/rtorrent/rpc.sock"
    assert rt.path_map == (("/downloads", "/stash/data/media/torrents/seeding"),) and rt.timeout == 30.0
    assert tcp.scgi == "127.0.0.1:5000" and tcp.timeout == 120.0 and tcp.path_map == ()
    assert c.qbittorrent[1].password == "inline"
    shown = describe(c)["clients"]
    assert {"type": "rtorrent", "name": "rt-tcp", "scgi": "127.0.0.1:5000", "timeout": 120.0, "path_map": []} in shown
    assert "inline" not in repr(describe(c)) and "s3cret" not in repr(describe(c))


def test_clients_alone_without_the_qbittorrent_key():
    d = {k: v for k, v in BASE.items() if k != "qbittorrent"}
    d["clients"] = [BASE["clients"][0]]
    c = parse(d)
    assert c.qbittorrent == () and [x.name for x in c.clients] == ["rt"]


@pytest.mark.parametrize(
    "mutate, key, words",
    [
        (lambda d: d.update(clients={"type": "rtorrent"}), "clients", "must be a list"),
        (lambda d: d["clients"].append("rt"), "clients[3]", "must be a mapping"),
        (lambda d: d["clients"][0].pop("type"), "clients[0].type", "must be one of qbittorrent, rtorrent"),
        (lambda d: d["clients"][0].update(type="transmission"), "clients[0].type", "'transmission'"),
        (lambda d: d["clients"][0].pop("name"), "clients[0].name", "is required"),
        (lambda d: d["clients"][0].update(name="default"), "clients[0].name", "duplicate client name 'default'"),
        (lambda d: d["clients"][2].update(name="rt"), "clients[2].name", "duplicate client name 'rt'"),
        (lambda d: d["clients"][0].pop("scgi"), "clients[0].scgi", "is required"),
        (lambda d: d["clients"][0].update(scgi="localhost"), "clients[0].scgi", "not an SCGI address"),
        (lambda d: d["clients"][2].update(scgi="127.0.0.1:70000"), "clients[2].scgi", "not a TCP port"),
        (lambda d: d["clients"][0].update(url="http://x"), "clients[0].url", "not a known setting"),
        (lambda d: d["clients"][0].update(timeout=0), "clients[0].timeout", "greater than 0"),
        (lambda d: d["clients"][0].update(timeout="soon"), "clients[0].timeout", "duration"),
        (
            lambda d: d["clients"][0]["path_map"].append({"client": "rel", "host": "/x"}),
            "clients[0].path_map[1].client",
            "absolute",
        ),
        (lambda d: d["clients"][0].update(path_map={"client": "/a"}), "clients[0].path_map", "must be a list"),
        (lambda d: d["clients"][1].update(url="ftp://x"), "clients[1].url", "http(s) URL"),
        (
            lambda d: (d["clients"][1].pop("password"), d["clients"][1].update(password_env="NOPE")),
            "clients[1].password_env",
            "not set",
        ),
        (lambda d: d["clients"][1].update(scgi="/x"), "clients[1].scgi", "not a known setting"),
    ],
)
def test_errors_name_the_key(mutate, key, words):
    d = copy.deepcopy(BASE)
    mutate(d)
    with pytest.raises(ConfigError) as ei:
        parse(d)
    msg = str(ei.value)
    assert msg.startswith(f"config: {key}: ") and words in msg, msg
    assert "\n" not in ei.value.message


def test_check_paths_names_a_missing_rtorrent_socket(tmp_path):
    d = copy.deepcopy(BASE)
    sock = tmp_path / "rpc.sock"
    d["clients"][0]["scgi"] = str(sock)
    problems = check_paths(parse(d))
    assert any(p.startswith(f"rtorrent rt: SCGI socket {sock} does not exist") for p in problems)
    sock.touch()
    assert not any("SCGI socket" in p for p in check_paths(parse(d)))


def _write(tmp_path, data):
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_cli_builds_every_client_by_type(tmp_path, monkeypatch):
    monkeypatch.setenv("QBT_PW", "x")
    app = App(str(_write(tmp_path, BASE)), as_json=False, verbose=0)
    clients = app.clients
    assert isinstance(clients, Clients)
    assert [(type(c), c.name) for c in clients] == [
        (QbtClient, "default"),
        (QbtClient, "qb2"),
        (RtorrentClient, "rt"),
        (RtorrentClient, "rt-tcp"),
    ]
    assert clients["rt"].address == "/run/rtorrent/rpc.sock"
    assert clients["rt"].path_map.to_host("/downloads/x") == "/stash/data/media/torrents/seeding/x"
    assert client_label(clients["rt-tcp"]) == "rTorrent 'rt-tcp'"


def test_cli_bad_clients_entry_is_one_line_exit_78(tmp_path, monkeypatch):
    monkeypatch.setenv("QBT_PW", "x")
    d = copy.deepcopy(BASE)
    d["clients"][0]["scgi"] = "nowhere"
    r = CliRunner().invoke(main, ["--config", str(_write(tmp_path, d)), "config", "check"])
    assert r.exit_code == 78 and "Traceback" not in r.output
    assert r.stderr.splitlines()[0].startswith("qbhook: config: clients[0].scgi: not an SCGI address")


def test_cli_without_any_client_names_both_keys(tmp_path):
    d = {k: v for k, v in BASE.items() if k not in ("qbittorrent", "clients")}
    app = App(str(_write(tmp_path, d)), as_json=False, verbose=0)
    with pytest.raises(ConfigError) as ei:
        _ = app.clients
    assert ei.value.exit_code == 78 and "'clients:'" in str(ei.value) and "'qbittorrent:'" in str(ei.value)


def test_setup_rtorrent_prints_the_rc_lines_and_setup_qbittorrent_skips_rtorrent(tmp_path, monkeypatch):
    monkeypatch.setenv("QBT_PW", "x")
    d = {k: v for k, v in BASE.items() if k != "qbittorrent"}
    d["clients"] = [BASE["clients"][0]]
    cfg = str(_write(tmp_path, d))
    r = CliRunner().invoke(main, ["--config", cfg, "setup", "rtorrent", "--hook-path", "/hooks/qbt-hook.sh"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "# rTorrent rt (/run/rtorrent/rpc.sock): add to .rtorrent.rc"
    assert lines[1].startswith(
        'method.set_key = event.download.inserted_new,qbhook_added,'
        '"execute.nothrow.bg=env,QBHOOK_INSTANCE=rt,/hooks/qbt-hook.sh,added,'
    )
    assert lines[2].startswith("method.set_key = event.download.finished,qbhook_finished,")
    r = CliRunner().invoke(main, ["--config", cfg, "setup", "rtorrent", "--hook-path", "/hooks/x y.sh"])
    assert r.exit_code == 2 and "cannot carry safely" in r.stderr and "Traceback" not in r.output
    # an rTorrent has no qBittorrent preferences: skipped, not a traceback; with no qBittorrent
    # left to set up, a one-line error as `setup rtorrent` gives (it exited 0, changing nothing)
    r = CliRunner().invoke(main, ["--config", cfg, "--json", "setup", "qbittorrent"])
    assert r.exit_code == 78 and "Traceback" not in r.output, r.output
    assert r.stderr.splitlines()[0] == "qbhook: config: qbittorrent: no qBittorrent configured"


@pytest.mark.parametrize(
    "hook_path, why",
    [
        ("hooks/qbt-hook.sh", "is not an absolute path"),
        ("/my hooks/qbt-hook.sh", "has characters an .rtorrent.rc line cannot carry safely"),
        ("/hooks/a,b.sh", "has characters an .rtorrent.rc line cannot carry safely"),
    ],
)
def test_setup_rtorrent_refuses_a_hook_path_it_cannot_wire_as_bad_input(tmp_path, hook_path, why):
    """Bad input is exit 2 (README, "Exit codes"), as `setup qbittorrent --hook-path` says it:
    it was the adapter's UnsafeOperation, exit 5, "a group failed safely". Refused before the
    config is read: no client, no file."""
    cfg = str(tmp_path / "none.yaml")
    r = CliRunner().invoke(main, ["--config", cfg, "setup", "rtorrent", "--hook-path", hook_path])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"Invalid value for '--hook-path': '{hook_path}' {why}" in r.stderr


@pytest.mark.parametrize("name", ["seedbox #2", "rt 2", "rt;x", "rt,x"])
def test_an_rtorrent_name_setup_rtorrent_cannot_wire_is_refused_when_the_config_loads(tmp_path, name):
    """`setup rtorrent` writes the name into the rc lines (QBHOOK_INSTANCE=NAME): a name it
    cannot carry passed `config check` and was refused only there (exit 5). Now the config
    refuses it, one line naming the key, exit 78; a qBittorrent may keep such a name."""
    d = copy.deepcopy(BASE)
    d["clients"][0]["name"] = name
    with pytest.raises(ConfigError) as ei:
        parse(d)
    assert ei.value.key == "clients[0].name" and "cannot carry safely" in str(ei.value)
    r = CliRunner().invoke(main, ["--config", str(_write(tmp_path, d)), "config", "check"], env={"QBT_PW": "x"})
    assert r.exit_code == 78 and "Traceback" not in r.output, r.output
    assert r.stderr.splitlines() == [f"qbhook: {ei.value.message}"]
    assert r.stderr.startswith("qbhook: config: clients[0].name: ")
    d["clients"][0]["name"] = "rt"
    d["clients"][1]["name"] = name  # the qBittorrent entry
    assert [c.name for c in parse(d).qbittorrent] == ["default", name]


def test_setup_qbittorrent_with_a_name_of_no_instance_is_an_error_asking_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("QBT_PW", "x")
    cfg = str(_write(tmp_path, BASE))  # its qBittorrent's url answers nothing: it must not be asked
    r = CliRunner().invoke(main, ["--config", cfg, "setup", "qbittorrent", "--instance", "nosuch", "--yes"])
    assert r.exit_code == 78 and "Traceback" not in r.output, r.output
    assert r.stderr.splitlines()[0] == "qbhook: config: qbittorrent: no qBittorrent configured named 'nosuch'"


def test_an_unreachable_rtorrent_is_exit_4_naming_the_instance(tmp_path):
    d = copy.deepcopy({k: v for k, v in BASE.items() if k != "qbittorrent"})
    d["catalog"] = str(tmp_path / "catalog.sqlite")
    d["clients"] = [{"type": "rtorrent", "name": "seedbox", "scgi": str(tmp_path / "gone.sock")}]
    Catalog.open(d["catalog"]).close()  # one to plan from (plan makes none)
    r = CliRunner().invoke(main, ["--config", str(_write(tmp_path, d)), "plan", "--no-scan"])
    assert r.exit_code == 4 and "Traceback" not in r.output, r.output
    assert r.stderr.startswith(f"qbhook: rTorrent 'seedbox' ({tmp_path / 'gone.sock'}): list items: no answer (")
    assert len(r.stderr.splitlines()) == 1, r.stderr  # one line, as a qBittorrent that is down


def test_event_paths_from_an_rtorrent_container_map_to_the_host():
    from qbhook.events.worker import host_path

    c = parse(BASE)
    assert host_path(c, "/downloads/Show/e1.mkv") == "/stash/data/media/torrents/seeding/Show/e1.mkv"
    assert host_path(c, "/stash/data/x") == "/stash/data/x"  # already a host path
