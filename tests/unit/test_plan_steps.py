"""Typed plan steps: one class per kind, one dispatch entry per class, versioned JSON (v1 still read)."""

from __future__ import annotations

import json

import pytest

from qbhook.decide import approved
from qbhook.decide.plan import (
    STEP_TYPES,
    STEP_VERSION,
    Copy,
    Delete,
    GroupStatus,
    Link,
    Relocate,
    RunStatus,
    Step,
    StepFormatError,
    StepStatus,
    VerifyView,
    describe_step,
    step_from_json,
)
from qbhook.decide.planner import make_plan
from qbhook.errors import PlanFileError
from qbhook.move.executor import HANDLERS, ExecutorContext, Timing, build_executor
from tests.unit.test_approved import POLICY, POOLS, two_groups
from tests.unit.test_executor import (  # noqa: F401
    H1,
    H2,
    N_STEPS,
    Crash,
    assert_demoted,
    demote_plan,
    world,
)
from tests.unit.test_fsops import tmpfs  # noqa: F401  (fixture)

# One step of each kind exactly as today's code (version 1, before typed steps) wrote it.
V1 = {
    "copy": {"src": "/s/a", "dst": "/p/a", "size": 3, "blake3": "ab" * 32},
    "link": {"src": "/p/a", "dst": "/p/b", "size": 3, "blake3": "ab" * 32},
    "mkempty": {"dst": "/p/e"},
    "verify_view": {
        "torrent": "c" * 40,
        "instance": "qbt",
        "save_path": "/p",
        "files": [{"path": "/p/a", "size": 3, "blake3": "ab" * 32}, {"path": "/p/e", "size": 0, "blake3": None}],
    },
    "relocate": {"torrent": "c" * 40, "instance": "qbt", "from_path": "/s", "to_path": "/p", "size": 3},
    "verify_group": {"torrents": [{"torrent": "c" * 40, "instance": "qbt", "save_path": "/p"}]},
    "delete": {
        "path": "/s/a",
        "fsid": "zfs:1",
        "ino": 7,
        "size": 3,
        "blake3": "ab" * 32,
        "keep": {"path": "/p/a"},
        "seeding_links": ["/s/a", "/s/x/a"],
    },
    "prune_dirs": {"root": "/s/M", "stop_at": "/s"},
    "tag": {"torrent": "c" * 40, "instance": "qbt", "add": ["demoted"], "remove": []},
    # as the converge branch wrote it before it was ported onto typed steps
    "converge": {
        "path": "/s/t/a",
        "fsid": "zfs:1",
        "ino": 8,
        "size": 3,
        "mtime_ns": 5,
        "blake3": "ab" * 32,
        "keep": {"path": "/s/lib/a", "fsid": "zfs:1", "ino": 9, "library": True},
    },
    # new with qbhook repair (no version-1 form ever existed; its args are the same in both)
    "repair": {"torrent": "c" * 40, "instance": "qbt", "from_path": "/s", "to_path": "/p", "size": 3},
    # new with the group's starts after verify_group (no version-1 form either)
    "start": {"torrent": "c" * 40, "instance": "qbt"},
}

# What `describe_step` printed for those before the steps were typed (history and dry-run lines).
V1_DESCRIBED = {
    "copy": "/s/a -> /p/a",
    "link": "/p/a -> /p/b",
    "mkempty": "/p/e",
    "verify_view": "cccccccccccc 2 files at /p",
    "relocate": "cccccccccccc /s -> /p",
    "verify_group": "1 torrent(s)",
    "delete": "/s/a",
    "prune_dirs": "/s/M (up to /s)",
    "tag": "cccccccccccc +['demoted'] -[]",
    "converge": "/s/t/a => link of /s/lib/a",
    "repair": "cccccccccccc recheck at /s -> /p",
    "start": "cccccccccccc as its relocation found it",
}


# --------------------------------------------------------------------------- the types


def test_every_kind_has_one_class_and_one_dispatch_entry():
    assert set(STEP_TYPES) == set(V1)
    assert set(HANDLERS) == set(STEP_TYPES.values())
    for cls in STEP_TYPES.values():
        assert cls.__dataclass_params__.frozen and "__slots__" in cls.__dict__


