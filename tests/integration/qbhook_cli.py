"""``python -m qbhook`` for the integration tests: the real CLI in its own process, with the
executor polling qBittorrent every 0.25 s (backing off to at most 1 s) instead of from 1 s up
to 15 s.

Why this keeps the waits correct: what makes a wait safe is the executor's rule (the
torrent at its new path, complete, on ``settle_polls`` consecutive polls; a stopped torrent
is rechecked and given ``recheck_grace_s``), not the spacing of the polls. The bed's
qBittorrent refreshes its API every 100 ms (``qbhook.sandbox.qbt``), so a 0.25 s poll still
sees every state it reports; the in-process tests of the same executor
(test_apply_real, test_notify_real, test_rtorrent_client) poll at the same 0.25 s. With the
defaults every relocation waited 2.5 s or more for two polls, and a rollback twice that.
"""

from __future__ import annotations

import functools

from qbhook.move import executor

# Every CLI path builds its executor through this function at call time (cli.apply,
# cli.repair, cli.events' worker), so the patch reaches all of them.
executor.build_executor = functools.partial(executor.build_executor, poll_initial_s=0.25, poll_max_s=1.0)

if __name__ == "__main__":
    from qbhook.cli import main

    main()
