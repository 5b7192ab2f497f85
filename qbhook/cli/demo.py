"""``qbhook demo``: the sandbox (needs root: it mounts pools and runs qbittorrent-nox and rtorrent)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from qbhook.cli.app import App, FolderPath, echo_shown, main, pass_app

DEFAULT_DIR = "/var/tmp/qbhook-demo"


@main.command()
@click.option(
    "--dir", "base", type=FolderPath(), default=DEFAULT_DIR, show_default=True, help="Where the sandbox lives."
)
@click.option("--clean", is_flag=True, help="Tear the sandbox down (pools, files) and exit.")
@pass_app
def demo(app: App, base, clean):
    """Build a sandbox (two real pools, a real qBittorrent and, when installed, rTorrent; sample torrents)
    and run qbhook end to end.

    Re-running rebuilds it from scratch. Nothing outside --dir is touched.

    Example: qbhook demo --dir /var/tmp/qbhook-demo
    """
    from qbhook.errors import DemoNeedsRoot, DemoUnavailable, ExitCode

    try:
        from qbhook.sandbox import demo as demo_mod
    except ModuleNotFoundError as e:
        raise DemoUnavailable(f"the demo needs {e.name}: pip install 'qbhook[demo]' (scripts/demo does this)") from None
    if os.geteuid() != 0:
        raise DemoNeedsRoot("the demo mounts pools and must run as root (try: sudo scripts/demo)")
    if clean:
        # A symbolic link is something there: clean refuses it, as any folder the demo did not make.
        existed = os.path.lexists(base)
        # The demo's lines through the CLI's one printer of human lines (the sandbox cannot import
        # it); on stderr under --json, where stdout holds one JSON document.
        demo_mod.clean(Path(base), functools.partial(echo_shown, err=app.as_json))
        app.emit(
            {"removed": base, "existed": existed},
            lambda d: echo_shown(f"removed {base}" if existed else f"nothing to remove at {base}"),
        )
        return
    # Under --json the story's lines, and those of the qbhook commands it shows, go to stderr
    # (fd 2): stdout holds only the one JSON document, as in every command.
    say = functools.partial(echo_shown, err=app.as_json)
    code = demo_mod.run(Path(base), say, shown_fd=2 if app.as_json else None)
    app.emit({"dir": base, "proved": code == ExitCode.OK, "exit_code": int(code)})
    sys.exit(code)
