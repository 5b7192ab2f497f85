"""Fuzzing the hook's argv → event encoding with arbitrary bytes (issue 9, finding 8).

qBittorrent passes names and paths as argv: bytes without NUL, not necessarily UTF-8,
possibly looking like options. Two ways lead from argv to an Event, and both must give
the exact bytes back (``os.fsencode`` of the queued path) or a clean error:

- ``test_fuzz_argv_in_process`` (``FUZZ_EXAMPLES``, 10,000 cases): every case goes
  through the real code on both ways, in process:
    * direct mode: argv as Python hands it over (``os.fsdecode``, what ``sys.argv``
      holds), parsed by the real ``qbhook hook`` click command (``make_context``, with and
      without the script's leading ``--``), then ``hook_fields`` and ``parse_qbt_hook``;
    * HTTP: the form body the script sends (``script_form``), posted to the real Flask
      app (server-side form decoding, ``.hex`` fields, ``parse_qbt_hook``).
  Both are compared with an oracle written from the wire contract (hash fields, "-",
  unsubstituted "%X", F the content path) and with each other.
- ``test_fuzz_argv_through_the_real_script`` (``SCRIPT_EXAMPLES``, 300 cases): the real
  hooks/qbt-hook.sh under dash and bash, with curl and wget, posting to a loopback
  listener: the body it sends is exactly ``script_form`` (which is what ties the 10,000
  in-process cases to the script) and decodes back to the argv bytes.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbhook.cli.events import hook, hook_fields
from qbhook.errors import BadRequest
from qbhook.events.parse import parse_qbt_hook
from qbhook.events.server import AuthConfig, create_app

from .test_fuzz_intake import argv_bytes, qbt_argv, script_fields, script_form

FUZZ_EXAMPLES = int(os.environ.get("QBHOOK_FUZZ_EXAMPLES", "10000"))
SCRIPT_EXAMPLES = int(os.environ.get("QBHOOK_FUZZ_SCRIPT_EXAMPLES", "300"))
SCRIPT = Path(__file__).resolve().parents[3] / "hooks" / "qbt-hook.sh"
TOKEN = "argv-token"
_HASH = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_PLACEHOLDER = re.compile(r"%[A-Z]")

pytestmark = pytest.mark.slow


def expected(values: tuple[bytes, ...]):
    """(hashes, content path bytes or None), or None when the event must be refused."""
    if values[0] not in (b"added", b"finished"):
        return None
    hashes: list[str] = []
    for index in (3, 1, 2):  # K first: qBittorrent's torrent id is the subject
        text = os.fsdecode(values[index])
        if text in ("", "-") or _PLACEHOLDER.fullmatch(text):
            continue
        if not _HASH.fullmatch(text):
            return None
        hashes.append(text.lower())
    if not hashes:
        return None
    content = values[7]
    has_path = content and not _PLACEHOLDER.fullmatch(os.fsdecode(content))
    if has_path and not content.startswith(b"/"):
        return None  # qBittorrent's %F is absolute: a relative one is refused
    if has_path and b".." in content.split(b"/"):
        return None  # ...and a '..' in it is refused too (paths.refusal: the worker would)
    return tuple(dict.fromkeys(hashes)), (content if has_path else None)


def direct_mode(values: tuple[bytes, ...], *, script_dashes: bool):
    """What `qbhook hook` makes of this argv: an Event, or the clean error it prints."""
    argv = [os.fsdecode(v) for v in values[:12]]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the help text, when asked for
            ctx = hook.make_context("hook", (["--"] if script_dashes else []) + argv)
    except click.UsageError as err:
        return err
    except click.exceptions.Exit:
        # `qbhook hook --help ...`: help, as documented; never so when the event comes first.
        assert values[0] == b"--help" and not script_dashes
        return click.UsageError("help shown")
    # Positional and complete: nothing taken for an option, nothing shifted or dropped.
    assert ctx.params["event"] == argv[0] and ctx.params["values"] == tuple(argv[1:])
    try:
        return parse_qbt_hook(hook_fields(ctx.params["event"], ctx.params["values"]))
    except BadRequest as err:
        return err


class _Collect:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)
        return len(self.events), False


def test_fuzz_argv_in_process():
    collect = _Collect()
    client = create_app(enqueue=collect, auth=AuthConfig(token=TOKEN)).test_client()
    outcomes = {"accepted": 0, "refused": 0}
    started = time.process_time()

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(values=qbt_argv, script_dashes=st.booleans())
    def case(values, script_dashes):
        want = expected(values)
        # Direct mode.
        got = direct_mode(values, script_dashes=script_dashes)
        if want is None:
            assert isinstance(got, (BadRequest, click.UsageError)), got
            message = got.message if isinstance(got, BadRequest) else got.format_message()
            assert message and "\n" not in message
        else:
            hashes, content = want
            assert not isinstance(got, Exception), (values, got)
            assert got.hashes == hashes
            assert [os.fsencode(p) for p in got.paths] == ([content] if content else [])
        # HTTP, with the body the script sends.
        collect.events.clear()
        resp = client.post(
            "/hook/qbittorrent",
            data=script_form(values),
            headers={"X-Qbhook-Token": TOKEN},
            content_type="application/x-www-form-urlencoded",
        )
        if want is None:
            assert resp.status_code == 400 and "\n" not in resp.json["error"], resp.get_data()
            assert collect.events == []
            outcomes["refused"] += 1
        else:
            assert resp.status_code == 202, resp.get_data()
            [event] = collect.events
            assert (event.kind, event.hashes, event.paths) == (got.kind, got.hashes, got.paths)
            instance = os.fsdecode(values[12])
            assert event.instance == ("" if _PLACEHOLDER.fullmatch(instance) else instance)
            outcomes["accepted"] += 1

    case()
    print(f"\nargv cases: {outcomes}; {time.process_time() - started:.0f} s CPU")
    assert outcomes["accepted"] >= FUZZ_EXAMPLES // 4 and outcomes["refused"] >= FUZZ_EXAMPLES // 20


# -- the real script -----------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.server.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"queued": 1, "coalesced": false}')

    def log_message(self, *args):
        pass


def _decode_form(body: bytes) -> list[tuple[str, bytes]]:
    from urllib.parse import unquote_to_bytes

    out = []
    for item in body.split(b"&"):
        key, _, value = item.partition(b"=")
        key = key.decode("ascii")
        if key.endswith(".hex"):
            out.append((key[:-4], bytes.fromhex(value.decode("ascii"))))
        else:
            out.append((key, unquote_to_bytes(value)))
    return out


def test_fuzz_argv_through_the_real_script(tmp_path):
    shells = [s for s in ("dash", "bash") if shutil.which(s)]
    clients = [c for c in ("curl", "wget") if shutil.which(c)]
    if not shells or not clients:
        pytest.skip("needs dash or bash, and curl or wget")
    tool_dirs = {}
    for client_name in clients:
        tools = tmp_path / f"tools-{client_name}"
        tools.mkdir()
        for tool in ("od", "awk", "tr", "cut", "date", "grep", "cat", "sleep", client_name):
            (tools / tool).symlink_to(shutil.which(tool))
        tool_dirs[client_name] = str(tools)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.bodies = []
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    runs = {}

    @settings(
        max_examples=SCRIPT_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        values=qbt_argv,
        extra=st.lists(argv_bytes, max_size=2),
        shell=st.sampled_from(shells),
        client_name=st.sampled_from(clients),
    )
    def case(values, extra, shell, client_name):
        server.bodies.clear()
        env = {
            b"PATH": tool_dirs[client_name].encode(),
            b"QBHOOK_URL": url.encode(),
            b"QBHOOK_TOKEN": TOKEN.encode(),
            b"QBHOOK_INSTANCE": values[12],
            b"HOME": str(tmp_path).encode(),
        }
        # Arguments past %Z are ignored, as qBittorrent's own command line may add some.
        argv = [*values[:12], *extra]
        result = subprocess.run(
            [shutil.which(shell), str(SCRIPT), *argv],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=30,
            check=False,
        )
        runs[(shell, client_name)] = runs.get((shell, client_name), 0) + 1
        if values[0] not in (b"added", b"finished"):
            assert result.returncode == 0 and b"must be 'added' or 'finished'" in result.stderr
            assert server.bodies == []
            return
        assert result.returncode == 0 and result.stderr == b"", result.stderr
        [body] = server.bodies
        assert body == script_form(values)
        assert _decode_form(body) == script_fields(values)

    case()
    server.shutdown()
    server.server_close()
    print(f"\nscript runs by shell/client: {runs}")
    assert sum(runs.values()) >= SCRIPT_EXAMPLES * 0.9
