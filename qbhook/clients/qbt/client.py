"""Thin, path-mapped adapter over qbittorrent-api.

Rules this module enforces for everything above it:

* every path in and out goes through the instance's ``PathMap`` (lesson 1);
* actions take any spelling of a torrent's hash and act on the id qBittorrent
  reported, so a caller-supplied string never reaches a ``hashes=`` parameter
  (``all`` or ``a|b`` there would act on other torrents); nor does a reported one
  unchecked: ``TorrentInfo.from_api`` refuses a record whose id is not a hash;
* qBittorrent skips unknown hashes silently, so actions confirm the torrent
  exists first and raise ``UnknownTorrent``;
* transient failures (connection, 5xx) are retried with bounded exponential
  backoff; a 4xx is an answer, never retried;
* ATM is never enabled where its Overwrite-mode move could write into a
  hardlinked library file.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import qbittorrentapi as qba
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from qbhook.clients.model import TorrentFile, TorrentInfo, check_hash, check_tags
from qbhook.clients.port import FindOrRaise
from qbhook.clients.qbt.model import Category
from qbhook.config import shown_url
from qbhook.errors import (
    RETRY_LOG,
    PathMapError,
    QbtError,
    QbtUnreachable,
    UnknownTorrent,
    UnreadableRecord,
    UnsafeOperation,
)
from qbhook.numbers import said
from qbhook.pathmap import PathMap
from qbhook.paths import normalize

__all__ = ["V5_API", "QbtClient"]

log = logging.getLogger(__name__)
retry_log = logging.getLogger(RETRY_LOG)

T = TypeVar("T")

#: Web API version of qBittorrent 5.0 (pause/resume became stop/start).
V5_API = (2, 11)

DEFAULT_TIMEOUT = 30.0

# qbittorrent-api's request manager (``Request._request_manager``) sends a request a second time,
# at once, after a connection error, a timeout or a 5xx; its ``_retries`` is floored at 1, so no
# setting turns that off. Each of our attempts is that many requests, and counted so.
LIBRARY_TRIES = 2

# qBittorrent rewrites these characters when it derives a folder from a
# category name; rather than guess its exact rule, refuse to predict.
_CATEGORY_PATH_UNSAFE = set(':?"*<>|\\')

#: qBittorrent's default ``refresh_interval`` (ms): how often it recomputes what torrents/info reports.
DEFAULT_REFRESH_MS = 1500
#: A refresh interval above this (an hour) or below 0 is no setting a person chose to keep.
MAX_REFRESH_MS = 3_600_000

#: From this Web API version (qBittorrent 5.0 development) a subcategory without a save path may
#: lie below its parent's; 4.x (2.9 and lower) never.
_PARENT_PATH_API = (2, 10)


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.strip().lstrip("v").split("."))
    except ValueError:
        raise QbtError(f"unexpected Web API version string {text!r}") from None


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, qba.HTTP5XXError):
        return True
    # HTTPError (all 4xx) and LoginFailed subclass APIConnectionError too,
    # but they are answers from qBittorrent, not a failure to get one.
    return isinstance(exc, qba.APIConnectionError) and not isinstance(exc, (qba.HTTPError, qba.LoginFailed))


def _error_text(exc: BaseException) -> str:
    # An HTTPError's text is the answer's whole body: a web page (a URL that is not qBittorrent's)
    # or megabytes from a failing proxy, quoted by the one rule for another program's text.
    return said(str(exc)) or type(exc).__name__


def _cause_text(exc: BaseException) -> str:
    """What a failure to connect came down to, e.g. ``Connection refused``.

    qbittorrent-api's message wraps requests' and urllib3's reprs (a 400-character line with
    an object address); the socket's own error at the end of the exception chain names the
    cause. Without an OSError in the chain, the library's message, quoted (``_error_text``)."""
    seen: set[int] = set()
    cause: BaseException | None = None
    at: BaseException | None = exc
    while at is not None and id(at) not in seen:
        seen.add(id(at))
        if isinstance(at, OSError):
            cause = at
        at = at.__cause__ or at.__context__
    if cause is None:
        return _error_text(exc)
    return (cause.strerror or _error_text(cause)).strip()


