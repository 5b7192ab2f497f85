"""Which process a pid names, told apart from a later process given the same pid.

A pid is handed out again once its process is gone: after a reboot, a daemon often holds the
pid a crashed run recorded, and "the pid is alive" then says nothing of the run. A process is
named by its pid together with its start tick since boot (/proc/<pid>/stat field 22), the
boot (/proc/sys/kernel/random/boot_id) and the pid namespace the pid means: while it lives
no other process has all of them, and a restart or a reboot changes one. Where /proc cannot
say, ``running`` answers None and the caller keeps to the pid alone.
"""

from __future__ import annotations

import os

__all__ = ["boot_id", "identity", "live", "pid_namespace", "process_state", "running"]

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def process_state(pid: int) -> tuple[bool, str | None]:
    """(is a zombie, start tick since boot) of ``pid`` from /proc; (False, None) where
    /proc cannot say. The tick, not a wall-clock time: /proc/stat's btime can move by a
    second between reads, and a live process must never look like another one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # Fields counted after the ")" closing the command name (which may hold spaces):
        # 3 is the state, 22 the start time in clock ticks since boot.
        fields = stat[stat.rindex(b")") + 2 :].split()
        return fields[0] == b"Z", str(int(fields[19]))
    except (OSError, ValueError, IndexError):
        return False, None


def live(pid: int) -> tuple[bool, str | None]:
    """(whether ``pid`` names a process that still runs, its start tick or None): gone or a
    zombie (killed, not yet reaped by its parent) is not live; one owned by another user is."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, None
    except PermissionError:
        pass  # it exists, owned by someone else
    zombie, start = process_state(pid)
    return not zombie, start


def pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        return "-"


def boot_id() -> str | None:
    try:
        with open(_BOOT_ID, encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, ValueError):
        return None


def identity() -> str | None:
    """``boot:start:pidns`` of this process, for ``running`` to judge with its pid later;
    None where /proc cannot say (then only the pid is known)."""
    boot, (_, start), ns = boot_id(), process_state(os.getpid()), pid_namespace()
    if boot is None or start is None or ns == "-":
        return None
    return f"{boot}:{start}:{ns}"


def running(pid: int, ident: str | None) -> bool | None:
    """True/False when this host can tell whether the process ``identity()`` named, with
    ``pid``, still runs; None when it cannot (no identity recorded, another pid namespace,
    /proc unreadable). Only for a process of this host: the caller checks the host."""
    fields = (ident or "").split(":")
    if len(fields) != 3 or fields[2] != pid_namespace():
        return None
    boot = boot_id()
    if boot is None:
        return None
    if fields[0] != boot:
        return False  # recorded in an earlier boot: every process of it is gone
    alive, start = live(pid)
    if not alive:
        return False
    if start is None:
        return None
    return start == fields[1]  # another tick: the pid now names another process
