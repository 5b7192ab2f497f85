"""Turn what senders post into Events. Pure: no I/O, no clock unless none is given.

Lenient by design: unknown fields are ignored and odd-but-harmless values dropped. Only
what makes an event unusable raises BadRequest, with a message naming the field.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from qbhook.errors import BadRequest
from qbhook.events import _fields as f
from qbhook.events._arr import ARR_APPS
from qbhook.events._arr import parse_arr as _parse_arr
from qbhook.events.model import Event

__all__ = ["ARR_APPS", "parse_arr", "parse_cross_seed", "parse_qbt_hook"]

_QBT_EVENTS = {"added": "torrent_added", "finished": "torrent_finished"}
# qBittorrent leaves a placeholder it does not know as literal text (%J/%K on versions
# older than v2-hash support).
_UNSUBSTITUTED = re.compile(r"%[A-Z]")
_HEX_SUFFIX = ".hex"


def parse_arr(payload: object, *, app: str | None = None, received_at: float | None = None) -> Event:
    """Parse a Sonarr/Radarr/Lidarr/Readarr webhook body (already JSON-decoded).

    ``app`` is the app the request claims to come from (a per-app URL); a payload that
    plainly belongs to another app is refused rather than misfiled.
    """
    if app is not None and app not in ARR_APPS:
        raise ValueError(f"unknown *arr app {app!r}")
    return _parse_arr(payload, app=app, received_at=_now(received_at))


def parse_cross_seed(payload: object, *, received_at: float | None = None) -> Event:
    """Parse a cross-seed v6 notification ``{title, body, extra}``.

    Only an INJECTED result changes what sits on disk in a client; SAVED (a .torrent
    written to outputDir) and FAILURE are acknowledged and ignored, the sweeper covers
    anything a failed injection left behind.
    """
    now = _now(received_at)
    data = f.obj(payload, "body")
    extra = f.opt_obj(data, "extra", "extra")
    if extra is None:  # pre-6.6 or a custom message: nothing to act on
        return Event("cross-seed", "ignored", received_at=now)
    event = f.opt_str(extra, "event", "extra.event") or ""
    if event == "TEST":
        return Event("cross-seed", "test", received_at=now, raw_type=event)
    if event != "RESULTS":
        return Event("cross-seed", "ignored", received_at=now, raw_type=event)

    result = f.opt_str(extra, "result", "extra.result") or ""
    new_hashes = [
        f.hash_value(h, f"extra.infoHashes[{i}]")
        for i, h in enumerate(f.opt_list(extra, "infoHashes", "extra.infoHashes"))
    ]
    searchee = f.opt_obj(extra, "searchee", "extra.searchee") or {}
    searchee_hash = searchee.get("infoHash")
    # "is not None": a falsy wrong type (0, false, "") is as wrong as any other, not "no hash".
    hashes = [f.hash_value(searchee_hash, "extra.searchee.infoHash")] if searchee_hash is not None else []
    path = f.opt_str(searchee, "path", "extra.searchee.path")
    kind = "cross_seed_injected" if result == "INJECTED" else "ignored"
    if kind != "ignored" and not hashes and not new_hashes and not path:
        raise BadRequest("extra: an INJECTED result names no info hash and no searchee path")
    paths = (f.path_value(path, "extra.searchee.path"),) if path else ()
    if kind != "ignored" and not hashes and not new_hashes:
        f.refuse_windows_only([("extra.searchee.path", p) for p in paths])
    return Event(
        "cross-seed",
        kind,
        # The searchee first: it is the data every injection of the burst links to.
        hashes=f.unique(hashes + new_hashes),
        paths=paths,
        received_at=now,
        raw_type=event,
        reason=result,
        client=f.opt_str(searchee, "clientHost", "extra.searchee.clientHost") or "",
    )


def parse_qbt_hook(fields: Mapping[str, Any], *, received_at: float | None = None) -> Event:
    """Parse the fields qbt-hook.sh posts: ``event`` plus qBittorrent's placeholder letters.

    I = v1 hash or "-", J = v2 hash or "-", K = torrent id, F = content path (empty while a
    magnet has no metadata); N, L, G, R, D, C, Z are accepted and not needed here.
    ``instance`` names the qBittorrent when several feed one qbhook.

    Any field may come as ``<name>.hex`` instead (its raw bytes as hex digits): the script
    does that for values that are not UTF-8, which a form field cannot carry. Both spellings
    of one field at once are refused: which one the sender meant is not for us to guess.
    """
    now = _now(received_at)
    if not isinstance(fields, Mapping):
        raise BadRequest("body: expected form fields or a JSON object")
    raw_event = _qbt_field(fields, "event")
    if raw_event not in _QBT_EVENTS:
        raise BadRequest(f"event: must be 'added' or 'finished', got {f.quoted(raw_event)}")
    # K (the torrent id qBittorrent's API keys on) first, so it becomes the subject.
    hashes = [
        f.hash_value(value, name) for name in ("K", "I", "J") if (value := _qbt_field(fields, name)) not in ("", "-")
    ]
    if not hashes:
        raise BadRequest("K, I, J: no info hash given (all empty or '-')")
    content_path = _qbt_field(fields, "F")
    if content_path and not content_path.startswith("/"):
        # qBittorrent's %F is always absolute; a relative one would be read against the worker's
        # folder, later, and map to no pool: refused while the sender can still hear it.
        raise BadRequest(f"F: must be an absolute path (qBittorrent's %F), got {f.quoted(content_path)}")
    return Event(
        "qbittorrent",
        _QBT_EVENTS[raw_event],
        hashes=f.unique(hashes),
        paths=(f.path_value(content_path, "F"),) if content_path else (),
        instance=_qbt_field(fields, "instance"),
        received_at=now,
        raw_type=raw_event,
    )


def _qbt_field(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    hexed = fields.get(name + _HEX_SUFFIX)
    if hexed is not None:
        if value is not None:
            raise BadRequest(f"{name}, {name}{_HEX_SUFFIX}: both given; send one")
        return f.hex_bytes(hexed, name + _HEX_SUFFIX)
    if value is None:
        return ""
    text = f.string(value, name)
    return "" if _UNSUBSTITUTED.fullmatch(text) else text


def _now(received_at: float | None) -> float:
    return time.time() if received_at is None else float(received_at)
