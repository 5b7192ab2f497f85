#!/usr/bin/env python3
"""Event intake: hook script wall time, and webhook intake under a loopback load.

Starts a real `qbhook serve` (waitress) on 127.0.0.1 with a throw-away catalog, then
1. runs hooks/qbt-hook.sh (with dash) N times, as qBittorrent would, and reports p50/p95 wall
   time per invocation; baseline: `curl` posting the same form once (the floor a shell hook pays);
2. fires M Radarr "Download" webhooks, each for a distinct torrent, from C client threads over
   keep-alive connections, and reports achieved rate and p50/p99 latency; then checks that every
   202-accepted event is in the queue exactly once (no loss, no duplicate).

    python bench/bench_intake.py [--hooks 50] [--requests 3000] [--concurrency 8]

Targets (issue 5): hook p50 < 50 ms; a few hundred requests/s with every accepted event queued once.
The server's worker will fail the jobs (no qBittorrent is configured to answer): that is fine
here, the point is intake.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def start_server(tmp: Path, port: int) -> subprocess.Popen:
    for d in ("stash/s", "pool/s"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    cfg = {
        "catalog": str(tmp / "catalog.sqlite"),
        "pools": {
            "stash": {"path": str(tmp / "stash"), "role": "primary"},
            "pool": {"path": str(tmp / "pool"), "role": "cold"},
        },
        "seeding_roots": {"stash": str(tmp / "stash/s"), "pool": str(tmp / "pool/s")},
        "qbittorrent": {"url": "http://127.0.0.1:1", "username": "admin", "password": "x", "timeout": 1},
        "server": {"listen": "127.0.0.1", "port": port, "token_env": "BENCH_TOKEN"},
    }
    (tmp / "config.yaml").write_text(json.dumps(cfg))
    from qbhook.sandbox.serve import start_serve

    return start_serve(tmp / "config.yaml", port, {"BENCH_TOKEN": TOKEN}, log=tmp / "serve.log")


def bench_hooks(tmp: Path, port: int, n: int) -> dict:
    hooks = tmp / "hooks"
    hooks.mkdir()
    shutil.copy(REPO / "hooks/qbt-hook.sh", hooks / "qbt-hook.sh")
    (hooks / "qbt-hook.conf").write_text(f"QBHOOK_URL=http://127.0.0.1:{port}\nQBHOOK_TOKEN={TOKEN}\n")
    sh = shutil.which("dash") or "sh"
    times, base = [], []
    for i in range(n):
        h = f"{i:040x}"
        args = [
            sh,
            str(hooks / "qbt-hook.sh"),
            "added",
            h,
            "-",
            h,
            f"Some Name {i} [x]",
            "movies",
            "a,b",
            f"/data/seeding/Some Name {i}",
            f"/data/seeding/Some Name {i}",
            "/data/seeding",
            "3",
            "123456",
        ]
        t0 = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-H",
                f"X-Qbhook-Token: {TOKEN}",
                "--data-urlencode",
                "event=added",
                "--data-urlencode",
                f"K={h}",
                f"http://127.0.0.1:{port}/hook/qbittorrent",
            ],
            check=True,
        )
        base.append(time.perf_counter() - t0)
    return {
        "n": n,
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": pct(times, 95) * 1000,
        "curl_p50_ms": statistics.median(base) * 1000,
    }


def bench_webhooks(port: int, total: int, conc: int) -> dict:
    lat: list[float] = []
    accepted: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            h = f"{i + 10**9:040X}"
            body = json.dumps(
                {
                    "eventType": "Download",
                    "instanceName": "Radarr",
                    "applicationUrl": "",
                    "movie": {"id": i, "title": f"M{i}", "folderPath": f"/movies/M{i}"},
                    "movieFile": {
                        "id": i,
                        "relativePath": "m.mkv",
                        "path": f"/movies/M{i}/m.mkv",
                        "sourcePath": f"/data/seeding/M{i}/m.mkv",
                    },
                    "downloadClient": "qBittorrent",
                    "downloadClientType": "qBittorrent",
                    "downloadId": h,
                }
            )
            t0 = time.perf_counter()
            try:
                conn.request(
                    "POST", "/webhook/radarr", body, {"Content-Type": "application/json", "X-Qbhook-Token": TOKEN}
                )
                r = conn.getresponse()
                r.read()
            except OSError as e:
                with lock:
                    errors.append(repr(e))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                if r.status == 202:
                    accepted.append(h.lower())
                else:
                    errors.append(str(r.status))

    threads = [threading.Thread(target=client) for _ in range(conc)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {
        "requests": total,
        "accepted": len(accepted),
        "errors": len(errors),
        "seconds": wall,
        "rate": total / wall,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "_accepted": accepted,
    }


def check_exactly_once(catalog: Path, accepted: list[str]) -> tuple[int, int, int]:
    conn = sqlite3.connect(catalog)
    seen: dict[str, int] = {}
    for (hashes,) in conn.execute("SELECT hashes FROM event_jobs"):
        for h in json.loads(hashes):
            seen[h] = seen.get(h, 0) + 1
    missing = sum(1 for h in accepted if h not in seen)
    dup = sum(1 for h in accepted if seen.get(h, 0) > 1)
    return len(accepted), missing, dup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hooks", type=int, default=50)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from qbhook.sandbox.qbt import free_port

    tmp = Path(tempfile.mkdtemp(prefix="qbhook-bench-intake-"))
    port = free_port()
    proc = start_server(tmp, port)
    try:
        hk = bench_hooks(tmp, port, a.hooks)
        wh = bench_webhooks(port, a.requests, a.concurrency)
    finally:
        from qbhook.sandbox.serve import stop_serve

        stop_serve(proc, timeout=60)
    n, missing, dup = check_exactly_once(tmp / "catalog.sqlite", wh.pop("_accepted"))
    print(f"{'what':44} {'value':>10}")
    print(f"{'hook script p50 (ms), dash + curl':44} {hk['p50_ms']:10.1f}")
    print(f"{'hook script p95 (ms)':44} {hk['p95_ms']:10.1f}")
    print(f"{'baseline: one bare curl POST p50 (ms)':44} {hk['curl_p50_ms']:10.1f}")
    print(f"{'ratio hook / bare curl':44} {hk['p50_ms'] / hk['curl_p50_ms']:10.2f}")
    print(f"{'webhooks sent':44} {wh['requests']:10d}")
    print(f"{f'achieved rate (req/s, {a.concurrency} client threads)':44} {wh['rate']:10.0f}")
    print(f"{'latency p50 (ms)':44} {wh['p50_ms']:10.1f}")
    print(f"{'latency p99 (ms)':44} {wh['p99_ms']:10.1f}")
    print(f"{'accepted (202) / errors':44} {wh['accepted']:>5d} / {wh['errors']:<3d}")
    print(f"{'accepted but not queued / queued twice':44} {missing:>5d} / {dup:<3d}")
    ok = hk["p50_ms"] < 50 and wh["rate"] >= 200 and missing == 0 and dup == 0 and wh["errors"] == 0
    print(f"targets (hook p50 < 50 ms; >= 200 req/s; every accepted event queued once): {'MET' if ok else 'MISSED'}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
