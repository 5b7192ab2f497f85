"""Hostile input at the edges of a command: the files it is told to write or read, the lock
folder, its own standard output, an interrupt. Same rule as test_cli_bad_input: one line naming
the cause, an ExitCode, nothing changed, never a traceback. Each case was found by a sweep of
hostile input and failed before its fix."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from qbhook.errors import ExitCode, NotRegularFile
from tests.unit.test_cli_catalog import Env


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


# ------------------------------------------------------------------ plan --save, apply --plan


def _make(kind: str, path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":  # what /dev/null is, made where replacing it harms nothing
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    elif kind == "symlink":
        target = path.with_name("target.json")
        target.write_text("{}")
        os.symlink(target, path)
    else:
        path.mkdir()


WHAT = {
    "fifo": "is a FIFO",
    "device": "is a character device",
    "symlink": "is a symbolic link (name the file itself)",
    "folder": "is a directory",  # click.Path's own words (dir_okay=False)
}


@pytest.mark.parametrize("kind", list(WHAT))
def test_plan_save_over_something_not_a_regular_file_is_refused_before_anything_runs(env, kind):
    """`plan --save FIFO` exited 0 with the FIFO replaced by a 0600 file; as root `--save /dev/null`
    replaced /dev/null (the sweep replaced /dev/full once)."""
    where = env.tmp / "target"
    _make(kind, where)
    before = os.lstat(where)
    r = env.run("plan", "--save", str(where), expect=ExitCode.BAD_INPUT)
    assert r.stdout == ""
    assert r.stderr.splitlines()[-1].startswith("Error: Invalid value for '--save': "), r.stderr
    assert WHAT[kind] in r.stderr.splitlines()[-1], r.stderr
    after = os.lstat(where)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert not env.catalog.exists()  # refused at the command line: no scan, no catalog
    assert [p.name for p in env.tmp.iterdir() if p.name.startswith(".qbhook-plan.")] == []


@pytest.mark.parametrize("kind", ["fifo", "device", "symlink"])
def test_saving_a_plan_over_something_not_a_regular_file_is_refused(tmp_path, kind):
    """The API keeps the rule too (a FIFO made after the command line was read)."""
    from qbhook.decide.approved import save

    where = tmp_path / "target"
    _make(kind, where)
    before = os.lstat(where)
    with pytest.raises(NotRegularFile, match=f"cannot save the plan: {where} {WHAT[kind][:8]}"):
        save(where, {"format": "qbhook-plan"})
    after = os.lstat(where)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["target"] + (["target.json"] if kind == "symlink" else [])
    )


def test_saving_a_plan_over_a_regular_file_still_replaces_it(tmp_path):
    from qbhook.decide.approved import save

    where = tmp_path / "plan.json"
    where.write_text("old")
    save(where, {"format": "qbhook-plan"})
    assert '"qbhook-plan"' in where.read_text()


@pytest.mark.parametrize("option", [["plan", "--save", ""], ["apply", "--yes", "--plan", ""]])
def test_an_empty_file_path_is_refused_not_ignored(env, option):
    """`apply --yes --plan "$UNSET"` ran the whole-catalog apply instead of refusing."""
    r = env.run(*option, expect=ExitCode.BAD_INPUT)
    name = option[-2]
    assert r.stderr.splitlines()[-1] == f"Error: Invalid value for '{name}': names no file (an empty path)"
    assert r.stdout == "" and not env.catalog.exists()


@pytest.fixture
def no_client(monkeypatch):
    """plan asks the clients: none here (an empty list of them)."""
    from qbhook.cli.app import App

    monkeypatch.setattr(App, "clients", property(lambda self: []))


def test_plan_save_into_a_folder_that_does_not_exist_is_the_io_exit_code(env, no_client):
    """It was 65, "a plan file that is no usable plan": the file was never written (ExitCode: 74)."""
    where = env.tmp / "no-such-folder/plan.json"
    r = env.run("plan", "--save", str(where), expect=ExitCode.IO_ERROR)
    assert r.stderr.splitlines()[-1] == f"qbhook: cannot write plan file {where}: No such file or directory"


@pytest.mark.parametrize("name", ["my plan's.json", "two\nlines.json", os.fsdecode(b"caf\xe9 \\x41.json")])
def test_the_apply_line_plan_save_prints_pastes_back_to_the_same_file(env, no_client, name):
    """A name with a newline printed an `apply --plan` line with \\x0a in it, which a shell
    reads as other characters: the line is now quoted as one shell word for that very name."""
    where = env.tmp / name
    r = env.run("plan", "--save", str(where), expect=None)
    assert r.exit_code in (ExitCode.OK, ExitCode.ACTIONABLE), (r.exit_code, r.output)
    line = r.stdout.splitlines()[-1]  # human output: on stdout (--json: on stderr)
    word = line.split("apply it with: qbhook apply --plan ", 1)[1].removesuffix(" --yes")
    back = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, check=True).stdout
    assert back == os.fsencode(where), (line, back)


def test_a_plan_file_that_is_not_utf8_names_the_byte_not_the_decoder(env):
    path = env.tmp / "plan.bin"
    path.write_bytes(b'{"a":\n1}\n\xb4\x00binary')
    r = env.run("apply", "--plan", str(path), "--yes", expect=ExitCode.DATA_ERROR)
    assert r.stderr == f"qbhook: plan file: {path} is not UTF-8 text (byte 0xb4 on line 3)\n"
    assert r.stdout == ""


# ------------------------------------------------------------------ the lock folder


def test_a_lock_dir_that_is_a_regular_file_is_one_line_not_a_traceback(env):
    """`holding --purge-expired --yes` (and resume, orphans --quarantine) ended in a
    FileExistsError traceback; an unwritable folder in a PermissionError one (test_locks)."""
    locks = env.tmp / "locks"
    locks.write_text("x")
    env.save(lock_dir=str(locks))
    r = env.run("holding", "--purge-expired", "--yes", expect=ExitCode.IO_ERROR)
    assert r.stderr.splitlines()[0] == f"qbhook: cannot use lock folder {locks}: it is not a folder", r.stderr
    assert r.stderr.splitlines()[1].startswith("  hint: lock_dir") and len(r.stderr.splitlines()) == 2
    assert locks.read_text() == "x"


# ------------------------------------------------------------------ standard output, an interrupt


@pytest.mark.parametrize("args", [["--version"], ["history"], ["status"], ["--json", "status"], ["scan"]])
def test_a_standard_output_that_cannot_be_written_is_one_line_exit_74(env, args):
    """`qbhook history >/dev/full` ended in `OSError: [Errno 28] No space left on device`. A real
    process, so Python's own flush at exit is part of the test (it exits 120 if that fails)."""
    env.run("scan")  # a catalog to read (history, status and queue make none)
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            [sys.executable, "-m", "qbhook", "--config", str(env.config), *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert r.returncode == ExitCode.IO_ERROR, r.stderr
    assert r.stderr.splitlines()[-1] == "qbhook: cannot write to standard output: No space left on device"
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr


def _qbhook(env, *args, stdout, shell_redirect: str = ""):
    cmd = [sys.executable, "-m", "qbhook", "--config", str(env.config), *args]
    if shell_redirect:  # a redirection only a shell can make (`>&-`), the process exec-ed by it
        cmd = ["sh", "-c", f'exec "$0" "$@" {shell_redirect}', *cmd]
    return subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)


