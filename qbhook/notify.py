"""Notifications: what qbhook tells a person while it runs unattended, sent through apprise.

The model:

* Call sites report **events** (a run finished, a group failed or rolled back, a job
  dead-lettered, the mass-delete guard tripped, a cross-seed a relocation could not start
  again, and what a sweep notices: a group blocked too long, a pool low on space, a
  relocated torrent whose ATM is on again; what ``serve`` notices: a client silent too long, its
  worker failing or stalled; and what needs a person: a leftover view that may be the last copy,
  a held link the holding purge keeps).
  ``emit`` never blocks and never raises: it puts the event on a bounded in-memory
  queue; when the queue is full the event is dropped, counted and logged.
* One background thread drains the queue. **Batched and rate-limited**: at most one
  message per ``notify.min_interval``; everything that arrived meanwhile goes into
  that one message, newest facts last. Events of one moment (a run and its failed
  group) are gathered for ``GATHER_S`` first so they arrive together.
* **Every line goes out as ``paths.shown`` makes it** (``compose``): a name that is not UTF-8,
  a control character or a bidi override is an escape, never raw text. A batch that fails on
  its own text (a UnicodeError) is dropped with one log line, never kept as the endpoint's
  failure: it would fail at every retry, with every later event joined to it.
* Sending goes through apprise. A failing, refusing or hanging endpoint only stalls
  this thread (apprise bounds each request with its socket timeouts); it is logged,
  never raised, and never delays the worker or the executor.
* **A batch that fails to send is kept and sent again**, with everything that arrived
  meanwhile, after a backoff (``RETRY_S`` doubling up to ``RETRY_MAX_S``; a flush tries
  at once). The sweep records a condition as told when it emits it, so a batch dropped
  on failure (ntfy restarting) would never be told while the condition lasts. What is
  kept is bounded by ``QUEUE_SIZE`` events too: beyond it, the newest are dropped and
  counted. Each endpoint has its own queue and thread (``Fanout``), so a retry goes only
  where it failed.
* **What is undelivered outlives the process** (``Outbox``): a notifier down when ``serve``
  stops or restarts must not lose "group failed" for good. Every event taken and not yet sent
  (queued, in a send, kept after a failure) is written to a file beside the catalog, one per
  endpoint, when a send fails, when a flush runs out of time and when the notifier closes;
  the next process that takes them sends them first, each line marked as delayed, and the
  file goes once they are delivered (not when read: a crash in between keeps them). At most
  ``QUEUE_SIZE`` per endpoint, the newest kept and the dropped ones counted in the message.
  The file is named by a hash of the URL, never the URL (it carries a token); a corrupt one
  is set aside (``.bad``), one for a URL no longer configured is dropped, both logged.
* **One process at a time sends the outbox** (a flock beside it), and only one that stays or
  acts (``serve``, a run: ``configure(take_kept=True)``): the hook and the read-only commands
  only add their own undelivered events to it, never sending its events twice nor waiting for a
  dead endpoint at exit.
* Process-wide: the CLI calls ``configure(cfg, take_kept)`` when it loads the config; without
  ``notify.urls`` every entry point here is a no-op. A command gives the thread at most
  ``FLUSH_S`` when it ends to deliver what is pending (``flush_pending``); what did not go
  is written to the outbox.
* Conditions alert once when they start, not at every sweep or run: which groups, pools,
  torrents, clients and held links were already reported lives in the catalog's ``state`` table
  (``state.told``); a client's silence and a kept held link are told again once they are gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from qbhook.files import NotReadable, NotReplaceable, own_file, read_regular_file, replace_file
from qbhook.lockfile import POLL_S, NotALockFile, flock_within, open_lock_file
from qbhook.paths import shown
from qbhook.units import freed_bytes, human_bytes

log = logging.getLogger(__name__)

GATHER_S = 2.0  # after a quiet spell, wait this long for the rest of the same moment's events
FLUSH_S = 10.0  # a CLI command waits at most this long at exit for pending notifications
QUEUE_SIZE = 1000  # events waiting to be sent; beyond this they are dropped (and counted)
MAX_LINES = 40  # lines per message; the rest is summarised as a count
MAX_LINE_CHARS = 500  # characters per line of a message, the cut marked with "…"
RETRY_S = 30.0  # a failed batch is sent again after this, doubling at each failure in a row
RETRY_MAX_S = 300.0  # ... up to this
SAVE_WAIT_S = 2.0  # writing the outbox waits at most this long for another process writing it

SEVERITIES = ("info", "warning", "failure")

# kind -> what a person calls it, for titles
KINDS = {
    "run": "run finished",
    "group_failed": "group failed",
    "blocked": "group blocked",
    "dead_letter": "dead-lettered event",
    "guard": "safety guard tripped",
    "sweep_failing": "sweeper failing",
    "sweep_recovered": "sweeper working again",
    "free_space": "pool low on space",
    "atm": "ATM switched back on",
    "left_stopped": "torrent left stopped",
    "client_down": "client not answering",
    "client_back": "client answering again",
    "worker_trouble": "worker not processing events",
    "worker_back": "worker working again",
    "needs_person": "needs you",
    "resolved": "no longer needs you",
    "lost": "notifications lost",
}


@dataclass(frozen=True)
class Event:
    kind: str  # one of KINDS
    text: str  # one line for a person
    severity: str = "info"
    at: float = 0.0  # time.time() when it happened
    delayed: bool = False  # kept in the outbox by an earlier process: its line says when it happened

    @property
    def key(self) -> tuple:
        """What makes two copies (this process's and the outbox's) one event."""
        return (self.kind, self.text, self.severity, self.at)


Sender = Callable[[str, str, str], None]  # (title, body, severity); may raise or hang


def compose(events: list[Event]) -> tuple[str, str, str]:
    """One message (title, body, severity) summarising a batch."""
    counts = Counter(e.kind for e in events)
    parts = [KINDS.get(k, k) + (f" ({n})" if n > 1 else "") for k, n in counts.most_common()]
    severity = max((e.severity for e in events), key=SEVERITIES.index)
    title = "qbhook: " + ", ".join(parts)
    # A run's totals line ("run N ... freed X") is always kept: it comes after the run's group
    # lines, and a run with more than MAX_LINES failed groups lost it, the one line that says what
    # the run did. The other lines fill what is left, in order; the count says what was cut.
    runs = sum(1 for e in events if e.kind == "run")
    room = max(MAX_LINES - runs, 0)
    kept = [e for e in events if e.kind == "run" or (room := room - 1) >= 0][:MAX_LINES]
    lines = [_line(e) for e in kept]
    if len(kept) < len(events):
        lines.append(f"... and {len(events) - len(kept)} more")
    return title, "\n".join(lines), severity


def _line(e: Event) -> str:
    # Every text goes out as ``shown`` makes it, whoever emitted it and whichever outbox (an older
    # qbhook's too) kept it: a name that is not UTF-8 (a lone surrogate) made apprise's form:// and
    # xml:// fail on every send, kept and retried for good; controls and bidi overrides went raw.
    text = shown(e.text)
    text = f"[{e.severity.upper()}] {text}" if e.severity != "info" else text
    if e.delayed:
        text = f"(delayed, from {_when(e.at)}) {text}"
    # One line, bounded: a reason naming thousands of paths was one line of 45,000 characters
    # (a chat service refuses the message, a mail client wraps it into pages).
    return text if len(text) <= MAX_LINE_CHARS else text[: MAX_LINE_CHARS - 1] + "…"


def _when(at: float) -> str:
    """``at`` as local time; never raises (a time the platform cannot show kills no sender thread)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    except (OverflowError, OSError, ValueError, TypeError):
        return "an unknown time"


