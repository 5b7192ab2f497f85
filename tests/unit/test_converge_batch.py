"""Same-pool convergence in batches: many groups under one lock and one journal commit each way,
every file still re-checked right before its rename, crash-safe with a batch half done."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from qbhook import dirfd
from qbhook.catalog import fsid as fsid_mod
from qbhook.catalog import store as store_mod
from qbhook.catalog.store import Catalog
from qbhook.decide import plan as plan_mod
from qbhook.decide.plan import GroupPlan, Plan, Step
from qbhook.errors import UnsafeOperation
from qbhook.move import fsops
from qbhook.move.executor import build_executor
from qbhook.move.journal import Journal
from qbhook.move.locks import converge_lock, lock_dir
from tests.helpers import b3, write
from tests.swap import swap
from tests.unit import test_executor as te
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

OLD_NS = (int(time.time()) - 3600) * 10**9  # settled: the scanner caches hashes of files this old


@pytest.fixture
def world(tmpfs, tmp_path):  # noqa: F811
    w = te._make_world(tmpfs, tmp_path)
    yield w
    w.cat.close()


def _cache(w, *paths) -> None:
    """What a scan and the planner's hashing leave: each file catalogued with its hash, valid for its stat."""
    for p in paths:
        iid = w.cat.record_path(p, "stash")
        w.cat.store_hash(iid, bytes.fromhex(b3(open(p, "rb").read())), os.lstat(p))  # noqa: SIM115


def _dups(w, n: int, per_group: int = 1, cache: bool = False) -> tuple[Plan, list[tuple[str, str]]]:
    """``n`` converge groups, each relinking ``per_group`` seeding copies onto one library file each."""
    groups, pairs = [], []
    fsid = w.cat.fsid(w.cat.fs_for_path(w.seed_s))
    for i in range(n):
        steps = []
        for j in range(per_group):
            data = f"payload {i}.{j} ".encode() * (50 + i)
            seed = write(os.path.join(w.seed_s, f"conv/T{i}/f{j}.bin").encode(), data)
            lib = write(os.path.join(str(w.stash), f"media/M{i}/f{j}.bin").encode(), data)
            st, lst = os.lstat(seed), os.lstat(lib)
            args = {
                "path": os.fsdecode(seed),
                "fsid": fsid,
                "ino": st.st_ino,
                "size": len(data),
                "mtime_ns": st.st_mtime_ns,
                "blake3": b3(data),
                "keep": {"path": os.fsdecode(lib), "fsid": fsid, "ino": lst.st_ino, "library": True},
            }
            steps.append(Step.of("converge", args))
            pairs.append((os.fsdecode(seed), os.fsdecode(lib)))
            if cache:
                _cache(w, seed, lib)
        groups.append(GroupPlan(f"g{i}", [f"{i:040x}"], [f"T{i}"], "converge", "dup", "stash", "stash", steps=steps))
    return Plan(groups=groups), pairs


def _linked(seed: str, lib: str) -> bool:
    a, b = os.lstat(seed), os.lstat(lib)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _commits(conn, fn):
    seen = []
    conn.set_trace_callback(lambda sql: seen.append(sql) if sql.strip().upper() == "COMMIT" else None)
    try:
        return fn(), len(seen)
    finally:
        conn.set_trace_callback(None)