@pytest.mark.parametrize("kind", sorted(V1))
def test_v1_args_load_typed_and_round_trip_to_the_same_json(kind):
    step = step_from_json({"kind": kind, "args": V1[kind]})  # no "v": version 1
    assert type(step) is STEP_TYPES[kind] and step.kind == kind
    assert step.args == V1[kind]  # same fields, same spelling
    assert step.to_json() == {"kind": kind, "args": {**V1[kind], "v": STEP_VERSION}}
    assert step_from_json(json.loads(json.dumps(step.to_json()))) == step
    assert step.describe() == V1_DESCRIBED[kind] == describe_step(kind, V1[kind])


def test_fields_are_typed_not_dicts():
    d = Step.of("delete", V1["delete"])
    assert isinstance(d, Delete) and d.ino == 7 and d.keep.path == "/p/a" and d.keep.fsid is None
    assert d.seeding_links == ("/s/a", "/s/x/a")
    v = Step.of("verify_view", V1["verify_view"])
    assert isinstance(v, VerifyView) and [f.size for f in v.files] == [3, 0]
    with pytest.raises(AttributeError):
        d.path = "/elsewhere"  # frozen


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"kind": "copy", "args": {**V1["copy"], "v": 3}}, "version 3"),
        ({"kind": "explode", "args": {}}, "unknown step kind 'explode'"),
        ({"kind": "copy", "args": {"src": "/s/a"}}, "copy step lacks 'dst'"),
        ({"kind": "delete", "args": {**V1["delete"], "ino": "seven"}}, "delete step has a malformed field"),
        ({"kind": "tag", "args": {**V1["tag"], "add": "demoted"}}, "tag step has a malformed field"),
        ({"kind": "copy"}, "lacks 'kind' or 'args'"),
    ],
)
def test_unreadable_step_json_is_one_named_error(bad, match):
    with pytest.raises(StepFormatError, match=match):
        step_from_json(bad)


def test_statuses_are_str_enums_with_the_journal_strings():
    assert [s.value for s in StepStatus] == ["intended", "done", "failed", "undone"]
    assert {"running", "done", "failed", "interrupted"} <= {s.value for s in RunStatus}
    assert {"done", "failed", "rolled_back", "busy"} <= {s.value for s in GroupStatus}
    assert json.dumps([StepStatus.DONE, GroupStatus.ROLLED_BACK]) == '["done", "rolled_back"]'


# --------------------------------------------------------------------------- saved plans


def _as_v1(doc: dict) -> dict:
    """The same plan file as today's qbhook saved it: steps without "v", the id over that body."""
    body = {k: v for k, v in doc.items() if k != "plan_id"}
    for g in body["groups"]:
        g["steps"] = [{"kind": s["kind"], "args": {k: v for k, v in s["args"].items() if k != "v"}} for s in g["steps"]]
    return {"plan_id": approved._digest(body), **body}


def test_saved_plan_writes_v2_steps_and_reads_a_v1_file():
    w = two_groups()
    snap = w.snapshot()
    doc = json.loads(json.dumps(approved.document(make_plan(snap, POLICY), snap, POOLS)))
    steps = [s for g in doc["groups"] for s in g["steps"]]
    assert steps and all(s["args"]["v"] == STEP_VERSION for s in steps)
    v1 = _as_v1(doc)
    assert all("v" not in s["args"] for g in v1["groups"] for s in g["steps"])
    saved = approved.parse(v1, POOLS)
    kinds = {type(s) for g in saved.plan.groups for s in g.steps}
    assert {Copy, Relocate, Delete} <= kinds
    # The v1 file still approves the same plan: fresh facts, fresh steps, same digests.
    verdicts = approved.revalidate(saved, snap, make_plan(snap, POLICY))
    assert verdicts and all(v.ok for v in verdicts), verdicts


def test_saved_plan_with_an_unreadable_step_is_one_line_plan_file_error():
    w = two_groups()
    snap = w.snapshot()
    doc = json.loads(json.dumps(approved.document(make_plan(snap, POLICY), snap, POOLS)))
    doc["groups"][0]["steps"][0]["args"]["v"] = 9
    doc = {
        "plan_id": approved._digest({k: v for k, v in doc.items() if k != "plan_id"}),
        **{k: v for k, v in doc.items() if k != "plan_id"},
    }
    with pytest.raises(PlanFileError, match="malformed group .*version 9") as e:
        approved.parse(doc, POOLS)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- the journal


