"""Properties that must hold for every plan, over random worlds.

The plan's steps are simulated on the world model; afterwards no content may be
lost, no library path may change, and no step may have been unsafe when it ran.
"""

import posixpath
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbhook.config import PolicyConfig
from qbhook.decide import converge
from qbhook.decide.planner import make_plan
from tests.unit.world import LIB, P, S, World

CONTENTS = "ABCDE"


@st.composite
def worlds(draw):
    w = World()
    n_torrents = draw(st.integers(1, 5))
    for t in range(n_torrents):
        pool_root = draw(st.sampled_from([S, P]))
        save = f"{pool_root}/{draw(st.sampled_from(['movies', 'cross-seed/T1', 'cross-seed/T2', 'tv']))}"
        root = f"R{t}"
        rels = []
        for f in range(draw(st.integers(1, 3))):
            rel = f"{root}/f{f}.bin"
            path = posixpath.join(save, rel)
            # reuse an existing same-fs path (a sibling / cross-seed link) or make a new file
            same_fs = [p for p in w.paths if w.fs_of(p) == w.fs_of(path) and (p.startswith(S) or p.startswith(P))]
            if same_fs and draw(st.booleans()):
                w.link(draw(st.sampled_from(sorted(same_fs))), path)
            elif path not in w.paths:
                w.file(path, draw(st.sampled_from(CONTENTS)), size=draw(st.sampled_from([0, 100, 1000])))
            rels.append(rel)
        w.torrent(f"{t:040x}", save, rels, tags=draw(st.sampled_from([{"~noHL"}, set()])))
    # libraries: some hardlinks, some copies on the primary pool
    for _ in range(draw(st.integers(0, 3))):
        stash_paths = sorted(p for p in w.paths if p.startswith(S))
        if stash_paths and draw(st.booleans()):
            w.link(draw(st.sampled_from(stash_paths)), f"{LIB}/L{len(w.paths)}.mkv")
        else:
            w.file(
                f"{LIB}/C{len(w.paths)}.mkv", draw(st.sampled_from(CONTENTS)), size=draw(st.sampled_from([100, 1000]))
            )
    # orphan data on the cold pool
    for _ in range(draw(st.integers(0, 2))):
        w.file(
            f"{P}/orphans/O{len(w.paths)}.bin", draw(st.sampled_from(CONTENTS)), size=draw(st.sampled_from([100, 1000]))
        )
    return w


def _content(w, key):
    i = w.inodes[key]
    return (i["size"], i["content"])


def _simulate(w: World, plan):
    """Apply every actionable group's steps to the world; assert each step is safe when it runs."""
    next_ino = [10**6]
    for g in plan.actionable:
        for s in g.steps:
            a = s.args
            if s.kind == "copy":
                assert a["src"] in w.paths and a["dst"] not in w.paths
                src = w.paths[a["src"]]
                next_ino[0] += 1
                key = (w.fs_of(a["dst"]), next_ino[0])
                w.inodes[key] = {
                    "size": w.inodes[src]["size"],
                    "content": w.inodes[src]["content"],
                    "paths": {a["dst"]},
                    "unknown": 0,
                }
                w.paths[a["dst"]] = key
            elif s.kind == "link":
                assert a["src"] in w.paths, "link from a path that no longer exists"
                assert a["dst"] not in w.paths
                w.link(a["src"], a["dst"])
            elif s.kind == "mkempty":
                w.file(a["dst"], "", size=0)
            elif s.kind == "verify_view":
                for f in a["files"]:
                    assert f["path"] in w.paths, "view incomplete before relocation"
                    assert w.inodes[w.paths[f["path"]]]["size"] == f["size"]
            elif s.kind == "delete":
                key = w.paths[a["path"]]
                keep = w.paths.get(a["keep"]["path"])
                assert keep is not None and keep != key, "delete without another copy"
                assert _content(w, keep) == _content(w, key)
                externals = [p for p in w.inodes[key]["paths"] if not (p.startswith(S) or p.startswith(P))]
                assert not externals, "deleting a link of an inode a library uses"
                w.inodes[key]["paths"].discard(a["path"])
                del w.paths[a["path"]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.booleans())
def test_plans_are_safe(w, require_tag):
    policy = replace(PolicyConfig(), demote_require_tag="~noHL" if require_tag else None)
    snap = w.snapshot()
    plan = make_plan(snap, policy)

    # groups are never split: torrents sharing a path or inode are in one group
    group_of = {h: g.group_id for g in plan.groups for h in g.torrents}
    owners = {}
    for t in snap.torrents:
        for f in t.files:
            for k in (f.path, f.inode):
                if k is not None:
                    if k in owners:
                        assert group_of[owners[k]] == group_of[t.hash]
                    owners[k] = t.hash

    # A converge group does not move (its own property: tests/unit/test_converge_properties.py).
    for g in (g for g in plan.actionable if g.action != "converge"):
        # never move a group that has a link outside the seeding roots
        keys = {f.inode for t in snap.torrents if t.hash in g.torrents for f in t.files}
        assert all(snap.inodes[k].external_links == 0 for k in keys)
        # never copy content that already exists on the target dataset, but for a file incidental
        # to its payload (facts.incidental_below: copied, never linked across payloads), or content held
        # there only by an inode no link may be made onto (converge.reusable: an orphan, a file
        # that may still change)
        tgt = snap.pool(g.target_pool)
        for s in g.steps:
            if s.kind == "copy" and s.args["size"] >= g.incidental_below:
                existing = [
                    k
                    for k in snap.content.get((s.args["size"], s.args["blake3"]), ())
                    if k[0] == tgt.seeding_fsid and converge.reusable(snap, snap.inodes[k])
                ]
                assert not existing, f"copied content already on {tgt.name}"
        # promote never copies beyond the allowance
        if g.action == "promote":
            assert g.bytes_to_copy <= policy.promote_copy_max_bytes

    before_contents = {_content(w, k) for k in w.inodes if w.inodes[k]["paths"]}
    library_before = {p: k for p, k in w.paths.items() if not (p.startswith(S) or p.startswith(P))}
    _simulate(w, plan)
    after_contents = {_content(w, k) for k in w.inodes if w.inodes[k]["paths"]}
    assert before_contents <= after_contents, "a content lost its last copy"
    assert {p: w.paths.get(p) for p in library_before} == library_before, "a library file changed"
