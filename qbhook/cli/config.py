"""``qbhook config``: inspect the configuration."""

from __future__ import annotations

import sys

from qbhook.catalog.fsid import mounts_below
from qbhook.cli.app import App, echo_shown, main, pass_app
from qbhook.config import check_paths, describe, path_warnings, seeding_root_warnings
from qbhook.errors import ConfigError, ExitCode


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
    cfg, unread = _with_secrets(app)
    problems = unread + check_paths(cfg)
    warnings = path_warnings(cfg) + seeding_root_warnings(cfg) + nested_mount_warnings(cfg)
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


def nested_mount_warnings(cfg, mounts=None) -> list[str]:
    """One line per filesystem mounted below a seeding root (``fsid.mounts_below``, the mount table
    as ``/proc/self/mountinfo`` lists it now): qbhook never moves nor converges a file there
    (``decide.facts.NESTED``), so its torrents stay where they are, every sweep."""
    out = []
    for p in cfg.pools:
        for root, at in mounts_below([str(r) for r in p.seeding_roots], mounts):
            out.append(
                f"seeding_roots.{p.name}: {at} is another filesystem (a dataset mounted below seeding root {root}): "
                f"nothing in it is moved or converged; configure it as its own seeding root "
                f"(seeding_roots.{p.name} takes a list of folders, none inside another)"
            )
    return out


def _with_secrets(app: App):
    """The config with its secrets, or, when one cannot be read (a password file missing, a
    variable not set), without them and that secret's line as a problem: the check still
    shows the rest (the pools, the paths) instead of ending at it. Loaded without the secrets,
    a config that fails again fails for another reason, and that error stands."""
    try:
        return app.cfg, []
    except ConfigError as e:
        app.secrets = False
        cfg = app.cfg
        return cfg, [e.message + (f" ({e.hint})" if e.hint else "")]


# ---------------------------------------------------------------- catalog
