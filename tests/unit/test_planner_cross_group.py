"""Groups of one plan that depend on each other's moves (planner._links_wait_for_deletes, R44)."""

from qbhook.config import PolicyConfig
from qbhook.decide.plan import Action, GroupPlan, Step
from qbhook.decide.planner import _resolve_cross_group, make_plan
from tests.unit.world import LIB, P, S, World

POLICY = PolicyConfig(import_grace=0)
A, B = "a" * 40, "b" * 40


def applied(w: World, g: GroupPlan) -> None:
    """What the executor leaves after ``g``'s steps, in ``w``: copies, links, deletes, relocations."""
    for s in g.steps:
        a = s.args
        if s.kind == "copy":
            old = w.inodes[w.paths[a["src"]]]
            w.file(a["dst"], old["content"], old["size"])
        elif s.kind == "link":
            w.link(a["src"], a["dst"])
        elif s.kind == "delete":
            key = w.paths.pop(a["path"])
            w.inodes[key]["paths"].discard(a["path"])
            if not w.inodes[key]["paths"]:
                del w.inodes[key]
        elif s.kind == "relocate":
            w.torrents = [
                (h, a["to_path"] if h == a["torrent"] else save, rels, kw) for h, save, rels, kw in w.torrents
            ]


def settled(w: World, runs: int = 4) -> list[list[str]]:
    """The actions of each run until a run acts on nothing (each run's moves applied to ``w``)."""
    seen = []
    for _ in range(runs):
        p = make_plan(w.snapshot(), POLICY)
        seen.append(sorted(f"{g.action}:{g.names[0][:1]}" for g in p.groups))
        acting = [g for g in p.groups if g.actionable]
        if not acting:
            return seen
        for g in acting:
            applied(w, g)
    raise AssertionError(f"still acting after {runs} runs: {seen}")


def _mutual_world() -> World:
    """A on /stash holds X seed-only; B on /pool holds X (its own inode) and Y, which a library on
    /stash holds. A would demote onto B's X; B would promote onto A's X and the library's Y."""
    w = World()
    w.payload(S + "/movies", {"A/x.mkv": "X"})
    w.torrent(A, S + "/movies", ["A/x.mkv"])
    w.payload(P + "/tv", {"B/x.mkv": "X", "B/y.mkv": "Y"})
    w.torrent(B, P + "/tv", ["B/x.mkv", "B/y.mkv"], tags=set())
    w.file(LIB + "/Y/y.mkv", "Y")
    return w


def test_two_groups_that_would_delete_each_others_link_source_do_not_wait_forever():
    w = _mutual_world()
    first = make_plan(w.snapshot(), POLICY)
    by = {g.names[0][0]: g for g in first.groups}
    assert by["a"].action == "demote", by["a"].reason
    # Another torrent's seed-only file on /stash is no donor of a promote: it is leaving.
    assert by["b"].action == "stay" and "not on stash" in by["b"].reason
    runs = settled(w)
    assert runs[0] == ["demote:a", "stay:b"]
    assert len(runs) == 2 and not any(a.startswith(("demote", "promote", "skip")) for a in runs[1])


def test_a_promote_onto_only_library_copies_still_goes():
    w = _mutual_world()
    w.link(S + "/movies/A/x.mkv", LIB + "/X/x.mkv")  # now a library keeps A's X: A stays, B promotes onto it
    p = make_plan(w.snapshot(), POLICY)
    by = {g.names[0][0]: g for g in p.groups}
    assert by["a"].action == "stay"
    assert by["b"].action == "promote", by["b"].reason


def _moving(gid: str, links_from: list[str], deletes: list[str]) -> GroupPlan:
    steps: list[Step] = [Step.of("link", {"src": s, "dst": s + ".new"}) for s in links_from]
    steps += [Step.of("delete", {"path": d, "fsid": "zfs:1", "ino": 1, "keep": {"path": d + ".kept"}}) for d in deletes]
    return GroupPlan(gid, [gid], [gid], Action.DEMOTE, "", steps=steps, instances=["default"])


def test_of_a_cycle_of_link_sources_the_first_group_goes_ahead_and_the_other_waits():
    a = _moving("ga", links_from=["/b/x"], deletes=["/a/x"])
    b = _moving("gb", links_from=["/a/x"], deletes=["/b/x"])
    _resolve_cross_group([a, b])
    assert a.action == Action.DEMOTE and a.steps
    assert b.action == Action.SKIP and "waits for group ga" in b.reason


