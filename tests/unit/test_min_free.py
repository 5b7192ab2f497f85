"""``policy.min_free``: the free space a run leaves on every pool it copies onto. A pool at 0 bytes
available slows ZFS down badly and fails qBittorrent's downloads, so a copy fits only if it leaves
the reserve (``space.fits``), as the planner, its run-wide pass, the executor's check before a
group starts and fsops' check before each file all ask."""

from __future__ import annotations

import errno
import os
from dataclasses import replace

import pytest

from qbhook.config import DEFAULT_MIN_FREE, PolicyConfig, describe
from qbhook.decide.planner import Room, finish_run, make_plan
from qbhook.errors import ConfigError
from qbhook.move import fsops
from qbhook.space import NO_RESERVE, Reserve, Space, fits, leaves
from tests.helpers import make_config, write
from tests.unit.test_executor import demote_plan, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import b3, staging_leftovers, tmpfs  # noqa: F401  (fixture)
from tests.unit.test_run_space import _check_two_roots, _copy_bytes, _reading, _world

KEY = "policy.min_free"


def _policy(tmp_path, value) -> PolicyConfig:
    return make_config(tmp_path / "c.sqlite", tmp_path / "s", tmp_path / "p", policy={"min_free": value}).policy


# --------------------------------------------------------------------------- the setting


@pytest.mark.parametrize(
    "value, reserve",
    [
        ("5%", Reserve(5, percent=True)),
        (" 0.5 % ", Reserve(0.5, percent=True)),
        ("1.5KiB", Reserve(1536)),
        ("5.0", Reserve(5)),
        ("0%", Reserve(0, percent=True)),
        ("50%", Reserve(50, percent=True)),
        ("200G", Reserve(200 * 2**30)),
        ("500GB", Reserve(500 * 10**9)),
        (1048576, Reserve(2**20)),
        (0, NO_RESERVE),
    ],
)
def test_min_free_reads_a_size_or_a_percent(tmp_path, value, reserve):
    assert _policy(tmp_path, value).min_free == reserve


def test_min_free_defaults_to_five_percent_and_is_shown_as_written(tmp_path):
    assert PolicyConfig().min_free == DEFAULT_MIN_FREE == Reserve(5, percent=True)
    cfg = make_config(tmp_path / "c.sqlite", tmp_path / "s", tmp_path / "p", policy={"min_free": "0.5%"})
    assert describe(cfg)["policy"]["min_free"] == "0.5%"


@pytest.mark.parametrize(
    "value, words",
    [
        ("51%", "must be at most 50% (got 51%)"),
        ("-5%", "cannot read '-5%' as a percent"),
        ("x%", "cannot read 'x%' as a percent"),
        ("5%%", "as a percent"),
        ("5GB%", "as a percent"),
        ("nan%", "as a percent"),
        ("lots", "cannot read 'lots' as a size or a percent"),
        ("-1G", "as a size or a percent"),
        (-1, "must be at least 0 bytes"),
        (1.5, "must be a whole number of bytes"),
        ("5.5", "must be a whole number of bytes (got '5.5')"),  # was 5 bytes, truncated
        ("0.9", "must be a whole number of bytes (got '0.9')"),  # was no reserve at all
        ("0.5 B", "must be a whole number of bytes"),
        (True, "must be a size or a percent"),
        (None, "must be a size or a percent"),
        ([5], "must be a size or a percent"),
    ],
)
def test_a_bad_min_free_is_a_one_line_error_naming_the_key(tmp_path, value, words):
    with pytest.raises(ConfigError) as e:
        _policy(tmp_path, value)
    assert e.value.message.startswith(f"config: {KEY}: ") and "\n" not in e.value.message
    assert words in e.value.message, e.value.message


# --------------------------------------------------------------------------- the rule


