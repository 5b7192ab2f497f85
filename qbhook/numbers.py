"""Bounded numbers read from files a person hands in: the one home of the rule.

A number from the configuration, a saved plan or a journal row is taken only as a real int
(never a bool, never a float rounded down) or a finite float, inside a range the rest of the
program can hold: SQLite's INTEGER and C timers stop at 2**63-1. Python's int() and float()
raise OverflowError, not ValueError, on infinity (JSON ``1e999``) and on ints past a float's
range (``10**400``), which a caller catching ValueError let through as a traceback. The readers
raise ValueError with a short message; the caller names the field.
"""

from __future__ import annotations

import math
from typing import Any

MAX_INT = 2**63 - 1  # what SQLite (and every C timer) can hold
MIN_INT = -(2**63)


def shown(value: Any, limit: int = 60) -> str:
    """A value as quoted in a message: repr, shortened, never raising (ints past 4300 digits do)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return "a number with more than 30 digits"
    try:
        text = repr(value)
    except Exception:
        return type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
