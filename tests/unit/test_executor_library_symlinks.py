"""A library symlink made after the plan's snapshot walked the libraries keeps the old links.

The snapshot walks the libraries once (``catalog.library_links``, ``planner.library_use``);
between it and the deletes of a demote lie the copy, relocation and verification (minutes).
A symlink an *arr made meanwhile onto an old /stash link dangled once the deletes removed it.
The executor walks again before a group's first delete and every ``_NEWCOMER_REREAD_S``
during its deletes (``Executor._check_no_library_symlink``, on ``_look_due``: the newcomer
check's cadence). Real files and symlinks on two tmpfs pools, the executor tests' fake client."""

from __future__ import annotations

import contextlib
import os
import shlex
import stat

import pytest

from qbhook.catalog import findwalk, library_links
from qbhook.errors import LibraryLinksUnseen
from tests.mountns import bind, own_mounts
from tests.unit.test_executor import FILES, H1, H2, demote_plan, world  # noqa: F401  (fixture)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

MOVIE = FILES[0][0]  # Movie.2020/movie.mkv


def _symlink(at: str, target: str) -> str:
    os.makedirs(os.path.dirname(at), exist_ok=True)
    os.symlink(target, at)
    return at


def _kept(world, h) -> list[str]:  # noqa: F811
    return [rel for rel, _d in FILES if os.path.exists(os.path.join(world.save(h, "stash"), rel))]


def _apply_with(world, act, deleted: int, step_s: float = 60.0):  # noqa: F811
    """The demote with each delete taking ``step_s`` (it re-hashes its link), ``act()`` run right
    before delete number ``deleted`` (0: the first, after verify_group)."""
    state = {"deletes": 0}

    def hook(point, gid, seq, step):
        if point == "before" and step.kind == "delete":
            world.clock.now += step_s
            if state["deletes"] == deleted:
                act()
            state["deletes"] += 1

    return world.executor(hook=hook).apply(demote_plan(world)).groups[0]


@pytest.mark.parametrize("onto", ["a file", "a folder"])
def test_a_library_symlink_made_between_verify_and_delete_keeps_every_old_link(world, onto):  # noqa: F811
    # Made after the snapshot (the plan is built by hand: it saw none), before the first delete.
    if onto == "a file":
        target = os.path.join(world.seed_s, MOVIE)
        at = os.path.join(world.lib, "movies", "Movie (2020).mkv")
    else:
        target = os.path.join(world.save(H2, "stash"), "Movie.2020")
        at = os.path.join(world.lib, "movies", "Movie (2020)")
    g = _apply_with(world, lambda: _symlink(at, target), deleted=0)
    assert g.status == "rolled_back", g.reason
    assert f"library symlink {at} -> {target} uses" in g.reason, g.reason
    for h in (H1, H2):
        assert _kept(world, h) == [rel for rel, _d in FILES]
        assert world.qbt.t[h].save_path == world.save(h, "stash")
    assert os.path.exists(at)  # the library's item still plays


@own_mounts
def test_a_library_folder_symlink_written_through_a_bind_mount_of_the_seeding_data_keeps_every_old_link(
    world,  # noqa: F811
):
    """R32: the symlink names the torrent's folder through a bind mount of the seeding root
    inside the pool (an export, a container's alias folder): its real path is the alias, which
    no delete spells. The folder is matched by identity (``LibraryLinks.reaching``'s
    ``identity``, one fstat per folder above the deletes), so the group rolls back."""
    alias = os.path.join(world.stash, "export")
    os.makedirs(alias)
    bind(world.seed_s, alias)
    target = os.path.join(alias, "cross-seed", "Movie.2020")  # H2's folder, by the alias
    at = os.path.join(world.lib, "movies", "Movie (2020)")
    g = _apply_with(world, lambda: _symlink(at, target), deleted=0)
    assert g.status == "rolled_back", g.reason
    assert f"library symlink {at} -> {target} uses" in g.reason, g.reason
    for h in (H1, H2):
        assert _kept(world, h) == [rel for rel, _d in FILES]
    assert os.path.exists(os.path.join(at, MOVIE.rpartition("/")[2]))  # the library's item still plays