def test_a_group_whose_link_source_another_going_group_deletes_still_waits():
    # c links from what a deletes; a is not in a cycle and goes: c waits, whatever the order.
    for order in ("ac", "ca"):
        groups = {
            "a": _moving("ga", links_from=[], deletes=["/a/x"]),
            "c": _moving("gc", links_from=["/a/x"], deletes=["/c/x"]),
        }
        _resolve_cross_group([groups[k] for k in order])
        assert groups["a"].action == Action.DEMOTE
        assert groups["c"].action == Action.SKIP and "waits for group ga" in groups["c"].reason


def test_a_demote_links_from_the_copy_a_convergence_keeps_not_from_the_one_it_relinks_away():
    # On /pool two inodes of X: V (torrent B, one link, the lower inode number) and K (torrents C
    # and D, two links). B's convergence keeps K and relinks V's name onto it; A's demote picked V
    # (by inode number) and its new link then held V, which the convergence was to free (R44).
    w = World()
    w.payload(P + "/tv", {"B/x.mkv": "X"})
    w.payload(P + "/tv", {"C/x.mkv": "X"})
    w.link(P + "/tv/C/x.mkv", P + "/xseed/D/x.mkv")
    w.torrent(B, P + "/tv", ["B/x.mkv"], tags=set())
    w.torrent("c" * 40, P + "/tv", ["C/x.mkv"], tags=set())
    w.torrent("d" * 40, P + "/xseed", ["D/x.mkv"], tags=set())
    w.payload(S + "/movies", {"A/x.mkv": "X"})
    w.torrent(A, S + "/movies", ["A/x.mkv"])
    p = make_plan(w.snapshot(), POLICY)
    by = {g.torrents[0]: g for g in p.groups}
    assert by[A].action == "demote" and by[B].action == "converge"
    kept = {s.args["keep"]["path"] for s in by[B].steps}
    relinked = {s.args["path"] for s in by[B].steps}
    linked_from = {s.args["src"] for s in by[A].steps if s.kind == "link"}
    assert kept == {P + "/tv/C/x.mkv"} and linked_from == kept and not linked_from & relinked


def _reuse_cycle_world() -> World:
    """X on /pool promotes onto a library's copy on /stash; Y on /stash (seed-only, other content)
    demotes. Both keep Movie/small.nfo (same bytes) at the same relative place: each reuses the
    other's file at its destination in place (no link step) and deletes its own (review R69)."""
    w = World()
    big = 100 * 2**20
    w.file(P + "/m/Movie/big_x.mkv", "BX", big)
    w.file(P + "/m/Movie/small.nfo", "NFO", 1000)
    w.torrent(A, P + "/m", ["Movie/big_x.mkv", "Movie/small.nfo"], tags=set())
    w.file(LIB + "/Movie (2020)/Movie.mkv", "BX", big)
    w.file(S + "/m/Movie/big_y.mkv", "BY", big)
    w.file(S + "/m/Movie/small.nfo", "NFO", 1000)
    w.torrent(B, S + "/m", ["Movie/big_y.mkv", "Movie/small.nfo"])
    return w


def test_a_group_whose_view_reuses_a_file_another_going_group_deletes_waits():
    """The second group's copy ran, then its view failed: the file it reused was gone."""
    p = make_plan(_reuse_cycle_world().snapshot(), POLICY)
    x, y = (next(g for g in p.groups if h in g.torrents) for h in (A, B))
    assert x.action == Action.PROMOTE and y.action == Action.SKIP and not y.steps, y.reason
    assert (
        y.reason == f"waits for group {x.group_id}, which deletes {P}/m/Movie/small.nfo, which this group's view reuses"
    )


def test_a_reuse_cycle_settles():
    """Next run Y shares small.nfo with X, now beside it on /stash: one group, which stays."""
    assert settled(_reuse_cycle_world()) == [["promote:a", "skip:b"], ["stay:a"]]


def test_a_promote_says_what_it_copies_not_what_no_library_holds():
    """small.nfo is on no library, but a file of it is already at the destination (reused): nothing copied."""
    x = next(g for g in make_plan(_reuse_cycle_world().snapshot(), POLICY).groups if A in g.torrents)
    assert x.bytes_to_copy == 0 and x.reason == "a library on stash already holds this content", x.reason