HELP = [
    ["--help"],
    ["plan", "--help"],
    ["config", "--help"],
    ["config", "check", "--help"],
    ["queue", "retry", "--help"],
]


@pytest.mark.parametrize("args", HELP)
def test_help_into_a_full_disk_is_one_line_exit_74(env, args):
    """`qbhook --help >/dev/full` (and a command's, a group's, a sub-command's) ended in click's
    own echo raising `OSError: [Errno 28]`, a traceback and exit 1."""
    with open("/dev/full", "w") as full:
        r = _qbhook(env, *args, stdout=full)
    assert r.returncode == ExitCode.IO_ERROR, r.stderr
    assert r.stderr == "qbhook: cannot write to standard output: No space left on device\n", r.stderr


@pytest.mark.parametrize("args", [*HELP, ["--version"], ["--json", "history"], ["scan"]])
def test_a_closed_standard_output_is_one_line_exit_74(env, args):
    """`qbhook ... >&-`: Python starts without a stdout and click.echo dropped every line
    without a word, exit 0, as if the output had been written."""
    env.run("scan")  # `history` reads a catalog that exists
    r = _qbhook(env, *args, stdout=None, shell_redirect=">&-")
    assert r.returncode == ExitCode.IO_ERROR, r.stderr
    assert r.stderr == "qbhook: cannot write to standard output: it is closed\n", r.stderr


