"""Several seeding roots per pool (issue 12 part 4): config shape, nesting refusals, and that every
root counts as seeding tree (outside-link rule, pool lookup, mapping between pools)."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from qbhook.cli import main
from qbhook.config import parse_config
from qbhook.decide.facts import PoolFact, map_to_pool, split_links
from qbhook.errors import ConfigError, ExitCode

BASE = {
    "catalog": "/var/lib/qbhook/catalog.sqlite",
    "pools": {"stash": {"path": "/stash", "role": "primary"}, "pool": {"path": "/pool", "role": "cold"}},
    "qbittorrent": {"url": "http://127.0.0.1:8080", "username": "admin", "password": "x"},
}


def cfg(roots):
    return parse_config({**BASE, "seeding_roots": roots}, env={})


def test_single_path_stays_valid_and_a_list_gives_every_root_build_root_first():
    c = cfg({"stash": "/stash/seed", "pool": ["/pool/seed", "/pool/xseed-links"]})
    assert c.primary.seeding_roots == (Path("/stash/seed"),)
    assert c.cold.seeding_root == Path("/pool/seed")  # where new views are built
    assert c.cold.seeding_roots == (Path("/pool/seed"), Path("/pool/xseed-links"))
    assert c.seeding_roots == (Path("/stash/seed"), Path("/pool/seed"), Path("/pool/xseed-links"))
    assert c.seeding_root_of("/pool/xseed-links/T/a.mkv").name == "pool"
    assert c.seeding_root_of("/pool/other/a.mkv") is None


@pytest.mark.parametrize(
    "roots, key, words",
    [
        ({"stash": ["/stash/seed", "/stash/seed/xs"], "pool": "/pool/seed"}, "seeding_roots.stash[0]", "overlaps"),
        ({"stash": ["/stash/seed", "/stash/seed"], "pool": "/pool/seed"}, "seeding_roots.stash[0]", "same folder"),
        ({"stash": ["/stash/seed", "/pool/x"], "pool": "/pool/seed"}, "seeding_roots.stash[1]", "not inside pool"),
        ({"stash": [], "pool": "/pool/seed"}, "seeding_roots.stash", "at least one"),
        ({"stash": ["/stash/seed", "relative"], "pool": "/pool/seed"}, "seeding_roots.stash[1]", "absolute"),
        ({"stash": ["/stash/seed", 5], "pool": "/pool/seed"}, "seeding_roots.stash[1]", "must be a path"),
    ],
)
def test_bad_roots_are_one_line_config_errors_naming_the_key(roots, key, words):
    with pytest.raises(ConfigError) as ei:
        cfg(roots)
    assert ei.value.key == key and words in ei.value.message and "\n" not in ei.value.message
    assert ei.value.exit_code == ExitCode.CONFIG == 78


def test_nested_roots_exit_78_from_the_cli(tmp_path):
    import yaml

    p = tmp_path / "c.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                **BASE,
                "catalog": str(tmp_path / "c.sqlite"),
                "seeding_roots": {"stash": ["/stash/a", "/stash/a/b"], "pool": "/pool/s"},
            }
        )
    )
    r = CliRunner().invoke(main, ["--config", str(p), "config", "check"])
    first, *rest = r.output.splitlines()
    assert r.exit_code == 78 and "overlaps" in first and all(x.startswith("  hint:") for x in rest), r.output


def test_every_root_is_seeding_tree_for_the_outside_link_rule():
    roots = [str(r) for r in cfg({"stash": ["/stash/seed", "/stash/links"], "pool": "/pool/seed"}).seeding_roots]
    seeding, other = split_links(["/stash/seed/a", "/stash/links/T/a", "/stash/media/a"], roots)
    assert seeding == ("/stash/links/T/a", "/stash/seed/a") and other == ("/stash/media/a",)


@pytest.mark.parametrize(
    "path",
    [
        "/stash/seed/a",
        "/stash//seed/./a",
        "/stash/seed/a/",
        "/stash/seed",
        "/stash/seedy/a",
        "/stash/media/a",
        "rel/a",
        "/stash/seed/../a",
        "/stash/seed/.hidden",
    ],
)
def test_one_link_is_split_as_a_list_of_it_with_another_is(path):
    """split_links' one-path shortcut (most inodes have one link) answers as the general rule:
    canonical, inside or not on whole components, a spelling that cannot be made canonical dropped."""
    roots = ["/stash/seed", "/stash/links"]
    seeding, other = split_links([path, "/stash/links/z"], roots)
    general = (tuple(p for p in seeding if p != "/stash/links/z"), other)
    assert split_links([path], roots) == general
    assert split_links((path,), roots) == general


def _pf(name, *roots):
    return PoolFact(name, "primary", f"/{name}", roots[0], f"fs-{name}", 0, more_seeding_roots=tuple(roots[1:]))


def test_map_to_pool_keeps_the_root_index_and_falls_back_to_the_build_root():
    stash = _pf("stash", "/stash/seed", "/stash/links")
    pool2 = _pf("pool", "/pool/seed", "/pool/links")
    pool1 = _pf("pool", "/pool/seed")
    assert map_to_pool("/stash/links/T/x", stash, pool2) == "/pool/links/T/x"
    assert map_to_pool("/pool/links/T/x", pool2, stash) == "/stash/links/T/x"  # round trip
    assert map_to_pool("/stash/seed/movies", stash, pool2) == "/pool/seed/movies"
    assert map_to_pool("/stash/links/T/x", stash, pool1) == "/pool/seed/T/x"
    with pytest.raises(ValueError):
        map_to_pool("/stash/media/x", stash, pool2)
