"""`qbhook demo` re-runs over a sandbox whose mounts died (zfs-fuse restarted while it was up).

Found by running scripts/demo over the previous session's sandbox: a dead FUSE mount inside it
made the rebuild's mkdir raise a traceback ("File exists").
"""

from __future__ import annotations

import json
import os

import pytest

from qbhook.errors import QbhookError
from qbhook.sandbox import demo
from tests.helpers import put


def _quiet(line: str) -> None:
    """clean's printer where it has nothing to say (no pool to destroy, or it refuses)."""
    raise AssertionError(f"clean said {line!r}")


def test_mounts_below_the_sandbox_are_listed_deepest_first_and_unescaped(tmp_path):
    base = tmp_path / "qbhook demo"
    mounts = tmp_path / "mounts"
    esc = str(base).replace(" ", "\\040")
    mounts.write_text(
        f"qbtstash {esc}/bed/stash fuse.zfs rw 0 0\n"
        f"qbtstash/lib {esc}/bed/stash/data/media/library fuse.zfs rw 0 0\n"
        f"tmpfs {esc}2/other tmpfs rw 0 0\n"  # a sibling folder that shares the prefix: not ours
        "/dev/sda1 / ext4 rw 0 0\n"
    )
    assert demo._mounts_below(base, str(mounts)) == [
        f"{base}/bed/stash/data/media/library",
        f"{base}/bed/stash",
    ]


def test_a_sandbox_that_cannot_be_removed_is_a_one_line_error_not_a_traceback(tmp_path, monkeypatch):
    base = tmp_path / "sandbox"
    base.mkdir()
    (base / demo.MARKER).write_text("")
    monkeypatch.setattr(demo.shutil, "rmtree", lambda *a, **k: None)  # as a dead mount makes it fail
    monkeypatch.setattr(demo, "_mounts_below", lambda b: [])
    with pytest.raises(QbhookError, match="cannot clear the demo sandbox"):
        demo.clean(base, _quiet)


def test_clean_removes_a_sandbox_the_demo_made(tmp_path):
    base = tmp_path / "sandbox"
    (base / "bed").mkdir(parents=True)
    (base / demo.MARKER).write_text("")
    (base / "state.json").write_text(json.dumps({"base_dir": str(base / "bed"), "pools": {}}))
    demo.clean(base, _quiet)
    assert not base.exists()


def test_a_state_json_alone_is_not_a_sandbox(tmp_path, monkeypatch):
    # Any program's folder may hold a state.json: only a KeyError stopped a root rmtree of it.
    mine = tmp_path / "app"
    put(mine / "state.json", b'{"app": "other"}')
    put(mine / "data.db", b"precious")
    monkeypatch.setattr(demo, "_mounts_below", lambda b: pytest.fail("looked for mounts to unmount"))
    with pytest.raises(QbhookError, match="is not a demo sandbox"):
        demo.clean(mine, _quiet)
    assert (mine / "data.db").read_bytes() == b"precious"


@pytest.mark.parametrize(
    "state, why",
    [
        (b"garbage", "not a demo state"),
        (b'{"app": "other"}', "not a demo state"),
        (b'{"base_dir": "/", "pools": {}}', "outside the sandbox"),
        (
            b'{"base_dir": "BASE/bed", "pools": {"s": {"mountpoint": "/srv", "zpool": null, "kind": "tmpfs"}}}',
            "outside",
        ),
        (
            b'{"base_dir": "BASE/bed", "pools": {"s": {"mountpoint": "BASE/bed/s", "zpool": "tank", "kind": "zfs"}}}',
            "a ZFS pool the demo did not make",
        ),
        (b'{"base_dir": "BASE/bed", "pools": []}', "not a demo state"),
    ],
)
def test_a_damaged_or_foreign_state_is_one_line_and_destroys_nothing(tmp_path, monkeypatch, state, why):
    base = tmp_path / "sandbox"
    put(base / demo.MARKER, b"")
    put(base / "state.json", state.replace(b"BASE", str(base).encode()))
    monkeypatch.setattr(demo, "destroy_pools", lambda pools: pytest.fail(f"destroyed {pools}"))
    monkeypatch.setattr(demo, "_mounts_below", lambda b: pytest.fail("looked for mounts to unmount"))
    with pytest.raises(QbhookError, match=why) as e:
        demo.clean(base, _quiet)
    assert "\n" not in e.value.message and (base / "state.json").exists()