def test_fits_leaves_the_reserve_free():
    assert fits(900, 1000, size=10_000, reserve=Reserve(100))
    assert not fits(901, 1000, size=10_000, reserve=Reserve(100))
    # a percent is of the filesystem's size, rounded up: 5% of 10,001 B is 501 B
    assert fits(499, 1000, size=10_001, reserve=Reserve(5, percent=True))
    assert not fits(500, 1000, size=10_001, reserve=Reserve(5, percent=True))
    assert fits(1000, 1000, size=10_000, reserve=NO_RESERVE) and not fits(1001, 1000, size=10_000, reserve=NO_RESERVE)
    assert fits(1000, 1000, size=0, reserve=Reserve(5, percent=True))  # a size not read keeps nothing back


def test_nothing_to_write_fits_a_pool_already_inside_its_reserve():
    # a demote onto data the pool already holds only links: it must not wait for room
    assert fits(0, 0, size=10_000, reserve=Reserve(5, percent=True))
    assert fits(0, 100, size=10_000, reserve=Reserve(1000))
    assert not fits(1, 100, size=10_000, reserve=Reserve(1000))


def test_the_reason_says_what_would_be_left_and_what_is_kept():
    assert leaves(900, 1000, size=10_000, reserve=Reserve(5, percent=True)) == (
        "would leave 100 B free, reserve 5% (500 B) (policy.min_free)"
    )
    assert leaves(900, 1000, size=10_000, reserve=Reserve(2048)) == (
        "would leave 100 B free, reserve 2.0 KiB (policy.min_free)"
    )


# --------------------------------------------------------------------------- the planner


def test_the_planner_holds_back_a_group_that_fits_the_free_space_but_not_the_reserve():
    w = _world([1000], 1500)
    w.size["pool"] = 10_000
    p = make_plan(w.snapshot(), PolicyConfig(min_free=Reserve(10, percent=True)))
    (g,) = p.groups
    assert str(g.action) == "blocked" and g.steps == [] and p.summary()["bytes_to_copy"] == 0
    assert g.reason == "waits for room on pool: would leave 500 B free, reserve 10% (1000 B) (policy.min_free)"
    # the same group with the reserve met exactly demotes
    (g,) = make_plan(w.snapshot(), PolicyConfig(min_free=Reserve(500))).groups
    assert str(g.action) == "demote" and g.bytes_to_copy == 1000


def test_the_default_reserve_holds_back_a_pool_about_to_fill():
    w = _world([1000], 1500)
    w.size["pool"] = 20_000  # 5%: 1000 B kept
    (g,) = make_plan(w.snapshot(), PolicyConfig()).groups
    assert str(g.action) == "blocked" and "reserve 5% (1000 B)" in g.reason


def test_a_run_spends_its_pools_room_down_to_the_reserve_not_to_zero():
    """Each group alone leaves the reserve; the second, after the first's copy, would not."""
    policy = PolicyConfig(min_free=Reserve(200))
    w = _world([700, 700], 1500)
    groups = make_plan(w.snapshot(), policy).groups
    assert [str(g.action) for g in groups] == ["demote", "skip"]
    assert groups[1].steps == [] and groups[1].reason == (
        "waits for room on pool after earlier groups of this run: "
        "would leave 100 B free, reserve 200 B (policy.min_free)"
    )
    # finish_run over a sweep's chunks: the reserve is a percent of the size the room carries
    groups = make_plan(_world([600], 10**6).snapshot(), policy).groups
    finish_run(groups, PolicyConfig(min_free=Reserve(50, percent=True)), {"pool": Room(1500, 2000)})
    assert str(groups[0].action) == "skip" and "reserve 50% (1000 B)" in groups[0].reason


# --------------------------------------------------------------------------- the executor


def test_the_executor_refuses_a_group_that_would_break_the_reserve_before_writing(world, monkeypatch):  # noqa: F811
    world.cfg = replace(world.cfg, policy=replace(world.cfg.policy, min_free=Reserve(100)))
    plan = demote_plan(world)
    _reading(monkeypatch, _copy_bytes(plan) + 99)  # room for the copies, not for the reserve too
    summary = world.executor().apply(plan)
    g = summary.groups[0]
    assert g.status == "rolled_back" and summary.bytes_copied == 0
    assert g.reason.startswith("not started, waits for room: ") and g.reason.endswith(
        "would leave 99 B free, reserve 100 B (policy.min_free)"
    ), g.reason
    assert [os.path.join(d, f) for d, _s, fs in os.walk(world.seed_p) for f in fs] == []
    assert world.journal.steps(summary.run_id) == []


