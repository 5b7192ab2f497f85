"""The client port: what the planner, executor and worker need from a torrent client.

Written down from what they call today (snapshot.py, worker.py, executor.py),
so an adapter that satisfies it can stand in for ``QbtClient`` without either
of them asking which client it is. The rules every adapter keeps:

* records are the typed snapshots of ``qbhook.clients.model`` (``TorrentInfo``,
  ``TorrentFile``), every path a HOST path through the adapter's ``PathMap``;
  a path it cannot map raises PathMapError, never passes through;
* ``TorrentInfo.state`` uses qBittorrent 5's normalized vocabulary
  (``stoppedUP``, ``checkingUP``, ``stalledUP``, ``error`` ...), so the
  executor's one state machine (``is_stable``, ``is_checking``, ``is_stopped``,
  ``is_complete``, BAD_STATES) serves every client;
* ``save_path`` means what it means in qBittorrent: the folder that holds the
  content (a single file, or the item's own folder), and file names are
  relative to it; ``set_location`` takes such a save path;
* actions accept any spelling of a hash, act on the id the client reported,
  and raise UnknownTorrent for a hash the client does not have;
* ``set_location`` starts a relocation onto data that is already there and a
  hash check of it, and returns; the caller polls ``torrent()`` until it is
  stable, complete and at the new place (the executor's ``_wait``);
* ``relocation_moves_files`` (a class attribute) says whether the client itself
  may move file data on a relocation: qBittorrent does (libtorrent's
  ``move_storage``, and its own Overwrite move after a restart inside one), so
  the executor hides the old links from it while it moves; rTorrent only
  repoints the item, and a hash check that finds its files hidden leaves it
  refusing ``d.start``. A client that does not say is taken to move files;
* ``relocation_checks`` (a class attribute) says whether ``set_location`` itself checks
  the data at the new place, its answers showing that check live: rTorrent's multicall
  ends in ``d.check_hash``. qBittorrent does not recheck a stopped torrent after a move,
  and shows the progress it cached before it for a refresh interval, so the executor asks
  for the recheck and waits to see it. A client that does not say is taken not to check;
* ``state_lag_s`` (a float attribute, seconds) says how long the client's answers may go on
  showing a torrent as it was before an action (a recheck, a stop): qBittorrent recomputes
  torrents/info only on its refresh timer, its ``refresh_interval`` preference (read once per
  executor run: the executor calls every client's ``forget_state_lag`` as each run starts, a
  no-op for a lag no setting sets, ``FixedStateLag``; 1.5 s by default); rTorrent answers 0
  (``d.hashing`` is live). The executor
  takes a stopped 100 % after its recheck as checked only once two of these and a margin have
  passed, or a check was seen. A client that does not say is taken to lag 1.5 s; one whose
  setting cannot be trusted raises its QbtError subclass when read;
* ``part_file`` (a class attribute) says whether the client keeps the pieces a wanted file
  shares with a skipped one in libtorrent's part file, ``.<infohash>.parts`` in the save path
  (qBittorrent), rather than in the skipped file itself (rTorrent): a repair of a partial
  torrent needs that file. A client that does not say is taken to keep one;
* ``start(forced=True)`` starts a torrent outside the client's queue, as it ran when its
  state said ``forcedUP``/``forcedDL`` (``TorrentInfo.is_forced``); a client with no queue to
  bypass (rTorrent) starts it as any start, and never reports a forced state;
* a client with a third state between started and stopped (rTorrent's pause: started but
  inactive) reports it stopped, ``TorrentInfo.is_paused`` set, and has ``pause()``
  (``Pausing``), which puts a stopped torrent back in it. The executor relocates it stopped and
  pauses it again afterwards, as it brings a running one back running;
* failures are QbhookErrors: UnknownTorrent, the client's QbtError subclass
  (unreachable / refused), UnsafeOperation for a refused unsafe request.

``QbtClient`` satisfies this protocol as it is (checked by a unit test);
``RtorrentClient`` implements it for rTorrent. ``torrents_with_files`` is an
optional batched listing (``BatchListing``): rTorrent answers it in a few
round trips, where the snapshot builder today calls ``files()`` per torrent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from qbhook.clients.model import TorrentFile, TorrentInfo
from qbhook.errors import UnknownTorrent
from qbhook.pathmap import PathMap

__all__ = ["PORT_METHODS", "BatchListing", "ClientPort", "FindOrRaise", "FixedStateLag", "Pausing"]


class FindOrRaise:
    """``torrent()`` written once for every adapter: ``find()``, or the adapter's UnknownTorrent.

    An adapter supplies ``find`` and ``_unknown`` (its own wording: which client, which name).
    """

    def torrent(self, any_hash: str) -> TorrentInfo:
        """Like ``find`` but raises UnknownTorrent."""
        info = self.find(any_hash)  # type: ignore[attr-defined]
        if info is None:
            raise self._unknown(any_hash)  # type: ignore[attr-defined]
        return info

    def _unknown(self, any_hash: str) -> UnknownTorrent:
        return UnknownTorrent(f"no torrent {any_hash}")


class FixedStateLag:
    """``forget_state_lag`` for a client whose ``state_lag_s`` no setting of it sets (rTorrent's
    live answers, a test fake's constant): there is nothing read to forget, so it does nothing."""

    def forget_state_lag(self) -> None:
        """Nothing to read again: the lag is fixed."""


@runtime_checkable
class ClientPort(Protocol):
    """One torrent client instance, seen in host paths."""

    name: str
    path_map: PathMap

    # reading ----------------------------------------------------------
    def torrents(
        self,
        hashes: Iterable[str] | None = None,
        category: str | None = None,
        tag: str | None = None,
    ) -> list[TorrentInfo]:
        """All torrents (optionally filtered); ``hashes`` in any spelling."""
        ...

    def find(self, any_hash: str) -> TorrentInfo | None:
        """The torrent a hash names (any case, v1/v2/id), or None."""
        ...

    def torrent(self, any_hash: str) -> TorrentInfo:
        """Like ``find`` but raises UnknownTorrent."""
        ...

    def files(self, any_hash: str) -> list[TorrentFile]:
        """Files, names relative to ``save_path``; ``[]`` without metadata."""
        ...

    # acting -----------------------------------------------------------
    def stop(self, any_hash: str) -> None: ...

    def start(self, any_hash: str, *, forced: bool = False) -> None:
        """Start; ``forced``: outside the client's queue (qBittorrent's force start). A plain
        start is queued, so a torrent that ran forced must be started forced to run again."""
        ...

    def recheck(self, any_hash: str) -> None: ...

    def set_location(self, any_hash: str, host_path: str, *, require_existing: bool = True) -> None:
        """Relocate onto existing data at save path ``host_path`` and recheck (asynchronous)."""
        ...

    def set_download_path(self, any_hash: str, host_path: str) -> None:
        """Set or (``""``) clear the incomplete-data folder."""
        ...

    def set_auto_management(self, any_hash: str, enabled: bool, *, category_save_path: str | None = None) -> None:
        """Turn client-side automatic placement on/off (refused when it could move data)."""
        ...

    def add_tags(self, any_hash: str, tags: Iterable[str]) -> None: ...

    def remove_tags(self, any_hash: str, tags: Iterable[str]) -> None: ...

    # each run ---------------------------------------------------------
    def forget_state_lag(self) -> None:
        """Read ``state_lag_s`` afresh at its next use: the executor calls it as each run starts
        (``FixedStateLag``: a no-op for a client whose lag no setting sets)."""
        ...


@runtime_checkable
class BatchListing(Protocol):
    """Optional: every torrent with its files in as few round trips as the client allows."""

    def torrents_with_files(self) -> list[tuple[TorrentInfo, list[TorrentFile]]]: ...


@runtime_checkable
class Pausing(Protocol):
    """Optional: a client whose records can say ``is_paused`` puts a stopped torrent back so."""

    def pause(self, any_hash: str) -> None: ...


@runtime_checkable
class AtmGuard(Protocol):
    """Optional: a client whose automatic placement moves data when it is turned off (qBittorrent
    gives the torrent its category's path and moves it there unless its data is already there).
    ``set_auto_management(h, False)`` refuses such a torrent; this asks first, acting on nothing:
    why it would move (one line naming the torrent and both paths), or None."""

    def atm_off_refusal(self, any_hash: str) -> str | None: ...


#: Method names of ClientPort, for conformance checks.
PORT_METHODS = (
    "torrents",
    "find",
    "torrent",
    "files",
    "stop",
    "start",
    "recheck",
    "set_location",
    "set_download_path",
    "set_auto_management",
    "add_tags",
    "remove_tags",
    "forget_state_lag",
)
