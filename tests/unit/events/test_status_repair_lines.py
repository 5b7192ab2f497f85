"""``qbhook status`` and the status page list a failed repair's ``NOT_AS_FOUND`` clause under
"Needs you", and nothing else that happens to hold the words (R45).

The executor writes the clause last in a repair group's reason, as ``"; NOT AS FOUND: ..."``
(``Executor._repair_state_back``). Status once selected with ``LIKE`` (ASCII case-insensitive) and
sliced with ``str.index`` (case-sensitive), over every group: a failed move naming a release
called "Not As Found" crashed both with ValueError, and one naming "NOT AS FOUND" in capitals
showed a repair line for a move."""

from __future__ import annotations

import re

from markupsafe import escape

from qbhook.decide.repair import NOT_AS_FOUND
from qbhook.events.status import needs_person, report
from qbhook.move.journal import Journal
from tests.unit.events.test_status_page import _page, world  # noqa: F401  (fixture)

CLAUSE = f"{NOT_AS_FOUND}: torrent abc is stoppedDL at /pool/x: start it yourself"


def _failed(cat, gid: str, action: str, reason: str) -> None:
    """Group ``gid`` journaled failed with ``reason`` by a run whose plan says it was an ``action``."""
    j = Journal(cat.conn)
    run = j.start_run({"created_at": 0, "groups": [{"action": action, "group_id": gid}]}, "test")
    j.set_group(gid, run, "failed", reason)


def _needs_you(cfg, cat) -> list[str]:
    return [p for p in report(cfg, cat)["problems"] if not p.startswith("server")]


def _page_lines(cfg) -> list[str]:
    html = _page(cfg)
    if "<h2>Needs you</h2>" not in html:
        return []
    return re.findall(r"<li>(.*?)</li>", html[html.index("<h2>Needs you</h2>") : html.index("<h2>Pools</h2>")])


def test_a_failed_move_naming_a_release_called_not_as_found_is_no_repair_line_and_no_crash(world):  # noqa: F811
    cfg, cat = world
    _failed(cat, "g1", "move", "copy failed: /pool/seeding/Not As Found (2019)/a.mkv: No space left on device")
    assert needs_person(cfg, cat.conn, pools={}, server=None, now=0) == []
    assert _needs_you(cfg, cat) == []
    assert _page_lines(cfg) == []


def test_a_failed_move_naming_not_as_found_in_capitals_shows_no_repair_line(world):  # noqa: F811
    # The very clause's words, even its punctuation, in a move's path: not a repair's to say.
    cfg, cat = world
    _failed(cat, "g1", "move", f"copy failed: /pool/seeding/x; {NOT_AS_FOUND}: (2019)/a.mkv: No space left")
    assert _needs_you(cfg, cat) == []
    assert _page_lines(cfg) == []


def test_a_failed_repairs_clause_is_listed_from_the_last_marker_on(world):  # noqa: F811
    # Its failure quotes a path holding the words (any case): the line starts at the clause,
    # the last one, as the executor wrote it.
    cfg, cat = world
    why = f"copy failed: /pool/seeding/Not As Found/x; {NOT_AS_FOUND}: y/a.mkv: No space left; {CLAUSE}"
    _failed(cat, "r1", "repair", why)
    _failed(cat, "g1", "move", "copy failed: /pool/seeding/not as found/a.mkv: No space left")
    assert _needs_you(cfg, cat) == [f"repair r1: {CLAUSE}"]
    assert _page_lines(cfg) == [str(escape(f"repair r1: {CLAUSE}"))]
