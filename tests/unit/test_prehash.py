"""No pre-hash when there is nothing to compare against (issue 11, part 5).

A demotion whose source files have no file of their size on the target dataset is planned
without hashing them: the copy hashes each byte as it copies it (one read), that hash is
journaled and cached, and every later step checks against it as it would against a planned
hash. Real files on two tmpfs pools, the real snapshot builder, planner and executor, and the
simulated qBittorrent of test_executor.
"""

from __future__ import annotations

import os
import time

import pytest

from qbhook.catalog import hashing
from qbhook.catalog.scan import scan_pool
from qbhook.decide import planner, snapshot
from qbhook.decide.plan import Copy, Delete, Link, Plan, Step
from qbhook.errors import VerificationFailed
from qbhook.move import fsops
from tests.unit.test_executor import (  # noqa: F401  (world, tmpfs: fixtures)
    FILES,
    H1,
    H2,
    Crash,
    World,
    assert_demoted,
    b3,
    tmpfs,
    world,
)

PAYLOAD = sum(len(d) for _r, d in FILES)  # each inode once: the cross-seed shares them


def age(path: str, seconds: float = 3600) -> None:
    """Settled: its last write long ago (a fresh file is neither pre-planned without a hash by a
    snapshot with a settle time, nor cached by the copy)."""
    t = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(t, t))


def sources(w: World) -> list[str]:
    return [os.path.join(w.save(h, "stash"), rel) for h in (H1, H2) for rel, _d in FILES]


def planned(w: World, *, scan: bool = True):
    """(snapshot, plan) of the world as the CLI would make them (scan, snapshot, planner)."""
    for t in w.qbt.t.values():
        t.tags.add("~noHL")
        t.download_path = ""  # the planner blocks stale download paths
    for p in sources(w):
        age(p)
    if scan:
        for p in w.cfg.pools:
            scan_pool(w.cat, p, w.cfg.scan)
    snap = snapshot.build_snapshot(w.cfg, w.cat, [w.qbt])
    plan = planner.make_plan(snap, w.cfg.policy)
    assert [g.action for g in plan.groups] == ["demote"], [(g.action, g.reason) for g in plan.groups]
    return snap, plan


class ReadMeter:
    """Bytes read from files through os.readv (the copy's and every hash's read path; the mmap
    workers are switched off so that hashing reads through it too)."""

    def __init__(self, monkeypatch):
        self.bytes = 0
        real = os.readv

        def readv(fd, buffers):
            n = real(fd, buffers)
            self.bytes += n
            return n

        monkeypatch.setattr(os, "readv", readv)
        monkeypatch.setattr(hashing, "MMAP_WORKERS", False)


def steps_of(plan: Plan, kind: type[Step]) -> list:
    return [s for s in plan.groups[0].steps if isinstance(s, kind)]


def rewrite_keeping_mtime(path: str, data: bytes) -> None:
    """Same size, other bytes, mtime put back: only the ctime (and the content) tells."""
    st = os.lstat(path)
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.lstat(path).st_size == st.st_size and os.lstat(path).st_mtime_ns == st.st_mtime_ns


# --------------------------------------------------------------------------- no candidate: one read


