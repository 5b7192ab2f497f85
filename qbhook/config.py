"""Configuration: YAML in, validated frozen dataclasses out.

Validation happens at load and names the offending key, so a typo fails loudly
instead of silently falling back to a default that moves data somewhere odd.
Secrets are never required inline: passwords come from an environment variable
or a file, and ``describe()`` masks them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from qbhook.errors import ConfigError

DEFAULT_CONFIG_PATHS = ("/etc/qbhook/config.yaml",)
ROLES = ("primary", "cold")


@dataclass(frozen=True)
class PoolConfig:
    name: str
    path: Path
    role: str  # "primary" (libraries live here) or "cold" (seed-only)
    seeding_root: Path


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


@dataclass(frozen=True)
class PolicyConfig:
    # Demotion needs this tag on every torrent of the group (None: no tag needed).
    demote_require_tag: str | None = "~noHL"
    # Only these categories may demote (empty: any).
    demote_categories: tuple[str, ...] = ()
    # Seconds since completion before a torrent may demote.
    min_seeding_age: float = 0.0
    # Maintain demote_require_tag ourselves from the link facts.
    tag_no_external_links: bool = False
    # Promotion may copy at most this much content that is not yet on the primary pool.
    promote_copy_max_bytes: int = 64 * 1024 * 1024
    promote_copy_max_ratio: float = 0.01
    auto_apply: bool = False
    grace_period: float = 0.0  # seconds to keep deleted links in a holding folder
    relocated_tag: str = "qbhook-relocated"
    max_groups_per_run: int = 50  # batch cap: a plan never touches more at once


@dataclass(frozen=True)
class ScanConfig:
    # Refuse to drop more than this share of a root's known paths in one scan.
    mass_delete_max_share: float = 0.10
    # ...unless fewer than this many paths would go (small roots churn legitimately).
    mass_delete_min_paths: int = 100
    # A hash is cached only when the file's mtime is at least this old.
    settle_seconds: float = 60.0
    ignore_names: tuple[str, ...] = (".zfs", ".qbhook-holding", ".qbhook-staging")


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1"
    port: int = 8686
    username: str | None = None
    password: str | None = field(repr=False, default=None)
    password_env: str | None = None
    token: str | None = field(repr=False, default=None)
    token_env: str | None = None
    token_file: Path | None = None
    sweep_interval: float = 6 * 3600.0
    max_body: int = 256 * 1024


@dataclass(frozen=True)
class NotifyConfig:
    urls: tuple[str, ...] = field(repr=False, default=())   # apprise URLs (they carry tokens)
    urls_env: str | None = None
    urls_file: Path | None = None
    min_interval: float = 300.0          # at most one message per this many seconds (batched)
    blocked_after: float = 24 * 3600.0   # report a group blocked this long (0: never)
    free_space_below: int = 0            # report a pool with less free space (0: never)


@dataclass(frozen=True)
class Config:
    catalog: Path
    pools: tuple[PoolConfig, ...]
    qbittorrent: tuple[QbtConfig, ...]    # every qBittorrent, from `qbittorrent:` and `clients:`
    policy: PolicyConfig = PolicyConfig()
    scan: ScanConfig = ScanConfig()
    server: ServerConfig = ServerConfig()
    notify: NotifyConfig = NotifyConfig()
    lock_dir: Path | None = None
    source: Path | None = None
    rtorrent: tuple[RtorrentConfig, ...] = ()    # `clients:` entries of type rtorrent

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
        raise ConfigError("pools", f"no pool named {name!r}", hint=f"known pools: {', '.join(p.name for p in self.pools)}")

    def pool_of(self, path: Path | str) -> PoolConfig | None:
        """The pool whose path contains ``path`` (lexically; callers pass host paths)."""
        pp = PurePosixPath(os.path.normpath(str(path)))
        for p in self.pools:
            if _is_within(pp, PurePosixPath(p.path)):
                return p
        return None

    def seeding_root_of(self, path: Path | str) -> PoolConfig | None:
        pp = PurePosixPath(os.path.normpath(str(path)))
        for p in self.pools:
            if _is_within(pp, PurePosixPath(p.seeding_root)):
                return p
        return None

    @property
    def seeding_roots(self) -> tuple[Path, ...]:
        return tuple(p.seeding_root for p in self.pools)


def _is_within(child: PurePosixPath, parent: PurePosixPath) -> bool:
    return child == parent or parent in child.parents


# --------------------------------------------------------------------------- loading


def find_config_path(explicit: str | os.PathLike | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("QBHOOK_CONFIG")
    if env:
        return Path(env)
    for cand in DEFAULT_CONFIG_PATHS:
        if Path(cand).exists():
            return Path(cand)
    raise ConfigError(None, "no configuration file found",
                      hint="pass --config PATH, set QBHOOK_CONFIG, or create /etc/qbhook/config.yaml "
                           "(start from config.example.yaml)")


def load_config(path: str | os.PathLike, env: dict[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(None, f"file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(None, f"cannot read {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(None, f"{path} is not valid YAML: {e}") from None
    cfg = parse_config(data, env=os.environ if env is None else env, base_dir=path.parent)
    return replace(cfg, source=path)


def parse_config(data: Any, *, env: dict[str, str] | None = None, base_dir: Path | None = None) -> Config:
    env = dict(os.environ) if env is None else env
    if not isinstance(data, dict):
        raise ConfigError(None, "the file must contain a mapping of settings (got %s)" % type(data).__name__)
    _no_unknown(data, ("catalog", "pools", "seeding_roots", "qbittorrent", "clients", "policy", "scan", "server",
                       "lock_dir", "notify"), "")

    catalog = _abs_path(_required(data, "catalog", ""), "catalog")
    pools = _parse_pools(data)
    qbts = _parse_qbittorrent(data.get("qbittorrent"), env, base_dir)
    clients = _parse_clients(data.get("clients"), qbts, env, base_dir)
    policy = _parse_section(PolicyConfig, data.get("policy"), "policy")
    scan = _parse_section(ScanConfig, data.get("scan"), "scan")
    server = _parse_server(data.get("server"), env)
    notify = _parse_notify(data.get("notify"), env, base_dir)
    lock_dir = _abs_path(data["lock_dir"], "lock_dir") if data.get("lock_dir") else None

    if not 0 < scan.mass_delete_max_share <= 1:
        raise ConfigError("scan.mass_delete_max_share", "must be a fraction in (0, 1], e.g. 0.1 for 10%")
    if not 0 <= policy.promote_copy_max_ratio < 1:
        raise ConfigError("policy.promote_copy_max_ratio", "must be a fraction in [0, 1), e.g. 0.01 for 1%")
    return Config(catalog=catalog, pools=pools,
                  qbittorrent=tuple(c for c in clients if isinstance(c, QbtConfig)),
                  rtorrent=tuple(c for c in clients if isinstance(c, RtorrentConfig)),
                  policy=policy, scan=scan, server=server, notify=notify, lock_dir=lock_dir)


def _parse_pools(data: dict) -> tuple[PoolConfig, ...]:
    raw = _required(data, "pools", "")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("pools", "must map pool names to {path, role}", hint="e.g. stash: {path: /stash, role: primary}")
    roots = _required(data, "seeding_roots", "")
    if not isinstance(roots, dict):
        raise ConfigError("seeding_roots", "must map each pool name to its seeding folder")
    pools = []
    for name, spec in raw.items():
        key = f"pools.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(key, "must be a mapping with 'path' and 'role'")
        _no_unknown(spec, ("path", "role"), key)
        path = _abs_path(_required(spec, "path", key), f"{key}.path")
        role = _required(spec, "role", key)
        if role not in ROLES:
            raise ConfigError(f"{key}.role", f"must be one of {', '.join(ROLES)} (got {role!r})")
        if name not in roots:
            raise ConfigError("seeding_roots", f"has no entry for pool {name!r}",
                              hint=f"add '{name}: {path}/data/media/torrents/seeding' (inside the pool)")
        seed = _abs_path(roots[name], f"seeding_roots.{name}")
        if not _is_within(PurePosixPath(seed), PurePosixPath(path)) or seed == path:
            raise ConfigError(f"seeding_roots.{name}", f"{seed} is not inside pool {name}'s path {path}",
                              hint="each seeding root must be a folder inside its own pool (same dataset as the data)")
        pools.append(PoolConfig(name=str(name), path=path, role=role, seeding_root=seed))
    extra = set(roots) - set(raw)
    if extra:
        raise ConfigError("seeding_roots", f"names unknown pool(s): {', '.join(sorted(map(str, extra)))}")
    for role in ROLES:
        n = sum(p.role == role for p in pools)
        if n != 1:
            raise ConfigError("pools", f"needs exactly one pool with role {role!r} (found {n})",
                              hint="qbhook manages one primary (library) pool and one cold (seed-only) pool")
    for a in pools:
        for b in pools:
            if a is not b and (_is_within(PurePosixPath(a.path), PurePosixPath(b.path))):
                raise ConfigError("pools", f"pool {a.name} ({a.path}) overlaps pool {b.name} ({b.path})",
                                  hint="pools must be separate filesystems; neither may contain the other")
    return tuple(pools)


def _parse_qbittorrent(raw: Any, env: dict, base_dir: Path | None) -> tuple[QbtConfig, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    out = []
    names = set()
    for i, spec in enumerate(items):
        key = f"qbittorrent[{i}]" if isinstance(raw, list) else "qbittorrent"
        if not isinstance(spec, dict):
            raise ConfigError(key, "must be a mapping with url, username, password_env ...")
        _no_unknown(spec, ("name", "url", "username", "password", "password_env", "password_file", "path_map", "timeout"), key)
        name = str(spec.get("name") or ("default" if i == 0 else f"qbt{i}"))
        if name in names:
            raise ConfigError(f"{key}.name", f"duplicate instance name {name!r}")
        names.add(name)
        url = _required(spec, "url", key)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{key}.url", f"must be an http(s) URL (got {url!r})")
        username = str(spec.get("username") or "admin")
        password, pw_env, pw_file = _secret(spec, "password", env, base_dir, key)
        pairs = _parse_path_map(spec.get("path_map"), f"{key}.path_map")
        timeout = float(spec.get("timeout", 30.0))
        out.append(QbtConfig(name=name, url=url.rstrip("/"), username=username, password=password,
                             password_env=pw_env, password_file=pw_file, path_map=pairs, timeout=timeout))
    return tuple(out)


def _parse_path_map(raw: Any, key: str) -> tuple[tuple[str, str], ...]:
    """The one validation of a ``path_map`` (every client type): a list of {client, host}."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(key, "must be a list of {client: PATH, host: PATH}")
    pairs = []
    for j, m in enumerate(raw):
        mk = f"{key}[{j}]"
        if not isinstance(m, dict):
            raise ConfigError(mk, "must be a mapping {client: PATH, host: PATH}")
        _no_unknown(m, ("client", "host"), mk)
        pairs.append((str(_abs_path(_required(m, "client", mk), f"{mk}.client")),
                      str(_abs_path(_required(m, "host", mk), f"{mk}.host"))))
    return tuple(pairs)