class QbtClient(FindOrRaise):
    """One qBittorrent instance, seen in host paths."""

    relocation_moves_files = True  # libtorrent moves the storage (clients/port.py)
    relocation_checks = False  # a stopped torrent is not rechecked after a move (4.5.2, observed)
    part_file = True  # libtorrent's .<infohash>.parts beside the files (clients/port.py)

    def __init__(
        self,
        name: str,
        url: str,
        username: str | None = None,
        password: str | None = None,
        path_map: PathMap | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        api_key: str | None = None,
    ):
        self.name = name
        self.url = url
        self.path_map = path_map if path_map is not None else PathMap()
        # without a username qBittorrent must be bypassing auth (whitelist)
        self._login_required = bool(username) and not api_key
        self._logged_in = False
        self._api_version: str | None = None
        self._state_lag_s: float | None = None  # ``state_lag_s``, read once per run (``forget_state_lag``)
        self._api = self._make_api(url, username, password, api_key, timeout)
        # ``retries``: requests, each bounded by ``timeout``, before a transient failure is reported;
        # rounded down to whole rounds of the library's LIBRARY_TRIES (at least one round), so that
        # a hung qBittorrent costs at most retries x timeout (plus the backoff), not twice that.
        rounds = max(1, retries // LIBRARY_TRIES)
        self._attempts = rounds * LIBRARY_TRIES
        self._retrying = Retrying(
            stop=stop_after_attempt(rounds),
            wait=wait_exponential(multiplier=backoff, max=max_backoff),
            retry=retry_if_exception(_is_transient),
            before_sleep=self._log_retry,
            reraise=True,
        )

    @staticmethod
    def _make_api(
        url: str,
        username: str | None,
        password: str | None,
        api_key: str | None,
        timeout: float,
    ) -> qba.Client:
        extra = {"api_key": api_key} if api_key else {}
        return qba.Client(
            host=url,
            username=username or "",
            password=password or "",
            REQUESTS_ARGS={"timeout": timeout},
            # urllib3's own silent retries would multiply ours
            HTTPADAPTER_ARGS={"max_retries": 0},
            FORCE_SCHEME_FROM_HOST=True,
            # an endpoint the server lacks must fail loudly, not return None
            RAISE_NOTIMPLEMENTEDERROR_FOR_UNIMPLEMENTED_API_ENDPOINTS=True,
            **extra,
        )

    def __repr__(self) -> str:
        return f"QbtClient({self.name!r}, {shown_url(self.url)!r}, {self.path_map!r})"

    # -- plumbing -------------------------------------------------------

    @property
    def _label(self) -> str:
        """This client for a person, without its URL (``QbtError.client``)."""
        return f"qBittorrent {self.name!r}"

    def _log_retry(self, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        retry_log.warning(
            "qBittorrent %s (%s): %d of %d attempts failed (%s); retrying",
            self.name,
            shown_url(self.url),
            state.attempt_number * LIBRARY_TRIES,
            self._attempts,
            _cause_text(exc) if exc is not None else "?",
        )

    def _attempt(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._login_required and not self._logged_in:
            self._api.auth_log_in()
            self._logged_in = True
        return fn(*args, **kwargs)

    def _call(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        torrent: str | None = None,
        **kwargs: Any,
    ) -> T:
        """Run one API call with retries; translate failures to QbtError."""
        try:
            # a copy per call: Retrying keeps per-run state, and the webhook
            # server calls in from several threads
            return self._retrying.copy()(self._attempt, fn, *args, **kwargs)
        except qba.NotFound404Error as exc:
            if torrent is not None:
                raise self._unknown(torrent) from exc
            raise self._failed(what, exc) from exc
        except (qba.APIError, NotImplementedError) as exc:
            raise self._failed(what, exc) from exc

    def _failed(self, what: str, exc: BaseException) -> QbtError:
        where = f"qBittorrent {self.name!r} ({shown_url(self.url)})"
        if isinstance(exc, qba.LoginFailed):
            return QbtError(
                f"{where}: login failed",
                hint="check username/password for this instance",
            )
        if isinstance(exc, qba.HTTPError):
            status = getattr(exc, "http_status_code", None) or _status_of(exc)
            # A 5xx is a proxy or qBittorrent itself not ready (a restart): retried as passing
            # (``_is_transient``), and once the retries run out still "did not answer" (R22).
            kind = QbtUnreachable if isinstance(exc, qba.HTTP5XXError) else QbtError
            return kind(f"{where}: {what} refused (HTTP {status}): {_error_text(exc)}", client=self._label)
        if isinstance(exc, qba.APIConnectionError):
            # One line (no hint line): the url and the socket's error say what to check, and
            # the retries a one-shot command does not log are counted here.
            tries = f"{self._attempts} attempts"
            return QbtUnreachable(
                f"{where}: {what}: cannot reach qBittorrent ({tries}): {_cause_text(exc)}", client=self._label
            )
        if isinstance(exc, NotImplementedError):
            return QbtError(f"{where}: {what} needs a newer qBittorrent: {exc}")
        return QbtError(f"{where}: {what} failed: {_error_text(exc)}")

    def _unknown(self, any_hash: str) -> UnknownTorrent:
        return UnknownTorrent(f"qBittorrent {self.name!r} has no torrent {any_hash}")

    # -- application ----------------------------------------------------

    def version(self) -> str:
        """qBittorrent's version string, e.g. ``v4.5.2``."""
        return str(self._call("app/version", self._api.app_version))

    def api_version(self, *, refresh: bool = False) -> str:
        """Web API version, e.g. ``2.8.19``; cached after the first call."""
        if self._api_version is None or refresh:
            self._api_version = str(self._call("app/webapiVersion", self._api.app_web_api_version)).strip()
        return self._api_version

    def is_v5(self) -> bool:
        """qBittorrent 5.x or newer (stop/start, ``stopped*`` states)."""
        return _version_tuple(self.api_version()) >= V5_API

    def preferences(self) -> dict[str, Any]:
        """Raw preferences; any paths inside are in the CLIENT's view."""
        return dict(self._call("app/preferences", self._api.app_preferences))

    def set_preferences(self, prefs: Mapping[str, Any]) -> None:
        """Set raw preferences; any paths inside must be in the CLIENT's view."""
        self._call("app/setPreferences", self._api.app_set_preferences, prefs=dict(prefs))

    @property
    def state_lag_s(self) -> float:
        """Seconds torrents/info may go on showing a torrent as it was before an action (a recheck,
        a stop; clients/port.py): qBittorrent recomputes each torrent's state and progress only on
        its refresh timer, ``refresh_interval`` in its preferences (ms; 1500 by default, raised by
        people with big libraries). Read once, until ``forget_state_lag`` (each executor run) or
        ``close``: a person may raise it while ``serve`` runs on one connection; a preference
        not reported or not a number is qBittorrent's default, with a warning. A negative one or
        one above an hour is refused (QbtError): as the default it would let a stale 100 % pass
        for a finished check, and qBittorrent's GUI offers no such value."""
        if self._state_lag_s is None:
            self._state_lag_s = self._refresh_interval_ms(self.preferences().get("refresh_interval")) / 1000
        return self._state_lag_s

    def forget_state_lag(self) -> None:
        """Read ``refresh_interval`` again at the next ``state_lag_s``: the executor calls this as
        each run starts, so a run waits on the interval set now (one preferences request a run),
        not on the one read when ``serve`` started (R72)."""
        self._state_lag_s = None

    def _refresh_interval_ms(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            log.warning(
                "%s reports refresh_interval %r, not a number of milliseconds: taking its default, %d ms",
                self._label,
                value,
                DEFAULT_REFRESH_MS,
            )
            return DEFAULT_REFRESH_MS
        if not 0 <= value <= MAX_REFRESH_MS:
            raise QbtError(
                f"{self._label}: its refresh interval ({value} ms) is not between 0 and 1 hour; qbhook "
                "cannot tell when its API shows a recheck (set Advanced > Refresh interval)",
                client=self._label,
            )
        return float(value)

    def default_save_path(self) -> str:
        """qBittorrent's default save path, as a host path."""
        return self.path_map.to_host(self._raw_default_save_path())

    # -- torrents: reading ---------------------------------------------

    def _raw_info(self, **filters: Any) -> list[dict[str, Any]]:
        rows = self._call("torrents/info", self._api.torrents_info, SIMPLE_RESPONSES=True, **filters)
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            raise UnreadableRecord(f"qBittorrent {self.name!r}: torrents/info: not a list of torrent records")
        return [dict(r) for r in rows]

    def _to_info(self, raw: Mapping[str, Any]) -> TorrentInfo:
        return TorrentInfo.from_api(raw, self.path_map, self.name)

    def torrents(
        self,
        hashes: Iterable[str] | None = None,
        category: str | None = None,
        tag: str | None = None,
    ) -> list[TorrentInfo]:
        """Torrents, optionally filtered; ``hashes`` may be any hash spelling.

        Raises PathMapError if any returned torrent has an unmappable path:
        dropping it would let a caller conclude that nothing references its
        files.
        """
        filters = {"category": category, "tag": tag}
        if hashes is None:
            return [self._to_info(r) for r in self._raw_info(**filters)]
        wanted = {check_hash(h) for h in hashes}
        if not wanted:
            return []
        return [self._to_info(r) for r in self._match_raw(wanted, filters)]

    def _match_raw(self, wanted: set[str], filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        ids = sorted(h for h in wanted if len(h) == 40)
        rows = self._raw_info(torrent_hashes=ids, **filters) if ids else []
        found = set().union(*(_raw_hashes(r) for r in rows)) if rows else set()
        if wanted <= found:
            return rows
        # qBittorrent filters on its torrent id only: the v1 hash of a hybrid
        # and full v2 hashes need a full listing.
        seen = {r.get("hash") for r in rows}
        extra = [r for r in self._raw_info(**filters) if r.get("hash") not in seen and _raw_hashes(r) & wanted]
        return rows + extra

    def find(self, any_hash: str) -> TorrentInfo | None:
        """The torrent named by id, v1 or v2 hash in any case, or None."""
        h = check_hash(any_hash)
        rows = self._match_raw({h}, {})
        return self._to_info(rows[0]) if rows else None

    def files(self, any_hash: str) -> list[TorrentFile]:
        """Files of a torrent (``[]`` while it has no metadata)."""
        t = self.torrent(any_hash)
        rows = self._call(
            "torrents/files",
            self._api.torrents_files,
            torrent_hash=t.hash,
            SIMPLE_RESPONSES=True,
            torrent=any_hash,
        )
        return _file_list(rows, t.hash)

    def maindata(self, rid: int = 0) -> dict[str, Any]:
        """Raw ``sync/maindata`` since response ``rid`` (0: everything); CLIENT paths inside.

        Torrents come keyed by id with only the fields that changed unless ``full_update``;
        the torrent index (qbhook.catalog.indexer) merges and maps them.
        """
        data = self._call("sync/maindata", self._api.sync_maindata, rid=int(rid))
        if not isinstance(data, Mapping):
            raise UnreadableRecord(f"qBittorrent {self.name!r}: sync/maindata: not a mapping")
        return dict(data)

    def files_of_id(self, torrent_id: str) -> list[TorrentFile]:
        """``files`` for an id qBittorrent itself just reported: one request, no lookup first.

        The id is still checked to be a hash, so it can never be ``all`` or a ``|`` list.
        """
        h = check_hash(torrent_id)
        rows = self._call("torrents/files", self._api.torrents_files, torrent_hash=h, SIMPLE_RESPONSES=True, torrent=h)
        return _file_list(rows, h)

    def categories(self) -> dict[str, Category]:
        """Categories with the absolute save path ATM would use for each."""
        raw = self._call("torrents/categories", self._api.torrents_categories, SIMPLE_RESPONSES=True)
        default = self._raw_default_save_path()
        paths = {name: str((c or {}).get("savePath") or "") for name, c in dict(raw).items()}
        nested = self._subcategory_rule() if any("/" in name for name in paths) else False
        return {name: self._category(name, paths, default, nested) for name in paths}

    def _subcategory_rule(self) -> bool | None:
        """Where qBittorrent puts a subcategory (``a/b``) without a save path of its own: True,
        below its parent's save path (5.x with subcategories on: ``SessionImpl::categorySavePath``
        takes the parent's path and the last component); False, below the default save path by
        its full name (subcategories off, or 4.x, whose rule ignores parents); None, unknown (the
        preference not reported, or a 5.0 development build, Web API 2.10, among which the rule
        changed): no prediction then."""
        flag = self.preferences().get("use_subcategories")
        if not isinstance(flag, bool):
            return None
        if not flag:
            return False
        api = _version_tuple(self.api_version())
        if api < _PARENT_PATH_API:
            return False
        return True if api >= V5_API else None

    def _raw_default_save_path(self) -> str:
        return str(self._call("app/defaultSavePath", self._api.app_default_save_path))

    def _category(self, name: str, paths: Mapping[str, str], default: str, nested: bool | None) -> Category:
        client_path = _effective_category_path(name, paths, default, nested)
        host_path = ""
        if client_path:
            try:
                host_path = self.path_map.to_host(client_path)
            except PathMapError:
                pass  # not visible from the host: equals no torrent's save path
        return Category(
            name=name,
            save_path=host_path,
            client_save_path=client_path or "",
            raw_save_path=paths.get(name, ""),
        )

    def category_save_path(self, category: str) -> str:
        """Host path ATM would place a complete torrent of ``category`` in.

        Raises UnsafeOperation when it cannot be predicted or mapped.
        """
        if category:
            cat = self.categories().get(category)
            if cat is None:
                raise UnsafeOperation(f"qBittorrent {self.name!r} has no category {category!r}")
        else:
            cat = self._category("", {}, self._raw_default_save_path(), False)
        if not cat.save_path:
            raise UnsafeOperation(
                f"cannot tell where ATM would put torrents of category "
                f"{category!r} (save path {cat.raw_save_path!r} in qBittorrent)"
            )
        return cat.save_path

    # -- torrents: acting ----------------------------------------------

    def set_location(self, any_hash: str, host_path: str, *, require_existing: bool = True) -> None:
        """Move a torrent (qBittorrent's KeepExistingFiles move) to a host path.

        The destination must already exist on the host (lesson 1: a path only
        the container could see let qBittorrent copy data on its own).
        """
        dest = normalize(host_path)
        t = self.torrent(any_hash)
        if require_existing and not os.path.isdir(dest):
            raise UnsafeOperation(
                f"refusing setLocation of {t.hash} ({t.name}): destination {dest} does not exist on the host",
                hint="build the complete view at the destination first",
            )
        location = self.path_map.to_client(dest)
        self._call(
            "torrents/setLocation",
            self._api.torrents_set_location,
            location=location,
            torrent_hashes=t.hash,
            torrent=any_hash,
        )

    def set_download_path(self, any_hash: str, host_path: str) -> None:
        """Set the incomplete-folder path; ``""`` clears it (Web API 2.8.4+)."""
        path = self.path_map.to_client(normalize(host_path)) if host_path else ""
        t = self.torrent(any_hash)
        if t.auto_tmm:
            # qBittorrent ignores it for ATM torrents, silently; a caller
            # would believe a stale download path was cleared (lesson 2).
            raise UnsafeOperation(
                f"torrent {t.hash} ({t.name}) is under ATM: qBittorrent would ignore setDownloadPath",
                hint="disable ATM for the torrent first",
            )
        self._call(
            "torrents/setDownloadPath",
            self._api.torrents_set_download_path,
            download_path=path,
            torrent_hashes=t.hash,
            torrent=any_hash,
        )

    def set_auto_management(
        self,
        any_hash: str,
        enabled: bool,
        *,
        category_save_path: str | None = None,
    ) -> None:
        """Turn ATM on or off for one torrent, refused where qBittorrent would then move it.

        Either way qBittorrent then moves the torrent, in Overwrite mode (which writes into the
        shared inode of a hardlinked library file), unless its data already is where the new
        mode puts it (``TorrentImpl::setAutoTMMEnabled`` -> ``adjustStorageLocation``). On: its
        category's save path, which the caller must pass and which must equal both the torrent's
        current save path and the path qBittorrent itself derives. Off: see ``atm_off_refusal``.
        """
        t = self.torrent(any_hash)
        if enabled and not t.auto_tmm:
            self._check_atm_safe(t, category_save_path)
        if not enabled and (why := self._atm_off_moves(t)) is not None:
            raise UnsafeOperation(
                f"refusing to turn ATM off for {t.hash} ({t.name}): {why}",
                hint="an ATM move overwrites files in place, including hardlinked ones",
            )
        self._call(
            "torrents/setAutoManagement",
            self._api.torrents_set_auto_management,
            enable=bool(enabled),
            torrent_hashes=t.hash,
            torrent=any_hash,
        )

    def atm_off_refusal(self, any_hash: str) -> str | None:
        """Why turning ATM off for this torrent would move its data (one line naming the torrent
        and both paths), or None when it would not, or ATM is off (the executor asks before a
        group acts at all; ``set_auto_management`` refuses on the same rule)."""
        t = self.torrent(any_hash)
        why = self._atm_off_moves(t)
        return None if why is None else f"turning ATM off for {t.hash} ({t.name}) would move it: {why}"

    def _atm_off_moves(self, t: TorrentInfo) -> str | None:
        """Off, qBittorrent gives the torrent its category's save and download paths, then moves
        it unless its data is already at the one that applies. Under ATM it reports those very
        paths (``TorrentImpl::savePath``/``downloadPath`` are the category's), so they need no
        prediction. The download path applies to an unfinished torrent, where qBittorrent's
        "finished once" flag, which the API does not report, decides: such a torrent whose two
        paths differ is refused."""
        if not t.auto_tmm:
            return None
        target: str | None = t.save_path
        if t.download_path and t.download_path != t.save_path and not t.is_complete:
            target = None
        return self._storage_not_at(t, target)

    def _storage_not_at(self, t: TorrentInfo, target: str | None) -> str | None:
        """The rule of both directions, its one home: qBittorrent's ``adjustStorageLocation``
        moves unless libtorrent's storage already is at ``target`` and no move is under way.
        None when nothing would move; else why (the target None: it cannot be told)."""
        if not target:
            return "qBittorrent's target cannot be told (not complete, its save and download paths differ)"
        if t.is_moving:
            return f"a move is under way (to {t.save_path}); qBittorrent would move it again to {target}"
        storage = self._storage_location(t)
        if storage is None:
            return f"where its data is cannot be told from content path {t.content_path!r} and its file list"
        if storage != normalize(target):
            return f"its data is at {storage}, and qBittorrent would move it to {target}"
        return None

    def _storage_location(self, t: TorrentInfo) -> str | None:
        """libtorrent's save path, where the data IS (``save_path`` is where qBittorrent WANTS it):
        qBittorrent reports ``content_path`` as that path joined with the only file's path, or
        the files' common top folder, or nothing more (``TorrentImpl::contentPath``). None when
        it cannot be told (no metadata, no file list, a content path of another shape)."""
        if not t.has_metadata or not t.content_path:
            return None
        names = [f.name for f in self.files(t.hash)]
        if not names:
            return None
        content = normalize(t.content_path)
        rel = names[0] if len(names) == 1 else _root_folder(names)
        if not rel:
            return content
        suffix = "/" + rel.strip("/")
        if not content.endswith(suffix):
            return None
        return content[: -len(suffix)] or "/"

    def _check_atm_safe(self, t: TorrentInfo, category_save_path: str | None) -> None:
        def refuse(reason: str) -> UnsafeOperation:
            return UnsafeOperation(
                f"refusing to enable ATM for {t.hash} ({t.name}): {reason}",
                hint="an ATM move overwrites files in place, including hardlinked ones",
            )

        if category_save_path is None:
            raise refuse("the category save path was not given")
        if not t.is_complete:
            raise refuse("the torrent is not complete (ATM would use the download path)")
        given = normalize(category_save_path)
        if given != t.save_path:
            raise refuse(f"category save path {given} != current save path {t.save_path}")
        actual = self.category_save_path(t.category)
        if actual != t.save_path:
            raise refuse(
                f"qBittorrent's save path for category {t.category!r} is {actual}, "
                f"not the current save path {t.save_path}"
            )
        if (why := self._storage_not_at(t, actual)) is not None:
            raise refuse(why)

    def _act(self, endpoint: str, fn: Callable[..., Any], any_hash: str, **params: Any) -> None:
        """One per-torrent action, always addressed by the id qBittorrent reported.

        qBittorrent answers 200 to unknown hashes, so the torrent is resolved first.
        """
        t = self.torrent(any_hash)
        self._call(endpoint, fn, torrent_hashes=t.hash, torrent=any_hash, **params)

    def stop(self, any_hash: str) -> None:
        """Stop (4.x: pause) a torrent."""
        # qbittorrent-api >= 2024.5.61 routes to torrents/stop or
        # torrents/pause by Web API version (checked in its source).
        self._act("torrents/stop", self._api.torrents_stop, any_hash)

    def start(self, any_hash: str, *, forced: bool = False) -> None:
        """Start (4.x: resume) a torrent; ``forced``: force-started (torrents/setForceStart, which
        starts a stopped torrent too). A plain start is auto-managed: with queueing on, a torrent
        that seeded forced would come back queuedUP and seed nothing."""
        if forced:
            self._act("torrents/setForceStart", self._api.torrents_set_force_start, any_hash, enable=True)
            return
        self._act("torrents/start", self._api.torrents_start, any_hash)

    def recheck(self, any_hash: str) -> None:
        self._act("torrents/recheck", self._api.torrents_recheck, any_hash)

    def add_tags(self, any_hash: str, tags: Iterable[str]) -> None:
        tag_list = check_tags(tags)
        if not tag_list:
            self.torrent(any_hash)  # an unknown torrent is refused even with nothing to do
            return
        self._act("torrents/addTags", self._api.torrents_add_tags, any_hash, tags=tag_list)

    def remove_tags(self, any_hash: str, tags: Iterable[str]) -> None:
        tag_list = check_tags(tags)
        if not tag_list:
            self.torrent(any_hash)  # an unknown torrent is refused even with nothing to do
            return
        self._act("torrents/removeTags", self._api.torrents_remove_tags, any_hash, tags=tag_list)

    def close(self) -> None:
        """Log out; a no-op if never logged in."""
        self._state_lag_s = None  # a next connection may find the preference changed
        if self._logged_in:
            self._logged_in = False
            try:
                self._api.auth_log_out()
            except qba.APIError:
                pass


def _file_list(rows: Any, torrent: str) -> list[TorrentFile]:
    if not isinstance(rows, list):
        raise UnreadableRecord(f"torrent {torrent}: torrents/files: not a list of file records")
    return [TorrentFile.from_api(r, i, torrent) for i, r in enumerate(rows)]


def _status_of(exc: BaseException) -> int | str:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", "?")


def _raw_hashes(raw: Mapping[str, Any]) -> set[str]:
    keys = ("hash", "infohash_v1", "infohash_v2")
    return {str(raw[k]).lower() for k in keys if raw.get(k)}


def _root_folder(names: list[str]) -> str:
    """The files' common top folder, "" when one has none or they differ
    (qBittorrent's ``Path::findRootFolder``)."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1 or any("/" not in n for n in names):
        return ""
    return tops.pop()


def _effective_category_path(name: str, paths: Mapping[str, str], default: str, nested: bool | None) -> str | None:
    """Absolute client path for a category, as qBittorrent derives it (``paths``: every
    category's own save path, as listed; ``nested``: ``QbtClient._subcategory_rule``).

    Empty category -> default save path; a relative category path -> below the default; an
    empty one -> the category name below the default, or with ``nested`` its last component
    below its parent's path (derived the same way). None when the derivation is uncertain: a
    category not listed, the subcategory rule unknown, or qBittorrent's name sanitising.
    """
    if not name:
        return default
    if name not in paths:
        return None
    path, base = paths[name], default
    if not path:
        if "/" in name and nested is None:
            return None
        path = name
        if nested and "/" in name:
            parent, _, path = name.rpartition("/")
            base = _effective_category_path(parent, paths, default, nested)
            if base is None:
                return None
        if _CATEGORY_PATH_UNSAFE & set(path) or path != path.strip() or {".", ".."} & set(path.split("/")):
            return None
    if not path.startswith("/"):
        path = posixpath.join(base, path)
    return path


def _field(entry: Any, key: str, default: Any = None) -> Any:
    if isinstance(entry, Mapping):
        return entry.get(key, default)
    return getattr(entry, key, default)


def _client_from_config(entry: Any, client_kwargs: Mapping[str, Any]) -> QbtClient:
    path_map = _field(entry, "path_map")
    if not isinstance(path_map, PathMap):
        path_map = PathMap.from_config(path_map)
    kwargs = dict(client_kwargs)
    for key in ("timeout", "api_key"):
        value = _field(entry, key)
        if value is not None:
            kwargs[key] = value
    return QbtClient(
        name=str(_field(entry, "name")),
        url=str(_field(entry, "url")),
        username=_field(entry, "username"),
        password=_field(entry, "password"),
        path_map=path_map,
        **kwargs,
    )
