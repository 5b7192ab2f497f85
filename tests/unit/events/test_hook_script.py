"""hooks/qbt-hook.sh, run with dash against real local HTTP servers."""

from __future__ import annotations

import http.server
import os
import shutil
import statistics
import subprocess
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
FIELD_ORDER = ["event", "I", "J", "K", "N", "L", "G", "F", "R", "D", "C", "Z", "instance"]

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

    def do_POST(self):  # noqa: N802
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
        [DASH, str(SCRIPT), *args], env=full_env, cwd=cwd, capture_output=True, timeout=timeout
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
    assert subprocess.run([DASH, "-n", str(SCRIPT)]).returncode == 0
    if shutil.which("checkbashisms"):
        assert subprocess.run(["checkbashisms", str(SCRIPT)]).returncode == 0


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
    assert received_fields(body) == list(zip(FIELD_ORDER, [a.encode() for a in args] + [b""]))


def test_non_utf8_bytes_survive(server, tmp_path):
    name = b"bad \xff\xfe bytes \x80"
    args = [a.encode() for a in hook_args()]
    args[4] = name
    run_hook(args, env={"QBHOOK_URL": url(server), "QBHOOK_TOKEN": TOKEN}, cwd=tmp_path)
    assert dict(received_fields(server.requests[0][2]))["N"] == name


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
    subprocess.run([DASH, str(hooks / "qbt-hook.sh"), *hook_args()], env=full_env, cwd=tmp_path, timeout=20)
    assert server.requests[0][1]["X-Qbhook-Token"] == "next-to-script"


def test_token_not_on_curl_command_line(server, tmp_path):
    """ps/proc must not show the token: curl gets it through a file descriptor."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    argv_log = tmp_path / "curl-argv"
    real_curl = shutil.which("curl")
    (fake_bin / "curl").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >"{argv_log}"\nexec {real_curl} "$@"\n')
    (fake_bin / "curl").chmod(0o755)
    run_hook(hook_args(), env={"QBHOOK_URL": url(server), "QBHOOK_TOKEN": "very-secret"}, cwd=tmp_path,
             path=f"{fake_bin}:{os.environ['PATH']}")
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


BASE_TOOLS = ["od", "awk", "tr", "cut", "date", "grep", "cat"]


def test_wget_fallback(server, tmp_path):
    path = _tool_dir(tmp_path, BASE_TOOLS + ["wget"])
    name = NASTY[3] + NASTY[4] + NASTY[13]
    args = hook_args(name=name)
    result = run_hook(args, env={"QBHOOK_URL": url(server), "QBHOOK_TOKEN": TOKEN}, cwd=tmp_path, path=path)
    assert result.returncode == 0 and result.stderr == b"", result.stderr
    [(_, headers, body)] = server.requests
    assert headers["X-Qbhook-Token"] == TOKEN
    assert received_fields(body) == list(zip(FIELD_ORDER, [a.encode() for a in args] + [b""]))


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
    result = run_hook(hook_args(), env={"QBHOOK_URL": "http://127.0.0.1:9", "QBHOOK_HOOK_LOG": str(log)},
                      cwd=tmp_path)
    assert time.monotonic() - started < 4
    assert result.returncode == 0
    assert b"failed" in result.stderr
    text = log.read_text()
    assert "http://127.0.0.1:9/hook/qbittorrent" in text and V1 in text and TOKEN not in text


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
    assert result.returncode == 0 and b"failed" in result.stderr


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
    result = run_hook(args, env={"QBHOOK_HOOK_MODE": "direct", "QBHOOK_URL": url(server)}, cwd=tmp_path,
                      path=f"{fake_bin}:{os.environ['PATH']}")
    assert result.returncode == 0 and result.stderr == b""
    assert out.read_bytes().split(b"\0")[:-1] == [b"hook"] + [a.encode() for a in args]
    assert server.requests == []


def test_direct_mode_failure_is_logged(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "qbhook").write_text("#!/bin/sh\necho 'catalog locked' >&2\nexit 75\n")
    (fake_bin / "qbhook").chmod(0o755)
    result = run_hook(hook_args(), env={"QBHOOK_HOOK_MODE": "direct"}, cwd=tmp_path,
                      path=f"{fake_bin}:{os.environ['PATH']}")
    assert result.returncode == 0 and b"catalog locked" in result.stderr


def test_direct_mode_without_qbhook_falls_back_to_http(server, tmp_path):
    path = _tool_dir(tmp_path, BASE_TOOLS + ["curl"])
    result = run_hook(hook_args(), env={"QBHOOK_HOOK_MODE": "direct", "QBHOOK_URL": url(server)}, cwd=tmp_path,
                      path=path)
    assert b"falling back to HTTP" in result.stderr
    assert len(server.requests) == 1


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
    result = run_hook(hook_args(event="finished", content=content), env={"QBHOOK_URL": base, "QBHOOK_TOKEN": TOKEN},
                      cwd=tmp_path)
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