_RT_KEYS = ("type", "name", "scgi", "path_map", "timeout")


def _parse_clients(raw: Any, qbts: tuple[QbtConfig, ...], env: dict,
                   base_dir: Path | None) -> tuple[ClientConfig, ...]:
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
            raise ConfigError(f"{key}.name", f"duplicate client name {name!r}",
                              hint=f"{name!r} already names a {names[name]}; every client needs its own name")
        names[name] = kind
        if kind == "qbittorrent":
            try:
                (q,) = _parse_qbittorrent([{k: v for k, v in spec.items() if k != "type"}], env, base_dir)
            except ConfigError as e:   # same parser as `qbittorrent:`, but the key named is ours
                sub = (e.key or "").removeprefix("qbittorrent[0]")
                raise ConfigError(key + sub, e.message.removeprefix(f"config: {e.key}: "), hint=e.hint) from None
            out.append(q)
            continue
        _no_unknown(spec, _RT_KEYS, key)
        out.append(RtorrentConfig(name=name, scgi=_scgi_address(_required(spec, "scgi", key), f"{key}.scgi"),
                                  path_map=_parse_path_map(spec.get("path_map"), f"{key}.path_map"),
                                  timeout=_positive_seconds(spec.get("timeout", 30.0), f"{key}.timeout")))
    return tuple(out)


