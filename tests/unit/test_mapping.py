"""map_seeding_path is the only formula that turns a path on one pool into one on the other."""

import os
from pathlib import PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qbhook.decide.facts import map_seeding_path

S = "/stash/data/media/torrents/seeding"
P = "/pool/data/media/torrents/seeding"


@pytest.mark.parametrize(
    "src, expected",
    [
        (S, P),
        (S + "/", P),
        (S + "/movies", P + "/movies"),
        (S + "/movies/Some.Movie.2020", P + "/movies/Some.Movie.2020"),
        (S + "/cross-seed", P + "/cross-seed"),
        (S + "/cross-seed/TrackerA", P + "/cross-seed/TrackerA"),
        (S + "/cross-seed/TrackerA/Some.Movie.2020.1080p", P + "/cross-seed/TrackerA/Some.Movie.2020.1080p"),
        (S + "/tv/Show/Season 01", P + "/tv/Show/Season 01"),
        (S + "//tv///x", P + "/tv/x"),
        (S + "/seeding", P + "/seeding"),
        (S + "/ weird name \n", P + "/ weird name \n"),
    ],
)
def test_maps_keeping_relative_path(src, expected):
    assert map_seeding_path(src, S, P) == expected
    assert map_seeding_path(expected, P, S) == src.rstrip("/").replace("//", "/").replace("//", "/") or S


@pytest.mark.parametrize(
    "bad",
    [
        "/stash/data/media/torrents",  # parent of the root
        "/stash/data/media/torrents/seeding2/x",  # prefix of a name, not a folder
        "/pool/data/media/torrents/seeding/x",  # other pool
        "relative/path",
        S + "/../escape",
        "/data/media/torrents/seeding/x",  # a container path: must be mapped to host first
    ],
)
def test_refuses_anything_not_inside_the_source_root(bad):
    with pytest.raises(ValueError):
        map_seeding_path(bad, S, P)


segment = st.text(
    st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))


@given(st.lists(segment, min_size=0, max_size=6))
def test_round_trip_and_suffix_preserved(parts):
    path = "/".join([S] + parts)
    mapped = map_seeding_path(path, S, P)
    assert mapped.startswith(P)
    assert mapped[len(P) :] == path[len(S) :]
    assert map_seeding_path(mapped, P, S) == path


def _reference(path: str, src_root: str, dst_root: str) -> str:
    """The formula as first written, on PurePosixPath (too slow for every torrent of a sweep)."""
    for v in (path, src_root, dst_root):
        if not v.startswith("/") or ".." in PurePosixPath(v).parts:
            raise ValueError(v)
    p, src = PurePosixPath(os.path.normpath(path)), PurePosixPath(os.path.normpath(src_root))
    dst = PurePosixPath(os.path.normpath(dst_root))
    if p == src:
        return str(dst)
    if src not in p.parents:
        raise ValueError(path)
    return str(dst / p.relative_to(src))


odd = st.lists(st.sampled_from(["", ".", "..", "a", "b", "seeding", " x"]), max_size=5).map("/".join)
odd_path = st.tuples(st.sampled_from(["/", "//", "///", ""]), odd).map("".join)


@settings(max_examples=500)
@given(odd_path, odd_path, odd_path)
def test_the_string_formula_answers_like_the_path_object_one(path, src, dst):
    """Doubled and leading slashes, ".", "..", the root itself: same answer or same refusal."""
    try:
        want = _reference(path, src, dst)
    except ValueError:
        with pytest.raises(ValueError):
            map_seeding_path(path, src, dst)
        return
    assert map_seeding_path(path, src, dst) == want