def _qbhook_stderr(env, *args, stderr: str):
    """qbhook with a standard error that cannot be written: `2>&-` (closed before Python starts:
    no sys.stderr at all) or `2>/dev/full` (every write fails, ENOSPC)."""
    cmd = [sys.executable, "-m", "qbhook", "--config", str(env.config), *args]
    return subprocess.run(
        ["sh", "-c", f'exec "$0" "$@" 2>{stderr}', *cmd], stdout=subprocess.PIPE, text=True, timeout=60
    )


@pytest.mark.parametrize("stderr", ["&-", "/dev/full"])
@pytest.mark.parametrize(
    "args, code",
    [
        (["history", "--run", "99"], ExitCode.BAD_INPUT),
        (["--config", "/nonexistent/config.yaml", "status"], ExitCode.CONFIG),
        (["scan"], ExitCode.OK),  # a command that reports progress (when stderr is a terminal)
        (["--json", "scan"], ExitCode.OK),
    ],
)
def test_a_standard_error_that_cannot_be_written_keeps_the_errors_own_exit_code(env, stderr, args, code):
    """R30: an error's one line failed to print (OSError from click.echo, or Progress calling
    None.isatty() under `2>&-`) and every command exited 1, whatever its error: a script saw "a
    failure" where 78 (no config) or 2 (no such run) was meant, and `plan` failed on nothing."""
    env.run("scan")  # a catalog for history to read
    r = _qbhook_stderr(env, *args, stderr=stderr)
    assert r.returncode == code, (r.returncode, r.stdout)


def test_an_error_line_that_cannot_be_written_keeps_the_errors_own_exit_code(env, monkeypatch):
    """The same in-process: click.echo to stderr raising (EBADF: descriptor 2 closed under a
    sys.stderr Python made before) ends in the error's own code, not click's 1."""
    import click

    real = click.echo

    def echo(message=None, file=None, nl=True, err=False, color=None):
        if err:
            raise OSError(9, "Bad file descriptor")
        real(message, file=file, nl=nl, err=err, color=color)

    monkeypatch.setattr(click, "echo", echo)
    env.run("scan")
    r = env.run("history", "--run", "99", expect=ExitCode.BAD_INPUT)
    assert r.stderr == ""
    env.save(catalog=str(env.tmp / "var/none.sqlite"))
    assert env.run("status", expect=ExitCode.NO_INPUT).stderr == ""


def test_progress_on_a_standard_error_that_is_gone_shows_nothing_and_never_fails(monkeypatch):
    from qbhook.progress import Progress

    monkeypatch.setattr(sys, "stderr", None)  # `2>&-`: Python makes no sys.stderr
    p = Progress()
    assert not p.enabled
    p.update(1, "scanning")
    p.done("done")
    with open(os.devnull, "w") as closed:
        pass
    assert not Progress(closed).enabled  # isatty() on a closed file: ValueError

    class Gone:  # a terminal that went away mid-run
        def isatty(self):
            return True

        def write(self, text):
            raise OSError(5, "Input/output error")

        def flush(self):
            pass

    p = Progress(Gone(), interval=0)
    assert p.enabled
    p.update(1, "scanning")
    p.done("done")
    assert not p.enabled


def test_help_still_prints_the_help_page(env):
    r = _qbhook(env, "config", "check", "--help", stdout=subprocess.PIPE)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("Usage: ") and "config check [OPTIONS]" in r.stdout.splitlines()[0]
    assert "--help" in r.stdout


