"""Command-line entry point. Thin: parse, load config, call one function, print.

Exit codes are named in ``qbhook.errors.ExitCode``: 0 ok; 1 generic failure;
2 usage / bad input; 3 refused by a safety guard (e.g. mass delete); 4 torrent
client unreachable; 5 unsafe operation refused; 6 stale groups of a saved plan
refused (apply --plan); 10 "plan has actionable groups" (plan only); 65 unusable
plan file; 74 catalog damaged or its disk failing, or the lock folder or standard
output unwritable; 75 busy (lock held, or serve's port taken); 78 configuration
problem; 130 interrupted (SIGINT).
"""

# Each module registers its commands on ``main`` when imported; ``main`` imports only the module
# of the command being run (app.COMMANDS), so `qbhook dupes` starts without the rest, and
# `qbhook --help` lists every command from that table without importing any.
from qbhook.cli.app import App, main, pass_app  # noqa: F401  (the public entry point and its context)
