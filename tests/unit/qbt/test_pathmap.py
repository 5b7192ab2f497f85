from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qbhook.errors import PathMapError
from qbhook.pathmap import PathMap, normalize

DOCKER = PathMap([("/data", "/stash/data"), ("/data/media", "/pool/media")])


# -- normalize ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("/", "/"),
        ("//", "/"),
        ("/a/b/", "/a/b"),
        ("/a//b", "/a/b"),
        ("//a/./b", "/a/b"),
        ("/a/.../b", "/a/.../b"),
        ("/a/..b/c", "/a/..b/c"),
    ],
)
def test_normalize(raw, norm):
    assert normalize(raw) == norm


@pytest.mark.parametrize("bad", ["", "a/b", "./a", "../a", "/a/../b", "/a/..", "/a\0b"])
def test_normalize_rejects(bad):
    with pytest.raises(PathMapError):
        normalize(bad)


# -- mapping -----------------------------------------------------------------


def test_to_host_longest_prefix():
    assert DOCKER.to_host("/data/media/tv/x.mkv") == "/pool/media/tv/x.mkv"
    assert DOCKER.to_host("/data/torrents/x") == "/stash/data/torrents/x"
    assert DOCKER.to_host("/data") == "/stash/data"
    assert DOCKER.to_host("/data/media/") == "/pool/media"


def test_to_client_longest_prefix():
    assert DOCKER.to_client("/pool/media/tv/x.mkv") == "/data/media/tv/x.mkv"
    assert DOCKER.to_client("/stash/data/torrents/x") == "/data/torrents/x"


def test_whole_components_only():
    pm = PathMap([("/data/media", "/stash/media")])
    with pytest.raises(PathMapError):
        pm.to_host("/data/mediax/file")
    with pytest.raises(PathMapError):
        pm.to_client("/stash/mediax/file")
    assert pm.to_host("/data/media/x") == "/stash/media/x"


def test_unmapped_error_names_path_and_prefixes():
    with pytest.raises(PathMapError) as err:
        DOCKER.to_host("/downloads/x")
    msg = str(err.value)
    assert "/downloads/x" in msg and "/data" in msg and "/data/media" in msg
    with pytest.raises(PathMapError) as err:
        DOCKER.to_client("/elsewhere/x")
    assert "/elsewhere/x" in str(err.value) and "/stash/data" in str(err.value)


def test_shadowed_host_path_is_not_visible_to_client():
    # /data/media inside the container is the /pool/media mount, so the host's
    # /stash/data/media cannot be named from the container at all.
    with pytest.raises(PathMapError, match="not visible"):
        DOCKER.to_client("/stash/data/media/x")


def test_rejects_dotdot_and_relative_both_ways():
    for fn in (DOCKER.to_host, DOCKER.to_client):
        with pytest.raises(PathMapError):
            fn("/data/../etc/passwd")
        with pytest.raises(PathMapError):
            fn("data/x")


def test_empty_map_is_identity_but_still_validates():
    pm = PathMap()
    assert pm.is_identity
    assert pm.to_host("/any//where/") == "/any/where"
    assert pm.to_client("/x") == "/x"
    with pytest.raises(PathMapError):
        pm.to_host("/a/../b")
    with pytest.raises(PathMapError):
        pm.to_client("relative")


def test_root_prefix():
    pm = PathMap([("/", "/srv/qbt")])
    assert pm.to_host("/") == "/srv/qbt"
    assert pm.to_host("/a/b") == "/srv/qbt/a/b"
    assert pm.to_client("/srv/qbt/a") == "/a"


@pytest.mark.parametrize(
    "pairs",
    [
        [("/data", "/a"), ("/data/", "/b")],
        [("/x", "/stash"), ("/y", "/stash/")],
    ],
)
def test_ambiguous_config_rejected(pairs):
    with pytest.raises(PathMapError, match="mapped twice"):
        PathMap(pairs)


def test_invalid_prefix_rejected():
    with pytest.raises(PathMapError):
        PathMap([("data", "/stash")])
    with pytest.raises(PathMapError):
        PathMap([("/data", "/stash/../etc")])


