"""A catalog this user may not write is read without making anything beside it (R80).

SQLite makes a WAL database's -wal and -shm on open, a read-only connection's too, with the
database file's mode: `qbhook status` run by a service user (no DAC override) on a mode-444
catalog in a folder it may write left a 444 -shm, and once the catalog was writable again every
writer failed ("attempt to write a readonly database"; the hook's "this event is lost") until
root opened it. Root reads and writes whatever the mode says, so each case runs a real qbhook
as ``nobody`` (setpriv or runuser); the test skips where it cannot. ``history`` stands for every
reader: ``status`` reads the catalog the same way but also asks a server, which may be running.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

import qbhook
from qbhook.catalog.store import Catalog
from qbhook.errors import ExitCode
from tests.helpers import config_data

REPO = Path(qbhook.__file__).resolve().parent.parent


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


def _as_nobody() -> list[str] | None:
    """The command prefix that runs the rest as ``nobody`` with no capabilities, or None."""
    who = _nobody()
    if os.geteuid() != 0 or who is None:
        return None
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={who.pw_uid}", f"--regid={who.pw_gid}", "--clear-groups", "--inh-caps=-all"]
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    return None


pytestmark = pytest.mark.skipif(_as_nobody() is None, reason="needs root and setpriv or runuser to become nobody")


@pytest.fixture
def bed():
    # Not tmp_path: pytest's folder is root's alone (0700), which nobody may not enter.
    root = Path(tempfile.mkdtemp(prefix="qbhook-unwritable-"))
    try:
        for d in ("db", "stash", "pool", "home"):
            (root / d).mkdir()
        cat = root / "db" / "catalog.sqlite"
        Catalog.open(cat).close()
        cfg = root / "config.yaml"
        cfg.write_text(yaml.safe_dump(config_data(cat, root / "stash", root / "pool")))
        uid, gid = _nobody().pw_uid, _nobody().pw_gid
        for p in (root, *root.rglob("*")):
            os.chown(p, uid, gid)
        yield root, cfg, cat
    finally:
        shutil.rmtree(root)


def _qbhook(root: Path, cfg: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root / "home"), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*_as_nobody(), sys.executable, "-m", "qbhook", "--config", str(cfg), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _folder(cat: Path) -> dict:
    return {p.name: (p.stat().st_mode, p.stat().st_uid, p.stat().st_size) for p in cat.parent.iterdir()}


def _read_while_its_writer_has_it_open(root: Path, cfg: Path, cat: Path) -> None:
    """nobody reads the catalog while root's writer has it open (its -wal and -shm exist): exit 0,
    nothing made or changed in its folder."""
    writer = Catalog.open(cat)
    try:
        assert {"catalog.sqlite-wal", "catalog.sqlite-shm"} <= set(_folder(cat))
        before = _folder(cat)
        r = _qbhook(root, cfg, "history")
        assert r.returncode == 0, r.stdout + r.stderr
        assert _folder(cat) == before
    finally:
        writer.close()


def test_a_reader_of_a_catalog_it_may_not_write_says_so_and_makes_nothing(bed):
    root, cfg, cat = bed
    cat.chmod(0o444)
    before = _folder(cat)
    r = _qbhook(root, cfg, "history")
    assert r.returncode == ExitCode.IO_ERROR, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == (
        f"qbhook: catalog {cat} is owned by nobody, mode 444, which user nobody (uid {_nobody().pw_uid}) may not "
        "write: opening it now would leave catalog.sqlite-wal and catalog.sqlite-shm beside it, "
        "read-only for every writer after"
    ), lines
    assert lines[1].startswith(f"  hint: chmod u+w {cat} ") and len(lines) == 2, lines
    assert _folder(cat) == before  # no -wal, no -shm
    # The user fixes the catalog as told: every writer works again, no root needed.
    cat.chmod(0o644)
    r = _qbhook(root, cfg, "scan")
    assert r.returncode == 0, r.stdout + r.stderr


def test_another_users_catalog_is_read_while_its_writer_has_it_open_and_refused_after(bed):
    """The catalog's owner (root here, as a root `serve`) keeps it open: its -wal and -shm exist
    and nobody reads it as it is. Once the writer closes (and removes them) reading it would make
    them, nobody's, which root's next writer would share with every non-root one: refused."""
    root, cfg, cat = bed
    for p in (cat, cat.parent):
        os.chown(p, 0, 0)
    cat.parent.chmod(0o777)  # nobody could make files there: it must not
    _read_while_its_writer_has_it_open(root, cfg, cat)
    before = _folder(cat)
    assert set(before) == {"catalog.sqlite"}
    r = _qbhook(root, cfg, "history")
    assert r.returncode == ExitCode.IO_ERROR, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith(
        f"qbhook: catalog {cat} is owned by root, mode 644, which user nobody (uid {_nobody().pw_uid}) may not "
    ), lines
    assert lines[1].startswith("  hint: run qbhook as user root (uid 0), its owner ("), lines
    assert _folder(cat) == before


def test_a_writer_meeting_a_read_only_shm_names_it(bed):
    """What an older qbhook's reader left (R80): the writer's error names the file, not only
    SQLite's "attempt to write a readonly database". Not an empty -shm: SQLite gives an empty
    file it owns the catalog's mode back by itself."""
    root, cfg, cat = bed
    for side, mode, size in (("-wal", 0o644, 0), ("-shm", 0o444, 32768)):
        p = cat.with_name(cat.name + side)
        p.write_bytes(bytes(size))
        p.chmod(mode)
        os.chown(p, _nobody().pw_uid, _nobody().pw_gid)
    r = _qbhook(root, cfg, "scan")
    assert r.returncode == ExitCode.IO_ERROR, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == (
        f"qbhook: catalog {cat}: attempt to write a readonly database ({cat}-shm is owned by nobody, mode 444)"
    ), lines
    assert lines[1] == (
        f"  hint: let user nobody (uid {_nobody().pw_uid}) write it (chown, chmod u+w) "
        "or run qbhook as the user that owns it"
    )


def test_a_symlinked_catalog_is_read_while_its_writer_has_it_open(bed):
    """SQLite keeps the -wal and -shm beside the file a link names, not beside the link: looked for
    beside the link, they were always missing, and a reader who may not write was refused while
    the writer had the catalog open (R87)."""
    root, cfg, cat = bed
    link = root / "db" / "link.sqlite"
    link.symlink_to(cat)
    cfg.write_text(cfg.read_text().replace(str(cat), str(link)))
    for p in (cat, cat.parent):
        os.chown(p, 0, 0)
    _read_while_its_writer_has_it_open(root, cfg, cat)
