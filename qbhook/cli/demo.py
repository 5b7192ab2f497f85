"""``qbhook demo``: the sandbox (needs root: it mounts pools and runs qbittorrent-nox and rtorrent)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from qbhook.cli.app import FolderPath, echo_shown, main

DEFAULT_DIR = "/var/tmp/qbhook-demo"


@main.command()
@click.option(
    "--dir", "base", type=FolderPath(), default=DEFAULT_DIR, show_default=True, help="Where the sandbox lives."
)
@click.option("--clean", is_flag=True, help="Tear the sandbox down (pools, files) and exit.")
def demo(base, clean):
    """Build a sandbox (two real pools, a real qBittorrent and, when installed, rTorrent; sample torrents)
    and run qbhook end to end.

    Re-running rebuilds it from scratch. Nothing outside --dir is touched.

    Example: qbhook demo --dir /var/tmp/qbhook-demo
    """
    try:
        from qbhook.sandbox import demo as demo_mod
    except ModuleNotFoundError as e:
        raise click.ClickException(
            f"the demo needs {e.name}: pip install 'qbhook[demo]' (scripts/demo does this)"
        ) from None
    if os.geteuid() != 0:
        raise click.ClickException("the demo mounts pools and must run as root (try: sudo scripts/demo)")
    # The demo's lines through the CLI's one printer of human lines (the sandbox cannot import it).
    if clean:
        demo_mod.clean(Path(base), echo_shown)
        echo_shown(f"removed {base}")
        return
    sys.exit(demo_mod.run(Path(base), echo_shown))