def test_a_library_symlink_made_during_the_deletes_stops_the_rest(world):  # noqa: F811
    # Onto H2's movie (a cross-seed of H1's, deleted after H1's three links): 60 s per delete,
    # so the walk before delete number 2 is due.
    target = os.path.join(world.save(H2, "stash"), MOVIE)
    at = os.path.join(world.lib, "Movie (2020).mkv")
    g = _apply_with(world, lambda: _symlink(at, target), deleted=2)
    assert g.status == "failed", g.reason
    assert f"library symlink {at} -> {target} uses" in g.reason, g.reason
    assert "no more old links deleted" in g.reason and "after deletes began" in g.reason, g.reason
    assert _kept(world, H1) == [rel for rel, _d in FILES][2:]
    assert _kept(world, H2) == [rel for rel, _d in FILES]
    assert os.path.exists(at)
    for h in (H1, H2):  # nothing done is undone: the torrents stay at their verified new place
        assert world.qbt.t[h].save_path == world.save(h, "pool")


# find as a user who may not read a mode-000 folder: these tests run as root, who may read it.
_FIND_AS_A_USER = """#!/bin/sh
{find} "$@"; rc=$?
for d in $({find} "$2" -type d -perm 000); do echo "find: '$d': Permission denied" >&2; rc=1; done
exit $rc
"""


@pytest.fixture
def lockable(world, tmp_path, monkeypatch):  # noqa: F811
    """A library folder to make unreadable (mode 000), and a find that cannot read it."""
    locked = os.path.join(world.lib, "locked")
    os.makedirs(locked)
    if os.geteuid() == 0 and findwalk.FIND is not None:
        fake = tmp_path / "find"
        fake.write_text(_FIND_AS_A_USER.format(find=findwalk.FIND))
        fake.chmod(0o755)
        monkeypatch.setattr(findwalk, "FIND", str(fake))
    yield locked
    os.chmod(locked, stat.S_IRWXU)


@pytest.mark.parametrize("deleted", [0, 2])
def test_an_unreadable_library_folder_stops_the_deletes(world, lockable, deleted):  # noqa: F811
    g = _apply_with(world, lambda: os.chmod(lockable, 0), deleted=deleted)
    assert g.status == ("rolled_back" if deleted == 0 else "failed"), g.reason
    assert "cannot look for library symlinks" in g.reason and "locked" in g.reason, g.reason
    assert _kept(world, H1) == [rel for rel, _d in FILES][deleted:]
    assert _kept(world, H2) == [rel for rel, _d in FILES]


def test_with_no_library_symlink_onto_the_group_the_deletes_proceed(world):  # noqa: F811
    # A library symlink onto another torrent's file, made meanwhile, is no use of this group.
    other = os.path.join(world.seed_s, "Other.2021", "other.mkv")
    os.makedirs(os.path.dirname(other))
    with open(other, "wb") as f:
        f.write(b"other")
    g = _apply_with(world, lambda: _symlink(os.path.join(world.lib, "Other (2021).mkv"), other), deleted=0)
    assert g.status == "done", g.reason
    assert _kept(world, H1) == [] and _kept(world, H2) == []


@pytest.fixture
def walks(monkeypatch):
    done = []
    real = library_links.collect
    monkeypatch.setattr(library_links, "collect", lambda cfg: done.append(1) or real(cfg))
    return done


def test_the_deletes_walk_the_libraries_once_per_interval_not_per_delete(world, walks):  # noqa: F811
    # Six deletes 10 s apart: once before the first, once 30 s later (the newcomers' cadence).
    g = _apply_with(world, lambda: None, deleted=0, step_s=10.0)
    assert g.status == "done", g.reason
    assert len(walks) == 2, walks


