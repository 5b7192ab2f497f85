"""Progress lines on a terminal; silence when stderr is not a TTY (cron, systemd, pipes)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, stream=None, enabled: bool | None = None, interval: float = 0.25):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
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
        pad = max(self._width - len(text), 0)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def done(self, text: str) -> None:
        if not self.enabled:
            return
        self._write(text)
        self.stream.write("\n")
        self.stream.flush()
        self._width = 0


class NullProgress(Progress):
    def __init__(self):
        super().__init__(enabled=False)
