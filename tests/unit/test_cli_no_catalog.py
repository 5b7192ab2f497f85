"""A command that only reads the catalog makes none (``App.open_catalog``): before the first
scan, with the pools not mounted or ``catalog:`` mistyped, `status`, `history`, `queue`,
`find`, `torrents` and every `--no-scan` made an empty catalog that then answered "nothing" as if
it were the real one. Each says in one line that there is no catalog yet and what makes one,
exit ExitCode.NO_INPUT, and leaves no file (nor folder) behind. A command that writes into it
still makes it: a scan (scan, and plan, explain, dupes, a dry-run apply, which scan first when
there is no catalog), a run, events. No command makes the catalog's folder: its absence is
CatalogFolderMissing, ExitCode.CONFIG, in every command."""

from __future__ import annotations

import os
import shutil

import pytest

from qbhook.errors import ExitCode
from tests.unit.test_cli_catalog import SEED, Env

HASH = "1" * 40

READERS = [
    ["status"],
    ["--json", "status"],
    ["history"],
    ["history", "--run", "1"],
    ["torrents", "--offline"],
    ["find", "{file}"],
    ["explain", HASH, "--no-scan"],
    ["explain", HASH, "--index"],
    ["dupes", "--no-scan"],
    ["dupes", "--payloads", "--offline"],
    ["holding"],
    ["holding", "--purge-expired"],  # a dry run
    ["holding", "--forget-gone"],  # a dry run
    ["queue"],
    ["queue", "retry", "1"],
    ["plan", "--no-scan"],
    ["apply", "--no-scan"],  # a dry run
    ["converge", "--no-scan"],  # a dry run
    ["repair"],  # a dry run
]


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    e.file = e.stash / SEED / "a.bin"
    e.file.write_bytes(b"a")
    return e


def _left(folder) -> list[str]:
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_command_that_only_reads_makes_no_catalog(env, args):
    r = env.run(*[a.format(file=env.file) for a in args], expect=ExitCode.NO_INPUT)
    assert r.stderr == f"qbhook: there is no catalog yet at {env.catalog} (`qbhook scan` makes one)\n"
    assert r.stdout == ""
    assert _left(env.catalog.parent) == []  # no catalog, no -wal or -shm beside it


@pytest.mark.parametrize("args", [["status"], ["history"], ["queue"]], ids=" ".join)
def test_an_empty_file_is_no_catalog_and_stays_empty(env, args):
    # `touch catalog.sqlite`: status migrated it into a full catalog, from a command that only reads.
    env.catalog.parent.mkdir(parents=True, exist_ok=True)
    env.catalog.write_bytes(b"")
    r = env.run(*args, expect=ExitCode.NO_INPUT)
    assert r.stderr == f"qbhook: there is no catalog yet at {env.catalog} (`qbhook scan` makes one)\n"
    assert env.catalog.stat().st_size == 0 and _left(env.catalog.parent) == [env.catalog.name]


@pytest.mark.parametrize("args", [*READERS, ["scan"]], ids=" ".join)
def test_nor_the_catalogs_folder_whose_absence_is_the_configs_fault_in_every_command(env, args):
    """R53: with the folder missing, a command that only reads said "no catalog yet (`qbhook scan`
    makes one)", exit 66, and `scan` then failed on that folder, exit 78: the config names the
    wrong place (or a disk is not mounted), one line and 78 from every command, scan or not."""
    where = env.tmp / "typo" / "catalog.sqlite"
    env.save(catalog=str(where))
    r = env.run(*[a.format(file=env.file) for a in args], expect=ExitCode.CONFIG)
    folder = where.parent
    assert r.stderr == f"qbhook: catalog: folder {folder} does not exist (create it: mkdir -p {folder})\n"
    assert r.stdout == "" and not folder.exists()


@pytest.mark.parametrize("depth", ["x.sqlite", "a/x.sqlite"])
@pytest.mark.parametrize("args", [["status"], ["history"], ["dupes", "--no-scan"], ["scan"]], ids=" ".join)
def test_a_file_where_the_catalogs_folder_should_be_is_the_configs_fault_in_every_command(env, args, depth):
    """R80: ``catalog: /x/text.sqlite/x.sqlite``, text.sqlite a file: `status` and `history` said
    "cannot open catalog ...: Not a directory" (74), `scan` and `hook` "does not exist (create it:
    mkdir -p ...)" (78), advice naming an existing file. One line from every command, naming it (78)."""
    blocker = env.tmp / "text.sqlite"
    blocker.write_text("hi\n")
    where = blocker / depth
    env.save(catalog=str(where))
    r = env.run(*args, expect=ExitCode.CONFIG)
    folder = where.parent
    said = f"{folder} is a file" if folder == blocker else f"{folder} cannot be a folder: {blocker} is a file"
    assert r.stderr == f"qbhook: catalog: folder {said}, not a folder\n"
    assert r.stdout == "" and blocker.read_text() == "hi\n"


