"""Payload grouping: the same components as one map of paths and inodes, built one key kind at a time."""

from __future__ import annotations

import qbhook.decide.grouping as grouping
from qbhook.decide.facts import FileFact, TorrentFact


def _t(h: str, *files: tuple[str, tuple[str, int] | None]) -> TorrentFact:
    ff = tuple(FileFact(n, p.rsplit("/", 1)[1], 1, p, ino) for n, (p, ino) in enumerate(files))
    return TorrentFact(h, "default", h, "stalledUP", 1.0, "/s", ff)


def test_groups_join_through_paths_and_inodes_in_a_chain():
    a = _t("a", ("/s/x", ("fs", 1)))
    b = _t("b", ("/s/x", None), ("/s/y", ("fs", 2)))  # shares a path with a (its inode unknown)
    c = _t("c", ("/s/z", ("fs", 2)))  # shares an inode with b only
    d = _t("d", ("/s/w", ("fs", 3)))
    e = _t("e", ("/s/v", None))
    groups = grouping.payload_groups([e, d, c, b, a])
    assert [[t.hash for t in g] for g in groups] == [["a", "b", "c"], ["d"], ["e"]]


def test_each_pass_maps_one_kind_of_key(monkeypatch):
    """One map of every path *and* inode (1.8M keys at 1M files) was the planner's peak (issue 13)."""
    kinds: list[set[type]] = []
    real = grouping.components

    def spy(n, keyed):
        pairs = list(keyed)
        kinds.append({type(k) for _, k in pairs} - {int})
        return real(n, pairs)

    monkeypatch.setattr(grouping, "components", spy)
    grouping.payload_groups([_t("a", ("/s/x", ("fs", 1))), _t("b", ("/s/y", ("fs", 1)))])
    assert kinds == [{str}, {tuple}]
