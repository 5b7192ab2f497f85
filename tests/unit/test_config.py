import os
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from qbhook.config import (
    check_paths,
    describe,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)
from qbhook.errors import ConfigError
from tests.timebox import timebox

BASE = {
    "catalog": "/var/lib/qbhook/catalog.sqlite",
    "pools": {"stash": {"path": "/stash", "role": "primary"}, "pool": {"path": "/pool", "role": "cold"}},
    "seeding_roots": {"stash": "/stash/data/media/torrents/seeding", "pool": "/pool/data/media/torrents/seeding"},
    "qbittorrent": {
        "url": "http://127.0.0.1:8080",
        "username": "admin",
        "password_env": "QBHOOK_QBT_PASSWORD",
        "path_map": [{"client": "/data/media", "host": "/stash/data/media"}],
    },
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


@pytest.mark.parametrize(
    "mutate, key, words",
    [
        (lambda d: d.update(bogus=1), "bogus", "not a known setting"),
        (lambda d: d["pools"]["stash"].update(role="hot"), "pools.stash.role", "must be one of"),
        (lambda d: d["seeding_roots"].update(stash="/pool/x"), "seeding_roots.stash", "not inside pool"),
        (lambda d: d["seeding_roots"].pop("pool"), "seeding_roots", "no entry for pool"),
        (
            lambda d: (d["pools"]["pool"].update(path="/stash/sub"), d["seeding_roots"].update(pool="/stash/sub/s")),
            "pools",
            "overlaps",
        ),
        (lambda d: d["pools"]["pool"].update(role="primary"), "pools", "exactly one"),
        # '?' marked older versions' rows for files outside every pool: migration 11 deletes them
        (
            lambda d: (
                d["pools"].update({"?": d["pools"].pop("pool")}),
                d["seeding_roots"].update({"?": d["seeding_roots"].pop("pool")}),
            ),
            "pools.?",
            "reserved",
        ),
        (lambda d: d.update(catalog="relative.sqlite"), "catalog", "absolute"),
        (lambda d: d["qbittorrent"].update(url="ftp://x"), "qbittorrent.url", "http"),
        # each was taken, then retried 4 times and reported as "cannot reach qBittorrent" (exit 4)
        (lambda d: d["qbittorrent"].update(url="http://"), "qbittorrent.url", "with a host"),
        (lambda d: d["qbittorrent"].update(url="http://exa mple:8080"), "qbittorrent.url", "no spaces"),
        (lambda d: d["qbittorrent"].update(url="http://127.0.0.1:99999"), "qbittorrent.url", "no valid port"),
        (lambda d: d["qbittorrent"].update(url="http://127.0.0.1:x"), "qbittorrent.url", "no valid port"),
        (lambda d: d["qbittorrent"].update(password_env="NOPE"), "qbittorrent.password_env", "not set"),
        (lambda d: d.update(policy={"auto_apply": "yes"}), "policy.auto_apply", "true or false"),
        (lambda d: d.update(policy={"frobnicate": 1}), "policy.frobnicate", "not a known setting"),
        (lambda d: d.update(scan={"mass_delete_max_share": 5}), "scan.mass_delete_max_share", "fraction"),
        # an int past float's range: float() raised OverflowError, a traceback (found by the fuzz)
        (lambda d: d.update(policy={"promote_copy_max_ratio": 10**400}), "policy.promote_copy_max_ratio", "fraction"),
        (
            lambda d: d["qbittorrent"]["path_map"].append({"client": "data", "host": "/x"}),
            "path_map[1].client",
            "absolute",
        ),
    ],
)
def test_errors_name_the_key(mutate, key, words):
    import copy

    d = copy.deepcopy(BASE)
    mutate(d)
    with pytest.raises(ConfigError) as ei:
        parse_config(d, env={"QBHOOK_QBT_PASSWORD": "x"})
    assert key in str(ei.value) and words in str(ei.value)


def test_a_password_env_that_is_not_utf8_is_a_config_error_that_never_shows_it():
    with pytest.raises(ConfigError) as ei:
        parse_config(BASE, env={"QBHOOK_QBT_PASSWORD": "s3\udcffcret"})  # os.environ's spelling of b"\xff"
    assert str(ei.value) == (
        "config: qbittorrent.password_env: environment variable QBHOOK_QBT_PASSWORD is not valid UTF-8 text"
    )
    assert "s3" not in str(ei.value)
    assert cfg().qbittorrent[0].url == "http://127.0.0.1:8080"  # a good one is taken as it is


def test_several_qbittorrent_instances_and_password_file(tmp_path):
    (tmp_path / "pw").write_text("fromfile\n")
    c = cfg(
        qbittorrent=[
            {"name": "a", "url": "http://a:1", "password_file": str(tmp_path / "pw")},
            {"name": "b", "url": "http://b:1", "password": "inline"},
        ]
    )
    assert [q.name for q in c.qbittorrent] == ["a", "b"]
    assert c.qbittorrent[0].password == "fromfile" and c.qbittorrent[1].password == "inline"
    with pytest.raises(ConfigError, match="duplicate"):
        cfg(qbittorrent=[{"name": "a", "url": "http://a:1"}, {"name": "a", "url": "http://b:1"}])


def test_sizes_and_durations():
    assert parse_size("64MiB") == 64 * 2**20 and parse_size("1 GB") == 10**9 and parse_size("12") == 12
    assert parse_duration("2h") == 7200 and parse_duration("1.5d") == 1.5 * 86400
    assert parse_size("1.5K") == 1536  # a fraction of a larger unit is bytes


@pytest.mark.parametrize(
    "text, size",
    [("1.001MB", 1_001_000), ("2.01KB", 2010), ("123456789012345678", 123456789012345678), ("0.3MB", 300_000)],
)
def test_a_size_is_read_exactly_not_through_a_float(text, size):
    """R87: 1.001 is no binary fraction: as a float times 10**6 it was 1,000,999 bytes; an
    18-digit count lost its last digits (123456789012345680)."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0.1", "1.5", "0.9B", "\u0663", "\u0663GiB", "1_0", "0.0009KB"])
def test_a_size_is_whole_bytes_in_ascii_digits(text):
    """R80: parse_size("0.1") was 0 (the config refused it only by a check beside it, which
    `--min-size` did not make); \\d read other scripts' digits ("٣" was 3)."""
    with pytest.raises(ValueError):
        parse_size(text)
    with pytest.raises(ConfigError, match="promote_copy_max_bytes: (must be a whole number of bytes|cannot read)"):
        cfg(policy={"promote_copy_max_bytes": text})


@pytest.mark.parametrize("text", ["\u0663", "\u0663h", "1_0"])
def test_a_duration_is_ascii_digits(text):
    with pytest.raises(ValueError):
        parse_duration(text)
    c = cfg(policy={"promote_copy_max_bytes": "10MiB", "grace_period": "1d"})
    assert c.policy.promote_copy_max_bytes == 10 * 2**20 and c.policy.grace_period == 86400


def test_check_paths_reports_missing_pool(tmp_path):
    c = cfg(catalog=str(tmp_path / "c.sqlite"))
    problems = check_paths(c)
    assert any("pools.stash.path" in p and "mounted" in p for p in problems)


def test_a_users_ignore_names_add_to_qbhooks_own_folders_never_replace_them():
    # A list that replaced them let the orphans walk count held links as reclaimable orphans.
    from qbhook.config import ALWAYS_IGNORED
    from qbhook.move.fsops import HOLDING_DIR, STAGING_DIR

    assert {HOLDING_DIR, STAGING_DIR, ".zfs"} <= set(ALWAYS_IGNORED)
    assert cfg(scan={"ignore_names": ["@eaDir"]}).scan.ignore_names == (*ALWAYS_IGNORED, "@eaDir")
    assert cfg().scan.ignore_names == ALWAYS_IGNORED
    assert cfg(scan={"ignore_names": []}).scan.ignore_names == ALWAYS_IGNORED


def test_example_config_loads(monkeypatch):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("QBHOOK_QBT_PASSWORD", "x")
    monkeypatch.setenv("QBHOOK_SERVER_PASSWORD", "x")
    monkeypatch.setenv("QBHOOK_SERVER_TOKEN", "x")
    c = load_config(root / "config.example.yaml")
    assert c.primary.path == Path("/stash")


def test_sweep_keep_history_is_a_duration_defaulting_to_seven_days():
    assert cfg().sweep.keep_history == 7 * 86400
    assert cfg(sweep={"keep_history": "2d"}).sweep.keep_history == 2 * 86400
    with pytest.raises(ConfigError, match="sweep.keep_history"):
        cfg(sweep={"keep_history": "forever"})


def test_sweep_full_every_is_a_duration_defaulting_to_six_hours():
    assert cfg().sweep.full_every == 6 * 3600
    assert cfg(sweep={"full_every": "30m"}).sweep.full_every == 1800
    assert cfg(sweep={"full_every": 0}).sweep.full_every == 0  # every sweep re-plans everything
    with pytest.raises(ConfigError, match="sweep.full_every"):
        cfg(sweep={"full_every": "soon"})
    with pytest.raises(ConfigError, match="sweep"):
        cfg(sweep={"full_evry": "1h"})


def test_not_a_mapping(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
    p.write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


# --------------------------------------------------------------------------- kinds, units, ranges
# Issue 9 finding 8 and issue 14: each of these tracebacked or was accepted silently.


def _load_text(tmp_path, text: str | bytes):
    p = tmp_path / "c.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return load_config(p, env={"QBHOOK_QBT_PASSWORD": "x"})


BASE_YAML = """\
catalog: /var/lib/qbhook/catalog.sqlite
pools: {stash: {path: /stash, role: primary}, pool: {path: /pool, role: cold}}
seeding_roots: {stash: /stash/seed, pool: /pool/seed}
qbittorrent: {url: "http://127.0.0.1:8080", password_env: QBHOOK_QBT_PASSWORD%s}
%s
"""


@pytest.mark.parametrize(
    "qbt, extra, key, words",
    [
        (", timeout: fast", "", "qbittorrent.timeout", "cannot read 'fast' as a duration"),
        (", timeout: -5", "", "qbittorrent.timeout", "must be greater than 0s"),
        (", timeout: 0", "", "qbittorrent.timeout", "must be greater than 0s"),
        (", timeout: .inf", "", "qbittorrent.timeout", "finite"),
        (", timeout: '1e999s'", "", "qbittorrent.timeout", "cannot read"),
        ("", "policy: {max_groups_per_run: .nan}", "policy.max_groups_per_run", "whole number"),
        ("", "policy: {max_groups_per_run: 2.5}", "policy.max_groups_per_run", "whole number"),
        ("", "policy: {max_groups_per_run: 0}", "policy.max_groups_per_run", "at least 1"),
        ("", "policy: {min_seeding_age: .nan}", "policy.min_seeding_age", "finite"),
        ("", "policy: {grace_period: -1h}", "policy.grace_period", "cannot read"),
        ("", "policy: {promote_copy_max_bytes: 1.5}", "policy.promote_copy_max_bytes", "whole number of bytes"),
        ("", "policy: {promote_copy_max_bytes: '1.5'}", "policy.promote_copy_max_bytes", "whole number of bytes"),
        ("", "policy: {promote_copy_max_ratio: .nan}", "policy.promote_copy_max_ratio", "finite"),
        ("", "scan: {mass_delete_min_paths: '100'}", "scan.mass_delete_min_paths", "whole number"),
        ("", "scan: {settle_seconds: 99999999999}", "scan.settle_seconds", "at most"),
        ("", "server: {port: 99999}", "server.port", "from 1 to 65535"),
        ("", "server: {port: 0}", "server.port", "from 1 to 65535"),
        ("", "server: {port: '8080'}", "server.port", "from 1 to 65535"),
        ("", "server: {port: true}", "server.port", "from 1 to 65535"),
        ("", "server: {max_body: 0}", "server.max_body", "greater than 0"),
        ("", "server: {max_body: 10XB}", "server.max_body", "cannot read '10XB' as a size"),
        ("", "server: {sweep_interval: 0}", "server.sweep_interval", "greater than 0s"),
        ("", "server: {max_pending: 0}", "server.max_pending", "at least 1"),
        ("", "server: {max_pending: 2.5}", "server.max_pending", "whole number"),
        ("", "server: {max_pending: lots}", "server.max_pending", "whole number"),
        ("", "server: {sweep_interval: 1y}", "server.sweep_interval", "cannot read"),
        ("", "server: {token_file: [a]}", "server.token_file", "must be a string"),
        ("", "lock_dir: \"/run/q\\0x\"", "lock_dir", "NUL"),
        (
            ", path_map: [{client: /data, host: /stash/data}, {client: /data/, host: /pool/data}]",
            "",
            "qbittorrent.path_map",
            "client prefix /data is mapped twice",
        ),
        (
            ", path_map: [{client: /data, host: /stash/data}, {client: /other, host: /stash/data}]",
            "",
            "qbittorrent.path_map",
            "host prefix /stash/data is mapped twice",
        ),
        (
            ", path_map: [{client: /data, host: /stash/data}, {client: /data/media, host: /pool/media}]",
            "",
            "qbittorrent.path_map",
            "client prefix /data/media lies inside /data",
        ),
        (
            ", path_map: [{client: /a, host: /stash}, {client: /b, host: /stash/sub}]",
            "",
            "qbittorrent.path_map",
            "host prefix /stash/sub lies inside /stash",
        ),
    ],
)
def test_defects_are_one_line_errors_naming_the_key(tmp_path, qbt, extra, key, words):
    with pytest.raises(ConfigError) as ei:
        _load_text(tmp_path, BASE_YAML % (qbt, extra))
    e = ei.value
    assert e.key == key and words in e.message, e.message
    assert "\n" not in e.message and e.exit_code == 78


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("30", 30.0),
        ("30s", 30.0),
        ("2.5", 2.5),
        ("5m", 300.0),
        ("90min", 5400.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1.5d", 129600.0),
        ("1w", 604800.0),
        ("'30 s'", 30.0),
        ("30S", 30.0),
    ],
)
def test_durations_accept_numbers_and_units(tmp_path, text, seconds):
    c = _load_text(tmp_path, BASE_YAML % (f", timeout: {text}", f"server: {{sweep_interval: {text}}}"))
    assert c.qbittorrent[0].timeout == seconds and c.server.sweep_interval == seconds


@pytest.mark.parametrize(
    "text, n",
    [
        ("262144", 262144),
        ("256KiB", 256 * 1024),
        ("500MB", 500 * 10**6),
        ("10GiB", 10 * 2**30),
        ("1.5GiB", 3 * 2**29),
        ("2 TB", 2 * 10**12),
        ("64M", 64 * 2**20),
        ("1.0e+3", 1000),
    ],
)
def test_sizes_accept_bytes_and_units(tmp_path, text, n):
    c = _load_text(tmp_path, BASE_YAML % ("", f"server: {{max_body: {text}}}"))
    assert c.server.max_body == n and isinstance(c.server.max_body, int)


def test_nested_path_map_that_agrees_is_accepted():
    c = cfg(
        qbittorrent={
            "url": "http://q:1",
            "password": "p",
            "path_map": [
                {"client": "/data", "host": "/stash/data"},
                {"client": "/data/media/", "host": "/stash/data/media"},
            ],
        }
    )
    assert c.qbittorrent[0].path_map == (("/data", "/stash/data"), ("/data/media", "/stash/data/media"))


def test_non_utf8_config_is_one_line_error(tmp_path):
    with pytest.raises(ConfigError) as ei:
        _load_text(tmp_path, (BASE_YAML % ("", "policy: {relocated_tag: caf\xe9}")).encode("latin-1"))
    assert "is not UTF-8 text (byte 0xe9 on line 5)" in ei.value.message and "\n" not in ei.value.message


@pytest.mark.parametrize("text", ["a: 2001-13-45\n", "a: [\n", "a: *nope\n", "{a: 1, a: [}\n", "\t- x\n"])
def test_bad_yaml_is_one_line_error(tmp_path, text):
    with pytest.raises(ConfigError) as ei:
        _load_text(tmp_path, text)
    assert "is not valid YAML" in ei.value.message and "\n" not in ei.value.message


def test_unreadable_secret_file_is_a_config_error(tmp_path):
    fifo = tmp_path / "pw.fifo"
    os.mkfifo(fifo)
    (tmp_path / "latin1").write_bytes(b"caf\xe9")
    for f, words in ((fifo, "not a regular file"), (tmp_path / "latin1", "not UTF-8")):
        with timebox(5, "config load"), pytest.raises(ConfigError, match=words):  # a FIFO must not block
            cfg(qbittorrent={"url": "http://q:1", "password_file": str(f)})


# Defaults of the *arr stack and its neighbours (issue 14): qbhook must not take any of them.
TAKEN_PORTS = {
    8989,
    7878,
    8686,
    8787,
    9696,
    6767,
    8080,
    8181,
    7476,
    2468,
    7474,
    8096,
    5055,
    5656,
    32400,
    9117,
    9090,
    6789,
    6969,
    9100,
    3000,
}


def test_default_port_is_free_of_the_arr_stack():
    from qbhook.config import ServerConfig

    root = Path(__file__).resolve().parents[2]
    assert ServerConfig().port not in TAKEN_PORTS
    example = yaml.safe_load((root / "config.example.yaml").read_text())
    assert example["server"]["port"] == ServerConfig().port
    for rel in ("README.md", "hooks/qbt-hook.sh", "config.example.yaml", "contrib/systemd/qbhook.service"):
        assert ":8686" not in (root / rel).read_text() and "port: 8686" not in (root / rel).read_text(), rel


def test_example_config_names_qbit_manages_real_nohardlinks_tag(monkeypatch):
    root = Path(__file__).resolve().parents[2]
    text = (root / "config.example.yaml").read_text()
    assert "uses ~noHL by default" not in text and "`noHL` by default" in text
    for k in ("QBHOOK_QBT_PASSWORD", "QBHOOK_SERVER_PASSWORD", "QBHOOK_SERVER_TOKEN"):
        monkeypatch.setenv(k, "x")
    c = load_config(root / "config.example.yaml")
    assert c.policy.demote_require_tag == "noHL"
    assert (c.qbittorrent[0].timeout, c.server.sweep_interval, c.server.max_body) == (30.0, 21600.0, 262144)
    assert c.server.max_pending == 1000


def test_every_setting_has_a_declared_kind():
    """A new dataclass field without a reader must fail loudly, not fall back to guessing."""
    from qbhook import config as config_mod

    for cls, table in ((config_mod.PolicyConfig, config_mod._POLICY), (config_mod.ScanConfig, config_mod._SCAN)):
        assert set(table) == {f.name for f in fields(cls)}
    assert set(config_mod._SERVER) | set(config_mod._SERVER_SECRETS) == {
        f.name for f in fields(config_mod.ServerConfig)
    }
    assert set(config_mod._QBT) | set(config_mod._QBT_OTHER) == {f.name for f in fields(config_mod.QbtConfig)}


@pytest.mark.parametrize(
    ("server", "env", "key"),
    [
        ({"token": " tok3n"}, {}, "server.token"),
        ({"token_env": "TOK"}, {"TOK": "tok3n\n"}, "server.token_env"),
    ],
)
def test_a_server_token_with_spaces_around_it_is_refused_naming_where_it_came_from(server, env, key):
    # Taken as written, it refused every webhook, page and scrape with 401 (review R2).
    with pytest.raises(ConfigError, match=key) as e:
        parse_config({**BASE, "server": server}, env={"QBHOOK_QBT_PASSWORD": "s3cret", **env})
    assert "spaces" in str(e.value) and "tok3n" not in str(e.value)  # a secret is never shown


def test_a_server_token_file_keeps_being_stripped(tmp_path):
    f = tmp_path / "token"
    f.write_text("tok3n\n")
    c = parse_config({**BASE, "server": {"token_file": str(f)}}, env={"QBHOOK_QBT_PASSWORD": "s3cret"})
    assert c.server.token == "tok3n"


@pytest.mark.parametrize(
    ("server", "env", "content", "key"),
    [
        ({"token": "p\u00e4ssw\u00f6rd"}, {}, None, "server.token"),
        ({"token_env": "TOK"}, {"TOK": "p\u00e4ssw\u00f6rd"}, None, "server.token_env"),
        ({"token_env": "TOK"}, {"TOK": "pass\x7fword"}, None, "server.token_env"),
        ({"token": "pass\tword"}, {}, None, "server.token"),
        ({}, {}, "p\u00e4ssw\u00f6rd\n", "server.token_file"),
    ],
)
def test_a_server_token_that_is_not_printable_ascii_is_refused_naming_where_it_came_from(
    tmp_path, server, env, content, key
):
    # waitress decodes header values as latin-1, auth compares UTF-8: such a token matched only
    # as ?apikey=, every X-Qbhook-Token, X-Api-Key and Bearer offer was refused 401 (review R60).
    if content is not None:
        (tmp_path / "token").write_text(content, encoding="utf-8")
        server = {"token_file": str(tmp_path / "token")}
    with pytest.raises(ConfigError, match=key) as e:
        parse_config({**BASE, "server": server}, env={"QBHOOK_QBT_PASSWORD": "s3cret", **env})
    message = str(e.value)
    assert "non-ASCII" in message and "\n" not in message
    assert "ssw" not in message and "word" not in message  # a secret is never shown


def test_a_server_token_with_inner_spaces_is_kept():
    # Every header form and ?apikey= carry inner spaces (auth strips only the ends).
    c = parse_config({**BASE, "server": {"token": "tok 3n ~!"}}, env={"QBHOOK_QBT_PASSWORD": "s3cret"})
    assert c.server.token == "tok 3n ~!"


# R62: the README says every secret may come from *_env or *_file; server.password_file was
# refused as an unknown setting.


def test_a_server_password_file_is_read_stripped_and_shown_masked(tmp_path):
    f = tmp_path / "server-pw"
    f.write_text("pa55word\n")
    f.chmod(0o600)
    c = cfg(server={"username": "qbhook", "password_file": str(f)})
    assert c.server.password == "pa55word" and c.server.password_file == f
    shown = describe(c)["server"]
    assert shown["password"] == "********" and shown["password_file"] == str(f)
    assert not [p for p in check_paths(c) if p.startswith("server")]  # 0600: nothing to say


def test_a_server_password_file_that_cannot_be_read_is_one_config_error_line(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as e:
        cfg(server={"username": "qbhook", "password_file": str(missing)})
    assert e.value.key == "server.password_file" and str(missing) in e.value.message
    assert "\n" not in str(e.value)
    (tmp_path / "latin1").write_bytes(b"caf\xe9")
    with pytest.raises(ConfigError, match="not UTF-8") as e:
        cfg(server={"username": "qbhook", "password_file": str(tmp_path / "latin1")})
    assert "caf" not in str(e.value)  # a secret is never shown


def test_a_server_password_file_needs_a_username_too(tmp_path):
    f = tmp_path / "server-pw"
    f.write_text("pa55word\n")
    with pytest.raises(ConfigError, match="needs server.username"):
        cfg(server={"password_file": str(f)})


# --------------------------------------------------------------------------- R6 review findings


@pytest.mark.parametrize(
    "extra, key, line",
    [
        ("pools: {stash: {path: /x, role: primary}}", "'pools'", 5),  # a second pools: at the top
        ("policy: {auto_apply: true}\npolicy: {converge: true}", "'policy'", 6),
        ("policy:\n  auto_apply: true\n  auto_apply: false", "'auto_apply'", 7),
    ],
)
def test_a_repeated_key_is_refused_naming_it_and_its_line(tmp_path, extra, key, line):
    """PyYAML keeps the last of a repeated key: a second `policy:` dropped `auto_apply: true`."""
    with pytest.raises(ConfigError) as ei:
        _load_text(tmp_path, BASE_YAML % ("", extra))
    assert f":{line}:" in ei.value.message and f"key {key} is repeated" in ei.value.message
    assert ei.value.exit_code == 78 and "\n" not in ei.value.message


def test_a_yaml_merge_key_still_lets_keys_beside_it_override():
    from qbhook.config import parse_yaml

    assert parse_yaml("b: &b {x: 1, y: 1}\nd:\n  <<: *b\n  x: 2\n")["d"] == {"x": 2, "y": 1}


@pytest.mark.parametrize("url", ["http://[::1", "http://[zz]:80", "http://h:0", "http://h:99999"])
@pytest.mark.parametrize("where", ["qbittorrent", "clients"])
def test_a_malformed_client_url_is_a_config_error(tmp_path, url, where):
    qbt = f'{{url: "{url}", password: x}}'
    text = (BASE_YAML % ("", "")).replace("qbittorrent:", "old:")
    text = text.replace(text.splitlines()[3] + "\n", "")
    text += (
        f"qbittorrent: {qbt}\n" if where == "qbittorrent" else f"clients: [{{type: qbittorrent, name: q, {qbt[1:]}]\n"
    )
    with pytest.raises(ConfigError) as ei:
        _load_text(tmp_path, text)
    assert ei.value.key.endswith(".url") and url in ei.value.message
    if url.startswith("http://h:"):
        assert "1 to 65535" in ei.value.message


def test_a_password_in_a_client_url_is_shown_masked(tmp_path):
    from qbhook.clients.qbt.client import QbtClient
    from qbhook.config import describe, shown_url

    c = _load_text(tmp_path, (BASE_YAML % ("", "")).replace("http://127.0.0.1", "http://admin:hunter2@127.0.0.1"))
    assert c.qbittorrent[0].url == "http://admin:hunter2@127.0.0.1:8080"  # still sent as it is
    d = describe(c)
    assert d["qbittorrent"][0]["url"] == d["clients"][0]["url"] == "http://admin:********@127.0.0.1:8080"
    assert shown_url("http://admin@h:1/x") == "http://admin@h:1/x"
    client = QbtClient("q", "http://admin:hunter2@127.0.0.1:1", timeout=0.5, retries=1, backoff=0)
    with pytest.raises(Exception) as ei:
        client.torrents()
    assert "hunter2" not in str(ei.value) and "admin:********@127.0.0.1:1" in str(ei.value)
    assert "hunter2" not in repr(client)


@pytest.mark.parametrize("scgi", ["/run/rt\\0x.sock", "/run/rt\\nx.sock"])
def test_an_scgi_path_with_a_control_character_is_refused_at_load(tmp_path, scgi):
    with pytest.raises(ConfigError, match="control character") as ei:
        _load_text(tmp_path, BASE_YAML % ("", f'clients: [{{type: rtorrent, name: rt, scgi: "{scgi}"}}]'))
    assert ei.value.key == "clients[0].scgi" or ei.value.key.endswith(".scgi")


def test_a_default_config_in_a_folder_the_user_may_not_enter_is_one_line(monkeypatch, tmp_path):
    import qbhook.config as config

    cand = str(tmp_path / "etc-qbhook" / "config.yaml")
    real = os.stat

    def stat(path, *a, **kw):
        if os.fspath(path) == cand:  # /etc/qbhook is 0700 root, the user someone else
            raise PermissionError(13, "Permission denied", cand)
        return real(path, *a, **kw)

    monkeypatch.delenv("QBHOOK_CONFIG", raising=False)
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATHS", (cand,))
    monkeypatch.setattr(os, "stat", stat)
    with pytest.raises(ConfigError) as ei:
        config.find_config_path(None)
    assert ei.value.message == f"config: cannot read {cand}: Permission denied"
    assert ei.value.exit_code == 78


def test_a_path_written_with_a_leading_double_slash_is_spelled_as_every_torrent_path_is():
    # R10: normpath keeps "//stash"; torrents' paths are "/stash/...", so each was outside the pool.
    c = cfg(
        pools={"stash": {"path": "//stash", "role": "primary"}, "pool": {"path": "///pool", "role": "cold"}},
        seeding_roots={"stash": "//stash/data/media/torrents/seeding", "pool": "/pool/data/media/torrents/seeding"},
        catalog="//var/lib/qbhook/catalog.sqlite",
    )
    assert (str(c.primary.path), str(c.cold.path), str(c.catalog)) == (
        "/stash",
        "/pool",
        "/var/lib/qbhook/catalog.sqlite",
    )
    assert c.seeding_root_of("/stash/data/media/torrents/seeding/Movie/m.mkv") is c.primary