def _scgi_address(v: Any, key: str) -> str:
    """rTorrent's SCGI socket: an absolute unix socket path, or host:port (scgi:// optional)."""
    from qbhook.clients.scgi import parse_address

    if not isinstance(v, str) or not v.strip():
        raise ConfigError(key, f"must be a unix socket path or host:port (got {v!r})")
    try:
        _family, where = parse_address(v)
        if isinstance(where, tuple) and not 0 < where[1] < 65536:
            raise ValueError(f"port {where[1]} is not a TCP port (1-65535)")
    except ValueError as e:
        raise ConfigError(key, f"{e}",
                          hint="e.g. /run/rtorrent/rpc.sock (network.scgi.open_local) or 127.0.0.1:5000") from None
    return v.strip()


def _positive_seconds(v: Any, key: str) -> float:
    if isinstance(v, str):
        try:
            v = parse_duration(v)
        except ValueError:
            raise ConfigError(key, f"cannot read {v!r} as a duration (e.g. 30, 30s, 2m)") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
        raise ConfigError(key, f"must be a positive number of seconds (got {v!r})")
    return float(v)


def _parse_server(raw: Any, env: dict) -> ServerConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("server", "must be a mapping")
    raw = dict(raw)
    password, pw_env, _ = _secret(raw, "password", env, None, "server", allow_file=False)
    token, tok_env, tok_file = _secret(raw, "token", env, None, "server")
    for k in ("password", "password_env", "token", "token_env", "token_file"):
        raw.pop(k, None)
    base = _parse_section(ServerConfig, raw, "server")
    return replace(base, password=password, password_env=pw_env, token=token, token_env=tok_env, token_file=tok_file)


