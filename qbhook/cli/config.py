"""``qbhook config``: inspect the configuration."""

from __future__ import annotations

import sys

from qbhook.cli.app import App, echo_shown, main, pass_app
from qbhook.config import check_paths, describe, path_warnings, seeding_root_warnings
from qbhook.errors import ExitCode


@main.group()
def config():
    """Inspect the configuration.

    Example: qbhook config check
    """


@config.command("check")
@pass_app
def config_check(app: App):
    """Validate the config and the pools it names; print it resolved (secrets masked).

    Example: qbhook --config /etc/qbhook/config.yaml config check
    """
    cfg = app.cfg
    problems = check_paths(cfg)
    warnings = path_warnings(cfg) + seeding_root_warnings(cfg)
    data = describe(cfg)
    data["problems"] = problems
    data["warnings"] = warnings

    def human(d):
        import yaml

        for line in yaml.safe_dump(
            {k: v for k, v in d.items() if k not in ("problems", "warnings")}, sort_keys=False
        ).splitlines():
            echo_shown(line)
        for w in warnings:
            echo_shown(f"WARNING: {w}", err=True)
        for p in problems:
            echo_shown(f"PROBLEM: {p}", err=True)
        if not problems:
            echo_shown("config OK", err=True)

    app.emit(data, human)
    if problems:
        sys.exit(ExitCode.CONFIG)


# ---------------------------------------------------------------- catalog