class _Flush:
    def __init__(self):
        self.done = threading.Event()
        self.sent = True  # set by the sender thread before done: False when a batch is still kept


_STOP = object()


class Notifier:
    """A bounded queue and one sender thread; see the module docstring for the rules."""

    def __init__(
        self,
        send: Sender,
        *,
        min_interval: float,
        gather_s: float = GATHER_S,
        queue_size: int = QUEUE_SIZE,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.monotonic,
        outbox: Outbox | None = None,
        take_kept: bool = True,
    ):
        self._send = send
        self.min_interval = max(float(min_interval), 0.0)
        self.gather_s = max(float(gather_s), 0.0)
        self.retry_s = max(float(retry_s), 0.0)
        self._clock = clock
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._held: list[Event] = []  # events of failed sends, sent again from retry_at (sender thread only)
        self._held_max = queue_size
        self._retry_at = float("-inf")
        self._failures_in_row = 0
        self.dropped = 0
        self.sent = 0
        self.failed = 0
        # Every event taken and not yet sent, oldest first (any thread, under _ulock): what the
        # outbox keeps when the process ends, a send in progress included (it may hang).
        self._undelivered: list[Event] = []
        self._ulock = threading.Lock()
        self._outbox = outbox
        self._outbox_used = False  # the outbox may hold some of ours: a success rewrites it
        if outbox is not None and take_kept:
            # An earlier process's undelivered events: sent first, at once (before the thread runs).
            self._held = outbox.load(queue_size)
            self._undelivered = list(self._held)
            self._outbox_used = bool(self._held)
        self._thread = threading.Thread(target=self._loop, name="qbhook-notify", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ callers (never block)
    def emit(self, event: Event) -> None:
        with self._ulock:  # put and record as one: the sender cannot forget it before it is recorded
            try:
                self._q.put_nowait(event)
            except queue.Full:
                full = True
            else:
                full = False
                self._undelivered.append(event)
        if full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("notify: queue full, %d event(s) dropped so far (is the notifier hanging?)", self.dropped)

    def flush(self, timeout: float) -> bool:
        """Send what is pending now (rate limit or not); wait at most ``timeout``. True: all sent."""
        marker = self._flush_marker(timeout)
        return marker is not None and marker.done.wait(timeout) and marker.sent

    def _flush_marker(self, timeout: float) -> _Flush | None:
        """A flush asked of the sender thread (None: the queue stayed full for ``timeout``)."""
        marker = _Flush()
        try:
            self._q.put(marker, timeout=timeout)
        except queue.Full:
            return None
        return marker

    def close(self, timeout: float = 0.0) -> None:
        try:
            self._q.put(_STOP, timeout=max(timeout, 0.001))
        except queue.Full:
            pass
        else:
            self._thread.join(timeout)
        self.save()
        if self._outbox is not None:
            self._outbox.release()  # this notifier sends nothing more: the next one may take them

    def save(self, delivered: Iterable[Event] = ()) -> None:
        """Write what is undelivered to the outbox (nothing: remove ours from it), ``delivered``
        taken out of it; any thread. A no-op without an outbox, or when it holds none of ours."""
        if self._outbox is None:
            return
        with self._ulock:
            pending = list(self._undelivered)
        if not pending and not self._outbox_used:
            return
        if pending:
            # While the file holds events this process still sends, no other may take them: both
            # would send them (``serve``'s failed batch, taken by a cron ``sweep``).
            self._outbox.take()
        self._outbox.save(pending, delivered)
        self._outbox_used = bool(pending)
        if not pending:
            self._outbox.release()

    def _forget(self, events: Iterable[Event]) -> None:
        gone = {id(e) for e in events}
        with self._ulock:
            self._undelivered = [e for e in self._undelivered if id(e) not in gone]

    # ------------------------------------------------------------ the sender thread
    def _loop(self) -> None:
        # Long on purpose: one loop owns the batch, the gather wait, the rate limit and the retry,
        # which all decide together when the next message goes.
        last_sent = float("-inf")
        while True:
            wait = max(self._retry_at - self._clock(), 0.0) if self._held else None
            try:
                item = self._q.get(timeout=wait)
            except queue.Empty:
                item = None  # time to send again what failed
            if item is _STOP:
                self._lose_held()
                return
            flushes: list[_Flush] = []
            if isinstance(item, _Flush):
                if not self._held:
                    item.done.set()
                    continue
                flushes.append(item)  # a flush tries what failed at once
            batch, self._held = self._held + ([item] if isinstance(item, Event) else []), []
            # New events wait for the backoff too: the endpoint failed a moment ago.
            due = max(self._clock() + self.gather_s, last_sent + self.min_interval, self._retry_at)
            stop = False
            while item is not None and not flushes:
                left = due - self._clock()
                if left <= 0:
                    break
                try:
                    nxt = self._q.get(timeout=left)
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                if isinstance(nxt, _Flush):
                    flushes.append(nxt)
                    break
                batch.append(nxt)
            # Whatever is already waiting joins this message too (a backlog after a slow send).
            while not stop and not flushes:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                elif isinstance(nxt, _Flush):
                    flushes.append(nxt)
                else:
                    batch.append(nxt)
            self._deliver(batch)
            last_sent = self._clock()
            for f in flushes:
                f.sent = not self._held  # a failed send keeps its batch: not all sent
                f.done.set()
            if stop:
                self._lose_held()
                return

    def _deliver(self, batch: list[Event]) -> None:
        try:
            title, body, severity = compose(batch)
        except Exception as e:
            self._unsayable(batch, e)
            return
        try:
            self._send(title, body, severity)
        except UnicodeError as e:
            # The message's own text, not the endpoint: it fails the same way at every retry, and
            # every later event would join the batch that always fails (R35). Dropped, never kept.
            self._unsayable(batch, e)
        except Exception as e:
            self.failed += 1
            self._failures_in_row += 1
            backoff = min(self.retry_s * 2 ** (self._failures_in_row - 1), RETRY_MAX_S)
            self._retry_at = self._clock() + max(backoff, self.min_interval)
            self._hold(batch)
            wait = self._retry_at - self._clock()
            log.warning("notify: sending %d event(s) failed: %s (trying again in %.0f s)", len(batch), e, wait)
            self.save()  # killed before the retry (SIGKILL, a crash), they are still told later
        else:
            self.sent += 1
            self._failures_in_row = 0
            self._retry_at = float("-inf")
            self._forget(batch)
            if self._outbox_used:
                self.save(batch)

    def _unsayable(self, batch: list[Event], e: Exception) -> None:
        """Drop a batch that cannot be told (a bug, or an event no check caught): not the endpoint's
        failure, so sending it again fails again. Out of the outbox too, or every later start would
        choke on it; the thread lives on for the next events."""
        self.dropped += len(batch)
        self._forget(batch)
        log.warning("notify: %d event(s) dropped: they cannot be put in a message (%s)", len(batch), _why(e))
        if self._outbox_used:
            self.save(batch)

    def _hold(self, batch: list[Event]) -> None:
        """Keep a failed batch for the next try; the oldest facts are kept, the newest beyond the bound dropped."""
        keep = batch[: self._held_max]
        if len(batch) > len(keep):
            self._forget(batch[len(keep) :])
            lost = len(batch) - len(keep)
            self.dropped += lost
            log.warning("notify: %d undelivered event(s) dropped, %d kept to send again", lost, len(keep))
        self._held = keep

    def _lose_held(self) -> None:
        if self._held:
            if self._outbox is not None:  # close() writes them to the outbox
                log.warning("notify: %d undelivered event(s) kept for the next start", len(self._held))
            else:
                self.dropped += len(self._held)
                log.warning("notify: %d event(s) never delivered (the notifier kept failing) are lost", len(self._held))
            self._held = []


class Fanout:
    """One ``Notifier`` per endpoint behind a Notifier's interface: a failed batch is kept and
    sent again only to the endpoint that failed it. apprise, given several URLs, says only that
    "at least one" failed: retrying the whole batch would repeat it, every backoff, to each
    endpoint that already had it (a dead secondary endpoint spamming the working one)."""

    def __init__(self, notifiers: Iterable[Notifier]):
        self.notifiers = tuple(notifiers)

    def emit(self, event: Event) -> None:
        for n in self.notifiers:
            n.emit(event)

    def flush(self, timeout: float) -> bool:
        """Every endpoint's flush, asked at once and waited for within one ``timeout``: True when
        each sent all it had (one dead endpoint: False, the others delivered all the same)."""
        deadline = time.monotonic() + timeout
        markers = [n._flush_marker(timeout) for n in self.notifiers]
        ok = True
        for m in markers:
            ok = m is not None and m.done.wait(max(deadline - time.monotonic(), 0.0)) and m.sent and ok
        return ok

    def close(self, timeout: float = 0.0) -> None:
        for n in self.notifiers:
            n.close(timeout)

    def save(self) -> None:
        for n in self.notifiers:
            n.save()

    @property
    def dropped(self) -> int:
        return sum(n.dropped for n in self.notifiers)

    @property
    def sent(self) -> int:
        return sum(n.sent for n in self.notifiers)

    @property
    def failed(self) -> int:
        return sum(n.failed for n in self.notifiers)


# ------------------------------------------------------------------ the outbox


class Outbox:
    """One endpoint's undelivered events, in a file beside the catalog (see the module docstring).

    The file is qbhook's own, written as root in a folder that may not be only root's: written
    to a new name (``mkstemp``: O_EXCL, mode 0600) and renamed over, never through a symbolic
    link or over anything but a regular file (``files.check_replaceable``), read without
    following one. Every failure is one log line, never raised: notifications never stop qbhook.

    Two flocks beside it, each taken without following a symbolic link: ``<outbox>.lock``, held
    by the one process that sends the file's events (it loaded them, or some of its own wait
    there) for as long as they are undelivered, so no other process loads them too and sends
    them twice; and ``<outbox>.write.lock``, held only for a read-merge-write, so that two
    processes saving at once do not lose each other's events."""

    MAX_BYTES = 16 * 2**20  # far above QUEUE_SIZE events of one line each

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()  # the sender thread and the main thread both save
        self._taken: int | None = None  # the fd holding ``<outbox>.lock`` (closing it drops the flock)

    def take(self) -> bool:
        """Hold ``<outbox>.lock`` (already held: True); False at once when another process does."""
        with self._lock:
            if self._taken is None:
                self._taken = _flock(self.path.with_name(self.path.name + ".lock"), 0.0)
            return self._taken is not None

    def release(self) -> None:
        """Let another process take the file's events (this one sends none of them any more)."""
        with self._lock:
            fd, self._taken = self._taken, None
        if fd is not None:
            os.close(fd)

    @staticmethod
    def name_for(catalog: str | os.PathLike, url: str) -> Path:
        """``<catalog>.notify-<hash of the URL>.outbox``: the URL itself carries a token."""
        catalog = Path(catalog)
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        return catalog.with_name(f"{catalog.name}.notify-{digest}.outbox")

    def load(self, limit: int = QUEUE_SIZE) -> list[Event]:
        """The events kept by an earlier process, marked delayed (the newest ``limit``, and one
        line counting any dropped); [] when there are none, the file is unreadable (set aside) or
        another process has taken them (it sends them: ``take``). Events loaded keep the file
        taken until they are delivered (``Notifier.save``) or the process ends."""
        if not self.take():
            log.info("notify: another qbhook process is sending the undelivered events in %s", self.path.name)
            return []
        events, dropped = self._read()
        if len(events) > limit:
            dropped += len(events) - limit
            events = events[len(events) - limit :]
        out = [Event(e.kind, e.text, e.severity, e.at, delayed=True) for e in events]
        if dropped:
            out.insert(
                0,
                Event(
                    "lost",
                    f"{dropped} older notification(s) were dropped while the notifier was down",
                    "warning",
                    time.time(),
                ),
            )
        if out:
            log.warning("notify: %d undelivered event(s) from an earlier run will be sent again", len(out))
        else:
            self.release()
        return out

    def save(self, pending: Iterable[Event], delivered: Iterable[Event] = ()) -> None:
        """Make the file hold ``pending`` and what another process kept there, less ``delivered``:
        at most QUEUE_SIZE, the newest, and the count of the rest; nothing left: no file. Another
        process writing it for longer than SAVE_WAIT_S: nothing is written (logged)."""
        pending = list(pending)
        wlock = _flock(self.path.with_name(self.path.name + ".write.lock"), SAVE_WAIT_S)
        if wlock is None:
            log.warning(
                "notify: %d undelivered event(s) cannot be kept for the next start: %s is busy or unusable",
                len(pending),
                self.path.name,
            )
            return
        try:
            self._merge(pending, list(delivered))
        finally:
            os.close(wlock)

    def _merge(self, pending: list[Event], delivered: list[Event]) -> None:
        gone = {e.key for e in delivered}
        with self._lock:
            kept, dropped = self._read() if os.path.lexists(self.path) else ([], 0)
            if any(e.kind == "lost" for e in delivered):
                dropped = 0  # the count was told
            merged: dict[tuple, Event] = {}
            for e in [*kept, *pending]:
                # the count line is not kept as an event: ``load`` makes it again from ``dropped``
                if e.key not in gone and e.kind != "lost":
                    merged.setdefault(e.key, e)
            events = sorted(merged.values(), key=lambda e: e.at)
            if len(events) > QUEUE_SIZE:
                dropped += len(events) - QUEUE_SIZE
                events = events[len(events) - QUEUE_SIZE :]
            if not events and not dropped:
                self._remove()
                return
            self._write(events, dropped)

    def _read(self) -> tuple[list[Event], int]:
        try:
            # own: another user's file (a folder others can write) must not go out as ours; judged
            # on the file read, not on the name afterwards (a rename between would pass one)
            data = read_regular_file(self.path, self.MAX_BYTES, nofollow=True, own=True)
        except NotReadable as e:
            if os.path.lexists(self.path):
                self._set_aside(str(e))
            return [], 0
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or not isinstance(doc["events"], list):
                raise TypeError("not an outbox")
            events = [_kept_event(d) for d in doc["events"]]
            dropped = doc.get("dropped", 0)
            if not _is_int(dropped, _MAX_DROPPED):
                raise ValueError(f"dropped: {dropped!r}")
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as e:
            self._set_aside(f"{self.path} is not an outbox qbhook wrote ({type(e).__name__})")
            return [], 0
        return events, dropped

    def _set_aside(self, why: str) -> None:
        bad = self.path.with_name(self.path.name + ".bad")
        try:
            os.replace(self.path, bad)
        except OSError as e:
            log.warning("notify: undelivered events lost: %s (and cannot set it aside: %s)", why, e.strerror)
            return
        log.warning("notify: undelivered events lost: %s (set aside as %s)", why, bad.name)

    def _write(self, events: list[Event], dropped: int) -> None:
        doc = {
            "version": 1,
            "dropped": dropped,
            "events": [{"kind": e.kind, "text": e.text, "severity": e.severity, "at": e.at} for e in events],
        }
        try:
            replace_file(self.path, json.dumps(doc), prefix=f".{self.path.name}.", fsync=True)
        except (NotReplaceable, OSError) as e:
            log.warning("notify: %d undelivered event(s) cannot be kept for the next start: %s", len(events), _why(e))

    def _remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("notify: cannot remove the delivered outbox %s: %s", self.path, e.strerror)


# What a kept event may hold: json.loads takes Infinity, NaN and 1e400 (inf), and a time the
# platform cannot show (1e300) made ``compose`` raise in the sender thread. Not "now, give or
# take a day": a box without a clock (no RTC, before NTP) may write 1970 or read it now.
_MAX_AT = 253402300799.0  # 9999-12-31: what time.localtime shows on every platform qbhook runs on
_MAX_DROPPED = 10**12


def _is_int(v, top: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top


def _kept_event(d) -> Event:
    """One event of the outbox file, as qbhook wrote it; ValueError or TypeError for anything else
    (``_read`` sets the file aside)."""
    kind, text, severity, at = d["kind"], d["text"], d["severity"], d["at"]
    if not isinstance(kind, str) or kind not in KINDS or kind == "lost":  # "lost" is never kept: load makes it
        raise ValueError(f"kind: {kind!r:.40}")
    if not isinstance(text, str):
        raise TypeError("text")
    if isinstance(at, bool) or not isinstance(at, int | float) or not 0 <= at <= _MAX_AT:  # NaN fails too
        raise ValueError(f"at: {at!r:.40}")
    return Event(kind, text, severity if severity in SEVERITIES else "warning", float(at))


def _flock(path: Path, wait: float) -> int | None:
    """An fd of ``path`` (made if missing, mode 0600) holding an exclusive flock, waited for at
    most ``wait`` seconds; None when another process holds it that long, or when the name is a
    symbolic link or not a lock file of this user's own (``lockfile``: a regular file with one
    link; logged: the folder may be writable by others). Never written, never deleted."""
    try:
        fd = open_lock_file(path, 0o600, own=True)  # another user's lock would be that user's to hold
    except NotALockFile as e:
        why = "is not a regular file" if not stat.S_ISREG(e.st.st_mode) else own_file(e.st)
        log.warning("notify: refusing the outbox lock %s: it %s", path, why)
        return None
    except OSError as e:
        log.warning("notify: cannot use the outbox lock %s: %s", path, e.strerror)
        return None
    try:
        if flock_within(fd, wait, max_poll=POLL_S):  # a fixed pause: the waits here are short
            return fd
    except OSError as e:
        log.warning("notify: cannot use the outbox lock %s: %s", path, e.strerror)
    os.close(fd)
    return None


def _why(e: Exception) -> str:
    return f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.strerror else str(e)


def drop_stale_outboxes(catalog: str | os.PathLike, urls: Iterable[str]) -> None:
    """Remove the outboxes of URLs no longer in ``notify.urls`` (their events have nowhere to go)."""
    catalog = Path(catalog)
    keep = {Outbox.name_for(catalog, u).name for u in urls}
    try:
        names = [
            n for n in os.listdir(catalog.parent) if n.startswith(f"{catalog.name}.notify-") and n.endswith(".outbox")
        ]
    except OSError:
        return
    for name in names:
        if name not in keep:
            ob = Outbox(catalog.parent / name)
            events, _ = ob._read()
            ob._remove()
            log.warning("notify: %d undelivered event(s) for an endpoint no longer in notify.urls dropped", len(events))


# ------------------------------------------------------------------ apprise


def apprise_sender(urls: Iterable[str], first: int = 1) -> Sender:
    """A Sender over apprise URLs. Raises ValueError naming the entry apprise cannot read (numbered
    from ``first``: its place in ``notify.urls``)."""
    import apprise

    ap = apprise.Apprise()
    # Never echo the URL: it usually carries a token. apprise itself logs "Unsupported URL: <the
    # URL>" at ERROR for each one it cannot read, which printed the secret (and a few lines
    # above qbhook's one-line error): its logger is off while it reads them.
    apprise_log = logging.getLogger("apprise")
    was_disabled, apprise_log.disabled = apprise_log.disabled, True
    try:
        for n, u in enumerate(urls, start=first):
            if not ap.add(u):
                raise ValueError(f"entry {n} is not a URL apprise understands")
    finally:
        apprise_log.disabled = was_disabled
    kinds = {
        "info": apprise.NotifyType.INFO,
        "warning": apprise.NotifyType.WARNING,
        "failure": apprise.NotifyType.FAILURE,
    }

    def send(title: str, body: str, severity: str) -> None:
        # Plain text, said so: bodies carry torrent and file names a tracker chose. Without a
        # format apprise passed them as they are into HTML and Markdown services (an e-mail got a
        # live <a href> and <img>); told TEXT, it escapes them for each service's own format.
        # Text that is not UTF-8 raises here, as the message's fault: apprise would swallow it and
        # report a failed delivery, which the notifier keeps and retries as the endpoint's.
        title.encode("utf-8"), body.encode("utf-8")
        sent = ap.notify(
            title=title,
            body=body,
            body_format=apprise.NotifyFormat.TEXT,
            notify_type=kinds.get(severity, apprise.NotifyType.INFO),
        )
        if not sent:
            raise RuntimeError("apprise reported a failed delivery to at least one URL")

    return send


# ------------------------------------------------------------------ the process-wide notifier

_active: Notifier | Fanout | None = None
_active_key: tuple | None = None
_lock = threading.Lock()


def configure(cfg, take_kept: bool = False) -> Notifier | Fanout | None:
    """Start (or keep) the process's notifier for ``cfg.notify``; None when no URL is configured.

    ``take_kept``: this process sends the outbox's events (``Outbox``) and drops those of URLs no
    longer configured. The CLI passes True for ``serve`` and the commands that act (``apply`` and
    ``converge`` with --yes, ``resume``, ``sweep``): a process that stays, or that notifies a run
    of its own. Never for ``hook`` (qBittorrent runs it for every torrent: it must not wait at exit
    for an endpoint that is down, and it loads the config without the secrets, so URLs from the
    environment look unconfigured) nor for a command that only reads; their own undelivered events
    still go to the outbox."""
    global _active, _active_key
    n = getattr(cfg, "notify", None)
    key = (tuple(n.urls), n.min_interval) if n is not None and n.urls else None
    with _lock:
        if key == _active_key:
            return _active
        if _active is not None:
            _active.close()
        _active, _active_key = None, key
        if key is None:
            return None
        try:
            # A sender per endpoint (``Fanout``): a failed batch is sent again only where it failed.
            sends = [apprise_sender([u], first=i) for i, u in enumerate(n.urls, start=1)]
        except ValueError as e:
            from qbhook.errors import ConfigError

            _active_key = None
            raise ConfigError("notify.urls", str(e), hint="see https://github.com/caronc/apprise/wiki") from None
        catalog = getattr(cfg, "catalog", None)
        if catalog is not None and take_kept:
            drop_stale_outboxes(catalog, n.urls)
        outboxes = [Outbox(Outbox.name_for(catalog, u)) if catalog is not None else None for u in n.urls]
        notifiers = [
            Notifier(send, min_interval=n.min_interval, outbox=ob, take_kept=take_kept)
            for send, ob in zip(sends, outboxes)
        ]
        _active = notifiers[0] if len(notifiers) == 1 else Fanout(notifiers)
        return _active


def active() -> Notifier | Fanout | None:
    return _active


def install(notifier: Notifier | Fanout | None) -> Notifier | Fanout | None:
    """Use ``notifier`` as the process's notifier (embedding, tests); returns the previous one."""
    global _active, _active_key
    with _lock:
        prev, _active, _active_key = _active, notifier, None
    return prev


def flush_pending(timeout: float = FLUSH_S) -> None:
    """Give pending notifications at most ``timeout`` to go out. The CLI calls this when a command
    ends: not from atexit, because apprise needs a thread pool, which cannot start during
    interpreter shutdown. What did not go out is written to the outbox, for the next start."""
    n = _active
    if n is not None and not n.flush(timeout):
        n.save()


def emit(kind: str, text: str, severity: str = "info") -> None:
    """Report an event; a no-op without a configured notifier. Never blocks, never raises."""
    n = _active
    if n is not None:
        # One line per event: error texts carry "\n  hint: ..." for terminals.
        # Shown here too, so the outbox keeps what the message says (compose shows it again: a no-op).
        one_line = "; ".join(x.strip() for x in str(text).splitlines() if x.strip())
        n.emit(Event(kind, shown(one_line), severity, time.time()))


# ------------------------------------------------------------------ reporters (thin call points)


# (notifier, run id, group id or "") -> the line last told of it. serve's RunsGate resumes a run
# it could not finish (a paused group, a rollback that needs attention) up to once a minute: each
# resume would tell the same lines again, for as long as the client stays down (R21).
_told: dict[tuple[int, int | None, str], str] = {}
_TOLD_MAX = 1000


def _tell_once(run_id, group_id: str, kind: str, text: str, severity: str) -> None:
    key = (id(_active), run_id, group_id)
    if _told.get(key) == text:
        return
    _told[key] = text
    while len(_told) > _TOLD_MAX:
        del _told[next(iter(_told))]
    emit(kind, text, severity)


def run_finished(summary, trigger: str = "") -> None:
    """After apply/resume: one line per failed, rolled-back or paused group, one for the run; a
    line already told of the same run in this process (a resume retried) is not told again. A
    run without groups (resume finishing a died quarantine) is told by what it held or failed."""
    if _active is None or summary is None or summary.dry_run:
        return
    if not summary.groups:
        _quarantine_finished(summary, trigger)
        return
    for g in summary.groups:
        if not g.failed:
            continue
        if getattr(g, "paused", False):
            text = f"group {g.group_id} ({g.action}) paused, resumable: {g.reason or g.status}"
            _tell_once(summary.run_id, g.group_id, "group_failed", text, "warning")
            continue
        verb = "rolled back" if g.status == "rolled_back" else "failed"
        text = f"group {g.group_id} ({g.action}) {verb}: {g.reason or g.status}" + (
            " - needs `qbhook resume`" if g.needs_attention else ""
        )
        _tell_once(summary.run_id, g.group_id, "group_failed", text, "failure")
    done, busy = len(summary.groups_done), len(summary.groups_busy)
    # Counted by the run's one rule (``journal.failed_not_paused``), as apply's summary, ``history``
    # and ``status`` count them: a paused group (resume finishes it) is no failure.
    failed, paused = len(summary.groups_failed_not_paused), len(summary.groups_paused)
    text = (
        f"run {summary.run_id}{f' ({trigger})' if trigger else ''} {summary.status}: "
        f"{done} group(s) done, {failed} failed, {f'{paused} paused, ' if paused else ''}{busy} busy; "
        f"copied {human_bytes(summary.bytes_copied)}, "
        f"freed {freed_bytes(summary.bytes_freed, getattr(summary, 'bytes_freed_at_least', False))}, "
        f"{summary.torrents_relocated} torrent(s) relocated"
    )
    _tell_once(summary.run_id, "", "run", text, "failure" if failed else "warning" if paused else "info")


def _quarantine_finished(summary, trigger: str) -> None:
    """A run without groups that held or failed orphans (resume finishing a died quarantine): one
    line, a failure when a step failed. Else nothing happened worth a line (a run with no work)."""
    held, failed = getattr(summary, "orphans_held", None), getattr(summary, "orphans_failed", 0)
    if not held and not failed:
        return
    text = (
        f"run {summary.run_id}{f' ({trigger})' if trigger else ''} {summary.status}: quarantine "
        f"{held or 0} orphan(s) held ({human_bytes(summary.bytes_held)} to free once purged), {failed} failed"
    )
    _tell_once(summary.run_id, "", "run", text, "failure" if failed else "info")


def watch(executor):
    """Report every RunSummary this executor's ``apply``/``resume`` return (the CLI's, the worker's,
    the sweeper's): one wrapping line at the place each executor is made."""
    if _active is None:
        return executor
    apply, resume = executor.apply, executor.resume

    def apply_and_report(*a, **kw):
        s = apply(*a, **kw)
        run_finished(s, kw.get("trigger", "cli"))
        return s

    def resume_and_report(*a, **kw):
        out = resume(*a, **kw)
        for s in out:
            run_finished(s, "resume")
        return out

    executor.apply, executor.resume = apply_and_report, resume_and_report
    return executor


def dead_letter(job, error: str | None) -> None:
    emit(
        "dead_letter",
        f"event job {job.id} ({', '.join(job.kinds) or 'event'}"
        f"{': ' + ', '.join(h[:12] for h in job.hashes[:3]) if job.hashes else ''}) is dead after "
        f"{job.attempts} attempt(s): {error or 'no error recorded'} - retry with `qbhook queue retry {job.id}`",
        "failure",
    )


def guard_tripped(err: Exception) -> Exception:
    """Report a safety guard's refusal; returns it, so the guard reads ``raise guard_tripped(...)``."""
    emit("guard", getattr(err, "message", None) or str(err), "failure")
    return err