def test_journal_rows_carry_the_step_version_and_load_typed(world):  # noqa: F811
    plan = demote_plan(world)
    summary = world.executor().apply(plan)
    rows = world.journal.steps(summary.run_id)
    assert len(rows) == N_STEPS and {r.version for r in rows} == {STEP_VERSION}
    assert all("v" not in r.args for r in rows)  # the version is not an arg
    raw = world.cat.conn.execute("SELECT args FROM steps WHERE run=? ORDER BY seq", (summary.run_id,)).fetchall()
    assert all(json.loads(a)["v"] == STEP_VERSION for (a,) in raw)
    relocs = [r.step for r in rows if r.kind == "relocate"]
    assert all(isinstance(s, Relocate) and s.observed["complete"] for s in relocs)
    assert [type(r.step) for r in rows] == [type(s) for s in plan.groups[0].steps]
    # One JSON form: a journaled row's args are the plan step's args (plus the executor's "_" notes).
    for (a,), s in zip(raw, plan.groups[0].steps):
        assert {k: v for k, v in json.loads(a).items() if not k.startswith("_")} == s.to_json()["args"]


def _downgrade_run_to_v1(world, run_id: int) -> None:  # noqa: F811
    """Make a crashed run's journal look exactly as today's qbhook left it: no "v" anywhere."""
    conn = world.cat.conn
    conn.execute("UPDATE steps SET args=json_remove(args, '$.v') WHERE run=?", (run_id,))
    plan = json.loads(conn.execute("SELECT plan FROM run_plans WHERE run=?", (run_id,)).fetchone()[0])
    for g in plan["groups"]:
        g["steps"] = [{"kind": s["kind"], "args": {k: v for k, v in s["args"].items() if k != "v"}} for s in g["steps"]]
    conn.execute("DELETE FROM run_plans WHERE run=?", (run_id,))  # that qbhook kept the plan in the run's row
    conn.execute("UPDATE runs SET plan=? WHERE id=?", (json.dumps(plan, sort_keys=True), run_id))
    conn.commit()


def test_a_v1_journal_left_by_a_crash_resumes_to_the_same_end(world):  # noqa: F811
    plan = demote_plan(world)
    second_relocate = [i for i, s in enumerate(plan.groups[0].steps) if isinstance(s, Relocate)][1]

    def hook(p, gid, seq, step):
        if p == "after_intend" and seq == second_relocate:
            raise Crash("killed with one torrent moved and the next one intended")

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(plan)
    run = world.journal.runs(1)[0]
    _downgrade_run_to_v1(world, run.id)
    rows = world.journal.steps(run.id)
    assert {r.version for r in rows} == {1} and rows[-1].status == StepStatus.INTENDED
    assert isinstance(rows[-1].step, Relocate) and rows[-1].step.observed  # what v1 journaled is still read

    out = world.executor().resume()
    assert len(out) == 1 and out[0].status == RunStatus.DONE, out[0].groups_failed
    assert_demoted(world)
    for h in (H1, H2):
        assert world.qbt.count("set_location", h) == 1  # resumed, not re-issued


def test_an_unreadable_journaled_plan_is_a_one_line_error_not_a_traceback(world):  # noqa: F811
    plan = demote_plan(world)

    def hook(p, gid, seq, step):
        if p == "before" and seq == 0:
            raise Crash()

    with pytest.raises(Crash):
        world.executor(hook=hook).apply(plan)
    run = world.journal.runs(1)[0]
    conn = world.cat.conn
    data = json.loads(conn.execute("SELECT plan FROM run_plans WHERE run=?", (run.id,)).fetchone()[0])
    data["groups"][0]["steps"][0]["args"]["v"] = 7
    conn.execute("UPDATE run_plans SET plan=? WHERE run=?", (json.dumps(data), run.id))
    conn.commit()
    from qbhook.errors import QbhookError

    with pytest.raises(QbhookError, match=f"run {run.id}: its journaled plan cannot be read .*version 7"):
        world.executor().resume()


