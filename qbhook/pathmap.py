"""Translation between qBittorrent's view of paths and the host's view.

qBittorrent usually runs in a container that sees ``/data/media`` where the
host sees ``/stash/data/media``. A path that was not translated looked
"missing" to host-side guards, which then let qBittorrent copy data on its own
(field lesson 1), and two spellings of one file compared unequal (lesson 5).
So every path crossing the adapter goes through one ``PathMap``, and a path it
cannot translate is an error, never passed through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from qbhook.errors import PathMapError
from qbhook.paths import normalize

__all__ = ["MAX_ENTRIES", "PathMap", "normalize"]

#: Entries one path_map may have (config refuses more). A real map has one entry per mount the
#: client's container sees: a handful. The cap bounds what a config can make every command and
#: the hook do: YAML aliases make an entry a few bytes, and every path translated scans the map.
MAX_ENTRIES = 256


def _components(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


def _join(prefix: tuple[str, ...], rest: tuple[str, ...]) -> str:
    return "/" + "/".join(prefix + rest)


_ENTRY = None  # the key of a prefix tree node's entry index: no path component is None


def _prefix_tree(prefixes: Iterable[str]) -> dict:
    """Nested dicts, one level per path component; the node of the n-th prefix holds n at ``_ENTRY``.
    Prefixes are normalized and distinct (``_check_unambiguous``), so no node holds two."""
    tree: dict = {}
    for n, prefix in enumerate(prefixes):
        node = tree
        for part in _components(prefix):
            node = node.setdefault(part, {})
        node[_ENTRY] = n
    return tree


def _disagreement(label: str, outer: tuple[str, str], inner: tuple[str, str], side: int, expected: str) -> str:
    return (
        f"{label} prefix {inner[side]} lies inside {outer[side]}, so a {label} path under it maps "
        f"two ways ({inner[1 - side]} by its own entry, {expected} by {outer[side]}'s)"
    )


class PathMap:
    """Longest-prefix mapping on whole path components, both directions.

    An empty map is the identity: qBittorrent runs on the host itself.
    ``client`` names the client in messages (an rTorrent adapter labels its map).
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] = (), client: str = "qBittorrent"):
        self.client = client
        self._pairs: tuple[tuple[str, str], ...] = tuple((normalize(c), normalize(h)) for c, h in pairs)
        self._check_unambiguous()
        # longest first, so the first match is the longest one
        self._by_client = sorted(
            ((_components(c), _components(h)) for c, h in self._pairs),
            key=lambda ch: -len(ch[0]),
        )
        self._by_host = sorted(
            ((_components(h), _components(c)) for c, h in self._pairs),
            key=lambda hc: -len(hc[0]),
        )

    @classmethod
    def from_config(cls, value: Mapping[str, str] | Iterable[Iterable[str]] | None) -> PathMap:
        """Accept ``{client: host}`` or ``[[client, host], ...]`` (YAML shapes)."""
        if value is None:
            return cls()
        if isinstance(value, Mapping):
            return cls(value.items())
        pairs = []
        for item in value:
            pair = tuple(item)
            if len(pair) != 2:
                raise PathMapError(f"path_map entry must be [client_prefix, host_prefix]: {item!r}")
            pairs.append(pair)
        return cls(pairs)

    def _check_unambiguous(self) -> None:
        # Two targets for one prefix would make the translation depend on
        # list order, which is exactly the silent formula error of lesson 4.
        for side, label in ((0, "client"), (1, "host")):
            seen: dict[str, str] = {}
            for pair in self._pairs:
                key, other = pair[side], pair[1 - side]
                if seen.setdefault(key, other) != other:
                    raise PathMapError(f"path_map: {label} prefix {key} is mapped twice ({seen[key]} and {other})")

    def nested_disagreements(self) -> list[str]:
        """Nested prefixes that disagree, so one path maps two ways (config refuses these).

        With ``/data -> /stash/data`` and ``/data/media -> /pool/media``, the client path
        ``/data/media/x`` reads as ``/stash/data/media/x`` by the first entry and
        ``/pool/media/x`` by the second; which one wins would depend on a longest-prefix
        convention the user may not have meant. Same on the host side. A nested entry that
        agrees with its outer one (``/data/media -> /stash/data/media``) is redundant, not
        ambiguous, and passes. Listed client side first, then by the outer entry's place in
        the map, then the inner one's.

        Each entry looks up only its own ancestors (a tree of the prefixes, one step per path
        component), never every other entry: comparing all pairs took seconds to minutes for a
        few KiB of YAML aliases, in every command and in the hook qBittorrent runs.
        """
        pairs = list(dict.fromkeys(self._pairs))  # a repeated entry is one entry, said once
        found: list[tuple[int, int, int, str]] = []
        for side, label in ((0, "client"), (1, "host")):
            tree = _prefix_tree(pair[side] for pair in pairs)
            for ii, inner in enumerate(pairs):
                i = _components(inner[side])
                node = tree
                for depth, part in enumerate(i):  # node: the prefix of i's first `depth` components
                    oi = node.get(_ENTRY)
                    if oi is not None:
                        outer = pairs[oi]
                        expected = _join(_components(outer[1 - side]), i[depth:])
                        if expected != inner[1 - side]:
                            found.append((side, oi, ii, _disagreement(label, outer, inner, side, expected)))
                    node = node[part]
        return [why for *_, why in sorted(found)]

    def labelled(self, client: str) -> PathMap:
        """The same map, naming ``client`` (e.g. ``rTorrent 'rt'``) in its messages."""
        return PathMap(self._pairs, client=client)

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """Normalized ``(client_prefix, host_prefix)`` pairs, in config order."""
        return self._pairs

    @property
    def is_identity(self) -> bool:
        return not self._pairs

    def to_host(self, client_path: str) -> str:
        """Host path for a path as qBittorrent sees it."""
        path = normalize(client_path)
        if self.is_identity:
            return path
        mapped = self._translate(path, self._by_client)
        if mapped is None:
            raise self._unmapped(path, self.client, 0)
        return mapped

    def to_client(self, host_path: str) -> str:
        """Path as qBittorrent sees it for a host path."""
        path = normalize(host_path)
        if self.is_identity:
            return path
        mapped = self._translate(path, self._by_host)
        if mapped is None:
            raise self._unmapped(path, "host", 1)
        if self.to_host(mapped) != path:
            # A more specific client mount hides this host path from the
            # client: handing qBittorrent `mapped` would name another file.
            raise PathMapError(
                f"host path {path} is not visible to {self.client}: its client "
                f"spelling {mapped} maps back to {self.to_host(mapped)}",
                hint="a nested path_map entry shadows it; check path_map",
            )
        return mapped

    @staticmethod
    def _translate(path: str, table: list[tuple[tuple[str, ...], tuple[str, ...]]]) -> str | None:
        parts = _components(path)
        for src, dst in table:
            if parts[: len(src)] == src:
                return _join(dst, parts[len(src) :])
        return None

    def _unmapped(self, path: str, view: str, side: int) -> PathMapError:
        prefixes = ", ".join(pair[side] for pair in self._pairs)
        return PathMapError(
            f"{view} path {path} is under no path_map prefix ({prefixes})",
            hint="add a path_map entry covering it, or fix the path",
        )

    def __repr__(self) -> str:
        return f"PathMap({list(self._pairs)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathMap) and set(self._pairs) == set(other._pairs)

    def __hash__(self) -> int:
        return hash(frozenset(self._pairs))