def test_check_room_keeps_a_percent_of_the_filesystems_size(monkeypatch):
    # 2000 B to copy, 2500 B free of 25,000: 10% (2500 B) is more than the 500 B that would be left
    (why,) = _check_two_roots(monkeypatch, {"/cold/t/movies": 7, "/cold/t/tv": 7}, 2500, Reserve(10, percent=True))
    assert why == (
        "not started, waits for room: 2.0 KiB to copy onto /cold/t/movies and /cold/t/tv "
        "would leave 500 B free, reserve 10% (2.4 KiB) (policy.min_free)"
    )
    assert _check_two_roots(monkeypatch, {"/cold/t/movies": 7, "/cold/t/tv": 7}, 2500, Reserve(2)) == []


def test_a_file_copy_that_would_break_the_reserve_is_refused_before_a_byte_is_written(tmpfs, tmp_path):  # noqa: F811
    src_fs, dst_fs = tmpfs("src"), tmpfs("dst", size="1M")
    data = os.urandom(4096)
    src = write(src_fs / "f.bin", data)
    avail = os.statvfs(dst_fs).f_bavail * os.statvfs(dst_fs).f_frsize
    reserve = Reserve(avail - len(data) + 1)  # the file fits the free space, not the reserve too
    with pytest.raises(OSError) as e:
        fsops.copy_verified(src, dst_fs / "d/f.bin", b3(data), len(data), roots=(src_fs, dst_fs), reserve=reserve)
    assert e.value.errno == errno.ENOSPC and "would leave " in str(e.value) and "(policy.min_free)" in str(e.value)
    assert not os.path.lexists(dst_fs / "d/f.bin") and staging_leftovers(dst_fs / "d") == []
    res = fsops.copy_verified(src, dst_fs / "d/f.bin", b3(data), len(data), roots=(src_fs, dst_fs), reserve=Reserve(0))
    assert res["status"] == "copied"


def test_a_file_copy_is_refused_when_its_free_space_cannot_be_read(tmpfs, monkeypatch):  # noqa: F811
    """A resumed group skips the executor's check (``_check_room``): fsops' is all that keeps the
    reserve, so a free space it cannot read refuses the copy instead of copying with none."""
    src_fs, dst_fs = tmpfs("src"), tmpfs("dst", size="1M")
    data = os.urandom(4096)
    src = write(src_fs / "f.bin", data)

    def unreadable(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fsops, "space_of", unreadable)
    with pytest.raises(OSError) as e:
        fsops.copy_verified(src, dst_fs / "d/f.bin", b3(data), len(data), roots=(src_fs, dst_fs), reserve=Reserve(1))
    assert e.value.errno == errno.EIO and "cannot be read" in str(e.value) and "(policy.min_free)" in str(e.value)
    assert not os.path.lexists(dst_fs / "d/f.bin") and staging_leftovers(dst_fs / "d") == []
    # No reserve to keep: the write's own ENOSPC is the check.
    res = fsops.copy_verified(src, dst_fs / "d/f.bin", b3(data), len(data), roots=(src_fs, dst_fs), reserve=NO_RESERVE)
    assert res["status"] == "copied"


def test_the_executor_passes_the_reserve_to_each_files_copy(world, monkeypatch):  # noqa: F811
    """The group's check passed (the space read then), but by its first file the pool is fuller:
    fsops keeps the reserve too, and the group fails before that file is written."""
    world.cfg = replace(world.cfg, policy=replace(world.cfg.policy, min_free=Reserve(100)))
    plan = demote_plan(world)
    _reading(monkeypatch, 10**9)
    first = next(s.size for g in plan.groups for s in g.steps if s.kind == "copy")
    monkeypatch.setattr(fsops, "space_of", lambda fd: Space(10**9, first + 99, first + 99))
    summary = world.executor().apply(plan)
    g = summary.groups[0]
    assert g.status == "rolled_back" and summary.bytes_copied == 0
    assert g.reason.startswith("copy failed") and "would leave 99 B free, reserve 100 B" in g.reason, g.reason
