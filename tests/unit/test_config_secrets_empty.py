"""An empty secret from a variable or a file is refused at load, as an empty inline one is (R61).

``password: ""`` was exit 78 ("must not be empty"), but ``password_env`` naming a variable set
to "" or ``password_file`` naming an empty file was taken: every request then failed as a
refused login. The error names the variable or the file, never a value.
"""

import copy

import pytest

from qbhook.config import parse_config
from qbhook.errors import ConfigError
from tests.unit.test_cli_catalog import Env
from tests.unit.test_config import BASE

SECRET = "s3cret-never-shown"


def _load(d, environ):
    with pytest.raises(ConfigError) as ei:
        parse_config(d, env=environ)
    e = ei.value
    assert e.exit_code == 78 and "\n" not in e.message
    return e


def test_an_empty_password_variable_is_refused_naming_the_variable():
    e = _load(BASE, {"QBHOOK_QBT_PASSWORD": ""})
    assert e.key == "qbittorrent.password_env"
    assert str(e) == "config: qbittorrent.password_env: environment variable QBHOOK_QBT_PASSWORD is set but empty"


def test_an_empty_variable_is_refused_even_with_a_file_or_an_inline_value_behind_it(tmp_path):
    (tmp_path / "pw").write_text(SECRET)
    d = copy.deepcopy(BASE)
    d["qbittorrent"].update(password_file=str(tmp_path / "pw"), password=SECRET)
    e = _load(d, {"QBHOOK_QBT_PASSWORD": ""})
    assert e.key == "qbittorrent.password_env" and SECRET not in str(e)


@pytest.mark.parametrize("content", ["", "\n", "  \n\t\n"])
def test_an_empty_password_file_is_refused_naming_the_file(tmp_path, content):
    (tmp_path / "pw").write_text(content)
    d = copy.deepcopy(BASE)
    d["qbittorrent"] = {**d["qbittorrent"], "password_env": None, "password_file": str(tmp_path / "pw")}
    e = _load(d, {})
    assert e.key == "qbittorrent.password_file" and str(tmp_path / "pw") in e.message and "empty" in e.message


def test_an_empty_server_token_or_password_from_a_variable_or_file_is_refused(tmp_path):
    (tmp_path / "tok").write_text("\n")
    ok = {"QBHOOK_QBT_PASSWORD": SECRET}
    for server, environ, key in [
        ({"token_env": "TOK"}, {**ok, "TOK": ""}, "server.token_env"),
        ({"token_file": str(tmp_path / "tok")}, ok, "server.token_file"),
        ({"username": "u", "password_env": "SPW"}, {**ok, "SPW": ""}, "server.password_env"),
    ]:
        e = _load({**BASE, "server": server}, environ)
        assert e.key == key and SECRET not in str(e), str(e)


def test_a_secret_with_a_value_is_taken_and_empty_notify_urls_stay_no_notifications(tmp_path):
    (tmp_path / "urls").write_text("")
    d = {**BASE, "server": {"token_env": "TOK"}, "notify": {"urls_env": "NU", "urls_file": str(tmp_path / "urls")}}
    c = parse_config(d, env={"QBHOOK_QBT_PASSWORD": " ", "TOK": SECRET, "NU": ""})
    assert c.qbittorrent[0].password == " " and c.server.token == SECRET  # spaces are a password
    assert c.notify.urls == ()  # none: as `urls: []`, nothing to send
    assert parse_config(d, env={"QBHOOK_QBT_PASSWORD": SECRET, "TOK": SECRET}).notify.urls == ()


def test_a_command_that_asks_a_client_stops_with_78_on_an_empty_password_variable(tmp_path, monkeypatch):
    e = Env(tmp_path)
    e.data["qbittorrent"] = {"url": "http://127.0.0.1:1", "password_env": "QBHOOK_TEST_QBT_PW"}
    e.save()
    monkeypatch.setenv("QBHOOK_TEST_QBT_PW", "")
    r = e.run("torrents", expect=78)
    assert "qbittorrent.password_env: environment variable QBHOOK_TEST_QBT_PW is set but empty" in r.stderr
    assert "Traceback" not in r.output
