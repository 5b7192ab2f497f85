"""HTTP intake: authenticate, bound, parse, queue durably, answer.

Senders never retry, so the only promise that matters is the status code: 202 means the
job is committed to disk; anything else makes the sender log a failure that a person can
see, and the sweeper catches the missed change later.

``/healthz`` (no credentials) answers 200 while the worker makes progress and 503 with
a one-line reason while it is stalled or failing: intake alone still answering 202 is
not health, since nothing queued would be processed. The reason never holds an error's
text (anyone may ask): the server's log, and the status page behind credentials, have it.

Cross-site requests are refused (403) on every route that changes state (``_refuse_cross_site``):
a browser that opened the status page caches its HTTP Basic credentials and sends them again with
any page's form post or text/plain fetch, which needs no preflight and which intake accepts. What
gives such a request away is what browsers add and senders never do: an ``Origin`` other than this
server's, or ``Sec-Fetch-Site`` other than same-origin/none. *arr, cross-seed and curl send neither.

Connections are cheap to hold open, so their number and idle time are bounded (see
``waitress_options``): slow or idle clients must not starve the senders that matter.
"""

from __future__ import annotations

import json
import logging
import re
import resource
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from qbhook import dirfd
from qbhook.catalog import hashing
from qbhook.errors import BadRequest, QueueBusy
from qbhook.events.auth import API_KEY_HEADER, API_KEY_PARAM, TOKEN_HEADER, AuthConfig
from qbhook.events.model import Event
from qbhook.events.parse import ARR_APPS, parse_arr, parse_cross_seed, parse_qbt_hook
from qbhook.move import fsops

__all__ = ["TOKEN_HEADER", "AuthConfig", "create_app", "waitress_options"]

log = logging.getLogger(__name__)

Enqueue = Callable[[Event], "tuple[int, bool]"]

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# The hook script sends a dozen fields; thousands means something else is posting.
_MAX_FORM_FIELDS = 200


_OVERFLOW_NOTE = "queue full (server.max_pending): folded into one sweep job, which reconciles what it named"


class HealthReport(Protocol):
    ok: bool
    public: str  # without error text: /healthz answers anyone (qbhook.events.worker.Health)


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def create_app(
    *,
    enqueue: Enqueue,
    auth: AuthConfig,
    max_body: int = 256 * 1024,
    health: Callable[[], HealthReport] | None = None,
    views: tuple[Blueprint, ...] | list[Blueprint] = (),
) -> Flask:
    """The WSGI app. ``health`` reports on the worker behind the queue (None: intake only);
    ``views`` are read-only blueprints (status page, /metrics) behind the webhooks' auth."""
    # No static folder: Flask's /static/<path> route would be one more answered without credentials.
    app = Flask("qbhook.events", static_folder=None)
    # Werkzeug enforces this while reading, also for bodies without Content-Length.
    app.config["MAX_CONTENT_LENGTH"] = max_body

    def handle(parse: Callable[[], Event], *, query_token: bool = False) -> Response:
        return _intake(parse, enqueue, auth, max_body, query_token=query_token)

    # Before every route (and its authentication): one home for the rule, on any route to come.
    app.before_request(_refuse_cross_site)
    _intake_routes(app, handle, max_body)
    _health_route(app, health)
    for view in views:
        # Read-only views (status page, /metrics) pass the same check as the webhooks.
        view.before_request(lambda: _authenticate(auth, allow_query_token=False))
        app.register_blueprint(view)
    _error_handlers(app, max_body)
    return app