@pytest.mark.parametrize("args", [["status"], ["history"], ["scan"]], ids=" ".join)
def test_a_catalog_that_is_a_link_to_nothing_is_named_by_every_command(env, args):
    """R80: `status` said "no catalog yet (`qbhook scan` makes one)" (66), and `scan` then failed
    "unable to open database file" (74). One line naming the link and where it points (78)."""
    target = env.tmp / "nowhere" / "catalog.sqlite"
    env.catalog.parent.mkdir(parents=True, exist_ok=True)
    env.catalog.symlink_to(target)
    r = env.run(*args, expect=ExitCode.CONFIG)
    assert r.stderr == (
        f"qbhook: catalog {env.catalog} is a symbolic link to {target}, which does not exist "
        "(point 'catalog:' at the file itself, or fix the link)\n"
    )
    assert not target.parent.exists() and _left(env.catalog.parent) == [env.catalog.name]


@pytest.mark.parametrize(
    "args",
    [["status"], ["history"], ["scan"], ["hook", "added", "1" * 40, "", "", "n", "", "", "", "", "", "", ""]],
    ids=lambda a: a[0],
)
def test_a_catalog_that_is_a_loop_of_links_is_the_configs_fault_in_every_command(env, args):
    """A link to itself (or a ring of two) was "cannot open catalog ...: Too many levels of symbolic
    links" (74, a failure): the config, or the links, name the wrong place (78), one line."""
    env.catalog.parent.mkdir(parents=True, exist_ok=True)
    other = env.catalog.with_name("other.sqlite")
    env.catalog.symlink_to(other)
    other.symlink_to(env.catalog)
    r = env.run(*args, expect=ExitCode.CONFIG)
    assert r.stderr == (
        f"qbhook: catalog {env.catalog} is a loop of symbolic links, or more than the kernel follows "
        "(point 'catalog:' at the file itself, or fix the links)\n"
    )
    assert r.stdout == "" and sorted(_left(env.catalog.parent)) == sorted([env.catalog.name, other.name])


@pytest.mark.parametrize("args", [["status"], ["scan"]], ids=" ".join)
def test_a_loop_in_a_folder_above_the_catalog_is_named_as_the_folders(env, args):
    """R98 F2: a folder on the way that loops made `status` call the catalog itself a loop of links
    (78, pointing at a file that does not exist) while `scan` named the folder (74): both name it."""
    folder = env.catalog.parent
    shutil.rmtree(folder, ignore_errors=True)
    folder.symlink_to(folder)
    r = env.run(*args, expect=ExitCode.IO_ERROR)
    assert r.stderr == f"qbhook: cannot look in catalog folder {folder}: Too many levels of symbolic links\n"


def test_a_scan_makes_a_new_catalog_where_a_link_points_into_a_folder_that_exists(env):
    """R87: a link to a catalog not made yet, in a folder that exists (a catalog kept on another
    disk), is how some set it up: `scan` made it through the link, and does again; a reader
    before then still names the link (78), as above."""
    target = env.tmp / "ssd" / "catalog.sqlite"
    target.parent.mkdir()
    env.catalog.parent.mkdir(parents=True, exist_ok=True)
    env.catalog.symlink_to(target)
    env.run("history", expect=ExitCode.CONFIG)
    env.run("scan")
    assert target.is_file() and env.catalog.is_symlink()
    assert env.run("history").stdout == "no runs yet\n"


def test_once_a_scan_made_it_they_read_it(env):
    env.run("scan")
    assert env.catalog.exists()
    assert env.run("history").stdout == "no runs yet\n"
    assert env.json("dupes", "--no-scan")["sets"] == []
    assert env.json("holding", "--forget-gone") == {"gone": [], "dry_run": True}


@pytest.mark.parametrize(
    "args", [["scan"], ["dupes"], ["holding", "--purge-expired", "--yes"], ["holding", "--forget-gone", "--yes"]]
)
def test_a_command_that_writes_still_makes_it(env, args):
    env.run(*args)
    assert env.catalog.exists()


def test_a_command_that_scans_first_makes_it_with_what_it_scanned(env, monkeypatch):
    """plan with no catalog scans first (planning.ready_catalog: no full scan on record), as
    `qbhook scan` would: that catalog is no empty one. The client it then asks is stubbed."""
    from qbhook.catalog.store import Catalog
    from qbhook.cli.app import App

    monkeypatch.setattr(App, "clients", property(lambda self: []))
    env.run("plan")
    cat = Catalog.open(env.catalog, create=False)
    try:
        assert cat.counts()["paths"] == 1  # env.file, scanned
    finally:
        cat.close()


def test_a_catalog_whose_name_needs_escaping_in_a_uri_is_still_found(env):
    """The catalog is opened by a SQLite URI when it must not be made (mode=rw): a '?', '#' or
    '%' in its path is the name's, not the URI's."""
    where = env.tmp / "odd?name#1%20x" / "catalog.sqlite"
    where.parent.mkdir()
    env.save(catalog=str(where))
    env.run("scan")
    assert env.run("history").exit_code == 0
    assert _left(where.parent)[0] == "catalog.sqlite" and not (env.tmp / "odd").exists()
