"""``qbhook demo``: qbhook's main job, end to end, on a throw-away sandbox.

Two real pools (zfs-fuse, or tmpfs where ZFS cannot run), a real qBittorrent on
loopback, a realistic layout, then: scan, the plan shown to you, apply, an
*arr import webhook through a running ``qbhook serve``, and a before/after
summary. Everything lives under one folder; ``--clean`` removes it.

When ``rtorrent`` is installed (scripts/demo installs it), a real headless
rTorrent runs beside qBittorrent, configured through ``clients:``, with a
payload seeded by both clients (one mixed group) and one seeded by rTorrent
alone; the before/after tables show every item of both clients.

Every line the demo prints goes through the ``say`` it is given (``Say``): the CLI passes its
one printer of human lines (``cli.app.echo_shown``, the ``paths.shown`` escaping), so a name
from a pool or a client reaches the terminal by the same rule as in every other command, and
this package never imports the CLI. One call is one line: a blank line is ``say("")``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from qbhook.clients.rtorrent import RtorrentClient
from qbhook.errors import ExitCode, QbhookError
from qbhook.paths import is_within
from qbhook.sandbox.qbt import QbtInstance, free_port
from qbhook.sandbox.rtorrent import RtorrentInstance
from qbhook.sandbox.scenario import MOVIES, Scenario
from qbhook.sandbox.serve import start_serve, stop_serve
from qbhook.sandbox.zfs import Pool, Pools, create_pools, destroy_pools, ensure_zfs_fuse

TOKEN = "demo-token-not-secret"

Say = Callable[[str], None]  # prints one human line (the CLI's echo_shown)


class DemoFailed(QbhookError):
    """A step of the demo failed; ``output``: the lines of the qbhook call that failed, if any."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(f"demo: {message}")
        self.output = output


def _qbhook(
    cfg: Path, *args: str, check: bool = True, show: bool = False, shown_fd: int | None = None
) -> subprocess.CompletedProcess:
    """Run ``qbhook ARGS`` on the sandbox's config; ``show``: its own lines (escaped by its own
    printer) go straight to the terminal, on ``shown_fd`` (``run``'s), else they are captured."""
    env = {**os.environ, "QBHOOK_DEMO_TOKEN": TOKEN}
    out = {"stdout": shown_fd} if show else {"capture_output": True}
    r = subprocess.run([sys.executable, "-m", "qbhook", "--config", str(cfg), *args], env=env, text=True, **out)
    if check and r.returncode not in (0, 10):
        raise DemoFailed(f"`qbhook {' '.join(args)}` failed ({r.returncode})", f"{r.stdout or ''}{r.stderr or ''}")
    return r


# Written first into a new sandbox: `clean` removes only a folder that holds it, or an empty
# one. A state.json alone is not enough: any program's folder may hold one.
MARKER = ".qbhook-demo"
# What sandbox.zfs names the demo's pools (``_unique_pool_name``): a state.json naming any other
# pool is not the demo's to destroy.
_DEMO_ZPOOL = re.compile(r"qbt[0-9a-f]{6}[A-Za-z0-9_-]{1,32}")


def is_sandbox(base: Path) -> bool:
    """True when ``base`` may be removed as a demo sandbox: missing, empty, or made by the demo."""
    if not base.is_dir() or base.is_symlink():
        return not os.path.lexists(base)
    return (base / MARKER).is_file() or not any(base.iterdir())


