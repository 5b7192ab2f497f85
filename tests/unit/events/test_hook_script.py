"""hooks/qbt-hook.sh, run with dash against real local HTTP servers."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from waitress import create_server

from qbhook.events.server import AuthConfig, create_app

SCRIPT = Path(__file__).resolve().parents[3] / "hooks" / "qbt-hook.sh"
DASH = shutil.which("dash")
pytestmark = pytest.mark.skipif(DASH is None, reason="dash is not installed")

V1 = "8f3a1c2d4e5b6a7980c1d2e3f4a5b6c7d8e9f0a1"
TOKEN = "tok-123"
# What the script sends: the fields qbhook reads (parse_qbt_hook), by their argument number
# (0: the event; N, L, G, R, D, C and Z are not sent), then QBHOOK_INSTANCE.
SENT = {"event": 0, "I": 1, "J": 2, "K": 3, "F": 7}
FIELD_ORDER = [*SENT, "instance"]


def sent(args, instance=b"") -> list[tuple[str, bytes]]:
    raw = [a if isinstance(a, bytes) else a.encode() for a in args]
    return [(name, raw[i] if i < len(raw) else b"") for name, i in SENT.items()] + [("instance", instance)]


NASTY = [
    "plain name",
    "  leading and  double  spaces and trailing ",
    "quotes ' and \" and `backticks`",
    "$HOME ${PATH} $(touch PWNED) `touch PWNED2` $((1+1))",
    "line1\nline2\n",
    "\n",
    "-n",
    "-e",
    "--data-binary=@/etc/passwd",
    "@/etc/passwd",
    "a&b=c+d%41;x|y>z<w#frag?q",
    "back\\slash\\\\ and \\n literal \\",
    "tab\there\rcr",
    "日本語 ünïcödé 🎬",
    "*",
    "[a-z]* ?",
    "~",
    "",
    "é" * 127,
    "/very/long/" + "x" * 4000,
]


class Recorder(http.server.BaseHTTPRequestHandler):
    status = 202
    delay = 0.0

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((self.path, dict(self.headers), body))
        time.sleep(self.delay)
        try:
            self.send_response(self.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"queued": 1, "coalesced": false}')
        except (BrokenPipeError, ConnectionResetError):
            pass  # the hook gave up waiting, as it should

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _umask():
    """Files the tests write are 0644 whatever the caller's umask: the script refuses a conf or
    token file that group or others may write."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.requests = []
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def run_hook(args, *, env=None, cwd, path=None, timeout=20):
    full_env = {"PATH": path or os.environ["PATH"], "HOME": str(cwd)}
    full_env.update(env or {})
    return subprocess.run(
        [DASH, str(SCRIPT), *args], env=full_env, cwd=cwd, capture_output=True, check=False, timeout=timeout
    )


def hook_args(event="added", name="A Name", content="/data/torrents/A Name"):
    return [event, V1, "-", V1, name, "tv-sonarr", "cross-seed,hd", content, content, "/data/torrents", "3", "1234"]


def received_fields(body: bytes) -> list[tuple[str, bytes]]:
    """The raw form pairs, values decoded to bytes: no charset guessing in the check."""
    pairs = []
    for item in body.split(b"&"):
        key, _, value = item.partition(b"=")
        pairs.append((key.decode("ascii"), unquote_to_bytes(value)))
    return pairs


def test_script_is_posix(tmp_path):
    assert subprocess.run([DASH, "-n", str(SCRIPT)], check=False).returncode == 0
    if shutil.which("checkbashisms"):
        assert subprocess.run(["checkbashisms", str(SCRIPT)], check=False).returncode == 0