def _intake(
    parse: Callable[[], Event], enqueue: Enqueue, auth: AuthConfig, max_body: int, *, query_token: bool
) -> Response:
    """One webhook: authenticate, parse, queue durably; 202 with the job, or one-line error."""
    try:
        _authenticate(auth, allow_query_token=query_token)
        if request.content_length is not None and request.content_length > max_body:
            raise _Refused(413, f"body larger than {max_body} bytes")
        event = parse()
    except _Refused as refused:
        return _error(refused.status, refused.message, refused.headers)
    except BadRequest as err:
        return _error(400, err.message)
    if event.kind == "test":
        log.info("test event from %s (%s): answered, nothing queued", event.source, event.instance or "-")
        return jsonify(ok=True, test=True, source=event.source)
    if event.kind == "ignored":
        return jsonify(ok=True, ignored=event.raw_type or "unknown", source=event.source)
    try:
        queued = enqueue(event)
    except QueueBusy:
        # Expected while another process writes the catalog for long (a scan): one line, no
        # traceback, and the answer comes before the sender gives up (queue.INTAKE_BUSY_S).
        log.warning("could not queue %s %s event: catalog busy, try later; answering 503", event.source, event.kind)
        return _error(503, "catalog busy, try later; nothing was recorded")
    except Exception:
        log.exception("could not queue %s %s event; answering 503", event.source, event.kind)
        return _error(503, "could not queue the event (storage failed); nothing was recorded")
    job_id, coalesced = queued
    if getattr(queued, "overflow", False):
        # Still 202: the event is on disk (in the overflow sweep job), and senders never retry, so
        # a 503 would only have them log a failure while the sweep reconciles the event anyway.
        log.info("queued %s %s into the overflow sweep job %s (queue full)", event.source, event.kind, job_id)
        body = {"queued": job_id, "coalesced": True, "overflow": True, "note": _OVERFLOW_NOTE}
        return _json(202, body)
    log.info(
        "queued %s %s as job %s%s (%d hash(es), %d path(s))",
        event.source,
        event.kind,
        job_id,
        " (coalesced)" if coalesced else "",
        len(event.hashes),
        len(event.paths),
    )
    return _json(202, {"queued": job_id, "coalesced": bool(coalesced)})


def _intake_routes(app: Flask, handle: Callable[..., Response], max_body: int) -> None:
    @app.post("/hook/qbittorrent")
    def qbittorrent_hook() -> Response:
        return handle(lambda: parse_qbt_hook(_fields_body(max_body)))

    @app.route("/webhook/arr", methods=["POST", "PUT"])
    def arr_webhook() -> Response:
        return handle(lambda: parse_arr(_json_body(max_body)))

    def _arr_alias(app_name: str) -> Callable[[], Response]:
        def view() -> Response:
            return handle(lambda: parse_arr(_json_body(max_body), app=app_name))

        view.__name__ = f"{app_name}_webhook"
        return view

    for app_name in ARR_APPS:
        app.add_url_rule(f"/webhook/{app_name}", view_func=_arr_alias(app_name), methods=["POST", "PUT"])

    @app.post("/webhook/cross-seed")
    def cross_seed_webhook() -> Response:
        return handle(lambda: parse_cross_seed(_json_body(max_body)), query_token=True)


def _health_route(app: Flask, health: Callable[[], HealthReport] | None) -> None:
    @app.get("/healthz")
    def healthz() -> Response:
        if health is None:
            return jsonify(ok=True)
        try:
            report = health()
        except Exception:  # the probe must answer whatever broke; what broke goes to the log only
            log.exception("health check failed")
            return _json(503, {"ok": False, "error": "health check failed (see the server's log)"})
        # No credentials here: never an error's text (paths, names, URLs), only its public line.
        # ``sweeper``: whether one runs here, and since when, so `qbhook status` can judge its last
        # sweep's age (a sweeper just started has not swept yet: its first sweep is one interval on).
        sweeper = {}
        if getattr(report, "sweeper", False):
            sweeper = {"sweeper": True, "sweeper_since": getattr(report, "sweeper_since", None)}
        if report.ok:
            return jsonify(ok=True, worker=report.public, **sweeper)
        return _json(503, {"ok": False, "error": report.public, **sweeper})


def _error_handlers(app: Flask, max_body: int) -> None:
    @app.errorhandler(_Refused)
    def refused(err: _Refused) -> Response:
        return _error(err.status, err.message, err.headers)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(err: RequestEntityTooLarge) -> Response:
        # Werkzeug raises it for too many form parts too (a small body): say which.
        if request.content_length is not None and request.content_length <= max_body:
            return _error(413, "too many form fields")
        return _error(413, f"body larger than {max_body} bytes")

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        return _error(err.code or 500, err.description or err.name)


# Methods that only read: a cross-site page may send them but never sees the answer.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# none: the person typed the URL or used a bookmark (never a form post from a page).
_FETCH_SITES_OWN = frozenset({"same-origin", "none"})
_BROWSER_ORIGIN = re.compile(r"null|https?://[^/\s]+")