def test_a_batch_of_groups_takes_one_lock_and_two_journal_commits_not_five_per_group(world, monkeypatch):
    w = world
    plan, pairs = _dups(w, 12, cache=True)

    def no_reads(*_a, **_k):
        raise AssertionError("a file was read although its catalogued hash is valid for its stat")

    monkeypatch.setattr(fsops.hashing, "hash_fd", no_reads)
    lib_before = {lib: os.lstat(lib) for _s, lib in pairs}
    summary, commits = _commits(w.cat.conn, lambda: w.executor().apply(plan))
    assert summary.status == "done" and sorted(summary.groups_done) == sorted(g.group_id for g in plan.groups)
    assert all(_linked(s, lib) for s, lib in pairs)
    assert summary.bytes_freed == sum(os.lstat(lib).st_size for _s, lib in pairs)
    for lib, st in lib_before.items():  # library files: same inode, size, mtime; only linked from
        now = os.lstat(lib)
        assert (now.st_ino, now.st_size, now.st_mtime_ns, now.st_nlink) == (st.st_ino, st.st_size, st.st_mtime_ns, 2)
    # start_run, the batch's intents, the catalog's record of the relinked paths, the batch's outcomes, finish_run
    # (one step at a time: intent, done, group state twice and a catalog update per group)
    assert commits <= 6, commits
    assert [s.status for s in w.journal.steps(summary.run_id)] == ["done"] * 12
    assert not [p for p in os.listdir(lock_dir(w.cfg)) if p.startswith("group-")]
    # the catalog knows each seeding path as a link of the kept inode, with its hash still valid
    for seed, lib in pairs:
        row = w.cat.inode_by_path(seed)
        assert row is not None and row.ino == os.lstat(lib).st_ino and row.hash is not None


def test_one_kept_inode_for_many_copies_keeps_its_cached_hash_across_the_batch(world, monkeypatch):
    # Each relink changes the kept inode's ctime; the batch carries its hash over (our own link),
    # so the 2nd and 3rd copies are checked against the cached hash, not by reading the library file.
    w = world
    data = b"one library file, three seeding copies " * 40
    lib = write(os.path.join(str(w.stash), "media/L/film.mkv").encode(), data)
    seeds = [write(os.path.join(w.seed_s, f"conv/C{i}/film.mkv").encode(), data) for i in range(3)]
    _cache(w, lib, *seeds)
    fsid = w.cat.fsid(w.cat.fs_for_path(w.seed_s))
    keep = {"path": os.fsdecode(lib), "fsid": fsid, "ino": os.lstat(lib).st_ino, "library": True}
    groups = [
        GroupPlan(
            f"c{i}",
            [f"{i:040x}"],
            [f"C{i}"],
            "converge",
            "dup",
            "stash",
            "stash",
            steps=[
                Step.of(
                    "converge",
                    {
                        "path": os.fsdecode(p),
                        "fsid": fsid,
                        "ino": os.lstat(p).st_ino,
                        "size": len(data),
                        "mtime_ns": os.lstat(p).st_mtime_ns,
                        "blake3": b3(data),
                        "keep": keep,
                    },
                )
            ],
        )
        for i, p in enumerate(seeds)
    ]
    reads = []
    real = fsops.hashing.hash_fd
    monkeypatch.setattr(fsops.hashing, "hash_fd", lambda fd, *a, **k: reads.append(fd) or real(fd, *a, **k))
    summary = w.executor().apply(Plan(groups=groups))
    assert summary.status == "done" and summary.bytes_freed == 3 * len(data)
    assert all(_linked(os.fsdecode(p), os.fsdecode(lib)) for p in seeds) and os.lstat(lib).st_nlink == 4
    assert reads == []
    row = w.cat.inode_by_path(lib)
    assert row.hash is not None and row.ctime_ns == os.lstat(lib).st_ctime_ns  # valid for the live stat


def test_a_failed_step_fails_its_own_group_and_the_rest_of_the_batch_converges(world):
    w = world
    plan, pairs = _dups(w, 4, per_group=2)
    bad = plan.groups[1]
    s0 = bad.steps[0]
    bad.steps[0] = Step.of("converge", {**s0.args, "keep": {**s0.args["keep"], "ino": s0.keep.ino + 10_000}})
    summary = w.executor().apply(plan)
    assert summary.status == "failed" and summary.exit_code == 5
    assert set(summary.groups_failed) == {"g1"} and "no longer the planned file" in summary.groups_failed["g1"]
    assert sorted(summary.groups_done) == ["g0", "g2", "g3"]
    assert [_linked(s, lib) for s, lib in pairs] == [True, True, False, False, True, True, True, True]
    rows = {r.seq: (r.status, r.error) for r in w.journal.steps(summary.run_id)}
    assert rows[2][0] == "failed" and rows[3] == ("failed", "not tried: an earlier step of its group failed")
    assert w.journal.group_status("g1")[0] == "failed" and w.journal.group_status("g2")[0] == "done"


