"""qbhook.paths: the shortcuts that skip ``os.path.normpath`` must answer exactly as it would."""

from __future__ import annotations

import itertools
import os

import pytest

from qbhook.errors import PathMapError
from qbhook.paths import _normpath_keeps, is_within, normalize, refusal, root_holding, within_any

# Every spelling of up to seven tokens over these: slashes, dots, dot-dots, names, a hidden name.
_TOKENS = ["/", ".", "..", "a", ".h"]


def _spellings():
    for n in range(1, 8):
        for t in itertools.product(_TOKENS, repeat=n):
            yield "".join(t)


def test_a_spelling_said_to_be_kept_is_what_normpath_returns():
    kept = [s for s in _spellings() if _normpath_keeps(s)]
    assert kept  # the shortcut is taken for something
    assert all(os.path.normpath(s) == s for s in kept), [s for s in kept if os.path.normpath(s) != s][:5]
    assert not _normpath_keeps("/") and not _normpath_keeps(b"/a") and not _normpath_keeps("a/b")


def test_is_within_answers_as_it_would_with_normpath_on_both_sides():
    def slow(path, root):
        p, r = os.path.normpath(path), os.path.normpath(root)
        return p == r or p.startswith(r + "/") or r == "/"

    roots = ["/", "/a", "/a/", "//a", "/a/./b", "/a/b", "/a/.h", "/a/b/.."]
    paths = [s for s in _spellings() if s.startswith("/")][:3000] + ["/a/b/c", "/a/bc", "/a/.h/x", "/a/b/../c"]
    for root in roots:
        for path in paths:
            assert is_within(path, root) == slow(path, root), (path, root)


def test_shown_makes_what_a_terminal_acts_on_visible_and_keeps_the_rest():
    from qbhook.paths import shown

    assert shown("a\x1b[2Jb\rc\nd\x7f") == "a\\x1b[2Jb\\x0dc\\x0ad\\x7f"
    assert shown("\u202egnp.exe \u2066x\u2069 \x9b") == "\\u202egnp.exe \\u2066x\\u2069 \\u009b"
    assert shown(os.fsdecode(b"ok\xff")) == "ok\\xff"
    assert shown("café 日本 [x]*?") == "café 日本 [x]*?"  # printable text, glob characters: as they are


def test_shown_never_raises_on_a_surrogate_no_file_name_holds():
    """A client's JSON may carry "\\ud800" (json.loads gives a lone surrogate that stands for no
    byte, unlike U+DC80..U+DCFF from os.fsdecode): shown names it, it does not raise."""
    import json

    from qbhook.paths import shown

    name = json.loads('"evil\\ud800 \\udfff\\u001b[2J name"')
    assert shown(name) == "evil\\ud800 \\udfff\\x1b[2J name"
    assert shown(os.fsdecode(b"x\xff") + "\ud800") == "x\\xff\\ud800"


def test_shown_returns_a_printable_str_as_it_is_and_translates_everything_else():
    """The fast path (str.isprintable) must never skip a character the translation escapes:
    every code point below U+3000 (all of _ACTIVE) and the surrogates, alone and inside a name."""
    from qbhook.paths import _ACTIVE, shown

    def slow(t):
        return os.fsencode(t).decode("utf-8", "backslashreplace").translate(_ACTIVE)

    for cp in [*range(0x3000), *range(0xDC80, 0xDD00), 0xFEFF, 0xE000, 0x10FFFF]:
        for text in (chr(cp), f"name {chr(cp)}.mkv"):
            assert shown(text) == slow(text), hex(cp)
    assert max(_ACTIVE) < 0x3000
    assert shown("Show.S01E01 café.mkv") == "Show.S01E01 café.mkv"


def test_within_any_answers_as_is_within_does():
    roots = ("/a/b", "/c/", "//d", "/")
    paths = ["/a/b", "/a/bc", "/a/b/x", "/a/./b/x", "/a/b/../c", "/c", "/c/x", "//d/x", "/d/x", "/e", "//", "/a/b/"]
    for k in range(len(roots)):
        test = within_any(roots[:k])
        for p in paths:
            assert test(p) == any(is_within(p, r) for r in roots[:k]), (roots[:k], p)


def test_root_holding_names_the_first_root_is_within_would():
    # The roots in every order, "/" and "" among them (normpath makes "" "."): the first holder, as given.
    roots = ("/a/b", "/a", "/c/", "//d", "/a/./b/", "", "/")
    paths = [s for s in _spellings() if s.startswith("/")][:2000] + ["/a/b/c", "/a/bc", "/c", "/c/x", "//d/x", "/d/x"]
    paths += ["a", ".", "a/b", "./a"]  # relative spellings: only "" (".") and "/" can hold them
    for k in range(len(roots) + 1):
        for order in (roots[:k], roots[:k][::-1]):
            first = root_holding(order)
            for p in paths:
                assert first(p) == next((r for r in order if is_within(p, r)), None), (order, p)


def test_relink_temp_named_looks_at_the_last_component_only_and_is_the_prefix_fsops_uses():
    from qbhook.move import fsops
    from qbhook.paths import RELINK_PREFIX, relink_temp_named

    assert relink_temp_named("/s/m/.qbhook-relink.1f.2a.a.mkv") and relink_temp_named(".qbhook-relink.a")
    assert not relink_temp_named("/s/.qbhook-relink.d/a.mkv") and not relink_temp_named("/s/x.qbhook-relink.a")
    assert RELINK_PREFIX.encode() == fsops.RELINK_PREFIX


@pytest.mark.parametrize(
    "path",
    ["", "x", "./x", "x/../y", "/", "/a", "/a/", "//a//b", "/a/./b", "/a/..", "/../a", "/a/..b", "/a/b..", "/a\0b"],
)
def test_refusal_is_normalizes_rule_with_its_words(path):
    # Intake words its own 400 from refusal(); the worker refuses by normalize(): one rule.
    try:
        normalize(path)
    except PathMapError as err:
        assert refusal(path) is not None and str(err) == f"{refusal(path)}: {path!r}"
    else:
        assert refusal(path) is None
