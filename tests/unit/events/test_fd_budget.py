"""serve's descriptor reserve (``events.server.FD_BUDGET``) adds up: every term is its user's own
bound, and the reserve is their sum, so a later change to one number (a reader's MAX_OPEN, the
Relinker's folders, ensure_hashes' threads) either moves the reserve with it or fails here."""

from __future__ import annotations

from qbhook import dirfd
from qbhook.catalog import hashing
from qbhook.events import server
from qbhook.move import fsops


def test_the_reserve_is_the_sum_of_its_terms_and_the_connections_get_the_rest():
    assert sum(server.FD_BUDGET.values()) == server._FD_RESERVE
    opts = server.waitress_options()
    room = server.raise_fd_limit() - server._FD_RESERVE
    assert opts["connection_limit"] == max(16, min(server.MAX_CONNECTIONS, room))


def test_each_term_is_the_bound_its_user_keeps():
    with dirfd.FolderReader([]) as reader:  # a snapshot's reader, as built (no max_open given)
        assert server.FD_BUDGET["snapshot folders"] == server._SNAPSHOT_THREADS * reader._max_open
    with fsops.Relinker(()) as rl:  # the executor's, as built
        assert server.FD_BUDGET["relink folders"] == rl.max_open
        # its queue full, each thread closing a chunk, and the relink waiting for room holding one more
        assert server.FD_BUDGET["relink releases"] == rl._release.held_at_most
    assert server.FD_BUDGET["pruned folders"] == fsops.PRUNE_MAX_DEPTH
    # ensure_hashes bounds its reader threads by the named READER_THREADS, which the budget counts
    assert server._HASH_READERS == hashing.READER_THREADS
    assert server.FD_BUDGET["hashing"] == server._SNAPSHOT_THREADS * server._HASH_READERS * (3 + hashing.THREAD_FOLDERS)
