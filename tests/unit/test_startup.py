"""What a CLI process imports before it does any work (start-up cost, issues 11 and 13).

Every qbhook command is a new process, and its interpreter start and imports are paid before
it reads a byte: `qbhook explain HASH` answers in ~15 ms in-process but took ~0.25 s in its
own process, and an unchanged `scan` is measured against `find`. These tests run each command
in a fresh interpreter and look at ``sys.modules`` when it ends, so an import moved back to a
module's top (or a new one added there) fails here instead of silently slowing every command.
They assert module sets, never timings.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import click
import pytest
import yaml
from click.testing import CliRunner

from qbhook.catalog.indexer import sync_client
from qbhook.catalog.store import Catalog
from qbhook.cli import app, main
from tests.helpers import config_data, put
from tests.unit.test_executor import FakeQbt, FakeTorrent

SEED = "data/media/torrents/seeding"
HASH = "a" * 40

# Run a command as `qbhook` does, then print the modules it loaded (whatever its exit status).
PROBE = (
    "import json, sys\n"
    "from qbhook.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:], prog_name='qbhook')\n"
    "except SystemExit as e:\n"
    "    code = e.code\n"
    "else:\n"
    "    code = 0\n"
    "sys.stdout.flush()\n"
    "sys.stderr.write('\\nMODULES ' + json.dumps({'code': code, 'modules': sorted(sys.modules)}) + '\\n')\n"
)

# Never needed to scan or to explain from the index: the client libraries (qBittorrent's is
# ~0.4 s of imports), the web server, notifications, metrics, test-only libraries, and the
# standard modules only a hashing run, a client or a server uses.
NEVER = (
    "qbittorrentapi",
    "requests",
    "urllib3",
    "flask",
    "werkzeug",
    "waitress",
    "apprise",
    "prometheus_client",
    "tenacity",
    "hypothesis",
    "email",
    "importlib.metadata",
    "concurrent.futures",
    "socket",
    "qbhook.move",
    "qbhook.events",
    "qbhook.clients.qbt.client",
    "qbhook.clients.registry",
    "qbhook.clients.rtorrent",
)


def run_probe(*args: str, env: dict | None = None, columns: int = 80) -> tuple[int, str, set[str]]:
    """(exit code, stdout, modules loaded) of ``qbhook ARGS`` in a new interpreter."""
    e = dict(os.environ if env is None else env, COLUMNS=str(columns))
    r = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, cwd="/", env=e
    )
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("MODULES ")]
    assert line, r.stderr
    got = json.loads(line[-1].removeprefix("MODULES "))
    return got["code"], r.stdout, set(got["modules"])


def loaded(modules: set[str], names) -> list[str]:
    """The modules (and submodules) of ``names`` present in ``modules``."""
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


def command_modules() -> list[str]:
    return [f"qbhook.cli.{m}" for m in app.CLI_MODULES]


# --------------------------------------------------------------------------- --version, --help


def test_version_reads_no_metadata_and_help_imports_no_command_module():
    """`qbhook --version` and `qbhook --help` load click and qbhook.cli.app only: no config
    (PyYAML), no catalog (sqlite3), no command module, no importlib.metadata (~20 ms to read the
    dist-info). The version printed is still the installed distribution's."""
    code, out, mods = run_probe("--version")
    assert code == 0
    assert out.strip() == f"qbhook, version {importlib.metadata.version('qbhook')}"
    for args in (["--version"], ["--help"]):
        code, out, mods = run_probe(*args)
        assert code == 0, out
        assert loaded(mods, ("qbhook",)) == ["qbhook", "qbhook.cli", "qbhook.cli.app", "qbhook.errors"], args
        assert loaded(mods, ("yaml", "sqlite3", "logging", "importlib.metadata", *NEVER)) == [], args


