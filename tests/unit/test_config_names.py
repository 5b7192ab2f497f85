"""Tag and category settings hold what the clients keep as one tag or category (R61).

``relocated_tag: "qbhook,moved"`` passed ``config check``; every demotion then copied and
relocated its whole group and failed its Tag step (the adapters refuse a ',' tag).
``demote_require_tag: "no,HL"`` (or one with spaces around it) matched no torrent: the clients
split tags on ',' and trim them, and nothing ever demoted, silently.
"""

import copy

import pytest

from qbhook.clients.model import check_tags, parse_tags
from qbhook.config import parse_config
from qbhook.errors import BadRequest, ConfigError
from qbhook.names import category_problem, tag_problem
from tests.unit.test_config import BASE

ENV = {"QBHOOK_QBT_PASSWORD": "s3cret"}


def _policy(**policy):
    d = copy.deepcopy(BASE)
    d["policy"] = policy
    return d


@pytest.mark.parametrize("key", ["relocated_tag", "demote_require_tag"])
@pytest.mark.parametrize(
    "value, words",
    [
        ("qbhook,moved", "cannot contain ','"),
        (",", "cannot contain ','"),
        (" noHL", "start or end with spaces"),
        ("noHL ", "start or end with spaces"),
        ("no\nHL", "control character"),
        ("no\tHL", "control character"),
        ("noHL\x1b[2J", "control character"),
        ("   ", "cannot be empty"),
    ],
)
def test_a_tag_setting_the_clients_would_split_or_trim_is_a_one_line_error_naming_key_and_value(key, value, words):
    with pytest.raises(ConfigError) as ei:
        parse_config(_policy(**{key: value}), env=ENV)
    e = ei.value
    assert e.key == f"policy.{key}" and words in e.message, e.message
    assert "\n" not in e.message and e.exit_code == 78
    assert "got '" in e.message  # the value, quoted (escaped: one line)


@pytest.mark.parametrize("value", ["~noHL", "qbhook-relocated", "no HL", "émigré", "a/b", 2024])
def test_a_tag_the_clients_keep_as_written_is_taken(value):
    c = parse_config(_policy(relocated_tag=value, demote_require_tag=value), env=ENV)
    assert c.policy.relocated_tag == str(value) == c.policy.demote_require_tag
    # what the adapters send and read back is the same one tag
    assert check_tags([str(value)]) == [str(value)] and parse_tags(f"x, {value}") == {"x", str(value)}


def test_the_tag_rule_has_one_home_and_the_adapters_refuse_by_it():
    for bad in ("a,b", "a\nb"):
        assert tag_problem(bad)
        with pytest.raises(BadRequest, match="a tag cannot contain"):
            check_tags([bad])
    # the adapters strip what they send (qBittorrent trims too); the setting is refused instead
    assert check_tags([" a "]) == ["a"] and tag_problem(" a ")


@pytest.mark.parametrize(
    "name, words",
    [
        ("/movies", "start or end with '/'"),
        ("movies/", "start or end with '/'"),
        ("movies//4k", "'//'"),
        ("movies\\4k", "'\\'"),
    ],
)
def test_a_category_qbittorrent_refuses_is_an_error_when_every_client_is_a_qbittorrent(name, words):
    with pytest.raises(ConfigError) as ei:
        parse_config(_policy(demote_categories=["tv", name]), env=ENV)
    e = ei.value
    assert e.key == "policy.demote_categories[1]" and words in e.message, e.message
    assert "\n" not in e.message and e.exit_code == 78


def test_a_category_qbittorrent_accepts_is_taken_and_a_ruTorrent_label_is_not_judged():
    c = parse_config(_policy(demote_categories=["movies/4k", "tv shows", "a.b"]), env=ENV)
    assert c.policy.demote_categories == ("movies/4k", "tv shows", "a.b")
    # ruTorrent's labels (rTorrent's categories) have no such rule: not predicted
    d = _policy(demote_categories=["/odd/"])
    d["clients"] = [{"type": "rtorrent", "name": "rt", "scgi": "127.0.0.1:5000"}]
    assert parse_config(d, env=ENV).policy.demote_categories == ("/odd/",)
    assert category_problem("/odd/") and category_problem("movies/4k") is None