def _parse_notify(raw: Any, env: dict, base_dir: Path | None) -> NotifyConfig:
    if raw is None:
        return NotifyConfig()
    if not isinstance(raw, dict):
        raise ConfigError("notify", "must be a mapping")
    raw = dict(raw)
    inline = raw.pop("urls", None)
    if inline is not None and not (isinstance(inline, list) and all(isinstance(u, str) for u in inline)):
        raise ConfigError("notify.urls", "must be a list of apprise URLs (better: urls_env or urls_file)")
    # From a variable or a file: one URL per line or separated by spaces/commas, as apprise reads them.
    text, u_env, u_file = _secret({"urls": None, "urls_env": raw.pop("urls_env", None),
                                   "urls_file": raw.pop("urls_file", None)}, "urls", env, base_dir, "notify")
    urls = tuple(inline or ()) + tuple(u for u in (text or "").replace(",", " ").split() if u)
    base = _parse_section(NotifyConfig, raw, "notify")
    return replace(base, urls=urls, urls_env=u_env, urls_file=u_file)


def _secret(spec: dict, name: str, env: dict, base_dir: Path | None, key: str, allow_file: bool = True):
    inline = spec.get(name)
    env_name = spec.get(f"{name}_env")
    file_name = spec.get(f"{name}_file") if allow_file else None
    value = None
    if env_name:
        value = env.get(str(env_name))
        if value is None and not file_name and inline is None:
            raise ConfigError(f"{key}.{name}_env", f"environment variable {env_name} is not set",
                              hint=f"export {env_name}=... before running qbhook")
    if value is None and file_name:
        p = Path(file_name)
        if not p.is_absolute() and base_dir:
            p = base_dir / p
        try:
            value = p.read_text().strip()
        except OSError as e:
            raise ConfigError(f"{key}.{name}_file", f"cannot read {p}: {e.strerror}") from None
        file_name = p
    if value is None and inline is not None:
        value = str(inline)
    return value, (str(env_name) if env_name else None), (Path(file_name) if file_name else None)


def _parse_section(cls, raw: Any, key: str):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(key, "must be a mapping")
    known = {f.name: f for f in fields(cls)}
    _no_unknown(raw, tuple(known), key)
    kwargs = {}
    defaults = cls()
    for k, v in raw.items():
        default = getattr(defaults, k)
        kwargs[k] = _coerce(v, default, f"{key}.{k}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, key: str):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false (got {value!r})")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, str):
            try:
                return parse_duration(value) if isinstance(default, float) else parse_size(value)
            except ValueError:
                raise ConfigError(key, f"cannot read {value!r} as a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number (got {value!r})")
        if value < 0:
            raise ConfigError(key, f"must not be negative (got {value!r})")
        return type(default)(value)
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ConfigError(key, "must be a list of strings")
        return tuple(value)
    if default is None or isinstance(default, str):
        if value is not None and not isinstance(value, (str, int)):
            raise ConfigError(key, f"must be a string (got {value!r})")
        return None if value is None else str(value)
    return value


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
               "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4, "tb": 1000**4, "tib": 1024**4}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def _split_unit(text: str) -> tuple[float, str]:
    t = text.strip().lower().replace(" ", "")
    i = len(t)
    while i and not (t[i - 1].isdigit() or t[i - 1] == "."):
        i -= 1
    return float(t[:i]), t[i:]


