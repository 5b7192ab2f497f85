"""`config check` names the paths every command would refuse or misuse, before they are used.

It asked ``is_dir()``, which follows symlinks: a seeding root that was a symlink (even into the
other pool) passed, and `scan` then saw 0 files there and said nothing; a `catalog:` that was a
folder passed (only its parent was looked at); a `lock_dir` of /tmp passed, though the README
says other users must not be able to write it.
"""

from __future__ import annotations

import os
import shutil

import pytest

from qbhook.config import check_paths, load_config
from qbhook.errors import ConfigError, ExitCode
from tests.unit.test_cli_catalog import SEED, Env


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def problems(env: Env) -> list[str]:
    return check_paths(load_config(env.config))


def others(found: list[str]) -> list[str]:
    """Leave out the one problem every Env has: both pools on tmp_path's filesystem."""
    return [p for p in found if "same filesystem" not in p]


def test_a_good_env_has_no_other_problem(env):
    assert others(problems(env)) == []


def test_a_seeding_root_that_is_a_symlink_into_the_other_pool_is_a_problem(env):
    root = env.stash / SEED
    shutil.rmtree(root)
    os.symlink(env.pool / SEED, root)
    assert others(problems(env)) == [
        f"seeding_roots.stash: {root} is a symlink to {env.pool / SEED}: refusing to go through it: "
        "qbhook reads and moves nothing through it (a scan sees 0 files); name the real folder"
    ]
    r = env.run("config", "check", expect=ExitCode.CONFIG)
    assert f"PROBLEM: seeding_roots.stash: {root} is a symlink to" in r.stderr


def test_a_symlinked_folder_between_pool_root_and_seeding_root_is_a_problem(env):
    between = env.stash / "data/media"
    real = env.stash / "elsewhere"
    os.rename(between, real)
    os.symlink(real, between)
    assert others(problems(env)) == [
        f"seeding_roots.stash: {between} is a symlink to {real}: refusing to go through it: "
        "qbhook reads and moves nothing through it (a scan sees 0 files); name the real folder"
    ]


def test_a_pool_root_that_is_a_symlink_is_refused_when_the_config_loads(env):
    """Not a check_paths problem: loading the config refuses it (dirfd walks to a pool root from
    / and never follows a link), so `config check` says it in one line and exits 78."""
    real = env.tmp / "real-pool"
    os.rename(env.pool, real)
    os.symlink(real, env.pool)
    r = env.run("config", "check", expect=ExitCode.CONFIG)
    assert f"pools.pool.path: {env.pool} is a symlink to {real}: configure the real path" in r.stderr.splitlines()[0]


def test_a_missing_seeding_root_is_still_named(env):
    shutil.rmtree(env.pool / SEED)
    assert others(problems(env)) == [
        f"seeding_roots.pool: {env.pool / SEED} does not exist (create it, or fix the path)"
    ]


def test_a_catalog_that_is_a_folder_is_a_problem(env):
    env.catalog.mkdir()
    assert others(problems(env)) == [f"catalog: {env.catalog} is not a regular file (name a file; qbhook creates it)"]


def test_a_file_in_the_way_of_the_catalogs_folder_is_named_not_made(env):
    """R80: a folder below a file was "does not exist (create it: mkdir -p ...)"; the same words
    as every command's (``config.not_a_folder``)."""
    blocker = env.tmp / "text.sqlite"
    blocker.write_text("")
    env.save(catalog=str(blocker / "a" / "x.sqlite"))
    assert others(problems(env)) == [
        f"catalog: folder {blocker / 'a'} cannot be a folder: {blocker} is a file, not a folder"
    ]


def test_a_catalog_that_is_a_link_to_nothing_is_a_problem(env):
    env.catalog.symlink_to(env.tmp / "nowhere" / "x.sqlite")
    assert others(problems(env)) == [
        f"catalog {env.catalog} is a symbolic link to {env.tmp / 'nowhere' / 'x.sqlite'}, which does not exist "
        "(point 'catalog:' at the file itself, or fix the link)"
    ]


