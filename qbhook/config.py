"""Configuration: YAML in, validated frozen dataclasses out.

Validation happens at load and names the offending key, so a typo fails loudly
instead of silently falling back to a default that moves data somewhere odd.
Secrets are never required inline: passwords come from an environment variable
or a file, and ``describe()`` masks them. A load with ``secrets=False`` reads none of them
(their names are still checked): `qbhook hook`, run by qBittorrent, has neither the service's
environment nor a use for a password, and records an event into the catalog only. A load with
``secrets="notify"`` reads only the notification URLs: `scan` may notify (its mass-delete
guard) but asks no client and serves nothing, so a client's password file it cannot read (or
a variable not set) does not stop it; a command that talks to a client still stops there.

Every setting has one declared kind (the tables ``_POLICY``, ``_SCAN``, ``_SERVER``,
``_QBT``), never a guess from its default's type:

- duration: seconds as a number, or a string with a unit s, m/min, h, d, w (``30s``,
  ``5m``, ``2h``, ``1d``); finite, at most ten years, per-field lower bound;
- size: bytes as a whole number, or a string with a unit: KB/MB/GB/TB are powers of
  1000, KiB/MiB/GiB/TiB (and bare K/M/G/T) powers of 1024;
- reserve: a size, or a percent of the filesystem's size (``5%``, ``0.5%``; at most ``50%``);
- count: a whole number (``2.5`` is an error, not 2); fraction: a number in a stated
  interval; port: 1-65535; flag: true/false; text: a non-empty string; tag: a text the clients
  keep as one tag (``names.tag_problem``: no ',', no control character, no spaces around it).
  A ``demote_categories`` name qBittorrent refuses (``names.category_problem``) is an error when
  every client is a qBittorrent.

Any defect is a ConfigError whose message is one line naming the key (exit 78); NaN,
infinities, non-UTF-8 files and malformed YAML included. ``path_map`` is checked once,
here, by the same ``PathMap`` the qBittorrent adapter uses, plus a check that no path
maps two ways through nested prefixes; a map has at most ``pathmap.MAX_ENTRIES`` entries.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from qbhook import numbers
from qbhook.dirfd import FolderRefused, SeedingRoot, loose_folders_above, open_root, symlink_on_the_way
from qbhook.errors import CatalogFolderMissing, CatalogLinkDangling, CatalogLinkLoop, ConfigError, PathMapError
from qbhook.files import Missing, NotReadable, decode_text, read_regular_file
from qbhook.files import kind as mode_kind
from qbhook.lockfile import loose_folder
from qbhook.names import category_problem, tag_problem
from qbhook.paths import is_within
from qbhook.space import Reserve

DEFAULT_CONFIG_PATHS = ("/etc/qbhook/config.yaml",)
ROLES = ("primary", "cold")


@dataclass(frozen=True)
class PoolConfig:
    name: str
    path: Path
    role: str  # "primary" (libraries live here) or "cold" (seed-only)
    seeding_root: Path  # the first seeding root: where qbhook builds new views
    more_seeding_roots: tuple[Path, ...] = ()  # further seeding roots (e.g. cross-seed's link folder)

    @property
    def seeding_roots(self) -> tuple[Path, ...]:
        """Every seeding root of this pool, the build root first. Each one is "seeding tree":
        links there do not count as a library's, and fsops may act below it."""
        return (self.seeding_root, *self.more_seeding_roots)

    @property
    def anchored_seeding_roots(self) -> tuple[SeedingRoot, ...]:
        """``seeding_roots``, each with this pool's root: the form to hand to code that opens them
        (``move.fsops``, the orphan walk), which then walks down from the pool root, never
        following a seeding root (or a folder above it) swapped for a symlink."""
        return tuple(SeedingRoot(str(r), str(self.path)) for r in self.seeding_roots)


@dataclass(frozen=True)
class QbtConfig:
    name: str
    url: str
    username: str
    password: str | None = field(repr=False, default=None)
    password_env: str | None = None
    password_file: Path | None = None
    path_map: tuple[tuple[str, str], ...] = ()  # (client prefix, host prefix)
    timeout: float = 30.0

    @property
    def type(self) -> str:
        return "qbittorrent"


@dataclass(frozen=True)
class RtorrentConfig:
    name: str
    scgi: str  # unix socket path (/run/rtorrent/rpc.sock) or host:port
    path_map: tuple[tuple[str, str], ...] = ()  # (client prefix, host prefix)
    timeout: float = 30.0

    @property
    def type(self) -> str:
        return "rtorrent"


#: A ``clients:`` entry; ``type`` says which.
ClientConfig = QbtConfig | RtorrentConfig
CLIENT_TYPES = ("qbittorrent", "rtorrent")


DEFAULT_MIN_FREE = Reserve(5, percent=True)  # policy.min_free: why 5%, see PolicyConfig


@dataclass(frozen=True)
class PolicyConfig:
    # Demotion needs this tag on every torrent of the group (None: no tag needed).
    demote_require_tag: str | None = "~noHL"
    # Only these categories may demote (empty: any).
    demote_categories: tuple[str, ...] = ()
    # Seconds since completion before a torrent may demote.
    min_seeding_age: float = 0.0
    # Seconds since completion before `serve`'s plans (its jobs' and its sweeper's) may demote (the
    # *arr's import polling comes first; a person's plan/apply/sweep is not held back). 0: off.
    import_grace: float = 900.0
    # Maintain demote_require_tag ourselves from the link facts.
    tag_no_external_links: bool = False
    # Promotion may copy at most this much content that is not yet on the primary pool.
    promote_copy_max_bytes: int = 64 * 1024 * 1024
    promote_copy_max_ratio: float = 0.01
    auto_apply: bool = False
    grace_period: float = 0.0  # seconds to keep deleted links in a holding folder
    relocated_tag: str = "qbhook-relocated"
    max_groups_per_run: int = 50  # batch cap: a plan never touches more at once
    # `orphans` refuses when unreferenced data would exceed this share of a pool's seeding
    # bytes: an unmounted dataset, a wrong path_map or a client outage looks like that.
    orphans_max_share: float = 0.2
    # Same-pool convergence (decide/converge.py) is planned and applied; False: only reported
    # ("would converge ... policy.converge is false"), never applied.
    converge: bool = True
    # Free space a run leaves on every pool it copies onto (``space.fits``): a size, or a share of
    # the filesystem's size. 5% by default: ZFS slows down as a pool nears full (its guidance is
    # to stay below 80-90% used), qBittorrent's downloads fail at 0 bytes available, and *arr
    # apps keep a minimum free space for the same reason.
    min_free: Reserve = DEFAULT_MIN_FREE
    # The groups of each user a torrent client runs as: uid -> every gid it is in (primary and
    # supplementary, as ``id`` shows where the client runs), as ((uid, (gid, ...)), ...). A
    # convergence links a seeding name onto a library's inode only if that inode gives the name's
    # owner the access the replaced file gave it (``qbhook.access``). Given, only these count (a
    # replaced file's group from a setgid folder or a chgrp need not be the user's); not given,
    # the replaced file's group is taken as the user's and any other group errs toward refusing.
    client_groups: tuple[tuple[int, tuple[int, ...]], ...] = ()

    def groups_of(self) -> dict[int, frozenset[int]]:
        """``client_groups`` as uid -> its groups (``access.access_lost``'s ``groups``)."""
        return {uid: frozenset(gids) for uid, gids in self.client_groups}


# ZFS's snapshot folder and qbhook's own (``move.fsops.STAGING_DIR`` / ``HOLDING_DIR``, which
# cannot be imported here: config sits below move): in every ``scan.ignore_names``. Exact names;
# qbhook's temporary relink links go by a prefix (``paths.RELINK_PREFIX``), which each walk skips.
ALWAYS_IGNORED: tuple[str, ...] = (".zfs", ".qbhook-holding", ".qbhook-staging")


@dataclass(frozen=True)
class ScanConfig:
    # Refuse to drop more than this share of a root's known paths in one scan.
    mass_delete_max_share: float = 0.10
    # ...unless fewer than this many paths would go (small roots churn legitimately).
    mass_delete_min_paths: int = 100
    # A hash is cached only when the file's mtime is at least this old.
    settle_seconds: float = 60.0
    # plan/apply for everything use the catalog as is when every pool's last full scan is
    # younger than this; older (or never) and the pools are scanned first. Either way each
    # file a decision rests on is re-stat-ed live.
    max_age: float = 3600.0
    # Bytes hashed per run at most (0: no limit); the rest waits for the next run.
    hash_budget: int = 0
    # Names never walked, catalogued or counted as orphans. A user's list adds to ALWAYS_IGNORED,
    # never replaces it (``__post_init__``).
    ignore_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A list that replaced the defaults (``[@eaDir]``) let the walks enter qbhook's own
        # folders: held links counted as orphans, staging files catalogued as seeding data.
        object.__setattr__(self, "ignore_names", tuple(dict.fromkeys(ALWAYS_IGNORED + tuple(self.ignore_names))))


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1"
    port: int = 9797
    username: str | None = None
    password: str | None = field(repr=False, default=None)
    password_env: str | None = None
    password_file: Path | None = None
    token: str | None = field(repr=False, default=None)
    token_env: str | None = None
    token_file: Path | None = None
    sweep_interval: float = 6 * 3600.0
    max_body: int = 256 * 1024
    # Pending event jobs at most; events for further torrents or files fold into one sweep job
    # (qbhook.events.queue): a flood of distinct subjects must not fill the disk.
    max_pending: int = 1000