def test_a_busy_converge_lock_leaves_the_batch_untouched(world):
    w = world
    plan, pairs = _dups(w, 3)
    with converge_lock(w.cfg, "stash"):
        summary = w.executor(group_lock_wait=0).apply(plan)
    assert [g.status for g in summary.groups] == ["busy"] * 3 and summary.exit_code == 75
    assert not any(_linked(s, lib) for s, lib in pairs)
    assert w.journal.steps(summary.run_id) == []


def test_a_batch_opens_each_folder_once(world, monkeypatch):
    w = world
    plan, pairs = _dups(w, 1, per_group=30)  # 30 seeding files in one folder, 30 library files in another
    subs = []
    real = fsops.Dir.sub

    def counting(self, name, **kw):
        subs.append(name)
        return real(self, name, **kw)

    monkeypatch.setattr(fsops.Dir, "sub", counting)
    assert w.executor().apply(plan).status == "done"
    assert all(_linked(s, lib) for s, lib in pairs)
    # seed root -> conv -> T0, and stash root -> media -> M0: each opened once, not once per file
    assert sorted(subs) == sorted([b"conv", b"T0", b"media", b"M0"]), subs


def test_a_seeding_root_swapped_after_the_last_relink_still_lets_the_batch_sync_and_close(world, tmp_path):
    """The sync flushes the filesystem through a folder the batch verified, never by walking to the
    root again: a root swapped for a symlink after every relink succeeded would refuse that walk,
    leaving the journal open and the catalog unrecorded for work that was all done."""
    w = world
    plan, pairs = _dups(w, 3)
    outside = tmp_path / "outside"
    outside.mkdir()
    relinked: list[str] = []

    def hook(point, gid, _seq, _step):
        if point == "after_act":
            relinked.append(gid)
            if len(relinked) == 3:  # the batch's last relink
                swap(Path(w.seed_s), outside)

    summary = w.executor(hook=hook).apply(plan)
    assert os.path.islink(w.seed_s) and len(relinked) == 3
    assert summary.status == "done" and sorted(summary.groups_done) == ["g0", "g1", "g2"]
    assert [s.status for s in w.journal.steps(summary.run_id)] == ["done"] * 3
    assert w.journal.unfinished_runs() == []
    assert os.listdir(outside) == []  # nothing made or moved there
    for seed, lib in pairs:  # the catalog recorded each relinked name as its kept inode's
        row = w.cat.inode_by_path(seed)
        assert row is not None and row.ino == os.lstat(lib).st_ino


# --------------------------------------------------------------------------- crash with a batch half done


