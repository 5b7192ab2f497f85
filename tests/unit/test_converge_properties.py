"""Convergence over random worlds: whatever the plan relinks, libraries and contents are safe.

The worlds of test_planner_properties (torrents on both pools, cross-seed links, library
links and copies, cold-pool orphans) plus more same-pool duplicates: library copies on
the primary pool's dataset and on a nested dataset, extra seeding copies. The plan's
converge steps are simulated on the world model (a relink moves one name from the
victim inode to the kept inode), then the other groups' steps as before.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.unit.test_planner_properties as base
from qbhook.clients.model import SEEDING_STATES
from qbhook.config import PolicyConfig
from qbhook.decide.plan import Plan
from qbhook.decide.planner import make_plan
from tests.unit.world import LIB, P, S, World

NESTED = "/stash/data/media/nested"


# What makes a torrent one that may still write (converge.settled, priority 0), or write where
# its file list does not say (a download path in a seeding root).
MAY_WRITE = [
    {"state": "downloading", "progress": 0.5},
    {"state": "checkingUP"},
    {"state": "someStateOfQbt6"},
    {"priority": 0},
    {"state": "downloading", "progress": 0.5, "download_path": S + "/dups"},
    {"state": "checkingDL", "download_path": P + "/dups"},
]


@st.composite
def dup_worlds(draw):
    w = draw(base.worlds())
    for n in range(draw(st.integers(0, 4))):
        where = draw(st.sampled_from([LIB, NESTED, S + "/dups", P + "/dups"]))
        w.file(
            posixpath.join(where, f"D{n}.bin"),
            draw(st.sampled_from(base.CONTENTS)),
            size=draw(st.sampled_from([100, 1000])),
        )
    # Now and then one torrent may still write: the duplicates it uses (kept or replaced) wait.
    if draw(st.integers(0, 2)) == 0:
        h, save, rels, kw = w.torrents[draw(st.integers(0, len(w.torrents) - 1))]
        kw.update(draw(st.sampled_from(MAY_WRITE)))
        if "download_path" in kw:  # a file of its name in its download path, equal to something
            for rel in rels:
                if draw(st.booleans()):
                    path = posixpath.join(kw["download_path"], rel)
                    if path not in w.paths:
                        w.file(path, draw(st.sampled_from(base.CONTENTS)), size=draw(st.sampled_from([100, 1000])))
    # Now and then a torrent is saved through a symlinked folder (an alias of its real save folder):
    # the scan and the snapshot never follow it, so its files are placed on no inode.
    if draw(st.booleans()):
        k = draw(st.integers(0, len(w.torrents) - 1))
        h, save, rels, kw = w.torrents[k]
        alias = save + ".alias"
        w.symlinks[alias] = save
        w.torrents[k] = (h, alias, rels, kw)
        if draw(st.booleans()):  # settled, but skipping its files: raising the priority writes them
            kw.setdefault("priority", 0)
    return w


def may_change(w: World) -> set:
    """The inodes a torrent of ``w`` may still write, found from the world itself (not the snapshot):
    those at its files under its save and download paths, when it is not settled or has them at
    priority 0, and every inode of the size of a wanted file it has that is nowhere to be found at its
    save path (an unseen writer: it may be writing that size where qbhook cannot look). No
    convergence may replace one nor link onto one."""
    out = set()
    unseen_sizes = set()
    for _h, save, rels, kw in w.torrents:
        settled = kw.get("progress", 1.0) >= 1 and kw.get("state", "stalledUP") in SEEDING_STATES
        if not settled:
            unseen_sizes.update(
                kw.get("size", 1000)
                for rel in rels
                if posixpath.join(save, rel) not in w.paths
                and not (rel in kw.get("skipped", ()) or kw.get("priority", 1) == 0)
            )
        for base_path in (save, kw.get("download_path", "")):
            for rel in rels if base_path else ():
                skipped = rel in kw.get("skipped", ()) or kw.get("priority", 1) == 0
                at = posixpath.join(base_path, rel)
                key = w.paths.get(at) or w.paths.get(w.resolve(at))  # through a symlinked folder too
                if key is not None and (not settled or skipped):
                    out.add(key)
    return out | {k for k, i in w.inodes.items() if i["size"] in unseen_sizes}


def _inside_seeding(path: str) -> bool:
    return any(path == r or path.startswith(r + "/") for r in (S, P))


def _relink(w: World, a: dict) -> None:
    path = a["path"]
    assert _inside_seeding(path), f"converge replaces {path}, outside the seeding roots"
    old = w.paths[path]
    keep = w.paths.get(a["keep"]["path"])
    assert keep == (a["keep"]["fsid"], a["keep"]["ino"]), "the kept path is not the planned inode"
    assert old != keep and (a["fsid"], a["ino"]) == old
    assert keep[0] == old[0] == w.fs_of(path), "a hardlink across datasets"
    assert base._content(w, keep) == base._content(w, old)
    assert not [p for p in w.inodes[old]["paths"] if not _inside_seeding(p)], "a library's inode was replaced"
    w.inodes[old]["paths"].discard(path)
    w.inodes[keep]["paths"].add(path)
    w.paths[path] = keep


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dup_worlds(), st.booleans())
def test_convergence_never_touches_libraries_contents_or_paths_outside_the_seeding_roots(w, require_tag):
    policy = replace(PolicyConfig(), demote_require_tag="~noHL" if require_tag else None)
    snap = w.snapshot()
    plan = make_plan(snap, policy)
    busy = may_change(w)

    library_before = {p: k for p, k in w.paths.items() if not _inside_seeding(p)}
    library_content = {k: base._content(w, k) for k in library_before.values()}
    contents_before = {base._content(w, k) for k in w.inodes if w.inodes[k]["paths"]}
    freed_planned = 0
    for g in plan.groups:
        if g.action != "converge":
            assert not [s for s in g.steps if s.kind == "converge"]
            continue
        assert g.bytes_to_copy == 0 and g.source_pool == g.target_pool
        assert {s.kind for s in g.steps} == {"converge"}
        victims = {(s.args["fsid"], s.args["ino"]) for s in g.steps}
        kept = {(s.args["keep"]["fsid"], s.args["keep"]["ino"]) for s in g.steps}
        assert not (victims | kept) & busy, "converged an inode a torrent may still write"
        for s in g.steps:
            _relink(w, s.args)
        # every victim inode lost its last link, and the plan counted each once
        assert all(not w.inodes[k]["paths"] for k in victims)
        assert g.bytes_freed == sum(w.inodes[k]["size"] for k in victims)
        freed_planned += g.bytes_freed
    assert plan.summary()["bytes_freed"] >= freed_planned

    base._simulate(w, Plan(groups=[g for g in plan.actionable if g.action != "converge"]))

    assert {p: w.paths.get(p) for p in library_before} == library_before, "a library file changed"
    assert {k: base._content(w, k) for k in library_content} == library_content
    contents_after = {base._content(w, k) for k in w.inodes if w.inodes[k]["paths"]}
    assert contents_before <= contents_after, "a content lost its last copy"


def test_the_property_sees_convergence():
    """The worlds above do produce convergences (a property over worlds that never converge proves nothing)."""
    seen = []

    # Derandomized: over random draws the count ranged 5-46 (5 once in a unit-tier run here, under the
    # bound): the question is whether the generator can make converging worlds, not luck.
    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(dup_worlds())
    def count(w):
        seen.append(any(g.action == "converge" for g in make_plan(w.snapshot(), PolicyConfig()).groups))

    count()
    assert sum(seen) >= 10, sum(seen)  # 24 of 200 with this derandomized draw