# --------------------------------------------------------------------------- the factory


def test_one_factory_lock_wait_is_its_parameter(world):  # noqa: F811
    cli = build_executor(world.cfg, world.cat, {"qbt": world.qbt}, lock_wait=False)
    worker = build_executor(world.cfg, world.cat, {"qbt": world.qbt}, lock_wait=600.0, poll_initial_s=0.5)
    assert isinstance(cli.ctx, ExecutorContext) and cli.ctx.timing == Timing()
    assert worker.ctx.timing == Timing(lock_wait=600.0, poll_initial_s=0.5)
    assert worker.ctx.journal.conn is world.cat.conn  # the catalog's journal by default
    with pytest.raises(TypeError):
        build_executor(world.cfg, world.cat, {}, lock_wiat=1.0)  # a misspelt knob is not ignored


def test_a_step_class_without_a_handler_fails_the_group_safely(world):  # noqa: F811
    from dataclasses import dataclass
    from typing import ClassVar

    @dataclass(frozen=True, slots=True)
    class Teleport(Step):
        kind: ClassVar[str] = "teleport"
        where: str = "/moon"

        def describe(self) -> str:
            return self.where

    plan = demote_plan(world)
    g = plan.groups[0]
    first_delete = next(i for i, s in enumerate(g.steps) if isinstance(s, Delete))
    g.steps.insert(first_delete, Teleport())
    summary = world.executor().apply(plan)
    o = summary.groups[0]
    assert o.status == GroupStatus.ROLLED_BACK and "cannot carry out a 'teleport' step" in o.reason
    for h in (H1, H2):
        assert world.qbt.t[h].save_path == world.save(h, "stash")  # moved back, nothing deleted


def test_link_steps_order_after_their_copies_in_real_plans():
    w = two_groups()
    plan = make_plan(w.snapshot(), POLICY)
    for g in plan.actionable:
        made = [s for s in g.steps if isinstance(s, (Copy, Link))]
        first_link = next((i for i, s in enumerate(made) if isinstance(s, Link)), len(made))
        assert all(isinstance(s, Copy) for s in made[:first_link])


# --------------------------------------------------------------------------- a copy with no planned hash


def test_copy_without_a_planned_hash_round_trips_with_its_marker():
    c = Copy("/s/a", "/p/", "a", 3, None)
    j = c.to_json()
    assert j == {
        "kind": "copy",
        "args": {"src": "/s/a", "dst": "/p/a", "size": 3, "blake3": None, "hash": "from_copy", "v": 2},
    }
    back = step_from_json(json.loads(json.dumps(j)))
    assert back == c and back.blake3 is None
    assert c.describe() == "/s/a -> /p/a (hash taken from the copy)" == describe_step("copy", j["args"])


def test_a_null_hash_without_the_marker_is_refused_and_old_copies_load_unchanged():
    with pytest.raises(StepFormatError, match="copy step has a malformed field"):
        step_from_json({"kind": "copy", "args": {**V1["copy"], "blake3": None, "v": 2}})
    for args in (V1["copy"], {**V1["copy"], "v": 2}):  # v1 and v2 without the new field
        step = step_from_json({"kind": "copy", "args": args})
        assert step.blake3 == "ab" * 32 and "hash" not in step.args
        assert step.to_json()["args"] == {**V1["copy"], "v": 2}


def test_a_plan_and_its_journal_without_planned_hashes_round_trip(world):  # noqa: F811
    plan = demote_plan(world, hashed=False)
    copies = [s for s in plan.groups[0].steps if isinstance(s, Copy)]
    assert copies and all(s.blake3 is None and s.args["hash"] == "from_copy" for s in copies)
    assert type(plan).from_dict(json.loads(plan.to_json())).to_dict() == plan.to_dict()
    run_id = world.journal.start_run(plan.to_dict(), "test")
    # what `resume` reads back from the journal: the same typed steps, still without hashes
    from qbhook.move.executor import Executor

    assert Executor._journaled_plan(world.journal.run(run_id)).to_dict() == plan.to_dict()