@dataclass(frozen=True)
class SweepConfig:
    # An unchanged sweep re-plans only the groups whose inputs changed (qbhook.events.worker);
    # every this often it re-plans everything anyway. 0: every sweep re-plans everything.
    full_every: float = 6 * 3600.0
    # After each sweep, finished event jobs, scan records and torrents gone from their client
    # (index rows and file rows) older than this are deleted: these tables otherwise grow with
    # every event, sweep and removed torrent for as long as `serve` runs. One knob for all: each
    # is the same question (how long a running qbhook remembers what is over), and gone file
    # rows are read by every index refresh, so a longer default would cost each sweep.
    keep_history: float = 7 * 86400.0


@dataclass(frozen=True)
class NotifyConfig:
    urls: tuple[str, ...] = field(repr=False, default=())  # apprise URLs (they carry tokens)
    urls_env: str | None = None
    urls_file: Path | None = None
    min_interval: float = 300.0  # at most one message per this many seconds (batched)
    blocked_after: float = 24 * 3600.0  # report a group blocked this long (0: never)
    free_space_below: int = 0  # report a pool with less free space (0: never)


@dataclass(frozen=True)
class Config:
    catalog: Path
    pools: tuple[PoolConfig, ...]
    qbittorrent: tuple[QbtConfig, ...]  # every qBittorrent, from `qbittorrent:` and `clients:`
    policy: PolicyConfig = PolicyConfig()
    scan: ScanConfig = ScanConfig()
    server: ServerConfig = ServerConfig()
    notify: NotifyConfig = NotifyConfig()
    sweep: SweepConfig = SweepConfig()
    lock_dir: Path | None = None
    source: Path | None = None
    rtorrent: tuple[RtorrentConfig, ...] = ()  # `clients:` entries of type rtorrent
    # The keys of secrets written into the file itself (``qbittorrent.password``, ...): `config
    # check` names a file holding them that every user may read.
    keys_held_inline: tuple[str, ...] = ()  # not named like a secret: status.secrets_of would blank the key names

    @property
    def clients(self) -> tuple[ClientConfig, ...]:
        """Every torrent client, whatever its type (derived: one place holds each entry)."""
        return (*self.qbittorrent, *self.rtorrent)

    @property
    def primary(self) -> PoolConfig:
        return next(p for p in self.pools if p.role == "primary")

    @property
    def cold(self) -> PoolConfig:
        return next(p for p in self.pools if p.role == "cold")

    def pool(self, name: str) -> PoolConfig:
        for p in self.pools:
            if p.name == name:
                return p
        raise ConfigError(
            "pools", f"no pool named {name!r}", hint=f"known pools: {', '.join(p.name for p in self.pools)}"
        )

    def pool_of(self, path: Path | str) -> PoolConfig | None:
        """The pool whose path contains ``path`` (lexically; callers pass host paths)."""
        pp = PurePosixPath(os.path.normpath(str(path)))
        for p in self.pools:
            if is_within(pp, PurePosixPath(p.path)):
                return p
        return None

    def seeding_root_of(self, path: Path | str) -> PoolConfig | None:
        """The pool one of whose seeding roots contains ``path`` (lexically)."""
        pp = PurePosixPath(os.path.normpath(str(path)))
        for p in self.pools:
            if any(is_within(pp, PurePosixPath(r)) for r in p.seeding_roots):
                return p
        return None

    @property
    def seeding_roots(self) -> tuple[Path, ...]:
        """Every seeding root of every pool (each pool's build root first)."""
        return tuple(r for p in self.pools for r in p.seeding_roots)

    @property
    def anchored_seeding_roots(self) -> tuple[SeedingRoot, ...]:
        """``seeding_roots`` as ``PoolConfig.anchored_seeding_roots``: what fsops acts below."""
        return tuple(r for p in self.pools for r in p.anchored_seeding_roots)


def parse_address(address: str) -> tuple[int, Any]:
    """``/path/rpc.sock``, ``scgi:///path``, ``scgi://host:port`` or ``host:port``.

    Returns ``(socket family, sockaddr)``.
    """
    import socket  # here: ~5 ms of every command's start-up, and only rTorrent clients need it

    addr = address.strip()
    addr = addr.removeprefix("scgi://")
    if addr.startswith("/"):
        return socket.AF_UNIX, addr
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not an SCGI address (unix socket path or host:port): {address!r}")
    if host.startswith("[") and host.endswith("]") and ":" in host:
        # [::1]:5000 is IPv6: connected as AF_INET, "::1" was no host at all.
        return socket.AF_INET6, (host[1:-1], int(port))
    if ":" in host or "[" in host or "]" in host:
        raise ValueError(f"not an SCGI address (an IPv6 address goes in brackets: [::1]:5000): {address!r}")
    return socket.AF_INET, (host, int(port))


# What `qbhook setup rtorrent` writes into an .rtorrent.rc line as it is (the hook script's path,
# the client's name): only characters rTorrent's rc parser takes literally, rather than trusting
# its quoting rules. One home for the adapter (``clients.rtorrent.event_rc_lines``), the command's
# --hook-path and the config's rTorrent names, so what the config accepts the command can wire.
RC_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+-@")


def rc_word_problem(value: str) -> str | None:
    """Why ``value`` cannot stand as it is in an .rtorrent.rc line (None: it can)."""
    if set(value) <= RC_SAFE:
        return None
    return "has characters an .rtorrent.rc line cannot carry safely (only letters, digits and / . _ + - @)"


