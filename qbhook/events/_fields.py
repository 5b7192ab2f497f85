"""Typed, bounded access to untrusted payload fields.

Every getter names the field in its error so the sender's log says exactly what to fix.
Fields nobody reads are never looked at: payloads drift between versions and unknown or
odd fields must not cost an event.

Paths are bytes on Linux and need not be UTF-8. Inside qbhook a path is the ``str`` that
``os.fsdecode`` gives (UTF-8, undecodable bytes as U+DC80..U+DCFF, PEP 383), so
``os.fsencode`` gets the exact bytes back. A sender that cannot put such bytes in its text
format (the hook script's form fields) sends them hex-encoded instead: see ``hex_bytes``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from qbhook.errors import BadRequest
from qbhook.paths import refusal, shown

# PATH_MAX is 4096 bytes; twice that in characters leaves room for any real path or name.
MAX_STRING_CHARS = 8192
# A season pack or a discography is a few hundred files; thousands means garbage.
MAX_LIST_ITEMS = 5000

_HASH_RE = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_HEX_RE = re.compile(r"(?:[0-9a-fA-F]{2})*")
# A drive (D:\ or D:/) or a UNC share (\\server\share): how an app running on Windows names a file.
_WINDOWS_PATH_RE = re.compile(r"[A-Za-z]:[\\/]|\\\\")


def is_hash(value: object) -> bool:
    return isinstance(value, str) and _HASH_RE.fullmatch(value) is not None


def hash_value(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where}: expected an info hash string, got {_type_name(value)}")
    if not is_hash(value):
        raise BadRequest(f"{where}: not an info hash (40 or 64 hex digits): {quoted(value)}")
    return value.lower()


def obj(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: expected a JSON object, got {_type_name(value)}")
    return value


def opt_obj(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = data.get(key)
    return None if value is None else obj(value, where)


def string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where}: expected a string, got {_type_name(value)}")
    if len(value) > MAX_STRING_CHARS:
        raise BadRequest(f"{where}: longer than {MAX_STRING_CHARS} characters")
    return value


def opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    return None if value is None else string(value, where)


def opt_bool(data: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise BadRequest(f"{where}: expected true or false, got {_type_name(value)}")


def opt_list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"{where}: expected a list, got {_type_name(value)}")
    if len(value) > MAX_LIST_ITEMS:
        raise BadRequest(f"{where}: more than {MAX_LIST_ITEMS} items")
    return value


def path_value(value: object, where: str) -> str:
    """A path the worker can use, as ``os.fsdecode`` would spell it (``path_text``, ``usable_path``)."""
    return usable_path(path_text(value, where), where)


def path_text(value: object, where: str) -> str:
    """A path as ``os.fsdecode`` would spell it, relative or not; refuses what names no file on Linux.

    JSON can carry lone surrogates (``"\\ud800"``) that no byte string decodes to: such a
    path would crash the worker at its first ``open``, so intake refuses it here. Escaped
    bytes are re-decoded so that one byte string has one spelling.
    """
    text = string(value, where)
    if "\0" in text:
        raise BadRequest(f"{where}: contains a NUL character")
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise BadRequest(f"{where}: contains a lone UTF-16 surrogate, which no file name can hold") from None
    return raw.decode("utf-8", "surrogateescape")


def usable_path(text: str, where: str) -> str:
    """``text``, refused with a 400 naming ``where`` if the worker's ``normalize`` would refuse it.

    Queued, such a path (relative, or with a ``..`` component) was refused only by the worker,
    and the job ended "no torrent matches": the event was lost where its sender could not hear.
    Two spellings pass as they did: empty (no path; ``unique`` drops it) and a Windows one
    (``D:\\Movies``, ``\\\\nas\\share``) from an *arr or cross-seed on Windows. The worker refuses
    that one too (``rejected_paths``), but the event's hashes still work, and a 400 would cost them.
    An event with no hash to lose is refused by ``refuse_windows_only``.
    """
    if not text or is_windows_path(text):
        return text
    why = refusal(text)
    if why is not None:
        raise BadRequest(f"{where}: {why}: {quoted(text)}")
    return text


def is_windows_path(text: str) -> bool:
    return _WINDOWS_PATH_RE.match(text) is not None


def refuse_windows_only(located: list[tuple[str, str]]) -> None:
    """400 naming the field when an event with no hash names its files only by Windows paths.

    ``located``: (field, path) of every path the event carries. No ``path_map`` can name a
    Windows prefix (``qbhook.pathmap``), so the worker maps none of them and, with no hash
    either, drops the job: answered 202, such an event (an *arr's delete or rename on Windows)
    was lost where its sender could not hear. The sweep reconciles what it named. With a hash
    the event is still useful and is kept (``usable_path``); one usable path is enough too.
    """
    named = [(where, text) for where, text in located if text]
    if named and all(is_windows_path(text) for _, text in named):
        where, text = named[0]
        raise BadRequest(
            f"{where}: a Windows path cannot be mapped to this host, and the event names no info hash;"
            f" nothing queued, the next sweep reconciles it: {quoted(text)}"
        )


def hex_bytes(value: object, where: str) -> str:
    """Decode a ``<field>.hex`` value: the field's raw bytes as hex digits.

    The hook script sends a field this way when its bytes are not UTF-8, so that a torrent
    whose name or path is, say, Latin-1 still arrives byte-exact instead of costing the
    event. The result is spelled like ``os.fsdecode`` (see the module docstring).
    """
    if not isinstance(value, str):
        raise BadRequest(f"{where}: expected a string of hex digits, got {_type_name(value)}")
    if len(value) > 2 * MAX_STRING_CHARS:
        raise BadRequest(f"{where}: longer than {2 * MAX_STRING_CHARS} hex digits")
    if not _HEX_RE.fullmatch(value):
        raise BadRequest(f"{where}: not an even number of hex digits: {quoted(value)}")
    return bytes.fromhex(value).decode("utf-8", "surrogateescape")


def unique(items: list[str]) -> tuple[str, ...]:
    """First-seen order matters: the first hash is the event's subject."""
    return tuple(dict.fromkeys(item for item in items if item))


def _type_name(value: object) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def quoted(text: str) -> str:
    """A sender's value in an error line, clipped and quoted, by the display rule of every line
    (``paths.shown``): a non-UTF-8 byte reads ``\\xff``, as in every other message; ``repr``
    spelled it ``\\udcff``, Python's inner name for it."""
    return f"'{shown(_clip(text))}'"


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
