#!/usr/bin/env python3
"""Soak: does a `qbhook serve` left running stay bounded (descriptors, threads, children, RSS, catalog)?

The user's case is `qbhook serve` (webhook server + queue worker + periodic sweeper) running
for months over thousands of torrents. This bench runs the real CLI `qbhook serve` for
``--minutes`` against a real, offline qbittorrent-nox holding ``--items`` small multi-file
torrents on plain folders under the config's pools (dry-run: the default), with a sweep every
``--sweep-interval`` seconds, and meanwhile:

- sends a steady stream of events to serve's real endpoints, in turn: qBittorrent's ``added``
  and ``finished`` hook calls (the form hooks/qbt-hook.sh posts), a Radarr "Download" webhook
  and a cross-seed v6 INJECTED notification, each about a torrent qBittorrent really has;
- changes the world now and then so sweeps have work: a torrent added, one removed, a
  category changed, a seed file hardlinked into a library folder, such a library link removed;
- samples serve's process every ``--every`` seconds: VmRSS / VmHWM, open descriptors
  (/proc/PID/fd), threads, child processes (and zombies among them), the catalog file and its
  WAL, the rows of its ever-growing tables (event_jobs, scans, runs + steps: the journal), and
  queue depth and last sweep from `qbhook --json status`.

It prints a table of each figure's first-third and last-third medians with its per-hour slope
(least squares over the second half of the samples), and a verdict per figure and overall that is computed from
them (``judge``): a figure is bounded when its last-third median is no higher than its first
third's largest sample (no new level); a size or row count also when its per-hour slope over
the second half, carried over ``--project-days``, stays within that figure's allowance (the
table shows both). Zombies must be 0. ``--keep-history 60s`` shortens sweep.keep_history so
the pruning of old event jobs and scan records shows within minutes.

    python bench/bench_soak.py [--minutes 5] [--items 600] [--files 6] [--sweep-interval 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import cleanup, machine, table, workdir, write_config
from bench.bench_index import make_items
from bench.bench_list_clients import load_qbt, wait_for
from qbhook.sandbox.qbt import QbtInstance
from qbhook.sandbox.serve import stop_serve, wait_http

TOKEN = "soak-token-0123456789"


def proc_sample(pid: int) -> dict[str, float]:
    """serve's own figures from /proc: RSS, peak RSS (KiB), threads, open fds, children, zombies."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(line.split()[1])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    kids = zombies = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            kids += 1
            zombies += fields[0] == "Z"
    out["children"] = kids
    out["zombies"] = zombies
    return out


def catalog_sample(catalog: Path) -> dict[str, float]:
    """Sizes (bytes) of the catalog and its WAL, and the rows of the tables that grow with time."""
    out: dict[str, float] = {"catalog_bytes": catalog.stat().st_size}
    wal = Path(str(catalog) + "-wal")
    out["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
    # Read-only and without touching the WAL mode: the bench must not checkpoint for serve.
    with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=30) as c:
        for table_name, key in (("event_jobs", "job_rows"), ("scans", "scan_rows"), ("runs", "run_rows")):
            out[key] = c.execute(f"SELECT count(*) FROM {table_name}").fetchone()[0]
        out["journal_rows"] = out["run_rows"] + c.execute("SELECT count(*) FROM steps").fetchone()[0]
        # the last sweep's start: counts sweeps (the scans rows do not, once pruned)
        row = c.execute("SELECT json_extract(value, '$.started_at') FROM state WHERE key = 'last_sweep'").fetchone()
        out["sweep_started"] = row[0] if row and row[0] else 0
    c.close()
    return out