def rc_hook_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be the hook script an .rtorrent.rc line runs (None: it can)."""
    why = rc_word_problem(path)
    if why is None and not path.startswith("/"):
        why = "is not an absolute path (rTorrent runs it from a folder of its own)"
    return why


# --------------------------------------------------------------------------- loading


def find_config_path(explicit: str | os.PathLike | None) -> Path:
    if explicit is not None:
        # `-c "$CFG"` with CFG unset: falling through to /etc/qbhook/config.yaml would run
        # against a config nobody named.
        if not os.fspath(explicit):
            raise ConfigError(None, "--config names no file (an empty path)")
        return Path(explicit)
    env = os.environ.get("QBHOOK_CONFIG")  # click passes it as ``explicit`` unless empty
    if env is not None:
        # Set but empty (`QBHOOK_CONFIG="$CFG"`, CFG unset): refused as `-c ""` is, not the default.
        if not env:
            raise ConfigError(None, "QBHOOK_CONFIG names no file (an empty path)")
        return Path(env)
    for cand in DEFAULT_CONFIG_PATHS:
        try:
            os.stat(cand)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:  # /etc/qbhook 0700 for another user: Path.exists raised (Python 3.11)
            raise ConfigError(None, f"cannot read {cand}: {e.strerror}") from None
        return Path(cand)
    raise ConfigError(
        None,
        "no configuration file found",
        hint="pass --config PATH, set QBHOOK_CONFIG, or create /etc/qbhook/config.yaml "
        "(start from config.example.yaml)",
    )


def load_config(
    path: str | os.PathLike, env: dict[str, str] | None = None, *, secrets: bool | Literal["notify"] = True
) -> Config:
    """The config file at ``path``; ``secrets=False``: no ``*_env`` variable or ``*_file`` is read,
    every password, token and notify URL from them is None; ``"notify"``: only notify's URLs are
    read (see the module's docstring)."""
    path = Path(path)
    try:
        raw = read_regular_file(path, _MAX_CONFIG_BYTES)
    except Missing:
        raise ConfigError(None, f"file {path} does not exist") from None
    except NotReadable as e:
        raise ConfigError(None, str(e)) from None
    try:
        text = decode_text(raw, path)
    except NotReadable as e:
        raise ConfigError(None, str(e), hint="save the file as UTF-8") from None
    data = parse_yaml(text, str(path))
    cfg = parse_config(data, env=os.environ if env is None else env, base_dir=path.parent, secrets=secrets)
    # Absolute: the source is handed on (`setup qbittorrent --mode direct` writes it into the
    # command qBittorrent runs, from a working folder of its own).
    return replace(cfg, source=Path(os.path.abspath(path)))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping: PyYAML keeps the last silently, so a
    second ``pools.stash`` managed another folder and a second ``policy:`` dropped the first's
    ``auto_apply``."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base`: keys given beside it override the merged ones, as meant
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: construct_mapping below names it
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {_got(key)} is repeated (first on line {first.line + 1}); each key may appear once",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, name: str = "config") -> Any:
    """YAML text to plain data; any parser failure is one ConfigError line with its position.
    A key repeated in one mapping is such a failure (``_UniqueKeyLoader``)."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        what = " ".join(str(e.problem or e.context or "malformed").split())
        raise ConfigError(None, f"{where} is not valid YAML: {what}") from None
    except Exception as e:
        # Not only YAMLError: PyYAML raises ValueError for impossible timestamps
        # (2001-13-45), AttributeError for '!!timestamp x', RecursionError for deep
        # nesting. All of them mean the text is not a document we can read.
        what = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(None, f"{name} is not valid YAML: {what}") from None


# The settings a config file may hold at its top level.
_TOP_KEYS = (
    "catalog",
    "pools",
    "seeding_roots",
    "qbittorrent",
    "clients",
    "policy",
    "scan",
    "server",
    "lock_dir",
    "notify",
    "sweep",
)


def parse_config(
    data: Any,
    *,
    env: dict[str, str] | None = None,
    base_dir: Path | None = None,
    secrets: bool | Literal["notify"] = True,
) -> Config:
    # None below: the secrets are not read (``_secret``); the clients' and the server's only
    # with every secret (``secrets`` True), notify's with "notify" too.
    env = (dict(os.environ) if env is None else env) if secrets else None
    client_env = env if secrets is True else None
    if data is None:  # YAML's reading of an empty file, or of one with only comments (was "got NoneType")
        raise ConfigError(None, "the file holds no settings (it is empty, or only comments)")
    if not isinstance(data, dict):
        raise ConfigError(None, f"the file must contain a mapping of settings (got {type(data).__name__})")
    _no_unknown(data, _TOP_KEYS, "")

    catalog = _abs_path(_required(data, "catalog", ""), "catalog")
    pools = _parse_pools(data)
    qbts = _parse_qbittorrent(data.get("qbittorrent"), client_env, base_dir)
    clients = _parse_clients(data.get("clients"), qbts, client_env, base_dir)
    policy = PolicyConfig(**_parse_fields(_POLICY, data.get("policy"), "policy"))
    _check_categories(policy, clients)
    scan = ScanConfig(**_parse_fields(_SCAN, data.get("scan"), "scan"))
    server = _parse_server(data.get("server"), client_env, base_dir)
    notify = _parse_notify(data.get("notify"), env, base_dir)
    sweep = SweepConfig(**_parse_fields(_SWEEP, data.get("sweep"), "sweep"))
    lock_dir = _abs_path(data["lock_dir"], "lock_dir") if data.get("lock_dir") is not None else None
    for key, own in (("catalog", catalog), ("lock_dir", lock_dir)):
        # Resolved too: a state folder that is a symlink into a seeding root (/var/lib/qbhook ->
        # a dataset folder) put the live catalog where orphans quarantined it, -wal left behind.
        if own is not None and (why := _in_a_pool(own, pools) or _in_a_pool(own, pools, resolve=True)):
            raise ConfigError(key, why, hint=_OUTSIDE_POOLS)
    return Config(
        catalog=catalog,
        pools=pools,
        qbittorrent=tuple(c for c in clients if isinstance(c, QbtConfig)),
        rtorrent=tuple(c for c in clients if isinstance(c, RtorrentConfig)),
        policy=policy,
        scan=scan,
        server=server,
        notify=notify,
        sweep=sweep,
        lock_dir=lock_dir,
        keys_held_inline=_inline_secrets(data),
    )


def _inline_secrets(data: dict) -> tuple[str, ...]:
    """The keys of the secrets ``data`` (a config already parsed) holds as values rather than
    naming a variable or a file: passwords and tokens, notify's URLs, a password in a client URL."""
    raw = data.get("qbittorrent")
    qbts = [(f"qbittorrent[{i}]", s) for i, s in enumerate(raw)] if isinstance(raw, list) else [("qbittorrent", raw)]
    qbts += [(f"clients[{i}]", s) for i, s in enumerate(data.get("clients") or []) if s.get("type") == "qbittorrent"]
    keys = []
    for key, spec in qbts:
        if spec is None:
            continue
        if spec.get("password") is not None:
            keys.append(f"{key}.password")
        if shown_url(str(spec["url"])) != str(spec["url"]):  # http://user:password@host
            keys.append(f"{key}.url")
    keys += [f"server.{k}" for k in ("password", "token") if (data.get("server") or {}).get(k) is not None]
    keys += ["notify.urls"] if (data.get("notify") or {}).get("urls") else []
    return tuple(keys)


def _check_categories(policy: PolicyConfig, clients: Iterable[ClientConfig]) -> None:
    """``policy.demote_categories`` names no category qBittorrent refuses (``names.category_problem``)
    when every client is a qBittorrent: such a name matches no torrent, and nothing demotes, silently.
    With an rTorrent client it may be a ruTorrent label, which has no such rule."""
    if any(isinstance(c, RtorrentConfig) for c in clients):
        return
    for i, name in enumerate(policy.demote_categories):
        if why := category_problem(name):
            raise ConfigError(f"policy.demote_categories[{i}]", f"{why} (got {_got(name)})")


_OUTSIDE_POOLS = "put qbhook's own files outside every pool, e.g. /var/lib/qbhook/catalog.sqlite"


def _in_a_pool(path: Path, pools: Iterable[PoolConfig], resolve: bool = False) -> str | None:
    """Why ``path`` (the catalog, the lock folder) may not be where it is: at or under a pool
    path or a seeding root. There qBittorrent's less-trusted user can write beside it, a scan
    catalogs the catalog, and orphans could quarantine it. ``resolve``: as the path leads now
    (a folder on the way that is a symlink into a pool: config load asks both), else as written."""
    real = os.path.realpath if resolve else os.path.normpath
    # realpath of a path not there yet: its nearest existing folder resolved, the rest as written.
    here = real(path)
    for p in pools:
        for root in (p.path, *p.seeding_roots):
            if is_within(here, real(root)):
                through = f" (through a symlink: it is {here})" if here != os.path.normpath(path) else ""
                return f"{path} is inside pool {p.name} ({root}){through}"
    return None


# --------------------------------------------------------------------------- field kinds
#
# Every setting has one explicit kind, declared in the tables below; nothing is guessed
# from a default's Python type. A reader takes (value, key) and returns the typed value
# or raises ConfigError naming the key, in one line.

Reader = Callable[[Any, str], Any]

_MAX_SECONDS = 10 * 365 * 86400.0  # ten years: longer is a typo, and overflows timers
_MAX_INT = numbers.MAX_INT
_got = numbers.shown  # a value as quoted in a message


def _number(value: Any, key: str, what: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be {what} (got {_got(value)})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number (got {_got(value)})")
    return value


def _bounds(v: float, key: str, lo: float, hi: float, lo_open: bool, unit: str = "") -> None:
    def show(x: float) -> str:
        return (
            f"{x:g}" if isinstance(x, float) else (str(x) if abs(x) < 10**30 else "a number with more than 30 digits")
        )

    if v < lo or (lo_open and v == lo):
        raise ConfigError(
            key, f"must be {'greater than' if lo_open else 'at least'} {show(lo)}{unit} (got {show(v)}{unit})"
        )
    if v > hi:
        raise ConfigError(key, f"must be at most {show(hi)}{unit} (got {show(v)}{unit})")


def duration(*, positive: bool = False) -> Reader:
    """Seconds: a number, or a string with a unit (30s, 5m, 2h, 1d, 1w)."""

    def read(value: Any, key: str) -> float:
        if isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError:
                raise ConfigError(
                    key, f"cannot read {_got(value)} as a duration (examples: 30, 30s, 5m, 2h, 1d)"
                ) from None
        else:
            seconds = _number(value, key, "a duration (seconds, or e.g. 30s, 5m, 2h, 1d)")
            try:
                seconds = float(seconds)
            except OverflowError:
                seconds = math.inf
        _bounds(seconds, key, 0.0, _MAX_SECONDS, positive, "s")
        return seconds

    return read


def size(*, positive: bool = False) -> Reader:
    """Bytes: a whole number, or a string with a unit (500MB = 500*10^6, 10GiB = 10*2^30)."""

    def read(value: Any, key: str) -> int:
        if isinstance(value, str):
            try:
                n = parse_size(value)
            except FractionOfAByte:
                raise ConfigError(key, f"must be a whole number of bytes (got {_got(value)})") from None
            except ValueError:
                raise ConfigError(
                    key, f"cannot read {_got(value)} as a size (examples: 262144, 256KiB, 500MB, 10GiB)"
                ) from None
        else:
            n = _number(value, key, "a size (bytes, or e.g. 256KiB, 500MB, 10GiB)")
            if isinstance(n, float):
                if not n.is_integer():
                    raise ConfigError(key, f"must be a whole number of bytes (got {n!r})")
                n = int(n)
        _bounds(n, key, 0, _MAX_INT, positive, " bytes")
        return n

    return read


_MAX_RESERVE_PERCENT = 50  # more keeps most of a pool empty for good: a typo ("50" for "5")
_BYTES = size()


def reserve(value: Any, key: str) -> Reserve:
    """Free space to keep: a size (bytes, 200GiB, 500GB) or a percent of the filesystem's size (5%)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct, unit = _split_unit(value.strip()[:-1])
        except ValueError:
            pct, unit = math.nan, "?"
        if unit or not math.isfinite(pct):
            raise ConfigError(key, f"cannot read {_got(value)} as a percent (examples: 5%, 0.5%)")
        _bounds(pct, key, 0.0, _MAX_RESERVE_PERCENT, False, "%")
        return Reserve(pct, percent=True)
    if isinstance(value, str):
        try:
            return Reserve(parse_size(value))
        except FractionOfAByte:
            raise ConfigError(key, f"must be a whole number of bytes (got {_got(value)})") from None
        except ValueError:
            raise ConfigError(
                key, f"cannot read {_got(value)} as a size or a percent (examples: 5%, 200GiB, 500GB, 0)"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be a size or a percent, e.g. 5%, 200GiB, 0 (got {_got(value)})")
    return Reserve(_BYTES(value, key))


def count(*, minimum: int = 0, maximum: int = _MAX_INT) -> Reader:
    """A whole number: 2.5 is an error, not 2."""

    def read(value: Any, key: str) -> int:
        try:
            return numbers.whole(value, minimum, maximum)
        except ValueError as e:
            raise ConfigError(key, str(e)) from None

    return read


def fraction(*, zero_ok: bool, one_ok: bool) -> Reader:
    """A share as a number: 0.1 for 10%."""
    interval = f"{'[' if zero_ok else '('}0, 1{']' if one_ok else ')'}"

    def read(value: Any, key: str) -> float:
        n = _number(value, key, f"a fraction in {interval}, e.g. 0.1 for 10%")
        try:
            v = float(n)
        except OverflowError:  # an int past float's range (10**400): out of the interval anyway
            v = math.inf
        if v < 0 or v > 1 or (v == 0 and not zero_ok) or (v == 1 and not one_ok):
            raise ConfigError(key, f"must be a fraction in {interval}, e.g. 0.1 for 10% (got {_got(value)})")
        return v

    return read


def client_groups(value: Any, key: str) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """``policy.client_groups``: a mapping of uids to lists of gids, e.g. ``{1000: [1000, 100]}``."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ConfigError(key, f"must map a uid to its list of gids, e.g. {{1000: [1000, 100]}} (got {_got(value)})")
    out = []
    for uid, gids in value.items():
        at = f"{key}.{uid}"
        if isinstance(uid, bool) or not isinstance(uid, int) or uid < 0:
            raise ConfigError(at, f"each key must be a uid, a whole number (got {_got(uid)})")
        if not isinstance(gids, list) or any(isinstance(g, bool) or not isinstance(g, int) or g < 0 for g in gids):
            raise ConfigError(at, f"must be a list of gids, whole numbers (got {_got(gids)})")
        out.append((uid, tuple(gids)))
    return tuple(out)


def flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false (got {_got(value)})")
    return value


def http_url(value: Any, key: str) -> str:
    """An http(s) URL with a host and, if given, a port in range: "http://", a port of 99999 or a
    space in the host were taken, then retried and reported as "cannot reach qBittorrent"."""
    from urllib.parse import urlsplit  # here: only a client's URL needs it

    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(key, f"must be an http(s) URL (got {_got(value)})")
    url = text(value, key)
    try:
        # urlsplit and .hostname raise ValueError for a bracketed host that is not closed
        # (http://[::1) or not an IPv6 address (http://[zz]:80).
        hostname = urlsplit(url).hostname
    except ValueError:
        hostname = None
    if not hostname or any(c.isspace() or ord(c) < 32 for c in url):
        raise ConfigError(key, f"must be an http(s) URL with a host and no spaces (got {_got(url)})")
    try:
        port = urlsplit(url).port  # raises for a port out of range or not a number
    except ValueError:
        port = 0
    if port == 0:  # None: no port given; 0 is no port anything listens on
        raise ConfigError(key, f"has no valid port: 1 to 65535 (got {_got(url)})")
    return url


def shown_url(url: str) -> str:
    """A client URL as it may be shown (an error line, a retry log, ``config check``): the password
    of ``http://user:password@host`` masked. Kept in the URL itself (requests sends it as HTTP
    Basic auth, for a proxy in front of the Web UI), and printed by every unreachable-client line."""
    from urllib.parse import urlsplit  # here: only a client's URL needs it

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return parts._replace(netloc=f"{userinfo.partition(':')[0]}:********@{host}").geturl()


def text(value: Any, key: str) -> str:
    """A non-empty string (a bare YAML number is taken as its text: tag 2024)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(key, f"must be a string (got {_got(value)})")
    s = str(value)
    if not s:
        raise ConfigError(key, "must not be empty")
    if "\0" in s:
        raise ConfigError(key, "must not contain a NUL character")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(key, f"is not valid text (got {_got(s)})") from None
    return s


def optional_text(value: Any, key: str) -> str | None:
    return None if value is None else text(value, key)


def tag(value: Any, key: str) -> str:
    """A tag name as the clients keep it (``names.tag_problem``): ``relocated_tag: "a,b"`` was
    taken, then every demotion copied its group and failed its Tag step; ``demote_require_tag:
    "no,HL"`` or ``" noHL"`` matched no torrent (their tags are split on ',' and trimmed)."""
    s = text(value, key)
    if why := tag_problem(s):
        raise ConfigError(key, f"{why} (got {_got(s)})")
    return s


def optional_tag(value: Any, key: str) -> str | None:
    return None if value is None else tag(value, key)


def text_list(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(key, f"must be a list of strings (got {_got(value)})")
    return tuple(text(x, f"{key}[{i}]") for i, x in enumerate(items))


def port(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(key, f"must be a TCP port number from 1 to 65535 (got {_got(value)})")
    return value


# One table per section: setting -> reader. Adding a dataclass field without a reader
# fails at import (see _check_tables), so no setting escapes validation.
_POLICY: dict[str, Reader] = {
    "demote_require_tag": optional_tag,
    "demote_categories": text_list,
    "min_seeding_age": duration(),
    "import_grace": duration(),
    "tag_no_external_links": flag,
    "promote_copy_max_bytes": size(),
    "promote_copy_max_ratio": fraction(zero_ok=True, one_ok=False),
    "auto_apply": flag,
    "grace_period": duration(),
    "relocated_tag": tag,
    "max_groups_per_run": count(minimum=1),
    "orphans_max_share": fraction(zero_ok=False, one_ok=True),
    "converge": flag,
    "min_free": reserve,
    "client_groups": client_groups,
}
_SCAN: dict[str, Reader] = {
    "mass_delete_max_share": fraction(zero_ok=False, one_ok=True),
    "mass_delete_min_paths": count(),
    "settle_seconds": duration(),
    "max_age": duration(),
    "hash_budget": size(),
    "ignore_names": text_list,
}
_SERVER: dict[str, Reader] = {
    "listen": text,
    "port": port,
    "username": optional_text,
    "sweep_interval": duration(positive=True),  # 0 would be a sweep loop with no pause
    "max_body": size(positive=True),
    "max_pending": count(minimum=1),
}
_SERVER_SECRETS = ("password", "password_env", "password_file", "token", "token_env", "token_file")
_QBT: dict[str, Reader] = {
    "name": optional_text,
    "username": optional_text,
    "timeout": duration(positive=True),
}
_QBT_OTHER = ("url", "password", "password_env", "password_file", "path_map")
_RT_TIMEOUT = duration(positive=True)
_NOTIFY: dict[str, Reader] = {
    "min_interval": duration(),
    "blocked_after": duration(),  # 0: never
    "free_space_below": size(),  # 0: never
}
_NOTIFY_OTHER = ("urls", "urls_env", "urls_file")
_SWEEP: dict[str, Reader] = {
    "full_every": duration(),  # 0: re-plan everything on every sweep
    "keep_history": duration(),  # 0: keep only what a sweep still needs
}


def _check_tables() -> None:
    for cls, table, extra in (
        (PolicyConfig, _POLICY, ()),
        (ScanConfig, _SCAN, ()),
        (ServerConfig, _SERVER, _SERVER_SECRETS),
        (QbtConfig, _QBT, _QBT_OTHER),
        (RtorrentConfig, {"timeout": _RT_TIMEOUT}, ("name", "scgi", "path_map")),
        (NotifyConfig, _NOTIFY, _NOTIFY_OTHER),
        (SweepConfig, _SWEEP, ()),
    ):
        missing = {f.name for f in fields(cls)} - set(table) - set(extra)
        assert not missing, f"{cls.__name__}: no reader for {sorted(missing)}"


_check_tables()


def _parse_fields(table: dict[str, Reader], raw: Any, key: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read the settings of one section present in ``raw`` (absent ones keep their defaults)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(key, f"must be a mapping (got {type(raw).__name__})")
    _no_unknown(raw, tuple(table) + extra, key)
    return {k: table[k](v, f"{key}.{k}") for k, v in raw.items() if k in table}


# --------------------------------------------------------------------------- sections


def _parse_pools(data: dict) -> tuple[PoolConfig, ...]:
    raw = _required(data, "pools", "")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            "pools", "must map pool names to {path, role}", hint="e.g. stash: {path: /stash, role: primary}"
        )
    roots = _required(data, "seeding_roots", "")
    if not isinstance(roots, dict):
        raise ConfigError("seeding_roots", "must map each pool name to its seeding folder")
    pools = []
    for name, spec in raw.items():
        key = f"pools.{name}"
        if not isinstance(name, str) or not name:
            raise ConfigError(key, f"pool names must be non-empty strings (got {_got(name)})")
        if name == "?":
            # Catalog rows of pool "?" were older versions' files outside every pool; migration 11
            # deletes them, so a pool of that name would lose its rows once.
            raise ConfigError(key, "the pool name '?' is reserved", hint="name the pool after its dataset, e.g. stash")
        if not isinstance(spec, dict):
            raise ConfigError(key, "must be a mapping with 'path' and 'role'")
        _no_unknown(spec, ("path", "role"), key)
        path = _abs_path(_required(spec, "path", key), f"{key}.path")
        _refuse_symlink_in(path, f"{key}.path")
        role = _required(spec, "role", key)
        if not isinstance(role, str) or role not in ROLES:
            raise ConfigError(f"{key}.role", f"must be one of {', '.join(ROLES)} (got {_got(role)})")
        if name not in roots:
            raise ConfigError(
                "seeding_roots",
                f"has no entry for pool {name!r}",
                hint=f"add '{name}: {path}/data/media/torrents/seeding' (inside the pool)",
            )
        seeds = _seeding_roots_of(roots[name], name, path)
        pools.append(
            PoolConfig(name=name, path=path, role=role, seeding_root=seeds[0], more_seeding_roots=tuple(seeds[1:]))
        )
    extra = set(roots) - set(raw)
    if extra:
        raise ConfigError("seeding_roots", f"names unknown pool(s): {', '.join(sorted(map(str, extra)))}")
    for role in ROLES:
        n = sum(p.role == role for p in pools)
        if n != 1:
            raise ConfigError(
                "pools",
                f"needs exactly one pool with role {_got(role)} (found {n})",
                hint="qbhook manages one primary (library) pool and one cold (seed-only) pool",
            )
    for a in pools:
        for b in pools:
            if a is not b and (is_within(PurePosixPath(a.path), PurePosixPath(b.path))):
                raise ConfigError(
                    "pools",
                    f"pool {a.name} ({a.path}) overlaps pool {b.name} ({b.path})",
                    hint="pools must be separate filesystems; neither may contain the other",
                )
    _check_roots_apart(pools)
    return tuple(pools)


def _refuse_symlink_in(path: Path, key: str) -> None:
    """A pool path through a symlink (``/data -> /mnt/data``) is refused at load: ``dirfd.open_root``
    walks to a pool root without following any, so it would refuse every use of it anyway.
    Refused rather than resolved: resolving once would adopt whatever the link points at when
    qbhook starts (a link a non-root user may have made) and pin that for the process's life,
    while torrents' save paths, the clients' path maps and the catalog keep naming the
    configured text; the configured path must be the folder itself. (A path not there yet, an
    unmounted pool, is judged when it is walked.)"""
    found = symlink_on_the_way(path)
    if found is not None:
        link, target = found
        raise ConfigError(
            key,
            f"{link} is a symlink to {target}: configure the real path (qbhook never follows a symlink to a pool)",
            hint=f"e.g. path: {os.path.realpath(path)}",
        )


def _seeding_roots_of(raw: Any, name: str, pool_path: Path) -> list[Path]:
    """``seeding_roots.<pool>``: one path, or a list of paths (the first is where views are built)."""
    key = f"seeding_roots.{name}"
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(key, "must name at least one folder")
        items = [(v, f"{key}[{i}]") for i, v in enumerate(raw)]
    else:
        items = [(raw, key)]
    seeds: list[Path] = []
    for v, k in items:
        seed = _abs_path(v, k)
        if not is_within(PurePosixPath(seed), PurePosixPath(pool_path)) or seed == pool_path:
            raise ConfigError(
                k,
                f"{seed} is not inside pool {name}'s path {pool_path}",
                hint="each seeding root must be a folder inside its own pool (same dataset as the data)",
            )
        seeds.append(seed)
    return seeds


def _check_roots_apart(pools: list[PoolConfig]) -> None:
    """No seeding root inside another (its own pool's or any other's).

    A nested root would make one folder two roots: a path's root, its holding folder and
    its mapping to the other pool would depend on which one is asked first.
    """
    named = [
        (f"seeding_roots.{p.name}" + (f"[{i}]" if p.more_seeding_roots else ""), r)
        for p in pools
        for i, r in enumerate(p.seeding_roots)
    ]
    for i, (ka, a) in enumerate(named):
        for kb, b in named[i + 1 :]:
            if is_within(PurePosixPath(a), PurePosixPath(b)) or is_within(PurePosixPath(b), PurePosixPath(a)):
                what = "is the same folder as" if a == b else "overlaps"
                raise ConfigError(
                    ka, f"{a} {what} {kb} ({b})", hint="seeding roots must be separate folders: none inside another"
                )


def _parse_qbittorrent(raw: Any, env: dict | None, base_dir: Path | None) -> tuple[QbtConfig, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    out = []
    names = set()
    for i, spec in enumerate(items):
        key = f"qbittorrent[{i}]" if isinstance(raw, list) else "qbittorrent"
        if not isinstance(spec, dict):
            raise ConfigError(key, "must be a mapping with url, username, password_env ...")
        kw = _parse_fields(_QBT, spec, key, _QBT_OTHER)
        name = kw.pop("name", None) or ("default" if i == 0 else f"qbt{i}")
        if name in names:
            raise ConfigError(f"{key}.name", f"duplicate instance name {name!r}")
        names.add(name)
        url = http_url(_required(spec, "url", key), f"{key}.url")
        password, pw_env, pw_file = _secret(spec, "password", env, base_dir, key)
        out.append(
            QbtConfig(
                name=name,
                url=url.rstrip("/"),
                username=kw.pop("username", None) or "admin",
                password=password,
                password_env=pw_env,
                password_file=pw_file,
                path_map=_parse_path_map(spec.get("path_map"), f"{key}.path_map"),
                **kw,
            )
        )
    return tuple(out)


def _parse_path_map(raw: Any, key: str) -> tuple[tuple[str, str], ...]:
    """The one validation of a path_map: shape here, prefixes and ambiguity by PathMap's rules.

    Config load builds the same PathMap the qBittorrent adapter uses, so a map the adapter
    would refuse later (a prefix mapped twice) fails ``config check`` now, with exit 78.
    """
    from qbhook.pathmap import MAX_ENTRIES, PathMap

    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(key, "must be a list of {client: PATH, host: PATH}")
    if len(raw) > MAX_ENTRIES:
        # Counted as written: YAML aliases repeat one entry for a few bytes each.
        raise ConfigError(key, f"has {len(raw)} entries, more than the {MAX_ENTRIES} a path_map may have")
    pairs = []
    for j, m in enumerate(raw):
        mk = f"{key}[{j}]"
        if not isinstance(m, dict):
            raise ConfigError(mk, "must be a mapping {client: PATH, host: PATH}")
        _no_unknown(m, ("client", "host"), mk)
        pairs.append(
            (
                str(_abs_path(_required(m, "client", mk), f"{mk}.client")),
                str(_abs_path(_required(m, "host", mk), f"{mk}.host")),
            )
        )
    try:
        pm = PathMap(pairs)
    except PathMapError as e:
        raise ConfigError(key, e.message.removeprefix("path_map: "), hint=e.hint) from None
    for problem in pm.nested_disagreements():
        raise ConfigError(
            key, problem, hint="drop one of the two entries, or make the nested one agree with the outer one"
        )
    return pm.pairs


_RT_KEYS = ("type", "name", "scgi", "path_map", "timeout")


def _parse_clients(
    raw: Any, qbts: tuple[QbtConfig, ...], env: dict | None, base_dir: Path | None
) -> tuple[ClientConfig, ...]:
    """``clients:``, a list of ``{type: qbittorrent | rtorrent, name, ...}``, after ``qbittorrent:``'s entries.

    A qBittorrent entry takes the keys of a ``qbittorrent:`` entry (and is read by the
    same parser); an rTorrent entry takes ``scgi`` (its XML-RPC socket: a unix socket
    path or ``host:port``), ``path_map`` and ``timeout``. Names are unique across both
    keys and required here: they are what plans, the journal and events call a client.
    """
    if raw is None:
        return tuple(qbts)
    if not isinstance(raw, list):
        raise ConfigError("clients", "must be a list of {type: qbittorrent | rtorrent, name: ..., ...}")
    out: list[ClientConfig] = list(qbts)
    names = {q.name: "qbittorrent" for q in qbts}
    for i, spec in enumerate(raw):
        key = f"clients[{i}]"
        if not isinstance(spec, dict):
            raise ConfigError(key, "must be a mapping with type, name and the client's address")
        kind = spec.get("type")
        if kind not in CLIENT_TYPES:
            raise ConfigError(f"{key}.type", f"must be one of {', '.join(CLIENT_TYPES)} (got {kind!r})")
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{key}.name", f"is required: a short name for this {kind} (got {name!r})")
        if name in names:
            raise ConfigError(
                f"{key}.name",
                f"duplicate client name {name!r}",
                hint=f"{name!r} already names a {names[name]}; every client needs its own name",
            )
        names[name] = kind
        if kind == "qbittorrent":
            try:
                (q,) = _parse_qbittorrent([{k: v for k, v in spec.items() if k != "type"}], env, base_dir)
            except ConfigError as e:  # same parser as `qbittorrent:`, but the key named is ours
                sub = (e.key or "").removeprefix("qbittorrent[0]")
                raise ConfigError(key + sub, e.message.removeprefix(f"config: {e.key}: "), hint=e.hint) from None
            out.append(q)
            continue
        _no_unknown(spec, _RT_KEYS, key)
        if why := rc_word_problem(name):
            # `setup rtorrent` writes the name into the rc lines (QBHOOK_INSTANCE=...): a name it
            # cannot carry would pass `config check` and be refused only there.
            raise ConfigError(f"{key}.name", f"{_got(name)} {why}: `qbhook setup rtorrent` writes it into one")
        out.append(
            RtorrentConfig(
                name=name,
                scgi=_scgi_address(_required(spec, "scgi", key), f"{key}.scgi"),
                path_map=_parse_path_map(spec.get("path_map"), f"{key}.path_map"),
                timeout=_RT_TIMEOUT(spec.get("timeout", 30.0), f"{key}.timeout"),
            )
        )
    return tuple(out)


def _scgi_address(v: Any, key: str) -> str:
    """rTorrent's SCGI socket: an absolute unix socket path, or host:port (scgi:// optional)."""

    if not isinstance(v, str) or not v.strip():
        raise ConfigError(key, f"must be a unix socket path or host:port (got {v!r})")
    if any(not c.isprintable() for c in v):
        # a NUL is refused by connect(2) at every call; a newline is no socket anyone made
        raise ConfigError(key, f"must not contain a control character (got {_got(v)})")
    try:
        _family, where = parse_address(v)
        if isinstance(where, tuple) and not 0 < where[1] < 65536:
            raise ValueError(f"port {where[1]} is not a TCP port (1-65535)")
    except ValueError as e:
        raise ConfigError(
            key, f"{e}", hint="e.g. /run/rtorrent/rpc.sock (network.scgi.open_local) or 127.0.0.1:5000"
        ) from None
    return v.strip()


def _parse_server(raw: Any, env: dict | None, base_dir: Path | None) -> ServerConfig:
    kw = _parse_fields(_SERVER, raw, "server", _SERVER_SECRETS)
    raw = raw or {}
    password, pw_env, pw_file = _secret(raw, "password", env, base_dir, "server")
    token, tok_env, tok_file = _secret(raw, "token", env, base_dir, "server")
    if token is not None and (why := _token_problem(token)):
        # Refused here rather than fixed up: a secret is used as given or not at all. Never shown.
        # Named as _secret chose it: the variable if set, else the file, else the inline value.
        if tok_env and env and env.get(tok_env) is not None:
            where = "server.token_env"
        else:
            where = "server.token_file" if tok_file is not None else "server.token"
        raise ConfigError(where, why)
    if (password or pw_env or pw_file) and not kw.get("username"):
        # HTTP Basic checks both: without a username the password accepts nothing, and every
        # event endpoint would answer 503 "no credentials configured" (qbhook.events.auth).
        raise ConfigError("server.password", "a password needs server.username too (or use token_env)")
    return ServerConfig(
        password=password,
        password_env=pw_env,
        password_file=pw_file,
        token=token,
        token_env=tok_env,
        token_file=tok_file,
        **kw,
    )


def _token_problem(token: str) -> str | None:
    """Why ``token`` can never be offered in every form ``qbhook.events.auth`` takes, or None."""
    if token != token.strip():
        # A token file is stripped when read (an editor's last newline); an inline or variable
        # token is taken as written, and one with spaces around it refused every request (401).
        return "the token starts or ends with spaces; every request would be refused (401)"
    if not all(" " <= c <= "~" for c in token):
        # waitress hands header values decoded as latin-1 and auth compares UTF-8 bytes, so a
        # non-ASCII token never matches in X-Qbhook-Token, X-Api-Key or Bearer (only ?apikey=
        # did); a control character cannot be sent in a header at all. Inner spaces are fine:
        # every header form and ?apikey= carry them (R60).
        return (
            "the token has a non-ASCII or control character; only printable ASCII can be sent"
            " in a header, every header-borne token would be refused (401)"
        )
    return None


def _parse_notify(raw: Any, env: dict | None, base_dir: Path | None) -> NotifyConfig:
    if raw is None:
        return NotifyConfig()
    if not isinstance(raw, dict):
        raise ConfigError("notify", "must be a mapping")
    raw = dict(raw)
    inline = raw.pop("urls", None)
    if inline is not None and not (isinstance(inline, list) and all(isinstance(u, str) for u in inline)):
        raise ConfigError("notify.urls", "must be a list of apprise URLs (better: urls_env or urls_file)")
    # From a variable or a file: one URL per line or separated by spaces/commas, as apprise reads them.
    listed, u_env, u_file = _secret(
        {"urls": None, "urls_env": raw.pop("urls_env", None), "urls_file": raw.pop("urls_file", None)},
        "urls",
        env,
        base_dir,
        "notify",
        empty_ok=True,
    )
    urls = tuple(inline or ()) + tuple(u for u in (listed or "").replace(",", " ").split() if u)
    return NotifyConfig(urls=urls, urls_env=u_env, urls_file=u_file, **_parse_fields(_NOTIFY, raw, "notify"))


def _secret(
    spec: dict,
    name: str,
    env: dict | None,
    base_dir: Path | None,
    key: str,
    empty_ok: bool = False,
):
    """(value, variable name, file path) of secret ``name``. ``env`` None: its names are checked,
    neither the variable nor the file is read (the value is None unless written inline).

    An empty variable or file is an error naming it, as an empty inline value is (``text``): taken,
    an empty password or token failed every request later as a refused login (R61). ``empty_ok``:
    notify's URLs, where none is a plain "no notifications" (as ``urls: []`` is)."""
    inline = spec.get(name)
    env_name = optional_text(spec.get(f"{name}_env"), f"{key}.{name}_env")
    file_name = optional_text(spec.get(f"{name}_file"), f"{key}.{name}_file")
    if inline is not None:
        inline = text(inline, f"{key}.{name}")
    path = Path(file_name) if file_name else None
    if path is not None and not path.is_absolute() and base_dir:
        path = base_dir / path
    if env is None:
        return inline, env_name, path
    value = None
    if env_name:
        value = env.get(env_name)
        if value is not None and ("\0" in value or not _encodes(value)):
            # Never shown: it is a secret. Taken, it failed every request as "cannot reach".
            raise ConfigError(f"{key}.{name}_env", f"environment variable {env_name} is not valid UTF-8 text")
        if value == "" and not empty_ok:
            raise ConfigError(f"{key}.{name}_env", f"environment variable {env_name} is set but empty")
        if value is None and not file_name and inline is None:
            raise ConfigError(
                f"{key}.{name}_env",
                f"environment variable {env_name} is not set",
                hint=f"export {env_name}=... before running qbhook",
            )
    if value is None and path is not None:
        value = _read_secret_file(path, f"{key}.{name}_file")
        if value == "" and not empty_ok:
            raise ConfigError(f"{key}.{name}_file", f"{path} is empty (or only spaces)")
    if value is None and inline is not None:
        value = inline
    return value, env_name, path


def _encodes(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # os.environ's surrogate escapes of non-UTF-8 bytes
        return False
    return True


_MAX_CONFIG_BYTES = 1024 * 1024  # a commented config is a few KiB; more is not one
_MAX_SECRET_BYTES = 64 * 1024


def _read_secret_file(p: Path, key: str) -> str:
    """A secret file's text (qbhook.files: regular files only, bounded), as the config is read."""
    try:
        data = read_regular_file(p, _MAX_SECRET_BYTES)
    except NotReadable as e:
        raise ConfigError(key, str(e)) from None
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        # Not files.decode_text: its message names the offending byte, and this file is a secret.
        raise ConfigError(key, f"{p} is not UTF-8 text") from None


# --------------------------------------------------------------------------- units

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
# ASCII: ``\d`` alone matches every script's digits, and float() reads them ("٣" was 3).
_NUMBER_UNIT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE | re.ASCII)
_WHOLE = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)


def _split_unit(text: str) -> tuple[float, str]:
    """'1.5 GiB' -> (1.5, 'gib'). Plain decimal digits only: no sign, exponent, nan or inf."""
    m = _NUMBER_UNIT.fullmatch(text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)), m.group(2).lower()