def test_help_lists_every_command_exactly_as_the_loaded_commands_do():
    """`qbhook --help` lists commands from app.COMMANDS without importing their modules; the
    listing must be the one click prints from the real commands, at any terminal width, and
    the table must hold every command with the first paragraph of its real help."""
    app.load_commands()
    real = {name: " ".join(cmd.help.partition("\n\n")[0].split()) for name, cmd in main.commands.items()}
    assert {name: summary for name, (_, summary) in app.COMMANDS.items()} == real
    assert not any(cmd.hidden for cmd in main.commands.values())

    everything = (
        "import sys\nfrom qbhook.cli import app\napp.load_commands()\napp.main(['--help'], prog_name='qbhook')\n"
    )
    for columns in (50, 80, 200):
        _, lazy, _ = run_probe("--help", columns=columns)
        full = subprocess.run(
            [sys.executable, "-c", everything],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
            env=dict(os.environ, COLUMNS=str(columns)),
        ).stdout
        assert lazy == full, columns
        assert all(f"  {name} " in lazy for name in app.COMMANDS)


def test_a_command_missing_from_the_table_is_still_listed_and_runs():
    """A command registered on ``main`` but not in COMMANDS (a module added without updating
    the table) still shows in --help, with its own help, and runs."""

    @main.command("zz-probe")
    def zz_probe():
        """Probe command, registered by a test."""
        click.echo("probed")

    try:
        listed = CliRunner().invoke(main, ["--help"]).stdout
        assert "zz-probe  Probe command, registered by a test." in listed
        assert CliRunner().invoke(main, ["zz-probe"]).stdout == "probed\n"
    finally:
        del main.commands["zz-probe"]


# --------------------------------------------------------------------------- scan and explain


@pytest.fixture
def bed(tmp_path):
    """Two pools on plain folders, a config naming a qBittorrent nobody listens to, a catalog
    scanned by `qbhook scan` and a torrent index synced from a stub client."""
    stash, pool = tmp_path / "stash", tmp_path / "pool"
    for root in (stash, pool):
        (root / SEED).mkdir(parents=True)
    put(stash / SEED / "Movie.A/a.mkv", b"A" * 3000)
    put(stash / SEED / "Movie.A/a.nfo", b"n" * 40)
    put(pool / SEED / "Show.B/b.mkv", b"B" * 5000)
    config = tmp_path / "config.yaml"
    catalog = tmp_path / "catalog.sqlite"
    # port 9 (discard): nothing answers; the index must be enough
    nobody = {"name": "qbt", "url": "http://127.0.0.1:9", "username": "u", "password": "p"}
    config.write_text(yaml.safe_dump(config_data(catalog, stash, pool, seeding=SEED, qbt=nobody)))
    r = CliRunner().invoke(main, ["--config", str(config), "--json", "scan"])
    assert r.exit_code == 0, r.output
    qbt = FakeQbt()
    files = [("Movie.A/a.mkv", 3000, 1), ("Movie.A/a.nfo", 40, 1)]
    qbt.add(FakeTorrent(HASH, "Movie.A", str(stash / SEED), files, tags={"~noHL"}))
    qbt.add(FakeTorrent("b" * 40, "Show.B", str(pool / SEED), [("Show.B/b.mkv", 5000, 1)]))
    cat = Catalog.open(catalog)
    try:
        sync_client(cat, qbt)
    finally:
        cat.close()
    return config


def test_an_unchanged_rescan_loads_no_client_hashing_planner_or_server(bed):
    """`qbhook scan` (no --hash) walks and compares: it loads the catalog and the scanner, and
    none of the hashing machinery (threads, worker sockets), the planner, the clients, the
    executor or the web server. blake3 is allowed: the rescan memo is a BLAKE3 of find's output."""
    code, out, mods = run_probe("--config", str(bed), "--json", "scan")
    assert code == 0, out
    assert json.loads(out)["scans"][0]["changed"] == 0
    assert loaded(mods, (*NEVER, "qbhook.catalog.hashing", "qbhook.decide", "qbhook.clients")) == []
    assert command_modules_loaded(mods) == ["qbhook.cli.catalog"]


def test_explain_from_the_index_loads_no_client_library_scanner_or_server(bed):
    """`qbhook explain HASH` on a recent catalog and index (qBittorrent down) decides one group:
    it loads the planner and the index, and no client library, no scanner (it does not walk),
    no hashing pool, no executor or server. blake3 is allowed: payload ids are BLAKE3."""
    code, out, mods = run_probe("--config", str(bed), "--json", "explain", HASH)
    assert code == 0, out
    answer = json.loads(out)
    assert answer["index"]["source"] == "index" and answer["group"]["torrents"] == [HASH]
    assert answer["backstop"] == []  # no verdict journaled for this group
    assert loaded(mods, (*NEVER, "qbhook.catalog.scan", "qbhook.catalog.dupes")) == []
    assert command_modules_loaded(mods) == ["qbhook.cli.plan"]  # the index answer is explain's own


