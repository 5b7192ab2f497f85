"""Path text rules, one home each: the canonical spelling of a path and "is it inside that root".

Both are lexical on purpose. They decide where a path *claims* to be; whether the
filesystem agrees (no symlinked or swapped folder on the way) is ``move.fsops``' job,
on verified directory descriptors, never on these strings.
"""

from __future__ import annotations

import codecs
import functools
import logging
import os
from collections.abc import Callable

from qbhook.errors import PathMapError, shown_surrogate

__all__ = [
    "RELINK_PREFIX",
    "SHOWN_ERRORS",
    "ShownFormatter",
    "is_within",
    "normalize",
    "refusal",
    "relink_temp_named",
    "root_holding",
    "shown",
    "shown_or_none",
]

# How the temporary link of a same-pool relink is named (``move.fsops._relink_name``). One home for
# every end: ``move.fsops`` never relinks or keeps a name with it, ``decide.converge`` never plans
# one as a victim or the copy to keep (a catalog from before the scans skipped them may hold one),
# and neither the scan's walks nor the orphans walk list a regular file so named. A folder so
# named is not qbhook's: it is walked like any other.
RELINK_PREFIX = ".qbhook-relink."


def relink_temp_named(path: str) -> bool:
    """Is ``path``'s last component named like qbhook's temporary relink link (``RELINK_PREFIX``)?"""
    return path.startswith(RELINK_PREFIX, path.rfind("/") + 1)


def normalize(path: str) -> str:
    """Absolute, ``..``-free POSIX path in canonical spelling.

    Collapses ``//`` and ``.`` but never resolves ``..``: lexically resolving it
    can point somewhere a symlink would not, and no path qbhook handles
    legitimately contains one.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise PathMapError(f"not an absolute path: {path!r}")
    if "//" not in path and "/." not in path and path[-1] != "/" and "\0" not in path:
        return path  # already canonical (the common case: called on every path of a snapshot)
    why = refusal(path)
    if why is not None:
        raise PathMapError(f"{why}: {path!r}")
    return "/" + "/".join(p for p in path.split("/") if p not in ("", "."))


def refusal(path: str) -> str | None:
    """Why ``normalize`` refuses ``path`` (``"not an absolute path"``, ...), or None if it takes it.

    The rule itself, for a caller that words its own error: event intake refuses, naming the
    sender's field, the paths the worker's ``normalize`` would refuse after the 202.
    """
    if not path.startswith("/"):
        return "not an absolute path"
    if "\0" in path:
        return "path contains a NUL byte"
    if ".." in path.split("/"):
        return "path contains a '..' component"
    return None


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Lexical containment on whole path components (``/a/bc`` is not inside ``/a/b``)."""
    p, r = os.fspath(path), os.fspath(root)
    # normpath (a Python function around the C one) is most of this function's cost, and a
    # snapshot and its plan ask this for every torrent and file: a spelling it would return
    # unchanged skips it (``_normpath_keeps``).
    if not _normpath_keeps(p):
        p = os.path.normpath(p)
    if not _normpath_keeps(r):
        r = os.path.normpath(r)
    return p == r or p.startswith(r + "/") or r == "/"


@functools.lru_cache(maxsize=16)
def within_any(roots: tuple[str, ...]) -> Callable[[str], bool]:
    """``is_within(p, r)`` for any ``r`` of ``roots``, as one test for many paths: each root is
    normpath-ed once here instead of once per (path, root) (a snapshot asks for every inode)."""
    pairs = tuple((r, "/" if r == "/" else r + "/") for r in map(os.path.normpath, roots))

    def test(p: str) -> bool:
        if not _normpath_keeps(p):
            p = os.path.normpath(p)
        return any(p == r or p.startswith(pre) for r, pre in pairs)

    return test


@functools.lru_cache(maxsize=16)
def root_holding(roots: tuple[str, ...]) -> Callable[[str], str | None]:
    """``next((r for r in roots if is_within(p, r)), None)`` as one function of ``p``: the first of
    ``roots`` (as given) that holds ``p``, each root normpath-ed once here instead of once per call
    (a snapshot asks which pool holds each of its files, the planner which seeding root holds
    each torrent). ``is_within``'s rule exactly, root ``/`` included: tests/unit/test_paths.py."""
    norm = tuple((r, n, n + "/", n == "/") for r in roots for n in [r if _normpath_keeps(r) else os.path.normpath(r)])

    def first(p: str) -> str | None:
        if not _normpath_keeps(p):
            p = os.path.normpath(p)
        for r, n, pre, top in norm:
            if p == n or p.startswith(pre) or top:
                return r
        return None

    return first