def test_a_catalog_file_or_none_yet_is_fine(env):
    assert others(problems(env)) == []
    env.catalog.write_bytes(b"")
    assert others(problems(env)) == []


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o770, 0o720, 0o702])
def test_a_lock_dir_others_can_write_is_a_problem_sticky_or_not(env, mode):
    locks = env.tmp / "locks"
    locks.mkdir()
    os.chmod(locks, mode)
    env.save(lock_dir=str(locks))
    assert others(problems(env)) == [
        f"lock_dir: {locks}: its mode {mode:04o} lets other users write it; it must be a folder other users "
        "cannot write (not /run/lock or /tmp): another user could hold qbhook's locks and stop it"
    ]
    load_config(env.config)  # named, not refused: the config still loads


@pytest.mark.parametrize("mode", [0o775, 0o1777])
def test_a_catalog_folder_others_can_write_is_a_problem_while_it_holds_the_lock_folder(env, mode):
    folder = env.catalog.parent
    os.chmod(folder, mode)
    assert others(problems(env)) == [
        f"catalog: folder {folder}: its mode {mode:04o} lets other users write it; it holds qbhook's lock "
        "folder, which another user could rename away and let two executors run at once (chmod go-w it, "
        "or set lock_dir)"
    ]
    load_config(env.config)  # named, not refused: the config still loads, as with lock_dir
    locks = env.tmp / "locks"
    locks.mkdir(mode=0o700)
    env.save(lock_dir=str(locks))
    assert others(problems(env)) == []  # it holds no lock folder then


def test_lock_dir_tmp_is_a_problem(env):
    env.save(lock_dir="/tmp")
    assert [p for p in problems(env) if p.startswith("lock_dir: /tmp: its mode 1777 lets other users write it")]


@pytest.mark.parametrize("mode", [0o755, 0o700])
def test_a_lock_dir_only_its_owner_can_write_or_a_missing_one_is_fine(env, mode):
    locks = env.tmp / "locks"
    env.save(lock_dir=str(locks))
    assert others(problems(env)) == []  # missing: qbhook creates it
    locks.mkdir()
    os.chmod(locks, mode)
    assert others(problems(env)) == []


@pytest.mark.parametrize("dangling", [False, True])
def test_a_lock_dir_that_is_a_symlink_is_a_problem(env, dangling):
    # R62: os.stat followed the link to a good 0700 folder and said nothing, while every command
    # that takes a lock refuses it (exit 78).
    real = env.tmp / "real-locks"
    if not dangling:
        real.mkdir(mode=0o700)
    locks = env.tmp / "locks"
    locks.symlink_to(real)
    env.save(lock_dir=str(locks))
    assert others(problems(env)) == [
        f"lock_dir: {locks} is a symbolic link: qbhook refuses it when it takes a lock; name the real folder"
    ]
    r = env.run("config", "check", expect=ExitCode.CONFIG)
    assert f"PROBLEM: lock_dir: {locks} is a symbolic link" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user takes root")
def test_a_lock_dir_another_user_owns_is_a_problem(env):
    locks = env.tmp / "locks"
    locks.mkdir(mode=0o755)
    os.chown(locks, 12345, -1)
    env.save(lock_dir=str(locks))
    assert others(problems(env)) == [
        f"lock_dir: {locks}: it is owned by uid 12345, not this user or root; it must be a folder other users "
        "cannot write (not /run/lock or /tmp): another user could hold qbhook's locks and stop it"
    ]


@pytest.mark.parametrize(
    "key, where",
    [
        ("catalog", "stash/catalog.sqlite"),
        ("catalog", f"pool/{SEED}/qbhook/catalog.sqlite"),
        ("lock_dir", "pool"),
    ],
)
def test_qbhooks_own_files_in_a_pool_are_refused_when_the_config_loads(env, key, where):
    """The catalog or the lock folder inside a pool (or a seeding root) passed: qBittorrent's
    less-trusted user can write beside them there, a scan catalogs the catalog, and orphans
    could quarantine it. A one-line refusal, exit 78."""
    path = env.tmp / where
    env.save(**{key: str(path)})
    r = env.run("config", "check", expect=ExitCode.CONFIG)
    pool = "stash" if where.startswith("stash") else "pool"
    assert r.stderr.splitlines()[0] == f"qbhook: config: {key}: {path} is inside pool {pool} ({env.tmp / pool})"