def parse_whole(text: str) -> int:
    """A whole number written as one, in ASCII digits (a sign allowed: the reader's bounds say
    why -1 is refused); else ValueError. int() also reads "1_0" and other scripts' digits ("٣"),
    which no duration or size (``_split_unit``) takes: a command line took one and not the other."""
    if not _WHOLE.fullmatch(text):
        raise ValueError(text)
    return int(text)


class FractionOfAByte(ValueError):
    """A size in bytes written with a fraction ("5.5", "0.9B"): int() truncated it, and
    policy.min_free "0.9" read as no reserve at all (R21), `--min-size 1.5` as 1 (R80)."""


def parse_size(text: str) -> int:
    """Bytes from '262144', '256KiB', '500MB' (10^6), '10GiB' (2^30); K/M/G/T alone are binary.
    A fraction of a byte is ``FractionOfAByte``; with a larger unit (1.5GiB) it is cut to bytes."""
    m = _NUMBER_UNIT.fullmatch(text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(text)
    # Exact: through a float, '1.001MB' was 1,000,999 bytes and an 18-digit count lost its last
    # digits (R87); the digits are a decimal fraction, read as one.
    n = Fraction(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if (_SIZE_UNITS[m.group(2).lower()] == 1 and n.denominator != 1) or 0 < n < 1:
        raise FractionOfAByte(text)  # '0.0009KB' read as 0: no reserve at all, as R21's "0.9" (R95)
    if n > _MAX_INT:
        raise ValueError(text)
    return int(n)


def parse_duration(text: str) -> float:
    """Seconds from '90', '30s', '5m', '2h', '1d', '1w'."""
    num, unit = _split_unit(text)
    if unit not in _DURATION_UNITS:
        raise ValueError(text)
    seconds = num * _DURATION_UNITS[unit]
    if not math.isfinite(seconds):
        raise ValueError(text)
    return seconds


def _required(d: dict, k: str, where: str):
    if k not in d or d[k] is None:
        raise ConfigError(f"{where}.{k}" if where else k, "is required")
    return d[k]


def _no_unknown(d: dict, known: tuple[str, ...], where: str) -> None:
    for k in d:
        if k not in known:
            raise ConfigError(
                f"{where}.{k}" if where else str(k), "is not a known setting", hint=f"known here: {', '.join(known)}"
            )


def _abs_path(v: Any, key: str) -> Path:
    if not isinstance(v, str) or not v:
        raise ConfigError(key, f"must be a path (got {_got(v)})")
    if "\0" in v:
        raise ConfigError(key, "must not contain a NUL character")
    try:
        os.fsencode(v)
    except UnicodeEncodeError:
        raise ConfigError(key, f"is not a valid path (got {_got(v)})") from None
    p = PurePosixPath(v)
    if not p.is_absolute():
        raise ConfigError(key, f"must be an absolute path (got {_got(v)})")
    if ".." in p.parts:
        raise ConfigError(key, f"must not contain '..' (got {_got(v)})")
    # normpath keeps a leading "//" (POSIX leaves its meaning to the system; Linux reads it as
    # "/"), and every path qbhook compares with it (paths.normalize: torrents' paths) starts with
    # one "/": a pool written "//stash" had every torrent outside it, silently.
    return Path("/" + os.path.normpath(v).lstrip("/"))


# --------------------------------------------------------------------------- checks


def path_warnings(cfg: Config) -> list[str]:
    """Folders above a pool root that a non-root user could rename an entry in, one line each
    (``dirfd.loose_folders_above``). A warning, not a refusal: NAS layouts vary (a pool inside a
    dataset whose root an apps user owns is common) and while qbhook runs the walk from ``/`` and
    the pin of each pool root still refuse a swap; only a swap made before qbhook started would
    go unseen, and this names where one could be made."""
    return [
        f"pools.{p.name}.path: {folder} is above {p.path}: a pool root swapped there before qbhook "
        "starts would go unnoticed (make that folder root's and not writable by others)"
        for p in cfg.pools
        for folder in loose_folders_above(p.path)
    ]


def seeding_root_warnings(cfg: Config) -> list[str]:
    """Seeding roots that root owns and nobody else may write, one line each, while a torrent
    client is configured (an admin's ``mkdir -p`` as root makes them so). A warning, not a
    refusal: qbhook itself writes there as root, and the folders it makes for a view are owned
    like the torrent's own folders at the source (``fsops.Like``); but the client (not root) cannot
    create a folder there, nor delete, rename or download a file kept directly in the root. A
    root missing or not a folder is ``check_paths``'s to name."""
    if not cfg.clients:
        return []
    out = []
    for p in cfg.pools:
        for r in p.seeding_roots:
            try:
                st = os.stat(r, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                out.append(
                    f"seeding_roots.{p.name}: {r} is root's and only root may write in it: your torrent client "
                    "cannot make folders or change files directly in it (chown it to the client's user, or make "
                    "it writable by the client's group)"
                )
    return out


def check_paths(cfg: Config) -> list[str]:
    """Problems with the pools on this machine (empty list: all good)."""
    problems = []
    for p in cfg.pools:
        # A pool path through a symlink never gets here: loading the config refuses it.
        if why := not_a_folder(p.path):
            problems.append(f"pools.{p.name}.path: {why}")
        else:
            for r in p.seeding_roots:
                why = _seeding_root_problem(p, r)
                if why:
                    problems.append(f"seeding_roots.{p.name}: {why}")
    if not any(not_a_folder(p.path) for p in cfg.pools):
        devs = {}
        for p in cfg.pools:
            devs.setdefault(os.stat(p.path).st_dev, []).append(p.name)
        for names in devs.values():
            if len(names) > 1:
                problems.append(f"pools {', '.join(names)} are on the same filesystem; qbhook needs two separate pools")
    for q in cfg.qbittorrent:
        if q.password is None:
            problems.append(f"qbittorrent {q.name}: no password (set password_env or password_file)")
    for c in cfg.clients:
        if isinstance(c, RtorrentConfig) and c.scgi.removeprefix("scgi://").startswith("/"):
            sock = Path(c.scgi.removeprefix("scgi://"))
            try:
                os.stat(sock)
            except (FileNotFoundError, NotADirectoryError):
                problems.append(
                    f"rtorrent {c.name}: SCGI socket {sock} does not exist "
                    "(is rtorrent running with network.scgi.open_local at this path?)"
                )
            except OSError as e:
                problems.append(f"rtorrent {c.name}: cannot look at SCGI socket {sock}: {e.strerror}")
    parent = cfg.catalog.parent
    problems.extend(_catalog_problems(cfg.catalog))
    for key, own in (("catalog", cfg.catalog), ("lock_dir", cfg.lock_dir)):
        if own is not None and (why := _in_a_pool(own, cfg.pools, resolve=True)):
            problems.append(f"{key}: {why}; {_OUTSIDE_POOLS}")
    if cfg.lock_dir is not None:
        problems.extend(_lock_dir_problems(cfg.lock_dir))
    else:
        problems.extend(_catalog_folder_problems(parent))
    problems.extend(_secret_problems(cfg))
    return problems


def not_a_folder(path: Path, missing: str = "(is the pool mounted?)") -> str | None:
    """Why ``path`` is no folder to use, or None: missing (``missing``, with ``{}`` for the path,
    says what to do), not a folder, below a file (``in_the_way``: no `mkdir -p` makes it, so the
    advice to make it is not given), or not to be looked at (a folder above this user may not
    enter, a name too long: Python 3.11's ``Path.is_dir`` raised for those). The words of
    `config check` and of the catalog's opening (``catalog.db``) alike."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if (blocker := in_the_way(path)) is not None:
            return f"{path} cannot be a folder: {blocker} is {_file_kind(blocker)}, not a folder"
        return f"{path} does not exist {missing.format(path)}"
    except OSError as e:
        return f"cannot look at {path}: {e.strerror}"
    return None if stat.S_ISDIR(st.st_mode) else f"{path} is {_file_kind(path)}, not a folder"


def _catalog_problems(catalog: Path) -> list[str]:
    """``check_paths``' lines for ``catalog:`` itself and its folder, each the line a command that
    opens it says (``catalog.db``)."""
    problems: list[str] = []
    parent = catalog.parent
    if why := not_a_folder(parent, CatalogFolderMissing.FIX):  # the line a command that opens it says
        problems.append(f"catalog: folder {why}" if why.startswith(str(parent)) else f"catalog: {why}")
    else:
        try:
            mode = os.stat(catalog).st_mode  # followed, as catalog.db opens it
        except FileNotFoundError:
            mode = None  # a new catalog: the first command creates it, unless a link to nothing
            if os.path.islink(catalog):
                problems.append(CatalogLinkDangling(catalog, link_target(catalog)).message)
        except OSError as e:
            # The line a command that opens it says: the links' own loop, not a folder's on the way.
            loop = e.errno == errno.ELOOP and os.path.isdir(parent)
            problems.append(
                CatalogLinkLoop(catalog).message if loop else f"catalog: cannot look at {catalog}: {e.strerror}"
            )
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            problems.append(f"catalog: {catalog} is not a regular file (name a file; qbhook creates it)")
    return problems


def link_target(path: Path) -> str:
    """What the symbolic link ``path`` names, for a message; never raises."""
    try:
        return os.readlink(path)
    except OSError:  # replaced since the look: it was a link to nothing all the same
        return "nothing"


def in_the_way(path: Path) -> Path | None:
    """The nearest of ``path`` and the folders above it that exists and is not a folder (a file
    where a folder was meant), or None: what makes a missing folder one no `mkdir -p` can make."""
    for p in (path, *path.parents):
        try:
            st = os.stat(p)
        except OSError:
            continue
        return None if stat.S_ISDIR(st.st_mode) else p
    return None


def _file_kind(path: Path) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "not a folder"
    return "a file" if stat.S_ISREG(mode) else mode_kind(mode)


def _seeding_root_problem(pool: PoolConfig, root: Path) -> str | None:
    """Why ``root`` cannot be read or moved in, asked the way every reader and mover opens it
    (``dirfd.open_root`` from the pool root down): a symlink on the way, even one into the
    other pool, is refused there, and `config check` (which asked ``is_dir``, following it)
    said nothing while a scan of it saw 0 files."""
    if root == pool.path:
        return None  # the pool root itself: checked above
    try:
        os.close(open_root(root, pool.path))
    except FolderRefused as e:
        return f"{e}: qbhook reads and moves nothing through it (a scan sees 0 files); name the real folder"
    except (FileNotFoundError, NotADirectoryError):
        return f"{root} does not exist (create it, or fix the path)"
    except OSError as e:
        return f"cannot open {root}: {e.strerror}"
    return None


def _lock_dir_problems(path: Path) -> list[str]:
    """A lock folder another user can write, or owns (and so can chmod), is named here and not
    refused at load (a command that takes no lock still runs): ``move.locks`` refuses it when a
    lock is taken (LockFolderUnsafe), since such a user could swap a lock file for their own
    and let two executors run at once, or hold the locks and stop every qbhook. A symlink at its
    own name is named too (lstat, not followed): ``move.locks`` opens it ``O_NOFOLLOW`` and refuses
    it the same way. Missing: qbhook creates it (0700), nothing to say yet."""
    try:
        st = os.lstat(path)  # its own name not followed (move.locks); the folders above it are followed
    except FileNotFoundError:
        return []
    except OSError as e:
        return [f"lock_dir: cannot look at {path}: {e.strerror}"]
    if stat.S_ISLNK(st.st_mode):
        return [f"lock_dir: {path} is a symbolic link: qbhook refuses it when it takes a lock; name the real folder"]
    if not stat.S_ISDIR(st.st_mode):
        return [f"lock_dir: {path} is not a folder"]
    why = loose_folder(st)  # the rule move.locks refuses it by
    if not why:
        return []
    return [
        f"lock_dir: {path}: {' and '.join(why)}; it must be a folder other users cannot write "
        "(not /run/lock or /tmp): another user could hold qbhook's locks and stop it"
    ]


def _catalog_folder_problems(folder: Path) -> list[str]:
    """The catalog's folder when it holds qbhook's own lock folder (no ``lock_dir``), by the lock
    folder's rule: ``move.locks`` refuses it when a lock is taken (CatalogFolderUnsafe), since
    another user who can write it could rename ``<catalog>.locks`` away under a running executor.
    Named here, not refused at load, as ``lock_dir`` is. Missing: said above."""
    try:
        st = os.stat(folder)  # followed, as the catalog path is opened
    except OSError:
        return []
    why = loose_folder(st) if stat.S_ISDIR(st.st_mode) else []
    if not why:
        return []
    return [
        f"catalog: folder {folder}: {' and '.join(why)}; it holds qbhook's lock folder, which another user "
        "could rename away and let two executors run at once (chmod go-w it, or set lock_dir)"
    ]


def _secret_problems(cfg: Config) -> list[str]:
    """Secret files another user may read or write, or owns (and so may chmod), and a config file
    every user may read while it holds secrets itself; problems, as ``_lock_dir_problems``: a
    password another user reads is that user's to use (the client's Web UI, the event endpoint)."""
    files = [(f"qbittorrent {q.name}: password_file", q.password_file) for q in cfg.qbittorrent]
    files += [("server.password_file", cfg.server.password_file), ("server.token_file", cfg.server.token_file)]
    files += [("notify.urls_file", cfg.notify.urls_file)]
    out = [f"{key}: {path}: {why}" for key, path in files if path is not None and (why := _loose_secret(path))]
    if cfg.keys_held_inline and cfg.source is not None:
        try:
            mode = os.stat(cfg.source).st_mode  # followed, as the config is read
        except OSError:
            mode = 0  # read a moment ago; gone or hidden now, nothing to say about its mode
        if mode & stat.S_IROTH:
            out.append(
                f"config: {cfg.source} holds secrets ({', '.join(cfg.keys_held_inline)}) and mode "
                f"{stat.S_IMODE(mode):04o} lets every user read them; name them by *_env or *_file "
                "settings instead, or chmod o-r the file"
            )
    return out


def _loose_secret(path: Path) -> str | None:
    """Why another user can read, change or chmod the secret file ``path``, or None. Missing or
    unreadable: reading it (the config's load) says so, as one of `config check`'s problems."""
    try:
        st = os.stat(path)  # followed, as the secret is read
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    why = []
    may = [
        w
        # Group read is allowed: root:qbhook 0640 is how a service's group is given a secret.
        for w, bits in (("read", stat.S_IROTH), ("write", stat.S_IWGRP | stat.S_IWOTH))
        if st.st_mode & bits
    ]
    if may:
        why.append(f"mode {stat.S_IMODE(st.st_mode):04o} lets other users {' and '.join(may)} it")
    if st.st_uid not in (0, os.geteuid()):
        why.append(f"it is owned by uid {st.st_uid}")
    if not why:
        return None
    return (
        f"{' and '.join(why)}; a secret file must be its owner's alone "
        "(chmod 600, or 640 for a group of its own; owned by root or qbhook's user)"
    )


def describe(cfg: Config) -> dict:
    """The resolved configuration as plain data, secrets masked."""
    # Long on purpose: one literal in the shape of the config file, a line per setting.

    def mask(v):
        return None if v is None else "********"

    return {
        "source": str(cfg.source) if cfg.source else None,
        "catalog": str(cfg.catalog),
        "pools": {
            p.name: {
                "path": str(p.path),
                "role": p.role,
                "seeding_root": str(p.seeding_root),
                "seeding_roots": [str(r) for r in p.seeding_roots],
            }
            for p in cfg.pools
        },
        "qbittorrent": [
            {
                "name": q.name,
                "url": shown_url(q.url),
                "username": q.username,
                "password": mask(q.password),
                "password_env": q.password_env,
                "password_file": str(q.password_file) if q.password_file else None,
                "path_map": [{"client": c, "host": h} for c, h in q.path_map],
                "timeout": q.timeout,
            }
            for q in cfg.qbittorrent
        ],
        "clients": [
            {
                "type": c.type,
                "name": c.name,
                "scgi": c.scgi,
                "timeout": c.timeout,
                "path_map": [{"client": a, "host": b} for a, b in c.path_map],
            }
            if isinstance(c, RtorrentConfig)
            else {"type": c.type, "name": c.name, "url": shown_url(c.url)}
            for c in cfg.clients
        ],
        "policy": {
            f.name: str(v) if isinstance(v := getattr(cfg.policy, f.name), Reserve) else v for f in fields(cfg.policy)
        },
        "scan": {f.name: getattr(cfg.scan, f.name) for f in fields(cfg.scan)},
        "server": {
            f.name: (
                mask(getattr(cfg.server, f.name))
                if f.name in ("password", "token")
                else (
                    str(getattr(cfg.server, f.name))
                    if isinstance(getattr(cfg.server, f.name), Path)
                    else getattr(cfg.server, f.name)
                )
            )
            for f in fields(cfg.server)
        },
        "notify": {
            "urls": [mask(u) for u in cfg.notify.urls],
            "urls_env": cfg.notify.urls_env,
            "urls_file": str(cfg.notify.urls_file) if cfg.notify.urls_file else None,
            "min_interval": cfg.notify.min_interval,
            "blocked_after": cfg.notify.blocked_after,
            "free_space_below": cfg.notify.free_space_below,
        },
        "sweep": {f.name: getattr(cfg.sweep, f.name) for f in fields(cfg.sweep)},
        "lock_dir": str(cfg.lock_dir) if cfg.lock_dir else None,
    }