def test_one_walk_serves_every_group_of_a_run_while_younger_than_the_cadence(world, walks):  # noqa: F811
    ex = world.executor()
    first = ex._library_walk(deletes_started=False)
    world.clock.now += 1  # another group's first delete, a second later: the same walk
    assert ex._library_walk(deletes_started=False) is first and len(walks) == 1
    world.clock.now += 1  # two seconds: a first delete walks again
    assert ex._library_walk(deletes_started=False) is not first and len(walks) == 2
    world.clock.now += 29  # during deletes: every 30 s
    assert len([ex._library_walk(deletes_started=True)]) == 1 and len(walks) == 2
    world.clock.now += 1
    ex._library_walk(deletes_started=True)
    assert len(walks) == 3


# --------------------------------------------------------------------------- renamed during the walk
# Review (R21-B): find's "No such file or directory" (an entry listed, gone when looked at) was
# taken to hide nothing. But a library folder renamed there ("Movie 2020" -> "Movie (2020)", as an
# *arr does) is never walked under its new name: its symlinks unseen, the first delete removed the
# file one uses. A walk that saw an entry vanish is walked again; one that keeps seeing it is unseen.

# The real find, plus: on reaching the marker (listed before the entry, on tmpfs the newest is
# listed first) the entry is renamed, once: a real find's own walk, the race made deterministic.
_FIND_RENAMING = """#!/bin/sh
a1="$1"; a2="$2"; a3="$3"; a4="$4"; shift 4
exec {find} "$a1" "$a2" "$a3" "$a4" \\( -name zz-marker -exec sh -c '[ ! -e "$0" ] || mv "$0" "$1"' {src} {dst} \\; \\
  -false \\) -o "$@"
"""
# The real find, and an entry that vanishes in every walk.
_FIND_CHURNING = """#!/bin/sh
{find} "$@"; echo "{find}: '$2/media/Movie 2020': No such file or directory" >&2; exit 1
"""


def _renamed(world, what: str) -> tuple[str, str, str]:  # noqa: F811
    """A library item onto the movie, ``what`` ("a folder" holding its symlink, or "a symlink")
    to be renamed: (the name listed, its new name, the symlink as it is after the rename)."""
    movies = os.path.join(world.lib, "movies")
    target = os.path.join(world.seed_s, MOVIE)
    if what == "a folder":
        src, dst = os.path.join(movies, "Movie 2020"), os.path.join(movies, "Movie (2020)")
        _symlink(os.path.join(src, "movie.mkv"), target)
        return src, dst, os.path.join(dst, "movie.mkv")
    src, dst = os.path.join(movies, "Movie 2020.mkv"), os.path.join(movies, "Movie (2020).mkv")
    return src, dst, _symlink(src, target) and dst


def _find_renaming(tmp_path, monkeypatch, src: str, dst: str) -> None:
    """findwalk.FIND: a find that renames ``src`` to ``dst`` during its first walk."""
    assert findwalk.FIND is not None
    open(os.path.join(os.path.dirname(src), "zz-marker"), "w").close()  # after src: listed first
    fake = tmp_path / "find-renaming"
    fake.write_text(_FIND_RENAMING.format(find=findwalk.FIND, src=shlex.quote(src), dst=shlex.quote(dst)))
    fake.chmod(0o755)
    monkeypatch.setattr(findwalk, "FIND", str(fake))


def _python_renaming(monkeypatch, src: str, dst: str) -> None:
    """The Python walk, ``src`` renamed to ``dst`` right after its folder's first listing."""
    real = os.scandir

    @contextlib.contextmanager
    def scandir(d):
        with real(d) as it:
            listed = list(it)
        if d == os.path.dirname(src) and os.path.lexists(src):
            os.rename(src, dst)
        yield iter(listed)

    monkeypatch.setattr(findwalk, "FIND", None)
    monkeypatch.setattr(library_links.os, "scandir", scandir)