def _refuse_cross_site() -> None:
    """403 for a state-changing request a browser sent from another site (module docstring)."""
    if request.method in _SAFE_METHODS:
        return
    origin = (request.headers.get("Origin") or "").strip().lower()
    own = f"{request.scheme}://{request.host}".lower()
    # Only what a browser sends is judged: a serialized origin (http(s)://host[:port]) or "null"
    # (a sandboxed frame). Any other text is no browser's: some Node fetch releases sent a bogus
    # Origin of their own (undici #3235), and a sender such as cross-seed must not be refused for it.
    if _BROWSER_ORIGIN.fullmatch(origin) and origin != own:
        raise _Refused(403, f"cross-site request refused (Origin {origin[:200]!r} is not this server's {own!r})")
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in _FETCH_SITES_OWN:
        raise _Refused(403, f"cross-site request refused (Sec-Fetch-Site: {site[:40]!r})")


def _authenticate(auth: AuthConfig, *, allow_query_token: bool) -> None:
    if not auth.configured:
        raise _Refused(503, "no credentials configured")
    # ?apikey= is the *arr/cross-seed convention, so every endpoint takes it; ?token= stays
    # cross-seed's alone. Neither is ever logged.
    query_token = request.args.get("token") if allow_query_token else None
    if not auth.allows(request.headers, query_token, request.args.get(API_KEY_PARAM)):
        raise _Refused(
            401,
            f"authentication required (HTTP Basic, {TOKEN_HEADER} or {API_KEY_HEADER} header,"
            f" Bearer token or ?{API_KEY_PARAM}=)",
            {"WWW-Authenticate": 'Basic realm="qbhook"'},
        )


def _read(max_body: int) -> bytes:
    data = request.get_data(cache=True)
    if len(data) > max_body:
        raise _Refused(413, f"body larger than {max_body} bytes")
    return data


def _json_body(max_body: int) -> Any:
    mimetype = request.mimetype
    # Missing or text/plain is tolerated: what matters is that the bytes are JSON.
    if mimetype and mimetype not in ("application/json", "text/plain") and not mimetype.endswith("+json"):
        raise _Refused(415, f"Content-Type: expected application/json, got {mimetype}")
    return _decode_json(_read(max_body))


def _fields_body(max_body: int) -> Any:
    mimetype = request.mimetype
    if mimetype in ("application/json", "") or mimetype.endswith("+json"):
        return _decode_json(_read(max_body))
    if mimetype == "multipart/form-data":
        return _multipart_fields(_read(max_body))
    if mimetype == "application/x-www-form-urlencoded":
        try:
            text = _read(max_body).decode("utf-8")
            return dict(parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=_MAX_FORM_FIELDS))
        except UnicodeDecodeError:
            raise BadRequest("body: form fields are not UTF-8") from None
        except ValueError as err:
            raise BadRequest(f"body: unusable form data ({err})") from None
    raise _Refused(415, f"Content-Type: expected {' or '.join(_FORM_TYPES)} or application/json, got {mimetype}")


def _multipart_fields(body: bytes) -> dict[str, str]:
    """A multipart/form-data body's fields, each strictly UTF-8, first of a name kept (as
    ``request.form.to_dict`` did); file parts are ignored, as they were.

    Not ``request.form``: Werkzeug decodes each field with errors="replace" (or by a charset
    the part names), so ``F=/data/Caf\\xe9`` was queued as another path, ``Caf\\ufffd``. The
    urlencoded branch refuses such bytes; this one now does too. Kept, not refused outright:
    qbt-hook.sh posts urlencoded, but a hand-written "run external program" line such as
    ``curl -F K=%K -F F=%F ...`` posts multipart, and its UTF-8 fields are fine.
    """
    boundary = request.mimetype_params.get("boundary", "")
    if not boundary or not boundary.isascii():
        raise BadRequest("body: multipart/form-data without a usable boundary")
    decoder = MultipartDecoder(boundary.encode("ascii"), max_parts=_MAX_FORM_FIELDS)
    decoder.receive_data(body)
    decoder.receive_data(None)
    fields: dict[str, str] = {}
    name: str | None = None
    chunks: list[bytes] = []
    try:
        while not isinstance(event := decoder.next_event(), (Epilogue, NeedData)):
            if isinstance(event, (Field, File)):
                name, chunks = (event.name if isinstance(event, Field) else None), []
            elif isinstance(event, Data):
                chunks.append(event.data)
                if not event.more_data and name is not None:
                    fields.setdefault(name, b"".join(chunks).decode("utf-8"))
    except UnicodeDecodeError:  # before ValueError, its base
        raise BadRequest("body: form fields are not UTF-8") from None
    except ValueError as err:
        raise BadRequest(f"body: unusable form data ({err})") from None
    return fields


