"""A sender's bad value is named in its error line by the display rule of every line (paths.shown).

`qbhook hook added $'\\xff'` said `I: not an info hash ...: '\\udcff'`: ``repr`` of the str
Python makes of the byte, where every other message of qbhook shows it as ``\\xff``.
"""

from __future__ import annotations

import os

import pytest

from qbhook.errors import BadRequest, ExitCode
from qbhook.events import _fields
from qbhook.events.parse import parse_qbt_hook
from tests.unit.test_cli_catalog import Env

FF = os.fsdecode(b"\xff")


def test_a_hook_hash_argument_that_is_not_utf8_is_shown_as_escaped_bytes(tmp_path):
    env = Env(tmp_path)
    r = env.run("hook", "added", FF + "\x1b[2J", expect=ExitCode.BAD_INPUT)
    assert r.stderr == "qbhook: I: not an info hash (40 or 64 hex digits): '\\xff\\x1b[2J'\n"
    assert not env.catalog.exists()


@pytest.mark.parametrize(
    ("call", "line"),
    [
        (lambda: _fields.hash_value(FF, "K"), "K: not an info hash (40 or 64 hex digits): '\\xff'"),
        (lambda: _fields.hex_bytes(FF + "0", "N.hex"), "N.hex: not an even number of hex digits: '\\xff0'"),
        (lambda: parse_qbt_hook({"event": FF}), "event: must be 'added' or 'finished', got '\\xff'"),
        (lambda: _fields.hash_value("a" * 100, "K"), f"K: not an info hash (40 or 64 hex digits): '{'a' * 80}...'"),
    ],
)
def test_each_value_named_in_an_error_is_shown_not_repr(call, line):
    with pytest.raises(BadRequest) as e:
        call()
    assert str(e.value) == line
