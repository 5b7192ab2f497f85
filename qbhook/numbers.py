"""Bounded numbers read from files a person hands in: the one home of the rule.

A number from the configuration, a saved plan or a journal row is taken only as a real int
(never a bool, never a float rounded down) or a finite float, inside a range the rest of the
program can hold: SQLite's INTEGER and C timers stop at 2**63-1. Python's int() and float()
raise OverflowError, not ValueError, on infinity (JSON ``1e999``) and on ints past a float's
range (``10**400``), which a caller catching ValueError let through as a traceback. The readers
raise ValueError with a short message; the caller names the field.

A value quoted in such a message (``shown``) is bounded before it is made: the whole repr() of a
small YAML file can be huge (a "billion laughs" tree of aliases, ~800 bytes, stands for 9**8
leaves: minutes and gigabytes to repr, for a message cut to 60 characters).

Text another program answered (an HTTP error body, an XML-RPC fault string) is quoted by the same
rule of bounds (``said``): one line, its start only. A web page's body or a 5 MB error answer
was the whole of an error line, and of every retry's log line.
"""

from __future__ import annotations

import builtins
import math
import re
import reprlib
from typing import Any

MAX_INT = 2**63 - 1  # what SQLite (and every C timer) can hold
MIN_INT = -(2**63)


class _Bounded(reprlib.Repr):
    """reprlib's repr, each part cut before it is made: at most ``maxlevel`` levels of containers
    and a few items of each (a bounded number of values looked at, however deep or shared the
    tree), a string or bytes cut to its first ``maxstring`` characters, not in its middle as
    reprlib does (a message shows the start, as it always did). The caller cuts the result."""

    def __init__(self, limit: int):
        super().__init__()
        self.maxlevel = 3
        items = 8  # 8**3 values at most
        self.maxtuple = self.maxlist = self.maxarray = self.maxdict = items
        self.maxset = self.maxfrozenset = self.maxdeque = items
        self.maxstring = self.maxlong = self.maxother = limit

    def repr_str(self, x, level):
        return builtins.repr(x[: self.maxstring])

    def repr_bytes(self, x, level):
        return builtins.repr(x[: self.maxstring])

    def repr_int(self, x, level):
        return _whole_shown(x)


def _whole_shown(value: int) -> str:
    # repr() of an int past 4300 digits raises; one past 30 is not a number a person reads
    return "a number with more than 30 digits" if abs(value) >= 10**30 else builtins.repr(value)


def shown(value: Any, limit: int = 60) -> str:
    """A value as quoted in a message: repr, shortened, never raising, at a bounded cost whatever
    the value (``_Bounded``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = _whole_shown(value)
    else:
        try:
            text = _Bounded(limit).repr(value)
        except Exception:
            return type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Characters of another program's text a message quotes (``said``); the hook script cuts at 300.
SAID_CHARS = 200


_WORD = re.compile(r"\S+")
SAID_SCAN = 1 << 16  # characters of a remote's answer looked at for its words, at most


def said(value: Any, limit: int = SAID_CHARS) -> str:
    """What another program answered, as a message quotes it: its whitespace (a page's line breaks
    and indentation) collapsed to single spaces, the start of it, the cut marked with "…"; a value
    that is not text as ``shown`` quotes it. The one rule for "a remote's error text, shown". Only
    a bounded window of the text is looked at, whatever its size. Idempotent: a quote quoted
    again is the same quote."""
    if not isinstance(value, str):
        return shown(value, limit)
    # Words, not a prefix: a page's leading run of blank lines or indentation (thousands of
    # characters) would fill a prefix and leave nothing of the cause (R87). The scan stops at
    # the limit's worth of words, or at SAID_SCAN characters of a huge body from its first word.
    first = _WORD.search(value)  # past any run of blanks, however long (R95: 64 KiB of them left "…")
    start = first.start() if first else len(value)
    words, n, cut = [], 0, len(value) - start > SAID_SCAN
    for m in _WORD.finditer(value, start, start + SAID_SCAN):
        words.append(m.group())
        n += len(m.group()) + 1
        if n > limit + 1:
            cut = True
            break
    text = " ".join(words)
    if len(text) <= limit and not cut:
        return text
    return text[: limit - 1].rstrip() + "…"


def whole(value: Any, lo: int = 0, hi: int = MAX_INT) -> int:
    """``value`` if it is an int (not a bool) in [lo, hi]; else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number (got {shown(value)})")
    if value < lo:
        raise ValueError(f"must be at least {shown(lo)} (got {shown(value)})")
    if value > hi:
        raise ValueError(f"must be at most {shown(hi)} (got {shown(value)})")
    return value


def finite(value: Any, lo: float, hi: float) -> float:
    """``value`` as a float if it is a number (not a bool), finite, in [lo, hi]; else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number (got {shown(value)})")
    try:
        v = float(value)
    except OverflowError:  # an int past float's range
        v = math.inf
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"must be a finite number from {lo:g} to {hi:g} (got {shown(value)})")
    return v