def _decode_json(data: bytes) -> Any:
    if not data.strip():
        raise BadRequest("body: empty; expected a JSON object")
    try:
        return json.loads(data)
    except RecursionError:
        raise BadRequest("body: JSON nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise BadRequest(f"body: not valid JSON ({err})") from None


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"error": message}, headers)


# Why these numbers: an idle connection costs waitress a file descriptor and a map entry,
# not a thread (headers are buffered by the event loop until complete), so the defaults
# that starve are connection_limit=100 (past it waitress stops accepting, and every
# sender waits in the backlog until idle ones time out) and channel_timeout=120 s.
# A hook request is a few hundred bytes sent at once: 30 s of silence is abandonment.
CHANNEL_TIMEOUT_S = 30
CLEANUP_INTERVAL_S = 5
MAX_CONNECTIONS = 4096

# The descriptors serve keeps for itself besides its connections, each term named by what holds
# them at once (the one home of this arithmetic; tests/unit/events/test_fd_budget.py checks each
# term against its user's own bound). The worker and the sweeper are two threads that may each
# build a snapshot, hash and hold a catalog connection at the same time; only one executor acts at
# a time (the executor lock), so its folders count once.
_SNAPSHOT_THREADS = 2  # the worker and the sweeper
_HASH_READERS = hashing.READER_THREADS  # ensure_hashes' reader threads at most
FD_BUDGET: dict[str, int] = {
    # each snapshot's FolderReader keeps up to MAX_OPEN folders
    "snapshot folders": _SNAPSHOT_THREADS * dirfd.MAX_OPEN,
    # the executor's Relinker keeps up to RELINK_MAX_OPEN verified folders
    "relink folders": fsops.RELINK_MAX_OPEN,
    # and holds replaced inodes for its releasing threads: its queue, a chunk being closed per
    # thread, and the chunk a relink holds while it waits for room (fsops._Releaser.held_at_most)
    "relink releases": fsops.RELEASE_DEPTH + (fsops.RELEASE_THREADS + 1) * fsops.RELEASE_CHUNK,
    # a copy's source and staged file, its walked parents, staging/holding folders, a read-back:
    # measured at 8 at a demote's peak, at any folder depth (tests/unit/test_executor_fds.py)
    "executor files": 16,
    # the folders a prune of empty folders holds open below its start (under the executor lock)
    "pruned folders": fsops.PRUNE_MAX_DEPTH,
    # per reader thread: the file, its mmap worker's socket and the worker's pipes, its folders
    "hashing": _SNAPSHOT_THREADS * _HASH_READERS * (3 + hashing.THREAD_FOLDERS),
    # db, -wal, -shm per SQLite connection: worker, sweeper, intake, dupes, one per waitress thread
    "catalog": 3 * (4 + 4),
    # client sessions (keep-alive sockets per client and thread), locks, logs, listener, waitress' trigger
    "clients, locks, logs, listener": 32,
}
_FD_RESERVE = sum(FD_BUDGET.values())


def waitress_options(*, threads: int = 4, max_body: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``waitress.create_server``, with the connection limit sized
    to the file descriptors this process may open (raising its soft limit to the hard
    one first). poll() instead of select(): select cannot watch descriptors above 1023.

    ``max_body``: waitress refuses a longer body (413) while reading it. Left to its default
    (1 GiB), it read a whole body, past 512 KiB into a temporary file, before the app's
    authentication or its own limit ran: anyone who could connect, with no credentials,
    could store a GiB per connection in /tmp."""
    return {
        "threads": threads,
        **({"max_request_body_size": max_body} if max_body is not None else {}),
        "connection_limit": max(16, min(MAX_CONNECTIONS, raise_fd_limit() - _FD_RESERVE)),
        "channel_timeout": CHANNEL_TIMEOUT_S,
        "cleanup_interval": CLEANUP_INTERVAL_S,
        "asyncore_use_poll": True,
        "backlog": 1024,
        "ident": "qbhook",
    }


def raise_fd_limit(want: int = MAX_CONNECTIONS + _FD_RESERVE) -> int:
    """Raise RLIMIT_NOFILE's soft limit toward ``want`` (never above the hard limit);
    returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %d to %d", soft, target)
    return soft if soft != resource.RLIM_INFINITY else want