def status_sample(cfg: Path) -> dict[str, float]:
    r = subprocess.run(
        [sys.executable, "-m", "qbhook", "--config", str(cfg), "--json", "status"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
        check=False,
    )
    try:
        d = json.loads(r.stdout)
    except json.JSONDecodeError:
        return {}
    q = d.get("queue", {})
    at = d.get("last_sweep", {}).get("at")
    return {"queue_pending": q.get("pending", 0) + q.get("running", 0), "sweep_age_s": time.time() - at if at else -1}


@dataclass
class World:
    """The bed's qBittorrent and folders, and the changes the bench makes to them."""

    raw: object  # qbittorrentapi.Client
    data: Path
    library: Path
    hashes: list[str]
    spare: list[tuple[str, bytes]]
    linked: list[Path] = field(default_factory=list)
    done: dict[str, int] = field(default_factory=dict)

    def change(self, k: int) -> None:
        what = ("add", "remove", "category", "hardlink", "unlink")[k % 5]
        if what == "add" and self.spare:
            h, blob = self.spare.pop()
            load_qbt(self.raw, [(h, blob)], self.data)
            self.hashes.append(h)
        elif what == "remove" and len(self.hashes) > 10:
            # the torrent goes, its data stays: an orphan for the sweep to see
            self.raw.torrents_delete(delete_files=False, torrent_hashes=self.hashes.pop(0))
        elif what == "category":
            self.raw.torrents_set_category(category=random.choice(["movies", "tv", ""]), torrent_hashes=self.pick())
        elif what == "hardlink":
            files = [p for p in (self.data / self.name_of(self.pick())).rglob("*.bin")]
            if files:
                src = files[0]
                dst = self.library / f"{len(self.linked):05d}-{src.name}"
                os.link(src, dst)
                self.linked.append(dst)
        elif what == "unlink" and self.linked:
            self.linked.pop(0).unlink()
        self.done[what] = self.done.get(what, 0) + 1

    def pick(self) -> str:
        return random.choice(self.hashes)

    def name_of(self, h: str) -> str:
        return self.raw.torrents_info(torrent_hashes=h)[0]["name"]


class Sender:
    """One event at a time to serve's real endpoints, in turn: qBittorrent added / finished, Radarr, cross-seed."""

    def __init__(self, port: int, world: World):
        self.port = port
        self.world = world
        self.sent: dict[str, int] = {}
        self.refused = 0
        self.k = 0

    def send(self) -> None:
        h = self.world.pick()
        kind = ("added", "finished", "radarr", "cross-seed")[self.k % 4]
        self.k += 1
        content = str(self.world.data / f"x{h[:8]}")
        if kind in ("added", "finished"):
            body = urllib.parse.urlencode(
                {"event": kind, "I": h, "J": "-", "K": h, "N": "n", "L": "", "G": "", "F": content, "R": content}
            )
            path, ctype = "/hook/qbittorrent", "application/x-www-form-urlencoded"
        elif kind == "radarr":
            body = json.dumps(
                {
                    "eventType": "Download",
                    "instanceName": "Radarr",
                    "movie": {"id": self.k, "title": f"M{self.k}", "folderPath": f"/movies/M{self.k}"},
                    "movieFile": {"id": self.k, "relativePath": "m.mkv", "path": f"/movies/M{self.k}/m.mkv"},
                    "downloadClient": "qBittorrent",
                    "downloadId": h.upper(),
                }
            )
            path, ctype = "/webhook/radarr", "application/json"
        else:
            body = json.dumps(
                {
                    "title": "cross-seed",
                    "body": "injected",
                    "extra": {
                        "event": "RESULTS",
                        "result": "INJECTED",
                        "infoHashes": [self.world.pick()],
                        "searchee": {"infoHash": h, "path": content},
                    },
                }
            )
            path, ctype = "/webhook/cross-seed", "application/json"
        # A new connection per event, as the hook script and the *arr apps make.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", path, body, {"Content-Type": ctype, "X-Qbhook-Token": TOKEN})
            r = conn.getresponse()
            r.read()
        finally:
            conn.close()
        if r.status in (200, 202):
            self.sent[kind] = self.sent.get(kind, 0) + 1
        else:
            self.refused += 1


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    if len(ts) < 2:
        return 0.0
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den * 3600


# figure -> (label, unit divisor, unit, kind, allowance over --project-days for "size" figures)
FIGURES = {
    "fds": ("open descriptors", 1, "", "count", None),
    "Threads": ("threads", 1, "", "count", None),
    "children": ("child processes", 1, "", "count", None),
    "VmRSS": ("RSS", 1024, "MiB", "size", 64 * 1024),  # KiB: 64 MiB more over the projection
    "VmHWM": ("peak RSS (VmHWM)", 1024, "MiB", "size", 64 * 1024),
    "wal_bytes": ("catalog WAL", 2**20, "MiB", "size", 64 * 2**20),
    "catalog_bytes": ("catalog file", 2**20, "MiB", "size", 256 * 2**20),
    "job_rows": ("event_jobs rows", 1, "", "size", 100_000),
    "scan_rows": ("scans rows", 1, "", "size", 100_000),
    "journal_rows": ("journal rows (runs+steps)", 1, "", "size", 100_000),
    "queue_pending": ("queue depth", 1, "", "count", None),
}


def judge(key: str, first: list[float], last: list[float], slope: float, days: float) -> tuple[bool, str]:
    """Bounded or not, from the samples: bounded when the last third's median is no higher than
    the first third's largest sample (a leak of one per sweep or event passes that within a few
    sweeps; a request in flight at one sample does not); a size also when the slope of the
    second half (start-up's growth left out), carried over ``days``, stays within its allowance."""
    _label, div, unit, kind, allowance = FIGURES[key]
    level = statistics.median(last) <= max(first)
    if kind == "count":
        return level, "last third's median <= first third's max"
    projected = slope * 24 * days
    why = f"{projected / div:+,.0f}{unit} in {days:g} d, allowed {allowance / div:,.0f}"
    return level or projected <= allowance, ("no new level; " if level else "") + why


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--items", type=int, default=600, help="torrents in qBittorrent (default 600)")
    ap.add_argument("--files", type=int, default=6, help="files per torrent (default 6)")
    ap.add_argument("--sweep-interval", type=int, default=10, help="serve's sweep interval, seconds (default 10)")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between samples (default 5)")
    ap.add_argument("--events-per-s", type=float, default=2.0, help="events sent per second (default 2)")
    ap.add_argument("--change-every", type=float, default=15.0, help="seconds between world changes (default 15)")
    ap.add_argument("--project-days", type=float, default=90.0, help="horizon of the size verdicts (default 90)")
    ap.add_argument(
        "--keep-history",
        default=None,
        help="sweep.keep_history for serve (e.g. 60s, so its bound shows within the soak; default: not set,"
        " which also runs a checkout that has no such key, e.g. --tree of an older main)",
    )
    ap.add_argument("--base", default="/tmp")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    random.seed(9)

    work = workdir(args.base, "qbhook-bench-soak-")
    qbt = QbtInstance()
    proc = None
    try:
        stash, pool = work / "stash", work / "pool"
        data = stash / "data/media/torrents/seeding"
        library = stash / "data/media/movies"
        library.mkdir(parents=True)
        cfg_path = write_config(work / "config.yaml", work / "catalog.sqlite", stash, pool)
        items = make_items(data, args.items + 100, args.files)  # 100 spare ones, added during the soak
        qbt.start(work / "qbt")
        raw = qbt.client()
        raw.torrents_create_category(name="movies")
        raw.torrents_create_category(name="tv")
        load_qbt(raw, items[: args.items], data)
        wait_for(
            "qBittorrent added",
            lambda: sum(1 for t in raw.torrents_info() if str(t["content_path"]).startswith("/")),
            args.items,
        )
        import yaml

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        conf = yaml.safe_load(cfg_path.read_text())
        conf["qbittorrent"] = {"url": qbt.url, "username": qbt.username, "password": qbt.password}
        conf["server"] = {
            "listen": "127.0.0.1",
            "port": port,
            "sweep_interval": f"{args.sweep_interval}s",
            "token": TOKEN,
        }
        if args.keep_history:
            conf["sweep"] = {"keep_history": args.keep_history}
        cfg_path.write_text(yaml.safe_dump(conf))
        log = open(work / "serve.log", "wb")  # noqa: SIM115  (the child owns it for its lifetime)
        proc = subprocess.Popen(
            [sys.executable, "-m", "qbhook", "--config", str(cfg_path), "serve"], stdout=log, stderr=log, cwd="/"
        )
        if not wait_http(f"http://127.0.0.1:{port}/healthz", 60) and proc.poll() is not None:
            raise SystemExit(f"qbhook serve exited: {(work / 'serve.log').read_text()[-2000:]}")
        catalog = work / "catalog.sqlite"
        world = World(raw, data, library, [h for h, _ in items[: args.items]], list(items[args.items :]))
        sender = Sender(port, world)
        # The first full sweep (a new process re-plans everything) is start-up, not steady state.
        wait_for("first sweep", lambda: catalog_sample(catalog)["scan_rows"], 2, timeout=900)
        print(machine())
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_sample = next_change = t0
        samples: list[tuple[float, dict[str, float]]] = []
        while (now := time.monotonic()) < end:
            if proc.poll() is not None:
                raise SystemExit(f"qbhook serve exited ({proc.returncode}): {(work / 'serve.log').read_text()[-2000:]}")
            if now >= next_sample:
                s = {**proc_sample(proc.pid), **catalog_sample(catalog), **status_sample(cfg_path)}
                samples.append((now - t0, s))
                next_sample += args.every
            if now >= next_change:
                world.change(len(samples) + sum(world.done.values()))
                next_change += args.change_every
            sender.send()
            time.sleep(max(0.0, 1 / args.events_per_s - (time.monotonic() - now)))
        wall = time.monotonic() - t0
        sweeps = len({s["sweep_started"] for _, s in samples}) - 1  # seen once each: --every < the sweep interval
        print(
            f"`qbhook serve` soak: {wall / 60:.1f} min, {args.items} torrents x {args.files} files, sweep every "
            f"{args.sweep_interval} s: {sweeps:.0f} sweeps, {sum(sender.sent.values())} events accepted "
            f"({', '.join(f'{k} {v}' for k, v in sender.sent.items())}), {sender.refused} refused, world changes: "
            f"{', '.join(f'{k} {v}' for k, v in world.done.items())}; {len(samples)} samples, {args.every:g} s apart"
        )
        third = max(1, len(samples) // 3)
        rows, bounded = [], True
        for key, (label, div, unit, _kind, _allow) in FIGURES.items():
            pts = [(t, s[key]) for t, s in samples if key in s]
            if len(pts) < 3:
                continue
            ys = [y for _, y in pts]
            first, lastm = statistics.median(ys[:third]), statistics.median(ys[-third:])
            half = pts[len(pts) // 2 :]
            slope = slope_per_hour([t for t, _ in half], [y for _, y in half])
            ok, why = judge(key, ys[:third], ys[-third:], slope, args.project_days)
            bounded &= ok
            u = f" {unit}" if unit else ""
            rows.append(
                [
                    label,
                    f"{first / div:,.1f}{u}",
                    f"{lastm / div:,.1f}{u}",
                    f"{max(ys) / div:,.1f}{u}",
                    f"{slope / div:+,.2f}{u}/h",
                    f"{'bounded' if ok else 'GROWING'} ({why})",
                ]
            )
        zombies = max(s.get("zombies", 0) for _, s in samples)
        bounded &= zombies == 0
        rows.append(["zombie children (max)", "", "", f"{zombies:.0f}", "", "bounded" if zombies == 0 else "GROWING"])
        heads = ["figure", "first third (median)", "last third (median)", "max", "slope (2nd half)", "verdict"]
        print(table(heads, rows))
        print(f"verdict: serve {'stays bounded' if bounded else 'GROWS'} over this soak (computed from the rows above)")
        print("load average at the end: " + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1/5/15 min)")
    finally:
        if proc is not None:
            stop_serve(proc, timeout=120)
        qbt.stop()
        cleanup(work, args.keep)


if __name__ == "__main__":
    main()