def test_no_same_size_candidate_reads_each_source_byte_once_and_ends_verified(world, monkeypatch):  # noqa: F811
    meter = ReadMeter(monkeypatch)
    snap, plan = planned(world)
    assert meter.bytes == 0  # nothing was hashed to plan it
    big, small = (os.path.join(world.save(H1, "stash"), FILES[i][0]) for i in (0, 1))
    keys = {snap.inodes[k].key for k in snap.hash_at_copy}
    assert keys == {(world.cat.fsid(world.cat.fs_for_path(p)), os.lstat(p).st_ino) for p in (big, small)}
    copies = steps_of(plan, Copy)
    assert sorted(c.src for c in copies) == sorted([big, small]) and all(c.blake3 is None for c in copies)
    # The cross-seed sibling's files are links of the copies, planned without a hash too.
    assert [(s.blake3, s.src in {c.dst for c in copies}) for s in steps_of(plan, Link)] == [(None, True)] * 2
    assert all(d.blake3 is None for d in steps_of(plan, Delete) if d.size)

    summary = world.executor().apply(plan)
    assert summary.status == "done", summary.groups_failed
    assert_demoted(world, hand_plan=False)
    assert meter.bytes == PAYLOAD  # each source byte read once: by the copy, nothing before or after
    # The copy's hash is journaled with the copy and was what every later step checked.
    rows = world.journal.steps(summary.run_id)
    by_dst = {r.args["dst"]: r.result["blake3"] for r in rows if r.kind == "copy"}
    assert by_dst == {c.dst: b3(d) for c, d in zip(sorted(copies, key=lambda c: c.src), (FILES[0][1], FILES[1][1]))}
    assert all(r.result.get("source_hash_cached") for r in rows if r.kind == "copy")


def test_with_a_same_size_file_on_the_target_each_source_is_read_twice(world, monkeypatch):  # noqa: F811
    """The comparison point (and the rule's other half): a file of the same size on the target
    could be a donor, so the source is hashed first (one read), then copied (a second read)."""
    for rel, data in FILES[:2]:
        decoy = os.path.join(world.seed_p, "elsewhere", rel)
        os.makedirs(os.path.dirname(decoy), exist_ok=True)
        with open(decoy, "wb") as f:
            f.write(bytes(len(data)))  # same size, other content
        age(decoy)
    meter = ReadMeter(monkeypatch)
    snap, plan = planned(world)
    assert snap.hash_at_copy == frozenset()
    assert all(c.blake3 is not None for c in steps_of(plan, Copy))
    summary = world.executor().apply(plan)
    assert summary.status == "done", summary.groups_failed
    # sources and decoys hashed to plan (2x), then the copy reads the sources again (1x)
    assert meter.bytes == 3 * PAYLOAD


# --------------------------------------------------------------------------- a candidate: hash first, reuse


def test_same_size_candidate_is_prehashed_and_reused(world, monkeypatch):  # noqa: F811
    big_rel, big = FILES[0]
    donor = os.path.join(world.seed_p, "elsewhere", "same.mkv")
    os.makedirs(os.path.dirname(donor))
    with open(donor, "wb") as f:
        f.write(big)
    age(donor)
    # a library on the cold pool uses it: an orphan is never a donor (converge.reusable)
    lib = os.path.join(world.pool, "library", "same.mkv")
    os.makedirs(os.path.dirname(lib))
    os.link(donor, lib)
    meter = ReadMeter(monkeypatch)
    snap, plan = planned(world)
    assert meter.bytes == 2 * len(big)  # the source and its candidate, nothing else
    src = os.path.join(world.save(H1, "stash"), big_rel)
    key = (world.cat.fsid(world.cat.fs_for_path(src)), os.lstat(src).st_ino)
    assert snap.inodes[key].blake3 == b3(big) and key not in snap.hash_at_copy
    links = steps_of(plan, Link)
    assert {(s.src, s.blake3) for s in links if s.rel == big_rel} == {(lib, b3(big))}  # the donor's first name
    # The subtitle has no same-size file there: copied, hashed by its copy.
    assert [(c.rel, c.blake3) for c in steps_of(plan, Copy)] == [(FILES[1][0], None)]
    assert plan.groups[0].bytes_to_copy == len(FILES[1][1])

    summary = world.executor().apply(plan)
    assert summary.status == "done", summary.groups_failed
    assert summary.bytes_copied == len(FILES[1][1])
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "pool")
        for rel, data in FILES:
            with open(os.path.join(world.save(h, "pool"), rel), "rb") as f:
                assert f.read() == data
        new = os.lstat(os.path.join(world.save(h, "pool"), big_rel))
        assert (new.st_ino, new.st_nlink) == (os.lstat(donor).st_ino, 4)  # the donor, its library, both torrents
    for p in sources(world):
        assert not os.path.lexists(p)