@pytest.mark.parametrize(
    "args", [("config", "check"), ("scan",), ("orphans",), ("orphans", "--quarantine", "--yes"), ("status",)]
)
def test_a_catalog_folder_that_is_a_symlink_into_a_seeding_root_refuses_every_command_at_load(env, args):
    """Review R46: as written it is outside every pool; as it leads (/var/lib/qbhook -> a dataset
    folder), inside a seeding root. Only `config check` named it, and `orphans --quarantine --yes`
    moved the live catalog into holding, its -wal left behind. Now the load refuses, one line."""
    os.rmdir(env.catalog.parent)
    os.symlink(env.stash / SEED, env.catalog.parent)
    r = env.run(*args, expect=ExitCode.CONFIG)
    lines = r.stderr.strip().splitlines()
    assert lines[0] == (
        f"qbhook: config: catalog: {env.catalog} is inside pool stash ({env.stash}) "
        f"(through a symlink: it is {env.stash / SEED / 'catalog.sqlite'})"
    ), r.stderr
    assert lines[1:] == ["  hint: put qbhook's own files outside every pool, e.g. /var/lib/qbhook/catalog.sqlite"], (
        lines
    )
    assert not (env.stash / SEED / "catalog.sqlite").exists()  # nothing made there either


def test_a_lock_dir_through_a_symlink_into_a_pool_is_refused_at_load(env):
    link = env.tmp / "locks"
    os.symlink(env.pool, link)
    env.save(lock_dir=str(link / "qbhook"))
    with pytest.raises(ConfigError) as e:
        load_config(env.config)
    assert e.value.key == "lock_dir" and "through a symlink" in e.value.message, e.value


