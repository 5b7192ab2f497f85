"""``numbers.said``: the one rule for quoting another program's text in a message (R80)."""

from __future__ import annotations

import pytest

from qbhook.numbers import SAID_CHARS, said


@pytest.mark.parametrize(
    "text, quoted",
    [
        ("Forbidden", "Forbidden"),
        ("  Not\n\tFound \r\n", "Not Found"),
        ("", ""),
        ("a" * SAID_CHARS, "a" * SAID_CHARS),
        ("a" * (SAID_CHARS + 1), "a" * (SAID_CHARS - 1) + "…"),
        ("word " + " " * 10_000 + "more", "word…"),  # past the window looked at: cut, and said so
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