def test_explain_says_the_view_backstops_verdict_from_the_journal_without_loading_the_executor(bed):
    """A group the view backstop stopped (journaled failed, "VIEW FILE CHANGED") is named by
    `explain` for its torrents, text and --json, with what to do; found by the torrent its steps
    named, though the group's id has changed since. Other failures and other groups' verdicts
    are not shown, and reading the journal loads neither the executor nor the journal module."""
    from qbhook.decide.explain import BACKSTOP_TODO
    from qbhook.decide.plan import Relocate
    from qbhook.move.journal import Journal

    catalog = yaml.safe_load(bed.read_text())["catalog"]
    cat = Catalog.open(catalog)
    try:
        j = Journal(cat.conn)
        run = j.start_run({})
        for gid, h, reason in (
            ("g-before", HASH, "relocate failed: VIEW FILE CHANGED after verify_view: /x/a.mkv; group stopped"),
            ("g-other", "b" * 40, "relocate failed: VIEW FILE CHANGED after verify_view: /x/b.mkv"),
            ("g-plain", HASH, "copy failed: disk full"),
        ):
            j.intend(run, len(gid), gid, Relocate(h, "qbt", "/x", "/y"))
            j.set_group(gid, run, "failed", reason)
    finally:
        cat.close()

    code, out, mods = run_probe("--config", str(bed), "--json", "explain", HASH)

    assert code == 0, out
    (v,) = json.loads(out)["backstop"]
    assert v["group_id"] == "g-before" and v["run"] == run and v["reason"].endswith("/x/a.mkv; group stopped")
    assert v["todo"] == BACKSTOP_TODO
    assert loaded(mods, (*NEVER, "qbhook.catalog.scan", "qbhook.catalog.dupes")) == []
    r = CliRunner().invoke(main, ["--config", str(bed), "explain", HASH])
    assert r.exit_code == 0, r.output
    assert f"STOPPED BY THE VIEW BACKSTOP in run {run} (group g-before): relocate failed: VIEW FILE" in r.output
    assert "what to do: something wrote into a view file" in r.output and "g-other" not in r.output
    # The answer without a client (--index, or qBittorrent down) says the same verdict.
    r = CliRunner().invoke(main, ["--config", str(bed), "explain", "--index", HASH])
    assert r.exit_code == 0, r.output
    assert f"STOPPED BY THE VIEW BACKSTOP in run {run} (group g-before): relocate failed: VIEW FILE" in r.output
    assert "g-other" not in r.output
    r = CliRunner().invoke(main, ["--config", str(bed), "--json", "explain", "--index", HASH])
    assert [v["group_id"] for v in json.loads(r.output)["backstop"]] == ["g-before"]


def command_modules_loaded(mods: set[str]) -> list[str]:
    return sorted(set(command_modules()) & mods)


def test_the_hook_qbittorrent_runs_per_event_loads_no_planner_journal_or_client(bed):
    """`qbhook hook added ...` (qBittorrent runs it once per torrent event) parses its values
    and enqueues one job: it loads the event queue, and not the status report's imports (the
    planner's types, the journal, the orphan finder), the clients, the executor or the server."""
    values = [HASH, "", "", "Movie.A", "", "", "/x/Movie.A", "/x", "/x", "2", "3040"]
    code, out, mods = run_probe("--config", str(bed), "--json", "hook", "added", *values)
    assert code == 0, out
    assert json.loads(out)["queued"]
    never = [n for n in NEVER if n != "qbhook.events"]
    assert loaded(mods, (*never, *HOOK_NEVER, "qbhook.decide", "qbhook.catalog.scan", "qbhook.clients")) == []


# Of qbhook.events, what enqueueing one hook call never needs: the status report (the journal,
# the planner's types), the worker, the web server, its pages and metrics, the alerts.
HOOK_NEVER = tuple(
    f"qbhook.events.{m}"
    for m in ("status", "worker", "server", "service", "views", "page", "metrics", "alerts", "auth")
)
