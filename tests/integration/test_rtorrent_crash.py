"""SIGKILL crash matrix for rTorrent's relocation steps: `qbhook apply --yes` / `qbhook resume`
as subprocesses of the real CLI, configured with `clients: [{type: rtorrent, scgi: ...}]`, on real
zfs-fuse pools and the real rtorrent 0.9.8.

tests/integration/test_apply_real.py runs the full matrix (every step index) for qBittorrent.
What rTorrent changes is the relocation (one stop/close/directory_base.set/check_hash multicall,
the item left stopped until qbhook starts it) and what the executor observes of it, so the kill
points here are the relocation-related ones:

* demote, a 2-item sibling group (steps: copy, link, verify_view x2, relocate x2, verify_group,
  tag x2, delete x2, prune_dirs x2):
  - first relocate (seq 4): ``before`` (views verified, nothing sent to rTorrent), ``after_intend``
    (journaled, not sent), ``poll`` (sent: rTorrent closed, re-pointed and is checking),
    ``after_act`` (checked, started, not yet journaled done);
  - second relocate (seq 5): ``after_intend``, ``poll``, ``after_act`` (one item moved, the other
    moving);
  - verify_group (seq 6): ``after_intend`` (both moved, nothing deleted yet);
  - the first tag (seq 7): ``after_intend`` (rTorrent writes the tag to ``d.custom`` and saves
    its session in the same call);
* promote onto an *arr library copy (one item): relocate ``after_intend``, ``poll`` and ``after_act``.

Each is resumed and must end exactly like an uninterrupted run of the same world (items,
places, progress, seeding; every file on both pools by pool, link names, size and BLAKE3), with
no staging/holding leftovers and no content lost at any moment. Twelve kills plus two baselines,
and one mixed-group kill: about 2.5 minutes on the 2-core test machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from qbhook.clients.rtorrent import RtorrentClient
from qbhook.sandbox.rtorrent import load_torrent
from qbhook.sandbox.torrents import (
    SEEDING_STATES,
    infohash,
    make_torrent,
    write_payload,
)
from qbhook.sandbox.zfs import create_pools, destroy_pools
from tests.integration.crash_helpers import (
    DEMOTE_PAIR_STEPS,
    PROMOTE_STEPS,
    MiB,
    contents_on_disk,
    journal_rows,
    leftovers,
    qbhook,
    qbhook_json,
    tree_state,
)

pytestmark = pytest.mark.integration

SEED = "data/media/torrents/seeding"


@dataclass
class RtBed:
    cfg: Path
    catalog: Path
    roots: dict[str, Path]
    rt: RtorrentClient
    tmp: Path

    @property
    def stash_seed(self) -> Path:
        return self.roots["stash"] / SEED

    @property
    def pool_seed(self) -> Path:
        return self.roots["pool"] / SEED


def make_rt_bed(pools, rtorrent, tmp: Path) -> RtBed:
    roots = {"stash": pools["stash"], "pool": pools["pool"]}
    for r in roots.values():
        (r / SEED).mkdir(parents=True, exist_ok=True)
    catalog = tmp / "catalog.sqlite"
    cfg = tmp / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "catalog": str(catalog),
                "pools": {
                    "stash": {"path": str(roots["stash"]), "role": "primary"},
                    "pool": {"path": str(roots["pool"]), "role": "cold"},
                },
                "seeding_roots": {n: str(r / SEED) for n, r in roots.items()},
                # no `qbittorrent:` key at all: the CLI builds its one client from `clients:`
                "clients": [{"type": "rtorrent", "name": "rt", "scgi": rtorrent.address, "timeout": 30}],
                "scan": {"settle_seconds": 0},
                "policy": {"demote_require_tag": "~noHL"},
            }
        )
    )
    return RtBed(cfg, catalog, roots, RtorrentClient("rt", rtorrent.address, retries=3), tmp)


def _load(bed: RtBed, rtorrent, content: Path, save: Path, name: str, tags=("~noHL",)) -> str:
    data = make_torrent(content, bed.tmp / f"{name}.torrent", piece_size=256 * 1024)
    load_torrent(rtorrent.rpc(), data, str(save))
    h = infohash(data)
    wait_settled(bed.rt, [h])
    if tags:
        bed.rt.add_tags(h, list(tags))
    return h


def build_pair(bed: RtBed, rtorrent) -> list[str]:
    """A one-episode pack and its cross-seed under another root name, both in rTorrent, seeding from stash."""
    save = bed.stash_seed / "tv"
    write_payload(save, {"Pair.S01/Pair.S01E01.mkv": 2 * MiB}, seed=31)
    xs = bed.stash_seed / "cross-seed" / "TrackerC"
    dst = xs / "Pair S01 (WEB)" / "Pair.S01E01.mkv"
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.link(save / "Pair.S01/Pair.S01E01.mkv", dst)
    return [
        _load(bed, rtorrent, save / "Pair.S01", save, "pair"),
        _load(bed, rtorrent, xs / "Pair S01 (WEB)", xs, "pair-xs"),
    ]


def build_promote(bed: RtBed, rtorrent) -> list[str]:
    """Seeded from the cold pool; an *arr copied the file into the stash library."""
    save = bed.pool_seed / "movies"
    write_payload(save, {"Film.R.2022/film.r.mkv": 2 * MiB}, seed=32)
    lib = bed.roots["stash"] / "data/media/movies/Film R (2022)/Film R (2022).mkv"
    lib.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(save / "Film.R.2022/film.r.mkv", lib)
    return [_load(bed, rtorrent, save / "Film.R.2022", save, "film", tags=())]


CASES = {
    "demote": (build_pair, DEMOTE_PAIR_STEPS),
    "promote": (build_promote, PROMOTE_STEPS),
}

# (case, step index) -> the kill points there (see the module docstring for why these)
POINTS = {
    ("demote", 4): ("before", "after_intend", "poll", "after_act"),
    ("demote", 5): ("after_intend", "poll", "after_act"),
    ("demote", 6): ("after_intend",),
    ("demote", 7): ("after_intend",),
    ("promote", 2): ("after_intend", "poll", "after_act"),
}


def _crash_points():
    for (kind, seq), points in POINTS.items():
        for point in points:
            yield pytest.param(kind, seq, point, id=f"{kind}-{seq}-{CASES[kind][1][seq]}-{point}")


# --------------------------------------------------------------------------- reading rTorrent


def wait_settled(rt: RtorrentClient, hashes, timeout: float = 60) -> dict:
    """Every item complete and seeding (started, not checking) on 3 polls in a row."""
    deadline = time.monotonic() + timeout
    streak, last = 0, {}
    while time.monotonic() < deadline:
        last = {t.hash: t for t in rt.torrents(hashes=hashes)}
        good = len(last) == len(hashes) and all(
            t.progress == 1 and t.state in SEEDING_STATES and not t.is_checking for t in last.values()
        )
        streak = streak + 1 if good else 0
        if streak >= 3:
            return last
        time.sleep(0.15)
    raise AssertionError(f"rTorrent items not settled: {[(t.hash, t.state, t.progress) for t in last.values()]}")


def torrents_state(rt: RtorrentClient, hashes, roots: dict[str, Path]) -> dict[str, tuple]:
    """hash -> (pool, save path relative to it, progress, seeding?, qbhook tags)."""
    out = {}
    for t in rt.torrents(hashes=hashes):
        sp = os.path.normpath(t.save_path)
        where = next(
            ((n, os.path.relpath(sp, r)) for n, r in roots.items() if sp == str(r) or sp.startswith(str(r) + "/")),
            (None, sp),
        )
        out[t.hash] = (*where, t.progress, t.state in SEEDING_STATES, tuple(sorted(t.tags)))
    return out


def end_state(bed: RtBed, hashes) -> tuple:
    wait_settled(bed.rt, hashes)
    return torrents_state(bed.rt, hashes, bed.roots), tree_state(bed.roots)


def _erase(rtorrent, hashes) -> None:
    rpc = rtorrent.rpc()
    for h in hashes:
        rpc.call("d.erase", h.upper())


_BASELINE: dict[str, tuple] = {}


def baseline(kind: str, rtorrent, tmp_path_factory, zfs_available) -> tuple:
    """(plan step kinds, end state) of an uninterrupted `apply --yes` on pools of its own."""
    if kind in _BASELINE:
        return _BASELINE[kind]
    base = tmp_path_factory.mktemp(f"rt-baseline-{kind}")
    pools = create_pools(base / "bed", nested={"stash": "data/media/library"}, kind="zfs" if zfs_available else "tmpfs")
    hashes: list[str] = []
    try:
        b = make_rt_bed(pools, rtorrent, base)
        hashes = CASES[kind][0](b, rtorrent)
        _rc, plan = qbhook_json(b.cfg, "plan", ok=(10,))
        group = next(g for g in plan["groups"] if hashes[0] in g["torrents"])
        kinds = [s["kind"] for s in group["steps"]]
        _rc, out = qbhook_json(b.cfg, "apply", "--yes")
        assert out["groups_failed"] == {} and len(out["groups_done"]) == 1, out
        _BASELINE[kind] = (kinds, end_state(b, hashes))
    finally:
        if hashes:  # same payloads, same info hashes: the test's own world loads them again
            _erase(rtorrent, hashes)
        destroy_pools(pools)
    return _BASELINE[kind]


@pytest.mark.slow
@pytest.mark.parametrize("kind,seq,point", list(_crash_points()))
def test_rtorrent_sigkill_at_relocation_step_then_resume_ends_like_an_uninterrupted_run(
    rtorrent, rt_client, pools, tmp_path, tmp_path_factory, zfs_available, kind, seq, point
):
    kinds, expected = baseline(kind, rtorrent, tmp_path_factory, zfs_available)
    assert kinds == CASES[kind][1], f"the planner's steps changed: update CASES and POINTS ({kinds})"
    bed = make_rt_bed(pools, rtorrent, tmp_path)
    hashes = CASES[kind][0](bed, rtorrent)
    contents_before = contents_on_disk(*bed.roots.values())

    r = qbhook(bed.cfg, "apply", "--yes", crash_at=f"{seq}:{point}")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr)
    runs = journal_rows(bed.catalog, "SELECT id, status FROM runs")
    assert len(runs) == 1 and runs[0][1] == "running"
    run_id = runs[0][0]
    rows = journal_rows(bed.catalog, "SELECT seq, kind, status FROM steps WHERE run=? ORDER BY seq", (run_id,))
    if point == "before":  # killed before the step's intent: the journal ends at the previous step
        assert [x[2] for x in rows] == ["done"] * seq and [x[0] for x in rows] == list(range(seq))
    else:  # intent written, the act may or may not have happened: the ambiguous state
        assert [x[0] for x in rows] == list(range(seq + 1))
        assert [x[2] for x in rows] == ["done"] * seq + ["intended"] and rows[-1][1] == kinds[seq]
    # nothing deleted by the kill, whatever rTorrent was doing
    assert contents_on_disk(*bed.roots.values()) >= contents_before

    _rc, res = qbhook_json(bed.cfg, "resume")
    assert [(s["run_id"], s["status"]) for s in res["runs"]] == [(run_id, "done")], res
    _rc, again = qbhook_json(bed.cfg, "apply", "--yes")
    assert again["run_id"] is None, again  # nothing left to do

    assert end_state(bed, hashes) == expected
    assert contents_on_disk(*bed.roots.values()) >= contents_before
    assert leftovers(*bed.roots.values()) == []
    _rc, hist = qbhook_json(bed.cfg, "history", "--run", str(run_id))
    assert hist["run"]["status"] == "done"
    assert [s["status"] for s in hist["steps"]] == ["done"] * len(kinds)
    target = bed.roots["pool" if kind == "demote" else "stash"]
    assert all(s["result"]["save_path"].startswith(str(target)) for s in hist["steps"] if s["kind"] == "relocate")


# --------------------------------------------------------------------------- a mixed group, through the CLI


@pytest.mark.slow
def test_mixed_group_sigkill_while_rtorrent_relocates_then_resume_demotes_both_clients(
    rtorrent, rt_client, qbt, qbt_client, pools, tmp_path
):
    """The sandbox demo's two rTorrent cases (qbhook.sandbox.scenario.rtorrent_cases) through the real
    CLI configured with `qbittorrent:` and `clients:` side by side: qbhook is SIGKILLed while
    rTorrent's item of the mixed group is checking at its new place (qBittorrent's has moved
    already); `resume` finishes the group, and the rTorrent-only group demotes after it."""
    from qbhook.sandbox.scenario import Scenario

    sc = Scenario(stash=pools["stash"], pool=pools["pool"], torrent_dir=tmp_path / "torrents")
    for d in (sc.stash_seed, sc.pool_seed, sc.torrent_dir):
        d.mkdir(parents=True, exist_ok=True)
    sc.rtorrent_cases(qbt_client, rtorrent)
    catalog = tmp_path / "catalog.sqlite"
    cfg = tmp_path / "config.yaml"
    data = sc.config_dict(catalog, qbt.url)
    data["clients"] = [{"type": "rtorrent", "name": "rt", "scgi": rtorrent.address}]
    cfg.write_text(yaml.safe_dump(data))
    roots = {"stash": sc.stash, "pool": sc.pool}
    contents_before = contents_on_disk(*roots.values())
    mixed_qbt, mixed_rt = sc.hashes["mixed"]
    (rt_only,) = sc.hashes["rt_only"]

    _rc, plan = qbhook_json(cfg, "plan", ok=(10,))
    group = next(g for g in plan["groups"] if mixed_qbt in g["torrents"])
    assert group["action"] == "demote" and sorted(group["torrents"]) == sorted([mixed_qbt, mixed_rt])
    relocs = [(i, s["args"]["instance"]) for i, s in enumerate(group["steps"]) if s["kind"] == "relocate"]
    assert [inst for _i, inst in relocs] == ["default", "rt"], relocs
    seq = relocs[1][0]

    r = qbhook(cfg, "apply", "--yes", "--hash", mixed_rt, crash_at=f"{seq}:poll")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr)
    assert os.path.normpath(qbt_client.torrents_info(torrent_hashes=mixed_qbt)[0]["save_path"]).startswith(
        str(sc.pool)
    )  # qBittorrent's item had moved already
    assert contents_on_disk(*roots.values()) >= contents_before

    _rc, res = qbhook_json(cfg, "resume")
    assert [s["status"] for s in res["runs"]] == ["done"], res
    _rc, rest = qbhook_json(cfg, "apply", "--yes")  # the rTorrent-only group
    assert rest["groups_failed"] == {} and len(rest["groups_done"]) == 1, rest
    _rc, again = qbhook_json(cfg, "apply", "--yes")
    assert again["run_id"] is None, again

    rt_items = wait_settled(rt_client, [mixed_rt, rt_only])
    qb = {t["hash"]: t for t in qbt_client.torrents_info(torrent_hashes=mixed_qbt)}
    assert qb[mixed_qbt]["progress"] == 1 and qb[mixed_qbt]["state"] in SEEDING_STATES
    assert os.path.normpath(qb[mixed_qbt]["save_path"]) == str(sc.pool_seed / "tv")
    assert rt_items[mixed_rt].save_path == str(sc.pool_seed / "cross-seed" / "TrackerR")
    assert rt_items[rt_only].save_path == str(sc.pool_seed / "movies")
    assert all("qbhook-relocated" in t.tags for t in rt_items.values())
    # one physical copy per payload, all on the cold pool; nothing left on stash's seeding root
    a = os.stat(sc.pool_seed / "tv/Mixed.S02.720p/Mixed.S02E01.mkv")
    b = os.stat(sc.pool_seed / "cross-seed/TrackerR/Mixed S02 (WEB)/Mixed.S02E01.mkv")
    assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)
    assert not any(p.is_file() for p in sc.stash_seed.rglob("*"))
    assert contents_on_disk(*roots.values()) >= contents_before
    assert leftovers(*roots.values()) == []