def _normpath_keeps(p) -> bool:
    """True only when ``os.path.normpath(p) == p``: an absolute str with no empty component
    (``//``, a trailing ``/``) and no component that starts with a dot (so no ``.`` or ``..``;
    ``/.hidden`` is sent to normpath too, which keeps it). Leaves ``/`` itself to normpath."""
    return isinstance(p, str) and p[:1] == "/" and p[-1] != "/" and "//" not in p and "/." not in p


# Characters a name may hold that a terminal acts on instead of showing: C0 controls (ESC starts
# escape sequences that can rewrite the screen or the title, CR and BS overwrite what was
# printed, a newline forges a line), DEL, C1 controls (0x9b is CSI on 8-bit terminals) and the
# bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069), which show a name
# reversed. Anyone who can write in a pool can name a file so: shown prints them as escapes.
_ACTIVE = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)},
    **{c: f"\\u{c:04x}" for c in (*range(0x80, 0xA0), 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))},
}


def shown(text) -> str:
    """A path, or text naming paths, as text anything can store and print: bytes that are not
    UTF-8 (held as lone surrogates by ``os.fsdecode``) appear as ``\\xNN``, never raise, and
    characters a terminal would act on (_ACTIVE: controls, bidirectional overrides) as
    ``\\xNN`` / ``\\uNNNN``.

    The one rule for every human-readable line qbhook prints or stores (a decision's reason, a
    step's error): SQLite and a UTF-8 terminal refuse lone surrogates, so a file a user named
    with other bytes made a sweep, an explain or a journal write a UnicodeEncodeError; and a
    name holding ESC sequences printed raw would run them in the terminal of whoever reads it.
    """
    # Every _ACTIVE character is one str.isprintable refuses (categories Cc and Cf), and so is a
    # lone surrogate (Cs): a printable str has nothing to escape and is returned as it is (in C,
    # 12x faster than the translation below; every human line the CLI prints comes here).
    if isinstance(text, str) and text.isprintable():
        return text
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        # A surrogate outside U+DC80..U+DCFF stands for no byte: no file name holds one, but a
        # client's JSON may ("\ud800" is valid JSON): it is shown as \uNNNN, never raised.
        return "".join(map(shown_surrogate, text)).translate(_ACTIVE)
    # backslashreplace spells each byte that is not UTF-8 as shown_surrogate does (\xNN), in C.
    return raw.decode("utf-8", "backslashreplace").translate(_ACTIVE)


def shown_or_none(text: str | None) -> str | None:
    return None if text is None else shown(text)


class ShownFormatter(logging.Formatter):
    """Log lines by the same rule as printed ones: a name a log line carries (a torrent's, a
    path, a client's answer) reaches stderr or the journal as ``shown`` makes it, so a newline
    in it cannot forge a record and ESC cannot reach a terminal. A traceback keeps its line
    breaks; each of its lines is shown."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return shown(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return "\n".join(shown(line) for line in super().formatException(ei).split("\n"))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(shown(line) for line in super().formatStack(stack_info).split("\n"))


def _shown_errors(err: UnicodeError) -> tuple[str, int]:
    """``shown`` as a codec error handler: a lone surrogate written to a text stream becomes
    ``\\xNN`` (the byte it stands for), the same text ``shown`` gives; anything else still fails."""
    if isinstance(err, UnicodeEncodeError):
        bad = err.object[err.start : err.end]
        if all(0xDC80 <= ord(c) <= 0xDCFF for c in bad):
            return "".join(map(shown_surrogate, bad)), err.end
    raise err


#: The error handler the CLI sets on stdout and stderr (qbhook.cli.app.main): a line nobody
#: passed through ``shown`` (a step, a reason, a path read back from the journal) still prints.
SHOWN_ERRORS = "qbhook-shown"
codecs.register_error(SHOWN_ERRORS, _shown_errors)
