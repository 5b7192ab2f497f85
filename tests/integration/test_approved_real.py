"""Approved plans on the real bed: `qbhook plan --save` then `qbhook apply --plan FILE`, real
zfs-fuse pools, real qbittorrent-nox, the CLI in a subprocess."""

from __future__ import annotations

import json
import os

import pytest

from qbhook.sandbox.scenario import MOVIES
from tests.integration.crash_helpers import (
    journal_rows,
    qbhook,
    qbhook_json,
    wait_seeding_at,
)
from tests.integration.test_apply_real import make_bed

pytestmark = pytest.mark.integration


@pytest.fixture
def bed(pools, qbt, qbt_client, tmp_path):
    b = make_bed(pools, qbt, qbt_client, tmp_path)
    b.sc.seed_only_with_cross_seeds(qbt_client)  # group 1: three siblings, one copy
    b.sc.already_on_pool(qbt_client)  # group 2: demotes onto identical pool data
    return b


def _saved(bed, tmp_path) -> tuple[dict, dict[str, str]]:
    f = tmp_path / "approved.json"
    r = qbhook(bed.cfg, "plan", "--save", str(f))
    assert r.returncode == 10, r.stdout + r.stderr
    doc = json.loads(f.read_text())
    gids = {}
    for case in ("siblings", "already_on_pool"):
        h = bed.sc.hashes[case][0]
        g = next(g for g in doc["groups"] if h in g["torrents"])
        assert g["action"] == "demote", g
        gids[case] = g["group_id"]
    return doc, gids


def _journaled_steps(bed, run_id: int, gid: str) -> list[dict]:
    rows = journal_rows(
        bed.catalog, "SELECT kind, args FROM steps WHERE run=? AND group_id=? ORDER BY seq", (run_id, gid)
    )
    out = []
    for kind, args in rows:
        a = {k: v for k, v in json.loads(args).items() if not k.startswith("_")}  # executor's own notes
        out.append({"kind": kind, "args": a})
    return out


def test_saved_plan_applies_exactly_its_steps(bed, tmp_path):
    doc, gids = _saved(bed, tmp_path)
    f = tmp_path / "approved.json"

    rc, dry = qbhook_json(bed.cfg, "apply", "--plan", str(f))  # dry run: shows, changes nothing
    assert rc == 0 and dry["dry_run"] and dry["stale"] == {} and sorted(dry["valid"]) == sorted(gids.values())
    assert journal_rows(bed.catalog, "SELECT id FROM runs") == []

    rc, out = qbhook_json(bed.cfg, "apply", "--plan", str(f), "--yes")
    assert rc == 0 and out["plan_id"] == doc["plan_id"] and out["stale"] == {}, out
    assert sorted(out["groups_done"]) == sorted(gids.values()) and out["groups_failed"] == {}
    for g in doc["groups"]:
        if g["group_id"] in gids.values():
            assert _journaled_steps(bed, out["run_id"], g["group_id"]) == g["steps"]
    sc = bed.sc
    wait_seeding_at(
        bed.client,
        sc.hashes["siblings"] + sc.hashes["already_on_pool"][:1],
        lambda h: os.path.join(sc.pool_seed, os.path.relpath(_old_save(doc, h), sc.stash_seed)),
    )
    # applying it again: every group's facts moved (it was applied), so all are refused, nothing runs
    rc, again = qbhook_json(bed.cfg, "apply", "--plan", str(f), "--yes", ok=(6,))
    assert set(again["stale"]) == set(gids.values()) and again["groups_done"] == []


def _old_save(doc: dict, h: str) -> str:
    for g in doc["groups"]:
        for s in g["steps"]:
            if s["kind"] == "relocate" and s["args"]["torrent"] == h:
                return s["args"]["from_path"]
    raise AssertionError(h)


def test_group_whose_facts_changed_is_refused_and_the_other_still_applies(bed, tmp_path):
    _doc, gids = _saved(bed, tmp_path)
    f = tmp_path / "approved.json"
    sc = bed.sc
    stash_file = sc.stash_seed / "movies/Doc.B.2019/doc.b.mkv"
    lib = sc.stash / MOVIES / "Doc B (2019)" / "Doc B (2019).mkv"
    lib.parent.mkdir(parents=True, exist_ok=True)
    os.link(stash_file, lib)  # Radarr imports it after the review
    ino = os.stat(stash_file).st_ino

    _rc, dry = qbhook_json(bed.cfg, "apply", "--plan", str(f), ok=(6,))
    assert list(dry["stale"]) == [gids["already_on_pool"]] and dry["valid"] == [gids["siblings"]]
    r = qbhook(bed.cfg, "apply", "--plan", str(f), "--yes")
    assert r.returncode == 6, r.stdout + r.stderr
    stale_lines = [x for x in r.stdout.splitlines() if x.startswith("STALE")]
    assert len(stale_lines) == 1 and gids["already_on_pool"] in stale_lines[0]
    assert "decision changed: now STAY" in stale_lines[0] and "Doc B (2019).mkv" in stale_lines[0]
    assert any(x.startswith("DONE") and gids["siblings"] in x for x in r.stdout.splitlines()), r.stdout
    # the refused group is untouched: same inode, both links, torrent where it was
    st = os.stat(stash_file)
    assert st.st_ino == ino and st.st_nlink == 2 and os.stat(lib).st_ino == ino
    wait_seeding_at(bed.client, sc.hashes["already_on_pool"][:1], lambda _h: sc.stash_seed / "movies")
    # the other group moved
    wait_seeding_at(bed.client, sc.hashes["siblings"][:1], lambda _h: sc.pool_seed / "tv")