@pytest.mark.parametrize("name", NASTY, ids=range(len(NASTY)))
def test_nasty_names_arrive_byte_for_byte(server, tmp_path, name):
    args = hook_args(name=name, content=f"/data/torrents/{name}")
    result = run_hook(args, env={"QBHOOK_URL": url(server), "QBHOOK_TOKEN": TOKEN}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()
    [(path, headers, body)] = server.requests
    assert path == "/hook/qbittorrent"
    assert headers["X-Qbhook-Token"] == TOKEN
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert received_fields(body) == sent(args)


def wire_fields(body: bytes) -> dict[str, bytes]:
    """What the form means: "NAME.hex=<hex>" is NAME's raw bytes (values that are not UTF-8)."""
    fields = {}
    for key, value in received_fields(body):
        if key.endswith(".hex"):
            key, value = key[: -len(".hex")], bytes.fromhex(value.decode("ascii"))
        assert key not in fields, f"{key} sent twice"
        fields[key] = value
    return fields


def test_non_utf8_bytes_survive(server, tmp_path):
    content = b"/bad \xff\xfe bytes \x80"
    args = [a.encode() for a in hook_args()]
    args[7] = content
    run_hook(args, env={"QBHOOK_URL": url(server), "QBHOOK_TOKEN": TOKEN}, cwd=tmp_path)
    [(_, _, body)] = server.requests
    # The whole form decodes as UTF-8 (qbhook refuses it otherwise); F comes as hex.
    for item in body.split(b"&"):
        unquote_to_bytes(item.partition(b"=")[2]).decode("utf-8")
    assert b"&F.hex=2f62616420fffe20627974657320" in body
    assert wire_fields(body)["F"] == content
    assert wire_fields(body)["K"] == V1.encode()


def test_missing_trailing_arguments_are_empty(server, tmp_path):
    run_hook(["finished", V1], env={"QBHOOK_URL": url(server) + "/", "QBHOOK_TOKEN": TOKEN}, cwd=tmp_path)
    fields = dict(received_fields(server.requests[0][2]))
    assert fields["event"] == b"finished" and fields["I"] == V1.encode() and fields["K"] == b""
    assert server.requests[0][0] == "/hook/qbittorrent"


def test_instance_and_token_file_and_conf_file(server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_bytes(b"from-file\r\nsecond line\n")
    conf = tmp_path / "hook.conf"
    conf.write_text(
        f"# comment\nQBHOOK_URL={url(server)}\nQBHOOK_TOKEN_FILE={token_file}\n"
        "QBHOOK_INSTANCE=qb $(touch PWNED) main\nNOT_A_KEY=x\nQBHOOK_HOOK_MODE=direct-ish"
    )
    result = run_hook(hook_args(), env={"QBHOOK_HOOK_CONF": str(conf)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [(_, headers, body)] = server.requests
    assert headers["X-Qbhook-Token"] == "from-file"
    assert dict(received_fields(body))["instance"] == b"qb $(touch PWNED) main"
    assert not (tmp_path / "PWNED").exists()


def test_environment_wins_over_conf_file(server, tmp_path):
    conf = tmp_path / "hook.conf"
    conf.write_text("QBHOOK_URL=http://127.0.0.1:9/\nQBHOOK_TOKEN=from-conf\n")
    run_hook(hook_args(), env={"QBHOOK_HOOK_CONF": str(conf), "QBHOOK_URL": url(server)}, cwd=tmp_path)
    assert server.requests[0][1]["X-Qbhook-Token"] == "from-conf"


def test_conf_next_to_script_is_read(server, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    shutil.copy(SCRIPT, hooks / "qbt-hook.sh")
    (hooks / "qbt-hook.conf").write_text(f"QBHOOK_URL={url(server)}\nQBHOOK_TOKEN=next-to-script\n")
    full_env = {"PATH": os.environ["PATH"]}
    subprocess.run(
        [DASH, str(hooks / "qbt-hook.sh"), *hook_args()], env=full_env, cwd=tmp_path, timeout=20, check=False
    )
    assert server.requests[0][1]["X-Qbhook-Token"] == "next-to-script"


# -- R28: a conf file as people write it (Windows editors, shell habits) ------------------
#
# Under dash and BusyBox sh (qBittorrent's Alpine images), which run load_conf's patterns.

CONF_SHELLS = {"dash": [DASH]}
if shutil.which("busybox"):
    CONF_SHELLS["busybox"] = [shutil.which("busybox"), "sh"]


def run_with_conf(shell, conf: bytes, tmp_path, *, env=None, path=None):
    (tmp_path / "hook.conf").write_bytes(conf)
    full_env = {"PATH": path or os.environ["PATH"], "HOME": str(tmp_path)}
    full_env.update({"QBHOOK_HOOK_CONF": str(tmp_path / "hook.conf"), **(env or {})})
    return subprocess.run(
        [*CONF_SHELLS[shell], str(SCRIPT), *hook_args()], env=full_env, cwd=tmp_path, capture_output=True, timeout=20
    )


CONF_STYLES = {
    "crlf": "QBHOOK_URL={url}\r\nQBHOOK_TOKEN={token}\r\n",
    "double quotes": 'QBHOOK_URL="{url}"\nQBHOOK_TOKEN="{token}"\n',
    "single quotes": "QBHOOK_URL='{url}'\nQBHOOK_TOKEN='{token}'\n",
    "blanks": "  QBHOOK_URL = {url}  \n\tQBHOOK_TOKEN\t=\t{token} \n",
    "all at once": ' QBHOOK_URL = "{url}" \r\nQBHOOK_TOKEN= \'{token}\'\r\n',
    # A file also sourced by a shell: "export", comments after the value (it was "unknown key",
    # and a URL or token with " # ..." on its end).
    "export": "export QBHOOK_URL={url}\nexport\tQBHOOK_TOKEN='{token}'\n",
    "comments": 'QBHOOK_URL={url} # qbhook serve\nQBHOOK_TOKEN="{token}"\t# from its config\n',
    "shell, CRLF": ' export QBHOOK_URL="{url}"  # x\r\nexport QBHOOK_TOKEN={token}\t#y\r\n',
}


@pytest.mark.parametrize("shell", CONF_SHELLS)
@pytest.mark.parametrize("style", CONF_STYLES)
def test_conf_with_crlf_quotes_or_blanks_still_delivers(server, tmp_path, style, shell):
    conf = CONF_STYLES[style].format(url=url(server), token=TOKEN)
    result = run_with_conf(shell, conf.encode(), tmp_path)
    assert result.stderr == b""
    [(_, headers, _)] = server.requests
    assert headers["X-Qbhook-Token"] == TOKEN


@pytest.mark.parametrize("shell", CONF_SHELLS)
def test_conf_direct_mode_with_crlf_is_direct(server, tmp_path, shell):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "qbhook").write_text(f"#!/bin/sh\ntouch '{tmp_path / 'ran'}'\n")
    (fake_bin / "qbhook").chmod(0o755)
    conf = f"QBHOOK_HOOK_MODE=direct\r\nQBHOOK_URL={url(server)}\r\n".encode()
    result = run_with_conf(shell, conf, tmp_path, path=f"{fake_bin}:{os.environ['PATH']}")
    assert result.stderr == b""
    assert (tmp_path / "ran").exists() and server.requests == []


@pytest.mark.parametrize("shell", CONF_SHELLS)
def test_conf_strips_one_pair_of_matching_quotes_only(server, tmp_path, shell):
    conf = f"QBHOOK_URL={url(server)}\nQBHOOK_TOKEN='\"{TOKEN}\"'\nQBHOOK_INSTANCE=\"half'\n"
    run_with_conf(shell, conf.encode(), tmp_path)
    [(_, headers, body)] = server.requests
    assert headers["X-Qbhook-Token"] == f'"{TOKEN}"'
    assert dict(received_fields(body))["instance"] == b"\"half'"


@pytest.mark.parametrize("shell", CONF_SHELLS)
def test_conf_hash_inside_quotes_or_without_a_blank_before_it_is_part_of_the_value(server, tmp_path, shell):
    """As sh reads it: only blanks then "#" start a comment, and never inside quotes."""
    conf = f"export QBHOOK_URL={url(server)}\nQBHOOK_TOKEN='a # b' # c\nQBHOOK_INSTANCE=x#y\n"
    result = run_with_conf(shell, conf.encode(), tmp_path)
    assert result.stderr == b""
    [(_, headers, body)] = server.requests
    assert headers["X-Qbhook-Token"] == "a # b"
    assert dict(received_fields(body))["instance"] == b"x#y"


@pytest.mark.parametrize("shell", CONF_SHELLS)
def test_conf_bad_lines_are_logged_by_number_not_text(server, tmp_path, shell):
    conf = (
        f"# a comment\n\n   # indented\r\nQBHOOK_TOKN=secret-one\nsecret-two\r\n  \t \n"
        f"QBHOOK_URL={url(server)}\nQBHOOK_TOKEN={TOKEN}"
    )
    log = tmp_path / "hook.log"
    result = run_with_conf(shell, conf.encode(), tmp_path, env={"QBHOOK_HOOK_LOG": str(log)})
    lines = result.stderr.decode().splitlines()
    assert [line.split("qbt-hook: ", 1)[1] for line in lines] == [
        f"{tmp_path / 'hook.conf'} line 4: unknown key, ignored",
        f"{tmp_path / 'hook.conf'} line 5: not KEY=VALUE, ignored",
    ]
    assert b"secret" not in result.stderr and log.read_text().splitlines() == lines
    assert server.requests[0][1]["X-Qbhook-Token"] == TOKEN


def test_token_not_on_curl_command_line(server, tmp_path):
    """ps/proc must not show the token: curl gets it through a file descriptor."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    argv_log = tmp_path / "curl-argv"
    real_curl = shutil.which("curl")
    (fake_bin / "curl").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >"{argv_log}"\nexec {real_curl} "$@"\n')
    (fake_bin / "curl").chmod(0o755)
    run_hook(
        hook_args(),
        env={"QBHOOK_URL": url(server), "QBHOOK_TOKEN": "very-secret"},
        cwd=tmp_path,
        path=f"{fake_bin}:{os.environ['PATH']}",
    )
    assert server.requests[0][1]["X-Qbhook-Token"] == "very-secret"
    assert "very-secret" not in argv_log.read_text()


def _tool_dir(tmp_path, tools) -> str:
    bin_dir = tmp_path / "tools"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} not installed")
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


BASE_TOOLS = ["od", "awk", "tr", "cut", "date", "grep", "cat", "sleep", "wc", "ls", "id"]


def test_wget_fallback(server, tmp_path):
    path = _tool_dir(tmp_path, BASE_TOOLS + ["wget"])
    name = NASTY[3] + NASTY[4] + NASTY[13]
    args = hook_args(name=name, content="/data/torrents/" + name)
    result = run_hook(args, env={"QBHOOK_URL": url(server), "QBHOOK_TOKEN": TOKEN}, cwd=tmp_path, path=path)
    assert result.returncode == 0 and result.stderr == b"", result.stderr
    [(_, headers, body)] = server.requests
    assert headers["X-Qbhook-Token"] == TOKEN
    assert received_fields(body) == sent(args)


def test_wget_fallback_logs_http_errors(server, tmp_path, monkeypatch):
    monkeypatch.setattr(Recorder, "status", 401)
    path = _tool_dir(tmp_path, BASE_TOOLS + ["wget"])
    result = run_hook(hook_args(), env={"QBHOOK_URL": url(server)}, cwd=tmp_path, path=path)
    assert result.returncode == 0 and b"failed" in result.stderr
    assert len(server.requests) == 1  # GNU wget must not retry


def test_no_http_client_is_logged(tmp_path):
    path = _tool_dir(tmp_path, BASE_TOOLS)
    result = run_hook(hook_args(), cwd=tmp_path, path=path)
    assert result.returncode == 0 and b"neither curl nor wget" in result.stderr


def test_server_down_is_logged_and_exit_0(tmp_path):
    log = tmp_path / "hook.log"
    started = time.monotonic()
    result = run_hook(hook_args(), env={"QBHOOK_URL": "http://127.0.0.1:9", "QBHOOK_HOOK_LOG": str(log)}, cwd=tmp_path)
    assert time.monotonic() - started < 4
    assert result.returncode == 0
    assert b"failed" in result.stderr
    text = log.read_text()
    assert "http://127.0.0.1:9/hook/qbittorrent" in text and V1 in text and TOKEN not in text
    assert "cannot connect, the event was not delivered" in text
    assert text.rstrip().endswith(" 000")  # curl's status, without the connects it also wrote


@pytest.mark.parametrize(("base", "exit_code"), [("gopherx://x", 1), ("http://a b", 3)])
def test_a_failure_before_any_connect_that_is_not_one_says_curl_s_own_words(tmp_path, base, exit_code):
    """num_connects is 0 for every failure before a connect; only 6, 7 and 28 are "cannot
    connect": a scheme curl does not speak, or a malformed QBHOOK_URL, is no serve that is down."""
    log = tmp_path / "hook.log"
    result = run_hook(hook_args(), env={"QBHOOK_URL": base, "QBHOOK_HOOK_LOG": str(log)}, cwd=tmp_path)
    assert result.returncode == 0
    (line,) = log.read_text().splitlines()
    assert f"/hook/qbittorrent for added {V1} failed (exit {exit_code}): curl: ({exit_code}) " in line, line
    assert "cannot connect" not in line and "is qbhook serve running" not in line


@pytest.mark.parametrize("status", [401, 400, 503])
def test_http_errors_are_logged_with_the_answer(server, tmp_path, monkeypatch, status):
    monkeypatch.setattr(Recorder, "status", status)
    result = run_hook(hook_args(), env={"QBHOOK_URL": url(server)}, cwd=tmp_path)
    assert result.returncode == 0
    assert f"{status}".encode() in result.stderr and b"queued" in result.stderr


def test_hanging_server_is_cut_off(server, tmp_path, monkeypatch):
    monkeypatch.setattr(Recorder, "delay", 8.0)
    started = time.monotonic()
    result = run_hook(hook_args(), env={"QBHOOK_URL": url(server)}, cwd=tmp_path)
    assert time.monotonic() - started < 7
    # Not "failed": intake may still queue it (a busy catalog waits up to 60 s).
    assert result.returncode == 0 and b"failed" not in result.stderr
    assert b"no answer within 4 s: the event may or may not be queued (the next sweep reconciles it)" in result.stderr


@pytest.fixture
def unanswered():
    """A port whose connects hang: a listener that never accepts, its queue full, so the kernel
    drops every further SYN (a firewall that drops, a qbhook serve host that is down)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    fill = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(sock.getsockname())
        fill.append(c)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    for c in [*fill, sock]:
        c.close()


def test_a_connect_timeout_says_the_event_was_not_delivered(unanswered, tmp_path):
    """curl's --connect-timeout is exit 28 as its --max-time is: it read "no answer within 4 s:
    the event may or may not be queued", though nothing reached qbhook serve."""
    log = tmp_path / "hook.log"
    started = time.monotonic()
    result = run_hook(hook_args(), env={"QBHOOK_URL": unanswered, "QBHOOK_HOOK_LOG": str(log)}, cwd=tmp_path)
    assert time.monotonic() - started < 4
    assert result.returncode == 0 and b"(28)" in result.stderr, result.stderr
    (line,) = log.read_text().splitlines()
    said = f"POST {unanswered}/hook/qbittorrent for added {V1} failed: cannot connect, the event was not delivered"
    assert said in line
    assert "is qbhook serve running and listening there (QBHOOK_URL)?" in line and "may or may not" not in line


def test_a_timeout_after_connecting_says_the_event_may_be_queued(server, tmp_path, monkeypatch):
    monkeypatch.setattr(Recorder, "delay", 8.0)
    log = tmp_path / "hook.log"
    result = run_hook(hook_args(), env={"QBHOOK_URL": url(server), "QBHOOK_HOOK_LOG": str(log)}, cwd=tmp_path)
    assert result.returncode == 0 and len(server.requests) == 1  # it arrived
    (line,) = log.read_text().splitlines()
    said = f"POST {url(server)}/hook/qbittorrent for added {V1}: no answer within 4 s: the event may or may not be"
    assert said in line and "if this repeats, see qbhook serve's log" in line and "not delivered" not in line


@pytest.mark.parametrize("event", ["", "deleted", "--help"])
def test_bad_event_sends_nothing(server, tmp_path, event):
    result = run_hook([event, V1], env={"QBHOOK_URL": url(server)}, cwd=tmp_path)
    assert result.returncode == 0 and b"must be 'added' or 'finished'" in result.stderr
    assert server.requests == []


def test_direct_mode_runs_qbhook_with_the_same_arguments(server, tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    out = tmp_path / "argv"
    (fake_bin / "qbhook").write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" >'{out}'\n")
    (fake_bin / "qbhook").chmod(0o755)
    args = hook_args(name=NASTY[3] + NASTY[4])
    result = run_hook(
        args,
        env={"QBHOOK_HOOK_MODE": "direct", "QBHOOK_URL": url(server)},
        cwd=tmp_path,
        path=f"{fake_bin}:{os.environ['PATH']}",
    )
    assert result.returncode == 0 and result.stderr == b""
    assert out.read_bytes().split(b"\0")[:-1] == [b"hook", b"--"] + [a.encode() for a in args]
    assert server.requests == []


def test_direct_mode_failure_is_logged(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "qbhook").write_text("#!/bin/sh\necho 'catalog locked' >&2\nexit 75\n")
    (fake_bin / "qbhook").chmod(0o755)
    result = run_hook(
        hook_args(), env={"QBHOOK_HOOK_MODE": "direct"}, cwd=tmp_path, path=f"{fake_bin}:{os.environ['PATH']}"
    )
    assert result.returncode == 0 and b"catalog locked" in result.stderr


def test_direct_mode_without_qbhook_falls_back_to_http(server, tmp_path):
    path = _tool_dir(tmp_path, BASE_TOOLS + ["curl"])
    result = run_hook(
        hook_args(), env={"QBHOOK_HOOK_MODE": "direct", "QBHOOK_URL": url(server)}, cwd=tmp_path, path=path
    )
    assert b"falling back to HTTP" in result.stderr
    assert len(server.requests) == 1


@pytest.mark.parametrize("mode", ["bogus", "Direct", "direct\nforged line"])
def test_a_mode_that_is_none_is_said_once_and_the_event_still_goes_over_http(server, tmp_path, mode):
    """R80: QBHOOK_HOOK_MODE=bogus fell back to HTTP without a word."""
    result = run_hook(hook_args(), env={"QBHOOK_HOOK_MODE": mode, "QBHOOK_URL": url(server)}, cwd=tmp_path)
    assert result.returncode == 0 and len(server.requests) == 1
    [line] = result.stderr.decode().splitlines()
    shown = mode.replace("\n", " ")
    assert line.endswith(
        f"qbt-hook: QBHOOK_HOOK_MODE='{shown}' is not a mode (direct, or unset for HTTP); falling back to HTTP"
    )


def test_an_empty_mode_is_http_without_a_word(server, tmp_path):
    result = run_hook(hook_args(), env={"QBHOOK_HOOK_MODE": "", "QBHOOK_URL": url(server)}, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == b"" and len(server.requests) == 1


@pytest.fixture
def live_qbhook():
    events = []

    def enqueue(event):
        events.append(event)
        return len(events), False

    srv = create_server(create_app(enqueue=enqueue, auth=AuthConfig(token=TOKEN)), host="127.0.0.1", port=0)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.effective_port}", events
    srv.close()


def test_end_to_end_against_the_real_app(live_qbhook, tmp_path):
    base, events = live_qbhook
    content = "/data/torrents/" + NASTY[3] + NASTY[4] + NASTY[10] + NASTY[13]
    result = run_hook(
        hook_args(event="finished", content=content), env={"QBHOOK_URL": base, "QBHOOK_TOKEN": TOKEN}, cwd=tmp_path
    )
    assert result.stderr == b""
    [event] = events
    assert (event.kind, event.hashes, event.paths) == ("torrent_finished", (V1,), (content,))


def test_end_to_end_wrong_token_is_logged(live_qbhook, tmp_path):
    base, events = live_qbhook
    result = run_hook(hook_args(), env={"QBHOOK_URL": base, "QBHOOK_TOKEN": "wrong"}, cwd=tmp_path)
    assert b"401" in result.stderr and b"authentication required" in result.stderr and events == []


def test_wall_time_per_invocation(live_qbhook, tmp_path):
    base, events = live_qbhook
    times = []
    for i in range(30):
        started = time.perf_counter()
        run_hook(hook_args(name=f"{NASTY[3]} {i}"), env={"QBHOOK_URL": base, "QBHOOK_TOKEN": TOKEN}, cwd=tmp_path)
        times.append(time.perf_counter() - started)
    p50 = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    print(f"\nqbt-hook.sh wall time over {len(times)} runs: p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")
    assert len(events) == 30
    assert p50 < 1.0


def test_works_with_standard_streams_closed(server, tmp_path):
    """qBittorrent starts the hook detached; stdin/stdout/stderr may all be closed."""

    def close_std_fds():
        for fd in (0, 1, 2):
            os.close(fd)

    env = {"PATH": os.environ["PATH"], "QBHOOK_URL": url(server), "QBHOOK_TOKEN": TOKEN}
    proc = subprocess.Popen([DASH, str(SCRIPT), *hook_args()], env=env, cwd=tmp_path, preexec_fn=close_std_fds)
    assert proc.wait(timeout=20) == 0
    [(_, headers, body)] = server.requests
    assert headers["X-Qbhook-Token"] == TOKEN
    assert dict(received_fields(body))["K"] == V1.encode()


# -- issue 9, finding 8: odd names, bounded time, bytes that are not UTF-8 ----------------
#
# Each runs under dash and bash, with curl and with wget (PATH holds only the one client).

SHELLS = [s for s in ("dash", "bash") if shutil.which(s)]
CLIENTS = ["curl", "wget"]
ODD_NAMES = [
    b"--help",
    b"--",
    b"-x",
    b"-",
    b"line1\nline2\n",
    b"\n",
    b"caf\xe9 latin-1",
    b"\xff\xfe\x80",
    b"cut \xe2\x82 short",
    b"surrogate \xed\xa0\x80",
    b"overlong \xc0\xaf",
    b"\xf4\x90\x80\x80 too big",
]


def run_with(shell, path, args, *, tmp_path, env, timeout=30):
    full_env = {"PATH": path, "HOME": str(tmp_path), **env}
    return subprocess.run(
        [shutil.which(shell), str(SCRIPT), *args],
        env=full_env,
        cwd=tmp_path,
        capture_output=True,
        check=False,
        timeout=timeout,
    )


class Drip:
    """A server that takes the request, then sends one byte of a long answer every
    ``interval`` seconds, for at most ``limit`` bytes: never slow enough for a per-read
    timeout to fire, so only a bound on the whole call ends it early."""

    def __init__(self, interval=0.5, limit=40):
        import socket

        self.interval, self.limit = interval, limit
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests = 0
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self):
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        with conn:
            conn.settimeout(10)
            try:
                conn.recv(65536)
                self.requests += 1
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
                for _ in range(self.limit):
                    if self.closed.wait(self.interval):
                        return
                    conn.sendall(b" ")
            except OSError:
                pass  # the hook hung up, as it should

    def close(self):
        self.closed.set()
        self.sock.close()


@pytest.fixture
def drip():
    server = Drip()
    yield server
    server.close()


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("shell", SHELLS)
def test_dripping_server_is_cut_off_within_5s(drip, tmp_path, shell, client):
    """Was 135 s with wget and a byte every 3 s: -T bounds each read, not the call."""
    log = tmp_path / "hook.log"
    started = time.monotonic()
    result = run_with(
        shell,
        _tool_dir(tmp_path, BASE_TOOLS + [client]),
        hook_args(),
        tmp_path=tmp_path,
        env={"QBHOOK_URL": drip.url, "QBHOOK_TOKEN": TOKEN, "QBHOOK_HOOK_LOG": str(log)},
    )
    elapsed = time.monotonic() - started
    assert drip.requests == 1
    assert elapsed < 5.0, f"{shell}/{client}: hook call took {elapsed:.1f} s"
    assert result.returncode == 0
    # The server answered 202 before it stalled: the event was queued, and "failed" was wrong.
    said = "no answer within 4 s: the event may or may not be queued (the next sweep reconciles it)"
    assert said.encode() in result.stderr and said in log.read_text()
    assert b"failed" not in result.stderr
    # Nothing the script started outlives it (a stray sleep or wget would hold the pipe).
    assert result.stdout == b""


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("shell", SHELLS)
def test_odd_names_reach_the_real_app_byte_exact(live_qbhook, tmp_path, shell, client):
    """Option-like names, newlines and bytes that are not UTF-8 all arrive as sent: the
    event's path encodes back (os.fsencode) to the exact bytes qBittorrent passed."""
    base, events = live_qbhook
    path = _tool_dir(tmp_path, BASE_TOOLS + [client])
    for name in ODD_NAMES:
        content = b"/data/torrents/" + name
        args = [a.encode() for a in hook_args(event="finished")]
        args[4], args[7] = name, content
        result = run_with(shell, path, args, tmp_path=tmp_path, env={"QBHOOK_URL": base, "QBHOOK_TOKEN": TOKEN})
        assert result.returncode == 0 and result.stderr == b"", (name, result.stderr)
        event = events.pop()
        assert event.kind == "torrent_finished" and event.hashes == (V1,), name
        assert [os.fsencode(p) for p in event.paths] == [content], name
    assert events == []


def test_non_utf8_hash_is_a_clean_refusal(live_qbhook, tmp_path):
    base, events = live_qbhook
    args = [a.encode() for a in hook_args()]
    args[3] = b"\xff" * 40
    result = run_hook(args, env={"QBHOOK_URL": base, "QBHOOK_TOKEN": TOKEN}, cwd=tmp_path)
    assert result.returncode == 0 and b"K: not an info hash" in result.stderr
    assert events == []


@pytest.fixture
def direct_qbhook(tmp_path):
    """A real `qbhook` on PATH (this checkout, a throwaway config and catalog)."""
    import sys

    import yaml

    for root in ("stash", "pool"):
        (tmp_path / root / "seeding").mkdir(parents=True)
    catalog = tmp_path / "var" / "catalog.sqlite"
    catalog.parent.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "catalog": str(catalog),
                "pools": {
                    "stash": {"path": str(tmp_path / "stash"), "role": "primary"},
                    "pool": {"path": str(tmp_path / "pool"), "role": "cold"},
                },
                "seeding_roots": {"stash": str(tmp_path / "stash/seeding"), "pool": str(tmp_path / "pool/seeding")},
            }
        )
    )
    bin_dir = tmp_path / "qbin"
    bin_dir.mkdir()
    repo = SCRIPT.parents[1]
    (bin_dir / "qbhook").write_text(
        f'#!/bin/sh\nPYTHONPATH="{repo}" exec "{sys.executable}" -m qbhook --config "{config}" "$@"\n'
    )
    (bin_dir / "qbhook").chmod(0o755)
    return bin_dir, catalog