@pytest.mark.parametrize(
    "seq,point,relinked_before",
    [
        (0, "after_intend", 0),  # the whole batch intended, nothing relinked
        (1, "after_act", 2),  # killed right after the 2nd relink (its rename done, not journaled)
        (2, "mid_act", 2),  # the 3rd file has its temporary link, not yet renamed over
    ],
)
def test_sigkill_inside_a_batch_then_resume_ends_converged(world, seq, point, relinked_before):
    w = world
    plan, pairs = _dups(w, 4)
    libs = {lib: (os.lstat(lib), open(lib, "rb").read()) for _s, lib in pairs}  # noqa: SIM115
    pid = os.fork()
    if pid == 0:  # the child applies with its own catalog connection and dies at the point, like SIGKILL
        try:

            def hook(p, _gid, s, _step):
                if p == point and s == seq:
                    os._exit(9)

            cat = Catalog.open(w.cfg.catalog, marker_roots=[w.stash, w.pool])
            build_executor(w.cfg, cat, {"qbt": w.qbt}, Journal(cat.conn), hook=hook).apply(plan)
        finally:
            os._exit(1)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9

    (run,) = w.journal.unfinished_runs()
    assert [r.status for r in w.journal.steps(run.id)] == ["intended"] * 4  # the batch's intents came first
    assert [_linked(s, lib) for s, lib in pairs] == [i < relinked_before for i in range(4)]
    if point == "mid_act":
        left = [n for n in os.listdir(os.path.dirname(pairs[2][0])) if n.startswith(".qbhook-relink.")]
        assert len(left) == 1

    (res,) = w.executor().resume()
    assert res.status == "done" and sorted(res.groups_done) == ["g0", "g1", "g2", "g3"]
    assert all(_linked(s, lib) for s, lib in pairs)
    assert [r.status for r in w.journal.steps(run.id)] == ["done"] * 4
    assert [r.result["status"] for r in w.journal.steps(run.id)] == ["already"] * relinked_before + ["relinked"] * (
        4 - relinked_before
    )
    for lib, (st, data) in libs.items():
        now = os.lstat(lib)
        assert (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
        assert open(lib, "rb").read() == data  # noqa: SIM115
    for s, _lib in pairs:
        assert not [n for n in os.listdir(os.path.dirname(s)) if n.startswith(".qbhook-relink.")]
    assert w.executor().resume() == []


# --------------------------------------------------------------------------- content changed, size and mtime restored


def _planned_library_copy(w):
    """The real scanner and planner: two cross-seeded links of a movie, an *arr copy of it in the library.
    Every file is old, so the catalog caches the hashes the plan rests on."""
    movie = te.FILES[0][1]
    lib = write(w.stash / "media/Movie (2020)/Movie (2020).mkv", movie)
    for dirpath, _d, files in os.walk(w.stash):
        for f in files:
            os.utime(os.path.join(dirpath, f), ns=(OLD_NS, OLD_NS))
    plan = te.settled_plan(w)
    (g,) = plan.groups
    assert g.action == "converge", g.reason
    return plan, g, str(lib), movie


@pytest.mark.parametrize("end", ["seeding copy", "library copy"])
def test_content_changed_with_size_and_mtime_restored_is_not_replaced(world, end):
    w = world
    plan, g, lib, movie = _planned_library_copy(w)
    seed = g.steps[0].path
    target = seed if end == "seeding copy" else lib
    row = w.cat.inode_by_path(target)
    assert row is not None and row.hash is not None  # a cached hash exists: only the ctime can tell it is stale
    before = os.lstat(target)
    other = bytes(b ^ 0x5A for b in movie)  # same size, other bytes
    with open(target, "r+b") as f:
        f.write(other)
    stamp = f"@{before.st_mtime_ns // 10**9}.{before.st_mtime_ns % 10**9:09d}"
    subprocess.run(["touch", "-d", stamp, target], check=True)
    after = os.lstat(target)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    summary = w.executor().apply(plan)
    (o,) = summary.groups
    want = "no longer has the planned content" if end == "seeding copy" else "does not have the planned content"
    assert o.status == "failed" and want in o.reason, o.reason
    assert os.lstat(seed).st_ino == before.st_ino if end == "seeding copy" else os.lstat(seed).st_ino != before.st_ino
    assert not _linked(seed, lib)  # not replaced
    assert open(target, "rb").read() == other  # noqa: SIM115
    assert os.lstat(lib).st_nlink == 1


# --------------------------------------------------------------------------- what the speed-ups must not change


def test_a_converge_steps_spelled_out_args_are_the_generic_field_walk(world):
    # Converge.args is written out for speed; it must stay exactly Step.args's field walk (a new
    # field forgotten there would silently drop out of the journal and of saved plans).
    plan, _pairs = _dups(world, 3, per_group=2)
    for s in (s for g in plan.groups for s in g.steps):
        generic = {f.name: plan_mod._plain(getattr(s, f.name)) for f in fields(s)}
        assert s.args == generic
        assert Step.of("converge", s.to_json()["args"]) == s
    lone = Step.of("converge", {**plan.groups[0].steps[0].args, "mtime_ns": None})
    assert lone.args == {f.name: plan_mod._plain(getattr(lone, f.name)) for f in fields(lone)}


def test_the_batch_prefetch_reads_the_same_rows_as_the_one_by_one_lookup(world):
    # Relinker.prefetch reads rows without their paths (Catalog.inodes_by_key); each row, hash
    # validity included, must be what inode_by_key answers for it, and unknown keys stay absent.
    w = world
    _plan, pairs = _dups(w, 3, cache=True)
    stale = pairs[0][0]
    os.utime(stale, ns=(OLD_NS, OLD_NS))  # mtime and ctime move: its cached hash no longer applies
    w.cat.record_path(stale, "stash")  # once the catalog has seen the new stat
    fs = w.cat.fs_for_path(w.seed_s)
    keys = [(fs, os.lstat(p).st_ino) for pair in pairs for p in pair] + [(fs, 10**12)]
    got = w.cat.inodes_by_key(keys)
    assert set(got) == set(keys[:-1])
    for fs_, ino in keys[:-1]:
        assert got[(fs_, ino)] == w.cat.inode_by_key(fs_, ino)
    assert got[(fs, os.lstat(stale).st_ino)].hash is None  # a hash is valid only for the stat it was taken at
    assert sum(r.hash is not None for r in got.values()) == len(keys) - 2


def test_a_batch_prefetch_places_paths_without_os_fsencode_and_shares_each_fsid(world, monkeypatch):
    # A batch prefetches 10,000 relinks (20,000 paths, 20,000 rows): each path is placed under its
    # root without os.fsencode's Python frame, and a filesystem's fsid is read once for all its
    # rows, not made again per row by a join. The rows themselves: as one by one (the test above).
    w = world
    plan, _pairs = _dups(w, 30, cache=True)
    items = [(s.path, s.ino, s.keep.path, s.keep.ino) for g in plan.groups for s in g.steps]
    named = {p for i in items for p in (i[0], i[2])}
    encoded = []
    real = os.fsencode
    monkeypatch.setattr(os, "fsencode", lambda p: encoded.append(p) or real(p))
    ex = w.executor()
    with fsops.Relinker(ex.seeding_roots, ex.roots, w.cat) as rl:
        rl.prefetch(items)
        monkeypatch.setattr(os, "fsencode", real)
        rows = [r for r in rl._rows.values() if r is not None]
        assert len(rows) == 60 and [p for p in encoded if p in named] == []
        assert len({id(r.fsid) for r in rows}) == 1
        # Each placed as _split_under places it (relink reads these entries).
        for path, *_rest in items:
            root, parts = fsops._split_under(path, ex.seeding_roots)
            assert rl._split_seed(path) == (root, tuple(parts))


def test_a_relink_looks_seven_times_one_pin_and_five_lstats_and_never_resolves_a_path_again(world, monkeypatch):
    # Every check stays: the keeper (the fstat of its pin, ``dirfd.Pin``, opened once and held for
    # the whole relink: the temporary link is made of that inode, R8, and the hash is carried only
    # across it, R10), the victim, the keeper again right before the link (an fstat of the same
    # pin, no second open), the fresh temporary link, both once more right before the rename; and
    # one look after it, which the
    # catalog records and the batch's later relinks onto the same inode reuse. What went: a look
    # for a crashed attempt's temporary name (the link itself finds it taken), a second look at
    # the keeper after the rename, and the catalog's lstat of each relinked path by name (on a
    # FUSE dataset a round trip per folder).
    w = world
    plan, pairs = _dups(w, 6, cache=True)
    looks, by_path = [], []
    real, real_pin, real_look = fsops.Dir.lstat, dirfd._pin, dirfd.Pin.look
    monkeypatch.setattr(fsops.Dir, "lstat", lambda self, name: looks.append(("lstat", name)) or real(self, name))
    # every O_PATH pin, whoever opens it (``Pin.at``, ``pin_file``), and every fstat of one
    # The filesystem-id lookup pins its marker again when the mount table changed (other tests
    # mounting on this machine); that look is the catalog's, not the relink's: not counted.
    marker = os.fsencode(fsid_mod.MARKER_NAME)

    def pin(name, d):
        if os.path.basename(os.fsencode(name)) != marker:
            looks.append(("pin", name))
        return real_pin(name, d)

    monkeypatch.setattr(dirfd, "_pin", pin)
    monkeypatch.setattr(dirfd.Pin, "look", lambda self: looks.append(("fstat", None)) or real_look(self))
    real_lstat = store_mod.os.lstat

    def path_lstat(p, *a, **k):
        by_path.append(p)
        return real_lstat(p, *a, **k)

    monkeypatch.setattr(store_mod.os, "lstat", path_lstat)
    assert w.executor().apply(plan).status == "done"
    monkeypatch.undo()
    assert all(_linked(s, lib) for s, lib in pairs)
    assert len(looks) == 7 * len(pairs), looks
    kinds = [k for k, _n in looks]
    assert (kinds.count("pin"), kinds.count("fstat"), kinds.count("lstat")) == (len(pairs), len(pairs), 5 * len(pairs))
    assert not {os.fsencode(s) for s, _lib in pairs} & {os.fsencode(p) for p in by_path}
    for seed, lib in pairs:  # what the catalog recorded is the live stat, hash carried over
        row, st = w.cat.inode_by_path(seed), os.lstat(seed)
        assert (row.ino, row.nlink, row.ctime_ns) == (os.lstat(lib).st_ino, st.st_nlink, st.st_ctime_ns)
        assert row.hash is not None


def test_a_leftover_temporary_link_beside_an_already_converged_name_is_removed(world):
    w = world
    plan, pairs = _dups(w, 2)
    seed, lib = pairs[0]
    vino = os.lstat(seed).st_ino  # the planned victim: its inode names the temporary link
    assert w.executor().apply(plan).status == "done"
    tmp = fsops._relink_name(os.fsencode(os.path.basename(seed)), vino)
    leftover = os.path.join(os.path.dirname(seed), os.fsdecode(tmp))
    os.link(lib, leftover)  # what a crash between an attempt's link and its rename, then a rename by hand, leaves
    again = w.executor().apply(plan)
    assert again.status == "done" and again.bytes_freed == 0
    assert not os.path.exists(leftover) and _linked(seed, lib) and os.lstat(lib).st_nlink == 2


def _split_reference(path, roots):
    """fsops._split_under before its fast path: every path through normpath."""
    p = os.fsencode(path)
    if not p.startswith(b"/") or b".." in p.split(b"/"):
        return None
    norm = b"/" + os.path.normpath(p).lstrip(b"/")
    best = None
    for rb in (b"/" + os.path.normpath(os.fsencode(r)).lstrip(b"/") for r in roots):
        if (norm == rb or norm.startswith(rb.rstrip(b"/") + b"/")) and (best is None or len(rb) > len(best)):
            best = rb
    if best is None:
        return None
    return best, [c for c in norm[len(best.rstrip(b"/")) :].split(b"/") if c]


@settings(max_examples=400, deadline=None)
@given(
    hst.lists(hst.sampled_from(["", ".", "..", "a", "b", "seed", "s.", ".q", "x/"]), max_size=7),
    hst.sampled_from(["/", "//", "/./"]),
    hst.sampled_from(["", "/", "/."]),
    hst.sampled_from([("/a", "/a/seed", "/b/", "//b/s."), ("/a/seed", "/", "/a"), ("/b/s.", "/b/", "/a/", "/a")]),
)
def test_placing_a_path_under_the_roots_answers_like_normpath_did(parts, lead, tail, roots):
    # _split_under skips normpath for a path that is already normal and tries the roots longest
    # first; it must decide exactly as before (the same root, the same components, the same
    # refusals) for every path and every order of the roots, "/" and a root given twice included.
    path = lead + "/".join(parts) + tail
    want = _split_reference(path, roots)
    try:
        got = fsops._split_under(path, roots)
    except UnsafeOperation:
        got = None
    assert got == want, path


_JSON = hst.recursive(
    hst.none()
    | hst.booleans()
    | hst.integers(min_value=-(2**80), max_value=2**80)
    | hst.floats()
    | hst.text(max_size=8),
    lambda inner: hst.lists(inner, max_size=4) | hst.dictionaries(hst.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(_JSON)
def test_the_journal_writes_exactly_what_json_dumps_sorted_writes(doc):
    # The journal's encoder is built once (journal._sorted_encoder); old and new journals must
    # hold the same text for the same document, NaN, infinities, -0.0, big ints and escapes included.
    from qbhook.move import journal as journal_mod

    assert journal_mod._dumps_sorted.__qualname__ == "_sorted_encoder.<locals>.encode"  # the fast path is in use
    assert journal_mod._dumps_sorted(doc) == json.dumps(doc, sort_keys=True)


def test_the_journal_encoder_refuses_what_json_refuses():
    from qbhook.move import journal as journal_mod

    with pytest.raises(TypeError):
        journal_mod._dumps_sorted({"a": object()})
    with pytest.raises(TypeError):
        journal_mod._dumps_sorted({1: 2, "a": 3})  # unorderable keys, as with sort_keys=True


_TEXT = hst.text(max_size=12)  # any str: quotes, backslashes, controls, non-ASCII, surrogates


@settings(max_examples=150, deadline=None)
@given(
    _TEXT,
    _TEXT,
    hst.integers(min_value=0, max_value=2**64),
    hst.integers(min_value=0, max_value=2**63),
    hst.none() | hst.integers(min_value=-(2**63), max_value=2**63),
    _TEXT,
    _TEXT,
    _TEXT,
    hst.integers(min_value=0, max_value=2**64),
    hst.booleans(),
)
def test_a_converge_steps_journal_text_is_the_general_one(path, fsid, ino, size, mtime, b3hex, kpath, kfsid, kino, lib):
    # journal._args_json spells a converge step's args out (10,000 rows per 10,000 relinks); it
    # must write exactly what the general path writes, so a replay reads either the same way.
    from qbhook.move import journal as journal_mod

    assert journal_mod._spelled  # the spelled-out path is the one in use for these classes
    step = plan_mod.Converge(path, fsid, ino, size, mtime, b3hex, plan_mod.ConvergeKeep(kpath, kfsid, kino, lib))
    want = journal_mod._dumps_sorted(step.to_json()["args"])
    assert journal_mod._args_json(step) == want
    odd = plan_mod.Converge(path, fsid, True, size, mtime, b3hex, step.keep)  # a bool where an int goes
    assert journal_mod._args_json(odd) == journal_mod._dumps_sorted(odd.to_json()["args"])


_STEP = hst.builds(
    plan_mod.Converge,
    _TEXT,
    _TEXT,
    hst.integers(min_value=0, max_value=2**64),
    hst.integers(min_value=0, max_value=2**63),
    hst.none() | hst.integers(min_value=0, max_value=2**63),
    _TEXT,
    hst.builds(plan_mod.ConvergeKeep, _TEXT, _TEXT, hst.integers(min_value=0, max_value=2**64), hst.booleans()),
)
_GROUP = hst.builds(
    GroupPlan,
    _TEXT,
    hst.lists(_TEXT, max_size=3),
    hst.lists(_TEXT, max_size=3),
    hst.sampled_from(list(plan_mod.Action)),
    _TEXT,
    hst.none() | _TEXT,
    hst.none() | _TEXT,
    hst.integers(min_value=0, max_value=2**63),
    hst.integers(min_value=0, max_value=2**63),
    hst.integers(min_value=0, max_value=2**63),
    hst.lists(_TEXT, max_size=2),
    hst.lists(_TEXT, max_size=2),
    hst.lists(_STEP | hst.builds(plan_mod.PruneDirs, _TEXT, _TEXT), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(hst.lists(_GROUP, max_size=4), hst.floats(min_value=0, max_value=2e9))
def test_a_plans_journal_text_is_its_to_dict_encoded(groups, created):
    # journal.plan_json writes converge groups straight from their fields (a run journals one per
    # duplicate); resume reads the text back with Plan.from_dict, so it must be the general text.
    from qbhook.move import journal as journal_mod

    plan = Plan(groups=groups, created_at=created)
    assert journal_mod.plan_json(plan) == journal_mod._dumps_sorted(plan.to_dict())


@settings(max_examples=150, deadline=None)
@given(
    hst.sampled_from(["relinked", "already", "absent"]) | _TEXT | hst.none() | hst.integers(),
    hst.integers(min_value=-(2**70), max_value=2**70) | hst.booleans() | _TEXT,
    hst.integers(min_value=0, max_value=2**64) | hst.booleans() | hst.none(),
    hst.dictionaries(_TEXT, hst.integers() | _TEXT, max_size=2),
)
def test_a_relinks_journaled_result_is_the_general_text(status, freed, nlink, extra):
    # journal._result_json spells a relink's result out (one per relink); it must write exactly
    # what the general path writes, any odd type or extra key included.
    from qbhook.move import journal as journal_mod

    result = {"status": status, "bytes_freed": freed, "nlink_before": nlink}
    assert journal_mod._result_json(result) == journal_mod._dumps_sorted(result)
    more = {**extra, **result} if extra.keys() - result.keys() else {**result, "held_at": "x"}
    assert journal_mod._result_json(more) == journal_mod._dumps_sorted(more)


def test_a_converge_intent_journals_the_args_text_the_plan_wrote_once(monkeypatch):
    # start_run spells each converge step's args out in the plan; the batch's intents journal the
    # same text again, taken from there (a convergence wrote it twice per step, 10,000 per 10,000).
    from qbhook.catalog.db import connect
    from qbhook.move import journal as journal_mod

    j = Journal(Catalog(connect(":memory:")).conn)
    keep = plan_mod.ConvergeKeep("/lib/a", "fs1", 7, True)
    steps = [plan_mod.Converge(f"/seed/\u00e9{i}\n", "fs1", 10 + i, 5, None, "ab" * 32, keep) for i in range(3)]
    plan = Plan(
        groups=[
            GroupPlan(f"g{i}", [], [], plan_mod.Action.CONVERGE, "dup", "p", "p", steps=[s])
            for i, s in enumerate(steps)
        ]
    )
    run = j.start_run(plan)
    spelled = []
    real = journal_mod._converge_args
    monkeypatch.setattr(journal_mod, "_converge_args", lambda s: spelled.append(s) or real(s))
    twin = plan_mod.Converge(*(getattr(steps[0], f.name) for f in fields(plan_mod.Converge)))  # equal, not the plan's
    ids = j.intend_batch(run, [(0, "g0", steps[0]), (1, "g1", steps[1]), (2, "g2", steps[2]), (3, "g0", twin)], ["g0"])
    assert spelled == [twin]  # the plan's own steps: their text taken from the plan's
    for seq, step in enumerate([*steps, twin]):
        (text,) = j.conn.execute("SELECT args FROM steps WHERE id=?", (ids[seq],)).fetchone()
        assert text == journal_mod._dumps_sorted(step.to_json()["args"])
    j.finish_run(run, "done", {})
    assert j._texts == {}  # nothing held past its run


def test_a_runs_end_writes_a_few_pages_not_its_plan_again(tmp_path):
    # SQLite writes a row again whole on any change, and a run's row changes at its end (its
    # status): with the plan in it, that was the plan's text through the WAL a second time (8.7 MB
    # per 10,000 converge groups, ~0.04 CPU-s). The plan reads back the same.
    from qbhook.catalog.db import connect

    conn = connect(tmp_path / "c.sqlite")
    try:
        j = Journal(conn)
        plan = {"groups": [{"group_id": f"g{i}", "reason": "r" * 200} for i in range(1000)]}  # ~230 KB
        run = j.start_run(plan)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        j.finish_run(run, "done", {"groups": 1000})
        _busy, frames, _moved = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert frames < 8, f"{frames} pages written to end the run"
        got = j.run(run)
        assert (got.status, got.plan, got.summary) == ("done", plan, {"groups": 1000})
        assert [r.id for r in j.runs()] == [run] and j.unfinished_runs() == []
    finally:
        conn.close()