def test_clean_removes_an_empty_folder_and_accepts_a_missing_one(tmp_path):
    (tmp_path / "empty").mkdir()
    demo.clean(tmp_path / "empty", _quiet)
    demo.clean(tmp_path / "never-made", _quiet)
    assert not (tmp_path / "empty").exists()


@pytest.mark.parametrize("kind", ["folder", "symlink", "file"])
def test_clean_refuses_a_folder_the_demo_did_not_make_and_leaves_it_whole(tmp_path, monkeypatch, kind):
    """`qbhook demo --dir /srv` (as root, --dir typed by hand) unmounted everything below /srv
    and removed it: rebuilding "from scratch" cleared whatever folder --dir named."""
    mine = tmp_path / "srv"
    put(mine / "data/keep.bin", b"precious")
    base = {"folder": mine, "symlink": tmp_path / "link", "file": mine / "data/keep.bin"}[kind]
    if kind == "symlink":
        base.symlink_to(mine)
    unmounted = []
    monkeypatch.setattr(demo, "_mounts_below", lambda b: unmounted.append(b) or [])
    with pytest.raises(QbhookError, match="is not a demo sandbox .* refusing to clear it"):
        demo.clean(base, _quiet)
    assert unmounted == [] and (mine / "data/keep.bin").read_bytes() == b"precious"