def test_from_config_shapes():
    a = PathMap.from_config({"/data": "/stash/data"})
    b = PathMap.from_config([["/data", "/stash/data"]])
    assert a == b and a.pairs == (("/data", "/stash/data"),)
    assert PathMap.from_config(None).is_identity
    with pytest.raises(PathMapError):
        PathMap.from_config([["/data"]])


# -- properties --------------------------------------------------------------

_name = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
    min_size=1,
    max_size=8,
).filter(lambda s: s not in (".", ".."))
_rel = st.lists(_name, min_size=0, max_size=5)
_prefix = st.lists(_name, min_size=1, max_size=3).map(lambda p: "/" + "/".join(p))


@st.composite
def _maps(draw):
    clients = draw(st.lists(_prefix, min_size=1, max_size=4, unique=True))
    hosts = draw(st.lists(_prefix, min_size=len(clients), max_size=len(clients), unique=True))
    return PathMap(zip(clients, hosts, strict=True))


def _under(prefix: str, rel: list[str]) -> str:
    return "/".join([prefix.rstrip("/"), *rel]) if rel else prefix


@settings(max_examples=300)
@given(pm=_maps(), data=st.data())
def test_host_client_host_round_trip(pm, data):
    _, host = data.draw(st.sampled_from(pm.pairs))
    path = _under(host, data.draw(_rel))
    try:
        client = pm.to_client(path)
    except PathMapError:
        return  # shadowed by a more specific client mount: allowed to refuse
    assert pm.to_host(client) == normalize(path)


@settings(max_examples=300)
@given(pm=_maps(), data=st.data())
def test_client_host_client_lands_on_same_file(pm, data):
    client, _ = data.draw(st.sampled_from(pm.pairs))
    path = _under(client, data.draw(_rel))
    host = pm.to_host(path)
    # Two client paths may alias one host file; whichever is chosen must map back.
    assert pm.to_host(pm.to_client(host)) == host


@settings(max_examples=200)
@given(
    pairs=st.lists(st.tuples(_name, _name), min_size=1, max_size=4, unique_by=(lambda p: p[0], lambda p: p[1])),
    data=st.data(),
)
def test_disjoint_maps_are_exact_bijections(pairs, data):
    pm = PathMap((f"/c/{c}", f"/h/{h}") for c, h in pairs)
    client, _ = data.draw(st.sampled_from(pm.pairs))
    path = _under(client, data.draw(_rel))
    assert pm.to_client(pm.to_host(path)) == path


@given(path=_rel.map(lambda r: "/" + "/".join(r)))
def test_identity_round_trip(path):
    pm = PathMap()
    assert pm.to_client(pm.to_host(path)) == normalize(path)


@given(pm=_maps(), rel=_rel, junk=_name)
def test_no_prefix_match_on_partial_component(pm, rel, junk):
    client, _ = pm.pairs[0]
    sibling = client + junk  # e.g. /data -> /dataX
    try:
        host = pm.to_host(_under(sibling, rel))
    except PathMapError:
        return
    # if it mapped, it was through some other (whole-component) prefix
    assert any((_under(sibling, rel) + "/").startswith(c.rstrip("/") + "/") for c, _ in pm.pairs)
    assert host


# -- normalize: every spelling of one path is one string --------------------------------------

_comp = st.text(alphabet="ab.-_ \u00e9", min_size=1, max_size=4).filter(lambda c: c not in (".", ".."))


@settings(max_examples=500)
@given(comps=st.lists(_comp, max_size=5), data=st.data())
def test_normalize_one_canonical_spelling(comps, data):
    canonical = "/" + "/".join(comps)
    spelled = ""
    for c in comps:
        spelled += data.draw(st.sampled_from(["/", "//", "/./", "/.//"])) + c
    spelled = (spelled or "/") + data.draw(st.sampled_from(["", "/", "/.", "//"]))
    assert normalize(spelled) == canonical
    assert normalize(canonical) == canonical


@settings(max_examples=300)
@given(
    comps=st.lists(_comp, max_size=4), at=st.integers(min_value=0, max_value=4), sep=st.sampled_from(["/", "//", "/./"])
)
def test_normalize_refuses_dotdot_wherever_it_is(comps, at, sep):
    parts = comps[:at] + [".."] + comps[at:]
    with pytest.raises(PathMapError, match="'..'"):
        normalize(sep + sep.join(parts))
