"""qbhook.files.read_regular_file on its own: the one reader of the config, secret files, saved
plans and the notification outbox. Anything but a regular file is NotReadable with one line, and
opening it never blocks nor changes anything (the CLI-level cases are in test_cli_bad_input)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qbhook.files import Missing, NotReadable, read_regular_file
from tests.timebox import timebox

ROOT = Path(__file__).resolve().parents[2]


def test_a_regular_file_is_read_up_to_its_bound(tmp_path):
    f = tmp_path / "config.yaml"
    f.write_bytes(b"x" * 2048)
    assert read_regular_file(f, 2048) == b"x" * 2048
    f.write_bytes(b"x" * 2049)
    with pytest.raises(NotReadable) as ei:
        read_regular_file(f, 2048)
    assert str(ei.value) == f"{f} is larger than 2 KiB: not a file qbhook reads"


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pw.fifo"
    os.mkfifo(fifo)
    with timebox(5, "read_regular_file(FIFO)"), pytest.raises(NotReadable) as ei:
        read_regular_file(fifo, 100)
    assert str(ei.value) == f"{fifo} is not a regular file"


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(NotReadable) as ei:
        read_regular_file(tmp_path, 100)
    assert str(ei.value) == f"cannot read {tmp_path}: Is a directory"


def test_nothing_there_is_missing_and_a_dangling_link_is_not(tmp_path):
    with pytest.raises(Missing):
        read_regular_file(tmp_path / "none", 100)
    os.symlink(tmp_path / "none", tmp_path / "dangling")
    with pytest.raises(NotReadable) as ei:
        read_regular_file(tmp_path / "dangling", 100)
    assert not isinstance(ei.value, Missing)


def test_a_symbolic_link_is_followed_unless_nofollow(tmp_path):
    """A config or secret file linked from /etc or a secrets mount (Kubernetes mounts each secret
    as a link) is read; the outbox (nofollow) refuses a link planted at its name."""
    (tmp_path / "real").write_bytes(b"secret")
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert read_regular_file(tmp_path / "link", 100) == b"secret"
    with pytest.raises(NotReadable, match="cannot read .*link: "):
        read_regular_file(tmp_path / "link", 100, nofollow=True)


_TTY_PROBE = textwrap.dedent(
    """
    import os
    from qbhook.files import NotReadable, read_regular_file

    def has_ctty():
        try:
            os.close(os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY))
            return True
        except OSError:
            return False

    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.close(slave)
    assert not has_ctty(), "the probe must start without a controlling terminal"
    try:
        read_regular_file(name, 100)
    except NotReadable as e:
        print(e)
    print("ctty" if has_ctty() else "no ctty")
    """
)


@pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="no pseudo-terminals here")
def test_a_terminal_is_refused_and_never_becomes_the_controlling_one():
    """Opened without O_NOCTTY, a terminal named as a config or secret file became the controlling
    terminal of a session leader that had none (serve under systemd), though it was refused."""
    r = subprocess.run(
        [sys.executable, "-c", _TTY_PROBE],
        start_new_session=True,  # a session leader without a controlling terminal
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith(" is not a regular file") and lines[0].startswith("/dev/"), r.stdout
    assert lines[1] == "no ctty", r.stdout