needs_find = pytest.mark.skipif(findwalk.FIND is None, reason="no GNU find here")


@needs_find
def test_a_library_folder_renamed_during_the_walk_before_the_first_delete_keeps_every_old_link(
    world,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    # The reviewer's: the library links the movie (after the snapshot: the plan is built by hand,
    # it saw none), and renames its folder while the executor's walk runs. The first walk saw it
    # vanish; the second sees it under its new name.
    src, dst, link = _renamed(world, "a folder")
    target = os.path.join(world.seed_s, MOVIE)
    act = lambda: _find_renaming(tmp_path, monkeypatch, src, dst)  # noqa: E731
    g = _apply_with(world, act, deleted=0)
    assert g.status == "rolled_back", g.reason
    assert f"library symlink {link} -> {target} uses" in g.reason, g.reason
    assert os.path.exists(link)  # the library's item still plays
    assert _kept(world, H1) == [rel for rel, _d in FILES]


@pytest.mark.parametrize("walk", [pytest.param("find", marks=needs_find), "python"])
@pytest.mark.parametrize("what", ["a folder", "a symlink"])
def test_a_library_renamed_during_the_walk_is_seen_by_the_next_walk(world, tmp_path, monkeypatch, walk, what):  # noqa: F811
    # A symlink renamed after its folder's listing: find names it by its old name unlooked-at,
    # the Python walk sees it gone; either way the walk is not clean.
    src, dst, link = _renamed(world, what)
    if walk == "find":
        _find_renaming(tmp_path, monkeypatch, src, dst)
    else:
        _python_renaming(monkeypatch, src, dst)
    st = os.stat(os.path.join(world.seed_s, MOVIE))
    found = library_links.collect(world.cfg)
    assert os.path.lexists(dst) and not os.path.lexists(src)  # the rename happened during the walk
    assert found.reaching(os.path.join(world.seed_s, MOVIE), (st.st_dev, st.st_ino)) == link


@pytest.mark.parametrize("walk", [pytest.param("find", marks=needs_find), "python"])
def test_a_library_that_keeps_changing_during_every_walk_is_unseen(world, tmp_path, monkeypatch, walk):  # noqa: F811
    gone = os.path.join(str(world.stash), "media", "Movie 2020")
    if walk == "find":
        fake = tmp_path / "find-churning"
        fake.write_text(_FIND_CHURNING.format(find=findwalk.FIND))
        fake.chmod(0o755)
        monkeypatch.setattr(findwalk, "FIND", str(fake))
    else:
        os.makedirs(gone)
        real = os.scandir
        monkeypatch.setattr(findwalk, "FIND", None)
        monkeypatch.setattr(library_links.os, "scandir", lambda d: real(d if d != gone else os.path.join(d, "nothing")))
    walked = []
    real_walk = library_links._symlinks
    monkeypatch.setattr(library_links, "_symlinks", lambda *a: walked.append(a[1]) or real_walk(*a))
    with pytest.raises(LibraryLinksUnseen) as e:
        library_links.collect(world.cfg)
    assert walked == [str(world.stash)] * library_links.WALKS
    said = e.value.message
    assert "cannot look for library symlinks in pool stash" in said and "kept changing" in said, said
    assert "Movie 2020" in said and "\n" not in said, said


@needs_find
def test_a_library_that_keeps_changing_stops_the_deletes(world, tmp_path, monkeypatch):  # noqa: F811
    fake = tmp_path / "find-churning"
    fake.write_text(_FIND_CHURNING.format(find=findwalk.FIND))
    fake.chmod(0o755)
    g = _apply_with(world, lambda: monkeypatch.setattr(findwalk, "FIND", str(fake)), deleted=0)
    assert g.status == "rolled_back", g.reason
    assert "cannot look for library symlinks" in g.reason and "kept changing" in g.reason, g.reason
    assert _kept(world, H1) == [rel for rel, _d in FILES]