def _saved_pools(base: Path, state: Path) -> Pools:
    """The pools a sandbox's state.json names, each checked to be one the demo made below ``base``;
    anything else is a one-line ``QbhookError`` and nothing is destroyed."""

    def refuse(why: str) -> QbhookError:
        return QbhookError(
            f"{state}: {why}: refusing to destroy pools or clear {base}",
            hint=f"destroy the demo's pools by hand (zpool list | grep ^qbt) and remove {base} yourself",
        )

    try:
        data = json.loads(state.read_bytes())
        base_dir = Path(data["base_dir"])
        pools = {k: Pool(Path(v["mountpoint"]), v["zpool"], v["kind"]) for k, v in data["pools"].items()}
        nested = {k: Path(v) for k, v in data.get("nested", {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise refuse(f"not a demo state ({type(e).__name__}: {e})") from None
    inside = [base_dir, *(p.mountpoint for p in pools.values()), *nested.values()]
    real = base.resolve()  # as ``run`` wrote them (``is_sandbox`` refused a base that is a symlink)
    if not all(p.is_absolute() and ".." not in p.parts and real in (p, *p.parents) for p in inside):
        raise refuse("it names folders outside the sandbox")
    if any(
        p.kind == "zfs" and not (isinstance(p.zpool, str) and _DEMO_ZPOOL.fullmatch(p.zpool)) for p in pools.values()
    ):
        raise refuse("it names a ZFS pool the demo did not make")
    return Pools(base_dir=base_dir, pools=pools, nested=nested)


def clean(base: Path, say: Say) -> None:
    # The demo runs as root and --dir is typed by hand: `--dir /srv` unmounted everything below
    # /srv and removed it. Only a folder the demo made is ever cleared.
    if not is_sandbox(base):
        raise QbhookError(
            f"{base} is not a demo sandbox (no {MARKER} in it): refusing to clear it",
            hint="give --dir a new or empty folder, or the folder of an earlier demo",
        )
    state = base / "state.json"
    if state.exists():
        pools = _saved_pools(base, state)
        try:
            destroy_pools(pools)
        except Exception as e:
            say(f"warning: could not destroy demo pools: {e}")
    # A sandbox left mounted when zfs-fuse was restarted (a reboot of the daemon, a test run)
    # leaves dead FUSE mounts ("Transport endpoint is not connected") that rmtree cannot remove.
    for mnt in _mounts_below(base):
        subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)
    if base.exists():
        shutil.rmtree(base, ignore_errors=True)
    if base.exists():
        raise QbhookError(
            f"cannot clear the demo sandbox {base}: something in it cannot be removed",
            hint=f"look for mounts below it (grep {base} /proc/mounts) and remove it by hand",
        )


def _mounts_below(base: Path, mounts: str = "/proc/self/mounts") -> list[str]:
    """Mount points inside ``base``, deepest first (unescaped as /proc prints them: \\040 is a space)."""
    prefix = str(base).rstrip("/") + "/"
    out = []
    with open(mounts, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1:
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
                if point.startswith(prefix):
                    out.append(point)
    return sorted(out, key=len, reverse=True)


def _save_state(base: Path, pools: Pools) -> None:
    (base / "state.json").write_text(
        json.dumps(
            {
                "base_dir": str(pools.base_dir),
                "pools": {
                    k: {"mountpoint": str(p.mountpoint), "zpool": p.zpool, "kind": p.kind}
                    for k, p in pools.pools.items()
                },
                "nested": {k: str(v) for k, v in pools.nested.items()},
            }
        )
    )


def _pool_of(save_path: str, sc: Scenario) -> str:
    return "stash" if is_within(save_path, sc.stash) else "pool" if is_within(save_path, sc.pool) else "?"


def _inventory(client, sc: Scenario, rt: RtorrentClient | None = None) -> list[dict]:
    rows = []
    for t in client.torrents_info():
        rows.append(
            {
                "name": t["name"],
                "client": "qbt",
                "pool": _pool_of(t["save_path"], sc),
                "state": t["state"],
                "progress": t["progress"],
                "save_path": t["save_path"],
            }
        )
    for t in rt.torrents() if rt is not None else ():
        rows.append(
            {
                "name": t.name,
                "client": "rt",
                "pool": _pool_of(t.save_path, sc),
                "state": t.state,
                "progress": t.progress,
                "save_path": t.save_path,
            }
        )
    return sorted(rows, key=lambda r: (r["name"], r["client"]))


def _used(path: Path) -> int:
    """Bytes of distinct inodes under path (hardlinks counted once)."""
    seen, total = set(), 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _heading(say: Say, title: str) -> None:
    say("")
    say(f"== {title} ==")


def _print_inventory(say: Say, title: str, rows: list[dict], sc: Scenario) -> None:
    _heading(say, title)
    say(f"  {'torrent':42} {'client':6} {'pool':6} {'state':12} progress")
    for r in rows:
        say(f"  {r['name'][:42]:42} {r['client']:6} {r['pool']:6} {r['state']:12} {r['progress'] * 100:.0f}%")
    say(
        f"  data on stash: {_used(sc.stash) / 2**20:.1f} MiB, on pool: {_used(sc.pool) / 2**20:.1f} MiB "
        f"(hardlinks counted once)"
    )


def run(base: Path, say: Say, shown_fd: int | None = None) -> ExitCode:
    """Build the sandbox in ``base`` and run the story; OK when it proved what it shows.
    ``shown_fd``: where the qbhook commands it shows print their own lines (None: this process's
    standard output; the CLI gives 2 under --json, where standard output holds one JSON document)."""
    base = base.resolve()
    say(f"qbhook demo: sandbox in {base}")
    try:
        return _run(base, say, shown_fd)
    except DemoFailed as e:
        for line in e.output.splitlines():  # the failed call's own lines, then the error
            say(line)
        raise


def _run(base: Path, say: Say, shown_fd: int | None) -> int:
    clean(base, say)
    base.mkdir(parents=True, mode=0o755)  # the catalog's folder: writable by no other user (move.locks)
    (base / MARKER).write_text("made by qbhook demo; `qbhook demo --clean` removes this folder\n")
    zfs = ensure_zfs_fuse()
    pools = create_pools(base / "bed", nested={"stash": "data/media/library"}, kind="zfs" if zfs else "tmpfs")
    _save_state(base, pools)
    say(f"pools: stash at {pools['stash']}, pool at {pools['pool']} ({pools.kind})")
    qbt = QbtInstance().start(base / "qbittorrent")
    server = rtorrent = rt = None
    try:
        client = qbt.client()
        say(f"qBittorrent {client.app_version()} on {qbt.url} (admin/adminadmin)")
        sc = Scenario(stash=pools["stash"], pool=pools["pool"], torrent_dir=base / "torrents").build_all(client)
        if shutil.which("rtorrent"):
            rtorrent = RtorrentInstance().start(base / "rtorrent")
            rt = RtorrentClient("rt", rtorrent.address)
            say(f"rTorrent {rt.version()} on SCGI socket {rtorrent.address}")
            sc.rtorrent_cases(client, rtorrent)
        else:
            say("rtorrent is not installed: the demo runs with qBittorrent only (scripts/demo installs it)")
        cfg, port = _write_config(base, sc, qbt.url, rtorrent)
        before = _inventory(client, sc, rt)
        _print_inventory(say, "before", before, sc)

        _heading(say, "qbhook scan")
        _qbhook(cfg, "scan", show=True, shown_fd=shown_fd)
        _heading(say, "qbhook plan (dry run: nothing changes)")
        _qbhook(cfg, "plan", "--no-scan", show=True, shown_fd=shown_fd)
        _heading(say, "qbhook apply --yes")
        _qbhook(cfg, "apply", "--yes", "--no-scan", show=True, shown_fd=shown_fd, check=False)

        _heading(say, "an *arr import arrives as a webhook")
        server = start_serve(cfg, port, {"QBHOOK_DEMO_TOKEN": TOKEN}, log=base / "serve.log")
        h = _radarr_imports_a_copy(say, sc, port)
        _wait_for(lambda: _event_settled(cfg), 300, "the worker to finish the webhook's job")
        job = json.loads(_qbhook(cfg, "--json", "queue", "--state", "done").stdout)[0]
        for g in (job.get("result") or {}).get("groups", []):
            say(f"worker: {g['action'].upper()} {', '.join(g['names'])}: {g['reason']}")
        if not _torrent_on(client, h, str(sc.stash)):
            say("demo: the imported torrent was not promoted; see `qbhook history` and serve.log")

        after = _inventory(client, sc, rt)
        _print_inventory(say, "after", after, sc)
        ok = _report(say, cfg, sc, after, rt is not None, shown_fd)
        say("")
        say(f"sandbox kept in {base} (config: {cfg}); remove it with: qbhook demo --clean")
        return ExitCode.OK if ok else ExitCode.FAILURE
    finally:
        if server is not None:
            stop_serve(server)
        if rtorrent is not None:
            rtorrent.stop()
        qbt.stop()


def _report(say: Say, cfg: Path, sc: Scenario, after: list[dict], with_rtorrent: bool, shown_fd: int | None) -> bool:
    """What the demo proves, printed: no duplicates across pools, every torrent at 100 %."""
    dupes = json.loads(_qbhook(cfg, "--json", "dupes").stdout)
    across = [s for s in dupes["sets"] if s["scope"] == "across-pools"]
    say("")
    say(f"duplicates across pools left: {len(across)}")
    not_done = [r for r in after if r["progress"] < 1]
    say(f"torrents at 100%: {len(after) - len(not_done)} of {len(after)}")
    stuck = _rtorrent_groups_not_demoted(sc, after) if with_rtorrent else []
    if with_rtorrent:
        say(
            f"rTorrent groups on the cold pool (mixed with qBittorrent, rTorrent only): "
            f"{'all' if not stuck else 'NOT ' + ', '.join(stuck)}"
        )
    _heading(say, "qbhook status")
    _qbhook(cfg, "status", show=True, shown_fd=shown_fd)
    return not not_done and not across and not stuck


def _write_config(base: Path, sc: Scenario, qbt_url: str, rtorrent) -> tuple[Path, int]:
    cfg = base / "config.yaml"
    port = free_port()
    data = sc.config_dict(base / "catalog.sqlite", qbt_url, auto_apply=True)
    if rtorrent is not None:
        data["clients"] = [{"type": "rtorrent", "name": "rt", "scgi": rtorrent.address}]
    data["server"] = {"listen": "127.0.0.1", "port": port, "token_env": "QBHOOK_DEMO_TOKEN", "sweep_interval": 86400}
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg, port


def _radarr_imports_a_copy(say: Say, sc: Scenario, port: int) -> str:
    """Radarr imports the demoted documentary by copying it into the library (another filesystem)
    and posts its Download webhook; returns the torrent's hash."""
    src = next(sc.pool_seed.rglob("doc.b.mkv"))
    lib = sc.stash / MOVIES / "Doc B (2019)" / "Doc B (2019).mkv"
    lib.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, lib)
    h = sc.hashes["already_on_pool"][0]
    payload = {
        "eventType": "Download",
        "instanceName": "Radarr",
        "applicationUrl": "",
        "movie": {"id": 1, "title": "Doc B", "year": 2019, "folderPath": str(lib.parent)},
        "movieFile": {
            "id": 1,
            "relativePath": lib.name,
            "path": str(lib),
            "sourcePath": str(src),
            "size": lib.stat().st_size,
        },
        "isUpgrade": False,
        "downloadClient": "qBittorrent",
        "downloadClientType": "qBittorrent",
        "downloadId": h.upper(),
    }
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook/arr",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "X-Qbhook-Token": TOKEN},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        say(f"POST /webhook/arr (Radarr Download) -> {resp.status} {resp.read().decode().strip()}")
    return h


def _rtorrent_groups_not_demoted(sc: Scenario, rows: list[dict]) -> list[str]:
    """Names of the mixed / rTorrent-only items that did not end on the cold pool."""
    mixed_and_rt = {"Mixed.S02.720p", "Mixed S02 (WEB)", "Indie.F.2018"}
    return sorted(f"{r['name']} ({r['client']})" for r in rows if r["name"] in mixed_and_rt and r["pool"] != "pool")


def _event_settled(cfg: Path) -> bool:
    st = json.loads(_qbhook(cfg, "--json", "status").stdout)
    q = st["queue"]
    return (
        q.get("done", 0) + q.get("dead", 0) >= 1
        and not q.get("pending")
        and not q.get("running")
        and not st["unfinished_runs"]
    )


def _torrent_on(client, h: str, root: str) -> bool:
    t = client.torrents_info(torrent_hashes=h)
    return bool(t) and is_within(t[0]["save_path"], root) and t[0]["progress"] == 1


def _wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise DemoFailed(f"timed out waiting for {what}")
