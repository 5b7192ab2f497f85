"""``plan``/``apply --group``: a group is named by its id or by the start of it (``torrents``
prints 12 characters), in any case; a name no group has, or one that begins two ids, is bad
input (exit 2), never an empty plan that exits 0 (``decide.planning.pick_groups``)."""

from __future__ import annotations

import pytest

from qbhook.decide.plan import GroupPlan, Plan
from qbhook.decide.planning import pick_groups
from qbhook.errors import ExitCode, UnknownGroup


def _plan(*groups: tuple[str, list[str]]) -> Plan:
    return Plan(groups=[GroupPlan(group_id=g, torrents=ts, names=ts, action="stay", reason="") for g, ts in groups])


P = _plan(("abcdef0123456789", ["h1"]), ("abcdef9999999999", ["h2"]), ("0123456789abcdef", ["h3", "h4"]))


def ids(plan: Plan) -> list[str]:
    return [g.group_id for g in plan.groups]


@pytest.mark.parametrize(
    "named, want",
    [
        (["0123456789abcdef"], ["0123456789abcdef"]),
        (["0123456789AB"], ["0123456789abcdef"]),  # the 12 characters `torrents` prints, any case
        ([" abcdef0123 "], ["abcdef0123456789"]),
        (["abcdef01", "0123"], ["abcdef0123456789", "0123456789abcdef"]),
    ],
)
def test_a_group_is_named_by_its_id_or_the_start_of_it(named, want):
    assert ids(pick_groups(P, named)) == sorted(want, key=ids(P).index)


def test_the_groups_of_named_hashes_stay_beside_the_named_groups():
    assert ids(pick_groups(P, ["abcdef01"], hashes=["H4"])) == ["abcdef0123456789", "0123456789abcdef"]


@pytest.mark.parametrize(
    "named, words",
    [
        (["ffff"], "no payload group 'ffff'"),
        (["abcdef"], "'abcdef' begins the ids of 2 payload groups"),
        (["  "], "no payload group"),
    ],
)
def test_a_name_of_no_group_or_of_two_is_bad_input(named, words):
    with pytest.raises(UnknownGroup, match=words) as e:
        pick_groups(P, named)
    assert e.value.exit_code == ExitCode.BAD_INPUT == 2
