"""A seeding root (or a folder between it and its pool root) swapped for a symlink to an outside
folder: nothing below it is read or acted on (``dirfd.open_root`` via ``SeedingRoot``).

Before, the seeding root was opened by its path ("the configured root: trusted"): the orphan
walk listed the outside folder's files as orphans of the root, and the quarantine moved them
into ``<outside>/.qbhook-holding/``, whence the purge deletes them after the grace period.
Each folder from the pool root down is opened with ``O_NOFOLLOW`` now (the pool root itself:
``test_pool_root_trust.py``).
"""

from __future__ import annotations

import os

import pytest

from qbhook import dirfd
from qbhook.dirfd import FolderRefused, SeedingRoot, open_root
from qbhook.errors import OrphansRefused, UnsafeOperation
from qbhook.move import fsops
from qbhook.move.orphans import walk_roots
from tests.helpers import seeded_config, write
from tests.swap import swap, swap_after_first_look


@pytest.fixture
def bed(tmp_path):
    """(config, the stash pool's seeding root, the outside folder with its secret)."""
    cfg = seeded_config(tmp_path)
    write(tmp_path / "outside/secret.conf", b"not ours")
    return cfg, cfg.primary.seeding_root, tmp_path / "outside"


def _swapped(seed, outside, which: str):
    """Swap the seeding root itself, or its parent below the pool root, for a symlink to
    ``outside`` (given the same layout below, so the outside secret sits where a seeded file would)."""
    if which == "root":
        swap(seed, outside)
        return seed
    parent = seed.parent  # <pool>/data/media/torrents
    (outside / seed.name).mkdir()
    os.rename(outside / "secret.conf", outside / seed.name / "secret.conf")
    swap(parent, outside)
    return parent


def _secret(outside):
    hits = [os.path.join(d, f) for d, _s, fs in os.walk(outside) for f in fs if f == "secret.conf"]
    assert len(hits) == 1, hits
    return hits[0]


@pytest.mark.parametrize("which", ["root", "parent"])
def test_the_orphan_walk_refuses_a_swapped_seeding_root_naming_it(bed, which):
    cfg, seed, outside = bed
    swapped = _swapped(seed, outside, which)
    with pytest.raises(OrphansRefused) as e:
        walk_roots(cfg)
    msg = e.value.message
    assert "\n" not in msg and str(swapped) in msg and "symlink" in msg


@pytest.mark.parametrize("which", ["root", "parent"])
def test_quarantine_refuses_to_hold_below_a_swapped_seeding_root(bed, which):
    cfg, seed, outside = bed
    _swapped(seed, outside, which)
    secret = _secret(outside)
    st = os.lstat(secret)
    with pytest.raises(UnsafeOperation) as e:
        fsops.hold_unreferenced(
            f"{seed}/secret.conf",
            ino=st.st_ino,
            size=st.st_size,
            max_nlink=1,
            mtime_ns=st.st_mtime_ns,
            roots=cfg.anchored_seeding_roots,
            run=1,
        )
    assert "\n" not in e.value.message and "refusing to go through it" in e.value.message
    assert _secret(outside) == secret  # not moved
    assert not [d for d, _s, _f in os.walk(outside) if fsops.HOLDING_DIR in d]


@pytest.mark.parametrize(
    "act",
    [
        lambda cfg, seed: fsops.make_empty(f"{seed}/new/empty.bin", roots=cfg.anchored_seeding_roots),
        lambda cfg, seed: fsops.hide_during_move(f"{seed}/secret.conf", roots=cfg.anchored_seeding_roots, run=3),
        lambda cfg, seed: fsops.prune_empty_dirs(f"{seed}/e", seed, roots=cfg.anchored_seeding_roots),
        lambda cfg, seed: fsops.safe_unlink(
            f"{seed}/secret.conf",
            fsid=None,
            ino=os.lstat(f"{seed}/secret.conf").st_ino,
            keep_path=f"{cfg.primary.path}/lib/secret.conf",
            seeding_roots=cfg.anchored_seeding_roots,
            keep_roots=(cfg.primary.path,),
            catalog=None,
            size=8,
            blake3_hex="00" * 32,
        ),
        lambda cfg, seed: fsops.Relinker(cfg.anchored_seeding_roots, (cfg.primary.path,))._dir(
            fsops._split_under(f"{seed}/secret.conf", cfg.anchored_seeding_roots)[0], (), True
        ),
    ],
    ids=["make_empty", "hide_during_move", "prune_empty_dirs", "safe_unlink", "relinker"],
)
def test_every_act_below_a_swapped_seeding_root_is_refused(bed, act):
    cfg, seed, outside = bed
    (outside / "e").mkdir()
    swap(seed, outside)
    with pytest.raises(UnsafeOperation) as e:
        act(cfg, seed)
    assert str(seed) in e.value.message
    assert sorted(os.listdir(outside)) == ["e", "secret.conf"]  # nothing made, moved or removed


def test_a_swap_right_after_the_pool_root_was_opened_is_refused_too(bed, monkeypatch):
    """The race: the pool root is opened (by path), then the seeding root is swapped before the
    walk down reaches it; the step down refuses it (O_NOFOLLOW), it never lists the outside."""
    cfg, seed, outside = bed
    looked = swap_after_first_look(monkeypatch, cfg.primary.path, seed, outside)
    with pytest.raises(OrphansRefused):
        walk_roots(cfg)
    assert looked == ["open"]


def test_open_root_walks_down_from_the_pool_root_and_opens_the_real_folder(bed):
    cfg, seed, _outside = bed
    fd = open_root(str(seed), str(cfg.primary.path))
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(seed))
    finally:
        os.close(fd)
    with pytest.raises(FileNotFoundError):
        open_root(f"{seed}/missing", str(cfg.primary.path))
    write(seed / "file", b"x")
    with pytest.raises(NotADirectoryError):
        open_root(f"{seed}/file", str(cfg.primary.path))
    with pytest.raises(ValueError):
        open_root(str(seed), str(cfg.cold.path))  # not inside that pool root


def test_open_root_names_the_swapped_folder(bed):
    cfg, seed, outside = bed
    swap(seed.parent, outside)
    with pytest.raises(FolderRefused) as e:
        dirfd.open_root(str(seed), str(cfg.primary.path))
    assert e.value.folder == str(seed.parent) and e.value.target == str(outside)


def test_a_seeding_root_is_handed_to_fsops_with_its_pool_root(bed):
    """The plumbing the refusals above rest on: the configured seeding roots reach fsops and the
    orphan walk anchored (a plain path would be opened by its path, as a pool root is)."""
    cfg, _seed, _outside = bed
    from qbhook.move.executor import ExecutorContext

    ctx = ExecutorContext(cfg, None, None, None)
    want = tuple(SeedingRoot(str(r), str(p.path)) for p in cfg.pools for r in p.seeding_roots)
    assert cfg.anchored_seeding_roots == want
    assert ctx.seeding_roots == want and ctx.roots[: len(want)] == want
    with pytest.raises(ValueError):
        SeedingRoot(str(cfg.primary.path), str(cfg.primary.path))  # a pool root is no seeding root
    # A cache of placed roots tells an anchored root from the same path given plainly.
    plain = fsops._norm_roots((str(want[0]),))[0]
    anchored = fsops._norm_roots((want[0],))[0]
    assert plain == anchored and plain.pool is None and anchored.pool == os.fsencode(want[0].pool)
