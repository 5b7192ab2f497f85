"""Progress lines on a terminal; silence when stderr is not a TTY (cron, systemd, pipes).

A carriage-return line is all a long run needs (one changing line, no dependency); rich or
tqdm would add bars and colours, not information. ``Throughput`` turns bytes done into the
rate and ETA those lines (and the periodic log lines under ``serve``) show.
"""

from __future__ import annotations

import sys
import time

from qbhook.paths import shown


class Progress:
    """Progress lines on ``stream`` (default stderr), shown when it is a terminal (``enabled``
    None) or as ``enabled`` says. A stream that is not there or cannot be written (``2>&-``
    makes sys.stderr None; a terminal gone) shows none, never failing the command it reports on."""

    def __init__(self, stream=None, enabled: bool | None = None, interval: float = 0.25):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream is not None and (_is_terminal(self.stream) if enabled is None else enabled)
        self.interval = interval
        self._last = 0.0
        self._width = 0

    def update(self, count: int, text: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self._write(text)

    def _write(self, text: str) -> None:
        text = shown(text)  # a pool's name: the rule of every human line (the \r is ours)
        pad = max(self._width - len(text), 0)
        self._put("\r" + text + " " * pad)
        self._width = len(text)

    def done(self, text: str) -> None:
        if not self.enabled:
            return
        self._write(text)
        self._put("\n")
        self._width = 0

    def _put(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away, the stream was closed: no more lines
            self.enabled = False


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):  # a closed stream (ValueError), a descriptor gone
        return False


class Throughput:
    """Bytes/s and time left of a run of ``total`` bytes; skipped bytes shrink what is left."""

    def __init__(self, total: int, clock=time.monotonic):
        self.total = total
        self.done = 0
        self.skipped = 0
        self._clock = clock
        self._t0 = clock()

    def add(self, n: int) -> None:
        self.done += n

    def skip(self, n: int) -> None:
        self.skipped += n

    def rate(self) -> float:
        elapsed = self._clock() - self._t0
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the rate so far (None until something was done)."""
        r = self.rate()
        return max(self.total - self.skipped - self.done, 0) / r if r > 0 else None

    def rate_text(self) -> str:
        return human_rate(self.rate())

    def line(self) -> str:
        eta = self.eta()
        return (
            f"{self.done / 2**30:.2f}/{(self.total - self.skipped) / 2**30:.2f} GiB, {self.rate_text()}, "
            f"ETA {'?' if eta is None else human_seconds(eta)}"
        )


def human_rate(bps: float) -> str:
    for unit, scale in (("GiB/s", 2**30), ("MiB/s", 2**20), ("KiB/s", 2**10)):
        if bps >= scale:
            return f"{bps / scale:.1f} {unit}"
    return f"{bps:.0f} B/s"


def human_seconds(s: float) -> str:
    s = round(s)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class NullProgress(Progress):
    def __init__(self):
        super().__init__(enabled=False)
