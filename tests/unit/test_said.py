"""``numbers.said``: the one rule for quoting another program's text in a message (R80)."""

from __future__ import annotations

import pytest

from qbhook.numbers import SAID_CHARS, SAID_SCAN, said


@pytest.mark.parametrize(
    "text, quoted",
    [
        ("Forbidden", "Forbidden"),
        ("  Not\n\tFound \r\n", "Not Found"),
        ("", ""),
        ("a" * SAID_CHARS, "a" * SAID_CHARS),
        ("a" * (SAID_CHARS + 1), "a" * (SAID_CHARS - 1) + "…"),
        ("word " + " " * 10_000 + "more", "word more"),  # a long run between words is one space (R87)
        ("word " + " " * SAID_SCAN + "more", "word…"),  # past the characters looked at: cut, and said so
    ],
)
def test_said_collapses_whitespace_and_cuts_with_a_marker(text, quoted):
    assert said(text) == quoted
    assert said(quoted) == quoted  # a quote quoted again is the same


def test_said_bounds_a_huge_answer_and_quotes_what_is_not_text():
    assert said("E" * 5_000_000 + "\n" * 1000) == "E" * (SAID_CHARS - 1) + "…"
    assert len(said("x " * 10_000)) == SAID_CHARS
    assert said([[1, 2]], 10) == "[[1, 2]]"
    assert said({"k": "v" * 100}, 20).endswith("...")


def test_a_long_run_of_whitespace_before_the_cause_keeps_the_cause():
    """A page's leading blank lines or indentation filled the window looked at, and the cause was
    quoted as "…" (R87)."""
    assert said(" " * 2000 + "Forbidden") == "Forbidden"
    assert said("\n" * 1700 + "real cause") == "real cause"
    assert said("\t" * 5000 + "x " * 300).startswith("x x x")


def test_a_blank_run_longer_than_the_window_still_keeps_the_cause():
    """R95: the words were looked for in the first SAID_SCAN characters only: 64 KiB of blank
    lines before the cause gave "…" alone."""
    assert said(" " * (SAID_SCAN + 1) + "connection refused by proxy") == "connection refused by proxy"
    assert said("\n" * 70_000 + "cause") == "cause"