def test_the_demo_s_lines_reach_the_terminal_through_the_cli_s_escaping(tmp_path, monkeypatch):
    """`qbhook demo` prints through echo_shown (the sandbox takes it as ``say``): a pool's name with an
    escape sequence in it, in clean's warning, prints escaped, as in every other command."""
    from click.testing import CliRunner

    from qbhook.cli.app import main

    base = tmp_path / "sandbox"
    base.mkdir()
    (base / demo.MARKER).write_text("")
    (base / "state.json").write_text(json.dumps({"base_dir": str(base / "bed"), "pools": {}}))

    def destroy(_pools):
        raise RuntimeError("zpool qbt\x1b[2Jstash is busy")

    monkeypatch.setattr(demo, "destroy_pools", destroy)
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # the demo's own check; nothing here needs root
    r = CliRunner().invoke(main, ["demo", "--clean", "--dir", str(base)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [
        "warning: could not destroy demo pools: zpool qbt\\x1b[2Jstash is busy",
        f"removed {base}",
    ]


@pytest.mark.parametrize("clean", [["--clean"], []])
def test_an_empty_dir_option_is_a_usage_error_not_the_current_folder(tmp_path, monkeypatch, clean):
    """`qbhook demo --dir "$UNSET"` took the current folder for the sandbox: building one there, or
    (refused only by the marker check) clearing it."""
    from click.testing import CliRunner

    from qbhook.cli.app import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(demo, "clean", lambda *a: pytest.fail("clean ran"))
    monkeypatch.setattr(demo, "run", lambda *a: pytest.fail("run ran"))
    r = CliRunner().invoke(main, ["demo", *clean, "--dir", ""])
    assert r.exit_code == 2, r.output
    assert "--dir" in r.stderr and "names no folder (an empty path)" in r.stderr
    assert os.listdir(tmp_path) == []


def _demo_cli(monkeypatch, *args, euid=0):
    from click.testing import CliRunner

    from qbhook.cli.app import main

    monkeypatch.setattr(os, "geteuid", lambda: euid)  # the demo's own check; nothing here needs root
    monkeypatch.setattr(demo, "run", lambda *a: pytest.fail("the demo ran"))
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("made", [True, False])
def test_clean_under_json_is_one_json_document_saying_whether_there_was_a_sandbox(tmp_path, monkeypatch, made):
    """R53: `qbhook --json demo --clean` printed 'removed X', and said so of a folder that never
    existed."""
    base = tmp_path / "sandbox"
    if made:
        put(base / demo.MARKER, b"")
    r = _demo_cli(monkeypatch, "--json", "demo", "--clean", "--dir", str(base))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"removed": str(base), "existed": made}
    assert not base.exists()


def test_clean_of_a_folder_that_is_not_there_says_nothing_was_removed(tmp_path, monkeypatch):
    base = tmp_path / "never-made"
    r = _demo_cli(monkeypatch, "demo", "--clean", "--dir", str(base))
    assert (r.exit_code, r.stdout) == (0, f"nothing to remove at {base}\n")


def test_clean_s_warnings_go_to_stderr_under_json(tmp_path, monkeypatch):
    base = tmp_path / "sandbox"
    put(base / demo.MARKER, b"")
    (base / "state.json").write_text(json.dumps({"base_dir": str(base / "bed"), "pools": {}}))
    monkeypatch.setattr(demo, "destroy_pools", lambda pools: (_ for _ in ()).throw(RuntimeError("busy")))
    r = _demo_cli(monkeypatch, "--json", "demo", "--clean", "--dir", str(base))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["existed"] is True
    assert r.stderr == "warning: could not destroy demo pools: busy\n"


@pytest.mark.parametrize("clean", [["--clean"], []])
def test_not_root_is_qbhook_s_one_line_with_a_named_exit_code_not_click_s_error(tmp_path, monkeypatch, clean):
    """R53: the root check was click's "Error: ...", exit 1, unlike every other command's error."""
    from qbhook.errors import ExitCode

    base = tmp_path / "sandbox"
    monkeypatch.setattr(demo, "clean", lambda *a: pytest.fail("clean ran"))
    r = _demo_cli(monkeypatch, "--json", "demo", *clean, "--dir", str(base), euid=1000)
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr == "qbhook: the demo mounts pools and must run as root (try: sudo scripts/demo)\n"
    assert r.stdout == "" and not base.exists()


def _fake_story(seen: list):
    """demo.run without the sandbox: its lines through ``say``, where it would show a command's."""

    def run(base, say, shown_fd=None):
        seen.append(shown_fd)
        say(f"qbhook demo: sandbox in {base}")
        say("== qbhook scan ==")
        return demo.ExitCode.OK

    return run


@pytest.mark.parametrize("where", [["--json", "demo"], ["demo", "--json"]])
def test_the_full_demo_under_json_prints_only_one_json_document_on_stdout(tmp_path, monkeypatch, where):
    """Its progress lines went to stdout under --json, before (and instead of) any JSON: they go to
    stderr, with the qbhook commands it shows (fd 2), and stdout holds one document."""
    from click.testing import CliRunner

    from qbhook.cli.app import main

    seen: list = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(demo, "run", _fake_story(seen))
    base = tmp_path / "sandbox"
    r = CliRunner().invoke(main, [*where, "--dir", str(base)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"dir": str(base), "proved": True, "exit_code": 0}
    assert r.stderr.splitlines() == [f"qbhook demo: sandbox in {base}", "== qbhook scan =="]
    assert seen == [2]
    r = CliRunner().invoke(main, ["demo", "--dir", str(base)])  # without --json: the lines, on stdout
    assert (r.exit_code, r.stdout, r.stderr, seen[-1]) == (
        0,
        f"qbhook demo: sandbox in {base}\n== qbhook scan ==\n",
        "",
        None,
    )


@pytest.mark.parametrize("shown_fd", [None, 2])
def test_a_command_the_demo_shows_prints_on_the_fd_it_is_given(tmp_path, monkeypatch, shown_fd):
    calls = []
    monkeypatch.setattr(
        demo.subprocess, "run", lambda argv, **kw: calls.append(kw) or demo.subprocess.CompletedProcess(argv, 0)
    )
    demo._qbhook(tmp_path / "c.yaml", "status", show=True, shown_fd=shown_fd)
    demo._qbhook(tmp_path / "c.yaml", "--json", "dupes")
    assert calls[0]["stdout"] == shown_fd and "capture_output" not in calls[0]
    assert calls[1]["capture_output"] is True and "stdout" not in calls[1]
