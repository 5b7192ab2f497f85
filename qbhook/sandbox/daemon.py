"""What every real client the sandbox runs (qBittorrent, rTorrent) shares: stop, kill, restart.

A subclass sets ``proc`` (the Popen) and ``_log`` (its log file) in ``_launch(timeout)`` and
says how to ask the client to exit cleanly (``_ask_to_exit``); stopping falls back to
SIGKILL after ``timeout``, and ``kill`` is the crash the tests simulate.
"""

from __future__ import annotations

import os
import signal
import subprocess


class SupervisedDaemon:
    proc: subprocess.Popen | None = None
    _log = None

    def _launch(self, timeout: float) -> None:
        raise NotImplementedError

    def _ask_to_exit(self) -> None:
        """Default: SIGTERM (qBittorrent saves resume data on it)."""
        self.proc.terminate()

    def stop(self, timeout: float = 20.0) -> None:
        """Clean exit, then SIGKILL if it has not ended within ``timeout``."""
        if self.proc and self.proc.poll() is None:
            self._ask_to_exit()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL, like a crash or an OOM kill: nothing gets saved."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def restart(self, timeout: float = 30.0) -> None:
        """Stop (if running) and start again on the same profile/session and port/socket."""
        self.stop()
        self._launch(timeout)

    def _close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None