def test_something_already_at_the_destination_is_hashed_not_copied_over(world):  # noqa: F811
    """A file at the very destination that the catalog has not seen is no same-size "candidate";
    the snapshot finds it anyway and then hashes the source, so it is reused, not refused."""
    rel, data = FILES[1]
    for p in world.cfg.pools:
        scan_pool(world.cat, p, world.cfg.scan)
    dst = os.path.join(world.save(H1, "pool"), rel)
    os.makedirs(os.path.dirname(dst))
    with open(dst, "wb") as f:
        f.write(data)
    snap, plan = planned(world, scan=False)
    src = os.path.join(world.save(H1, "stash"), rel)
    key = (world.cat.fsid(world.cat.fs_for_path(src)), os.lstat(src).st_ino)
    assert key not in snap.hash_at_copy and snap.inodes[key].blake3 == b3(data)
    assert [c.rel for c in steps_of(plan, Copy)] == [FILES[0][0]]
    summary = world.executor().apply(plan)
    assert summary.status == "done", summary.groups_failed
    assert_demoted(world, hand_plan=False)


# --------------------------------------------------------------------------- the source changes


def test_content_changed_between_copy_and_unlink_is_caught_and_nothing_is_unlinked(world):  # noqa: F811
    snap, plan = planned(world)
    steps = plan.groups[0].steps
    assert all(s.blake3 is None for s in steps if isinstance(s, Copy | Delete) and s.size)  # nothing pre-hashed
    first_delete = next(i for i, s in enumerate(steps) if isinstance(s, Delete))
    big = os.path.join(world.save(H1, "stash"), FILES[0][0])

    def hook(point, _gid, seq, _step):
        if point == "before" and seq == first_delete:
            rewrite_keeping_mtime(big, b"X" * 1000)

    summary = world.executor(hook=hook).apply(plan)
    assert summary.status == "failed"
    g = summary.groups[0]
    assert g.status == "rolled_back" and "content changed" in g.reason, g.reason
    for p in sources(world):
        assert os.path.lexists(p), p  # nothing unlinked
    assert os.lstat(big).st_nlink == 2
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "stash")


def test_crash_after_the_copy_before_its_hash_is_journaled_then_source_changes(world):  # noqa: F811
    """Killed between the copy and the journal's record of its hash; the source is rewritten (same
    size, mtime put back) before the resume: the resumed copy hashes the source again, finds the
    copy no longer matches it, and the group fails before anything is unlinked."""
    snap, plan = planned(world)
    big = os.path.join(world.save(H1, "stash"), FILES[0][0])
    seq = next(i for i, s in enumerate(plan.groups[0].steps) if isinstance(s, Copy) and s.src == big)

    def hook(point, _gid, s, _step):
        if point == "after_act" and s == seq:
            raise Crash("after the copy, before its result is journaled")

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(plan)
    run = world.journal.runs(1)[0]
    row = next(r for r in world.journal.steps(run.id) if r.seq == seq)
    assert row.status == "intended" and not row.result  # the hash is not in the journal
    rewrite_keeping_mtime(big, b"Y" * 4096)

    out = world.executor().resume()
    assert out[0].status == "failed"
    assert "different content" in out[0].groups[0].reason, out[0].groups[0].reason
    for p in sources(world):
        assert os.path.lexists(p), p
    assert world.qbt.count("set_location") == 0  # never got as far as moving a torrent


def test_crash_after_the_copy_resumes_with_the_hash_taken_again(world):  # noqa: F811
    snap, plan = planned(world)
    copies = [i for i, s in enumerate(plan.groups[0].steps) if isinstance(s, Copy)]
    assert copies and all(plan.groups[0].steps[i].blake3 is None for i in copies)

    def hook(point, _gid, s, _step):
        if point == "after_act" and s == copies[-1]:
            raise Crash()

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(plan)
    out = world.executor().resume()
    assert out[0].status == "done", out[0].groups_failed
    assert_demoted(world, hand_plan=False)
    rows = {r.seq: r for r in world.journal.steps(out[0].run_id)}
    for i in copies:
        s = plan.groups[0].steps[i]
        assert rows[i].result["blake3"] == b3(dict(FILES)[s.rel])