def queued_paths(catalog) -> list[bytes]:
    import json
    import sqlite3

    with sqlite3.connect(catalog) as conn:
        rows = conn.execute("SELECT events FROM event_jobs ORDER BY id").fetchall()
    return [os.fsencode(p) for (events,) in rows for e in json.loads(events) for p in e["paths"]]


@pytest.mark.parametrize("shell", SHELLS)
def test_direct_mode_queues_odd_names(direct_qbhook, tmp_path, shell):
    """`--help` used to print help and queue nothing; `--` shifted every field by one."""
    bin_dir, catalog = direct_qbhook
    names = [b"--help", b"--", b"-x", b"two\nlines", b"caf\xe9"]
    for name in names:
        args = [a.encode() for a in hook_args()]
        args[4], args[7] = name, b"/data/torrents/" + name
        # Hashes differ per call so that no two events share (coalesce into) one job.
        args[1] = args[3] = (f"{names.index(name):040x}").encode()
        full_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "QBHOOK_HOOK_MODE": "direct"}
        result = subprocess.run(
            [shutil.which(shell), str(SCRIPT), *args],
            env=full_env,
            cwd=tmp_path,
            capture_output=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0 and result.stderr == b"", (name, result.stderr)
    assert queued_paths(catalog) == [b"/data/torrents/" + n for n in names]


@pytest.mark.parametrize("name", [b"--help", b"--", b"-x", b"caf\xe9"])
def test_qbhook_hook_takes_odd_names_as_values(direct_qbhook, tmp_path, name):
    """What qBittorrent runs when wired with `setup qbittorrent --mode direct` (no script, no "--")."""
    bin_dir, catalog = direct_qbhook
    args = [a.encode() for a in hook_args()]
    args[4], args[7] = name, b"/data/torrents/" + name
    result = subprocess.run([str(bin_dir / "qbhook"), "hook", *args], capture_output=True, check=False, timeout=60)
    assert result.returncode == 0 and result.stdout == b"" and result.stderr == b"", result
    assert queued_paths(catalog) == [b"/data/torrents/" + name]


def test_qbhook_hook_help_still_shows_help(direct_qbhook):
    bin_dir, _ = direct_qbhook
    result = subprocess.run([str(bin_dir / "qbhook"), "hook", "--help"], capture_output=True, check=False, timeout=60)
    assert result.returncode == 0 and b"Enqueue a qBittorrent hook call" in result.stdout


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
def test_busybox_userland(live_qbhook, drip, tmp_path):
    """Alpine-based qBittorrent images: BusyBox sh, od, awk, sleep and wget, no curl."""
    tools = tmp_path / "busybox"
    tools.mkdir()
    for tool in [*BASE_TOOLS, "wget", "sh"]:
        (tools / tool).symlink_to(shutil.which("busybox"))
    shell = str(tools / "sh")
    base, events = live_qbhook
    for name in ODD_NAMES:
        content = b"/data/torrents/" + name
        args = [a.encode() for a in hook_args(event="finished")]
        args[4], args[7] = name, content
        result = run_with(shell, str(tools), args, tmp_path=tmp_path, env={"QBHOOK_URL": base, "QBHOOK_TOKEN": TOKEN})
        assert result.returncode == 0 and result.stderr == b"", (name, result.stderr)
        assert [os.fsencode(p) for p in events.pop().paths] == [content], name
    started = time.monotonic()
    result = run_with(shell, str(tools), hook_args(), tmp_path=tmp_path, env={"QBHOOK_URL": drip.url})
    assert time.monotonic() - started < 5.0
    assert b"no answer within 4 s" in result.stderr


# -- R51: a conf the hook cannot read or should not trust; a name of any length -------------
#
# Under dash and BusyBox sh (CONF_SHELLS).


def said(result) -> list[str]:
    return [line.split("qbt-hook: ", 1)[1] for line in result.stderr.decode().splitlines()]


@pytest.mark.parametrize("shell", CONF_SHELLS)
def test_a_named_conf_that_is_missing_is_said_and_the_event_still_goes(server, tmp_path, shell):
    """It was skipped without a word: no token sent, and only a 401 (or "is qbhook serve
    running?") to tell, for every event."""
    missing = tmp_path / "typo.conf"
    env = {"PATH": os.environ["PATH"], "QBHOOK_HOOK_CONF": str(missing), "QBHOOK_URL": url(server)}
    result = subprocess.run(
        [*CONF_SHELLS[shell], str(SCRIPT), *hook_args()], env={**env, "QBHOOK_TOKEN": TOKEN}, capture_output=True
    )
    why = f"QBHOOK_HOOK_CONF {missing} does not exist"
    assert said(result) == [f"{why}: its settings are not used, trying with the environment and defaults"]
    assert len(server.requests) == 1  # the environment had all it needs


@pytest.mark.parametrize("shell", CONF_SHELLS)
def test_a_conf_that_cannot_be_read_is_said_and_named_again_if_the_event_fails(tmp_path, shell):
    """R51's repro: a 0600 conf of root's, the hook run as another user (nobody), no qbhook."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the hook as another user")
    folder = Path(tempfile.mkdtemp(prefix="qbt-hook-"))  # tmp_path's parents are root's 0700
    try:
        folder.chmod(0o755)
        script = folder / "qbt-hook.sh"
        shutil.copy(SCRIPT, script)
        script.chmod(0o755)
        conf = folder / "hook.conf"
        conf.write_text("QBHOOK_URL=http://127.0.0.1:9\nQBHOOK_TOKEN=secret\n")
        conf.chmod(0o600)
        env = {"PATH": os.environ["PATH"], "QBHOOK_HOOK_CONF": str(conf), "QBHOOK_URL": "http://127.0.0.1:9"}

        def nobody():
            os.setgid(65534)
            os.setgroups([])
            os.setuid(65534)

        result = subprocess.run(
            [*CONF_SHELLS[shell], str(script), *hook_args()],
            env=env,
            cwd=folder,
            capture_output=True,
            preexec_fn=nobody,
            timeout=20,
        )
    finally:
        shutil.rmtree(folder)
    first, failed = said(result)
    why = f"cannot read conf {conf} as uid 65534"
    assert first == f"{why}: its settings are not used, trying with the environment and defaults"
    assert "cannot connect" in failed and failed.endswith(f"; {why}")
    assert b"secret" not in result.stderr


LOOSE = {
    "world-writable": (0o666, None, "group or others may write it (-rw-rw-rw-): chmod go-w it"),
    "group-writable": (0o620, None, "group or others may write it (-rw--w----): chmod go-w it"),
    "another user's": (0o600, 65534, "it belongs to uid 65534, not to this user (uid 0) or root"),
}


def loosen(path: Path, case: str) -> str:
    mode, owner, why = LOOSE[case]
    if owner is not None:
        if os.geteuid() != 0:
            pytest.skip("needs root, to give a file to another user")
        os.chown(path, owner, -1)
    path.chmod(mode)
    return why


@pytest.mark.parametrize("case", LOOSE)
@pytest.mark.parametrize("shell", CONF_SHELLS)
def test_a_conf_others_may_change_is_refused_and_nothing_sent(server, tmp_path, shell, case):
    """R51: a mode-666 conf pointed QBHOOK_URL at an attacker and sent a 0600 file's first
    line as the token. Now nothing is sent, and one line says why."""
    secret = tmp_path / "private"
    secret.write_text("first line of a private file\n")
    secret.chmod(0o600)
    conf = f"QBHOOK_URL={url(server)}\nQBHOOK_TOKEN_FILE={secret}\n".encode()
    (tmp_path / "hook.conf").write_bytes(conf)
    why = loosen(tmp_path / "hook.conf", case)
    result = run_with_conf(shell, conf, tmp_path)
    assert result.returncode == 0
    assert said(result) == [
        f"refusing conf {tmp_path / 'hook.conf'}: {why}; nothing sent (the next sweep reconciles added {V1})"
    ]
    assert server.requests == []


@pytest.mark.parametrize("case", LOOSE)
@pytest.mark.parametrize("shell", CONF_SHELLS)
def test_a_token_file_others_may_change_is_refused_and_nothing_sent(server, tmp_path, shell, case):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    why = loosen(token_file, case)
    conf = f"QBHOOK_URL={url(server)}\nQBHOOK_TOKEN_FILE={token_file}\n".encode()
    result = run_with_conf(shell, conf, tmp_path)
    assert said(result) == [
        f"refusing QBHOOK_TOKEN_FILE {token_file}: {why}; nothing sent (the next sweep reconciles added {V1})"
    ]
    assert server.requests == []


@pytest.mark.parametrize("shell", CONF_SHELLS)
def test_a_conf_and_token_file_of_this_user_read_only_for_others_are_used(server, tmp_path, shell):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    result = run_with_conf(shell, f"QBHOOK_URL={url(server)}\nQBHOOK_TOKEN_FILE={token_file}\n".encode(), tmp_path)
    assert result.stderr == b""
    assert server.requests[0][1]["X-Qbhook-Token"] == TOKEN


LONG = 100_000  # bytes: qBittorrent takes a name of any length, and passes it as one argument


@pytest.mark.parametrize("shell", CONF_SHELLS)
def test_a_long_name_costs_nothing_and_the_event_arrives(live_qbhook, tmp_path, shell):
    """R51: a 100,000-byte name was percent-encoded into N (and L, G, R, D), a 300 KB body the
    intake refused whole (413, hashes lost), after BusyBox awk spent a minute on it. Fields
    qbhook does not read are no longer sent: the event arrives, well within the deadline."""
    base, events = live_qbhook
    args = hook_args(event="finished", name="é" * (LONG // 2))
    args[5] = args[6] = args[8] = args[9] = "x" * LONG  # L, G, R, D
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "QBHOOK_URL": base, "QBHOOK_TOKEN": TOKEN}
    started = time.monotonic()
    result = subprocess.run([*CONF_SHELLS[shell], str(SCRIPT), *args], env=env, capture_output=True, timeout=120)
    took = time.monotonic() - started
    assert result.stderr == b""
    [event] = events
    assert (event.hashes, event.paths) == ((V1,), (args[7],))
    assert took < 4.0, took


@pytest.mark.parametrize("shell", CONF_SHELLS)
def test_a_field_past_4096_bytes_is_sent_empty_and_said(live_qbhook, tmp_path, shell):
    """A hash is 40 or 64 bytes and a path at most PATH_MAX: a longer one cannot be used. F goes
    empty (the hash still names the torrent) instead of costing the event, and one line says so."""
    base, events = live_qbhook
    content = "/data/" + "é" * 2100  # 4206 bytes, 2106 characters
    args = hook_args(content=content)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "QBHOOK_URL": base, "QBHOOK_TOKEN": TOKEN}
    result = subprocess.run([*CONF_SHELLS[shell], str(SCRIPT), *args], env=env, capture_output=True, timeout=60)
    assert said(result) == ["added: field F is 4206 bytes, more than the 4096 qbhook takes; sent empty"]
    [event] = events
    assert (event.hashes, event.paths) == ((V1,), ())
    # A value of just 4096 bytes still goes whole.
    fits = "/" + "x" * 4095
    result = subprocess.run(
        [*CONF_SHELLS[shell], str(SCRIPT), *hook_args(content=fits)], env=env, capture_output=True, timeout=60
    )
    assert result.stderr == b"" and events[-1].paths == (fits,)