def test_paths_config_check_cannot_look_at_are_problems_not_tracebacks(env, monkeypatch):
    """Python 3.11's is_dir/exists raise PermissionError (a folder above this user may not enter)
    and ENAMETOOLONG: `config check` tracebacked where it should name the path and the cause."""
    denied = env.tmp / "sec"
    long = "/tmp/" + "x" * 300  # ENAMETOOLONG even for root
    env.save(
        pools={**env.data["pools"], "pool": {"path": str(denied / "pool"), "role": "cold"}},
        seeding_roots={**env.data["seeding_roots"], "pool": str(denied / "pool" / SEED)},
        catalog=f"{long}/catalog.sqlite",
        clients=[{"type": "rtorrent", "name": "rt", "scgi": f"{long}/rpc.sock"}],
    )
    cfg = load_config(env.config)
    real = os.stat

    def stat(path, *a, **kw):
        if os.fsdecode(os.fspath(path)).startswith(str(denied) + "/"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(os, "stat", stat)
    assert others(check_paths(cfg)) == [
        f"pools.pool.path: cannot look at {denied / 'pool'}: Permission denied",
        f"rtorrent rt: cannot look at SCGI socket {long}/rpc.sock: File name too long",
        f"catalog: cannot look at {long}: File name too long",
    ]
    monkeypatch.undo()
    r = env.run("config", "check", expect=ExitCode.CONFIG)
    assert "Traceback" not in r.output and f"PROBLEM: catalog: cannot look at {long}" in r.stderr


# A secret file others may read or write, or another user owns (and so may chmod), and a config
# file every user may read while it holds secrets itself, passed `config check` silently (R46).

LOOSE_SECRET = (
    "a secret file must be its owner's alone (chmod 600, or 640 for a group of its own; owned by root or qbhook's user)"
)


def _with_secret_files(env: Env, mode: int) -> list:
    files = [env.tmp / name for name in ("qbt-pw", "server-pw", "token", "urls")]
    for f in files:
        f.write_text("s3cret-value\n")
        f.chmod(mode)
    env.save(
        qbittorrent={"url": "http://127.0.0.1:8080", "password_file": str(files[0])},
        server={"username": "qbhook", "password_file": str(files[1]), "token_file": str(files[2])},
        notify={"urls_file": str(files[3])},
    )
    return files


@pytest.mark.parametrize(
    "mode, may", [(0o644, "read"), (0o604, "read"), (0o620, "write"), (0o602, "write"), (0o666, "read and write")]
)
def test_a_secret_file_others_may_read_or_write_is_a_problem(env, mode, may):
    pw, server_pw, token, urls = _with_secret_files(env, mode)
    why = f"mode {mode:04o} lets other users {may} it; {LOOSE_SECRET}"
    assert others(problems(env)) == [
        f"qbittorrent default: password_file: {pw}: {why}",
        f"server.password_file: {server_pw}: {why}",  # R62: server.password_file was refused
        f"server.token_file: {token}: {why}",
        f"notify.urls_file: {urls}: {why}",
    ]
    load_config(env.config)  # named, not refused: the config still loads


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640])  # 0640: a group of its own (root:qbhook) may read it
def test_a_secret_file_only_its_owner_may_read_is_fine(env, mode):
    _with_secret_files(env, mode)
    assert others(problems(env)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user takes root")
def test_a_secret_file_another_user_owns_is_a_problem(env):
    pw, *_ = _with_secret_files(env, 0o666)
    os.chown(pw, 12345, -1)
    assert others(problems(env))[0] == (
        f"qbittorrent default: password_file: {pw}: mode 0666 lets other users read and write it and "
        f"it is owned by uid 12345; {LOOSE_SECRET}"
    )


def _with_inline_secrets(env: Env, mode: int) -> None:
    env.save(
        qbittorrent={"url": "http://proxy:pw@127.0.0.1:8080", "password": "inline-pw"},
        clients=[{"type": "qbittorrent", "name": "two", "url": "http://127.0.0.1:8081", "password": "x"}],
        server={"username": "u", "password": "inline-pw", "token": "inline-token-77"},
        notify={"urls": ["json://localhost/hook"]},
    )
    env.config.chmod(mode)


def test_a_config_every_user_may_read_that_holds_secrets_is_a_problem(env):
    _with_inline_secrets(env, 0o644)
    assert others(problems(env)) == [
        f"config: {env.config} holds secrets (qbittorrent.password, qbittorrent.url, clients[0].password, "
        "server.password, server.token, notify.urls) and mode 0644 lets every user read them; name them by "
        "*_env or *_file settings instead, or chmod o-r the file"
    ]
    r = env.run("config", "check", expect=ExitCode.CONFIG)
    assert f"PROBLEM: config: {env.config} holds secrets (" in r.stderr
    assert "inline-pw" not in r.output and "inline-token-77" not in r.output


@pytest.mark.parametrize("mode", [0o640, 0o600])
def test_a_config_with_secrets_others_may_not_read_is_fine(env, mode):
    _with_inline_secrets(env, mode)
    assert others(problems(env)) == []


def test_a_config_every_user_may_read_without_secrets_is_fine(env):
    _with_secret_files(env, 0o600)
    env.config.chmod(0o644)
    assert others(problems(env)) == []


def test_a_catalog_that_is_a_loop_of_links_is_a_problem(env):
    env.catalog.symlink_to(env.catalog)
    assert others(problems(env)) == [
        f"catalog {env.catalog} is a loop of symbolic links, or more than the kernel follows "
        "(point 'catalog:' at the file itself, or fix the links)"
    ]


def test_a_loop_in_the_catalogs_folder_is_not_called_the_catalogs(env):
    """R98 F2: the folder's loop, named as the folder's (as `scan` names it), not as the catalog's."""
    folder = env.catalog.parent
    shutil.rmtree(folder, ignore_errors=True)
    folder.symlink_to(folder)
    assert not any("is a loop of symbolic links" in p for p in problems(env))