# --------------------------------------------------------------------------- fsops: the copy without a planned hash


def test_copy_without_a_planned_hash_refuses_a_source_written_while_copied(world, monkeypatch):  # noqa: F811
    rel, data = FILES[0]
    src = os.path.join(world.save(H1, "stash"), rel)
    age(src)
    dst = os.path.join(world.seed_p, "new", rel)
    real = fsops._copy_hashing

    def copy_then_write(src_fd, dst_fd):
        out = real(src_fd, dst_fd)
        fd = os.open(src, os.O_WRONLY)  # a writer got in meanwhile
        try:
            os.pwrite(fd, b"Z", 10)
        finally:
            os.close(fd)
        return out

    monkeypatch.setattr(fsops, "_copy_hashing", copy_then_write)
    roots = (str(world.stash), str(world.pool))
    with pytest.raises(VerificationFailed, match="changed while it was copied"):
        fsops.copy_verified(src, dst, None, len(data), roots=roots, catalog=world.cat)
    assert not os.path.lexists(dst)
    assert not os.path.isdir(os.path.join(os.path.dirname(dst), fsops.STAGING_DIR))


def test_copy_without_a_planned_hash_returns_and_caches_the_source_hash(world):  # noqa: F811
    rel, data = FILES[0]
    src = os.path.join(world.save(H1, "stash"), rel)
    age(src)
    world.cat.record_path(src, "stash")
    dst = os.path.join(world.seed_p, "new", rel)
    roots = (str(world.stash), str(world.pool))
    res = fsops.copy_verified(src, dst, None, len(data), roots=roots, catalog=world.cat)
    assert res["status"] == "copied" and res["blake3"] == b3(data) and res["source_hash_cached"] is True
    assert bytes(world.cat.inode_by_path(src).hash).hex() == b3(data)
    # Run again (a resume): the copy is there and hashes like the source, so it is "present".
    again = fsops.copy_verified(src, dst, None, len(data), roots=roots, catalog=world.cat)
    assert again == {"status": "present", "bytes_written": 0, "blake3": b3(data)}


# --------------------------------------------------------------------------- the planner's side


def test_planner_copies_unhashed_files_only_when_the_snapshot_left_them_to_the_copy():
    from dataclasses import replace

    from qbhook.config import PolicyConfig
    from tests.unit.world import S
    from tests.unit.world import World as Facts

    w = Facts(hashed=False)
    w.payload(S + "/m", {"a.bin": "A", "b.bin": "B"})
    w.link(S + "/m/a.bin", S + "/x/renamed.bin")  # a cross-seed under another name: same inode
    w.torrent("a" * 40, S + "/m", ["a.bin", "b.bin"])
    w.torrent("b" * 40, S + "/x", ["renamed.bin"])
    snap = w.snapshot()
    blocked = planner.make_plan(snap, PolicyConfig()).groups[0]
    assert blocked.action == "blocked" and "not hashed" in blocked.reason  # unhashed for no reason: blocked

    left = frozenset(k for k, i in snap.inodes.items() if i.size)
    g = planner.make_plan(replace(snap, hash_at_copy=left), PolicyConfig()).groups[0]
    assert g.action == "demote", g.reason
    copies = [s for s in g.steps if isinstance(s, Copy)]
    links = [s for s in g.steps if isinstance(s, Link)]
    # one copy per inode (never one per name), each hashed by its copy; the other name links it
    assert sorted(c.rel for c in copies) == ["a.bin", "b.bin"] and all(c.blake3 is None for c in copies)
    a_dst = next(c.dst for c in copies if c.rel == "a.bin")
    assert [(s.src, s.rel, s.blake3) for s in links] == [(a_dst, "renamed.bin", None)]
    assert g.bytes_to_copy == 2000
    # two different unhashed inodes are never taken for one content
    assert {c.src for c in copies} == {S + "/m/a.bin", S + "/m/b.bin"}
