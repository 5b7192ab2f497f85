"""Sonarr / Radarr / Lidarr / Readarr "Connect > Webhook" payloads.

Shapes (read from each app's src/NzbDrone.Core/Notifications/Webhook/, see
tests/unit/events/fixtures/README.md): every payload has ``eventType``; the app shows only
in which objects it carries, so that is how the app is recognized.
"""

from __future__ import annotations

from typing import Any

from qbhook.errors import BadRequest
from qbhook.events import _fields as f
from qbhook.events.model import Event

ARR_APPS = ("sonarr", "radarr", "lidarr", "readarr")

# Keys only one app sends. Health/ApplicationUpdate carry none of them.
_APP_KEYS = {
    "sonarr": ("series", "episodes", "episodeFile", "episodeFiles", "renamedEpisodeFiles"),
    "radarr": ("movie", "remoteMovie", "movieFile", "renamedMovieFiles"),
    "lidarr": ("artist", "albums", "album", "tracks", "trackFiles", "renamedTrackFiles", "trackFile"),
    "readarr": ("author", "book", "books", "bookFiles", "bookFile", "renamedBookFiles"),
}

# Where each app keeps the media folder, for deletes that name no file.
_FOLDER = {
    "sonarr": ("series", "path"),
    "radarr": ("movie", "folderPath"),
    "lidarr": ("artist", "path"),
    "readarr": ("author", "path"),
}

_SINGLE_FILE_KEYS = ("episodeFile", "movieFile", "trackFile", "bookFile")
_FILE_LIST_KEYS = (
    "episodeFiles",
    "trackFiles",
    "bookFiles",
    "renamedEpisodeFiles",
    "renamedMovieFiles",
    "renamedTrackFiles",
    "renamedBookFiles",
)
# recycleBinPath: a file moved to a recycle bin on the same filesystem is still a hardlink
# to the seed data, so placement must hear about it.
_FILE_PATH_KEYS = ("path", "sourcePath", "recycleBinPath", "previousPath")

_FILE_DELETE = frozenset({"EpisodeFileDelete", "MovieFileDelete", "BookFileDelete", "TrackFileDelete"})
_MEDIA_DELETE = frozenset({"SeriesDelete", "MovieDelete", "ArtistDelete", "AlbumDelete", "BookDelete", "AuthorDelete"})

# Other clients' downloadIds (SABnzbd_nzo_..., Download Station dbid_...) are not hashes and
# are dropped; from qBittorrent a non-hash means the payload is corrupt.
_HASH_CLIENT_TYPES = frozenset({"qbittorrent"})


def parse_arr(payload: object, *, app: str | None = None, received_at: float = 0.0) -> Event:
    data = f.obj(payload, "body")
    if "eventType" not in data or data["eventType"] is None:
        raise BadRequest("eventType: missing (is this an *arr webhook payload?)")
    raw_type = f.string(data["eventType"], "eventType")
    source = _detect_app(data, app)
    instance = f.opt_str(data, "instanceName", "instanceName") or ""

    if raw_type == "Test":
        return Event(source, "test", instance=instance, received_at=received_at, raw_type=raw_type)

    kind, reason = _kind(data, raw_type)
    if kind == "ignored":
        return Event(
            source,
            "ignored",
            hashes=_lenient_hashes(data),
            instance=instance,
            received_at=received_at,
            raw_type=raw_type,
        )
    if source == "arr":
        raise BadRequest(f"{raw_type}: cannot tell which app sent it (no series, movie, artist or author)")
    located = _file_paths(data, source)
    if kind == "media_deleted" or not located:
        located += _folder(data, source)
    hashes = _hashes(data)
    if not hashes:
        f.refuse_windows_only(located)
    return Event(
        source,
        kind,
        hashes=hashes,
        paths=f.unique([path for _, path in located]),
        instance=instance,
        received_at=received_at,
        raw_type=raw_type,
        reason=reason,
        client=f.opt_str(data, "downloadClient", "downloadClient") or "",
    )


