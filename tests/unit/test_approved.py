"""Approved plans: the saved file, its checks, and per-group re-validation against fresh facts."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from qbhook.cli import main
from qbhook.config import PolicyConfig
from qbhook.decide import approved
from qbhook.decide.planner import make_plan
from qbhook.errors import ExitCode, PlanFileError
from qbhook.move import leftovers
from qbhook.move.run import apply_saved
from tests.unit.world import LIB, P, S, World

POLICY = PolicyConfig()
POOLS = {"stash": S, "pool": P}
A, B = "a" * 40, "b" * 40


def two_groups() -> World:
    w = World()
    w.payload(S + "/movies", {"Alpha/alpha.mkv": "AL"})
    w.payload(S + "/tv", {"Beta.S01/e1.mkv": "B1", "Beta.S01/e2.mkv": "B2"})
    w.torrent(A, S + "/movies", ["Alpha/alpha.mkv"])
    w.torrent(B, S + "/tv", ["Beta.S01/e1.mkv", "Beta.S01/e2.mkv"])
    return w


def saved_from(w: World) -> tuple[dict, approved.SavedPlan]:
    snap = w.snapshot()
    doc = approved.document(make_plan(snap, POLICY), snap, POOLS)
    return doc, approved.parse(json.loads(json.dumps(doc)), POOLS)


def verdicts(saved: approved.SavedPlan, w: World) -> dict[str, approved.Verdict]:
    snap = w.snapshot()
    by_hash = {}
    for v in approved.revalidate(saved, snap, make_plan(snap, POLICY)):
        g = next(g for g in saved.plan.groups if g.group_id == v.group_id)
        by_hash[g.torrents[0]] = v
    return by_hash


def test_saved_plan_round_trips_and_holds_while_nothing_changed():
    w = two_groups()
    doc, saved = saved_from(w)
    assert doc["format"] == "qbhook-plan" and doc["version"] == 1 and len(doc["plan_id"]) == 64
    assert [g.action for g in saved.plan.groups] == ["demote", "demote"]
    assert all(len(fp) == 64 for fp in saved.fingerprints.values())
    v = verdicts(saved, w)
    assert v[A].ok and v[B].ok, v


def test_plan_id_is_a_content_hash():
    doc1, _ = saved_from(two_groups())
    doc2, _ = saved_from(two_groups())
    assert doc1["plan_id"] == doc2["plan_id"]
    w = two_groups()
    w.free["pool"] -= 1  # free space churns and is left out: the id stays
    doc3, _ = saved_from(w)
    assert doc3["plan_id"] == doc1["plan_id"]
    w.link(S + "/movies/Alpha/alpha.mkv", LIB + "/Alpha (2020).mkv")
    doc4, _ = saved_from(w)
    assert doc4["plan_id"] != doc1["plan_id"]


def test_library_link_added_refuses_that_group_only():
    w = two_groups()
    _doc, saved = saved_from(w)
    w.link(S + "/movies/Alpha/alpha.mkv", LIB + "/Alpha (2020)/Alpha (2020).mkv")  # an *arr import
    v = verdicts(saved, w)
    assert not v[A].ok and "decision changed: now STAY" in v[A].reason and "Alpha (2020).mkv" in v[A].reason
    assert v[B].ok


def test_a_stray_link_inside_the_seeding_root_makes_the_group_stale():
    # The link count the deletes rest on moved; and a link no torrent lists now blocks the move
    # (it would keep the inode: the move freed nothing, R44).
    w = two_groups()
    _doc, saved = saved_from(w)
    w.link(S + "/movies/Alpha/alpha.mkv", S + "/stray/alpha.mkv")
    after_snap = w.snapshot()
    g_a = next(g for g in saved.plan.groups if A in g.torrents)
    assert make_plan(after_snap, POLICY).groups[0].action == "blocked"
    assert approved.fingerprint(after_snap, g_a) != saved.fingerprints[g_a.group_id]
    v = verdicts(saved, w)
    assert not v[A].ok and v[B].ok


def test_content_replaced_with_same_size_is_stale():
    w = two_groups()
    _doc, saved = saved_from(w)
    w.inodes[w.paths[S + "/tv/Beta.S01/e2.mkv"]]["content"] = "XX"  # rewritten in place
    v = verdicts(saved, w)
    assert v[A].ok and not v[B].ok


def test_group_membership_change_is_stale():
    w = two_groups()
    _doc, saved = saved_from(w)
    # a cross-seed of Alpha appears: Alpha's group is now a different (bigger) group
    w.link(S + "/movies/Alpha/alpha.mkv", S + "/cross-seed/T/Alpha.PROPER/alpha.mkv")
    w.torrent("c" * 40, S + "/cross-seed/T", ["Alpha.PROPER/alpha.mkv"])
    v = verdicts(saved, w)
    assert not v[A].ok and "torrents changed" in v[A].reason and v[B].ok


def test_fingerprint_covers_destination_occupancy():
    w = two_groups()
    snap = w.snapshot()
    g = next(g for g in make_plan(snap, POLICY).groups if A in g.torrents)
    fp = approved.fingerprint(snap, g)
    w.file(P + "/movies/Alpha/alpha.mkv", "OTHER")
    assert approved.fingerprint(w.snapshot(), g) != fp


# ------------------------------------------------------------------ the file


def test_edited_file_is_refused():
    doc, _ = saved_from(two_groups())
    doc["groups"][0]["steps"][0]["args"]["dst"] = "/etc/passwd"
    with pytest.raises(PlanFileError, match="changed after it was saved"):
        approved.parse(doc, POOLS)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.update(format="something-else"), "not a qbhook plan"),
        (lambda d: d.update(version=2), "version 2"),
        (lambda d: d.clear(), "not a qbhook plan"),
    ],
)
def test_foreign_or_other_version_is_refused(mutate, match):
    doc, _ = saved_from(two_groups())
    mutate(doc)
    with pytest.raises(PlanFileError, match=match):
        approved.parse(doc, POOLS)


def test_plan_for_other_pools_is_refused():
    doc, _ = saved_from(two_groups())
    with pytest.raises(PlanFileError, match="other pools"):
        approved.parse(doc, {"stash": "/elsewhere", "pool": P})


def test_malformed_group_is_refused_in_one_line():
    doc, _ = saved_from(two_groups())
    del doc["groups"][0]["fingerprint"]
    body = {k: v for k, v in doc.items() if k != "plan_id"}
    doc["plan_id"] = approved._digest(body)  # a consistent but malformed document
    with pytest.raises(PlanFileError, match="malformed group") as e:
        approved.parse(doc, POOLS)
    assert "\n" not in str(e.value)


def test_save_and_load_through_a_file(tmp_path):
    doc, _ = saved_from(two_groups())
    f = tmp_path / "plan.json"
    approved.save(f, doc)
    assert approved.load(f, POOLS).plan_id == doc["plan_id"]
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temp file left
    with pytest.raises(PlanFileError, match="does not exist"):
        approved.load(tmp_path / "nope.json", POOLS)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PlanFileError, match="not JSON"):
        approved.load(tmp_path / "bad.json", POOLS)


@pytest.mark.parametrize(
    "content, code_match",
    [
        ("{not json", "not JSON"),
        (json.dumps({"format": "qbhook-plan", "version": 99}), "version 99"),
        (json.dumps([1, 2]), "not a qbhook plan"),
    ],
)
def test_cli_apply_plan_bad_file_is_one_line_exit_65_and_touches_nothing(tmp_path, content, code_match):
    _assert_refused(tmp_path, content, code_match)


def _resealed(edit) -> str:
    """A saved plan of two_groups() changed by ``edit(doc)`` and given the plan_id of its new
    content (sha256 of the body, as approved.document computes it): only the field check can
    catch it, not the tamper check."""
    doc, _ = saved_from(two_groups())
    edit(doc)
    doc["plan_id"] = approved._digest({k: v for k, v in doc.items() if k != "plan_id"})
    return json.dumps(doc)


def _copy_args(doc) -> dict:
    return next(s["args"] for g in doc["groups"] for s in g["steps"] if s["kind"] == "copy")


@pytest.mark.parametrize(
    "edit, code_match",
    [
        # float(10**400) was an OverflowError traceback
        (lambda d: d.update(created_at=10**400), "created_at"),
        (lambda d: d.update(created_at=-1), "created_at"),
        # JSON 1e999 reads as infinity: int(inf) was an OverflowError traceback
        (lambda d: _copy_args(d).update(size=1e999), "size"),
        (lambda d: _copy_args(d).update(size=10**30), "size"),  # past SQLite's INTEGER
        (lambda d: _copy_args(d).update(size=-5), "size"),
        (lambda d: _copy_args(d).update(size=True), "size"),
        (lambda d: d["groups"][0].update(bytes_to_copy=1e999), "bytes_to_copy"),
        (lambda d: d["groups"][0].update(bytes_freed="lots"), "bytes_freed"),
        # each was a TypeError traceback past the parse (a CLI bad-input hunt)
        (lambda d: d["groups"][0].update(torrents=5), "torrents is not a list of text"),
        (lambda d: d["groups"][0].update(torrents=[["x"]]), "torrents is not a list of text"),
        (lambda d: d["groups"][0].update(group_id=None), "group_id is not text"),
        (lambda d: d["groups"][0].update(names="abc"), "names is not a list of text"),
        (lambda d: d["groups"][0].update(target_pool=7), "target_pool is not text"),
        (lambda d: d.update(pools={"stash": 5, "pool": 5}), "other pools (pool: 5, stash: 5)"),
    ],
)
def test_cli_apply_plan_with_a_crafted_number_is_one_line_exit_65(tmp_path, edit, code_match):
    _assert_refused(tmp_path, _resealed(edit), code_match)


def _assert_refused(tmp_path, content: str, code_match: str) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "catalog": str(tmp_path / "catalog.sqlite"),
                "pools": {"stash": {"path": "/stash", "role": "primary"}, "pool": {"path": "/pool", "role": "cold"}},
                "seeding_roots": {"stash": S, "pool": P},
                "qbittorrent": {"url": "http://127.0.0.1:9", "username": "admin", "password": "x"},
            }
        )
    )
    f = tmp_path / "plan.json"
    f.write_text(content)
    r = CliRunner().invoke(main, ["--config", str(cfg), "apply", "--plan", str(f), "--yes"])
    assert r.exit_code == 65, r.output
    first, *rest = r.output.splitlines()
    assert code_match in first and first.startswith("qbhook: ") and "Traceback" not in r.output
    assert all(x.startswith("  hint: ") for x in rest) and len(rest) <= 1, r.output
    assert not (tmp_path / "catalog.sqlite").exists()


# ------------------------------------------------------------------ apply_saved, with the world faked


class _Info:
    def __init__(self, h):
        self.hash, self.hashes = h, (h,)


class _Client:
    def __init__(self, hashes):
        self.hashes = hashes

    def torrents(self):
        return [_Info(h) for h in self.hashes]


class _Executor:
    def __init__(self):
        self.calls = []

    def apply(self, plan, *, trigger, dry_run, group_ids=None):
        from qbhook.move.executor import GroupOutcome, RunSummary

        self.calls.append((plan, trigger, dry_run))
        return RunSummary(
            None if dry_run else 1,
            dry_run=dry_run,
            groups=[GroupOutcome(g.group_id, g.action, "planned" if dry_run else "done") for g in plan.groups],
        )


class _Cfg:
    pools = ()
    policy = POLICY


def _apply_saved(monkeypatch, saved, w: World, live, dry_run=False):
    import qbhook.decide.snapshot

    seen = {}

    def fake_build(cfg, catalog, clients, hashes=None, progress=None):
        seen["hashes"] = hashes
        seen["order"].append("snapshot")
        snap = w.snapshot()
        from dataclasses import replace

        return replace(snap, torrents=tuple(t for t in snap.torrents if t.hash in set(hashes)))

    monkeypatch.setattr(qbhook.decide.snapshot, "build_snapshot", fake_build)
    ex = _Executor()
    seen["order"] = []
    monkeypatch.setattr(leftovers, "remove_leftover_views", lambda *a: seen["order"].append("leftovers") or [])
    run = apply_saved(_Cfg(), None, [_Client(live)], ex, saved, dry_run=dry_run, scan=False)
    return run, ex, seen


def test_apply_saved_runs_only_the_groups_that_still_hold(monkeypatch):
    w = two_groups()
    _doc, saved = saved_from(w)
    w.link(S + "/movies/Alpha/alpha.mkv", LIB + "/Alpha.mkv")
    run, ex, seen = _apply_saved(monkeypatch, saved, w, [A, B])
    assert sorted(seen["hashes"]) == [A, B]  # facts re-gathered for the plan's torrents only
    ((plan, trigger, dry),) = ex.calls
    assert [g.torrents for g in plan.groups] == [[B]] and trigger == "approved-plan" and not dry
    assert plan.groups[0].steps == next(g for g in saved.plan.groups if B in g.torrents).steps
    assert run.exit_code == ExitCode.STALE == 6 and len(run.stale) == 1
    d = run.to_dict()
    (reason,) = d["stale"].values()
    assert reason.startswith("decision changed: now STAY") and len(d["valid"]) == 1


def test_apply_saved_dry_run_and_a_vanished_torrent(monkeypatch):
    w = two_groups()
    _doc, saved = saved_from(w)
    run, ex, seen = _apply_saved(monkeypatch, saved, w, [B], dry_run=True)  # A was removed from qBittorrent
    assert seen["hashes"] == [B]
    ((plan, _trigger, dry),) = ex.calls
    assert dry and [g.torrents for g in plan.groups] == [[B]]
    assert [v.reason for v in run.stale] == ["one of its torrents is gone from qBittorrent"]


def test_apply_saved_removes_leftover_views_before_it_re_gathers_facts_and_not_on_a_dry_run(monkeypatch):
    """As `apply --yes` does: the saved groups are re-validated against the pools as they are
    (before, `apply --plan --yes` never removed leftover views)."""
    w = two_groups()
    _doc, saved = saved_from(w)
    run, ex, seen = _apply_saved(monkeypatch, saved, w, [A, B])
    assert seen["order"] == ["leftovers", "snapshot"] and len(ex.calls) == 1 and run.exit_code == 0
    run, ex, seen = _apply_saved(monkeypatch, saved, w, [A, B], dry_run=True)
    assert seen["order"] == ["snapshot"] and ex.calls[0][2] is True


def test_apply_saved_with_nothing_changed_exits_0(monkeypatch):
    w = two_groups()
    _doc, saved = saved_from(w)
    run, ex, _seen = _apply_saved(monkeypatch, saved, w, [A, B])
    assert run.exit_code == 0 and run.stale == [] and len(ex.calls[0][0].groups) == 2


def test_a_fact_that_moves_neither_decision_nor_steps_still_makes_the_group_stale():
    # Setting the torrent's download path to its own save path blocks nothing and changes no
    # step, but it is a fact the review did not see: only the fingerprint catches it.
    w = two_groups()
    _doc, saved = saved_from(w)
    h, save, rels, kw = w.torrents[0]
    w.torrents[0] = (h, save, rels, {**kw, "download_path": save})
    snap = w.snapshot()
    fresh = make_plan(snap, POLICY)
    old = next(g for g in saved.plan.groups if A in g.torrents)
    new = next(g for g in fresh.groups if A in g.torrents)
    assert (new.action, [s.args for s in new.steps]) == (old.action, [s.args for s in old.steps])
    v = verdicts(saved, w)
    assert not v[A].ok and v[A].reason.startswith("its facts changed since the plan was saved") and v[B].ok
