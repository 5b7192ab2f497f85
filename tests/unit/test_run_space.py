"""A run's copies fit on their target pools together, not each group alone (R11 #4): the planner
spends each group's bytes to copy from its pool's free space in plan order (``finish_run``,
across a sweep's chunks too), and the executor checks a whole group's copies against the
destination's free space before it writes a byte."""

from qbhook.config import PolicyConfig
from qbhook.decide.planner import finish_run, make_plan, pool_room
from tests.unit.world import P, S, World


def _world(sizes: list[int], free: int, first: int = 0) -> World:
    w = World()
    w.free["pool"] = free
    for i, size in enumerate(sizes, start=first):
        w.payload(S + f"/m{i}", {f"R{i}/f.mkv": f"X{i}"}, size=size)
        w.torrent(chr(ord("a") + i) * 40, S + f"/m{i}", [f"R{i}/f.mkv"])
    return w


def test_groups_of_one_run_together_never_plan_more_copies_than_the_pool_has_room_for():
    p = make_plan(_world([1000, 1000, 1000], 1500).snapshot(), PolicyConfig())
    moving = [g for g in p.groups if g.action == "demote"]
    assert len(moving) == 1 and sum(g.bytes_to_copy for g in moving) <= 1500
    waiting = [g for g in p.groups if g.action == "skip"]
    assert len(waiting) == 2
    for g in waiting:
        assert g.steps == [] and g.reason.startswith("waits: 1000 B to copy, 500 B left on pool after earlier groups")


def test_a_later_smaller_group_still_fits_in_what_is_left():
    p = make_plan(_world([1000, 1000, 400], 1500).snapshot(), PolicyConfig())
    acts = {g.bytes_to_copy: [] for g in p.groups}
    for g in p.groups:
        acts[g.bytes_to_copy].append(str(g.action))
    assert sorted(acts[1000]) == ["demote", "skip"] and acts[400] == ["demote"]
    assert p.summary()["bytes_to_copy"] == 1400


def test_exactly_the_free_space_fits_as_one_group_alone_does():
    p = make_plan(_world([1000, 500], 1500).snapshot(), PolicyConfig())
    assert sorted(str(g.action) for g in p.groups) == ["demote", "demote"]


def test_a_move_that_only_links_spends_no_room():
    w = _world([1000, 1000], 1000)
    w.payload(P + "/m1", {"R1/f.mkv": "X1"})  # the second payload's content is already on the cold pool
    p = make_plan(w.snapshot(), PolicyConfig())
    assert sorted((str(g.action), g.bytes_to_copy) for g in p.groups) == [("demote", 0), ("demote", 1000)]


def test_a_sweeps_chunks_spend_one_running_total():
    """A sweep plans in chunks (events.worker._plan_in_chunks), each chunk against the free space
    its own snapshot read: the last finish_run over every chunk's groups spends it once."""
    one, two = _world([1000], 1500), _world([1000], 1500, first=1)
    groups = make_plan(one.snapshot(), PolicyConfig()).groups + make_plan(two.snapshot(), PolicyConfig()).groups
    assert [str(g.action) for g in groups] == ["demote", "demote"]  # each chunk alone fits
    finish_run(groups, PolicyConfig(), pool_room(one.snapshot().pools))
    assert [str(g.action) for g in groups] == ["demote", "skip"]
    assert "500 B left on pool" in groups[1].reason


def test_a_pool_missing_from_the_room_given_has_none():
    groups = make_plan(_world([1000], 1500).snapshot(), PolicyConfig()).groups
    finish_run(groups, PolicyConfig(), {})
    assert str(groups[0].action) == "skip" and "0 B left on pool" in groups[0].reason
