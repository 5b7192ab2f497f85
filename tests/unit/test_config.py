from pathlib import Path

import pytest

from qbhook.config import check_paths, describe, load_config, parse_config, parse_duration, parse_size
from qbhook.errors import ConfigError

BASE = {
    "catalog": "/var/lib/qbhook/catalog.sqlite",
    "pools": {"stash": {"path": "/stash", "role": "primary"}, "pool": {"path": "/pool", "role": "cold"}},
    "seeding_roots": {"stash": "/stash/data/media/torrents/seeding", "pool": "/pool/data/media/torrents/seeding"},
    "qbittorrent": {"url": "http://127.0.0.1:8080", "username": "admin", "password_env": "QBHOOK_QBT_PASSWORD",
                    "path_map": [{"client": "/data/media", "host": "/stash/data/media"}]},
}


def cfg(**over):
    d = {**BASE, **over}
    return parse_config(d, env={"QBHOOK_QBT_PASSWORD": "s3cret"})


def test_issue_example_parses():
    c = cfg()
    assert c.primary.name == "stash" and c.cold.name == "pool"
    assert c.primary.seeding_root == Path("/stash/data/media/torrents/seeding")
    q = c.qbittorrent[0]
    assert q.password == "s3cret" and q.path_map == (("/data/media", "/stash/data/media"),)
    assert c.policy.demote_require_tag == "~noHL" and c.policy.auto_apply is False


def test_secrets_masked_in_describe():
    d = describe(cfg())
    assert d["qbittorrent"][0]["password"] == "********"
    assert "s3cret" not in repr(d)
    assert "s3cret" not in repr(cfg())


@pytest.mark.parametrize("mutate, key, words", [
    (lambda d: d.update(bogus=1), "bogus", "not a known setting"),
    (lambda d: d["pools"]["stash"].update(role="hot"), "pools.stash.role", "must be one of"),
    (lambda d: d["seeding_roots"].update(stash="/pool/x"), "seeding_roots.stash", "not inside pool"),
    (lambda d: d["seeding_roots"].pop("pool"), "seeding_roots", "no entry for pool"),
    (lambda d: (d["pools"]["pool"].update(path="/stash/sub"), d["seeding_roots"].update(pool="/stash/sub/s")),
     "pools", "overlaps"),
    (lambda d: d["pools"]["pool"].update(role="primary"), "pools", "exactly one"),
    (lambda d: d.update(catalog="relative.sqlite"), "catalog", "absolute"),
    (lambda d: d["qbittorrent"].update(url="ftp://x"), "qbittorrent.url", "http"),
    (lambda d: d["qbittorrent"].update(password_env="NOPE"), "qbittorrent.password_env", "not set"),
    (lambda d: d.update(policy={"auto_apply": "yes"}), "policy.auto_apply", "true or false"),
    (lambda d: d.update(policy={"frobnicate": 1}), "policy.frobnicate", "not a known setting"),
    (lambda d: d.update(scan={"mass_delete_max_share": 5}), "scan.mass_delete_max_share", "fraction"),
    (lambda d: d["qbittorrent"]["path_map"].append({"client": "data", "host": "/x"}), "path_map[1].client", "absolute"),
])
def test_errors_name_the_key(mutate, key, words):
    import copy
    d = copy.deepcopy(BASE)
    mutate(d)
    with pytest.raises(ConfigError) as ei:
        parse_config(d, env={"QBHOOK_QBT_PASSWORD": "x"})
    assert key in str(ei.value) and words in str(ei.value)


def test_several_qbittorrent_instances_and_password_file(tmp_path):
    (tmp_path / "pw").write_text("fromfile\n")
    c = cfg(qbittorrent=[{"name": "a", "url": "http://a:1", "password_file": str(tmp_path / "pw")},
                         {"name": "b", "url": "http://b:1", "password": "inline"}])
    assert [q.name for q in c.qbittorrent] == ["a", "b"]
    assert c.qbittorrent[0].password == "fromfile" and c.qbittorrent[1].password == "inline"
    with pytest.raises(ConfigError, match="duplicate"):
        cfg(qbittorrent=[{"name": "a", "url": "http://a:1"}, {"name": "a", "url": "http://b:1"}])


def test_sizes_and_durations():
    assert parse_size("64MiB") == 64 * 2**20 and parse_size("1 GB") == 10**9 and parse_size("12") == 12
    assert parse_duration("2h") == 7200 and parse_duration("1.5d") == 1.5 * 86400
    c = cfg(policy={"promote_copy_max_bytes": "10MiB", "grace_period": "1d"})
    assert c.policy.promote_copy_max_bytes == 10 * 2**20 and c.policy.grace_period == 86400


def test_check_paths_reports_missing_pool(tmp_path):
    c = cfg(catalog=str(tmp_path / "c.sqlite"))
    problems = check_paths(c)
    assert any("pools.stash.path" in p and "mounted" in p for p in problems)


def test_example_config_loads(monkeypatch):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("QBHOOK_QBT_PASSWORD", "x")
    monkeypatch.setenv("QBHOOK_SERVER_PASSWORD", "x")
    monkeypatch.setenv("QBHOOK_SERVER_TOKEN", "x")
    c = load_config(root / "config.example.yaml")
    assert c.primary.path == Path("/stash")


def test_not_a_mapping(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
    p.write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
