"""A path_map's size is bounded, and checking it costs per entry, not per pair of entries.

``PathMap.nested_disagreements`` compared every entry with every other one, and YAML aliases
make an entry a few bytes: a 3 KiB config took 5 s and a 9 KiB one 46 s to load, in every
command and in the hook qBittorrent runs on each torrent event (R46). Now each entry looks up
its own ancestors only, and config refuses a map longer than ``pathmap.MAX_ENTRIES``.
Speed itself is measured in bench/, not here: these tests hold the results.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qbhook.errors import ConfigError, PathMapError
from qbhook.pathmap import MAX_ENTRIES, PathMap
from tests.unit.test_config import BASE_YAML, _load_text


def _all_pairs(pm: PathMap) -> list[str]:
    """The rule as it was written first (every entry against every other): the reference."""

    def parts(p: str) -> tuple[str, ...]:
        return tuple(x for x in p.split("/") if x)

    pairs = list(dict.fromkeys(pm.pairs))
    problems = []
    for side, label in ((0, "client"), (1, "host")):
        for outer in pairs:
            for inner in pairs:
                o, i = parts(outer[side]), parts(inner[side])
                if len(i) <= len(o) or i[: len(o)] != o:
                    continue
                expected = "/" + "/".join(parts(outer[1 - side]) + i[len(o) :])
                if expected != inner[1 - side]:
                    problems.append(
                        f"{label} prefix {inner[side]} lies inside {outer[side]}, so a {label} path under it maps "
                        f"two ways ({inner[1 - side]} by its own entry, {expected} by {outer[side]}'s)"
                    )
    return problems


_paths = st.lists(st.sampled_from(["a", "b", "c"]), max_size=4).map(lambda xs: "/" + "/".join(xs))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_paths, _paths), max_size=7))
def test_the_same_problems_in_the_same_order_as_comparing_every_pair(pairs):
    try:
        pm = PathMap(pairs)
    except PathMapError:
        return  # a prefix mapped twice: refused before nesting is looked at
    assert pm.nested_disagreements() == _all_pairs(pm)


def test_a_repeated_entry_is_said_once():
    pm = PathMap([("/data", "/stash/data"), ("/data/m", "/pool/m"), ("/data/m", "/pool/m")])
    assert len(pm.nested_disagreements()) == 1


def test_twenty_thousand_entries_are_checked_entry_by_entry():
    """Every pair of 20,000 entries is 4e8 comparisons a side (hours); each entry's ancestors, a few.
    Listed by the outer entry's place in the map: /c/7 is the 8th, /c comes after all of them."""
    pairs = [(f"/c/{n}", f"/h/{n}") for n in range(20_000)]
    pairs += [("/c", "/h"), ("/c/7/deep", "/elsewhere")]
    assert PathMap(pairs).nested_disagreements() == [
        "client prefix /c/7/deep lies inside /c/7, so a client path under it maps two ways "
        "(/elsewhere by its own entry, /h/7/deep by /c/7's)",
        "client prefix /c/7/deep lies inside /c, so a client path under it maps two ways "
        "(/elsewhere by its own entry, /h/7/deep by /c's)",
    ]


def _map_of(n: int) -> str:
    """A qbittorrent entry's path_map of n entries, all one alias after the first (a few bytes each)."""
    return ", path_map: [&m {client: /data, host: /stash/data}" + ", *m" * (n - 1) + "]"


@pytest.mark.parametrize("n", [MAX_ENTRIES + 1, 2_000])
def test_a_path_map_longer_than_the_cap_is_refused_in_one_line(tmp_path, n):
    with pytest.raises(ConfigError) as ei:
        _load_text(tmp_path, BASE_YAML % (_map_of(n), ""))
    assert ei.value.key == "qbittorrent.path_map"
    assert ei.value.message.endswith(f"has {n} entries, more than the {MAX_ENTRIES} a path_map may have")
    assert "\n" not in ei.value.message and ei.value.exit_code == 78


def test_a_path_map_at_the_cap_loads(tmp_path):
    cfg = _load_text(tmp_path, BASE_YAML % (_map_of(MAX_ENTRIES), ""))
    assert cfg.qbittorrent[0].path_map == (("/data", "/stash/data"),) * MAX_ENTRIES