def test_every_command_prints_its_help_through_the_cli_printer():
    """What holds `--help >/dev/full` for the commands the subprocess tests above do not run: each
    command and group is an OwnHelp (a command made by plain @click.command and added would
    not be), and its help option calls the printer."""
    import click

    from qbhook.cli.app import OwnHelp, _print_help, load_commands, main

    load_commands()
    seen = []

    def walk(cmd, ctx):
        assert isinstance(cmd, OwnHelp), ctx.command_path
        assert cmd.get_help_option(ctx).callback is _print_help, ctx.command_path
        seen.append(ctx.command_path)
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, click.Context(sub, info_name=name, parent=ctx))

    walk(main, click.Context(main, info_name="qbhook"))
    assert {"qbhook plan", "qbhook config check", "qbhook queue retry", "qbhook setup qbittorrent"} <= set(seen)


def _examples(help_text: str) -> list[str]:
    """The invocations a help page gives after "Example:" (on its line, or the lines below it)."""
    lines = help_text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if "Example:" in line:
            first = line.split("Example:", 1)[1].strip()
            block = [first] if first else [x.strip() for x in lines[i + 1 :] if x.strip().startswith("qbhook ")]
            out += block
    return out


def _parsed(args: list[str]) -> str:
    """The command path click makes of ``qbhook ARGS`` (global options, groups, the command's own
    options and arguments all parsed and converted), without running anything."""
    import click

    from qbhook.cli.app import main

    ctx = main.make_context("qbhook", list(args))
    cmd = main
    while isinstance(cmd, click.Group) and (left := [*ctx._protected_args, *ctx.args]):
        name, cmd, rest = cmd.resolve_command(ctx, left)
        ctx = cmd.make_context(name, rest, parent=ctx)
    return ctx.command_path


def test_every_commands_help_has_an_example_that_parses():
    """Most commands' help gave no example; each now gives one, and it is a real invocation of
    that very command (click accepts every option and argument in it)."""
    import shlex

    import click
    from click.testing import CliRunner

    from qbhook.cli.app import load_commands, main

    load_commands()
    missing, wrong = [], []

    def walk(cmd, path):
        if path:
            r = CliRunner().invoke(main, [*path, "--help"])
            examples = _examples(r.output)
            if not examples:
                missing.append(" ".join(path))
            for ex in examples:
                words = shlex.split(ex, comments=True)
                words = words[: words.index("|")] if "|" in words else words
                assert words[0] == "qbhook", ex
                try:
                    got = _parsed(words[1:])
                except click.BadParameter as e:  # a file of the user's machine (find's PATH) is not on this one
                    got = " ".join(["qbhook", *path]) if "does not exist" in e.format_message() else e.format_message()
                except click.ClickException as e:
                    got = f"refused: {e.format_message()}"
                if not got.startswith(" ".join(["qbhook", *path])):
                    wrong.append((ex, got))
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, [*path, name])

    walk(main, [])
    assert missing == [] and wrong == [], (missing, wrong)


def test_a_reader_that_goes_away_still_ends_quietly(env):
    """EPIPE is not an output error: `qbhook ... | head` that stops reading ends without a word."""
    p = subprocess.Popen(
        [sys.executable, "-m", "qbhook", "--config", str(env.config), "--json", "status"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    p.stdout.close()  # the reader is gone before a byte was written
    err = p.stderr.read()
    assert p.wait(timeout=60) != ExitCode.IO_ERROR
    assert "cannot write" not in err and "Traceback" not in err, err


def test_an_interrupt_is_exit_130_with_one_line(env, monkeypatch):
    """SIGINT during `scan` printed click's "Aborted!" and exited 1, as any failure."""
    import qbhook.catalog.scan

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(qbhook.catalog.scan, "scan_pools", interrupted)
    r = env.run("scan", expect=ExitCode.INTERRUPTED)
    assert r.stderr.splitlines()[-1] == "qbhook: interrupted" and "Aborted" not in r.stderr
    assert ExitCode.INTERRUPTED == 130


# ------------------------------------------------------------------ exit codes of bad input


def test_queue_retry_of_an_unknown_job_is_bad_input_as_an_unknown_run_is(env):
    """It exited 1 (QueueError's default) where `history --run 424242` exits 2."""
    env.run("scan")  # a catalog to read (history, status and queue make none)
    r = env.run("queue", "retry", "424242", expect=ExitCode.BAD_INPUT)
    assert r.stderr == "qbhook: job 424242 is unknown, not dead\n"
    assert env.run("history", "--run", "424242", expect=ExitCode.BAD_INPUT).stderr.startswith("qbhook: there is no run")