def _detect_app(data: dict[str, Any], expected: str | None) -> str:
    found = [app for app, keys in _APP_KEYS.items() if any(data.get(k) is not None for k in keys)]
    if len(found) > 1:
        raise BadRequest(f"body: mixes fields of {' and '.join(found)}; cannot tell the app")
    if expected is not None and found and found[0] != expected:
        raise BadRequest(f"body: looks like a {found[0]} payload, but was sent to the {expected} endpoint")
    if found:
        return found[0]
    return expected or "arr"


def _kind(data: dict[str, Any], raw_type: str) -> tuple[str, str]:
    if raw_type == "Download":
        is_upgrade = f.opt_bool(data, "isUpgrade", "isUpgrade")
        deleted = data.get("deletedFiles")
        replaced = isinstance(deleted, list) and len(deleted) > 0
        return ("upgrade" if is_upgrade or replaced else "import"), ""
    if raw_type == "Rename":
        return "rename", ""
    if raw_type in _FILE_DELETE:
        return "file_deleted", f.opt_str(data, "deleteReason", "deleteReason") or ""
    if raw_type in _MEDIA_DELETE:
        deleted = f.opt_bool(data, "deletedFiles", "deletedFiles")
        return "media_deleted", {True: "files_deleted", False: "files_kept", None: ""}[deleted]
    # Grab, Health, HealthRestored, ApplicationUpdate, ManualInteractionRequired, *Add,
    # Retag, DownloadFailure, ImportFailure and whatever future versions invent.
    return "ignored", ""


def _hashes(data: dict[str, Any]) -> tuple[str, ...]:
    download_id = data.get("downloadId")
    if download_id is None or download_id == "":
        return ()
    value = f.string(download_id, "downloadId")
    if f.is_hash(value):
        return (value.lower(),)
    client_type = data.get("downloadClientType")
    if isinstance(client_type, str) and client_type.lower() in _HASH_CLIENT_TYPES:
        f.hash_value(value, "downloadId")  # raises with the precise message
    return ()


def _lenient_hashes(data: dict[str, Any]) -> tuple[str, ...]:
    download_id = data.get("downloadId")
    return (download_id.lower(),) if f.is_hash(download_id) else ()


def _file_paths(data: dict[str, Any], app: str) -> list[tuple[str, str]]:
    """(field, path) of every file the payload names; the field for a 400 (``refuse_windows_only``)."""
    files: list[tuple[str, dict[str, Any]]] = []
    for key in _SINGLE_FILE_KEYS:
        item = f.opt_obj(data, key, key)
        if item is not None:
            files.append((key, item))
    list_keys = _FILE_LIST_KEYS + (("deletedFiles",) if isinstance(data.get("deletedFiles"), list) else ())
    for key in list_keys:
        for i, item in enumerate(f.opt_list(data, key, key)):
            files.append((f"{key}[{i}]", f.obj(item, f"{key}[{i}]")))

    folder = _folder(data, app)
    paths: list[tuple[str, str]] = []
    for where, item in files:
        found = [
            (f"{where}.{k}", f.path_value(item[k], f"{where}.{k}")) for k in _FILE_PATH_KEYS if item.get(k) is not None
        ]
        if not item.get("path") and folder and item.get("relativePath"):
            # Older versions sent only relativePath; the library folder completes it.
            # Relative by definition: what must be usable is the joined path ('..' in it too).
            rel = f.path_text(item["relativePath"], f"{where}.relativePath")
            found.insert(0, (f"{where}.relativePath", f.usable_path(_join(folder[0][1], rel), f"{where}.relativePath")))
        paths += found
    for key in ("sourcePath", "destinationPath"):  # Sonarr "Import Complete"
        value = data.get(key)
        if value is not None:
            paths.append((key, f.path_value(value, key)))
    return paths


def _folder(data: dict[str, Any], app: str) -> list[tuple[str, str]]:
    if app not in _FOLDER:
        return []
    holder_key, path_key = _FOLDER[app]
    holder = f.opt_obj(data, holder_key, holder_key)
    if holder is None or holder.get(path_key) is None:
        return []
    where = f"{holder_key}.{path_key}"
    return [(where, f.path_value(holder[path_key], where))]


def _join(folder: str, relative: str) -> str:
    sep = "\\" if "\\" in folder and "/" not in folder else "/"
    return folder.rstrip(sep) + sep + relative.lstrip("/\\")
