#!/usr/bin/env python3
"""Moving data: copy throughput vs `cp`, bytes written per demotion, view building for 10,000 files.

Needs root (mounts tmpfs pools, starts a real qbittorrent-nox for part 2).

1. copy: qbhook's verified copy (`fsops.copy_verified`: staging file, BLAKE3 of the bytes
   written, fsync, link into place) of one large page-cached file from one filesystem to
   another, vs `cp` of the same file; median of 3 each. Target >= 0.9x cp's throughput.
2. bytes written per demotion, end to end (`qbhook apply --yes` with a real qBittorrent):
   a 3-torrent sibling group with no copy on the cold pool (must be exactly 1x the payload)
   and a payload already present there (must be 0x). Measured as the cold pool's used-bytes
   delta (statvfs), next to the run's own `bytes_copied`.
3. views: hardlinking a 10,000-file group into its view with `fsops.link_into` vs `cp -al`
   of the same tree (both on one filesystem).

fsops walks every path from its configured root through O_NOFOLLOW directory descriptors
(issue 9); parts 1 and 3 measure what that costs: run them before and after a change with
`--parts copy,views` on the same machine in one session.

    sudo python bench/bench_copy.py [--size-mib 2048] [--payload-mib 256] [--files 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import blake3  # noqa: E402

from qbhook.move import fsops  # noqa: E402
from qbhook.sandbox.qbt import QbtInstance  # noqa: E402
from qbhook.sandbox.scenario import NOHL, Scenario  # noqa: E402
from qbhook.sandbox.torrents import add_and_wait_seeding, make_torrent, write_payload  # noqa: E402
from qbhook.sandbox.zfs import create_pools, destroy_pools  # noqa: E402

MiB = 1 << 20


def used(path: Path) -> int:
    s = os.statvfs(path)
    return (s.f_blocks - s.f_bfree) * s.f_frsize


def drop(path: Path) -> None:
    if path.exists():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def part_copy(src_dir: Path, dst_dir: Path, size_mib: int) -> dict:
    src = src_dir / "big.bin"
    with open(src, "wb") as f:
        chunk = os.urandom(8 * MiB)
        for _ in range(size_mib // 8):
            f.write(chunk)
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(src, "rb") as f:
        while b := f.read(8 * MiB):
            h.update(b)
    digest, size = h.hexdigest(), src.stat().st_size
    t_cp, t_qb = [], []
    for _ in range(3):
        dst = dst_dir / "cp.bin"
        t0 = time.perf_counter()
        subprocess.run(["cp", str(src), str(dst)], check=True)
        subprocess.run(["sync", "-f", str(dst)], check=True)  # qbhook fsyncs; make cp pay the same
        t_cp.append(time.perf_counter() - t0)
        drop(dst)
        dst = dst_dir / "qb.bin"
        t0 = time.perf_counter()
        fsops.copy_verified(str(src), str(dst), digest, size, roots=(src_dir, dst_dir))
        t_qb.append(time.perf_counter() - t0)
        drop(dst)
    drop(src)
    cp_s, qb_s = statistics.median(t_cp), statistics.median(t_qb)
    return {
        "size_mib": size_mib,
        "cp_s": cp_s,
        "qbhook_s": qb_s,
        "cp_mibs": size_mib / cp_s,
        "qbhook_mibs": size_mib / qb_s,
        "ratio": cp_s / qb_s,
    }


def part_views(root: Path, n: int) -> dict:
    src = root / "src"
    for i in range(n):
        p = src / f"d{i // 500}" / f"f{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"%d" % i)
    t0 = time.perf_counter()
    subprocess.run(["cp", "-al", str(src), str(root / "cpal")], check=True)
    t_cp = time.perf_counter() - t0
    files = [p for p in src.rglob("*.bin")]
    t0 = time.perf_counter()
    for p in files:
        fsops.link_into(str(p), str(root / "view" / p.relative_to(src)), roots=(root,))
    t_qb = time.perf_counter() - t0
    return {"files": n, "cp_al_s": t_cp, "qbhook_s": t_qb, "ratio": t_qb / t_cp}


def part_demotion(base: Path, payload_mib: int) -> list[dict]:
    pools = create_pools(base / "bed", size=f"{max(1024, payload_mib * 6)}M", kind="tmpfs")
    qbt = QbtInstance().start(base / "qbt")
    out = []
    try:
        client = qbt.client()
        sc = Scenario(stash=pools["stash"], pool=pools["pool"], torrent_dir=base / "torrents")
        for d in (sc.stash_seed, sc.pool_seed):
            d.mkdir(parents=True, exist_ok=True)
        half = payload_mib // 2 * MiB
        # A: three siblings, nothing on the cold pool
        save = sc.stash_seed / "tv"
        files = {"Show/e1.mkv": half, "Show/e2.mkv": half}
        write_payload(save, files, seed=11)
        h_show = add_and_wait_seeding(
            client, make_torrent(save / "Show", base / "t/a.torrent"), save, tags=[NOHL], timeout=600
        )
        for k, root in enumerate(("Show.REPACK", "Show Season 1")):
            xs = sc.stash_seed / "cross-seed" / f"T{k}"
            for rel in files:
                (xs / root).mkdir(parents=True, exist_ok=True)
                os.link(save / rel, xs / root / Path(rel).name)
            add_and_wait_seeding(
                client, make_torrent(xs / root, base / f"t/x{k}.torrent"), xs, tags=[NOHL], timeout=600
            )
        # B: a payload already on the cold pool under another name
        mv = sc.stash_seed / "movies"
        write_payload(mv, {"Film/film.mkv": payload_mib * MiB}, seed=12)
        h_film = add_and_wait_seeding(
            client, make_torrent(mv / "Film", base / "t/b.torrent"), mv, tags=[NOHL], timeout=600
        )
        other = sc.pool_seed / "movies/Film.PROPER"
        other.mkdir(parents=True)
        shutil.copy2(mv / "Film/film.mkv", other / "film.mkv")
        cfg = base / "config.yaml"
        cfg.write_text(json.dumps(sc.config_dict(base / "catalog.sqlite", qbt.url)))
        for case, h in (("3 siblings, no donor", h_show), ("payload already on pool", h_film)):
            before = used(sc.pool)
            r = subprocess.run(
                [sys.executable, "-m", "qbhook", "--config", str(cfg), "--json", "apply", "--yes", "--hash", h],
                capture_output=True,
                text=True,
            )
            summary = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
            delta = used(sc.pool) - before
            payload = payload_mib * MiB
            out.append(
                {
                    "case": case,
                    "payload": payload,
                    "pool_used_delta": delta,
                    "bytes_copied": (summary.get("counters") or summary).get("bytes_copied"),
                    "ratio": delta / payload,
                    "exit": r.returncode,
                }
            )
    finally:
        qbt.stop()
        destroy_pools(pools)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--payload-mib", type=int, default=256)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument(
        "--parts",
        default="copy,demotion,views",
        help="comma-separated subset of copy,demotion,views (before/after guard comparisons need only copy,views)",
    )
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    if os.geteuid() != 0:
        raise SystemExit("run as root (mounts tmpfs pools)")
    base = Path(tempfile.mkdtemp(prefix="qbhook-bench-copy-"))
    pools = create_pools(base / "cp", size=f"{a.size_mib * 2 + 512}M", kind="tmpfs")
    c = v = d = None
    try:
        if "copy" in parts:
            c = part_copy(pools["stash"], pools["pool"], a.size_mib)
        if "views" in parts:
            v = part_views(pools["stash"], a.files)
    finally:
        destroy_pools(pools)
    if "demotion" in parts:
        d = part_demotion(base / "demote", a.payload_mib)
    shutil.rmtree(base, ignore_errors=True)
    if c:
        print(f"1. copy {c['size_mib']} MiB across filesystems (tmpfs -> tmpfs, page cache), median of 3")
        print(f"   cp + sync          {c['cp_s']:7.2f} s  {c['cp_mibs']:8.0f} MiB/s")
        print(
            f"   qbhook copy        {c['qbhook_s']:7.2f} s  {c['qbhook_mibs']:8.0f} MiB/s  "
            "(staged, BLAKE3-verified, fsynced)"
        )
        print(
            f"   throughput ratio qbhook/cp: {c['ratio']:.2f}  "
            f"(target >= 0.9: {'MET' if c['ratio'] >= 0.9 else 'MISSED'})"
        )
    if d:
        print("2. bytes written on the cold pool per demotion (real qBittorrent, `qbhook apply --yes`)")
        for r in d:
            print(
                f"   {r['case']:26} payload {r['payload'] / MiB:6.0f} MiB, pool grew "
                f"{r['pool_used_delta'] / MiB:7.1f} MiB (x{r['ratio']:.3f}), bytes_copied {r['bytes_copied']}, "
                f"exit {r['exit']}"
            )
    if v:
        print(f"3. build a {v['files']:,}-file view by hardlinks")
        print(f"   cp -al             {v['cp_al_s']:7.2f} s")
        print(
            f"   qbhook link_into   {v['qbhook_s']:7.2f} s  (ratio {v['ratio']:.2f}x cp -al; per file checks included)"
        )


if __name__ == "__main__":
    main()
