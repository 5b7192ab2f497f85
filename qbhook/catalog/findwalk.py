"""GNU find as the rescan's walker: its command, and its process started as early as the roots are known.

Model: a rescan (catalog/scan.py) has GNU find stat every file of a pool in a process of its
own, writing one line per file into a memory file, while this process does the rest. A find
depends only on the pool's root and the ignored names, both in the config, so a command may
start it right after reading the config (start_finds), before it imports the scanner or opens
the catalog: on two cores the walk then overlaps the command's own start-up. The scanner
decides afterwards whether it uses each run (a rescan does; a first scan or FIND_WALK off stops
it unread); whoever started runs closes every one of them on every path out (FindRun.close:
kill if still running, reap, release the memory files).

This module imports only what starting a process needs (no sqlite3, no BLAKE3, no logging
until something fails), because everything it imports is paid before the walk starts.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from qbhook.config import PoolConfig, ScanConfig

FIND = next((p for p in ("/usr/bin/find", "/bin/find") if os.access(p, os.X_OK)), None)
# What find prints for each regular file (catalog.store.Catalog rebuilds the same line from a
# row: Catalog.find_line and its SQL twin). Device, inode, size, mtime and ctime to the
# nanosecond, link count, permission bits (octal), uid, gid (numbers: no name lookup), path, NUL.
# The format is part of the command a persisted rescan memo is bound to (scan._cmd_digest): a memo
# of another format is never used.
FIND_LINE_FORMAT = b"%D %i %s %T@ %C@ %n %m %U %G %p\\0"
_GLOB_SPECIAL = re.compile(rb"([*?\\[\]\\])")
_ENV = {"LC_ALL": "C", "PATH": "/usr/bin:/bin"}


def pool_root(path: str | os.PathLike | bytes) -> bytes:
    """The root a scan walks for ``path`` (a pool's or a subtree's), as find is given it."""
    return os.fsencode(os.path.normpath(os.fsdecode(path)))


def find_cmd(root: bytes, ignore: set[bytes]) -> list[bytes]:
    # -P: nothing is followed, the root included (a scan refuses a root reached through a
    # symlink: scan._walk_root_identity checks it before and after find). -mindepth 1: tests
    # apply below the root only, as the Python walk's name filter.
    #
    # Ignored names are tested on folders only, and pruned there; a regular file with an
    # ignored name is printed and dropped in Python (scan._ignored_lines), as is one named like
    # qbhook's temporary relink links (paths.RELINK_PREFIX). Each -name costs find
    # an fnmatch per entry: three of them on every file were ~0.2 CPU-s per 220,000
    # paths (a bare find: ~0.45 CPU-s). `-type d` reads the entry's d_type (no stat), but find's
    # optimiser moves name tests in front of it, so the empty `-printf ''` between them (an
    # action that writes nothing) is there to keep that order: find never reorders across an
    # action. Folders and files are the only two kinds the walk keeps: symlinks and special
    # files with an ignored name are neither descended nor printed, as before.
    assert FIND is not None
    cmd = [os.fsencode(FIND), b"-P", root, b"-mindepth", b"1"]
    if ignore:
        names: list[bytes] = []
        for n in sorted(ignore):
            names += [b"-o", b"-name", _GLOB_SPECIAL.sub(rb"\\\1", n)]
        cmd += [b"-type", b"d", b"-printf", b"", b"(", *names[1:], b")", b"-prune", b"-o"]
    return cmd + [b"-type", b"f", b"-printf", FIND_LINE_FORMAT]


@dataclass
class FindRun:
    """A find started on one root, writing into memory files; close() stops and releases it."""

    proc: subprocess.Popen
    cmd: list[bytes]
    out: int
    err: int
    ends: tuple[bytes, ...] = ()  # b"/NAME" of each ignored name: see scan._ignored_lines
    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.proc.returncode is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.out)
        os.close(self.err)


def start_find(pool: str, root: bytes, ignore: set[bytes]) -> FindRun | None:
    """find on ``root`` in its own process, or None (then the caller walks in Python)."""
    # A memory file holds find's output (~210 bytes per path: shared memory, not this process's
    # heap; read back 4 MiB at a time). Not a pipe: a pipe would need this process to keep
    # draining it, and every read would wait for the GIL held by the SQLite load.
    if FIND is None:
        return None
    try:
        out = os.memfd_create("qbhook-scan", os.MFD_CLOEXEC)
    except (AttributeError, OSError) as e:
        _note("scan of %s: no memory file for find's output (%s); walking in Python", pool, e)
        return None
    try:
        err = os.memfd_create("qbhook-scan-err", os.MFD_CLOEXEC)
    except OSError:
        os.close(out)
        return None
    cmd = find_cmd(root, ignore)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=_ENV, cwd="/")
    except OSError as e:
        _note("scan of %s: cannot run %s (%s); walking in Python", pool, FIND, e)
        os.close(out)
        os.close(err)
        return None
    # A name holding "/" is never an entry's name (the Python walk compares entry names).
    ends = tuple(b"/" + n for n in sorted(ignore) if n and b"/" not in n)
    return FindRun(proc, cmd, out, err, ends)


def start_finds(
    pools: Iterable[PoolConfig], scan_cfg: ScanConfig, wanted: Callable[[str], bool] | None = None
) -> dict[str, FindRun]:
    """pool name -> a find started on that pool's root, for each pool whose root is a folder
    (and, if given, ``wanted(name)``). All are started before any is read, so their walks
    overlap each other and whatever the caller does next. On an error here the runs already
    started are closed before it propagates; afterwards closing them is the caller's job."""
    ignore = ignore_set(scan_cfg)
    runs: dict[str, FindRun] = {}
    try:
        for pool in pools:
            root = pool_root(pool.path)
            if pool.name in runs:
                continue  # a pool named twice: its second scan starts its own find (scan._scan)
            if FIND and os.path.isdir(root) and (wanted is None or wanted(pool.name)):
                run = start_find(pool.name, root, ignore)
                if run is not None:
                    runs[pool.name] = run
    except BaseException:
        close_all(runs)
        raise
    return runs


def close_all(runs: dict[str, FindRun]) -> None:
    for run in runs.values():
        run.close()  # each run is closed once: close() again does nothing


def ignore_set(scan_cfg: ScanConfig) -> set[bytes]:
    return {os.fsencode(n) for n in scan_cfg.ignore_names}


def _note(msg: str, *args) -> None:
    import logging  # here: ~6 ms of import the usual case (find started) never needs

    logging.getLogger("qbhook.catalog.scan").info(msg, *args)