def parse_size(text: str) -> int:
    num, unit = _split_unit(text)
    if unit not in _SIZE_UNITS:
        raise ValueError(text)
    return int(num * _SIZE_UNITS[unit])


def parse_duration(text: str) -> float:
    num, unit = _split_unit(text)
    if unit not in _DURATION_UNITS:
        raise ValueError(text)
    return num * _DURATION_UNITS[unit]


def _required(d: dict, k: str, where: str):
    if k not in d or d[k] is None:
        raise ConfigError(f"{where}.{k}" if where else k, "is required")
    return d[k]


def _no_unknown(d: dict, known: tuple[str, ...], where: str) -> None:
    for k in d:
        if k not in known:
            raise ConfigError(f"{where}.{k}" if where else str(k), "is not a known setting",
                              hint=f"known here: {', '.join(known)}")


def _abs_path(v: Any, key: str) -> Path:
    if not isinstance(v, str) or not v:
        raise ConfigError(key, f"must be a path (got {v!r})")
    p = PurePosixPath(v)
    if not p.is_absolute():
        raise ConfigError(key, f"must be an absolute path (got {v!r})")
    if ".." in p.parts:
        raise ConfigError(key, f"must not contain '..' (got {v!r})")
    return Path(os.path.normpath(v))


# --------------------------------------------------------------------------- checks


def check_paths(cfg: Config) -> list[str]:
    """Problems with the pools on this machine (empty list: all good)."""
    problems = []
    for p in cfg.pools:
        if not p.path.is_dir():
            problems.append(f"pools.{p.name}.path: {p.path} does not exist or is not a folder (is the pool mounted?)")
        elif not p.seeding_root.is_dir():
            problems.append(f"seeding_roots.{p.name}: {p.seeding_root} does not exist (create it, or fix the path)")
    if all(p.path.is_dir() for p in cfg.pools):
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
            if not sock.exists():
                problems.append(f"rtorrent {c.name}: SCGI socket {sock} does not exist "
                                "(is rtorrent running with network.scgi.open_local at this path?)")
    parent = cfg.catalog.parent
    if not parent.is_dir():
        problems.append(f"catalog: folder {parent} does not exist (create it: mkdir -p {parent})")
    return problems


def describe(cfg: Config) -> dict:
    """The resolved configuration as plain data, secrets masked."""
    def mask(v):
        return None if v is None else "********"
    return {
        "source": str(cfg.source) if cfg.source else None,
        "catalog": str(cfg.catalog),
        "pools": {p.name: {"path": str(p.path), "role": p.role, "seeding_root": str(p.seeding_root)} for p in cfg.pools},
        "qbittorrent": [
            {"name": q.name, "url": q.url, "username": q.username, "password": mask(q.password),
             "password_env": q.password_env, "password_file": str(q.password_file) if q.password_file else None,
             "path_map": [{"client": c, "host": h} for c, h in q.path_map], "timeout": q.timeout}
            for q in cfg.qbittorrent
        ],
        "clients": [
            {"type": c.type, "name": c.name, "scgi": c.scgi, "timeout": c.timeout,
             "path_map": [{"client": a, "host": b} for a, b in c.path_map]}
            if isinstance(c, RtorrentConfig) else {"type": c.type, "name": c.name, "url": c.url}
            for c in cfg.clients
        ],
        "policy": {f.name: getattr(cfg.policy, f.name) for f in fields(cfg.policy)},
        "scan": {f.name: getattr(cfg.scan, f.name) for f in fields(cfg.scan)},
        "server": {
            f.name: (mask(getattr(cfg.server, f.name)) if f.name in ("password", "token") else
                     (str(getattr(cfg.server, f.name)) if isinstance(getattr(cfg.server, f.name), Path) else getattr(cfg.server, f.name)))
            for f in fields(cfg.server)
        },
        "notify": {"urls": [mask(u) for u in cfg.notify.urls], "urls_env": cfg.notify.urls_env,
                   "urls_file": str(cfg.notify.urls_file) if cfg.notify.urls_file else None,
                   "min_interval": cfg.notify.min_interval, "blocked_after": cfg.notify.blocked_after,
                   "free_space_below": cfg.notify.free_space_below},
        "lock_dir": str(cfg.lock_dir) if cfg.lock_dir else None,
    }
