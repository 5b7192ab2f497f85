"""``qbhook config``: inspect the configuration."""

from __future__ import annotations

import sys

from qbhook.cli.app import App, echo_shown, main, pass_app
from qbhook.config import check_paths, describe
from qbhook.errors import ExitCode


@main.group()
def config():
    """Inspect the configuration."""


@config.command("check")
@pass_app
def config_check(app: App):
    """Validate the config and the pools it names; print it resolved (secrets masked)."""
    cfg = app.cfg
    problems = check_paths(cfg)
    data = describe(cfg)
    data["problems"] = problems

    def human(d):
        import yaml

        for line in yaml.safe_dump({k: v for k, v in d.items() if k != "problems"}, sort_keys=False).splitlines():
            echo_shown(line)
        for p in problems:
            echo_shown(f"PROBLEM: {p}", err=True)
        if not problems:
            echo_shown("config OK", err=True)

    app.emit(data, human)
    if problems:
        sys.exit(ExitCode.CONFIG)


# ---------------------------------------------------------------- catalog
